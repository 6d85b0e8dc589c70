//===- OneDnn.h - the cpu backend's oneDNN primitives -----------*- C++ -*-===//
//
// Convolutions and transposed convolutions (every pass), inner products
// (fc, every pass), batch normalisation and LRN as oneDNN primitives,
// created once for a shape and reused by every run. A convolution
// is created with its memory formats left to oneDNN ("any"), so that it gets
// the fast implementation for the machine (jit:avx512_core and kin, which
// want channel-blocked activations and blocked weights); where netc's
// layout of an operand differs from the primitive's (the parameters are
// always plain; an activation may be plain), a reorder runs before (inputs)
// or after (outputs) the primitive. Every byte of scratch, the primitive's
// own included (oneDNN's "user" scratchpad mode), comes from the workspace
// the caller passes: nothing is allocated during a run.
//
// Only built with oneDNN (NETC_WITH_ONEDNN).
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_KERNELS_ONEDNN_H
#define NETC_RUNTIME_KERNELS_ONEDNN_H

#include "runtime/kernels/Reference.h"

#include <cstdint>
#include <memory>
#include <string>

namespace netc::kernels::onednn {

/// The channel block the cpu backend lays activations out in: 16 floats
/// where oneDNN runs AVX-512 (nChw16c), else 8 (nChw8c).
int64_t channelBlock();

/// Which pass of a convolution a primitive computes.
enum class ConvPass { Forward, BackwardData, BackwardWeights };

/// What the backend asks of every primitive here.
class Primitive {
public:
  virtual ~Primitive() = default;
  /// Scratch bytes a run needs (the workspace passed to run), 64-byte
  /// aligned.
  virtual uint64_t workspaceBytes() const = 0;
  /// oneDNN's implementation, e.g. "jit:avx512_core", and any reorders.
  virtual std::string describe() const = 0;
};

/// One pass of a conv2d (or, `transposed`, a deconv2d) for one geometry;
/// or of an fc (oneDNN's inner product), which is the 1x1 convolution of a
/// 1x1 image and so has the same passes and operands.
class ConvPrimitive : public Primitive {
public:
  /// `s` is the forward op's geometry (s.in its input x, s.out its output
  /// y, batch included); `xLanes` and `yLanes` the layouts netc keeps x and
  /// y in (1: plain NCHW, else channel-blocked by that many, as
  /// kernels/Storage.h). Weights are netc's plain layout ([Cout, Cin/g, kh,
  /// kw], transposed: [Cin, Cout/g, kh, kw]). `bias` and `relu` (a fused
  /// ReLU on the output) are for the forward pass only. Throws KernelError
  /// if oneDNN cannot compute this geometry.
  ConvPrimitive(const ConvShape &s, bool transposed, ConvPass pass,
                int64_t xLanes, int64_t yLanes, bool bias, bool relu = false);
  /// An fc: x [n, in], w [out, in], y [n, out], all plain; `bias` for the
  /// forward pass only.
  ConvPrimitive(int64_t n, int64_t in, int64_t out, ConvPass pass, bool bias);
  ~ConvPrimitive() override;
  ConvPrimitive(const ConvPrimitive &) = delete;
  ConvPrimitive &operator=(const ConvPrimitive &) = delete;

  uint64_t workspaceBytes() const override;
  std::string describe() const override;
  /// Forward: y = conv(x, w) + b (b may be null), ReLU'd if asked.
  /// BackwardData: x = dx from y = dy and w. BackwardWeights: w = dw from x
  /// and y = dy. `workspace` holds workspaceBytes(), 64-byte aligned.
  void run(float *x, float *w, const float *b, float *y, void *workspace);

  struct Impl; ///< oneDNN's objects (OneDnn.cpp)

private:
  std::unique_ptr<Impl> impl_;
};

/// Batch normalisation over (N, H, W) per channel, with scale and shift,
/// for x of dims `d` (batch included) in layout `lanes` (as ConvPrimitive's;
/// x, y, dy and dx all in it). The semantics of kernels/Reference.h's
/// batchNorm* functions.
class BatchNormPrimitive : public Primitive {
public:
  /// `backward`: the gradient pass; else the forward pass, in training
  /// and in inference mode. Throws KernelError if oneDNN cannot.
  BatchNormPrimitive(const Dims4 &d, int64_t lanes, double eps, bool backward);
  ~BatchNormPrimitive() override;
  BatchNormPrimitive(const BatchNormPrimitive &) = delete;
  BatchNormPrimitive &operator=(const BatchNormPrimitive &) = delete;

  uint64_t workspaceBytes() const override;
  std::string describe() const override;
  /// y = scale * (x - mean) / sqrt(var + eps) + shift. `training`: mean and
  /// var are the batch's (var biased), and the running statistics become
  /// momentum * running + (1 - momentum) * batch statistic (the variance
  /// unbiased: var * M / (M - 1), M = N*H*W > 1); else the running ones.
  void forward(bool training, const float *x, const float *scale,
               const float *shift, float *runningMean, float *runningVar,
               double momentum, float *y, void *workspace);
  /// The training-mode gradient, from the batch statistics of x
  /// (recomputed): dx, dscale, dshift from dy, x and scale.
  void backward(const float *dy, const float *x, const float *scale,
                float *dx, float *dscale, float *dshift, void *workspace);

  struct Impl;

private:
  std::unique_ptr<Impl> impl_;
};

/// Local response normalisation across channels (Caffe's ACROSS_CHANNELS:
/// y = x * (k + alpha/size * sum of x^2 over `size` channels)^-beta), for
/// x of dims `d` in layout `lanes` (x, y, dy and dx all in it).
class LrnPrimitive : public Primitive {
public:
  /// `backward`: the gradient pass, which recomputes what oneDNN keeps
  /// from the forward pass (its "workspace") into the workspace; else the
  /// forward pass. Throws KernelError if oneDNN cannot (or p.size is even,
  /// which Caffe's window does not allow).
  LrnPrimitive(const Dims4 &d, int64_t lanes, const LrnParams &p,
               bool backward);
  ~LrnPrimitive() override;
  LrnPrimitive(const LrnPrimitive &) = delete;
  LrnPrimitive &operator=(const LrnPrimitive &) = delete;

  uint64_t workspaceBytes() const override;
  std::string describe() const override;
  void forward(const float *x, float *y, void *workspace);
  /// dx from dy and the forward's input x.
  void backward(const float *dy, const float *x, float *dx, void *workspace);

  struct Impl;

private:
  std::unique_ptr<Impl> impl_;
};

} // namespace netc::kernels::onednn

#endif // NETC_RUNTIME_KERNELS_ONEDNN_H
