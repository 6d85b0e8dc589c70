//===- InferShapes.cpp - net-infer-shapes ---------------------------------===//
//
// 1. For each function, visit its ops in order; a macro-layer first gives its
//    body arguments the input types, then its body is visited, then its
//    results take the yielded types.
// 2. Each layer's shape function sets its result types and sharpens the
//    `net.param_get` values it reads.
// 3. Every `net.param` takes the one static type all its readers agree on;
//    function signatures take their arguments' and returned values' types.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/IR/TypeUtilities.h"
#include "llvm/ADT/MapVector.h"
#include "llvm/Support/MathExtras.h"

namespace netc {
#define GEN_PASS_DEF_INFERSHAPES
#include "passes/Passes.h.inc"
} // namespace netc

using namespace mlir;
using namespace netc;
using namespace netc::net;

namespace {

/// Maps larger than this many elements per image are refused: sizes and byte
/// offsets stay far from overflow (and no machine has such memory).
constexpr int64_t kMaxElementsPerImage = int64_t(1) << 32;

LogicalResult checkSize(Operation *op) {
  for (Type type : op->getResultTypes()) {
    auto t = dyn_cast<RankedTensorType>(type);
    if (!t)
      continue;
    int64_t n = 1;
    for (int64_t d : t.getShape()) {
      if (ShapedType::isDynamic(d))
        continue;
      if (llvm::MulOverflow(n, d, n) || n > kMaxElementsPerImage)
        return emitLayerError(op) << "its output has more than 2^32 elements "
                                     "per image";
    }
  }
  return success();
}

LogicalResult inferBlock(Block &block) {
  for (Operation &op : block) {
    if (auto macro = dyn_cast<MacroOp>(op)) {
      Block &body = macro.getBody().front();
      for (auto [arg, input] :
           llvm::zip(body.getArguments(), macro.getInputs()))
        arg.setType(input.getType());
      if (failed(inferBlock(body)))
        return failure();
    }
    if (auto shaped = dyn_cast<ShapeInference>(op))
      if (failed(shaped.inferShapes()) || failed(checkSize(&op)))
        return failure();
  }
  return success();
}

/// Gives each `net.param` the static type its readers agree on.
LogicalResult unifyParameters(ModuleOp module) {
  llvm::MapVector<StringRef, SmallVector<ParamGetOp>> readers;
  // A view (dense evaluation's reading of an fc weight as a convolution's)
  // has the parameter's elements, not its type.
  module.walk([&](ParamGetOp get) {
    if (!get.getView())
      readers[get.getName()].push_back(get);
  });
  SymbolTable symbols(module);
  for (auto &[name, gets] : readers) {
    auto param = symbols.lookup<ParamOp>(name);
    if (!param)
      continue; // the verifier reports unknown symbols
    Type type = gets.front().getType();
    for (ParamGetOp get : gets) {
      if (get.getType() == type)
        continue;
      InFlightDiagnostic diag = emitLayerError(get)
                                << "parameter @" << name << " is read as "
                                << get.getType() << " here";
      diag.attachNote(gets.front().getLoc()) << "and as " << type << " here";
      return failure();
    }
    auto ranked = dyn_cast<RankedTensorType>(type);
    if (!ranked || !ranked.hasStaticShape())
      return emitLayerError(gets.front())
             << "cannot infer the shape of parameter @" << name;
    // A reader's type may be less specific than the declaration, so its
    // refinement need not agree with a declared dimension.
    if (failed(verifyCompatibleShape(param.getType(), ranked))) {
      InFlightDiagnostic diag = emitLayerError(gets.front())
                                << "parameter @" << name << " is read as "
                                << ranked << " but declared as "
                                << param.getType();
      diag.attachNote(param.getLoc()) << "declared here";
      return failure();
    }
    param.setType(ranked);
  }
  return success();
}

/// The logits must have as many columns as the network declares classes.
LogicalResult checkClasses(func::FuncOp func) {
  auto classes = func->getAttrOfType<IntegerAttr>("net.classes");
  if (!classes)
    return success();
  WalkResult result = func.walk([&](SoftmaxCrossEntropyOp ce) {
    auto logits = dyn_cast<RankedTensorType>(ce.getLogits().getType());
    if (!logits || logits.getRank() != 2 || logits.isDynamicDim(1) ||
        logits.getDimSize(1) == classes.getInt())
      return WalkResult::advance();
    emitLayerError(ce) << "the network produces " << logits.getDimSize(1)
                       << " class scores but declares classes "
                       << classes.getInt();
    return WalkResult::interrupt();
  });
  return failure(result.wasInterrupted());
}

struct InferShapesPass : netc::impl::InferShapesBase<InferShapesPass> {
  void runOnOperation() override {
    if (failed(inferShapes(getOperation())))
      signalPassFailure();
  }
};

} // namespace

LogicalResult netc::inferFunctionShapes(func::FuncOp func) {
  if (func.isExternal())
    return success();
  if (failed(inferBlock(func.getBody().front())) || failed(checkClasses(func)))
    return failure();
  auto ret = cast<func::ReturnOp>(func.getBody().front().getTerminator());
  func.setType(FunctionType::get(func.getContext(),
                                 func.getBody().getArgumentTypes(),
                                 ret.getOperandTypes()));
  return success();
}

LogicalResult netc::inferShapes(ModuleOp module) {
  for (auto func : module.getOps<func::FuncOp>())
    if (failed(inferFunctionShapes(func)))
      return failure();
  return unifyParameters(module);
}
