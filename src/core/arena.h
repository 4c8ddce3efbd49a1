// arena.h — bump allocators for parameters, gradients, optimizer state and
// per-step activations, in host or GPU memory. An arena hands out 256-byte
// aligned chunks and frees them all at once. Its bookkeeping (the block list)
// always lives on the host, so a GPU arena is managed without touching device
// memory. After a reset, an arena that grew into several blocks is coalesced
// into one block of the peak size, so from the second step on the hot path
// makes no allocation calls (on a GPU a cudaMalloc would also be a device-wide
// synchronisation).
//
//   Arena act; arena_init(&act, "activations", 64 << 20);            // host memory
//   Arena dev; arena_init_on(&dev, "activations", 64 << 20, DEV_CUDA); // GPU memory
//   float *buf = arena_alloc(&act, n * sizeof(float));
//   arena_reset(&act);   // every step
//   arena_free(&act);
#pragma once
#include <stddef.h>
#include "tensor.h"

typedef struct ArenaBlock {
    struct ArenaBlock *prev;
    char *data;             // host or device memory
    size_t size, used;
} ArenaBlock;

typedef struct Arena {
    const char *name;   // for error messages ("activations")
    cx_device device;   // where the blocks' memory lives
    ArenaBlock *top;
    ArenaBlock *spare;  // blocks given back by arena_release, reused before any new allocation
    size_t block_size;  // size of the next block to allocate
    size_t used;        // bytes handed out since the last reset
    size_t peak;        // the largest `used` ever seen
    // One listener told after memory is given back (arena_release, arena_reset,
    // arena_free), so that bookkeeping about the arena's memory can drop what was
    // freed: the ops' deferred zeros (ops.h, ZeroSet). NULL: none.
    void (*on_release)(void *arg);
    void *on_release_arg;
} Arena;

typedef struct { ArenaBlock *top; size_t top_used, used; } ArenaMark;

void arena_init(Arena *a, const char *name, size_t block_size);   // host memory
void arena_init_on(Arena *a, const char *name, size_t block_size, cx_device device);
void *arena_alloc(Arena *a, size_t bytes);    // uninitialised; exits with a message when memory runs out
void *arena_calloc(Arena *a, size_t bytes);   // zeroed (host arenas only)
void arena_reset(Arena *a);                   // frees everything, keeps (coalesced) memory
void arena_free(Arena *a);
ArenaMark arena_mark(Arena *a);               // for scratch use inside one function
// Frees everything allocated since the mark. Blocks added since then are kept
// as spares (no free/malloc churn or page faults when an op's scratch is
// released and taken again every call).
void arena_release(Arena *a, ArenaMark m);
size_t arena_capacity(const Arena *a);
// Whether [p, p+bytes) lies in memory the arena has handed out and not taken back.
int arena_holds(const Arena *a, const void *p, size_t bytes);
