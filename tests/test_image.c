// test_image.c — decoding every pixel format the datasets use (files the tests
// write with libspng / libjpeg), EXIF orientation, Pillow's gray formula, bad files
// (empty, truncated, not an image), the shared CAMO photos, and the resizes.
#include "test.h"
#include "data/image.h"
#include <string.h>
#include <stdio.h>
#include <jpeglib.h>
#include <spng.h>

static const char *tpath(const char *dir, const char *name) {
    static char bufs[4][1024];
    static int k;
    char *b = bufs[k++ & 3];
    snprintf(b, 1024, "%s/%s", dir, name);
    return b;
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (n) fwrite(p, 1, n, f);
    fclose(f);
}

// Writes a PNG of any colour type / depth; data is in PNG sample order, 16-bit host-endian.
static int write_png_raw(const char *path, int w, int h, int color_type, int depth, const void *data, size_t len,
                         const struct spng_plte *plte, const struct spng_trns *trns, const uint8_t *exif, size_t exif_n) {
    spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
    spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
    struct spng_ihdr ih = { .width = (uint32_t)w, .height = (uint32_t)h, .bit_depth = (uint8_t)depth, .color_type = (uint8_t)color_type };
    int e = spng_set_ihdr(ctx, &ih);
    if (!e && plte) e = spng_set_plte(ctx, (struct spng_plte *)plte);
    if (!e && trns) e = spng_set_trns(ctx, (struct spng_trns *)trns);
    if (!e && exif) { struct spng_exif ex = { exif_n, (char *)exif }; e = spng_set_exif(ctx, &ex); }
    if (!e) e = spng_encode_image(ctx, data, len, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE);
    size_t n = 0;
    void *buf = e ? NULL : spng_get_png_buffer(ctx, &n, &e);
    if (buf) { write_bytes(path, buf, n); free(buf); }
    spng_ctx_free(ctx);
    return e;
}

// A JPEG with optional APP1 EXIF; in_cs JCS_GRAYSCALE / JCS_RGB / JCS_CMYK; out_cs for YCCK;
// sequential, or libjpeg's progressive script.
static void write_jpeg_coded(const char *path, int w, int h, int comps, J_COLOR_SPACE in_cs, J_COLOR_SPACE jpeg_cs,
                             const uint8_t *px, const uint8_t *app1, size_t app1_n, int progressive) {
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr jerr;
    ci.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&ci);
    unsigned char *mem = NULL;
    unsigned long len = 0;
    jpeg_mem_dest(&ci, &mem, &len);
    ci.image_width = (JDIMENSION)w; ci.image_height = (JDIMENSION)h;
    ci.input_components = comps; ci.in_color_space = in_cs;
    jpeg_set_defaults(&ci);
    jpeg_set_colorspace(&ci, jpeg_cs);
    jpeg_set_quality(&ci, 100, TRUE);
    for (int i = 0; i < ci.num_components; i++) ci.comp_info[i].h_samp_factor = ci.comp_info[i].v_samp_factor = 1;
    if (progressive) jpeg_simple_progression(&ci);
    jpeg_start_compress(&ci, TRUE);
    if (app1) jpeg_write_marker(&ci, JPEG_APP0 + 1, app1, (unsigned)app1_n);
    for (int y = 0; y < h; y++) {
        JSAMPROW row = (JSAMPROW)(px + (size_t)y * w * comps);
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    write_bytes(path, mem, len);
    free(mem);
}

static void write_jpeg_raw(const char *path, int w, int h, int comps, J_COLOR_SPACE in_cs, J_COLOR_SPACE jpeg_cs,
                           const uint8_t *px, const uint8_t *app1, size_t app1_n) {
    write_jpeg_coded(path, w, h, comps, in_cs, jpeg_cs, px, app1, app1_n, 0);
}

// A big-endian EXIF block with one IFD0 entry: orientation o.
static size_t make_exif(uint8_t *b, int o) {
    static const uint8_t t[] = { 'E','x','i','f',0,0, 'M','M',0,42, 0,0,0,8, 0,1, 0x01,0x12, 0,3, 0,0,0,1, 0,0,0,0, 0,0,0,0 };
    memcpy(b, t, sizeof t);
    b[6 + 8 + 2 + 8 + 1] = (uint8_t)o;
    return sizeof t;
}

