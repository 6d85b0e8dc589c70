//===- Parser.cpp - Recursive-descent parser for .net files ---------------===//
//
// The per-file parser and the import loader behind parseProgram.
//
// Statements end at `;`, at `}` or where the next token starts a new line;
// inside `( ... )` newlines are free. Keywords are contextual: `conv` or
// `repeat` are identifiers everywhere else.
//
//===----------------------------------------------------------------------===//

#include "frontend/Parser.h"
#include "frontend/Frontend.h"
#include "frontend/Source.h"

#include "llvm/ADT/ScopeExit.h"
#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"

using namespace netc;
using llvm::failed;
using llvm::failure;
using llvm::LogicalResult;
using llvm::SMLoc;
using llvm::StringRef;
using llvm::success;

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

LogicalResult Parser::emitError(SMLoc loc, const llvm::Twine &msg) {
  srcMgr.PrintMessage(loc, llvm::SourceMgr::DK_Error, msg);
  return failure();
}

std::string Parser::describeCur() const {
  const Token &tok = lexer.cur();
  switch (tok.kind) {
  case TokenKind::Eof:
    return "end of file";
  case TokenKind::Ident:
    return ("'" + tok.spelling + "'").str();
  case TokenKind::String:
    return "string";
  case TokenKind::Int:
  case TokenKind::Float:
  case TokenKind::Dims:
  case TokenKind::Range:
    return (tokenKindName(tok.kind) + " " + tok.spelling).str();
  default:
    return tokenKindName(tok.kind).str();
  }
}

LogicalResult Parser::emitExpected(const llvm::Twine &what) {
  // The lexer has already reported its own errors.
  if (lexer.cur().is(TokenKind::Error))
    return failure();
  return emitError(lexer.cur().loc,
                   "expected " + what + ", got " + describeCur());
}

bool Parser::atStmtEnd() const {
  const Token &tok = lexer.cur();
  return tok.is(TokenKind::Semi) || tok.is(TokenKind::RBrace) ||
         tok.is(TokenKind::Eof) || tok.is(TokenKind::Error) || tok.atLineStart;
}

LogicalResult Parser::finishStmt(StringRef what) {
  if (lexer.cur().is(TokenKind::Error))
    return failure();
  if (!atStmtEnd())
    return emitExpected(("end of " + what + " (';' or a new line)").str());
  if (lexer.cur().is(TokenKind::Semi))
    lexer.consume();
  return success();
}

LogicalResult Parser::checkDepth() {
  if (depth <= kMaxDepth)
    return success();
  return emitError(lexer.cur().loc, "nesting is too deep (more than " +
                                        llvm::Twine(kMaxDepth) + " levels)");
}

LogicalResult Parser::parseLBrace(StringRef what, SMLoc &openLoc) {
  if (!lexer.cur().is(TokenKind::LBrace))
    return emitExpected(("'{' to open " + what).str());
  openLoc = lexer.cur().loc;
  lexer.consume();
  return success();
}

//===----------------------------------------------------------------------===//
// Items
//===----------------------------------------------------------------------===//

LogicalResult Parser::parseFile(ast::File &file) {
  while (true) {
    while (lexer.cur().is(TokenKind::Semi))
      lexer.consume();
    if (lexer.cur().is(TokenKind::Eof))
      return success();
    if (failed(parseItem(file)))
      return failure();
  }
}

/// item := import | block | network | augment | train
LogicalResult Parser::parseItem(ast::File &file) {
  // Parses one item of type Node with `parse` into the file.
  auto item = [&](auto parse, auto node) -> LogicalResult {
    if (failed((this->*parse)(node)))
      return failure();
    file.items.emplace_back(std::move(node));
    return success();
  };
  const Token &tok = lexer.cur();
  if (tok.isIdent("import"))
    return item(&Parser::parseImport, ast::Import());
  if (tok.isIdent("block"))
    return item(&Parser::parseBlock, ast::Block());
  if (tok.isIdent("network"))
    return item(&Parser::parseNetwork, ast::Network());
  if (tok.isIdent("augment"))
    return item(&Parser::parseAugment, ast::Augment());
  if (tok.isIdent("train"))
    return item(&Parser::parseTrain, ast::Train());
  return emitExpected("'import', 'block', 'network', 'augment' or 'train'");
}

