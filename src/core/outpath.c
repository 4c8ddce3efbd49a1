// outpath.c — see outpath.h.
#define _POSIX_C_SOURCE 200809L
#include "outpath.h"
#include "io.h"
#include "safetensors.h"
#include <cjson/cJSON.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

// A PNG's tEXt "Software" chunk, before the image data.
static void png_mark(FILE *f, char *out, size_t n) {
    uint8_t c[8];
    for (int k = 0; k < 4096 && fread(c, 1, 8, f) == 8; k++) {
        uint32_t len = (uint32_t)c[0] << 24 | (uint32_t)c[1] << 16 | (uint32_t)c[2] << 8 | c[3];
        if (!memcmp(c + 4, "IDAT", 4) || !memcmp(c + 4, "IEND", 4) || len > (1u << 30)) break;
        if (!memcmp(c + 4, "tEXt", 4) && len > 9 && len < 4096) {
            char t[4096];
            if (fread(t, 1, len, f) != len) break;
            if (!memcmp(t, "Software", 9)) {
                snprintf(out, n, "%.*s", (int)(len - 9), t + 9);
                break;
            }
            if (fseek(f, 4, SEEK_CUR)) break;   // CRC
        } else if (fseek(f, (long)len + 4, SEEK_CUR)) {
            break;
        }
    }
}

// A JPEG's first comment (COM) segment, before the scan.
static void jpeg_mark(FILE *f, char *out, size_t n) {
    if (fseek(f, 2, SEEK_SET)) return;
    uint8_t m[4];
    for (int k = 0; k < 256 && fread(m, 1, 4, f) == 4 && m[0] == 0xFF; k++) {
        unsigned len = (unsigned)m[2] << 8 | m[3];
        if (m[1] == 0xDA || m[1] == 0xD9 || len < 2) break;   // start of scan, end of image
        if (m[1] == 0xFE) {
            char t[4096];
            size_t L = len - 2 < sizeof t - 1 ? len - 2 : sizeof t - 1;
            if (fread(t, 1, L, f) == L) snprintf(out, n, "%.*s", (int)L, t);
            break;
        }
        if (fseek(f, (long)len - 2, SEEK_CUR)) break;
    }
}

// A protobuf varint at b[*i] (b has len bytes); 0 and *i unchanged past the end.
static uint64_t varint(const uint8_t *b, size_t len, size_t *i) {
    uint64_t v = 0;
    for (int s = 0; *i < len && s < 64; s += 7) {
        uint8_t c = b[(*i)++];
        v |= (uint64_t)(c & 0x7F) << s;
        if (!(c & 0x80)) return v;
    }
    return 0;
}

// An ONNX ModelProto's producer_name (field 2) after its ir_version (field 1), as
// infer/onnx.c writes them first.
static void onnx_mark(const uint8_t *b, size_t len, char *out, size_t n) {
    size_t i = 1;
    varint(b, len, &i);
    if (i >= len || b[i] != 0x12) return;
    i++;
    uint64_t L = varint(b, len, &i);
    if (L == 0 || L > 256 || i + L > len) return;
    for (uint64_t k = 0; k < L; k++)
        if (b[i + k] < 0x20 || b[i + k] > 0x7E) return;
    snprintf(out, n, "%.*s", (int)L, (const char *)b + i);
}

