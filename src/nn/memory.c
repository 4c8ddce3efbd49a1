// memory.c — see memory.h.
#include "nn/memory.h"
#include <stdio.h>
#include <string.h>

cx_status camoxpert_check_img_size(int64_t S, const char *what) {
    if (S >= CAMOXPERT_MIN_IMG && S <= CAMOXPERT_MAX_IMG && S % 32 == 0) return CX_OK;
    if (S < CAMOXPERT_MIN_IMG)
        return CX_FAIL(CX_EARG, "%s %lld: must be a multiple of 32 from %d to %d (e.g. %d)", what, (long long)S,
                       CAMOXPERT_MIN_IMG, CAMOXPERT_MAX_IMG, CAMOXPERT_MIN_IMG);
    if (S > CAMOXPERT_MAX_IMG)
        return CX_FAIL(CX_EARG, "%s %lld: must be a multiple of 32 from %d to %d (e.g. %d)", what, (long long)S,
                       CAMOXPERT_MIN_IMG, CAMOXPERT_MAX_IMG, CAMOXPERT_MAX_IMG);
    return CX_FAIL(CX_EARG, "%s %lld: must be a multiple of 32 from %d to %d (e.g. %lld or %lld)", what, (long long)S,
                   CAMOXPERT_MIN_IMG, CAMOXPERT_MAX_IMG, (long long)(S / 32 * 32), (long long)((S / 32 + 1) * 32));
}

// Bytes per image pixel (float32) of the activation arena's peak: a + b·X + c·Y·k + c′·Y·4 + d·d0,
// X = Σ_s width_s · depth_s per input pixel (stage s at stride 4·2^s), Y = Σ_s width_s per
// input pixel, k the top-k of a sparse model (c's term; 0 in a dense model) and 4 the
// experts of a dense model's chain (c′'s term; 0 in a sparse one) — a sparse layer keeps the
// gathered rows, the k outputs and their sum beside what its experts keep, a dense chain one
// map per expert — and d0 the stride-4 width (the decoder's last block runs 2·d0 channels at
// stride 2). Fitted (minimax) to the arenas' measured peaks — every backbone; dense, sparse
// E = 4 with k = 1, 2, 4 and E = 6 with k = 6, at 128² × 2 and 192² × 1; the test's cases;
// edgenext_base at 352² × 1 dense and × 2 sparse — in one block each (as every command runs:
// the arenas are reserved first), then raised to lie on or above every one of them:
// `build/camoxpert_bench memfit` measures, tools/memfit.py fits.
// The spread above: inference 0.7 %, NONE 1.0 %, CHEAP 2.9 %, BLOCKS 7.4 % (docs/PERF.md,
// "The estimate"), plus MARGIN. BLOCKS spreads most: its peak, in the refinement's backward
// at full resolution, stands on whatever holes the smaller maps below it left.
static const double coef[4][MEM_FEATURES] = {
    { 845.85, 1.140, 0.000, 0.000, 0.910 },     // inference: one unit's working set above the maps between units
    { 6822.05, 57.520, 30.389, 24.578, 6.482 }, // training, NONE: every activation kept
    { 5039.53, 4.725, 17.845, 11.639, 18.898 }, // training, CHEAP
    { 3965.73, 0.000, 8.239, 2.659, 3.003 },    // training, BLOCKS
};
#define MARGIN 1.01

void camoxpert_memory_features(const CamoXpertConfig *c, double f[MEM_FEATURES]) {
    EdgeNeXtConfig ec;
    int depths[4] = { 3, 3, 9, 3 };
    if (c->backbone[0] && edgenext_config(c->backbone, &ec) == CX_OK) memcpy(depths, ec.depths, sizeof depths);
    double X = 0, Y = 0;
    for (int s = 0; s < 4; s++) {
        double per = 1.0 / (double)(16 << (2 * s));   // (1/(4·2^s))²
        X += c->dims[s] * depths[s] * per;
        Y += c->dims[s] * per;
    }
    f[0] = 1, f[1] = X;
    f[2] = c->sparse ? Y * c->top_k : 0;               // a sparse layer: its top-k experts per image
    f[3] = c->sparse ? 0 : Y * EXPERT_KINDS;           // a dense chain: every expert
    f[4] = c->dims[0];
}

void camoxpert_memory_estimate(const CamoXpertConfig *c, int64_t n_params, int batch, int S, int training,
                               nn_recompute recompute, int ema, int act_bytes, MemEstimate *m) {
    double f[MEM_FEATURES];
    camoxpert_memory_features(c, f);
    const double *k = coef[training ? 1 + (int)recompute : 0];
    double per_px = 0;
    for (int i = 0; i < MEM_FEATURES; i++) per_px += k[i] * f[i];
    const double px = (double)batch * S * S;
    memset(m, 0, sizeof *m);
    m->params = 4.0 * (double)n_params;
    if (training) {
        m->grads = 4.0 * (double)n_params;
        m->optimizer = 8.0 * (double)n_params;
        m->ema = ema ? 4.0 * (double)n_params : 0;
    }
    // The refinement's h (a 64-channel map per iteration, saved for the pred head) stays
    // float32 beside bf16 activations (cod_head.c, issue 26): its bytes do not scale with act_bytes.
    // Under blocks the last iteration's h and its gradient are the two live at the backward's
    // peak: the same bytes (the H100's bf16 sparse blocks step peaked 6.9 % above the estimate
    // without them; docs/PERF.md, "GPU, 2026-12-07").
    const double f32_px = training ? 2 * 64 * 4.0 : 0;
    m->activations = MARGIN * px * (per_px * act_bytes / 4.0 + f32_px * (4 - act_bytes) / 4.0);
    double scratch = 300.0 * px;
    m->scratch = scratch > 32.0 * (1 << 20) ? scratch : 32.0 * (1 << 20);
    m->total = m->params + m->grads + m->optimizer + m->ema + m->activations + m->scratch;
}

int camoxpert_memory_fit_batch(const CamoXpertConfig *c, int64_t n_params, int S, int training, nn_recompute recompute,
                               int ema, int act_bytes, double other, double budget, int max_batch) {
    int lo = 0, hi = max_batch;   // lo fits (0: nothing), search the largest that does
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        MemEstimate m;
        camoxpert_memory_estimate(c, n_params, mid, S, training, recompute, ema, act_bytes, &m);
        if (m.total + other <= budget) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

int camoxpert_memory_fit_size(const CamoXpertConfig *c, int64_t n_params, int batch, int training, nn_recompute recompute,
                              int ema, int act_bytes, double other, double budget, int max_S) {
    int best = 0;
    for (int S = CAMOXPERT_MIN_IMG; S <= max_S; S += 32) {
        MemEstimate m;
        camoxpert_memory_estimate(c, n_params, batch, S, training, recompute, ema, act_bytes, &m);
        if (m.total + other > budget) break;
        best = S;
    }
    return best;
}

const char *memory_str(double bytes, char *buf, size_t n) {
    if (bytes >= 1024.0 * (1 << 30)) snprintf(buf, n, "%.1f TiB", bytes / (1024.0 * (1 << 30)));
    else if (bytes >= (1 << 30)) snprintf(buf, n, "%.1f GiB", bytes / (1 << 30));
    else snprintf(buf, n, "%.0f MiB", bytes / (1 << 20));
    return buf;
}
