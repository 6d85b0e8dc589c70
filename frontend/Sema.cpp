//===- Sema.cpp - From the .net AST to a checked Model --------------------===//
//
// buildModel: expands blocks, `repeat` and imports into a flat netc::Model and
// reports every user error it can find without shapes.
//
// 1. Collect blocks, the network, `augment` and `train` from every file.
// 2. Expand the network body: block calls bind parameters to the caller's
//    (already resolved) values, `repeat` copies its body, every layer's
//    options are checked and turned into numbers (SemaNetwork.cpp).
// 3. Name the layers (labels, macro-layer rules, `<kind><n>`), check that
//    names are unique, apply `pretrained` (SemaNetwork.cpp).
// 4. Check `augment` and `train` against those names (SemaSettings.cpp).
//
// This file holds the driver of those steps and what every step uses: the
// diagnostics and the readers of typed values. Errors are deduplicated by
// place and text, so a bad layer inside a block that is expanded a hundred
// times is reported once.
//
//===----------------------------------------------------------------------===//

#include "frontend/SemaInternal.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

using namespace netc;
using namespace netc::sema;
using llvm::SMLoc;
using llvm::StringRef;
using llvm::Twine;

//===----------------------------------------------------------------------===//
// Message helpers
//===----------------------------------------------------------------------===//

std::string sema::suggest(StringRef word,
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

std::string sema::formatNumber(double v) {
  std::string s;
  llvm::raw_string_ostream os(s);
  os << llvm::format("%g", v);
  return s;
}

std::string sema::describe(const ast::Value &value) {
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

std::string NumberRange::describe() const {
  std::string out;
  llvm::raw_string_ostream os(out);
  if (max == std::numeric_limits<double>::infinity()) {
    // Every unbounded range in use starts at 0.
    if (min == 0)
      os << (minOpen ? "positive" : "non-negative");
    else
      os << (minOpen ? "greater than " : "at least ")
         << llvm::format("%.10g", min);
    return out;
  }
  os << "in " << (minOpen ? "(" : "[") << llvm::format("%.10g", min) << ", "
     << llvm::format("%.10g", max) << (maxOpen ? ")" : "]");
  return out;
}

//===----------------------------------------------------------------------===//
// Diagnostics
//===----------------------------------------------------------------------===//

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

SMLoc Sema::toSMLoc(const Loc &loc) {
  for (const auto &[id, name] : fileNames)
    if (name == loc.file)
      return lines.getLoc(id, loc.line, loc.col);
  return SMLoc();
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

bool Sema::checkRange(double x, const ast::Value &v, const Twine &subject,
                      const NumberRange &range) {
  if (range.contains(x))
    return true;
  error(v.loc,
        subject + " must be " + range.describe() + ", got " + v.spelling);
  return false;
}

std::optional<double> Sema::getNumberInRange(const ast::Value &v,
                                             const Twine &what,
                                             const Twine &subject,
                                             const NumberRange &range) {
  std::optional<double> x = getNumber(v, what);
  if (!x || !checkRange(*x, v, subject, range))
    return std::nullopt;
  return x;
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
    std::optional<double> std = getNumberInRange(v.args[0], "gaussian std",
                                                 "gaussian std", kNonNegative);
    if (!std)
      return std::nullopt;
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
    init.namedAt = toLoc(v.args[0].loc);
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
// Entry point
//===----------------------------------------------------------------------===//

std::optional<Model> netc::buildModel(const ast::Program &program,
                                      llvm::SourceMgr &srcMgr) {
  return Sema(program, srcMgr).run();
}
