//===- CudaBackend.cpp - the `cuda` backend -------------------------------===//
//
// Host code that calls the CUDA runtime, cuDNN and cuBLAS C APIs and the own
// kernels' device launchers (Launch.h); compiled by the host compiler, only
// Kernels.cu needs nvcc. See CudaBackend.h for what runs where.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/CudaBackend.h"

#include "runtime/cuda/GraphConv.h"
#include "runtime/cuda/Launch.h"
#include "runtime/cuda/Nccl.h"
#include "runtime/dist/Communicator.h"
#include "runtime/io/File.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>

namespace netc::cuda {

using exec::Buffer;
using exec::KernelCall;
using exec::MemoryError;
using kernels::Dims4;
using kernels::KernelError;
using plan::Op;

namespace {

//===----------------------------------------------------------------------===//
// Errors
//===----------------------------------------------------------------------===//

void cudaCheck(cudaError_t e, const char *what) {
  if (e != cudaSuccess)
    throw std::runtime_error(
        fmt::format("CUDA {}: {}", what, cudaGetErrorString(e)));
}

/// A failed library call inside a kernel: a KernelError, which the executor
/// prefixes with the kernel's path and op.
void dnnCheck(cudnnStatus_t s, const char *what) {
  if (s != CUDNN_STATUS_SUCCESS)
    throw KernelError(
        fmt::format("cuDNN {}: {}", what, cudnnGetErrorString(s)));
}

void blasCheck(cublasStatus_t s, const char *what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw KernelError(
        fmt::format("cuBLAS {}: {}", what, cublasGetStatusString(s)));
}

int toInt(int64_t v, const char *what) {
  if (v < 0 || v > INT_MAX)
    throw KernelError(fmt::format(
        "{} {} does not fit the 32-bit sizes of cuDNN and cuBLAS", what, v));
  return int(v);
}

//===----------------------------------------------------------------------===//
// cuDNN descriptors, owned
//===----------------------------------------------------------------------===//

template <typename H, cudnnStatus_t (*Create)(H *), cudnnStatus_t (*Destroy)(H)>
class Desc {
public:
  Desc() = default;
  ~Desc() {
    if (h_)
      Destroy(h_);
  }
  Desc(const Desc &) = delete;
  Desc &operator=(const Desc &) = delete;
  /// The descriptor, created on first use.
  H get() {
    if (!h_)
      dnnCheck(Create(&h_), "create descriptor");
    return h_;
  }
  explicit operator bool() const { return h_ != nullptr; }

private:
  H h_ = nullptr;
};

using TensorDesc = Desc<cudnnTensorDescriptor_t, cudnnCreateTensorDescriptor,
                        cudnnDestroyTensorDescriptor>;
using FilterDesc = Desc<cudnnFilterDescriptor_t, cudnnCreateFilterDescriptor,
                        cudnnDestroyFilterDescriptor>;
using ConvDesc =
    Desc<cudnnConvolutionDescriptor_t, cudnnCreateConvolutionDescriptor,
         cudnnDestroyConvolutionDescriptor>;
using LrnDesc = Desc<cudnnLRNDescriptor_t, cudnnCreateLRNDescriptor,
                     cudnnDestroyLRNDescriptor>;

cudnnDataType_t dnnType(plan::DType t) {
  return t == plan::DType::BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
}

cudnnTensorFormat_t dnnFormat(plan::Layout l) {
  return l == plan::Layout::NHWC ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
}

void setTensor(TensorDesc &d, const Dims4 &x, plan::DType t = plan::DType::F32,
               plan::Layout l = plan::Layout::NCHW) {
  dnnCheck(
      cudnnSetTensor4dDescriptor(d.get(), dnnFormat(l), dnnType(t),
                                 toInt(x.n, "batch"), toInt(x.c, "channels"),
                                 toInt(x.h, "height"), toInt(x.w, "width")),
      "set tensor descriptor");
}

/// A value's descriptor with its own dims, element type and layout.
void setTensor(TensorDesc &d, const exec::TensorRef &v) {
  setTensor(d, v.dims, v.dtype, v.layout);
}

bool isBf16(const exec::TensorRef &v) { return v.dtype == plan::DType::BF16; }

/// Whether a bias gradient of `dy` runs the own kernel: on bf16 maps (it
/// sums in the order the reference's emulation does) and on NHWC ones (it
/// walks a pixel's channels side by side); cuDNN's on f32 NCHW maps.
bool ownBiasGrad(const exec::TensorRef &dy) {
  return isBf16(dy) || dy.layout == plan::Layout::NHWC;
}

/// The most scratch `bytesOf(d)` asks for at any batch up to d.n: a
/// reduction's scratch serves the tail batch too, and a smaller batch can
/// need more chunks (RowChunks: 1568 rows in 64-row chunks are 25,
/// 980 rows in 32-row chunks 31).
template <typename F> uint64_t anyBatchBytes(Dims4 d, F &&bytesOf) {
  uint64_t bytes = 0;
  for (int64_t n = d.n; n >= 1; --n) {
    d.n = n;
    bytes = std::max<uint64_t>(bytes, bytesOf(d));
  }
  return bytes;
}

/// The layout a convolution runs in, from its conv view's input and output:
/// the input's, unless the input is a single pixel per channel (the same
/// bytes in NCHW and NHWC), then the output's; NCHW when both are single
/// pixels (no KRSC weight copy, and the layout prepare() would fall back
/// to, which it cannot for maps whose layout does not matter).
plan::Layout convLayout(const exec::TensorRef &xv, const exec::TensorRef &yv) {
  return xv.dims.plane() > 1   ? xv.layout
         : yv.dims.plane() > 1 ? yv.layout
                               : plan::Layout::NCHW;
}

/// Whether environment variable `name` is set to `value` (the backend's
/// switches, read when it is made).
bool envIs(const char *name, const char *value) {
  const char *v = std::getenv(name);
  return v && std::string(v) == value;
}

/// `d` with `channels` channels, unless that is 0 (not padded).
Dims4 paddedDims(Dims4 d, int64_t channels) {
  if (channels > 0)
    d.c = channels;
  return d;
}

/// Calls f(T{}) with T the storage type of `v`'s real elements.
template <typename F> void withType(const exec::TensorRef &v, F &&f) {
  if (isBf16(v))
    f(Bf16{});
  else
    f(float{});
}

/// Whether a convolution-family kernel adds a bias (conv2d and deconv2d
/// with a third operand).
bool hasBias(const exec::KernelCall &c) {
  return (c.kernel.op == Op::Conv2D || c.kernel.op == Op::Deconv2D) &&
         c.in.size() > 2;
}

/// A per-channel operand (bias) as cuDNN broadcasts it: [1, C, 1, 1].
void setChannels(TensorDesc &d, int64_t c) { setTensor(d, Dims4{1, c, 1, 1}); }

using exec::isConvFamily;
using exec::isTransposedConv;

ConvKind convKind(Op op) {
  switch (op) {
  case Op::Conv2D:
  case Op::Deconv2DGradInput:
    return ConvKind::Forward;
  case Op::Conv2DGradInput:
  case Op::Deconv2D:
    return ConvKind::BackwardData;
  default:
    return ConvKind::BackwardFilter;
  }
}

/// An algorithm-file entry for a convolution cuDNN has no algorithm for.
constexpr int kNoAlgo = -2;
/// The most workspace prepare() lets one convolution algorithm ask for.
constexpr uint64_t kMaxWorkspace = uint64_t(1) << 30;
/// The workspace cudnnFind* may use (and the convolutions after it): for
/// bf16 plans, whose peak memory is near PyTorch's (4.1 against 4.4 GiB
/// for the VGG-16 classifier on the H200, 2026-11-30), 256 MiB; for f32
/// ones (fp32, tf32), whose peaks were 56-64% of PyTorch's, kMaxWorkspace,
/// as their backward-filter algorithms then used up to 215 MB (fp32) and
/// 224 MB (tf32) of 256 MiB. Above kPreferredWorkspace an algorithm must be
/// 10% faster than the best within it to be chosen (findAlgo).
constexpr uint64_t kSearchWorkspace = uint64_t(256) << 20;
constexpr uint64_t kSearchWorkspaceF32 = kMaxWorkspace;
constexpr uint64_t kPreferredWorkspace = kSearchWorkspace;
/// cuBLAS's own workspace (set once, so it allocates nothing in a step).
constexpr uint64_t kCublasWorkspace = uint64_t(32) << 20;

/// A convolution algorithm with the math type it was measured with: cuDNN
/// reports (algorithm, math type) pairs, and runs the algorithm with the
/// math type the descriptor has, so the descriptor gets the chosen pair's
/// (useAlgo), as PyTorch does.
struct AlgoChoice {
  int algo = -1;
  size_t bytes = 0;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
};

/// One candidate of cuDNN's ranked heuristics, whichever direction.
struct Candidate {
  int algo;
  cudnnStatus_t status;
  float time; ///< ms, measured by cudnnFind*; -1 from the heuristics
  size_t memory;
  cudnnDeterminism_t determinism;
  cudnnMathType_t mathType;
};

} // namespace

//===----------------------------------------------------------------------===//
// Per-kernel state
//===----------------------------------------------------------------------===//

struct CudaBackend::State : exec::KernelState {
  ~State() override {
    if (owner)
      owner->unlinkSgd(*this);
  }
  int64_t n = 0; ///< batch the descriptors describe
  // cuDNN: x/y are the (conv view) input and output; bias a per-channel
  // operand or batch norm's derived parameter descriptor.
  TensorDesc x, y, bias;
  FilterDesc w;
  ConvDesc conv;
  LrnDesc lrn;
  ConvKind kind = ConvKind::Forward;
  /// The algorithm per batch size (the planned one from prepare()).
  std::map<int64_t, AlgoChoice> algos;
  AlgoChoice algo;
  /// Through cuDNN's graph API (convApi_): its plan for batch graphN
  /// (other batches take the legacy calls); graphEpilogue: it computes the
  /// bias and the relu too (prepareProgram), so runConv's epilogue is
  /// skipped.
  std::unique_ptr<GraphConv> graph;
  int64_t graphN = -1;
  bool graphEpilogue = false;
  bool graphTried = false; ///< the graph API was asked for a plan
  bool tensorOps = false;  ///< TF32 or bf16: tensor-core algorithms allowed
  /// The arena bytes free around the kernel (KernelCall::freeArena) that
  /// its padded maps leave: its workspace is taken there where it fits.
  void *wsArena = nullptr;
  uint64_t wsArenaBytes = 0;
  /// Whether the convolution runs its graph plan (made for batch graphN)
  /// at the batch its descriptors describe, rather than a legacy algorithm.
  bool viaGraph() const { return graph && n == graphN; }
  /// The workspace what runs it needs.
  uint64_t convWorkspaceBytes() const {
    return viaGraph() ? graph->workspaceBytes() : algo.bytes;
  }
  /// Runs `a` from now on, with the math type it was chosen with.
  void useAlgo(const AlgoChoice &a) {
    algo = a;
    dnnCheck(cudnnSetConvolutionMathType(conv.get(), a.math), "set math type");
  }
  /// The math type a search (cudnnFind*, the heuristics) starts from, which
  /// limits what it returns: fp32 plans compute in fp32, FMA only (default
  /// math would allow TF32 tensor cores on Ampere and later); TF32 plans
  /// cuDNN's default; bf16 on tensor cores, accumulating in fp32 (the
  /// descriptor's compute type).
  void searchMath() {
    dnnCheck(cudnnSetConvolutionMathType(conv.get(), bf16 ? CUDNN_TENSOR_OP_MATH
                                                     : tensorOps
                                                         ? CUDNN_DEFAULT_MATH
                                                         : CUDNN_FMA_MATH),
             "set math type");
  }
  // Own kernels: reduction scratch or row log-sum-exps; the objective's and
  // SGD's device tables.
  std::unique_ptr<Buffer> scratch, table, chunks;
  int64_t tableCount = 0;
  // bf16 convolutions and fc, and convolutions on NHWC maps: the weight's
  // copy they read (bf16, or f32 in the KRSC layout NHWC filters are), or
  // the weight gradient cuDNN writes in the copy's type and layout (wDims
  // with wLanes) before it becomes the f32 gradient in the weight's order.
  bool bf16 = false;
  plan::Layout layout = plan::Layout::NCHW; ///< a convolution's maps
  WeightCopy *copy = nullptr;
  std::unique_ptr<Buffer> dwCopy;
  /// A convolution on channel-padded copies (paddedChannels, Kernels.h):
  /// the conv view's input and output channels padded to whole packs (0:
  /// not padded); the padded copies of the maps whose channels change
  /// (xPad, yPad: filled before cuDNN reads them, cut back after it writes
  /// them); the padded KRSC filter it reads (wPad, made from the f32
  /// weight before each run) or, for a weight gradient, writes (dwCopy).
  int64_t padC = 0, padK = 0;
  std::unique_ptr<Buffer> xPad, yPad, wPad;
  /// Where xPad's and yPad's maps are: those buffers, or the arena's free
  /// bytes around the kernel (both are rewritten in full at every run).
  void *xPadData = nullptr, *yPadData = nullptr;
  Dims4 wDims;
  int64_t wLanes = 1;
  // sgd_update: its tensor as uploaded to `table` (linkSgd may add the
  // weight's bf16 copy later); owner is set while it is in sgdStates_.
  SgdTensor sgd;
  CudaBackend *owner = nullptr;
  /// Operands in another layout than the kernel's (relayoutsOf).
  std::vector<Relayout> relayouts;
  /// A convolution fused with the relu after it (convReluPairs): the
  /// relu's output, which it writes instead of its own; the relu is then
  /// `skip`ped.
  void *reluOut = nullptr;
  bool skip = false;
  /// A relu_grad that sums the bias gradient of its output as it writes it
  /// (reluGradBiasPairs): that bias_grad's partials, in its scratch; the
  /// bias_grad, `partialsSummed`, then runs its last two stages alone.
  double *biasPartials = nullptr;
  bool partialsSummed = false;
  /// A relu_grad whose gradient is the max-pool backward (an unpool through
  /// switches) before it, computed in its pass (unpoolReluGradPairs): the
  /// pool's shape at the planned batch, its pooled gradient and switches;
  /// the unpool is then `skip`ped.
  bool poolGrad = false;
  kernels::PoolShape poolShape;
  const void *poolDy = nullptr;
  const Switch *poolSwitches = nullptr;
  /// LRN or batch norm on a bf16 or NHWC map, or LRN outside cuDNN's
  /// limits: the own kernels (cuDNN's LRN is NCHW only, and its batch
  /// norm's bf16 support unproven).
  bool ownKernel = false;
  bool isConv = false; ///< a convolution-family kernel

