// arena.c — see arena.h.
#include "arena.h"
#include "device.h"
#include "error.h"
#include <stdint.h>
#include <string.h>

#define ARENA_ALIGN 256   // cuDNN/cuBLASLt want 16..256-byte aligned buffers; AVX-512 64

static ArenaBlock *block_new(Arena *a, size_t size, ArenaBlock *prev) {
    ArenaBlock *b = cx_malloc(sizeof *b);
    void *mem = NULL;
    if (a->device == DEV_CUDA) {
        mem = cx_dev_alloc(size);
        if (!mem) {
            size_t fr, tot;
            cx_dev_mem_info(&fr, &tot);
            const char *hint = cx_oom_hint_get();
            fprintf(stderr, "error: out of GPU memory: the %s arena needs %.1f MiB more (%.1f MiB in use by it; the GPU "
                            "has %.0f MiB free of %.0f MiB); %s\n", a->name, (double)size / (1 << 20),
                    (double)a->used / (1 << 20), (double)fr / (1 << 20), (double)tot / (1 << 20),
                    hint ? hint : "reduce --batch-size or --img-size");
            exit(3);
        }
    } else if (posix_memalign(&mem, ARENA_ALIGN, size) != 0 || !mem) {
        char what[160];
        snprintf(what, sizeof what, "for the %s arena", a->name);
        cx_oom_exit(size, what);
    }
    b->data = mem;
    b->prev = prev;
    b->size = size;
    b->used = 0;
    return b;
}

static void block_free(const Arena *a, ArenaBlock *b) {
    if (a->device == DEV_CUDA) cx_dev_free(b->data);
    else free(b->data);
    free(b);
}

void arena_init_on(Arena *a, const char *name, size_t block_size, cx_device device) {
    memset(a, 0, sizeof *a);
    a->name = name;
    a->device = device;
    a->block_size = block_size ? block_size : (1 << 20);
}

void arena_init(Arena *a, const char *name, size_t block_size) { arena_init_on(a, name, block_size, DEV_CPU); }

// ---- the records: chunks and holes ---------------------------------------------------

static void chunk_push(Arena *a, char *p, size_t size, ArenaBlock *b) {
    if (a->n_chunk == a->cap_chunk) {
        a->cap_chunk = a->cap_chunk ? 2 * a->cap_chunk : 256;
        a->chunk = cx_realloc(a->chunk, a->cap_chunk * sizeof *a->chunk);
    }
    a->chunk[a->n_chunk++] = (ArenaChunk){ .p = p, .size = size, .blk = b, .live = 1 };
    a->live += size;
    if (a->live > a->live_peak) a->live_peak = a->live;
}

static void hole_remove(Arena *a, int i) { a->hole[i] = a->hole[--a->n_hole]; }

// The hole of block b that ends at off (end = 1) or starts at off (end = 0), or -1.
static int hole_at(const Arena *a, const ArenaBlock *b, size_t off, int end) {
    for (int i = 0; i < a->n_hole; i++)
        if (a->hole[i].blk == b && (end ? a->hole[i].off + a->hole[i].size : a->hole[i].off) == off) return i;
    return -1;
}

static void set_block_used(Arena *a, ArenaBlock *b, size_t used) {
    a->used = a->used - b->used + used;
    b->used = used;
}

// Gives a chunk's bytes back: the block's top comes down when it was the topmost
// chunk (through any holes just below it), else the bytes become a hole, merged
// with its neighbours.
static void chunk_free(Arena *a, ArenaChunk *c) {
    c->live = 0;
    a->live -= c->size;
    ArenaBlock *b = c->blk;
    size_t off = (size_t)(c->p - b->data), end = off + c->size;
    if (end == b->used) {
        int h;
        while ((h = hole_at(a, b, off, 1)) >= 0) {
            off = a->hole[h].off;
            hole_remove(a, h);
        }
        set_block_used(a, b, off);
        return;
    }
    int l = hole_at(a, b, off, 1), r = hole_at(a, b, end, 0);
    if (l >= 0 && r >= 0) {
        a->hole[l].size += c->size + a->hole[r].size;
        hole_remove(a, r);
    } else if (l >= 0) {
        a->hole[l].size += c->size;
    } else if (r >= 0) {
        a->hole[r].off = off;
        a->hole[r].size += c->size;
    } else {
        if (a->n_hole == a->cap_hole) {
            a->cap_hole = a->cap_hole ? 2 * a->cap_hole : 64;
            a->hole = cx_realloc(a->hole, (size_t)a->cap_hole * sizeof *a->hole);
        }
        a->hole[a->n_hole++] = (ArenaHole){ .blk = b, .off = off, .size = c->size };
    }
}

