//===- NetDialect.h - The net dialect ---------------------------*- C++ -*-===//
//
// One header for the dialect, its types, attributes, interfaces and ops.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_DIALECT_NETDIALECT_H
#define NETC_DIALECT_NETDIALECT_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include <optional>
#include <string>

#include "dialect/NetDialect.h.inc"

#define GET_TYPEDEF_CLASSES
#include "dialect/NetTypes.h.inc"

#define GET_ATTRDEF_CLASSES
#include "dialect/NetAttrs.h.inc"

#include "dialect/NetInterfaces.h.inc"

#define GET_OP_CLASSES
#include "dialect/NetOps.h.inc"

namespace netc::net {

/// The image-loss weight when a file gives none: recon-dec's VGG-16 value.
constexpr double kDefaultLambda = 1e-4;

/// The seven model names of the paper, `none` first.
llvm::ArrayRef<llvm::StringRef> augmentVariants();

/// The arithmetic a trainer may be compiled for, as `net.precision` on the
/// module names it: fp32 (the default), tf32, bf16.
llvm::ArrayRef<llvm::StringRef> precisions();

/// A `tensor<...xf32>` feature map or parameter type of the given shape.
mlir::RankedTensorType mapType(mlir::MLIRContext *ctx,
                               llvm::ArrayRef<int64_t> shape);

/// The layer name carried by `op`'s location (`NameLoc`), or empty.
llvm::StringRef layerName(mlir::Operation *op);

/// `layer 'conv1.avgpool' (net.avg_pool)`, or `'net.avg_pool'` unnamed: an
/// op as a message names it.
std::string describe(mlir::Operation *op);

/// Reports an error at `op`, prefixed by `layer 'NAME': ` when the op came
/// from a named layer of a .net file, by `'net.xyz' op ` otherwise.
mlir::InFlightDiagnostic emitLayerError(mlir::Operation *op);

/// `at` with `namedAt`, where a file the op reads is named in the source (a
/// `pretrained` line, an `init=file(...)` argument), fused to it under the
/// tag "net.file" (inside `at`'s NameLocs, which layerName reads).
/// Diagnostics show `at`; fileNamedAt finds the other.
mlir::Location withFileNamedAt(mlir::Location at, mlir::Location namedAt);

/// The place withFileNamedAt fused into `loc`; none if it holds none.
std::optional<mlir::Location> fileNamedAt(mlir::Location loc);

/// A switch is a position within the window of the max-pool that wrote it,
/// so an unpool (or its gradient) must read switches `sw` through that
/// window. Where `sw` comes from a max-pool with another window than
/// (kernel, stride, pad): "a max-pool with kernel .. stride .. pad ..
/// through kernel .. stride .. pad .."; else (the same window, or switches
/// from elsewhere, such as a block argument) empty.
std::string switchWindowMismatch(mlir::Value sw, llvm::ArrayRef<int64_t> kernel,
                                 llvm::ArrayRef<int64_t> stride,
                                 llvm::ArrayRef<int64_t> pad);

} // namespace netc::net

#endif // NETC_DIALECT_NETDIALECT_H
