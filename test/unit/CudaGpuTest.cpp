//===- CudaGpuTest.cpp - the cuda kernels on a GPU against the host walk --===//
//
// netc-gpu-tests: every device launcher of runtime/cuda/Launch.h on the GPU
// against its host launcher (which CudaKernelsHostTest checks against the
// reference kernels). The same per-element code on both sides, so results
// must be bit-identical; only softmax cross-entropy, whose exp and log come
// from two math libraries, gets a tolerance. Built with NETC_WITH_CUDA; with
// no GPU it prints one line and succeeds.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/Launch.h"

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

using namespace netc;
using namespace netc::kernels;
using FVec = std::vector<float>;
using IVec = std::vector<int32_t>;

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
        IVec sw(y.size());
        cuda::host::maxPoolForward(p, x.data(), y.data(), sw.data());
        DeviceVec<float> dX(x), dY(y.size());
        DeviceVec<int32_t> dSw(sw.size());
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
          const int32_t *hs = fixed ? nullptr : sw.data();
          const int32_t *ds = fixed ? nullptr : dSw.get();
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
    DeviceVec<double> lse(static_cast<size_t>(n));
    float want = cuda::host::softmaxCrossEntropyForward(n, k, logits.data(),
                                                        labels.data());
    cuda::device::softmaxCrossEntropyForward(
        n, k, dL.get(), dLabels.get(), partials.get(), loss.get(), nullptr);
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

  cuda::host::dropout(count, 0.5, 7, 11, 64, x.data(), out.data());
  cuda::device::dropout(count, 0.5, 7, 11, 64, dX.get(), dOut.get(), nullptr);
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
    cuda::SgdHyper hyper{0.01, 0.9, 5e-4};
    cuda::host::sgdMomentum(host.data(), int64_t(n), hyper);
    cuda::device::sgdMomentum(dTensors.get(), dChunks.get(),
                              int64_t(chunks.size()), hyper, nullptr);
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
