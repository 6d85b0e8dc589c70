//===- DenseEval.cpp - net-dense-eval: the classifier as a convolution ----===//
//
// The paper's "convolution" evaluation (dense, as in VGG): the fc layers are
// applied as convolutions over a rescaled image larger than the training
// crop, and the class scores are averaged over the map. For each scale S of
// the module's `net.eval` (`dense_scales`, default the network's input
// size), `eval` is cloned into `eval.dense.S`:
// 1. its image input is [N, C, S, S] (the input must be square);
// 2. an fc that reads a flattened [C, h, w] map becomes a conv2d with an
//    h x w kernel over the unflattened map, its weight the fc weight read
//    as [out, C, h, w] (`net.param_get ... view`: the same elements in the
//    same order); an fc that reads such a conv's output becomes a 1x1
//    conv2d with its weight read as [out, in, 1, 1]; relus and dropouts in
//    between work on the maps unchanged;
// 3. the class-score map is averaged over its positions (avg_pool over the
//    whole map, then flatten), giving the logits the loss and the runtime
//    read.
// At S equal to the input size every map has the training sizes, the fc
// convolutions have 1x1 outputs, and the logits are the eval program's.
// The runtime averages the softmax of the logits over the image and its
// mirror and over the scales.
//
// Each dense function keeps `net.eval` (the passes after this one treat it
// as an evaluation program) and gets `net.dense_scale` and `net.eval_batch`:
// the batch net-plan-memory plans it for, so that its arena is about the
// eval program's (the largest phase batch scaled by the input's area over
// the dense input's).
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"

namespace netc {
#define GEN_PASS_DEF_DENSEEVAL
#include "passes/Passes.h.inc"
} // namespace netc

using namespace mlir;
using namespace netc;
using namespace netc::net;

