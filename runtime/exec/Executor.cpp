//===- Executor.cpp - runs one program of a plan --------------------------===//

#include "runtime/exec/Executor.h"

#include "runtime/kernels/Storage.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <set>
#include <type_traits>

namespace netc::exec {

using kernels::KernelError;
using plan::Op;
using plan::PlanError;

//===----------------------------------------------------------------------===//
// Executor
//===----------------------------------------------------------------------===//

template <typename T>
ExecutorT<T>::ExecutorT(const plan::Plan &plan, const std::string &program,
                        ParamStoreT<T> &params, BackendT<T> &backend)
    : plan_(plan), program_(&plan.program(program)), params_(params),
      backend_(backend) {
  // The parameters must be where the kernels can read them.
  if (&params_.memory() != static_cast<Memory *>(&backend_) &&
      !(params_.memory().isHost() && backend_.isHost()))
    throw std::invalid_argument(
        fmt::format("program '{}': the parameters live in another backend's "
                    "memory than '{}'",
                    program, backend_.name()));
  for (auto &[id, v] : program_->values)
    if (!backend_.supports(v))
      throw PlanError(fmt::format(
          "{}: programs.{}: backend '{}' cannot run value {} ({}, {}){}",
          plan.file, program, backend_.name(), id, plan::dtypeName(v.dtype),
          plan::layoutName(v.layout),
          plan.precision == plan::Precision::BF16
              ? "; this trainer was compiled with --precision=bf16, which "
                "runs on the cuda backend (the reference backend emulates "
                "it, slowly), or recompile with --precision=fp32"
          : v.layout == plan::Layout::NHWC
              ? "; this trainer's maps are NHWC (netc --precision=tf32, or "
                "--layout=nhwc), as the GPU's tensor cores want them: it "
                "runs on the cuda backend (and, slowly, on the reference "
                "backend), or recompile with --precision=fp32 --layout=nchw"
              : ""));
  backend_.usePlan(plan);
  arena_ = backend_.allocate(
      std::max<uint64_t>(uint64_t(program_->arenaBytes) * kScale, 64),
      fmt::format("{}: the arena of program '{}'", plan.file, program));
  for (const plan::Kernel &k : program_->kernels) {
    attrs_.push_back(decodeAttrs(k));
    updates_.push_back(k.op == Op::SGDUpdate ? &params_.at(attrs_.back().param)
                                             : nullptr);
  }
  keepAfter_.assign(program_->kernels.size(), {});
  freeSpans_ = freeArenaSpans(*program_);
  // The calls at the planned batch (geometry checked), then the backend
  // prepares the program. The host reads and writes only the inputs and
  // outputs: the backend may lay out every other value as it likes.
  fullCalls_ = buildCalls(program_->batch);
  std::set<int64_t> hostValues;
  for (auto &[name, id] : program_->inputs)
    hostValues.insert(id);
  for (std::optional<int64_t> id : {program_->loss, program_->logits})
    if (id)
      hostValues.insert(*id);
  for (const plan::Term &t : program_->terms)
    hostValues.insert(t.value);
  for (const plan::Reconstruction &r : program_->reconstructions)
    hostValues.insert(r.value);
  for (auto &[name, id] : program_->otherOutputs)
    hostValues.insert(id);
  PreparedProgram prepared =
      backend_.prepareProgram(*program_, fullCalls_, hostValues);
  if (prepared.states.size() != fullCalls_.size())
    throw std::logic_error(fmt::format(
        "backend '{}' prepared {} kernel states for the {} kernels of "
        "program '{}'",
        backend_.name(), prepared.states.size(), fullCalls_.size(), program));
  states_ = std::move(prepared.states);
  blocked_ = std::move(prepared.blocked);
  elided_ = std::move(prepared.elided);
  summedEarly_ = std::move(prepared.summedEarly);
  // One workspace for the program: its kernels run one after another.
  uint64_t workspace = 0;
  for (const auto &state : states_)
    if (state)
      workspace = std::max(workspace, state->workspaceBytes());
  if (workspace > 0)
    workspace_ = backend_.allocate(
        workspace, fmt::format("{}: the kernels' workspace of program '{}'",
                               plan.file, program));
  for (size_t i = 0; i < fullCalls_.size(); ++i) {
    fullCalls_[i].state = states_[i].get();
    fullCalls_[i].workspace = workspace_ ? workspace_->data() : nullptr;
  }
}

template <typename T> ExecutorT<T>::~ExecutorT() {
  backend_.forgetProgram(this);
}

template <typename T>
std::vector<KernelCallT<T>> ExecutorT<T>::buildCalls(int64_t n) {
  // Shapes change with n: a plan may be right at its planned batch and
  // wrong at a smaller one (a fixed dimension where -1 belongs).
  checkProgram(plan_, *program_, attrs_, n);
  std::vector<KernelCallT<T>> calls;
  calls.reserve(program_->kernels.size());
  for (size_t i = 0; i < program_->kernels.size(); ++i) {
    const plan::Kernel &k = program_->kernels[i];
    KernelCallT<T> call{k, attrs_[i], {}, {}, n, ctx_, updates_[i]};
    call.in.reserve(k.in.size());
    call.out.reserve(k.out.size());
    for (int64_t id : k.in)
      call.in.push_back(ref(id, n));
    for (int64_t id : k.out)
      call.out.push_back(ref(id, n));
    if (i < states_.size())
      call.state = states_[i].get();
    call.workspace = workspace_ ? workspace_->data() : nullptr;
    if (freeSpans_[i].bytes > 0) {
      call.freeArena = static_cast<uint8_t *>(arena_->data()) +
                       freeSpans_[i].offset * kScale;
      call.freeArenaBytes = uint64_t(freeSpans_[i].bytes * kScale);
    }
    calls.push_back(std::move(call));
  }
  return calls;
}

template <typename T> void *ExecutorT<T>::address(int64_t id) const {
  const plan::Value &v = program_->value(id);
  if (v.isParam())
    return params_.at(v.param).value.data();
  return static_cast<uint8_t *>(arena_->data()) + v.offset * kScale;
}

template <typename T> void ExecutorT<T>::hostOnly() const {
  if (!backend_.isHost())
    throw std::logic_error(fmt::format("direct host access to the memory of "
                                       "backend '{}'",
                                       backend_.name()));
}

template <typename T> void ExecutorT<T>::plainOnly(int64_t id) const {
  if (!storageOf(id).plain())
    throw std::logic_error(fmt::format(
        "direct host access to value {} of program '{}', which backend '{}' "
        "stores in another format than the host's (use download())",
        id, program_->name, backend_.name()));
}

template <typename T>
kernels::Storage ExecutorT<T>::storageOf(int64_t id) const {
  const plan::Value &v = program_->value(id);
  kernels::Storage s;
  s.bf16 = v.dtype == plan::DType::BF16;
  auto it = blocked_.find(id);
  if (it != blocked_.end())
    s.lanes = it->second;
  else if (v.layout == plan::Layout::NHWC)
    s.lanes = dimsOf(v, 1).c;
  return s;
}

template <typename T> void ExecutorT<T>::computedOnly(int64_t id) const {
  if (elided_.count(id))
    throw std::logic_error(fmt::format(
        "value {} of program '{}' is never written: backend '{}' computes "
        "past it (a fused kernel)",
        id, program_->name, backend_.name()));
}

template <typename T> void *ExecutorT<T>::data(int64_t id) {
  hostOnly();
  plainOnly(id);
  return address(id);
}

template <typename T>
int64_t ExecutorT<T>::hostBytes(const plan::Value &v, int64_t n) const {
  return v.count(n) *
         (v.dtype == plan::DType::F32 || v.dtype == plan::DType::BF16
              ? int64_t(sizeof(T))
              : plan::dtypeSize(v.dtype));
}

template <typename T>
int64_t ExecutorT<T>::bytesOf(const plan::Value &v, int64_t n) const {
  // f32 values hold T (double in the gradient tests); others their size.
  return v.count(n) * (v.dtype == plan::DType::F32 ? int64_t(sizeof(T))
                                                   : plan::dtypeSize(v.dtype));
}

template <typename T> TensorRef ExecutorT<T>::ref(int64_t id, int64_t n) const {
  const plan::Value &v = program_->value(id);
  TensorRef t;
  t.data = address(id);
  t.dims = dimsOf(v, n);
  t.count = v.count(n);
  t.dtype = v.dtype;
  t.layout = v.layout;
  t.batched = v.hasBatch();
  return t;
}

template <typename T>
bool ExecutorT<T>::hasInput(const std::string &name) const {
  return program_->inputs.count(name) != 0;
}

template <typename T>
int64_t ExecutorT<T>::inputId(const std::string &name) const {
  auto it = program_->inputs.find(name);
  if (it == program_->inputs.end())
    throw PlanError(fmt::format("{}: programs.{}.inputs: no input '{}'",
                                plan_.file, program_->name, name));
  return it->second;
}

template <typename T>
const plan::Value &ExecutorT<T>::checkInput(int64_t id, uint64_t srcBytes,
                                            int64_t n) const {
  if (n < 1 || n > program_->batch)
    throw std::invalid_argument(
        fmt::format("program '{}': batch {} is not in [1, {}]", program_->name,
                    n, program_->batch));
  const plan::Value &v = program_->value(id);
  if (v.isParam())
    throw std::invalid_argument(
        fmt::format("program '{}': value {} is a parameter, not an input",
                    program_->name, id));
  if (srcBytes != uint64_t(hostBytes(v, n)))
    throw std::invalid_argument(fmt::format(
        "program '{}': input value {} takes {} bytes at batch {}, the source "
        "has {}",
        program_->name, id, hostBytes(v, n), n, srcBytes));
  return v;
}

template <typename T>
void ExecutorT<T>::upload(int64_t id, const void *src, uint64_t srcBytes,
                          int64_t n) {
  const plan::Value &v = checkInput(id, srcBytes, n);
  kernels::Storage s = storageOf(id);
  if (s.plain()) {
    backend_.upload(address(id), src, srcBytes);
    return;
  }
  if (v.dtype == plan::DType::U8) { // switches: bytes, relaid out here
    std::vector<uint8_t> stored(static_cast<size_t>(srcBytes));
    kernels::bytesToStorage(dimsOf(v, n), s.lanes,
                            static_cast<const uint8_t *>(src), stored.data());
    backend_.upload(address(id), stored.data(), srcBytes);
    backend_.synchronize(); // `stored` goes away
    return;
  }
  if constexpr (std::is_same_v<T, float>)
    backend_.uploadStored(address(id), s, dimsOf(v, n), src);
  else
    throw std::logic_error("a double executor holds no converted values");
}

template <typename T>
void ExecutorT<T>::uploadFrom(int64_t id, const Buffer &src, uint64_t srcBytes,
                              int64_t n) {
  const plan::Value &v = checkInput(id, srcBytes, n);
  if (srcBytes > src.bytes())
    throw std::invalid_argument(
        fmt::format("program '{}': input value {} takes {} bytes at batch {}, "
                    "the buffer has {}",
                    program_->name, id, srcBytes, n, src.bytes()));
  kernels::Storage s = storageOf(id);
  if (s.plain()) {
    backend_.copy(address(id), src.data(), srcBytes);
    return;
  }
  if (v.dtype == plan::DType::U8)
    throw std::invalid_argument(fmt::format(
        "program '{}': input value {} holds switches, which are relaid out "
        "on the host: upload() them",
        program_->name, id));
  if constexpr (std::is_same_v<T, float>)
    backend_.storeFrom(address(id), s, dimsOf(v, n), src.data());
  else
    throw std::logic_error("a double executor holds no converted values");
}

template <typename T>
void ExecutorT<T>::run(int64_t n, const StepContext &ctx) {
  if (n < 1 || n > program_->batch)
    throw std::invalid_argument(
        fmt::format("program '{}': batch {} is not in [1, {}]", program_->name,
                    n, program_->batch));
  // The planned batch's calls, or those of the one other batch size a phase
  // has (its epochs' last batch), built once per size.
  if (n != program_->batch && n != tailN_) {
    tailCalls_ = buildCalls(n);
    tailN_ = n;
  }
  const std::vector<KernelCallT<T>> &calls =
      n == program_->batch ? fullCalls_ : tailCalls_;
  ctx_ = ctx;
  // Graph capture needs the same kernels and addresses at every replay:
  // the planned batch's call list, unprofiled.
  using Run = typename BackendT<T>::ProgramRun;
  const Run how =
      backend_.beginProgram(this, n, ctx, !profiling_ && n == program_->batch);
  bool ran = how == Run::Replay;
  if (how == Run::Capture) {
    std::string error;
    try {
      runCalls(calls, n);
    } catch (const std::exception &e) {
      error = e.what();
      if (error.empty())
        error = "an error without a message";
    } catch (...) {
      error = "an unknown exception";
    }
    ran = backend_.endCapture(this, error);
  }
  if (!ran)
    runCalls(calls, n);
  lastN_ = n;
}

template <typename T>
void ExecutorT<T>::runCalls(const std::vector<KernelCallT<T>> &calls,
                            int64_t n) {
  using Clock = std::chrono::steady_clock;
  for (size_t i = 0; i < calls.size(); ++i) {
    const KernelCallT<T> &call = calls[i];
    try {
      if (profiling_) {
        backend_.synchronize();
        Clock::time_point t0 = Clock::now();
        backend_.run(call);
        backend_.synchronize();
        kernelSeconds_[i] +=
            std::chrono::duration<double>(Clock::now() - t0).count();
      } else {
        backend_.run(call);
      }
    } catch (const KernelError &e) {
      throw namedKernelError(call.kernel, e);
    }
    for (int64_t id : keepAfter_[i]) {
      Kept &kept = kept_.at(id);
      backend_.copy(kept.buffer->data(), address(id),
                    uint64_t(bytesOf(program_->value(id), n)));
      kept.written = true;
    }
  }
}

template <typename T> void ExecutorT<T>::setProfiling(bool on) {
  profiling_ = on;
  kernelSeconds_.resize(program_->kernels.size(), 0.0);
}

template <typename T> void ExecutorT<T>::keep(int64_t id) {
  const plan::Value &v = program_->value(id); // throws if unknown
  computedOnly(id);
  if (kept_.count(id))
    return;
  backend_.forgetProgram(this); // a recorded run lacks the new copy
  kept_[id].buffer =
      backend_.allocate(uint64_t(bytesOf(v, program_->batch)),
                        fmt::format("a kept copy of value {} of program '{}'",
                                    id, program_->name));
  keepAfter_.assign(program_->kernels.size(), {});
  for (auto &[kid, copy] : kept_) {
    // After the last kernel that writes it.
    for (size_t i = program_->kernels.size(); i-- > 0;) {
      const auto &outs = program_->kernels[i].out;
      if (std::find(outs.begin(), outs.end(), kid) != outs.end()) {
        keepAfter_[i].push_back(kid);
        break;
      }
    }
  }
}

template <typename T> const void *ExecutorT<T>::source(int64_t id) const {
  auto it = kept_.find(id);
  if (it == kept_.end() || !it->second.written)
    return address(id);
  return it->second.buffer->data();
}

template <typename T> const void *ExecutorT<T>::kept(int64_t id) {
  hostOnly();
  plainOnly(id);
  return source(id);
}

template <typename T>
template <typename U>
std::vector<U> ExecutorT<T>::download(int64_t id) {
  const plan::Value &v = program_->value(id);
  computedOnly(id);
  int64_t n = lastN_ ? lastN_ : program_->batch;
  if (int64_t(sizeof(U)) * v.count(n) != hostBytes(v, n))
    throw std::invalid_argument(
        fmt::format("program '{}': value {} is {}, not elements of {} bytes",
                    program_->name, id, plan::dtypeName(v.dtype), sizeof(U)));
  std::vector<U> out(size_t(v.count(n)));
  kernels::Storage s = storageOf(id);
  if (s.plain()) {
    backend_.download(out.data(), source(id), uint64_t(bytesOf(v, n)));
    return out;
  }
  std::vector<uint8_t> stored(size_t(bytesOf(v, n)));
  backend_.download(stored.data(), source(id), stored.size());
  if (v.dtype == plan::DType::U8) { // switches
    kernels::bytesFromStorage(dimsOf(v, n), s.lanes, stored.data(),
                              reinterpret_cast<uint8_t *>(out.data()));
    return out;
  }
  static_assert(sizeof(U) == 4 || sizeof(U) == 1 || !std::is_same_v<T, float>);
  kernels::fromStorage(dimsOf(v, n), s, stored.data(),
                       reinterpret_cast<uint32_t *>(out.data()));
  return out;
}

template <typename T> T ExecutorT<T>::scalar(int64_t id) {
  if (program_->value(id).dtype == plan::DType::BF16) {
    cuda::Bf16 h;
    backend_.download(&h, source(id), sizeof h);
    return T(h.toFloat());
  }
  plainOnly(id);
  T v;
  backend_.download(&v, source(id), sizeof(T));
  return v;
}

template class ExecutorT<float>;
template class ExecutorT<double>;
template std::vector<float> ExecutorT<float>::download<float>(int64_t);
template std::vector<int32_t> ExecutorT<float>::download<int32_t>(int64_t);
template std::vector<double> ExecutorT<double>::download<double>(int64_t);
template std::vector<int32_t> ExecutorT<double>::download<int32_t>(int64_t);
template std::vector<uint8_t> ExecutorT<float>::download<uint8_t>(int64_t);
template std::vector<uint8_t> ExecutorT<double>::download<uint8_t>(int64_t);

} // namespace netc::exec
