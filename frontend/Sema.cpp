//===- Sema.cpp - From the .net AST to a checked Model --------------------===//
//
// buildModel: expands blocks, `repeat` and imports into a flat netc::Model and
// reports every user error it can find without shapes.
//
// 1. Collect blocks, the network, `augment` and `train` from every file.
// 2. Expand the network body: block calls bind parameters to the caller's
//    (already resolved) values, `repeat` copies its body, every layer's
//    options are checked and turned into numbers.
// 3. Name the layers (labels, macro-layer rules, `<kind><n>`), check that
//    names are unique, apply `pretrained`.
// 4. Check `augment` and `train` against those names.
//
// Errors are deduplicated by place and text, so a bad layer inside a block
// that is expanded a hundred times is reported once.
//
//===----------------------------------------------------------------------===//

#include "frontend/Sema.h"
#include "frontend/AST.h"
#include "frontend/Frontend.h"
#include "frontend/Source.h"

#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/LogicalResult.h"
#include "llvm/Support/MathExtras.h"
#include "llvm/Support/Path.h"

#include <set>

using namespace netc;
using namespace netc::sema;
using llvm::SMLoc;
using llvm::StringRef;
using llvm::Twine;

//===----------------------------------------------------------------------===//
// Augmentation variants
//===----------------------------------------------------------------------===//

static const llvm::StringRef kVariants[] = {
    "none",        "sae-first", "sae-all",        "sae-layerwise",
    "swwae-first", "swwae-all", "swwae-layerwise"};

llvm::ArrayRef<llvm::StringRef> netc::augmentVariants() { return kVariants; }

bool netc::isAugmentVariant(llvm::StringRef name) {
  return llvm::is_contained(kVariants, name);
}

static const llvm::StringRef kPrecisions[] = {"fp32", "tf32", "bf16"};

llvm::ArrayRef<llvm::StringRef> netc::precisions() { return kPrecisions; }

bool netc::isPrecision(llvm::StringRef name) {
  return llvm::is_contained(kPrecisions, name);
}

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

/// "; did you mean 'conv'?" when one candidate is close to `word`.
static std::string suggest(StringRef word,
                           llvm::ArrayRef<StringRef> candidates) {
  StringRef best;
  unsigned bestDist = 3;
  for (StringRef candidate : candidates) {
    unsigned dist = word.edit_distance(candidate, /*AllowReplacements=*/true,
                                       /*MaxEditDistance=*/bestDist);
    if (dist < bestDist) {
      bestDist = dist;
      best = candidate;
    }
  }
  if (best.empty())
    return "";
  return ("; did you mean '" + best + "'?").str();
}

/// "a, b or c".
static std::string joinOr(llvm::ArrayRef<StringRef> words) {
  std::string out;
  for (size_t i = 0, e = words.size(); i != e; ++i) {
    if (i)
      out += i + 1 == e ? " or " : ", ";
    out += words[i].str();
  }
  return out;
}

/// How a value's type is named in "expects X, got Y".
static std::string describe(const ast::Value &value) {
  switch (value.kind) {
  case ast::Value::Kind::Int:
    return "integer " + value.spelling;
  case ast::Value::Kind::Float:
    return "number " + value.spelling;
  case ast::Value::Kind::Dims:
    return "dims " + value.spelling;
  case ast::Value::Kind::Range:
    return "range " + value.spelling;
  case ast::Value::Kind::String:
    return "string";
  case ast::Value::Kind::Bool:
    return "boolean";
  case ast::Value::Kind::Ident:
    return "name '" + value.spelling + "'";
  case ast::Value::Kind::Apply:
    return "'" + value.spelling + "(...)'";
  }
  return "value";
}

static std::string formatNumber(double v) {
  std::string s;
  llvm::raw_string_ostream os(s);
  os << v;
  return s;
}

//===----------------------------------------------------------------------===//
// Sema
//===----------------------------------------------------------------------===//

namespace {
/// Parameter bindings of one block expansion.
struct Env {
  const ast::Block *block = nullptr; ///< Null at network level.
  llvm::StringMap<ast::Value> bindings;
};

/// A layer made by expansion, before naming.
struct PendingLayer {
  Layer layer;
  std::string label;
  SMLoc loc;
  bool weightInitGiven = false;
  bool biasInitGiven = false;
};

/// A network body entry before naming.
struct PendingStage {
  bool isMacro = false;
  std::string macroName;
  SMLoc macroLoc;
  std::vector<PendingLayer> layers;
};

class Sema {
public:
  Sema(const ast::Program &program, llvm::SourceMgr &srcMgr)
      : program(program), srcMgr(srcMgr), lines(srcMgr) {}

  std::optional<Model> run();

private:
  // Diagnostics.
  bool error(SMLoc loc, const Twine &msg);
  void note(SMLoc loc, const Twine &msg);
  Loc toLoc(SMLoc loc);
  std::string resolvePath(SMLoc loc, StringRef path);

  // Program structure.
  void collect(const ast::Network *&network, const ast::Augment *&augment,
               const ast::Train *&train);

  // Network.
  void buildNetwork(const ast::Network &network);
  void expand(const std::vector<ast::Stmt> &stmts, const Env &env,
              std::vector<PendingLayer> &out);
  void expandCall(const ast::Stmt &stmt, const Env &env,
                  std::vector<PendingLayer> &out);
  void expandRepeat(const ast::Stmt &stmt, const Env &env,
                    std::vector<PendingLayer> &out);
  void buildLayer(const ast::Stmt &stmt, const Env &env,
                  std::vector<PendingLayer> &out);
  std::optional<ast::Value> resolve(const ast::Value &value, const Env &env);
  void nameLayers(std::vector<PendingStage> &stages);
  void checkNames(const std::vector<PendingStage> &stages);

  // Typed values; `what` names the thing for "X expects Y, got Z".
  std::optional<int64_t> getInt(const ast::Value &v, const Twine &what);
  std::optional<double> getNumber(const ast::Value &v, const Twine &what);
  std::optional<bool> getBool(const ast::Value &v, const Twine &what);
  std::optional<std::string> getString(const ast::Value &v, const Twine &what);
  std::optional<std::string> getWord(const ast::Value &v, const Twine &what);
  std::optional<std::array<int64_t, 2>> getPair(const ast::Value &v,
                                                const Twine &what);
  std::optional<InitSpec> getInit(const ast::Value &v, const Twine &what);
  /// An integer in [min, max], min being 0 or 1.
  std::optional<int64_t> getIntInRange(const ast::Value &v, const Twine &what,
                                       int64_t min, int64_t max);
  /// An integer in [min, kMaxExtent].
  std::optional<int64_t> getExtent(const ast::Value &v, const Twine &what,
                                   int64_t min) {
    return getIntInRange(v, what, min, kMaxExtent);
  }

