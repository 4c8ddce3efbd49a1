// fuzz_image.c — libFuzzer harness for the image decoders (JPEG, PNG, BMP, EXIF
// orientation) and what runs right after them in the loader (resizes).
// Build: make fuzz (clang -fsanitize=fuzzer,address,undefined); run:
//   build-fuzz/fuzz_image build-fuzz/corpus/image -max_total_time=60
#include "data/image.h"
#include <stdint.h>
#include <stddef.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    static int init;
    if (!init) { image_set_max_pixels(1 << 22); log_set_level(LOG_QUIET); init = 1; }
    Image8 im, r;
    if (!image_decode(data, n, "fuzz", 3, &im)) {
        image_resize_bilinear(&im, 7, 5, &r);
        image_free(&r);
        image_free(&im);
    }
    if (!image_decode(data, n, "fuzz", 1, &im)) {
        uint8_t m[6 * 9];
        image_mask_resize_nearest(m, 6, 9, &im);
        image_free(&im);
    }
    int w, h;
    image_probe_memory(data, n, "fuzz", &w, &h);
    return 0;
}
