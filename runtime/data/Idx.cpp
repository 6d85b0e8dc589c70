//===- Idx.cpp - IDX data files -------------------------------------------===//

#include "runtime/data/Idx.h"
#include "runtime/io/File.h"

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <optional>

#include <unistd.h>

namespace netc::data {

/// IDX files (compressed or not) above this size, and headers promising
/// more values, are refused (Fashion-MNIST's largest is 47 MiB inflated).
static constexpr uint64_t kMaxIdxBytes = uint64_t(4) << 30;

namespace {

/// A file read through zlib, which inflates gzip and passes plain files
/// through unchanged; regular files only, bounded in size.
class GzReader {
public:
  explicit GzReader(const std::string &path) : path_(path) {
    std::optional<io::RegularFile> in;
    try {
      in.emplace(path, kMaxIdxBytes);
    } catch (const io::FileError &e) {
      throw IdxError(e.what());
    }
    int fd = ::dup(in->fd());
    file_ = fd < 0 ? nullptr : gzdopen(fd, "rb");
    if (!file_) {
      if (fd >= 0)
        ::close(fd);
      throw IdxError(fmt::format("{}: cannot open", path));
    }
  }
  ~GzReader() { gzclose(file_); }
  GzReader(const GzReader &) = delete;
  GzReader &operator=(const GzReader &) = delete;

  /// Up to `n` bytes into `dst`; fewer only at the end of the data.
  uint64_t read(uint8_t *dst, uint64_t n) {
    uint64_t done = 0;
    while (done < n) {
      const unsigned chunk = unsigned(std::min<uint64_t>(n - done, 1u << 30));
      int got = gzread(file_, dst + done, chunk);
      if (got < 0) {
        int code = 0;
        const char *msg = gzerror(file_, &code);
        throw IdxError(
            fmt::format("{}: corrupt compressed data ({})", path_, msg));
      }
      if (got == 0)
        break;
      done += uint64_t(got);
    }
    return done;
  }

private:
  std::string path_;
  gzFile file_ = nullptr;
};

} // namespace

IdxArray readIdx(const std::string &path) {
  // The header first, then exactly the values it promises: a small
  // compressed file that inflates to gigabytes is refused after one byte
  // more than its header promised, not after inflating all of it.
  GzReader in(path);
  uint8_t head[4 + 4 * 4];
  const uint64_t got = in.read(head, 4);
  if (got < 4)
    throw IdxError(
        fmt::format("{}: too short for an IDX header ({} bytes)", path, got));
  if (head[0] != 0 || head[1] != 0)
    throw IdxError(fmt::format("{}: not an IDX file (bad magic)", path));
  if (head[2] != 0x08)
    throw IdxError(fmt::format(
        "{}: IDX element type 0x{:02x} is not supported (only unsigned bytes)",
        path, head[2]));
  unsigned rank = head[3];
  if (rank < 1 || rank > 4)
    throw IdxError(fmt::format("{}: IDX rank {} is not supported", path, rank));
  if (in.read(head + 4, 4 * rank) < 4 * rank)
    throw IdxError(fmt::format("{}: truncated IDX header", path));
  IdxArray array;
  uint64_t elements = 1;
  for (unsigned i = 0; i < rank; ++i) {
    const uint8_t *p = &head[4 + 4 * i];
    uint32_t dim = uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 |
                   uint32_t(p[2]) << 8 | uint32_t(p[3]);
    array.dims.push_back(dim);
    if (__builtin_mul_overflow(elements, uint64_t(dim), &elements))
      throw IdxError(fmt::format("{}: header dimensions overflow", path));
  }
  if (elements > kMaxIdxBytes)
    throw IdxError(fmt::format("{}: header promises {} values, more than "
                               "the {} an IDX file may hold",
                               path, elements, io::formatBytes(kMaxIdxBytes)));
  // The buffer grows as values arrive (doubling, from 1 MiB), so a tiny
  // file whose header promises gigabytes is refused for what it holds, not
  // after gigabytes were allocated.
  uint64_t values = 0;
  while (values < elements) {
    const uint64_t step =
        std::min(elements - values, std::max<uint64_t>(values, 1u << 20));
    try {
      array.data.resize(size_t(values + step));
    } catch (const std::bad_alloc &) {
      throw IdxError(fmt::format("{}: no memory for the {} values its header "
                                 "promises",
                                 path, elements));
    }
    const uint64_t got = in.read(array.data.data() + values, step);
    values += got;
    if (got < step)
      break;
  }
  if (values < elements)
    throw IdxError(fmt::format("{}: header promises {} values but the file "
                               "holds {}",
                               path, elements, values));
  uint8_t extra;
  if (in.read(&extra, 1) != 0)
    throw IdxError(fmt::format("{}: header promises {} values but the file "
                               "holds more",
                               path, elements));
  return array;
}

/// `<dir>/<name>` or `<dir>/<name>.gz`, whichever exists.
static std::string findIdx(const std::string &dir, const std::string &name) {
  std::error_code ec;
  if (std::filesystem::exists(dir, ec) &&
      !std::filesystem::is_directory(dir, ec))
    throw IdxError(fmt::format("{}: not a folder (the data folder holds "
                               "the IDX files)",
                               dir));
  std::filesystem::path base = std::filesystem::path(dir) / name;
  if (std::filesystem::exists(base))
    return base.string();
  std::string gz = base.string() + ".gz";
  if (std::filesystem::exists(gz))
    return gz;
  throw IdxError(fmt::format("{}: no such file (nor {}.gz)", base.string(),
                             base.filename().string()));
}

std::vector<std::string> idxFiles(const std::string &dir) {
  std::vector<std::string> files;
  for (const char *prefix : {"train", "t10k"})
    for (const char *what : {"-images-idx3-ubyte", "-labels-idx1-ubyte"})
      for (const char *gz : {"", ".gz"})
        files.push_back(
            (std::filesystem::path(dir) / (prefix + std::string(what) + gz))
                .string());
  return files;
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
  // An empty set has no error rate to measure (it read as 0.00%) and no
  // batch to train on.
  if (images.dims[0] == 0)
    throw IdxError(fmt::format("{}: the file holds no images", imagesPath));
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
