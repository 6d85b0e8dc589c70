//===- GraphConv.h - convolutions through cuDNN's graph API -----*- C++ -*-===//
//
// One convolution direction (forward, backward-data, backward-filter) as an
// operation graph of cuDNN's backend ("graph") API, with the execution plan
// chosen for it. The legacy convolution calls (cudnnConvolutionForward and
// kin, deprecated in cuDNN 9) offer one engine per algorithm enum; the graph
// API offers every engine and knob setting the heuristics list, and
// operation graphs a single engine runs whole: a forward convolution with
// its bias add and relu in the kernel's epilogue (the accumulator biased and
// clipped in fp32 and rounded once), where the legacy path writes the map
// and the own epilogue reads it back.
//
// The choice is PyTorch's cudnn.benchmark done the graph API's way: the
// engine configurations of heuristics modes A and fallback, filtered by
// their numerical notes (no tensor cores for fp32 plans, no down-converted
// inputs or reduced-precision reductions for any), finalized into plans
// in the heuristics' order until 12 have built within the workspace
// (engines compiled at run time only for an epilogue, at most 2), each run
// and timed on the kernel's own buffers; deterministic plans
// unless 10% slower, and plans within the preferred workspace unless the
// one above it is 10% faster. The chosen configuration is named by
// identity() (engine index and knob choices) so that the algorithm file can
// name it, and a later run takes it again, run once but not timed.
//
// Used for bf16 and tf32 plans, and for every plan with
// NETC_CUDA_CONV_API=graph or graph-fused (CudaBackend); convolutions the
// graph API has no plan for keep the legacy calls.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_CUDA_GRAPHCONV_H
#define NETC_RUNTIME_CUDA_GRAPHCONV_H

#include "runtime/kernels/Reference.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

struct CUstream_st;
struct cudnnContext;

namespace netc::cuda {

/// The convolution-family kernels as the cuDNN call they make, on the
/// kernel's forward convolution ("conv view": input X, weight W, output Y).
/// A transposed convolution is the convolution from its output to its input.
enum class ConvKind { Forward, BackwardData, BackwardFilter };

/// What a graph describes: one direction of a 2-D cross-correlation with
/// symmetric padding, no dilation and one group.
struct GraphConvProblem {
  ConvKind kind = ConvKind::Forward;
  bool bf16 = false;      ///< maps and filter bf16 (else f32)
  bool nhwc = false;      ///< maps NHWC and the filter KRSC (else NCHW, KCRS)
  bool tensorOps = false; ///< tensor-core engines allowed (tf32, bf16)
  kernels::Dims4 x, y;    ///< the conv view's input and output
  kernels::Dims4 w;       ///< the filter as [K, C, kh, kw]
  int64_t padH = 0, padW = 0, strideH = 1, strideW = 1;
  /// Forward only: y = relu?(conv(x, w) + bias?), in fp32 until y.
  bool bias = false, relu = false;
  /// The problem in words, the algorithm file's key.
  std::string key() const;
};

/// The buffers of one run: the conv view's maps and filter (for
/// backward-data x is written, for backward-filter w), the f32 bias.
struct GraphConvOperands {
  void *x = nullptr, *w = nullptr, *y = nullptr;
  const float *bias = nullptr;
};

/// How make() chooses.
struct GraphConvSearch {
  cudnnContext *handle = nullptr; ///< its stream is the one runs go on
  CUstream_st *stream = nullptr;
  /// The most workspace a plan may need, and the bound above which a plan
  /// must be 10% faster to be taken.
  uint64_t workspaceLimit = 0, preferredWorkspace = 0;
  /// The workspace, grown to at least `bytes` (at least the most any
  /// candidate timed needs).
  std::function<void *(uint64_t bytes)> workspace;
  /// Time the candidates (else the heuristics' first that passes).
  bool time = true;
  /// An identity() chosen before: taken without timing if the heuristics
  /// still offer it and it fits the limit.
  std::string cached;
};

/// Milliseconds per call of `run` on `stream`: one call, then `runs` timed
/// ones between two events; negative if a call returns false or CUDA
/// fails (the stream drained and the error cleared).
float timeRuns(CUstream_st *stream, const std::function<bool()> &run, int runs);

class GraphConv {
public:
  /// The problem's plan as `search` chooses it, run (and, searching,
  /// timed) on `operands` (whatever that writes there is overwritten by the
  /// first step); null with `why` where the graph API has none, and
  /// `lasting` where that holds for this GPU and cuDNN whatever the free
  /// memory (no configuration computes as asked, or none builds).
  static std::unique_ptr<GraphConv> make(const GraphConvProblem &problem,
                                         const GraphConvOperands &operands,
                                         const GraphConvSearch &search,
                                         std::string &why, bool &lasting);
  ~GraphConv();
  GraphConv(const GraphConv &) = delete;
  GraphConv &operator=(const GraphConv &) = delete;

  /// Enqueues the plan on the handle's stream; a KernelError if cuDNN
  /// refuses.
  void run(cudnnContext *handle, const GraphConvOperands &operands,
           void *workspace) const;
  /// Milliseconds per run on `operands`, three runs after one (negative if
  /// a run fails).
  float measure(cudnnContext *handle, CUstream_st *stream,
                const GraphConvOperands &operands, void *workspace) const;
  uint64_t workspaceBytes() const { return bytes_; }
  /// Its time per run as the search measured it (negative: not timed).
  float ms() const { return ms_; }
  /// "engine E knobs T=V,...": what the algorithm file keeps.
  const std::string &identity() const { return identity_; }

private:
  GraphConv() = default;
  struct Owned; // the plan and what it was made from (GraphConv.cpp)
  std::unique_ptr<Owned> owned_;
  void *plan_ = nullptr; ///< owned_'s plan (a cudnnBackendDescriptor_t)
  uint64_t bytes_ = 0;
  float ms_ = -1.0f;
  bool bias_ = false;
  std::string identity_;
};

} // namespace netc::cuda

#endif // NETC_RUNTIME_CUDA_GRAPHCONV_H
