// test_ops.c — the op test table's runner: one entry per op and shape set (ggml's
// test-backend-ops idea; the entries are in test_ops_rows.c, the interface in
// test_ops_table.h). Every entry is two tests. op_<case> (CPU):
//   1. PyTorch golden: the float64 reference path against outputs and gradients
//      that tools/make_op_goldens.py computed with PyTorch in float64
//      (tests/fixtures/ops_golden.safetensors, which also holds the inputs and
//      therefore every shape), and the float32 fast path against the same;
//   2. central finite differences of loss = Σ out·dout in float64 through the
//      reference kernels (sampled elements of every differentiable input);
//   3. float32 fast kernels against float32 reference kernels;
//   4. first-write gradients (ops.h): the backward again with every input gradient a
//      deferred zero (its memory NaN), on the float32 reference and fast kernels,
//      equal value for value to the backward into zero-filled buffers.
// op_<case>_cuda (the CUDA column; skipped without a GPU):
//   5. float32 on the GPU against the float32 reference kernels (tolerance
//      `fast`, as the CPU's) and the float64 golden (`g32`);
//   6. bf16 activations on the GPU (parameters, statistics and the inputs named
//      in f32_in stay float32) against the float32 reference, tolerance `b16`;
//   7. both again with first-write gradients, equal to 5 and 6 value for value.
// Errors are max|a−b| / max|b| (test_rel_err); tolerances are per entry:
//   g64 — float64 vs golden, fd — finite differences, fast — fast vs reference,
//   g32 — float32 fast vs float64 golden, b16 — bf16 GPU vs float32 reference.
// Entries register themselves (OPCASE); op_table_covers_goldens checks that every
// golden case has one, op_table_covers_every_op that every op of ops_list.h runs
// in one. Ops with no gradient (fill, the optimizer) have forward-only entries.
//
// Filters (the runner's name filter): `camoxpert_tests op_` runs every entry and
// the table's own checks, `op_bn` the entries whose case name has "bn", `_cuda`
// only the CUDA column, `op_ -_cuda` only the CPU backends.
// Adding an op: a case in tools/make_op_goldens.py (appended last), regenerate the
// file, an OPCASE entry in test_ops_rows.c (docs/ARCHITECTURE.md).
#include "test_ops_table.h"
#include "ops/cpu/cpu.h"
#if HAVE_CUDA
#include "ops/cuda/cuda.h"
#endif
#include <string.h>

// ---- the runner -------------------------------------------------------------------------------
typedef struct {
    int nin, nout, ngout;
    Tensor in[MAXT], out[MAXT], dout[MAXT], din[MAXT];
    const StEntry *gin[MAXT], *gout[MAXT], *gdout[MAXT], *ggrad[MAXT];
} CaseData;

static const StEntry *golden(const StFile *f, const char *name, const char *what, int i) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s%d", name, what, i);
    return st_find(f, key);
}

static Tensor load_as(Arena *a, const StFile *f, const StEntry *e, cx_dtype dt) {
    Tensor t = tensor_new(a, e->dtype == DT_I32 ? DT_I32 : dt, e->ndim, e->shape);
    cx_status st = st_entry_read(f, e, &t);
    CX_ASSERT(st == CX_OK, "%s", cx_errmsg());
    return t;
}

// Loads inputs (as dt), allocates outputs, zeroed input gradients and douts.
static void case_setup(CaseData *d, Arena *a, const StFile *f, const OpTest *t, cx_dtype dt) {
    memset(d, 0, sizeof *d);
    while (d->nin < MAXT && (d->gin[d->nin] = golden(f, t->name, "in", d->nin))) {
        d->in[d->nin] = load_as(a, f, d->gin[d->nin], (t->f32_in_always >> d->nin) & 1 ? DT_F32 : dt);
        if ((d->ggrad[d->nin] = golden(f, t->name, "grad", d->nin))) d->din[d->nin] = tensor_zeros_like(a, &d->in[d->nin]);
        d->nin++;
    }
    while (d->nout < MAXT && (d->gout[d->nout] = golden(f, t->name, "out", d->nout))) {
        const StEntry *e = d->gout[d->nout];
        cx_dtype odt = e->dtype == DT_I32 ? DT_I32 : (t->f32_out_always >> d->nout) & 1 ? DT_F32 : dt;
        d->out[d->nout] = tensor_zeros(a, odt, e->ndim, e->shape);
        d->nout++;
    }
    while (d->ngout < d->nout && (d->gdout[d->ngout] = golden(f, t->name, "dout", d->ngout))) {
        d->dout[d->ngout] = load_as(a, f, d->gdout[d->ngout], dt);
        d->ngout++;
    }
}

