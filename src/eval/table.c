// table.c — see table.h. The four printers share the column list and the best marks.
#include "eval/table.h"
#include "core/text.h"
#include <math.h>
#include <string.h>

const char *const eval_col_keys[EVAL_N_COLS] = {
    "Smeasure", "wFmeasure", "MAE", "meanEm", "maxEm", "adpEm", "meanFm", "maxFm", "adpFm", "IoU50", "Dice50",
};
const int eval_col_lower_better[EVAL_N_COLS] = { 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0 };

// Headers per format: the metric with its variant and parameters.
static const char *const col_text[EVAL_N_COLS] = {
    "Sα(α=.5)", "Fβw(β²=1)", "MAE", "meanEφ", "maxEφ", "adpEφ", "meanFβ(β²=.3)", "maxFβ(β²=.3)", "adpFβ(β²=.3)",
    "IoU@.5", "Dice@.5",
};
static const char *const col_md[EVAL_N_COLS] = {
    "Sα ↑", "Fβw ↑", "MAE ↓", "Eφ mean ↑", "Eφ max ↑", "Eφ adp ↑", "Fβ mean ↑", "Fβ max ↑", "Fβ adp ↑", "IoU@.5 ↑",
    "Dice@.5 ↑",
};
static const char *const col_latex[EVAL_N_COLS] = {
    "$S_\\alpha\\uparrow$", "$F_\\beta^w\\uparrow$", "$M\\downarrow$", "$E_\\phi^{mean}\\uparrow$",
    "$E_\\phi^{max}\\uparrow$", "$E_\\phi^{adp}\\uparrow$", "$F_\\beta^{mean}\\uparrow$", "$F_\\beta^{max}\\uparrow$",
    "$F_\\beta^{adp}\\uparrow$", "IoU$_{.5}\\uparrow$", "Dice$_{.5}\\uparrow$",
};

void eval_row_values(const MetricsSummary *s, int whole, double *v) {
    const double x[EVAL_N_COLS] = { s->sm, s->wfm, s->mae, s->mean_em, s->max_em, s->adp_em, s->mean_fm, s->max_fm,
                                    s->adp_fm, whole ? s->iou_50_all : s->iou_50, whole ? s->dice_50_all : s->dice_50 };
    memcpy(v, x, sizeof x);
}

static double round_to(double v, int digits) {
    if (digits < 0) return v;
    double p = pow(10, digits);
    return nearbyint(v * p) / p;
}

int eval_table_best(const EvalTable *t, int r, int c, int whole, int digits) {
    if (!t->rows[r].s) return 0;
    int scored = 0;
    double best = 0, v[EVAL_N_COLS];
    for (int i = 0; i < t->n_rows; i++) {
        if (!t->rows[i].s) continue;
        eval_row_values(t->rows[i].s, whole, v);
        double x = round_to(v[c], digits);
        if (!scored++ || (eval_col_lower_better[c] ? x < best : x > best)) best = x;
    }
    eval_row_values(t->rows[r].s, whole, v);
    return scored >= 2 && round_to(v[c], digits) == best;
}

// ---- text ---------------------------------------------------------------------------
static int display_cols(const char *s) {
    int n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) n += (*p & 0xC0) != 0x80;
    return n;
}

static void pad(FILE *fp, const char *s, int width) {
    fputs(s, fp);
    for (int n = display_cols(s); n < width; n++) fputc(' ', fp);
}

static void print_text(FILE *fp, const EvalTable *t, int whole) {
    int mw = 8;
    for (int r = 0; r < t->n_rows; r++)
        if (display_cols(t->rows[r].method) + 2 > mw) mw = display_cols(t->rows[r].method) + 2;
    fprintf(fp, "%s (%s)\n", t->title, t->caption);
    pad(fp, "method", mw);
    pad(fp, "n", 7);
    for (int c = 0; c < EVAL_N_COLS; c++) {
        char h[64];
        snprintf(h, sizeof h, "%s%s", col_text[c], c >= 9 ? (whole ? "/all" : "/img") : "");
        pad(fp, h, 15);
    }
    fputc('\n', fp);
    int marks = 0;
    for (int r = 0; r < t->n_rows; r++) {
        const EvalRow *row = &t->rows[r];
        pad(fp, row->method, mw);
        if (!row->s) {
            fprintf(fp, "not scored: %s\n", row->why ? row->why : "no predictions");
            continue;
        }
        char n[32];
        snprintf(n, sizeof n, "%lld", (long long)row->s->n);
        pad(fp, n, 7);
        double v[EVAL_N_COLS];
        eval_row_values(row->s, whole, v);
        for (int c = 0; c < EVAL_N_COLS; c++) {
            int best = eval_table_best(t, r, c, whole, 4);
            marks |= best;
            char cell[32];
            snprintf(cell, sizeof cell, "%.4f%s", v[c], best ? "*" : "");
            pad(fp, cell, 15);
        }
        fputc('\n', fp);
    }
    if (marks) fputs("* best in its column\n", fp);
}

// ---- Markdown ------------------------------------------------------------------------
// Text in a Markdown table cell: | and the characters that start emphasis or HTML escaped.
static void md_text(FILE *fp, const char *s) {
    for (; *s; s++) {
        if (strchr("|\\*_`<>[]", *s)) fputc('\\', fp);
        fputc(*s == '\n' || *s == '\r' ? ' ' : *s, fp);
    }
}

