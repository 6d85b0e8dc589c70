//===- ReferenceKernelsTest.cpp - the reference backend's kernels ---------===//
//
// Forward kernels against small hand-computed cases; every backward kernel
// against central finite differences of a scalar function
// L(x) = sum(r * forward(x)) in double precision (r random), so the analytic
// gradient is backward(dy = r).
//
//===----------------------------------------------------------------------===//

#include "runtime/kernels/Reference.h"
#include "test/unit/Switches.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

using namespace netc::kernels;
using Vec = std::vector<double>;
using IVec = std::vector<int32_t>;

namespace {

/// Deterministic uniform numbers, portable across standard libraries.
class Rng {
public:
  explicit Rng(uint64_t seed) : state(seed) {}
  double uniform(double lo = -1.0, double hi = 1.0) {
    state = splitmix64(state);
    return lo + (hi - lo) * double(state >> 11) * 0x1.0p-53;
  }
  Vec vec(size_t n, double lo = -1.0, double hi = 1.0) {
    Vec v(n);
    for (double &x : v)
      x = uniform(lo, hi);
    return v;
  }
  /// n distinct values in (-1, 1), at least 1/n apart and at least 1/(2n)
  /// away from 0, in random order: no ties, no kinks for FD.
  Vec distinct(size_t n) {
    Vec v(n);
    for (size_t i = 0; i < n; ++i)
      v[i] = (double(i) + 0.5) / double(n) * 2.0 - 1.0;
    for (size_t i = n; i > 1; --i) {
      state = splitmix64(state);
      std::swap(v[i - 1], v[state % i]);
    }
    return v;
  }

private:
  uint64_t state;
};

double dot(const Vec &a, const Vec &b) {
  EXPECT_EQ(a.size(), b.size());
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i)
    s += a[i] * b[i];
  return s;
}

/// Compares `grad` with central differences of f() w.r.t. every element of
/// x (which f reads; perturbed in place and restored).
void expectGradFD(const std::string &what, Vec &x, const Vec &grad,
                  const std::function<double()> &f, double h = 1e-5,
                  double tol = 1e-6) {
  ASSERT_EQ(x.size(), grad.size()) << what;
  int failures = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    double orig = x[i];
    x[i] = orig + h;
    double fp = f();
    x[i] = orig - h;
    double fm = f();
    x[i] = orig;
    double fd = (fp - fm) / (2.0 * h);
    double scale = std::max({std::fabs(fd), std::fabs(grad[i]), 1e-2});
    if (std::fabs(fd - grad[i]) > tol * scale && failures++ < 5)
      ADD_FAILURE() << what << ": element " << i << " analytic " << grad[i]
                    << " finite difference " << fd;
  }
}

void expectNear(const Vec &got, const Vec &want, double tol = 1e-12) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], want[i], tol) << "element " << i;
}

//===----------------------------------------------------------------------===//
// Convolution
//===----------------------------------------------------------------------===//

Vec conv(const ConvShape &s, const Vec &x, const Vec &w, const Vec *b) {
  Vec y(s.out.count());
  ref::conv2dForward<double>(s, x.data(), w.data(), b ? b->data() : nullptr,
                             y.data());
  return y;
}

Vec deconv(const ConvShape &s, const Vec &x, const Vec &w, const Vec *b) {
  Vec y(s.out.count());
  ref::deconv2dForward<double>(s, x.data(), w.data(), b ? b->data() : nullptr,
                               y.data());
  return y;
}

TEST(RefConv, HandComputedStridePad) {
  // 3x3 input 1..9, 2x2 kernel of ones.
  Vec x{1, 2, 3, 4, 5, 6, 7, 8, 9}, w{1, 1, 1, 1}, b{0.5};
  ConvShape s = conv2dShape({1, 1, 3, 3}, 1, Window2D{2, 2, 1, 1, 0, 0});
  EXPECT_EQ(s.out, (Dims4{1, 1, 2, 2}));
  expectNear(conv(s, x, w, &b), {12.5, 16.5, 24.5, 28.5});

  // Stride 2, pad 1: (3 + 2 - 2) / 2 + 1 = 2.
  s = conv2dShape({1, 1, 3, 3}, 1, Window2D{2, 2, 2, 2, 1, 1});
  EXPECT_EQ(s.out, (Dims4{1, 1, 2, 2}));
  expectNear(conv(s, x, w, nullptr), {1, 2 + 3, 4 + 7, 5 + 6 + 8 + 9});

  // Cross-correlation, not convolution: the kernel is not flipped.
  Vec w2{1, 10, 100, 1000};
  s = conv2dShape({1, 1, 3, 3}, 1, Window2D{2, 2, 1, 1, 0, 0});
  EXPECT_DOUBLE_EQ(conv(s, x, w2, nullptr)[0], 1 + 20 + 400 + 5000);
}

TEST(RefConv, HandComputedGroups) {
  // Two groups, 1x1 kernels: y0 = 2 * x0, y1 = 3 * x1 (+ bias).
  Vec x{1, 2, 3, 4, 5, 6, 7, 8}, w{2, 3}, b{1, -1};
  ConvShape s = conv2dShape({1, 2, 2, 2}, 2, Window2D{}, 2);
  expectNear(conv(s, x, w, &b), {3, 5, 7, 9, 14, 17, 20, 23});
}

TEST(RefConv, GroupsAreIndependentConvolutions) {
  Rng rng(1);
  Window2D win{3, 2, 2, 1, 1, 0};
  Dims4 in{2, 4, 5, 4};
  ConvShape s = conv2dShape(in, 6, win, 2);
  Vec x = rng.vec(in.count()), w = rng.vec(6 * 2 * 3 * 2), b = rng.vec(6);
  Vec y = conv(s, x, w, &b);
  ConvShape s1 = conv2dShape({1, 2, 5, 4}, 3, win, 1);
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t g = 0; g < 2; ++g) {
      Vec xg(x.begin() + (n * 4 + g * 2) * 20,
             x.begin() + (n * 4 + g * 2 + 2) * 20);
      Vec wg(w.begin() + g * 3 * 12, w.begin() + (g + 1) * 3 * 12);
      Vec bg(b.begin() + g * 3, b.begin() + (g + 1) * 3);
      Vec yg = conv(s1, xg, wg, &bg);
      int64_t plane = s.out.plane();
      Vec want(y.begin() + (n * 6 + g * 3) * plane,
               y.begin() + (n * 6 + g * 3 + 3) * plane);
      expectNear(yg, want);
    }
}

