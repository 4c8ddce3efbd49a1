// test_hostile_logs.c — the training log camoxpert reads back from a run (issue 33,
// Low): the report draws only validated numbers and copies nothing of a line that is not
// a record into the page. (The training state a resume trusts: test_checkpoint_io.c.)
#include "test.h"
#include "hostile.h"
#include "report/runlog.h"
#include "train/checkpoint.h"
#include <string.h>

TEST(hostile_the_report_takes_only_valid_numbers_and_copies_nothing_unparsed) {
    static const char log[] =
        "{\"type\":\"step\",\"step\":1,\"epoch\":1,\"stage\":1,\"loss\":1.5}\n"
        "root:SECRET-HASH-1234:19000:0:99999:7:::\n"
        "{\"type\":\"step\",\"step\":9007199254740993,\"epoch\":1,\"stage\":1,\"loss\":1.0}\n"
        "{\"type\":\"step\",\"step\":2.5,\"epoch\":1,\"loss\":1.0}\n"
        "{\"type\":\"step\",\"step\":-4,\"epoch\":1,\"loss\":1.0}\n"
        "{\"type\":\"step\",\"step\":2,\"epoch\":1e300,\"stage\":1,\"loss\":1.25}\n"
        "{\"type\":\"epoch\",\"epoch\":1e300,\"step\":2,\"loss\":1.2}\n"
        "{\"oops\":\"SECRET-TOO\"}\n"
        "{\"type\":\"epoch\",\"epoch\":1,\"step\":2,\"stage\":1,\"loss\":1.2}\n";
    RunLog L;
    REQUIRE_OK(runlog_parse(log, sizeof log - 1, "train_log.jsonl", &L));
    CHECKF(L.n_steps == 2 && L.steps[0].step == 1 && L.steps[1].step == 2, "%d steps", L.n_steps);
    CHECKF(L.n_steps < 2 || L.steps[1].epoch == 0, "an epoch of 1e300 was taken: %d", L.steps[1].epoch);
    CHECKF(L.n_epochs == 1 && L.epochs[0].epoch == 1, "%d epochs", L.n_epochs);
    cJSON *page = runlog_page_json(&L, 100);
    char *js = cJSON_PrintUnformatted(page);
    CHECKF(!strstr(js, "SECRET"), "the page holds text of a line that is not a record: %s", js);
    CHECKF(!strstr(js, "9007199254740993") && !strstr(js, "9.007"), "a step beyond 2^53 reached the page");
    for (int i = 0; i < L.n_notes; i++) CHECKF(!strstr(L.notes[i], "SECRET"), "note: %s", L.notes[i]);
    cJSON_free(js);
    cJSON_Delete(page);
    runlog_free(&L);
    // The same through the command: a log symlinked to a secret leaks nothing into the page.
    const char *run = tiny_run("leak");
    REQUIRE(run[0]);
    char t[600], secret[700], cmd[3000], page_path[800], *o;
    snprintf(t, sizeof t, "%s", test_tmpdir());
    snprintf(secret, sizeof secret, "%s/shadow", t);
    snprintf(cmd, sizeof cmd, "printf 'root:SECRET-HASH-1234:19000:0:99999:7:::\\n' > %s && mv %s/train_log.jsonl %s/log.orig && "
             "ln -s %s %s/train_log.jsonl", secret, run, t, secret, run);
    REQUIRE(system(cmd) == 0);
    int rc = run_bin(&o, "report %s --max-images 0 --threads 1", run);
    CHECKF(!strstr(o, "SECRET"), "the console shows the secret: %s", o);
    snprintf(page_path, sizeof page_path, "%s/report.html", run);
    unsigned char *b;
    size_t n;
    if (rc == 0 && !io_read_file(page_path, &b, &n)) {
        CHECKF(!memmem(b, n, "SECRET", 6), "the page holds the secret");
        free(b);
    }
}
