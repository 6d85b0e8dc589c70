//===- Image.h - JPEG and PNG decoding --------------------------*- C++ -*-===//
//
// Decodes the images of an image folder: JPEG through libjpeg-turbo's
// TurboJPEG API, PNG through libpng's simplified API. The result is 8-bit
// grey or RGB, rows top to bottom, channels interleaved. A JPEG may be
// decoded at a reduced size (libjpeg-turbo's DCT scaling by 1/2, 1/4, 1/8)
// when the caller only needs its shorter side at `minShortSide` pixels: the
// shrink then costs nearly nothing, as in PIL's draft mode.
//
// Every problem is an ImageError naming the file: not a JPEG or PNG, a
// truncated or corrupt stream (libjpeg-turbo's warnings, such as "premature
// end of JPEG file", count as errors), a PNG with an alpha channel or 16 bits
// per sample, a CMYK JPEG. Without the libraries (NETC_HAVE_IMAGES unset)
// every decode is an ImageError saying so.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_IO_IMAGE_H
#define NETC_RUNTIME_IO_IMAGE_H

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace netc::io {

class ImageError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// A decoded image: `height` x `width` x `channels` (1 or 3) bytes.
/// `fullHeight` and `fullWidth` are the size stored in the file (larger than
/// height and width when a JPEG was decoded at a reduced scale).
struct Image {
  int64_t height = 0, width = 0, fullHeight = 0, fullWidth = 0;
  int channels = 0;
  std::vector<uint8_t> pixels;
};

/// Whether this runtime was built with libjpeg-turbo and libpng.
bool haveImageCodecs();

/// Decodes the JPEG or PNG in `bytes` (the content of `path`, which names it
/// in errors), told apart by their signatures. `minShortSide` > 0 lets a JPEG
/// be decoded at the smallest DCT scale whose shorter side is still at least
/// that.
Image decodeImage(const std::string &bytes, const std::string &path,
                  int64_t minShortSide = 0);

/// Encoders, for tests and tools: a baseline JPEG of the given quality, and
/// a PNG of 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA) channels of 8
/// or 16 bits (16-bit samples big-endian, two bytes each).
std::string encodeJpeg(const std::vector<uint8_t> &pixels, int64_t width,
                       int64_t height, int channels, int quality = 90);
std::string encodePng(const std::vector<uint8_t> &pixels, int64_t width,
                      int64_t height, int channels, int bits = 8);

} // namespace netc::io

#endif // NETC_RUNTIME_IO_IMAGE_H
