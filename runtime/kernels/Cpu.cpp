//===- Cpu.cpp - the `cpu` backend's kernels (im2col + oneDNN sgemm) ------===//

#include "runtime/kernels/Cpu.h"

#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace netc::kernels::cpu {

int numThreads() {
#ifdef _OPENMP
  return std::max(1, omp_get_max_threads());
#else
  return 1;
#endif
}

namespace {

/// Row-major C[M, N] = alpha * op(A) * op(B) + beta * C.
void sgemm(char ta, char tb, int64_t m, int64_t n, int64_t k, float alpha,
           const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
           float *c, int64_t ldc) {
  if (m <= 0 || n <= 0)
    return;
  if (k <= 0) { // op(A) * op(B) is zero
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j)
        c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    return;
  }
  dnnl_status_t st =
      dnnl_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  if (st != dnnl_success)
    throw KernelError("cpu: dnnl_sgemm failed with status " +
                      std::to_string(int(st)));
}

/// A per-thread scratch buffer of at least `count` floats.
float *scratch(size_t count) {
  static thread_local std::vector<float> buf;
  if (buf.size() < count)
    buf.resize(count);
  return buf.data();
}

/// Per-group GEMM geometry of a conv2d (s.in = x, s.out = y).
struct ConvGemm {
  int64_t cinG, coutG;
  int64_t k;     ///< cinG * kh * kw
  int64_t p;     ///< output plane
  int64_t plane; ///< input plane
  bool direct;   ///< 1x1, stride 1, no padding: the input is its own im2col
};

ConvGemm convGemm(const ConvShape &s) {
  ConvGemm g;
  g.cinG = s.in.c / s.groups;
  g.coutG = s.out.c / s.groups;
  g.k = g.cinG * s.win.kh * s.win.kw;
  g.p = s.out.plane();
  g.plane = s.in.plane();
  const Window2D &w = s.win;
  g.direct = w.kh == 1 && w.kw == 1 && w.sh == 1 && w.sw == 1 && w.ph == 0 &&
             w.pw == 0;
  return g;
}

/// For kernel column j: the output columns [lo, hi) whose input column
/// ow*s - p + j lies in [0, in).
void validRange(int64_t in, int64_t out, int64_t s, int64_t p, int64_t j,
                int64_t &lo, int64_t &hi) {
  int64_t a = p - j;
  lo = a > 0 ? (a + s - 1) / s : 0;
  int64_t t = in - 1 + p - j;
  hi = t < 0 ? 0 : std::min(out, t / s + 1);
  lo = std::min(lo, out);
  if (hi < lo)
    hi = lo;
}

/// col[(c*kh + i)*kw + j][oh*OW + ow] = x[c][oh*sh - ph + i][ow*sw - pw + j]
/// (0 outside), for `channels` input planes.
void im2col(const ConvShape &s, int64_t channels, const float *x, float *col) {
  const Window2D &k = s.win;
  int64_t H = s.in.h, W = s.in.w, OH = s.out.h, OW = s.out.w;
  int64_t P = OH * OW;
  for (int64_t c = 0; c < channels; ++c) {
    const float *xp = x + c * H * W;
    for (int64_t i = 0; i < k.kh; ++i)
      for (int64_t j = 0; j < k.kw; ++j) {
        float *row = col + ((c * k.kh + i) * k.kw + j) * P;
        int64_t lo, hi;
        validRange(W, OW, k.sw, k.pw, j, lo, hi);
        for (int64_t oh = 0; oh < OH; ++oh) {
          float *dst = row + oh * OW;
          int64_t ih = oh * k.sh - k.ph + i;
          if (ih < 0 || ih >= H || lo == hi) {
            std::fill(dst, dst + OW, 0.0f);
            continue;
          }
          std::fill(dst, dst + lo, 0.0f);
          const float *src = xp + ih * W - k.pw + j;
          if (k.sw == 1)
            std::memcpy(dst + lo, src + lo, size_t(hi - lo) * sizeof(float));
          else
            for (int64_t ow = lo; ow < hi; ++ow)
              dst[ow] = src[ow * k.sw];
          std::fill(dst + hi, dst + OW, 0.0f);
        }
      }
  }
}

