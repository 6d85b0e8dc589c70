//===- Switches.h - Switches as input positions, for tests ---*- C++ -*-===//
//
// A switch records its maximum's position within the pooling window
// (kernels::Switch); hand-computed expectations are easier to read as the
// position in the input plane each one names.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_TEST_UNIT_SWITCHES_H
#define NETC_TEST_UNIT_SWITCHES_H

#include "runtime/kernels/Reference.h"

#include <cstdint>
#include <vector>

namespace netc::testing {

using SwitchVec = std::vector<kernels::Switch>;

/// The input-plane position h * W + w that each switch (NCHW, one per
/// pooled element of a max-pool of shape `s`) names.
inline std::vector<int32_t> positions(const kernels::PoolShape &s,
                                      const SwitchVec &sw) {
  std::vector<int32_t> at;
  for (size_t k = 0; k < sw.size(); ++k) {
    int64_t p = int64_t(k) % s.out.plane(), h, w;
    kernels::switchPosition(s.win, p / s.out.w, p % s.out.w, sw[k], h, w);
    at.push_back(int32_t(h * s.in.w + w));
  }
  return at;
}

} // namespace netc::testing

#endif // NETC_TEST_UNIT_SWITCHES_H