static double case_loss(const CaseData *d) {
    double s = 0;
    for (int o = 0; o < d->ngout; o++)
        for (int64_t i = 0; i < tensor_numel(&d->out[o]); i++) s += tensor_get(&d->out[o], i) * tensor_get(&d->dout[o], i);
    return s;
}

void check_err(const char *what, const char *tname, int i, const Tensor *a, const Tensor *b, double tol) {
    double e = test_rel_err(a, b, 1e-30);
    if (a->dtype == DT_I32) tol = 0;
    CHECKF(e <= tol, "%s: %s%d rel err %.3g > tol %.3g", what, tname, i, e, tol);
}

// idx (R,k) points at val (R,k) in x (R,L); equal values come in ascending index order.
static void check_topk_ties(const Tensor *idx, const Tensor *val, const Tensor *x) {
    int64_t R = idx->shape[0], k = idx->shape[1], L = x->shape[1];
    for (int64_t r = 0; r < R; r++)
        for (int64_t j = 0; j < k; j++) {
            int32_t i = tensor_i32(idx)[r * k + j];
            REQUIRE(i >= 0 && i < L);
            CHECKF(tensor_get(x, r * L + i) == tensor_get(val, r * k + j), "topk: idx[%lld][%lld] = %d is not its value",
                   (long long)r, (long long)j, i);
            if (j > 0 && tensor_get(val, r * k + j) == tensor_get(val, r * k + j - 1))
                CHECKF(i > tensor_i32(idx)[r * k + j - 1], "topk: tie at row %lld not in ascending index order", (long long)r);
        }
}

// Value for value (a zero's sign aside; NaN equals NaN): first-write against filled buffers.
static void check_same(const char *what, int i, const Tensor *a, const Tensor *b) {
    int64_t bad = -1;
    for (int64_t j = 0; j < tensor_numel(a) && bad < 0; j++) {
        double u = tensor_get(a, j), v = tensor_get(b, j);
        if (!(u == v || (isnan(u) && isnan(v)))) bad = j;
    }
    CHECKF(bad < 0, "%s: grad%d[%lld] %.9g, with filled zeros %.9g", what, i, (long long)bad,
           bad < 0 ? 0 : tensor_get(a, bad), bad < 0 ? 0 : tensor_get(b, bad));
}

// The backward of d's case again into deferred zeros (their memory NaN first), compared with
// ref's input gradients (the same backward into zero-filled buffers).
static void first_write_case(OpCtx *ctx, const OpTest *t, CaseData *d, const CaseData *ref, const char *what) {
    if (!t->bwd || !d->ngout) return;
    ZeroSet z;
    zeroset_init(&z, NULL);
    ctx->zeros = &z;
    for (int i = 0; i < d->nin; i++)
        if (d->din[i].data) {
            tensor_fill(&d->din[i], NAN);
            ops_zeros_defer(ctx, &d->din[i]);
        }
    t->bwd(ctx, t, d->din, d->dout, d->out, d->in);
    ops_zeros_flush(ctx);
    ctx->zeros = NULL;
    zeroset_free(&z);
    printf("    %s: %lld input gradients written by their first op, %lld filled\n", what, (long long)z.written,
           (long long)z.filled);
    for (int i = 0; i < d->nin; i++)
        if (d->din[i].data) check_same(what, i, &d->din[i], &ref->din[i]);
}

