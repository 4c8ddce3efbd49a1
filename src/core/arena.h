// arena.h — bump allocators for parameters, gradients, optimizer state and
// per-step activations, in host or GPU memory. An arena hands out 256-byte
// aligned chunks and frees them all at once. Its bookkeeping (the block list
// and a record of every chunk since the last reset) always lives on the host, so
// a GPU arena is managed without touching device memory. After a reset, an arena
// that grew into several blocks is coalesced into one block of the peak size, so
// from the second step on the hot path makes no allocation calls (on a GPU a
// cudaMalloc would also be a device-wide synchronisation).
//
// Scopes: arena_release gives back everything allocated since a mark (LIFO, as
// the backward's temporaries and the kernels' scratch use it). Liveness: a chunk
// may also be given back alone (arena_release_one), or everything since a mark
// but what a scope hands on (arena_release_except: a module's outputs). Space
// given back below the top of a block is a hole; later chunks take the smallest
// hole they fit in (best fit) before growing the top. The placement depends only
// on the sequence of calls, so a forward that allocates the same way every call
// lands at the same addresses every call (CUDA graphs rely on it). An arena used
// only LIFO never makes a hole and places chunks exactly as a plain bump
// allocator.
//
//   Arena act; arena_init(&act, "activations", 64 << 20);            // host memory
//   Arena dev; arena_init_on(&dev, "activations", 64 << 20, DEV_CUDA); // GPU memory
//   float *buf = arena_alloc(&act, n * sizeof(float));
//   ArenaMark m = arena_mark(&act);
//   float *out = arena_alloc(&act, k), *tmp = arena_alloc(&act, k);
//   arena_release_except(&act, m, (const void *[]){ out }, 1);   // tmp is free again, out is kept
//   arena_reset(&act);   // every step
//   arena_free(&act);
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "tensor.h"

typedef struct ArenaBlock {
    struct ArenaBlock *prev;
    char *data;             // host or device memory
    size_t size, used;      // used: the top of the block's allocations (holes below it included)
} ArenaBlock;

typedef struct {
    char *p;                // start of the chunk
    size_t size;            // bytes (a multiple of the alignment)
    ArenaBlock *blk;        // the block holding it
    int live;               // 0: given back
} ArenaChunk;

typedef struct {
    ArenaBlock *blk;
    size_t off, size;       // free bytes [off, off + size) of blk, below blk->used
} ArenaHole;

typedef struct Arena {
    const char *name;   // for error messages ("activations")
    cx_device device;   // where the blocks' memory lives
    ArenaBlock *top;
    ArenaBlock *spare;  // blocks given back by arena_release, reused before any new allocation
    size_t block_size;  // size of the next block to allocate
    size_t used;        // bytes the blocks' allocations span (Σ of their `used`, holes included)
    size_t peak;        // the largest `used` ever seen: the size of the one block a reset coalesces into
    size_t live, live_peak;   // bytes in live chunks now, and at most (peak − live_peak: what holes cost)
    ArenaChunk *chunk;  // every allocation since the reset, in order (host memory)
    size_t n_chunk, cap_chunk;
    ArenaHole *hole;    // space given back below the tops of the blocks
    int n_hole, cap_hole;
    uint64_t resets;    // how many times the arena was reset (a chunk index is valid within one)
    // One listener told after memory is given back (every release, arena_reset,
    // arena_free), so that bookkeeping about the arena's memory can drop what was
    // freed: the ops' deferred zeros (ops.h, ZeroSet). NULL: none. While one is set,
    // arena_move_down moves nothing (the listener would lose track of the chunk).
    void (*on_release)(void *arg);
    void *on_release_arg;
} Arena;

typedef struct { ArenaBlock *top; size_t top_used, used, n_chunk; } ArenaMark;

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
// Frees everything allocated since the mark except the chunks that hold one of
// keep[0..n) (a pointer anywhere inside a chunk keeps it: tensor views count).
// NULL entries are ignored.
void arena_release_except(Arena *a, ArenaMark m, const void *const *keep, int n);
// The same for the chunks numbered [from, to) (ArenaMark.n_chunk counts them: a range
// taken between two marks), whenever allocated since; chunks allocated after them stay.
void arena_release_range(Arena *a, size_t from, size_t to, const void *const *keep, int n);
// Frees the one chunk that starts at p; returns 0 (and does nothing) when no live
// chunk starts there (p is a view inside a chunk, or not from this arena).
int arena_release_one(Arena *a, const void *p);
// Moves the live chunk allocated since `since` that starts at p into the lowest hole
// below it that holds it (a copy: memcpy, or on a GPU arena one queued device copy) and
// gives its place back; returns the new address, or NULL when there is no such chunk or
// hole (nothing moves: a chunk from before the mark may hold views the caller cannot
// see). What a scope hands on leaves its scope's holes that way instead of floating
// above them.
void *arena_move_down(Arena *a, ArenaMark since, const void *p);
// 1 when p lies in a live chunk of a.
int arena_holds(const Arena *a, const void *p);
// 1 when [p, p+bytes) lies in memory the arena has handed out and not taken back (under
// a block's top and in no hole).
int arena_holds_range(const Arena *a, const void *p, size_t bytes);
size_t arena_capacity(const Arena *a);