  /// What runs the kernel, for `netrun bench --profile`'s slowest kernels:
  /// a convolution's cuDNN algorithm or graph plan (at the planned batch)
  /// and what it computes besides; the fusions a kernel takes part in.
  std::string describe() const override {
    if (skip)
      return "computed inside a neighbouring kernel (fused)";
    std::string d;
    if (isConv) {
      static const char *const kMath[] = {"default", "tensor-op",
                                          "tensor-op-conversion", "fma"};
      const char *dir = kind == ConvKind::Forward        ? "forward"
                        : kind == ConvKind::BackwardData ? "backward-data"
                                                         : "backward-filter";
      const uint64_t ws = convWorkspaceBytes();
      if (viaGraph())
        d = fmt::format(
            "cuDNN graph {} plan, {}{}, workspace {}", dir, graph->identity(),
            graphEpilogue ? ", bias and relu inside" : "", io::formatBytes(ws));
      else
        d = fmt::format("cuDNN {} algorithm {}, {} math, workspace {}", dir,
                        algo.algo,
                        unsigned(algo.math) < 4 ? kMath[algo.math] : "other",
                        io::formatBytes(ws));
      if (ws > 0 && ws <= wsArenaBytes)
        d += " in the arena's free bytes";
      if (padC || padK)
        d += ", on channel-padded copies";
      if (reluOut && !(viaGraph() && graphEpilogue))
        d += ", its relu in the own epilogue";
    }
    if (biasPartials)
      d += "sums the next bias gradient's first stage";
    if (poolGrad)
      d += std::string(d.empty() ? "" : "; ") +
           "does the max-pool's backward before it";
    if (partialsSummed)
      d += "last two stages only (the relu_grad before it summed the "
           "first)";
    return d;
  }
};

//===----------------------------------------------------------------------===//
// Devices
//===----------------------------------------------------------------------===//

int deviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError(); // not sticky; clear it
    return 0;
  }
  return n;
}

std::string deviceDescription() {
  if (deviceCount() == 0)
    return "";
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, 0) != cudaSuccess)
    return "";
  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);
  size_t dnn = cudnnGetVersion();
  return fmt::format("{}: {} of memory, compute capability {}.{}, {} SMs; "
                     "CUDA runtime {}.{}, driver {}.{}, cuDNN {}.{}.{}",
                     p.name, io::formatBytes(uint64_t(p.totalGlobalMem)),
                     p.major, p.minor, p.multiProcessorCount, runtime / 1000,
                     runtime % 1000 / 10, driver / 1000, driver % 1000 / 10,
                     dnn / 10000, dnn % 10000 / 100, dnn % 100);
}

//===----------------------------------------------------------------------===//
// Memory
//===----------------------------------------------------------------------===//

CudaBackend::CudaBackend() {
  // The switches that take a value first: a bad one is an error before
  // anything is made (a constructor that throws runs no destructor).
  // NETC_CUDA_FUSION: on (the default: conv-relu, pool-relu, and relu-bias
  // on f32 maps), all (the three on every map), off, or the fusions to
  // make, by name, separated by commas (relu-bias then on every map).
  // relu-bias is off on bf16 maps by default: on the H200 (2026-12-01) the
  // bf16 VGG-16 cells ran 0.967x (classifier) and 0.930x (SWWAE-all) with
  // it, its relu_grads moving 1.24 TB/s where the plain ones and bias_grad
  // alone together cost less (README, Benchmarks). On f32 maps (tf32
  // plans) its relu_grads moved 3.5 TB/s, and those cells were measured
  // only with it (1.01x-1.22x): there it stays until an A/B cell says
  // otherwise.
  const char *fusion = std::getenv("NETC_CUDA_FUSION");
  const std::string fuse = fusion ? fusion : "on";
  std::set<std::string> fusions;
  bool reluBiasOnBf16 = true;
  if (fuse == "on") {
    fusions = {"conv-relu", "pool-relu", "relu-bias"};
    reluBiasOnBf16 = false;
  } else if (fuse == "all")
    fusions = {"conv-relu", "relu-bias", "pool-relu"};
  else if (fuse != "off")
    for (size_t at = 0; at <= fuse.size();) {
      size_t comma = std::min(fuse.find(',', at), fuse.size());
      std::string name = fuse.substr(at, comma - at);
      if (name != "conv-relu" && name != "relu-bias" && name != "pool-relu")
        throw std::invalid_argument(fmt::format(
            "NETC_CUDA_FUSION='{}': '{}' is not a fusion (expected on, all, "
            "off, or a comma-separated list of conv-relu, relu-bias, "
            "pool-relu)",
            fuse, name));
      fusions.insert(name);
      at = comma + 1;
    }
  fuseRelu_ = fusions.count("conv-relu") > 0;
  // The fused relu_grads read and write 16-byte packs: with packs off
  // (NETC_CUDA_PACKS=off, the comparison the GPU check makes) they stay
  // apart, so that cell is one element per item throughout.
  fuseReluGradBias_ = device::elementPacks() && fusions.count("relu-bias") > 0;
  fuseReluGradBiasBf16_ = fuseReluGradBias_ && reluBiasOnBf16;
  fusePoolReluGrad_ = device::elementPacks() && fusions.count("pool-relu") > 0;
  // NETC_CUDA_CONV_API: auto (the default: the graph API for the
  // convolutions of bf16 and tf32 plans, the legacy calls for fp32 ones),
  // legacy, graph, or graph-fused (the graph API with the forward
  // convolutions' bias and relu in the plan, whose engines are compiled at
  // run time: NVRTC, about a second each).
  if (const char *api = std::getenv("NETC_CUDA_CONV_API")) {
    const std::string v = api;
    if (v == "auto")
      convApi_ = ConvApi::Auto;
    else if (v == "legacy")
      convApi_ = ConvApi::Legacy;
    else if (v == "graph")
      convApi_ = ConvApi::Graph;
    else if (v == "graph-fused")
      convApi_ = ConvApi::GraphFused;
    else
      throw std::invalid_argument(fmt::format(
          "NETC_CUDA_CONV_API='{}': expected auto (the default: cuDNN's "
          "graph API for bf16 and tf32 plans, its legacy convolution calls "
          "for fp32 ones), legacy, graph (the graph API for every plan) or "
          "graph-fused (the graph API with each forward convolution's bias "
          "and relu in its plan)",
          v));
  }
  // NETC_CUDA_TF32=off: a tf32 plan computes in fp32 (cuDNN's FMA math,
  // cuBLAS's default), the same maps, layouts and weight copies without
  // TF32's rounding: what the GPU tests compare with the reference at
  // fp32's tolerance.
  if (const char *tf32 = std::getenv("NETC_CUDA_TF32")) {
    const std::string v = tf32;
    if (v != "on" && v != "off")
      throw std::invalid_argument(fmt::format(
          "NETC_CUDA_TF32='{}': expected on (the default: tf32 plans on "
          "TF32 tensor cores) or off (tf32 plans computed in fp32)",
          v));
    tf32Allowed_ = v == "on";
  }
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    std::string why = e != cudaSuccess ? cudaGetErrorString(e) : "none found";
    (void)cudaGetLastError();
    throw std::runtime_error(fmt::format(
        "no CUDA device: the cuda backend needs an NVIDIA GPU ({}); use "
        "--backend cpu or reference",
        why));
  }
  // One GPU per rank of a data-parallel run on this machine (two ranks on
  // one GPU would make NCCL hang).
  dist::Communicator &ranks = dist::world();
  if (ranks.localSize() > count)
    throw std::runtime_error(fmt::format(
        "{} ranks run on this machine but it has {} CUDA device(s): start at "
        "most one rank per GPU",
        ranks.localSize(), count));
  device_ = ranks.localRank();
  cudaCheck(cudaSetDevice(device_), "set device");
  cudaDeviceProp p{};
  cudaCheck(cudaGetDeviceProperties(&p, device_), "device properties");
  deviceName_ = p.name;
  cudaStream_t s = nullptr;
  cudaCheck(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking),
            "create stream");
  stream_ = s;
  cudaCheck(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking),
            "create the copy stream");
  copyStream_ = s;
  for (CUevent_st **e : {&asideCopied_, &zeroed_})
    cudaCheck(cudaEventCreateWithFlags(e, cudaEventDisableTiming),
              "create an event");
  // cuDNN 9 loads its sub-libraries lazily: one that is missing or of
  // another version is reported here, not in the middle of a prepare().
  dnnCheck(cudnnGraphVersionCheck(), "graph library");
  dnnCheck(cudnnOpsVersionCheck(), "ops library");
  dnnCheck(cudnnCnnVersionCheck(), "cnn library");
  dnnCheck(cudnnCreate(&cudnn_), "create handle");
  dnnCheck(cudnnSetStream(cudnn_, stream_), "set stream");
  blasCheck(cublasCreate(&cublas_), "create handle");
  blasCheck(cublasSetStream(cublas_, stream_), "set stream");
  cublasWorkspace_ = allocate(kCublasWorkspace, "cuBLAS workspace");
  blasCheck(cublasSetWorkspace(cublas_, cublasWorkspace_->data(),
                               size_t(kCublasWorkspace)),
            "set workspace");
  allowTf32(false);
  search_ = !envIs("NETC_CUDNN_ALGO", "heuristic");
  graphs_ = !envIs("NETC_CUDA_GRAPHS", "off");
  syncEach_ = envIs("NETC_CUDA_SYNC", "on");
  padChannels_ = !envIs("NETC_CUDA_PAD_CHANNELS", "off");
  arenaWorkspace_ = !envIs("NETC_CUDA_ARENA_WORKSPACE", "off");
  nchwConvs_ = envIs("NETC_CUDA_CONV_NCHW", "on");
  stepParams_ = allocate(sizeof(StepParams), "the step's hyper-parameters");
  stepStaging_ = allocateStaging(kStepSlots * sizeof(StepParams),
                                 "the step parameters' staging");
  for (auto &e : stepCopied_)
    cudaCheck(cudaEventCreateWithFlags(&e, cudaEventDisableTiming),
              "create an event");
}

bool CudaBackend::reducesAcrossRanks() const {
#ifdef NETC_HAVE_NCCL
  return true;
#else
  return false;
#endif
}

CudaBackend::~CudaBackend() {
  if (copyStream_)
    cudaStreamSynchronize(copyStream_);
  if (stream_)
    cudaStreamSynchronize(stream_);
  for (auto &[key, r] : recordings_)
    if (r.exec)
      cudaGraphExecDestroy(r.exec);
  recordings_.clear();
  // Their buffers' deleters call forget(), which reads copies_.
  while (!copies_.empty())
    copies_.extract(copies_.begin());
  // So does every buffer's deleter: free the members' buffers here, while
  // copies_ still exists (members are destroyed after it otherwise).
  stepParams_.reset();
  stepStaging_.reset();
  for (auto &e : stepCopied_)
    if (e)
      cudaEventDestroy(e);
  uploadWords_.reset();
  nccl_.reset();
  workspace_.reset();
  if (cublas_)
    cublasDestroy(cublas_);
  cublasWorkspace_.reset();
  if (cudnn_)
    cudnnDestroy(cudnn_);
  for (CUevent_st *e : {asideCopied_, zeroed_})
    if (e)
      cudaEventDestroy(e);
  if (copyStream_)
    cudaStreamDestroy(copyStream_);
  if (stream_)
    cudaStreamDestroy(stream_);
}

void CudaBackend::allowTf32(bool on) {
  tf32_ = on;
  blasCheck(cublasSetMathMode(cublas_, on ? CUBLAS_TF32_TENSOR_OP_MATH
                                          : CUBLAS_DEFAULT_MATH),
            "set math mode");
}

std::unique_ptr<Buffer> CudaBackend::allocate(uint64_t bytes,
                                              const std::string &what) {
  // cudaMalloc aligns to 256 bytes; round so that the last value's bytes
  // and a zero-byte request are real memory.
  uint64_t rounded = (std::max<uint64_t>(bytes, 1) + 255) / 256 * 256;
  void *p = nullptr;
  cudaError_t e = cudaMalloc(&p, size_t(rounded));
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    size_t free = 0, total = 0;
    cudaMemGetInfo(&free, &total);
    throw MemoryError(fmt::format(
        "{} needs {} ({} bytes) of GPU memory but only {} of the {} of {} "
        "are free ({})",
        what, io::formatBytes(bytes), bytes, io::formatBytes(free),
        io::formatBytes(total), deviceName_, cudaGetErrorString(e)));
  }
  // Zeroed, as Memory promises; ordered before every later use on the
  // same stream, and before uploadAside()'s copies through `zeroed_`.
  e = cudaMemsetAsync(p, 0, size_t(rounded), stream_);
  if (e == cudaSuccess && zeroed_)
    e = cudaEventRecord(zeroed_, stream_);
  if (e != cudaSuccess) {
    cudaFree(p);
    cudaCheck(e, "zero new memory");
  }
  return track(p, bytes, /*host=*/false, [this, bytes](void *q) {
    forget(q, bytes);
    cudaFree(q);
  });
}

std::unique_ptr<Buffer> CudaBackend::allocateStaging(uint64_t bytes,
                                                     const std::string &what) {
  void *p = nullptr;
  uint64_t rounded = std::max<uint64_t>(bytes, 64);
  if (cudaMallocHost(&p, size_t(rounded)) != cudaSuccess) {
    (void)cudaGetLastError();
    throw MemoryError(fmt::format("{}: cannot allocate {} ({} bytes) of "
                                  "page-locked host memory",
                                  what, io::formatBytes(bytes), bytes));
  }
  std::memset(p, 0, size_t(rounded));
  // Host memory: not counted in the device's allocatedBytes().
  return std::make_unique<Buffer>(p, bytes, /*host=*/true,
                                  [](void *q) { cudaFreeHost(q); });
}

void CudaBackend::upload(void *dst, const void *src, uint64_t bytes) {
  if (bytes)
    cudaCheck(
        cudaMemcpyAsync(dst, src, size_t(bytes), cudaMemcpyDefault, stream_),
        "upload");
  touched(dst, bytes);
}

void CudaBackend::uploadAside(void *dst, const void *src, uint64_t bytes) {
  if (!bytes)
    return;
  // Not before the zeroing of memory allocated since (on the kernels'
  // stream): a fresh area's zeros must not land on the copy.
  cudaCheck(cudaStreamWaitEvent(copyStream_, zeroed_, 0),
            "order a copy after new memory's zeroing");
  cudaCheck(cudaMemcpyAsync(dst, src, size_t(bytes), cudaMemcpyHostToDevice,
                            copyStream_),
            "upload beside the kernels");
  cudaCheck(cudaEventRecord(asideCopied_, copyStream_), "record an event");
}

void CudaBackend::awaitAside() {
  // The event's latest record: every copy issued on the stream before it.
  cudaCheck(cudaStreamWaitEvent(stream_, asideCopied_, 0),
            "wait for the copies beside the kernels");
}

void CudaBackend::download(void *dst, const void *src, uint64_t bytes) {
  if (bytes)
    cudaCheck(
        cudaMemcpyAsync(dst, src, size_t(bytes), cudaMemcpyDefault, stream_),
        "download");
  // Also where a failed kernel of the step reports.
  cudaCheck(cudaStreamSynchronize(stream_),
            "download (the step's kernels; NETC_CUDA_SYNC=on names the one "
            "that failed)");
}

