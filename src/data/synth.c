// synth.c — see synth.h. Textures are built from lattice value noise (smoothstep
// bilinear interpolation of seeded grids, several octaves, anisotropic per family)
// mapped through a three-colour palette, plus family features (pebbles, leaves,
// ripples, streaks, cracks). Objects are star-shaped blobs composited with an
// alpha ramp; the ground truth is alpha >= 0.5.
#include "synth.h"
#include "image.h"
#include "core/outpath.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <unistd.h>
#include <string.h>
#include <stdio.h>
#include <sys/stat.h>

SynthConfig synth_config_default(void) {
    return (SynthConfig){ .size = 352, .seed = 0, .difficulty = 0.5, .empty_fraction = 0.05 };
}

static const char *const FAMILY_NAMES[SYNTH_N_FAMILIES] = { "sand", "foliage", "water", "bark", "rock" };
const char *synth_family_name(int f) { return f >= 0 && f < SYNTH_N_FAMILIES ? FAMILY_NAMES[f] : "unknown"; }

// Palettes: colour at t = 0, 0.5, 1.
static const float PALETTE[SYNTH_N_FAMILIES][3][3] = {
    { { 150, 128, 88 }, { 194, 176, 128 }, { 228, 214, 172 } },   // sand
    { { 18, 46, 18 }, { 52, 100, 34 }, { 120, 150, 50 } },        // foliage
    { { 12, 38, 66 }, { 40, 92, 128 }, { 120, 170, 190 } },       // water
    { { 48, 32, 20 }, { 96, 66, 44 }, { 140, 108, 78 } },         // bark
    { { 70, 70, 68 }, { 122, 120, 114 }, { 182, 180, 172 } },     // rock
};

typedef struct {
    float freq;       // texture frequency multiplier
    float tint[3];    // added to every colour
    float density;    // feature count multiplier (pebbles, leaves, cracks)
    int swap;         // exchange x and y frequencies (rotates oriented textures by 90 degrees)
} TexParams;

static float frand(Rng *r, float a, float b) { return a + (b - a) * (float)rng_uniform(r); }

// Adds `octaves` of value noise to out (S, S), normalised to about [-1, 1].
// fx, fy: lattice cells across the image at the first octave.
static void value_noise(float *out, int S, float fx, float fy, int octaves, float persistence, Rng *r) {
    memset(out, 0, sizeof(float) * (size_t)S * S);
    float amp = 1, total = 0;
    int *ix = cx_malloc(sizeof(int) * (size_t)S * 2);
    float *tx = cx_malloc(sizeof(float) * (size_t)S * 2);
    int *iy = ix + S;
    float *ty = tx + S;
    for (int o = 0; o < octaves; o++) {
        float cx = fx * (float)(1 << o), cy = fy * (float)(1 << o);
        if (cx > S / 2.0f) cx = S / 2.0f;
        if (cy > S / 2.0f) cy = S / 2.0f;
        int gw = (int)ceilf(cx) + 2, gh = (int)ceilf(cy) + 2;
        float *g = cx_malloc(sizeof(float) * (size_t)gw * gh);   // (gh, gw) lattice values in [-1, 1]
        for (int i = 0; i < gw * gh; i++) g[i] = 2 * (float)rng_uniform(r) - 1;
        float offx = (float)rng_uniform(r), offy = (float)rng_uniform(r);
        for (int x = 0; x < S; x++) {
            float u = (x + 0.5f) / S * cx + offx;
            int i = (int)u;
            float t = u - i;
            ix[x] = i; tx[x] = t * t * (3 - 2 * t);
        }
        for (int y = 0; y < S; y++) {
            float u = (y + 0.5f) / S * cy + offy;
            int i = (int)u;
            float t = u - i;
            iy[y] = i; ty[y] = t * t * (3 - 2 * t);
        }
        for (int y = 0; y < S; y++) {
            const float *g0 = g + (size_t)iy[y] * gw, *g1 = g0 + gw;
            float b = ty[y];
            float *o_ = out + (size_t)y * S;
            for (int x = 0; x < S; x++) {
                int i = ix[x];
                float a = tx[x];
                float top = g0[i] + a * (g0[i + 1] - g0[i]), bot = g1[i] + a * (g1[i + 1] - g1[i]);
                o_[x] += amp * (top + b * (bot - top));
            }
        }
        free(g);
        total += amp;
        amp *= persistence;
    }
    float inv = 1.7f / total;   // value noise rarely reaches its bound; stretch to about [-1, 1]
    for (int i = 0; i < S * S; i++) out[i] *= inv;
    free(ix);
    free(tx);
}

