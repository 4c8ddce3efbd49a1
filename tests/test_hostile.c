// test_hostile.c — the program as a careless or hostile user runs it (issue 12;
// docs/RELIABILITY.md). Each test checks one rule for every command and option it
// applies to, mostly through the program built beside this runner (build/camoxpert,
// or $CAMOXPERT_TEST_BIN to show a rule failing on another build), with a time limit
// so that a hang is a failure rather than a stuck run:
//   1. never overwrite what camoxpert did not write (predict, eval, bench, synth, train);
//   2. a checkpoint is replaced atomically as a whole: a kill at every moment of a save
//      leaves a resumable run, and best never goes back (test_checkpoint_io.c);
//   3. non-finite numbers never enter training or a checkpoint (options here; loads and
//      saves in test_checkpoint_io.c);
//   4. verify fails on any non-finite value, on either side, at any index;
//   5. no input hangs or crashes the program (FIFOs, thread counts);
//   6. a resumed run writes beside the checkpoint it resumes (test_checkpoint_io.c);
//   7. the memory of a job is known (and checked) before the work;
//   8. the smaller ones: data breaking mid-run, empty masks, one-pixel GT, --skip-bad, long
//      names, report formats, and — checked on every run below — messages name only
//      options their command has.
// Files on disk (safetensors, atomic writes, checkpoints) are test_checkpoint_io.c's.
#include "test.h"
#include "hostile.h"
#include "nn/runtime.h"
#include "core/finite.h"
#include "core/text.h"
#include "data/image.h"
#include <cjson/cJSON.h>
#include "nn/camoxpert.h"
#include "nn/memory.h"
#include "train/loss.h"
#include "train/checkpoint.h"
#include "infer/open.h"
#include "nn/weights.h"
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>


// ---- rule 5: no input can hang the program ---------------------------------------------

TEST(hostile_fifo_where_a_file_is_expected_is_an_error_not_a_hang) {
    const char *ck = tiny_checkpoint();
    const char *ds = tiny_set("fifo_set");
    REQUIRE(ck && ds[0]);
    char t[600];
    snprintf(t, sizeof t, "%s", test_tmpdir());
    char fifo[700], photos[700];
    snprintf(fifo, sizeof fifo, "%s/pipe.safetensors", t);
    REQUIRE(mkfifo(fifo, 0600) == 0);
    snprintf(photos, sizeof photos, "%s/photos", t);
    REQUIRE_OK(io_make_dirs(photos));
    char *o;
    // Each option that names a file, given a FIFO: a prompt error naming it.
    struct { const char *what; int rc; } r[8];
    int n = 0;
    r[n].what = "predict --weights";
    r[n++].rc = run_bin(&o, "predict --weights %s --input %s --out %s/out --threads 1", fifo, photos, t);
    CHECKF(strstr(o, fifo) && strstr(o, "FIFO"), "%s", o);
    r[n].what = "predict --input";
    r[n++].rc = run_bin(&o, "predict --weights %s --input %s --out %s/out2 --threads 1", ck, fifo, t);
    CHECKF(strstr(o, fifo) && strstr(o, "FIFO"), "%s", o);
    r[n].what = "train --resume-from";
    r[n++].rc = run_bin(&o, "train --dataset-path %s --checkpoint-dir %s/ck1 --resume-from %s --threads 1", ds, t, fifo);
    CHECKF(strstr(o, fifo) && strstr(o, "FIFO"), "%s", o);
    r[n].what = "train --backbone-weights";
    r[n++].rc = run_bin(&o, "train --dataset-path %s --checkpoint-dir %s/ck2 --backbone edgenext_xx_small "
                        "--backbone-weights %s --img-size 32 --threads 1", ds, t, fifo);
    CHECKF(strstr(o, fifo) && strstr(o, "FIFO"), "%s", o);
    r[n].what = "verify FIXTURE";
    r[n++].rc = run_bin(&o, "verify %s", fifo);
    CHECKF(strstr(o, fifo) && strstr(o, "FIFO"), "%s", o);
    // A dataset file that is a FIFO: the pre-scan names it (data and train).
    char img[900], gt[900];
    snprintf(img, sizeof img, "%s/Train/Image/SYN-CAM-zz-999999.jpg", ds);
    snprintf(gt, sizeof gt, "%s/Train/GT_Object/SYN-CAM-zz-999999.png", ds);
    REQUIRE(mkfifo(img, 0600) == 0);
    REQUIRE(mkfifo(gt, 0600) == 0);
    r[n].what = "data (a FIFO in the dataset)";
    r[n++].rc = run_bin(&o, "data --dataset-path %s", ds);
    CHECKF(strstr(o, "SYN-CAM-zz-999999") && strstr(o, "FIFO"), "%s", o);
    r[n].what = "train (a FIFO in the dataset)";
    r[n++].rc = run_bin(&o, "train --dataset-path %s --checkpoint-dir %s/ck3 --backbone edgenext_xx_small --img-size 32 "
                        "--threads 1", ds, t);
    CHECKF(strstr(o, "SYN-CAM-zz-999999") && strstr(o, "FIFO"), "%s", o);
    // A prediction that is a FIFO, for eval.
    char pred[700], pf[800];
    snprintf(pred, sizeof pred, "%s/pred", t);
    REQUIRE_OK(io_make_dirs(pred));
    snprintf(pf, sizeof pf, "%s/SYN-CAM-sand-000013.png", pred);
    REQUIRE(mkfifo(pf, 0600) == 0);
    char one_gt[700];
    snprintf(one_gt, sizeof one_gt, "%s/gt_one", t);
    REQUIRE_OK(io_make_dirs(one_gt));
    char cmd[3000];
    snprintf(cmd, sizeof cmd, "cp %s/Test/GT_Object/SYN-CAM-*-000013.png %s/SYN-CAM-sand-000013.png", ds, one_gt);
    REQUIRE(system(cmd) == 0);
    r[n].what = "eval (a FIFO prediction)";
    r[n++].rc = run_bin(&o, "eval --pred %s --gt %s --threads 1", pred, one_gt);
    CHECKF(strstr(o, pf) && strstr(o, "FIFO"), "%s", o);
    for (int i = 0; i < n; i++) CHECKF(r[i].rc != 124 && r[i].rc != 0, "%s: exit %d (124: hung)", r[i].what, r[i].rc);
}

