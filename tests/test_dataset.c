// test_dataset.c — layout detection on small trees built here (every layout,
// mixed extensions, COD10K CAM/NonCAM filtering), pairing errors, the pre-scan's
// bad-file handling, category parsing and the seeded validation split.
#include "test.h"
#include "data/dataset.h"
#include "data/image.h"
#include <string.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static void mkd(const char *root, const char *rel) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    io_make_dirs(p);
}

// Writes a small valid image (JPEG or PNG by extension) of w x h at root/rel.
static void put_image(const char *root, const char *rel, int w, int h) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    Image8 im;
    image_alloc(&im, w, h, 3);
    for (int i = 0; i < w * h * 3; i++) im.px[i] = (uint8_t)(i * 31);
    const char *dot = strrchr(rel, '.');
    if (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg")) image_save_jpeg(p, &im, 90);
    else { im.c = 1; image_save_png(p, &im); }
    image_free(&im);
}

static void put_bytes(const char *root, const char *rel, const char *s, size_t n) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    FILE *f = fopen(p, "wb");
    if (n) fwrite(s, 1, n, f);
    fclose(f);
}

static int has_name(const Dataset *ds, const char *name) {
    for (int i = 0; i < ds->n; i++) if (!strcmp(ds->s[i].name, name)) return 1;
    return 0;
}

TEST(dataset_category_parsing) {
    char a[64], b[64];
    CHECK(dataset_parse_category("COD10K-CAM-1-Aquatic-1-BatFish-1", a, sizeof a, b, sizeof b));
    CHECK(!strcmp(a, "Aquatic") && !strcmp(b, "BatFish"));
    CHECK(dataset_parse_category("COD10K-NonCAM-5-Other-69-Other-4321", a, sizeof a, b, sizeof b) && !strcmp(a, "Other"));
    CHECK(dataset_parse_category("SYN-CAM-foliage-000017", a, sizeof a, b, sizeof b) && !strcmp(a, "foliage") && !b[0]);
    CHECK(!dataset_parse_category("camourflage_00012", a, sizeof a, b, sizeof b) && !a[0]);
    CHECK(!dataset_parse_category("COD10K-CAM-x-Aquatic-1-BatFish-1", a, sizeof a, b, sizeof b));
    CHECK(!dataset_parse_category("SYN-CAM-foliage", a, sizeof a, b, sizeof b));
    CHECK(dataset_is_image_name("a.JPG") && dataset_is_image_name("b.jpeg") && dataset_is_image_name("c.Bmp"));
    CHECK(!dataset_is_image_name("Thumbs.db") && !dataset_is_image_name("._a.jpg") && !dataset_is_image_name("a.txt"));
}

