//===- Lexer.h - Tokens of the .net language --------------------*- C++ -*-===//
//
// A hand-written lexer over one SourceMgr buffer. Statements end at a newline,
// so every token records whether it is the first on its line; the parser uses
// that to find statement ends. Lexical errors are reported through the
// SourceMgr as they are found and produce a single `Error` token.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_FRONTEND_LEXER_H
#define NETC_FRONTEND_LEXER_H

#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/SMLoc.h"
#include "llvm/Support/SourceMgr.h"

#include <cstdint>
#include <string>

namespace netc {

enum class TokenKind {
  Eof,
  Error,
  Ident,  ///< `[A-Za-z_][A-Za-z0-9_.]*`, plus `-` when a letter follows.
  Int,    ///< `42`, `-3`.
  Float,  ///< `0.5`, `.5`, `1e-4`, `-2.5`.
  Dims,   ///< `3x224x224`, `3x3`.
  Range,  ///< `256..512`.
  String, ///< `"..."` with `\"` and `\\` escapes.
  LBrace,
  RBrace,
  LParen,
  RParen,
  Comma,
  Semi,
  Colon,
  Equal,
};

/// Returns the token kind as the user would write it, for diagnostics.
llvm::StringRef tokenKindName(TokenKind kind);

/// One token. `spelling` points into the source buffer.
struct Token {
  TokenKind kind = TokenKind::Eof;
  llvm::StringRef spelling;
  llvm::SMLoc loc;
  /// True if no other token precedes this one on its line.
  bool atLineStart = false;

  int64_t intValue = 0;               ///< Int; Range: low end.
  int64_t intValue2 = 0;              ///< Range: high end.
  double floatValue = 0.0;            ///< Int and Float.
  llvm::SmallVector<int64_t, 4> dims; ///< Dims.
  std::string stringValue;            ///< String: unescaped contents.

  bool is(TokenKind k) const { return kind == k; }
  bool isIdent(llvm::StringRef word) const {
    return kind == TokenKind::Ident && spelling == word;
  }
};

/// Splits a buffer into tokens, with one token of lookahead.
class Lexer {
public:
  Lexer(llvm::SourceMgr &srcMgr, unsigned bufferId);

  /// The current token.
  const Token &cur() const { return curTok; }
  /// The token after the current one.
  const Token &peek();
  /// Moves to the next token.
  void consume();

private:
  Token lexToken();
  Token lexNumber(const char *start);
  Token lexIdent(const char *start);
  Token lexString(const char *start);
  Token makeToken(TokenKind kind, const char *start);
  Token makeError(const char *at, const llvm::Twine &msg);
  /// Skips blanks and comments; returns false after reporting an error.
  bool skipTrivia();

  llvm::SourceMgr &srcMgr;
  const char *curPtr;
  const char *bufEnd;
  /// A newline (or the start of the buffer) was passed since the last token.
  bool sawNewline = true;
  /// An error has been reported; every later token is an Error token.
  bool failed = false;
  Token curTok;
  Token nextTok;
  bool hasNext = false;
};

} // namespace netc

#endif // NETC_FRONTEND_LEXER_H
