//===- Backend.cpp - backends by name -------------------------------------===//

#include "runtime/exec/Backend.h"
#include "runtime/exec/ReferenceBackend.h"
#ifdef NETC_HAVE_ONEDNN
#include "runtime/exec/CpuBackend.h"
#endif
#ifdef NETC_HAVE_CUDA
#include "runtime/cuda/CudaBackend.h"
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
#ifdef NETC_HAVE_CUDA
  // Throws "no CUDA device ..." where there is none.
  if (name == "cuda")
    return std::make_unique<cuda::CudaBackend>();
  const char *gpu = "cuda, ";
#else
  const char *gpu = "";
#endif
#ifdef NETC_HAVE_ONEDNN
  const char *host = "cpu, reference";
#else
  const char *host = "reference (this build has no oneDNN)";
#endif
  throw std::invalid_argument(
      fmt::format("unknown backend '{}' (available: {}{})", name, gpu, host));
}

} // namespace netc::exec
