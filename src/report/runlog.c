// runlog.c — see runlog.h. One pass over the lines: each record is parsed into
// RunStep / RunEpoch / RunSegment; a (re)start drops what the new attempt will
// redo, so the arrays always hold the latest attempt in step and epoch order.
#include "runlog.h"
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>

const char *const runlog_term_keys[RUNLOG_NTERMS] = { "bce", "iou", "edge", "boundary", "uncertainty",
                                                      "reverse_attention", "search", "deep", "refinement", "balance" };
const char *const runlog_val_keys[RUNLOG_NVAL] = { "Smeasure", "wFmeasure", "MAE", "adpEm", "meanEm",
                                                   "maxEm", "adpFm", "meanFm", "maxFm", "IoU" };

static void note(RunLog *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(RunLog *L, const char *fmt, ...) {
    if (L->n_notes == RUNLOG_MAX_NOTES) { L->n_notes_dropped++; return; }
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    L->notes[L->n_notes++] = cx_strdup(buf);
}

// A number field; NAN when absent or null (cJSON writes NaN and infinities as null).
static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

// A count (a step, an epoch, a stage, a number of images): an integer from 0 to max;
// NAN when absent or anything else (a step of 2^53 or 1e300 would break the page's
// arithmetic and an (int) cast alike: such a record is not taken).
#define RUNLOG_MAX_STEP 1e15
#define RUNLOG_MAX_EPOCH 1e7
static double cnt(const cJSON *o, const char *k, double max) {
    double v = num(o, k);
    return v >= 0 && v <= max && v == floor(v) ? v : NAN;
}

static void epoch_free(RunEpoch *e) {
    for (int c = 0; c < e->n_cat; c++) free(e->cat_name[c]);
    free(e->cat_name);
    free(e->cat_images);
    free(e->cat_share);
}

static RunSegment *segment_new(RunLog *L, int line, int64_t start_step, int start_epoch, cJSON *run) {
    L->seg = cx_realloc(L->seg, sizeof *L->seg * (size_t)(L->n_seg + 1));
    RunSegment *s = &L->seg[L->n_seg++];
    memset(s, 0, sizeof *s);
    s->inferred = run == NULL;
    s->line = line;
    s->start_step = start_step;
    s->start_epoch = start_epoch;
    s->run = run;
    s->unix_start = run ? num(run, "unix") : NAN;
    s->last_unix = NAN;
    return s;
}

// A (re)start at (start_step, start_epoch): the steps and epochs after it are done again.
static void drop_redone(RunLog *L, int line, int64_t start_step, int start_epoch) {
    int ns = L->n_steps, ne = L->n_epochs;
    while (ns > 0 && L->steps[ns - 1].step > start_step) ns--;
    while (ne > 0 && L->epochs[ne - 1].epoch > start_epoch) ne--;
    if (ns == L->n_steps && ne == L->n_epochs) return;
    char what[160] = "";
    if (ns < L->n_steps)
        snprintf(what, sizeof what, "steps %lld-%lld", (long long)L->steps[ns].step, (long long)L->steps[L->n_steps - 1].step);
    if (ne < L->n_epochs)
        snprintf(what + strlen(what), sizeof what - strlen(what), "%sepochs %d-%d", ns < L->n_steps ? " and " : "",
                 L->epochs[ne].epoch, L->epochs[L->n_epochs - 1].epoch);
    note(L, "line %d: the run restarts from step %lld (epoch %d), so %s were done again; the later attempt is shown",
         line, (long long)start_step, start_epoch, what);
    L->replaced_steps += L->n_steps - ns;
    L->replaced_epochs += L->n_epochs - ne;
    for (int i = ne; i < L->n_epochs; i++) epoch_free(&L->epochs[i]);
    L->n_steps = ns, L->n_epochs = ne;
}

static void parse_routing(RunEpoch *e, const cJSON *r) {
    const cJSON *scales = cJSON_GetObjectItemCaseSensitive(r, "scales"), *s;
    int S = 0;
    cJSON_ArrayForEach(s, scales) {
        if (S == RUNLOG_MAX_SCALES) break;
        const cJSON *sh = cJSON_GetObjectItemCaseSensitive(s, "share");
        const cJSON *mw = cJSON_GetObjectItemCaseSensitive(s, "mean_weight");
        const cJSON *mp = cJSON_GetObjectItemCaseSensitive(s, "mean_prob");
        int E = cJSON_GetArraySize(sh);
        if (E > RUNLOG_MAX_EXPERTS) E = RUNLOG_MAX_EXPERTS;
        if (E < 1) continue;
        if (!e->E) e->E = E;
        for (int x = 0; x < e->E; x++) {
            const cJSON *a = cJSON_GetArrayItem(sh, x), *b = cJSON_GetArrayItem(mw, x), *c = cJSON_GetArrayItem(mp, x);
            e->share[S][x] = cJSON_IsNumber(a) ? a->valuedouble : NAN;
            e->mean_weight[S][x] = cJSON_IsNumber(b) ? b->valuedouble : NAN;
            e->mean_prob[S][x] = cJSON_IsNumber(c) ? c->valuedouble : NAN;
        }
        e->balance[S] = num(s, "balance_loss");
        S++;
    }
    e->n_scales = S;
    e->has_routing = S > 0 && e->E > 0;
    if (!e->has_routing) return;
    const cJSON *cats = cJSON_GetObjectItemCaseSensitive(r, "categories"), *c;
    int nc = cJSON_GetArraySize(cats);
    if (nc < 1) return;
    e->cat_name = cx_calloc((size_t)nc, sizeof *e->cat_name);
    e->cat_images = cx_calloc((size_t)nc, sizeof *e->cat_images);
    e->cat_share = cx_malloc(sizeof *e->cat_share * (size_t)nc * (size_t)S * (size_t)e->E);
    cJSON_ArrayForEach(c, cats) {
        if (!c->string) continue;
        int k = e->n_cat++;
        e->cat_name[k] = cx_strdup(c->string);
        double im = cnt(c, "images", 1e9);
        e->cat_images[k] = isfinite(im) ? (int)im : 0;
        const cJSON *sh = cJSON_GetObjectItemCaseSensitive(c, "share");
        for (int si = 0; si < S; si++) {
            const cJSON *row = cJSON_GetArrayItem(sh, si);
            for (int x = 0; x < e->E; x++) {
                const cJSON *v = cJSON_GetArrayItem(row, x);
                e->cat_share[((size_t)k * S + si) * e->E + x] = cJSON_IsNumber(v) ? v->valuedouble : NAN;
            }
        }
    }
}

static void parse_epoch(RunEpoch *e, const cJSON *j) {
    memset(e, 0, sizeof *e);
    e->epoch = (int)cnt(j, "epoch", RUNLOG_MAX_EPOCH);
    double stage = cnt(j, "stage", 2), step = cnt(j, "step", RUNLOG_MAX_STEP);
    e->stage = isfinite(stage) ? (int)stage : 0;
    e->step = isfinite(step) ? (int64_t)step : 0;
    e->loss = num(j, "loss");
    e->seconds = num(j, "seconds");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "val");
    if (cJSON_IsObject(v)) {
        e->has_val = 1;
        for (int k = 0; k < RUNLOG_NVAL; k++) e->val[k] = num(v, runlog_val_keys[k]);
        double n = cnt(v, "images", 1e9);
        e->val_images = isfinite(n) ? (int)n : 0;
        e->best = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, "best"));
    } else {
        for (int k = 0; k < RUNLOG_NVAL; k++) e->val[k] = NAN;
    }
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "routing");
    if (cJSON_IsObject(r)) parse_routing(e, r);
}

