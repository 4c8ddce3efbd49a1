// fuzz_runlog.c — libFuzzer harness for the report's training-log reader
// (report/runlog.h): the input is a train_log.jsonl, read and turned into the
// page's data. Seed: fuzz/runlog_seed.jsonl (run, step, epoch with routing, end,
// a cut-off line).
#include "report/runlog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    RunLog L;
    if (runlog_parse((const char *)data, n, "fuzz.jsonl", &L)) return 0;
    runlog_best_epoch(&L);
    cJSON *page = runlog_page_json(&L, 16);
    char *s = cJSON_PrintUnformatted(page);
    cJSON_free(s);
    cJSON_Delete(page);
    runlog_free(&L);
    return 0;
}
