// memory.h — what a CamoXpert model asks of its input and of the machine: the one
// input-size rule every command checks (train, predict, bench, checkpoint
// metadata), and an estimate of the peak memory of a training step or an
// inference before any of it runs, so a job that cannot fit is refused with a
// size that fits instead of growing until the machine kills it.
//
//   CX_TRY(camoxpert_check_img_size(S, "--img-size"));
#pragma once
#include "nn/camoxpert.h"

#define CAMOXPERT_MIN_IMG 32
#define CAMOXPERT_MAX_IMG 8192

// S must be a multiple of 32 (the backbone's stride) in [32, 8192]. The error
// names `what` (an option, or a file's metadata key), the value and the nearest
// valid sizes.
cx_status camoxpert_check_img_size(int64_t S, const char *what);