TEST(dataset_cod10k_cam_filter_and_mixed_extensions) {
    const char *r = test_tmpdir();
    char root[512];
    snprintf(root, sizeof root, "%s", r);
    mkd(root, "COD10K-v3/Train/Image"); mkd(root, "COD10K-v3/Train/GT_Object");
    mkd(root, "COD10K-v3/Test/Image"); mkd(root, "COD10K-v3/Test/GT_Object");
    put_image(root, "COD10K-v3/Train/Image/COD10K-CAM-1-Aquatic-1-BatFish-1.jpg", 8, 6);
    put_image(root, "COD10K-v3/Train/GT_Object/COD10K-CAM-1-Aquatic-1-BatFish-1.png", 8, 6);
    put_image(root, "COD10K-v3/Train/Image/COD10K-CAM-2-Terrestrial-23-Cat-7.JPG", 8, 6);
    put_image(root, "COD10K-v3/Train/GT_Object/COD10K-CAM-2-Terrestrial-23-Cat-7.PNG", 8, 6);
    put_image(root, "COD10K-v3/Train/Image/COD10K-NonCAM-3-Flying-50-Bird-3.jpeg", 8, 6);
    put_image(root, "COD10K-v3/Train/GT_Object/COD10K-NonCAM-3-Flying-50-Bird-3.png", 8, 6);
    put_bytes(root, "COD10K-v3/Train/Image/readme.txt", "x", 1);
    put_image(root, "COD10K-v3/Test/Image/COD10K-CAM-1-Aquatic-2-ClownFish-9.jpg", 8, 6);
    put_image(root, "COD10K-v3/Test/GT_Object/COD10K-CAM-1-Aquatic-2-ClownFish-9.png", 8, 6);
    Dataset ds;
    DatasetOptions o = { .root = root, .split = "train" };
    REQUIRE_OK(dataset_open(&ds, &o));
    CHECK(!strcmp(ds.layout, "COD10K-v3") && ds.n == 2 && ds.n_noncam_skipped == 1);
    CHECK(has_name(&ds, "COD10K-CAM-2-Terrestrial-23-Cat-7") && !has_name(&ds, "COD10K-NonCAM-3-Flying-50-Bird-3"));
    CHECK(ds.n_categories == 2 && ds.s[0].category >= 0 && !strcmp(ds.categories[ds.s[0].category], "Aquatic"));
    CHECK(!strcmp(ds.subcategories[ds.s[0].subcategory], "BatFish"));
    CHECK(strstr(ds.s[1].mask, ".PNG") != NULL);
    REQUIRE_OK(dataset_scan(&ds, 0));
    CHECK(ds.s[0].w == 8 && ds.s[0].h == 6);
    char sum[256];
    dataset_summary(&ds, sum, sizeof sum);
    CHECKF(strstr(sum, "2 pairs") && strstr(sum, "1 NonCAM"), "%s", sum);
    dataset_free(&ds);
    o.include_noncam = 1;
    REQUIRE_OK(dataset_open(&ds, &o));
    CHECK(ds.n == 3 && ds.n_categories == 3);
    dataset_free(&ds);
    o.split = "test";
    REQUIRE_OK(dataset_open(&ds, &o));
    CHECK(ds.n == 1 && !strcmp(ds.split, "test"));
    dataset_free(&ds);
    // Pointing at the COD10K-v3 folder itself works too.
    char inner[600];
    snprintf(inner, sizeof inner, "%s/COD10K-v3", root);
    o.root = inner;
    REQUIRE_OK(dataset_open(&ds, &o));
    CHECK(ds.n == 1);
    dataset_free(&ds);
}

TEST(dataset_packaged_layout_and_subset) {
    char root[512];
    snprintf(root, sizeof root, "%s", test_tmpdir());
    mkd(root, "TrainDataset/Imgs"); mkd(root, "TrainDataset/GT");
    const char *sets[] = { "NC4K", "CAMO", "CHAMELEON" };
    for (int k = 0; k < 3; k++) {
        char a[256], b[256];
        snprintf(a, sizeof a, "TestDataset/%s/Imgs", sets[k]); mkd(root, a);
        snprintf(b, sizeof b, "TestDataset/%s/GT", sets[k]); mkd(root, b);
        for (int i = 0; i <= k; i++) {
            char f[300];
            snprintf(f, sizeof f, "%s/%s_%d.jpg", a, sets[k], i); put_image(root, f, 5, 4);
            snprintf(f, sizeof f, "%s/%s_%d.png", b, sets[k], i); put_image(root, f, 5, 4);
        }
    }
    put_image(root, "TrainDataset/Imgs/t1.jpg", 5, 4);
    put_image(root, "TrainDataset/GT/t1.png", 5, 4);
    put_image(root, "TrainDataset/GT/orphan.png", 5, 4);
    Dataset ds;
    DatasetOptions o = { .root = root, .split = "test" };
    REQUIRE_OK(dataset_open(&ds, &o));
    CHECK(!strcmp(ds.layout, "packaged") && ds.n == 6 && ds.n_subsets == 3);
    // Subsets sorted by name: CAMO, CHAMELEON, NC4K; samples grouped by subset.
    CHECK(!strcmp(ds.subsets[0], "CAMO") && !strcmp(ds.subsets[ds.s[5].subset], "NC4K"));
    dataset_free(&ds);
    o.subset = "nc4k";
    REQUIRE_OK(dataset_open(&ds, &o));
    CHECK(ds.n == 1 && has_name(&ds, "NC4K_0"));
    dataset_free(&ds);
    o.subset = "COD10K";
    CHECK(dataset_open(&ds, &o) == CX_ENOTFOUND);
    CHECKF(strstr(cx_errmsg(), "COD10K") && strstr(cx_errmsg(), "CHAMELEON"), "%s", cx_errmsg());
    o.subset = NULL;
    o.split = "train";
    REQUIRE_OK(dataset_open(&ds, &o));
    CHECK(ds.n == 1 && ds.n_orphan_masks == 1);
    dataset_free(&ds);
}