TEST(RefConv, BackwardMatchesFiniteDifferences) {
  Rng rng(2);
  Dims4 in{2, 4, 5, 6};
  ConvShape s = conv2dShape(in, 4, Window2D{3, 2, 2, 1, 1, 1}, 2);
  Vec x = rng.vec(in.count()), w = rng.vec(4 * 2 * 3 * 2), b = rng.vec(4);
  Vec r = rng.vec(s.out.count());
  auto loss = [&] { return dot(r, conv(s, x, w, &b)); };
  Vec dx(x.size()), dw(w.size()), db(b.size());
  ref::conv2dBackwardData<double>(s, r.data(), w.data(), dx.data());
  ref::conv2dBackwardFilter<double>(s, x.data(), r.data(), dw.data());
  ref::biasBackward<double>(s.out, r.data(), db.data());
  expectGradFD("conv dx", x, dx, loss);
  expectGradFD("conv dw", w, dw, loss);
  expectGradFD("conv db", b, db, loss);
}

TEST(RefDeconv, ShapeAndHandComputed) {
  // Stride 2, kernel 2, no pad: each input pixel paints a 2x2 copy of w.
  ConvShape s = deconv2dShape({1, 1, 2, 2}, 1, Window2D{2, 2, 2, 2, 0, 0});
  EXPECT_EQ(s.out, (Dims4{1, 1, 4, 4}));
  Vec x{1, 2, 3, 4}, w{1, 10, 100, 1000}, b{0.25};
  Vec y = deconv(s, x, w, &b);
  Vec want{1,   10,   2,   20,   //
           100, 1000, 200, 2000, //
           3,   30,   4,   40,   //
           300, 3000, 400, 4000};
  for (double &v : want)
    v += 0.25;
  expectNear(y, want);

  // (3 - 1) * 2 - 2 * 1 + 3 + 1 = 6.
  EXPECT_EQ(
      deconv2dShape({1, 2, 3, 3}, 4, Window2D{3, 3, 2, 2, 1, 1}, 2, 1, 1).out,
      (Dims4{1, 4, 6, 6}));
  EXPECT_THROW(
      deconv2dShape({1, 1, 3, 3}, 1, Window2D{3, 3, 2, 2, 1, 1}, 1, 2, 0),
      KernelError);
}

TEST(RefDeconv, IsTheAdjointOfConv) {
  Rng rng(3);
  // Deconv geometry with output padding, groups, non-square window; the
  // matching conv maps its output back to its input.
  Window2D win{3, 2, 2, 3, 1, 0};
  ConvShape d = deconv2dShape({2, 4, 3, 3}, 6, win, 2, 1, 2);
  ConvShape c = conv2dShape(d.out, d.in.c, win, 2);
  ASSERT_EQ(c.out, d.in);
  // conv weight [Cout = d.in.c, Cin/g = d.out.c/g, kh, kw] is the deconv
  // weight layout [Cin, Cout/g, kh, kw].
  Vec w = rng.vec(4 * 3 * 3 * 2);
  Vec x = rng.vec(d.out.count()); // conv input / deconv output side
  Vec y = rng.vec(d.in.count());  // conv output / deconv input side
  double lhs = dot(conv(c, x, w, nullptr), y);
  double rhs = dot(x, deconv(d, y, w, nullptr));
  EXPECT_NEAR(lhs, rhs, 1e-12 * std::max(1.0, std::fabs(lhs)));

  // And deconv forward == conv backward-data, deconv backward-data == conv.
  Vec a(d.out.count());
  ref::conv2dBackwardData<double>(c, y.data(), w.data(), a.data());
  expectNear(a, deconv(d, y, w, nullptr));
  Vec bwd(d.in.count());
  ref::deconv2dBackwardData<double>(d, x.data(), w.data(), bwd.data());
  expectNear(bwd, conv(c, x, w, nullptr));
}

TEST(RefDeconv, BackwardMatchesFiniteDifferences) {
  Rng rng(4);
  ConvShape s =
      deconv2dShape({2, 4, 3, 2}, 2, Window2D{3, 2, 2, 2, 1, 0}, 2, 1, 0);
  Vec x = rng.vec(s.in.count()), w = rng.vec(4 * 1 * 3 * 2), b = rng.vec(2);
  Vec r = rng.vec(s.out.count());
  auto loss = [&] { return dot(r, deconv(s, x, w, &b)); };
  Vec dx(x.size()), dw(w.size()), db(b.size());
  ref::deconv2dBackwardData<double>(s, r.data(), w.data(), dx.data());
  ref::deconv2dBackwardFilter<double>(s, x.data(), r.data(), dw.data());
  ref::biasBackward<double>(s.out, r.data(), db.data());
  expectGradFD("deconv dx", x, dx, loss);
  expectGradFD("deconv dw", w, dw, loss);
  expectGradFD("deconv db", b, db, loss);
}

TEST(RefConv, BadGeometryThrows) {
  EXPECT_THROW(conv2dShape({1, 3, 4, 4}, 4, Window2D{}, 2), KernelError);
  EXPECT_THROW(conv2dShape({1, 2, 2, 2}, 2, Window2D{3, 3, 1, 1, 0, 0}),
               KernelError);
  EXPECT_THROW(conv2dShape({1, 2, 2, 2}, 2, Window2D{1, 1, 0, 1, 0, 0}),
               KernelError);
}

//===----------------------------------------------------------------------===//
// ReLU
//===----------------------------------------------------------------------===//