void CudaBackend::copy(void *dst, const void *src, uint64_t bytes) {
  if (bytes && dst != src)
    cudaCheck(
        cudaMemcpyAsync(dst, src, size_t(bytes), cudaMemcpyDefault, stream_),
        "copy");
  touched(dst, bytes);
}

void CudaBackend::zero(void *dst, uint64_t bytes) {
  if (bytes)
    cudaCheck(cudaMemsetAsync(dst, 0, size_t(bytes), stream_), "zero");
  touched(dst, bytes);
}

void CudaBackend::uploadStored(void *dst, const kernels::Storage &s,
                               const Dims4 &d, const void *src) {
  uint64_t bytes = uint64_t(d.count()) * 4;
  if (!uploadWords_ || uploadWords_->bytes() < bytes) {
    synchronize(); // a conversion may still read the old one
    uploadWords_.reset();
    uploadWords_ = allocate(bytes, "the converted uploads' buffer");
  }
  upload(uploadWords_->data(), src, bytes);
  storeFrom(dst, s, d, uploadWords_->data());
}

void CudaBackend::storeFrom(void *dst, const kernels::Storage &s,
                            const Dims4 &d, const void *src) {
  if (s.bf16)
    device::toStorage<Bf16>(d, s.lanes, static_cast<const float *>(src),
                            static_cast<Bf16 *>(dst), stream_);
  else
    device::relayout(d, 1, s.lanes, 4, src, dst, stream_);
  touched(dst, uint64_t(d.count() * s.elementBytes()));
}

void CudaBackend::synchronize() {
  // A KernelError, so that under profiling (a wait after each kernel) the
  // executor names the kernel that faulted.
  cudaError_t e = cudaStreamSynchronize(stream_);
  if (e != cudaSuccess)
    throw KernelError(fmt::format("CUDA synchronize: {} (a kernel enqueued "
                                  "before this wait failed; NETC_CUDA_SYNC=on "
                                  "names it)",
                                  cudaGetErrorString(e)));
}

bool CudaBackend::supports(const plan::Value &) const { return true; }

void CudaBackend::usePlan(const plan::Plan &plan) {
  tf32Plan_ = plan.precision == plan::Precision::TF32;
  allowTf32(tf32Allowed_ && tf32Plan_);
  std::string file = plan.dir.empty() ? "" : plan.dir + "/" + kAlgoFile;
  if (file != algoFile_) {
    algoFile_ = file;
    loadAlgorithms();
  }
}

exec::PreparedProgram
CudaBackend::prepareProgram(const plan::Program &program,
                            const std::vector<KernelCall> &calls,
                            const std::set<int64_t> &hostValues) {
  exec::PreparedProgram p;
  try {
    p = exec::Backend::prepareProgram(program, calls, hostValues);
  } catch (...) {
    saveAlgorithms(); // what was measured before the failure
    throw;
  }
  for (size_t i : fuseRelu_ ? exec::convReluPairs(program, calls, hostValues)
                            : std::vector<size_t>{}) {
    auto &conv = static_cast<State &>(*p.states[i]);
    auto &relu = static_cast<State &>(*p.states[i + 1]);
    if (!conv.relayouts.empty() || !relu.relayouts.empty())
      continue; // at the fc border: rare, and each side has its scratch
    conv.reluOut = calls[i + 1].out[0].data;
    relu.skip = true;
    p.elided.insert(program.kernels[i].out[0]);
  }
  for (size_t i : fusePoolReluGrad_
                      ? exec::unpoolReluGradPairs(program, calls, hostValues)
                      : std::vector<size_t>{}) {
    auto &unpool = static_cast<State &>(*p.states[i]);
    auto &grad = static_cast<State &>(*p.states[i + 1]);
    const KernelCall &u = calls[i], &r = calls[i + 1];
    if (u.attrs.normalize || !unpool.relayouts.empty() ||
        !grad.relayouts.empty())
      continue;
    kernels::PoolShape s;
    s.in = r.out[0].dims; // the relu's map, the pool's input
    s.out = u.in[0].dims; // the pooled gradient
    s.win = u.attrs.win;
    const exec::TensorRef &pooled = u.in[0];
    bool fusible = false;
    withType(r.out[0], [&](auto t) {
      using T = decltype(t);
      // The gather decodes the switches with the relu map's dims and reads
      // the pooled gradient and the switches as NHWC rows.
      fusible = tiledPool(s) && u.out[0].dims == s.in && r.in[1].dims == s.in &&
                s.out.n == s.in.n && s.out.c == s.in.c &&
                (s.out.h * s.out.w == 1 ||
                 (pooled.lanes() == s.out.c && u.in[1].lanes() == s.out.c)) &&
                rowsOfPacks<T>(
                    s.in, r.out[0].lanes(),
                    {pooled.data, u.in[1].data, r.in[1].data, r.out[0].data});
    });
    if (!fusible)
      continue;
    grad.poolGrad = true;
    grad.poolShape = s;
    grad.poolDy = pooled.data;
    grad.poolSwitches = u.in[1].switches();
    unpool.skip = true;
    p.elided.insert(program.kernels[i].out[0]);
  }
  if (fuseReluGradBias_)
    for (auto [i, j] : exec::reluGradBiasPairs(program, calls)) {
      auto &grad = static_cast<State &>(*p.states[i]);
      auto &bias = static_cast<State &>(*p.states[j]);
      const exec::TensorRef &y = calls[i].in[1], &dy = calls[i].in[0],
                            &dx = calls[i].out[0];
      if (isBf16(dx) && !fuseReluGradBiasBf16_)
        continue;
      bool fusible = false;
      withType(dx, [&](auto t) {
        using T = decltype(t);
        fusible =
            rowsOfPacks<T>(dx.dims, dx.lanes(), {y.data, dy.data, dx.data});
      });
      if (!fusible || !ownBiasGrad(dx) || !bias.scratch || grad.biasPartials ||
          !grad.relayouts.empty() || !bias.relayouts.empty())
        continue;
      grad.biasPartials = static_cast<double *>(bias.scratch->data());
      bias.partialsSummed = true;
      p.summedEarly.insert(j);
    }
  // The graph API's forward convolutions with their bias and relu (known
  // only now: convReluPairs) in the plan, where it has one that takes them.
  // Not on padded outputs: the plan would bias and clip the padding too.
  if (convApi_ == ConvApi::GraphFused)
    for (size_t i = 0; i < calls.size(); ++i) {
      if (!p.states[i])
        continue;
      auto &s = static_cast<State &>(*p.states[i]);
      const KernelCall &c = calls[i];
      // The engines that fuse want NHWC maps.
      if (s.graph && c.kernel.op == Op::Conv2D &&
          s.layout == plan::Layout::NHWC && !s.yPadData &&
          s.relayouts.empty() && (c.in.size() > 2 || s.reluOut))
        fuseGraphEpilogue(c, s);
    }
  for (const auto &state : p.states)
    if (auto *s = static_cast<const State *>(state.get()); s && s->isConv)
      arenaWorkspaces_ += inFreeArena(*s, s->convWorkspaceBytes());
  saveAlgorithms();
  fitWorkspace();
  return p;
}

//===----------------------------------------------------------------------===//
// The algorithm file
//===----------------------------------------------------------------------===//

std::string CudaBackend::algoOrigin() const {
  return fmt::format("{}; cuDNN {}", deviceName_, cudnnGetVersion());
}

/// Reads algoFile_ into algoCache_ (entries already chosen stay). A file
/// from another GPU or cuDNN, or one that cannot be read or parsed, is
/// ignored: the algorithms are measured again and the file rewritten.
void CudaBackend::loadAlgorithms() {
  if (algoFile_.empty())
    return;
  try {
    nlohmann::json j =
        nlohmann::json::parse(io::readFile(algoFile_, uint64_t(4) << 20));
    if (j.at("origin").get<std::string>() != algoOrigin()) {
      algoDirty_ = true;
      return;
    }
    // An entry not an integer in range (plan::asInt; a float's cast past
    // int's range would be undefined) makes the file a damaged one.
    auto integer = [](const nlohmann::json &e, int64_t lo, int64_t hi) {
      int64_t v;
      if (!plan::asInt(e, v) || v < lo || v > hi)
        throw std::runtime_error("not an integer in range");
      return v;
    };
    constexpr int64_t kIntMax = std::numeric_limits<int>::max();
    constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
    for (auto &[key, v] : j.at("algorithms").items()) {
      CachedAlgo a{int(integer(v.at(0), -kIntMax, kIntMax)),
                   uint64_t(integer(v.at(1), 0, kInt64Max)),
                   int(integer(v.at(2), -kIntMax, kIntMax))};
      if ((a.algo >= 0 || a.algo == kNoAlgo) && a.bytes <= kMaxWorkspace)
        algoCache_.emplace(key, a);
    }
    if (j.contains("graph"))
      for (auto &[key, v] : j.at("graph").items()) {
        CachedGraph g{v.at(0).get<std::string>(),
                      uint64_t(integer(v.at(1), 0, kInt64Max))};
        if (g.bytes <= kMaxWorkspace)
          graphCache_.emplace(key, g);
      }
  } catch (const std::exception &) {
    algoDirty_ = true; // absent or damaged: written anew
  }
}

/// Writes algoCache_ to algoFile_ (through a temporary and a rename, so a
/// reader never sees half a file). A trainer directory that cannot be
/// written only costs the next run its search.
void CudaBackend::saveAlgorithms() {
  if (algoFile_.empty() || !algoDirty_)
    return;
  nlohmann::json algos = nlohmann::json::object();
  for (const auto &[key, v] : algoCache_)
    algos[key] = {v.algo, v.bytes, v.math};
  nlohmann::json j = {{"origin", algoOrigin()}, {"algorithms", algos}};
  if (!graphCache_.empty()) {
    nlohmann::json graph = nlohmann::json::object();
    for (const auto &[key, v] : graphCache_)
      graph[key] = {v.identity, v.bytes};
    j["graph"] = graph;
  }
  // One temporary per process: the ranks of a data-parallel run on this
  // machine share the trainer directory, and two writing one temporary
  // could rename the other's half-written file.
  std::string tmp = fmt::format("{}.{}.tmp", algoFile_, ::getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << j.dump(1) << "\n";
    if (!out.good()) {
      std::remove(tmp.c_str());
      return;
    }
  }
  if (std::rename(tmp.c_str(), algoFile_.c_str()) != 0)
    std::remove(tmp.c_str());
  else
    algoDirty_ = false;
}

//===----------------------------------------------------------------------===//
// CUDA graphs
//===----------------------------------------------------------------------===//

CudaBackend::ProgramRun CudaBackend::beginProgram(const void *key, int64_t n,
                                                  const exec::StepContext &ctx,
                                                  bool capturable) {
  // From a ring of page-locked slots, so that the copy is truly
  // asynchronous (from pageable memory the driver would wait for the
  // stream first); a slot is rewritten only after its last copy is done.
  size_t slot = stepSlot_++ % kStepSlots;
  cudaCheck(cudaEventSynchronize(stepCopied_[slot]), "wait for a staging slot");
  auto *p = static_cast<StepParams *>(stepStaging_->data()) + slot;
  p->hyper = SgdHyper{ctx.lr, ctx.momentum, ctx.decay};
  p->step = ctx.step;
  cudaCheck(cudaMemcpyAsync(stepParams_->data(), p, sizeof *p,
                            cudaMemcpyHostToDevice, stream_),
            "upload the step's hyper-parameters");
  cudaCheck(cudaEventRecord(stepCopied_[slot], stream_), "record an event");
  // Several ranks run eagerly: NCCL requires every rank to capture (or not)
  // each all-reduce alike and to replay graphs from one collective capture,
  // and a capture that fails on one rank alone (or a recapture after one
  // rank's workspace grew) would break that. Agreeing on each decision
  // across the ranks would lift this; until multi-GPU runs can be measured,
  // data-parallel steps are launched kernel by kernel.
  if (ctx.comm && ctx.comm->size() > 1)
    severalRanks_ = true;
  if (!graphs_ || syncEach_ || severalRanks_)
    return ProgramRun::Eager;
  if (!capturable) {
    ++uncapturable_; // said in runReport: why a run may show no replays
    return ProgramRun::Eager;
  }
  Recording &r = recordings_[key];
  if (r.off)
    return ProgramRun::Eager;
  if (r.exec && r.n == n && r.training == ctx.training &&
      r.firstSample == ctx.firstSample && r.comm == ctx.comm &&
      r.generation == generation_) {
    cudaCheck(cudaGraphLaunch(r.exec, stream_), "launch a step's graph");
    ++replays_;
    return ProgramRun::Replay;
  }
  if (r.exec) {
    cudaGraphExecDestroy(r.exec);
    r.exec = nullptr;
    r.eagerRuns = 0;
  }
  if (++r.eagerRuns < 2)
    return ProgramRun::Eager;
  r.n = n;
  r.training = ctx.training;
  r.firstSample = ctx.firstSample;
  r.comm = ctx.comm;
  r.generation = generation_;
  // Thread-local: the prefetch thread's page-locked allocations and
  // copies are not this capture's business.
  cudaCheck(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal),
            "begin capturing a step");
  return ProgramRun::Capture;
}

bool CudaBackend::endCapture(const void *key, const std::string &error) {
  Recording &r = recordings_[key];
  cudaGraph_t graph = nullptr;
  cudaError_t e = cudaStreamEndCapture(stream_, &graph);
  cudaGraphExec_t exec = nullptr;
  if (error.empty() && e == cudaSuccess)
    e = cudaGraphInstantiate(&exec, graph, 0);
  if (graph)
    cudaGraphDestroy(graph);
  if (!error.empty() || e != cudaSuccess) {
    (void)cudaGetLastError();
    r.off = true; // the executor runs it again, eagerly
    // Kept for runReport, so that a run without graphs is never mistaken
    // for one with them (and a library call that cannot be captured is
    // named).
    if (captureFailure_.empty())
      captureFailure_ = !error.empty() ? error : cudaGetErrorString(e);
    return false;
  }
  r.exec = exec;
  cudaCheck(cudaGraphLaunch(r.exec, stream_), "launch a step's graph");
  return true;
}

