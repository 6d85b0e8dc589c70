//===- SemaNetwork.cpp - Expanding and naming the network -----------------===//
//
// The network half of Sema: from `network { ... }` to Model::network.
//
// 1. expand() walks a body. A block call binds the block's parameters to the
//    caller's already resolved values and expands the block's body; `repeat`
//    expands its body N times; a layer statement becomes a PendingLayer. The
//    limits of Sema.h (depth, steps, layers) are checked on the way, so a
//    hostile input stops with one error.
// 2. A layer statement is read by a LayerBuilder: its positional and named
//    values are gathered under the option names of its kind's LayerSpec,
//    then each is checked and turned into a number of the Layer.
// 3. nameLayers() gives every layer its final name (a label, the
//    macro-layer's rules, or `<kind><n>`), checkNames() reports clashes, and
//    `pretrained` fills every parameter without an explicit init.
//
//===----------------------------------------------------------------------===//

#include "frontend/SemaInternal.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/MathExtras.h"
#include "llvm/Support/raw_ostream.h"

namespace netc {
namespace sema {

/// Parameter bindings of one block expansion.
struct Env {
  const ast::Block *block = nullptr; ///< Null at network level.
  llvm::StringMap<ast::Value> bindings;
};

/// A layer made by expansion, before naming.
struct PendingLayer {
  Layer layer;
  std::string label;
  llvm::SMLoc loc;
  bool weightInitGiven = false;
  bool biasInitGiven = false;
};

/// A network body entry before naming.
struct PendingStage {
  bool isMacro = false;
  std::string macroName;
  llvm::SMLoc macroLoc;
  std::vector<PendingLayer> layers;
};

} // namespace sema
} // namespace netc

using namespace netc;
using namespace netc::sema;
using llvm::SMLoc;
using llvm::StringRef;
using llvm::Twine;

//===----------------------------------------------------------------------===//
// Layer kinds and their options
//===----------------------------------------------------------------------===//

namespace {
/// What a layer kind accepts: positional values (mapped to option names) and
/// named options.
struct LayerSpec {
  StringRef name;
  LayerKind kind;
  llvm::ArrayRef<StringRef> positional;
  llvm::ArrayRef<StringRef> options;
};
} // namespace

static const StringRef kOutPositional[] = {"out"};
static const StringRef kKernelPositional[] = {"kernel"};
static const StringRef kRatioPositional[] = {"ratio"};
static const StringRef kConvOptions[] = {
    "out",     "kernel",     "stride",       "pad",
    "groups",  "bias",       "init",         "bias_init",
    "lr_mult", "decay_mult", "bias_lr_mult", "bias_decay_mult"};
static const StringRef kFCOptions[] = {
    "out",     "bias",       "init",         "bias_init",
    "lr_mult", "decay_mult", "bias_lr_mult", "bias_decay_mult"};
static const StringRef kPoolOptions[] = {"kernel", "stride", "pad", "ceil"};
static const StringRef kDropoutOptions[] = {"ratio"};
static const StringRef kLRNOptions[] = {"size", "alpha", "beta", "k"};
static const StringRef kBatchNormOptions[] = {
    "eps",     "momentum",   "init",         "bias_init",
    "lr_mult", "decay_mult", "bias_lr_mult", "bias_decay_mult"};

static const LayerSpec kLayerSpecs[] = {
    {"conv", LayerKind::Conv, kOutPositional, kConvOptions},
    {"relu", LayerKind::Relu, {}, {}},
    {"maxpool", LayerKind::MaxPool, kKernelPositional, kPoolOptions},
    {"avgpool", LayerKind::AvgPool, kKernelPositional, kPoolOptions},
    {"fc", LayerKind::FC, kOutPositional, kFCOptions},
    {"dropout", LayerKind::Dropout, kRatioPositional, kDropoutOptions},
    {"lrn", LayerKind::LRN, {}, kLRNOptions},
    {"batchnorm", LayerKind::BatchNorm, {}, kBatchNormOptions},
    {"flatten", LayerKind::Flatten, {}, {}},
};

static const LayerSpec *findLayerSpec(StringRef name) {
  for (const LayerSpec &spec : kLayerSpecs)
    if (spec.name == name)
      return &spec;
  return nullptr;
}

static StringRef kindName(LayerKind kind) {
  for (const LayerSpec &spec : kLayerSpecs)
    if (spec.kind == kind)
      return spec.name;
  return "layer";
}

static InitSpec gaussianInit(double std) {
  InitSpec init;
  init.kind = InitSpec::Kind::Gaussian;
  init.value = std;
  return init;
}