static inline void palette(int fam, float t, const float tint[3], float rgb[3]) {
    if (t < 0) t = 0;
    if (t > 1) t = 1;
    const float (*p)[3] = PALETTE[fam];
    int k = t < 0.5f ? 0 : 1;
    float a = t < 0.5f ? t * 2 : (t - 0.5f) * 2;
    for (int c = 0; c < 3; c++) rgb[c] = p[k][c] + a * (p[k + 1][c] - p[k][c]) + tint[c];
}

static inline uint8_t u8c(float v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5f); }

// The pixel box [x0, x1] x [y0, y1] cut to the S x S image (empty stays empty).
static void clip_box(int S, int *x0, int *y0, int *x1, int *y1) {
    if (*x0 < 0) *x0 = 0;
    if (*y0 < 0) *y0 = 0;
    if (*x1 > S - 1) *x1 = S - 1;
    if (*y1 > S - 1) *y1 = S - 1;
}

// Paints a filled ellipse (semi-axes a, b, angle th) with colour col, shaded
// darker towards its rim along the minor axis (leaf) or radially (pebble).
static void splat(float *rgb, int S, float cx, float cy, float a, float b, float th, const float col[3], float rim) {
    float R = a > b ? a : b;
    int x0 = (int)floorf(cx - R), x1 = (int)ceilf(cx + R), y0 = (int)floorf(cy - R), y1 = (int)ceilf(cy + R);
    clip_box(S, &x0, &y0, &x1, &y1);
    float c = cosf(th), s = sinf(th);
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) {
            float dx = x - cx, dy = y - cy;
            float u = (c * dx + s * dy) / a, v = (-s * dx + c * dy) / b;
            float q = u * u + v * v;
            if (q > 1) continue;
            float shade = 1 - rim * q;
            float *d = rgb + ((size_t)y * S + x) * 3;
            for (int k = 0; k < 3; k++) d[k] = col[k] * shade;
        }
}

