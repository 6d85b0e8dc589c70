//===- Executor.h - runs one program of a plan ------------------*- C++ -*-===//
//
// An Executor prepares one program on a Backend and runs it. The arena
// (arena_bytes) is the backend's memory; value addresses are the arena plus
// the value's offset, or the parameter store's buffer (which must live in
// the same backend's memory). A program runs with any batch n <= its planned
// batch (shapes' -1 become n; offsets stay).
//
// Everything is resolved once, when the executor is built: kernel
// attributes and geometry are decoded and checked (a bad plan is a PlanError
// naming the kernel), operand addresses found, and the backend's per-kernel
// state built (BackendT::prepare). A run then walks a flat list of calls
// with no lookups; the list is rebuilt only when the batch size changes
// (the last, smaller batch of an epoch). Inputs go in through upload() and
// outputs come out through download()/scalar(): the caller never touches
// the backend's memory.
//
// Element type. Executor, Backend and ParamStore run f32 values (training).
// ExecutorT<double> runs the same program with every f32 value in double
// (int32 values, labels and switches, stay int32), on ReferenceBackendT<double>
// and ParamStoreT<double>: what the gradient tests compare against finite
// differences. The plan's offsets and arena_bytes were planned for 4-byte
// elements; a double executor scales both by sizeof(T) / 4 = 2, which keeps
// every value 64-byte aligned and every two values that did not overlap
// disjoint (an int32 value just leaves half its slot unused). For float the
// scale is the constant 1: the f32 path is unchanged.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_EXEC_EXECUTOR_H
#define NETC_RUNTIME_EXEC_EXECUTOR_H

#include "runtime/exec/Backend.h"
#include "runtime/exec/ParamStore.h"
#include "runtime/exec/ReferenceBackend.h"
#include "runtime/kernels/Storage.h"
#include "runtime/plan/Plan.h"

#include <map>
#include <memory>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

