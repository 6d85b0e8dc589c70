//===- DecoderTwins.h - which macro-layers the decoder mirrors --*- C++ -*-===//
//
// One rule for the frontend and net-mirror: the macro-layers above the
// convolutions have no decoder twin. net-mirror (passes/Mirror.cpp) builds
// the decoder by it; Sema's gamma check (frontend/SemaSettings.cpp) places
// its errors at the gamma by it, before there is any IR. Header-only, as
// each side describes its macro-layers from its own representation.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_DIALECT_DECODERTWINS_H
#define NETC_DIALECT_DECODERTWINS_H

#include "llvm/ADT/ArrayRef.h"

#include <cstddef>

namespace netc {

/// What the rule asks of one macro-layer.
struct MacroContents {
  bool convOrMaxPool = false; ///< holds a convolution or a max-pool
  bool fc = false;            ///< holds an fc layer
};

/// How many of a network's macro-layers, bottom-up, have a decoder twin:
/// those below the macro-layers above the convolutions, which are at the
/// top, hold no convolution or max-pool, and run from the lowest one that
/// holds an fc up (a dropout-only macro-layer between fc ones among them).
inline size_t twinnedMacroCount(llvm::ArrayRef<MacroContents> macros) {
  size_t end = macros.size();
  for (size_t i = macros.size(); i-- > 0;) {
    if (macros[i].convOrMaxPool)
      break;
    if (macros[i].fc)
      end = i;
  }
  return end;
}

} // namespace netc

#endif // NETC_DIALECT_DECODERTWINS_H
