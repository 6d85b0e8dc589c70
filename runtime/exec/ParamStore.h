//===- ParamStore.h - parameter values and momentum buffers -----*- C++ -*-===//
//
// One buffer per parameter of the plan, plus its SGD momentum buffer, of
// element type T, in the memory of the backend that trains them (host memory
// by default): `ParamStore` (float) for training, `ParamStoreT<double>` to
// check gradients in double precision. Initial values are computed on the
// host and uploaded; host copies are made only for checkpoints (toTensors)
// and by hostValue(). Initialised from the plan's init specs:
// - gaussian: std::normal_distribution(mean, std) over a std::mt19937_64
//   seeded from (seed, parameter name), so a parameter's initial value does
//   not depend on the other parameters; drawn values are rounded to float
//   whatever T is, so a double store starts from the float store's values;
// - constant: value;
// - file: the tensor named like the parameter in <trainer>/params.safetensors
//   if that file holds it, else tensor `key` of the file `path`; shapes must
//   agree.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_EXEC_PARAMSTORE_H
#define NETC_RUNTIME_EXEC_PARAMSTORE_H

#include "runtime/exec/Memory.h"
#include "runtime/io/Safetensors.h"
#include "runtime/plan/Plan.h"

#include <cstddef>
#include <map>
#include <string>
#include <vector>

namespace netc::exec {

template <typename T> class ParamStoreT {
public:
  using Element = T;
  struct Entry {
    const plan::ParamSpec *spec = nullptr;
    Array<T> value, momentum; ///< in the backend's memory
  };

  /// Allocates every parameter of `plan` in `memory` (a backend's) and
  /// initialises it (momentum zero).
  ParamStoreT(const plan::Plan &plan, uint64_t seed,
              Memory &memory = hostMemory());

  Memory &memory() const { return memory_; }

  Entry &at(const std::string &name);
  const Entry &at(const std::string &name) const;
  const std::vector<std::string> &names() const { return order_; }
  int64_t totalCount() const;

  void zeroMomentum();

  /// A host copy of a parameter's value (or momentum).
  std::vector<T> hostValue(const std::string &name,
                           bool momentum = false) const;

  /// Parameters (and, with `momentum`, "momentum/<name>" buffers) as f32
  /// tensors (rounded if T is double).
  io::TensorFile toTensors(bool momentum) const;
  /// Sets every parameter (and momentum buffer, if `momentum`) from `file`;
  /// each must be present with the parameter's shape. `what` names the file.
  void fromTensors(const io::TensorFile &file, const std::string &what,
                   bool momentum);
  /// Fine-tuning start (Caffe's `--weights`): sets each parameter that
  /// `file` has a tensor for, by name; the others keep their initial value
  /// and every momentum stays zero. A tensor of the right name and another
  /// shape is an error, as is a file that sets no parameter at all (the
  /// wrong file).
  struct Matched {
    std::vector<std::string> untouched; ///< parameters left as initialised
    /// The file's tensors named after no parameter (another net's, a
    /// misspelling), by name; a checkpoint's "momentum/<parameter>" ones
    /// are not among them.
    std::vector<std::string> unknown;
  };
  Matched fromMatchingTensors(const io::TensorFile &file,
                              const std::string &what);

private:
  /// Sets `dst` from the tensor `key` of `file`, which must exist with the
  /// parameter's shape.
  void upload(const io::TensorFile &file, const std::string &what,
              const std::string &key, const plan::ParamSpec &spec,
              Array<T> &dst);

  Memory &memory_;
  std::map<std::string, Entry> entries_;
  std::vector<std::string> order_;
};

/// Defined in ParamStore.cpp for float and double.
extern template class ParamStoreT<float>;
extern template class ParamStoreT<double>;

/// The training store (f32).
using ParamStore = ParamStoreT<float>;

/// Deterministic 64-bit seed for a name (FNV-1a then splitmix64 with `seed`).
uint64_t seedFor(uint64_t seed, const std::string &name);

/// StepContext::step of a training run's global step `globalStep`: distinct
/// for every step of a run, and another sequence for another seed (a run's
/// seed varies its dropout masks as it varies initialisation and
/// shuffling). A function of the checkpointed seed and step alone, so a
/// resumed run draws the masks the uninterrupted one would.
inline uint64_t dropoutStepKey(uint64_t seed, uint64_t globalStep) {
  return seedFor(seed, "dropout") + globalStep;
}

} // namespace netc::exec

#endif // NETC_RUNTIME_EXEC_PARAMSTORE_H
