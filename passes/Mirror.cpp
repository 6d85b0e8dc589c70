//===- Mirror.cpp - net-mirror: decoder synthesis and loss wiring ---------===//
//
// 1. Collect the encoder stages bottom-up: each convolution-pooling macro-layer
//    up to the top one (`from`), then, when `from` names an fc layer, each fc
//    layer up to it. Stage l maps a_{l-1} to a_l; a_0 is the image.
// 2. Build the decoder of each stage as a `net.macro "dec.<stage>"`: for a
//    macro-layer an unpool (switches for SWWAE, a fixed position for SAE)
//    followed by the twins of its convolutions in reverse order; for an fc
//    layer an fc twin (and a reshape back to the map it flattened).
// 3. Chain them (first/all: one stacked decoder from a_L) or run each on the
//    clean a_l (layerwise), add one Euclidean loss per reconstructed level,
//    and make the function's loss a `net.objective` of all the terms.
// 4. Infer the shapes of everything added.
//
// Decoder parameters are named after their encoder twins (`dec.conv3_1.weight`)
// in every variant, so one variant's decoder initialises another's by name.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "dialect/DecoderTwins.h"

#include "mlir/IR/Builders.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/Transforms/RegionUtils.h"
#include "llvm/ADT/MapVector.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/Format.h"

namespace netc {
#define GEN_PASS_DEF_MIRROR
#include "passes/Passes.h.inc"
} // namespace netc

using namespace mlir;
using namespace netc;
using namespace netc::net;

namespace {

/// Decoder weights' Gaussian std in recon-dec (FACTS.md).
constexpr double kDecoderStd = 0.001;

/// Parsed form of a variant name.
struct Variant {
  bool swwae = false;
  /// Reconstruct: no losses; a stacked decoder from every macro-layer to the
  /// image, whose outputs the function returns (`netrun reconstruct`).
  enum class Losses {
    First,
    All,
    Layerwise,
    Reconstruct
  } losses = Losses::First;
};

std::optional<Variant> parseVariant(StringRef name) {
  Variant v;
  auto [kind, losses] = name.split('-');
  if (kind == "swwae")
    v.swwae = true;
  else if (kind != "sae")
    return std::nullopt;
  if (losses == "first")
    v.losses = Variant::Losses::First;
  else if (losses == "all")
    v.losses = Variant::Losses::All;
  else if (losses == "layerwise")
    v.losses = Variant::Losses::Layerwise;
  else
    return std::nullopt;
  return v;
}

/// One encoder stage f_l: a_{l-1} -> a_l.
struct Stage {
  StringRef name;
  Operation *anchor; ///< Where errors about the stage point.
  Value output;      ///< a_l
  // Macro-layer stages.
  MacroOp macro;
  MaxPoolOp pool;
  Value switches;
  SmallVector<Conv2DOp> convs;
  // fc stages.
  FCOp fc;
  bool fcRelu = false;
  RankedTensorType unflatten; ///< The map the fc's input was flattened from.
};

/// The name a conv or fc layer's parameters carry (`conv3_1` for
/// `@conv3_1.weight`); decoder twins are named `dec.<that>`.
std::string paramStem(Operation *layer, Value weight) {
  if (auto get = weight.getDefiningOp<ParamGetOp>()) {
    StringRef name = get.getName();
    name.consume_back(".weight");
    return name.str();
  }
  return layerName(layer).str();
}

RankedTensorType rankedOf(Value v) {
  return dyn_cast<RankedTensorType>(v.getType());
}

/// Loss terms weighted by lambda for want of a gamma: per stage, the lambda
/// used and the phases (or, outside the trainer pipeline, the network) where
/// that happened.
struct GammaFallback {
  double lambda;
  bool isPhase;
  std::string name;
};
using GammaFallbacks = llvm::MapVector<StringRef, SmallVector<GammaFallback>>;

class Mirror {
public:
  Mirror(ModuleOp module, func::FuncOp func, AugmentOp augment, Variant variant,
         double lambda, GammaFallbacks &fallbacks)
      : module(module), func(func), augment(augment), variant(variant),
        lambda(lambda), fallbacks(fallbacks), builder(module.getContext()) {
    phaseGamma = func->getAttrOfType<DictionaryAttr>("net.gamma");
  }

  LogicalResult run();

private:
  ModuleOp module;
  func::FuncOp func;
  AugmentOp augment;
  Variant variant;
  double lambda; ///< Image-loss weight (a phase may override the file's).
  DictionaryAttr phaseGamma; ///< The phase's gammas, over the file's.
  GammaFallbacks &fallbacks;
  OpBuilder builder;
  SmallVector<Stage> stages;

