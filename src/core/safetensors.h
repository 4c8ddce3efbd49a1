// safetensors.h — strict reader and atomic writer of the safetensors format
// (https://huggingface.co/docs/safetensors): 8-byte little-endian header
// length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__":
// {str: str}}, then the data. The reader validates everything before any
// tensor is used: header length within the file, well-formed JSON, known
// dtypes, shapes that agree with byte ranges, ranges that cover the data section
// exactly (no overlap, no hole, nothing after the last), no duplicate names. A
// PyTorch .pt/.pth file (zip or pickle) is named as such, with how to convert it.
//
//   StFile f;
//   CX_TRY(st_open(&f, "model.safetensors"));
//   const StEntry *e = st_find(&f, "stem.0.weight");
//   Tensor w = tensor_new(&arena, DT_F64, e->ndim, e->shape);
//   CX_TRY(st_entry_read(&f, e, &w));     // converts F32 -> F64
//   st_close(&f);
#pragma once
#include "error.h"
#include "tensor.h"

typedef struct {
    char *name;
    cx_dtype dtype;
    int ndim;
    int64_t shape[CX_MAXDIM];
    size_t begin, end;        // byte range within the data section
    const void *data;         // points into the file buffer (may be unaligned); NULL when read from the file
} StEntry;

typedef struct {
    char *path;
    unsigned char *buf;       // the whole file (st_open_buffer), or its header (st_open)
    size_t size;              // the file's size
    FILE *fp;                 // st_open: the open file, each entry read from it when asked (NULL: buf holds all)
    size_t data_off;          // st_open: where the data section begins in the file
    StEntry *entries;         // in file order of data offsets
    int n;
    char **meta_keys, **meta_vals;
    int n_meta;
} StFile;

// Reads and checks the header; each tensor is read from the file when asked (a
// checkpoint is never held in memory whole beside the table it is loaded into).
cx_status st_open(StFile *f, const char *path);
// Same validation on an in-memory image (takes ownership of buf, malloc'd).
cx_status st_open_buffer(StFile *f, const char *name, unsigned char *buf, size_t size);
// Only the header (names, shapes, metadata; every check): entries' data is NULL and
// st_entry_read must not be called. Reads a few KB of a large checkpoint.
cx_status st_open_header(StFile *f, const char *path);
void st_close(StFile *f);
const StEntry *st_find(const StFile *f, const char *name);   // NULL if absent
// One __metadata__ value of a file, reading only its header (checkpoints are large):
// *value is malloc'd, or NULL when the key is absent. Errors name the file.
cx_status st_read_meta(const char *path, const char *key, char **value);
const char *st_meta(const StFile *f, const char *key);        // NULL if absent
// Copies the entry into dst, converting F32/F64/F16/BF16/I32/I64/U8/BOOL to
// dst's dtype. dst must have the same number of elements (shapes may differ,
// e.g. NCHW vs NHWC callers permute themselves); error names the tensor otherwise.
cx_status st_entry_read(const StFile *f, const StEntry *e, Tensor *dst);
// st_find + shape check against dst (same ndim and dims) + st_entry_read.
cx_status st_read(const StFile *f, const char *name, Tensor *dst);

typedef struct {
    int n, cap;
    struct { char *name; Tensor t; } *items;   // data is referenced, not copied
    int n_meta;
    char **meta_keys, **meta_vals;
} StWriter;

void st_writer_init(StWriter *w);
// Adds a tensor (kept by reference until st_writer_save). Duplicate names are an error at save.
void st_writer_add(StWriter *w, const char *name, const Tensor *t);
void st_writer_meta(StWriter *w, const char *key, const char *value);
cx_status st_writer_save(StWriter *w, const char *path);   // atomic
void st_writer_free(StWriter *w);
