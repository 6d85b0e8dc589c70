//===- MLIRGen.cpp - Model to the net dialect -----------------------------===//
//
// Pure translation: Sema has already checked names and values, and shapes are
// left to `net-infer-shapes`. Parameter types are as precise as the layer
// alone allows (`tensor<64x?x3x3xf32>`: the input channels come later).
//
//===----------------------------------------------------------------------===//

#include "frontend/MLIRGen.h"

#include "dialect/NetDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Verifier.h"

using namespace mlir;
using namespace netc::net;

namespace netc {
namespace {

constexpr int64_t kDyn = ShapedType::kDynamic;

class MLIRGenImpl {
public:
  explicit MLIRGenImpl(MLIRContext &context) : builder(&context) {}

  OwningOpRef<ModuleOp> generate(const Model &model) {
    const Network &net = model.network;
    module = ModuleOp::create(fileLoc(net.loc));
    builder.setInsertionPointToEnd(module->getBody());
    if (model.augment.present)
      genAugment(model.augment);
    if (model.train.present)
      genTrain(model.train);
    if (failed(genNetwork(net)))
      return nullptr;
    if (failed(verify(*module)))
      return nullptr;
    return std::move(module);
  }

private:
  OpBuilder builder;
  OwningOpRef<ModuleOp> module;
  /// Where the next `net.param` goes: before the network function.
  Operation *paramAnchor = nullptr;
  /// False once the map has been flattened (fc input).
  bool spatial = true;

  Location fileLoc(const Loc &loc) {
    return FileLineColLoc::get(builder.getStringAttr(loc.file ? *loc.file : ""),
                               loc.line, loc.col);
  }
  Location layerLoc(const Layer &layer) {
    return NameLoc::get(builder.getStringAttr(layer.name), fileLoc(layer.loc));
  }
  Type unranked() { return UnrankedTensorType::get(builder.getF32Type()); }
  FloatAttr f64(double v) { return builder.getF64FloatAttr(v); }
  DenseI64ArrayAttr pair(const std::array<int64_t, 2> &v) {
    return builder.getDenseI64ArrayAttr({v[0], v[1]});
  }

  Attribute initAttr(const InitSpec &init) {
    MLIRContext *ctx = builder.getContext();
    switch (init.kind) {
    case InitSpec::Kind::Gaussian:
      return GaussianInitAttr::get(ctx, llvm::APFloat(init.value),
                                   llvm::APFloat(init.mean));
    case InitSpec::Kind::Constant:
      return ConstantInitAttr::get(ctx, llvm::APFloat(init.value));
    case InitSpec::Kind::File:
      return FileInitAttr::get(ctx, init.path, init.key);
    }
    return {};
  }

  /// Declares `<layer>.<suffix>` and reads it at the current position.
  Value param(const Layer &layer, StringRef suffix, ArrayRef<int64_t> shape,
              const ParamSpec &spec, StringRef group, bool trainable = true) {
    std::string name = (layer.name + "." + suffix).str();
    Location loc = layerLoc(layer);
    auto type = mapType(builder.getContext(), shape);
    {
      OpBuilder::InsertionGuard guard(builder);
      builder.setInsertionPoint(paramAnchor);
      // A parameter read from a file is at its layer and where the file is
      // named (EmitPlan reports an unreadable file there).
      Location declared = spec.init.kind == InitSpec::Kind::File
                              ? withFileNamedAt(loc, fileLoc(spec.init.namedAt))
                              : loc;
      builder.create<ParamOp>(
          declared, builder.getStringAttr(name), TypeAttr::get(type),
          initAttr(spec.init), f64(spec.lrMult), f64(spec.decayMult),
          builder.getStringAttr(group), builder.getBoolAttr(trainable));
    }
    return builder.create<ParamGetOp>(loc, type, name);
  }

