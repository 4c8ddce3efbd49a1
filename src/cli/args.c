// args.c — the option parser shared by every subcommand (see cli.h).
#include "cli.h"
#include "infer/open.h"
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int edit_distance(const char *a, const char *b) {
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 63 || lb > 63) return 99;
    int d[64][64];
    for (int i = 0; i <= la; i++) d[i][0] = i;
    for (int j = 0; j <= lb; j++) d[0][j] = j;
    for (int i = 1; i <= la; i++)
        for (int j = 1; j <= lb; j++) {
            int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
            d[i][j] = c;
        }
    return d[la][lb];
}

const CliOpt *cli_find(const CliOpt *opts, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(opts[i].name, name)) return &opts[i];
    return NULL;
}

int cli_seen(const CliOpt *opts, int n, const char *name) {
    const CliOpt *o = cli_find(opts, n, name);
    return o ? o->seen : 0;
}

unsigned cli_ckpt_model_given(const CliOpt *opts, int n) {
    return (cli_seen(opts, n, "backbone") ? MODEL_GIVEN_BACKBONE : 0) |
           (cli_seen(opts, n, "use-sparse-moe") ? MODEL_GIVEN_SPARSE : 0) |
           (cli_seen(opts, n, "num-experts") ? MODEL_GIVEN_EXPERTS : 0) | (cli_seen(opts, n, "top-k") ? MODEL_GIVEN_TOPK : 0);
}

void cli_print_help(FILE *fp, const char *cmd, const char *synopsis, const CliOpt *opts, int n) {
    fprintf(fp, "usage: camoxpert %s %s\n\noptions:\n", cmd, synopsis ? synopsis : "[options]");
    for (int i = 0; i < n; i++) {
        char left[128];
        const char *mv = opts[i].metavar ? opts[i].metavar : opts[i].choices;
        if (opts[i].kind == OPT_FLAG) snprintf(left, sizeof left, "--%s", opts[i].name);
        else snprintf(left, sizeof left, "--%s %s", opts[i].name, mv ? mv : "VALUE");
        fprintf(fp, "  %-34s %s", left, opts[i].help ? opts[i].help : "");
        // Show the default (the destination's value before parsing).
        switch (opts[i].kind) {
        case OPT_INT: fprintf(fp, " (default %d)", *(int *)opts[i].dst); break;
        case OPT_INT64: fprintf(fp, " (default %lld)", (long long)*(int64_t *)opts[i].dst); break;
        case OPT_FLOAT: fprintf(fp, " (default %g)", (double)*(float *)opts[i].dst); break;
        case OPT_DOUBLE: fprintf(fp, " (default %g)", *(double *)opts[i].dst); break;
        case OPT_STR: if (*(const char **)opts[i].dst) fprintf(fp, " (default %s)", *(const char **)opts[i].dst); break;
        case OPT_STRS: fprintf(fp, " (repeatable)"); break;
        case OPT_FLAG: break;
        }
        fputc('\n', fp);
    }
    fprintf(fp, "  %-34s %s\n", "--help", "show this help");
}

static int bad_value(const char *cmd, const CliOpt *o, const char *v, const char *what) {
    fprintf(stderr, "error: camoxpert %s: --%s expects %s, got '%s'\n", cmd, o->name, what, v);
    return 2;
}

