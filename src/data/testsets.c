// testsets.c — see testsets.h. Folder matching, the three inner layouts (a mask folder,
// COD10K-v3's Test/GT_Object, CAMO-V.1.0's Images/Test + GT), the mask lists, the
// photos of the masks, and whether a training folder is a test set's.
#include "data/testsets.h"
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const TestSetInfo testset_info[TESTSET_N] = {
    { "CHAMELEON", "CHAMELEON", 76 },
    { "CAMO", "CAMO-test", 250 },
    { "COD10K", "COD10K-test", 2026 },
    { "NC4K", "NC4K", 4121 },
};

static const char *const MASK_DIRS[] = { "GT", "GT_Object", "GT_object", "Masks", "masks", "Mask", "gt", NULL };
static const char *const IMAGE_DIRS[] = { "Imgs", "Image", "Images", "images", "imgs", NULL };

int testset_is_noncam(const char *name) { return strstr(name, "-NonCAM-") != NULL; }

int testset_match(const char *folder) {
    for (int i = 0; i < TESTSET_N; i++) {
        size_t n = strlen(testset_info[i].name);
        if (strncasecmp(folder, testset_info[i].name, n)) continue;
        const char *rest = folder + n;
        if (!*rest || ((rest[0] == '-' || rest[0] == '_') && !strcasecmp(rest + 1, "test"))) return i;
        // the releases' own folder names
        if (i == TESTSET_COD10K && !strcasecmp(rest, "-v3")) return i;
        if (i == TESTSET_CAMO && !strncasecmp(rest, "-V", 2)) return i;   // CAMO-V.1.0-CVIU2019
    }
    return -1;
}

const char *testsets_layouts(void) {
    return "  [TestDataset/]<SET>/{GT,GT_Object,Masks} for SET in CHAMELEON, CAMO, COD10K, NC4K "
           "(also <SET>-test, any case)\n"
           "  COD10K[-v3]/Test/GT_Object (the COD10K-v3 release)\n"
           "  CAMO-V.1.0*/Images/Test + GT (the CAMO release)";
}

static char *join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = cx_malloc(n);
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

// The first of names[] that is a folder under dir (malloc'd path), or NULL.
static char *find_dir(const char *dir, const char *const *names) {
    for (int i = 0; names[i]; i++) {
        char *p = join(dir, names[i]);
        if (io_path_is_dir(p)) return p;
        free(p);
    }
    return NULL;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// Sorted sub-folder names of dir (none when dir cannot be read as a folder).
static char **list_subdirs(const char *dir, int *n_out) {
    *n_out = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char **v = NULL;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *p = join(dir, e->d_name);
        if (io_path_is_dir(p)) {
            v = cx_realloc(v, sizeof *v * (size_t)(n + 1));
            v[n++] = cx_strdup(e->d_name);
        }
        free(p);
    }
    closedir(d);
    if (n) qsort(v, (size_t)n, sizeof *v, cmp_str);
    *n_out = n;
    return v;
}

static void free_strs(char **v, int n) {
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

// Base names (no extension) of the image files in dir, sorted; files: the file names.
// what: "masks" or "photos", for the message about two files of one name.
static cx_status list_images(const char *dir, const char *what, char ***names, char ***files, int *n_out) {
    *names = *files = NULL;
    *n_out = 0;
    DIR *d = opendir(dir);
    if (!d) return CX_FAIL(CX_EIO, "cannot read the folder %s: %s", dir, strerror(errno));
    char **f = NULL;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!dataset_is_image_name(e->d_name)) continue;
        f = cx_realloc(f, sizeof *f * (size_t)(n + 1));
        f[n++] = cx_strdup(e->d_name);
    }
    closedir(d);
    if (n) qsort(f, (size_t)n, sizeof *f, cmp_str);
    char **b = cx_malloc(sizeof *b * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) {
        b[i] = cx_strdup(f[i]);
        *strrchr(b[i], '.') = 0;
    }
    // sorted by base name (a.png < a_b.png by file name need not hold for the bases)
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && strcmp(b[j - 1], b[j]) > 0; j--) {
            char *t = b[j]; b[j] = b[j - 1]; b[j - 1] = t;
            t = f[j]; f[j] = f[j - 1]; f[j - 1] = t;
        }
    for (int i = 1; i < n; i++)
        if (!strcmp(b[i], b[i - 1])) {
            cx_status st = CX_FAIL(CX_EFORMAT, "%s has two %s for '%s': %s and %s; delete one", dir, what, b[i], f[i - 1],
                                   f[i]);
            free_strs(b, n);
            free_strs(f, n);
            return st;
        }
    *names = b;
    *files = f;
    *n_out = n;
    return CX_OK;
}

