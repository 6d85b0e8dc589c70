//===- Png.h - PNG images ----------------------------------------*- C++
//-*-===//
//
// Writes 8-bit greyscale or RGB PNG files (zlib for the IDAT stream and the
// CRCs), atomically: a temporary file, fsync, rename.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_IO_PNG_H
#define NETC_RUNTIME_IO_PNG_H

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace netc::io {

class PngError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// `pixels` is row-major, `channels` (1 or 3) interleaved bytes per pixel.
void writePng(const std::string &path, int64_t width, int64_t height,
              int channels, const std::vector<uint8_t> &pixels);

/// A grid of `rows` x `cols` tiles of `tileH` x `tileW` pixels with a
/// `gap`-pixel white border, for pictures like "inputs above, their
/// reconstructions below".
class ImageGrid {
public:
  ImageGrid(int64_t rows, int64_t cols, int64_t tileH, int64_t tileW,
            int channels, int64_t gap = 2);
  /// Places a planar [channels, tileH, tileW] image with values mapped to
  /// bytes by `(v * scale + offset)` per channel, clamped to [0, 255].
  void place(int64_t row, int64_t col, const float *planar,
             const std::vector<double> &scale,
             const std::vector<double> &offset);
  void write(const std::string &path) const;

private:
  int64_t rows_, cols_, tileH_, tileW_, gap_, width_, height_;
  int channels_;
  std::vector<uint8_t> pixels_;
};

} // namespace netc::io

#endif // NETC_RUNTIME_IO_PNG_H
