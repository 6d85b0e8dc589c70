//===- Lexer.cpp - Tokens of the .net language ----------------------------===//
//
// Implements the lexer: comments, identifiers with embedded hyphens, numbers,
// dims (`3x3`), ranges (`256..512`), strings and punctuation.
//
//===----------------------------------------------------------------------===//

#include "frontend/Lexer.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/Twine.h"

#include <cmath>
#include <limits>

using namespace netc;
using llvm::SMLoc;
using llvm::StringRef;

StringRef netc::tokenKindName(TokenKind kind) {
  switch (kind) {
  case TokenKind::Eof:
    return "end of file";
  case TokenKind::Error:
    return "invalid token";
  case TokenKind::Ident:
    return "identifier";
  case TokenKind::Int:
    return "integer";
  case TokenKind::Float:
    return "number";
  case TokenKind::Dims:
    return "dims";
  case TokenKind::Range:
    return "range";
  case TokenKind::String:
    return "string";
  case TokenKind::LBrace:
    return "'{'";
  case TokenKind::RBrace:
    return "'}'";
  case TokenKind::LParen:
    return "'('";
  case TokenKind::RParen:
    return "')'";
  case TokenKind::Comma:
    return "','";
  case TokenKind::Semi:
    return "';'";
  case TokenKind::Colon:
    return "':'";
  case TokenKind::Equal:
    return "'='";
  }
  return "token";
}

static bool isIdentStart(char c) { return llvm::isAlpha(c) || c == '_'; }
static bool isIdentBody(char c) {
  return llvm::isAlnum(c) || c == '_' || c == '.';
}

Lexer::Lexer(llvm::SourceMgr &srcMgr, unsigned bufferId) : srcMgr(srcMgr) {
  const llvm::MemoryBuffer *buf = srcMgr.getMemoryBuffer(bufferId);
  curPtr = buf->getBufferStart();
  bufEnd = buf->getBufferEnd();
  curTok = lexToken();
}

const Token &Lexer::peek() {
  if (!hasNext) {
    nextTok = lexToken();
    hasNext = true;
  }
  return nextTok;
}

void Lexer::consume() {
  if (curTok.is(TokenKind::Eof) || curTok.is(TokenKind::Error))
    return;
  if (hasNext) {
    curTok = std::move(nextTok);
    hasNext = false;
    return;
  }
  curTok = lexToken();
}

Token Lexer::makeToken(TokenKind kind, const char *start) {
  Token tok;
  tok.kind = kind;
  tok.spelling = StringRef(start, curPtr - start);
  tok.loc = SMLoc::getFromPointer(start);
  tok.atLineStart = sawNewline;
  sawNewline = false;
  return tok;
}

Token Lexer::makeError(const char *at, const llvm::Twine &msg) {
  srcMgr.PrintMessage(SMLoc::getFromPointer(at), llvm::SourceMgr::DK_Error,
                      msg);
  failed = true;
  Token tok;
  tok.kind = TokenKind::Error;
  tok.loc = SMLoc::getFromPointer(at);
  return tok;
}

bool Lexer::skipTrivia() {
  while (curPtr < bufEnd) {
    char c = *curPtr;
    if (c == '\n') {
      sawNewline = true;
      ++curPtr;
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
      ++curPtr;
      continue;
    }
    if (c == '/' && curPtr + 1 < bufEnd && curPtr[1] == '/') {
      while (curPtr < bufEnd && *curPtr != '\n')
        ++curPtr;
      continue;
    }
    if (c == '/' && curPtr + 1 < bufEnd && curPtr[1] == '*') {
      const char *start = curPtr;
      curPtr += 2;
      while (true) {
        if (curPtr + 1 >= bufEnd) {
          curPtr = bufEnd;
          makeError(start, "unterminated block comment");
          return false;
        }
        if (curPtr[0] == '*' && curPtr[1] == '/') {
          curPtr += 2;
          break;
        }
        if (*curPtr == '\n')
          sawNewline = true;
        ++curPtr;
      }
      continue;
    }
    return true;
  }
  return true;
}

