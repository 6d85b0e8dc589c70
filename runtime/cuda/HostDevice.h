//===- HostDevice.h - code shared by the host and the GPU -------*- C++ -*-===//
//
// The smallest pieces of per-element code that every backend must compute
// identically: the dropout mask's counter-based RNG and bf16 rounding. Plain
// C++ under g++ (the reference and cpu backends include it); under nvcc the
// same functions are also compiled for the device (NETC_HD), so a GPU run
// drops the same units and rounds to the same bf16 values as a CPU run.
//
// No CUDA header is needed: the bit casts use memcpy on the host and the
// CUDA intrinsics on the device.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_CUDA_HOSTDEVICE_H
#define NETC_RUNTIME_CUDA_HOSTDEVICE_H

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define NETC_HD __host__ __device__
#else
#define NETC_HD
#endif

/// Unrolls the loop that follows in device code (the host compiler's own
/// unrolling decides there): a loop over a small fixed-size array stays in
/// registers only when unrolled.
#if defined(__CUDA_ARCH__)
#define NETC_UNROLL _Pragma("unroll")
#else
#define NETC_UNROLL
#endif

namespace netc::cuda {

/// SplitMix64 finaliser (Steele et al.); the building block of the dropout
/// mask RNG.
NETC_HD inline uint64_t splitmix64(uint64_t x) {
  uint64_t z = x + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// The per-step key of a dropout op: splitmix64(seed ^ splitmix64(step)).
/// Computed once per launch rather than per element.
NETC_HD inline uint64_t dropoutKey(uint64_t seed, uint64_t step) {
  return splitmix64(seed ^ splitmix64(step));
}

/// The uniform in [0, 1) drawn for element `index` under `key`:
/// (splitmix64(key ^ index) >> 11) * 2^-53, exact in double.
NETC_HD inline double dropoutUniformKeyed(uint64_t key, uint64_t index) {
  return static_cast<double>(splitmix64(key ^ index) >> 11) * 0x1.0p-53;
}

/// Whether element `index` is kept (uniform >= ratio; keep probability
/// 1 - ratio). kernels::dropoutMask is this, element by element.
NETC_HD inline bool dropoutKeep(uint64_t key, uint64_t index, double ratio) {
  return dropoutUniformKeyed(key, index) >= ratio;
}

NETC_HD inline uint32_t floatBits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

NETC_HD inline float bitsFloat(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

/// A bfloat16 value (the upper half of an IEEE float), with its own rounding
/// so that host and device agree bit for bit; layout-compatible with CUDA's
/// __nv_bfloat16, which the host never needs.
struct Bf16 {
  uint16_t bits; // trivial, like __nv_bfloat16, for device arrays

  /// Round to nearest, ties to even; NaN stays a (quiet) NaN of the same
  /// sign, infinities stay infinite, overflow rounds to infinity.
  NETC_HD static Bf16 fromFloat(float f) {
    uint32_t u = floatBits(f);
    Bf16 r;
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) {
      r.bits = static_cast<uint16_t>((u >> 16) | 0x0040u);
      return r;
    }
    u += 0x7FFFu + ((u >> 16) & 1u);
    r.bits = static_cast<uint16_t>(u >> 16);
    return r;
  }
  /// Exact.
  NETC_HD float toFloat() const { return bitsFloat(uint32_t(bits) << 16); }
};

} // namespace netc::cuda

#endif // NETC_RUNTIME_CUDA_HOSTDEVICE_H