TEST(image_png_every_pixel_format) {
    const char *d = test_tmpdir();
    enum { W = 5, H = 3 };
    // Gray at 1, 2, 4, 8 bits: every value maps to its scaled 8-bit equivalent.
    for (int depth = 1; depth <= 8; depth *= 2) {
        uint8_t rows[H][W];
        int maxv = (1 << depth) - 1;
        uint8_t packed[H * 8] = { 0 };
        int stride = (W * depth + 7) / 8;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                int v = (x + y * W) % (maxv + 1);
                rows[y][x] = (uint8_t)v;
                int bit = x * depth;
                packed[y * stride + bit / 8] |= (uint8_t)(v << (8 - depth - bit % 8));
            }
        const char *p = tpath(d, "g.png");
        REQUIRE(write_png_raw(p, W, H, SPNG_COLOR_TYPE_GRAYSCALE, depth, packed, (size_t)stride * H, NULL, NULL, NULL, 0) == 0);
        Image8 im;
        REQUIRE_OK(image_load(p, 1, &im));
        CHECK(im.w == W && im.h == H && im.c == 1);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                CHECKF(im.px[y * W + x] == rows[y][x] * 255 / maxv, "depth %d (%d,%d): %d", depth, x, y, im.px[y * W + x]);
        image_free(&im);
    }
    // 16-bit gray: the high byte is kept.
    uint16_t g16[H * W];
    for (int i = 0; i < H * W; i++) g16[i] = (uint16_t)(i * 4000 + 0x12);
    const char *p = tpath(d, "g16.png");
    REQUIRE(write_png_raw(p, W, H, SPNG_COLOR_TYPE_GRAYSCALE, 16, g16, sizeof g16, NULL, NULL, NULL, 0) == 0);
    Image8 im;
    REQUIRE_OK(image_load(p, 1, &im));
    for (int i = 0; i < H * W; i++) CHECKF(im.px[i] == g16[i] >> 8, "16-bit gray %d: %d vs %d", i, im.px[i], g16[i] >> 8);
    image_free(&im);
    REQUIRE_OK(image_load(p, 3, &im));
    CHECK(im.c == 3 && im.px[3 * 7 + 1] == g16[7] >> 8);
    image_free(&im);
    // Gray + alpha (8 and 16 bit): alpha dropped.
    uint8_t ga[H * W * 2];
    for (int i = 0; i < H * W; i++) { ga[2 * i] = (uint8_t)(i * 17); ga[2 * i + 1] = (uint8_t)(255 - i); }
    p = tpath(d, "ga.png");
    REQUIRE(write_png_raw(p, W, H, SPNG_COLOR_TYPE_GRAYSCALE_ALPHA, 8, ga, sizeof ga, NULL, NULL, NULL, 0) == 0);
    REQUIRE_OK(image_load(p, 1, &im));
    for (int i = 0; i < H * W; i++) CHECK(im.px[i] == i * 17);
    image_free(&im);
    uint16_t ga16[H * W * 2];
    for (int i = 0; i < H * W; i++) { ga16[2 * i] = (uint16_t)(i * 4000 + 7); ga16[2 * i + 1] = 100; }
    p = tpath(d, "ga16.png");
    REQUIRE(write_png_raw(p, W, H, SPNG_COLOR_TYPE_GRAYSCALE_ALPHA, 16, ga16, sizeof ga16, NULL, NULL, NULL, 0) == 0);
    REQUIRE_OK(image_load(p, 1, &im));
    for (int i = 0; i < H * W; i++) CHECK(im.px[i] == ga16[2 * i] >> 8);
    image_free(&im);
    // RGB / RGBA at 8 and 16 bits, loaded as RGB and as gray (Pillow's formula).
    uint8_t rgba[H * W * 4];
    uint16_t rgba16[H * W * 4];
    for (int i = 0; i < H * W * 4; i++) { rgba[i] = (uint8_t)(i * 37 + 11); rgba16[i] = (uint16_t)(rgba[i] << 8 | 0x5A); }
    uint8_t rgb[H * W * 3];
    uint16_t rgb16[H * W * 3];
    for (int i = 0; i < H * W; i++)
        for (int c = 0; c < 3; c++) { rgb[3 * i + c] = rgba[4 * i + c]; rgb16[3 * i + c] = rgba16[4 * i + c]; }
    struct { const char *name; int ct, depth; const void *data; size_t n; } cases[] = {
        { "rgb.png", SPNG_COLOR_TYPE_TRUECOLOR, 8, rgb, sizeof rgb },
        { "rgb16.png", SPNG_COLOR_TYPE_TRUECOLOR, 16, rgb16, sizeof rgb16 },
        { "rgba.png", SPNG_COLOR_TYPE_TRUECOLOR_ALPHA, 8, rgba, sizeof rgba },
        { "rgba16.png", SPNG_COLOR_TYPE_TRUECOLOR_ALPHA, 16, rgba16, sizeof rgba16 },
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        p = tpath(d, cases[k].name);
        REQUIRE(write_png_raw(p, W, H, cases[k].ct, cases[k].depth, cases[k].data, cases[k].n, NULL, NULL, NULL, 0) == 0);
        Image8 a, g;
        REQUIRE_OK(image_load(p, 3, &a));
        REQUIRE_OK(image_load(p, 1, &g));
        for (int i = 0; i < H * W; i++) {
            for (int c = 0; c < 3; c++) CHECKF(a.px[3 * i + c] == rgb[3 * i + c], "%s px %d ch %d", cases[k].name, i, c);
            CHECK(g.px[i] == image_rgb_to_gray(rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]));
        }
        image_free(&a);
        image_free(&g);
    }
    // Palette (8-bit and 4-bit indices) with transparency: colours looked up, alpha dropped.
    struct spng_plte pl = { .n_entries = 16 };
    for (int i = 0; i < 16; i++) { pl.entries[i].red = (uint8_t)(i * 16); pl.entries[i].green = (uint8_t)(255 - i * 10); pl.entries[i].blue = (uint8_t)(i * 3); }
    struct spng_trns tr = { .n_type3_entries = 2, .type3_alpha = { 0, 128 } };
    uint8_t idx8[H * W], idx4[H * 3] = { 0 };
    for (int i = 0; i < H * W; i++) {
        idx8[i] = (uint8_t)(i % 16);
        int y = i / W, x = i % W;
        idx4[y * 3 + x / 2] |= (uint8_t)((i % 16) << (x % 2 ? 0 : 4));
    }
    for (int depth = 4; depth <= 8; depth += 4) {
        p = tpath(d, "pal.png");
        REQUIRE(write_png_raw(p, W, H, SPNG_COLOR_TYPE_INDEXED, depth, depth == 8 ? idx8 : idx4, depth == 8 ? sizeof idx8 : sizeof idx4, &pl, &tr, NULL, 0) == 0);
        REQUIRE_OK(image_load(p, 3, &im));
        for (int i = 0; i < H * W; i++) {
            int k = i % 16;
            CHECKF(im.px[3 * i] == pl.entries[k].red && im.px[3 * i + 1] == pl.entries[k].green && im.px[3 * i + 2] == pl.entries[k].blue,
                   "palette depth %d px %d", depth, i);
        }
        image_free(&im);
    }
}

