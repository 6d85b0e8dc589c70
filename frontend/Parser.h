//===- Parser.h - Recursive-descent parser for .net files -------*- C++ -*-===//
//
// Parses one buffer into an ast::File. The first syntax error is reported
// through the SourceMgr and parsing stops. Imports are resolved afterwards by
// parseProgram (Parser.cpp), which runs one Parser per file.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_FRONTEND_PARSER_H
#define NETC_FRONTEND_PARSER_H

#include "frontend/AST.h"
#include "frontend/Lexer.h"

#include "llvm/ADT/Twine.h"
#include "llvm/Support/LogicalResult.h"

namespace netc {

/// The parser of one file. Each parseX() method documents its grammar rule.
class Parser {
public:
  Parser(Lexer &lexer, llvm::SourceMgr &srcMgr)
      : lexer(lexer), srcMgr(srcMgr) {}

  /// Fills `file.items`; fails after reporting the first error.
  ///
  ///   file := item*
  llvm::LogicalResult parseFile(ast::File &file);

  /// Deepest nesting of `{ }`, parentheses and function applications.
  static constexpr unsigned kMaxDepth = 64;

private:
  llvm::LogicalResult parseItem(ast::File &file);
  llvm::LogicalResult parseImport(ast::Import &import);
  llvm::LogicalResult parseBlock(ast::Block &block);
  llvm::LogicalResult parseNetwork(ast::Network &network);
  llvm::LogicalResult parseNetItem(ast::NetItem &item);
  llvm::LogicalResult parseAugment(ast::Augment &augment);
  llvm::LogicalResult parseTrain(ast::Train &train);
  llvm::LogicalResult parseStmtList(std::vector<ast::Stmt> &stmts,
                                    llvm::StringRef what, bool inNetwork);
  llvm::LogicalResult parseStmt(ast::Stmt &stmt, bool inNetwork);
  llvm::LogicalResult parseRepeat(ast::Stmt &stmt, bool inNetwork);
  llvm::LogicalResult parseCall(ast::Stmt &stmt);
  llvm::LogicalResult parseLayer(ast::Stmt &stmt);
  llvm::LogicalResult parseArgs(std::vector<ast::Value> &args);
  llvm::LogicalResult parseOperands(std::vector<ast::Value> &args,
                                    std::vector<ast::Option> &options,
                                    llvm::StringRef what);
  llvm::LogicalResult parseSettingList(std::vector<ast::Setting> &settings,
                                       llvm::StringRef what);
  llvm::LogicalResult parseSetting(ast::Setting &setting);
  llvm::LogicalResult parseValue(ast::Value &value);

  /// `{`; remembers where it was for the "expected '}'" note.
  llvm::LogicalResult parseLBrace(llvm::StringRef what, llvm::SMLoc &openLoc);
  /// True at `;`, `}`, the end of the file or a token starting a new line.
  bool atStmtEnd() const;
  /// Consumes an optional `;` after a statement that must end here.
  llvm::LogicalResult finishStmt(llvm::StringRef what);
  /// Reports "expected X, got Y" at the current token.
  llvm::LogicalResult emitExpected(const llvm::Twine &what);
  llvm::LogicalResult emitError(llvm::SMLoc loc, const llvm::Twine &msg);
  /// Describes the current token for "got ..." (`'conv'`, `integer 3`).
  std::string describeCur() const;

  /// RAII nesting counter.
  struct DepthGuard {
    DepthGuard(Parser &p) : p(p) { ++p.depth; }
    ~DepthGuard() { --p.depth; }
    Parser &p;
  };
  llvm::LogicalResult checkDepth();

  Lexer &lexer;
  llvm::SourceMgr &srcMgr;
  unsigned depth = 0;
};

} // namespace netc

#endif // NETC_FRONTEND_PARSER_H
