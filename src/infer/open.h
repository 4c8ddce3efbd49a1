// open.h — the one model opener: a checkpoint (or a config) to a CamoXpert model
// ready to run on a device at a precision, in one call — the shape of llama2.c's
// build_transformer and llm.c's gpt2_build_from_checkpoint. Every command and test
// that runs a whole model opens it here; the steps, in order:
//   1. where it runs: the device and precision (runtime_init), or the caller's runtime;
//   2. the config: given, or read from the checkpoint's metadata (nn/weights.h), and
//      the input side (given, else the checkpoint's training size, else 352);
//   3. the module tree and its parameter table (camoxpert_create), then the caller's
//      check (a memory estimate needs the table's size before anything is allocated);
//   4. the values: allocated, then the checkpoint's weights (strict) or, without a
//      checkpoint, the reference's initialisation from a seed (and a timm backbone);
//   5. the table onto the runtime's device.
// A failure at any step frees what the earlier ones made; the message names the file
// and the fix.
//
//   Model mo;
//   CX_TRY(model_open(&mo, &(ModelSpec){ .weights = "runs/a/best.safetensors", .device = "auto",
//                                         .precision = "auto" }));
//   printf("%s, %dx%d input, on %s\n", mo.cfg.backbone, mo.img_size, mo.img_size, mo.rt->desc);
//   Tensor pred = infer_forward(&mo, &photos, &out);     // infer/infer.h
//   model_close(&mo);
#pragma once
#include "nn/camoxpert.h"
#include "nn/runtime.h"

typedef struct Model Model;

// The options that name a model (predict's and export's --backbone ...).
enum { MODEL_GIVEN_BACKBONE = 1, MODEL_GIVEN_SPARSE = 2, MODEL_GIVEN_EXPERTS = 4, MODEL_GIVEN_TOPK = 8 };

typedef struct {
    const char *weights;            // checkpoint to load (strict), or NULL: fresh weights from init_seed
    const CamoXpertConfig *config;  // the model; NULL: the checkpoint's metadata names it
    unsigned config_given;          // MODEL_GIVEN_* bits: config comes from these options, for a reference
                                    // checkpoint without a configuration; a checkpoint with one wins, and an
                                    // option that contradicts it is CX_EARG naming both (0: config as it is)
    int img_size;                   // network input side; 0: the checkpoint's training size, else 352
    const char *device;             // cpu, cuda, cuda:N or auto (NULL: cpu)
    const char *precision;          // fp32, bf16 (GPU) or auto: bf16 on a GPU (NULL: fp32)
    int training;                   // BatchNorm on batch statistics (1) or running ones (0)
    int inference;                  // 1: forwards only, never a backward (predict, report): the runtime's
                                    // ctx.inference is set (activations go once read: nn/recompute.h) and
                                    // a GPU table gets no gradient buffer
    Runtime *rt;                    // non-NULL: run on this runtime instead (device and precision
                                    // unused; model_close leaves it to its owner)
    int reference;                  // 1: a float64 table on the CPU reference kernels (tests)
    uint64_t init_seed;             // without weights: camoxpert_init's seed
    const char *backbone_weights;   // without weights: a timm EdgeNeXt safetensors for the backbone (or NULL)
    int hash_weights;               // 1: Model.weights_sha256 gets the checkpoint's SHA-256 (from its one read)
    // Called once the table is laid out (m->pt.numel, m->cfg, m->img_size and m->rt are
    // set), before anything is allocated or read: a memory check. Non-zero ends the open.
    cx_status (*check)(void *arg, const Model *m);
    void *check_arg;
} ModelSpec;

struct Model {
    CamoXpertConfig cfg;   // the model's configuration
    int img_size;          // network input side
    ParamTable pt;         // its parameters, on rt's device
    CamoXpert *net;        // the module tree
    Runtime *rt;           // where it runs: &own, or ModelSpec.rt
    Runtime own;
    char weights_sha256[65];   // the checkpoint file's SHA-256 in hex (ModelSpec.hash_weights), else ""
};

cx_status model_open(Model *m, const ModelSpec *spec);
// Frees the model, and the runtime when model_open made it.
void model_close(Model *m);
