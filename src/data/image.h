// image.h — 8-bit images in memory: decoding (JPEG via libjpeg-turbo, PNG via
// libspng, uncompressed BMP), encoding (PNG, JPEG), and the resizes the data
// pipeline needs (bilinear for images, nearest + binarise for masks).
//
// Decoding is by content (magic bytes), never by file extension. Every pixel
// format the COD datasets and their derivatives use is converted to 8-bit gray
// or RGB: 16-bit samples keep their high byte, palette and gray are expanded,
// alpha is dropped, CMYK/YCCK JPEGs (Adobe-inverted or not) become RGB, and the
// EXIF orientation (JPEG APP1, PNG eXIf) is applied. RGB -> gray is Pillow's
// convert('L'): L = R*299/1000 + G*587/1000 + B*114/1000, computed the way Pillow
// does (16-bit fixed point, rounded), so masks stored in colour match the reference.
//
//   Image8 im;
//   if (image_load("Imgs/a.jpg", 3, &im)) { log_error("%s", cx_errmsg()); ... }
//   Image8 small;
//   image_resize_bilinear(&im, 352, 352, &small);
//   image_save_png("out.png", &small);
//   image_free(&im); image_free(&small);
#pragma once
#include "core/core.h"
#include <stdint.h>
#include <stddef.h>

typedef struct {
    int w, h, c;       // width, height, channels (1 = gray, 3 = RGB)
    uint8_t *px;       // (h, w, c) interleaved rows, malloc'd; NULL when empty
} Image8;

typedef enum { IMAGE_FMT_UNKNOWN = 0, IMAGE_FMT_JPEG, IMAGE_FMT_PNG, IMAGE_FMT_BMP } image_format;

// The largest image accepted (w*h), guarding allocations against hostile
// headers. Default 1<<28 pixels; the fuzz harnesses lower it.
void image_set_max_pixels(int64_t n);

// Detects the format from the first bytes (JPEG FF D8 FF, PNG signature, "BM").
image_format image_sniff(const uint8_t *buf, size_t n);
const char *image_format_name(image_format f);

// Loads a file as channels = 1 (gray) or 3 (RGB). Errors name the file and the
// problem: zero-byte, truncated, not an image, unreadable, unsupported variant.
cx_status image_load(const char *path, int channels, Image8 *out);
// The same from memory; `name` is used in messages only.
cx_status image_decode(const uint8_t *buf, size_t n, const char *name, int channels, Image8 *out);

// A fast validity check for the dataset pre-scan: decodes the whole entropy-coded
// stream (so truncation and corruption are caught) but at 1/8 scale for JPEG, and
// reports the full-size, orientation-applied width and height.
cx_status image_probe(const char *path, int *w, int *h);
cx_status image_probe_memory(const uint8_t *buf, size_t n, const char *name, int *w, int *h);

// 1 when buf is a JPEG that a GPU's decoder takes as it is (infer/pipeline.h): 8-bit,
// three YCbCr components, sequential Huffman coding (not progressive, not arithmetic),
// no EXIF orientation to apply, and the end marker at the end (a truncated file is left
// to the CPU's decoder, which names the fault); *w, *h its size. 0 for anything else,
// which the CPU decodes. Reads the header only.
int image_jpeg_plain(const uint8_t *buf, size_t n, int *w, int *h);

void image_free(Image8 *im);
// Allocates px for (h, w, c), uninitialised.
void image_alloc(Image8 *im, int w, int h, int c);

// 8-bit gray or RGB PNG, written atomically (temporary file + rename).
cx_status image_save_png(const char *path, const Image8 *im);
// Baseline JPEG (quality 1..100, 4:2:0 for RGB), written atomically.
cx_status image_save_jpeg(const char *path, const Image8 *im, int quality);
// Encodes into a malloc'd buffer (*buf, *n), for callers that write elsewhere.
cx_status image_encode_png(const Image8 *im, int compression_level, uint8_t **buf, size_t *n);
cx_status image_encode_jpeg(const Image8 *im, int quality, uint8_t **buf, size_t *n);
// The same, marked with the program that wrote them (`software`, e.g. "camoxpert
// predict"; NULL: no mark) as a PNG tEXt "Software" chunk or a JPEG comment: how
// camoxpert recognises the files it may replace (core/outpath.h).
cx_status image_save_png_as(const char *path, const Image8 *im, const char *software);
cx_status image_save_jpeg_as(const char *path, const Image8 *im, int quality, const char *software);
cx_status image_encode_png_as(const Image8 *im, int compression_level, const char *software, uint8_t **buf, size_t *n);
cx_status image_encode_jpeg_as(const Image8 *im, int quality, const char *software, uint8_t **buf, size_t *n);
// As the two above, but the file is left closed under its temporary name in *af,
// not yet flushed or renamed: many files then commit together (io.h,
// io_atomic_commit_group: predict's masks).
cx_status image_save_png_pending(const char *path, const Image8 *im, const char *software, AtomicFile *af);
cx_status image_save_jpeg_pending(const char *path, const Image8 *im, int quality, const char *software, AtomicFile *af);

// A prediction overlay for viewing: dst (h, w, 3) = rgb blended with colour
// (r, g, b) at opacity `alpha` where mask (h, w, 1) is > 128. rgb may be gray
// (c = 1); mask must have rgb's size. dst gets a fresh buffer.
cx_status image_overlay_mask(Image8 *dst, const Image8 *rgb, const Image8 *mask, uint8_t r, uint8_t g, uint8_t b, float alpha);

// Pillow's RGB -> L on one pixel.
static inline uint8_t image_rgb_to_gray(uint8_t r, uint8_t g, uint8_t b) {
    return (uint8_t)(((uint32_t)r * 19595u + (uint32_t)g * 38470u + (uint32_t)b * 7471u + 0x8000u) >> 16);
}

// Bilinear resize with half-pixel centres (align_corners=False, no antialias:
// the same sampling as cv2.INTER_LINEAR and torch's interpolate), rounded to u8.
// dst gets a fresh buffer of (H, W, src->c).
void image_resize_bilinear(const Image8 *src, int W, int H, Image8 *dst);
// Float version on one HWC image: dst (H, W, C) from src (h, w, C).
void image_resize_bilinear_f32(float *dst, int H, int W, const float *src, int h, int w, int C);
// Nearest-neighbour resize of a 1-channel mask (source pixel floor((x+0.5)*w/W),
// as Pillow's NEAREST), binarised: dst01 (H, W) gets 1 where the source is > 128.
void image_mask_resize_nearest(uint8_t *dst01, int H, int W, const Image8 *mask);
