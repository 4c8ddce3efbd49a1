// safetensors.c — see safetensors.h.
#include "safetensors.h"
#include "io.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER (100u << 20)

static int dtype_parse(const char *s, cx_dtype *dt) {
    static const struct { const char *n; cx_dtype d; } tab[] = {
        { "F32", DT_F32 }, { "F64", DT_F64 }, { "I32", DT_I32 }, { "I64", DT_I64 },
        { "U8", DT_U8 }, { "BF16", DT_BF16 }, { "F16", DT_F16 }, { "BOOL", DT_BOOL },
    };
    for (size_t i = 0; i < sizeof tab / sizeof *tab; i++)
        if (!strcmp(s, tab[i].n)) { *dt = tab[i].d; return 1; }
    return 0;
}

static int cmp_name(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

static int cmp_begin(const void *a, const void *b) {
    const StEntry *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : 0;
}

void st_close(StFile *f) {
    for (int i = 0; i < f->n; i++) free(f->entries[i].name);
    for (int i = 0; i < f->n_meta; i++) { free(f->meta_keys[i]); free(f->meta_vals[i]); }
    free(f->entries);
    free(f->meta_keys);
    free(f->meta_vals);
    free(f->buf);
    free(f->path);
    if (f->fp) fclose(f->fp);
    memset(f, 0, sizeof *f);
}

#define BAD(...) do { st = CX_FAIL(CX_EFORMAT, __VA_ARGS__); goto fail; } while (0)

// What a file that is not safetensors is, by its first bytes: PyTorch's own formats get
// how to convert them (tools/pth_to_safetensors.py).
static const char *foreign_format(const unsigned char *b, size_t n) {
    if (n >= 4 && !memcmp(b, "PK\x03\x04", 4))
        return "a PyTorch checkpoint (torch.save's zip format, .pt/.pth), not safetensors; convert it with "
               "tools/pth_to_safetensors.py IN.pth OUT.safetensors (PyTorch needed once), or in Python: "
               "safetensors.torch.save_file(torch.load(IN, map_location='cpu'), OUT)";
    if (n >= 2 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5)
        return "a pickle (PyTorch's legacy .pth/.pt format), not safetensors; convert it with "
               "tools/pth_to_safetensors.py IN.pth OUT.safetensors (PyTorch needed once)";
    if (n >= 4 && !memcmp(b, "\x89HDF", 4)) return "an HDF5 file (Keras?), not safetensors";
    if (n >= 2 && b[0] == 0x08 && n > 8) return "not safetensors (an ONNX model? camoxpert reads safetensors checkpoints)";
    return NULL;
}

// Parses and checks the header; data_size: the bytes after it in the file (the buffer
// may hold only the header: st_open_header).
static cx_status st_parse(StFile *f, const char *name, unsigned char *buf, size_t size, size_t file_size) {
    cx_status st = CX_OK;
    cJSON *root = NULL;
    memset(f, 0, sizeof *f);
    f->path = cx_strdup(name);
    f->buf = buf;
    f->size = size;
    const char *foreign = foreign_format(buf, size);
    if (size < 8) BAD("%s: not a safetensors file (%zu bytes, shorter than the 8-byte header length)", name, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
    if (foreign && (hlen > file_size - 8 || size <= 8 || buf[8] != '{')) BAD("%s is %s", name, foreign);
    if (hlen > file_size - 8 || hlen > ST_MAX_HEADER)
        BAD("%s: header length %llu does not fit in the file (%zu bytes): truncated or not a safetensors file",
            name, (unsigned long long)hlen, file_size);
    size_t data_size = file_size - 8 - (size_t)hlen;
    const unsigned char *data = size == file_size ? buf + 8 + hlen : NULL;
    root = cJSON_ParseWithLength((const char *)buf + 8, (size_t)hlen);
    if (!root || !cJSON_IsObject(root)) BAD("%s: header is not a JSON object (corrupt file?)", name);
    int count = 0;
    for (cJSON *it = root->child; it; it = it->next) count++;
    f->entries = cx_calloc((size_t)count + 1, sizeof *f->entries);
    for (cJSON *it = root->child; it; it = it->next) {
        if (!it->string) BAD("%s: header entry without a name", name);
        if (!strcmp(it->string, "__metadata__")) {
            if (!cJSON_IsObject(it)) BAD("%s: __metadata__ is not an object", name);
            for (cJSON *m = it->child; m; m = m->next) {
                if (!cJSON_IsString(m)) BAD("%s: __metadata__ value of '%s' is not a string", name, m->string);
                f->meta_keys = cx_realloc(f->meta_keys, sizeof(char *) * (size_t)(f->n_meta + 1));
                f->meta_vals = cx_realloc(f->meta_vals, sizeof(char *) * (size_t)(f->n_meta + 1));
                f->meta_keys[f->n_meta] = cx_strdup(m->string);
                f->meta_vals[f->n_meta] = cx_strdup(m->valuestring);
                f->n_meta++;
            }
            continue;
        }
        const char *tn = it->string;
        StEntry *e = &f->entries[f->n];
        e->name = cx_strdup(tn);
        f->n++;
        cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
        cJSON *sh = cJSON_GetObjectItemCaseSensitive(it, "shape");
        cJSON *off = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
        if (!cJSON_IsString(dt) || !dtype_parse(dt->valuestring, &e->dtype))
            BAD("%s: tensor '%s' has a missing or unsupported dtype", name, tn);
        if (!cJSON_IsArray(sh) || cJSON_GetArraySize(sh) > CX_MAXDIM)
            BAD("%s: tensor '%s' has a missing shape or more than %d dimensions", name, tn, CX_MAXDIM);
        e->ndim = cJSON_GetArraySize(sh);
        uint64_t numel = 1;
        int d = 0;
        for (cJSON *s = sh->child; s; s = s->next, d++) {
            if (!cJSON_IsNumber(s) || s->valuedouble < 0 || s->valuedouble > 1e15 || s->valuedouble != floor(s->valuedouble))
                BAD("%s: tensor '%s' has an invalid dimension in its shape", name, tn);
            e->shape[d] = (int64_t)s->valuedouble;
            numel *= (uint64_t)e->shape[d];
            if (numel > (uint64_t)1 << 40) BAD("%s: tensor '%s' is impossibly large", name, tn);
        }
        if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
            BAD("%s: tensor '%s' needs data_offsets [begin, end]", name, tn);
        double b = cJSON_GetArrayItem(off, 0)->valuedouble, en = cJSON_GetArrayItem(off, 1)->valuedouble;
        if (!cJSON_IsNumber(cJSON_GetArrayItem(off, 0)) || !cJSON_IsNumber(cJSON_GetArrayItem(off, 1)) ||
            b < 0 || en < b || b != floor(b) || en != floor(en))
            BAD("%s: tensor '%s' has invalid data_offsets", name, tn);
        if (en > (double)data_size)
            BAD("%s: tensor '%s' ends at byte %.0f but the data section has only %zu bytes (truncated file?)",
                name, tn, en, data_size);
        e->begin = (size_t)b;
        e->end = (size_t)en;
        e->data = NULL;
        if ((uint64_t)(e->end - e->begin) != numel * dtype_size(e->dtype))
            BAD("%s: tensor '%s' has %zu bytes but dtype %s and its shape need %llu", name, tn,
                e->end - e->begin, dtype_name(e->dtype), (unsigned long long)(numel * dtype_size(e->dtype)));
        e->data = data ? data + e->begin : NULL;
    }
    // Duplicate names: sorted, so a header of any size is checked in n log n (a pairwise
    // check took 15 s on 80,000 entries).
    if (f->n > 1) {
        const char **names = cx_malloc(sizeof *names * (size_t)f->n);
        for (int i = 0; i < f->n; i++) names[i] = f->entries[i].name;
        qsort(names, (size_t)f->n, sizeof *names, cmp_name);
        int dup = -1;
        for (int i = 1; i < f->n && dup < 0; i++)
            if (!strcmp(names[i], names[i - 1])) dup = i;
        char dn[256] = "";
        if (dup >= 0) snprintf(dn, sizeof dn, "%s", names[dup]);
        free(names);
        if (dup >= 0) BAD("%s: tensor '%s' appears twice in the header", name, dn);
    }
    // The data section is covered exactly: no two tensors overlap (an empty one between
    // them hides nothing), no byte is left over between or after them (the format's rule:
    // no holes, so no file is also something else).
    qsort(f->entries, (size_t)f->n, sizeof *f->entries, cmp_begin);
    size_t covered = 0;
    const char *last = NULL;
    for (int i = 0; i < f->n; i++) {
        const StEntry *e = &f->entries[i];
        if (e->end == e->begin) continue;
        if (e->begin < covered) BAD("%s: tensors '%s' and '%s' overlap in the data section", name, last, e->name);
        if (e->begin > covered)
            BAD("%s: %zu bytes before tensor '%s' belong to no tensor (damaged, or not only a safetensors file)", name,
                e->begin - covered, e->name);
        covered = e->end, last = e->name;
    }
    if (covered != data_size)
        BAD("%s: %zu bytes after the last tensor belong to no tensor (damaged, or not only a safetensors file)", name,
            data_size - covered);
    cJSON_Delete(root);
    return CX_OK;
fail:
    cJSON_Delete(root);
    st_close(f);
    return st;
}

cx_status st_open_buffer(StFile *f, const char *name, unsigned char *buf, size_t size) {
    return st_parse(f, name, buf, size, size);
}

// The header of the file at path, checked against the file's size; keep_fp: the file
// stays open in f->fp (st_open: each tensor read from it when asked).
static cx_status open_header(StFile *f, const char *path, int keep_fp) {
    memset(f, 0, sizeof *f);
    FILE *fp;
    CX_TRY(io_open_regular(path, &fp));
    struct stat sb;
    unsigned char len[16] = { 0 };
    size_t got = fread(len, 1, sizeof len, fp);
    if (fstat(fileno(fp), &sb) != 0 || got < 8) {
        fclose(fp);
        unsigned char *b = cx_malloc(got + 1);
        memcpy(b, len, got);
        return st_parse(f, path, b, got, got);   // the messages of a short file
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | len[i];
    size_t fsz = (size_t)sb.st_size;
    size_t n = hlen <= fsz - 8 && hlen <= ST_MAX_HEADER ? 8 + (size_t)hlen : got;
    unsigned char *b = cx_malloc(n + 1);
    memcpy(b, len, got < n ? got : n);
    size_t more = n > got ? fread(b + got, 1, n - got, fp) : 0;
    if (n > got && more != n - got) {
        fclose(fp);
        free(b);
        return CX_FAIL(CX_EIO, "short read on %s (the header of %zu bytes)", path, n);
    }
    cx_status st = st_parse(f, path, b, n, fsz);
    if (st || !keep_fp) {
        fclose(fp);
        return st;
    }
    f->fp = fp;
    f->data_off = n;
    f->size = fsz;
    return CX_OK;
}

cx_status st_open_header(StFile *f, const char *path) { return open_header(f, path, 0); }

cx_status st_open(StFile *f, const char *path) { return open_header(f, path, 1); }

// Bytes [off, off + n) of the data section into dst.
static cx_status read_data(const StFile *f, const StEntry *e, void *dst, size_t n) {
    if (!f->fp) return CX_FAIL(CX_EINTERNAL, "%s: tensor '%s' asked of a file opened for its header only", f->path, e->name);
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(fileno(f->fp), (char *)dst + done, n - done, (off_t)(f->data_off + e->begin + done));
        if (r <= 0) return CX_FAIL(CX_EIO, "%s: tensor '%s': the file ends or cannot be read at byte %zu (truncated or "
                                   "changed since it was opened?)", f->path, e->name, f->data_off + e->begin + done);
        done += (size_t)r;
    }
    return CX_OK;
}

cx_status st_read_meta(const char *path, const char *key, char **value) {
    *value = NULL;
    StFile f;
    CX_TRY(st_open_header(&f, path));
    const char *v = st_meta(&f, key);
    if (v) *value = cx_strdup(v);
    st_close(&f);
    return CX_OK;
}

const StEntry *st_find(const StFile *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->entries[i].name, name)) return &f->entries[i];
    return NULL;
}

