//===- Passes.h - The netc passes -------------------------------*- C++ -*-===//

#ifndef NETC_PASSES_PASSES_H
#define NETC_PASSES_PASSES_H

#include "dialect/NetDialect.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Pass/Pass.h"

#include <memory>

namespace netc {

#define GEN_PASS_DECL
#include "passes/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "passes/Passes.h.inc"

/// The work of `net-infer-shapes`, for passes that add ops and want them
/// typed: infers every function of `module` and unifies parameter types.
mlir::LogicalResult inferShapes(mlir::ModuleOp module);

} // namespace netc

#endif // NETC_PASSES_PASSES_H
