//===- Autodiff.cpp - net-autodiff: gradients and SGD updates -------------===//
//
// For each step function (`net.phase`):
// 1. Decide which parameters the phase trains: trainable, and not frozen by
//    group (encoder/decoder/classifier), by layer name or by macro-layer name.
// 2. Inline the macro-layers: the backward pass is a straight line.
// 3. Mark the values that depend on a trained parameter ("active"); only they
//    get gradients, which prunes everything below the lowest trained layer.
// 4. Walk the ops backwards, seeding each loss term with its objective weight
//    and emitting one backward op per active operand; a value used twice sums
//    its gradients with `net.add`.
// 5. Append one `net.sgd_update` per trained parameter (gradients of several
//    reads of one parameter are summed).
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/MapVector.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/StringSet.h"

namespace netc {
#define GEN_PASS_DEF_AUTODIFF
#include "passes/Passes.h.inc"
} // namespace netc

using namespace mlir;
using namespace netc;
using namespace netc::net;

namespace {

/// The layer a parameter belongs to: `conv3_1` for `conv3_1.weight`.
StringRef paramLayer(StringRef param) { return param.rsplit('.').first; }

/// Replaces each macro-layer by its body.
void inlineMacros(func::FuncOp func) {
  for (auto macro : llvm::to_vector(func.getBody().front().getOps<MacroOp>())) {
    Block &body = macro.getBody().front();
    for (auto [arg, input] : llvm::zip(body.getArguments(), macro.getInputs()))
      arg.replaceAllUsesWith(input);
    YieldOp yield = macro.getYield();
    for (auto [result, value] :
         llvm::zip(macro.getResults(), yield.getValues()))
      result.replaceAllUsesWith(value);
    yield.erase();
    macro->getBlock()->getOperations().splice(Block::iterator(macro),
                                              body.getOperations());
    macro.erase();
  }
}

} // namespace

bool netc::isFrozen(ParamOp param, ParamGetOp get,
                    const llvm::StringSet<> &freeze) {
  if (!param.getTrainable() || freeze.contains(param.getGroup()) ||
      freeze.contains(paramLayer(get.getName())))
    return true;
  for (auto macro = get->getParentOfType<MacroOp>(); macro;
       macro = macro->getParentOfType<MacroOp>())
    if (freeze.contains(macro.getName()))
      return true;
  return false;
}

namespace {

class Autodiff {
public:
  Autodiff(ModuleOp module, func::FuncOp func, PhaseOp phase)
      : module(module), func(func), phase(phase), b(func.getContext()) {}

  LogicalResult run();

private:
  ModuleOp module;
  func::FuncOp func;
  PhaseOp phase;
  OpBuilder b;
  llvm::StringSet<> trained;
  /// The phase's `lr_mult` for each trained parameter (when not 1).
  llvm::StringMap<double> lrScale;
  llvm::DenseSet<Value> active;
  llvm::DenseMap<Value, Value> grads;

