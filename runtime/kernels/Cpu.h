//===- Cpu.h - the `cpu` backend's kernels ----------------------*- C++ -*-===//
//
// Fast float32 versions of the GEMM-shaped reference kernels (conv2d,
// deconv2d, fc and their gradients): im2col/col2im plus oneDNN's row-major
// dnnl_sgemm. Same signatures, layouts and semantics as the functions of the
// same name in Reference.h (outputs are overwritten; geometry from
// conv2dShape/deconv2dShape), except that dot products accumulate in float
// (results match the reference to ~1e-5 relative).
//
// Threading: oneDNN here is built on OpenMP. A convolution over a batch of
// at least two images runs one image per OpenMP thread (each thread's sgemm
// then runs sequentially, since oneDNN does not nest); a single image, and
// fc, leave the threading to sgemm. Only one level is ever active, so the
// machine is not oversubscribed. Scratch buffers are per thread.
//
// Only built with oneDNN (NETC_WITH_ONEDNN; the define NETC_HAVE_ONEDNN).
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_KERNELS_CPU_H
#define NETC_RUNTIME_KERNELS_CPU_H

#include "runtime/kernels/Reference.h"

#include <functional>

namespace netc::kernels::cpu {

/// Threads the kernels use (OpenMP's max threads; 1 without OpenMP).
int numThreads();

/// Splits [0, count) into at most `threads` (<= 0: numThreads()) contiguous
/// chunks of at least `grain` items and runs f(begin, end, thread) on each,
/// in parallel; with one chunk, on the calling thread. The first exception
/// thrown by f is rethrown as a KernelError after all chunks finish.
void parallelChunks(int64_t count, int64_t grain,
                    const std::function<void(int64_t, int64_t, int)> &f,
                    int threads = 0);

/// y = conv(x, w) + b (`b` may be null).
void conv2dForward(const ConvShape &s, const float *x, const float *w,
                   const float *b, float *y);
/// dx from dy and w.
void conv2dBackwardData(const ConvShape &s, const float *dy, const float *w,
                        float *dx);
/// dw from x and dy.
void conv2dBackwardFilter(const ConvShape &s, const float *x, const float *dy,
                          float *dw);

/// Transposed convolution (`s` from deconv2dShape); weights
/// [Cin, Cout/groups, kh, kw]. `b` may be null.
void deconv2dForward(const ConvShape &s, const float *x, const float *w,
                     const float *b, float *y);
void deconv2dBackwardData(const ConvShape &s, const float *dy, const float *w,
                          float *dx);
void deconv2dBackwardFilter(const ConvShape &s, const float *x, const float *dy,
                            float *dw);

// Pooling and unpooling over groups of `lanes` interleaved planes: lanes 1
// is plain NCHW, 8 or 16 the channel-blocked layouts (kernels/Storage.h).
// Results equal ref::maxPoolForward / unpoolForward / unpoolBackward's.

/// Max-pool with switches (the first maximum of each window in row-major
/// order, its position within the window: ref::maxPoolForward's);
/// `switches` may be null.
void maxPool(const PoolShape &s, int64_t lanes, const float *x, float *y,
             Switch *switches);
/// db[c] = the sum of dy's channel c over images and positions, as
/// ref::biasBackward (in double, images outer).
void biasGrad(const Dims4 &d, int64_t lanes, const float *dy, float *db);
/// Whether an unpool's windows do not overlap (stride >= kernel), so that
/// every output position receives at most one pooled element: what
/// unpoolScatter and unpoolBackwardGather need.
bool unpoolWindowsDisjoint(const UnpoolShape &s);
/// Unpool: y = 0, then each pooled element to its switch (or the fixed
/// position); a switch outside its window is ignored.
void unpoolScatter(const UnpoolShape &s, int64_t lanes, const float *x,
                   const Switch *switches, float *y);
/// unpool_grad: dx = dy at each pooled element's switch (0 where ignored).
void unpoolBackwardGather(const UnpoolShape &s, int64_t lanes, const float *dy,
                          const Switch *switches, float *dx);

/// y[N, out] = x[N, in] * w[out, in]^T + b[out] (`b` may be null).
void fcForward(int64_t n, int64_t in, int64_t out, const float *x,
               const float *w, const float *b, float *y);
/// dx[N, in] = dy[N, out] * w[out, in].
void fcBackwardData(int64_t n, int64_t in, int64_t out, const float *dy,
                    const float *w, float *dx);
/// dw[out, in] = dy^T * x.
void fcBackwardFilter(int64_t n, int64_t in, int64_t out, const float *x,
                      const float *dy, float *dw);

} // namespace netc::kernels::cpu

#endif // NETC_RUNTIME_KERNELS_CPU_H
