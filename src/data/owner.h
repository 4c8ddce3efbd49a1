// owner.h — never overwrite what camoxpert did not write. Every file a command
// writes carries that command's mark ("camoxpert predict", "camoxpert synth", ...):
// a PNG tEXt "Software" chunk, a JPEG comment, a top-level "software" key in JSON
// (in each object of a JSON array), an HTML page's <meta name="generator" content>, and
// for a CSV (or another text file) its exact first line. A command
// replaces an existing file only when it carries the command's own mark (a rerun),
// or when the user passes --overwrite; anything else (a photo, a ground-truth mask,
// another tool's report, a directory, a FIFO) is refused, naming the path and the fix.
//
//   CX_TRY(owner_check_replace("masks/a.png", OWNER_PREDICT, overwrite, "--out"));
//   image_save_png_as("masks/a.png", &mask, OWNER_PREDICT);
#pragma once
#include "core/core.h"

#define OWNER_PREDICT "camoxpert predict"
#define OWNER_SYNTH "camoxpert synth"
#define OWNER_EVAL "camoxpert eval"
#define OWNER_BENCH "camoxpert bench"

// The mark of the file at path: the PNG/JPEG Software text, a JSON document's
// "software" (or its first element's), an HTML page's generator, else the first line
// of a text file; "" when none. Errors only when path cannot be read.
cx_status owner_read(const char *path, char *mark, size_t n);
// May a command whose mark is `mark` write `path`? CX_OK when nothing is there, or a
// regular file carrying `mark`, or (overwrite) any regular file; else CX_EARG naming
// the path, what it is, the option that chose it (`opt`) and the fix.
cx_status owner_check_replace(const char *path, const char *mark, int overwrite, const char *opt);
