// route_stats.h — the routing statistics of a sparse model's training batches, per
// epoch: per scale and expert the share of units (images, or tiles under spatial
// routing) routed to it, its mean weight when chosen and mean router probability;
// under spatial routing the same over object tiles and background tiles; per image
// category the experts used; the mean balancing loss per scale. They go to the
// epoch's record in train_log.jsonl ("routing") and to the console.
//
//   RouteStats rs;
//   route_stats_init(&rs, E, ds.n_categories, spatial);
//   route_stats_reset(&rs);                      // at each epoch's start
//   route_stats_add(&rs, &outputs, batch);       // after each forward
//   CX_TRY(route_stats_reduce(&rs, &store));     // every rank's batches, on every rank
//   cJSON_AddItemToObject(epoch, "routing", route_stats_json(&rs, &ds));
//   route_stats_print(&rs, &ds, stdout);
//   route_stats_free(&rs);
#pragma once
#include "data/loader.h"
#include "nn/camoxpert.h"
#include "train/dist.h"
#include <cjson/cJSON.h>
#include <stdio.h>

// Per scale and expert: units routed (images, or tiles under spatial routing), Σ
// weight when chosen, Σ router probability; per image category the units routed to
// each expert; under spatial routing the same over object tiles (the ground truth
// covers more than half of the tile) and background tiles; Σ balancing loss per scale.
typedef struct {
    int E, n_cat, spatial;
    int64_t images;
    int64_t units[4], chosen[4][MOE_MAX_EXPERTS];
    double wsum[4][MOE_MAX_EXPERTS], psum[4][MOE_MAX_EXPERTS];
    int64_t fg_units[4], fg_chosen[4][MOE_MAX_EXPERTS];   // [0] object tiles ...
    int64_t bg_units[4], bg_chosen[4][MOE_MAX_EXPERTS];   // ... and background tiles (spatial)
    double lb[4];
    int64_t steps;
    int64_t *cat_images;   // (n_cat)
    int64_t *cat_units;    // (n_cat, 4)
    int64_t *cat_chosen;   // (n_cat, 4, E)
} RouteStats;

void route_stats_init(RouteStats *r, int E, int n_cat, int spatial);
void route_stats_free(RouteStats *r);
void route_stats_reset(RouteStats *r);   // zero counts, same sizes
// Counts the routing of one forward o on batch b (masks tell object tiles from background).
void route_stats_add(RouteStats *r, const CamoXpertOutputs *o, const Batch *b);
// Sums every rank's counts into every rank's r (a no-op with one rank).
cx_status route_stats_reduce(RouteStats *r, DistStore *store);
// {"unit", "scales": [{"share", "mean_weight", "mean_prob", "units", ...}], "categories": {...}};
// category names from ds.
cJSON *route_stats_json(const RouteStats *r, const Dataset *ds);
// The table the console shows after an epoch (out NULL: nothing).
void route_stats_print(const RouteStats *r, const Dataset *ds, FILE *out);
