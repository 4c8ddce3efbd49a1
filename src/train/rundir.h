// rundir.h — the checkpoint directory of a training run: one writer at a time (an
// advisory lock), another run's checkpoints are never overwritten by a new run,
// and the leftovers of killed saves are cleaned up.
//
// A directory "holds a run" when it has last.safetensors or best.safetensors. A new
// run (no --resume-from, or weights without a training state) may start only in a
// directory that holds none, unless --overwrite, which deletes the files runs write
// there (last*, best.safetensors, train_log.jsonl) first. Resuming a run keeps
// writing into the directory of the checkpoint it resumes.
//
//   char what[256];
//   if (rundir_has_run("runs/a", what, sizeof what)) ... // refuse early, naming `what`
//   RunDir rd;
//   CX_TRY(rundir_open(&rd, "runs/a"));   // before the first write: creates it; fails if another train holds it
//   rundir_close(&rd);
#pragma once
#include "core/core.h"
#include <stdint.h>

typedef struct {
    char dir[4096];
    int lock_fd;      // DIR itself, flock'ed for the life of the run (core/io.h io_dir_lock); -1 when closed
    int removed;      // leftovers of killed writes removed when the lock was taken
} RunDir;

// Creates dir if needed and takes its lock (exclusive, core/io.h's lock rule); CX_EIO
// naming the holder and its pid when another process (a second `camoxpert train`, a
// predict or a synth writing there) holds it.
cx_status rundir_open(RunDir *r, const char *dir);
void rundir_close(RunDir *r);
// CX_OK when no other process holds dir's lock now (or dir does not exist); otherwise
// rundir_open's error. Takes nothing: the early check before a run's set-up.
cx_status rundir_check_free(const char *dir);
// 1 when dir holds a run's checkpoints; `what` gets their names ("last.safetensors, best.safetensors").
// Creates nothing (a directory that does not exist holds none).
int rundir_has_run(const char *dir, char *what, size_t n);
// Deletes every file a run writes in dir (last.safetensors and its states,
// best.safetensors, train_log.jsonl) and the leftovers of killed saves.
cx_status rundir_clear(RunDir *r);
// Removes the temporary files of killed saves and the states no weights file names
// (keep: the token last.safetensors names). Returns how many files went.
int rundir_tidy(RunDir *r, uint64_t keep);
// Cuts train_log.jsonl back to `bytes` when it is longer (the lines of steps after
// the checkpoint being resumed, which will be run and logged again).
cx_status rundir_truncate_log(RunDir *r, int64_t bytes);
// Are a and b the same directory (device and inode)?
int rundir_same(const char *a, const char *b);
// The directory part of a file path ("." for a bare name), into out.
void rundir_dirname(const char *path, char *out, size_t n);
