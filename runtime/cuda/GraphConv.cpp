//===- GraphConv.cpp - convolutions through cuDNN's graph API -------------===//
//
// The backend API is a set of opaque descriptors whose attributes are set,
// then finalized: tensors, a convolution, its operation (and the pointwise
// operations of a fused epilogue), the operation graph, heuristics, engine
// configurations, execution plans and, per run, a variant pack of pointers.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/GraphConv.h"

#include <cuda_runtime_api.h>
#include <cudnn.h>
#include <fmt/format.h>

#include <algorithm>
#include <set>
#include <stdexcept>
#include <utility>
#include <vector>

namespace netc::cuda {

using kernels::Dims4;
using kernels::KernelError;

namespace {

/// A graph-API call that failed while building or choosing: make() turns
/// it into a null result with the reason.
struct GraphError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void check(cudnnStatus_t s, const char *what) {
  if (s != CUDNN_STATUS_SUCCESS)
    throw GraphError(fmt::format("{}: {}", what, cudnnGetErrorString(s)));
}

/// One owned backend descriptor.
class Descriptor {
public:
  explicit Descriptor(cudnnBackendDescriptorType_t type) {
    check(cudnnBackendCreateDescriptor(type, &d_), "create a descriptor");
  }
  ~Descriptor() {
    if (d_)
      cudnnBackendDestroyDescriptor(d_);
  }
  Descriptor(Descriptor &&o) noexcept : d_(std::exchange(o.d_, nullptr)) {}
  Descriptor &operator=(Descriptor &&o) noexcept {
    std::swap(d_, o.d_);
    return *this;
  }
  cudnnBackendDescriptor_t get() const { return d_; }
  /// Gives the descriptor up (the caller destroys it).
  cudnnBackendDescriptor_t release() { return std::exchange(d_, nullptr); }

