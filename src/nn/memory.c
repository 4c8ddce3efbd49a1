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

void camoxpert_memory_estimate(const CamoXpertConfig *c, int64_t n_params, int batch, int S, int training, int ema,
                               int act_bytes, MemEstimate *m) {
    // X: Σ over backbone stages of width × depth per input pixel (stage s runs at stride 4·2^s);
    // Y: Σ of the expert widths per input pixel (one expert per scale).
    EdgeNeXtConfig ec;
    int depths[4] = { 3, 3, 9, 3 };
    if (c->backbone[0] && edgenext_config(c->backbone, &ec) == CX_OK) memcpy(depths, ec.depths, sizeof depths);
    double X = 0, Y = 0;
    for (int s = 0; s < 4; s++) {
        double per = 1.0 / (double)(16 << (2 * s));   // (1/(4·2^s))²
        X += c->dims[s] * depths[s] * per;
        Y += c->dims[s] * per;
    }
    const double experts = c->sparse ? c->top_k : 4;   // experts each image runs per scale
    // Bytes per image pixel in float32, fitted to the arenas' peaks (within -0.2 %..+3 %); the
    // training term refitted when the backward began reusing its gradient buffers (edgenext_base
    // at 352², dense and sparse, and the test's cases: within -1.1 %..+2.2 %).
    double per_px = 5253 + 71.8 * X + 29.5 * Y * experts + (training ? 1535 + 2.0 * X : 0);
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
    const double f32_px = 2 * 64 * 4.0;
    m->activations = 1.05 * px * (per_px * act_bytes / 4.0 + f32_px * (4 - act_bytes) / 4.0);
    double scratch = 300.0 * px;
    m->scratch = scratch > 32.0 * (1 << 20) ? scratch : 32.0 * (1 << 20);
    m->total = m->params + m->grads + m->optimizer + m->ema + m->activations + m->scratch;
}

int camoxpert_memory_fit_batch(const CamoXpertConfig *c, int64_t n_params, int S, int training, int ema, int act_bytes,
                               double other, double budget, int max_batch) {
    int lo = 0, hi = max_batch;   // lo fits (0: nothing), search the largest that does
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        MemEstimate m;
        camoxpert_memory_estimate(c, n_params, mid, S, training, ema, act_bytes, &m);
        if (m.total + other <= budget) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

int camoxpert_memory_fit_size(const CamoXpertConfig *c, int64_t n_params, int batch, int training, int ema, int act_bytes,
                              double other, double budget, int max_S) {
    int best = 0;
    for (int S = CAMOXPERT_MIN_IMG; S <= max_S; S += 32) {
        MemEstimate m;
        camoxpert_memory_estimate(c, n_params, batch, S, training, ema, act_bytes, &m);
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
