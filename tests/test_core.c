// test_core.c — arenas, RNG, tensors and the safetensors reader/writer,
// including rejection of malformed files (run under DEBUG=1 for ASan).
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

TEST(safetensors_round_trip) {
    Arena a;
    arena_init(&a, "test", 1 << 16);
    Tensor x = tensor_new4(&a, DT_F32, 2, 3, 4, 5), y = tensor_new(&a, DT_I64, 0, NULL);
    for (int64_t i = 0; i < tensor_numel(&x); i++) tensor_f32(&x)[i] = (float)i * 0.5f - 3;
    tensor_i64(&y)[0] = 1234567890123LL;
    char path[600];
    snprintf(path, sizeof path, "%s/rt.safetensors", test_tmpdir());
    StWriter w;
    st_writer_init(&w);
    st_writer_add(&w, "x", &x);
    st_writer_add(&w, "nbt", &y);
    st_writer_meta(&w, "format", "pt");
    REQUIRE_OK(st_writer_save(&w, path));
    st_writer_free(&w);
    StFile f;
    REQUIRE_OK(st_open(&f, path));
    CHECK(f.n == 2);
    CHECK(st_meta(&f, "format") && !strcmp(st_meta(&f, "format"), "pt"));
    Tensor x2 = tensor_new4(&a, DT_F64, 2, 3, 4, 5);
    REQUIRE_OK(st_read(&f, "x", &x2));
    CHECK(test_rel_err(&x2, &x, 0) == 0);
    Tensor bad = tensor_new4(&a, DT_F32, 2, 3, 5, 4);
    CHECK(st_read(&f, "x", &bad) == CX_ESHAPE);
    CHECK(strstr(cx_errmsg(), "'x'") != NULL);
    CHECK(st_read(&f, "nope", &x2) == CX_ENOTFOUND);
    const StEntry *e = st_find(&f, "nbt");
    CHECK(e && e->ndim == 0 && e->dtype == DT_I64);
    st_close(&f);
    arena_free(&a);
}

// Builds a file image from a header string and a data size.
static cx_status open_image(const char *hdr, size_t data, int64_t hlen_override, StFile *f) {
    size_t hl = strlen(hdr);
    unsigned char *buf = cx_calloc(8 + hl + data, 1);
    uint64_t L = hlen_override >= 0 ? (uint64_t)hlen_override : hl;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(L >> (8 * i));
    memcpy(buf + 8, hdr, hl);
    return st_open_buffer(f, "mem.safetensors", buf, 8 + hl + data);
}

TEST(safetensors_rejects_malformed_files) {
    StFile f;
    const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    REQUIRE_OK(open_image(ok, 8, -1, &f));
    st_close(&f);
    CHECK(open_image(ok, 4, -1, &f) == CX_EFORMAT);                       // data truncated
    CHECK(strstr(cx_errmsg(), "'a'") != NULL);
    CHECK(open_image(ok, 8, 1 << 30, &f) == CX_EFORMAT);                  // header length past EOF
    CHECK(open_image("{\"a\":{\"dtype\":\"F32\",", 8, -1, &f) == CX_EFORMAT);  // cut JSON
    CHECK(open_image("{\"a\":{\"dtype\":\"Q8\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, -1, &f) == CX_EFORMAT);
    CHECK(open_image("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 12, -1, &f) == CX_EFORMAT);
    CHECK(open_image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, -1, &f) == CX_EFORMAT);
    CHECK(open_image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                     "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16, -1, &f) == CX_EFORMAT);
    CHECK(strstr(cx_errmsg(), "twice") != NULL);
    CHECK(open_image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 16, -1, &f) == CX_EFORMAT);
    CHECK(open_image("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, -1, &f) == CX_EFORMAT);
    CHECK(open_image("[1,2]", 0, -1, &f) == CX_EFORMAT);
    unsigned char *tiny = cx_malloc(3);
    CHECK(st_open_buffer(&f, "tiny", tiny, 3) == CX_EFORMAT);
    CHECK(st_open(&f, "/nonexistent/x.safetensors") == CX_EIO);
}

TEST(safetensors_reads_shared_fixture) {
    StFile f;
    REQUIRE_OK(st_open(&f, test_shared_path("fixtures/edgenext_xx_small.safetensors")));
    CHECK(f.n > 100);
    CHECK(st_meta(&f, "rtol_fwd_f32") != NULL);
    CHECK(st_find(&f, "param/stem.0.weight") != NULL);
    st_close(&f);
}

// Deterministic mutation fuzzing of the safetensors parser: flips, truncations
// and header edits of a valid file must give CX_OK or CX_EFORMAT, never a crash
// (this matters under `make DEBUG=1 test`, where ASan watches every read).
TEST(safetensors_survives_mutations) {
    Arena a;
    arena_init(&a, "test", 1 << 16);
    Tensor x = tensor_new4(&a, DT_F32, 1, 2, 3, 4), y = tensor_new(&a, DT_I64, 1, (int64_t[]){ 3 });
    tensor_fill(&x, 1.5);
    tensor_fill(&y, 7);
    char path[600];
    snprintf(path, sizeof path, "%s/fz.safetensors", test_tmpdir());
    StWriter w;
    st_writer_init(&w);
    st_writer_add(&w, "x", &x);
    st_writer_add(&w, "y", &y);
    st_writer_meta(&w, "k", "v");
    REQUIRE_OK(st_writer_save(&w, path));
    st_writer_free(&w);
    unsigned char *orig;
    size_t n;
    REQUIRE_OK(io_read_file(path, &orig, &n));
    Rng r = rng_init(2024);
    int ok = 0, rejected = 0;
    for (int it = 0; it < 3000; it++) {
        size_t len = n;
        unsigned char *buf = cx_malloc(n);
        memcpy(buf, orig, n);
        int kind = (int)rng_below(&r, 4);
        if (kind == 0) len = (size_t)rng_below(&r, n);                       // truncate
        else if (kind == 1) buf[rng_below(&r, n)] ^= (unsigned char)(1u << rng_below(&r, 8));  // bit flip
        else if (kind == 2) { size_t p = 8 + (size_t)rng_below(&r, n - 8); buf[p] = "0123456789[]{},:\"-e."[rng_below(&r, 20)]; }
        else { for (int b = 0; b < 8; b++) buf[b] = (unsigned char)rng_below(&r, 256); }  // header length
        StFile f;
        cx_status st = st_open_buffer(&f, "fuzz", buf, len);
        if (st == CX_OK) {
            ok++;
            for (int i = 0; i < f.n; i++) {   // every accepted entry must be readable in bounds
                Tensor t = tensor_new(&a, DT_F64, f.entries[i].ndim, f.entries[i].shape);
                CHECK(st_entry_read(&f, &f.entries[i], &t) == CX_OK);
            }
            st_close(&f);
            arena_reset(&a);
        } else {
            rejected++;
            CHECKF(st == CX_EFORMAT, "status %d: %s", st, cx_errmsg());
        }
    }
    CHECK(ok > 0 && rejected > 0);
    free(orig);
    arena_free(&a);
}
