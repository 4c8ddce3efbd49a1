// validate.h — what an epoch's boundaries decide in the reference recipe: which
// backbone stages train (freezing: stage 1 freezes the backbone; stage 2 trains
// everything, or unfreezes it progressively), and how the model scores on the
// held-out split (validation: the standard COD metrics at each ground truth's
// resolution, infer/infer.h's probability maps, the reference's IoU).
//
//   train_freeze(&opt, frozen, &model.pt, stage, epoch_in_stage, stage_epochs, progressive);
//   ValResult vr;
//   int data_failed = 0;
//   CX_TRY(train_validate(&model, use_ema ? &ema : NULL, &val_split, gt, batch, &cfg, &store, &comm, &vr,
//                         &data_failed));
//   printf("Sα %.4f\n", vr.s.sm);
#pragma once
#include "data/image.h"
#include "infer/open.h"
#include "train/comm.h"
#include "train/optim.h"
#include "train/train_config.h"
#include "train/valshard.h"

// frozen (pt->n, the optimizer's entry_frozen) and opt's group flags for epoch j of
// the n epochs of stage: stage 1 freezes the backbone group; stage 2 with progressive
// unfreezing freezes all backbone stages but stages_3 in its first third, all but
// stages_2-3 in its second, none after.
void train_freeze(AdamW *opt, unsigned char *frozen, const ParamTable *pt, int stage, int j, int n, int progressive);
// Scores the validation split va with m (the EMA weights when ema is non-NULL; its
// runtime in evaluation mode meanwhile) at c->img_size, batch images per batch:
// logits resized bilinearly to each ground truth's size, sigmoid, exported as 8 bits
// (metrics_accum_prob), measured. gt (va->n) caches the masks, loaded at first use.
// Data parallel (train/valshard.h): rank 0's BatchNorm running statistics are sent to
// every rank first; rank r scores its block of whole batches and rank 0 adds every
// image's scores in image order: the numbers of one process on the same weights, bit
// for bit (given the same threads per process, as for an exact resume). A data file
// that fails sets *data_failed.
cx_status train_validate(Model *m, Ema *ema, const Dataset *va, Image8 *gt, int batch, const TrainConfig *c,
                         DistStore *store, Comm *comm, ValResult *vr, int *data_failed);
