//===- Backend.h - the kernel interface every backend implements -*- C++
//-*-===//

#ifndef NETC_RUNTIME_EXEC_BACKEND_H
#define NETC_RUNTIME_EXEC_BACKEND_H

#include "runtime/exec/KernelCall.h"
#include "runtime/exec/Memory.h"
#include "runtime/kernels/Storage.h"

#include <fmt/format.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace netc::exec {

/// What a backend prepared for one program.
struct PreparedProgram {
  /// One per kernel, in plan order (nullptr: none).
  std::vector<std::unique_ptr<KernelState>> states;
  /// The values the backend keeps in a channel-blocked layout of its own
  /// choosing, and their block (lanes, as cuda::planeAt): channel c of
  /// pixel p of image n at ((n * C/L + c/L) * H*W + p) * L + c % L. Every
  /// other value has the plan's layout.
  std::map<int64_t, int64_t> blocked;
  /// Values no kernel writes, because a fused kernel computes past them (a
  /// conv2d that applies the relu after it). None of them is read by the
  /// host or by any other kernel.
  std::set<int64_t> elided;
  /// Kernels (by index) whose main pass an earlier kernel ran (a bias_grad
  /// whose partial sums the relu_grad writing its input summed): their own
  /// launch is what is left (a profile times only that).
  std::set<size_t> summedEarly;
};

/// `e` with kernel `k`'s path and op in front, unless it starts with them
/// already (a backend that runs kernels at a later wait names them itself).
inline kernels::KernelError namedKernelError(const plan::Kernel &k,
                                             const kernels::KernelError &e) {
  std::string name = fmt::format("{}: '{}': ", k.path, plan::opName(k.op));
  std::string what = e.what();
  return kernels::KernelError(
      what.compare(0, name.size(), name) == 0 ? what : name + what);
}

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
  /// Prepares a whole program: `calls` are its kernels at the planned
  /// batch. The values in `hostValues` (inputs and outputs) are read or
  /// written by the host and keep the plan's layout; a backend may choose
  /// its own layout for the others. The default prepares each kernel alone.
  virtual PreparedProgram
  prepareProgram(const plan::Program &program,
                 const std::vector<KernelCallT<T>> &calls,
                 const std::set<int64_t> &hostValues) {
    (void)program;
    (void)hostValues;
    PreparedProgram p;
    for (const KernelCallT<T> &call : calls)
      p.states.push_back(prepareNamed(call));
    return p;
  }
  /// Whether this backend's kernels take values of `v`'s dtype and layout
  /// (the host backends: f32 and i32 in NCHW).
  virtual bool supports(const plan::Value &v) const {
    return v.dtype != plan::DType::BF16 && v.layout == plan::Layout::NCHW;
  }
  /// How one run of a program goes (beginProgram).
  enum class ProgramRun {
    Eager,   ///< the executor runs each kernel
    Capture, ///< the same, recorded (then endCapture)
    Replay,  ///< the backend replayed a recording: the executor runs none
  };
  /// Called by the executor before it runs program `key` (the executor's
  /// address) at batch n: a device backend may record the run's kernels
  /// and replay them afterwards in one launch (a CUDA graph), which
  /// `capturable` allows (the planned batch, no profiling). The step's
  /// hyper-parameters change between replays: a backend that replays reads
  /// them from device memory, which it sets here from `ctx`.
  virtual ProgramRun beginProgram(const void *key, int64_t n,
                                  const StepContext &ctx, bool capturable) {
    (void)key, (void)n, (void)ctx, (void)capturable;
    return ProgramRun::Eager;
  }
  /// Ends a Capture run; `error`: why a kernel could not be enqueued
  /// (empty: every kernel was). Returns whether the recording was launched
  /// (the step ran); if not, the executor runs the kernels again, eagerly
  /// (a genuine error then recurs, outside the capture), and the backend
  /// records this program no more.
  virtual bool endCapture(const void *key, const std::string &error) {
    (void)key, (void)error;
    return false;
  }
  /// Program `key`'s recordings are stale (it keeps another value, or it
  /// is going away).
  virtual void forgetProgram(const void *key) { (void)key; }
  /// Writes `src`, a value of dims `d` in the host's format (4-byte words:
  /// f32 or i32, NCHW), into `dst` stored as `s` (kernels/Storage.h). The
  /// default converts on the host and uploads; a device backend may upload
  /// the host's words and convert on the device.
  virtual void uploadStored(void *dst, const kernels::Storage &s,
                            const kernels::Dims4 &d, const void *src) {
    std::vector<uint8_t> stored(size_t(d.count() * s.elementBytes()));
    kernels::toStorage(d, s, static_cast<const uint32_t *>(src), stored.data());
    this->upload(dst, stored.data(), stored.size());
    this->synchronize(); // `stored` goes away
  }
  /// uploadStored() from the backend's own memory: `src` (allocate()'d)
  /// holds the host's format, and the conversion is ordered like a kernel,
  /// with no transfer (inputs already on the device: `netrun bench`). The
  /// default converts in place in host memory, as the host backends' memory
  /// is.
  virtual void storeFrom(void *dst, const kernels::Storage &s,
                         const kernels::Dims4 &d, const void *src) {
    kernels::toStorage(d, s, static_cast<const uint32_t *>(src), dst);
  }
  /// The plan whose programs are prepared next (a backend runs one plan at
  /// a time): its precision (host backends compute fp32 anyway) and its
  /// trainer directory, where a backend may keep what it measured.
  virtual void usePlan(const plan::Plan &) {}
  /// Runs (or, on a device, enqueues) one kernel.
  virtual void run(const KernelCallT<T> &call) = 0;
  /// Whether its `all_reduce_mean` reaches other ranks (a data-parallel run
  /// of more than one).
  virtual bool reducesAcrossRanks() const { return true; }
  /// One line on how the backend ran what it ran, where that is its own
  /// choice and worth knowing (the cuda backend: CUDA graphs replayed, or
  /// why a program ran kernel by kernel); empty when there is nothing to
  /// say. netrun prints it after a benchmark and after training.
  virtual std::string runReport() const { return {}; }

