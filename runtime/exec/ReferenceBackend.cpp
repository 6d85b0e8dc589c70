//===- ReferenceBackend.cpp - plain loops: the oracle ---------------------===//

#include "runtime/exec/ReferenceBackend.h"

#include "runtime/kernels/Storage.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <type_traits>

namespace netc::exec {

using kernels::Dims4;
using kernels::KernelError;
using plan::Op;

namespace ref = kernels::ref;

/// Not in Reference.h: y = x * factor (y may alias x).
template <typename T>
static void scaleKernel(int64_t count, const T *x, T factor, T *y) {
  for (int64_t i = 0; i < count; ++i)
    y[i] = x[i] * factor;
}

/// Not in Reference.h: per-channel batch mean and 1/sqrt(var + eps) (biased
/// variance, accumulated in double), as batch_norm_grad recomputes them.
template <typename T>
static void batchStats(const Dims4 &d, const T *x, double eps, T *mean,
                       T *invStd) {
  int64_t m = d.n * d.plane();
  for (int64_t ch = 0; ch < d.c; ++ch) {
    double s = 0, ss = 0;
    for (int64_t n = 0; n < d.n; ++n) {
      const T *p = x + (n * d.c + ch) * d.plane();
      for (int64_t i = 0; i < d.plane(); ++i)
        s += p[i];
    }
    double mu = s / double(m);
    for (int64_t n = 0; n < d.n; ++n) {
      const T *p = x + (n * d.c + ch) * d.plane();
      for (int64_t i = 0; i < d.plane(); ++i)
        ss += (p[i] - mu) * (p[i] - mu);
    }
    mean[ch] = T(mu);
    invStd[ch] = T(1.0 / std::sqrt(ss / double(m) + eps));
  }
}

template <typename T>
bool ReferenceBackendT<T>::supports(const plan::Value &v) const {
  // The f32 backend emulates bf16 and NHWC (runConverted); the double one,
  // the gradient tests' oracle, runs only what it can hold in double.
  return std::is_same_v<T, float> || BackendT<T>::supports(v);
}

namespace {

kernels::Storage storageOf(const TensorRef &t) {
  return {t.lanes(), t.dtype == plan::DType::BF16};
}

/// The float whose bits are `w`, rounded to bf16 (and widened back).
float bf16Rounded(uint32_t w) {
  return cuda::Bf16::fromFloat(cuda::bitsFloat(w)).toFloat();
}

/// Rounds `count` floats (as their bits) to bf16, in place.
void roundToBf16(uint32_t *words, int64_t count) {
  for (int64_t i = 0; i < count; ++i)
    words[i] = cuda::floatBits(bf16Rounded(words[i]));
}

} // namespace

template <typename T>
void ReferenceBackendT<T>::runConverted(const KernelCallT<T> &c) {
  if constexpr (!std::is_same_v<T, float>) {
    throw KernelError("bf16 and NHWC values need the f32 reference backend");
  } else {
    const Op op = c.kernel.op;
    // A kernel with bf16 operands computes as the cuda backend's tensor-core
    // path does: convolutions and fc read their weights through a bf16 copy,
    // and a convolution's weight gradient comes out of cuDNN in bf16.
    bool bf16 = false;
    for (const auto *list : {&c.in, &c.out})
      for (const TensorRef &t : *list)
        bf16 |= t.dtype == plan::DType::BF16;
    const TensorRef *weight = nullptr;
    if (bf16 && isConvFamily(op))
      weight = convOperands(op, c.attrs, c.in, c.out).w;
    else if (bf16 && (op == Op::FC || op == Op::FCGradInput))
      weight = &c.in[1];
    KernelCallT<T> plain = c;
    std::vector<std::vector<uint32_t>> temps;
    temps.reserve(c.in.size() + c.out.size());
    auto toHost = [&](TensorRef &t, bool rounded) {
      if (t.dtype == plan::DType::U8) { // switches: bytes, relaid out
        if (t.lanes() == 1) {
          t.layout = plan::Layout::NCHW;
          return false;
        }
        std::vector<uint32_t> &words =
            temps.emplace_back(size_t(t.count + 3) / 4);
        auto *bytes = reinterpret_cast<uint8_t *>(words.data());
        kernels::bytesFromStorage(t.dims, t.lanes(),
                                  static_cast<const uint8_t *>(t.data), bytes);
        t.data = bytes;
        t.layout = plan::Layout::NCHW;
        return true;
      }
      kernels::Storage s = storageOf(t);
      if (s.plain() && !rounded) {
        // f32 with one lane: an NHWC map of one channel has NCHW's bytes
        // (run() would come back here for its layout).
        t.layout = plan::Layout::NCHW;
        return false;
      }
      std::vector<uint32_t> &words = temps.emplace_back(size_t(t.count));
      kernels::fromStorage(t.dims, s, t.data, words.data());
      if (rounded && !s.bf16)
        roundToBf16(words.data(), t.count);
      t.data = words.data();
      t.dtype =
          t.dtype == plan::DType::I32 ? plan::DType::I32 : plan::DType::F32;
      t.layout = plan::Layout::NCHW;
      return true;
    };
    for (size_t i = 0; i < c.in.size(); ++i)
      toHost(plain.in[i], weight == &c.in[i]);
    std::vector<bool> converted(c.out.size());
    for (size_t i = 0; i < c.out.size(); ++i)
      converted[i] = toHost(plain.out[i], weight == &c.out[i]);
    // The GPU adds a bias to the product already rounded to bf16 (cuDNN
    // and cuBLAS write bf16, then the bias kernel rounds again): so here.
    const bool biased =
        weight && (op == Op::Conv2D || op == Op::Deconv2D || op == Op::FC) &&
        c.in.size() > 2;
    if (biased)
      plain.in.pop_back();
    // The reference's own kernel, now (not a subclass's run, which may
    // queue it: GuardedBackend).
    ReferenceBackendT<T>::run(plain);
    if (biased) {
      auto *y = static_cast<uint32_t *>(plain.out[0].data);
      const float *bias = c.in[2].f32(); // f32: not converted
      const kernels::Dims4 &d = c.out[0].dims;
      for (int64_t i = 0; i < d.count(); ++i) {
        y[i] = cuda::floatBits(bf16Rounded(y[i]) + bias[(i / d.plane()) % d.c]);
      }
    }
    for (size_t i = 0; i < c.out.size(); ++i) {
      if (!converted[i])
        continue;
      if (c.out[i].dtype == plan::DType::U8) {
        kernels::bytesToStorage(c.out[i].dims, c.out[i].lanes(),
                                static_cast<const uint8_t *>(plain.out[i].data),
                                static_cast<uint8_t *>(c.out[i].data));
        continue;
      }
      auto *words = static_cast<uint32_t *>(plain.out[i].data);
      kernels::Storage s = storageOf(c.out[i]);
      if (weight == &c.out[i] && !s.bf16)
        roundToBf16(words, c.out[i].count);
      kernels::toStorage(c.out[i].dims, s, words, c.out[i].data);
    }
  }
}

template <typename T> void ReferenceBackendT<T>::run(const KernelCallT<T> &c) {
  for (const auto *list : {&c.in, &c.out})
    for (const TensorRef &t : *list)
      if (t.dtype == plan::DType::BF16 || t.layout == plan::Layout::NHWC) {
        runConverted(c);
        return;
      }
  const KernelAttrs &a = c.attrs;
  const plan::Kernel &k = c.kernel;
  auto in = [&](size_t i) { return c.in[i].template as<T>(); };
  auto out = [&](size_t i) { return c.out[i].template as<T>(); };
  // Geometry was validated at load; shapes are recomputed for this batch.
  kernels::Window2D win = a.win;
  switch (k.op) {
  case Op::Conv2D:
  case Op::Deconv2D:
  case Op::Conv2DGradInput:
  case Op::Conv2DGradWeight:
  case Op::Deconv2DGradInput:
  case Op::Deconv2DGradWeight: {
    ConvOperands o = convOperands(k.op, a, c.in, c.out);
    T *x = o.x->template as<T>(), *w = o.w->template as<T>(),
      *y = o.y->template as<T>();
    switch (k.op) {
    case Op::Conv2D:
      ref::conv2dForward(o.shape, x, w, c.in.size() > 2 ? in(2) : nullptr, y);
      break;
    case Op::Deconv2D:
      ref::deconv2dForward(o.shape, x, w, c.in.size() > 2 ? in(2) : nullptr, y);
      break;
    case Op::Conv2DGradInput:
      ref::conv2dBackwardData(o.shape, y, w, x);
      break;
    case Op::Conv2DGradWeight:
      ref::conv2dBackwardFilter(o.shape, x, y, w);
      break;
    case Op::Deconv2DGradInput:
      ref::deconv2dBackwardData(o.shape, y, w, x);
      break;
    default:
      ref::deconv2dBackwardFilter(o.shape, x, y, w);
      break;
    }
    return;
  }
  case Op::MaxPool:
    ref::maxPoolForward(kernels::poolShape(c.in[0].dims, win, a.ceil), in(0),
                        out(0), c.out[1].switches());
    return;
  case Op::AvgPool:
    ref::avgPoolForward(kernels::poolShape(c.in[0].dims, win, a.ceil), in(0),
                        out(0));
    return;
  case Op::AvgPoolGrad:
    ref::avgPoolBackward(kernels::poolShape(c.out[0].dims, win, a.ceil), in(0),
                         out(0));
    return;
  case Op::Unpool:
    ref::unpoolForward(kernels::unpoolShape(c.in[0].dims, win, a.sizeH, a.sizeW,
                                            a.posH, a.posW, a.normalize),
                       in(0), c.in.size() > 1 ? c.in[1].switches() : nullptr,
                       out(0));
    return;
  case Op::UnpoolGrad:
    ref::unpoolBackward(
        kernels::unpoolShape(c.out[0].dims, win, c.in[0].dims.h, c.in[0].dims.w,
                             a.posH, a.posW, a.normalize),
        in(0), c.in.size() > 1 ? c.in[1].switches() : nullptr, out(0));
    return;
  case Op::FC: {
    FCDims d = fcDims(k.op, c.in, c.out);
    ref::fcForward(d.n, d.in, d.out, in(0), in(1),
                   c.in.size() > 2 ? in(2) : nullptr, out(0));
    return;
  }
  case Op::FCGradInput: {
    FCDims d = fcDims(k.op, c.in, c.out);
    ref::fcBackwardData(d.n, d.in, d.out, in(0), in(1), out(0));
    return;
  }
  case Op::FCGradWeight: {
    FCDims d = fcDims(k.op, c.in, c.out);
    ref::fcBackwardFilter(d.n, d.in, d.out, in(0), in(1), out(0));
    return;
  }
  case Op::BiasGrad:
    ref::biasBackward(c.in[0].dims, in(0), out(0));
    return;
  case Op::Relu:
    ref::reluForward(c.in[0].count, in(0), out(0));
    return;
  case Op::ReluGrad:
    ref::reluBackward(c.in[0].count, in(1), in(0), out(0));
    return;
  case Op::Reshape:
  case Op::Flatten:
    if (c.out[0].data != c.in[0].data)
      std::memmove(c.out[0].data, c.in[0].data,
                   size_t(c.in[0].count) * sizeof(T));
    return;
  case Op::Dropout:
  case Op::DropoutGrad: {
    int64_t count = c.in[0].count;
    if (!c.ctx.training || a.ratio == 0) {
      if (out(0) != in(0))
        std::memmove(out(0), in(0), size_t(count) * sizeof(T));
      return;
    }
    mask_.resize(size_t(count));
    kernels::dropoutMask(a.seed, c.ctx.step, count, a.ratio, mask_.data(),
                         c.dropoutFirst());
    if (k.op == Op::Dropout)
      ref::dropoutForward(count, a.ratio, in(0), mask_.data(), out(0));
    else
      ref::dropoutBackward(count, a.ratio, in(0), mask_.data(), out(0));
    return;
  }
  case Op::LRN:
    ref::lrnForward(c.in[0].dims, a.lrn, in(0), out(0));
    return;
  case Op::LRNGrad:
    ref::lrnBackward(c.in[0].dims, a.lrn, in(1), in(2), in(0), out(0));
    return;
  case Op::BatchNorm:
    if (a.inference || !c.ctx.training)
      ref::batchNormForwardInference(c.in[0].dims, a.eps, in(0), in(1), in(2),
                                     in(3), in(4), out(0));
    else
      ref::batchNormForwardTraining(
          c.in[0].dims, a.eps, a.bnMomentum, in(0), in(1), in(2), in(3), in(4),
          out(0), static_cast<T *>(nullptr), static_cast<T *>(nullptr));
    return;
  case Op::BatchNormGrad: {
    const Dims4 &d = c.in[0].dims;
    mean_.resize(size_t(d.c));
    invStd_.resize(size_t(d.c));
    batchStats(d, in(1), a.eps, mean_.data(), invStd_.data());
    ref::batchNormBackward(d, in(1), in(2), mean_.data(), invStd_.data(), in(0),
                           out(0), out(1), out(2));
    return;
  }
  case Op::SoftmaxCrossEntropy: {
    int64_t n = c.in[0].dims.n;
    *out(0) = ref::softmaxCrossEntropyForward(n, c.in[0].count / n, in(0),
                                              c.in[1].i32());
    return;
  }
  case Op::SoftmaxCrossEntropyGrad: {
    int64_t n = c.in[0].dims.n;
    ref::softmaxCrossEntropyBackward(n, c.in[0].count / n, in(0), c.in[1].i32(),
                                     T(a.scale), out(0));
    return;
  }
  case Op::EuclideanLoss:
    *out(0) =
        ref::euclideanLossForward(c.in[0].dims.n, c.in[0].count, in(0), in(1));
    return;
  case Op::EuclideanLossGrad:
    ref::euclideanLossBackward(c.in[0].dims.n, c.in[0].count, in(0), in(1),
                               T(a.scale), out(0), static_cast<T *>(nullptr));
    return;
  case Op::Objective: {
    std::vector<T> terms;
    for (const TensorRef &t : c.in)
      terms.push_back(*t.template as<T>());
    *out(0) = ref::objectiveForward(int64_t(terms.size()), terms.data(),
                                    a.weights.data());
    return;
  }
  case Op::Scale:
    scaleKernel(c.in[0].count, in(0), T(a.scale), out(0));
    return;
  case Op::Add:
    ref::add(c.in[0].count, in(0), in(1), out(0));
    return;
  case Op::SGDUpdate:
    ref::sgdUpdate(c.in[0].count, c.param->value.data(), in(0),
                   c.param->momentum.data(), c.ctx.lr, c.ctx.momentum,
                   c.ctx.decay, a.lrMult, a.decayMult);
    return;
  case Op::AllReduceMean:
    hostAllReduceMean(c);
    return;
  }
  throw KernelError(fmt::format("reference backend: op '{}' not implemented",
                                plan::opName(k.op)));
}

template class ReferenceBackendT<float>;
template class ReferenceBackendT<double>;

} // namespace netc::exec
