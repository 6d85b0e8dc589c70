//===- Reference.cpp - the `reference` backend's kernels ------------------===//
//
// Plain loops, written to be read. Every reduction accumulates in double.
//
//===----------------------------------------------------------------------===//

#include "runtime/kernels/Reference.h"
#include "runtime/plan/Window.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

namespace netc::kernels {

namespace {

template <typename... Args>
[[noreturn]] void fail(const char *kernel, fmt::format_string<Args...> f,
                       Args &&...args) {
  throw KernelError(fmt::format("{}: {}", kernel,
                                fmt::format(f, std::forward<Args>(args)...)));
}

void checkDims(const char *kernel, const char *what, const Dims4 &d) {
  if (d.n < 0 || d.c <= 0 || d.h <= 0 || d.w <= 0)
    fail(kernel, "bad {} shape [{}, {}, {}, {}]", what, d.n, d.c, d.h, d.w);
}

void checkWindow(const char *kernel, const Window2D &w) {
  if (w.kh <= 0 || w.kw <= 0)
    fail(kernel, "kernel must be positive, got [{}, {}]", w.kh, w.kw);
  if (w.sh <= 0 || w.sw <= 0)
    fail(kernel, "stride must be positive, got [{}, {}]", w.sh, w.sw);
  if (w.ph < 0 || w.pw < 0)
    fail(kernel, "pad must not be negative, got [{}, {}]", w.ph, w.pw);
}

// Flat index of (n, c, h, w) in an NCHW tensor of shape d.
inline int64_t at(const Dims4 &d, int64_t n, int64_t c, int64_t h, int64_t w) {
  return ((n * d.c + c) * d.h + h) * d.w + w;
}

} // namespace

//===----------------------------------------------------------------------===//
// Shapes
//===----------------------------------------------------------------------===//

ConvShape conv2dShape(Dims4 in, int64_t outChannels, Window2D win,
                      int64_t groups) {
  const char *k = "conv2d";
  checkDims(k, "input", in);
  checkWindow(k, win);
  if (groups <= 0 || in.c % groups != 0 || outChannels <= 0 ||
      outChannels % groups != 0)
    fail(k, "groups {} must divide input channels {} and output channels {}",
         groups, in.c, outChannels);
  int64_t eh = in.h + 2 * win.ph - win.kh, ew = in.w + 2 * win.pw - win.kw;
  if (eh < 0 || ew < 0)
    fail(k, "kernel [{}, {}] larger than padded input [{}, {}]", win.kh, win.kw,
         in.h + 2 * win.ph, in.w + 2 * win.pw);
  ConvShape s;
  s.in = in;
  s.out = Dims4{in.n, outChannels,
                plan::windowCount(in.h, win.kh, win.sh, win.ph, false),
                plan::windowCount(in.w, win.kw, win.sw, win.pw, false)};
  s.win = win;
  s.groups = groups;
  return s;
}

ConvShape deconv2dShape(Dims4 in, int64_t outChannels, Window2D win,
                        int64_t groups, int64_t outputPaddingH,
                        int64_t outputPaddingW) {
  const char *k = "deconv2d";
  checkDims(k, "input", in);
  checkWindow(k, win);
  if (groups <= 0 || in.c % groups != 0 || outChannels <= 0 ||
      outChannels % groups != 0)
    fail(k, "groups {} must divide input channels {} and output channels {}",
         groups, in.c, outChannels);
  if (outputPaddingH < 0 || outputPaddingH >= win.sh || outputPaddingW < 0 ||
      outputPaddingW >= win.sw)
    fail(k, "output_padding [{}, {}] must be in [0, stride [{}, {}])",
         outputPaddingH, outputPaddingW, win.sh, win.sw);
  int64_t oh = (in.h - 1) * win.sh - 2 * win.ph + win.kh + outputPaddingH;
  int64_t ow = (in.w - 1) * win.sw - 2 * win.pw + win.kw + outputPaddingW;
  if (oh <= 0 || ow <= 0)
    fail(k, "output size [{}, {}] is not positive", oh, ow);
  ConvShape s;
  s.in = in;
  s.out = Dims4{in.n, outChannels, oh, ow};
  s.win = win;
  s.groups = groups;
  return s;
}

int64_t poolOutputSize(int64_t in, int64_t k, int64_t s, int64_t p,
                       bool ceilMode) {
  if (in <= 0 || k <= 0 || s <= 0 || p < 0)
    fail("pool", "bad size/kernel/stride/pad {}/{}/{}/{}", in, k, s, p);
  if (p >= k)
    fail("pool", "pad {} must be smaller than the kernel {}", p, k);
  int64_t extent = in + 2 * p - k;
  if (extent < 0)
    fail("pool", "kernel {} larger than padded input {}", k, in + 2 * p);
  return plan::windowCount(in, k, s, p, ceilMode);
}

void checkSwitchWindow(const char *kernel, const Window2D &w) {
  if (w.kh * w.kw > kMaxSwitchWindow)
    fail(kernel,
         "a {}x{} window has {} positions; a switch records one of at most {}",
         w.kh, w.kw, w.kh * w.kw, kMaxSwitchWindow);
}

PoolShape poolShape(Dims4 in, Window2D win, bool ceilMode) {
  checkDims("pool", "input", in);
  checkWindow("pool", win);
  PoolShape s;
  s.in = in;
  s.out =
      Dims4{in.n, in.c, poolOutputSize(in.h, win.kh, win.sh, win.ph, ceilMode),
            poolOutputSize(in.w, win.kw, win.sw, win.pw, ceilMode)};
  s.win = win;
  s.ceilMode = ceilMode;
  return s;
}

UnpoolShape unpoolShape(Dims4 in, Window2D win, int64_t sizeH, int64_t sizeW,
                        int64_t posH, int64_t posW, bool normalize) {
  const char *k = "unpool";
  checkDims(k, "input", in);
  checkWindow(k, win);
  if (sizeH <= 0 || sizeW <= 0)
    fail(k, "size [{}, {}] must be positive", sizeH, sizeW);
  if (sizeH > std::numeric_limits<int32_t>::max() / sizeW)
    fail(k, "output plane [{}, {}] too large", sizeH, sizeW);
  if (posH < 0 || posH >= win.kh || posW < 0 || posW >= win.kw)
    fail(k, "position [{}, {}] outside the [{}, {}] window", posH, posW, win.kh,
         win.kw);
  UnpoolShape s;
  s.in = in;
  s.out = Dims4{in.n, in.c, sizeH, sizeW};
  s.win = win;
  s.posH = posH;
  s.posW = posW;
  s.normalize = normalize;
  return s;
}

//===----------------------------------------------------------------------===//
// Dropout mask
//===----------------------------------------------------------------------===//

// The per-element rule is the GPU's own (runtime/cuda/HostDevice.h), so the
// backends cannot drop different units.
double dropoutUniform(uint64_t seed, uint64_t step, uint64_t index) {
  return cuda::dropoutUniformKeyed(cuda::dropoutKey(seed, step), index);
}

void dropoutMask(uint64_t seed, uint64_t step, int64_t count, double ratio,
                 uint8_t *mask, uint64_t first) {
  if (!(ratio >= 0.0 && ratio < 1.0))
    fail("dropout", "ratio {} must be in [0, 1)", ratio);
  uint64_t key = cuda::dropoutKey(seed, step);
  for (int64_t i = 0; i < count; ++i)
    mask[i] =
        cuda::dropoutKeep(key, first + static_cast<uint64_t>(i), ratio) ? 1 : 0;
}

namespace ref {

//===----------------------------------------------------------------------===//
// Convolution
//===----------------------------------------------------------------------===//

// The one loop nest all conv kernels share: calls f(xIndex, wIndex, yIndex)
// for every (input, weight, output) triple that meets in the cross-
// correlation y = conv(x, w) of geometry s (s.in = x, s.out = y).
template <typename F> static void forEachConvTap(const ConvShape &s, F f) {
  const Dims4 &X = s.in, &Y = s.out;
  const Window2D &k = s.win;
  int64_t cinG = X.c / s.groups, coutG = Y.c / s.groups;
  for (int64_t n = 0; n < Y.n; ++n)
    for (int64_t g = 0; g < s.groups; ++g)
      for (int64_t oc = g * coutG; oc < (g + 1) * coutG; ++oc)
        for (int64_t oh = 0; oh < Y.h; ++oh)
          for (int64_t ow = 0; ow < Y.w; ++ow) {
            int64_t yi = at(Y, n, oc, oh, ow);
            for (int64_t icl = 0; icl < cinG; ++icl) {
              int64_t ic = g * cinG + icl;
              for (int64_t i = 0; i < k.kh; ++i) {
                int64_t ih = oh * k.sh - k.ph + i;
                if (ih < 0 || ih >= X.h)
                  continue;
                for (int64_t j = 0; j < k.kw; ++j) {
                  int64_t iw = ow * k.sw - k.pw + j;
                  if (iw < 0 || iw >= X.w)
                    continue;
                  int64_t wi = ((oc * cinG + icl) * k.kh + i) * k.kw + j;
                  f(at(X, n, ic, ih, iw), wi, yi);
                }
              }
            }
          }
}

static int64_t convWeightCount(const ConvShape &s) {
  return s.out.c * (s.in.c / s.groups) * s.win.kh * s.win.kw;
}

// The conv2d geometry whose backward-data is the deconv2d `s`.
static ConvShape adjointConv(const ConvShape &s) {
  ConvShape c = s;
  c.in = s.out;
  c.out = s.in;
  return c;
}

template <typename T>
void conv2dForward(const ConvShape &s, const T *x, const T *w, const T *b,
                   T *y) {
  std::vector<double> acc(s.out.count(), 0.0);
  forEachConvTap(s, [&](int64_t xi, int64_t wi, int64_t yi) {
    acc[yi] += double(x[xi]) * double(w[wi]);
  });
  const Dims4 &Y = s.out;
  for (int64_t n = 0; n < Y.n; ++n)
    for (int64_t c = 0; c < Y.c; ++c)
      for (int64_t p = 0; p < Y.plane(); ++p) {
        int64_t i = (n * Y.c + c) * Y.plane() + p;
        y[i] = T(acc[i] + (b ? double(b[c]) : 0.0));
      }
}

template <typename T>
void conv2dBackwardData(const ConvShape &s, const T *dy, const T *w, T *dx) {
  std::vector<double> acc(s.in.count(), 0.0);
  forEachConvTap(s, [&](int64_t xi, int64_t wi, int64_t yi) {
    acc[xi] += double(dy[yi]) * double(w[wi]);
  });
  for (int64_t i = 0; i < s.in.count(); ++i)
    dx[i] = T(acc[i]);
}

template <typename T>
void conv2dBackwardFilter(const ConvShape &s, const T *x, const T *dy, T *dw) {
  std::vector<double> acc(convWeightCount(s), 0.0);
  forEachConvTap(s, [&](int64_t xi, int64_t wi, int64_t yi) {
    acc[wi] += double(x[xi]) * double(dy[yi]);
  });
  for (size_t i = 0; i < acc.size(); ++i)
    dw[i] = T(acc[i]);
}

template <typename T> void biasBackward(const Dims4 &d, const T *dy, T *db) {
  for (int64_t c = 0; c < d.c; ++c) {
    double sum = 0.0;
    for (int64_t n = 0; n < d.n; ++n)
      for (int64_t p = 0; p < d.plane(); ++p)
        sum += double(dy[(n * d.c + c) * d.plane() + p]);
    db[c] = T(sum);
  }
}

template <typename T>
void deconv2dForward(const ConvShape &s, const T *x, const T *w, const T *b,
                     T *y) {
  ConvShape c = adjointConv(s);
  std::vector<double> acc(s.out.count(), 0.0);
  // y = conv2d backward-data of x: adjoint conv maps y-side (c.in) to x-side.
  forEachConvTap(c, [&](int64_t yi, int64_t wi, int64_t xi) {
    acc[yi] += double(x[xi]) * double(w[wi]);
  });
  const Dims4 &Y = s.out;
  for (int64_t n = 0; n < Y.n; ++n)
    for (int64_t ch = 0; ch < Y.c; ++ch)
      for (int64_t p = 0; p < Y.plane(); ++p) {
        int64_t i = (n * Y.c + ch) * Y.plane() + p;
        y[i] = T(acc[i] + (b ? double(b[ch]) : 0.0));
      }
}

template <typename T>
void deconv2dBackwardData(const ConvShape &s, const T *dy, const T *w, T *dx) {
  conv2dForward<T>(adjointConv(s), dy, w, nullptr, dx);
}

template <typename T>
void deconv2dBackwardFilter(const ConvShape &s, const T *x, const T *dy,
                            T *dw) {
  // The adjoint conv's "input" is the deconv output (dy side), its "output"
  // the deconv input (x side).
  conv2dBackwardFilter<T>(adjointConv(s), dy, x, dw);
}

//===----------------------------------------------------------------------===//
// ReLU
//===----------------------------------------------------------------------===//

template <typename T> void reluForward(int64_t count, const T *x, T *y) {
  for (int64_t i = 0; i < count; ++i)
    y[i] = x[i] > T(0) ? x[i] : T(0);
}

template <typename T>
void reluBackward(int64_t count, const T *y, const T *dy, T *dx) {
  // dy is read whatever the sign, so that the loop vectorises (a select,
  // not a branch on random signs).
  for (int64_t i = 0; i < count; ++i) {
    T g = dy[i];
    dx[i] = y[i] > T(0) ? g : T(0);
  }
}

//===----------------------------------------------------------------------===//
// Pooling
//===----------------------------------------------------------------------===//

template <typename T>
void maxPoolForward(const PoolShape &s, const T *x, T *y, Switch *switches) {
  const Dims4 &X = s.in, &Y = s.out;
  const Window2D &k = s.win;
  if (switches)
    checkSwitchWindow("max_pool", k);
  for (int64_t n = 0; n < Y.n; ++n)
    for (int64_t c = 0; c < Y.c; ++c) {
      const T *xp = x + (n * X.c + c) * X.plane();
      for (int64_t oh = 0; oh < Y.h; ++oh)
        for (int64_t ow = 0; ow < Y.w; ++ow) {
          int64_t hs = std::max<int64_t>(oh * k.sh - k.ph, 0);
          int64_t ws = std::max<int64_t>(ow * k.sw - k.pw, 0);
          int64_t he = std::min(oh * k.sh - k.ph + k.kh, X.h);
          int64_t we = std::min(ow * k.sw - k.pw + k.kw, X.w);
          // poolShape guarantees every window holds an input element.
          if (hs >= he || ws >= we)
            fail("max_pool", "window ({}, {}) holds no input element", oh, ow);
          int64_t best = hs * X.w + ws;
          for (int64_t h = hs; h < he; ++h)
            for (int64_t w = ws; w < we; ++w)
              if (xp[h * X.w + w] > xp[best])
                best = h * X.w + w;
          int64_t yi = at(Y, n, c, oh, ow);
          y[yi] = xp[best];
          if (switches) // best's position in the window
            switches[yi] =
                static_cast<Switch>((best / X.w - (oh * k.sh - k.ph)) * k.kw +
                                    (best % X.w - (ow * k.sw - k.pw)));
        }
    }
}

template <typename T>
void maxPoolBackward(const PoolShape &s, const T *dy, const Switch *switches,
                     T *dx) {
  const Dims4 &X = s.in, &Y = s.out;
  const Window2D &k = s.win;
  checkSwitchWindow("max_pool backward", k);
  std::vector<double> acc(X.count(), 0.0);
  for (int64_t n = 0; n < Y.n; ++n)
    for (int64_t c = 0; c < Y.c; ++c)
      for (int64_t p = 0; p < Y.plane(); ++p) {
        int64_t yi = (n * Y.c + c) * Y.plane() + p;
        int64_t sw = switches[yi], h, w;
        switchPosition(k, p / Y.w, p % Y.w, sw, h, w);
        if (sw >= k.kh * k.kw || h < 0 || h >= X.h || w < 0 || w >= X.w)
          fail("max_pool backward",
               "switch {} of output ({}, {}) outside its window's part of the "
               "{}x{} plane",
               sw, p / Y.w, p % Y.w, X.h, X.w);
        acc[(n * X.c + c) * X.plane() + h * X.w + w] += double(dy[yi]);
      }
  for (int64_t i = 0; i < X.count(); ++i)
    dx[i] = T(acc[i]);
}

// Calls f(inputIndexWithinPlane, poolSize) for each input element of window
// (oh, ow), Caffe's average-pool window rule.
template <typename F>
static void forEachAvgTap(const PoolShape &s, int64_t oh, int64_t ow, F f) {
  const Dims4 &X = s.in;
  const Window2D &k = s.win;
  int64_t hs = oh * k.sh - k.ph, ws = ow * k.sw - k.pw;
  int64_t he = std::min(hs + k.kh, X.h + k.ph);
  int64_t we = std::min(ws + k.kw, X.w + k.pw);
  int64_t poolSize = (he - hs) * (we - ws);
  hs = std::max<int64_t>(hs, 0);
  ws = std::max<int64_t>(ws, 0);
  he = std::min(he, X.h);
  we = std::min(we, X.w);
  for (int64_t h = hs; h < he; ++h)
    for (int64_t w = ws; w < we; ++w)
      f(h * X.w + w, poolSize);
}

template <typename T>
void avgPoolForward(const PoolShape &s, const T *x, T *y) {
  const Dims4 &X = s.in, &Y = s.out;
  for (int64_t n = 0; n < Y.n; ++n)
    for (int64_t c = 0; c < Y.c; ++c) {
      const T *xp = x + (n * X.c + c) * X.plane();
      for (int64_t oh = 0; oh < Y.h; ++oh)
        for (int64_t ow = 0; ow < Y.w; ++ow) {
          double sum = 0.0;
          int64_t size = 1;
          forEachAvgTap(s, oh, ow, [&](int64_t xi, int64_t poolSize) {
            sum += double(xp[xi]);
            size = poolSize;
          });
          y[at(Y, n, c, oh, ow)] = T(sum / double(size));
        }
    }
}

template <typename T>
void avgPoolBackward(const PoolShape &s, const T *dy, T *dx) {
  const Dims4 &X = s.in, &Y = s.out;
  std::vector<double> acc(X.count(), 0.0);
  for (int64_t n = 0; n < Y.n; ++n)
    for (int64_t c = 0; c < Y.c; ++c) {
      double *ap = acc.data() + (n * X.c + c) * X.plane();
      for (int64_t oh = 0; oh < Y.h; ++oh)
        for (int64_t ow = 0; ow < Y.w; ++ow) {
          double g = double(dy[at(Y, n, c, oh, ow)]);
          forEachAvgTap(s, oh, ow, [&](int64_t xi, int64_t poolSize) {
            ap[xi] += g / double(poolSize);
          });
        }
    }
  for (int64_t i = 0; i < X.count(); ++i)
    dx[i] = T(acc[i]);
}

//===----------------------------------------------------------------------===//
// Unpooling
//===----------------------------------------------------------------------===//

// Target of input element (n, c, i, j) inside its output plane, or -1 when a
// fixed position falls outside the output.
static int64_t unpoolTarget(const UnpoolShape &s, const Switch *switches,
                            int64_t n, int64_t c, int64_t i, int64_t j) {
  const Dims4 &Y = s.out;
  int64_t dh = s.posH, dw = s.posW;
  if (switches) {
    int64_t sw = switches[at(s.in, n, c, i, j)];
    dh = sw / s.win.kw;
    dw = sw % s.win.kw;
    if (dh >= s.win.kh)
      fail("unpool", "switch {} outside the {}x{} window", sw, s.win.kh,
           s.win.kw);
  }
  int64_t h = i * s.win.sh - s.win.ph + dh;
  int64_t w = j * s.win.sw - s.win.pw + dw;
  if (h < 0 || h >= Y.h || w < 0 || w >= Y.w) {
    if (switches)
      fail("unpool",
           "switch {} of ({}, {}) points outside the {}x{} output "
           "plane",
           dh * s.win.kw + dw, i, j, Y.h, Y.w);
    return -1;
  }
  return h * Y.w + w;
}

// Number of input elements of plane (n, c) written to each output position.
static std::vector<int64_t> unpoolCounts(const UnpoolShape &s,
                                         const Switch *switches, int64_t n,
                                         int64_t c) {
  std::vector<int64_t> count(s.out.plane(), 0);
  for (int64_t i = 0; i < s.in.h; ++i)
    for (int64_t j = 0; j < s.in.w; ++j) {
      int64_t t = unpoolTarget(s, switches, n, c, i, j);
      if (t >= 0)
        ++count[t];
    }
  return count;
}

template <typename T>
void unpoolForward(const UnpoolShape &s, const T *x, const Switch *switches,
                   T *y) {
  const Dims4 &X = s.in, &Y = s.out;
  for (int64_t n = 0; n < Y.n; ++n)
    for (int64_t c = 0; c < Y.c; ++c) {
      std::vector<double> acc(Y.plane(), 0.0);
      for (int64_t i = 0; i < X.h; ++i)
        for (int64_t j = 0; j < X.w; ++j) {
          int64_t t = unpoolTarget(s, switches, n, c, i, j);
          if (t >= 0)
            acc[t] += double(x[at(X, n, c, i, j)]);
        }
      if (s.normalize) {
        std::vector<int64_t> count = unpoolCounts(s, switches, n, c);
        for (int64_t p = 0; p < Y.plane(); ++p)
          if (count[p] > 0)
            acc[p] /= double(count[p]);
      }
      T *yp = y + (n * Y.c + c) * Y.plane();
      for (int64_t p = 0; p < Y.plane(); ++p)
        yp[p] = T(acc[p]);
    }
}

template <typename T>
void unpoolBackward(const UnpoolShape &s, const T *dy, const Switch *switches,
                    T *dx) {
  const Dims4 &X = s.in, &Y = s.out;
  for (int64_t n = 0; n < Y.n; ++n)
    for (int64_t c = 0; c < Y.c; ++c) {
      std::vector<int64_t> count;
      if (s.normalize)
        count = unpoolCounts(s, switches, n, c);
      const T *dyp = dy + (n * Y.c + c) * Y.plane();
      for (int64_t i = 0; i < X.h; ++i)
        for (int64_t j = 0; j < X.w; ++j) {
          int64_t t = unpoolTarget(s, switches, n, c, i, j);
          double g = 0.0;
          if (t >= 0) {
            g = double(dyp[t]);
            if (s.normalize)
              g /= double(count[t]); // >= 1: this element wrote t
          }
          dx[at(X, n, c, i, j)] = T(g);
        }
    }
}

//===----------------------------------------------------------------------===//
// Fully connected
//===----------------------------------------------------------------------===//

template <typename T>
void fcForward(int64_t n, int64_t in, int64_t out, const T *x, const T *w,
               const T *b, T *y) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t o = 0; o < out; ++o) {
      double sum = b ? double(b[o]) : 0.0;
      for (int64_t k = 0; k < in; ++k)
        sum += double(x[i * in + k]) * double(w[o * in + k]);
      y[i * out + o] = T(sum);
    }
}