TEST(image_gray_matches_pillow_convert_L) {
    // Pillow: Image.new('RGB',(1,1),c).convert('L').getpixel((0,0)).
    CHECK(image_rgb_to_gray(255, 0, 0) == 76);
    CHECK(image_rgb_to_gray(0, 255, 0) == 150);
    CHECK(image_rgb_to_gray(0, 0, 255) == 29);
    CHECK(image_rgb_to_gray(255, 255, 255) == 255);
    CHECK(image_rgb_to_gray(128, 64, 200) == 99);
    for (int v = 0; v < 256; v++) CHECK(image_rgb_to_gray((uint8_t)v, (uint8_t)v, (uint8_t)v) == v);
}

TEST(image_jpeg_gray_rgb_cmyk_ycck) {
    const char *d = test_tmpdir();
    enum { W = 16, H = 8 };
    uint8_t rgb[W * H * 3], gray[W * H], cmyk[W * H * 4];
    for (int i = 0; i < W * H; i++) {
        int left = (i % W) < W / 2;   // left half red, right half blue: big flat areas survive JPEG
        rgb[3 * i] = left ? 220 : 20; rgb[3 * i + 1] = 30; rgb[3 * i + 2] = left ? 20 : 200;
        gray[i] = left ? 40 : 210;
        // Adobe convention (inverted): stored = 255 - ink. Red = C0 M255 Y255 K0.
        cmyk[4 * i] = left ? 255 : 0;   // stored C: left no cyan, right full cyan
        cmyk[4 * i + 1] = 0;            // full magenta
        cmyk[4 * i + 2] = left ? 0 : 255;
        cmyk[4 * i + 3] = 255;          // no black
    }
    Image8 im;
    const char *p = tpath(d, "rgb.jpg");
    write_jpeg_raw(p, W, H, 3, JCS_RGB, JCS_YCbCr, rgb, NULL, 0);
    REQUIRE_OK(image_load(p, 3, &im));
    CHECK(im.w == W && im.h == H && im.c == 3);
    CHECK(abs(im.px[(4 * W + 2) * 3] - 220) <= 4 && abs(im.px[(4 * W + 13) * 3 + 2] - 200) <= 4);
    image_free(&im);
    p = tpath(d, "gray.jpg");
    write_jpeg_raw(p, W, H, 1, JCS_GRAYSCALE, JCS_GRAYSCALE, gray, NULL, 0);
    REQUIRE_OK(image_load(p, 3, &im));
    CHECK(abs(im.px[(4 * W + 2) * 3 + 1] - 40) <= 3 && abs(im.px[(4 * W + 13) * 3] - 210) <= 3);
    image_free(&im);
    // CMYK and YCCK (both with libjpeg's Adobe marker): left red, right blue-magenta.
    for (int k = 0; k < 2; k++) {
        p = tpath(d, k ? "ycck.jpg" : "cmyk.jpg");
        write_jpeg_raw(p, W, H, 4, JCS_CMYK, k ? JCS_YCCK : JCS_CMYK, cmyk, NULL, 0);
        REQUIRE_OK(image_load(p, 3, &im));
        const uint8_t *l = im.px + (4 * W + 2) * 3, *r = im.px + (4 * W + 13) * 3;
        CHECKF(l[0] > 245 && l[1] < 10 && l[2] < 10, "%s left %d %d %d", p, l[0], l[1], l[2]);
        CHECKF(r[0] < 10 && r[1] < 10 && r[2] > 245, "%s right %d %d %d", p, r[0], r[1], r[2]);
        image_free(&im);
    }
}

