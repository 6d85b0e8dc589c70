//===- Pipeline.cpp - netc's pass order after autodiff --------------------===//
//
// The one place that says in which order the passes after net-autodiff run;
// tools/netc and the pass fuzzer (test/fuzz/PassFuzzer.cpp) both use it.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/Pass/PassManager.h"

namespace netc {

void addStepPasses(mlir::OpPassManager &pm, std::optional<double> bucketMb) {
  if (bucketMb)
    pm.addPass(createDataParallel(DataParallelOptions{*bucketMb}));
  pm.addPass(createSchedule());
  pm.addPass(createDenseEval());
}

void addStoragePasses(mlir::OpPassManager &pm, int64_t batch) {
  pm.addPass(createPrecision());
  pm.addPass(createPlanMemory(PlanMemoryOptions{batch}));
}

} // namespace netc
