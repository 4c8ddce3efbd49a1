// test_checkpoint_io.c — files on disk: the safetensors reader and writer, the io_ layer's
// opens and atomic writes, and checkpoints (weights, metadata, the training state) — what a
// bad file, a non-finite number or a kill at any moment of a save does to them
// (docs/RELIABILITY.md, rules 2 and 3). A change in core/io.c, core/safetensors.c,
// nn/weights.c or train/checkpoint.c runs these first:
//   ./build/camoxpert_tests tests/test_checkpoint_io.c           (--fast: without the kill test)
// Names keep the prefix they were written with (hostile_: issue 12's and 33's rules).
#include "test.h"
#include "hostile.h"
#include "core/finite.h"
#include "nn/camoxpert.h"
#include "nn/weights.h"
#include "report/runlog.h"
#include "train/checkpoint.h"
#include "infer/open.h"
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// ---- safetensors -------------------------------------------------------------------------------

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

// A safetensors image with the header's own length: open_image's usual case.
static cx_status st_image(StFile *f, const char *header, size_t data) { return open_image(header, data, -1, f); }

// The reader's checks of the data section (issue 33, Low): an empty tensor between two that
// overlap hides nothing, bytes after the last tensor or between two are refused; PyTorch's
// own formats are named with how to convert them (newcomer friction).
TEST(hostile_safetensors_data_is_covered_exactly_and_pytorch_files_are_named) {
    StFile f;
    CHECK(st_image(&f, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12) == CX_EFORMAT &&
          strstr(cx_errmsg(), "overlap"));
    CHECK(st_image(&f, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12) == CX_EFORMAT &&
          strstr(cx_errmsg(), "4 bytes after the last tensor"));
    CHECK(st_image(&f, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12) == CX_EFORMAT &&
          strstr(cx_errmsg(), "4 bytes before tensor 'b'"));
    REQUIRE_OK(st_image(&f, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                            "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                            "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12));
    st_close(&f);
    // torch.save's zip and pickle formats, as predict --weights sees them.
    char t[600], zip[700], pkl[700];
    snprintf(t, sizeof t, "%s", test_tmpdir());
    snprintf(zip, sizeof zip, "%s/best.pth", t);
    snprintf(pkl, sizeof pkl, "%s/old.pt", t);
    FILE *z = fopen(zip, "wb"), *p = fopen(pkl, "wb");
    REQUIRE(z && p);
    static const char zip_head[] = "PK\x03\x04\x14\0\0\0\0\0archive/data.pkl";
    static const char pickle_head[] = "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.";
    fwrite(zip_head, 1, sizeof zip_head - 1, z);
    fwrite(pickle_head, 1, sizeof pickle_head - 1, p);
    fclose(z);
    fclose(p);
    const char *ds = tiny_set("pth_set");
    REQUIRE(ds[0]);
    char *o;
    int rc = run_bin(&o, "predict --weights %s --input %s/Test/Image --out %s/m --threads 1", zip, ds, t);
    CHECKF(rc == 2 && strstr(o, "PyTorch") && strstr(o, "tools/pth_to_safetensors.py") && !strstr(o, "header length"),
           "exit %d: %s", rc, o);
    rc = run_bin(&o, "export --weights %s --onnx %s/x.onnx", pkl, t);
    CHECKF(rc != 0 && strstr(o, "pickle") && strstr(o, "tools/pth_to_safetensors.py"), "exit %d: %s", rc, o);
    CHECKF(io_path_is_regular("tools/pth_to_safetensors.py") || io_path_is_regular("../tools/pth_to_safetensors.py"),
           "the converter the message names is missing");
}

// The duplicate-name check of a safetensors header is n log n: 80,000 entries in well under a second.
TEST(hostile_safetensors_header_checks_are_not_quadratic) {
    const int n = 80000;
    size_t cap = (size_t)n * 80 + 64;
    char *h = cx_malloc(cap);
    size_t len = (size_t)snprintf(h, cap, "{");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(h + len, cap - len, "%s\"t%d\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[%d,%d]}",
                                i ? "," : "", i, i, i + 1);
    len += (size_t)snprintf(h + len, cap - len, "}");
    size_t total = 8 + len + (size_t)n;
    unsigned char *buf = cx_calloc(1, total);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)len >> (8 * i));
    memcpy(buf + 8, h, len);
    double t0 = cx_time_s();
    StFile f;
    REQUIRE_OK(st_open_buffer(&f, "big", buf, total));
    double dt = cx_time_s() - t0;
    CHECKF(f.n == n && dt < 2.0, "%d entries opened in %.2f s", f.n, dt);
    st_close(&f);
    free(h);
    // A duplicate among them is still found: the last entry named like an earlier one.
    char *h2 = cx_malloc(cap);
    len = (size_t)snprintf(h2, cap, "{");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(h2 + len, cap - len, "%s\"t%d\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[%d,%d]}",
                                i ? "," : "", i == n - 1 ? 19999 : i, i, i + 1);
    len += (size_t)snprintf(h2 + len, cap - len, "}");
    total = 8 + len + (size_t)n;
    buf = cx_calloc(1, total);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)len >> (8 * i));
    memcpy(buf + 8, h2, len);
    free(h2);
    CHECK(st_open_buffer(&f, "dup", buf, total) == CX_EFORMAT && strstr(cx_errmsg(), "'t19999' appears twice"));
}

