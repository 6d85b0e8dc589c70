//===- CudaGpuTest.cpp - the cuda kernels on a GPU against the host walk --===//
//
// netc-gpu-tests: every device launcher of runtime/cuda/Launch.h on the GPU
// against its host launcher (which CudaKernelsHostTest checks against the
// reference kernels), in f32 and bf16 storage and in NCHW and NHWC. The same
// per-element code on both sides, so results must be bit-identical; only
// softmax cross-entropy, whose exp and log come from two math libraries, and
// LRN, whose pow does, get a tolerance (batch norm's sqrt is correctly
// rounded on both sides: none). Built with NETC_WITH_CUDA; with no GPU it
// prints one line and succeeds.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/Launch.h"

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

using namespace netc;
using namespace netc::kernels;
using FVec = std::vector<float>;
using IVec = std::vector<int32_t>;
using SVec = std::vector<kernels::Switch>;

namespace {

void cudaCheck(cudaError_t e, const char *what) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

/// A device copy of a host vector (or `count` zeroed elements).
template <typename T> class DeviceVec {
public:
  explicit DeviceVec(size_t count) : count_(count) {
    cudaCheck(cudaMalloc(reinterpret_cast<void **>(&data_),
                         std::max<size_t>(count, 1) * sizeof(T)),
              "cudaMalloc");
    cudaCheck(cudaMemset(data_, 0, std::max<size_t>(count, 1) * sizeof(T)),
              "cudaMemset");
  }
  explicit DeviceVec(const std::vector<T> &host) : DeviceVec(host.size()) {
    cudaCheck(cudaMemcpy(data_, host.data(), host.size() * sizeof(T),
                         cudaMemcpyHostToDevice),
              "upload");
  }
  ~DeviceVec() { cudaFree(data_); }
  DeviceVec(const DeviceVec &) = delete;
  DeviceVec &operator=(const DeviceVec &) = delete;
  T *get() const { return data_; }
  std::vector<T> download() const {
    std::vector<T> host(count_);
    cudaCheck(cudaMemcpy(host.data(), data_, count_ * sizeof(T),
                         cudaMemcpyDeviceToHost),
              "download");
    return host;
  }

private:
  T *data_ = nullptr;
  size_t count_;
};

class Rng {
public:
  explicit Rng(uint64_t seed) : state(seed) {}
  uint64_t next() { return state = splitmix64(state); }
  FVec vec(int64_t n, float lo = -1.0f, float hi = 1.0f) {
    FVec v(static_cast<size_t>(n));
    for (float &x : v)
      x = float(lo + (hi - lo) * double(next() >> 11) * 0x1.0p-53);
    return v;
  }
  FVec relued(int64_t n) {
    FVec v(static_cast<size_t>(n));
    for (float &x : v)
      x = next() % 2 ? 0.0f : float(next() % 4) * 0.25f;
    return v;
  }

private:
  uint64_t state;
};

template <typename T>
void expectSame(const std::vector<T> &got, const std::vector<T> &want,
                const std::string &what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  ASSERT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(T)))
      << what;
}

void sync() { cudaCheck(cudaDeviceSynchronize(), "kernel"); }

struct PoolCase {
  Dims4 in;
  Window2D win;
  bool ceil;
};

TEST(CudaGpu, MaxPoolAndUnpoolMatchTheHostWalk) {
  Rng rng(1);
  std::vector<PoolCase> cases{
      {{1, 3, 7, 9}, {2, 2, 2, 2, 0, 0}, true},
      {{4, 16, 56, 56}, {2, 2, 2, 2, 0, 0}, false},
      {{2, 8, 27, 27}, {3, 3, 2, 2, 0, 0}, false},
      {{3, 5, 9, 7}, {3, 3, 1, 1, 1, 1}, false},
  };
  for (const PoolCase &c : cases)
    for (bool relued : {false, true})
      for (bool normalize : {false, true}) {
        PoolShape p = poolShape(c.in, c.win, c.ceil);
        FVec x = relued ? rng.relued(p.in.count()) : rng.vec(p.in.count());
        FVec y(size_t(p.out.count()));
        SVec sw(y.size());
        cuda::host::maxPoolForward(p, x.data(), y.data(), sw.data());
        DeviceVec<float> dX(x), dY(y.size());
        DeviceVec<kernels::Switch> dSw(sw.size());
        cuda::device::maxPoolForward(p, dX.get(), dY.get(), dSw.get(), nullptr);
        sync();
        expectSame(dY.download(), y, "max_pool");
        expectSame(dSw.download(), sw, "switches");
        FVec dy = rng.vec(p.out.count()), dx(static_cast<size_t>(p.in.count()));
        cuda::host::maxPoolBackward(p, dy.data(), sw.data(), dx.data());
        DeviceVec<float> dDy(dy), dDx(dx.size());
        cuda::device::maxPoolBackward(p, dDy.get(), dSw.get(), dDx.get(),
                                      nullptr);
        sync();
        expectSame(dDx.download(), dx, "max_pool backward");

        for (bool fixed : {false, true}) {
          UnpoolShape u = unpoolShape(p.out, c.win, p.in.h, p.in.w,
                                      c.win.kh / 2, c.win.kw / 2, normalize);
          const kernels::Switch *hs = fixed ? nullptr : sw.data();
          const kernels::Switch *ds = fixed ? nullptr : dSw.get();
          FVec v = rng.vec(u.in.count()), up(size_t(u.out.count()));
          cuda::host::unpoolForward(u, v.data(), hs, up.data());
          DeviceVec<float> dV(v), dUp(up.size());
          cuda::device::unpoolForward(u, dV.get(), ds, dUp.get(), nullptr);
          FVec dy = rng.vec(u.out.count()), dx(size_t(u.in.count()));
          cuda::host::unpoolBackward(u, dy.data(), hs, dx.data());
          DeviceVec<float> dDy(dy), dDx(dx.size());
          cuda::device::unpoolBackward(u, dDy.get(), ds, dDx.get(), nullptr);
          sync();
          std::string what = std::string(fixed ? "fixed" : "switch") +
                             (normalize ? " normalize" : "");
          expectSame(dUp.download(), up, "unpool " + what);
          expectSame(dDx.download(), dx, "unpool backward " + what);
        }
      }
}

