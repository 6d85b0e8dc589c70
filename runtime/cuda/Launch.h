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

// Templates on the storage type T, defined (explicitly instantiated) in
// Kernels.cu for float and Bf16 only. `lanes` is the map's (and its
// switches') channel block as in the host launchers: 1 NCHW, C NHWC; the
// overloads without it are the NCHW shorthand.

template <typename T>
void maxPoolForward(const kernels::PoolShape &s, const T *x, T *y,
                    Switch *switches, int64_t lanes, Stream stream);
template <typename T>
void maxPoolBackward(const kernels::PoolShape &s, const T *dy,
                     const Switch *switches, T *dx, int64_t lanes,
                     Stream stream);
/// `s` is the forward's shape for both.
template <typename T>
void avgPoolForward(const kernels::PoolShape &s, const T *x, T *y,
                    int64_t lanes, Stream stream);
template <typename T>
void avgPoolBackward(const kernels::PoolShape &s, const T *dy, T *dx,
                     int64_t lanes, Stream stream);
template <typename T>
void unpoolForward(const kernels::UnpoolShape &s, const T *x,
                   const Switch *switches, T *y, int64_t lanes, Stream stream);
template <typename T>
void unpoolBackward(const kernels::UnpoolShape &s, const T *dy,
                    const Switch *switches, T *dx, int64_t lanes,
                    Stream stream);

template <typename T>
void maxPoolForward(const kernels::PoolShape &s, const T *x, T *y,
                    Switch *switches, Stream stream) {
  maxPoolForward<T>(s, x, y, switches, 1, stream);
}
template <typename T>
void maxPoolBackward(const kernels::PoolShape &s, const T *dy,
                     const Switch *switches, T *dx, Stream stream) {
  maxPoolBackward<T>(s, dy, switches, dx, 1, stream);
}
template <typename T>
void unpoolForward(const kernels::UnpoolShape &s, const T *x,
                   const Switch *switches, T *y, Stream stream) {
  unpoolForward<T>(s, x, switches, y, 1, stream);
}
template <typename T>
void unpoolBackward(const kernels::UnpoolShape &s, const T *dy,
                    const Switch *switches, T *dx, Stream stream) {
  unpoolBackward<T>(s, dy, switches, dx, 1, stream);
}

/// Writes the loss to `*loss` (device memory, f32); `partials` is
/// kReduceWorkspaceBytes of device workspace.
template <typename T>
void euclideanLossForward(int64_t batch, int64_t count, const T *a, const T *b,
                          double *partials, float *loss, Stream stream);
/// `da` and `db` may be null.
template <typename T>
void euclideanLossBackward(int64_t batch, int64_t count, const T *a, const T *b,
                           float dloss, NoDeduce<T> *da, NoDeduce<T> *db,
                           Stream stream);
/// `scratch` is softmaxLossScratchBytes(n, k) of device workspace.
template <typename T>
void softmaxCrossEntropyForward(int64_t n, int64_t k, const T *logits,
                                const int32_t *labels, double *scratch,
                                float *loss, Stream stream);
/// `scratch` is softmaxLseScratchBytes(n, k) of device workspace.
template <typename T>
void softmaxCrossEntropyBackward(int64_t n, int64_t k, const T *logits,
                                 const int32_t *labels, float dloss,
                                 double *scratch, T *dlogits, Stream stream);

/// `*total` = the weighted sum of the terms; `terms` is a device array
/// (built once when the program is prepared: the loss scalars do not move).
void objective(const ObjectiveTerm *terms, int64_t count, float *total,
               Stream stream);

/// `step` points to the step number in device memory (StepParams::step),
/// read when the kernel runs; the map is planes of `plane` elements stored
/// with `lanes`, and the mask is drawn at the elements' NCHW indices.
template <typename T>
void dropout(int64_t count, double ratio, uint64_t seed, const uint64_t *step,
             uint64_t first, int64_t plane, int64_t lanes, const T *x, T *y,
             Stream stream);
template <typename T> void relu(int64_t count, const T *x, T *y, Stream stream);
/// Whether the elementwise and pooling kernels go in 16-byte packs
/// (NETC_CUDA_PACKS=off: one element per item, the comparison the GPU
/// check measures packs against).
bool elementPacks();
template <typename T>
void reluGrad(int64_t count, const T *y, const T *dy, T *dx, Stream stream);
template <typename T>
void add(int64_t count, const T *a, const T *b, T *y, Stream stream);
template <typename T>
void scale(int64_t count, const T *x, float factor, T *y, Stream stream);

/// y = x + bias[c] (f32 bias), then with `relu` max(., 0), over a map of
/// dims `d` stored with `lanes`; y may be x.
template <typename T>
void biasAdd(const kernels::Dims4 &d, int64_t lanes, const T *x,
             const float *bias, T *y, bool relu, Stream stream);
/// db[c] (f32) = sum of dy over n, h, w; `partials` is
/// biasGradScratchBytes(d) of device workspace (Kernels.h). Three launches
/// of fixed shape (BiasGradShape): bit-identical to host::biasGrad.
template <typename T>
void biasGrad(const kernels::Dims4 &d, int64_t lanes, const T *dy,
              double *partials, float *db, Stream stream);
