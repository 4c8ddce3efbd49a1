// dataset.c — see dataset.h. Directory listing, layout detection, pairing by
// base name, category tables, the parallel pre-scan and the validation split.
#include "dataset.h"
#include "image.h"
#include "core/names.h"
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

// ---- small helpers -------------------------------------------------------------
static char *path_join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = cx_malloc(n);
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

int dataset_is_image_name(const char *f) {
    if (f[0] == '.') return 0;   // hidden files, macOS "._x.jpg" resource forks
    const char *dot = strrchr(f, '.');
    if (!dot || dot == f) return 0;
    return !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".png") || !strcasecmp(dot, ".bmp");
}

typedef struct { char *base; char *file; } Entry;   // base name, file name

static int cmp_entry(const void *a, const void *b) {
    const Entry *x = a, *y = b;
    int c = strcmp(x->base, y->base);
    return c ? c : strcmp(x->file, y->file);
}

static void entries_free(Entry *e, int n) {
    for (int i = 0; i < n; i++) { free(e[i].base); free(e[i].file); }
    free(e);
}

// Lists image files of dir, sorted by base name. *n_other counts other files.
static cx_status list_images(const char *dir, Entry **out, int *n_out, int *n_other) {
    *out = NULL; *n_out = 0;
    DIR *d = opendir(dir);
    if (!d) return CX_FAIL(CX_EIO, "cannot read directory %s: %s", dir, strerror(errno));
    Entry *e = NULL;
    int n = 0, cap = 0, other = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        if (!dataset_is_image_name(de->d_name)) { other++; continue; }
        if (n == cap) { cap = cap ? 2 * cap : 256; e = cx_realloc(e, sizeof *e * (size_t)cap); }
        e[n].file = cx_strdup(de->d_name);
        e[n].base = cx_strdup(de->d_name);
        *strrchr(e[n].base, '.') = 0;
        n++;
    }
    closedir(d);
    qsort(e, (size_t)n, sizeof *e, cmp_entry);
    *out = e; *n_out = n;
    if (n_other) *n_other = other;
    return CX_OK;
}

static int table_index(char ***tab, int *n, const char *name) {
    for (int i = 0; i < *n; i++)
        if (!strcmp((*tab)[i], name)) return i;
    *tab = cx_realloc(*tab, sizeof **tab * (size_t)(*n + 1));
    (*tab)[*n] = cx_strdup(name);
    return (*n)++;
}

int dataset_parse_category(const char *name, char *super, size_t ns, char *sub, size_t nb) {
    return name_category(name, super, ns, sub, nb);
}

// ---- building a dataset ----------------------------------------------------------
static void add_sample(Dataset *ds, int *cap, const char *img, const char *mask, const char *base, int subset) {
    if (ds->n == *cap) { *cap = *cap ? 2 * *cap : 1024; ds->s = cx_realloc(ds->s, sizeof *ds->s * (size_t)*cap); }
    DataSample *s = &ds->s[ds->n++];
    memset(s, 0, sizeof *s);
    s->image = cx_strdup(img);
    s->mask = cx_strdup(mask);
    s->name = cx_strdup(base);
    s->subset = subset;
    char sup[64], sub[64];
    s->category = s->subcategory = -1;
    if (dataset_parse_category(base, sup, sizeof sup, sub, sizeof sub)) {
        s->category = table_index(&ds->categories, &ds->n_categories, sup);
        if (sub[0]) s->subcategory = table_index(&ds->subcategories, &ds->n_subcategories, sub);
    }
}

