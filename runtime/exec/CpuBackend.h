//===- CpuBackend.h - the `cpu` backend -------------------------*- C++ -*-===//
//
// The CPU backend on oneDNN (only built with it: NETC_HAVE_ONEDNN).
//
// Layouts. When a program is prepared, the backend picks a layout for every
// value the host never sees: activations whose channel count is a multiple
// of the vector width (16 floats on AVX-512, else 8) stay channel-blocked
// (oneDNN's nChw16c / nChw8c) from kernel to kernel, wherever every kernel
// that touches them can work in that layout: the convolutions (oneDNN),
// relu and its gradient, add, scale, the Euclidean loss and its gradient
// (elementwise), switch max-pooling, unpooling and its gradient, and
// bias_grad (own kernels), batch norm and LRN (oneDNN). Values tied by an
// elementwise, pooling or normalisation kernel share one layout; any value
// that reaches another kernel (fc's flatten, dropout, ...) or the host is
// plain NCHW. The block depends on the machine, which is why the backend
// chooses it and not the compiler.
//
// Kernels.
// - conv2d, deconv2d and their gradients: oneDNN primitives
//   (kernels/OneDnn.h), created once per program and batch size, their
//   scratch in the program's workspace; a conv2d whose output only feeds a
//   relu computes the relu too (a oneDNN post-op) and the relu kernel does
//   nothing. Geometries oneDNN cannot do run im2col + sgemm (kernels/Cpu.h)
//   in plain layout.
// - batch_norm, batch_norm_grad, lrn, lrn_grad: oneDNN primitives
//   (kernels/OneDnn.h), in either layout (the activation operands of one
//   kernel share it; a plain LRN with whole channel blocks reorders to the
//   blocked layout, where oneDNN has more than its reference loops). The
//   gradients recompute what they need from x (the batch statistics, LRN's
//   workspace). Where oneDNN cannot, the reference, in plain layout.
// - fc and its gradients: oneDNN's sgemm (kernels/Cpu.h). Its inner product
//   primitives (NETC_CPU_FC=onednn) measured slower on the Fashion-MNIST
//   example's fc layers (0.50 against 0.45-0.48 ms a step, 2 cores).
// - max_pool, unpool, unpool_grad: the cuda backend's per-element functors
//   (cuda/Kernels.h), in either layout, in parallel chunks.
// - relu, relu_grad, add, sgd_update, bias_grad: the reference loops in
//   parallel chunks (identical results).
// - everything else: the reference backend.
//
// Switches a unpool reads come from the same program's max_pool; one that is
// not in its window is ignored (as on the GPU), never read out of bounds.
//
// NETC_CPU_LAYOUT=plain keeps every value plain, NETC_CPU_FUSION=off
// turns the ReLU fusion off and NETC_CPU_FC=onednn runs fc on oneDNN's
// inner product, so that benchmarks can measure what each buys.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_EXEC_CPUBACKEND_H
#define NETC_RUNTIME_EXEC_CPUBACKEND_H

#include "runtime/exec/Executor.h"

namespace netc::exec {

class CpuBackend : public Backend {
public:
  CpuBackend();
  const char *name() const override { return "cpu"; }
  PreparedProgram prepareProgram(const plan::Program &program,
                                 const std::vector<KernelCall> &calls,
                                 const std::set<int64_t> &hostValues) override;
  void run(const KernelCall &call) override;

private:
  ReferenceBackend reference_;
  bool blockLayouts_ = true, fuseRelu_ = true, fcPrimitives_ = false;
};

} // namespace netc::exec

#endif // NETC_RUNTIME_EXEC_CPUBACKEND_H
