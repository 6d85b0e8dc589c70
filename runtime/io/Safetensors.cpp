//===- Safetensors.cpp - F32 safetensors files ----------------------------===//

#include "runtime/io/Safetensors.h"
#include "runtime/io/File.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <optional>
#include <set>
#include <string_view>
#include <tuple>

namespace netc::io {

using nlohmann::json;

/// Headers above this size are refused as corrupt (real ones are kilobytes).
static constexpr uint64_t kMaxHeader = uint64_t(100) << 20;
/// Files above this size are refused before reading (VGG-16 with momentum
/// is about 1.1 GiB).
static constexpr uint64_t kMaxFile = uint64_t(1) << 40;

namespace {
/// Parses the header, refusing a key given twice in one object (nlohmann
/// would silently keep the last).
json parseHeader(const std::string &text, const std::string &path) {
  std::vector<std::set<std::string>> keys;
  std::string duplicate;
  auto callback = [&](int depth, json::parse_event_t event, json &parsed) {
    (void)depth;
    switch (event) {
    case json::parse_event_t::object_start:
      keys.emplace_back();
      break;
    case json::parse_event_t::object_end:
      if (!keys.empty())
        keys.pop_back();
      break;
    case json::parse_event_t::key:
      if (!keys.empty() &&
          !keys.back().insert(parsed.get<std::string>()).second &&
          duplicate.empty())
        duplicate = parsed.get<std::string>();
      break;
    default:
      break;
    }
    return true;
  };
  json header;
  try {
    header = json::parse(text, callback);
  } catch (const json::exception &e) {
    // parse_error, or out_of_range for a number that overflows (1e999).
    throw SafetensorsError(
        fmt::format("{}: header is not valid JSON: {}", path, e.what()));
  }
  if (!duplicate.empty())
    throw SafetensorsError(
        fmt::format("{}: header names '{}' twice", path, duplicate));
  return header;
}
} // namespace

TensorFile readSafetensors(const std::string &path) {
  auto fail = [&](const std::string &msg) -> SafetensorsError {
    return SafetensorsError(fmt::format("{}: {}", path, msg));
  };
  std::optional<RegularFile> in;
  try {
    in.emplace(path, kMaxFile);
  } catch (const FileError &e) {
    throw SafetensorsError(e.what());
  }
  auto read = [&](uint64_t offset, void *dst, uint64_t n) {
    try {
      in->readAt(offset, dst, n);
    } catch (const FileError &e) {
      throw SafetensorsError(e.what());
    }
  };
  uint64_t size = in->size();
  if (size < 8)
    throw fail(
        fmt::format("too short for a safetensors header ({} bytes)", size));
  uint8_t lenBytes[8];
  read(0, lenBytes, 8);
  uint64_t headerLen = 0;
  for (int i = 7; i >= 0; --i)
    headerLen = headerLen << 8 | lenBytes[i];
  if (headerLen > kMaxHeader || headerLen > size - 8)
    throw fail(fmt::format("header length {} exceeds the file ({} bytes)",
                           headerLen, size));
  std::string headerText(headerLen, '\0');
  read(8, headerText.data(), headerLen);
  json header = parseHeader(headerText, path);
  if (!header.is_object())
    throw fail("header is not a JSON object");
  uint64_t dataSize = size - 8 - headerLen;
  uint64_t dataStart = 8 + headerLen;

  TensorFile file;
  // Each tensor's [begin, end), to check that the data is covered exactly
  // before any of it is read (overlapping tensors could otherwise make a
  // small file fill memory).
  std::vector<std::tuple<uint64_t, uint64_t, std::string>> spans;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string &name = it.key();
    const json &e = it.value();
    if (name == "__metadata__") {
      if (!e.is_object())
        throw fail("__metadata__ is not an object");
      // A map of strings to strings (the format's definition): a checkpoint's
      // `netc.plan` given as a number must not pass for one without it.
      for (auto m = e.begin(); m != e.end(); ++m) {
        if (!m.value().is_string())
          throw fail(fmt::format("__metadata__ '{}' is not a string", m.key()));
        file.metadata[m.key()] = m.value().get<std::string>();
      }
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
    // Element count and bytes with overflow checks: a crafted shape must not
    // wrap around to the size of the data it claims.
    uint64_t count = 1;
    bool overflow = false;
    for (const json &d : e["shape"]) {
      if (!d.is_number_unsigned() &&
          !(d.is_number_integer() && d.get<int64_t>() >= 0))
        throw bad("shape holds a non-integer or negative dimension");
      uint64_t dim = d.get<uint64_t>();
      if (dim > uint64_t(INT64_MAX))
        throw bad(fmt::format("dimension {} is out of range", dim));
      t.shape.push_back(int64_t(dim));
      overflow |= __builtin_mul_overflow(count, dim, &count);
    }
    uint64_t bytes = 0;
    overflow |= __builtin_mul_overflow(count, uint64_t(4), &bytes);
    const json &off = e["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
        !off[1].is_number_unsigned())
      throw bad("data_offsets is not [begin, end]");
    uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    if (begin > end || end > dataSize)
      throw bad(fmt::format("data_offsets [{}, {}] are outside the data "
                            "({} bytes; truncated file?)",
                            begin, end, dataSize));
    if (overflow)
      throw bad(fmt::format("shape [{}] is too large (its size overflows)",
                            fmt::join(t.shape, ", ")));
    if (end - begin != bytes)
      throw bad(fmt::format("shape [{}] needs {} bytes but data_offsets span "
                            "{}",
                            fmt::join(t.shape, ", "), bytes, end - begin));
    spans.emplace_back(begin, end, name);
    file.tensors.emplace(name, std::move(t));
  }
  // The format covers the data exactly once, in no particular order: two
  // tensors sharing bytes, or bytes no tensor owns, are a damaged or crafted
  // file (one tensor's write would change another; a hole can hide another
  // file's contents), which its reference readers refuse as well.
  std::sort(spans.begin(), spans.end());
  uint64_t covered = 0;
  std::string previous;
  for (const auto &[begin, end, name] : spans) {
    if (begin < covered)
      throw fail(fmt::format("tensors '{}' and '{}' overlap in the data "
                             "(bytes {} to {})",
                             previous, name, begin, covered));
    if (begin > covered)
      throw fail(fmt::format("bytes {} to {} of the data belong to no tensor",
                             covered, begin));
    covered = end;
    previous = name;
  }
  if (covered != dataSize)
    throw fail(fmt::format("bytes {} to {} of the data belong to no tensor "
                           "(after the last one)",
                           covered, dataSize));
  // Bounded by the file's size, which may still exceed memory.
  if (std::optional<uint64_t> avail = availableMemoryBytes();
      avail && dataSize > *avail)
    throw fail(fmt::format("{} of data need more than the {} of memory "
                           "available",
                           formatBytes(dataSize), formatBytes(*avail)));
  for (const auto &[begin, end, name] : spans) {
    Tensor &t = file.tensors.at(name);
    t.data.resize((end - begin) / sizeof(float)); // (its shape's, checked)
    read(dataStart + begin, t.data.data(), end - begin);
  }
  return file;
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
  std::vector<std::string_view> pieces{{reinterpret_cast<const char *>(len), 8},
                                       text};
  for (auto &[name, t] : file.tensors)
    pieces.emplace_back(reinterpret_cast<const char *>(t.data.data()),
                        t.data.size() * 4);
  try {
    writeFileAtomically(path, pieces);
  } catch (const FileError &e) {
    throw SafetensorsError(e.what());
  }
}

} // namespace netc::io
