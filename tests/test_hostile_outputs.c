// test_hostile_outputs.c — the output-path rule (core/outpath.h, docs/RELIABILITY.md),
// checked for every output path of every command against the same hostile targets:
// a training run's checkpoint, a photo, the user's own HTML page, a FIFO and a
// directory (issue 33, finding 1). Each is refused with an error naming it and left
// as it was; with --overwrite a regular file may be replaced, what is not a regular
// file never is.
#include "test.h"
#include "hostile.h"
#include "nn/weights.h"
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct { const char *what; char path[1200]; uint64_t hash; mode_t mode; } Target;

// Sets the targets up under dir: a copy of the run's checkpoint, a photo, an HTML page
// of the user's, a FIFO, a directory.
static int make_targets(Target *t, const char *dir, const char *ckpt, const char *photo) {
    static const char *const what[5] = { "checkpoint", "photo", "user's HTML", "FIFO", "directory" };
    static const char *const name[5] = { "best.safetensors", "photo.jpg", "mine.html", "pipe.html", "folder.html" };
    char cmd[9000];
    for (int i = 0; i < 5; i++) {
        t[i].what = what[i];
        snprintf(t[i].path, sizeof t[i].path, "%s/%s", dir, name[i]);
    }
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp %s %s && cp %s %s && printf '<!DOCTYPE html><title>mine</title>' > %s && "
             "mkfifo %s && mkdir %s", dir, ckpt, t[0].path, photo, t[1].path, t[2].path, t[3].path, t[4].path);
    if (system(cmd) != 0) return 0;
    for (int i = 0; i < 5; i++) {
        struct stat sb;
        lstat(t[i].path, &sb);
        t[i].mode = sb.st_mode;
        t[i].hash = S_ISREG(sb.st_mode) ? file_hash(t[i].path) : 0;
    }
    return 1;
}

static int unchanged(const Target *t) {
    struct stat sb;
    if (lstat(t->path, &sb) != 0 || (sb.st_mode & S_IFMT) != (t->mode & S_IFMT)) return 0;
    return !S_ISREG(sb.st_mode) || file_hash(t->path) == t->hash;
}