static int blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
    return 1;
}

cx_status runlog_parse(const char *text, size_t n, const char *name, RunLog *L) {
    memset(L, 0, sizeof *L);
    L->path = cx_strdup(name);
    L->mtime = NAN;
    int cap_steps = 0, cap_epochs = 0, cur_has_step = 0;
    int64_t cur_last_step = 0;
    size_t pos = 0;
    int line = 0;
    while (pos < n) {
        const char *nl = memchr(text + pos, '\n', n - pos);
        size_t len = nl ? (size_t)(nl - (text + pos)) : n - pos;
        const char *s = text + pos;
        line++;
        pos += len + (nl != NULL);
        if (blank(s, len)) continue;
        L->lines++;
        if (!nl) {
            note(L, "line %d (%zu bytes) ends without a newline: it was cut off while being written (the run is "
                 "still going, or was killed mid-write); skipped", line, len);
            L->skipped++;
            break;
        }
        cJSON *j = cJSON_ParseWithLength(s, len);
        const cJSON *ty = j ? cJSON_GetObjectItemCaseSensitive(j, "type") : NULL;
        if (!cJSON_IsString(ty)) {
            // Nothing of it is quoted: the page is meant for sharing, and the line could be anything
            // (a log symlinked to a secret file).
            note(L, "line %d (%zu bytes) is not a log record (%s); skipped", line, len, j ? "no \"type\"" : "not JSON");
            L->skipped++;
            cJSON_Delete(j);
            continue;
        }
        const char *type = ty->valuestring;
        if (!strcmp(type, "run")) {
            double ss = cnt(j, "start_step", RUNLOG_MAX_STEP), se = cnt(j, "start_epoch", RUNLOG_MAX_EPOCH);
            int64_t start_step = isfinite(ss) ? (int64_t)ss : 0;
            int start_epoch = isfinite(se) ? (int)se : 0;
            drop_redone(L, line, start_step, start_epoch);
            segment_new(L, line, start_step, start_epoch, j);
            cur_has_step = 0;
            continue;   // the segment owns j
        }
        if (!strcmp(type, "end")) {
            if (!L->n_seg) segment_new(L, line, 0, 0, NULL);
            RunSegment *sg = &L->seg[L->n_seg - 1];
            cJSON_Delete(sg->end);
            sg->end = j;
            sg->last_unix = num(j, "unix");
            continue;
        }
        if (!strcmp(type, "step")) {
            double sv = cnt(j, "step", RUNLOG_MAX_STEP);
            if (!isfinite(sv)) {
                note(L, "line %d: a step record without a step number (an integer from 0 to 10^15); skipped", line);
                L->skipped++;
                cJSON_Delete(j);
                continue;
            }
            int64_t step = (int64_t)sv;
            if (!L->n_seg) {
                segment_new(L, line, step - 1, (int)cnt(j, "epoch", RUNLOG_MAX_EPOCH) - 1, NULL);
            } else if (cur_has_step && step <= cur_last_step) {
                note(L, "line %d: the step counter goes back from %lld to %lld without a \"run\" record; "
                     "taken as a resume from step %lld", line, (long long)cur_last_step, (long long)step,
                     (long long)(step - 1));
                int ep = (int)cnt(j, "epoch", RUNLOG_MAX_EPOCH) - 1;
                drop_redone(L, line, step - 1, ep);
                segment_new(L, line, step - 1, ep, NULL);
            }
            cur_has_step = 1, cur_last_step = step;
            if (L->n_steps == cap_steps) L->steps = cx_realloc(L->steps, sizeof *L->steps * (size_t)(cap_steps = cap_steps ? 2 * cap_steps : 1024));
            RunStep *r = &L->steps[L->n_steps++];
            r->step = step;
            double stage = cnt(j, "stage", 2), ep = cnt(j, "epoch", RUNLOG_MAX_EPOCH);
            r->stage = isfinite(stage) ? (int)stage : 0;
            r->epoch = isfinite(ep) ? (int)ep : 0;
            r->segment = L->n_seg - 1;
            r->lr = num(j, "lr");
            r->loss = num(j, "loss");
            r->grad_norm = num(j, "grad_norm");
            r->images_per_s = num(j, "images_per_s");
            for (int k = 0; k < RUNLOG_NTERMS; k++) r->term[k] = num(j, runlog_term_keys[k]);
        } else if (!strcmp(type, "epoch")) {
            if (!isfinite(cnt(j, "epoch", RUNLOG_MAX_EPOCH))) {
                note(L, "line %d: an epoch record without an epoch number (an integer from 0 to 10^7); skipped", line);
                L->skipped++;
                cJSON_Delete(j);
                continue;
            }
            double es = cnt(j, "step", RUNLOG_MAX_STEP);
            if (!L->n_seg) segment_new(L, line, isfinite(es) ? (int64_t)es : 0, (int)cnt(j, "epoch", RUNLOG_MAX_EPOCH) - 1, NULL);
            RunEpoch e;
            parse_epoch(&e, j);
            e.segment = L->n_seg - 1;
            // Records are in epoch order within an attempt; one out of order replaces its namesake.
            int at = L->n_epochs;
            while (at > 0 && L->epochs[at - 1].epoch >= e.epoch) at--;
            if (at < L->n_epochs) {
                note(L, "line %d: epoch %d is logged again; the later record replaces the earlier one", line, e.epoch);
                L->replaced_epochs += L->n_epochs - at;
                for (int i = at; i < L->n_epochs; i++) epoch_free(&L->epochs[i]);
                L->n_epochs = at;
            }
            if (L->n_epochs == cap_epochs) L->epochs = cx_realloc(L->epochs, sizeof *L->epochs * (size_t)(cap_epochs = cap_epochs ? 2 * cap_epochs : 64));
            L->epochs[L->n_epochs++] = e;
        }
        cJSON_Delete(j);
    }
    int any_run = 0;
    for (int k = 0; k < L->n_seg; k++) any_run |= L->seg[k].run != NULL;
    if (L->n_seg && !any_run)
        note(L, "the log has no \"run\" record (written before camoxpert logged them): the command, device and start "
             "time are unknown");
    if (!L->n_steps && !L->n_epochs)
        note(L, "%s holds no step or epoch record yet (%d line%s read)", name, L->lines, L->lines == 1 ? "" : "s");
    return CX_OK;
}

