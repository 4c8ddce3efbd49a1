// test_cuda_photo.c — `camoxpert predict`'s GPU path (infer/pipeline.h): the network
// input made on the GPU equal to the CPU's bit for bit (float32 and bf16), the masks
// made there within one level of the CPU's, nvJPEG's decode beside libjpeg-turbo's, and
// predict itself on a GPU writing the masks its CPU path writes. Skipped without a GPU
// (and the decode test without a GPU JPEG decoder).
#include "test.h"
#include "core/io.h"
#include "data/augment.h"
#include "data/image.h"
#include "infer/infer.h"
#include "nn/camoxpert.h"
#include "nn/runtime.h"
#include "nn/weights.h"
#include "train/checkpoint.h"
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

// Photos of these sizes, random pixels; the GPU's input against infer_image_input, its
// masks against infer_mask. Even photos go up interleaved, odd ones as three planes.
TEST(cuda_photo_input_and_masks_equal_the_cpus) {
    if (!test_cuda()) { test_skip("%s", test_no_gpu()); return; }
    enum { N = 5, S = 96 };
    static const int wh[N][2] = { { 37, 53 }, { 768, 512 }, { 96, 96 }, { 1, 1 }, { 200, 900 } };
    Runtime g;
    REQUIRE_OK(runtime_init(&g, "cuda", "fp32", 0, 0));
    Rng r = rng_init(3);
    Image8 im[N];
    int64_t box[N * 4], tot = 0;
    for (int i = 0; i < N; i++) {
        image_alloc(&im[i], wh[i][0], wh[i][1], 3);
        for (int64_t k = 0; k < (int64_t)wh[i][0] * wh[i][1] * 3; k++) im[i].px[k] = (uint8_t)(rng_uniform(&r) * 256);
        box[4 * i] = tot, box[4 * i + 1] = wh[i][1], box[4 * i + 2] = wh[i][0], box[4 * i + 3] = i % 2;
        tot += (int64_t)wh[i][0] * wh[i][1] * 3;
    }
    uint8_t *host = cx_malloc((size_t)tot);
    for (int i = 0; i < N; i++) {
        const int64_t np = (int64_t)wh[i][0] * wh[i][1];
        uint8_t *d = host + box[4 * i];
        for (int64_t k = 0; k < np; k++)
            for (int c = 0; c < 3; c++) d[i % 2 ? c * np + k : 3 * k + c] = im[i].px[3 * k + c];
    }
    runtime_step_reset(&g);
    Tensor sh = tensor_view(host, DT_U8, 1, (int64_t[]){ tot }), bh = tensor_view(box, DT_I64, 2, (int64_t[]){ N, 4 });
    Tensor src = runtime_input(&g, &sh, DT_U8), bd = runtime_input(&g, &bh, DT_I64);
    float *want = cx_malloc(sizeof(float) * N * S * S * 3);
    for (int i = 0; i < N; i++) infer_image_input(&im[i], S, want + (size_t)i * S * S * 3);
    for (int bf = 0; bf < 2; bf++) {   // float32, then bf16: the CPU's values rounded to bf16
        Tensor x = tensor_new4(&g.act, bf ? DT_BF16 : DT_F32, N, S, S, 3);
        ops_photo_input(&g.ctx.op, &x, &src, &bd, AUG_MEAN, AUG_STD);
        Tensor got = runtime_output_f32(&g, &x);
        Tensor w = tensor_view4(want, DT_F32, N, S, S, 3);
        if (bf) {
            Tensor b = tensor_new(&g.host, DT_BF16, 4, w.shape), wf = tensor_new(&g.host, DT_F32, 4, w.shape);
            tensor_copy(&b, &w), tensor_copy(&wf, &b);
            w = wf;
        }
        int64_t bad = 0, first = -1;
        for (int64_t k = 0; k < tensor_numel(&w); k++)
            if (memcmp(&tensor_f32(&got)[k], &tensor_f32(&w)[k], 4)) bad++, first = first < 0 ? k : first;
        CHECKF(bad == 0, "%s: %lld of %lld input values differ from the CPU's (first at %lld: %.9g against %.9g)",
               bf ? "bf16" : "float32", (long long)bad, (long long)tensor_numel(&w), (long long)first,
               first < 0 ? 0 : tensor_f32(&got)[first], first < 0 ? 0 : tensor_f32(&w)[first]);
    }
    // masks: smooth logits with a bump per image, and one flat map (the export's 1e-8 guard)
    Tensor lg = tensor_new4(&g.host, DT_F32, N, S, S, 1);
    for (int i = 0; i < N; i++)
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++)
                tensor_f32(&lg)[((int64_t)i * S + y) * S + x] =
                    i == 3 ? 0.25f : (float)(6 * sin(0.07 * (i + 1) * x) * cos(0.05 * y) + rng_uniform(&r) - 0.5);
    int64_t mt = 0;
    for (int i = 0; i < N; i++) box[4 * i] = mt, box[4 * i + 3] = 0, mt += (int64_t)wh[i][0] * wh[i][1];
    Tensor ld = runtime_input(&g, &lg, DT_F32), md = runtime_input(&g, &bh, DT_I64);
    Tensor masks = tensor_new(&g.act, DT_U8, 1, (int64_t[]){ mt });
    ops_mask_export(&g.ctx.op, &masks, &ld, &md);
    uint8_t *mh = cx_malloc((size_t)mt);
    Tensor mv = tensor_view(mh, DT_U8, 1, masks.shape);
    tensor_download(&mv, &masks);
    for (int i = 0; i < N; i++) {
        Image8 m;
        image_alloc(&m, wh[i][0], wh[i][1], 1);
        infer_mask(tensor_f32(&lg) + (size_t)i * S * S, S, &m);
        int64_t diff = 0, np = (int64_t)m.w * m.h;
        int worst = 0;
        for (int64_t k = 0; k < np; k++) {
            int d = abs((int)m.px[k] - (int)mh[box[4 * i] + k]);
            diff += d > 0, worst = d > worst ? d : worst;
        }
        printf("  mask %dx%d: %lld of %lld pixels differ from the CPU's, by at most %d\n", m.w, m.h, (long long)diff,
               (long long)np, worst);
        CHECKF(worst <= 1 && diff * 1000 <= np, "mask %d (%dx%d): %lld pixels differ, by up to %d levels", i, m.w, m.h,
               (long long)diff, worst);
        image_free(&m);
    }
    for (int i = 0; i < N; i++) image_free(&im[i]);
    free(host), free(want), free(mh);
    runtime_free(&g);
}