Token Lexer::lexToken() {
  if (failed) {
    Token tok;
    tok.kind = TokenKind::Error;
    tok.loc = SMLoc::getFromPointer(curPtr);
    return tok;
  }
  if (!skipTrivia()) {
    Token tok;
    tok.kind = TokenKind::Error;
    tok.loc = SMLoc::getFromPointer(curPtr);
    return tok;
  }
  if (curPtr >= bufEnd) {
    const char *start = curPtr;
    Token tok = makeToken(TokenKind::Eof, start);
    tok.atLineStart = true;
    return tok;
  }

  const char *start = curPtr;
  char c = *curPtr;
  auto punct = [&](TokenKind kind) {
    ++curPtr;
    return makeToken(kind, start);
  };
  switch (c) {
  case '{':
    return punct(TokenKind::LBrace);
  case '}':
    return punct(TokenKind::RBrace);
  case '(':
    return punct(TokenKind::LParen);
  case ')':
    return punct(TokenKind::RParen);
  case ',':
    return punct(TokenKind::Comma);
  case ';':
    return punct(TokenKind::Semi);
  case ':':
    return punct(TokenKind::Colon);
  case '=':
    return punct(TokenKind::Equal);
  case '"':
    return lexString(start);
  default:
    break;
  }
  if (isIdentStart(c))
    return lexIdent(start);
  if (llvm::isDigit(c))
    return lexNumber(start);
  char next = curPtr + 1 < bufEnd ? curPtr[1] : '\0';
  if (c == '.' && llvm::isDigit(next))
    return lexNumber(start);
  if (c == '-' && (llvm::isDigit(next) || next == '.'))
    return lexNumber(start);
  if (llvm::isPrint(c))
    return makeError(start, "unexpected character '" + llvm::Twine(c) + "'");
  return makeError(start, "unexpected character '\\x" +
                              llvm::utohexstr((unsigned char)c) + "'");
}

Token Lexer::lexIdent(const char *start) {
  while (curPtr < bufEnd) {
    char c = *curPtr;
    if (isIdentBody(c)) {
      ++curPtr;
      continue;
    }
    // `swwae-all`, `single-crop`: a hyphen joins two words.
    if (c == '-' && curPtr + 1 < bufEnd && llvm::isAlpha(curPtr[1])) {
      ++curPtr;
      continue;
    }
    break;
  }
  return makeToken(TokenKind::Ident, start);
}

/// Consumes digits at `p`; returns the end.
static const char *skipDigits(const char *p, const char *end) {
  while (p < end && llvm::isDigit(*p))
    ++p;
  return p;
}

