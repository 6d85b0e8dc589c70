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

void checkLanes(const char *kernel, int64_t channels, int64_t lanes) {
  if (lanes < 1 || channels % lanes != 0)
    throw kernels::KernelError(
        fmt::format("{}: {} channels cannot be blocked by {} lanes", kernel,
                    channels, lanes));
}

void checkElementBytes(const char *kernel, int64_t elementBytes) {
  if (elementBytes != 2 && elementBytes != 4)
    throw kernels::KernelError(fmt::format(
        "{}: elements of {} bytes (only 2 and 4 here)", kernel, elementBytes));
}

void reluGradBiasRefused(const kernels::Dims4 &d, int64_t lanes,
                         int64_t width) {
  throw kernels::KernelError(fmt::format(
      "relu_grad with the bias gradient's partials: the map must be NHWC "
      "with {}-channel packs, 16-byte aligned (got {} channels, lanes {})",
      width, d.c, lanes));
}

void poolReluGradRefused(const kernels::PoolShape &s, int64_t width) {
  throw kernels::KernelError(fmt::format(
      "relu_grad with the max-pool's backward: the pool's windows must tile "
      "its input and the map be NHWC with {}-channel packs, 16-byte aligned "
      "(got a {}x{} window, stride {}x{}, pad {}x{}, {} channels)",
      width, s.win.kh, s.win.kw, s.win.sh, s.win.sw, s.win.ph, s.win.pw,
      s.in.c));
}

void checkDropoutLayout(int64_t count, int64_t plane, int64_t lanes) {
  if (lanes < 1 || plane < 1 || count % (plane * lanes) != 0)
    throw kernels::KernelError(fmt::format(
        "dropout: {} elements are not whole groups of {} planes of {}", count,
        lanes, plane));
}

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

