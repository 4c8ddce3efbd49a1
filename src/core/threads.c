// threads.c — see threads.h.
#include "threads.h"
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

void openblas_set_num_threads(int);   // from OpenBLAS (cblas.h does not always declare it)

static int cx_nthreads = 0;

int cx_threads_default(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

void cx_threads_set(int n) {
    if (n <= 0) n = cx_threads_default();
    cx_nthreads = n;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    openblas_set_num_threads(n);
}

int cx_threads_max(void) {
    int m = 8 * cx_threads_default();
    return m < 64 ? 64 : m > 1024 ? 1024 : m;
}

int cx_threads_get(void) { return cx_nthreads > 0 ? cx_nthreads : cx_threads_default(); }

void cx_thread_team(int *t, int *T) {
#ifdef _OPENMP
    *t = omp_get_thread_num();
    *T = omp_get_num_threads();
#else
    *t = 0;
    *T = 1;
#endif
}
