// dataset.h — camouflaged-object datasets on disk: layout detection, image/mask
// pairing, categories, a seeded validation split and a fast pre-scan for bad files.
//
// Layouts recognised under a --dataset-path ROOT (first match wins):
//   COD10K-v3   ROOT[/COD10K-v3]/{Train,Test}/Image + GT_Object; only camouflaged
//               images (names containing "-CAM-") unless include_noncam. The
//               `camoxpert synth` output uses this layout.
//   packaged    ROOT/TrainDataset/{Imgs,GT} or ROOT/TrainDataset/<name>/{Imgs,GT},
//               ROOT/TestDataset/<name>/{Imgs,GT} (CAMO, COD10K, CHAMELEON, NC4K...).
//   CAMO        ROOT/Images/{Train,Test} + ROOT/GT (the CAMO-V.1.0 release).
//   single      ROOT/<images> + ROOT/<masks> for one set as packaged (CAMO, NC4K,
//               CHAMELEON; image folder Imgs|Image|Images, mask folder GT|GT_Object|Masks).
//   plain       images_dir + masks_dir given explicitly (--images DIR --masks DIR).
// Pairs match by base name across .jpg .jpeg .png .bmp (any case). An image
// without a mask is an error (or skipped with skip_bad); masks without images
// are counted and reported.
//
//   DatasetOptions o = { .root = "data/COD10K-v3", .split = "train" };
//   Dataset ds;
//   if (dataset_open(&ds, &o) || dataset_scan(&ds, 0)) { log_error("%s", cx_errmsg()); ... }
//   Dataset tr, va;
//   dataset_split(&ds, 0.1, seed, &tr, &va);
#pragma once
#include "core/core.h"
#include <stdint.h>

typedef struct {
    char *image;        // path of the image file
    char *mask;         // path of the ground-truth mask, at GT resolution
    char *name;         // base name without extension ("COD10K-CAM-1-Aquatic-1-BatFish-1")
    int subset;         // index into Dataset.subsets (the test set this came from, or the layout)
    int category;       // index into Dataset.categories (COD10K super-class, synth family); -1 none
    int subcategory;    // index into Dataset.subcategories (COD10K sub-class); -1 none
    int w, h;           // original size (orientation applied); 0 until scanned or loaded
} DataSample;

typedef struct {
    char layout[16];          // "COD10K-v3", "packaged", "CAMO", "single", "plain"
    char split[8];            // "train" or "test"
    DataSample *s;            // (n) sorted by subset, then name
    int n;
    char **categories;        // (n_categories) names, e.g. "Aquatic", "sand"
    int n_categories;
    char **subcategories;     // (n_subcategories) e.g. "BatFish"
    int n_subcategories;
    char **subsets;           // (n_subsets) e.g. "CAMO", "COD10K"
    int n_subsets;
    int n_noncam_skipped;     // COD10K NonCAM images left out
    int n_orphan_masks;       // masks without an image
    int n_bad_skipped;        // pairs dropped by the scan (skip_bad) or pairing
    int n_empty_masks;        // masks with no foreground pixel (> 128), counted by the scan
} Dataset;

typedef struct {
    const char *root;         // --dataset-path; NULL when images_dir/masks_dir are given
    const char *images_dir;   // --images (plain layout)
    const char *masks_dir;    // --masks
    const char *split;        // "train" (default) or "test"
    const char *subset;       // packaged layout: only this test set (case-insensitive); NULL = all
    int include_noncam;       // COD10K: keep NonCAM images too
    int skip_bad;             // warn and skip unpaired images instead of failing
} DatasetOptions;

// Finds the layout, lists and pairs the files, parses categories. Does not
// decode anything (see dataset_scan). The error lists every layout looked for.
cx_status dataset_open(Dataset *ds, const DatasetOptions *opt);
// The pre-scan: decodes every image and mask (JPEG at 1/8 scale) in parallel,
// catching empty, truncated, corrupt and non-image files and masks whose size
// differs from their image; fills DataSample.w/h. With skip_bad each bad pair is
// a warning and is removed (counted in n_bad_skipped); without, the error names
// every bad file (the first 10) and suggests --skip-bad. Masks are decoded whole:
// when more than half have no foreground pixel (0/1-valued, or 16-bit 0..255 masks
// read as empty) it warns, naming one.
cx_status dataset_scan(Dataset *ds, int skip_bad);
// One line: "COD10K-v3 train: 3040 pairs (1960 NonCAM left out), 5 categories".
void dataset_summary(const Dataset *ds, char *buf, size_t n);
// Holds out round(frac * n) samples, chosen by a shuffle seeded with seed, as
// val; the rest is train. Both are deep copies, sorted as the source.
void dataset_split(const Dataset *src, double frac, uint64_t seed, Dataset *train, Dataset *val);
// A deep copy of the samples idx[0..n) (same category/subset tables).
void dataset_select(const Dataset *src, const int *idx, int n, Dataset *dst);
void dataset_free(Dataset *ds);

// Parses COD10K-style "COD10K-CAM-<super#>-<Super>-<sub#>-<Sub>-<n>" (also NonCAM)
// and the generator's "SYN-CAM-<Family>-<n>" names (core/names.h, the grammar
// `camoxpert eval` uses too). Writes the super-class/family and sub-class ("" when
// none); returns 1 when the name has a category.
int dataset_parse_category(const char *name, char *super, size_t nsuper, char *sub, size_t nsub);
// Is this file name one of the image extensions (.jpg .jpeg .png .bmp, any case)?
int dataset_is_image_name(const char *fname);
