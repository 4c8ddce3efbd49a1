// bench.h — what the benchmarks share: timing a step function.
#pragma once

typedef struct { double med, min; } Timing;   // seconds

// Runs step(arg) `warmup` times untimed, then `iters` (at most 64) times timed;
// returns the median and the minimum. Two warm-ups reach the steady state of a
// training step: the first grows the activation arena block by block, the reset
// before the second coalesces the blocks into one new block, which that step
// page-faults in again; from the third step on no page is faulted.
Timing bench_time(void (*step)(void *), void *arg, int warmup, int iters);