/// import := 'import' STRING
LogicalResult Parser::parseImport(ast::Import &import) {
  import.loc = lexer.cur().loc;
  lexer.consume();
  if (!lexer.cur().is(TokenKind::String) || lexer.cur().atLineStart)
    return emitExpected("a file name string after 'import'");
  import.path = lexer.cur().stringValue;
  import.pathLoc = lexer.cur().loc;
  if (import.path.empty())
    return emitError(import.pathLoc, "empty file name in 'import'");
  lexer.consume();
  return finishStmt("import");
}

/// block := 'block' IDENT '(' [IDENT (',' IDENT)*] ')' '{' stmt* '}'
LogicalResult Parser::parseBlock(ast::Block &block) {
  block.loc = lexer.cur().loc;
  lexer.consume();
  if (!lexer.cur().is(TokenKind::Ident))
    return emitExpected("a block name after 'block'");
  block.name = lexer.cur().spelling.str();
  block.nameLoc = lexer.cur().loc;
  lexer.consume();
  if (!lexer.cur().is(TokenKind::LParen))
    return emitExpected("'(' after block name '" + block.name + "'");
  lexer.consume();
  if (!lexer.cur().is(TokenKind::RParen)) {
    while (true) {
      if (!lexer.cur().is(TokenKind::Ident))
        return emitExpected("a parameter name");
      StringRef name = lexer.cur().spelling;
      if (name == "true" || name == "false")
        return emitError(lexer.cur().loc,
                         "'" + name + "' cannot be a parameter name");
      block.params.push_back({name.str(), lexer.cur().loc});
      lexer.consume();
      if (lexer.cur().is(TokenKind::Comma)) {
        lexer.consume();
        continue;
      }
      if (lexer.cur().is(TokenKind::RParen))
        break;
      return emitExpected("',' or ')' in the parameter list");
    }
  }
  lexer.consume();
  return parseStmtList(block.body, "block '" + block.name + "'",
                       /*inNetwork=*/false);
}

/// network := 'network' IDENT '{' netstmt* '}'
LogicalResult Parser::parseNetwork(ast::Network &network) {
  network.loc = lexer.cur().loc;
  lexer.consume();
  if (!lexer.cur().is(TokenKind::Ident) || lexer.cur().atLineStart)
    return emitExpected("a network name after 'network'");
  network.name = lexer.cur().spelling.str();
  network.nameLoc = lexer.cur().loc;
  lexer.consume();
  std::string what = "network '" + network.name + "'";
  SMLoc openLoc;
  if (failed(parseLBrace(what, openLoc)))
    return failure();
  while (true) {
    while (lexer.cur().is(TokenKind::Semi))
      lexer.consume();
    if (lexer.cur().is(TokenKind::RBrace)) {
      lexer.consume();
      return success();
    }
    if (lexer.cur().is(TokenKind::Eof)) {
      (void)emitExpected("'}' to close " + what);
      srcMgr.PrintMessage(openLoc, llvm::SourceMgr::DK_Note, "'{' opened here");
      return failure();
    }
    network.items.emplace_back();
    if (failed(parseNetItem(network.items.back())))
      return failure();
  }
}