TEST(dataset_camo_single_and_plain_layouts) {
    char root[512];
    snprintf(root, sizeof root, "%s", test_tmpdir());
    // CAMO-V.1.0 release.
    mkd(root, "CAMO/Images/Train"); mkd(root, "CAMO/Images/Test"); mkd(root, "CAMO/GT");
    put_image(root, "CAMO/Images/Train/camourflage_00001.jpg", 6, 6);
    put_image(root, "CAMO/Images/Test/camourflage_00002.jpg", 6, 6);
    put_image(root, "CAMO/GT/camourflage_00001.png", 6, 6);
    put_image(root, "CAMO/GT/camourflage_00002.png", 6, 6);
    char p[700];
    snprintf(p, sizeof p, "%s/CAMO", root);
    Dataset ds;
    DatasetOptions o = { .root = p, .split = "test" };
    REQUIRE_OK(dataset_open(&ds, &o));
    CHECK(!strcmp(ds.layout, "CAMO") && ds.n == 1 && has_name(&ds, "camourflage_00002") && ds.s[0].category == -1);
    dataset_free(&ds);
    // One set as packaged: the shared camo4 photos (Imgs + GT).
    o.root = test_shared_path("data/camo4");
    REQUIRE_OK(dataset_open(&ds, &o));
    CHECK(!strcmp(ds.layout, "single") && ds.n == 4 && !strcmp(ds.subsets[0], "camo4"));
    REQUIRE_OK(dataset_scan(&ds, 0));
    CHECK(ds.s[0].w > 0 && ds.s[0].h > 0);
    dataset_free(&ds);
    // Plain folders with mixed extensions; a .jpg mask loses to a .png of the same name.
    mkd(root, "plain/im"); mkd(root, "plain/gt");
    put_image(root, "plain/im/a.jpeg", 4, 4);
    put_image(root, "plain/im/b.PNG", 4, 4);
    put_image(root, "plain/gt/a.png", 4, 4);
    put_image(root, "plain/gt/a.jpg", 4, 4);
    put_image(root, "plain/gt/b.png", 4, 4);
    char im[700], gt[700];
    snprintf(im, sizeof im, "%s/plain/im", root);
    snprintf(gt, sizeof gt, "%s/plain/gt", root);
    DatasetOptions q = { .images_dir = im, .masks_dir = gt };
    REQUIRE_OK(dataset_open(&ds, &q));
    CHECK(!strcmp(ds.layout, "plain") && ds.n == 2 && strstr(ds.s[0].mask, "a.png") && strstr(ds.s[1].image, "b.PNG"));
    dataset_free(&ds);
    q.masks_dir = NULL;
    CHECK(dataset_open(&ds, &q) == CX_EARG);
    q.masks_dir = ds.layout;   // not a directory
    CHECK(dataset_open(&ds, &q) == CX_ENOTFOUND);
}

TEST(dataset_nothing_found_lists_what_was_looked_for) {
    char root[512];
    snprintf(root, sizeof root, "%s", test_tmpdir());
    mkd(root, "random/stuff");
    Dataset ds;
    DatasetOptions o = { .root = root };
    CHECK(dataset_open(&ds, &o) == CX_ENOTFOUND);
    const char *m = cx_errmsg();
    // (The plain layout's --images/--masks are `camoxpert data` options: that command adds them.)
    CHECKF(strstr(m, "COD10K-v3") && strstr(m, "TrainDataset") && strstr(m, "Images/Train") && !strstr(m, "--images"), "%s", m);
    char missing[600];
    snprintf(missing, sizeof missing, "%s/nope", root);
    o.root = missing;
    CHECK(dataset_open(&ds, &o) == CX_ENOTFOUND && strstr(cx_errmsg(), "nope"));
    o.root = root;
    o.split = "val";
    CHECK(dataset_open(&ds, &o) == CX_EARG);
}

