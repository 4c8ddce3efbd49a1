// cmd_synth.c — `camoxpert synth`: writes a synthetic camouflage dataset in the
// COD10K-v3 layout (see data/synth.h), optionally with the colour-threshold
// baseline's predictions for its test split.
#include "cli.h"
#include "data/synth.h"
#include <string.h>

int cmd_synth(int argc, char **argv) {
    const char *out = NULL, *baseline = NULL;
    int n_train = 1000, n_test = 200, size = 352, quality = 92, threads = 0, overwrite = 0;
    int64_t seed = 0;
    double difficulty = 0.5, empty = 0.05;
    int cross = 0;
    CliOpt opts[] = {
        { "out", OPT_STR, &out, "directory to write (created; gets Train/ and Test/ in the COD10K-v3 layout)", "DIR", NULL, 0 },
        { "train", OPT_INT, &n_train, "training images", "N", NULL, 0 },
        { "test", OPT_INT, &n_test, "test images", "M", NULL, 0 },
        { "size", OPT_INT, &size, "image side in pixels", "S", NULL, 0 },
        { "seed", OPT_INT64, &seed, "random seed; the same seed gives the same files", "K", NULL, 0 },
        { "difficulty", OPT_DOUBLE, &difficulty, "0 = objects stand out .. 1 = nearly invisible", "D", NULL, 0 },
        { "empty-fraction", OPT_DOUBLE, &empty, "share of images with nothing hidden", "F", NULL, 0 },
        { "cross-family", OPT_FLAG, &cross, "objects textured from another family than their background (the name keeps "
          "the background's family): region-wise routing experiments", NULL, NULL, 0 },
        { "jpeg-quality", OPT_INT, &quality, "JPEG quality of the images", "Q", NULL, 0 },
        { "baseline", OPT_STR, &baseline, "also write the colour-threshold baseline's 8-bit PNG predictions for the "
                                           "test split into DIR and print its mean IoU and MAE", "DIR", NULL, 0 },
        { "threads", OPT_INT, &threads, "worker threads; 0 = all cores", "N", NULL, 0 },
        { "overwrite", OPT_FLAG, &overwrite, "replace a dataset (and baseline) an earlier camoxpert synth wrote in --out "
          "(--baseline); files synth did not write are never touched", NULL, NULL, 0 },
    };
    int parsed = cli_parse(argc, argv, "synth", opts, CLI_N(opts), NULL, 0, NULL,
                           "--out DIR [--train N] [--test M] [--size S] [--seed K] [--difficulty D] [--baseline DIR]");
    if (parsed) return parsed == CLI_HELP ? 0 : 2;
    if (!out) { fprintf(stderr, "error: synth needs --out DIR\n"); return 2; }
    if (quality < 1 || quality > 100 || n_train < 0 || n_train > 10000000 || n_test < 0 || n_test > 10000000) {
        fprintf(stderr, "error: camoxpert synth: --jpeg-quality %d (1..100), --train %d and --test %d (0..10000000) must be "
                "in range\n", quality, n_train, n_test);
        return 2;
    }
    SynthConfig c = synth_config_default();
    c.size = size;
    c.seed = (uint64_t)seed;
    c.difficulty = difficulty;
    c.cross_family = cross;
    c.empty_fraction = empty;
    SynthStats s;
    SynthOut so;
    if (synth_prepare_out(out, baseline, overwrite, &c, n_train, n_test, &so)) {
        fprintf(stderr, "error: camoxpert synth: %s\n", cx_errmsg());
        return 2;
    }
    cx_status cs = synth_write_dataset(out, &c, n_train, n_test, quality, baseline, &s);
    synth_release_out(&so);
    if (cs) {
        fprintf(stderr, "error: camoxpert synth: %s\n", cx_errmsg());
        return 1;
    }
    printf("wrote %d train + %d test images (%dx%d, difficulty %g, seed %lld) to %s in %.2f s (%.0f images/s)\n",
           s.n_train, s.n_test, size, size, difficulty, (long long)seed, out, s.seconds,
           (s.n_train + s.n_test) / (s.seconds > 0 ? s.seconds : 1e-9));
    printf("families:");
    for (int k = 0; k < SYNTH_N_FAMILIES; k++) printf(" %s %d", synth_family_name(k), s.per_family[k]);
    printf("; %d with nothing hidden\n", s.n_empty);
    if (baseline)
        printf("colour-threshold baseline (Otsu on gray, smaller side = object) on %d test images: mean IoU %.3f, MAE %.3f; "
               "predictions in %s\n", s.baseline_n, s.baseline_iou, s.baseline_mae, baseline);
    return 0;
}
