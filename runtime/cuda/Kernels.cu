//===- Kernels.cu - the cuda backend's own kernels on the GPU -------------===//
//
// Global kernels that run the functors of Kernels.h: one generic grid-stride
// loop for the elementwise and gather kernels (and the stages of the bias
// gradient's and batch norm's sums, whose shapes BiasGradShape and
// RowChunks fix), and
// the fixed-shape two-level reduction for the losses. The launchers are
// templates on the storage type, instantiated at the end for float and
// Bf16. Compiled with -fmad=false (see Kernels.h).
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/Launch.h"

#include <cuda_runtime.h>

#include <cstdlib>
#include <string>

namespace netc::cuda::device {

namespace {

/// Grid-stride loop over the functor's items.
template <typename F> __global__ void forEachItem(F f, int64_t count) {
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride)
    f(i);
}

/// Reduction, stage 1: block b's sum of its threads' strided sums, in the
/// order reduceOnHost uses.
template <typename F>
__global__ void __launch_bounds__(kReduceThreads)
    reducePartials(F f, int64_t count, double *partials) {
  __shared__ double s[kReduceThreads];
  const int64_t stride = int64_t(kReduceBlocks) * kReduceThreads;
  double acc = 0.0;
  // Unrolled so that the loads of four items are in flight at once; the
  // additions stay in item order.
#pragma unroll 4
  for (int64_t i = int64_t(blockIdx.x) * kReduceThreads + threadIdx.x;
       i < count; i += stride)
    acc += f(i);
  s[threadIdx.x] = acc;
  __syncthreads();
  for (int h = kReduceThreads / 2; h > 0; h /= 2) {
    if (int(threadIdx.x) < h)
      s[threadIdx.x] += s[threadIdx.x + h];
    __syncthreads();
  }
  if (threadIdx.x == 0)
    partials[blockIdx.x] = s[0];
}

/// Reduction, stage 2: one block sums the partials with the same tree.
__global__ void __launch_bounds__(kReduceBlocks)
    reduceFinal(const double *partials, double divisor, float *out) {
  __shared__ double s[kReduceBlocks];
  s[threadIdx.x] = partials[threadIdx.x];
  __syncthreads();
  for (int h = kReduceBlocks / 2; h > 0; h /= 2) {
    if (int(threadIdx.x) < h)
      s[threadIdx.x] += s[threadIdx.x + h];
    __syncthreads();
  }
  if (threadIdx.x == 0)
    *out = float(s[0] / divisor);
}

// (No fmt here: nvcc need not parse it.)
[[noreturn]] void badShape(const char *kernel, int64_t n, int64_t k) {
  throw kernels::KernelError(std::string(kernel) + ": bad shape [" +
                             std::to_string(n) + ", " + std::to_string(k) +
                             "]");
}

void check(const char *kernel) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    throw kernels::KernelError(std::string(kernel) +
                               ": CUDA launch failed (or an earlier kernel's "
                               "fault surfaced here): " +
                               cudaGetErrorString(e));
}

/// Enough blocks for one item per thread, capped: the grid-stride loop
/// covers the rest, and a smaller grid keeps per-block setup low.
unsigned blocksFor(int64_t items) {
  const int64_t cap = int64_t(1) << 16;
  int64_t blocks = (items + kBlockThreads - 1) / kBlockThreads;
  return unsigned(blocks < 1 ? 1 : blocks > cap ? cap : blocks);
}

template <typename F> void launch(const char *kernel, const F &f, Stream s) {
  int64_t n = f.items();
  if (n <= 0)
    return;
  forEachItem<<<blocksFor(n), kBlockThreads, 0, s>>>(f, n);
  check(kernel);
}

