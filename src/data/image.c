// image.c — see image.h. JPEG through libjpeg-turbo (setjmp error recovery,
// premature end of data treated as an error), PNG through libspng (CRCs checked,
// chunk and size limits set), a small bounds-checked BMP reader, EXIF orientation,
// pixel-format conversion, encoders and resizes.
#include "image.h"
#include "core/pixels.h"
#include <setjmp.h>
#include <string.h>
#include <errno.h>
#include <math.h>
#include <jpeglib.h>
#include <jerror.h>
#include <spng.h>

static int64_t g_max_pixels = (int64_t)1 << 28;
void image_set_max_pixels(int64_t n) { g_max_pixels = n > 0 ? n : ((int64_t)1 << 28); }

image_format image_sniff(const uint8_t *b, size_t n) {
    static const uint8_t png_sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
    if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return IMAGE_FMT_JPEG;
    if (n >= 8 && !memcmp(b, png_sig, 8)) return IMAGE_FMT_PNG;
    if (n >= 2 && b[0] == 'B' && b[1] == 'M') return IMAGE_FMT_BMP;
    return IMAGE_FMT_UNKNOWN;
}

const char *image_format_name(image_format f) {
    switch (f) {
    case IMAGE_FMT_JPEG: return "JPEG";
    case IMAGE_FMT_PNG: return "PNG";
    case IMAGE_FMT_BMP: return "BMP";
    default: return "unknown";
    }
}

void image_alloc(Image8 *im, int w, int h, int c) {
    im->w = w; im->h = h; im->c = c;
    im->px = cx_malloc((size_t)w * (size_t)h * (size_t)c + 1);
}

void image_free(Image8 *im) {
    if (!im) return;
    free(im->px);
    im->px = NULL;
    im->w = im->h = im->c = 0;
}

static cx_status check_dims(const char *name, int64_t w, int64_t h) {
    if (w <= 0 || h <= 0)
        return CX_FAIL(CX_EFORMAT, "%s: image has zero size (%lldx%lld); the file is corrupt", name, (long long)w, (long long)h);
    if (w > 65535 || h > 65535 || w * h > g_max_pixels)
        return CX_FAIL(CX_EFORMAT, "%s: image is %lldx%lld, larger than the %lld-pixel limit; the file is corrupt or not a photo",
                       name, (long long)w, (long long)h, (long long)g_max_pixels);
    return CX_OK;
}

// ---- EXIF orientation ---------------------------------------------------------
// Reads tag 0x0112 from IFD0 of a TIFF-structured EXIF block; returns 1..8, or 1
// when absent or malformed (a broken EXIF block is not worth failing the image for).
static int exif_orientation(const uint8_t *p, size_t n) {
    if (n >= 6 && !memcmp(p, "Exif\0\0", 6)) { p += 6; n -= 6; }
    if (n < 8) return 1;
    int le;
    if (p[0] == 'I' && p[1] == 'I') le = 1;
    else if (p[0] == 'M' && p[1] == 'M') le = 0;
    else return 1;
#define RD16(q) (le ? (uint32_t)((q)[0] | (q)[1] << 8) : (uint32_t)((q)[0] << 8 | (q)[1]))
#define RD32(q) (le ? ((uint32_t)(q)[0] | (uint32_t)(q)[1] << 8 | (uint32_t)(q)[2] << 16 | (uint32_t)(q)[3] << 24) \
                    : ((uint32_t)(q)[0] << 24 | (uint32_t)(q)[1] << 16 | (uint32_t)(q)[2] << 8 | (uint32_t)(q)[3]))
    if (RD16(p + 2) != 42) return 1;
    uint32_t ifd = RD32(p + 4);
    if (ifd > n || n - ifd < 2) return 1;
    uint32_t count = RD16(p + ifd);
    for (uint32_t i = 0; i < count; i++) {
        size_t e = (size_t)ifd + 2 + (size_t)i * 12;
        if (e + 12 > n) return 1;
        if (RD16(p + e) == 0x0112) {
            uint32_t type = RD16(p + e + 2);
            uint32_t v = type == 3 ? RD16(p + e + 8) : type == 4 ? RD32(p + e + 8) : 1;
            return v >= 1 && v <= 8 ? (int)v : 1;
        }
    }
    return 1;
#undef RD16
#undef RD32
}