const char *st_meta(const StFile *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta_keys[i], key)) return f->meta_vals[i];
    return NULL;
}

static double half_to_double(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(m + 1024, e - 25);
    return s ? -v : v;
}

cx_status st_entry_read(const StFile *f, const StEntry *e, Tensor *dst) {
    int64_t n = 1;
    for (int i = 0; i < e->ndim; i++) n *= e->shape[i];
    if (n != tensor_numel(dst)) {
        char a[128];
        return CX_FAIL(CX_ESHAPE, "%s: tensor '%s' has %lld elements, expected %lld (shape %s)", f->path, e->name,
                       (long long)n, (long long)tensor_numel(dst), tensor_shape_str(dst, a, sizeof a));
    }
    const size_t bytes = (size_t)n * dtype_size(e->dtype);
    if (!e->data && e->dtype == dst->dtype) return read_data(f, e, dst->data, bytes);   // straight into dst
    unsigned char *tmp = NULL;
    const unsigned char *p = e->data;
    if (!p) {
        tmp = cx_malloc(bytes ? bytes : 1);
        cx_status st = read_data(f, e, tmp, bytes);
        if (st) { free(tmp); return st; }
        p = tmp;
    }
    cx_status st = CX_OK;
    if (e->dtype == dst->dtype) memcpy(dst->data, p, bytes);
    for (int64_t i = 0; i < n && e->dtype != dst->dtype && !st; i++) {
        double v;
        switch (e->dtype) {
        case DT_F32: { float x; memcpy(&x, p + 4 * i, 4); v = x; break; }
        case DT_F64: { memcpy(&v, p + 8 * i, 8); break; }
        case DT_I32: { int32_t x; memcpy(&x, p + 4 * i, 4); v = x; break; }
        case DT_I64: { int64_t x; memcpy(&x, p + 8 * i, 8); v = (double)x; break; }
        case DT_U8: case DT_BOOL: v = p[i]; break;
        case DT_BF16: { uint16_t h; memcpy(&h, p + 2 * i, 2); uint32_t u = (uint32_t)h << 16; float x; memcpy(&x, &u, 4); v = x; break; }
        case DT_F16: { uint16_t h; memcpy(&h, p + 2 * i, 2); v = half_to_double(h); break; }
        default: st = CX_FAIL(CX_EFORMAT, "%s: tensor '%s': unsupported dtype", f->path, e->name); continue;
        }
        if (dst->dtype == DT_BF16 || dst->dtype == DT_F16)
            st = CX_FAIL(CX_EINTERNAL, "conversion to %s not supported", dtype_name(dst->dtype));
        else tensor_set(dst, i, v);
    }
    free(tmp);
    return st;
}