// Fills s from the set folder dir when one of the inner layouts is there; 0 when none is.
static cx_status read_set(const char *dir, testset_id id, int include_noncam, TestSet *s, int *found) {
    static const char *const test_dirs[] = { "Test", "test", NULL };
    static const char *const image_dirs[] = { "Images", NULL };
    *found = 0;
    memset(s, 0, sizeof *s);
    char *gt = NULL, *keep_dir = NULL;   // keep_dir: only masks of the images there (CAMO-V.1.0)
    char *img = NULL;
    char *t = find_dir(dir, test_dirs);
    if (t) {   // COD10K-v3: Test/GT_Object
        gt = find_dir(t, MASK_DIRS);
        if (gt) img = find_dir(t, IMAGE_DIRS);
        free(t);
    }
    if (!gt) {
        char *im = find_dir(dir, image_dirs);
        if (im) {   // CAMO-V.1.0: Images/Test + GT
            keep_dir = find_dir(im, test_dirs);
            if (keep_dir) gt = find_dir(dir, MASK_DIRS);
            if (!gt) { free(keep_dir); keep_dir = NULL; }
            free(im);
        }
    }
    if (!gt && (gt = find_dir(dir, MASK_DIRS))) img = find_dir(dir, IMAGE_DIRS);   // packaged: <SET>/GT
    else if (gt && keep_dir) img = cx_strdup(keep_dir);
    if (!gt) return CX_OK;
    char **names, **files;
    int n;
    cx_status st = list_images(gt, "masks", &names, &files, &n);
    if (!st && keep_dir) {
        char **kn, **kf;
        int nk;
        st = list_images(keep_dir, "photos", &kn, &kf, &nk);
        if (!st) {
            int k = 0;
            for (int i = 0; i < n; i++) {
                if (bsearch(&names[i], kn, (size_t)nk, sizeof *kn, cmp_str)) {
                    names[k] = names[i], files[k] = files[i], k++;
                } else {
                    free(names[i]), free(files[i]);
                }
            }
            n = k;
            free_strs(kn, nk);
            free_strs(kf, nk);
        }
    }
    if (st) { free(gt); free(keep_dir); free(img); return st; }
    s->id = id;
    s->dir = cx_strdup(dir);
    s->gt_dir = gt;
    s->img_dir = img;
    if (id == TESTSET_COD10K && !include_noncam) {
        int k = 0;
        for (int i = 0; i < n; i++) {
            if (testset_is_noncam(names[i])) {
                s->n_noncam++;
                free(names[i]), free(files[i]);
            } else {
                names[k] = names[i], files[k] = files[i], k++;
            }
        }
        n = k;
    }
    s->names = names;
    s->files = files;
    s->n = n;
    free(keep_dir);
    *found = 1;
    return CX_OK;
}

cx_status testsets_find(const char *root, int include_noncam, TestSet **sets, int *n_sets) {
    *sets = NULL;
    *n_sets = 0;
    if (!io_path_is_dir(root)) return CX_FAIL(CX_ENOTFOUND, "--data-root %s is not a folder", root);
    TestSet *out = cx_calloc(TESTSET_N, sizeof *out);
    int have[TESTSET_N] = { 0 };
    cx_status st = CX_OK;
    // The root itself may be one set's folder (.../TestDataset/CAMO).
    const char *base = strrchr(root, '/');
    char bname[256];
    snprintf(bname, sizeof bname, "%s", base && base[1] ? base + 1 : root);
    size_t bl = strlen(bname);
    while (bl > 1 && bname[bl - 1] == '/') bname[--bl] = 0;
    int self = testset_match(bname);
    if (self >= 0) st = read_set(root, self, include_noncam, &out[self], &have[self]);
    // Else its sub-folders, TestDataset/'s first.
    static const char *const parents[] = { "TestDataset", "", NULL };
    for (int p = 0; !st && self < 0 && parents[p]; p++) {
        char *dir = parents[p][0] ? join(root, parents[p]) : cx_strdup(root);
        int nsub;
        char **sub = list_subdirs(dir, &nsub);
        for (int i = 0; i < nsub && !st; i++) {
            int id = testset_match(sub[i]);
            if (id < 0 || have[id]) continue;
            char *sd = join(dir, sub[i]);
            st = read_set(sd, id, include_noncam, &out[id], &have[id]);
            free(sd);
        }
        free_strs(sub, nsub);
        free(dir);
    }
    int n = 0;
    for (int i = 0; i < TESTSET_N; i++)
        if (have[i]) out[n++] = out[i];
    if (st) {
        testsets_free(out, n);
        return st;
    }
    *sets = out;
    *n_sets = n;
    return CX_OK;
}

