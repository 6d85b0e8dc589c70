//===- SemaInternal.h - The Sema class and its private helpers --*- C++ -*-===//
//
// Private to frontend/. Sema turns an ast::Program into a netc::Model
// (netc::buildModel). It is one class because its parts share the
// diagnostics and the names found so far, but its members live in three
// files, one per concern:
//
//   Sema.cpp          the driver (collect the program's items, run the
//                     steps in order), the diagnostics, and the readers of
//                     typed values (integers, numbers in a range, names,
//                     initializers, ...) every part uses;
//   SemaNetwork.cpp   the network: expansion of blocks, `repeat` and
//                     layers, layer naming, `pretrained`;
//   SemaSettings.cpp  the `augment` and `train` sections (`data`, `phase`),
//                     their plain settings read through one typed option
//                     table.
//
// The limits Sema enforces are public, in Sema.h.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_FRONTEND_SEMAINTERNAL_H
#define NETC_FRONTEND_SEMAINTERNAL_H

#include "frontend/AST.h"
#include "frontend/Frontend.h"
#include "frontend/Sema.h"
#include "frontend/Source.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/ADT/Twine.h"
#include "llvm/Support/LogicalResult.h"
#include "llvm/Support/SMLoc.h"
#include "llvm/Support/SourceMgr.h"

#include <array>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace netc {
namespace sema {

//===----------------------------------------------------------------------===//
// Message helpers (Sema.cpp)
//===----------------------------------------------------------------------===//

/// "; did you mean 'conv'?" when one candidate is close to `word`; ties go to
/// the first candidate.
std::string suggest(llvm::StringRef word,
                    llvm::ArrayRef<llvm::StringRef> candidates);

/// A number as messages show it ("0.01", "1e-05").
std::string formatNumber(double v);

/// How a value's type is named in "expects X, got Y".
std::string describe(const ast::Value &value);

/// An interval of numbers, as "X must be <range>, got Y" names it: an
/// unbounded one from 0 is "non-negative" or "positive", a bounded one
/// "in [0, 1)".
struct NumberRange {
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  bool minOpen = false;
  bool maxOpen = false;

  bool contains(double x) const {
    return (minOpen ? x > min : x >= min) && (maxOpen ? x < max : x <= max);
  }
  /// "non-negative", "positive", "in [0, 1)".
  std::string describe() const;
};

/// Every number.
constexpr NumberRange kAnyNumber{};
/// [0, inf).
constexpr NumberRange kNonNegative{0.0};
/// (0, inf).
constexpr NumberRange kPositive{0.0, std::numeric_limits<double>::infinity(),
                                /*minOpen=*/true};

//===----------------------------------------------------------------------===//
// Sema
//===----------------------------------------------------------------------===//

// Defined in SemaNetwork.cpp.
struct Env;
struct PendingLayer;
struct PendingStage;
// Defined in SemaSettings.cpp.
struct ValueRule;

/// The value of a table-driven setting (SemaSettings.cpp), as its ValueRule
/// reads it: bool (a flag), int64_t, double, std::string (a word or a
/// resolved path) or InitSpec.
using SettingValue = std::variant<bool, int64_t, double, std::string, InitSpec>;

class Sema {
public:
  Sema(const ast::Program &program, llvm::SourceMgr &srcMgr)
      : program(program), srcMgr(srcMgr), lines(srcMgr) {}

  /// The checked model, or nullopt after at least one error.
  std::optional<Model> run();

private:
  //===--- Sema.cpp: diagnostics, program structure, typed values -------===//

  /// Reports an error once per place and text; returns whether it was
  /// printed (callers attach notes only then).
  bool error(llvm::SMLoc loc, const llvm::Twine &msg);
  void note(llvm::SMLoc loc, const llvm::Twine &msg);
  Loc toLoc(llvm::SMLoc loc);
  /// The inverse of toLoc, for a note at a place the model kept.
  llvm::SMLoc toSMLoc(const Loc &loc);
  /// `path` as written at `loc`, made absolute against that file's folder.
  std::string resolvePath(llvm::SMLoc loc, llvm::StringRef path);

  /// Finds the blocks, the network, `augment` and `train` of every file.
  void collect(const ast::Network *&network, const ast::Augment *&augment,
               const ast::Train *&train);

