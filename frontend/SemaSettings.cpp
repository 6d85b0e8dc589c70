//===- SemaSettings.cpp - The augment and train sections ------------------===//
//
// The settings half of Sema: `augment` and `train` (with `data` and every
// `phase`) into Model::augment and Model::train, checked against the names
// the network half found.
//
// A setting that takes one plain value (a flag, an integer or a number in a
// range, a word from a list, a path, an initializer) is an entry of its
// section's option table: the key, a ValueRule (the value's type and range)
// and the field it sets. readSetting checks the setting's shape, reads and
// range-checks the value by the rule, and store() puts it into the field, so
// such settings are read, and reported, alike. `sgd`'s named values use the
// same rules. Settings with a syntax of their own (`gamma`, `lr-mult`,
// `freeze`, `lr`, `crop`, `scale`, `mean`/`std`, `target`, `from`,
// `position`, `eval`, `phase`) keep dedicated code.
//
// Gammas, `from` and `target std=S` depend on one another and on `data`:
// checkGammaStages and resolveTarget check them once every section is read.
//
//===----------------------------------------------------------------------===//

#include "frontend/SemaInternal.h"

#include "dialect/DecoderTwins.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/Support/ErrorHandling.h"
#include "llvm/Support/FormatVariadic.h"

#include <cmath>
#include <type_traits>

using namespace netc;
using namespace netc::sema;
using llvm::SMLoc;
using llvm::StringRef;
using llvm::Twine;

//===----------------------------------------------------------------------===//
// Augmentation variants and precisions
//===----------------------------------------------------------------------===//

static const StringRef kVariants[] = {
    "none",        "sae-first", "sae-all",        "sae-layerwise",
    "swwae-first", "swwae-all", "swwae-layerwise"};

llvm::ArrayRef<StringRef> netc::augmentVariants() { return kVariants; }

bool netc::isAugmentVariant(StringRef name) {
  return llvm::is_contained(kVariants, name);
}

static const StringRef kPrecisions[] = {"fp32", "tf32", "bf16"};

llvm::ArrayRef<StringRef> netc::precisions() { return kPrecisions; }