// Long photo names: a mask for a 250-byte name is written (the temporary name does not grow
// with it); an output name over the limit is refused up front, naming it; the summary counts
// the masks written and the photos that failed.

// ---- io_: opens and atomic writes --------------------------------------------------------------

TEST(hostile_io_open_regular_refuses_fifos_and_directories_at_once) {
    char t[600];
    snprintf(t, sizeof t, "%s", test_tmpdir());
    char fifo[700];
    snprintf(fifo, sizeof fifo, "%s/p", t);
    REQUIRE(mkfifo(fifo, 0600) == 0);
    alarm(20);   // a regression hangs here; the alarm turns it into a failure
    unsigned char *b;
    size_t n;
    CHECK(io_read_file(fifo, &b, &n) == CX_EIO && strstr(cx_errmsg(), "FIFO"));
    CHECK(io_read_file(t, &b, &n) == CX_EIO && strstr(cx_errmsg(), "directory"));
    FILE *f;
    CHECK(io_open_regular("/dev/null", &f) == CX_EIO && strstr(cx_errmsg(), "device"));
    alarm(0);
}

TEST(hostile_atomic_write_temp_names_are_short_unpredictable_and_never_follow_symlinks) {
    char t[600];
    snprintf(t, sizeof t, "%s", test_tmpdir());
    // A target name of 250 bytes (the file-name limit is 255): the temporary name does not grow with it.
    char name[251], path[1200];
    memset(name, 'n', 250);
    name[250] = 0;
    snprintf(path, sizeof path, "%s/%s", t, name);
    AtomicFile a, b;
    REQUIRE_OK(io_atomic_begin(&a, path));
    REQUIRE_OK(io_atomic_begin(&b, path));
    CHECKF(strcmp(a.tmp, b.tmp) != 0, "two temporary names alike: %s", a.tmp);
    const char *base = strrchr(a.tmp, '/');
    CHECKF(base && !strncmp(a.tmp, t, strlen(t)) && base - a.tmp == (long)strlen(t), "%s is not in %s", a.tmp, t);
    CHECKF(base && strlen(base + 1) < 40 && !strncmp(base + 1, ".camoxpert-", 11), "temporary name %s", a.tmp);
    CHECKF(!strstr(a.tmp, "tmp.") && !strstr(a.tmp, name), "predictable temporary name %s", a.tmp);
    fputs("a", a.fp);
    fputs("b", b.fp);
    io_atomic_abort(&b);
    CHECK(!io_path_exists(b.tmp));
    REQUIRE_OK(io_atomic_commit(&a));
    unsigned char *buf;
    size_t n;
    REQUIRE_OK(io_read_file(path, &buf, &n));
    CHECK(n == 1 && buf[0] == 'a');
    free(buf);
    // A symlink planted at the target: the rename replaces the link, the file it points to is untouched.
    char victim[700], link[700];
    snprintf(victim, sizeof victim, "%s/victim", t);
    snprintf(link, sizeof link, "%s/target", t);
    FILE *f = fopen(victim, "w");
    REQUIRE(f);
    fputs("precious", f);
    fclose(f);
    REQUIRE(symlink(victim, link) == 0);
    REQUIRE_OK(io_atomic_begin(&a, link));
    fputs("new", a.fp);
    REQUIRE_OK(io_atomic_commit(&a));
    REQUIRE_OK(io_read_file(victim, &buf, &n));
    CHECKF(n == 8 && !memcmp(buf, "precious", 8), "the symlink's target was written: %.*s", (int)n, buf);
    free(buf);
    struct stat st;
    CHECK(lstat(link, &st) == 0 && S_ISREG(st.st_mode));
    // Leftovers of killed writes are found and removed by name.
    REQUIRE_OK(io_atomic_begin(&a, link));
    fclose(a.fp);   // as if killed: the temporary file stays
    CHECK(io_path_exists(a.tmp));
    CHECK(io_atomic_cleanup_dir(t) == 1 && !io_path_exists(a.tmp) && io_path_exists(victim) && io_path_exists(path));
    // In a shared directory only a holder of its lock alone removes them: while one shared
    // holder (a predict) writes there, another joins it and leaves the leftover (that writer
    // may be mid-write); a write in progress is never removed.
    REQUIRE_OK(io_atomic_begin(&a, link));
    fclose(a.fp);
    IoDirLock l1, l2;
    CHECK(io_dir_lock(t, 0, &l1) == CX_OK && l1.removed == 1 && !io_path_exists(a.tmp));
    REQUIRE_OK(io_atomic_begin(&a, link));
    fclose(a.fp);
    CHECK(io_dir_lock(t, 0, &l2) == CX_OK && l2.removed == 0 && io_path_exists(a.tmp));
    io_dir_unlock(&l1);
    io_dir_unlock(&l2);
    REQUIRE_OK(io_atomic_begin(&b, link));
    CHECK(io_dir_lock(t, 0, &l2) == CX_OK && l2.removed == 1 && !io_path_exists(a.tmp) && io_path_exists(b.tmp));
    io_dir_unlock(&l2);
    io_atomic_abort(&b);
}

