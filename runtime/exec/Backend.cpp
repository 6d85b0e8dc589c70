//===- Backend.cpp - backends by name -------------------------------------===//

#include "runtime/exec/Backend.h"
#include "runtime/exec/GuardedBackend.h"
#include "runtime/exec/ReferenceBackend.h"
#ifdef NETC_HAVE_ONEDNN
#include "runtime/exec/CpuBackend.h"
#endif
#ifdef NETC_HAVE_CUDA
#include "runtime/cuda/CudaBackend.h"
#endif

#include "runtime/dist/Communicator.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace netc::exec {

namespace {

/// Whether two tensors share a byte.
bool overlaps(const TensorRef &a, const TensorRef &b) {
  auto bytes = [](const TensorRef &t) {
    return t.count * plan::dtypeSize(t.dtype);
  };
  auto *a0 = static_cast<const uint8_t *>(a.data);
  auto *b0 = static_cast<const uint8_t *>(b.data);
  return a0 < b0 + bytes(b) && b0 < a0 + bytes(a);
}

/// The kernels i of `calls` that `first` accepts whose output only kernel
/// i + 1, of op `second`, reads (as its first operand), that the host does
/// not read, and where kernel i + 1 writes no byte kernel i reads: the
/// pairs a backend may run as one kernel that never writes i's output.
template <typename First>
std::vector<size_t> soleReaderPairs(const plan::Program &program,
                                    const std::vector<KernelCall> &calls,
                                    const std::set<int64_t> &hostValues,
                                    First &&first, plan::Op second) {
  const std::vector<plan::Kernel> &ks = program.kernels;
  std::map<int64_t, int> readers;
  for (const plan::Kernel &k : ks)
    for (int64_t id : k.in)
      ++readers[id];
  std::vector<size_t> pairs;
  for (size_t i = 0; i + 1 < ks.size(); ++i) {
    const plan::Kernel &k = ks[i], &next = ks[i + 1];
    if (!first(k) || next.op != second || next.in[0] != k.out[0] ||
        readers[k.out[0]] != 1 || hostValues.count(k.out[0]))
      continue;
    const TensorRef &out = calls[i + 1].out[0];
    if (std::none_of(calls[i].in.begin(), calls[i].in.end(),
                     [&](const TensorRef &in) { return overlaps(out, in); }))
      pairs.push_back(i);
  }
  return pairs;
}

} // namespace

std::vector<size_t> convReluPairs(const plan::Program &program,
                                  const std::vector<KernelCall> &calls,
                                  const std::set<int64_t> &hostValues) {
  return soleReaderPairs(
      program, calls, hostValues,
      [](const plan::Kernel &k) {
        return k.op == plan::Op::Conv2D || k.op == plan::Op::Deconv2D;
      },
      plan::Op::Relu);
}

std::vector<size_t> unpoolReluGradPairs(const plan::Program &program,
                                        const std::vector<KernelCall> &calls,
                                        const std::set<int64_t> &hostValues) {
  return soleReaderPairs(
      program, calls, hostValues,
      [](const plan::Kernel &k) {
        return k.op == plan::Op::Unpool && k.in.size() >= 2; // switches
      },
      plan::Op::ReluGrad);
}

std::vector<std::pair<size_t, size_t>>
reluGradBiasPairs(const plan::Program &program,
                  const std::vector<KernelCall> &calls) {
  const std::vector<plan::Kernel> &ks = program.kernels;
  std::vector<std::pair<size_t, size_t>> pairs;
  for (size_t i = 0; i < ks.size(); ++i) {
    if (ks[i].op != plan::Op::ReluGrad)
      continue;
    const TensorRef &dx = calls[i].out[0];
    for (size_t j = i + 1; j < ks.size(); ++j) {
      if (ks[j].op == plan::Op::BiasGrad && ks[j].in[0] == ks[i].out[0]) {
        pairs.emplace_back(i, j);
        break;
      }
      if (std::any_of(calls[j].out.begin(), calls[j].out.end(),
                      [&](const TensorRef &o) { return overlaps(o, dx); }))
        break;
    }
  }
  return pairs;
}

std::unique_ptr<Backend> makeBackend(const std::string &name) {
  if (name == "reference")
    return std::make_unique<ReferenceBackend>();
  if (name == "guarded")
    return std::make_unique<GuardedBackend>();
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
  const char *host = "cpu, reference, guarded";
#else
  const char *host = "reference, guarded (this build has no oneDNN)";
#endif
  throw std::invalid_argument(
      fmt::format("unknown backend '{}' (available: {}{})", name, gpu, host));
}

std::vector<std::pair<size_t, size_t>>
contiguousRuns(const std::vector<TensorRef> &outs, size_t elementBytes) {
  std::vector<std::pair<size_t, size_t>> runs;
  for (size_t i = 0; i < outs.size(); ++i) {
    if (!runs.empty()) {
      const TensorRef &prev = outs[runs.back().second];
      const char *end = static_cast<const char *>(prev.data) +
                        size_t(prev.count) * elementBytes;
      const char *next = static_cast<const char *>(outs[i].data);
      if (next >= end && size_t(next - end) < 16 * elementBytes) {
        runs.back().second = i;
        continue;
      }
    }
    runs.push_back({i, i});
  }
  return runs;
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
  for (auto [first, last] : contiguousRuns(call.out, sizeof(T))) {
    T *begin = call.out[first].template as<T>();
    for (size_t i = first; i < last; ++i) // zero the gaps: no NaN summed
      std::fill(call.out[i].template as<T>() + call.out[i].count,
                call.out[i + 1].template as<T>(), T(0));
    T *end = call.out[last].template as<T>() + call.out[last].count;
    comm->allReduceSum(begin, end - begin);
    T scale = T(1) / T(comm->size());
    for (T *p = begin; p < end; ++p)
      *p *= scale;
  }
}

template void hostAllReduceMean<float>(const KernelCallT<float> &);
template void hostAllReduceMean<double>(const KernelCallT<double> &);

} // namespace netc::exec