TEST(image_exif_orientation_applied) {
    const char *d = test_tmpdir();
    enum { W = 32, H = 16 };
    uint8_t g[W * H];
    // A bright 8x8 block in the top-left corner of the stored image.
    for (int i = 0; i < W * H; i++) g[i] = (i % W < 8 && i / W < 8) ? 250 : 10;
    uint8_t ex[64];
    struct { int o, w, h, bx, by; } cases[] = {   // where the block lands (block corner at bx, by)
        { 1, W, H, 0, 0 }, { 2, W, H, W - 8, 0 }, { 3, W, H, W - 8, H - 8 }, { 4, W, H, 0, H - 8 },
        { 5, H, W, 0, 0 }, { 6, H, W, H - 8, 0 }, { 7, H, W, H - 8, W - 8 }, { 8, H, W, 0, W - 8 },
    };
    for (size_t k = 0; k < 8; k++) {
        size_t n = make_exif(ex, cases[k].o);
        const char *p = tpath(d, "o.jpg");
        write_jpeg_raw(p, W, H, 1, JCS_GRAYSCALE, JCS_GRAYSCALE, g, ex, n);
        Image8 im;
        REQUIRE_OK(image_load(p, 1, &im));
        CHECKF(im.w == cases[k].w && im.h == cases[k].h, "orientation %d: %dx%d", cases[k].o, im.w, im.h);
        int cx = cases[k].bx + 4, cy = cases[k].by + 4;
        if (im.w == cases[k].w) CHECKF(im.px[cy * im.w + cx] > 200, "orientation %d: block not at (%d,%d)", cases[k].o, cx, cy);
        int w, h;
        REQUIRE_OK(image_probe(p, &w, &h));
        CHECK(w == cases[k].w && h == cases[k].h);
        image_free(&im);
        // The same through a PNG eXIf chunk (no "Exif\0\0" prefix there).
        p = tpath(d, "o.png");
        REQUIRE(write_png_raw(p, W, H, SPNG_COLOR_TYPE_GRAYSCALE, 8, g, sizeof g, NULL, NULL, ex + 6, n - 6) == 0);
        REQUIRE_OK(image_load(p, 1, &im));
        CHECKF(im.w == cases[k].w && im.px[cy * im.w + cx] > 200, "PNG orientation %d", cases[k].o);
        image_free(&im);
    }
}

