// memory.c — see memory.h.
#include "nn/memory.h"

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