static InitSpec constantInit(double value) {
  InitSpec init;
  init.kind = InitSpec::Kind::Constant;
  init.value = value;
  return init;
}

//===----------------------------------------------------------------------===//
// LayerBuilder
//===----------------------------------------------------------------------===//

/// Reads one layer statement:
///
/// 1. gather() maps positional values to their option names
///    (LayerSpec::positional), checks every named option against
///    LayerSpec::options, and resolves block parameters;
/// 2. one reader per kind (convOrFC, pool, ...) sets the kind's defaults,
///    then reads each option it takes, in a fixed order (the order of the
///    diagnostics), through the typed readers (extent, pair, number, ...);
/// 3. build() returns the layer if nothing was wrong.
class Sema::LayerBuilder {
public:
  LayerBuilder(Sema &sema, const LayerSpec &spec, const ast::Stmt &stmt,
               const Env &env)
      : sema(sema), spec(spec), stmt(stmt), env(env), kind(spec.name) {}

  /// The layer, or nullopt once its errors are reported.
  std::optional<PendingLayer> build();

private:
  void gather();

  // One reader per kind.
  void convOrFC();
  void pool();
  void dropout();
  void lrn();
  void batchNorm();
  /// init, bias_init and the four multipliers (conv, fc, batchnorm).
  void params();

  // Typed readers of one option: each leaves `slot` alone when the option
  // is not given, and clears `ok` when it is wrong.
  const ast::Value *find(StringRef name) const;
  std::string what(StringRef name) const;
  void extent(StringRef name, int64_t &slot, int64_t min);
  /// Returns whether the option is given and valid.
  bool pair(StringRef name, std::array<int64_t, 2> &slot, int64_t min);
  void number(StringRef name, double &slot, double min);
  void number(StringRef name, double &slot, const Twine &subject,
              const NumberRange &range);
  void boolean(StringRef name, bool &slot);
  /// Returns whether the option is given and valid.
  bool init(StringRef name, InitSpec &slot);

  Sema &sema;
  const LayerSpec &spec;
  const ast::Stmt &stmt;
  const Env &env;
  StringRef kind;

  /// The values given, by option name.
  struct Given {
    SMLoc nameLoc;
    ast::Value value;
  };
  llvm::StringMap<Given> given;
  bool ok = true;
  /// A value that failed to resolve is missing from `given` but was written.
  bool unresolved = false;

  PendingLayer pending;
  Layer &layer = pending.layer;
};

std::optional<PendingLayer> Sema::LayerBuilder::build() {
  gather();
  layer.kind = spec.kind;
  pending.label = stmt.label;
  pending.loc = stmt.loc;
  layer.loc = sema.toLoc(stmt.loc);
  switch (spec.kind) {
  case LayerKind::Conv:
  case LayerKind::FC:
    convOrFC();
    break;
  case LayerKind::MaxPool:
  case LayerKind::AvgPool:
    pool();
    break;
  case LayerKind::Dropout:
    dropout();
    break;
  case LayerKind::LRN:
    lrn();
    break;
  case LayerKind::BatchNorm:
    batchNorm();
    break;
  case LayerKind::Relu:
  case LayerKind::Flatten:
    break;
  }
  if (!ok)
    return std::nullopt;
  return std::move(pending);
}

void Sema::LayerBuilder::gather() {
  size_t maxPositional = spec.positional.size();
  if (stmt.args.size() > maxPositional) {
    const ast::Value &extra = stmt.args[maxPositional];
    // `conv 64 relu`: a forgotten `;`.
    std::string hint;
    if (extra.kind == ast::Value::Kind::Ident &&
        (findLayerSpec(extra.spelling) || sema.blocks.count(extra.spelling)))
      hint = "; missing ';' before '" + extra.spelling + "'?";
    sema.error(extra.loc,
               "layer '" + kind + "' takes " +
                   (maxPositional == 0 ? std::string("no positional values")
                                       : ("at most " + Twine(maxPositional) +
                                          " positional value")
                                             .str()) +
                   ", got " + Twine(stmt.args.size()) + hint);
    ok = false;
  }
  for (size_t i = 0, e = std::min(stmt.args.size(), maxPositional); i != e;
       ++i) {
    std::optional<ast::Value> v = sema.resolve(stmt.args[i], env);
    if (!v) {
      ok = false;
      unresolved = true;
      continue;
    }
    given[spec.positional[i]] = Given{stmt.args[i].loc, std::move(*v)};
  }
  for (const ast::Option &option : stmt.options) {
    if (!llvm::is_contained(spec.options, option.name)) {
      if (spec.options.empty())
        sema.error(option.loc, "layer '" + kind + "' takes no options, got '" +
                                   option.name + "'");
      else
        sema.error(option.loc, "unknown option '" + option.name +
                                   "' for layer '" + kind + "'" +
                                   suggest(option.name, spec.options));
      ok = false;
      continue;
    }
    auto it = given.find(option.name);
    if (it != given.end()) {
      if (sema.error(option.loc, "option '" + option.name + "' of '" + kind +
                                     "' is given twice"))
        sema.note(it->second.nameLoc, "first given here");
      ok = false;
      continue;
    }
    std::optional<ast::Value> v = sema.resolve(option.value, env);
    if (!v) {
      ok = false;
      unresolved = true;
      continue;
    }
    given[option.name] = Given{option.loc, std::move(*v)};
  }
}