void op_case_run(const OpTest *t) {
    StFile f;
    REQUIRE_OK(st_open(&f, GOLDEN_PATH));
    Arena a, scratch;
    arena_init(&a, "test", 1 << 20);
    arena_init(&scratch, "scratch", 1 << 20);
    OpCtx ctx = { .backend = OPS_REF, .scratch = &scratch };
    CaseData d;
    case_setup(&d, &a, &f, t, DT_F64);
    REQUIRE(d.nin > 0 && d.nout > 0);

    // 1. float64 reference vs the PyTorch golden.
    t->fwd(&ctx, t, d.out, d.in);
    for (int o = 0; o < d.nout; o++) {
        Tensor g = load_as(&a, &f, d.gout[o], DT_F64);
        if (t->ties && d.out[o].dtype == DT_I32) check_topk_ties(&d.out[o], &d.out[0], &d.in[0]);
        else check_err("golden f64", "out", o, &d.out[o], &g, t->g64);
    }
    if (t->bwd && d.ngout) {
        t->bwd(&ctx, t, d.din, d.dout, d.out, d.in);
        for (int i = 0; i < d.nin; i++) {
            if (!d.ggrad[i]) continue;
            Tensor g = load_as(&a, &f, d.ggrad[i], DT_F64);
            check_err("golden f64", "grad", i, &d.din[i], &g, t->g64);
        }
    }

    // 2. Central finite differences (float64, reference kernels), up to 40
    //    evenly spread elements per differentiable input.
    if (t->bwd && d.ngout && !t->no_fd) {
        for (int i = 0; i < d.nin; i++) {
            if (!d.ggrad[i]) continue;
            int64_t n = tensor_numel(&d.in[i]), step = n > 40 ? n / 40 : 1;
            double md = 0, mg = 0;
            for (int64_t j = 0; j < n; j++) mg = fmax(mg, fabs(tensor_get(&d.din[i], j)));
            for (int64_t j = 0; j < n; j += step) {
                double x0 = tensor_get(&d.in[i], j), h = 1e-5 * fmax(1.0, fabs(x0)), lp, lm;
                tensor_set(&d.in[i], j, x0 + h);
                t->fwd(&ctx, t, d.out, d.in);
                lp = case_loss(&d);
                tensor_set(&d.in[i], j, x0 - h);
                t->fwd(&ctx, t, d.out, d.in);
                lm = case_loss(&d);
                tensor_set(&d.in[i], j, x0);
                md = fmax(md, fabs((lp - lm) / (2 * h) - tensor_get(&d.din[i], j)));
            }
            double e = mg > 0 ? md / mg : md;
            CHECKF(e <= t->fd, "finite differences: grad%d rel err %.3g > tol %.3g", i, e, t->fd);
        }
    }

    // 3. float32: fast vs reference, and fast vs the golden. Dense convolutions
    //    and GEMMs run every implementation the dispatchers may choose (conv.c,
    //    gemm.c).
    CaseData r, rz;
    case_setup(&r, &a, &f, t, DT_F32);
    t->fwd(&ctx, t, r.out, r.in);
    if (t->bwd && r.ngout) t->bwd(&ctx, t, r.din, r.dout, r.out, r.in);
    // 4. first-write gradients on the reference kernels (float32)
    case_setup(&rz, &a, &f, t, DT_F32);
    t->fwd(&ctx, t, rz.out, rz.in);
    first_write_case(&ctx, t, &rz, &r, "first write, ref f32");
    ctx.backend = OPS_CPU;
    CpuImpl impls[] = { CPU_IMPL_OWN, CPU_IMPL_DNNL };
    int is_conv = t->impls == OPT_CONV, is_gemm = t->impls == OPT_GEMM;
    int nimpl = is_conv || is_gemm ? 1 + HAVE_DNNL : 1;
    for (int im = 0; im < nimpl; im++) {
        cpu_conv_impl = is_conv ? impls[im] : CPU_IMPL_AUTO;
        cpu_gemm_impl = is_gemm ? impls[im] : CPU_IMPL_AUTO;
        CaseData q;
        case_setup(&q, &a, &f, t, DT_F32);
        t->fwd(&ctx, t, q.out, q.in);
        if (t->bwd && q.ngout) t->bwd(&ctx, t, q.din, q.dout, q.out, q.in);
        for (int o = 0; o < d.nout; o++) {
            Tensor g = load_as(&a, &f, d.gout[o], DT_F64);
            check_err("fast vs ref f32", "out", o, &q.out[o], &r.out[o], t->fast);
            if (t->ties && q.out[o].dtype == DT_I32) check_topk_ties(&q.out[o], &q.out[0], &q.in[0]);
            else check_err("golden f32 fast", "out", o, &q.out[o], &g, t->g32);
        }
        for (int i = 0; i < d.nin && t->bwd && d.ngout; i++) {
            if (!d.ggrad[i]) continue;
            Tensor g = load_as(&a, &f, d.ggrad[i], DT_F64);
            check_err("fast vs ref f32", "grad", i, &q.din[i], &r.din[i], t->fast);
            check_err("golden f32 fast", "grad", i, &q.din[i], &g, t->g32);
        }
        // 4. first-write gradients on the fast kernels
        CaseData qz;
        case_setup(&qz, &a, &f, t, DT_F32);
        t->fwd(&ctx, t, qz.out, qz.in);
        first_write_case(&ctx, t, &qz, &q, "first write, fast f32");
    }
    cpu_conv_impl = cpu_gemm_impl = CPU_IMPL_AUTO;
    CHECKF(scratch.used == 0, "scratch arena not released: %zu bytes", scratch.used);
    arena_free(&a);
    arena_free(&scratch);
    st_close(&f);
}

