// hostile_common.c — what the hostile tests share (hostile.h): the program run with a
// time limit and its messages checked against its --help, tiny data sets, checkpoints
// and runs made by the program itself, and hashes that show a file or folder unchanged.
#include "test.h"
#include "hostile.h"
#include "nn/camoxpert.h"
#include "nn/weights.h"
#include "infer/open.h"
#include "train/checkpoint.h"
#include <stdarg.h>
#include <string.h>

const char *const hostile_commands[] = { "train", "predict", "bench", "eval", "synth", "inspect", "verify", "data",
                                         "report", "export", NULL };

// The --help text of a command (cached).
static const char *help_of(const char *cmd) {
    static char *help[16];
    for (int i = 0; hostile_commands[i]; i++) {
        if (strcmp(hostile_commands[i], cmd)) continue;
        if (!help[i]) {
            char c[5000], p[800];
            snprintf(p, sizeof p, "%s/help_%s.txt", test_tmpdir(), cmd);
            snprintf(c, sizeof c, "%s %s --help > %s 2>&1", test_bin_path(), cmd, p);
            size_t n;
            if (system(c) != 0 || io_read_file(p, (unsigned char **)&help[i], &n)) help[i] = cx_strdup("");
        }
        return help[i];
    }
    return NULL;
}

// Rule 8: a message names only options its command has. Every `--option` in an error,
// warning or note line of `cmd`'s output must be in `cmd --help` (options of another
// command, named as "camoxpert OTHER --option", are that command's).
void check_named_options(const char *cmd, const char *out) {
    const char *help = help_of(cmd);
    if (!help || !*help) return;
    for (const char *line = out; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        int msg = !strncmp(line, "error", 5) || !strncmp(line, "warning", 7) || !strncmp(line, "note", 4) ||
                  !strncmp(line, "(or pass", 8);
        // No source location ("[io.c:35]") in a message for the user (issue 33): only an
        // internal error carries one.
        for (const char *b = memchr(line, '[', len); msg && b && b < line + len; b = memchr(b + 1, '[', (size_t)(line + len - b - 1))) {
            const char *c = b + 1;
            while (c < line + len && ((*c >= 'a' && *c <= 'z') || *c == '_' || (*c >= '0' && *c <= '9'))) c++;
            if (c > b + 1 && c + 3 < line + len && c[0] == '.' && (c[1] == 'c' || c[1] == 'h') && c[2] == ':' &&
                c[3] >= '0' && c[3] <= '9' && !strstr(line, "internal error"))
                test_fail(__FILE__, __LINE__, "camoxpert %s printed a source location to the user: %.*s", cmd, (int)len,
                          line);
        }
        for (size_t i = 0; msg && i + 3 < len; i++) {
            if (line[i] != '-' || line[i + 1] != '-' || !(line[i + 2] >= 'a' && line[i + 2] <= 'z') ||
                (i > 0 && line[i - 1] != ' ' && line[i - 1] != '(' && line[i - 1] != '`' && line[i - 1] != ','))
                continue;
            char opt[64];
            size_t k = 0;
            while (k + 1 < sizeof opt && i + k < len &&
                   ((line[i + k] >= 'a' && line[i + k] <= 'z') || (line[i + k] >= '0' && line[i + k] <= '9') || line[i + k] == '-'))
                opt[k] = line[i + k], k++;
            opt[k] = 0;
            // "camoxpert OTHER ... --opt": the option of another command.
            int other = 0;
            for (size_t j = i; j-- > 0;) {
                if (line[j] == ';' || line[j] == ':') break;
                if (!strncmp(line + j, "camoxpert ", 10)) {
                    other = strncmp(line + j + 10, cmd, strlen(cmd)) != 0;
                    break;
                }
            }
            char want[80];
            snprintf(want, sizeof want, "%s ", opt);
            char want2[80];
            snprintf(want2, sizeof want2, "%s\n", opt);
            if (!other && !strstr(help, want) && !strstr(help, want2))
                test_fail(__FILE__, __LINE__, "camoxpert %s printed a message naming %s, which it does not have: %.*s", cmd,
                          opt, (int)len, line);
        }
        line = end ? end + 1 : NULL;
    }
}