  /// Emits one layer on `x`; returns its output and, for max-pooling, sets
  /// `switches`.
  Value genLayer(const Layer &layer, Value x, StringRef group,
                 Value &switches) {
    Location loc = layerLoc(layer);
    Type t = unranked();
    switch (layer.kind) {
    case LayerKind::Conv: {
      Value w =
          param(layer, "weight",
                {layer.outChannels, kDyn, layer.kernel[0], layer.kernel[1]},
                layer.weight, group);
      Value b = layer.hasBias ? param(layer, "bias", {layer.outChannels},
                                      layer.bias, group)
                              : Value();
      return builder.create<Conv2DOp>(loc, t, x, w, b, pair(layer.stride),
                                      pair(layer.pad), layer.groups);
    }
    case LayerKind::FC: {
      if (spatial)
        x = builder.create<FlattenOp>(loc, t, x);
      spatial = false;
      Value w = param(layer, "weight", {layer.outChannels, kDyn}, layer.weight,
                      group);
      Value b = layer.hasBias ? param(layer, "bias", {layer.outChannels},
                                      layer.bias, group)
                              : Value();
      return builder.create<FCOp>(loc, t, x, w, b);
    }
    case LayerKind::Relu:
      return builder.create<ReluOp>(loc, t, x);
    case LayerKind::MaxPool: {
      auto pool = builder.create<MaxPoolOp>(
          loc, t, SwitchesType::get(builder.getContext(), {}), x,
          pair(layer.kernel), pair(layer.stride), pair(layer.pad),
          layer.ceilMode);
      switches = pool.getSwitches();
      return pool.getOutput();
    }
    case LayerKind::AvgPool:
      return builder.create<AvgPoolOp>(loc, t, x, pair(layer.kernel),
                                       pair(layer.stride), pair(layer.pad),
                                       layer.ceilMode);
    case LayerKind::Dropout:
      return builder.create<DropoutOp>(loc, t, x, f64(layer.ratio),
                                       builder.getI64IntegerAttr(0));
    case LayerKind::LRN:
      return builder.create<LRNOp>(
          loc, t, x, builder.getI64IntegerAttr(layer.lrnSize),
          f64(layer.lrnAlpha), f64(layer.lrnBeta), f64(layer.lrnK));
    case LayerKind::BatchNorm: {
      Value scale = param(layer, "scale", {kDyn}, layer.weight, group);
      Value shift = param(layer, "shift", {kDyn}, layer.bias, group);
      Value mean = param(layer, "mean", {kDyn}, layer.runningMean, group,
                         /*trainable=*/false);
      Value var = param(layer, "var", {kDyn}, layer.runningVar, group,
                        /*trainable=*/false);
      return builder.create<BatchNormOp>(loc, t, x, scale, shift, mean, var,
                                         f64(layer.bnEps),
                                         f64(layer.bnMomentum), UnitAttr());
    }
    case LayerKind::Flatten:
      spatial = false;
      return builder.create<FlattenOp>(loc, t, x);
    }
    return x;
  }

  /// `net.macro "name"(%x) { layers; net.yield %out[, %switches] }`.
  FailureOr<Value> genMacro(const Macro &macro, Value x,
                            SmallVectorImpl<Value> &allSwitches) {
    Location loc =
        NameLoc::get(builder.getStringAttr(macro.name), fileLoc(macro.loc));
    bool hasPool = false;
    for (const Layer &layer : macro.layers) {
      if (layer.kind != LayerKind::MaxPool)
        continue;
      if (hasPool) {
        emitError(layerLoc(layer))
            << "macro-layer '" << macro.name
            << "' has a second max-pool; a macro-layer ends at its pool";
        return failure();
      }
      hasPool = true;
    }
    SmallVector<Type> resultTypes{unranked()};
    if (hasPool)
      resultTypes.push_back(SwitchesType::get(builder.getContext(), {}));
    auto op =
        builder.create<MacroOp>(loc, resultTypes, macro.name, ValueRange{x});
    OpBuilder::InsertionGuard guard(builder);
    Block *body = builder.createBlock(&op.getBody(), {}, {x.getType()}, {loc});
    Value value = body->getArgument(0);
    Value switches;
    for (const Layer &layer : macro.layers)
      value = genLayer(layer, value, "encoder", switches);
    SmallVector<Value> yielded{value};
    if (switches)
      yielded.push_back(switches);
    builder.create<YieldOp>(loc, yielded);
    if (switches)
      allSwitches.push_back(op.getResult(1));
    return op.getResult(0);
  }

  LogicalResult genNetwork(const Network &net) {
    MLIRContext *ctx = builder.getContext();
    Location loc = fileLoc(net.loc);
    auto imageType =
        mapType(ctx, {kDyn, net.input[0], net.input[1], net.input[2]});
    auto labelType = RankedTensorType::get({kDyn}, builder.getI32Type());
    auto func = builder.create<func::FuncOp>(
        loc, net.name, builder.getFunctionType({imageType, labelType}, {}));
    func->setAttr("net.network", builder.getUnitAttr());
    func->setAttr("net.classes", builder.getI64IntegerAttr(net.classes));
    paramAnchor = func;
    Block *entry = func.addEntryBlock();
    builder.setInsertionPointToEnd(entry);

    Value x = entry->getArgument(0);
    SmallVector<Value> switches;
    for (const Stage &stage : net.body) {
      if (stage.macro) {
        auto out = genMacro(*stage.macro, x, switches);
        if (failed(out))
          return failure();
        x = *out;
        continue;
      }
      Value unusedSwitches;
      x = genLayer(*stage.layer, x, "classifier", unusedSwitches);
    }
    Location classesLoc = fileLoc(net.classesLoc);
    if (spatial)
      x = builder.create<FlattenOp>(classesLoc, unranked(), x);
    Value loss = builder.create<SoftmaxCrossEntropyOp>(
        NameLoc::get(builder.getStringAttr("classification"), classesLoc),
        mapType(ctx, {}), x, entry->getArgument(1));
    builder.create<func::ReturnOp>(loc, ValueRange{loss, x});
    func.setType(builder.getFunctionType({imageType, labelType},
                                         {loss.getType(), x.getType()}));
    return success();
  }

