//===- HostKernels.cpp - the cuda kernels walked on the CPU ---------------===//
//
// The host launchers of Kernels.h: the same functors the GPU runs, walked
// item by item. Built in every configuration (no nvcc), so CI tests the
// kernels' per-element code against the reference backend.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/Kernels.h"

#include <fmt/format.h>

namespace netc::cuda {

void checkLossBatch(const char *kernel, int64_t batch) {
  if (batch <= 0)
    throw kernels::KernelError(
        fmt::format("{}: batch {} must be positive", kernel, batch));
}

float dropoutScale(double ratio) {
  if (!(ratio >= 0.0 && ratio < 1.0))
    throw kernels::KernelError(
        fmt::format("dropout: ratio {} must be in [0, 1)", ratio));
  return float(1.0 / (1.0 - ratio));
}

void checkSwitches(const kernels::UnpoolShape &s, const int32_t *switches) {
  UnpoolGeom u = unpoolGeom(s);
  const PoolGeom &g = u.pool;
  for (int64_t nc = 0; nc < g.nc; ++nc)
    for (int64_t i = 0; i < g.outH; ++i)
      for (int64_t j = 0; j < g.outW; ++j) {
        int64_t sw = switches[(nc * g.outH + i) * g.outW + j];
        int64_t h = sw / g.inW, w = sw % g.inW;
        bool inPlane = sw >= 0 && sw < g.inH * g.inW;
        if (!inPlane || h < i * g.sh - g.ph || h >= i * g.sh - g.ph + g.kh ||
            w < j * g.sw - g.pw || w >= j * g.sw - g.pw + g.kw)
          throw kernels::KernelError(fmt::format(
              "unpool: switch {} of pooled element ({}, {}) of plane {} is "
              "outside {}",
              sw, i, j, nc,
              inPlane ? "its window"
                      : fmt::format("the {}x{} output plane", g.inH, g.inW)));
      }
}

void checkLabels(const char *kernel, int64_t n, int64_t k,
                 const int32_t *labels) {
  if (n <= 0 || k <= 0)
    throw kernels::KernelError(
        fmt::format("{}: bad shape [{}, {}]", kernel, n, k));
  for (int64_t i = 0; i < n; ++i)
    if (labels[i] < 0 || labels[i] >= k)
      throw kernels::KernelError(fmt::format(
          "{}: label {} of row {} outside [0, {})", kernel, labels[i], i, k));
}

namespace host {

void maxPoolForward(const kernels::PoolShape &s, const float *x, float *y,
                    int32_t *switches) {
  runOnHost(makeMaxPoolForward(s, x, y, switches));
}

void maxPoolBackward(const kernels::PoolShape &s, const float *dy,
                     const int32_t *switches, float *dx) {
  checkSwitches(kernels::unpoolShape(s.out, s.win, s.in.h, s.in.w), switches);
  runOnHost(makeMaxPoolBackward(s, dy, switches, dx));
}

void unpoolForward(const kernels::UnpoolShape &s, const float *x,
                   const int32_t *switches, float *y) {
  if (switches)
    checkSwitches(s, switches);
  runOnHost(makeUnpoolForward(s, x, switches, y));
}

void unpoolBackward(const kernels::UnpoolShape &s, const float *dy,
                    const int32_t *switches, float *dx) {
  if (switches)
    checkSwitches(s, switches);
  runOnHost(makeUnpoolBackward(s, dy, switches, dx));
}

float euclideanLossForward(int64_t batch, int64_t count, const float *a,
                           const float *b) {
  checkLossBatch("euclidean_loss", batch);
  return float(reduceOnHost(EuclideanLossTerms<float>{batch, count, a, b}));
}

void euclideanLossBackward(int64_t batch, int64_t count, const float *a,
                           const float *b, float dloss, float *da, float *db) {
  checkLossBatch("euclidean_loss backward", batch);
  runOnHost(EuclideanLossBackward<float>{
      count, a, b, double(dloss) / double(batch), da, db});
}

float softmaxCrossEntropyForward(int64_t n, int64_t k, const float *logits,
                                 const int32_t *labels) {
  checkLabels("softmax_cross_entropy", n, k, labels);
  return float(
      reduceOnHost(SoftmaxCrossEntropyTerms<float>{n, k, logits, labels}));
}

void softmaxCrossEntropyBackward(int64_t n, int64_t k, const float *logits,
                                 const int32_t *labels, float dloss,
                                 float *dlogits) {
  checkLabels("softmax_cross_entropy backward", n, k, labels);
  std::vector<double> lse(size_t(n), 0.0);
  runOnHost(SoftmaxRowLse<float>{n, k, logits, labels, lse.data()});
  runOnHost(SoftmaxCrossEntropyBackward<float>{
      n, k, logits, labels, lse.data(), double(dloss) / double(n), dlogits});
}

float objective(const ObjectiveTerm *terms, int64_t count) {
  float total = 0.0f;
  runOnHost(Objective{terms, count, &total});
  return total;
}

void dropout(int64_t count, double ratio, uint64_t seed, uint64_t step,
             uint64_t first, const float *x, float *y) {
  float scale = dropoutScale(ratio);
  runOnHost(Dropout<float>{count, dropoutKey(seed, step), first, ratio, scale,
                           x, y});
}

void relu(int64_t count, const float *x, float *y) {
  runOnHost(Relu<float>{count, x, y});
}

void reluGrad(int64_t count, const float *y, const float *dy, float *dx) {
  runOnHost(ReluGrad<float>{count, y, dy, dx});
}

void add(int64_t count, const float *a, const float *b, float *y) {
  runOnHost(Add<float>{count, a, b, y});
}

void scale(int64_t count, const float *x, float factor, float *y) {
  runOnHost(Scale<float>{count, x, factor, y});
}

void sgdMomentum(const SgdTensor *tensors, int64_t n, const SgdHyper &hyper) {
  std::vector<SgdChunk> chunks = sgdChunks(tensors, n);
  runOnHost(SgdMomentum{tensors, chunks.data(), int64_t(chunks.size()), hyper});
}

} // namespace host
} // namespace netc::cuda
