// page.c — the HTML shell every camoxpert page shares (the training report, `eval
// --plot`): the style sheet, a status line the script fills, the data as JSON, the script
// (page.js and page.css, built in by assets.c). page.js draws whatever the data holds.
#include "report.h"

extern const char report_page_js[], report_page_css[];

// Writes s into fp with every '<' as \u003c, so no string in the data can end the
// <script> element that holds it (outside strings JSON has no '<').
static void put_json_for_script(FILE *fp, const char *s) {
    for (const char *p = s; *p; p++) {
        if (*p == '<') fputs("\\u003c", fp);
        else fputc(*p, fp);
    }
}

static void put_html_text(FILE *fp, const char *s) {
    for (const char *p = s; *p; p++) {
        switch (*p) {
        case '<': fputs("&lt;", fp); break;
        case '>': fputs("&gt;", fp); break;
        case '&': fputs("&amp;", fp); break;
        case '"': fputs("&quot;", fp); break;
        default: fputc(*p, fp);
        }
    }
}

void report_page_put(FILE *fp, const char *title, const char *generator, const char *json, int live) {
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n", fp);
    if (live) fputs("<meta http-equiv=\"refresh\" content=\"60\">\n", fp);
    fputs("<meta name=\"generator\" content=\"", fp);
    put_html_text(fp, generator);
    fputs("\">\n<title>", fp);
    put_html_text(fp, title);
    fprintf(fp, "</title>\n<style>\n%s</style>\n</head><body>\n", report_page_css);
    fputs("<div id=\"status\" data-state=\"loading\" data-errors=\"0\">This page draws its charts with JavaScript; "
          "turn it on to see them.</div>\n<main id=\"app\"></main>\n<script id=\"data\" type=\"application/json\">", fp);
    put_json_for_script(fp, json);
    fprintf(fp, "</script>\n<script>\n%s</script>\n</body></html>\n", report_page_js);
}