// Renders family `fam`'s texture into rgb (S, S, 3) floats. f1, f2: (S, S) scratch.
static void texture(float *rgb, int S, int fam, const TexParams *tp, Rng *r, float *f1, float *f2) {
    float sc = S / 352.0f, fr = tp->freq;
    int npx = S * S;
    float col[3];
    float fx, fy;
    switch (fam) {
    case SYNTH_SAND: {
        value_noise(f1, S, 10 * fr, 10 * fr, 3, 0.5f, r);
        value_noise(f2, S, 60 * fr, 60 * fr, 2, 0.6f, r);
        for (int i = 0; i < npx; i++) { palette(fam, 0.5f + 0.3f * f1[i] + 0.22f * f2[i], tp->tint, col); memcpy(rgb + 3 * i, col, sizeof col); }
        int n = (int)(70 * tp->density * sc * sc + 0.5f);
        for (int k = 0; k < n; k++) {
            float rad = frand(r, 1.5f, 5.5f) * sc * fr;
            palette(fam, frand(r, 0.0f, 1.0f), tp->tint, col);
            float sh = frand(r, 0.65f, 1.05f);
            for (int c = 0; c < 3; c++) col[c] *= sh;
            splat(rgb, S, frand(r, 0, S), frand(r, 0, S), rad, rad * frand(r, 0.6f, 1.0f), frand(r, 0, 3.1416f), col, 0.35f);
        }
        break;
    }
    case SYNTH_FOLIAGE: {
        value_noise(f1, S, 6 * fr, 6 * fr, 4, 0.5f, r);
        for (int i = 0; i < npx; i++) { palette(fam, 0.45f + 0.4f * f1[i], tp->tint, col); memcpy(rgb + 3 * i, col, sizeof col); }
        int n = (int)(170 * tp->density * sc * sc + 0.5f);
        float base = tp->swap ? 1.5708f : 0.0f;   // leaves lean one way; swapped objects lean the other
        for (int k = 0; k < n; k++) {
            float a = frand(r, 6, 17) * sc / fr;
            palette(fam, frand(r, 0.15f, 1.0f), tp->tint, col);
            splat(rgb, S, frand(r, 0, S), frand(r, 0, S), a, a * frand(r, 0.22f, 0.45f), base + frand(r, -0.9f, 0.9f), col, 0.45f);
        }
        break;
    }
    case SYNTH_WATER: {
        fx = 3 * fr; fy = 10 * fr;
        if (tp->swap) { float t = fx; fx = fy; fy = t; }
        value_noise(f1, S, fx, fy, 3, 0.5f, r);
        float waves = frand(r, 14, 22) * fr;
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                int i = y * S + x;
                float pos = (tp->swap ? x : y) / (float)S;
                float t = 0.5f + 0.28f * sinf(6.2832f * (pos * waves + 0.8f * f1[i])) + 0.22f * f1[i];
                palette(fam, t, tp->tint, col);
                if (t > 0.88f) for (int c = 0; c < 3; c++) col[c] += 120 * (t - 0.88f) / 0.12f;   // glints
                memcpy(rgb + 3 * i, col, sizeof col);
            }
        break;
    }
    case SYNTH_BARK: {
        fx = 26 * fr; fy = 2 * fr;
        if (tp->swap) { float t = fx; fx = fy; fy = t; }
        value_noise(f1, S, fx, fy, 4, 0.5f, r);
        value_noise(f2, S, fx / 4, fy * 0.8f, 2, 0.5f, r);
        float crack = 0.05f * tp->density;
        for (int i = 0; i < npx; i++) {
            palette(fam, 0.5f + 0.38f * f1[i], tp->tint, col);
            if (fabsf(f2[i]) < crack) for (int c = 0; c < 3; c++) col[c] *= 0.45f;
            memcpy(rgb + 3 * i, col, sizeof col);
        }
        break;
    }
    default: {   // rock: ridged noise with cracks and grain
        value_noise(f1, S, 5 * fr, 5 * fr, 5, 0.55f, r);
        value_noise(f2, S, 40 * fr, 40 * fr, 2, 0.5f, r);
        float crack = 0.025f * tp->density;
        for (int i = 0; i < npx; i++) {
            float ridge = 1 - fabsf(f1[i]);
            palette(fam, 0.15f + 0.7f * ridge * ridge + 0.15f * f2[i], tp->tint, col);
            if (fabsf(f1[i]) < crack) for (int c = 0; c < 3; c++) col[c] *= 0.5f;
            memcpy(rgb + 3 * i, col, sizeof col);
        }
        break;
    }
    }
}

