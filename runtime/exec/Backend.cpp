//===- Backend.cpp - backends by name -------------------------------------===//

#include "runtime/exec/Backend.h"
#include "runtime/exec/ReferenceBackend.h"
#ifdef NETC_HAVE_ONEDNN
#include "runtime/exec/CpuBackend.h"
#endif
#ifdef NETC_HAVE_CUDA
#include "runtime/cuda/CudaBackend.h"
#endif

#include "runtime/dist/Communicator.h"

#include <fmt/format.h>

#include <cstring>
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

template <typename T> void hostAllReduceMean(const KernelCallT<T> &call) {
  for (size_t i = 0; i < call.in.size(); ++i) {
    const T *x = call.in[i].template as<T>();
    T *y = call.out[i].template as<T>();
    if (x != y)
      std::memmove(y, x, size_t(call.in[i].count) * sizeof(T));
  }
  dist::Communicator *comm = call.ctx.comm;
  if (!comm || comm->size() == 1)
    return;
  // Runs of outputs in increasing, gap-tolerant order become one span.
  size_t first = 0;
  while (first < call.out.size()) {
    T *begin = call.out[first].template as<T>();
    T *end = begin + call.out[first].count;
    size_t last = first;
    while (last + 1 < call.out.size()) {
      T *next = call.out[last + 1].template as<T>();
      // net-plan-memory aligns to 64 bytes: its gaps are under 16 f32
      // elements (or, in the double reference backend's arena, doubles).
      if (next < end || next - end >= 16)
        break;
      std::fill(end, next, T(0));
      end = next + call.out[++last].count;
    }
    comm->allReduceSum(begin, end - begin);
    T scale = T(1) / T(comm->size());
    for (T *p = begin; p < end; ++p)
      *p *= scale;
    first = last + 1;
  }
}

template void hostAllReduceMean<float>(const KernelCallT<float> &);
template void hostAllReduceMean<double>(const KernelCallT<double> &);

} // namespace netc::exec
