// route_stats.c — see route_stats.h.
#include "train/route_stats.h"
#include <string.h>

void route_stats_init(RouteStats *r, int E, int n_cat, int spatial) {
    memset(r, 0, sizeof *r);
    r->E = E, r->n_cat = n_cat, r->spatial = spatial;
    const size_t nc = (size_t)(n_cat > 0 ? n_cat : 1);
    r->cat_images = cx_calloc(nc, sizeof(int64_t));
    r->cat_units = cx_calloc(nc * 4, sizeof(int64_t));
    r->cat_chosen = cx_calloc(nc * 4 * (size_t)(E > 0 ? E : 1), sizeof(int64_t));
}

void route_stats_free(RouteStats *r) {
    free(r->cat_images);
    free(r->cat_units);
    free(r->cat_chosen);
    memset(r, 0, sizeof *r);
}


void route_stats_reset(RouteStats *r) {
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

void route_stats_add(RouteStats *r, const CamoXpertOutputs *o, const Batch *b) {
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

cJSON *route_stats_json(const RouteStats *r, const Dataset *ds) {
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

void route_stats_print(const RouteStats *r, const Dataset *ds, FILE *out) {
    if (!out) return;
    fprintf(out, "  routing (training batches; share of %s per expert, mean weight when chosen):\n", r->spatial ? "tiles" : "images");
    fprintf(out, "    %-7s", "scale");
    for (int e = 0; e < r->E; e++) {
        char h[32];
        snprintf(h, sizeof h, "%s%d share/w", expert_kind_letter(e), e);
        fprintf(out, "%14s", h);
    }
    fprintf(out, " balance\n");
    for (int s = 0; s < 4; s++) {
        fprintf(out, "    %-7d", s);
        for (int e = 0; e < r->E; e++)
            fprintf(out, "   %5.1f%%/%.2f", 100.0 * ratio((double)r->chosen[s][e], (double)r->units[s]),
                   r->chosen[s][e] ? r->wsum[s][e] / r->chosen[s][e] : 0);
        fprintf(out, "  %.5f\n", r->steps ? r->lb[s] / r->steps : 0);
    }
    for (int s = 0; s < 4 && r->spatial; s++) {   // object tiles (GT covers > half) against background tiles
        fprintf(out, "    s%d object tiles (%lld):", s, (long long)r->fg_units[s]);
        for (int e = 0; e < r->E; e++) fprintf(out, " %s%d %4.1f%%", expert_kind_letter(e), e, 100.0 * ratio((double)r->fg_chosen[s][e], (double)r->fg_units[s]));
        fprintf(out, "  | background (%lld):", (long long)r->bg_units[s]);
        for (int e = 0; e < r->E; e++) fprintf(out, " %s%d %4.1f%%", expert_kind_letter(e), e, 100.0 * ratio((double)r->bg_chosen[s][e], (double)r->bg_units[s]));
        fprintf(out, "\n");
    }
    for (int c = 0; c < r->n_cat; c++) {
        if (!r->cat_images[c]) continue;
        fprintf(out, "    %-10s (%lld images) most used:", ds->categories[c], (long long)r->cat_images[c]);
        for (int s = 0; s < 4; s++) {
            int best = 0;
            const int64_t *row = &r->cat_chosen[((int64_t)c * 4 + s) * r->E];
            for (int e = 1; e < r->E; e++) if (row[e] > row[best]) best = e;
            fprintf(out, "  s%d %s%d %.0f%%", s, expert_kind_letter(best), best, 100.0 * ratio((double)row[best], (double)r->cat_units[c * 4 + s]));
        }
        fprintf(out, "\n");
    }
}


cx_status route_stats_reduce(RouteStats *r, DistStore *store) {
    if (store->world == 1) return CX_OK;
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
    cx_status st = dist_sum(store, v, n);
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
