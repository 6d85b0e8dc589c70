//===- Safetensors.h - F32 safetensors files --------------------*- C++ -*-===//
//
// The safetensors layout: an 8-byte little-endian header length, a JSON
// header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__":
// {...}}, then the data. Only F32 tensors are read or written. Reading
// validates the header length, the JSON, every entry's dtype, shape and
// offsets against the data size; every problem is a SafetensorsError naming
// the file and the problem. Writing is atomic: a temporary file in the same
// folder, fsync, rename, fsync of the folder.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_IO_SAFETENSORS_H
#define NETC_RUNTIME_IO_SAFETENSORS_H

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace netc::io {

class SafetensorsError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
  int64_t count() const {
    int64_t c = 1;
    for (int64_t d : shape)
      c *= d;
    return c;
  }
};

struct TensorFile {
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> metadata;
  const Tensor *find(const std::string &name) const {
    auto it = tensors.find(name);
    return it == tensors.end() ? nullptr : &it->second;
  }
};

/// Reads every tensor of `path`.
TensorFile readSafetensors(const std::string &path);

/// Writes `file` to `path` atomically (tensors in name order).
void writeSafetensors(const std::string &path, const TensorFile &file);

} // namespace netc::io

#endif // NETC_RUNTIME_IO_SAFETENSORS_H
