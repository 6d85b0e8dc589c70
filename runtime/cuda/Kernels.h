//===- Kernels.h - the own kernels of the cuda backend ---------*- C++ -*-===//
//
// The kernels the cuda backend writes itself (cuDNN and cuBLAS have no switch
// pooling, no unpooling, no LRN on NHWC maps, no batch norm known to take
// bf16 NHWC maps, and our losses, dropout mask and fused optimizer are
// ours): each is a functor with
//   - items():          its launch shape, a 1-D grid of independent work
//                       items (no item reads what another writes), and
//   - operator()(i):    the work of item i, NETC_HD so the very same code runs
//                       in a CUDA grid-stride loop (Kernels.cu) and in
//                       runOnHost(), a serial walk of the grid on the CPU.
// The host launchers (namespace host) build the functors, walk them on the
// CPU and are tested against the reference kernels (CudaKernelsHostTest); the
// device launchers (Launch.h) build the same functors with the same make*
// functions (batch norm's kernel sequences: batchNorm*Passes) and launch
// them, and are tested against the host launchers on a GPU (CudaGpuTest).
//
// Rules that keep host and device bit-identical:
// - No atomics: unpooling is a gather per output element, its backward a
//   gather per input element, so results do not depend on scheduling.
// - Reductions have a fixed shape (kReduceBlocks x kReduceThreads, the same
//   on every GPU), per-thread strided sums then a fixed tree; the host walks
//   the same shape. They accumulate in double: the losses are a tiny,
//   memory-bound share of a step, and double keeps them within an ulp of
//   the reference (which sums in double). The three stages of the bias
//   gradient (BiasGradShape) and the two of batch norm's per-channel sums
//   (RowChunks) have shapes fixed by the map's dims alone, whatever the
//   layout and storage.
// - Kernels.cu is compiled with -fmad=false, so the device rounds every
//   multiply and add like the host does (no fused multiply-add), which makes
//   the fp32 SGD update identical to ref::sgdUpdate.
// Rules that keep them near the GPU's memory speed (most of them only move
// memory):
// - Index arithmetic per item divides by FastDiv (a multiply and a shift),
//   never by `/` or `%` on 64-bit values (an emulated routine on a GPU).
// - The elementwise kernels go in 16-byte packs (Elementwise).
// - Loops over the rows of a channel step through memory offsets
//   (RowCursor).
// Transcendentals (exp, log in softmax cross-entropy, pow in LRN) are the
// one place the device's math library may differ from the host's in the
// last bit (double sqrt and division, batch norm's, are correctly rounded
// on both).
//
// Storage: the kernels whose data is real-valued are templates on the
// element type T, float or Bf16 (the bf16 plan stores activations and their
// gradients as bf16; parameters, their gradients and the losses stay f32).
// They read through load() (exact: a bf16 widens to its float), compute in
// float (or double where the float code does: sums, losses, LRN and batch
// norm, whose references are double throughout), and round once when they
// store(): a double result goes to float first, then to bf16, so a bf16
// kernel gives exactly the float kernel's result on the widened inputs,
// rounded to bf16 (what CudaKernelsHostTest checks against the reference).
// With T = float, load and store are plain reads and writes, so the f32
// kernels compute exactly what they computed before bf16 storage.
//
// Layout: the kernels that need one take `lanes` (planeAt): 1 is NCHW, C is
// NHWC, 8 or 16 the cpu backend's channel-blocked layouts.
//
// Data-dependent errors cannot be thrown on a device: a label outside
// [0, k) gives a NaN loss (and NaN gradients for its row), which the
// trainer's NaN check reports; switches must be those a max-pool with the
// same window wrote (in their window) and are otherwise ignored. The host
// launchers check both and throw KernelError like the reference.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_CUDA_KERNELS_H
#define NETC_RUNTIME_CUDA_KERNELS_H

#include "runtime/cuda/HostDevice.h"
#include "runtime/kernels/Reference.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

namespace netc::cuda {

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

NETC_HD inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

/// Calls f(v[j * stride]) for j = 0, 1, ..., count - 1, in that order, with
/// the loads of kBatch values issued before the batch's calls: the plain
/// loop's operations in the plain loop's order (so the same bits), but one
/// memory latency per batch rather than per value. A thread that walks a
/// long run of values alone (a channel's partials, a row of logits) would
/// otherwise wait for each load: on the H200 (2026-11-30) the bias gradient
/// of the bf16 VGG-16 SWWAE-all step took 3.2 ms at 914 GB/s, and its then
/// second stage, one thread per channel over up to 1568 partials at an L2
/// latency each, was by estimate about half of that (not measured apart;
/// the bias gradient has three shorter stages since, BiasGradShape).
template <int kBatch = 16, typename T, typename F>
NETC_HD inline void forEachInOrder(const T *v, int64_t count, int64_t stride,
                                   F &&f) {
  for (int64_t j = 0; j < count; j += kBatch) {
    const int n = int(imin(kBatch, count - j));
    T batch[kBatch]{};
    NETC_UNROLL
    for (int q = 0; q < kBatch; ++q)
      if (q < n)
        batch[q] = v[(j + q) * stride];
    NETC_UNROLL
    for (int q = 0; q < kBatch; ++q)
      if (q < n)
        f(batch[q]);
  }
}
NETC_HD inline int64_t imax(int64_t a, int64_t b) { return a < b ? b : a; }

/// The high 64 bits of a * b.
NETC_HD inline uint64_t mulHi64(uint64_t a, uint64_t b) {
#if defined(__CUDA_ARCH__)
  return __umul64hi(a, b);
#else
  return uint64_t((unsigned __int128)a * b >> 64);
#endif
}

/// Division of a non-negative index by a divisor fixed when a kernel is
/// built, as a multiply-high, an add and a shift (Granlund and Montgomery's
/// round-up method, the one libdivide uses): a GPU has no integer divider,
/// and nvcc turns every 64-bit `/` and `%` into an emulated routine of about
/// twenty instructions (a call when an operand passes 32 bits). Per element,
/// in the index arithmetic of a memory-bound kernel (a channel from a flat
/// index, a pixel from a plane position), those routines and not memory
/// would set the speed. Exact for every dividend in [0, 2^63): with
/// shift = ceil(log2 d) and magic = floor(2^64 (2^shift - d) / d) + 1,
/// n / d = (mulHi64(magic, n) + n) >> shift (the sum stays below 2^64
/// because mulHi64(magic, n) < n). Built on the host, used on both sides.
struct FastDiv {
  int64_t d = 1;
  uint64_t magic = 1;
  unsigned shift = 0;

  FastDiv() = default;
  /// A divisor below 1 is kept as is and only divides as 1 (the grids
  /// whose geometry has a zero have no items to divide).
  explicit FastDiv(int64_t divisor) : d(divisor) {
    if (divisor < 1)
      return;
    while ((uint64_t(1) << shift) < uint64_t(divisor))
      ++shift;
    unsigned __int128 num =
        (unsigned __int128)((uint64_t(1) << shift) - uint64_t(divisor)) << 64;
    magic = uint64_t(num / uint64_t(divisor)) + 1;
  }
  NETC_HD int64_t div(int64_t n) const {
    uint64_t u = uint64_t(n);
    return int64_t((mulHi64(magic, u) + u) >> shift);
  }
  NETC_HD int64_t mod(int64_t n) const { return n - div(n) * d; }
  /// n / d, with n % d in `rem`.
  NETC_HD int64_t divMod(int64_t n, int64_t &rem) const {
    int64_t q = div(n);
    rem = n - q * d;
    return q;
  }
};

/// A quiet NaN, the device's way of saying "bad label".
NETC_HD inline double quietNaN() {
#if defined(__CUDA_ARCH__)
  return __longlong_as_double(0x7FF8000000000000ll);
#else
  return std::numeric_limits<double>::quiet_NaN();
#endif
}

NETC_HD inline double dexp(double x) {
#if defined(__CUDA_ARCH__)
  return ::exp(x);
#else
  return std::exp(x);
#endif
}

NETC_HD inline double dlog(double x) {
#if defined(__CUDA_ARCH__)
  return ::log(x);
#else
  return std::log(x);
#endif
}

NETC_HD inline double dpow(double x, double y) {
#if defined(__CUDA_ARCH__)
  return ::pow(x, y);
#else
  return std::pow(x, y);
#endif
}

/// Reads an element as float (exact for both storage types).
NETC_HD inline float load(const float *p) { return *p; }
NETC_HD inline float load(const Bf16 *p) { return p->toFloat(); }

/// Writes a float result, rounded to nearest even for bf16 (the one rounding
/// of a kernel's result; a double result is rounded to float by the caller
/// first, as the float kernel does).
NETC_HD inline void store(float *p, float v) { *p = v; }
NETC_HD inline void store(Bf16 *p, float v) { *p = Bf16::fromFloat(v); }

/// The elements of one 16-byte access: 8 bf16 or 4 f32.
template <typename T> struct alignas(16) Pack {
  static constexpr int kWidth = int(16 / sizeof(T));
  T v[kWidth];
};

template <typename T> NETC_HD inline Pack<T> loadPack(const T *p) {
#if defined(__CUDA_ARCH__)
  return *reinterpret_cast<const Pack<T> *>(p);
#else
  Pack<T> r;
  std::memcpy(&r, p, sizeof r);
  return r;
#endif
}

#if defined(__CUDA_ARCH__)
/// The 32-bit word of a pack's elements from `v`: 1 f32, 2 bf16.
NETC_HD inline uint32_t wordOf(const float *v) { return floatBits(v[0]); }
NETC_HD inline uint32_t wordOf(const Bf16 *v) {
  return uint32_t(v[0].bits) | uint32_t(v[1].bits) << 16;
}
#endif

/// On the device one 16-byte store, made explicit (st.global.v4.u32, a plain
/// STG.E.128 in the SASS): a copy of the Pack struct, or of a uint4 built
/// from it, can lose the pointer's alignment and be split, as nvcc did in
/// ReluGradBiasPartials (the sm_90 PTX: each pack written as 8 two-byte
/// stores in bf16, 4 four-byte ones in f32, where its loads were single
/// 16-byte ones). Not __stwb: its st.global.wb becomes a strong store
/// (STG.E.128.STRONG.SM). The memory clobber keeps the store where the
/// source puts it among the kernel's loads (dx may alias dy in place).
template <typename T> NETC_HD inline void storePack(T *p, const Pack<T> &v) {
#if defined(__CUDA_ARCH__)
  constexpr int kPer = Pack<T>::kWidth / 4; // elements a word
  asm volatile("st.global.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(p),
               "r"(wordOf(v.v)), "r"(wordOf(v.v + kPer)),
               "r"(wordOf(v.v + 2 * kPer)), "r"(wordOf(v.v + 3 * kPer))
               : "memory");
#else
  std::memcpy(p, &v, sizeof v);
#endif
}

using kernels::Switch;

/// The switches of a pack of W elements (4 or 8, a pack's width): W bytes
/// read or written at once (the pack's first switch is W-byte aligned, as
/// its elements are 16-byte aligned), widened to int in registers.
template <int W> struct alignas(W) SwitchPack { Switch v[W]; };

template <int W>
NETC_HD inline void loadSwitches(const Switch *p, int (&v)[W]) {
  SwitchPack<W> q;
#if defined(__CUDA_ARCH__)
  q = *reinterpret_cast<const SwitchPack<W> *>(p);
#else
  std::memcpy(&q, p, sizeof q);
#endif
  for (int l = 0; l < W; ++l)
    v[l] = q.v[l];
}

template <int W>
NETC_HD inline void storeSwitches(Switch *p, const int (&v)[W]) {
  SwitchPack<W> q;
  for (int l = 0; l < W; ++l)
    q.v[l] = static_cast<Switch>(v[l]);
#if defined(__CUDA_ARCH__)
  *reinterpret_cast<SwitchPack<W> *>(p) = q;
#else
  std::memcpy(p, &q, sizeof q);
#endif
}

/// Whether every pointer (null ones aside) may be read or written in packs.
inline bool packAligned(std::initializer_list<const void *> pointers) {
  for (const void *p : pointers)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0)
      return false;
  return true;
}

/// Makes a parameter a non-deduced context, so that a null pointer can be
/// passed for an optional T* output (C++20's std::type_identity_t).
template <typename T> struct NoDeduceT { using type = T; };
template <typename T> using NoDeduce = typename NoDeduceT<T>::type;

/// Walks a kernel's grid serially: the host's way of running it.
template <typename F> void runOnHost(const F &f) {
  int64_t n = f.items();
  for (int64_t i = 0; i < n; ++i)
    f(i);
}

//===----------------------------------------------------------------------===//
// Geometry (plain structs: kernels::Dims4's members are host functions)
//===----------------------------------------------------------------------===//

/// A pooling window over planes of `nc` = N*C maps: input inH x inW, output
/// (pooled) outH x outW. `lanes` is the channel block of both sides' memory
/// layout (planeAt): 1 for plain NCHW (the reference, the cuda backend's f32
/// maps), C for NHWC (the cuda backend's bf16 maps; any C, not only powers
/// of two), 8 or 16 for the cpu backend's channel-blocked nChw8c/nChw16c.
/// Switches are stored like the pooled map (at planeAt of the pooled
/// element) but their values are layout-free: the position within the
/// window (kernels::Switch), as the reference writes them.
struct PoolGeom {
  int64_t nc = 0, inH = 0, inW = 0, outH = 0, outW = 0;
  int64_t kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0;
  FastDiv lanes; ///< the layout's block, a divisor (lanes.d); default 1
  /// The other divisors of the kernels' index arithmetic (withDividers sets
  /// them from the fields above): the rows' widths, the planes' sizes and
  /// the strides.
  struct Dividers {
    FastDiv inW, outW, inPlane, outPlane, sh, sw, kw;
  } div;
};

/// Where element p of plane nc (nc = n*C + c) lies in a buffer of planes of
/// `plane` elements whose channels are blocked by `lanes`: the planes form
/// groups of `lanes` (C is a multiple of it) stored pixel by pixel with the
/// group's channels interleaved. With lanes 1, nc * plane + p (NCHW); with
/// lanes C, (n * plane + p) * C + c (NHWC: one group per image).
NETC_HD inline int64_t planeAt(int64_t nc, int64_t plane, int64_t p,
                               int64_t lanes) {
  return (nc / lanes) * plane * lanes + p * lanes + nc % lanes;
}

/// The plane nc and position p of work item i when the items walk a buffer
/// of planes in memory order (planeAt(nc, plane, p, lanes) == i): the
/// channel lane fastest, then the position, then the group of planes.
NETC_HD inline void planeItem(int64_t i, int64_t plane, int64_t lanes,
                              int64_t &nc, int64_t &p) {
  int64_t t = i / lanes;
  p = t % plane;
  nc = (t / plane) * lanes + i % lanes;
}