/// netstmt := 'input' DIMS | 'classes' INT
///          | 'pretrained' STRING (IDENT '=' value)*
///          | 'macro' IDENT '=' call | 'macro' IDENT '{' stmt* '}' | stmt
LogicalResult Parser::parseNetItem(ast::NetItem &item) {
  const Token &tok = lexer.cur();
  item.loc = tok.loc;
  auto parseKeywordValue = [&](ast::NetItem::Kind kind,
                               StringRef keyword) -> LogicalResult {
    item.kind = kind;
    lexer.consume();
    if (atStmtEnd())
      return emitExpected(("a value after '" + keyword + "'").str());
    if (failed(parseValue(item.value)))
      return failure();
    return finishStmt(("'" + keyword + "'").str());
  };
  bool isLabel =
      lexer.peek().is(TokenKind::Colon) || lexer.peek().is(TokenKind::LParen);
  if (tok.isIdent("input") && !isLabel)
    return parseKeywordValue(ast::NetItem::Kind::Input, "input");
  if (tok.isIdent("classes") && !isLabel)
    return parseKeywordValue(ast::NetItem::Kind::Classes, "classes");
  if (tok.isIdent("pretrained") && !isLabel) {
    item.kind = ast::NetItem::Kind::Pretrained;
    lexer.consume();
    if (atStmtEnd())
      return emitExpected("a value after 'pretrained'");
    if (failed(parseValue(item.value)))
      return failure();
    std::vector<ast::Value> extra;
    if (failed(parseOperands(extra, item.options, "'pretrained'")))
      return failure();
    if (!extra.empty())
      return emitError(extra.front().loc,
                       "unexpected value after the file name in "
                       "'pretrained'; options are written name=value");
    return finishStmt("'pretrained'");
  }
  if (tok.isIdent("macro") && !isLabel) {
    item.kind = ast::NetItem::Kind::Macro;
    lexer.consume();
    if (!lexer.cur().is(TokenKind::Ident) || lexer.cur().atLineStart)
      return emitExpected("a macro-layer name after 'macro'");
    item.macroName = lexer.cur().spelling.str();
    item.macroNameLoc = lexer.cur().loc;
    lexer.consume();
    if (lexer.cur().is(TokenKind::Equal)) {
      lexer.consume();
      if (!lexer.cur().is(TokenKind::Ident) ||
          !lexer.peek().is(TokenKind::LParen))
        return emitExpected("a block call after 'macro " + item.macroName +
                            " ='");
      item.macroIsCall = true;
      item.stmts.emplace_back();
      if (failed(parseCall(item.stmts.back())))
        return failure();
      return finishStmt("macro-layer");
    }
    if (!lexer.cur().is(TokenKind::LBrace))
      return emitExpected("'=' or '{' after 'macro " + item.macroName + "'");
    return parseStmtList(item.stmts, "macro-layer '" + item.macroName + "'",
                         /*inNetwork=*/false);
  }
  item.kind = ast::NetItem::Kind::Stmt;
  item.stmts.emplace_back();
  return parseStmt(item.stmts.back(), /*inNetwork=*/true);
}

/// augment := 'augment' IDENT ['{' setting* '}']
LogicalResult Parser::parseAugment(ast::Augment &augment) {
  augment.loc = lexer.cur().loc;
  lexer.consume();
  if (!lexer.cur().is(TokenKind::Ident) || lexer.cur().atLineStart)
    return emitExpected("an augmentation variant after 'augment'");
  augment.variant = lexer.cur().spelling.str();
  augment.variantLoc = lexer.cur().loc;
  lexer.consume();
  if (!lexer.cur().is(TokenKind::LBrace))
    return finishStmt("'augment'");
  return parseSettingList(augment.settings, "'augment'");
}

/// train := 'train' '{' setting* '}'
LogicalResult Parser::parseTrain(ast::Train &train) {
  train.loc = lexer.cur().loc;
  lexer.consume();
  if (!lexer.cur().is(TokenKind::LBrace))
    return emitExpected("'{' after 'train'");
  return parseSettingList(train.settings, "'train'");
}

//===----------------------------------------------------------------------===//
// Statements
//===----------------------------------------------------------------------===//