void checkSwitches(const kernels::UnpoolShape &s, const Switch *switches,
                   int64_t lanes) {
  kernels::checkSwitchWindow("unpool", s.win);
  UnpoolGeom u = unpoolGeom(s);
  const PoolGeom &g = u.pool;
  for (int64_t nc = 0; nc < g.nc; ++nc)
    for (int64_t i = 0; i < g.outH; ++i)
      for (int64_t j = 0; j < g.outW; ++j) {
        int64_t sw =
            switches[planeAt(nc, g.outH * g.outW, i * g.outW + j, lanes)];
        int64_t h, w;
        kernels::switchPosition(s.win, i, j, sw, h, w);
        bool inWindow = sw < g.kh * g.kw;
        if (!inWindow || h < 0 || h >= g.inH || w < 0 || w >= g.inW)
          throw kernels::KernelError(fmt::format(
              "unpool: switch {} of pooled element ({}, {}) of plane {} is "
              "outside {}",
              sw, i, j, nc,
              inWindow ? fmt::format("the {}x{} output plane", g.inH, g.inW)
                       : fmt::format("its {}x{} window", g.kh, g.kw)));
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

void checkLrn(const char *kernel, const kernels::LrnParams &p) {
  if (p.size <= 0 || p.size % 2 == 0)
    throw kernels::KernelError(
        fmt::format("{}: size {} must be odd and positive", kernel, p.size));
}

void checkBatchNorm(const char *kernel, const kernels::Dims4 &d) {
  if (d.n <= 0 || d.h <= 0 || d.w <= 0)
    throw kernels::KernelError(fmt::format("{}: empty batch [{}, {}, {}, {}]",
                                           kernel, d.n, d.c, d.h, d.w));
}

namespace host {

template <typename T>
void maxPoolForward(const kernels::PoolShape &s, const T *x, T *y,
                    Switch *switches, int64_t lanes) {
  checkLanes("max_pool", s.in.c, lanes);
  if (switches)
    kernels::checkSwitchWindow("max_pool", s.win);
  runOnHost(makeMaxPoolForward(s, x, y, switches, lanes));
}

template <typename T>
void maxPoolBackward(const kernels::PoolShape &s, const T *dy,
                     const Switch *switches, T *dx, int64_t lanes) {
  checkLanes("max_pool backward", s.in.c, lanes);
  checkSwitches(kernels::unpoolShape(s.out, s.win, s.in.h, s.in.w), switches,
                lanes);
  runOnHost(makeMaxPoolBackward(s, dy, switches, dx, lanes));
}

template <typename T>
void avgPoolForward(const kernels::PoolShape &s, const T *x, T *y,
                    int64_t lanes) {
  checkLanes("avg_pool", s.in.c, lanes);
  runOnHost(makeAvgPoolForward(s, x, y, lanes));
}

template <typename T>
void avgPoolBackward(const kernels::PoolShape &s, const T *dy, T *dx,
                     int64_t lanes) {
  checkLanes("avg_pool backward", s.in.c, lanes);
  runOnHost(makeAvgPoolBackward(s, dy, dx, lanes));
}

template <typename T>
void unpoolForward(const kernels::UnpoolShape &s, const T *x,
                   const Switch *switches, T *y, int64_t lanes) {
  checkLanes("unpool", s.in.c, lanes);
  if (switches)
    checkSwitches(s, switches, lanes);
  runOnHost(makeUnpoolForward(s, x, switches, y, lanes));
}

template <typename T>
void unpoolBackward(const kernels::UnpoolShape &s, const T *dy,
                    const Switch *switches, T *dx, int64_t lanes) {
  checkLanes("unpool backward", s.in.c, lanes);
  if (switches)
    checkSwitches(s, switches, lanes);
  runOnHost(makeUnpoolBackward(s, dy, switches, dx, lanes));
}

template <typename T>
float euclideanLossForward(int64_t batch, int64_t count, const T *a,
                           const T *b) {
  checkLossBatch("euclidean_loss", batch);
  return float(reduceOnHost(EuclideanLossTerms<T>{batch, count, a, b}));
}

template <typename T>
void euclideanLossBackward(int64_t batch, int64_t count, const T *a, const T *b,
                           float dloss, NoDeduce<T> *da, NoDeduce<T> *db) {
  checkLossBatch("euclidean_loss backward", batch);
  runOnHost(
      makeEuclideanLossBackward<T>(batch, count, a, b, dloss, da, db, true));
}

template <typename T>
float softmaxCrossEntropyForward(int64_t n, int64_t k, const T *logits,
                                 const int32_t *labels) {
  checkLabels("softmax_cross_entropy", n, k, labels);
  std::vector<double> scratch(softmaxLseScratchBytes(n, k) / sizeof(double));
  const double *lse = softmaxRowLse(n, k, logits, labels, scratch.data(),
                                    [](const auto &f) { runOnHost(f); });
  return float(
      reduceOnHost(SoftmaxCrossEntropyTerms<T>{n, k, logits, labels, lse}));
}

template <typename T>
void softmaxCrossEntropyBackward(int64_t n, int64_t k, const T *logits,
                                 const int32_t *labels, float dloss,
                                 T *dlogits) {
  checkLabels("softmax_cross_entropy backward", n, k, labels);
  std::vector<double> scratch(softmaxLseScratchBytes(n, k) / sizeof(double));
  const double *lse = softmaxRowLse(n, k, logits, labels, scratch.data(),
                                    [](const auto &f) { runOnHost(f); });
  runOnHost(SoftmaxCrossEntropyBackward<T>{n, FastDiv(k), logits, labels, lse,
                                           double(dloss) / double(n), dlogits});
}

float objective(const ObjectiveTerm *terms, int64_t count) {
  float total = 0.0f;
  runOnHost(Objective{terms, count, &total});
  return total;
}

template <typename T>
void dropout(int64_t count, double ratio, uint64_t seed, uint64_t step,
             uint64_t first, const T *x, T *y, int64_t plane, int64_t lanes) {
  float scale = dropoutScale(ratio);
  checkDropoutLayout(count, plane, lanes);
  runOnHost(makeDropout(count, ratio, scale, seed, &step, first, plane, lanes,
                        x, y, true));
}

template <typename T> void relu(int64_t count, const T *x, T *y) {
  runOnHost(makeRelu(count, x, y, true));
}

template <typename T>
void reluGrad(int64_t count, const T *y, const T *dy, T *dx) {
  runOnHost(makeReluGrad(count, y, dy, dx, true));
}

template <typename T> void add(int64_t count, const T *a, const T *b, T *y) {
  runOnHost(makeAdd(count, a, b, y, true));
}

template <typename T>
void scale(int64_t count, const T *x, float factor, T *y) {
  runOnHost(makeScale(count, x, factor, y, true));
}

template <typename T>
void biasAdd(const kernels::Dims4 &d, int64_t lanes, const T *x,
             const float *bias, T *y, bool relu) {
  checkLanes("bias_add", d.c, lanes);
  runOnHost(makeBiasAdd(d, lanes, x, bias, y, relu, true));
}

template <typename T>
void biasGrad(const kernels::Dims4 &d, int64_t lanes, const T *dy, float *db) {
  checkLanes("bias_grad", d.c, lanes);
  BiasGradShape s = biasGradShape(d);
  std::vector<double> scratch(biasGradScratchBytes(d) / sizeof(double));
  if (rowsOfPacks<T>(d, lanes, {dy})) // as the device, packs on
    runOnHost(makeBiasGradPackPartials(d, dy, scratch.data()));
  else
    runOnHost(BiasGradPartials<T>{mapGeom(d, lanes), s, dy, scratch.data()});
  biasGradTail(d.c, s, scratch.data(), db, [](const auto &f) { runOnHost(f); });
}

template <typename T>
void reluGradBias(const kernels::Dims4 &d, int64_t lanes, const T *y,
                  const T *dy, T *dx, float *db) {
  checkLanes("relu_grad", d.c, lanes);
  checkReluGradBias<T>(d, lanes, {y, dy, dx});
  std::vector<double> scratch(biasGradScratchBytes(d) / sizeof(double));
  runOnHost(makeReluGradBiasPartials(d, y, dy, dx, scratch.data()));
  biasGradTail(d.c, biasGradShape(d), scratch.data(), db,
               [](const auto &f) { runOnHost(f); });
}

template <typename T>
void poolReluGradBias(const kernels::PoolShape &s, const T *dyPooled,
                      const Switch *switches, const T *y, T *dx, float *db) {
  checkPoolReluGradBias<T>(s, {dyPooled, switches, y, dx});
  std::vector<double> scratch(db ? biasGradScratchBytes(s.in) / sizeof(double)
                                 : 0);
  runOnHost(makePoolReluGradBiasPartials(s, dyPooled, switches, y, dx,
                                         db ? scratch.data() : nullptr));
  if (db)
    biasGradTail(s.in.c, biasGradShape(s.in), scratch.data(), db,
                 [](const auto &f) { runOnHost(f); });
}

void convert(int64_t count, const float *src, Bf16 *dst) {
  runOnHost(Convert<float, Bf16>{count, src, dst});
}

void convert(int64_t count, const Bf16 *src, float *dst) {
  runOnHost(Convert<Bf16, float>{count, src, dst});
}

template <typename T>
void toStorage(const kernels::Dims4 &d, int64_t lanes, const float *src,
               T *dst) {
  checkLanes("to_storage", d.c, lanes);
  runOnHost(ToStorage<T>{mapGeom(d, lanes), src, dst});
}

template <typename T>
void fromStorage(const kernels::Dims4 &d, int64_t lanes, const T *src,
                 float *dst) {
  checkLanes("from_storage", d.c, lanes);
  runOnHost(FromStorage<T>{mapGeom(d, lanes), src, dst});
}

void relayout(const kernels::Dims4 &d, int64_t fromLanes, int64_t toLanes,
              int64_t elementBytes, const void *src, void *dst) {
  checkLanes("relayout", d.c, fromLanes);
  checkLanes("relayout", d.c, toLanes);
  if (elementBytes == 1) // switches
    return runOnHost(Relayout<uint8_t>{mapGeom(d, fromLanes), FastDiv(toLanes),
                                       static_cast<const uint8_t *>(src),
                                       static_cast<uint8_t *>(dst)});
  checkElementBytes("relayout", elementBytes);
  if (elementBytes == 2)
    runOnHost(Relayout<uint16_t>{mapGeom(d, fromLanes), FastDiv(toLanes),
                                 static_cast<const uint16_t *>(src),
                                 static_cast<uint16_t *>(dst)});
  else
    runOnHost(Relayout<uint32_t>{mapGeom(d, fromLanes), FastDiv(toLanes),
                                 static_cast<const uint32_t *>(src),
                                 static_cast<uint32_t *>(dst)});
}

void resizeRows(int64_t rows, int64_t from, int64_t to, int64_t elementBytes,
                const void *src, void *dst) {
  checkElementBytes("resize_rows", elementBytes);
  if (elementBytes == 2)
    runOnHost(ResizeRows<uint16_t>{rows, from, FastDiv(to),
                                   static_cast<const uint16_t *>(src),
                                   static_cast<uint16_t *>(dst)});
  else
    runOnHost(ResizeRows<uint32_t>{rows, from, FastDiv(to),
                                   static_cast<const uint32_t *>(src),
                                   static_cast<uint32_t *>(dst)});
}

template <typename T>
void padFilter(const kernels::Dims4 &w, int64_t kp, int64_t cp,
               const float *src, T *dst) {
  runOnHost(makePadFilter(w, kp, cp, src, dst));
}

template <typename T>
void unpadFilterGrad(const kernels::Dims4 &w, int64_t cp, const T *src,
                     float *dst) {
  runOnHost(makeUnpadFilterGrad(w, cp, src, dst));
}

template <typename T>
void lrnForward(const kernels::Dims4 &d, int64_t lanes,
                const kernels::LrnParams &p, const T *x, T *y) {
  checkLrn("lrn", p);
  checkLanes("lrn", d.c, lanes);
  runOnHost(makeLrnForward(d, lanes, p, x, y));
}

template <typename T>
void lrnBackward(const kernels::Dims4 &d, int64_t lanes,
                 const kernels::LrnParams &p, const T *x, const T *y,
                 const T *dy, T *dx) {
  checkLrn("lrn backward", p);
  checkLanes("lrn backward", d.c, lanes);
  runOnHost(makeLrnBackward(d, lanes, p, x, y, dy, dx));
}

namespace {
/// Walks a kernel on the host (a pass of batchNorm*Passes).
struct HostRun {
  template <typename F> void operator()(const F &f) const { runOnHost(f); }
};
} // namespace

template <typename T>
void batchNormForwardTraining(const kernels::Dims4 &d, int64_t lanes,
                              double eps, double momentum, const T *x,
                              const float *scale, const float *shift,
                              float *runMean, float *runVar, T *y) {
  checkBatchNorm("batch_norm", d);
  checkLanes("batch_norm", d.c, lanes);
  std::vector<double> scratch(batchNormScratchBytes(d) / sizeof(double));
  batchNormTrainingPasses(d, lanes, eps, momentum, x, scale, shift, runMean,
                          runVar, y, scratch.data(), HostRun());
}

template <typename T>
void batchNormForwardInference(const kernels::Dims4 &d, int64_t lanes,
                               double eps, const T *x, const float *scale,
                               const float *shift, const float *runMean,
                               const float *runVar, T *y) {
  checkLanes("batch_norm", d.c, lanes);
  runOnHost(BatchNormInference<T>{mapGeom(d, lanes), eps, x, scale, shift,
                                  runMean, runVar, y});
}

template <typename T>
void batchNormBackward(const kernels::Dims4 &d, int64_t lanes, double eps,
                       const T *x, const float *scale, const T *dy,
                       NoDeduce<T> *dx, float *dscale, float *dshift) {
  checkBatchNorm("batch_norm_grad", d);
  checkLanes("batch_norm_grad", d.c, lanes);
  std::vector<double> scratch(batchNormScratchBytes(d) / sizeof(double));
  batchNormBackwardPasses(d, lanes, eps, x, scale, dy, dx, dscale, dshift,
                          scratch.data(), HostRun());
}

void sgdMomentum(const SgdTensor *tensors, int64_t n, const SgdHyper &hyper) {
  std::vector<SgdChunk> chunks = sgdChunks(tensors, n);
  runOnHost(
      SgdMomentum{tensors, chunks.data(), int64_t(chunks.size()), &hyper});
}

// The storage types the launchers exist for (Kernels.h).
#define NETC_HOST_LAUNCHERS(T)                                                 \
  template void maxPoolForward<T>(const kernels::PoolShape &, const T *, T *,  \
                                  Switch *, int64_t);                          \
  template void maxPoolBackward<T>(const kernels::PoolShape &, const T *,      \
                                   const Switch *, T *, int64_t);              \
  template void avgPoolForward<T>(const kernels::PoolShape &, const T *, T *,  \
                                  int64_t);                                    \
  template void avgPoolBackward<T>(const kernels::PoolShape &, const T *, T *, \
                                   int64_t);                                   \
  template void unpoolForward<T>(const kernels::UnpoolShape &, const T *,      \
                                 const Switch *, T *, int64_t);                \
  template void unpoolBackward<T>(const kernels::UnpoolShape &, const T *,     \
                                  const Switch *, T *, int64_t);               \
  template float euclideanLossForward<T>(int64_t, int64_t, const T *,          \
                                         const T *);                           \
  template void euclideanLossBackward<T>(int64_t, int64_t, const T *,          \
                                         const T *, float, T *, T *);          \
  template float softmaxCrossEntropyForward<T>(int64_t, int64_t, const T *,    \
                                               const int32_t *);               \
  template void softmaxCrossEntropyBackward<T>(int64_t, int64_t, const T *,    \
                                               const int32_t *, float, T *);   \
  template void dropout<T>(int64_t, double, uint64_t, uint64_t, uint64_t,      \
                           const T *, T *, int64_t, int64_t);                  \
  template void relu<T>(int64_t, const T *, T *);                              \
  template void reluGrad<T>(int64_t, const T *, const T *, T *);               \
  template void add<T>(int64_t, const T *, const T *, T *);                    \
  template void scale<T>(int64_t, const T *, float, T *);                      \
  template void biasAdd<T>(const kernels::Dims4 &, int64_t, const T *,         \
                           const float *, T *, bool);                          \
  template void biasGrad<T>(const kernels::Dims4 &, int64_t, const T *,        \
                            float *);                                          \
  template void reluGradBias<T>(const kernels::Dims4 &, int64_t, const T *,    \
                                const T *, T *, float *);                      \
  template void poolReluGradBias<T>(const kernels::PoolShape &, const T *,     \
                                    const Switch *, const T *, T *, float *);  \
  template void padFilter<T>(const kernels::Dims4 &, int64_t, int64_t,         \
                             const float *, T *);                              \
  template void unpadFilterGrad<T>(const kernels::Dims4 &, int64_t, const T *, \
                                   float *);                                   \
  template void toStorage<T>(const kernels::Dims4 &, int64_t, const float *,   \
                             T *);                                             \
  template void fromStorage<T>(const kernels::Dims4 &, int64_t, const T *,     \
                               float *);                                       \
  template void lrnForward<T>(const kernels::Dims4 &, int64_t,                 \
                              const kernels::LrnParams &, const T *, T *);     \
  template void lrnBackward<T>(const kernels::Dims4 &, int64_t,                \
                               const kernels::LrnParams &, const T *,          \
                               const T *, const T *, T *);                     \
  template void batchNormForwardTraining<T>(                                   \
      const kernels::Dims4 &, int64_t, double, double, const T *,              \
      const float *, const float *, float *, float *, T *);                    \
  template void batchNormForwardInference<T>(                                  \
      const kernels::Dims4 &, int64_t, double, const T *, const float *,       \
      const float *, const float *, const float *, T *);                       \
  template void batchNormBackward<T>(const kernels::Dims4 &, int64_t, double,  \
                                     const T *, const float *, const T *, T *, \
                                     float *, float *);

NETC_HOST_LAUNCHERS(float)
NETC_HOST_LAUNCHERS(Bf16)
#undef NETC_HOST_LAUNCHERS

} // namespace host
} // namespace netc::cuda
