// device.h — how core reaches GPU memory without depending on a GPU library.
// The CUDA backend (ops/cuda) registers these hooks when it opens a device;
// arenas and tables created for DEV_CUDA call them. Copies between host and
// device are explicit calls (tensor_upload / tensor_download in tensor.h), each
// synchronous and counted: cx_sync_count() is the number done so far, so a
// training step's host synchronisations can be measured, not guessed.
//
//   void *p = cx_dev_alloc(1 << 20);       // NULL when the GPU is out of memory
//   tensor_upload(&dev_t, &host_t);        // host -> device, waits
//   cx_dev_free(p);
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *name;                                                    // "CUDA"
    void *(*alloc)(size_t bytes);                                        // NULL: out of memory
    void (*free)(void *p);
    void (*upload)(void *dst_dev, const void *src_host, size_t bytes);   // after all queued device work; waits
    void (*download)(void *dst_host, const void *src_dev, size_t bytes); // after all queued device work; waits
    void (*copy)(void *dst_dev, const void *src_dev, size_t bytes);      // device to device, queued
    void (*zero)(void *dst_dev, size_t bytes);                           // queued
    void (*mem_info)(size_t *free_bytes, size_t *total_bytes);
    // host -> device, queued behind the device's work: src is copied at the call (into
    // staging memory), so the caller may reuse it at once. Returns 1 when it had to wait
    // for the device first (its staging memory still in flight: counted as a synchronisation).
    // NULL: uploads are synchronous only.
    int (*upload_async)(void *dst_dev, const void *src_host, size_t bytes);
} CxDeviceHooks;

void cx_device_hooks_set(const CxDeviceHooks *h);   // NULL: no device
int cx_device_present(void);                        // hooks registered?
void *cx_dev_alloc(size_t bytes);                    // NULL on failure (out of memory)
void cx_dev_free(void *p);
void cx_dev_upload(void *dst_dev, const void *src_host, size_t bytes);
// An upload the device runs in order with its queued work, without the host waiting for it
// (counted only when it had to wait; a synchronous upload where the backend has no queue).
void cx_dev_upload_async(void *dst_dev, const void *src_host, size_t bytes);
void cx_dev_download(void *dst_host, const void *src_dev, size_t bytes);
void cx_dev_copy(void *dst_dev, const void *src_dev, size_t bytes);
void cx_dev_zero(void *dst_dev, size_t bytes);
// Free and total GPU memory in bytes (0, 0 without a device).
void cx_dev_mem_info(size_t *free_bytes, size_t *total_bytes);
// Host<->device synchronisations made through this interface since start.
int64_t cx_sync_count(void);