TEST(RefRelu, ForwardAndFiniteDifferences) {
  Vec x{-2, -0.5, 0, 0.5, 3}, y(5);
  ref::reluForward<double>(5, x.data(), y.data());
  expectNear(y, {0, 0, 0, 0.5, 3});

  Rng rng(5);
  Vec xs = rng.distinct(24), r = rng.vec(24), ys(24), dx(24);
  ref::reluForward<double>(24, xs.data(), ys.data());
  ref::reluBackward<double>(24, ys.data(), r.data(), dx.data());
  auto loss = [&] {
    Vec t(24);
    ref::reluForward<double>(24, xs.data(), t.data());
    return dot(r, t);
  };
  expectGradFD("relu dx", xs, dx, loss);
}

//===----------------------------------------------------------------------===//
// Pooling
//===----------------------------------------------------------------------===//

using SVec = netc::testing::SwitchVec;
using netc::testing::positions;

struct Pooled {
  Vec y;
  SVec sw;
};

Pooled maxPool(const PoolShape &s, const Vec &x) {
  Pooled p{Vec(s.out.count()), SVec(s.out.count())};
  ref::maxPoolForward<double>(s, x.data(), p.y.data(), p.sw.data());
  return p;
}

Vec avgPool(const PoolShape &s, const Vec &x) {
  Vec y(s.out.count());
  ref::avgPoolForward<double>(s, x.data(), y.data());
  return y;
}

TEST(RefPool, OutputSizeRounding) {
  EXPECT_EQ(poolOutputSize(224, 2, 2, 0, false), 112);
  EXPECT_EQ(poolOutputSize(55, 3, 2, 0, true), 27);
  EXPECT_EQ(poolOutputSize(6, 3, 2, 0, false), 2);
  EXPECT_EQ(poolOutputSize(6, 3, 2, 0, true), 3);
  EXPECT_EQ(poolOutputSize(6, 3, 2, 1, true), 4);
  // Caffe's rule: ceil gives 4, but the 4th window would start at padded
  // offset 6 >= 5 + 1, entirely in the padding: dropped.
  EXPECT_EQ(poolOutputSize(5, 2, 2, 1, true), 3);
  EXPECT_EQ(poolOutputSize(5, 2, 2, 1, false), 3);
  EXPECT_EQ(poolOutputSize(4, 3, 3, 2, true), 2);
  EXPECT_THROW(poolOutputSize(4, 2, 2, 2, false), KernelError); // pad >= k
  EXPECT_THROW(poolOutputSize(1, 3, 1, 0, false), KernelError);
}

TEST(RefMaxPool, HandComputedWithSwitches) {
  // 4x4, 2x2 stride 2.
  Vec x{1, 5, 2, 0, //
        3, 4, 8, 7, //
        9, 0, 1, 1, //
        2, 9, 6, -1};
  PoolShape s = poolShape({1, 1, 4, 4}, Window2D{2, 2, 2, 2, 0, 0});
  Pooled p = maxPool(s, x);
  expectNear(p.y, {5, 8, 9, 6});
  // (0,1) -> 1; (1,2) -> 6; 9 at (2,0) and (3,1): the first -> 8; (3,2) -> 14.
  EXPECT_EQ(positions(s, p.sw), (IVec{1, 6, 8, 14}));
  // Each recorded within its window, row-major: (0,1), (1,0), (0,0), (1,0).
  EXPECT_EQ(p.sw, (SVec{1, 2, 0, 2}));
}

TEST(RefMaxPool, PaddingIsMinusInfinity) {
  // All negative: a zero pad would win if padding counted as 0.
  Vec x{-5, -4, -3, -2, -1, -6, -7, -8, -9};
  PoolShape s = poolShape({1, 1, 3, 3}, Window2D{2, 2, 2, 2, 1, 1});
  ASSERT_EQ(s.out, (Dims4{1, 1, 2, 2}));
  Pooled p = maxPool(s, x);
  // Windows: {(0,0)}, {(0,1),(0,2)}, {(1,0),(2,0)}, {(1,1),(1,2),(2,1),(2,2)}.
  expectNear(p.y, {-5, -3, -2, -1});
  EXPECT_EQ(positions(s, p.sw), (IVec{0, 2, 3, 4}));
  // Within windows that start at (-1, -1), (-1, 1), (1, -1) and (1, 1).
  EXPECT_EQ(p.sw, (SVec{3, 3, 1, 0}));
}

TEST(RefMaxPool, CeilModeWithPadding) {
  // 5x5, 2x2 stride 2 pad 1, ceil: 3x3 (the 4th window is dropped).
  Vec x(25);
  std::iota(x.begin(), x.end(), 0.0);
  PoolShape s = poolShape({1, 1, 5, 5}, Window2D{2, 2, 2, 2, 1, 1}, true);
  ASSERT_EQ(s.out, (Dims4{1, 1, 3, 3}));
  Pooled p = maxPool(s, x);
  // Window rows: {0}, {1,2}, {3,4}; the max is the bottom-right element.
  expectNear(p.y, {0, 2, 4, 10, 12, 14, 20, 22, 24});
  EXPECT_EQ(positions(s, p.sw), (IVec{0, 2, 4, 10, 12, 14, 20, 22, 24}));

  // 6x6, 3x3 stride 2 pad 0, ceil: 3x3, the last window clipped to 2 rows.
  Vec x6(36);
  std::iota(x6.begin(), x6.end(), 0.0);
  x6[35] = -1; // the clipped corner window {4,5}x{4,5} holds 28, 29, 34, -1
  PoolShape s6 = poolShape({1, 1, 6, 6}, Window2D{3, 3, 2, 2, 0, 0}, true);
  ASSERT_EQ(s6.out, (Dims4{1, 1, 3, 3}));
  Pooled p6 = maxPool(s6, x6);
  EXPECT_EQ(positions(s6, p6.sw)[8], 34);
  EXPECT_DOUBLE_EQ(p6.y[8], 34);
}

