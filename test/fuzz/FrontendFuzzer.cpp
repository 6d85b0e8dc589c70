//===- FrontendFuzzer.cpp - libFuzzer harness for the .net frontend -------===//
//
// Feeds arbitrary bytes to the lexer, the parser and Sema. Each input gets a
// fresh SourceMgr whose diagnostics go through netc's printer (the source
// line, its escaping of control characters, the caret's column) into a null
// stream, so errors (the expected outcome for almost every input) print
// nothing. A
// crash, a sanitizer report, a hang (-timeout) or a blow-up (-rss_limit_mb) is
// a bug: the frontend must reject any input with a diagnostic.
//
// `import` statements resolve relative to the current directory (the buffer is
// named "fuzz.net"); run.sh runs the fuzzer from an empty directory. Nothing in
// the frontend writes files.
//
//===----------------------------------------------------------------------===//

#include "frontend/Frontend.h"
#include "frontend/Source.h"

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  llvm::SourceMgr srcMgr;
  netc::setDiagnosticPrinter(srcMgr, llvm::nulls());
  llvm::StringRef contents(reinterpret_cast<const char *>(data), size);
  netc::ProgramPtr program =
      netc::parseProgramFromBuffer(srcMgr, "fuzz.net", contents);
  if (program)
    (void)netc::buildModel(*program, srcMgr);
  return 0;
}