/// stmts := '{' stmt* '}'
LogicalResult Parser::parseStmtList(std::vector<ast::Stmt> &stmts,
                                    StringRef what, bool inNetwork) {
  DepthGuard guard(*this);
  if (failed(checkDepth()))
    return failure();
  SMLoc openLoc;
  if (failed(parseLBrace(what, openLoc)))
    return failure();
  while (true) {
    while (lexer.cur().is(TokenKind::Semi))
      lexer.consume();
    if (lexer.cur().is(TokenKind::RBrace)) {
      lexer.consume();
      return success();
    }
    if (lexer.cur().is(TokenKind::Eof)) {
      (void)emitExpected("'}' to close " + what);
      srcMgr.PrintMessage(openLoc, llvm::SourceMgr::DK_Note, "'{' opened here");
      return failure();
    }
    stmts.emplace_back();
    if (failed(parseStmt(stmts.back(), inNetwork)))
      return failure();
  }
}

/// stmt := layer | call | 'repeat' value '{' stmt* '}'
LogicalResult Parser::parseStmt(ast::Stmt &stmt, bool inNetwork) {
  const Token &tok = lexer.cur();
  if (!tok.is(TokenKind::Ident))
    return emitExpected("a layer, a block call or 'repeat'");
  stmt.loc = tok.loc;
  const Token &next = lexer.peek();
  if (next.is(TokenKind::LParen))
    return failed(parseCall(stmt)) ? failure() : finishStmt("block call");
  if (tok.isIdent("repeat") && !next.is(TokenKind::Colon))
    return parseRepeat(stmt, inNetwork);
  if (!next.is(TokenKind::Colon) &&
      (tok.isIdent("macro") || tok.isIdent("input") || tok.isIdent("classes") ||
       tok.isIdent("pretrained")))
    return emitError(tok.loc, "'" + tok.spelling +
                                  "' is only allowed directly inside a "
                                  "network");
  return parseLayer(stmt);
}

/// repeat := 'repeat' value '{' stmt* '}'
LogicalResult Parser::parseRepeat(ast::Stmt &stmt, bool inNetwork) {
  stmt.kind = ast::Stmt::Kind::Repeat;
  lexer.consume();
  if (atStmtEnd() || lexer.cur().is(TokenKind::LBrace))
    return emitExpected("a repeat count after 'repeat'");
  if (failed(parseValue(stmt.count)))
    return failure();
  return parseStmtList(stmt.body, "'repeat'", inNetwork);
}

/// call := IDENT '(' [value (',' value)*] ')'
LogicalResult Parser::parseCall(ast::Stmt &stmt) {
  stmt.kind = ast::Stmt::Kind::Call;
  stmt.loc = lexer.cur().loc;
  stmt.callee = lexer.cur().spelling.str();
  lexer.consume();
  return parseArgs(stmt.args);
}

/// args := '(' [value (',' value)*] ')'
LogicalResult Parser::parseArgs(std::vector<ast::Value> &args) {
  DepthGuard guard(*this);
  if (failed(checkDepth()))
    return failure();
  if (!lexer.cur().is(TokenKind::LParen))
    return emitExpected("'('");
  lexer.consume();
  if (lexer.cur().is(TokenKind::RParen)) {
    lexer.consume();
    return success();
  }
  while (true) {
    args.emplace_back();
    if (failed(parseValue(args.back())))
      return failure();
    if (lexer.cur().is(TokenKind::Comma)) {
      lexer.consume();
      continue;
    }
    if (lexer.cur().is(TokenKind::RParen)) {
      lexer.consume();
      return success();
    }
    return emitExpected("',' or ')'");
  }
}

/// layer := [IDENT ':'] IDENT value* (IDENT '=' value)*
LogicalResult Parser::parseLayer(ast::Stmt &stmt) {
  stmt.kind = ast::Stmt::Kind::Layer;
  if (lexer.peek().is(TokenKind::Colon)) {
    stmt.label = lexer.cur().spelling.str();
    stmt.labelLoc = lexer.cur().loc;
    lexer.consume();
    lexer.consume();
    if (lexer.cur().atLineStart)
      return emitError(lexer.cur().loc, "expected a layer kind after '" +
                                            stmt.label + ":' on the same line");
    if (!lexer.cur().is(TokenKind::Ident))
      return emitExpected("a layer kind after '" + stmt.label + ":'");
  }
  stmt.layerKind = lexer.cur().spelling.str();
  stmt.kindLoc = lexer.cur().loc;
  lexer.consume();
  if (failed(parseOperands(stmt.args, stmt.options,
                           "layer '" + stmt.layerKind + "'")))
    return failure();
  return finishStmt("layer");
}