  LogicalResult collectStages();
  LogicalResult collectMacro(MacroOp macro);
  LogicalResult collectFCStages(MacroOp top, Operation *from);
  LogicalResult checkGammas();

  Value buildStageDecoder(Stage &stage, Value x, bool producesImage);
  Value mirrorConv(Conv2DOp conv, Value x, bool producesImage, Location loc);
  Value param(StringRef name, ArrayRef<int64_t> shape, bool isBias,
              Location loc);
  Value relu(Value x, Location loc) {
    return builder.create<ReluOp>(loc, x.getType(), x);
  }
  Type unranked() { return UnrankedTensorType::get(builder.getF32Type()); }
  Location decoderLoc(const Stage &stage, StringRef name) {
    return NameLoc::get(builder.getStringAttr(name), stage.anchor->getLoc());
  }
  /// An intermediate loss's weight: the phase's gamma, else the file's,
  /// else this function's lambda (which the pass then warns about).
  double gammaFor(StringRef name) {
    if (phaseGamma)
      if (auto g = phaseGamma.getAs<FloatAttr>(name))
        return g.getValueAsDouble();
    if (auto g = augment.getGamma().getAs<FloatAttr>(name))
      return g.getValueAsDouble();
    if (auto phase = func->getAttrOfType<FlatSymbolRefAttr>("net.phase"))
      fallbacks[name].push_back({lambda, true, phase.getValue().str()});
    else if (func->hasAttr("net.network"))
      fallbacks[name].push_back({lambda, false, func.getName().str()});
    return lambda;
  }
};

/// A macro-layer holds convolutions, activations, LRN, dropout and batch
/// norm, and at most one max-pool; only convolutions and the pool get twins.
LogicalResult Mirror::collectMacro(MacroOp macro) {
  Stage stage;
  stage.name = macro.getName();
  stage.anchor = macro;
  stage.macro = macro;
  stage.output = macro.getResult(0);
  for (Operation &op : macro.getBody().front()) {
    if (auto conv = dyn_cast<Conv2DOp>(op)) {
      // The decoder unpools first, so nothing with a twin may follow the pool.
      if (stage.pool)
        return conv.emitError() << "cannot mirror macro-layer '" << stage.name
                                << "': " << describe(conv)
                                << " follows its max-pool (a macro-layer "
                                   "ends at its pool)";
      stage.convs.push_back(conv);
    } else if (auto pool = dyn_cast<MaxPoolOp>(op)) {
      stage.pool = pool;
      if (macro.getNumResults() < 2 ||
          macro.getYield().getValues()[1] != pool.getSwitches())
        return macro.emitError()
               << "macro-layer '" << stage.name
               << "' must yield its max-pool's switches as its second result";
      stage.switches = macro.getResult(1);
    } else if (!isa<ReluOp, LRNOp, DropoutOp, BatchNormOp, ParamGetOp, YieldOp>(
                   op)) {
      return op.emitError() << "cannot mirror " << describe(&op)
                            << " of macro-layer '" << stage.name
                            << "': only convolutions and max-pooling have "
                               "decoder twins";
    }
  }
  if (stage.convs.empty() && !stage.pool)
    return macro.emitError() << "cannot mirror macro-layer '" << stage.name
                             << "': it has neither a convolution nor a "
                                "max-pool";
  stages.push_back(std::move(stage));
  return success();
}

/// fc stages from the top macro-layer's output up to `from`: flatten, fc,
/// relu, dropout and batch norm may appear on the way.
LogicalResult Mirror::collectFCStages(MacroOp top, Operation *from) {
  RankedTensorType flattenedMap;
  for (Operation *op = top->getNextNode(); op; op = op->getNextNode()) {
    if (isa<ParamGetOp, DropoutOp, BatchNormOp, ReluOp>(op))
      continue;
    if (isa<FlattenOp>(op)) {
      flattenedMap = rankedOf(op->getOperand(0));
      continue;
    }
    if (auto macro = dyn_cast<MacroOp>(op))
      return macro.emitError()
             << "cannot decode from '" << layerName(from)
             << "' through macro-layer '" << macro.getName()
             << "': fc layers in a macro-layer have no decoder twins";
    auto fc = dyn_cast<FCOp>(op);
    if (!fc) {
      return op->emitError() << "cannot mirror " << describe(op)
                             << " on the way to '" << layerName(from) << "'";
    }
    Stage stage;
    stage.name = layerName(fc);
    stage.anchor = fc;
    stage.fc = fc;
    stage.unflatten = flattenedMap;
    flattenedMap = {};
    stage.output = fc.getOutput();
    if (fc.getOutput().hasOneUse())
      if (auto r = dyn_cast<ReluOp>(*fc.getOutput().getUsers().begin())) {
        stage.fcRelu = true;
        stage.output = r.getOutput();
      }
    stages.push_back(std::move(stage));
    if (op == from)
      return success();
  }
  return success();
}

/// Whether a macro-layer holds an op of kind `OpT`.
template <typename OpT> static bool holds(MacroOp macro) {
  auto ops = macro.getBody().front().getOps<OpT>();
  return ops.begin() != ops.end();
}

LogicalResult Mirror::collectStages() {
  Block &body = func.getBody().front();
  SmallVector<MacroOp> macros(body.getOps<MacroOp>());
  // The macro-layers above the convolutions have no decoder twin
  // (dialect/DecoderTwins.h). The decoder starts below them, as below fc
  // layers outside macro-layers.
  SmallVector<MacroContents> contents;
  for (MacroOp m : macros)
    contents.push_back(
        {holds<Conv2DOp>(m) || holds<MaxPoolOp>(m), holds<FCOp>(m)});
  const size_t end = twinnedMacroCount(contents);
  SmallVector<MacroOp> aboveMacros(llvm::drop_begin(macros, end));
  macros.resize(end);
  if (auto from = augment.getFrom())
    for (MacroOp m : aboveMacros)
      if (m.getName() == *from)
        return augment.emitError()
               << "'from' names '" << *from
               << "', a macro-layer above the convolutions (no convolution "
                  "or max-pool, at or above an fc), which has no decoder twin; "
                  "decode from a macro-layer below it, or from an fc layer "
                  "outside macro-layers";
  if (macros.empty())
    return func.emitError()
           << "network '" << func.getName() << "' has no macro-layers to mirror"
           << (aboveMacros.empty()
                   ? ""
                   : " (those above the convolutions have no decoder "
                     "twins)");
  if (isMirrored(func))
    return augment.emitError()
           << "network '" << func.getName() << "' is already mirrored";

  // The top of the decoder: the last macro-layer, or the one `from` names,
  // or an fc layer above the macro-layers.
  MacroOp top = macros.back();
  Operation *fromFC = nullptr;
  if (auto from = augment.getFrom()) {
    auto it =
        llvm::find_if(macros, [&](MacroOp m) { return m.getName() == *from; });
    if (it != macros.end()) {
      top = *it;
    } else {
      for (FCOp fc : body.getOps<FCOp>())
        if (layerName(fc) == *from)
          fromFC = fc;
      if (!fromFC) {
        for (MacroOp m : aboveMacros)
          for (FCOp fc : m.getBody().front().getOps<FCOp>())
            if (layerName(fc) == *from)
              return augment.emitError()
                     << "'from' names '" << *from << "', an fc layer of "
                     << "macro-layer '" << m.getName()
                     << "': the decoder decodes from an fc layer only outside "
                        "macro-layers";
        return augment.emitError()
               << "'from' names '" << *from
               << "', which is neither a macro-layer nor an fc layer of '"
               << func.getName() << "'";
      }
    }
  }
  for (MacroOp macro : macros) {
    if (fromFC && fromFC->isBeforeInBlock(macro))
      break;
    if (failed(collectMacro(macro)))
      return failure();
    top = macro;
    if (!fromFC && macro.getName() == augment.getFrom().value_or(""))
      break;
  }
  if (fromFC && failed(collectFCStages(top, fromFC)))
    return failure();

  // The bottom decoder reconstructs the image: nothing may come before the
  // first macro-layer.
  if (Value first = stages.front().macro.getInputs()[0];
      first != func.getArgument(0))
    return first.getDefiningOp()->emitError()
           << "cannot mirror " << describe(first.getDefiningOp())
           << ": it comes before the first macro-layer '" << stages.front().name
           << "', and only macro-layers have decoders";
  // Each macro-layer must reconstruct the previous one's output exactly.
  for (auto [i, stage] : llvm::enumerate(stages)) {
    if (!stage.macro || i == 0)
      continue;
    Value input = stage.macro.getInputs()[0];
    Value below = stages[i - 1].output;
    if (rankedOf(input) != rankedOf(below))
      return stage.macro.emitError()
             << "cannot mirror macro-layer '" << stage.name << "': its input "
             << input.getType() << " is not the output " << below.getType()
             << " of '" << stages[i - 1].name
             << "' (a layer between them changes the shape)";
  }
  if (variant.swwae && llvm::none_of(stages, [](const Stage &s) {
        return static_cast<bool>(s.pool);
      }))
    return augment.emitError()
           << augment.getVariant()
           << " unpools with max-pooling switches, but no macro-layer of '"
           << func.getName() << "' has a max-pool";
  return success();
}

/// Every gamma (the file's and the phase's) names a stage below the top of
/// the decoder: the others weigh no loss term.
LogicalResult Mirror::checkGammas() {
  llvm::StringSet<> known, terms;
  module.walk([&](MacroOp m) { known.insert(m.getName()); });
  func.walk([&](FCOp fc) { known.insert(layerName(fc)); });
  for (const Stage &s : stages)
    if (&s != &stages.back())
      terms.insert(s.name);
  auto check = [&](DictionaryAttr gammas, Operation *at) -> LogicalResult {
    for (NamedAttribute g : gammas) {
      StringRef name = g.getName().strref();
      if (!known.contains(name))
        return at->emitError() << "gamma names macro-layer '" << name
                               << "', which does not exist";
      if (!terms.contains(name))
        return at->emitError()
               << "gamma names '" << name
               << "', which produces no loss term: the decoder starts from '"
               << stages.back().name << "'";
    }
    return success();
  };
  if (failed(check(augment.getGamma(), augment)))
    return failure();
  if (!phaseGamma)
    return success();
  // Reported at the phase that gave the gamma, where there is one.
  Operation *at = func;
  if (auto name = func->getAttrOfType<FlatSymbolRefAttr>("net.phase"))
    if (Operation *phase = SymbolTable::lookupSymbolIn(module, name))
      at = phase;
  return check(phaseGamma, at);
}

/// Declares (once) and reads a decoder parameter.
Value Mirror::param(StringRef name, ArrayRef<int64_t> shape, bool isBias,
                    Location loc) {
  auto type = mapType(builder.getContext(), shape);
  if (!SymbolTable::lookupSymbolIn(module, name)) {
    OpBuilder::InsertionGuard guard(builder);
    builder.setInsertionPoint(func);
    Attribute init;
    Location declared = loc;
    if (isBias) {
      init = ConstantInitAttr::get(builder.getContext(), llvm::APFloat(0.0));
    } else if (auto custom = augment.getDecoderInitAttr()) {
      init = custom;
      // A file is reported where the augment section names it.
      if (std::optional<Location> named = fileNamedAt(augment.getLoc()))
        declared = withFileNamedAt(loc, *named);
    } else {
      init = GaussianInitAttr::get(
          builder.getContext(), llvm::APFloat(kDecoderStd), llvm::APFloat(0.0));
    }
    // FACTS.md: weights lr x1 decay x1, biases lr x2 decay x0.
    builder.create<ParamOp>(
        declared, builder.getStringAttr(name), TypeAttr::get(type), init,
        builder.getF64FloatAttr(isBias ? 2.0 : 1.0),
        builder.getF64FloatAttr(isBias ? 0.0 : 1.0),
        builder.getStringAttr("decoder"), builder.getBoolAttr(true));
  }
  return builder.create<ParamGetOp>(loc, type, name);
}

/// The decoder twin of one convolution: from its output map back to its input
/// map (channels = the encoder conv's input channels).
///  - stride 1 with "same" padding: a conv with the same kernel and padding;
///  - stride 2^m (m >= 2) with a large enough kernel: m stride-2 3x3 transposed
///    convs, then a stride-1 transposed conv whose kernel k - 2(2^m - 1) makes
///    the composite footprint k x k with stride 2^m (AlexNet conv1: 55 -> 111
///    -> 223 -> 227, paper footnote 2);
///  - otherwise: one transposed conv with the same kernel, stride and padding.
Value Mirror::mirrorConv(Conv2DOp conv, Value x, bool producesImage,
                         Location loc) {
  auto in = rankedOf(conv.getInput());
  auto w = rankedOf(conv.getWeight());
  int64_t cin = in.getDimSize(1), cout = w.getDimSize(0);
  int64_t kh = w.getDimSize(2), kw = w.getDimSize(3);
  int64_t groups = conv.getGroupsAttr().getInt();
  auto stride = conv.getStride(), pad = conv.getPad();
  std::string name = "dec." + paramStem(conv, conv.getWeight());
  Value bias;
  auto finish = [&](Value y) { return producesImage ? y : relu(y, loc); };

  if (stride[0] == 1 && stride[1] == 1 && 2 * pad[0] == kh - 1 &&
      2 * pad[1] == kw - 1) {
    Value weight =
        param(name + ".weight", {cin, cout / groups, kh, kw}, false, loc);
    if (conv.getBias())
      bias = param(name + ".bias", {cin}, true, loc);
    return finish(builder.create<Conv2DOp>(loc, unranked(), x, weight, bias,
                                           conv.getStrideAttr(),
                                           conv.getPadAttr(), groups));
  }

  auto zeros = builder.getDenseI64ArrayAttr({0, 0});
  int64_t s = stride[0];
  int64_t m = llvm::isPowerOf2_64(s) ? llvm::Log2_64(s) : 0;
  int64_t kLast = kh - 2 * (s - 1);
  auto out = rankedOf(conv.getOutput());
  if (s == stride[1] && kh == kw && pad[0] == pad[1] && m >= 2 && kLast >= 1) {
    // Sizes after the m doublings n -> 2n + 1, then the stride-1 layer.
    int64_t h = out.getDimSize(2), wd = out.getDimSize(3);
    for (int64_t i = 0; i < m; ++i)
      h = 2 * h + 1, wd = 2 * wd + 1;
    if (h - 1 + kLast - 2 * pad[0] == in.getDimSize(2) &&
        wd - 1 + kLast - 2 * pad[1] == in.getDimSize(3)) {
      for (int64_t i = 1; i <= m; ++i) {
        std::string up = name + ".up" + std::to_string(i);
        Value weight = param(up + ".weight", {cout, cout, 3, 3}, false, loc);
        Value b =
            conv.getBias() ? param(up + ".bias", {cout}, true, loc) : Value();
        x = relu(builder.create<Deconv2DOp>(
                     loc, unranked(), x, weight, b,
                     builder.getDenseI64ArrayAttr({2, 2}), zeros, zeros, 1),
                 loc);
      }
      Value weight = param(name + ".weight", {cout, cin / groups, kLast, kLast},
                           false, loc);
      if (conv.getBias())
        bias = param(name + ".bias", {cin}, true, loc);
      return finish(
          builder.create<Deconv2DOp>(loc, unranked(), x, weight, bias,
                                     builder.getDenseI64ArrayAttr({1, 1}),
                                     conv.getPadAttr(), zeros, groups));
    }
  }

  // One transposed conv; output_padding restores rows a strided conv dropped.
  SmallVector<int64_t> outPad;
  for (int i = 0; i < 2; ++i) {
    int64_t k = i == 0 ? kh : kw;
    int64_t natural = (out.getDimSize(2 + i) - 1) * stride[i] - 2 * pad[i] + k;
    outPad.push_back(in.getDimSize(2 + i) - natural);
  }
  Value weight =
      param(name + ".weight", {cout, cin / groups, kh, kw}, false, loc);
  if (conv.getBias())
    bias = param(name + ".bias", {cin}, true, loc);
  return finish(builder.create<Deconv2DOp>(
      loc, unranked(), x, weight, bias, conv.getStrideAttr(), conv.getPadAttr(),
      builder.getDenseI64ArrayAttr(outPad), groups));
}

/// `net.macro "dec.<stage>"(â_l[, switches]) { ... }` producing â_{l-1}.
Value Mirror::buildStageDecoder(Stage &stage, Value x, bool producesImage) {
  std::string name = ("dec." + stage.name).str();
  Location loc = decoderLoc(stage, name);
  SmallVector<Value> inputs{x};
  bool useSwitches = variant.swwae && stage.pool;
  if (useSwitches)
    inputs.push_back(stage.switches);
  auto macro = builder.create<MacroOp>(loc, TypeRange{unranked()}, name,
                                       ValueRange(inputs));
  SmallVector<Type> argTypes;
  SmallVector<Location> argLocs;
  for (Value v : inputs) {
    argTypes.push_back(v.getType());
    argLocs.push_back(loc);
  }
  OpBuilder::InsertionGuard guard(builder);
  Block *body = builder.createBlock(&macro.getBody(), {}, argTypes, argLocs);
  Value y = body->getArgument(0);

  if (stage.fc) {
    auto w = rankedOf(stage.fc.getWeight());
    int64_t in = w.getDimSize(1), out = w.getDimSize(0);
    std::string twin = "dec." + paramStem(stage.fc, stage.fc.getWeight());
    Value weight = param(twin + ".weight", {in, out}, false, loc);
    Value bias =
        stage.fc.getBias() ? param(twin + ".bias", {in}, true, loc) : Value();
    y = builder.create<FCOp>(loc, unranked(), y, weight, bias);
    if (stage.fcRelu)
      y = relu(y, loc);
    if (stage.unflatten)
      y = builder.create<ReshapeOp>(
          loc, unranked(), y,
          builder.getDenseI64ArrayAttr(
              stage.unflatten.getShape().drop_front()));
  } else {
    if (MaxPoolOp pool = stage.pool) {
      auto poolIn = rankedOf(pool.getInput());
      auto kernel = pool.getKernel(), stride = pool.getStride();
      bool overlapping = stride[0] < kernel[0] || stride[1] < kernel[1];
      DenseI64ArrayAttr position;
      if (!useSwitches) {
        // recon-dec's fixed switch: kernel/2 inside each window.
        auto custom = augment.getPosition();
        position = builder.getDenseI64ArrayAttr(
            custom ? SmallVector<int64_t>(custom->begin(), custom->end())
                   : SmallVector<int64_t>{kernel[0] / 2, kernel[1] / 2});
      }
      y = builder.create<UnpoolOp>(
          loc, unranked(), y, useSwitches ? body->getArgument(1) : Value(),
          pool.getKernelAttr(), pool.getStrideAttr(), pool.getPadAttr(),
          builder.getDenseI64ArrayAttr(
              {poolIn.getDimSize(2), poolIn.getDimSize(3)}),
          position, overlapping);
    }
    for (auto [i, conv] : llvm::enumerate(llvm::reverse(stage.convs))) {
      bool last = i + 1 == stage.convs.size();
      y = mirrorConv(
          conv, y, producesImage && last,
          NameLoc::get(
              builder.getStringAttr("dec." + paramStem(conv, conv.getWeight())),
              conv.getLoc()));
    }
  }
  builder.create<YieldOp>(loc, ValueRange{y});
  return macro.getResult(0);
}

LogicalResult Mirror::run() {
  if (failed(collectStages()) || failed(checkGammas()))
    return failure();
  // A custom SAE position must lie inside every pool window.
  if (auto position = augment.getPosition(); position && !variant.swwae)
    for (Stage &s : stages)
      if (s.pool && ((*position)[0] >= s.pool.getKernel()[0] ||
                     (*position)[1] >= s.pool.getKernel()[1]))
        return augment.emitError()
               << "position [" << (*position)[0] << ", " << (*position)[1]
               << "] lies outside the pooling window of macro-layer '" << s.name
               << "'";

  auto ret = cast<func::ReturnOp>(func.getBody().front().getTerminator());
  auto ce = ret.getOperand(0).getDefiningOp<SoftmaxCrossEntropyOp>();
  if (!ce)
    return func.emitError() << "network '" << func.getName()
                            << "' must return its classification loss first";
  builder.setInsertionPoint(ret);
  Value image = func.getArgument(0);

  SmallVector<Value> terms{ce.getLoss()};
  SmallVector<double> weights{1.0};
  SmallVector<StringRef> names{"classification"};
  SmallVector<std::string> nameStorage;
  nameStorage.reserve(stages.size() + 1);
  double targetScale = augment.getTargetScale().convertToDouble();
  Value imageTarget;
  auto addLoss = [&](Value reconstruction, size_t level) {
    // recon-dec compares the image reconstruction with the encoder's input
    // times a factor of its own (1/255); the image gets no gradient either way.
    if (level == 0 && !imageTarget)
      imageTarget =
          targetScale == 1.0
              ? image
              : builder.create<ScaleOp>(
                    NameLoc::get(builder.getStringAttr("recon.target"),
                                 func.getLoc()),
                    image.getType(), image,
                    builder.getF64FloatAttr(targetScale));
    Value target = level == 0 ? imageTarget : stages[level - 1].output;
    std::string term =
        level == 0 ? "recon.image" : ("recon." + stages[level - 1].name).str();
    Location loc = NameLoc::get(
        builder.getStringAttr(term),
        level == 0 ? func.getLoc() : stages[level - 1].anchor->getLoc());
    terms.push_back(builder.create<EuclideanLossOp>(
        loc, mapType(builder.getContext(), {}), reconstruction, target));
    weights.push_back(level == 0 ? lambda : gammaFor(stages[level - 1].name));
    nameStorage.push_back(std::move(term));
    names.push_back(nameStorage.back());
  };

  if (variant.losses == Variant::Losses::Reconstruct) {
    SmallVector<Value> images;
    SmallVector<Attribute> from;
    for (size_t top = 1; top <= stages.size(); ++top) {
      Value x = stages[top - 1].output;
      for (size_t l = top; l >= 1; --l)
        x = buildStageDecoder(stages[l - 1], x, l == 1);
      images.push_back(x);
      from.push_back(builder.getStringAttr(stages[top - 1].name));
    }
    ret->setOperands(images);
    func->setAttr("net.reconstruct_from", builder.getArrayAttr(from));
    // The classifier's head is now dead.
    for (Operation &op :
         llvm::make_early_inc_range(llvm::reverse(func.getBody().front())))
      if (isOpTriviallyDead(&op))
        op.erase();
    if (failed(inferShapes(module)))
      return failure();
    // Back to the encoder input's units, which netrun draws.
    if (targetScale != 1.0)
      for (OpOperand &image : ret->getOpOperands())
        image.set(builder.create<ScaleOp>(
            image.get().getLoc(), image.get().getType(), image.get(),
            builder.getF64FloatAttr(1.0 / targetScale)));
    return success();
  }

  if (variant.losses == Variant::Losses::Layerwise) {
    // Decoder l starts from the clean a_l; its loss is at level l - 1.
    for (size_t l = 1; l <= stages.size(); ++l)
      addLoss(buildStageDecoder(stages[l - 1], stages[l - 1].output, l == 1),
              l - 1);
  } else {
    Value x = stages.back().output;
    SmallVector<std::pair<Value, size_t>> levels;
    for (size_t l = stages.size(); l >= 1; --l) {
      x = buildStageDecoder(stages[l - 1], x, l == 1);
      levels.push_back({x, l - 1});
    }
    // Image loss first, then the intermediate levels bottom-up.
    for (auto &[value, level] : llvm::reverse(levels))
      if (level == 0 || variant.losses == Variant::Losses::All)
        addLoss(value, level);
  }

  Value total = builder.create<ObjectiveOp>(
      NameLoc::get(builder.getStringAttr("objective"), func.getLoc()),
      mapType(builder.getContext(), {}), terms,
      builder.getDenseF64ArrayAttr(weights), builder.getStrArrayAttr(names));
  ret.setOperand(0, total);
  return inferShapes(module);
}

} // namespace

