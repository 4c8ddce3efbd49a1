// test_ops_table.h — the op test table (ggml's test-backend-ops idea), shared by
// its files: test_ops.c runs an entry and checks that the table covers every
// golden case and every op; test_ops_rows.c holds the entries and the adapters
// that call the ops; test_ops_contracts.c tests what a table entry cannot state.
//
//   static void gelu_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) { gelu_forward(c, &out[0], &in[0]); }
//   OPCASE(gelu, .fwd = gelu_fwd, .bwd = gelu_bwd, TOL_ELEM)   // tests op_gelu and op_gelu_cuda
#pragma once
#include "test.h"
#include "ops/ops.h"

#define GOLDEN_PATH "tests/fixtures/ops_golden.safetensors"
#define MAXT 12   // inputs or outputs of one entry at most (cod_loss: 8 maps and 4 masks)

enum { OPT_ONE = 0, OPT_CONV, OPT_GEMM };   // OpTest.impls
typedef struct OpTest OpTest;
// fwd: outputs from inputs (must not modify inputs). bwd: adds gradients of
// Σ out·dout into din[i] for every input whose din[i].data is set.
typedef void (*op_fwd_fn)(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in);
typedef void (*op_bwd_fn)(OpCtx *c, const OpTest *t, Tensor *din, const Tensor *dout, const Tensor *out, Tensor *in);
struct OpTest {
    const char *name;   // case name in the golden file
    op_fwd_fn fwd;
    op_bwd_fn bwd;
    ConvArgs conv;
    int impls;          // OPT_CONV, OPT_GEMM: every implementation the CPU and GPU dispatchers may choose is run
    int k;              // topk k, softmax/l2norm axis split, ...
    double f[3];        // scalar parameters (scales, bounds, eps)
    double g64, fd, fast, g32, b16;
    unsigned f32_in;    // bf16 column: inputs that stay float32 (parameters, statistics: bit i = input i)
    unsigned f32_out;   // bf16 column: outputs that stay float32 (running statistics)
    unsigned f32_in_always, f32_out_always;   // float32 in every run, the float64 one too (AdamW's moments)
    int no_bf16;        // no bf16 column (topk: routing runs in float32)
    int no_fd;          // 1: inputs sit on kinks on purpose (clamp boundaries)
    int ties;           // topk with ties: PyTorch's order among equal values is
                        // unspecified (CPU topk uses an unstable partial sort), so
                        // indices are checked to point at the golden values in
                        // ascending order within each run of equal values (ops_list.h).
};

#define D(i) (din[i].data ? &din[i] : NULL)

// The runner (test_ops.c). An entry is registered before main (OPCASE) and runs as
// two tests: op_<case> (CPU) and op_<case>_cuda (the CUDA column).
void op_row_register(const OpTest *t);
void op_case_run(const OpTest *t);
void op_case_run_cuda(const OpTest *t);
#define OPCASE(id, ...) \
    static const OpTest opcase_##id = { .name = #id, __VA_ARGS__ }; \
    __attribute__((constructor)) static void opcase_reg_##id(void) { op_row_register(&opcase_##id); } \
    TEST(op_##id) { op_case_run(&opcase_##id); } \
    TEST(op_##id##_cuda) { op_case_run_cuda(&opcase_##id); }

// The CPU's bf16 column (test_cpu_bf16.c): the CPU backend under OpCtx.cpu_bf16, every
// product oneDNN can take in bf16 taking it (cpu_bf16_all), against the float32 reference
// at tolerance b16; *worst gets the largest error. Every registered entry, in order.
void op_case_run_cpu_bf16(const OpTest *t, double *worst);
int op_rows_all(const OpTest *const **rows);
// Checks test_rel_err(a, b) <= tol (0 for I32 tensors), naming what and tensor tname<i>.
void check_err(const char *what, const char *tname, int i, const Tensor *a, const Tensor *b, double tol);
// Fast vs reference (float32) on random inputs of the given shapes (an input of
// ndim 0 is absent), and the GPU in float32 against the reference when there is one.
void fast_vs_ref_big(const OpTest *t, int nin, Tensor *in_shapes, int nout, Tensor *out_shapes, double tol);
// A host tensor on the GPU in dtype dt (float tensors converted there; I32 as is), and
// a GPU tensor back on the host as float32 (I32 as is).
Tensor to_gpu(OpCtx *g, Arena *dev, const Tensor *h, cx_dtype dt);
Tensor from_gpu(OpCtx *g, Arena *dev, Arena *host, const Tensor *d);