/// operands := value* (IDENT '=' value)*
LogicalResult Parser::parseOperands(std::vector<ast::Value> &args,
                                    std::vector<ast::Option> &options,
                                    StringRef what) {
  while (!atStmtEnd() && !lexer.cur().is(TokenKind::LBrace)) {
    if (lexer.cur().is(TokenKind::Ident) && lexer.peek().is(TokenKind::Equal)) {
      ast::Option option;
      option.name = lexer.cur().spelling.str();
      option.loc = lexer.cur().loc;
      lexer.consume();
      lexer.consume();
      if (atStmtEnd())
        return emitExpected("a value for '" + option.name + "'");
      if (failed(parseValue(option.value)))
        return failure();
      options.push_back(std::move(option));
      continue;
    }
    if (!options.empty() && lexer.cur().is(TokenKind::Ident))
      return emitError(lexer.cur().loc,
                       "unexpected '" + lexer.cur().spelling +
                           "' after named options in " + what +
                           "; separate statements with ';' or a new line");
    if (!options.empty())
      return emitError(lexer.cur().loc,
                       "positional value after named options in " + what);
    args.emplace_back();
    if (failed(parseValue(args.back())))
      return failure();
  }
  return success();
}

//===----------------------------------------------------------------------===//
// Settings (augment, train, data, phase)
//===----------------------------------------------------------------------===//

/// settings := '{' setting* '}'
LogicalResult Parser::parseSettingList(std::vector<ast::Setting> &settings,
                                       StringRef what) {
  DepthGuard guard(*this);
  if (failed(checkDepth()))
    return failure();
  SMLoc openLoc;
  if (failed(parseLBrace(what, openLoc)))
    return failure();
  while (true) {
    while (lexer.cur().is(TokenKind::Semi))
      lexer.consume();
    if (lexer.cur().is(TokenKind::RBrace)) {
      lexer.consume();
      return success();
    }
    if (lexer.cur().is(TokenKind::Eof)) {
      (void)emitExpected("'}' to close " + what);
      srcMgr.PrintMessage(openLoc, llvm::SourceMgr::DK_Note, "'{' opened here");
      return failure();
    }
    settings.emplace_back();
    if (failed(parseSetting(settings.back())))
      return failure();
  }
}

/// setting := IDENT value* (IDENT '=' value)* ['{' setting* '}']
LogicalResult Parser::parseSetting(ast::Setting &setting) {
  if (!lexer.cur().is(TokenKind::Ident))
    return emitExpected("a setting name");
  setting.keyword = lexer.cur().spelling.str();
  setting.loc = lexer.cur().loc;
  lexer.consume();
  if (failed(parseOperands(setting.args, setting.options,
                           "'" + setting.keyword + "'")))
    return failure();
  if (lexer.cur().is(TokenKind::LBrace)) {
    setting.hasBody = true;
    return parseSettingList(setting.body, "'" + setting.keyword + "'");
  }
  return finishStmt("'" + setting.keyword + "'");
}

//===----------------------------------------------------------------------===//
// Values
//===----------------------------------------------------------------------===//

