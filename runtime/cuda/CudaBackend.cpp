//===- CudaBackend.cpp - the `cuda` backend -------------------------------===//
//
// Host code that calls the CUDA runtime, cuDNN and cuBLAS C APIs and the own
// kernels' device launchers (Launch.h); compiled by the host compiler, only
// Kernels.cu needs nvcc. See CudaBackend.h for what runs where.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/CudaBackend.h"

#include "runtime/cuda/Launch.h"
#include "runtime/cuda/Nccl.h"
#include "runtime/dist/Communicator.h"
#include "runtime/io/File.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>
#include <fmt/format.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>
#include <stdexcept>
#include <vector>

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
using PoolDesc = Desc<cudnnPoolingDescriptor_t, cudnnCreatePoolingDescriptor,
                      cudnnDestroyPoolingDescriptor>;

void setTensor(TensorDesc &d, const Dims4 &x) {
  dnnCheck(
      cudnnSetTensor4dDescriptor(d.get(), CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT,
                                 toInt(x.n, "batch"), toInt(x.c, "channels"),
                                 toInt(x.h, "height"), toInt(x.w, "width")),
      "set tensor descriptor");
}

/// A per-channel operand (bias) as cuDNN broadcasts it: [1, C, 1, 1].
void setChannels(TensorDesc &d, int64_t c) { setTensor(d, Dims4{1, c, 1, 1}); }

/// The convolution-family kernels as the cuDNN call they make, on the
/// kernel's forward convolution ("conv view": input X, weight W, output Y).
/// A transposed convolution is the convolution from its output to its input.
enum class ConvKind { Forward, BackwardData, BackwardFilter };

bool isConvFamily(Op op) {
  return op == Op::Conv2D || op == Op::Deconv2D || op == Op::Conv2DGradInput ||
         op == Op::Conv2DGradWeight || op == Op::Deconv2DGradInput ||
         op == Op::Deconv2DGradWeight;
}

bool isDeconv(Op op) {
  return op == Op::Deconv2D || op == Op::Deconv2DGradInput ||
         op == Op::Deconv2DGradWeight;
}

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

/// The most workspace prepare() lets one convolution algorithm ask for.
constexpr uint64_t kMaxWorkspace = uint64_t(1) << 30;
/// The workspace cudnnFind* may use (and the convolutions after it).
constexpr uint64_t kSearchWorkspace = uint64_t(256) << 20;
/// cuBLAS's own workspace (set once, so it allocates nothing in a step).
constexpr uint64_t kCublasWorkspace = uint64_t(32) << 20;

struct AlgoChoice {
  int algo = -1;
  size_t bytes = 0;
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
  int64_t n = 0; ///< batch the descriptors describe
  // cuDNN: x/y are the (conv view) input and output; bias a per-channel
  // operand or batch norm's derived parameter descriptor.
  TensorDesc x, y, bias;
  FilterDesc w;
  ConvDesc conv;
  LrnDesc lrn;
  PoolDesc pool;
  ConvKind kind = ConvKind::Forward;
  /// The algorithm per batch size (the planned one from prepare()).
  std::map<int64_t, AlgoChoice> algos;
  AlgoChoice algo;
  // Own kernels: reduction scratch or row log-sum-exps; the objective's and
  // SGD's device tables.
  std::unique_ptr<Buffer> scratch, table, chunks;
  int64_t tableCount = 0;
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
  dnnCheck(cudnnCreate(&cudnn_), "create handle");
  dnnCheck(cudnnSetStream(cudnn_, stream_), "set stream");
  blasCheck(cublasCreate(&cublas_), "create handle");
  blasCheck(cublasSetStream(cublas_, stream_), "set stream");
  cublasWorkspace_ = allocate(kCublasWorkspace, "cuBLAS workspace");
  blasCheck(cublasSetWorkspace(cublas_, cublasWorkspace_->data(),
                               size_t(kCublasWorkspace)),
            "set workspace");
  allowTf32(false);
  const char *algo = std::getenv("NETC_CUDNN_ALGO");
  search_ = !(algo && std::string(algo) == "heuristic");
}

