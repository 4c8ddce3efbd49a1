// trainer.c — see trainer.h. One Trainer holds the model (infer/open.h), its
// optimizer, EMA, the train/validation split, the log and this rank's place in the
// run; trainer_setup opens the data and the model and resumes; trainer_run walks the
// stages and epochs; train_epoch runs the optimizer steps of one epoch from the
// loader's cursor. The pieces that take plain values live beside it: the options
// (train_config.h), the process's start (rank.h), freezing and validation
// (validate.h), routing statistics (route_stats.h), the log and the progress line
// (train_log.h).
#include "trainer.h"
#include "data/loader.h"
#include "data/testsets.h"
#include "nn/weights.h"
#include "train/checkpoint.h"
#include "train/rank.h"
#include "train/route_stats.h"
#include "train/rundir.h"
#include "train/step.h"
#include "train/train_log.h"
#include "train/validate.h"
#include "nn/memory.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested;
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

// ---- the trainer ----------------------------------------------------------------------

typedef struct {
    const TrainConfig *c;
    Model model;              // the model, its table and module tree (on rt)
    AdamW opt;
    Ema ema;
    TrainState ts;
    unsigned char *frozen;    // (pt.n) progressive unfreezing
    Runtime rt;               // device, precision, arenas, the modules' context
    TrainMemPlan mem;         // the memory check's estimate and recomputation level
    TrainStep step;
    Dataset all, tr, va;
    char val_test[4400];      // the test set the validation split is drawn from (--val-from-test), "" when none
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
        train_log_step(T->log, T->ts.global_step, stage, T->ts.epoch + 1, b->step + 1, lr, &acc, norm, ips);
        // Progress: a bar redrawn in place on a terminal, a line every ~10% otherwise.
        int64_t done = b->step + 1 - first_batch, left = nb - (b->step + 1);
        double eta = done > 0 ? (now - t0) / done * left : -1;
        // The run's: this epoch's, and the epochs left at this epoch's pace (validation aside).
        double run_eta = eta >= 0 ? eta + (now - t0) / done * nb * (c->epochs - T->ts.epoch - 1) : -1;
        if (T->progress || now - tlast > 30 || last_of_epoch || (nb >= 10 && (b->step + 1) % (nb / 10) == 0)) {
            train_progress(say_fp, T->progress, T->ts.epoch + 1, c->epochs, b->step + 1, nb, ips, acc.total, lr, eta,
                           run_eta);
            if (!T->progress) tlast = now;
        }
        acc_n = 0;
        int want_stop = stop_requested || (c->max_steps > 0 && T->ts.global_step >= c->max_steps);
        if (T->world > 1 && (st = dist_any(&T->store, want_stop, &want_stop))) return st;   // one rank's Ctrl-C stops all
        if (want_stop) {
            *stop = 1;
            if (!last_of_epoch) {
                train_progress_end(say_fp);
                return CX_OK;   // mid-epoch: the caller saves the cursor
            }
        }
    }
    train_progress_end(say_fp);
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

static void trainer_setup_routes(Trainer *T) {
    const CamoXpertConfig *mc = &T->model.cfg;
    route_stats_init(&T->rs, mc->sparse ? mc->num_experts : 0, T->all.n_categories,
                     mc->sparse && mc->routing == MOE_ROUTING_SPATIAL);
}

// The model's memory before it is allocated (ModelSpec.check).
static cx_status check_memory(void *arg, const Model *m) {
    Trainer *T = arg;
    CX_TRY(train_config_check_memory(T->c, m, &T->tr, &T->va, say_fp, &T->mem));
    T->rt.ctx.recompute = T->mem.level;   // what the training forward keeps (nn/recompute.h)
    runtime_reserve(&T->rt, T->mem.model.activations, T->mem.model.scratch);
    return CX_OK;
}

