//===- Reference.h - the `reference` backend's kernels ----------*- C++ -*-===//
//
// Plain, obviously correct loops: the oracle every fast backend (cpu, cuda)
// is tested against. Templates on the element type T (instantiated for float
// and double in Reference.cpp) so that gradients can be checked against
// finite differences in double precision.
//
// Conventions (the compiler relies on them):
// - Tensors are dense and row-major: maps NCHW, flat [N, F] (= Dims4{N,F,1,1}).
// - conv weights [Cout, Cin/groups, kh, kw]; deconv weights
//   [Cin, Cout/groups, kh, kw]; fc weight [out, in]; biases [C].
// - Every kernel OVERWRITES its outputs (y, dx, dw, db, ...); nothing is
//   accumulated into an output unless the name says so (`accumulate`, the
//   optimizer's in-place update, the batch-norm running statistics).
// - Outputs must not alias inputs, except where documented (add/accumulate).
// - Reductions (dot products, sums, means) accumulate in double whatever T is.
// - Bad shapes or attributes throw KernelError with a message naming the
//   kernel and the problem.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_KERNELS_REFERENCE_H
#define NETC_RUNTIME_KERNELS_REFERENCE_H

#include "runtime/cuda/HostDevice.h"

#include <cstdint>
#include <stdexcept>

