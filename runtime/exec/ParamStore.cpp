//===- ParamStore.cpp - parameter values and momentum buffers -------------===//

#include "runtime/exec/ParamStore.h"
#include "runtime/io/File.h"
#include "runtime/io/Hash.h"
#include "runtime/kernels/Reference.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <random>

namespace netc::exec {

uint64_t seedFor(uint64_t seed, const std::string &name) {
  return kernels::splitmix64(
      seed ^ kernels::splitmix64(io::fnv1a(name.data(), name.size())));
}

template <typename T>
ParamStoreT<T>::ParamStoreT(const plan::Plan &plan, uint64_t seed,
                            Memory &memory)
    : memory_(memory) {
  namespace fs = std::filesystem;
  std::map<std::string, std::unique_ptr<io::TensorFile>> files;
  auto open = [&](const std::string &path) -> const io::TensorFile & {
    auto &slot = files[path];
    if (!slot)
      slot = std::make_unique<io::TensorFile>(io::readSafetensors(path));
    return *slot;
  };
  std::string bundled = (fs::path(plan.dir) / "params.safetensors").string();

  for (const plan::ParamSpec &spec : plan.params) {
    Entry e;
    e.spec = &spec;
    e.value = Array<T>(memory_, spec.count(),
                       fmt::format("parameter '{}'", spec.name));
    e.momentum = Array<T>(memory_, spec.count(),
                          fmt::format("momentum of parameter '{}'", spec.name));
    // The initial value on the host, then uploaded.
    std::vector<T> init(size_t(spec.count()), T(0));
    switch (spec.init.kind) {
    case plan::InitSpec::Gaussian: {
      std::mt19937_64 rng(seedFor(seed, spec.name));
      std::normal_distribution<double> dist(spec.init.mean, spec.init.std);
      for (T &v : init)
        v = T(float(spec.init.std > 0 ? dist(rng) : spec.init.mean));
      break;
    }
    case plan::InitSpec::Constant:
      std::fill(init.begin(), init.end(), T(float(spec.init.value)));
      break;
    case plan::InitSpec::File: {
      // A trainer carries every imported tensor in its own
      // params.safetensors: the runtime reads nothing outside the trainer
      // (the init's path/key only say where netc took it from). A plan
      // without a trainer directory (built in memory) reads path/key.
      const io::Tensor *t = nullptr;
      std::string from;
      if (!plan.dir.empty()) {
        t = open(bundled).find(spec.name);
        from = bundled + ": tensor '" + spec.name + "'";
        if (!t)
          throw io::SafetensorsError(fmt::format(
              "{}: no tensor '{}' (the initial value of parameter '{}'; "
              "recompile the trainer with netc)",
              bundled, spec.name, spec.name));
      } else {
        t = open(spec.init.path).find(spec.init.key);
        from = spec.init.path + ": tensor '" + spec.init.key + "'";
        if (!t)
          throw io::SafetensorsError(
              fmt::format("{}: no tensor '{}' (initialiser of parameter '{}')",
                          spec.init.path, spec.init.key, spec.name));
      }
      if (t->shape != spec.shape)
        throw io::SafetensorsError(fmt::format(
            "{} has shape [{}] but parameter '{}' is [{}]", from,
            fmt::join(t->shape, ", "), spec.name, fmt::join(spec.shape, ", ")));
      std::copy(t->data.begin(), t->data.end(), init.begin());
      break;
    }
    }
    // A Gaussian of a huge std (or a file's value) may not be a 32-bit
    // float: training would stop at once on a NaN loss, and an evaluation
    // give nonsense.
    for (size_t i = 0; i < init.size(); ++i)
      if (!std::isfinite(double(init[i])))
        throw io::SafetensorsError(fmt::format(
            "parameter '{}': its initial value is {} at element {} (an "
            "init beyond 32-bit floats?)",
            spec.name, io::formatNumber(double(init[i])), i));
    memory_.upload(e.value.data(), init.data(), e.value.bytes());
    // `init` dies here: the upload must have read it (Memory.h).
    memory_.synchronize();
    order_.push_back(spec.name);
    entries_.emplace(spec.name, std::move(e));
  }
}

template <typename T>
typename ParamStoreT<T>::Entry &ParamStoreT<T>::at(const std::string &name) {
  auto it = entries_.find(name);
  if (it == entries_.end())
    throw std::out_of_range(fmt::format("no parameter '{}'", name));
  return it->second;
}
template <typename T>
const typename ParamStoreT<T>::Entry &
ParamStoreT<T>::at(const std::string &name) const {
  return const_cast<ParamStoreT *>(this)->at(name);
}

template <typename T> int64_t ParamStoreT<T>::totalCount() const {
  int64_t n = 0;
  for (auto &[name, e] : entries_)
    n += e.value.size();
  return n;
}

template <typename T> void ParamStoreT<T>::zeroMomentum() {
  for (auto &[name, e] : entries_)
    memory_.zero(e.momentum.data(), e.momentum.bytes());
}

template <typename T>
std::vector<T> ParamStoreT<T>::hostValue(const std::string &name,
                                         bool momentum) const {
  const Entry &e = at(name);
  const Array<T> &a = momentum ? e.momentum : e.value;
  std::vector<T> out(size_t(a.size()));
  memory_.download(out.data(), a.data(), a.bytes());
  return out;
}

template <typename T>
io::TensorFile ParamStoreT<T>::toTensors(bool momentum) const {
  io::TensorFile f;
  for (auto &[name, e] : entries_) {
    std::vector<T> value = hostValue(name);
    f.tensors[name] = {e.spec->shape,
                       std::vector<float>(value.begin(), value.end())};
    if (momentum) {
      std::vector<T> m = hostValue(name, true);
      f.tensors["momentum/" + name] = {e.spec->shape,
                                       std::vector<float>(m.begin(), m.end())};
    }
  }
  return f;
}

template <typename T>
void ParamStoreT<T>::fromTensors(const io::TensorFile &file,
                                 const std::string &what, bool momentum) {
  for (auto &[name, e] : entries_) {
    upload(file, what, name, *e.spec, e.value);
    if (momentum)
      upload(file, what, "momentum/" + name, *e.spec, e.momentum);
  }
}

template <typename T>
typename ParamStoreT<T>::Matched
ParamStoreT<T>::fromMatchingTensors(const io::TensorFile &file,
                                    const std::string &what) {
  Matched m;
  // (A checkpoint's momentum buffers are not the file of another net.)
  auto known = [&](const std::string &name) {
    return entries_.count(name) ||
           (name.rfind("momentum/", 0) == 0 && entries_.count(name.substr(9)));
  };
  for (const auto &[name, tensor] : file.tensors)
    if (!known(name))
      m.unknown.push_back(name);
  for (const std::string &name : order_) {
    Entry &e = entries_.at(name);
    if (file.find(name))
      upload(file, what, name, *e.spec, e.value);
    else
      m.untouched.push_back(name);
  }
  if (m.untouched.size() == order_.size())
    throw io::SafetensorsError(
        fmt::format("{}: no tensor is named after a parameter of this "
                    "trainer (its parameters are named like '{}')",
                    what, order_.empty() ? "" : order_.front()));
  zeroMomentum();
  return m;
}

template <typename T>
void ParamStoreT<T>::upload(const io::TensorFile &file, const std::string &what,
                            const std::string &key, const plan::ParamSpec &spec,
                            Array<T> &dst) {
  const io::Tensor *t = file.find(key);
  if (!t)
    throw io::SafetensorsError(fmt::format("{}: no tensor '{}'", what, key));
  if (t->shape != spec.shape)
    throw io::SafetensorsError(fmt::format(
        "{}: tensor '{}' has shape [{}] but the parameter is [{}]", what, key,
        fmt::join(t->shape, ", "), fmt::join(spec.shape, ", ")));
  // A NaN or infinity is a diverged run's parameter: training or evaluating
  // from it gives nothing but NaN (and a NaN logit once ranked as right).
  for (size_t i = 0; i < t->data.size(); ++i)
    if (!std::isfinite(t->data[i]))
      throw io::SafetensorsError(
          fmt::format("{}: tensor '{}' holds {} at element {} (the "
                      "parameters of a run that diverged?)",
                      what, key, io::formatNumber(t->data[i]), i));
  std::vector<T> host(t->data.begin(), t->data.end());
  memory_.upload(dst.data(), host.data(), dst.bytes());
  memory_.synchronize(); // `host` dies here
}

template class ParamStoreT<float>;
template class ParamStoreT<double>;

} // namespace netc::exec