TEST(CudaGpu, LossesMatchTheHostWalk) {
  Rng rng(2);
  DeviceVec<double> partials(cuda::kReduceBlocks);
  DeviceVec<float> loss(1);
  for (auto [batch, count] : std::vector<std::pair<int64_t, int64_t>>{
           {1, 5}, {7, 65537}, {64, 64 * 3 * 224 * 224}}) {
    FVec a = rng.vec(count), b = rng.vec(count);
    DeviceVec<float> dA(a), dB(b), dDa(static_cast<size_t>(count)),
        dDb(static_cast<size_t>(count));
    float want =
        cuda::host::euclideanLossForward(batch, count, a.data(), b.data());
    cuda::device::euclideanLossForward(batch, count, dA.get(), dB.get(),
                                       partials.get(), loss.get(), nullptr);
    sync();
    EXPECT_EQ(loss.download()[0], want) << count; // same order, same sums
    FVec da(static_cast<size_t>(count)), db(static_cast<size_t>(count));
    cuda::host::euclideanLossBackward(batch, count, a.data(), b.data(), 0.5f,
                                      da.data(), db.data());
    cuda::device::euclideanLossBackward(batch, count, dA.get(), dB.get(), 0.5f,
                                        dDa.get(), dDb.get(), nullptr);
    sync();
    expectSame(dDa.download(), da, "da");
    expectSame(dDb.download(), db, "db");
  }
  for (auto [n, k] : std::vector<std::pair<int64_t, int64_t>>{
           {1, 10}, {64, 1000}, {256, 10}}) {
    FVec logits = rng.vec(n * k, -8.0f, 8.0f);
    IVec labels(static_cast<size_t>(n));
    for (int32_t &l : labels)
      l = int32_t(rng.next() % uint64_t(k));
    DeviceVec<float> dL(logits), dD(logits.size());
    DeviceVec<int32_t> dLabels(labels);
    DeviceVec<double> lossScratch(cuda::softmaxLossScratchBytes(n, k) /
                                  sizeof(double)),
        lse(cuda::softmaxLseScratchBytes(n, k) / sizeof(double));
    float want = cuda::host::softmaxCrossEntropyForward(n, k, logits.data(),
                                                        labels.data());
    cuda::device::softmaxCrossEntropyForward(
        n, k, dL.get(), dLabels.get(), lossScratch.get(), loss.get(), nullptr);
    FVec d(logits.size());
    cuda::host::softmaxCrossEntropyBackward(n, k, logits.data(), labels.data(),
                                            1.0f, d.data());
    cuda::device::softmaxCrossEntropyBackward(
        n, k, dL.get(), dLabels.get(), 1.0f, lse.get(), dD.get(), nullptr);
    sync();
    EXPECT_NEAR(loss.download()[0], want, 1e-6 * std::abs(want));
    FVec got = dD.download();
    for (size_t i = 0; i < d.size(); ++i)
      ASSERT_NEAR(got[i], d[i], 1e-6 * std::abs(d[i]) + 1e-12) << i;
  }
}