  // Typed values; `what` names the thing for "X expects Y, got Z".
  std::optional<int64_t> getInt(const ast::Value &v, const llvm::Twine &what);
  std::optional<double> getNumber(const ast::Value &v, const llvm::Twine &what);
  std::optional<bool> getBool(const ast::Value &v, const llvm::Twine &what);
  std::optional<std::string> getString(const ast::Value &v,
                                       const llvm::Twine &what);
  std::optional<std::string> getWord(const ast::Value &v,
                                     const llvm::Twine &what);
  std::optional<std::array<int64_t, 2>> getPair(const ast::Value &v,
                                                const llvm::Twine &what);
  std::optional<InitSpec> getInit(const ast::Value &v, const llvm::Twine &what);
  /// An integer in [min, max], min being 0 or 1.
  std::optional<int64_t> getIntInRange(const ast::Value &v,
                                       const llvm::Twine &what, int64_t min,
                                       int64_t max);
  /// An integer in [min, kMaxExtent].
  std::optional<int64_t> getExtent(const ast::Value &v, const llvm::Twine &what,
                                   int64_t min) {
    return getIntInRange(v, what, min, kMaxExtent);
  }
  /// Reports "<subject> must be <range>, got <v as written>" unless `x` (the
  /// number `v` holds) is in `range`; returns whether it is.
  bool checkRange(double x, const ast::Value &v, const llvm::Twine &subject,
                  const NumberRange &range);
  /// getNumber, then checkRange.
  std::optional<double> getNumberInRange(const ast::Value &v,
                                         const llvm::Twine &what,
                                         const llvm::Twine &subject,
                                         const NumberRange &range);

  //===--- SemaNetwork.cpp: expansion and naming ------------------------===//

  void buildNetwork(const ast::Network &network);
  /// Reads `input CxHxW` into the model's network.
  void buildInput(const ast::Value &value);
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
  /// Reports expansions nested deeper than kMaxNesting.
  llvm::LogicalResult checkNesting(llvm::SMLoc loc);
  /// Counts one more statement expanded; past kMaxExpansionSteps, reports
  /// it, sets tooLarge and returns false.
  bool countStep(llvm::SMLoc loc);

  /// Reads one layer statement's values against its kind's LayerSpec
  /// (SemaNetwork.cpp); nested, so that it reports through Sema.
  class LayerBuilder;

  /// RAII counter of nested calls and repeats being expanded.
  struct NestingGuard {
    NestingGuard(Sema &sema) : sema(sema) { ++sema.nesting; }
    ~NestingGuard() { --sema.nesting; }
    Sema &sema;
  };

  //===--- SemaSettings.cpp: augment, train, data, phase ----------------===//

  void buildAugment(const ast::Augment &augment);
  void buildEvalBody(const ast::Setting &s, TrainSpec &spec);
  void buildTrain(const ast::Train &train);
  void buildData(const ast::Setting &setting, DataSpec &data);
  /// Checks the crop size and the number of mean and std values against the
  /// network input (and the images, where the data set fixes their size), as
  /// the trainer would.
  /// The settings of `data images`, and the image settings elsewhere.
  void checkImageData(const DataSpec &data, const ast::Setting &setting,
                      const llvm::StringMap<llvm::SMLoc> &seen);
  /// The data set against the network's input and classes; `kindLoc` is the
  /// data set's name.
  void checkDataShape(const DataSpec &data, llvm::SMLoc kindLoc,
                      llvm::SMLoc cropLoc, llvm::SMLoc meanLoc,
                      llvm::SMLoc stdLoc);
  void buildPhase(const ast::Setting &setting, PhaseSpec &phase);
  /// Reads `sgd lr=X momentum=Y decay=Z` into `phase`.
  void buildSgd(const ast::Setting &setting, PhaseSpec &phase);
  /// Reads `lr fixed | step F every N | cosine [min LR]` into `phase`.
  void buildLrPolicy(const ast::Setting &setting, PhaseSpec &phase);
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
  bool checkOnce(llvm::StringMap<llvm::SMLoc> &seen,
                 const ast::Setting &setting, llvm::StringRef section);
  /// Reads a table-driven setting: checks its shape (one value; none for a
  /// flag), then its value by `rule`.
  std::optional<SettingValue> readSetting(const ValueRule &rule,
                                          const ast::Setting &setting);
  /// Reads one value by `rule`: `what` names it for "X expects Y, got Z",
  /// `subject` for "X must be in R" and "unknown X".
  std::optional<SettingValue> readValue(const ValueRule &rule,
                                        const ast::Value &v,
                                        const llvm::Twine &what,
                                        const llvm::Twine &subject);

  //===--- State ---------------------------------------------------------===//

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
  unsigned nesting = 0;
  int64_t steps = 0;
  int64_t layerCount = 0;
  bool tooLarge = false;

  /// Final names: macro-layers and layers (with their kind).
  llvm::StringSet<> macroNames;
  llvm::StringMap<LayerKind> layerNames;

  /// Every gamma read so far, for checkGammaStages.
  std::vector<std::pair<std::string, llvm::SMLoc>> gammaUses;
  /// `target std=S` of the augment section, for resolveTarget.
  std::optional<double> targetStd;
  llvm::SMLoc targetLoc;
};

} // namespace sema
} // namespace netc

#endif // NETC_FRONTEND_SEMAINTERNAL_H
