// checkpoint.c — see checkpoint.h.
#include "checkpoint.h"
#include "core/finite.h"
#include <inttypes.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void state_path(char *out, size_t n, const char *weights_path) {
    size_t L = strlen(weights_path);
    const char *ext = ".safetensors";
    size_t le = strlen(ext);
    if (L > le && !strcmp(weights_path + L - le, ext)) snprintf(out, n, "%.*s.state.safetensors", (int)(L - le), weights_path);
    else snprintf(out, n, "%s.state.safetensors", weights_path);
}

static void meta_i64(StWriter *w, const char *k, int64_t v) { char b[32]; snprintf(b, sizeof b, "%" PRId64, v); st_writer_meta(w, k, b); }
static void meta_u64(StWriter *w, const char *k, uint64_t v) { char b[32]; snprintf(b, sizeof b, "%" PRIu64, v); st_writer_meta(w, k, b); }
static void meta_f64(StWriter *w, const char *k, double v) { char b[40]; snprintf(b, sizeof b, "%.17g", v); st_writer_meta(w, k, b); }

// The optimizer moments and the EMA shadow: CX_ENUMERIC naming the first non-finite one.
static cx_status state_check_finite(const ParamTable *pt, const AdamW *opt, const Ema *ema, const char *what) {
    struct { const char *name; Tensor t; } s[3];
    int n = 0;
    if (opt && opt->m) {
        s[n].name = "adamw.m", s[n++].t = tensor_view(opt->m, DT_F32, 1, &pt->numel);
        s[n].name = "adamw.v", s[n++].t = tensor_view(opt->v, DT_F32, 1, &pt->numel);
    }
    if (ema && ema->shadow) s[n].name = "ema.shadow", s[n++].t = tensor_view(ema->shadow, ema->dtype, 1, &pt->numel);
    for (int k = 0; k < n; k++) {
        int64_t bad = tensor_first_nonfinite(&s[k].t);
        if (bad >= 0)
            return CX_FAIL(CX_ENUMERIC, "%s: %s is not finite (%g at element %lld)", what, s[k].name,
                           tensor_get(&s[k].t, bad), (long long)bad);
    }
    return CX_OK;
}

cx_status checkpoint_save(const char *dir, const char *name, const ParamTable *pt, const char *config_json,
                          TrainState *ts, const AdamW *opt, const Ema *ema) {
    char wpath[4096], spath[4200];
    snprintf(wpath, sizeof wpath, "%s/%s.safetensors", dir, name);
    // Non-finite numbers never enter a checkpoint: the previous one stays the last good one.
    char what[4200];
    snprintf(what, sizeof what, "not saving %s", wpath);
    CX_TRY(params_check_finite(pt, what));
    CX_TRY(state_check_finite(pt, opt, ema, what));
    CX_TRY(make_dirs(dir));
    state_path(spath, sizeof spath, wpath);
    static uint64_t saves;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (ts) ts->token = rng_hash64((uint64_t)now.tv_nsec ^ ((uint64_t)now.tv_sec << 30) ^ ((uint64_t)getpid() << 20) ^ ++saves);
    Arena tmp;
    arena_init(&tmp, "checkpoint", 1 << 16);
    cx_status st = CX_OK;
    if (ts) {
        StWriter w;
        st_writer_init(&w);
        st_writer_meta(&w, "format", "camoxpert-train-state");
        st_writer_meta(&w, "version", "1");
        meta_i64(&w, "stage", ts->stage);
        meta_i64(&w, "epoch", ts->epoch);
        meta_i64(&w, "global_step", ts->global_step);
        meta_i64(&w, "stage_step", ts->stage_step);
        meta_i64(&w, "batch_in_epoch", ts->batch_in_epoch);
        meta_f64(&w, "best_score", ts->best_score);
        meta_i64(&w, "best_epoch", ts->best_epoch);
        meta_u64(&w, "seed", ts->seed);
        meta_u64(&w, "token", ts->token);
        if (opt) {
            Tensor m = tensor_view(opt->m, DT_F32, 1, &pt->numel), v = tensor_view(opt->v, DT_F32, 1, &pt->numel);
            int64_t n = pt->n;
            Tensor s = tensor_view(opt->steps, DT_I64, 1, &n);
            st_writer_add(&w, "adamw.m", &m);
            st_writer_add(&w, "adamw.v", &v);
            st_writer_add(&w, "adamw.steps", &s);
        }
        if (ts->n_extra > 0) {
            int64_t n = ts->n_extra;
            Tensor x = tensor_view(ts->extra, DT_F64, 1, &n);
            st_writer_add(&w, "extra", &x);
        }
        if (ema) {
            Tensor e = tensor_view(ema->shadow, ema->dtype, 1, &pt->numel);
            st_writer_add(&w, "ema.shadow", &e);
            meta_f64(&w, "ema_decay", ema->decay);
        }
        st = st_writer_save(&w, spath);
        st_writer_free(&w);
    }
    if (!st) {
        StWriter w;
        st_writer_init(&w);
        st_writer_meta(&w, "format", "pt");
        if (config_json) st_writer_meta(&w, "camoxpert_config", config_json);
        if (ts) meta_u64(&w, "camoxpert_state_token", ts->token);
        params_save(pt, &w, NULL, &tmp);
        st = st_writer_save(&w, wpath);
        st_writer_free(&w);
    }
    arena_free(&tmp);
    if (st) cx_error_context("saving checkpoint %s", wpath);
    return st;
}