/// relu_grad of an NHWC map (rowsOfPacks) that also sums dx's
/// bias-gradient partials into `partials` (ReluGradBiasPartials), and the
/// bias gradient's last two stages alone, from those partials (at the start
/// of biasGradScratchBytes(d), whose rest they use): together the bits of
/// reluGrad then biasGrad.
template <typename T>
void reluGradBiasPartials(const kernels::Dims4 &d, const T *y, const T *dy,
                          T *dx, double *partials, Stream stream);
void biasGradFinal(const kernels::Dims4 &d, double *partials, float *db,
                   Stream stream);
/// relu_grad of a max-pool's input map whose dy is the pool's backward
/// (makePoolReluGradBiasPartials: tiledPool(s), NHWC whole packs), summing
/// the bias gradient's partials unless `partials` is null.
template <typename T>
void poolReluGradBiasPartials(const kernels::PoolShape &s, const T *dyPooled,
                              const Switch *switches, const T *y, T *dx,
                              double *partials, Stream stream);

/// Elementwise f32 -> bf16 (rounded) and bf16 -> f32 (exact).
void convert(int64_t count, const float *src, Bf16 *dst, Stream stream);
void convert(int64_t count, const Bf16 *src, float *dst, Stream stream);
/// An f32 NCHW map in host order (e.g. an uploaded image batch, already in
/// device memory) -> T storage with `lanes`, and back.
template <typename T>
void toStorage(const kernels::Dims4 &d, int64_t lanes, const float *src, T *dst,
               Stream stream);
template <typename T>
void fromStorage(const kernels::Dims4 &d, int64_t lanes, const T *src,
                 float *dst, Stream stream);

/// A map of dims `d` and `elementBytes`-byte elements (1: switches; 2:
/// bf16; 4: f32, i32) copied bit for bit from layout `fromLanes` to `toLanes`;
/// src and dst must not overlap.
void relayout(const kernels::Dims4 &d, int64_t fromLanes, int64_t toLanes,
              int64_t elementBytes, const void *src, void *dst, Stream stream);
/// host::resizeRows, padFilter and unpadFilterGrad on the device (a
/// convolution on channel-padded copies, Kernels.h).
void resizeRows(int64_t rows, int64_t from, int64_t to, int64_t elementBytes,
                const void *src, void *dst, Stream stream);
template <typename T>
void padFilter(const kernels::Dims4 &w, int64_t kp, int64_t cp,
               const float *src, T *dst, Stream stream);
template <typename T>
void unpadFilterGrad(const kernels::Dims4 &w, int64_t cp, const T *src,
                     float *dst, Stream stream);

/// Cross-channel LRN over a map of dims `d` stored with `lanes` (1 NCHW,
/// C NHWC: the bf16 maps, which cuDNN's NCHW-only LRN cannot take), and its
/// gradient in ref::lrnBackward's operand order (x, y, dy; the plan's
/// lrn_grad lists them dy, x, y). One launch each, one item per element, no
/// workspace; the window is checked first (KernelError). y must not alias
/// x, nor dx any input.
template <typename T>
void lrnForward(const kernels::Dims4 &d, int64_t lanes,
                const kernels::LrnParams &p, const T *x, T *y, Stream stream);
template <typename T>
void lrnBackward(const kernels::Dims4 &d, int64_t lanes,
                 const kernels::LrnParams &p, const T *x, const T *y,
                 const T *dy, T *dx, Stream stream);

/// Batch norm over a map of dims `d` stored with `lanes` (1 NCHW, C NHWC:
/// the bf16 maps, so that a bf16 plan does not depend on cuDNN's batch norm
/// taking them): the host launchers' operand order, then `partials`, then
/// the stream. x, y, dy, dx are T; scale, shift, the running statistics and
/// dscale, dshift are f32 [C]. `partials` is batchNormScratchBytes(d) of
/// device workspace (Kernels.h). The training forward is five launches (sum
/// x, mean, sum of squared deviations, invStd and the running statistics,
/// y), the backward six or seven (the batch statistics again, rounded to f32
/// as the reference backend recomputes them, the sums of dy and dy * xhat
/// with dscale and dshift, then dx unless null; dscale, dshift may be null
/// too): the passes of batchNorm*Passes, of fixed shape, bit-identical to
/// host::batchNorm*. The inference forward is one launch, no workspace. The
/// batch and the lanes are checked first (KernelError). y may alias x, dx
/// x or dy.
template <typename T>
void batchNormForwardTraining(const kernels::Dims4 &d, int64_t lanes,
                              double eps, double momentum, const T *x,
                              const float *scale, const float *shift,
                              float *runMean, float *runVar, T *y,
                              double *partials, Stream stream);
template <typename T>
void batchNormForwardInference(const kernels::Dims4 &d, int64_t lanes,
                               double eps, const T *x, const float *scale,
                               const float *shift, const float *runMean,
                               const float *runVar, T *y, Stream stream);
template <typename T>
void batchNormBackward(const kernels::Dims4 &d, int64_t lanes, double eps,
                       const T *x, const float *scale, const T *dy,
                       NoDeduce<T> *dx, float *dscale, float *dshift,
                       double *partials, Stream stream);

/// One launch for every tensor. `tensors` and `chunks` are in device memory
/// (built once, e.g. with sgdChunks, when the program is prepared), and so
/// is `hyper` (StepParams::hyper), the one thing that changes from step to
/// step, read when the kernel runs.
void sgdMomentum(const SgdTensor *tensors, const SgdChunk *chunks,
                 int64_t numChunks, const SgdHyper *hyper, Stream stream);

} // namespace netc::cuda::device

#endif // NETC_RUNTIME_CUDA_LAUNCH_H