void Sema::LayerBuilder::convOrFC() {
  bool isConv = spec.kind == LayerKind::Conv;
  layer.weight = ParamSpec{gaussianInit(0.01), 1.0, 1.0};
  layer.bias = ParamSpec{constantInit(0.0), 2.0, 0.0};
  if (!find("out") && !unresolved) {
    sema.error(stmt.kindLoc,
               isConv
                   ? "layer 'conv' needs its number of output channels, "
                     "e.g. 'conv 64'"
                   : "layer 'fc' needs its number of outputs, e.g. 'fc 4096'");
    ok = false;
  }
  extent("out", layer.outChannels, 1);
  boolean("bias", layer.hasBias);
  params();
  if (!isConv)
    return;
  layer.kernel = {3, 3};
  pair("kernel", layer.kernel, 1);
  pair("stride", layer.stride, 1);
  pair("pad", layer.pad, 0);
  extent("groups", layer.groups, 1);
  if (ok && layer.outChannels % layer.groups != 0) {
    sema.error(find("groups")->loc, "conv output channels (" +
                                        Twine(layer.outChannels) +
                                        ") must be divisible by groups (" +
                                        Twine(layer.groups) + ")");
    ok = false;
  }
}

void Sema::LayerBuilder::pool() {
  layer.kernel = {2, 2};
  pair("kernel", layer.kernel, 1);
  layer.stride = layer.kernel;
  pair("stride", layer.stride, 1);
  pair("pad", layer.pad, 0);
  boolean("ceil", layer.ceilMode);
  if (ok &&
      (layer.pad[0] >= layer.kernel[0] || layer.pad[1] >= layer.kernel[1])) {
    sema.error(find("pad")->loc, "pool pad must be smaller than its kernel");
    ok = false;
  }
  // A max-pool's switch is its maximum's position within the window, in one
  // byte.
  if (ok && spec.kind == LayerKind::MaxPool &&
      layer.kernel[0] * layer.kernel[1] > 256) {
    const ast::Value *kernel = find("kernel");
    sema.error(kernel ? kernel->loc : stmt.kindLoc,
               "max-pool window " + Twine(layer.kernel[0]) + "x" +
                   Twine(layer.kernel[1]) + " has " +
                   Twine(layer.kernel[0] * layer.kernel[1]) +
                   " positions; its switches record one of at most 256");
    ok = false;
  }
}

void Sema::LayerBuilder::dropout() {
  number("ratio", layer.ratio, "dropout ratio",
         NumberRange{0.0, 1.0, /*minOpen=*/false, /*maxOpen=*/true});
}

void Sema::LayerBuilder::lrn() {
  extent("size", layer.lrnSize, 1);
  if (ok && layer.lrnSize % 2 == 0) {
    sema.error(find("size")->loc,
               "lrn size must be odd, got " + Twine(layer.lrnSize));
    ok = false;
  }
  number("alpha", layer.lrnAlpha, 0);
  number("beta", layer.lrnBeta, 0);
  // k 0 would divide a window of zeros (a relu's, say) by 0: NaN.
  number("k", layer.lrnK, "lrn k", kPositive);
}

void Sema::LayerBuilder::batchNorm() {
  layer.weight = ParamSpec{constantInit(1.0), 1.0, 0.0};
  layer.bias = ParamSpec{constantInit(0.0), 1.0, 0.0};
  layer.runningMean = ParamSpec{constantInit(0.0), 0.0, 0.0};
  layer.runningVar = ParamSpec{constantInit(1.0), 0.0, 0.0};
  params();
  number("eps", layer.bnEps, "batchnorm eps", kPositive);
  number("momentum", layer.bnMomentum, "batchnorm momentum",
         NumberRange{0.0, 1.0});
}

