//===- Resample.cpp - resizing, cropping and normalising images -----------===//
//
// The resize is separable: a horizontal pass over the source rows the crop
// window needs, computing only the window's columns, then a vertical pass.
// Each output coordinate o of a side resized from `in` to `out` pixels has
// its centre at (o + 0.5) * in / out in the source; its taps are the source
// pixels within the filter's support of that centre, weighted by the
// triangle filter (1 - |d| / s) and normalised to sum 1, where s =
// max(in / out, 1): a shrink widens the triangle to cover every source
// pixel, an enlargement is plain bilinear interpolation.
//
//===----------------------------------------------------------------------===//

#include "runtime/data/Resample.h"

#include <algorithm>
#include <cmath>

namespace netc::data {

Size2 resizedSize(int64_t height, int64_t width, int64_t side) {
  if (side <= 0)
    return {height, width};
  auto longer = [&](int64_t l, int64_t s) {
    return std::max<int64_t>(
        1, int64_t(std::llround(double(l) * double(side) / double(s))));
  };
  if (height <= width)
    return {side, longer(width, height)};
  return {longer(height, width), side};
}

namespace {
/// The taps of `n` consecutive output coordinates from `first`.
struct Taps {
  std::vector<int64_t> start; ///< first source index of each output
  std::vector<int> count;     ///< taps of each output
  std::vector<float> weights; ///< `width` per output, `count` used
  int width = 0;
};
} // namespace

static Taps makeTaps(int64_t in, int64_t out, int64_t first, int64_t n) {
  const double scale = double(in) / double(out);
  const double filterScale = std::max(scale, 1.0);
  const double support = filterScale; // the triangle's radius is 1
  Taps t;
  t.width = int(std::ceil(support)) * 2 + 1;
  t.start.resize(size_t(n));
  t.count.resize(size_t(n));
  t.weights.assign(size_t(n * t.width), 0.0f);
  for (int64_t i = 0; i < n; ++i) {
    const double centre = double(first + i + 0.5) * scale;
    int64_t lo =
        std::max<int64_t>(int64_t(std::floor(centre - support + 0.5)), 0);
    int64_t hi =
        std::min<int64_t>(int64_t(std::floor(centre + support + 0.5)), in);
    hi = std::min<int64_t>(hi, lo + t.width);
    std::vector<double> w(size_t(t.width));
    double sum = 0;
    int k = 0;
    for (int64_t x = lo; x < hi; ++x, ++k) {
      double d = std::abs((double(x) - centre + 0.5) / filterScale);
      w[size_t(k)] = d < 1.0 ? 1.0 - d : 0.0;
      sum += w[size_t(k)];
    }
    if (sum <= 0) { // cannot happen with lo < hi; keep the nearest pixel
      k = 1;
      w[0] = sum = 1.0;
      lo = std::clamp<int64_t>(int64_t(centre), 0, in - 1);
    }
    t.start[size_t(i)] = lo;
    t.count[size_t(i)] = k;
    for (int j = 0; j < k; ++j)
      t.weights[size_t(i * t.width + j)] = float(w[size_t(j)] / sum);
  }
  return t;
}

std::vector<float> resampleWindow(const uint8_t *src, int64_t h, int64_t w,
                                  int c, int64_t rh, int64_t rw, int64_t y0,
                                  int64_t x0, int64_t oh, int64_t ow) {
  Taps tx = makeTaps(w, rw, x0, ow);
  Taps ty = makeTaps(h, rh, y0, oh);
  // Source rows the window needs.
  int64_t rowLo = ty.start.front(), rowHi = rowLo;
  for (int64_t y = 0; y < oh; ++y)
    rowHi = std::max(rowHi, ty.start[size_t(y)] + ty.count[size_t(y)]);
  const int64_t rows = rowHi - rowLo, rowFloats = ow * c;
  std::vector<float> tmp(size_t(rows * rowFloats));
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t *line = src + (rowLo + r) * w * c;
    float *dst = tmp.data() + r * rowFloats;
    for (int64_t x = 0; x < ow; ++x) {
      const float *wt = tx.weights.data() + x * tx.width;
      const uint8_t *p = line + tx.start[size_t(x)] * c;
      const int n = tx.count[size_t(x)];
      for (int ch = 0; ch < c; ++ch) {
        float acc = 0;
        for (int j = 0; j < n; ++j)
          acc += wt[j] * float(p[j * c + ch]);
        dst[x * c + ch] = acc;
      }
    }
  }
  std::vector<float> out(size_t(oh * rowFloats), 0.0f);
  for (int64_t y = 0; y < oh; ++y) {
    const float *wt = ty.weights.data() + y * ty.width;
    const float *base = tmp.data() + (ty.start[size_t(y)] - rowLo) * rowFloats;
    float *dst = out.data() + y * rowFloats;
    for (int j = 0; j < ty.count[size_t(y)]; ++j) {
      const float wj = wt[j];
      const float *line = base + j * rowFloats;
      for (int64_t i = 0; i < rowFloats; ++i)
        dst[i] += wj * line[i];
    }
  }
  return out;
}

void writePlanar(const std::vector<float> &win, int64_t oh, int64_t ow, int c,
                 bool mirror, bool reverseChannels, const float *mean,
                 const float *invStd, float *dst) {
  for (int k = 0; k < c; ++k) {
    const int ch = reverseChannels ? c - 1 - k : k;
    const float m = mean[k], s = invStd[k];
    float *plane = dst + int64_t(k) * oh * ow;
    for (int64_t y = 0; y < oh; ++y) {
      const float *row = win.data() + y * ow * c;
      float *out = plane + y * ow;
      for (int64_t x = 0; x < ow; ++x) {
        int64_t sx = mirror ? ow - 1 - x : x;
        out[x] = (row[sx * c + ch] - m) * s;
      }
    }
  }
}

} // namespace netc::data