/// value := INT | FLOAT | DIMS | RANGE | STRING | 'true' | 'false' | IDENT
///        | IDENT '(' [value (',' value)*] ')'
LogicalResult Parser::parseValue(ast::Value &value) {
  const Token &tok = lexer.cur();
  value.loc = tok.loc;
  value.spelling = tok.spelling.str();
  switch (tok.kind) {
  case TokenKind::Int:
    value.kind = ast::Value::Kind::Int;
    value.intValue = tok.intValue;
    value.floatValue = tok.floatValue;
    break;
  case TokenKind::Float:
    value.kind = ast::Value::Kind::Float;
    value.floatValue = tok.floatValue;
    break;
  case TokenKind::Dims:
    value.kind = ast::Value::Kind::Dims;
    value.dims.assign(tok.dims.begin(), tok.dims.end());
    break;
  case TokenKind::Range:
    value.kind = ast::Value::Kind::Range;
    value.intValue = tok.intValue;
    value.intValue2 = tok.intValue2;
    break;
  case TokenKind::String:
    value.kind = ast::Value::Kind::String;
    value.str = tok.stringValue;
    break;
  case TokenKind::Ident:
    if (tok.spelling == "true" || tok.spelling == "false") {
      value.kind = ast::Value::Kind::Bool;
      value.boolValue = tok.spelling == "true";
      break;
    }
    if (lexer.peek().is(TokenKind::LParen)) {
      value.kind = ast::Value::Kind::Apply;
      lexer.consume();
      return parseArgs(value.args);
    }
    value.kind = ast::Value::Kind::Ident;
    break;
  default:
    return emitExpected("a value");
  }
  lexer.consume();
  return success();
}

//===----------------------------------------------------------------------===//
// Programs and imports
//===----------------------------------------------------------------------===//

namespace {
/// Loads a file and, depth first, every file it imports, each once.
class ProgramLoader {
public:
  ProgramLoader(llvm::SourceMgr &srcMgr, ast::Program &program,
                const std::vector<std::string> &includeDirs)
      : srcMgr(srcMgr), program(program), includeDirs(includeDirs) {}

  /// Parses the buffer `bufferId`, opened as `path`, then its imports.
  LogicalResult load(unsigned bufferId, StringRef path, StringRef canonical);

private:
  /// Finds `import.path`: beside `fromPath`, then in the include dirs.
  std::optional<std::string> resolve(const ast::Import &import,
                                     StringRef fromPath);

  llvm::SourceMgr &srcMgr;
  ast::Program &program;
  const std::vector<std::string> &includeDirs;
  /// Files being loaded, outermost first: canonical and opened paths.
  std::vector<std::string> stack, stackNames;
  llvm::StringSet<> loaded;
};
} // namespace

/// Opened imports must be regular files, so `import "/dev/zero"` cannot hang.
static bool isReadableFile(const llvm::Twine &path) {
  return llvm::sys::fs::is_regular_file(path);
}

std::optional<std::string> ProgramLoader::resolve(const ast::Import &import,
                                                  StringRef fromPath) {
  if (llvm::sys::path::is_absolute(import.path)) {
    if (isReadableFile(import.path))
      return import.path;
    return std::nullopt;
  }
  llvm::SmallString<256> candidate(llvm::sys::path::parent_path(fromPath));
  llvm::sys::path::append(candidate, import.path);
  if (isReadableFile(candidate))
    return std::string(candidate);
  for (const std::string &dir : includeDirs) {
    candidate = dir;
    llvm::sys::path::append(candidate, import.path);
    if (isReadableFile(candidate))
      return std::string(candidate);
  }
  return std::nullopt;
}