// Applies EXIF orientation o (2..8) in place (the buffer is replaced).
static void apply_orientation(Image8 *im, int o) {
    if (o <= 1 || o > 8) return;
    int W = im->w, H = im->h, C = im->c;
    int swap = o >= 5;
    int ow = swap ? H : W, oh = swap ? W : H;
    uint8_t *dst = cx_malloc((size_t)ow * (size_t)oh * (size_t)C + 1);
    for (int y = 0; y < oh; y++) {
        for (int x = 0; x < ow; x++) {
            int sx, sy;   // source column and row for output (x, y)
            switch (o) {
            case 2: sx = W - 1 - x; sy = y; break;               // mirror horizontal
            case 3: sx = W - 1 - x; sy = H - 1 - y; break;       // rotate 180
            case 4: sx = x; sy = H - 1 - y; break;               // mirror vertical
            case 5: sx = y; sy = x; break;                       // transpose
            case 6: sx = y; sy = H - 1 - x; break;               // rotate 90 clockwise
            case 7: sx = W - 1 - y; sy = H - 1 - x; break;       // transverse
            default: sx = W - 1 - y; sy = x; break;              // 8: rotate 90 counter-clockwise
            }
            memcpy(dst + ((size_t)y * ow + x) * C, im->px + ((size_t)sy * W + sx) * C, (size_t)C);
        }
    }
    free(im->px);
    im->px = dst; im->w = ow; im->h = oh;
}

// ---- pixel conversion -----------------------------------------------------------
// src (n, sc) with sc in {1, 2 (gray+alpha), 3, 4 (RGBA)} -> dst (n, dc), dc in {1, 3}.
// One loop per case, so the per-pixel work has no branches.
static void convert_pixels(uint8_t *dst, int dc, const uint8_t *src, int sc, size_t n) {
    if (sc <= 2 && dc == 1) for (size_t i = 0; i < n; i++) dst[i] = src[i * sc];
    else if (sc <= 2) for (size_t i = 0; i < n; i++) dst[3 * i] = dst[3 * i + 1] = dst[3 * i + 2] = src[i * sc];
    else if (dc == 1) for (size_t i = 0; i < n; i++) dst[i] = image_rgb_to_gray(src[i * sc], src[i * sc + 1], src[i * sc + 2]);
    else for (size_t i = 0; i < n; i++) { dst[3 * i] = src[i * sc]; dst[3 * i + 1] = src[i * sc + 1]; dst[3 * i + 2] = src[i * sc + 2]; }
}

// Makes out a (H, W, dc) image from raw (H, W, sc), taking raw over when the
// layouts already agree (the common case: RGB JPEG as RGB, gray PNG as gray).
static void finish_image(Image8 *out, uint8_t *raw, int W, int H, int sc, int dc) {
    if (sc == dc) {
        out->w = W; out->h = H; out->c = dc; out->px = raw;
        return;
    }
    image_alloc(out, W, H, dc);
    convert_pixels(out->px, dc, raw, sc, (size_t)W * H);
    free(raw);
}

// ---- JPEG -----------------------------------------------------------------------
typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    int truncated;
    char msg[JMSG_LENGTH_MAX];
} JpegErr;

static void jpeg_on_error(j_common_ptr ci) {
    JpegErr *e = (JpegErr *)ci->err;
    e->pub.format_message(ci, e->msg);
    longjmp(e->jb, 1);
}

static void jpeg_on_message(j_common_ptr ci, int level) {
    JpegErr *e = (JpegErr *)ci->err;
    // Warnings (level -1) are corrupt-data notices; running out of data means the
    // decoder filled the rest with gray, which would silently train on garbage.
    if (level < 0 && e->pub.msg_code == JWRN_JPEG_EOF) e->truncated = 1;
}

// A decompressor whose errors longjmp to err->jb (set by the caller) and whose
// running out of data is noted in err->truncated.
static void jpeg_setup(struct jpeg_decompress_struct *ci, JpegErr *err) {
    memset(err, 0, sizeof *err);
    ci->err = jpeg_std_error(&err->pub);
    err->pub.error_exit = jpeg_on_error;
    err->pub.emit_message = jpeg_on_message;
    jpeg_create_decompress(ci);
}