// ---- the CUDA column ------------------------------------------------------------------------------
Tensor to_gpu(OpCtx *g, Arena *dev, const Tensor *h, cx_dtype dt) {
    if (!h->data) return (Tensor){ 0 };
    Tensor up = tensor_new(dev, h->dtype, h->ndim, h->shape);
    tensor_upload(&up, h);
    if (h->dtype == DT_I32 || dt == h->dtype) return up;
    Tensor t = tensor_new(dev, dt, h->ndim, h->shape);
    copy(g, &t, &up);
    return t;
}

Tensor from_gpu(OpCtx *g, Arena *dev, Arena *host, const Tensor *d) {
    Tensor f = *d;
    if (d->dtype != DT_F32 && d->dtype != DT_I32) {
        f = tensor_new(dev, DT_F32, d->ndim, d->shape);
        copy(g, &f, d);
    }
    Tensor h = tensor_new(host, f.dtype, d->ndim, d->shape);
    tensor_download(&h, &f);
    return h;
}

// One GPU run of a case with float tensors in `act` (F32 or BF16) except the
// inputs/outputs the entry keeps in float32; results downloaded as float32 into q.
// first_write: the input gradients are deferred zeros (NaN underneath) instead of filled ones.
static void gpu_case(OpCtx *g, Arena *dev, Arena *host, const OpTest *t, const CaseData *h, cx_dtype act, CaseData *q,
                     int first_write) {
    ZeroSet z;
    zeroset_init(&z, NULL);
    if (first_write) g->zeros = &z;
    CaseData d;
    memset(&d, 0, sizeof d);
    d.nin = h->nin, d.nout = h->nout, d.ngout = h->ngout;
    for (int i = 0; i < h->nin; i++) {
        cx_dtype dt = (t->f32_in >> i) & 1 ? DT_F32 : act;
        d.in[i] = to_gpu(g, dev, &h->in[i], dt);
        if (h->din[i].data) {
            d.din[i] = tensor_new(dev, d.in[i].dtype, d.in[i].ndim, d.in[i].shape);
            fill(g, &d.din[i], first_write ? NAN : 0);
            if (first_write) ops_zeros_defer(g, &d.din[i]);
        }
    }
    for (int o = 0; o < h->nout; o++) {
        cx_dtype dt = h->out[o].dtype == DT_I32 ? DT_I32 : (t->f32_out >> o) & 1 ? DT_F32 : act;
        d.out[o] = tensor_new(dev, dt, h->out[o].ndim, h->out[o].shape);
        if (dt != DT_I32) fill(g, &d.out[o], 0);
        if (o < h->ngout) d.dout[o] = to_gpu(g, dev, &h->dout[o], dt);
    }
    t->fwd(g, t, d.out, d.in);
    if (t->bwd && d.ngout) t->bwd(g, t, d.din, d.dout, d.out, d.in);
    ops_zeros_flush(g);
    g->zeros = NULL;
    zeroset_free(&z);
    memset(q, 0, sizeof *q);
    q->nin = d.nin, q->nout = d.nout, q->ngout = d.ngout;
    for (int o = 0; o < d.nout; o++) q->out[o] = from_gpu(g, dev, host, &d.out[o]);
    for (int i = 0; i < d.nin; i++) {
        q->in[i] = from_gpu(g, dev, host, &d.in[i]);
        if (d.din[i].data) q->din[i] = from_gpu(g, dev, host, &d.din[i]);
    }
}