// Adds one star-shaped blob to alpha (S, S) (max-combined).
static void blob(float *alpha, int S, Rng *r, int n_objects) {
    float R = S * (n_objects == 1 ? frand(r, 0.10f, 0.30f) : frand(r, 0.07f, 0.18f));
    float cx = frand(r, 0.2f, 0.8f) * S, cy = frand(r, 0.2f, 0.8f) * S;
    float elong = frand(r, 1.0f, 2.2f), th = frand(r, 0, 3.1416f);
    float amp[6], ca[6], sa[6];
    for (int k = 2; k <= 5; k++) {
        amp[k] = frand(r, 0, 0.28f) / (k - 1);
        float ph = frand(r, 0, 6.2832f);
        ca[k] = cosf(ph); sa[k] = sinf(ph);
    }
    // Hard edges (one-pixel anti-aliasing) or soft ones (a ramp of several pixels).
    float soft = rng_uniform(r) < 0.5 ? 1.0f : frand(r, 2.5f, 8.0f) * S / 352.0f;
    float ext = R * elong * 1.9f + soft;
    int x0 = (int)(cx - ext), x1 = (int)(cx + ext), y0 = (int)(cy - ext), y1 = (int)(cy + ext);
    clip_box(S, &x0, &y0, &x1, &y1);
    float c = cosf(th), s = sinf(th);
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) {
            float dx = x + 0.5f - cx, dy = y + 0.5f - cy;
            float u = (c * dx + s * dy) / elong, v = -s * dx + c * dy;
            float rho = sqrtf(u * u + v * v);
            float co = rho > 1e-6f ? u / rho : 1, si = rho > 1e-6f ? v / rho : 0;
            // cos(k th + ph) by the angle-addition recurrence, no atan2.
            float ck = co, sk = si, rad = 1;
            for (int k = 2; k <= 5; k++) {
                float nc = ck * co - sk * si, ns = sk * co + ck * si;
                ck = nc; sk = ns;
                rad += amp[k] * (ck * ca[k] - sk * sa[k]);
            }
            float d = rho - R * rad;   // < 0 inside (in object-frame pixels)
            float a = 0.5f - d / soft;
            if (a <= 0) continue;
            if (a > 1) a = 1;
            float *p = alpha + (size_t)y * S + x;
            if (a > *p) *p = a;
        }
}

int synth_generate(const SynthConfig *cfg, int64_t index, uint8_t *img, uint8_t *mask) {
    int S = cfg->size, npx = S * S;
    double d = cfg->difficulty < 0 ? 0 : cfg->difficulty > 1 ? 1 : cfg->difficulty;
    Rng root = rng_init(cfg->seed);
    Rng rs = rng_split(&root, 0x73796e7468ULL);   // "synth"
    Rng r = rng_split(&rs, (uint64_t)index);
    int fam = (int)rng_below(&r, SYNTH_N_FAMILIES);
    float *bg = cx_malloc(sizeof(float) * (size_t)npx * 3);    // (S, S, 3) background
    float *ob = cx_malloc(sizeof(float) * (size_t)npx * 3);    // (S, S, 3) object texture
    float *alpha = cx_calloc((size_t)npx, sizeof(float));      // (S, S) object coverage
    float *f1 = cx_malloc(sizeof(float) * (size_t)npx * 2), *f2 = f1 + npx;   // scratch fields
    TexParams tb = { .freq = frand(&r, 0.8f, 1.25f), .density = frand(&r, 0.8f, 1.2f) };
    for (int c = 0; c < 3; c++) tb.tint[c] = frand(&r, -14, 14);
    tb.swap = rng_uniform(&r) < 0.5;
    // The object: same family, nudged by an amount that shrinks with difficulty.
    float m = (float)(1 - d);
    TexParams to = tb;
    // Tint: mostly lighter or darker, with a smaller change of hue (a chroma
    // direction orthogonal to gray), as real camouflage rarely differs in hue.
    float dir[3], mean = 0, norm = 0;
    for (int c = 0; c < 3; c++) { dir[c] = (float)rng_normal(&r); mean += dir[c] / 3; }
    for (int c = 0; c < 3; c++) { dir[c] -= mean; norm += dir[c] * dir[c]; }
    norm = sqrtf(norm) + 1e-6f;
    float shift = 30 * m + 4, lum = rng_uniform(&r) < 0.5 ? -1.0f : 1.0f;
    for (int c = 0; c < 3; c++) to.tint[c] += shift * (0.8f * lum + 0.45f * dir[c] / norm);
    float fs = 1 + (0.5f * m + 0.12f) * (rng_uniform(&r) < 0.5 ? -0.6f : 1.0f);
    to.freq *= fs;
    to.density *= 1 + (0.6f * m + 0.1f) * (rng_uniform(&r) < 0.5 ? -0.5f : 1.0f);
    if (rng_uniform(&r) < 0.6 * m) to.swap = !to.swap;
    int empty = rng_uniform(&r) < cfg->empty_fraction;
    double u = rng_uniform(&r);
    int n_obj = empty ? 0 : u < 0.75 ? 1 : u < 0.95 ? 2 : 3;
    Rng rt = rng_split(&r, 1), ro = rng_split(&r, 2), rb = rng_split(&r, 3), rl = rng_split(&r, 4);
    texture(bg, S, fam, &tb, &rt, f1, f2);
    for (int k = 0; k < n_obj; k++) blob(alpha, S, &rb, n_obj);
    // cross_family: another family's texture (its own draws come last, so the default stream is unchanged)
    int ofam = cfg->cross_family ? (fam + 1 + (int)rng_below(&r, SYNTH_N_FAMILIES - 1)) % SYNTH_N_FAMILIES : fam;
    if (n_obj) texture(ob, S, ofam, &to, &ro, f1, f2);
    // Shared lighting (so it is no cue), then composite and a little sensor noise.
    value_noise(f1, S, 1.5f, 1.5f, 2, 0.5f, &rl);
    float light = frand(&rl, 0.08f, 0.22f);
    uint64_t h = rng_u64(&rl) | 1;
    for (int i = 0; i < npx; i++) {
        float a = alpha[i], l = 1 + light * f1[i];
        h ^= h << 13; h ^= h >> 7; h ^= h << 17;   // xorshift64: three 10-bit grains per pixel
        for (int c = 0; c < 3; c++) {
            float grain = ((float)((h >> (10 * c)) & 1023) * (1.0f / 1023.0f) - 0.5f) * 6;
            float v = a > 0 ? bg[3 * i + c] + a * (ob[3 * i + c] - bg[3 * i + c]) : bg[3 * i + c];
            img[3 * i + c] = u8c(v * l + grain);
        }
        mask[i] = a >= 0.5f ? 255 : 0;
    }
    free(bg); free(ob); free(alpha); free(f1);
    return fam;
}

