// test_core.c — arenas, RNG and tensors (the safetensors reader and writer:
// test_checkpoint_io.c).
#include "test.h"
#include <string.h>

TEST(arena_alignment_and_reset_coalesces) {
    Arena a;
    arena_init(&a, "test", 256);
    char *p = arena_alloc(&a, 10), *q = arena_alloc(&a, 300), *r = arena_alloc(&a, 1000);
    CHECK(((uintptr_t)p & 63) == 0 && ((uintptr_t)q & 63) == 0 && ((uintptr_t)r & 63) == 0);
    CHECK(a.top->prev != NULL);          // grew into several blocks
    size_t peak = a.peak;
    arena_reset(&a);
    CHECK(a.top->prev == NULL && a.top->size >= peak);   // one block now
    arena_alloc(&a, 10); arena_alloc(&a, 300); arena_alloc(&a, 1000);
    CHECK(a.top->prev == NULL);          // steady state: no new block
    ArenaMark m = arena_mark(&a);
    arena_alloc(&a, 64);
    arena_release(&a, m);
    CHECK(a.used == m.used);
    // A release keeps blocks added since the mark as spares: taking the same
    // scratch again reuses them instead of calling malloc (and page-faulting).
    m = arena_mark(&a);
    char *big = arena_alloc(&a, 1 << 20);
    arena_release(&a, m);
    CHECK(a.spare != NULL);
    CHECK(arena_alloc(&a, 1 << 20) == big);
    arena_release(&a, m);
    arena_reset(&a);
    CHECK(a.top->prev == NULL && a.spare == NULL && a.top->size >= a.peak);
    arena_free(&a);
}

// Liveness: chunks given back below the top leave holes that later chunks take (the
// smallest that fits); a view keeps its chunk; the placement repeats after a reset; and
// an arena used only LIFO places chunks as a plain bump allocator.
TEST(arena_liveness_holes_best_fit_and_repeatable_placement) {
    Arena a;
    arena_init(&a, "test", 1 << 16);
    for (int round = 0; round < 2; round++) {
        char *base = a.top ? a.top->data : NULL;
        ArenaMark m = arena_mark(&a);
        char *x = arena_alloc(&a, 1000), *t1 = arena_alloc(&a, 4000), *y = arena_alloc(&a, 1000), *t2 = arena_alloc(&a, 600);
        if (round == 0) base = a.top->data;
        CHECK(x == base && t1 == x + 1024 && y == t1 + 4096 && t2 == y + 1024);   // LIFO so far: a bump allocator
        arena_release_except(&a, m, (const void *[]){ y + 10, NULL }, 2);         // a view inside y keeps y
        CHECK(a.used == 1024 + 4096 + 1024 && a.n_hole == 1 && a.hole[0].off == 0 && a.hole[0].size == 5120);
        char *z = arena_alloc(&a, 3000), *w = arena_alloc(&a, 2000), *v = arena_alloc(&a, 100);
        CHECK(z == x && w == x + 3072 && v == y + 1024);   // the hole, exactly filled, then the top
        CHECK(a.n_hole == 0 && a.used == 1024 + 4096 + 1024 + 256);
        CHECK(arena_release_one(&a, z) == 1 && arena_release_one(&a, z) == 0 && arena_release_one(&a, y + 10) == 0);
        CHECK(arena_holds(&a, y + 5) && !arena_holds(&a, z + 1024));
        char *p1 = arena_alloc(&a, 4096), *sep = arena_alloc(&a, 4096);   // neither fits z's hole
        CHECK(p1 == v + 256 && sep == p1 + 4096);
        CHECK(arena_release_one(&a, p1));
        char *q = arena_alloc(&a, 1000);
        CHECK(q == x);   // best fit: z's 3072-byte hole, not p1's 4096 bytes nor the top
        arena_release(&a, m);
        CHECK(a.used == 0 && a.n_hole == 0 && a.n_chunk == 0);
        arena_reset(&a);
    }
    arena_free(&a);
}

TEST(rng_is_counter_based_and_reproducible) {
    Rng a = rng_init(42), b = rng_init(42), c = rng_init(43);
    uint64_t x = rng_u64(&a);
    CHECK(x == rng_u64(&b));
    CHECK(x != rng_u64(&c));
    Rng s1 = rng_split(&a, 7), s2 = rng_split(&b, 7), s3 = rng_split(&a, 8);
    CHECK(rng_u64(&s1) == rng_u64(&s2));
    CHECK(rng_u64(&s1) != rng_u64(&s3));
    double m = 0, v = 0;
    Rng r = rng_init(1);
    for (int i = 0; i < 100000; i++) { double z = rng_normal(&r); m += z; v += z * z; }
    m /= 1e5; v = v / 1e5 - m * m;
    CHECK(fabs(m) < 0.02 && fabs(v - 1) < 0.03);
    for (int i = 0; i < 1000; i++) { double t = rng_trunc_normal(&r, 0.02, -2, 2); CHECK(fabs(t) <= 2); }
    for (int i = 0; i < 1000; i++) CHECK(rng_below(&r, 7) < 7);
}
