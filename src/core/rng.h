// rng.h — a counter-based, seeded random number generator.
// A stream is (key, counter); the n-th number is a pure function of both, so
// any draw can be recomputed (augmentation of sample i in epoch e) and streams
// split without sharing state (per thread, per rank, per purpose).
//
//   Rng r = rng_init(seed);
//   Rng aug = rng_split(&r, RNG_STREAM_AUGMENT);
//   Rng one = rng_split(&aug, epoch * n_samples + index);
//   float u = rng_uniform(&one);
#pragma once
#include <stdint.h>

typedef struct { uint64_t key, ctr; } Rng;

Rng rng_init(uint64_t seed);
Rng rng_split(const Rng *r, uint64_t stream);   // independent child stream
uint64_t rng_u64(Rng *r);
uint32_t rng_u32(Rng *r);
double rng_uniform(Rng *r);                      // [0, 1), 53 bits
uint64_t rng_below(Rng *r, uint64_t n);          // uniform in [0, n), unbiased
double rng_normal(Rng *r);                       // standard normal
// Normal(0, std) truncated to [a, b] (timm's trunc_normal_ with a = -2, b = 2 absolute).
double rng_trunc_normal(Rng *r, double std, double a, double b);
uint64_t rng_hash64(uint64_t x);                 // the mixing function (splitmix64 finaliser)
