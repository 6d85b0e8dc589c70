//===- Backend.cpp - backends by name -------------------------------------===//

#include "runtime/exec/Backend.h"
#include "runtime/exec/ReferenceBackend.h"
#ifdef NETC_HAVE_ONEDNN
#include "runtime/exec/CpuBackend.h"
#endif

#include <fmt/format.h>

#include <stdexcept>

namespace netc::exec {

std::unique_ptr<Backend> makeBackend(const std::string &name) {
  if (name == "reference")
    return std::make_unique<ReferenceBackend>();
#ifdef NETC_HAVE_ONEDNN
  if (name == "cpu")
    return std::make_unique<CpuBackend>();
#endif
#ifdef NETC_HAVE_ONEDNN
  const char *available = "cpu, reference";
#else
  const char *available = "reference (this build has no oneDNN)";
#endif
  throw std::invalid_argument(
      fmt::format("unknown backend '{}' (available: {})", name, available));
}

} // namespace netc::exec