cx_status runlog_load(const char *path, RunLog *L) {
    memset(L, 0, sizeof *L);
    if (!io_path_exists(path))
        return CX_FAIL(CX_ENOTFOUND, "%s: no such file; a training run writes CHECKPOINT_DIR/train_log.jsonl "
                       "(give the run folder, camoxpert train --checkpoint-dir)", path);
    unsigned char *buf = NULL;
    size_t n = 0;
    CX_TRY(io_read_file(path, &buf, &n));
    cx_status st = runlog_parse((const char *)buf, n, path, L);
    free(buf);
    struct stat sb;
    if (!st && !stat(path, &sb)) L->mtime = (double)sb.st_mtim.tv_sec + sb.st_mtim.tv_nsec * 1e-9;
    return st;
}

void runlog_free(RunLog *L) {
    for (int i = 0; i < L->n_epochs; i++) epoch_free(&L->epochs[i]);
    for (int i = 0; i < L->n_seg; i++) {
        cJSON_Delete(L->seg[i].run);
        cJSON_Delete(L->seg[i].end);
    }
    for (int i = 0; i < L->n_notes; i++) free(L->notes[i]);
    free(L->steps);
    free(L->epochs);
    free(L->seg);
    free(L->path);
    memset(L, 0, sizeof *L);
}