// ---- checkpoints: weights, metadata, the training state -----------------------------------------

static void make_table(ParamTable *pt) {
    params_init(pt);
    params_add(pt, "conv.weight", 4, (int64_t[]){ 2, 3, 3, 3 }, PG_REST, 0);
    params_add(pt, "bn.running_mean", 1, (int64_t[]){ 2 }, PG_REST, PF_BUFFER);
    params_add(pt, "bn.num_batches_tracked", 0, NULL, PG_REST, PF_BUFFER | PF_COUNTER);
    params_alloc(pt, DT_F32);
}

TEST(checkpoint_round_trip_is_exact) {
    ParamTable a, b;
    make_table(&a);
    make_table(&b);
    Rng r = rng_init(3);
    for (int k = 0; k < 2; k++) {
        Tensor v = params_value(&a, k), g = params_grad(&a, k);
        for (int64_t i = 0; i < tensor_numel(&v); i++) { tensor_f32(&v)[i] = (float)rng_normal(&r); tensor_f32(&g)[i] = (float)rng_normal(&r); }
    }
    params_counter_add(&a, 2, 17);
    Arena sa;
    arena_init(&sa, "scratch", 1 << 16);
    OpCtx op = { .backend = OPS_CPU, .scratch = &sa };
    AdamW oa, ob;
    adamw_init(&oa, &a, 1e-4);
    adamw_init(&ob, &b, 1e-4);
    adamw_step(&op, &oa, &a, 1e-3, NULL);
    Ema ea, eb;
    ema_init(&ea, &a, 0.99);
    ema_init(&eb, &b, 0.99);
    ema_update(&op, &ea, &a);
    TrainState ts = { .stage = 2, .epoch = 5, .global_step = 123, .stage_step = 23, .batch_in_epoch = 7,
                      .best_score = 0.8125, .best_epoch = 4, .seed = 99 }, tb = { 0 };
    const char *dir = test_tmpdir();
    REQUIRE_OK(checkpoint_save(dir, "last", &a, "{\"backbone\":\"x\"}", &ts, &oa, &ea));
    char path[600];
    snprintf(path, sizeof path, "%s/last.safetensors", dir);
    int has = 0;
    REQUIRE_OK(weights_load(&b, path));
    REQUIRE_OK(checkpoint_load_state(path, &b, &tb, &ob, &eb, &has));
    CHECK(has);
    CHECK(memcmp(a.data, b.data, sizeof(float) * (size_t)a.numel) == 0);
    CHECK(memcmp(oa.host_m, ob.host_m, sizeof(float) * (size_t)a.numel) == 0);
    CHECK(memcmp(oa.host_v, ob.host_v, sizeof(float) * (size_t)a.numel) == 0);
    CHECK(params_counter(&b, 2) == 17);
    CHECK(memcmp(oa.steps, ob.steps, sizeof(int64_t) * (size_t)a.n) == 0);
    CHECK(memcmp(ea.shadow, eb.shadow, sizeof(float) * (size_t)a.numel) == 0);
    CHECK(tb.stage == 2 && tb.epoch == 5 && tb.global_step == 123 && tb.stage_step == 23 && tb.batch_in_epoch == 7);
    CHECK(tb.best_score == 0.8125 && tb.best_epoch == 4 && tb.seed == 99);
    char *cfg = NULL;
    REQUIRE_OK(weights_read_config_json(path, &cfg));
    CHECK(cfg && !strcmp(cfg, "{\"backbone\":\"x\"}"));
    free(cfg);
    // The counter is an I64 scalar, as PyTorch writes num_batches_tracked.
    StFile f;
    REQUIRE_OK(st_open(&f, path));
    const StEntry *e = st_find(&f, "bn.num_batches_tracked");
    CHECK(e && e->dtype == DT_I64 && e->ndim == 0);
    st_close(&f);
    // A second save commits a new state and removes the first one's; the weights name the new one.
    char first[700], second[700];
    checkpoint_state_path(path, ts.token, first, sizeof first);
    CHECK(io_path_exists(first));
    REQUIRE_OK(checkpoint_save(dir, "last", &a, NULL, &ts, &oa, &ea));
    checkpoint_state_path(path, ts.token, second, sizeof second);
    CHECK(strcmp(first, second) != 0 && !io_path_exists(first) && io_path_exists(second));
    REQUIRE_OK(checkpoint_load_state(path, &b, &tb, &ob, &eb, &has));
    CHECK(has && tb.token == ts.token);
    // A state renamed by hand to another token's name is refused, naming both files.
    char cmd[4000];
    snprintf(cmd, sizeof cmd, "mv '%s' '%s.keep' && cp '%s.keep' '%s'", second, second, second, first);
    REQUIRE(system(cmd) == 0);
    REQUIRE_OK(checkpoint_save(dir, "last", &a, NULL, &ts, &oa, &ea));   // removes `first`: not the named one
    char third[700];
    checkpoint_state_path(path, ts.token, third, sizeof third);
    snprintf(cmd, sizeof cmd, "mv '%s.keep' '%s'", second, third);
    REQUIRE(system(cmd) == 0);
    CHECK(checkpoint_load_state(path, &b, &tb, &ob, &eb, &has) == CX_EFORMAT);
    CHECK(strstr(cx_errmsg(), "is not the training state") != NULL);
    // A checkpoint from before the token was in the state's name (NAME.state.safetensors) still resumes.
    REQUIRE_OK(checkpoint_save(dir, "last", &a, NULL, &ts, &oa, &ea));
    char named[700], legacy[700];
    checkpoint_state_path(path, ts.token, named, sizeof named);
    checkpoint_state_path(path, 0, legacy, sizeof legacy);
    REQUIRE(rename(named, legacy) == 0);
    has = 0;
    REQUIRE_OK(checkpoint_load_state(path, &b, &tb, &ob, &eb, &has));
    CHECK(has && tb.token == ts.token && tb.global_step == 123);
    adamw_free(&oa); adamw_free(&ob); ema_free(&ea); ema_free(&eb);
    params_free(&a); params_free(&b);
    arena_free(&sa);
}