/// planeAt and planeItem with the divisions the kernels make per item done
/// by FastDiv (the int64_t forms above are the host code's).
NETC_HD inline int64_t planeAt(int64_t nc, int64_t plane, int64_t p,
                               const FastDiv &lanes) {
  int64_t lane, group = lanes.divMod(nc, lane);
  return (group * plane + p) * lanes.d + lane;
}

NETC_HD inline void planeItem(int64_t i, const FastDiv &plane,
                              const FastDiv &lanes, int64_t &nc, int64_t &p) {
  int64_t lane, t = lanes.divMod(i, lane);
  nc = plane.divMod(t, p) * lanes.d + lane;
}

/// g with its dividers set from its fields (after any change to them).
inline PoolGeom withDividers(PoolGeom g) {
  g.div.inW = FastDiv(g.inW);
  g.div.outW = FastDiv(g.outW);
  g.div.inPlane = FastDiv(g.inH * g.inW);
  g.div.outPlane = FastDiv(g.outH * g.outW);
  g.div.sh = FastDiv(g.sh);
  g.div.sw = FastDiv(g.sw);
  g.div.kw = FastDiv(g.kw);
  return g;
}

/// The pooling geometry of `s` with the layout `lanes`, dividers set.
inline PoolGeom poolGeom(const kernels::PoolShape &s, int64_t lanes = 1) {
  PoolGeom g;
  g.lanes = FastDiv(lanes);
  g.nc = s.in.n * s.in.c;
  g.inH = s.in.h;
  g.inW = s.in.w;
  g.outH = s.out.h;
  g.outW = s.out.w;
  g.kh = s.win.kh;
  g.kw = s.win.kw;
  g.sh = s.win.sh;
  g.sw = s.win.sw;
  g.ph = s.win.ph;
  g.pw = s.win.pw;
  return withDividers(g);
}

/// An unpool seen as the max-pool it inverts: `pool` maps the unpool's
/// output (the pool's input plane) to its input (the pooled plane).
struct UnpoolGeom {
  PoolGeom pool;
  int64_t posH = 0, posW = 0;
  bool normalize = false;
};

inline UnpoolGeom unpoolGeom(const kernels::UnpoolShape &s, int64_t lanes = 1) {
  UnpoolGeom g;
  g.pool.lanes = FastDiv(lanes);
  g.pool.nc = s.in.n * s.in.c;
  g.pool.inH = s.out.h;
  g.pool.inW = s.out.w;
  g.pool.outH = s.in.h;
  g.pool.outW = s.in.w;
  g.pool.kh = s.win.kh;
  g.pool.kw = s.win.kw;
  g.pool.sh = s.win.sh;
  g.pool.sw = s.win.sw;
  g.pool.ph = s.win.ph;
  g.pool.pw = s.win.pw;
  g.pool = withDividers(g.pool);
  g.posH = s.posH;
  g.posW = s.posW;
  g.normalize = s.normalize;
  return g;
}

/// The pooled rows (or columns) whose window covers input row `h`:
/// [first, last], clipped to [0, pooled - 1]; empty when first > last.
NETC_HD inline void coveringWindows(int64_t h, int64_t k, const FastDiv &s,
                                    int64_t p, int64_t pooled, int64_t &first,
                                    int64_t &last) {
  // Window i covers rows [i*s - p, i*s - p + k - 1].
  int64_t lo = h + p - k + 1;
  first = lo <= 0 ? 0 : s.div(lo + s.d - 1);
  last = imin(s.div(h + p), pooled - 1);
}

//===----------------------------------------------------------------------===//
// Max-pool with switches
//===----------------------------------------------------------------------===//

/// One item per pooled element: the first maximum of its window (clipped to
/// the input: padding is -inf) in a row-major scan with strict `>` over the
/// loaded values, and its position within the window, exactly
/// ref::maxPoolForward's rule (an all-zero window after ReLU records its
/// first in-input position, the one unpoolForward then writes to). bf16
/// values compare as the floats they widen to, so ties are the reference's
/// ties on the widened map.
///
/// Channel packs: with `width` = Pack<T>::kWidth (an NHWC map whose C is
/// whole packs, every pointer 16-byte aligned; poolWidth), item i is the W
/// adjacent channels of one pooled pixel, elements [i * W, (i + 1) * W) in
/// memory: the window's geometry is found once and each window position is
/// one 16-byte read of the W channels, each lane doing the single
/// element's comparisons (the same bits).
template <typename T> struct MaxPoolForward {
  PoolGeom g;
  const T *x;
  T *y;
  Switch *switches;  ///< may be null; stored like y
  int64_t width = 1; ///< elements per item: 1, or Pack<T>::kWidth

  NETC_HD int64_t items() const { return g.nc * g.outH * g.outW / width; }
  NETC_HD void operator()(int64_t i) const {
    constexpr int W = Pack<T>::kWidth;
    const int64_t m = i * width; // the item's first element in memory
    int64_t nc, p, ow;
    planeItem(m, g.div.outPlane, g.lanes, nc, p);
    int64_t oh = g.div.outW.divMod(p, ow);
    // Element q of this plane is xp[q * lanes] (and its pack's lane l
    // xp[q * lanes + l]).
    const T *xp = x + planeAt(nc, g.inH * g.inW, 0, g.lanes);
    int64_t h0 = oh * g.sh - g.ph, w0 = ow * g.sw - g.pw;
    int64_t hs = imax(h0, 0), ws = imax(w0, 0);
    int64_t he = imin(h0 + g.kh, g.inH), we = imin(w0 + g.kw, g.inW);
    const int64_t first = hs * g.inW + ws;
    // A position's switch: its place in the window.
    const int firstSwitch = int((hs - h0) * g.kw + (ws - w0));
    if (width == W) {
      Pack<T> v = loadPack(xp + first * g.lanes.d);
      float bestValue[W];
      int best[W];
      for (int l = 0; l < W; ++l) {
        bestValue[l] = load(&v.v[l]);
        best[l] = firstSwitch;
      }
      for (int64_t h = hs; h < he; ++h)
        for (int64_t w = ws; w < we; ++w) {
          v = loadPack(xp + (h * g.inW + w) * g.lanes.d);
          for (int l = 0; l < W; ++l) {
            float f = load(&v.v[l]);
            if (f > bestValue[l]) {
              bestValue[l] = f;
              best[l] = int((h - h0) * g.kw + (w - w0));
            }
          }
        }
      Pack<T> out;
      for (int l = 0; l < W; ++l)
        store(&out.v[l], bestValue[l]);
      storePack(y + m, out);
      if (switches)
        storeSwitches<W>(switches + m, best);
      return;
    }
    int best = firstSwitch;
    float bestValue = load(xp + first * g.lanes.d);
    for (int64_t h = hs; h < he; ++h)
      for (int64_t w = ws; w < we; ++w) {
        float v = load(xp + (h * g.inW + w) * g.lanes.d);
        if (v > bestValue) {
          bestValue = v;
          best = int((h - h0) * g.kw + (w - w0));
        }
      }
    store(y + m, bestValue);
    if (switches)
      switches[m] = static_cast<Switch>(best);
  }
};

//===----------------------------------------------------------------------===//
// Average pooling (Caffe's window rule)
//===----------------------------------------------------------------------===//

/// What Caffe's average divides window (i, j) by: the window clipped to the
/// padded input, which is the whole window unless ceil mode adds one that
/// passes it. Padding counts as zeros.
NETC_HD inline int64_t avgPoolSize(const PoolGeom &g, int64_t i, int64_t j) {
  int64_t h0 = i * g.sh - g.ph, w0 = j * g.sw - g.pw;
  return (imin(h0 + g.kh, g.inH + g.ph) - h0) *
         (imin(w0 + g.kw, g.inW + g.pw) - w0);
}

/// One item per pooled element: its window's input elements summed in
/// double in row-major order, divided by avgPoolSize. ref::avgPoolForward.
template <typename T> struct AvgPoolForward {
  PoolGeom g;
  const T *x;
  T *y;

  NETC_HD int64_t items() const { return g.nc * g.outH * g.outW; }
  NETC_HD void operator()(int64_t i) const {
    int64_t nc, p, ow;
    planeItem(i, g.div.outPlane, g.lanes, nc, p);
    int64_t oh = g.div.outW.divMod(p, ow);
    const T *xp = x + planeAt(nc, g.inH * g.inW, 0, g.lanes);
    int64_t h0 = oh * g.sh - g.ph, w0 = ow * g.sw - g.pw;
    int64_t he = imin(h0 + g.kh, g.inH), we = imin(w0 + g.kw, g.inW);
    double sum = 0.0;
    for (int64_t h = imax(h0, 0); h < he; ++h)
      for (int64_t w = imax(w0, 0); w < we; ++w)
        sum += double(load(xp + (h * g.inW + w) * g.lanes.d));
    store(y + i, float(sum / double(avgPoolSize(g, oh, ow))));
  }
};

/// One item per input element (a gather, so no atomics): dy of every window
/// that covers it divided by that window's avgPoolSize, summed in double in
/// row-major order of the windows, as ref::avgPoolBackward accumulates.
template <typename T> struct AvgPoolBackward {
  PoolGeom g;
  const T *dy;
  T *dx;

  NETC_HD int64_t items() const { return g.nc * g.inH * g.inW; }
  NETC_HD void operator()(int64_t i) const {
    int64_t nc, p, w;
    planeItem(i, g.div.inPlane, g.lanes, nc, p);
    int64_t h = g.div.inW.divMod(p, w);
    int64_t i0, i1, j0, j1;
    coveringWindows(h, g.kh, g.div.sh, g.ph, g.outH, i0, i1);
    coveringWindows(w, g.kw, g.div.sw, g.pw, g.outW, j0, j1);
    const T *dp = dy + planeAt(nc, g.outH * g.outW, 0, g.lanes);
    double sum = 0.0;
    for (int64_t a = i0; a <= i1; ++a)
      for (int64_t b = j0; b <= j1; ++b)
        sum += double(load(dp + (a * g.outW + b) * g.lanes.d)) /
               double(avgPoolSize(g, a, b));
    store(dx + i, float(sum));
  }
};

//===----------------------------------------------------------------------===//
// Unpooling (gathers)
//===----------------------------------------------------------------------===//

/// The pooled element (i, j) a fixed-position unpool writes to output
/// position (h, w): pooled (i, j) goes to (i*sh - ph + posH, j*sw - pw +
/// posW). False where none does (at most one pooled element per output
/// position).
NETC_HD inline bool fixedSource(const UnpoolGeom &u, int64_t h, int64_t w,
                                int64_t &i, int64_t &j) {
  const PoolGeom &g = u.pool;
  int64_t a = h + g.ph - u.posH, b = w + g.pw - u.posW;
  if (a < 0 || b < 0)
    return false;
  int64_t ra, rb;
  i = g.div.sh.divMod(a, ra);
  j = g.div.sw.divMod(b, rb);
  return ra == 0 && rb == 0 && i < g.outH && j < g.outW;
}

/// Sum (in double, in row-major order of the pooled elements, as the
/// reference adds them) and number of the pooled elements of plane `nc` that
/// unpool to position (h, w) of the output plane.
/// The switch that names output position (h, w) within pooled element (i,
/// j)'s window (which covers it).
NETC_HD inline int switchOf(const PoolGeom &g, int64_t i, int64_t j, int64_t h,
                            int64_t w) {
  return int((h - (i * g.sh - g.ph)) * g.kw + (w - (j * g.sw - g.pw)));
}

template <typename T>
NETC_HD inline void unpoolGather(const UnpoolGeom &u, const T *x,
                                 const Switch *switches, int64_t nc, int64_t h,
                                 int64_t w, double &sum, int64_t &count) {
  const PoolGeom &g = u.pool;
  sum = 0.0;
  count = 0;
  int64_t plane = g.outH * g.outW, L = g.lanes.d;
  // Element q of plane nc is xp[q * L] (and sp[q * L]).
  int64_t base = planeAt(nc, plane, 0, g.lanes);
  const T *xp = x ? x + base : nullptr;
  if (switches) {
    const Switch *sp = switches + base;
    int64_t i0, i1, j0, j1;
    coveringWindows(h, g.kh, g.div.sh, g.ph, g.outH, i0, i1);
    coveringWindows(w, g.kw, g.div.sw, g.pw, g.outW, j0, j1);
    for (int64_t i = i0; i <= i1; ++i)
      for (int64_t j = j0; j <= j1; ++j)
        if (sp[(i * g.outW + j) * L] == switchOf(g, i, j, h, w)) {
          if (xp)
            sum += double(load(xp + (i * g.outW + j) * L));
          ++count;
        }
    return;
  }
  int64_t i, j;
  if (!fixedSource(u, h, w, i, j))
    return;
  if (xp)
    sum = double(load(xp + (i * g.outW + j) * L));
  count = 1;
}