void Sema::LayerBuilder::params() {
  pending.weightInitGiven = init("init", layer.weight.init);
  pending.biasInitGiven = init("bias_init", layer.bias.init);
  number("lr_mult", layer.weight.lrMult, 0);
  number("decay_mult", layer.weight.decayMult, 0);
  number("bias_lr_mult", layer.bias.lrMult, 0);
  number("bias_decay_mult", layer.bias.decayMult, 0);
}

const ast::Value *Sema::LayerBuilder::find(StringRef name) const {
  auto it = given.find(name);
  return it == given.end() ? nullptr : &it->second.value;
}

std::string Sema::LayerBuilder::what(StringRef name) const {
  return ("option '" + name + "' of '" + kind + "'").str();
}

void Sema::LayerBuilder::extent(StringRef name, int64_t &slot, int64_t min) {
  if (const ast::Value *v = find(name)) {
    if (std::optional<int64_t> i = sema.getExtent(*v, what(name), min))
      slot = *i;
    else
      ok = false;
  }
}

bool Sema::LayerBuilder::pair(StringRef name, std::array<int64_t, 2> &slot,
                              int64_t min) {
  const ast::Value *v = find(name);
  if (!v)
    return false;
  std::optional<std::array<int64_t, 2>> p = sema.getPair(*v, what(name));
  if (!p) {
    ok = false;
    return false;
  }
  for (int64_t x : *p) {
    if (x < min || x > kMaxExtent) {
      sema.error(v->loc, what(name) + " must be " +
                             (min == 0 ? "non-negative" : "positive") +
                             (x > kMaxExtent
                                  ? " and at most " + std::to_string(kMaxExtent)
                                  : std::string()) +
                             ", got " + v->spelling);
      ok = false;
      return false;
    }
  }
  slot = *p;
  return true;
}

void Sema::LayerBuilder::number(StringRef name, double &slot, double min) {
  const ast::Value *v = find(name);
  if (!v)
    return;
  std::optional<double> d = sema.getNumber(*v, what(name));
  if (!d) {
    ok = false;
    return;
  }
  if (*d < min) {
    sema.error(v->loc, what(name) + " must be at least " + formatNumber(min) +
                           ", got " + v->spelling);
    ok = false;
    return;
  }
  slot = *d;
}

void Sema::LayerBuilder::number(StringRef name, double &slot,
                                const Twine &subject,
                                const NumberRange &range) {
  const ast::Value *v = find(name);
  if (!v)
    return;
  if (std::optional<double> d =
          sema.getNumberInRange(*v, what(name), subject, range))
    slot = *d;
  else
    ok = false;
}

void Sema::LayerBuilder::boolean(StringRef name, bool &slot) {
  if (const ast::Value *v = find(name)) {
    if (std::optional<bool> b = sema.getBool(*v, what(name)))
      slot = *b;
    else
      ok = false;
  }
}

bool Sema::LayerBuilder::init(StringRef name, InitSpec &slot) {
  const ast::Value *v = find(name);
  if (!v)
    return false;
  if (std::optional<InitSpec> init = sema.getInit(*v, what(name))) {
    slot = *init;
    return true;
  }
  ok = false;
  return false;
}

//===----------------------------------------------------------------------===//
// Network
//===----------------------------------------------------------------------===//

/// Reads the parameters of `pending` (a conv, fc or batchnorm layer) that
/// have no explicit init from the `pretrained` file at `path`, under
/// `<key>.<name>` (`key`: the layer's final name, or with `torchvision` its
/// module path). The names are the parameters' own (`weight` and `bias`; a
/// batch norm's `scale`, `shift`, `mean` and `var`), or torchvision's
/// (`weight`, `bias`, `running_mean` and `running_var` for a batch norm),
/// as EmitPlan's torchvisionNames maps them. `namedAt` is the file name's
/// place.
static void applyPretrained(PendingLayer &pending, const std::string &path,
                            const Loc &namedAt, const std::string &key,
                            bool torchvision) {
  Layer &layer = pending.layer;
  if (layer.kind != LayerKind::Conv && layer.kind != LayerKind::FC &&
      layer.kind != LayerKind::BatchNorm)
    return;
  auto fromFile = [&](ParamSpec &param, StringRef suffix) {
    param.init = InitSpec();
    param.init.kind = InitSpec::Kind::File;
    param.init.path = path;
    param.init.key = (key + suffix).str();
    param.init.namedAt = namedAt;
  };
  if (layer.kind == LayerKind::BatchNorm) {
    if (!pending.weightInitGiven)
      fromFile(layer.weight, torchvision ? ".weight" : ".scale");
    if (!pending.biasInitGiven)
      fromFile(layer.bias, torchvision ? ".bias" : ".shift");
    fromFile(layer.runningMean, torchvision ? ".running_mean" : ".mean");
    fromFile(layer.runningVar, torchvision ? ".running_var" : ".var");
    return;
  }
  if (!pending.weightInitGiven)
    fromFile(layer.weight, ".weight");
  if (layer.hasBias && !pending.biasInitGiven)
    fromFile(layer.bias, ".bias");
}

