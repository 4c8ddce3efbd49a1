// trainer.c — see trainer.h. One Trainer holds the model, its parameter table,
// optimizer, EMA, arenas, the train/validation split and the log; trainer_run
// walks the stages and epochs; train_epoch runs the optimizer steps of one epoch
// from the loader's cursor; validate scores the held-out split at GT resolution.
#include "trainer.h"
#include "data/loader.h"
#include "eval/metrics.h"
#include "nn/memory.h"
#include "train/checkpoint.h"
#include "train/comm.h"
#include "train/dist.h"
#include "infer/infer.h"
#include "nn/weights.h"
#include "train/loss.h"
#include "train/step.h"
#include "train/rundir.h"
#include "train/valshard.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested;
// Seconds any one exchange between the ranks may wait (a rank that dies is noticed at
// once: its connection closes; this bounds a rank that hangs). Rank 0 writing a
// checkpoint or a report while the others wait must fit in it.
#define DIST_TIMEOUT_S 600
static FILE *say_fp;   // the console: stdout, or nothing when TrainConfig.quiet

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
    if (!say_fp) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(say_fp, fmt, ap);
    va_end(ap);
}

void trainer_request_stop(void) { stop_requested = 1; }

void train_config_default(TrainConfig *c) {
    memset(c, 0, sizeof *c);
    c->checkpoint_dir = "checkpoints";
    c->backbone = "edgenext_base";
    c->batch_size = 16;
    c->stage2_batch_size = 0;   // 0: same as batch_size
    c->img_size = 352;
    c->epochs = 120;
    c->stage1_epochs = 30;
    c->lr = 1e-3;
    c->stage2_lr = 1e-4;
    c->weight_decay = 1e-4;
    c->min_lr = 1e-6;
    c->warmup_epochs = 0;
    c->scheduler = LR_COSINE;
    c->t_mult = 2;
    c->accumulation_steps = 1;
    c->ema_decay = 0.999;
    c->seed = 42;
    c->num_workers = 2;
    c->num_experts = 6;
    c->top_k = 2;
    c->lb_coef = 0.01;
    c->balance = MOE_BALANCE_MSE;
    c->bias_rate = 1e-3;
    c->routing = "global";
    c->route_grid = 4;
    c->router_lr_scale = 0.1;
    c->val_fraction = 0.1;
    c->val_every = 1;
    c->grad_clip = 0.5;
    c->progress = -1;
    c->device = "auto";
    c->precision = "auto";
}

// A double option in [lo, hi] (NaN fails every comparison, so it is refused too).
#define CHECK_RANGE(v, lo, hi, opt, hint)                                                                    \
    do {                                                                                                 \
        if (!((v) >= (lo) && (v) <= (hi)))                                                               \
            return CX_FAIL(CX_EARG, "%s %g: must be a finite number from %g to %g%s", opt, (double)(v),  \
                           (double)(lo), (double)(hi), hint);                                            \
    } while (0)
#define CHECK_IRANGE(v, lo, hi, opt, hint)                                                                   \
    do {                                                                                                 \
        if ((v) < (lo) || (v) > (hi))                                                                    \
            return CX_FAIL(CX_EARG, "%s %lld: must be from %lld to %lld%s", opt, (long long)(v),          \
                           (long long)(lo), (long long)(hi), hint);                                       \
    } while (0)

cx_status train_config_check(const TrainConfig *c) {
    if (!c->dataset_path || !*c->dataset_path)
        return CX_FAIL(CX_EARG, "--dataset-path is required (a COD10K-v3, packaged, CAMO or Imgs/GT folder; "
                       "`camoxpert synth --out DIR` makes one)");
    CX_TRY(camoxpert_check_img_size(c->img_size, "--img-size"));
    if (c->sync_bn && c->sparse)
        return CX_FAIL(CX_EARG, "--sync-bn with --use-sparse-moe is not supported yet: an expert runs only on the images routed "
                       "to it, so a rank whose batch sends it none would skip its BatchNorm exchanges and the ranks "
                       "would no longer pair up; use --sync-bn with the dense model, or leave it out (per-rank "
                       "statistics, as the reference's DDP)");
    CHECK_IRANGE(c->batch_size, 1, 65536, "--batch-size", "");
    CHECK_IRANGE(c->stage2_batch_size, 0, 65536, "--stage2-batch-size", " (0: --batch-size)");
    CHECK_IRANGE(c->epochs, 1, 1000000, "--epochs", "");
    if (c->stage1_epochs < 0 || c->stage1_epochs > c->epochs)
        return CX_FAIL(CX_EARG, "--stage1-epochs %d is more than --epochs %d (epochs counts both stages); "
                       "raise --epochs or lower --stage1-epochs", c->stage1_epochs, c->epochs);
    if (c->skip_stage1 && c->stage1_epochs == c->epochs)
        return CX_FAIL(CX_EARG, "--skip-stage1 with --stage1-epochs = --epochs (%d) leaves nothing to train; "
                       "lower --stage1-epochs", c->epochs);
    // Learning rates above 1 only ever diverge with AdamW (its steps are about lr in size).
    if (!(c->lr > 0 && c->lr <= 1)) return CX_FAIL(CX_EARG, "--lr %g: must be a finite number above 0 and at most 1", c->lr);
    if (!(c->stage2_lr > 0 && c->stage2_lr <= 1))
        return CX_FAIL(CX_EARG, "--stage2-lr %g: must be a finite number above 0 and at most 1", c->stage2_lr);
    if (!(c->weight_decay >= 0 && c->weight_decay < 1))
        return CX_FAIL(CX_EARG, "--weight-decay %g: must be a finite number from 0 to below 1", c->weight_decay);
    CHECK_RANGE(c->min_lr, 0, 1, "--min-lr", "");
    if (c->min_lr >= c->lr && c->scheduler != LR_NONE && c->scheduler != LR_ONECYCLE)
        return CX_FAIL(CX_EARG, "--min-lr %g is not below --lr %g; lower --min-lr or use --scheduler none", c->min_lr, c->lr);
    CHECK_RANGE(c->warmup_epochs, 0, c->epochs, "--warmup-epochs", " (at most --epochs)");
    CHECK_IRANGE(c->t_mult, 1, 100, "--t-mult", "");
    CHECK_IRANGE(c->accumulation_steps, 1, 65536, "--accumulation-steps", "");
    if (!(c->ema_decay > 0 && c->ema_decay < 1)) return CX_FAIL(CX_EARG, "--ema-decay %g: must be in (0, 1)", c->ema_decay);
    if (c->num_workers < 1 || c->num_workers > cx_threads_max())
        return CX_FAIL(CX_EARG, "--num-workers %d: must be between 1 and %d", c->num_workers, cx_threads_max());
    if (c->sparse) {
        if (c->num_experts < 1 || c->num_experts > MOE_MAX_EXPERTS)
            return CX_FAIL(CX_EARG, "--num-experts %d: must be between 1 and %d", c->num_experts, MOE_MAX_EXPERTS);
        if (c->top_k < 1 || c->top_k > c->num_experts)
            return CX_FAIL(CX_EARG, "--top-k %d is more than --num-experts %d (each image picks k of the E experts); "
                           "lower --top-k or raise --num-experts", c->top_k, c->num_experts);
        CHECK_RANGE(c->lb_coef, 0, 100, "--lb-coef", "");
        CHECK_RANGE(c->router_lr_scale, 0, 100, "--router-lr-scale", "");
        CHECK_RANGE(c->bias_rate, 0, 1, "--bias-update-rate", "");
    }
    if (!(c->val_fraction >= 0 && c->val_fraction < 1))
        return CX_FAIL(CX_EARG, "--val-fraction %g: must be in [0, 1) (0 turns validation off)", c->val_fraction);
    CHECK_IRANGE(c->val_every, 1, 1000000, "--val-every", "");
    CHECK_RANGE(c->grad_clip, 0, 1e30, "--grad-clip", " (0 turns clipping off)");
    CHECK_IRANGE(c->max_steps, 0, INT64_MAX, "--max-steps", " (0: no limit)");
    CHECK_IRANGE(c->progress, -1, 1, "--progress", " (-1: a bar on a terminal)");
    if (c->resume_from && !path_exists(c->resume_from))
        return CX_FAIL(CX_EARG, "--resume-from %s: no such file (checkpoints are DIR/last.safetensors or DIR/best.safetensors)",
                       c->resume_from);
    if (c->backbone_weights && !path_exists(c->backbone_weights))
        return CX_FAIL(CX_EARG, "--backbone-weights %s: no such file (a timm EdgeNeXt checkpoint in safetensors)",
                       c->backbone_weights);
    return CX_OK;
}

// ---- routing statistics -------------------------------------------------------------

// Per scale and expert: units routed (images, or tiles under spatial routing), Σ
// weight when chosen, Σ router probability; per image category the units routed to
// each expert; under spatial routing the same over object tiles (the ground truth
// covers more than half of the tile) and background tiles; Σ balancing loss per scale.
typedef struct {
    int E, n_cat, spatial;
    int64_t images;
    int64_t units[4], chosen[4][MOE_MAX_EXPERTS];
    double wsum[4][MOE_MAX_EXPERTS], psum[4][MOE_MAX_EXPERTS];
    int64_t fg_units[4], fg_chosen[4][MOE_MAX_EXPERTS];   // [0] object tiles ...
    int64_t bg_units[4], bg_chosen[4][MOE_MAX_EXPERTS];   // ... and background tiles (spatial)
    double lb[4];
    int64_t steps;
    int64_t *cat_images;   // (n_cat)
    int64_t *cat_units;    // (n_cat, 4)
    int64_t *cat_chosen;   // (n_cat, 4, E)
} RouteStats;

