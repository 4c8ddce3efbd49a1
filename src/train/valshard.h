// valshard.h — validation over several ranks with the numbers of one process: each
// rank scores a block of whole validation batches (the batches one process would
// run, split in rank order, so every image is computed in the same batch as there),
// and rank 0 adds the per-image scores in image order — the order and the values
// one process adds — then sends the result to every rank.
//
//   int first, count;
//   val_shard(va.n, batch, rank, world, &first, &count);   // images [first, first + count)
//   ValImage *mine = ...;                                   // scored in order, .index = first + i
//   ValResult vr;
//   CX_TRY(val_reduce(&store, mine, count, va.n, &vr));     // the same vr on every rank
#pragma once
#include "eval/metrics.h"
#include "train/dist.h"

// One validation image's scores, as a rank sends them to rank 0.
typedef struct {
    int64_t index;     // into the validation split
    double iou;        // the reference's IoU (sigmoid > 0.5 against GT > 128) of this image
    MetricsImage m;
} ValImage;

typedef struct { MetricsSummary s; double iou; int n; } ValResult;

// The images [*first, *first + *count) of n that rank `rank` of `world` scores at
// `batch` images per batch (*count may be 0 when there are fewer batches than ranks).
void val_shard(int n, int batch, int rank, int world, int *first, int *count);
// The dataset scores of the n_total images whose scores the ranks hold (mine[0..k)
// here), added in image order on rank 0 and broadcast; an error when the shards do
// not add up to the split (ranks that see different data).
cx_status val_reduce(DistStore *s, const ValImage *mine, int k, int n_total, ValResult *vr);