/// One item per output element: the pooled elements that map to it, summed,
/// divided by their number with `normalize` (0 stays 0). ref::unpoolForward.
///
/// Channel packs (`width`, as MaxPoolForward's): item i is the W adjacent
/// channels of one output pixel; the covering windows are found once, each
/// window's W switches one W-byte read (loadSwitches), and its W pooled
/// values one 16-byte read, made when a lane's switch points here. Each lane
/// sums as the single element does (the same bits).
template <typename T> struct UnpoolForward {
  UnpoolGeom u;
  const T *x;
  const Switch *switches; ///< null: fixed position
  T *y;
  int64_t width = 1; ///< elements per item: 1, or Pack<T>::kWidth

  NETC_HD int64_t items() const {
    return u.pool.nc * u.pool.inH * u.pool.inW / width;
  }
  NETC_HD void operator()(int64_t i) const {
    const int64_t m = i * width; // the item's first element in memory
    int64_t nc, p, w;
    planeItem(m, u.pool.div.inPlane, u.pool.lanes, nc, p);
    int64_t h = u.pool.div.inW.divMod(p, w);
    if (width == Pack<T>::kWidth) {
      packGather(m, nc, h, w);
      return;
    }
    double sum;
    int64_t count;
    unpoolGather(u, x, switches, nc, h, w, sum, count);
    if (u.normalize && count > 0)
      sum /= double(count);
    store(y + m, float(sum));
  }

  /// unpoolGather for the pack at element m (channel nc and its W - 1
  /// neighbours, output position (h, w)).
  NETC_HD void packGather(int64_t m, int64_t nc, int64_t h, int64_t w) const {
    constexpr int W = Pack<T>::kWidth;
    const PoolGeom &g = u.pool;
    const int64_t L = g.lanes.d;
    const int64_t base = planeAt(nc, g.outH * g.outW, 0, g.lanes);
    double sum[W];
    int64_t count[W];
    for (int l = 0; l < W; ++l) {
      sum[l] = 0.0;
      count[l] = 0;
    }
    if (switches) {
      int64_t i0, i1, j0, j1;
      coveringWindows(h, g.kh, g.div.sh, g.ph, g.outH, i0, i1);
      coveringWindows(w, g.kw, g.div.sw, g.pw, g.outW, j0, j1);
      if (i0 == i1 && j0 == j1) {
        // One window covers (h, w), as every position of a pool whose
        // windows tile the map (VGG's 2x2/2): its switches and values read
        // together (one memory latency, not a switch read and then a value
        // read), and each lane's result is its value or zero, the bits of
        // the double sum below: 0.0 + v is v, except that -0 becomes +0,
        // as v + 0.0f does; a count of one divides nothing.
        const int64_t at = base + (i0 * g.outW + j0) * L;
        const int target = switchOf(g, i0, j0, h, w);
        int sw[W];
        loadSwitches<W>(switches + at, sw);
        Pack<T> v = loadPack(x + at), out;
        for (int l = 0; l < W; ++l)
          store(&out.v[l], sw[l] == target ? load(&v.v[l]) + 0.0f : 0.0f);
        storePack(y + m, out);
        return;
      }
      for (int64_t a = i0; a <= i1; ++a)
        for (int64_t b = j0; b <= j1; ++b) {
          const int64_t at = base + (a * g.outW + b) * L;
          const int target = switchOf(g, a, b, h, w);
          int sw[W];
          loadSwitches<W>(switches + at, sw);
          bool any = false;
          for (int l = 0; l < W; ++l)
            any = any || sw[l] == target;
          if (!any)
            continue;
          Pack<T> v = loadPack(x + at);
          for (int l = 0; l < W; ++l)
            if (sw[l] == target) {
              sum[l] += double(load(&v.v[l]));
              ++count[l];
            }
        }
    } else {
      // Fixed position: the same pooled element for every lane.
      int64_t pi, pj;
      if (fixedSource(u, h, w, pi, pj)) {
        Pack<T> v = loadPack(x + base + (pi * g.outW + pj) * L);
        for (int l = 0; l < W; ++l) {
          sum[l] = double(load(&v.v[l]));
          count[l] = 1;
        }
      }
    }
    Pack<T> out;
    for (int l = 0; l < W; ++l) {
      double s = sum[l];
      if (u.normalize && count[l] > 0)
        s /= double(count[l]);
      store(&out.v[l], float(s));
    }
    storePack(y + m, out);
  }
};

/// One item per pooled (unpool input) element: dx = dy[target] / count of
/// the target with `normalize`; 0 where a fixed position fell outside.
/// ref::unpoolBackward.
///
/// Channel packs (`width`, as MaxPoolForward's): item i is the W adjacent
/// channels of one pooled pixel, its W switches one W-byte read
/// (loadSwitches), its W results one 16-byte write; each lane's gradient is the
/// single element's (gradOf), its W reads of dy independent of each other.
template <typename T> struct UnpoolBackward {
  UnpoolGeom u;
  const T *dy;
  const Switch *switches; ///< null: fixed position
  T *dx;
  int64_t width = 1; ///< elements per item: 1, or Pack<T>::kWidth

  NETC_HD int64_t items() const {
    return u.pool.nc * u.pool.outH * u.pool.outW / width;
  }
  NETC_HD void operator()(int64_t i) const {
    constexpr int W = Pack<T>::kWidth;
    const int64_t m = i * width; // the item's first element in memory
    int64_t nc, p, j;
    planeItem(m, u.pool.div.outPlane, u.pool.lanes, nc, p);
    int64_t r = u.pool.div.outW.divMod(p, j);
    if (width == W) {
      int sw[W] = {};
      if (switches)
        loadSwitches<W>(switches + m, sw);
      Pack<T> out;
      for (int l = 0; l < W; ++l)
        store(&out.v[l], gradOf(nc + l, r, j, sw[l]));
      storePack(dx + m, out);
      return;
    }
    store(dx + m, gradOf(nc, r, j, switches ? switches[m] : 0));
  }

  /// dx of pooled element (r, j) of plane nc, whose switch is sw (unused
  /// at a fixed position).
  NETC_HD float gradOf(int64_t nc, int64_t r, int64_t j, int64_t sw) const {
    const PoolGeom &g = u.pool;
    const int64_t plane = g.inH * g.inW;
    int64_t dh = u.posH, dw = u.posW;
    if (switches) {
      dh = g.div.kw.divMod(sw, dw);
      if (dh >= g.kh)
        return 0.0f;
    }
    const int64_t h = r * g.sh - g.ph + dh, w = j * g.sw - g.pw + dw;
    if (h < 0 || h >= g.inH || w < 0 || w >= g.inW)
      return 0.0f;
    double grad = double(load(dy + planeAt(nc, plane, h * g.inW + w, g.lanes)));
    if (u.normalize) {
      double unused;
      int64_t count;
      unpoolGather<T>(u, nullptr, switches, nc, h, w, unused, count);
      if (count > 0) // 0 only for a switch outside its window
        grad /= double(count);
    }
    return float(grad);
  }
};

//===----------------------------------------------------------------------===//
// Deterministic reductions
//===----------------------------------------------------------------------===//

/// The fixed shape of every reduction: kReduceBlocks blocks of
/// kReduceThreads threads; thread t of block b sums items b*T + t, + B*T,
/// ... in order, each block then sums its threads in a halving tree
/// (s[t] += s[t + h] for h = T/2, ..., 1), and a final block sums the block
/// partials with the same tree. Both powers of two; B*T = 2^18 threads fill
/// an H100 or H200 (132 SMs of 2048 threads), so a loss over a large map
/// has enough loads in flight to run at memory speed, and the final block
/// (B = 1024 threads, a block's maximum) is still one block.
constexpr int kReduceThreads = 256;
constexpr int kReduceBlocks = 1024;
/// Bytes of device workspace a reduction needs (the block partials).
constexpr uint64_t kReduceWorkspaceBytes = kReduceBlocks * sizeof(double);

/// The halving tree over `n` (a power of two) values, as one thread does it.
NETC_HD inline double treeSum(double *v, int n) {
  for (int h = n / 2; h > 0; h /= 2)
    for (int t = 0; t < h; ++t)
      v[t] += v[t + h];
  return v[0];
}

/// Runs reduction `f` (items(), double operator()(i), double divisor()) on
/// the host in the device's order: sum / divisor.
template <typename F> double reduceOnHost(const F &f) {
  int64_t n = f.items();
  std::vector<double> partials(kReduceBlocks), threads(kReduceThreads);
  const int64_t stride = int64_t(kReduceBlocks) * kReduceThreads;
  for (int b = 0; b < kReduceBlocks; ++b) {
    for (int t = 0; t < kReduceThreads; ++t) {
      double acc = 0.0;
      for (int64_t i = int64_t(b) * kReduceThreads + t; i < n; i += stride)
        acc += f(i);
      threads[t] = acc;
    }
    partials[b] = treeSum(threads.data(), kReduceThreads);
  }
  return treeSum(partials.data(), kReduceBlocks) / f.divisor();
}

//===----------------------------------------------------------------------===//
// Losses (the loss scalars are f32 whatever T is)
//===----------------------------------------------------------------------===//

/// Caffe EuclideanLoss: sum((a - b)^2) / (2 * batch); one item per element.
template <typename T> struct EuclideanLossTerms {
  int64_t batch, count;
  const T *a, *b;

  NETC_HD int64_t items() const { return count; }
  NETC_HD double divisor() const { return 2.0 * double(batch); }
  NETC_HD double operator()(int64_t i) const {
    double d = double(load(a + i)) - double(load(b + i));
    return d * d;
  }
};

/// da = (a - b) * g, db = -da with g = dloss / batch (either may be null),
/// in double and rounded once: Elementwise's op, inputs {a, b}, outputs
/// {da, db}.
struct EuclideanLossBackwardOp {
  double g;
  NETC_HD void operator()(int64_t, int, const float *in, float *out) const {
    double v = (double(in[0]) - double(in[1])) * g;
    out[0] = float(v);
    out[1] = float(-v);
  }
};

/// The fixed shape of a row's log-sum-exp over k logits: `segs` segments
/// of `segLen`, the smallest power of two whose square is at least k (the
/// last may be shorter), each a thread's in the row's max and in its sum of
/// exps. One thread a row did all k in turn: for VGG-16's 1000 classes at
/// batch 64 that was 64 threads each taking 2000 double exps and maxima in
/// a chain, 0.17 ms for the loss and again for its gradient (the bf16
/// classifier's profile on the H200, 2026-12-01), where their operands are
/// 128 KB. Here that row is 32 segments of 32. k alone fixes the shape, so
/// the host's walk sums in the device's order.
struct SoftmaxShape {
  int64_t k = 0, segLen = 1, segs = 0;
};

inline SoftmaxShape softmaxShape(int64_t k) {
  SoftmaxShape s;
  s.k = k;
  while (s.segLen * s.segLen < k)
    s.segLen *= 2;
  s.segs = (k + s.segLen - 1) / s.segLen;
  return s;
}

/// Bytes of scratch the log-sum-exps of n rows of k logits need
/// (softmaxRowLse): a max and a sum per (row, segment), then a log-sum-exp
/// per row.
inline uint64_t softmaxLseScratchBytes(int64_t n, int64_t k) {
  return uint64_t(n) * uint64_t(2 * softmaxShape(k).segs + 1) * sizeof(double);
}

/// Bytes of scratch the loss over n rows of k logits needs: the
/// reduction's partials (kReduceWorkspaceBytes), then softmaxRowLse's.
inline uint64_t softmaxLossScratchBytes(int64_t n, int64_t k) {
  return kReduceWorkspaceBytes + softmaxLseScratchBytes(n, k);
}

/// Log-sum-exp, stage 1: item row * segs + seg, the segment's largest
/// logit (exact in any order).
template <typename T> struct SoftmaxSegmentMax {
  int64_t n;
  SoftmaxShape s;
  const T *logits;
  double *segMax;

  NETC_HD int64_t items() const { return n * s.segs; }
  NETC_HD void operator()(int64_t i) const {
    const int64_t row = i / s.segs, first = (i - row * s.segs) * s.segLen;
    const T *v = logits + row * s.k + first;
    double mx = double(load(v));
    forEachInOrder<8>(v + 1, imin(s.segLen, s.k - first) - 1, 1,
                      [&](const T &x) {
                        double d = double(load(&x));
                        mx = mx < d ? d : mx;
                      });
    segMax[i] = mx;
  }
};

/// The largest of a row's `segs` segment maxima.
NETC_HD inline double rowMax(const double *segMax, int64_t segs) {
  double mx = segMax[0];
  for (int64_t j = 1; j < segs; ++j)
    mx = mx < segMax[j] ? segMax[j] : mx;
  return mx;
}

/// Log-sum-exp, stage 2: item row * segs + seg, exp(logit - the row's max)
/// summed in double over the segment in order.
template <typename T> struct SoftmaxSegmentSum {
  int64_t n;
  SoftmaxShape s;
  const T *logits;
  const double *segMax;
  double *segSum;

  NETC_HD int64_t items() const { return n * s.segs; }
  NETC_HD void operator()(int64_t i) const {
    const int64_t row = i / s.segs, first = (i - row * s.segs) * s.segLen;
    const double mx = rowMax(segMax + row * s.segs, s.segs);
    double sum = 0.0;
    forEachInOrder<8>(logits + row * s.k + first, imin(s.segLen, s.k - first),
                      1,
                      [&](const T &x) { sum += dexp(double(load(&x)) - mx); });
    segSum[i] = sum;
  }
};

/// Log-sum-exp, stage 3: one item per row, its max plus the log of its
/// segments' sums added in segment order; NaN for a label outside [0, k),
/// which poisons the row's loss term and gradients.
struct SoftmaxRowLse {
  int64_t n;
  SoftmaxShape s;
  const int32_t *labels;
  const double *segMax, *segSum;
  double *lse;

  NETC_HD int64_t items() const { return n; }
  NETC_HD void operator()(int64_t i) const {
    const int32_t label = labels[i];
    if (label < 0 || label >= s.k) {
      lse[i] = quietNaN();
      return;
    }
    double sum = 0.0;
    for (int64_t j = 0; j < s.segs; ++j)
      sum += segSum[i * s.segs + j];
    lse[i] = rowMax(segMax + i * s.segs, s.segs) + dlog(sum);
  }
};

/// The log-sum-exp of each of n rows of k logits into the scratch's last n
/// doubles (softmaxLseScratchBytes), which it returns, through a host or
/// device launcher `run` (one call per stage, in order).
template <typename T, typename Run>
const double *softmaxRowLse(int64_t n, int64_t k, const T *logits,
                            const int32_t *labels, double *scratch, Run &&run) {
  const SoftmaxShape s = softmaxShape(k);
  double *segMax = scratch, *segSum = scratch + n * s.segs,
         *lse = scratch + 2 * n * s.segs;
  run(SoftmaxSegmentMax<T>{n, s, logits, segMax});
  run(SoftmaxSegmentSum<T>{n, s, logits, segMax, segSum});
  run(SoftmaxRowLse{n, s, labels, segMax, segSum, lse});
  return lse;
}

/// Mean over rows of -log softmax(row)[label] = lse - logit[label], from
/// the rows' log-sum-exps (softmaxRowLse); one item per row, NaN for a bad
/// label.
template <typename T> struct SoftmaxCrossEntropyTerms {
  int64_t n, k;
  const T *logits;
  const int32_t *labels;
  const double *lse;

  NETC_HD int64_t items() const { return n; }
  NETC_HD double divisor() const { return double(n); }
  NETC_HD double operator()(int64_t i) const {
    int32_t label = labels[i];
    if (label < 0 || label >= k)
      return quietNaN();
    return lse[i] - double(load(logits + i * k + label));
  }
};

/// Backward, after softmaxRowLse: one item per logit, (softmax - onehot)
/// * g with g = dloss / n.
template <typename T> struct SoftmaxCrossEntropyBackward {
  int64_t n;
  FastDiv k;
  const T *logits;
  const int32_t *labels;
  const double *lse;
  double g;
  T *dlogits;

  NETC_HD int64_t items() const { return n * k.d; }
  NETC_HD void operator()(int64_t i) const {
    int64_t j, row = k.divMod(i, j);
    double p = dexp(double(load(logits + i)) - lse[row]);
    store(dlogits + i, float((p - (j == labels[row] ? 1.0 : 0.0)) * g));
  }
};

/// One term of the objective: a loss scalar (device memory on a GPU) and
/// its weight.
struct ObjectiveTerm {
  const float *value = nullptr;
  double weight = 0.0;
};

/// The weighted total of the loss terms, summed in double in the terms'
/// order and rounded once (ref::objectiveForward); one item, so the losses
/// stay on the device and the total needs no host round trip.
struct Objective {
  const ObjectiveTerm *terms;
  int64_t count;
  float *total;