// Pairs images of img_dir with masks of mask_dir and appends them as subset `name`.
static cx_status add_pairs(Dataset *ds, int *cap, const char *img_dir, const char *mask_dir, const char *name,
                           int cam_only, int skip_bad) {
    Entry *im, *mk;
    int ni, nm;
    CX_TRY(list_images(img_dir, &im, &ni, NULL));
    cx_status st = list_images(mask_dir, &mk, &nm, NULL);
    if (st) { entries_free(im, ni); return st; }
    int subset = table_index(&ds->subsets, &ds->n_subsets, name);
    int missing = 0, j = 0, used_masks = 0;
    char first_missing[512] = "";
    for (int i = 0; i < ni; i++) {
        if (i > 0 && !strcmp(im[i].base, im[i - 1].base)) {
            // Two images with one base name ("a.jpg", "a.png"): the pair would be ambiguous.
            if (!skip_bad) {
                st = CX_FAIL(CX_EFORMAT, "%s: both %s and %s exist; a mask cannot be paired with two images "
                             "(delete one, or pass --skip-bad to keep the first)", img_dir, im[i - 1].file, im[i].file);
                goto done;
            }
            log_warn("%s/%s: duplicate of %s, skipped", img_dir, im[i].file, im[i - 1].file);
            ds->n_bad_skipped++;
            continue;
        }
        if (cam_only && !strstr(im[i].base, "-CAM-")) { ds->n_noncam_skipped++; continue; }
        while (j < nm && strcmp(mk[j].base, im[i].base) < 0) j++;
        // Several masks with this base name: prefer a PNG (lossless) over the rest.
        int pick = -1;
        for (int k = j; k < nm && !strcmp(mk[k].base, im[i].base); k++) {
            const char *dot = strrchr(mk[k].file, '.');
            if (pick < 0 || !strcasecmp(dot, ".png")) pick = k;
        }
        if (pick < 0) {
            if (!missing) snprintf(first_missing, sizeof first_missing, "%s/%s", img_dir, im[i].file);
            missing++;
            if (skip_bad) log_warn("%s/%s: no mask named %s.* in %s, skipped", img_dir, im[i].file, im[i].base, mask_dir);
            continue;
        }
        used_masks++;
        char *ip = path_join(img_dir, im[i].file), *mp = path_join(mask_dir, mk[pick].file);
        add_sample(ds, cap, ip, mp, im[i].base, subset);
        free(ip);
        free(mp);
    }
    if (missing && !skip_bad) {
        st = CX_FAIL(CX_ENOTFOUND, "%d image(s) have no mask, e.g. %s (looked for a .png/.jpg/.jpeg/.bmp of the same "
                     "base name in %s); fix the dataset or pass --skip-bad", missing, first_missing, mask_dir);
        goto done;
    }
    ds->n_bad_skipped += missing;
    // Masks whose base name matches no image (counting each base once).
    int distinct = 0;
    for (int k = 0; k < nm; k++) distinct += k == 0 || strcmp(mk[k].base, mk[k - 1].base) != 0;
    if (!cam_only) ds->n_orphan_masks += distinct - used_masks;
done:
    entries_free(im, ni);
    entries_free(mk, nm);
    return st;
}

static const char *find_sub(const char *root, const char *const *cands, char *buf, size_t n) {
    for (int i = 0; cands[i]; i++) {
        if (snprintf(buf, n, "%s/%s", root, cands[i]) >= (int)n) return NULL;
        if (io_path_is_dir(buf)) return buf;
    }
    return NULL;
}

static const char *const IMG_DIRS[] = { "Imgs", "Image", "Images", "images", "imgs", "Imgs_jpg", NULL };
static const char *const MASK_DIRS[] = { "GT", "GT_Object", "GT_object", "Masks", "masks", "Mask", "mask", "gt", NULL };

static int cmp_sample(const void *a, const void *b) {
    const DataSample *x = a, *y = b;
    if (x->subset != y->subset) return x->subset - y->subset;
    return strcmp(x->name, y->name);
}

static const char *base_name(const char *p) {
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') n--;
    const char *s = p + n;
    while (s > p && s[-1] != '/') s--;
    return s;
}

