//===- Safetensors.cpp - F32 safetensors files ----------------------------===//

#include "runtime/io/Safetensors.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <fcntl.h>
#include <unistd.h>

namespace netc::io {

using nlohmann::json;

/// Headers above this size are refused as corrupt (real ones are kilobytes).
static constexpr uint64_t kMaxHeader = uint64_t(100) << 20;

TensorFile readSafetensors(const std::string &path) {
  auto fail = [&](const std::string &msg) -> SafetensorsError {
    return SafetensorsError(fmt::format("{}: {}", path, msg));
  };
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw fail(std::filesystem::exists(path) ? "cannot open" : "no such file");
  in.seekg(0, std::ios::end);
  uint64_t size = uint64_t(in.tellg());
  in.seekg(0);
  if (size < 8)
    throw fail(
        fmt::format("too short for a safetensors header ({} bytes)", size));
  uint8_t lenBytes[8];
  in.read(reinterpret_cast<char *>(lenBytes), 8);
  uint64_t headerLen = 0;
  for (int i = 7; i >= 0; --i)
    headerLen = headerLen << 8 | lenBytes[i];
  if (headerLen > kMaxHeader || headerLen > size - 8)
    throw fail(fmt::format("header length {} exceeds the file ({} bytes)",
                           headerLen, size));
  std::string headerText(headerLen, '\0');
  in.read(headerText.data(), std::streamsize(headerLen));
  if (!in)
    throw fail("cannot read the header");
  json header;
  try {
    header = json::parse(headerText);
  } catch (const json::parse_error &e) {
    throw fail(fmt::format("header is not valid JSON: {}", e.what()));
  }
  if (!header.is_object())
    throw fail("header is not a JSON object");
  uint64_t dataSize = size - 8 - headerLen;
  uint64_t dataStart = 8 + headerLen;

  TensorFile file;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string &name = it.key();
    const json &e = it.value();
    if (name == "__metadata__") {
      if (!e.is_object())
        throw fail("__metadata__ is not an object");
      for (auto m = e.begin(); m != e.end(); ++m)
        if (m.value().is_string())
          file.metadata[m.key()] = m.value().get<std::string>();
      continue;
    }
    auto bad = [&](const std::string &msg) {
      return fail(fmt::format("tensor '{}': {}", name, msg));
    };
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") ||
        !e.contains("data_offsets"))
      throw bad("needs dtype, shape and data_offsets");
    if (!e["dtype"].is_string())
      throw bad("dtype is not a string");
    std::string dtype = e["dtype"].get<std::string>();
    if (dtype != "F32")
      throw bad(fmt::format("dtype {} is not supported (only F32)", dtype));
    Tensor t;
    if (!e["shape"].is_array())
      throw bad("shape is not an array");
    uint64_t count = 1;
    for (const json &d : e["shape"]) {
      if (!d.is_number_unsigned() &&
          !(d.is_number_integer() && d.get<int64_t>() >= 0))
        throw bad("shape holds a non-integer or negative dimension");
      t.shape.push_back(d.get<int64_t>());
      count *= uint64_t(t.shape.back());
      if (count > dataSize)
        break;
    }
    const json &off = e["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
        !off[1].is_number_unsigned())
      throw bad("data_offsets is not [begin, end]");
    uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    if (begin > end || end > dataSize)
      throw bad(fmt::format("data_offsets [{}, {}] are outside the data "
                            "({} bytes; truncated file?)",
                            begin, end, dataSize));
    if (end - begin != count * 4)
      throw bad(fmt::format("shape [{}] needs {} bytes but data_offsets span "
                            "{}",
                            fmt::join(t.shape, ", "), count * 4, end - begin));
    t.data.resize(count);
    in.seekg(std::streamoff(dataStart + begin));
    in.read(reinterpret_cast<char *>(t.data.data()),
            std::streamsize(count * 4));
    if (!in)
      throw bad("cannot read the data");
    file.tensors.emplace(name, std::move(t));
  }
  return file;
}

static void writeAll(int fd, const char *data, size_t n,
                     const std::string &path) {
  while (n > 0) {
    ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      throw SafetensorsError(
          fmt::format("{}: write failed: {}", path, std::strerror(errno)));
    }
    data += w;
    n -= size_t(w);
  }
}

/// Writes the pieces to `path` atomically.
static void
writeAtomic(const std::string &path,
            const std::vector<std::pair<const char *, size_t>> &parts) {
  namespace fs = std::filesystem;
  fs::path target(path);
  fs::path dir =
      target.parent_path().empty() ? fs::path(".") : target.parent_path();
  std::string tmp = (dir / ("." + target.filename().string() + ".tmp." +
                            std::to_string(::getpid())))
                        .string();
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    throw SafetensorsError(fmt::format("{}: cannot create {}: {}", path, tmp,
                                       std::strerror(errno)));
  try {
    for (auto &[data, n] : parts)
      writeAll(fd, data, n, path);
    if (::fsync(fd) != 0)
      throw SafetensorsError(
          fmt::format("{}: fsync failed: {}", path, std::strerror(errno)));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    throw SafetensorsError(
        fmt::format("{}: close failed: {}", path, std::strerror(errno)));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw SafetensorsError(
        fmt::format("{}: rename failed: {}", path, std::strerror(err)));
  }
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

void writeFileAtomic(const std::string &path, const std::string &text) {
  writeAtomic(path, {{text.data(), text.size()}});
}

void writeSafetensors(const std::string &path, const TensorFile &file) {
  json header = json::object();
  uint64_t offset = 0;
  for (auto &[name, t] : file.tensors) {
    if (uint64_t(t.count()) != t.data.size())
      throw SafetensorsError(
          fmt::format("{}: tensor '{}' has {} values for shape [{}]", path,
                      name, t.data.size(), fmt::join(t.shape, ", ")));
    uint64_t bytes = t.data.size() * 4;
    header[name] = {{"dtype", "F32"},
                    {"shape", t.shape},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  if (!file.metadata.empty())
    header["__metadata__"] = file.metadata;
  std::string text = header.dump();
  // Pad the header with spaces so the data starts 8-byte aligned.
  while ((8 + text.size()) % 8 != 0)
    text.push_back(' ');
  uint8_t len[8];
  for (int i = 0; i < 8; ++i)
    len[i] = uint8_t(uint64_t(text.size()) >> (8 * i));
  std::vector<std::pair<const char *, size_t>> parts;
  parts.push_back({reinterpret_cast<const char *>(len), 8});
  parts.push_back({text.data(), text.size()});
  for (auto &[name, t] : file.tensors)
    parts.push_back(
        {reinterpret_cast<const char *>(t.data.data()), t.data.size() * 4});
  writeAtomic(path, parts);
}

} // namespace netc::io
