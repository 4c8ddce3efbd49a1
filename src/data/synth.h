// synth.h — a synthetic camouflage generator: scenes where objects are hidden
// in a background of the same texture family, for training and testing on a
// machine with no dataset.
//
// Five scene families with distinct texture statistics (sand/gravel, foliage,
// water, bark, rock). Each image draws a family, a background texture, and an
// object texture from the same family whose tint, texture scale, orientation and
// feature density differ from the background by an amount that shrinks as
// `difficulty` goes from 0 (easy) to 1 (nearly invisible). 1-3 objects per image
// are star-shaped blobs of varied size, elongation and rotation with hard or
// soft edges; a fraction of images has nothing hidden (an empty mask). Every
// image is a pure function of (seed, index), so the output is identical for any
// thread count. Names are "SYN-CAM-<family>-<index>", parsed by the dataset
// layer as the image's category.
//
//   SynthConfig c = synth_config_default();
//   uint8_t img[S*S*3], mask[S*S];
//   int family = synth_generate(&c, 17, img, mask);
#pragma once
#include "core/core.h"
#include <stdint.h>

typedef enum { SYNTH_SAND = 0, SYNTH_FOLIAGE, SYNTH_WATER, SYNTH_BARK, SYNTH_ROCK, SYNTH_N_FAMILIES } synth_family;

typedef struct {
    int size;                // S: images are S x S
    uint64_t seed;
    double difficulty;       // 0 (easy) .. 1 (hard); default 0.5
    double empty_fraction;   // share of images with nothing hidden; default 0.05
    int cross_family;        // 1: the object's texture from another family than the background's
                             // (the image keeps the background's family name); default 0
} SynthConfig;

SynthConfig synth_config_default(void);   // 352, seed 0, difficulty 0.5, empty 0.05
const char *synth_family_name(int family); // "sand", "foliage", "water", "bark", "rock"

// Generates image `index`: img (S, S, 3) RGB u8, mask (S, S) u8 in {0, 255}.
// Returns the family.
int synth_generate(const SynthConfig *c, int64_t index, uint8_t *img, uint8_t *mask);

// The plain colour-threshold baseline: Otsu's threshold on the gray image, the
// smaller side called the object. pred (S*S) gets 0 / 255. img: (npx, 3).
void synth_threshold_baseline(const uint8_t *img, int npx, uint8_t *pred);

typedef struct {
    int n_train, n_test;
    int per_family[SYNTH_N_FAMILIES];
    int n_empty;
    double seconds;
    // The threshold baseline on the test split (when asked for): mean IoU
    // (an empty mask predicted empty scores 1) and mean absolute error.
    int baseline_n;
    double baseline_iou, baseline_mae;
} SynthStats;

// Writes a COD10K-v3-style tree under out: {Train,Test}/Image/<name>.jpg
// (JPEG quality `quality`) and {Train,Test}/GT_Object/<name>.png, plus
// out/synth.json with the settings. Train images are indices 1..n_train, test
// images n_train+1..n_train+n_test. When baseline_dir is non-NULL, the threshold
// baseline's predictions for the test split go there as <name>.png (8-bit).
// The settings and counts synth_write_dataset takes: CX_EARG naming the option otherwise.
cx_status synth_check(const SynthConfig *c, int n_train, int n_test);
// Makes out (and baseline_dir, may be NULL) ready for synth_write_dataset: each must
// not exist, be empty, or — with overwrite — hold only what an earlier synth wrote
// there (its marked SYN-CAM-* images and masks, synth.json), which is deleted so
// nothing old stays mixed in. Anything camoxpert synth did not write is CX_EARG naming
// it. Everything (the settings, both folders) is checked before anything is deleted;
// then both folders are created and locked (core/io.h, the lock rule: another command
// writing there is refused) until synth_release_out.
typedef struct { IoDirLock lock[2]; } SynthOut;
cx_status synth_prepare_out(const char *out, const char *baseline_dir, int overwrite, const SynthConfig *c, int n_train,
                            int n_test, SynthOut *so);
void synth_release_out(SynthOut *so);
// Every file is created new (O_EXCL): an existing file is an error, never replaced.
cx_status synth_write_dataset(const char *out, const SynthConfig *c, int n_train, int n_test, int quality,
                              const char *baseline_dir, SynthStats *stats);
