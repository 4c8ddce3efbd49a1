// checkpoint.c — see checkpoint.h.
#include "checkpoint.h"
#include "core/finite.h"
#include "nn/weights.h"
#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

// NAME.state.<token as 16 hex digits>.safetensors beside NAME.safetensors; token 0:
// the name earlier versions used (NAME.state.safetensors).
void checkpoint_state_path(const char *weights_path, uint64_t token, char *out, size_t n) {
    size_t L = strlen(weights_path);
    const char *ext = ".safetensors";
    size_t le = strlen(ext);
    int base = L > le && !strcmp(weights_path + L - le, ext) ? (int)(L - le) : (int)L;
    if (token) snprintf(out, n, "%.*s.state.%016" PRIx64 ".safetensors", base, weights_path, token);
    else snprintf(out, n, "%.*s.state.safetensors", base, weights_path);
}

// A token nobody else has: the kernel's randomness, else time, pid and a counter.
static uint64_t new_token(void) {
    uint64_t t = 0;
    if (getrandom(&t, sizeof t, 0) != (ssize_t)sizeof t || !t) {
        static uint64_t saves;
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        t = rng_hash64((uint64_t)now.tv_nsec ^ ((uint64_t)now.tv_sec << 30) ^ ((uint64_t)getpid() << 20) ^ ++saves);
    }
    return t ? t : 1;
}

int checkpoint_tidy(const char *dir, const char *name, uint64_t keep, int legacy) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    char prefix[300];
    snprintf(prefix, sizeof prefix, "%s.state.", name);
    size_t lp = strlen(prefix);
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *s = e->d_name;
        if (strncmp(s, prefix, lp)) continue;
        char p[4400];
        snprintf(p, sizeof p, "%s/%s", dir, s);
        uint64_t tok = 0;
        int hex = strlen(s) == lp + 16 + 12 && !strcmp(s + lp + 16, ".safetensors") &&
                  sscanf(s + lp, "%16" SCNx64, &tok) == 1;
        int old_name = !strcmp(s + lp, "safetensors");
        if ((hex && tok != keep) || (old_name && legacy)) removed += unlink(p) == 0;
    }
    closedir(d);
    return removed;
}

static void meta_i64(StWriter *w, const char *k, int64_t v) { char b[32]; snprintf(b, sizeof b, "%" PRId64, v); st_writer_meta(w, k, b); }
static void meta_u64(StWriter *w, const char *k, uint64_t v) { char b[32]; snprintf(b, sizeof b, "%" PRIu64, v); st_writer_meta(w, k, b); }
static void meta_f64(StWriter *w, const char *k, double v) { char b[40]; snprintf(b, sizeof b, "%.17g", v); st_writer_meta(w, k, b); }

// The optimizer moments and the EMA shadow: CX_ENUMERIC naming the first non-finite one.
static cx_status state_check_finite(const ParamTable *pt, const AdamW *opt, const Ema *ema, const char *what) {
    struct { const char *name; Tensor t; } s[3];
    int n = 0;
    if (opt && opt->host_m) {   // the host copies (synced by the caller)
        s[n].name = "adamw.m", s[n++].t = tensor_view(opt->host_m, DT_F32, 1, &pt->numel);
        s[n].name = "adamw.v", s[n++].t = tensor_view(opt->host_v, DT_F32, 1, &pt->numel);
    }
    if (ema && ema->host) s[n].name = "ema.shadow", s[n++].t = tensor_view(ema->host, ema->dtype, 1, &pt->numel);
    for (int k = 0; k < n; k++) {
        int64_t bad = tensor_first_nonfinite(&s[k].t);
        if (bad >= 0)
            return CX_FAIL(CX_ENUMERIC, "%s: %s is not finite (%g at element %lld)", what, s[k].name,
                           tensor_get(&s[k].t, bad), (long long)bad);
    }
    return CX_OK;
}