std::string CudaBackend::runReport() const {
  std::string r;
  if (!graphs_ || syncEach_)
    r = fmt::format("CUDA graphs off ({}): kernel by kernel",
                    syncEach_ ? "NETC_CUDA_SYNC=on" : "NETC_CUDA_GRAPHS=off");
  else if (severalRanks_)
    r = "CUDA graphs off with several ranks: kernel by kernel";
  else
    r = fmt::format("CUDA graphs: {} replayed steps{}", replays_,
                    uncapturable_
                        ? fmt::format(", {} runs kernel by kernel (a batch "
                                      "below their program's, or profiled)",
                                      uncapturable_)
                        : std::string());
  if (!captureFailure_.empty())
    r += fmt::format("; a capture failed ({}), so its program ran kernel by "
                     "kernel",
                     captureFailure_);
  r += fmt::format("; {} convolution workspaces in the arena's free bytes, "
                   "the shared workspace {}",
                   arenaWorkspaces_, io::formatBytes(workspaceBytes()));
  if (graphConvs_ + graphMisses_ > 0) {
    r += fmt::format("; cuDNN graph API: {} convolutions prepared on it ({} "
                     "with their bias or relu in the plan), {} on the legacy "
                     "calls (and any at a batch other than the planned one)",
                     graphConvs_, graphEpilogues_, graphMisses_);
    if (!graphMissWhy_.empty())
      r += fmt::format("; the first without a plan: {}", graphMissWhy_);
    if (convApi_ == ConvApi::GraphFused && !graphEpilogueWhy_.empty())
      r += fmt::format("; the first without a fused plan: {}",
                       graphEpilogueWhy_);
  }
  return r;
}

void CudaBackend::forgetProgram(const void *key) {
  auto it = recordings_.find(key);
  if (it == recordings_.end())
    return;
  // No synchronize: an executable graph destroyed while a launch of it
  // runs is freed when that completes (cuGraphExecDestroy), and this runs
  // in ~ExecutorT, where a sticky error from a failed step would throw and
  // terminate instead of reporting the step's error.
  if (it->second.exec)
    cudaGraphExecDestroy(it->second.exec);
  recordings_.erase(it);
}

//===----------------------------------------------------------------------===//
// Weight copies (bf16, or f32 in KRSC)
//===----------------------------------------------------------------------===//

CudaBackend::WeightCopy &CudaBackend::weightCopy(const float *w,
                                                 const Dims4 &dims,
                                                 int64_t lanes, bool bf16) {
  auto key = std::make_pair(w, lanes);
  auto it = copies_.find(key);
  if (it != copies_.end()) {
    if (it->second.dims.count() != dims.count())
      throw KernelError(fmt::format("a weight read as {} and as {} elements",
                                    it->second.dims.count(), dims.count()));
    if (it->second.bf16 != bf16)
      throw KernelError("a weight read through a bf16 and an f32 copy");
    return it->second;
  }
  WeightCopy c;
  c.data =
      allocate(uint64_t(dims.count()) * (bf16 ? sizeof(Bf16) : 4),
               bf16 ? "a bf16 copy of a weight" : "a KRSC copy of a weight");
  c.bf16 = bf16;
  c.w = w;
  c.dims = dims;
  c.lanes = lanes;
  // The first copy of a weight is the one its SGD updates write.
  c.bySgd = std::none_of(copies_.begin(), copies_.end(),
                         [&](const auto &e) { return e.second.w == w; });
  WeightCopy &made = copies_.emplace(key, std::move(c)).first->second;
  refresh(made);
  if (made.bySgd) {
    auto [first, last] = sgdStates_.equal_range(w);
    for (auto i = first; i != last; ++i)
      linkSgd(*i->second);
  }
  return made;
}

void CudaBackend::dropCopiesBut(
    const std::set<std::pair<const float *, int64_t>> &keep) {
  for (auto it = copies_.begin(); it != copies_.end();) {
    if (keep.count(it->first)) {
      ++it;
      continue;
    }
    const float *w = it->second.w;
    bool bySgd = it->second.bySgd;
    {
      auto node = copies_.extract(it++); // its buffer's deleter comes back
    }
    if (!bySgd)
      continue;
    // The weight's SGD updates wrote this copy: another copy of the weight
    // (none, here: it was the first) takes its place, or none is written.
    auto [first, last] = sgdStates_.equal_range(w);
    for (auto i = first; i != last; ++i) {
      i->second->sgd.copy = nullptr;
      i->second->sgd.copyF32 = nullptr;
      linkSgd(*i->second);
    }
  }
}

void CudaBackend::refresh(const WeightCopy &c) {
  if (c.bf16)
    device::toStorage<Bf16>(c.dims, c.lanes, c.w,
                            static_cast<Bf16 *>(c.data->data()), stream_);
  else
    device::toStorage<float>(c.dims, c.lanes, c.w,
                             static_cast<float *>(c.data->data()), stream_);
}

void CudaBackend::touched(const void *dst, uint64_t bytes) {
  auto *begin = static_cast<const char *>(dst);
  for (auto &[key, c] : copies_) {
    auto *w = reinterpret_cast<const char *>(c.w);
    if (w < begin + bytes && begin < w + c.dims.count() * sizeof(float))
      refresh(c);
  }
}

void CudaBackend::forget(const void *p, uint64_t bytes) {
  auto *begin = static_cast<const char *>(p);
  for (auto it = copies_.begin(); it != copies_.end();) {
    auto *w = reinterpret_cast<const char *>(it->second.w);
    auto next = std::next(it);
    if (w >= begin && w < begin + bytes)
      copies_.extract(it); // its buffer's deleter comes back here
    it = next;
  }
}

void CudaBackend::linkSgd(State &s) {
  if (!s.owner) {
    s.owner = this;
    sgdStates_.emplace(s.sgd.w, &s);
  }
  for (auto &[key, c] : copies_)
    if (c.w == s.sgd.w && c.bySgd) {
      s.sgd.copy = c.bf16 ? static_cast<Bf16 *>(c.data->data()) : nullptr;
      s.sgd.copyF32 = c.bf16 ? nullptr : static_cast<float *>(c.data->data());
      s.sgd.copyPlane = FastDiv(c.dims.plane());
      s.sgd.copyLanes = FastDiv(c.lanes);
    }
  upload(s.table->data(), &s.sgd, sizeof s.sgd);
  synchronize(); // s.sgd may change before the copy is made
}

void CudaBackend::unlinkSgd(State &s) {
  auto [first, last] = sgdStates_.equal_range(s.sgd.w);
  for (auto i = first; i != last; ++i)
    if (i->second == &s) {
      sgdStates_.erase(i);
      break;
    }
  s.owner = nullptr;
}

uint64_t CudaBackend::workspaceBytes() const {
  return workspace_ ? workspace_->bytes() : 0;
}

void *CudaBackend::workspace() const {
  return workspace_ ? workspace_->data() : nullptr;
}

void CudaBackend::reserveWorkspace(uint64_t bytes) {
  if (bytes <= workspaceBytes())
    return;
  // Earlier steps may still read the old buffer, and recorded ones point
  // to it.
  synchronize();
  ++generation_; // first: a failed allocation leaves no recording valid
  workspace_.reset();
  workspace_ = allocate(bytes, "the convolution workspace");
}

void CudaBackend::fitWorkspace() {
  if (workspaceBytes() <= workspaceNeed_)
    return;
  synchronize(); // nothing may still read the old buffer
  ++generation_; // recordings point to the old one
  workspace_.reset();
  if (workspaceNeed_ > 0)
    workspace_ = allocate(workspaceNeed_, "the convolution workspace");
}

bool CudaBackend::inFreeArena(const State &s, uint64_t bytes) const {
  return bytes > 0 && bytes <= s.wsArenaBytes;
}

void *CudaBackend::convWorkspace(const State &s, uint64_t bytes) const {
  if (inFreeArena(s, bytes))
    return s.wsArena;
  return bytes <= workspaceBytes() ? workspace() : nullptr;
}

void CudaBackend::needWorkspace(const State &s, uint64_t bytes) {
  workspaceChosen_ = std::max(workspaceChosen_, bytes);
  if (!inFreeArena(s, bytes))
    workspaceNeed_ = std::max(workspaceNeed_, bytes);
}

//===----------------------------------------------------------------------===//
// Convolution algorithms
//===----------------------------------------------------------------------===//

namespace {

template <typename Perf>
std::vector<Candidate> candidates(const Perf *perf, int count) {
  std::vector<Candidate> c;
  for (int i = 0; i < count; ++i)
    c.push_back({int(perf[i].algo), perf[i].status, perf[i].time,
                 perf[i].memory, perf[i].determinism, perf[i].mathType});
  return c;
}

} // namespace

/// The math type a candidate runs with: the one cuDNN reported with it,
/// except that a plan without tensor cores (fp32) runs FMA-only (default
/// math would allow TF32 on Ampere and later).
static cudnnMathType_t runMath(cudnnMathType_t reported, bool tensorOps) {
  return !tensorOps && reported == CUDNN_DEFAULT_MATH ? CUDNN_FMA_MATH
                                                      : reported;
}

/// Sets `math` on `conv` and asks for the workspace algorithm `algo` really
/// needs with it (the heuristics' `memory` is an estimate for some
/// algorithms); false if cuDNN cannot say.
static bool workspaceFor(cudnnHandle_t h, ConvKind kind,
                         cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w,
                         cudnnConvolutionDescriptor_t conv,
                         cudnnTensorDescriptor_t y, int algo,
                         cudnnMathType_t math, size_t &bytes) {
  cudnnStatus_t s = cudnnSetConvolutionMathType(conv, math);
  if (s != CUDNN_STATUS_SUCCESS)
    return false;
  switch (kind) {
  case ConvKind::Forward:
    s = cudnnGetConvolutionForwardWorkspaceSize(
        h, x, w, conv, y, cudnnConvolutionFwdAlgo_t(algo), &bytes);
    break;
  case ConvKind::BackwardData:
    s = cudnnGetConvolutionBackwardDataWorkspaceSize(
        h, w, y, conv, x, cudnnConvolutionBwdDataAlgo_t(algo), &bytes);
    break;
  case ConvKind::BackwardFilter:
    s = cudnnGetConvolutionBackwardFilterWorkspaceSize(
        h, x, y, conv, w, cudnnConvolutionBwdFilterAlgo_t(algo), &bytes);
    break;
  }
  return s == CUDNN_STATUS_SUCCESS;
}

/// The device's free bytes, or `ifUnknown` where CUDA cannot say.
static uint64_t freeDeviceBytes(uint64_t ifUnknown) {
  size_t free = 0, total = 0;
  if (cudaMemGetInfo(&free, &total) != cudaSuccess) {
    (void)cudaGetLastError(); // not sticky; clear it
    return ifUnknown;
  }
  return free;
}

/// The workspace cuDNN's heuristics may choose an algorithm within, given
/// the device's `free` bytes: kMaxWorkspace or a quarter of what is free,
/// and never less than the workspace there already is.
static uint64_t heuristicsBound(uint64_t free, uint64_t workspace) {
  return std::max(std::min(kMaxWorkspace, free / 4), workspace);
}

/// The most workspace any algorithm of the kernel's direction needs with
/// any math type (0 if none says): what cudnnFind* may use, so that the
/// search measures the same candidates as with an unbounded workspace.
static uint64_t candidatesWorkspace(cudnnHandle_t h, ConvKind kind,
                                    cudnnTensorDescriptor_t x,
                                    cudnnFilterDescriptor_t w,
                                    cudnnConvolutionDescriptor_t conv,
                                    cudnnTensorDescriptor_t y) {
  int count = int(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT);
  if (kind == ConvKind::Forward)
    count = int(CUDNN_CONVOLUTION_FWD_ALGO_COUNT);
  else if (kind == ConvKind::BackwardData)
    count = int(CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT);
  uint64_t most = 0;
  for (cudnnMathType_t math :
       {CUDNN_DEFAULT_MATH, CUDNN_TENSOR_OP_MATH,
        CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION, CUDNN_FMA_MATH})
    for (int algo = 0; algo < count; ++algo) {
      size_t bytes = 0;
      if (workspaceFor(h, kind, x, w, conv, y, algo, math, bytes))
        most = std::max<uint64_t>(most, bytes);
    }
  return most;
}

/// cuDNN's measurement of every algorithm for the kernel's direction
/// (cudnnFind*Ex on the kernel's own buffers, before any step has written
/// them, with `ws` as workspace): the fastest that works and uses no tensor
/// cores unless `tensorOps` (tf32, bf16); a deterministic one instead if it
/// is within 10% of it; and the best within kPreferredWorkspace instead of
/// one that needs more, unless that is 10% faster. Like PyTorch's
/// cudnn.benchmark, once per shape.
static AlgoChoice findAlgo(cudnnHandle_t h, ConvKind kind,
                           cudnnTensorDescriptor_t x, void *xp,
                           cudnnFilterDescriptor_t w, void *wp,
                           cudnnConvolutionDescriptor_t conv,
                           cudnnTensorDescriptor_t y, void *yp, void *ws,
                           size_t wsBytes, bool tensorOps) {
  std::vector<Candidate> list;
  int returned = 0;
  switch (kind) {
  case ConvKind::Forward: {
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    dnnCheck(cudnnFindConvolutionForwardAlgorithmEx(
                 h, x, xp, w, wp, conv, y, yp, CUDNN_CONVOLUTION_FWD_ALGO_COUNT,
                 &returned, perf, ws, wsBytes),
             "forward algorithm search");
    list = candidates(perf, returned);
    break;
  }
  case ConvKind::BackwardData: {
    cudnnConvolutionBwdDataAlgoPerf_t
        perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    dnnCheck(cudnnFindConvolutionBackwardDataAlgorithmEx(
                 h, w, wp, y, yp, conv, x, xp,
                 CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &returned, perf, ws,
                 wsBytes),
             "backward-data algorithm search");
    list = candidates(perf, returned);
    break;
  }
  case ConvKind::BackwardFilter: {
    cudnnConvolutionBwdFilterAlgoPerf_t
        perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    dnnCheck(cudnnFindConvolutionBackwardFilterAlgorithmEx(
                 h, x, xp, y, yp, conv, w, wp,
                 CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &returned, perf, ws,
                 wsBytes),
             "backward-filter algorithm search");
    list = candidates(perf, returned);
    break;
  }
  }
  // The choice among the candidates within `limit` bytes, its time
  // (negative: none) and whether it is deterministic.
  auto pick = [&](uint64_t limit, float &time, bool &isDeterministic) {
    const Candidate *fastest = nullptr, *deterministic = nullptr;
    AlgoChoice fastestChoice, deterministicChoice;
    for (const Candidate &c : list) { // fastest first
      size_t bytes = 0;
      cudnnMathType_t math = runMath(c.mathType, tensorOps);
      if (c.status != CUDNN_STATUS_SUCCESS || c.time < 0 ||
          (!tensorOps && math != CUDNN_FMA_MATH) ||
          !workspaceFor(h, kind, x, w, conv, y, c.algo, math, bytes) ||
          bytes > limit)
        continue;
      if (!fastest) {
        fastest = &c;
        fastestChoice = {c.algo, bytes, math};
      }
      if (!deterministic && c.determinism == CUDNN_DETERMINISTIC) {
        deterministic = &c;
        deterministicChoice = {c.algo, bytes, math};
      }
    }
    time = -1.0f;
    isDeterministic = false;
    if (deterministic && deterministic->time <= 1.1f * fastest->time) {
      time = deterministic->time;
      isDeterministic = true;
      return deterministicChoice;
    }
    if (fastest) {
      time = fastest->time;
      isDeterministic = fastest->determinism == CUDNN_DETERMINISTIC;
    }
    return fastestChoice;
  };
  float time = -1.0f, withinTime = -1.0f;
  bool deterministic = false, withinDeterministic = false;
  AlgoChoice best = pick(wsBytes, time, deterministic);
  if (time >= 0.0f && best.bytes > kPreferredWorkspace) {
    // Not at the price of determinism.
    AlgoChoice within =
        pick(kPreferredWorkspace, withinTime, withinDeterministic);
    if (withinTime >= 0.0f && withinTime <= 1.1f * time &&
        (withinDeterministic || !deterministic))
      return within;
  }
  if (time >= 0.0f)
    return best;
  throw KernelError(fmt::format("cuDNN's search found no algorithm for this "
                                "convolution within {} of workspace",
                                io::formatBytes(wsBytes)));
}

