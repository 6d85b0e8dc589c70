//===- Phases.cpp - net-phases: one step function per training phase ------===//
//
// 1. Give every dropout its own mask seed (before cloning, so a dropout keeps
//    its seed in every step function).
// 2. Without `net.phase` ops, add the default schedule (README "Training").
// 3. For each phase, clone the network into `step.<phase>` with the decoder
//    topology it trains and its loss weights; skip phases the variant has no
//    decoder for. A batch norm the phase freezes runs in inference mode, so
//    its running statistics do not move.
// 4. Add `eval`: the classifier alone, without dropout, batch norm in
//    inference mode; and, with a decoder, `reconstruct`: the same encoder
//    with a stacked decoder from every macro-layer down to the image.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/IR/Builders.h"

namespace netc {
#define GEN_PASS_DEF_PHASES
#include "passes/Passes.h.inc"
} // namespace netc

using namespace mlir;
using namespace netc;
using namespace netc::net;

namespace {

/// A phase's decoder topology for `variant`, or empty when the variant has
/// no such decoder.
StringRef resolveTopology(StringRef decoder, StringRef variant) {
  bool none = variant == "none";
  bool layerwise = variant.ends_with("-layerwise");
  if (decoder == "none")
    return "none";
  if (decoder == "default")
    return none ? "none" : "default";
  if (none)
    return {};
  if (decoder == "layerwise")
    return layerwise ? "default" : "layerwise";
  // stacked
  return layerwise ? StringRef() : "default";
}

/// True when some parameter is imported (the encoder is pretrained).
bool hasImportedParams(ModuleOp module) {
  for (ParamOp param : module.getOps<ParamOp>())
    if (isa<FileInitAttr>(param.getInit()))
      return true;
  return false;
}

/// The default schedule: the paper's steps 2-4 after a classifier-only
/// pretraining phase when nothing is imported.
void addDefaultSchedule(ModuleOp module, func::FuncOp network,
                        StringRef variant) {
  OpBuilder b(network);
  Location loc = network.getLoc();
  auto phase = [&](StringRef name, StringRef decoder,
                   ArrayRef<StringRef> freeze, double lr, double decay,
                   int64_t batch, int64_t epochs, StringRef policy) {
    b.create<PhaseOp>(loc, b.getStringAttr(name), b.getStringAttr(decoder),
                      b.getStrArrayAttr(freeze), b.getF64FloatAttr(lr),
                      b.getF64FloatAttr(0.9), b.getF64FloatAttr(decay),
                      b.getI64IntegerAttr(batch), b.getI64IntegerAttr(epochs),
                      b.getI64IntegerAttr(0), b.getStringAttr(policy),
                      b.getF64FloatAttr(0.1), b.getI64IntegerAttr(2),
                      b.getF64FloatAttr(0.0), FloatAttr(), DictionaryAttr(),
                      DictionaryAttr());
  };
  if (variant == "none") {
    phase("train", "none", {}, 0.01, 5e-4, 64, 8, "step");
    return;
  }
  if (!hasImportedParams(module))
    phase("pretrain", "none", {}, 0.01, 5e-4, 64, 2, "fixed");
  phase("decoders", "layerwise", {"encoder", "classifier"}, 0.01, 0.0, 16, 1,
        "fixed");
  if (!variant.ends_with("-layerwise"))
    phase("stacked", "stacked", {"encoder", "classifier"}, 0.001, 0.0, 16, 1,
          "fixed");
  phase("joint", "default", {}, 0.001, 5e-4, 64, 4, "step");
}

func::FuncOp cloneNetwork(func::FuncOp network, StringRef name) {
  OpBuilder b(network->getBlock(), std::next(Block::iterator(network)));
  auto clone = cast<func::FuncOp>(b.clone(*network));
  clone.setSymName(name);
  clone->removeAttr("net.network");
  return clone;
}

/// A clone of `from` in inference mode: no dropout, batch norm on running
/// statistics.
func::FuncOp cloneInference(func::FuncOp from, StringRef name,
                            StringRef topology) {
  func::FuncOp f = cloneNetwork(from, name);
  for (StringRef attr :
       {"net.phase", "net.topology", "net.lambda", "net.gamma", "net.eval"})
    f->removeAttr(attr);
  f->setAttr("net.topology", StringAttr::get(f.getContext(), topology));
  f.walk([](DropoutOp d) {
    d.getOutput().replaceAllUsesWith(d.getInput());
    d.erase();
  });
  f.walk([&](BatchNormOp bn) { bn.setInference(true); });
  return f;
}

/// A frozen layer is a fixed function: a batch norm whose scale the phase
/// does not train runs on its running statistics, which then stay as they
/// are. Clones of a step start in training mode again.
void freezeBatchNorms(ModuleOp module, func::FuncOp step, PhaseOp phase) {
  llvm::StringSet<> freeze;
  for (Attribute a : phase.getFreeze())
    freeze.insert(cast<StringAttr>(a).getValue());
  SymbolTable symbols(module);
  step.walk([&](BatchNormOp bn) {
    auto get = bn.getScale().getDefiningOp<ParamGetOp>();
    auto param = get ? symbols.lookup<ParamOp>(get.getName()) : ParamOp();
    bn.setInference(param && isFrozen(param, get, freeze));
  });
}

struct PhasesPass : netc::impl::PhasesBase<PhasesPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    auto networks = llvm::to_vector(llvm::make_filter_range(
        module.getOps<func::FuncOp>(),
        [](func::FuncOp f) { return f->hasAttr("net.network"); }));
    if (networks.size() != 1) {
      module.emitError() << "expected one function marked net.network, found "
                         << networks.size();
      return signalPassFailure();
    }
    func::FuncOp network = networks.front();
    // The step functions are copies of the network that net-mirror then
    // augments per phase; copies of a mirrored one would hold its decoder
    // in every phase, and @reconstruct a second one.
    if (isMirrored(network)) {
      network.emitError()
          << "network '" << network.getSymName()
          << "' is already mirrored; net-phases runs before net-mirror "
             "(netc -emit=mlir gives the input it takes)";
      return signalPassFailure();
    }
    auto augments = llvm::to_vector(module.getOps<AugmentOp>());
    StringRef variant =
        augments.empty() ? StringRef("none") : augments.front().getVariant();