template <typename T>
void fcBackwardData(int64_t n, int64_t in, int64_t out, const T *dy, const T *w,
                    T *dx) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < in; ++k) {
      double sum = 0.0;
      for (int64_t o = 0; o < out; ++o)
        sum += double(dy[i * out + o]) * double(w[o * in + k]);
      dx[i * in + k] = T(sum);
    }
}

template <typename T>
void fcBackwardFilter(int64_t n, int64_t in, int64_t out, const T *x,
                      const T *dy, T *dw) {
  for (int64_t o = 0; o < out; ++o)
    for (int64_t k = 0; k < in; ++k) {
      double sum = 0.0;
      for (int64_t i = 0; i < n; ++i)
        sum += double(dy[i * out + o]) * double(x[i * in + k]);
      dw[o * in + k] = T(sum);
    }
}

//===----------------------------------------------------------------------===//
// Dropout
//===----------------------------------------------------------------------===//

template <typename T> static T dropoutScale(double ratio) {
  if (!(ratio >= 0.0 && ratio < 1.0))
    fail("dropout", "ratio {} must be in [0, 1)", ratio);
  return T(1.0 / (1.0 - ratio));
}

template <typename T>
void dropoutForward(int64_t count, double ratio, const T *x,
                    const uint8_t *mask, T *y) {
  T scale = dropoutScale<T>(ratio);
  for (int64_t i = 0; i < count; ++i)
    y[i] = mask[i] ? x[i] * scale : T(0);
}

