// assets.c — the report page's script and style sheet, src/report/page.js and
// page.css, built into the program (a report needs no file beside the binary).
// The assembler's .incbin reads them at build time, relative to the repository
// root where make runs; the Makefile makes this object depend on both files.
// Each is NUL-terminated: report.c prints them as strings.
__asm__(".pushsection .rodata\n"
        ".global report_page_js\n"
        ".type report_page_js, @object\n"
        "report_page_js:\n"
        ".incbin \"src/report/page.js\"\n"
        ".byte 0\n"
        ".global report_page_css\n"
        ".type report_page_css, @object\n"
        "report_page_css:\n"
        ".incbin \"src/report/page.css\"\n"
        ".byte 0\n"
        ".popsection\n");
