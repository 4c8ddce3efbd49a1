// driver.c — a deterministic mutation driver for the fuzz harnesses, for
// compilers without libFuzzer (gcc -fsanitize=address). It runs each seed file
// given on the command line, then N mutants of each (bit flips, byte sets to
// interesting values, truncations, insertions, splices), all from a fixed seed.
//   fuzz_image_driver -n 2000 seeds/*
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);

static uint64_t st = 0x9E3779B97F4A7C15ULL;
static uint64_t next(void) { st ^= st << 13; st ^= st >> 7; st ^= st << 17; return st; }

int main(int argc, char **argv) {
    long iters = 1000;
    int first = 1;
    if (argc > 2 && !strcmp(argv[1], "-n")) { iters = atol(argv[2]); first = 3; }
    static const uint8_t interesting[] = { 0, 1, 0x7f, 0x80, 0xff, 0xfe, 0xd8, 0xd9, 0xda, 0xc0, 0xc2, 0xc4, 0xdb, 0x10, 0x08 };
    long runs = 0;
    for (int a = first; a < argc; a++) {
        FILE *f = fopen(argv[a], "rb");
        if (!f) { fprintf(stderr, "cannot open %s\n", argv[a]); return 2; }
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        uint8_t *seed = malloc((size_t)n + 1);
        if (fread(seed, 1, (size_t)n, f) != (size_t)n) { fclose(f); return 2; }
        fclose(f);
        LLVMFuzzerTestOneInput(seed, (size_t)n);
        uint8_t *buf = malloc((size_t)n * 2 + 64);
        for (long it = 0; it < iters; it++) {
            size_t m = (size_t)n;
            memcpy(buf, seed, m);
            int k = 1 + (int)(next() % 4);
            for (int j = 0; j < k && m > 0; j++) {
                size_t pos = next() % m;
                switch (next() % 5) {
                case 0: buf[pos] ^= (uint8_t)(1u << (next() % 8)); break;
                case 1: buf[pos] = interesting[next() % sizeof interesting]; break;
                case 2: m = pos + 1; break;                                     // truncate
                case 3: if (m < (size_t)n * 2 + 32) { memmove(buf + pos + 1, buf + pos, m - pos); buf[pos] = (uint8_t)next(); m++; } break;
                default: { size_t len = 1 + next() % 16, src = next() % m;      // copy a chunk elsewhere
                           if (pos + len <= m && src + len <= m) memmove(buf + pos, buf + src, len); } break;
                }
            }
            LLVMFuzzerTestOneInput(buf, m);
            runs++;
        }
        free(buf);
        free(seed);
    }
    printf("%ld mutated inputs ran cleanly\n", runs);
    return 0;
}