TEST(CudaGpu, DropoutElementwiseAndSgdMatchTheHostWalk) {
  Rng rng(3);
  int64_t count = 1000003;
  FVec x = rng.vec(count), y = rng.relued(count);
  DeviceVec<float> dX(x), dY(y), dOut(static_cast<size_t>(count));
  FVec out(static_cast<size_t>(count));
  // The step's parameters live on the device (StepParams).
  cuda::StepParams params;
  params.step = 11;
  params.hyper = {0.01, 0.9, 5e-4};
  DeviceVec<cuda::StepParams> dParams(std::vector<cuda::StepParams>{params});

  cuda::host::dropout(count, 0.5, 7, 11, 64, x.data(), out.data());
  cuda::device::dropout(count, 0.5, 7, &dParams.get()->step, 64, 1, 1, dX.get(),
                        dOut.get(), nullptr);
  sync();
  expectSame(dOut.download(), out, "dropout");
  cuda::host::relu(count, x.data(), out.data());
  cuda::device::relu(count, dX.get(), dOut.get(), nullptr);
  sync();
  expectSame(dOut.download(), out, "relu");
  cuda::host::reluGrad(count, y.data(), x.data(), out.data());
  cuda::device::reluGrad(count, dY.get(), dX.get(), dOut.get(), nullptr);
  sync();
  expectSame(dOut.download(), out, "relu_grad");
  cuda::host::add(count, x.data(), y.data(), out.data());
  cuda::device::add(count, dX.get(), dY.get(), dOut.get(), nullptr);
  sync();
  expectSame(dOut.download(), out, "add");
  cuda::host::scale(count, x.data(), 0.3f, out.data());
  cuda::device::scale(count, dX.get(), 0.3f, dOut.get(), nullptr);
  sync();
  expectSame(dOut.download(), out, "scale");

  // SGD: host tensors and their device twins, three steps.
  std::vector<int64_t> sizes{1, 4095, 4097, 123457};
  size_t n = sizes.size();
  std::vector<FVec> w(n), v(n), g(n);
  std::vector<std::vector<cuda::Bf16>> copy(n);
  std::vector<std::unique_ptr<DeviceVec<float>>> dW, dV, dG;
  std::vector<std::unique_ptr<DeviceVec<cuda::Bf16>>> dC;
  std::vector<cuda::SgdTensor> host(n), dev(n);
  for (size_t t = 0; t < n; ++t) {
    w[t] = rng.vec(sizes[t]);
    v[t] = rng.vec(sizes[t], -0.01f, 0.01f);
    g[t] = rng.vec(sizes[t]);
    copy[t].resize(size_t(sizes[t]));
    dW.push_back(std::make_unique<DeviceVec<float>>(w[t]));
    dV.push_back(std::make_unique<DeviceVec<float>>(v[t]));
    dG.push_back(std::make_unique<DeviceVec<float>>(g[t]));
    dC.push_back(std::make_unique<DeviceVec<cuda::Bf16>>(size_t(sizes[t])));
    double lrMult = t % 2 ? 2.0 : 1.0, decayMult = t % 2 ? 0.0 : 1.0;
    host[t] = {w[t].data(), g[t].data(), v[t].data(), copy[t].data(),
               sizes[t],    lrMult,      decayMult};
    dev[t] = {dW[t]->get(), dG[t]->get(), dV[t]->get(), dC[t]->get(),
              sizes[t],     lrMult,       decayMult};
  }
  std::vector<cuda::SgdChunk> chunks = cuda::sgdChunks(dev.data(), int64_t(n));
  DeviceVec<cuda::SgdTensor> dTensors(dev);
  DeviceVec<cuda::SgdChunk> dChunks(chunks);
  for (int step = 0; step < 3; ++step) {
    cuda::host::sgdMomentum(host.data(), int64_t(n), params.hyper);
    cuda::device::sgdMomentum(dTensors.get(), dChunks.get(),
                              int64_t(chunks.size()), &dParams.get()->hyper,
                              nullptr);
  }
  sync();
  for (size_t t = 0; t < n; ++t) {
    expectSame(dW[t]->download(), w[t], "sgd weights");
    expectSame(dV[t]->download(), v[t], "sgd momentum");
    std::vector<cuda::Bf16> c = dC[t]->download();
    ASSERT_EQ(
        0, std::memcmp(c.data(), copy[t].data(), c.size() * sizeof(cuda::Bf16)))
        << "bf16 copy " << t;
  }
}

//===----------------------------------------------------------------------===//
// bf16 storage and NHWC layout
//===----------------------------------------------------------------------===//

using Bf16 = cuda::Bf16;
using BVec = std::vector<Bf16>;

