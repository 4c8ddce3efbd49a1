// make_seeds.c — writes a small seed corpus for fuzz_image into a directory:
// one tiny file per decoder path (gray/RGB/CMYK/progressive JPEG with EXIF,
// PNG at 1/2/8/16 bits, gray+alpha, RGBA, palette with tRNS, 8- and 24-bit BMP);
// and, given a second directory, safetensors seeds for fuzz_safetensors (one
// tensor of each dtype the reader converts, metadata, a scalar and an empty tensor).
//   make_seeds IMAGE_DIR [SAFETENSORS_DIR]
// Generated rather than committed, so the repository holds no binaries.
#include "data/image.h"
#include <stdio.h>
#include <string.h>
#include <jpeglib.h>
#include <spng.h>

static const char *dir;

static void put(const char *name, const void *p, size_t n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(1); }
    fwrite(p, 1, n, f);
    fclose(f);
}

static void jpeg(const char *name, int w, int h, int comps, J_COLOR_SPACE in, J_COLOR_SPACE cs, int progressive, int exif) {
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr je;
    ci.err = jpeg_std_error(&je);
    jpeg_create_compress(&ci);
    unsigned char *mem = NULL;
    unsigned long len = 0;
    jpeg_mem_dest(&ci, &mem, &len);
    ci.image_width = (JDIMENSION)w; ci.image_height = (JDIMENSION)h; ci.input_components = comps; ci.in_color_space = in;
    jpeg_set_defaults(&ci);
    jpeg_set_colorspace(&ci, cs);
    jpeg_set_quality(&ci, 75, TRUE);
    if (progressive) jpeg_simple_progression(&ci);
    jpeg_start_compress(&ci, TRUE);
    if (exif) {
        static const uint8_t e[] = { 'E','x','i','f',0,0, 'I','I',42,0, 8,0,0,0, 1,0, 0x12,0x01, 3,0, 1,0,0,0, 6,0,0,0, 0,0,0,0 };
        jpeg_write_marker(&ci, JPEG_APP0 + 1, e, sizeof e);
    }
    uint8_t row[64 * 4];
    for (int y = 0; y < h; y++) {
        for (int i = 0; i < w * comps; i++) row[i] = (uint8_t)(i * 9 + y * 31);
        JSAMPROW r = row;
        jpeg_write_scanlines(&ci, &r, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    put(name, mem, len);
    free(mem);
}

static void png(const char *name, int w, int h, int ct, int depth, int with_plte) {
    spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
    spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
    struct spng_ihdr ih = { .width = (uint32_t)w, .height = (uint32_t)h, .bit_depth = (uint8_t)depth, .color_type = (uint8_t)ct };
    spng_set_ihdr(ctx, &ih);
    if (with_plte) {
        struct spng_plte pl = { .n_entries = 4 };
        for (int i = 0; i < 4; i++) { pl.entries[i].red = (uint8_t)(i * 60); pl.entries[i].green = 9; pl.entries[i].blue = (uint8_t)(200 - i); }
        spng_set_plte(ctx, &pl);
        struct spng_trns tr = { .n_type3_entries = 1, .type3_alpha = { 0 } };
        spng_set_trns(ctx, &tr);
    }
    size_t len;
    spng_decoded_image_size(ctx, SPNG_FMT_PNG, &len);
    int ch = ct == 0 ? 1 : ct == 2 ? 3 : ct == 3 ? 1 : ct == 4 ? 2 : 4;
    size_t stride = ((size_t)w * ch * depth + 7) / 8;
    len = stride * h;
    uint8_t *px = calloc(len, 1);
    for (size_t i = 0; i < len; i++) px[i] = with_plte ? (uint8_t)(i % 4 * (depth == 8)) : (uint8_t)(i * 37);
    spng_encode_image(ctx, px, len, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE);
    int e;
    size_t n;
    void *buf = spng_get_png_buffer(ctx, &n, &e);
    if (buf) { put(name, buf, n); free(buf); }
    free(px);
    spng_ctx_free(ctx);
}

int main(int argc, char **argv) {
    if (argc != 2 && argc != 3) { fprintf(stderr, "usage: make_seeds IMAGE_DIR [SAFETENSORS_DIR]\n"); return 2; }
    dir = argv[1];
    io_make_dirs(dir);
    jpeg("gray.jpg", 8, 8, 1, JCS_GRAYSCALE, JCS_GRAYSCALE, 0, 0);
    jpeg("rgb_exif.jpg", 16, 8, 3, JCS_RGB, JCS_YCbCr, 0, 1);
    jpeg("progressive.jpg", 16, 16, 3, JCS_RGB, JCS_YCbCr, 1, 0);
    jpeg("cmyk.jpg", 8, 8, 4, JCS_CMYK, JCS_CMYK, 0, 0);
    jpeg("ycck.jpg", 8, 8, 4, JCS_CMYK, JCS_YCCK, 0, 0);
    png("gray1.png", 9, 3, 0, 1, 0);
    png("gray2.png", 5, 3, 0, 2, 0);
    png("gray8.png", 6, 4, 0, 8, 0);
    png("gray16.png", 4, 4, 0, 16, 0);
    png("ga8.png", 4, 3, 4, 8, 0);
    png("rgb16.png", 3, 3, 2, 16, 0);
    png("rgba8.png", 5, 2, 6, 8, 0);
    png("pal8.png", 6, 3, 3, 8, 1);
    png("pal2.png", 6, 3, 3, 2, 1);
    // BMP: 4x3 24-bit, and 4x2 8-bit palette top-down.
    uint8_t b24[54 + 48] = { 'B', 'M' };
    b24[10] = 54; b24[14] = 40; b24[18] = 4; b24[22] = 3; b24[26] = 1; b24[28] = 24;
    for (int i = 0; i < 48; i++) b24[54 + i] = (uint8_t)(i * 5);
    put("rgb24.bmp", b24, sizeof b24);
    uint8_t b8[54 + 16 + 8] = { 'B', 'M' };
    b8[10] = 54 + 16; b8[14] = 40; b8[18] = 4; b8[22] = 0xFE; b8[23] = 0xFF; b8[24] = 0xFF; b8[25] = 0xFF;
    b8[26] = 1; b8[28] = 8; b8[46] = 4;
    for (int i = 0; i < 16; i++) b8[54 + i] = (uint8_t)(i * 16);
    for (int i = 0; i < 8; i++) b8[70 + i] = (uint8_t)(i % 4);
    put("pal8.bmp", b8, sizeof b8);
    printf("wrote seeds to %s\n", dir);
    if (argc == 3) {
        io_make_dirs(argv[2]);
        StWriter w;
        st_writer_init(&w);
        st_writer_meta(&w, "format", "pt");
        st_writer_meta(&w, "camoxpert_config", "{\"backbone\":\"edgenext_xx_small\",\"img_size\":64}");
        static float f32[6] = { 1, -2, 3.5f, 0, 1e-3f, 7 };
        static double f64[3] = { 0.25, -1, 2 };
        static int64_t i64[2] = { 3, -4 }, sc[1] = { 17 };
        static int32_t i32[2] = { 5, -6 };
        static uint8_t u8[4] = { 0, 1, 128, 255 };
        static uint16_t bf16[2] = { 0x3F80, 0xC000 }, f16[2] = { 0x3C00, 0xFC00 };
        Tensor t[8] = {
            tensor_view(f32, DT_F32, 2, (int64_t[]){ 2, 3 }), tensor_view(f64, DT_F64, 1, (int64_t[]){ 3 }),
            tensor_view(i64, DT_I64, 1, (int64_t[]){ 2 }), tensor_view(i32, DT_I32, 1, (int64_t[]){ 2 }),
            tensor_view(u8, DT_U8, 2, (int64_t[]){ 2, 2 }), tensor_view(bf16, DT_BF16, 1, (int64_t[]){ 2 }),
            tensor_view(f16, DT_F16, 1, (int64_t[]){ 2 }), tensor_view(sc, DT_I64, 0, NULL),
        };
        const char *names[8] = { "a.weight", "b", "c", "d", "e", "f", "g", "bn.num_batches_tracked" };
        for (int i = 0; i < 8; i++) st_writer_add(&w, names[i], &t[i]);
        char p[1024];
        snprintf(p, sizeof p, "%s/all_dtypes.safetensors", argv[2]);
        if (st_writer_save(&w, p)) { fprintf(stderr, "%s\n", cx_errmsg()); return 1; }
        st_writer_free(&w);
        st_writer_init(&w);
        Tensor empty = tensor_view(f32, DT_F32, 2, (int64_t[]){ 0, 3 });
        st_writer_add(&w, "empty", &empty);
        snprintf(p, sizeof p, "%s/empty.safetensors", argv[2]);
        if (st_writer_save(&w, p)) { fprintf(stderr, "%s\n", cx_errmsg()); return 1; }
        st_writer_free(&w);
        printf("wrote seeds to %s\n", argv[2]);
    }
    return 0;
}
