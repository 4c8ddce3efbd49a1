// threads.h — one thread-count setting for OpenMP and OpenBLAS (`--threads`).
#pragma once
int cx_threads_default(void);   // the number of online cores
void cx_threads_set(int n);     // n <= 0 means the default
int cx_threads_get(void);
// The most threads a --threads or --num-workers option may ask for: 8 per core,
// at least 64, at most 1024 (a runaway count exhausts memory inside the OpenMP
// runtime, which has no way to report it).
int cx_threads_max(void);
// Inside an OpenMP parallel region: this thread's number (*t) and the team's size (*T);
// 0 and 1 outside one or without OpenMP. The CPU kernels give thread t the rows
// [R·t/T, R·(t+1)/T) and add per-thread partials in thread order: deterministic for a
// given thread count.
void cx_thread_team(int *t, int *T);