// A checkpoint (full model, or only its backbone) with one non-finite value in tensor `bad`,
// written directly (checkpoint_save refuses to write one).
static const char *nonfinite_checkpoint(const char *file, const char *bad, int backbone_only) {
    static char path[800];
    Model m;
    if (tiny_model(&m)) return NULL;
    ParamTable *pt = &m.pt;
    int i = -1;   // `bad`, or (NULL) the first weight after the backbone
    for (int k = 0; k < pt->n && i < 0; k++)
        if (bad ? !strcmp(pt->p[k].name, bad) : strncmp(pt->p[k].name, "backbone.", 9) && strstr(pt->p[k].name, ".weight")) i = k;
    if (i < 0) { model_close(&m); return NULL; }
    Tensor v = params_value(pt, i);
    tensor_set(&v, tensor_numel(&v) - 1, NAN);
    snprintf(path, sizeof path, "%s/%s", test_tmpdir(), file);
    StWriter w;
    st_writer_init(&w);
    char *cfg = weights_config_json(&m.cfg, 64);
    if (!backbone_only) st_writer_meta(&w, "camoxpert_config", cfg);
    Arena tmp;
    arena_init(&tmp, "tmp", 1 << 16);
    params_save(pt, &w, backbone_only ? "backbone." : NULL, &tmp);
    cx_status st = st_writer_save(&w, path);
    st_writer_free(&w);
    arena_free(&tmp);
    free(cfg);
    model_close(&m);
    return st ? NULL : path;
}

TEST(hostile_loading_non_finite_weights_is_an_error_naming_the_tensor) {
    const char *ds = tiny_set("nan_set");
    REQUIRE(ds[0]);
    char t[600];
    snprintf(t, sizeof t, "%s", test_tmpdir());
    char *o;
    const char *w = nonfinite_checkpoint("nan.safetensors", NULL, 0);
    REQUIRE(w);
    char photo[700];
    snprintf(photo, sizeof photo, "%s/Test/Image", ds);
    int rc = run_bin(&o, "predict --weights %s --input %s --out %s/pred --threads 1", w, photo, t);
    CHECKF(rc != 0 && strstr(o, "non-finite") && strstr(o, ".weight'"), "predict: exit %d: %s", rc, o);
    char out[700];
    snprintf(out, sizeof out, "%s/pred", t);
    CHECKF(!io_path_exists(out), "predict wrote %s from NaN weights", out);
    rc = run_bin(&o, "train --dataset-path %s --resume-from %s --checkpoint-dir %s/ck --backbone edgenext_xx_small "
                 "--use-sparse-moe --num-experts 4 --top-k 2 --img-size 32 --threads 1", ds, w, t);
    CHECKF(rc != 0 && strstr(o, "non-finite") && strstr(o, ".weight'") && !strstr(o, "lower --lr"), "resume: exit %d: %s", rc, o);
    const char *bw = nonfinite_checkpoint("nan_backbone.safetensors", "backbone.stages_1.blocks.0.gamma", 1);
    REQUIRE(bw);
    rc = run_bin(&o, "train --dataset-path %s --backbone edgenext_xx_small --backbone-weights %s --checkpoint-dir %s/ck2 "
                 "--img-size 32 --threads 1", ds, bw, t);
    CHECKF(rc != 0 && strstr(o, "non-finite") && strstr(o, "stages_1.blocks.0.gamma"), "backbone: exit %d: %s", rc, o);
}

