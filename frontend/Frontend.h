//===- Frontend.h - Reading .net files --------------------------*- C++ -*-===//
//
// The entry points of the language front half. Every error is reported through
// the SourceMgr as `file:line:col: error: message`, the source line and a
// caret, and the call returns null/nullopt; nothing here asserts on user input.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_FRONTEND_FRONTEND_H
#define NETC_FRONTEND_FRONTEND_H

#include "frontend/Model.h"

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace netc {
namespace ast {
struct Program;
} // namespace ast

/// Frees an AST; lets callers hold a Program without including AST.h.
struct ProgramDeleter {
  void operator()(ast::Program *program) const;
};
using ProgramPtr = std::unique_ptr<ast::Program, ProgramDeleter>;

/// Lexes and parses `path` (`-`: stdin) and, transitively, every file it
/// imports (relative to the importing file, then each of `includeDirs`).
/// Every file is read through readSourceFile (Source.h): regular files of
/// bounded size only. Import cycles and missing files are errors at the
/// `import` statement. All buffers are added to `srcMgr`, which must outlive
/// the returned program and the Model made from it.
ProgramPtr parseProgram(llvm::SourceMgr &srcMgr, llvm::StringRef path,
                        const std::vector<std::string> &includeDirs = {});

/// Same, from a buffer already in memory (used by the fuzz harness).
ProgramPtr parseProgramFromBuffer(llvm::SourceMgr &srcMgr,
                                  llvm::StringRef bufferName,
                                  llvm::StringRef contents);

/// Prints the AST (blocks, calls and repeats unexpanded) for `netc -emit=ast`.
void dumpProgram(const ast::Program &program, llvm::raw_ostream &os);

/// Sema: expands blocks, `repeat` and imports into a flat Model, resolves every
/// value and name, and checks everything that can be checked without shapes.
std::optional<Model> buildModel(const ast::Program &program,
                                llvm::SourceMgr &srcMgr);

/// The seven model names of the paper, in order (`none` first).
llvm::ArrayRef<llvm::StringRef> augmentVariants();

/// True if `name` is one of augmentVariants().
bool isAugmentVariant(llvm::StringRef name);

/// The arithmetic a trainer may be compiled for (`precision` in `train`,
/// `netc --precision`): fp32, tf32, bf16.
llvm::ArrayRef<llvm::StringRef> precisions();

/// True if `name` is one of precisions().
bool isPrecision(llvm::StringRef name);

} // namespace netc

#endif // NETC_FRONTEND_FRONTEND_H