  template <typename T>
  Descriptor &set(cudnnBackendAttributeName_t name,
                  cudnnBackendAttributeType_t type, const T *values,
                  int64_t count, const char *what) {
    check(cudnnBackendSetAttribute(d_, name, type, count, values), what);
    return *this;
  }
  template <typename T>
  Descriptor &set(cudnnBackendAttributeName_t name,
                  cudnnBackendAttributeType_t type, const T &value,
                  const char *what) {
    return set(name, type, &value, 1, what);
  }
  /// Points attribute `name` at descriptor `d` (a raw handle: it stays
  /// the same when the Descriptor owning it moves).
  Descriptor &setDesc(cudnnBackendAttributeName_t name,
                      cudnnBackendDescriptor_t d, const char *what) {
    return set(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, &d, 1, what);
  }
  Descriptor &finalize(const char *what) {
    check(cudnnBackendFinalize(d_), what);
    return *this;
  }

private:
  cudnnBackendDescriptor_t d_ = nullptr;
};

// Tensor ids in the graph and the variant pack.
constexpr int64_t kX = 1, kW = 2, kY = 3, kBias = 4, kConvOut = 5, kBiased = 6;

/// Strides of [N, C, H, W] dims, channels innermost or rows innermost.
std::vector<int64_t> stridesOf(const Dims4 &d, bool channelsLast) {
  if (channelsLast)
    return {d.h * d.w * d.c, 1, d.w * d.c, d.c};
  return {d.c * d.h * d.w, d.h * d.w, d.w, 1};
}

Descriptor tensor(int64_t uid, const Dims4 &d, bool channelsLast,
                  cudnnDataType_t type, bool isVirtual = false) {
  const int64_t dims[4] = {d.n, d.c, d.h, d.w};
  const std::vector<int64_t> strides = stridesOf(d, channelsLast);
  // Arena offsets are 64-byte aligned (net-plan-memory), and so are the
  // backend's own buffers.
  const int64_t alignment = 16;
  Descriptor t(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  t.set(CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, type, "tensor type")
      .set(CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, dims, 4,
           "tensor dims")
      .set(CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, strides.data(), 4,
           "tensor strides")
      .set(CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, uid, "tensor id")
      .set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, alignment,
           "tensor alignment");
  if (isVirtual) {
    const bool yes = true;
    t.set(CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, yes,
          "virtual tensor");
  }
  t.finalize("finalize a tensor");
  return t;
}

Descriptor pointwise(cudnnPointwiseMode_t mode) {
  Descriptor p(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
  p.set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, mode,
        "pointwise mode")
      .set(CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE,
           CUDNN_DATA_FLOAT, "pointwise precision")
      .finalize("finalize a pointwise descriptor");
  return p;
}

/// The operation graph of `p`, owning every descriptor it refers to.
struct Graph {
  std::vector<Descriptor> parts; // tensors and operations, kept alive
  Descriptor graph{CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR};
};

Graph buildGraph(cudnnHandle_t handle, const GraphConvProblem &p) {
  Graph g;
  // Keeps `d` alive with the graph and returns its handle.
  auto keep = [&](Descriptor d) {
    g.parts.push_back(std::move(d));
    return g.parts.back().get();
  };
  const cudnnDataType_t io = p.bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
  const bool epilogue = p.kind == ConvKind::Forward && (p.bias || p.relu);
  // The convolution writes y, or an fp32 intermediate its epilogue reads.
  const cudnnBackendDescriptor_t x = keep(tensor(kX, p.x, p.nhwc, io));
  const cudnnBackendDescriptor_t w = keep(tensor(kW, p.w, p.nhwc, io));
  const cudnnBackendDescriptor_t convOut =
      keep(epilogue ? tensor(kConvOut, p.y, p.nhwc, CUDNN_DATA_FLOAT,
                             /*isVirtual=*/true)
                    : tensor(kY, p.y, p.nhwc, io));

  const int64_t spatial = 2, dilation[2] = {1, 1},
                stride[2] = {p.strideH, p.strideW}, pad[2] = {p.padH, p.padW};
  Descriptor convDesc(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR);
  convDesc
      .set(CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE,
           CUDNN_DATA_FLOAT, "convolution compute type")
      .set(CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE,
           CUDNN_CROSS_CORRELATION, "convolution mode")
      .set(CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, spatial,
           "convolution dims")
      .set(CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, dilation, 2,
           "convolution dilations")
      .set(CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, stride, 2,
           "convolution strides")
      .set(CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, pad, 2,
           "convolution paddings")
      .set(CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, pad, 2,
           "convolution paddings")
      .finalize("finalize the convolution");
  const cudnnBackendDescriptor_t conv = keep(std::move(convDesc));

  // The convolution operation: its descriptor type and the attributes of
  // its operands, by direction.
  struct Names {
    cudnnBackendDescriptorType_t type;
    cudnnBackendAttributeName_t x, w, y, conv, alpha, beta;
  };
  Names n{};
  switch (p.kind) {
  case ConvKind::Forward:
    n = {CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR,
         CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X,
         CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W,
         CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y,
         CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC,
         CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA,
         CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA};
    break;
  case ConvKind::BackwardData:
    n = {CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR,
         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX,
         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W,
         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY,
         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC,
         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA,
         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA};
    break;
  case ConvKind::BackwardFilter:
    n = {CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR,
         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X,
         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW,
         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY,
         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC,
         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA,
         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_BETA};
    break;
  }
  // alpha and beta in the compute type (fp32).
  const float alpha = 1.0f, beta = 0.0f;
  Descriptor op(n.type);
  op.setDesc(n.x, x, "convolution x")
      .setDesc(n.w, w, "convolution w")
      .setDesc(n.y, convOut, "convolution y")
      .setDesc(n.conv, conv, "convolution descriptor")
      .set(n.alpha, CUDNN_TYPE_FLOAT, alpha, "convolution alpha")
      .set(n.beta, CUDNN_TYPE_FLOAT, beta, "convolution beta")
      .finalize("finalize the convolution operation");
  std::vector<cudnnBackendDescriptor_t> ops = {keep(std::move(op))};

  if (epilogue) {
    // conv -> (+ bias) -> (relu) -> y; the intermediates stay fp32 and
    // virtual (never written to memory).
    cudnnBackendDescriptor_t last = convOut;
    auto pointwiseOp = [&](cudnnPointwiseMode_t mode,
                           cudnnBackendDescriptor_t b, int64_t outUid) {
      const bool isY = outUid == kY;
      const cudnnBackendDescriptor_t out =
          keep(isY ? tensor(kY, p.y, p.nhwc, io)
                   : tensor(outUid, p.y, p.nhwc, CUDNN_DATA_FLOAT,
                            /*isVirtual=*/true));
      const cudnnBackendDescriptor_t pw = keep(pointwise(mode));
      Descriptor pwOp(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
      pwOp.setDesc(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, pw,
                   "pointwise descriptor")
          .setDesc(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, last, "pointwise x");
      if (b)
        pwOp.setDesc(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, b, "pointwise b");
      pwOp.setDesc(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, out, "pointwise y")
          .finalize("finalize a pointwise operation");
      ops.push_back(keep(std::move(pwOp)));
      last = out;
    };
    if (p.bias) {
      const cudnnBackendDescriptor_t bias =
          keep(tensor(kBias, Dims4{1, p.y.c, 1, 1}, p.nhwc, CUDNN_DATA_FLOAT));
      pointwiseOp(CUDNN_POINTWISE_ADD, bias, p.relu ? kBiased : kY);
    }
    if (p.relu)
      pointwiseOp(CUDNN_POINTWISE_RELU_FWD, nullptr, kY);
  }

  g.graph
      .set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
           ops.data(), int64_t(ops.size()), "graph operations")
      .set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, handle,
           "graph handle")
      .finalize("finalize the operation graph");
  return g;
}

/// One engine configuration the heuristics offered, with what the choice
/// needs to know about it.
struct Candidate {
  Descriptor config{CUDNN_BACKEND_ENGINECFG_DESCRIPTOR};
  std::string identity;
  bool deterministic = true;
  bool compiles = false; ///< runtime-compiled (NVRTC at finalize)
  Descriptor plan{CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR};
  uint64_t bytes = 0;
  float ms = -1.0f;
};

/// The configurations heuristics `mode` lists for `graph`, best first
/// (none where the mode does not apply to it).
std::vector<Descriptor> heuristics(const Descriptor &graph,
                                   cudnnBackendHeurMode_t mode) {
  std::vector<Descriptor> configs;
  try {
    Descriptor heur(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
    heur.setDesc(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph.get(),
                 "heuristics graph")
        .set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, mode,
             "heuristics mode")
        .finalize("finalize the heuristics");
    int64_t count = 0;
    check(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                   CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count,
                                   nullptr),
          "count the heuristics' results");
    std::vector<cudnnBackendDescriptor_t> raw;
    for (int64_t i = 0; i < count; ++i) {
      configs.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
      raw.push_back(configs.back().get());
    }
    int64_t returned = 0;
    check(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                   CUDNN_TYPE_BACKEND_DESCRIPTOR, count,
                                   &returned, raw.data()),
          "read the heuristics' results");
    configs.erase(configs.begin() + std::clamp<int64_t>(returned, 0, count),
                  configs.end());
  } catch (const GraphError &) {
    configs.clear();
  }
  return configs;
}

