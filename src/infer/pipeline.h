// pipeline.h — `camoxpert predict`'s work: masks for a photo or a folder of photos
// from a checkpoint. Each photo is resized to the model's input size, the logits are
// resized bilinearly back to the photo's own size, passed through a sigmoid, min–max
// normalised and written as an 8-bit PNG (infer.h's steps, the community's export);
// optionally an overlay JPEG and, for sparse models, the routing of each image as
// JSON (and, under spatial routing, a map of the tiles' experts per scale).
//
// Every output is planned before any is written: two photos that would write one mask
// (a.jpg, a.png), an --out that is the photos' own folder, a name too long for the
// file system, or an existing file that `camoxpert predict` did not write (a photo,
// a ground-truth mask) is an error naming the files (overwrite allows the last).
// Files an earlier predict wrote into an input folder are not taken for photos.
//
// Photos go through the network in batches while worker threads decode the next
// ones and write the last batch's masks; a batch's files are committed together
// (core/io.h io_atomic_commit_group). Small batches of a dense model on a GPU replay
// the forward as a CUDA graph (nn/runtime.h). Other batches on a GPU take the GPU
// path: the workers read the files (and decode what the GPU cannot take), the GPU
// decodes plain JPEGs (nvJPEG's hardware engine, when the GPU has one:
// data/image.h image_jpeg_plain, ops.h ops_jpeg_*), makes the network's input
// (ops_photo_input) and the 8-bit masks at each photo's size (ops_mask_export), and
// the workers write the PNGs. The same arithmetic as the CPU's (core/pixels.h): the
// input is the same to the bit, a mask within one level at rare pixels (exp);
// nvJPEG's decode is not libjpeg-turbo's to the bit (docs/GPU.md).
// CAMOXPERT_PREDICT_GPU_IO=0 and CAMOXPERT_NVJPEG=0 turn the path and its decode off. A batch changes the kernels' float
// summation order (about 1e-6 of the logits), which the 8-bit export's min–max stretch
// multiplies by 255 / (the probability map's range): a nearly flat map (a weakly trained
// model) can move by several levels; --batch-size 1 gives each photo its mask alone
// (docs/RELIABILITY.md, "What is not promised"; tested by
// hostile_batching_changes_a_mask_only_within_the_exports_stretch_of_summation_order).
//
// Instead of one input and one out, groups of photos may each go to their own folder
// (predict --data-root: one group per test set, P/<set>/): one model for all, every
// group's outputs planned before any is written, each group run in turn with a line
// when it starts and ends.
//
//   PipelineOptions po = { .weights = "runs/a/best.safetensors", .input = "photos", .out = "masks",
//                          .device = "auto", .precision = "auto", .log = stdout };
//   PipelineResult r;
//   CX_TRY(pipeline_predict(&po, &r));   // an error: nothing was written
//   printf("%d masks, %d photos failed\n", r.n_masks, r.n_failed);
#pragma once
#include "infer/open.h"
#include <stdio.h>

typedef struct {
    const char *name;               // for the progress lines ("CAMO-test")
    const char *input;              // the folder of the photos (messages; out may not be it)
    char *const *files;             // (n) the photos, n >= 1
    int n;
    const char *out;                // the folder for their <name>.png masks (created)
} PipelineGroup;

typedef struct {
    const char *weights;            // the checkpoint
    const CamoXpertConfig *config;  // the model; NULL: the checkpoint's metadata names it
    unsigned config_given;          // the options config came from (ModelSpec.config_given)
    const char *input;              // a photo, or a directory of photos (.jpg .jpeg .png .bmp)
    const char *out;                // directory for <name>.png masks (created)
    const PipelineGroup *groups;    // (n_groups) instead of input and out: each group's photos into its folder
    int n_groups;
    const char *input_opt;          // the option that named the photos, for messages (NULL: "--input")
    int img_size;                   // network input side; 0: the checkpoint's training size, else 352
    int batch;                      // photos per network call; 0: 1 on the CPU, 32 on a GPU (fewer if memory is short)
    int workers;                    // decoding and writing threads; 0: 1 on the CPU, all cores on a GPU
    int overlay;                    // also <name>_overlay.jpg: the photo with the mask in red
    int routing;                    // also <name>_routing.json (sparse models)
    int overwrite;                  // replace files in out that camoxpert predict did not write
    const char *device, *precision; // runtime_init's (nn/runtime.h)
    FILE *log;                      // progress: the device, the model, notes, photos done; NULL: none
} PipelineOptions;

typedef struct {
    int n_photos, n_masks, n_failed;   // photos found, masks committed, photos that failed (errors on stderr); all groups
    int batch, workers;                // as run
    int sparse;                        // the model routes (routing files were written when asked)
    double seconds;                    // the whole run through the photos
    double net_s, wait_s;              // the network; waiting for decoded photos
    double decode_s, write_s;          // summed over the workers
    double peak_bytes;                 // the model's memory at its peak: parameters and the arenas' peaks
    int gpu_io;                        // photos were resized and masks made on the GPU
    int n_gpu_decoded;                 // photos the GPU decoded (JPEGs)
    double gpu_s[3];                   // gpu_io: net_s's parts: photos in (decode, upload, resize), the network, masks out
} PipelineResult;

// Predicts every photo. A non-zero status means nothing was predicted (options,
// device, checkpoint, memory, outputs: the message says which and the fix); a photo
// that fails later is reported on stderr and counted in r->n_failed.
cx_status pipeline_predict(const PipelineOptions *o, PipelineResult *r);