void Sema::buildNetwork(const ast::Network &network) {
  Network &net = model.network;
  net.name = network.name;
  net.loc = toLoc(network.loc);
  // The compiler generates programs by these names beside the network's.
  for (StringRef reserved : {"eval", "reconstruct"})
    if (network.name == reserved)
      error(network.nameLoc, "network name '" + network.name +
                                 "' is reserved for the generated " +
                                 network.name + " program; rename the network");
  const ast::NetItem *input = nullptr, *classes = nullptr,
                     *pretrained = nullptr;
  std::string pretrainedPath;
  Loc pretrainedAt;
  bool torchvisionNames = false;
  std::vector<PendingStage> stages;
  Env topEnv;

  auto once = [&](const ast::NetItem *&slot, const ast::NetItem &item,
                  StringRef keyword) {
    if (slot) {
      if (error(item.loc, "duplicate '" + keyword + "' in network '" +
                              network.name + "'"))
        note(slot->loc, "the first '" + keyword + "' is here");
      return false;
    }
    slot = &item;
    return true;
  };

  for (const ast::NetItem &item : network.items) {
    if (tooLarge)
      break;
    switch (item.kind) {
    case ast::NetItem::Kind::Input:
      if (!once(input, item, "input"))
        break;
      net.inputLoc = toLoc(item.loc);
      buildInput(item.value);
      break;
    case ast::NetItem::Kind::Classes:
      if (!once(classes, item, "classes"))
        break;
      net.classesLoc = toLoc(item.loc);
      if (std::optional<int64_t> n = getExtent(item.value, "'classes'", 1))
        net.classes = *n;
      break;
    case ast::NetItem::Kind::Pretrained: {
      if (!once(pretrained, item, "pretrained"))
        break;
      std::optional<std::string> path = getString(item.value, "'pretrained'");
      if (!path)
        break;
      if (path->empty()) {
        error(item.value.loc, "empty file name in 'pretrained'");
        break;
      }
      pretrainedPath = resolvePath(item.value.loc, *path);
      pretrainedAt = toLoc(item.value.loc);
      for (const ast::Option &option : item.options) {
        if (option.name != "names") {
          error(option.loc, "unknown option '" + option.name +
                                "' of 'pretrained' (expected 'names')");
          continue;
        }
        const ast::Value &v = option.value;
        if (v.kind == ast::Value::Kind::Ident &&
            (v.spelling == "netc" || v.spelling == "torchvision"))
          torchvisionNames = v.spelling == "torchvision";
        else
          error(v.loc, "unknown name mapping in 'pretrained' (expected "
                       "names=netc or names=torchvision)");
      }
      break;
    }
    case ast::NetItem::Kind::Macro: {
      PendingStage stage;
      stage.isMacro = true;
      stage.macroName = item.macroName;
      stage.macroLoc = item.macroNameLoc;
      unsigned before = errorCount;
      expand(item.stmts, topEnv, stage.layers);
      if (stage.layers.empty() && before == errorCount && !tooLarge)
        error(item.macroNameLoc,
              "macro-layer '" + item.macroName + "' has no layers");
      stages.push_back(std::move(stage));
      break;
    }
    case ast::NetItem::Kind::Stmt: {
      std::vector<PendingLayer> layers;
      expand(item.stmts, topEnv, layers);
      for (PendingLayer &layer : layers) {
        PendingStage stage;
        stage.layers.push_back(std::move(layer));
        stages.push_back(std::move(stage));
      }
      break;
    }
    }
  }

  if (!input)
    error(network.nameLoc,
          "network '" + network.name + "' has no 'input' statement");
  if (!classes)
    error(network.nameLoc,
          "network '" + network.name + "' has no 'classes' statement");
  if (stages.empty() && !hadError)
    error(network.nameLoc, "network '" + network.name + "' has no layers");
  if (tooLarge)
    return;

  nameLayers(stages);
  checkNames(stages);

  // `pretrained`: every parameter without an explicit init is read from it,
  // under the layer's name or (names=torchvision) its torchvision module
  // path: the layers up to the end of the last macro-layer are `features`,
  // the others `classifier`, numbered in order as nn.Sequential numbers its
  // modules (flatten is a function in torchvision's forward, not a module).
  if (!pretrainedPath.empty()) {
    size_t features = 0;
    for (size_t i = 0; i < stages.size(); ++i)
      if (stages[i].isMacro)
        features = i + 1;
    if (torchvisionNames && features == 0)
      error(pretrained->loc,
            "'names=torchvision' needs a macro-layer: the layers up to the "
            "end of the last one are torchvision's 'features'");
    int64_t index[2] = {0, 0};
    for (size_t i = 0; i < stages.size(); ++i)
      for (PendingLayer &pending : stages[i].layers) {
        std::string key = pending.layer.name;
        if (torchvisionNames) {
          if (pending.layer.kind == LayerKind::Flatten)
            continue;
          bool inFeatures = i < features;
          key = (inFeatures ? "features." : "classifier.") +
                std::to_string(index[inFeatures ? 0 : 1]++);
        }
        applyPretrained(pending, pretrainedPath, pretrainedAt, key,
                        torchvisionNames);
      }
  }

  for (PendingStage &stage : stages) {
    Stage out;
    if (stage.isMacro) {
      Macro macro;
      macro.name = stage.macroName;
      macro.loc = toLoc(stage.macroLoc);
      for (PendingLayer &layer : stage.layers)
        macro.layers.push_back(std::move(layer.layer));
      out.macro = std::move(macro);
    } else {
      out.layer = std::move(stage.layers.front().layer);
    }
    net.body.push_back(std::move(out));
  }
}