TEST(RefMaxPool, TiesRecordTheFirstPosition) {
  // All-zero input (typical after ReLU): every window records its first
  // in-input position in row-major order, also when the window starts in the
  // padding.
  Vec x(16, 0.0);
  PoolShape s = poolShape({1, 1, 4, 4}, Window2D{3, 3, 2, 2, 1, 1});
  ASSERT_EQ(s.out, (Dims4{1, 1, 2, 2}));
  Pooled p = maxPool(s, x);
  // Window starts (row, col): (-1,-1) -> (0,0); (-1,1) -> (0,1); (1,-1) ->
  // (1,0); (1,1) -> (1,1).
  EXPECT_EQ(positions(s, p.sw), (IVec{0, 1, 4, 5}));

  Vec t{1, 2, 2, 1}; // partial tie: the first 2 wins
  PoolShape s2 = poolShape({1, 1, 2, 2}, Window2D{2, 2, 2, 2, 0, 0});
  EXPECT_EQ(maxPool(s2, t).sw, (SVec{1}));
}

TEST(RefMaxPool, BackwardMatchesFiniteDifferences) {
  Rng rng(6);
  // Overlapping 3x3 stride 2, pad 1, ceil.
  PoolShape s = poolShape({2, 2, 6, 5}, Window2D{3, 3, 2, 2, 1, 1}, true);
  Vec x = rng.distinct(s.in.count()), r = rng.vec(s.out.count());
  Pooled p = maxPool(s, x);
  Vec dx(x.size());
  ref::maxPoolBackward<double>(s, r.data(), p.sw.data(), dx.data());
  expectGradFD("max_pool dx", x, dx, [&] { return dot(r, maxPool(s, x).y); });
}

TEST(RefAvgPool, HandComputedCaffeWindowSize) {
  // All ones, 6x6, 3x3 stride 2 pad 1 ceil -> 4x4. Per axis the windows
  // cover padded [hs, min(hs+3, 7)) with hs = -1, 1, 3, 5: sizes 3, 3, 3, 2,
  // of which 2, 3, 3, 1 are inside the input.
  Vec x(36, 1.0);
  PoolShape s = poolShape({1, 1, 6, 6}, Window2D{3, 3, 2, 2, 1, 1}, true);
  ASSERT_EQ(s.out, (Dims4{1, 1, 4, 4}));
  Vec y = avgPool(s, x);
  double f[4] = {2.0 / 3, 1, 1, 0.5};
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j)
      EXPECT_NEAR(y[i * 4 + j], f[i] * f[j], 1e-15) << i << "," << j;

  // No padding, 2x2 stride 2: plain means.
  Vec x2{1, 2, 3, 4, 5, 6, 7, 8};
  PoolShape s2 = poolShape({1, 2, 2, 2}, Window2D{2, 2, 2, 2, 0, 0});
  expectNear(avgPool(s2, x2), {2.5, 6.5});
}

TEST(RefAvgPool, BackwardMatchesFiniteDifferences) {
  Rng rng(7);
  PoolShape s = poolShape({2, 2, 6, 5}, Window2D{3, 2, 2, 2, 1, 1}, true);
  Vec x = rng.vec(s.in.count()), r = rng.vec(s.out.count());
  Vec dx(x.size());
  ref::avgPoolBackward<double>(s, r.data(), dx.data());
  expectGradFD("avg_pool dx", x, dx, [&] { return dot(r, avgPool(s, x)); });
}

//===----------------------------------------------------------------------===//
// Unpooling
//===----------------------------------------------------------------------===//

Vec unpool(const UnpoolShape &s, const Vec &x, const SVec *sw) {
  Vec y(s.out.count());
  ref::unpoolForward<double>(s, x.data(), sw ? sw->data() : nullptr, y.data());
  return y;
}

Vec unpoolGrad(const UnpoolShape &s, const Vec &dy, const SVec *sw) {
  Vec dx(s.in.count());
  ref::unpoolBackward<double>(s, dy.data(), sw ? sw->data() : nullptr,
                              dx.data());
  return dx;
}

TEST(RefUnpool, SwitchesWriteWherePoolRecorded) {
  Vec x{1, 5, 2, 0, //
        3, 4, 8, 7, //
        9, 0, 1, 1, //
        2, 9, 6, -1};
  Window2D win{2, 2, 2, 2, 0, 0};
  PoolShape ps = poolShape({1, 1, 4, 4}, win);
  Pooled p = maxPool(ps, x);
  UnpoolShape us = unpoolShape(ps.out, win, 4, 4);
  Vec u = unpool(us, p.y, &p.sw);
  expectNear(u, {0, 5, 0, 0, //
                 0, 0, 8, 0, //
                 9, 0, 0, 0, //
                 0, 0, 6, 0});
  // Unpool with switches is the max-pool's backward scatter.
  Vec scatter(16);
  ref::maxPoolBackward<double>(ps, p.y.data(), p.sw.data(), scatter.data());
  expectNear(u, scatter);
}

TEST(RefUnpool, AllZeroWindowUnpoolsToTheRecordedFirstPosition) {
  Window2D win{2, 2, 2, 2, 0, 0};
  Vec x(2 * 16, 0.0);
  x[16 + 5] = 3; // second channel: one window has a real maximum
  PoolShape ps = poolShape({1, 2, 4, 4}, win);
  Pooled p = maxPool(ps, x);
  const IVec at = positions(ps, p.sw);
  EXPECT_EQ(at, (IVec{0, 2, 8, 10, 5, 2, 8, 10}));
  UnpoolShape us = unpoolShape(ps.out, win, 4, 4);
  Vec ones(8, 1.0);
  Vec u = unpool(us, ones, &p.sw);
  for (int64_t c = 0; c < 2; ++c)
    for (int64_t q = 0; q < 16; ++q) {
      bool recorded = std::find(at.begin() + c * 4, at.begin() + c * 4 + 4,
                                q) != at.begin() + c * 4 + 4;
      EXPECT_EQ(u[c * 16 + q], recorded ? 1.0 : 0.0) << c << "," << q;
    }
}