bool netc::isPrecision(StringRef name) {
  return llvm::is_contained(kPrecisions, name);
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

//===----------------------------------------------------------------------===//
// Typed option tables
//===----------------------------------------------------------------------===//

namespace netc {
namespace sema {

/// What a table-driven setting takes.
enum class ValueType {
  Flag,   ///< No value: `mirror`.
  Int,    ///< An integer in [intMin, intMax]: `batch 64`.
  Number, ///< A number in `numbers`: `lambda 0.5`.
  Word,   ///< One of `words`: `decoder layerwise`.
  Path,   ///< A string, a path relative to its file: `path "data"`.
  Init,   ///< An initializer: `init gaussian(0.01)`.
};

/// A value's type and range; made by the functions below.
struct ValueRule {
  ValueType type = ValueType::Flag;
  int64_t intMin = 0, intMax = 0;  ///< Int; intMin is 0 or 1.
  NumberRange numbers;             ///< Number.
  llvm::ArrayRef<StringRef> words; ///< Word.
  bool suggestWord = false;        ///< Word: add "; did you mean 'x'?".
};

} // namespace sema
} // namespace netc

static constexpr ValueRule makeRule(ValueType type) {
  ValueRule r;
  r.type = type;
  return r;
}
static constexpr ValueRule flag() { return makeRule(ValueType::Flag); }
static constexpr ValueRule integer(int64_t min, int64_t max) {
  ValueRule r = makeRule(ValueType::Int);
  r.intMin = min;
  r.intMax = max;
  return r;
}
static constexpr ValueRule number(NumberRange range) {
  ValueRule r = makeRule(ValueType::Number);
  r.numbers = range;
  return r;
}
/// `suggest`: whether an unknown word gets "; did you mean ...".
static constexpr ValueRule word(llvm::ArrayRef<StringRef> words, bool suggest) {
  ValueRule r = makeRule(ValueType::Word);
  r.words = words;
  r.suggestWord = suggest;
  return r;
}
static constexpr ValueRule path() { return makeRule(ValueType::Path); }
static constexpr ValueRule init() { return makeRule(ValueType::Init); }

namespace {
/// The field of SpecT a table-driven setting sets.
template <typename SpecT>
using Field = std::variant<bool SpecT::*, int64_t SpecT::*, double SpecT::*,
                           std::optional<double> SpecT::*, std::string SpecT::*,
                           std::optional<InitSpec> SpecT::*>;

/// One table-driven setting of a section that fills a SpecT.
template <typename SpecT> struct Option {
  StringRef key;
  ValueRule rule;
  Field<SpecT> field;
};
} // namespace

/// Whether `field` holds what a value of `type` reads as.
template <typename SpecT>
static constexpr bool fits(ValueType type, const Field<SpecT> &field) {
  switch (type) {
  case ValueType::Flag:
    return std::holds_alternative<bool SpecT::*>(field);
  case ValueType::Int:
    return std::holds_alternative<int64_t SpecT::*>(field);
  case ValueType::Number:
    return std::holds_alternative<double SpecT::*>(field) ||
           std::holds_alternative<std::optional<double> SpecT::*>(field);
  case ValueType::Word:
  case ValueType::Path:
    return std::holds_alternative<std::string SpecT::*>(field);
  case ValueType::Init:
    return std::holds_alternative<std::optional<InitSpec> SpecT::*>(field);
  }
  return false;
}

/// Whether every entry of `table` fits (checked at compile time below).
template <typename SpecT, size_t N>
static constexpr bool fitsAll(const Option<SpecT> (&table)[N]) {
  for (const Option<SpecT> &option : table)
    if (!fits(option.rule.type, option.field))
      return false;
  return true;
}

template <typename SpecT, size_t N>
static const Option<SpecT> *findOption(const Option<SpecT> (&table)[N],
                                       StringRef key) {
  for (const Option<SpecT> &option : table)
    if (option.key == key)
      return &option;
  return nullptr;
}

/// Puts `value`, read by `option.rule`, into `option.field` of `spec`.
template <typename SpecT>
static void store(const Option<SpecT> &option, SpecT &spec,
                  SettingValue value) {
  std::visit(
      [&](auto member) {
        auto &slot = spec.*member;
        using Slot = std::remove_reference_t<decltype(slot)>;
        if constexpr (std::is_same_v<Slot, std::optional<double>>)
          slot = std::get<double>(value);
        else if constexpr (std::is_same_v<Slot, std::optional<InitSpec>>)
          slot = std::get<InitSpec>(std::move(value));
        else
          slot = std::get<Slot>(std::move(value));
      },
      option.field);
}

static const StringRef kDecoders[] = {"default", "layerwise", "stacked",
                                      "none"};

// Each section's table-driven settings. The sections' keyword lists (the
// order of "expected a, b or c") are kept beside each builder.

static constexpr Option<AugmentSpec> kAugmentOptions[] = {
    {"lambda", number(kNonNegative), &AugmentSpec::lambda},
    {"init", init(), &AugmentSpec::decoderInit},
};

static constexpr Option<TrainSpec> kTrainOptions[] = {
    {"precision", word(kPrecisions, /*suggest=*/true), &TrainSpec::precision},
    {"data-parallel", flag(), &TrainSpec::dataParallel},
    {"bucket-mb", number({0.0, kMaxBucketMb, /*minOpen=*/true, /*maxOpen=*/false}),
     &TrainSpec::bucketMb},
};

static const StringRef kChannelOrders[] = {"rgb", "bgr"};
/// Decoding threads of an image folder.
static constexpr int64_t kMaxWorkers = 1024;

static constexpr Option<DataSpec> kDataOptions[] = {
    {"path", path(), &DataSpec::path},
    {"subset", integer(1, kMaxImages), &DataSpec::subset},
    {"test-subset", integer(1, kMaxImages), &DataSpec::testSubset},
    {"mirror", flag(), &DataSpec::mirror},
    {"eval-scale", integer(1, kMaxImageSide), &DataSpec::evalScale},
    {"channels", word(kChannelOrders, /*suggest=*/true),
     &DataSpec::channelOrder},
    {"workers", integer(1, kMaxWorkers), &DataSpec::workers},
    {"skip-bad", flag(), &DataSpec::skipBad},
};

static constexpr Option<PhaseSpec> kPhaseOptions[] = {
    {"decoder", word(kDecoders, /*suggest=*/false), &PhaseSpec::decoder},
    {"batch", integer(1, kMaxBatch), &PhaseSpec::batch},
    {"epochs", integer(1, kMaxEpochs), &PhaseSpec::epochs},
    {"steps", integer(1, kMaxSteps), &PhaseSpec::maxSteps},
    {"lambda", number(kNonNegative), &PhaseSpec::lambda},
};

/// `sgd lr=X momentum=Y decay=Z`: named values of one setting.
static constexpr Option<PhaseSpec> kSgdOptions[] = {
    {"lr", number(kNonNegative), &PhaseSpec::lr},
    {"momentum", number({0.0, 1.0, /*minOpen=*/false, /*maxOpen=*/true}),
     &PhaseSpec::momentum},
    {"decay", number(kNonNegative), &PhaseSpec::decay},
};

static_assert(fitsAll(kAugmentOptions) && fitsAll(kTrainOptions) &&
                  fitsAll(kDataOptions) && fitsAll(kPhaseOptions) &&
                  fitsAll(kSgdOptions),
              "an option's field must hold its value type");

std::optional<SettingValue> Sema::readSetting(const ValueRule &rule,
                                              const ast::Setting &s) {
  if (rule.type == ValueType::Flag) {
    if (!checkSetting(s, 0, 0))
      return std::nullopt;
    return SettingValue(true);
  }
  if (!checkSetting(s, 1, 1))
    return std::nullopt;
  return readValue(rule, s.args[0], "'" + s.keyword + "'", s.keyword);
}

std::optional<SettingValue> Sema::readValue(const ValueRule &rule,
                                            const ast::Value &v,
                                            const Twine &what,
                                            const Twine &subject) {
  switch (rule.type) {
  case ValueType::Flag:
    break;
  case ValueType::Int:
    if (std::optional<int64_t> i =
            getIntInRange(v, what, rule.intMin, rule.intMax))
      return SettingValue(*i);
    return std::nullopt;
  case ValueType::Number:
    if (std::optional<double> x =
            getNumberInRange(v, what, subject, rule.numbers))
      return SettingValue(*x);
    return std::nullopt;
  case ValueType::Word: {
    std::optional<std::string> name = getWord(v, what);
    if (!name)
      return std::nullopt;
    if (llvm::is_contained(rule.words, StringRef(*name)))
      return SettingValue(std::move(*name));
    error(v.loc, "unknown " + subject + " '" + *name + "'; expected " +
                     joinOr(rule.words) +
                     (rule.suggestWord ? suggest(*name, rule.words) : ""));
    return std::nullopt;
  }
  case ValueType::Path:
    if (std::optional<std::string> file = getString(v, what))
      return SettingValue(resolvePath(v.loc, *file));
    return std::nullopt;
  case ValueType::Init:
    if (std::optional<InitSpec> spec = getInit(v, what))
      return SettingValue(std::move(*spec));
    return std::nullopt;
  }
  llvm_unreachable("a flag has no value to read");
}

//===----------------------------------------------------------------------===//
// Setting shape
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

//===----------------------------------------------------------------------===//
// augment
//===----------------------------------------------------------------------===//

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
    if (const Option<AugmentSpec> *option = findOption(kAugmentOptions, key)) {
      if (std::optional<SettingValue> v = readSetting(option->rule, s))
        store(*option, spec, std::move(*v));
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
      if (std::optional<double> v = getNumberInRange(
              s.options[0].value, "target 'std'", "target std", kPositive)) {
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
    // position
    if (!checkSetting(s, 1, 1))
      continue;
    const ast::Value &v = s.args[0];
    if (v.kind != ast::Value::Kind::Dims || v.dims.size() != 2) {
      error(v.loc,
            "'position' expects a HxW offset such as 1x1, got " + describe(v));
      continue;
    }
    spec.position = std::array<int64_t, 2>{v.dims[0], v.dims[1]};
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
    given.insert({g.macro, toSMLoc(g.loc)});
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
    std::optional<double> w = getNumberInRange(
        o.value, "gamma '" + o.name + "'", "gamma", kNonNegative);
    if (!w)
      continue;
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
  // Variant none has no decoder (net-mirror warns that the settings do
  // nothing; with netc --augment, it checks them against the decoder).
  if (model.augment.variant == "none")
    return;
  const std::string &from = model.augment.from;
  bool fromFC = !from.empty() && !macroNames.contains(from);
  // The macro-layers above the convolutions have no decoder twin
  // (dialect/DecoderTwins.h): the decoder's stages end below them.
  const std::vector<Stage> &body = model.network.body;
  auto has = [](const Macro &m, LayerKind k) {
    return llvm::any_of(m.layers, [&](const Layer &l) { return l.kind == k; });
  };
  std::vector<MacroContents> contents;
  std::vector<size_t> macroAt; // each macro-layer's place in the body
  for (auto [i, stage] : llvm::enumerate(body))
    if (stage.macro) {
      const Macro &m = *stage.macro;
      contents.push_back({has(m, LayerKind::Conv) || has(m, LayerKind::MaxPool),
                          has(m, LayerKind::FC)});
      macroAt.push_back(i);
    }
  const size_t twinned = twinnedMacroCount(contents);
  const size_t end = twinned < macroAt.size() ? macroAt[twinned] : body.size();
  // `from` naming one of them, or an fc in one, is net-mirror's error.
  for (const Stage &stage : llvm::drop_begin(body, end))
    if (stage.macro && (stage.macro->name == from ||
                        llvm::any_of(stage.macro->layers, [&](const Layer &l) {
                          return l.name == from;
                        })))
      return;
  std::vector<std::string> stages;
  size_t lastMacro = 0;
  for (auto [i, stage] :
       llvm::enumerate(llvm::ArrayRef(body).take_front(end))) {
    if (!stage.macro)
      continue;
    stages.push_back(stage.macro->name);
    lastMacro = i;
    if (stage.macro->name == from)
      break;
  }
  if (fromFC)
    for (const Stage &stage : llvm::drop_begin(body, lastMacro))
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
  // The training target is scaled by it, the reconstruct program by its
  // inverse: both must be 32-bit floats.
  double scale = stds.front() / *targetStd;
  if (!std::isfinite(static_cast<float>(scale)) ||
      !std::isfinite(static_cast<float>(1 / scale))) {
    error(targetLoc, "target std=S scales the image by data std / S = " +
                         llvm::formatv("{0:e2}", scale).str() +
                         ", and reconstructions by its inverse: both must be "
                         "32-bit floats");
    return;
  }
  model.augment.targetScale = scale;
}

//===----------------------------------------------------------------------===//
// train
//===----------------------------------------------------------------------===//

void Sema::buildTrain(const ast::Train &train) {
  TrainSpec &spec = model.train;
  spec.present = true;
  spec.loc = toLoc(train.loc);
  static const StringRef kSettings[] = {"data",      "phase",
                                        "eval",      "precision",
                                        "data-parallel", "bucket-mb"};
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
    if (key != "phase" && checkOnce(seen, s, "'train'"))
      continue;
    if (key == "data") {
      buildData(s, spec.data);
      continue;
    }
    if (const Option<TrainSpec> *option = findOption(kTrainOptions, key)) {
      if (std::optional<SettingValue> v = readSetting(option->rule, s))
        store(*option, spec, std::move(*v));
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
    // eval scheme... [{ scales N... }]
    bool hadBody = s.hasBody;
    ast::Setting head = s;
    head.hasBody = false;
    if (!checkSetting(head, 1, SIZE_MAX))
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
      // The fc layers become the convolutions that score the whole map.
      if (*scheme == "dense" &&
          llvm::none_of(layerNames, [](const auto &entry) {
            return entry.second == LayerKind::FC;
          })) {
        error(v.loc, "dense evaluation applies the network's fc layers as "
                     "convolutions, and this network has none");
        continue;
      }
      spec.evalSchemes.push_back(*scheme);
    }
    if (hadBody)
      buildEvalBody(s, spec);
  }
  if (spec.bucketMb && !spec.dataParallel)
    error(seen.lookup("bucket-mb"), "'bucket-mb' sizes the gradient buckets "
                                    "of 'data-parallel', which this train "
                                    "section does not set");
}

/// `eval dense { scales 224 256 384 }`: the shorter sides of dense
/// evaluation, each at least the network's input (its fc layers, applied as
/// convolutions, need a window of their own size).
void Sema::buildEvalBody(const ast::Setting &s, TrainSpec &spec) {
  bool dense = llvm::is_contained(spec.evalSchemes, "dense");
  llvm::StringMap<SMLoc> seen;
  for (const ast::Setting &b : s.body) {
    if (b.keyword != "scales") {
      error(b.loc, "unknown eval setting '" + b.keyword +
                       "'; expected 'scales'");
      continue;
    }
    if (checkOnce(seen, b, "'eval'") || !checkSetting(b, 1, 16))
      continue;
    if (!dense) {
      error(b.loc, "'scales' are the sizes of 'dense' evaluation, which this "
                   "eval does not list");
      continue;
    }
    int64_t side = std::min(model.network.input[1], model.network.input[2]);
    if (model.network.input[1] != model.network.input[2]) {
      error(b.loc, "dense evaluation needs a square input; the network's is " +
                       Twine(model.network.input[1]) + "x" +
                       Twine(model.network.input[2]));
      continue;
    }
    for (const ast::Value &v : b.args) {
      std::optional<int64_t> scale = getExtent(v, "'scales'", 1);
      if (!scale)
        continue;
      if (*scale < side) {
        error(v.loc, "dense scale " + Twine(*scale) +
                         " is smaller than the network's input side " +
                         Twine(side) +
                         "; its fc layers need a window of that size");
        continue;
      }
      if (llvm::is_contained(spec.denseScales, *scale)) {
        error(v.loc, "dense scale " + Twine(*scale) + " is given twice");
        continue;
      }
      spec.denseScales.push_back(*scale);
    }
  }
}

//===----------------------------------------------------------------------===//
// data
//===----------------------------------------------------------------------===//

void Sema::buildData(const ast::Setting &s, DataSpec &data) {
  static const StringRef kKinds[] = {"fashion-mnist", "mnist", "cifar10",
                                     "cifar100", "images"};
  static const StringRef kSettings[] = {
      "path", "subset", "test-subset", "mirror",   "crop",    "scale",
      "mean", "std",    "eval-scale",  "channels", "workers", "skip-bad"};
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
    if (const Option<DataSpec> *option = findOption(kDataOptions, key)) {
      if (std::optional<SettingValue> v = readSetting(option->rule, d))
        store(*option, data, std::move(*v));
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
      if (std::optional<int64_t> n =
              getIntInRange(d.args[0], "'crop'", 1, kMaxImageSide)) {
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
        if (std::optional<int64_t> p =
                getIntInRange(d.args[2], "crop 'pad'", 0, kMaxImageSide))
          data.cropPad = *p;
      }
      continue;
    }
    if (key == "scale") {
      if (!checkSetting(d, 1, 1))
        continue;
      const ast::Value &v = d.args[0];
      if (v.kind == ast::Value::Kind::Int) {
        if (std::optional<int64_t> n =
                getIntInRange(v, "'scale'", 1, kMaxImageSide))
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
          v.intValue2 > kMaxImageSide) {
        error(v.loc, "'scale' range must be ascending, from 1 to " +
                         Twine(kMaxImageSide) + ", got " + v.spelling);
        continue;
      }
      data.scale = {v.intValue, v.intValue2};
      continue;
    }
    // mean / std: one number, or one per channel.
    if (!checkSetting(d, 1, SIZE_MAX))
      continue;
    bool isStd = key == "std";
    std::string what = ("'" + key + "'").str();
    std::vector<double> values;
    bool ok = true;
    for (const ast::Value &v : d.args) {
      std::optional<double> x =
          getNumberInRange(v, what, what, isStd ? kPositive : kAnyNumber);
      if (!x) {
        ok = false;
        continue;
      }
      // The pixels are scaled by 1 / std as 32-bit floats (the loader's
      // rule, runtime/plan/Plan.cpp).
      if (isStd && !std::isfinite(static_cast<float>(1 / *x))) {
        error(v.loc, "'std' must be at least 2.94e-39 (the pixels are scaled "
                     "by 1 / std as 32-bit floats), got " +
                         v.spelling);
        ok = false;
        continue;
      }
      values.push_back(*x);
    }
    if (ok) {
      (isStd ? data.std : data.mean) = std::move(values);
      (isStd ? stdLoc : meanLoc) = d.loc;
    }
  }
  checkImageData(data, s, seen);
  checkDataShape(data, s.args.empty() ? s.loc : s.args[0].loc, cropLoc, meanLoc,
                 stdLoc);
}