  /// `{name = weight, ...}` of gammas or lr multipliers.
  DictionaryAttr dict(ArrayRef<AugmentSpec::Gamma> weights) {
    SmallVector<NamedAttribute> entries;
    for (const auto &w : weights)
      entries.push_back(builder.getNamedAttr(w.macro, f64(w.weight)));
    return builder.getDictionaryAttr(entries);
  }
  DictionaryAttr dict(ArrayRef<PhaseSpec::LrMult> mults) {
    SmallVector<NamedAttribute> entries;
    for (const auto &m : mults)
      entries.push_back(builder.getNamedAttr(m.name, f64(m.mult)));
    return builder.getDictionaryAttr(entries);
  }

  void genAugment(const AugmentSpec &spec) {
    // Where a decoder init's file is named, for the decoder's parameters.
    Location loc = fileLoc(spec.loc);
    if (spec.decoderInit && spec.decoderInit->kind == InitSpec::Kind::File)
      loc = withFileNamedAt(loc, fileLoc(spec.decoderInit->namedAt));
    builder.create<AugmentOp>(
        loc, builder.getStringAttr(spec.variant),
        f64(spec.lambda.value_or(kDefaultLambda)), dict(spec.gammas),
        spec.from.empty() ? StringAttr() : builder.getStringAttr(spec.from),
        spec.position ? pair(*spec.position) : DenseI64ArrayAttr(),
        spec.decoderInit ? initAttr(*spec.decoderInit) : Attribute(),
        f64(spec.targetScale));
  }

  void genTrain(const TrainSpec &train) {
    const DataSpec &data = train.data;
    if (data.present) {
      builder.create<DataOp>(
          fileLoc(data.loc), builder.getStringAttr(data.kind),
          data.path.empty() ? StringAttr() : builder.getStringAttr(data.path),
          builder.getI64IntegerAttr(data.subset),
          builder.getI64IntegerAttr(data.testSubset),
          data.mirror ? builder.getUnitAttr() : UnitAttr(),
          builder.getI64IntegerAttr(data.crop),
          builder.getI64IntegerAttr(data.cropPad),
          data.scale[0] || data.scale[1] ? pair(data.scale)
                                         : DenseI64ArrayAttr(),
          data.mean.empty() ? DenseF64ArrayAttr()
                            : builder.getDenseF64ArrayAttr(data.mean),
          data.std.empty() ? DenseF64ArrayAttr()
                           : builder.getDenseF64ArrayAttr(data.std),
          builder.getI64IntegerAttr(data.evalScale),
          builder.getStringAttr(data.channelOrder),
          builder.getI64IntegerAttr(data.workers),
          data.skipBad ? builder.getUnitAttr() : UnitAttr());
    }
    for (const PhaseSpec &phase : train.phases) {
      SmallVector<StringRef> freeze(phase.freeze.begin(), phase.freeze.end());
      builder.create<PhaseOp>(
          fileLoc(phase.loc), builder.getStringAttr(phase.name),
          builder.getStringAttr(phase.decoder), builder.getStrArrayAttr(freeze),
          f64(phase.lr), f64(phase.momentum), f64(phase.decay),
          builder.getI64IntegerAttr(phase.batch),
          builder.getI64IntegerAttr(phase.epochs),
          builder.getI64IntegerAttr(phase.maxSteps),
          builder.getStringAttr(phase.lrPolicy), f64(phase.lrGamma),
          builder.getI64IntegerAttr(phase.lrEvery), f64(phase.lrMin),
          phase.lambda ? f64(*phase.lambda) : FloatAttr(),
          phase.gammas.empty() ? DictionaryAttr() : dict(phase.gammas),
          phase.lrMults.empty() ? DictionaryAttr() : dict(phase.lrMults));
    }
    if (!train.precision.empty())
      (*module)->setAttr("net.precision",
                         builder.getStringAttr(train.precision));
    if (!train.evalSchemes.empty()) {
      SmallVector<StringRef> schemes(train.evalSchemes.begin(),
                                     train.evalSchemes.end());
      builder.create<EvalOp>(
          fileLoc(train.loc), builder.getStrArrayAttr(schemes),
          train.denseScales.empty()
              ? DenseI64ArrayAttr()
              : builder.getDenseI64ArrayAttr(train.denseScales));
    }
  }
};

} // namespace

OwningOpRef<ModuleOp> mlirGen(MLIRContext &context, const Model &model) {
  context.getOrLoadDialect<NetDialect>();
  context.getOrLoadDialect<func::FuncDialect>();
  return MLIRGenImpl(context).generate(model);
}

} // namespace netc