TEST(RefUnpool, FixedPositionHandComputed) {
  Window2D win{2, 2, 2, 2, 0, 0};
  UnpoolShape us = unpoolShape({1, 1, 2, 2}, win, 4, 4, 1, 1);
  expectNear(unpool(us, {1, 2, 3, 4}, nullptr), {0, 0, 0, 0, //
                                                 0, 1, 0, 2, //
                                                 0, 0, 0, 0, //
                                                 0, 3, 0, 4});
  // Pad 1, position (0, 0): row/col 0 of the input targets -1 and is dropped;
  // the rest lands at (2i - 1, 2j - 1).
  UnpoolShape up = unpoolShape({1, 1, 2, 2}, Window2D{2, 2, 2, 2, 1, 1}, 3, 3);
  expectNear(unpool(up, {1, 2, 3, 4}, nullptr), {0, 0, 0, 0, 4, 0, 0, 0, 0});
  expectNear(unpoolGrad(up, {1, 2, 3, 4, 5, 6, 7, 8, 9}, nullptr),
             {0, 0, 0, 5});
  EXPECT_THROW(unpoolShape({1, 1, 2, 2}, win, 4, 4, 2, 0), KernelError);
}

TEST(RefUnpool, OverlappingWindowsSumAndNormalize) {
  // 5x5 with one dominant centre: all four 3x3/stride-2 windows pick it.
  Window2D win{3, 3, 2, 2, 0, 0};
  Vec x(25, 0.0);
  for (int i = 0; i < 25; ++i)
    x[i] = -double(i);
  x[12] = 100;
  PoolShape ps = poolShape({1, 1, 5, 5}, win);
  Pooled p = maxPool(ps, x);
  ASSERT_EQ(positions(ps, p.sw), (IVec{12, 12, 12, 12}));
  Vec in{1, 2, 3, 4};
  UnpoolShape sum = unpoolShape(ps.out, win, 5, 5);
  UnpoolShape norm = unpoolShape(ps.out, win, 5, 5, 0, 0, true);
  Vec us = unpool(sum, in, &p.sw), un = unpool(norm, in, &p.sw);
  for (int q = 0; q < 25; ++q) {
    EXPECT_EQ(us[q], q == 12 ? 10.0 : 0.0);
    EXPECT_EQ(un[q], q == 12 ? 2.5 : 0.0);
  }
  Vec dy(25, 0.0);
  dy[12] = 8;
  expectNear(unpoolGrad(norm, dy, &p.sw), {2, 2, 2, 2});
  expectNear(unpoolGrad(sum, dy, &p.sw), {8, 8, 8, 8});
}

TEST(RefUnpool, BackwardMatchesFiniteDifferences) {
  Rng rng(8);
  // Overlapping AlexNet-style windows (3x3 stride 2) on 2x2 planes of 7x7.
  Window2D win{3, 3, 2, 2, 0, 0};
  Dims4 map{2, 2, 7, 7};
  PoolShape ps = poolShape(map, win);
  Vec src = rng.distinct(map.count());
  for (int64_t pl = 0; pl < map.n * map.c; ++pl)
    src[pl * 49 + 2 * 7 + 2] = 10.0 + double(pl); // shared by 4 windows
  Pooled p = maxPool(ps, src);
  // The planted maximum is written by several windows: normalize matters.
  const IVec at = positions(ps, p.sw);
  ASSERT_EQ(std::count(at.begin(), at.begin() + 9, 16), 4);
  for (bool normalize : {false, true})
    for (bool useSwitches : {false, true}) {
      UnpoolShape us = unpoolShape(ps.out, win, map.h, map.w, 1, 1, normalize);
      const SVec *sw = useSwitches ? &p.sw : nullptr;
      Vec x = rng.vec(us.in.count()), r = rng.vec(us.out.count());
      Vec dx = unpoolGrad(us, r, sw);
      std::string what = std::string("unpool dx, ") +
                         (useSwitches ? "switches" : "fixed") +
                         (normalize ? ", normalize" : "");
      expectGradFD(what, x, dx, [&] { return dot(r, unpool(us, x, sw)); });
      // Adjoint identity, too.
      Vec z = rng.vec(us.in.count());
      EXPECT_NEAR(dot(unpool(us, z, sw), r), dot(z, dx), 1e-12) << what;
    }
}

TEST(RefUnpool, BadSwitchThrows) {
  Window2D win{2, 2, 2, 2, 0, 0};
  UnpoolShape us = unpoolShape({1, 1, 1, 1}, win, 2, 2);
  SVec sw{4}; // a 2x2 window has positions 0-3
  Vec x{1}, y(4);
  EXPECT_THROW(ref::unpoolForward<double>(us, x.data(), sw.data(), y.data()),
               KernelError);
}

//===----------------------------------------------------------------------===//
// Fully connected
//===----------------------------------------------------------------------===//

Vec fc(int64_t n, int64_t in, int64_t out, const Vec &x, const Vec &w,
       const Vec *b) {
  Vec y(n * out);
  ref::fcForward<double>(n, in, out, x.data(), w.data(),
                         b ? b->data() : nullptr, y.data());
  return y;
}

TEST(RefFc, HandComputed) {
  Vec x{1, 2, 3, 4, 5, 6};  // [2, 3]
  Vec w{1, 0, -1, 2, 1, 0}; // [2, 3]
  Vec b{10, 20};
  expectNear(fc(2, 3, 2, x, w, &b),
             {1 - 3 + 10, 2 + 2 + 20, 4 - 6 + 10, 8 + 5 + 20});
}

