//===- Backend.h - the kernel interface every backend implements -*- C++
//-*-===//

#ifndef NETC_RUNTIME_EXEC_BACKEND_H
#define NETC_RUNTIME_EXEC_BACKEND_H

#include "runtime/exec/KernelCall.h"
#include "runtime/exec/Memory.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace netc::exec {

/// The kernel interface every backend implements. A backend owns the memory
/// its kernels touch (Memory: arenas, parameters, kept outputs, transfers);
/// the defaults are host memory.
template <typename T> class BackendT : public Memory {
public:
  virtual const char *name() const = 0;
  /// Builds the kernel's state once, when its program is prepared for
  /// batches up to `call.n` (the planned batch); nullptr if it needs none.
  /// `call` has the operands' real addresses and shapes.
  virtual std::unique_ptr<KernelState> prepare(const KernelCallT<T> &call) {
    return nullptr;
  }
  /// Whether this backend's kernels take values of `v`'s dtype and layout
  /// (the host backends: f32 and i32 in NCHW).
  virtual bool supports(const plan::Value &v) const {
    return v.dtype != plan::DType::BF16 && v.layout == plan::Layout::NCHW;
  }
  /// Runs (or, on a device, enqueues) one kernel.
  virtual void run(const KernelCallT<T> &call) = 0;
  /// Whether its `all_reduce_mean` reaches other ranks (a data-parallel run
  /// of more than one).
  virtual bool reducesAcrossRanks() const { return true; }
};

using Backend = BackendT<float>;

/// The outputs of an `all_reduce_mean` as runs [first, last] that lie back to
/// back in memory (gaps under 16 elements of `elementBytes`: net-plan-memory
/// aligns each to 64 bytes), each reduced as one span.
std::vector<std::pair<size_t, size_t>>
contiguousRuns(const std::vector<TensorRef> &outs, size_t elementBytes);

/// `all_reduce_mean` on host memory (the reference and cpu backends): each
/// output becomes its operand, then the bucket is summed over the ranks of
/// `call.ctx.comm` and divided by their number. Outputs that lie back to
/// back, as net-plan-memory lays out a bucket, are reduced in one call, the
/// alignment gaps between them zeroed first.
template <typename T> void hostAllReduceMean(const KernelCallT<T> &call);

/// Creates a backend by name ("reference", "cpu" where built); throws
/// std::invalid_argument naming the available ones.
std::unique_ptr<Backend> makeBackend(const std::string &name);

} // namespace netc::exec

#endif // NETC_RUNTIME_EXEC_BACKEND_H