void op_case_run_cuda(const OpTest *t) {
    OpCtx *g = test_cuda();
    if (!g) { test_skip("%s", test_no_gpu()); return; }
    StFile f;
    REQUIRE_OK(st_open(&f, GOLDEN_PATH));
    Arena a, scratch, dev;
    arena_init(&a, "test", 1 << 20);
    arena_init(&scratch, "scratch", 1 << 20);
    arena_init_on(&dev, "gpu test", 1 << 20, DEV_CUDA);
    OpCtx ref = { .backend = OPS_REF, .scratch = &scratch };
    // the float32 reference results
    CaseData r;
    case_setup(&r, &a, &f, t, DT_F32);
    t->fwd(&ref, t, r.out, r.in);
    if (t->bwd && r.ngout) t->bwd(&ref, t, r.din, r.dout, r.out, r.in);
    // convolutions run both implementations: cuDNN (with its direct fallback) and the direct kernels
    const int nimpl = t->impls == OPT_CONV ? 2 : 1;
    for (int run = 0; run < 2 * nimpl; run++) {
        int pass = run % 2;
        if (pass == 1 && t->no_bf16) continue;
#if HAVE_CUDA
        ops_cuda_set_conv_impl(run / 2 ? CUDA_CONV_DIRECT : CUDA_CONV_AUTO);
#endif
        cx_dtype act = pass ? DT_BF16 : DT_F32;
        const char *tag = run / 2 ? (pass ? "cuda direct bf16 vs ref f32" : "cuda direct f32 vs ref f32")
                                  : (pass ? "cuda bf16 vs ref f32" : "cuda f32 vs ref f32");
        double tol = pass ? t->b16 : t->fast, worst = 0;
        CaseData h, q, qz;
        case_setup(&h, &a, &f, t, DT_F32);
        gpu_case(g, &dev, &a, t, &h, act, &q, 0);
        gpu_case(g, &dev, &a, t, &h, act, &qz, 1);   // 7. first-write gradients: the same values
        for (int i = 0; i < r.nin && t->bwd && r.ngout; i++)
            if (r.ggrad[i]) check_same(pass ? "first write, cuda bf16" : "first write, cuda f32", i, &qz.din[i], &q.din[i]);
        for (int o = 0; o < r.nout; o++) {
            if (t->ties && q.out[o].dtype == DT_I32) { check_topk_ties(&q.out[o], &q.out[0], &h.in[0]); continue; }
            check_err(tag, "out", o, &q.out[o], &r.out[o], tol);
            worst = fmax(worst, test_rel_err(&q.out[o], &r.out[o], 1e-30));
            if (!pass) {
                Tensor gold = load_as(&a, &f, r.gout[o], DT_F64);
                check_err("golden f32 cuda", "out", o, &q.out[o], &gold, t->g32);
            }
        }
        for (int i = 0; i < r.nin && t->bwd && r.ngout; i++) {
            if (!r.ggrad[i]) continue;
            check_err(tag, "grad", i, &q.din[i], &r.din[i], tol);
            worst = fmax(worst, test_rel_err(&q.din[i], &r.din[i], 1e-30));
            if (!pass) {
                Tensor gold = load_as(&a, &f, r.ggrad[i], DT_F64);
                check_err("golden f32 cuda", "grad", i, &q.din[i], &gold, t->g32);
            }
        }
        printf("    %s: worst rel err %.3g (tol %.3g)\n", tag, worst, tol);
        arena_reset(&dev);
    }
#if HAVE_CUDA
    ops_cuda_set_conv_impl(CUDA_CONV_AUTO);
#endif
    CHECKF(g->scratch->used == 0, "GPU scratch arena not released: %zu bytes", g->scratch->used);
    arena_free(&dev);
    arena_free(&a);
    arena_free(&scratch);
    st_close(&f);
}

