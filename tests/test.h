// test.h — the test runner's interface. A test is a function registered by
// TEST(name), or TEST_SLOW(name) for one that takes seconds (a training run, a
// process killed and resumed, a twin fixture): `make test-fast` leaves those out.
// CHECK records a failure and carries on, REQUIRE stops the test; a test that
// crashes (a failed CX_ASSERT, a segmentation fault) fails and the run goes on.
// Tests read shared fixtures through test_shared_path("fixtures/x.safetensors"),
// which resolves ../shared beside the checkout (or $CAMOXPERT_SHARED).
//
//   TEST(arena_reset_reuses_memory) {
//       Arena a; arena_init(&a, "t", 1024);
//       CHECK(arena_alloc(&a, 10) != NULL);
//   }
#pragma once
#include "core/core.h"
#include "ops/ops.h"
#include <math.h>
#include <stdbool.h>

typedef void (*test_fn)(void);
void test_register(const char *name, const char *file, test_fn fn, int slow);
void test_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
bool test_failed(void);   // has the current test failed so far?
// The registered tests in the runner's order (name, and the file that defines it:
// "tests/test_core.c"); NULL past the last.
const char *test_name_at(int i);
const char *test_file_at(int i);
// Path under the shared directory; NULL-safe static buffer rotation (8 slots).
const char *test_shared_path(const char *rel);
// A fresh temporary directory for this test (removed at the end of the run).
const char *test_tmpdir(void);
// Marks the current test skipped — neither passed nor failed: the runner prints
// "skip NAME: why" and the summary line ends with ", N skipped". Return after it.
void test_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// Runs `build/camoxpert ARGS` (the program beside the test runner, or
// $CAMOXPERT_TEST_BIN) with stdin from /dev/null and stdout and stderr into *out (a
// buffer valid until the next call; out may be NULL); returns the exit status, 124
// when it ran past the time limit (600 s; test_run_bin_args: timeout_s) and was killed.
int test_run_bin(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int test_run_bin_args(char **out, int timeout_s, const char *args);
const char *test_bin_path(void);
// A TCP port on 127.0.0.1 that nobody listens on (bound once, then released), or 0.
int test_free_port(void);
// err = max|a-b| / max(max|b|, floor): the project's relative error rule; NaN
// (failing every tolerance) when either side holds a non-finite value.
double test_rel_err(const Tensor *a, const Tensor *b, double floor);
// The CUDA backend on GPU 0 for GPU tests (opened once, scratch in GPU memory),
// or NULL when no GPU is usable: the test then calls test_skip("%s", test_no_gpu()).
OpCtx *test_cuda(void);
const char *test_no_gpu(void);

#define TEST_(name, slow) \
    static void test_##name(void); \
    __attribute__((constructor)) static void test_reg_##name(void) { test_register(#name, __FILE__, test_##name, slow); } \
    static void test_##name(void)
#define TEST(name) TEST_(name, 0)
#define TEST_SLOW(name) TEST_(name, 1)

#define CHECK(cond) do { if (!(cond)) test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond); } while (0)
#define CHECKF(cond, ...) do { if (!(cond)) test_fail(__FILE__, __LINE__, __VA_ARGS__); } while (0)
#define REQUIRE(cond) do { if (!(cond)) { test_fail(__FILE__, __LINE__, "REQUIRE(%s)", #cond); return; } } while (0)
#define REQUIRE_OK(expr) do { cx_status req_st_ = (expr); if (req_st_ != CX_OK) { \
    test_fail(__FILE__, __LINE__, "%s: %s", #expr, cx_errmsg()); return; } } while (0)
#define CHECK_NEAR(a, b, tol) do { double cn_a_ = (a), cn_b_ = (b); if (!(fabs(cn_a_ - cn_b_) <= (tol))) \
    test_fail(__FILE__, __LINE__, "%s = %.9g, %s = %.9g, |diff| %.3g > %.3g", #a, cn_a_, #b, cn_b_, fabs(cn_a_ - cn_b_), (double)(tol)); } while (0)