/// launch() for few, long items (ReluGradBiasPartials, BiasGradPackPartials: a
/// thread per pack of channels and chunk of rows, 25k-100k on VGG-16's maps):
/// blocks of one warp, so that the grid spreads over every SM, where blocks of
/// kBlockThreads would be 98 for 132 SMs on an H200 at 25k.
template <typename F>
void launchSpread(const char *kernel, const F &f, Stream s) {
  constexpr int kThreads = 32;
  int64_t n = f.items();
  if (n <= 0)
    return;
  int64_t blocks = (n + kThreads - 1) / kThreads;
  const int64_t cap = int64_t(1) << 20;
  forEachItem<<<unsigned(blocks > cap ? cap : blocks), kThreads, 0, s>>>(f, n);
  check(kernel);
}

template <typename F>
void reduce(const char *kernel, const F &f, double *partials, float *out,
            Stream s) {
  reducePartials<<<kReduceBlocks, kReduceThreads, 0, s>>>(f, f.items(),
                                                          partials);
  check(kernel);
  reduceFinal<<<1, kReduceBlocks, 0, s>>>(partials, f.divisor(), out);
  check(kernel);
}

} // namespace

/// Whether the elementwise kernels go in packs (Elementwise), and the
/// max-pool, the unpool and their backwards in channel packs:
/// NETC_CUDA_PACKS=off walks them one element per item, the comparison
/// bench/gpu-check.sh measures packs against.
bool elementPacks() {
  static const bool on = [] {
    const char *v = std::getenv("NETC_CUDA_PACKS");
    return !(v && std::string(v) == "off");
  }();
  return on;
}

template <typename T>
void maxPoolForward(const kernels::PoolShape &s, const T *x, T *y,
                    Switch *switches, int64_t lanes, Stream stream) {
  checkLanes("max_pool", s.in.c, lanes);
  if (switches)
    kernels::checkSwitchWindow("max_pool", s.win);
  launch("max_pool",
         makeMaxPoolForward(s, x, y, switches, lanes, elementPacks()), stream);
}

template <typename T>
void maxPoolBackward(const kernels::PoolShape &s, const T *dy,
                     const Switch *switches, T *dx, int64_t lanes,
                     Stream stream) {
  checkLanes("max_pool backward", s.in.c, lanes);
  if (switches)
    kernels::checkSwitchWindow("max_pool backward", s.win);
  launch("max_pool backward",
         makeMaxPoolBackward(s, dy, switches, dx, lanes, elementPacks()),
         stream);
}

template <typename T>
void avgPoolForward(const kernels::PoolShape &s, const T *x, T *y,
                    int64_t lanes, Stream stream) {
  checkLanes("avg_pool", s.in.c, lanes);
  launch("avg_pool", makeAvgPoolForward(s, x, y, lanes), stream);
}

template <typename T>
void avgPoolBackward(const kernels::PoolShape &s, const T *dy, T *dx,
                     int64_t lanes, Stream stream) {
  checkLanes("avg_pool backward", s.in.c, lanes);
  launch("avg_pool backward", makeAvgPoolBackward(s, dy, dx, lanes), stream);
}

template <typename T>
void unpoolForward(const kernels::UnpoolShape &s, const T *x,
                   const Switch *switches, T *y, int64_t lanes, Stream stream) {
  checkLanes("unpool", s.in.c, lanes);
  if (switches)
    kernels::checkSwitchWindow("unpool", s.win);
  launch("unpool", makeUnpoolForward(s, x, switches, y, lanes, elementPacks()),
         stream);
}

template <typename T>
void unpoolBackward(const kernels::UnpoolShape &s, const T *dy,
                    const Switch *switches, T *dx, int64_t lanes,
                    Stream stream) {
  checkLanes("unpool backward", s.in.c, lanes);
  if (switches)
    kernels::checkSwitchWindow("unpool backward", s.win);
  launch("unpool backward",
         makeUnpoolBackward(s, dy, switches, dx, lanes, elementPacks()),
         stream);
}

template <typename T>
void euclideanLossForward(int64_t batch, int64_t count, const T *a, const T *b,
                          double *partials, float *loss, Stream stream) {
  checkLossBatch("euclidean_loss", batch);
  reduce("euclidean_loss", EuclideanLossTerms<T>{batch, count, a, b}, partials,
         loss, stream);
}