// Which JPEGs a GPU's decoder is given as they are (infer/pipeline.h): plain 8-bit YCbCr,
// sequential, upright, whole; the rest (gray, CMYK, progressive, rotated by EXIF, cut
// short, not a JPEG) go to the CPU's decoder.
TEST(image_jpeg_plain_picks_what_a_gpu_decoder_takes_as_it_is) {
    const char *d = test_tmpdir();
    enum { W = 48, H = 24 };
    uint8_t rgb[W * H * 4];
    for (int i = 0; i < W * H * 4; i++) rgb[i] = (uint8_t)(i * 37 % 251);
    uint8_t ex[64];
    unsigned char *buf;
    size_t n;
    int w, h;
    struct { const char *what; int comps; J_COLOR_SPACE in, jpg; int orient, progressive, cut, plain; } cases[] = {
        { "RGB (YCbCr)", 3, JCS_RGB, JCS_YCbCr, 0, 0, 0, 1 },
        { "RGB, EXIF orientation 1", 3, JCS_RGB, JCS_YCbCr, 1, 0, 0, 1 },
        { "RGB, EXIF orientation 6", 3, JCS_RGB, JCS_YCbCr, 6, 0, 0, 0 },
        { "RGB stored as RGB", 3, JCS_RGB, JCS_RGB, 0, 0, 0, 0 },
        { "gray", 1, JCS_GRAYSCALE, JCS_GRAYSCALE, 0, 0, 0, 0 },
        { "CMYK", 4, JCS_CMYK, JCS_CMYK, 0, 0, 0, 0 },
        { "progressive", 3, JCS_RGB, JCS_YCbCr, 0, 1, 0, 0 },
        { "cut short", 3, JCS_RGB, JCS_YCbCr, 0, 0, 1, 0 },
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const char *p = tpath(d, "plain.jpg");
        size_t en = cases[k].orient ? make_exif(ex, cases[k].orient) : 0;
        write_jpeg_coded(p, W, H, cases[k].comps, cases[k].in, cases[k].jpg, rgb, en ? ex : NULL, en, cases[k].progressive);
        REQUIRE_OK(io_read_file(p, &buf, &n));
        if (cases[k].cut) n = n * 2 / 3;
        int plain = image_jpeg_plain(buf, n, &w, &h);
        CHECKF(plain == cases[k].plain, "%s: image_jpeg_plain says %d", cases[k].what, plain);
        if (plain) CHECKF(w == W && h == H, "%s: %dx%d", cases[k].what, w, h);
        if (!cases[k].cut) {   // whatever the answer, the CPU decodes it
            Image8 im;
            REQUIRE_OK(image_decode(buf, n, p, 3, &im));
            image_free(&im);
        }
        free(buf);
    }
    static const uint8_t png_sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
    CHECK(!image_jpeg_plain(png_sig, sizeof png_sig, &w, &h));
    CHECK(!image_jpeg_plain((const uint8_t *)"\xff\xd8\xff\xd9", 4, &w, &h));   // markers, no image
}

TEST(image_bmp_24_and_8_bit) {
    const char *d = test_tmpdir();
    // 3x2, 24-bit, bottom-up, rows padded to 12 bytes.
    uint8_t b[54 + 24] = { 'B', 'M' };
    b[10] = 54; b[14] = 40; b[18] = 3; b[22] = 2; b[26] = 1; b[28] = 24;
    uint8_t *px = b + 54;
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 3; x++) { uint8_t *q = px + y * 12 + x * 3; q[0] = (uint8_t)(x * 10); q[1] = (uint8_t)(y * 100); q[2] = 77; }
    const char *p = tpath(d, "a.bmp");
    write_bytes(p, b, sizeof b);
    Image8 im;
    REQUIRE_OK(image_load(p, 3, &im));
    CHECK(im.w == 3 && im.h == 2);
    // Row 0 of the image is the last stored row (y = 1).
    CHECK(im.px[0] == 77 && im.px[1] == 100 && im.px[2] == 0 && im.px[3 * 3 + 1] == 0 && im.px[2 * 3 + 2] == 20);
    image_free(&im);
    // Truncated pixel data.
    write_bytes(p, b, sizeof b - 5);
    CHECK(image_load(p, 3, &im) == CX_EFORMAT && strstr(cx_errmsg(), "truncated"));
}