TEST(hostile_a_checkpoint_never_holds_a_non_finite_number) {
    ParamTable pt;
    params_init(&pt);
    params_add(&pt, "a.weight", 2, (int64_t[]){ 3, 4 }, PG_REST, 0);
    params_add(&pt, "b.bias", 1, (int64_t[]){ 4 }, PG_REST, 0);
    params_alloc(&pt, DT_F32);
    AdamW opt;
    adamw_init(&opt, &pt, 1e-4);
    const char *dir = test_tmpdir();
    TrainState ts = { .stage = 1, .seed = 1 };
    REQUIRE_OK(checkpoint_save(dir, "last", &pt, NULL, &ts, &opt, NULL));
    char p[700];
    snprintf(p, sizeof p, "%s/last.safetensors", dir);
    unsigned char *before, *after;
    size_t nb, na;
    REQUIRE_OK(io_read_file(p, &before, &nb));
    Tensor b = params_value(&pt, 1);
    tensor_set(&b, 2, INFINITY);
    CHECK(checkpoint_save(dir, "last", &pt, NULL, &ts, &opt, NULL) == CX_ENUMERIC && strstr(cx_errmsg(), "b.bias"));
    tensor_set(&b, 2, 0);
    opt.host_v[5] = NAN;   // the CPU's moments are their host copies
    CHECK(checkpoint_save(dir, "last", &pt, NULL, &ts, &opt, NULL) == CX_ENUMERIC && strstr(cx_errmsg(), "adamw.v"));
    REQUIRE_OK(io_read_file(p, &after, &na));
    CHECK(na == nb && !memcmp(before, after, nb));   // the previous checkpoint is untouched
    free(before), free(after);
    adamw_free(&opt);
    params_free(&pt);
}

// A checkpoint whose metadata img_size is not a valid input size: an error naming it (predict),
// unless --img-size is given.
TEST(hostile_checkpoint_img_size_metadata_is_checked) {
    const char *ds = tiny_set("meta_set");
    REQUIRE(ds[0]);
    char t[600];
    snprintf(t, sizeof t, "%s", test_tmpdir());
    static const char *const bad[] = { "33", "-32", "1073741824", "\"352\"", NULL };
    char photos[800];
    snprintf(photos, sizeof photos, "%s/Test/Image", ds);
    CamoXpertConfig mc;
    REQUIRE_OK(camoxpert_config(&mc, "edgenext_xx_small", 0, 4, 2));
    Model m;
    REQUIRE_OK(model_open(&m, &(ModelSpec){ .config = &mc, .init_seed = 2 }));
    for (int i = 0; bad[i]; i++) {
        char cfg[512], dir[700];
        snprintf(cfg, sizeof cfg, "{\"model\":\"CamoXpertCOD\",\"backbone\":\"edgenext_xx_small\",\"sparse\":false,"
                 "\"img_size\":%s}", bad[i]);
        snprintf(dir, sizeof dir, "%s/meta%d", t, i);
        REQUIRE_OK(checkpoint_save(dir, "m", &m.pt, cfg, NULL, NULL, NULL));
        char *o;
        int rc = run_bin(&o, "predict --weights %s/m.safetensors --input %s --out %s/out --threads 1", dir, photos, dir);
        CHECKF(rc == 2 && strstr(o, "img_size") && strstr(o, "--img-size"), "img_size %s: exit %d: %s", bad[i], rc, o);
        rc = run_bin(&o, "predict --weights %s/m.safetensors --input %s --out %s/out --img-size 64 --threads 1", dir, photos, dir);
        CHECKF(rc == 0, "img_size %s with --img-size 64: exit %d: %s", bad[i], rc, o);
    }
    model_close(&m);
}

// train suggests --skip-bad for a bad file, and accepts it.