const RunEpoch *runlog_best_epoch(const RunLog *L) {
    for (int i = L->n_epochs - 1; i >= 0; i--)
        if (L->epochs[i].has_val && L->epochs[i].best) return &L->epochs[i];
    return NULL;
}

const cJSON *runlog_run_field(const RunLog *L, const char *key, int latest) {
    for (int k = 0; k < L->n_seg; k++) {
        const RunSegment *s = &L->seg[latest ? L->n_seg - 1 - k : k];
        const cJSON *v = s->run ? cJSON_GetObjectItemCaseSensitive(s->run, key) : NULL;
        if (v) return v;
    }
    return NULL;
}

// ---- the page's data ---------------------------------------------------------------------

// A number for the page: 6 significant digits (cJSON then prints it short), all of them
// from a million up (times, counters); null when not finite.
static cJSON *jnum(double x) {
    if (!isfinite(x)) return cJSON_CreateNull();
    if (fabs(x) >= 1e6) return cJSON_CreateNumber(x);
    char b[32];
    snprintf(b, sizeof b, "%.6g", x);
    return cJSON_CreateNumber(strtod(b, NULL));
}

static cJSON *jarr(cJSON *parent, const char *key) { return cJSON_AddArrayToObject(parent, key); }

static void add_facts(cJSON *page, const RunLog *L) {
    cJSON *f = cJSON_AddObjectToObject(page, "facts");
    // The first start's command and time; the latest start's settings (a resume may change them).
    static const char *const first_keys[] = { "command", "cwd", "time", NULL };
    static const char *const latest_keys[] = { "device", "precision", "threads", "config", "parameters", "dataset",
                                               "train_images", "val_images", "val_fraction", "val_from_test", "seed",
                                               "img_size", "epochs", "stage1_epochs", NULL };
    for (int i = 0; first_keys[i]; i++) {
        const cJSON *v = runlog_run_field(L, first_keys[i], 0);
        if (v) cJSON_AddItemToObject(f, first_keys[i], cJSON_Duplicate(v, 1));
    }
    for (int i = 0; latest_keys[i]; i++) {
        const cJSON *v = runlog_run_field(L, latest_keys[i], 1);
        if (v) cJSON_AddItemToObject(f, latest_keys[i], cJSON_Duplicate(v, 1));
    }
    cJSON_AddItemToObject(f, "steps_done", jnum(L->n_steps ? (double)L->steps[L->n_steps - 1].step : 0));
    cJSON_AddItemToObject(f, "epochs_done", jnum(L->n_epochs ? L->epochs[L->n_epochs - 1].epoch : 0));
    double train_s = 0;
    for (int i = 0; i < L->n_epochs; i++)
        if (isfinite(L->epochs[i].seconds)) train_s += L->epochs[i].seconds;
    cJSON_AddItemToObject(f, "train_seconds", jnum(train_s));
    // Wall time: each start to its end record (the last one to the log's last write).
    double wall = 0;
    int wall_known = 0;
    for (int k = 0; k < L->n_seg; k++) {
        const RunSegment *s = &L->seg[k];
        double t1 = s->end ? s->last_unix : k == L->n_seg - 1 ? L->mtime : NAN;
        if (isfinite(s->unix_start) && isfinite(t1) && t1 >= s->unix_start) wall += t1 - s->unix_start, wall_known++;
    }
    cJSON_AddItemToObject(f, "wall_seconds", wall_known ? jnum(wall) : cJSON_CreateNull());
    cJSON_AddItemToObject(f, "log_mtime", jnum(L->mtime));
    cJSON_AddStringToObject(f, "log", L->path);
    // How it ended: the last start's end record, if any.
    const RunSegment *last = L->n_seg ? &L->seg[L->n_seg - 1] : NULL;
    const cJSON *end = last ? last->end : NULL;
    const cJSON *stv = end ? cJSON_GetObjectItemCaseSensitive(end, "status") : NULL;
    cJSON_AddStringToObject(f, "status", cJSON_IsString(stv) ? stv->valuestring : "no-end");
    const cJSON *err = end ? cJSON_GetObjectItemCaseSensitive(end, "error") : NULL;
    if (cJSON_IsString(err)) cJSON_AddStringToObject(f, "error", err->valuestring);
    if (end) cJSON_AddBoolToObject(f, "non_finite", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(end, "non_finite")));
    if (end) cJSON_AddItemToObject(f, "end_time", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(end, "time"), 1));
}