/// The adjoint of im2col: x = 0, then x[c][ih][iw] += col[...] over taps.
void col2im(const ConvShape &s, int64_t channels, const float *col, float *x) {
  const Window2D &k = s.win;
  int64_t H = s.in.h, W = s.in.w, OH = s.out.h, OW = s.out.w;
  int64_t P = OH * OW;
  std::fill(x, x + channels * H * W, 0.0f);
  for (int64_t c = 0; c < channels; ++c) {
    float *xp = x + c * H * W;
    for (int64_t i = 0; i < k.kh; ++i)
      for (int64_t j = 0; j < k.kw; ++j) {
        const float *row = col + ((c * k.kh + i) * k.kw + j) * P;
        int64_t lo, hi;
        validRange(W, OW, k.sw, k.pw, j, lo, hi);
        if (lo == hi)
          continue;
        for (int64_t oh = 0; oh < OH; ++oh) {
          int64_t ih = oh * k.sh - k.ph + i;
          if (ih < 0 || ih >= H)
            continue;
          const float *src = row + oh * OW;
          float *dst = xp + ih * W - k.pw + j;
          if (k.sw == 1)
            for (int64_t ow = lo; ow < hi; ++ow)
              dst[ow] += src[ow];
          else
            for (int64_t ow = lo; ow < hi; ++ow)
              dst[ow * k.sw] += src[ow];
        }
      }
  }
}

} // namespace

void parallelChunks(int64_t count, int64_t grain,
                    const std::function<void(int64_t, int64_t, int)> &f,
                    int threads) {
  if (count <= 0)
    return;
  int64_t maxThreads = threads > 0 ? threads : numThreads();
  int nt = int(
      std::min<int64_t>(maxThreads, (count + std::max<int64_t>(grain, 1) - 1) /
                                        std::max<int64_t>(grain, 1)));
#ifdef _OPENMP
  if (nt > 1) {
    // Exceptions must not leave an OpenMP region: catch, rethrow after.
    std::string error;
#pragma omp parallel num_threads(nt)
    {
      // The team may be smaller than asked for (nested, thread limits).
      int t = omp_get_thread_num(), team = omp_get_num_threads();
      int64_t per = (count + team - 1) / team;
      int64_t begin = std::min(count, t * per);
      int64_t end = std::min(count, begin + per);
      if (begin < end) {
        try {
          f(begin, end, t);
        } catch (const std::exception &e) {
#pragma omp critical(netc_cpu_error)
          error = e.what();
        }
      }
    }
    if (!error.empty())
      throw KernelError(error);
    return;
  }
#endif
  f(0, count, 0);
}

namespace {

/// Threads to run a batch of n images with, one image per thread (1: run
/// the images in order and let sgemm use the threads).
int batchThreads(int64_t n) { return int(std::min<int64_t>(numThreads(), n)); }

/// Runs f(image, thread) for every image of the batch: one image per thread
/// when batchThreads(n) > 1, else in order on the calling thread.
template <typename F> void forEachImage(int64_t n, F f) {
  int nt = batchThreads(n);
  parallelChunks(
      n, 1,
      [&](int64_t begin, int64_t end, int t) {
        for (int64_t i = begin; i < end; ++i)
          f(i, t);
      },
      nt);
}

void addBias(const Dims4 &d, const float *b, float *y) {
  if (!b)
    return;
  int64_t P = d.plane();
  for (int64_t i = 0; i < d.n * d.c; ++i) {
    float v = b[i % d.c];
    float *p = y + i * P;
    for (int64_t q = 0; q < P; ++q)
      p[q] += v;
  }
}

ConvShape adjointConv(const ConvShape &s) {
  ConvShape c = s;
  c.in = s.out;
  c.out = s.in;
  return c;
}

} // namespace

//===----------------------------------------------------------------------===//
// Convolution
//===----------------------------------------------------------------------===//

