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

void *arena_alloc(Arena *a, size_t bytes) {
    size_t n = (bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    if (n == 0) n = ARENA_ALIGN;
    if (!a->top || a->top->used + n > a->top->size) {
        // A spare block that fits first (the smallest one), else a new block.
        ArenaBlock **best = NULL;
        for (ArenaBlock **b = &a->spare; *b; b = &(*b)->prev)
            if ((*b)->size >= n && (!best || (*b)->size < (*best)->size)) best = b;
        if (best) {
            ArenaBlock *b = *best;
            *best = b->prev;
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
    void *p = a->top->data + a->top->used;
    a->top->used += n;
    a->used += n;
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

void arena_reset(Arena *a) {
    if ((a->top && a->top->prev) || a->spare) {
        // Several blocks: replace them by one that holds the peak.
        size_t total = a->peak ? a->peak : arena_capacity(a);
        arena_free(a);
        a->top = block_new(a, total, NULL);
        a->block_size = total;
    }
    if (a->top) a->top->used = 0;
    a->used = 0;
    if (a->on_release) a->on_release(a->on_release_arg);
}

void arena_free(Arena *a) {
    for (int list = 0; list < 2; list++) {
        ArenaBlock *b = list ? a->spare : a->top;
        while (b) { ArenaBlock *p = b->prev; block_free(a, b); b = p; }
    }
    a->top = NULL;
    a->spare = NULL;
    a->used = 0;
    if (a->on_release) a->on_release(a->on_release_arg);
}

ArenaMark arena_mark(Arena *a) {
    ArenaMark m = { a->top, a->top ? a->top->used : 0, a->used };
    return m;
}

void arena_release(Arena *a, ArenaMark m) {
    // Blocks added after the mark become spares; only the bump pointers move back.
    while (a->top && a->top != m.top) {
        ArenaBlock *p = a->top->prev;
        a->top->prev = a->spare;
        a->spare = a->top;
        a->top = p;
    }
    if (a->top) a->top->used = m.top_used;
    a->used = m.used;
    if (a->on_release) a->on_release(a->on_release_arg);
}

int arena_holds(const Arena *a, const void *p, size_t bytes) {
    const char *c = p;
    for (const ArenaBlock *b = a->top; b; b = b->prev)
        if (c >= b->data && c + bytes <= b->data + b->used) return 1;
    return 0;
}
