// cmd_data.c — `camoxpert data`: checks a dataset the way training will read it
// (layout detection, pairing, the pre-scan for bad files, the validation split)
// and optionally measures the loader's throughput (decoded + augmented images/s).
#include "cli.h"
#include "data/dataset.h"
#include "data/loader.h"
#include <string.h>
#include <sys/resource.h>

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + 1e-6 * (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

int cmd_data(int argc, char **argv) {
    const char *root = NULL, *images = NULL, *masks = NULL, *split = "train", *subset = NULL;
    int include_noncam = 0, skip_bad = 0, no_scan = 0, size = 352, batch = 8, workers = 2, bench = 0, cache = 0, no_augment = 0;
    double val_fraction = 0;
    int64_t seed = 0;
    CliOpt opts[] = {
        { "dataset-path", OPT_STR, &root, "dataset root (COD10K-v3, TrainDataset/TestDataset, CAMO, or Imgs + GT)", "DIR", NULL, 0 },
        { "images", OPT_STR, &images, "plain layout: folder of images (with --masks)", "DIR", NULL, 0 },
        { "masks", OPT_STR, &masks, "plain layout: folder of ground-truth masks", "DIR", NULL, 0 },
        { "split", OPT_STR, &split, "which split to read", NULL, "train|test", 0 },
        { "subset", OPT_STR, &subset, "packaged test sets: only this one (e.g. CAMO, NC4K)", "NAME", NULL, 0 },
        { "include-noncam", OPT_FLAG, &include_noncam, "COD10K: keep NonCAM images (default: only -CAM- names)", NULL, NULL, 0 },
        { "skip-bad", OPT_FLAG, &skip_bad, "warn about and skip bad or unpaired files instead of failing", NULL, NULL, 0 },
        { "no-scan", OPT_FLAG, &no_scan, "skip the pre-scan that decodes every file", NULL, NULL, 0 },
        { "val-fraction", OPT_DOUBLE, &val_fraction, "hold out this share of the training images (seeded)", "F", NULL, 0 },
        { "seed", OPT_INT64, &seed, "seed of the validation split, shuffle and augmentation", "K", NULL, 0 },
        { "size", OPT_INT, &size, "image side after resizing", "S", NULL, 0 },
        { "batch-size", OPT_INT, &batch, "loader batch size", "N", NULL, 0 },
        { "workers", OPT_INT, &workers, "loader threads", "N", NULL, 0 },
        { "cache", OPT_FLAG, &cache, "keep resized images in memory", NULL, NULL, 0 },
        { "no-augment", OPT_FLAG, &no_augment, "resize and normalise only", NULL, NULL, 0 },
        { "bench", OPT_INT, &bench, "time this many batches through the loader (0: no benchmark)", "N", NULL, 0 },
    };
    int parsed = cli_parse(argc, argv, "data", opts, CLI_N(opts), NULL, 0, NULL,
                           "(--dataset-path DIR | --images DIR --masks DIR) [--split train|test] [--bench N]");
    if (parsed) return parsed == CLI_HELP ? 0 : 2;
    if (cli_workers("data", "workers", workers)) return 2;
    if (size < 1 || size > 8192 || batch < 1 || batch > 65536 || bench < 0 || !(val_fraction >= 0 && val_fraction < 1)) {
        fprintf(stderr, "error: camoxpert data: --size %d (1..8192), --batch-size %d (1..65536), --bench %d (>= 0) and "
                "--val-fraction %g ([0, 1)) must be in range\n", size, batch, bench, val_fraction);
        return 2;
    }
    DatasetOptions o = { .root = root, .images_dir = images, .masks_dir = masks, .split = split, .subset = subset,
                         .include_noncam = include_noncam, .skip_bad = skip_bad };
    Dataset ds;
    if (dataset_open(&ds, &o)) {
        fprintf(stderr, "error: %s%s\n", cx_errmsg(), root ? "\n(or pass --images DIR --masks DIR for a folder of images "
                "and a folder of masks)" : "");
        return 1;
    }
    double t0 = cx_time_s();
    if (!no_scan) {
        if (dataset_scan(&ds, skip_bad)) { fprintf(stderr, "error: %s\n", cx_errmsg()); dataset_free(&ds); return 1; }
        printf("scan: every file decoded in %.2f s\n", cx_time_s() - t0);
    }
    char sum[1024];
    dataset_summary(&ds, sum, sizeof sum);
    printf("%s\n", sum);
    for (int i = 0; i < ds.n_categories; i++) {
        int c = 0;
        for (int k = 0; k < ds.n; k++) c += ds.s[k].category == i;
        printf("  category %-14s %d\n", ds.categories[i], c);
    }
    Dataset *use = &ds, tr, va;
    int split_done = 0;
    if (val_fraction > 0) {
        if (strcmp(ds.split, "train")) { fprintf(stderr, "error: --val-fraction holds out training images; it cannot be used with --split test\n"); dataset_free(&ds); return 2; }
        if (val_fraction >= 1) { fprintf(stderr, "error: --val-fraction %g must be below 1\n", val_fraction); dataset_free(&ds); return 2; }
        dataset_split(&ds, val_fraction, (uint64_t)seed, &tr, &va);
        printf("validation split (seed %lld): %d train, %d validation\n", (long long)seed, tr.n, va.n);
        use = &tr;
        split_done = 1;
    }
    int rc = 0;
    if (bench > 0) {
        LoaderConfig c = loader_config_default();
        c.size = size; c.batch_size = batch; c.workers = workers; c.seed = (uint64_t)seed; c.cache = cache; c.augment = !no_augment;
        Loader *L;
        const Batch *b;
        // Timed from the start of the threads, so no batch is decoded outside the clock.
        double t = cx_time_s(), cpu = cpu_seconds();
        if (loader_open(&L, use, &c, 0, 0, 0)) { fprintf(stderr, "error: %s\n", cx_errmsg()); rc = 1; goto done; }
        int64_t imgs = 0;
        for (int i = 0; i < bench; i++) {
            if (loader_next(L, &b) || !b) { fprintf(stderr, "error: %s\n", cx_errmsg()); rc = 1; break; }
            imgs += b->n;
        }
        double dt = cx_time_s() - t, dcpu = cpu_seconds() - cpu;
        // CPU time per image is the figure that survives a shared, busy machine.
        if (!rc)
            printf("loader: %lld images in %d batches (batch size %d, %dx%d, %s%s) with %d worker%s in %.2f s: "
                   "%.1f images/s; %.2f ms CPU per image\n",
                   (long long)imgs, bench, batch, size, size, c.augment ? "augmented" : "not augmented",
                   cache ? ", cached" : "", workers, workers == 1 ? "" : "s", dt, imgs / dt, 1000 * dcpu / imgs);
        if (cache) printf("cache: %.1f MiB\n", loader_cache_bytes(L) / 1048576.0);
        loader_close(L);
    }
done:
    if (split_done) { dataset_free(&tr); dataset_free(&va); }
    dataset_free(&ds);
    return rc;
}