TEST(RefFc, BackwardMatchesFiniteDifferences) {
  Rng rng(9);
  int64_t n = 3, in = 5, out = 4;
  Vec x = rng.vec(n * in), w = rng.vec(out * in), b = rng.vec(out);
  Vec r = rng.vec(n * out);
  Vec dx(x.size()), dw(w.size()), db(b.size());
  ref::fcBackwardData<double>(n, in, out, r.data(), w.data(), dx.data());
  ref::fcBackwardFilter<double>(n, in, out, x.data(), r.data(), dw.data());
  ref::biasBackward<double>(Dims4{n, out, 1, 1}, r.data(), db.data());
  auto loss = [&] { return dot(r, fc(n, in, out, x, w, &b)); };
  expectGradFD("fc dx", x, dx, loss);
  expectGradFD("fc dw", w, dw, loss);
  expectGradFD("fc db", b, db, loss);
}

//===----------------------------------------------------------------------===//
// Dropout
//===----------------------------------------------------------------------===//

TEST(RefDropout, ASliceDrawsTheWholeMasksUnits) {
  // A data-parallel rank's slice of the global batch (first = its offset)
  // drops what one process at the global batch drops there.
  const int64_t count = 1000;
  std::vector<uint8_t> whole(count), slice(300);
  dropoutMask(42, 7, count, 0.5, whole.data());
  dropoutMask(42, 7, 300, 0.5, slice.data(), /*first=*/500);
  EXPECT_TRUE(std::equal(slice.begin(), slice.end(), whole.begin() + 500));
  dropoutMask(42, 7, 300, 0.5, slice.data());
  EXPECT_FALSE(std::equal(slice.begin(), slice.end(), whole.begin() + 500));
}

TEST(RefDropout, MaskIsDeterministicAndHasTheRightRate) {
  const int64_t count = 20000;
  std::vector<uint8_t> a(count), b(count), c(count), d(count);
  dropoutMask(42, 7, count, 0.3, a.data());
  dropoutMask(42, 7, count, 0.3, b.data());
  dropoutMask(42, 8, count, 0.3, c.data());
  dropoutMask(43, 7, count, 0.3, d.data());
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_NE(a, d);
  double kept = std::accumulate(a.begin(), a.end(), 0.0) / double(count);
  EXPECT_NEAR(kept, 0.7, 0.015);
  // Counter-based: element i of a longer mask is element i of a shorter one.
  std::vector<uint8_t> shortMask(100);
  dropoutMask(42, 7, 100, 0.3, shortMask.data());
  EXPECT_TRUE(std::equal(shortMask.begin(), shortMask.end(), a.begin()));
  // ratio 0 keeps everything; ratio outside [0, 1) is rejected.
  dropoutMask(1, 1, count, 0.0, a.data());
  EXPECT_EQ(std::count(a.begin(), a.end(), 1), count);
  EXPECT_THROW(dropoutMask(1, 1, 4, 1.0, a.data()), KernelError);
  // Pin the generator: any backend must reproduce these bits.
  EXPECT_EQ(splitmix64(0), 0xE220A8397B1DCDAFull);
  double u = dropoutUniform(0, 0, 0);
  EXPECT_EQ(u, double(splitmix64(splitmix64(0 ^ splitmix64(0)) ^ 0) >> 11) *
                   0x1.0p-53);
}

TEST(RefDropout, ForwardBackward) {
  Rng rng(10);
  const int64_t count = 32;
  const double ratio = 0.5;
  std::vector<uint8_t> mask(count);
  dropoutMask(3, 0, count, ratio, mask.data());
  Vec x = rng.vec(count), y(count), r = rng.vec(count), dx(count);
  ref::dropoutForward<double>(count, ratio, x.data(), mask.data(), y.data());
  for (int64_t i = 0; i < count; ++i)
    EXPECT_DOUBLE_EQ(y[i], mask[i] ? x[i] * 2.0 : 0.0);
  ref::dropoutBackward<double>(count, ratio, r.data(), mask.data(), dx.data());
  expectGradFD("dropout dx", x, dx, [&] {
    Vec t(count);
    ref::dropoutForward<double>(count, ratio, x.data(), mask.data(), t.data());
    return dot(r, t);
  });
}

//===----------------------------------------------------------------------===//
// LRN
//===----------------------------------------------------------------------===//

TEST(RefLrn, HandComputed) {
  // One pixel, three channels, size 3, alpha/size = 1, beta 0.5, k 1.
  LrnParams p{3, 3.0, 0.5, 1.0};
  Vec x{1, 2, 3}, y(3);
  ref::lrnForward<double>({1, 3, 1, 1}, p, x.data(), y.data());
  expectNear(y, {1 / std::sqrt(1 + 1 + 4.0), 2 / std::sqrt(1 + 1 + 4 + 9.0),
                 3 / std::sqrt(1 + 4 + 9.0)});
  EXPECT_THROW(ref::lrnForward<double>({1, 3, 1, 1}, LrnParams{4, 1, 1, 1},
                                       x.data(), y.data()),
               KernelError);
}

TEST(RefLrn, BackwardMatchesFiniteDifferences) {
  Rng rng(11);
  Dims4 d{2, 7, 2, 3};
  for (LrnParams p :
       {LrnParams{5, 0.5, 0.75, 2.0}, LrnParams{3, 1.0, 1.3, 0.7}}) {
    Vec x = rng.vec(d.count()), r = rng.vec(d.count()), y(d.count()),
        dx(d.count());
    ref::lrnForward<double>(d, p, x.data(), y.data());
    ref::lrnBackward<double>(d, p, x.data(), y.data(), r.data(), dx.data());
    expectGradFD("lrn dx", x, dx, [&] {
      Vec t(d.count());
      ref::lrnForward<double>(d, p, x.data(), t.data());
      return dot(r, t);
    });
  }
}

//===----------------------------------------------------------------------===//
// Batch normalisation
//===----------------------------------------------------------------------===//

