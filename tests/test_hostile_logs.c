// test_hostile_logs.c — files camoxpert reads back from a run (issue 33, Low): the
// training log the report draws (numbers validated, nothing of a line that is not a
// record copied into the page) and the training state a resume trusts.
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

// Rewrites one __metadata__ value of the safetensors file at path, in place.
static cx_status set_meta(const char *path, const char *key, const char *value) {
    unsigned char *buf;
    size_t n;
    CX_TRY(io_read_file(path, &buf, &n));
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | buf[i];
    cJSON *h = cJSON_ParseWithLength((char *)buf + 8, hl);
    cJSON *m = cJSON_GetObjectItemCaseSensitive(h, "__metadata__");
    cJSON_ReplaceItemInObjectCaseSensitive(m, key, cJSON_CreateString(value));
    char *js = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    size_t L = strlen(js), P = (L + 7) / 8 * 8;
    FILE *fp = fopen(path, "wb");
    for (int i = 0; fp && i < 8; i++) fputc((int)((uint64_t)P >> (8 * i)), fp);
    if (fp) {
        fwrite(js, 1, L, fp);
        for (size_t i = L; i < P; i++) fputc(' ', fp);
        fwrite(buf + 8 + hl, 1, n - 8 - hl, fp);
        fclose(fp);
    }
    free(js);
    free(buf);
    return fp ? CX_OK : CX_FAIL(CX_EIO, "cannot write %s", path);
}

// The training state's metadata is validated on resume: what cannot be is an error naming
// the key, before any step (issue 33: version "9", stage 0 or 3, best_score NaN or 2.0, a
// huge batch_in_epoch, a negative global_step, world 1000000 were accepted).
TEST(hostile_a_resume_refuses_training_state_metadata_that_cannot_be) {
    const char *run = tiny_run("state");
    REQUIRE(run[0]);
    char last[800], sp[1000], keep[1100], cmd[3000], *o;
    snprintf(last, sizeof last, "%s/last.safetensors", run);
    uint64_t tok;
    REQUIRE_OK(checkpoint_read_token(last, &tok));
    checkpoint_state_path(last, tok, sp, sizeof sp);
    snprintf(keep, sizeof keep, "%s.keep", sp);
    snprintf(cmd, sizeof cmd, "cp %s %s", sp, keep);
    REQUIRE(system(cmd) == 0);
    static const char *const bad[][2] = { { "version", "9" }, { "stage", "0" }, { "stage", "3" }, { "best_score", "nan" },
                                          { "best_score", "2.0" }, { "batch_in_epoch", "1000000000000000000" },
                                          { "global_step", "-5" }, { "world", "1000000" }, { "epoch", "1.5" } };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(cmd, sizeof cmd, "cp %s %s", keep, sp);
        REQUIRE(system(cmd) == 0);
        REQUIRE_OK(set_meta(sp, bad[i][0], bad[i][1]));
        int rc = run_bin(&o, "train --resume-from %s --epochs 2 --threads 1 --num-workers 1 --progress 0", last);
        CHECKF(rc != 0 && rc != 124 && strstr(o, bad[i][0]) && !strstr(o, "\"type\":\"step\""), "%s = %s: exit %d: %s",
               bad[i][0], bad[i][1], rc, o);
    }
    // A cursor within the file's bounds but past this data set's epoch.
    snprintf(cmd, sizeof cmd, "cp %s %s", keep, sp);
    REQUIRE(system(cmd) == 0);
    REQUIRE_OK(set_meta(sp, "batch_in_epoch", "1000000"));
    REQUIRE_OK(set_meta(sp, "samples_in_epoch", "4000000"));   // batch 4, one rank: the same cursor
    int rc = run_bin(&o, "train --resume-from %s --epochs 2 --threads 1 --num-workers 1 --progress 0", last);
    CHECKF(rc != 0 && strstr(o, "cannot resume at epoch"), "batch_in_epoch 1000000: exit %d: %s", rc, o);
    snprintf(cmd, sizeof cmd, "cp %s %s", keep, sp);
    REQUIRE(system(cmd) == 0);
    rc = run_bin(&o, "train --resume-from %s --epochs 2 --threads 1 --num-workers 1 --progress 0", last);
    CHECKF(rc == 0, "the untouched state: exit %d: %s", rc, o);
}
