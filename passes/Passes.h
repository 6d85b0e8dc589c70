//===- Passes.h - The netc passes -------------------------------*- C++ -*-===//

#ifndef NETC_PASSES_PASSES_H
#define NETC_PASSES_PASSES_H

#include "dialect/NetDialect.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Pass/Pass.h"
#include "llvm/ADT/StringSet.h"
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
/// The same for one function, its parameters left as they are.
mlir::LogicalResult inferFunctionShapes(mlir::func::FuncOp func);

/// Sets the module's augment variant (`netc --augment`), adding a
/// `net.augment` with the default lambda when the file has none.
mlir::FailureOr<netc::net::AugmentOp> overrideVariant(mlir::ModuleOp module,
                                                      llvm::StringRef variant);

/// Warns about the file's augment settings its variant does not use: all
/// of them, and the phases' lambda and gamma, for `none` (no decoder);
/// `position` for SWWAE (which unpools at the switches). netc calls it unless
/// --augment chose the variant (the file was then written for another).
void warnIdleSettings(mlir::ModuleOp module);

/// True once net-mirror has run on `network`: its decoder's macro-layers,
/// named `dec.<name>`, are in it.
bool isMirrored(mlir::func::FuncOp network);

/// The phase a step function names (`net.phase`), or a null PhaseOp when
/// `func` is no step function; failure, with an error on `func`, when the
/// phase it names does not exist.
mlir::FailureOr<netc::net::PhaseOp> stepPhase(mlir::func::FuncOp func,
                                              mlir::SymbolTable &symbols);

/// True when `phase` does not train the parameter that `get` reads: the
/// parameter is not trainable, or the phase freezes its group (`encoder`,
/// `decoder`, `classifier`), its layer or a macro-layer around `get`.
/// `freeze` holds the phase's `freeze` names.
bool isFrozen(netc::net::ParamOp param, netc::net::ParamGetOp get,
              const llvm::StringSet<> &freeze);

/// Bytes of a value of `type` (a tensor, or switches) with its dynamic
/// (batch) dimension at `batch` and `elementBytes` bytes per element;
/// nullopt when it has no rank or the count overflows int64_t.
std::optional<int64_t> valueBytes(mlir::Type type, int64_t batch,
                                  int64_t elementBytes = 4);

/// How the trainer stores a value, as net-precision chose it (`net.dtypes`,
/// `net.layouts`, `net.arg_dtypes`, `net.arg_layouts`); without those, as
/// its type says, maps in NCHW.
struct ValueFormat {
  mlir::Type dtype; ///< f32, bf16, i32 (labels) or ui8 (switches).
  bool nhwc = false;
  /// Bytes per element: 2 for bf16, 1 for ui8, 4 for f32 and i32.
  int64_t elementBytes() const {
    return dtype.isBF16() ? 2 : dtype.isInteger(8) ? 1 : 4;
  }
  bool operator==(const ValueFormat &o) const {
    return dtype == o.dtype && nhwc == o.nhwc;
  }
};
ValueFormat valueFormat(mlir::Value value);

/// Bytes of `value` as the trainer stores it, at `batch`.
std::optional<int64_t> valueBytes(mlir::Value value, int64_t batch);

/// How a plan kernel's outputs may share its operands' bytes, as the
/// runtime's op table (runtime/plan/Ops.def) says.
enum class OpMemory {
  Plain,   ///< The outputs have bytes of their own.
  InPlace, ///< The output may share its first operand's bytes.
  View,    ///< The output is its operand's bytes; the kernel does nothing.
};

/// What net-plan-memory uses for the kernel `planOp` (a `net` op's name
/// without `net.`); nullopt when Ops.def does not list it.
std::optional<OpMemory> planOpMemory(llvm::StringRef planOp);

/// netc's pipeline after net-autodiff, in its order: net-data-parallel
/// (with `bucketMb`: gradients all-reduced in buckets of that size),
/// net-schedule and net-dense-eval. netc and the pass fuzzer both build
/// their pipelines from this and addStoragePasses, so that the fuzzer runs
/// the passes netc runs.
void addStepPasses(mlir::OpPassManager &pm,
                   std::optional<double> bucketMb = std::nullopt);

/// netc's passes that choose how each value is stored, in its order:
/// net-precision (the module's own precision and layout) and
/// net-plan-memory at `batch` (0: each phase's).
void addStoragePasses(mlir::OpPassManager &pm, int64_t batch = 0);

/// The version of docs/trainer-format.md that net-emit-plan writes.
constexpr int kTrainerFormatVersion = 3;

/// The plan.json of a module that went through net-plan-memory.
mlir::FailureOr<llvm::json::Value> buildPlan(mlir::ModuleOp module);

/// Writes `<directory>/plan.json`.
mlir::LogicalResult writeTrainer(mlir::ModuleOp module,
                                 llvm::StringRef directory);

} // namespace netc

#endif // NETC_PASSES_PASSES_H
