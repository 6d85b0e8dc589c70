//===- ParamStore.h - parameter values and momentum buffers -----*- C++ -*-===//
//
// One 64-byte aligned buffer per parameter of the plan, plus its SGD
// momentum buffer, of element type T: `ParamStore` (float) for training,
// `ParamStoreT<double>` to check gradients in double precision. Initialised
// from the plan's init specs:
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

#include "runtime/io/Safetensors.h"
#include "runtime/plan/Plan.h"

#include <fmt/format.h>

#include <cstddef>
#include <cstdlib>
#include <map>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

namespace netc::exec {

/// A std::allocator that aligns to 64 bytes (cache lines, SIMD).
template <typename T> struct AlignedAllocator {
  using value_type = T;
  AlignedAllocator() = default;
  template <typename U> AlignedAllocator(const AlignedAllocator<U> &) {}
  T *allocate(size_t n) {
    size_t bytes = (n * sizeof(T) + 63) / 64 * 64;
    void *p = std::aligned_alloc(64, bytes ? bytes : 64);
    if (!p)
      throw std::bad_alloc();
    return static_cast<T *>(p);
  }
  void deallocate(T *p, size_t) { std::free(p); }
  template <typename U> bool operator==(const AlignedAllocator<U> &) const {
    return true;
  }
  template <typename U> bool operator!=(const AlignedAllocator<U> &) const {
    return false;
  }
};
template <typename T> using AlignedVector = std::vector<T, AlignedAllocator<T>>;

/// Host memory could not be had; the message names what it was for.
class MemoryError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Throws MemoryError naming `what`, the bytes and the memory available if
/// `bytes` more than the memory available. Checked before allocating, since
/// with overcommit a huge allocation can succeed and then kill the process
/// when its pages are first touched.
void reserveHostBytes(uint64_t bytes, const std::string &what);

/// vec.assign(count, value) after reserveHostBytes; a failed allocation is a
/// MemoryError naming `what` too.
template <typename V>
void allocateHost(V &vec, uint64_t count, typename V::value_type value,
                  const std::string &what) {
  uint64_t bytes;
  if (__builtin_mul_overflow(count, uint64_t(sizeof(value)), &bytes))
    bytes = UINT64_MAX;
  reserveHostBytes(bytes, what);
  try {
    vec.assign(size_t(count), value);
  } catch (const std::bad_alloc &) {
    reserveHostBytes(UINT64_MAX, what + fmt::format(" ({} bytes)", bytes));
  } catch (const std::length_error &) {
    reserveHostBytes(UINT64_MAX, what + fmt::format(" ({} bytes)", bytes));
  }
}

template <typename T> class ParamStoreT {
public:
  using Element = T;
  struct Entry {
    const plan::ParamSpec *spec = nullptr;
    AlignedVector<T> value, momentum;
  };

  /// Allocates and initialises every parameter of `plan` (momentum zero).
  ParamStoreT(const plan::Plan &plan, uint64_t seed);

  Entry &at(const std::string &name);
  const Entry &at(const std::string &name) const;
  const std::vector<std::string> &names() const { return order_; }
  int64_t totalCount() const;

  void zeroMomentum();

  /// Parameters (and, with `momentum`, "momentum/<name>" buffers) as f32
  /// tensors (rounded if T is double).
  io::TensorFile toTensors(bool momentum) const;
  /// Sets every parameter (and momentum buffer, if `momentum`) from `file`;
  /// each must be present with the parameter's shape. `what` names the file.
  void fromTensors(const io::TensorFile &file, const std::string &what,
                   bool momentum);

private:
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

} // namespace netc::exec

#endif // NETC_RUNTIME_EXEC_PARAMSTORE_H
