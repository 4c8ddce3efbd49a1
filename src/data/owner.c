// owner.c — see owner.h.
#include "data/owner.h"
#include "data/image.h"
#include <cjson/cJSON.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

cx_status owner_read(const char *path, char *mark, size_t n) {
    if (n) mark[0] = 0;
    CX_TRY(image_read_software(path, mark, n));
    if (mark[0]) return CX_OK;
    FILE *f;
    CX_TRY(io_open_regular(path, &f));
    // Text: the first line, and for JSON its "software" key; reports are small, 1 MiB is plenty.
    size_t cap = 1 << 20;
    char *buf = cx_malloc(cap + 1);
    size_t len = fread(buf, 1, cap, f);
    fclose(f);
    buf[len] = 0;
    size_t i = 0;
    while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\n' || buf[i] == '\r')) i++;
    if (i < len && (buf[i] == '{' || buf[i] == '[')) {
        cJSON *j = cJSON_ParseWithLength(buf, len);
        const cJSON *o = cJSON_IsArray(j) ? cJSON_GetArrayItem(j, 0) : j;
        const cJSON *s = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, "software") : NULL;
        if (cJSON_IsString(s)) snprintf(mark, n, "%s", s->valuestring);
        cJSON_Delete(j);
    } else if (i < len && !strncasecmp(buf + i, "<!DOCTYPE html", 14)) {
        // An HTML page: its <meta name="generator" content="..."> (report/page.c writes it).
        static const char key[] = "<meta name=\"generator\" content=\"";
        const char *g = strstr(buf + i, key), *head_end = strstr(buf + i, "</head>");
        if (g && (!head_end || g < head_end)) {
            g += sizeof key - 1;
            snprintf(mark, n, "%.*s", (int)strcspn(g, "\""), g);
        }
    } else if (memchr(buf, 0, len) == NULL) {
        size_t e = strcspn(buf, "\r\n");
        snprintf(mark, n, "%.*s", (int)e, buf);
    }
    free(buf);
    return CX_OK;
}

cx_status owner_check_replace(const char *path, const char *mark, int overwrite, const char *opt) {
    struct stat sb;
    if (lstat(path, &sb) != 0) return CX_OK;   // nothing there
    if (S_ISLNK(sb.st_mode))
        return overwrite ? CX_OK
                         : CX_FAIL(CX_EARG, "%s: %s is a symbolic link; camoxpert never writes through one (pass "
                                   "--overwrite to replace the link itself)", opt, path);
    if (!S_ISREG(sb.st_mode))
        return CX_FAIL(CX_EARG, "%s: %s exists and is not a regular file; choose another %s", opt, path, opt);
    char have[256];
    if (owner_read(path, have, sizeof have) == CX_OK && !strcmp(have, mark)) return CX_OK;   // our own: a rerun
    if (overwrite) return CX_OK;
    return CX_FAIL(CX_EARG, "%s: %s exists and was not written by %s; refusing to replace it (choose another %s, or "
                   "pass --overwrite to replace it)", opt, path, mark, opt);
}
