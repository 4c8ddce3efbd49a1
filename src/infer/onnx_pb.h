// onnx_pb.h — the protobuf wire format, as much of it as an ONNX file needs: a
// growable byte buffer and field writers (varint, 32-bit float, length-delimited
// bytes, strings, packed int64s, nested messages). Nothing is parsed; field numbers
// are the callers' (onnx.c writes ONNX's onnx.proto3 messages). A nested message is
// built in a buffer of its own and appended with its length, except where a large
// tail (a tensor's raw_data) is appended by pb_msg_tail without an extra copy.
// reference: https://protobuf.dev/programming-guides/encoding/
//
//   PbBuf node = { 0 };
//   pb_str(&node, 1, "x");                  // NodeProto.input
//   pb_str(&node, 4, "Relu");               // NodeProto.op_type
//   pb_msg(&graph, 1, &node);               // GraphProto.node
//   pb_free(&node);
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef struct {
    unsigned char *p;
    size_t n, cap;
} PbBuf;

void pb_free(PbBuf *b);
void pb_clear(PbBuf *b);                                          // empties b, keeping its memory
void pb_raw(PbBuf *b, const void *d, size_t n);                   // bytes as they are
void pb_uint(PbBuf *b, int field, uint64_t v);                    // varint (wire type 0): int32, int64, enum
static inline void pb_int(PbBuf *b, int field, int64_t v) { pb_uint(b, field, (uint64_t)v); }   // two's complement
void pb_float(PbBuf *b, int field, float v);                      // fixed 32 (wire type 5)
void pb_bytes(PbBuf *b, int field, const void *d, size_t n);      // length-delimited (wire type 2)
void pb_str(PbBuf *b, int field, const char *s);
void pb_msg(PbBuf *b, int field, const PbBuf *m);                 // a nested message
// A nested message whose fields are `head` followed by the bytes field `tail_field`
// holding d[0..n): written straight into b (the tensor data is copied once).
void pb_msg_tail(PbBuf *b, int field, const PbBuf *head, int tail_field, const void *d, size_t n);
void pb_packed_int(PbBuf *b, int field, const int64_t *v, int n); // repeated int64, packed
// The bytes a field header and varint length take before n bytes of payload.
size_t pb_len_prefix(int field, size_t n);
// Only the header of a length-delimited field of n bytes: the caller writes the payload
// after it (a message too large to copy, written to the file piece by piece).
void pb_len_header(PbBuf *b, int field, size_t n);
// IEEE binary16 bits of f, rounded to nearest even (beyond 65504: ±inf; gradual
// underflow below 2^-14): float16 initializers and constants.
uint16_t pb_f16(float f);
