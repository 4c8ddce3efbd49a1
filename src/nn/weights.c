// weights.c — see weights.h.
#include "nn/weights.h"
#include "nn/memory.h"
#include "core/io.h"
#include "core/sha256.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

char *weights_config_json(const CamoXpertConfig *c, int img_size) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", c->sparse ? "CamoXpertSparseMoE" : "CamoXpertCOD");
    cJSON_AddStringToObject(j, "backbone", c->backbone);
    cJSON_AddBoolToObject(j, "sparse", c->sparse);
    cJSON_AddNumberToObject(j, "num_experts", c->num_experts);
    cJSON_AddNumberToObject(j, "top_k", c->top_k);
    cJSON_AddStringToObject(j, "balance", moe_balance_name(c->balance));
    cJSON_AddNumberToObject(j, "lb_coef", c->lb_coef);
    cJSON_AddStringToObject(j, "routing", moe_routing_name(c->routing));
    cJSON_AddNumberToObject(j, "route_grid", c->route_grid);
    if (img_size > 0) cJSON_AddNumberToObject(j, "img_size", img_size);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    char *out = cx_strdup(s);
    cJSON_free(s);
    return out;
}

static int json_int(const cJSON *j, const char *k, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsNumber(v) ? v->valueint : cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

// Parses weights_config_json's output.
static cx_status config_parse(const char *json, CamoXpertConfig *c, int *img_size) {
    cJSON *j = cJSON_Parse(json);
    if (!j) return CX_FAIL(CX_EFORMAT, "the model config is not valid JSON: %.200s", json);
    const cJSON *bb = cJSON_GetObjectItemCaseSensitive(j, "backbone");
    cx_status st = CX_OK;
    if (!cJSON_IsString(bb)) {
        st = CX_FAIL(CX_EFORMAT, "the model config names no backbone: %.200s", json);
        goto done;
    }
    int sparse = json_int(j, "sparse", 0), E = json_int(j, "num_experts", 6), k = json_int(j, "top_k", 2);
    if ((st = camoxpert_config(c, bb->valuestring, sparse, E, k))) goto done;
    const cJSON *bal = cJSON_GetObjectItemCaseSensitive(j, "balance");
    if (cJSON_IsString(bal) && (st = moe_balance_parse(bal->valuestring, &c->balance))) goto done;
    const cJSON *lb = cJSON_GetObjectItemCaseSensitive(j, "lb_coef");
    if (cJSON_IsNumber(lb)) c->lb_coef = lb->valuedouble;
    const cJSON *rt = cJSON_GetObjectItemCaseSensitive(j, "routing");
    if (cJSON_IsString(rt) && (st = camoxpert_config_routing(c, rt->valuestring, json_int(j, "route_grid", 4)))) goto done;
    if (img_size) {
        // A size from a file is checked like an option: 33, -32 or 2^30 would be used as given.
        const cJSON *sz = cJSON_GetObjectItemCaseSensitive(j, "img_size");
        *img_size = 0;
        if (sz) {
            double v = cJSON_IsNumber(sz) ? sz->valuedouble : -1;
            if (!(v == floor(v) && v >= -1e9 && v <= 1e9) || camoxpert_check_img_size((int64_t)v, "img_size")) {
                st = CX_FAIL(CX_EFORMAT, "img_size %.10g in the model config is not a multiple of 32 from %d to %d (a "
                             "damaged or hand-edited file?); pass --img-size", cJSON_IsNumber(sz) ? sz->valuedouble : NAN,
                             CAMOXPERT_MIN_IMG, CAMOXPERT_MAX_IMG);
                goto done;
            }
            *img_size = (int)v;
        }
    }
done:
    cJSON_Delete(j);
    return st;
}

cx_status weights_read_config(const char *path, CamoXpertConfig *c, int *img_size) {
    StFile f;
    CX_TRY(st_open_header(&f, path));   // the metadata only: the weights are read once, by weights_load
    cx_status st = CX_OK;
    const char *cfg = st_meta(&f, "camoxpert_config");
    const char *model = st_meta(&f, "model"), *bb = st_meta(&f, "backbone");
    if (img_size) *img_size = 0;
    if (cfg) {
        st = config_parse(cfg, c, img_size);
    } else if (model && bb) {   // the flat dialect (edc5414's camoxpert_save): no input size
        int sparse = strstr(model, "Sparse") != NULL;
        const char *E = st_meta(&f, "num_experts"), *k = st_meta(&f, "top_k"), *bal = st_meta(&f, "balance");
        st = camoxpert_config(c, bb, sparse, E ? atoi(E) : 6, k ? atoi(k) : 2);
        if (!st && bal) st = moe_balance_parse(bal, &c->balance);
        const char *rt = st_meta(&f, "routing"), *g = st_meta(&f, "route_grid");
        if (!st && rt) st = camoxpert_config_routing(c, rt, g ? atoi(g) : 4);
    } else {
        st = CX_FAIL(CX_ENOTFOUND, "%s carries no model config in its metadata (a reference PyTorch checkpoint?); "
                     "name the model with --backbone NAME [--use-sparse-moe --num-experts E --top-k K]", path);
    }
    if (st && (cfg || (model && bb))) cx_error_context("reading the model config of %s", path);
    st_close(&f);
    return st;
}

cx_status weights_read_config_json(const char *path, char **json) {
    return st_read_meta(path, "camoxpert_config", json);
}

cx_status weights_save(const ParamTable *pt, const char *config_json, const char *const *meta, const char *path) {
    Arena tmp;
    arena_init(&tmp, "weights", 1 << 16);
    StWriter w;
    st_writer_init(&w);
    st_writer_meta(&w, "format", "pt");
    if (config_json) st_writer_meta(&w, "camoxpert_config", config_json);
    for (int i = 0; meta && meta[i]; i += 2) st_writer_meta(&w, meta[i], meta[i + 1]);
    params_save(pt, &w, NULL, &tmp);
    cx_status st = st_writer_save(&w, path);
    st_writer_free(&w);
    arena_free(&tmp);
    return st;
}

cx_status weights_load(ParamTable *pt, const char *path) { return weights_load_sha256(pt, path, NULL); }

cx_status weights_load_sha256(ParamTable *pt, const char *path, char sha256[65]) {
    StFile f;
    if (sha256) {   // the file read once, whole: hashed and loaded from the same bytes
        unsigned char *buf;
        size_t size;
        CX_TRY(io_read_file(path, &buf, &size));
        sha256_hex(buf, size, sha256);
        CX_TRY(st_open_buffer(&f, path, buf, size));
    } else {        // each tensor read from the file when asked
        CX_TRY(st_open(&f, path));
    }
    cx_status st = camoxpert_load(pt, &f, "", NULL);
    st_close(&f);
    if (st) cx_error_context("loading CamoXpert weights from %s", path);
    return st;
}