// Rewrites one __metadata__ value of the safetensors file at path, in place.
static cx_status set_meta(const char *path, const char *key, const char *value) {
    unsigned char *buf;
    size_t n;
    CX_TRY(io_read_file(path, &buf, &n));
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | buf[i];
    cJSON *h = cJSON_ParseWithLength((char *)buf + 8, hl);
    cJSON *m = cJSON_GetObjectItemCaseSensitive(h, "__metadata__");
    cJSON_ReplaceItemInObjectCaseSensitive(m, key, cJSON_CreateString(value));
    char *js = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    size_t L = strlen(js), P = (L + 7) / 8 * 8;
    FILE *fp = fopen(path, "wb");
    for (int i = 0; fp && i < 8; i++) fputc((int)((uint64_t)P >> (8 * i)), fp);
    if (fp) {
        fwrite(js, 1, L, fp);
        for (size_t i = L; i < P; i++) fputc(' ', fp);
        fwrite(buf + 8 + hl, 1, n - 8 - hl, fp);
        fclose(fp);
    }
    free(js);
    free(buf);
    return fp ? CX_OK : CX_FAIL(CX_EIO, "cannot write %s", path);
}

// The training state's metadata is validated on resume: what cannot be is an error naming
// the key, before any step (issue 33: version "9", stage 0 or 3, best_score NaN or 2.0, a
// huge batch_in_epoch, a negative global_step, world 1000000 were accepted).
TEST_SLOW(hostile_a_resume_refuses_training_state_metadata_that_cannot_be) {
    const char *run = tiny_run("state");
    REQUIRE(run[0]);
    char last[800], sp[1000], keep[1100], cmd[3000], *o;
    snprintf(last, sizeof last, "%s/last.safetensors", run);
    uint64_t tok;
    REQUIRE_OK(checkpoint_read_token(last, &tok));
    checkpoint_state_path(last, tok, sp, sizeof sp);
    snprintf(keep, sizeof keep, "%s.keep", sp);
    snprintf(cmd, sizeof cmd, "cp %s %s", sp, keep);
    REQUIRE(system(cmd) == 0);
    static const char *const bad[][2] = { { "version", "9" }, { "stage", "0" }, { "stage", "3" }, { "best_score", "nan" },
                                          { "best_score", "2.0" }, { "batch_in_epoch", "1000000000000000000" },
                                          { "global_step", "-5" }, { "world", "1000000" }, { "epoch", "1.5" } };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(cmd, sizeof cmd, "cp %s %s", keep, sp);
        REQUIRE(system(cmd) == 0);
        REQUIRE_OK(set_meta(sp, bad[i][0], bad[i][1]));
        int rc = run_bin(&o, "train --resume-from %s --epochs 2 --threads 1 --num-workers 1 --progress 0", last);
        CHECKF(rc != 0 && rc != 124 && strstr(o, bad[i][0]) && !strstr(o, "\"type\":\"step\""), "%s = %s: exit %d: %s",
               bad[i][0], bad[i][1], rc, o);
    }
    // A cursor within the file's bounds but past this data set's epoch.
    snprintf(cmd, sizeof cmd, "cp %s %s", keep, sp);
    REQUIRE(system(cmd) == 0);
    REQUIRE_OK(set_meta(sp, "batch_in_epoch", "1000000"));
    REQUIRE_OK(set_meta(sp, "samples_in_epoch", "4000000"));   // batch 4, one rank: the same cursor
    int rc = run_bin(&o, "train --resume-from %s --epochs 2 --threads 1 --num-workers 1 --progress 0", last);
    CHECKF(rc != 0 && strstr(o, "cannot resume at epoch"), "batch_in_epoch 1000000: exit %d: %s", rc, o);
    snprintf(cmd, sizeof cmd, "cp %s %s", keep, sp);
    REQUIRE(system(cmd) == 0);
    rc = run_bin(&o, "train --resume-from %s --epochs 2 --threads 1 --num-workers 1 --progress 0", last);
    CHECKF(rc == 0, "the untouched state: exit %d: %s", rc, o);
}

// ---- rule 2: a kill at any moment leaves a resumable run; best never goes back ---------