static void add_segments(cJSON *page, const RunLog *L) {
    cJSON *a = jarr(page, "segments");
    for (int k = 0; k < L->n_seg; k++) {
        const RunSegment *s = &L->seg[k];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "start_step", (double)s->start_step);
        cJSON_AddNumberToObject(o, "start_epoch", s->start_epoch);
        cJSON_AddBoolToObject(o, "inferred", s->inferred);
        cJSON_AddNumberToObject(o, "line", s->line);
        static const char *const keys[] = { "time", "command", "resumed_from", "device", "precision", NULL };
        for (int i = 0; s->run && keys[i]; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(s->run, keys[i]);
            if (v) cJSON_AddItemToObject(o, keys[i], cJSON_Duplicate(v, 1));
        }
        if (s->end) cJSON_AddItemToObject(o, "end", cJSON_Duplicate(s->end, 1));
        cJSON_AddItemToArray(a, o);
    }
}

// Steps as bucket means of at most `every` consecutive steps of one segment and stage.
static void add_steps(cJSON *page, const RunLog *L, int max_points) {
    cJSON *o = cJSON_AddObjectToObject(page, "steps");
    int every = max_points > 0 && L->n_steps > max_points ? (L->n_steps + max_points - 1) / max_points : 1;
    cJSON_AddNumberToObject(o, "every", every);
    cJSON_AddNumberToObject(o, "count", L->n_steps);
    cJSON *x = jarr(o, "step"), *ep = jarr(o, "epoch"), *sg = jarr(o, "stage");
    enum { NS = 4 + RUNLOG_NTERMS };
    static const char *const names[4] = { "loss", "lr", "grad_norm", "images_per_s" };
    cJSON *ser[NS];
    for (int k = 0; k < 4; k++) ser[k] = jarr(o, names[k]);
    cJSON *terms = cJSON_AddObjectToObject(o, "terms");
    for (int k = 0; k < RUNLOG_NTERMS; k++) ser[4 + k] = jarr(terms, runlog_term_keys[k]);
    for (int i = 0; i < L->n_steps;) {
        const RunStep *a = &L->steps[i];
        int j = i;
        while (j < L->n_steps && j - i < every && L->steps[j].segment == a->segment && L->steps[j].stage == a->stage) j++;
        double sum[NS] = { 0 };
        int cnt[NS] = { 0 };
        for (int t = i; t < j; t++) {
            const RunStep *r = &L->steps[t];
            double v[NS] = { r->loss, r->lr, r->grad_norm, r->images_per_s };
            memcpy(v + 4, r->term, sizeof r->term);
            for (int k = 0; k < NS; k++) if (isfinite(v[k])) sum[k] += v[k], cnt[k]++;
        }
        const RunStep *b = &L->steps[j - 1];
        cJSON_AddItemToArray(x, cJSON_CreateNumber((double)b->step));
        cJSON_AddItemToArray(ep, cJSON_CreateNumber(b->epoch));
        cJSON_AddItemToArray(sg, cJSON_CreateNumber(b->stage));
        for (int k = 0; k < NS; k++) cJSON_AddItemToArray(ser[k], jnum(cnt[k] ? sum[k] / cnt[k] : NAN));
        i = j;
    }
}