template <typename T> std::vector<T> stored(const FVec &v);
template <> FVec stored<float>(const FVec &v) { return v; }
template <> BVec stored<Bf16>(const FVec &v) {
  BVec b(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    b[i] = Bf16::fromFloat(v[i]);
  return b;
}

const char *typeName(float) { return "f32"; }
const char *typeName(Bf16) { return "bf16"; }

/// Max-pool and unpool in storage T, NCHW or NHWC (lanes = C, with C = 3,
/// 5, 8 and 16; 8 and 16 are whole channel packs, so the device's pack path
/// runs, also with overlapping windows): the data is random in either layout,
/// so it is generated in the stored one.
template <typename T> void poolOnGpu(bool nhwc, uint64_t seed) {
  Rng rng(seed);
  std::vector<PoolCase> cases{
      {{1, 3, 7, 9}, {2, 2, 2, 2, 0, 0}, true},
      {{4, 16, 56, 56}, {2, 2, 2, 2, 0, 0}, false},
      {{2, 5, 27, 27}, {3, 3, 2, 2, 0, 0}, false},
      {{3, 5, 9, 7}, {3, 3, 1, 1, 1, 1}, false},
      {{2, 16, 13, 13}, {3, 3, 2, 2, 1, 1}, true},
      {{3, 8, 12, 10}, {2, 2, 2, 2, 0, 0}, false},
  };
  for (const PoolCase &c : cases)
    for (bool relued : {false, true})
      for (bool normalize : {false, true}) {
        int64_t L = nhwc ? c.in.c : 1;
        std::string what = std::string(typeName(T())) + " lanes " +
                           std::to_string(L) + (relued ? " relued" : "") +
                           (normalize ? " normalize" : "");
        PoolShape p = poolShape(c.in, c.win, c.ceil);
        std::vector<T> x = stored<T>(relued ? rng.relued(p.in.count())
                                            : rng.vec(p.in.count()));
        std::vector<T> y(size_t(p.out.count()));
        SVec sw(y.size());
        cuda::host::maxPoolForward(p, x.data(), y.data(), sw.data(), L);
        DeviceVec<T> dX(x), dY(y.size());
        DeviceVec<kernels::Switch> dSw(sw.size());
        cuda::device::maxPoolForward(p, dX.get(), dY.get(), dSw.get(), L,
                                     nullptr);
        sync();
        expectSame(dY.download(), y, "max_pool " + what);
        expectSame(dSw.download(), sw, "switches " + what);
        std::vector<T> dy = stored<T>(rng.vec(p.out.count())),
                       dx(size_t(p.in.count()));
        cuda::host::maxPoolBackward(p, dy.data(), sw.data(), dx.data(), L);
        DeviceVec<T> dDy(dy), dDx(dx.size());
        cuda::device::maxPoolBackward(p, dDy.get(), dSw.get(), dDx.get(), L,
                                      nullptr);
        sync();
        expectSame(dDx.download(), dx, "max_pool backward " + what);
        if (!normalize) {
          std::vector<T> avg(y.size()), avgDx(x.size());
          cuda::host::avgPoolForward(p, x.data(), avg.data(), L);
          cuda::host::avgPoolBackward(p, dy.data(), avgDx.data(), L);
          DeviceVec<T> dAvg(avg.size()), dAvgDx(avgDx.size());
          cuda::device::avgPoolForward(p, dX.get(), dAvg.get(), L, nullptr);
          cuda::device::avgPoolBackward(p, dDy.get(), dAvgDx.get(), L, nullptr);
          sync();
          expectSame(dAvg.download(), avg, "avg_pool " + what);
          expectSame(dAvgDx.download(), avgDx, "avg_pool backward " + what);
        }

        for (bool fixed : {false, true}) {
          UnpoolShape u = unpoolShape(p.out, c.win, p.in.h, p.in.w,
                                      c.win.kh / 2, c.win.kw / 2, normalize);
          const kernels::Switch *hs = fixed ? nullptr : sw.data();
          const kernels::Switch *ds = fixed ? nullptr : dSw.get();
          std::vector<T> v = stored<T>(rng.vec(u.in.count())),
                         up(size_t(u.out.count()));
          cuda::host::unpoolForward(u, v.data(), hs, up.data(), L);
          DeviceVec<T> dV(v), dUp(up.size());
          cuda::device::unpoolForward(u, dV.get(), ds, dUp.get(), L, nullptr);
          std::vector<T> g = stored<T>(rng.vec(u.out.count())),
                         gx(size_t(u.in.count()));
          cuda::host::unpoolBackward(u, g.data(), hs, gx.data(), L);
          DeviceVec<T> dG(g), dGx(gx.size());
          cuda::device::unpoolBackward(u, dG.get(), ds, dGx.get(), L, nullptr);
          sync();
          std::string how = what + (fixed ? " fixed" : " switch");
          expectSame(dUp.download(), up, "unpool " + how);
          expectSame(dGx.download(), gx, "unpool backward " + how);
        }
      }
}

TEST(CudaGpu, PoolingMatchesTheHostWalkInEveryTypeAndLayout) {
  poolOnGpu<float>(false, 10);
  poolOnGpu<Bf16>(false, 11);
  poolOnGpu<float>(true, 12);
  poolOnGpu<Bf16>(true, 13);
}

TEST(CudaGpu, Bf16LossesMatchTheHostWalk) {
  Rng rng(14);
  DeviceVec<double> partials(cuda::kReduceBlocks);
  DeviceVec<float> loss(1);
  for (auto [batch, count] : std::vector<std::pair<int64_t, int64_t>>{
           {1, 5}, {7, 65537}, {64, 64 * 3 * 64 * 64}}) {
    BVec a = stored<Bf16>(rng.vec(count)), b = stored<Bf16>(rng.vec(count));
    DeviceVec<Bf16> dA(a), dB(b), dDa(a.size()), dDb(a.size());
    float want =
        cuda::host::euclideanLossForward(batch, count, a.data(), b.data());
    cuda::device::euclideanLossForward(batch, count, dA.get(), dB.get(),
                                       partials.get(), loss.get(), nullptr);
    sync();
    EXPECT_EQ(loss.download()[0], want) << count;
    BVec da(a.size()), db(a.size());
    cuda::host::euclideanLossBackward(batch, count, a.data(), b.data(), 0.5f,
                                      da.data(), db.data());
    cuda::device::euclideanLossBackward(batch, count, dA.get(), dB.get(), 0.5f,
                                        dDa.get(), dDb.get(), nullptr);
    sync();
    expectSame(dDa.download(), da, "bf16 da");
    expectSame(dDb.download(), db, "bf16 db");
  }
  for (auto [n, k] :
       std::vector<std::pair<int64_t, int64_t>>{{1, 10}, {64, 1000}}) {
    BVec logits = stored<Bf16>(rng.vec(n * k, -8.0f, 8.0f));
    IVec labels(static_cast<size_t>(n));
    for (int32_t &l : labels)
      l = int32_t(rng.next() % uint64_t(k));
    DeviceVec<Bf16> dL(logits), dD(logits.size());
    DeviceVec<int32_t> dLabels(labels);
    DeviceVec<double> lossScratch(cuda::softmaxLossScratchBytes(n, k) /
                                  sizeof(double)),
        lse(cuda::softmaxLseScratchBytes(n, k) / sizeof(double));
    float want = cuda::host::softmaxCrossEntropyForward(n, k, logits.data(),
                                                        labels.data());
    cuda::device::softmaxCrossEntropyForward(
        n, k, dL.get(), dLabels.get(), lossScratch.get(), loss.get(), nullptr);
    BVec d(logits.size());
    cuda::host::softmaxCrossEntropyBackward(n, k, logits.data(), labels.data(),
                                            1.0f, d.data());
    cuda::device::softmaxCrossEntropyBackward(
        n, k, dL.get(), dLabels.get(), 1.0f, lse.get(), dD.get(), nullptr);
    sync();
    EXPECT_NEAR(loss.download()[0], want, 1e-6 * std::abs(want));
    // exp and log from two math libraries: within a bf16 rounding step.
    BVec got = dD.download();
    for (size_t i = 0; i < d.size(); ++i)
      ASSERT_NEAR(got[i].toFloat(), d[i].toFloat(),
                  0x1.0p-7 * std::abs(d[i].toFloat()) + 1e-12)
          << i;
  }
}

TEST(CudaGpu, Bf16ElementwiseAndNhwcDropoutMatchTheHostWalk) {
  Rng rng(15);
  Dims4 d{8, 5, 31, 33};
  int64_t count = d.count();
  BVec x = stored<Bf16>(rng.vec(count)), y = stored<Bf16>(rng.relued(count));
  DeviceVec<Bf16> dX(x), dY(y), dOut(x.size());
  BVec out(x.size());
  cuda::StepParams params;
  params.step = 12345;
  DeviceVec<cuda::StepParams> dParams(std::vector<cuda::StepParams>{params});
  for (int64_t L : {int64_t(1), d.c}) {
    cuda::host::dropout(count, 0.3, 7, params.step, 640, x.data(), out.data(),
                        d.plane(), L);
    cuda::device::dropout(count, 0.3, 7, &dParams.get()->step, 640, d.plane(),
                          L, dX.get(), dOut.get(), nullptr);
    sync();
    expectSame(dOut.download(), out, "bf16 dropout lanes " + std::to_string(L));
  }
  cuda::host::relu(count, x.data(), out.data());
  cuda::device::relu(count, dX.get(), dOut.get(), nullptr);
  sync();
  expectSame(dOut.download(), out, "bf16 relu");
  cuda::host::reluGrad(count, y.data(), x.data(), out.data());
  cuda::device::reluGrad(count, dY.get(), dX.get(), dOut.get(), nullptr);
  sync();
  expectSame(dOut.download(), out, "bf16 relu_grad");
  cuda::host::add(count, x.data(), y.data(), out.data());
  cuda::device::add(count, dX.get(), dY.get(), dOut.get(), nullptr);
  sync();
  expectSame(dOut.download(), out, "bf16 add");
  cuda::host::scale(count, x.data(), 0.3f, out.data());
  cuda::device::scale(count, dX.get(), 0.3f, dOut.get(), nullptr);
  sync();
  expectSame(dOut.download(), out, "bf16 scale");
  // One element off 16-byte alignment: the device walks single elements
  // (packs need aligned operands), the host packs nothing either.
  cuda::host::reluGrad(count - 1, y.data() + 1, x.data() + 1, out.data() + 1);
  cuda::device::reluGrad(count - 1, dY.get() + 1, dX.get() + 1, dOut.get() + 1,
                         nullptr);
  sync();
  expectSame(dOut.download(), out, "bf16 relu_grad, misaligned");
}

/// The fused relu_grad and bias-gradient partials, then the last stages,
/// on the GPU against the host walk, bit for bit (dx and db), in place and
/// not, on VGG-like maps and odd ones.
template <typename T> void reluGradBiasOnGpu(uint64_t seed) {
  Rng rng(seed);
  for (const Dims4 &d : std::vector<Dims4>{{8, 64, 56, 56},
                                           {64, 512, 14, 14},
                                           {64, 4096, 1, 1},
                                           {3, 16, 7, 9},
                                           {1, 24, 5, 3}})
    for (bool inPlace : {false, true}) {
      std::string what = std::string(typeName(T())) + " c " +
                         std::to_string(d.c) + " h " + std::to_string(d.h) +
                         (inPlace ? " in place" : "");
      std::vector<T> y = stored<T>(rng.vec(d.count())),
                     dy = stored<T>(rng.vec(d.count())), dx(y.size());
      FVec db(size_t(d.c));
      cuda::host::reluGradBias(d, d.c, y.data(), dy.data(), dx.data(),
                               db.data());
      DeviceVec<T> dY(y), dDy(dy), dDx(dx.size());
      DeviceVec<double> scratch(cuda::biasGradScratchBytes(d) / sizeof(double));
      DeviceVec<float> dDb(db.size());
      T *out = inPlace ? dDy.get() : dDx.get();
      cuda::device::reluGradBiasPartials(d, dY.get(), dDy.get(), out,
                                         scratch.get(), nullptr);
      cuda::device::biasGradFinal(d, scratch.get(), dDb.get(), nullptr);
      sync();
      expectSame((inPlace ? dDy : dDx).download(), dx, "relu_grad " + what);
      expectSame(dDb.download(), db, "bias_grad " + what);
    }
}

/// The max-pool's backward inside relu_grad, with and without the bias
/// partials, on the GPU against the host walk, bit for bit: VGG's 2x2/2
/// pools (even and odd sizes) and a 3x3/3 one.
template <typename T> void poolReluGradBiasOnGpu(uint64_t seed) {
  Rng rng(seed);
  struct Case {
    Dims4 in;
    Window2D win;
  };
  for (const Case &k : std::vector<Case>{{{8, 64, 56, 56}, {2, 2, 2, 2, 0, 0}},
                                         {{4, 128, 15, 13}, {2, 2, 2, 2, 0, 0}},
                                         {{2, 16, 9, 9}, {3, 3, 3, 3, 0, 0}}}) {
    kernels::PoolShape s = kernels::poolShape(k.in, k.win);
    std::string what = std::string(typeName(T())) + " c " +
                       std::to_string(s.in.c) + " h " + std::to_string(s.in.h);
    std::vector<T> y = stored<T>(rng.relued(s.in.count())),
                   pooled(size_t(s.out.count()));
    SVec switches(size_t(s.out.count()));
    cuda::host::maxPoolForward(s, y.data(), pooled.data(), switches.data(),
                               s.in.c);
    std::vector<T> dyPooled = stored<T>(rng.vec(s.out.count())), dx(y.size());
    FVec db(size_t(s.in.c));
    cuda::host::poolReluGradBias(s, dyPooled.data(), switches.data(), y.data(),
                                 dx.data(), db.data());
    DeviceVec<T> dY(y), dDyPooled(dyPooled), dDx(dx.size()), dAlone(dx.size());
    DeviceVec<kernels::Switch> dSw(switches);
    DeviceVec<double> scratch(cuda::biasGradScratchBytes(s.in) /
                              sizeof(double));
    DeviceVec<float> dDb(db.size());
    cuda::device::poolReluGradBiasPartials(s, dDyPooled.get(), dSw.get(),
                                           dY.get(), dDx.get(), scratch.get(),
                                           nullptr);
    cuda::device::biasGradFinal(s.in, scratch.get(), dDb.get(), nullptr);
    cuda::device::poolReluGradBiasPartials(
        s, dDyPooled.get(), dSw.get(), dY.get(), dAlone.get(),
        static_cast<double *>(nullptr), nullptr);
    sync();
    expectSame(dDx.download(), dx, "pool relu_grad " + what);
    expectSame(dAlone.download(), dx, "pool relu_grad without db " + what);
    expectSame(dDb.download(), db, "pool bias_grad " + what);
  }
}

TEST(CudaGpu, MaxPoolGradInReluGradMatchesTheHostWalk) {
  poolReluGradBiasOnGpu<float>(63);
  poolReluGradBiasOnGpu<Bf16>(64);
}

TEST(CudaGpu, ReluGradWithBiasPartialsMatchesTheHostWalk) {
  reluGradBiasOnGpu<float>(61);
  reluGradBiasOnGpu<Bf16>(62);
}

template <typename T> void biasOnGpu(uint64_t seed) {
  Rng rng(seed);
  for (const Dims4 &d : std::vector<Dims4>{
           {64, 3, 224, 224}, {16, 96, 27, 27}, {64, 4096, 1, 1}, {3, 5, 7, 9}})
    for (int64_t L : {int64_t(1), d.c}) {
      std::string what = std::string(typeName(T())) + " c " +
                         std::to_string(d.c) + " lanes " + std::to_string(L);
      std::vector<T> x = stored<T>(rng.vec(d.count()));
      FVec bias = rng.vec(d.c);
      std::vector<T> y(x.size());
      cuda::host::biasAdd(d, L, x.data(), bias.data(), y.data());
      DeviceVec<T> dX(x);
      DeviceVec<float> dBias(bias);
      cuda::device::biasAdd(d, L, dX.get(), dBias.get(), dX.get(), false,
                            nullptr);
      sync();
      expectSame(dX.download(), y, "bias_add " + what);
      std::vector<T> yr(x.size());
      cuda::host::biasAdd(d, L, x.data(), bias.data(), yr.data(), true);
      DeviceVec<T> dXr(x);
      cuda::device::biasAdd(d, L, dXr.get(), dBias.get(), dXr.get(), true,
                            nullptr);
      sync();
      expectSame(dXr.download(), yr, "bias_add + relu " + what);

      FVec db(size_t(d.c));
      cuda::host::biasGrad(d, L, x.data(), db.data());
      DeviceVec<T> dDy(x);
      DeviceVec<double> scratch(
          std::max<size_t>(cuda::biasGradScratchBytes(d) / sizeof(double), 1));
      DeviceVec<float> dDb(db.size());
      cuda::device::biasGrad(d, L, dDy.get(), scratch.get(), dDb.get(),
                             nullptr);
      sync();
      expectSame(dDb.download(), db, "bias_grad " + what);

      FVec f = rng.vec(d.count(), -100.0f, 100.0f);
      std::vector<T> s(f.size());
      cuda::host::toStorage(d, L, f.data(), s.data());
      DeviceVec<float> dF(f), dBack(f.size());
      DeviceVec<T> dS(s.size());
      cuda::device::toStorage(d, L, dF.get(), dS.get(), nullptr);
      FVec back(f.size());
      cuda::host::fromStorage(d, L, s.data(), back.data());
      cuda::device::fromStorage(d, L, dS.get(), dBack.get(), nullptr);
      sync();
      expectSame(dS.download(), s, "to_storage " + what);
      expectSame(dBack.download(), back, "from_storage " + what);

      std::vector<T> r(s.size());
      cuda::host::relayout(d, L, L == 1 ? d.c : 1, sizeof(T), s.data(),
                           r.data());
      DeviceVec<T> dR(r.size());
      cuda::device::relayout(d, L, L == 1 ? d.c : 1, sizeof(T), dS.get(),
                             dR.get(), nullptr);
      sync();
      expectSame(dR.download(), r, "relayout " + what);
    }
}

TEST(CudaGpu, BiasConversionsAndRelayoutsMatchTheHostWalk) {
  biasOnGpu<float>(16);
  biasOnGpu<Bf16>(17);
  Rng rng(18);
  FVec f = rng.vec(1000003, -1e4f, 1e4f);
  f[0] = std::numeric_limits<float>::infinity();
  f[1] = std::numeric_limits<float>::quiet_NaN();
  f[2] = 0x1.fffffep127f; // overflows to inf
  f[3] = 0x1.018p0f;      // a tie, to even
  BVec b(f.size());
  FVec w(f.size());
  cuda::host::convert(int64_t(f.size()), f.data(), b.data());
  cuda::host::convert(int64_t(b.size()), b.data(), w.data());
  DeviceVec<float> dF(f), dW(w.size());
  DeviceVec<Bf16> dB(b.size());
  cuda::device::convert(int64_t(f.size()), dF.get(), dB.get(), nullptr);
  cuda::device::convert(int64_t(b.size()), dB.get(), dW.get(), nullptr);
  sync();
  expectSame(dB.download(), b, "convert to bf16");
  expectSame(dW.download(), w, "convert to f32");
}

TEST(CudaGpu, SgdWritesTheBf16CopyInItsLayoutLikeTheHostWalk) {
  Rng rng(19);
  Dims4 d{300, 5, 3, 3};
  int64_t count = d.count();
  FVec w = rng.vec(count), v(size_t(count), 0.0f), g = rng.vec(count);
  BVec copy(w.size());
  DeviceVec<float> dW(w), dV(v), dG(g);
  DeviceVec<Bf16> dC(copy.size());
  cuda::SgdTensor host, dev;
  host.w = w.data();
  host.grad = g.data();
  host.velocity = v.data();
  host.copy = copy.data();
  host.count = count;
  host.copyPlane = cuda::FastDiv(d.plane());
  host.copyLanes = cuda::FastDiv(d.c);
  dev = host;
  dev.w = dW.get();
  dev.grad = dG.get();
  dev.velocity = dV.get();
  dev.copy = dC.get();
  std::vector<cuda::SgdChunk> chunks = cuda::sgdChunks(&dev, 1);
  DeviceVec<cuda::SgdTensor> dTensors(std::vector<cuda::SgdTensor>{dev});
  DeviceVec<cuda::SgdChunk> dChunks(chunks);
  cuda::StepParams params;
  params.hyper = {0.01, 0.9, 5e-4};
  DeviceVec<cuda::StepParams> dParams(std::vector<cuda::StepParams>{params});
  cuda::host::sgdMomentum(&host, 1, params.hyper);
  cuda::device::sgdMomentum(dTensors.get(), dChunks.get(),
                            int64_t(chunks.size()), &dParams.get()->hyper,
                            nullptr);
  sync();
  expectSame(dW.download(), w, "sgd weights");
  expectSame(dC.download(), copy, "sgd bf16 copy");
}

/// Distance in units in the last place of T between two finite values of
/// the same storage type (their bits mapped to a monotonic integer line, so
/// that -0 and +0 are 0 apart and a step across zero counts).
int64_t ulpLine(float v) {
  int32_t i;
  std::memcpy(&i, &v, sizeof i);
  return i < 0 ? -int64_t(i & 0x7fffffff) : int64_t(i);
}
int64_t ulpLine(Bf16 v) {
  return v.bits & 0x8000 ? -int64_t(v.bits & 0x7fff) : int64_t(v.bits);
}
float widen(float v) { return v; }
float widen(Bf16 v) { return v.toFloat(); }

/// Within one ulp of T (or 1e-12 apart: a one-ulp difference of the double
/// pow can move a gradient that cancels to nearly zero by more than an ulp
/// of its tiny result).
template <typename T>
void expectWithinAnUlp(const std::vector<T> &got, const std::vector<T> &want,
                       const std::string &what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    int64_t d = ulpLine(got[i]) - ulpLine(want[i]);
    ASSERT_TRUE((d >= -1 && d <= 1) ||
                std::abs(widen(got[i]) - widen(want[i])) <= 1e-12f)
        << what << " differs at " << i << ": " << widen(got[i]) << " vs "
        << widen(want[i]);
  }
}