TEST(hostile_every_output_path_of_every_command_follows_the_output_rule) {
    const char *run = tiny_run("run");
    const char *ck = tiny_checkpoint();
    const char *ds = tiny_set("out_set");
    REQUIRE(run[0] && ck && ds[0]);
    char t[600];
    snprintf(t, sizeof t, "%s", test_tmpdir());
    char best[800], photo[900], cmd[4000], *o;
    snprintf(best, sizeof best, "%s/best.safetensors", run);
    snprintf(cmd, sizeof cmd, "ls %s/Test/Image | head -1 > %s/first", ds, t);
    REQUIRE(system(cmd) == 0);
    char fp[800];
    snprintf(fp, sizeof fp, "%s/first", t);
    unsigned char *first;
    size_t fn;
    REQUIRE_OK(io_read_file(fp, &first, &fn));
    first[strcspn((char *)first, "\n")] = 0;
    snprintf(photo, sizeof photo, "%s/Test/Image/%s", ds, (char *)first);
    char stem[300];
    snprintf(stem, sizeof stem, "%s", (char *)first);
    *strrchr(stem, '.') = 0;
    free(first);
    char gt[800], pred[800];
    snprintf(gt, sizeof gt, "%s/Test/GT_Object", ds);
    snprintf(pred, sizeof pred, "%s/pred", t);
    REQUIRE(run_bin(&o, "predict --weights %s --input %s/Test/Image --out %s --threads 1", ck, ds, pred) == 0);
    // Every option that names an output file, each given every target.
    char fmt[8][2000];
    int nf = 0;
    snprintf(fmt[nf++], 2000, "report %s --max-images 0 --threads 1 --out %%s", run);
    snprintf(fmt[nf++], 2000, "eval --pred %s --gt %s --threads 1 --json %%s", pred, gt);
    snprintf(fmt[nf++], 2000, "eval --pred %s --gt %s --threads 1 --per-image %%s", pred, gt);
    snprintf(fmt[nf++], 2000, "eval --pred %s --gt %s --threads 1 --plot %%s", pred, gt);
    snprintf(fmt[nf++], 2000, "bench --backbone edgenext_xx_small --img-size 32 --batch-size 1 --steps 1 --threads 1 "
             "--json %%s");
    snprintf(fmt[nf++], 2000, "export --weights %s --onnx %%s", ck);
    for (int f = 0; f < nf; f++) {
        char dir[700];
        snprintf(dir, sizeof dir, "%s/targets%d", t, f);
        Target tg[5];
        REQUIRE(make_targets(tg, dir, best, photo));
        for (int i = 0; i < 5; i++) {
            for (int ow = 0; ow < 2; ow++) {
                if (ow && (i == 1 || i == 2 || i == 0)) continue;   // --overwrite may replace a regular file
                char args[3000];
                snprintf(args, sizeof args, fmt[f], tg[i].path);
                int rc = run_bin(&o, "%s%s", args, ow ? " --overwrite" : "");
                CHECKF(rc == 2 && strstr(o, tg[i].path), "%s%s (a %s): exit %d: %s", args, ow ? " --overwrite" : "",
                       tg[i].what, rc, o);
                CHECKF(unchanged(&tg[i]), "%s%s changed the %s", args, ow ? " --overwrite" : "", tg[i].what);
            }
        }
    }
    // report's default page, RUN/report.html, when it is the user's: refused; --overwrite replaces it.
    char page[800];
    snprintf(page, sizeof page, "%s/report.html", run);
    snprintf(cmd, sizeof cmd, "printf '<!DOCTYPE html><title>mine</title>' > %s", page);
    REQUIRE(system(cmd) == 0);
    uint64_t hp = file_hash(page);
    int rc = run_bin(&o, "report %s --max-images 0 --threads 1", run);
    CHECKF(rc == 2 && strstr(o, page) && strstr(o, "--overwrite") && file_hash(page) == hp, "default page: exit %d: %s",
           rc, o);
    rc = run_bin(&o, "report %s --max-images 0 --threads 1 --overwrite", run);
    CHECKF(rc == 0 && file_hash(page) != hp, "default page with --overwrite: exit %d: %s", rc, o);
    rc = run_bin(&o, "report %s --max-images 0 --threads 1", run);   // its own page: a rerun replaces it
    CHECKF(rc == 0, "report rerun: exit %d: %s", rc, o);
    // train --report into a folder whose report.html is the user's: refused before any work.
    char d2[700];
    snprintf(d2, sizeof d2, "%s/run2", t);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && printf '<!DOCTYPE html><title>mine</title>' > %s/report.html", d2, d2);
    REQUIRE(system(cmd) == 0);
    rc = run_bin(&o, "train --dataset-path %s --checkpoint-dir %s --backbone edgenext_xx_small --img-size 32 --epochs 1 "
                 "--stage1-epochs 1 --threads 1 --num-workers 1 --progress 0 --report", ds, d2);
    CHECKF(rc == 2 && strstr(o, "report.html") && !io_path_exists(strcat(d2, "/train_log.jsonl")),
           "train --report over the user's page: exit %d: %s", rc, o);
    // predict: each target where a mask would go; and a run's checkpoint folder as --out.
    for (int i = 0; i < 5; i++) {
        char dir[700], tgt[1200];
        snprintf(dir, sizeof dir, "%s/pout%d", t, i);
        Target tg[5];
        REQUIRE(make_targets(tg, dir, best, photo));
        snprintf(tgt, sizeof tgt, "%s/%s.png", dir, stem);
        REQUIRE(rename(tg[i].path, tgt) == 0);
        snprintf(tg[i].path, sizeof tg[i].path, "%s", tgt);
        for (int k = 0; k < 5; k++)
            if (k != i) unlink(tg[k].path), rmdir(tg[k].path);
        rc = run_bin(&o, "predict --weights %s --input %s --out %s --threads 1", ck, photo, dir);
        CHECKF(rc == 2 && strstr(o, tgt), "predict over a %s: exit %d: %s", tg[i].what, rc, o);
        CHECKF(unchanged(&tg[i]), "predict changed the %s", tg[i].what);
        if (i >= 3) {
            rc = run_bin(&o, "predict --weights %s --input %s --out %s --threads 1 --overwrite", ck, photo, dir);
            CHECKF(rc == 2 && strstr(o, tgt) && unchanged(&tg[i]), "predict --overwrite over a %s: exit %d: %s",
                   tg[i].what, rc, o);
        }
    }
    uint64_t hb = file_hash(best);
    rc = run_bin(&o, "predict --weights %s --input %s --out %s --threads 1 --overwrite", ck, photo, run);
    CHECKF(rc == 2 && strstr(o, "training run") && file_hash(best) == hb, "predict --out RUN: exit %d: %s", rc, o);
    // synth --out a file, a FIFO: refused, left alone.
    char sdir[700];
    snprintf(sdir, sizeof sdir, "%s/synth_targets", t);
    Target st[5];
    REQUIRE(make_targets(st, sdir, best, photo));
    for (int i = 0; i < 4; i++) {
        rc = run_bin(&o, "synth --out %s --train 2 --test 1 --size 32 --threads 1 --overwrite", st[i].path);
        CHECKF(rc == 2 && strstr(o, st[i].path) && unchanged(&st[i]), "synth --out a %s: exit %d: %s", st[i].what, rc, o);
    }
}

