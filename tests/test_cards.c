// test_cards.c — the GPU code the CUDA plug-in holds (issue 30, "every common card"):
// `camoxpert --version` names the architectures it was built for (the Makefile's
// GPU_ARCH, default sm_80 sm_86 sm_89 sm_90 compute_90), and says nothing of a plug-in
// in a build without CUDA. The refusal of a card the plug-in has no code for needs that
// card: docs/DEPLOY.md says how it was checked on a GPU.
#include "test.h"
#include <string.h>

TEST(version_lists_the_cuda_plugins_gpu_architectures) {
    char *out;
    int rc = test_run_bin(&out, "--version");
    CHECKF(rc == 0 && strstr(out, "camoxpert "), "exit %d: %s", rc, out);
#if HAVE_CUDA
    const char *l = strstr(out, "CUDA plug-in built for: ");
    CHECKF(l && (strstr(l, "sm_") || strstr(l, "native")), "no architecture list: %s", out);
#else
    CHECKF(!strstr(out, "plug-in built for"), "a build without CUDA names a plug-in: %s", out);
#endif
}
