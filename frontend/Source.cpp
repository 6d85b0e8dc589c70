//===- Source.cpp - Reading and locating .net source text -----------------===//
//
// Implements bounded source reads, line-end normalisation, the line table and
// the diagnostic printer declared in Source.h.
//
//===----------------------------------------------------------------------===//

#include "frontend/Source.h"

#include "runtime/io/Controls.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/ScopeExit.h"
#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/Twine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/WithColor.h"

#include <algorithm>

using namespace netc;
using llvm::Expected;
using llvm::MemoryBuffer;
using llvm::StringRef;

//===----------------------------------------------------------------------===//
// Reading
//===----------------------------------------------------------------------===//

static llvm::Error sourceError(const llvm::Twine &msg) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), msg);
}

/// "a directory", "a FIFO", ... for "it is X, not a regular file".
static StringRef describeFileType(llvm::sys::fs::file_type type) {
  using llvm::sys::fs::file_type;
  switch (type) {
  case file_type::directory_file:
    return "a directory";
  case file_type::fifo_file:
    return "a FIFO";
  case file_type::character_file:
    return "a character device";
  case file_type::block_file:
    return "a block device";
  case file_type::socket_file:
    return "a socket";
  default:
    return "a special file";
  }
}

/// Checks what status() says about an opened or about-to-be-opened file.
static llvm::Error checkStatus(const llvm::sys::fs::file_status &status) {
  if (status.type() != llvm::sys::fs::file_type::regular_file)
    return sourceError("it is " + describeFileType(status.type()) +
                       ", not a regular file");
  if (status.getSize() > kMaxSourceBytes)
    return sourceError("it is too large (" + llvm::Twine(status.getSize()) +
                       " bytes; at most " + llvm::Twine(kMaxSourceBytes) + ")");
  return llvm::Error::success();
}

/// Reads standard input, in chunks, up to kMaxSourceBytes.
static Expected<std::unique_ptr<MemoryBuffer>> readStdin() {
  constexpr size_t kChunk = 1 << 16;
  llvm::SmallString<0> data;
  llvm::sys::fs::file_t in = llvm::sys::fs::getStdinHandle();
  while (true) {
    size_t size = data.size();
    data.resize_for_overwrite(size + kChunk);
    Expected<size_t> n = llvm::sys::fs::readNativeFile(
        in, llvm::MutableArrayRef<char>(data.data() + size, kChunk));
    if (!n)
      return n.takeError();
    data.truncate(size + *n);
    if (*n == 0)
      break;
    if (data.size() > kMaxSourceBytes)
      return sourceError("standard input is too large (more than " +
                         llvm::Twine(kMaxSourceBytes) + " bytes)");
  }
  return MemoryBuffer::getMemBufferCopy(data, "<stdin>");
}

Expected<std::unique_ptr<MemoryBuffer>> netc::readSourceFile(StringRef path) {
  if (path == "-") {
    Expected<std::unique_ptr<MemoryBuffer>> buffer = readStdin();
    if (!buffer)
      return buffer.takeError();
    return normalizeSource(std::move(*buffer));
  }
  // Check the type before opening: opening a FIFO blocks until a writer
  // comes. The opened file is checked again, in case it was replaced.
  llvm::sys::fs::file_status status;
  if (std::error_code ec = llvm::sys::fs::status(path, status))
    return llvm::errorCodeToError(ec);
  if (llvm::Error err = checkStatus(status))
    return err;
  Expected<llvm::sys::fs::file_t> file =
      llvm::sys::fs::openNativeFileForRead(path);
  if (!file)
    return file.takeError();
  auto close = llvm::make_scope_exit([&] { llvm::sys::fs::closeFile(*file); });
  if (std::error_code ec = llvm::sys::fs::status(*file, status))
    return llvm::errorCodeToError(ec);
  if (llvm::Error err = checkStatus(status))
    return err;
  llvm::ErrorOr<std::unique_ptr<MemoryBuffer>> buffer =
      MemoryBuffer::getOpenFile(*file, path, status.getSize());
  if (!buffer)
    return llvm::errorCodeToError(buffer.getError());
  return normalizeSource(std::move(*buffer));
}

