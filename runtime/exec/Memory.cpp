//===- Memory.cpp - memory a backend owns ---------------------------------===//

#include "runtime/exec/Memory.h"
#include "runtime/io/File.h"

#include <fmt/format.h>

#include <cstdlib>
#include <cstring>

namespace netc::exec {

void reserveHostBytes(uint64_t bytes, const std::string &what) {
  std::optional<uint64_t> avail = io::availableMemoryBytes();
  if (avail && bytes > *avail)
    throw MemoryError(fmt::format("{} needs {} ({} bytes) but only {} of "
                                  "memory is available",
                                  what, io::formatBytes(bytes), bytes,
                                  io::formatBytes(*avail)));
}

std::unique_ptr<Buffer> Memory::allocate(uint64_t bytes,
                                         const std::string &what) {
  reserveHostBytes(bytes, what);
  // 64-byte aligned (cache lines, SIMD), at least one line, zeroed.
  uint64_t rounded = (bytes + 63) / 64 * 64;
  if (rounded < bytes)
    throw MemoryError(
        fmt::format("{}: {} bytes cannot be allocated", what, bytes));
  void *p = std::aligned_alloc(64, size_t(rounded ? rounded : 64));
  if (!p)
    throw MemoryError(fmt::format("{}: cannot allocate {} ({} bytes)", what,
                                  io::formatBytes(bytes), bytes));
  std::memset(p, 0, size_t(rounded ? rounded : 64));
  return track(p, bytes, /*host=*/true, [](void *q) { std::free(q); });
}

std::unique_ptr<Buffer> Memory::track(void *data, uint64_t bytes, bool host,
                                      std::function<void(void *)> release) {
  uint64_t now = allocated_ += bytes;
  uint64_t peak = peak_.load();
  while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
  }
  return std::make_unique<Buffer>(
      data, bytes, host, [this, bytes, release = std::move(release)](void *q) {
        allocated_ -= bytes;
        release(q);
      });
}

std::unique_ptr<Buffer> Memory::allocateStaging(uint64_t bytes,
                                                const std::string &what) {
  return Memory::allocate(bytes, what);
}

void Memory::upload(void *dst, const void *src, uint64_t bytes) {
  if (bytes && dst != src)
    std::memmove(dst, src, size_t(bytes));
}

void Memory::download(void *dst, const void *src, uint64_t bytes) {
  if (bytes && dst != src)
    std::memmove(dst, src, size_t(bytes));
}

void Memory::copy(void *dst, const void *src, uint64_t bytes) {
  if (bytes && dst != src)
    std::memmove(dst, src, size_t(bytes));
}

void Memory::zero(void *dst, uint64_t bytes) {
  if (bytes)
    std::memset(dst, 0, size_t(bytes));
}

Memory &hostMemory() {
  static Memory memory;
  return memory;
}

} // namespace netc::exec