TEST_SLOW(hostile_a_kill_at_any_checkpoint_moment_leaves_a_resumable_run_and_best_never_goes_back) {
    const char *ds = tiny_set("kill_set");
    REQUIRE(ds[0]);
    char t[600];
    snprintf(t, sizeof t, "%s", test_tmpdir());
    const char *opts = "--backbone edgenext_xx_small --img-size 32 --batch-size 4 --epochs 2 --stage1-epochs 1 "
                       "--use-sparse-moe --num-experts 2 --top-k 1 --use-ema --ema-decay 0.5 --val-fraction 0.25 "
                       "--lr 3e-3 --stage2-lr 3e-3 --seed 5 --threads 1 --num-workers 1 --progress 0";
    char *o;
    char ref[700];
    snprintf(ref, sizeof ref, "%s/ref", t);
    REQUIRE(run_bin(&o, "train --dataset-path %s --checkpoint-dir %s %s", ds, ref, opts) == 0);
    RunSummary want;
    run_summary_read(ref, &want);
    REQUIRE(want.steps > 0 && want.best_sm > 0);
    // Kill the run at the N-th crash point (inside every atomic write of every save: before and
    // after each rename, after the old state's removal), then continue it as a user would.
    int n = 1;
    for (; n < 40; n++) {
        char d[700], cmd[4000];
        snprintf(d, sizeof d, "%s/kill%d", t, n);
        snprintf(cmd, sizeof cmd, "%d", n);
        setenv("CAMOXPERT_CRASH_AT", cmd, 1);
        int rc = run_bin(&o, "train --dataset-path %s --checkpoint-dir %s %s", ds, d, opts);
        unsetenv("CAMOXPERT_CRASH_AT");
        if (rc == 0) break;   // past the last crash point: the run finished
        CHECKF(rc == 124, "crash point %d: exit %d (expected SIGKILL): %s", n, rc, o);
        char last[800];
        snprintf(last, sizeof last, "%s/last.safetensors", d);
        if (io_path_exists(last)) rc = run_bin(&o, "train --resume-from %s --threads 1 --num-workers 1", last);
        else rc = run_bin(&o, "train --dataset-path %s --checkpoint-dir %s %s", ds, d, opts);
        CHECKF(rc == 0, "after a kill at crash point %d: exit %d: %s", n, rc, o);
        RunSummary got;
        run_summary_read(d, &got);
        CHECKF(got.steps == want.steps && !got.dup, "crash point %d: %d steps logged (duplicates %d), uninterrupted %d",
               n, got.steps, got.dup, want.steps);
        CHECKF(got.best_sm == want.best_sm, "crash point %d: best Sα %.17g, uninterrupted %.17g", n, got.best_sm,
               want.best_sm);
        snprintf(cmd, sizeof cmd, "ls -a %s | grep -c -e '\\.tmp$' -e '\\.state\\.' > %s/count", d, t);
        system(cmd);
        char cp[800];
        snprintf(cp, sizeof cp, "%s/count", t);
        unsigned char *cnt;
        size_t cn;
        if (!io_read_file(cp, &cnt, &cn)) {
            CHECKF(atoi((char *)cnt) == 1, "crash point %d: %d temporary or state files left (one state expected)", n,
                   atoi((char *)cnt));
            free(cnt);
        }
        if (test_failed()) break;
    }
    CHECKF(n >= 10, "only %d crash points were reached", n - 1);
    printf("  %d crash points, each killed and resumed\n", n - 1);
}

// ---- rule 1 (train): never overwrite another run; rule 6: resume writes beside its checkpoint


