// arena.c — see arena.h.
#include "arena.h"
#include "error.h"
#include <stdint.h>
#include <string.h>

#define ARENA_ALIGN 64
#define HDR (((sizeof(ArenaBlock) + ARENA_ALIGN - 1) / ARENA_ALIGN) * ARENA_ALIGN)

static ArenaBlock *block_new(size_t size, ArenaBlock *prev) {
    void *mem = NULL;
    if (posix_memalign(&mem, ARENA_ALIGN, HDR + size) != 0 || !mem) {
        cx_oom_exit(size, "for an arena");
    }
    ArenaBlock *b = mem;
    b->prev = prev;
    b->size = size;
    b->used = 0;
    return b;
}

void arena_init(Arena *a, const char *name, size_t block_size) {
    memset(a, 0, sizeof *a);
    a->name = name;
    a->block_size = block_size ? block_size : (1 << 20);
}

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
            a->top = block_new(sz, a->top);
            a->block_size = sz;
        }
    }
    void *p = (char *)a->top + HDR + a->top->used;
    a->top->used += n;
    a->used += n;
    if (a->used > a->peak) a->peak = a->used;
    return p;
}

void *arena_calloc(Arena *a, size_t bytes) {
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
        a->top = block_new(total, NULL);
        a->block_size = total;
    }
    if (a->top) a->top->used = 0;
    a->used = 0;
}

void arena_free(Arena *a) {
    for (int list = 0; list < 2; list++) {
        ArenaBlock *b = list ? a->spare : a->top;
        while (b) { ArenaBlock *p = b->prev; free(b); b = p; }
    }
    a->top = NULL;
    a->spare = NULL;
    a->used = 0;
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
}