/// cuDNN's ranked heuristics for the kernel's direction, best first; the
/// first that works, fits `limit`, is deterministic (the backward
/// directions have atomics-based algorithms: results that change from run
/// to run) and uses no tensor cores unless `tensorOps`. Determinism and the
/// math restriction are dropped only if nothing else is left.
static AlgoChoice
chooseAlgo(cudnnHandle_t h, ConvKind kind, cudnnTensorDescriptor_t x,
           cudnnFilterDescriptor_t w, cudnnConvolutionDescriptor_t conv,
           cudnnTensorDescriptor_t y, uint64_t limit, bool tensorOps) {
  std::vector<Candidate> list;
  int returned = 0;
  switch (kind) {
  case ConvKind::Forward: {
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    dnnCheck(cudnnGetConvolutionForwardAlgorithm_v7(
                 h, x, w, conv, y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned,
                 perf),
             "forward algorithm heuristics");
    list = candidates(perf, returned);
    break;
  }
  case ConvKind::BackwardData: {
    cudnnConvolutionBwdDataAlgoPerf_t
        perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    dnnCheck(cudnnGetConvolutionBackwardDataAlgorithm_v7(
                 h, w, y, conv, x, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT,
                 &returned, perf),
             "backward-data algorithm heuristics");
    list = candidates(perf, returned);
    break;
  }
  case ConvKind::BackwardFilter: {
    cudnnConvolutionBwdFilterAlgoPerf_t
        perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    dnnCheck(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
                 h, x, y, conv, w, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT,
                 &returned, perf),
             "backward-filter algorithm heuristics");
    list = candidates(perf, returned);
    break;
  }
  }
  for (int pass = 0; pass < 3; ++pass)
    for (const Candidate &c : list) {
      cudnnMathType_t math = runMath(c.mathType, tensorOps);
      if (c.status != CUDNN_STATUS_SUCCESS)
        continue;
      if (pass < 1 && c.determinism != CUDNN_DETERMINISTIC)
        continue;
      if (pass < 2 && !tensorOps && math != CUDNN_FMA_MATH)
        continue;
      size_t bytes = 0;
      if (!workspaceFor(h, kind, x, w, conv, y, c.algo, math, bytes) ||
          bytes > limit)
        continue;
      return {c.algo, bytes, math};
    }
  throw KernelError(fmt::format("cuDNN offers no algorithm for this "
                                "convolution within {} of workspace ({} "
                                "candidates)",
                                io::formatBytes(limit), list.size()));
}

//===----------------------------------------------------------------------===//
// prepare: descriptors, algorithms, workspace, device tables
//===----------------------------------------------------------------------===//

CudaBackend::State &CudaBackend::state(const KernelCall &c) const {
  if (!c.state)
    throw KernelError("the cuda backend runs only prepared kernels");
  return static_cast<State &>(*c.state);
}

/// The graph API's plan for convolution `s` (its legacy descriptors set)
/// at batch c.n, with the bias and the relu after it (s.reluOut) in the
/// plan where `epilogue`: the algorithm file's, if it is still offered,
/// else the fastest of the heuristics' candidates timed on the kernel's
/// buffers; its workspace reserved. Null where the graph API has none
/// (remembered in the file where that holds whatever the free memory).
/// `key`, if given, gets the problem's key.
std::unique_ptr<GraphConv> CudaBackend::graphPlan(const KernelCall &c,
                                                  const State &s, bool epilogue,
                                                  std::string *keyOut) {
  exec::ConvOperands o = exec::convOperands(c.kernel.op, c.attrs, c.in, c.out);
  const bool deconv = isTransposedConv(c.kernel.op);
  GraphConvProblem p;
  p.kind = s.kind;
  p.bf16 = s.bf16;
  p.nhwc = s.layout == plan::Layout::NHWC;
  p.tensorOps = s.tensorOps;
  p.x = paddedDims(deconv ? o.shape.out : o.shape.in, s.padC);
  p.y = paddedDims(deconv ? o.shape.in : o.shape.out, s.padK);
  p.w = Dims4{p.y.c, p.x.c, o.w->dims.h, o.w->dims.w};
  const kernels::Window2D &win = o.shape.win;
  p.padH = win.ph;
  p.padW = win.pw;
  p.strideH = win.sh;
  p.strideW = win.sw;
  p.bias = epilogue && c.in.size() > 2;
  p.relu = epilogue && s.reluOut;
  const GraphConvOperands operands = graphOperands(c, s);
  const std::string key = p.key();
  if (keyOut)
    *keyOut = key;
  // No plan: the first reason of each kind is kept for the run report.
  auto miss = [&](const std::string &why) {
    std::string &first = epilogue ? graphEpilogueWhy_ : graphMissWhy_;
    if (first.empty())
      first = fmt::format("{}: {}", key, why);
    return nullptr;
  };
  auto cached = graphCache_.find(key);
  const bool remembered = cached != graphCache_.end();
  if (remembered && cached->second.identity.empty())
    return miss("none, as an earlier run found (the algorithm file)");
  const uint64_t bound = s.bf16 ? kSearchWorkspace : kSearchWorkspaceF32;
  GraphConvSearch search;
  search.handle = cudnn_;
  search.stream = stream_;
  search.workspaceLimit = std::min(
      bound, std::max(freeDeviceBytes(4 * bound) / 8, workspaceBytes()));
  search.preferredWorkspace = kPreferredWorkspace;
  search.workspace = [this, &s](uint64_t bytes) {
    if (inFreeArena(s, bytes))
      return s.wsArena;
    reserveWorkspace(bytes);
    return workspace();
  };
  search.time = search_;
  if (remembered)
    search.cached = cached->second.identity;
  std::string why;
  bool lasting = false;
  std::unique_ptr<GraphConv> plan =
      GraphConv::make(p, operands, search, why, lasting);
  if (!plan && remembered) { // the file's plan is gone: choose anew
    search.cached.clear();
    plan = GraphConv::make(p, operands, search, why, lasting);
  }
  if (!plan) {
    if (lasting) {
      graphCache_[key] = {};
      algoDirty_ = true;
    }
    return miss(why);
  }
  // Room to run it (unless the arena has it free around the kernel); what
  // the shared workspace keeps (workspaceNeed_) is the caller's to raise
  // once it takes the plan.
  if (!inFreeArena(s, plan->workspaceBytes()))
    reserveWorkspace(plan->workspaceBytes());
  if (!remembered || cached->second.identity != plan->identity()) {
    graphCache_[key] = {plan->identity(), plan->workspaceBytes()};
    algoDirty_ = true;
  }
  return plan;
}

/// The buffers a graph plan of convolution `s` runs on: the conv view's
/// maps (their padded copies where padded), the filter, the bias.
GraphConvOperands CudaBackend::graphOperands(const KernelCall &c,
                                             const State &s) {
  void *x, *w, *y;
  convPointers(c, s, x, w, y);
  const bool bias = hasBias(c);
  return {s.xPadData ? s.xPadData : x, w, s.yPadData ? s.yPadData : y,
          bias ? static_cast<const float *>(c.in[2].f32()) : nullptr};
}

/// Takes the graph API's plan with the bias and relu inside for forward
/// conv2d `s` (prepared with a plain plan, on NHWC maps, its output not
/// padded) where it is no slower than the plain plan and the own epilogue
/// kernel after it, both timed here (a plan the file remembers was chosen
/// so before; with the search off, NETC_CUDNN_ALGO=heuristic, the fused
/// plan is taken untimed). A slower one is remembered as none.
void CudaBackend::fuseGraphEpilogue(const KernelCall &c, State &s) {
  std::string key;
  std::unique_ptr<GraphConv> fused = graphPlan(c, s, /*epilogue=*/true, &key);
  if (!fused)
    return;
  if (fused->ms() >= 0.0f) {
    const GraphConvOperands o = graphOperands(c, s);
    const float plain = s.graph->measure(
        cudnn_, stream_, o, convWorkspace(s, s.graph->workspaceBytes()));
    // The output is not padded here: o.y is the map the epilogue writes.
    const float epilogue = timeRuns(
        stream_,
        [&] {
          runOwnEpilogue(c, s, o.y);
          return true;
        },
        3);
    if (plain >= 0.0f && epilogue >= 0.0f && fused->ms() > plain + epilogue) {
      graphCache_[key] = {};
      algoDirty_ = true;
      if (graphEpilogueWhy_.empty())
        graphEpilogueWhy_ = fmt::format(
            "{}: slower ({:.3f} ms) than the plain plan and the own "
            "epilogue ({:.3f} + {:.3f} ms)",
            key, fused->ms(), plain, epilogue);
      return;
    }
  }
  needWorkspace(s, fused->workspaceBytes());
  s.graph = std::move(fused);
  s.graphEpilogue = true;
  ++graphEpilogues_;
}

/// Sets every batch-dependent descriptor of `s` for c.n and, for a
/// convolution, the algorithm for that batch.
void CudaBackend::describeForBatch(const KernelCall &c, State &s) {
  const Op op = c.kernel.op;
  if (isConvFamily(op)) {
    exec::ConvOperands o = exec::convOperands(op, c.attrs, c.in, c.out);
    bool deconv = isTransposedConv(op);
    const Dims4 &in = deconv ? o.shape.out : o.shape.in;
    const Dims4 &out = deconv ? o.shape.in : o.shape.out;
    const exec::TensorRef &xv = deconv ? *o.y : *o.x;
    const exec::TensorRef &yv = deconv ? *o.x : *o.y;
    const plan::Layout layout = convLayout(xv, yv);
    setTensor(s.x, paddedDims(in, s.padC), xv.dtype, layout);
    setTensor(s.y, paddedDims(out, s.padK), xv.dtype, layout);
    if (s.graph && c.n == s.graphN) { // its plan is for this batch
      s.n = c.n;
      return;
    }
    auto it = s.algos.find(c.n);
    if (it == s.algos.end()) {
      // A batch other than the planned one (the last of an epoch): an
      // algorithm within the most workspace prepare()'s choices need (in
      // the arena or not: the same bound as with every workspace shared),
      // or, if none fits, one within the heuristics' bound; the shared
      // workspace grown to it unless the arena's free bytes hold it (such
      // a batch runs eagerly: no recording holds the old buffer while it
      // runs, and reserveWorkspace() retires the others).
      s.searchMath();
      AlgoChoice a;
      try {
        a = chooseAlgo(cudnn_, s.kind, s.x.get(), s.w.get(), s.conv.get(),
                       s.y.get(), std::max(workspaceBytes(), workspaceChosen_),
                       s.tensorOps);
      } catch (const KernelError &) {
        s.searchMath(); // the failed choice left another
        a = chooseAlgo(cudnn_, s.kind, s.x.get(), s.w.get(), s.conv.get(),
                       s.y.get(),
                       heuristicsBound(freeDeviceBytes(4 * kMaxWorkspace),
                                       workspaceBytes()),
                       s.tensorOps);
      }
      // Growing the shared workspace would raise the peak the planned
      // batch set, whose largest workspaces sit in the arena, for the rest
      // of the run (only prepare() shrinks it): rather the first algorithm
      // within the bytes already there, this kernel's span of the arena or
      // the shared workspace, where cuDNN offers one. This can only happen
      // where a workspace in the arena is larger than the shared one (or
      // after the fallback above, where the second search finds nothing
      // either), so with every workspace shared the choice is as before.
      if (a.bytes > workspaceBytes() && !inFreeArena(s, a.bytes)) {
        s.searchMath();
        try {
          a = chooseAlgo(cudnn_, s.kind, s.x.get(), s.w.get(), s.conv.get(),
                         s.y.get(), std::max(workspaceBytes(), s.wsArenaBytes),
                         s.tensorOps);
        } catch (const KernelError &) {
          // None: the first choice, and the shared workspace grown to it.
        }
      }
      if (!inFreeArena(s, a.bytes))
        reserveWorkspace(a.bytes);
      needWorkspace(s, a.bytes);
      it = s.algos.emplace(c.n, a).first;
    }
    s.useAlgo(it->second);
  } else {
    switch (op) {
    case Op::FC:
      setTensor(s.y, Dims4{c.n, c.out[0].count / c.n, 1, 1});
      break;
    case Op::BiasGrad:
      setTensor(s.y, c.in[0]);
      break;
    case Op::LRN:
    case Op::LRNGrad:
    case Op::BatchNorm:
    case Op::BatchNormGrad:
      if (!s.ownKernel) // the own kernels take no descriptor
        setTensor(s.x, c.in[0]);
      break;
    default:
      break;
    }
  }
  s.n = c.n;
}

//===----------------------------------------------------------------------===//
// Operands in another layout than the kernel's
//===----------------------------------------------------------------------===//

namespace {

/// Whether `v` is a map of the batch whose layout matters: more than one
/// pixel (a [N, C, 1, 1] map is the same bytes in NCHW and NHWC), and with
/// the batch dimension. Parameters and their gradients keep their own
/// [K, C, kh, kw] order whatever the maps' layout (a convolution reads its
/// weight through a KRSC copy and turns its weight gradient into the
/// weight's order itself). Relaying one out would hand prepareKernel a
/// scratch buffer as "the weight" (a copy of the zeroed scratch that no SGD
/// update ever refreshes) and permute a weight gradient that runConv
/// already wrote in the weight's order.
bool laidOut(const exec::TensorRef &v) {
  return v.dims.plane() > 1 && v.batched;
}

} // namespace

/// net-precision stores the maps that a flatten or reshape views in NCHW
/// and every other map of a bf16 or tf32 plan in NHWC, so the op that produces
/// a viewed map (the last max-pool before the fc layers, a dropout) has
/// operands in both layouts. Such a kernel runs in the layout of its first
/// laid-out input (or in `layout` when given): every operand in the other
/// layout gets a scratch buffer in the kernel's layout, inputs copied into it
/// before the kernel and outputs copied out of it after. These are the few maps
/// at the border of the fc layers.
std::vector<CudaBackend::Relayout>
CudaBackend::relayoutsOf(const KernelCall &c,
                         std::optional<plan::Layout> layout) {
  std::vector<Relayout> r;
  if (!layout)
    for (const exec::TensorRef &v : c.in)
      if (laidOut(v)) {
        layout = v.layout;
        break;
      }
  if (!layout)
    return r;
  auto add = [&](const std::vector<exec::TensorRef> &list, bool out) {
    for (size_t i = 0; i < list.size(); ++i)
      if (laidOut(list[i]) && list[i].layout != *layout)
        r.push_back(
            {out, i, *layout,
             allocate(uint64_t(list[i].count * plan::dtypeSize(list[i].dtype)),
                      "an operand in the kernel's layout")});
  };
  add(c.in, false);
  add(c.out, true);
  return r;
}