cx_status dataset_open(Dataset *ds, const DatasetOptions *o) {
    memset(ds, 0, sizeof *ds);
    const char *split = o->split ? o->split : "train";
    if (strcmp(split, "train") && strcmp(split, "test"))
        return CX_FAIL(CX_EARG, "unknown split '%s' (use train or test)", split);
    snprintf(ds->split, sizeof ds->split, "%s", split);
    int train = !strcmp(split, "train");
    int cap = 0;
    cx_status st = CX_OK;
    char a[4096], b[4096], c[4096];
    if (o->images_dir || o->masks_dir) {
        if (!o->images_dir || !o->masks_dir)
            return CX_FAIL(CX_EARG, "--images and --masks go together (got only %s)", o->images_dir ? "--images" : "--masks");
        for (int k = 0; k < 2; k++) {
            const char *dir = k ? o->masks_dir : o->images_dir;
            if (!io_path_is_dir(dir)) return CX_FAIL(CX_ENOTFOUND, "%s %s is not a directory", k ? "--masks" : "--images", dir);
        }
        snprintf(ds->layout, sizeof ds->layout, "plain");
        st = add_pairs(ds, &cap, o->images_dir, o->masks_dir, base_name(o->images_dir), 0, o->skip_bad);
        goto finish;
    }
    if (!o->root) return CX_FAIL(CX_EARG, "no dataset given: pass --dataset-path DIR (or --images DIR --masks DIR)");
    if (!io_path_is_dir(o->root)) return CX_FAIL(CX_ENOTFOUND, "--dataset-path %s is not a directory", o->root);
    // COD10K-v3 (also as a sub-folder of root).
    for (int k = 0; k < 2; k++) {
        snprintf(c, sizeof c, k ? "%s/COD10K-v3" : "%s", o->root);
        int fits = snprintf(a, sizeof a, "%s/%s/Image", c, train ? "Train" : "Test") < (int)sizeof a;
        fits &= snprintf(b, sizeof b, "%s/%s/GT_Object", c, train ? "Train" : "Test") < (int)sizeof b;
        if (fits && io_path_is_dir(a) && io_path_is_dir(b)) {
            snprintf(ds->layout, sizeof ds->layout, "COD10K-v3");
            st = add_pairs(ds, &cap, a, b, "COD10K", !o->include_noncam, o->skip_bad);
            goto finish;
        }
    }
    // Packaged TrainDataset / TestDataset.
    snprintf(c, sizeof c, "%s/%s", o->root, train ? "TrainDataset" : "TestDataset");
    if (io_path_is_dir(c)) {
        snprintf(ds->layout, sizeof ds->layout, "packaged");
        if (find_sub(c, IMG_DIRS, a, sizeof a) && find_sub(c, MASK_DIRS, b, sizeof b)) {
            st = add_pairs(ds, &cap, a, b, train ? "TrainDataset" : "TestDataset", 0, o->skip_bad);
            goto finish;
        }
        DIR *d = opendir(c);
        if (!d) return CX_FAIL(CX_EIO, "cannot read directory %s: %s", c, strerror(errno));
        char **names = NULL;
        int nn = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.') continue;
            char *sub = path_join(c, de->d_name);
            if (io_path_is_dir(sub) && find_sub(sub, IMG_DIRS, a, sizeof a) && find_sub(sub, MASK_DIRS, b, sizeof b)) {
                names = cx_realloc(names, sizeof *names * (size_t)(nn + 1));
                names[nn++] = cx_strdup(de->d_name);
            }
            free(sub);
        }
        closedir(d);
        // Sorted so subset indices do not depend on readdir order.
        for (int i = 1; i < nn; i++)
            for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) { char *t = names[j]; names[j] = names[j - 1]; names[j - 1] = t; }
        int matched = 0;
        for (int i = 0; i < nn && !st; i++) {
            if (o->subset && strcasecmp(o->subset, names[i])) continue;
            char *sub = path_join(c, names[i]);
            find_sub(sub, IMG_DIRS, a, sizeof a);
            find_sub(sub, MASK_DIRS, b, sizeof b);
            st = add_pairs(ds, &cap, a, b, names[i], 0, o->skip_bad);
            matched++;
            free(sub);
        }
        if (!st && !matched) {
            char list[1024] = "";
            for (int i = 0; i < nn; i++) snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", names[i]);
            st = o->subset ? CX_FAIL(CX_ENOTFOUND, "%s has no set named '%s' (found: %s)", c, o->subset, nn ? list : "none")
                           : CX_FAIL(CX_ENOTFOUND, "%s has no <name>/Imgs + <name>/GT folders", c);
        }
        for (int i = 0; i < nn; i++) free(names[i]);
        free(names);
        goto finish;
    }
    // CAMO-V.1.0: Images/Train, Images/Test, GT.
    snprintf(a, sizeof a, "%s/Images/%s", o->root, train ? "Train" : "Test");
    snprintf(b, sizeof b, "%s/GT", o->root);
    if (io_path_is_dir(a) && io_path_is_dir(b)) {
        snprintf(ds->layout, sizeof ds->layout, "CAMO");
        st = add_pairs(ds, &cap, a, b, "CAMO", 0, o->skip_bad);
        // The GT folder holds both splits' masks: the other split's are not orphans.
        ds->n_orphan_masks = 0;
        goto finish;
    }
    // One set as packaged (CAMO, NC4K, CHAMELEON): ROOT/Imgs + ROOT/GT.
    if (find_sub(o->root, IMG_DIRS, a, sizeof a) && find_sub(o->root, MASK_DIRS, b, sizeof b)) {
        snprintf(ds->layout, sizeof ds->layout, "single");
        st = add_pairs(ds, &cap, a, b, base_name(o->root), 0, o->skip_bad);
        goto finish;
    }
    return CX_FAIL(CX_ENOTFOUND,
                   "no dataset layout recognised under %s for split '%s'; looked for:\n"
                   "  COD10K-v3: %s[/COD10K-v3]/%s/Image + GT_Object\n"
                   "  packaged:  %s/%s/Imgs + GT or %s/%s/<name>/Imgs + GT\n"
                   "  CAMO:      %s/Images/%s + %s/GT\n"
                   "  one set:   %s/{Imgs,Image,Images} + %s/{GT,GT_Object,Masks}",
                   o->root, split, o->root, train ? "Train" : "Test", o->root, train ? "TrainDataset" : "TestDataset",
                   o->root, train ? "TrainDataset" : "TestDataset", o->root, train ? "Train" : "Test", o->root, o->root, o->root);
