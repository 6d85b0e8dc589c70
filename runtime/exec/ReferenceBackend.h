//===- ReferenceBackend.h - plain loops: the oracle -------------*- C++ -*-===//
//
// Every kernel as the plain loops of runtime/kernels/Reference.h, for f32
// and, to check gradients against finite differences, double.
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
  void run(const KernelCallT<T> &call) override;

private:
  std::vector<uint8_t> mask_;
  std::vector<T> mean_, invStd_;
};

using ReferenceBackend = ReferenceBackendT<float>;

/// Defined in ReferenceBackend.cpp for float and double.
extern template class ReferenceBackendT<float>;
extern template class ReferenceBackendT<double>;

} // namespace netc::exec

#endif // NETC_RUNTIME_EXEC_REFERENCEBACKEND_H
