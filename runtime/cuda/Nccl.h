//===- Nccl.h - gradients averaged over the ranks on the GPU ----*- C++ -*-===//
//
// The cuda backend's `all_reduce_mean`: NCCL's all-reduce (ncclAvg) on the
// backend's stream, over a communicator whose unique id rank 0 makes and the
// run's dist::Communicator (MPI, or a single rank) hands to the others.
// Built where NCCL is found (NETC_HAVE_NCCL).
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_CUDA_NCCL_H
#define NETC_RUNTIME_CUDA_NCCL_H

#include <cstdint>
#include <memory>

struct CUstream_st;
struct ncclComm;

namespace netc::dist {
class Communicator;
} // namespace netc::dist

namespace netc::cuda {

class NcclReducer {
public:
  /// Joins every rank of `ranks` (a collective: all ranks construct one).
  NcclReducer(dist::Communicator &ranks, CUstream_st *stream);
  ~NcclReducer();
  NcclReducer(const NcclReducer &) = delete;
  NcclReducer &operator=(const NcclReducer &) = delete;

  /// x[i] = the mean over the ranks of their x[i] (device memory), enqueued
  /// on the stream.
  void allReduceMean(float *x, int64_t n);
  /// The dist::Communicator it was made for.
  const dist::Communicator &ranks() const { return ranks_; }

private:
  dist::Communicator &ranks_;
  CUstream_st *stream_;
  ncclComm *comm_ = nullptr;
};

} // namespace netc::cuda

#endif // NETC_RUNTIME_CUDA_NCCL_H