TEST(hostile_threads_are_capped_in_every_command) {
    // Every command whose --help offers --threads (one rule, applied by the option parser):
    // 100000 and -3 are refused before any work, naming the value.
    char *o;
    int n = 0;
    for (int i = 0; hostile_commands[i]; i++) {
        REQUIRE(run_bin(&o, "%s --help", hostile_commands[i]) == 0);
        if (!strstr(o, "  --threads ")) continue;
        n++;
        int rc = run_bin(&o, "%s --threads 100000", hostile_commands[i]);
        CHECKF(rc == 2 && strstr(o, "--threads 100000"), "%s: exit %d: %s", hostile_commands[i], rc, o);
        rc = run_bin(&o, "%s --threads -3", hostile_commands[i]);
        CHECKF(rc == 2 && strstr(o, "--threads -3"), "%s: exit %d: %s", hostile_commands[i], rc, o);
    }
    CHECKF(n >= 7, "only %d commands have --threads", n);
    // Worker threads too.
    int rc = run_bin(&o, "train --dataset-path x --num-workers 100000");
    CHECKF(rc == 2 && strstr(o, "--num-workers 100000"), "exit %d: %s", rc, o);
    rc = run_bin(&o, "data --dataset-path x --workers 100000");
    CHECKF(rc == 2 && strstr(o, "--workers 100000"), "exit %d: %s", rc, o);
}

// ---- rule 3: numbers are finite and in range ---------------------------------------------

// Every option of every command whose --help shows a numeric default refuses nan, inf and an
// overflowing value before doing anything, naming the option.
TEST(hostile_every_numeric_option_of_every_command_refuses_non_finite_values) {
    const char *const *cmds = hostile_commands;
    static const char *const bad[] = { "nan", "inf", "-inf", "1e400", NULL };
    char *o;
    int checked = 0;
    for (int c = 0; cmds[c]; c++) {
        REQUIRE(run_bin(&o, "%s --help", cmds[c]) == 0);
        char *help = cx_strdup(o);
        for (char *line = strtok(help, "\n"); line; line = strtok(NULL, "\n")) {
            if (strncmp(line, "  --", 4) || strlen(line) < 36) continue;
            char name[64], meta[64] = "";
            if (sscanf(line + 4, "%63s %63s", name, meta) < 1) continue;
            if (line[4 + strlen(name)] != ' ' || line[5 + strlen(name)] == ' ') continue;   // a flag: no value
            const char *d = strstr(line, "(default ");
            if (!d || !(d[9] == '-' || (d[9] >= '0' && d[9] <= '9'))) continue;     // not a numeric option
            for (int b = 0; bad[b]; b++) {
                int rc = run_bin(&o, "%s --%s %s", cmds[c], name, bad[b]);
                char want[80];
                snprintf(want, sizeof want, "--%s", name);
                CHECKF(rc == 2 && strstr(o, want), "%s --%s %s: exit %d: %s", cmds[c], name, bad[b], rc, o);
            }
            checked++;
        }
        free(help);
    }
    CHECKF(checked >= 40, "only %d numeric options found in the --help texts", checked);
}

// Every numeric option of train is range-checked with a message naming it (exit 2, nothing started).
TEST(hostile_train_numeric_options_are_range_checked) {
    static const char *const cases[] = {
        "--lr 0", "--lr -1e-3", "--lr 1e9", "--stage2-lr 0", "--stage2-lr 5", "--weight-decay -1",
        "--weight-decay 1", "--min-lr -1", "--warmup-epochs -1", "--warmup-epochs 1e9", "--grad-clip -1",
        "--use-ema --ema-decay 1", "--use-sparse-moe --lb-coef -1", "--use-sparse-moe --lb-coef 1e9",
        "--use-sparse-moe --router-lr-scale -1", "--use-sparse-moe --balance bias --bias-update-rate -1",
        "--val-fraction 1", "--val-fraction -0.5", "--batch-size 0", "--batch-size 1000000",
        "--stage2-batch-size -1", "--img-size 1000000", "--img-size 33", "--img-size -32", "--epochs 0",
        "--accumulation-steps 0", "--scheduler cosine_restart --t-mult 0", "--max-steps -1", "--progress 5",
        "--val-every 0", "--use-sparse-moe --num-experts 0", NULL };
    char *o;
    for (int i = 0; cases[i]; i++) {
        int rc = run_bin(&o, "train --dataset-path /nonexistent %s", cases[i]);
        // The option named is the last one of the case ("--use-ema --ema-decay 1" -> --ema-decay).
        const char *last = cases[i], *q;
        while ((q = strstr(last + 2, " --"))) last = q + 1;
        char name[64];
        sscanf(last, "%63s", name);
        CHECKF(rc == 2 && strstr(o, name), "train %s: exit %d: %s", cases[i], rc, o);
    }
}

// ---- rule 4: parity checks fail on any non-finite value ----------------------------------

