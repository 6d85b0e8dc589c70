//===- Hash.h - FNV-1a over bytes -------------------------------*- C++ -*-===//
//
// The 64-bit FNV-1a hash, for identities and seeds that must be the same
// on every machine and in every run: a parameter's initialisation seed (from
// its name), a plan's fingerprint in its checkpoints, the ranks' agreement
// on their starting parameters. Not for anything adversarial.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_IO_HASH_H
#define NETC_RUNTIME_IO_HASH_H

#include <cstddef>
#include <cstdint>

namespace netc::io {

constexpr uint64_t kFnv1aBasis = 1469598103934665603ull;

/// FNV-1a of `n` bytes at `data`, continuing from `h` (so that several
/// pieces hash as their concatenation).
inline uint64_t fnv1a(const void *data, size_t n, uint64_t h = kFnv1aBasis) {
  const auto *bytes = static_cast<const unsigned char *>(data);
  for (size_t i = 0; i < n; ++i)
    h = (h ^ bytes[i]) * 1099511628211ull;
  return h;
}

} // namespace netc::io

#endif // NETC_RUNTIME_IO_HASH_H