std::unique_ptr<MemoryBuffer>
netc::normalizeSource(std::unique_ptr<MemoryBuffer> buffer) {
  StringRef text = buffer->getBuffer();
  bool bom = text.starts_with("\xEF\xBB\xBF");
  bool loneCR = false;
  for (size_t i = text.find('\r'); i != StringRef::npos && !loneCR;
       i = text.find('\r', i + 1))
    loneCR = i + 1 == text.size() || text[i + 1] != '\n';
  if (!bom && !loneCR)
    return buffer;
  std::string out = text.drop_front(bom ? 3 : 0).str();
  for (size_t i = 0, e = out.size(); i != e; ++i)
    if (out[i] == '\r' && (i + 1 == e || out[i + 1] != '\n'))
      out[i] = '\n';
  return MemoryBuffer::getMemBufferCopy(out, buffer->getBufferIdentifier());
}

//===----------------------------------------------------------------------===//
// Lines and columns
//===----------------------------------------------------------------------===//

std::pair<unsigned, unsigned> LineTable::getLineAndColumn(llvm::SMLoc loc,
                                                          unsigned bufferId) {
  if (!bufferId)
    bufferId = srcMgr.FindBufferContainingLoc(loc);
  if (!bufferId)
    return {0, 0};
  StringRef text = srcMgr.getMemoryBuffer(bufferId)->getBuffer();
  const std::vector<size_t> &starts = linesOf(bufferId);
  size_t offset = loc.getPointer() - text.data();
  auto next = std::upper_bound(starts.begin(), starts.end(), offset);
  return {unsigned(next - starts.begin()),
          unsigned(offset - *std::prev(next) + 1)};
}

llvm::SMLoc LineTable::getLoc(unsigned bufferId, unsigned line,
                              unsigned column) {
  if (!bufferId || bufferId > srcMgr.getNumBuffers())
    return {};
  StringRef text = srcMgr.getMemoryBuffer(bufferId)->getBuffer();
  const std::vector<size_t> &starts = linesOf(bufferId);
  // The column may point just past the line's last byte, not beyond.
  size_t end = line < starts.size() ? starts[line] - 1 : text.size();
  if (line == 0 || line > starts.size() || column == 0 ||
      starts[line - 1] + column - 1 > end)
    return {};
  return llvm::SMLoc::getFromPointer(text.data() + starts[line - 1] + column -
                                     1);
}

const std::vector<size_t> &LineTable::linesOf(unsigned bufferId) {
  std::vector<size_t> &starts = lineStarts[bufferId];
  if (starts.empty()) {
    StringRef text = srcMgr.getMemoryBuffer(bufferId)->getBuffer();
    starts.push_back(0);
    for (size_t i = text.find('\n'); i != StringRef::npos;
         i = text.find('\n', i + 1))
      starts.push_back(i + 1);
  }
  return starts;
}

//===----------------------------------------------------------------------===//
// Diagnostics
//===----------------------------------------------------------------------===//

/// `text` with each control character written as \xNN per byte, as netrun
/// prints names: a model's text, or an import's path, can hold an escape
/// sequence that would rewrite the screen. `column`, if given, moves to
/// where its byte lands.
static std::string escapeControls(StringRef text, bool keepNewlines,
                                  int *column = nullptr) {
  std::string out;
  int moved = column ? *column : -1;
  for (size_t i = 0; i < text.size();) {
    size_t n = io::controlLength(text, i, keepNewlines);
    if (column && int(i) < *column)
      moved += n ? 3 * int(n) : 0;
    if (!n) {
      out += text[i++];
      continue;
    }
    for (; n > 0; --n, ++i) {
      auto u = static_cast<unsigned char>(text[i]);
      out += "\\x";
      out += "0123456789ABCDEF"[u >> 4];
      out += "0123456789ABCDEF"[u & 15];
    }
  }
  if (column)
    *column = moved;
  return out;
}

static bool hasControls(StringRef text, bool keepNewlines) {
  for (size_t i = 0; i < text.size(); ++i)
    if (io::controlLength(text, i, keepNewlines))
      return true;
  return false;
}

/// "Included from FILE:LINE:" for each import that led to `includeLoc`,
/// outermost first, as SourceMgr prints it when it has no handler.
static void printIncludeStack(const llvm::SourceMgr &srcMgr,
                              llvm::SMLoc includeLoc, llvm::raw_ostream &os) {
  if (!includeLoc.isValid())
    return;
  unsigned id = srcMgr.FindBufferContainingLoc(includeLoc);
  if (!id)
    return;
  printIncludeStack(srcMgr, srcMgr.getParentIncludeLoc(id), os);
  os << "Included from "
     << escapeControls(srcMgr.getMemoryBuffer(id)->getBufferIdentifier(), false)
     << ":" << srcMgr.FindLineNumber(includeLoc, id) << ":\n";
}