Token Lexer::lexNumber(const char *start) {
  const char *p = start;
  bool negative = false;
  if (*p == '-') {
    negative = true;
    ++p;
  }
  const char *intEnd = skipDigits(p, bufEnd);
  bool hasInt = intEnd != p;
  p = intEnd;
  bool isFloat = false;
  // A fraction needs a digit after the dot, so `256..512` stays a range.
  if (p + 1 < bufEnd && *p == '.' && llvm::isDigit(p[1])) {
    isFloat = true;
    p = skipDigits(p + 1, bufEnd);
  } else if (!hasInt) {
    curPtr = p;
    return makeError(start, "malformed number");
  }
  if (p < bufEnd && (*p == 'e' || *p == 'E')) {
    const char *q = p + 1;
    if (q < bufEnd && (*q == '+' || *q == '-'))
      ++q;
    if (q < bufEnd && llvm::isDigit(*q)) {
      isFloat = true;
      p = skipDigits(q, bufEnd);
    }
  }

  // Dims: `3x224x224`.
  if (!isFloat && p + 1 < bufEnd && *p == 'x' && llvm::isDigit(p[1])) {
    if (negative) {
      curPtr = p;
      return makeError(start, "dims cannot be negative");
    }
    llvm::SmallVector<int64_t, 4> dims;
    const char *partStart = start;
    while (true) {
      const char *partEnd = skipDigits(partStart, bufEnd);
      int64_t v;
      if (StringRef(partStart, partEnd - partStart).getAsInteger(10, v)) {
        curPtr = partEnd;
        return makeError(partStart, "integer in dims is too large");
      }
      dims.push_back(v);
      if (partEnd + 1 < bufEnd && *partEnd == 'x' &&
          llvm::isDigit(partEnd[1])) {
        partStart = partEnd + 1;
        continue;
      }
      p = partEnd;
      break;
    }
    if (p < bufEnd && (isIdentBody(*p) && *p != '.')) {
      curPtr = p;
      return makeError(start, "malformed dims '" +
                                  StringRef(start, p - start + 1) + "'");
    }
    curPtr = p;
    Token tok = makeToken(TokenKind::Dims, start);
    tok.dims = std::move(dims);
    return tok;
  }

  // Range: `256..512`.
  if (!isFloat && p + 1 < bufEnd && p[0] == '.' && p[1] == '.') {
    const char *hiStart = p + 2;
    const char *hiEnd = skipDigits(hiStart, bufEnd);
    if (hiEnd == hiStart) {
      curPtr = hiStart;
      return makeError(hiStart, "expected an integer after '..'");
    }
    int64_t lo, hi;
    if (StringRef(start, p - start).getAsInteger(10, lo) ||
        StringRef(hiStart, hiEnd - hiStart).getAsInteger(10, hi)) {
      curPtr = hiEnd;
      return makeError(start, "integer in range is too large");
    }
    curPtr = hiEnd;
    if (curPtr < bufEnd && isIdentBody(*curPtr))
      return makeError(start, "malformed range");
    Token tok = makeToken(TokenKind::Range, start);
    tok.intValue = lo;
    tok.intValue2 = hi;
    return tok;
  }

  // A letter straight after a number is a typo (`3xa`, `12abc`), not two
  // tokens.
  if (p < bufEnd && (isIdentStart(*p) || *p == '.')) {
    const char *q = p;
    while (q < bufEnd && isIdentBody(*q))
      ++q;
    curPtr = q;
    return makeError(start,
                     "malformed number '" + StringRef(start, q - start) + "'");
  }

  curPtr = p;
  StringRef text(start, p - start);
  if (isFloat) {
    double v;
    if (text.getAsDouble(v) || !std::isfinite(v)) {
      return makeError(start, "number '" + text + "' is out of range");
    }
    // The trainer computes in 32-bit floats: a number beyond them would
    // become infinity there, and a non-zero one below their smallest
    // (subnormal) one, or below a double's (read as 0 here), would become 0,
    // both silently.
    const float single = static_cast<float>(v);
    if (!std::isfinite(single))
      return makeError(start, "number '" + text +
                                  "' is beyond the 32-bit floats the "
                                  "trainer computes in (at most 3.4e38)");
    StringRef mantissa =
        text.take_until([](char c) { return c == 'e' || c == 'E'; });
    if (single == 0 && mantissa.find_first_of("123456789") != StringRef::npos)
      return makeError(start, "number '" + text +
                                  "' is below the smallest 32-bit float "
                                  "(1.4e-45); it would be 0");
    Token tok = makeToken(TokenKind::Float, start);
    tok.floatValue = v;
    return tok;
  }
  int64_t v;
  if (text.getAsInteger(10, v))
    return makeError(start, "integer '" + text + "' is too large");
  Token tok = makeToken(TokenKind::Int, start);
  tok.intValue = v;
  tok.floatValue = static_cast<double>(v);
  return tok;
}

Token Lexer::lexString(const char *start) {
  std::string value;
  const char *p = start + 1;
  while (true) {
    if (p >= bufEnd || *p == '\n' || *p == '\r') {
      curPtr = p;
      return makeError(start, "unterminated string");
    }
    if (*p == '"')
      break;
    if (*p == '\\') {
      if (p + 1 < bufEnd && (p[1] == '"' || p[1] == '\\')) {
        value.push_back(p[1]);
        p += 2;
        continue;
      }
      curPtr = p;
      if (p + 1 < bufEnd && llvm::isPrint(p[1]))
        return makeError(p, "unknown escape sequence '\\" + llvm::Twine(p[1]) +
                                "' in string");
      return makeError(p, "unknown escape sequence in string");
    }
    value.push_back(*p);
    ++p;
  }
  curPtr = p + 1;
  Token tok = makeToken(TokenKind::String, start);
  tok.stringValue = std::move(value);
  return tok;
}
