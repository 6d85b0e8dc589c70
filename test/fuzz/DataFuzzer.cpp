//===- DataFuzzer.cpp - libFuzzer harness for the data readers ------------===//
//
// Writes arbitrary bytes to one file and hands it to every reader of data
// files, each through its public entry point:
//   - the image-folder loader (io::decodeImage, then data::ImageLoader's
//     resize, crop, mirror and normalisation, as a training batch and as an
//     evaluation batch), with an augmentation drawn from a hash of the input;
//   - data::readIdx (plain or gzip IDX);
//   - data::loadCifar (the file as CIFAR-10's test_batch.bin);
//   - the resampler alone (data::resizedSize, resampleWindow, writePlanar)
//     on a geometry read from the first bytes and the rest as pixels, for
//     the sizes and aspect ratios that decodable inputs seldom reach.
// The file lives in the process's own directory (WorkDir.h).
//
// Each reader may throw its own error type (io::ImageError, data::IdxError,
// data::CifarError); anything else escapes and aborts (a finding), as does a
// crash, a sanitizer report, a hang or a blow-up. What reads must also make
// sense:
//   - a batch or window made with mean 0 and scale 1 holds finite values
//     within the byte range (the resampling filter's weights are non-negative
//     and sum to 1, so every output is a convex combination of pixels);
//   - an IDX array holds as many bytes as its dimensions promise;
//   - a CIFAR set holds 3x32x32 bytes and one label below 10 per record.
//
//===----------------------------------------------------------------------===//

#include "runtime/data/Cifar.h"
#include "runtime/data/Idx.h"
#include "runtime/data/ImageFolder.h"
#include "runtime/data/Resample.h"
#include "runtime/io/Hash.h"
#include "runtime/io/Image.h"
#include "test/fuzz/WorkDir.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

// CIFAR-10's test split is this one file in the data directory.
constexpr const char *kFileName = "test_batch.bin";

const std::string &workDir() {
  return netc::fuzz::workDir("netc-data-fuzz", {kFileName});
}

[[noreturn]] void finding(const char *what) {
  std::fprintf(stderr, "data fuzzer: %s\n", what);
  std::abort();
}

/// Takes `bits` bits from the low end of `h`.
int64_t take(uint64_t &h, int bits) {
  int64_t v = int64_t(h & ((uint64_t(1) << bits) - 1));
  h >>= bits;
  return v;
}

void checkPixels(const std::vector<float> &pixels) {
  for (float v : pixels)
    if (!std::isfinite(v) || v < -1e-3f || v > 255.0f * (1 + 1e-5f) + 1e-3f)
      finding("a resampled pixel lies outside the byte range");
}

void fuzzImage(const std::string &path, const std::string &bytes, uint64_t h) {
  // The loader refuses an image whose channels differ from the network's;
  // take them from the image so that every decodable input is resampled.
  int channels;
  try {
    channels = netc::io::decodeImage(bytes, path, 0).channels;
  } catch (const netc::io::ImageError &) {
    return;
  }
  netc::data::ImageAugment aug;
  aug.channels = channels;
  aug.cropHeight = 1 + take(h, 6); // 1..64
  aug.cropWidth = 1 + take(h, 6);
  if (take(h, 2) != 0) { // three in four resize
    aug.scaleMin = 1 + take(h, 7);
    aug.scaleMax = aug.scaleMin + take(h, 2) * take(h, 5);
    aug.evalScale = take(h, 1) ? aug.scaleMin + take(h, 5) : 0;
  }
  aug.mirror = take(h, 1);
  aug.bgr = take(h, 1);
  aug.mean.assign(size_t(channels), 0.0f);
  aug.invStd.assign(size_t(channels), 1.0f);
  netc::data::ImageFolderSplit split;
  split.dir = workDir();
  split.classes = {"a"};
  split.files = {path};
  split.labels = {0};
  static auto pool = std::make_shared<netc::data::WorkerPool>(1);
  netc::data::ImageLoader loader(split, aug, pool);
  std::vector<float> images(size_t(loader.sampleFloats()));
  const int64_t index = 0;
  int32_t label = -1;
  for (bool augment : {true, false}) {
    try {
      loader.makeBatch(&index, 1, augment, h, images.data(), &label);
    } catch (const netc::io::ImageError &) {
      continue; // smaller than the crop, say
    }
    if (label != 0)
      finding("the batch's label is not the image's class");
    checkPixels(images);
  }
}