bool CudaBackend::reducesAcrossRanks() const {
#ifdef NETC_HAVE_NCCL
  return true;
#else
  return false;
#endif
}

CudaBackend::~CudaBackend() {
  if (stream_)
    cudaStreamSynchronize(stream_);
  nccl_.reset();
  workspace_.reset();
  if (cublas_)
    cublasDestroy(cublas_);
  cublasWorkspace_.reset();
  if (cudnn_)
    cudnnDestroy(cudnn_);
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
  // Zeroed, as Memory promises; ordered before every later use, which is
  // on the same stream.
  e = cudaMemsetAsync(p, 0, size_t(rounded), stream_);
  if (e != cudaSuccess) {
    cudaFree(p);
    cudaCheck(e, "zero new memory");
  }
  return track(p, bytes, /*host=*/false, [](void *q) { cudaFree(q); });
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
}

void CudaBackend::download(void *dst, const void *src, uint64_t bytes) {
  if (bytes)
    cudaCheck(
        cudaMemcpyAsync(dst, src, size_t(bytes), cudaMemcpyDefault, stream_),
        "download");
  // Also where a failed kernel of the step reports.
  cudaCheck(cudaStreamSynchronize(stream_), "download (the step's kernels)");
}

void CudaBackend::copy(void *dst, const void *src, uint64_t bytes) {
  if (bytes && dst != src)
    cudaCheck(
        cudaMemcpyAsync(dst, src, size_t(bytes), cudaMemcpyDefault, stream_),
        "copy");
}

void CudaBackend::zero(void *dst, uint64_t bytes) {
  if (bytes)
    cudaCheck(cudaMemsetAsync(dst, 0, size_t(bytes), stream_), "zero");
}

void CudaBackend::synchronize() {
  cudaCheck(cudaStreamSynchronize(stream_), "synchronize");
}

