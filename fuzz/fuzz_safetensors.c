// fuzz_safetensors.c — libFuzzer harness for the safetensors reader (every weights
// file, checkpoint, training state and fixture goes through it): the input is a
// whole file. Opens it from memory, reads every metadata key, and converts every
// small tensor to float64 and back to its own dtype, the paths a load takes.
// Build: make fuzz; run: build-fuzz/fuzz_safetensors build-fuzz/corpus/safetensors -max_total_time=60
#include "core/safetensors.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    unsigned char *buf = malloc(n ? n : 1);   // st_open_buffer takes ownership
    if (!buf) return 0;
    memcpy(buf, data, n);
    StFile f;
    if (st_open_buffer(&f, "fuzz", buf, n)) return 0;
    for (int i = 0; i < f.n_meta; i++) (void)st_meta(&f, f.meta_keys[i]);
    for (int i = 0; i < f.n; i++) {
        const StEntry *e = &f.entries[i];
        int64_t numel = 1;
        for (int d = 0; d < e->ndim; d++) numel *= e->shape[d];
        if (numel > (1 << 16)) continue;
        double *v = malloc(sizeof(double) * (size_t)(numel ? numel : 1));
        Tensor t = tensor_view(v, DT_F64, 1, &numel);
        if (st_entry_read(&f, e, &t) == CX_OK) (void)st_find(&f, e->name);
        if (e->dtype == DT_F32 || e->dtype == DT_I64) {   // a read into the entry's own dtype is a copy
            void *raw = malloc((size_t)numel * 8 + 8);
            Tensor r = tensor_view(raw, e->dtype, e->ndim, e->shape);
            (void)st_read(&f, e->name, &r);
            free(raw);
        }
        free(v);
    }
    st_close(&f);
    return 0;
}