/// LRN forward and backward in storage T, NCHW and NHWC: the same double
/// arithmetic on both sides (-fmad=false), but pow comes from the device's
/// math library, whose last bit may differ from the host's: the results
/// are allowed one ulp of T. AlexNet's norm1 and norm2 maps, odd channel
/// counts, a window wider than the channels, batch 1.
template <typename T> void lrnOnGpu(uint64_t seed) {
  Rng rng(seed);
  auto params = [](int64_t size, double alpha, double beta, double k) {
    LrnParams p;
    p.size = size;
    p.alpha = alpha;
    p.beta = beta;
    p.k = k;
    return p;
  };
  struct Case {
    Dims4 d;
    LrnParams p;
  };
  LrnParams alex = params(5, 1e-4, 0.75, 1.0);
  std::vector<Case> cases{
      {{8, 96, 27, 27}, alex},
      {{4, 256, 13, 13}, alex},
      {{2, 5, 13, 13}, params(3, 2.0, 0.75, 2.0)},
      {{1, 7, 9, 11}, params(5, 1.0, 0.75, 2.0)},
      {{3, 3, 6, 6}, params(5, 1.5, 0.75, 1.0)},
  };
  for (const Case &c : cases)
    for (int64_t L : {int64_t(1), c.d.c}) {
      std::string what =
          std::string(typeName(T())) + " c " + std::to_string(c.d.c) +
          " size " + std::to_string(c.p.size) + " lanes " + std::to_string(L);
      std::vector<T> x = stored<T>(rng.vec(c.d.count(), -3.0f, 3.0f));
      std::vector<T> dy = stored<T>(rng.vec(c.d.count()));
      std::vector<T> y(x.size()), dx(x.size());
      cuda::host::lrnForward(c.d, L, c.p, x.data(), y.data());
      cuda::host::lrnBackward(c.d, L, c.p, x.data(), y.data(), dy.data(),
                              dx.data());
      // The backward gets the host's y, so both sides see the same inputs.
      DeviceVec<T> dX(x), dY(x.size()), dHostY(y), dDy(dy), dDx(x.size());
      cuda::device::lrnForward(c.d, L, c.p, dX.get(), dY.get(), nullptr);
      cuda::device::lrnBackward(c.d, L, c.p, dX.get(), dHostY.get(), dDy.get(),
                                dDx.get(), nullptr);
      sync();
      expectWithinAnUlp(dY.download(), y, "lrn " + what);
      expectWithinAnUlp(dDx.download(), dx, "lrn backward " + what);
    }
}