static cx_status meta_num(const StFile *f, const char *k, double *out) {
    const char *v = st_meta(f, k);
    if (!v) return CX_FAIL(CX_EFORMAT, "%s: training state lacks '%s' (written by another program?)", f->path, k);
    *out = strtod(v, NULL);
    return CX_OK;
}

cx_status checkpoint_load(const char *weights_path, ParamTable *pt, TrainState *ts, AdamW *opt, Ema *ema,
                          int *has_state) {
    if (has_state) *has_state = 0;
    StFile f;
    CX_TRY(st_open(&f, weights_path));
    ParamLoadOpts lo = { .file_prefix = "" };
    cx_status st = params_load(pt, &f, &lo);
    const char *tok = st_meta(&f, "camoxpert_state_token");
    uint64_t token = tok ? strtoull(tok, NULL, 10) : 0;
    st_close(&f);
    if (st || !ts) return st;
    char spath[4200];
    state_path(spath, sizeof spath, weights_path);
    if (!path_exists(spath)) return CX_OK;
    CX_TRY(st_open(&f, spath));
    double v = 0;
    const char *tv = st_meta(&f, "token");
    if (!tv || strtoull(tv, NULL, 10) != token) {
        st = CX_FAIL(CX_EFORMAT, "%s does not belong to %s (a crash between the two writes?); "
                     "resume from the other checkpoint in the directory or delete the state file to start "
                     "from these weights only", spath, weights_path);
        goto done;
    }
#define GET(field, key) do { if ((st = meta_num(&f, key, &v))) goto done; ts->field = (__typeof__(ts->field))v; } while (0)
    GET(stage, "stage");
    GET(epoch, "epoch");
    GET(global_step, "global_step");
    GET(stage_step, "stage_step");
    GET(batch_in_epoch, "batch_in_epoch");
    GET(best_score, "best_score");
    GET(best_epoch, "best_epoch");
#undef GET
    ts->seed = strtoull(st_meta(&f, "seed") ? st_meta(&f, "seed") : "0", NULL, 10);
    ts->token = token;
    if (opt) {
        Tensor m = tensor_view(opt->m, DT_F32, 1, &pt->numel), vv = tensor_view(opt->v, DT_F32, 1, &pt->numel);
        int64_t n = pt->n;
        Tensor s = tensor_view(opt->steps, DT_I64, 1, &n);
        if ((st = st_read(&f, "adamw.m", &m)) || (st = st_read(&f, "adamw.v", &vv)) || (st = st_read(&f, "adamw.steps", &s))) {
            cx_error_context("the checkpoint's optimizer state does not fit this model");
            goto done;
        }
    }
    ts->n_extra = 0;
    const StEntry *xt = st_find(&f, "extra");
    if (xt) {
        int64_t n = 1;
        for (int d = 0; d < xt->ndim; d++) n *= xt->shape[d];
        if (n > (int64_t)(sizeof ts->extra / sizeof *ts->extra)) {
            st = CX_FAIL(CX_EFORMAT, "%s: 'extra' holds %lld values (at most %d)", spath, (long long)n,
                         (int)(sizeof ts->extra / sizeof *ts->extra));
            goto done;
        }
        Tensor x = tensor_view(ts->extra, DT_F64, 1, &n);
        if ((st = st_read(&f, "extra", &x))) goto done;
        if (tensor_first_nonfinite(&x) >= 0) {
            st = CX_FAIL(CX_ENUMERIC, "%s: 'extra' (the MoE selection biases) is not finite: the training state is damaged",
                         spath);
            goto done;
        }
        ts->n_extra = (int)n;
    }
    if (ema && ema->shadow && st_find(&f, "ema.shadow")) {
        Tensor e = tensor_view(ema->shadow, ema->dtype, 1, &pt->numel);
        if ((st = st_read(&f, "ema.shadow", &e))) goto done;
    }
    char what[4400];
    snprintf(what, sizeof what, "%s: the training state is damaged or from a run that diverged", spath);
    if ((st = state_check_finite(pt, opt, ema && ema->shadow && st_find(&f, "ema.shadow") ? ema : NULL, what))) goto done;
    if (has_state) *has_state = 1;
done:
    st_close(&f);
    return st;
}

cx_status checkpoint_read_config(const char *weights_path, char **config_json) {
    *config_json = NULL;
    StFile f;
    CX_TRY(st_open(&f, weights_path));
    const char *c = st_meta(&f, "camoxpert_config");
    if (c) *config_json = cx_strdup(c);
    st_close(&f);
    return CX_OK;
}
