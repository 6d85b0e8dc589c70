//===- CudaKernelsHostTest.cpp - the cuda kernels' code, run on the CPU ---===//
//
// The cuda backend's own kernels (runtime/cuda/Kernels.h) walked on the host
// against the reference kernels: the per-element code the GPU runs, tested
// without a GPU. Pooling, unpooling, dropout, the elementwise kernels and
// the fp32 SGD update must agree bit for bit; the losses (reduced in a
// different order) to a few ulps, and bit for bit with themselves.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/Kernels.h"
#include "runtime/kernels/Reference.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

using namespace netc;
using namespace netc::kernels;
using FVec = std::vector<float>;
using IVec = std::vector<int32_t>;

namespace {

/// Deterministic uniform numbers, portable across standard libraries.
class Rng {
public:
  explicit Rng(uint64_t seed) : state(seed) {}
  uint64_t next() { return state = splitmix64(state); }
  float uniform(float lo = -1.0f, float hi = 1.0f) {
    return float(lo + (hi - lo) * double(next() >> 11) * 0x1.0p-53);
  }
  FVec vec(int64_t n, float lo = -1.0f, float hi = 1.0f) {
    FVec v(static_cast<size_t>(n));
    for (float &x : v)
      x = uniform(lo, hi);
    return v;
  }
  /// As after a ReLU: about half the elements exactly 0 (all-zero windows,
  /// ties everywhere), the others few distinct values (more ties).
  FVec relued(int64_t n) {
    FVec v(static_cast<size_t>(n));
    for (float &x : v)
      x = next() % 2 ? 0.0f : float(next() % 4) * 0.25f;
    return v;
  }

private:
  uint64_t state;
};

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

/// Bitwise equality (so that -0 != 0 and NaN == NaN of the same payload).
void expectBitEqual(const FVec &got, const FVec &want,
                    const std::string &what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_EQ(bits(got[i]), bits(want[i]))
        << what << " differs at " << i << ": " << got[i] << " vs " << want[i];
}

/// The pool geometries the tests walk: odd sizes, batch 1, padding, ceil
/// mode, and AlexNet's overlapping 3x3 stride 2.
struct PoolCase {
  Dims4 in;
  Window2D win;
  bool ceil;
};
std::vector<PoolCase> poolCases() {
  return {
      {{1, 1, 4, 4}, {2, 2, 2, 2, 0, 0}, false},
      {{2, 3, 8, 6}, {2, 2, 2, 2, 0, 0}, false},
      {{1, 3, 7, 9}, {2, 2, 2, 2, 0, 0}, false},   // odd: last row/col dropped
      {{1, 2, 7, 9}, {2, 2, 2, 2, 0, 0}, true},    // odd, ceil: partial windows
      {{2, 4, 13, 13}, {3, 3, 2, 2, 0, 0}, false}, // AlexNet pool1..5 style
      {{1, 3, 11, 15}, {3, 3, 2, 2, 0, 0}, true},  // overlapping, ceil
      {{3, 2, 9, 7}, {3, 3, 1, 1, 1, 1}, false},   // stride 1, padded
      {{1, 2, 10, 9}, {3, 2, 3, 2, 1, 1}, true},   // anisotropic, padded
      {{2, 1, 5, 5}, {5, 5, 1, 1, 2, 2}, false},   // windows mostly padding
      {{1, 2, 8, 9}, {2, 2, 3, 3, 0, 0}, false},   // stride > kernel: gaps
      {{2, 1, 8, 10}, {2, 3, 3, 4, 1, 1}, true},   // gaps, padded, ceil
  };
}

std::string name(const PoolCase &c) {
  return "in [" + std::to_string(c.in.n) + "," + std::to_string(c.in.c) + "," +
         std::to_string(c.in.h) + "," + std::to_string(c.in.w) + "] k" +
         std::to_string(c.win.kh) + "x" + std::to_string(c.win.kw) + " s" +
         std::to_string(c.win.sh) + "x" + std::to_string(c.win.sw) + " p" +
         std::to_string(c.win.ph) + "x" + std::to_string(c.win.pw) +
         (c.ceil ? " ceil" : "");
}

//===----------------------------------------------------------------------===//
// Max-pool and unpool
//===----------------------------------------------------------------------===//

TEST(CudaHostKernels, MaxPoolAndItsBackwardMatchReferenceIncludingTies) {
  Rng rng(1);
  for (const PoolCase &c : poolCases())
    for (bool relued : {false, true}) {
      PoolShape s = poolShape(c.in, c.win, c.ceil);
      FVec x = relued ? rng.relued(s.in.count()) : rng.vec(s.in.count());
      FVec y(size_t(s.out.count())), yRef(y.size());
      IVec sw(y.size(), -7), swRef(y.size(), -7);
      cuda::host::maxPoolForward(s, x.data(), y.data(), sw.data());
      ref::maxPoolForward(s, x.data(), yRef.data(), swRef.data());
      std::string what = name(c) + (relued ? " relued" : "");
      expectBitEqual(y, yRef, what);
      EXPECT_EQ(sw, swRef) << what;
      // Backward: the gradient goes through the recorded switches, summed
      // where windows share a maximum.
      FVec dy = rng.vec(s.out.count());
      FVec dx(static_cast<size_t>(s.in.count())), dxRef(dx.size());
      cuda::host::maxPoolBackward(s, dy.data(), sw.data(), dx.data());
      ref::maxPoolBackward(s, dy.data(), swRef.data(), dxRef.data());
      expectBitEqual(dx, dxRef, what + " backward");
      // Without switches, the same values.
      FVec y2(y.size());
      cuda::host::maxPoolForward(s, x.data(), y2.data(), nullptr);
      expectBitEqual(y2, yRef, what + " no switches");
    }
}

TEST(CudaHostKernels, MaxPoolAllZeroWindowRecordsFirstInInputPosition) {
  // A padded 3x3 window at the corner: its first in-input element is (0, 0)
  // of the input, not a padding position.
  PoolShape s = poolShape({1, 1, 4, 4}, {3, 3, 2, 2, 1, 1});
  FVec x(16, 0.0f), y(size_t(s.out.count()));
  IVec sw(y.size());
  cuda::host::maxPoolForward(s, x.data(), y.data(), sw.data());
  EXPECT_EQ(sw, (IVec{0, 1, 4, 5}));
}

TEST(CudaHostKernels, UnpoolFromSwitchesMatchesReference) {
  Rng rng(2);
  for (const PoolCase &c : poolCases())
    for (bool relued : {false, true})
      for (bool normalize : {false, true}) {
        PoolShape p = poolShape(c.in, c.win, c.ceil);
        FVec x = relued ? rng.relued(p.in.count()) : rng.vec(p.in.count());
        FVec pooled(size_t(p.out.count()));
        IVec sw(pooled.size());
        cuda::host::maxPoolForward(p, x.data(), pooled.data(), sw.data());
        UnpoolShape u =
            unpoolShape(p.out, c.win, p.in.h, p.in.w, 0, 0, normalize);
        // Unpool the pooled maxima (SWWAE) and unrelated values (decoder
        // activations) through the same switches.
        for (const FVec &v : {pooled, rng.vec(p.out.count())}) {
          FVec y(size_t(u.out.count())), yRef(y.size());
          cuda::host::unpoolForward(u, v.data(), sw.data(), y.data());
          ref::unpoolForward(u, v.data(), sw.data(), yRef.data());
          std::string what = name(c) + (relued ? " relued" : "") +
                             (normalize ? " normalize" : "");
          expectBitEqual(y, yRef, what);

          FVec dy = rng.vec(u.out.count());
          FVec dx(size_t(u.in.count())), dxRef(dx.size());
          cuda::host::unpoolBackward(u, dy.data(), sw.data(), dx.data());
          ref::unpoolBackward(u, dy.data(), sw.data(), dxRef.data());
          expectBitEqual(dx, dxRef, what + " backward");
        }
      }
}

TEST(CudaHostKernels, UnpoolFixedPositionMatchesReference) {
  Rng rng(3);
  for (const PoolCase &c : poolCases())
    for (bool normalize : {false, true})
      for (int64_t pos = 0; pos < 3; ++pos) {
        // recon-dec's kernel/2, and the corners of the window.
        int64_t posH = pos == 0 ? c.win.kh / 2 : pos == 1 ? 0 : c.win.kh - 1;
        int64_t posW = pos == 0 ? c.win.kw / 2 : pos == 1 ? c.win.kw - 1 : 0;
        PoolShape p = poolShape(c.in, c.win, c.ceil);
        UnpoolShape u =
            unpoolShape(p.out, c.win, p.in.h, p.in.w, posH, posW, normalize);
        FVec x = rng.vec(u.in.count());
        FVec y(size_t(u.out.count())), yRef(y.size());
        cuda::host::unpoolForward(u, x.data(), nullptr, y.data());
        ref::unpoolForward(u, x.data(), nullptr, yRef.data());
        std::string what = name(c) + " pos " + std::to_string(posH) + "," +
                           std::to_string(posW) +
                           (normalize ? " normalize" : "");
        expectBitEqual(y, yRef, what);

        FVec dy = rng.vec(u.out.count());
        FVec dx(size_t(u.in.count())), dxRef(dx.size());
        cuda::host::unpoolBackward(u, dy.data(), nullptr, dx.data());
        ref::unpoolBackward(u, dy.data(), nullptr, dxRef.data());
        expectBitEqual(dx, dxRef, what + " backward");
      }
}

TEST(CudaHostKernels, UnpoolOverlappingNormalizeDividesSharedPositions) {
  // AlexNet 3x3 stride 2 on a 5x5 map. All zero (after ReLU): every window
  // records its first element, no position is shared.
  PoolShape p = poolShape({1, 1, 5, 5}, {3, 3, 2, 2, 0, 0});
  FVec x(25, 0.0f), pooled(size_t(p.out.count()));
  IVec sw(pooled.size());
  cuda::host::maxPoolForward(p, x.data(), pooled.data(), sw.data());
  EXPECT_EQ(sw, (IVec{0, 2, 10, 12}));
  UnpoolShape u = unpoolShape(p.out, p.win, 5, 5, 0, 0, /*normalize=*/true);
  FVec v{2.0f, 4.0f, 6.0f, 8.0f}, y(25);
  cuda::host::unpoolForward(u, v.data(), sw.data(), y.data());
  EXPECT_EQ(y[0], 2.0f);
  EXPECT_EQ(y[2], 4.0f);
  EXPECT_EQ(y[12], 8.0f);
  EXPECT_EQ(y[1], 0.0f); // no window wrote it: 0 stays 0
  // The centre is in all four windows: one maximum there is every window's
  // switch, and the unpooled value is the mean of the four writes.
  x[12] = 1.0f;
  cuda::host::maxPoolForward(p, x.data(), pooled.data(), sw.data());
  EXPECT_EQ(sw, (IVec{12, 12, 12, 12}));
  cuda::host::unpoolForward(u, v.data(), sw.data(), y.data());
  EXPECT_EQ(y[12], 5.0f);
  EXPECT_EQ(y[0], 0.0f);
  FVec dy(25, 0.0f), dx(4);
  dy[12] = 1.0f;
  cuda::host::unpoolBackward(u, dy.data(), sw.data(), dx.data());
  EXPECT_EQ(dx, (FVec{0.25f, 0.25f, 0.25f, 0.25f}));
}

TEST(CudaHostKernels, UnpoolSwitchesSharedByWindowsAreNormalized) {
  // Stride 1: a single large value is every window's maximum, so all four
  // switches point at it; normalize averages, the backward divides.
  PoolShape p = poolShape({1, 1, 3, 3}, {2, 2, 1, 1, 0, 0});
  FVec x(9, 0.0f), pooled(4);
  x[4] = 5.0f;
  IVec sw(4);
  cuda::host::maxPoolForward(p, x.data(), pooled.data(), sw.data());
  EXPECT_EQ(sw, (IVec{4, 4, 4, 4}));
  UnpoolShape u = unpoolShape(p.out, p.win, 3, 3, 0, 0, true);
  FVec v{1.0f, 2.0f, 3.0f, 6.0f}, y(9), dx(4), dxRef(4);
  cuda::host::unpoolForward(u, v.data(), sw.data(), y.data());
  EXPECT_EQ(y[4], 3.0f);
  FVec dy(9, 0.0f);
  dy[4] = 8.0f;
  cuda::host::unpoolBackward(u, dy.data(), sw.data(), dx.data());
  ref::unpoolBackward(u, dy.data(), sw.data(), dxRef.data());
  EXPECT_EQ(dx, (FVec{2.0f, 2.0f, 2.0f, 2.0f}));
  expectBitEqual(dx, dxRef, "shared switch backward");
}

TEST(CudaHostKernels, UnpoolRejectsSwitchesAMaxPoolCannotWrite) {
  PoolShape p = poolShape({1, 1, 4, 4}, {2, 2, 2, 2, 0, 0});
  UnpoolShape u = unpoolShape(p.out, p.win, 4, 4);
  FVec v(4, 1.0f), y(16);
  IVec sw{0, 2, 8, 10};
  EXPECT_NO_THROW(cuda::host::unpoolForward(u, v.data(), sw.data(), y.data()));
  sw[1] = 0; // in the plane, outside window (0, 1)
  EXPECT_THROW(cuda::host::unpoolForward(u, v.data(), sw.data(), y.data()),
               KernelError);
  sw[1] = 16; // outside the plane
  EXPECT_THROW(cuda::host::unpoolBackward(u, y.data(), sw.data(), v.data()),
               KernelError);
  sw[1] = -1;
  EXPECT_THROW(cuda::host::unpoolForward(u, v.data(), sw.data(), y.data()),
               KernelError);
}

//===----------------------------------------------------------------------===//
// Losses
//===----------------------------------------------------------------------===//

/// Relative difference, for comparing a float loss with the double one.
double relDiff(double got, double want) {
  return std::abs(got - want) / std::max(std::abs(want), 1e-30);
}

std::vector<double> toDouble(const FVec &v) {
  return std::vector<double>(v.begin(), v.end());
}

TEST(CudaHostKernels, EuclideanLossMatchesDoubleReferenceAndIsDeterministic) {
  Rng rng(4);
  // Fewer elements than threads, not a multiple of anything, and several
  // strides of the reduction grid.
  for (auto [batch, count] : std::vector<std::pair<int64_t, int64_t>>{
           {1, 1}, {1, 5}, {3, 257}, {7, 65537}, {16, 1000003}}) {
    FVec a = rng.vec(count, -3.0f, 3.0f), b = rng.vec(count);
    float loss =
        cuda::host::euclideanLossForward(batch, count, a.data(), b.data());
    double want = ref::euclideanLossForward<double>(
        batch, count, toDouble(a).data(), toDouble(b).data());
    EXPECT_LT(relDiff(loss, want), 1e-6) << count;
    // Summed in double: within float rounding of the float reference too.
    EXPECT_LE(std::abs(loss - ref::euclideanLossForward<float>(
                                  batch, count, a.data(), b.data())),
              std::abs(loss) * 0x1.0p-23f)
        << count;
    float again =
        cuda::host::euclideanLossForward(batch, count, a.data(), b.data());
    EXPECT_EQ(bits(loss), bits(again)) << count;
  }
  FVec a{1.0f};
  EXPECT_THROW(cuda::host::euclideanLossForward(0, 1, a.data(), a.data()),
               KernelError);
}

TEST(CudaHostKernels, EuclideanLossBackwardMatchesReference) {
  Rng rng(5);
  for (auto [batch, count] :
       std::vector<std::pair<int64_t, int64_t>>{{1, 7}, {5, 1001}}) {
    FVec a = rng.vec(count), b = rng.vec(count);
    FVec da(static_cast<size_t>(count)), db(da.size()), daRef(da.size()),
        dbRef(da.size());
    cuda::host::euclideanLossBackward(batch, count, a.data(), b.data(), 0.37f,
                                      da.data(), db.data());
    ref::euclideanLossBackward(batch, count, a.data(), b.data(), 0.37f,
                               daRef.data(), dbRef.data());
    expectBitEqual(da, daRef, "da");
    expectBitEqual(db, dbRef, "db");
    // The image target gets no gradient.
    FVec da2(da.size());
    cuda::host::euclideanLossBackward(batch, count, a.data(), b.data(), 0.37f,
                                      da2.data(), nullptr);
    expectBitEqual(da2, daRef, "da without db");
  }
}

TEST(CudaHostKernels, SoftmaxCrossEntropyMatchesDoubleReference) {
  Rng rng(6);
  for (auto [n, k] : std::vector<std::pair<int64_t, int64_t>>{
           {1, 1}, {1, 10}, {7, 13}, {64, 1000}, {300, 10}}) {
    FVec logits = rng.vec(n * k, -8.0f, 8.0f);
    IVec labels(static_cast<size_t>(n));
    for (int32_t &l : labels)
      l = int32_t(rng.next() % uint64_t(k));
    float loss = cuda::host::softmaxCrossEntropyForward(n, k, logits.data(),
                                                        labels.data());
    double want = ref::softmaxCrossEntropyForward<double>(
        n, k, toDouble(logits).data(), labels.data());
    EXPECT_LT(relDiff(loss, want), 1e-6) << n << "x" << k;
    EXPECT_EQ(bits(loss), bits(cuda::host::softmaxCrossEntropyForward(
                              n, k, logits.data(), labels.data())));

    FVec d(logits.size()), dRef(d.size());
    cuda::host::softmaxCrossEntropyBackward(n, k, logits.data(), labels.data(),
                                            1.5f, d.data());
    ref::softmaxCrossEntropyBackward(n, k, logits.data(), labels.data(), 1.5f,
                                     dRef.data());
    expectBitEqual(d, dRef,
                   "dlogits " + std::to_string(n) + "x" + std::to_string(k));
  }
}

TEST(CudaHostKernels, SoftmaxCrossEntropyRejectsBadLabels) {
  FVec logits(6, 0.0f), d(6);
  IVec labels{0, 3};
  EXPECT_THROW(cuda::host::softmaxCrossEntropyForward(2, 3, logits.data(),
                                                      labels.data()),
               KernelError);
  EXPECT_THROW(cuda::host::softmaxCrossEntropyBackward(
                   2, 3, logits.data(), labels.data(), 1.0f, d.data()),
               KernelError);
  // What the device does instead of throwing: a NaN the trainer reports.
  cuda::SoftmaxCrossEntropyTerms<float> terms{2, 3, logits.data(),
                                              labels.data()};
  EXPECT_TRUE(std::isnan(terms(1)));
  EXPECT_FALSE(std::isnan(terms(0)));
}

//===----------------------------------------------------------------------===//
// Dropout, elementwise
//===----------------------------------------------------------------------===//

TEST(CudaHostKernels, DropoutUsesTheCpuMask) {
  Rng rng(7);
  for (int64_t count : {1, 17, 4099})
    for (double ratio : {0.0, 0.3, 0.5, 0.9})
      for (uint64_t step : {0ull, 1ull, 123456789ull}) {
        std::vector<uint8_t> mask(static_cast<size_t>(count));
        dropoutMask(42, step, count, ratio, mask.data());
        uint64_t key = cuda::dropoutKey(42, step);
        for (int64_t i = 0; i < count; ++i) {
          ASSERT_EQ(cuda::dropoutKeep(key, uint64_t(i), ratio), mask[i] != 0);
          ASSERT_EQ(cuda::dropoutUniformKeyed(key, uint64_t(i)),
                    dropoutUniform(42, step, uint64_t(i)));
        }
        FVec x = rng.vec(count), y(static_cast<size_t>(count)), yRef(y.size());
        cuda::host::dropout(count, ratio, 42, step, 0, x.data(), y.data());
        ref::dropoutForward(count, ratio, x.data(), mask.data(), yRef.data());
        expectBitEqual(y, yRef, "dropout forward");
        FVec dx(y.size()), dxRef(y.size());
        cuda::host::dropout(count, ratio, 42, step, 0, x.data(), dx.data());
        ref::dropoutBackward(count, ratio, x.data(), mask.data(), dxRef.data());
        expectBitEqual(dx, dxRef, "dropout backward");
        // In place.
        cuda::host::dropout(count, ratio, 42, step, 0, x.data(), x.data());
        expectBitEqual(x, yRef, "dropout in place");
        // A slice of a larger mask (a data-parallel rank's).
        std::vector<uint8_t> slice(mask.size());
        dropoutMask(42, step, count, ratio, slice.data(), 1000);
        FVec z(y.size()), zRef(y.size());
        cuda::host::dropout(count, ratio, 42, step, 1000, dx.data(), z.data());
        ref::dropoutForward(count, ratio, dx.data(), slice.data(), zRef.data());
        expectBitEqual(z, zRef, "dropout of a slice");
      }
  FVec x(1);
  EXPECT_THROW(cuda::host::dropout(1, 1.0, 1, 1, 0, x.data(), x.data()),
               KernelError);
  EXPECT_THROW(cuda::host::dropout(1, -0.1, 1, 1, 0, x.data(), x.data()),
               KernelError);
}

TEST(CudaHostKernels, ElementwiseMatchReference) {
  Rng rng(8);
  for (int64_t count : {1, 31, 1025}) {
    FVec x = rng.vec(count), y = rng.relued(count), dy = rng.vec(count);
    x[0] = -0.0f;
    FVec out(static_cast<size_t>(count)), want(out.size());
    cuda::host::relu(count, x.data(), out.data());
    ref::reluForward(count, x.data(), want.data());
    expectBitEqual(out, want, "relu");
    cuda::host::reluGrad(count, y.data(), dy.data(), out.data());
    ref::reluBackward(count, y.data(), dy.data(), want.data());
    expectBitEqual(out, want, "relu_grad");
    cuda::host::add(count, x.data(), dy.data(), out.data());
    ref::add(count, x.data(), dy.data(), want.data());
    expectBitEqual(out, want, "add");
    cuda::host::scale(count, x.data(), 0.1f, out.data());
    for (int64_t i = 0; i < count; ++i)
      want[size_t(i)] = x[size_t(i)] * 0.1f;
    expectBitEqual(out, want, "scale");
    // In place, as the plan may ask.
    FVec inPlace = x;
    cuda::host::relu(count, inPlace.data(), inPlace.data());
    ref::reluForward(count, x.data(), want.data());
    expectBitEqual(inPlace, want, "relu in place");
  }
}

//===----------------------------------------------------------------------===//
// bf16 and the fused SGD update
//===----------------------------------------------------------------------===//

/// Round to nearest, ties to even, written differently from Bf16::fromFloat:
/// pick the nearer of the two bf16 neighbours by exact double arithmetic.
uint16_t roundBf16(float f) {
  if (std::isnan(f))
    return uint16_t((bits(f) >> 16) | 0x0040);
  uint32_t u = bits(f);
  uint16_t down = uint16_t(u >> 16); // towards zero
  if ((u & 0xFFFF) == 0)
    return down;
  uint16_t up = uint16_t(down + 1); // away from zero (may become inf)
  auto value = [](uint16_t b) {
    if ((b & 0x7FFF) == 0x7F80) // inf: the "next" value past the largest
      return (b & 0x8000 ? -1.0 : 1.0) * std::ldexp(1.0, 128);
    uint32_t w = uint32_t(b) << 16;
    float g;
    std::memcpy(&g, &w, sizeof g);
    return double(g);
  };
  double dd = std::abs(double(f) - value(down)),
         du = std::abs(value(up) - double(f));
  if (dd < du)
    return down;
  if (du < dd)
    return up;
  return (down & 1) ? up : down;
}

TEST(CudaHostKernels, ObjectiveMatchesReference) {
  Rng rng(11);
  for (int64_t count : {1, 2, 5}) {
    FVec terms = rng.vec(count, 0.0f, 10.0f);
    std::vector<double> weights;
    std::vector<cuda::ObjectiveTerm> list;
    for (int64_t i = 0; i < count; ++i) {
      weights.push_back(i == 0 ? 1.0 : std::pow(10.0, -double(i) * 3));
      list.push_back({&terms[size_t(i)], weights.back()});
    }
    float want = ref::objectiveForward(count, terms.data(), weights.data());
    float got = cuda::host::objective(list.data(), count);
    ASSERT_EQ(bits(got), bits(want)) << count << " terms";
  }
}

TEST(CudaHostKernels, Bf16RoundsToNearestEven) {
  auto fromBits = [](uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
  };
  // Exact, ties to even both ways, just off ties, signs, denormals, the
  // largest float (rounds to inf), inf, NaN.
  std::vector<uint32_t> special{
      0x00000000, 0x80000000, 0x3F800000, 0x3F808000, 0x3F818000, 0x3F808001,
      0x3F817FFF, 0xBF808000, 0xBF818000, 0x00000001, 0x00008000, 0x00018000,
      0x007FFFFF, 0x7F7F7FFF, 0x7F7F8000, 0x7F7FFFFF, 0xFF7FFFFF, 0x7F800000,
      0xFF800000, 0x7FC00000, 0x7F800001, 0xFFC12345};
  Rng rng(9);
  for (int i = 0; i < 100000; ++i)
    special.push_back(uint32_t(rng.next()));
  for (uint32_t u : special) {
    float f = fromBits(u);
    cuda::Bf16 b = cuda::Bf16::fromFloat(f);
    ASSERT_EQ(b.bits, roundBf16(f)) << std::hex << u;
    if (!std::isnan(f)) {
      float back = b.toFloat();
      cuda::Bf16 again = cuda::Bf16::fromFloat(back);
      ASSERT_EQ(again.bits, b.bits) << std::hex << u; // exact round trip
    } else {
      ASSERT_TRUE(std::isnan(b.toFloat())) << std::hex << u;
    }
  }
  EXPECT_EQ(cuda::Bf16::fromFloat(fromBits(0x3F808000)).bits, 0x3F80);
  EXPECT_EQ(cuda::Bf16::fromFloat(fromBits(0x3F818000)).bits, 0x3F82);
  EXPECT_EQ(cuda::Bf16::fromFloat(fromBits(0x7F7FFFFF)).bits, 0x7F80);
}

TEST(CudaHostKernels, SgdMomentumMatchesReferenceAndWritesBf16Copies) {
  Rng rng(10);
  // Sizes around the chunk length, a bias-sized one, an empty one.
  std::vector<int64_t> sizes{
      1, cuda::kSgdChunk - 1, cuda::kSgdChunk, cuda::kSgdChunk + 1, 0, 10007,
      3};
  std::vector<double> lrMult{1, 2, 1, 2, 1, 1, 0.5},
      decayMult{1, 0, 1, 0, 1, 1, 2};
  size_t n = sizes.size();
  std::vector<FVec> w(n), g(n), v(n), wRef(n), vRef(n);
  std::vector<std::vector<cuda::Bf16>> copy(n);
  std::vector<cuda::SgdTensor> tensors(n);
  for (size_t t = 0; t < n; ++t) {
    w[t] = rng.vec(sizes[t]);
    v[t] = rng.vec(sizes[t], -0.01f, 0.01f);
    wRef[t] = w[t];
    vRef[t] = v[t];
    copy[t].resize(size_t(sizes[t]));
    tensors[t] = {
        w[t].data(), nullptr,   v[t].data(), t % 2 ? nullptr : copy[t].data(),
        sizes[t],    lrMult[t], decayMult[t]};
  }
  for (int step = 0; step < 3; ++step) {
    cuda::SgdHyper hyper{0.01 / (step + 1), 0.9, 5e-4};
    for (size_t t = 0; t < n; ++t) {
      g[t] = rng.vec(sizes[t]);
      tensors[t].grad = g[t].data();
      ref::sgdUpdate(sizes[t], wRef[t].data(), g[t].data(), vRef[t].data(),
                     hyper.lr, hyper.momentum, hyper.decay, lrMult[t],
                     decayMult[t]);
    }
    cuda::host::sgdMomentum(tensors.data(), int64_t(n), hyper);
    for (size_t t = 0; t < n; ++t) {
      std::string what =
          "tensor " + std::to_string(t) + " step " + std::to_string(step);
      expectBitEqual(w[t], wRef[t], what + " weights");
      expectBitEqual(v[t], vRef[t], what + " momentum");
      if (t % 2 == 0) {
        for (size_t i = 0; i < w[t].size(); ++i)
          ASSERT_EQ(copy[t][i].bits, roundBf16(w[t][i])) << what << " " << i;
      }
    }
  }
}

TEST(CudaHostKernels, SgdChunksCoverEveryElementOnce) {
  std::vector<cuda::SgdTensor> tensors(3);
  tensors[0].count = 2 * cuda::kSgdChunk + 5;
  tensors[1].count = 0;
  tensors[2].count = 1;
  std::vector<cuda::SgdChunk> chunks = cuda::sgdChunks(tensors.data(), 3);
  ASSERT_EQ(chunks.size(), 4u);
  EXPECT_EQ(chunks[2].end - chunks[2].begin, 5);
  EXPECT_EQ(chunks[3].tensor, 2);
  EXPECT_EQ(chunks[3].end, 1);
}

} // namespace
