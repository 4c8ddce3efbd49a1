// cmd_predict.c — `camoxpert predict`: masks for photos from a checkpoint. The
// options and the summary; the work is infer/pipeline.h's (decode, batch, forward,
// mask, write), the masks those of `camoxpert report` and training's validation.
#include "cli.h"
#include "infer/pipeline.h"
#include "nn/memory.h"
#include <string.h>

int cmd_predict(int argc, char **argv) {
    const char *weights = NULL, *input = NULL, *out = NULL, *backbone = NULL, *device = "auto", *precision = "auto";
    int overlay = 0, routing = 0, img_size = 0, threads = 0, sparse = 0, E = 6, k = 2, overwrite = 0, batch = 0,
        workers = 0;
    CliOpt opts[] = {
        { "weights", OPT_STR, &weights, "checkpoint (safetensors; its metadata names the model)", "CKPT", NULL, 0 },
        { "input", OPT_STR, &input, "a photo, or a directory of photos (.jpg .jpeg .png .bmp)", "IMAGE|DIR", NULL, 0 },
        { "out", OPT_STR, &out, "directory for <name>.png masks (created)", "DIR", NULL, 0 },
        { "overlay", OPT_FLAG, &overlay, "also write <name>_overlay.jpg: the photo with the mask in red", NULL, NULL, 0 },
        { "routing", OPT_FLAG, &routing, "also write <name>_routing.json: experts, weights and router probabilities "
          "per scale (sparse models; per tile under spatial routing, with <name>_routing_s<scale>.png maps: tiles "
          "coloured by their first expert)", NULL, NULL, 0 },
        { "img-size", OPT_INT, &img_size, "network input side, a multiple of 32 (0: the checkpoint's training size, else 352)", "S", NULL, 0 },
        { "batch-size", OPT_INT, &batch, "photos per network call (0: 1 on the CPU, 32 on a GPU, fewer if memory "
          "is short)", "B", NULL, 0 },
        { "workers", OPT_INT, &workers, "threads that decode photos and write masks beside the network (0: 1 on the "
          "CPU, all cores on a GPU)", "N", NULL, 0 },
        { "threads", OPT_INT, &threads, "compute threads (0: all cores)", "N", NULL, 0 },
        { "backbone", OPT_STR, &backbone, "for a checkpoint without a model config (a reference one, converted with tools/pth_to_safetensors.py): "
          "the EdgeNeXt variant; a checkpoint that names its model is used as it names it", "NAME", NULL, 0 },
        { "use-sparse-moe", OPT_FLAG, &sparse, "with --backbone: the checkpoint is a sparse model", NULL, NULL, 0 },
        { "num-experts", OPT_INT, &E, "with --backbone --use-sparse-moe: experts per scale", "E", NULL, 0 },
        { "top-k", OPT_INT, &k, "with --backbone --use-sparse-moe: experts per image", "K", NULL, 0 },
        { "device", OPT_STR, &device, "cpu, cuda, cuda:N or auto (a GPU when one is usable)", "cpu|cuda|cuda:N|auto", NULL, 0 },
        { "precision", OPT_STR, &precision, "fp32, bf16 (a GPU, or a CPU with AMX-BF16 or AVX512-BF16: its convolutions "
          "and matmuls) or auto (bf16 on a GPU or on such a CPU, else fp32)", "fp32|bf16|auto", "fp32|bf16|auto", 0 },
        { "overwrite", OPT_FLAG, &overwrite, "replace files in --out that camoxpert predict did not write", NULL, NULL, 0 },
    };
    int parsed = cli_parse(argc, argv, "predict", opts, CLI_N(opts), NULL, 0, NULL,
                           "--weights CKPT --input IMAGE|DIR --out DIR [--overlay] [--routing] [--img-size S]");
    if (parsed) return parsed == CLI_HELP ? 0 : 2;
    cx_oom_hint("reduce --img-size");
    if (!weights || !input || !out) {
        fprintf(stderr, "error: camoxpert predict needs --weights CKPT, --input IMAGE|DIR and --out DIR\n");
        return 2;
    }
    if (img_size && camoxpert_check_img_size(img_size, "--img-size")) {
        fprintf(stderr, "error: camoxpert predict: %s (0: the checkpoint's size)\n", cx_errmsg());
        return 2;
    }
    if (batch < 0 || batch > 4096) {
        fprintf(stderr, "error: camoxpert predict: --batch-size %d: must be between 0 (auto) and 4096\n", batch);
        return 2;
    }
    if (workers && cli_workers("predict", "workers", workers)) return 2;
    CamoXpertConfig mc;
    if (backbone && camoxpert_config(&mc, backbone, sparse, E, k)) {
        fprintf(stderr, "error: camoxpert predict: %s\n", cx_errmsg());
        return 2;
    }
    unsigned given = (backbone ? MODEL_GIVEN_BACKBONE : 0) | (cli_seen(opts, CLI_N(opts), "use-sparse-moe") ? MODEL_GIVEN_SPARSE : 0) |
                     (cli_seen(opts, CLI_N(opts), "num-experts") ? MODEL_GIVEN_EXPERTS : 0) |
                     (cli_seen(opts, CLI_N(opts), "top-k") ? MODEL_GIVEN_TOPK : 0);
    PipelineOptions po = { .weights = weights, .config = backbone ? &mc : NULL, .config_given = given, .input = input, .out = out,
                           .img_size = img_size, .batch = batch, .workers = workers, .overlay = overlay,
                           .routing = routing, .overwrite = overwrite, .device = device, .precision = precision,
                           .log = stdout };
    PipelineResult r;
    if (pipeline_predict(&po, &r)) {   // nothing was predicted: the options, the checkpoint or the outputs
        fprintf(stderr, "error: camoxpert predict: %s\n", cx_errmsg());
        return 2;
    }
    if (routing && !r.sparse) printf("note: --routing: %s is a dense model (every image uses every expert); no routing files\n", weights);
    const int nf = r.n_photos;
    printf("wrote %d mask%s (8-bit PNG at each photo's size)%s%s to %s in %.2f s (%.1f images/s; network %.2f s, "
           "waiting for decoded photos %.2f s; workers decoding %.2f s, writing %.2f s)",
           r.n_masks, r.n_masks == 1 ? "" : "s", overlay ? ", overlays" : "", routing && r.sparse ? ", routing JSON" : "",
           out, r.seconds, nf / (r.seconds > 0 ? r.seconds : 1), r.net_s, r.wait_s, r.decode_s, r.write_s);
    if (r.n_failed) printf("; %d of %d photo%s failed (errors above)", r.n_failed, nf, nf == 1 ? "" : "s");
    printf("\n");
    if (r.wait_s > 0.25 * r.seconds && r.seconds > 2)
        printf("note: the network waited %.0f%% of the time for decoded photos: more --workers (now %d) would help\n",
               100 * r.wait_s / r.seconds, r.workers);
    return r.n_failed ? 1 : 0;
}