template <typename T>
void dropoutBackward(int64_t count, double ratio, const T *dy,
                     const uint8_t *mask, T *dx) {
  T scale = dropoutScale<T>(ratio);
  for (int64_t i = 0; i < count; ++i)
    dx[i] = mask[i] ? dy[i] * scale : T(0);
}

//===----------------------------------------------------------------------===//
// LRN
//===----------------------------------------------------------------------===//

static void checkLrn(const LrnParams &p) {
  if (p.size <= 0 || p.size % 2 == 0)
    fail("lrn", "size {} must be odd and positive", p.size);
}

// scale[n, c, h, w] = k + alpha/size * sum over the channel window of x^2.
template <typename T>
static std::vector<double> lrnScale(const Dims4 &d, const LrnParams &p,
                                    const T *x) {
  checkLrn(p);
  int64_t half = p.size / 2;
  std::vector<double> scale(d.count());
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t c = 0; c < d.c; ++c)
      for (int64_t q = 0; q < d.plane(); ++q) {
        double sum = 0.0;
        for (int64_t cc = std::max<int64_t>(c - half, 0);
             cc <= std::min(c + half, d.c - 1); ++cc) {
          double v = double(x[(n * d.c + cc) * d.plane() + q]);
          sum += v * v;
        }
        scale[(n * d.c + c) * d.plane() + q] =
            p.k + p.alpha / double(p.size) * sum;
      }
  return scale;
}