// ---- the CPU's bf16 column (test_cpu_bf16.c) -------------------------------------------------------
void op_case_run_cpu_bf16(const OpTest *t, double *worst) {
    *worst = 0;
    StFile f;
    REQUIRE_OK(st_open(&f, GOLDEN_PATH));
    Arena a, scratch;
    arena_init(&a, "test", 1 << 20);
    arena_init(&scratch, "scratch", 1 << 20);
    OpCtx ref = { .backend = OPS_REF, .scratch = &scratch }, cpu = { .backend = OPS_CPU, .scratch = &scratch,
                                                                      .cpu_bf16 = 1 };
    CaseData r, q;
    case_setup(&r, &a, &f, t, DT_F32);
    t->fwd(&ref, t, r.out, r.in);
    if (t->bwd && r.ngout) t->bwd(&ref, t, r.din, r.dout, r.out, r.in);
    cpu_bf16_all = 1;
    case_setup(&q, &a, &f, t, DT_F32);
    t->fwd(&cpu, t, q.out, q.in);
    if (t->bwd && q.ngout) t->bwd(&cpu, t, q.din, q.dout, q.out, q.in);
    cpu_bf16_all = 0;
    for (int o = 0; o < r.nout; o++) {
        check_err("cpu bf16 vs ref f32", "out", o, &q.out[o], &r.out[o], t->b16);
        *worst = fmax(*worst, test_rel_err(&q.out[o], &r.out[o], 1e-30));
    }
    for (int i = 0; i < r.nin && t->bwd && r.ngout; i++) {
        if (!r.ggrad[i]) continue;
        check_err("cpu bf16 vs ref f32", "grad", i, &q.din[i], &r.din[i], t->b16);
        *worst = fmax(*worst, test_rel_err(&q.din[i], &r.din[i], 1e-30));
    }
    CHECKF(scratch.used == 0, "scratch arena not released: %zu bytes", scratch.used);
    arena_free(&a);
    arena_free(&scratch);
    st_close(&f);
}

// ---- the registry -----------------------------------------------------------------------------
// Every entry, registered before main as the runner registers tests.
#define MAX_ROWS 256
static const OpTest *op_rows[MAX_ROWS];
static int n_op_rows;
void op_row_register(const OpTest *t) {
    CX_ASSERT(n_op_rows < MAX_ROWS, "the op table has more than %d entries: raise MAX_ROWS", MAX_ROWS);
    op_rows[n_op_rows++] = t;
}
int op_rows_all(const OpTest *const **rows) {
    *rows = op_rows;
    return n_op_rows;
}

// Every case in the golden file has an entry above (and vice versa through REQUIRE).
TEST(op_table_covers_goldens) {
    StFile f;
    REQUIRE_OK(st_open(&f, GOLDEN_PATH));
    for (int i = 0; i < f.n; i++) {
        const char *nm = f.entries[i].name, *dot = strrchr(nm, '.');
        if (!dot || strncmp(dot, ".in0", 5)) continue;
        int found = 0;
        for (int j = 0; j < n_op_rows && !found; j++)
            found = strlen(op_rows[j]->name) == (size_t)(dot - nm) && !strncmp(op_rows[j]->name, nm, (size_t)(dot - nm));
        CHECKF(found, "golden case %.*s has no table entry", (int)(dot - nm), nm);
    }
    st_close(&f);
}