void conv2dForward(const ConvShape &s, const float *x, const float *w,
                   const float *b, float *y) {
  ConvGemm g = convGemm(s);
  forEachImage(s.out.n, [&](int64_t n, int) {
    float *col = g.direct ? nullptr : scratch(size_t(g.k * g.p));
    for (int64_t gr = 0; gr < s.groups; ++gr) {
      const float *xg = x + (n * s.in.c + gr * g.cinG) * g.plane;
      float *yg = y + (n * s.out.c + gr * g.coutG) * g.p;
      const float *src = xg;
      if (!g.direct) {
        im2col(s, g.cinG, xg, col);
        src = col;
      }
      sgemm('N', 'N', g.coutG, g.p, g.k, 1.0f, w + gr * g.coutG * g.k, g.k, src,
            g.p, 0.0f, yg, g.p);
      if (b)
        for (int64_t oc = 0; oc < g.coutG; ++oc) {
          float v = b[gr * g.coutG + oc];
          float *row = yg + oc * g.p;
          for (int64_t q = 0; q < g.p; ++q)
            row[q] += v;
        }
    }
  });
}

void conv2dBackwardData(const ConvShape &s, const float *dy, const float *w,
                        float *dx) {
  ConvGemm g = convGemm(s);
  forEachImage(s.out.n, [&](int64_t n, int) {
    float *col = g.direct ? nullptr : scratch(size_t(g.k * g.p));
    for (int64_t gr = 0; gr < s.groups; ++gr) {
      const float *dyg = dy + (n * s.out.c + gr * g.coutG) * g.p;
      float *dxg = dx + (n * s.in.c + gr * g.cinG) * g.plane;
      const float *wg = w + gr * g.coutG * g.k;
      if (g.direct) {
        sgemm('T', 'N', g.k, g.p, g.coutG, 1.0f, wg, g.k, dyg, g.p, 0.0f, dxg,
              g.p);
      } else {
        sgemm('T', 'N', g.k, g.p, g.coutG, 1.0f, wg, g.k, dyg, g.p, 0.0f, col,
              g.p);
        col2im(s, g.cinG, col, dxg);
      }
    }
  });
}

void conv2dBackwardFilter(const ConvShape &s, const float *x, const float *dy,
                          float *dw) {
  ConvGemm g = convGemm(s);
  int64_t wcount = s.out.c * g.k;
  int64_t N = s.out.n;
  int nt = batchThreads(N);
  if (N <= 0) {
    std::fill(dw, dw + wcount, 0.0f);
    return;
  }
  // One partial sum per thread (thread 0 writes dw itself), summed after.
  std::vector<float> partials(size_t(nt - 1) * size_t(wcount));
  auto acc = [&](int t) {
    return t == 0 ? dw : partials.data() + size_t(t - 1) * size_t(wcount);
  };
  std::vector<char> started(size_t(nt), 0);
  forEachImage(N, [&](int64_t n, int t) {
    float *col = g.direct ? nullptr : scratch(size_t(g.k * g.p));
    float beta = started[size_t(t)] ? 1.0f : 0.0f;
    started[size_t(t)] = 1;
    for (int64_t gr = 0; gr < s.groups; ++gr) {
      const float *xg = x + (n * s.in.c + gr * g.cinG) * g.plane;
      const float *dyg = dy + (n * s.out.c + gr * g.coutG) * g.p;
      const float *src = xg;
      if (!g.direct) {
        im2col(s, g.cinG, xg, col);
        src = col;
      }
      sgemm('N', 'T', g.coutG, g.k, g.p, 1.0f, dyg, g.p, src, g.p, beta,
            acc(t) + gr * g.coutG * g.k, g.k);
    }
  });
  for (int t = 1; t < nt; ++t) {
    if (!started[size_t(t)])
      continue;
    const float *p = acc(t);
    for (int64_t i = 0; i < wcount; ++i)
      dw[i] += p[i];
  }
}

void deconv2dForward(const ConvShape &s, const float *x, const float *w,
                     const float *b, float *y) {
  // y = conv2d backward-data of x under the adjoint geometry.
  conv2dBackwardData(adjointConv(s), x, w, y);
  addBias(s.out, b, y);
}

void deconv2dBackwardData(const ConvShape &s, const float *dy, const float *w,
                          float *dx) {
  conv2dForward(adjointConv(s), dy, w, nullptr, dx);
}

void deconv2dBackwardFilter(const ConvShape &s, const float *x, const float *dy,
                            float *dw) {
  conv2dBackwardFilter(adjointConv(s), dy, x, dw);
}

//===----------------------------------------------------------------------===//
// Fully connected
//===----------------------------------------------------------------------===//