finish:
    if (st) { dataset_free(ds); return st; }
    if (o->subset && strcmp(ds->layout, "packaged"))
        log_warn("--subset %s ignored: it selects a test set of the packaged TestDataset/<name> layout, and this is %s",
                 o->subset, ds->layout);
    qsort(ds->s, (size_t)ds->n, sizeof *ds->s, cmp_sample);
    if (ds->n == 0) {
        char sum[512];
        dataset_summary(ds, sum, sizeof sum);
        st = CX_FAIL(CX_ENOTFOUND, "%s: no image/mask pairs (%s)%s", o->root ? o->root : o->images_dir, sum,
                     ds->n_noncam_skipped ? "; pass --include-noncam to keep NonCAM images" : "");
        dataset_free(ds);
        return st;
    }
    return CX_OK;
}

void dataset_summary(const Dataset *ds, char *buf, size_t n) {
    int len = snprintf(buf, n, "%s %s: %d pairs", ds->layout, ds->split, ds->n);
    if (ds->n_subsets > 1) {
        len += snprintf(buf + len, n > (size_t)len ? n - len : 0, " in %d sets (", ds->n_subsets);
        for (int i = 0; i < ds->n_subsets; i++) {
            int c = 0;
            for (int k = 0; k < ds->n; k++) c += ds->s[k].subset == i;
            len += snprintf(buf + len, n > (size_t)len ? n - len : 0, "%s%s %d", i ? ", " : "", ds->subsets[i], c);
        }
        len += snprintf(buf + len, n > (size_t)len ? n - len : 0, ")");
    }
    if (ds->n_noncam_skipped) len += snprintf(buf + len, n > (size_t)len ? n - len : 0, ", %d NonCAM left out", ds->n_noncam_skipped);
    if (ds->n_bad_skipped) len += snprintf(buf + len, n > (size_t)len ? n - len : 0, ", %d bad skipped", ds->n_bad_skipped);
    if (ds->n_orphan_masks) len += snprintf(buf + len, n > (size_t)len ? n - len : 0, ", %d masks without an image", ds->n_orphan_masks);
    if (ds->n_categories) snprintf(buf + len, n > (size_t)len ? n - len : 0, ", %d categories", ds->n_categories);
}

