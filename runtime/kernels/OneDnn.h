//===- OneDnn.h - the cpu backend's oneDNN primitives -----------*- C++ -*-===//
//
// Convolutions and transposed convolutions (every pass) as oneDNN
// primitives, created once for a shape and reused by every run. A primitive
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

/// One pass of a conv2d (or, `transposed`, a deconv2d) for one geometry.
class ConvPrimitive {
public:
  /// `s` is the forward op's geometry (s.in its input x, s.out its output
  /// y, batch included); `xLanes` and `yLanes` the layouts netc keeps x and
  /// y in (1: plain NCHW, else channel-blocked by that many, as
  /// kernels/Blocked.h). Weights are netc's plain layout ([Cout, Cin/g, kh,
  /// kw], transposed: [Cin, Cout/g, kh, kw]). `bias` and `relu` (a fused
  /// ReLU on the output) are for the forward pass only. Throws KernelError
  /// if oneDNN cannot compute this geometry.
  ConvPrimitive(const ConvShape &s, bool transposed, ConvPass pass,
                int64_t xLanes, int64_t yLanes, bool bias, bool relu = false);
  ~ConvPrimitive();
  ConvPrimitive(const ConvPrimitive &) = delete;
  ConvPrimitive &operator=(const ConvPrimitive &) = delete;

  /// Scratch bytes run() needs.
  uint64_t workspaceBytes() const;
  /// oneDNN's implementation, e.g. "jit:avx512_core", and the reorders.
  std::string describe() const;
  /// Forward: y = conv(x, w) + b (b may be null), ReLU'd if asked.
  /// BackwardData: x = dx from y = dy and w. BackwardWeights: w = dw from x
  /// and y = dy. `workspace` holds workspaceBytes(), 64-byte aligned.
  void run(float *x, float *w, const float *b, float *y, void *workspace);

  struct Impl; ///< oneDNN's objects (OneDnn.cpp)

private:
  std::unique_ptr<Impl> impl_;
};

} // namespace netc::kernels::onednn

#endif // NETC_RUNTIME_KERNELS_ONEDNN_H