TEST(image_bad_files_give_clear_errors) {
    const char *d = test_tmpdir();
    Image8 im;
    const char *p = tpath(d, "empty.jpg");
    write_bytes(p, "", 0);
    CHECK(image_load(p, 3, &im) == CX_EFORMAT);
    CHECKF(strstr(cx_errmsg(), "empty.jpg") && strstr(cx_errmsg(), "0 bytes"), "%s", cx_errmsg());
    CHECK(image_probe(p, NULL, NULL) == CX_EFORMAT);
    p = tpath(d, "notes.png");
    write_bytes(p, "hello, this is text\n", 20);
    CHECK(image_load(p, 1, &im) == CX_EFORMAT);
    CHECKF(strstr(cx_errmsg(), "not an image"), "%s", cx_errmsg());
    CHECK(image_load(tpath(d, "missing.png"), 1, &im) == CX_EIO);
    CHECKF(strstr(cx_errmsg(), "missing.png"), "%s", cx_errmsg());
    CHECK(image_load(d, 1, &im) == CX_EIO);   // a directory
    // Truncated JPEG and PNG, cut at several points: always an error, never a crash.
    enum { W = 64, H = 48 };
    uint8_t rgb[W * H * 3];
    for (int i = 0; i < W * H * 3; i++) rgb[i] = (uint8_t)(i * 7 ^ i >> 5);
    Image8 src = { W, H, 3, rgb };
    uint8_t *buf;
    size_t n;
    REQUIRE_OK(image_encode_jpeg(&src, 90, &buf, &n));
    for (size_t cut = 2; cut < n; cut += n / 7) {
        CHECKF(image_decode(buf, cut, "cut.jpg", 3, &im) != CX_OK, "JPEG cut at %zu/%zu decoded", cut, n);
        CHECK(strstr(cx_errmsg(), "cut.jpg") != NULL);
        CHECK(image_probe_memory(buf, cut, "cut.jpg", NULL, NULL) != CX_OK);
    }
    REQUIRE_OK(image_decode(buf, n, "whole.jpg", 3, &im));
    image_free(&im);
    free(buf);
    REQUIRE_OK(image_encode_png(&src, 6, &buf, &n));
    for (size_t cut = 9; cut < n - 12; cut += n / 7) {   // the last 12 bytes are IEND
        CHECKF(image_decode(buf, cut, "cut.png", 3, &im) != CX_OK, "PNG cut at %zu/%zu decoded", cut, n);
        CHECK(strstr(cx_errmsg(), "cut.png") != NULL);
    }
    buf[n / 2] ^= 0x55;   // a flipped byte inside IDAT: CRC mismatch
    CHECK(image_decode(buf, n, "flip.png", 3, &im) != CX_OK);
    free(buf);
}

TEST(image_png_round_trip_and_atomic_save) {
    const char *d = test_tmpdir();
    Image8 a;
    image_alloc(&a, 7, 5, 3);
    for (int i = 0; i < 7 * 5 * 3; i++) a.px[i] = (uint8_t)(i * 13);
    const char *p = tpath(d, "rt.png");
    REQUIRE_OK(image_save_png(p, &a));
    Image8 b;
    REQUIRE_OK(image_load(p, 3, &b));
    CHECK(b.w == 7 && b.h == 5 && !memcmp(a.px, b.px, 7 * 5 * 3));
    image_free(&b);
    a.c = 1;
    REQUIRE_OK(image_save_png(p, &a));
    REQUIRE_OK(image_load(p, 1, &b));
    CHECK(!memcmp(a.px, b.px, 7 * 5));
    image_free(&b);
    a.c = 2;
    CHECK(image_save_png(p, &a) == CX_EARG);
    CHECK(image_save_png(tpath(d, "no/such/dir/x.png"), &(Image8){ 7, 5, 1, a.px }) == CX_EIO);
    image_free(&a);
}

