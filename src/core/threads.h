// threads.h — one thread-count setting for OpenMP and OpenBLAS (`--threads`).
#pragma once
int cx_threads_default(void);   // the number of online cores
void cx_threads_set(int n);     // n <= 0 means the default
int cx_threads_get(void);
// The most threads a --threads or --num-workers option may ask for: 8 per core,
// at least 64, at most 1024 (a runaway count exhausts memory inside the OpenMP
// runtime, which has no way to report it).
int cx_threads_max(void);
