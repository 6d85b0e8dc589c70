//===- Sema.h - Limits of the .net expansion --------------------*- C++ -*-===//
//
// Sema (Sema.cpp, SemaNetwork.cpp, SemaSettings.cpp; the class is in
// SemaInternal.h) implements netc::buildModel: it expands blocks and `repeat`,
// names every layer and checks every value. These limits keep hostile inputs
// (a fuzzer, a typo such as `repeat 1000000000`) from exhausting memory or
// time; each is reported as an ordinary error at the offending statement.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_FRONTEND_SEMA_H
#define NETC_FRONTEND_SEMA_H

#include <cstdint>

namespace netc {
namespace sema {

/// Most layers a network may expand to.
constexpr int64_t kMaxLayers = 100000;
/// Largest `repeat` count.
constexpr int64_t kMaxRepeat = 10000;
/// Deepest chain of block calls.
constexpr unsigned kMaxCallDepth = 64;
/// Deepest nesting of block calls and `repeat`s together while expanding.
constexpr unsigned kMaxNesting = 256;
/// Most statements expanded in total (including empty repeat bodies).
constexpr int64_t kMaxExpansionSteps = 1000000;
/// Largest channel count, kernel, stride, pad or input extent.
constexpr int64_t kMaxExtent = int64_t(1) << 24;
/// Largest side of an image the data loaders resize or crop to (the
/// `scale`, `eval-scale`, `crop` and crop `pad` settings; the runtime's
/// limit too).
constexpr int64_t kMaxImageSide = 65536;
/// Most elements of one input image (C*H*W): 8 GiB of floats.
constexpr int64_t kMaxInputElements = int64_t(1) << 31;

// Training settings. Far above anything trainable, low enough that every
// product the compiler and runtime form from them (batch x image bytes,
// epochs x steps per epoch) fits in 64 bits.

/// Largest `batch` (also `netc --batch`).
constexpr int64_t kMaxBatch = int64_t(1) << 20;
/// Gradient buckets of data-parallel training: at most 1 TiB.
constexpr double kMaxBucketMb = 1048576.0;
/// Largest `epochs` and `lr step ... every N`.
constexpr int64_t kMaxEpochs = 1000000;
/// Largest `steps`.
constexpr int64_t kMaxSteps = 1000000000;
/// Largest `subset` and `test-subset`.
constexpr int64_t kMaxImages = 1000000000;

} // namespace sema
} // namespace netc

#endif // NETC_FRONTEND_SEMA_H
