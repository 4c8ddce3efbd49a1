// augment.h — the reference's training augmentation and ImageNet normalisation,
// from a resized 8-bit image and 0/1 mask to NHWC float rows of a batch.
//
// Augmentation as the reference (albumentations order): horizontal flip (p 0.5),
// vertical flip (p 0.2), RandomRotate90 (p 0.2, k quarter turns counter-clockwise
// with k uniform in 0..3, as np.rot90), colour jitter (p 0.2: brightness,
// contrast, saturation factors uniform in [0.9, 1.1], applied in a random order
// with the result rounded to 8 bits after each, as torchvision's ColorJitter on
// PIL images). The draws are a pure function of (seed, epoch, sample index), so
// a run resumed mid-epoch sees exactly the images it would have seen.
//
//   AugParams p;
//   augment_draw(&p, seed, epoch, index);
//   augment_apply(img_f32, mask_f32, img_u8, mask01, S, &p);
#pragma once
#include <stdint.h>

typedef struct {
    int hflip, vflip;      // 0/1
    int rot90;             // quarter turns counter-clockwise, 0..3
    int jitter;            // 0/1: apply the colour factors below
    float brightness, contrast, saturation;   // factors, 1 = unchanged
    int order[3];          // permutation of {0 brightness, 1 contrast, 2 saturation}
} AugParams;

// ImageNet statistics used by the reference's Normalize.
extern const float AUG_MEAN[3], AUG_STD[3];

// The identity (no augmentation): evaluation and validation.
void augment_none(AugParams *p);
// Draws the parameters for sample `index` of epoch `epoch`.
void augment_draw(AugParams *p, uint64_t seed, int64_t epoch, int64_t index);

// img: (S, S, 3) f32 output, normalised (x / 255 - mean) / std
// mask: (S, S, 1) f32 output in {0, 1}; may be NULL
// src: (S, S, 3) u8 resized image; mask01: (S, S) u8 in {0, 1} (NULL with mask NULL)
void augment_apply(float *img, float *mask, const uint8_t *src, const uint8_t *mask01, int S, const AugParams *p);