void testsets_free(TestSet *sets, int n) {
    for (int i = 0; i < n; i++) {
        free(sets[i].dir);
        free(sets[i].gt_dir);
        free(sets[i].img_dir);
        free_strs(sets[i].names, sets[i].n);
        free_strs(sets[i].files, sets[i].n);
    }
    free(sets);
}

// ---- the photos of a set ------------------------------------------------------------------
cx_status testset_photos(const TestSet *s, char ***photos, int *n_missing, int *n_unused) {
    *photos = NULL;
    *n_missing = *n_unused = 0;
    if (!s->img_dir)
        return CX_FAIL(CX_ENOTFOUND, "%s: no folder of photos (Imgs, Image or Images) beside its masks in %s",
                       testset_info[s->id].title, s->dir);
    char **pn, **pf;
    int np;
    CX_TRY(list_images(s->img_dir, "photos", &pn, &pf, &np));
    char **out = cx_calloc((size_t)(s->n ? s->n : 1), sizeof *out);
    // Both lists are sorted by base name: one merge.
    int j = 0;
    const int noncam_left = s->id == TESTSET_COD10K && s->n_noncam > 0;
    for (int i = 0; i <= s->n; i++) {
        for (; j < np && (i == s->n || strcmp(pn[j], s->names[i]) < 0); j++)
            *n_unused += !(noncam_left && testset_is_noncam(pn[j]));
        if (i == s->n) break;
        if (j < np && !strcmp(pn[j], s->names[i])) out[i] = join(s->img_dir, pf[j++]);
        else (*n_missing)++;
    }
    free_strs(pn, np);
    free_strs(pf, np);
    *photos = out;
    return CX_OK;
}

void testset_photos_free(char **photos, int n) { free_strs(photos, photos ? n : 0); }

// ---- training folders that are a test set's ---------------------------------------------
// 1: the name of a test split, -1: of a training split, 0: neither. *set: the test set a
// name stands for (-1: none).
static int folder_kind(const char *name, int *set) {
    static const char *const test[] = { "Test", "TestDataset", "TestDatasets", "Testing", "TestSet", "Test_Set",
                                        "Test-Set", NULL };
    static const char *const train[] = { "Train", "TrainDataset", "TrainDatasets", "TrainValDataset", "TrainVal",
                                         "Training", "TrainSet", "Train_Set", "Train-Set", NULL };
    for (int i = 0; test[i]; i++)
        if (!strcasecmp(name, test[i])) return 1;
    for (int i = 0; train[i]; i++)
        if (!strcasecmp(name, train[i])) return -1;
    *set = testset_match(name);
    if (*set < 0) return 0;
    size_t n = strlen(name);
    if (n > 5 && (name[n - 5] == '-' || name[n - 5] == '_') && !strcasecmp(name + n - 4, "test")) return 1;   // CAMO-test
    return *set == TESTSET_CHAMELEON || *set == TESTSET_NC4K ? 1 : 0;   // sets with no training split
}

int testset_folder_is_test(const char *dir, char *what, size_t n) {
    char p[PATH_MAX];
    if (!realpath(dir, p)) snprintf(p, sizeof p, "%s", dir);
    size_t len = strlen(p);
    int set = -1;
    char set_dir[PATH_MAX] = "";
    for (int level = 0; level < 3 && len > 1; level++) {
        while (len > 1 && p[len - 1] == '/') p[--len] = 0;
        char *slash = strrchr(p, '/');
        const char *name = slash ? slash + 1 : p;
        int id = -1, kind = folder_kind(name, &id);
        if (id >= 0 && set < 0) set = id, snprintf(set_dir, sizeof set_dir, "%s", p);
        if (kind < 0) return 0;
        if (kind > 0) {
            if (set >= 0) snprintf(what, n, "the test set %s (%s)", testset_info[set].title, set_dir);
            else snprintf(what, n, "a test split (%s)", p);
            return 1;
        }
        if (!slash) break;
        len = (size_t)(slash - p);
        if (!len) break;
        p[len] = 0;
    }
    return 0;
}

int testset_dataset_is_test(const Dataset *ds, char *what, size_t n) {
    char dir[PATH_MAX], last[PATH_MAX] = "";
    for (int i = 0; i < ds->n; i++) {
        const char *img = ds->s[i].image, *slash = strrchr(img, '/');
        snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - img) : 1, slash ? img : ".");
        if (!strcmp(dir, last)) continue;   // samples are sorted by subset: one folder after another
        snprintf(last, sizeof last, "%s", dir);
        if (testset_folder_is_test(dir, what, n)) return 1;
    }
    return 0;
}