void Sema::checkImageData(const DataSpec &data, const ast::Setting &s,
                          const llvm::StringMap<SMLoc> &seen) {
  static const StringRef kImageOnly[] = {"scale", "eval-scale", "channels",
                                         "workers", "skip-bad"};
  if (data.kind != "images") {
    for (StringRef key : kImageOnly)
      if (SMLoc loc = seen.lookup(key); loc.isValid())
        error(loc, "'" + key + "' is a setting of image folders " +
                       "('data images'); '" + data.kind +
                       "' images have a fixed size and format");
    return;
  }
  if (data.path.empty())
    error(s.loc, "'data images' needs the folder that holds train/ and "
                 "val/: 'path \"DIR\"'");
  if (data.cropPad != 0)
    error(seen.lookup("crop"), "image folders take 'crop N' without 'pad'; "
                               "'scale' resizes instead");
  const std::array<int64_t, 3> &input = model.network.input;
  if (input[0] == 0)
    return;
  if (input[0] != 1 && input[0] != 3)
    error(s.loc, "image folders give 1 (grey) or 3 (colour) channels but "
                 "the network input has " +
                     Twine(input[0]));
  if (input[0] == 1 && seen.count("channels"))
    error(seen.lookup("channels"), "'channels' orders colour channels but "
                                   "the network input has 1 channel (grey)");
  // The crop: `crop N` (checked against the input by checkDataShape) or the
  // input itself; each resize must leave room for it.
  const int64_t cropH = data.crop ? data.crop : input[1];
  const int64_t cropW = data.crop ? data.crop : input[2];
  const std::string cropText = (Twine(cropW) + "x" + Twine(cropH)).str();
  if (data.scale[0] != 0 && data.scale[0] < std::max(cropH, cropW))
    error(seen.lookup("scale"),
          "'scale' resizes the shorter side to " + Twine(data.scale[0]) +
              ", less than the " + cropText +
              " crop; the smallest scale must be at least the crop");
  if (data.evalScale != 0 && data.evalScale < std::max(cropH, cropW))
    error(seen.lookup("eval-scale"), "'eval-scale' " + Twine(data.evalScale) +
                                         " is less than the " + cropText +
                                         " crop it is cut to");
}

