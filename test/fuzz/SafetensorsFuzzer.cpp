//===- SafetensorsFuzzer.cpp - libFuzzer harness for safetensors ----------===//
//
// Writes arbitrary bytes to a file and reads it with io::readSafetensors,
// which takes a path only. The file lives in the process's own directory
// (WorkDir.h); every input overwrites the same file. The only exception the
// reader may throw is io::SafetensorsError; anything else escapes and aborts
// (a finding), as does a crash, a sanitizer report, a hang or a blow-up.
//
// A file that reads is also written back with io::writeSafetensors (into the
// same directory) and read again: the second read must give the same
// tensors, bit for bit, and the same metadata.
//
//===----------------------------------------------------------------------===//

#include "runtime/io/Safetensors.h"
#include "test/fuzz/WorkDir.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unistd.h>

namespace {

const std::string &workDir() {
  return netc::fuzz::workDir("netc-st-fuzz",
                             {"in.safetensors", "out.safetensors"});
}

bool sameFile(const netc::io::TensorFile &a, const netc::io::TensorFile &b) {
  if (a.metadata != b.metadata || a.tensors.size() != b.tensors.size())
    return false;
  for (const auto &[name, t] : a.tensors) {
    const netc::io::Tensor *u = b.find(name);
    if (!u || u->shape != t.shape || u->data.size() != t.data.size() ||
        (!t.data.empty() && std::memcmp(u->data.data(), t.data.data(),
                                        t.data.size() * sizeof(float)) != 0))
      return false;
  }
  return true;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const std::string in = workDir() + "/in.safetensors";
  FILE *f = std::fopen(in.c_str(), "wb");
  if (!f || (size && std::fwrite(data, 1, size, f) != size) ||
      std::fclose(f) != 0) {
    std::perror(in.c_str());
    std::abort();
  }
  netc::io::TensorFile file;
  try {
    file = netc::io::readSafetensors(in);
  } catch (const netc::io::SafetensorsError &) {
    return 0;
  }
  const std::string out = workDir() + "/out.safetensors";
  netc::io::writeSafetensors(out, file);
  if (!sameFile(file, netc::io::readSafetensors(out))) {
    std::fprintf(stderr, "safetensors: the written file reads differently\n");
    std::abort();
  }
  return 0;
}
