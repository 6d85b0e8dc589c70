//===- CudaBackend.h - the `cuda` backend -----------------------*- C++ -*-===//
//
// The backend that runs a plan on an NVIDIA GPU: device memory (cudaMalloc'd
// arenas and parameters, page-locked staging), one stream on which every
// upload, copy and kernel is enqueued in order, and per kernel:
//   - cuDNN for the convolution family (conv2d and deconv2d, forward,
//     backward-data and backward-filter; a transposed convolution is the
//     convolution's backward-data and vice versa), and on fp32 NCHW maps the
//     bias gradient and the bias add, LRN and batch norm (training with
//     running statistics, inference, backward);
//   - cuBLAS for the fc family (row-major [N, in] x [out, in]^T);
//   - the own kernels of runtime/cuda/Kernels.h (Launch.h) for switch
//     max-pooling, average pooling, unpooling, the losses, the objective,
//     dropout, ReLU, add, scale, the SGD update, bf16 maps' bias, LRN and
//     batch norm, the fused conv epilogue, and conversions between layouts
//     and element types;
//   - a device-to-device copy for reshape/flatten when they are not views.
//
// Memory is never allocated inside a step. The programs are recorded as CUDA
// graphs and replayed (beginProgram). The convolution algorithms are kept
// in the trainer directory (usePlan).
//
// prepare() builds each kernel's state once: cuDNN descriptors for the
// planned batch, the convolution algorithm (measured by cudnnFind* on the
// kernel's own buffers, as PyTorch's cudnn.benchmark does, within a 256 MiB
// workspace for bf16 plans and 1 GiB for f32 ones, above 256 MiB only if
// 10% faster; FMA-only math for fp32; deterministic algorithms unless 10%
// slower; NETC_CUDNN_ALGO=heuristic uses cuDNN's ranked heuristics instead,
// which are also the fallback), the workspace the algorithms need (one
// backend-wide buffer, grown in prepare(), never inside a step), and the own
// kernels' device-side tables and reduction scratch. A run with a smaller
// batch (the last of an epoch) re-describes the tensors and picks, once per
// batch size, an algorithm by the heuristics that fits the workspace.
// The convolutions (groups 1) of bf16 and tf32 plans are prepared through
// cuDNN's graph API instead (GraphConv.h: its engines timed), the legacy
// calls serving the shapes it has no plan for and the smaller batches;
// NETC_CUDA_CONV_API chooses otherwise (legacy, graph for every plan, or
// graph-fused, which also puts a forward conv2d's bias and fused relu
// inside its plan).
//
// Precision (the plan's, told by usePlan()):
//   - fp32: FMA-only cuDNN algorithms and cuBLAS's default math;
//   - tf32: TF32 tensor cores for convolutions and fc, maps NHWC
//     (net-precision): convolutions read an f32 KRSC copy of each weight,
//     which the fused SGD update writes as it writes bf16 copies, and their
//     weight gradient comes out in KRSC and is put into the weight's order
//     (fp32 plans compiled with --layout=nhwc likewise, on FMA algorithms);
//   - bf16: activations and their gradients are bf16, maps NHWC
//     (net-precision). Convolutions run on tensor cores with NHWC data and
//     KRSC filters and fp32 accumulation; cuBLAS's GemmEx multiplies bf16
//     with fp32 accumulation. Weights stay fp32 masters in the parameter
//     store; the kernels read a bf16 copy of each, in the layout they need
//     (WeightCopy), which the fused SGD update writes with the weights (and
//     upload() refreshes after the host sets a parameter). A convolution's
//     weight gradient comes out of cuDNN in bf16 and is widened to the fp32
//     gradient; fc's is computed in fp32. Biases, batch-norm parameters and
//     statistics, losses and every reduction stay fp32. LRN and batch norm
//     on bf16 maps run the own kernels (cuDNN's LRN is NCHW only; its
//     batch norm's bf16 support is unproven), which compute as the
//     reference does, with the same deterministic reductions as the bias
//     gradient.
// A convolution followed by a relu that alone reads its output computes
// the relu in its epilogue (the bias and the relu in one pass of the own
// bias kernel), and a relu_grad after a max-pool's backward computes that
// gather itself (the gather's map is never written). A relu_grad on an
// NHWC map of f32 values (a tf32 plan's) also sums the first stage of the
// bias gradient of its output as it writes it (the bias_grad then runs its
// last two stages alone, and the map is read once less); on bf16 maps only
// with NETC_CUDA_FUSION=all or a list naming relu-bias (by default it lost
// there on the H200). NETC_CUDA_FUSION=off keeps them all apart; a comma
// list of conv-relu, relu-bias and pool-relu makes only those.
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
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

