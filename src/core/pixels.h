// pixels.h — the per-pixel arithmetic of a photo's way into the network and of a
// mask's way out, written once for the host (data/image.c, eval/metrics.c) and the
// GPU (ops/cuda/photo.cu, compiled without fused multiply-adds so that both round
// alike): the taps of a bilinear resize (half-pixel centres, align_corners=False,
// clamped at the edges), their blend, and the community's 8-bit export of a
// probability map (min–max to 0..255, rounded to nearest as cv2.imwrite does).
//
//   int a, b; float f;
//   px_bilinear_tap(x, 352, 768, &a, &b, &f);   // output column x of 768 -> 352 reads a and b
//   float v = px_blend(1 - fy, fy, 1 - f, f, v00, v01, v10, v11);
//   uint8_t q = px_export_u8(p, mn, px_export_scale(mn, mx));
#pragma once
#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define PX_FN __host__ __device__ static inline
#else
#define PX_FN static inline
#endif

// Output sample i of a resize from `in` samples to `out`: source samples *i0, *i1
// and the weight *fr of *i1.
PX_FN void px_bilinear_tap(int i, int out, int in, int *i0, int *i1, float *fr) {
    double scale = (double)in / out;
    double s = (i + 0.5) * scale - 0.5;
    if (s < 0) s = 0;
    int a = (int)s;
    if (a > in - 1) a = in - 1;
    *i0 = a;
    *i1 = a + 1 < in ? a + 1 : in - 1;
    *fr = (float)(s - a);
}

// The bilinear blend of four samples: rows weighted a, b; columns p, q.
PX_FN float px_blend(float a, float b, float p, float q, float v00, float v01, float v10, float v11) {
    return a * (p * v00 + q * v01) + b * (p * v10 + q * v11);
}

// The export's scale for a map whose smallest value is mn and largest mx.
PX_FN double px_export_scale(double mn, double mx) { return 1.0 / (mx - mn + 1e-8); }

// One value of the export.
PX_FN uint8_t px_export_u8(float p, double mn, double scale) {
    double v = ((double)p - mn) * scale * 255.0;
    long long q = llrint(v);
    return (uint8_t)(q < 0 ? 0 : q > 255 ? 255 : q);
}

// A blend rounded to the 8 bits of a resized photo.
PX_FN uint8_t px_u8(float v) { return (uint8_t)(v + 0.5f); }

// The logistic sigmoid of a logit, as the masks use it. On the GPU exp() is taken in
// double and rounded to float: the nearest float, as glibc's expf gives it all but
// never (the GPU's expf may be two units off in the last place).
PX_FN float px_sigmoid(float x) {
#ifdef __CUDA_ARCH__
    return 1.0f / (1.0f + (float)exp(-(double)x));
#else
    return 1.0f / (1.0f + expf(-x));
#endif
}
