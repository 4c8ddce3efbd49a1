// rng.c — see rng.h. Each number is splitmix64's finaliser applied twice to
// (key, counter); this passes BigCrush as a counter-based generator and needs
// no state beyond the counter.
#include "rng.h"
#include <math.h>

uint64_t rng_hash64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

Rng rng_init(uint64_t seed) { Rng r = { rng_hash64(seed ^ 0x6a09e667f3bcc908ULL), 0 }; return r; }

Rng rng_split(const Rng *r, uint64_t stream) {
    Rng c = { rng_hash64(r->key ^ rng_hash64(stream + 0x3c6ef372fe94f82bULL)), 0 };
    return c;
}

uint64_t rng_u64(Rng *r) { return rng_hash64(r->key ^ rng_hash64(r->ctr++)); }
uint32_t rng_u32(Rng *r) { return (uint32_t)(rng_u64(r) >> 32); }
double rng_uniform(Rng *r) { return (double)(rng_u64(r) >> 11) * (1.0 / 9007199254740992.0); }

uint64_t rng_below(Rng *r, uint64_t n) {
    if (n <= 1) return 0;
    uint64_t lim = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = rng_u64(r); while (x >= lim);
    return x % n;
}

double rng_normal(Rng *r) {
    double u1 = rng_uniform(r), u2 = rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

double rng_trunc_normal(Rng *r, double std, double a, double b) {
    for (int i = 0; i < 1000; i++) {
        double v = rng_normal(r) * std;
        if (v >= a && v <= b) return v;
    }
    return 0.0;
}