protected:
  /// prepare(), a KernelError naming the kernel.
  std::unique_ptr<KernelState> prepareNamed(const KernelCallT<T> &call) {
    try {
      return prepare(call);
    } catch (const kernels::KernelError &e) {
      throw namedKernelError(call.kernel, e);
    }
  }
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

// The fusions below move a kernel's read or write to the kernel next to it
// (i + 1), or into a scratch buffer of the backend's own, never further:
// freeArenaSpans' margin of one kernel on each side relies on it, and a
// fusion that moved an arena access further would have to widen it.

/// The kernels i of `calls` (a program's, at its planned batch) that are a
/// conv2d or deconv2d whose output only the relu at i + 1 reads, that the
/// host does not read, and whose relu writes no byte the convolution reads:
/// a backend may compute that relu inside the convolution, writing the
/// relu's output directly and never the convolution's own
/// (PreparedProgram::elided).
std::vector<size_t> convReluPairs(const plan::Program &program,
                                  const std::vector<KernelCall> &calls,
                                  const std::set<int64_t> &hostValues);

/// The kernels i of `calls` that are an unpool through switches (a
/// max-pool's backward, or a decoder's unpool) whose output only the
/// relu_grad at i + 1 reads, as its gradient, that the host does not read,
/// and whose relu_grad writes no byte the unpool reads: a backend may
/// compute the gather inside that relu_grad, never writing the unpool's
/// output (PreparedProgram::elided).
std::vector<size_t> unpoolReluGradPairs(const plan::Program &program,
                                        const std::vector<KernelCall> &calls,
                                        const std::set<int64_t> &hostValues);

/// The pairs (i, j) of `calls` where kernel i is a relu_grad and j the first
/// bias_grad after it that reads its output dx, with no kernel between
/// writing a byte of dx: a backend may sum j's bias gradient (or its first
/// stage) while kernel i writes dx, as dx then holds at j what it held
/// after i.
std::vector<std::pair<size_t, size_t>>
reluGradBiasPairs(const plan::Program &program,
                  const std::vector<KernelCall> &calls);

/// Creates a backend by name ("reference", "cpu" where built); throws
/// std::invalid_argument naming the available ones.
std::unique_ptr<Backend> makeBackend(const std::string &name);

} // namespace netc::exec

#endif // NETC_RUNTIME_EXEC_BACKEND_H
