//===- CpuBackend.cpp - the `cpu` backend ---------------------------------===//

#include "runtime/exec/CpuBackend.h"

#include "runtime/cuda/Kernels.h"
#include "runtime/kernels/Cpu.h"
#include "runtime/kernels/OneDnn.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

namespace netc::exec {

using kernels::ConvShape;
using kernels::onednn::BatchNormPrimitive;
using kernels::onednn::ConvPass;
using kernels::onednn::ConvPrimitive;
using kernels::onednn::LrnPrimitive;
using kernels::onednn::Primitive;
using plan::Op;
namespace cpu = kernels::cpu;
namespace ref = kernels::ref;

/// Elementwise kernels split into chunks of at least this many elements.
static constexpr int64_t kElementGrain = 1 << 15;

namespace {

ConvPass convPass(Op op) {
  switch (op) {
  case Op::Conv2D:
  case Op::Deconv2D:
    return ConvPass::Forward;
  case Op::Conv2DGradInput:
  case Op::Deconv2DGradInput:
    return ConvPass::BackwardData;
  default:
    return ConvPass::BackwardWeights;
  }
}

/// The plan values that are a conv-family kernel's x and y (as
/// convOperands picks its TensorRefs).
std::pair<int64_t, int64_t> convXY(const plan::Kernel &k) {
  switch (convPass(k.op)) {
  case ConvPass::Forward:
    return {k.in[0], k.out[0]};
  case ConvPass::BackwardData:
    return {k.out[0], k.in[0]};
  default:
    return {k.in[0], k.in[1]};
  }
}

bool isNormalization(Op op) {
  return op == Op::BatchNorm || op == Op::BatchNormGrad || op == Op::LRN ||
         op == Op::LRNGrad;
}

/// A batch norm's or LRN's operands that are activations of x's shape
/// (one layout for all: the primitive takes them in one).
std::vector<int64_t> normActivations(const plan::Kernel &k) {
  switch (k.op) {
  case Op::BatchNormGrad: // dy, x -> dx (and parameter gradients)
    return {k.in[0], k.in[1], k.out[0]};
  case Op::LRNGrad: // dy, x, y -> dx
    return {k.in[0], k.in[1], k.in[2], k.out[0]};
  default: // x (and parameters) -> y
    return {k.in[0], k.out[0]};
  }
}

/// What the cpu backend keeps per kernel.
struct CpuState : KernelState {
  /// Pooling, bias_grad, batch norm and LRN: the channel block of the
  /// operands (1: plain).
  int64_t lanes = 1;
  /// A relu whose conv computed it already.
  bool skip = false;

  // Convolution family.
  int64_t xLanes = 1, yLanes = 1;
  bool relu = false; ///< fused: the conv writes relu(y) to reluOut
  float *reluOut = nullptr;

  /// The oneDNN primitive (convolution family, fc, batch norm, LRN) at the
  /// planned batch `batch`; null: im2col + sgemm (convolutions), sgemm
  /// (fc), the reference (batch norm, LRN).
  std::unique_ptr<Primitive> prim;
  int64_t batch = 0;
  /// The epochs' last, smaller batch: made at its first run, with scratch
  /// of its own when it needs more than the planned batch's.
  int64_t tailN = 0;
  std::unique_ptr<Primitive> tailPrim;
  std::vector<uint8_t> tailScratch;

