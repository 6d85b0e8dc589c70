//===- CudaKernelsHostTest.cpp - the cuda kernels' code, run on the CPU ---===//
//
// The cuda backend's own kernels (runtime/cuda/Kernels.h) walked on the host
// against the reference kernels: the per-element code the GPU runs, tested
// without a GPU. Pooling, unpooling, dropout, the elementwise kernels and
// the fp32 SGD update must agree bit for bit; the losses (reduced in a
// different order) to a few ulps, and bit for bit with themselves.
//
// bf16 storage: a kernel on bf16 data must give the reference's result on
// the widened (exact f32) data, rounded to bf16, bit for bit (the losses'
// scalars, f32, within the f32 kernel's tolerance, and bit for bit with the
// f32 kernel on the widened data). NHWC (lanes = C): the same results as
// NCHW, element for element, on transposed data. LRN does the reference's
// double arithmetic operation for operation, so it too matches bit for bit
// (f32 and bf16, every layout). Batch norm does too but sums each channel
// in its own fixed order: within one ulp of T of the reference (on the
// tests' data, bit for bit), and bit for bit across storage and layouts.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/Kernels.h"
#include "runtime/kernels/Reference.h"
#include "test/unit/Switches.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

using namespace netc;
using namespace netc::kernels;
using FVec = std::vector<float>;
using IVec = std::vector<int32_t>;
using SVec = netc::testing::SwitchVec;
using netc::testing::positions;

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

/// Calls f(u, fixed) for the unpools of pool case c (shape s): through the
/// switches, and at recon-dec's fixed position kernel/2 and at the window's
/// last corner, each normalized and not.
template <typename F>
void forEachUnpool(const PoolCase &c, const PoolShape &s, F &&f) {
  for (bool normalize : {false, true})
    for (int mode = 0; mode < 3; ++mode) {
      int64_t posH = mode == 1 ? c.win.kh / 2 : c.win.kh - 1;
      int64_t posW = mode == 1 ? c.win.kw / 2 : c.win.kw - 1;
      f(unpoolShape(s.out, c.win, s.in.h, s.in.w, posH, posW, normalize),
        mode > 0);
    }
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
      SVec sw(y.size(), 0xF9), swRef(y.size(), 0xF9);
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
  SVec sw(y.size());
  cuda::host::maxPoolForward(s, x.data(), y.data(), sw.data());
  EXPECT_EQ(positions(s, sw), (IVec{0, 1, 4, 5}));
}