static void route_stats_reset(RouteStats *r) {
    int E = r->E, nc = r->n_cat, sp = r->spatial;
    int64_t *ci = r->cat_images, *cu = r->cat_units, *cc = r->cat_chosen;
    memset(r, 0, sizeof *r);
    r->E = E, r->n_cat = nc, r->spatial = sp, r->cat_images = ci, r->cat_units = cu, r->cat_chosen = cc;
    if (ci) memset(ci, 0, sizeof *ci * (size_t)(nc > 0 ? nc : 1));
    if (cu) memset(cu, 0, sizeof *cu * (size_t)(nc > 0 ? nc : 1) * 4);
    if (cc) memset(cc, 0, sizeof *cc * (size_t)(nc > 0 ? nc : 1) * 4 * (size_t)E);
}

// The share of tile (a, b) of a gh×gw grid over an h×w map that the mask (S,S) covers.
static double tile_cover(const float *mask, int64_t S, const MoeRoute *rt, int a, int b) {
    int64_t h = rt->ty[rt->gh], w = rt->tx[rt->gw];
    int64_t y0 = rt->ty[a] * S / h, y1 = rt->ty[a + 1] * S / h, x0 = rt->tx[b] * S / w, x1 = rt->tx[b + 1] * S / w;
    double s = 0;
    for (int64_t y = y0; y < y1; y++)
        for (int64_t x = x0; x < x1; x++) s += mask[y * S + x];
    return (y1 > y0 && x1 > x0) ? s / (double)((y1 - y0) * (x1 - x0)) : 0;
}

static void route_stats_add(RouteStats *r, const CamoXpertOutputs *o, const Batch *b) {
    const int64_t S = T_H(&b->mask);
    for (int s = 0; s < o->n_route; s++) {
        const MoeRoute *rt = &o->route[s];
        int64_t U = rt->idx.shape[0], k = rt->idx.shape[1], T = (int64_t)rt->gh * rt->gw;
        for (int64_t u = 0; u < U; u++) {
            int64_t n = u / T, t = u % T;
            int cat = b->sample[n]->category, fg = -1;
            if (r->spatial)
                fg = tile_cover(tensor_f32(&b->mask) + n * S * S, S, rt, (int)(t / rt->gw), (int)(t % rt->gw)) > 0.5;
            r->units[s]++;
            if (fg == 1) r->fg_units[s]++;
            if (fg == 0) r->bg_units[s]++;
            if (cat >= 0 && cat < r->n_cat) r->cat_units[cat * 4 + s]++;
            for (int64_t j = 0; j < k; j++) {
                int e = tensor_i32(&rt->idx)[u * k + j];
                r->chosen[s][e]++;
                r->wsum[s][e] += tensor_get(&rt->w, u * k + j);
                if (fg == 1) r->fg_chosen[s][e]++;
                if (fg == 0) r->bg_chosen[s][e]++;
                if (cat >= 0 && cat < r->n_cat) r->cat_chosen[((int64_t)cat * 4 + s) * r->E + e]++;
            }
            for (int e = 0; e < r->E; e++) r->psum[s][e] += tensor_get(&rt->probs, u * r->E + e);
        }
        r->lb[s] += rt->lb_loss;
    }
    for (int u = 0; u < b->n; u++) {
        int cat = b->sample[u]->category;
        if (cat >= 0 && cat < r->n_cat) r->cat_images[cat]++;
    }
    r->images += b->n;
    r->steps++;
}

static double ratio(double a, double b) { return b > 0 ? a / b : 0; }

static const char *expert_kind_letter(int e) {
    static const char *k[4] = { "T", "F", "Ed", "C" };   // texture, frequency, edge, contrast (the cycle)
    return k[e % 4];
}

static cJSON *route_stats_json(const RouteStats *r, const Dataset *ds) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "unit", r->spatial ? "tile" : "image");
    cJSON *scales = cJSON_AddArrayToObject(j, "scales");
    for (int s = 0; s < 4; s++) {
        cJSON *sj = cJSON_CreateObject();
        cJSON *share = cJSON_AddArrayToObject(sj, "share"), *mw = cJSON_AddArrayToObject(sj, "mean_weight"),
              *mp = cJSON_AddArrayToObject(sj, "mean_prob");
        for (int e = 0; e < r->E; e++) {
            cJSON_AddItemToArray(share, cJSON_CreateNumber(ratio((double)r->chosen[s][e], (double)r->units[s])));
            cJSON_AddItemToArray(mw, cJSON_CreateNumber(r->chosen[s][e] ? r->wsum[s][e] / r->chosen[s][e] : 0));
            cJSON_AddItemToArray(mp, cJSON_CreateNumber(ratio(r->psum[s][e], (double)r->units[s])));
        }
        cJSON_AddNumberToObject(sj, "units", (double)r->units[s]);
        if (r->spatial) {   // shares over object tiles and over background tiles
            cJSON_AddNumberToObject(sj, "object_tiles", (double)r->fg_units[s]);
            cJSON_AddNumberToObject(sj, "background_tiles", (double)r->bg_units[s]);
            cJSON *fs = cJSON_AddArrayToObject(sj, "object_share"), *bs = cJSON_AddArrayToObject(sj, "background_share");
            for (int e = 0; e < r->E; e++) {
                cJSON_AddItemToArray(fs, cJSON_CreateNumber(ratio((double)r->fg_chosen[s][e], (double)r->fg_units[s])));
                cJSON_AddItemToArray(bs, cJSON_CreateNumber(ratio((double)r->bg_chosen[s][e], (double)r->bg_units[s])));
            }
        }
        cJSON_AddNumberToObject(sj, "balance_loss", r->steps ? r->lb[s] / r->steps : 0);
        cJSON_AddItemToArray(scales, sj);
    }
    cJSON *cats = cJSON_AddObjectToObject(j, "categories");
    for (int c = 0; c < r->n_cat; c++) {
        if (!r->cat_images[c]) continue;
        cJSON *cj = cJSON_CreateObject();
        cJSON_AddNumberToObject(cj, "images", (double)r->cat_images[c]);
        cJSON *sh = cJSON_AddArrayToObject(cj, "share");
        for (int s = 0; s < 4; s++) {
            cJSON *row = cJSON_CreateArray();
            for (int e = 0; e < r->E; e++)
                cJSON_AddItemToArray(row, cJSON_CreateNumber(ratio((double)r->cat_chosen[((int64_t)c * 4 + s) * r->E + e],
                                                                   (double)r->cat_units[c * 4 + s])));
            cJSON_AddItemToArray(sh, row);
        }
        cJSON_AddItemToObject(cats, ds->categories[c], cj);
    }
    return j;
}

static void route_stats_print(const RouteStats *r, const Dataset *ds) {
    say("  routing (training batches; share of %s per expert, mean weight when chosen):\n", r->spatial ? "tiles" : "images");
    say("    %-7s", "scale");
    for (int e = 0; e < r->E; e++) {
        char h[32];
        snprintf(h, sizeof h, "%s%d share/w", expert_kind_letter(e), e);
        say("%14s", h);
    }
    say(" balance\n");
    for (int s = 0; s < 4; s++) {
        say("    %-7d", s);
        for (int e = 0; e < r->E; e++)
            say("   %5.1f%%/%.2f", 100.0 * ratio((double)r->chosen[s][e], (double)r->units[s]),
                   r->chosen[s][e] ? r->wsum[s][e] / r->chosen[s][e] : 0);
        say("  %.5f\n", r->steps ? r->lb[s] / r->steps : 0);
    }
    for (int s = 0; s < 4 && r->spatial; s++) {   // object tiles (GT covers > half) against background tiles
        say("    s%d object tiles (%lld):", s, (long long)r->fg_units[s]);
        for (int e = 0; e < r->E; e++) say(" %s%d %4.1f%%", expert_kind_letter(e), e, 100.0 * ratio((double)r->fg_chosen[s][e], (double)r->fg_units[s]));
        say("  | background (%lld):", (long long)r->bg_units[s]);
        for (int e = 0; e < r->E; e++) say(" %s%d %4.1f%%", expert_kind_letter(e), e, 100.0 * ratio((double)r->bg_chosen[s][e], (double)r->bg_units[s]));
        say("\n");
    }
    for (int c = 0; c < r->n_cat; c++) {
        if (!r->cat_images[c]) continue;
        say("    %-10s (%lld images) most used:", ds->categories[c], (long long)r->cat_images[c]);
        for (int s = 0; s < 4; s++) {
            int best = 0;
            const int64_t *row = &r->cat_chosen[((int64_t)c * 4 + s) * r->E];
            for (int e = 1; e < r->E; e++) if (row[e] > row[best]) best = e;
            say("  s%d %s%d %.0f%%", s, expert_kind_letter(best), best, 100.0 * ratio((double)row[best], (double)r->cat_units[c * 4 + s]));
        }
        say("\n");
    }
}

