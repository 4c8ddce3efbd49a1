// cmd_predict.c — `camoxpert predict`: masks for photos from a checkpoint. The
// options and the summary; the work is infer/pipeline.h's (decode, batch, forward,
// mask, write), the masks those of `camoxpert report` and training's validation.
//
//   camoxpert predict --weights CKPT --input photos/ --out masks/
//   camoxpert predict --weights CKPT --data-root D --out P   P/<set>/<name>.png for every test set under D,
//                                                            where `eval --pred-root P --data-root D` reads them
#include "cli.h"
#include "data/testsets.h"
#include "infer/pipeline.h"
#include "nn/memory.h"
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

// --data-root: the test sets found, and the pipeline's groups made of them.
typedef struct {
    TestSet *ts;
    int nt;
    char ***photos;      // (nt) testset_photos' lists
    char **out;          // (nt) OUT/<set>
    PipelineGroup *g;    // (ng) the sets with photos, their files pointing into photos
    int ng;
} DataRootPlan;

static void data_root_free(DataRootPlan *d) {
    for (int i = 0; i < d->nt; i++) {
        if (d->photos) testset_photos_free(d->photos[i], d->ts[i].n);
        if (d->out) free(d->out[i]);
    }
    for (int i = 0; i < d->ng; i++) free((void *)d->g[i].files);
    free(d->photos), free(d->out), free(d->g);
    testsets_free(d->ts, d->nt);
}

