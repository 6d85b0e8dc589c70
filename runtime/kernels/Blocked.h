//===- Blocked.h - channel-blocked layouts ----------------------*- C++ -*-===//
//
// The cpu backend keeps activations whose channel count is a multiple of
// its vector width in oneDNN's channel-blocked layout (nChw8c, nChw16c):
// element (n, c, h, w) of an NCHW tensor lies at
// cuda::planeAt(n * C + c, H * W, h * W + w, lanes). These copy a tensor of
// 4-byte elements (f32 or i32) between the two layouts, for the executor's
// uploads and downloads of such values.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_KERNELS_BLOCKED_H
#define NETC_RUNTIME_KERNELS_BLOCKED_H

#include "runtime/cuda/Kernels.h"

#include <cstdint>

namespace netc::kernels {

/// Plain NCHW `src` -> channel-blocked `dst` (d.c a multiple of lanes).
inline void toBlocked(const Dims4 &d, int64_t lanes, const uint32_t *src,
                      uint32_t *dst) {
  int64_t plane = d.plane();
  for (int64_t nc = 0; nc < d.n * d.c; ++nc)
    for (int64_t p = 0; p < plane; ++p)
      dst[cuda::planeAt(nc, plane, p, lanes)] = src[nc * plane + p];
}

/// Channel-blocked `src` -> plain NCHW `dst`.
inline void fromBlocked(const Dims4 &d, int64_t lanes, const uint32_t *src,
                        uint32_t *dst) {
  int64_t plane = d.plane();
  for (int64_t nc = 0; nc < d.n * d.c; ++nc)
    for (int64_t p = 0; p < plane; ++p)
      dst[nc * plane + p] = src[cuda::planeAt(nc, plane, p, lanes)];
}

} // namespace netc::kernels

#endif // NETC_RUNTIME_KERNELS_BLOCKED_H