template <typename T>
void lrnForward(const Dims4 &d, const LrnParams &p, const T *x, T *y) {
  std::vector<double> scale = lrnScale(d, p, x);
  for (int64_t i = 0; i < d.count(); ++i)
    y[i] = T(double(x[i]) * std::pow(scale[i], -p.beta));
}

template <typename T>
void lrnBackward(const Dims4 &d, const LrnParams &p, const T *x, const T *y,
                 const T *dy, T *dx) {
  std::vector<double> scale = lrnScale(d, p, x);
  int64_t half = p.size / 2;
  double coef = 2.0 * p.alpha * p.beta / double(p.size);
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t c = 0; c < d.c; ++c)
      for (int64_t q = 0; q < d.plane(); ++q) {
        int64_t i = (n * d.c + c) * d.plane() + q;
        double sum = 0.0;
        for (int64_t cc = std::max<int64_t>(c - half, 0);
             cc <= std::min(c + half, d.c - 1); ++cc) {
          int64_t j = (n * d.c + cc) * d.plane() + q;
          sum += double(dy[j]) * double(y[j]) / scale[j];
        }
        dx[i] = T(double(dy[i]) * std::pow(scale[i], -p.beta) -
                  coef * double(x[i]) * sum);
      }
}

//===----------------------------------------------------------------------===//
// Batch normalisation
//===----------------------------------------------------------------------===//