void netc::warnIdleSettings(ModuleOp module) {
  auto augments = module.getOps<AugmentOp>();
  AugmentOp augment = augments.empty() ? AugmentOp() : *augments.begin();
  StringRef variant = augment ? augment.getVariant() : "none";
  if (variant == "none")
    for (PhaseOp phase : module.getOps<PhaseOp>()) {
      SmallVector<StringRef> idle;
      if (phase.getLambda())
        idle.push_back("lambda");
      if (phase.getGamma())
        idle.push_back("gamma");
      if (!idle.empty())
        phase.emitWarning()
            << "variant none has no decoder: phase '" << phase.getSymName()
            << "''s " << llvm::join(idle, " and ")
            << (idle.size() == 1 ? " does" : " do") << " nothing";
    }
  if (!augment)
    return;
  SmallVector<StringRef> idle;
  if (variant == "none") {
    if (augment.getLambda().convertToDouble() != kDefaultLambda)
      idle.push_back("lambda");
    if (!augment.getGamma().empty())
      idle.push_back("gamma");
    if (augment.getFrom())
      idle.push_back("from");
    if (augment.getPosition())
      idle.push_back("position");
    if (augment.getDecoderInit())
      idle.push_back("init");
    if (augment.getTargetScale().convertToDouble() != 1.0)
      idle.push_back("target");
    if (!idle.empty())
      augment.emitWarning()
          << "variant none has no decoder: " << llvm::join(idle, ", ")
          << (idle.size() == 1 ? " does" : " do") << " nothing";
  } else if (variant.starts_with("swwae") && augment.getPosition()) {
    augment.emitWarning() << "'position' is SAE's fixed unpooling position; "
                          << variant
                          << " unpools at the max-pool's switches, so it does "
                             "nothing";
  }
}