cx_status outpath_read_mark(const char *path, char *mark, size_t n) {
    if (n) mark[0] = 0;
    FILE *f;
    CX_TRY(io_open_regular(path, &f));
    // Binary formats by their first bytes; everything else as text: the first 1 MiB
    // is plenty for the reports camoxpert writes.
    size_t cap = 1 << 20;
    uint8_t *buf = cx_malloc(cap + 1);
    size_t len = fread(buf, 1, cap, f);
    buf[len] = 0;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0 && len >= 8; i--) hlen = hlen << 8 | buf[i];
    if (len >= 8 && !memcmp(buf, "\x89PNG\r\n\x1a\n", 8)) {
        fseek(f, 8, SEEK_SET);
        png_mark(f, mark, n);
    } else if (len >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF) {
        jpeg_mark(f, mark, n);
    } else if (len > 9 && buf[8] == '{' && hlen >= 2 && hlen < (100u << 20)) {
        // A safetensors file: a checkpoint camoxpert train wrote carries its model config.
        fclose(f);
        f = NULL;
        char *cfg = NULL;
        if (!st_read_meta(path, "camoxpert_config", &cfg) && cfg) snprintf(mark, n, "%s", OWNER_TRAIN);
        free(cfg);
    } else if (len > 2 && buf[0] == 0x08) {
        onnx_mark(buf, len, mark, n);
    } else if (!memchr(buf, 0, len)) {
        size_t i = 0;
        while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\n' || buf[i] == '\r')) i++;
        const char *t = (const char *)buf;
        if (i < len && (t[i] == '{' || t[i] == '[')) {
            cJSON *j = cJSON_ParseWithLength(t, len);
            const cJSON *o = cJSON_IsArray(j) ? cJSON_GetArrayItem(j, 0) : j;
            const cJSON *s = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, "software") : NULL;
            if (cJSON_IsString(s)) snprintf(mark, n, "%s", s->valuestring);
            cJSON_Delete(j);
        } else if (i < len && !strncasecmp(t + i, "<!DOCTYPE html", 14)) {
            // An HTML page: its <meta name="generator" content="..."> in the head (report/page.c writes it).
            static const char key[] = "<meta name=\"generator\" content=\"";
            const char *g = strstr(t + i, key), *head_end = strstr(t + i, "</head>");
            if (g && (!head_end || g < head_end)) {
                g += sizeof key - 1;
                snprintf(mark, n, "%.*s", (int)strcspn(g, "\""), g);
            }
        } else {
            snprintf(mark, n, "%.*s", (int)strcspn(t, "\r\n"), t);
        }
    }
    free(buf);
    if (f) fclose(f);
    return CX_OK;
}

cx_status outpath_check(const char *path, const char *mark, int overwrite, const char *opt) {
    size_t L = strlen(path);
    if (L == 0) return CX_FAIL(CX_EARG, "%s: an empty path; name the file to write", opt);
    if (path[L - 1] == '/')
        return CX_FAIL(CX_EARG, "%s: %s names a directory; name the file to write in it", opt, path);
    struct stat sb;
    if (lstat(path, &sb) != 0) return CX_OK;   // nothing there
    if (S_ISLNK(sb.st_mode))
        return overwrite ? CX_OK
                         : CX_FAIL(CX_EARG, "%s: %s is a symbolic link; camoxpert never writes through one (choose "
                                   "another %s, or pass --overwrite to replace the link itself)", opt, path, opt);
    if (!S_ISREG(sb.st_mode))
        return CX_FAIL(CX_EARG, "%s: %s exists and is %s, not a file camoxpert may replace; choose another %s", opt, path,
                       io_file_type_name(sb.st_mode), opt);
    char have[256] = "";
    if (outpath_read_mark(path, have, sizeof have) == CX_OK && !strcmp(have, mark)) return CX_OK;   // our own: a rerun
    if (overwrite) return CX_OK;
    char whose[300];
    if (!strncmp(have, "camoxpert ", 10)) snprintf(whose, sizeof whose, "was not written by %s (%s wrote it)", mark, have);
    else snprintf(whose, sizeof whose, "was not written by %s", mark);
    return CX_FAIL(CX_EARG, "%s: %s exists and %s; refusing to replace it (choose another %s, or pass --overwrite to "
                   "replace it)", opt, path, whose, opt);
}

int outpath_dir_holds_run(const char *dir, char *what, size_t n) {
    static const char *const names[] = { "last.safetensors", "best.safetensors", "train_log.jsonl", NULL };
    return io_dir_holds_any(dir, names, what, n);
}