  NETC_HD int64_t items() const { return 1; }
  NETC_HD void operator()(int64_t) const {
    double sum = 0.0;
    for (int64_t i = 0; i < count; ++i)
      sum += terms[i].weight * double(*terms[i].value);
    *total = float(sum);
  }
};

//===----------------------------------------------------------------------===//
// Elementwise kernels, in packs
//===----------------------------------------------------------------------===//

/// Whether an elementwise op has something its pack's lanes share:
/// `int64_t shared(int64_t e)`, found once per pack (from the pack's first
/// element e) and passed to each lane as op(e, l, shared, in, out).
template <typename Op, typename = void> struct HasShared : std::false_type {};
template <typename Op>
struct HasShared<
    Op, std::void_t<decltype(std::declval<const Op &>().shared(int64_t(0)))>>
    : std::true_type {};

template <typename Op>
NETC_HD inline int64_t sharedOf(const Op &op, int64_t e) {
  if constexpr (HasShared<Op>::value)
    return op.shared(e);
  else
    return 0;
}

template <typename Op>
NETC_HD inline void applyOp(const Op &op, int64_t e, int l, int64_t shared,
                            const float *in, float *out) {
  if constexpr (HasShared<Op>::value)
    op(e, l, shared, in, out);
  else
    op(e, l, in, out);
}

/// An elementwise kernel: `op(e, l, in, out)` maps the In inputs of element
/// e + l, widened to float, to its Out results (l > 0 only for lane l of the
/// pack at e; an op with HasShared also gets what the pack's lanes share),
/// which are rounded and stored (a null output is not written). Item i covers
/// the elements [i * width, (i + 1) * width) of `count`:
/// - width 1: one element per item;
/// - width Pack<T>::kWidth (every operand 16-byte aligned): each operand of
///   a whole pack is read and written with one 16-byte access, all the
///   pack's loads issued before the first use. Elements one at a time move
///   2 bytes per bf16 load, and a GPU needs many bytes in flight per thread
///   to come near its memory bandwidth; these kernels (relu, its gradient,
///   the conv epilogue, add, scale, the losses' gradients) do nothing but
///   move memory. The last, partial pack goes element by element.
/// The arithmetic per element is the same either way, so the results are.
/// An output may alias an input at the same index (a pack is read whole
/// before it is written).
template <typename T, int In, int Out, typename Op> struct Elementwise {
  int64_t count = 0, width = 1;
  const T *in[In];
  T *out[Out];
  Op op;

  NETC_HD int64_t items() const { return (count + width - 1) / width; }
  NETC_HD void operator()(int64_t i) const {
    constexpr int W = Pack<T>::kWidth;
    const int64_t e = i * width;
    float x[In], y[Out];
    if (width == W && e + W <= count) {
      Pack<T> a[In], r[Out];
      for (int k = 0; k < In; ++k)
        a[k] = loadPack(in[k] + e);
      const int64_t s = sharedOf(op, e);
      for (int l = 0; l < W; ++l) {
        for (int k = 0; k < In; ++k)
          x[k] = load(&a[k].v[l]);
        applyOp(op, e, l, s, x, y);
        for (int k = 0; k < Out; ++k)
          store(&r[k].v[l], y[k]);
      }
      for (int k = 0; k < Out; ++k)
        if (out[k])
          storePack(out[k] + e, r[k]);
      return;
    }
    for (int64_t j = e, end = imin(e + width, count); j < end; ++j) {
      for (int k = 0; k < In; ++k)
        x[k] = load(in[k] + j);
      applyOp(op, j, 0, sharedOf(op, j), x, y);
      for (int k = 0; k < Out; ++k)
        if (out[k])
          store(out[k] + j, y[k]);
    }
  }
};

/// The kernel of `op` over `count` elements, in packs when `packed` and
/// every operand allows them.
template <typename T, int In, int Out, typename Op>
Elementwise<T, In, Out, Op> elementwise(int64_t count, bool packed,
                                        const T *const (&in)[In],
                                        T *const (&out)[Out], Op op) {
  Elementwise<T, In, Out, Op> f;
  f.count = count;
  f.op = op;
  bool aligned = true;
  for (int k = 0; k < In; ++k) {
    f.in[k] = in[k];
    aligned = aligned && packAligned({in[k]});
  }
  for (int k = 0; k < Out; ++k) {
    f.out[k] = out[k];
    aligned = aligned && packAligned({out[k]});
  }
  f.width = packed && aligned ? Pack<T>::kWidth : 1;
  return f;
}

/// y = keep(e) ? x * scale : 0 (forward and backward alike: the backward's x
/// is dy). The mask is kernels::dropoutMask's, drawn per element from the
/// step's key at the element's NCHW index, whatever the layout (planes of
/// `plane` elements blocked by `lanes`), so an NHWC map drops the same
/// elements as its NCHW twin on the cpu backend. The step is read through a
/// pointer (device memory on a GPU, StepParams::step) so that a recorded
/// launch draws the current step's mask when replayed. y may alias x.
struct DropoutOp {
  uint64_t seed;
  const uint64_t *step;
  uint64_t first; ///< NCHW index of element 0 in the global batch's mask
  int64_t plane;
  FastDiv planeDiv, lanesDiv;
  double ratio;
  float scale;
  NETC_HD void operator()(int64_t e, int l, const float *in, float *out) const {
    // Per element (the compiler shares it across a pack's lanes): on a GPU
    // only the device knows the step.
    uint64_t key = dropoutKey(seed, *step);
    int64_t index = e + l;
    if (lanesDiv.d != 1) {
      int64_t nc, p;
      planeItem(e + l, planeDiv, lanesDiv, nc, p);
      index = nc * plane + p;
    }
    out[0] =
        dropoutKeep(key, first + uint64_t(index), ratio) ? in[0] * scale : 0.0f;
  }
};

/// y = max(x, 0); y may alias x.
struct ReluOp {
  NETC_HD void operator()(int64_t, int, const float *in, float *out) const {
    out[0] = in[0] > 0.0f ? in[0] : 0.0f;
  }
};

/// dx = y > 0 ? dy : 0 from the inputs {y, dy} (the forward's output and
/// the gradient); dx may alias dy.
struct ReluGradOp {
  NETC_HD void operator()(int64_t, int, const float *in, float *out) const {
    out[0] = in[0] > 0.0f ? in[1] : 0.0f;
  }
};

/// y = a + b; y may alias a or b.
struct AddOp {
  NETC_HD void operator()(int64_t, int, const float *in, float *out) const {
    out[0] = in[0] + in[1];
  }
};

/// y = x * factor; y may alias x.
struct ScaleOp {
  float factor;
  NETC_HD void operator()(int64_t, int, const float *in, float *out) const {
    out[0] = in[0] * factor;
  }
};

//===----------------------------------------------------------------------===//
// Bias, conversions and layout changes
//===----------------------------------------------------------------------===//

/// A map of n images of c channels of `plane` pixels each, whose channels
/// are blocked by `lanes` (planeAt: 1 NCHW, c NHWC); c is a multiple of
/// lanes. A flat [N, F] tensor (Dims4{N, F, 1, 1}) is the same in every
/// layout.
struct MapGeom {
  int64_t n = 0, c = 0, plane = 0, lanes = 1;
  /// c, plane and lanes as divisors (mapGeom sets them).
  FastDiv cDiv, planeDiv, lanesDiv;

  /// The channel of the element at memory index i.
  NETC_HD int64_t channelAt(int64_t i) const {
    if (lanes == c) // NHWC: the channel is the fastest index
      return cDiv.mod(i);
    if (lanes == 1) // NCHW: planes one after another
      return cDiv.mod(planeDiv.div(i));
    int64_t nc, p;
    planeItem(i, planeDiv, lanesDiv, nc, p);
    return cDiv.mod(nc);
  }
  /// planeAt(nc, plane, p, lanes).
  NETC_HD int64_t at(int64_t nc, int64_t p) const {
    return planeAt(nc, plane, p, lanesDiv);
  }
};

inline MapGeom mapGeom(const kernels::Dims4 &d, int64_t lanes) {
  MapGeom g;
  g.n = d.n;
  g.c = d.c;
  g.plane = d.h * d.w;
  g.lanes = lanes;
  g.cDiv = FastDiv(g.c);
  g.planeDiv = FastDiv(g.plane);
  g.lanesDiv = FastDiv(g.lanes);
  return g;
}

/// Walks the rows [m, ...) of channel c of a map (a row is a pixel of an
/// image, rows in (n, p) order) by their memory offsets: one division to
/// start, then additions (planeAt's arithmetic for consecutive rows: within
/// an image a row is `lanes` elements after the last, and the next image's
/// first row of the channel is c * plane elements after this image's).
struct RowCursor {
  int64_t offset, p, plane, step, nextImage;
  NETC_HD RowCursor(const MapGeom &g, int64_t c, int64_t m) {
    int64_t n = g.planeDiv.divMod(m, p);
    plane = g.plane;
    step = g.lanes;
    nextImage = g.c * g.plane - (g.plane - 1) * g.lanes;
    offset = g.at(n * g.c + c, p);
  }
  NETC_HD void next() {
    if (++p == plane) {
      p = 0;
      offset += nextImage;
    } else {
      offset += step;
    }
  }
};

/// y = x + bias[c] per element (the bias an f32 parameter), added in float
/// and rounded once: the bias of a layer whose map is bf16, and the fused
/// conv+relu epilogue (`relu`: max(., 0) follows, in the same pass).
/// Rounding once after the relu gives the same bits as rounding the sum and
/// then taking the relu of the stored value (the relu of a rounded value is
/// exact, and rounding keeps the sign). Elementwise's op, over the map in
/// memory order; y may alias x.
struct BiasAddOp {
  MapGeom g;
  const float *bias;
  bool relu = false;
  /// How the channel changes across a pack (Elementwise: lane l > 0 only in
  /// a pack at e, a multiple of the pack width): kPerElement, or found once
  /// per pack, kSame when a pack lies in one plane (NCHW whose planes are
  /// whole packs) and kConsecutive when it lies in one pixel (NHWC whose C
  /// is whole packs).
  enum Channels : int {
    kPerElement,
    kSame,
    kConsecutive
  } channels = kPerElement;
  /// What a pack's lanes share (Elementwise finds it once per pack): the
  /// channel of the pack's first element, unless kPerElement.
  NETC_HD int64_t shared(int64_t e) const {
    return channels == kPerElement ? 0 : g.channelAt(e);
  }
  NETC_HD void operator()(int64_t e, int l, int64_t c0, const float *in,
                          float *out) const {
    int64_t c = channels == kSame          ? c0
                : channels == kConsecutive ? c0 + l
                                           : g.channelAt(e + l);
    float v = in[0] + bias[c];
    out[0] = relu && !(v > 0.0f) ? 0.0f : v;
  }
};

/// The fixed shape of batch norm's per-channel sums: the n*plane pixels of
/// every channel (`rows`, in (n, p) order) in `chunks` runs of `chunkRows`
/// (the last may be shorter). chunkRows is the smallest power of two whose
/// square is at least rows, so both of its stages sum about sqrt(rows)
/// values per thread. It depends on the dims only, never on the layout or
/// the GPU: every layout and both sides sum each channel in the same order,
/// bit for bit.
struct RowChunks {
  int64_t rows = 0, chunkRows = 1, chunks = 0;
};

inline RowChunks rowChunks(const kernels::Dims4 &d) {
  RowChunks s;
  s.rows = d.n * d.h * d.w;
  while (s.chunkRows * s.chunkRows < s.rows)
    s.chunkRows *= 2;
  s.chunks = (s.rows + s.chunkRows - 1) / s.chunkRows;
  return s;
}

/// The fixed shape of a bias gradient, in three stages: the rows (as in
/// RowChunks) in `chunks` runs of `chunkRows`, the smallest power of two
/// whose cube is at least rows; the chunks' partial sums in `groups` runs
/// of `groupChunks`, the smallest power of two whose square is at least
/// chunks; then the groups. Each stage's thread sums about cbrt(rows)
/// values. Two stages of sqrt(rows) (RowChunks) left the first too few
/// threads (VGG-16's first map: 12.5k for the fused relu_grad, which moved
/// 730-970 GB/s on the H200, 2026-11-30) and the last a serial sum of
/// 1568 partials a channel (about 49 us); here that map has 12544 chunks
/// of 256 rows (100k threads of a pack of channels, or 800k of an element),
/// 98 groups of 128 and a last stage of 98. Like RowChunks, the dims alone
/// fix it.
struct BiasGradShape : RowChunks {
  int64_t groupChunks = 1, groups = 0;
};

inline BiasGradShape biasGradShape(const kernels::Dims4 &d) {
  BiasGradShape s;
  s.rows = d.n * d.h * d.w;
  while (s.chunkRows * s.chunkRows * s.chunkRows < s.rows)
    s.chunkRows *= 2;
  s.chunks = (s.rows + s.chunkRows - 1) / s.chunkRows;
  while (s.groupChunks * s.groupChunks < s.chunks)
    s.groupChunks *= 2;
  s.groups = (s.chunks + s.groupChunks - 1) / s.groupChunks;
  return s;
}

/// Bytes of scratch a bias gradient of dy's shape `d` needs: one double
/// partial per (chunk, channel), chunk-major, then one per (group,
/// channel), group-major.
inline uint64_t biasGradScratchBytes(const kernels::Dims4 &d) {
  const BiasGradShape s = biasGradShape(d);
  return uint64_t(s.chunks + s.groups) * uint64_t(d.c) * sizeof(double);
}

/// Bias gradient, stage 1: one item per (chunk, channel), item
/// chunk * c + channel (neighbouring items read neighbouring channels, which
/// NHWC stores side by side): the chunk's rows of the channel summed in
/// double, in row order, into partials[item].
template <typename T> struct BiasGradPartials {
  MapGeom g;
  BiasGradShape s;
  const T *dy;
  double *partials;

  NETC_HD int64_t items() const { return s.chunks * g.c; }
  NETC_HD void operator()(int64_t i) const {
    // The rows go in batches of kBatch: the batch's loads first, then its
    // additions in row order (the sum of the one-row-at-a-time loop, bit
    // for bit). A thread keeps kBatch loads in flight where the compiler's
    // own unrolling kept 4 (the sm_90 SASS): each item sums a whole chunk
    // (chunks x C items, 800k for VGG-16's first layer, fewer deeper), so
    // each must have many bytes in flight for the sum to run near memory
    // speed.
    constexpr int kBatch = 16;
    int64_t c, chunk = g.cDiv.divMod(i, c);
    int64_t m = chunk * s.chunkRows, end = imin(m + s.chunkRows, s.rows);
    double acc = 0.0;
    RowCursor row(g, c, m);
    while (m < end) {
      const int n = int(imin(kBatch, end - m));
      T v[kBatch];
      for (int k = 0; k < kBatch; ++k)
        if (k < n) {
          v[k] = dy[row.offset];
          row.next();
        }
      for (int k = 0; k < kBatch; ++k)
        if (k < n)
          acc += double(load(&v[k]));
      m += n;
    }
    partials[i] = acc;
  }
};