void Sema::buildInput(const ast::Value &v) {
  if (v.kind != ast::Value::Kind::Dims || v.dims.size() != 3) {
    error(v.loc,
          "'input' expects CxHxW dims such as 3x224x224, got " + describe(v));
    return;
  }
  if (llvm::any_of(v.dims,
                   [](int64_t d) { return d <= 0 || d > kMaxExtent; })) {
    error(v.loc, "input dims must be in [1, " + Twine(kMaxExtent) + "], got " +
                     v.spelling);
    return;
  }
  int64_t elements = v.dims[0];
  if (llvm::MulOverflow(elements, v.dims[1], elements) ||
      llvm::MulOverflow(elements, v.dims[2], elements) ||
      elements > kMaxInputElements) {
    error(v.loc, "input " + v.spelling + " is too large (at most " +
                     Twine(kMaxInputElements) + " values per image)");
    return;
  }
  for (unsigned i = 0; i < 3; ++i)
    model.network.input[i] = v.dims[i];
}

//===----------------------------------------------------------------------===//
// Expansion
//===----------------------------------------------------------------------===//

bool Sema::countStep(SMLoc loc) {
  if (++steps <= kMaxExpansionSteps)
    return true;
  tooLarge = true;
  error(loc, "network is too large to expand (more than " +
                 Twine(kMaxExpansionSteps) + " statements)");
  return false;
}

void Sema::expand(const std::vector<ast::Stmt> &stmts, const Env &env,
                  std::vector<PendingLayer> &out) {
  for (const ast::Stmt &stmt : stmts) {
    if (tooLarge || !countStep(stmt.loc))
      return;
    switch (stmt.kind) {
    case ast::Stmt::Kind::Layer:
      buildLayer(stmt, env, out);
      break;
    case ast::Stmt::Kind::Call:
      expandCall(stmt, env, out);
      break;
    case ast::Stmt::Kind::Repeat:
      expandRepeat(stmt, env, out);
      break;
    }
  }
}

llvm::LogicalResult Sema::checkNesting(SMLoc loc) {
  if (nesting <= kMaxNesting)
    return llvm::success();
  error(loc, "blocks and repeats are nested too deeply (more than " +
                 Twine(kMaxNesting) + " levels)");
  return llvm::failure();
}

std::optional<ast::Value> Sema::resolve(const ast::Value &value,
                                        const Env &env) {
  if (value.kind == ast::Value::Kind::Ident) {
    auto it = env.bindings.find(value.spelling);
    if (it != env.bindings.end())
      return it->second;
    if (env.block)
      error(value.loc, "unknown name '" + value.spelling +
                           "'; it is not a parameter of block '" +
                           env.block->name + "'");
    else
      error(value.loc, "unknown name '" + value.spelling + "'");
    return std::nullopt;
  }
  if (value.kind != ast::Value::Kind::Apply)
    return value;
  ast::Value result = value;
  for (ast::Value &arg : result.args) {
    std::optional<ast::Value> resolved = resolve(arg, env);
    if (!resolved)
      return std::nullopt;
    arg = std::move(*resolved);
  }
  return result;
}