// ---- the trainer ----------------------------------------------------------------------

typedef struct {
    const TrainConfig *c;
    Model model;              // the model, its table and module tree (on rt)
    AdamW opt;
    Ema ema;
    TrainState ts;
    unsigned char *frozen;    // (pt.n) progressive unfreezing
    Runtime rt;               // device, precision, arenas, the modules' context
    TrainStep step;
    Dataset all, tr, va;
    Image8 *gt;               // (va.n) validation masks, loaded once
    FILE *log;
    char *meta_json;          // checkpoint metadata: model config + the run's options
    RunDir rd;                // checkpoint_dir, locked for the run
    char last_ckpt[4200];     // the last checkpoint written ("" before the first)
    int last_ckpt_epoch;
    int exact_resume;         // 1: continuing a run from its training state
    int64_t saved_step;       // global_step of the last checkpoint written or resumed
    int data_failed;          // 1: a data file failed mid-run (the loader's or validation's error)
    RouteStats rs;
    int progress;
    double epoch_loss_sum;
    int64_t epoch_loss_n;
    // Data parallel (docs/MULTIGPU.md): rank 0 writes every file and prints; world 1 is one process.
    DistEnv de;
    DistStore store;          // the rendezvous: collective decisions
    Comm comm;                // gradients, BatchNorm statistics
    int rank, world;
    int resumed_world;        // ranks of the run that wrote the resumed state (0: not resumed)
} Trainer;

static void moe_bias_to_state(Trainer *T) {
    T->ts.n_extra = 0;
    if (!T->model.cfg.sparse) return;
    for (int s = 0; s < 4; s++)
        for (int e = 0; e < T->model.cfg.num_experts; e++) T->ts.extra[T->ts.n_extra++] = T->model.net->moe[s].sel_bias[e];
}

static void moe_bias_from_state(Trainer *T) {
    if (!T->model.cfg.sparse || T->ts.n_extra != 4 * T->model.cfg.num_experts) return;
    for (int s = 0; s < 4; s++)
        for (int e = 0; e < T->model.cfg.num_experts; e++) T->model.net->moe[s].sel_bias[e] = T->ts.extra[s * T->model.cfg.num_experts + e];
}

static cx_status save_last(Trainer *T) {
    moe_bias_to_state(T);
    if (T->rank != 0) {   // rank 0 writes; the others keep the same bookkeeping
        T->last_ckpt_epoch = T->ts.epoch;
        T->saved_step = T->ts.global_step;
        return CX_OK;
    }
    struct stat lst;
    fflush(T->log);
    T->ts.log_bytes = fstat(fileno(T->log), &lst) == 0 ? (int64_t)lst.st_size : -1;
    CX_TRY(checkpoint_save(T->c->checkpoint_dir, "last", &T->model.pt, T->meta_json, &T->ts, &T->opt,
                           T->c->use_ema ? &T->ema : NULL));
    snprintf(T->last_ckpt, sizeof T->last_ckpt, "%s/last.safetensors", T->c->checkpoint_dir);
    T->last_ckpt_epoch = T->ts.epoch;
    T->saved_step = T->ts.global_step;
    return CX_OK;
}

static void log_line(Trainer *T, cJSON *j) {
    if (!T->log) { cJSON_Delete(j); return; }   // ranks other than 0 keep no log
    char *s = cJSON_PrintUnformatted(j);
    fprintf(T->log, "%s\n", s);
    fflush(T->log);
    cJSON_free(s);
    cJSON_Delete(j);
}

// ---- the run's records in the log -------------------------------------------------------
// A "type":"run" record at each (re)start and a "type":"end" record when the run ends, so a
// reader of train_log.jsonl (`camoxpert report`) knows what ran where, and how it ended.

static void add_time(cJSON *j) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char iso[32];
    strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%SZ", &tm);
    cJSON_AddStringToObject(j, "time", iso);
    cJSON_AddNumberToObject(j, "unix", (double)ts.tv_sec + ts.tv_nsec * 1e-9);
}

static void log_run_start(Trainer *T) {
    const TrainConfig *c = T->c;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", "run");
    add_time(j);
    if (c->command_line) cJSON_AddStringToObject(j, "command", c->command_line);
    char cwd[4096];
    if (getcwd(cwd, sizeof cwd)) cJSON_AddStringToObject(j, "cwd", cwd);
    // Where the run computes: "cpu" or "cuda:N", the activation precision, and the
    // device in words (the first line the run printed)
    char dev[32];
    if (T->rt.device == DEV_CUDA) snprintf(dev, sizeof dev, "cuda:%d", T->rt.gpu);
    else snprintf(dev, sizeof dev, "cpu");
    cJSON_AddStringToObject(j, "device", dev);
    cJSON_AddStringToObject(j, "precision", T->rt.dtype == DT_BF16 ? "bf16" : "fp32");
    cJSON_AddStringToObject(j, "device_desc", T->rt.desc);
    cJSON_AddNumberToObject(j, "threads", cx_threads_get());
    cJSON_AddNumberToObject(j, "world_size", T->world);
    if (T->world > 1) cJSON_AddStringToObject(j, "launcher", T->de.source);
    cJSON_AddItemToObject(j, "config", cJSON_Parse(T->meta_json));
    cJSON_AddNumberToObject(j, "parameters", (double)params_count(&T->model.pt, PF_BUFFER));
    cJSON_AddStringToObject(j, "dataset", c->dataset_path);
    cJSON_AddNumberToObject(j, "train_images", T->tr.n);
    cJSON_AddNumberToObject(j, "val_images", T->va.n);
    cJSON_AddNumberToObject(j, "val_fraction", c->val_fraction);
    cJSON_AddNumberToObject(j, "seed", (double)T->ts.seed);
    cJSON_AddNumberToObject(j, "img_size", c->img_size);
    cJSON_AddNumberToObject(j, "epochs", c->epochs);
    cJSON_AddNumberToObject(j, "stage1_epochs", c->stage1_epochs);
    if (c->resume_from) cJSON_AddStringToObject(j, "resumed_from", c->resume_from);
    cJSON_AddNumberToObject(j, "start_step", (double)T->ts.global_step);
    cJSON_AddNumberToObject(j, "start_epoch", T->ts.epoch);
    log_line(T, j);
}

static void log_run_end(Trainer *T, cx_status st, const TrainResult *r) {
    if (!T->log) return;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", "end");
    add_time(j);
    cJSON_AddStringToObject(j, "status", st ? "failed" : r->interrupted ? "stopped" : "done");
    if (st) {
        cJSON_AddStringToObject(j, "error", cx_errmsg());
        cJSON_AddBoolToObject(j, "non_finite", st == CX_ENUMERIC);
    }
    cJSON_AddNumberToObject(j, "step", (double)T->ts.global_step);
    cJSON_AddNumberToObject(j, "epoch", T->ts.epoch);
    cJSON_AddNumberToObject(j, "best_epoch", T->ts.best_epoch);
    cJSON_AddNumberToObject(j, "best_Smeasure", T->ts.best_score);
    log_line(T, j);
}

static void add_loss_terms(cJSON *j, const CamoLoss *L) {
    cJSON_AddNumberToObject(j, "bce", L->bce);
    cJSON_AddNumberToObject(j, "iou", L->iou);
    cJSON_AddNumberToObject(j, "edge", L->edge);
    cJSON_AddNumberToObject(j, "boundary", L->boundary);
    cJSON_AddNumberToObject(j, "uncertainty", L->uncertainty);
    cJSON_AddNumberToObject(j, "reverse_attention", L->reverse_attention);
    cJSON_AddNumberToObject(j, "search", L->search);
    cJSON_AddNumberToObject(j, "deep", L->deep);
    cJSON_AddNumberToObject(j, "refinement", L->refinement);
    cJSON_AddNumberToObject(j, "balance", L->balance);
}

static cx_status numeric_failure(Trainer *T, const char *what, const CamoLoss *L, double norm, const Batch *b) {
    char last[3 * 4200 + 256];
    if (T->last_ckpt[0]) snprintf(last, sizeof last, "the last good checkpoint is %s (epoch %d); resume from it with "
                                  "--resume-from %s and a lower --lr (or --grad-clip)", T->last_ckpt, T->last_ckpt_epoch,
                                  T->last_ckpt);
    else snprintf(last, sizeof last, "no checkpoint was written yet; restart with a lower --lr (or --grad-clip)");
    return CX_FAIL(CX_ENUMERIC,
                   "step %lld (stage %d, epoch %d, batch %lld): %s. Loss terms: total %g, "
                   "bce %g, iou %g, edge %g, boundary %g, uncertainty %g, reverse_attention %g, search %g, deep %g, "
                   "refinement %g, balance %g; gradient norm %g. Nothing saved was changed: %s",
                   (long long)T->ts.global_step + 1, T->ts.stage, T->ts.epoch + 1, (long long)b->step, what, L->total,
                   L->bce, L->iou, L->edge, L->boundary, L->uncertainty, L->reverse_attention, L->search, L->deep,
                   L->refinement, L->balance, norm, last);
}

static void fmt_time(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 1e7) { snprintf(buf, n, "?"); return; }
    int t = (int)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%d:%02d", t / 60, t % 60);
}