cx_status st_read(const StFile *f, const char *name, Tensor *dst) {
    const StEntry *e = st_find(f, name);
    if (!e) return CX_FAIL(CX_ENOTFOUND, "%s: no tensor named '%s'", f->path, name);
    bool same = e->ndim == dst->ndim;
    for (int i = 0; same && i < e->ndim; i++) same = e->shape[i] == dst->shape[i];
    if (!same) {
        char a[128], b[128];
        Tensor t = tensor_view(NULL, e->dtype, e->ndim, e->shape);
        return CX_FAIL(CX_ESHAPE, "%s: tensor '%s' has shape %s, expected %s", f->path, name,
                       tensor_shape_str(&t, a, sizeof a), tensor_shape_str(dst, b, sizeof b));
    }
    return st_entry_read(f, e, dst);
}

void st_writer_init(StWriter *w) { memset(w, 0, sizeof *w); }

void st_writer_add(StWriter *w, const char *name, const Tensor *t) {
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->items = cx_realloc(w->items, sizeof *w->items * (size_t)w->cap);
    }
    w->items[w->n].name = cx_strdup(name);
    w->items[w->n].t = *t;
    w->n++;
}

void st_writer_meta(StWriter *w, const char *key, const char *value) {
    w->meta_keys = cx_realloc(w->meta_keys, sizeof(char *) * (size_t)(w->n_meta + 1));
    w->meta_vals = cx_realloc(w->meta_vals, sizeof(char *) * (size_t)(w->n_meta + 1));
    w->meta_keys[w->n_meta] = cx_strdup(key);
    w->meta_vals[w->n_meta] = cx_strdup(value);
    w->n_meta++;
}

