// log.h — console logging to stderr with levels. Progress bars and tables go
// to stdout through the CLI; this is for messages.
//
//   log_info("loaded %d tensors from %s", n, path);
#pragma once
#include <stdbool.h>

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_QUIET } log_level;

void log_set_level(log_level lv);
log_level log_get_level(void);
void log_msg(log_level lv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool log_stderr_is_tty(void);
bool log_stdout_is_tty(void);
double cx_time_s(void);   // monotonic seconds

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
