//===- CudaBackendGpuTest.cpp - the cuda backend against the reference ----===//
//
// Part of netc-gpu-tests (its main() in CudaGpuTest.cpp skips everything
// with one line when there is no GPU). Every op of runtime/plan/Ops.def runs
// through an Executor on CudaBackend and on ReferenceBackend from the same
// parameters and inputs, on shapes with odd sizes, groups, overlapping and
// padded pools, at the planned batch and then at batch 1 (the path that
// re-describes cuDNN tensors for a smaller batch); every value a kernel
// writes and every parameter must agree within a relative tolerance of the
// value's largest magnitude (fp32; cuDNN and cuBLAS sum in other orders
// than the reference, which sums in double). Then the whole compiled
// training step of test/Training/Inputs/every-layer.net for all seven
// variants: three steps, the losses and the updated parameters.
//
// The every-layer plans: NETC_STEP_PLAN_DIR from the environment (the GPU
// machine has no compiler: bench/gpu-trainers.sh compiles them and the
// script carries them), else the build's own (NETC_BUILD_COMPILER=ON).
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/CudaBackend.h"
#include "runtime/exec/Executor.h"
#include "runtime/exec/ParamStore.h"
#include "runtime/plan/Plan.h"

#include "test/unit/BackendCompare.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

using namespace netc;
using nlohmann::json;

