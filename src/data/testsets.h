// testsets.h — the four standard camouflaged-object test sets under one data root,
// found by the layouts they are shipped and repackaged in, for `camoxpert eval
// --data-root` (and `predict --data-root`, which writes predictions the same way).
//
//   set         images  prediction folder   looked for (first match wins; names of folders
//                                           are matched case-insensitively, "-test"/"_test" allowed)
//   CHAMELEON       76  CHAMELEON           [TestDataset/]CHAMELEON/{GT,GT_Object,Masks,...}
//   CAMO-test      250  CAMO                [TestDataset/]CAMO/{GT,...}; CAMO-V.1.0*/Images/Test + GT
//   COD10K-test   2026  COD10K              [TestDataset/]COD10K/{GT,...}; COD10K[-v3]/Test/GT_Object
//   NC4K          4121  NC4K                [TestDataset/]NC4K/{GT,...}
//
// COD10K's test folder also holds 1,974 non-camouflaged images (COD10K-NonCAM-..., empty
// masks): by convention they are left out (counted in n_noncam) unless include_noncam.
// A CAMO-V.1.0 release keeps both splits' masks in one GT folder: only the masks of
// Images/Test are the test set. The root may also be one set's own folder
// (.../TestDataset/CAMO). Counts that differ from the standard ones are not errors:
// the caller prints them beside the expected count.
//
//   TestSet *sets; int n;
//   CX_TRY(testsets_find("data", 0, &sets, &n));
//   for (int i = 0; i < n; i++)
//       printf("%s: %d masks in %s\n", testset_info[sets[i].id].title, sets[i].n, sets[i].gt_dir);
//   testsets_free(sets, n);
//
// The photos of a set's masks (predict --data-root) and the test for a training folder
// that is a test set's (train's validation split: --val-from-test) are here too, so the
// three commands share one idea of what a test set is.
#pragma once
#include "core/core.h"
#include "data/dataset.h"

typedef enum { TESTSET_CHAMELEON, TESTSET_CAMO, TESTSET_COD10K, TESTSET_NC4K, TESTSET_N } testset_id;

typedef struct {
    const char *name;    // "CAMO": the folder name of its predictions
    const char *title;   // "CAMO-test": the name papers print
    int expected;        // images in the standard test set (COD10K: camouflaged only)
} TestSetInfo;

extern const TestSetInfo testset_info[TESTSET_N];

typedef struct {
    testset_id id;
    char *dir;        // the set's folder under the root
    char *gt_dir;     // the folder of its masks
    char *img_dir;    // the folder of its photos (Imgs, Image, Images/Test), NULL when absent
    char **names;     // (n) mask base names (no extension), sorted
    char **files;     // (n) their file names in gt_dir
    int n;
    int n_noncam;     // COD10K-NonCAM-... masks left out (include_noncam = 0), else 0
} TestSet;

// Finds the sets present under root, in testset_id order (*n = 0 when none: not an
// error; the caller says what was looked for with testsets_layouts). Fails only on an
// unreadable folder, or two mask files of one base name (naming both).
cx_status testsets_find(const char *root, int include_noncam, TestSet **sets, int *n);
void testsets_free(TestSet *sets, int n);
// The set a folder name stands for ("camo", "COD10K-test", "NC4K"), or -1.
int testset_match(const char *folder);
// Is this a COD10K non-camouflaged image ("COD10K-NonCAM-5-Background-..."), by name?
int testset_is_noncam(const char *name);
// One line per set listing the places looked for, for an error message.
const char *testsets_layouts(void);

// The photo of each of the set's masks, matched by base name in img_dir (.jpg .jpeg
// .png .bmp): (*photos)[i] is the path of names[i]'s photo (malloc'd), NULL when it has
// none (counted in *n_missing); *n_unused counts the photos there that are no mask's
// (COD10K NonCAM photos whose masks were left out are not counted). Errors: the set has
// no photo folder, the folder cannot be read, two photos of one name. Free with
// testset_photos_free(photos, s->n).
//
//   char **ph; int miss, unused;
//   CX_TRY(testset_photos(&sets[i], &ph, &miss, &unused));
cx_status testset_photos(const TestSet *s, char ***photos, int *n_missing, int *n_unused);
void testset_photos_free(char **photos, int n);

// Is the folder dir in a test set, by the names of its folders? dir, its parent and its
// grandparent (of its real path) are read nearest first, and the first that decides
// wins: a test split (Test, TestDataset, Testing, TestSet, <SET>-test) or a set that is
// only ever a test set (CHAMELEON, NC4K) says yes; a training split (Train,
// TrainDataset, TrainValDataset, Training, TrainSet) says no. CAMO and COD10K, which
// have training splits too, do not decide. On yes, what gets the set or split and its
// folder ("the test set NC4K (/data/TestDataset/NC4K)").
int testset_folder_is_test(const char *dir, char *what, size_t n);
// Does a dataset (a training split) take photos from a test set? Each folder its photos
// come from, by testset_folder_is_test; what names the first such.
int testset_dataset_is_test(const Dataset *ds, char *what, size_t n);
