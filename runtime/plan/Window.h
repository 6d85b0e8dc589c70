//===- Window.h - how many windows fit: one rule for netc and netrun -*- C++
//-*-//
//
// The output size of a convolution or pooling window sliding over one
// spatial dimension. netc's shape inference (dialect/NetOps.cpp) and the
// runtime's kernels (runtime/kernels/Reference.cpp) both call it, so a plan
// never holds a size its kernels would compute otherwise. Header-only: the
// compiler includes it without linking the runtime, as it does Ops.def.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_PLAN_WINDOW_H
#define NETC_RUNTIME_PLAN_WINDOW_H

#include <cstdint>

namespace netc::plan {

/// Windows of `kernel` at `stride` over `in` padded by `pad` on each side;
/// `ceilMode` rounds up, keeping a last window only if it starts inside the
/// input or its left padding (PyTorch's ceil_mode; Caffe drops it only
/// when there is padding, so without padding a stride above the kernel
/// would keep a window that pools nothing). The caller has checked that
/// in + 2 * pad >= kernel, stride >= 1, and that nothing here overflows.
constexpr int64_t windowCount(int64_t in, int64_t kernel, int64_t stride,
                              int64_t pad, bool ceilMode) {
  const int64_t extent = in + 2 * pad - kernel;
  int64_t out =
      (ceilMode ? (extent + stride - 1) / stride : extent / stride) + 1;
  if (ceilMode && (out - 1) * stride >= in + pad)
    --out;
  return out;
}

} // namespace netc::plan

#endif // NETC_RUNTIME_PLAN_WINDOW_H
