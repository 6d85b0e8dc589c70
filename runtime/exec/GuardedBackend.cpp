//===- GuardedBackend.cpp - the reference backend under a device's rules --===//

#include "runtime/exec/GuardedBackend.h"
#include "runtime/io/File.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <utility>

#include <sys/mman.h>
#include <unistd.h>

namespace netc::exec {

using kernels::KernelError;

GuardedBackend::~GuardedBackend() { drain(); }

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
    drain(); // queued work may still write it
    auto it = regions_.find(q);
    ::munmap(q, it->second);
    regions_.erase(it);
  });
}

std::unique_ptr<Buffer>
GuardedBackend::allocateStaging(uint64_t bytes, const std::string &what) {
  // Memory's host memory, its range remembered while it lives.
  std::shared_ptr<Buffer> host = Memory::allocateStaging(bytes, what);
  void *p = host->data();
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  staging_[p] = size_t(host->bytes());
  return std::make_unique<Buffer>(
      p, host->bytes(), /*host=*/true, [this, host](void *q) mutable {
        std::lock_guard<std::recursive_mutex> lock(mutex_);
        drain(); // a queued upload may still read it
        // Aside copies from it not yet joined cannot be checked any more.
        auto *lo = static_cast<const uint8_t *>(q);
        for (auto *list : {&asideIssued_, &asideJoined_})
          list->erase(std::remove_if(list->begin(), list->end(),
                                     [&](const AsideSource &a) {
                                       auto *p =
                                           static_cast<const uint8_t *>(a.src);
                                       return p >= lo && p < lo + staging_[q];
                                     }),
                      list->end());
        staging_.erase(q);
        host.reset();
      });
}

bool GuardedBackend::inStaging(const void *p, uint64_t bytes) const {
  auto a = reinterpret_cast<uintptr_t>(p);
  auto it = staging_.upper_bound(const_cast<void *>(p));
  if (it == staging_.begin())
    return false;
  --it;
  auto lo = reinterpret_cast<uintptr_t>(it->first);
  return a >= lo && a + bytes <= lo + it->second;
}

void GuardedBackend::upload(void *dst, const void *src, uint64_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (!bytes || dst == src)
    return;
  if (inStaging(src, bytes)) {
    // Page-locked on a GPU: the copy reads it later, so must this one.
    queue_.push_back([=] { std::memmove(dst, src, size_t(bytes)); });
    return;
  }
  // Pageable memory: CUDA has read it when cudaMemcpyAsync returns.
  auto copy = std::make_shared<std::vector<uint8_t>>(
      static_cast<const uint8_t *>(src),
      static_cast<const uint8_t *>(src) + bytes);
  queue_.push_back([=] { std::memcpy(dst, copy->data(), size_t(bytes)); });
}

void GuardedBackend::uploadAside(void *dst, const void *src, uint64_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (!bytes || !inStaging(src, bytes)) {
    upload(dst, src, bytes);
    return;
  }
  // In flight from now until the join: 0xff bytes (NaNs, label -1) for
  // whatever reads it in between, the work queued so far included.
  const bool wasOpen = open_;
  setAccess(true);
  std::memset(dst, 0xff, size_t(bytes));
  setAccess(wasOpen);
  auto *p = static_cast<const uint8_t *>(src);
  asideIssued_.push_back(
      {src, dst, std::make_shared<std::vector<uint8_t>>(p, p + bytes)});
}

void GuardedBackend::awaitAside() {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  for (const AsideSource &a : asideIssued_) {
    // Landed at the join, in queue order, as read when issued (the source
    // is checked at the next wait to be unchanged, so it is the same).
    void *dst = a.dst;
    std::shared_ptr<std::vector<uint8_t>> bytes = a.bytes;
    queue_.push_back(
        [dst, bytes] { std::memcpy(dst, bytes->data(), bytes->size()); });
    asideJoined_.push_back(a);
  }
  asideIssued_.clear();
}

void GuardedBackend::checkAsideSources() {
  std::vector<AsideSource> joined;
  joined.swap(asideJoined_);
  for (const AsideSource &a : joined)
    if (std::memcmp(a.src, a.bytes->data(), a.bytes->size()) != 0)
      throw std::logic_error(fmt::format(
          "guarded backend: the staging memory of an upload beside the "
          "kernels ({} bytes) changed before the wait that follows "
          "awaitAside(); a device's copy stream may read it until then",
          a.bytes->size()));
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

void GuardedBackend::storeFrom(void *dst, const kernels::Storage &s,
                               const kernels::Dims4 &d, const void *src) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  queue_.push_back([=] {
    kernels::toStorage(d, s, static_cast<const uint32_t *>(src), dst);
  });
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
  // The call by value (its operands, shapes and state), and the step's
  // context too: a device kernel takes it when it is enqueued, and a later
  // run() of the executor rewrites the executor's. What else it refers to
  // (the kernel, its attributes) outlives the queue, which the executor's
  // next wait or its forgetProgram runs.
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  queue_.push_back([this, call, ctx = call.ctx] {
    const KernelCall c{call.kernel, call.attrs, call.in,
                       call.out,    call.n,     ctx,
                       call.param,  call.state, call.workspace};
    // The arena bytes free around the kernel are its to scribble on, as
    // the cuda backend's convolutions do (their workspaces, padded maps):
    // filled with 0xff bytes (NaN in f32 and bf16 values) before and
    // after, a span that holds a live value changes the results.
    if (call.freeArena)
      std::memset(call.freeArena, 0xff, call.freeArenaBytes);
    try {
      ReferenceBackend::run(c);
      if (call.freeArena)
        std::memset(call.freeArena, 0xff, call.freeArenaBytes);
    } catch (const KernelError &e) {
      // Run at a wait, not where the executor names the kernel: named here.
      throw namedKernelError(call.kernel, e);
    }
  });
}

void GuardedBackend::forgetProgram(const void *) { drain(); }

void GuardedBackend::drain() noexcept {
  try {
    flush();
  } catch (...) {
    // As a stream's error, it is reported at the host's next wait.
    if (!pending_)
      pending_ = std::current_exception();
  }
}

void GuardedBackend::flush() {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (pending_) {
    // The queue behind a failed kernel was dropped with it, as a failed
    // stream's is: this wait reports the failure.
    std::exception_ptr e = pending_;
    pending_ = nullptr;
    std::rethrow_exception(e);
  }
  try {
    checkAsideSources();
  } catch (...) {
    queue_.clear(); // dropped, as a failed stream's work is
    throw;
  }
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
