//===- Source.h - Reading and locating .net source text ---------*- C++ -*-===//
//
// Everything the front half does with source text before and after lexing:
// reading a file (regular files only, bounded in size, so `/dev/zero` or a
// FIFO is an error rather than a hang), normalising line ends and the UTF-8
// byte order mark, turning a location into a line and column in time
// independent of the line's length, and printing a diagnostic with a caret
// even under a line with non-ASCII text.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_FRONTEND_SOURCE_H
#define NETC_FRONTEND_SOURCE_H

#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SMLoc.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace netc {

/// Largest `.net` file (main file, import or stdin) netc reads: far beyond
/// any real model, small enough that a mistaken path cannot exhaust memory.
constexpr uint64_t kMaxSourceBytes = uint64_t(64) << 20;

/// Reads the source file `path` (`-` is stdin) for lexing. Anything but a
/// regular file, or a file larger than kMaxSourceBytes, is an error whose
/// message says what is wrong (without the path, which callers print). The
/// buffer is normalised as by normalizeSource and named `path`.
llvm::Expected<std::unique_ptr<llvm::MemoryBuffer>>
readSourceFile(llvm::StringRef path);

/// Drops a leading UTF-8 byte order mark and turns every lone CR into LF, so
/// that CR, LF and CRLF each end one line for the lexer, llvm::SourceMgr and
/// MLIR locations alike. Returns `buffer` itself when there is nothing to do.
std::unique_ptr<llvm::MemoryBuffer>
normalizeSource(std::unique_ptr<llvm::MemoryBuffer> buffer);

/// 1-based line and byte column of locations in a SourceMgr's buffers. Each
/// buffer's line starts are found once, so a lookup is a binary search; the
/// SourceMgr's own getLineAndColumn scans back to the start of the line,
/// which made compile time quadratic in the length of a line.
class LineTable {
public:
  explicit LineTable(const llvm::SourceMgr &srcMgr) : srcMgr(srcMgr) {}

  /// The line and column of `loc` in buffer `bufferId` (0: find it).
  /// {0, 0} for a location in no buffer.
  std::pair<unsigned, unsigned> getLineAndColumn(llvm::SMLoc loc,
                                                 unsigned bufferId = 0);

  /// The location at `line` and `column` of buffer `bufferId`: the inverse
  /// of getLineAndColumn. An invalid one where there is no such place.
  llvm::SMLoc getLoc(unsigned bufferId, unsigned line, unsigned column);

private:
  /// The offsets at which the lines of buffer `bufferId` start.
  const std::vector<size_t> &linesOf(unsigned bufferId);

  const llvm::SourceMgr &srcMgr;
  /// Per buffer, the offset at which each line starts.
  llvm::DenseMap<unsigned, std::vector<size_t>> lineStarts;
};

/// Prints `diag` as SourceMgr does without a handler (the chain of imports,
/// then SMDiagnostic::print), but also draws the caret under
/// lines with non-ASCII bytes (LLVM omits it there), counting each UTF-8
/// character as one column.
void printDiagnostic(const llvm::SMDiagnostic &diag, llvm::raw_ostream &os);

/// Makes `srcMgr` report every diagnostic through printDiagnostic on `os`,
/// which must outlive it.
void setDiagnosticPrinter(llvm::SourceMgr &srcMgr,
                          llvm::raw_ostream &os = llvm::errs());

} // namespace netc

#endif // NETC_FRONTEND_SOURCE_H