// ---- pre-scan -------------------------------------------------------------------------
cx_status dataset_scan(Dataset *ds, int skip_bad) {
    int n0 = ds->n;
    char **err = cx_calloc((size_t)n0 + 1, sizeof *err);   // (n0) message per bad sample, NULL when good
    int nbad = 0, nempty = 0, first_empty = -1;
    #pragma omp parallel for schedule(dynamic, 8) reduction(+ : nbad, nempty)
    for (int i = 0; i < ds->n; i++) {
        DataSample *s = &ds->s[i];
        int iw, ih, mw = 0, mh = 0;
        char msg[1024] = "";
        Image8 m = { 0 };
        // The mask is decoded whole (masks are small): an empty one is counted.
        if (image_probe(s->image, &iw, &ih)) snprintf(msg, sizeof msg, "%s", cx_errmsg());
        else if (image_load(s->mask, 1, &m)) snprintf(msg, sizeof msg, "%s", cx_errmsg());
        else {
            mw = m.w, mh = m.h;
            size_t np = (size_t)m.w * m.h, p = 0;
            while (p < np && m.px[p] <= 128) p++;
            if (p == np) {
                nempty++;
                #pragma omp critical(dataset_first_empty)
                if (first_empty < 0 || i < first_empty) first_empty = i;
            }
        }
        image_free(&m);
        if (msg[0]) {}
        else if (iw != mw || ih != mh)
            snprintf(msg, sizeof msg, "%s is %dx%d but its mask %s is %dx%d; the pair does not match",
                     s->image, iw, ih, s->mask, mw, mh);
        else { s->w = iw; s->h = ih; }
        if (msg[0]) {
            // Messages carry "[file:line]" of the failing check; keep only the text.
            char *br = strstr(msg, " [");
            if (br && strchr(br, ']') && !strchr(br, '\n')) *br = 0;
            err[i] = cx_strdup(msg);
            nbad++;
        }
    }
    char empty_eg[4096] = "";
    if (first_empty >= 0) snprintf(empty_eg, sizeof empty_eg, "%s", ds->s[first_empty].mask);
    cx_status st = CX_OK;
    if (nbad && !skip_bad) {
        char buf[6000];
        int len = snprintf(buf, sizeof buf, "%d of %d pairs are bad (pass --skip-bad to skip them):", nbad, ds->n);
        int shown = 0;
        for (int i = 0; i < ds->n && shown < 10; i++)
            if (err[i]) { len += snprintf(buf + len, len < (int)sizeof buf ? sizeof buf - len : 0, "\n  %s", err[i]); shown++; }
        if (nbad > shown && len < (int)sizeof buf) snprintf(buf + len, sizeof buf - len, "\n  ... and %d more", nbad - shown);
        st = CX_FAIL(CX_EFORMAT, "%s", buf);
    } else if (nbad) {
        int k = 0;
        for (int i = 0; i < ds->n; i++) {
            if (err[i]) {
                log_warn("skipping: %s", err[i]);
                free(ds->s[i].image); free(ds->s[i].mask); free(ds->s[i].name);
            } else ds->s[k++] = ds->s[i];
        }
        ds->n = k;
        ds->n_bad_skipped += nbad;
        log_warn("%d bad pair(s) skipped; %d remain", nbad, ds->n);
    }
    // Masks with no foreground (no pixel above 128) train silently towards empty output,
    // and score IoU 1 in validation. A few are normal (COD10K NonCAM, synthetic empty
    // scenes); most of them usually means masks stored as 0/1, or 16-bit masks holding 0..255.
    ds->n_empty_masks = nempty;
    if (!st && nempty * 2 > n0 && first_empty >= 0)
        log_warn("%d of %d masks have no foreground pixel (none above 128), e.g. %s: masks stored as 0/1, or as 16-bit "
                 "images holding 0..255, read as empty; rescale them to 0/255 8-bit", nempty, n0, empty_eg);
    for (int i = 0; i < n0; i++) free(err[i]);
    free(err);
    if (!st && ds->n == 0) st = CX_FAIL(CX_ENOTFOUND, "every pair was bad; nothing left to load");
    return st;
}

