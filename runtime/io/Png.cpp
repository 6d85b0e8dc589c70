//===- Png.cpp - PNG images -----------------------------------------------===//

#include "runtime/io/Png.h"
#include "runtime/io/File.h"

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace netc::io {

static void putU32(std::vector<uint8_t> &out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8)
    out.push_back(uint8_t(v >> s));
}

/// Appends one chunk: length, type, data, CRC of type + data.
static void chunk(std::vector<uint8_t> &out, const char type[4],
                  const std::vector<uint8_t> &data) {
  putU32(out, uint32_t(data.size()));
  size_t start = out.size();
  out.insert(out.end(), type, type + 4);
  out.insert(out.end(), data.begin(), data.end());
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, out.data() + start, uInt(out.size() - start));
  putU32(out, uint32_t(crc));
}

void writePng(const std::string &path, int64_t width, int64_t height,
              int channels, const std::vector<uint8_t> &pixels) {
  if (width < 1 || height < 1 || (channels != 1 && channels != 3) ||
      pixels.size() != size_t(width * height * channels))
    throw PngError(fmt::format("{}: bad image geometry {}x{}x{}", path, width,
                               height, channels));
  // Each row is prefixed by filter type 0 (none).
  std::vector<uint8_t> raw;
  raw.reserve(size_t(height * (width * channels + 1)));
  for (int64_t y = 0; y < height; ++y) {
    raw.push_back(0);
    auto row = pixels.begin() + y * width * channels;
    raw.insert(raw.end(), row, row + width * channels);
  }
  uLongf packedSize = compressBound(uLong(raw.size()));
  std::vector<uint8_t> packed(packedSize);
  if (compress2(packed.data(), &packedSize, raw.data(), uLong(raw.size()), 6) !=
      Z_OK)
    throw PngError(fmt::format("{}: cannot compress the image", path));
  packed.resize(packedSize);

  std::vector<uint8_t> file{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  std::vector<uint8_t> header;
  putU32(header, uint32_t(width));
  putU32(header, uint32_t(height));
  header.insert(header.end(), {8, uint8_t(channels == 1 ? 0 : 2), 0, 0, 0});
  chunk(file, "IHDR", header);
  chunk(file, "IDAT", packed);
  chunk(file, "IEND", {});

  try {
    writeFileAtomically(
        path, std::string_view(reinterpret_cast<const char *>(file.data()),
                               file.size()));
  } catch (const FileError &e) {
    throw PngError(e.what());
  }
}

ImageGrid::ImageGrid(int64_t rows, int64_t cols, int64_t tileH, int64_t tileW,
                     int channels, int64_t gap)
    : rows_(rows), cols_(cols), tileH_(tileH), tileW_(tileW), gap_(gap),
      width_(cols * (tileW + gap) + gap), height_(rows * (tileH + gap) + gap),
      channels_(channels), pixels_(size_t(width_ * height_ * channels), 255) {}

void ImageGrid::place(int64_t row, int64_t col, const float *planar,
                      const std::vector<double> &scale,
                      const std::vector<double> &offset) {
  int64_t x0 = gap_ + col * (tileW_ + gap_), y0 = gap_ + row * (tileH_ + gap_);
  for (int c = 0; c < channels_; ++c) {
    double s = scale[std::min<size_t>(c, scale.size() - 1)];
    double o = offset[std::min<size_t>(c, offset.size() - 1)];
    for (int64_t y = 0; y < tileH_; ++y)
      for (int64_t x = 0; x < tileW_; ++x) {
        double v = planar[(c * tileH_ + y) * tileW_ + x] * s + o;
        v = std::clamp(v, 0.0, 255.0);
        pixels_[size_t(((y0 + y) * width_ + x0 + x) * channels_ + c)] =
            uint8_t(v + 0.5);
      }
  }
}

void ImageGrid::write(const std::string &path) const {
  writePng(path, width_, height_, channels_, pixels_);
}

} // namespace netc::io