// Decodes a JPEG. reduce = 1 decodes at full size; 8 at 1/8 (for the pre-scan).
// Returns the full-size, orientation-applied dimensions in *fw, *fh when non-NULL.
static cx_status decode_jpeg(const uint8_t *buf, size_t n, const char *name, int channels, int reduce,
                             Image8 *out, int *fw, int *fh) {
    struct jpeg_decompress_struct ci;
    JpegErr err;
    uint8_t *volatile raw = NULL;   // (H, W, components); volatile: freed after a longjmp
    jpeg_setup(&ci, &err);
    if (setjmp(err.jb)) {
        jpeg_destroy_decompress(&ci);
        free(raw);
        if (err.truncated)
            return CX_FAIL(CX_EFORMAT, "%s: truncated JPEG (the data ends early: %s; re-download or delete the file)", name, err.msg);
        return CX_FAIL(CX_EFORMAT, "%s: corrupt JPEG (%s)", name, err.msg);
    }
    ci.mem->max_memory_to_use = 1L << 30;
    jpeg_mem_src(&ci, buf, (unsigned long)n);
    jpeg_save_markers(&ci, JPEG_APP0 + 1, 0xFFFF);
    if (jpeg_read_header(&ci, TRUE) != JPEG_HEADER_OK || err.truncated) {
        jpeg_destroy_decompress(&ci);
        return CX_FAIL(CX_EFORMAT, "%s: truncated JPEG (the data ends inside the header)", name);
    }
    cx_status st = check_dims(name, ci.image_width, ci.image_height);
    if (st) { jpeg_destroy_decompress(&ci); return st; }
    int orient = 1;
    for (jpeg_saved_marker_ptr m = ci.marker_list; m; m = m->next)
        if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 && !memcmp(m->data, "Exif\0\0", 6)) {
            orient = exif_orientation(m->data, m->data_length);
            break;
        }
    if (fw) *fw = orient >= 5 ? (int)ci.image_height : (int)ci.image_width;
    if (fh) *fh = orient >= 5 ? (int)ci.image_width : (int)ci.image_height;
    int cmyk = ci.jpeg_color_space == JCS_CMYK || ci.jpeg_color_space == JCS_YCCK;
    int adobe_inverted = cmyk && ci.saw_Adobe_marker;
    if (cmyk) ci.out_color_space = JCS_CMYK;
    else if (ci.num_components == 1) ci.out_color_space = JCS_GRAYSCALE;
    else ci.out_color_space = JCS_RGB;
    if (reduce > 1) {
        ci.scale_num = 1;
        ci.scale_denom = (unsigned)reduce;
        ci.dct_method = JDCT_IFAST;
        ci.do_fancy_upsampling = FALSE;
    }
    jpeg_start_decompress(&ci);
    int W = (int)ci.output_width, H = (int)ci.output_height, sc = ci.output_components;
    size_t stride = (size_t)W * (size_t)sc;
    raw = cx_malloc(stride * (size_t)H + 1);
    while (ci.output_scanline < ci.output_height) {
        JSAMPROW row = raw + stride * ci.output_scanline;
        if (jpeg_read_scanlines(&ci, &row, 1) != 1) break;
        if (err.truncated) break;
    }
    int truncated = err.truncated || ci.output_scanline < ci.output_height;
    if (!truncated) jpeg_finish_decompress(&ci);
    jpeg_destroy_decompress(&ci);
    uint8_t *px = raw;
    if (truncated) {
        free(px);
        return CX_FAIL(CX_EFORMAT, "%s: truncated JPEG (the data ends before the image does; re-download or delete the file)", name);
    }
    if (!out) { free(px); return CX_OK; }
    if (cmyk) {
        // CMYK -> RGB as Pillow: R = (255 - C) * (255 - K) / 255, with Adobe's
        // Photoshop convention of stored values being inverted (255 - ink).
        size_t np = (size_t)W * H;
        for (size_t i = 0; i < np; i++) {
            uint8_t *s = px + i * 4;
            int c = s[0], m = s[1], y = s[2], k = s[3];
            if (!adobe_inverted) { c = 255 - c; m = 255 - m; y = 255 - y; k = 255 - k; }
            px[i * 3 + 0] = (uint8_t)((c * k + 127) / 255);
            px[i * 3 + 1] = (uint8_t)((m * k + 127) / 255);
            px[i * 3 + 2] = (uint8_t)((y * k + 127) / 255);
        }
        sc = 3;
    }
    finish_image(out, px, W, H, sc, channels);
    apply_orientation(out, orient);
    return CX_OK;
}

