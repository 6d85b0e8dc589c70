//===- Schedule.cpp - net-schedule: gradients and updates for less memory -===//
//
// net-autodiff writes the backward pass in reverse layer order and appends
// the `net.sgd_update`s after it, so every weight gradient stays live from
// where backward produces it to the end of the step. In a classifier the
// largest weight gradients come first (VGG-16's fc6 weight gradient is 392
// MiB, produced before any convolution's), beside every activation the
// backward pass still needs: that is the step's peak. This pass reorders
// the step in two moves, neither of which changes a value it computes:
//
// 1. A parameter gradient larger than what it is computed from (an fc's
//    weight gradient: [out, in] from two [batch, features] maps) is
//    computed as late as it can be, just before its first user (the
//    update; the bucket's all-reduce after net-data-parallel). Its inputs
//    then live longer, but they are small; its own bytes are needed only
//    at the end of the step, when the activations are gone.
// 2. Each update then moves up to the earliest point it may run: after its
//    gradient is final and after the last op that reads its parameter (no
//    op after it may see the updated value). Its gradient's bytes are free
//    for the rest of the step. Updates that land after the same op keep
//    their order.
//
// The step computes the same values: an op reads only its operands, and an
// update only its gradient, its parameter and the parameter's momentum.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/StringMap.h"

namespace netc {
#define GEN_PASS_DEF_SCHEDULE
#include "passes/Passes.h.inc"
} // namespace netc

using namespace mlir;
using namespace netc;
using namespace netc::net;

namespace {

/// True when `op` computes a parameter gradient (its one result is read by
/// updates, or by the all-reduce before them, alone) that takes more bytes
/// at `batch` than its operands together, and reads no parameter (an
/// update it moved past would change what it reads).
bool isLargeParamGradient(Operation &op, int64_t batch) {
  if (op.getNumResults() != 1 || op.getNumOperands() == 0 ||
      llvm::any_of(op.getOperands(),
                   [](Value v) { return v.getDefiningOp<ParamGetOp>(); }) ||
      op.getResult(0).use_empty() ||
      !llvm::all_of(op.getResult(0).getUsers(), [](Operation *user) {
        return isa<SGDUpdateOp, AllReduceMeanOp>(user);
      }))
    return false;
  std::optional<int64_t> out = valueBytes(op.getResult(0), batch);
  int64_t in = 0;
  for (Value operand : op.getOperands()) {
    std::optional<int64_t> bytes = valueBytes(operand, batch);
    if (!bytes || llvm::AddOverflow(in, *bytes, in))
      return false;
  }
  return out && *out > in;
}

/// Step 1: large parameter gradients just before their first user.
void sinkLargeGradients(Block &block, int64_t batch) {
  SmallVector<Operation *> sink;
  for (Operation &op : block)
    if (isLargeParamGradient(op, batch))
      sink.push_back(&op);
  for (Operation *op : sink) {
    Operation *first = nullptr;
    for (Operation *user : op->getResult(0).getUsers()) {
      Operation *inBlock = block.findAncestorOpInBlock(*user);
      if (inBlock && (!first || inBlock->isBeforeInBlock(first)))
        first = inBlock;
    }
    if (first && op->getNextNode() != first)
      op->moveBefore(first);
  }
}

/// Step 2: each update right after the later of its gradient's definition
/// and the last read of its parameter.
LogicalResult hoistUpdates(Block &block) {
  llvm::StringMap<Operation *> lastRead;
  for (Operation &op : block) {
    auto get = dyn_cast<ParamGetOp>(op);
    if (!get)
      continue;
    Operation *&last = lastRead[get.getName()];
    if (!last || last->isBeforeInBlock(get))
      last = get;
    for (Operation *user : get.getResult().getUsers()) {
      Operation *inBlock = block.findAncestorOpInBlock(*user);
      if (inBlock && !isa<SGDUpdateOp>(inBlock) &&
          last->isBeforeInBlock(inBlock))
        last = inBlock;
    }
  }

  // A parameter updated twice (hand-written IR) keeps both updates where
  // they are: momentum updates do not commute.
  llvm::StringMap<int> updates;
  for (SGDUpdateOp update : block.getOps<SGDUpdateOp>())
    ++updates[update.getParam()];
  SmallVector<std::pair<SGDUpdateOp, Operation *>> moves;
  for (SGDUpdateOp update : block.getOps<SGDUpdateOp>()) {
    if (updates.lookup(update.getParam()) > 1)
      continue;
    Operation *anchor = update.getGrad().getDefiningOp();
    if (anchor && anchor->getBlock() != &block)
      return update.emitOpError("takes a gradient defined outside the step's "
                                "block; net-schedule needs straight-line "
                                "step functions");
    if (Operation *read = lastRead.lookup(update.getParam()))
      if (!anchor || anchor->isBeforeInBlock(read))
        anchor = read;
    moves.push_back({update, anchor});
  }

  // Past the updates already put after the same anchor. An update that a
  // read of its parameter follows (hand-written IR) stays where it is:
  // moving it down would change what that read sees.
  llvm::DenseMap<Operation *, Operation *> tail;
  for (auto [update, anchor] : moves) {
    if (anchor && update->isBeforeInBlock(anchor))
      continue;
    Operation *&end = tail[anchor];
    if (end)
      update->moveAfter(end);
    else if (anchor)
      update->moveAfter(anchor);
    else
      update->moveBefore(&block, block.begin());
    end = update;
  }
  return success();
}

struct SchedulePass : netc::impl::ScheduleBase<SchedulePass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SymbolTable symbols(module);
    for (auto func : module.getOps<func::FuncOp>()) {
      FailureOr<PhaseOp> phase = stepPhase(func, symbols);
      if (failed(phase))
        return signalPassFailure();
      Block &block = func.getBody().front();
      if (!*phase || block.getOps<SGDUpdateOp>().empty())
        continue;
      if (!block.getOps<MacroOp>().empty()) {
        func.emitError("net-schedule needs straight-line step functions; "
                       "run net-autodiff first");
        return signalPassFailure();
      }
      sinkLargeGradients(block, phase->getBatchAttr().getInt());
      if (failed(hoistUpdates(block)))
        return signalPassFailure();
    }
  }
};

} // namespace
