//===- Launch.h - the own kernels' device launchers -------------*- C++ -*-===//
//
// The GPU side of Kernels.h: each launcher builds the same functor as its
// host launcher and enqueues it on `stream` (a grid-stride loop over the
// functor's items). Pointers are device pointers. Arguments are checked on
// the host before launching (KernelError); the data-dependent checks the
// host launchers make (labels, switches) are not (see Kernels.h). A failed
// launch throws KernelError with CUDA's message.
//
// Declared without CUDA headers (cudaStream_t is a CUstream_st *), so plain
// C++ code can call them; defined in Kernels.cu, built with NETC_WITH_CUDA.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_CUDA_LAUNCH_H
#define NETC_RUNTIME_CUDA_LAUNCH_H

#include "runtime/cuda/Kernels.h"

struct CUstream_st;

namespace netc::cuda::device {

/// A CUDA stream (cudaStream_t); null is the legacy default stream.
using Stream = CUstream_st *;

/// Threads per block of the elementwise launches.
constexpr int kBlockThreads = 256;

void maxPoolForward(const kernels::PoolShape &s, const float *x, float *y,
                    int32_t *switches, Stream stream);
void maxPoolBackward(const kernels::PoolShape &s, const float *dy,
                     const int32_t *switches, float *dx, Stream stream);
void unpoolForward(const kernels::UnpoolShape &s, const float *x,
                   const int32_t *switches, float *y, Stream stream);
void unpoolBackward(const kernels::UnpoolShape &s, const float *dy,
                    const int32_t *switches, float *dx, Stream stream);

/// Writes the loss to `*loss` (device memory); `partials` is
/// kReduceWorkspaceBytes of device workspace.
void euclideanLossForward(int64_t batch, int64_t count, const float *a,
                          const float *b, double *partials, float *loss,
                          Stream stream);
void euclideanLossBackward(int64_t batch, int64_t count, const float *a,
                           const float *b, float dloss, float *da, float *db,
                           Stream stream);
void softmaxCrossEntropyForward(int64_t n, int64_t k, const float *logits,
                                const int32_t *labels, double *partials,
                                float *loss, Stream stream);
/// `rowLse` is n doubles of device workspace.
void softmaxCrossEntropyBackward(int64_t n, int64_t k, const float *logits,
                                 const int32_t *labels, float dloss,
                                 double *rowLse, float *dlogits, Stream stream);

/// `*total` = the weighted sum of the terms; `terms` is a device array
/// (built once when the program is prepared: the loss scalars do not move).
void objective(const ObjectiveTerm *terms, int64_t count, float *total,
               Stream stream);

void dropout(int64_t count, double ratio, uint64_t seed, uint64_t step,
             uint64_t first, const float *x, float *y, Stream stream);
void relu(int64_t count, const float *x, float *y, Stream stream);
void reluGrad(int64_t count, const float *y, const float *dy, float *dx,
              Stream stream);
void add(int64_t count, const float *a, const float *b, float *y,
         Stream stream);
void scale(int64_t count, const float *x, float factor, float *y,
           Stream stream);

/// One launch for every tensor. `tensors` and `chunks` are in device memory
/// (built once, e.g. with sgdChunks, when the program is prepared); only
/// `hyper` changes from step to step.
void sgdMomentum(const SgdTensor *tensors, const SgdChunk *chunks,
                 int64_t numChunks, const SgdHyper &hyper, Stream stream);

} // namespace netc::cuda::device

#endif // NETC_RUNTIME_CUDA_LAUNCH_H