int cli_parse(int argc, char **argv, const char *cmd, CliOpt *opts, int n, const char **pos, int max_pos,
              int *n_pos, const char *synopsis) {
    int np = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            cli_print_help(stdout, cmd, synopsis, opts, n);
            return CLI_HELP;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == 0) {
            if (np >= max_pos || !pos) {
                fprintf(stderr, "error: camoxpert %s: unexpected argument '%s' (see camoxpert %s --help)\n", cmd, a, cmd);
                return 2;
            }
            pos[np++] = a;
            continue;
        }
        char name[128];
        const char *eq = strchr(a + 2, '=');
        size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (len >= sizeof name) len = sizeof name - 1;
        memcpy(name, a + 2, len);
        name[len] = 0;
        CliOpt *o = NULL;
        for (int k = 0; k < n; k++)
            if (!strcmp(opts[k].name, name)) o = &opts[k];
        if (!o) {
            int best = 99;
            const char *sug = NULL;
            for (int k = 0; k < n; k++) {
                int d = edit_distance(name, opts[k].name);
                if (d < best) { best = d; sug = opts[k].name; }
            }
            fprintf(stderr, "error: camoxpert %s: unknown option --%s", cmd, name);
            if (sug && best <= 3) fprintf(stderr, " (did you mean --%s?)", sug);
            fprintf(stderr, "; see camoxpert %s --help\n", cmd);
            return 2;
        }
        if (o->seen && o->kind != OPT_STRS) {
            fprintf(stderr, "error: camoxpert %s: --%s given twice\n", cmd, o->name);
            return 2;
        }
        o->seen = 1;
        if (o->kind == OPT_FLAG) {
            if (eq) {
                if (!strcmp(eq + 1, "1") || !strcmp(eq + 1, "true")) *(int *)o->dst = 1;
                else if (!strcmp(eq + 1, "0") || !strcmp(eq + 1, "false")) *(int *)o->dst = 0;
                else return bad_value(cmd, o, eq + 1, "true or false");
            } else *(int *)o->dst = 1;
            continue;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v) {
            fprintf(stderr, "error: camoxpert %s: --%s needs a value\n", cmd, o->name);
            return 2;
        }
        char *end;
        errno = 0;
        switch (o->kind) {
        case OPT_INT: { long x = strtol(v, &end, 10); if (*end || end == v || errno || x != (int)x) return bad_value(cmd, o, v, "an integer"); *(int *)o->dst = (int)x; break; }
        case OPT_INT64: { long long x = strtoll(v, &end, 10); if (*end || end == v || errno) return bad_value(cmd, o, v, "an integer"); *(int64_t *)o->dst = x; break; }
        // Numbers are finite in every command: nan, inf and overflowing values (1e400) never get in.
        case OPT_FLOAT: { double x = strtod(v, &end); if (*end || end == v || !isfinite((float)x)) return bad_value(cmd, o, v, "a finite number"); *(float *)o->dst = (float)x; break; }
        case OPT_DOUBLE: { double x = strtod(v, &end); if (*end || end == v || !isfinite(x)) return bad_value(cmd, o, v, "a finite number"); *(double *)o->dst = x; break; }
        case OPT_STR:
            if (o->choices) {
                int okc = 0;
                const char *c = o->choices;
                size_t vl = strlen(v);
                while (*c) {
                    const char *bar = strchr(c, '|');
                    size_t cl = bar ? (size_t)(bar - c) : strlen(c);
                    if (cl == vl && !strncmp(c, v, vl)) okc = 1;
                    c += cl + (bar ? 1 : 0);
                }
                if (!okc) return bad_value(cmd, o, v, o->choices);
            }
            *(const char **)o->dst = v;
            break;
        case OPT_STRS: {
            CliStrs *l = o->dst;
            if (l->n == CLI_STRS_MAX) {
                fprintf(stderr, "error: camoxpert %s: --%s given more than %d times\n", cmd, o->name, CLI_STRS_MAX);
                return 2;
            }
            l->v[l->n++] = v;
            break;
        }
        case OPT_FLAG: break;
        }
    }
    if (n_pos) *n_pos = np;
    // One thread-count rule for every command: its --threads is checked and applied here.
    const CliOpt *t = cli_find(opts, n, "threads");
    if (t && t->kind == OPT_INT && cli_threads(cmd, *(int *)t->dst)) return 2;
    return 0;
}

int cli_threads(const char *cmd, int threads) {
    if (threads < 0 || threads > cx_threads_max()) {
        fprintf(stderr, "error: camoxpert %s: --threads %d: must be between 0 (all %d cores) and %d\n", cmd, threads,
                cx_threads_default(), cx_threads_max());
        return 2;
    }
    cx_threads_set(threads);
    return 0;
}

int cli_workers(const char *cmd, const char *opt, int workers) {
    if (workers < 1 || workers > cx_threads_max()) {
        fprintf(stderr, "error: camoxpert %s: --%s %d: must be between 1 and %d\n", cmd, opt, workers, cx_threads_max());
        return 2;
    }
    return 0;
}