    int64_t seed = 0;
    network.walk([&](DropoutOp d) { d.setSeed(++seed); });

    if (module.getOps<PhaseOp>().empty()) {
      addDefaultSchedule(module, network, variant);
      for (PhaseOp phase : module.getOps<PhaseOp>())
        if (phase.getSymName() == network.getSymName()) {
          network.emitError()
              << "network name '" << network.getSymName()
              << "' is the name of a phase of the default schedule; rename "
                 "the network or give the file's train section phases of its "
                 "own";
          return signalPassFailure();
        }
    }

    Builder b(module.getContext());
    func::FuncOp last = network;
    for (PhaseOp phase : module.getOps<PhaseOp>()) {
      StringRef topology = resolveTopology(phase.getDecoder(), variant);
      if (topology.empty()) {
        phase.emitWarning()
            << "phase '" << phase.getSymName() << "' skipped: " << variant
            << " has no " << phase.getDecoder() << " decoder";
        continue;
      }
      func::FuncOp step =
          cloneNetwork(last, ("step." + phase.getSymName()).str());
      // Clones of the pristine network: drop what an earlier clone added.
      for (StringRef attr :
           {"net.phase", "net.topology", "net.lambda", "net.gamma"})
        step->removeAttr(attr);
      step->setAttr("net.phase",
                    FlatSymbolRefAttr::get(phase.getSymNameAttr()));
      step->setAttr("net.topology", b.getStringAttr(topology));
      if (auto lambda = phase.getLambdaAttr())
        step->setAttr("net.lambda", lambda);
      if (auto gamma = phase.getGammaAttr())
        step->setAttr("net.gamma", gamma);
      freezeBatchNorms(module, step, phase);
      last = step;
    }
    // Every phase skipped: a trainer that trains nothing ("training
    // already finished", no checkpoint) would be no use to anyone.
    if (last == network && !module.getOps<PhaseOp>().empty()) {
      PhaseOp first = *module.getOps<PhaseOp>().begin();
      first.emitError() << "no phase trains under variant '" << variant
                        << "': every phase of the schedule needs a decoder "
                           "it does not have";
      return signalPassFailure();
    }

    func::FuncOp eval = cloneInference(last, "eval", "none");
    eval->setAttr("net.eval", b.getUnitAttr());
    // With a decoder: image reconstructions from every macro-layer.
    if (variant != "none")
      cloneInference(eval, "reconstruct", "reconstruct");
    if (module.getOps<EvalOp>().empty()) {
      OpBuilder ob(network);
      ob.create<EvalOp>(network.getLoc(), ob.getStrArrayAttr({"full"}),
                        DenseI64ArrayAttr());
    }
  }
};

} // namespace

FailureOr<PhaseOp> netc::stepPhase(func::FuncOp func, SymbolTable &symbols) {
  auto ref = func->getAttrOfType<FlatSymbolRefAttr>("net.phase");
  if (!ref)
    return PhaseOp();
  auto phase = symbols.lookup<PhaseOp>(ref.getValue());
  if (!phase) {
    func.emitError() << "names phase " << ref << ", which does not exist";
    return failure();
  }
  return phase;
}
