// test_docs.c — the docs name only what exists (issue 25). README.md and docs/*.md are
// read as a newcomer reads them, and every name they give is looked up:
//   * file paths — src/…, tools/…, scripts/…, docs/…, tests/…, bench/…, fuzz/…, .ci/…, a
//     layer's file written from its layer (core/io.c, cuda/norm.cu), a bare file name
//     (ops_list.h) — in the tree; ../shared/… in the shared folder when it is present. The
//     folders that builds and scripts make (build*/, gpu/ and cpu/ bundles, bin/,
//     demo_out/, the npm install under tools/node/) are not looked up;
//   * in code (``` blocks and `spans`): `camoxpert COMMAND` against `camoxpert --help`, every
//     --option after it against `camoxpert COMMAND --help`, a bare `--option` against every
//     command's (or the few other programs' below), `make TARGET` against the Makefile,
//     `camoxpert_tests NAME` against this runner's tests;
//   * test names — a `span` of four or more words that starts as a test name does — against
//     this runner's list (a name the sources use, a function, passes too);
//   * README's test command is the one .ci/run runs.
// Commands, options and tests come from the program and the runner themselves: nothing
// here lists them. A failure names the doc, the line and what is missing.
#include "test.h"
#include <ctype.h>
#include <dirent.h>
#include <ftw.h>
#include <glob.h>
#include <stdarg.h>
#include <string.h>

// Options of other programs the docs quote, which cannot be asked: torchrun's, Slurm's
// srun's, the benchmark program's (build/camoxpert_bench, built by `make bench`) and
// this runner's.
static const char *const foreign_options[] = { "--nnodes", "--node_rank", "--nproc_per_node", "--master_addr",
                                               "--master_port", "--no-python", "--gpus-per-task", "--iters",
                                               "--no-torch", "--fast", "--list", NULL };
// Files of other projects the docs name by their bare name.
static const char *const foreign_files[] = {
    "train_ultimate.py",     // the reference implementation's trainer
    "fmeasurev2.py",         // PySODMetrics
    "onnxruntime_c_api.h",   // ONNX Runtime's C API
    "stdio.h", "stdlib.h",   // the C library
    "run.sh",                // gpu/run.sh, cpu/run.sh: written by scripts/gpu_bundle.sh, scripts/cpu_bundle.sh
    NULL };
// Folders that builds and scripts make: paths under them are not looked up.
static const char *const generated_dirs[] = { "build", "build-debug", "build-fuzz", "gpu", "bin", "demo_out", NULL };
// Folders at the repository's root, and src/'s layers (and ops/'s backends) that docs
// write a source file from.
static const char *const top_dirs[] = { "src", "tools", "scripts", "docs", "tests", "bench", "fuzz", ".ci", NULL };
static const char *const layer_dirs[] = { "core", "ops", "nn", "data", "train", "infer", "eval", "report", "cli",
                                          "cpu", "cuda", "ref", NULL };

typedef struct { char **v; int n, cap; } StrList;

static void sl_add(StrList *l, const char *s, size_t len) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->v = realloc(l->v, sizeof *l->v * (size_t)l->cap);
    }
    l->v[l->n] = cx_malloc(len + 1);
    memcpy(l->v[l->n], s, len);
    l->v[l->n++][len] = 0;
}

static bool sl_has(const StrList *l, const char *s) {
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->v[i], s)) return true;
    return false;
}

