//===- CpuBackend.cpp - the `cpu` backend ---------------------------------===//

#include "runtime/exec/CpuBackend.h"

#include "runtime/kernels/Cpu.h"

#include <algorithm>

namespace netc::exec {

using kernels::ConvShape;
using plan::Op;
namespace cpu = kernels::cpu;
namespace ref = kernels::ref;

/// Elementwise kernels split into chunks of at least this many elements.
static constexpr int64_t kElementGrain = 1 << 15;

void CpuBackend::run(const KernelCall &c) {
  const KernelAttrs &a = c.attrs;
  const plan::Kernel &k = c.kernel;
  auto in = [&](size_t i) { return c.in[i].f32(); };
  auto out = [&](size_t i) { return c.out[i].f32(); };
  // Geometry was validated when the executor was built; shapes are
  // recomputed for this batch exactly as the reference backend does.
  kernels::Window2D win = a.win;
  switch (k.op) {
  case Op::Conv2D:
  case Op::Deconv2D:
  case Op::Conv2DGradInput:
  case Op::Conv2DGradWeight:
  case Op::Deconv2DGradInput:
  case Op::Deconv2DGradWeight: {
    ConvOperands o = convOperands(k.op, a, c.in, c.out);
    float *x = o.x->f32(), *w = o.w->f32(), *y = o.y->f32();
    const float *bias = c.in.size() > 2 ? in(2) : nullptr;
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
    return;
  }
  case Op::FC: {
    FCDims d = fcDims(k.op, c.in, c.out);
    cpu::fcForward(d.n, d.in, d.out, in(0), in(1),
                   c.in.size() > 2 ? in(2) : nullptr, out(0));
    return;
  }
  case Op::FCGradInput: {
    FCDims d = fcDims(k.op, c.in, c.out);
    cpu::fcBackwardData(d.n, d.in, d.out, in(0), in(1), out(0));
    return;
  }
  case Op::FCGradWeight: {
    FCDims d = fcDims(k.op, c.in, c.out);
    cpu::fcBackwardFilter(d.n, d.in, d.out, in(0), in(1), out(0));
    return;
  }
  // Cheap kernels, split into chunks (elements, channels or images) that
  // run the reference loops in parallel: results identical to the
  // reference's, element for element.
  case Op::Relu: {
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
  case Op::BiasGrad: {
    // ref::biasBackward's loop, split over channels (same summation order).
    const kernels::Dims4 d = c.in[0].dims;
    const float *dy = in(0);
    float *db = out(0);
    cpu::parallelChunks(
        d.c,
        std::max<int64_t>(1, kElementGrain /
                                 std::max<int64_t>(1, d.n * d.plane())),
        [&](int64_t b, int64_t e, int) {
          for (int64_t ch = b; ch < e; ++ch) {
            double sum = 0.0;
            for (int64_t n = 0; n < d.n; ++n) {
              const float *p = dy + (n * d.c + ch) * d.plane();
              for (int64_t q = 0; q < d.plane(); ++q)
                sum += double(p[q]);
            }
            db[ch] = float(sum);
          }
        });
    return;
  }
  case Op::MaxPool: {
    const kernels::Dims4 d = c.in[0].dims;
    int64_t inPer = d.c * d.plane(), outPer = c.out[0].count / d.n;
    const float *x = in(0);
    float *y = out(0);
    int32_t *sw = c.out[1].i32();
    cpu::parallelChunks(d.n, 1, [&](int64_t b, int64_t e, int) {
      kernels::Dims4 part = d;
      part.n = e - b;
      ref::maxPoolForward(kernels::poolShape(part, win, a.ceil), x + b * inPer,
                          y + b * outPer, sw + b * outPer);
    });
    return;
  }
  case Op::Unpool:
  case Op::UnpoolGrad: {
    // The pooled side (unpool's input, unpool_grad's output) and the
    // unpooled side; switches have the pooled side's shape.
    bool forward = k.op == Op::Unpool;
    const kernels::Dims4 pooled = forward ? c.in[0].dims : c.out[0].dims;
    int64_t sizeH = forward ? a.sizeH : c.in[0].dims.h;
    int64_t sizeW = forward ? a.sizeW : c.in[0].dims.w;
    int64_t pooledPer = pooled.c * pooled.plane(),
            unpooledPer = pooled.c * sizeH * sizeW;
    const float *src = in(0);
    float *dst = out(0);
    const int32_t *sw = c.in.size() > 1 ? c.in[1].i32() : nullptr;
    cpu::parallelChunks(pooled.n, 1, [&](int64_t b, int64_t e, int) {
      kernels::Dims4 part = pooled;
      part.n = e - b;
      kernels::UnpoolShape ps = kernels::unpoolShape(
          part, win, sizeH, sizeW, a.posH, a.posW, a.normalize);
      const int32_t *psw = sw ? sw + b * pooledPer : nullptr;
      if (forward)
        ref::unpoolForward(ps, src + b * pooledPer, psw, dst + b * unpooledPer);
      else
        ref::unpoolBackward(ps, src + b * unpooledPer, psw,
                            dst + b * pooledPer);
    });
    return;
  }
  default:
    reference_.run(c);
    return;
  }
}

} // namespace netc::exec
