// onnx_pb.c — protobuf wire-format writers (onnx_pb.h).
#include "infer/onnx_pb.h"
#include "core/core.h"
#include <string.h>

enum { WIRE_VARINT = 0, WIRE_LEN = 2, WIRE_I32 = 5 };

void pb_free(PbBuf *b) {
    free(b->p);
    *b = (PbBuf){ 0 };
}

void pb_clear(PbBuf *b) { b->n = 0; }

static void reserve(PbBuf *b, size_t more) {
    if (b->n + more <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + more) cap *= 2;
    b->p = cx_realloc(b->p, cap);
    b->cap = cap;
}

void pb_raw(PbBuf *b, const void *d, size_t n) {
    if (!n) return;
    reserve(b, n);
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void varint(PbBuf *b, uint64_t v) {
    unsigned char t[10];
    int k = 0;
    do {
        t[k] = (unsigned char)(v & 0x7f);
        v >>= 7;
        if (v) t[k] |= 0x80;
        k++;
    } while (v);
    pb_raw(b, t, (size_t)k);
}

static int varint_len(uint64_t v) {
    int k = 1;
    while (v >>= 7) k++;
    return k;
}

static void tag(PbBuf *b, int field, int wire) { varint(b, (uint64_t)field << 3 | (uint64_t)wire); }

void pb_uint(PbBuf *b, int field, uint64_t v) {
    tag(b, field, WIRE_VARINT);
    varint(b, v);
}

void pb_float(PbBuf *b, int field, float v) {
    tag(b, field, WIRE_I32);
    unsigned char le[4];
    uint32_t u;
    memcpy(&u, &v, 4);
    for (int i = 0; i < 4; i++) le[i] = (unsigned char)(u >> (8 * i));
    pb_raw(b, le, 4);
}

void pb_bytes(PbBuf *b, int field, const void *d, size_t n) {
    tag(b, field, WIRE_LEN);
    varint(b, n);
    pb_raw(b, d, n);
}

void pb_str(PbBuf *b, int field, const char *s) { pb_bytes(b, field, s, strlen(s)); }

void pb_msg(PbBuf *b, int field, const PbBuf *m) { pb_bytes(b, field, m->p, m->n); }

size_t pb_len_prefix(int field, size_t n) { return (size_t)(varint_len((uint64_t)field << 3) + varint_len(n)); }

void pb_len_header(PbBuf *b, int field, size_t n) {
    tag(b, field, WIRE_LEN);
    varint(b, n);
}

void pb_msg_tail(PbBuf *b, int field, const PbBuf *head, int tail_field, const void *d, size_t n) {
    const size_t total = head->n + pb_len_prefix(tail_field, n) + n;
    reserve(b, pb_len_prefix(field, total) + total);
    pb_len_header(b, field, total);
    pb_raw(b, head->p, head->n);
    pb_bytes(b, tail_field, d, n);
}

void pb_packed_int(PbBuf *b, int field, const int64_t *v, int n) {
    size_t len = 0;
    for (int i = 0; i < n; i++) len += (size_t)varint_len((uint64_t)v[i]);
    tag(b, field, WIRE_LEN);
    varint(b, len);
    for (int i = 0; i < n; i++) varint(b, (uint64_t)v[i]);
}

uint16_t pb_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000u;
    x &= 0x7fffffffu;
    if (x >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (x > 0x7f800000u ? 0x200u : 0));   // inf, NaN
    if (x >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);   // rounds past 65504
    if (x < 0x38800000u) {                                     // below 2^-14: a subnormal or zero
        if (x < 0x33000000u) return (uint16_t)sign;            // below half the smallest subnormal
        const uint32_t mant = (x & 0x7fffffu) | 0x800000u;
        const int shift = 126 - (int)(x >> 23);                // 14 .. 24
        uint32_t h = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((x - 0x38000000u) >> 13), rem = x & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;
    return (uint16_t)(sign | h);
}