/// `c` with the operands of `r` in their scratch buffers.
static KernelCall relayouted(const KernelCall &c,
                             const std::vector<CudaBackend::Relayout> &r) {
  KernelCall k = c;
  for (const CudaBackend::Relayout &x : r) {
    exec::TensorRef &v = x.out ? k.out[x.index] : k.in[x.index];
    v.data = x.scratch->data();
    v.layout = x.layout;
  }
  return k;
}

/// Copies `from` into `to` (the same value in the other layout).
void CudaBackend::relayout(const exec::TensorRef &from,
                           const exec::TensorRef &to) {
  device::relayout(from.dims, from.lanes(), to.lanes(),
                   plan::dtypeSize(from.dtype), from.data, to.data, stream_);
}

std::unique_ptr<exec::KernelState> CudaBackend::prepare(const KernelCall &c) {
  auto prepareIn = [&](std::vector<Relayout> r) {
    std::unique_ptr<State> s = prepareKernel(r.empty() ? c : relayouted(c, r));
    s->relayouts = std::move(r);
    // Counted here, once per prepared kernel (a convolution that fails on
    // NHWC maps is prepared again on NCHW copies).
    graphMisses_ += s->graphTried && !s->graph;
    return s;
  };
  std::vector<Relayout> r = relayoutsOf(c);
  auto nhwc = [](const exec::TensorRef &v) {
    return laidOut(v) && v.layout == plan::Layout::NHWC;
  };
  const bool nhwcConv = isConvFamily(c.kernel.op) &&
                        (std::any_of(c.in.begin(), c.in.end(), nhwc) ||
                         std::any_of(c.out.begin(), c.out.end(), nhwc));
  if (!nhwcConv)
    return prepareIn(std::move(r));
  if (nchwConvs_) // NETC_CUDA_CONV_NCHW=on: the fallback, always
    return prepareIn(relayoutsOf(c, plan::Layout::NCHW));
  std::set<std::pair<const float *, int64_t>> copiesBefore;
  for (const auto &[key, copy] : copies_)
    copiesBefore.insert(key);
  try {
    return prepareIn(std::move(r));
  } catch (const KernelError &nhwc) {
    // cuDNN may lack NHWC engines for a convolution of an odd shape
    // (few channels, or few per group): then the convolution runs on NCHW
    // copies of its maps, and only if that fails too is it an error. The
    // KRSC weight copy the failed attempt made goes: no kernel reads it.
    dropCopiesBut(copiesBefore);
    try {
      return prepareIn(relayoutsOf(c, plan::Layout::NCHW));
    } catch (const KernelError &nchw) {
      throw KernelError(fmt::format("{} (and on NCHW copies of its maps: {})",
                                    nhwc.what(), nchw.what()));
    }
  }
}