void synth_threshold_baseline(const uint8_t *img, int npx, uint8_t *pred) {
    int hist[256] = { 0 };
    for (int i = 0; i < npx; i++) hist[image_rgb_to_gray(img[3 * i], img[3 * i + 1], img[3 * i + 2])]++;
    // Otsu: the threshold maximising the between-class variance.
    double sum = 0;
    for (int v = 0; v < 256; v++) sum += (double)v * hist[v];
    double wb = 0, sb = 0, best = -1;
    int thr = 127;
    for (int t = 0; t < 256; t++) {
        wb += hist[t];
        if (wb == 0) continue;
        double wf = npx - wb;
        if (wf == 0) break;
        sb += (double)t * hist[t];
        double mb = sb / wb, mf = (sum - sb) / wf;
        double between = wb * wf * (mb - mf) * (mb - mf);
        if (between > best) { best = between; thr = t; }
    }
    int above = 0;
    for (int v = thr + 1; v < 256; v++) above += hist[v];
    int fg_is_above = above <= npx - above;   // the object is the smaller side
    for (int i = 0; i < npx; i++) {
        int g = image_rgb_to_gray(img[3 * i], img[3 * i + 1], img[3 * i + 2]);
        pred[i] = ((g > thr) == fg_is_above) ? 255 : 0;
    }
}