TEST(dataset_missing_masks_and_bad_files) {
    char root[512];
    snprintf(root, sizeof root, "%s", test_tmpdir());
    mkd(root, "Imgs"); mkd(root, "GT");
    put_image(root, "Imgs/good.jpg", 16, 12); put_image(root, "GT/good.png", 16, 12);
    put_image(root, "Imgs/nomask.jpg", 16, 12);
    Dataset ds;
    DatasetOptions o = { .root = root };
    CHECK(dataset_open(&ds, &o) == CX_ENOTFOUND);
    CHECKF(strstr(cx_errmsg(), "nomask.jpg") && strstr(cx_errmsg(), "--skip-bad"), "%s", cx_errmsg());
    o.skip_bad = 1;
    REQUIRE_OK(dataset_open(&ds, &o));
    CHECK(ds.n == 1 && ds.n_bad_skipped == 1);
    dataset_free(&ds);
    // Bad files that only decoding finds.
    put_image(root, "Imgs/size.jpg", 16, 12); put_image(root, "GT/size.png", 12, 16);
    put_bytes(root, "Imgs/empty.jpg", "", 0); put_image(root, "GT/empty.png", 16, 12);
    put_bytes(root, "Imgs/text.jpg", "not a jpeg at all", 17); put_image(root, "GT/text.png", 16, 12);
    put_image(root, "Imgs/trunc.jpg", 16, 12); put_image(root, "GT/trunc.png", 16, 12);
    char p[700];
    snprintf(p, sizeof p, "%s/Imgs/trunc.jpg", root);
    truncate(p, 200);
    o.skip_bad = 0;
    put_image(root, "GT/nomask.png", 16, 12);
    REQUIRE_OK(dataset_open(&ds, &o));
    CHECK(ds.n == 6);
    CHECK(dataset_scan(&ds, 0) == CX_EFORMAT);
    const char *m = cx_errmsg();
    CHECKF(strstr(m, "4 of 6") && strstr(m, "size.jpg is 16x12") && strstr(m, "empty.jpg") && strstr(m, "text.jpg: not an image")
           && strstr(m, "trunc.jpg: truncated"), "%s", m);
    REQUIRE_OK(dataset_scan(&ds, 1));
    CHECK(ds.n == 2 && ds.n_bad_skipped == 4 && has_name(&ds, "good") && has_name(&ds, "nomask"));
    dataset_free(&ds);
}

TEST(dataset_validation_split_is_seeded) {
    char root[512];
    snprintf(root, sizeof root, "%s", test_tmpdir());
    mkd(root, "Imgs"); mkd(root, "GT");
    for (int i = 0; i < 40; i++) {
        char f[64];
        snprintf(f, sizeof f, "Imgs/s%02d.png", i); put_image(root, f, 2, 2);
        snprintf(f, sizeof f, "GT/s%02d.png", i); put_image(root, f, 2, 2);
    }
    Dataset ds, t1, v1, t2, v2, t3, v3;
    DatasetOptions o = { .root = root };
    REQUIRE_OK(dataset_open(&ds, &o));
    dataset_split(&ds, 0.2, 7, &t1, &v1);
    dataset_split(&ds, 0.2, 7, &t2, &v2);
    dataset_split(&ds, 0.2, 8, &t3, &v3);
    CHECK(v1.n == 8 && t1.n == 32);
    int same = 1, same3 = 1;
    for (int i = 0; i < v1.n; i++) { same &= !strcmp(v1.s[i].name, v2.s[i].name); same3 &= !strcmp(v1.s[i].name, v3.s[i].name); }
    CHECK(same && !same3);
    for (int i = 0; i < v1.n; i++) CHECK(!has_name(&t1, v1.s[i].name));
    for (int i = 1; i < t1.n; i++) CHECK(strcmp(t1.s[i - 1].name, t1.s[i].name) < 0);
    dataset_free(&t1); dataset_free(&v1); dataset_free(&t2); dataset_free(&v2); dataset_free(&t3); dataset_free(&v3);
    dataset_free(&ds);
}