/// Fills `c`'s identity and notes from its engine; false if it computes
/// otherwise than the problem asks (then it is not a candidate).
bool describe(Candidate &c, const GraphConvProblem &p) {
  Descriptor engine(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
  cudnnBackendDescriptor_t raw = engine.get();
  int64_t n = 0;
  check(cudnnBackendGetAttribute(c.config.get(), CUDNN_ATTR_ENGINECFG_ENGINE,
                                 CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n, &raw),
        "read a configuration's engine");
  int64_t index = -1;
  check(cudnnBackendGetAttribute(engine.get(), CUDNN_ATTR_ENGINE_GLOBAL_INDEX,
                                 CUDNN_TYPE_INT64, 1, &n, &index),
        "read an engine's index");
  cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
  int64_t noteCount = 0;
  check(cudnnBackendGetAttribute(engine.get(), CUDNN_ATTR_ENGINE_NUMERICAL_NOTE,
                                 CUDNN_TYPE_NUMERICAL_NOTE,
                                 CUDNN_NUMERICAL_NOTE_TYPE_COUNT, &noteCount,
                                 notes),
        "read an engine's numerical notes");
  for (int64_t i = 0;
       i < std::min<int64_t>(noteCount, CUDNN_NUMERICAL_NOTE_TYPE_COUNT); ++i)
    switch (notes[i]) {
    case CUDNN_NUMERICAL_NOTE_TENSOR_CORE:
      if (!p.tensorOps)
        return false; // fp32 plans compute in fp32 (TF32 would round)
      break;
    case CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS:
    case CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION:
      return false; // inputs to fp16, or sums below fp32
    case CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC:
      c.deterministic = false;
      break;
    default:
      break;
    }
  cudnnBackendBehaviorNote_t behavior[CUDNN_BEHAVIOR_NOTE_TYPE_COUNT];
  int64_t behaviorCount = 0;
  if (cudnnBackendGetAttribute(engine.get(), CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE,
                               CUDNN_TYPE_BEHAVIOR_NOTE,
                               CUDNN_BEHAVIOR_NOTE_TYPE_COUNT, &behaviorCount,
                               behavior) == CUDNN_STATUS_SUCCESS)
    for (int64_t i = 0;
         i < std::min<int64_t>(behaviorCount, CUDNN_BEHAVIOR_NOTE_TYPE_COUNT);
         ++i)
      c.compiles |= behavior[i] == CUDNN_BEHAVIOR_NOTE_RUNTIME_COMPILATION;

  // The knob choices, in the order the configuration lists them.
  std::vector<Descriptor> knobs;
  std::vector<cudnnBackendDescriptor_t> rawKnobs;
  for (int i = 0; i < int(CUDNN_KNOB_TYPE_COUNTS); ++i) {
    knobs.emplace_back(CUDNN_BACKEND_KNOB_CHOICE_DESCRIPTOR);
    rawKnobs.push_back(knobs.back().get());
  }
  int64_t knobCount = 0;
  check(cudnnBackendGetAttribute(
            c.config.get(), CUDNN_ATTR_ENGINECFG_KNOB_CHOICES,
            CUDNN_TYPE_BACKEND_DESCRIPTOR, int64_t(rawKnobs.size()), &knobCount,
            rawKnobs.data()),
        "read a configuration's knobs");
  c.identity = fmt::format("engine {} knobs", index);
  for (int64_t i = 0; i < std::min<int64_t>(knobCount, int64_t(knobs.size()));
       ++i) {
    cudnnBackendKnobType_t type{};
    int64_t value = 0;
    check(cudnnBackendGetAttribute(knobs[size_t(i)].get(),
                                   CUDNN_ATTR_KNOB_CHOICE_KNOB_TYPE,
                                   CUDNN_TYPE_KNOB_TYPE, 1, &n, &type),
          "read a knob's type");
    check(cudnnBackendGetAttribute(knobs[size_t(i)].get(),
                                   CUDNN_ATTR_KNOB_CHOICE_KNOB_VALUE,
                                   CUDNN_TYPE_INT64, 1, &n, &value),
          "read a knob's value");
    c.identity += fmt::format("{}{}={}", i ? "," : " ", int(type), value);
  }
  return true;
}

/// Finalizes `c`'s plan and reads its workspace; false if cuDNN cannot
/// build it for this problem.
bool finalizePlan(Candidate &c, cudnnHandle_t handle) {
  try {
    cudnnBackendDescriptor_t config = c.config.get();
    c.plan
        .set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, handle,
             "plan handle")
        .set(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG,
             CUDNN_TYPE_BACKEND_DESCRIPTOR, &config, 1, "plan configuration")
        .finalize("finalize a plan");
    int64_t bytes = 0, n = 0;
    check(cudnnBackendGetAttribute(c.plan.get(),
                                   CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                   CUDNN_TYPE_INT64, 1, &n, &bytes),
          "read a plan's workspace");
    if (bytes < 0)
      return false;
    c.bytes = uint64_t(bytes);
    return true;
  } catch (const GraphError &) {
    return false;
  }
}