  uint64_t workspaceBytes() const override {
    return prim ? prim->workspaceBytes() : 0;
  }
  std::string describe() const override {
    if (skip)
      return "computed by the conv before it";
    if (!prim)
      return lanes > 1 ? "nChw" + std::to_string(lanes) + "c" : "";
    return prim->describe() + (relu ? " +relu" : "");
  }
};

/// Union-find over value ids: values that must share one layout.
class LayoutSets {
public:
  int64_t find(int64_t v) {
    auto it = parent_.find(v);
    if (it == parent_.end() || it->second == v)
      return v;
    return it->second = find(it->second);
  }
  void unite(int64_t a, int64_t b) {
    a = find(a);
    b = find(b);
    if (a != b)
      parent_[a] = b;
  }

private:
  std::map<int64_t, int64_t> parent_;
};

bool envIs(const char *name, const char *value) {
  const char *v = std::getenv(name);
  return v && std::strcmp(v, value) == 0;
}

ConvPass fcPass(Op op) {
  return op == Op::FC            ? ConvPass::Forward
         : op == Op::FCGradInput ? ConvPass::BackwardData
                                 : ConvPass::BackwardWeights;
}

/// The primitive of call `c` (at c's batch) for the layouts (and fusion)
/// in `s`; KernelError where oneDNN cannot compute it.
std::unique_ptr<Primitive> makePrimitive(const KernelCall &c,
                                         const CpuState &s) {
  Op op = c.kernel.op;
  const KernelAttrs &a = c.attrs;
  if (isConvFamily(op)) {
    ConvOperands o = convOperands(op, a, c.in, c.out);
    return std::make_unique<ConvPrimitive>(o.shape, isTransposedConv(op),
                                           convPass(op), s.xLanes, s.yLanes,
                                           c.in.size() > 2, s.relu);
  }
  if (isFcFamily(op)) {
    FCDims d = fcDims(op, c.in, c.out);
    return std::make_unique<ConvPrimitive>(d.n, d.in, d.out, fcPass(op),
                                           op == Op::FC && c.in.size() > 2);
  }
  const kernels::Dims4 &d = c.in[0].dims;
  switch (op) {
  case Op::BatchNorm:
  case Op::BatchNormGrad:
    return std::make_unique<BatchNormPrimitive>(d, s.lanes, a.eps,
                                                op == Op::BatchNormGrad);
  default:
    return std::make_unique<LrnPrimitive>(d, s.lanes, a.lrn, op == Op::LRNGrad);
  }
}

/// s's primitive for a run at c's batch, and in `workspace` the scratch to
/// run it in: the planned batch's, or the tail batch's, made at its first
/// run.
template <typename P>
P &primitiveFor(const KernelCall &c, CpuState &s, void *&workspace) {
  workspace = c.workspace;
  if (c.n == s.batch)
    return static_cast<P &>(*s.prim);
  if (s.tailN != c.n) {
    s.tailPrim = makePrimitive(c, s);
    s.tailN = c.n;
    uint64_t need = s.tailPrim->workspaceBytes();
    s.tailScratch.assign(need > s.prim->workspaceBytes() ? need + 64 : 0, 0);
  }
  if (!s.tailScratch.empty()) {
    auto p = reinterpret_cast<uintptr_t>(s.tailScratch.data());
    workspace = reinterpret_cast<void *>((p + 63) / 64 * 64);
  }
  return static_cast<P &>(*s.tailPrim);
}

} // namespace

CpuBackend::CpuBackend()
    : blockLayouts_(!envIs("NETC_CPU_LAYOUT", "plain")),
      fuseRelu_(!envIs("NETC_CPU_FUSION", "off")),
      fcPrimitives_(envIs("NETC_CPU_FC", "onednn")) {}

PreparedProgram
CpuBackend::prepareProgram(const plan::Program &program,
                           const std::vector<KernelCall> &calls,
                           const std::set<int64_t> &hostValues) {
  const std::vector<plan::Kernel> &ks = program.kernels;
  PreparedProgram out;
  std::vector<std::unique_ptr<CpuState>> states(ks.size());
  auto named = [&](const plan::Kernel &k, const kernels::KernelError &e) {
    return kernels::KernelError(
        fmt::format("{}: '{}': {}", k.path, plan::opName(k.op), e.what()));
  };

  // The kernels oneDNN can compute, in plain layout for now: convolutions
  // (then in any layout: they reorder as needed), batch norm, LRN and, if
  // asked, fc. Convolutions it cannot compute run im2col + sgemm, fc sgemm,
  // batch norm and LRN the reference, all on plain operands.
  std::set<int64_t> mustBePlain;
  for (size_t i = 0; i < ks.size(); ++i) {
    Op op = ks[i].op;
    if (!isConvFamily(op) && !(isFcFamily(op) && fcPrimitives_) &&
        !isNormalization(op))
      continue;
    auto s = std::make_unique<CpuState>();
    s->batch = calls[i].n;
    try {
      s->prim = makePrimitive(calls[i], *s);
    } catch (const kernels::KernelError &) {
      std::vector<int64_t> plain;
      if (isConvFamily(op)) {
        auto [x, y] = convXY(ks[i]);
        plain = {x, y};
      } else if (isNormalization(op)) {
        plain = normActivations(ks[i]);
      }
      mustBePlain.insert(plain.begin(), plain.end());
    }
    states[i] = std::move(s);
  }

  // Layouts: candidates are batched rank-4 activations the host never
  // sees, with whole channel blocks; a set of values tied by a kernel is
  // blocked if all of its members are candidates and no kernel that cannot
  // take a blocked operand touches any of them.
  int64_t block = kernels::onednn::channelBlock();
  auto candidate = [&](int64_t id) {
    const plan::Value &v = program.value(id);
    return blockLayouts_ && !v.isParam() && v.hasBatch() &&
           v.shape.size() == 4 && v.shape[1] % block == 0 &&
           !hostValues.count(id) && !mustBePlain.count(id);
  };
  LayoutSets sets;
  std::set<int64_t> refused; // set members that cannot be blocked
  for (const plan::Kernel &k : ks) {
    std::vector<int64_t> tied;
    bool flexible = true;
    switch (k.op) {
    case Op::Relu:
    case Op::ReluGrad:
    case Op::Add:
    case Op::Scale:
    case Op::EuclideanLossGrad:
    case Op::MaxPool:
    case Op::Unpool:
    case Op::UnpoolGrad:
      tied.insert(tied.end(), k.in.begin(), k.in.end());
      tied.insert(tied.end(), k.out.begin(), k.out.end());
      break;
    case Op::EuclideanLoss:
      tied = k.in;
      break;
    case Op::BatchNorm:
    case Op::BatchNormGrad:
    case Op::LRN:
    case Op::LRNGrad:
      tied = normActivations(k); // the parameters on their own
      break;
    case Op::BiasGrad:
    case Op::Conv2D:
    case Op::Deconv2D:
    case Op::Conv2DGradInput:
    case Op::Conv2DGradWeight:
    case Op::Deconv2DGradInput:
    case Op::Deconv2DGradWeight:
      break; // each operand on its own
    default:
      flexible = false;
    }
    for (size_t j = 1; j < tied.size(); ++j)
      sets.unite(tied[0], tied[j]);
    if (!flexible) {
      for (int64_t id : k.in)
        refused.insert(id);
      for (int64_t id : k.out)
        refused.insert(id);
    }
  }
  for (const auto &[id, v] : program.values)
    if (!candidate(id))
      refused.insert(id);
  std::set<int64_t> refusedSets;
  for (int64_t id : refused)
    refusedSets.insert(sets.find(id));
  for (const auto &[id, v] : program.values)
    if (!refusedSets.count(sets.find(id)))
      out.blocked[id] = block;
  auto lanesOf = [&](int64_t id) {
    auto it = out.blocked.find(id);
    return it == out.blocked.end() ? int64_t(1) : it->second;
  };

  // A conv whose output feeds only the relu right after it computes that
  // relu as a oneDNN post-op (on primitives; not on im2col + sgemm).
  for (size_t i : fuseRelu_ ? convReluPairs(program, calls, hostValues)
                            : std::vector<size_t>{}) {
    if (!states[i]->prim)
      continue;
    states[i]->relu = true;
    states[i]->reluOut = calls[i + 1].out[0].f32();
    out.elided.insert(ks[i].out[0]);
    states[i + 1] = std::make_unique<CpuState>();
    states[i + 1]->skip = true;
  }

  // The primitives, for the layouts (and fusions) chosen.
  for (size_t i = 0; i < ks.size(); ++i) {
    const plan::Kernel &k = ks[i];
    if (isConvFamily(k.op) || isNormalization(k.op)) {
      CpuState &s = *states[i];
      if (!s.prim)
        continue;
      if (isConvFamily(k.op)) {
        auto [x, y] = convXY(k);
        s.xLanes = lanesOf(x);
        s.yLanes = lanesOf(y);
      } else {
        s.lanes = lanesOf(k.in[0]);
      }
      if (s.xLanes == 1 && s.yLanes == 1 && s.lanes == 1 && !s.relu)
        continue; // as made above
      try {
        s.prim = makePrimitive(calls[i], s);
      } catch (const kernels::KernelError &e) {
        throw named(k, e);
      }
    } else if (k.op == Op::MaxPool || k.op == Op::Unpool ||
               k.op == Op::UnpoolGrad || k.op == Op::BiasGrad) {
      states[i] = std::make_unique<CpuState>();
      states[i]->lanes = lanesOf(k.in[0]);
    }
  }
  for (auto &s : states)
    out.states.push_back(std::move(s));
  return out;
}

namespace {

/// Runs a conv-family kernel at batch n on its primitive (the planned
/// batch's, or the tail's made now), or on im2col + sgemm.
void runConv(const KernelCall &c, CpuState &s) {
  const plan::Kernel &k = c.kernel;
  ConvOperands o = convOperands(k.op, c.attrs, c.in, c.out);
  float *x = o.x->f32(), *w = o.w->f32(), *y = o.y->f32();
  const float *bias = c.in.size() > 2 ? c.in[2].f32() : nullptr;
  if (s.relu)
    y = s.reluOut;
  if (s.prim) {
    void *workspace;
    primitiveFor<ConvPrimitive>(c, s, workspace).run(x, w, bias, y, workspace);
    return;
  }
  switch (k.op) {
  case Op::Conv2D:
    cpu::conv2dForward(o.shape, x, w, bias, y);
    break;
  case Op::Deconv2D:
    cpu::deconv2dForward(o.shape, x, w, bias, y);
    break;
  case Op::Conv2DGradInput:
    cpu::conv2dBackwardData(o.shape, y, w, x);
    break;
  case Op::Conv2DGradWeight:
    cpu::conv2dBackwardFilter(o.shape, x, y, w);
    break;
  case Op::Deconv2DGradInput:
    cpu::deconv2dBackwardData(o.shape, y, w, x);
    break;
  default:
    cpu::deconv2dBackwardFilter(o.shape, x, y, w);
    break;
  }
}

/// Runs an fc-family kernel on its primitive, or on sgemm.
void runFC(const KernelCall &c, CpuState *s) {
  Op op = c.kernel.op;
  float *in0 = c.in[0].f32(), *in1 = c.in[1].f32(), *out0 = c.out[0].f32();
  const float *bias = c.in.size() > 2 ? c.in[2].f32() : nullptr;
  if (s && s->prim) {
    void *ws;
    ConvPrimitive &p = primitiveFor<ConvPrimitive>(c, *s, ws);
    switch (op) {
    case Op::FC: // (x, w, b) -> y
      p.run(in0, in1, bias, out0, ws);
      break;
    case Op::FCGradInput: // (dy, w) -> dx
      p.run(out0, in1, nullptr, in0, ws);
      break;
    default: // (x, dy) -> dw
      p.run(in0, out0, nullptr, in1, ws);
      break;
    }
    return;
  }
  FCDims d = fcDims(op, c.in, c.out);
  switch (op) {
  case Op::FC:
    cpu::fcForward(d.n, d.in, d.out, in0, in1, bias, out0);
    break;
  case Op::FCGradInput:
    cpu::fcBackwardData(d.n, d.in, d.out, in0, in1, out0);
    break;
  default:
    cpu::fcBackwardFilter(d.n, d.in, d.out, in0, in1, out0);
    break;
  }
}

/// Runs a batch norm or LRN kernel on its primitive.
void runNormalization(const KernelCall &c, CpuState &s) {
  const KernelAttrs &a = c.attrs;
  auto in = [&](size_t i) { return c.in[i].f32(); };
  auto out = [&](size_t i) { return c.out[i].f32(); };
  void *ws;
  switch (c.kernel.op) {
  case Op::BatchNorm: // x, scale, shift, running mean, running var -> y
    primitiveFor<BatchNormPrimitive>(c, s, ws).forward(
        !a.inference && c.ctx.training, in(0), in(1), in(2), in(3), in(4),
        a.bnMomentum, out(0), ws);
    break;
  case Op::BatchNormGrad: // dy, x, scale -> dx, dscale, dshift
    primitiveFor<BatchNormPrimitive>(c, s, ws).backward(
        in(0), in(1), in(2), out(0), out(1), out(2), ws);
    break;
  case Op::LRN:
    primitiveFor<LrnPrimitive>(c, s, ws).forward(in(0), out(0), ws);
    break;
  default: // lrn_grad: dy, x, y -> dx
    primitiveFor<LrnPrimitive>(c, s, ws).backward(in(0), in(1), out(0), ws);
    break;
  }
}

/// Walks a cuda/Kernels.h functor's items in parallel chunks.
template <typename F> void runItems(const F &f) {
  cpu::parallelChunks(f.items(), 1 << 12, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i)
      f(i);
  });
}

} // namespace