  // Sections.
  void buildAugment(const ast::Augment &augment);
  void buildTrain(const ast::Train &train);
  void buildData(const ast::Setting &setting, DataSpec &data);
  /// Checks the crop size and the number of mean and std values against the
  /// network input (and the images, where the data set fixes their size), as
  /// the trainer would.
  void checkDataShape(const DataSpec &data, SMLoc cropLoc, SMLoc meanLoc,
                      SMLoc stdLoc);
  void buildPhase(const ast::Setting &setting, PhaseSpec &phase);
  /// Reads `gamma M=W ...` (augment or phase) into `out`. Whether each M
  /// produces a loss term depends on `from`, so checkGammaStages checks that
  /// once every section is read.
  void buildGammas(const ast::Setting &setting,
                   std::vector<AugmentSpec::Gamma> &out);
  /// Every gamma names a stage whose reconstruction is a loss term: a
  /// macro-layer or fc layer below the top of the decoder.
  void checkGammaStages();
  /// Reads `lr-mult NAME=M ...` into `phase.lrMults`.
  void buildLrMults(const ast::Setting &setting, PhaseSpec &phase);
  /// Turns `target std=S` into the image target's scale (the data's std / S).
  void resolveTarget();
  /// Checks the shape of a setting: argument count, no named values, no body.
  bool checkSetting(const ast::Setting &setting, size_t minArgs, size_t maxArgs,
                    bool allowOptions = false);
  /// Reports a second `keyword` in one section; returns true if it is one.
  bool checkOnce(llvm::StringMap<SMLoc> &seen, const ast::Setting &setting,
                 StringRef section);

  const ast::Program &program;
  llvm::SourceMgr &srcMgr;
  LineTable lines;
  Model model;
  bool hadError = false;
  unsigned errorCount = 0;
  std::set<std::pair<const char *, std::string>> reported;
  llvm::DenseMap<unsigned, std::shared_ptr<std::string>> fileNames;

  llvm::StringMap<const ast::Block *> blocks;
  std::vector<const ast::Block *> callStack;
  /// Reports expansions nested deeper than kMaxNesting.
  llvm::LogicalResult checkNesting(SMLoc loc);
  /// RAII counter of nested calls and repeats being expanded.
  struct NestingGuard {
    NestingGuard(Sema &sema) : sema(sema) { ++sema.nesting; }
    ~NestingGuard() { --sema.nesting; }
    Sema &sema;
  };

  unsigned nesting = 0;
  int64_t steps = 0;
  int64_t layerCount = 0;
  bool tooLarge = false;

  /// Final names: macro-layers and layers (with their kind).
  llvm::StringSet<> macroNames;
  llvm::StringMap<LayerKind> layerNames;

  /// Every gamma read so far, for checkGammaStages.
  std::vector<std::pair<std::string, SMLoc>> gammaUses;
  /// `target std=S` of the augment section, for resolveTarget.
  std::optional<double> targetStd;
  SMLoc targetLoc;
};
} // namespace

bool Sema::error(SMLoc loc, const Twine &msg) {
  hadError = true;
  std::string text = msg.str();
  if (!reported.insert({loc.getPointer(), text}).second)
    return false;
  ++errorCount;
  srcMgr.PrintMessage(loc, llvm::SourceMgr::DK_Error, text);
  return true;
}

void Sema::note(SMLoc loc, const Twine &msg) {
  srcMgr.PrintMessage(loc, llvm::SourceMgr::DK_Note, msg);
}

Loc Sema::toLoc(SMLoc loc) {
  Loc result;
  if (!loc.isValid())
    return result;
  unsigned id = srcMgr.FindBufferContainingLoc(loc);
  if (!id)
    return result;
  std::shared_ptr<std::string> &name = fileNames[id];
  if (!name)
    name = std::make_shared<std::string>(
        srcMgr.getMemoryBuffer(id)->getBufferIdentifier().str());
  result.file = name;
  auto [line, col] = lines.getLineAndColumn(loc, id);
  result.line = line;
  result.col = col;
  return result;
}

/// Paths in a file are relative to that file's directory. The result is
/// absolute, so that the trainer works from any working directory: the
/// file's directory as the system resolves it, or, for a buffer that is not
/// a file (stdin, a test's), that name made absolute.
std::string Sema::resolvePath(SMLoc loc, StringRef path) {
  if (path.empty() || llvm::sys::path::is_absolute(path))
    return path.str();
  unsigned id = loc.isValid() ? srcMgr.FindBufferContainingLoc(loc) : 0;
  llvm::SmallString<256> dir;
  if (id)
    dir = llvm::sys::path::parent_path(
        srcMgr.getMemoryBuffer(id)->getBufferIdentifier());
  llvm::SmallString<256> full;
  if (llvm::sys::fs::real_path(dir.empty() ? StringRef(".") : StringRef(dir),
                               full)) {
    full = dir;
    if (llvm::sys::fs::make_absolute(full))
      return path.str();
  }
  llvm::sys::path::append(full, path);
  llvm::sys::path::remove_dots(full);
  return std::string(full);
}

//===----------------------------------------------------------------------===//
// Typed values
//===----------------------------------------------------------------------===//

std::optional<int64_t> Sema::getInt(const ast::Value &v, const Twine &what) {
  if (v.kind == ast::Value::Kind::Int)
    return v.intValue;
  error(v.loc, what + " expects an integer, got " + describe(v));
  return std::nullopt;
}

std::optional<int64_t> Sema::getIntInRange(const ast::Value &v,
                                           const Twine &what, int64_t min,
                                           int64_t max) {
  std::optional<int64_t> i = getInt(v, what);
  if (!i)
    return std::nullopt;
  if (*i < min) {
    error(v.loc, what + " must be " + (min == 0 ? "non-negative" : "positive") +
                     ", got " + Twine(*i));
    return std::nullopt;
  }
  if (*i > max) {
    error(v.loc, what + " is too large (at most " + Twine(max) + "), got " +
                     Twine(*i));
    return std::nullopt;
  }
  return i;
}

std::optional<double> Sema::getNumber(const ast::Value &v, const Twine &what) {
  if (v.isNumber())
    return v.floatValue;
  error(v.loc, what + " expects a number, got " + describe(v));
  return std::nullopt;
}

std::optional<bool> Sema::getBool(const ast::Value &v, const Twine &what) {
  if (v.kind == ast::Value::Kind::Bool)
    return v.boolValue;
  error(v.loc, what + " expects true or false, got " + describe(v));
  return std::nullopt;
}

std::optional<std::string> Sema::getString(const ast::Value &v,
                                           const Twine &what) {
  if (v.kind == ast::Value::Kind::String)
    return v.str;
  error(v.loc, what + " expects a string, got " + describe(v));
  return std::nullopt;
}

std::optional<std::string> Sema::getWord(const ast::Value &v,
                                         const Twine &what) {
  if (v.kind == ast::Value::Kind::Ident)
    return v.spelling;
  error(v.loc, what + " expects a name, got " + describe(v));
  return std::nullopt;
}

std::optional<std::array<int64_t, 2>> Sema::getPair(const ast::Value &v,
                                                    const Twine &what) {
  if (v.kind == ast::Value::Kind::Int)
    return std::array<int64_t, 2>{v.intValue, v.intValue};
  if (v.kind == ast::Value::Kind::Dims && v.dims.size() == 2)
    return std::array<int64_t, 2>{v.dims[0], v.dims[1]};
  error(v.loc, what + " expects an integer or HxW, got " + describe(v));
  return std::nullopt;
}

