// core.h — the whole core layer in one include.
#pragma once
#include "arena.h"
#include "device.h"
#include "error.h"
#include "io.h"
#include "log.h"
#include "outpath.h"
#include "rng.h"
#include "safetensors.h"
#include "tensor.h"
#include "threads.h"
