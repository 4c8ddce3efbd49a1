// device.c — see device.h.
#include "device.h"
#include "error.h"

static CxDeviceHooks hooks;
static int present;
static int64_t syncs;

void cx_device_hooks_set(const CxDeviceHooks *h) {
    if (h) hooks = *h;
    present = h != NULL;
}

int cx_device_present(void) { return present; }

void *cx_dev_alloc(size_t bytes) {
    CX_ASSERT(present, "device memory requested but no GPU backend is open");
    return hooks.alloc(bytes ? bytes : 1);
}

void cx_dev_free(void *p) {
    if (p && present) hooks.free(p);
}

void cx_dev_upload(void *dst_dev, const void *src_host, size_t bytes) {
    CX_ASSERT(present, "upload without a GPU backend");
    if (!bytes) return;
    hooks.upload(dst_dev, src_host, bytes);
    syncs++;
}

void cx_dev_upload_async(void *dst_dev, const void *src_host, size_t bytes) {
    CX_ASSERT(present, "upload without a GPU backend");
    if (!bytes) return;
    if (!hooks.upload_async) {
        cx_dev_upload(dst_dev, src_host, bytes);
        return;
    }
    syncs += hooks.upload_async(dst_dev, src_host, bytes);
}

void cx_dev_download(void *dst_host, const void *src_dev, size_t bytes) {
    CX_ASSERT(present, "download without a GPU backend");
    if (!bytes) return;
    hooks.download(dst_host, src_dev, bytes);
    syncs++;
}

void cx_dev_copy(void *dst_dev, const void *src_dev, size_t bytes) {
    CX_ASSERT(present, "device copy without a GPU backend");
    if (bytes) hooks.copy(dst_dev, src_dev, bytes);
}

void cx_dev_zero(void *dst_dev, size_t bytes) {
    CX_ASSERT(present, "device zero without a GPU backend");
    if (bytes) hooks.zero(dst_dev, bytes);
}

void cx_dev_mem_info(size_t *free_bytes, size_t *total_bytes) {
    *free_bytes = *total_bytes = 0;
    if (present) hooks.mem_info(free_bytes, total_bytes);
}

int64_t cx_sync_count(void) { return syncs; }
