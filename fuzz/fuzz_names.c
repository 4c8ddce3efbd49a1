// fuzz_names.c — libFuzzer harness for the dataset layer's file-name parsing
// (COD10K / synthetic categories, image extensions): the input is a file name.
#include "data/dataset.h"
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char name[512];
    if (n >= sizeof name) n = sizeof name - 1;
    memcpy(name, data, n);
    name[n] = 0;
    char sup[64], sub[64];
    dataset_parse_category(name, sup, sizeof sup, sub, sizeof sub);
    dataset_is_image_name(name);
    return 0;
}