/// Bytes 0-7 are the geometry: source height and width (1 to 256 each),
/// channels (1 or 3), the shorter side's new size (0: none, else 1 to
/// 1023), the crop's height and width (1 to 64), and the crop's place and
/// the mirror; the pixels are the rest of the input, repeated.
void fuzzResample(const uint8_t *data, size_t size) {
  if (size < 9)
    return;
  const int64_t h = 1 + data[0], w = 1 + data[1];
  const int c = data[2] & 1 ? 3 : 1;
  const int64_t side = (int64_t(data[2] >> 1) << 3 | data[3] >> 5) & 1023;
  const int64_t oh = 1 + (data[4] & 63), ow = 1 + (data[5] & 63);
  const netc::data::Size2 r = netc::data::resizedSize(h, w, side);
  if (r.height < 1 || r.width < 1)
    finding("a resized side below 1");
  if (side && std::min(r.height, r.width) != side)
    finding("the resized shorter side is not the one asked for");
  if (r.height < oh || r.width < ow)
    return; // the loader refuses a crop larger than the image
  const int64_t y0 = data[6] % (r.height - oh + 1);
  const int64_t x0 = data[7] % (r.width - ow + 1);
  std::vector<uint8_t> src(size_t(h * w * c));
  for (size_t i = 0; i < src.size(); ++i)
    src[i] = data[8 + i % (size - 8)];
  const std::vector<float> win = netc::data::resampleWindow(
      src.data(), h, w, c, r.height, r.width, y0, x0, oh, ow);
  if (win.size() != size_t(oh * ow * c))
    finding("a window of the wrong size");
  checkPixels(win);
  // A flat image resamples to itself: the weights of every output sum to 1.
  const std::vector<uint8_t> flat(src.size(), data[8]);
  for (float v : netc::data::resampleWindow(flat.data(), h, w, c, r.height,
                                            r.width, y0, x0, oh, ow))
    if (std::abs(v - float(data[8])) > 1e-2f)
      finding("a flat image does not resample to its own value");
  const float mean[3] = {0, 0, 0}, invStd[3] = {1, 1, 1};
  std::vector<float> planar(win.size());
  netc::data::writePlanar(win, oh, ow, c, data[3] & 1, c == 3 && data[3] & 2,
                          mean, invStd, planar.data());
  checkPixels(planar);
}

void fuzzIdx(const std::string &path) {
  netc::data::IdxArray a;
  try {
    a = netc::data::readIdx(path);
  } catch (const netc::data::IdxError &) {
    return;
  }
  uint64_t elements = 1;
  for (uint32_t d : a.dims)
    elements *= d;
  if (a.dims.empty() || a.data.size() != elements)
    finding("an IDX array whose bytes differ from its dimensions");
}

void fuzzCifar() {
  netc::data::ImageSet set;
  try {
    set = netc::data::loadCifar(workDir(), "cifar10", /*train=*/false, 10);
  } catch (const netc::data::CifarError &) {
    return;
  }
  if (set.count < 1 || set.channels != 3 || set.rows != 32 || set.cols != 32 ||
      set.images.size() != size_t(set.count * 3 * 32 * 32) ||
      set.labels.size() != size_t(set.count))
    finding("a CIFAR set whose sizes disagree");
  for (uint8_t l : set.labels)
    if (l >= 10)
      finding("a CIFAR label beyond its classes");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const std::string path = workDir() + "/" + kFileName;
  FILE *f = std::fopen(path.c_str(), "wb");
  if (!f || (size && std::fwrite(data, 1, size, f) != size) ||
      std::fclose(f) != 0) {
    std::perror(path.c_str());
    std::abort();
  }
  const std::string bytes(reinterpret_cast<const char *>(data), size);
  // The augmentation's parameters come from a hash of the input, so that a
  // mutation of the image also varies the crop, the scale and the flags.
  fuzzImage(path, bytes, netc::io::fnv1a(data, size));
  fuzzIdx(path);
  fuzzCifar();
  fuzzResample(data, size);
  return 0;
}