template <typename T>
void euclideanLossBackward(int64_t batch, int64_t count, const T *a, const T *b,
                           float dloss, NoDeduce<T> *da, NoDeduce<T> *db,
                           Stream stream) {
  checkLossBatch("euclidean_loss backward", batch);
  launch("euclidean_loss backward",
         makeEuclideanLossBackward<T>(batch, count, a, b, dloss, da, db,
                                      elementPacks()),
         stream);
}

template <typename T>
void softmaxCrossEntropyForward(int64_t n, int64_t k, const T *logits,
                                const int32_t *labels, double *scratch,
                                float *loss, Stream stream) {
  if (n <= 0 || k <= 0)
    badShape("softmax_cross_entropy", n, k);
  const double *lse = softmaxRowLse(
      n, k, logits, labels, scratch + kReduceBlocks,
      [&](const auto &f) { launch("softmax_cross_entropy", f, stream); });
  reduce("softmax_cross_entropy",
         SoftmaxCrossEntropyTerms<T>{n, k, logits, labels, lse}, scratch, loss,
         stream);
}

template <typename T>
void softmaxCrossEntropyBackward(int64_t n, int64_t k, const T *logits,
                                 const int32_t *labels, float dloss,
                                 double *scratch, T *dlogits, Stream stream) {
  if (n <= 0 || k <= 0)
    badShape("softmax_cross_entropy backward", n, k);
  const double *lse =
      softmaxRowLse(n, k, logits, labels, scratch, [&](const auto &f) {
        launch("softmax_cross_entropy backward", f, stream);
      });
  launch("softmax_cross_entropy backward",
         SoftmaxCrossEntropyBackward<T>{n, FastDiv(k), logits, labels, lse,
                                        double(dloss) / double(n), dlogits},
         stream);
}

void objective(const ObjectiveTerm *terms, int64_t count, float *total,
               Stream stream) {
  launch("objective", Objective{terms, count, total}, stream);
}

template <typename T>
void dropout(int64_t count, double ratio, uint64_t seed, const uint64_t *step,
             uint64_t first, int64_t plane, int64_t lanes, const T *x, T *y,
             Stream stream) {
  float scale = dropoutScale(ratio);
  checkDropoutLayout(count, plane, lanes);
  launch("dropout",
         makeDropout(count, ratio, scale, seed, step, first, plane, lanes, x, y,
                     elementPacks()),
         stream);
}

template <typename T>
void relu(int64_t count, const T *x, T *y, Stream stream) {
  launch("relu", makeRelu(count, x, y, elementPacks()), stream);
}

template <typename T>
void reluGrad(int64_t count, const T *y, const T *dy, T *dx, Stream stream) {
  launch("relu_grad", makeReluGrad(count, y, dy, dx, elementPacks()), stream);
}

template <typename T>
void add(int64_t count, const T *a, const T *b, T *y, Stream stream) {
  launch("add", makeAdd(count, a, b, y, elementPacks()), stream);
}

template <typename T>
void scale(int64_t count, const T *x, float factor, T *y, Stream stream) {
  launch("scale", makeScale(count, x, factor, y, elementPacks()), stream);
}

template <typename T>
void biasAdd(const kernels::Dims4 &d, int64_t lanes, const T *x,
             const float *bias, T *y, bool relu, Stream stream) {
  checkLanes("bias_add", d.c, lanes);
  launch("bias_add", makeBiasAdd(d, lanes, x, bias, y, relu, elementPacks()),
         stream);
}