/// Item i of a walk of a bias gradient's chunks a pack of `width` channels
/// at a time (item chunk * packs + pack): its chunk, its rows [m, end) and
/// its first channel c0.
struct ChunkPack {
  int64_t chunk, m, end, c0;
};
NETC_HD inline ChunkPack chunkPackOf(int64_t i, const FastDiv &packs,
                                     const BiasGradShape &s, int width) {
  ChunkPack r;
  int64_t q;
  r.chunk = packs.divMod(i, q);
  r.m = r.chunk * s.chunkRows;
  r.end = imin(r.m + s.chunkRows, s.rows);
  r.c0 = q * width;
  return r;
}

/// Sets the row geometry of a kernel that walks a bias gradient's chunks a
/// pack of channels at a time (its c, packs and s) for a map of dims `d`.
template <typename T, typename F>
void setChunkPacks(F &f, const kernels::Dims4 &d) {
  f.c = d.c;
  f.packs = FastDiv(d.c / Pack<T>::kWidth);
  f.s = biasGradShape(d);
}

/// Bias gradient, stage 1 on rows of packs (rowsOfPacks): one item per
/// (chunk, pack of kWidth channels), item chunk * packs + pack, the chunk's
/// rows of those channels read 16 bytes at a time and each channel summed
/// in double in row order into partials[chunk * c + channel]:
/// BiasGradPartials' sums, bit for bit (ReluGradBiasPartials' loop without
/// the relu). BiasGradPartials reads an element a thread, 64 bytes a warp
/// on bf16 maps, and moved 1.35 TB/s on the H200 (the bf16 VGG-16
/// classifier's 16 bias gradients, 1.28 ms, 2026-12-01); here a warp reads
/// 512 bytes at once.
template <typename T> struct BiasGradPackPartials {
  int64_t c = 0;   ///< channels: a row's elements
  FastDiv packs;   ///< c / kWidth
  BiasGradShape s; ///< of the map's dims
  const T *dy = nullptr;
  double *partials = nullptr;

  NETC_HD int64_t items() const { return s.chunks * packs.d; }
  NETC_HD void operator()(int64_t i) const {
    constexpr int W = Pack<T>::kWidth;
    constexpr int kBatch = 16;
    const ChunkPack at = chunkPackOf(i, packs, s, W);
    const int64_t end = at.end, c0 = at.c0;
    int64_t m = at.m;
    double acc[W] = {};
    while (m < end) {
      const int n = int(imin(kBatch, end - m));
      Pack<T> g[kBatch];
      NETC_UNROLL
      for (int k = 0; k < kBatch; ++k)
        if (k < n)
          g[k] = loadPack(dy + (m + k) * c + c0);
      NETC_UNROLL
      for (int k = 0; k < kBatch; ++k)
        if (k < n) {
          NETC_UNROLL
          for (int l = 0; l < W; ++l)
            acc[l] += double(load(&g[k].v[l]));
        }
      m += n;
    }
    NETC_UNROLL
    for (int l = 0; l < W; ++l)
      partials[at.chunk * c + c0 + l] = acc[l];
  }
};

template <typename T>
BiasGradPackPartials<T> makeBiasGradPackPartials(const kernels::Dims4 &d,
                                                 const T *dy,
                                                 double *partials) {
  BiasGradPackPartials<T> f;
  setChunkPacks<T>(f, d);
  f.dy = dy;
  f.partials = partials;
  return f;
}

/// Bias gradient, stage 2: one item per (group, channel), item
/// group * c + channel: the group's chunk partials of the channel summed in
/// chunk order in double, into groupPartials[item] (the scratch after the
/// chunks' partials).
struct BiasGradGroups {
  int64_t c;
  BiasGradShape s;
  const double *partials;
  double *groupPartials;

  NETC_HD int64_t items() const { return s.groups * c; }
  NETC_HD void operator()(int64_t i) const {
    const int64_t group = i / c, channel = i - group * c;
    const int64_t first = group * s.groupChunks;
    double sum = 0.0;
    forEachInOrder(partials + first * c + channel,
                   imin(s.groupChunks, s.chunks - first), c,
                   [&](double p) { sum += p; });
    groupPartials[i] = sum;
  }
};

/// Bias gradient, stage 3: one item per channel, its group partials summed
/// in group order in double and rounded once to the f32 gradient.
struct BiasGradFinal {
  int64_t c, groups;
  const double *groupPartials;
  float *db;

  NETC_HD int64_t items() const { return c; }
  NETC_HD void operator()(int64_t i) const {
    double sum = 0.0;
    forEachInOrder(groupPartials + i, groups, c, [&](double p) { sum += p; });
    db[i] = float(sum);
  }
};

/// The last two stages of a bias gradient of shape `s` over `c` channels,
/// from the chunk partials at the start of `scratch` (biasGradScratchBytes),
/// through a host or device launcher `run` (one call per stage, in order).
template <typename Run>
void biasGradTail(int64_t c, const BiasGradShape &s, double *scratch, float *db,
                  Run &&run) {
  double *groupPartials = scratch + s.chunks * c;
  run(BiasGradGroups{c, s, scratch, groupPartials});
  run(BiasGradFinal{c, s.groups, groupPartials, db});
}

/// Whether a map of dims `d` stored with `lanes` is rows of whole 16-byte
/// packs, every pointer aligned: an NHWC map (or a flat [N, F] one, the
/// same in every layout) of whole packs of channels. The kernels that walk
/// a bias gradient's chunks a pack at a time need it (ReluGradBiasPartials,
/// BiasGradPackPartials).
template <typename T>
bool rowsOfPacks(const kernels::Dims4 &d, int64_t lanes,
                 std::initializer_list<const void *> pointers) {
  return (lanes == d.c || d.h * d.w == 1) && d.c > 0 &&
         d.c % Pack<T>::kWidth == 0 && packAligned(pointers);
}

/// Whether a max-pool's windows tile its input (kernel = stride, no
/// padding), so that at most one window covers a pixel.
inline bool tiledPool(const kernels::PoolShape &s) {
  return s.win.kh == s.win.sh && s.win.kw == s.win.sw && s.win.ph == 0 &&
         s.win.pw == 0;
}

/// The backward of a max-pool whose windows tile its input (tiledPool), on
/// NHWC maps: row (n, h, w) of the pool's input gets the pooled pixel
/// (n, h / kh, w / kw)'s gradient where that pixel's switch names (h, w)
/// (the window position (h % kh) * kw + w % kw), else 0; a row no window covers
/// (the last of an odd size) gets 0. The bits of UnpoolForward's one-window
/// path (0.0 + v: -0 becomes +0).
template <typename T> struct TiledPoolGrad {
  const T *dy = nullptr;            ///< pooled gradient [n, outH, outW, c]
  const Switch *switches = nullptr; ///< the same layout
  int64_t outH = 0, outW = 0;
  FastDiv plane, inW, kh, kw; ///< the input's h * w and w; the window

  /// The gradient of the W channels from c0 of row `row`, C channels a row.
  NETC_HD Pack<T> at(int64_t row, int64_t c, int64_t c0) const {
    constexpr int W = Pack<T>::kWidth;
    int64_t p, n = plane.divMod(row, p);
    int64_t w, h = inW.divMod(p, w);
    int64_t rh, rw;
    const int64_t i = kh.divMod(h, rh), j = kw.divMod(w, rw);
    Pack<T> r;
    if (i >= outH || j >= outW) {
      for (int l = 0; l < W; ++l)
        store(&r.v[l], 0.0f);
      return r;
    }
    const int64_t from = ((n * outH + i) * outW + j) * c + c0;
    int sw[W];
    loadSwitches<W>(switches + from, sw);
    Pack<T> v = loadPack(dy + from);
    const int target = int(rh * kw.d + rw);
    for (int l = 0; l < W; ++l)
      store(&r.v[l], sw[l] == target ? load(&v.v[l]) + 0.0f : 0.0f);
    return r;
  }
};

/// relu_grad (ReluGradOp: dx = y > 0 ? dy : 0) and the first stage of the
/// bias gradient of its dx in one pass over an NHWC (or flat) map, for the
/// bias_grad that reads dx (which then runs only its last two stages,
/// biasGradTail). Item per
/// (chunk, pack of kWidth channels), item chunk * packs + pack: the chunk's
/// rows of those channels, each row's y and dy read and dx written 16 bytes at
/// a time, and dx as stored summed per channel in double, in row order, into
/// partials[chunk * c + channel]: BiasGradPartials' sums of the stored dx,
/// so bit for bit the partials of relu_grad then bias_grad, without reading
/// dx again. dx may alias dy (a row's packs are read before it is written).
/// Fewer threads than BiasGradPartials (one per kWidth channels: 100k on
/// VGG-16's first map, BiasGradShape), each with kBatch rows' loads in
/// flight.
///
/// With kPool, relu_grad's dy is a max-pool's backward computed in the same
/// pass (TiledPoolGrad: the pool's gather is not written and read back),
/// and `partials` may be null (no bias gradient to sum).
template <typename T, bool kPool = false> struct ReluGradBiasPartials {
  int64_t c = 0;   ///< channels: a row's elements
  FastDiv packs;   ///< c / kWidth
  BiasGradShape s; ///< of the map's dims
  const T *y = nullptr, *dy = nullptr;
  T *dx = nullptr;
  double *partials = nullptr;
  TiledPoolGrad<T> pool; ///< kPool: where dy comes from

  NETC_HD int64_t items() const { return s.chunks * packs.d; }
  NETC_HD void operator()(int64_t i) const {
    constexpr int W = Pack<T>::kWidth;
    // The pool's gather reads 48 bytes a row where dy is 16: fewer rows'
    // loads in flight keep its registers in bounds.
    constexpr int kBatch = kPool ? 8 : 16;
    const ChunkPack at = chunkPackOf(i, packs, s, W);
    const int64_t end = at.end, c0 = at.c0;
    int64_t m = at.m;
    double acc[W] = {};
    while (m < end) {
      const int n = int(imin(kBatch, end - m));
      Pack<T> a[kBatch], g[kBatch];
      NETC_UNROLL
      for (int k = 0; k < kBatch; ++k)
        if (k < n) {
          a[k] = loadPack(y + (m + k) * c + c0);
          if constexpr (kPool)
            g[k] = pool.at(m + k, c, c0);
          else
            g[k] = loadPack(dy + (m + k) * c + c0);
        }
      NETC_UNROLL
      for (int k = 0; k < kBatch; ++k)
        if (k < n) {
          Pack<T> r;
          NETC_UNROLL
          for (int l = 0; l < W; ++l) {
            float in[2] = {load(&a[k].v[l]), load(&g[k].v[l])}, out[1];
            ReluGradOp{}(0, 0, in, out);
            store(&r.v[l], out[0]);
            acc[l] += double(load(&r.v[l]));
          }
          storePack(dx + (m + k) * c + c0, r);
        }
      m += n;
    }
    if (partials) {
      NETC_UNROLL
      for (int l = 0; l < W; ++l)
        partials[at.chunk * c + c0 + l] = acc[l];
    }
  }
};

template <typename T>
ReluGradBiasPartials<T> makeReluGradBiasPartials(const kernels::Dims4 &d,
                                                 const T *y, const T *dy, T *dx,
                                                 double *partials) {
  ReluGradBiasPartials<T> f;
  setChunkPacks<T>(f, d);
  f.y = y;
  f.dy = dy;
  f.dx = dx;
  f.partials = partials;
  return f;
}

/// relu_grad of a max-pool's input map (y: the relu's output, which the
/// pool of shape `s` read; dx: its gradient) whose dy is the pool's backward
/// of the pooled gradient `dyPooled` through `switches`, computed in the
/// same pass (NHWC, tiledPool(s), rowsOfPacks); with `partials`,
/// also the bias gradient's first stage of dx.
template <typename T>
ReluGradBiasPartials<T, true>
makePoolReluGradBiasPartials(const kernels::PoolShape &s, const T *dyPooled,
                             const Switch *switches, const T *y, T *dx,
                             double *partials) {
  ReluGradBiasPartials<T, true> f;
  setChunkPacks<T>(f, s.in);
  f.y = y;
  f.dx = dx;
  f.partials = partials;
  f.pool.dy = dyPooled;
  f.pool.switches = switches;
  f.pool.outH = s.out.h;
  f.pool.outW = s.out.w;
  f.pool.plane = FastDiv(s.in.h * s.in.w);
  f.pool.inW = FastDiv(s.in.w);
  f.pool.kh = FastDiv(s.win.kh);
  f.pool.kw = FastDiv(s.win.kw);
  return f;
}

/// dst = src elementwise, converted through float (S, D in {float, Bf16}):
/// widening a bf16 weight gradient to f32, or a bf16 copy of f32 weights.
template <typename S, typename D> struct Convert {
  int64_t count;
  const S *src;
  D *dst;
  NETC_HD int64_t items() const { return count; }
  NETC_HD void operator()(int64_t i) const { store(dst + i, load(src + i)); }
};

/// A host-order f32 NCHW map (an uploaded image batch) into T storage with
/// `lanes`; one item per stored element, so the stores are in memory order.
template <typename T> struct ToStorage {
  MapGeom g;
  const float *src;
  T *dst;
  NETC_HD int64_t items() const { return g.n * g.c * g.plane; }
  NETC_HD void operator()(int64_t i) const {
    int64_t nc, p;
    planeItem(i, g.planeDiv, g.lanesDiv, nc, p);
    store(dst + i, src[nc * g.plane + p]);
  }
};

/// The inverse: T storage with `lanes` into f32 NCHW (exact: a widening);
/// one item per NCHW element.
template <typename T> struct FromStorage {
  MapGeom g;
  const T *src;
  float *dst;
  NETC_HD int64_t items() const { return g.n * g.c * g.plane; }
  NETC_HD void operator()(int64_t i) const {
    int64_t p, nc = g.planeDiv.divMod(i, p);
    dst[i] = load(src + g.at(nc, p));
  }
};

//===----------------------------------------------------------------------===//
// Channel padding (a convolution whose channels are not whole packs)
//===----------------------------------------------------------------------===//

// cuDNN's fast NHWC engines want every pixel's channels in whole 16-byte
// packs (8 bf16, 4 f32); a convolution with 3 input channels (an image) or
// 3 output ones (a reconstruction) gets slow ones: on the H200 (2026-11-30)
// the weight gradient of the 32x32 net's first bf16 layer took 1.3 ms of
// the 5.7 ms its step's kernels took one by one (3.3 ms as a graph). The cuda
// backend runs such a convolution on copies padded with zero channels: zero
// inputs and zero filters add exact zeros to every sum, so the padded
// convolution computes the same values (in cuDNN's order for the padded
// problem).