static int same_dir(const char *a, const char *b) {
    struct stat x, y;
    return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

// A folder of out that camoxpert eval would take for set id too (P/camo beside P/CAMO), or NULL.
static char *other_folder_for(const char *out, int id) {
    DIR *d = opendir(out);
    if (!d) return NULL;
    char *found = NULL;
    struct dirent *e;
    while ((e = readdir(d)) && !found)
        if (e->d_name[0] != '.' && testset_match(e->d_name) == id && strcmp(e->d_name, testset_info[id].name)) {
            char p[4200];
            snprintf(p, sizeof p, "%s/%s", out, e->d_name);
            if (io_path_is_dir(p)) found = cx_strdup(p);
        }
    closedir(d);
    return found;
}

// The test sets under --data-root as groups for the pipeline: each set's photos (those of
// its masks: data/testsets.h) into OUT/<set>. Prints each set found, with what it lacks.
// Returns 0 with d->ng >= 1 groups, or 2 (nothing to predict; the error is printed).
// *incomplete: masks without a photo, or a set without photos (named above).
static int data_root_plan(const char *root, const char *out, int include_noncam, DataRootPlan *d, int *incomplete) {
    memset(d, 0, sizeof *d);
    *incomplete = 0;
    if (testsets_find(root, include_noncam, &d->ts, &d->nt)) {
        fprintf(stderr, "error: camoxpert predict: %s\n", cx_errmsg());
        return 2;
    }
    if (!d->nt) {
        fprintf(stderr, "error: camoxpert predict: no test set found under --data-root %s; looked for (with the photos in "
                "Imgs, Image or Images beside the masks):\n%s\n", root, testsets_layouts());
        return 2;
    }
    d->g = cx_calloc((size_t)d->nt, sizeof *d->g);
    d->photos = cx_calloc((size_t)d->nt, sizeof *d->photos);
    d->out = cx_calloc((size_t)d->nt, sizeof *d->out);
    printf("test sets under %s:\n", root);
    int rc = 0;
    for (int i = 0; i < d->nt; i++) {
        const TestSet *s = &d->ts[i];
        const TestSetInfo *info = &testset_info[s->id];
        size_t len = strlen(out) + strlen(info->name) + 2;
        d->out[i] = cx_malloc(len);
        snprintf(d->out[i], len, "%s/%s", out, info->name);
        int missing = 0, unused = 0;
        if (testset_photos(s, &d->photos[i], &missing, &unused)) {
            printf("  %-12s %5d masks, no photos: not predicted\n", info->title, s->n);
            fflush(stdout);   // the list, then what is wrong with it, when both go to one file
            fprintf(stderr, "error: %s; not predicted\n", cx_errmsg());
            *incomplete = 1;
            continue;
        }
        int n = s->n - missing;
        printf("  %-12s %5d photos", info->title, n);
        if (n != info->expected) printf(" (the standard set has %d)", info->expected);
        printf(" in %s -> %s", s->img_dir, d->out[i]);
        if (s->id == TESTSET_COD10K && include_noncam) printf(" (NonCAM images included: --include-noncam)");
        else if (s->id == TESTSET_COD10K)
            printf("; %d NonCAM images left out (the convention; --include-noncam predicts them)", s->n_noncam);
        printf("%s\n", n ? "" : ": not predicted");
        fflush(stdout);
        for (int k = 0, named = 0; k < s->n && missing; k++)
            if (!d->photos[i][k] && named++ < 10)
                fprintf(stderr, "error: %s: no photo for the mask %s/%s in %s\n", info->title, s->gt_dir, s->files[k],
                        s->img_dir);
        if (missing) {
            fprintf(stderr, "error: %s: %d of %d masks have no photo: their predictions will be missing\n", info->title,
                    missing, s->n);
            *incomplete = 1;
        }
        if (unused)
            printf("note: %s: %d photo%s in %s %s no mask: not predicted (the set is its masks)\n", info->title, unused,
                   unused == 1 ? "" : "s", s->img_dir, unused == 1 ? "has" : "have");
        // eval takes the first folder of out that stands for the set: another spelling beside
        // the one written here would make it read one or the other.
        char *other = other_folder_for(out, s->id);
        if (other) {
            fprintf(stderr, "error: camoxpert predict: --out %s: %s stands for %s too, and camoxpert eval would read it "
                    "or %s; rename or remove it\n", out, other, info->title, d->out[i]);
            free(other);
            rc = 2;
        }
        if (same_dir(d->out[i], s->dir) || same_dir(d->out[i], s->gt_dir)) {
            fprintf(stderr, "error: camoxpert predict: --out %s: %s is the test set's own folder; the masks would mix "
                    "with its photos and ground truth; choose another --out\n", out, d->out[i]);
            rc = 2;
        }
        if (!n) continue;
        char **files = cx_malloc(sizeof *files * (size_t)n);
        for (int k = 0, j = 0; k < s->n; k++)
            if (d->photos[i][k]) files[j++] = d->photos[i][k];
        d->g[d->ng++] = (PipelineGroup){ .name = info->title, .input = s->img_dir, .files = files, .n = n, .out = d->out[i] };
    }
    for (int id = 0; id < TESTSET_N; id++) {
        int have = 0;
        for (int i = 0; i < d->nt; i++) have |= d->ts[i].id == (testset_id)id;
        if (!have) printf("  %-12s not found\n", testset_info[id].title);
    }
    if (!rc && !d->ng) {
        fprintf(stderr, "error: camoxpert predict: none of the test sets under %s has photos to predict\n", root);
        rc = 2;
    }
    return rc;
}

int cmd_predict(int argc, char **argv) {
    const char *weights = NULL, *input = NULL, *data_root = NULL, *out = NULL, *backbone = NULL, *device = "auto",
               *precision = "auto";
    int overlay = 0, routing = 0, img_size = 0, threads = 0, sparse = 0, E = 6, k = 2, overwrite = 0, batch = 0,
        workers = 0, include_noncam = 0;
    CliOpt opts[] = {
        { "weights", OPT_STR, &weights, "checkpoint (safetensors; its metadata names the model)", "CKPT", NULL, 0 },
        { "input", OPT_STR, &input, "a photo, or a directory of photos (.jpg .jpeg .png .bmp)", "IMAGE|DIR", NULL, 0 },
        { "data-root", OPT_STR, &data_root, "instead of --input: every test set under DIR (CHAMELEON, CAMO, COD10K, NC4K "
          "in their usual layouts, as camoxpert eval --data-root finds them; docs/METRICS.md), each set's masks into "
          "OUT/<set>/, where camoxpert eval --pred-root OUT --data-root DIR reads them", "DIR", NULL, 0 },
        { "include-noncam", OPT_FLAG, &include_noncam, "with --data-root: COD10K's non-camouflaged test images too "
          "(papers leave them out)", NULL, NULL, 0 },
        { "out", OPT_STR, &out, "directory for <name>.png masks (created); with --data-root, for OUT/<set>/<name>.png",
          "DIR", NULL, 0 },
        { "overlay", OPT_FLAG, &overlay, "also write <name>_overlay.jpg: the photo with the mask in red", NULL, NULL, 0 },
        { "routing", OPT_FLAG, &routing, "also write <name>_routing.json: experts, weights and router probabilities "
          "per scale (sparse models; per tile under spatial routing, with <name>_routing_s<scale>.png maps: tiles "
          "coloured by their first expert)", NULL, NULL, 0 },
        { "img-size", OPT_INT, &img_size, "network input side, a multiple of 32 (0: the checkpoint's training size, else 352)", "S", NULL, 0 },
        { "batch-size", OPT_INT, &batch, "photos per network call (0: 1 on the CPU, 32 on a GPU, fewer if memory "
          "is short)", "B", NULL, 0 },
        { "workers", OPT_INT, &workers, "threads that decode photos and write masks beside the network (0: 1 on the "
          "CPU, all cores on a GPU)", "N", NULL, 0 },
        { "threads", OPT_INT, &threads, "compute threads (0: all cores)", "N", NULL, 0 },
        CLI_OPTS_CKPT_MODEL(&backbone, &sparse, &E, &k),
        { "device", OPT_STR, &device, "cpu, cuda, cuda:N or auto (a GPU when one is usable)", "cpu|cuda|cuda:N|auto", NULL, 0 },
        { "precision", OPT_STR, &precision, "fp32, bf16 (a GPU, or a CPU with AMX-BF16 or AVX512-BF16: its convolutions "
          "and matmuls) or auto (bf16 on a GPU or on such a CPU, else fp32)", "fp32|bf16|auto", "fp32|bf16|auto", 0 },
        { "overwrite", OPT_FLAG, &overwrite, "replace files in --out that camoxpert predict did not write", NULL, NULL, 0 },
    };
    int parsed = cli_parse(argc, argv, "predict", opts, CLI_N(opts), NULL, 0, NULL,
                           "--weights CKPT (--input IMAGE|DIR | --data-root DIR) --out DIR [--overlay] [--routing] "
                           "[--img-size S]");
    if (parsed) return parsed == CLI_HELP ? 0 : 2;
    cx_oom_hint("reduce --img-size");
    if (input && data_root) {
        fprintf(stderr, "error: camoxpert predict: --input and --data-root both given; --input predicts a photo or a "
                "folder of photos, --data-root every test set under a folder: give one\n");
        return 2;
    }
    if (!weights || !(input || data_root) || !out) {
        fprintf(stderr, "error: camoxpert predict needs --weights CKPT, --input IMAGE|DIR (or --data-root DIR) and "
                "--out DIR\n");
        return 2;
    }
    if (include_noncam && !data_root) {
        fprintf(stderr, "error: camoxpert predict: --include-noncam goes with --data-root (it adds COD10K's "
                "non-camouflaged test images); with --input every photo given is predicted\n");
        return 2;
    }
    if (img_size && camoxpert_check_img_size(img_size, "--img-size")) {
        fprintf(stderr, "error: camoxpert predict: %s (0: the checkpoint's size)\n", cx_errmsg());
        return 2;
    }
    if (batch < 0 || batch > 4096) {
        fprintf(stderr, "error: camoxpert predict: --batch-size %d: must be between 0 (auto) and 4096\n", batch);
        return 2;
    }
    if (workers && cli_workers("predict", "workers", workers)) return 2;
    CamoXpertConfig mc;
    if (backbone && camoxpert_config(&mc, backbone, sparse, E, k)) {
        fprintf(stderr, "error: camoxpert predict: %s\n", cx_errmsg());
        return 2;
    }
    unsigned given = cli_ckpt_model_given(opts, CLI_N(opts));
    DataRootPlan dr = { 0 };
    int incomplete = 0;
    if (data_root) {
        int rc = data_root_plan(data_root, out, include_noncam, &dr, &incomplete);
        if (rc) {
            data_root_free(&dr);
            return rc;
        }
    }
    PipelineOptions po = { .weights = weights, .config = backbone ? &mc : NULL, .config_given = given, .input = input, .out = out,
                           .groups = data_root ? dr.g : NULL, .n_groups = dr.ng, .input_opt = data_root ? "--data-root" : NULL,
                           .img_size = img_size, .batch = batch, .workers = workers, .overlay = overlay,
                           .routing = routing, .overwrite = overwrite, .device = device, .precision = precision,
                           .log = stdout };
    PipelineResult r;
    cx_status pst = pipeline_predict(&po, &r);
    const int n_sets = dr.ng;
    data_root_free(&dr);
    if (pst) {   // nothing was predicted: the options, the checkpoint or the outputs
        fprintf(stderr, "error: camoxpert predict: %s\n", cx_errmsg());
        return 2;
    }
    if (routing && !r.sparse) printf("note: --routing: %s is a dense model (every image uses every expert); no routing files\n", weights);
    const int nf = r.n_photos;
    char where[4200];
    if (data_root) snprintf(where, sizeof where, "%s/<set>/ for %d test set%s", out, n_sets, n_sets == 1 ? "" : "s");
    else snprintf(where, sizeof where, "%s", out);
    char gpu_dec[64] = "";
    if (r.gpu_io) snprintf(gpu_dec, sizeof gpu_dec, ", %d decoded on the GPU", r.n_gpu_decoded);
    char gpu_parts[160] = "";
    if (r.gpu_io)
        snprintf(gpu_parts, sizeof gpu_parts, " [photos in %.2f s, network %.2f s (%.0f images/s alone), masks out %.2f s]",
                 r.gpu_s[0], r.gpu_s[1], nf / (r.gpu_s[1] > 0 ? r.gpu_s[1] : 1), r.gpu_s[2]);
    printf("wrote %d mask%s (8-bit PNG at each photo's size)%s%s to %s in %.2f s (%.1f images/s; %s %.2f s%s, "
           "waiting for decoded photos %.2f s; workers %s %.2f s%s, writing %.2f s)",
           r.n_masks, r.n_masks == 1 ? "" : "s", overlay ? ", overlays" : "", routing && r.sparse ? ", routing JSON" : "",
           where, r.seconds, nf / (r.seconds > 0 ? r.seconds : 1),
           r.gpu_io ? "the GPU (decode, resize, network, masks)" : "network", r.net_s, gpu_parts, r.wait_s,
           r.gpu_io ? "reading and decoding" : "decoding", r.decode_s, gpu_dec, r.write_s);
    if (r.n_failed) printf("; %d of %d photo%s failed (errors above)", r.n_failed, nf, nf == 1 ? "" : "s");
    printf("\n");
    if (r.wait_s > 0.25 * r.seconds && r.seconds > 2)
        printf("note: the network waited %.0f%% of the time for decoded photos: more --workers (now %d) would help\n",
               100 * r.wait_s / r.seconds, r.workers);
    if (data_root) printf("score them: camoxpert eval --pred-root %s --data-root %s%s\n", out, data_root,
                          include_noncam ? " --include-noncam" : "");
    if (incomplete)
        fprintf(stderr, "error: camoxpert predict: some masks of the test sets have no photo (named above): camoxpert "
                "eval will count their predictions missing\n");
    return r.n_failed || incomplete ? 1 : 0;
}