LogicalResult ProgramLoader::load(unsigned bufferId, StringRef path,
                                  StringRef canonical) {
  if (stack.size() > Parser::kMaxDepth)
    return failure();
  loaded.insert(canonical);
  auto file = std::make_unique<ast::File>();
  file->path = path.str();
  file->bufferId = bufferId;
  ast::File *filePtr = file.get();
  program.files.push_back(std::move(file));

  Lexer lexer(srcMgr, bufferId);
  Parser parser(lexer, srcMgr);
  if (failed(parser.parseFile(*filePtr)))
    return failure();

  stack.push_back(canonical.str());
  stackNames.push_back(path.str());
  auto popStack = llvm::make_scope_exit([&] {
    stack.pop_back();
    stackNames.pop_back();
  });
  for (ast::Item &item : filePtr->items) {
    auto *import = std::get_if<ast::Import>(&item);
    if (!import)
      continue;
    std::optional<std::string> found = resolve(*import, path);
    if (!found) {
      // Say why when the file is there but is no regular file (a device, a
      // FIFO): nothing is read from it.
      llvm::SmallString<256> beside(llvm::sys::path::is_absolute(import->path)
                                        ? StringRef()
                                        : llvm::sys::path::parent_path(path));
      llvm::sys::path::append(beside, import->path);
      std::string why;
      if (llvm::sys::fs::exists(beside))
        if (auto buffer = readSourceFile(beside); !buffer)
          why = ": " + llvm::toString(buffer.takeError());
      srcMgr.PrintMessage(import->pathLoc, llvm::SourceMgr::DK_Error,
                          "cannot open imported file '" + import->path + "'" +
                              why);
      return failure();
    }
    llvm::SmallString<256> real;
    if (llvm::sys::fs::real_path(*found, real))
      real = *found;
    for (size_t i = 0, e = stack.size(); i != e; ++i) {
      if (stack[i] != real)
        continue;
      std::string chain = "import cycle: " + stackNames[i];
      for (size_t j = i + 1; j != e; ++j)
        chain += (j == i + 1 ? " imports " : " which imports ") + stackNames[j];
      chain += (e == i + 1 ? " imports " : " which imports ") + stackNames[i];
      srcMgr.PrintMessage(import->loc, llvm::SourceMgr::DK_Error, chain);
      return failure();
    }
    import->resolved = *found;
    if (loaded.contains(real))
      continue;
    if (stack.size() >= Parser::kMaxDepth) {
      srcMgr.PrintMessage(import->loc, llvm::SourceMgr::DK_Error,
                          "imports are nested too deeply (more than " +
                              llvm::Twine(Parser::kMaxDepth) + " levels)");
      return failure();
    }
    auto bufOrErr = readSourceFile(*found);
    if (!bufOrErr) {
      srcMgr.PrintMessage(import->pathLoc, llvm::SourceMgr::DK_Error,
                          "cannot open imported file '" + import->path +
                              "': " + llvm::toString(bufOrErr.takeError()));
      return failure();
    }
    unsigned id = srcMgr.AddNewSourceBuffer(std::move(*bufOrErr), import->loc);
    if (failed(load(id, *found, real)))
      return failure();
  }
  return success();
}

ProgramPtr netc::parseProgram(llvm::SourceMgr &srcMgr, StringRef path,
                              const std::vector<std::string> &includeDirs) {
  auto bufOrErr = readSourceFile(path);
  if (!bufOrErr) {
    // No buffer to point into: `path: error: ...`, still through the handler.
    llvm::SMDiagnostic diag(path, llvm::SourceMgr::DK_Error,
                            "cannot open file: " +
                                llvm::toString(bufOrErr.takeError()));
    if (llvm::SourceMgr::DiagHandlerTy handler = srcMgr.getDiagHandler())
      handler(diag, srcMgr.getDiagContext());
    else
      diag.print(nullptr, llvm::errs());
    return nullptr;
  }
  unsigned id = srcMgr.AddNewSourceBuffer(std::move(*bufOrErr), SMLoc());
  ProgramPtr program(new ast::Program);
  program->srcMgr = &srcMgr;
  llvm::SmallString<256> real;
  if (llvm::sys::fs::real_path(path, real))
    real = path;
  ProgramLoader loader(srcMgr, *program, includeDirs);
  if (failed(loader.load(id, path, real)))
    return nullptr;
  return program;
}

ProgramPtr netc::parseProgramFromBuffer(llvm::SourceMgr &srcMgr,
                                        StringRef bufferName,
                                        StringRef contents) {
  unsigned id = srcMgr.AddNewSourceBuffer(
      normalizeSource(
          llvm::MemoryBuffer::getMemBufferCopy(contents, bufferName)),
      SMLoc());
  ProgramPtr program(new ast::Program);
  program->srcMgr = &srcMgr;
  static const std::vector<std::string> noIncludeDirs;
  ProgramLoader loader(srcMgr, *program, noIncludeDirs);
  if (failed(loader.load(id, bufferName, bufferName)))
    return nullptr;
  return program;
}