std::unique_ptr<CudaBackend::State>
CudaBackend::prepareKernel(const KernelCall &c) {
  auto s = std::make_unique<State>();
  if (arenaWorkspace_) {
    s->wsArena = c.freeArena;
    s->wsArenaBytes = c.freeArenaBytes;
  }
  const exec::KernelAttrs &a = c.attrs;
  const Op op = c.kernel.op;
  if (isConvFamily(op)) {
    exec::ConvOperands o = exec::convOperands(op, a, c.in, c.out);
    bool deconv = isTransposedConv(op);
    const Dims4 &in = deconv ? o.shape.out : o.shape.in;
    const Dims4 &out = deconv ? o.shape.in : o.shape.out;
    s->kind = convKind(op);
    s->isConv = true;
    int64_t groups = o.shape.groups;
    // The conv view's input and output (a transposed convolution's are its
    // output and input): both in one dtype and one layout (bf16 NHWC, or
    // f32 NHWC in a tf32 plan, or f32 NCHW).
    const exec::TensorRef &xv = deconv ? *o.y : *o.x;
    const exec::TensorRef &yv = deconv ? *o.x : *o.y;
    s->bf16 = isBf16(xv);
    const plan::Layout layout = s->layout = convLayout(xv, yv);
    if (isBf16(yv) != s->bf16 || (yv.dims.plane() > 1 && yv.layout != layout))
      throw KernelError(
          fmt::format("its input is {} {} but its output {} {}",
                      plan::dtypeName(xv.dtype), plan::layoutName(xv.layout),
                      plan::dtypeName(yv.dtype), plan::layoutName(yv.layout)));
    // The weight as [K, C, kh, kw]; on NHWC maps cuDNN reads it as KRSC
    // (its NHWC filter format), the layout of its copy: bf16, or f32 (a
    // tf32 plan) where it has more than one input channel (with one, KRSC
    // is KCRS's order and the weight itself is read).
    s->wDims = Dims4{out.c, in.c / groups, o.w->dims.h, o.w->dims.w};
    s->wLanes = layout == plan::Layout::NHWC ? s->wDims.c : 1;
    const int64_t elementBytes = int64_t(plan::dtypeSize(xv.dtype));
    if (padChannels_ && layout == plan::Layout::NHWC && groups == 1 &&
        (paddedChannels(in.c, elementBytes) != in.c ||
         paddedChannels(out.c, elementBytes) != out.c)) {
      s->padC = paddedChannels(in.c, elementBytes);
      s->padK = paddedChannels(out.c, elementBytes);
      auto mapBytes = [&](const Dims4 &d, int64_t c) {
        return uint64_t(d.n * c * d.h * d.w * elementBytes);
      };
      // In the arena's free bytes around the kernel, ahead of its
      // workspace, where they fit (every run rewrites them in full), else
      // in buffers of their own. Zeroed (the filter too), so that the
      // algorithm search below times every candidate on the same (finite)
      // data.
      auto padded = [&](uint64_t bytes, std::unique_ptr<Buffer> &own,
                        const char *what) -> void * {
        const uint64_t aligned = (bytes + 255) / 256 * 256;
        void *at = nullptr;
        if (aligned <= s->wsArenaBytes) {
          at = s->wsArena;
          s->wsArena = static_cast<char *>(s->wsArena) + aligned;
          s->wsArenaBytes -= aligned;
        } else {
          own = allocate(bytes, what);
          at = own->data();
        }
        zero(at, bytes);
        return at;
      };
      if (s->padC != in.c)
        s->xPadData = padded(mapBytes(in, s->padC), s->xPad,
                             "a convolution's input padded to whole channel "
                             "packs");
      if (s->padK != out.c)
        s->yPadData = padded(mapBytes(out, s->padK), s->yPad,
                             "a convolution's output padded to whole channel "
                             "packs");
      const uint64_t filterBytes =
          uint64_t(s->padK * s->padC * s->wDims.h * s->wDims.w * elementBytes);
      if (s->kind == ConvKind::BackwardFilter)
        s->dwCopy = allocate(filterBytes, "a convolution's weight gradient "
                                          "padded to whole channel packs");
      else {
        s->wPad = allocate(filterBytes, "a convolution's weight padded to "
                                        "whole channel packs");
        zero(s->wPad->data(), s->wPad->bytes());
      }
    } else if (s->bf16 || s->wLanes > 1) {
      if (s->kind == ConvKind::BackwardFilter)
        s->dwCopy = allocate(uint64_t(s->wDims.count()) *
                                 (s->bf16 ? sizeof(Bf16) : sizeof(float)),
                             "a convolution's weight gradient in the layout "
                             "cuDNN writes");
      else
        s->copy = &weightCopy(o.w->f32(), s->wDims, s->wLanes, s->bf16);
    }
    // What cuDNN computes: the padded problem where padded.
    const Dims4 inP = paddedDims(in, s->padC), outP = paddedDims(out, s->padK);
    dnnCheck(cudnnSetFilter4dDescriptor(s->w.get(), dnnType(xv.dtype),
                                        dnnFormat(layout),
                                        toInt(outP.c, "output channels"),
                                        toInt(inP.c / groups, "input channels"),
                                        toInt(o.w->dims.h, "kernel height"),
                                        toInt(o.w->dims.w, "kernel width")),
             "set filter descriptor");
    const kernels::Window2D &win = o.shape.win;
    dnnCheck(cudnnSetConvolution2dDescriptor(
                 s->conv.get(), toInt(win.ph, "pad"), toInt(win.pw, "pad"),
                 toInt(win.sh, "stride"), toInt(win.sw, "stride"), 1, 1,
                 CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
             "set convolution descriptor");
    dnnCheck(
        cudnnSetConvolutionGroupCount(s->conv.get(), toInt(groups, "groups")),
        "set group count");
    const bool tensorOps = s->tensorOps = tf32_ || s->bf16;
    setTensor(s->x, inP, xv.dtype, layout);
    setTensor(s->y, outP, xv.dtype, layout);
    const bool bias = hasBias(c);
    // Auto goes by the plan's precision, not by whether TF32 is on: with
    // NETC_CUDA_TF32=off a tf32 plan keeps its path and computes in fp32.
    s->graphTried =
        groups == 1 &&
        (convApi_ == ConvApi::Graph || convApi_ == ConvApi::GraphFused ||
         (convApi_ == ConvApi::Auto && (tf32Plan_ || s->bf16)));
    if (s->graphTried)
      s->graph = graphPlan(c, *s, /*epilogue=*/false);
    if (s->graph) {
      needWorkspace(*s, s->graph->workspaceBytes());
      s->graphN = c.n;
      if (bias)
        setChannels(s->bias, o.y->dims.c);
      s->n = c.n;
      if (s->padK > 0)
        ++paddedConvs_;
      ++graphConvs_;
      return s;
    }
    // Unknown: the search's own bound applies.
    const uint64_t searchBound =
        s->bf16 ? kSearchWorkspace : kSearchWorkspaceF32;
    const uint64_t free = freeDeviceBytes(4 * searchBound);
    // Decoders repeat their encoders' shapes: one search per shape.
    std::string key =
        fmt::format("{} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {}",
                    tf32_, s->bf16, int(layout), int(s->kind), inP.n, inP.c,
                    inP.h, inP.w, outP.c, outP.h, outP.w, o.w->dims.h,
                    o.w->dims.w, win.sh, win.sw, win.ph, win.pw, groups);
    auto cached = algoCache_.find(key);
    if (cached != algoCache_.end() && cached->second.algo == kNoAlgo)
      throw KernelError("cuDNN has no algorithm for this convolution "
                        "(remembered from an earlier search)");
    bool fromCache = cached != algoCache_.end();
    if (fromCache) {
      // A choice read from the trainer's file must still be one cuDNN
      // takes for this convolution, within the bytes it says.
      size_t need = 0;
      const CachedAlgo &k = cached->second;
      s->algo = {k.algo, size_t(k.bytes), cudnnMathType_t(k.math)};
      fromCache =
          (tensorOps || s->algo.math == CUDNN_FMA_MATH) &&
          workspaceFor(cudnn_, s->kind, s->x.get(), s->w.get(), s->conv.get(),
                       s->y.get(), s->algo.algo, s->algo.math, need) &&
          need <= s->algo.bytes;
    }
    bool found = fromCache;
    if (!found)
      s->searchMath(); // a rejected cached entry left its own
    if (!found && search_) {
      // Measured on the kernel's own buffers: nothing has run yet, so
      // whatever the search writes is overwritten by the first step.
      // Room for every candidate within the bound (not the bound itself:
      // what is reserved here stays until fitWorkspace()).
      // In the arena's bytes free around the kernel where they hold it.
      const uint64_t room = std::min<uint64_t>(
          {searchBound, free / 8,
           candidatesWorkspace(cudnn_, s->kind, s->x.get(), s->w.get(),
                               s->conv.get(), s->y.get())});
      const bool inArena = inFreeArena(*s, room);
      if (!inArena)
        reserveWorkspace(room);
      s->searchMath(); // candidatesWorkspace() set others
      void *x, *w, *y;
      convPointers(c, *s, x, w, y);
      x = s->xPadData ? s->xPadData : x;
      y = s->yPadData ? s->yPadData : y;
      try {
        s->algo = findAlgo(
            cudnn_, s->kind, s->x.get(), x, s->w.get(), w, s->conv.get(),
            s->y.get(), y, inArena ? s->wsArena : workspace(),
            std::min(inArena ? s->wsArenaBytes : workspaceBytes(), searchBound),
            tensorOps);
        found = true;
      } catch (const KernelError &) {
        // Fall back to the heuristics.
      }
    }
    if (!found) {
      s->searchMath(); // a failed search's workspace queries left others
      try {
        s->algo = chooseAlgo(
            cudnn_, s->kind, s->x.get(), s->w.get(), s->conv.get(), s->y.get(),
            heuristicsBound(free, workspaceBytes()), tensorOps);
      } catch (const KernelError &) {
        // Remembered (and kept in the trainer's file), so that a later
        // prepare of this shape, here or in the next run, does not search
        // again before its fallback (prepare: NCHW copies).
        algoCache_[key] = {kNoAlgo, 0, 0};
        algoDirty_ = true;
        throw;
      }
    }
    if (!inFreeArena(*s, s->algo.bytes))
      reserveWorkspace(s->algo.bytes);
    needWorkspace(*s, s->algo.bytes);
    if (!fromCache)
      algoDirty_ = true;
    algoCache_[key] = {s->algo.algo, uint64_t(s->algo.bytes),
                       int(s->algo.math)};
    s->algos[c.n] = s->algo;
    s->useAlgo(s->algo);
    if (bias)
      setChannels(s->bias, o.y->dims.c);
    s->n = c.n;
    if (s->padK > 0) // prepared: a failure above falls back unpadded
      ++paddedConvs_;
    return s;
  }
  switch (op) {
  case Op::FC:
  case Op::FCGradInput:
  case Op::FCGradWeight: {
    // bf16 when the activations are (x, or dy for the input gradient).
    s->bf16 = isBf16(c.in[0]);
    if (s->bf16 && op != Op::FCGradWeight) {
      exec::FCDims d = exec::fcDims(op, c.in, c.out);
      s->copy = &weightCopy(c.in[1].f32(), Dims4{d.out, d.in, 1, 1}, 1, true);
    }
    if (op == Op::FC && c.in.size() > 2)
      setChannels(s->bias, c.out[0].count / c.n);
    break;
  }
  case Op::BiasGrad:
    setChannels(s->bias, c.in[0].dims.c);
    if (ownBiasGrad(c.in[0]))
      s->scratch = allocate(anyBatchBytes(c.in[0].dims, biasGradScratchBytes),
                            "a bias gradient's partial sums");
    break;
  case Op::LRN:
  case Op::LRNGrad: {
    const kernels::LrnParams &p = a.lrn;
    // The reference's window (Caffe's) is centred, so odd sizes only.
    if (p.size < 1 || p.size % 2 == 0)
      throw KernelError(
          fmt::format("lrn size {} is not a positive odd number", p.size));
    // cuDNN's LRN for fp32 NCHW maps within its limits on n, k and beta; the
    // own kernels, which compute as the reference does, for the rest (bf16
    // and NHWC maps).
    s->ownKernel = isBf16(c.in[0]) || c.in[0].layout == plan::Layout::NHWC ||
                   p.size < CUDNN_LRN_MIN_N || p.size > CUDNN_LRN_MAX_N ||
                   p.k < CUDNN_LRN_MIN_K || p.beta < CUDNN_LRN_MIN_BETA;
    if (s->ownKernel)
      break;
    dnnCheck(cudnnSetLRNDescriptor(s->lrn.get(), unsigned(p.size), p.alpha,
                                   p.beta, p.k),
             "set LRN descriptor");
    break;
  }
  case Op::BatchNorm:
  case Op::BatchNormGrad:
    s->ownKernel = isBf16(c.in[0]) || c.in[0].layout == plan::Layout::NHWC;
    if (s->ownKernel) {
      s->scratch = allocate(anyBatchBytes(c.in[0].dims, batchNormScratchBytes),
                            "a batch norm's partial sums");
      break;
    }
    if (a.eps < CUDNN_BN_MIN_EPSILON)
      throw KernelError(fmt::format("batch_norm eps {} is below cuDNN's {}",
                                    a.eps, CUDNN_BN_MIN_EPSILON));
    setTensor(s->x, c.in[0].dims);
    dnnCheck(cudnnDeriveBNTensorDescriptor(s->bias.get(), s->x.get(),
                                           CUDNN_BATCHNORM_SPATIAL),
             "derive batch-norm descriptor");
    break;
  case Op::EuclideanLoss:
    s->scratch = allocate(kReduceWorkspaceBytes, "a loss's reduction");
    break;
  case Op::SoftmaxCrossEntropy:
    s->scratch = allocate(softmaxLossScratchBytes(c.n, c.in[0].count / c.n),
                          "softmax cross-entropy's row sums and reduction");
    break;
  case Op::SoftmaxCrossEntropyGrad:
    s->scratch = allocate(softmaxLseScratchBytes(c.n, c.in[0].count / c.n),
                          "softmax cross-entropy's row sums");
    break;
  case Op::Objective: {
    if (a.weights.size() != c.in.size())
      throw KernelError(fmt::format("objective has {} terms but {} weights",
                                    c.in.size(), a.weights.size()));
    std::vector<ObjectiveTerm> terms;
    for (size_t i = 0; i < c.in.size(); ++i)
      terms.push_back({c.in[i].f32(), a.weights[i]});
    s->table =
        allocate(terms.size() * sizeof(ObjectiveTerm), "the objective's terms");
    upload(s->table->data(), terms.data(),
           terms.size() * sizeof(ObjectiveTerm));
    synchronize(); // `terms` goes out of scope
    s->tableCount = int64_t(terms.size());
    break;
  }
  case Op::SGDUpdate: {
    if (!c.param)
      throw KernelError("sgd_update without its parameter");
    SgdTensor &t = s->sgd;
    t.w = c.param->value.data();
    t.grad = c.in[0].f32();
    t.velocity = c.param->momentum.data();
    t.count = c.in[0].count;
    t.lrMult = a.lrMult;
    t.decayMult = a.decayMult;
    std::vector<SgdChunk> chunks = sgdChunks(&t, 1);
    s->table = allocate(sizeof(SgdTensor), "an sgd_update's tensor");
    s->chunks = allocate(std::max<size_t>(chunks.size(), 1) * sizeof(SgdChunk),
                         "an sgd_update's chunks");
    upload(s->chunks->data(), chunks.data(), chunks.size() * sizeof(SgdChunk));
    s->tableCount = int64_t(chunks.size());
    // Uploads the tensor, with the weight's bf16 copy if it has one.
    linkSgd(*s);
    break;
  }
  default:
    break;
  }
  describeForBatch(c, *s);
  return s;
}

//===----------------------------------------------------------------------===//
// run
//===----------------------------------------------------------------------===//

void CudaBackend::convPointers(const KernelCall &c, const State &s, void *&x,
                               void *&w, void *&y) {
  exec::ConvOperands o = exec::convOperands(c.kernel.op, c.attrs, c.in, c.out);
  bool deconv = isTransposedConv(c.kernel.op);
  // A convolution fused with its relu writes into the relu's output.
  void *opOut = s.reluOut ? s.reluOut : o.y->data;
  x = deconv ? opOut : o.x->data;
  y = deconv ? o.x->data : opOut;
  w = s.dwCopy ? s.dwCopy->data()
      : s.wPad ? s.wPad->data()
      : s.copy ? s.copy->data->data()
               : o.w->data;
}

void CudaBackend::runConv(const KernelCall &c, State &s) {
  const Op op = c.kernel.op;
  exec::ConvOperands o = exec::convOperands(op, c.attrs, c.in, c.out);
  bool deconv = isTransposedConv(op);
  // The conv view's pointers, and the maps cuDNN reads and writes (their
  // padded copies where padded).
  void *x, *w, *y;
  convPointers(c, s, x, w, y);
  void *cx = s.xPadData ? s.xPadData : x, *cy = s.yPadData ? s.yPadData : y;
  const Dims4 &in = deconv ? o.shape.out : o.shape.in;
  const Dims4 &outDims = deconv ? o.shape.in : o.shape.out;
  const int64_t inRows = in.n * in.h * in.w,
                outRows = outDims.n * outDims.h * outDims.w;
  const int64_t elementBytes = s.bf16 ? 2 : 4;
  if (s.copy && !s.copy->bySgd)
    refresh(*s.copy);
  if (s.xPadData && s.kind != ConvKind::BackwardData)
    device::resizeRows(inRows, in.c, s.padC, elementBytes, x, cx, stream_);
  if (s.yPadData && s.kind != ConvKind::Forward)
    device::resizeRows(outRows, outDims.c, s.padK, elementBytes, y, cy,
                       stream_);
  if (s.wPad)
    withType(*o.x, [&](auto t) {
      using T = decltype(t);
      device::padFilter<T>(s.wDims, s.padK, s.padC, o.w->f32(),
                           static_cast<T *>(w), stream_);
    });
  const float one = 1.0f, zero = 0.0f;
  const bool bias = hasBias(c);
  const bool viaGraph = s.viaGraph();
  const uint64_t wsBytes = s.convWorkspaceBytes();
  // cuDNN trusts the size it is given: an algorithm chosen for a larger
  // workspace than the buffer now is would write past it.
  void *ws = convWorkspace(s, wsBytes);
  if (!ws && wsBytes > 0)
    throw KernelError(fmt::format(
        "its algorithm needs {} of workspace but the workspace is {} (and "
        "the arena has {} free around it)",
        io::formatBytes(wsBytes), io::formatBytes(workspaceBytes()),
        io::formatBytes(s.wsArenaBytes)));
  if (viaGraph) {
    s.graph->run(cudnn_, graphOperands(c, s), ws);
  } else {
    switch (s.kind) {
    case ConvKind::Forward:
      dnnCheck(cudnnConvolutionForward(cudnn_, &one, s.x.get(), cx, s.w.get(),
                                       w, s.conv.get(),
                                       cudnnConvolutionFwdAlgo_t(s.algo.algo),
                                       ws, wsBytes, &zero, s.y.get(), cy),
               "convolution forward");
      break;
    case ConvKind::BackwardData:
      dnnCheck(cudnnConvolutionBackwardData(
                   cudnn_, &one, s.w.get(), w, s.y.get(), cy, s.conv.get(),
                   cudnnConvolutionBwdDataAlgo_t(s.algo.algo), ws, wsBytes,
                   &zero, s.x.get(), cx),
               "convolution backward data");
      break;
    case ConvKind::BackwardFilter:
      dnnCheck(cudnnConvolutionBackwardFilter(
                   cudnn_, &one, s.x.get(), cx, s.y.get(), cy, s.conv.get(),
                   cudnnConvolutionBwdFilterAlgo_t(s.algo.algo), ws, wsBytes,
                   &zero, s.w.get(), w),
               "convolution backward filter");
      break;
    }
  }
  // What cuDNN wrote, where the step reads it: a padded map cut back; a
  // weight gradient in the weight's own order and type.
  switch (s.kind) {
  case ConvKind::Forward:
    if (s.yPadData)
      device::resizeRows(outRows, s.padK, outDims.c, elementBytes, cy, y,
                         stream_);
    break;
  case ConvKind::BackwardData:
    if (s.xPadData)
      device::resizeRows(inRows, s.padC, in.c, elementBytes, cx, x, stream_);
    break;
  case ConvKind::BackwardFilter:
    if (s.padK > 0) // the padding dropped, in the weight's own order
      withType(*o.x, [&](auto t) {
        using T = decltype(t);
        device::unpadFilterGrad<T>(s.wDims, s.padC, static_cast<const T *>(w),
                                   o.w->f32(), stream_);
      });
    else if (s.dwCopy && s.bf16) // the fp32 gradient, in the weight's order
      device::fromStorage<Bf16>(s.wDims, s.wLanes, static_cast<const Bf16 *>(w),
                                o.w->f32(), stream_);
    else if (s.dwCopy)
      device::fromStorage<float>(s.wDims, s.wLanes,
                                 static_cast<const float *>(w), o.w->f32(),
                                 stream_);
    break;
  }
  if (viaGraph && s.graphEpilogue)
    return;                   // the plan biased and clipped it
  void *out = deconv ? x : y; // the op's output (or its relu's)
  if (bias && !s.bf16 && !s.reluOut && s.layout == plan::Layout::NCHW) {
    // The conv view's output for conv2d, its input for deconv2d.
    dnnCheck(cudnnAddTensor(cudnn_, &one, s.bias.get(), c.in[2].data, &one,
                            deconv ? s.x.get() : s.y.get(), out),
             "bias add");
    return;
  }
  runOwnEpilogue(c, s, out);
}

/// The own epilogue of a convolution, on its output `out` (the op's, or its
/// relu's): a bf16 map's bias (cuDNN's would round differently), an NHWC
/// map's, and a fused relu with or without a bias, in one pass.
void CudaBackend::runOwnEpilogue(const KernelCall &c, const State &s,
                                 void *out) {
  exec::ConvOperands o = exec::convOperands(c.kernel.op, c.attrs, c.in, c.out);
  const bool bias = hasBias(c);
  withType(*o.y, [&](auto t) {
    using T = decltype(t);
    T *p = static_cast<T *>(out);
    if (bias)
      device::biasAdd<T>(o.y->dims, o.y->lanes(), p, c.in[2].f32(), p,
                         s.reluOut != nullptr, stream_);
    else if (s.reluOut)
      device::relu<T>(o.y->count, p, p, stream_);
  });
}

void CudaBackend::runFcBf16(const KernelCall &c, const State &s, int n, int fin,
                            int fout) {
  // As the fp32 path (row-major as column-major transposes), with bf16
  // operands, fp32 accumulation (CUBLAS_COMPUTE_32F) and the weight read
  // through its bf16 copy; the weight gradient is written in fp32.
  const float one = 1.0f, zero = 0.0f;
  const Op op = c.kernel.op;
  const void *w = s.copy ? s.copy->data->data() : nullptr;
  if (s.copy && !s.copy->bySgd)
    refresh(*s.copy);
  auto gemm = [&](cublasOperation_t ta, cublasOperation_t tb, int m, int nn,
                  int k, const void *A, int lda, const void *B, int ldb,
                  void *C, cudaDataType_t ct, int ldc, const char *what) {
    blasCheck(cublasGemmEx(cublas_, ta, tb, m, nn, k, &one, A, CUDA_R_16BF, lda,
                           B, CUDA_R_16BF, ldb, &zero, C, ct, ldc,
                           CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              what);
  };
  if (op == Op::FC) {
    gemm(CUBLAS_OP_T, CUBLAS_OP_N, fout, n, fin, w, fin, c.in[0].data, fin,
         c.out[0].data, CUDA_R_16BF, fout, "bf16 fc forward");
    if (c.in.size() > 2)
      device::biasAdd<Bf16>(Dims4{n, fout, 1, 1}, 1, c.out[0].as<Bf16>(),
                            c.in[2].f32(), c.out[0].as<Bf16>(), false, stream_);
  } else if (op == Op::FCGradInput) {
    gemm(CUBLAS_OP_N, CUBLAS_OP_N, fin, n, fout, w, fin, c.in[0].data, fout,
         c.out[0].data, CUDA_R_16BF, fin, "bf16 fc backward data");
  } else {
    gemm(CUBLAS_OP_N, CUBLAS_OP_T, fin, fout, n, c.in[0].data, fin,
         c.in[1].data, fout, c.out[0].data, CUDA_R_32F, fin,
         "bf16 fc backward filter");
  }
}

void CudaBackend::run(const KernelCall &c) {
  State &s = state(c);
  if (s.skip)
    return;
  if (s.relayouts.empty()) {
    runKernel(c, s);
  } else {
    KernelCall k = relayouted(c, s.relayouts);
    for (const Relayout &x : s.relayouts)
      if (!x.out)
        relayout(c.in[x.index], k.in[x.index]);
    runKernel(k, s);
    for (const Relayout &x : s.relayouts)
      if (x.out)
        relayout(k.out[x.index], c.out[x.index]);
  }
  if (syncEach_) {
    // A fault is reported by the kernel that caused it: a KernelError, which
    // the executor prefixes with the kernel's path and op.
    cudaError_t e = cudaStreamSynchronize(stream_);
    if (e != cudaSuccess)
      throw KernelError(fmt::format("CUDA: {} (NETC_CUDA_SYNC=on: in this "
                                    "kernel)",
                                    cudaGetErrorString(e)));
  }
}

void CudaBackend::runKernel(const KernelCall &c, State &s) {
  const exec::KernelAttrs &a = c.attrs;
  const Op op = c.kernel.op;
  if (s.n != c.n)
    describeForBatch(c, s);
  auto in = [&](size_t i) { return c.in[i].f32(); };
  auto out = [&](size_t i) { return c.out[i].f32(); };
  const float one = 1.0f, zero = 0.0f;
  cudaStream_t st = stream_;
  if (isConvFamily(op)) {
    runConv(c, s);
    return;
  }
  switch (op) {
  case Op::FC:
  case Op::FCGradInput:
  case Op::FCGradWeight: {
    // Row-major matrices are the column-major transposes: x[N, in] is
    // (in x N) with leading dimension in, w[out, in] is (in x out), y[N, out]
    // is (out x N).
    exec::FCDims d = exec::fcDims(op, c.in, c.out);
    int n = toInt(d.n, "batch"), fin = toInt(d.in, "fc inputs"),
        fout = toInt(d.out, "fc outputs");
    if (s.bf16) {
      runFcBf16(c, s, n, fin, fout);
      return;
    }
    if (op == Op::FC) {
      // y' = w'^T x'
      blasCheck(cublasSgemm(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, fout, n, fin,
                            &one, in(1), fin, in(0), fin, &zero, out(0), fout),
                "fc forward");
      if (c.in.size() > 2)
        dnnCheck(cudnnAddTensor(cudnn_, &one, s.bias.get(), in(2), &one,
                                s.y.get(), out(0)),
                 "fc bias add");
    } else if (op == Op::FCGradInput) {
      // dx' = w' dy'
      blasCheck(cublasSgemm(cublas_, CUBLAS_OP_N, CUBLAS_OP_N, fin, n, fout,
                            &one, in(1), fin, in(0), fout, &zero, out(0), fin),
                "fc backward data");
    } else {
      // dw' = x' dy'^T
      blasCheck(cublasSgemm(cublas_, CUBLAS_OP_N, CUBLAS_OP_T, fin, fout, n,
                            &one, in(0), fin, in(1), fout, &zero, out(0), fin),
                "fc backward filter");
    }
    return;
  }
  case Op::BiasGrad:
    if (s.partialsSummed) {
      device::biasGradFinal(
          c.in[0].dims, static_cast<double *>(s.scratch->data()), out(0), st);
      return;
    }
    if (ownBiasGrad(c.in[0])) {
      withType(c.in[0], [&](auto t) {
        using T = decltype(t);
        device::biasGrad<T>(c.in[0].dims, c.in[0].lanes(), c.in[0].as<T>(),
                            static_cast<double *>(s.scratch->data()), out(0),
                            st);
      });
      return;
    }
    dnnCheck(cudnnConvolutionBackwardBias(cudnn_, &one, s.y.get(), in(0), &zero,
                                          s.bias.get(), out(0)),
             "bias gradient");
    return;
  case Op::LRN:
    if (s.ownKernel) {
      withType(c.in[0], [&](auto t) {
        using T = decltype(t);
        device::lrnForward<T>(c.in[0].dims, c.in[0].lanes(), a.lrn,
                              c.in[0].as<T>(), c.out[0].as<T>(), st);
      });
      return;
    }
    dnnCheck(cudnnLRNCrossChannelForward(
                 cudnn_, s.lrn.get(), CUDNN_LRN_CROSS_CHANNEL_DIM1, &one,
                 s.x.get(), in(0), &zero, s.x.get(), out(0)),
             "LRN forward");
    return;
  case Op::LRNGrad:
    // in: grad, input, output.
    if (s.ownKernel) {
      withType(c.in[0], [&](auto t) {
        using T = decltype(t);
        device::lrnBackward<T>(c.in[0].dims, c.in[0].lanes(), a.lrn,
                               c.in[1].as<T>(), c.in[2].as<T>(),
                               c.in[0].as<T>(), c.out[0].as<T>(), st);
      });
      return;
    }
    dnnCheck(cudnnLRNCrossChannelBackward(
                 cudnn_, s.lrn.get(), CUDNN_LRN_CROSS_CHANNEL_DIM1, &one,
                 s.x.get(), in(2), s.x.get(), in(0), s.x.get(), in(1), &zero,
                 s.x.get(), out(0)),
             "LRN backward");
    return;
  case Op::BatchNorm:
    // in: input, scale, shift, running mean, running variance.
    if (s.ownKernel) {
      withType(c.in[0], [&](auto t) {
        using T = decltype(t);
        const exec::TensorRef &x = c.in[0];
        if (a.inference || !c.ctx.training)
          device::batchNormForwardInference<T>(x.dims, x.lanes(), a.eps,
                                               x.as<T>(), in(1), in(2), in(3),
                                               in(4), c.out[0].as<T>(), st);
        else
          device::batchNormForwardTraining<T>(
              x.dims, x.lanes(), a.eps, a.bnMomentum, x.as<T>(), in(1), in(2),
              in(3), in(4), c.out[0].as<T>(),
              static_cast<double *>(s.scratch->data()), st);
      });
      return;
    }
    if (a.inference || !c.ctx.training)
      dnnCheck(cudnnBatchNormalizationForwardInference(
                   cudnn_, CUDNN_BATCHNORM_SPATIAL, &one, &zero, s.x.get(),
                   in(0), s.x.get(), out(0), s.bias.get(), in(1), in(2), in(3),
                   in(4), a.eps),
               "batch norm inference");
    else
      // running = momentum * running + (1 - momentum) * batch statistic
      // (the variance unbiased, as the reference's).
      dnnCheck(cudnnBatchNormalizationForwardTraining(
                   cudnn_, CUDNN_BATCHNORM_SPATIAL, &one, &zero, s.x.get(),
                   in(0), s.x.get(), out(0), s.bias.get(), in(1), in(2),
                   1.0 - a.bnMomentum, in(3), in(4), a.eps, nullptr, nullptr),
               "batch norm training");
    return;
  case Op::BatchNormGrad:
    // in: grad, input, scale; out: input, scale and shift gradients.
    if (s.ownKernel) {
      withType(c.in[0], [&](auto t) {
        using T = decltype(t);
        const exec::TensorRef &x = c.in[1];
        device::batchNormBackward<T>(
            x.dims, x.lanes(), a.eps, x.as<T>(), in(2), c.in[0].as<T>(),
            c.out[0].as<T>(), out(1), out(2),
            static_cast<double *>(s.scratch->data()), st);
      });
      return;
    }
    // The batch statistics are recomputed (no saved mean), as the
    // reference's.
    dnnCheck(cudnnBatchNormalizationBackward(
                 cudnn_, CUDNN_BATCHNORM_SPATIAL, &one, &zero, &one, &zero,
                 s.x.get(), in(1), s.x.get(), in(0), s.x.get(), out(0),
                 s.bias.get(), in(2), out(1), out(2), a.eps, nullptr, nullptr),
             "batch norm backward");
    return;
  // The pooling kernels walk in the layout of the unpooled (larger) map:
  // relayouts gave every operand with more than one pixel that layout, and a
  // pooled map of one pixel, which net-precision keeps NCHW when a flatten
  // reads it, is the same bytes in both.
  // Average pooling: own gathers (Caffe's divisor, ceil mode included;
  // cuDNN's pooling is deprecated and always divides by the whole window),
  // the same sums in the same order as the reference's.
  case Op::AvgPool:
    withType(c.in[0], [&](auto t) {
      using T = decltype(t);
      device::avgPoolForward<T>(kernels::poolShape(c.in[0].dims, a.win, a.ceil),
                                c.in[0].as<T>(), c.out[0].as<T>(),
                                c.in[0].lanes(), st);
    });
    return;
  case Op::AvgPoolGrad:
    withType(c.in[0], [&](auto t) {
      using T = decltype(t);
      device::avgPoolBackward<T>(
          kernels::poolShape(c.out[0].dims, a.win, a.ceil), c.in[0].as<T>(),
          c.out[0].as<T>(), c.out[0].lanes(), st);
    });
    return;
  case Op::MaxPool:
    withType(c.in[0], [&](auto t) {
      using T = decltype(t);
      device::maxPoolForward<T>(kernels::poolShape(c.in[0].dims, a.win, a.ceil),
                                c.in[0].as<T>(), c.out[0].as<T>(),
                                c.out[1].switches(), c.in[0].lanes(), st);
    });
    return;
  case Op::Unpool:
    withType(c.in[0], [&](auto t) {
      using T = decltype(t);
      device::unpoolForward<T>(
          kernels::unpoolShape(c.in[0].dims, a.win, a.sizeH, a.sizeW, a.posH,
                               a.posW, a.normalize),
          c.in[0].as<T>(), c.in.size() > 1 ? c.in[1].switches() : nullptr,
          c.out[0].as<T>(), c.out[0].lanes(), st);
    });
    return;
  case Op::UnpoolGrad:
    withType(c.in[0], [&](auto t) {
      using T = decltype(t);
      device::unpoolBackward<T>(
          kernels::unpoolShape(c.out[0].dims, a.win, c.in[0].dims.h,
                               c.in[0].dims.w, a.posH, a.posW, a.normalize),
          c.in[0].as<T>(), c.in.size() > 1 ? c.in[1].switches() : nullptr,
          c.out[0].as<T>(), c.in[0].lanes(), st);
    });
    return;
  case Op::Relu:
    withType(c.in[0], [&](auto t) {
      using T = decltype(t);
      device::relu<T>(c.in[0].count, c.in[0].as<T>(), c.out[0].as<T>(), st);
    });
    return;
  case Op::ReluGrad:
    // in: grad, output.
    withType(c.in[0], [&](auto t) {
      using T = decltype(t);
      if (s.poolGrad) {
        kernels::PoolShape ps = s.poolShape;
        ps.in.n = ps.out.n = c.n;
        device::poolReluGradBiasPartials<T>(
            ps, static_cast<const T *>(s.poolDy), s.poolSwitches,
            c.in[1].as<T>(), c.out[0].as<T>(), s.biasPartials, st);
        return;
      }
      if (s.biasPartials) {
        device::reluGradBiasPartials<T>(c.out[0].dims, c.in[1].as<T>(),
                                        c.in[0].as<T>(), c.out[0].as<T>(),
                                        s.biasPartials, st);
        return;
      }
      device::reluGrad<T>(c.in[0].count, c.in[1].as<T>(), c.in[0].as<T>(),
                          c.out[0].as<T>(), st);
    });
    return;
  case Op::Add:
    withType(c.in[0], [&](auto t) {
      using T = decltype(t);
      device::add<T>(c.in[0].count, c.in[0].as<T>(), c.in[1].as<T>(),
                     c.out[0].as<T>(), st);
    });
    return;
  case Op::Scale:
    withType(c.in[0], [&](auto t) {
      using T = decltype(t);
      device::scale<T>(c.in[0].count, c.in[0].as<T>(), float(a.scale),
                       c.out[0].as<T>(), st);
    });
    return;
  case Op::Reshape:
  case Op::Flatten:
    // A view when planned in place; otherwise a copy.
    copy(c.out[0].data, c.in[0].data,
         uint64_t(c.in[0].count * plan::dtypeSize(c.in[0].dtype)));
    return;
  case Op::Dropout:
  case Op::DropoutGrad:
    if (!c.ctx.training || a.ratio == 0) {
      copy(c.out[0].data, c.in[0].data,
           uint64_t(c.in[0].count * plan::dtypeSize(c.in[0].dtype)));
      return;
    }
    withType(c.in[0], [&](auto t) {
      using T = decltype(t);
      device::dropout<T>(
          c.in[0].count, a.ratio, a.seed,
          &static_cast<const StepParams *>(stepParams_->data())->step,
          c.dropoutFirst(), c.in[0].dims.plane(), c.in[0].lanes(),
          c.in[0].as<T>(), c.out[0].as<T>(), st);
    });
    return;
  case Op::SoftmaxCrossEntropy: {
    int64_t n = c.in[0].dims.n;
    withType(c.in[0], [&](auto t) {
      using T = decltype(t);
      device::softmaxCrossEntropyForward<T>(
          n, c.in[0].count / n, c.in[0].as<T>(), c.in[1].i32(),
          static_cast<double *>(s.scratch->data()), out(0), st);
    });
    return;
  }
  case Op::SoftmaxCrossEntropyGrad: {
    int64_t n = c.in[0].dims.n;
    withType(c.in[0], [&](auto t) {
      using T = decltype(t);
      device::softmaxCrossEntropyBackward<T>(
          n, c.in[0].count / n, c.in[0].as<T>(), c.in[1].i32(), float(a.scale),
          static_cast<double *>(s.scratch->data()), c.out[0].as<T>(), st);
    });
    return;
  }
  case Op::EuclideanLoss:
    withType(c.in[0], [&](auto t) {
      using T = decltype(t);
      device::euclideanLossForward<T>(
          c.in[0].dims.n, c.in[0].count, c.in[0].as<T>(), c.in[1].as<T>(),
          static_cast<double *>(s.scratch->data()), out(0), st);
    });
    return;
  case Op::EuclideanLossGrad:
    withType(c.in[0], [&](auto t) {
      using T = decltype(t);
      device::euclideanLossBackward<T>(
          c.in[0].dims.n, c.in[0].count, c.in[0].as<T>(), c.in[1].as<T>(),
          float(a.scale), c.out[0].as<T>(), nullptr, st);
    });
    return;
  case Op::Objective:
    device::objective(static_cast<const ObjectiveTerm *>(s.table->data()),
                      s.tableCount, out(0), st);
    return;
  case Op::AllReduceMean: {
    for (size_t i = 0; i < c.in.size(); ++i)
      if (c.in[i].data != c.out[i].data) {
        // cudaMemcpy's ranges must not overlap (net-plan-memory gives a
        // gradient and its bucket slot disjoint bytes, or the same ones).
        auto *from = static_cast<const char *>(c.in[i].data);
        auto *to = static_cast<const char *>(c.out[i].data);
        size_t bytes = size_t(c.in[i].count) * sizeof(float);
        if (from < to + bytes && to < from + bytes)
          throw KernelError("all_reduce_mean: an input overlaps its output "
                            "in part");
        cudaCheck(cudaMemcpyAsync(c.out[i].data, c.in[i].data, bytes,
                                  cudaMemcpyDeviceToDevice, st),
                  "all_reduce_mean copy");
      }
    // Without NCCL, one rank's mean is its gradient; with it, NCCL reduces
    // even a single rank (the path a multi-GPU run takes).
    if (!c.ctx.comm || (!reducesAcrossRanks() && c.ctx.comm->size() == 1))
      return;
    if (!nccl_ || &nccl_->ranks() != c.ctx.comm) {
      nccl_ = std::make_unique<NcclReducer>(*c.ctx.comm, stream_);
      ++generation_; // recordings hold the old communicator
    }
    for (auto [first, last] : exec::contiguousRuns(c.out, sizeof(float))) {
      for (size_t i = first; i < last; ++i) { // the gaps: no NaN summed
        char *end = static_cast<char *>(c.out[i].data) +
                    size_t(c.out[i].count) * sizeof(float);
        cudaCheck(cudaMemsetAsync(
                      end, 0,
                      size_t(static_cast<char *>(c.out[i + 1].data) - end), st),
                  "all_reduce_mean gap");
      }
      float *begin = c.out[first].f32();
      float *end = c.out[last].f32() + c.out[last].count;
      nccl_->allReduceMean(begin, end - begin);
    }
    return;
  }
  case Op::SGDUpdate:
    // The hyper-parameters from device memory (beginProgram), so that a
    // recorded step reads each step's.
    device::sgdMomentum(
        static_cast<const SgdTensor *>(s.table->data()),
        static_cast<const SgdChunk *>(s.chunks->data()), s.tableCount,
        &static_cast<const StepParams *>(stepParams_->data())->hyper, st);
    return;
  default:
    break;
  }
  throw KernelError(
      fmt::format("cuda backend: op '{}' not implemented", plan::opName(op)));
}

} // namespace netc::cuda
