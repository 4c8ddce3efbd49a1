// sha256.h — SHA-256 (FIPS 180-4), for the record of which weights wrote a folder
// (predict's .camoxpert-predict.json): the same hex digest `sha256sum FILE` prints.
//
//   char hex[65];
//   sha256_hex(buf, n, hex);
#pragma once
#include <stddef.h>
#include <stdint.h>

void sha256(const void *data, size_t n, uint8_t out[32]);
// The digest as 64 lowercase hex digits and a NUL.
void sha256_hex(const void *data, size_t n, char out[65]);