TEST(hostile_rel_err_fails_on_a_non_finite_value_anywhere_on_either_side) {
    const int64_t n = 5;
    const double specials[3] = { NAN, INFINITY, -INFINITY };
    for (int side = 0; side < 2; side++)
        for (int64_t at = 0; at < n; at++)
            for (int k = 0; k < 3; k++) {
                float a[5] = { 1, 2, 3, 4, 5 }, b[5] = { 1, 2, 3, 4, 5 };
                (side ? b : a)[at] = (float)specials[k];
                Tensor ta = tensor_view(a, DT_F32, 1, &n), tb = tensor_view(b, DT_F32, 1, &n);
                int64_t bad;
                double e = tensor_rel_err(&ta, &tb, 0, &bad);
                CHECKF(!(e <= 1e30) && bad == at, "side %d index %lld value %g: err %g, bad %lld", side, (long long)at,
                       specials[k], e, (long long)bad);
                CHECKF(!(test_rel_err(&ta, &tb, 0) <= 1e30), "test_rel_err passes a non-finite value at %lld", (long long)at);
            }
    float a[5] = { 1, 2, 3, 4, 5 }, b[5] = { 1, 2, 3, 4, 5.5f };
    Tensor ta = tensor_view(a, DT_F32, 1, &n), tb = tensor_view(b, DT_F32, 1, &n);
    int64_t bad;
    CHECK_NEAR(tensor_rel_err(&ta, &tb, 0, &bad), 0.5 / 5.5, 1e-7);
    CHECK(bad == -1);
}

// A copy of a fixture with one reference value made non-finite (first or last element of a tensor).
static const char *fixture_with(const char *name, int last, float value) {
    static char out[800];
    unsigned char *buf;
    size_t n;
    if (io_read_file("tests/fixtures/edgenext_base_1x65x47.safetensors", &buf, &n)) return NULL;
    StFile f;
    unsigned char *copy = cx_malloc(n);
    memcpy(copy, buf, n);
    if (st_open_buffer(&f, "fixture", buf, n)) return NULL;
    const StEntry *e = st_find(&f, name);
    if (!e || e->dtype != DT_F32) { st_close(&f); free(copy); return NULL; }
    size_t off = (size_t)((const unsigned char *)e->data - f.buf) + (last ? e->end - e->begin - 4 : 0);
    memcpy(copy + off, &value, 4);
    st_close(&f);
    snprintf(out, sizeof out, "%s/fixture_%d.safetensors", test_tmpdir(), last);
    FILE *fp = fopen(out, "wb");
    if (!fp) { free(copy); return NULL; }
    fwrite(copy, 1, n, fp);
    fclose(fp);
    free(copy);
    return out;
}

TEST(hostile_verify_fails_a_fixture_with_a_nan_or_inf_anywhere) {
    char *o;
    const char *fx = fixture_with("output/feat0", 0, NAN);
    REQUIRE(fx);
    int rc = run_bin(&o, "verify %s --quiet --threads 1", fx);
    CHECKF(rc == 1 && strstr(o, "FAIL") && strstr(o, "non-finite value at index 0"), "exit %d: %s", rc, o);
    fx = fixture_with("grad/param/stem.0.bias", 1, INFINITY);
    REQUIRE(fx);
    rc = run_bin(&o, "verify %s --quiet --threads 1", fx);
    CHECKF(rc == 1 && strstr(o, "FAIL") && strstr(o, "non-finite value at index 79"), "exit %d: %s", rc, o);
}

// ---- rule 1: never overwrite what camoxpert did not write ---------------------------------

