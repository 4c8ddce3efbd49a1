// arena.h — bump allocators for parameters, gradients, optimizer state and
// per-step activations. An arena hands out 64-byte aligned chunks and frees
// them all at once. After a reset, an arena that grew into several blocks is
// coalesced into one block of the combined size, so from the second step on
// the hot path makes no malloc calls.
//
//   Arena act; arena_init(&act, "activations", 64 << 20);
//   float *buf = arena_alloc(&act, n * sizeof(float));
//   arena_reset(&act);   // every step
//   arena_free(&act);
#pragma once
#include <stddef.h>

typedef struct ArenaBlock {
    struct ArenaBlock *prev;
    size_t size, used;
    // data follows, 64-byte aligned
} ArenaBlock;

typedef struct Arena {
    const char *name;   // for error messages ("activations")
    ArenaBlock *top;
    ArenaBlock *spare;  // blocks given back by arena_release, reused before any new malloc
    size_t block_size;  // size of the next block to allocate
    size_t used;        // bytes handed out since the last reset
    size_t peak;        // the largest `used` ever seen
} Arena;

typedef struct { ArenaBlock *top; size_t top_used, used; } ArenaMark;

void arena_init(Arena *a, const char *name, size_t block_size);
void *arena_alloc(Arena *a, size_t bytes);    // uninitialised; aborts with a message on OOM
void *arena_calloc(Arena *a, size_t bytes);   // zeroed
void arena_reset(Arena *a);                   // frees everything, keeps (coalesced) memory
void arena_free(Arena *a);
ArenaMark arena_mark(Arena *a);               // for scratch use inside one function
// Frees everything allocated since the mark. Blocks added since then are kept
// as spares (no free/malloc churn or page faults when an op's scratch is
// released and taken again every call).
void arena_release(Arena *a, ArenaMark m);
size_t arena_capacity(const Arena *a);
