//===- MLIRGen.h - Model to the net dialect ---------------------*- C++ -*-===//

#ifndef NETC_FRONTEND_MLIRGEN_H
#define NETC_FRONTEND_MLIRGEN_H

#include "frontend/Model.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

namespace netc {

/// Translates a checked model into a `net` module: one `net.param` per
/// parameter, the network as a function `(image, labels) -> (loss, logits)`
/// with its macro-layers as `net.macro` regions, and the augment and train
/// sections as `net.augment`, `net.data`, `net.phase` and `net.eval`. Every op
/// is located at its layer (a NameLoc around the file:line:col). Returns null
/// after reporting through the context's diagnostic handler.
mlir::OwningOpRef<mlir::ModuleOp> mlirGen(mlir::MLIRContext &context,
                                          const Model &model);

} // namespace netc

#endif // NETC_FRONTEND_MLIRGEN_H