FailureOr<AugmentOp> netc::overrideVariant(ModuleOp module, StringRef variant) {
  if (!llvm::is_contained(augmentVariants(), variant))
    return module.emitError()
           << "unknown augmentation variant '" << variant << "'";
  auto augments = llvm::to_vector(module.getOps<AugmentOp>());
  AugmentOp augment = augments.empty() ? AugmentOp() : augments.front();
  if (!augment) {
    OpBuilder builder(module.getBodyRegion());
    augment = builder.create<AugmentOp>(
        module.getLoc(), builder.getStringAttr(variant),
        builder.getF64FloatAttr(kDefaultLambda), builder.getDictionaryAttr({}),
        StringAttr(), DenseI64ArrayAttr(), Attribute(),
        builder.getF64FloatAttr(1.0));
  }
  augment.setVariant(variant);
  return augment;
}

namespace {

/// `no gamma for 'conv1': its reconstruction loss falls back to lambda
/// (1 in phase 'decoders'; 0.0001 in phases 'stacked', 'joint')`. The
/// network itself is named only outside the trainer pipeline.
void warnFallback(AugmentOp augment, StringRef stage,
                  ArrayRef<GammaFallback> uses) {
  bool phases = llvm::any_of(uses, [](auto &u) { return u.isPhase; });
  SmallVector<std::pair<double, SmallVector<std::string>>> byLambda;
  for (const GammaFallback &use : uses) {
    if (use.isPhase != phases)
      continue;
    auto it = llvm::find_if(
        byLambda, [&](const auto &entry) { return entry.first == use.lambda; });
    if (it == byLambda.end())
      it = byLambda.insert(byLambda.end(), {use.lambda, {}});
    it->second.push_back("'" + use.name + "'");
  }
  std::string text;
  llvm::raw_string_ostream os(text);
  os << "no gamma for '" << stage
     << "': its reconstruction loss falls back to lambda (";
  llvm::interleave(
      byLambda, os,
      [&](const auto &entry) {
        os << llvm::format("%g", entry.first) << " in "
           << (phases ? "phase" : "network")
           << (entry.second.size() > 1 ? "s " : " ");
        llvm::interleaveComma(entry.second, os);
      },
      "; ");
  os << ")";
  augment.emitWarning(text);
}

struct MirrorPass : netc::impl::MirrorBase<MirrorPass> {
  using MirrorBase::MirrorBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    auto augments = llvm::to_vector(module.getOps<AugmentOp>());
    if (augments.size() > 1) {
      augments[1].emitError("a module has at most one net.augment");
      return signalPassFailure();
    }
    AugmentOp augment = augments.empty() ? AugmentOp() : augments.front();
    if (!variant.empty()) {
      auto overridden = overrideVariant(module, variant);
      if (failed(overridden))
        return signalPassFailure();
      augment = *overridden;
    }
    if (!augment || augment.getVariant() == "none")
      return;