/// The channels of a convolution's map or filter padded to whole packs of
/// `elementBytes`-byte elements.
inline int64_t paddedChannels(int64_t c, int64_t elementBytes) {
  const int64_t w = 16 / elementBytes;
  return (c + w - 1) / w * w;
}

/// Rows of `from` elements copied into rows of `to` (NHWC maps are rows of
/// channels): the elements past `from` zero when to > from, the first `to`
/// of each row when to < from. E: uint16_t for bf16, uint32_t for f32 (the
/// bits, so +0 in the padding). One item per destination element.
template <typename E> struct ResizeRows {
  int64_t rows = 0, from = 0;
  FastDiv to;
  const E *src = nullptr;
  E *dst = nullptr;
  NETC_HD int64_t items() const { return rows * to.d; }
  NETC_HD void operator()(int64_t i) const {
    int64_t ch, r = to.divMod(i, ch);
    dst[i] = ch < from ? src[r * from + ch] : E(0);
  }
};

/// An f32 [K, C, kh, kw] weight into the T filter [kp, kh, kw, cp] (KRSC,
/// cuDNN's NHWC filter) that a padded convolution reads, zero past K and C:
/// rounded as toStorage rounds it. One item per destination element.
template <typename T> struct PadFilter {
  int64_t k = 0, c = 0, rs = 0; ///< the weight's K, C and kh * kw
  FastDiv cp, rsDiv;            ///< the padded C, and kh * kw
  int64_t kp = 0;
  const float *src = nullptr;
  T *dst = nullptr;
  NETC_HD int64_t items() const { return kp * rs * cp.d; }
  NETC_HD void operator()(int64_t i) const {
    int64_t ch, r, kk = rsDiv.divMod(cp.divMod(i, ch), r);
    store(dst + i, kk < k && ch < c ? src[(kk * c + ch) * rs + r] : 0.0f);
  }
};

/// The inverse for a weight gradient: the T filter [kp, kh, kw, cp] cuDNN
/// wrote into the f32 [K, C, kh, kw] gradient (exact: a widening), the
/// padding dropped. One item per destination element.
template <typename T> struct UnpadFilterGrad {
  int64_t rs = 0, cp = 0;
  FastDiv c, rsDiv;
  int64_t count = 0; ///< K * C * kh * kw
  const T *src = nullptr;
  float *dst = nullptr;
  NETC_HD int64_t items() const { return count; }
  NETC_HD void operator()(int64_t i) const {
    int64_t r, ch, kk = c.divMod(rsDiv.divMod(i, r), ch);
    dst[i] = load(src + (kk * rs + r) * cp + ch);
  }
};

/// The functors for a weight of dims `w` ([K, C, kh, kw]) and its padded
/// filter's kp and cp.
template <typename T>
PadFilter<T> makePadFilter(const kernels::Dims4 &w, int64_t kp, int64_t cp,
                           const float *src, T *dst) {
  PadFilter<T> f;
  f.k = w.n;
  f.c = w.c;
  f.rs = w.h * w.w;
  f.cp = FastDiv(cp);
  f.rsDiv = FastDiv(f.rs);
  f.kp = kp;
  f.src = src;
  f.dst = dst;
  return f;
}

template <typename T>
UnpadFilterGrad<T> makeUnpadFilterGrad(const kernels::Dims4 &w, int64_t cp,
                                       const T *src, float *dst) {
  UnpadFilterGrad<T> f;
  f.rs = w.h * w.w;
  f.cp = cp;
  f.c = FastDiv(w.c);
  f.rsDiv = FastDiv(f.rs);
  f.count = w.count();
  f.src = src;
  f.dst = dst;
  return f;
}

/// The same map in another layout, bit for bit (E: uint16_t for bf16,
/// uint32_t for f32 and i32, uint8_t for switches, whose values are
/// layout-free); one item per destination element, in memory order. For
/// the maps at a border of layouts (NHWC maps flattened for the fc layers).
template <typename E> struct Relayout {
  MapGeom g; ///< g.lanes: the source's
  FastDiv toLanes;
  const E *src;
  E *dst;
  NETC_HD int64_t items() const { return g.n * g.c * g.plane; }
  NETC_HD void operator()(int64_t i) const {
    int64_t nc, p;
    planeItem(i, g.planeDiv, toLanes, nc, p);
    dst[i] = src[g.at(nc, p)];
  }
};

//===----------------------------------------------------------------------===//
// Local response normalisation (Caffe ACROSS_CHANNELS)
//===----------------------------------------------------------------------===//

/// The constants of an LRN, formed on the host in double exactly as
/// ref::lrnForward and ref::lrnBackward form them (so that the kernels'
/// double arithmetic is the reference's, operation for operation).
struct LrnCoef {
  int64_t half = 0;         ///< size / 2: the window is [c - half, c + half]
  double k = 1.0;           ///< k
  double alphaOverSize = 0; ///< alpha / size
  double negBeta = 0;       ///< -beta
  double gradCoef = 0;      ///< 2 * alpha * beta / size
};

inline LrnCoef lrnCoef(const kernels::LrnParams &p) {
  LrnCoef l;
  l.half = p.size / 2;
  l.k = p.k;
  l.alphaOverSize = p.alpha / double(p.size);
  l.negBeta = -p.beta;
  l.gradCoef = 2.0 * p.alpha * p.beta / double(p.size);
  return l;
}

/// Where channel cc of a pixel lies from the pixel's channel 0 in a map of
/// geometry g (planeAt(n*C + cc, ...) - planeAt(n*C, ...), C a multiple of
/// lanes): cc * plane in NCHW, cc in NHWC, whose channels are adjacent.
NETC_HD inline int64_t channelOffset(const MapGeom &g, int64_t cc) {
  if (g.lanes == 1)
    return cc * g.plane;
  if (g.lanes == g.c)
    return cc;
  int64_t lane, group = g.lanesDiv.divMod(cc, lane);
  return group * g.plane * g.lanes + lane;
}

/// scale = k + alpha/size * sum of x^2 over the channels
/// [c - half, c + half] ∩ [0, C) of the pixel whose channel 0 is xp[0]:
/// summed in double in ascending channel order, as the reference does.
template <typename T>
NETC_HD inline double lrnScale(const MapGeom &g, const LrnCoef &l, const T *xp,
                               int64_t c) {
  double sum = 0.0;
  int64_t last = imin(c + l.half, g.c - 1);
  for (int64_t cc = imax(c - l.half, 0); cc <= last; ++cc) {
    double v = double(load(xp + channelOffset(g, cc)));
    sum += v * v;
  }
  return l.k + l.alphaOverSize * sum;
}

/// One item per element, in memory order (in NHWC neighbouring items are
/// neighbouring channels of a pixel, so the window's reads are coalesced and
/// shared through the cache): y = x * scale^-beta, computed in double as
/// ref::lrnForward does and rounded once. y must not alias x.
template <typename T> struct LrnForward {
  MapGeom g;
  LrnCoef l;
  const T *x;
  T *y;

  NETC_HD int64_t items() const { return g.n * g.c * g.plane; }
  NETC_HD void operator()(int64_t i) const {
    int64_t c = g.channelAt(i);
    double scale = lrnScale(g, l, x + (i - channelOffset(g, c)), c);
    store(y + i, float(double(load(x + i)) * dpow(scale, l.negBeta)));
  }
};

/// One item per element of dx, ref::lrnBackward's formula in double:
///   dx[c] = dy[c] * scale[c]^-beta
///           - 2*alpha*beta/size * x[c] * sum_{|c'-c| <= half} dy[c'] y[c'] /
///                                                             scale[c']
/// from the forward's input x and output y. The scales of the window's
/// channels are recomputed from x (size sums of at most size squares: no
/// scratch, no second pass). dx must not alias x, y or dy.
template <typename T> struct LrnBackward {
  MapGeom g;
  LrnCoef l;
  const T *x, *y, *dy;
  T *dx;

  NETC_HD int64_t items() const { return g.n * g.c * g.plane; }
  NETC_HD void operator()(int64_t i) const {
    int64_t c = g.channelAt(i);
    int64_t base = i - channelOffset(g, c);
    const T *xp = x + base;
    double sum = 0.0, scale = 0.0;
    int64_t last = imin(c + l.half, g.c - 1);
    for (int64_t cc = imax(c - l.half, 0); cc <= last; ++cc) {
      int64_t j = base + channelOffset(g, cc);
      double s = lrnScale(g, l, xp, cc);
      if (cc == c)
        scale = s;
      sum += double(load(dy + j)) * double(load(y + j)) / s;
    }
    store(dx + i, float(double(load(dy + i)) * dpow(scale, l.negBeta) -
                        l.gradCoef * double(load(x + i)) * sum));
  }
};

//===----------------------------------------------------------------------===//
// Batch normalisation (per channel, over n, h and w)
//===----------------------------------------------------------------------===//

// The batch statistics and the gradient's channel sums are two-stage
// reductions of a fixed shape (rowChunks of the map's dims):
// stage 1 sums each (chunk, channel) in row order into a double partial,
// stage 2 sums a channel's partials in chunk order. The order depends on
// the dims only, so host and device, f32 and bf16 storage and every layout
// sum each channel alike, bit for bit; it differs from the reference's one
// sequential loop per channel, so the double sums may differ from the
// reference's in their last bits. Everything else is ref::batchNorm*'s double
// arithmetic, operation for operation (sqrt and division are correctly rounded
// on both sides), rounded once when stored. Parameters (scale, shift), running
// statistics and parameter gradients are f32 whatever T is.

/// What a batch norm keeps in its scratch (device memory on a GPU; the host
/// launchers allocate their own): the stage-1 partials of up to two sums
/// (sum k of item (chunk, channel) at partials[k * chunks * c + chunk * c +
/// channel]), then per channel the batch mean and 1/sqrt(var + eps) and,
/// in the backward, the sums of dy and dy * xhat.
struct BatchNormScratch {
  double *partials = nullptr;                    ///< 2 * chunks * c
  double *mean = nullptr, *invStd = nullptr;     ///< c each
  double *sumDy = nullptr, *sumDyXhat = nullptr; ///< c each
};

/// Bytes of scratch a training-mode batch norm (forward or backward) of a
/// map of dims `d` needs: (2 * rowChunks(d).chunks + 4) * d.c doubles.
/// The inference forward needs none.
inline uint64_t batchNormScratchBytes(const kernels::Dims4 &d) {
  return (2 * uint64_t(rowChunks(d).chunks) + 4) * uint64_t(d.c) *
         sizeof(double);
}

/// The scratch carved out of batchNormScratchBytes(d) bytes at `base`.
inline BatchNormScratch batchNormScratch(const kernels::Dims4 &d,
                                         double *base) {
  int64_t p = 2 * rowChunks(d).chunks * d.c;
  BatchNormScratch s;
  s.partials = base;
  s.mean = base + p;
  s.invStd = s.mean + d.c;
  s.sumDy = s.invStd + d.c;
  s.sumDyXhat = s.sumDy + d.c;
  return s;
}

/// The sums of a batch norm's reductions, one stage-1 pass each.
enum class BatchNormSum : int {
  X,                ///< sum x
  SquaredDeviation, ///< sum (x - mean)^2, mean the double batch mean
  Gradient,         ///< sum dy and sum dy * xhat, xhat = (x - mean) * invStd
};

NETC_HD inline double dsqrt(double x) {
#if defined(__CUDA_ARCH__)
  return ::sqrt(x);
#else
  return std::sqrt(x);
#endif
}

/// Stage 1: one item per (chunk, channel), item chunk * c + channel as in
/// BiasGradPartials: the chunk's rows of the channel summed in double in
/// row order, each term as the reference forms it.
template <typename T> struct BatchNormPartials {
  MapGeom g;
  RowChunks s;
  BatchNormSum sum;
  const T *x;
  const T *dy; ///< Gradient only
  BatchNormScratch st;

  NETC_HD int64_t items() const { return s.chunks * g.c; }
  NETC_HD void operator()(int64_t i) const {
    int64_t c, chunk = g.cDiv.divMod(i, c);
    int64_t m = chunk * s.chunkRows, end = imin(m + s.chunkRows, s.rows);
    double mean = sum == BatchNormSum::X ? 0.0 : st.mean[c];
    double invStd = sum == BatchNormSum::Gradient ? st.invStd[c] : 0.0;
    double a = 0.0, b = 0.0;
    for (RowCursor row(g, c, m); m < end; ++m, row.next()) {
      int64_t at = row.offset;
      double v = double(load(x + at));
      if (sum == BatchNormSum::X) {
        a += v;
      } else if (sum == BatchNormSum::SquaredDeviation) {
        double d = v - mean;
        a += d * d;
      } else {
        double xhat = (v - mean) * invStd;
        double gy = double(load(dy + at));
        a += gy;
        b += gy * xhat;
      }
    }
    st.partials[i] = a;
    if (sum == BatchNormSum::Gradient)
      st.partials[s.chunks * g.c + i] = b;
  }
};

/// Stage 2: one item per channel, its partials summed in chunk order, then
///   X:                mean = sum / M (M = n*h*w);
///   SquaredDeviation: var = sum / M, invStd = 1 / sqrt(var + eps); with
///                     runMean/runVar (the training forward) the running
///                     statistics updated as ref::batchNormForwardTraining
///                     does: r = momentum * r + (1 - momentum) * batch, the
///                     variance's batch value unbiased (var * M / (M - 1);
///                     var itself when M == 1); with `roundStats` (the
///                     backward) mean and invStd rounded to f32, as the
///                     reference backend's batchStats stores them for
///                     ref::batchNormBackward;
///   Gradient:         the sums kept, dshift = sum dy, dscale = sum dy*xhat
///                     (f32; either may be null).
struct BatchNormChannel {
  int64_t c = 0, chunks = 0, m = 0;
  BatchNormSum sum = BatchNormSum::X;
  double eps = 0, momentum = 0;
  BatchNormScratch st;
  float *runMean = nullptr, *runVar = nullptr;
  bool roundStats = false;
  float *dscale = nullptr, *dshift = nullptr;

  NETC_HD int64_t items() const { return c; }
  NETC_HD void operator()(int64_t ch) const {
    double a = 0.0;
    forEachInOrder(st.partials + ch, chunks, c, [&](double p) { a += p; });
    if (sum == BatchNormSum::X) {
      st.mean[ch] = a / double(m);
    } else if (sum == BatchNormSum::SquaredDeviation) {
      double var = a / double(m);
      double invStd = 1.0 / dsqrt(var + eps);
      double mean = st.mean[ch];
      if (runMean) {
        double unbiased = m > 1 ? var * double(m) / double(m - 1) : var;
        runMean[ch] =
            float(momentum * double(runMean[ch]) + (1.0 - momentum) * mean);
        runVar[ch] =
            float(momentum * double(runVar[ch]) + (1.0 - momentum) * unbiased);
      }
      if (roundStats) {
        st.mean[ch] = double(float(mean));
        invStd = double(float(invStd));
      }
      st.invStd[ch] = invStd;
    } else {
      double b = 0.0;
      const double *second = st.partials + chunks * c;
      forEachInOrder(second + ch, chunks, c, [&](double p) { b += p; });
      st.sumDy[ch] = a;
      st.sumDyXhat[ch] = b;
      if (dshift)
        dshift[ch] = float(a);
      if (dscale)
        dscale[ch] = float(b);
    }
  }
};