static void add_epochs(cJSON *page, const RunLog *L) {
    cJSON *o = cJSON_AddObjectToObject(page, "epochs");
    cJSON *ep = jarr(o, "epoch"), *sg = jarr(o, "stage"), *steps = jarr(o, "step"), *ls = jarr(o, "loss"),
          *sec = jarr(o, "seconds"), *vi = jarr(o, "val_images");
    cJSON *val = cJSON_AddObjectToObject(o, "val"), *vs[RUNLOG_NVAL];
    for (int k = 0; k < RUNLOG_NVAL; k++) vs[k] = jarr(val, runlog_val_keys[k]);
    for (int i = 0; i < L->n_epochs; i++) {
        const RunEpoch *e = &L->epochs[i];
        cJSON_AddItemToArray(ep, cJSON_CreateNumber(e->epoch));
        cJSON_AddItemToArray(sg, cJSON_CreateNumber(e->stage));
        cJSON_AddItemToArray(steps, cJSON_CreateNumber((double)e->step));
        cJSON_AddItemToArray(ls, jnum(e->loss));
        cJSON_AddItemToArray(sec, jnum(e->seconds));
        cJSON_AddItemToArray(vi, e->has_val ? cJSON_CreateNumber(e->val_images) : cJSON_CreateNull());
        for (int k = 0; k < RUNLOG_NVAL; k++) cJSON_AddItemToArray(vs[k], jnum(e->has_val ? e->val[k] : NAN));
    }
    const RunEpoch *b = runlog_best_epoch(L);
    if (b) {
        cJSON *bo = cJSON_AddObjectToObject(page, "best");
        cJSON_AddNumberToObject(bo, "epoch", b->epoch);
        cJSON_AddNumberToObject(bo, "step", (double)b->step);
        cJSON_AddNumberToObject(bo, "images", b->val_images);
        for (int k = 0; k < RUNLOG_NVAL; k++) cJSON_AddItemToObject(bo, runlog_val_keys[k], jnum(b->val[k]));
    } else {
        cJSON_AddNullToObject(page, "best");
    }
    // Where stage 2 starts, on both axes (null when the log holds no stage-2 record).
    cJSON *s2 = cJSON_CreateNull();
    for (int i = 0; i < L->n_steps; i++)
        if (L->steps[i].stage == 2) {
            cJSON_Delete(s2);
            s2 = cJSON_CreateObject();
            cJSON_AddNumberToObject(s2, "step", (double)(L->steps[i].step - 1));
            cJSON_AddNumberToObject(s2, "epoch", L->steps[i].epoch - 1);
            break;
        }
    cJSON_AddItemToObject(page, "stage2", s2);
}

