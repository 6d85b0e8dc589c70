//===- ReferenceBackend.h - plain loops: the oracle -------------*- C++ -*-===//
//
// Every kernel as the plain loops of runtime/kernels/Reference.h, for f32
// and, to check gradients against finite differences, double.
//
// The f32 backend also runs bf16 plans, as an oracle for the cuda backend's
// tensor-core path rather than for speed: a kernel with bf16 or NHWC
// operands runs on f32 NCHW copies of them, and its outputs are rounded to
// bf16 (and laid out) as they are stored. Convolutions and fc with bf16
// operands read their weights rounded to bf16, round their product to bf16
// before adding the bias, and a convolution's weight gradient is rounded to
// bf16, as the cuda backend does; sums still run in the reference's order
// and precision.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_EXEC_REFERENCEBACKEND_H
#define NETC_RUNTIME_EXEC_REFERENCEBACKEND_H

#include "runtime/exec/Backend.h"

#include <vector>

namespace netc::exec {

/// Plain loops (runtime/kernels/Reference.h): the oracle.
template <typename T> class ReferenceBackendT : public BackendT<T> {
public:
  const char *name() const override { return "reference"; }
  /// Everything (f32): bf16 and NHWC values are emulated.
  bool supports(const plan::Value &v) const override;
  void run(const KernelCallT<T> &call) override;

private:
  /// run() on host-format copies of the operands (bf16 or NHWC ones).
  void runConverted(const KernelCallT<T> &call);

  std::vector<uint8_t> mask_;
  std::vector<T> mean_, invStd_;
};

using ReferenceBackend = ReferenceBackendT<float>;

/// Defined in ReferenceBackend.cpp for float and double.
extern template class ReferenceBackendT<float>;
extern template class ReferenceBackendT<double>;

} // namespace netc::exec

#endif // NETC_RUNTIME_EXEC_REFERENCEBACKEND_H