// nvJPEG's hardware decode of real and made JPEGs against libjpeg-turbo: the same size,
// and within a few levels (the two upsample chroma their own ways); batches of two sizes.
TEST(cuda_nvjpeg_decodes_what_the_cpu_decodes) {
    if (!test_cuda()) { test_skip("%s", test_no_gpu()); return; }
    Runtime g;
    REQUIRE_OK(runtime_init(&g, "cuda", "fp32", 0, 0));
    void *dec = NULL;
    char desc[96];
    if (ops_jpeg_open(&g.ctx.op, &dec, desc, sizeof desc)) {
        test_skip("no GPU JPEG decoder here: %s", cx_errmsg());
        runtime_free(&g);
        return;
    }
    printf("  %s\n", desc);
    enum { MAXN = 6 };
    uint8_t *buf[MAXN];
    size_t len[MAXN];
    int n = 0;
    Image8 made;   // a smooth picture with sharp edges, 4:2:0 at quality 90
    image_alloc(&made, 768, 512, 3);
    for (int y = 0; y < 512; y++)
        for (int x = 0; x < 768; x++)
            for (int c = 0; c < 3; c++)
                made.px[((size_t)y * 768 + x) * 3 + c] = (uint8_t)(((x / 64 + y / 64) % 2 ? 180 : 40) + 30 * sin(0.03 * x * (c + 1)));
    REQUIRE_OK(image_encode_jpeg(&made, 90, &buf[n], &len[n]));
    n++;
    image_free(&made);
    static const char *const names[] = { "camourflage_00012", "camourflage_00018", "camourflage_00061", "camourflage_00064" };
    for (int i = 0; i < 4; i++) {
        char p[1200];
        snprintf(p, sizeof p, "%s/%s.jpg", test_shared_path("data/camo4/Imgs"), names[i]);
        if (io_read_file(p, &buf[n], &len[n])) { cx_error_clear(); continue; }
        int w, h;
        if (!image_jpeg_plain(buf[n], len[n], &w, &h) || !ops_jpeg_supported(dec, buf[n], len[n])) {
            printf("  %s: not for the GPU's decoder\n", names[i]);
            free(buf[n]);
            continue;
        }
        n++;
    }
    for (int round = 0; round < 2; round++) {   // all of them, then a batch of one (a new initialisation)
        const int m = round ? 1 : n;
        int w[MAXN], h[MAXN];
        Image8 ref[MAXN];
        int64_t tot = 0, off[MAXN];
        for (int i = 0; i < m; i++) {
            REQUIRE(image_jpeg_plain(buf[i], len[i], &w[i], &h[i]));
            REQUIRE_OK(image_decode(buf[i], len[i], "test", 3, &ref[i]));
            REQUIRE(ref[i].w == w[i] && ref[i].h == h[i]);
            off[i] = tot, tot += 3 * (int64_t)w[i] * h[i];
        }
        runtime_step_reset(&g);
        Tensor d = tensor_new(&g.act, DT_U8, 1, (int64_t[]){ tot });
        uint8_t *dst[MAXN];
        for (int i = 0; i < m; i++) dst[i] = (uint8_t *)d.data + off[i];
        REQUIRE_OK(ops_jpeg_decode(&g.ctx.op, dec, m, (const uint8_t *const *)buf, len, dst, w, h));
        uint8_t *host = cx_malloc((size_t)tot);
        Tensor hv = tensor_view(host, DT_U8, 1, d.shape);
        tensor_download(&hv, &d);
        for (int i = 0; i < m; i++) {
            const int64_t np = (int64_t)w[i] * h[i];
            double sum = 0;
            int worst = 0;
            for (int64_t k = 0; k < np; k++)
                for (int c = 0; c < 3; c++) {
                    int e = abs((int)host[off[i] + c * np + k] - (int)ref[i].px[3 * k + c]);
                    sum += e, worst = e > worst ? e : worst;
                }
            printf("  JPEG %d (%dx%d): mean difference %.3f levels, largest %d\n", i, w[i], h[i], sum / (3.0 * np), worst);
            CHECKF(sum / (3.0 * np) <= 3.0, "JPEG %d: the GPU's decode differs from the CPU's by %.2f levels on average", i,
                   sum / (3.0 * np));
            image_free(&ref[i]);
        }
        free(host);
    }
    for (int i = 0; i < n; i++) free(buf[i]);
    ops_jpeg_close(dec);
    runtime_free(&g);
}

