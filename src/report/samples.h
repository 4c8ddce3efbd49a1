// samples.h — the prediction rows of a report: for a sample of photos, the photo,
// its ground truth, the predicted mask, the mask laid over the photo and (sparse
// models) the experts each scale chose, with the image's Sα and MAE, as small
// images embedded in the page (base64 data URLs), and the worst and best cases.
//
// The photos are, by default, the run's own validation split (the dataset, split
// fraction and seed from its log's "run" record, or from the checkpoint's options),
// predicted on the CPU from the checkpoint; or a folder of photos (images_dir, with
// gt_dir for scores); or masks already predicted (pred_dir, matched by name with
// gt_dir and images_dir).
//
//   SampleOptions so = { .weights = "runs/a/best.safetensors", .max_images = 24 };
//   cJSON *rows;
//   CX_TRY(samples_json(&so, facts, &rows));   // facts: the page's "facts" (dataset, seed)
#pragma once
#include "core/core.h"
#include <cjson/cJSON.h>

#define SAMPLES_THUMB 160          // thumbnails fit in SAMPLES_THUMB x SAMPLES_THUMB pixels

typedef struct {
    const char *weights;           // checkpoint to predict with (NULL with pred_dir)
    const char *images_dir;        // photos (NULL: the run's validation split)
    const char *gt_dir;            // ground-truth masks matched by name (optional)
    const char *pred_dir;          // predicted masks to show instead of running the model
    int max_images;                // photos predicted and scored, spread evenly over the sorted list
} SampleOptions;

// *out: {"source", "weights", "items":[{"name","category","sm","mae","photo","gt","mask",
// "overlay","routing"}], "worst":[i...], "best":[i...]}; images are data URLs, absent
// pieces null. Fails (naming the folder or file and the fix) when nothing can be shown.
cx_status samples_json(const SampleOptions *o, const cJSON *facts, cJSON **out);

// RFC 4648 base64 of buf as a data URL "data:MIME;base64,..." (malloc'd).
char *samples_data_url(const char *mime, const unsigned char *buf, size_t n);
