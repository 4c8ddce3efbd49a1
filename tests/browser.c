// browser.c — headless Chromium for the tests of camoxpert's HTML pages (see browser.h).
#include "browser.h"
#include "test.h"
#include <string.h>
#include <sys/wait.h>

const char *browser_find(void) {
    static const char *const names[] = { "chromium", "chromium-browser", "google-chrome", NULL };
    for (int i = 0; names[i]; i++) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", names[i]);
        if (system(cmd) == 0) return names[i];
    }
    return NULL;
}

// Loads PAGE headless; *dom gets the DOM after the scripts ran, *console the console
// messages (malloc'd). With shot, also writes a screenshot there. Returns the exit status.
int browser_load(const char *browser, const char *page, const char *shot, char **dom, char **console) {
    char dir[600], cmd[8192];
    snprintf(dir, sizeof dir, "%s", test_tmpdir());
    // No network: everything that would phone home is off, so the page must stand alone.
    const char *flags = "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
                        "--disable-background-networking --disable-component-update --disable-sync "
                        "--disable-default-apps --disable-extensions --mute-audio";
    snprintf(cmd, sizeof cmd, "timeout 120 %s %s --user-data-dir=%s/profile --enable-logging=stderr --v=0 --dump-dom "
             "'file://%s' > %s/dom.html 2> %s/stderr.txt", browser, flags, dir, page, dir, dir);
    int st = system(cmd);
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (!rc && shot) {
        snprintf(cmd, sizeof cmd, "timeout 120 %s %s --user-data-dir=%s/profile2 --hide-scrollbars "
                 "--window-size=1400,5200 --screenshot='%s' 'file://%s' > /dev/null 2>&1", browser, flags, dir, shot, page);
        st = system(cmd);
        rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    }
    char p[800];
    size_t n;
    snprintf(p, sizeof p, "%s/dom.html", dir);
    if (io_read_file(p, (unsigned char **)dom, &n)) *dom = cx_strdup("");
    // Console messages are logged as "...:INFO:CONSOLE:..." lines; the page writes none.
    snprintf(p, sizeof p, "%s/stderr.txt", dir);
    char *err = NULL;
    if (io_read_file(p, (unsigned char **)&err, &n)) err = cx_strdup("");
    size_t cap = 1, len = 0;
    *console = cx_calloc(1, 1);
    for (char *line = strtok(err, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strstr(line, "CONSOLE")) continue;
        size_t l = strlen(line);
        *console = cx_realloc(*console, cap += l + 1);
        memcpy(*console + len, line, l);
        len += l;
        (*console)[len++] = '\n';
        (*console)[len] = 0;
    }
    free(err);
    return rc;
}

int browser_count(const char *s, const char *what) {
    int n = 0;
    for (; (s = strstr(s, what)); s++) n++;
    return n;
}

// The value of attribute ATTR of the element with id="status" ("" when absent).
const char *browser_status_attr(const char *dom, const char *attr) {
    static char v[256];
    v[0] = 0;
    const char *s = strstr(dom, "id=\"status\"");
    if (!s) return v;
    const char *end = strchr(s, '>');
    char key[64];
    snprintf(key, sizeof key, " %s=\"", attr);
    const char *a = strstr(s, key);
    if (!a || (end && a > end)) return v;
    a += strlen(key);
    size_t n = strcspn(a, "\"");
    snprintf(v, sizeof v, "%.*s", (int)(n < sizeof v - 1 ? n : sizeof v - 1), a);
    return v;
}
