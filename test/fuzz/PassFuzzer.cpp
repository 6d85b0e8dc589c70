//===- PassFuzzer.cpp - libFuzzer harness for the netc pass pipeline ------===//
//
// Parses arbitrary bytes as MLIR with the net and func dialects (as
// netc-opt does), and runs what is left of netc's pipeline on a module that
// parses and verifies. The stage is read off the IR:
//   a function with net.arena_bytes  (-emit=planned)   buildPlan
//   a net.sgd_update or *_grad op    (-emit=autodiff)  the step and storage
//                                                      passes, buildPlan
//   a function with net.phase or net.eval, or a "dec.*" macro-layer
//                      (-emit=phases, -emit=mirrored)  autodiff, the step
//                                                      and storage passes,
//                                                      buildPlan
//   otherwise       (-emit=mlir-raw, -emit=mlir)       infer-shapes, phases,
//                                                      mirror, autodiff, ...
// where the step passes (schedule, dense-eval) and the storage passes
// (precision, plan-memory) come from netc's own list (addStepPasses,
// addStoragePasses in passes/Pipeline.cpp); buildPlan is net-emit-plan's
// work, kept in memory (the JSON is printed to a null stream). The pass
// manager verifies the IR after every pass.
//
// Each input gets a fresh MLIRContext (threading off), so nothing it interns
// outlives it, and a diagnostic handler that drops everything: a diagnostic
// is the expected outcome for almost every input. A crash, an assertion (our
// code and the MLIR/LLVM headers it instantiates are built with -UNDEBUG), a
// sanitizer report, a hang (-timeout) or a blow-up (-rss_limit_mb) is a bug.
// Nothing here writes files.
//
// With NETC_FUZZ_VERBOSE set, the harness prints the stage it chose, every
// diagnostic and the outcome on stderr (to read a reproducer; never while
// fuzzing).
//
//===----------------------------------------------------------------------===//

#include "dialect/NetDialect.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"

#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>

namespace {

const bool verbose = std::getenv("NETC_FUZZ_VERBOSE") != nullptr;

enum class Stage { Network, Mirrored, Autodiff, Planned };

Stage stageOf(mlir::ModuleOp module) {
  Stage stage = Stage::Network;
  auto atLeast = [&](Stage s) {
    if (s > stage)
      stage = s;
  };
  module.walk([&](mlir::Operation *op) {
    if (auto func = llvm::dyn_cast<mlir::func::FuncOp>(op)) {
      if (func->hasAttr("net.arena_bytes"))
        atLeast(Stage::Planned);
      if (func->hasAttr("net.phase") || func->hasAttr("net.eval"))
        atLeast(Stage::Mirrored);
      return;
    }
    llvm::StringRef name = op->getName().getStringRef();
    if (name == "net.sgd_update" ||
        (name.starts_with("net.") && name.ends_with("_grad")))
      atLeast(Stage::Autodiff);
    if (name == "net.macro")
      for (const mlir::NamedAttribute &attr : op->getAttrs())
        if (auto str = llvm::dyn_cast<mlir::StringAttr>(attr.getValue()))
          if (str.getValue().starts_with("dec."))
            atLeast(Stage::Mirrored);
  });
  return stage;
}

const char *stageName(Stage stage) {
  switch (stage) {
  case Stage::Network:
    return "network";
  case Stage::Mirrored:
    return "mirrored";
  case Stage::Autodiff:
    return "autodiff";
  case Stage::Planned:
    return "planned";
  }
  return "?";
}

const mlir::DialectRegistry &registry() {
  static const mlir::DialectRegistry *r = [] {
    auto *reg = new mlir::DialectRegistry;
    reg->insert<netc::net::NetDialect, mlir::func::FuncDialect>();
    return reg;
  }();
  return *r;
}

} // namespace

// LLVM's BumpPtrAllocator poisons the free part of each slab when built with
// ASan and unpoisons what it hands out. Its inline functions are compiled
// both here (instrumented) and in the MLIR libraries (not), and the linker
// keeps one copy: a slab poisoned by our copy is then handed out by the
// libraries' inlined copy without being unpoisoned, a false use-after-poison
// in MLIRContext's constructor. Ignore manual poisoning; ASan's own checks
// stay on.
extern "C" const char *__asan_default_options() {
  return "allow_user_poisoning=0";
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  mlir::MLIRContext context(registry(), mlir::MLIRContext::Threading::DISABLED);
  context.printOpOnDiagnostic(false);
  context.printStackTraceOnDiagnostic(false);
  mlir::ScopedDiagnosticHandler drop(&context, [](mlir::Diagnostic &diag) {
    if (verbose)
      llvm::errs() << diag.getLocation() << ": " << diag << "\n";
    return mlir::success();
  });

  llvm::SourceMgr srcMgr;
  srcMgr.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(
          llvm::StringRef(reinterpret_cast<const char *>(data), size),
          "fuzz.mlir"),
      llvm::SMLoc());
  mlir::OwningOpRef<mlir::ModuleOp> module =
      mlir::parseSourceFile<mlir::ModuleOp>(srcMgr,
                                            mlir::ParserConfig(&context));
  if (!module) { // includes a failed verification
    if (verbose)
      llvm::errs() << "netc-passes-fuzzer: not valid IR\n";
    return 0;
  }

  Stage stage = stageOf(*module);
  if (verbose)
    llvm::errs() << "netc-passes-fuzzer: stage " << stageName(stage) << "\n";
  mlir::PassManager pm(&context);
  if (stage == Stage::Network) {
    pm.addPass(netc::createInferShapes());
    pm.addPass(netc::createPhases());
    pm.addPass(netc::createMirror());
  }
  if (stage <= Stage::Mirrored)
    pm.addPass(netc::createAutodiff());
  if (stage <= Stage::Autodiff) { // netc's order (and netc's passes)
    netc::addStepPasses(pm);
    netc::addStoragePasses(pm);
  }
  if (mlir::failed(pm.run(*module))) {
    if (verbose)
      llvm::errs() << "netc-passes-fuzzer: a pass failed\n";
    return 0;
  }

  mlir::FailureOr<llvm::json::Value> plan = netc::buildPlan(*module);
  if (mlir::succeeded(plan))
    llvm::nulls() << llvm::formatv("{0:2}", *plan);
  if (verbose)
    llvm::errs() << "netc-passes-fuzzer: "
                 << (mlir::succeeded(plan) ? "plan built" : "no plan") << "\n";
  return 0;
}
