// log.c — see log.h.
#include "log.h"
#include "error.h"
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static log_level cx_log_level = LOG_INFO;

void log_set_level(log_level lv) { cx_log_level = lv; }
log_level log_get_level(void) { return cx_log_level; }
bool log_stderr_is_tty(void) { return isatty(2); }
bool log_stdout_is_tty(void) { return isatty(1); }

double cx_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void log_msg(log_level lv, const char *fmt, ...) {
    if (lv < cx_log_level) return;
    static const char *tag[] = { "debug: ", "", "warning: ", "error: " };
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    cx_voneline(buf, sizeof buf, fmt, ap);   // a warning is one line, whatever the file names in it
    va_end(ap);
    fprintf(stderr, "%s%s\n", tag[lv < LOG_QUIET ? lv : LOG_ERROR], buf);
}