// Freezes backbone entries according to the stage and progressive unfreezing:
// stage 2 epoch j of n unfreezes stages_3 (first third), stages_2-3 (second), all.
static void set_freezing(Trainer *T, int stage, int j, int n) {
    const TrainConfig *c = T->c;
    T->opt.group_frozen[PG_BACKBONE] = stage == 1;
    memset(T->frozen, 0, (size_t)T->model.pt.n);
    if (stage != 2 || !c->progressive_unfreeze) return;
    int phase = n > 0 ? j * 3 / n : 2;
    for (int i = 0; i < T->model.pt.n; i++) {
        const ParamInfo *p = &T->model.pt.p[i];
        if (p->group != PG_BACKBONE) continue;
        int open = phase >= 2 || !strncmp(p->name, "backbone.stages_3.", 18) ||
                   (phase >= 1 && !strncmp(p->name, "backbone.stages_2.", 18));
        T->frozen[i] = !open;
    }
}

// Rank 0's BatchNorm running statistics (and counters) on every rank, in the table in
// use: what the reference's DDP does before each forward (broadcast_buffers); here
// before validation, the one computation that reads them. Training-mode BatchNorm
// uses each rank's batch statistics, so between validations the ranks' running
// statistics drift apart, as the reference's do between its forwards.
static cx_status sync_buffers(Trainer *T) {
    ParamTable *pt = &T->model.pt;
    for (int i = 0; T->world > 1 && i < pt->n; i++) {
        if (!(pt->p[i].flags & PF_BUFFER)) continue;
        Tensor v = tensor_view((char *)pt->data + (size_t)pt->p[i].offset * dtype_size(pt->dtype), pt->dtype, 1,
                               &pt->p[i].numel);
        v.device = pt->device;
        CX_TRY(comm_broadcast(&T->comm, &v));
    }
    return CX_OK;
}

// Scores the validation split: logits at img_size, resized bilinearly to each
// GT's size, sigmoid, exported as 8 bits (metrics_accum_prob), measured.
// Data parallel (train/valshard.h): rank r scores its block of whole batches, rank 0
// adds every image's scores in image order: the numbers of one process on the same
// weights, bit for bit (given the same threads per process, as for an exact resume).
static cx_status validate(Trainer *T, int batch, ValResult *vr) {
    const TrainConfig *c = T->c;
    int first, n_mine;
    val_shard(T->va.n, batch, T->rank, T->world, &first, &n_mine);
    ValImage *mine = cx_calloc((size_t)(n_mine > 0 ? n_mine : 1), sizeof *mine);
    int *idx = cx_malloc(sizeof *idx * (size_t)(n_mine > 0 ? n_mine : 1));
    for (int i = 0; i < n_mine; i++) idx[i] = first + i;
    Dataset shard;
    dataset_select(&T->va, idx, n_mine > 0 ? n_mine : 0, &shard);
    free(idx);
    if (c->use_ema) ema_swap(&T->ema, &T->model.pt);
    cx_status st = sync_buffers(T);
    if (st) {   // a rank is gone (the message names it)
        if (c->use_ema) ema_swap(&T->ema, &T->model.pt);
        dataset_free(&shard);
        free(mine);
        return st;
    }
    T->rt.ctx.training = 0;
    Loader *L = NULL;
    float *prob = NULL;
    size_t prob_cap = 0;
    int k = 0;
    if (n_mine > 0) {
        LoaderConfig lc = loader_config_default();
        lc.batch_size = batch, lc.size = c->img_size, lc.workers = c->num_workers, lc.seed = c->seed;
        lc.shuffle = 0, lc.augment = 0, lc.drop_last = 0, lc.cache = c->cache;
        st = loader_open(&L, &shard, &lc, 0, 0, 1);
    }
    const Batch *b;
    while (!st && L && !(st = loader_next(L, &b)) && b) {
        CamoXpertOutputs o;
        Tensor pred = infer_forward(&T->model, &b->image, &o);
        const int S = c->img_size;
        for (int i = 0; i < b->n && !st; i++, k++) {
            ValImage *vi = &mine[k];
            vi->index = first + b->index[i];
            Image8 *g = &T->gt[vi->index];
            if (!g->px && (st = image_load(T->va.s[vi->index].mask, 1, g))) break;
            size_t need = (size_t)g->w * g->h;
            if (need > prob_cap) { prob = cx_realloc(prob, need * sizeof *prob); prob_cap = need; }
            infer_prob_at(tensor_f32(&pred) + (int64_t)i * S * S, S, S, g->h, g->w, prob);
            MetricsAccum scratch;
            metrics_accum_init(&scratch);
            if ((st = metrics_accum_prob(&scratch, prob, g->px, g->h, g->w, &vi->m))) break;
            // The reference's IoU: sigmoid > 0.5 against GT > 128, per image.
            double inter = 0, uni = 0;
            for (size_t p = 0; p < need; p++) {
                int a = prob[p] > 0.5f, t = g->px[p] > 128;
                inter += a & t, uni += a | t;
            }
            vi->iou = uni > 0 ? inter / uni : 1.0;
        }
    }
    free(prob);
    if (L) loader_close(L);
    dataset_free(&shard);
    T->rt.ctx.training = 1;
    if (c->use_ema) ema_swap(&T->ema, &T->model.pt);
    if (st) {
        free(mine);
        T->data_failed = 1;
        cx_error_context("validating");
        return st;
    }
    st = val_reduce(&T->store, mine, k, T->va.n, vr);
    free(mine);
    return st;
}

// MOE_BALANCE_BIAS with several ranks: each scale's expert loads of the last forward,
// summed over the ranks (the global batch's), so the selection biases stay identical.
static cx_status global_loads(Trainer *T) {
    if (T->world == 1) return CX_OK;
    const int E = T->model.cfg.num_experts;
    double v[4 * MOE_MAX_EXPERTS];
    for (int s = 0; s < 4; s++)
        for (int e = 0; e < E; e++) v[s * E + e] = (double)T->model.net->moe[s].route.count[e];
    CX_TRY(dist_sum(&T->store, v, 4 * E));
    for (int s = 0; s < 4; s++)
        for (int e = 0; e < E; e++) T->model.net->moe[s].route.count[e] = (int64_t)v[s * E + e];
    return CX_OK;
}

// The routing statistics of every rank's batches, summed (every rank gets them).
static cx_status route_stats_reduce(Trainer *T) {
    RouteStats *r = &T->rs;
    if (T->world == 1 || !T->model.cfg.sparse) return CX_OK;
    const int E = r->E, nc = r->n_cat > 0 ? r->n_cat : 0;
    const int n = 2 + 4 * 4 + 5 * 4 * E + nc + 4 * nc + nc * 4 * E;
    double *v = cx_malloc(sizeof *v * (size_t)n), *p = v;
    *p++ = (double)r->images, *p++ = (double)r->steps;
    for (int s = 0; s < 4; s++) {
        *p++ = r->lb[s], *p++ = (double)r->units[s], *p++ = (double)r->fg_units[s], *p++ = (double)r->bg_units[s];
        for (int e = 0; e < E; e++)
            *p++ = (double)r->chosen[s][e], *p++ = r->wsum[s][e], *p++ = r->psum[s][e], *p++ = (double)r->fg_chosen[s][e],
            *p++ = (double)r->bg_chosen[s][e];
    }
    for (int i = 0; i < nc; i++) *p++ = (double)r->cat_images[i];
    for (int i = 0; i < 4 * nc; i++) *p++ = (double)r->cat_units[i];
    for (int i = 0; i < nc * 4 * E; i++) *p++ = (double)r->cat_chosen[i];
    cx_status st = dist_sum(&T->store, v, n);
    p = v;
    if (!st) {
        r->images = (int64_t)*p++, r->steps = (int64_t)*p++;
        for (int s = 0; s < 4; s++) {
            r->lb[s] = *p++, r->units[s] = (int64_t)*p++, r->fg_units[s] = (int64_t)*p++, r->bg_units[s] = (int64_t)*p++;
            for (int e = 0; e < E; e++)
                r->chosen[s][e] = (int64_t)*p++, r->wsum[s][e] = *p++, r->psum[s][e] = *p++,
                r->fg_chosen[s][e] = (int64_t)*p++, r->bg_chosen[s][e] = (int64_t)*p++;
        }
        for (int i = 0; i < nc; i++) r->cat_images[i] = (int64_t)*p++;
        for (int i = 0; i < 4 * nc; i++) r->cat_units[i] = (int64_t)*p++;
        for (int i = 0; i < nc * 4 * E; i++) r->cat_chosen[i] = (int64_t)*p++;
    }
    free(v);
    return st;
}