struct CUstream_st;
struct CUgraphExec_st;
struct CUevent_st;
struct cudnnContext;
struct cublasContext;

namespace netc::cuda {

class NcclReducer; // Nccl.h
class GraphConv;   // GraphConv.h
struct GraphConvOperands;

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
  /// On a second stream (copyStream_), joined by awaitAside() through an
  /// event.
  void uploadAside(void *dst, const void *src, uint64_t bytes) override;
  void awaitAside() override;
  void download(void *dst, const void *src, uint64_t bytes) override;
  void copy(void *dst, const void *src, uint64_t bytes) override;
  void zero(void *dst, uint64_t bytes) override;
  void synchronize() override;
  /// Uploads the host's words and converts them on the device (an image
  /// batch of a bf16 plan: f32 NCHW to bf16 NHWC), through a device buffer
  /// that grows to the largest such upload.
  void uploadStored(void *dst, const kernels::Storage &s,
                    const kernels::Dims4 &d, const void *src) override;
  /// The same conversion from device memory, a kernel on the stream.
  void storeFrom(void *dst, const kernels::Storage &s, const kernels::Dims4 &d,
                 const void *src) override;

  /// f32, bf16 and i32 values, NCHW and NHWC.
  bool supports(const plan::Value &v) const override;
  /// fp32 and bf16 plans compute convolutions and fc without TF32; a tf32
  /// plan lets them use TF32 tensor cores. The convolution algorithms found
  /// for the plan are kept in its trainer directory (kAlgoFile), so that
  /// a later run on the same GPU and cuDNN skips the search.
  void usePlan(const plan::Plan &plan) override;
  /// Prepares each kernel, saves any newly found algorithms, and fuses
  /// each conv+relu pair (exec::convReluPairs) and each relu_grad+bias_grad
  /// pair (exec::reluGradBiasPairs) and each max-pool backward + relu_grad
  /// pair (exec::unpoolReluGradPairs) that NETC_CUDA_FUSION allows.
  exec::PreparedProgram
  prepareProgram(const plan::Program &program,
                 const std::vector<exec::KernelCall> &calls,
                 const std::set<int64_t> &hostValues) override;
  /// The file in a trainer directory that keeps the algorithms.
  static constexpr const char *kAlgoFile = "cudnn-algorithms.json";

  /// CUDA graphs: a program's first run at its planned batch is eager (the
  /// state made lazily, such as NCCL's communicator, is made outside any
  /// capture), its second is captured and launched as a graph, and later
  /// runs replay it. The hyper-parameters and the step number live in
  /// device memory (set here, before each run) so that one graph serves
  /// every step. A program whose capture fails runs eagerly from then on.
  /// NETC_CUDA_GRAPHS=off runs everything eagerly.
  ProgramRun beginProgram(const void *key, int64_t n,
                          const exec::StepContext &ctx,
                          bool capturable) override;
  bool endCapture(const void *key, const std::string &error) override;
  void forgetProgram(const void *key) override;
  /// How many programs ran as replayed graphs, and the first capture that
  /// failed (its program then ran kernel by kernel).
  std::string runReport() const override;
  uint64_t graphReplays() const { return replays_; }
  /// Runs with graphs on that could not be one (a smaller batch, profiling).
  uint64_t uncapturableRuns() const { return uncapturable_; }
  /// Convolution kernels prepared to run on channel-padded copies.
  uint64_t paddedConvolutions() const { return paddedConvs_; }
  /// Convolutions prepared to take their workspace from the arena bytes
  /// free around them (inFreeArena) rather than the shared workspace.
  uint64_t arenaWorkspaces() const { return arenaWorkspaces_; }
  /// Convolution kernels prepared to run through cuDNN's graph API (the
  /// default for bf16 and tf32 plans; NETC_CUDA_CONV_API), and those of
  /// them whose plan computes the bias and relu after the convolution too
  /// (graph-fused).
  uint64_t graphConvolutions() const { return graphConvs_; }
  uint64_t graphEpilogues() const { return graphEpilogues_; }
  std::unique_ptr<exec::KernelState>
  prepare(const exec::KernelCall &call) override;
  void run(const exec::KernelCall &call) override;