int image_jpeg_plain(const uint8_t *buf, size_t n, int *w, int *h) {
    *w = *h = 0;
    if (image_sniff(buf, n) != IMAGE_FMT_JPEG || n < 4 || buf[n - 2] != 0xFF || buf[n - 1] != 0xD9) return 0;
    struct jpeg_decompress_struct ci;
    JpegErr err;
    jpeg_setup(&ci, &err);
    if (setjmp(err.jb)) {
        jpeg_destroy_decompress(&ci);
        return 0;
    }
    jpeg_mem_src(&ci, buf, (unsigned long)n);
    jpeg_save_markers(&ci, JPEG_APP0 + 1, 0xFFFF);
    int ok = jpeg_read_header(&ci, TRUE) == JPEG_HEADER_OK && !err.truncated;
    ok = ok && !ci.progressive_mode && !ci.arith_code && ci.data_precision == 8 && ci.num_components == 3 &&
         ci.jpeg_color_space == JCS_YCbCr && ci.image_width > 0 && ci.image_height > 0 && ci.image_width <= 65535 &&
         ci.image_height <= 65535 && (int64_t)ci.image_width * ci.image_height <= g_max_pixels;
    for (jpeg_saved_marker_ptr m = ci.marker_list; ok && m; m = m->next)
        if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 && !memcmp(m->data, "Exif\0\0", 6)) {
            ok = exif_orientation(m->data, m->data_length) == 1;
            break;
        }
    if (ok) *w = (int)ci.image_width, *h = (int)ci.image_height;
    jpeg_destroy_decompress(&ci);
    return ok;
}

// ---- PNG ------------------------------------------------------------------------
static cx_status spng_fail(spng_ctx *ctx, const char *name, int e) {
    spng_ctx_free(ctx);
    if (e == SPNG_EOF || e == SPNG_IO_EOF)
        return CX_FAIL(CX_EFORMAT, "%s: truncated PNG (the data ends before the image does; re-download or delete the file)", name);
    return CX_FAIL(CX_EFORMAT, "%s: corrupt PNG (%s)", name, spng_strerror(e));
}

static cx_status decode_png(const uint8_t *buf, size_t n, const char *name, int channels, Image8 *out, int *fw, int *fh) {
    spng_ctx *ctx = spng_ctx_new(0);
    if (!ctx) return CX_FAIL(CX_ENOMEM, "%s: cannot create a PNG decoder", name);
    spng_set_image_limits(ctx, 65535, 65535);
    spng_set_chunk_limits(ctx, 1u << 26, 1u << 26);
    int e = spng_set_png_buffer(ctx, buf, n);
    struct spng_ihdr ih;
    if (!e) e = spng_get_ihdr(ctx, &ih);
    if (e) return spng_fail(ctx, name, e);
    cx_status st = check_dims(name, ih.width, ih.height);
    if (st) { spng_ctx_free(ctx); return st; }
    // Pick the decoded format that keeps the information we need with the least work.
    int fmt, sc;
    int gray = ih.color_type == SPNG_COLOR_TYPE_GRAYSCALE;
    if (gray && ih.bit_depth <= 8) { fmt = SPNG_FMT_G8; sc = 1; }
    else if (gray) { fmt = SPNG_FMT_GA16; sc = 2; }   // libspng has no G16->G8; GA16 keeps the precision
    else { fmt = SPNG_FMT_RGBA8; sc = 4; }
    size_t len;
    e = spng_decoded_image_size(ctx, fmt, &len);
    if (e) return spng_fail(ctx, name, e);
    uint8_t *raw = cx_malloc(len + 1);
    e = spng_decode_image(ctx, raw, len, fmt, 0);
    if (e) { free(raw); return spng_fail(ctx, name, e); }
    int orient = 1;
    struct spng_exif ex;
    if (!spng_get_exif(ctx, &ex) && ex.data) orient = exif_orientation((const uint8_t *)ex.data, ex.length);
    spng_ctx_free(ctx);
    int W = (int)ih.width, H = (int)ih.height;
    if (fw) *fw = orient >= 5 ? H : W;
    if (fh) *fh = orient >= 5 ? W : H;
    if (!out) { free(raw); return CX_OK; }
    size_t np = (size_t)W * H;
    if (fmt == SPNG_FMT_GA16) {
        // Host-endian 16-bit gray+alpha: keep the high byte of the gray sample.
        const uint16_t *s16 = (const uint16_t *)raw;
        for (size_t i = 0; i < np; i++) { raw[2 * i] = (uint8_t)(s16[2 * i] >> 8); raw[2 * i + 1] = 255; }
    }
    finish_image(out, raw, W, H, sc, channels);
    apply_orientation(out, orient);
    return CX_OK;
}

