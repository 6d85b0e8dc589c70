//===- Idx.cpp - IDX data files -------------------------------------------===//

#include "runtime/data/Idx.h"
#include "runtime/io/File.h"

#include <fmt/format.h>
#include <zlib.h>

#include <filesystem>
#include <memory>
#include <optional>

#include <unistd.h>

namespace netc::data {

/// IDX files (compressed or not) above this size, and their inflated
/// contents, are refused (Fashion-MNIST's largest is 47 MiB inflated).
static constexpr uint64_t kMaxIdxBytes = uint64_t(4) << 30;

/// Reads a whole file, inflating it if it is gzip (zlib passes plain files
/// through unchanged). Regular files only, bounded before and after inflating.
static std::vector<uint8_t> readMaybeGzip(const std::string &path) {
  std::optional<io::RegularFile> in;
  try {
    in.emplace(path, kMaxIdxBytes);
  } catch (const io::FileError &e) {
    throw IdxError(e.what());
  }
  int fd = ::dup(in->fd());
  gzFile file = fd < 0 ? nullptr : gzdopen(fd, "rb");
  if (!file) {
    if (fd >= 0)
      ::close(fd);
    throw IdxError(fmt::format("{}: cannot open", path));
  }
  std::unique_ptr<gzFile_s, int (*)(gzFile)> guard(file, gzclose);
  std::vector<uint8_t> bytes;
  uint8_t buffer[1 << 16];
  for (;;) {
    int n = gzread(file, buffer, sizeof(buffer));
    if (n < 0) {
      int code = 0;
      const char *msg = gzerror(file, &code);
      throw IdxError(
          fmt::format("{}: corrupt compressed data ({})", path, msg));
    }
    if (n == 0)
      break;
    if (bytes.size() + size_t(n) > kMaxIdxBytes)
      throw IdxError(fmt::format("{}: inflates to more than {}", path,
                                 io::formatBytes(kMaxIdxBytes)));
    bytes.insert(bytes.end(), buffer, buffer + n);
  }
  return bytes;
}

IdxArray readIdx(const std::string &path) {
  std::vector<uint8_t> bytes = readMaybeGzip(path);
  if (bytes.size() < 4)
    throw IdxError(fmt::format("{}: too short for an IDX header ({} bytes)",
                               path, bytes.size()));
  if (bytes[0] != 0 || bytes[1] != 0)
    throw IdxError(fmt::format("{}: not an IDX file (bad magic)", path));
  if (bytes[2] != 0x08)
    throw IdxError(fmt::format(
        "{}: IDX element type 0x{:02x} is not supported (only unsigned bytes)",
        path, bytes[2]));
  unsigned rank = bytes[3];
  if (rank < 1 || rank > 4)
    throw IdxError(fmt::format("{}: IDX rank {} is not supported", path, rank));
  if (bytes.size() < 4 + 4 * size_t(rank))
    throw IdxError(fmt::format("{}: truncated IDX header", path));
  IdxArray array;
  uint64_t elements = 1;
  for (unsigned i = 0; i < rank; ++i) {
    const uint8_t *p = &bytes[4 + 4 * i];
    uint32_t dim = uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 |
                   uint32_t(p[2]) << 8 | uint32_t(p[3]);
    array.dims.push_back(dim);
    if (__builtin_mul_overflow(elements, uint64_t(dim), &elements))
      throw IdxError(fmt::format("{}: header dimensions overflow", path));
  }
  size_t offset = 4 + 4 * size_t(rank);
  if (bytes.size() - offset != elements)
    throw IdxError(fmt::format("{}: header promises {} values but the file "
                               "holds {}",
                               path, elements, bytes.size() - offset));
  array.data.assign(bytes.begin() + offset, bytes.end());
  return array;
}

/// `<dir>/<name>` or `<dir>/<name>.gz`, whichever exists.
static std::string findIdx(const std::string &dir, const std::string &name) {
  std::filesystem::path base = std::filesystem::path(dir) / name;
  if (std::filesystem::exists(base))
    return base.string();
  std::string gz = base.string() + ".gz";
  if (std::filesystem::exists(gz))
    return gz;
  throw IdxError(fmt::format("{}: no such file (nor {}.gz)", base.string(),
                             base.filename().string()));
}

ImageSet loadIdxImageSet(const std::string &dir, const std::string &prefix,
                         int classes) {
  std::string imagesPath = findIdx(dir, prefix + "-images-idx3-ubyte");
  std::string labelsPath = findIdx(dir, prefix + "-labels-idx1-ubyte");
  IdxArray images = readIdx(imagesPath);
  IdxArray labels = readIdx(labelsPath);
  if (images.dims.size() != 3)
    throw IdxError(
        fmt::format("{}: expected images [n, rows, cols], got rank {}",
                    imagesPath, images.dims.size()));
  if (labels.dims.size() != 1)
    throw IdxError(fmt::format("{}: expected labels [n], got rank {}",
                               labelsPath, labels.dims.size()));
  if (images.dims[0] != labels.dims[0])
    throw IdxError(fmt::format("{} holds {} images but {} holds {} labels",
                               imagesPath, images.dims[0], labelsPath,
                               labels.dims[0]));
  for (size_t i = 0; i < labels.data.size(); ++i)
    if (labels.data[i] >= classes)
      throw IdxError(fmt::format("{}: label {} at index {} is not below {} "
                                 "classes",
                                 labelsPath, labels.data[i], i, classes));
  ImageSet set;
  set.count = images.dims[0];
  set.rows = images.dims[1];
  set.cols = images.dims[2];
  set.images = std::move(images.data);
  set.labels = std::move(labels.data);
  return set;
}

} // namespace netc::data