  /// Bytes of the shared convolution workspace now, and the most any chosen
  /// algorithm needs (what prepareProgram() leaves it at).
  uint64_t workspaceBytes() const;
  uint64_t workspaceNeed() const { return workspaceNeed_; }

  /// The stream every transfer and kernel is enqueued on.
  CUstream_st *stream() const { return stream_; }
  /// With NCCL (NETC_HAVE_NCCL), all_reduce_mean spans ranks.
  bool reducesAcrossRanks() const override;

  /// An operand that a kernel reads or writes in another layout than its
  /// own, through `scratch` (see relayoutsOf).
  struct Relayout {
    bool out = false;
    size_t index = 0;
    plan::Layout layout = plan::Layout::NCHW; ///< the kernel's
    std::unique_ptr<exec::Buffer> scratch;
  };

private:
  struct State;
  std::unique_ptr<State> prepareKernel(const exec::KernelCall &call);
  void runKernel(const exec::KernelCall &call, State &s);
  std::vector<Relayout>
  relayoutsOf(const exec::KernelCall &call,
              std::optional<plan::Layout> layout = std::nullopt);
  void relayout(const exec::TensorRef &from, const exec::TensorRef &to);
  /// A copy of an f32 weight, bf16 or f32, in the layout its kernels read
  /// (KRSC for convolutions on NHWC maps: lanes = the filter's C; fc:
  /// lanes 1, bf16 only).
  struct WeightCopy {
    std::unique_ptr<exec::Buffer> data;
    bool bf16 = true; ///< else f32 (a tf32 plan's KRSC copy)
    const float *w = nullptr;
    kernels::Dims4 dims; ///< the weight as [K, C, kh, kw] (fc: [out, in, 1, 1])
    int64_t lanes = 1;
    /// Written by the weight's fused SGD update (one copy per weight is);
    /// any other copy of the same weight is refreshed before each use.
    bool bySgd = false;
  };
  /// The copy of weight `w` with `lanes` (bf16, or f32), made (and filled)
  /// on first request. Prepare only.
  WeightCopy &weightCopy(const float *w, const kernels::Dims4 &dims,
                         int64_t lanes, bool bf16);
  /// Drops every weight copy not in `keep` (those a failed prepare made).
  void dropCopiesBut(const std::set<std::pair<const float *, int64_t>> &keep);
  /// Enqueues the conversion of `c` from its f32 weight.
  void refresh(const WeightCopy &c);
  /// After the host or a copy wrote [dst, dst + bytes): refreshes the
  /// copies of any weight in it.
  void touched(const void *dst, uint64_t bytes);
  /// Gives sgd_update state `s` the copy of its weight, if there is one
  /// (uploading its device table), or registers it to get one later.
  void linkSgd(State &s);
  void unlinkSgd(State &s);
  State &state(const exec::KernelCall &call) const;
  /// Grows the shared workspace to at least `bytes` (prepare() only).
  void reserveWorkspace(uint64_t bytes);
  /// Shrinks the workspace to what the chosen algorithms need (after a
  /// program's prepare: the search reserved room for every candidate).
  void fitWorkspace();
  void *workspace() const;
  /// Whether convolution `s` runs a workspace of `bytes` in the arena
  /// bytes free around it (exec::freeArenaSpans, less its padded maps)
  /// instead of the shared one: a convolution at the end of the backward
  /// pass, where the arena has emptied, needs no shared workspace at all.
  bool inFreeArena(const State &s, uint64_t bytes) const;
  /// Where convolution `s` runs a workspace of `bytes`: its free arena
  /// bytes where they hold it, else the shared workspace; null if that is
  /// smaller.
  void *convWorkspace(const State &s, uint64_t bytes) const;
  /// Raises what the shared workspace keeps (workspaceNeed_) to `bytes`,
  /// unless convolution `s` runs them in its free arena bytes.
  void needWorkspace(const State &s, uint64_t bytes);
  void runConv(const exec::KernelCall &call, State &s);
  /// fc, fc_grad_input and fc_grad_weight on bf16 activations (GemmEx).
  void runFcBf16(const exec::KernelCall &call, const State &s, int n, int fin,
                 int fout);
  /// The conv view's input, weight and output addresses of a convolution
  /// (a bf16 one's weight: its copy, or the bf16 weight gradient).
  static void convPointers(const exec::KernelCall &call, const State &s,
                           void *&x, void *&w, void *&y);
  void describeForBatch(const exec::KernelCall &call, State &s);
  std::unique_ptr<GraphConv> graphPlan(const exec::KernelCall &call,
                                       const State &s, bool epilogue,
                                       std::string *key = nullptr);
  static GraphConvOperands graphOperands(const exec::KernelCall &call,
                                         const State &s);
  void fuseGraphEpilogue(const exec::KernelCall &call, State &s);
  void runOwnEpilogue(const exec::KernelCall &call, const State &s, void *out);
  /// Lets convolutions and fc use TF32 tensor cores (usePlan).
  void allowTf32(bool on);
  /// Drops the weight copies of an f32 weight in [p, p + bytes) (freed).
  void forget(const void *p, uint64_t bytes);

