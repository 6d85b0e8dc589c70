//===- OneDnn.cpp - the cpu backend's oneDNN primitives -------------------===//

#include "runtime/kernels/OneDnn.h"

#include "runtime/kernels/Cpu.h"

#include <fmt/format.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <unordered_map>
#include <vector>

namespace netc::kernels::onednn {

using dnnl::memory;
using Tag = memory::format_tag;

namespace {

dnnl::engine &engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

/// Primitives run on the calling thread's stream (a CPU stream is just the
/// thread that executes).
dnnl::stream &stream() {
  thread_local dnnl::stream s(engine());
  return s;
}

Tag activationTag(int64_t lanes) {
  switch (lanes) {
  case 1:
    return Tag::nchw;
  case 8:
    return Tag::nChw8c;
  case 16:
    return Tag::nChw16c;
  default:
    throw KernelError(fmt::format("no oneDNN layout blocks {} channels", lanes));
  }
}

constexpr uint64_t kAlign = 64;
uint64_t aligned(uint64_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

/// Attributes that leave the scratchpad to the caller (the workspace).
dnnl::primitive_attr userScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

/// Memory of `md` at an offset of the workspace, placed when bound.
struct Scratch {
  memory mem;
  uint64_t offset = 0;

  void bind(const memory::desc &md, uint64_t &workspace) {
    mem = memory(md, engine(), DNNL_MEMORY_NONE);
    offset = workspace;
    workspace += aligned(md.get_size());
  }
  void setHandle(uint8_t *workspace) {
    mem.set_data_handle(workspace + offset);
  }
};

/// Memory in netc's buffers, its data pointer set at every run.
memory userMemory(const memory::desc &md) {
  return memory(md, engine(), DNNL_MEMORY_NONE);
}
void setHandle(memory &m, const float *data) {
  m.set_data_handle(const_cast<float *>(data));
}

/// One operand as netc lays it out (`user`) and as the primitive wants it
/// (`prim`); when the two differ, the reorder between them and the
/// workspace offset of the primitive-side copy.
struct Operand {
  memory user, prim;
  dnnl::reorder reorder;
  bool reordered = false;
  uint64_t offset = 0; ///< of the copy in the workspace

  void bind(const memory::desc &userMd, const memory::desc &primMd,
            bool input, uint64_t &workspace) {
    user = userMemory(userMd);
    if (userMd == primMd) {
      prim = user;
      return;
    }
    reordered = true;
    prim = memory(primMd, engine(), DNNL_MEMORY_NONE);
    offset = workspace;
    workspace += aligned(primMd.get_size());
    dnnl::primitive_attr attr = userScratchpad();
    dnnl::reorder::primitive_desc pd =
        input ? dnnl::reorder::primitive_desc(engine(), userMd, engine(),
                                              primMd, attr)
              : dnnl::reorder::primitive_desc(engine(), primMd, engine(),
                                              userMd, attr);
    if (pd.scratchpad_desc().get_size() != 0)
      throw KernelError("a oneDNN reorder wants scratch memory");
    reorder = dnnl::reorder(pd);
  }
  void setHandles(void *data, uint8_t *workspace) {
    user.set_data_handle(data);
    if (reordered)
      prim.set_data_handle(workspace + offset);
  }
  void toPrimitive() {
    if (reordered)
      reorder.execute(stream(), user, prim);
  }
  void fromPrimitive() {
    if (reordered)
      reorder.execute(stream(), prim, user);
  }
};

/// One oneDNN primitive with its arguments, its scratchpad at an offset of
/// the workspace.
struct Step {
  dnnl::primitive primitive;
  std::string name;
  Scratch scratchpad;
  std::unordered_map<int, memory> args;

  void create(const dnnl::primitive_desc_base &pd, dnnl::primitive p,
              uint64_t &workspace) {
    primitive = std::move(p);
    name = pd.impl_info_str();
    scratchpad.bind(pd.scratchpad_desc(), workspace);
    args[DNNL_ARG_SCRATCHPAD] = scratchpad.mem;
  }
  void execute(uint8_t *workspace) {
    scratchpad.setHandle(workspace);
    primitive.execute(stream(), args);
  }
};

/// Runs f (a primitive's run), oneDNN's errors as KernelError naming `name`.
template <typename F> void guarded(const std::string &name, F f) {
  try {
    f();
    stream().wait();
  } catch (const dnnl::error &e) {
    throw KernelError(fmt::format("oneDNN ({}) failed: {}", name, e.what()));
  }
}

} // namespace

int64_t channelBlock() {
  static const int64_t block =
      dnnl::get_effective_cpu_isa() >= dnnl::cpu_isa::avx512_core ? 16 : 8;
  return block;
}

struct ConvPrimitive::Impl {
  ConvPass pass;
  Step step;
  Operand x, w, y;
  memory bias;
  bool hasBias = false;
  uint64_t workspace = 0;
};

namespace {

/// The primitive of the pass m.pass of a convolution-like family (the
/// dnnl::convolution_*, deconvolution_* or inner_product_* primitives),
/// from its descriptors: the forward pass's `fd` (also the backward passes'
/// hint) and makers of the backward passes' descriptors. `relu` fuses a
/// ReLU into the forward pass.
template <typename Fwd, typename BwdData, typename BwdWeights,
          typename MakeData, typename MakeWeights>
void create(ConvPrimitive::Impl &m, const typename Fwd::desc &fd,
            MakeData makeData, MakeWeights makeWeights,
            const memory::desc &biasMd, bool relu, const memory::desc &xUser,
            const memory::desc &wUser, const memory::desc &yUser) {
  dnnl::primitive_attr attr = userScratchpad();
  dnnl::primitive_attr fwdAttr = attr;
  if (relu) {
    dnnl::post_ops ops;
    ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
    fwdAttr.set_post_ops(ops);
  }
  typename Fwd::primitive_desc fpd(fd, fwdAttr, engine());
  uint64_t &ws = m.workspace;
  std::unordered_map<int, memory> &args = m.step.args;
  switch (m.pass) {
  case ConvPass::Forward:
    m.x.bind(xUser, fpd.src_desc(), true, ws);
    m.w.bind(wUser, fpd.weights_desc(), true, ws);
    m.y.bind(yUser, fpd.dst_desc(), false, ws);
    m.step.create(fpd, Fwd(fpd), ws);
    args[DNNL_ARG_SRC] = m.x.prim;
    args[DNNL_ARG_WEIGHTS] = m.w.prim;
    args[DNNL_ARG_DST] = m.y.prim;
    break;
  case ConvPass::BackwardData: {
    typename BwdData::primitive_desc pd(makeData(), attr, engine(), fpd);
    m.y.bind(yUser, pd.diff_dst_desc(), true, ws);
    m.w.bind(wUser, pd.weights_desc(), true, ws);
    m.x.bind(xUser, pd.diff_src_desc(), false, ws);
    m.step.create(pd, BwdData(pd), ws);
    args[DNNL_ARG_DIFF_DST] = m.y.prim;
    args[DNNL_ARG_WEIGHTS] = m.w.prim;
    args[DNNL_ARG_DIFF_SRC] = m.x.prim;
    break;
  }
  case ConvPass::BackwardWeights: {
    typename BwdWeights::primitive_desc pd(makeWeights(), attr, engine(),
                                           fpd);
    m.x.bind(xUser, pd.src_desc(), true, ws);
    m.y.bind(yUser, pd.diff_dst_desc(), true, ws);
    m.w.bind(wUser, pd.diff_weights_desc(), false, ws);
    m.step.create(pd, BwdWeights(pd), ws);
    args[DNNL_ARG_SRC] = m.x.prim;
    args[DNNL_ARG_DIFF_DST] = m.y.prim;
    args[DNNL_ARG_DIFF_WEIGHTS] = m.w.prim;
    break;
  }
  }
  if (m.hasBias) {
    m.bias = userMemory(biasMd);
    args[DNNL_ARG_BIAS] = m.bias;
  }
}

/// The forward descriptors of the convolution families (`algo` and the
/// geometry `g`) and of the inner product (neither), with or without bias.
template <typename Fwd, typename... Geometry>
typename Fwd::desc forwardDesc(const memory::desc &x, const memory::desc &w,
                               const memory::desc *bias, const memory::desc &y,
                               dnnl::algorithm algo, Geometry... g) {
  auto prop = dnnl::prop_kind::forward_training;
  return bias ? typename Fwd::desc(prop, algo, x, w, *bias, y, g...)
              : typename Fwd::desc(prop, algo, x, w, y, g...);
}
template <typename Fwd>
typename Fwd::desc forwardDesc(const memory::desc &x, const memory::desc &w,
                               const memory::desc *bias,
                               const memory::desc &y) {
  auto prop = dnnl::prop_kind::forward_training;
  return bias ? typename Fwd::desc(prop, x, w, *bias, y)
              : typename Fwd::desc(prop, x, w, y);
}

/// create() for a convolution family (dnnl::convolution_* or
/// dnnl::deconvolution_*) and its geometry; `bias` may be null.
template <typename Fwd, typename Data, typename Weights>
void createConv(ConvPrimitive::Impl &m, dnnl::algorithm algo,
                const memory::desc &xAny, const memory::desc &wAny,
                const memory::desc &yAny, const memory::desc *bias,
                const memory::dims &strides, const memory::dims &padL,
                const memory::dims &padR, bool relu,
                const memory::desc &xUser, const memory::desc &wUser,
                const memory::desc &yUser) {
  create<Fwd, Data, Weights>(
      m, forwardDesc<Fwd>(xAny, wAny, bias, yAny, algo, strides, padL, padR),
      [&] {
        return typename Data::desc(algo, xAny, wAny, yAny, strides, padL,
                                   padR);
      },
      [&] {
        return typename Weights::desc(algo, xAny, wAny, yAny, strides, padL,
                                      padR);
      },
      bias ? *bias : memory::desc(), relu, xUser, wUser, yUser);
}

} // namespace

ConvPrimitive::ConvPrimitive(const ConvShape &s, bool transposed,
                             ConvPass pass, int64_t xLanes, int64_t yLanes,
                             bool bias, bool relu)
    : impl_(std::make_unique<Impl>()) {
  Impl &m = *impl_;
  m.pass = pass;
  m.hasBias = bias && pass == ConvPass::Forward;
  relu = relu && pass == ConvPass::Forward;
  const Window2D &k = s.win;
  int64_t g = s.groups;
  memory::dims xDims = {s.in.n, s.in.c, s.in.h, s.in.w};
  memory::dims yDims = {s.out.n, s.out.c, s.out.h, s.out.w};
  // oneDNN's weights are [G, OC/G, IC/G, kh, kw] for both families, OC
  // being the forward op's output channels; netc's deconv weights hold
  // their [Cin, Cout/g] the other way round (iohw).
  memory::dims wDims =
      g == 1 ? memory::dims{s.out.c, s.in.c, k.kh, k.kw}
             : memory::dims{g, s.out.c / g, s.in.c / g, k.kh, k.kw};
  Tag wTag = g == 1 ? (transposed ? Tag::iohw : Tag::oihw)
                    : (transposed ? Tag::giohw : Tag::goihw);
  memory::dims strides = {k.sh, k.sw}, padL = {k.ph, k.pw};
  // The right padding that makes oneDNN's size rule give s.out: conv out =
  // (in + l + r - k) / s + 1, deconv out = (in - 1) * s + k - l - r.
  memory::dims padR =
      transposed
          ? memory::dims{(s.in.h - 1) * k.sh + k.kh - k.ph - s.out.h,
                         (s.in.w - 1) * k.sw + k.kw - k.pw - s.out.w}
          : memory::dims{(s.out.h - 1) * k.sh + k.kh - s.in.h - k.ph,
                         (s.out.w - 1) * k.sw + k.kw - s.in.w - k.pw};
  auto f32 = memory::data_type::f32;
  memory::desc xAny(xDims, f32, Tag::any), yAny(yDims, f32, Tag::any),
      wAny(wDims, f32, Tag::any);
  memory::desc xUser(xDims, f32, activationTag(xLanes)),
      yUser(yDims, f32, activationTag(yLanes)), wUser(wDims, f32, wTag);
  memory::desc biasMd({s.out.c}, f32, Tag::x);
  const memory::desc *b = m.hasBias ? &biasMd : nullptr;
  try {
    if (transposed)
      createConv<dnnl::deconvolution_forward,
                 dnnl::deconvolution_backward_data,
                 dnnl::deconvolution_backward_weights>(
          m, dnnl::algorithm::deconvolution_direct, xAny, wAny, yAny, b,
          strides, padL, padR, relu, xUser, wUser, yUser);
    else
      createConv<dnnl::convolution_forward, dnnl::convolution_backward_data,
                 dnnl::convolution_backward_weights>(
          m, dnnl::algorithm::convolution_direct, xAny, wAny, yAny, b,
          strides, padL, padR, relu, xUser, wUser, yUser);
  } catch (const dnnl::error &e) {
    throw KernelError(fmt::format("oneDNN has no {} for this geometry: {}",
                                  transposed ? "deconvolution"
                                             : "convolution",
                                  e.what()));
  }
}

ConvPrimitive::ConvPrimitive(int64_t n, int64_t in, int64_t out,
                             ConvPass pass, bool bias)
    : impl_(std::make_unique<Impl>()) {
  Impl &m = *impl_;
  m.pass = pass;
  m.hasBias = bias && pass == ConvPass::Forward;
  auto f32 = memory::data_type::f32;
  memory::dims xDims = {n, in}, wDims = {out, in}, yDims = {n, out};
  memory::desc xUser(xDims, f32, Tag::nc), yUser(yDims, f32, Tag::nc),
      wUser(wDims, f32, Tag::oi);
  memory::desc xAny = xUser, yAny = yUser, wAny = wUser;
  memory::desc biasMd({out}, f32, Tag::x);
  using Data = dnnl::inner_product_backward_data;
  using Weights = dnnl::inner_product_backward_weights;
  try {
    create<dnnl::inner_product_forward, Data, Weights>(
        m,
        forwardDesc<dnnl::inner_product_forward>(
            xAny, wAny, m.hasBias ? &biasMd : nullptr, yAny),
        [&] { return Data::desc(xAny, wAny, yAny); },
        [&] { return Weights::desc(xAny, wAny, yAny); }, biasMd, false,
        xUser, wUser, yUser);
  } catch (const dnnl::error &e) {
    throw KernelError(
        fmt::format("oneDNN has no inner product for this shape: {}",
                    e.what()));
  }
}

ConvPrimitive::~ConvPrimitive() = default;

uint64_t ConvPrimitive::workspaceBytes() const { return impl_->workspace; }

std::string ConvPrimitive::describe() const {
  const Impl &m = *impl_;
  std::string s = m.step.name;
  const char *names[] = {"x", "w", "y"};
  const Operand *ops[] = {&m.x, &m.w, &m.y};
  for (int i = 0; i < 3; ++i)
    if (ops[i]->reordered)
      s += fmt::format(" +reorder({})", names[i]);
  return s;
}

void ConvPrimitive::run(float *x, float *w, const float *b, float *y,
                        void *workspace) {
  Impl &m = *impl_;
  auto *ws = static_cast<uint8_t *>(workspace);
  m.x.setHandles(x, ws);
  m.w.setHandles(w, ws);
  m.y.setHandles(y, ws);
  if (m.hasBias)
    setHandle(m.bias, b);
  // The inputs to the primitive's layouts, the output back from it.
  Operand *ins[2], *result;
  switch (m.pass) {
  case ConvPass::Forward:
    ins[0] = &m.x, ins[1] = &m.w, result = &m.y;
    break;
  case ConvPass::BackwardData:
    ins[0] = &m.y, ins[1] = &m.w, result = &m.x;
    break;
  default:
    ins[0] = &m.x, ins[1] = &m.y, result = &m.w;
    break;
  }
  guarded(m.step.name, [&] {
    ins[0]->toPrimitive();
    ins[1]->toPrimitive();
    m.step.execute(ws);
    result->fromPrimitive();
  });
}

//===----------------------------------------------------------------------===//
// Batch normalisation
//===----------------------------------------------------------------------===//

namespace {

memory::desc activationDesc(const Dims4 &d, int64_t lanes) {
  return memory::desc({d.n, d.c, d.h, d.w}, memory::data_type::f32,
                      activationTag(lanes));
}

/// Per-channel mean and biased variance of x (dims d, layout L lanes) over
/// (N, H, W): two passes, summed in double, channel blocks in parallel.
template <int64_t L>
void channelStats(const Dims4 &d, const float *x, float *mean, float *var) {
  int64_t blocks = d.c / L, plane = d.plane();
  double m = double(d.n * plane);
  cpu::parallelChunks(blocks, 1, [&](int64_t b, int64_t e, int) {
    for (int64_t cb = b; cb < e; ++cb) {
      double sum[L] = {}, sq[L] = {}, mu[L];
      for (int64_t n = 0; n < d.n; ++n) {
        const float *p = x + (n * blocks + cb) * plane * L;
        for (int64_t q = 0; q < plane; ++q)
          for (int64_t l = 0; l < L; ++l)
            sum[l] += double(p[q * L + l]);
      }
      for (int64_t l = 0; l < L; ++l)
        mu[l] = sum[l] / m;
      for (int64_t n = 0; n < d.n; ++n) {
        const float *p = x + (n * blocks + cb) * plane * L;
        for (int64_t q = 0; q < plane; ++q)
          for (int64_t l = 0; l < L; ++l) {
            double v = double(p[q * L + l]) - mu[l];
            sq[l] += v * v;
          }
      }
      for (int64_t l = 0; l < L; ++l) {
        mean[cb * L + l] = float(mu[l]);
        var[cb * L + l] = float(sq[l] / m);
      }
    }
  });
}

} // namespace

struct BatchNormPrimitive::Impl {
  Dims4 d;
  int64_t lanes = 1;
  bool backward = false;
  Step train, infer, bwd;
  memory x, y, scale, shift, runMean, runVar, dy, dx, dscale, dshift;
  Scratch mean, var; ///< the batch statistics
  uint64_t workspace = 0;
};

BatchNormPrimitive::BatchNormPrimitive(const Dims4 &d, int64_t lanes,
                                       double eps, bool backward)
    : impl_(std::make_unique<Impl>()) {
  Impl &m = *impl_;
  m.d = d;
  m.lanes = lanes;
  m.backward = backward;
  using Fwd = dnnl::batch_normalization_forward;
  using Bwd = dnnl::batch_normalization_backward;
  using Flags = dnnl::normalization_flags;
  Flags flags = Flags::use_scale | Flags::use_shift;
  memory::desc data = activationDesc(d, lanes);
  // Scale, shift, statistics and their gradients: one float per channel.
  memory::desc channels({d.c}, memory::data_type::f32, Tag::x);
  dnnl::primitive_attr attr = userScratchpad();
  uint64_t &ws = m.workspace;
  try {
    Fwd::primitive_desc tpd(
        Fwd::desc(dnnl::prop_kind::forward_training, data, float(eps), flags),
        attr, engine());
    m.x = userMemory(data);
    m.scale = userMemory(channels);
    m.mean.bind(channels, ws);
    m.var.bind(channels, ws);
    if (!backward) {
      Fwd::primitive_desc ipd(Fwd::desc(dnnl::prop_kind::forward_inference,
                                        data, float(eps),
                                        flags | Flags::use_global_stats),
                              attr, engine());
      m.y = userMemory(data);
      m.shift = userMemory(channels);
      m.runMean = userMemory(channels);
      m.runVar = userMemory(channels);
      m.train.create(tpd, Fwd(tpd), ws);
      m.infer.create(ipd, Fwd(ipd), ws);
      for (Step *s : {&m.train, &m.infer}) {
        s->args[DNNL_ARG_SRC] = m.x;
        s->args[DNNL_ARG_SCALE] = m.scale;
        s->args[DNNL_ARG_SHIFT] = m.shift;
        s->args[DNNL_ARG_DST] = m.y;
      }
      m.train.args[DNNL_ARG_MEAN] = m.mean.mem;
      m.train.args[DNNL_ARG_VARIANCE] = m.var.mem;
      m.infer.args[DNNL_ARG_MEAN] = m.runMean;
      m.infer.args[DNNL_ARG_VARIANCE] = m.runVar;
      return;
    }
    Bwd::primitive_desc pd(
        Bwd::desc(dnnl::prop_kind::backward, data, data, float(eps), flags),
        attr, engine(), tpd);
    m.dy = userMemory(data);
    m.dx = userMemory(data);
    m.dscale = userMemory(channels);
    m.dshift = userMemory(channels);
    m.bwd.create(pd, Bwd(pd), ws);
    m.bwd.args[DNNL_ARG_SRC] = m.x;
    m.bwd.args[DNNL_ARG_MEAN] = m.mean.mem;
    m.bwd.args[DNNL_ARG_VARIANCE] = m.var.mem;
    m.bwd.args[DNNL_ARG_DIFF_DST] = m.dy;
    m.bwd.args[DNNL_ARG_SCALE] = m.scale;
    // oneDNN 2.6 counts the shift among the backward pass's inputs (it
    // does not read it): the scale stands in.
    m.bwd.args[DNNL_ARG_SHIFT] = m.scale;
    m.bwd.args[DNNL_ARG_DIFF_SRC] = m.dx;
    m.bwd.args[DNNL_ARG_DIFF_SCALE] = m.dscale;
    m.bwd.args[DNNL_ARG_DIFF_SHIFT] = m.dshift;
  } catch (const dnnl::error &e) {
    throw KernelError(fmt::format(
        "oneDNN has no batch normalization for this shape: {}", e.what()));
  }
}

BatchNormPrimitive::~BatchNormPrimitive() = default;

uint64_t BatchNormPrimitive::workspaceBytes() const {
  return impl_->workspace;
}

std::string BatchNormPrimitive::describe() const {
  const Impl &m = *impl_;
  return m.backward ? m.bwd.name : m.train.name;
}

void BatchNormPrimitive::forward(bool training, const float *x,
                                 const float *scale, const float *shift,
                                 float *runningMean, float *runningVar,
                                 double momentum, float *y, void *workspace) {
  Impl &m = *impl_;
  if (m.backward)
    throw KernelError("a batch norm gradient primitive run forward");
  auto *ws = static_cast<uint8_t *>(workspace);
  setHandle(m.x, x);
  setHandle(m.scale, scale);
  setHandle(m.shift, shift);
  setHandle(m.y, y);
  if (!training) {
    setHandle(m.runMean, runningMean);
    setHandle(m.runVar, runningVar);
    guarded(m.infer.name, [&] { m.infer.execute(ws); });
    return;
  }
  m.mean.setHandle(ws);
  m.var.setHandle(ws);
  guarded(m.train.name, [&] { m.train.execute(ws); });
  const auto *mean = reinterpret_cast<const float *>(ws + m.mean.offset);
  const auto *var = reinterpret_cast<const float *>(ws + m.var.offset);
  int64_t count = m.d.n * m.d.plane();
  double unbias = count > 1 ? double(count) / double(count - 1) : 1.0;
  for (int64_t c = 0; c < m.d.c; ++c) {
    runningMean[c] = float(momentum * double(runningMean[c]) +
                           (1.0 - momentum) * double(mean[c]));
    runningVar[c] = float(momentum * double(runningVar[c]) +
                          (1.0 - momentum) * double(var[c]) * unbias);
  }
}

void BatchNormPrimitive::backward(const float *dy, const float *x,
                                  const float *scale, float *dx,
                                  float *dscale, float *dshift,
                                  void *workspace) {
  Impl &m = *impl_;
  if (!m.backward)
    throw KernelError("a batch norm forward primitive run backward");
  auto *ws = static_cast<uint8_t *>(workspace);
  auto *mean = reinterpret_cast<float *>(ws + m.mean.offset);
  auto *var = reinterpret_cast<float *>(ws + m.var.offset);
  switch (m.lanes) {
  case 1:
    channelStats<1>(m.d, x, mean, var);
    break;
  case 8:
    channelStats<8>(m.d, x, mean, var);
    break;
  default:
    channelStats<16>(m.d, x, mean, var);
    break;
  }
  m.mean.setHandle(ws);
  m.var.setHandle(ws);
  setHandle(m.x, x);
  setHandle(m.scale, scale);
  setHandle(m.dy, dy);
  setHandle(m.dx, dx);
  setHandle(m.dscale, dscale);
  setHandle(m.dshift, dshift);
  guarded(m.bwd.name, [&] { m.bwd.execute(ws); });
}

//===----------------------------------------------------------------------===//
// LRN
//===----------------------------------------------------------------------===//

struct LrnPrimitive::Impl {
  bool backward = false;
  /// Forward: the forward pass. Backward: the forward training pass that
  /// recomputes oneDNN's workspace (only where the backward pass reads
  /// one), then the backward pass.
  Step fwd, bwd;
  bool recompute = false;
  Operand x, y, dy, dx;
  Scratch yCopy, lrnWorkspace; ///< the recomputing forward's outputs
  uint64_t workspace = 0;
};

LrnPrimitive::LrnPrimitive(const Dims4 &d, int64_t lanes, const LrnParams &p,
                           bool backward)
    : impl_(std::make_unique<Impl>()) {
  if (p.size <= 0 || p.size % 2 == 0)
    throw KernelError(
        fmt::format("lrn: size {} must be odd and positive", p.size));
  Impl &m = *impl_;
  m.backward = backward;
  using Fwd = dnnl::lrn_forward;
  using Bwd = dnnl::lrn_backward;
  auto algo = dnnl::algorithm::lrn_across_channels;
  // Plain operands with whole channel blocks are reordered to the blocked
  // layout and back: oneDNN's plain LRN gradient is its slow reference.
  memory::desc user = activationDesc(d, lanes);
  memory::desc data = lanes == 1 && d.c % channelBlock() == 0
                          ? activationDesc(d, channelBlock())
                          : user;
  dnnl::primitive_attr attr = userScratchpad();
  uint64_t &ws = m.workspace;
  auto alpha = float(p.alpha), beta = float(p.beta), k = float(p.k);
  try {
    m.x.bind(user, data, true, ws);
    if (!backward) {
      Fwd::primitive_desc pd(Fwd::desc(dnnl::prop_kind::forward_inference,
                                       algo, data, p.size, alpha, beta, k),
                             attr, engine());
      m.y.bind(user, data, false, ws);
      m.fwd.create(pd, Fwd(pd), ws);
      m.fwd.args[DNNL_ARG_SRC] = m.x.prim;
      m.fwd.args[DNNL_ARG_DST] = m.y.prim;
      return;
    }
    Fwd::primitive_desc fpd(Fwd::desc(dnnl::prop_kind::forward_training,
                                      algo, data, p.size, alpha, beta, k),
                            attr, engine());
    Bwd::primitive_desc pd(
        Bwd::desc(algo, data, data, p.size, alpha, beta, k), attr, engine(),
        fpd);
    m.dy.bind(user, data, true, ws);
    m.dx.bind(user, data, false, ws);
    m.bwd.create(pd, Bwd(pd), ws);
    m.bwd.args[DNNL_ARG_SRC] = m.x.prim;
    m.bwd.args[DNNL_ARG_DIFF_DST] = m.dy.prim;
    m.bwd.args[DNNL_ARG_DIFF_SRC] = m.dx.prim;
    m.recompute = pd.workspace_desc().get_size() != 0;
    if (m.recompute) {
      m.yCopy.bind(fpd.dst_desc(), ws);
      m.lrnWorkspace.bind(fpd.workspace_desc(), ws);
      m.fwd.create(fpd, Fwd(fpd), ws);
      m.fwd.args[DNNL_ARG_SRC] = m.x.prim;
      m.fwd.args[DNNL_ARG_DST] = m.yCopy.mem;
      m.fwd.args[DNNL_ARG_WORKSPACE] = m.lrnWorkspace.mem;
      m.bwd.args[DNNL_ARG_WORKSPACE] = m.lrnWorkspace.mem;
    }
  } catch (const dnnl::error &e) {
    throw KernelError(
        fmt::format("oneDNN has no LRN for this shape: {}", e.what()));
  }
}

LrnPrimitive::~LrnPrimitive() = default;

uint64_t LrnPrimitive::workspaceBytes() const { return impl_->workspace; }

std::string LrnPrimitive::describe() const {
  const Impl &m = *impl_;
  std::string s = m.backward ? m.bwd.name : m.fwd.name;
  if (m.recompute)
    s += " +forward " + m.fwd.name;
  if (m.x.reordered)
    s += " +reorders";
  return s;
}

void LrnPrimitive::forward(const float *x, float *y, void *workspace) {
  Impl &m = *impl_;
  if (m.backward)
    throw KernelError("an LRN gradient primitive run forward");
  auto *ws = static_cast<uint8_t *>(workspace);
  m.x.setHandles(const_cast<float *>(x), ws);
  m.y.setHandles(y, ws);
  guarded(m.fwd.name, [&] {
    m.x.toPrimitive();
    m.fwd.execute(ws);
    m.y.fromPrimitive();
  });
}

void LrnPrimitive::backward(const float *dy, const float *x, float *dx,
                            void *workspace) {
  Impl &m = *impl_;
  if (!m.backward)
    throw KernelError("an LRN forward primitive run backward");
  auto *ws = static_cast<uint8_t *>(workspace);
  m.x.setHandles(const_cast<float *>(x), ws);
  m.dy.setHandles(const_cast<float *>(dy), ws);
  m.dx.setHandles(dx, ws);
  guarded(m.bwd.name, [&] {
    m.x.toPrimitive();
    m.dy.toPrimitive();
    if (m.recompute) {
      m.yCopy.setHandle(ws);
      m.lrnWorkspace.setHandle(ws);
      m.fwd.execute(ws);
    }
    m.bwd.execute(ws);
    m.dx.fromPrimitive();
  });
}

} // namespace netc::kernels::onednn
