// weights.h — CamoXpert weights on disk, below both training and inference: a
// safetensors file in the reference's PyTorch state_dict names (the parameter
// table's, so PyTorch's load_state_dict(strict=True) accepts it) whose metadata
// carries the model config as JSON under `camoxpert_config`:
//   {"model", "backbone", "sparse", "num_experts", "top_k", "balance", "lb_coef",
//    "routing", "route_grid", "img_size"} (+ "train_options" when training wrote it).
// That is the one dialect written. Read as well: the flat keys (`model`, `backbone`,
// `num_experts`, `top_k`, `balance`, `routing`, `route_grid`) that camoxpert_save
// wrote before (edc5414), and reference PyTorch checkpoints, which carry no config
// (the caller names the model) and may spell the backbone's keys either way.
// The training state beside the weights is train/checkpoint.h's.
//
//   char *cfg = weights_config_json(&mc, 352);
//   CX_TRY(weights_save(&pt, cfg, NULL, "model.safetensors"));
//   CamoXpertConfig back; int size;
//   CX_TRY(weights_read_config("model.safetensors", &back, &size));   // size 352
//   CX_TRY(weights_load(&pt, "model.safetensors"));                  // strict
#pragma once
#include "nn/camoxpert.h"

// The config as JSON (malloc'd); img_size 0 leaves it out.
char *weights_config_json(const CamoXpertConfig *c, int img_size);
// The model config of a weights file, in either dialect (other keys are ignored);
// *img_size (may be NULL) gets 0 when absent, and a size that is not a valid input side
// is CX_EFORMAT. A file without a config (a reference PyTorch checkpoint) is
// CX_ENOTFOUND naming the options that name the model.
cx_status weights_read_config(const char *path, CamoXpertConfig *c, int *img_size);
// The `camoxpert_config` JSON of a weights file as written (malloc'd; NULL when absent).
cx_status weights_read_config_json(const char *path, char **json);

// Writes every entry of pt (F32; num_batches_tracked as I64 scalars) to path,
// atomically, with "format": "pt", config_json (may be NULL) and the key/value
// pairs of meta (NULL-terminated: key, value, key, value, ..., NULL; may be NULL).
// A GPU table is downloaded into its host copy first.
cx_status weights_save(const ParamTable *pt, const char *config_json, const char *const *meta, const char *path);
// Strict load of a CamoXpert table from our file or a reference state_dict
// (camoxpert_load: hub or feature-extractor backbone keys); errors name the file,
// the key and both shapes; a non-finite tensor is CX_ENUMERIC naming it.
cx_status weights_load(ParamTable *pt, const char *path);
// The same, and the file's SHA-256 (hex, as sha256sum prints it) into sha256 (may be
// NULL), from the one read of the file.
cx_status weights_load_sha256(ParamTable *pt, const char *path, char sha256[65]);