TEST(CudaGpu, LrnMatchesTheHostWalkWithinAnUlp) {
  lrnOnGpu<float>(20);
  lrnOnGpu<Bf16>(21);
}

/// Batch norm (training forward with the running statistics, inference,
/// backward) in storage T, NCHW and NHWC: the same passes of fixed shape on
/// both sides, double arithmetic with correctly rounded sqrt and division
/// (-fmad=false), so every output must be bit-identical to the host walk.
/// A ResNet-like and an AlexNet-like map, C = 3 with many chunks, odd
/// sizes, batch 1, a flat [N, F] map.
template <typename T> void batchNormOnGpu(uint64_t seed) {
  Rng rng(seed);
  const double eps = 1e-5, momentum = 0.9;
  for (const Dims4 &d : std::vector<Dims4>{{32, 64, 56, 56},
                                           {16, 96, 27, 27},
                                           {16, 3, 224, 224},
                                           {4, 5, 7, 9},
                                           {1, 16, 13, 11},
                                           {64, 10, 1, 1}})
    for (int64_t L : {int64_t(1), d.c}) {
      std::string what = std::string(typeName(T())) + " c " +
                         std::to_string(d.c) + " lanes " + std::to_string(L);
      size_t c = size_t(d.c);
      std::vector<T> x = stored<T>(rng.vec(d.count(), -2.0f, 6.0f));
      std::vector<T> dy = stored<T>(rng.vec(d.count()));
      FVec scale = rng.vec(d.c, 0.5f, 2.0f), shift = rng.vec(d.c);
      FVec runMean = rng.vec(d.c), runVar = rng.vec(d.c, 0.5f, 2.0f);
      DeviceVec<double> scratch(
          std::max<size_t>(cuda::batchNormScratchBytes(d) / sizeof(double), 1));
      DeviceVec<T> dX(x), dDy(dy);
      DeviceVec<float> dScale(scale), dShift(shift);

      std::vector<T> y(x.size());
      FVec rm = runMean, rv = runVar;
      cuda::host::batchNormForwardTraining(d, L, eps, momentum, x.data(),
                                           scale.data(), shift.data(),
                                           rm.data(), rv.data(), y.data());
      DeviceVec<T> dY(x.size());
      DeviceVec<float> dRm(runMean), dRv(runVar);
      cuda::device::batchNormForwardTraining(
          d, L, eps, momentum, dX.get(), dScale.get(), dShift.get(), dRm.get(),
          dRv.get(), dY.get(), scratch.get(), nullptr);
      sync();
      expectSame(dY.download(), y, "batch_norm " + what);
      expectSame(dRm.download(), rm, "batch_norm running mean " + what);
      expectSame(dRv.download(), rv, "batch_norm running variance " + what);

      std::vector<T> yInf(x.size());
      cuda::host::batchNormForwardInference(d, L, eps, x.data(), scale.data(),
                                            shift.data(), runMean.data(),
                                            runVar.data(), yInf.data());
      DeviceVec<float> dRunMean(runMean), dRunVar(runVar);
      DeviceVec<T> dYInf(x.size());
      cuda::device::batchNormForwardInference(
          d, L, eps, dX.get(), dScale.get(), dShift.get(), dRunMean.get(),
          dRunVar.get(), dYInf.get(), nullptr);
      sync();
      expectSame(dYInf.download(), yInf, "batch_norm inference " + what);

      std::vector<T> dx(x.size());
      FVec dscale(c), dshift(c);
      cuda::host::batchNormBackward(d, L, eps, x.data(), scale.data(),
                                    dy.data(), dx.data(), dscale.data(),
                                    dshift.data());
      DeviceVec<T> dDx(x.size());
      DeviceVec<float> dDscale(c), dDshift(c);
      cuda::device::batchNormBackward(d, L, eps, dX.get(), dScale.get(),
                                      dDy.get(), dDx.get(), dDscale.get(),
                                      dDshift.get(), scratch.get(), nullptr);
      sync();
      expectSame(dDx.download(), dx, "batch_norm_grad dx " + what);
      expectSame(dDscale.download(), dscale, "batch_norm_grad dscale " + what);
      expectSame(dDshift.download(), dshift, "batch_norm_grad dshift " + what);
    }
}

TEST(CudaGpu, BatchNormMatchesTheHostWalk) {
  batchNormOnGpu<float>(22);
  batchNormOnGpu<Bf16>(23);
}

} // namespace

int main(int argc, char **argv) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::puts("netc-gpu-tests: no CUDA device; skipping");
    return 0;
  }
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