// predict on a GPU: its CPU path (CAMOXPERT_PREDICT_GPU_IO=0), the GPU path with the
// CPU's decoder (CAMOXPERT_NVJPEG=0: the same input, masks within a level), and the GPU
// path with nvJPEG (the JPEGs' masks within a few levels on average). The photos: the
// four shared JPEGs, one as PNG, and a broken JPEG (an error naming it, the others written).
TEST_SLOW(cuda_predict_gpu_path_writes_the_cpu_paths_masks) {
    if (!test_cuda()) { test_skip("%s", test_no_gpu()); return; }
    const char *imgs = test_shared_path("data/camo4/Imgs");
    if (!io_path_is_dir(imgs)) { test_skip("%s not present", imgs); return; }
    char dir[700];   // a copy: test_run_bin takes test_tmpdir()'s buffer for its own
    snprintf(dir, sizeof dir, "%s", test_tmpdir());
    CamoXpertConfig mc;
    Model m;   // a sparse model: its batches are never graphs, and its routing files name each photo's size
    REQUIRE_OK(camoxpert_config(&mc, "edgenext_xx_small", 1, 4, 2));
    REQUIRE_OK(model_open(&m, &(ModelSpec){ .config = &mc, .init_seed = 5 }));
    char *cfg = weights_config_json(&mc, 64);
    REQUIRE_OK(checkpoint_save(dir, "model", &m.pt, cfg, NULL, NULL, NULL));
    free(cfg);
    model_close(&m);
    static const char *const names[] = { "camourflage_00012", "camourflage_00018", "camourflage_00061", "camourflage_00064" };
    char in[800], p[4200], q[4200];
    snprintf(in, sizeof in, "%s/photos", dir);
    REQUIRE_OK(io_make_dirs(in));
    for (int i = 0; i < 4; i++) {
        snprintf(q, sizeof q, "%s/%s.jpg", imgs, names[i]);
        REQUIRE(realpath(q, p));
        snprintf(q, sizeof q, "%s/%s.jpg", in, names[i]);
        REQUIRE(symlink(p, q) == 0);
    }
    Image8 ph;
    snprintf(q, sizeof q, "%s/%s.jpg", imgs, names[0]);
    REQUIRE_OK(image_load(q, 3, &ph));
    snprintf(q, sizeof q, "%s/as_png.png", in);
    REQUIRE_OK(image_save_png(q, &ph));
    image_free(&ph);
    snprintf(q, sizeof q, "%s/broken.jpg", in);
    FILE *f = fopen(q, "wb");
    REQUIRE(f);
    fputs("\xff\xd8\xff\xe0 not a photo", f);
    fclose(f);
    static const char *const runs[3] = { "cpu", "gpu_cpu_decode", "gpu" };
    char *o[3];
    for (int r = 0; r < 3; r++) {
        unsetenv("CAMOXPERT_PREDICT_GPU_IO"), unsetenv("CAMOXPERT_NVJPEG");
        if (r == 0) setenv("CAMOXPERT_PREDICT_GPU_IO", "0", 1);
        if (r == 1) setenv("CAMOXPERT_NVJPEG", "0", 1);
        int rc = test_run_bin(&o[r], "predict --weights %s/model.safetensors --input %s --out %s/%s --routing --device cuda "
                              "--precision fp32 --batch-size 6 --workers 3", dir, in, dir, runs[r]);
        printf("  %s: %s", runs[r], strstr(o[r], "wrote") ? strstr(o[r], "wrote") : o[r]);
        CHECKF(rc == 1 && strstr(o[r], "broken.jpg") && strstr(o[r], "wrote 5 masks") && strstr(o[r], "1 of 6"),
               "%s: rc %d: %s", runs[r], rc, o[r]);
    }
    unsetenv("CAMOXPERT_PREDICT_GPU_IO"), unsetenv("CAMOXPERT_NVJPEG");
    CHECKF(!strstr(o[0], "photos:"), "the CPU path: %s", o[0]);
    CHECKF(strstr(o[1], "photos: decoded on the CPU (CAMOXPERT_NVJPEG=0)") && strstr(o[1], "0 decoded on the GPU"), "%s", o[1]);
    const int nvjpeg = strstr(o[2], "photos: JPEGs decoded on the GPU") != NULL;
    if (nvjpeg) CHECKF(strstr(o[2], "4 decoded on the GPU"), "%s", o[2]);
    else printf("  (no GPU JPEG decoder: the third run decoded on the CPU)\n");
    for (int k = 0; k < 5; k++) {
        const char *nm = k < 4 ? names[k] : "as_png";
        Image8 a[3];
        for (int r = 0; r < 3; r++) {
            snprintf(p, sizeof p, "%s/%s/%s.png", dir, runs[r], nm);
            REQUIRE_OK(image_load(p, 1, &a[r]));
            REQUIRE(a[r].w == a[0].w && a[r].h == a[0].h);
        }
        for (int r = 1; r < 3; r++) {
            const int64_t np = (int64_t)a[0].w * a[0].h;
            double sum = 0;
            int worst = 0;
            for (int64_t i = 0; i < np; i++) {
                int d = abs((int)a[r].px[i] - (int)a[0].px[i]);
                sum += d, worst = d > worst ? d : worst;
            }
            printf("  %s, %s against the CPU path: mean %.3f, largest %d levels\n", nm, runs[r], sum / np, worst);
            if (r == 1 || k == 4 || !nvjpeg) CHECKF(worst <= 1, "%s, %s: up to %d levels from the CPU path's mask", nm, runs[r], worst);
            else CHECKF(sum / np <= 3.0, "%s, %s: %.2f levels from the CPU path's mask on average", nm, runs[r], sum / np);
        }
        for (int r = 0; r < 3; r++) image_free(&a[r]);
        unsigned char *ja = NULL, *jb = NULL;   // the routing of the same input: the same experts, the photo's size
        size_t na = 0, nb = 0;
        snprintf(p, sizeof p, "%s/cpu/%s_routing.json", dir, nm);
        snprintf(q, sizeof q, "%s/gpu_cpu_decode/%s_routing.json", dir, nm);
        REQUIRE_OK(io_read_file(p, &ja, &na));
        REQUIRE_OK(io_read_file(q, &jb, &nb));
        const char *ea = strstr((const char *)ja, "\"experts\""), *eb = strstr((const char *)jb, "\"experts\"");
        CHECKF(ea && eb && !strncmp(ea, eb, 24), "%s: the routing differs: %.60s | %.60s", nm, ea ? ea : "?", eb ? eb : "?");
        free(ja), free(jb);
    }
    for (int r = 0; r < 3; r++) free(o[r]);
}