//===----------------------------------------------------------------------===//
// Pooling
//===----------------------------------------------------------------------===//

namespace {

/// The lanes of one group share every index computation; at most 16.
constexpr int64_t kMaxLanes = 16;

void checkLanes(const Dims4 &d, int64_t lanes) {
  if (lanes < 1 || lanes > kMaxLanes || d.c % lanes != 0)
    throw KernelError("cpu: " + std::to_string(d.c) +
                      " channels cannot be blocked by " +
                      std::to_string(lanes));
}

/// Where pooled element (i, j) of the pooled plane unpools to in the
/// unpooled plane: the position within its window that its switch records
/// (or, switches null, the fixed position), if that is inside the window
/// and the plane; -1 if nowhere.
inline int64_t unpoolTarget(const UnpoolShape &s, const Switch *sw, int64_t i,
                            int64_t j) {
  const Window2D &k = s.win;
  int64_t dh = s.posH, dw = s.posW;
  if (sw) {
    dh = *sw / k.kw;
    dw = *sw % k.kw;
    if (dh >= k.kh)
      return -1;
  }
  int64_t h = i * k.sh - k.ph + dh, w = j * k.sw - k.pw + dw;
  if (h < 0 || h >= s.out.h || w < 0 || w >= s.out.w)
    return -1;
  return h * s.out.w + w;
}

} // namespace

namespace {

/// Calls f(std::integral_constant<int64_t, L>) for lanes L = 1, 8 or 16, so
/// that the lane loops have constant trip counts and vectorise.
template <typename F> void withLanes(const Dims4 &d, int64_t lanes, F f) {
  checkLanes(d, lanes);
  switch (lanes) {
  case 1:
    return f(std::integral_constant<int64_t, 1>());
  case 8:
    return f(std::integral_constant<int64_t, 8>());
  case 16:
    return f(std::integral_constant<int64_t, 16>());
  default:
    throw KernelError("cpu: no kernels for channel blocks of " +
                      std::to_string(lanes));
  }
}

template <int64_t L>
void maxPoolLanes(const PoolShape &s, const float *x, float *y,
                  Switch *switches) {
  const Dims4 &X = s.in, &Y = s.out;
  const Window2D &k = s.win;
  const int64_t inPlane = X.plane(), outPlane = Y.plane();
  parallelChunks(X.n * X.c / L, 1, [&](int64_t b, int64_t e, int) {
    for (int64_t g = b; g < e; ++g) {
      const float *xg = x + g * inPlane * L;
      float *yg = y + g * outPlane * L;
      Switch *sg = switches ? switches + g * outPlane * L : nullptr;
      for (int64_t oh = 0; oh < Y.h; ++oh)
        for (int64_t ow = 0; ow < Y.w; ++ow) {
          int64_t hs = std::max<int64_t>(oh * k.sh - k.ph, 0);
          int64_t ws = std::max<int64_t>(ow * k.sw - k.pw, 0);
          int64_t he = std::min(oh * k.sh - k.ph + k.kh, X.h);
          int64_t we = std::min(ow * k.sw - k.pw + k.kw, X.w);
          float best[kMaxLanes];
          int32_t at[kMaxLanes];
          int32_t first = int32_t(hs * X.w + ws);
          for (int64_t l = 0; l < L; ++l) {
            best[l] = xg[first * L + l];
            at[l] = first;
          }
          for (int64_t h = hs; h < he; ++h)
            for (int64_t w = ws; w < we; ++w) {
              int32_t q = int32_t(h * X.w + w);
              const float *v = xg + q * L;
              for (int64_t l = 0; l < L; ++l) { // selects: vectorises
                bool greater = v[l] > best[l];
                best[l] = greater ? v[l] : best[l];
                at[l] = greater ? q : at[l];
              }
            }
          int64_t o = (oh * Y.w + ow) * L;
          // The switch: at's position within the window.
          const int64_t h0 = oh * k.sh - k.ph, w0 = ow * k.sw - k.pw;
          for (int64_t l = 0; l < L; ++l) {
            yg[o + l] = best[l];
            if (sg)
              sg[o + l] = Switch((at[l] / X.w - h0) * k.kw + at[l] % X.w - w0);
          }
        }
    }
  });
}

/// Unpooling with disjoint windows, one group of L interleaved planes at a
/// time: forward (a scatter: y = 0, then each pooled element to its
/// target) or backward (a gather: each pooled element's gradient from its
/// target, 0 where it has none). `src` is x (forward) or dy.
template <int64_t L, bool Forward>
void unpoolLanes(const UnpoolShape &s, const float *src, const Switch *switches,
                 float *dst) {
  const int64_t pooled = s.in.plane(), plane = s.out.plane();
  parallelChunks(s.in.n * s.in.c / L, 1, [&](int64_t b, int64_t e, int) {
    for (int64_t g = b; g < e; ++g) {
      const float *from = src + g * (Forward ? pooled : plane) * L;
      float *to = dst + g * (Forward ? plane : pooled) * L;
      const Switch *sg = switches ? switches + g * pooled * L : nullptr;
      if (Forward)
        std::fill(to, to + plane * L, 0.0f);
      for (int64_t i = 0; i < s.in.h; ++i)
        for (int64_t j = 0; j < s.in.w; ++j) {
          int64_t q = (i * s.in.w + j) * L;
          for (int64_t l = 0; l < L; ++l) {
            int64_t t = unpoolTarget(s, sg ? sg + q + l : nullptr, i, j);
            if (Forward && t >= 0)
              to[t * L + l] = from[q + l];
            else if (!Forward)
              to[q + l] = t >= 0 ? from[t * L + l] : 0.0f;
          }
        }
    }
  });
}

template <int64_t L>
void biasGradLanes(const Dims4 &d, const float *dy, float *db) {
  const int64_t plane = d.plane();
  parallelChunks(
      d.c / L,
      std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(1, d.n * plane * L)),
      [&](int64_t b, int64_t e, int) {
        for (int64_t g = b; g < e; ++g) {
          double sum[L] = {};
          for (int64_t n = 0; n < d.n; ++n) {
            const float *p = dy + ((n * d.c / L + g) * plane) * L;
            for (int64_t q = 0; q < plane; ++q)
              for (int64_t l = 0; l < L; ++l)
                sum[l] += double(p[q * L + l]);
          }
          for (int64_t l = 0; l < L; ++l)
            db[g * L + l] = float(sum[l]);
        }
      });
}

} // namespace