TEST(hostile_no_command_overwrites_what_camoxpert_did_not_write) {
    const char *ck = tiny_checkpoint();
    const char *ds = tiny_set("owner_set");
    REQUIRE(ck && ds[0]);
    char t[600];
    snprintf(t, sizeof t, "%s", test_tmpdir());
    char *o, photos[700], gt[700], out[700], cmd[8000];
    snprintf(photos, sizeof photos, "%s/Test/Image", ds);
    snprintf(gt, sizeof gt, "%s/Test/GT_Object", ds);
    snprintf(out, sizeof out, "%s/masks", t);
    uint64_t h_gt = dir_hash(gt), h_ph = dir_hash(photos);
    // predict --out = --input: the photos' own folder (PNG photos here: the masks would replace them).
    int rc = run_bin(&o, "predict --weights %s --input %s --out %s --threads 1", ck, gt, gt);
    CHECKF(rc == 2 && strstr(o, "folder of the photos"), "predict --out = --input: exit %d: %s", rc, o);
    // predict --out = a dataset's ground-truth folder: every mask there is someone else's.
    rc = run_bin(&o, "predict --weights %s --input %s --out %s --threads 1", ck, photos, gt);
    CHECKF(rc == 2 && strstr(o, "was not written by camoxpert predict") && strstr(o, "--overwrite"),
           "predict --out GT: exit %d: %s", rc, o);
    CHECK(dir_hash(gt) == h_gt && dir_hash(photos) == h_ph);
    // A rerun replaces its own outputs; an --input folder holding them does not take them for photos.
    REQUIRE(run_bin(&o, "predict --weights %s --input %s --out %s --overlay --threads 1", ck, photos, out) == 0);
    rc = run_bin(&o, "predict --weights %s --input %s --out %s --overlay --threads 1", ck, photos, out);
    CHECKF(rc == 0 && strstr(o, "wrote 2 masks"), "rerun: exit %d: %s", rc, o);
    char mixed[700];
    snprintf(mixed, sizeof mixed, "%s/mixed", t);
    REQUIRE_OK(io_make_dirs(mixed));
    snprintf(cmd, sizeof cmd, "cp %s/* %s/* %s/", photos, out, mixed);
    REQUIRE(system(cmd) == 0);
    rc = run_bin(&o, "predict --weights %s --input %s --out %s/masks2 --threads 1", ck, mixed, t);
    CHECKF(rc == 0 && strstr(o, "wrote 2 masks") && strstr(o, "4 files") && strstr(o, "left out"),
           "masks taken for photos: exit %d: %s", rc, o);
    // Two photos that would write one mask: an error naming both, nothing written.
    char two[700];
    snprintf(two, sizeof two, "%s/two", t);
    REQUIRE_OK(io_make_dirs(two));
    snprintf(cmd, sizeof cmd, "f=$(ls %s | head -1); cp %s/$f %s/a.jpg; cp %s/$(ls %s | head -1) %s/a.png", photos, photos,
             two, gt, gt, two);
    REQUIRE(system(cmd) == 0);
    rc = run_bin(&o, "predict --weights %s --input %s --out %s/two_out --threads 1", ck, two, t);
    CHECKF(rc == 2 && strstr(o, "a.jpg") && strstr(o, "a.png") && strstr(o, "rename"),
           "colliding outputs: exit %d: %s", rc, o);
    char two_out[800];
    snprintf(two_out, sizeof two_out, "%s/two_out", t);
    CHECK(count_files(two_out) == 0);
    // A symlink planted at an output: refused, its target untouched.
    char lnk[700], victim[800];
    snprintf(lnk, sizeof lnk, "%s/lnk", t);
    REQUIRE_OK(io_make_dirs(lnk));
    snprintf(victim, sizeof victim, "%s/victim.txt", t);
    FILE *f = fopen(victim, "w");
    REQUIRE(f);
    fputs("precious", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "f=$(ls %s | head -1); ln -s %s %s/${f%%.*}.png", photos, victim, lnk);
    REQUIRE(system(cmd) == 0);
    rc = run_bin(&o, "predict --weights %s --input %s --out %s --threads 1", ck, photos, lnk);
    CHECKF(rc == 2 && strstr(o, "symbolic link"), "symlink: exit %d: %s", rc, o);
    CHECK(file_hash(victim) != 0);
    unsigned char *vb;
    size_t vn;
    REQUIRE_OK(io_read_file(victim, &vb, &vn));
    CHECK(vn == 8 && !memcmp(vb, "precious", 8));
    free(vb);
    // eval and bench reports: a file they did not write is refused; their own is replaced.
    char foreign[700];
    snprintf(foreign, sizeof foreign, "%s/notes.json", t);
    f = fopen(foreign, "w");
    REQUIRE(f);
    fputs("{\"my\": \"notes\"}\n", f);
    fclose(f);
    uint64_t hf = file_hash(foreign);
    rc = run_bin(&o, "eval --pred %s --gt %s --json %s --threads 1", out, gt, foreign);
    CHECKF(rc == 2 && strstr(o, "notes.json") && strstr(o, "--overwrite"), "eval --json: exit %d: %s", rc, o);
    rc = run_bin(&o, "eval --pred %s --gt %s --per-image %s --threads 1", out, gt, foreign);
    CHECKF(rc == 2 && strstr(o, "notes.json"), "eval --per-image: exit %d: %s", rc, o);
    rc = run_bin(&o, "bench --backbone edgenext_xx_small --img-size 32 --batch-size 1 --json %s --threads 1", foreign);
    CHECKF(rc == 2 && strstr(o, "notes.json"), "bench --json: exit %d: %s", rc, o);
    CHECK(file_hash(foreign) == hf);
    char rep[700];
    snprintf(rep, sizeof rep, "%s/report", t);
    for (int i = 0; i < 2; i++) {
        rc = run_bin(&o, "eval --pred %s --gt %s --json %s.json --per-image %s.csv --threads 1", out, gt, rep, rep);
        CHECKF(rc == 0, "eval run %d: exit %d: %s", i, rc, o);
    }
    // synth: an existing dataset is replaced only with --overwrite, and then wholly; a folder
    // holding anything else is refused even then.
    rc = run_bin(&o, "synth --out %s --train 3 --test 1 --size 32", ds);
    CHECKF(rc == 2 && strstr(o, "--overwrite"), "synth over a dataset: exit %d: %s", rc, o);
    CHECK(dir_hash(gt) == h_gt);
    rc = run_bin(&o, "synth --out %s --train 3 --test 1 --size 32 --overwrite", ds);
    CHECKF(rc == 0 && count_files(ds) == 3 * 2 + 2 + 1, "synth --overwrite: exit %d, %d files: %s", rc, count_files(ds), o);
    rc = run_bin(&o, "synth --out %s --train 3 --test 1 --size 32 --overwrite", t);
    CHECKF(rc == 2 && strstr(o, "did not write"), "synth into a foreign folder: exit %d: %s", rc, o);
}

// ---- rule 7: know the memory before the work ------------------------------------------------

