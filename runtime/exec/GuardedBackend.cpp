//===- GuardedBackend.cpp - the reference backend under a device's rules --===//

#include "runtime/exec/GuardedBackend.h"
#include "runtime/io/File.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include <sys/mman.h>
#include <unistd.h>

namespace netc::exec {

using kernels::KernelError;

GuardedBackend::~GuardedBackend() {
  try {
    flush();
  } catch (...) {
    // A kernel's error was the caller's to see at its last wait.
  }
}

std::unique_ptr<Buffer> GuardedBackend::allocate(uint64_t bytes,
                                                 const std::string &what) {
  reserveHostBytes(bytes, what);
  const uint64_t page = uint64_t(::sysconf(_SC_PAGESIZE));
  const uint64_t mapped =
      std::max<uint64_t>(1, (bytes + page - 1) / page) * page;
  if (mapped < bytes)
    throw MemoryError(
        fmt::format("{}: {} bytes cannot be allocated", what, bytes));
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  // Anonymous mappings are zeroed, as allocate() promises.
  void *p = ::mmap(nullptr, size_t(mapped),
                   open_ ? PROT_READ | PROT_WRITE : PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    throw MemoryError(fmt::format("{}: cannot map {} ({} bytes)", what,
                                  io::formatBytes(bytes), bytes));
  regions_[p] = size_t(mapped);
  return track(p, bytes, /*host=*/false, [this](void *q) {
    std::lock_guard<std::recursive_mutex> lock(mutex_);
    try {
      flush(); // queued work may still write it
    } catch (...) {
      // Reported at the caller's wait; a release must not throw.
    }
    auto it = regions_.find(q);
    ::munmap(q, it->second);
    regions_.erase(it);
  });
}

void GuardedBackend::upload(void *dst, const void *src, uint64_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (bytes && dst != src)
    queue_.push_back([=] { std::memmove(dst, src, size_t(bytes)); });
}

void GuardedBackend::download(void *dst, const void *src, uint64_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  flush();
  setAccess(true);
  if (bytes && dst != src)
    std::memmove(dst, src, size_t(bytes));
  setAccess(false);
}

void GuardedBackend::copy(void *dst, const void *src, uint64_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (bytes && dst != src)
    queue_.push_back([=] { std::memmove(dst, src, size_t(bytes)); });
}

void GuardedBackend::zero(void *dst, uint64_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (bytes)
    queue_.push_back([=] { std::memset(dst, 0, size_t(bytes)); });
}

void GuardedBackend::synchronize() { flush(); }

std::unique_ptr<KernelState> GuardedBackend::prepare(const KernelCall &call) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  flush();
  setAccess(true);
  std::unique_ptr<KernelState> s;
  try {
    s = ReferenceBackend::prepare(call);
  } catch (...) {
    setAccess(false);
    throw;
  }
  setAccess(false);
  return s;
}

void GuardedBackend::run(const KernelCall &call) {
  // The call by value (its operands, shapes and state); what it refers to
  // (the kernel, its attributes, the step's context) outlives the queue,
  // which the executor's next wait or its forgetProgram runs.
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  queue_.push_back([this, call] {
    try {
      ReferenceBackend::run(call);
    } catch (const KernelError &e) {
      // Run at a wait, not where the executor names the kernel: named here.
      throw KernelError(fmt::format("{}: '{}': {}", call.kernel.path,
                                    plan::opName(call.kernel.op), e.what()));
    }
  });
}

void GuardedBackend::forgetProgram(const void *) { flush(); }

void GuardedBackend::flush() {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (queue_.empty())
    return;
  std::vector<std::function<void()>> work;
  work.swap(queue_);
  setAccess(true);
  try {
    for (const std::function<void()> &f : work)
      f();
  } catch (...) {
    setAccess(false);
    throw; // the rest of the queue is dropped, as a failed stream's is
  }
  setAccess(false);
}

void GuardedBackend::setAccess(bool open) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  open_ = open;
  for (const auto &[p, bytes] : regions_)
    if (::mprotect(p, bytes, open ? PROT_READ | PROT_WRITE : PROT_NONE) != 0)
      throw std::runtime_error(
          fmt::format("guarded backend: mprotect: {}", std::strerror(errno)));
}

} // namespace netc::exec
