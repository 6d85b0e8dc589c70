//===- KernelCall.h - what every backend shares about a kernel --*- C++ -*-===//
//
// A kernel as a backend sees it: its decoded attributes, its operands with
// this run's batch, and the step's hyper-parameters. The attribute decoding,
// the geometry checks and the operand views (convOperands, fcDims) live here
// once, so that every backend derives shapes the same way and only picks its
// loops or library calls.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_EXEC_KERNELCALL_H
#define NETC_RUNTIME_EXEC_KERNELCALL_H

#include "runtime/exec/ParamStore.h"
#include "runtime/kernels/Reference.h"
#include "runtime/plan/Plan.h"

#include <string>
#include <vector>

namespace netc::dist {
class Communicator;
} // namespace netc::dist

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
  /// How the plan stores it (net-precision): the element type (real values
  /// are f32 or bf16) and, for a map, NCHW or NHWC.
  plan::DType dtype = plan::DType::F32;
  plan::Layout layout = plan::Layout::NCHW;
  /// Whether the value has the batch dimension (an activation or its
  /// gradient, switches): not a parameter or a parameter's gradient, which
  /// keep their own order whatever layout the maps have.
  bool batched = false;
  /// The channel block of its layout, as cuda::planeAt takes it: C for
  /// NHWC (all channels of a pixel together), 1 for NCHW.
  int64_t lanes() const { return layout == plan::Layout::NHWC ? dims.c : 1; }
  /// The data as elements of type U (float, double or int32_t).
  template <typename U> U *as() const { return static_cast<U *>(data); }
  float *f32() const { return static_cast<float *>(data); }
  int32_t *i32() const { return static_cast<int32_t *>(data); }
  /// A max-pool's switches (kernels::Switch, u8 in the plan).
  kernels::Switch *switches() const {
    return static_cast<kernels::Switch *>(data);
  }
};

/// The kernel families every backend dispatches on: conv2d, deconv2d and
/// their gradients; the transposed (deconv2d) ones among them; fc and its
/// gradients.
bool isConvFamily(plan::Op op);
bool isTransposedConv(plan::Op op);
bool isFcFamily(plan::Op op);

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
  /// The dropout masks' step key: each step of a run draws new masks. The
  /// trainer makes it from its seed and the global step (dropoutStepKey),
  /// so that another seed also drops other units.
  uint64_t step = 0;
  double lr = 0, momentum = 0, decay = 0;
  bool training = true;
  /// The ranks that `all_reduce_mean` averages over (none: one process).
  dist::Communicator *comm = nullptr;
  /// Where this rank's images start in the global batch: dropout draws the
  /// global batch's mask, so ranks drop different units, as one process
  /// at the global batch would.
  uint64_t firstSample = 0;
};

/// What a backend builds once per kernel when a program is prepared
/// (descriptors, the algorithm found for its shapes, workspace sizes), kept
/// for every later run of that kernel.
class KernelState {
public:
  virtual ~KernelState() = default;
  /// Scratch bytes a run of the kernel needs at KernelCallT::workspace
  /// (the executor allocates the largest need of a program once).
  virtual uint64_t workspaceBytes() const { return 0; }
  /// What runs the kernel (a library's implementation name), for profiles;
  /// empty if nothing worth saying.
  virtual std::string describe() const { return {}; }
};

/// One kernel invocation; f32 values hold elements of type T. Built once per
/// program and batch size by the executor: its pointers are resolved, so a
/// step is a flat list of these.
template <typename T> struct KernelCallT {
  const plan::Kernel &kernel;
  const KernelAttrs &attrs;
  std::vector<TensorRef> in, out;
  int64_t n; ///< batch of this run
  const StepContext &ctx;
  typename ParamStoreT<T>::Entry *param = nullptr; ///< sgd_update's parameter
  KernelState *state = nullptr; ///< the backend's, from prepare()
  /// The program's scratch memory (at least state->workspaceBytes()),
  /// shared by its kernels, which run one after another.
  void *workspace = nullptr;
  /// Arena bytes that no value uses while this kernel runs, nor while the
  /// kernels next to it run (freeArenaSpans, for the planned batch, which
  /// makes them free at every smaller one too): scratch a backend may use
  /// for this kernel alone, e.g. a convolution's workspace.
  void *freeArena = nullptr;
  uint64_t freeArenaBytes = 0;

  /// Where a dropout's first element lies in the global batch's mask.
  uint64_t dropoutFirst() const {
    return ctx.firstSample * uint64_t(in[0].count / n);
  }
};

/// Decodes and range-checks a kernel's attributes (PlanError naming the
/// kernel's path).
KernelAttrs decodeAttrs(const plan::Kernel &k);

/// Checks the shapes a kernel derives from its operands against the plan's
/// (kernels::KernelError). `paramCount` is the element count of
/// sgd_update's parameter.
void checkGeometry(const plan::Kernel &k, const KernelAttrs &attrs,
                   const std::vector<TensorRef> &in,
                   const std::vector<TensorRef> &out, const plan::Program &p,
                   int64_t paramCount);

/// The floating-point operations of one run of `program` at batch n that
/// model-FLOP utilisation counts: two per multiply-add of every
/// convolution-family and fc-family kernel (forward and both gradients),
/// nothing for the rest (pooling, losses, elementwise), whose FLOPs are a
/// rounding error of a CNN step's.
int64_t modelFlops(const plan::Program &program, int64_t n);

/// checkProgram for every program of `plan` at its batch: what `netrun
/// info` and the start of training check, so that a trainer whose eval
/// program cannot run fails before a phase's training, not after it.
void checkPlan(const plan::Plan &plan);

/// Checks the geometry of every kernel of `program` at batch n (1 <= n <=
/// its batch), from the plan alone: no memory, no backend. `attrs` are the
/// kernels' decoded attributes (decodeAttrs), in order. A mismatch is a
/// PlanError naming the kernel and the batch.
void checkProgram(const plan::Plan &plan, const plan::Program &program,
                  const std::vector<KernelAttrs> &attrs, int64_t n);

/// A span of a program's arena, in the plan's bytes.
struct ArenaSpan {
  int64_t offset = 0, bytes = 0;
};

/// For each kernel of `program`, the largest span of its arena (the start
/// aligned to `align` bytes) that no value uses while that kernel runs, nor
/// while the kernel before or after it runs: a backend's fusions move a
/// read or a write to the kernel next to the plan's (a convolution writes
/// its relu's output; a relu_grad gathers its unpool's input). A value is
/// used from the first kernel that writes it (an input: from before the
/// first kernel) to the last that reads or writes it (an output, which the
/// host reads after the step: to the end), at the planned batch; the
/// plan's workspace region is never free. Empty spans where nothing is.
std::vector<ArenaSpan> freeArenaSpans(const plan::Program &program,
                                      int64_t align = 256);

/// The NCHW view of a value's shape with batch n ([N, F] is {N, F, 1, 1}).
kernels::Dims4 dimsOf(const plan::Value &v, int64_t n);

using KernelCall = KernelCallT<float>;

} // namespace netc::exec

#endif // NETC_RUNTIME_EXEC_KERNELCALL_H
