// bench_camoxpert.c — CamoXpert training-step throughput, dense vs sparse, side by
// side with PyTorch in one run (docs/PERF.md, ## CamoXpert model): one training
// step = the trainer's (train/step.h: forward, the reference loss with its
// gradient, backward, clipping, AdamW), at batch 4, edgenext_base, float32 on the
// fast kernels; then the
// same step through tools/camoxpert_twin.py on Debian's PyTorch with
// torch.set_num_threads equal to our thread count. Also reports the
// multiply-accumulates each model performs (from the module shapes and, for the
// sparse model, the routing of the timed batch), the sparse/dense time ratio
// against the MAC ratio, and peak memory (parameters, gradients, AdamW moments,
// activation and scratch arenas).
//
//   make bench BENCH=camoxpert    (or: build/camoxpert_bench camoxpert [--iters N] [--size S] [--batch B] [--no-torch])
#include "bench.h"
#include "infer/open.h"
#include "train/step.h"
#include <string.h>

#define BACKBONE_MACS_352 7236768726.0   // edgenext_base at 352×352 (reference/edgenext.md §4.2)


// MACs of one Seq applied to an H×W map, per image.
static double seq_macs(const Seq *s, double H, double W) {
    double m = 0;
    for (int i = 0; i < s->n; i++) {
        const Layer *l = &s->l[i];
        if (l->kind == LAYER_CONV) m += H * W * l->cin * l->cout * l->k * l->k;
    }
    return m;
}

static double expert_macs(const Expert *e, double H, double W) {
    double m = seq_macs(&e->fusion, H, W) + seq_macs(&e->amplify, 1, 1);
    for (int i = 0; i < e->nb; i++) m += seq_macs(&e->branch[i], H, W);
    return m;
}

static double head_macs(const CodHead *h, double H, double W) {
    double m = seq_macs(&h->search_conv, H / 32, W / 32) + seq_macs(&h->identify_conv, H / 32, W / 32);
    for (int i = 0; i < 4; i++) {
        double s = (double)(16 >> i);   // decoder i works at stride 16, 8, 4, 2
        m += seq_macs(&h->dec_conv1[i], H / s, W / s) + seq_macs(&h->dec_conv2[i], H / s, W / s);
    }
    m += seq_macs(&h->ra_bg, H / 2, W / 2) + seq_macs(&h->ra_refine, H / 2, W / 2);
    m += seq_macs(&h->bu_shared, H, W) + seq_macs(&h->bu_mean, H, W) + seq_macs(&h->bu_unc, H, W);
    for (int i = 0; i < 2; i++) m += seq_macs(&h->ir_block[i], H, W) + seq_macs(&h->ir_head[i], H, W);
    for (int j = 0; j < 3; j++) m += seq_macs(&h->deep[j], H / (16 >> j), W / (16 >> j));
    return m;
}

// Forward MACs of the whole batch; the sparse model's from the last forward's routing.
static double model_macs(const CamoXpert *m, int B, int size) {
    double macs = BACKBONE_MACS_352 * size * size / (352.0 * 352.0) * B + head_macs(&m->head, size, size) * B;
    for (int s = 0; s < 4; s++) {
        double hw = size >> (s + 2);
        if (m->cfg.sparse)
            for (int e = 0; e < m->cfg.num_experts; e++)
                macs += expert_macs(&m->moe[s].experts[e], hw, hw) * (double)m->moe[s].route.count[e];
        else
            for (int k = 0; k < EXPERT_KINDS; k++) macs += expert_macs(&m->dense[k][s], hw, hw) * B;
    }
    return macs;
}

typedef struct {
    TrainStep step;
    Tensor x, mask;
    double loss;
} Job;

// The trainer's step (train/step.h): forward, loss, backward, clipping, AdamW.
static void job_step(void *arg) {
    Job *j = arg;
    CamoXpertOutputs o;
    StepResult r;
    train_step_begin(&j->step);
    train_step_accumulate(&j->step, &j->x, &j->mask, 0, &o);
    train_step_finish(&j->step, 1e-4, 0.5, &r);
    j->loss = r.loss.total;
}