static void print_md(FILE *fp, const EvalTable *t, int whole) {
    fputs("### ", fp);
    md_text(fp, t->title);
    fputs(" (", fp);
    md_text(fp, t->caption);
    fputs(")\n\n| Method |", fp);
    for (int c = 0; c < EVAL_N_COLS; c++) fprintf(fp, " %s%s |", col_md[c], c >= 9 ? (whole ? " (all)" : " (img)") : "");
    fputs("\n|:--|", fp);
    for (int c = 0; c < EVAL_N_COLS; c++) fputs("--:|", fp);
    fputc('\n', fp);
    for (int r = 0; r < t->n_rows; r++) {
        const EvalRow *row = &t->rows[r];
        fputs("| ", fp);
        md_text(fp, row->method);
        fputs(" |", fp);
        if (!row->s) {
            fputs(" not scored: ", fp);
            md_text(fp, row->why ? row->why : "no predictions");
            fputs(" |", fp);
            for (int c = 1; c < EVAL_N_COLS; c++) fputs(" – |", fp);
            fputc('\n', fp);
            continue;
        }
        double v[EVAL_N_COLS];
        eval_row_values(row->s, whole, v);
        for (int c = 0; c < EVAL_N_COLS; c++) {
            int best = eval_table_best(t, r, c, whole, 3);
            fprintf(fp, best ? " **%.3f** |" : " %.3f |", v[c]);
        }
        fputc('\n', fp);
    }
    fputc('\n', fp);
}

// ---- LaTeX ---------------------------------------------------------------------------
static void tex_text(FILE *fp, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '\\': fputs("\\textbackslash{}", fp); break;
        case '~': fputs("\\textasciitilde{}", fp); break;
        case '^': fputs("\\textasciicircum{}", fp); break;
        case '&': case '%': case '$': case '#': case '_': case '{': case '}': fputc('\\', fp); fputc(*s, fp); break;
        case '\n': case '\r': fputc(' ', fp); break;
        default: fputc(*s, fp);
        }
    }
}

static void print_latex(FILE *fp, const EvalTable *t, int whole) {
    fputs("% ", fp);
    tex_text(fp, t->title);
    fputs(" (", fp);
    tex_text(fp, t->caption);
    fputs(")\n\\begin{tabular}{l", fp);
    for (int c = 0; c < EVAL_N_COLS; c++) fputc('c', fp);
    fputs("}\n\\toprule\n\\multicolumn{12}{c}{", fp);
    tex_text(fp, t->title);
    fputs("} \\\\\n\\midrule\nMethod", fp);
    for (int c = 0; c < EVAL_N_COLS; c++) fprintf(fp, " & %s%s", col_latex[c], c >= 9 ? (whole ? "$^{all}$" : "$^{img}$") : "");
    fputs(" \\\\\n\\midrule\n", fp);
    for (int r = 0; r < t->n_rows; r++) {
        const EvalRow *row = &t->rows[r];
        tex_text(fp, row->method);
        if (!row->s) {
            fputs(" & \\multicolumn{11}{l}{not scored: ", fp);
            tex_text(fp, row->why ? row->why : "no predictions");
            fputs("} \\\\\n", fp);
            continue;
        }
        double v[EVAL_N_COLS];
        eval_row_values(row->s, whole, v);
        for (int c = 0; c < EVAL_N_COLS; c++)
            fprintf(fp, eval_table_best(t, r, c, whole, 3) ? " & \\textbf{%.3f}" : " & %.3f", v[c]);
        fputs(" \\\\\n", fp);
    }
    fputs("\\bottomrule\n\\end{tabular}\n\n", fp);
}

// ---- CSV -----------------------------------------------------------------------------
const char *eval_tables_csv_header(void) {
    return "dataset,method,n,Smeasure,wFmeasure,MAE,meanEm,maxEm,adpEm,meanFm,maxFm,adpFm,IoU50,Dice50,averaging,best,"
           "not_scored";
}

static void print_csv_rows(FILE *fp, const EvalTable *t, int whole) {
    for (int r = 0; r < t->n_rows; r++) {
        const EvalRow *row = &t->rows[r];
        text_csv_field(fp, t->title);
        fputc(',', fp);
        text_csv_field(fp, row->method);
        if (!row->s) {
            fputs(",,,,,,,,,,,,,,", fp);
            text_csv_field(fp, row->why ? row->why : "no predictions");
            fputc('\n', fp);
            continue;
        }
        fprintf(fp, ",%lld", (long long)row->s->n);
        double v[EVAL_N_COLS];
        eval_row_values(row->s, whole, v);
        for (int c = 0; c < EVAL_N_COLS; c++) fprintf(fp, ",%.17g", v[c]);
        fprintf(fp, ",%s,", whole ? "IoU50/Dice50 over the dataset" : "per image");
        char best[256] = "";
        for (int c = 0; c < EVAL_N_COLS; c++)
            if (eval_table_best(t, r, c, whole, -1))
                snprintf(best + strlen(best), sizeof best - strlen(best), "%s%s", best[0] ? " " : "", eval_col_keys[c]);
        text_csv_field(fp, best);
        fputs(",\n", fp);
    }
}

void eval_tables_print(FILE *fp, eval_format f, const EvalTable *t, int n, int whole) {
    if (f == EVAL_FMT_CSV) fprintf(fp, "%s\n", eval_tables_csv_header());
    for (int i = 0; i < n; i++) {
        switch (f) {
        case EVAL_FMT_TEXT: print_text(fp, &t[i], whole); if (i + 1 < n) fputc('\n', fp); break;
        case EVAL_FMT_MD: print_md(fp, &t[i], whole); break;
        case EVAL_FMT_LATEX: print_latex(fp, &t[i], whole); break;
        case EVAL_FMT_CSV: print_csv_rows(fp, &t[i], whole); break;
        }
    }
}