void Sema::expandCall(const ast::Stmt &stmt, const Env &env,
                      std::vector<PendingLayer> &out) {
  auto it = blocks.find(stmt.callee);
  if (it == blocks.end()) {
    if (findLayerSpec(stmt.callee)) {
      error(stmt.loc, "'" + stmt.callee +
                          "' is a layer, not a block; write it without "
                          "parentheses");
      return;
    }
    std::vector<StringRef> names;
    for (const auto &entry : blocks)
      names.push_back(entry.getKey());
    error(stmt.loc,
          "unknown block '" + stmt.callee + "'" + suggest(stmt.callee, names));
    return;
  }
  const ast::Block *block = it->second;
  if (stmt.args.size() != block->params.size()) {
    error(stmt.loc,
          "block '" + block->name + "' takes " + Twine(block->params.size()) +
              (block->params.size() == 1 ? " argument" : " arguments") +
              ", got " + Twine(stmt.args.size()));
    return;
  }
  NestingGuard guard(*this);
  if (failed(checkNesting(stmt.loc)))
    return;
  for (size_t i = 0, e = callStack.size(); i != e; ++i) {
    if (callStack[i] != block)
      continue;
    std::string msg = "recursive block call: '" + block->name + "' calls ";
    if (i + 1 == e) {
      msg += "itself";
    } else {
      for (size_t j = i + 1; j != e; ++j)
        msg += "'" + callStack[j]->name + "' which calls ";
      msg += "'" + block->name + "'";
    }
    error(stmt.loc, msg);
    return;
  }
  if (callStack.size() >= kMaxCallDepth) {
    error(stmt.loc, "block calls are nested too deeply (more than " +
                        Twine(kMaxCallDepth) + " levels)");
    return;
  }
  Env inner;
  inner.block = block;
  for (size_t i = 0, e = stmt.args.size(); i != e; ++i) {
    std::optional<ast::Value> value = resolve(stmt.args[i], env);
    if (!value)
      return;
    inner.bindings[block->params[i].name] = std::move(*value);
  }
  callStack.push_back(block);
  expand(block->body, inner, out);
  callStack.pop_back();
}

void Sema::expandRepeat(const ast::Stmt &stmt, const Env &env,
                        std::vector<PendingLayer> &out) {
  NestingGuard guard(*this);
  if (failed(checkNesting(stmt.loc)))
    return;
  std::optional<ast::Value> count = resolve(stmt.count, env);
  if (!count)
    return;
  if (count->kind != ast::Value::Kind::Int) {
    error(count->loc,
          "repeat count must be an integer, got " + describe(*count));
    return;
  }
  if (count->intValue < 0 || count->intValue > kMaxRepeat) {
    error(count->loc, "repeat count must be in [0, " + Twine(kMaxRepeat) +
                          "], got " + Twine(count->intValue));
    return;
  }
  for (int64_t i = 0; i < count->intValue && !tooLarge; ++i) {
    if (!countStep(stmt.loc))
      return;
    unsigned before = errorCount;
    expand(stmt.body, env, out);
    // The same errors would come back on every copy.
    if (errorCount != before)
      return;
  }
}

void Sema::buildLayer(const ast::Stmt &stmt, const Env &env,
                      std::vector<PendingLayer> &out) {
  const LayerSpec *spec = findLayerSpec(stmt.layerKind);
  if (!spec) {
    if (blocks.count(stmt.layerKind)) {
      error(stmt.kindLoc, "'" + stmt.layerKind +
                              "' is a block; call it with parentheses: '" +
                              stmt.layerKind + "(...)'");
      return;
    }
    std::vector<StringRef> kinds;
    for (const LayerSpec &s : kLayerSpecs)
      kinds.push_back(s.name);
    error(stmt.kindLoc, "unknown layer '" + stmt.layerKind + "'" +
                            suggest(stmt.layerKind, kinds));
    return;
  }
  if (++layerCount > kMaxLayers) {
    tooLarge = true;
    error(stmt.kindLoc, "network has more than " + Twine(kMaxLayers) +
                            " layers after expansion");
    return;
  }
  if (std::optional<PendingLayer> layer =
          LayerBuilder(*this, *spec, stmt, env).build())
    out.push_back(std::move(*layer));
}