static void sl_free(StrList *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static bool in_list(const char *const *list, const char *s, size_t len) {
    for (int i = 0; list[i]; i++)
        if (strlen(list[i]) == len && !strncmp(list[i], s, len)) return true;
    return false;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

typedef struct {
    char root[2048];      // the checkout: the folder above the runner's build folder
    const char *shared;   // the shared folder, NULL when absent
    StrList cmds, global_opts, all_opts, targets, names, tests, test_files;
    StrList opts[32];     // per command, in cmds' order
    char *sources;        // the text of src/, tests/ and bench/: identifiers the docs may name
    size_t sources_len, sources_cap;
    const char *doc;      // the doc being read ("docs/GPU.md")
    int problems;
} Lint;

static void problem(Lint *L, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void problem(Lint *L, int line, const char *fmt, ...) {
    char msg[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    test_fail(L->doc, line, "%s", msg);
    L->problems++;
}

// ---- what exists: the program's commands and options, the Makefile, the tree, the tests ----

// Every "--name" of a help text's option lines (and of its "global:" line) into opts.
static void help_options(const char *help, StrList *opts) {
    for (const char *l = help; l && *l;) {
        const char *e = strchr(l, '\n');
        size_t len = e ? (size_t)(e - l) : strlen(l);
        const char *p = l;
        while (p < l + len && *p == ' ') p++;
        bool global = !strncmp(p, "global:", 7);
        for (const char *q = p; q < l + len - 2; q++) {
            if (q[0] != '-' || q[1] != '-' || !islower((unsigned char)q[2]) || (q > l && q[-1] != ' ' && q[-1] != ','))
                continue;
            const char *s = q + 2;
            while (s < l + len && (islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '-')) s++;
            char name[64];
            snprintf(name, sizeof name, "%.*s", (int)(s - q), q);
            if (!sl_has(opts, name)) sl_add(opts, name, strlen(name));
            if (!global) break;   // an option line names its option first
        }
        l = e ? e + 1 : NULL;
    }
}

static bool load_program(Lint *L) {
    char *o;
    if (test_run_bin(&o, "--help") != 0) return false;
    char *help = cx_strdup(o);
    const char *c = strstr(help, "commands:");
    for (const char *l = c ? strchr(c, '\n') : NULL; l && l[1] == ' ' && l[2] == ' '; l = strchr(l + 1, '\n')) {
        const char *w = l + 3, *e = w;
        while (islower((unsigned char)*e)) e++;
        if (e > w) sl_add(&L->cmds, w, (size_t)(e - w));
    }
    const char *g = strstr(help, "global:");
    if (g) help_options(g, &L->global_opts);
    free(help);
    if (L->cmds.n == 0 || L->cmds.n > 32) return false;
    for (int i = 0; i < L->cmds.n; i++) {
        test_run_bin(&o, "%s --help", L->cmds.v[i]);
        help_options(o, &L->opts[i]);
        for (int k = 0; k < L->opts[i].n; k++)
            if (!sl_has(&L->all_opts, L->opts[i].v[k])) sl_add(&L->all_opts, L->opts[i].v[k], strlen(L->opts[i].v[k]));
    }
    for (int k = 0; k < L->global_opts.n; k++)
        if (!sl_has(&L->all_opts, L->global_opts.v[k])) sl_add(&L->all_opts, L->global_opts.v[k], strlen(L->global_opts.v[k]));
    return true;
}

// The Makefile's targets: the names before a rule's colon.
static void load_targets(Lint *L) {
    char p[2200];
    snprintf(p, sizeof p, "%s/Makefile", L->root);
    unsigned char *buf;
    size_t n;
    if (io_read_file(p, &buf, &n)) return;
    for (char *l = (char *)buf; l && *l;) {
        char *e = strchr(l, '\n');
        if (e) *e = 0;
        char *colon = strchr(l, ':');
        if (isalpha((unsigned char)l[0]) && colon && colon[1] != '=' && !memchr(l, '=', (size_t)(colon - l)) &&
            !memchr(l, '$', (size_t)(colon - l)))
            for (char *w = l; w < colon;) {
                while (w < colon && *w == ' ') w++;
                char *s = w;
                while (s < colon && *s != ' ') s++;
                if (s > w) sl_add(&L->targets, w, (size_t)(s - w));
                w = s;
            }
        l = e ? e + 1 : NULL;
    }
    free(buf);
}

static Lint *walk_lint;   // nftw's callback has no argument

static int walk_one(const char *path, const struct stat *sb, int type, struct FTW *f) {
    const char *base = path + f->base;
    if (type == FTW_D && f->level > 0) {
        bool top = f->level == 1;
        if (base[0] == '.' && strcmp(base, ".ci")) return FTW_SKIP_SUBTREE;   // .git
        if (!strncmp(base, "build", 5) || !strcmp(base, "node_modules") || !strcmp(base, "demo_out") ||
            (top && (!strcmp(base, "gpu") || !strcmp(base, "cpu"))))
            return FTW_SKIP_SUBTREE;
        return FTW_CONTINUE;
    }
    if (type != FTW_F) return FTW_CONTINUE;
    Lint *L = walk_lint;
    if (!sl_has(&L->names, base)) sl_add(&L->names, base, strlen(base));
    const char *rel = path + strlen(L->root) + 1;
    bool code = ends_with(base, ".c") || ends_with(base, ".h") || ends_with(base, ".cu") || ends_with(base, ".cuh");
    if (code && (!strncmp(rel, "src/", 4) || !strncmp(rel, "tests/", 6) || !strncmp(rel, "bench/", 6))) {
        unsigned char *b;
        size_t n;
        if (io_read_file(path, &b, &n) == CX_OK) {
            if (L->sources_len + n + 2 > L->sources_cap) {
                L->sources_cap = 2 * (L->sources_len + n + 2);
                L->sources = realloc(L->sources, L->sources_cap);
            }
            memcpy(L->sources + L->sources_len, b, n);
            L->sources_len += n;
            L->sources[L->sources_len++] = '\n';
            L->sources[L->sources_len] = 0;
            free(b);
        }
    }
    (void)sb;
    return FTW_CONTINUE;
}

static void load_tree(Lint *L) {
    walk_lint = L;
    nftw(L->root, walk_one, 32, FTW_PHYS | FTW_ACTIONRETVAL);
    for (int i = 0; test_name_at(i); i++) {
        sl_add(&L->tests, test_name_at(i), strlen(test_name_at(i)));
        if (!sl_has(&L->test_files, test_file_at(i))) sl_add(&L->test_files, test_file_at(i), strlen(test_file_at(i)));
    }
}

static int cmd_index(const Lint *L, const char *w) {
    for (int i = 0; i < L->cmds.n; i++)
        if (!strcmp(L->cmds.v[i], w)) return i;
    return -1;
}

// ---- paths ---------------------------------------------------------------------------------

static bool has_ext(const char *t, const char *const *exts) {
    for (int i = 0; exts[i]; i++)
        if (ends_with(t, exts[i])) return true;
    return false;
}
static const char *const source_exts[] = { ".c", ".h", ".cu", ".cuh", ".js", ".css", NULL };
static const char *const file_exts[] = { ".c", ".h", ".cu", ".cuh", ".py", ".sh", ".md", NULL };

// Whether the path (relative to dir; may hold one {a,b} group, a '*' or a <placeholder>)
// names something that exists.
static bool path_exists(const char *dir, const char *rel) {
    const char *open = strchr(rel, '{'), *close = open ? strchr(open, '}') : NULL;
    if (open && close) {   // every alternative must exist
        for (const char *a = open + 1; a < close;) {
            const char *e = a;
            while (e < close && *e != ',') e++;
            char one[1200];
            snprintf(one, sizeof one, "%.*s%.*s%s", (int)(open - rel), rel, (int)(e - a), a, close + 1);
            if (!path_exists(dir, one)) return false;
            a = e + 1;
        }
        return true;
    }
    char full[3300];
    snprintf(full, sizeof full, "%s/%s", dir, rel);
    if (strchr(rel, '<')) {   // a placeholder: the folder it sits in
        char *slash = strrchr(full, '/');
        *slash = 0;
        return io_path_is_dir(full);
    }
    if (strchr(rel, '*')) {
        glob_t g;
        int found = glob(full, 0, NULL, &g) == 0 && g.gl_pathc > 0;
        globfree(&g);
        return found;
    }
    return io_path_exists(full);
}

static void check_path(Lint *L, int line, const char *t) {
    if (t[0] == '/' || strstr(t, "//")) return;   // absolute paths and addresses are the machine's
    const char *slash = strchr(t, '/');
    char root_s[2100];
    snprintf(root_s, sizeof root_s, "%s/src", L->root);
    if (!slash) {   // a bare file name: a file of the tree, of the shared folder, or another project's
        if (t[0] == '.' || !has_ext(t, file_exts) || strpbrk(t, "<*{") || sl_has(&L->names, t) ||
            in_list(foreign_files, t, strlen(t)))
            return;
        if (L->shared && !path_exists(L->shared, t))   // (without the shared folder it cannot be looked up)
            problem(L, line, "names the file `%s`, which is neither in the tree nor in %s", t, L->shared);
        return;
    }
    size_t c = (size_t)(slash - t);
    if (!strncmp(t, "../shared/", 10)) {
        if (L->shared && !path_exists(L->shared, t + 10)) problem(L, line, "names `%s`, which is not in %s", t, L->shared);
        return;
    }
    if (in_list(generated_dirs, t, c) || !strncmp(t, "tools/node/node_modules", 23)) return;
    if (in_list(top_dirs, t, c)) {
        if (!path_exists(L->root, t)) problem(L, line, "names `%s`, which does not exist", t);
        return;
    }
    if ((!strncmp(t, "reference/", 10) || !strncmp(t, "fixtures/", 9))) {   // the shared folder's (or tests/'s fixtures)
        char tf[1200];
        snprintf(tf, sizeof tf, "tests/%s", t);
        if (L->shared && !path_exists(L->shared, t) && !path_exists(L->root, tf))
            problem(L, line, "names `%s`, which is neither in %s nor in tests/", t, L->shared);
        return;
    }
    if (in_list(layer_dirs, t, c) && has_ext(t, source_exts)) {   // a source file from its layer (or ops/'s backend)
        char in_ops[1300];
        snprintf(in_ops, sizeof in_ops, "ops/%s", t);
        if (!path_exists(root_s, t) && !path_exists(root_s, in_ops))
            problem(L, line, "names `%s`, which is not a file of src/", t);
    }
}

static bool path_char(char ch) {
    return isalnum((unsigned char)ch) || ch == '_' || ch == '.' || ch == '/' || ch == '-' || ch == '+' || ch == '<' ||
           ch == '>' || ch == '*';
}

static void check_paths(Lint *L, int line, const char *s) {
    for (const char *p = s; *p;) {
        if (!path_char(*p) && *p != '{') { p++; continue; }
        char t[1200];
        size_t n = 0;
        const char *start = p;
        while (*p && n < sizeof t - 1) {
            if (*p == '{') {   // a brace group: up to its '}'
                const char *e = strchr(p, '}');
                if (!e || (size_t)(e - p) + n + 1 >= sizeof t - 1) break;
                memcpy(t + n, p, (size_t)(e - p + 1));
                n += (size_t)(e - p + 1);
                p = e + 1;
                continue;
            }
            if (!path_char(*p)) break;
            t[n++] = *p++;
        }
        if (p == start) { p++; continue; }
        while (n && strchr(".,-:>", t[n - 1])) n--;   // a sentence's end, an arrow's head
        t[n] = 0;
        const char *tok = t;
        while (!strncmp(tok, "./", 2)) tok += 2;
        if (start > s && (start[-1] == '$' || start[-1] == '~')) continue;   // $HOME/…, ~/…
        if (*tok) check_path(L, line, tok);
    }
}

// ---- code: commands, options, make targets, test names -------------------------------------------

// The option name of word w ("--img-size=64," -> "--img-size"), or "" when w is none.
static void option_name(const char *w, char *out, size_t n) {
    out[0] = 0;
    if (w[0] != '-' || w[1] != '-' || !(islower((unsigned char)w[2]) || isdigit((unsigned char)w[2]))) return;
    size_t k = 2;
    while (w[k] && (islower((unsigned char)w[k]) || isdigit((unsigned char)w[k]) || w[k] == '-' || w[k] == '_')) k++;
    while (k > 2 && w[k - 1] == '-') k--;
    snprintf(out, n, "%.*s", (int)k, w);
}

#define MAX_WORDS 128
// Programs that run the command after their own options.
static const char *const launchers[] = { "torchrun", "srun", "mpirun", "mpiexec", "time", "timeout", "nohup", "exec",
                                         "env", "perf", "valgrind", NULL };

// One shell command of a code segment (no separators), split into words.
static void check_command(Lint *L, int line, char *part) {
    char *w[MAX_WORDS];
    int n = 0;
    for (char *tok = strtok(part, " \t"); tok && n < MAX_WORDS; tok = strtok(NULL, " \t")) w[n++] = tok;
    int first = 0;
    while (first < n && strchr(w[first], '=') && w[first][0] != '-') first++;   // VAR=value before the program
    if (first >= n) return;
    char opt[64];
    // camoxpert is the program, or a launcher's (torchrun … --no-python camoxpert, srun,
    // /usr/bin/time -f %M camoxpert); as another program's argument it is not looked at
    bool launcher = in_list(launchers, w[first], strlen(w[first])) || ends_with(w[first], "/time");
    for (int k = first; k < n; k++) {
        if (strcmp(w[k], "camoxpert") && !ends_with(w[k], "/camoxpert")) continue;
        if (k > first && (!launcher || (w[k - 1][0] == '-' && w[k - 1][1] == '-' && strcmp(w[k - 1], "--no-python"))))
            continue;
        if (k + 1 >= n) return;
        const char *c = w[k + 1];
        if (c[0] == '-') {   // camoxpert --version
            option_name(c, opt, sizeof opt);
            if (opt[0] && !sl_has(&L->global_opts, opt))
                problem(L, line, "`camoxpert %s`: camoxpert --help has no such option", opt);
            return;
        }
        bool word = true;
        for (const char *q = c; *q; q++) word &= islower((unsigned char)*q) != 0;
        if (!word) return;   // a placeholder: <command>, COMMAND, …
        int ci = cmd_index(L, c);
        if (ci < 0) {
            problem(L, line, "`camoxpert %s`: camoxpert has no command %s (camoxpert --help)", c, c);
            return;
        }
        for (int j = k + 2; j < n; j++) {
            option_name(w[j], opt, sizeof opt);
            if (opt[0] && !sl_has(&L->opts[ci], opt))
                problem(L, line, "`camoxpert %s %s`: camoxpert %s --help has no such option", c, opt, c);
        }
        return;
    }
    const char *prog = w[first];
    if (!strcmp(prog, "make")) {
        for (int k = first + 1; k < n; k++) {
            const char *slash = strchr(w[k], '/');   // a file it builds: under the build folder
            if (slash ? in_list(generated_dirs, w[k], (size_t)(slash - w[k])) : sl_has(&L->targets, w[k])) continue;
            if (w[k][0] != '-' && !strchr(w[k], '=') && isalpha((unsigned char)w[k][0]))
                problem(L, line, "`make %s`: the Makefile has no target %s", w[k], w[k]);
        }
        return;
    }
    if (ends_with(prog, "camoxpert_tests")) {
        for (int k = first + 1; k < n; k++) {
            const char *a = w[k][0] == '-' && w[k][1] != '-' ? w[k] + 1 : w[k];
            if (a[0] == '-' || !isalnum((unsigned char)a[0]) || strchr(a, '<')) continue;
            bool any = false;
            if (ends_with(a, ".c")) {
                for (int i = 0; i < L->test_files.n && !any; i++) any = ends_with(L->test_files.v[i], a);
            } else {
                for (int i = 0; i < L->tests.n && !any; i++) any = strstr(L->tests.v[i], a) != NULL;
            }
            if (!any) problem(L, line, "`%s %s` selects no test", prog, w[k]);
        }
        return;
    }
    if (prog[0] == '-' && prog[1] == '-') {   // a bare option: some command's, or another program's quoted here
        for (int k = first; k < n; k++) {
            option_name(w[k], opt, sizeof opt);
            if (opt[0] && !sl_has(&L->all_opts, opt) && !in_list(foreign_options, opt, strlen(opt)))
                problem(L, line, "`%s`: no camoxpert command has this option", opt);
        }
    }
}

// A code segment's text (one line of a block, after joining continuations, or a span): its
// shell commands one by one.
static void check_code_line(Lint *L, int line, const char *text) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", text);
    for (char *p = buf; *p; p++)   // a comment ends the command
        if (*p == '#' && (p == buf || p[-1] == ' ')) { *p = 0; break; }
    char *part = buf;
    for (char *p = buf;; p++) {
        bool sep = !*p || *p == ';' || (p[0] == '&' && p[1] == '&') || (p[0] == '|' && p[1] == '|') ||
                   (p[0] == '|' && p > buf && p[-1] == ' ' && p[1] == ' ');
        if (!sep) continue;
        bool end = !*p;
        int skip = (*p == '&' || (p[0] == '|' && p[1] == '|')) ? 2 : 1;
        *p = 0;
        check_command(L, line, part);
        if (end) break;
        part = p + skip;
        p += skip - 1;
    }
}

// Test names: a `span` word of four or more words whose first word begins some test's name.
static void check_test_names(Lint *L, int line, const char *span) {
    for (const char *p = span; *p;) {
        if (!islower((unsigned char)*p) || (p > span && (isalnum((unsigned char)p[-1]) || p[-1] == '_' || p[-1] == '/' ||
                                                          p[-1] == '.' || p[-1] == '-'))) {
            p++;
            continue;
        }
        const char *e = p;
        int unders = 0;
        while (isalnum((unsigned char)*e) || *e == '_' || *e == '{' || *e == '}' || *e == ',' || *e == '*') {
            if (*e == '{') {
                const char *c = strchr(e, '}');
                if (!c) break;
                e = c + 1;
                continue;
            }
            unders += *e == '_';
            e++;
        }
        while (e > p && (e[-1] == ',' || e[-1] == '_')) e--;
        char t[300];
        snprintf(t, sizeof t, "%.*s", (int)(e - p), p);
        p = e > p ? e : p + 1;
        if (unders < 3 || e[0] == '(' || e[0] == '.' || e[0] == '/') continue;   // a call, a file, a path
        size_t w1 = strcspn(t, "_");
        bool test_like = false;
        for (int i = 0; i < L->tests.n && !test_like; i++)
            test_like = !strncmp(L->tests.v[i], t, w1) && L->tests.v[i][w1] == '_';
        if (!test_like) continue;
        // brace groups and a trailing '*': every alternative must begin or be a test
        char alts[8][300];
        int na = 0;
        const char *open = strchr(t, '{'), *close = open ? strchr(open, '}') : NULL;
        if (open && close) {
            for (const char *a = open + 1; a < close && na < 8;) {
                const char *x = a;
                while (x < close && *x != ',') x++;
                snprintf(alts[na++], 300, "%.*s%.*s%s", (int)(open - t), t, (int)(x - a), a, close + 1);
                a = x + 1;
            }
        } else {
            snprintf(alts[na++], 300, "%s", t);
        }
        for (int a = 0; a < na; a++) {
            char *name = alts[a];
            bool prefix = false;
            size_t len = strlen(name);
            if (len && name[len - 1] == '*') { name[--len] = 0; prefix = true; }
            bool found = false;
            for (int i = 0; i < L->tests.n && !found; i++)
                found = prefix ? !strncmp(L->tests.v[i], name, len) : !strcmp(L->tests.v[i], name);
            if (!found && !prefix && L->sources && strstr(L->sources, name)) found = true;   // a function, a field
            if (!found) problem(L, line, "names the test `%s%s`, which camoxpert_tests --list does not have", name, prefix ? "*" : "");
        }
    }
}

// ---- one doc --------------------------------------------------------------------------------

static void lint_doc(Lint *L, const char *rel) {
    char path[2200];
    snprintf(path, sizeof path, "%s/%s", L->root, rel);
    unsigned char *buf;
    size_t n;
    if (io_read_file(path, &buf, &n)) {
        test_fail(rel, 0, "cannot read: %s", cx_errmsg());
        return;
    }
    L->doc = rel;
    bool fenced = false, shell = false;   // in a ``` block; one of shell commands (sh, bash, console or unmarked)
    char joined[4096] = "";
    int joined_line = 0, line = 0;
    for (char *l = (char *)buf; l && *l;) {
        char *e = strchr(l, '\n');
        if (e) *e = 0;
        line++;
        check_paths(L, line, l);
        const char *s = l;
        while (*s == ' ') s++;
        if (!strncmp(s, "```", 3)) {
            fenced = !fenced;
            const char *info = s + 3;
            shell = fenced && (!*info || !strcmp(info, "sh") || !strcmp(info, "bash") || !strcmp(info, "shell") ||
                               !strcmp(info, "console"));
        } else if (fenced && shell) {   // a block's line; a trailing backslash continues it
            size_t len = strlen(l), have = strlen(joined);
            if (!have) joined_line = line;
            bool more = len && l[len - 1] == '\\';
            snprintf(joined + have, sizeof joined - have, "%.*s ", (int)(more ? len - 1 : len), l);
            if (!more) {
                check_code_line(L, joined_line, joined);
                joined[0] = 0;
            }
        } else if (!fenced) {   // `spans` of a prose line
            for (char *a = strchr(l, '`'); a;) {
                char *b = strchr(a + 1, '`');
                if (!b) break;
                char span[2048];
                snprintf(span, sizeof span, "%.*s", (int)(b - a - 1), a + 1);
                check_code_line(L, line, span);
                check_test_names(L, line, span);
                a = strchr(b + 1, '`');
            }
        }
        l = e ? e + 1 : NULL;
    }
    free(buf);
}

// The checkout: the folder above the one this runner was built into.
static bool find_root(Lint *L) {
    snprintf(L->root, sizeof L->root, "%s", test_bin_path());
    for (int up = 0; up < 2; up++) {
        char *s = strrchr(L->root, '/');
        if (!s) return false;
        *s = 0;
    }
    char readme[2200];
    snprintf(readme, sizeof readme, "%s/README.md", L->root);
    return io_path_is_regular(readme);
}

TEST(docs_name_only_files_commands_options_and_tests_that_exist) {
    static Lint L;
    memset(&L, 0, sizeof L);
    REQUIRE(find_root(&L));
    const char *shared = test_shared_path("");
    L.shared = io_path_is_dir(shared) ? shared : NULL;
    REQUIRE(load_program(&L));
    load_targets(&L);
    load_tree(&L);
    REQUIRE(L.targets.n > 0 && L.names.n > 0 && L.tests.n > 0);
    lint_doc(&L, "README.md");
    char docs[2200];
    snprintf(docs, sizeof docs, "%s/docs", L.root);
    DIR *d = opendir(docs);
    REQUIRE(d);
    StrList mds = { 0 };
    for (struct dirent *e; (e = readdir(d));)
        if (ends_with(e->d_name, ".md")) {
            char rel[300];
            snprintf(rel, sizeof rel, "docs/%s", e->d_name);
            sl_add(&mds, rel, strlen(rel));
        }
    closedir(d);
    for (int i = 0; i < mds.n; i++) lint_doc(&L, mds.v[i]);
    CHECKF(mds.n >= 5, "%d docs in %s", mds.n, docs);
    // README's test command is what CI runs
    char ci[2200];
    snprintf(ci, sizeof ci, "%s/.ci/run", L.root);
    unsigned char *cb, *rb;
    size_t cn, rn;
    char readme[2200];
    snprintf(readme, sizeof readme, "%s/README.md", L.root);
    if (io_read_file(ci, &cb, &cn) == CX_OK && io_read_file(readme, &rb, &rn) == CX_OK) {
        const char *last = NULL;
        for (char *l = strtok((char *)cb, "\n"); l; l = strtok(NULL, "\n"))
            if (l[0] != '#' && strstr(l, "make")) last = l;
        CHECKF(last && strstr((char *)rb, last), "README.md does not show .ci/run's command `%s`", last ? last : "?");
        free(cb);
        free(rb);
    }
    printf("    %d docs read: %d commands, %d options, %d Makefile targets, %d file names, %d tests known; %d problems\n",
           mds.n + 1, L.cmds.n, L.all_opts.n, L.targets.n, L.names.n, L.tests.n, L.problems);
    sl_free(&mds);
    sl_free(&L.cmds); sl_free(&L.global_opts); sl_free(&L.all_opts); sl_free(&L.targets);
    sl_free(&L.names); sl_free(&L.tests); sl_free(&L.test_files);
    for (int i = 0; i < 32; i++) sl_free(&L.opts[i]);
    free(L.sources);
}
