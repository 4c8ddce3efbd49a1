// plugin.cu — the CUDA plug-in's one exported function, camoxpert_cuda_plugin:
// the GPU backend's kernel table (OpsBackend, filled from ops_list.h) and its
// other entry points (cuda.h CudaPlugin). ops.c looks this one name up with
// dlsym; nothing else of the plug-in is found by name.
//
// The kernels are declared weak here: an op whose cuda_<op> no file of ops/cuda/
// defines yet leaves its slot NULL instead of failing the plug-in's load, and
// ops_cuda_open then names every such op.
#include "ops/cuda/common.cuh"

extern "C" {
#define OP(name, cls, by, wrap, ref, cpu, fw, params, args) __attribute__((weak)) void cuda_##name params;
#include "ops/ops_list.h"
#undef OP
}

static const OpsBackend cuda_ops = {
#define OP(name, cls, by, wrap, ref, cpu, fw, params, args) .name = cuda_##name,
#include "ops/ops_list.h"
#undef OP
};

static const CudaPlugin plugin = {
    .op_list = ops_list_signature(),
    .ops = &cuda_ops,
    .conv_impl = &cuda_conv_impl,
    .arch_list = cuda_arch_list,
    .device_count = cuda_device_count,
    .open = cuda_open,
    .close = cuda_close,
    .describe = cuda_describe,
    .sync = cuda_sync,
    .graph_begin = cuda_graph_begin,
    .graph_end = cuda_graph_end,
    .graph_launch = cuda_graph_launch,
    .graph_destroy = cuda_graph_destroy,
    .nccl_version = cuda_nccl_version,
    .nccl_unique_id = cuda_nccl_unique_id,
    .nccl_open = cuda_nccl_open,
    .nccl_allreduce_sum = cuda_nccl_allreduce_sum,
    .nccl_allreduce_start = cuda_nccl_allreduce_start,
    .nccl_wait = cuda_nccl_wait,
    .nccl_close = cuda_nccl_close,
    .photo_input = cuda_photo_input,
    .mask_export = cuda_mask_export,
    .jpeg_open = cuda_jpeg_open,
    .jpeg_supported = cuda_jpeg_supported,
    .jpeg_decode = cuda_jpeg_decode,
    .jpeg_close = cuda_jpeg_close,
};

extern "C" const CudaPlugin *camoxpert_cuda_plugin(void) { return &plugin; }