cudnnStatus_t execute(cudnnHandle_t handle, cudnnBackendDescriptor_t plan,
                      const GraphConvOperands &o, bool bias, void *ws) {
  int64_t uids[4] = {kX, kW, kY, kBias};
  void *ptrs[4] = {o.x, o.w, o.y, const_cast<float *>(o.bias)};
  const int64_t count = bias ? 4 : 3;
  cudnnBackendDescriptor_t pack = nullptr;
  cudnnStatus_t s = cudnnBackendCreateDescriptor(
      CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &pack);
  if (s != CUDNN_STATUS_SUCCESS)
    return s;
  s = cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS,
                               CUDNN_TYPE_INT64, count, uids);
  if (s == CUDNN_STATUS_SUCCESS)
    s = cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS,
                                 CUDNN_TYPE_VOID_PTR, count, ptrs);
  if (s == CUDNN_STATUS_SUCCESS)
    s = cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE,
                                 CUDNN_TYPE_VOID_PTR, 1, &ws);
  if (s == CUDNN_STATUS_SUCCESS)
    s = cudnnBackendFinalize(pack);
  if (s == CUDNN_STATUS_SUCCESS)
    s = cudnnBackendExecute(handle, plan, pack);
  cudnnBackendDestroyDescriptor(pack);
  return s;
}

