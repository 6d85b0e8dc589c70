//===- Cifar.cpp - CIFAR-10 and CIFAR-100 binary batches ------------------===//

#include "runtime/data/Cifar.h"
#include "runtime/io/File.h"

#include <fmt/format.h>

#include <filesystem>
#include <optional>

namespace netc::data {

namespace {
constexpr int64_t kSide = 32, kPixels = 3 * kSide * kSide;
/// A CIFAR file above this size is refused (the largest, CIFAR-100's
/// train.bin, is 155 MB).
constexpr uint64_t kMaxFile = uint64_t(1) << 30;

struct Layout {
  const char *subdir;
  int labelBytes; ///< the class is the last label byte
  std::vector<std::string> trainFiles, testFiles;
};

Layout layoutOf(const std::string &kind) {
  if (kind == "cifar10")
    return {"cifar-10-batches-bin",
            1,
            {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
             "data_batch_4.bin", "data_batch_5.bin"},
            {"test_batch.bin"}};
  return {"cifar-100-binary", 2, {"train.bin"}, {"test.bin"}};
}

/// `dir/name`, or `dir/subdir/name` if only that exists.
std::string locate(const std::string &dir, const char *subdir,
                   const std::string &name) {
  namespace fs = std::filesystem;
  fs::path direct = fs::path(dir) / name;
  fs::path nested = fs::path(dir) / subdir / name;
  std::error_code ec;
  if (!fs::exists(direct, ec) && fs::exists(nested, ec))
    return nested.string();
  return direct.string();
}
} // namespace

bool isCifarKind(const std::string &kind) {
  return kind == "cifar10" || kind == "cifar100";
}

std::vector<std::string> cifarFiles(const std::string &dir,
                                    const std::string &kind) {
  namespace fs = std::filesystem;
  Layout layout = layoutOf(kind);
  std::vector<std::string> files;
  for (const auto *names : {&layout.trainFiles, &layout.testFiles})
    for (const std::string &name : *names) {
      files.push_back((fs::path(dir) / name).string());
      files.push_back((fs::path(dir) / layout.subdir / name).string());
    }
  return files;
}

ImageSet loadCifar(const std::string &dir, const std::string &kind, bool train,
                   int classes) {
  if (!isCifarKind(kind))
    throw CifarError(fmt::format("'{}' is not a CIFAR data kind", kind));
  Layout layout = layoutOf(kind);
  const int64_t record = layout.labelBytes + kPixels;
  ImageSet set;
  set.rows = set.cols = kSide;
  set.channels = 3;
  for (const std::string &name : train ? layout.trainFiles : layout.testFiles) {
    std::string path = locate(dir, layout.subdir, name);
    std::string bytes;
    try {
      bytes = io::readFile(path, kMaxFile);
    } catch (const io::FileError &e) {
      throw CifarError(e.what());
    }
    if (bytes.empty())
      throw CifarError(fmt::format("{}: the file is empty (a {} batch holds "
                                   "{}-byte records)",
                                   path, kind, record));
    if (int64_t(bytes.size()) % record != 0)
      throw CifarError(fmt::format("{}: {} bytes are not a whole number of "
                                   "{}-byte {} records (truncated?)",
                                   path, bytes.size(), record, kind));
    int64_t count = int64_t(bytes.size()) / record;
    set.images.reserve(size_t((set.count + count) * kPixels));
    for (int64_t r = 0; r < count; ++r) {
      const auto *rec =
          reinterpret_cast<const uint8_t *>(bytes.data()) + r * record;
      uint8_t label = rec[layout.labelBytes - 1];
      if (label >= classes)
        throw CifarError(fmt::format("{}: record {}: label {} is not below {} "
                                     "classes",
                                     path, r, label, classes));
      set.labels.push_back(label);
      set.images.insert(set.images.end(), rec + layout.labelBytes,
                        rec + record);
    }
    set.count += count;
  }
  return set;
}

} // namespace netc::data