bool CudaBackend::supports(const plan::Value &v) const {
  // bf16 maps and NHWC layouts come with the tensor-core path.
  return v.dtype != plan::DType::BF16 && v.layout == plan::Layout::NCHW;
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
  // Earlier steps may still read the old buffer.
  synchronize();
  workspace_.reset();
  workspace_ = allocate(bytes, "the convolution workspace");
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

/// The workspace algorithm `algo` really needs (the heuristics' `memory` is
/// an estimate for some algorithms); false if cuDNN cannot say.
static bool workspaceFor(cudnnHandle_t h, ConvKind kind,
                         cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w,
                         cudnnConvolutionDescriptor_t conv,
                         cudnnTensorDescriptor_t y, int algo, size_t &bytes) {
  cudnnStatus_t s = CUDNN_STATUS_SUCCESS;
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

/// cuDNN's measurement of every algorithm for the kernel's direction
/// (cudnnFind*Ex on the kernel's own buffers, before any step has written
/// them, with `ws` as workspace): the fastest that works and, for fp32,
/// uses no tensor cores; a deterministic one instead if it is within 10% of
/// it. Like PyTorch's cudnn.benchmark, once per shape.
static AlgoChoice findAlgo(cudnnHandle_t h, ConvKind kind,
                           cudnnTensorDescriptor_t x, void *xp,
                           cudnnFilterDescriptor_t w, void *wp,
                           cudnnConvolutionDescriptor_t conv,
                           cudnnTensorDescriptor_t y, void *yp, void *ws,
                           size_t wsBytes, bool tf32) {
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
  const Candidate *fastest = nullptr, *deterministic = nullptr;
  size_t fastestBytes = 0, deterministicBytes = 0;
  for (const Candidate &c : list) { // fastest first
    size_t bytes = 0;
    if (c.status != CUDNN_STATUS_SUCCESS || c.time < 0 ||
        (!tf32 && c.mathType != CUDNN_FMA_MATH &&
         c.mathType != CUDNN_DEFAULT_MATH) ||
        !workspaceFor(h, kind, x, w, conv, y, c.algo, bytes) || bytes > wsBytes)
      continue;
    if (!fastest) {
      fastest = &c;
      fastestBytes = bytes;
    }
    if (!deterministic && c.determinism == CUDNN_DETERMINISTIC) {
      deterministic = &c;
      deterministicBytes = bytes;
    }
  }
  if (deterministic && deterministic->time <= 1.1f * fastest->time)
    return {deterministic->algo, deterministicBytes};
  if (fastest)
    return {fastest->algo, fastestBytes};
  throw KernelError(fmt::format("cuDNN's search found no algorithm for this "
                                "convolution within {} of workspace",
                                io::formatBytes(wsBytes)));
}

/// cuDNN's ranked heuristics for the kernel's direction, best first; the
/// first that works, fits `limit`, is deterministic (the backward
/// directions have atomics-based algorithms: results that change from run
/// to run) and, for fp32, uses no tensor cores. Determinism and then the
/// math restriction are dropped only if nothing else is left.
static AlgoChoice
chooseAlgo(cudnnHandle_t h, ConvKind kind, cudnnTensorDescriptor_t x,
           cudnnFilterDescriptor_t w, cudnnConvolutionDescriptor_t conv,
           cudnnTensorDescriptor_t y, uint64_t limit, bool tf32) {
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
  auto bytesOf = [&](int algo, size_t &bytes) {
    return workspaceFor(h, kind, x, w, conv, y, algo, bytes);
  };
  for (int pass = 0; pass < 3; ++pass)
    for (const Candidate &c : list) {
      if (c.status != CUDNN_STATUS_SUCCESS)
        continue;
      if (pass < 1 && c.determinism != CUDNN_DETERMINISTIC)
        continue;
      if (pass < 2 && !tf32 && c.mathType != CUDNN_FMA_MATH &&
          c.mathType != CUDNN_DEFAULT_MATH)
        continue;
      size_t bytes = 0;
      if (!bytesOf(c.algo, bytes) || bytes > limit)
        continue;
      return {c.algo, bytes};
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

/// Sets every batch-dependent descriptor of `s` for c.n and, for a
/// convolution, the algorithm for that batch.
void CudaBackend::describeForBatch(const KernelCall &c, State &s) {
  const Op op = c.kernel.op;
  if (isConvFamily(op)) {
    exec::ConvOperands o = exec::convOperands(op, c.attrs, c.in, c.out);
    bool deconv = isDeconv(op);
    const Dims4 &in = deconv ? o.shape.out : o.shape.in;
    const Dims4 &out = deconv ? o.shape.in : o.shape.out;
    setTensor(s.x, in);
    setTensor(s.y, out);
    auto it = s.algos.find(c.n);
    if (it == s.algos.end()) {
      // A batch other than the planned one (the last of an epoch): an
      // algorithm that fits the workspace prepare() allocated.
      AlgoChoice a =
          chooseAlgo(cudnn_, s.kind, s.x.get(), s.w.get(), s.conv.get(),
                     s.y.get(), workspaceBytes(), tf32_);
      it = s.algos.emplace(c.n, a).first;
    }
    s.algo = it->second;
  } else {
    switch (op) {
    case Op::FC:
      setTensor(s.y, Dims4{c.n, c.out[0].count / c.n, 1, 1});
      break;
    case Op::BiasGrad:
      setTensor(s.y, c.in[0].dims);
      break;
    case Op::LRN:
    case Op::LRNGrad:
    case Op::BatchNorm:
    case Op::BatchNormGrad:
      setTensor(s.x, c.in[0].dims);
      break;
    case Op::AvgPool:
      setTensor(s.x, c.in[0].dims);
      setTensor(s.y, c.out[0].dims);
      break;
    case Op::AvgPoolGrad:
      setTensor(s.x, c.out[0].dims);
      setTensor(s.y, c.in[0].dims);
      break;
    default:
      break;
    }
  }
  s.n = c.n;
}

std::unique_ptr<exec::KernelState> CudaBackend::prepare(const KernelCall &c) {
  auto s = std::make_unique<State>();
  const exec::KernelAttrs &a = c.attrs;
  const Op op = c.kernel.op;
  if (isConvFamily(op)) {
    exec::ConvOperands o = exec::convOperands(op, a, c.in, c.out);
    bool deconv = isDeconv(op);
    const Dims4 &in = deconv ? o.shape.out : o.shape.in;
    const Dims4 &out = deconv ? o.shape.in : o.shape.out;
    s->kind = convKind(op);
    int64_t groups = o.shape.groups;
    dnnCheck(cudnnSetFilter4dDescriptor(s->w.get(), CUDNN_DATA_FLOAT,
                                        CUDNN_TENSOR_NCHW,
                                        toInt(out.c, "output channels"),
                                        toInt(in.c / groups, "input channels"),
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
    // fp32 plans compute in fp32: FMA-only algorithms (cuDNN's default
    // math would use TF32 tensor cores on Ampere and later).
    dnnCheck(cudnnSetConvolutionMathType(
                 s->conv.get(), tf32_ ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH),
             "set math type");
    setTensor(s->x, in);
    setTensor(s->y, out);
    size_t free = 0, total = 0;
    cudaMemGetInfo(&free, &total);
    // Decoders repeat their encoders' shapes: one search per shape.
    std::string key = fmt::format(
        "{} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {}", tf32_, int(s->kind),
        in.n, in.c, in.h, in.w, out.c, out.h, out.w, o.w->dims.h, o.w->dims.w,
        win.sh, win.sw, win.ph, win.pw, groups);
    auto cached = algoCache_.find(key);
    bool found = cached != algoCache_.end();
    if (found)
      s->algo = {cached->second.first, size_t(cached->second.second)};
    if (!found && search_) {
      // Measured on the kernel's own buffers: nothing has run yet, so
      // whatever the search writes is overwritten by the first step.
      reserveWorkspace(std::min<uint64_t>(kSearchWorkspace, free / 8));
      void *x, *w, *y;
      convPointers(c, x, w, y);
      try {
        s->algo = findAlgo(cudnn_, s->kind, s->x.get(), x, s->w.get(), w,
                           s->conv.get(), s->y.get(), y, workspace(),
                           workspaceBytes(), tf32_);
        found = true;
      } catch (const KernelError &) {
        // Fall back to the heuristics.
      }
    }
    if (!found) {
      uint64_t limit = std::min<uint64_t>(kMaxWorkspace, free / 4);
      s->algo =
          chooseAlgo(cudnn_, s->kind, s->x.get(), s->w.get(), s->conv.get(),
                     s->y.get(), std::max(limit, workspaceBytes()), tf32_);
    }
    reserveWorkspace(s->algo.bytes);
    algoCache_[key] = {s->algo.algo, uint64_t(s->algo.bytes)};
    s->algos[c.n] = s->algo;
    if ((op == Op::Conv2D || op == Op::Deconv2D) && c.in.size() > 2)
      setChannels(s->bias, o.y->dims.c);
    s->n = c.n;
    return s;
  }
  switch (op) {
  case Op::FC:
    if (c.in.size() > 2)
      setChannels(s->bias, c.out[0].count / c.n);
    break;
  case Op::BiasGrad:
    setChannels(s->bias, c.in[0].dims.c);
    break;
  case Op::LRN:
  case Op::LRNGrad: {
    const kernels::LrnParams &p = a.lrn;
    // cuDNN's window is centred for odd sizes only (the reference's rule,
    // Caffe's); its limits on n, k and beta are checked here, not in a step.
    if (p.size < CUDNN_LRN_MIN_N || p.size > CUDNN_LRN_MAX_N ||
        p.size % 2 == 0 || p.k < CUDNN_LRN_MIN_K || p.beta < CUDNN_LRN_MIN_BETA)
      throw KernelError(fmt::format(
          "lrn size {} k {} beta {} is not supported by the cuda backend "
          "(cuDNN: odd size in [{}, {}], k >= {}, beta >= {})",
          p.size, p.k, p.beta, CUDNN_LRN_MIN_N, CUDNN_LRN_MAX_N,
          CUDNN_LRN_MIN_K, CUDNN_LRN_MIN_BETA));
    dnnCheck(cudnnSetLRNDescriptor(s->lrn.get(), unsigned(p.size), p.alpha,
                                   p.beta, p.k),
             "set LRN descriptor");
    break;
  }
  case Op::BatchNorm:
  case Op::BatchNormGrad:
    if (a.eps < CUDNN_BN_MIN_EPSILON)
      throw KernelError(fmt::format("batch_norm eps {} is below cuDNN's {}",
                                    a.eps, CUDNN_BN_MIN_EPSILON));
    setTensor(s->x, c.in[0].dims);
    dnnCheck(cudnnDeriveBNTensorDescriptor(s->bias.get(), s->x.get(),
                                           CUDNN_BATCHNORM_SPATIAL),
             "derive batch-norm descriptor");
    break;
  case Op::AvgPool:
  case Op::AvgPoolGrad: {
    // Caffe's average divides by the window clipped to the padded input,
    // which is the whole window unless ceil mode adds a window that passes
    // it; cuDNN (including padding) always divides by the whole window and
    // has no ceil mode.
    const Dims4 &in = op == Op::AvgPool ? c.in[0].dims : c.out[0].dims;
    if (a.ceil && kernels::poolShape(in, a.win, true).out !=
                      kernels::poolShape(in, a.win, false).out)
      throw KernelError("avg_pool in ceil mode with a last window past the "
                        "padded input is not implemented on the cuda "
                        "backend yet");
    dnnCheck(cudnnSetPooling2dDescriptor(
                 s->pool.get(), CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING,
                 CUDNN_PROPAGATE_NAN, toInt(a.win.kh, "kernel"),
                 toInt(a.win.kw, "kernel"), toInt(a.win.ph, "pad"),
                 toInt(a.win.pw, "pad"), toInt(a.win.sh, "stride"),
                 toInt(a.win.sw, "stride")),
             "set pooling descriptor");
    break;
  }
  case Op::SoftmaxCrossEntropy:
  case Op::EuclideanLoss:
    s->scratch = allocate(kReduceWorkspaceBytes, "a loss's reduction");
    break;
  case Op::SoftmaxCrossEntropyGrad:
    s->scratch = allocate(uint64_t(c.n) * sizeof(double),
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
    SgdTensor t;
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
    upload(s->table->data(), &t, sizeof t);
    upload(s->chunks->data(), chunks.data(), chunks.size() * sizeof(SgdChunk));
    synchronize();
    s->tableCount = int64_t(chunks.size());
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

void CudaBackend::convPointers(const KernelCall &c, void *&x, void *&w,
                               void *&y) {
  exec::ConvOperands o = exec::convOperands(c.kernel.op, c.attrs, c.in, c.out);
  bool deconv = isDeconv(c.kernel.op);
  x = deconv ? o.y->data : o.x->data;
  y = deconv ? o.x->data : o.y->data;
  w = o.w->data;
}

void CudaBackend::runConv(const KernelCall &c, State &s) {
  const Op op = c.kernel.op;
  exec::ConvOperands o = exec::convOperands(op, c.attrs, c.in, c.out);
  bool deconv = isDeconv(op);
  // The conv view's pointers.
  void *x, *w, *y;
  convPointers(c, x, w, y);
  const float one = 1.0f, zero = 0.0f;
  void *ws = workspace();
  size_t wsBytes = s.algo.bytes;
  switch (s.kind) {
  case ConvKind::Forward:
    dnnCheck(cudnnConvolutionForward(cudnn_, &one, s.x.get(), x, s.w.get(), w,
                                     s.conv.get(),
                                     cudnnConvolutionFwdAlgo_t(s.algo.algo), ws,
                                     wsBytes, &zero, s.y.get(), y),
             "convolution forward");
    break;
  case ConvKind::BackwardData:
    dnnCheck(cudnnConvolutionBackwardData(
                 cudnn_, &one, s.w.get(), w, s.y.get(), y, s.conv.get(),
                 cudnnConvolutionBwdDataAlgo_t(s.algo.algo), ws, wsBytes, &zero,
                 s.x.get(), x),
             "convolution backward data");
    break;
  case ConvKind::BackwardFilter:
    dnnCheck(cudnnConvolutionBackwardFilter(
                 cudnn_, &one, s.x.get(), x, s.y.get(), y, s.conv.get(),
                 cudnnConvolutionBwdFilterAlgo_t(s.algo.algo), ws, wsBytes,
                 &zero, s.w.get(), w),
             "convolution backward filter");
    break;
  }
  if ((op == Op::Conv2D || op == Op::Deconv2D) && c.in.size() > 2)
    // The op's output: the conv view's output for conv2d, its input for
    // deconv2d.
    dnnCheck(cudnnAddTensor(cudnn_, &one, s.bias.get(), c.in[2].data, &one,
                            deconv ? s.x.get() : s.y.get(), o.y->data),
             "bias add");
}

void CudaBackend::run(const KernelCall &c) {
  const exec::KernelAttrs &a = c.attrs;
  const Op op = c.kernel.op;
  State &s = state(c);
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
    dnnCheck(cudnnConvolutionBackwardBias(cudnn_, &one, s.y.get(), in(0), &zero,
                                          s.bias.get(), out(0)),
             "bias gradient");
    return;
  case Op::LRN:
    dnnCheck(cudnnLRNCrossChannelForward(
                 cudnn_, s.lrn.get(), CUDNN_LRN_CROSS_CHANNEL_DIM1, &one,
                 s.x.get(), in(0), &zero, s.x.get(), out(0)),
             "LRN forward");
    return;
  case Op::LRNGrad:
    // in: grad, input, output.
    dnnCheck(cudnnLRNCrossChannelBackward(
                 cudnn_, s.lrn.get(), CUDNN_LRN_CROSS_CHANNEL_DIM1, &one,
                 s.x.get(), in(2), s.x.get(), in(0), s.x.get(), in(1), &zero,
                 s.x.get(), out(0)),
             "LRN backward");
    return;
  case Op::BatchNorm:
    // in: input, scale, shift, running mean, running variance.
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
    // in: grad, input, scale; out: input, scale and shift gradients. The
    // batch statistics are recomputed (no saved mean), as the reference's.
    dnnCheck(cudnnBatchNormalizationBackward(
                 cudnn_, CUDNN_BATCHNORM_SPATIAL, &one, &zero, &one, &zero,
                 s.x.get(), in(1), s.x.get(), in(0), s.x.get(), out(0),
                 s.bias.get(), in(2), out(1), out(2), a.eps, nullptr, nullptr),
             "batch norm backward");
    return;
  case Op::AvgPool:
    dnnCheck(cudnnPoolingForward(cudnn_, s.pool.get(), &one, s.x.get(), in(0),
                                 &zero, s.y.get(), out(0)),
             "average pool forward");
    return;
  case Op::AvgPoolGrad:
    // Average pooling reads neither the forward's output nor its input;
    // cuDNN still takes them, so dy and dx (their shapes) stand in.
    dnnCheck(cudnnPoolingBackward(cudnn_, s.pool.get(), &one, s.y.get(), in(0),
                                  s.y.get(), in(0), s.x.get(), out(0), &zero,
                                  s.x.get(), out(0)),
             "average pool backward");
    return;
  case Op::MaxPool:
    device::maxPoolForward(kernels::poolShape(c.in[0].dims, a.win, a.ceil),
                           in(0), out(0), c.out[1].i32(), st);
    return;
  case Op::Unpool:
    device::unpoolForward(
        kernels::unpoolShape(c.in[0].dims, a.win, a.sizeH, a.sizeW, a.posH,
                             a.posW, a.normalize),
        in(0), c.in.size() > 1 ? c.in[1].i32() : nullptr, out(0), st);
    return;
  case Op::UnpoolGrad:
    device::unpoolBackward(
        kernels::unpoolShape(c.out[0].dims, a.win, c.in[0].dims.h,
                             c.in[0].dims.w, a.posH, a.posW, a.normalize),
        in(0), c.in.size() > 1 ? c.in[1].i32() : nullptr, out(0), st);
    return;
  case Op::Relu:
    device::relu(c.in[0].count, in(0), out(0), st);
    return;
  case Op::ReluGrad:
    // in: grad, output.
    device::reluGrad(c.in[0].count, in(1), in(0), out(0), st);
    return;
  case Op::Add:
    device::add(c.in[0].count, in(0), in(1), out(0), st);
    return;
  case Op::Scale:
    device::scale(c.in[0].count, in(0), float(a.scale), out(0), st);
    return;
  case Op::Reshape:
  case Op::Flatten:
    // A view when planned in place; otherwise a copy.
    copy(c.out[0].data, c.in[0].data, uint64_t(c.in[0].count) * 4);
    return;
  case Op::Dropout:
  case Op::DropoutGrad:
    if (!c.ctx.training || a.ratio == 0) {
      copy(c.out[0].data, c.in[0].data, uint64_t(c.in[0].count) * 4);
      return;
    }
    device::dropout(c.in[0].count, a.ratio, a.seed, c.ctx.step,
                    c.dropoutFirst(), in(0), out(0), st);
    return;
  case Op::SoftmaxCrossEntropy: {
    int64_t n = c.in[0].dims.n;
    device::softmaxCrossEntropyForward(
        n, c.in[0].count / n, in(0), c.in[1].i32(),
        static_cast<double *>(s.scratch->data()), out(0), st);
    return;
  }
  case Op::SoftmaxCrossEntropyGrad: {
    int64_t n = c.in[0].dims.n;
    device::softmaxCrossEntropyBackward(
        n, c.in[0].count / n, in(0), c.in[1].i32(), float(a.scale),
        static_cast<double *>(s.scratch->data()), out(0), st);
    return;
  }
  case Op::EuclideanLoss:
    device::euclideanLossForward(c.in[0].dims.n, c.in[0].count, in(0), in(1),
                                 static_cast<double *>(s.scratch->data()),
                                 out(0), st);
    return;
  case Op::EuclideanLossGrad:
    device::euclideanLossBackward(c.in[0].dims.n, c.in[0].count, in(0), in(1),
                                  float(a.scale), out(0), nullptr, st);
    return;
  case Op::Objective:
    device::objective(static_cast<const ObjectiveTerm *>(s.table->data()),
                      s.tableCount, out(0), st);
    return;
  case Op::AllReduceMean: {
    for (size_t i = 0; i < c.in.size(); ++i)
      if (c.in[i].data != c.out[i].data)
        cudaCheck(cudaMemcpyAsync(c.out[i].data, c.in[i].data,
                                  size_t(c.in[i].count) * sizeof(float),
                                  cudaMemcpyDeviceToDevice, st),
                  "all_reduce_mean copy");
    // Without NCCL, one rank's mean is its gradient; with it, NCCL reduces
    // even a single rank (the path a multi-GPU run takes).
    if (!c.ctx.comm || (!reducesAcrossRanks() && c.ctx.comm->size() == 1))
      return;
    if (!nccl_ || &nccl_->ranks() != c.ctx.comm)
      nccl_ = std::make_unique<NcclReducer>(*c.ctx.comm, stream_);
    for (auto [first, last] : exec::contiguousRuns(c.out, sizeof(float))) {
      for (size_t i = first; i < last; ++i) { // the gaps: no NaN summed
        char *end = static_cast<char *>(c.out[i].data) +
                    size_t(c.out[i].count) * sizeof(float);
        cudaCheck(cudaMemsetAsync(end, 0,
                                  size_t(static_cast<char *>(
                                             c.out[i + 1].data) -
                                         end),
                                  st),
                  "all_reduce_mean gap");
      }
      float *begin = c.out[first].f32();
      float *end = c.out[last].f32() + c.out[last].count;
      nccl_->allReduceMean(begin, end - begin);
    }
    return;
  }
  case Op::SGDUpdate:
    // The hyper-parameters go by value at each launch (a captured graph
    // would need them in device memory instead).
    device::sgdMomentum(static_cast<const SgdTensor *>(s.table->data()),
                        static_cast<const SgdChunk *>(s.chunks->data()),
                        s.tableCount,
                        SgdHyper{c.ctx.lr, c.ctx.momentum, c.ctx.decay}, st);
    return;
  default:
    break;
  }
  throw KernelError(
      fmt::format("cuda backend: op '{}' not implemented", plan::opName(op)));
}

} // namespace netc::cuda