static cx_status write_buf(const char *path, const uint8_t *buf, size_t n) {
    // Plain writes: a generated dataset is cheap to regenerate, and 2,000 fsyncs are not.
    // Exclusive: synth writes into an empty directory (synth_prepare_out) and never
    // replaces or writes through anything that is there.
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0666);
    if (fd < 0)
        return CX_FAIL(CX_EIO, "cannot create %s: %s", path, errno == EEXIST ? "it exists (synth writes only new files)" : strerror(errno));
    FILE *f = fdopen(fd, "wb");
    if (!f) { close(fd); return CX_FAIL(CX_EIO, "cannot write %s: %s", path, strerror(errno)); }
    size_t w = fwrite(buf, 1, n, f);
    int err = errno;
    if (fclose(f) != 0) err = errno;
    else if (w == n) return CX_OK;
    return CX_FAIL(CX_EIO, "writing %s failed: %s", path, io_errstr(err));
}

static int same_dir(const char *a, const char *b) {
    struct stat x, y;
    return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

// Is name (in a synth folder) a file camoxpert synth wrote: SYN-CAM-*.jpg|png with its mark?
static int synth_own_file(const char *dir, const char *name) {
    size_t L = strlen(name);
    if (strncmp(name, "SYN-CAM-", 8) || L < 12 || (strcmp(name + L - 4, ".jpg") && strcmp(name + L - 4, ".png"))) return 0;
    char p[4400], mark[64];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return !outpath_read_mark(p, mark, sizeof mark) && !strcmp(mark, OWNER_SYNTH);
}

// Visits dir: with remove == 0 counts its entries and finds the first foreign one
// (*foreign); with remove == 1 deletes the files synth wrote. sub: the synth folders
// expected inside (NULL: only image files).
static cx_status synth_scan_dir(const char *dir, const char *const *sub, int remove, int *n_entries, char *foreign, size_t fn) {
    DIR *d = opendir(dir);
    if (!d) return CX_FAIL(CX_EIO, "cannot list %s: %s", dir, strerror(errno));
    cx_status st = CX_OK;
    struct dirent *e;
    while (!st && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        (*n_entries)++;
        char p[4400];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        int known = 0;
        for (int k = 0; sub && sub[k]; k++)
            if (!strcmp(e->d_name, sub[k]) && io_path_is_dir(p)) known = 2;
        if (!known && sub && !strcmp(e->d_name, "synth.json")) {
            char mark[64];
            known = !outpath_read_mark(p, mark, sizeof mark) && !strcmp(mark, OWNER_SYNTH);
        }
        if (!known && !sub) known = synth_own_file(dir, e->d_name);
        if (known == 2) {
            static const char *const img_dirs[] = { "Image", "GT_Object", NULL };
            const char *const *next = (!strcmp(e->d_name, "Train") || !strcmp(e->d_name, "Test")) ? img_dirs : NULL;
            st = synth_scan_dir(p, next, remove, n_entries, foreign, fn);
        } else if (!known) {
            if (!foreign[0]) snprintf(foreign, fn, "%s", p);
        } else if (remove && unlink(p) != 0) {
            st = CX_FAIL(CX_EIO, "cannot remove %s: %s", p, strerror(errno));
        }
    }
    closedir(d);
    return st;
}

cx_status synth_check(const SynthConfig *c, int n_train, int n_test) {
    if (c->size < 16 || c->size > 4096) return CX_FAIL(CX_EARG, "--size %d out of range (16..4096)", c->size);
    if (n_train < 0 || n_test < 0 || n_train + n_test == 0)
        return CX_FAIL(CX_EARG, "nothing to generate (--train %d --test %d)", n_train, n_test);
    if (c->difficulty < 0 || c->difficulty > 1) return CX_FAIL(CX_EARG, "--difficulty %g is outside 0..1", c->difficulty);
    if (c->empty_fraction < 0 || c->empty_fraction > 1) return CX_FAIL(CX_EARG, "--empty-fraction %g is outside 0..1", c->empty_fraction);
    return CX_OK;
}

cx_status synth_prepare_out(const char *out, const char *baseline_dir, int overwrite, const SynthConfig *c, int n_train,
                            int n_test, SynthOut *so) {
    static const char *const top[] = { "Train", "Test", NULL };
    const char *dirs[2] = { out, baseline_dir };
    const char *opt[2] = { "--out", "--baseline" };
    so->lock[0].fd = so->lock[1].fd = -1;
    CX_TRY(synth_check(c, n_train, n_test));
    if (baseline_dir && io_path_exists(baseline_dir) && io_path_exists(out) && same_dir(out, baseline_dir))
        return CX_FAIL(CX_EARG, "--baseline %s is --out itself; give the baseline's predictions a folder of their own",
                       baseline_dir);
    // First every check, then (only when all passed) the deletions: a refusal leaves both as they were.
    int holds[2] = { 0, 0 };
    for (int i = 0; i < 2; i++) {
        if (!dirs[i] || !io_path_exists(dirs[i])) continue;
        if (!io_path_is_dir(dirs[i])) return CX_FAIL(CX_EARG, "%s %s exists and is not a directory", opt[i], dirs[i]);
        int n = 0;
        char foreign[4400] = "";
        CX_TRY(synth_scan_dir(dirs[i], i == 0 ? top : NULL, 0, &n, foreign, sizeof foreign));
        if (!n) continue;
        if (foreign[0])
            return CX_FAIL(CX_EARG, "%s %s is not empty and holds %s, which camoxpert synth did not write; synth writes "
                           "into a new or empty directory (choose another %s)", opt[i], dirs[i], foreign, opt[i]);
        if (!overwrite)
            return CX_FAIL(CX_EARG, "%s %s holds a dataset camoxpert synth wrote earlier; pass --overwrite to replace it "
                           "(its files are deleted first, so none is left mixed in), or choose another %s", opt[i],
                           dirs[i], opt[i]);
        holds[i] = 1;
    }
    cx_status st = CX_OK;
    for (int i = 0; i < 2 && !st; i++) {
        if (!dirs[i]) continue;
        st = io_make_dirs(dirs[i]);
        if (!st && (st = io_dir_lock(dirs[i], 1, &so->lock[i]))) cx_error_context("%s %s", opt[i], dirs[i]);
    }
    for (int i = 0; i < 2 && !st; i++) {
        if (!holds[i]) continue;
        int n = 0;
        char foreign[4400] = "";
        st = synth_scan_dir(dirs[i], i == 0 ? top : NULL, 1, &n, foreign, sizeof foreign);
    }
    if (st) synth_release_out(so);
    return st;
}

void synth_release_out(SynthOut *so) {
    io_dir_unlock(&so->lock[0]);
    io_dir_unlock(&so->lock[1]);
}

cx_status synth_write_dataset(const char *out, const SynthConfig *c, int n_train, int n_test, int quality,
                              const char *baseline_dir, SynthStats *stats) {
    memset(stats, 0, sizeof *stats);
    CX_TRY(synth_check(c, n_train, n_test));
    char p[4096];
    const char *dirs[] = { "Train/Image", "Train/GT_Object", "Test/Image", "Test/GT_Object" };
    for (int k = 0; k < 4; k++) {
        if (snprintf(p, sizeof p, "%s/%s", out, dirs[k]) >= (int)sizeof p) return CX_FAIL(CX_EARG, "--out path too long");
        CX_TRY(io_make_dirs(p));
    }
    if (baseline_dir) CX_TRY(io_make_dirs(baseline_dir));
    double t0 = cx_time_s();
    int total = n_train + n_test, S = c->size;
    cx_status st = CX_OK;
    int fam_count[SYNTH_N_FAMILIES] = { 0 }, n_empty = 0, bn = 0;
    double iou_sum = 0, mae_sum = 0;
    char err[1024] = "";
    int any_fail = 0;
    #pragma omp parallel
    {
        uint8_t *img = cx_malloc((size_t)S * S * 3), *mask = cx_malloc((size_t)S * S), *pred = cx_malloc((size_t)S * S);
        int fc[SYNTH_N_FAMILIES] = { 0 }, ne = 0, lbn = 0;
        double liou = 0, lmae = 0;
        #pragma omp for schedule(dynamic, 4)
        for (int i = 0; i < total; i++) {
            int failed;
            #pragma omp atomic read
            failed = any_fail;
            if (failed) continue;
            int64_t index = i + 1;
            int test = i >= n_train;
            int fam = synth_generate(c, index, img, mask);
            fc[fam]++;
            int fg = 0;
            for (int k = 0; k < S * S; k++) fg += mask[k] != 0;
            ne += fg == 0;
            char name[96], path[4300];
            snprintf(name, sizeof name, "SYN-CAM-%s-%06lld", synth_family_name(fam), (long long)index);
            Image8 im = { S, S, 3, img }, mk = { S, S, 1, mask };
            uint8_t *buf;
            size_t n;
            cx_status s = image_encode_jpeg_as(&im, quality, OWNER_SYNTH, &buf, &n);
            if (!s) {
                snprintf(path, sizeof path, "%s/%s/Image/%s.jpg", out, test ? "Test" : "Train", name);
                s = write_buf(path, buf, n);
                free(buf);
            }
            if (!s) s = image_encode_png_as(&mk, 1, OWNER_SYNTH, &buf, &n);
            if (!s) {
                snprintf(path, sizeof path, "%s/%s/GT_Object/%s.png", out, test ? "Test" : "Train", name);
                s = write_buf(path, buf, n);
                free(buf);
            }
            if (!s && test && baseline_dir) {
                synth_threshold_baseline(img, S * S, pred);
                int inter = 0, uni = 0, pf = 0;
                for (int k = 0; k < S * S; k++) {
                    int a = pred[k] != 0, b = mask[k] != 0;
                    inter += a & b; uni += a | b; pf += a != b;
                }
                liou += uni ? (double)inter / uni : 1.0;
                lmae += (double)pf / (S * S);
                lbn++;
                Image8 pm = { S, S, 1, pred };
                s = image_encode_png_as(&pm, 1, OWNER_SYNTH, &buf, &n);
                if (!s) {
                    snprintf(path, sizeof path, "%s/%s.png", baseline_dir, name);
                    s = write_buf(path, buf, n);
                    free(buf);
                }
            }
            if (s) {
                #pragma omp critical(synth_err)
                if (!st) { st = s; snprintf(err, sizeof err, "%s", cx_errmsg());
                           #pragma omp atomic write
                           any_fail = 1; }
            }
        }
        #pragma omp critical(synth_stats)
        {
            for (int k = 0; k < SYNTH_N_FAMILIES; k++) fam_count[k] += fc[k];
            n_empty += ne; bn += lbn; iou_sum += liou; mae_sum += lmae;
        }
        free(img); free(mask); free(pred);
    }
    if (st) return CX_FAIL(st, "%s", err);
    stats->n_train = n_train;
    stats->n_test = n_test;
    memcpy(stats->per_family, fam_count, sizeof fam_count);
    stats->n_empty = n_empty;
    stats->baseline_n = bn;
    stats->baseline_iou = bn ? iou_sum / bn : 0;
    stats->baseline_mae = bn ? mae_sum / bn : 0;
    // The settings, so a dataset on disk says how to make it again.
    snprintf(p, sizeof p, "%s/synth.json", out);
    char js[1024];
    int len = snprintf(js, sizeof js,
                       "{\"software\": \"" OWNER_SYNTH "\", \"generator\": \"camoxpert synth\", \"version\": 1, \"seed\": %llu, \"size\": %d, \"difficulty\": %g, "
                       "\"empty_fraction\": %g, \"train\": %d, \"test\": %d, \"jpeg_quality\": %d, \"empty_images\": %d}\n",
                       (unsigned long long)c->seed, S, c->difficulty, c->empty_fraction, n_train, n_test, quality, n_empty);
    AtomicFile af;
    CX_TRY(io_atomic_begin(&af, p));
    fwrite(js, 1, (size_t)len, af.fp);
    CX_TRY(io_atomic_commit(&af));
    stats->seconds = cx_time_s() - t0;
    return CX_OK;
}