void CpuBackend::run(const KernelCall &c) {
  const KernelAttrs &a = c.attrs;
  const plan::Kernel &k = c.kernel;
  auto *state = static_cast<CpuState *>(c.state);
  auto in = [&](size_t i) { return c.in[i].f32(); };
  auto out = [&](size_t i) { return c.out[i].f32(); };
  if (isConvFamily(k.op)) {
    runConv(c, *state);
    return;
  }
  if (isFcFamily(k.op)) {
    runFC(c, state);
    return;
  }
  if (isNormalization(k.op) && state && state->prim) {
    runNormalization(c, *state);
    return;
  }
  switch (k.op) {
  // Cheap kernels, split into chunks (elements, channels or images) that
  // run the reference loops in parallel: results identical to the
  // reference's, element for element, in any layout.
  case Op::Relu: {
    if (state && state->skip)
      return;
    const float *x = in(0);
    float *y = out(0);
    cpu::parallelChunks(c.in[0].count, kElementGrain,
                        [&](int64_t b, int64_t e, int) {
                          ref::reluForward(e - b, x + b, y + b);
                        });
    return;
  }
  case Op::ReluGrad: {
    const float *dy = in(0), *y = in(1);
    float *dx = out(0);
    cpu::parallelChunks(c.in[0].count, kElementGrain,
                        [&](int64_t b, int64_t e, int) {
                          ref::reluBackward(e - b, y + b, dy + b, dx + b);
                        });
    return;
  }
  case Op::Add: {
    const float *x = in(0), *y = in(1);
    float *z = out(0);
    cpu::parallelChunks(c.in[0].count, kElementGrain,
                        [&](int64_t b, int64_t e, int) {
                          ref::add(e - b, x + b, y + b, z + b);
                        });
    return;
  }
  case Op::AllReduceMean:
    hostAllReduceMean(c);
    return;
  case Op::SGDUpdate: {
    float *w = c.param->value.data(), *v = c.param->momentum.data();
    const float *g = in(0);
    cpu::parallelChunks(
        c.in[0].count, kElementGrain, [&](int64_t b, int64_t e, int) {
          ref::sgdUpdate(e - b, w + b, g + b, v + b, c.ctx.lr, c.ctx.momentum,
                         c.ctx.decay, a.lrMult, a.decayMult);
        });
    return;
  }
  case Op::BiasGrad:
    cpu::biasGrad(c.in[0].dims, state ? state->lanes : 1, in(0), out(0));
    return;
  case Op::MaxPool:
    cpu::maxPool(kernels::poolShape(c.in[0].dims, a.win, a.ceil),
                 state ? state->lanes : 1, in(0), out(0), c.out[1].switches());
    return;
  case Op::Unpool:
  case Op::UnpoolGrad: {
    // The pooled side (unpool's input, unpool_grad's output) and the
    // unpooled side; switches have the pooled side's shape.
    bool forward = k.op == Op::Unpool;
    const kernels::Dims4 pooled = forward ? c.in[0].dims : c.out[0].dims;
    int64_t sizeH = forward ? a.sizeH : c.in[0].dims.h;
    int64_t sizeW = forward ? a.sizeW : c.in[0].dims.w;
    kernels::UnpoolShape s = kernels::unpoolShape(pooled, a.win, sizeH, sizeW,
                                                  a.posH, a.posW, a.normalize);
    const kernels::Switch *sw = c.in.size() > 1 ? c.in[1].switches() : nullptr;
    int64_t lanes = state ? state->lanes : 1;
    // Disjoint windows: a scatter (a gather back), else the GPU's gathers,
    // which sum overlapping contributions in the reference's order.
    bool disjoint = cpu::unpoolWindowsDisjoint(s);
    if (forward && disjoint)
      cpu::unpoolScatter(s, lanes, in(0), sw, out(0));
    else if (forward)
      runItems(cuda::makeUnpoolForward(s, in(0), sw, out(0), lanes));
    else if (disjoint)
      cpu::unpoolBackwardGather(s, lanes, in(0), sw, out(0));
    else
      runItems(cuda::makeUnpoolBackward(s, in(0), sw, out(0), lanes));
    return;
  }
  default:
    reference_.run(c);
    return;
  }
}

} // namespace netc::exec
