//===- Kernels.cu - the cuda backend's own kernels on the GPU -------------===//
//
// Global kernels that run the functors of Kernels.h: one generic grid-stride
// loop for the elementwise and gather kernels, and the fixed-shape two-level
// reduction for the losses. Compiled with -fmad=false (see Kernels.h).
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/Launch.h"

#include <cuda_runtime.h>

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
    throw kernels::KernelError(
        std::string(kernel) + ": CUDA launch failed: " + cudaGetErrorString(e));
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

void maxPoolForward(const kernels::PoolShape &s, const float *x, float *y,
                    int32_t *switches, Stream stream) {
  launch("max_pool", makeMaxPoolForward(s, x, y, switches), stream);
}

void maxPoolBackward(const kernels::PoolShape &s, const float *dy,
                     const int32_t *switches, float *dx, Stream stream) {
  launch("max_pool backward", makeMaxPoolBackward(s, dy, switches, dx), stream);
}

void unpoolForward(const kernels::UnpoolShape &s, const float *x,
                   const int32_t *switches, float *y, Stream stream) {
  launch("unpool", makeUnpoolForward(s, x, switches, y), stream);
}

void unpoolBackward(const kernels::UnpoolShape &s, const float *dy,
                    const int32_t *switches, float *dx, Stream stream) {
  launch("unpool backward", makeUnpoolBackward(s, dy, switches, dx), stream);
}

void euclideanLossForward(int64_t batch, int64_t count, const float *a,
                          const float *b, double *partials, float *loss,
                          Stream stream) {
  checkLossBatch("euclidean_loss", batch);
  reduce("euclidean_loss", EuclideanLossTerms<float>{batch, count, a, b},
         partials, loss, stream);
}

void euclideanLossBackward(int64_t batch, int64_t count, const float *a,
                           const float *b, float dloss, float *da, float *db,
                           Stream stream) {
  checkLossBatch("euclidean_loss backward", batch);
  launch("euclidean_loss backward",
         EuclideanLossBackward<float>{count, a, b,
                                      double(dloss) / double(batch), da, db},
         stream);
}

void softmaxCrossEntropyForward(int64_t n, int64_t k, const float *logits,
                                const int32_t *labels, double *partials,
                                float *loss, Stream stream) {
  if (n <= 0 || k <= 0)
    badShape("softmax_cross_entropy", n, k);
  reduce("softmax_cross_entropy",
         SoftmaxCrossEntropyTerms<float>{n, k, logits, labels}, partials, loss,
         stream);
}

void softmaxCrossEntropyBackward(int64_t n, int64_t k, const float *logits,
                                 const int32_t *labels, float dloss,
                                 double *rowLse, float *dlogits,
                                 Stream stream) {
  if (n <= 0 || k <= 0)
    badShape("softmax_cross_entropy backward", n, k);
  launch("softmax_cross_entropy backward",
         SoftmaxRowLse<float>{n, k, logits, labels, rowLse}, stream);
  launch("softmax_cross_entropy backward",
         SoftmaxCrossEntropyBackward<float>{n, k, logits, labels, rowLse,
                                            double(dloss) / double(n), dlogits},
         stream);
}

void objective(const ObjectiveTerm *terms, int64_t count, float *total,
               Stream stream) {
  launch("objective", Objective{terms, count, total}, stream);
}

void dropout(int64_t count, double ratio, uint64_t seed, uint64_t step,
             uint64_t first, const float *x, float *y, Stream stream) {
  float scale = dropoutScale(ratio);
  launch("dropout",
         Dropout<float>{count, dropoutKey(seed, step), first, ratio, scale, x,
                        y},
         stream);
}

void relu(int64_t count, const float *x, float *y, Stream stream) {
  launch("relu", Relu<float>{count, x, y}, stream);
}

void reluGrad(int64_t count, const float *y, const float *dy, float *dx,
              Stream stream) {
  launch("relu_grad", ReluGrad<float>{count, y, dy, dx}, stream);
}

void add(int64_t count, const float *a, const float *b, float *y,
         Stream stream) {
  launch("add", Add<float>{count, a, b, y}, stream);
}

void scale(int64_t count, const float *x, float factor, float *y,
           Stream stream) {
  launch("scale", Scale<float>{count, x, factor, y}, stream);
}

void sgdMomentum(const SgdTensor *tensors, const SgdChunk *chunks,
                 int64_t numChunks, const SgdHyper &hyper, Stream stream) {
  launch("sgd_update", SgdMomentum{tensors, chunks, numChunks, hyper}, stream);
}

} // namespace netc::cuda::device