TEST(CudaHostKernels, UnpoolFromSwitchesMatchesReference) {
  Rng rng(2);
  for (const PoolCase &c : poolCases())
    for (bool relued : {false, true})
      for (bool normalize : {false, true}) {
        PoolShape p = poolShape(c.in, c.win, c.ceil);
        FVec x = relued ? rng.relued(p.in.count()) : rng.vec(p.in.count());
        FVec pooled(size_t(p.out.count()));
        SVec sw(pooled.size());
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
  SVec sw(pooled.size());
  cuda::host::maxPoolForward(p, x.data(), pooled.data(), sw.data());
  EXPECT_EQ(positions(p, sw), (IVec{0, 2, 10, 12}));
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
  EXPECT_EQ(positions(p, sw), (IVec{12, 12, 12, 12}));
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
  SVec sw(4);
  cuda::host::maxPoolForward(p, x.data(), pooled.data(), sw.data());
  EXPECT_EQ(positions(p, sw), (IVec{4, 4, 4, 4}));
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
  SVec sw{0, 1, 2, 3};
  EXPECT_NO_THROW(cuda::host::unpoolForward(u, v.data(), sw.data(), y.data()));
  sw[1] = 4; // outside the 2x2 window
  EXPECT_THROW(cuda::host::unpoolForward(u, v.data(), sw.data(), y.data()),
               KernelError);
  EXPECT_THROW(cuda::host::unpoolBackward(u, y.data(), sw.data(), v.data()),
               KernelError);
  // Windows reaching into the padding: (0, 0)'s position 0 is (-1, -1),
  // outside the plane.
  PoolShape padded = poolShape({1, 1, 3, 3}, {2, 2, 2, 2, 1, 1});
  UnpoolShape up = unpoolShape(padded.out, padded.win, 3, 3);
  SVec inside{3, 2, 1, 0};
  EXPECT_NO_THROW(
      cuda::host::unpoolForward(up, v.data(), inside.data(), y.data()));
  SVec outside{0, 2, 1, 0};
  EXPECT_THROW(
      cuda::host::unpoolForward(up, v.data(), outside.data(), y.data()),
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

TEST(CudaHostKernels, SoftmaxShapeCoversEachRowOnce) {
  // VGG-16's 1000 classes: 32 segments of 32; Fashion-MNIST's 10: 3 of 4.
  EXPECT_EQ(cuda::softmaxShape(1000).segLen, 32);
  EXPECT_EQ(cuda::softmaxShape(1000).segs, 32);
  EXPECT_EQ(cuda::softmaxShape(10).segLen, 4);
  EXPECT_EQ(cuda::softmaxShape(10).segs, 3);
  for (int64_t k = 1; k <= 5000; ++k) {
    cuda::SoftmaxShape s = cuda::softmaxShape(k);
    ASSERT_GE(s.segLen * s.segLen, k) << k;
    ASSERT_TRUE(s.segLen == 1 || (s.segLen / 2) * (s.segLen / 2) < k) << k;
    ASSERT_LT(s.segLen * (s.segs - 1), k) << k; // no empty segment
    ASSERT_GE(s.segLen * s.segs, k) << k;       // every logit in one
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
  // What the device does instead of throwing: a NaN the trainer reports,
  // in the bad row's log-sum-exp and loss term alone.
  std::vector<double> scratch(cuda::softmaxLseScratchBytes(2, 3) /
                              sizeof(double));
  const double *lse =
      cuda::softmaxRowLse(2, 3, logits.data(), labels.data(), scratch.data(),
                          [](const auto &f) { cuda::runOnHost(f); });
  EXPECT_TRUE(std::isnan(lse[1]));
  EXPECT_EQ(lse[0], std::log(3.0));
  cuda::SoftmaxCrossEntropyTerms<float> terms{2, 3, logits.data(),
                                              labels.data(), lse};
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

// Four elements an item, 16 bytes at a time where the arrays are aligned,
// one at a time where one is not (here the weights, gradient or momentum
// start 1-3 floats into their buffer): the reference's bits either way,
// chunk ends included.
TEST(CudaHostKernels, SgdMomentumAlignedOrNotGivesTheReferencesBits) {
  Rng rng(11);
  const int64_t count = cuda::kSgdChunk + 7;
  for (int shift = 0; shift < 4; ++shift)
    for (int which = 0; which < 3; ++which) {
      FVec wb = rng.vec(count + 4), vb = rng.vec(count + 4, -0.01f, 0.01f),
           gb = rng.vec(count + 4);
      float *w = wb.data() + (which == 0 ? shift : 0);
      float *v = vb.data() + (which == 1 ? shift : 0);
      float *g = gb.data() + (which == 2 ? shift : 0);
      FVec wRef(w, w + count), vRef(v, v + count);
      std::vector<cuda::Bf16> copy(static_cast<size_t>(count));
      cuda::SgdTensor t{w, g, v, copy.data(), count, 2.0, 1.0};
      cuda::SgdHyper hyper{0.01, 0.9, 5e-4};
      ref::sgdUpdate(count, wRef.data(), g, vRef.data(), hyper.lr,
                     hyper.momentum, hyper.decay, 2.0, 1.0);
      cuda::host::sgdMomentum(&t, 1, hyper);
      std::string what = "shift " + std::to_string(shift) + " of array " +
                         std::to_string(which);
      expectBitEqual(FVec(w, w + count), wRef, what + " weights");
      expectBitEqual(FVec(v, v + count), vRef, what + " momentum");
      for (int64_t i = 0; i < count; ++i)
        ASSERT_EQ(copy[size_t(i)].bits, roundBf16(w[i])) << what << " " << i;
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

//===----------------------------------------------------------------------===//
// bf16 storage and NHWC layout
//===----------------------------------------------------------------------===//

using Bf16 = cuda::Bf16;
using BVec = std::vector<Bf16>;

/// `v` in storage type T: float as it is, bf16 rounded to nearest even.
template <typename T> std::vector<T> stored(const FVec &v);
template <> FVec stored<float>(const FVec &v) { return v; }
template <> BVec stored<Bf16>(const FVec &v) {
  BVec b(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    b[i] = Bf16::fromFloat(v[i]);
  return b;
}

/// Storage widened to f32 (exact).
FVec widened(const FVec &v) { return v; }
FVec widened(const BVec &v) {
  FVec f(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    f[i] = v[i].toFloat();
  return f;
}

/// `v` rounded to T and widened back: the inputs a T kernel sees, and what
/// a reference result becomes when a T kernel stores it.
template <typename T> FVec rounded(const FVec &v) {
  return widened(stored<T>(v));
}

const char *typeName(float) { return "f32"; }
const char *typeName(Bf16) { return "bf16"; }

/// NCHW `v` of dims `d` in the layout with channel block `lanes` (C: NHWC),
/// with a loop written independently of planeAt: element (n, c, p) of a
/// group of `lanes` channels is at ((n * C/lanes + c/lanes) * plane + p) *
/// lanes + c % lanes.
size_t laneIndex(const Dims4 &d, int64_t lanes, int64_t n, int64_t c,
                 int64_t p) {
  return size_t(((n * (d.c / lanes) + c / lanes) * d.plane() + p) * lanes +
                c % lanes);
}
template <typename E>
std::vector<E> toLanes(const Dims4 &d, int64_t lanes, const std::vector<E> &v) {
  std::vector<E> out(v.size());
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t c = 0; c < d.c; ++c)
      for (int64_t p = 0; p < d.plane(); ++p)
        out[laneIndex(d, lanes, n, c, p)] =
            v[size_t((n * d.c + c) * d.plane() + p)];
  return out;
}
template <typename E>
std::vector<E> fromLanes(const Dims4 &d, int64_t lanes,
                         const std::vector<E> &v) {
  std::vector<E> out(v.size());
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t c = 0; c < d.c; ++c)
      for (int64_t p = 0; p < d.plane(); ++p)
        out[size_t((n * d.c + c) * d.plane() + p)] =
            v[laneIndex(d, lanes, n, c, p)];
  return out;
}

TEST(CudaHostKernels, PlaneAtWithLanesCIsNhwc) {
  Dims4 d{2, 5, 3, 4};
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t c = 0; c < d.c; ++c)
      for (int64_t p = 0; p < d.plane(); ++p) {
        int64_t at = cuda::planeAt(n * d.c + c, d.plane(), p, d.c);
        ASSERT_EQ(at, (n * d.plane() + p) * d.c + c);
        ASSERT_EQ(size_t(at), laneIndex(d, d.c, n, c, p));
        int64_t nc, q;
        cuda::planeItem(at, d.plane(), d.c, nc, q);
        ASSERT_EQ(nc, n * d.c + c);
        ASSERT_EQ(q, p);
      }
}

/// Max-pool forward and backward, unpool through switches and at a fixed
/// position, with and without normalize, in storage T and layout NCHW or
/// NHWC, against the reference on the widened NCHW data.
template <typename T> void checkPooling(bool nhwc, uint64_t seed) {
  Rng rng(seed);
  std::vector<PoolCase> cases = poolCases();
  // Five channels: NHWC with a channel count no power of two (and three
  // in the cases above).
  cases.push_back({{2, 5, 7, 9}, {3, 3, 2, 2, 0, 0}, true});
  cases.push_back({{1, 5, 6, 6}, {2, 2, 2, 2, 0, 0}, false});
  cases.push_back({{3, 5, 5, 4}, {2, 2, 1, 1, 0, 0}, false});
  for (const PoolCase &c : cases)
    for (bool relued : {false, true}) {
      PoolShape s = poolShape(c.in, c.win, c.ceil);
      int64_t L = nhwc ? c.in.c : 1;
      std::string what = std::string(typeName(T())) + (nhwc ? " nhwc " : " ") +
                         name(c) + (relued ? " relued" : "");
      FVec x =
          rounded<T>(relued ? rng.relued(s.in.count()) : rng.vec(s.in.count()));
      FVec yRef(size_t(s.out.count()));
      SVec swRef(yRef.size(), 0xF9);
      ref::maxPoolForward(s, x.data(), yRef.data(), swRef.data());

      std::vector<T> xs = stored<T>(toLanes(s.in, L, x)), ys(yRef.size());
      SVec sw(yRef.size(), 0xF9);
      cuda::host::maxPoolForward(s, xs.data(), ys.data(), sw.data(), L);
      expectBitEqual(fromLanes(s.out, L, widened(ys)), rounded<T>(yRef), what);
      ASSERT_EQ(fromLanes(s.out, L, sw), swRef) << what;

      FVec dy = rounded<T>(rng.vec(s.out.count()));
      FVec dxRef(size_t(s.in.count()));
      ref::maxPoolBackward(s, dy.data(), swRef.data(), dxRef.data());
      std::vector<T> dys = stored<T>(toLanes(s.out, L, dy)), dx(dxRef.size());
      cuda::host::maxPoolBackward(s, dys.data(), sw.data(), dx.data(), L);
      expectBitEqual(fromLanes(s.in, L, widened(dx)), rounded<T>(dxRef),
                     what + " backward");

      forEachUnpool(c, s, [&](const UnpoolShape &u, bool fixed) {
        std::string how = what +
                          (fixed ? " fixed " + std::to_string(u.posH) + "," +
                                       std::to_string(u.posW)
                                 : " switches") +
                          (u.normalize ? " normalize" : "");
        const kernels::Switch *hs = fixed ? nullptr : sw.data();
        const kernels::Switch *rs = fixed ? nullptr : swRef.data();
        // The pooled maxima (SWWAE) and unrelated values.
        for (const FVec &v : {yRef, rounded<T>(rng.vec(u.in.count()))}) {
          FVec upRef(size_t(u.out.count()));
          ref::unpoolForward(u, v.data(), rs, upRef.data());
          std::vector<T> vs = stored<T>(toLanes(u.in, L, v)), up(upRef.size());
          cuda::host::unpoolForward(u, vs.data(), hs, up.data(), L);
          expectBitEqual(fromLanes(u.out, L, widened(up)), rounded<T>(upRef),
                         how);
        }
        FVec g = rounded<T>(rng.vec(u.out.count()));
        FVec gxRef(size_t(u.in.count()));
        ref::unpoolBackward(u, g.data(), rs, gxRef.data());
        std::vector<T> gs = stored<T>(toLanes(u.out, L, g)), gx(gxRef.size());
        cuda::host::unpoolBackward(u, gs.data(), hs, gx.data(), L);
        expectBitEqual(fromLanes(u.in, L, widened(gx)), rounded<T>(gxRef),
                       how + " backward");
      });
    }
}

TEST(CudaHostKernels, Bf16PoolingAndUnpoolingMatchReference) {
  checkPooling<Bf16>(false, 21);
}

TEST(CudaHostKernels, NhwcPoolingAndUnpoolingMatchReference) {
  checkPooling<float>(true, 22);
  checkPooling<Bf16>(true, 23);
}

/// Average pooling forward and backward (Caffe's divisor: the window
/// clipped to the padded input; ceil mode's last windows), in storage T and
/// layout NCHW or NHWC, against the reference on the widened NCHW data: the
/// same sums in the same order, so the same bits.
template <typename T> void checkAvgPooling(bool nhwc, uint64_t seed) {
  Rng rng(seed);
  std::vector<PoolCase> cases = poolCases();
  cases.push_back({{2, 5, 7, 9}, {3, 3, 2, 2, 1, 1}, true});
  cases.push_back({{3, 6, 2, 2}, {2, 2, 2, 2, 0, 0}, false}); // to one pixel
  for (const PoolCase &c : cases) {
    PoolShape s = poolShape(c.in, c.win, c.ceil);
    int64_t L = nhwc ? c.in.c : 1;
    std::string what = std::string(typeName(T())) + (nhwc ? " nhwc " : " ") +
                       "avg_pool " + name(c);
    FVec x = rounded<T>(rng.vec(s.in.count()));
    FVec yRef(size_t(s.out.count()));
    ref::avgPoolForward(s, x.data(), yRef.data());
    std::vector<T> xs = stored<T>(toLanes(s.in, L, x)), ys(yRef.size());
    cuda::host::avgPoolForward(s, xs.data(), ys.data(), L);
    expectBitEqual(fromLanes(s.out, L, widened(ys)), rounded<T>(yRef), what);

    FVec dy = rounded<T>(rng.vec(s.out.count()));
    FVec dxRef(size_t(s.in.count()));
    ref::avgPoolBackward(s, dy.data(), dxRef.data());
    std::vector<T> dys = stored<T>(toLanes(s.out, L, dy)), dx(dxRef.size());
    cuda::host::avgPoolBackward(s, dys.data(), dx.data(), L);
    expectBitEqual(fromLanes(s.in, L, widened(dx)), rounded<T>(dxRef),
                   what + " backward");
  }
}

TEST(CudaHostKernels, AvgPoolingMatchesReferenceInEveryLayout) {
  checkAvgPooling<float>(false, 24);
  checkAvgPooling<Bf16>(false, 25);
  checkAvgPooling<float>(true, 26);
  checkAvgPooling<Bf16>(true, 27);
}

TEST(CudaHostKernels, AvgPoolDividesByTheWindowClippedToThePaddedInput) {
  // 3x3 input, 2x2 windows of stride 2, ceil mode: the windows at row and
  // column 2 pass the input (no padding), so they divide by 2 and 1.
  PoolShape s = poolShape({1, 1, 3, 3}, {2, 2, 2, 2, 0, 0}, true);
  ASSERT_EQ(s.out.h, 2);
  FVec x{1, 2, 3, 4, 5, 6, 7, 8, 9}, y(4);
  cuda::host::avgPoolForward(s, x.data(), y.data());
  EXPECT_EQ(y, (FVec{3.0f, 4.5f, 7.5f, 9.0f}));
  FVec dy{4, 2, 2, 1}, dx(9);
  cuda::host::avgPoolBackward(s, dy.data(), dx.data());
  EXPECT_EQ(dx, (FVec{1, 1, 1, 1, 1, 1, 1, 1, 1}));
}

TEST(CudaHostKernels, Bf16MaxPoolTiesAreTiesOfTheRoundedValues) {
  // 1 + 2^-10 < 1 + 2^-9 in f32, both 1.0 in bf16 (8 significant bits): the
  // window's first element is its maximum, as the reference finds on the
  // widened values.
  PoolShape s = poolShape({1, 1, 2, 4}, {2, 2, 2, 2, 0, 0});
  FVec x{1.0f + 0x1.0p-10f, 1.0f + 0x1.0p-9f, -1.0f, 0.5f, 0.0f, 0.0f, 0.5f,
         0.5f + 0x1.0p-12f};
  BVec xs = stored<Bf16>(x), ys(2);
  SVec sw(2);
  cuda::host::maxPoolForward(s, xs.data(), ys.data(), sw.data());
  EXPECT_EQ(positions(s, sw), (IVec{0, 3}));
  EXPECT_EQ(widened(ys), (FVec{1.0f, 0.5f}));
  // f32 storage keeps them apart.
  FVec y(2);
  cuda::host::maxPoolForward(s, x.data(), y.data(), sw.data());
  EXPECT_EQ(positions(s, sw), (IVec{1, 7}));
}

TEST(CudaHostKernels, NhwcSwitchesAreCheckedWhereTheyAreStored) {
  // Two channels of a 3x3 map, 2x2 windows of stride 2 with padding 1 (they
  // start at (-1, -1), (-1, 1), (1, -1), (1, 1)): which positions name an
  // input element depends on the window, and NHWC switches interleave the
  // channels.
  PoolShape p = poolShape({1, 2, 3, 3}, {2, 2, 2, 2, 1, 1});
  UnpoolShape u = unpoolShape(p.out, p.win, 3, 3);
  SVec nchw{3, 2, 1, 0, 3, 3, 3, 3};
  SVec nhwc = toLanes(p.out, 2, nchw);
  EXPECT_EQ(nhwc, (SVec{3, 3, 2, 3, 1, 3, 0, 3}));
  FVec v(8, 1.0f), y(18);
  EXPECT_NO_THROW(
      cuda::host::unpoolForward(u, v.data(), nhwc.data(), y.data(), 2));
  // Read as NCHW, channel 0's pooled (1, 0) would get position 2, (2, -1):
  // in the padding.
  EXPECT_THROW(cuda::host::unpoolForward(u, v.data(), nhwc.data(), y.data()),
               KernelError);
  nhwc[3] = 0; // channel 1's pooled (0, 1) naming (-1, 1)
  EXPECT_THROW(
      cuda::host::unpoolBackward(u, y.data(), nhwc.data(), v.data(), 2),
      KernelError);
  // Lanes must divide the channels.
  EXPECT_THROW(
      cuda::host::maxPoolForward(p, y.data(), v.data(), nhwc.data(), 3),
      KernelError);
}

TEST(CudaHostKernels, Bf16ElementwiseAndDropoutMatchReferenceRounded) {
  Rng rng(24);
  for (int64_t count : {1, 31, 1025}) {
    FVec x = rounded<Bf16>(rng.vec(count, -4.0f, 4.0f));
    FVec y = rounded<Bf16>(rng.relued(count));
    FVec dy = rounded<Bf16>(rng.vec(count));
    x[0] = -0.0f;
    if (count > 4) {
      // Sums past the largest bf16 (3.39e38): f32 overflow to inf, and an
      // f32 sum that only bf16 rounding takes to inf.
      x[1] = dy[1] = 0x1.fep127f;
      x[2] = 0x1.fep127f;
      dy[2] = 0x1.8p119f;
      x[3] = -0x1.fep127f;
      dy[3] = -0x1.0p121f;
    }
    BVec xs = stored<Bf16>(x), ys = stored<Bf16>(y), dys = stored<Bf16>(dy);
    BVec out(static_cast<size_t>(count));
    FVec want(static_cast<size_t>(count));
    cuda::host::relu(count, xs.data(), out.data());
    ref::reluForward(count, x.data(), want.data());
    expectBitEqual(widened(out), rounded<Bf16>(want), "bf16 relu");
    cuda::host::reluGrad(count, ys.data(), dys.data(), out.data());
    ref::reluBackward(count, y.data(), dy.data(), want.data());
    expectBitEqual(widened(out), rounded<Bf16>(want), "bf16 relu_grad");
    cuda::host::add(count, xs.data(), dys.data(), out.data());
    ref::add(count, x.data(), dy.data(), want.data());
    expectBitEqual(widened(out), rounded<Bf16>(want), "bf16 add");
    if (count > 4) {
      EXPECT_TRUE(std::isinf(out[1].toFloat()) &&
                  std::isinf(out[2].toFloat()) && std::isinf(out[3].toFloat()));
      EXPECT_FALSE(std::isinf(want[2]));
    }
    cuda::host::scale(count, xs.data(), 0.1f, out.data());
    for (int64_t i = 0; i < count; ++i)
      want[size_t(i)] = x[size_t(i)] * 0.1f;
    expectBitEqual(widened(out), rounded<Bf16>(want), "bf16 scale");
    // In place.
    BVec inPlace = xs;
    cuda::host::add(count, inPlace.data(), dys.data(), inPlace.data());
    ref::add(count, x.data(), dy.data(), want.data());
    expectBitEqual(widened(inPlace), rounded<Bf16>(want), "bf16 add in place");

    for (double ratio : {0.0, 0.3, 0.5}) {
      std::vector<uint8_t> mask(static_cast<size_t>(count));
      dropoutMask(42, 7, count, ratio, mask.data(), 64);
      cuda::host::dropout(count, ratio, 42, 7, 64, xs.data(), out.data());
      ref::dropoutForward(count, ratio, x.data(), mask.data(), want.data());
      expectBitEqual(widened(out), rounded<Bf16>(want), "bf16 dropout");
      cuda::host::dropout(count, ratio, 42, 7, 64, dys.data(), out.data());
      ref::dropoutBackward(count, ratio, dy.data(), mask.data(), want.data());
      expectBitEqual(widened(out), rounded<Bf16>(want),
                     "bf16 dropout backward");
    }
  }
}

TEST(CudaHostKernels, Bf16LossesMatchTheF32KernelOnWidenedData) {
  Rng rng(25);
  for (auto [batch, count] :
       std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {3, 257}, {7, 65537}}) {
    FVec a = rounded<Bf16>(rng.vec(count, -3.0f, 3.0f));
    FVec b = rounded<Bf16>(rng.vec(count));
    BVec as = stored<Bf16>(a), bs = stored<Bf16>(b);
    float loss =
        cuda::host::euclideanLossForward(batch, count, as.data(), bs.data());
    // The same doubles in the same order as the f32 kernel on the widened
    // data, so the same bits; 1e-6 of the double reference, as f32.
    EXPECT_EQ(bits(loss), bits(cuda::host::euclideanLossForward(
                              batch, count, a.data(), b.data())))
        << count;
    double want = ref::euclideanLossForward<double>(
        batch, count, toDouble(a).data(), toDouble(b).data());
    EXPECT_LT(relDiff(loss, want), 1e-6) << count;

    BVec da(static_cast<size_t>(count)), db(da.size());
    FVec daRef(da.size()), dbRef(da.size());
    cuda::host::euclideanLossBackward(batch, count, as.data(), bs.data(), 0.37f,
                                      da.data(), db.data());
    ref::euclideanLossBackward(batch, count, a.data(), b.data(), 0.37f,
                               daRef.data(), dbRef.data());
    expectBitEqual(widened(da), rounded<Bf16>(daRef), "bf16 da");
    expectBitEqual(widened(db), rounded<Bf16>(dbRef), "bf16 db");
    BVec da2(da.size());
    cuda::host::euclideanLossBackward(batch, count, as.data(), bs.data(), 0.37f,
                                      da2.data(), nullptr);
    expectBitEqual(widened(da2), rounded<Bf16>(daRef), "bf16 da without db");
  }
  for (auto [n, k] :
       std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {7, 13}, {64, 1000}}) {
    FVec logits = rounded<Bf16>(rng.vec(n * k, -8.0f, 8.0f));
    IVec labels(static_cast<size_t>(n));
    for (int32_t &l : labels)
      l = int32_t(rng.next() % uint64_t(k));
    BVec ls = stored<Bf16>(logits);
    float loss =
        cuda::host::softmaxCrossEntropyForward(n, k, ls.data(), labels.data());
    EXPECT_EQ(bits(loss), bits(cuda::host::softmaxCrossEntropyForward(
                              n, k, logits.data(), labels.data())));
    double want = ref::softmaxCrossEntropyForward<double>(
        n, k, toDouble(logits).data(), labels.data());
    EXPECT_LT(relDiff(loss, want), 1e-6) << n << "x" << k;

    BVec d(logits.size());
    FVec dRef(d.size());
    cuda::host::softmaxCrossEntropyBackward(n, k, ls.data(), labels.data(),
                                            1.5f, d.data());
    ref::softmaxCrossEntropyBackward(n, k, logits.data(), labels.data(), 1.5f,
                                     dRef.data());
    expectBitEqual(widened(d), rounded<Bf16>(dRef),
                   "bf16 dlogits " + std::to_string(n) + "x" +
                       std::to_string(k));
  }
}

/// The channel blocks a map of `c` channels can be stored with: NCHW, NHWC
/// and, where they divide c, the cpu backend's 8.
std::vector<int64_t> layoutsFor(int64_t c) {
  std::vector<int64_t> lanes{1};
  if (c > 1)
    lanes.push_back(c);
  if (c % 8 == 0 && c != 8)
    lanes.push_back(8);
  return lanes;
}

/// Maps for the bias kernels: conv-like, fc-like ({N, F, 1, 1}), batch 1,
/// odd channel counts, and enough pixels for many bias-gradient chunks.
std::vector<Dims4> biasCases() {
  return {{1, 1, 1, 1},   {2, 3, 5, 7}, {1, 5, 4, 4},   {3, 16, 3, 3},
          {64, 10, 1, 1}, {4, 7, 1, 1}, {8, 3, 33, 31}, {2, 24, 17, 19},
          {5, 3, 37, 41}}; // 238 chunks of 32 rows, 15 groups (the last of 14)
}

template <typename T> void checkBiasAdd(uint64_t seed) {
  Rng rng(seed);
  for (const Dims4 &d : biasCases())
    for (int64_t L : layoutsFor(d.c)) {
      std::string what = std::string(typeName(T())) + " [" +
                         std::to_string(d.n) + "," + std::to_string(d.c) + "," +
                         std::to_string(d.h) + "," + std::to_string(d.w) +
                         "] lanes " + std::to_string(L);
      FVec x = rounded<T>(rng.vec(d.count(), -4.0f, 4.0f));
      FVec bias = rng.vec(d.c); // f32, not rounded
      FVec want(x.size());
      for (int64_t n = 0; n < d.n; ++n)
        for (int64_t c = 0; c < d.c; ++c)
          for (int64_t p = 0; p < d.plane(); ++p) {
            size_t i = size_t((n * d.c + c) * d.plane() + p);
            want[i] = float(double(x[i]) + double(bias[size_t(c)]));
          }
      want = rounded<T>(want);
      std::vector<T> xs = stored<T>(toLanes(d, L, x)), y(xs.size());
      cuda::host::biasAdd(d, L, xs.data(), bias.data(), y.data());
      expectBitEqual(fromLanes(d, L, widened(y)), want, what);
      // The fused relu: the relu of the stored sum, bit for bit.
      std::vector<T> r(xs.size());
      cuda::host::biasAdd(d, L, xs.data(), bias.data(), r.data(), true);
      FVec wantRelu = want;
      for (float &v : wantRelu)
        v = v > 0.0f ? v : 0.0f;
      expectBitEqual(fromLanes(d, L, widened(r)), wantRelu, what + " relu");
      cuda::host::biasAdd(d, L, xs.data(), bias.data(), xs.data());
      expectBitEqual(fromLanes(d, L, widened(xs)), want, what + " in place");
    }
}

TEST(CudaHostKernels, BiasAddMatchesADoubleLoopInEveryLayout) {
  checkBiasAdd<float>(26);
  checkBiasAdd<Bf16>(27);
}

TEST(CudaHostKernels, RowChunksAndBiasGradShape) {
  cuda::RowChunks s = cuda::rowChunks({0, 4, 3, 3});
  EXPECT_EQ(s.chunks, 0);
  s = cuda::rowChunks({1, 4, 1, 1});
  EXPECT_EQ(s.rows, 1);
  EXPECT_EQ(s.chunkRows, 1);
  EXPECT_EQ(s.chunks, 1);
  s = cuda::rowChunks({64, 3, 224, 224}); // 3211264 rows
  EXPECT_EQ(s.chunkRows, 2048);
  EXPECT_EQ(s.chunks, 1568);
  for (int64_t rows = 1; rows < 5000; rows += 37) {
    s = cuda::rowChunks({rows, 2, 1, 1});
    EXPECT_GE(s.chunkRows * s.chunkRows, rows);
    EXPECT_GE(s.chunks * s.chunkRows, rows);
    EXPECT_LT((s.chunks - 1) * s.chunkRows, rows);
  }
  // The bias gradient's three stages: VGG-16's first map in 12544 chunks
  // of 256 rows, 98 groups of 128 chunks.
  cuda::BiasGradShape b = cuda::biasGradShape({0, 4, 3, 3});
  EXPECT_EQ(b.chunks, 0);
  EXPECT_EQ(b.groups, 0);
  b = cuda::biasGradShape({1, 4, 1, 1});
  EXPECT_EQ(b.chunkRows, 1);
  EXPECT_EQ(b.chunks, 1);
  EXPECT_EQ(b.groupChunks, 1);
  EXPECT_EQ(b.groups, 1);
  b = cuda::biasGradShape({64, 3, 224, 224});
  EXPECT_EQ(b.chunkRows, 256);
  EXPECT_EQ(b.chunks, 12544);
  EXPECT_EQ(b.groupChunks, 128);
  EXPECT_EQ(b.groups, 98);
  EXPECT_EQ(cuda::biasGradScratchBytes({64, 3, 224, 224}),
            (12544u + 98u) * 3 * 8);
  for (int64_t rows = 1; rows < 20000; rows += 97) {
    b = cuda::biasGradShape({rows, 2, 1, 1});
    EXPECT_GE(b.chunkRows * b.chunkRows * b.chunkRows, rows);
    EXPECT_LT((b.chunkRows / 2) * (b.chunkRows / 2) * (b.chunkRows / 2), rows);
    EXPECT_GE(b.chunks * b.chunkRows, rows);
    EXPECT_LT((b.chunks - 1) * b.chunkRows, rows);
    EXPECT_GE(b.groupChunks * b.groupChunks, b.chunks);
    EXPECT_GE(b.groups * b.groupChunks, b.chunks);
    EXPECT_LT((b.groups - 1) * b.groupChunks, b.chunks);
  }
  // An empty batch: zero gradients, no scratch.
  FVec db(4, 1.0f);
  cuda::host::biasGrad({0, 4, 3, 3}, 4, static_cast<const float *>(nullptr),
                       db.data());
  EXPECT_EQ(db, FVec(4, 0.0f));
}

TEST(CudaHostKernels, BiasGradMatchesADoubleLoopAndIsTheSameInEveryLayout) {
  Rng rng(28);
  for (const Dims4 &d : biasCases()) {
    std::string what = "[" + std::to_string(d.n) + "," + std::to_string(d.c) +
                       "," + std::to_string(d.h) + "," + std::to_string(d.w) +
                       "]";
    FVec dy = rounded<Bf16>(rng.vec(d.count()));
    std::vector<double> want(size_t(d.c), 0.0), sumAbs(size_t(d.c), 0.0);
    for (int64_t n = 0; n < d.n; ++n)
      for (int64_t c = 0; c < d.c; ++c)
        for (int64_t p = 0; p < d.plane(); ++p) {
          double v = dy[size_t((n * d.c + c) * d.plane() + p)];
          want[size_t(c)] += v;
          sumAbs[size_t(c)] += std::abs(v);
        }
    FVec first;
    for (int64_t L : layoutsFor(d.c)) {
      FVec f32(size_t(d.c)), b16(size_t(d.c));
      FVec dyL = toLanes(d, L, dy);
      BVec dyB = stored<Bf16>(dyL);
      cuda::host::biasGrad(d, L, dyL.data(), f32.data());
      cuda::host::biasGrad(d, L, dyB.data(), b16.data());
      std::string how = what + " lanes " + std::to_string(L);
      // The f32 result of a double sum in another order: within f32
      // rounding of the double loop (and far inside the sums' error bound).
      for (int64_t c = 0; c < d.c; ++c)
        ASSERT_LE(std::abs(double(f32[size_t(c)]) - want[size_t(c)]),
                  0x1.0p-24 * std::abs(want[size_t(c)]) +
                      0x1.0p-40 * sumAbs[size_t(c)])
            << how << " channel " << c;
      // Exactly the documented order (BiasGradShape): each chunk's rows in
      // row order, each group's chunks in order, then the groups in order,
      // in double, rounded once. On
      // values of about 1 among +-2^50 (where a double's step is 1/4), so
      // that what survives of the small values depends on the order even
      // in the f32 result.
      FVec wide(dy.size());
      for (float &v : wide) {
        uint64_t r = rng.next();
        v = r % 3 == 0 ? std::ldexp(r % 2 ? 1.0f : -1.0f, 50) : rng.uniform();
      }
      FVec got(size_t(d.c));
      cuda::host::biasGrad(d, L, toLanes(d, L, wide).data(), got.data());
      cuda::BiasGradShape shape = cuda::biasGradShape(d);
      for (int64_t c = 0; c < d.c; ++c) {
        double total = 0.0;
        for (int64_t g = 0; g < shape.groups; ++g) {
          double group = 0.0;
          for (int64_t k = g * shape.groupChunks;
               k < std::min(shape.chunks, (g + 1) * shape.groupChunks); ++k) {
            double part = 0.0;
            for (int64_t m = k * shape.chunkRows;
                 m < std::min(shape.rows, (k + 1) * shape.chunkRows); ++m)
              part += double(wide[size_t(
                  ((m / d.plane()) * d.c + c) * d.plane() + m % d.plane())]);
            group += part;
          }
          total += group;
        }
        ASSERT_EQ(bits(got[size_t(c)]), bits(float(total)))
            << how << " channel " << c << ": not the chunked row order";
      }
      // The same order whatever the storage and the layout.
      expectBitEqual(b16, f32, how + " bf16");
      if (first.empty())
        first = f32;
      expectBitEqual(f32, first, how + " vs NCHW");
    }
  }
  FVec dy(6), db(3);
  EXPECT_THROW(cuda::host::biasGrad({1, 3, 1, 2}, 2, dy.data(), db.data()),
               KernelError);
}

/// The bias gradient's first stage a pack at a time (BiasGradPackPartials,
/// on rows of packs) writes BiasGradPartials' partials bit for bit: NHWC
/// maps of one and several packs a row, flat ones, many chunks, a last
/// chunk of a whole batch of loads and part of another (7955 rows in
/// chunks of 32: the last 19); bf16 and f32.
template <typename T> void checkBiasGradPacks(uint64_t seed) {
  Rng rng(seed);
  constexpr int64_t W = cuda::Pack<T>::kWidth;
  for (const Dims4 &d : std::vector<Dims4>{{1, W, 1, 1},
                                           {7, 2 * W, 1, 1},
                                           {64, 3 * W, 1, 1},
                                           {2, W, 5, 3},
                                           {2, 3 * W, 17, 19},
                                           {5, 2 * W, 37, 43}}) {
    const std::string what = std::string(typeName(T())) + " [" +
                             std::to_string(d.n) + "," + std::to_string(d.c) +
                             "," + std::to_string(d.h) + "," +
                             std::to_string(d.w) + "]";
    // Values of about 1 among +-2^40, so that the partials depend on the
    // order of their sums.
    FVec v(size_t(d.count()));
    for (float &x : v) {
      uint64_t r = rng.next();
      x = r % 3 == 0 ? std::ldexp(r % 2 ? 1.0f : -1.0f, 40) : rng.uniform();
    }
    std::vector<T> dy = stored<T>(toLanes(d, d.c, v));
    ASSERT_TRUE(cuda::rowsOfPacks<T>(d, d.c, {dy.data()})) << what;
    const cuda::BiasGradShape s = cuda::biasGradShape(d);
    std::vector<double> packed(size_t(s.chunks * d.c), -1.0),
        elements(packed.size(), -2.0);
    cuda::runOnHost(
        cuda::makeBiasGradPackPartials(d, dy.data(), packed.data()));
    cuda::runOnHost(cuda::BiasGradPartials<T>{cuda::mapGeom(d, d.c), s,
                                              dy.data(), elements.data()});
    for (size_t i = 0; i < packed.size(); ++i)
      ASSERT_EQ(packed[i], elements[i]) << what << " partial " << i;
  }
  // Not rows of packs: channels not whole packs, NCHW, a misaligned map.
  std::vector<T> buf(size_t(64 * W + 1));
  EXPECT_FALSE(cuda::rowsOfPacks<T>({2, W + 1, 3, 3}, W + 1, {buf.data()}));
  EXPECT_FALSE(cuda::rowsOfPacks<T>({2, W, 3, 3}, 1, {buf.data()}));
  EXPECT_FALSE(cuda::rowsOfPacks<T>({2, W, 3, 3}, W, {buf.data() + 1}));
}

TEST(CudaHostKernels, BiasGradPacksSumAsTheElementWalk) {
  checkBiasGradPacks<float>(91);
  checkBiasGradPacks<Bf16>(92);
}

/// relu_grad with the bias gradient's partials in one pass, then the last
/// stages: bit for bit relu_grad, then bias_grad of its dx (the pair the cuda
/// backend fuses), in place or not, on NHWC maps whose C is whole packs:
/// one row, batch 1, a last chunk shorter than the rest, a last batch of
/// rows shorter than kBatch; and -0 gradients, zeros and negatives in y.
template <typename T> void checkReluGradBias(uint64_t seed) {
  Rng rng(seed);
  constexpr int64_t W = cuda::Pack<T>::kWidth;
  const std::vector<Dims4> cases = {
      {1, W, 1, 1},     {1, 2 * W, 3, 5}, {2, W, 7, 9},      {5, 3 * W, 11, 13},
      {3, 4 * W, 1, 1}, {64, W, 1, 1},    {2, 2 * W, 33, 31}};
  for (const Dims4 &d : cases)
    for (bool inPlace : {false, true}) {
      std::string what = std::string(typeName(T())) + " [" +
                         std::to_string(d.n) + "," + std::to_string(d.c) + "," +
                         std::to_string(d.h) + "," + std::to_string(d.w) + "]" +
                         (inPlace ? " in place" : "");
      FVec y = rng.vec(d.count()), dy = rng.vec(d.count());
      for (size_t i = 0; i < y.size(); ++i) {
        uint64_t r = rng.next() % 8;
        if (r == 0)
          y[i] = 0.0f; // the relu's own zeros
        if (r == 1)
          dy[i] = -0.0f;
      }
      std::vector<T> ys = stored<T>(y), dys = stored<T>(dy);
      std::vector<T> want(dys.size()), dyCopy = dys, got(dys.size());
      FVec wantDb(size_t(d.c)), gotDb(size_t(d.c));
      cuda::host::reluGrad(d.count(), ys.data(), dys.data(), want.data());
      cuda::host::biasGrad(d, d.c, want.data(), wantDb.data());
      T *dx = inPlace ? dyCopy.data() : got.data();
      cuda::host::reluGradBias(d, d.c, ys.data(), dyCopy.data(), dx,
                               gotDb.data());
      expectBitEqual(widened(inPlace ? dyCopy : got), widened(want),
                     what + " dx");
      expectBitEqual(gotDb, wantDb, what + " db");
      if (d.h * d.w == 1 && !inPlace) { // flat: the same in every layout
        FVec flatDb(size_t(d.c));
        std::vector<T> flatDx(dys.size());
        cuda::host::reluGradBias(d, 1, ys.data(), dys.data(), flatDx.data(),
                                 flatDb.data());
        expectBitEqual(widened(flatDx), widened(want), what + " flat dx");
        expectBitEqual(flatDb, wantDb, what + " flat db");
      }
    }
  // Only NHWC maps of whole packs, aligned.
  std::vector<T> v(size_t(64 * W));
  FVec db(size_t(2 * W));
  EXPECT_THROW(cuda::host::reluGradBias(Dims4{1, W + 1, 1, 1}, W + 1, v.data(),
                                        v.data(), v.data(), db.data()),
               KernelError);
  EXPECT_THROW(cuda::host::reluGradBias(Dims4{1, 2 * W, 2, 2}, 1, v.data(),
                                        v.data(), v.data(), db.data()),
               KernelError);
  auto *aligned = reinterpret_cast<T *>(
      (reinterpret_cast<uintptr_t>(v.data()) + 15) / 16 * 16);
  EXPECT_THROW(cuda::host::reluGradBias(Dims4{1, W, 1, 1}, W, aligned + 1,
                                        aligned, aligned, db.data()),
               KernelError);
}

/// The max-pool's backward, relu_grad and the bias gradient's first stage in
/// one pass: bit for bit the three kernels one after another, on pools
/// whose windows tile the map (even and odd sizes, floor and ceil mode,
/// 3x3/3), after a relu (zeros and ties in the windows), with and without
/// the bias gradient; overlapping windows are refused.
template <typename T> void checkPoolReluGradBias(uint64_t seed) {
  Rng rng(seed);
  constexpr int64_t W = cuda::Pack<T>::kWidth;
  struct Case {
    Dims4 in;
    Window2D win;
    bool ceil;
  };
  const std::vector<Case> cases = {
      {{2, 2 * W, 8, 6}, {2, 2, 2, 2, 0, 0}, false},
      {{1, W, 7, 9}, {2, 2, 2, 2, 0, 0}, false}, // last row and column bare
      {{1, W, 7, 9}, {2, 2, 2, 2, 0, 0}, true},  // partial windows
      {{3, W, 9, 9}, {3, 3, 3, 3, 0, 0}, false},
      {{2, 3 * W, 33, 17}, {2, 2, 2, 2, 0, 0}, false}};
  for (const Case &k : cases) {
    kernels::PoolShape s = kernels::poolShape(k.in, k.win, k.ceil);
    const int64_t L = s.in.c; // NHWC
    std::string what = std::string(typeName(T())) + " [" +
                       std::to_string(s.in.n) + "," + std::to_string(s.in.c) +
                       "," + std::to_string(s.in.h) + "," +
                       std::to_string(s.in.w) + "] k" +
                       std::to_string(k.win.kh) + (k.ceil ? " ceil" : "");
    std::vector<T> y = stored<T>(rng.relued(s.in.count())),
                   pooled(size_t(s.out.count()));
    SVec switches(size_t(s.out.count()));
    cuda::host::maxPoolForward(s, y.data(), pooled.data(), switches.data(), L);
    FVec dyWide = rng.vec(s.out.count());
    for (size_t i = 0; i < dyWide.size(); i += 7)
      dyWide[i] = -0.0f;
    std::vector<T> dyPooled = stored<T>(dyWide);
    std::vector<T> dr(y.size()), want(y.size()), got(y.size());
    FVec wantDb(size_t(s.in.c)), gotDb(size_t(s.in.c));
    cuda::host::maxPoolBackward(s, dyPooled.data(), switches.data(), dr.data(),
                                L);
    cuda::host::reluGrad(s.in.count(), y.data(), dr.data(), want.data());
    cuda::host::biasGrad(s.in, L, want.data(), wantDb.data());
    cuda::host::poolReluGradBias(s, dyPooled.data(), switches.data(), y.data(),
                                 got.data(), gotDb.data());
    expectBitEqual(widened(got), widened(want), what + " dx");
    expectBitEqual(gotDb, wantDb, what + " db");
    std::vector<T> alone(y.size());
    cuda::host::poolReluGradBias(s, dyPooled.data(), switches.data(), y.data(),
                                 alone.data(), static_cast<float *>(nullptr));
    expectBitEqual(widened(alone), widened(want), what + " dx without db");
  }
  kernels::PoolShape overlapping =
      kernels::poolShape({1, W, 7, 7}, {3, 3, 2, 2, 0, 0});
  std::vector<T> v(size_t(overlapping.in.count()));
  SVec sw(size_t(overlapping.out.count()));
  FVec db(static_cast<size_t>(W));
  EXPECT_THROW(cuda::host::poolReluGradBias(overlapping, v.data(), sw.data(),
                                            v.data(), v.data(), db.data()),
               KernelError);
}

TEST(CudaHostKernels, MaxPoolGradInReluGradIsTheThreeKernels) {
  checkPoolReluGradBias<float>(49);
  checkPoolReluGradBias<Bf16>(50);
}

TEST(CudaHostKernels, ReluGradWithBiasPartialsIsReluGradThenBiasGrad) {
  checkReluGradBias<float>(47);
  checkReluGradBias<Bf16>(48);
}

// A convolution on channel-padded copies: rows padded with +0 and cut back
// bit for bit; the padded KRSC filter is toStorage's KRSC copy where nothing
// is padded, zero in the padding, and the padded gradient comes back into
// the weight's order, the padding dropped.
template <typename T> void checkChannelPadding(uint64_t seed) {
  Rng rng(seed);
  const int64_t width = 16 / int64_t(sizeof(T));
  EXPECT_EQ(cuda::paddedChannels(3, sizeof(T)), width);
  EXPECT_EQ(cuda::paddedChannels(width, sizeof(T)), width);
  EXPECT_EQ(cuda::paddedChannels(width + 1, sizeof(T)), 2 * width);
  // Rows.
  const int64_t rows = 37, c = 3, cp = cuda::paddedChannels(c, sizeof(T));
  std::vector<T> map = stored<T>(rng.vec(rows * c)), padded(size_t(rows * cp)),
                 back(map.size());
  for (size_t i = 0; i < map.size(); i += 5)
    map[i] = stored<T>(FVec{-0.0f})[0];
  cuda::host::resizeRows(rows, c, cp, sizeof(T), map.data(), padded.data());
  cuda::host::resizeRows(rows, cp, c, sizeof(T), padded.data(), back.data());
  expectBitEqual(widened(back), widened(map), "rows padded and cut back");
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t ch = 0; ch < cp; ++ch) {
      float v = widened(std::vector<T>{padded[size_t(r * cp + ch)]})[0];
      float want =
          ch < c ? widened(std::vector<T>{map[size_t(r * c + ch)]})[0] : 0.0f;
      ASSERT_EQ(bits(v), bits(want)) << "row " << r << " channel " << ch;
    }
  // Filters: [K, C, kh, kw] with K and C not whole packs, and whole ones.
  for (Dims4 w :
       {Dims4{5, 3, 3, 3}, Dims4{3, 6, 2, 1}, Dims4{2 * width, width, 3, 3}}) {
    std::string what = std::string(typeName(T())) + " [" + std::to_string(w.n) +
                       "," + std::to_string(w.c) + "," + std::to_string(w.h) +
                       "," + std::to_string(w.w) + "]";
    const int64_t kp = cuda::paddedChannels(w.n, sizeof(T)),
                  fcp = cuda::paddedChannels(w.c, sizeof(T)), rs = w.h * w.w;
    FVec weight = rng.vec(w.count());
    std::vector<T> filter(size_t(kp * rs * fcp));
    cuda::host::padFilter(w, kp, fcp, weight.data(), filter.data());
    // toStorage's KRSC copy of the weight (lanes = C), padded by hand.
    std::vector<T> krsc(size_t(w.count()));
    cuda::host::toStorage(w, w.c, weight.data(), krsc.data());
    FVec got = widened(filter), want(filter.size(), 0.0f),
         krscWide = widened(krsc);
    for (int64_t k = 0; k < w.n; ++k)
      for (int64_t r = 0; r < rs; ++r)
        for (int64_t ch = 0; ch < w.c; ++ch)
          want[size_t((k * rs + r) * fcp + ch)] =
              krscWide[size_t((k * rs + r) * w.c + ch)];
    expectBitEqual(got, want, what + " padded filter");
    // The gradient back: a padded filter of random values, its padding
    // dropped, in the weight's [K, C, kh, kw] order.
    std::vector<T> grad = stored<T>(rng.vec(kp * rs * fcp));
    FVec dw(size_t(w.count())), dwWant(dw.size());
    cuda::host::unpadFilterGrad(w, fcp, grad.data(), dw.data());
    FVec gradWide = widened(grad);
    for (int64_t k = 0; k < w.n; ++k)
      for (int64_t ch = 0; ch < w.c; ++ch)
        for (int64_t r = 0; r < rs; ++r)
          dwWant[size_t((k * w.c + ch) * rs + r)] =
              gradWide[size_t((k * rs + r) * fcp + ch)];
    expectBitEqual(dw, dwWant, what + " gradient");
    if (kp == w.n && fcp == w.c) { // no padding: fromStorage's inverse
      FVec viaStorage(dw.size());
      cuda::host::fromStorage(w, w.c, grad.data(), viaStorage.data());
      expectBitEqual(dw, viaStorage, what + " gradient vs fromStorage");
    }
  }
}

TEST(CudaHostKernels, ChannelPaddingPadsWithZerosAndCutsBackExactly) {
  checkChannelPadding<float>(71);
  checkChannelPadding<Bf16>(72);
}

TEST(CudaHostKernels, ConvertRoundsToNearestEvenAndWidensExactly) {
  auto fromBits = [](uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
  };
  // Ties to even both ways, just off ties, signs, zeros, denormals, the
  // largest bf16 (stays), the largest float and past-the-largest-bf16 ties
  // (overflow to inf), inf, NaN (quiet, sign kept), random.
  std::vector<uint32_t> special{
      0x00000000, 0x80000000, 0x3F800000, 0x3F808000, 0x3F818000, 0x3F808001,
      0x3F817FFF, 0xBF808000, 0xBF818000, 0x00000001, 0x00008000, 0x00018000,
      0x807FFFFF, 0x7F7F0000, 0x7F7F7FFF, 0x7F7F8000, 0x7F7FFFFF, 0xFF7F8000,
      0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001, 0xFF800001, 0xFFC12345};
  Rng rng(29);
  for (int i = 0; i < 10000; ++i)
    special.push_back(uint32_t(rng.next()));
  FVec f(special.size());
  for (size_t i = 0; i < f.size(); ++i)
    f[i] = fromBits(special[i]);
  BVec b(f.size());
  cuda::host::convert(int64_t(f.size()), f.data(), b.data());
  for (size_t i = 0; i < f.size(); ++i)
    ASSERT_EQ(b[i].bits, roundBf16(f[i])) << std::hex << special[i];
  EXPECT_EQ(b[3].bits, 0x3F80);  // tie, even below
  EXPECT_EQ(b[4].bits, 0x3F82);  // tie, even above
  EXPECT_EQ(b[14].bits, 0x7F7F); // largest bf16
  EXPECT_EQ(b[15].bits, 0x7F80); // tie past it: inf
  EXPECT_EQ(b[16].bits, 0x7F80); // largest float: inf
  EXPECT_EQ(b[17].bits, 0xFF80);
  EXPECT_EQ(b[21].bits, 0x7FC0); // signalling NaN: quiet
  EXPECT_EQ(b[22].bits, 0xFFC0);
  EXPECT_EQ(b[23].bits, 0xFFC1); // payload's top bits kept

  // Every bf16 widens exactly, and converts back to itself (a signalling
  // NaN to its quiet twin).
  BVec all(65536), back(all.size());
  for (size_t i = 0; i < all.size(); ++i)
    all[i].bits = uint16_t(i);
  FVec w(all.size());
  cuda::host::convert(int64_t(all.size()), all.data(), w.data());
  cuda::host::convert(int64_t(w.size()), w.data(), back.data());
  for (size_t i = 0; i < all.size(); ++i) {
    ASSERT_EQ(bits(w[i]), uint32_t(i) << 16) << i;
    bool nan = (i & 0x7FFF) > 0x7F80;
    ASSERT_EQ(back[i].bits, nan ? uint16_t(i | 0x0040) : uint16_t(i)) << i;
  }
}

template <typename T> void checkStorage(uint64_t seed) {
  Rng rng(seed);
  for (const Dims4 &d : std::vector<Dims4>{{1, 1, 2, 2},
                                           {2, 3, 4, 5},
                                           {1, 5, 3, 3},
                                           {2, 16, 3, 2},
                                           {3, 8, 1, 1}})
    for (int64_t L : layoutsFor(d.c)) {
      std::string what = std::string(typeName(T())) + " lanes " +
                         std::to_string(L) + " c " + std::to_string(d.c);
      FVec src = rng.vec(d.count(), -100.0f, 100.0f);
      std::vector<T> dst(src.size());
      cuda::host::toStorage(d, L, src.data(), dst.data());
      // Where each element went, and rounded once.
      FVec got = widened(dst), want = rounded<T>(src);
      expectBitEqual(got, toLanes(d, L, want), what);
      for (int64_t nc = 0; nc < d.n * d.c; ++nc)
        for (int64_t p = 0; p < d.plane(); ++p)
          ASSERT_EQ(bits(got[size_t(cuda::planeAt(nc, d.plane(), p, L))]),
                    bits(want[size_t(nc * d.plane() + p)]))
              << what;
      FVec back(src.size());
      cuda::host::fromStorage(d, L, dst.data(), back.data());
      expectBitEqual(back, rounded<T>(src), what + " back");
    }
  FVec src(6), back(6);
  std::vector<T> dst(6);
  EXPECT_THROW(cuda::host::toStorage({1, 3, 1, 2}, 2, src.data(), dst.data()),
               KernelError);
  EXPECT_THROW(
      cuda::host::fromStorage({1, 3, 1, 2}, 0, dst.data(), back.data()),
      KernelError);
}

TEST(CudaHostKernels, ToAndFromStorageTransposeAndRound) {
  checkStorage<float>(30);
  checkStorage<Bf16>(31);
}

TEST(CudaHostKernels, SgdMomentumWritesTheWeightCopyInItsLayout) {
  // A [K, C, 3, 3] filter with C = 3 and 5 (KRSC: copyLanes = C), and
  // chunks that end inside a filter plane: the copy, bf16 or f32 (a tf32
  // plan's), is toStorage's of the updated weights, which are the same
  // either way.
  Rng rng(32);
  for (Dims4 d : std::vector<Dims4>{{4, 3, 3, 3}, {300, 5, 3, 3}}) {
    int64_t count = d.count();
    FVec w = rng.vec(count), v(size_t(count), 0.0f), g = rng.vec(count);
    FVec w2 = w, v2 = v;
    BVec copy(static_cast<size_t>(count)), want(copy.size());
    FVec copyF32(copy.size()), wantF32(copy.size());
    cuda::SgdTensor t;
    t.w = w.data();
    t.grad = g.data();
    t.velocity = v.data();
    t.copy = copy.data();
    t.count = count;
    t.copyPlane = cuda::FastDiv(d.plane());
    t.copyLanes = cuda::FastDiv(d.c);
    cuda::host::sgdMomentum(&t, 1, {0.01, 0.9, 5e-4});
    cuda::host::toStorage(d, d.c, w.data(), want.data());
    for (size_t i = 0; i < copy.size(); ++i)
      ASSERT_EQ(copy[i].bits, want[i].bits) << d.c << " " << i;
    cuda::SgdTensor f = t;
    f.w = w2.data();
    f.velocity = v2.data();
    f.copy = nullptr;
    f.copyF32 = copyF32.data();
    cuda::host::sgdMomentum(&f, 1, {0.01, 0.9, 5e-4});
    expectBitEqual(w2, w, "f32 copy: the weights");
    cuda::host::toStorage(d, d.c, w2.data(), wantF32.data());
    expectBitEqual(copyF32, wantF32, "the f32 copy " + std::to_string(d.c));
  }
}

TEST(CudaHostKernels, RelayoutCopiesBitsBetweenLayouts) {
  Rng rng(33);
  for (const Dims4 &d : std::vector<Dims4>{
           {2, 3, 4, 5}, {1, 5, 3, 3}, {2, 16, 3, 2}, {4, 10, 1, 1}}) {
    FVec f = rng.vec(d.count());
    f[0] = -0.0f;
    BVec b = stored<Bf16>(f);
    IVec labels(f.size());
    for (int32_t &s : labels)
      s = int32_t(rng.next() % 1000);
    SVec sw(f.size());
    for (kernels::Switch &s : sw)
      s = kernels::Switch(rng.next() % 256);
    for (int64_t from : layoutsFor(d.c))
      for (int64_t to : layoutsFor(d.c)) {
        std::string what =
            std::to_string(from) + " -> " + std::to_string(to) + " lanes";
        FVec fFrom = toLanes(d, from, f), fTo(f.size());
        cuda::host::relayout(d, from, to, 4, fFrom.data(), fTo.data());
        expectBitEqual(fTo, toLanes(d, to, f), "f32 " + what);
        BVec bFrom = toLanes(d, from, b), bTo(b.size());
        cuda::host::relayout(d, from, to, 2, bFrom.data(), bTo.data());
        expectBitEqual(widened(bTo), widened(toLanes(d, to, b)),
                       "bf16 " + what);
        IVec lFrom = toLanes(d, from, labels), lTo(labels.size());
        cuda::host::relayout(d, from, to, 4, lFrom.data(), lTo.data());
        ASSERT_EQ(lTo, toLanes(d, to, labels)) << "i32 " << what;
        SVec sFrom = toLanes(d, from, sw), sTo(sw.size());
        cuda::host::relayout(d, from, to, 1, sFrom.data(), sTo.data());
        ASSERT_EQ(sTo, toLanes(d, to, sw)) << "switches " << what;
      }
  }
  FVec x(6), y(6);
  EXPECT_THROW(cuda::host::relayout({1, 3, 1, 2}, 1, 3, 8, x.data(), y.data()),
               KernelError);
  EXPECT_THROW(cuda::host::relayout({1, 3, 1, 2}, 2, 1, 4, x.data(), y.data()),
               KernelError);
}

TEST(CudaHostKernels, NhwcDropoutDrawsTheNchwMask) {
  Rng rng(34);
  for (const Dims4 &d :
       std::vector<Dims4>{{2, 3, 4, 5}, {1, 5, 3, 3}, {3, 16, 2, 2}})
    for (int64_t L : layoutsFor(d.c)) {
      int64_t count = d.count();
      FVec x = rounded<Bf16>(rng.vec(count));
      std::vector<uint8_t> mask(static_cast<size_t>(count));
      dropoutMask(5, 9, count, 0.4, mask.data(), 120);
      FVec want(x.size());
      ref::dropoutForward(count, 0.4, x.data(), mask.data(), want.data());
      FVec xf = toLanes(d, L, x), yf(x.size());
      cuda::host::dropout(count, 0.4, 5, 9, 120, xf.data(), yf.data(),
                          d.plane(), L);
      std::string what = "lanes " + std::to_string(L);
      expectBitEqual(fromLanes(d, L, yf), want, "f32 " + what);
      BVec xb = stored<Bf16>(xf), yb(x.size());
      cuda::host::dropout(count, 0.4, 5, 9, 120, xb.data(), yb.data(),
                          d.plane(), L);
      expectBitEqual(fromLanes(d, L, widened(yb)), rounded<Bf16>(want),
                     "bf16 " + what);
    }
  FVec x(12);
  EXPECT_THROW(cuda::host::dropout(12, 0.5, 1, 1, 0, x.data(), x.data(), 5, 1),
               KernelError);
}

//===----------------------------------------------------------------------===//
// LRN (Caffe ACROSS_CHANNELS)
//===----------------------------------------------------------------------===//

LrnParams lrnParams(int64_t size, double alpha, double beta, double k) {
  LrnParams p;
  p.size = size;
  p.alpha = alpha;
  p.beta = beta;
  p.k = k;
  return p;
}

/// The LRNs the tests walk: AlexNet's (size 5, alpha 1e-4, beta 0.75, k 1,
/// where scale is close to 1) and strong ones (alpha 1..2, k 2, scale far
/// from 1, so that every term of the gradient matters), windows of 1 to 7
/// channels, odd channel counts (5 and 7), batch 1, and channel counts
/// smaller than the window (1, 2 and 3 channels under size 5 and 7).
struct LrnCase {
  Dims4 d;
  LrnParams p;
};
std::vector<LrnCase> lrnCases() {
  LrnParams alex = lrnParams(5, 1e-4, 0.75, 1.0);
  return {
      {{2, 8, 5, 6}, alex},
      {{1, 5, 3, 4}, lrnParams(3, 2.0, 0.75, 2.0)},
      {{1, 5, 4, 3}, lrnParams(5, 1.0, 0.75, 2.0)},
      {{2, 7, 3, 5}, lrnParams(3, 1.0, 0.75, 1.0)},
      {{1, 7, 5, 5}, lrnParams(5, 2.0, 0.5, 2.0)},
      {{3, 7, 2, 3}, lrnParams(7, 1.5, 0.75, 1.0)},
      {{1, 3, 4, 4}, lrnParams(5, 1.0, 0.75, 2.0)},  // C < size
      {{2, 2, 3, 3}, lrnParams(7, 2.0, 0.75, 1.0)},  // C < half of size
      {{1, 1, 5, 5}, lrnParams(5, 1.0, 0.75, 2.0)},  // one channel
      {{2, 5, 3, 3}, lrnParams(1, 1.0, 0.75, 2.0)},  // window of itself
      {{2, 16, 3, 3}, lrnParams(5, 1.0, 0.75, 2.0)}, // blocked by 8 too
  };
}

std::string name(const LrnCase &c) {
  return "[" + std::to_string(c.d.n) + "," + std::to_string(c.d.c) + "," +
         std::to_string(c.d.h) + "," + std::to_string(c.d.w) + "] size " +
         std::to_string(c.p.size) + " alpha " + std::to_string(c.p.alpha) +
         " beta " + std::to_string(c.p.beta) + " k " + std::to_string(c.p.k);
}

/// LRN forward and backward in storage T and every layout the case's
/// channel count allows, against ref::lrnForward / ref::lrnBackward on the
/// widened NCHW data, bit for bit: the kernels do the reference's double
/// arithmetic operation for operation (the window sums in the same,
/// ascending channel order, and the same std::pow on the host), then round
/// once (to f32, then to bf16: what rounded<T> does to the reference's f32
/// result). The backward takes the kernel's own (rounded) forward output as
/// y, and the reference gets the same widened y.
template <typename T> void checkLrn(uint64_t seed) {
  Rng rng(seed);
  for (const LrnCase &c : lrnCases())
    for (int64_t L : layoutsFor(c.d.c)) {
      const Dims4 &d = c.d;
      std::string what = std::string(typeName(T())) + " lanes " +
                         std::to_string(L) + " " + name(c);
      FVec x = rounded<T>(rng.vec(d.count(), -3.0f, 3.0f));
      FVec yRef(x.size());
      ref::lrnForward(d, c.p, x.data(), yRef.data());
      std::vector<T> xs = stored<T>(toLanes(d, L, x)), ys(x.size());
      cuda::host::lrnForward(d, L, c.p, xs.data(), ys.data());
      FVec y = fromLanes(d, L, widened(ys));
      expectBitEqual(y, rounded<T>(yRef), what);

      FVec dy = rounded<T>(rng.vec(d.count()));
      FVec dxRef(x.size());
      ref::lrnBackward(d, c.p, x.data(), y.data(), dy.data(), dxRef.data());
      std::vector<T> dys = stored<T>(toLanes(d, L, dy)), dx(x.size());
      cuda::host::lrnBackward(d, L, c.p, xs.data(), ys.data(), dys.data(),
                              dx.data());
      expectBitEqual(fromLanes(d, L, widened(dx)), rounded<T>(dxRef),
                     what + " backward");
    }
}

TEST(CudaHostKernels, LrnF32MatchesReferenceBitForBit) { checkLrn<float>(41); }

TEST(CudaHostKernels, Bf16LrnMatchesReferenceRoundedBitForBit) {
  checkLrn<Bf16>(42);
}

TEST(CudaHostKernels, LrnOfOnePixelByHand) {
  // Two channels under a window of 5, alpha 1, beta 1, k 1: both channels
  // see both, scale = 1 + (1 + 4) / 5 = 2, y = x / 2. With dy = (1, 0):
  // sum = dy0 y0 / scale = 0.25, coef = 2 alpha beta / size = 0.4,
  // dx = (1/2 - 0.4 * 1 * 0.25, 0 - 0.4 * 2 * 0.25) = (0.4, -0.2).
  LrnParams p = lrnParams(5, 1.0, 1.0, 1.0);
  Dims4 d{1, 2, 1, 1};
  for (int64_t L : {int64_t(1), int64_t(2)}) {
    FVec x{1.0f, 2.0f}, y(2), dy{1.0f, 0.0f}, dx(2);
    cuda::host::lrnForward(d, L, p, x.data(), y.data());
    EXPECT_EQ(y, (FVec{0.5f, 1.0f}));
    cuda::host::lrnBackward(d, L, p, x.data(), y.data(), dy.data(), dx.data());
    EXPECT_FLOAT_EQ(dx[0], 0.4f);
    EXPECT_FLOAT_EQ(dx[1], -0.2f);
  }
}

TEST(CudaHostKernels, LrnRejectsEvenWindowsAndBadLanes) {
  Dims4 d{1, 5, 2, 2};
  FVec a(size_t(d.count()), 0.5f), b(a.size()), c(a.size()), e(a.size());
  for (int64_t size : {int64_t(0), int64_t(4), int64_t(-3)}) {
    LrnParams p = lrnParams(size, 1e-4, 0.75, 1.0);
    EXPECT_THROW(cuda::host::lrnForward(d, 1, p, a.data(), b.data()),
                 KernelError)
        << size;
    EXPECT_THROW(cuda::host::lrnBackward(d, 1, p, a.data(), a.data(), a.data(),
                                         b.data()),
                 KernelError)
        << size;
  }
  LrnParams p;
  EXPECT_THROW(cuda::host::lrnForward(d, 3, p, a.data(), b.data()),
               KernelError);
  EXPECT_THROW(
      cuda::host::lrnBackward(d, 0, p, a.data(), c.data(), e.data(), b.data()),
      KernelError);
}

//===----------------------------------------------------------------------===//
// Batch normalisation
//===----------------------------------------------------------------------===//

/// The maps the batch-norm tests walk: batch 1 and 4, C = 3, 5 and 16 (16
/// also blocked by 8), odd spatial sizes, a flat [N, F] map, one element per
/// channel (M = 1: the running variance takes the biased one), and enough
/// pixels for many chunks of the two-stage sums.
std::vector<Dims4> batchNormCases() {
  return {{1, 3, 5, 7},   {4, 3, 7, 9},   {1, 5, 9, 11},
          {4, 5, 3, 5},   {1, 16, 5, 3},  {4, 16, 7, 7},
          {8, 3, 33, 31}, {16, 10, 1, 1}, {1, 3, 1, 1}};
}

std::string name(const Dims4 &d) {
  return "[" + std::to_string(d.n) + "," + std::to_string(d.c) + "," +
         std::to_string(d.h) + "," + std::to_string(d.w) + "]";
}

/// The reference backend's batchStats (static in ReferenceBackend.cpp),
/// what its batch_norm_grad hands ref::batchNormBackward: the batch mean and
/// 1/sqrt(biased var + eps), summed in double and stored as f32.
void refBatchStats(const Dims4 &d, const FVec &x, double eps, FVec &mean,
                   FVec &invStd) {
  int64_t m = d.n * d.plane();
  mean.assign(size_t(d.c), 0.0f);
  invStd.assign(size_t(d.c), 0.0f);
  for (int64_t ch = 0; ch < d.c; ++ch) {
    double s = 0, ss = 0;
    for (int64_t n = 0; n < d.n; ++n) {
      const float *p = x.data() + (n * d.c + ch) * d.plane();
      for (int64_t i = 0; i < d.plane(); ++i)
        s += p[i];
    }
    double mu = s / double(m);
    for (int64_t n = 0; n < d.n; ++n) {
      const float *p = x.data() + (n * d.c + ch) * d.plane();
      for (int64_t i = 0; i < d.plane(); ++i)
        ss += (p[i] - mu) * (p[i] - mu);
    }
    mean[size_t(ch)] = float(mu);
    invStd[size_t(ch)] = float(1.0 / std::sqrt(ss / double(m) + eps));
  }
}

/// Position of a finite value of storage T (given widened) on a line of its
/// consecutive values, so that neighbours are 1 apart and -0 == +0.
int64_t ulpLine(float v, float) {
  int32_t i;
  std::memcpy(&i, &v, sizeof i);
  return i < 0 ? -int64_t(i & 0x7fffffff) : int64_t(i);
}
int64_t ulpLine(float v, Bf16) { return ulpLine(v, 0.0f) / 65536; }

/// Batch norm's tolerance against the reference: the kernels do the
/// reference's double arithmetic but sum each channel in another order
/// (two stages of RowChunks), so each double sum may differ from the
/// reference's in its last bits (by at most about M * 2^-53 of the sum of
/// the terms' magnitudes; far less in practice). A result rounded to f32
/// (then to T) can then land one ulp of T away where the exact value is
/// near a rounding boundary, never more: two values one f32 ulp apart round
/// to bf16 values at most one bf16 ulp apart. Where the terms of a result
/// cancel to nearly zero, a difference of the sums' size can be more ulps of
/// that tiny result: 2^-40 absolute covers those (far above the sums'
/// ~1e-16 relative difference on these O(1)..O(1e4) terms, far below an ulp
/// of any O(1e-4) value). Tallies the values compared and those that are
/// not bit-equal (a systematic error differs almost everywhere; the sums'
/// order almost nowhere).
struct Tally {
  int64_t compared = 0, differing = 0;
};
template <typename T>
void expectWithinAnUlp(const FVec &got, const FVec &want,
                       const std::string &what, Tally &tally) {
  EXPECT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) {
    ++tally.compared;
    if (bits(got[i]) == bits(want[i]))
      continue;
    ++tally.differing;
    int64_t d = ulpLine(got[i], T()) - ulpLine(want[i], T());
    EXPECT_TRUE((d >= -1 && d <= 1) ||
                std::abs(double(got[i]) - double(want[i])) <= 0x1.0p-40)
        << what << " differs at " << i << ": " << got[i] << " vs " << want[i];
  }
}

/// Batch norm (training forward with the running statistics, inference
/// forward, backward) in storage T and every layout the channel count
/// allows, against ref::batchNorm* on the widened NCHW data (the backward
/// with the statistics the reference backend recomputes): y and dx within
/// one ulp of T of the reference's result rounded to T, the f32 running
/// statistics, dscale and dshift within one f32 ulp; the inference forward
/// (no sums) bit for bit. And whatever T and the layout, bit for bit the f32
/// kernel's results in NCHW on the widened data, rounded to T: the sums'
/// order depends on the dims alone. At most one value in a thousand may
/// differ from the reference at all (on these data none does).
template <typename T> void checkBatchNorm(uint64_t seed) {
  Rng rng(seed);
  const double eps = 1e-5, momentum = 0.9;
  Tally tally;
  for (const Dims4 &d : batchNormCases()) {
    size_t count = size_t(d.count()), c = size_t(d.c);
    FVec x = rounded<T>(rng.vec(d.count(), -2.0f, 6.0f));
    FVec dy = rounded<T>(rng.vec(d.count()));
    FVec scale = rng.vec(d.c, 0.5f, 2.0f), shift = rng.vec(d.c);
    FVec runMean = rng.vec(d.c), runVar = rng.vec(d.c, 0.5f, 2.0f);

    // The reference, on the widened NCHW data.
    FVec yRef(count), meanRef = runMean, varRef = runVar;
    ref::batchNormForwardTraining(d, eps, momentum, x.data(), scale.data(),
                                  shift.data(), meanRef.data(), varRef.data(),
                                  yRef.data(), static_cast<float *>(nullptr),
                                  static_cast<float *>(nullptr));
    FVec yInfRef(count);
    ref::batchNormForwardInference(d, eps, x.data(), scale.data(), shift.data(),
                                   runMean.data(), runVar.data(),
                                   yInfRef.data());
    FVec mean, invStd, dxRef(count), dscaleRef(c), dshiftRef(c);
    refBatchStats(d, x, eps, mean, invStd);
    ref::batchNormBackward(d, x.data(), scale.data(), mean.data(),
                           invStd.data(), dy.data(), dxRef.data(),
                           dscaleRef.data(), dshiftRef.data());

    // The f32 kernel in NCHW on the same data: what every T and layout
    // must give, rounded to T.
    FVec y32(count), mean32 = runMean, var32 = runVar;
    cuda::host::batchNormForwardTraining(
        d, 1, eps, momentum, x.data(), scale.data(), shift.data(),
        mean32.data(), var32.data(), y32.data());
    FVec dx32(count), dscale32(c), dshift32(c);
    cuda::host::batchNormBackward(d, 1, eps, x.data(), scale.data(), dy.data(),
                                  dx32.data(), dscale32.data(),
                                  dshift32.data());

    for (int64_t L : layoutsFor(d.c)) {
      std::string what = std::string(typeName(T())) + " lanes " +
                         std::to_string(L) + " " + name(d);
      std::vector<T> xs = stored<T>(toLanes(d, L, x));
      std::vector<T> dys = stored<T>(toLanes(d, L, dy));

      std::vector<T> ys(count);
      FVec rm = runMean, rv = runVar;
      cuda::host::batchNormForwardTraining(d, L, eps, momentum, xs.data(),
                                           scale.data(), shift.data(),
                                           rm.data(), rv.data(), ys.data());
      FVec y = fromLanes(d, L, widened(ys));
      expectWithinAnUlp<T>(y, rounded<T>(yRef), what + " y", tally);
      expectWithinAnUlp<float>(rm, meanRef, what + " running mean", tally);
      expectWithinAnUlp<float>(rv, varRef, what + " running variance", tally);
      expectBitEqual(y, rounded<T>(y32), what + " y vs f32 NCHW");
      expectBitEqual(rm, mean32, what + " running mean vs f32 NCHW");
      expectBitEqual(rv, var32, what + " running variance vs f32 NCHW");
      // In place: the same bits.
      std::vector<T> inPlace = xs;
      FVec rm2 = runMean, rv2 = runVar;
      cuda::host::batchNormForwardTraining(
          d, L, eps, momentum, inPlace.data(), scale.data(), shift.data(),
          rm2.data(), rv2.data(), inPlace.data());
      expectBitEqual(widened(inPlace), widened(ys), what + " y in place");

      std::vector<T> yInf(count);
      cuda::host::batchNormForwardInference(d, L, eps, xs.data(), scale.data(),
                                            shift.data(), runMean.data(),
                                            runVar.data(), yInf.data());
      expectBitEqual(fromLanes(d, L, widened(yInf)), rounded<T>(yInfRef),
                     what + " inference");

      std::vector<T> dxs(count);
      FVec dscale(c), dshift(c);
      cuda::host::batchNormBackward(d, L, eps, xs.data(), scale.data(),
                                    dys.data(), dxs.data(), dscale.data(),
                                    dshift.data());
      FVec dx = fromLanes(d, L, widened(dxs));
      expectWithinAnUlp<T>(dx, rounded<T>(dxRef), what + " dx", tally);
      expectWithinAnUlp<float>(dscale, dscaleRef, what + " dscale", tally);
      expectWithinAnUlp<float>(dshift, dshiftRef, what + " dshift", tally);
      expectBitEqual(dx, rounded<T>(dx32), what + " dx vs f32 NCHW");
      expectBitEqual(dscale, dscale32, what + " dscale vs f32 NCHW");
      expectBitEqual(dshift, dshift32, what + " dshift vs f32 NCHW");
      // dx over dy, and the parameter gradients alone.
      std::vector<T> over = dys;
      cuda::host::batchNormBackward(d, L, eps, xs.data(), scale.data(),
                                    over.data(), over.data(), nullptr, nullptr);
      expectBitEqual(widened(over), widened(dxs), what + " dx over dy");
      FVec dscale2(c), dshift2(c);
      cuda::host::batchNormBackward(d, L, eps, xs.data(), scale.data(),
                                    dys.data(), nullptr, dscale2.data(),
                                    dshift2.data());
      expectBitEqual(dscale2, dscale, what + " dscale without dx");
      expectBitEqual(dshift2, dshift, what + " dshift without dx");
    }
  }
  EXPECT_LE(tally.differing * 1000, tally.compared)
      << tally.differing << " of " << tally.compared << " values differ";
  ::testing::Test::RecordProperty("compared", std::to_string(tally.compared));
  ::testing::Test::RecordProperty("differing", std::to_string(tally.differing));
}

TEST(CudaHostKernels, BatchNormF32MatchesReferenceWithinAnUlp) {
  checkBatchNorm<float>(43);
}

TEST(CudaHostKernels, Bf16BatchNormMatchesReferenceRoundedWithinAnUlp) {
  checkBatchNorm<Bf16>(44);
}

TEST(CudaHostKernels, BatchNormOfOneChannelByHand) {
  // x = (0, 0, 3, 3): mean 1.5, biased variance 2.25 (eps 0: invStd 2/3),
  // xhat = (-1, -1, 1, 1); scale 2, shift 1: y = (-1, -1, 3, 3). Running
  // statistics (1, 1), momentum 0.5: mean 0.5 + 0.75 = 1.25, variance (the
  // unbiased 2.25 * 4/3 = 3) 0.5 + 1.5 = 2. dy = (1, 0, 0, 0): dshift = 1,
  // dscale = -1, dx = 2 * 2/3 / 4 * (4 dy - 1 + xhat) = (2/3, -2/3, 0, 0),
  // up to the backward's invStd, rounded to f32 as the reference backend
  // stores it (xhat is 1.5 * float(2/3), about 2^-25 from 1: dx about 2e-8
  // where it would be 0).
  for (Dims4 d : {Dims4{4, 1, 1, 1}, Dims4{1, 1, 2, 2}}) {
    FVec x{0.0f, 0.0f, 3.0f, 3.0f}, scale{2.0f}, shift{1.0f}, rm{1.0f},
        rv{1.0f}, y(4);
    cuda::host::batchNormForwardTraining(d, 1, 0.0, 0.5, x.data(), scale.data(),
                                         shift.data(), rm.data(), rv.data(),
                                         y.data());
    EXPECT_EQ(y, (FVec{-1.0f, -1.0f, 3.0f, 3.0f})) << name(d);
    EXPECT_EQ(rm, FVec{1.25f}) << name(d);
    EXPECT_EQ(rv, FVec{2.0f}) << name(d);
    FVec dy{1.0f, 0.0f, 0.0f, 0.0f}, dx(4), dscale(1), dshift(1);
    cuda::host::batchNormBackward(d, 1, 0.0, x.data(), scale.data(), dy.data(),
                                  dx.data(), dscale.data(), dshift.data());
    EXPECT_FLOAT_EQ(dx[0], 2.0f / 3.0f) << name(d);
    EXPECT_FLOAT_EQ(dx[1], -2.0f / 3.0f) << name(d);
    EXPECT_NEAR(dx[2], 0.0f, 1e-7f) << name(d);
    EXPECT_NEAR(dx[3], 0.0f, 1e-7f) << name(d);
    EXPECT_EQ(dscale, FVec{-1.0f}) << name(d);
    EXPECT_EQ(dshift, FVec{1.0f}) << name(d);
  }
}

TEST(CudaHostKernels, BatchNormScratchAndRejections) {
  // (2 * chunks + 4) doubles per channel: 224x224x64 rows are 1568 chunks.
  EXPECT_EQ(cuda::batchNormScratchBytes({64, 3, 224, 224}),
            (2u * 1568 + 4) * 3 * 8);
  EXPECT_EQ(cuda::batchNormScratchBytes({1, 5, 1, 1}), (2u * 1 + 4) * 5 * 8);
  Dims4 d{2, 6, 3, 3};
  std::vector<double> base(cuda::batchNormScratchBytes(d) / sizeof(double));
  cuda::BatchNormScratch st = cuda::batchNormScratch(d, base.data());
  EXPECT_EQ(st.partials, base.data());
  EXPECT_EQ(st.sumDyXhat + d.c, base.data() + base.size());
  EXPECT_EQ(st.mean, base.data() + 2 * cuda::rowChunks(d).chunks * d.c);

  FVec a(size_t(d.count()), 0.5f), b(a.size()), p(size_t(d.c), 1.0f),
      q(p.size()), r(p.size());
  // An empty batch has no statistics (ref::batchNormForwardTraining).
  for (Dims4 e : {Dims4{0, 6, 3, 3}, Dims4{2, 6, 0, 3}}) {
    EXPECT_THROW(cuda::host::batchNormForwardTraining(
                     e, 1, 1e-5, 0.9, a.data(), p.data(), p.data(), q.data(),
                     r.data(), b.data()),
                 KernelError);
    EXPECT_THROW(cuda::host::batchNormBackward(e, 1, 1e-5, a.data(), p.data(),
                                               a.data(), b.data(), q.data(),
                                               r.data()),
                 KernelError);
  }
  // Lanes that do not divide the channels.
  EXPECT_THROW(cuda::host::batchNormForwardTraining(
                   d, 4, 1e-5, 0.9, a.data(), p.data(), p.data(), q.data(),
                   r.data(), b.data()),
               KernelError);
  EXPECT_THROW(cuda::host::batchNormForwardInference(
                   d, 0, 1e-5, a.data(), p.data(), p.data(), q.data(), p.data(),
                   b.data()),
               KernelError);
  EXPECT_THROW(cuda::host::batchNormBackward(d, 5, 1e-5, a.data(), p.data(),
                                             a.data(), b.data(), q.data(),
                                             r.data()),
               KernelError);
}

//===----------------------------------------------------------------------===//
// Index arithmetic and packs (what the kernels use to keep up with memory)
//===----------------------------------------------------------------------===//

TEST(CudaHostKernels, FastDivIsExactDivision) {
  auto check = [](int64_t d, int64_t n) {
    cuda::FastDiv f(d);
    int64_t r = -1;
    ASSERT_EQ(f.div(n), n / d) << n << " / " << d;
    ASSERT_EQ(f.divMod(n, r), n / d) << n << " / " << d;
    ASSERT_EQ(r, n % d) << n << " % " << d;
    ASSERT_EQ(f.mod(n), n % d) << n << " % " << d;
  };
  // Every small case, then the divisors where the magic number is hardest
  // (2^k - 1, 2^k, 2^k + 1) with the dividends around multiples of them and
  // at the top of the range, then random ones.
  for (int64_t d = 1; d < 300; ++d)
    for (int64_t n = 0; n < 2000; ++n)
      check(d, n);
  const int64_t top = std::numeric_limits<int64_t>::max();
  for (int k = 0; k < 63; ++k) {
    int64_t p2 = int64_t(1) << k;
    for (int64_t d : {p2 - 1, p2, p2 + 1}) {
      if (d < 1)
        continue;
      for (int64_t n : {int64_t(0), d - 1, d, d + 1, top, top - 1, top - d})
        if (n >= 0)
          check(d, n);
      for (int64_t q : {int64_t(1), int64_t(3), int64_t(1) << 20})
        if (q <= top / d) {
          check(d, q * d);
          check(d, q * d - 1);
        }
    }
  }
  Rng rng(21);
  for (int i = 0; i < 200000; ++i) {
    int64_t d = int64_t(rng.next() >> (1 + rng.next() % 63));
    int64_t n = int64_t(rng.next() >> (1 + rng.next() % 63));
    check(d < 1 ? 1 : d, n);
  }
}

TEST(CudaHostKernels, ForEachInOrderVisitsThePlainLoopsValuesInOrder) {
  // Every count around the batch width (16), strides 1 and 3: the values
  // the plain loop reads, in its order, each once.
  std::vector<int64_t> v(200);
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = int64_t(i);
  for (int64_t stride : {1, 3})
    for (int64_t count = 0; count <= 50; ++count) {
      std::vector<int64_t> seen;
      cuda::forEachInOrder(v.data() + 1, count, stride,
                           [&](int64_t x) { seen.push_back(x); });
      ASSERT_EQ(int64_t(seen.size()), count) << "stride " << stride;
      for (int64_t j = 0; j < count; ++j)
        ASSERT_EQ(seen[size_t(j)], 1 + j * stride)
            << "count " << count << " stride " << stride << " at " << j;
    }
}

TEST(CudaHostKernels, PlaneIndexWithDividersMatchesPlainArithmetic) {
  // planeAt, planeItem, MapGeom::channelAt and RowCursor against the plain
  // int64_t forms, in NCHW, NHWC and blocked layouts.
  for (Dims4 d : {Dims4{2, 6, 3, 5}, Dims4{3, 16, 1, 1}, Dims4{1, 8, 7, 2}}) {
    for (int64_t lanes : {int64_t(1), int64_t(2), d.c}) {
      if (d.c % lanes != 0)
        continue;
      cuda::MapGeom g = cuda::mapGeom(d, lanes);
      const int64_t plane = d.h * d.w;
      for (int64_t i = 0; i < d.count(); ++i) {
        int64_t nc, p, nc2, p2;
        cuda::planeItem(i, plane, lanes, nc, p);
        cuda::planeItem(i, g.planeDiv, g.lanesDiv, nc2, p2);
        ASSERT_EQ(nc2, nc);
        ASSERT_EQ(p2, p);
        ASSERT_EQ(cuda::planeAt(nc, plane, p, g.lanesDiv),
                  cuda::planeAt(nc, plane, p, lanes));
        ASSERT_EQ(g.channelAt(i), nc % d.c) << i;
      }
      for (int64_t c = 0; c < d.c; ++c)
        for (int64_t m0 : {int64_t(0), plane - 1, plane + 1}) {
          if (m0 < 0 || m0 >= d.n * plane)
            continue;
          cuda::RowCursor row(g, c, m0);
          for (int64_t m = m0; m < d.n * plane; ++m, row.next())
            ASSERT_EQ(row.offset, cuda::planeAt((m / plane) * d.c + c, plane,
                                                m % plane, lanes))
                << "channel " << c << " row " << m << " lanes " << lanes;
        }
    }
  }
}

/// Every elementwise kernel in packs gives the bits it gives one element at
/// a time: aligned (packs, then a partial one) and misaligned (no packs),
/// in place too.
template <typename T> void packsMatchSingleElements() {
  constexpr int64_t W = cuda::Pack<T>::kWidth;
  Rng rng(22);
  const uint64_t step = 5;
  for (int64_t count :
       {int64_t(1), W - 1, W, W + 1, 4 * W + 3, int64_t(48), int64_t(999)}) {
    for (int64_t offset : {int64_t(0), int64_t(1)}) {
      const size_t n = size_t(count + offset);
      auto vec = [&](bool relued) {
        FVec f = relued ? rng.relued(int64_t(n)) : rng.vec(int64_t(n));
        std::vector<T> v(n);
        for (size_t i = 0; i < n; ++i)
          cuda::store(&v[i], f[i]);
        return v;
      };
      std::vector<T> a = vec(false), b = vec(true);
      const T *pa = a.data() + offset, *pb = b.data() + offset;
      // Runs the kernel that `make(packed, y, z)` builds into fresh outputs,
      // packed and not, and compares their bits.
      auto both = [&](const char *what, auto make) {
        std::vector<T> y[2], z[2];
        int64_t widths[2];
        for (int packed = 0; packed < 2; ++packed) {
          y[packed].assign(n, T{});
          z[packed].assign(n, T{});
          auto f = make(packed == 1, y[packed].data() + offset,
                        z[packed].data() + offset);
          widths[packed] = f.width;
          cuda::runOnHost(f);
        }
        // std::vector's storage is 16-byte aligned on this host's malloc.
        ASSERT_EQ(widths[0], 1) << what;
        ASSERT_EQ(widths[1], offset == 0 ? W : 1) << what;
        for (size_t i = 0; i < n; ++i) {
          ASSERT_EQ(std::memcmp(&y[0][i], &y[1][i], sizeof(T)), 0)
              << what << " count " << count << " offset " << offset << " at "
              << i;
          ASSERT_EQ(std::memcmp(&z[0][i], &z[1][i], sizeof(T)), 0)
              << what << " (second output) at " << i;
        }
      };
      both("relu",
           [&](bool p, T *y, T *) { return cuda::makeRelu(count, pa, y, p); });
      both("relu_grad", [&](bool p, T *y, T *) {
        return cuda::makeReluGrad(count, pb, pa, y, p);
      });
      both("add", [&](bool p, T *y, T *) {
        return cuda::makeAdd(count, pa, pb, y, p);
      });
      both("scale", [&](bool p, T *y, T *) {
        return cuda::makeScale(count, pa, 0.3f, y, p);
      });
      both("euclidean_loss backward", [&](bool p, T *y, T *z) {
        return cuda::makeEuclideanLossBackward<T>(4, count, pa, pb, 0.7f, y, z,
                                                  p);
      });
      both("dropout", [&](bool p, T *y, T *) {
        return cuda::makeDropout(count, 0.5, cuda::dropoutScale(0.5), 9, &step,
                                 3, 1, 1, pa, y, p);
      });
      if (count % 6 == 0) // a map of planes of 3 in groups of 2 (lanes 2)
        both("dropout, lanes 2", [&](bool p, T *y, T *) {
          return cuda::makeDropout(count, 0.5, cuda::dropoutScale(0.5), 9,
                                   &step, 3, 3, 2, pa, y, p);
        });
      // In place, packed: the same as out of place.
      std::vector<T> inPlace = a, apart(n);
      cuda::runOnHost(cuda::makeRelu(count, pa, apart.data() + offset, true));
      cuda::runOnHost(cuda::makeRelu(count, inPlace.data() + offset,
                                     inPlace.data() + offset, true));
      for (size_t i = size_t(offset); i < n; ++i)
        ASSERT_EQ(std::memcmp(&inPlace[i], &apart[i], sizeof(T)), 0);
    }
  }
}

/// The conv epilogue in packs, where a pack's channel is found once (a
/// plane of whole packs, a pixel of whole packs) or per element, against
/// one element per item.
template <typename T> void biasAddPacksMatchSingleElements() {
  constexpr int64_t W = cuda::Pack<T>::kWidth;
  Rng rng(23);
  for (Dims4 d : {Dims4{2, 8, 3, 2}, Dims4{2, 8, 4, 2}, Dims4{3, 16, 1, 5},
                  Dims4{2, 12, 2, 2}, Dims4{1, 24, 3, 3}})
    for (int64_t lanes : {int64_t(1), d.c}) {
      FVec bias = rng.vec(d.c), f = rng.vec(d.count());
      std::vector<T> x(f.size()), y[2];
      for (size_t i = 0; i < f.size(); ++i)
        cuda::store(&x[i], f[i]);
      for (int packed = 0; packed < 2; ++packed) {
        y[packed].assign(x.size(), T{});
        auto k = cuda::makeBiasAdd(d, lanes, x.data(), bias.data(),
                                   y[packed].data(), packed == 0, packed == 1);
        auto want = lanes == 1 && d.plane() % W == 0 ? cuda::BiasAddOp::kSame
                    : lanes == d.c && d.c % W == 0
                        ? cuda::BiasAddOp::kConsecutive
                        : cuda::BiasAddOp::kPerElement;
        ASSERT_EQ(k.op.channels, want);
        cuda::runOnHost(k);
      }
      // One element per item with the relu, packs without it: the relu of
      // each packed sum is the single element's result (the same channel's
      // bias, and the relu of a stored sum is exact).
      for (size_t i = 0; i < x.size(); ++i) {
        float relued = cuda::load(&y[0][i]), sum = cuda::load(&y[1][i]);
        ASSERT_EQ(bits(relued), bits(sum > 0.0f ? sum : 0.0f))
            << d.n << "x" << d.c << "x" << d.h << "x" << d.w << " lanes "
            << lanes << " at " << i;
      }
    }
}

/// Max-pool, the unpool and their backwards in channel packs (NHWC maps whose
/// channels are whole packs) against one element per item, bit for bit:
/// every pooling case, ties, switches and fixed positions, normalized or
/// not. One element per item matches the reference (the tests above).
template <typename T> void poolPacksMatchSingleElements() {
  constexpr int64_t W = cuda::Pack<T>::kWidth;
  Rng rng(24);
  for (PoolCase c : poolCases())
    for (int64_t C : {W, 3 * W}) {
      c.in.c = C;
      PoolShape s = poolShape(c.in, c.win, c.ceil);
      std::string what = std::string(typeName(T())) +
                         " C=" + std::to_string(C) + " " + name(c);
      // Some gradients -0 (a gather adds +0 first: +0 comes out).
      FVec dyF = rng.vec(s.out.count());
      for (size_t i = 0; i < dyF.size(); i += 5)
        dyF[i] = -0.0f;
      std::vector<T> x = stored<T>(rng.relued(s.in.count())),
                     dy = stored<T>(dyF);
      std::vector<T> y[2], dx[2];
      SVec sw[2];
      for (int packed = 0; packed < 2; ++packed) {
        y[packed].assign(size_t(s.out.count()), T{});
        sw[packed].assign(y[packed].size(), 0xF9);
        auto pool = cuda::makeMaxPoolForward(s, x.data(), y[packed].data(),
                                             sw[packed].data(), C, packed == 1);
        ASSERT_EQ(pool.width, packed ? W : 1) << what;
        cuda::runOnHost(pool);
        dx[packed].assign(size_t(s.in.count()), T{});
        auto back = cuda::makeMaxPoolBackward(
            s, dy.data(), sw[packed].data(), dx[packed].data(), C, packed == 1);
        ASSERT_EQ(back.width, packed ? W : 1) << what;
        cuda::runOnHost(back);
      }
      ASSERT_EQ(sw[0], sw[1]) << what;
      ASSERT_EQ(std::memcmp(y[0].data(), y[1].data(), y[0].size() * sizeof(T)),
                0)
          << what;
      ASSERT_EQ(
          std::memcmp(dx[0].data(), dx[1].data(), dx[0].size() * sizeof(T)), 0)
          << what << " backward";
      forEachUnpool(c, s, [&](const UnpoolShape &u, bool fixed) {
        std::vector<T> up[2];
        for (int packed = 0; packed < 2; ++packed) {
          up[packed].assign(size_t(u.out.count()), T{});
          auto k = cuda::makeUnpoolForward(u, y[0].data(),
                                           fixed ? nullptr : sw[0].data(),
                                           up[packed].data(), C, packed == 1);
          ASSERT_EQ(k.width, packed ? W : 1) << what;
          cuda::runOnHost(k);
        }
        ASSERT_EQ(
            std::memcmp(up[0].data(), up[1].data(), up[0].size() * sizeof(T)),
            0)
            << what << " unpool " << (fixed ? "fixed" : "switches")
            << " normalize " << u.normalize;
        std::vector<T> gx[2];
        for (int packed = 0; packed < 2; ++packed) {
          gx[packed].assign(size_t(u.in.count()), T{});
          auto k = cuda::makeUnpoolBackward(u, up[0].data(),
                                            fixed ? nullptr : sw[0].data(),
                                            gx[packed].data(), C, packed == 1);
          ASSERT_EQ(k.width, packed ? W : 1) << what;
          cuda::runOnHost(k);
        }
        ASSERT_EQ(
            std::memcmp(gx[0].data(), gx[1].data(), gx[0].size() * sizeof(T)),
            0)
            << what << " unpool backward " << (fixed ? "fixed" : "switches")
            << " pos " << u.posH << "," << u.posW << " normalize "
            << u.normalize;
      });
      // Not NHWC, not whole packs, or misaligned: one element per item.
      EXPECT_EQ(
          cuda::makeMaxPoolForward(s, x.data(), y[0].data(), sw[0].data(), 1)
              .width,
          1);
      EXPECT_EQ(cuda::makeMaxPoolForward(s, x.data() + 1, y[0].data(),
                                         sw[0].data(), C)
                    .width,
                1);
      EXPECT_EQ(cuda::makeMaxPoolForward(s, x.data(), y[0].data() + 1,
                                         sw[0].data(), C)
                    .width,
                1);
      EXPECT_EQ(cuda::makeMaxPoolForward(s, x.data(), y[0].data(),
                                         sw[0].data() + 1, C)
                    .width,
                1);
      // Switches this max-pool did not write, some it cannot write (the
      // host launchers refuse them; the device ignores them): outside
      // their window, or another position of it (in the padding, where the
      // window reaches into it). The functors, packed and not, agree.
      SVec bad = sw[0];
      const int window = int(c.win.kh * c.win.kw);
      for (size_t i = 0; i < bad.size(); i += 3)
        bad[i] = kernels::Switch(i % 4 == 0   ? std::min(window, 255)
                                 : i % 4 == 1 ? 255
                                              : (bad[i] + 1) % window);
      UnpoolShape u = unpoolShape(s.out, c.win, s.in.h, s.in.w, 0, 0, true);
      std::vector<T> up[2], gx[2];
      for (int packed = 0; packed < 2; ++packed) {
        up[packed].assign(size_t(u.out.count()), T{});
        gx[packed].assign(size_t(u.in.count()), T{});
        cuda::runOnHost(cuda::makeUnpoolForward(
            u, y[0].data(), bad.data(), up[packed].data(), C, packed == 1));
        // x: a gradient of the unpool's output's shape.
        cuda::runOnHost(cuda::makeUnpoolBackward(
            u, x.data(), bad.data(), gx[packed].data(), C, packed == 1));
      }
      ASSERT_EQ(
          std::memcmp(up[0].data(), up[1].data(), up[0].size() * sizeof(T)), 0)
          << what << " unpool, bad switches";
      ASSERT_EQ(
          std::memcmp(gx[0].data(), gx[1].data(), gx[0].size() * sizeof(T)), 0)
          << what << " unpool backward, bad switches";
    }
  PoolShape odd = poolShape({1, W + 1, 4, 4}, {2, 2, 2, 2, 0, 0});
  std::vector<T> a(size_t(odd.in.count())), b(size_t(odd.out.count()));
  EXPECT_EQ(cuda::makeMaxPoolForward(odd, a.data(), b.data(),
                                     static_cast<kernels::Switch *>(nullptr),
                                     W + 1)
                .width,
            1);
}

TEST(CudaHostKernels, PoolingChannelPacksGiveTheBitsOfSingleElements) {
  poolPacksMatchSingleElements<float>();
  poolPacksMatchSingleElements<cuda::Bf16>();
}

TEST(CudaHostKernels, ElementwisePacksGiveTheBitsOfSingleElements) {
  biasAddPacksMatchSingleElements<float>();
  biasAddPacksMatchSingleElements<cuda::Bf16>();
  packsMatchSingleElements<float>();
  packsMatchSingleElements<cuda::Bf16>();
}

} // namespace
