//===- Memory.h - memory a backend owns -------------------------*- C++ -*-===//
//
// Every value a step reads or writes lives in memory its backend allocated:
// the program arenas, the parameters and their momentum, the kept copies of
// outputs. The trainer and netrun never touch those bytes directly; they
// upload inputs and download outputs through the backend's Memory, so that a
// backend whose memory is on a device (cuda) fits the same interface as the
// host backends (reference, cpu), whose memory is plain host memory.
//
// Ordering: uploads, copies and kernels run in the order they are issued on
// the backend's stream; download() waits for everything issued before it.
// An upload from staging memory (allocateStaging: page-locked on a GPU) may
// read its source until the next download() or synchronize(), so the source
// must stay unchanged until then (the trainer rotates three staging areas
// for that); one from other host memory has read it when upload()
// returns, as CUDA's copies from pageable memory have. uploadAside() copies
// beside that order, until awaitAside() joins it.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_EXEC_MEMORY_H
#define NETC_RUNTIME_EXEC_MEMORY_H

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace netc::exec {

/// Memory could not be had; the message names what it was for, the bytes it
/// needed and the bytes available.
class MemoryError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// A block of a backend's memory, released when destroyed.
class Buffer {
public:
  Buffer(void *data, uint64_t bytes, bool host,
         std::function<void(void *)> release)
      : data_(data), bytes_(bytes), host_(host), release_(std::move(release)) {}
  ~Buffer() {
    if (release_)
      release_(data_);
  }
  Buffer(const Buffer &) = delete;
  Buffer &operator=(const Buffer &) = delete;

  /// The backend's address of the first byte (a device pointer on a GPU).
  void *data() const { return data_; }
  uint64_t bytes() const { return bytes_; }
  /// Whether the host can read and write data() directly.
  bool isHost() const { return host_; }

private:
  void *data_;
  uint64_t bytes_;
  bool host_;
  std::function<void(void *)> release_;
};

/// Allocation and transfers of one backend. The defaults are host memory
/// (64-byte aligned, zeroed) and memcpy: what the reference and cpu backends
/// use.
class Memory {
public:
  virtual ~Memory() = default;

  /// Whether allocate() returns host-addressable memory.
  virtual bool isHost() const { return true; }
  /// `bytes` of zeroed backend memory; a MemoryError naming `what` if they
  /// cannot be had.
  virtual std::unique_ptr<Buffer> allocate(uint64_t bytes,
                                           const std::string &what);
  /// Host memory to stage uploads from (page-locked on a GPU, so that the
  /// copies can overlap compute).
  virtual std::unique_ptr<Buffer> allocateStaging(uint64_t bytes,
                                                  const std::string &what);
  /// Host -> backend, ordered before later kernels.
  virtual void upload(void *dst, const void *src, uint64_t bytes);
  /// Host (staging memory) -> backend beside the kernels (on a GPU, a copy
  /// stream), so that the next step's inputs move while this step
  /// computes. Nothing orders it after work issued before it: `dst` must
  /// be out of use by the time it is issued (the trainer double-buffers
  /// it), and no kernel may read it before awaitAside(). The source must
  /// stay unchanged until a wait that follows awaitAside(). The default is
  /// upload().
  virtual void uploadAside(void *dst, const void *src, uint64_t bytes) {
    upload(dst, src, bytes);
  }
  /// Orders everything issued after it behind the uploadAside() copies
  /// issued before it.
  virtual void awaitAside() {}
  /// Backend -> host; waits for everything issued before it.
  virtual void download(void *dst, const void *src, uint64_t bytes);
  /// Backend -> backend, ordered like a kernel.
  virtual void copy(void *dst, const void *src, uint64_t bytes);
  virtual void zero(void *dst, uint64_t bytes);
  /// Waits for everything issued so far.
  virtual void synchronize() {}

  /// Bytes of allocate()'s buffers alive now, and at most so far.
  uint64_t allocatedBytes() const { return allocated_; }
  uint64_t peakBytes() const { return peak_; }
  /// Starts the peak again from what is allocated now (to measure a part
  /// of a run, e.g. steps after their preparation).
  void resetPeak() { peak_ = allocated_.load(); }

protected:
  /// A Buffer over memory a backend just allocated, counted in
  /// allocatedBytes() until it is released.
  std::unique_ptr<Buffer> track(void *data, uint64_t bytes, bool host,
                                std::function<void(void *)> release);

private:
  std::atomic<uint64_t> allocated_{0}, peak_{0};
};

/// Plain host memory (the default of ParamStore; the host backends' too).
Memory &hostMemory();

/// Throws MemoryError naming `what`, the bytes and the memory available if
/// `bytes` is more than the host has available. Checked before allocating,
/// since with overcommit a huge allocation can succeed and then kill the
/// process when its pages are first touched.
void reserveHostBytes(uint64_t bytes, const std::string &what);

/// `count` elements of T in a backend's memory.
template <typename T> class Array {
public:
  Array() = default;
  Array(Memory &memory, int64_t count, const std::string &what)
      : buffer_(memory.allocate(uint64_t(count) * sizeof(T), what)),
        count_(count) {}

  /// The backend's address (a device pointer on a GPU).
  T *data() const {
    return buffer_ ? static_cast<T *>(buffer_->data()) : nullptr;
  }
  int64_t size() const { return count_; }
  uint64_t bytes() const { return uint64_t(count_) * sizeof(T); }

  // Host access, for host-memory backends only (tests, the reference
  // kernels); throws std::logic_error on device memory.
  T *host() const {
    if (buffer_ && !buffer_->isHost())
      throw std::logic_error("host access to device memory");
    return data();
  }
  T *begin() const { return host(); }
  T *end() const { return host() + count_; }
  T &operator[](int64_t i) const { return host()[i]; }
  bool operator==(const Array &o) const {
    return count_ == o.count_ && std::equal(begin(), end(), o.begin());
  }
  bool operator!=(const Array &o) const { return !(*this == o); }

private:
  std::unique_ptr<Buffer> buffer_;
  int64_t count_ = 0;
};

} // namespace netc::exec

#endif // NETC_RUNTIME_EXEC_MEMORY_H