template <typename T>
void biasGrad(const kernels::Dims4 &d, int64_t lanes, const T *dy,
              double *partials, float *db, Stream stream) {
  checkLanes("bias_grad", d.c, lanes);
  BiasGradShape s = biasGradShape(d);
  // On rows of packs a pack a thread (fewer, longer items: blocks of a
  // warp, as for the fused relu_grad), else an element a thread; the same
  // sums either way.
  if (elementPacks() && rowsOfPacks<T>(d, lanes, {dy}))
    launchSpread("bias_grad", makeBiasGradPackPartials(d, dy, partials),
                 stream);
  else
    launch("bias_grad", BiasGradPartials<T>{mapGeom(d, lanes), s, dy, partials},
           stream);
  biasGradTail(d.c, s, partials, db,
               [&](const auto &f) { launch("bias_grad", f, stream); });
}

template <typename T>
void reluGradBiasPartials(const kernels::Dims4 &d, const T *y, const T *dy,
                          T *dx, double *partials, Stream stream) {
  checkReluGradBias<T>(d, /*lanes=*/d.c, {y, dy, dx});
  launchSpread("relu_grad", makeReluGradBiasPartials(d, y, dy, dx, partials),
               stream);
}

template <typename T>
void poolReluGradBiasPartials(const kernels::PoolShape &s, const T *dyPooled,
                              const Switch *switches, const T *y, T *dx,
                              double *partials, Stream stream) {
  checkPoolReluGradBias<T>(s, {dyPooled, switches, y, dx});
  launchSpread(
      "relu_grad",
      makePoolReluGradBiasPartials(s, dyPooled, switches, y, dx, partials),
      stream);
}

void biasGradFinal(const kernels::Dims4 &d, double *partials, float *db,
                   Stream stream) {
  biasGradTail(d.c, biasGradShape(d), partials, db,
               [&](const auto &f) { launch("bias_grad", f, stream); });
}

void convert(int64_t count, const float *src, Bf16 *dst, Stream stream) {
  launch("convert", Convert<float, Bf16>{count, src, dst}, stream);
}

void convert(int64_t count, const Bf16 *src, float *dst, Stream stream) {
  launch("convert", Convert<Bf16, float>{count, src, dst}, stream);
}

template <typename T>
void toStorage(const kernels::Dims4 &d, int64_t lanes, const float *src, T *dst,
               Stream stream) {
  checkLanes("to_storage", d.c, lanes);
  launch("to_storage", ToStorage<T>{mapGeom(d, lanes), src, dst}, stream);
}

template <typename T>
void fromStorage(const kernels::Dims4 &d, int64_t lanes, const T *src,
                 float *dst, Stream stream) {
  checkLanes("from_storage", d.c, lanes);
  launch("from_storage", FromStorage<T>{mapGeom(d, lanes), src, dst}, stream);
}

void relayout(const kernels::Dims4 &d, int64_t fromLanes, int64_t toLanes,
              int64_t elementBytes, const void *src, void *dst, Stream stream) {
  checkLanes("relayout", d.c, fromLanes);
  checkLanes("relayout", d.c, toLanes);
  if (elementBytes == 1) // switches
    return launch("relayout",
                  Relayout<uint8_t>{mapGeom(d, fromLanes), FastDiv(toLanes),
                                    static_cast<const uint8_t *>(src),
                                    static_cast<uint8_t *>(dst)},
                  stream);
  checkElementBytes("relayout", elementBytes);
  if (elementBytes == 2)
    launch("relayout",
           Relayout<uint16_t>{mapGeom(d, fromLanes), FastDiv(toLanes),
                              static_cast<const uint16_t *>(src),
                              static_cast<uint16_t *>(dst)},
           stream);
  else
    launch("relayout",
           Relayout<uint32_t>{mapGeom(d, fromLanes), FastDiv(toLanes),
                              static_cast<const uint32_t *>(src),
                              static_cast<uint32_t *>(dst)},
           stream);
}

void resizeRows(int64_t rows, int64_t from, int64_t to, int64_t elementBytes,
                const void *src, void *dst, Stream stream) {
  checkElementBytes("resize_rows", elementBytes);
  if (elementBytes == 2)
    launch("resize_rows",
           ResizeRows<uint16_t>{rows, from, FastDiv(to),
                                static_cast<const uint16_t *>(src),
                                static_cast<uint16_t *>(dst)},
           stream);
  else
    launch("resize_rows",
           ResizeRows<uint32_t>{rows, from, FastDiv(to),
                                static_cast<const uint32_t *>(src),
                                static_cast<uint32_t *>(dst)},
           stream);
}