// Every op of ops_list.h runs in some entry: each entry's forward and backward run
// once on the CPU backend with the profiler on, which records each op called.
TEST(op_table_covers_every_op) {
    static const char *const ops[] = {
#define OP(name, ...) #name,
#include "ops/ops_list.h"
#undef OP
    };
    StFile f;
    REQUIRE_OK(st_open(&f, GOLDEN_PATH));
    Arena a, scratch;
    arena_init(&a, "test", 1 << 20);
    arena_init(&scratch, "scratch", 1 << 20);
    OpProfile *p = cx_calloc(1, sizeof *p);
    OpCtx ctx = { .backend = OPS_CPU, .scratch = &scratch, .prof = p };
    for (int r = 0; r < n_op_rows; r++) {
        CaseData d;
        case_setup(&d, &a, &f, op_rows[r], DT_F32);
        op_rows[r]->fwd(&ctx, op_rows[r], d.out, d.in);
        if (op_rows[r]->bwd && d.ngout) op_rows[r]->bwd(&ctx, op_rows[r], d.din, d.dout, d.out, d.in);
        arena_reset(&a);
    }
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        int found = 0;
        for (int e = 0; e < p->n && !found; e++) found = !strcmp(p->e[e].op, ops[i]);
        CHECKF(found, "op %s: no entry of the op table runs it (add one: docs/ARCHITECTURE.md)", ops[i]);
    }
    free(p);
    arena_free(&a);
    arena_free(&scratch);
    st_close(&f);
}

// ---- fast vs reference on large shapes (test_ops_rows.c calls it) ---------------------------------
void fast_vs_ref_big(const OpTest *t, int nin, Tensor *in_shapes, int nout, Tensor *out_shapes, double tol) {
    Arena a, scratch;
    arena_init(&a, "test", 1 << 24);
    arena_init(&scratch, "scratch", 1 << 24);
    OpCtx ctx = { .backend = OPS_CPU, .scratch = &scratch };
    Rng rng = rng_init(99);
    CaseData cd[2];
    for (int v = 0; v < 2; v++) {
        CaseData *d = &cd[v];
        memset(d, 0, sizeof *d);
        d->nin = nin; d->nout = nout; d->ngout = 1;
        for (int i = 0; i < nin; i++) {
            if (!in_shapes[i].ndim) continue;
            d->in[i] = tensor_new(&a, DT_F32, in_shapes[i].ndim, in_shapes[i].shape);
            d->din[i] = tensor_zeros_like(&a, &d->in[i]);
        }
        for (int o = 0; o < nout; o++) d->out[o] = tensor_zeros(&a, DT_F32, out_shapes[o].ndim, out_shapes[o].shape);
        d->dout[0] = tensor_like(&a, &d->out[0]);
    }
    for (int i = 0; i < nin; i++)   // same random values for both runs (positive: running variances)
        for (int64_t j = 0; j < tensor_numel(&cd[0].in[i]); j++) {
            double u = rng_uniform(&rng) + 0.1;
            tensor_set(&cd[0].in[i], j, u);
            tensor_set(&cd[1].in[i], j, u);
        }
    for (int64_t j = 0; j < tensor_numel(&cd[0].dout[0]); j++) {
        double u = rng_normal(&rng);
        tensor_set(&cd[0].dout[0], j, u);
        tensor_set(&cd[1].dout[0], j, u);
    }
    for (int v = 0; v < 2; v++) {
        ctx.backend = v ? OPS_REF : OPS_CPU;
        t->fwd(&ctx, t, cd[v].out, cd[v].in);
        t->bwd(&ctx, t, cd[v].din, cd[v].dout, cd[v].out, cd[v].in);
    }
    for (int o = 0; o < nout; o++) check_err("big fast vs ref", "out", o, &cd[0].out[o], &cd[1].out[o], tol);
    for (int i = 0; i < nin; i++)
        if (cd[0].din[i].data) check_err("big fast vs ref", "grad", i, &cd[0].din[i], &cd[1].din[i], tol);
    // the same shapes on the GPU in float32 (many blocks per kernel), when there is one
    OpCtx *g = test_cuda();
    if (g) {
        Arena dev;
        arena_init_on(&dev, "gpu test", 1 << 24, DEV_CUDA);
        CaseData q;
        gpu_case(g, &dev, &a, t, &cd[1], DT_F32, &q, 0);
        for (int o = 0; o < nout; o++) check_err("big cuda vs ref", "out", o, &q.out[o], &cd[1].out[o], tol);
        for (int i = 0; i < nin; i++)
            if (cd[1].din[i].data) check_err("big cuda vs ref", "grad", i, &q.din[i], &cd[1].din[i], tol);
        arena_free(&dev);
    }
    arena_free(&a);
    arena_free(&scratch);
}

