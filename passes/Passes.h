//===- Passes.h - The netc passes -------------------------------*- C++ -*-===//

#ifndef NETC_PASSES_PASSES_H
#define NETC_PASSES_PASSES_H

#include "dialect/NetDialect.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Pass/Pass.h"
#include "llvm/Support/JSON.h"

#include <memory>
#include <optional>

namespace netc {

#define GEN_PASS_DECL
#include "passes/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "passes/Passes.h.inc"

/// The work of `net-infer-shapes`, for passes that add ops and want them
/// typed: infers every function of `module` and unifies parameter types.
mlir::LogicalResult inferShapes(mlir::ModuleOp module);

/// Sets the module's augment variant (`netc --augment`), adding a
/// `net.augment` with the default lambda when the file has none.
mlir::FailureOr<netc::net::AugmentOp> overrideVariant(mlir::ModuleOp module,
                                                      llvm::StringRef variant);

/// Bytes of a value of `type` (an f32 or i32 tensor, or switches stored as
/// i32) with its dynamic (batch) dimension at `batch`; nullopt when it has
/// no rank or the count overflows int64_t.
std::optional<int64_t> valueBytes(mlir::Type type, int64_t batch);

/// The version of docs/trainer-format.md that net-emit-plan writes.
constexpr int kTrainerFormatVersion = 2;

/// The plan.json of a module that went through net-plan-memory.
mlir::FailureOr<llvm::json::Value> buildPlan(mlir::ModuleOp module);

/// Writes `<directory>/plan.json`.
mlir::LogicalResult writeTrainer(mlir::ModuleOp module,
                                 llvm::StringRef directory);

} // namespace netc

#endif // NETC_PASSES_PASSES_H