cx_status checkpoint_save(const char *dir, const char *name, const ParamTable *pt, const char *config_json,
                          TrainState *ts, AdamW *opt, Ema *ema) {
    char wpath[4096], spath[4200];
    snprintf(wpath, sizeof wpath, "%s/%s.safetensors", dir, name);
    // Non-finite numbers never enter a checkpoint: the previous one stays the last good one.
    char what[4200];
    snprintf(what, sizeof what, "not saving %s", wpath);
    params_sync_host(pt);   // GPU tables, moments and EMA: into their host copies
    if (opt) adamw_sync_host(opt);
    if (ema) ema_sync_host(ema);
    CX_TRY(params_check_finite(pt, what));
    CX_TRY(state_check_finite(pt, opt, ema, what));
    CX_TRY(io_make_dirs(dir));
    // The commit protocol: the state goes to a file named by a new token, then the
    // weights (whose metadata names the token) replace NAME.safetensors in one rename —
    // the commit point — and only then are older states removed. At every moment
    // NAME.safetensors names a state file that exists, so a kill anywhere leaves the
    // previous checkpoint or the new one, whole.
    if (ts) ts->token = new_token();
    if (ts) checkpoint_state_path(wpath, ts->token, spath, sizeof spath);
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
        meta_i64(&w, "samples_in_epoch", ts->samples_in_epoch);
        meta_i64(&w, "world", ts->world > 0 ? ts->world : 1);
        meta_f64(&w, "best_score", ts->best_score);
        meta_i64(&w, "best_epoch", ts->best_epoch);
        meta_u64(&w, "seed", ts->seed);
        meta_u64(&w, "token", ts->token);
        meta_i64(&w, "log_bytes", ts->log_bytes);
        if (opt) {
            Tensor m = tensor_view(opt->host_m, DT_F32, 1, &pt->numel), v = tensor_view(opt->host_v, DT_F32, 1, &pt->numel);
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
            Tensor e = tensor_view(ema->host, ema->dtype, 1, &pt->numel);
            st_writer_add(&w, "ema.shadow", &e);
            meta_f64(&w, "ema_decay", ema->decay);
        }
        st = st_writer_save(&w, spath);
        st_writer_free(&w);
    }
    if (!st) {
        char tok[32];
        snprintf(tok, sizeof tok, "%" PRIu64, ts ? ts->token : 0);
        const char *const meta[] = { "camoxpert_state_token", tok, NULL };
        st = weights_save(pt, config_json, ts ? meta : NULL, wpath);
    }
    if (!st && ts) {
        checkpoint_tidy(dir, name, ts->token, 1);
        io_crash_point("checkpoint: older states removed");
    }
    if (st) cx_error_context("saving checkpoint %s", wpath);
    return st;
}

// A number of the state's metadata, within [lo, hi] and (integer) a whole number: a state
// file is trusted by the resume, so what cannot be (stage 3, a NaN best score, a cursor
// of 10^18 batches, a negative step) is an error naming the key, not a run that goes wrong.
static cx_status meta_in(const StFile *f, const char *k, double lo, double hi, int integer, double *out) {
    const char *v = st_meta(f, k);
    if (!v) return CX_FAIL(CX_EFORMAT, "%s: training state lacks '%s' (written by another program?)", f->path, k);
    char *end;
    *out = strtod(v, &end);
    if (end == v || *end || !isfinite(*out) || *out < lo || *out > hi || (integer && *out != floor(*out)))
        return CX_FAIL(CX_EFORMAT, "%s: training state '%s' = '%s' cannot be (%s from %.17g to %.17g): the file is "
                       "damaged or was edited; resume from an earlier checkpoint", f->path, k, v,
                       integer ? "a whole number" : "a number", lo, hi);
    return CX_OK;
}

cx_status checkpoint_load_state(const char *weights_path, const ParamTable *pt, TrainState *ts, AdamW *opt, Ema *ema,
                                int *has_state) {
    if (has_state) *has_state = 0;
    uint64_t token;
    CX_TRY(checkpoint_read_token(weights_path, &token));
    cx_status st = CX_OK;
    // The state this weights file names; files written before the token was in the
    // name are accepted when their token matches.
    if (!token) return CX_OK;   // weights only (best.safetensors, a PyTorch file)
    char spath[4200];
    checkpoint_state_path(weights_path, token, spath, sizeof spath);
    if (!io_path_exists(spath)) {
        checkpoint_state_path(weights_path, 0, spath, sizeof spath);
        char *tv = NULL;
        int match = io_path_exists(spath) && !st_read_meta(spath, "token", &tv) && tv && strtoull(tv, NULL, 10) == token;
        free(tv);
        if (!match) {
            checkpoint_state_path(weights_path, token, spath, sizeof spath);
            log_warn("%s names its training state %s, which is missing (deleted or not copied?): only the weights "
                     "are loaded", weights_path, spath);
            return CX_OK;
        }
    }
    StFile f;
    CX_TRY(st_open(&f, spath));
    double v = 0;
    const char *tv = st_meta(&f, "token");
    if (!tv || strtoull(tv, NULL, 10) != token) {   // a file renamed by hand
        st = CX_FAIL(CX_EFORMAT, "%s is not the training state of %s (its token differs); resume from the weights "
                     "file it belongs to", spath, weights_path);
        goto done;
    }
    const char *ver = st_meta(&f, "version"), *fmt = st_meta(&f, "format");
    if (!fmt || strcmp(fmt, "camoxpert-train-state") || !ver || strcmp(ver, "1")) {
        st = CX_FAIL(CX_EFORMAT, "%s: a training state of format '%s' version '%s'; this camoxpert reads "
                     "camoxpert-train-state version 1 (a newer camoxpert wrote it, or the file is damaged)", spath,
                     fmt ? fmt : "?", ver ? ver : "?");
        goto done;
    }
#define GET(field, key, lo, hi, integer) do { \
        if ((st = meta_in(&f, key, lo, hi, integer, &v))) goto done; \
        ts->field = (__typeof__(ts->field))v; \
    } while (0)
    GET(stage, "stage", 1, 2, 1);
    GET(epoch, "epoch", 0, 1e7, 1);
    GET(global_step, "global_step", 0, 1e15, 1);
    GET(stage_step, "stage_step", 0, (double)ts->global_step, 1);
    GET(batch_in_epoch, "batch_in_epoch", 0, 1e12, 1);
    GET(best_score, "best_score", -1, 1, 0);   // a validation Sα, or -1: none yet
    GET(best_epoch, "best_epoch", 0, ts->epoch, 1);
    ts->samples_in_epoch = -1, ts->world = 1, ts->log_bytes = -1;
    if (st_meta(&f, "log_bytes")) GET(log_bytes, "log_bytes", -1, 1e15, 1);
    if (st_meta(&f, "samples_in_epoch")) GET(samples_in_epoch, "samples_in_epoch", -1, 1e15, 1);
    if (st_meta(&f, "world")) GET(world, "world", 1, 65536, 1);