TEST_SLOW(hostile_train_never_overwrites_another_run_and_resume_writes_beside_its_checkpoint) {
    const char *ds = tiny_set("own_set");
    REQUIRE(ds[0]);
    char t[600];
    snprintf(t, sizeof t, "%s", test_tmpdir());
    const char *base = "--backbone edgenext_xx_small --img-size 32 --batch-size 4 --stage1-epochs 1 "
                       "--val-fraction 0.25 --threads 1 --num-workers 1 --progress 0";
    char opts[1000];
    snprintf(opts, sizeof opts, "%s --epochs 1", base);
    char *o;
    char a[700], la[800], ba[800], loga[800];
    snprintf(a, sizeof a, "%s/run_a", t);
    snprintf(la, sizeof la, "%s/last.safetensors", a);
    snprintf(ba, sizeof ba, "%s/best.safetensors", a);
    snprintf(loga, sizeof loga, "%s/train_log.jsonl", a);
    // A run that fails before its first write (no such dataset) leaves no directory behind.
    char none[700];
    snprintf(none, sizeof none, "%s/never_made", t);
    CHECK(run_bin(&o, "train --dataset-path %s/nonexistent --checkpoint-dir %s %s", t, none, opts) != 0 && !io_path_exists(none));
    REQUIRE(run_bin(&o, "train --dataset-path %s --checkpoint-dir %s %s", ds, a, opts) == 0);
    uint64_t hl = file_hash(la), hb = file_hash(ba), hg = file_hash(loga);
    // A new run into it: refused before any work, nothing touched.
    int rc = run_bin(&o, "train --dataset-path %s --checkpoint-dir %s %s --seed 9", ds, a, opts);
    CHECKF(rc == 2 && strstr(o, "holds the checkpoints of another run") && strstr(o, "--overwrite"), "exit %d: %s", rc, o);
    CHECK(file_hash(la) == hl && file_hash(ba) == hb && file_hash(loga) == hg);
    // Following the old advice — delete the state and resume — is a new run too: refused, best kept.
    uint64_t tok = 0;
    REQUIRE_OK(checkpoint_read_token(la, &tok));
    char sp[1000];
    checkpoint_state_path(la, tok, sp, sizeof sp);
    char keep[1100];
    snprintf(keep, sizeof keep, "%s.keep", sp);
    REQUIRE(rename(sp, keep) == 0);
    rc = run_bin(&o, "train --resume-from %s", la);
    CHECKF(rc == 2 && strstr(o, "no training state") && strstr(o, "--overwrite"), "exit %d: %s", rc, o);
    CHECK(file_hash(la) == hl && file_hash(ba) == hb && file_hash(loga) == hg);
    REQUIRE(rename(keep, sp) == 0);
    // The run's files moved elsewhere: resuming writes beside them, not into the directory
    // recorded in the checkpoint's options (run_a, now gone).
    char b[700], lb[800];
    snprintf(b, sizeof b, "%s/moved", t);
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "mv %s %s", a, b);
    REQUIRE(system(cmd) == 0);
    snprintf(lb, sizeof lb, "%s/last.safetensors", b);
    rc = run_bin(&o, "train --resume-from %s --epochs 2", lb);
    CHECKF(rc == 0 && strstr(o, "resumed from"), "exit %d: %s", rc, o);
    CHECKF(!io_path_exists(a), "the resumed run wrote into %s, the directory recorded in the checkpoint", a);
    RunSummary r;
    run_summary_read(b, &r);
    CHECKF(r.steps >= 2 && !r.dup, "%d steps logged in %s (duplicates %d)", r.steps, b, r.dup);
    // --overwrite replaces a run: its old checkpoints and log are gone.
    rc = run_bin(&o, "train --dataset-path %s --checkpoint-dir %s %s --overwrite --seed 9", ds, b, opts);
    CHECKF(rc == 0, "exit %d: %s", rc, o);
    RunSummary r2;
    run_summary_read(b, &r2);
    CHECKF(r2.steps * 2 == r.steps && !r2.dup, "after --overwrite: %d steps logged (the first run had %d)", r2.steps, r.steps);
    // A second train into the same directory while one runs: refused by the lock; so is a
    // predict into it (issue 33, finding 3: it removed the trainer's temporary file).
    char c[700];
    snprintf(c, sizeof c, "%s/run_c", t);
    snprintf(cmd, sizeof cmd, "%s train --dataset-path %s --checkpoint-dir %s %s --epochs 50 > /dev/null 2>&1 & pid=$!; "
             "for i in $(seq 300); do test -s %s/train_log.jsonl && break; sleep 0.05; done; "
             "%s train --dataset-path %s --checkpoint-dir %s %s > %s/second.out 2>&1; rc=$?; "
             "%s predict --weights %s/last.safetensors --input %s/Test/Image --out %s --threads 1 > %s/predict.out 2>&1; "
             "rp=$?; kill -9 $pid; { wait $pid; } 2>/dev/null; test $rp = 2 || exit 99; exit $rc",
             test_bin_path(), ds, c, base, c, test_bin_path(), ds, c, opts, t, test_bin_path(), b, ds, c, t);
    int st = system(cmd);
    rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    char so[800];
    snprintf(so, sizeof so, "%s/second.out", t);
    unsigned char *out = NULL, *pout = NULL;
    size_t n;
    io_read_file(so, &out, &n);
    snprintf(so, sizeof so, "%s/predict.out", t);
    io_read_file(so, &pout, &n);
    CHECKF(rc != 0 && rc != 99 && out && strstr((char *)out, "in use by camoxpert train (pid"), "exit %d: %s", rc,
           out ? (char *)out : "");
    CHECKF(rc != 99 && pout && (strstr((char *)pout, "in use by camoxpert train (pid") || strstr((char *)pout, "holds a training run")),
           "predict into a running run: %s",
           pout ? (char *)pout : "");
    free(out);
    free(pout);
}

TEST(hostile_best_checkpoint_is_never_replaced_by_a_lower_score) {
    ParamTable pt;
    params_init(&pt);
    params_add(&pt, "w", 1, (int64_t[]){ 4 }, PG_REST, 0);
    params_alloc(&pt, DT_F32);
    const char *dir = test_tmpdir();
    char p[700];
    snprintf(p, sizeof p, "%s/best.safetensors", dir);
    int saved;
    REQUIRE_OK(checkpoint_save_best(dir, &pt, NULL, 0.5, 3, &saved));
    CHECK(saved);
    uint64_t h = file_hash(p);
    REQUIRE_OK(checkpoint_save_best(dir, &pt, NULL, 0.4, 7, &saved));
    CHECK(!saved && file_hash(p) == h);
    double sc;
    int ep;
    REQUIRE_OK(checkpoint_read_best(p, &sc, &ep));
    CHECK(sc == 0.5 && ep == 3);
    REQUIRE_OK(checkpoint_save_best(dir, &pt, NULL, 0.6, 8, &saved));
    CHECK(saved && !checkpoint_read_best(p, &sc, &ep) && sc == 0.6 && ep == 8);
    params_free(&pt);
}