// The estimate against the arenas' measured peaks, for inference (activations given back
// once read) and a training step at each recomputation level: never below, at most 10 %
// above. The arenas are reserved from the estimate first, as train, bench and predict do.
TEST_SLOW(hostile_memory_estimate_matches_the_measured_peaks) {
    static const struct { const char *bb; int sparse, E, k, B, S; } cases[] = {
        { "edgenext_xx_small", 1, 4, 2, 2, 64 },
        { "edgenext_x_small", 0, 4, 4, 1, 96 },
        { "edgenext_small_rw", 1, 6, 6, 1, 64 },
    };
    cx_threads_set(1);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        for (int mode = 0; mode < 4; mode++) {   // inference, then training at none, cheap, blocks
            const int training = mode > 0;
            const nn_recompute level = training ? (nn_recompute)(mode - 1) : NN_RECOMPUTE_NONE;
            CamoXpertConfig cfg;
            REQUIRE_OK(camoxpert_config(&cfg, cases[i].bb, cases[i].sparse, cases[i].E, cases[i].k));
            Model mo;
            REQUIRE_OK(model_open(&mo, &(ModelSpec){ .config = &cfg, .init_seed = 1, .training = training,
                                                     .inference = !training }));
            CamoXpert *m = mo.net;
            NNCtx *ctx = &mo.rt->ctx;
            ctx->recompute = level;
            const int B = cases[i].B, S = cases[i].S;
            MemEstimate e;
            camoxpert_memory_estimate(&cfg, mo.pt.numel, B, S, training, level, 0, 4, &e);
            runtime_reserve(mo.rt, e.activations, e.scratch);
            Rng rng = rng_init(2);   // the inputs
            Arena io;
            arena_init(&io, "io", 1 << 20);
            Tensor x = tensor_new4(&io, DT_F32, B, S, S, 3), mask = tensor_new4(&io, DT_F32, B, S, S, 1);
            for (int64_t j = 0; j < tensor_numel(&x); j++) tensor_f32(&x)[j] = (float)rng_normal(&rng);
            for (int64_t j = 0; j < tensor_numel(&mask); j++) tensor_f32(&mask)[j] = (j % 7) < 3;
            CamoXpertOutputs o;
            camoxpert_forward(ctx, m, &x, &o);
            if (training) {
                CamoLossWeights w = camo_loss_default_weights();
                CamoLoss L;
                CodOutputs g;
                camo_loss_forward_backward(ctx, &w, &o.maps, &mask, o.balance_loss, &L, &g);
                camoxpert_backward(ctx, m, &g, w.balance, NULL);
            }
            const Arena *act = &mo.rt->act, *scratch = &mo.rt->scratch;
            double ratio = e.activations / (double)act->peak;
            CHECKF(ratio >= 1.0 && ratio <= 1.10, "%s sparse=%d k=%d B=%d S=%d %s: activations estimated %.2f MiB, "
                   "measured %.2f MiB (%.3f)", cases[i].bb, cases[i].sparse, cases[i].k, B, S,
                   training ? nn_recompute_name(level) : "inference", e.activations / 1048576, act->peak / 1048576.0, ratio);
            CHECKF(act->top && !act->top->prev, "%s: the reserved activation arena grew another block", cases[i].bb);
            CHECKF(e.scratch >= (double)scratch->peak, "%s: scratch estimated %.1f MiB, measured %.1f MiB", cases[i].bb,
                   e.scratch / 1048576, scratch->peak / 1048576.0);
            CHECK(e.params == 4.0 * mo.pt.numel && (!training || e.optimizer == 8.0 * mo.pt.numel));
            arena_free(&io);
            model_close(&mo);
        }
    cx_threads_set(0);
}

// A job that cannot fit is refused before its first step, with the estimate and a size that fits.
TEST(hostile_jobs_that_cannot_fit_are_refused_with_a_size_that_fits) {
    const char *ds = tiny_set("mem_set");
    const char *ck = tiny_checkpoint();
    REQUIRE(ds[0] && ck);
    char t[600];
    snprintf(t, sizeof t, "%s", test_tmpdir());
    char *o;
    // the host's memory (the limit is the host's; a GPU is checked against its own free memory, below)
    setenv("CAMOXPERT_MEMORY_LIMIT_MB", "16384", 1);   // a 16 GB machine, whatever this one has
    double t0 = cx_time_s();
    int rc = run_bin(&o, "train --device cpu --dataset-path %s --checkpoint-dir %s/mem --backbone edgenext_base "
                     "--img-size 1024 --batch-size 64 --threads 1", ds, t);
    // (--recompute auto: even blocks does not fit; the batch that fits at blocks is named)
    CHECKF(rc == 2 && strstr(o, "--batch-size 64") && strstr(o, "GiB") && strstr(o, "with --recompute blocks") &&
           strstr(o, "--batch-size 3 fits") && !strstr(o, "epoch 1/"), "train: exit %d: %s", rc, o);
    CHECKF(cx_time_s() - t0 < 30, "the refusal took %.1f s", cx_time_s() - t0);
    rc = run_bin(&o, "bench --device cpu --backbone edgenext_base --img-size 1024 --batch-size 64 --threads 1");
    CHECKF(rc == 2 && strstr(o, "with --recompute blocks") && strstr(o, "--batch-size 3 fits"), "bench: exit %d: %s", rc, o);
    if (test_cuda()) {   // 416 GiB at peak: more than any GPU has
        rc = run_bin(&o, "bench --device cuda --backbone edgenext_base --img-size 1024 --batch-size 64");
        CHECKF(rc == 2 && strstr(o, "free memory of the GPU") && strstr(o, "fits"), "bench on the GPU: exit %d: %s", rc, o);
        rc = run_bin(&o, "train --device cuda --dataset-path %s --checkpoint-dir %s/mem_gpu --backbone edgenext_base "
                     "--img-size 1024 --batch-size 64", ds, t);
        CHECKF(rc == 2 && strstr(o, "free memory of the GPU") && strstr(o, "fits") && !strstr(o, "epoch 1/"),
               "train on the GPU: exit %d: %s", rc, o);
    }
    setenv("CAMOXPERT_MEMORY_LIMIT_MB", "1024", 1);
    char photos[800];
    snprintf(photos, sizeof photos, "%s/Test/Image", ds);
    rc = run_bin(&o, "predict --device cpu --weights %s --input %s --out %s/mem_pred --img-size 4096 --threads 1", ck,
                 photos, t);
    CHECKF(rc == 2 && strstr(o, "--img-size 4096") && strstr(o, "fits"), "predict: exit %d: %s", rc, o);
    unsetenv("CAMOXPERT_MEMORY_LIMIT_MB");
    // The estimate is printed before training starts.
    rc = run_bin(&o, "train --dataset-path %s --checkpoint-dir %s/mem_ok --backbone edgenext_xx_small --img-size 32 "
                 "--batch-size 4 --epochs 1 --stage1-epochs 1 --threads 1 --max-steps 1", ds, t);
    CHECKF(rc == 0 && strstr(o, "memory: about"), "train: exit %d: %s", rc, o);
}

// ---- rule 8: the smaller ones ---------------------------------------------------------------