TEST(RefBatchNorm, TrainingForwardAndRunningStats) {
  // [N=4, C=2]: channel 0 = 1, 2, 3, 4; channel 1 = 5 everywhere.
  Dims4 d{4, 2, 1, 1};
  Vec x{1, 5, 2, 5, 3, 5, 4, 5}, scale{2, 1}, shift{0.5, -1};
  Vec rm{0, 1}, rv{1, 2}, y(8), mean(2), inv(2);
  double eps = 1e-5;
  ref::batchNormForwardTraining<double>(d, eps, 0.9, x.data(), scale.data(),
                                        shift.data(), rm.data(), rv.data(),
                                        y.data(), mean.data(), inv.data());
  // mean 2.5, biased var 1.25, unbiased 5/3.
  EXPECT_DOUBLE_EQ(mean[0], 2.5);
  EXPECT_DOUBLE_EQ(inv[0], 1 / std::sqrt(1.25 + eps));
  EXPECT_DOUBLE_EQ(rm[0], 0.25);
  EXPECT_NEAR(rv[0], 0.9 + 0.1 * 5.0 / 3.0, 1e-15);
  EXPECT_DOUBLE_EQ(rm[1], 0.9 + 0.5);
  EXPECT_NEAR(rv[1], 1.8, 1e-15);
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(y[2 * i], 2 * (i + 1 - 2.5) / std::sqrt(1.25 + eps) + 0.5,
                1e-12);
    EXPECT_DOUBLE_EQ(y[2 * i + 1], -1); // zero variance: xhat = 0
  }

  // Evaluation uses the running statistics.
  ref::batchNormForwardInference<double>(d, eps, x.data(), scale.data(),
                                         shift.data(), rm.data(), rv.data(),
                                         y.data());
  EXPECT_NEAR(y[0], 2 * (1 - rm[0]) / std::sqrt(rv[0] + eps) + 0.5, 1e-12);
  EXPECT_NEAR(y[1], (5 - rm[1]) / std::sqrt(rv[1] + eps) - 1, 1e-12);
}

TEST(RefBatchNorm, BackwardMatchesFiniteDifferences) {
  Rng rng(12);
  for (Dims4 d : {Dims4{2, 3, 2, 2}, Dims4{5, 3, 1, 1}}) {
    Vec x = rng.vec(d.count()), scale = rng.vec(d.c, 0.5, 1.5),
        shift = rng.vec(d.c), r = rng.vec(d.count());
    double eps = 1e-3;
    auto forward = [&] {
      Vec rm(d.c, 0.0), rv(d.c, 1.0), y(d.count());
      ref::batchNormForwardTraining<double>(d, eps, 0.9, x.data(), scale.data(),
                                            shift.data(), rm.data(), rv.data(),
                                            y.data(), nullptr, nullptr);
      return dot(r, y);
    };
    Vec rm(d.c, 0.0), rv(d.c, 1.0), y(d.count()), mean(d.c), inv(d.c);
    ref::batchNormForwardTraining<double>(d, eps, 0.9, x.data(), scale.data(),
                                          shift.data(), rm.data(), rv.data(),
                                          y.data(), mean.data(), inv.data());
    Vec dx(d.count()), dscale(d.c), dshift(d.c);
    ref::batchNormBackward<double>(d, x.data(), scale.data(), mean.data(),
                                   inv.data(), r.data(), dx.data(),
                                   dscale.data(), dshift.data());
    expectGradFD("batch_norm dx", x, dx, forward);
    expectGradFD("batch_norm dscale", scale, dscale, forward);
    expectGradFD("batch_norm dshift", shift, dshift, forward);
  }
}

//===----------------------------------------------------------------------===//
// Losses, objective, elementwise, optimizer
//===----------------------------------------------------------------------===//

TEST(RefSoftmaxCE, HandComputedAndStable) {
  Vec logits{0, 0, 1, 2, 3, 0}; // [2, 3]: rows [0, 0, 1] and [2, 3, 0]
  IVec labels{2, 0};
  double want = ((std::log(2 + std::exp(1.0)) - 1) +
                 (std::log(std::exp(2.0) + std::exp(3.0) + 1) - 2)) /
                2;
  EXPECT_NEAR(ref::softmaxCrossEntropyForward<double>(2, 3, logits.data(),
                                                      labels.data()),
              want, 1e-14);
  // Large logits: log-sum-exp keeps it finite. Row 0 is certain and right
  // (loss 0), row 1 certain and wrong (loss 2000).
  Vec big{1000, 0, -1000, 1000};
  IVec l0{0, 0};
  EXPECT_NEAR(
      ref::softmaxCrossEntropyForward<double>(2, 2, big.data(), l0.data()),
      (0 + 2000) / 2.0, 1e-9);
  IVec bad{0, 3};
  EXPECT_THROW(
      ref::softmaxCrossEntropyForward<double>(2, 2, big.data(), bad.data()),
      KernelError);
  float fbig[2] = {1000.f, 0.f};
  int32_t fl[1] = {1};
  EXPECT_FLOAT_EQ(ref::softmaxCrossEntropyForward<float>(1, 2, fbig, fl),
                  1000.f);
}

TEST(RefSoftmaxCE, BackwardMatchesFiniteDifferences) {
  Rng rng(13);
  int64_t n = 3, k = 5;
  Vec logits = rng.vec(n * k, -2, 2), dl(n * k);
  IVec labels{4, 0, 2};
  double dloss = 0.7;
  ref::softmaxCrossEntropyBackward<double>(n, k, logits.data(), labels.data(),
                                           dloss, dl.data());
  expectGradFD("softmax_cross_entropy dlogits", logits, dl, [&] {
    return dloss * ref::softmaxCrossEntropyForward<double>(n, k, logits.data(),
                                                           labels.data());
  });
}

TEST(RefSoftmaxCE, CountCorrect) {
  Vec logits{0.1, 0.9, 0.0,  //  argmax 1
             0.5, 0.5, 0.1,  //  tie: first (0)
             0.2, 0.3, 0.25, //  argmax 1, label 2 is second
             1.0, 1.0, 1.0}; //  all tied: 0
  IVec labels{1, 1, 2, 0};
  EXPECT_EQ(ref::countCorrectTop1<double>(4, 3, logits.data(), labels.data()),
            2);
  EXPECT_EQ(
      ref::countCorrectTopK<double>(4, 3, logits.data(), labels.data(), 2), 4);
  EXPECT_EQ(
      ref::countCorrectTopK<double>(4, 3, logits.data(), labels.data(), 3), 4);
}