#undef GET
    ts->seed = strtoull(st_meta(&f, "seed") ? st_meta(&f, "seed") : "0", NULL, 10);
    ts->token = token;
    if (opt) {
        Tensor m = tensor_view(opt->host_m, DT_F32, 1, &pt->numel), vv = tensor_view(opt->host_v, DT_F32, 1, &pt->numel);
        int64_t n = pt->n;
        Tensor s = tensor_view(opt->steps, DT_I64, 1, &n);
        if ((st = st_read(&f, "adamw.m", &m)) || (st = st_read(&f, "adamw.v", &vv)) || (st = st_read(&f, "adamw.steps", &s))) {
            cx_error_context("the checkpoint's optimizer state does not fit this model");
            goto done;
        }
        adamw_sync_device(opt);
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
        Tensor e = tensor_view(ema->host, ema->dtype, 1, &pt->numel);
        if ((st = st_read(&f, "ema.shadow", &e))) goto done;
        ema_sync_device(ema);
    }
    char what[4400];
    snprintf(what, sizeof what, "%s: the training state is damaged or from a run that diverged", spath);
    if ((st = state_check_finite(pt, opt, ema && ema->shadow && st_find(&f, "ema.shadow") ? ema : NULL, what))) goto done;
    if (has_state) *has_state = 1;
done:
    st_close(&f);
    return st;
}

cx_status checkpoint_read_token(const char *weights_path, uint64_t *token) {
    char *tok = NULL;
    *token = 0;
    CX_TRY(st_read_meta(weights_path, "camoxpert_state_token", &tok));
    if (tok) *token = strtoull(tok, NULL, 10);
    free(tok);
    return CX_OK;
}

cx_status checkpoint_read_best(const char *path, double *score, int *epoch) {
    *score = -1, *epoch = 0;
    if (!io_path_exists(path)) return CX_FAIL(CX_ENOTFOUND, "%s: no such file", path);
    char *sc = NULL, *ep = NULL;
    cx_status st = st_read_meta(path, "camoxpert_best_score", &sc);
    if (!st) st = st_read_meta(path, "camoxpert_best_epoch", &ep);
    if (!st && !sc) st = CX_FAIL(CX_ENOTFOUND, "%s carries no camoxpert_best_score", path);
    if (!st) {
        char *end;
        *score = strtod(sc, &end);
        if (end == sc || !isfinite(*score)) st = CX_FAIL(CX_EFORMAT, "%s: camoxpert_best_score '%s' is not a number", path, sc);
        *epoch = ep ? atoi(ep) : 0;
    }
    free(sc);
    free(ep);
    return st;
}

cx_status checkpoint_save_best(const char *dir, const ParamTable *pt, const char *config_json, double score, int epoch,
                               int *saved) {
    *saved = 0;
    char path[4200];
    snprintf(path, sizeof path, "%s/best.safetensors", dir);
    double have;
    int have_epoch;
    // best never goes backwards, also across restarts: the score is kept with the weights.
    if (!checkpoint_read_best(path, &have, &have_epoch) && have >= score) return CX_OK;
    char what[4400];
    snprintf(what, sizeof what, "not saving %s", path);
    CX_TRY(params_check_finite(pt, what));
    char sc[40], ep[32];
    snprintf(sc, sizeof sc, "%.17g", score);
    snprintf(ep, sizeof ep, "%d", epoch);
    const char *const meta[] = { "camoxpert_best_score", sc, "camoxpert_best_epoch", ep, NULL };
    cx_status st = weights_save(pt, config_json, meta, path);
    if (st) cx_error_context("saving %s", path);
    else *saved = 1;
    return st;
}