/// The image size of the data sets whose images have one size.
static std::optional<std::array<int64_t, 3>> knownImageDims(StringRef kind) {
  if (kind == "fashion-mnist" || kind == "mnist")
    return std::array<int64_t, 3>{1, 28, 28};
  if (kind == "cifar10" || kind == "cifar100")
    return std::array<int64_t, 3>{3, 32, 32};
  return std::nullopt;
}

void Sema::checkDataShape(const DataSpec &data, SMLoc kindLoc, SMLoc cropLoc,
                          SMLoc meanLoc, SMLoc stdLoc) {
  // Nothing to compare with when 'input' was missing or wrong.
  const std::array<int64_t, 3> &input = model.network.input;
  if (input[0] == 0)
    return;
  std::optional<std::array<int64_t, 3>> image = knownImageDims(data.kind);
  // The format fixes the channels (IDX grey, CIFAR colour), and CIFAR's
  // records the size too; netrun would refuse a mismatch only once it had
  // read the files. An IDX file's size and any file's labels are the files'
  // own (`netrun --data` may name other files), so netrun checks those.
  if (image && (*image)[0] != input[0])
    error(kindLoc,
          "'" + data.kind + "' images have " + Twine((*image)[0]) +
              ((*image)[0] == 1 ? " channel (grey)" : " channels (colour)") +
              " but the network input has " + Twine(input[0]));
  else if (image && StringRef(data.kind).starts_with("cifar") &&
           data.crop == 0 &&
           ((*image)[1] != input[1] || (*image)[2] != input[2]))
    error(kindLoc,
          "'" + data.kind + "' images are " + Twine((*image)[1]) + "x" +
              Twine((*image)[2]) + " but the network input is " +
              Twine(input[1]) + "x" + Twine(input[2]) +
              "; make the input the images' size, or crop to the input");
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

//===----------------------------------------------------------------------===//
// phase
//===----------------------------------------------------------------------===//

void Sema::buildPhase(const ast::Setting &s, PhaseSpec &phase) {
  static const StringRef kSettings[] = {"decoder", "freeze", "sgd",    "batch",
                                        "epochs",  "steps",  "lambda", "gamma",
                                        "lr-mult", "lr"};
  static const StringRef kGroups[] = {"encoder", "decoder", "classifier"};
  llvm::StringMap<SMLoc> seen;
  std::string section = "phase '" + phase.name + "'";
  for (const ast::Setting &p : s.body) {
    StringRef key = p.keyword;
    if (!llvm::is_contained(kSettings, key)) {
      error(p.loc, "unknown phase setting '" + key + "'; expected " +
                       joinOr(kSettings) + suggest(key, kSettings));
      continue;
    }
    // `freeze`, `gamma` and `lr-mult` add to what they set.
    if (key != "freeze" && key != "gamma" && key != "lr-mult" &&
        checkOnce(seen, p, section))
      continue;
    if (const Option<PhaseSpec> *option = findOption(kPhaseOptions, key)) {
      if (std::optional<SettingValue> v = readSetting(option->rule, p))
        store(*option, phase, std::move(*v));
      continue;
    }
    if (key == "gamma") {
      buildGammas(p, phase.gammas);
      continue;
    }
    if (key == "lr-mult") {
      buildLrMults(p, phase);
      continue;
    }
    if (key == "sgd") {
      buildSgd(p, phase);
      continue;
    }
    if (key == "lr") {
      buildLrPolicy(p, phase);
      continue;
    }
    // freeze
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
  }
  // (After the whole phase: `sgd lr=` may follow `lr cosine`.)
  if (phase.lrPolicy == "cosine" && phase.lrMin > phase.lr)
    error(seen.lookup("lr"),
          "'lr cosine min " + formatNumber(phase.lrMin) +
              "' is above the phase's learning rate " + formatNumber(phase.lr) +
              "; the cosine takes the rate from lr down to min");
}

void Sema::buildSgd(const ast::Setting &s, PhaseSpec &phase) {
  if (!checkSetting(s, 0, 0, /*allowOptions=*/true))
    return;
  llvm::SmallVector<StringRef, 3> keys;
  for (const Option<PhaseSpec> &option : kSgdOptions)
    keys.push_back(option.key);
  llvm::StringSet<> given;
  for (const ast::Option &o : s.options) {
    const Option<PhaseSpec> *option = findOption(kSgdOptions, o.name);
    if (!option) {
      error(o.loc, "unknown sgd option '" + o.name + "'; expected " +
                       joinOr(keys) + suggest(o.name, keys));
      continue;
    }
    if (!given.insert(o.name).second) {
      error(o.loc, "sgd option '" + o.name + "' is given twice");
      continue;
    }
    if (std::optional<SettingValue> v = readValue(
            option->rule, o.value, "sgd '" + o.name + "'", "sgd " + o.name))
      store(*option, phase, std::move(*v));
  }
}

void Sema::buildLrPolicy(const ast::Setting &p, PhaseSpec &phase) {
  // lr fixed | lr step GAMMA every N | lr cosine [min LR]
  if (!checkSetting(p, 1, 4))
    return;
  const ast::Value &policy = p.args[0];
  auto isWord = [](const ast::Value &v, StringRef w) {
    return v.kind == ast::Value::Kind::Ident && v.spelling == w;
  };
  size_t n = p.args.size();
  if (isWord(policy, "fixed") && n == 1) {
    phase.lrPolicy = "fixed";
    return;
  }
  if (isWord(policy, "step") && n == 4 && isWord(p.args[2], "every")) {
    // A factor out of range hides `every`'s errors; a factor that is not a
    // number does not.
    std::optional<double> g = getNumber(p.args[1], "'lr step' factor");
    if (g && !checkRange(*g, p.args[1], "'lr step' factor",
                         {0.0, 1.0, /*minOpen=*/true, /*maxOpen=*/false}))
      return;
    std::optional<int64_t> every =
        getIntInRange(p.args[3], "'lr step every'", 1, kMaxEpochs);
    if (!g || !every)
      return;
    phase.lrPolicy = "step";
    phase.lrGamma = *g;
    phase.lrEvery = *every;
    return;
  }
  if (isWord(policy, "cosine") &&
      (n == 1 || (n == 3 && isWord(p.args[1], "min")))) {
    if (n == 3) {
      std::optional<double> m = getNumberInRange(
          p.args[2], "'lr cosine min'", "'lr cosine min'", kNonNegative);
      if (!m)
        return;
      phase.lrMin = *m;
    }
    phase.lrPolicy = "cosine";
    return;
  }
  error(policy.loc, "'lr' expects 'fixed', 'step F every N' or "
                    "'cosine [min LR]'");
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
    given.insert({m.name, toSMLoc(m.loc)});
  for (const ast::Option &o : s.options) {
    StringRef name = o.name;
    StringRef twin = name;
    bool decoder = twin.consume_front("dec.");
    auto known = [&](StringRef n) {
      return macroNames.contains(n) || layerNames.count(n);
    };
    if (!known(name) && !(decoder && known(twin))) {
      // A strided twin's chain (`dec.conv1.up1`, ...) is part of the twin.
      auto [owner, part] = twin.rsplit('.');
      if (decoder && known(owner) && part.starts_with("up"))
        error(o.loc, "lr-mult names '" + name +
                         "', a layer of the decoder "
                         "twin 'dec." +
                         owner + "': 'lr-mult dec." + owner +
                         "=...' sets the whole twin, its up-sampling chain "
                         "included");
      else
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
    std::optional<double> m = getNumberInRange(
        o.value, "lr-mult '" + name + "'", "lr-mult", kNonNegative);
    if (!m)
      continue;
    phase.lrMults.push_back({name.str(), *m, toLoc(o.loc)});
  }
}