/// The training forward's output, one item per element in memory order:
/// y = scale * (x - mean) * invStd + shift in double from the batch
/// statistics in the scratch, rounded once. y may alias x.
template <typename T> struct BatchNormNormalize {
  MapGeom g;
  const T *x;
  const float *scale, *shift;
  BatchNormScratch st;
  T *y;

  NETC_HD int64_t items() const { return g.n * g.c * g.plane; }
  NETC_HD void operator()(int64_t i) const {
    int64_t c = g.channelAt(i);
    store(y + i, float(double(scale[c]) * (double(load(x + i)) - st.mean[c]) *
                           st.invStd[c] +
                       double(shift[c])));
  }
};

/// The inference forward, ref::batchNormForwardInference per element: y =
/// scale * (x - runMean) * invStd + shift with invStd = 1 / sqrt(runVar +
/// eps), in double, rounded once; no scratch. y may alias x.
template <typename T> struct BatchNormInference {
  MapGeom g;
  double eps;
  const T *x;
  const float *scale, *shift, *runMean, *runVar;
  T *y;

  NETC_HD int64_t items() const { return g.n * g.c * g.plane; }
  NETC_HD void operator()(int64_t i) const {
    int64_t c = g.channelAt(i);
    double invStd = 1.0 / dsqrt(double(runVar[c]) + eps);
    store(y + i, float(double(scale[c]) *
                           (double(load(x + i)) - double(runMean[c])) * invStd +
                       double(shift[c])));
  }
};

/// The backward's dx, one item per element in memory order, ref::
/// batchNormBackward's formula from the scratch's statistics and sums:
///   dx = scale * invStd / M * (M * dy - sum dy - xhat * sum dy*xhat).
/// dx may alias x or dy.
template <typename T> struct BatchNormBackwardDx {
  MapGeom g;
  int64_t m;
  const T *x, *dy;
  const float *scale;
  BatchNormScratch st;
  T *dx;

  NETC_HD int64_t items() const { return g.n * g.c * g.plane; }
  NETC_HD void operator()(int64_t i) const {
    int64_t c = g.channelAt(i);
    double invStd = st.invStd[c];
    double k = double(scale[c]) * invStd / double(m);
    double xhat = (double(load(x + i)) - st.mean[c]) * invStd;
    store(dx + i, float(k * (double(m) * double(load(dy + i)) - st.sumDy[c] -
                             xhat * st.sumDyXhat[c])));
  }
};

/// The batch statistics' passes, which the training forward and the
/// backward share: sum x -> mean -> sum (x - mean)^2 -> invStd, the last
/// channel pass with what `configure` sets (the running statistics, or the
/// backward's rounding). Returns that channel functor for the passes after.
template <typename T, typename Configure, typename Run>
BatchNormChannel batchStatisticsPasses(const kernels::Dims4 &d, MapGeom g,
                                       double eps, const T *x, double *scratch,
                                       Configure &&configure, Run &&run) {
  RowChunks s = rowChunks(d);
  BatchNormChannel ch;
  ch.c = d.c;
  ch.chunks = s.chunks;
  ch.m = s.rows;
  ch.eps = eps;
  ch.st = batchNormScratch(d, scratch);
  run(BatchNormPartials<T>{g, s, BatchNormSum::X, x, nullptr, ch.st});
  run(ch);
  run(BatchNormPartials<T>{g, s, BatchNormSum::SquaredDeviation, x, nullptr,
                           ch.st});
  ch.sum = BatchNormSum::SquaredDeviation;
  configure(ch);
  run(ch);
  return ch;
}

/// The training forward's passes, in order, each handed to `run` (the host
/// walks them, the device launches them: the same functors on both sides):
/// sum x -> mean -> sum (x - mean)^2 -> invStd and the running statistics
/// -> y. `scratch` is batchNormScratchBytes(d) bytes.
template <typename T, typename Run>
void batchNormTrainingPasses(const kernels::Dims4 &d, int64_t lanes, double eps,
                             double momentum, const T *x, const float *scale,
                             const float *shift, float *runMean, float *runVar,
                             T *y, double *scratch, Run &&run) {
  MapGeom g = mapGeom(d, lanes);
  BatchNormChannel ch = batchStatisticsPasses(
      d, g, eps, x, scratch,
      [&](BatchNormChannel &c) {
        c.momentum = momentum;
        c.runMean = runMean;
        c.runVar = runVar;
      },
      run);
  run(BatchNormNormalize<T>{g, x, scale, shift, ch.st, y});
}

/// The backward's passes: the batch statistics recomputed as the reference
/// backend's batch_norm_grad does (sum x -> mean -> sum (x - mean)^2 ->
/// invStd, then mean and invStd rounded to f32), then sum dy and dy * xhat
/// -> dscale, dshift, and dx unless it is null.
template <typename T, typename Run>
void batchNormBackwardPasses(const kernels::Dims4 &d, int64_t lanes, double eps,
                             const T *x, const float *scale, const T *dy, T *dx,
                             float *dscale, float *dshift, double *scratch,
                             Run &&run) {
  MapGeom g = mapGeom(d, lanes);
  BatchNormChannel ch = batchStatisticsPasses(
      d, g, eps, x, scratch, [](BatchNormChannel &c) { c.roundStats = true; },
      run);
  RowChunks s = rowChunks(d);
  run(BatchNormPartials<T>{g, s, BatchNormSum::Gradient, x, dy, ch.st});
  ch.sum = BatchNormSum::Gradient;
  ch.roundStats = false;
  ch.dscale = dscale;
  ch.dshift = dshift;
  run(ch);
  if (dx)
    run(BatchNormBackwardDx<T>{g, s.rows, x, dy, scale, ch.st, dx});
}

//===----------------------------------------------------------------------===//
// Fused SGD with momentum, over any list of tensors
//===----------------------------------------------------------------------===//

/// One parameter of a fused update: fp32 master weights, their gradient and
/// momentum, its multipliers, and optionally a bf16 copy of the updated
/// weights (what bf16 kernels read) in the layout those kernels read: the
/// weights seen as planes of `copyPlane` elements (kh*kw of a [K, C, kh, kw]
/// filter) blocked by `copyLanes` (planeAt), so that copyLanes = C writes
/// the KRSC filter an NHWC convolution takes, exactly what toStorage makes
/// of the same weights; 1 and 1 keep the f32 order.
struct SgdTensor {
  float *w = nullptr;
  const float *grad = nullptr;
  float *velocity = nullptr;
  Bf16 *copy = nullptr; ///< may be null
  int64_t count = 0;
  double lrMult = 1.0, decayMult = 1.0;
  FastDiv copyPlane = FastDiv(1), copyLanes = FastDiv(1);
  /// An f32 copy in the copyPlane/copyLanes layout instead of `copy` (a
  /// tf32 plan's KRSC copy for convolutions on NHWC maps); at most one of
  /// the two is set.
  float *copyF32 = nullptr;
};

/// The step's hyper-parameters (they change with the schedule; the tensor
/// and chunk lists do not).
struct SgdHyper {
  double lr = 0, momentum = 0, decay = 0;
};

/// What changes from step to step, kept in device memory by the cuda
/// backend so that kernels recorded once (a CUDA graph) read the current
/// step's values when replayed: the SGD hyper-parameters and the step
/// number dropout draws its mask from.
struct StepParams {
  SgdHyper hyper;
  uint64_t step = 0;
};

/// A run of at most kSgdChunk elements of one tensor.
struct SgdChunk {
  int64_t tensor = 0, begin = 0, end = 0;
};
constexpr int64_t kSgdChunk = 4096;

/// Splits tensors into chunks (in order; empty tensors get none).
inline std::vector<SgdChunk> sgdChunks(const SgdTensor *tensors, int64_t n) {
  std::vector<SgdChunk> chunks;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t b = 0; b < tensors[t].count; b += kSgdChunk)
      chunks.push_back({t, b, imin(b + kSgdChunk, tensors[t].count)});
  return chunks;
}

/// Where element e of tensor p's weights lies in its bf16 copy.
NETC_HD inline int64_t copyAt(const SgdTensor &p, int64_t e) {
  int64_t q, plane = p.copyPlane.divMod(e, q);
  return planeAt(plane, p.copyPlane.d, q, p.copyLanes);
}

/// One item per four elements of a chunk; ref::sgdUpdate's arithmetic per
/// element:
///   g = grad + dec * w;  v = mom * v + rate * g;  w -= v;  copy = bf16(w)
/// with rate = float(lr * lrMult), dec = float(decay * decayMult) and
/// mom = float(momentum) formed in double and rounded once. The
/// hyper-parameters are read through a pointer (device memory on a GPU,
/// StepParams::hyper), like Dropout's step. Four elements an item: the
/// chunk, tensor and hyper-parameter loads, about twenty for 22 bytes of
/// memory traffic when an item was one element, are made once for four,
/// and the weights, gradient and momentum move 16 bytes at a time where
/// they are 16-byte aligned (elsewhere, and at a chunk's ragged end, one
/// element at a time: the same bits).
struct SgdMomentum {
  static constexpr int64_t kPer = 4; ///< elements an item (one f32 pack)
  const SgdTensor *tensors;
  const SgdChunk *chunks;
  int64_t numChunks;
  const SgdHyper *hyper;

  NETC_HD int64_t items() const { return numChunks * (kSgdChunk / kPer); }
  NETC_HD void operator()(int64_t i) const {
    const SgdChunk &c = chunks[i / (kSgdChunk / kPer)];
    const int64_t e0 = c.begin + i % (kSgdChunk / kPer) * kPer;
    if (e0 >= c.end)
      return;
    const SgdTensor &p = tensors[c.tensor];
    const float rate = float(hyper->lr * p.lrMult);
    const float dec = float(hyper->decay * p.decayMult);
    const float mom = float(hyper->momentum);
    if (e0 + kPer <= c.end && ((reinterpret_cast<uintptr_t>(p.w + e0) |
                                reinterpret_cast<uintptr_t>(p.grad + e0) |
                                reinterpret_cast<uintptr_t>(p.velocity + e0)) %
                               16) == 0) {
      Pack<float> w = loadPack(p.w + e0), v = loadPack(p.velocity + e0);
      const Pack<float> g = loadPack(p.grad + e0);
      for (int l = 0; l < kPer; ++l) {
        float gl = g.v[l] + dec * w.v[l];
        v.v[l] = mom * v.v[l] + rate * gl;
        w.v[l] = w.v[l] - v.v[l];
      }
      storePack(p.velocity + e0, v);
      storePack(p.w + e0, w);
      for (int l = 0; l < kPer; ++l)
        writeCopy(p, e0 + l, w.v[l]);
      return;
    }
    const int64_t end = imin(e0 + kPer, c.end);
    for (int64_t e = e0; e < end; ++e) {
      float g = p.grad[e] + dec * p.w[e];
      float v = mom * p.velocity[e] + rate * g;
      p.velocity[e] = v;
      float w = p.w[e] - v;
      p.w[e] = w;
      writeCopy(p, e, w);
    }
  }

  /// Element e's updated weight w into the tensor's copy, if it has one.
  NETC_HD static void writeCopy(const SgdTensor &p, int64_t e, float w) {
    if (p.copy)
      p.copy[p.copyLanes.d == 1 ? e : copyAt(p, e)] = Bf16::fromFloat(w);
    else if (p.copyF32)
      p.copyF32[copyAt(p, e)] = w;
  }
};

//===----------------------------------------------------------------------===//
// Functor builders (shared by the host and the device launchers, so both
// derive the same arguments) and checks only the host can make
//===----------------------------------------------------------------------===//

/// The width of a pooling kernel's items: channel packs of W when `packed`,
/// the map is NHWC with whole packs of channels, and every pointer is
/// 16-byte aligned; else one element.
template <typename T>
int64_t poolWidth(bool packed, int64_t channels, int64_t lanes,
                  std::initializer_list<const void *> pointers) {
  constexpr int64_t W = Pack<T>::kWidth;
  return packed && lanes == channels && channels % W == 0 &&
                 packAligned(pointers)
             ? W
             : 1;
}

// `lanes`: the layout of both the map and its switches (1 NCHW, C NHWC, 8
// or 16 the cpu backend's blocked layouts); `packed`: channel packs where
// poolWidth allows them.

template <typename T>
MaxPoolForward<T> makeMaxPoolForward(const kernels::PoolShape &s, const T *x,
                                     T *y, Switch *switches, int64_t lanes = 1,
                                     bool packed = true) {
  PoolGeom g = poolGeom(s, lanes);
  return {g, x, y, switches,
          poolWidth<T>(packed, s.in.c, lanes, {x, y, switches})};
}

template <typename T>
AvgPoolForward<T> makeAvgPoolForward(const kernels::PoolShape &s, const T *x,
                                     T *y, int64_t lanes = 1) {
  PoolGeom g = poolGeom(s, lanes);
  return {g, x, y};
}

/// `s` is the forward's shape (dy is s.out, dx s.in).
template <typename T>
AvgPoolBackward<T> makeAvgPoolBackward(const kernels::PoolShape &s, const T *dy,
                                       T *dx, int64_t lanes = 1) {
  PoolGeom g = poolGeom(s, lanes);
  return {g, dy, dx};
}

template <typename T>
UnpoolForward<T> makeUnpoolForward(const kernels::UnpoolShape &s, const T *x,
                                   const Switch *switches, T *y,
                                   int64_t lanes = 1, bool packed = true) {
  UnpoolGeom u = unpoolGeom(s, lanes);
  return {u, x, switches, y,
          poolWidth<T>(packed, s.in.c, lanes, {x, switches, y})};
}

/// LRN over a map of dims `d` stored with `lanes` (1 NCHW, C NHWC).
template <typename T>
LrnForward<T> makeLrnForward(const kernels::Dims4 &d, int64_t lanes,
                             const kernels::LrnParams &p, const T *x, T *y) {
  return {mapGeom(d, lanes), lrnCoef(p), x, y};
}

template <typename T>
LrnBackward<T> makeLrnBackward(const kernels::Dims4 &d, int64_t lanes,
                               const kernels::LrnParams &p, const T *x,
                               const T *y, const T *dy, T *dx) {
  return {mapGeom(d, lanes), lrnCoef(p), x, y, dy, dx};
}