namespace netc::exec {

template <typename T> class ExecutorT {
public:
  using Element = T;

  /// Prepares `program`: allocates its arena in the backend's memory,
  /// decodes and checks every kernel, resolves every operand's address and
  /// lets the backend build each kernel's state (prepare()).
  ExecutorT(const plan::Plan &plan, const std::string &program,
            ParamStoreT<T> &params, BackendT<T> &backend);
  // The calls refer to members (the step context): not copied or moved.
  /// Tells the backend to drop its recordings of this program.
  ~ExecutorT();
  ExecutorT(const ExecutorT &) = delete;
  ExecutorT &operator=(const ExecutorT &) = delete;

  const plan::Program &program() const { return *program_; }
  int64_t batch() const { return program_->batch; }
  /// An input by its name in `inputs` (throws PlanError if absent).
  int64_t inputId(const std::string &name) const;
  bool hasInput(const std::string &name) const;

  /// Copies the first n samples of value `id` (an input) from the host;
  /// `srcBytes` must be hostBytes(id, n). The host's format is the same for
  /// every plan: real numbers as T (f32) and i32 as int32_t, maps in NCHW;
  /// the executor converts to and from how the value is stored (bf16, NHWC,
  /// a backend's blocked layout: kernels/Storage.h).
  void upload(int64_t id, const void *src, uint64_t srcBytes, int64_t n);
  /// upload() from the backend's own memory (`src`, from the backend's
  /// allocate(), holding the host's format): a copy or conversion on the
  /// backend, ordered like a kernel, with no host transfer. For inputs
  /// already on the device (`netrun bench`'s synthetic batch).
  void uploadFrom(int64_t id, const Buffer &src, uint64_t srcBytes, int64_t n);
  /// Bytes of value `id` at batch n in the host's format.
  int64_t hostBytes(int64_t id, int64_t n) const {
    return hostBytes(program_->value(id), n);
  }
  /// Runs every kernel with batch n (1 <= n <= batch()).
  void run(int64_t n, const StepContext &ctx);

  /// Profiling: while on, run() waits for each kernel to finish
  /// (synchronize()) and adds its wall time to kernelSeconds()[i]. Off by
  /// default: a device backend then overlaps kernels freely.
  void setProfiling(bool on);
  /// Seconds spent in each kernel over the profiled runs, in plan order.
  const std::vector<double> &kernelSeconds() const { return kernelSeconds_; }
  /// What runs kernel i (KernelState::describe()), empty if not said.
  std::string kernelImpl(size_t i) const {
    return i < states_.size() && states_[i] ? states_[i]->describe() : "";
  }
  /// The kernels' workspace (bytes), allocated once for the program.
  uint64_t workspaceBytes() const {
    return workspace_ ? workspace_->bytes() : 0;
  }
  /// The values the backend keeps in a blocked layout, and their block.
  const std::map<int64_t, int64_t> &blockedValues() const { return blocked_; }
  /// The values no kernel writes (PreparedProgram::elided); download() and
  /// keep() refuse them.
  const std::set<int64_t> &elidedValues() const { return elided_; }
  /// The kernels whose main pass an earlier kernel ran
  /// (PreparedProgram::summedEarly).
  const std::set<size_t> &summedEarlyKernels() const { return summedEarly_; }

  /// Keeps a copy of value `id` as its producing kernel wrote it, so that it
  /// can be read after the run even if later kernels reuse its arena bytes.
  void keep(int64_t id);
  /// A host copy of value `id` from the last run (its kept copy if kept), as
  /// elements of U (T for f32 values, int32_t for i32 ones, uint8_t for u8
  /// switches).
  template <typename U = T> std::vector<U> download(int64_t id);
  /// A scalar output after a run (its kept copy if kept).
  T scalar(int64_t id);

  // Direct host access to a value's bytes, for tests on host-memory backends
  // only (throws std::logic_error on a device backend).
  /// The value's storage (arena + offset, or the parameter's buffer).
  void *data(int64_t id);
  /// An f32 value's elements (T).
  T *real(int64_t id) { return static_cast<T *>(data(id)); }
  int32_t *i32(int64_t id) { return static_cast<int32_t *>(data(id)); }
  /// real() of an f32 executor.
  template <typename U = T,
            typename = std::enable_if_t<std::is_same_v<U, float>>>
  float *f32(int64_t id) {
    return real(id);
  }
  /// The kept copy of `id` from the last run (keep() first), else its
  /// current storage.
  const void *kept(int64_t id);
  const T *keptReal(int64_t id) { return static_cast<const T *>(kept(id)); }

private:
  /// Arena bytes per planned (4-byte) byte.
  static constexpr int64_t kScale = int64_t(sizeof(T)) / 4;
  static_assert(sizeof(T) % 4 == 0, "elements are whole multiples of 4 bytes");
  /// Bytes of `v` with batch n in this executor's arena.
  int64_t bytesOf(const plan::Value &v, int64_t n) const;
  int64_t hostBytes(const plan::Value &v, int64_t n) const;
  /// Input `id` at batch n from `srcBytes` of the host's format, checked.
  const plan::Value &checkInput(int64_t id, uint64_t srcBytes, int64_t n) const;
  /// How value `id` is stored, against the host's format.
  kernels::Storage storageOf(int64_t id) const;
  /// The backend address of value `id`.
  void *address(int64_t id) const;
  TensorRef ref(int64_t id, int64_t n) const;
  /// Runs each call (and the keep() copies after it).
  void runCalls(const std::vector<KernelCallT<T>> &calls, int64_t n);
  /// The call list for batch n, its geometry checked.
  std::vector<KernelCallT<T>> buildCalls(int64_t n);
  /// Where value `id`'s bytes are to be read after a run.
  const void *source(int64_t id) const;
  void hostOnly() const;
  /// Throws std::logic_error unless `id` is stored in the host's format.
  void plainOnly(int64_t id) const;
  /// Throws std::logic_error if no kernel writes `id` (elided).
  void computedOnly(int64_t id) const;

  const plan::Plan &plan_;
  const plan::Program *program_;
  ParamStoreT<T> &params_;
  BackendT<T> &backend_;
  std::unique_ptr<Buffer> arena_;
  std::vector<KernelAttrs> attrs_;
  std::vector<typename ParamStoreT<T>::Entry *> updates_;
  std::vector<std::unique_ptr<KernelState>> states_;
  std::map<int64_t, int64_t> blocked_; ///< PreparedProgram::blocked
  std::set<int64_t> elided_;           ///< PreparedProgram::elided
  std::set<size_t> summedEarly_;       ///< PreparedProgram::summedEarly
  std::unique_ptr<Buffer> workspace_;  ///< the kernels' scratch memory
  /// The flat lists a run walks: at the planned batch, and at tailN_.
  std::vector<KernelCallT<T>> fullCalls_, tailCalls_;
  int64_t tailN_ = 0;
  StepContext ctx_;
  int64_t lastN_ = 0; ///< batch of the last run
  bool profiling_ = false;
  std::vector<double> kernelSeconds_;
  struct Kept {
    std::unique_ptr<Buffer> buffer; ///< in the backend's memory
    bool written = false;
  };
  std::map<int64_t, Kept> kept_;
  std::vector<std::vector<int64_t>> keepAfter_; ///< per kernel
  /// Per kernel: the arena bytes free around it (freeArenaSpans).
  std::vector<ArenaSpan> freeSpans_;
};

/// Defined in Executor.cpp for float and double.
extern template class ExecutorT<float>;
extern template class ExecutorT<double>;

/// The training executor (f32).
using Executor = ExecutorT<float>;

} // namespace netc::exec

#endif // NETC_RUNTIME_EXEC_EXECUTOR_H
