//===- CpuBackend.h - the `cpu` backend -------------------------*- C++ -*-===//
//
// Runs conv2d, deconv2d, fc and their gradients with the fast kernels of
// runtime/kernels/Cpu.h (im2col + oneDNN sgemm, multithreaded); relu,
// relu_grad, add, sgd_update, bias_grad, max_pool, unpool and unpool_grad
// run the reference loops on chunks in parallel (identical results); every
// other kernel delegates to the reference backend. Only built with oneDNN
// (NETC_HAVE_ONEDNN).
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_EXEC_CPUBACKEND_H
#define NETC_RUNTIME_EXEC_CPUBACKEND_H

#include "runtime/exec/Executor.h"

namespace netc::exec {

class CpuBackend : public Backend {
public:
  const char *name() const override { return "cpu"; }
  void run(const KernelCall &call) override;

private:
  ReferenceBackend reference_;
};

} // namespace netc::exec

#endif // NETC_RUNTIME_EXEC_CPUBACKEND_H
