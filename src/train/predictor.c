// predictor.c — see predictor.h.
#include "predictor.h"
#include <string.h>

cx_status predictor_open(Predictor *p, const char *weights, int img_size) {
    memset(p, 0, sizeof *p);
    if (!path_exists(weights))
        return CX_FAIL(CX_ENOTFOUND, "%s: no such checkpoint (training writes CHECKPOINT_DIR/best.safetensors)", weights);
    int ck_size = 0;
    CX_TRY(infer_config_from_checkpoint(weights, &p->mc, &ck_size));
    p->S = img_size ? img_size : ck_size ? ck_size : 352;
    params_init(&p->pt);
    p->m = camoxpert_create(&p->mc, &p->pt);
    params_alloc(&p->pt, DT_F32);
    cx_status rs = runtime_init(&p->rt, "cpu", "fp32", 0, 0);
    if (rs) {
        predictor_close(p);
        return rs;
    }
    p->rt.ctx.pt = &p->pt;
    p->x = cx_malloc(sizeof(float) * (size_t)p->S * p->S * 3);
    cx_status st = camoxpert_load_file(p->m, &p->pt, weights);
    if (st) predictor_close(p);
    return st;
}

void predictor_run(Predictor *p, const Image8 *rgb, float *prob, CamoXpertOutputs *o) {
    CamoXpertOutputs local;
    if (!o) o = &local;
    infer_image_input(rgb, p->S, p->x);
    runtime_step_reset(&p->rt);
    Tensor in = tensor_view4(p->x, DT_F32, 1, p->S, p->S, 3);
    camoxpert_forward(&p->rt.ctx, p->m, &in, o);
    infer_prob_at(tensor_f32(&o->maps.pred), p->S, p->S, rgb->h, rgb->w, prob);
}

void predictor_close(Predictor *p) {
    if (p->m) camoxpert_free(p->m);
    if (p->pt.p) params_free(&p->pt);
    if (p->rt.desc[0]) runtime_free(&p->rt);
    free(p->x);
    memset(p, 0, sizeof *p);
}
