//===- Image.cpp - JPEG and PNG decoding ----------------------------------===//

#include "runtime/io/Image.h"

#include <fmt/format.h>

#include <cstring>
#include <limits>

#ifdef NETC_HAVE_IMAGES
#include <png.h>
#include <turbojpeg.h>
#endif

namespace netc::io {

/// Images beyond this many pixels on a side, or in all, are refused before
/// decoding: a crafted header cannot make a worker allocate gigabytes. (The
/// largest ImageNet images have about 2^24 pixels.)
static constexpr int64_t kMaxSide = 1 << 16;
static constexpr int64_t kMaxPixels = int64_t(1) << 27;

static bool isJpeg(const std::string &b) {
  return b.size() >= 3 && uint8_t(b[0]) == 0xFF && uint8_t(b[1]) == 0xD8 &&
         uint8_t(b[2]) == 0xFF;
}
static bool isPng(const std::string &b) {
  static const char kSig[8] = {'\x89', 'P', 'N', 'G', '\r', '\n', '\x1a', '\n'};
  return b.size() >= 8 && std::memcmp(b.data(), kSig, 8) == 0;
}

[[maybe_unused]] static void checkSize(const std::string &path, int64_t w,
                                       int64_t h) {
  if (w < 1 || h < 1 || w > kMaxSide || h > kMaxSide || w * h > kMaxPixels)
    throw ImageError(fmt::format("{}: the image is {}x{}; sides must be 1 to "
                                 "{} pixels, and at most {} pixels in all",
                                 path, w, h, kMaxSide, kMaxPixels));
}

#ifdef NETC_HAVE_IMAGES

bool haveImageCodecs() { return true; }

namespace {
/// One TurboJPEG handle per thread, for the thread's life. A call that
/// failed can leave a handle unfit for the next image (libjpeg-turbo 2.1
/// then reads a later, sound header as 0x0), so a failure replaces it.
struct TjHandle {
  bool compress;
  tjhandle handle = nullptr;
  explicit TjHandle(bool compress) : compress(compress) { reset(); }
  ~TjHandle() {
    if (handle)
      tjDestroy(handle);
  }
  TjHandle(const TjHandle &) = delete;
  TjHandle &operator=(const TjHandle &) = delete;
  void reset() {
    if (handle)
      tjDestroy(handle);
    handle = compress ? tjInitCompress() : tjInitDecompress();
  }
};
} // namespace

static TjHandle &tj(bool compress, const std::string &path) {
  thread_local TjHandle decompressor(false), compressor(true);
  TjHandle &h = compress ? compressor : decompressor;
  if (!h.handle)
    h.reset();
  if (!h.handle)
    throw ImageError(fmt::format("{}: cannot start libjpeg-turbo: {}", path,
                                 tjGetErrorStr2(nullptr)));
  return h;
}

/// The libjpeg-turbo message, without the function prefix it puts there;
/// the handle is replaced (see TjHandle).
static std::string tjFailure(TjHandle &h) {
  std::string m = tjGetErrorStr2(h.handle);
  h.reset();
  size_t colon = m.find("(): ");
  return colon == std::string::npos ? m : m.substr(colon + 4);
}

static Image decodeJpeg(const std::string &bytes, const std::string &path,
                        int64_t minShortSide) {
  TjHandle &th = tj(false, path);
  tjhandle h = th.handle;
  const auto *src = reinterpret_cast<const unsigned char *>(bytes.data());
  if (bytes.size() > std::numeric_limits<unsigned long>::max())
    throw ImageError(fmt::format("{}: too large", path));
  int w = 0, ht = 0, subsamp = 0, colorspace = 0;
  if (tjDecompressHeader3(h, src, (unsigned long)bytes.size(), &w, &ht,
                          &subsamp, &colorspace) != 0)
    throw ImageError(
        fmt::format("{}: corrupt or truncated JPEG: {}", path, tjFailure(th)));
  checkSize(path, w, ht);
  if (colorspace == TJCS_CMYK || colorspace == TJCS_YCCK)
    throw ImageError(fmt::format("{}: a CMYK JPEG; only greyscale and colour "
                                 "(YCbCr/RGB) JPEGs are read",
                                 path));
  Image img;
  img.fullWidth = w;
  img.fullHeight = ht;
  img.channels = colorspace == TJCS_GRAY ? 1 : 3;
  // The smallest DCT scale (at most 1) that keeps the shorter side at
  // minShortSide or more.
  tjscalingfactor best{1, 1};
  int n = 0;
  if (const tjscalingfactor *f = tjGetScalingFactors(&n); f && minShortSide > 0)
    for (int i = 0; i < n; ++i) {
      if (f[i].num > f[i].denom)
        continue;
      int64_t side = std::min(TJSCALED(w, f[i]), TJSCALED(ht, f[i]));
      if (side >= minShortSide &&
          int64_t(f[i].num) * best.denom < int64_t(best.num) * f[i].denom)
        best = f[i];
    }
  img.width = TJSCALED(w, best);
  img.height = TJSCALED(ht, best);
  img.pixels.resize(size_t(img.width * img.height * img.channels));
  // A warning (a truncated or corrupt stream) fails the call too: with
  // TJFLAG_STOPONWARNING it stops there instead of filling in grey.
  if (tjDecompress2(h, src, (unsigned long)bytes.size(), img.pixels.data(),
                    int(img.width), 0, int(img.height),
                    img.channels == 1 ? TJPF_GRAY : TJPF_RGB,
                    TJFLAG_STOPONWARNING) != 0)
    throw ImageError(
        fmt::format("{}: corrupt or truncated JPEG: {}", path, tjFailure(th)));
  return img;
}

static Image decodePng(const std::string &bytes, const std::string &path) {
  png_image png;
  std::memset(&png, 0, sizeof png);
  png.version = PNG_IMAGE_VERSION;
  auto fail = [&](const char *what) {
    std::string msg = png.message;
    png_image_free(&png);
    return ImageError(fmt::format("{}: {}: {}", path, what, msg));
  };
  if (!png_image_begin_read_from_memory(&png, bytes.data(), bytes.size()))
    throw fail("not a readable PNG");
  int64_t w = png.width, h = png.height;
  uint32_t format = png.format;
  try {
    checkSize(path, w, h);
  } catch (...) {
    png_image_free(&png);
    throw;
  }
  if (format & PNG_FORMAT_FLAG_ALPHA) {
    png_image_free(&png);
    throw ImageError(fmt::format("{}: the PNG has an alpha channel (or a "
                                 "transparent colour); save it without "
                                 "transparency",
                                 path));
  }
  if (format & PNG_FORMAT_FLAG_LINEAR) {
    png_image_free(&png);
    throw ImageError(fmt::format("{}: the PNG has 16 bits per sample; only 8 "
                                 "bits (or fewer) are read",
                                 path));
  }
  Image img;
  img.width = img.fullWidth = w;
  img.height = img.fullHeight = h;
  img.channels = (format & PNG_FORMAT_FLAG_COLOR) ? 3 : 1;
  png.format = img.channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  img.pixels.resize(size_t(w * h * img.channels));
  if (!png_image_finish_read(&png, nullptr, img.pixels.data(), 0, nullptr))
    throw fail("corrupt or truncated PNG");
  png_image_free(&png);
  return img;
}

Image decodeImage(const std::string &bytes, const std::string &path,
                  int64_t minShortSide) {
  if (isJpeg(bytes))
    return decodeJpeg(bytes, path, minShortSide);
  if (isPng(bytes))
    return decodePng(bytes, path);
  throw ImageError(
      fmt::format("{}: neither a JPEG nor a PNG ({})", path,
                  bytes.empty() ? "the file is empty" : "unknown signature"));
}

std::string encodeJpeg(const std::vector<uint8_t> &pixels, int64_t width,
                       int64_t height, int channels, int quality) {
  checkSize("encodeJpeg", width, height);
  if ((channels != 1 && channels != 3) ||
      pixels.size() != size_t(width * height * channels))
    throw ImageError("encodeJpeg: bad image geometry");
  TjHandle &th = tj(true, "encodeJpeg");
  tjhandle h = th.handle;
  unsigned char *out = nullptr;
  unsigned long size = 0;
  if (tjCompress2(h, pixels.data(), int(width), 0, int(height),
                  channels == 1 ? TJPF_GRAY : TJPF_RGB, &out, &size,
                  channels == 1 ? TJSAMP_GRAY : TJSAMP_420, quality, 0) != 0)
    throw ImageError("encodeJpeg: " + tjFailure(th));
  std::string bytes(reinterpret_cast<const char *>(out), size);
  tjFree(out);
  return bytes;
}

std::string encodePng(const std::vector<uint8_t> &pixels, int64_t width,
                      int64_t height, int channels, int bits) {
  checkSize("encodePng", width, height);
  if (channels < 1 || channels > 4 || (bits != 8 && bits != 16) ||
      pixels.size() != size_t(width * height * channels))
    throw ImageError("encodePng: bad image geometry");
  png_image png;
  std::memset(&png, 0, sizeof png);
  png.version = PNG_IMAGE_VERSION;
  png.width = png_uint_32(width);
  png.height = png_uint_32(height);
  static const png_uint_32 kFormats[] = {PNG_FORMAT_GRAY, PNG_FORMAT_GA,
                                         PNG_FORMAT_RGB, PNG_FORMAT_RGBA};
  png.format =
      kFormats[channels - 1] | (bits == 16 ? PNG_FORMAT_FLAG_LINEAR : 0);
  std::vector<png_uint_16> wide;
  const void *src = pixels.data();
  if (bits == 16) {
    wide.reserve(pixels.size());
    for (uint8_t v : pixels)
      wide.push_back(png_uint_16(v * 257));
    src = wide.data();
  }
  png_alloc_size_t size = 0;
  if (!png_image_write_get_memory_size(png, size, 0, src, 0, nullptr))
    throw ImageError(std::string("encodePng: ") + png.message);
  std::string bytes(size, '\0');
  if (!png_image_write_to_memory(&png, bytes.data(), &size, 0, src, 0, nullptr))
    throw ImageError(std::string("encodePng: ") + png.message);
  bytes.resize(size);
  return bytes;
}

#else // !NETC_HAVE_IMAGES

bool haveImageCodecs() { return false; }

static ImageError noCodecs(const std::string &path) {
  return ImageError(fmt::format(
      "{}: this runtime was built without JPEG/PNG decoding (libjpeg-turbo's "
      "libturbojpeg0-dev and libpng-dev; rebuild with them for image "
      "folders)",
      path));
}

Image decodeImage(const std::string &bytes, const std::string &path, int64_t) {
  if (!isJpeg(bytes) && !isPng(bytes))
    throw ImageError(fmt::format("{}: neither a JPEG nor a PNG", path));
  throw noCodecs(path);
}

std::string encodeJpeg(const std::vector<uint8_t> &, int64_t, int64_t, int,
                       int) {
  throw noCodecs("encodeJpeg");
}
std::string encodePng(const std::vector<uint8_t> &, int64_t, int64_t, int,
                      int) {
  throw noCodecs("encodePng");
}

#endif // NETC_HAVE_IMAGES

} // namespace netc::io