// The lock rule (core/io.h; issue 33, finding 3): a folder's owner (train, synth) holds it
// alone; predicts share theirs; the leftovers of killed writes go, a write in progress
// (another process's temporary file, e.g. a report's) never does.
TEST(hostile_every_command_that_writes_into_a_folder_takes_the_same_lock_and_respects_the_others) {
    const char *ck = tiny_checkpoint();
    const char *ds = tiny_set("lock_set");
    REQUIRE(ck && ds[0]);
    char t[600];
    snprintf(t, sizeof t, "%s", test_tmpdir());
    char d[700], e[700], page[800], *o;
    snprintf(d, sizeof d, "%s/shared", t);
    snprintf(e, sizeof e, "%s/empty", t);
    snprintf(page, sizeof page, "%s/page.html", d);
    REQUIRE_OK(io_make_dirs(d));
    REQUIRE_OK(io_make_dirs(e));
    // A write in progress (this process's, as a report's would be) and a killed one's leftover.
    AtomicFile live, dead;
    REQUIRE_OK(io_atomic_begin(&live, page));
    fputs("<!DOCTYPE html><title>in progress</title>", live.fp);
    REQUIRE_OK(io_atomic_begin(&dead, page));
    fclose(dead.fp);   // as if killed: the file stays, nobody holds it
    int rc = run_bin(&o, "predict --weights %s --input %s/Test/Image --out %s --threads 1", ck, ds, d);
    CHECKF(rc == 0 && strstr(o, "removed 1 temporary file"), "predict: exit %d: %s", rc, o);
    CHECKF(io_path_exists(live.tmp), "predict removed %s, a write in progress", live.tmp);
    CHECKF(!io_path_exists(dead.tmp), "predict left %s, a killed write's leftover", dead.tmp);
    REQUIRE_OK(io_atomic_commit(&live));
    // An owner holds the folder (as train does its checkpoint directory): predict and synth are
    // refused, naming the holder's pid; a second owner too.
    IoDirLock own;
    REQUIRE_OK(io_dir_lock(d, 1, &own));
    char pid[32];
    snprintf(pid, sizeof pid, "(pid %d)", (int)getpid());
    rc = run_bin(&o, "predict --weights %s --input %s/Test/Image --out %s --threads 1", ck, ds, d);
    CHECKF(rc == 2 && strstr(o, "in use by") && strstr(o, pid), "predict beside an owner: exit %d: %s", rc, o);
    IoDirLock other;
    CHECK(io_dir_lock(d, 1, &other) == CX_EIO && strstr(cx_errmsg(), "in use by"));
    io_dir_unlock(&own);
    REQUIRE_OK(io_dir_lock(e, 1, &own));
    rc = run_bin(&o, "synth --out %s --train 2 --test 1 --size 32 --threads 1", e);
    CHECKF(rc == 2 && strstr(o, "in use by") && strstr(o, pid), "synth beside an owner: exit %d: %s", rc, o);
    io_dir_unlock(&own);
    // A predict holds the folder (shared): another predict writes there too; train and synth
    // are refused.
    IoDirLock share;
    REQUIRE_OK(io_dir_lock(d, 0, &share));
    rc = run_bin(&o, "predict --weights %s --input %s/Test/Image --out %s --threads 1", ck, ds, d);
    CHECKF(rc == 0, "two predicts into one folder: exit %d: %s", rc, o);
    rc = run_bin(&o, "train --dataset-path %s --checkpoint-dir %s --backbone edgenext_xx_small --img-size 32 --epochs 1 "
                 "--stage1-epochs 1 --threads 1 --num-workers 1 --progress 0", ds, d);
    CHECKF(rc != 0 && strstr(o, "in use by"), "train beside a predict: exit %d: %s", rc, o);
    io_dir_unlock(&share);
    REQUIRE_OK(io_dir_lock(e, 0, &share));
    rc = run_bin(&o, "synth --out %s --train 2 --test 1 --size 32 --threads 1", e);
    CHECKF(rc == 2 && strstr(o, "in use by"), "synth beside a predict: exit %d: %s", rc, o);
    io_dir_unlock(&share);
}