template <typename T>
void batchNormForwardTraining(const Dims4 &d, double eps, double momentum,
                              const T *x, const T *scale, const T *shift,
                              T *runningMean, T *runningVar, T *y, T *saveMean,
                              T *saveInvStd) {
  int64_t m = d.n * d.plane();
  if (m <= 0)
    fail("batch_norm", "empty batch");
  for (int64_t c = 0; c < d.c; ++c) {
    double sum = 0.0;
    for (int64_t n = 0; n < d.n; ++n)
      for (int64_t q = 0; q < d.plane(); ++q)
        sum += double(x[(n * d.c + c) * d.plane() + q]);
    double mean = sum / double(m);
    double sq = 0.0;
    for (int64_t n = 0; n < d.n; ++n)
      for (int64_t q = 0; q < d.plane(); ++q) {
        double v = double(x[(n * d.c + c) * d.plane() + q]) - mean;
        sq += v * v;
      }
    double var = sq / double(m);
    double invStd = 1.0 / std::sqrt(var + eps);
    for (int64_t n = 0; n < d.n; ++n)
      for (int64_t q = 0; q < d.plane(); ++q) {
        int64_t i = (n * d.c + c) * d.plane() + q;
        y[i] = T(double(scale[c]) * (double(x[i]) - mean) * invStd +
                 double(shift[c]));
      }
    double unbiased = m > 1 ? var * double(m) / double(m - 1) : var;
    runningMean[c] =
        T(momentum * double(runningMean[c]) + (1.0 - momentum) * mean);
    runningVar[c] =
        T(momentum * double(runningVar[c]) + (1.0 - momentum) * unbiased);
    if (saveMean)
      saveMean[c] = T(mean);
    if (saveInvStd)
      saveInvStd[c] = T(invStd);
  }
}

