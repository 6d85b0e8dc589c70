//===- netc.cpp - The netc compiler driver --------------------------------===//
//
// netc model.net [-emit=STAGE] [-o FILE] [--augment=VARIANT]
//      [--precision=fp32|tf32|bf16] [--layout=nchw|nhwc] [-I DIR]
//
// Runs the pipeline up to STAGE and prints it. Every error is reported as
// `file:line:col: error: message` with the source line and a caret; the exit
// code is 1 on any error and 0 otherwise.
//
//===----------------------------------------------------------------------===//

#include "dialect/NetDialect.h"
#include "frontend/Frontend.h"
#include "frontend/MLIRGen.h"
#include "frontend/Sema.h"
#include "frontend/Source.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/AsmState.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/ADT/Statistic.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/WithColor.h"

using namespace llvm;

namespace {

/// The stages `-emit` can stop after, in pipeline order.
enum class Stage {
  AST,
  MLIRRaw,
  MLIR,
  Mirrored,
  Phases,
  Autodiff,
  Planned,
  Plan,
  Trainer
};

cl::OptionCategory netcCategory("netc options");

cl::opt<std::string> inputFile(cl::Positional, cl::desc("<model.net>"),
                               cl::Required, cl::cat(netcCategory));
cl::opt<std::string>
    outputFile("o",
               cl::desc("Output file (default: stdout), or the trainer "
                        "directory (default: <model>.trainer)"),
               cl::value_desc("path"), cl::init("-"), cl::cat(netcCategory));
cl::opt<Stage> emit(
    "emit", cl::desc("Stage to stop after"), cl::init(Stage::Trainer),
    cl::values(
        clEnumValN(Stage::AST, "ast", "the parsed program, unexpanded"),
        clEnumValN(Stage::MLIRRaw, "mlir-raw",
                   "the net dialect as generated, before shape inference"),
        clEnumValN(Stage::MLIR, "mlir", "the net dialect with inferred shapes"),
        clEnumValN(Stage::Mirrored, "mirrored",
                   "the network augmented with its decoder and losses"),
        clEnumValN(Stage::Phases, "phases",
                   "one step function per phase, mirrored, and eval"),
        clEnumValN(Stage::Autodiff, "autodiff",
                   "step functions with gradients and SGD updates"),
        clEnumValN(Stage::Planned, "planned",
                   "with each value's storage and arena offsets"),
        clEnumValN(Stage::Plan, "plan", "the trainer's plan.json"),
        clEnumValN(Stage::Trainer, "trainer",
                   "write the trainer directory (default)")),
    cl::cat(netcCategory));
cl::opt<int64_t> statsBatch("batch",
                            cl::desc("With --stats: plan every program for "
                                     "this batch size (default: each "
                                     "phase's own); the output is unchanged"),
                            cl::init(0), cl::cat(netcCategory));
cl::opt<std::string>
    augment("augment",
            cl::desc("Override the file's augment variant: none, sae-first, "
                     "sae-all, sae-layerwise, swwae-first, swwae-all, "
                     "swwae-layerwise"),
            cl::value_desc("variant"), cl::cat(netcCategory));
cl::opt<std::string>
    precision("precision",
              cl::desc("Override the file's precision: fp32, tf32 or bf16 "
                       "(bf16 activations and gradients in NHWC, fp32 "
                       "weights and losses)"),
              cl::value_desc("precision"), cl::cat(netcCategory));
cl::opt<std::string>
    layout("layout",
           cl::desc("The maps' layout: nhwc or nchw (default: nhwc for tf32 "
                    "and bf16, which the GPU's tensor cores want; nchw for "
                    "fp32, which the cpu backend takes)"),
           cl::value_desc("layout"), cl::cat(netcCategory));
cl::opt<bool> dataParallel(
    "data-parallel",
    cl::desc("Average the gradients over the ranks of a data-parallel run "
             "(mpirun -np N netrun train ...) before each update"),
    cl::cat(netcCategory));
cl::opt<double> bucketMb(
    "bucket-mb",
    cl::desc("With --data-parallel: gradients are all-reduced in buckets of "
             "up to this many MiB (default 25)"),
    cl::init(25.0), cl::cat(netcCategory));
cl::list<std::string> includeDirs("I", cl::desc("Directory to search imports"),
                                  cl::value_desc("dir"), cl::Prefix,
                                  cl::cat(netcCategory));

/// The passes up to `last`; the memory plan (at `batch`, 0: each phase's)
/// after the storage of each value is chosen; with `bucketMb`, gradients
/// are all-reduced for data-parallel training in buckets of that size.
void addPipeline(mlir::PassManager &pm, Stage last, int64_t batch,
                 std::optional<double> bucketMb) {
  if (last >= Stage::MLIR)
    pm.addPass(netc::createInferShapes());
  if (last >= Stage::Phases)
    pm.addPass(netc::createPhases());
  if (last >= Stage::Mirrored)
    pm.addPass(netc::createMirror());
  if (last >= Stage::Autodiff) {
    pm.addPass(netc::createAutodiff());
    netc::addStepPasses(pm, bucketMb);
  }
  if (last >= Stage::Planned)
    netc::addStoragePasses(pm, batch);
}

int fail(const Twine &message) {
  WithColor::error(errs(), "netc") << message << "\n";
  return 1;
}

/// Keeps `output` when every byte reached it; otherwise says why (a full
/// disk, a closed pipe) instead of LLVM's fatal "IO failure on output
/// stream", and the half-written file is removed.
int finish(ToolOutputFile &output, StringRef name) {
  raw_fd_ostream &os = output.os();
  os.flush();
  if (os.has_error()) {
    std::error_code ec = os.error();
    os.clear_error();
    return fail("cannot write " +
                (name == "-" ? Twine("to standard output") : Twine(name)) +
                ": " + ec.message());
  }
  output.keep();
  return 0;
}

} // namespace