// A data file that breaks mid-run: training stops with an error naming it, and what was
// trained since the last checkpoint is saved (the checkpoint's step = the steps logged).
TEST(hostile_a_data_file_breaking_mid_run_keeps_what_was_trained) {
    const char *ds = tiny_set("break_set");
    REQUIRE(ds[0]);
    char t[600];
    snprintf(t, sizeof t, "%s", test_tmpdir());
    char ck[700], cmd[8000];
    snprintf(ck, sizeof ck, "%s/break_ck", t);
    REQUIRE_OK(io_make_dirs(ck));
    snprintf(cmd, sizeof cmd,
             "%s train --dataset-path %s --checkpoint-dir %s --backbone edgenext_xx_small --img-size 32 --batch-size 1 "
             "--epochs 20 --stage1-epochs 1 --val-fraction 0 --threads 1 --num-workers 1 --progress 0 > %s/break.out 2>&1 & "
             "pid=$!; for i in $(seq 600); do grep -q '\"step\":3,' %s/train_log.jsonl 2>/dev/null && break; sleep 0.02; done; "
             "rm -f %s/Train/Image/*; wait $pid; exit $?", test_bin_path(), ds, ck, t, ck, ds);
    int st = system(cmd);
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    char p[800];
    snprintf(p, sizeof p, "%s/break.out", t);
    unsigned char *out = NULL;
    size_t n;
    io_read_file(p, &out, &n);
    CHECKF(rc == 1 && out && strstr((char *)out, "Train/Image/") && strstr((char *)out, "are saved in"), "exit %d: %s", rc,
           out ? (char *)out : "");
    free(out);
    RunSummary r;
    run_summary_read(ck, &r);
    snprintf(p, sizeof p, "%s/last.safetensors", ck);
    uint64_t tok = 0;
    REQUIRE_OK(checkpoint_read_token(p, &tok));
    char sp[1000];
    checkpoint_state_path(p, tok, sp, sizeof sp);
    char *gs = NULL;
    REQUIRE_OK(st_read_meta(sp, "global_step", &gs));
    CHECKF(gs && atoi(gs) == r.steps && r.steps >= 3, "checkpoint at step %s, %d steps logged", gs ? gs : "?", r.steps);
    free(gs);
}

// Masks that read as empty (0/1-valued) are a warning naming one, in data and train.
TEST(hostile_empty_masks_are_a_warning) {
    const char *ds = tiny_set("empty_set");
    REQUIRE(ds[0]);
    char t[600];
    snprintf(t, sizeof t, "%s", test_tmpdir());
    for (int split = 0; split < 2; split++) {
        char dir[800];
        snprintf(dir, sizeof dir, "%s/%s/GT_Object", ds, split ? "Test" : "Train");
        char cmd[2000], list[800];
        snprintf(list, sizeof list, "%s/masks.txt", t);
        snprintf(cmd, sizeof cmd, "ls %s > %s", dir, list);
        REQUIRE(system(cmd) == 0);
        unsigned char *b;
        size_t n;
        REQUIRE_OK(io_read_file(list, &b, &n));
        for (char *name = strtok((char *)b, "\n"); name; name = strtok(NULL, "\n")) {
            char p[1200];
            snprintf(p, sizeof p, "%s/%s", dir, name);
            Image8 m;
            REQUIRE_OK(image_load(p, 1, &m));
            for (int64_t i = 0; i < (int64_t)m.w * m.h; i++) m.px[i] = m.px[i] > 128;   // 0/1-valued
            REQUIRE_OK(image_save_png(p, &m));
            image_free(&m);
        }
        free(b);
    }
    char *o;
    int rc = run_bin(&o, "data --dataset-path %s", ds);
    CHECKF(rc == 0 && strstr(o, "have no foreground") && strstr(o, "GT_Object/SYN-CAM-"), "data: exit %d: %s", rc, o);
    rc = run_bin(&o, "train --dataset-path %s --checkpoint-dir %s/empty_ck --backbone edgenext_xx_small --img-size 32 "
                 "--batch-size 4 --epochs 1 --stage1-epochs 1 --max-steps 1 --threads 1", ds, t);
    CHECKF(rc == 0 && strstr(o, "have no foreground"), "train: exit %d: %s", rc, o);
}

TEST(hostile_one_pixel_ground_truth_is_an_error_not_a_score) {
    char t[600];
    snprintf(t, sizeof t, "%s", test_tmpdir());
    char gt[700], pred[700];
    snprintf(gt, sizeof gt, "%s/gt1", t);
    snprintf(pred, sizeof pred, "%s/pred1", t);
    REQUIRE_OK(io_make_dirs(gt));
    REQUIRE_OK(io_make_dirs(pred));
    Image8 one;
    image_alloc(&one, 1, 1, 1);
    one.px[0] = 255;
    char p[800];
    snprintf(p, sizeof p, "%s/a.png", gt);
    REQUIRE_OK(image_save_png(p, &one));
    snprintf(p, sizeof p, "%s/a.png", pred);
    REQUIRE_OK(image_save_png(p, &one));
    image_free(&one);
    char *o;
    int rc = run_bin(&o, "eval --pred %s --gt %s --threads 1", pred, gt);
    CHECKF(rc == 1 && strstr(o, "a.png") && strstr(o, "at least 2 pixels") && !strstr(o, "e+15"), "exit %d: %s", rc, o);
}