// ---- BMP (uncompressed 1/4/8/24/32-bit, BI_RGB or 32-bit BI_BITFIELDS) -----------
static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static cx_status decode_bmp(const uint8_t *b, size_t n, const char *name, int channels, Image8 *out, int *fw, int *fh) {
    if (n < 54) return CX_FAIL(CX_EFORMAT, "%s: truncated BMP header (%zu bytes)", name, n);
    uint32_t off = le32(b + 10), dib = le32(b + 14);
    if (dib < 40 || dib > n - 14)
        return CX_FAIL(CX_EFORMAT, "%s: unsupported BMP header (size %u; only BITMAPINFOHEADER and later)", name, dib);
    int32_t w = (int32_t)le32(b + 18), hs = (int32_t)le32(b + 22);
    uint16_t bpp = le16(b + 28);
    uint32_t comp = le32(b + 30), ncol = le32(b + 46);
    if (hs == INT32_MIN) return CX_FAIL(CX_EFORMAT, "%s: corrupt BMP height", name);
    int bottom_up = hs > 0;
    int64_t h = hs > 0 ? hs : -(int64_t)hs;
    CX_TRY(check_dims(name, w, h));
    if (!(comp == 0 || (comp == 3 && bpp == 32)) || !(bpp == 1 || bpp == 4 || bpp == 8 || bpp == 24 || bpp == 32))
        return CX_FAIL(CX_EFORMAT, "%s: unsupported BMP variant (%u bits per pixel, compression %u); convert it to PNG", name, bpp, comp);
    const uint8_t *pal = b + 14 + dib;
    if (bpp <= 8) {
        uint32_t maxcol = 1u << bpp;
        if (ncol == 0 || ncol > maxcol) ncol = maxcol;
        if ((size_t)(pal - b) + (size_t)ncol * 4 > n) return CX_FAIL(CX_EFORMAT, "%s: truncated BMP palette", name);
    }
    size_t stride = (((size_t)w * bpp + 31) / 32) * 4;
    if (off > n || (n - off) / stride < (size_t)h)
        return CX_FAIL(CX_EFORMAT, "%s: truncated BMP (pixel data is shorter than %dx%lld)", name, w, (long long)h);
    if (fw) *fw = w;
    if (fh) *fh = (int)h;
    if (!out) return CX_OK;
    uint8_t *rgb = cx_malloc((size_t)w * h * 3 + 1);   // (h, w, 3)
    for (int64_t y = 0; y < h; y++) {
        const uint8_t *row = b + off + stride * (size_t)(bottom_up ? h - 1 - y : y);
        uint8_t *d = rgb + (size_t)y * w * 3;
        for (int x = 0; x < w; x++, d += 3) {
            if (bpp >= 24) {
                const uint8_t *s = row + (size_t)x * (bpp / 8);
                d[0] = s[2]; d[1] = s[1]; d[2] = s[0];
            } else {
                uint32_t bit = (uint32_t)x * bpp;
                uint32_t idx = (row[bit / 8] >> (8 - bpp - bit % 8)) & ((1u << bpp) - 1);
                if (idx >= ncol) idx = 0;
                d[0] = pal[idx * 4 + 2]; d[1] = pal[idx * 4 + 1]; d[2] = pal[idx * 4 + 0];
            }
        }
    }
    finish_image(out, rgb, w, (int)h, 3, channels);
    return CX_OK;
}

// ---- public decode / probe -------------------------------------------------------
static cx_status decode_any(const uint8_t *buf, size_t n, const char *name, int channels, int reduce,
                            Image8 *out, int *fw, int *fh) {
    if (out) memset(out, 0, sizeof *out);
    if (channels != 1 && channels != 3)
        return CX_FAIL(CX_EARG, "%s: asked for %d channels; images load as 1 (gray) or 3 (RGB)", name, channels);
    if (n == 0) return CX_FAIL(CX_EFORMAT, "%s: the file is empty (0 bytes); re-copy or delete it", name);
    switch (image_sniff(buf, n)) {
    case IMAGE_FMT_JPEG: return decode_jpeg(buf, n, name, channels, reduce, out, fw, fh);
    case IMAGE_FMT_PNG: return decode_png(buf, n, name, channels, out, fw, fh);
    case IMAGE_FMT_BMP: return decode_bmp(buf, n, name, channels, out, fw, fh);
    default:
        return CX_FAIL(CX_EFORMAT, "%s: not an image (the first bytes are neither JPEG, PNG nor BMP; %zu bytes)", name, n);
    }
}

cx_status image_decode(const uint8_t *buf, size_t n, const char *name, int channels, Image8 *out) {
    return decode_any(buf, n, name, channels, 1, out, NULL, NULL);
}

cx_status image_load(const char *path, int channels, Image8 *out) {
    memset(out, 0, sizeof *out);
    unsigned char *buf;
    size_t n;
    if (io_read_file(path, &buf, &n)) return CX_FAIL(CX_EIO, "%s", cx_errmsg());
    cx_status st = decode_any(buf, n, path, channels, 1, out, NULL, NULL);
    free(buf);
    return st;
}