template <typename T>
void batchNormForwardInference(const Dims4 &d, double eps, const T *x,
                               const T *scale, const T *shift,
                               const T *runningMean, const T *runningVar,
                               T *y) {
  for (int64_t c = 0; c < d.c; ++c) {
    double invStd = 1.0 / std::sqrt(double(runningVar[c]) + eps);
    for (int64_t n = 0; n < d.n; ++n)
      for (int64_t q = 0; q < d.plane(); ++q) {
        int64_t i = (n * d.c + c) * d.plane() + q;
        y[i] = T(double(scale[c]) * (double(x[i]) - double(runningMean[c])) *
                     invStd +
                 double(shift[c]));
      }
  }
}

template <typename T>
void batchNormBackward(const Dims4 &d, const T *x, const T *scale,
                       const T *saveMean, const T *saveInvStd, const T *dy,
                       T *dx, T *dscale, T *dshift) {
  int64_t m = d.n * d.plane();
  for (int64_t c = 0; c < d.c; ++c) {
    double mean = double(saveMean[c]), invStd = double(saveInvStd[c]);
    double sumDy = 0.0, sumDyXhat = 0.0;
    for (int64_t n = 0; n < d.n; ++n)
      for (int64_t q = 0; q < d.plane(); ++q) {
        int64_t i = (n * d.c + c) * d.plane() + q;
        double xhat = (double(x[i]) - mean) * invStd;
        sumDy += double(dy[i]);
        sumDyXhat += double(dy[i]) * xhat;
      }
    if (dshift)
      dshift[c] = T(sumDy);
    if (dscale)
      dscale[c] = T(sumDyXhat);
    if (dx) {
      double k = double(scale[c]) * invStd / double(m);
      for (int64_t n = 0; n < d.n; ++n)
        for (int64_t q = 0; q < d.plane(); ++q) {
          int64_t i = (n * d.c + c) * d.plane() + q;
          double xhat = (double(x[i]) - mean) * invStd;
          dx[i] = T(k * (double(m) * double(dy[i]) - sumDy - xhat * sumDyXhat));
        }
    }
  }
}