// Runs the twin's bench; returns its median seconds (or -1) and its peak RSS in MB.
static double torch_time(int sparse, int batch, int size, int threads, int iters, double *rss_mb) {
    char cmd[512], line[1024];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 tools/camoxpert_twin.py bench --mode %s --backbone edgenext_base --batch %d "
             "--size %dx%d --threads %d --iters %d 2>&1",
             sparse ? "sparse" : "dense", batch, size, size, threads, iters);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    double med = -1;
    *rss_mb = -1;
    while (fgets(line, sizeof line, p)) {
        const char *s = strstr(line, "median ");
        const char *r = strstr(line, "peak rss ");
        if (s) med = strtod(s + 7, NULL) * 1e-3;
        if (r) *rss_mb = strtod(r + 9, NULL);
        if (!s) fputs(line, stderr);
    }
    pclose(p);
    return med;
}

int bench_camoxpert_main(int argc, char **argv) {
    int iters = 3, size = 352, batch = 4, torch = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc) size = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-torch")) torch = 0;
        else if (strcmp(argv[i], "camoxpert")) {
            fprintf(stderr, "usage: camoxpert_bench camoxpert [--iters N] [--size S] [--batch B] [--no-torch]\n");
            return 2;
        }
    }
    if (size % 32) {
        fprintf(stderr, "error: --size %d is not a multiple of 32\n", size);
        return 2;
    }
    cx_threads_set(0);
    const int threads = cx_threads_get();
    printf("CamoXpert training step (forward + loss + backward), edgenext_base, batch %d, %dx%d, float32, %d threads\n",
           batch, size, size, threads);
    printf("%-22s %12s %8s %10s %9s %11s %12s %10s %7s\n", "model", "camoxpert ms", "img/s", "fwd GMAC", "GFLOP/s",
           "peak MB", "pytorch ms", "torch MB", "ratio");
    double t_dense = 0, macs_dense = 0;
    for (int sparse = 0; sparse <= 1; sparse++) {
        CamoXpertConfig cfg;
        if (camoxpert_config(&cfg, "edgenext_base", sparse, 6, 2)) return 1;
        Model mo;
        if (model_open(&mo, &(ModelSpec){ .config = &cfg, .init_seed = 1, .training = 1 })) return 1;
        ParamTable *pt = &mo.pt;
        Runtime *rt = mo.rt;
        CamoXpert *m = mo.net;
        Rng rng = rng_init(2);   // the inputs
        AdamW opt;
        adamw_init(&opt, pt, 1e-4);
        CamoLossWeights w = camo_loss_default_weights();
        Arena io;
        arena_init(&io, "inputs", 16 << 20);
        Job j;
        train_step_init(&j.step, rt, m, pt, &opt, NULL, &w);
        j.x = tensor_new4(&io, DT_F32, batch, size, size, 3);
        j.mask = tensor_new4(&io, DT_F32, batch, size, size, 1);
        for (int64_t i = 0; i < tensor_numel(&j.x); i++) tensor_f32(&j.x)[i] = (float)rng_normal(&rng);
        for (int64_t i = 0; i < tensor_numel(&j.mask); i++) tensor_f32(&j.mask)[i] = rng_uniform(&rng) < 0.3f;
        Timing t = bench_time(job_step, &j, 2, iters);
        double macs = model_macs(m, batch, size);
        double peak = (4.0 * (double)pt->numel * 4 + (double)rt->act.peak + (double)rt->scratch.peak) / 1048576.0;
        double rss = -1, tt = torch ? torch_time(sparse, batch, size, threads, iters, &rss) : -1;
        char name[64];
        snprintf(name, sizeof name, "%s", sparse ? "sparse (E=6, k=2)" : "dense");
        printf("%-22s %12.1f %8.2f %10.1f %9.1f %11.0f", name, t.med * 1e3, batch / t.med, macs * 1e-9,
               3 * 2 * macs / t.med * 1e-9, peak);
        if (tt > 0) printf(" %12.1f %10.0f %6.2fx\n", tt * 1e3, rss, tt / t.med);
        else printf(" %12s\n", torch ? "(failed)" : "-");
        if (!sparse) {
            t_dense = t.med, macs_dense = macs;
        } else {
            printf("sparse/dense: time %.3f, forward MACs %.3f (routing of the timed batch: experts per scale",
                   t.med / t_dense, macs / macs_dense);
            for (int s = 0; s < 4; s++) {
                printf(" [");
                for (int e = 0; e < 6; e++) printf("%s%lld", e ? " " : "", (long long)m->moe[s].route.count[e]);
                printf("]");
            }
            printf(")\n");
        }
        fflush(stdout);
        train_step_free(&j.step);
        adamw_free(&opt);
        model_close(&mo);
        arena_free(&io);
    }
    return 0;
}