void netc::printDiagnostic(const llvm::SMDiagnostic &diag,
                           llvm::raw_ostream &os) {
  if (const llvm::SourceMgr *srcMgr = diag.getSourceMgr())
    if (unsigned id = diag.getLoc().isValid()
                          ? srcMgr->FindBufferContainingLoc(diag.getLoc())
                          : 0)
      printIncludeStack(*srcMgr, srcMgr->getParentIncludeLoc(id), os);
  StringRef line = diag.getLineContents();
  const bool located = diag.getLineNo() != -1 && diag.getColumnNo() != -1;
  // A very long line (a generated file; a 12 MB one-line model) is shown as
  // a window around the column, not echoed whole with a caret line as long.
  // Control characters are shown escaped, in the line (the caret moved
  // with them), the message and the file name; the header keeps the
  // file's own column.
  constexpr size_t kShown = 80, kLongLine = 4 * kShown;
  const bool controls = hasControls(line, false) ||
                        hasControls(diag.getMessage(), true) ||
                        hasControls(diag.getFilename(), false);
  if (controls || (line.size() > kLongLine && located)) {
    std::string file = escapeControls(diag.getFilename(), false);
    std::string message = escapeControls(diag.getMessage(), true);
    std::string where = file;
    if (diag.getLineNo() != -1)
      where += ":" + std::to_string(diag.getLineNo());
    if (located)
      where += ":" + std::to_string(diag.getColumnNo() + 1);
    llvm::SMDiagnostic(where, diag.getKind(), message).print(nullptr, os);
    if (!located)
      return;
    int column = diag.getColumnNo();
    const std::string escaped = escapeControls(line, false, &column);
    StringRef text = escaped;
    const size_t col = std::min(text.size(), size_t(column));
    size_t from = 0, to = text.size();
    if (text.size() > kLongLine) {
      from = col > kShown ? col - kShown : 0;
      to = std::min(text.size(), col + kShown);
    }
    // Whole UTF-8 characters only.
    while (from > 0 && (static_cast<unsigned char>(text[from]) & 0xC0) == 0x80)
      --from;
    while (to < text.size() &&
           (static_cast<unsigned char>(text[to]) & 0xC0) == 0x80)
      ++to;
    std::string shown = (from ? "..." : "") + text.slice(from, to).str() +
                        (to < text.size() ? "..." : "");
    for (char &c : shown)
      if (c == '\t')
        c = ' ';
    unsigned screenCol = from ? 3 : 0;
    for (size_t i = from; i != col; ++i)
      if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80)
        ++screenCol;
    os << shown << "\n";
    llvm::WithColor(os, llvm::raw_ostream::GREEN, /*Bold=*/true)
        << std::string(screenCol, ' ') << "^\n";
    return;
  }
  bool ascii = llvm::none_of(line, [](char c) { return c & 0x80; });
  // LLVM prints such a line but no caret under it (it cannot place ranges
  // there); the frontend has no ranges, only the caret.
  diag.print(nullptr, os);
  if (ascii || diag.getLineNo() == -1 || diag.getColumnNo() == -1)
    return;
  // Follow LLVM's printing of the line: a tab advances to the next multiple
  // of 8 bytes; on screen, a UTF-8 continuation byte takes no column.
  constexpr unsigned kTabStop = 8;
  size_t end = std::min(line.size(), size_t(diag.getColumnNo()));
  unsigned outCol = 0, screenCol = 0;
  for (size_t i = 0; i != end; ++i) {
    if (line[i] == '\t') {
      do {
        ++outCol;
        ++screenCol;
      } while (outCol % kTabStop != 0);
      continue;
    }
    ++outCol;
    if ((static_cast<unsigned char>(line[i]) & 0xC0) != 0x80)
      ++screenCol;
  }
  llvm::WithColor(os, llvm::raw_ostream::GREEN, /*Bold=*/true)
      << std::string(screenCol, ' ') << "^\n";
}

void netc::setDiagnosticPrinter(llvm::SourceMgr &srcMgr,
                                llvm::raw_ostream &os) {
  srcMgr.setDiagHandler(
      [](const llvm::SMDiagnostic &diag, void *context) {
        printDiagnostic(diag, *static_cast<llvm::raw_ostream *>(context));
      },
      &os);
}