void maxPool(const PoolShape &s, int64_t lanes, const float *x, float *y,
             Switch *switches) {
  if (switches)
    checkSwitchWindow("max_pool", s.win);
  withLanes(s.in, lanes, [&](auto L) { maxPoolLanes<L>(s, x, y, switches); });
}

void biasGrad(const Dims4 &d, int64_t lanes, const float *dy, float *db) {
  withLanes(d, lanes, [&](auto L) { biasGradLanes<L>(d, dy, db); });
}

bool unpoolWindowsDisjoint(const UnpoolShape &s) {
  return s.win.sh >= s.win.kh && s.win.sw >= s.win.kw;
}

void unpoolScatter(const UnpoolShape &s, int64_t lanes, const float *x,
                   const Switch *switches, float *y) {
  withLanes(s.in, lanes,
            [&](auto L) { unpoolLanes<L, true>(s, x, switches, y); });
}

void unpoolBackwardGather(const UnpoolShape &s, int64_t lanes, const float *dy,
                          const Switch *switches, float *dx) {
  withLanes(s.in, lanes,
            [&](auto L) { unpoolLanes<L, false>(s, dy, switches, dx); });
}

void fcForward(int64_t n, int64_t in, int64_t out, const float *x,
               const float *w, const float *b, float *y) {
  sgemm('N', 'T', n, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
  if (b)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t o = 0; o < out; ++o)
        y[i * out + o] += b[o];
}

void fcBackwardData(int64_t n, int64_t in, int64_t out, const float *dy,
                    const float *w, float *dx) {
  sgemm('N', 'N', n, in, out, 1.0f, dy, out, w, in, 0.0f, dx, in);
}

void fcBackwardFilter(int64_t n, int64_t in, int64_t out, const float *x,
                      const float *dy, float *dw) {
  sgemm('T', 'N', out, in, n, 1.0f, dy, out, x, in, 0.0f, dw, in);
}

} // namespace netc::kernels::cpu
