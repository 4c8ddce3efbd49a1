// train_log.c — see train_log.h.
#include "train/train_log.h"
#include <string.h>
#include <time.h>
#include <unistd.h>

void train_log_write(FILE *log, cJSON *j) {
    if (!log) { cJSON_Delete(j); return; }
    char *s = cJSON_PrintUnformatted(j);
    fprintf(log, "%s\n", s);
    fflush(log);
    cJSON_free(s);
    cJSON_Delete(j);
}

static void add_time(cJSON *j) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    char iso[32];
    strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%SZ", &tm);
    cJSON_AddStringToObject(j, "time", iso);
    cJSON_AddNumberToObject(j, "unix", (double)now.tv_sec + now.tv_nsec * 1e-9);
}

void train_log_run_start(FILE *log, const TrainRunFacts *f) {
    if (!log) return;
    const TrainConfig *c = f->c;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", "run");
    add_time(j);
    if (c->command_line) cJSON_AddStringToObject(j, "command", c->command_line);
    char cwd[4096];
    if (getcwd(cwd, sizeof cwd)) cJSON_AddStringToObject(j, "cwd", cwd);
    // Where the run computes: "cpu" or "cuda:N", the arithmetic (bf16: activations on a GPU, the
    // convolutions and matmuls on a CPU), and the device in words (the first line the run printed)
    char dev[32];
    if (f->rt->device == DEV_CUDA) snprintf(dev, sizeof dev, "cuda:%d", f->rt->gpu);
    else snprintf(dev, sizeof dev, "cpu");
    cJSON_AddStringToObject(j, "device", dev);
    cJSON_AddStringToObject(j, "precision", f->rt->bf16 ? "bf16" : "fp32");
    cJSON_AddStringToObject(j, "device_desc", f->rt->desc);
    cJSON_AddNumberToObject(j, "threads", cx_threads_get());
    cJSON_AddNumberToObject(j, "world_size", f->world);
    if (f->world > 1) cJSON_AddStringToObject(j, "launcher", f->launcher);
    cJSON_AddItemToObject(j, "config", cJSON_Parse(f->config_json));
    cJSON_AddNumberToObject(j, "parameters", (double)f->parameters);
    cJSON_AddStringToObject(j, "dataset", c->dataset_path);
    cJSON_AddNumberToObject(j, "train_images", f->train_images);
    cJSON_AddNumberToObject(j, "val_images", f->val_images);
    cJSON_AddNumberToObject(j, "val_fraction", c->val_fraction);
    if (f->val_from_test) cJSON_AddStringToObject(j, "val_from_test", f->val_from_test);
    cJSON_AddNumberToObject(j, "seed", (double)f->seed);
    cJSON_AddNumberToObject(j, "img_size", c->img_size);
    cJSON_AddNumberToObject(j, "epochs", c->epochs);
    cJSON_AddNumberToObject(j, "stage1_epochs", c->stage1_epochs);
    if (c->resume_from) cJSON_AddStringToObject(j, "resumed_from", c->resume_from);
    cJSON_AddNumberToObject(j, "start_step", (double)f->start_step);
    cJSON_AddNumberToObject(j, "start_epoch", f->start_epoch);
    train_log_write(log, j);
}

void train_log_run_end(FILE *log, cx_status st, int interrupted, const TrainState *ts) {
    if (!log) return;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", "end");
    add_time(j);
    cJSON_AddStringToObject(j, "status", st ? "failed" : interrupted ? "stopped" : "done");
    if (st) {
        cJSON_AddStringToObject(j, "error", cx_errmsg());
        cJSON_AddBoolToObject(j, "non_finite", st == CX_ENUMERIC);
    }
    cJSON_AddNumberToObject(j, "step", (double)ts->global_step);
    cJSON_AddNumberToObject(j, "epoch", ts->epoch);
    cJSON_AddNumberToObject(j, "best_epoch", ts->best_epoch);
    cJSON_AddNumberToObject(j, "best_Smeasure", ts->best_score);
    train_log_write(log, j);
}