// One epoch of stage `stage` from the loader's cursor; *stop set when asked to stop mid-epoch.
static cx_status train_epoch(Trainer *T, Loader *L, const LrSchedule *sched, int stage, int *stop) {
    const TrainConfig *c = T->c;
    const int64_t nb = loader_steps_per_epoch(L);
    const int accum = c->accumulation_steps;
    const int skip_backbone = T->opt.group_frozen[PG_BACKBONE];
    double t0 = cx_time_s(), tlast = t0;
    int64_t images = 0, first_batch = -1;
    int acc_n = 0;
    const Batch *b;
    cx_status st;
    while (!(st = loader_next(L, &b)) && b) {
        if (first_batch < 0) first_batch = b->step;
        if (acc_n == 0) train_step_begin(&T->step);
        CamoXpertOutputs o;
        train_step_accumulate(&T->step, &b->image, &b->mask, skip_backbone, &o);
        if (T->model.cfg.sparse) route_stats_add(&T->rs, &o, b);
        acc_n++;
        images += b->n;
        int last_of_epoch = b->step + 1 == nb;
        if (acc_n < accum && !last_of_epoch) continue;
        // One optimizer step over the accumulated batches (mean of their gradients).
        double lr = lr_at(sched, T->ts.stage_step);
        StepResult sr;
        if ((st = train_step_finish(&T->step, lr, c->grad_clip, &sr))) return st;   // the all-reduce: a rank died
        if (!sr.loss_finite)
            return numeric_failure(T, "the loss is not finite — the step was not applied", &sr.loss, sr.grad_norm, b);
        if (!sr.grad_finite)
            return numeric_failure(T, "a gradient is not finite — the step was not applied", &sr.loss, sr.grad_norm, b);
        if (!sr.weights_finite) {
            // the update reached neither the EMA nor a checkpoint: the last checkpoint stays the last good one
            char what[1024];
            snprintf(what, sizeof what, "the update with learning rate %g made parameter '%s' not finite (%g at index "
                     "%lld) — training stops before it reaches the EMA or a checkpoint", lr, T->model.pt.p[sr.bad_param].name,
                     sr.bad_value, (long long)sr.bad_index);
            return numeric_failure(T, what, &sr.loss, sr.grad_norm, b);
        }
        const CamoLoss acc = sr.loss;
        const double norm = sr.grad_norm;
        if (T->model.cfg.sparse && T->model.cfg.balance == MOE_BALANCE_BIAS) {
            CX_TRY(global_loads(T));   // every rank moves its selection bias the same way
            camoxpert_balance_update(T->model.net, c->bias_rate);
        }
        T->ts.global_step++;
        T->ts.stage_step++;
        T->ts.batch_in_epoch = b->step + 1;
        T->ts.samples_in_epoch = (b->step + 1) * (int64_t)b->n * T->world;   // mid-epoch batches are full
        T->epoch_loss_sum += acc.total;
        T->epoch_loss_n++;
        double now = cx_time_s(), ips = (double)images * T->world / (now - t0 > 1e-9 ? now - t0 : 1e-9);
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "type", "step");
        cJSON_AddNumberToObject(j, "step", (double)T->ts.global_step);
        cJSON_AddNumberToObject(j, "stage", stage);
        cJSON_AddNumberToObject(j, "epoch", T->ts.epoch + 1);
        cJSON_AddNumberToObject(j, "batch", (double)(b->step + 1));
        cJSON_AddNumberToObject(j, "lr", lr);
        cJSON_AddNumberToObject(j, "loss", acc.total);
        add_loss_terms(j, &acc);
        cJSON_AddNumberToObject(j, "grad_norm", norm);
        cJSON_AddNumberToObject(j, "images_per_s", ips);
        log_line(T, j);
        // Progress: a bar redrawn in place on a terminal, a line every ~10% otherwise.
        int64_t done = b->step + 1 - first_batch, left = nb - (b->step + 1);
        char eta[32];
        fmt_time(eta, sizeof eta, done > 0 ? (now - t0) / done * left : -1);
        if (T->progress) {
            int width = 24, fill = (int)(width * (b->step + 1) / nb);
            char bar[32];
            for (int k = 0; k < width; k++) bar[k] = k < fill ? '#' : '.';
            bar[width] = 0;
            say("\r  epoch %d/%d [%s] %lld/%lld  %.1f img/s  loss %.4f  ETA %s   ", T->ts.epoch + 1, c->epochs, bar,
                   (long long)(b->step + 1), (long long)nb, ips, acc.total, eta);
            fflush(say_fp);
        } else if (now - tlast > 30 || last_of_epoch || (nb >= 10 && (b->step + 1) % (nb / 10) == 0)) {
            say("  epoch %d/%d batch %lld/%lld  %.1f img/s  loss %.4f  lr %.3g  ETA %s\n", T->ts.epoch + 1,
                   c->epochs, (long long)(b->step + 1), (long long)nb, ips, acc.total, lr, eta);
            fflush(say_fp);
            tlast = now;
        }
        acc_n = 0;
        int want_stop = stop_requested || (c->max_steps > 0 && T->ts.global_step >= c->max_steps);
        if (T->world > 1 && (st = dist_any(&T->store, want_stop, &want_stop))) return st;   // one rank's Ctrl-C stops all
        if (want_stop) {
            *stop = 1;
            if (!last_of_epoch) {
                if (T->progress) say("\n");
                return CX_OK;   // mid-epoch: the caller saves the cursor
            }
        }
    }
    if (T->progress) say("\n");
    if (st) T->data_failed = 1;   // loader_next: a file that broke after the scan
    return st;
}

// The best epoch's weights when a kill came between writing last and best: they are
// what last holds (the EMA's when on), so best is written from them. A best file with
// a higher score than the state knows (a copied directory) is adopted: best never goes back.
static cx_status reconcile_best(Trainer *T) {
    const TrainConfig *c = T->c;
    char bp[4200];
    snprintf(bp, sizeof bp, "%s/best.safetensors", c->checkpoint_dir);
    double fs;
    int fe;
    int have = checkpoint_read_best(bp, &fs, &fe) == CX_OK;
    if (have && fs > T->ts.best_score) T->ts.best_score = fs, T->ts.best_epoch = fe;
    if (T->ts.best_epoch > 0 && T->ts.best_epoch == T->ts.epoch && T->ts.batch_in_epoch == 0 &&
        (!have || fs < T->ts.best_score)) {
        int saved = 0;
        if (c->use_ema) ema_swap(&T->ema, &T->model.pt);
        cx_status st = checkpoint_save_best(c->checkpoint_dir, &T->model.pt, T->meta_json, T->ts.best_score, T->ts.best_epoch, &saved);
        if (c->use_ema) ema_swap(&T->ema, &T->model.pt);
        CX_TRY(st);
        say("wrote %s (Sα %.4f, epoch %d) from the resumed checkpoint: the previous run stopped before writing it\n", bp,
            T->ts.best_score, T->ts.best_epoch);
    }
    return CX_OK;
}

// Know the memory before the work: the estimated peak of a training step (the larger
// stage batch) plus the data the run keeps (validation masks at full size, the cache,
// the loader's batches), against what the device has (runtime_mem_budget: the GPU's free
// memory for the model on a GPU, the host's otherwise). Printed;
// refused with a batch size (or input size) that fits when it does not.
static cx_status check_memory(void *arg, const Model *model) {
    Trainer *T = arg;
    const TrainConfig *c = T->c;
    const int b1 = c->batch_size, b2 = c->stage2_batch_size ? c->stage2_batch_size : c->batch_size;
    const int stage2 = c->stage1_epochs < c->epochs;
    const int B = stage2 && b2 > b1 ? b2 : b1;
    const char *opt = stage2 && b2 > b1 ? "--stage2-batch-size" : "--batch-size";
    const double S2 = (double)c->img_size * c->img_size;
    double data = 256.0 * (1 << 20) + 64.0 * (1 << 20) * c->num_workers;   // the runtime, and a photo per worker
    for (int i = 0; i < T->va.n; i++) data += (double)T->va.s[i].w * T->va.s[i].h;
    if (c->cache) data += 4.0 * S2 * T->tr.n;
    const double per_batch = 6.0 * 16.0 * S2;   // loader: prefetched and in-flight batches, images + masks in float32
    // On a GPU the model's memory is checked against the GPU's free memory (activations
    // in the run's precision), the data's stays on the host.
    const int gpu = T->rt.device == DEV_CUDA, act = T->rt.dtype == DT_BF16 ? 2 : 4;
    const double fixed = gpu ? 256.0 * (1 << 20) : data, growth = gpu ? 0 : per_batch;
    MemEstimate m;
    camoxpert_memory_estimate(&model->cfg, model->pt.numel, B, c->img_size, 1, c->use_ema, act, &m);
    double total = m.total + fixed + growth * B;
    char how[64], a[32], b[32], d[32], e[32];
    double budget = runtime_mem_budget(&T->rt, how, sizeof how);
    say("memory: about %s at peak (weights, gradients, optimizer %s; activations %s at batch %d, %dx%d; data %s)",
        mem_str(total, a, sizeof a), mem_str(m.params + m.grads + m.optimizer + m.ema, b, sizeof b),
        mem_str(m.activations + m.scratch, d, sizeof d), B, c->img_size, c->img_size, mem_str(data + per_batch * B, e, sizeof e));
    if (budget > 0) say(" of %s available (%s)", mem_str(budget, a, sizeof a), how);
    say("\n");
    if (budget <= 0 || total <= budget) return CX_OK;
    int fit = camoxpert_memory_fit_batch(&model->cfg, model->pt.numel, c->img_size, 1, c->use_ema, act, fixed, budget, 65536);
    while (fit > 0) {   // the loader's batches grow with the batch too
        MemEstimate f;
        camoxpert_memory_estimate(&model->cfg, model->pt.numel, fit, c->img_size, 1, c->use_ema, act, &f);
        if (f.total + fixed + growth * fit <= budget) break;
        fit--;
    }
    char advice[256];
    if (fit > 0) snprintf(advice, sizeof advice, "%s %d fits", opt, fit);
    else {
        int S = camoxpert_memory_fit_size(&model->cfg, model->pt.numel, 1, 1, c->use_ema, act, fixed + growth, budget,
                                          c->img_size);
        if (S > 0) snprintf(advice, sizeof advice, "even batch 1 does not fit at %dx%d; --img-size %d with %s 1 fits",
                            c->img_size, c->img_size, S, opt);
        else snprintf(advice, sizeof advice, "even batch 1 at 32x32 does not fit: the model is too large for this machine");
    }
    return CX_FAIL(CX_EARG, "%s %d at --img-size %d: a training step needs about %s at peak, more than the %s this machine "
                   "has available (%s); %s (set CAMOXPERT_MEMORY_LIMIT_MB if its memory grows on demand)", opt, B,
                   c->img_size, mem_str(total, a, sizeof a), mem_str(budget, b, sizeof b), how, advice);
}