// Blocks at the top of the chain that hold nothing any more become spares.
static void spare_empty_blocks(Arena *a, const ArenaBlock *keep) {
    while (a->top && a->top != keep && a->top->used == 0) {
        ArenaBlock *p = a->top->prev;
        a->top->prev = a->spare;
        a->spare = a->top;
        a->top = p;
    }
}

// Records past the last live one are dropped (they can be neither freed nor kept again).
static void chunks_trim(Arena *a, size_t floor) {
    while (a->n_chunk > floor && !a->chunk[a->n_chunk - 1].live) a->n_chunk--;
}

static void released(Arena *a) {
    if (a->on_release) a->on_release(a->on_release_arg);
}

// ---- allocation -----------------------------------------------------------------------

void *arena_alloc(Arena *a, size_t bytes) {
    size_t n = (bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    if (n == 0) n = ARENA_ALIGN;
    // The smallest hole that fits, first (an arena used LIFO has none).
    int best = -1;
    for (int i = 0; i < a->n_hole; i++)
        if (a->hole[i].size >= n && (best < 0 || a->hole[i].size < a->hole[best].size)) best = i;
    if (best >= 0) {
        ArenaHole *h = &a->hole[best];
        char *p = h->blk->data + h->off;
        chunk_push(a, p, n, h->blk);
        h->off += n;
        h->size -= n;
        if (!h->size) hole_remove(a, best);
        return p;
    }
    if (!a->top || a->top->used + n > a->top->size) {
        // A spare block that fits first (the smallest one), else a new block.
        ArenaBlock **bestb = NULL;
        for (ArenaBlock **b = &a->spare; *b; b = &(*b)->prev)
            if ((*b)->size >= n && (!bestb || (*b)->size < (*bestb)->size)) bestb = b;
        if (bestb) {
            ArenaBlock *b = *bestb;
            *bestb = b->prev;
            b->prev = a->top;
            b->used = 0;
            a->top = b;
        } else {
            size_t sz = a->block_size;
            if (sz < n) sz = n;
            a->top = block_new(a, sz, a->top);
            a->block_size = sz;
        }
    }
    char *p = a->top->data + a->top->used;
    chunk_push(a, p, n, a->top);
    set_block_used(a, a->top, a->top->used + n);
    if (a->used > a->peak) a->peak = a->used;
    return p;
}

void *arena_calloc(Arena *a, size_t bytes) {
    CX_ASSERT(a->device == DEV_CPU, "arena_calloc on the %s arena, which is in GPU memory", a->name);
    void *p = arena_alloc(a, bytes);
    memset(p, 0, bytes);
    return p;
}

size_t arena_capacity(const Arena *a) {
    size_t s = 0;
    for (ArenaBlock *b = a->top; b; b = b->prev) s += b->size;
    for (ArenaBlock *b = a->spare; b; b = b->prev) s += b->size;
    return s;
}

static void blocks_free(Arena *a) {
    for (int list = 0; list < 2; list++) {
        ArenaBlock *b = list ? a->spare : a->top;
        while (b) { ArenaBlock *p = b->prev; block_free(a, b); b = p; }
    }
    a->top = NULL;
    a->spare = NULL;
    a->used = 0;
    a->live = 0;
    released(a);
}

void arena_reset(Arena *a) {
    if ((a->top && a->top->prev) || a->spare) {
        // Several blocks: replace them by one that holds the peak.
        size_t total = a->peak ? a->peak : arena_capacity(a);
        blocks_free(a);
        a->top = block_new(a, total, NULL);
        a->block_size = total;
    }
    if (a->top) a->top->used = 0;
    a->used = 0;
    a->live = 0;
    a->n_chunk = 0;
    a->n_hole = 0;
    a->resets++;
    released(a);
}

void arena_free(Arena *a) {
    blocks_free(a);
    free(a->chunk);
    free(a->hole);
    a->chunk = NULL;
    a->hole = NULL;
    a->n_chunk = a->cap_chunk = 0;
    a->n_hole = a->cap_hole = 0;
}

// ---- scopes and liveness --------------------------------------------------------------

ArenaMark arena_mark(Arena *a) {
    ArenaMark m = { a->top, a->top ? a->top->used : 0, a->used, a->n_chunk };
    return m;
}

void arena_release(Arena *a, ArenaMark m) {
    // Newest first: each chunk is then the top of its block and only the bump pointer moves
    // (unless it sat in a hole). Blocks added after the mark become spares.
    for (size_t i = a->n_chunk; i-- > m.n_chunk;)
        if (a->chunk[i].live) chunk_free(a, &a->chunk[i]);
    a->n_chunk = m.n_chunk < a->n_chunk ? m.n_chunk : a->n_chunk;
    spare_empty_blocks(a, m.top);
    released(a);
}

static int chunk_holds(const ArenaChunk *c, const void *p) {
    return (const char *)p >= c->p && (const char *)p < c->p + c->size;
}

void arena_release_range(Arena *a, size_t from, size_t to, const void *const *keep, int n) {
    if (to > a->n_chunk) to = a->n_chunk;
    for (size_t i = to; i-- > from;) {
        ArenaChunk *c = &a->chunk[i];
        if (!c->live) continue;
        int kept = 0;
        for (int k = 0; k < n && !kept; k++) kept = keep[k] && chunk_holds(c, keep[k]);
        if (!kept) chunk_free(a, c);
    }
    released(a);
}

void arena_release_except(Arena *a, ArenaMark m, const void *const *keep, int n) {
    arena_release_range(a, m.n_chunk, a->n_chunk, keep, n);
    chunks_trim(a, m.n_chunk);
    spare_empty_blocks(a, m.top);
}

int arena_release_one(Arena *a, const void *p) {
    for (size_t i = a->n_chunk; i-- > 0;) {
        ArenaChunk *c = &a->chunk[i];
        if (c->live && c->p == (const char *)p) {   // its record stays: a mark may count past it
            chunk_free(a, c);
            released(a);
            return 1;
        }
    }
    return 0;
}

// Blocks in the order of the chain from the oldest: the index of b (lower: older, a
// lower address in the one block a reset coalesces into).
static int block_rank(const Arena *a, const ArenaBlock *b) {
    int n = 0, r = -1;
    for (const ArenaBlock *x = a->top; x; x = x->prev, n++)
        if (x == b) r = n;
    return r < 0 ? -1 : n - 1 - r;
}

void *arena_move_down(Arena *a, ArenaMark since, const void *p) {
    ArenaChunk *c = NULL;
    size_t ci = 0;
    for (size_t i = a->n_chunk; i-- > since.n_chunk && !c;)
        if (a->chunk[i].live && a->chunk[i].p == (const char *)p) c = &a->chunk[i], ci = i;
    if (!c || a->on_release) return NULL;
    const int rc = block_rank(a, c->blk);
    int best = -1, rb = 0;
    for (int i = 0; i < a->n_hole; i++) {   // the lowest hole below the chunk that holds it
        const ArenaHole *h = &a->hole[i];
        const int r = block_rank(a, h->blk);
        if (h->size < c->size || r > rc || (r == rc && h->off >= (size_t)(c->p - c->blk->data))) continue;
        if (best < 0 || r < rb || (r == rb && h->off < a->hole[best].off)) best = i, rb = r;
    }
    if (best < 0) return NULL;
    ArenaHole *h = &a->hole[best];
    char *q = h->blk->data + h->off;
    ArenaBlock *qb = h->blk;
    h->off += c->size;
    h->size -= c->size;
    if (!h->size) hole_remove(a, best);
    if (a->device == DEV_CUDA) cx_dev_copy(q, c->p, c->size);   // queued on the compute stream
    else memcpy(q, c->p, c->size);
    // The chunk keeps its place in the record (marks count it where it was allocated).
    const size_t size = c->size;
    chunk_free(a, &a->chunk[ci]);
    a->chunk[ci] = (ArenaChunk){ .p = q, .size = size, .blk = qb, .live = 1 };
    a->live += size;
    return q;
}

int arena_holds(const Arena *a, const void *p) {
    for (size_t i = a->n_chunk; i-- > 0;)
        if (a->chunk[i].live && chunk_holds(&a->chunk[i], p)) return 1;
    return 0;
}

int arena_holds_range(const Arena *a, const void *p, size_t bytes) {
    const char *c = p;
    const ArenaBlock *in = NULL;
    for (const ArenaBlock *b = a->top; b && !in; b = b->prev)
        if (c >= b->data && c + bytes <= b->data + b->used) in = b;
    if (!in) return 0;
    const size_t off = (size_t)(c - in->data);
    for (int i = 0; i < a->n_hole; i++)
        if (a->hole[i].blk == in && off < a->hole[i].off + a->hole[i].size && a->hole[i].off < off + bytes) return 0;
    return 1;
}