cx_status image_probe_memory(const uint8_t *buf, size_t n, const char *name, int *w, int *h) {
    int fw = 0, fh = 0;
    cx_status st = decode_any(buf, n, name, 1, 8, NULL, &fw, &fh);
    if (st) return st;
    // The reduced JPEG decode and the header-only paths still decode every byte;
    // out == NULL only skips the conversion.
    if (w) *w = fw;
    if (h) *h = fh;
    return CX_OK;
}

cx_status image_probe(const char *path, int *w, int *h) {
    unsigned char *buf;
    size_t n;
    if (io_read_file(path, &buf, &n)) return CX_FAIL(CX_EIO, "%s", cx_errmsg());
    cx_status st = image_probe_memory(buf, n, path, w, h);
    free(buf);
    return st;
}

// ---- encoders ---------------------------------------------------------------------
static cx_status check_encodable(const Image8 *im) {
    if (!im || !im->px || im->w <= 0 || im->h <= 0 || (im->c != 1 && im->c != 3))
        return CX_FAIL(CX_EARG, "cannot encode an image of %dx%dx%d (need 1 or 3 channels, non-empty)",
                       im ? im->w : 0, im ? im->h : 0, im ? im->c : 0);
    return CX_OK;
}

cx_status image_encode_png(const Image8 *im, int level, uint8_t **buf, size_t *n) {
    return image_encode_png_as(im, level, NULL, buf, n);
}

cx_status image_encode_png_as(const Image8 *im, int level, const char *software, uint8_t **buf, size_t *n) {
    *buf = NULL; *n = 0;
    CX_TRY(check_encodable(im));
    spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
    if (!ctx) return CX_FAIL(CX_ENOMEM, "cannot create a PNG encoder");
    spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
    if (level < 0 && im->c == 1) {
        // Masks by default: zlib level 3 on unfiltered rows. libspng's default (level 6,
        // each row tried with all five filters) took 31 ms for a 768² probability map
        // against 4.3 ms (files 1.5x larger; binary masks come out smaller): predict
        // writes one per photo (docs/PERF.md, "predict").
        spng_set_option(ctx, SPNG_IMG_COMPRESSION_LEVEL, 3);
        spng_set_option(ctx, SPNG_FILTER_CHOICE, SPNG_FILTER_CHOICE_NONE);
    } else if (level >= 0) {
        spng_set_option(ctx, SPNG_IMG_COMPRESSION_LEVEL, level);
    }
    struct spng_ihdr ih = { .width = (uint32_t)im->w, .height = (uint32_t)im->h, .bit_depth = 8,
                            .color_type = im->c == 1 ? SPNG_COLOR_TYPE_GRAYSCALE : SPNG_COLOR_TYPE_TRUECOLOR };
    int e = spng_set_ihdr(ctx, &ih);
    struct spng_text tx;
    if (!e && software) {   // tEXt "Software": how camoxpert recognises its own files (core/outpath.h)
        memset(&tx, 0, sizeof tx);
        snprintf(tx.keyword, sizeof tx.keyword, "Software");
        tx.type = SPNG_TEXT;
        tx.length = strlen(software);
        tx.text = (char *)software;
        e = spng_set_text(ctx, &tx, 1);
    }
    if (!e) e = spng_encode_image(ctx, im->px, (size_t)im->w * im->h * im->c, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE);
    if (e) { spng_ctx_free(ctx); return CX_FAIL(CX_ELIB, "PNG encoding failed: %s", spng_strerror(e)); }
    *buf = spng_get_png_buffer(ctx, n, &e);
    spng_ctx_free(ctx);
    if (e || !*buf) return CX_FAIL(CX_ELIB, "PNG encoding failed: %s", spng_strerror(e));
    return CX_OK;
}

static void jpeg_enc_error(j_common_ptr ci) {
    JpegErr *e = (JpegErr *)ci->err;
    e->pub.format_message(ci, e->msg);
    longjmp(e->jb, 1);
}

cx_status image_encode_jpeg(const Image8 *im, int quality, uint8_t **buf, size_t *n) {
    return image_encode_jpeg_as(im, quality, NULL, buf, n);
}