void train_log_step(FILE *log, int64_t step, int stage, int epoch, int64_t batch, double lr, const CamoLoss *L,
                    double grad_norm, double images_per_s) {
    if (!log) return;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", "step");
    cJSON_AddNumberToObject(j, "step", (double)step);
    cJSON_AddNumberToObject(j, "stage", stage);
    cJSON_AddNumberToObject(j, "epoch", epoch);
    cJSON_AddNumberToObject(j, "batch", (double)batch);
    cJSON_AddNumberToObject(j, "lr", lr);
    cJSON_AddNumberToObject(j, "loss", L->total);
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
    cJSON_AddNumberToObject(j, "grad_norm", grad_norm);
    cJSON_AddNumberToObject(j, "images_per_s", images_per_s);
    train_log_write(log, j);
}

cJSON *train_log_epoch(int epoch, int stage, int64_t step, double loss, double seconds) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", "epoch");
    cJSON_AddNumberToObject(j, "epoch", epoch);
    cJSON_AddNumberToObject(j, "stage", stage);
    cJSON_AddNumberToObject(j, "step", (double)step);
    cJSON_AddNumberToObject(j, "loss", loss);
    cJSON_AddNumberToObject(j, "seconds", seconds);
    return j;
}

void train_log_add_val(cJSON *epoch, const ValResult *vr, int best) {
    cJSON *v = cJSON_AddObjectToObject(epoch, "val");
    cJSON_AddNumberToObject(v, "images", vr->n);
    cJSON_AddNumberToObject(v, "Smeasure", vr->s.sm);
    cJSON_AddNumberToObject(v, "wFmeasure", vr->s.wfm);
    cJSON_AddNumberToObject(v, "MAE", vr->s.mae);
    cJSON_AddNumberToObject(v, "adpEm", vr->s.adp_em);
    cJSON_AddNumberToObject(v, "meanEm", vr->s.mean_em);
    cJSON_AddNumberToObject(v, "maxEm", vr->s.max_em);
    cJSON_AddNumberToObject(v, "adpFm", vr->s.adp_fm);
    cJSON_AddNumberToObject(v, "meanFm", vr->s.mean_fm);
    cJSON_AddNumberToObject(v, "maxFm", vr->s.max_fm);
    cJSON_AddNumberToObject(v, "IoU", vr->iou);
    cJSON_AddBoolToObject(v, "best", best);
}

// h:mm:ss, or m:ss under an hour; "?" when unknown.
static void fmt_time(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 1e7) { snprintf(buf, n, "?"); return; }
    int t = (int)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%d:%02d", t / 60, t % 60);
}

static int bar_open;   // a bar drawn in place, its line not ended yet

void train_progress_end(FILE *out) {
    if (out && bar_open) fputc('\n', out), fflush(out);
    bar_open = 0;
}

void train_progress(FILE *out, int bar, int epoch, int epochs, int64_t batch, int64_t nb, double images_per_s,
                    double loss, double lr, double eta_s, double run_eta_s) {
    if (!out) return;
    char eta[64], run[32];
    fmt_time(eta, sizeof eta, eta_s);
    if (epoch < epochs && run_eta_s >= 0) {   // the run's too, beyond this epoch
        fmt_time(run, sizeof run, run_eta_s);
        snprintf(eta + strlen(eta), sizeof eta - strlen(eta), ", run %s", run);
    }
    bar_open = bar;
    if (bar) {
        enum { WIDTH = 24 };
        int fill = (int)(WIDTH * batch / nb);
        char b[WIDTH + 1];
        for (int k = 0; k < WIDTH; k++) b[k] = k < fill ? '#' : '.';
        b[WIDTH] = 0;
        fprintf(out, "\r  epoch %d/%d [%s] %lld/%lld  %.1f img/s  loss %.4f  ETA %s   ", epoch, epochs, b,
                (long long)batch, (long long)nb, images_per_s, loss, eta);
    } else {
        fprintf(out, "  epoch %d/%d batch %lld/%lld  %.1f img/s  loss %.4f  lr %.3g  ETA %s\n", epoch, epochs,
                (long long)batch, (long long)nb, images_per_s, loss, lr, eta);
    }
    fflush(out);
}
