// finite.h — the non-finite checks that guard every parity claim (verify, the
// tests' error rule) and every weight loaded, trained or saved: a NaN or an
// infinity anywhere, on either side, is a failure that names its index, never a
// value that a later finite element can hide.
//
//   int64_t bad = tensor_first_nonfinite(&w);         // -1: all finite
//   int64_t at;
//   double err = tensor_rel_err(&ours, &ref, 0, &at); // NaN when either side is not finite
//   double e2 = tensor_rel_l2(&ours, &ref, floor);    // relative L2, NaN likewise
#pragma once
#include "tensor.h"

// Index of the first NaN or ±Inf element of a host tensor, or -1 when every element is finite.
int64_t tensor_first_nonfinite(const Tensor *t);
// The project's error rule: max|a − b| / max(max|b|, floor) (max|a − b| when the
// denominator is 0). If a or b holds a non-finite value at any index, the result is
// NaN (which fails every `err <= tol`) and *bad (may be NULL) gets the first such
// index; else *bad = -1. a and b have the same number of elements.
double tensor_rel_err(const Tensor *a, const Tensor *b, double floor, int64_t *bad);
// The same in L2 (the GPU rules, per tensor): ‖a − b‖ / max(‖b‖, floor), ‖a − b‖
// when the denominator is 0; NaN when either side holds a non-finite value.
double tensor_rel_l2(const Tensor *a, const Tensor *b, double floor);
