//===- Executor.cpp - runs one program of a plan --------------------------===//

#include "runtime/exec/Executor.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

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
  allocateHost(
      arena_, std::max<uint64_t>(uint64_t(program_->arenaBytes) * kScale, 64),
      uint8_t(0),
      fmt::format("{}: the arena of program '{}'", plan.file, program));
  for (const plan::Kernel &k : program_->kernels) {
    attrs_.push_back(decodeAttrs(k));
    updates_.push_back(k.op == Op::SGDUpdate ? &params_.at(attrs_.back().param)
                                             : nullptr);
  }
  keepAfter_.assign(program_->kernels.size(), {});
  // Check every kernel's geometry at the planned batch.
  for (size_t i = 0; i < program_->kernels.size(); ++i) {
    const plan::Kernel &k = program_->kernels[i];
    std::vector<TensorRef> in, out;
    for (int64_t id : k.in)
      in.push_back(ref(id, program_->batch));
    for (int64_t id : k.out)
      out.push_back(ref(id, program_->batch));
    try {
      checkGeometry(k, attrs_[i], in, out, *program_,
                    updates_[i] ? int64_t(updates_[i]->value.size()) : 0);
    } catch (const KernelError &e) {
      throw PlanError(
          fmt::format("{}: '{}': {}", k.path, plan::opName(k.op), e.what()));
    }
  }
}

template <typename T> void *ExecutorT<T>::data(int64_t id) {
  const plan::Value &v = program_->value(id);
  if (v.isParam())
    return params_.at(v.param).value.data();
  return arena_.data() + v.offset * kScale;
}

template <typename T>
int64_t ExecutorT<T>::bytesOf(const plan::Value &v, int64_t n) const {
  return v.count(n) *
         (v.dtype == plan::DType::F32 ? int64_t(sizeof(T)) : int64_t(4));
}

template <typename T> TensorRef ExecutorT<T>::ref(int64_t id, int64_t n) {
  const plan::Value &v = program_->value(id);
  TensorRef t;
  t.data = data(id);
  t.dims = dimsOf(v, n);
  t.count = v.count(n);
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
void ExecutorT<T>::run(int64_t n, const StepContext &ctx) {
  if (n < 1 || n > program_->batch)
    throw std::invalid_argument(
        fmt::format("program '{}': batch {} is not in [1, {}]", program_->name,
                    n, program_->batch));
  for (size_t i = 0; i < program_->kernels.size(); ++i) {
    const plan::Kernel &k = program_->kernels[i];
    KernelCallT<T> call{k, attrs_[i], {}, {}, n, ctx, updates_[i]};
    call.in.reserve(k.in.size());
    for (int64_t id : k.in)
      call.in.push_back(ref(id, n));
    for (int64_t id : k.out)
      call.out.push_back(ref(id, n));
    try {
      backend_.run(call);
    } catch (const KernelError &e) {
      throw KernelError(
          fmt::format("{}: '{}': {}", k.path, plan::opName(k.op), e.what()));
    }
    for (int64_t id : keepAfter_[i]) {
      std::vector<uint8_t> &copy = kept_[id];
      const plan::Value &v = program_->value(id);
      copy.resize(size_t(bytesOf(v, n)));
      std::memcpy(copy.data(), data(id), copy.size());
    }
  }
}

template <typename T> void ExecutorT<T>::keep(int64_t id) {
  program_->value(id); // throws if unknown
  if (kept_.count(id))
    return;
  kept_[id];
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

template <typename T> const void *ExecutorT<T>::kept(int64_t id) {
  auto it = kept_.find(id);
  if (it == kept_.end() || it->second.empty())
    return data(id);
  return it->second.data();
}

template class ExecutorT<float>;
template class ExecutorT<double>;

} // namespace netc::exec
