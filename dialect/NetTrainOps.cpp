//===- NetTrainOps.cpp - Verifiers of the gradient and optimiser ops ------===//
//
// Gradient results have the types of the values they differentiate; these
// verifiers check that the operands of each backward kernel fit together.
//
//===----------------------------------------------------------------------===//

#include "dialect/NetDialect.h"

#include "llvm/Support/MathExtras.h"

using namespace mlir;
using namespace netc::net;

static constexpr int64_t kDyn = ShapedType::kDynamic;

static RankedTensorType ranked(Value v) {
  return dyn_cast<RankedTensorType>(v.getType());
}

/// Dimension `i` of `v`, or kDyn when unknown.
static int64_t dim(Value v, unsigned i) {
  auto t = ranked(v);
  if (!t || t.getRank() <= i)
    return kDyn;
  return t.getDimSize(i);
}

static bool same(int64_t a, int64_t b) {
  return a == kDyn || b == kDyn || a == b;
}

static LogicalResult expectRank(Operation *op, Value v, int64_t rank,
                                StringRef what) {
  auto t = ranked(v);
  if (t && t.getRank() != rank)
    return op->emitOpError()
           << what << " must have rank " << rank << ", got " << v.getType();
  return success();
}

static LogicalResult expectDim(Operation *op, int64_t have, int64_t want,
                               StringRef what) {
  if (!same(have, want))
    return op->emitOpError() << what << " is " << have << ", expected " << want;
  return success();
}

static LogicalResult expectSameType(Operation *op, Value a, Value b,
                                    StringRef what) {
  if (a.getType() != b.getType())
    return op->emitOpError()
           << what << ": " << a.getType() << " vs " << b.getType();
  return success();
}

/// Shared by the four convolution gradients: the forward op maps `from`
/// channels to `to` channels with a weight [wOut, wIn, kh, kw] and `groups`.
static LogicalResult verifyConvChannels(Operation *op, Value from, Value to,
                                        Value weight, int64_t groups) {
  Value values[] = {from, to, weight};
  StringRef names[] = {"input", "output", "weight"};
  for (auto [v, name] : llvm::zip(values, names))
    if (failed(expectRank(op, v, 4, name)))
      return failure();
  if (groups < 1)
    return op->emitOpError() << "groups must be positive";
  if (failed(expectDim(op, dim(to, 1), dim(weight, 0), "output channels")))
    return failure();
  int64_t perGroup = dim(weight, 1), channels = kDyn;
  if (perGroup != kDyn && llvm::MulOverflow(perGroup, groups, channels))
    return op->emitOpError() << "input channels overflow";
  return expectDim(op, dim(from, 1), channels, "input channels");
}

LogicalResult Conv2DGradInputOp::verify() {
  // conv: result (input) -> grad (output) with weight [out, in/g, kh, kw].
  return verifyConvChannels(*this, getResult(), getGrad(), getWeight(),
                            getGroupsAttr().getInt());
}

LogicalResult Conv2DGradWeightOp::verify() {
  return verifyConvChannels(*this, getInput(), getGrad(), getResult(),
                            getGroupsAttr().getInt());
}

LogicalResult Deconv2DGradInputOp::verify() {
  // deconv: weight [in, out/g, kh, kw]; the gradient is a conv from grad
  // (the deconv's output) to result (its input) with that same weight.
  return verifyConvChannels(*this, getGrad(), getResult(), getWeight(),
                            getGroupsAttr().getInt());
}

LogicalResult Deconv2DGradWeightOp::verify() {
  return verifyConvChannels(*this, getGrad(), getInput(), getResult(),
                            getGroupsAttr().getInt());
}

LogicalResult BiasGradOp::verify() {
  if (failed(expectRank(*this, getResult(), 1, "bias gradient")))
    return failure();
  return expectDim(*this, dim(getResult(), 0), dim(getGrad(), 1), "channels");
}

LogicalResult ReluGradOp::verify() { return success(); }
LogicalResult DropoutGradOp::verify() { return success(); }
LogicalResult LRNGradOp::verify() { return success(); }
LogicalResult ScaleOp::verify() { return success(); }
LogicalResult AddOp::verify() { return success(); }