TEST(hostile_train_accepts_the_skip_bad_it_suggests) {
    const char *ds = tiny_set("bad_set");
    REQUIRE(ds[0]);
    char t[600];
    snprintf(t, sizeof t, "%s", test_tmpdir());
    char cmd[2000];
    snprintf(cmd, sizeof cmd, "f=$(ls %s/Train/Image | head -1); head -c 300 %s/Train/Image/$f > %s/x && mv %s/x %s/Train/Image/$f",
             ds, ds, t, t, ds);
    REQUIRE(system(cmd) == 0);
    char *o;
    const char *opts = "--backbone edgenext_xx_small --img-size 32 --batch-size 4 --epochs 1 --stage1-epochs 1 "
                       "--max-steps 1 --threads 1";
    int rc = run_bin(&o, "train --dataset-path %s --checkpoint-dir %s/bad1 %s", ds, t, opts);
    CHECKF(rc != 0 && strstr(o, "--skip-bad"), "exit %d: %s", rc, o);
    rc = run_bin(&o, "train --dataset-path %s --checkpoint-dir %s/bad2 %s --skip-bad", ds, t, opts);
    CHECKF(rc == 0 && strstr(o, "skipping"), "--skip-bad: exit %d: %s", rc, o);
}

TEST(hostile_predict_long_names_and_honest_counts) {
    const char *ck = tiny_checkpoint();
    const char *ds = tiny_set("long_set");
    REQUIRE(ck && ds[0]);
    char t[600];
    snprintf(t, sizeof t, "%s", test_tmpdir());
    char in[700], cmd[4000], name[251];
    snprintf(in, sizeof in, "%s/long_in", t);
    REQUIRE_OK(io_make_dirs(in));
    memset(name, 'p', 246);
    name[246] = 0;
    snprintf(cmd, sizeof cmd, "cp %s/Test/Image/$(ls %s/Test/Image | head -1) %s/%s.jpg", ds, ds, in, name);
    REQUIRE(system(cmd) == 0);
    char *o;
    int rc = run_bin(&o, "predict --weights %s --input %s --out %s/long_out --threads 1", ck, in, t);
    CHECKF(rc == 0 && strstr(o, "wrote 1 mask"), "exit %d: %s", rc, o);
    char mask[1200];
    snprintf(mask, sizeof mask, "%s/long_out/%s.png", t, name);
    CHECK(io_path_exists(mask));
    rc = run_bin(&o, "predict --weights %s --input %s --out %s/long_out2 --overlay --threads 1", ck, in, t);
    CHECKF(rc == 2 && strstr(o, "_overlay.jpg") && strstr(o, "258 bytes"), "--overlay: exit %d: %s", rc, o);
    // One photo of two is broken: "wrote 1 mask", and the failure counted.
    snprintf(cmd, sizeof cmd, "cp %s/Test/Image/$(ls %s/Test/Image | head -1) %s/good.jpg && head -c 200 %s/good.jpg > %s/bad.jpg",
             ds, ds, in, in, in);
    REQUIRE(system(cmd) == 0);
    snprintf(cmd, sizeof cmd, "rm %s/%s.jpg", in, name);
    REQUIRE(system(cmd) == 0);
    rc = run_bin(&o, "predict --weights %s --input %s --out %s/count_out --threads 1", ck, in, t);
    CHECKF(rc == 1 && strstr(o, "wrote 1 mask") && strstr(o, "1 of 2 photos failed") && strstr(o, "bad.jpg"),
           "exit %d: %s", rc, o);
}

// Names with a comma, a quote or invalid UTF-8: the per-image CSV has one row per image with
// the right number of fields, and the JSON is valid UTF-8.
TEST(hostile_eval_reports_survive_odd_file_names) {
    char t[600];
    snprintf(t, sizeof t, "%s", test_tmpdir());
    char gt[700], pred[700];
    snprintf(gt, sizeof gt, "%s/odd_gt", t);
    snprintf(pred, sizeof pred, "%s/odd_pred", t);
    REQUIRE_OK(io_make_dirs(gt));
    REQUIRE_OK(io_make_dirs(pred));
    static const char *const names[] = { "a,b.png", "say \"hi\".png", "caf\xe9.png", "plain.png", "=cmd|calc.png", NULL };
    Image8 m;
    image_alloc(&m, 8, 8, 1);
    for (int i = 0; i < 64; i++) m.px[i] = i % 3 ? 0 : 255;
    for (int i = 0; names[i]; i++) {
        char p[900];
        snprintf(p, sizeof p, "%s/%s", gt, names[i]);
        REQUIRE_OK(image_save_png(p, &m));
        snprintf(p, sizeof p, "%s/%s", pred, names[i]);
        REQUIRE_OK(image_save_png(p, &m));
    }
    image_free(&m);
    char *o;
    int rc = run_bin(&o, "eval --pred '%s' --gt '%s' --json %s/odd.json --per-image %s/odd.csv --threads 1", pred, gt, t, t);
    REQUIRE(rc == 0);
    char p[800];
    unsigned char *b;
    size_t n;
    snprintf(p, sizeof p, "%s/odd.csv", t);
    REQUIRE_OK(io_read_file(p, &b, &n));
    // Count the fields of every record, honouring RFC 4180 quotes.
    int rows = 0, fields = 1, quoted = 0, bad = 0, header_fields = -1;
    for (size_t i = 0; i < n; i++) {
        char c = (char)b[i];
        if (quoted) {
            if (c == '"' && i + 1 < n && b[i + 1] == '"') i++;
            else if (c == '"') quoted = 0;
        } else if (c == '"') quoted = 1;
        else if (c == ',') fields++;
        else if (c == '\n') {
            if (header_fields < 0) header_fields = fields;
            else bad |= fields != header_fields;
            rows++;
            fields = 1;
        }
    }
    CHECKF(rows == 6 && !bad, "CSV: %d records (6 expected), field counts differ: %d\n%s", rows, bad, (char *)b);
    // A name a spreadsheet would run as a formula is quoted as text (issue 33).
    CHECKF(strstr((char *)b, "\"'=cmd|calc.png\""), "the formula name is not quoted:\n%s", (char *)b);
    free(b);
    snprintf(p, sizeof p, "%s/odd.json", t);
    REQUIRE_OK(io_read_file(p, &b, &n));
    char *safe = text_utf8_safe((char *)b);
    CHECKF(!strcmp(safe, (char *)b), "the JSON is not valid UTF-8");
    free(safe);
    cJSON *j = cJSON_Parse((char *)b);
    CHECK(j && cJSON_GetArraySize(cJSON_GetObjectItem(j, "per_image")) == 5);
    cJSON_Delete(j);
    free(b);
}

