//===- CudaBackend.h - the `cuda` backend -----------------------*- C++ -*-===//
//
// The backend that runs a plan on an NVIDIA GPU: device memory (cudaMalloc'd
// arenas and parameters, page-locked staging), one stream on which every
// upload, copy and kernel is enqueued in order, and per kernel:
//   - cuDNN for the convolution family (conv2d and deconv2d, forward,
//     backward-data and backward-filter; a transposed convolution is the
//     convolution's backward-data and vice versa), the bias gradient and the
//     bias add, LRN, batch norm (training with running statistics, inference,
//     backward) and average pooling;
//   - cuBLAS for the fc family (row-major [N, in] x [out, in]^T);
//   - the own kernels of runtime/cuda/Kernels.h (Launch.h) for switch
//     max-pooling, unpooling, the losses, the objective, dropout, ReLU, add,
//     scale and the SGD update;
//   - a device-to-device copy for reshape/flatten when they are not views.
//
// prepare() builds each kernel's state once: cuDNN descriptors for the
// planned batch, the convolution algorithm (measured by cudnnFind* on the
// kernel's own buffers, as PyTorch's cudnn.benchmark does, within a 256 MiB
// workspace; FMA-only math for fp32; deterministic algorithms unless 10%
// slower; NETC_CUDNN_ALGO=heuristic uses cuDNN's ranked heuristics instead,
// which are also the fallback), the workspace the algorithms need (one
// backend-wide buffer, grown in prepare(), never inside a step), and the own
// kernels' device-side tables and reduction scratch. A run with a smaller
// batch (the last of an epoch) re-describes the tensors and picks, once per
// batch size, an algorithm by the heuristics that fits the workspace.
//
// Values: f32 and i32 in NCHW. bf16 and NHWC are not implemented yet
// (supports() says no, and the executor names the value and the reason).
//
// Data-dependent checks the device cannot make: a label outside [0, k)
// makes that softmax cross-entropy loss NaN (and its row's gradient), which
// the trainer's NaN check reports with the step; switches are those the
// program's own max-pool wrote.
//
// The header needs no CUDA header: the handles are forward-declared.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_CUDA_CUDABACKEND_H
#define NETC_RUNTIME_CUDA_CUDABACKEND_H

#include "runtime/exec/Backend.h"

#include <map>
#include <memory>
#include <string>
#include <utility>

struct CUstream_st;
struct cudnnContext;
struct cublasContext;

namespace netc::cuda {

class NcclReducer; // Nccl.h

/// Number of CUDA devices; 0 when there is none or no usable driver.
int deviceCount();

/// One line about device 0: its name, memory, compute capability and the
/// CUDA runtime, driver and cuDNN versions; empty without a device.
std::string deviceDescription();

class CudaBackend : public exec::Backend {
public:
  /// Uses device 0. Throws std::runtime_error ("no CUDA device ...") when
  /// there is none, so that `--backend cuda` is a clear error.
  CudaBackend();
  ~CudaBackend() override;
  CudaBackend(const CudaBackend &) = delete;
  CudaBackend &operator=(const CudaBackend &) = delete;

  const char *name() const override { return "cuda"; }

  // Memory: device memory, page-locked staging, transfers on the stream.
  bool isHost() const override { return false; }
  std::unique_ptr<exec::Buffer> allocate(uint64_t bytes,
                                         const std::string &what) override;
  std::unique_ptr<exec::Buffer>
  allocateStaging(uint64_t bytes, const std::string &what) override;
  void upload(void *dst, const void *src, uint64_t bytes) override;
  void download(void *dst, const void *src, uint64_t bytes) override;
  void copy(void *dst, const void *src, uint64_t bytes) override;
  void zero(void *dst, uint64_t bytes) override;
  void synchronize() override;

  /// f32 and i32 values in NCHW (bf16 and NHWC: not yet).
  bool supports(const plan::Value &v) const override;
  std::unique_ptr<exec::KernelState>
  prepare(const exec::KernelCall &call) override;
  void run(const exec::KernelCall &call) override;

  /// Lets convolutions and fc use TF32 tensor cores (a `tf32` plan); off by
  /// default, so fp32 plans compute in fp32 (FMA-only cuDNN algorithms,
  /// cuBLAS default math). Affects kernels prepared afterwards.
  void allowTf32(bool on);

  /// Bytes of the shared convolution workspace now.
  uint64_t workspaceBytes() const;

  /// The stream every transfer and kernel is enqueued on.
  CUstream_st *stream() const { return stream_; }
  /// With NCCL (NETC_HAVE_NCCL), all_reduce_mean spans ranks.
  bool reducesAcrossRanks() const override;

private:
  struct State;
  State &state(const exec::KernelCall &call) const;
  /// Grows the shared workspace to at least `bytes` (prepare() only).
  void reserveWorkspace(uint64_t bytes);
  void *workspace() const;
  void runConv(const exec::KernelCall &call, State &s);
  /// The conv view's input, weight and output addresses of a convolution.
  static void convPointers(const exec::KernelCall &call, void *&x, void *&w,
                           void *&y);
  void describeForBatch(const exec::KernelCall &call, State &s);

  int device_ = 0;
  std::string deviceName_;
  CUstream_st *stream_ = nullptr;
  cudnnContext *cudnn_ = nullptr;
  cublasContext *cublas_ = nullptr;
  std::unique_ptr<exec::Buffer> cublasWorkspace_;
  std::unique_ptr<exec::Buffer> workspace_;
  bool tf32_ = false;
  bool search_ = true; ///< cudnnFind* rather than the heuristics
  /// The algorithm chosen per convolution shape and direction.
  std::map<std::string, std::pair<int, uint64_t>> algoCache_;
  /// all_reduce_mean's NCCL communicator, made at the first one.
  std::unique_ptr<NcclReducer> nccl_;
};

} // namespace netc::cuda

#endif // NETC_RUNTIME_CUDA_CUDABACKEND_H