// synth checks everything before deleting anything (issue 33, finding 9): --overwrite with
// a --baseline it must refuse, or a bad setting, leaves the old dataset whole.
TEST(hostile_synth_checks_every_output_before_deleting_anything) {
    const char *ds = tiny_set("synth_keep");
    REQUIRE(ds[0]);
    char t[600];
    snprintf(t, sizeof t, "%s", test_tmpdir());
    char base[700], cmd[2000], *o;
    snprintf(base, sizeof base, "%s/not_a_baseline", t);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && echo mine > %s/notes.txt", base, base);
    REQUIRE(system(cmd) == 0);
    uint64_t h = dir_hash(ds);
    int n = count_files(ds);
    int rc = run_bin(&o, "synth --out %s --train 3 --test 1 --size 32 --threads 1 --overwrite --baseline %s", ds, base);
    CHECKF(rc == 2 && strstr(o, "notes.txt"), "exit %d: %s", rc, o);
    CHECKF(dir_hash(ds) == h && count_files(ds) == n, "the refused synth changed %s (%d files, were %d)", ds,
           count_files(ds), n);
    rc = run_bin(&o, "synth --out %s --train 3 --test 1 --size 8 --threads 1 --overwrite", ds);
    CHECKF(rc == 2 && strstr(o, "--size"), "exit %d: %s", rc, o);
    CHECKF(dir_hash(ds) == h, "a refused --size changed %s", ds);
    rc = run_bin(&o, "synth --out %s --train 3 --test 1 --size 32 --threads 1 --overwrite --baseline %s", ds, ds);
    CHECKF(rc == 2 && dir_hash(ds) == h, "--baseline = --out: exit %d: %s", rc, o);
}

// Run files are never written through a link (issue 33, finding 4): a resume whose
// train_log.jsonl is a symlink to the user's file stops, naming it, and the file is as it was.
TEST(hostile_run_files_are_never_written_through_a_symlink) {
    const char *run = tiny_run("linked");
    REQUIRE(run[0]);
    char t[600];
    snprintf(t, sizeof t, "%s", test_tmpdir());
    char log[800], mine[800], cmd[5000], *o;
    snprintf(log, sizeof log, "%s/train_log.jsonl", run);
    snprintf(mine, sizeof mine, "%s/my_notes.txt", t);
    snprintf(cmd, sizeof cmd, "cp %s %s && echo 'my own notes' >> %s && rm %s && ln -s %s %s", log, mine, mine, log, mine,
             log);
    REQUIRE(system(cmd) == 0);
    uint64_t h = file_hash(mine);
    int rc = run_bin(&o, "train --resume-from %s/last.safetensors --epochs 2 --threads 1 --num-workers 1 --progress 0", run);
    CHECKF(rc != 0 && strstr(o, log) && strstr(o, "symbolic link"), "exit %d: %s", rc, o);
    CHECKF(file_hash(mine) == h, "the resume wrote into %s through the link %s", mine, log);
}

// Output names that collide across kinds (issue 33, finding 5): a.jpg's routing map and
// a_routing_s0.jpg's mask are both a_routing_s0.png. Found before anything is written,
// naming both photos.
TEST(hostile_predict_output_name_collisions_are_found_before_writing) {
    char t[600];
    snprintf(t, sizeof t, "%s", test_tmpdir());
    CamoXpertConfig mc;
    REQUIRE_OK(camoxpert_config(&mc, "edgenext_xx_small", 1, 4, 2));
    REQUIRE_OK(camoxpert_config_routing(&mc, "spatial", 2));
    Model m;
    REQUIRE_OK(model_open(&m, &(ModelSpec){ .config = &mc, .init_seed = 5 }));
    char *cfg = weights_config_json(&m.cfg, 64);
    char ck[800];
    snprintf(ck, sizeof ck, "%s/spatial.safetensors", t);
    cx_status st = weights_save(&m.pt, cfg, NULL, ck);
    free(cfg);
    model_close(&m);
    REQUIRE_OK(st);
    const char *ds = tiny_set("collide_set");
    REQUIRE(ds[0]);
    char in[700], out[700], cmd[4000], *o;
    snprintf(in, sizeof in, "%s/photos", t);
    snprintf(out, sizeof out, "%s/masks", t);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && f=$(ls %s/Test/Image | head -1) && cp %s/Test/Image/$f %s/a.jpg && "
             "cp %s/Test/Image/$f %s/a_routing_s0.jpg", in, ds, ds, in, ds, in);
    REQUIRE(system(cmd) == 0);
    int rc = run_bin(&o, "predict --weights %s --input %s --out %s --routing --threads 1", ck, in, out);
    CHECKF(rc == 2 && strstr(o, "a.jpg") && strstr(o, "a_routing_s0.jpg") && strstr(o, "a_routing_s0.png"),
           "exit %d: %s", rc, o);
    CHECKF(count_files(out) <= 0, "%d files written before the collision was found", count_files(out));
    // Without --routing the two photos write different files: both are predicted.
    rc = run_bin(&o, "predict --weights %s --input %s --out %s --threads 1", ck, in, out);
    CHECKF(rc == 0 && strstr(o, "wrote 2 masks"), "exit %d: %s", rc, o);
}
