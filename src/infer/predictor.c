// predictor.c — see predictor.h.
#include "infer/predictor.h"
#include <string.h>

cx_status predictor_open(Predictor *p, const char *weights, int img_size) {
    memset(p, 0, sizeof *p);
    CX_TRY(model_open(&p->model, &(ModelSpec){ .weights = weights, .img_size = img_size, .inference = 1 }));
    const int S = p->model.img_size;
    p->x = cx_malloc(sizeof(float) * (size_t)S * S * 3);
    return CX_OK;
}

void predictor_run(Predictor *p, const Image8 *rgb, Image8 *mask, CamoXpertOutputs *o) {
    CamoXpertOutputs local;
    if (!o) o = &local;
    const int S = p->model.img_size;
    infer_image_input(rgb, S, p->x);
    Tensor in = tensor_view4(p->x, DT_F32, 1, S, S, 3);
    Tensor pred = infer_forward(&p->model, &in, o);
    image_alloc(mask, rgb->w, rgb->h, 1);
    infer_mask(tensor_f32(&pred), S, mask);
}

void predictor_close(Predictor *p) {
    model_close(&p->model);
    free(p->x);
    memset(p, 0, sizeof *p);
}