static int compile(int argc, char **argv);

int main(int argc, char **argv) {
  int status = compile(argc, argv);
  // What went to standard output (--stats, "netc: wrote"): a failed write
  // is an error, not LLVM's fatal report when outs() is destroyed.
  outs().flush();
  if (outs().has_error()) {
    std::error_code ec = outs().error();
    outs().clear_error();
    return fail("cannot write to standard output: " + ec.message());
  }
  return status;
}

static int compile(int argc, char **argv) {
  InitLLVM init(argc, argv);
  mlir::registerAsmPrinterCLOptions();
  mlir::registerMLIRContextCLOptions();
  mlir::registerPassManagerCLOptions();
  // LLVM registers hundreds of options of its own; --help-hidden shows them.
  cl::HideUnrelatedOptions(netcCategory);
  cl::ParseCommandLineOptions(
      argc, argv,
      "netc: compiles a .net model into a classifier augmented with a "
      "reconstructive decoder\n\n"
      "  netc model.net -o model.trainer     write the trainer for netrun\n"
      "  netc model.net -emit=mirrored       print the augmented network\n"
      "  netc model.net --stats [--batch N]  print each program's peak "
      "activation memory\n");

  // LLVM lets a later occurrence of an option replace an earlier one:
  // `-o a -o b` would write b alone, silently. netc's own options (not the
  // -I list) are given once, and a file name is never empty.
  for (const auto &entry : cl::getRegisteredOptions()) {
    const cl::Option *o = entry.getValue();
    const bool list = o->getNumOccurrencesFlag() == cl::ZeroOrMore ||
                      o->getNumOccurrencesFlag() == cl::OneOrMore;
    if (o->getNumOccurrences() > 1 && !list &&
        llvm::is_contained(o->Categories, &netcCategory))
      return fail((o->ArgStr.size() > 1 ? "--" : "-") + o->ArgStr +
                  " is given twice");
  }
  if (inputFile.empty())
    return fail("the model file's name is empty");
  if (outputFile.empty())
    return fail("-o needs a file or directory name, got an empty one");
  // An empty value (a script's unset variable) is not "not given".
  for (cl::opt<std::string> *o : {&augment, &precision, &layout})
    if (o->getNumOccurrences() && o->empty())
      return fail("--" + o->ArgStr + " needs a value, got an empty one");

  if (!augment.empty() && !netc::isAugmentVariant(augment)) {
    std::string known;
    for (StringRef v : netc::augmentVariants())
      known += (known.empty() ? "" : ", ") + v.str();
    return fail("unknown augmentation variant '" + augment +
                "' for --augment; expected one of " + known);
  }

  if (!precision.empty() && !netc::isPrecision(precision))
    return fail("unknown precision '" + precision +
                "' for --precision; expected fp32, tf32 or bf16");

  if (!layout.empty() && layout != "nchw" && layout != "nhwc")
    return fail("unknown layout '" + layout +
                "' for --layout; expected nchw or nhwc");

  // 0 is the option's "not given", which the user cannot mean.
  if ((statsBatch.getNumOccurrences() && statsBatch == 0) || statsBatch < 0 ||
      statsBatch > netc::sema::kMaxBatch)
    return fail("--batch must be in [1, " + Twine(netc::sema::kMaxBatch) +
                "], got " + Twine(statsBatch));

  if (!(bucketMb > 0) || bucketMb > netc::sema::kMaxBucketMb)
    return fail("--bucket-mb must be in (0, 1048576] MiB, got " +
                llvm::formatv("{0}", bucketMb.getValue()).str());

  SourceMgr srcMgr;
  // Carets under lines with non-ASCII text too.
  netc::setDiagnosticPrinter(srcMgr);
  std::vector<std::string> dirs(includeDirs.begin(), includeDirs.end());
  netc::ProgramPtr program = netc::parseProgram(srcMgr, inputFile, dirs);
  if (!program)
    return 1;

  std::string error;
  std::unique_ptr<ToolOutputFile> output;
  if (outputFile != "-" && sys::fs::equivalent(inputFile, outputFile))
    return fail("-o " + outputFile +
                " is the model file itself; name "
                "another output");
  if (emit != Stage::Trainer) {
    output = mlir::openOutputFile(outputFile, &error);
    if (!output)
      return fail(error);
  }

  if (emit == Stage::AST) {
    netc::dumpProgram(*program, output->os());
    return finish(*output, outputFile);
  }

  std::optional<netc::Model> model = netc::buildModel(*program, srcMgr);
  if (!model)
    return 1;

  // `--data-parallel` or the train section's `data-parallel`; the command
  // line's bucket size wins over the file's.
  std::optional<double> dataParallelMb;
  if (dataParallel || model->train.dataParallel)
    dataParallelMb = bucketMb.getNumOccurrences()
                         ? bucketMb.getValue()
                         : model->train.bucketMb.value_or(bucketMb.getValue());
  else if (bucketMb.getNumOccurrences())
    return fail("--bucket-mb sizes the gradient buckets of data-parallel "
                "training, which neither --data-parallel nor the train "
                "section asks for");

  mlir::MLIRContext context;
  // Errors point at the .net text; the IR of the op is not for the user.
  context.printOpOnDiagnostic(false);
  mlir::SourceMgrDiagnosticHandler diagnostics(srcMgr, &context);
  // An error with no place in the model (the output cannot be written) is
  // netc's own, as the command line's are; the later handler runs first.
  context.getDiagEngine().registerHandler(
      [](mlir::Diagnostic &d) -> mlir::LogicalResult {
        if (!isa<mlir::UnknownLoc>(d.getLocation()))
          return mlir::failure();
        auto print = [](mlir::DiagnosticSeverity s) -> raw_ostream & {
          switch (s) {
          case mlir::DiagnosticSeverity::Error:
            return WithColor::error(errs(), "netc");
          case mlir::DiagnosticSeverity::Warning:
            return WithColor::warning(errs(), "netc");
          default:
            return WithColor::note(errs(), "netc");
          }
        };
        print(d.getSeverity()) << d.str() << "\n";
        for (const mlir::Diagnostic &n : d.getNotes())
          print(n.getSeverity()) << n.str() << "\n";
        return mlir::success();
      });
  mlir::OwningOpRef<mlir::ModuleOp> module = netc::mlirGen(context, *model);
  if (!module)
    return 1;

  // The variant is chosen before any pass: net-phases needs it too.
  if (!augment.empty() && failed(netc::overrideVariant(*module, augment)))
    return 1;
  if (augment.empty())
    netc::warnIdleSettings(*module);
  // Like --augment, --precision wins over the file's `precision`.
  if (!precision.empty())
    (*module)->setAttr("net.precision",
                       mlir::StringAttr::get(&context, precision));
  if (!layout.empty()) {
    // A command-line mistake is netc's error, not one at the network's line
    // (net-precision's check, for netc-opt, can only point there).
    auto chosen = (*module)->getAttrOfType<mlir::StringAttr>("net.precision");
    if (layout == "nchw" && chosen && chosen.getValue() == "bf16")
      return fail(
          Twine("--layout=nchw: bf16 plans keep their maps NHWC (the "
                "precision is bf16 ") +
          (precision.empty() ? "by the train section" : "by --precision") +
          "); NCHW is for fp32 and tf32");
    (*module)->setAttr("net.layout", mlir::StringAttr::get(&context, layout));
  }

  // `--stats` is LLVM's own flag (it cannot be registered twice); netc
  // answers it with the memory plan's peak per program, planned on a copy
  // of the module so `--batch` never changes what is written.
  if (llvm::AreStatisticsEnabled()) {
    mlir::OwningOpRef<mlir::ModuleOp> copy = module->clone();
    mlir::PassManager statsPm(&context);
    addPipeline(statsPm, Stage::Planned, statsBatch, dataParallelMb);
    if (failed(statsPm.run(*copy)))
      return 1;
    for (auto func : copy->getOps<mlir::func::FuncOp>())
      if (auto bytes =
              func->getAttrOfType<mlir::IntegerAttr>("net.arena_bytes"))
        outs() << formatv(
            "{0,-24} batch {1,4}  peak activations {2,8:f1} MiB\n",
            func.getSymName(),
            func->getAttrOfType<mlir::IntegerAttr>("net.batch").getInt(),
            bytes.getInt() / 1048576.0);
    // A question about memory writes nothing unless an output is named.
    if (emit == Stage::Trainer && !outputFile.getNumOccurrences())
      return 0;
  } else if (statsBatch != 0) {
    return fail("--batch only applies to --stats");
  }

  mlir::PassManager pm(&context);
  if (failed(mlir::applyPassManagerCLOptions(pm)))
    return 1;
  addPipeline(pm, emit, 0, dataParallelMb);
  if (failed(pm.run(*module)))
    return 1;

  if (emit == Stage::Trainer) {
    std::string dir = outputFile;
    if (dir == "-")
      dir = (sys::path::stem(inputFile) + ".trainer").str();
    if (failed(netc::writeTrainer(*module, dir)))
      return 1;
    outs() << "netc: wrote " << dir << "\n";
    return 0;
  }
  if (emit == Stage::Plan) {
    auto plan = netc::buildPlan(*module);
    if (failed(plan))
      return 1;
    output->os() << formatv("{0:2}", *plan) << "\n";
    return finish(*output, outputFile);
  }
  module->print(output->os());
  return finish(*output, outputFile);
}