// Where the validation split comes from: a test set's photos (testset_dataset_is_test) would
// let model selection — the best epoch, best.safetensors — see the test set, so its test
// scores would be optimistic: refused unless --val-from-test, then a warning and the run
// record names the set (report shows it).
static cx_status check_val_source(Trainer *T) {
    const TrainConfig *c = T->c;
    char what[4300];
    if (!(c->val_fraction > 0) || !testset_dataset_is_test(&T->all, what, sizeof what)) {
        if (!(c->val_fraction > 0) && T->rank == 0 && testset_dataset_is_test(&T->all, what, sizeof what))
            log_warn("--dataset-path holds %s: the model trains on test images, so its scores on that test set would "
                     "measure memory, not camouflage detection; point --dataset-path at a training split (Train/, "
                     "TrainDataset/)", what);
        if (c->val_from_test && T->rank == 0)
            say("note: --val-from-test: %s; nothing to accept\n", c->val_fraction > 0 ? "the validation split is not drawn "
                "from a test set" : "--val-fraction 0 holds out no validation split");
        return CX_OK;
    }
    if (!c->val_from_test)
        return CX_FAIL(CX_EARG, "the validation split (--val-fraction %g) would be drawn from %s: the best epoch "
                       "(best.safetensors) would be chosen on test images, so model selection would see the test set and "
                       "its scores there would be optimistic. Point --dataset-path at a training split (Train/, "
                       "TrainDataset/), or pass --val-from-test to accept it", c->val_fraction, what);
    snprintf(T->val_test, sizeof T->val_test, "%s", what);
    if (T->rank == 0)
        log_warn("--val-from-test: the validation split is drawn from %s: the best epoch (best.safetensors) is chosen on "
                 "test images, so its scores on that test set are optimistic and not comparable with papers'; the run's "
                 "log records it", what);
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
    if (T->rank == 0) CX_TRY(rundir_check_free(c->checkpoint_dir));   // a run writing there: said first
    if (T->rank == 0 && !c->overwrite && !resume_here && rundir_has_run(c->checkpoint_dir, held, sizeof held))
        return CX_FAIL(CX_EARG, "--checkpoint-dir %s holds the checkpoints of another run (%s); a new run there would "
                       "overwrite them and append to its log. Resume that run with --resume-from %s/last.safetensors, "
                       "choose another --checkpoint-dir, or pass --overwrite to replace it", c->checkpoint_dir, held,
                       c->checkpoint_dir);
    // Data: the training split and the held-out validation split.
    DatasetOptions dop = { .root = c->dataset_path, .split = "train", .skip_bad = c->skip_bad,
                           .include_noncam = c->include_noncam };
    cx_status st = dataset_open(&T->all, &dop);
    if (!st) st = check_val_source(T);   // before the scan, which decodes every photo
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
            say("resumed from %s: stage %d, %d epoch%s and %lld batches done, step %lld, best Sα %.4f (epoch %d)\n",
                   c->resume_from, T->ts.stage, T->ts.epoch, T->ts.epoch == 1 ? "" : "s", (long long)T->ts.batch_in_epoch,
                   (long long)T->ts.global_step, T->ts.best_score, T->ts.best_epoch);
            if (T->ts.epoch >= c->epochs)   // said, not a silent end
                say("note: the run has done %d epoch%s, and --epochs is %d: nothing is left to train; give a larger "
                    "--epochs to train on\n", T->ts.epoch, T->ts.epoch == 1 ? "" : "s", c->epochs);
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
    if (T->rank != 0) {
        trainer_setup_routes(T);
        return CX_OK;
    }
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
    trainer_setup_routes(T);
    char lp[4200];
    snprintf(lp, sizeof lp, "%s/train_log.jsonl", c->checkpoint_dir);
    if ((st = io_open_append(lp, &T->log))) { cx_error_context("--checkpoint-dir %s", c->checkpoint_dir); return st; }
    if (T->exact_resume) CX_TRY(reconcile_best(T));
    T->progress = c->progress >= 0 ? c->progress : isatty(STDOUT_FILENO);
    say("model: %s %s on %s, %lld parameters; %dx%d input\n", T->model.cfg.sparse ? "sparse" : "dense",
           T->model.cfg.sparse ? "CamoXpertSparseMoE" : "CamoXpertCOD", T->model.cfg.backbone,
           (long long)params_count(&T->model.pt, PF_BUFFER), c->img_size, c->img_size);
    train_log_run_start(T->log, &(TrainRunFacts){ .c = c, .rt = &T->rt, .world = T->world, .launcher = T->de.source,
                                                   .config_json = T->meta_json,
                                                   .parameters = params_count(&T->model.pt, PF_BUFFER),
                                                   .train_images = T->tr.n, .val_images = T->va.n, .seed = T->ts.seed,
                                                   .start_step = T->ts.global_step, .start_epoch = T->ts.epoch,
                                                   .val_from_test = T->val_test[0] ? T->val_test : NULL });
    return CX_OK;
}

