// loader.h — a threaded, prefetching batch loader over a Dataset.
//
// Worker threads decode, resize, augment and normalise samples into a bounded
// ring of batch buffers; the consumer takes batches strictly in order. The
// sequence of batches is a pure function of (dataset, config, seed): an epoch's
// order is a permutation seeded by (seed, epoch), sharded across `world` ranks by
// global batch: the permutation is padded by wrapping to a multiple of world (as
// torch's DistributedSampler does), global batch j is its next world × batch_size
// positions, and rank r takes the r-th contiguous block of them. So W ranks at batch
// B see, batch for batch, the micro-batches of one process at batch B with W-step
// accumulation, and a cursor in global samples means the same at any world; each sample's
// augmentation is seeded by (seed, epoch, sample index). So any (epoch, step)
// cursor can be resumed exactly, with any number of workers.
//
//   LoaderConfig c = loader_config_default();
//   c.batch_size = 8; c.size = 352; c.workers = 2; c.seed = 1;
//   Loader *L;
//   CX_TRY(loader_open(&L, &train_ds, &c, start_epoch, start_step, n_epochs));
//   const Batch *b;
//   while (!(st = loader_next(L, &b)) && b) {
//       // b->image (n, S, S, 3), b->mask (n, S, S, 1); valid until the next call
//   }
//   loader_close(L);
#pragma once
#include "core/core.h"
#include "dataset.h"

typedef struct {
    int batch_size;     // N: samples per batch
    int size;           // S: images and masks are resized to S x S
    int workers;        // decoding threads, >= 1
    int prefetch;       // batches decoded ahead of the consumer (queue capacity), >= 1
    uint64_t seed;      // shuffle and augmentation seed
    int shuffle;        // 1: epoch-seeded permutation; 0: dataset order (validation)
    int augment;        // 1: the reference's training augmentation; 0: resize + normalise only
    int drop_last;      // 1: drop a final partial batch of each epoch
    int rank, world;    // data-parallel shard: this rank of `world` (world >= 1)
    int cache;          // 1: keep resized 8-bit images and masks in memory after first use
} LoaderConfig;

// Defaults: batch 8, size 352, 2 workers, prefetch 4, seed 0, shuffle, augment,
// no drop_last, rank 0 of 1, no cache.
LoaderConfig loader_config_default(void);

typedef struct {
    int n;                        // samples in this batch (<= batch_size; short only at an epoch's end)
    int64_t epoch, step;          // the cursor of this batch; resume from (epoch, step + 1)
    Tensor image;                 // (n, S, S, 3) f32, ImageNet-normalised
    Tensor mask;                  // (n, S, S, 1) f32 in {0, 1}
    const int *index;             // (n) indices into the Dataset
    const DataSample *const *sample;  // (n) name, category, subset, mask path (GT resolution)
    const int *orig_w, *orig_h;   // (n) original image sizes, for scoring at GT resolution
} Batch;

typedef struct Loader Loader;

// Starts the workers at cursor (epoch, step); the stream ends before end_epoch
// (end_epoch <= 0: never ends). The dataset must outlive the loader.
cx_status loader_open(Loader **L, const Dataset *ds, const LoaderConfig *cfg, int64_t epoch, int64_t step, int64_t end_epoch);
// The next batch in order, or *b = NULL after the last one. The batch stays valid
// until the next call or loader_close. A sample that fails to load (a file that
// changed after the scan) makes this return its error.
cx_status loader_next(Loader *L, const Batch **b);
int64_t loader_steps_per_epoch(const Loader *L);
int64_t loader_samples_per_epoch(const Loader *L);   // this rank's share, padding included
size_t loader_cache_bytes(const Loader *L);          // memory held by the cache now
void loader_close(Loader *L);

// Which dataset index sits at position `pos` of this rank's order for `epoch`
// (the loader's ordering, exposed for tests and for the trainer's bookkeeping).
// order: (loader_samples_per_epoch) output.
void loader_epoch_order(const Dataset *ds, const LoaderConfig *cfg, int64_t epoch, int *order);

// Loads one sample synchronously, exactly as a worker would: img (S, S, 3) and
// mask (S, S, 1) f32 (mask may be NULL), with sample `index`'s augmentation for
// `epoch` when cfg->augment. *w, *h get the original size (may be NULL).
cx_status loader_load_sample(const Dataset *ds, const LoaderConfig *cfg, int64_t epoch, int index,
                             float *img, float *mask, int *w, int *h);
// The decode + resize part: img (S, S, 3) u8, mask01 (S, S) u8 in {0, 1}.
cx_status loader_load_resized(const DataSample *s, int S, uint8_t *img, uint8_t *mask01, int *w, int *h);