/// Milliseconds per run of `plan` on `o` (timeRuns: one run, then `runs`
/// timed ones); negative if a run fails.
float timePlan(cudnnHandle_t handle, CUstream_st *stream,
               cudnnBackendDescriptor_t plan, const GraphConvOperands &o,
               bool bias, void *ws, int runs) {
  return timeRuns(
      stream,
      [&] {
        return execute(handle, plan, o, bias, ws) == CUDNN_STATUS_SUCCESS;
      },
      runs);
}

/// At most this many candidates are finalized and timed: the heuristics
/// rank them, and the first are the likely fastest. Of them, at most
/// kMaxCompiled runtime-compiled ones (their finalize runs NVRTC, about a
/// second each, whether or not it succeeds) where the graph has an
/// epilogue, which only such engines fuse; none for a plain convolution,
/// which the precompiled engines cover (a VGG-16 step has about 30 shapes
/// of convolution).
constexpr size_t kMaxCandidates = 12, kMaxCompiled = 2;

} // namespace

float timeRuns(CUstream_st *stream, const std::function<bool()> &run,
               int runs) {
  cudaEvent_t start = nullptr, stop = nullptr;
  if (cudaEventCreate(&start) != cudaSuccess ||
      cudaEventCreate(&stop) != cudaSuccess) {
    (void)cudaGetLastError();
    if (start)
      cudaEventDestroy(start);
    return -1.0f;
  }
  float ms = -1.0f;
  bool ok = run() && cudaEventRecord(start, stream) == cudaSuccess;
  for (int i = 0; ok && i < runs; ++i)
    ok = run();
  ok = ok && cudaEventRecord(stop, stream) == cudaSuccess &&
       cudaEventSynchronize(stop) == cudaSuccess &&
       cudaEventElapsedTime(&ms, start, stop) == cudaSuccess;
  if (!ok) {
    // A failed launch is not sticky; drain the stream so that what is
    // timed next is timed alone.
    (void)cudaStreamSynchronize(stream);
    (void)cudaGetLastError();
    ms = -1.0f;
  } else {
    ms /= float(std::max(runs, 1));
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms;
}

std::string GraphConvProblem::key() const {
  const char *direction = kind == ConvKind::Forward        ? "fwd"
                          : kind == ConvKind::BackwardData ? "dgrad"
                                                           : "wgrad";
  return fmt::format("{} {} {}{} x {}x{}x{}x{} w {}x{}x{}x{} y {}x{}x{}x{} s "
                     "{}x{} p {}x{}{}{}",
                     direction, bf16 ? "bf16" : "f32", nhwc ? "nhwc" : "nchw",
                     tensorOps ? " tensor-ops" : "", x.n, x.c, x.h, x.w, w.n,
                     w.c, w.h, w.w, y.n, y.c, y.h, y.w, strideH, strideW, padH,
                     padW, bias ? " bias" : "", relu ? " relu" : "");
}

/// What a GraphConv keeps: its plan, and the graph and configuration the
/// plan was made from (cuDNN's frontend keeps them alive with a plan too).
struct GraphConv::Owned {
  Graph graph;
  Descriptor config, plan;
};

std::unique_ptr<GraphConv> GraphConv::make(const GraphConvProblem &p,
                                           const GraphConvOperands &o,
                                           const GraphConvSearch &search,
                                           std::string &why, bool &lasting) {
  lasting = false;
  try {
    Graph g = buildGraph(search.handle, p);
    // Every configuration of mode A, then the fallback's not already
    // listed, in the heuristics' order; those that compute as asked are
    // the candidates (only the remembered one, if there is one). The
    // counts say what became of the others, for `why`.
    std::vector<Candidate> queue;
    std::set<std::string> seen;
    size_t offered = 0, unreadable = 0, notes = 0;
    for (cudnnBackendHeurMode_t mode :
         {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK})
      for (Descriptor &config : heuristics(g.graph, mode)) {
        Candidate c;
        c.config = std::move(config);
        bool usable = false;
        try {
          usable = describe(c, p);
        } catch (const GraphError &) {
          ++offered;
          ++unreadable;
          continue;
        }
        if (!seen.insert(c.identity).second)
          continue; // listed by mode A too
        ++offered;
        if (!usable)
          ++notes;
        else if (search.cached.empty() || c.identity == search.cached)
          queue.push_back(std::move(c));
      }
    // Plans for the first candidates: at most kMaxCandidates, of which at
    // most maxCompiled compiled at run time; each run before it is taken
    // (an engine can build and still fail to run). Searching, every plan
    // is timed; otherwise (the remembered plan, or the search off) the
    // first that runs is taken.
    const bool timeAll = search.time && search.cached.empty();
    // With the search off, the deterministic candidates first (in the
    // heuristics' order), as the legacy heuristics' choice does: an
    // atomics-based engine only where no deterministic one runs.
    if (!search.time && search.cached.empty())
      std::stable_partition(queue.begin(), queue.end(),
                            [](const Candidate &c) { return c.deterministic; });
    const size_t maxCompiled = p.bias || p.relu ? kMaxCompiled : 0;
    std::vector<Candidate> list;
    size_t unbuilt = 0, tooBig = 0, capped = 0, failed = 0, compiled = 0;
    for (Candidate &c : queue) {
      if (list.size() >= kMaxCandidates ||
          (c.compiles && compiled >= maxCompiled)) {
        ++capped;
        continue;
      }
      compiled += c.compiles; // NVRTC runs whether or not it builds
      if (!finalizePlan(c, search.handle)) {
        ++unbuilt;
        continue;
      }
      if (c.bytes > search.workspaceLimit) {
        ++tooBig;
        continue;
      }
      if (!timeAll) {
        c.ms = timePlan(search.handle, search.stream, c.plan.get(), o, p.bias,
                        search.workspace(c.bytes), 0);
        if (c.ms < 0.0f) {
          ++failed;
          continue;
        }
      }
      list.push_back(std::move(c));
      if (!timeAll)
        break;
    }
    auto counts = [&] {
      return fmt::format(
          "the heuristics offered {} configurations: {} unreadable, {} "
          "computing otherwise than asked (numerical notes), {} that did not "
          "build, {} over the workspace limit ({} bytes), {} that failed to "
          "run, {} beyond the {} tried",
          offered, unreadable, notes, unbuilt, tooBig, search.workspaceLimit,
          failed, capped, kMaxCandidates);
    };
    if (timeAll && !list.empty()) {
      uint64_t most = 0;
      for (const Candidate &c : list)
        most = std::max(most, c.bytes);
      void *ws = search.workspace(most);
      for (Candidate &c : list) {
        c.ms = timePlan(search.handle, search.stream, c.plan.get(), o, p.bias,
                        ws, 3);
        failed += c.ms < 0.0f;
      }
    }
    // The fastest within `limit`, or a deterministic one within 10% of it;
    // SIZE_MAX if none ran.
    auto pick = [&](uint64_t limit) {
      size_t fastest = SIZE_MAX, deterministic = SIZE_MAX;
      for (size_t i = 0; i < list.size(); ++i) {
        const Candidate &c = list[i];
        if (c.ms < 0.0f || c.bytes > limit)
          continue;
        if (fastest == SIZE_MAX || c.ms < list[fastest].ms)
          fastest = i;
        if (c.deterministic &&
            (deterministic == SIZE_MAX || c.ms < list[deterministic].ms))
          deterministic = i;
      }
      if (deterministic != SIZE_MAX &&
          list[deterministic].ms <= 1.1f * list[fastest].ms)
        return deterministic;
      return fastest;
    };
    size_t chosen = pick(search.workspaceLimit);
    if (chosen == SIZE_MAX) {
      if (!search.cached.empty()) {
        why = fmt::format("the remembered plan ({}) is no longer offered, or "
                          "no longer runs, within the workspace; {}",
                          search.cached, counts());
        return nullptr;
      }
      why = counts();
      // Holds for this GPU and cuDNN unless the workspace or a failed run
      // (which may be passing) was the reason.
      lasting = tooBig == 0 && failed == 0;
      return nullptr;
    }
    if (timeAll && list[chosen].bytes > search.preferredWorkspace) {
      size_t within = pick(search.preferredWorkspace);
      // Not at the price of determinism.
      if (within != SIZE_MAX && list[within].ms <= 1.1f * list[chosen].ms &&
          (list[within].deterministic || !list[chosen].deterministic))
        chosen = within;
    }
    Candidate &c = list[chosen];
    std::unique_ptr<GraphConv> conv(new GraphConv);
    conv->plan_ = c.plan.get();
    conv->bytes_ = c.bytes;
    conv->bias_ = p.bias;
    conv->ms_ = timeAll ? c.ms : -1.0f;
    conv->identity_ = std::move(c.identity);
    conv->owned_.reset(
        new Owned{std::move(g), std::move(c.config), std::move(c.plan)});
    return conv;
  } catch (const GraphError &e) {
    why = e.what();
    return nullptr;
  }
}

float GraphConv::measure(cudnnContext *handle, CUstream_st *stream,
                         const GraphConvOperands &o, void *workspace) const {
  return timePlan(handle, stream, plan_, o, bias_, workspace, 3);
}

GraphConv::~GraphConv() = default;

void GraphConv::run(cudnnContext *handle, const GraphConvOperands &o,
                    void *workspace) const {
  cudnnStatus_t s = execute(handle, plan_, o, bias_, workspace);
  if (s != CUDNN_STATUS_SUCCESS)
    throw KernelError(fmt::format("cuDNN graph convolution ({}): {}", identity_,
                                  cudnnGetErrorString(s)));
}

} // namespace netc::cuda