/// Max-pool backward is the unpool of dy through the switches (summing where
/// windows share a maximum): the same gather, so it needs no atomics and
/// routes the gradient through exactly the switches the forward recorded
/// (cuDNN's pooling backward would pick its own maxima).
template <typename T>
UnpoolForward<T> makeMaxPoolBackward(const kernels::PoolShape &s, const T *dy,
                                     const Switch *switches, T *dx,
                                     int64_t lanes = 1, bool packed = true) {
  UnpoolGeom u;
  u.pool = poolGeom(s, lanes);
  return {u, dy, switches, dx,
          poolWidth<T>(packed, s.in.c, lanes, {dy, switches, dx})};
}

template <typename T>
UnpoolBackward<T> makeUnpoolBackward(const kernels::UnpoolShape &s, const T *dy,
                                     const Switch *switches, T *dx,
                                     int64_t lanes = 1, bool packed = true) {
  UnpoolGeom u = unpoolGeom(s, lanes);
  return {u, dy, switches, dx,
          poolWidth<T>(packed, s.in.c, lanes, {dy, switches, dx})};
}

// The elementwise kernels; `packed`: in packs where the pointers allow
// (Elementwise), else one element per item.
template <typename T>
auto makeRelu(int64_t count, const T *x, T *y, bool packed) {
  return elementwise<T>(count, packed, {x}, {y}, ReluOp{});
}

template <typename T>
auto makeReluGrad(int64_t count, const T *y, const T *dy, T *dx, bool packed) {
  return elementwise<T>(count, packed, {y, dy}, {dx}, ReluGradOp{});
}

template <typename T>
auto makeAdd(int64_t count, const T *a, const T *b, T *y, bool packed) {
  return elementwise<T>(count, packed, {a, b}, {y}, AddOp{});
}

template <typename T>
auto makeScale(int64_t count, const T *x, float factor, T *y, bool packed) {
  return elementwise<T>(count, packed, {x}, {y}, ScaleOp{factor});
}

/// Over a map of dims `d` stored with `lanes`.
template <typename T>
auto makeBiasAdd(const kernels::Dims4 &d, int64_t lanes, const T *x,
                 const float *bias, T *y, bool relu, bool packed) {
  BiasAddOp op{mapGeom(d, lanes), bias, relu};
  constexpr int64_t W = Pack<T>::kWidth;
  if (lanes == 1 && (d.h * d.w) % W == 0)
    op.channels = BiasAddOp::kSame;
  else if (lanes == d.c && d.c % W == 0)
    op.channels = BiasAddOp::kConsecutive;
  return elementwise<T>(d.n * d.c * d.h * d.w, packed, {x}, {y}, op);
}

/// `scale` is dropoutScale(ratio); `step` the step number's address.
template <typename T>
auto makeDropout(int64_t count, double ratio, float scale, uint64_t seed,
                 const uint64_t *step, uint64_t first, int64_t plane,
                 int64_t lanes, const T *x, T *y, bool packed) {
  return elementwise<T>(count, packed, {x}, {y},
                        DropoutOp{seed, step, first, plane, FastDiv(plane),
                                  FastDiv(lanes), ratio, scale});
}

/// `da` and `db` may be null.
template <typename T>
auto makeEuclideanLossBackward(int64_t batch, int64_t count, const T *a,
                               const T *b, float dloss, T *da, T *db,
                               bool packed) {
  return elementwise<T>(count, packed, {a, b}, {da, db},
                        EuclideanLossBackwardOp{double(dloss) / double(batch)});
}

/// Throws KernelError unless lanes >= 1 and `channels` is a multiple of it
/// (what planeAt assumes).
void checkLanes(const char *kernel, int64_t channels, int64_t lanes);
/// Throws KernelError unless an element of `elementBytes` bytes is one
/// relayout copies (2 or 4).
void checkElementBytes(const char *kernel, int64_t elementBytes);
/// Throws KernelError unless `count` elements are whole groups of `lanes`
/// planes of `plane` elements (what Dropout's index arithmetic assumes).
void checkDropoutLayout(int64_t count, int64_t plane, int64_t lanes);
/// Throws KernelError unless `batch` > 0.
void checkLossBatch(const char *kernel, int64_t batch);
/// Throw the KernelError of a fused relu_grad its launcher refuses: a map
/// that is not NHWC whole packs of `width` channels, aligned
/// (rowsOfPacks), or for the pool's backward also a pool whose
/// windows do not tile its input (tiledPool).
[[noreturn]] void reluGradBiasRefused(const kernels::Dims4 &d, int64_t lanes,
                                      int64_t width);
[[noreturn]] void poolReluGradRefused(const kernels::PoolShape &s,
                                      int64_t width);

/// The host and device launchers' checks of the fused relu_grads.
template <typename T>
void checkReluGradBias(const kernels::Dims4 &d, int64_t lanes,
                       std::initializer_list<const void *> pointers) {
  if (!rowsOfPacks<T>(d, lanes, pointers))
    reluGradBiasRefused(d, lanes, Pack<T>::kWidth);
}
template <typename T>
void checkPoolReluGradBias(const kernels::PoolShape &s,
                           std::initializer_list<const void *> pointers) {
  kernels::checkSwitchWindow("relu_grad (max-pool backward)", s.win);
  if (!tiledPool(s) || !rowsOfPacks<T>(s.in, s.in.c, pointers))
    poolReluGradRefused(s, Pack<T>::kWidth);
}
/// Throws KernelError unless ratio is in [0, 1); returns the dropout scale
/// T(1 / (1 - ratio)), formed in double and rounded once as the reference
/// does.
float dropoutScale(double ratio);
/// Throws KernelError naming the first switch that is outside its output
/// plane or its window (what a max-pool with the unpool's window cannot
/// have written). `s` is the unpool's shape; the switches are stored with
/// `lanes`, like the pooled map.
void checkSwitches(const kernels::UnpoolShape &s, const Switch *switches,
                   int64_t lanes = 1);
/// Throws KernelError naming the first label outside [0, k).
void checkLabels(const char *kernel, int64_t n, int64_t k,
                 const int32_t *labels);
/// Throws KernelError unless the LRN window `p.size` is odd and positive
/// (as ref::lrnForward requires).
void checkLrn(const char *kernel, const kernels::LrnParams &p);
/// Throws KernelError unless the map has a batch to normalise over
/// (n * h * w > 0, as ref::batchNormForwardTraining requires).
void checkBatchNorm(const char *kernel, const kernels::Dims4 &d);

//===----------------------------------------------------------------------===//
// Host launchers: the kernels run on the CPU, item by item (the same
// signatures as the reference kernels where they exist)
//===----------------------------------------------------------------------===//

// Templates on the storage type T, defined in HostKernels.cpp for float and
// Bf16 only. Where layout matters, `lanes` (default 1, NCHW) is the map's
// (and its switches') channel block: C for NHWC.
namespace host {

template <typename T>
void maxPoolForward(const kernels::PoolShape &s, const T *x, T *y,
                    Switch *switches, int64_t lanes = 1);
/// dx = 0, then dx[switch] += dy; checks the switches first (KernelError).
template <typename T>
void maxPoolBackward(const kernels::PoolShape &s, const T *dy,
                     const Switch *switches, T *dx, int64_t lanes = 1);
/// `s` is the forward's shape for both.
template <typename T>
void avgPoolForward(const kernels::PoolShape &s, const T *x, T *y,
                    int64_t lanes = 1);
template <typename T>
void avgPoolBackward(const kernels::PoolShape &s, const T *dy, T *dx,
                     int64_t lanes = 1);
/// Checks the switches first (KernelError).
template <typename T>
void unpoolForward(const kernels::UnpoolShape &s, const T *x,
                   const Switch *switches, T *y, int64_t lanes = 1);
template <typename T>
void unpoolBackward(const kernels::UnpoolShape &s, const T *dy,
                    const Switch *switches, T *dx, int64_t lanes = 1);

template <typename T>
float euclideanLossForward(int64_t batch, int64_t count, const T *a,
                           const T *b);
/// `da` and `db` may be null.
template <typename T>
void euclideanLossBackward(int64_t batch, int64_t count, const T *a, const T *b,
                           float dloss, NoDeduce<T> *da, NoDeduce<T> *db);
/// Checks the labels first (KernelError).
template <typename T>
float softmaxCrossEntropyForward(int64_t n, int64_t k, const T *logits,
                                 const int32_t *labels);
template <typename T>
void softmaxCrossEntropyBackward(int64_t n, int64_t k, const T *logits,
                                 const int32_t *labels, float dloss,
                                 T *dlogits);

/// The weighted total of `count` loss terms.
float objective(const ObjectiveTerm *terms, int64_t count);

/// Inverted dropout with kernels::dropoutMask(seed, step, ...)'s mask at
/// the elements' NCHW indices (+ first) for a map of planes of `plane`
/// elements stored with `lanes`; the backward is the same kernel applied to
/// dy.
template <typename T>
void dropout(int64_t count, double ratio, uint64_t seed, uint64_t step,
             uint64_t first, const T *x, T *y, int64_t plane = 1,
             int64_t lanes = 1);

template <typename T> void relu(int64_t count, const T *x, T *y);
template <typename T>
void reluGrad(int64_t count, const T *y, const T *dy, T *dx);
template <typename T> void add(int64_t count, const T *a, const T *b, T *y);
template <typename T> void scale(int64_t count, const T *x, float factor, T *y);

/// y = x + bias[c] (then the relu, with `relu`) over a map of dims `d`
/// stored with `lanes`; y may be x.
template <typename T>
void biasAdd(const kernels::Dims4 &d, int64_t lanes, const T *x,
             const float *bias, T *y, bool relu = false);
/// db[c] = sum of dy over n, h, w (dy of dims `d` stored with `lanes`), in
/// the device's three stages (BiasGradShape), with its own scratch.
template <typename T>
void biasGrad(const kernels::Dims4 &d, int64_t lanes, const T *dy, float *db);
/// relu_grad (dx = y > 0 ? dy : 0) and the bias gradient of dx in one pass
/// and biasGradTail (the device's fused pair): the bits of reluGrad then
/// biasGrad. An NHWC map (lanes = d.c) whose C is whole packs, else
/// KernelError (rowsOfPacks).
template <typename T>
void reluGradBias(const kernels::Dims4 &d, int64_t lanes, const T *y,
                  const T *dy, T *dx, float *db);
/// maxPoolBackward of (dyPooled, switches), then reluGrad with the pool's
/// input y, then (db not null) biasGrad, in one pass over the NHWC map and
/// biasGradTail: the bits of the three. A pool whose windows tile its
/// input (tiledPool) and an NHWC map of whole packs, else KernelError.
template <typename T>
void poolReluGradBias(const kernels::PoolShape &s, const T *dyPooled,
                      const Switch *switches, const T *y, T *dx, float *db);

/// Elementwise f32 -> bf16 (rounded) and bf16 -> f32 (exact).
void convert(int64_t count, const float *src, Bf16 *dst);
void convert(int64_t count, const Bf16 *src, float *dst);
/// Host-order f32 NCHW -> T storage with `lanes`, and back.
template <typename T>
void toStorage(const kernels::Dims4 &d, int64_t lanes, const float *src,
               T *dst);
template <typename T>
void fromStorage(const kernels::Dims4 &d, int64_t lanes, const T *src,
                 float *dst);

/// A map of dims `d` and `elementBytes`-byte elements (1, 2 or 4, else
/// KernelError) copied from layout `fromLanes` to `toLanes`; src and dst
/// must not overlap.
void relayout(const kernels::Dims4 &d, int64_t fromLanes, int64_t toLanes,
              int64_t elementBytes, const void *src, void *dst);

/// `rows` rows of `from` `elementBytes`-byte elements (2 or 4) into rows of
/// `to` (ResizeRows: zero padding, or the first `to`); no overlap.
void resizeRows(int64_t rows, int64_t from, int64_t to, int64_t elementBytes,
                const void *src, void *dst);
/// An f32 weight of dims `w` into the padded KRSC filter [kp, kh, kw, cp],
/// and a padded filter's gradient back into the f32 weight's order.
template <typename T>
void padFilter(const kernels::Dims4 &w, int64_t kp, int64_t cp,
               const float *src, T *dst);
template <typename T>
void unpadFilterGrad(const kernels::Dims4 &w, int64_t cp, const T *src,
                     float *dst);

/// Cross-channel LRN (ref::lrnForward) over a map of dims `d` stored with
/// `lanes`; checks the window first (KernelError). y must not alias x.
template <typename T>
void lrnForward(const kernels::Dims4 &d, int64_t lanes,
                const kernels::LrnParams &p, const T *x, T *y);
/// Its gradient (ref::lrnBackward, the same operand order: the forward's
/// input x and output y, then dy; the plan's lrn_grad lists them dy, x, y).
/// dx must not alias x, y or dy.
template <typename T>
void lrnBackward(const kernels::Dims4 &d, int64_t lanes,
                 const kernels::LrnParams &p, const T *x, const T *y,
                 const T *dy, T *dx);

/// Training-mode batch norm (ref::batchNormForwardTraining's operand order,
/// less its optional saveMean/saveInvStd, with `lanes` after the dims):
/// batch statistics of x (dims `d`, stored with `lanes`), y, and the running
/// statistics updated in place. scale, shift, runMean, runVar are f32 [C].
/// Its own scratch; checks the batch and the lanes first (KernelError).
/// y may alias x.
template <typename T>
void batchNormForwardTraining(const kernels::Dims4 &d, int64_t lanes,
                              double eps, double momentum, const T *x,
                              const float *scale, const float *shift,
                              float *runMean, float *runVar, T *y);
/// Inference (ref::batchNormForwardInference's operand order): y from the
/// running statistics. y may alias x.
template <typename T>
void batchNormForwardInference(const kernels::Dims4 &d, int64_t lanes,
                               double eps, const T *x, const float *scale,
                               const float *shift, const float *runMean,
                               const float *runVar, T *y);
/// Training-mode gradient: ref::batchNormBackward's operand order with eps
/// in place of saveMean/saveInvStd, which it recomputes from x as the
/// reference backend's batch_norm_grad does (mean and 1/sqrt(var + eps)
/// rounded to f32). dscale, dshift are f32 [C]; dx, dscale and dshift may
/// each be null. Its own scratch; dx may alias x or dy.
template <typename T>
void batchNormBackward(const kernels::Dims4 &d, int64_t lanes, double eps,
                       const T *x, const float *scale, const T *dy,
                       NoDeduce<T> *dx, float *dscale, float *dshift);

/// Updates every tensor in one walk (chunked as on the device).
void sgdMomentum(const SgdTensor *tensors, int64_t n, const SgdHyper &hyper);

} // namespace host

} // namespace netc::cuda

#endif // NETC_RUNTIME_CUDA_KERNELS_H