// The model --resume-from holds against the one the options ask for: a clear error
// before a strict load would fail on the first tensor that differs.
static cx_status check_resume_config(const char *path, const CamoXpertConfig *want) {
    CamoXpertConfig rc;
    int rsz = 0;
    if (!weights_read_config(path, &rc, &rsz) &&
        (strcmp(rc.backbone, want->backbone) || rc.sparse != want->sparse ||
         (rc.sparse && (rc.num_experts != want->num_experts || rc.top_k != want->top_k || rc.routing != want->routing ||
                        (rc.routing == MOE_ROUTING_SPATIAL && rc.route_grid != want->route_grid)))))
        return CX_FAIL(CX_EARG, "--resume-from %s holds a %s model on %s (E=%d, k=%d, %s routing) but the options ask "
                       "for %s on %s (E=%d, k=%d, %s routing); drop the model options to take the checkpoint's",
                       path, rc.sparse ? "sparse" : "dense", rc.backbone, rc.num_experts, rc.top_k,
                       moe_routing_name(rc.routing), want->sparse ? "sparse" : "dense", want->backbone,
                       want->num_experts, want->top_k, moe_routing_name(want->routing));
    return CX_OK;
}

static cx_status trainer_setup_routes(Trainer *T) {
    T->rs.E = T->model.cfg.sparse ? T->model.cfg.num_experts : 0;
    T->rs.n_cat = T->all.n_categories;
    T->rs.spatial = T->model.cfg.sparse && T->model.cfg.routing == MOE_ROUTING_SPATIAL;
    T->rs.cat_images = cx_calloc((size_t)(T->rs.n_cat > 0 ? T->rs.n_cat : 1), sizeof(int64_t));
    T->rs.cat_units = cx_calloc((size_t)(T->rs.n_cat > 0 ? T->rs.n_cat : 1) * 4, sizeof(int64_t));
    T->rs.cat_chosen = cx_calloc((size_t)(T->rs.n_cat > 0 ? T->rs.n_cat : 1) * 4 * (size_t)(T->rs.E > 0 ? T->rs.E : 1),
                                 sizeof(int64_t));
    return CX_OK;
}

static cx_status trainer_setup(Trainer *T) {
    const TrainConfig *c = T->c;
    // The checkpoint directory first: does it hold a run this one must not overwrite?
    // (Nothing is created before the data and the model are known to be good.)
    char rdir[4200] = "", held[256];
    uint64_t rtok = 0;
    if (c->resume_from) rundir_dirname(c->resume_from, rdir, sizeof rdir);
    int resume_here = c->resume_from && rundir_same(rdir, c->checkpoint_dir) &&
                      !checkpoint_read_token(c->resume_from, &rtok) && rtok;
    if (T->rank == 0 && !c->overwrite && !resume_here && rundir_has_run(c->checkpoint_dir, held, sizeof held))
        return CX_FAIL(CX_EARG, "--checkpoint-dir %s holds the checkpoints of another run (%s); a new run there would "
                       "overwrite them and append to its log. Resume that run with --resume-from %s/last.safetensors, "
                       "choose another --checkpoint-dir, or pass --overwrite to replace it", c->checkpoint_dir, held,
                       c->checkpoint_dir);
    // Data: the training split and the held-out validation split.
    DatasetOptions dop = { .root = c->dataset_path, .split = "train", .skip_bad = c->skip_bad,
                           .include_noncam = c->include_noncam };
    cx_status st = dataset_open(&T->all, &dop);
    if (!st) st = dataset_scan(&T->all, c->skip_bad);
    if (st) { cx_error_context("--dataset-path %s", c->dataset_path); return st; }
    char sum[256];
    dataset_summary(&T->all, sum, sizeof sum);
    if (c->val_fraction > 0) {
        dataset_split(&T->all, c->val_fraction, c->seed, &T->tr, &T->va);
    } else {
        int *idx = cx_malloc(sizeof *idx * (size_t)T->all.n);
        for (int i = 0; i < T->all.n; i++) idx[i] = i;
        dataset_select(&T->all, idx, T->all.n, &T->tr);
        free(idx);
    }
    if (T->tr.n < 1 || (c->val_fraction > 0 && T->va.n < 1))
        return CX_FAIL(CX_EARG, "--dataset-path %s: %d images are too few to hold out --val-fraction %g and train on the "
                       "rest; add images or use --val-fraction 0", c->dataset_path, T->all.n, c->val_fraction);
    say("data: %s; %d for training, %d held out for validation\n", sum, T->tr.n, T->va.n);
    T->gt = cx_calloc((size_t)(T->va.n > 0 ? T->va.n : 1), sizeof *T->gt);
    // Model: the options' config on this rank's runtime, initialised from the seed (and
    // --backbone-weights), or with the weights of --resume-from (every rank reads them).
    CamoXpertConfig mc;
    CX_TRY(camoxpert_config(&mc, c->backbone, c->sparse, c->num_experts, c->top_k));
    if (c->sparse) CX_TRY(camoxpert_config_routing(&mc, c->routing ? c->routing : "global", c->route_grid));
    mc.balance = c->balance;
    mc.lb_coef = c->lb_coef;
    if (c->resume_from) CX_TRY(check_resume_config(c->resume_from, &mc));
    st = model_open(&T->model, &(ModelSpec){ .config = &mc, .img_size = c->img_size, .rt = &T->rt,
                                             .weights = c->resume_from, .init_seed = c->seed,
                                             .backbone_weights = c->backbone_weights, .check = check_memory,
                                             .check_arg = T });
    if (st) {
        if (c->resume_from) cx_error_context("--resume-from %s", c->resume_from);
        return st;
    }
    adamw_init(&T->opt, &T->model.pt, c->weight_decay);
    T->opt.group_scale[PG_ROUTER] = c->router_lr_scale;
    T->frozen = cx_calloc((size_t)T->model.pt.n + 1, 1);
    T->opt.entry_frozen = T->frozen;
    if (c->use_ema) ema_init(&T->ema, &T->model.pt, c->ema_decay);
    CamoLossWeights w = camo_loss_default_weights();
    if (!c->deep_supervision) w.deep = 0;
    train_step_init(&T->step, &T->rt, T->model.net, &T->model.pt, &T->opt, c->use_ema ? &T->ema : NULL, &w);
    T->step.accum = c->accumulation_steps;   // the gradient buckets start in the last micro-batch's backward
    T->step.comm = &T->comm;
    // Metadata: the model config plus the run's options.
    char *mj = weights_config_json(&T->model.cfg, c->img_size);
    cJSON *j = cJSON_Parse(mj);
    free(mj);
    if (c->options_json) {
        cJSON *oj = cJSON_Parse(c->options_json);
        if (oj) cJSON_AddItemToObject(j, "train_options", oj);
    }
    char *s = cJSON_PrintUnformatted(j);
    T->meta_json = cx_strdup(s);
    cJSON_free(s);
    cJSON_Delete(j);
    T->ts.stage = c->skip_stage1 || c->stage1_epochs == 0 ? 2 : 1;
    T->ts.epoch = c->skip_stage1 ? c->stage1_epochs : 0;
    T->ts.best_score = -1;
    T->ts.best_epoch = 0;
    T->ts.seed = c->seed;
    T->ts.world = T->world;
    // Resume: the training state beside the weights.
    if (c->resume_from) {
        TrainState ts = T->ts;
        int has_state = 0;
        st = checkpoint_load_state(c->resume_from, &T->model.pt, &ts, &T->opt, c->use_ema ? &T->ema : NULL, &has_state);
        if (st) { cx_error_context("--resume-from %s", c->resume_from); return st; }
        if (has_state) {
            T->ts = ts;
            T->resumed_world = ts.world;
            T->ts.world = T->world;
            moe_bias_from_state(T);
            if (T->ts.seed != c->seed) log_warn("resuming with the checkpoint's seed %llu (not --seed %llu)",
                                                (unsigned long long)T->ts.seed, (unsigned long long)c->seed);
            snprintf(T->last_ckpt, sizeof T->last_ckpt, "%s", c->resume_from);
            T->last_ckpt_epoch = T->ts.epoch;
            T->saved_step = T->ts.global_step;
            say("resumed from %s: stage %d, %d epochs and %lld batches done, step %lld, best Sα %.4f (epoch %d)\n",
                   c->resume_from, T->ts.stage, T->ts.epoch, (long long)T->ts.batch_in_epoch,
                   (long long)T->ts.global_step, T->ts.best_score, T->ts.best_epoch);
        } else {   // the average (when on) starts from the loaded weights
            say("started from the weights of %s (no training state beside it)\n", c->resume_from);
        }
        T->exact_resume = has_state;
    }
    // Every rank has read what it needs; from here on only rank 0 touches the directory.
    // (A rank that failed before here sends its failure at this exchange: the others stop.)
    int failed = 0;
    if (T->world > 1) CX_TRY(dist_any(&T->store, 0, &failed));
    if (failed) return CX_FAIL(CX_EIO, "rank %d: another rank failed to set up (its output says why)", T->rank);
    if (T->rank != 0) return trainer_setup_routes(T);
    // Before the first write: the directory's lock (one train at a time), then the check again.
    CX_TRY(rundir_open(&T->rd, c->checkpoint_dir));
    if (!T->exact_resume) {
        // A new run: the directory holds none unless the resumed weights had no state, or
        // --overwrite; either way nothing of an earlier run may stay mixed in.
        if (!c->overwrite && rundir_has_run(c->checkpoint_dir, held, sizeof held))
            return CX_FAIL(CX_EARG, "--checkpoint-dir %s holds the checkpoints of a run (%s)%s%s%s; choose another "
                           "--checkpoint-dir, or pass --overwrite to replace that run", c->checkpoint_dir, held,
                           c->resume_from ? " and " : "", c->resume_from ? c->resume_from : "",
                           c->resume_from ? " has no training state to continue it" : "");
        CX_TRY(rundir_clear(&T->rd));
    } else {
        if (rundir_same(rdir, c->checkpoint_dir)) CX_TRY(rundir_truncate_log(&T->rd, T->ts.log_bytes));
        rundir_tidy(&T->rd, T->ts.token);
    }
    CX_TRY(trainer_setup_routes(T));
    char lp[4200];
    snprintf(lp, sizeof lp, "%s/train_log.jsonl", c->checkpoint_dir);
    if ((st = open_append(lp, &T->log))) { cx_error_context("--checkpoint-dir %s", c->checkpoint_dir); return st; }
    if (T->exact_resume) CX_TRY(reconcile_best(T));
    T->progress = c->progress >= 0 ? c->progress : isatty(STDOUT_FILENO);
    say("model: %s %s on %s, %lld parameters; %dx%d input\n", T->model.cfg.sparse ? "sparse" : "dense",
           T->model.cfg.sparse ? "CamoXpertSparseMoE" : "CamoXpertCOD", T->model.cfg.backbone,
           (long long)params_count(&T->model.pt, PF_BUFFER), c->img_size, c->img_size);
    log_run_start(T);
    return CX_OK;
}