static void add_routing(cJSON *page, const RunLog *L) {
    int S = 0, E = 0, n = 0;
    for (int i = 0; i < L->n_epochs; i++)
        if (L->epochs[i].has_routing) {
            if (!E) S = L->epochs[i].n_scales, E = L->epochs[i].E;
            if (L->epochs[i].E == E && L->epochs[i].n_scales == S) n++;
        }
    if (!n) { cJSON_AddNullToObject(page, "routing"); return; }
    cJSON *o = cJSON_AddObjectToObject(page, "routing");
    cJSON_AddNumberToObject(o, "E", E);
    cJSON_AddNumberToObject(o, "scales", S);
    cJSON *ep = jarr(o, "epoch"), *share = jarr(o, "share"), *mw = jarr(o, "mean_weight"), *mp = jarr(o, "mean_prob"),
          *bal = jarr(o, "balance");
    // Categories: every name seen in any epoch, in first-seen order.
    char **names = NULL;
    int nn = 0;
    for (int i = 0; i < L->n_epochs; i++) {
        const RunEpoch *e = &L->epochs[i];
        for (int c = 0; e->has_routing && c < e->n_cat; c++) {
            int f = 0;
            for (int k = 0; k < nn && !f; k++) f = !strcmp(names[k], e->cat_name[c]);
            if (!f) names = cx_realloc(names, sizeof *names * (size_t)(nn + 1)), names[nn++] = e->cat_name[c];
        }
    }
    cJSON *s_share[RUNLOG_MAX_SCALES], *s_mw[RUNLOG_MAX_SCALES], *s_mp[RUNLOG_MAX_SCALES];
    cJSON *e_share[RUNLOG_MAX_SCALES][RUNLOG_MAX_EXPERTS], *e_mw[RUNLOG_MAX_SCALES][RUNLOG_MAX_EXPERTS],
          *e_mp[RUNLOG_MAX_SCALES][RUNLOG_MAX_EXPERTS], *s_bal[RUNLOG_MAX_SCALES];
    for (int s = 0; s < S; s++) {
        cJSON_AddItemToArray(share, s_share[s] = cJSON_CreateArray());
        cJSON_AddItemToArray(mw, s_mw[s] = cJSON_CreateArray());
        cJSON_AddItemToArray(mp, s_mp[s] = cJSON_CreateArray());
        cJSON_AddItemToArray(bal, s_bal[s] = cJSON_CreateArray());
        for (int x = 0; x < E; x++) {
            cJSON_AddItemToArray(s_share[s], e_share[s][x] = cJSON_CreateArray());
            cJSON_AddItemToArray(s_mw[s], e_mw[s][x] = cJSON_CreateArray());
            cJSON_AddItemToArray(s_mp[s], e_mp[s][x] = cJSON_CreateArray());
        }
    }
    cJSON *cats = jarr(o, "categories"), *c_images[64], *c_share[64];
    if (nn > 64) nn = 64;
    for (int k = 0; k < nn; k++) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "name", names[k]);
        c_images[k] = jarr(c, "images");
        c_share[k] = jarr(c, "share");   // (epochs, scales, E)
        cJSON_AddItemToArray(cats, c);
    }
    for (int i = 0; i < L->n_epochs; i++) {
        const RunEpoch *e = &L->epochs[i];
        if (!e->has_routing || e->E != E || e->n_scales != S) continue;
        cJSON_AddItemToArray(ep, cJSON_CreateNumber(e->epoch));
        for (int s = 0; s < S; s++) {
            for (int x = 0; x < E; x++) {
                cJSON_AddItemToArray(e_share[s][x], jnum(e->share[s][x]));
                cJSON_AddItemToArray(e_mw[s][x], jnum(e->mean_weight[s][x]));
                cJSON_AddItemToArray(e_mp[s][x], jnum(e->mean_prob[s][x]));
            }
            cJSON_AddItemToArray(s_bal[s], jnum(e->balance[s]));
        }
        for (int k = 0; k < nn; k++) {
            int c = 0;
            while (c < e->n_cat && strcmp(e->cat_name[c], names[k])) c++;
            if (c == e->n_cat) {
                cJSON_AddItemToArray(c_images[k], cJSON_CreateNumber(0));
                cJSON_AddItemToArray(c_share[k], cJSON_CreateNull());
                continue;
            }
            cJSON_AddItemToArray(c_images[k], cJSON_CreateNumber(e->cat_images[c]));
            cJSON *m = cJSON_CreateArray();
            for (int s = 0; s < S; s++) {
                cJSON *row = cJSON_CreateArray();
                for (int x = 0; x < E; x++) cJSON_AddItemToArray(row, jnum(e->cat_share[((size_t)c * S + s) * E + x]));
                cJSON_AddItemToArray(m, row);
            }
            cJSON_AddItemToArray(c_share[k], m);
        }
    }
    free(names);
}

cJSON *runlog_page_json(const RunLog *L, int max_points) {
    cJSON *page = cJSON_CreateObject();
    add_facts(page, L);
    add_segments(page, L);
    cJSON *notes = jarr(page, "notes");
    for (int i = 0; i < L->n_notes; i++) cJSON_AddItemToArray(notes, cJSON_CreateString(L->notes[i]));
    if (L->n_notes_dropped) {
        char b[96];
        snprintf(b, sizeof b, "... and %d more notes like these", L->n_notes_dropped);
        cJSON_AddItemToArray(notes, cJSON_CreateString(b));
    }
    add_steps(page, L, max_points);
    add_epochs(page, L);
    add_routing(page, L);
    return page;
}
