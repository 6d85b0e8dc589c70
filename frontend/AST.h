//===- AST.h - The syntax tree of the .net language -------------*- C++ -*-===//
//
// What the parser produces: one `File` per source file (the main file first,
// then each imported file in the order it was first imported), with blocks,
// calls and `repeat` still unexpanded and every value as written. Sema
// (SemaInternal.h) turns a Program into a netc::Model.
//
// Sections whose statements are plain settings (`augment`, `train`, `data`,
// `phase`) share one node, `Setting`: a keyword, positional values, named
// values and an optional body. Sema gives the keywords their meaning.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_FRONTEND_AST_H
#define NETC_FRONTEND_AST_H

#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/SMLoc.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdint>
#include <memory>
#include <string>
#include <variant>
#include <vector>

namespace netc {
namespace ast {

/// A value as written: a literal, a name (block parameter or bare word) or a
/// function application such as `gaussian(0.01)`.
struct Value {
  enum class Kind { Int, Float, Dims, Range, String, Bool, Ident, Apply };
  Kind kind = Kind::Int;
  llvm::SMLoc loc;
  std::string spelling;  ///< Numbers as written; Ident and Apply: the name.
  int64_t intValue = 0;  ///< Int; Range: low end.
  int64_t intValue2 = 0; ///< Range: high end.
  double floatValue = 0; ///< Int and Float.
  bool boolValue = false;
  std::vector<int64_t> dims; ///< Dims.
  std::string str;           ///< String: unescaped contents.
  std::vector<Value> args;   ///< Apply.

  /// Int or Float.
  bool isNumber() const { return kind == Kind::Int || kind == Kind::Float; }
};

/// `name=value`.
struct Option {
  std::string name;
  llvm::SMLoc loc;
  Value value;
};

/// A statement of a block, network or macro body.
struct Stmt {
  enum class Kind { Layer, Call, Repeat };
  Kind kind = Kind::Layer;
  llvm::SMLoc loc; ///< The statement's first token.

  // Layer: `[label ':'] kind value* (name '=' value)*`.
  std::string label;
  llvm::SMLoc labelLoc;
  std::string layerKind;
  llvm::SMLoc kindLoc;
  std::vector<Option> options;

  // Call: `callee(args)`; Layer: positional values.
  std::string callee;
  std::vector<Value> args;

  // Repeat: `repeat count { body }`.
  Value count;
  std::vector<Stmt> body;
};

/// A block parameter.
struct Param {
  std::string name;
  llvm::SMLoc loc;
};

/// `block name(params) { body }`.
struct Block {
  std::string name;
  llvm::SMLoc loc;
  llvm::SMLoc nameLoc;
  std::vector<Param> params;
  std::vector<Stmt> body;
};

/// A statement directly inside `network { ... }`.
struct NetItem {
  enum class Kind { Input, Classes, Pretrained, Macro, Stmt };
  Kind kind = Kind::Stmt;
  llvm::SMLoc loc;
  Value value;           ///< Input, Classes, Pretrained.
  std::vector<Option> options; ///< Pretrained: `names=...`.
  std::string macroName; ///< Macro.
  llvm::SMLoc macroNameLoc;
  bool macroIsCall = false; ///< Macro: `macro m = call(...)` (in `stmts[0]`).
  std::vector<Stmt> stmts;  ///< Macro body (or its call); Stmt: one statement.
};

/// `network name { items }`.
struct Network {
  std::string name;
  llvm::SMLoc loc;
  llvm::SMLoc nameLoc;
  std::vector<NetItem> items;
};

/// A keyword statement of `augment`, `train`, `data` or `phase`.
struct Setting {
  std::string keyword;
  llvm::SMLoc loc;
  std::vector<Value> args;
  std::vector<Option> options;
  bool hasBody = false;
  std::vector<Setting> body;
};

/// `augment variant [{ settings }]`.
struct Augment {
  std::string variant;
  llvm::SMLoc loc;
  llvm::SMLoc variantLoc;
  std::vector<Setting> settings;
};

/// `train { settings }`.
struct Train {
  llvm::SMLoc loc;
  std::vector<Setting> settings;
};

/// `import "path"`.
struct Import {
  std::string path;     ///< As written.
  std::string resolved; ///< The path it was opened with; empty if skipped.
  llvm::SMLoc loc;
  llvm::SMLoc pathLoc;
};

/// A top-level item.
using Item = std::variant<Import, Block, Network, Augment, Train>;

/// One source file.
struct File {
  std::string path; ///< The path it was opened with (buffer identifier).
  unsigned bufferId = 0;
  std::vector<Item> items;
};

/// The main file and everything it imports, each file once.
struct Program {
  std::vector<std::unique_ptr<File>> files;
  /// The SourceMgr holding every file's buffer; dumps use it for line:col.
  const llvm::SourceMgr *srcMgr = nullptr;
};

/// Prints `value` as it could be written in a .net file.
void printValue(const Value &value, llvm::raw_ostream &os);

} // namespace ast
} // namespace netc

#endif // NETC_FRONTEND_AST_H