    // The network itself (the variant's own decoder), and every step
    // function of net-phases with the topology its phase trains.
    std::optional<Variant> variant = parseVariant(augment.getVariant());
    GammaFallbacks fallbacks;
    for (auto func : llvm::to_vector(module.getOps<func::FuncOp>())) {
      Variant v = *variant;
      if (auto topology = func->getAttrOfType<StringAttr>("net.topology")) {
        if (topology.getValue() == "none")
          continue;
        if (topology.getValue() == "layerwise")
          v.losses = Variant::Losses::Layerwise;
        if (topology.getValue() == "reconstruct")
          v.losses = Variant::Losses::Reconstruct;
      } else if (!func->hasAttr("net.network")) {
        continue;
      }
      if (failed(mirrorFunction(module, func, augment, v, fallbacks)))
        return signalPassFailure();
    }
    // One warning per stage: a weight the user may not know they chose.
    for (auto &[stage, uses] : fallbacks)
      warnFallback(augment, stage, uses);
  }

  static LogicalResult mirrorFunction(ModuleOp module, func::FuncOp func,
                                      AugmentOp augment, Variant variant,
                                      GammaFallbacks &fallbacks) {
    bool typed = true;
    func.walk([&](Operation *op) {
      for (Type t : op->getResultTypes())
        if (isa<UnrankedTensorType>(t) ||
            (isa<SwitchesType>(t) && !cast<SwitchesType>(t).hasRank()))
          typed = false;
    });
    if (!typed)
      return func.emitError("net-mirror needs inferred shapes; run "
                            "net-infer-shapes first");
    double lambda = augment.getLambda().convertToDouble();
    if (auto override = func->getAttrOfType<FloatAttr>("net.lambda"))
      lambda = override.getValueAsDouble();
    return Mirror(module, func, augment, variant, lambda, fallbacks).run();
  }
};

} // namespace

bool netc::isMirrored(func::FuncOp network) {
  return llvm::any_of(
      network.getBody().front().getOps<MacroOp>(),
      [](MacroOp m) { return m.getName().starts_with("dec."); });
}
