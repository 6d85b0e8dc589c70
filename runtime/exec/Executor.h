//===- Executor.h - runs one program of a plan ------------------*- C++ -*-===//
//
// An Executor owns the arena of one program (arena_bytes, 64-byte aligned)
// and runs its kernels in order on a Backend. Value pointers are the arena
// plus the value's offset, or the parameter store's buffer. A program runs
// with any batch n <= its planned batch (shapes' -1 become n; offsets stay).
//
// Kernel attributes and geometry are decoded and checked once, when the
// executor is built (a bad plan is a PlanError naming the kernel); a run
// only substitutes the batch size.
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

#include "runtime/exec/ParamStore.h"
#include "runtime/kernels/Reference.h"
#include "runtime/plan/Plan.h"

#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

namespace netc::exec {

/// A kernel's attributes, decoded from the plan (unused fields stay default).
struct KernelAttrs {
  kernels::Window2D win;
  int64_t groups = 1;
  int64_t outPadH = 0, outPadW = 0;
  bool ceil = false;
  int64_t sizeH = 0, sizeW = 0; ///< unpool
  int64_t posH = 0, posW = 0;
  bool normalize = false;
  double ratio = 0;
  uint64_t seed = 0;
  kernels::LrnParams lrn;
  double eps = 1e-5, bnMomentum = 0.9;
  bool inference = false;
  double scale = 1; ///< loss-gradient scale, or `scale`'s factor
  std::vector<double> weights;
  std::string param; ///< sgd_update
  double lrMult = 1, decayMult = 1;
};

/// A value as a kernel sees it during one run.
struct TensorRef {
  void *data = nullptr;
  kernels::Dims4 dims; ///< with the run's batch
  int64_t count = 0;
  /// The data as elements of type U (float, double or int32_t).
  template <typename U> U *as() const { return static_cast<U *>(data); }
  float *f32() const { return static_cast<float *>(data); }
  int32_t *i32() const { return static_cast<int32_t *>(data); }
};

/// A convolution-family kernel (conv2d, deconv2d and their gradients) seen
/// as its forward convolution: input `x`, weight `w`, output `y` (for the
/// gradient kernels, the gradients of whichever of them they read or write),
/// and the geometry for this call's batch. Shared by every backend, which
/// then only picks its loops.
struct ConvOperands {
  kernels::ConvShape shape;
  const TensorRef *x, *w, *y;
};
ConvOperands convOperands(plan::Op op, const KernelAttrs &attrs,
                          const std::vector<TensorRef> &in,
                          const std::vector<TensorRef> &out);

/// An fc-family kernel (fc and its gradients) as batch, inputs and outputs
/// per image, from the operand of the call that has each.
struct FCDims {
  int64_t n, in, out;
};
FCDims fcDims(plan::Op op, const std::vector<TensorRef> &in,
              const std::vector<TensorRef> &out);

/// Hyper-parameters and state of the current step.
struct StepContext {
  uint64_t step = 0; ///< global step (dropout masks)
  double lr = 0, momentum = 0, decay = 0;
  bool training = true;
};

/// One kernel invocation; f32 values hold elements of type T.
template <typename T> struct KernelCallT {
  const plan::Kernel &kernel;
  const KernelAttrs &attrs;
  std::vector<TensorRef> in, out;
  int64_t n; ///< batch of this run
  const StepContext &ctx;
  typename ParamStoreT<T>::Entry *param = nullptr; ///< sgd_update's parameter
};

/// The kernel interface every backend implements.
template <typename T> class BackendT {
public:
  virtual ~BackendT() = default;
  virtual const char *name() const = 0;
  virtual void run(const KernelCallT<T> &call) = 0;
};

/// Plain loops (runtime/kernels/Reference.h): the oracle.
template <typename T> class ReferenceBackendT : public BackendT<T> {
public:
  const char *name() const override { return "reference"; }
  void run(const KernelCallT<T> &call) override;

private:
  std::vector<uint8_t> mask_;
  std::vector<T> mean_, invStd_;
};

using KernelCall = KernelCallT<float>;
using Backend = BackendT<float>;
using ReferenceBackend = ReferenceBackendT<float>;

/// Creates a backend by name ("reference"); throws std::invalid_argument.
std::unique_ptr<Backend> makeBackend(const std::string &name);

template <typename T> class ExecutorT {
public:
  using Element = T;

  ExecutorT(const plan::Plan &plan, const std::string &program,
            ParamStoreT<T> &params, BackendT<T> &backend);

  const plan::Program &program() const { return *program_; }
  int64_t batch() const { return program_->batch; }

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
  /// An input by its name in `inputs` (throws PlanError if absent).
  int64_t inputId(const std::string &name) const;
  bool hasInput(const std::string &name) const;

  /// Runs every kernel with batch n (1 <= n <= batch()).
  void run(int64_t n, const StepContext &ctx);

  /// Keeps a copy of value `id` as its producing kernel wrote it, so that it
  /// can be read after the run even if later kernels reuse its arena bytes.
  void keep(int64_t id);
  /// The kept copy of `id` from the last run (keep() first), else its
  /// current storage.
  const void *kept(int64_t id);
  const T *keptReal(int64_t id) { return static_cast<const T *>(kept(id)); }
  /// keptReal() of an f32 executor.
  template <typename U = T,
            typename = std::enable_if_t<std::is_same_v<U, float>>>
  const float *keptF32(int64_t id) {
    return keptReal(id);
  }
  /// A scalar output after a run (its kept copy if kept).
  T scalar(int64_t id) { return *keptReal(id); }

private:
  /// Arena bytes per planned (4-byte) byte.
  static constexpr int64_t kScale = int64_t(sizeof(T)) / 4;
  static_assert(sizeof(T) % 4 == 0, "elements are whole multiples of 4 bytes");
  /// Bytes of `v` with batch n in this executor's arena.
  int64_t bytesOf(const plan::Value &v, int64_t n) const;
  TensorRef ref(int64_t id, int64_t n);

  const plan::Plan &plan_;
  const plan::Program *program_;
  ParamStoreT<T> &params_;
  BackendT<T> &backend_;
  AlignedVector<uint8_t> arena_;
  std::vector<KernelAttrs> attrs_;
  std::vector<typename ParamStoreT<T>::Entry *> updates_;
  std::map<int64_t, std::vector<uint8_t>> kept_;
  std::vector<std::vector<int64_t>> keepAfter_; ///< per kernel
};

/// Defined in Executor.cpp for float and double.
extern template class ReferenceBackendT<float>;
extern template class ReferenceBackendT<double>;
extern template class ExecutorT<float>;
extern template class ExecutorT<double>;

/// The training executor (f32).
using Executor = ExecutorT<float>;

/// The NCHW view of a value's shape with batch n ([N, F] is {N, F, 1, 1}).
kernels::Dims4 dimsOf(const plan::Value &v, int64_t n);

} // namespace netc::exec

#endif // NETC_RUNTIME_EXEC_EXECUTOR_H