//===----------------------------------------------------------------------===//
// Losses
//===----------------------------------------------------------------------===//

static void checkLabel(const char *kernel, int64_t row, int32_t label,
                       int64_t k) {
  if (label < 0 || label >= k)
    fail(kernel, "label {} of row {} outside [0, {})", label, row, k);
}

// log sum_j exp(row[j]), stable.
template <typename T> static double logSumExp(int64_t k, const T *row) {
  double mx = double(row[0]);
  for (int64_t j = 1; j < k; ++j)
    mx = std::max(mx, double(row[j]));
  double sum = 0.0;
  for (int64_t j = 0; j < k; ++j)
    sum += std::exp(double(row[j]) - mx);
  return mx + std::log(sum);
}

template <typename T>
T softmaxCrossEntropyForward(int64_t n, int64_t k, const T *logits,
                             const int32_t *labels) {
  if (n <= 0 || k <= 0)
    fail("softmax_cross_entropy", "bad shape [{}, {}]", n, k);
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    checkLabel("softmax_cross_entropy", i, labels[i], k);
    const T *row = logits + i * k;
    total += logSumExp(k, row) - double(row[labels[i]]);
  }
  return T(total / double(n));
}

template <typename T>
void softmaxCrossEntropyBackward(int64_t n, int64_t k, const T *logits,
                                 const int32_t *labels, T dloss, T *dlogits) {
  if (n <= 0 || k <= 0)
    fail("softmax_cross_entropy backward", "bad shape [{}, {}]", n, k);
  double g = double(dloss) / double(n);
  for (int64_t i = 0; i < n; ++i) {
    checkLabel("softmax_cross_entropy backward", i, labels[i], k);
    const T *row = logits + i * k;
    double lse = logSumExp(k, row);
    for (int64_t j = 0; j < k; ++j) {
      double p = std::exp(double(row[j]) - lse);
      dlogits[i * k + j] = T((p - (j == labels[i] ? 1.0 : 0.0)) * g);
    }
  }
}

template <typename T>
int64_t countCorrectTopK(int64_t n, int64_t k, const T *logits,
                         const int32_t *labels, int64_t topk) {
  int64_t correct = 0;
  for (int64_t i = 0; i < n; ++i) {
    checkLabel("top-k accuracy", i, labels[i], k);
    const T *row = logits + i * k;
    int32_t l = labels[i];
    // Rank of the label: classes ordered before it (larger logit, or equal
    // logit and smaller index). A NaN logit is never correct: a NaN at the
    // label ranks it last, a NaN elsewhere ranks above it (comparisons with
    // NaN are false, which would otherwise count a diverged model's rows as
    // right).
    if (std::isnan(double(row[l])))
      continue;
    int64_t rank = 0;
    for (int64_t j = 0; j < k; ++j)
      if (row[j] > row[l] || (row[j] == row[l] && j < l) ||
          std::isnan(double(row[j])))
        ++rank;
    if (rank < topk)
      ++correct;
  }
  return correct;
}

template <typename T>
T euclideanLossForward(int64_t batch, int64_t count, const T *a, const T *b) {
  if (batch <= 0)
    fail("euclidean_loss", "batch {} must be positive", batch);
  double sum = 0.0;
  for (int64_t i = 0; i < count; ++i) {
    double d = double(a[i]) - double(b[i]);
    sum += d * d;
  }
  return T(sum / (2.0 * double(batch)));
}

template <typename T>
void euclideanLossBackward(int64_t batch, int64_t count, const T *a, const T *b,
                           T dloss, T *da, T *db) {
  if (batch <= 0)
    fail("euclidean_loss backward", "batch {} must be positive", batch);
  double g = double(dloss) / double(batch);
  for (int64_t i = 0; i < count; ++i) {
    double v = (double(a[i]) - double(b[i])) * g;
    if (da)
      da[i] = T(v);
    if (db)
      db[i] = T(-v);
  }
}

template <typename T>
T objectiveForward(int64_t n, const T *terms, const double *weights) {
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i)
    total += weights[i] * double(terms[i]);
  return T(total);
}

template <typename T>
void objectiveBackward(int64_t n, const double *weights, T dtotal, T *dterms) {
  for (int64_t i = 0; i < n; ++i)
    dterms[i] = T(weights[i] * double(dtotal));
}

