// params.h — the parameter table: one per model, the single source for
// checkpoint names, the optimizer, freezing, gradient zeroing, gradient checks
// and parameter counts. Names are the reference's PyTorch state_dict keys.
// Values live in one allocation, gradients in another with the same layout,
// on the host or (after params_to_device) on the GPU; a GPU table keeps a host
// copy of the values that loading and saving go through, with explicit copies.
// BatchNorm running statistics are entries too (flag PF_BUFFER: no gradient,
// not optimised) and so is `num_batches_tracked` (PF_BUFFER|PF_COUNTER): its
// count is kept on the host (pt->counter, never a device access in a step) and
// written to files as an I64 scalar as PyTorch does.
//
//   ParamTable pt; params_init(&pt);
//   int w = params_add(&pt, "stem_0.weight", 4, (int64_t[]){24, 3, 4, 4}, PG_BACKBONE, 0);
//   params_alloc(&pt, DT_F32);
//   Tensor tw = params_value(&pt, w), gw = params_grad(&pt, w);
//   params_to_device(&pt);                 // values uploaded; views are GPU tensors now
#pragma once
#include "core/core.h"

enum {
    PF_NO_DECAY = 1,   // norms, biases, layer scales, temperatures: no weight decay
    PF_BUFFER = 2,     // running statistics: saved and loaded, never optimised
    PF_COUNTER = 4,    // num_batches_tracked (with PF_BUFFER)
};

typedef enum { PG_BACKBONE = 0, PG_ROUTER, PG_REST, PG_COUNT } param_group;

typedef struct {
    char *name;            // PyTorch state_dict key
    int ndim;
    int64_t shape[4];
    int64_t offset, numel; // element offset into data/grad
    param_group group;
    unsigned flags;
} ParamInfo;

typedef struct ParamTable {
    ParamInfo *p;
    int n, cap;
    int64_t numel;     // elements over all entries
    cx_dtype dtype;    // F32 (fast path) or F64 (reference path)
    cx_device device;  // where data and grad live
    void *data;        // (numel) values
    void *grad;        // (numel) gradients; buffer slots stay zero
    void *host;        // DEV_CUDA: (numel) host copy of the values, for loading and saving
    int64_t *counter;  // (n) counts of the PF_COUNTER entries (host)
} ParamTable;

void params_init(ParamTable *pt);
void params_free(ParamTable *pt);
// Registers an entry (before params_alloc); returns its index. Names must be unique.
int params_add(ParamTable *pt, const char *name, int ndim, const int64_t *shape, param_group group, unsigned flags);
void params_alloc(ParamTable *pt, cx_dtype dt);   // values and gradients, zeroed
Tensor params_value(const ParamTable *pt, int i);   // on pt->device
Tensor params_grad(const ParamTable *pt, int i);
// The host copy of entry i (the values themselves on a host table). On a GPU
// table it is current after params_sync_host; write it, then params_sync_device.
Tensor params_host_value(const ParamTable *pt, int i);
// Moves values and gradients to the GPU (core/device.h must have a device): the
// values are uploaded, the gradients zeroed, the host values kept as the copy.
void params_to_device(ParamTable *pt);
// The values only, for a table that is never differentiated (inference): no gradient
// buffer on the GPU (pt->grad NULL).
void params_to_device_values(ParamTable *pt);
void params_sync_host(const ParamTable *pt);     // GPU values -> host copy (a no-op on a host table)
void params_sync_device(ParamTable *pt);         // host copy -> GPU values (a no-op on a host table)
// BatchNorm's num_batches_tracked of entry i (PF_COUNTER).
int64_t params_counter(const ParamTable *pt, int i);
void params_counter_add(ParamTable *pt, int i, int64_t d);
int params_find(const ParamTable *pt, const char *name);   // -1 if absent
// Number of elements in entries without any of the flags in `exclude`
// (params_count(pt, PF_BUFFER) is the trainable parameter count).
int64_t params_count(const ParamTable *pt, unsigned exclude);
void params_zero_grad(ParamTable *pt);
// Copies values (and counters) between host tables of the same layout (e.g. F32 <-> F64 twins).
void params_copy_values(ParamTable *dst, const ParamTable *src);

typedef struct {
    const char *file_prefix;     // parameter keys in the file start with this ("param/"; "" for checkpoints)
    const char *buffer_prefix;   // buffer keys start with this ("buffer/"); NULL: same as file_prefix
    const char *table_prefix;    // load only table entries under this ("backbone."); "" or NULL: all
    const char *const *ignore;   // NULL-terminated: file keys (after the prefix) starting with one are skipped ("head.")
    // Spelling of a file key (after prefixes) as a table key, e.g. "stem.0." -> "stem_0."; NULL: unchanged.
    void (*rename)(const char *file_key, char *table_key, size_t n);
    int allow_missing;           // 1: entries absent from the file keep their values (partial loads)
} ParamLoadOpts;

// Strict load: every selected table entry must be in the file (unless
// allow_missing), every file key under the prefixes must be a table entry (unless
// ignored), shapes must agree; errors name the key and both shapes. Converts dtypes.
// A GPU table is loaded through its host copy and uploaded at the end.
// A tensor holding a NaN or an infinity is CX_ENUMERIC naming it (the weights of a
// diverged run or a damaged file would otherwise give plausible-looking output).
cx_status params_load(ParamTable *pt, const StFile *f, const ParamLoadOpts *o);
// The first entry holding a NaN or an infinity (*index gets its element), or -1 when all are finite.
int params_first_nonfinite(const ParamTable *pt, int64_t *index);
// CX_ENUMERIC naming the first entry (and index, value) that holds a NaN or an
// infinity, prefixed with `what` ("saving runs/a/last.safetensors"); CX_OK when all are finite.
cx_status params_check_finite(const ParamTable *pt, const char *what);
// Adds every entry (or those under table_prefix) to w as F32 (counters as I64
// scalars), converting through `tmp` where needed; tmp must outlive the save.
// A GPU table's values are downloaded into its host copy first.
void params_save(const ParamTable *pt, StWriter *w, const char *table_prefix, Arena *tmp);
