// tensor.h — the one tensor type of camoxpert: a typed, shaped view of memory
// on the host or a GPU. A Tensor does not own its data; arenas (arena.h) or
// parameter tables do, and a tensor takes its device from them (views inherit
// it). Element access from the host (tensor_get/set/fill/zero/copy) is for host
// tensors only and fails loudly on a device tensor; model code changes device
// tensors through ops (ops.h) and moves data with tensor_upload/download.
// Activations are NHWC: shape {N, H, W, C}. Parameters keep PyTorch layouts
// (conv weights OIHW, linear weights (out, in)) so checkpoints map 1:1.
//
//   Tensor x = tensor_new4(&arena, DT_F32, 2, 64, 64, 3);
//   float *p = tensor_f32(&x);                    // host tensors only
//   tensor_upload(&x_dev, &x);                    // same shape and dtype
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

typedef enum { DT_F32 = 0, DT_F64, DT_I32, DT_I64, DT_U8, DT_BF16, DT_F16, DT_BOOL } cx_dtype;
typedef enum { DEV_CPU = 0, DEV_CUDA } cx_device;

#define CX_MAXDIM 6

typedef struct {
    void *data;
    cx_dtype dtype;
    cx_device device;
    int ndim;
    int64_t shape[CX_MAXDIM];
} Tensor;

struct Arena;

size_t dtype_size(cx_dtype dt);
const char *dtype_name(cx_dtype dt);  // safetensors spelling: "F32", "F64", ...

Tensor tensor_view(void *data, cx_dtype dt, int ndim, const int64_t *shape);
Tensor tensor_view4(void *data, cx_dtype dt, int64_t n, int64_t h, int64_t w, int64_t c);
Tensor tensor_new(struct Arena *a, cx_dtype dt, int ndim, const int64_t *shape);   // uninitialised
Tensor tensor_new4(struct Arena *a, cx_dtype dt, int64_t n, int64_t h, int64_t w, int64_t c);
Tensor tensor_zeros(struct Arena *a, cx_dtype dt, int ndim, const int64_t *shape);
Tensor tensor_zeros4(struct Arena *a, cx_dtype dt, int64_t n, int64_t h, int64_t w, int64_t c);
Tensor tensor_like(struct Arena *a, const Tensor *t);    // same dtype and shape, uninitialised
Tensor tensor_zeros_like(struct Arena *a, const Tensor *t);

int64_t tensor_numel(const Tensor *t);
size_t tensor_nbytes(const Tensor *t);
bool tensor_same_shape(const Tensor *a, const Tensor *b);
void tensor_zero(Tensor *t);
void tensor_copy(Tensor *dst, const Tensor *src);        // same numel; converts F32 <-> F64
void tensor_fill(Tensor *t, double v);
// Writes "[2, 64, 64, 3]" into buf (returns buf).
char *tensor_shape_str(const Tensor *t, char *buf, size_t n);
// Element i as double (any float/int dtype), and stores.
double tensor_get(const Tensor *t, int64_t i);
void tensor_set(Tensor *t, int64_t i, double v);
// A sub-range along the first axis: rows [i0, i0+n) (contiguous, no copy).
Tensor tensor_slice0(const Tensor *t, int64_t i0, int64_t n);
// The same memory with another shape of the same number of elements.
Tensor tensor_reshape(const Tensor *t, int ndim, const int64_t *shape);
// Explicit, synchronous (and counted: core/device.h) copies between a host and a
// device tensor of the same dtype and number of elements.
void tensor_upload(Tensor *dst_dev, const Tensor *src_host);
void tensor_download(Tensor *dst_host, const Tensor *src_dev);
// Fails loudly (an internal error naming `what`) unless t is a host tensor.
void tensor_require_host(const Tensor *t, const char *what);

static inline float *tensor_f32(const Tensor *t) { return (float *)t->data; }
static inline double *tensor_f64(const Tensor *t) { return (double *)t->data; }
static inline int32_t *tensor_i32(const Tensor *t) { return (int32_t *)t->data; }
static inline int64_t *tensor_i64(const Tensor *t) { return (int64_t *)t->data; }

// NHWC accessors (ndim 4).
#define T_N(t) ((t)->shape[0])
#define T_H(t) ((t)->shape[1])
#define T_W(t) ((t)->shape[2])
#define T_C(t) ((t)->shape[3])