cx_status image_encode_jpeg_as(const Image8 *im, int quality, const char *software, uint8_t **buf, size_t *n) {
    *buf = NULL; *n = 0;
    CX_TRY(check_encodable(im));
    struct jpeg_compress_struct ci;
    JpegErr err;
    memset(&err, 0, sizeof err);
    unsigned char *mem = NULL;
    unsigned long len = 0;
    ci.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = jpeg_enc_error;
    if (setjmp(err.jb)) {
        jpeg_destroy_compress(&ci);
        free(mem);
        return CX_FAIL(CX_ELIB, "JPEG encoding failed: %s", err.msg);
    }
    jpeg_create_compress(&ci);
    jpeg_mem_dest(&ci, &mem, &len);
    ci.image_width = (JDIMENSION)im->w;
    ci.image_height = (JDIMENSION)im->h;
    ci.input_components = im->c;
    ci.in_color_space = im->c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, quality < 1 ? 1 : quality > 100 ? 100 : quality, TRUE);
    jpeg_start_compress(&ci, TRUE);
    if (software) jpeg_write_marker(&ci, JPEG_COM, (const JOCTET *)software, (unsigned)strlen(software));
    size_t stride = (size_t)im->w * im->c;
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = im->px + stride * ci.next_scanline;
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    *buf = mem;
    *n = len;
    return CX_OK;
}

// pending: leave the file closed under its temporary name in *pending, unflushed
// (io_atomic_commit_group); NULL: commit it now.
static cx_status write_atomic_to(const char *path, const uint8_t *buf, size_t n, AtomicFile *pending) {
    AtomicFile local, *af = pending ? pending : &local;
    CX_TRY(io_atomic_begin(af, path));
    if (fwrite(buf, 1, n, af->fp) != n) {
        int err = errno;
        io_atomic_abort(af);
        return CX_FAIL(CX_EIO, "writing %s failed: %s", path, io_errstr(err));
    }
    return pending ? io_atomic_close_unsynced(af) : io_atomic_commit(af);
}

static cx_status write_atomic(const char *path, const uint8_t *buf, size_t n) { return write_atomic_to(path, buf, n, NULL); }

cx_status image_save_png_pending(const char *path, const Image8 *im, const char *software, AtomicFile *af) {
    uint8_t *buf;
    size_t n;
    cx_status st = image_encode_png_as(im, -1, software, &buf, &n);
    if (st) { cx_error_context("writing %s: ", path); return st; }
    st = write_atomic_to(path, buf, n, af);
    free(buf);
    return st;
}

cx_status image_save_jpeg_pending(const char *path, const Image8 *im, int quality, const char *software, AtomicFile *af) {
    uint8_t *buf;
    size_t n;
    cx_status st = image_encode_jpeg_as(im, quality, software, &buf, &n);
    if (st) { cx_error_context("writing %s: ", path); return st; }
    st = write_atomic_to(path, buf, n, af);
    free(buf);
    return st;
}

cx_status image_save_png(const char *path, const Image8 *im) { return image_save_png_as(path, im, NULL); }

cx_status image_save_png_as(const char *path, const Image8 *im, const char *software) {
    uint8_t *buf;
    size_t n;
    cx_status st = image_encode_png_as(im, -1, software, &buf, &n);
    if (st) { cx_error_context("writing %s: ", path); return st; }
    st = write_atomic(path, buf, n);
    free(buf);
    return st;
}

cx_status image_save_jpeg(const char *path, const Image8 *im, int quality) { return image_save_jpeg_as(path, im, quality, NULL); }

cx_status image_save_jpeg_as(const char *path, const Image8 *im, int quality, const char *software) {
    uint8_t *buf;
    size_t n;
    cx_status st = image_encode_jpeg_as(im, quality, software, &buf, &n);
    if (st) { cx_error_context("writing %s: ", path); return st; }
    st = write_atomic(path, buf, n);
    free(buf);
    return st;
}

cx_status image_overlay_mask(Image8 *dst, const Image8 *rgb, const Image8 *mask, uint8_t r, uint8_t g, uint8_t b, float alpha) {
    memset(dst, 0, sizeof *dst);
    if (mask->w != rgb->w || mask->h != rgb->h || mask->c != 1 || (rgb->c != 1 && rgb->c != 3))
        return CX_FAIL(CX_ESHAPE, "overlay: image %dx%dx%d and mask %dx%dx%d do not match (the mask needs 1 channel)",
                       rgb->w, rgb->h, rgb->c, mask->w, mask->h, mask->c);
    image_alloc(dst, rgb->w, rgb->h, 3);
    const float col[3] = { r, g, b };
    size_t n = (size_t)rgb->w * rgb->h;
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < 3; c++) {
            float v = rgb->px[i * rgb->c + (rgb->c == 3 ? c : 0)];
            if (mask->px[i] > 128) v += alpha * (col[c] - v);
            dst->px[i * 3 + c] = (uint8_t)(v + 0.5f);
        }
    return CX_OK;
}