static void trainer_free(Trainer *T) {
    if (T->log) fclose(T->log);
    rundir_close(&T->rd);
    for (int i = 0; T->gt && i < T->va.n; i++) image_free(&T->gt[i]);
    free(T->gt);
    free(T->meta_json);
    free(T->frozen);
    free(T->rs.cat_images);
    free(T->rs.cat_units);
    free(T->rs.cat_chosen);
    train_step_free(&T->step);
    if (T->c->use_ema && T->ema.shadow) ema_free(&T->ema);
    if (T->opt.steps) adamw_free(&T->opt);
    model_close(&T->model);
    runtime_free(&T->rt);
    dataset_free(&T->tr);
    dataset_free(&T->va);
    dataset_free(&T->all);
}

// Who this process is (train/dist.h: torchrun, Slurm, Open MPI, `train --gpus`, or one
// process), its device (rank i on GPU LOCAL_RANK), the rendezvous (a port in use or a
// missing rank is a clear error before any work) and the communicator.
static cx_status sync_sum_store(void *arg, double *v, int n) { return dist_sum((DistStore *)arg, v, n); }

static cx_status dist_start(Trainer *T) {
    const TrainConfig *c = T->c;
    CX_TRY(dist_env_read(&T->de));
    T->rank = T->de.rank, T->world = T->de.world;
    if (T->rank != 0) say_fp = NULL;   // rank 0 prints; the others speak only of errors
    const char *dev = c->device ? c->device : "auto";
    char mine[32];
    // A launcher that gives each rank one GPU of its own (Slurm --gpus-per-task) leaves it GPU 0.
    const char *vis = getenv("CUDA_VISIBLE_DEVICES");
    const int gpu_of_rank = vis && *vis && !strchr(vis, ',') ? 0 : T->de.local_rank;
    if (T->world > 1 && T->de.local_world > 1 && !strncmp(dev, "cuda:", 5) && gpu_of_rank != 0)
        return CX_FAIL(CX_EARG, "--device %s with %d ranks on this machine (%s): every rank would use the same GPU; "
                       "use --device cuda (rank i takes GPU LOCAL_RANK) or give each rank one CUDA_VISIBLE_DEVICES", dev,
                       T->de.local_world, T->de.source);
    if (T->world > 1 && !strcmp(dev, "cuda")) {
        snprintf(mine, sizeof mine, "cuda:%d", gpu_of_rank);
        dev = mine;
    }
    if (T->world > 1) {
        say("data parallel: %d ranks (%s), rendezvous at %s:%d\n", T->world,
            getenv("CAMOXPERT_LAUNCHED") ? "camoxpert train --gpus/--procs" : T->de.source, T->de.master_addr,
            T->de.master_port);
        CX_TRY(dist_store_open(&T->store, &T->de, DIST_TIMEOUT_S));
    } else {
        T->store.rank = 0, T->store.world = 1;
    }
    CX_TRY(runtime_init(&T->rt, dev, c->precision, 1, 1));
    if (T->world > 1 && T->rt.device == DEV_CUDA && !strcmp(dev, "auto") && T->rt.gpu != gpu_of_rank) {
        runtime_free(&T->rt);   // auto found a GPU: this rank's is LOCAL_RANK's
        snprintf(mine, sizeof mine, "cuda:%d", gpu_of_rank);
        CX_TRY(runtime_init(&T->rt, mine, c->precision, 1, 1));
    }
    if (c->sync_bn && T->world > 1) {   // BatchNorm over the global batch: its sums through the rendezvous
        T->rt.ctx.sync_sum = sync_sum_store;
        T->rt.ctx.sync_arg = &T->store;
        T->rt.ctx.sync_rank = T->rank, T->rt.ctx.sync_world = T->world;
    } else if (c->sync_bn) {
        say("note: --sync-bn with one process: BatchNorm sees the whole batch anyway\n");
    }
    CX_TRY(comm_open(&T->comm, &T->store, &T->rt.ctx.op, T->rt.device, T->rt.gpu));
    T->comm.stop = &stop_requested;   // a survivor told to stop does not wait out the 60 s deadline
    return CX_OK;
}

