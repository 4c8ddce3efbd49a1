// cmd_inspect.c — `camoxpert inspect`: builds the model that `train` would build
// from the same options and prints its module tree (PyTorch state_dict prefixes)
// with parameter counts, then the exact total. Buffers (BatchNorm running
// statistics, counters) are listed separately: PyTorch's parameter count
// excludes them.
#include "cli.h"
#include "nn/camoxpert.h"
#include <string.h>

// 56686191 -> "56,686,191"
static const char *with_commas(int64_t v, char *buf, size_t n) {
    char raw[32];
    snprintf(raw, sizeof raw, "%lld", (long long)v);
    size_t len = strlen(raw), o = 0;
    for (size_t i = 0; i < len && o + 2 < n; i++) {
        if (i && (len - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = raw[i];
    }
    buf[o] = 0;
    return buf;
}

typedef struct { char name[160]; int depth; int64_t count; } TreeNode;

int cmd_inspect(int argc, char **argv) {
    const char *backbone = "edgenext_base", *balance = "mse";
    int sparse = 0, E = 6, k = 2, depth = 2;
    CliOpt opts[] = {
        { "backbone", OPT_STR, &backbone, "EdgeNeXt variant", "NAME", NULL, 0 },
        { "use-sparse-moe", OPT_FLAG, &sparse, "the sparse mixture-of-experts model (CamoXpertSparseMoE)", NULL, NULL, 0 },
        { "num-experts", OPT_INT, &E, "experts per MoE layer (sparse; default 6)", "E", NULL, 0 },
        { "top-k", OPT_INT, &k, "experts chosen per image (sparse; default 2)", "K", NULL, 0 },
        { "balance", OPT_STR, &balance, "MoE load balancing (default mse; sqdev, its earlier name, is accepted)",
          "mse|switch|zloss|bias", NULL, 0 },
        { "depth", OPT_INT, &depth, "levels of the module tree to print (default 2)", "N", NULL, 0 },
    };
    int parsed = cli_parse(argc, argv, "inspect", opts, CLI_N(opts), NULL, 0, NULL, NULL);
    if (parsed) return parsed == CLI_HELP ? 0 : 2;
    if (depth < 1 || depth > 16) {
        fprintf(stderr, "error: camoxpert inspect: --depth %d: must be from 1 to 16\n", depth);
        return 2;
    }
    CamoXpertConfig cfg;
    if (camoxpert_config(&cfg, backbone, sparse, E, k) || moe_balance_parse(balance, &cfg.balance)) {
        fprintf(stderr, "error: %s\n", cx_errmsg());
        return 2;
    }
    ParamTable pt;
    params_init(&pt);
    CamoXpert *m = camoxpert_create(&cfg, &pt);
    printf("%s on %s", sparse ? "CamoXpertSparseMoE" : "CamoXpertCOD", backbone);
    if (sparse) printf(", E=%d experts, top-%d, balance %s", E, k, moe_balance_name(cfg.balance));
    printf("; feature widths [%d, %d, %d, %d]\n\n", cfg.dims[0], cfg.dims[1], cfg.dims[2], cfg.dims[3]);

    // aggregate parameter counts per name prefix of up to `depth` components, in table order
    TreeNode *nodes = cx_calloc((size_t)pt.n * (size_t)(depth > 0 ? depth : 1) + 1, sizeof *nodes);
    int nn = 0;
    int64_t buffers = 0;
    for (int i = 0; i < pt.n; i++) {
        const ParamInfo *e = &pt.p[i];
        if (e->flags & PF_BUFFER) { buffers += e->numel; continue; }
        const char *s = e->name;
        for (int d = 1; d <= depth; d++) {
            const char *dot = s;
            for (int c = 0; c < d && dot; c++) dot = strchr(c ? dot + 1 : dot, '.');
            if (!dot) break;   // the leaf (".weight") is not a module
            size_t len = (size_t)(dot - s);
            int j = nn - 1;
            while (j >= 0 && !(nodes[j].depth == d && strlen(nodes[j].name) == len && !strncmp(nodes[j].name, s, len))) j--;
            if (j < 0) {
                j = nn++;
                snprintf(nodes[j].name, sizeof nodes[j].name, "%.*s", (int)len, s);
                nodes[j].depth = d;
            }
            nodes[j].count += e->numel;
        }
    }
    char b1[32];
    for (int j = 0; j < nn; j++) {
        const char *last = strrchr(nodes[j].name, '.');
        last = last ? last + 1 : nodes[j].name;
        char label[200];
        snprintf(label, sizeof label, "%*s%s", 2 * (nodes[j].depth - 1), "", nodes[j].depth == 1 ? nodes[j].name : last);
        const char *ex = strstr(nodes[j].name, ".experts.");
        if (ex && nodes[j].depth >= 3 && !strchr(ex + 9, '.'))
            snprintf(label + strlen(label), sizeof label - strlen(label), " (%s)",
                     expert_kind_name((expert_kind)(atoi(ex + 9) % EXPERT_KINDS)));
        printf("  %-48s %14s\n", label, with_commas(nodes[j].count, b1, sizeof b1));
    }
    int64_t total = params_count(&pt, PF_BUFFER);
    int64_t groups[PG_COUNT] = { 0 };
    for (int i = 0; i < pt.n; i++)
        if (!(pt.p[i].flags & PF_BUFFER)) groups[pt.p[i].group] += pt.p[i].numel;
    char b2[32], b3[32];
    printf("\n  optimizer groups: backbone %s, router %s, rest %s\n", with_commas(groups[PG_BACKBONE], b1, sizeof b1),
           with_commas(groups[PG_ROUTER], b2, sizeof b2), with_commas(groups[PG_REST], b3, sizeof b3));
    printf("  buffers (BatchNorm running statistics and counters): %s\n", with_commas(buffers, b1, sizeof b1));
    printf("total parameters: %s\n", with_commas(total, b1, sizeof b1));
    free(nodes);
    camoxpert_free(m);
    params_free(&pt);
    return 0;
}
