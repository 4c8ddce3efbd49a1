// augment.c — see augment.h. Flips and quarter turns are one affine index map
// (output pixel -> source pixel) applied while converting to float; colour jitter
// works on 0..255 floats rounded after each step, then everything is normalised.
#include "augment.h"
#include "core/core.h"
#include <math.h>
#include <string.h>

const float AUG_MEAN[3] = { 0.485f, 0.456f, 0.406f };
const float AUG_STD[3] = { 0.229f, 0.224f, 0.225f };

#define AUG_STREAM 0x6175676d656e74ULL   // "augment"

void augment_none(AugParams *p) {
    memset(p, 0, sizeof *p);
    p->brightness = p->contrast = p->saturation = 1;
    p->order[0] = 0; p->order[1] = 1; p->order[2] = 2;
}

void augment_draw(AugParams *p, uint64_t seed, int64_t epoch, int64_t index) {
    augment_none(p);
    Rng root = rng_init(seed);
    Rng aug = rng_split(&root, AUG_STREAM);
    Rng ep = rng_split(&aug, (uint64_t)epoch);
    Rng r = rng_split(&ep, (uint64_t)index);
    // A fixed number of draws in a fixed order, so each decision has its own slot.
    double u_h = rng_uniform(&r), u_v = rng_uniform(&r), u_r = rng_uniform(&r);
    int k = (int)rng_below(&r, 4);
    double u_j = rng_uniform(&r);
    double fb = 0.9 + 0.2 * rng_uniform(&r), fc = 0.9 + 0.2 * rng_uniform(&r), fs = 0.9 + 0.2 * rng_uniform(&r);
    int perm = (int)rng_below(&r, 6);
    p->hflip = u_h < 0.5;
    p->vflip = u_v < 0.2;
    p->rot90 = u_r < 0.2 ? k : 0;
    if (u_j < 0.2) {
        static const int perms[6][3] = { { 0, 1, 2 }, { 0, 2, 1 }, { 1, 0, 2 }, { 1, 2, 0 }, { 2, 0, 1 }, { 2, 1, 0 } };
        p->jitter = 1;
        p->brightness = (float)fb; p->contrast = (float)fc; p->saturation = (float)fs;
        memcpy(p->order, perms[perm], sizeof p->order);
    }
}

// Maps output (y, x) to the source pixel of hflip -> vflip -> rot90 (applied in that order).
static void map_src(int S, const AugParams *p, int y, int x, int *sy, int *sx) {
    int i = y, j = x;
    for (int t = 0; t < p->rot90; t++) { int ni = j, nj = S - 1 - i; i = ni; j = nj; }   // np.rot90: out[i,j] = in[j, S-1-i]
    if (p->vflip) i = S - 1 - i;
    if (p->hflip) j = S - 1 - j;
    *sy = i; *sx = j;
}

static inline float clip_round(float v) {
    v = floorf(v + 0.5f);
    return v < 0 ? 0 : v > 255 ? 255 : v;
}

static void color_jitter(float *img, int npx, const AugParams *p) {
    for (int t = 0; t < 3; t++) {
        int op = p->order[t];
        if (op == 0) {
            float f = p->brightness;
            for (int i = 0; i < 3 * npx; i++) img[i] = clip_round(img[i] * f);
        } else if (op == 1) {
            // Blend with the mean gray level (PIL: the rounded mean of the L image).
            double sum = 0;
            for (int i = 0; i < npx; i++) sum += floorf(0.299f * img[3 * i] + 0.587f * img[3 * i + 1] + 0.114f * img[3 * i + 2] + 0.5f);
            float m = floorf((float)(sum / npx) + 0.5f), f = p->contrast;
            for (int i = 0; i < 3 * npx; i++) img[i] = clip_round(m + f * (img[i] - m));
        } else {
            float f = p->saturation;
            for (int i = 0; i < npx; i++) {
                float g = floorf(0.299f * img[3 * i] + 0.587f * img[3 * i + 1] + 0.114f * img[3 * i + 2] + 0.5f);
                for (int c = 0; c < 3; c++) img[3 * i + c] = clip_round(g + f * (img[3 * i + c] - g));
            }
        }
    }
}

void augment_apply(float *img, float *mask, const uint8_t *src, const uint8_t *mask01, int S, const AugParams *p) {
    // The index map is affine: source = o + x*dx + y*dy (in pixels).
    int y0, x0, y1, x1, y2, x2;
    map_src(S, p, 0, 0, &y0, &x0);
    map_src(S, p, 0, S > 1 ? 1 : 0, &y1, &x1);
    map_src(S, p, S > 1 ? 1 : 0, 0, &y2, &x2);
    long o = (long)y0 * S + x0, dx = ((long)y1 * S + x1) - o, dy = ((long)y2 * S + x2) - o;
    for (int y = 0; y < S; y++) {
        long s = o + (long)y * dy;
        float *d = img + (size_t)y * S * 3;
        float *dm = mask ? mask + (size_t)y * S : NULL;
        for (int x = 0; x < S; x++, s += dx) {
            const uint8_t *q = src + s * 3;
            d[3 * x] = q[0]; d[3 * x + 1] = q[1]; d[3 * x + 2] = q[2];
            if (dm) dm[x] = mask01[s] ? 1.0f : 0.0f;
        }
    }
    int npx = S * S;
    if (p->jitter) color_jitter(img, npx, p);
    float sc[3], sh[3];
    for (int c = 0; c < 3; c++) { sc[c] = 1.0f / (255.0f * AUG_STD[c]); sh[c] = AUG_MEAN[c] / AUG_STD[c]; }
    for (int i = 0; i < npx; i++)
        for (int c = 0; c < 3; c++) img[3 * i + c] = img[3 * i + c] * sc[c] - sh[c];
}