// A diverged model's NaN logits count as wrong, wherever the NaN is (a
// comparison with NaN is false, so a plain ranking counted every row).
TEST(RefSoftmaxCE, NaNLogitsAreNeverCorrect) {
  const double nan = std::nan("");
  Vec logits{nan, nan, nan,  // all NaN
             nan, 0.2, 0.1,  // NaN at the label
             0.3, nan, 0.1,  // NaN beside the label's maximum
             0.1, 0.2, 0.3}; // finite: argmax 2, correct
  IVec labels{0, 0, 0, 2};
  for (int64_t topk : {1, 2})
    EXPECT_EQ(
        ref::countCorrectTopK<double>(4, 3, logits.data(), labels.data(), topk),
        1 + (topk == 2))
        << "top-" << topk;
  std::vector<float> f(logits.begin(), logits.end());
  EXPECT_EQ(ref::countCorrectTop1<float>(4, 3, f.data(), labels.data()), 1);
}

TEST(RefEuclidean, ValueAndFiniteDifferences) {
  Vec a{1, 2, 3, 4}, b{0, 2, 5, 3}; // batch 2
  EXPECT_DOUBLE_EQ(ref::euclideanLossForward<double>(2, 4, a.data(), b.data()),
                   (1 + 0 + 4 + 1) / 4.0);
  Rng rng(14);
  Vec x = rng.vec(12), t = rng.vec(12), dx(12), dt(12);
  double dloss = 1.7;
  ref::euclideanLossBackward<double>(3, 12, x.data(), t.data(), dloss,
                                     dx.data(), dt.data());
  auto loss = [&] {
    return dloss * ref::euclideanLossForward<double>(3, 12, x.data(), t.data());
  };
  expectGradFD("euclidean da", x, dx, loss);
  expectGradFD("euclidean db", t, dt, loss);
  Vec only(12);
  ref::euclideanLossBackward<double>(3, 12, x.data(), t.data(), dloss,
                                     only.data(), nullptr);
  expectNear(only, dx);
}

TEST(RefObjective, WeightedSum) {
  Vec terms{2.0, 3.0, 5.0};
  double weights[3] = {1.0, 1e-4, 0.5};
  EXPECT_DOUBLE_EQ(ref::objectiveForward<double>(3, terms.data(), weights),
                   2.0 + 3e-4 + 2.5);
  Vec dterms(3);
  ref::objectiveBackward<double>(3, weights, 2.0, dterms.data());
  expectNear(dterms, {2.0, 2e-4, 1.0});
  expectGradFD("objective dterms", terms, dterms, [&] {
    return 2.0 * ref::objectiveForward<double>(3, terms.data(), weights);
  });
}

TEST(RefElementwise, AddAndAccumulate) {
  Vec a{1, 2, 3}, b{10, 20, 30}, y(3);
  ref::add<double>(3, a.data(), b.data(), y.data());
  expectNear(y, {11, 22, 33});
  ref::add<double>(3, a.data(), b.data(), a.data()); // in place
  expectNear(a, {11, 22, 33});
  ref::accumulate<double>(3, b.data(), y.data());
  expectNear(y, {21, 42, 63});
}

TEST(RefSgd, TwoStepsByHand) {
  // lr 0.1, momentum 0.9, decay 0.01; lr_mult 2, decay_mult 1.
  Vec w{1.0, -2.0}, v{0.0, 0.0};
  Vec g1{0.5, 0.0}, g2{-1.0, 1.0};
  ref::sgdUpdate<double>(2, w.data(), g1.data(), v.data(), 0.1, 0.9, 0.01, 2.0,
                         1.0);
  // Step 1: g = (0.5 + 0.01, 0 - 0.02); v = 0.2 * g; w -= v.
  EXPECT_NEAR(v[0], 0.102, 1e-15);
  EXPECT_NEAR(v[1], -0.004, 1e-15);
  EXPECT_NEAR(w[0], 0.898, 1e-15);
  EXPECT_NEAR(w[1], -1.996, 1e-15);
  ref::sgdUpdate<double>(2, w.data(), g2.data(), v.data(), 0.1, 0.9, 0.01, 2.0,
                         1.0);
  // Step 2: g = (-1 + 0.00898, 1 - 0.01996); v = 0.9 v + 0.2 g.
  double v0 = 0.9 * 0.102 + 0.2 * (-1 + 0.00898);
  double v1 = 0.9 * -0.004 + 0.2 * (1 - 0.01996);
  EXPECT_NEAR(v[0], v0, 1e-15);
  EXPECT_NEAR(v[1], v1, 1e-15);
  EXPECT_NEAR(w[0], 0.898 - v0, 1e-15);
  EXPECT_NEAR(w[1], -1.996 - v1, 1e-15);

  // Bias-style: decay_mult 0 ignores the weight.
  Vec wb{3.0}, vb{0.0}, gb{1.0};
  ref::sgdUpdate<double>(1, wb.data(), gb.data(), vb.data(), 0.1, 0.9, 0.5, 2.0,
                         0.0);
  EXPECT_NEAR(wb[0], 2.8, 1e-15);
}

TEST(RefFloat, MatchesDouble) {
  // The float instantiation agrees with the double one to float precision.
  Rng rng(15);
  ConvShape s = conv2dShape({1, 2, 5, 5}, 3, Window2D{3, 3, 1, 1, 1, 1});
  Vec x = rng.vec(s.in.count()), w = rng.vec(3 * 2 * 9);
  Vec y = conv(s, x, w, nullptr);
  std::vector<float> xf(x.begin(), x.end()), wf(w.begin(), w.end()),
      yf(y.size());
  ref::conv2dForward<float>(s, xf.data(), wf.data(), nullptr, yf.data());
  for (size_t i = 0; i < y.size(); ++i)
    EXPECT_NEAR(yf[i], y[i], 1e-5);
}

} // namespace
