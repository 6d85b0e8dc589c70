//===- Storage.h - how a value's elements lie in memory ---------*- C++ -*-===//
//
// The host reads and writes every value in one format: plain NCHW order,
// 4-byte elements for f32 real numbers and i32 labels, bytes for u8
// switches (bytesToStorage, bytesFromStorage). A backend may store a value
// otherwise:
// - channel-interleaved: element (n, c, h, w) at
//   cuda::planeAt(n * C + c, H * W, h * W + w, lanes). lanes = C is NHWC
//   (the bf16 plans' maps); lanes = 8 or 16 with C a multiple of it is the
//   cpu backend's channel-blocked nChw8c/nChw16c;
// - real numbers as bf16 (a bf16 plan's activations), rounded to nearest
//   even on the way in and widened exactly on the way out.
// These convert a whole value between the two, for the executor's uploads
// and downloads (and the reference backend's bf16 emulation).
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_KERNELS_STORAGE_H
#define NETC_RUNTIME_KERNELS_STORAGE_H

#include "runtime/cuda/Kernels.h"

#include <cstdint>
#include <cstring>

namespace netc::kernels {

/// A value's storage format against the host's.
struct Storage {
  int64_t lanes = 1; ///< 1: plain NCHW
  bool bf16 = false; ///< real numbers stored as bf16 (else 4-byte words)
  bool plain() const { return lanes == 1 && !bf16; }
  int64_t elementBytes() const { return bf16 ? 2 : 4; }
};

/// Host-format `src` (d.count() 4-byte words) -> `dst` in format `s`
/// (d.c a multiple of s.lanes).
inline void toStorage(const Dims4 &d, Storage s, const uint32_t *src,
                      void *dst) {
  int64_t plane = d.plane();
  auto *words = static_cast<uint32_t *>(dst);
  auto *halves = static_cast<cuda::Bf16 *>(dst);
  for (int64_t nc = 0; nc < d.n * d.c; ++nc)
    for (int64_t p = 0; p < plane; ++p) {
      int64_t at = cuda::planeAt(nc, plane, p, s.lanes);
      uint32_t w = src[nc * plane + p];
      if (s.bf16)
        halves[at] = cuda::Bf16::fromFloat(cuda::bitsFloat(w));
      else
        words[at] = w;
    }
}

/// `src` in format `s` -> host-format `dst`.
inline void fromStorage(const Dims4 &d, Storage s, const void *src,
                        uint32_t *dst) {
  int64_t plane = d.plane();
  const auto *words = static_cast<const uint32_t *>(src);
  const auto *halves = static_cast<const cuda::Bf16 *>(src);
  for (int64_t nc = 0; nc < d.n * d.c; ++nc)
    for (int64_t p = 0; p < plane; ++p) {
      int64_t at = cuda::planeAt(nc, plane, p, s.lanes);
      dst[nc * plane + p] =
          s.bf16 ? cuda::floatBits(halves[at].toFloat()) : words[at];
    }
}

/// One-byte elements (switches) between the host's NCHW order and a layout
/// of `lanes` (planeAt), either way.
inline void bytesToStorage(const Dims4 &d, int64_t lanes, const uint8_t *src,
                           uint8_t *dst) {
  int64_t plane = d.plane();
  for (int64_t nc = 0; nc < d.n * d.c; ++nc)
    for (int64_t p = 0; p < plane; ++p)
      dst[cuda::planeAt(nc, plane, p, lanes)] = src[nc * plane + p];
}

inline void bytesFromStorage(const Dims4 &d, int64_t lanes, const uint8_t *src,
                             uint8_t *dst) {
  int64_t plane = d.plane();
  for (int64_t nc = 0; nc < d.n * d.c; ++nc)
    for (int64_t p = 0; p < plane; ++p)
      dst[nc * plane + p] = src[cuda::planeAt(nc, plane, p, lanes)];
}

} // namespace netc::kernels

#endif // NETC_RUNTIME_KERNELS_STORAGE_H
