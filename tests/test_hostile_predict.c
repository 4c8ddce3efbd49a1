// test_hostile_predict.c — predict (and export) against the findings of issue 33 that
// concern a checkpoint: its configuration wins over the options (finding 6), weights that
// cannot be valid or give non-finite outputs are errors (finding 7), a folder records the
// weights that wrote it, the disk is probed before the photos, the weights file is read once.
#include "test.h"
#include "hostile.h"
#include "nn/weights.h"
#include <string.h>

// A sparse edgenext_xx_small (E 4, top-2) with spatial routing on a 2x2 grid, trained size
// 64, saved with its config: DIR/spatial.safetensors.
static const char *spatial_checkpoint(void) {
    static char ck[800];
    CamoXpertConfig mc;
    Model m;
    if (camoxpert_config(&mc, "edgenext_xx_small", 1, 4, 2) || camoxpert_config_routing(&mc, "spatial", 2) ||
        model_open(&m, &(ModelSpec){ .config = &mc, .init_seed = 5 }))
        return NULL;
    char *cfg = weights_config_json(&m.cfg, 64);
    snprintf(ck, sizeof ck, "%s/spatial.safetensors", test_tmpdir());
    cx_status st = weights_save(&m.pt, cfg, NULL, ck);
    free(cfg);
    model_close(&m);
    return st ? NULL : ck;
}

TEST(hostile_the_checkpoints_configuration_wins_over_the_options) {
    const char *ck = spatial_checkpoint();
    const char *ds = tiny_set("config_set");
    REQUIRE(ck && ds[0]);
    char t[600];
    snprintf(t, sizeof t, "%s", test_tmpdir());
    char *o;
    // --backbone that agrees: the checkpoint's whole configuration is used (spatial routing, 64²),
    // not the options' defaults (dense, global, 352²).
    int rc = run_bin(&o, "predict --weights %s --input %s/Test/Image --out %s/a --backbone edgenext_xx_small --routing "
                     "--threads 1", ck, ds, t);
    CHECKF(rc == 0 && strstr(o, "model: sparse") && strstr(o, "input 64x64") && strstr(o, "routing JSON"), "exit %d: %s",
           rc, o);
    CHECKF(count_files(t) > 0, "no output");
    // Options that contradict it: an error naming both values, nothing written.
    static const char *const bad[][3] = { { "--backbone edgenext_small", "edgenext_small", "edgenext_xx_small" },
                                          { "--backbone edgenext_xx_small --use-sparse-moe --num-experts 6", "--num-experts 6", "is 4" },
                                          { "--backbone edgenext_xx_small --use-sparse-moe --top-k 1", "--top-k 1", "is 2" } };
    for (int i = 0; i < 3; i++) {
        rc = run_bin(&o, "predict --weights %s --input %s/Test/Image --out %s/b%d %s --threads 1", ck, ds, t, i, bad[i][0]);
        CHECKF(rc == 2 && strstr(o, bad[i][1]) && strstr(o, bad[i][2]) && strstr(o, ck), "predict %s: exit %d: %s",
               bad[i][0], rc, o);
        rc = run_bin(&o, "export --weights %s --onnx %s/b%d.onnx %s", ck, t, i, bad[i][0]);
        CHECKF(rc != 0 && strstr(o, bad[i][1]) && strstr(o, bad[i][2]), "export %s: exit %d: %s", bad[i][0], rc, o);
    }
    // --img-size may differ from the training size: the first line says so.
    rc = run_bin(&o, "predict --weights %s --input %s/Test/Image --out %s/c --img-size 96 --threads 1", ck, ds, t);
    CHECKF(rc == 0 && !strncmp(o, "note: --img-size 96", 19) && strstr(strtok(o, "\n"), "64x64"), "exit %d: %s", rc, o);
}