//===----------------------------------------------------------------------===//
// Elementwise and optimizer
//===----------------------------------------------------------------------===//

template <typename T> void add(int64_t count, const T *a, const T *b, T *y) {
  for (int64_t i = 0; i < count; ++i)
    y[i] = a[i] + b[i];
}

template <typename T> void accumulate(int64_t count, const T *x, T *y) {
  for (int64_t i = 0; i < count; ++i)
    y[i] += x[i];
}

template <typename T>
void sgdUpdate(int64_t count, T *w, const T *grad, T *velocity, double lr,
               double momentum, double decay, double lrMult, double decayMult) {
  T rate = T(lr * lrMult), dec = T(decay * decayMult), mom = T(momentum);
  for (int64_t i = 0; i < count; ++i) {
    T g = grad[i] + dec * w[i];
    velocity[i] = mom * velocity[i] + rate * g;
    w[i] -= velocity[i];
  }
}

//===----------------------------------------------------------------------===//
// Instantiations
//===----------------------------------------------------------------------===//

#define NETC_REF_INSTANTIATE(T)                                                \
  template void conv2dForward<T>(const ConvShape &, const T *, const T *,      \
                                 const T *, T *);                              \
  template void conv2dBackwardData<T>(const ConvShape &, const T *, const T *, \
                                      T *);                                    \
  template void conv2dBackwardFilter<T>(const ConvShape &, const T *,          \
                                        const T *, T *);                       \
  template void biasBackward<T>(const Dims4 &, const T *, T *);                \
  template void deconv2dForward<T>(const ConvShape &, const T *, const T *,    \
                                   const T *, T *);                            \
  template void deconv2dBackwardData<T>(const ConvShape &, const T *,          \
                                        const T *, T *);                       \
  template void deconv2dBackwardFilter<T>(const ConvShape &, const T *,        \
                                          const T *, T *);                     \
  template void reluForward<T>(int64_t, const T *, T *);                       \
  template void reluBackward<T>(int64_t, const T *, const T *, T *);           \
  template void maxPoolForward<T>(const PoolShape &, const T *, T *,           \
                                  Switch *);                                   \
  template void maxPoolBackward<T>(const PoolShape &, const T *,               \
                                   const Switch *, T *);                       \
  template void avgPoolForward<T>(const PoolShape &, const T *, T *);          \
  template void avgPoolBackward<T>(const PoolShape &, const T *, T *);         \
  template void unpoolForward<T>(const UnpoolShape &, const T *,               \
                                 const Switch *, T *);                         \
  template void unpoolBackward<T>(const UnpoolShape &, const T *,              \
                                  const Switch *, T *);                        \
  template void fcForward<T>(int64_t, int64_t, int64_t, const T *, const T *,  \
                             const T *, T *);                                  \
  template void fcBackwardData<T>(int64_t, int64_t, int64_t, const T *,        \
                                  const T *, T *);                             \
  template void fcBackwardFilter<T>(int64_t, int64_t, int64_t, const T *,      \
                                    const T *, T *);                           \
  template void dropoutForward<T>(int64_t, double, const T *, const uint8_t *, \
                                  T *);                                        \
  template void dropoutBackward<T>(int64_t, double, const T *,                 \
                                   const uint8_t *, T *);                      \
  template void lrnForward<T>(const Dims4 &, const LrnParams &, const T *,     \
                              T *);                                            \
  template void lrnBackward<T>(const Dims4 &, const LrnParams &, const T *,    \
                               const T *, const T *, T *);                     \
  template void batchNormForwardTraining<T>(const Dims4 &, double, double,     \
                                            const T *, const T *, const T *,   \
                                            T *, T *, T *, T *, T *);          \
  template void batchNormForwardInference<T>(const Dims4 &, double, const T *, \
                                             const T *, const T *, const T *,  \
                                             const T *, T *);                  \
  template void batchNormBackward<T>(const Dims4 &, const T *, const T *,      \
                                     const T *, const T *, const T *, T *,     \
                                     T *, T *);                                \
  template T softmaxCrossEntropyForward<T>(int64_t, int64_t, const T *,        \
                                           const int32_t *);                   \
  template void softmaxCrossEntropyBackward<T>(int64_t, int64_t, const T *,    \
                                               const int32_t *, T, T *);       \
  template int64_t countCorrectTopK<T>(int64_t, int64_t, const T *,            \
                                       const int32_t *, int64_t);              \
  template T euclideanLossForward<T>(int64_t, int64_t, const T *, const T *);  \
  template void euclideanLossBackward<T>(int64_t, int64_t, const T *,          \
                                         const T *, T, T *, T *);              \
  template T objectiveForward<T>(int64_t, const T *, const double *);          \
  template void objectiveBackward<T>(int64_t, const double *, T, T *);         \
  template void add<T>(int64_t, const T *, const T *, T *);                    \
  template void accumulate<T>(int64_t, const T *, T *);                        \
  template void sgdUpdate<T>(int64_t, T *, const T *, T *, double, double,     \
                             double, double, double);

NETC_REF_INSTANTIATE(float)
NETC_REF_INSTANTIATE(double)
#undef NETC_REF_INSTANTIATE

} // namespace ref
} // namespace netc::kernels