// test_run_bin with a 60 s limit (124: it hung and was killed), checking that any
// option an error message names is one the command has.
int run_bin(char **out, const char *fmt, ...) {
    char args[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char *buf;
    int rc = test_run_bin_args(&buf, 60, args);
    if (out) *out = buf;
    char cmd0[32] = "";
    sscanf(args, "%31s", cmd0);
    if (strcmp(cmd0, "--help") && !strstr(args, "--help")) check_named_options(cmd0, buf);
    return rc;
}

// A tiny synthetic set in the COD10K-v3 layout, made by the program itself (fresh for each caller).
const char *tiny_set(const char *name) {
    static char d[8][700];
    static int k;
    char *p = d[k++ & 7];
    snprintf(p, 700, "%s/%s", test_tmpdir(), name);
    if (run_bin(NULL, "synth --out %s --train 12 --test 2 --size 64 --seed 4 --threads 1", p)) p[0] = 0;
    return p;
}

// An untrained sparse checkpoint with its config in the metadata: DIR/model.safetensors.
// An untrained sparse edgenext_xx_small model (E 4, k 2), initialised with seed 5.
cx_status tiny_model(Model *m) {
    CamoXpertConfig mc;
    CX_TRY(camoxpert_config(&mc, "edgenext_xx_small", 1, 4, 2));
    return model_open(m, &(ModelSpec){ .config = &mc, .init_seed = 5 });
}

const char *tiny_checkpoint(void) {
    static char path[800];
    const char *dir = test_tmpdir();
    Model m;
    if (tiny_model(&m)) return NULL;
    char *cfg = weights_config_json(&m.cfg, 64);
    cx_status st = checkpoint_save(dir, "model", &m.pt, cfg, NULL, NULL, NULL);
    free(cfg);
    model_close(&m);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    return st ? NULL : path;
}

uint64_t file_hash(const char *path) {
    unsigned char *b;
    size_t n;
    if (io_read_file(path, &b, &n)) return 0;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    free(b);
    return h ^ n;
}

// FNV hash of every regular file in dir (names and contents), to show a folder unchanged.
uint64_t dir_hash(const char *dir) {
    char cmd[4000], p[800];
    snprintf(p, sizeof p, "%s/.dirhash", test_tmpdir());
    snprintf(cmd, sizeof cmd, "cd %s && find . -type f | LC_ALL=C sort | xargs cat | cksum > %s; find . -type f | "
             "LC_ALL=C sort >> %s", dir, p, p);
    if (system(cmd) != 0) return 0;
    return file_hash(p);
}

int count_files(const char *dir) {
    char cmd[4000], p[800];
    snprintf(p, sizeof p, "%s/.count", test_tmpdir());
    snprintf(cmd, sizeof cmd, "find %s -type f 2>/dev/null | wc -l > %s", dir, p);
    if (system(cmd) != 0) return -1;
    unsigned char *b;
    size_t n;
    if (io_read_file(p, &b, &n)) return -1;
    int c = atoi((char *)b);
    free(b);
    return c;
}


const char *tiny_run(const char *name) {
    static char d[8][700];
    static int k;
    char *p = d[k++ & 7];
    const char *ds = tiny_set("run_set");
    snprintf(p, 700, "%s/%s", test_tmpdir(), name);
    if (!ds[0] || run_bin(NULL, "train --dataset-path %s --checkpoint-dir %s --backbone edgenext_xx_small --img-size 32 "
                          "--batch-size 4 --epochs 1 --stage1-epochs 1 --val-fraction 0.25 --threads 1 --num-workers 1 "
                          "--progress 0", ds, p))
        p[0] = 0;
    return p;
}

// Steps logged (and whether one was logged twice), and the best validation Sα of a run directory.
void run_summary_read(const char *dir, RunSummary *r) {
    memset(r, 0, sizeof *r);
    r->best_sm = -1;
    char p[800];
    snprintf(p, sizeof p, "%s/train_log.jsonl", dir);
    unsigned char *buf;
    size_t n;
    if (io_read_file(p, &buf, &n)) return;
    int last = 0;
    for (char *line = strtok((char *)buf, "\n"); line; line = strtok(NULL, "\n")) {
        const char *k = strstr(line, "\"type\":\"step\",\"step\":");
        if (k) {
            int s = atoi(k + 21);
            r->dup |= s != last + 1;
            last = s;
            r->steps++;
        }
    }
    free(buf);
    snprintf(p, sizeof p, "%s/best.safetensors", dir);
    int e;
    checkpoint_read_best(p, &r->best_sm, &e);
}