namespace netc::kernels {

class KernelError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Shape of an NCHW tensor; a flat [N, F] tensor is {N, F, 1, 1}.
struct Dims4 {
  int64_t n = 0, c = 0, h = 0, w = 0;
  int64_t count() const { return n * c * h * w; }
  int64_t plane() const { return h * w; }
  bool operator==(const Dims4 &o) const {
    return n == o.n && c == o.c && h == o.h && w == o.w;
  }
  bool operator!=(const Dims4 &o) const { return !(*this == o); }
};

/// Kernel size, stride and padding of a sliding window (conv or pool).
struct Window2D {
  int64_t kh = 1, kw = 1;
  int64_t sh = 1, sw = 1;
  int64_t ph = 0, pw = 0;
};

/// A max-pool switch: where the window's maximum lies within its window,
/// row-major (dh * kw + dw, the window's origin at (oh * sh - ph, ow * sw -
/// pw) of the unpadded input), which an unpool with the same window reads
/// back. One byte holds it for every window of at most kMaxSwitchWindow
/// positions.
using Switch = uint8_t;
constexpr int64_t kMaxSwitchWindow = 256;
/// Throws KernelError (naming `kernel`) for a window too large for switches.
void checkSwitchWindow(const char *kernel, const Window2D &w);
/// The input position (h, w) that switch `sw` (< kh * kw) of pooled
/// element (i, j) names; outside the input where its window reaches into
/// the padding.
inline void switchPosition(const Window2D &k, int64_t i, int64_t j, int64_t sw,
                           int64_t &h, int64_t &w) {
  h = i * k.sh - k.ph + sw / k.kw;
  w = j * k.sw - k.pw + sw % k.kw;
}

/// Geometry of a conv2d or deconv2d: `in` is the op's input, `out` its output.
struct ConvShape {
  Dims4 in, out;
  Window2D win;
  int64_t groups = 1;
};

/// conv2d: out = (in + 2p - k) / s + 1 per axis (floor). Validates.
ConvShape conv2dShape(Dims4 in, int64_t outChannels, Window2D win,
                      int64_t groups = 1);
/// deconv2d: out = (in - 1) * s - 2p + k + outputPadding per axis; requires
/// 0 <= outputPadding < stride (so that the adjoint conv2d maps out -> in).
ConvShape deconv2dShape(Dims4 in, int64_t outChannels, Window2D win,
                        int64_t groups = 1, int64_t outputPaddingH = 0,
                        int64_t outputPaddingW = 0);

/// Geometry of a pooling (max/avg) op; `in` is the op's input.
struct PoolShape {
  Dims4 in, out;
  Window2D win;
  bool ceilMode = false;
};

/// One axis of a pool's output: floor((in + 2p - k) / s) + 1, or with ceil
/// mode ceil((in + 2p - k) / s) + 1 then, Caffe's rule, one less if the last
/// window would start at or past in + p (in padded coordinates), i.e. outside
/// the input. The rule is applied whatever the padding (with pad 0 it only
/// matters when stride > kernel, where Caffe would produce empty windows).
/// Requires pad < kernel and in + 2p >= k.
int64_t poolOutputSize(int64_t in, int64_t k, int64_t s, int64_t p,
                       bool ceilMode);
PoolShape poolShape(Dims4 in, Window2D win, bool ceilMode = false);

/// Geometry of an unpool, the inverse of a max-pool with the same window.
/// `in` is the pooled input's shape; the output is {in.n, in.c, size[0],
/// size[1]}.
struct UnpoolShape {
  Dims4 in, out;
  Window2D win;
  /// Fixed-position mode (switches == null): offset (row, col) inside each
  /// window. Ignored in switch mode.
  int64_t posH = 0, posW = 0;
  bool normalize = false;
};
UnpoolShape unpoolShape(Dims4 in, Window2D win, int64_t sizeH, int64_t sizeW,
                        int64_t posH = 0, int64_t posW = 0,
                        bool normalize = false);

/// Local response normalisation parameters (Caffe ACROSS_CHANNELS).
struct LrnParams {
  int64_t size = 5; ///< odd (as Caffe requires)
  double alpha = 1e-4, beta = 0.75, k = 1.0;
};

/// SplitMix64 finaliser (Steele et al.); the building block of the dropout
/// mask RNG (shared by every backend, the GPU included: the one definition
/// is in runtime/cuda/HostDevice.h).
inline uint64_t splitmix64(uint64_t x) { return cuda::splitmix64(x); }

/// The uniform in [0, 1) the dropout mask draws for element `index`: with
///   key = splitmix64(seed ^ splitmix64(step)),
///   h   = splitmix64(key ^ index),
///   u   = (h >> 11) * 2^-53  (exact in double).
/// Counter-based: any element of any step can be drawn independently (what a
/// GPU kernel does per thread: cuda::dropoutKeep is this rule per element,
/// and dropoutMask calls it). Give every dropout op its own seed.
double dropoutUniform(uint64_t seed, uint64_t step, uint64_t index);

/// mask[i] = 1 (keep) if dropoutUniform(seed, step, first + i) >= ratio,
/// else 0; keep probability 1 - ratio. Requires 0 <= ratio < 1. The mask is
/// uint8 0/1. `first` places the tensor in a larger one: a data-parallel
/// rank's slice of the global batch draws the global batch's mask.
void dropoutMask(uint64_t seed, uint64_t step, int64_t count, double ratio,
                 uint8_t *mask, uint64_t first = 0);

/// The reference kernels. Fast backends provide the same functions in their
/// own namespaces and are tested against these.
namespace ref {

//===----------------------------------------------------------------------===//
// Convolution
//===----------------------------------------------------------------------===//

/// y = conv(x, w) + b. `b` may be null (no bias).
template <typename T>
void conv2dForward(const ConvShape &s, const T *x, const T *w, const T *b,
                   T *y);
/// dx from dy and w.
template <typename T>
void conv2dBackwardData(const ConvShape &s, const T *dy, const T *w, T *dx);
/// dw from x and dy.
template <typename T>
void conv2dBackwardFilter(const ConvShape &s, const T *x, const T *dy, T *dw);
/// db[c] = sum of dy over n, h, w. `dims` is the shape of dy.
template <typename T> void biasBackward(const Dims4 &dims, const T *dy, T *db);

/// Transposed convolution (adjoint of conv2d with the same window and groups;
/// `s` from deconv2dShape). Forward = conv2d backward-data, plus bias per
/// output channel (`b` may be null).
template <typename T>
void deconv2dForward(const ConvShape &s, const T *x, const T *w, const T *b,
                     T *y);
/// dx = conv2d forward of dy (no bias).
template <typename T>
void deconv2dBackwardData(const ConvShape &s, const T *dy, const T *w, T *dx);
/// dw (layout [Cin, Cout/groups, kh, kw]) from x (deconv input) and dy.
template <typename T>
void deconv2dBackwardFilter(const ConvShape &s, const T *x, const T *dy, T *dw);
// deconv bias gradient: biasBackward(s.out, dy, db).

//===----------------------------------------------------------------------===//
// Activations, pooling, unpooling
//===----------------------------------------------------------------------===//

/// y = max(x, 0). y may alias x.
template <typename T> void reluForward(int64_t count, const T *x, T *y);
/// dx = dy * (y > 0), from the forward OUTPUT y. dx may alias dy.
template <typename T>
void reluBackward(int64_t count, const T *y, const T *dy, T *dx);

/// Max-pool over the input padded with -inf. `switches` (one Switch per
/// output element, may be null) gets the selected maximum's position within
/// its window: the FIRST maximum in a row-major scan of the window's part
/// inside the input (strict `>`), so an all-equal (e.g. all-zero) window
/// records its first in-input position. NaN is never selected over an
/// earlier value.
template <typename T>
void maxPoolForward(const PoolShape &s, const T *x, T *y, Switch *switches);
/// dx = 0, then dx[the switch's position] += dy (scatter-add per plane).
template <typename T>
void maxPoolBackward(const PoolShape &s, const T *dy, const Switch *switches,
                     T *dx);

/// Average pool, Caffe: pool_size = (min(hs+k, H+p) - hs) * (min(ws+k, W+p) -
/// ws) with hs = oh*s - p, taken before clipping the window to the input;
/// padding counts as zeros.
template <typename T> void avgPoolForward(const PoolShape &s, const T *x, T *y);
template <typename T>
void avgPoolBackward(const PoolShape &s, const T *dy, T *dx);

/// Forward. Input (i,j) is added to (i*sh - ph + dh, j*sw - pw + dw) if that
/// is inside the output, else dropped, where (dh, dw) is the position
/// within the window that switches[n,c,i,j] records (switches non-null: the
/// input's shape, as written by maxPoolForward; one outside the window or
/// the output is an error) or else (posH, posW). Other positions are zero. With
/// `normalize` every output position is divided by the number of input elements
/// written to it (in switch mode counted per (n, c) plane; 0 stays 0).
template <typename T>
void unpoolForward(const UnpoolShape &s, const T *x, const Switch *switches,
                   T *y);
/// The exact adjoint (a gather): dx(i,j) = dy[target(i,j)] / count[target]
/// (count = 1 without normalize); 0 where the target fell outside.
template <typename T>
void unpoolBackward(const UnpoolShape &s, const T *dy, const Switch *switches,
                    T *dx);

//===----------------------------------------------------------------------===//
// Fully connected
//===----------------------------------------------------------------------===//

/// y[N, out] = x[N, in] * w[out, in]^T + b[out]. `b` may be null.
template <typename T>
void fcForward(int64_t n, int64_t in, int64_t out, const T *x, const T *w,
               const T *b, T *y);
/// dx[N, in] = dy[N, out] * w[out, in].
template <typename T>
void fcBackwardData(int64_t n, int64_t in, int64_t out, const T *dy, const T *w,
                    T *dx);
/// dw[out, in] = dy^T * x.
template <typename T>
void fcBackwardFilter(int64_t n, int64_t in, int64_t out, const T *x,
                      const T *dy, T *dw);
// fc bias gradient: biasBackward(Dims4{n, out, 1, 1}, dy, db).

//===----------------------------------------------------------------------===//
// Dropout (inverted)
//===----------------------------------------------------------------------===//

// The mask comes from netc::kernels::dropoutMask (uint8 0/1).
/// y = mask ? x * scale : 0 with scale = T(1 / (1 - ratio)) (computed in
/// double, rounded to T once). y may alias x.
template <typename T>
void dropoutForward(int64_t count, double ratio, const T *x,
                    const uint8_t *mask, T *y);
/// dx = mask ? dy * scale : 0. dx may alias dy.
template <typename T>
void dropoutBackward(int64_t count, double ratio, const T *dy,
                     const uint8_t *mask, T *dx);

//===----------------------------------------------------------------------===//
// Local response normalisation (Caffe ACROSS_CHANNELS)
//===----------------------------------------------------------------------===//

/// scale[c] = k + alpha/size * sum_{c' in [c - size/2, c + size/2] ∩ [0,C)}
/// x[c']^2; y = x * scale^-beta.
template <typename T>
void lrnForward(const Dims4 &d, const LrnParams &p, const T *x, T *y);
/// Exact gradient (Caffe's formula): dx[c] = dy[c] * scale[c]^-beta
///   - 2*alpha*beta/size * x[c] * sum_{c' : |c'-c| <= size/2} dy[c'] y[c'] /
///   scale[c']. Needs the forward input x and output y.
template <typename T>
void lrnBackward(const Dims4 &d, const LrnParams &p, const T *x, const T *y,
                 const T *dy, T *dx);

//===----------------------------------------------------------------------===//
// Batch normalisation over (N, H, W) per channel
//===----------------------------------------------------------------------===//

/// Training: batch mean and biased variance, xhat = (x - mean) / sqrt(var +
/// eps), y = scale * xhat + shift. Updates running stats in place:
/// runningMean = momentum * runningMean + (1 - momentum) * mean, runningVar
/// likewise with the UNBIASED batch variance (var * M / (M - 1), M = N*H*W;
/// var itself when M == 1). Writes saveMean[C] and saveInvStd[C] =
/// 1/sqrt(var + eps) for the backward pass (either may be null).
template <typename T>
void batchNormForwardTraining(const Dims4 &d, double eps, double momentum,
                              const T *x, const T *scale, const T *shift,
                              T *runningMean, T *runningVar, T *y, T *saveMean,
                              T *saveInvStd);
/// Evaluation: y = scale * (x - runningMean) / sqrt(runningVar + eps) + shift.
template <typename T>
void batchNormForwardInference(const Dims4 &d, double eps, const T *x,
                               const T *scale, const T *shift,
                               const T *runningMean, const T *runningVar, T *y);
/// Training-mode gradient: dshift = sum dy, dscale = sum dy * xhat,
/// dx = scale * invStd / M * (M * dy - dshift - xhat * dscale).
template <typename T>
void batchNormBackward(const Dims4 &d, const T *x, const T *scale,
                       const T *saveMean, const T *saveInvStd, const T *dy,
                       T *dx, T *dscale, T *dshift);

//===----------------------------------------------------------------------===//
// Losses and objective
//===----------------------------------------------------------------------===//

/// Mean over the batch of -log softmax(logits[i])[labels[i]] (log-sum-exp).
/// logits [n, k]; labels int32 in [0, k) (else KernelError).
template <typename T>
T softmaxCrossEntropyForward(int64_t n, int64_t k, const T *logits,
                             const int32_t *labels);
/// dlogits = (softmax - onehot) * dloss / n.
template <typename T>
void softmaxCrossEntropyBackward(int64_t n, int64_t k, const T *logits,
                                 const int32_t *labels, T dloss, T *dlogits);
/// Rows whose label is among the `topk` largest logits; ties rank the lower
/// class index first (so topk = 1 is "argmax, first maximum == label").
template <typename T>
int64_t countCorrectTopK(int64_t n, int64_t k, const T *logits,
                         const int32_t *labels, int64_t topk = 1);
template <typename T>
int64_t countCorrectTop1(int64_t n, int64_t k, const T *logits,
                         const int32_t *labels) {
  return countCorrectTopK<T>(n, k, logits, labels, 1);
}

/// sum((a - b)^2) / (2 * batch); `count` elements in all.
template <typename T>
T euclideanLossForward(int64_t batch, int64_t count, const T *a, const T *b);
/// da = (a - b) * dloss / batch, db = -da. Either output may be null (e.g.
/// the image target gets no gradient).
template <typename T>
void euclideanLossBackward(int64_t batch, int64_t count, const T *a, const T *b,
                           T dloss, T *da, T *db);

/// total = sum_i weights[i] * terms[i].
template <typename T>
T objectiveForward(int64_t n, const T *terms, const double *weights);
/// dterms[i] = weights[i] * dtotal.
template <typename T>
void objectiveBackward(int64_t n, const double *weights, T dtotal, T *dterms);

//===----------------------------------------------------------------------===//
// Elementwise and optimizer
//===----------------------------------------------------------------------===//

/// y = a + b. y may alias a or b.
template <typename T> void add(int64_t count, const T *a, const T *b, T *y);
/// y += x (gradient accumulation).
template <typename T> void accumulate(int64_t count, const T *x, T *y);

/// SGD with momentum, Caffe semantics, per element:
///   g = grad + decay*decayMult * w;  v = momentum * v + lr*lrMult * g;
///   w -= v.
/// The coefficients lr*lrMult, decay*decayMult and momentum are formed in
/// double and rounded to T once; the element arithmetic is in T.
template <typename T>
void sgdUpdate(int64_t count, T *w, const T *grad, T *velocity, double lr,
               double momentum, double decay, double lrMult = 1.0,
               double decayMult = 1.0);

} // namespace ref
} // namespace netc::kernels

#endif // NETC_RUNTIME_KERNELS_REFERENCE_H