cx_status trainer_run(const TrainConfig *c, TrainResult *r) {
    memset(r, 0, sizeof *r);
    r->best_sm = -1;
    stop_requested = 0;
    say_fp = c->quiet ? NULL : stdout;
    Trainer T;
    memset(&T, 0, sizeof T);
    T.rd.lock_fd = -1;
    T.store.fd = -1;
    T.c = c;
    T.world = 1;
    cx_status st = dist_start(&T);
    if (!st) {
        say("device: %s%s\n", T.rt.desc, T.world > 1 ? " (rank 0)" : "");
        st = trainer_setup(&T);
    }
    // Every rank set up, or none trains (the failing rank's own message says why).
    int any_failed = 0;
    int joined = T.store.fd >= 0 || T.store.peer;   // the rendezvous is open
    if (T.world > 1 && joined && dist_any(&T.store, st != CX_OK, &any_failed) == CX_OK && any_failed && !st)
        st = CX_FAIL(CX_EIO, "rank %d: another rank failed to set up (its output says why)", T.rank);
    const int s2_start = c->stage1_epochs;
    int first_epoch = 1;
    while (!st && T.ts.epoch < c->epochs) {
        int stage = T.ts.epoch < s2_start ? 1 : 2;
        if (stage == 2 && T.ts.stage == 1) {
            // Entering stage 2: a fresh optimizer and schedule, as the reference builds them.
            adamw_reset(&T.opt);
            T.ts.stage = 2;
            T.ts.stage_step = 0;
            say("stage 2: training everything%s, batch %d, lr %g\n",
                   c->progressive_unfreeze ? " (backbone stages unfrozen progressively)" : "",
                   c->stage2_batch_size ? c->stage2_batch_size : c->batch_size, c->stage2_lr);
        } else if (first_epoch) {
            say("stage %d: %s, batch %d, lr %g\n", stage, stage == 1 ? "backbone frozen" : "training everything",
                   stage == 1 ? c->batch_size : (c->stage2_batch_size ? c->stage2_batch_size : c->batch_size),
                   stage == 1 ? c->lr : c->stage2_lr);
        }
        first_epoch = 0;
        int stage_begin = stage == 1 ? 0 : s2_start, stage_end = stage == 1 ? s2_start : c->epochs;
        int batch = stage == 1 ? c->batch_size : (c->stage2_batch_size ? c->stage2_batch_size : c->batch_size);
        set_freezing(&T, stage, T.ts.epoch - stage_begin, stage_end - stage_begin);
        LoaderConfig lc = loader_config_default();
        lc.batch_size = batch, lc.size = c->img_size, lc.workers = c->num_workers, lc.seed = T.ts.seed;
        lc.shuffle = 1, lc.augment = 1, lc.drop_last = T.tr.n >= batch * T.world, lc.cache = c->cache;
        lc.rank = T.rank, lc.world = T.world;
        // One loader per epoch keeps the cursor simple; its workers prefetch the epoch.
        Loader *L;
        int64_t start = T.ts.batch_in_epoch;
        if (T.resumed_world && T.ts.batch_in_epoch > 0 && T.ts.samples_in_epoch >= 0 &&
            T.ts.samples_in_epoch != T.ts.batch_in_epoch * batch * T.world) {
            // Resumed on another number of ranks (or batch size): the cursor in global samples, re-sharded.
            int64_t gb = (int64_t)batch * T.world;
            // this world's steps per epoch (loader_steps_per_epoch's rule): the cursor stays inside the epoch
            int64_t m = (T.tr.n + T.world - 1) / T.world, spe = lc.drop_last ? m / batch : (m + batch - 1) / batch;
            start = T.ts.samples_in_epoch / gb;
            if (start >= spe) start = spe - 1;
            if (T.ts.samples_in_epoch != start * gb && T.rank == 0)
                log_warn("resuming %lld samples into epoch %d on %d ranks x batch %d (global batches of %lld): continuing "
                         "from sample %lld, so %lld samples are seen again", (long long)T.ts.samples_in_epoch,
                         T.ts.epoch + 1, T.world, batch, (long long)gb, (long long)(start * gb),
                         (long long)(T.ts.samples_in_epoch - start * gb));
            T.ts.batch_in_epoch = start;
        }
        if ((st = loader_open(&L, &T.tr, &lc, T.ts.epoch, start, T.ts.epoch + 1))) break;
        int64_t nb = loader_steps_per_epoch(L);
        LrSchedule sched = { .kind = c->scheduler, .base_lr = stage == 1 ? c->lr : c->stage2_lr, .min_lr = c->min_lr,
                             .epochs = stage_end - stage_begin,
                             .steps_per_epoch = (nb + c->accumulation_steps - 1) / c->accumulation_steps,
                             .warmup_epochs = c->warmup_epochs, .t_mult = c->t_mult };
        if (T.resumed_world && T.resumed_world != T.world) {
            // The schedule's position in the stage, counted in this run's steps per epoch.
            T.ts.stage_step = (int64_t)(T.ts.epoch - stage_begin) * sched.steps_per_epoch + start / c->accumulation_steps;
            say("resumed a run of %d rank%s on %d: epoch %d continues at batch %lld of %lld, schedule step %lld\n",
                T.resumed_world, T.resumed_world == 1 ? "" : "s", T.world, T.ts.epoch + 1, (long long)start, (long long)nb, (long long)T.ts.stage_step);
        }
        T.resumed_world = 0;
        route_stats_reset(&T.rs);
        T.epoch_loss_sum = 0, T.epoch_loss_n = 0;
        double t0 = cx_time_s();
        int stop = 0;
        st = train_epoch(&T, L, &sched, stage, &stop);
        loader_close(L);
        if (st) break;
        if (stop && T.ts.batch_in_epoch < nb) {
            st = save_last(&T);
            if (!st) {
                say("stopped at step %lld (epoch %d, batch %lld/%lld); saved %s — continue with --resume-from %s\n",
                       (long long)T.ts.global_step, T.ts.epoch + 1, (long long)T.ts.batch_in_epoch, (long long)nb,
                       T.last_ckpt, T.last_ckpt);
                r->interrupted = 1;
            }
            break;
        }
        double train_s = cx_time_s() - t0;
        double eloss = T.epoch_loss_n ? T.epoch_loss_sum / T.epoch_loss_n : NAN;
        if ((st = route_stats_reduce(&T))) break;
        if (r->epochs == 0) r->first_loss = eloss;
        r->last_loss = eloss;
        T.ts.epoch++;
        T.ts.batch_in_epoch = 0;
        T.ts.samples_in_epoch = 0;
        r->epochs++;
        int new_best = 0;
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "type", "epoch");
        cJSON_AddNumberToObject(j, "epoch", T.ts.epoch);
        cJSON_AddNumberToObject(j, "stage", stage);
        cJSON_AddNumberToObject(j, "step", (double)T.ts.global_step);
        cJSON_AddNumberToObject(j, "loss", eloss);
        cJSON_AddNumberToObject(j, "seconds", train_s);
        say("epoch %d/%d (stage %d): loss %.4f, %.1f s\n", T.ts.epoch, c->epochs, stage, eloss, train_s);
        if (T.va.n > 0 && (T.ts.epoch % c->val_every == 0 || T.ts.epoch == c->epochs)) {
            ValResult vr;
            double tv = cx_time_s();
            if ((st = validate(&T, batch, &vr))) { cJSON_Delete(j); break; }
            r->last_sm = vr.s.sm, r->last_iou = vr.iou;
            int best = vr.s.sm > T.ts.best_score;
            if (best) T.ts.best_score = vr.s.sm, T.ts.best_epoch = T.ts.epoch;
            cJSON *v = cJSON_AddObjectToObject(j, "val");
            cJSON_AddNumberToObject(v, "images", vr.n);
            cJSON_AddNumberToObject(v, "Smeasure", vr.s.sm);
            cJSON_AddNumberToObject(v, "wFmeasure", vr.s.wfm);
            cJSON_AddNumberToObject(v, "MAE", vr.s.mae);
            cJSON_AddNumberToObject(v, "adpEm", vr.s.adp_em);
            cJSON_AddNumberToObject(v, "meanEm", vr.s.mean_em);
            cJSON_AddNumberToObject(v, "maxEm", vr.s.max_em);
            cJSON_AddNumberToObject(v, "adpFm", vr.s.adp_fm);
            cJSON_AddNumberToObject(v, "meanFm", vr.s.mean_fm);
            cJSON_AddNumberToObject(v, "maxFm", vr.s.max_fm);
            cJSON_AddNumberToObject(v, "IoU", vr.iou);
            cJSON_AddBoolToObject(v, "best", best);
            say("  validation (%d images, %.1f s): Sα %.4f  IoU %.4f  wFβ %.4f  MAE %.4f  meanEφ %.4f  maxFβ %.4f%s\n",
                   vr.n, cx_time_s() - tv, vr.s.sm, vr.iou, vr.s.wfm, vr.s.mae, vr.s.mean_em, vr.s.max_fm,
                   best ? "  (best)" : "");
            new_best = best;
        }
        if (T.model.cfg.sparse && T.rs.images) {
            cJSON_AddItemToObject(j, "routing", route_stats_json(&T.rs, &T.all));
            route_stats_print(&T.rs, &T.all);
        }
        log_line(&T, j);
        // last first (its state records the new best score), then best: a kill between
        // the two is mended at resume from last's weights (reconcile_best).
        if ((st = save_last(&T))) break;
        if (new_best && T.rank == 0) {
            int saved = 0;
            if (c->use_ema) ema_swap(&T.ema, &T.model.pt);   // the weights validated: the EMA's when on
            st = checkpoint_save_best(c->checkpoint_dir, &T.model.pt, T.meta_json, T.ts.best_score, T.ts.best_epoch, &saved);
            if (c->use_ema) ema_swap(&T.ema, &T.model.pt);
            if (st) break;
        }
        if (c->epoch_done && T.rank == 0) c->epoch_done(c->epoch_done_arg);
        if (stop) {
            say("stopped after epoch %d; saved %s — continue with --resume-from %s\n", T.ts.epoch, T.last_ckpt,
                   T.last_ckpt);
            r->interrupted = 1;
            break;
        }
    }
    // A data file that broke mid-run: what was trained since the last checkpoint is saved
    // before the error is reported (the weights are good; only the data is not).
    if (st && T.data_failed && T.ts.global_step > T.saved_step && T.log) {
        char err[2048];
        snprintf(err, sizeof err, "%s", cx_errmsg());
        int64_t since = T.ts.global_step - T.saved_step;
        cx_status ss = save_last(&T);
        if (!ss)
            st = CX_FAIL(st, "%s — the %lld steps trained since the previous checkpoint are saved in %s (step %lld); fix or "
                         "remove the file (train --skip-bad leaves out files that are bad at the start) and continue with "
                         "--resume-from %s", err, (long long)since, T.last_ckpt, (long long)T.ts.global_step, T.last_ckpt);
        else
            st = CX_FAIL(st, "%s — and saving the steps trained since the previous checkpoint failed too: %s", err, cx_errmsg());
    }
    r->steps = T.ts.global_step;
    r->best_sm = T.ts.best_score;
    r->best_epoch = T.ts.best_epoch;
    log_run_end(&T, st, r);
    if (!st && !r->interrupted)
        say("done: %d epochs, %lld steps; best validation Sα %.4f at epoch %d; checkpoints in %s (best.safetensors, "
               "last.safetensors), log %s/train_log.jsonl\n", T.ts.epoch, (long long)T.ts.global_step, T.ts.best_score,
               T.ts.best_epoch, c->checkpoint_dir, c->checkpoint_dir);
    trainer_free(&T);
    comm_close(&T.comm);
    dist_store_close(&T.store);
    return st;
}