//===----------------------------------------------------------------------===//
// Naming
//===----------------------------------------------------------------------===//

void Sema::nameLayers(std::vector<PendingStage> &stages) {
  // Outside macro-layers: `<kind><n>`, n counting that kind from 1.
  llvm::DenseMap<unsigned, unsigned> topOrdinal;
  for (PendingStage &stage : stages) {
    if (stage.isMacro) {
      StringRef m = stage.macroName;
      llvm::DenseMap<unsigned, unsigned> count, ordinal;
      for (const PendingLayer &p : stage.layers)
        ++count[unsigned(p.layer.kind)];
      unsigned convs = count[unsigned(LayerKind::Conv)];
      for (PendingLayer &p : stage.layers) {
        unsigned k = unsigned(p.layer.kind);
        unsigned n = ++ordinal[k];
        if (!p.label.empty()) {
          p.layer.name = p.label;
          continue;
        }
        // Convs (or, in a macro without convs, fcs) take the macro's name:
        // `conv3` or `conv3_1`, `conv3_2`, ... as in VGG.
        bool primary = p.layer.kind == LayerKind::Conv ||
                       (p.layer.kind == LayerKind::FC && convs == 0);
        if (primary) {
          p.layer.name = count[k] == 1 ? m.str() : (m + "_" + Twine(n)).str();
          continue;
        }
        p.layer.name = (m + "." + kindName(p.layer.kind)).str();
        if (count[k] > 1)
          p.layer.name += std::to_string(n);
      }
      continue;
    }
    for (PendingLayer &p : stage.layers) {
      unsigned n = ++topOrdinal[unsigned(p.layer.kind)];
      p.layer.name = !p.label.empty()
                         ? p.label
                         : (kindName(p.layer.kind) + Twine(n)).str();
    }
  }
}

/// The mirror names each decoder layer and macro-layer `dec.<name>`, and
/// `lr-mult dec.<name>` means that twin: a user's name may not start so.
static constexpr llvm::StringLiteral kDecoderPrefix = "dec.";

void Sema::checkNames(const std::vector<PendingStage> &stages) {
  llvm::StringMap<std::pair<SMLoc, size_t>> macros;
  for (size_t i = 0, e = stages.size(); i != e; ++i) {
    const PendingStage &stage = stages[i];
    if (!stage.isMacro)
      continue;
    if (StringRef(stage.macroName).starts_with(kDecoderPrefix)) {
      error(stage.macroLoc, "macro-layer name '" + stage.macroName +
                                "' starts with 'dec.', which names the "
                                "decoder's twins of the macro-layers; "
                                "rename it");
      continue;
    }
    auto [it, fresh] = macros.insert({stage.macroName, {stage.macroLoc, i}});
    if (!fresh) {
      if (error(stage.macroLoc,
                "duplicate macro-layer name '" + stage.macroName + "'"))
        note(it->second.first,
             "'" + stage.macroName + "' is first defined here");
      continue;
    }
    macroNames.insert(stage.macroName);
  }
  llvm::StringMap<SMLoc> layers;
  for (size_t i = 0, e = stages.size(); i != e; ++i) {
    // (The layers of a macro-layer refused above are named after it.)
    if (stages[i].isMacro &&
        StringRef(stages[i].macroName).starts_with(kDecoderPrefix))
      continue;
    for (const PendingLayer &p : stages[i].layers) {
      const std::string &name = p.layer.name;
      std::string hint =
          p.label.empty() ? " (a generated name; give the layer a label such "
                            "as 'name: " +
                                kindName(p.layer.kind).str() + "')"
                          : "";
      if (StringRef(name).starts_with(kDecoderPrefix)) {
        error(p.loc, "layer name '" + name +
                         "' starts with 'dec.', which names the decoder's "
                         "twins of the layers; rename it");
        continue;
      }
      auto [it, fresh] = layers.insert({name, p.loc});
      if (!fresh) {
        if (error(p.loc, "duplicate layer name '" + name + "'" + hint))
          note(it->second, "'" + name + "' is first defined here");
        continue;
      }
      layerNames[name] = p.layer.kind;
      auto mit = macros.find(name);
      // A macro-layer shares its name with its own single conv.
      if (mit != macros.end() && mit->second.second != i) {
        if (error(p.loc, "layer name '" + name +
                             "' is already the name of a macro-layer" + hint))
          note(mit->second.first, "macro-layer '" + name + "' is defined here");
      }
    }
  }
}