namespace {

/// `eval` rewritten for dense evaluation at scale `scale`, inserted after
/// `eval`; a diagnostic at the op it cannot rewrite otherwise.
FailureOr<func::FuncOp> denseClone(func::FuncOp eval, int64_t scale,
                                   int64_t batch, Operation *after) {
  OpBuilder b(eval.getContext());
  b.setInsertionPointAfter(after);
  auto dense = cast<func::FuncOp>(b.clone(*eval));
  dense.setSymName(("eval.dense." + Twine(scale)).str());
  dense->setAttr("net.dense_scale", b.getI64IntegerAttr(scale));
  dense->setAttr("net.eval_batch", b.getI64IntegerAttr(batch));
  Block &body = dense.getBody().front();

  // 1. The image at the scale.
  BlockArgument image = body.getArgument(0);
  auto type = dyn_cast<RankedTensorType>(image.getType());
  if (!type || type.getRank() != 4 || type.isDynamicDim(2) ||
      type.isDynamicDim(3))
    return eval.emitError("dense evaluation needs a static NCHW image input");
  if (type.getDimSize(2) != type.getDimSize(3))
    return eval.emitError("dense evaluation needs a square image input");
  // The image as eval types it: a flatten may read it directly (an MLP).
  Type trainedImage = image.getType();
  image.setType(RankedTensorType::get(
      {type.getDimSize(0), type.getDimSize(1), scale, scale},
      type.getElementType()));

  // 2. fc -> conv2d. `maps` holds, for each value that was [N, F] and is now
  // a map: the map (for a flatten, its input).
  llvm::DenseMap<Value, Value> maps;
  Value scores; // the last fc's map
  SmallVector<Operation *> dead;
  for (Operation &op : llvm::make_early_inc_range(body)) {
    if (auto flatten = dyn_cast<FlattenOp>(op)) {
      maps[flatten.getResult()] = flatten.getInput();
      continue;
    }
    if (isa<ReluOp, DropoutOp>(op)) {
      auto it = maps.find(op.getOperand(0));
      if (it != maps.end() && it->second == op.getOperand(0))
        maps[op.getResult(0)] = op.getResult(0); // a map in, a map out
      continue;
    }
    auto fc = dyn_cast<FCOp>(op);
    if (!fc)
      continue;
    auto it = maps.find(fc.getInput());
    if (it == maps.end()) {
      // Name the layer in the way, not a relu or dropout after it.
      Operation *from = fc.getInput().getDefiningOp();
      while (from && isa<ReluOp, DropoutOp>(from))
        from = from->getOperand(0).getDefiningOp();
      return fc.emitError("dense evaluation: this fc reads ")
             << (from ? describe(from) : std::string("an argument"))
             << ", not a flattened map or another fc (through relu or "
                "dropout only); such a classifier cannot be applied densely";
    }
    Value map = it->second;
    bool fromFlatten = map != fc.getInput();
    auto get = fc.getWeight().getDefiningOp<ParamGetOp>();
    auto weightType = dyn_cast<RankedTensorType>(fc.getWeight().getType());
    if (!get || !weightType || !weightType.hasStaticShape())
      return fc.emitError("dense evaluation: the fc's weight is not a "
                          "parameter of a known shape");
    int64_t out = weightType.getDimSize(0);
    SmallVector<int64_t> kernelShape;
    if (fromFlatten) {
      // The kernel covers the map the fc was trained on: the flatten's
      // input as eval typed it (the clone's types are eval's until they
      // are inferred again).
      auto mapType = dyn_cast<RankedTensorType>(
          map == image ? trainedImage : map.getType());
      if (!mapType || mapType.getRank() != 4 || mapType.isDynamicDim(1) ||
          mapType.isDynamicDim(2) || mapType.isDynamicDim(3))
        return fc.emitError("dense evaluation: the fc reads a flattened map "
                            "of unknown shape");
      kernelShape = {out, mapType.getDimSize(1), mapType.getDimSize(2),
                     mapType.getDimSize(3)};
    } else {
      kernelShape = {out, weightType.getDimSize(1), 1, 1};
    }
    b.setInsertionPoint(fc);
    auto view = b.create<ParamGetOp>(
        get.getLoc(), RankedTensorType::get(kernelShape, b.getF32Type()),
        get.getName(), /*view=*/true);
    auto conv = b.create<Conv2DOp>(
        fc.getLoc(), fc.getType(), map, view.getResult(), fc.getBias(),
        ArrayRef<int64_t>{1, 1}, ArrayRef<int64_t>{0, 0}, uint64_t(1));
    fc.getResult().replaceAllUsesWith(conv.getResult());
    maps[conv.getResult()] = conv.getResult();
    scores = conv.getResult();
    dead.push_back(fc);
  }
  if (!scores)
    return eval.emitError("dense evaluation needs fc layers to apply as "
                          "convolutions");
  for (Operation *op : dead)
    op->erase();
  // The flattens and weight reads the fcs had go.
  for (Operation &op : llvm::make_early_inc_range(llvm::reverse(body)))
    if (isa<FlattenOp, ParamGetOp>(op) && op.use_empty())
      op.erase();

  // 3. Average the class scores over the map, after the last conv (and the
  // ops on its output, which the loss and the return read). The map's size
  // comes from the shapes up to there (the loss cannot be typed yet: it
  // still reads the map).
  Operation *last = scores.getDefiningOp();
  Value logits = scores;
  while (logits.hasOneUse() &&
         isa<ReluOp, DropoutOp>(*logits.getUsers().begin())) {
    last = *logits.getUsers().begin();
    logits = last->getResult(0);
  }
  for (Operation &op : body) {
    if (auto shaped = dyn_cast<ShapeInference>(op))
      if (failed(shaped.inferShapes()))
        return failure();
    if (&op == last)
      break;
  }
  auto scoreType = cast<RankedTensorType>(logits.getType());
  int64_t sh = scoreType.getDimSize(2), sw = scoreType.getDimSize(3);
  // Typed here (an op with a null result type cannot be read through its
  // typed accessors, which an assertion build checks).
  const int64_t n = scoreType.getDimSize(0), classes = scoreType.getDimSize(1);
  Type element = scoreType.getElementType();
  b.setInsertionPointAfter(last);
  auto pool = b.create<AvgPoolOp>(
      last->getLoc(), RankedTensorType::get({n, classes, 1, 1}, element),
      logits, ArrayRef<int64_t>{sh, sw}, ArrayRef<int64_t>{1, 1},
      ArrayRef<int64_t>{0, 0});
  auto flat = b.create<FlattenOp>(last->getLoc(),
                                  RankedTensorType::get({n, classes}, element),
                                  pool.getResult());
  logits.replaceAllUsesExcept(flat.getResult(), pool);
  if (failed(inferFunctionShapes(dense)))
    return failure();
  return dense;
}

struct DenseEvalPass : netc::impl::DenseEvalBase<DenseEvalPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    auto evals = llvm::to_vector(module.getOps<EvalOp>());
    if (evals.empty() ||
        !llvm::is_contained(evals.front().getSchemes().getAsValueRange<
                                StringAttr>(),
                            "dense"))
      return;
    // Already run (a pipeline resumed from netc's -emit=autodiff output):
    // the dense programs are there, and cloning again would redefine them.
    if (llvm::any_of(module.getOps<func::FuncOp>(), [](func::FuncOp f) {
          return f->hasAttr("net.dense_scale");
        }))
      return;
    EvalOp spec = evals.front();
    auto eval = SymbolTable(module).lookup<func::FuncOp>("eval");
    if (!eval) {
      spec.emitError("dense evaluation needs the eval function; run "
                     "net-phases first");
      return signalPassFailure();
    }
    auto image = dyn_cast<RankedTensorType>(eval.getArgument(0).getType());
    if (!image || image.getRank() != 4 || image.isDynamicDim(2) ||
        image.isDynamicDim(3)) {
      spec.emitError("dense evaluation needs a static NCHW image input");
      return signalPassFailure();
    }
    int64_t side = std::min(image.getDimSize(2), image.getDimSize(3));
    SmallVector<int64_t> scales;
    if (auto given = spec.getDenseScales())
      scales.assign(given->begin(), given->end());
    else
      scales.push_back(side);
    int64_t largest = 1;
    for (PhaseOp phase : module.getOps<PhaseOp>())
      largest = std::max<int64_t>(largest, phase.getBatchAttr().getInt());
    Operation *after = eval; // the programs in the order of their scales
    for (int64_t scale : scales) {
      if (scale < side) {
        spec.emitError() << "dense scale " << scale
                         << " is smaller than the network's input side "
                         << side;
        return signalPassFailure();
      }
      // About the eval program's memory: fewer images at a larger scale.
      int64_t batch =
          std::max<int64_t>(1, largest * side * side / (scale * scale));
      FailureOr<func::FuncOp> dense = denseClone(eval, scale, batch, after);
      if (failed(dense))
        return signalPassFailure();
      after = *dense;
    }
  }
};

} // namespace