static void trainer_free(Trainer *T) {
    if (T->log) fclose(T->log);
    rundir_close(&T->rd);
    for (int i = 0; T->gt && i < T->va.n; i++) image_free(&T->gt[i]);
    free(T->gt);
    free(T->meta_json);
    free(T->frozen);
    route_stats_free(&T->rs);
    train_step_free(&T->step);
    if (T->c->use_ema && T->ema.shadow) ema_free(&T->ema);
    if (T->opt.steps) adamw_free(&T->opt);
    model_close(&T->model);
    runtime_free(&T->rt);
    dataset_free(&T->tr);
    dataset_free(&T->va);
    dataset_free(&T->all);
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
    cx_status st = rank_start(&T.de, &T.store, &T.rt, &T.comm, c->device, c->precision, c->sync_bn, &stop_requested,
                              say_fp);
    T.rank = T.de.rank, T.world = T.de.world;   // (world 1 when the environment could not be read)
    if (T.world < 1) T.world = 1;
    if (T.rank != 0) say_fp = NULL;   // rank 0 prints; the others speak only of errors
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
            const int b2 = c->stage2_batch_size ? c->stage2_batch_size : c->batch_size;
            char per[64] = "";
            if (T.world > 1) snprintf(per, sizeof per, " per rank (%d in all over %d ranks)", b2 * T.world, T.world);
            say("stage 2: training everything%s, batch %d%s, lr %g\n",
                   c->progressive_unfreeze ? " (backbone stages unfrozen progressively)" : "", b2, per, c->stage2_lr);
        } else if (first_epoch) {
            const int bs = stage == 1 ? c->batch_size : (c->stage2_batch_size ? c->stage2_batch_size : c->batch_size);
            char per[64] = "";
            if (T.world > 1) snprintf(per, sizeof per, " per rank (%d in all over %d ranks)", bs * T.world, T.world);
            say("stage %d: %s, batch %d%s, lr %g\n", stage, stage == 1 ? "backbone frozen" : "training everything", bs,
                   per, stage == 1 ? c->lr : c->stage2_lr);
        }
        first_epoch = 0;
        int stage_begin = stage == 1 ? 0 : s2_start, stage_end = stage == 1 ? s2_start : c->epochs;
        int batch = stage == 1 ? c->batch_size : (c->stage2_batch_size ? c->stage2_batch_size : c->batch_size);
        train_freeze(&T.opt, T.frozen, &T.model.pt, stage, T.ts.epoch - stage_begin, stage_end - stage_begin,
                     c->progressive_unfreeze);
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
        if (T.model.cfg.sparse && (st = route_stats_reduce(&T.rs, &T.store))) break;
        if (r->epochs == 0) r->first_loss = eloss;
        r->last_loss = eloss;
        T.ts.epoch++;
        T.ts.batch_in_epoch = 0;
        T.ts.samples_in_epoch = 0;
        r->epochs++;
        int new_best = 0;
        cJSON *j = train_log_epoch(T.ts.epoch, stage, T.ts.global_step, eloss, train_s);
        say("epoch %d/%d (stage %d): loss %.4f, %.1f s\n", T.ts.epoch, c->epochs, stage, eloss, train_s);
        if (T.va.n > 0 && (T.ts.epoch % c->val_every == 0 || T.ts.epoch == c->epochs)) {
            ValResult vr;
            double tv = cx_time_s();
            st = train_validate(&T.model, c->use_ema ? &T.ema : NULL, &T.va, T.gt, batch, c, &T.store, &T.comm, &vr,
                                &T.data_failed);
            if (st) { cJSON_Delete(j); break; }
            r->last_sm = vr.s.sm, r->last_iou = vr.iou;
            int best = vr.s.sm > T.ts.best_score;
            if (best) T.ts.best_score = vr.s.sm, T.ts.best_epoch = T.ts.epoch;
            train_log_add_val(j, &vr, best);
            say("  validation (%d images, %.1f s): Sα %.4f  IoU %.4f  wFβ %.4f  MAE %.4f  meanEφ %.4f  maxFβ %.4f%s\n",
                   vr.n, cx_time_s() - tv, vr.s.sm, vr.iou, vr.s.wfm, vr.s.mae, vr.s.mean_em, vr.s.max_fm,
                   best ? "  (best)" : "");
            new_best = best;
        }
        if (T.model.cfg.sparse && T.rs.images) {
            cJSON_AddItemToObject(j, "routing", route_stats_json(&T.rs, &T.all));
            route_stats_print(&T.rs, &T.all, say_fp);
        }
        train_log_write(T.log, j);
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
    if (T.model.pt.p && r->steps > 0) {   // what the model took, beside what the memory check planned
        const double tables = (double)T.model.pt.numel * (16.0 + (c->use_ema ? 4 : 0));   // values, grads, AdamW, EMA
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        r->peak_bytes = tables + (double)(T.rt.act.peak + T.rt.scratch.peak);
        char a[32], b[32], e[32];
        say("memory: peak %s (weights, gradients, optimizer and the arenas' peaks at --recompute %s; process RSS %s); "
            "the estimate was %s\n", memory_str(r->peak_bytes, a, sizeof a), nn_recompute_name(T.mem.level),
            memory_str(ru.ru_maxrss * 1024.0, b, sizeof b), memory_str(T.mem.bytes, e, sizeof e));
    }
    train_log_run_end(T.log, st, r->interrupted, &T.ts);
    if (!st && !r->interrupted) {
        char best[64] = "no validation (--val-fraction 0)", held[128] = "";
        if (T.ts.best_score >= 0) snprintf(best, sizeof best, "best validation Sα %.4f at epoch %d", T.ts.best_score, T.ts.best_epoch);
        rundir_has_run(c->checkpoint_dir, held, sizeof held);   // what is there: no best without validation
        say("done: %d epoch%s, %lld step%s; %s; checkpoints in %s (%s), log %s/train_log.jsonl\n", T.ts.epoch,
            T.ts.epoch == 1 ? "" : "s", (long long)T.ts.global_step, T.ts.global_step == 1 ? "" : "s", best,
            c->checkpoint_dir, held[0] ? held : "none", c->checkpoint_dir);
    }
    if (st) train_progress_end(say_fp);   // the error starts a line of its own, not the progress bar's
    trainer_free(&T);
    comm_close(&T.comm);
    dist_store_close(&T.store);
    return st;
}
