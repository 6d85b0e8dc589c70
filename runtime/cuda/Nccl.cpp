//===- Nccl.cpp - NCCL's all-reduce for the cuda backend ------------------===//

#include "runtime/cuda/Nccl.h"
#include "runtime/dist/Communicator.h"
#include "runtime/kernels/Reference.h"

#include <fmt/format.h>
#ifdef NETC_HAVE_NCCL
#include <nccl.h>
#endif

#include <algorithm>
#include <climits>
#include <exception>

namespace netc::cuda {

#ifdef NETC_HAVE_NCCL

namespace {
void ncclCheck(ncclResult_t r, const char *what) {
  if (r != ncclSuccess)
    throw kernels::KernelError(
        fmt::format("NCCL: {}: {}", what, ncclGetErrorString(r)));
}
} // namespace

NcclReducer::NcclReducer(dist::Communicator &ranks, CUstream_st *stream)
    : ranks_(ranks), stream_(stream) {
  ncclUniqueId id{};
  if (ranks.rank() == 0)
    ncclCheck(ncclGetUniqueId(&id), "unique id");
  ranks.broadcast(&id, sizeof id, 0);
  ncclCheck(ncclCommInitRank(&comm_, ranks.size(), id, ranks.rank()),
            "communicator");
}

NcclReducer::~NcclReducer() {
  if (!comm_)
    return;
  // ncclCommDestroy waits for the other ranks; while an exception unwinds
  // (this rank alone failed), they may never come: abort instead.
  if (std::uncaught_exceptions() > 0)
    ncclCommAbort(comm_);
  else
    ncclCommDestroy(comm_);
}

void NcclReducer::allReduceMean(float *x, int64_t n) {
  // NCCL counts are size_t; keep each call's count in int range all the
  // same, as the MPI path does.
  while (n > 0) {
    size_t count = size_t(std::min<int64_t>(n, INT_MAX));
    ncclCheck(ncclAllReduce(x, x, count, ncclFloat, ncclAvg, comm_, stream_),
              "all-reduce");
    x += count;
    n -= int64_t(count);
  }
}

#else // a cuda backend built without NCCL

NcclReducer::NcclReducer(dist::Communicator &ranks, CUstream_st *stream)
    : ranks_(ranks), stream_(stream) {
  throw kernels::KernelError("all_reduce_mean on the cuda backend needs "
                             "NCCL, which this build lacks");
}
NcclReducer::~NcclReducer() = default;
void NcclReducer::allReduceMean(float *, int64_t) {}

#endif

} // namespace netc::cuda