  LogicalResult chooseTrained();
  LogicalResult chooseLrScales();
  void markActive();
  void addGrad(Value v, Value g);
  LogicalResult backward(Operation *op, double lossWeight);
  Location loc(Operation *op) { return op->getLoc(); }
};

LogicalResult Autodiff::chooseTrained() {
  llvm::StringSet<> freeze;
  for (Attribute a : phase.getFreeze())
    freeze.insert(cast<StringAttr>(a).getValue());
  SymbolTable symbols(module);
  func.walk([&](ParamGetOp get) {
    auto param = symbols.lookup<ParamOp>(get.getName());
    if (param && !isFrozen(param, get, freeze))
      trained.insert(get.getName());
  });
  if (failed(chooseLrScales()))
    return failure();
  if (trained.empty())
    return phase.emitError() << "phase '" << phase.getSymName()
                             << "' trains nothing: every parameter it uses is "
                                "frozen";
  return success();
}

/// A phase's `lr_mult` names a layer or a macro-layer (a decoder stage is
/// `dec.<stage>`); a parameter's rate is multiplied by every entry naming its
/// layer or a macro-layer around its read.
LogicalResult Autodiff::chooseLrScales() {
  DictionaryAttr mults = phase.getLrMultAttr();
  if (!mults)
    return success();
  llvm::StringSet<> used;
  bool ok = true;
  func.walk([&](ParamGetOp get) {
    if (!trained.contains(get.getName()))
      return;
    // Each name once: a macro-layer's only conv carries its name.
    llvm::SmallSetVector<StringRef, 4> names;
    names.insert(paramLayer(get.getName()));
    for (auto macro = get->getParentOfType<MacroOp>(); macro;
         macro = macro->getParentOfType<MacroOp>())
      names.insert(macro.getName());
    double scale = 1.0;
    for (StringRef name : names)
      if (auto m = mults.getAs<FloatAttr>(name)) {
        scale *= m.getValueAsDouble();
        used.insert(name);
      }
    auto [it, fresh] = lrScale.try_emplace(get.getName(), scale);
    if (!fresh && it->second != scale) {
      get.emitError() << "parameter '" << get.getName()
                      << "' is read under different lr-mult in phase '"
                      << phase.getSymName() << "'";
      ok = false;
    }
  });
  for (NamedAttribute m : mults)
    if (!used.contains(m.getName().strref()))
      phase.emitWarning() << "lr-mult '" << m.getName().strref()
                          << "' of phase '" << phase.getSymName()
                          << "' matches no parameter the phase trains";
  return success(ok);
}

void Autodiff::markActive() {
  for (Operation &op : func.getBody().front()) {
    bool depends = false;
    if (auto get = dyn_cast<ParamGetOp>(op))
      depends = trained.contains(get.getName());
    for (Value operand : op.getOperands())
      depends |= active.contains(operand);
    if (!depends)
      continue;
    for (Value result : op.getResults())
      if (auto t = dyn_cast<TensorType>(result.getType());
          t && t.getElementType().isF32())
        active.insert(result);
  }
}

void Autodiff::addGrad(Value v, Value g) {
  if (!v || !active.contains(v))
    return;
  auto [it, inserted] = grads.try_emplace(v, g);
  if (!inserted)
    it->second = b.create<AddOp>(g.getLoc(), v.getType(), it->second, g);
}

/// Emits the backward ops of `op`; `lossWeight` is its objective weight when
/// `op` is a loss term.
LogicalResult Autodiff::backward(Operation *op, double lossWeight) {
  auto f64 = [&](double v) { return b.getF64FloatAttr(v); };
  if (auto ce = dyn_cast<SoftmaxCrossEntropyOp>(op)) {
    Value logits = ce.getLogits();
    addGrad(logits, b.create<SoftmaxCrossEntropyGradOp>(
                        loc(op), logits.getType(), logits, ce.getLabels(),
                        f64(lossWeight)));
    return success();
  }
  if (auto loss = dyn_cast<EuclideanLossOp>(op)) {
    Value pred = loss.getPrediction(), target = loss.getTarget();
    Value d = b.create<EuclideanLossGradOp>(loc(op), pred.getType(), pred,
                                            target, f64(lossWeight));
    addGrad(pred, d);
    if (active.contains(target))
      addGrad(target,
              b.create<ScaleOp>(loc(op), target.getType(), d, f64(-1.0)));
    return success();
  }
  if (isa<ParamGetOp, ObjectiveOp>(op))
    return success();

  if (op->getNumResults() == 0)
    return op->emitOpError("cannot appear in a step before autodiff");
  Value dy = grads.lookup(op->getResult(0));
  if (!dy)
    return success();
  Location l = loc(op);
  auto typeOf = [](Value v) { return v.getType(); };

  if (auto conv = dyn_cast<Conv2DOp>(op)) {
    Value x = conv.getInput(), w = conv.getWeight();
    if (active.contains(x))
      addGrad(x, b.create<Conv2DGradInputOp>(
                     l, typeOf(x), dy, w, conv.getStrideAttr(),
                     conv.getPadAttr(), conv.getGroupsAttr()));
    if (active.contains(w))
      addGrad(w, b.create<Conv2DGradWeightOp>(
                     l, typeOf(w), x, dy, conv.getStrideAttr(),
                     conv.getPadAttr(), conv.getGroupsAttr()));
    if (Value bias = conv.getBias(); bias && active.contains(bias))
      addGrad(bias, b.create<BiasGradOp>(l, typeOf(bias), dy));
    return success();
  }
  if (auto deconv = dyn_cast<Deconv2DOp>(op)) {
    Value x = deconv.getInput(), w = deconv.getWeight();
    if (active.contains(x))
      addGrad(x, b.create<Deconv2DGradInputOp>(
                     l, typeOf(x), dy, w, deconv.getStrideAttr(),
                     deconv.getPadAttr(), deconv.getGroupsAttr()));
    if (active.contains(w))
      addGrad(w, b.create<Deconv2DGradWeightOp>(
                     l, typeOf(w), x, dy, deconv.getStrideAttr(),
                     deconv.getPadAttr(), deconv.getGroupsAttr()));
    if (Value bias = deconv.getBias(); bias && active.contains(bias))
      addGrad(bias, b.create<BiasGradOp>(l, typeOf(bias), dy));
    return success();
  }
  if (auto relu = dyn_cast<ReluOp>(op)) {
    addGrad(relu.getInput(), b.create<ReluGradOp>(l, typeOf(relu.getInput()),
                                                  dy, relu.getOutput()));
    return success();
  }
  if (auto pool = dyn_cast<MaxPoolOp>(op)) {
    // The adjoint of max-pooling scatters into the recorded switches.
    Value x = pool.getInput();
    auto shape = cast<RankedTensorType>(x.getType()).getShape();
    addGrad(x, b.create<UnpoolOp>(l, typeOf(x), dy, pool.getSwitches(),
                                  pool.getKernelAttr(), pool.getStrideAttr(),
                                  pool.getPadAttr(),
                                  b.getDenseI64ArrayAttr({shape[2], shape[3]}),
                                  DenseI64ArrayAttr(), UnitAttr()));
    return success();
  }
  if (auto pool = dyn_cast<AvgPoolOp>(op)) {
    addGrad(pool.getInput(),
            b.create<AvgPoolGradOp>(l, typeOf(pool.getInput()), dy,
                                    pool.getKernelAttr(), pool.getStrideAttr(),
                                    pool.getPadAttr(), pool.getCeilModeAttr()));
    return success();
  }
  if (auto unpool = dyn_cast<UnpoolOp>(op)) {
    addGrad(unpool.getInput(),
            b.create<UnpoolGradOp>(l, typeOf(unpool.getInput()), dy,
                                   unpool.getSwitches(), unpool.getKernelAttr(),
                                   unpool.getStrideAttr(), unpool.getPadAttr(),
                                   unpool.getPositionAttr(),
                                   unpool.getNormalizeAttr()));
    return success();
  }
  if (auto fc = dyn_cast<FCOp>(op)) {
    Value x = fc.getInput(), w = fc.getWeight();
    if (active.contains(x))
      addGrad(x, b.create<FCGradInputOp>(l, typeOf(x), dy, w));
    if (active.contains(w))
      addGrad(w, b.create<FCGradWeightOp>(l, typeOf(w), x, dy));
    if (Value bias = fc.getBias(); bias && active.contains(bias))
      addGrad(bias, b.create<BiasGradOp>(l, typeOf(bias), dy));
    return success();
  }
  if (isa<FlattenOp, ReshapeOp>(op)) {
    Value x = op->getOperand(0);
    auto shape = cast<RankedTensorType>(x.getType()).getShape();
    if (shape.size() == 2)
      addGrad(x, b.create<FlattenOp>(l, typeOf(x), dy));
    else
      addGrad(x,
              b.create<ReshapeOp>(l, typeOf(x), dy,
                                  b.getDenseI64ArrayAttr(shape.drop_front())));
    return success();
  }
  if (auto dropout = dyn_cast<DropoutOp>(op)) {
    addGrad(dropout.getInput(),
            b.create<DropoutGradOp>(l, typeOf(dropout.getInput()), dy,
                                    dropout.getRatioAttr(),
                                    dropout.getSeedAttr()));
    return success();
  }
  if (auto lrn = dyn_cast<LRNOp>(op)) {
    addGrad(lrn.getInput(),
            b.create<LRNGradOp>(l, typeOf(lrn.getInput()), dy, lrn.getInput(),
                                lrn.getOutput(), lrn.getSizeAttr(),
                                lrn.getAlphaAttr(), lrn.getBetaAttr(),
                                lrn.getKAttr()));
    return success();
  }
  if (auto bn = dyn_cast<BatchNormOp>(op)) {
    if (bn.getInference()) {
      // A frozen batch norm is y = (x - mean) * scale / sqrt(var + eps) +
      // shift, so dx is the same op on dy with a zero mean and shift (zeros
      // of the right shape: the running mean times 0).
      if (active.contains(bn.getScale()) || active.contains(bn.getShift()))
        return emitLayerError(op) << "cannot train the scale or shift of "
                                     "inference-mode batch normalisation";
      Value zero =
          b.create<ScaleOp>(l, typeOf(bn.getMean()), bn.getMean(), f64(0.0));
      addGrad(bn.getInput(), b.create<BatchNormOp>(
                                 l, typeOf(bn.getInput()), dy, bn.getScale(),
                                 zero, zero, bn.getVariance(), bn.getEpsAttr(),
                                 bn.getMomentumAttr(), b.getUnitAttr()));
      return success();
    }
    auto grad = b.create<BatchNormGradOp>(
        l,
        TypeRange{typeOf(bn.getInput()), typeOf(bn.getScale()),
                  typeOf(bn.getShift())},
        dy, bn.getInput(), bn.getScale(), bn.getEpsAttr());
    addGrad(bn.getInput(), grad.getInputGrad());
    addGrad(bn.getScale(), grad.getScaleGrad());
    addGrad(bn.getShift(), grad.getShiftGrad());
    return success();
  }
  return op->emitOpError("has no gradient rule");
}

LogicalResult Autodiff::run() {
  if (failed(chooseTrained()))
    return failure();
  inlineMacros(func);
  markActive();

  auto ret = cast<func::ReturnOp>(func.getBody().front().getTerminator());
  llvm::DenseMap<Operation *, double> lossWeights;
  Operation *root = ret.getOperand(0).getDefiningOp();
  if (auto objective = dyn_cast_or_null<ObjectiveOp>(root)) {
    for (auto [term, weight] :
         llvm::zip(objective.getTerms(), objective.getWeights()))
      lossWeights[term.getDefiningOp()] += weight;
  } else if (isa_and_nonnull<SoftmaxCrossEntropyOp>(root)) {
    lossWeights[root] = 1.0;
  } else {
    return func.emitError("the step's first result must be its objective");
  }

  SmallVector<Operation *> forward;
  for (Operation &op : func.getBody().front().without_terminator())
    forward.push_back(&op);
  b.setInsertionPoint(ret);
  for (Operation *op : llvm::reverse(forward)) {
    auto weight = lossWeights.find(op);
    bool isLoss = weight != lossWeights.end();
    if (isLoss && llvm::none_of(op->getOperands(),
                                [&](Value v) { return active.contains(v); }))
      continue;
    if (failed(backward(op, isLoss ? weight->second : 0.0)))
      return failure();
  }

  // One update per trained parameter, summing the gradients of its reads.
  llvm::MapVector<StringRef, Value> paramGrads;
  for (Operation *op : forward)
    if (auto get = dyn_cast<ParamGetOp>(op))
      if (Value g = grads.lookup(get.getResult())) {
        Value &sum = paramGrads[get.getName()];
        sum = sum ? b.create<AddOp>(get.getLoc(), g.getType(), sum, g) : g;
      }
  SymbolTable symbols(module);
  for (auto &[name, grad] : paramGrads) {
    auto param = symbols.lookup<ParamOp>(name);
    FloatAttr lrMult = param.getLrMultAttr();
    if (double scale = lrScale.lookup(name); lrScale.count(name) && scale != 1)
      lrMult = b.getF64FloatAttr(lrMult.getValueAsDouble() * scale);
    b.create<SGDUpdateOp>(param.getLoc(),
                          FlatSymbolRefAttr::get(b.getContext(), name), grad,
                          lrMult, param.getDecayMultAttr());
  }
  return success();
}

struct AutodiffPass : netc::impl::AutodiffBase<AutodiffPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SymbolTable symbols(module);
    for (auto func : llvm::to_vector(module.getOps<func::FuncOp>())) {
      FailureOr<PhaseOp> phase = stepPhase(func, symbols);
      if (failed(phase))
        return signalPassFailure();
      if (!*phase)
        continue;
      if (failed(Autodiff(module, func, *phase).run()))
        return signalPassFailure();
    }
    // The inference programs (eval, reconstruct) run as straight lines too.
    for (auto func : module.getOps<func::FuncOp>())
      if (func->hasAttr("net.eval") || func->hasAttr("net.reconstruct_from"))
        inlineMacros(func);
  }
};

} // namespace
