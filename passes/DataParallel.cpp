//===- DataParallel.cpp - net-data-parallel: gradients averaged over ranks -===//
//
// In each step function: the gradients the `net.sgd_update`s consume, in the
// order their defining ops come (the order backward produces them), are cut
// into buckets of at most `bucket-mb` MiB; one `net.all_reduce_mean` per
// bucket goes right after the bucket's last gradient, and the updates take
// its results. Nothing else changes: the forward and backward passes are
// the single-process ones, and a run with one rank computes the same step.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/IR/Builders.h"

namespace netc {
#define GEN_PASS_DEF_DATAPARALLEL
#include "passes/Passes.h.inc"
} // namespace netc

using namespace mlir;
using namespace netc;
using namespace netc::net;

namespace {

/// Bytes a gradient takes in the bucket: f32 elements (parameters and their
/// gradients stay f32 under every precision).
int64_t gradientBytes(Value grad) {
  return cast<RankedTensorType>(grad.getType()).getNumElements() * 4;
}

LogicalResult bucketFunction(func::FuncOp func, int64_t capacity) {
  Block &block = func.getBody().front();
  llvm::DenseMap<Operation *, int64_t> position;
  int64_t n = 0;
  for (Operation &op : block)
    position[&op] = n++;

  // Each update's gradient, ordered by where it is produced.
  struct Gradient {
    SGDUpdateOp update;
    Value grad;
    int64_t producedAt;
  };
  SmallVector<Gradient> grads;
  for (SGDUpdateOp update : block.getOps<SGDUpdateOp>()) {
    Value g = update.getGrad();
    if (g.getDefiningOp<AllReduceMeanOp>())
      return update.emitOpError("already takes an all-reduced gradient; run "
                                "net-data-parallel once");
    auto type = dyn_cast<RankedTensorType>(g.getType());
    if (!type || !type.hasStaticShape())
      return update.emitOpError("needs a statically shaped gradient, got ")
             << g.getType();
    Operation *def = g.getDefiningOp();
    grads.push_back({update, g, def ? position[def] : -1});
  }
  llvm::stable_sort(grads, [](const Gradient &a, const Gradient &b) {
    return a.producedAt < b.producedAt;
  });

  OpBuilder builder(func.getContext());
  int64_t bucket = 0;
  for (size_t first = 0; first < grads.size();) {
    size_t last = first;
    int64_t bytes = gradientBytes(grads[first].grad);
    while (last + 1 < grads.size() &&
           bytes + gradientBytes(grads[last + 1].grad) <= capacity)
      bytes += gradientBytes(grads[++last].grad);
    SmallVector<Value> operands;
    for (size_t i = first; i <= last; ++i)
      operands.push_back(grads[i].grad);
    // Right after the bucket's last gradient (after the block's arguments
    // when it is one: a gradient can be a function argument only in
    // hand-written IR).
    if (Operation *def = grads[last].grad.getDefiningOp())
      builder.setInsertionPointAfter(def);
    else
      builder.setInsertionPointToStart(&block);
    auto reduce = builder.create<AllReduceMeanOp>(
        NameLoc::get(builder.getStringAttr("all_reduce." + Twine(bucket)),
                     grads[last].update.getLoc()),
        operands, builder.getI64IntegerAttr(bucket));
    for (size_t i = first; i <= last; ++i) {
      if (!reduce->isBeforeInBlock(grads[i].update))
        return grads[i].update.emitOpError(
            "comes before the last gradient of its bucket is produced; "
            "net-data-parallel needs the updates after the backward pass, "
            "as net-autodiff writes them");
      grads[i].update.getGradMutable().assign(reduce.getResult(i - first));
    }
    ++bucket;
    first = last + 1;
  }
  return success();
}

struct DataParallelPass : netc::impl::DataParallelBase<DataParallelPass> {
  using DataParallelBase::DataParallelBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (!(bucketMb > 0) || bucketMb > 1024.0 * 1024.0) {
      module.emitError() << "net-data-parallel: bucket-mb must be in (0, "
                            "1048576], got "
                         << bucketMb;
      return signalPassFailure();
    }
    int64_t capacity = std::max<int64_t>(1, int64_t(bucketMb * 1048576.0));
    for (auto func : module.getOps<func::FuncOp>()) {
      if (!func->hasAttr("net.phase"))
        continue;
      if (!func.getBody().front().getOps<MacroOp>().empty()) {
        func.emitError("net-data-parallel needs straight-line step "
                       "functions; run net-autodiff first");
        return signalPassFailure();
      }
      if (failed(bucketFunction(func, capacity)))
        return signalPassFailure();
    }
    module->setAttr("net.data_parallel",
                    Builder(module.getContext()).getI64IntegerAttr(capacity));
  }
};

} // namespace
