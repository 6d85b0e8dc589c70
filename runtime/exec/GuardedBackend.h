//===- GuardedBackend.h - the reference backend under a device's rules ----===//
//
// `--backend guarded`: the reference backend's kernels behind the two rules
// a GPU imposes on its callers, enforced on the host, so that the trainer,
// the executor and netrun are proven to follow them without a GPU:
//   - the backend's memory (arenas, parameters, momentum, kept copies) is
//     not host memory: it is mapped PROT_NONE, and opened only while the
//     backend itself works on it, so a host access faults at once;
//   - uploads, copies, zeroing and kernels are queued, as on a stream, and
//     run only when the host waits (download, synchronize). An upload from
//     staging memory (page-locked on a GPU) reads its source then, so a
//     staging buffer rewritten before the wait shows in the results; one
//     from other host memory has read it when upload() returns, as CUDA's
//     copies from pageable memory have;
// and holds it to the rule the cuda backend relies on for its scratch: the
// arena bytes free around a kernel (KernelCall::freeArena) are filled with
// 0xff bytes (NaN in float values) before and after each kernel, so a span
// that holds a live value changes the results. Everything else is the
// reference backend's, so a run computes the same bits as
// `--backend reference`; the e2e test compares the two.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_EXEC_GUARDEDBACKEND_H
#define NETC_RUNTIME_EXEC_GUARDEDBACKEND_H

#include "runtime/exec/ReferenceBackend.h"

#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <vector>

namespace netc::exec {

class GuardedBackend : public ReferenceBackend {
public:
  GuardedBackend() = default;
  ~GuardedBackend() override;
  GuardedBackend(const GuardedBackend &) = delete;
  GuardedBackend &operator=(const GuardedBackend &) = delete;

  const char *name() const override { return "guarded"; }

  bool isHost() const override { return false; }
  /// Page-aligned, zeroed, unreadable to the host.
  std::unique_ptr<Buffer> allocate(uint64_t bytes,
                                   const std::string &what) override;
  /// Host memory, remembered: uploads from it are read at the wait.
  std::unique_ptr<Buffer> allocateStaging(uint64_t bytes,
                                          const std::string &what) override;
  void upload(void *dst, const void *src, uint64_t bytes) override;
  /// From staging memory, the extremes a copy stream allows: `dst` holds
  /// 0xff bytes from now until the join (so a `dst` still in use by the
  /// work queued so far, or read before awaitAside(), shows in the
  /// results), the bytes land at the join in queue order, and the source
  /// is checked at the first wait after awaitAside() to be as it was (a
  /// staging buffer rewritten before that is a std::logic_error there).
  /// From other host memory, upload().
  void uploadAside(void *dst, const void *src, uint64_t bytes) override;
  void awaitAside() override;
  void download(void *dst, const void *src, uint64_t bytes) override;
  void copy(void *dst, const void *src, uint64_t bytes) override;
  void zero(void *dst, uint64_t bytes) override;
  void synchronize() override;
  /// Queued, as a device's conversion kernel would be.
  void storeFrom(void *dst, const kernels::Storage &s, const kernels::Dims4 &d,
                 const void *src) override;

  std::unique_ptr<KernelState> prepare(const KernelCall &call) override;
  void run(const KernelCall &call) override;
  /// The program's kernel states may go away: its queued kernels run now.
  void forgetProgram(const void *key) override;

private:
  /// Runs the queue with the memory open, then closes it again; first
  /// rethrows an error a drain() kept.
  void flush();
  /// flush() where nothing may throw (a release, forgetProgram from an
  /// executor's destructor, the destructor): an error is kept for the next
  /// wait, as a stream's would be.
  void drain() noexcept;
  /// Opens (or closes) every region for the host.
  void setAccess(bool open);

  /// Guards the queue and the regions (flush runs inside download, prepare
  /// and a buffer's release, hence recursive).
  std::recursive_mutex mutex_;
  std::map<void *, size_t> regions_; ///< mapped address -> mapped bytes
  std::map<void *, size_t> staging_; ///< staging address -> bytes
  /// Whether [p, p + bytes) lies in one staging buffer.
  bool inStaging(const void *p, uint64_t bytes) const;
  std::vector<std::function<void()>> queue_;
  /// An uploadAside(): its source, destination and the bytes the source
  /// held when issued.
  struct AsideSource {
    const void *src;
    void *dst;
    std::shared_ptr<std::vector<uint8_t>> bytes;
  };
  /// Issued and not yet joined by awaitAside(); joined, checked at the
  /// next wait.
  std::vector<AsideSource> asideIssued_, asideJoined_;
  /// Throws std::logic_error if a joined source changed, then forgets them.
  void checkAsideSources();
  std::exception_ptr pending_; ///< a drained kernel's error, not yet seen
  bool open_ = false;
};

} // namespace netc::exec

#endif // NETC_RUNTIME_EXEC_GUARDEDBACKEND_H
