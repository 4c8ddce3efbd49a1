// outpath.h — the output-path rule, one helper for every output path of every
// command (docs/RELIABILITY.md, "Never overwrite what camoxpert did not write").
//
// Every file a command writes carries that command's mark ("camoxpert predict",
// "camoxpert report", ...): a PNG tEXt "Software" chunk, a JPEG comment, a top-level
// "software" key in JSON (in each object of a JSON array), an HTML page's
// <meta name="generator" content>, an ONNX file's producer_name, a safetensors
// checkpoint's camoxpert_config (the mark of `camoxpert train`), and for a CSV (or
// another text file) its exact first line. A command replaces an existing file only
// when it carries the command's own mark (a rerun), or when the user passes
// --overwrite; anything else (a photo, a ground-truth mask, a checkpoint, another
// tool's report) is refused, naming the path, whose it is and the fix. What is not a
// regular file (a directory, a FIFO, a device, a socket) is refused even with
// --overwrite; a symbolic link is never written through (--overwrite replaces the link
// itself).
//
//   CX_TRY(outpath_check("runs/a/report.html", OWNER_REPORT, overwrite, "--out"));
//   ... io_atomic_begin / commit ...
#pragma once
#include "error.h"
#include <stddef.h>

#define OWNER_TRAIN "camoxpert train"
#define OWNER_PREDICT "camoxpert predict"
#define OWNER_SYNTH "camoxpert synth"
#define OWNER_EVAL "camoxpert eval"
#define OWNER_BENCH "camoxpert bench"
#define OWNER_REPORT "camoxpert report"
#define OWNER_EXPORT "camoxpert export"

// The mark of the file at path ("" when none); reads only what it needs (headers, at
// most 1 MiB of text). Errors only when path cannot be read (not a regular file).
cx_status outpath_read_mark(const char *path, char *mark, size_t n);
// May a command whose mark is `mark` write `path`? CX_OK when nothing is there, or a
// regular file carrying `mark`, or (overwrite) any regular file or a symbolic link;
// else CX_EARG naming the option that chose it (`opt`), the path, what is there and
// the fix. A path naming a directory ("out/", an existing folder) is refused too.
cx_status outpath_check(const char *path, const char *mark, int overwrite, const char *opt);
// Does dir hold a training run (its last/best checkpoint or its train_log.jsonl)?
// `what` gets the names found ("last.safetensors, train_log.jsonl"). A directory
// that does not exist holds none. Commands that fill a folder (predict --out) refuse
// one that does: their files would mix with the run's.
int outpath_dir_holds_run(const char *dir, char *what, size_t n);
