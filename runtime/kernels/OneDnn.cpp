//===- OneDnn.cpp - the cpu backend's oneDNN primitives -------------------===//

#include "runtime/kernels/OneDnn.h"

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
    user = memory(userMd, engine(), DNNL_MEMORY_NONE);
    if (userMd == primMd) {
      prim = user;
      return;
    }
    reordered = true;
    prim = memory(primMd, engine(), DNNL_MEMORY_NONE);
    offset = workspace;
    workspace += aligned(primMd.get_size());
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
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

} // namespace

int64_t channelBlock() {
  static const int64_t block =
      dnnl::get_effective_cpu_isa() >= dnnl::cpu_isa::avx512_core ? 16 : 8;
  return block;
}

struct ConvPrimitive::Impl {
  ConvPass pass;
  dnnl::primitive primitive;
  std::string name;
  Operand x, w, y;
  memory bias, scratchpad;
  bool hasBias = false;
  uint64_t scratchpadOffset = 0, workspace = 0;
  std::unordered_map<int, memory> args;
};

namespace {

/// The primitive descriptors of a convolution family (dnnl::convolution_*
/// or dnnl::deconvolution_*): the forward pass (also the backward passes'
/// hint), and the pass asked for.
template <typename Fwd, typename BwdData, typename BwdWeights>
void create(ConvPrimitive::Impl &m, dnnl::algorithm algo,
            const memory::desc &xAny, const memory::desc &wAny,
            const memory::desc &yAny, const memory::desc *biasMd,
            const memory::dims &strides, const memory::dims &padL,
            const memory::dims &padR, bool relu,
            const memory::desc &xUser, const memory::desc &wUser,
            const memory::desc &yUser) {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  dnnl::primitive_attr fwdAttr = attr;
  if (relu) {
    dnnl::post_ops ops;
    ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
    fwdAttr.set_post_ops(ops);
  }
  typename Fwd::desc fd =
      biasMd ? typename Fwd::desc(dnnl::prop_kind::forward_training, algo,
                                  xAny, wAny, *biasMd, yAny, strides, padL,
                                  padR)
             : typename Fwd::desc(dnnl::prop_kind::forward_training, algo,
                                  xAny, wAny, yAny, strides, padL, padR);
  typename Fwd::primitive_desc fpd(fd, fwdAttr, engine());
  uint64_t &ws = m.workspace;
  auto finish = [&](const dnnl::primitive_desc_base &pd,
                    dnnl::primitive prim) {
    m.primitive = std::move(prim);
    m.name = pd.impl_info_str();
    m.scratchpadOffset = ws;
    m.scratchpad =
        memory(pd.scratchpad_desc(), engine(), DNNL_MEMORY_NONE);
    ws += aligned(pd.scratchpad_desc().get_size());
  };
  switch (m.pass) {
  case ConvPass::Forward:
    m.x.bind(xUser, fpd.src_desc(), true, ws);
    m.w.bind(wUser, fpd.weights_desc(), true, ws);
    m.y.bind(yUser, fpd.dst_desc(), false, ws);
    finish(fpd, Fwd(fpd));
    m.args = {{DNNL_ARG_SRC, m.x.prim},
              {DNNL_ARG_WEIGHTS, m.w.prim},
              {DNNL_ARG_DST, m.y.prim}};
    break;
  case ConvPass::BackwardData: {
    typename BwdData::desc d(algo, xAny, wAny, yAny, strides, padL, padR);
    typename BwdData::primitive_desc pd(d, attr, engine(), fpd);
    m.y.bind(yUser, pd.diff_dst_desc(), true, ws);
    m.w.bind(wUser, pd.weights_desc(), true, ws);
    m.x.bind(xUser, pd.diff_src_desc(), false, ws);
    finish(pd, BwdData(pd));
    m.args = {{DNNL_ARG_DIFF_DST, m.y.prim},
              {DNNL_ARG_WEIGHTS, m.w.prim},
              {DNNL_ARG_DIFF_SRC, m.x.prim}};
    break;
  }
  case ConvPass::BackwardWeights: {
    typename BwdWeights::desc d(algo, xAny, wAny, yAny, strides, padL, padR);
    typename BwdWeights::primitive_desc pd(d, attr, engine(), fpd);
    m.x.bind(xUser, pd.src_desc(), true, ws);
    m.y.bind(yUser, pd.diff_dst_desc(), true, ws);
    m.w.bind(wUser, pd.diff_weights_desc(), false, ws);
    finish(pd, BwdWeights(pd));
    m.args = {{DNNL_ARG_SRC, m.x.prim},
              {DNNL_ARG_DIFF_DST, m.y.prim},
              {DNNL_ARG_DIFF_WEIGHTS, m.w.prim}};
    break;
  }
  }
  m.args[DNNL_ARG_SCRATCHPAD] = m.scratchpad;
  if (m.hasBias) {
    m.bias = memory(*biasMd, engine(), DNNL_MEMORY_NONE);
    m.args[DNNL_ARG_BIAS] = m.bias;
  }
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
  try {
    if (transposed)
      create<dnnl::deconvolution_forward, dnnl::deconvolution_backward_data,
             dnnl::deconvolution_backward_weights>(
          m, dnnl::algorithm::deconvolution_direct, xAny, wAny, yAny,
          m.hasBias ? &biasMd : nullptr, strides, padL, padR, relu, xUser,
          wUser, yUser);
    else
      create<dnnl::convolution_forward, dnnl::convolution_backward_data,
             dnnl::convolution_backward_weights>(
          m, dnnl::algorithm::convolution_direct, xAny, wAny, yAny,
          m.hasBias ? &biasMd : nullptr, strides, padL, padR, relu, xUser,
          wUser, yUser);
  } catch (const dnnl::error &e) {
    throw KernelError(fmt::format("oneDNN has no {} for this geometry: {}",
                                  transposed ? "deconvolution"
                                             : "convolution",
                                  e.what()));
  }
}

ConvPrimitive::~ConvPrimitive() = default;

uint64_t ConvPrimitive::workspaceBytes() const { return impl_->workspace; }

std::string ConvPrimitive::describe() const {
  const Impl &m = *impl_;
  std::string s = m.name;
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
  m.scratchpad.set_data_handle(ws + m.scratchpadOffset);
  if (m.hasBias)
    m.bias.set_data_handle(const_cast<float *>(b));
  try {
    switch (m.pass) {
    case ConvPass::Forward:
      m.x.toPrimitive();
      m.w.toPrimitive();
      m.primitive.execute(stream(), m.args);
      m.y.fromPrimitive();
      break;
    case ConvPass::BackwardData:
      m.y.toPrimitive();
      m.w.toPrimitive();
      m.primitive.execute(stream(), m.args);
      m.x.fromPrimitive();
      break;
    case ConvPass::BackwardWeights:
      m.x.toPrimitive();
      m.y.toPrimitive();
      m.primitive.execute(stream(), m.args);
      m.w.fromPrimitive();
      break;
    }
    stream().wait();
  } catch (const dnnl::error &e) {
    throw KernelError(fmt::format("oneDNN ({}) failed: {}", m.name, e.what()));
  }
}

} // namespace netc::kernels::onednn