cx_status st_writer_save(StWriter *w, const char *path) {
    cJSON *root = cJSON_CreateObject();
    if (w->n_meta) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; i < w->n_meta; i++) cJSON_AddStringToObject(m, w->meta_keys[i], w->meta_vals[i]);
    }
    if (w->n > 1) {   // duplicate names, in n log n
        const char **names = cx_malloc(sizeof *names * (size_t)w->n);
        for (int i = 0; i < w->n; i++) names[i] = w->items[i].name;
        qsort(names, (size_t)w->n, sizeof *names, cmp_name);
        for (int i = 1; i < w->n; i++)
            if (!strcmp(names[i], names[i - 1])) {
                cx_status st = CX_FAIL(CX_EINTERNAL, "writing %s: tensor name '%s' used twice", path, names[i]);
                free(names);
                cJSON_Delete(root);
                return st;
            }
        free(names);
    }
    size_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const Tensor *t = &w->items[i].t;
        cJSON *o = cJSON_AddObjectToObject(root, w->items[i].name);
        cJSON_AddStringToObject(o, "dtype", dtype_name(t->dtype));
        cJSON *sh = cJSON_AddArrayToObject(o, "shape");
        for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[d]));
        cJSON *of = cJSON_AddArrayToObject(o, "data_offsets");
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
        off += tensor_nbytes(t);
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
    }
    char *js = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    size_t hl = strlen(js), padded = (hl + 7) / 8 * 8;   // keep the data 8-byte aligned
    AtomicFile af;
    cx_status st = io_atomic_begin(&af, path);
    if (st) { free(js); return st; }
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    fwrite(len, 1, 8, af.fp);
    fwrite(js, 1, hl, af.fp);
    for (size_t i = hl; i < padded; i++) fputc(' ', af.fp);
    free(js);
    for (int i = 0; i < w->n; i++) fwrite(w->items[i].t.data, 1, tensor_nbytes(&w->items[i].t), af.fp);
    return io_atomic_commit(&af);
}

void st_writer_free(StWriter *w) {
    for (int i = 0; i < w->n; i++) free(w->items[i].name);
    for (int i = 0; i < w->n_meta; i++) { free(w->meta_keys[i]); free(w->meta_vals[i]); }
    free(w->items);
    free(w->meta_keys);
    free(w->meta_vals);
    memset(w, 0, sizeof *w);
}