TEST(image_camo4_photos_load) {
    const char *names[] = { "camourflage_00012", "camourflage_00018", "camourflage_00061", "camourflage_00064" };
    for (int i = 0; i < 4; i++) {
        char ip[512], mp[512];
        snprintf(ip, sizeof ip, "%s/%s.jpg", test_shared_path("data/camo4/Imgs"), names[i]);
        snprintf(mp, sizeof mp, "%s/%s.png", test_shared_path("data/camo4/GT"), names[i]);
        Image8 im, m;
        REQUIRE_OK(image_load(ip, 3, &im));
        REQUIRE_OK(image_load(mp, 1, &m));
        CHECKF(im.w == m.w && im.h == m.h, "%s: image %dx%d, mask %dx%d", names[i], im.w, im.h, m.w, m.h);
        CHECK(im.w > 100 && im.h > 100 && im.c == 3);
        size_t fg = 0;
        for (size_t k = 0; k < (size_t)m.w * m.h; k++) fg += m.px[k] > 128;
        CHECKF(fg > 0 && fg < (size_t)m.w * m.h, "%s: mask has %zu foreground pixels", names[i], fg);
        int w, h;
        REQUIRE_OK(image_probe(ip, &w, &h));
        CHECK(w == im.w && h == im.h);
        image_free(&im);
        image_free(&m);
    }
}

TEST(image_resize_bilinear_and_nearest) {
    // Half-pixel bilinear: [0, 255] upsampled to 4 -> 0, 64, 191, 255 (torch / cv2).
    uint8_t row[2] = { 0, 255 };
    Image8 s = { 2, 1, 1, row }, d;
    image_resize_bilinear(&s, 4, 1, &d);
    CHECK(d.px[0] == 0 && d.px[1] == 64 && d.px[2] == 191 && d.px[3] == 255);
    image_free(&d);
    float fs[2] = { 0, 1 }, fd[4];
    image_resize_bilinear_f32(fd, 1, 4, fs, 1, 2, 1);
    CHECK_NEAR(fd[1], 0.25, 1e-6);
    CHECK_NEAR(fd[2], 0.75, 1e-6);
    // Constant image stays constant at any size; channels stay separate.
    Image8 c;
    image_alloc(&c, 37, 23, 3);
    for (int i = 0; i < 37 * 23; i++) { c.px[3 * i] = 10; c.px[3 * i + 1] = 128; c.px[3 * i + 2] = 250; }
    image_resize_bilinear(&c, 11, 50, &d);
    int ok = 1;
    for (int i = 0; i < 11 * 50; i++) ok &= d.px[3 * i] == 10 && d.px[3 * i + 1] == 128 && d.px[3 * i + 2] == 250;
    CHECK(ok && d.w == 11 && d.h == 50);
    image_free(&d);
    image_free(&c);
    // Nearest + binarise at > 128: a 4x4 mask with 128 (background) and 129 (object).
    uint8_t m[16] = { 0, 0, 255, 255, 0, 0, 255, 255, 128, 128, 129, 129, 128, 128, 129, 129 };
    Image8 mm = { 4, 4, 1, m };
    uint8_t out[4];
    image_mask_resize_nearest(out, 2, 2, &mm);
    CHECK(out[0] == 0 && out[1] == 1 && out[2] == 0 && out[3] == 1);
    uint8_t up[64];
    image_mask_resize_nearest(up, 8, 8, &mm);
    CHECK(up[0] == 0 && up[7] == 1 && up[63] == 1 && up[56] == 0 && up[5 * 8 + 5] == 1);
}

TEST(image_overlay_marks_the_mask) {
    uint8_t px[4] = { 100, 100, 100, 100 }, mk[4] = { 0, 255, 129, 128 };
    Image8 g = { 2, 2, 1, px }, m = { 2, 2, 1, mk }, o;
    REQUIRE_OK(image_overlay_mask(&o, &g, &m, 255, 0, 0, 0.5f));
    CHECK(o.c == 3 && o.px[0] == 100 && o.px[3] == 178 && o.px[4] == 50 && o.px[6] == 178 && o.px[9] == 100);
    image_free(&o);
    Image8 bad = { 1, 2, 1, mk };
    CHECK(image_overlay_mask(&o, &g, &bad, 255, 0, 0, 0.5f) == CX_ESHAPE && o.px == NULL);
}
