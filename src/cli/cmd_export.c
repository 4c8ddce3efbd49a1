// cmd_export.c — `camoxpert export`: a checkpoint as an ONNX file (infer/onnx.h)
// for ONNX Runtime, TensorRT, OpenVINO or the browser; docs/DEPLOY.md shows how to
// run it. The model configuration comes from the checkpoint's metadata (or
// --backbone ... for a reference PyTorch file) and goes into the ONNX file's
// metadata_props, with the checkpoint's own `camoxpert_config` JSON when it has one.
//
//   camoxpert export --weights runs/a/best.safetensors --onnx camoxpert.onnx
//   camoxpert export --weights best.safetensors --onnx camoxpert_fp16.onnx --half --outputs logits,maps
#include "cli.h"
#include "infer/onnx.h"
#include "infer/open.h"
#include <string.h>

// The model of a checkpoint on the host in float32 evaluation mode (infer/open.h); with
// --backbone, the config given on the command line (a reference PyTorch file has none).
static cx_status open_model(Model *mo, const char *weights, const char *backbone, int sparse, int E, int k, unsigned given) {
    CamoXpertConfig mc;
    if (backbone) CX_TRY(camoxpert_config(&mc, backbone, sparse, E, k));
    return model_open(mo, &(ModelSpec){ .weights = weights, .config = backbone ? &mc : NULL, .config_given = given, .device = "cpu",
                                         .precision = "fp32" });
}

int cmd_export(int argc, char **argv) {
    const char *weights = NULL, *onnx = NULL, *outputs = "logits", *backbone = NULL;
    int half = 0, sparse = 0, E = 6, k = 2, overwrite = 0;
    CliOpt opts[] = {
        { "weights", OPT_STR, &weights, "checkpoint (safetensors; its metadata names the model)", "CKPT", NULL, 0 },
        { "onnx", OPT_STR, &onnx, "the ONNX file to write (opset 17; batch, height and width dynamic)", "OUT.onnx", NULL, 0 },
        { "outputs", OPT_STR, &outputs, "comma-separated output groups: logits (the prediction), maps (fg_map, "
          "search_map, uncertainty), refine (initial_pred, refine_1, refine_2), deep (deep-supervision logits), route "
          "(sparse: experts, weights and router probabilities per scale), or all (default logits)", "LIST", NULL, 0 },
        { "half", OPT_FLAG, &half, "float16 weights and arithmetic (float32 inputs and outputs; routing in float32): for "
          "GPUs", NULL, NULL, 0 },
        CLI_OPTS_CKPT_MODEL(&backbone, &sparse, &E, &k),
        { "overwrite", OPT_FLAG, &overwrite, "replace an --onnx file that camoxpert export did not write", NULL, NULL, 0 },
    };
    int st = cli_parse(argc, argv, "export", opts, CLI_N(opts), NULL, 0, NULL, "--weights CKPT --onnx OUT.onnx [--half] [--outputs LIST]");
    if (st) return st == CLI_HELP ? 0 : 2;
    if (!weights || !onnx) {
        fprintf(stderr, "error: camoxpert export needs --weights CKPT and --onnx OUT.onnx\n");
        return 2;
    }
    if (outpath_check(onnx, OWNER_EXPORT, overwrite, "--onnx")) {
        fprintf(stderr, "error: camoxpert export: %s\n", cx_errmsg());
        return 2;
    }
    OnnxExportOpts o = { .half = half };
    if (onnx_outputs_parse(outputs, &o.outputs)) {
        fprintf(stderr, "error: camoxpert export: %s\n", cx_errmsg());
        return 2;
    }
    Model mo;
    unsigned given = cli_ckpt_model_given(opts, CLI_N(opts));
    cx_status cs = open_model(&mo, weights, backbone, sparse, E, k, given);
    CamoXpert *m = cs ? NULL : mo.net;
    char *config = NULL;
    if (!cs) cs = st_read_meta(weights, "camoxpert_config", &config);
    if (!cs) {
        const char *meta[] = { "source", weights, config ? "camoxpert_config" : NULL, config, NULL };
        o.meta = meta;
        cs = onnx_export(m, &mo.pt, &o, onnx);
    }
    if (cs) fprintf(stderr, "error: camoxpert export: %s\n", cx_errmsg());
    else if (m->cfg.sparse)
        printf("wrote %s: sparse %s (E=%d, top-%d), opset 17, %s, outputs %s\n", onnx, m->cfg.backbone,
               m->cfg.num_experts, m->cfg.top_k, half ? "float16" : "float32", outputs);
    else printf("wrote %s: dense %s, opset 17, %s, outputs %s\n", onnx, m->cfg.backbone, half ? "float16" : "float32", outputs);
    free(config);
    if (m) model_close(&mo);
    return cs ? 1 : 0;
}
