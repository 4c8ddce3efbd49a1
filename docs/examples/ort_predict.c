// ort_predict.c — a camoxpert.onnx run from C with ONNX Runtime's C API (docs/DEPLOY.md):
//   cc ort_predict.c -I$ORT/include -L$ORT/lib -lonnxruntime -o ort_predict && ./ort_predict camoxpert.onnx
#include <onnxruntime_c_api.h>
#include <stdio.h>
#include <stdlib.h>
#define ORT(call) do { OrtStatus *s_ = (call); if (s_) { fprintf(stderr, "%s\n", api->GetErrorMessage(s_)); exit(1); } } while (0)
enum { S = 352 };
static float image[3 * S * S];   // one photo resized to S×S: RGB, (pixel/255 − mean)/std, NCHW
int main(int argc, char **argv) {
    const OrtApi *api = OrtGetApiBase()->GetApi(ORT_API_VERSION);
    OrtEnv *env; OrtSessionOptions *so; OrtSession *sess; OrtMemoryInfo *mem; OrtValue *in, *out = NULL; float *logits;
    ORT(api->CreateEnv(ORT_LOGGING_LEVEL_WARNING, "camoxpert", &env));
    ORT(api->CreateSessionOptions(&so));
    ORT(api->CreateSession(env, argc > 1 ? argv[1] : "camoxpert.onnx", so, &sess));
    ORT(api->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &mem));
    ORT(api->CreateTensorWithDataAsOrtValue(mem, image, sizeof image, (int64_t[]){ 1, 3, S, S }, 4,
                                            ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &in));
    const char *in_names[] = { "image" }, *out_names[] = { "logits" };
    ORT(api->Run(sess, NULL, in_names, (const OrtValue *const *)&in, 1, out_names, 1, &out));
    ORT(api->GetTensorMutableData(out, (void **)&logits));   // (1, 1, S, S) logits: sigmoid gives the mask
    printf("logits[0] %.6f, centre %.6f\n", logits[0], logits[S / 2 * S + S / 2]);
    return 0;
}