template <typename T>
void padFilter(const kernels::Dims4 &w, int64_t kp, int64_t cp,
               const float *src, T *dst, Stream stream) {
  launch("pad_filter", makePadFilter(w, kp, cp, src, dst), stream);
}

template <typename T>
void unpadFilterGrad(const kernels::Dims4 &w, int64_t cp, const T *src,
                     float *dst, Stream stream) {
  launch("unpad_filter_grad", makeUnpadFilterGrad(w, cp, src, dst), stream);
}

template <typename T>
void lrnForward(const kernels::Dims4 &d, int64_t lanes,
                const kernels::LrnParams &p, const T *x, T *y, Stream stream) {
  checkLrn("lrn", p);
  checkLanes("lrn", d.c, lanes);
  launch("lrn", makeLrnForward(d, lanes, p, x, y), stream);
}

template <typename T>
void lrnBackward(const kernels::Dims4 &d, int64_t lanes,
                 const kernels::LrnParams &p, const T *x, const T *y,
                 const T *dy, T *dx, Stream stream) {
  checkLrn("lrn backward", p);
  checkLanes("lrn backward", d.c, lanes);
  launch("lrn backward", makeLrnBackward(d, lanes, p, x, y, dy, dx), stream);
}

namespace {
/// Launches a pass of batchNorm*Passes.
struct DeviceRun {
  const char *kernel;
  Stream stream;
  template <typename F> void operator()(const F &f) const {
    launch(kernel, f, stream);
  }
};
} // namespace

template <typename T>
void batchNormForwardTraining(const kernels::Dims4 &d, int64_t lanes,
                              double eps, double momentum, const T *x,
                              const float *scale, const float *shift,
                              float *runMean, float *runVar, T *y,
                              double *partials, Stream stream) {
  checkBatchNorm("batch_norm", d);
  checkLanes("batch_norm", d.c, lanes);
  batchNormTrainingPasses(d, lanes, eps, momentum, x, scale, shift, runMean,
                          runVar, y, partials, DeviceRun{"batch_norm", stream});
}

template <typename T>
void batchNormForwardInference(const kernels::Dims4 &d, int64_t lanes,
                               double eps, const T *x, const float *scale,
                               const float *shift, const float *runMean,
                               const float *runVar, T *y, Stream stream) {
  checkLanes("batch_norm", d.c, lanes);
  launch("batch_norm",
         BatchNormInference<T>{mapGeom(d, lanes), eps, x, scale, shift, runMean,
                               runVar, y},
         stream);
}

template <typename T>
void batchNormBackward(const kernels::Dims4 &d, int64_t lanes, double eps,
                       const T *x, const float *scale, const T *dy,
                       NoDeduce<T> *dx, float *dscale, float *dshift,
                       double *partials, Stream stream) {
  checkBatchNorm("batch_norm_grad", d);
  checkLanes("batch_norm_grad", d.c, lanes);
  batchNormBackwardPasses(d, lanes, eps, x, scale, dy, dx, dscale, dshift,
                          partials, DeviceRun{"batch_norm_grad", stream});
}

void sgdMomentum(const SgdTensor *tensors, const SgdChunk *chunks,
                 int64_t numChunks, const SgdHyper *hyper, Stream stream) {
  launch("sgd_update", SgdMomentum{tensors, chunks, numChunks, hyper}, stream);
}

