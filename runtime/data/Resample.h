//===- Resample.h - resizing, cropping and normalising images ---*- C++ -*-===//
//
// The geometry of the paper's augmentation, on decoded 8-bit images
// (height x width x channels, interleaved):
//   1. resize so that the shorter side is S (the longer one keeps the aspect
//      ratio, rounded), with an antialiased bilinear filter: a triangle
//      filter whose support widens with the shrink factor, so a large shrink
//      averages every source pixel (like an area filter) instead of
//      sampling a few (PIL's and torchvision's `BILINEAR` with antialias);
//      only the output pixels inside the crop window are computed;
//   2. crop a window of the resized image;
//   3. mirror it (optional), reorder the channels (RGB or BGR) and write
//      (x - mean[c]) / std[c] channel-planar as floats.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_DATA_RESAMPLE_H
#define NETC_RUNTIME_DATA_RESAMPLE_H

#include <cstdint>
#include <vector>

namespace netc::data {

/// The size of an h x w image whose shorter side is resized to `side`
/// (0: the size itself).
struct Size2 {
  int64_t height = 0, width = 0;
};
Size2 resizedSize(int64_t height, int64_t width, int64_t side);

/// Resizes `src` (h x w x c bytes) to rh x rw and returns the window
/// [y0, y0 + oh) x [x0, x0 + ow) of the result as oh x ow x c floats in
/// [0, 255]. The window must lie inside rh x rw.
std::vector<float> resampleWindow(const uint8_t *src, int64_t h, int64_t w,
                                  int c, int64_t rh, int64_t rw, int64_t y0,
                                  int64_t x0, int64_t oh, int64_t ow);

/// Writes the oh x ow x c window `win` channel-planar into `dst`
/// ([c, oh, ow]): mirrored left-right if `mirror`, channels reversed if
/// `reverseChannels` (RGB to BGR), then (x - mean[k]) * invStd[k] for output
/// channel k.
void writePlanar(const std::vector<float> &win, int64_t oh, int64_t ow, int c,
                 bool mirror, bool reverseChannels, const float *mean,
                 const float *invStd, float *dst);

} // namespace netc::data

#endif // NETC_RUNTIME_DATA_RESAMPLE_H