// ---- resizes -----------------------------------------------------------------------
// Half-pixel bilinear taps along one axis: for output i, source index i0[i] and
// i0[i]+1 (clamped) with weight fr[i] on the second.
static void bilinear_taps(int out, int in, int *i0, int *i1, float *fr) {
    for (int i = 0; i < out; i++) px_bilinear_tap(i, out, in, &i0[i], &i1[i], &fr[i]);
}

// Both axes' taps of a resize from w x h to W x H, in two allocations (bilinear_grid_free).
typedef struct {
    int *x0, *x1, *y0, *y1;   // (W), (W), (H), (H): source columns and rows
    float *fx, *fy;           // (W), (H): weights of x1, y1
} BilinearGrid;

static BilinearGrid bilinear_grid(int W, int H, int w, int h) {
    BilinearGrid g;
    g.x0 = cx_malloc(sizeof(int) * (size_t)(2 * W + 2 * H));
    g.x1 = g.x0 + W, g.y0 = g.x1 + W, g.y1 = g.y0 + H;
    g.fx = cx_malloc(sizeof(float) * (size_t)(W + H)), g.fy = g.fx + W;
    bilinear_taps(W, w, g.x0, g.x1, g.fx);
    bilinear_taps(H, h, g.y0, g.y1, g.fy);
    return g;
}

static void bilinear_grid_free(BilinearGrid *g) {
    free(g->x0);
    free(g->fx);
}

void image_resize_bilinear(const Image8 *src, int W, int H, Image8 *dst) {
    int C = src->c, w = src->w, h = src->h;
    image_alloc(dst, W, H, C);
    BilinearGrid g = bilinear_grid(W, H, w, h);
    for (int y = 0; y < H; y++) {
        const uint8_t *r0 = src->px + (size_t)g.y0[y] * w * C, *r1 = src->px + (size_t)g.y1[y] * w * C;
        float b = g.fy[y], a = 1 - b;
        uint8_t *d = dst->px + (size_t)y * W * C;
        for (int x = 0; x < W; x++) {
            float q = g.fx[x], p = 1 - q;
            const uint8_t *p00 = r0 + (size_t)g.x0[x] * C, *p01 = r0 + (size_t)g.x1[x] * C;
            const uint8_t *p10 = r1 + (size_t)g.x0[x] * C, *p11 = r1 + (size_t)g.x1[x] * C;
            for (int c = 0; c < C; c++) {
                float v = px_blend(a, b, p, q, p00[c], p01[c], p10[c], p11[c]);
                d[(size_t)x * C + c] = px_u8(v);
            }
        }
    }
    bilinear_grid_free(&g);
}

void image_resize_bilinear_f32(float *dst, int H, int W, const float *src, int h, int w, int C) {
    BilinearGrid g = bilinear_grid(W, H, w, h);
    for (int y = 0; y < H; y++) {
        const float *r0 = src + (size_t)g.y0[y] * w * C, *r1 = src + (size_t)g.y1[y] * w * C;
        float b = g.fy[y], a = 1 - b;
        float *d = dst + (size_t)y * W * C;
        for (int x = 0; x < W; x++) {
            float q = g.fx[x], p = 1 - q;
            const float *p00 = r0 + (size_t)g.x0[x] * C, *p01 = r0 + (size_t)g.x1[x] * C;
            const float *p10 = r1 + (size_t)g.x0[x] * C, *p11 = r1 + (size_t)g.x1[x] * C;
            for (int c = 0; c < C; c++)
                d[(size_t)x * C + c] = px_blend(a, b, p, q, p00[c], p01[c], p10[c], p11[c]);
        }
    }
    bilinear_grid_free(&g);
}

void image_mask_resize_nearest(uint8_t *dst01, int H, int W, const Image8 *m) {
    int w = m->w, h = m->h, C = m->c;
    int *xs = cx_malloc(sizeof(int) * (size_t)W);
    for (int x = 0; x < W; x++) {
        int s = (int)floor((x + 0.5) * w / W);
        xs[x] = s < w ? s : w - 1;
    }
    for (int y = 0; y < H; y++) {
        int sy = (int)floor((y + 0.5) * h / H);
        if (sy > h - 1) sy = h - 1;
        const uint8_t *r = m->px + (size_t)sy * w * C;
        for (int x = 0; x < W; x++) dst01[(size_t)y * W + x] = r[(size_t)xs[x] * C] > 128;
    }
    free(xs);
}