  int device_ = 0;
  std::string deviceName_;
  CUstream_st *stream_ = nullptr;
  /// uploadAside()'s stream and the event of its last copy.
  CUstream_st *copyStream_ = nullptr;
  CUevent_st *asideCopied_ = nullptr;
  /// Recorded after each allocation's zeroing; uploadAside() waits for it.
  CUevent_st *zeroed_ = nullptr;
  cudnnContext *cudnn_ = nullptr;
  cublasContext *cublas_ = nullptr;
  std::unique_ptr<exec::Buffer> cublasWorkspace_;
  std::unique_ptr<exec::Buffer> workspace_;
  std::unique_ptr<exec::Buffer> uploadWords_; ///< uploadStored's
  bool tf32_ = false;
  bool tf32Plan_ = false; ///< the plan's precision is tf32 (usePlan)
  bool search_ = true;    ///< cudnnFind* rather than the heuristics
  /// A convolution algorithm as the file keeps it: cuDNN's algorithm and
  /// math type (cudnnMathType_t) and the workspace bytes they need.
  struct CachedAlgo {
    int algo = -1;
    uint64_t bytes = 0;
    int math = 0;
  };
  /// The algorithm chosen per convolution shape and direction.
  std::map<std::string, CachedAlgo> algoCache_;
  /// The graph API's plan chosen per problem (GraphConvProblem::key): the
  /// engine configuration's identity (empty: the graph API has none) and
  /// the workspace it needs.
  struct CachedGraph {
    std::string identity;
    uint64_t bytes = 0;
  };
  std::map<std::string, CachedGraph> graphCache_;
  /// Where algoCache_ is kept (usePlan); whether it has entries the file
  /// lacks.
  std::string algoFile_;
  bool algoDirty_ = false;
  /// What the file's algorithms were measured on: the device and cuDNN.
  std::string algoOrigin() const;
  void loadAlgorithms();
  void saveAlgorithms();
  /// A program's graph (beginProgram).
  struct Recording {
    int64_t n = 0;
    bool training = false;
    /// What else of the step context the recorded kernels bake in (dropout's
    /// first index, the ranks all_reduce_mean reaches).
    uint64_t firstSample = 0;
    const void *comm = nullptr;
    uint64_t generation = 0; ///< generation_ when captured
    CUgraphExec_st *exec = nullptr;
    int eagerRuns = 0;
    bool off = false; ///< its capture failed: always eager
  };
  std::map<const void *, Recording> recordings_;
  /// Bumped when a buffer that recorded kernels may point to moves (the
  /// shared workspace) or NCCL's communicator is replaced: older
  /// recordings are captured again.
  uint64_t generation_ = 0;
  /// The most workspace any chosen convolution algorithm needs, over every
  /// program prepared (the workspace is shared).
  uint64_t workspaceNeed_ = 0;
  /// The most workspace any chosen algorithm needs, in the arena or not:
  /// the bound for a batch other than the planned one, so that it chooses
  /// as it would with every workspace shared (NETC_CUDA_ARENA_WORKSPACE=off)
  /// and the two compute alike.
  uint64_t workspaceChosen_ = 0;
  bool graphs_ = true;
  /// NETC_CUDA_SYNC=on: wait after each kernel, so that a fault names it
  /// (no graphs then).
  bool syncEach_ = false;
  /// NETC_CUDA_CONV_NCHW=on: convolutions on NCHW copies of their NHWC
  /// maps, the fallback for shapes cuDNN has no NHWC engine for (a test of
  /// that path, and a way around a bad NHWC engine).
  bool nchwConvs_ = false;
  /// Run NHWC convolutions whose channels are not whole 16-byte packs (3
  /// for an image) on channel-padded copies, where cuDNN has fast engines
  /// (Kernels.h, paddedChannels); NETC_CUDA_PAD_CHANNELS=off runs them as
  /// they are.
  bool padChannels_ = true;
  /// Convolutions take their workspace from the arena bytes free around
  /// them where those are enough (inFreeArena); NETC_CUDA_ARENA_WORKSPACE=off
  /// gives every one the shared workspace.
  bool arenaWorkspace_ = true;
  uint64_t replays_ = 0;     ///< graph launches that replayed a step
  uint64_t uncapturable_ = 0; ///< runs that could not be graphs (n, profiling)
  uint64_t paddedConvs_ = 0; ///< paddedConvolutions()
  /// Convolutions prepared with their workspace in the arena's free bytes
  /// (at the planned batch; arenaWorkspaces()).
  uint64_t arenaWorkspaces_ = 0;
  /// NETC_CUDA_CONV_API: which convolutions go through cuDNN's graph API
  /// (GraphConv.h; the legacy calls where it has no plan). Auto: those of
  /// bf16 and tf32 plans, where it measured no slower on the H200 (VGG-16's
  /// classifier: bf16 1.038x and 1.029x, tf32 1.019x and 0.999x, in two
  /// calls, 2026-11-30 and 12-01); fp32 ones keep the legacy calls (its
  /// fp32 classifier, NCHW: 0.741x on the graph API). GraphFused: with the
  /// forward convolutions' bias and relu in their plans too.
  enum class ConvApi { Auto, Legacy, Graph, GraphFused };
  ConvApi convApi_ = ConvApi::Auto;
  /// NETC_CUDA_TF32=off: tf32 plans compute in fp32 (usePlan).
  bool tf32Allowed_ = true;
  uint64_t graphConvs_ = 0, graphEpilogues_ = 0; ///< graphConvolutions() ...
  uint64_t graphMisses_ = 0;     ///< convolutions left to the legacy calls
  std::string graphMissWhy_;     ///< the first one's reason
  std::string graphEpilogueWhy_; ///< the first fused plan not made's reason
  bool severalRanks_ = false;    ///< a run of several ranks was seen
  std::string captureFailure_;   ///< why the first failed capture failed
  /// Fuse each relu into the convolution before it (convReluPairs): the
  /// bias and the relu in one pass; NETC_CUDA_FUSION without conv-relu
  /// keeps them apart.
  bool fuseRelu_ = true;
  /// Sum each bias gradient's partials in the relu_grad that writes its
  /// input (reluGradBiasPairs), saving the bias_grad's read of the map;
  /// NETC_CUDA_FUSION without relu-bias keeps them apart. On bf16 maps
  /// only where NETC_CUDA_FUSION names it (all, or a list): by default
  /// there it lost.
  bool fuseReluGradBias_ = true;
  bool fuseReluGradBiasBf16_ = false;
  /// Compute a max-pool's backward (an unpool through switches, of a pool
  /// whose windows tile its input) inside the relu_grad after it
  /// (unpoolReluGradPairs), never writing the gather's map.
  bool fusePoolReluGrad_ = true;
  /// The step's hyper-parameters and number, read by the SGD update and
  /// dropout (device memory, a StepParams).
  std::unique_ptr<exec::Buffer> stepParams_;
  /// Their page-locked staging: kStepSlots slots used in turn, each with
  /// the event of its last copy.
  static constexpr size_t kStepSlots = 8;
  std::unique_ptr<exec::Buffer> stepStaging_;
  CUevent_st *stepCopied_[kStepSlots] = {};
  size_t stepSlot_ = 0;
  /// Weight copies by (f32 weight, lanes).
  std::map<std::pair<const float *, int64_t>, WeightCopy> copies_;
  /// The prepared sgd_update states of each weight (for linkSgd).
  std::multimap<const float *, State *> sgdStates_;
  /// all_reduce_mean's NCCL communicator, made at the first one.
  std::unique_ptr<NcclReducer> nccl_;
};

} // namespace netc::cuda

#endif // NETC_RUNTIME_CUDA_CUDABACKEND_H