// ---- copies and splits -----------------------------------------------------------------
static char **copy_table(char **t, int n) {
    if (!n) return NULL;
    char **r = cx_malloc(sizeof *r * (size_t)n);
    for (int i = 0; i < n; i++) r[i] = cx_strdup(t[i]);
    return r;
}

void dataset_select(const Dataset *src, const int *idx, int n, Dataset *dst) {
    *dst = *src;
    dst->s = cx_malloc(sizeof *dst->s * (size_t)(n > 0 ? n : 1));
    dst->n = n;
    for (int i = 0; i < n; i++) {
        dst->s[i] = src->s[idx[i]];
        dst->s[i].image = cx_strdup(src->s[idx[i]].image);
        dst->s[i].mask = cx_strdup(src->s[idx[i]].mask);
        dst->s[i].name = cx_strdup(src->s[idx[i]].name);
    }
    dst->categories = copy_table(src->categories, src->n_categories);
    dst->subcategories = copy_table(src->subcategories, src->n_subcategories);
    dst->subsets = copy_table(src->subsets, src->n_subsets);
}

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

void dataset_split(const Dataset *src, double frac, uint64_t seed, Dataset *train, Dataset *val) {
    int n = src->n;
    int nv = (int)(frac * n + 0.5);
    if (nv < 0) nv = 0;
    if (nv > n) nv = n;
    int *perm = cx_malloc(sizeof(int) * (size_t)(n + 1));   // (n) a seeded permutation of 0..n-1
    for (int i = 0; i < n; i++) perm[i] = i;
    Rng r = rng_init(seed);
    Rng sh = rng_split(&r, 0x76616c73706c6974ULL);   // "valsplit"
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rng_below(&sh, (uint64_t)i + 1);
        int t = perm[i]; perm[i] = perm[j]; perm[j] = t;
    }
    qsort(perm, (size_t)nv, sizeof(int), cmp_int);
    qsort(perm + nv, (size_t)(n - nv), sizeof(int), cmp_int);
    dataset_select(src, perm, nv, val);
    dataset_select(src, perm + nv, n - nv, train);
    free(perm);
}

void dataset_free(Dataset *ds) {
    if (!ds) return;
    for (int i = 0; i < ds->n; i++) { free(ds->s[i].image); free(ds->s[i].mask); free(ds->s[i].name); }
    free(ds->s);
    for (int i = 0; i < ds->n_categories; i++) free(ds->categories[i]);
    for (int i = 0; i < ds->n_subcategories; i++) free(ds->subcategories[i]);
    for (int i = 0; i < ds->n_subsets; i++) free(ds->subsets[i]);
    free(ds->categories);
    free(ds->subcategories);
    free(ds->subsets);
    memset(ds, 0, sizeof *ds);
}
