// threads.h — one thread-count setting for OpenMP and OpenBLAS (`--threads`).
#pragma once
int cx_threads_default(void);   // the number of online cores
void cx_threads_set(int n);     // n <= 0 means the default
int cx_threads_get(void);
