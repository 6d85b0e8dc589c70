//===- KernelCall.cpp - what every backend shares about a kernel ----------===//

#include "runtime/exec/KernelCall.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>

namespace netc::exec {

using kernels::ConvShape;
using kernels::Dims4;
using kernels::KernelError;
using kernels::PoolShape;
using kernels::UnpoolShape;
using plan::Op;
using plan::PlanError;

kernels::Dims4 dimsOf(const plan::Value &v, int64_t n) {
  std::vector<int64_t> s;
  for (int64_t d : v.shape)
    s.push_back(d < 0 ? n : d);
  Dims4 d{1, 1, 1, 1};
  if (s.size() > 0)
    d.n = s[0];
  if (s.size() > 1)
    d.c = s[1];
  if (s.size() > 2)
    d.h = s[2];
  if (s.size() > 3)
    d.w = s[3];
  for (size_t i = 4; i < s.size(); ++i)
    d.w *= s[i];
  return d;
}

//===----------------------------------------------------------------------===//
// Attributes
//===----------------------------------------------------------------------===//

KernelAttrs decodeAttrs(const plan::Kernel &k) {
  KernelAttrs a;
  auto window = [&](bool kernelAttr) {
    if (kernelAttr) {
      auto ks = k.ints("kernel", 2);
      a.win.kh = ks[0];
      a.win.kw = ks[1];
    }
    auto st = k.ints("stride", 2, std::vector<int64_t>{1, 1});
    auto pd = k.ints("pad", 2, std::vector<int64_t>{0, 0});
    a.win.sh = st[0];
    a.win.sw = st[1];
    a.win.ph = pd[0];
    a.win.pw = pd[1];
  };
  switch (k.op) {
  case Op::Conv2D:
  case Op::Conv2DGradInput:
  case Op::Conv2DGradWeight:
  case Op::Deconv2DGradInput:
  case Op::Deconv2DGradWeight:
    window(false);
    a.groups = k.i64("groups", 1);
    break;
  case Op::Deconv2D: {
    window(false);
    a.groups = k.i64("groups", 1);
    auto op = k.ints("output_padding", 2, std::vector<int64_t>{0, 0});
    a.outPadH = op[0];
    a.outPadW = op[1];
    break;
  }
  case Op::MaxPool:
  case Op::AvgPool:
  case Op::AvgPoolGrad:
    window(true);
    a.ceil = k.flag("ceil") || k.flag("ceil_mode");
    break;
  case Op::Unpool:
  case Op::UnpoolGrad: {
    window(true);
    if (k.op == Op::Unpool) {
      auto sz = k.ints("size", 2);
      a.sizeH = sz[0];
      a.sizeW = sz[1];
    }
    auto pos = k.ints("position", 2, std::vector<int64_t>{0, 0});
    a.posH = pos[0];
    a.posW = pos[1];
    a.normalize = k.flag("normalize");
    break;
  }
  case Op::Dropout:
  case Op::DropoutGrad:
    a.ratio = k.f64("ratio");
    a.seed = uint64_t(k.i64("seed"));
    if (!(a.ratio >= 0 && a.ratio < 1))
      throw PlanError(
          fmt::format("{}.attrs.ratio: {} is not in [0, 1)", k.path, a.ratio));
    break;
  case Op::LRN:
  case Op::LRNGrad:
    a.lrn.size = k.i64("size");
    a.lrn.alpha = k.f64("alpha");
    a.lrn.beta = k.f64("beta");
    a.lrn.k = k.f64("k");
    break;
  case Op::BatchNorm:
    a.eps = k.f64("eps");
    a.bnMomentum = k.f64("momentum");
    a.inference = k.flag("inference");
    break;
  case Op::BatchNormGrad:
    a.eps = k.f64("eps");
    break;
  case Op::SoftmaxCrossEntropyGrad:
  case Op::EuclideanLossGrad:
    a.scale = k.f64("scale");
    break;
  case Op::Scale:
    a.scale = k.f64("factor");
    break;
  case Op::Objective:
    a.weights = k.f64s("weights");
    break;
  case Op::SGDUpdate:
    a.param = k.str("param");
    a.lrMult = k.f64("lr_mult");
    a.decayMult = k.f64("decay_mult");
    break;
  default:
    break;
  }
  return a;
}

//===----------------------------------------------------------------------===//
// Geometry: shapes every kernel derives from its operands, checked against
// the plan's declared shapes.
//===----------------------------------------------------------------------===//

namespace {
/// A kernel's operands as geometry() reads them.
struct KernelOperands {
  const std::vector<TensorRef> &in, &out;
};

struct Geometry {
  ConvShape conv;
  PoolShape pool;
  UnpoolShape unpool;
  int64_t n = 0, in = 0, out = 0; ///< fc and losses
};

std::string str(const Dims4 &d) {
  return fmt::format("[{}, {}, {}, {}]", d.n, d.c, d.h, d.w);
}

void expectDims(const char *what, const Dims4 &got, const Dims4 &want) {
  if (got != want)
    throw KernelError(fmt::format("{} is {} but the kernel computes {}", what,
                                  str(got), str(want)));
}
void expectCount(const char *what, int64_t got, int64_t want) {
  if (got != want)
    throw KernelError(
        fmt::format("{} has {} elements, expected {}", what, got, want));
}

/// Spatial dims of a map (rank 4); flat values are not maps.
void expectMap(const char *what, const TensorRef &t, const plan::Value &v) {
  if (v.shape.size() != 4)
    throw KernelError(fmt::format("{} must be a [N, C, H, W] map", what));
}

Geometry geometry(const plan::Kernel &k, const KernelAttrs &a,
                  const KernelOperands &c, const plan::Program &p,
                  int64_t paramCount) {
  auto val = [&](int64_t id) -> const plan::Value & { return p.value(id); };
  auto inV = [&](size_t i) -> const plan::Value & { return val(k.in[i]); };
  auto outV = [&](size_t i) -> const plan::Value & { return val(k.out[i]); };
  Geometry g;
  kernels::Window2D win = a.win;
  switch (k.op) {
  case Op::Conv2D:
  case Op::Deconv2D: {
    expectMap("input", c.in[0], inV(0));
    expectMap("weight", c.in[1], inV(1));
    const Dims4 &w = c.in[1].dims;
    win.kh = w.h;
    win.kw = w.w;
    g.conv = k.op == Op::Conv2D
                 ? kernels::conv2dShape(c.in[0].dims, w.n, win, a.groups)
                 : kernels::deconv2dShape(c.in[0].dims, w.c * a.groups, win,
                                          a.groups, a.outPadH, a.outPadW);
    expectDims("output", c.out[0].dims, g.conv.out);
    if (k.op == Op::Conv2D)
      expectCount("weight", c.in[1].count,
                  g.conv.out.c * (g.conv.in.c / a.groups) * w.h * w.w);
    else
      expectCount("weight", c.in[1].count,
                  g.conv.in.c * (g.conv.out.c / a.groups) * w.h * w.w);
    if (c.in.size() > 2)
      expectCount("bias", c.in[2].count, g.conv.out.c);
    break;
  }
  case Op::Conv2DGradInput:
  case Op::Conv2DGradWeight:
  case Op::Deconv2DGradInput:
  case Op::Deconv2DGradWeight: {
    bool gradInput =
        k.op == Op::Conv2DGradInput || k.op == Op::Deconv2DGradInput;
    // x: the forward op's input; w: its weight; dy: its output's gradient.
    const TensorRef &x = gradInput ? c.out[0] : c.in[0];
    const TensorRef &w = gradInput ? c.in[1] : c.out[0];
    const TensorRef &dy = gradInput ? c.in[0] : c.in[1];
    expectMap("input", x, gradInput ? outV(0) : inV(0));
    expectMap("weight", w, gradInput ? inV(1) : outV(0));
    expectMap("gradient", dy, gradInput ? inV(0) : inV(1));
    win.kh = w.dims.h;
    win.kw = w.dims.w;
    if (k.op == Op::Conv2DGradInput || k.op == Op::Conv2DGradWeight) {
      g.conv = kernels::conv2dShape(x.dims, w.dims.n, win, a.groups);
    } else {
      int64_t opH = dy.dims.h - ((x.dims.h - 1) * win.sh - 2 * win.ph + win.kh);
      int64_t opW = dy.dims.w - ((x.dims.w - 1) * win.sw - 2 * win.pw + win.kw);
      g.conv = kernels::deconv2dShape(x.dims, w.dims.c * a.groups, win,
                                      a.groups, opH, opW);
    }
    expectDims("gradient", dy.dims, g.conv.out);
    break;
  }
  case Op::MaxPool:
  case Op::AvgPool:
    expectMap("input", c.in[0], inV(0));
    g.pool = kernels::poolShape(c.in[0].dims, win, a.ceil);
    expectDims("output", c.out[0].dims, g.pool.out);
    if (k.op == Op::MaxPool) {
      expectCount("switches", c.out[1].count, g.pool.out.count());
      kernels::checkSwitchWindow("max_pool", win);
    }
    break;
  case Op::AvgPoolGrad:
    expectMap("input gradient", c.out[0], outV(0));
    g.pool = kernels::poolShape(c.out[0].dims, win, a.ceil);
    expectDims("gradient", c.in[0].dims, g.pool.out);
    break;
  case Op::Unpool:
    expectMap("input", c.in[0], inV(0));
    g.unpool = kernels::unpoolShape(c.in[0].dims, win, a.sizeH, a.sizeW, a.posH,
                                    a.posW, a.normalize);
    expectDims("output", c.out[0].dims, g.unpool.out);
    if (c.in.size() > 1) {
      expectCount("switches", c.in[1].count, c.in[0].count);
      kernels::checkSwitchWindow("unpool", win);
    }
    break;
  case Op::UnpoolGrad:
    expectMap("gradient", c.in[0], inV(0));
    g.unpool =
        kernels::unpoolShape(c.out[0].dims, win, c.in[0].dims.h, c.in[0].dims.w,
                             a.posH, a.posW, a.normalize);
    expectDims("gradient", c.in[0].dims, g.unpool.out);
    if (c.in.size() > 1) {
      expectCount("switches", c.in[1].count, c.out[0].count);
      kernels::checkSwitchWindow("unpool_grad", win);
    }
    break;
  case Op::FC:
  case Op::FCGradInput:
  case Op::FCGradWeight: {
    // x [N, in], w [out, in], y [N, out].
    const TensorRef &x = k.op == Op::FC            ? c.in[0]
                         : k.op == Op::FCGradInput ? c.out[0]
                                                   : c.in[0];
    const TensorRef &y = k.op == Op::FC            ? c.out[0]
                         : k.op == Op::FCGradInput ? c.in[0]
                                                   : c.in[1];
    g.n = x.dims.n;
    if (g.n <= 0 || x.count % g.n != 0 || y.count % g.n != 0)
      throw KernelError("fc operands do not share a batch dimension");
    g.in = x.count / g.n;
    g.out = y.count / g.n;
    expectCount(k.op == Op::FCGradWeight ? "weight gradient" : "weight",
                k.op == Op::FCGradWeight ? c.out[0].count : c.in[1].count,
                g.out * g.in);
    if (k.op != Op::FCGradWeight && c.in[1].dims.n != g.out)
      throw KernelError(fmt::format("weight has {} rows, the output {} "
                                    "features",
                                    c.in[1].dims.n, g.out));
    if (k.op == Op::FC && c.in.size() > 2)
      expectCount("bias", c.in[2].count, g.out);
    if (y.dims.n != g.n)
      throw KernelError("fc input and output batches differ");
    break;
  }
  case Op::BiasGrad:
    expectCount("bias gradient", c.out[0].count, c.in[0].dims.c);
    break;
  case Op::Relu:
  case Op::Dropout:
  case Op::DropoutGrad:
  case Op::Scale:
  case Op::Reshape:
  case Op::Flatten:
    expectCount("output", c.out[0].count, c.in[0].count);
    break;
  case Op::ReluGrad:
  case Op::Add:
    expectCount("second operand", c.in[1].count, c.in[0].count);
    expectCount("output", c.out[0].count, c.in[0].count);
    break;
  case Op::LRN:
    expectDims("output", c.out[0].dims, c.in[0].dims);
    break;
  case Op::LRNGrad:
    expectDims("input", c.in[1].dims, c.in[0].dims);
    expectDims("output", c.in[2].dims, c.in[0].dims);
    expectDims("input gradient", c.out[0].dims, c.in[0].dims);
    break;
  case Op::BatchNorm:
    expectDims("output", c.out[0].dims, c.in[0].dims);
    for (size_t i = 1; i < 5; ++i)
      expectCount("statistic/affine operand", c.in[i].count, c.in[0].dims.c);
    break;
  case Op::BatchNormGrad:
    expectDims("input", c.in[1].dims, c.in[0].dims);
    expectCount("scale", c.in[2].count, c.in[0].dims.c);
    expectDims("input gradient", c.out[0].dims, c.in[0].dims);
    expectCount("scale gradient", c.out[1].count, c.in[0].dims.c);
    expectCount("shift gradient", c.out[2].count, c.in[0].dims.c);
    break;
  case Op::SoftmaxCrossEntropy:
  case Op::SoftmaxCrossEntropyGrad:
    g.n = c.in[0].dims.n;
    if (g.n <= 0 || c.in[0].count % g.n != 0)
      throw KernelError("logits have no batch dimension");
    g.out = c.in[0].count / g.n;
    expectCount("labels", c.in[1].count, g.n);
    expectCount(k.op == Op::SoftmaxCrossEntropy ? "loss" : "logits gradient",
                c.out[0].count,
                k.op == Op::SoftmaxCrossEntropy ? 1 : c.in[0].count);
    break;
  case Op::EuclideanLoss:
  case Op::EuclideanLossGrad:
    g.n = c.in[0].dims.n;
    expectCount("target", c.in[1].count, c.in[0].count);
    expectCount(k.op == Op::EuclideanLoss ? "loss" : "prediction gradient",
                c.out[0].count, k.op == Op::EuclideanLoss ? 1 : c.in[0].count);
    break;
  case Op::Objective:
    for (const TensorRef &t : c.in)
      expectCount("term", t.count, 1);
    expectCount("total", c.out[0].count, 1);
    break;
  case Op::SGDUpdate:
    expectCount("gradient", c.in[0].count, paramCount);
    break;
  case Op::AllReduceMean:
    for (size_t i = 0; i < c.in.size(); ++i)
      expectCount("a mean", c.out[i].count, c.in[i].count);
    break;
  }
  return g;
}

} // namespace

void checkGeometry(const plan::Kernel &k, const KernelAttrs &a,
                   const std::vector<TensorRef> &in,
                   const std::vector<TensorRef> &out, const plan::Program &p,
                   int64_t paramCount) {
  geometry(k, a, KernelOperands{in, out}, p, paramCount);
}

void checkPlan(const plan::Plan &plan) {
  for (const auto &[name, program] : plan.programs) {
    std::vector<KernelAttrs> attrs;
    for (const plan::Kernel &k : program.kernels)
      attrs.push_back(decodeAttrs(k));
    checkProgram(plan, program, attrs, program.batch);
  }
}

void checkProgram(const plan::Plan &plan, const plan::Program &program,
                  const std::vector<KernelAttrs> &attrs, int64_t n) {
  auto ref = [&](int64_t id) {
    const plan::Value &v = program.value(id);
    TensorRef t;
    t.dims = dimsOf(v, n);
    t.count = v.count(n);
    return t;
  };
  for (size_t i = 0; i < program.kernels.size(); ++i) {
    const plan::Kernel &k = program.kernels[i];
    std::vector<TensorRef> in, out;
    for (int64_t id : k.in)
      in.push_back(ref(id));
    for (int64_t id : k.out)
      out.push_back(ref(id));
    int64_t paramCount = 0;
    if (k.op == Op::SGDUpdate)
      if (const plan::ParamSpec *spec = plan.findParam(attrs[i].param))
        paramCount = spec->count();
    try {
      checkGeometry(k, attrs[i], in, out, program, paramCount);
    } catch (const KernelError &e) {
      throw PlanError(n == program.batch
                          ? fmt::format("{}: '{}': {}", k.path,
                                        plan::opName(k.op), e.what())
                          : fmt::format("{}: '{}' at batch {}: {}", k.path,
                                        plan::opName(k.op), n, e.what()));
    }
  }
}

//===----------------------------------------------------------------------===//
// Operand views shared by the backends
//===----------------------------------------------------------------------===//

bool isConvFamily(plan::Op op) {
  using plan::Op;
  return op == Op::Conv2D || op == Op::Deconv2D || op == Op::Conv2DGradInput ||
         op == Op::Conv2DGradWeight || isTransposedConv(op);
}

bool isTransposedConv(plan::Op op) {
  using plan::Op;
  return op == Op::Deconv2D || op == Op::Deconv2DGradInput ||
         op == Op::Deconv2DGradWeight;
}

bool isFcFamily(plan::Op op) {
  using plan::Op;
  return op == Op::FC || op == Op::FCGradInput || op == Op::FCGradWeight;
}

int64_t modelFlops(const plan::Program &program, int64_t n) {
  int64_t flops = 0;
  for (const plan::Kernel &k : program.kernels) {
    bool fc = isFcFamily(k.op);
    if (!fc && !isConvFamily(k.op))
      continue;
    auto refs = [&](const std::vector<int64_t> &ids) {
      std::vector<TensorRef> r;
      for (int64_t id : ids) {
        TensorRef t;
        t.dims = dimsOf(program.value(id), n);
        t.count = program.value(id).count(n);
        r.push_back(t);
      }
      return r;
    };
    std::vector<TensorRef> in = refs(k.in), out = refs(k.out);
    if (fc) {
      FCDims d = fcDims(k.op, in, out);
      flops += 2 * d.n * d.in * d.out;
      continue;
    }
    ConvOperands o = convOperands(k.op, decodeAttrs(k), in, out);
    // Every output pixel of the strided side (a transposed convolution's
    // input) takes a window over the other side's channels of its group.
    bool deconv = isTransposedConv(k.op);
    const kernels::Dims4 &small = deconv ? o.shape.in : o.shape.out;
    const kernels::Dims4 &large = deconv ? o.shape.out : o.shape.in;
    flops += 2 * small.count() * (large.c / o.shape.groups) * o.shape.win.kh *
             o.shape.win.kw;
  }
  return flops;
}

FCDims fcDims(plan::Op op, const std::vector<TensorRef> &in,
              const std::vector<TensorRef> &out) {
  // fc: (x, w) -> y; fc_grad_input: (dy, w) -> dx; fc_grad_weight: (x, dy).
  const TensorRef &x = op == plan::Op::FCGradInput ? out[0] : in[0];
  const TensorRef &y = op == plan::Op::FC            ? out[0]
                       : op == plan::Op::FCGradInput ? in[0]
                                                     : in[1];
  int64_t n = x.dims.n;
  return {n, x.count / n, y.count / n};
}

ConvOperands convOperands(plan::Op op, const KernelAttrs &a,
                          const std::vector<TensorRef> &in,
                          const std::vector<TensorRef> &out) {
  bool forward = op == plan::Op::Conv2D || op == plan::Op::Deconv2D;
  bool gradInput =
      op == plan::Op::Conv2DGradInput || op == plan::Op::Deconv2DGradInput;
  ConvOperands o;
  o.x = forward || !gradInput ? &in[0] : &out[0];
  o.w = forward || gradInput ? &in[1] : &out[0];
  o.y = forward ? &out[0] : gradInput ? &in[0] : &in[1];
  kernels::Window2D win = a.win;
  win.kh = o.w->dims.h;
  win.kw = o.w->dims.w;
  bool conv = op == plan::Op::Conv2D || op == plan::Op::Conv2DGradInput ||
              op == plan::Op::Conv2DGradWeight;
  if (conv) {
    o.shape = kernels::conv2dShape(o.x->dims, o.w->dims.n, win, a.groups);
    return o;
  }
  // The output padding is the rows the transposed conv's output has beyond
  // what its stride and kernel produce.
  int64_t opH =
      o.y->dims.h - ((o.x->dims.h - 1) * win.sh - 2 * win.ph + win.kh);
  int64_t opW =
      o.y->dims.w - ((o.x->dims.w - 1) * win.sw - 2 * win.pw + win.kw);
  o.shape = kernels::deconv2dShape(o.x->dims, o.w->dims.c * a.groups, win,
                                   a.groups, opH, opW);
  return o;
}

std::vector<ArenaSpan> freeArenaSpans(const plan::Program &program,
                                      int64_t align) {
  const int64_t last = int64_t(program.kernels.size());
  // Each arena value's first and last kernel, one wider on each side.
  struct Use {
    int64_t first = INT64_MAX, last = INT64_MIN;
  };
  std::map<int64_t, Use> uses;
  auto use = [&](int64_t id, int64_t at) {
    Use &u = uses[id];
    u.first = std::min(u.first, at);
    u.last = std::max(u.last, at);
  };
  for (int64_t i = 0; i < last; ++i) {
    for (int64_t id : program.kernels[size_t(i)].in)
      use(id, i);
    for (int64_t id : program.kernels[size_t(i)].out)
      use(id, i);
  }
  for (const auto &[name, id] : program.inputs)
    use(id, -1);
  for (std::optional<int64_t> id : {program.loss, program.logits})
    if (id)
      use(*id, last);
  for (const plan::Term &t : program.terms)
    use(t.value, last);
  for (const plan::Reconstruction &r : program.reconstructions)
    use(r.value, last);
  for (const auto &[name, id] : program.otherOutputs)
    use(id, last);

  struct Range {
    int64_t lo, hi, first, last;
  };
  std::vector<Range> ranges;
  for (const auto &[id, u] : uses) {
    const plan::Value &v = program.value(id);
    if (v.isParam())
      continue;
    ranges.push_back(
        {v.offset, v.offset + v.bytes(program.batch), u.first - 1, u.last + 1});
  }
  if (program.workspaceBytes > 0)
    ranges.push_back({program.workspaceOffset,
                      program.workspaceOffset + program.workspaceBytes,
                      INT64_MIN, INT64_MAX});
  std::sort(ranges.begin(), ranges.end(),
            [](const Range &a, const Range &b) { return a.lo < b.lo; });

  std::vector<ArenaSpan> spans(static_cast<size_t>(last));
  for (int64_t i = 0; i < last; ++i) {
    ArenaSpan &best = spans[size_t(i)];
    int64_t free = 0; // the first byte no range seen so far covers
    auto gap = [&](int64_t end) {
      int64_t start = (free + align - 1) / align * align;
      if (end - start > best.bytes)
        best = {start, end - start};
    };
    for (const Range &r : ranges) {
      if (r.last < i || r.first > i)
        continue;
      gap(r.lo);
      free = std::max(free, r.hi);
    }
    gap(program.arenaBytes);
  }
  return spans;
}

} // namespace netc::exec