// The runner's address space as the program loader left it (its libraries mapped, no test
// run yet): later, threads' malloc arenas and earlier tests' mappings add to VmSize by a
// varying amount, which made the out-of-memory test's limit depend on the tests before it.
static long vm_at_start_kb;
__attribute__((constructor)) static void read_vm_at_start(void) {
    FILE *fs = fopen("/proc/self/status", "r");
    char line[256];
    while (fs && fgets(line, sizeof line, fs))
        if (!strncmp(line, "VmSize:", 7)) vm_at_start_kb = strtol(line + 7, NULL, 10);
    if (fs) fclose(fs);
}

// Out of memory inside predict: the message names only what predict has (--img-size).
TEST(hostile_out_of_memory_message_names_the_commands_own_options) {
#if defined(__SANITIZE_ADDRESS__)
    // AddressSanitizer reserves terabytes of address space: under `ulimit -v` the program cannot start.
    printf("  (skipped under AddressSanitizer)\n");
    return;
#endif
    const char *ck = tiny_checkpoint();
    const char *ds = tiny_set("oom_set");
    REQUIRE(ck && ds[0]);
    char cmd[4000], p[800];
    snprintf(p, sizeof p, "%s/oom.out", test_tmpdir());
    // 800 MB of address space beyond what the program maps at start: this runner, at its
    // start, maps the same libraries
    const long vm_kb = vm_at_start_kb;
    snprintf(cmd, sizeof cmd, "(ulimit -v %ld; CAMOXPERT_MEMORY_LIMIT_MB=0 %s predict --weights %s --input %s/Test/Image "
             "--out %s/oom2 --img-size 2048 --threads 1 --device cpu) > %s 2>&1", vm_kb + 800000, test_bin_path(), ck, ds,
             test_tmpdir(), p);
    int st = system(cmd);
    unsigned char *b = NULL;
    size_t n;
    io_read_file(p, &b, &n);
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 3 && b && strstr((char *)b, "out of memory") &&
           strstr((char *)b, "--img-size") && !strstr((char *)b, "--batch-size"), "exit %d: %s", WEXITSTATUS(st),
           b ? (char *)b : "");
    free(b);
}

// The fixture of tests/fixtures with one __metadata__ value replaced and, when `poison`,
// every stored output set to 12345: TMP/fixture_meta.safetensors.
static const char *fixture_meta(const char *key, const char *value, int poison) {
    static char out[800];
    unsigned char *buf;
    size_t n;
    if (io_read_file("tests/fixtures/edgenext_base_1x65x47.safetensors", &buf, &n)) return NULL;
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | buf[i];
    cJSON *h = cJSON_ParseWithLength((char *)buf + 8, hl);
    cJSON *m = cJSON_GetObjectItemCaseSensitive(h, "__metadata__");
    cJSON_ReplaceItemInObjectCaseSensitive(m, key, cJSON_CreateString(value));
    unsigned char *data = buf + 8 + hl;
    for (cJSON *e = h->child; poison && e; e = e->next) {
        if (strncmp(e->string, "output/", 7)) continue;
        const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        size_t a = (size_t)cJSON_GetArrayItem(off, 0)->valuedouble, b = (size_t)cJSON_GetArrayItem(off, 1)->valuedouble;
        for (size_t k = a; k + 4 <= b; k += 4) { float v = 12345; memcpy(data + k, &v, 4); }
    }
    char *js = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    size_t L = strlen(js), P = (L + 7) / 8 * 8;
    snprintf(out, sizeof out, "%s/fixture_meta.safetensors", test_tmpdir());
    FILE *fp = fopen(out, "wb");
    for (int i = 0; fp && i < 8; i++) fputc((int)((uint64_t)P >> (8 * i)), fp);
    if (fp) {
        fwrite(js, 1, L, fp);
        for (size_t i = L; i < P; i++) fputc(' ', fp);
        fwrite(data, 1, n - 8 - hl, fp);
        fclose(fp);
    }
    free(js);
    free(buf);
    return fp ? out : NULL;
}

// Tolerances are finite and sane, and verify prints the ones it used (issue 33, finding 8:
// `inf` or 1e308 passed a fixture whose every expected value was 12345).
TEST(hostile_verify_tolerances_are_finite_sane_and_printed) {
    static const char *const bad[][2] = { { "rtol_fwd_f32", "inf" }, { "rtol_fwd_f32", "1e308" },
                                          { "rtol_fwd_f64", "nan" }, { "rtol_grad_f64", "-1e-6" },
                                          { "rtol_fwd_f32", "0.5" }, { "grad_floor", "1e300" } };
    char *o;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *fx = fixture_meta(bad[i][0], bad[i][1], 1);
        REQUIRE(fx);
        int rc = run_bin(&o, "verify %s --quiet --threads 1", fx);
        CHECKF(rc == 2 && strstr(o, bad[i][0]) && strstr(o, "not a tolerance"), "%s = %s: exit %d: %s", bad[i][0],
               bad[i][1], rc, o);
    }
    const char *fx = fixture_meta("rtol_fwd_f32", "1e-4", 0);
    REQUIRE(fx);
    int rc = run_bin(&o, "verify %s --quiet --threads 1", fx);
    CHECKF(rc == 0 && strstr(o, "tolerances (the fixture's): forward float32 0.0001"), "exit %d: %s", rc, o);
}