namespace {

// Compiled with -DNETC_GPU_TEST_ON_REFERENCE, the harness runs the reference
// backend on both sides: a check of the hand-written plans and the
// comparisons without a GPU.
#ifdef NETC_GPU_TEST_ON_REFERENCE
using GpuBackend = exec::ReferenceBackend;
#else
using GpuBackend = cuda::CudaBackend;
#endif

using netc::testing::PlanBuilder;

void compareBackends(const std::string &what, const std::string &text,
                     int64_t batch, int64_t classes, bool training = true) {
  netc::testing::compareBackends<GpuBackend>(what, text, batch, classes,
                                             training);
}

//===----------------------------------------------------------------------===//
// Every op
//===----------------------------------------------------------------------===//

TEST(CudaBackend, ConvolutionFamilyMatchesReference) {
  // Strided, padded, grouped; odd sizes.
  for (int64_t groups : {1, 2}) {
    PlanBuilder b(5);
    int64_t x = b.value({-1, 4, 9, 7});
    int64_t w = b.param("conv.weight", {6, 4 / groups, 3, 3});
    int64_t bias = b.param("conv.bias", {6});
    int64_t y = b.value({-1, 6, 5, 4});
    int64_t dy = b.value({-1, 6, 5, 4});
    int64_t dx = b.value({-1, 4, 9, 7});
    int64_t dw = b.value({6, 4 / groups, 3, 3});
    int64_t db = b.value({6});
    json attrs = {{"stride", {2, 2}}, {"pad", {1, 1}}, {"groups", groups}};
    b.kernel("conv2d", {x, w, bias}, {y}, attrs);
    b.kernel("conv2d_grad_input", {dy, w}, {dx}, attrs);
    b.kernel("conv2d_grad_weight", {x, dy}, {dw}, attrs);
    b.kernel("bias_grad", {dy}, {db});
    // A 5x5 kernel without bias, stride 1, on the same input.
    int64_t w5 = b.param("conv5.weight", {3, 4, 5, 5});
    int64_t y5 = b.value({-1, 3, 9, 7});
    b.kernel("conv2d", {x, w5}, {y5}, {{"stride", {1, 1}}, {"pad", {2, 2}}});
    compareBackends("conv groups " + std::to_string(groups), b.planText(5), 5,
                    5);
  }
}

TEST(CudaBackend, TransposedConvolutionFamilyMatchesReference) {
  for (int64_t groups : {1, 2}) {
    PlanBuilder b(3);
    int64_t x = b.value({-1, 6, 5, 4});
    int64_t w = b.param("deconv.weight", {6, 4 / groups, 3, 3});
    int64_t bias = b.param("deconv.bias", {4});
    // (5-1)*2 - 2 + 3 + 0 = 9, (4-1)*2 - 2 + 3 + 1 = 8.
    int64_t y = b.value({-1, 4, 9, 8});
    int64_t dy = b.value({-1, 4, 9, 8});
    int64_t dx = b.value({-1, 6, 5, 4});
    int64_t dw = b.value({6, 4 / groups, 3, 3});
    json attrs = {{"stride", {2, 2}}, {"pad", {1, 1}}, {"groups", groups}};
    json fwd = attrs;
    fwd["output_padding"] = {0, 1};
    b.kernel("deconv2d", {x, w, bias}, {y}, fwd);
    b.kernel("deconv2d_grad_input", {dy, w}, {dx}, attrs);
    b.kernel("deconv2d_grad_weight", {x, dy}, {dw}, attrs);
    compareBackends("deconv groups " + std::to_string(groups), b.planText(5), 3,
                    5);
  }
}

TEST(CudaBackend, FullyConnectedFamilyAndSgdMatchReference) {
  PlanBuilder b(7);
  int64_t x = b.value({-1, 3, 5, 5});
  int64_t w = b.param("fc.weight", {10, 75});
  int64_t bias = b.param("fc.bias", {10});
  int64_t y = b.value({-1, 10});
  int64_t dy = b.value({-1, 10});
  int64_t dx = b.value({-1, 3, 5, 5});
  int64_t dw = b.value({10, 75});
  int64_t db = b.value({10});
  b.kernel("fc", {x, w, bias}, {y});
  b.kernel("fc_grad_input", {dy, w}, {dx});
  b.kernel("fc_grad_weight", {x, dy}, {dw});
  b.kernel("bias_grad", {dy}, {db});
  b.kernel("sgd_update", {dw}, {},
           {{"param", "fc.weight"}, {"lr_mult", 1.0}, {"decay_mult", 1.0}});
  b.kernel("sgd_update", {db}, {},
           {{"param", "fc.bias"}, {"lr_mult", 2.0}, {"decay_mult", 0.0}});
  compareBackends("fc", b.planText(10), 7, 10);
}

TEST(CudaBackend, PoolingAndUnpoolingMatchReference) {
  for (bool normalize : {false, true}) {
    PlanBuilder b(4);
    int64_t x = b.value({-1, 3, 9, 9});
    int64_t y = b.value({-1, 3, 5, 5});
    int64_t sw = b.value({-1, 3, 5, 5}, "i32");
    int64_t u = b.value({-1, 3, 9, 9});
    int64_t u2 = b.value({-1, 3, 9, 9});
    int64_t du = b.value({-1, 3, 9, 9});
    int64_t g = b.value({-1, 3, 5, 5});
    int64_t g2 = b.value({-1, 3, 5, 5});
    int64_t a = b.value({-1, 3, 5, 5});
    int64_t da = b.value({-1, 3, 5, 5});
    int64_t dxa = b.value({-1, 3, 9, 9});
    // Overlapping, padded windows.
    json pool = {{"kernel", {3, 3}}, {"stride", {2, 2}}, {"pad", {1, 1}}};
    json unpool = pool;
    unpool["size"] = {9, 9};
    unpool["normalize"] = normalize;
    json fixed = unpool;
    fixed["position"] = {1, 1};
    json grad = pool;
    grad["normalize"] = normalize;
    b.kernel("max_pool", {x}, {y, sw}, pool);
    b.kernel("unpool", {y, sw}, {u}, unpool);
    b.kernel("unpool", {y}, {u2}, fixed);
    b.kernel("unpool_grad", {du, sw}, {g}, grad);
    json fixedGrad = grad;
    fixedGrad["position"] = {1, 1};
    b.kernel("unpool_grad", {du}, {g2}, fixedGrad);
    b.kernel("avg_pool", {x}, {a}, pool);
    b.kernel("avg_pool_grad", {da}, {dxa}, pool);
    compareBackends(normalize ? "pools normalized" : "pools", b.planText(5), 4,
                    5);
  }
}

TEST(CudaBackend, LrnAndBatchNormMatchReference) {
  for (bool training : {true, false}) {
    PlanBuilder b(4);
    int64_t x = b.value({-1, 5, 6, 7});
    int64_t l = b.value({-1, 5, 6, 7});
    int64_t dl = b.value({-1, 5, 6, 7});
    int64_t dx = b.value({-1, 5, 6, 7});
    int64_t scale = b.param("bn.scale", {5}, 1.0, 0.1);
    int64_t shift = b.param("bn.shift", {5}, 0.0, 0.1);
    int64_t mean = b.param("bn.mean", {5}, 0.0, 0.1);
    int64_t var = b.param("bn.var", {5}, 1.0, 0.1);
    int64_t y = b.value({-1, 5, 6, 7});
    int64_t yi = b.value({-1, 5, 6, 7});
    int64_t dy = b.value({-1, 5, 6, 7});
    int64_t dxb = b.value({-1, 5, 6, 7});
    int64_t dscale = b.value({5});
    int64_t dshift = b.value({5});
    json lrn = {{"size", 3}, {"alpha", 0.1}, {"beta", 0.75}, {"k", 1.0}};
    b.kernel("lrn", {x}, {l}, lrn);
    b.kernel("lrn_grad", {dl, x, l}, {dx}, lrn);
    b.kernel("batch_norm", {x, scale, shift, mean, var}, {y},
             {{"eps", 1e-5}, {"momentum", 0.9}});
    b.kernel("batch_norm", {x, scale, shift, mean, var}, {yi},
             {{"eps", 1e-5}, {"momentum", 0.9}, {"inference", true}});
    b.kernel("batch_norm_grad", {dy, x, scale}, {dxb, dscale, dshift},
             {{"eps", 1e-5}});
    compareBackends(training ? "lrn, batch norm" : "lrn, batch norm (eval)",
                    b.planText(5), 4, 5, training);
  }
}

TEST(CudaBackend, ElementwiseDropoutAndViewsMatchReference) {
  PlanBuilder b(6);
  int64_t x = b.value({-1, 4, 5, 5});
  int64_t d = b.value({-1, 4, 5, 5});
  int64_t r = b.value({-1, 4, 5, 5});
  int64_t dr = b.value({-1, 4, 5, 5});
  int64_t dd = b.value({-1, 4, 5, 5});
  int64_t dg = b.value({-1, 4, 5, 5});
  int64_t s = b.value({-1, 4, 5, 5});
  int64_t sc = b.value({-1, 4, 5, 5});
  b.kernel("relu", {x}, {r});
  b.kernel("relu_grad", {d, r}, {dr});
  b.kernel("dropout", {x}, {dd}, {{"ratio", 0.3}, {"seed", 5}});
  b.kernel("dropout_grad", {d}, {dg}, {{"ratio", 0.3}, {"seed", 5}});
  b.kernel("add", {x, d}, {s});
  b.kernel("scale", {x}, {sc}, {{"factor", 0.5}});
  int64_t f = b.view(sc, {-1, 100});
  b.kernel("flatten", {sc}, {f});
  int64_t rs = b.view(f, {-1, 4, 5, 5});
  b.kernel("reshape", {f}, {rs});
  int64_t rr = b.value({-1, 4, 5, 5});
  b.kernel("relu", {rs}, {rr});
  compareBackends("elementwise", b.planText(5), 6, 5);
}

TEST(CudaBackend, LossesAndObjectiveMatchReference) {
  PlanBuilder b(9);
  int64_t pred = b.value({-1, 3, 4, 5});
  int64_t target = b.value({-1, 3, 4, 5});
  int64_t logits = b.value({-1, 7});
  int64_t labels = b.value({-1}, "i32");
  int64_t ce = b.value({});
  int64_t dlogits = b.value({-1, 7});
  int64_t eu = b.value({});
  int64_t dpred = b.value({-1, 3, 4, 5});
  int64_t total = b.value({});
  b.kernel("softmax_cross_entropy", {logits, labels}, {ce});
  b.kernel("softmax_cross_entropy_grad", {logits, labels}, {dlogits},
           {{"scale", 0.7}});
  b.kernel("euclidean_loss", {pred, target}, {eu});
  b.kernel("euclidean_loss_grad", {pred, target}, {dpred}, {{"scale", 0.3}});
  b.kernel("objective", {ce, eu}, {total}, {{"weights", {1.0, 0.25}}});
  compareBackends("losses", b.planText(7), 9, 7);
}

#ifndef NETC_GPU_TEST_ON_REFERENCE
TEST(CudaBackend, RefusesBf16AndReportsOutOfMemory) {
  cuda::CudaBackend gpu;
  plan::Value v;
  v.dtype = plan::DType::BF16;
  EXPECT_FALSE(gpu.supports(v));
  v.dtype = plan::DType::F32;
  EXPECT_TRUE(gpu.supports(v));
  EXPECT_FALSE(cuda::deviceDescription().empty());
  // Out of memory is one MemoryError naming what, the bytes and the free.
  try {
    gpu.allocate(uint64_t(1) << 50, "a test's impossible buffer");
    FAIL() << "1 PiB allocated";
  } catch (const exec::MemoryError &e) {
    std::string m = e.what();
    EXPECT_NE(m.find("a test's impossible buffer"), std::string::npos) << m;
    EXPECT_NE(m.find("are free"), std::string::npos) << m;
  }
}
#endif

//===----------------------------------------------------------------------===//
// The whole compiled step
//===----------------------------------------------------------------------===//

class CudaEveryLayerStep : public ::testing::TestWithParam<const char *> {};

TEST_P(CudaEveryLayerStep, ThreeStepsMatchReference) {
  std::string dir = netc::testing::stepPlanDir();
  std::string file = dir + "/every-" + GetParam() + ".json";
  if (dir.empty() || !std::filesystem::exists(file))
    GTEST_SKIP() << "no every-layer plans (set NETC_STEP_PLAN_DIR; "
                    "bench/gpu-trainers.sh compiles them)";
  netc::testing::compareSteps<GpuBackend>(file);
}

INSTANTIATE_TEST_SUITE_P(CudaStep, CudaEveryLayerStep,
                         ::testing::ValuesIn(netc::testing::kVariants),
                         netc::testing::variantTestName);

} // namespace