LogicalResult UnpoolGradOp::verify() {
  if (static_cast<bool>(getSwitches()) == getPosition().has_value())
    return emitOpError("needs either switches or a fixed position");
  if (failed(expectRank(*this, getGrad(), 4, "gradient")) ||
      failed(expectRank(*this, getResult(), 4, "result")))
    return failure();
  if (failed(
          expectDim(*this, dim(getResult(), 1), dim(getGrad(), 1), "channels")))
    return failure();
  if (Value sw = getSwitches()) {
    auto type = cast<SwitchesType>(sw.getType());
    auto result = ranked(getResult());
    if (type.hasRank() && result && type.getShape() != result.getShape())
      return emitOpError("switches do not have the pooled shape");
    std::string other =
        switchWindowMismatch(sw, getKernel(), getStride(), getPad());
    if (!other.empty())
      return emitOpError("reads the switches of ") << other;
  }
  return success();
}

LogicalResult AvgPoolGradOp::verify() {
  if (failed(expectRank(*this, getGrad(), 4, "gradient")) ||
      failed(expectRank(*this, getResult(), 4, "result")))
    return failure();
  return expectDim(*this, dim(getResult(), 1), dim(getGrad(), 1), "channels");
}

LogicalResult FCGradInputOp::verify() {
  for (Value v : {getGrad(), getWeight(), getResult()})
    if (failed(expectRank(*this, v, 2, "operand")))
      return failure();
  if (failed(
          expectDim(*this, dim(getGrad(), 1), dim(getWeight(), 0), "outputs")))
    return failure();
  return expectDim(*this, dim(getResult(), 1), dim(getWeight(), 1), "inputs");
}

LogicalResult FCGradWeightOp::verify() {
  for (Value v : {getGrad(), getInput(), getResult()})
    if (failed(expectRank(*this, v, 2, "operand")))
      return failure();
  if (failed(
          expectDim(*this, dim(getResult(), 0), dim(getGrad(), 1), "outputs")))
    return failure();
  return expectDim(*this, dim(getResult(), 1), dim(getInput(), 1), "inputs");
}

LogicalResult BatchNormGradOp::verify() {
  if (failed(expectSameType(*this, getGrad(), getInput(),
                            "gradient and input differ")) ||
      failed(expectSameType(*this, getInputGrad(), getInput(),
                            "input gradient and input differ")) ||
      failed(expectSameType(*this, getScaleGrad(), getScale(),
                            "scale gradient and scale differ")))
    return failure();
  return expectSameType(*this, getShiftGrad(), getScale(),
                        "shift gradient and scale differ");
}

LogicalResult SoftmaxCrossEntropyGradOp::verify() {
  return expectSameType(*this, getResult(), getLogits(),
                        "gradient and logits differ");
}

LogicalResult EuclideanLossGradOp::verify() {
  if (failed(expectSameType(*this, getResult(), getPrediction(),
                            "gradient and prediction differ")))
    return failure();
  return expectSameType(*this, getPrediction(), getTarget(),
                        "prediction and target differ");
}

LogicalResult
SGDUpdateOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  auto param =
      symbolTable.lookupNearestSymbolFrom<ParamOp>(*this, getParamAttr());
  if (!param)
    return emitOpError("updates '")
           << getParam() << "', which is not a net.param";
  if (param.getType() != getGrad().getType())
    return emitOpError("gradient ")
           << getGrad().getType() << " does not match @" << getParam() << " "
           << param.getType();
  if (!param.getTrainable())
    return emitOpError("updates @") << getParam() << ", which is not trainable";
  return success();
}

LogicalResult AllReduceMeanOp::inferReturnTypes(
    MLIRContext *, std::optional<Location>, ValueRange operands, DictionaryAttr,
    OpaqueProperties, RegionRange, SmallVectorImpl<Type> &results) {
  for (Value v : operands)
    results.push_back(v.getType());
  return success();
}

LogicalResult AllReduceMeanOp::verify() {
  if (getGrads().empty())
    return emitOpError("needs at least one gradient");
  if (getBucketAttr().getInt() < 0)
    return emitOpError("bucket must be >= 0, got ") << getBucketAttr().getInt();
  for (Value g : getGrads()) {
    auto t = ranked(g);
    if (!t || !t.hasStaticShape())
      return emitOpError("reduces parameter gradients, which have static "
                         "shapes; got ")
             << g.getType();
  }
  return success();
}