// The storage types the launchers exist for (Launch.h).
#define NETC_DEVICE_LAUNCHERS(T)                                               \
  template void maxPoolForward<T>(const kernels::PoolShape &, const T *, T *,  \
                                  Switch *, int64_t, Stream);                  \
  template void maxPoolBackward<T>(const kernels::PoolShape &, const T *,      \
                                   const Switch *, T *, int64_t, Stream);      \
  template void avgPoolForward<T>(const kernels::PoolShape &, const T *, T *,  \
                                  int64_t, Stream);                            \
  template void avgPoolBackward<T>(const kernels::PoolShape &, const T *, T *, \
                                   int64_t, Stream);                           \
  template void unpoolForward<T>(const kernels::UnpoolShape &, const T *,      \
                                 const Switch *, T *, int64_t, Stream);        \
  template void unpoolBackward<T>(const kernels::UnpoolShape &, const T *,     \
                                  const Switch *, T *, int64_t, Stream);       \
  template void euclideanLossForward<T>(int64_t, int64_t, const T *,           \
                                        const T *, double *, float *, Stream); \
  template void euclideanLossBackward<T>(int64_t, int64_t, const T *,          \
                                         const T *, float, T *, T *, Stream);  \
  template void softmaxCrossEntropyForward<T>(int64_t, int64_t, const T *,     \
                                              const int32_t *, double *,       \
                                              float *, Stream);                \
  template void softmaxCrossEntropyBackward<T>(int64_t, int64_t, const T *,    \
                                               const int32_t *, float,         \
                                               double *, T *, Stream);         \
  template void dropout<T>(int64_t, double, uint64_t, const uint64_t *,        \
                           uint64_t, int64_t, int64_t, const T *, T *,         \
                           Stream);                                            \
  template void relu<T>(int64_t, const T *, T *, Stream);                      \
  template void reluGrad<T>(int64_t, const T *, const T *, T *, Stream);       \
  template void add<T>(int64_t, const T *, const T *, T *, Stream);            \
  template void scale<T>(int64_t, const T *, float, T *, Stream);              \
  template void biasAdd<T>(const kernels::Dims4 &, int64_t, const T *,         \
                           const float *, T *, bool, Stream);                  \
  template void biasGrad<T>(const kernels::Dims4 &, int64_t, const T *,        \
                            double *, float *, Stream);                        \
  template void reluGradBiasPartials<T>(const kernels::Dims4 &, const T *,     \
                                        const T *, T *, double *, Stream);     \
  template void poolReluGradBiasPartials<T>(const kernels::PoolShape &,        \
                                            const T *, const Switch *,         \
                                            const T *, T *, double *, Stream); \
  template void padFilter<T>(const kernels::Dims4 &, int64_t, int64_t,         \
                             const float *, T *, Stream);                      \
  template void unpadFilterGrad<T>(const kernels::Dims4 &, int64_t, const T *, \
                                   float *, Stream);                           \
  template void toStorage<T>(const kernels::Dims4 &, int64_t, const float *,   \
                             T *, Stream);                                     \
  template void fromStorage<T>(const kernels::Dims4 &, int64_t, const T *,     \
                               float *, Stream);                               \
  template void lrnForward<T>(const kernels::Dims4 &, int64_t,                 \
                              const kernels::LrnParams &, const T *, T *,      \
                              Stream);                                         \
  template void lrnBackward<T>(const kernels::Dims4 &, int64_t,                \
                               const kernels::LrnParams &, const T *,          \
                               const T *, const T *, T *, Stream);             \
  template void batchNormForwardTraining<T>(                                   \
      const kernels::Dims4 &, int64_t, double, double, const T *,              \
      const float *, const float *, float *, float *, T *, double *, Stream);  \
  template void batchNormForwardInference<T>(                                  \
      const kernels::Dims4 &, int64_t, double, const T *, const float *,       \
      const float *, const float *, const float *, T *, Stream);               \
  template void batchNormBackward<T>(const kernels::Dims4 &, int64_t, double,  \
                                     const T *, const float *, const T *, T *, \
                                     float *, float *, double *, Stream);

NETC_DEVICE_LAUNCHERS(float)
NETC_DEVICE_LAUNCHERS(Bf16)
#undef NETC_DEVICE_LAUNCHERS

} // namespace netc::cuda::device