std::optional<InitSpec> Sema::getInit(const ast::Value &v, const Twine &what) {
  static const StringRef kInits[] = {"gaussian", "constant", "file"};
  if (v.kind != ast::Value::Kind::Apply) {
    error(v.loc, what +
                     " expects an initializer such as gaussian(0.01), "
                     "constant(0) or file(\"w.safetensors\"), got " +
                     describe(v));
    return std::nullopt;
  }
  StringRef name = v.spelling;
  size_t n = v.args.size();
  InitSpec init;
  auto arity = [&](size_t min, size_t max) {
    if (n >= min && n <= max)
      return true;
    std::string expected =
        min == max ? std::to_string(min)
                   : std::to_string(min) + " or " + std::to_string(max);
    error(v.loc, "initializer '" + name + "' takes " + expected +
                     (max == 1 ? " argument" : " arguments") + ", got " +
                     Twine(n));
    return false;
  };
  if (name == "gaussian") {
    if (!arity(1, 2))
      return std::nullopt;
    init.kind = InitSpec::Kind::Gaussian;
    std::optional<double> std = getNumber(v.args[0], "gaussian std");
    if (!std)
      return std::nullopt;
    if (*std < 0) {
      error(v.args[0].loc,
            "gaussian std must be non-negative, got " + v.args[0].spelling);
      return std::nullopt;
    }
    init.value = *std;
    if (n == 2) {
      std::optional<double> mean = getNumber(v.args[1], "gaussian mean");
      if (!mean)
        return std::nullopt;
      init.mean = *mean;
    }
    return init;
  }
  if (name == "constant") {
    if (!arity(1, 1))
      return std::nullopt;
    init.kind = InitSpec::Kind::Constant;
    std::optional<double> value = getNumber(v.args[0], "constant");
    if (!value)
      return std::nullopt;
    init.value = *value;
    return init;
  }
  if (name == "file") {
    if (!arity(1, 2))
      return std::nullopt;
    init.kind = InitSpec::Kind::File;
    std::optional<std::string> path = getString(v.args[0], "file path");
    if (!path)
      return std::nullopt;
    if (path->empty()) {
      error(v.args[0].loc, "empty file name in 'file'");
      return std::nullopt;
    }
    init.path = resolvePath(v.args[0].loc, *path);
    if (n == 2) {
      std::optional<std::string> key = getString(v.args[1], "file tensor name");
      if (!key)
        return std::nullopt;
      init.key = *key;
    }
    return init;
  }
  error(v.loc, "unknown initializer '" + name +
                   "'; expected gaussian, "
                   "constant or file" +
                   suggest(name, kInits));
  return std::nullopt;
}

//===----------------------------------------------------------------------===//
// Program structure
//===----------------------------------------------------------------------===//

void Sema::collect(const ast::Network *&network, const ast::Augment *&augment,
                   const ast::Train *&train) {
  for (const auto &file : program.files) {
    for (const ast::Item &item : file->items) {
      if (auto *block = std::get_if<ast::Block>(&item)) {
        auto [it, inserted] = blocks.insert({block->name, block});
        if (!inserted) {
          if (error(block->nameLoc, "duplicate block '" + block->name + "'"))
            note(it->second->nameLoc,
                 "block '" + block->name + "' is first defined here");
          continue;
        }
        llvm::StringMap<SMLoc> params;
        for (const ast::Param &param : block->params) {
          auto [pit, fresh] = params.insert({param.name, param.loc});
          if (!fresh)
            error(param.loc, "duplicate parameter '" + param.name +
                                 "' in block '" + block->name + "'");
        }
        continue;
      }
      if (auto *net = std::get_if<ast::Network>(&item)) {
        if (network) {
          if (error(net->nameLoc, "more than one network: '" + net->name +
                                      "'; a program has exactly one"))
            note(network->nameLoc,
                 "network '" + network->name + "' is defined here");
          continue;
        }
        network = net;
        continue;
      }
      if (auto *aug = std::get_if<ast::Augment>(&item)) {
        if (augment) {
          if (error(aug->loc, "more than one 'augment' section"))
            note(augment->loc, "the first 'augment' section is here");
          continue;
        }
        augment = aug;
        continue;
      }
      if (auto *tr = std::get_if<ast::Train>(&item)) {
        if (train) {
          if (error(tr->loc, "more than one 'train' section"))
            note(train->loc, "the first 'train' section is here");
          continue;
        }
        train = tr;
      }
    }
  }
}

std::optional<Model> Sema::run() {
  const ast::Network *network = nullptr;
  const ast::Augment *augment = nullptr;
  const ast::Train *train = nullptr;
  collect(network, augment, train);
  if (!network) {
    SMLoc loc;
    if (!program.files.empty()) {
      unsigned id = program.files.front()->bufferId;
      if (id)
        loc =
            SMLoc::getFromPointer(srcMgr.getMemoryBuffer(id)->getBufferStart());
    }
    error(loc, "no network defined; a program needs one 'network' section");
    return std::nullopt;
  }
  buildNetwork(*network);
  if (augment)
    buildAugment(*augment);
  if (train)
    buildTrain(*train);
  checkGammaStages();
  resolveTarget();
  if (hadError)
    return std::nullopt;
  return std::move(model);
}

//===----------------------------------------------------------------------===//
// Network
//===----------------------------------------------------------------------===//

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
    case ast::NetItem::Kind::Input: {
      if (!once(input, item, "input"))
        break;
      net.inputLoc = toLoc(item.loc);
      const ast::Value &v = item.value;
      if (v.kind != ast::Value::Kind::Dims || v.dims.size() != 3) {
        error(v.loc, "'input' expects CxHxW dims such as 3x224x224, got " +
                         describe(v));
        break;
      }
      if (llvm::any_of(v.dims,
                       [](int64_t d) { return d <= 0 || d > kMaxExtent; })) {
        error(v.loc, "input dims must be in [1, " + Twine(kMaxExtent) +
                         "], got " + v.spelling);
        break;
      }
      int64_t elements = v.dims[0];
      if (llvm::MulOverflow(elements, v.dims[1], elements) ||
          llvm::MulOverflow(elements, v.dims[2], elements) ||
          elements > kMaxInputElements) {
        error(v.loc, "input " + v.spelling + " is too large (at most " +
                         Twine(kMaxInputElements) + " values per image)");
        break;
      }
      for (unsigned i = 0; i < 3; ++i)
        net.input[i] = v.dims[i];
      break;
    }
    case ast::NetItem::Kind::Classes: {
      if (!once(classes, item, "classes"))
        break;
      net.classesLoc = toLoc(item.loc);
      if (std::optional<int64_t> n = getExtent(item.value, "'classes'", 1))
        net.classes = *n;
      break;
    }
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

  // `pretrained`: every parameter without an explicit init is read from it.
  for (PendingStage &stage : stages) {
    for (PendingLayer &pending : stage.layers) {
      Layer &layer = pending.layer;
      if (pretrainedPath.empty() ||
          (layer.kind != LayerKind::Conv && layer.kind != LayerKind::FC &&
           layer.kind != LayerKind::BatchNorm))
        continue;
      if (!pending.weightInitGiven) {
        layer.weight.init = InitSpec();
        layer.weight.init.kind = InitSpec::Kind::File;
        layer.weight.init.path = pretrainedPath;
        layer.weight.init.key = layer.name + ".weight";
      }
      if (layer.hasBias && !pending.biasInitGiven) {
        layer.bias.init = InitSpec();
        layer.bias.init.kind = InitSpec::Kind::File;
        layer.bias.init.path = pretrainedPath;
        layer.bias.init.key = layer.name + ".bias";
      }
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

void Sema::expand(const std::vector<ast::Stmt> &stmts, const Env &env,
                  std::vector<PendingLayer> &out) {
  for (const ast::Stmt &stmt : stmts) {
    if (tooLarge)
      return;
    if (++steps > kMaxExpansionSteps) {
      tooLarge = true;
      error(stmt.loc, "network is too large to expand (more than " +
                          Twine(kMaxExpansionSteps) + " statements)");
      return;
    }
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
    if (++steps > kMaxExpansionSteps) {
      tooLarge = true;
      error(stmt.loc, "network is too large to expand (more than " +
                          Twine(kMaxExpansionSteps) + " statements)");
      return;
    }
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
  StringRef kind = spec->name;

  // Gather positional and named values under their option names.
  struct Given {
    SMLoc nameLoc;
    ast::Value value;
  };
  llvm::StringMap<Given> given;
  bool ok = true;
  // A value that failed to resolve is missing from `given` but was written.
  bool unresolved = false;
  if (stmt.args.size() > spec->positional.size()) {
    size_t n = spec->positional.size();
    const ast::Value &extra = stmt.args[n];
    // `conv 64 relu`: a forgotten `;`.
    std::string hint;
    if (extra.kind == ast::Value::Kind::Ident &&
        (findLayerSpec(extra.spelling) || blocks.count(extra.spelling)))
      hint = "; missing ';' before '" + extra.spelling + "'?";
    error(extra.loc,
          "layer '" + kind + "' takes " +
              (n == 0 ? std::string("no positional values")
                      : ("at most " + Twine(n) + " positional value").str()) +
              ", got " + Twine(stmt.args.size()) + hint);
    ok = false;
  }
  for (size_t i = 0, e = std::min(stmt.args.size(), spec->positional.size());
       i != e; ++i) {
    std::optional<ast::Value> v = resolve(stmt.args[i], env);
    if (!v) {
      ok = false;
      unresolved = true;
      continue;
    }
    given[spec->positional[i]] = Given{stmt.args[i].loc, std::move(*v)};
  }
  for (const ast::Option &option : stmt.options) {
    if (!llvm::is_contained(spec->options, option.name)) {
      if (spec->options.empty())
        error(option.loc, "layer '" + kind + "' takes no options, got '" +
                              option.name + "'");
      else
        error(option.loc, "unknown option '" + option.name + "' for layer '" +
                              kind + "'" + suggest(option.name, spec->options));
      ok = false;
      continue;
    }
    auto it = given.find(option.name);
    if (it != given.end()) {
      if (error(option.loc, "option '" + option.name + "' of '" + kind +
                                "' is given twice"))
        note(it->second.nameLoc, "first given here");
      ok = false;
      continue;
    }
    std::optional<ast::Value> v = resolve(option.value, env);
    if (!v) {
      ok = false;
      unresolved = true;
      continue;
    }
    given[option.name] = Given{option.loc, std::move(*v)};
  }

  PendingLayer pending;
  Layer &layer = pending.layer;
  layer.kind = spec->kind;
  pending.label = stmt.label;
  pending.loc = stmt.loc;
  layer.loc = toLoc(stmt.loc);

  auto what = [&](StringRef name) {
    return ("option '" + name + "' of '" + kind + "'").str();
  };
  auto find = [&](StringRef name) -> const ast::Value * {
    auto it = given.find(name);
    return it == given.end() ? nullptr : &it->second.value;
  };
  auto extent = [&](StringRef name, int64_t &slot, int64_t min) {
    if (const ast::Value *v = find(name)) {
      if (std::optional<int64_t> i = getExtent(*v, what(name), min))
        slot = *i;
      else
        ok = false;
    }
  };
  auto pair = [&](StringRef name, std::array<int64_t, 2> &slot, int64_t min) {
    const ast::Value *v = find(name);
    if (!v)
      return false;
    std::optional<std::array<int64_t, 2>> p = getPair(*v, what(name));
    if (!p) {
      ok = false;
      return false;
    }
    for (int64_t x : *p) {
      if (x < min || x > kMaxExtent) {
        error(v->loc,
              what(name) + " must be " +
                  (min == 0 ? "non-negative" : "positive") +
                  (x > kMaxExtent ? " and at most " + std::to_string(kMaxExtent)
                                  : std::string()) +
                  ", got " + v->spelling);
        ok = false;
        return false;
      }
    }
    slot = *p;
    return true;
  };
  auto number = [&](StringRef name, double &slot, double min) {
    if (const ast::Value *v = find(name)) {
      std::optional<double> d = getNumber(*v, what(name));
      if (!d) {
        ok = false;
        return;
      }
      if (*d < min) {
        error(v->loc, what(name) + " must be at least " + formatNumber(min) +
                          ", got " + v->spelling);
        ok = false;
        return;
      }
      slot = *d;
    }
  };
  auto boolean = [&](StringRef name, bool &slot) {
    if (const ast::Value *v = find(name)) {
      if (std::optional<bool> b = getBool(*v, what(name)))
        slot = *b;
      else
        ok = false;
    }
  };
  auto init = [&](StringRef name, InitSpec &slot) {
    const ast::Value *v = find(name);
    if (!v)
      return false;
    if (std::optional<InitSpec> spec = getInit(*v, what(name))) {
      slot = *spec;
      return true;
    }
    ok = false;
    return false;
  };
  auto params = [&]() {
    pending.weightInitGiven = init("init", layer.weight.init);
    pending.biasInitGiven = init("bias_init", layer.bias.init);
    number("lr_mult", layer.weight.lrMult, 0);
    number("decay_mult", layer.weight.decayMult, 0);
    number("bias_lr_mult", layer.bias.lrMult, 0);
    number("bias_decay_mult", layer.bias.decayMult, 0);
  };
  auto gaussian = [](double std) {
    InitSpec init;
    init.kind = InitSpec::Kind::Gaussian;
    init.value = std;
    return init;
  };
  auto constant = [](double value) {
    InitSpec init;
    init.kind = InitSpec::Kind::Constant;
    init.value = value;
    return init;
  };

  switch (spec->kind) {
  case LayerKind::Conv:
  case LayerKind::FC: {
    bool isConv = spec->kind == LayerKind::Conv;
    layer.weight = ParamSpec{gaussian(0.01), 1.0, 1.0};
    layer.bias = ParamSpec{constant(0.0), 2.0, 0.0};
    if (!find("out") && !unresolved) {
      error(stmt.kindLoc,
            isConv ? "layer 'conv' needs its number of output channels, "
                     "e.g. 'conv 64'"
                   : "layer 'fc' needs its number of outputs, e.g. 'fc 4096'");
      ok = false;
    }
    extent("out", layer.outChannels, 1);
    boolean("bias", layer.hasBias);
    params();
    if (!isConv)
      break;
    layer.kernel = {3, 3};
    pair("kernel", layer.kernel, 1);
    pair("stride", layer.stride, 1);
    pair("pad", layer.pad, 0);
    extent("groups", layer.groups, 1);
    if (ok && layer.outChannels % layer.groups != 0) {
      error(find("groups")->loc,
            "conv output channels (" + Twine(layer.outChannels) +
                ") must be divisible by groups (" + Twine(layer.groups) + ")");
      ok = false;
    }
    break;
  }
  case LayerKind::MaxPool:
  case LayerKind::AvgPool: {
    layer.kernel = {2, 2};
    pair("kernel", layer.kernel, 1);
    layer.stride = layer.kernel;
    pair("stride", layer.stride, 1);
    pair("pad", layer.pad, 0);
    boolean("ceil", layer.ceilMode);
    if (ok &&
        (layer.pad[0] >= layer.kernel[0] || layer.pad[1] >= layer.kernel[1])) {
      error(find("pad")->loc, "pool pad must be smaller than its kernel");
      ok = false;
    }
    break;
  }
  case LayerKind::Dropout: {
    if (const ast::Value *v = find("ratio")) {
      std::optional<double> r = getNumber(*v, what("ratio"));
      if (!r) {
        ok = false;
      } else if (!(*r >= 0.0 && *r < 1.0)) {
        error(v->loc, "dropout ratio must be in [0, 1), got " + v->spelling);
        ok = false;
      } else {
        layer.ratio = *r;
      }
    }
    break;
  }
  case LayerKind::LRN: {
    extent("size", layer.lrnSize, 1);
    if (ok && layer.lrnSize % 2 == 0) {
      error(find("size")->loc,
            "lrn size must be odd, got " + Twine(layer.lrnSize));
      ok = false;
    }
    number("alpha", layer.lrnAlpha, 0);
    number("beta", layer.lrnBeta, 0);
    number("k", layer.lrnK, 0);
    break;
  }
  case LayerKind::BatchNorm: {
    layer.weight = ParamSpec{constant(1.0), 1.0, 0.0};
    layer.bias = ParamSpec{constant(0.0), 1.0, 0.0};
    params();
    if (const ast::Value *v = find("eps")) {
      std::optional<double> eps = getNumber(*v, what("eps"));
      if (eps && *eps > 0)
        layer.bnEps = *eps;
      else if (eps)
        error(v->loc, "batchnorm eps must be positive, got " + v->spelling);
      ok = ok && eps && *eps > 0;
    }
    if (const ast::Value *v = find("momentum")) {
      std::optional<double> m = getNumber(*v, what("momentum"));
      bool inRange = m && *m >= 0 && *m <= 1;
      if (inRange)
        layer.bnMomentum = *m;
      else if (m)
        error(v->loc,
              "batchnorm momentum must be in [0, 1], got " + v->spelling);
      ok = ok && inRange;
    }
    break;
  }
  case LayerKind::Relu:
  case LayerKind::Flatten:
    break;
  }
  if (!ok)
    return;
  out.push_back(std::move(pending));
}

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

void Sema::checkNames(const std::vector<PendingStage> &stages) {
  llvm::StringMap<std::pair<SMLoc, size_t>> macros;
  for (size_t i = 0, e = stages.size(); i != e; ++i) {
    const PendingStage &stage = stages[i];
    if (!stage.isMacro)
      continue;
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
    for (const PendingLayer &p : stages[i].layers) {
      const std::string &name = p.layer.name;
      std::string hint =
          p.label.empty() ? " (a generated name; give the layer a label such "
                            "as 'name: " +
                                kindName(p.layer.kind).str() + "')"
                          : "";
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

//===----------------------------------------------------------------------===//
// Settings
//===----------------------------------------------------------------------===//

bool Sema::checkSetting(const ast::Setting &setting, size_t minArgs,
                        size_t maxArgs, bool allowOptions) {
  bool ok = true;
  size_t n = setting.args.size();
  if (n < minArgs || n > maxArgs) {
    std::string expected =
        minArgs == maxArgs ? std::to_string(minArgs)
        : maxArgs == SIZE_MAX
            ? "at least " + std::to_string(minArgs)
            : std::to_string(minArgs) + " to " + std::to_string(maxArgs);
    error(n > maxArgs ? setting.args[maxArgs].loc : setting.loc,
          "'" + setting.keyword + "' takes " + expected +
              (expected == "1" ? " value" : " values") + ", got " + Twine(n));
    ok = false;
  }
  if (!allowOptions && !setting.options.empty()) {
    error(setting.options.front().loc,
          "'" + setting.keyword + "' takes no named values");
    ok = false;
  }
  if (setting.hasBody) {
    error(setting.loc, "'" + setting.keyword + "' takes no '{ }' body");
    ok = false;
  }
  return ok;
}

bool Sema::checkOnce(llvm::StringMap<SMLoc> &seen, const ast::Setting &setting,
                     StringRef section) {
  auto [it, fresh] = seen.insert({setting.keyword, setting.loc});
  if (fresh)
    return false;
  if (error(setting.loc, "duplicate '" + setting.keyword + "' in " + section))
    note(it->second, "the first '" + setting.keyword + "' is here");
  return true;
}

void Sema::buildAugment(const ast::Augment &augment) {
  AugmentSpec &spec = model.augment;
  spec.present = true;
  spec.loc = toLoc(augment.loc);
  spec.variantLoc = toLoc(augment.variantLoc);
  if (isAugmentVariant(augment.variant)) {
    spec.variant = augment.variant;
  } else {
    std::string list;
    for (StringRef v : augmentVariants())
      list += (list.empty() ? "" : ", ") + v.str();
    error(augment.variantLoc, "unknown augmentation variant '" +
                                  augment.variant + "'; expected one of " +
                                  list);
  }

  static const StringRef kSettings[] = {"lambda",   "gamma", "from",
                                        "position", "init",  "target"};
  llvm::StringMap<SMLoc> seen;
  for (const ast::Setting &s : augment.settings) {
    StringRef key = s.keyword;
    if (!llvm::is_contained(kSettings, key)) {
      error(s.loc, "unknown augment setting '" + key + "'; expected " +
                       joinOr(kSettings) + suggest(key, kSettings));
      continue;
    }
    if (key != "gamma" && checkOnce(seen, s, "'augment'"))
      continue;
    if (key == "lambda") {
      if (!checkSetting(s, 1, 1))
        continue;
      std::optional<double> v = getNumber(s.args[0], "'lambda'");
      if (v && *v < 0)
        error(s.args[0].loc,
              "lambda must be non-negative, got " + s.args[0].spelling);
      else if (v)
        spec.lambda = *v;
      continue;
    }
    if (key == "gamma") {
      buildGammas(s, spec.gammas);
      continue;
    }
    if (key == "target") {
      // target std=S
      if (!checkSetting(s, 0, 0, /*allowOptions=*/true))
        continue;
      if (s.options.size() != 1 || s.options[0].name != "std") {
        error(s.options.empty() ? s.loc : s.options.back().loc,
              "'target' expects 'std=S': the image target is the "
              "mean-subtracted pixels divided by S");
        continue;
      }
      std::optional<double> v = getNumber(s.options[0].value, "target 'std'");
      if (v && *v <= 0)
        error(s.options[0].value.loc, "target std must be positive, got " +
                                          s.options[0].value.spelling);
      else if (v) {
        targetStd = *v;
        targetLoc = s.options[0].loc;
      }
      continue;
    }
    if (key == "from") {
      if (!checkSetting(s, 1, 1))
        continue;
      std::optional<std::string> name = getWord(s.args[0], "'from'");
      if (!name)
        continue;
      auto layer = layerNames.find(*name);
      bool isFC = layer != layerNames.end() && layer->second == LayerKind::FC;
      if (!macroNames.contains(*name) && !isFC) {
        error(s.args[0].loc, "'from' names '" + *name +
                                 "', which is not a macro-layer or an fc "
                                 "layer");
        continue;
      }
      spec.from = *name;
      spec.fromLoc = toLoc(s.args[0].loc);
      continue;
    }
    if (key == "position") {
      if (!checkSetting(s, 1, 1))
        continue;
      const ast::Value &v = s.args[0];
      if (v.kind != ast::Value::Kind::Dims || v.dims.size() != 2) {
        error(v.loc, "'position' expects a HxW offset such as 1x1, got " +
                         describe(v));
        continue;
      }
      spec.position = std::array<int64_t, 2>{v.dims[0], v.dims[1]};
      continue;
    }
    // init
    if (!checkSetting(s, 1, 1))
      continue;
    if (std::optional<InitSpec> init = getInit(s.args[0], "'init'"))
      spec.decoderInit = *init;
  }
}

void Sema::buildGammas(const ast::Setting &s,
                       std::vector<AugmentSpec::Gamma> &out) {
  if (!checkSetting(s, 0, 0, /*allowOptions=*/true))
    return;
  if (s.options.empty()) {
    error(s.loc, "'gamma' needs at least one macro=weight pair, e.g. "
                 "'gamma conv1=1e-12'");
    return;
  }
  llvm::StringMap<SMLoc> given;
  for (const AugmentSpec::Gamma &g : out)
    given.insert({g.macro, SMLoc()});
  for (const ast::Option &o : s.options) {
    auto layer = layerNames.find(o.name);
    bool isFC = layer != layerNames.end() && layer->second == LayerKind::FC;
    if (!macroNames.contains(o.name) && !isFC) {
      error(o.loc, "gamma names macro-layer '" + o.name +
                       "', which does not exist" +
                       suggest(o.name, llvm::to_vector(macroNames.keys())));
      continue;
    }
    auto [it, fresh] = given.insert({o.name, o.loc});
    if (!fresh) {
      if (error(o.loc, "gamma for macro-layer '" + o.name + "' is given twice"))
        note(it->second, "first given here");
      continue;
    }
    std::optional<double> w = getNumber(o.value, "gamma '" + o.name + "'");
    if (!w)
      continue;
    if (*w < 0) {
      error(o.value.loc, "gamma must be non-negative, got " + o.value.spelling);
      continue;
    }
    out.push_back({o.name, *w, toLoc(o.loc)});
    gammaUses.push_back({o.name, o.loc});
  }
}

void Sema::checkGammaStages() {
  if (gammaUses.empty())
    return;
  // The decoder's stages bottom-up, as net-mirror collects them: the
  // macro-layers up to `from`, then, when `from` is an fc layer, the fc
  // layers after the last macro-layer up to it. The top one's output is the
  // decoder's input, so it has no loss term.
  const std::string &from = model.augment.from;
  bool fromFC = !from.empty() && !macroNames.contains(from);
  std::vector<std::string> stages;
  size_t lastMacro = 0;
  for (auto [i, stage] : llvm::enumerate(model.network.body)) {
    if (!stage.macro)
      continue;
    stages.push_back(stage.macro->name);
    lastMacro = i;
    if (stage.macro->name == from)
      break;
  }
  if (fromFC)
    for (const Stage &stage : llvm::drop_begin(model.network.body, lastMacro))
      if (stage.layer && stage.layer->kind == LayerKind::FC) {
        stages.push_back(stage.layer->name);
        if (stage.layer->name == from)
          break;
      }
  if (stages.empty())
    return;
  std::string top = stages.back();
  for (const auto &[name, loc] : gammaUses) {
    auto it = llvm::find(stages, name);
    bool isMacro = macroNames.contains(name);
    std::string what = (isMacro ? "macro-layer '" : "fc layer '") + name + "'";
    if (name == top)
      error(loc, "gamma names " + what +
                     ", which produces no loss term: the decoder starts from "
                     "its output");
    else if (it == stages.end())
      error(loc, "gamma names " + what +
                     ", which produces no loss term: the decoder starts "
                     "below it, at '" +
                     top + "'" + (from.empty() ? "" : " ('from')"));
  }
}

void Sema::buildLrMults(const ast::Setting &s, PhaseSpec &phase) {
  if (!checkSetting(s, 0, 0, /*allowOptions=*/true))
    return;
  if (s.options.empty()) {
    error(s.loc, "'lr-mult' needs at least one name=multiplier pair, e.g. "
                 "'lr-mult dec.conv2=10'");
    return;
  }
  llvm::StringMap<SMLoc> given;
  for (const PhaseSpec::LrMult &m : phase.lrMults)
    given.insert({m.name, SMLoc()});
  for (const ast::Option &o : s.options) {
    StringRef name = o.name;
    StringRef twin = name;
    bool decoder = twin.consume_front("dec.");
    auto known = [&](StringRef n) {
      return macroNames.contains(n) || layerNames.count(n);
    };
    if (!known(name) && !(decoder && known(twin))) {
      error(o.loc, "lr-mult names '" + name +
                       "', which is not a layer, a macro-layer or the "
                       "decoder twin 'dec.<name>' of one");
      continue;
    }
    auto [it, fresh] = given.insert({name, o.loc});
    if (!fresh) {
      if (error(o.loc, "lr-mult for '" + name + "' is given twice"))
        note(it->second, "first given here");
      continue;
    }
    std::optional<double> m = getNumber(o.value, "lr-mult '" + name + "'");
    if (!m)
      continue;
    if (*m < 0) {
      error(o.value.loc,
            "lr-mult must be non-negative, got " + o.value.spelling);
      continue;
    }
    phase.lrMults.push_back({name.str(), *m, toLoc(o.loc)});
  }
}

void Sema::resolveTarget() {
  if (!targetStd)
    return;
  // The runtime's default std is 255 (docs/language.md, `data`).
  std::vector<double> stds = model.train.data.std;
  if (stds.empty())
    stds.push_back(255.0);
  if (llvm::any_of(stds, [&](double sd) { return sd != stds.front(); })) {
    error(targetLoc, "target std=S needs one data std for every channel: the "
                     "target is the encoder's input times a single factor, "
                     "data std / S");
    return;
  }
  model.augment.targetScale = stds.front() / *targetStd;
}

void Sema::buildTrain(const ast::Train &train) {
  TrainSpec &spec = model.train;
  spec.present = true;
  spec.loc = toLoc(train.loc);
  static const StringRef kSettings[] = {"data", "phase", "eval", "precision"};
  static const StringRef kSchemes[] = {"full", "single-crop", "dense"};
  llvm::StringMap<SMLoc> seen;
  llvm::StringMap<SMLoc> phases;
  for (const ast::Setting &s : train.settings) {
    StringRef key = s.keyword;
    if (!llvm::is_contained(kSettings, key)) {
      error(s.loc, "unknown train setting '" + key + "'; expected " +
                       joinOr(kSettings) + suggest(key, kSettings));
      continue;
    }
    if (key == "data") {
      if (checkOnce(seen, s, "'train'"))
        continue;
      buildData(s, spec.data);
      continue;
    }
    if (key == "phase") {
      if (s.args.size() != 1 || s.args[0].kind != ast::Value::Kind::Ident ||
          !s.options.empty()) {
        error(s.loc, "'phase' takes a name and a body, e.g. "
                     "'phase joint { epochs 1 }'");
        continue;
      }
      const std::string &name = s.args[0].spelling;
      auto [it, fresh] = phases.insert({name, s.args[0].loc});
      if (!fresh) {
        if (error(s.args[0].loc, "duplicate phase '" + name + "'"))
          note(it->second, "phase '" + name + "' is first defined here");
        continue;
      }
      if (name == model.network.name) {
        error(s.args[0].loc, "phase '" + name +
                                 "' has the network's name; rename one of "
                                 "them");
        continue;
      }
      PhaseSpec phase;
      phase.name = name;
      phase.loc = toLoc(s.loc);
      buildPhase(s, phase);
      spec.phases.push_back(std::move(phase));
      continue;
    }
    if (key == "precision") {
      if (checkOnce(seen, s, "'train'") || !checkSetting(s, 1, 1))
        continue;
      std::optional<std::string> name = getWord(s.args[0], "'precision'");
      if (!name)
        continue;
      if (!isPrecision(*name)) {
        error(s.args[0].loc, "unknown precision '" + *name + "'; expected " +
                                 joinOr(kPrecisions) +
                                 suggest(*name, kPrecisions));
        continue;
      }
      spec.precision = *name;
      continue;
    }
    // eval
    if (checkOnce(seen, s, "'train'") || !checkSetting(s, 1, SIZE_MAX))
      continue;
    for (const ast::Value &v : s.args) {
      std::optional<std::string> scheme = getWord(v, "'eval'");
      if (!scheme)
        continue;
      if (!llvm::is_contained(kSchemes, StringRef(*scheme))) {
        error(v.loc, "unknown evaluation scheme '" + *scheme + "'; expected " +
                         joinOr(kSchemes) + suggest(*scheme, kSchemes));
        continue;
      }
      if (llvm::is_contained(spec.evalSchemes, *scheme)) {
        error(v.loc, "evaluation scheme '" + *scheme + "' is given twice");
        continue;
      }
      spec.evalSchemes.push_back(*scheme);
    }
  }
}

void Sema::buildData(const ast::Setting &s, DataSpec &data) {
  static const StringRef kKinds[] = {"fashion-mnist", "mnist", "cifar10",
                                     "cifar100", "images"};
  static const StringRef kSettings[] = {"path",   "subset", "test-subset",
                                        "mirror", "crop",   "scale",
                                        "mean",   "std"};
  data.present = true;
  data.loc = toLoc(s.loc);
  if (s.args.size() != 1 || !s.options.empty()) {
    error(s.loc, "'data' takes the data set kind, e.g. 'data mnist'; one of " +
                     joinOr(kKinds));
    return;
  }
  if (std::optional<std::string> kind = getWord(s.args[0], "'data'")) {
    if (llvm::is_contained(kKinds, StringRef(*kind)))
      data.kind = *kind;
    else
      error(s.args[0].loc, "unknown data set '" + *kind + "'; expected " +
                               joinOr(kKinds) + suggest(*kind, kKinds));
  }
  llvm::StringMap<SMLoc> seen;
  SMLoc cropLoc, meanLoc, stdLoc;
  for (const ast::Setting &d : s.body) {
    StringRef key = d.keyword;
    if (!llvm::is_contained(kSettings, key)) {
      error(d.loc, "unknown data setting '" + key + "'; expected " +
                       joinOr(kSettings) + suggest(key, kSettings));
      continue;
    }
    if (checkOnce(seen, d, "'data'"))
      continue;
    if (key == "path") {
      if (!checkSetting(d, 1, 1))
        continue;
      if (std::optional<std::string> path = getString(d.args[0], "'path'"))
        data.path = resolvePath(d.args[0].loc, *path);
      continue;
    }
    if (key == "subset" || key == "test-subset") {
      if (!checkSetting(d, 1, 1))
        continue;
      if (std::optional<int64_t> n =
              getIntInRange(d.args[0], "'" + key + "'", 1, kMaxImages))
        (key == "subset" ? data.subset : data.testSubset) = *n;
      continue;
    }
    if (key == "mirror") {
      if (checkSetting(d, 0, 0))
        data.mirror = true;
      continue;
    }
    if (key == "crop") {
      // crop N [pad P]
      if (d.args.size() != 1 && d.args.size() != 3) {
        error(d.loc, "'crop' takes a size and an optional 'pad N', e.g. "
                     "'crop 28 pad 4'");
        continue;
      }
      if (!checkSetting(d, 1, 3))
        continue;
      if (std::optional<int64_t> n = getExtent(d.args[0], "'crop'", 1)) {
        data.crop = *n;
        cropLoc = d.args[0].loc;
      }
      if (d.args.size() == 3) {
        if (d.args[1].kind != ast::Value::Kind::Ident ||
            d.args[1].spelling != "pad") {
          error(d.args[1].loc, "expected 'pad' after the crop size, got " +
                                   describe(d.args[1]));
          continue;
        }
        if (std::optional<int64_t> p = getExtent(d.args[2], "crop 'pad'", 0))
          data.cropPad = *p;
      }
      continue;
    }
    if (key == "scale") {
      if (!checkSetting(d, 1, 1))
        continue;
      const ast::Value &v = d.args[0];
      if (v.kind == ast::Value::Kind::Int) {
        if (std::optional<int64_t> n = getExtent(v, "'scale'", 1))
          data.scale = {*n, *n};
        continue;
      }
      if (v.kind != ast::Value::Kind::Range) {
        error(v.loc, "'scale' expects a range such as 256..512 or an "
                     "integer, got " +
                         describe(v));
        continue;
      }
      if (v.intValue < 1 || v.intValue > v.intValue2 ||
          v.intValue2 > kMaxExtent) {
        error(v.loc, "'scale' range must be ascending and positive, got " +
                         v.spelling);
        continue;
      }
      data.scale = {v.intValue, v.intValue2};
      continue;
    }
    // mean / std
    if (!checkSetting(d, 1, SIZE_MAX))
      continue;
    std::vector<double> values;
    bool ok = true;
    for (const ast::Value &v : d.args) {
      std::optional<double> x = getNumber(v, "'" + key + "'");
      if (!x) {
        ok = false;
        continue;
      }
      if (key == "std" && *x <= 0) {
        error(v.loc, "'std' must be positive, got " + v.spelling);
        ok = false;
        continue;
      }
      values.push_back(*x);
    }
    if (ok) {
      (key == "mean" ? data.mean : data.std) = std::move(values);
      (key == "mean" ? meanLoc : stdLoc) = d.loc;
    }
  }
  checkDataShape(data, cropLoc, meanLoc, stdLoc);
}

/// The image size of the data sets whose images have one size.
static std::optional<std::array<int64_t, 3>> knownImageDims(StringRef kind) {
  if (kind == "fashion-mnist" || kind == "mnist")
    return std::array<int64_t, 3>{1, 28, 28};
  if (kind == "cifar10" || kind == "cifar100")
    return std::array<int64_t, 3>{3, 32, 32};
  return std::nullopt;
}

void Sema::checkDataShape(const DataSpec &data, SMLoc cropLoc, SMLoc meanLoc,
                          SMLoc stdLoc) {
  // Nothing to compare with when 'input' was missing or wrong.
  const std::array<int64_t, 3> &input = model.network.input;
  if (input[0] == 0)
    return;
  std::optional<std::array<int64_t, 3>> image = knownImageDims(data.kind);
  if (data.crop > 0) {
    std::string imageSize =
        image ? (Twine((*image)[1]) + "x" + Twine((*image)[2])).str() : "";
    // kMaxExtent bounds crop and pad: no overflow.
    if (image && (data.crop > (*image)[1] + 2 * data.cropPad ||
                  data.crop > (*image)[2] + 2 * data.cropPad))
      error(cropLoc,
            "crop " + Twine(data.crop) + " is larger than the " + imageSize +
                " images of '" + data.kind + "'" +
                (data.cropPad ? " padded by " + Twine(data.cropPad) : "") +
                "; the largest crop is " +
                Twine(std::min((*image)[1], (*image)[2]) + 2 * data.cropPad));
    else if (data.crop != input[1] || data.crop != input[2])
      error(cropLoc, "crop " + Twine(data.crop) + " makes " + Twine(data.crop) +
                         "x" + Twine(data.crop) +
                         " images but the network input is " + Twine(input[1]) +
                         "x" + Twine(input[2]) +
                         "; crop to the network's input size");
  }
  auto checkChannels = [&](const std::vector<double> &values, SMLoc loc,
                           StringRef key) {
    if (values.size() <= 1 || int64_t(values.size()) == input[0])
      return;
    error(loc, "'" + key + "' has " + Twine(values.size()) +
                   " values but the network input has " + Twine(input[0]) +
                   (input[0] == 1 ? " channel" : " channels") +
                   "; give one value, or one per channel");
  };
  checkChannels(data.mean, meanLoc, "mean");
  checkChannels(data.std, stdLoc, "std");
}

void Sema::buildPhase(const ast::Setting &s, PhaseSpec &phase) {
  static const StringRef kSettings[] = {"decoder", "freeze", "sgd",    "batch",
                                        "epochs",  "steps",  "lambda", "gamma",
                                        "lr-mult", "lr"};
  static const StringRef kDecoders[] = {"default", "layerwise", "stacked",
                                        "none"};
  static const StringRef kGroups[] = {"encoder", "decoder", "classifier"};
  static const StringRef kSgd[] = {"lr", "momentum", "decay"};
  llvm::StringMap<SMLoc> seen;
  std::string section = "phase '" + phase.name + "'";
  for (const ast::Setting &p : s.body) {
    StringRef key = p.keyword;
    if (!llvm::is_contained(kSettings, key)) {
      error(p.loc, "unknown phase setting '" + key + "'; expected " +
                       joinOr(kSettings) + suggest(key, kSettings));
      continue;
    }
    if (key != "freeze" && key != "gamma" && key != "lr-mult" &&
        checkOnce(seen, p, section))
      continue;
    if (key == "gamma") {
      buildGammas(p, phase.gammas);
      continue;
    }
    if (key == "lr-mult") {
      buildLrMults(p, phase);
      continue;
    }
    if (key == "decoder") {
      if (!checkSetting(p, 1, 1))
        continue;
      std::optional<std::string> d = getWord(p.args[0], "'decoder'");
      if (d && llvm::is_contained(kDecoders, StringRef(*d)))
        phase.decoder = *d;
      else if (d)
        error(p.args[0].loc,
              "unknown decoder '" + *d + "'; expected " + joinOr(kDecoders));
      continue;
    }
    if (key == "freeze") {
      if (!checkSetting(p, 1, SIZE_MAX))
        continue;
      for (const ast::Value &v : p.args) {
        std::optional<std::string> name = getWord(v, "'freeze'");
        if (!name)
          continue;
        if (!llvm::is_contained(kGroups, StringRef(*name)) &&
            !macroNames.contains(*name) && !layerNames.count(*name)) {
          error(v.loc, "cannot freeze '" + *name +
                           "': not encoder, decoder, classifier, a layer or "
                           "a macro-layer");
          continue;
        }
        phase.freeze.push_back(*name);
        phase.freezeLocs.push_back(toLoc(v.loc));
      }
      continue;
    }
    if (key == "sgd") {
      if (!checkSetting(p, 0, 0, /*allowOptions=*/true))
        continue;
      llvm::StringSet<> given;
      for (const ast::Option &o : p.options) {
        if (!llvm::is_contained(kSgd, StringRef(o.name))) {
          error(o.loc, "unknown sgd option '" + o.name + "'; expected " +
                           joinOr(kSgd) + suggest(o.name, kSgd));
          continue;
        }
        if (!given.insert(o.name).second) {
          error(o.loc, "sgd option '" + o.name + "' is given twice");
          continue;
        }
        std::optional<double> v = getNumber(o.value, "sgd '" + o.name + "'");
        if (!v)
          continue;
        if (*v < 0 || (o.name == "momentum" && *v >= 1)) {
          error(o.value.loc,
                "sgd " + o.name + " must be " +
                    (o.name == "momentum" ? "in [0, 1)" : "non-negative") +
                    ", got " + o.value.spelling);
          continue;
        }
        (o.name == "lr"         ? phase.lr
         : o.name == "momentum" ? phase.momentum
                                : phase.decay) = *v;
      }
      continue;
    }
    if (key == "batch" || key == "epochs" || key == "steps") {
      if (!checkSetting(p, 1, 1))
        continue;
      int64_t max = key == "batch"    ? kMaxBatch
                    : key == "epochs" ? kMaxEpochs
                                      : kMaxSteps;
      std::optional<int64_t> n =
          getIntInRange(p.args[0], "'" + key + "'", 1, max);
      if (!n)
        continue;
      (key == "batch"    ? phase.batch
       : key == "epochs" ? phase.epochs
                         : phase.maxSteps) = *n;
      continue;
    }
    if (key == "lambda") {
      if (!checkSetting(p, 1, 1))
        continue;
      std::optional<double> v = getNumber(p.args[0], "'lambda'");
      if (v && *v < 0)
        error(p.args[0].loc,
              "lambda must be non-negative, got " + p.args[0].spelling);
      else if (v)
        phase.lambda = *v;
      continue;
    }
    // lr fixed | lr step GAMMA every N | lr cosine [min LR]
    if (!checkSetting(p, 1, 4))
      continue;
    const ast::Value &policy = p.args[0];
    auto isWord = [](const ast::Value &v, StringRef w) {
      return v.kind == ast::Value::Kind::Ident && v.spelling == w;
    };
    size_t n = p.args.size();
    if (isWord(policy, "fixed") && n == 1) {
      phase.lrPolicy = "fixed";
      continue;
    }
    if (isWord(policy, "step") && n == 4 && isWord(p.args[2], "every")) {
      std::optional<double> g = getNumber(p.args[1], "'lr step' factor");
      if (g && (*g <= 0 || *g > 1)) {
        error(p.args[1].loc,
              "'lr step' factor must be in (0, 1], got " + p.args[1].spelling);
        continue;
      }
      std::optional<int64_t> every =
          getIntInRange(p.args[3], "'lr step every'", 1, kMaxEpochs);
      if (!g || !every)
        continue;
      phase.lrPolicy = "step";
      phase.lrGamma = *g;
      phase.lrEvery = *every;
      continue;
    }
    if (isWord(policy, "cosine") &&
        (n == 1 || (n == 3 && isWord(p.args[1], "min")))) {
      if (n == 3) {
        std::optional<double> m = getNumber(p.args[2], "'lr cosine min'");
        if (!m)
          continue;
        if (*m < 0) {
          error(p.args[2].loc, "'lr cosine min' must be non-negative, got " +
                                   p.args[2].spelling);
          continue;
        }
        phase.lrMin = *m;
      }
      phase.lrPolicy = "cosine";
      continue;
    }
    error(policy.loc, "'lr' expects 'fixed', 'step F every N' or "
                      "'cosine [min LR]'");
  }
}

//===----------------------------------------------------------------------===//
// Entry point
//===----------------------------------------------------------------------===//

std::optional<Model> netc::buildModel(const ast::Program &program,
                                      llvm::SourceMgr &srcMgr) {
  return Sema(program, srcMgr).run();
}
