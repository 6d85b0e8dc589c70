//===- CpuBackendTest.cpp - the cpu backend against the reference ---------===//
//
// The cpu backend (oneDNN primitives, channel-blocked layouts, the conv+ReLU
// fusion, its own pooling kernels) against the reference backend, through
// executors, on plans whose values between kernels have whole channel
// blocks (16 and 32 channels), so that they run blocked: every op family at
// the planned batch and at batch 1 (the tail primitives), odd sizes, groups,
// disjoint and overlapping pooling windows, pooling ties, batch norm (in
// training, inference and evaluation runs) and LRN also in plain layout, fc
// on sgemm and on oneDNN's inner product, and the compiled
// training step of every variant of two nets. Each test also checks that
// the layouts it means to cover were chosen.
//
//===----------------------------------------------------------------------===//

#include "runtime/exec/CpuBackend.h"
#include "runtime/kernels/OneDnn.h"

#include "test/unit/BackendCompare.h"
#include "test/unit/ScopedEnv.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

using namespace netc;
using netc::testing::json;
using netc::testing::PlanBuilder;

namespace {

void compare(const std::string &what, const std::string &text, int64_t batch,
             int64_t classes, bool training = true) {
  netc::testing::compareBackends<exec::CpuBackend>(what, text, batch, classes,
                                                   training);
}

/// The cpu backend's choices for program "p" of `text`.
struct Choices {
  std::map<int64_t, int64_t> blocked;
  std::set<int64_t> elided;
};
Choices choices(const std::string &text) {
  plan::Plan p = plan::parsePlan(text, "cpu-test/plan.json", "");
  exec::CpuBackend cpu;
  exec::ParamStore store(p, 3, cpu);
  exec::Executor exe(p, "p", store, cpu);
  return {exe.blockedValues(), exe.elidedValues()};
}

/// A conv2d 3x3 pad 1 from `x` to `channels` channels (same size), with
/// bias: how a test gets a value into the blocked layout (inputs are the
/// host's, so plain).
int64_t convFrom(PlanBuilder &b, int64_t x, std::vector<int64_t> xShape,
                 int64_t channels, const std::string &name) {
  int64_t w = b.param(name + ".weight", {channels, xShape[1], 3, 3});
  int64_t bias = b.param(name + ".bias", {channels});
  xShape[1] = channels;
  int64_t y = b.value(xShape);
  b.kernel("conv2d", {x, w, bias}, {y}, {{"stride", {1, 1}}, {"pad", {1, 1}}});
  return y;
}

TEST(CpuBackend, ConvolutionFamilyInBlockedLayouts) {
  for (int64_t groups : {1, 2}) {
    PlanBuilder b(5);
    int64_t x0 = b.value({-1, 3, 9, 7});
    // 16 channels, blocked; then a strided, padded, grouped conv to 32.
    int64_t x = convFrom(b, x0, {-1, 3, 9, 7}, 16, "c0");
    int64_t w = b.param("conv.weight", {32, 16 / groups, 3, 3});
    int64_t bias = b.param("conv.bias", {32});
    int64_t y = b.value({-1, 32, 5, 4});
    json attrs = {{"stride", {2, 2}}, {"pad", {1, 1}}, {"groups", groups}};
    b.kernel("conv2d", {x, w, bias}, {y}, attrs);
    // Its gradients from a blocked dy.
    int64_t dy0 = b.value({-1, 3, 5, 4});
    int64_t dy = convFrom(b, dy0, {-1, 3, 5, 4}, 32, "c1");
    int64_t dx = b.value({-1, 16, 9, 7});
    int64_t dw = b.value({32, 16 / groups, 3, 3});
    int64_t db = b.value({32});
    b.kernel("conv2d_grad_input", {dy, w}, {dx}, attrs);
    b.kernel("conv2d_grad_weight", {x, dy}, {dw}, attrs);
    b.kernel("bias_grad", {dy}, {db});
    // Down to one channel (the decoder's image), 5x5 without bias.
    int64_t w5 = b.param("conv5.weight", {1, 16, 5, 5});
    int64_t y5 = b.value({-1, 1, 9, 7});
    b.kernel("conv2d", {x, w5}, {y5}, {{"stride", {1, 1}}, {"pad", {2, 2}}});
    std::string text = b.planText(5);
    Choices c = choices(text);
    for (int64_t id : {x, y, dy, dx})
      EXPECT_TRUE(c.blocked.count(id)) << "value " << id << " not blocked";
    for (int64_t id : {x0, dy0, y5, dw, db})
      EXPECT_FALSE(c.blocked.count(id)) << "value " << id << " blocked";
    compare("conv groups " + std::to_string(groups), text, 5, 5);
  }
}

TEST(CpuBackend, TransposedConvolutionFamilyInBlockedLayouts) {
  for (int64_t groups : {1, 2}) {
    PlanBuilder b(3);
    int64_t x0 = b.value({-1, 2, 5, 4});
    int64_t x = convFrom(b, x0, {-1, 2, 5, 4}, 32, "c0");
    int64_t w = b.param("deconv.weight", {32, 16 / groups, 3, 3});
    int64_t bias = b.param("deconv.bias", {16});
    // (5-1)*2 - 2 + 3 + 0 = 9, (4-1)*2 - 2 + 3 + 1 = 8.
    int64_t y = b.value({-1, 16, 9, 8});
    int64_t dy0 = b.value({-1, 2, 9, 8});
    int64_t dy = convFrom(b, dy0, {-1, 2, 9, 8}, 16, "c1");
    int64_t dx = b.value({-1, 32, 5, 4});
    int64_t dw = b.value({32, 16 / groups, 3, 3});
    json attrs = {{"stride", {2, 2}}, {"pad", {1, 1}}, {"groups", groups}};
    json fwd = attrs;
    fwd["output_padding"] = {0, 1};
    b.kernel("deconv2d", {x, w, bias}, {y}, fwd);
    b.kernel("deconv2d_grad_input", {dy, w}, {dx}, attrs);
    b.kernel("deconv2d_grad_weight", {x, dy}, {dw}, attrs);
    std::string text = b.planText(5);
    Choices c = choices(text);
    for (int64_t id : {x, y, dy, dx})
      EXPECT_TRUE(c.blocked.count(id)) << "value " << id << " not blocked";
    compare("deconv groups " + std::to_string(groups), text, 3, 5);
  }
}

TEST(CpuBackend, PoolingAndUnpoolingInBlockedLayouts) {
  // Disjoint windows (the scatter kernels) and overlapping padded ones (the
  // gathers), each with and without normalisation and a fixed position.
  for (bool overlap : {false, true})
    for (bool normalize : {false, true}) {
      PlanBuilder b(4);
      int64_t x0 = b.value({-1, 1, 9, 9});
      // ReLU'd conv output: many zeros, so windows with ties.
      int64_t c = convFrom(b, x0, {-1, 1, 9, 9}, 16, "c0");
      int64_t x = b.value({-1, 16, 9, 9});
      b.kernel("relu", {c}, {x});
      int64_t o = overlap ? 5 : 4;
      json pool =
          overlap
              ? json{{"kernel", {3, 3}}, {"stride", {2, 2}}, {"pad", {1, 1}}}
              : json{{"kernel", {2, 2}}, {"stride", {2, 2}}, {"pad", {0, 0}}};
      int64_t y = b.value({-1, 16, o, o});
      int64_t sw = b.value({-1, 16, o, o}, "u8");
      b.kernel("max_pool", {x}, {y, sw}, pool);
      json unpool = pool;
      unpool["size"] = {9, 9};
      unpool["normalize"] = normalize;
      json fixed = unpool;
      fixed["position"] = {1, 1};
      int64_t u = b.value({-1, 16, 9, 9}), u2 = b.value({-1, 16, 9, 9});
      b.kernel("unpool", {y, sw}, {u}, unpool);
      b.kernel("unpool", {y}, {u2}, fixed);
      int64_t du0 = b.value({-1, 1, 9, 9});
      int64_t du = convFrom(b, du0, {-1, 1, 9, 9}, 16, "c1");
      json grad = pool;
      grad["normalize"] = normalize;
      json fixedGrad = grad;
      fixedGrad["position"] = {1, 1};
      int64_t g = b.value({-1, 16, o, o}), g2 = b.value({-1, 16, o, o});
      b.kernel("unpool_grad", {du, sw}, {g}, grad);
      b.kernel("unpool_grad", {du}, {g2}, fixedGrad);
      std::string text = b.planText(5);
      Choices ch = choices(text);
      for (int64_t id : {x, y, sw, u, u2, du, g, g2})
        EXPECT_TRUE(ch.blocked.count(id)) << "value " << id << " not blocked";
      compare(std::string(overlap ? "overlapping" : "disjoint") +
                  (normalize ? " pools normalized" : " pools"),
              text, 4, 5);
    }
}

TEST(CpuBackend, ElementwiseAndLossesInBlockedLayouts) {
  PlanBuilder b(6);
  int64_t x0 = b.value({-1, 2, 5, 7});
  int64_t a = convFrom(b, x0, {-1, 2, 5, 7}, 32, "c0");
  int64_t d = convFrom(b, x0, {-1, 2, 5, 7}, 32, "c1");
  std::vector<int64_t> shape = {-1, 32, 5, 7};
  int64_t r = b.value(shape), dr = b.value(shape), s = b.value(shape),
          sc = b.value(shape), dl = b.value(shape);
  int64_t loss = b.value({});
  b.kernel("relu", {a}, {r});
  b.kernel("relu_grad", {d, r}, {dr});
  b.kernel("add", {dr, a}, {s});
  b.kernel("scale", {s}, {sc}, {{"factor", 0.5}});
  b.kernel("euclidean_loss", {sc, d}, {loss});
  b.kernel("euclidean_loss_grad", {sc, d}, {dl}, {{"scale", 0.3}});
  // A dropout must see the plan's layout (its mask follows NCHW order):
  // its operand, and all that is tied to it, stays plain.
  int64_t e = convFrom(b, x0, {-1, 2, 5, 7}, 32, "c2");
  int64_t re = b.value(shape), dd = b.value(shape);
  b.kernel("relu", {e}, {re});
  b.kernel("dropout", {re}, {dd}, {{"ratio", 0.3}, {"seed", 5}});
  std::string text = b.planText(5);
  Choices c = choices(text);
  for (int64_t id : {a, d, r, dr, s, sc, dl})
    EXPECT_TRUE(c.blocked.count(id)) << "value " << id << " not blocked";
  for (int64_t id : {e, re, dd})
    EXPECT_FALSE(c.blocked.count(id)) << "value " << id << " blocked";
  compare("elementwise", text, 6, 5);
}

TEST(CpuBackend, ConvFollowedByReluComputesTheRelu) {
  PlanBuilder b(3);
  int64_t x0 = b.value({-1, 3, 6, 6});
  int64_t y = convFrom(b, x0, {-1, 3, 6, 6}, 16, "c0");
  int64_t r = b.value({-1, 16, 6, 6});
  b.kernel("relu", {y}, {r});
  // A conv whose output is also read elsewhere keeps its own output.
  int64_t y2 = convFrom(b, r, {-1, 16, 6, 6}, 16, "c1");
  int64_t r2 = b.value({-1, 16, 6, 6}), s = b.value({-1, 16, 6, 6});
  b.kernel("relu", {y2}, {r2});
  b.kernel("add", {y2, r2}, {s});
  std::string text = b.planText(5);
  Choices c = choices(text);
  EXPECT_EQ(c.elided, (std::set<int64_t>{y}));
  compare("conv + relu", text, 3, 5);
}

TEST(CpuBackend, DownloadsAndUploadsOfBlockedValuesArePlain) {
  PlanBuilder b(2);
  int64_t x0 = b.value({-1, 1, 3, 3});
  int64_t y = convFrom(b, x0, {-1, 1, 3, 3}, 16, "c0");
  int64_t r = b.value({-1, 16, 3, 3});
  int64_t z = b.value({-1, 16, 3, 3});
  b.kernel("relu", {y}, {r}); // fused: y is elided
  b.kernel("scale", {r}, {z}, {{"factor", 2.0}});
  plan::Plan p = plan::parsePlan(b.planText(5), "cpu-test/plan.json", "");
  exec::CpuBackend cpu;
  exec::ParamStore store(p, 3, cpu);
  exec::Executor exe(p, "p", store, cpu);
  ASSERT_TRUE(exe.blockedValues().count(z));
  std::vector<float> x(2 * 9, 1.0f);
  exe.upload(x0, x.data(), x.size() * sizeof(float), 2);
  exe.run(2, exec::StepContext{});
  std::vector<float> rv = exe.download(r), zv = exe.download(z);
  for (size_t i = 0; i < zv.size(); ++i)
    ASSERT_EQ(zv[i], 2.0f * rv[i]) << i;
  EXPECT_THROW(exe.download(y), std::logic_error);
  EXPECT_THROW(exe.data(z), std::logic_error);
}

/// Batch norm (forward and gradient) and LRN (forward and gradient) on x
/// of `shape`, the gradients from dy; returns the activation values the
/// kernels read and write.
std::vector<int64_t> normalizations(PlanBuilder &b, int64_t x, int64_t dy,
                                    const std::vector<int64_t> &shape,
                                    bool inference, int64_t lrnSize) {
  int64_t c = shape[1];
  int64_t scale = b.param("bn.scale", {c}, 1.0, 0.3);
  int64_t shift = b.param("bn.shift", {c});
  int64_t mean = b.param("bn.mean", {c}, 0.2, 0.3);
  int64_t var = b.param("bn.var", {c}, 1.5, 0.2); // positive
  int64_t y = b.value(shape), dx = b.value(shape);
  b.kernel("batch_norm", {x, scale, shift, mean, var}, {y},
           {{"eps", 1e-3}, {"momentum", 0.8}, {"inference", inference}});
  int64_t dscale = b.value({c}), dshift = b.value({c});
  b.kernel("batch_norm_grad", {dy, x, scale}, {dx, dscale, dshift},
           {{"eps", 1e-3}});
  json lrn = {{"size", lrnSize}, {"alpha", 0.8}, {"beta", 0.75}, {"k", 1.5}};
  int64_t z = b.value(shape), dz = b.value(shape);
  b.kernel("lrn", {x}, {z}, lrn);
  b.kernel("lrn_grad", {dy, x, z}, {dz}, lrn);
  return {x, dy, y, dx, z, dz};
}

/// Checks that the normalisations' activations `acts` were (not) blocked,
/// then compares the backends; a training program also in an evaluation run.
void compareNormalizations(const std::string &what, const std::string &text,
                           const std::vector<int64_t> &acts, bool blocked,
                           int64_t batch, bool inference) {
  Choices c = choices(text);
  for (int64_t id : acts)
    EXPECT_EQ(c.blocked.count(id), blocked ? 1u : 0u) << "value " << id;
  std::string name = what + (inference ? ", inference" : "");
  compare(name, text, batch, 5);
  if (!inference)
    compare(name + ", evaluation run", text, batch, 5, false);
}

TEST(CpuBackend, BatchNormAndLrnInPlainLayout) {
  // 5 channels (no whole block), 6x7, an LRN window past both edges; 16
  // channels in plain layout (the host's inputs), which LRN reorders.
  for (int64_t channels : {5, 16})
    for (bool inference : {false, true}) {
      PlanBuilder b(3);
      std::vector<int64_t> shape = {-1, channels, 6, 7};
      int64_t x = b.value(shape), dy = b.value(shape);
      std::vector<int64_t> acts = normalizations(b, x, dy, shape, inference, 5);
      compareNormalizations(std::to_string(channels) + " channels plain",
                            b.planText(5), acts, false, 3, inference);
    }
}

TEST(CpuBackend, BatchNormAndLrnInBlockedLayouts) {
  for (int64_t channels : {16, 32})
    for (bool inference : {false, true}) {
      PlanBuilder b(4);
      int64_t x0 = b.value({-1, 3, 5, 7});
      std::vector<int64_t> shape = {-1, channels, 5, 7};
      int64_t x = convFrom(b, x0, {-1, 3, 5, 7}, channels, "c0");
      int64_t dy = convFrom(b, x0, {-1, 3, 5, 7}, channels, "c1");
      std::vector<int64_t> acts = normalizations(b, x, dy, shape, inference, 3);
      compareNormalizations(std::to_string(channels) + " channels blocked",
                            b.planText(5), acts, true, 4, inference);
    }
}

TEST(CpuBackend, FullyConnected) {
  // On sgemm (the default), and on oneDNN's inner product.
  for (bool primitives : {false, true})
    for (bool bias : {true, false}) {
      netc::testing::ScopedEnv env("NETC_CPU_FC",
                                   primitives ? "onednn" : nullptr);
      PlanBuilder b(6);
      // fc reads the flatten view of an image batch.
      int64_t image = b.value({-1, 1, 3, 5}), dy = b.value({-1, 7});
      int64_t x = b.view(image, {-1, 15});
      b.kernel("flatten", {image}, {x});
      int64_t w = b.param("fc.weight", {7, 15});
      std::vector<int64_t> in = {x, w};
      if (bias)
        in.push_back(b.param("fc.bias", {7}));
      int64_t y = b.value({-1, 7}), dx = b.value({-1, 15}),
              dw = b.value({7, 15});
      b.kernel("fc", in, {y});
      b.kernel("fc_grad_input", {dy, w}, {dx});
      b.kernel("fc_grad_weight", {x, dy}, {dw});
      compare(std::string(primitives ? "inner product" : "sgemm") +
                  (bias ? ", with bias" : ", without bias"),
              b.planText(5), 6, 5);
    }
}

class CpuStep : public ::testing::TestWithParam<const char *> {};

TEST_P(CpuStep, ThreeStepsMatchReference) {
  std::string dir = netc::testing::stepPlanDir();
  if (dir.empty())
    GTEST_SKIP() << "no compiled plans (a build without the compiler)";
  for (const char *net : {"every", "blocked"}) {
    std::string file = dir + "/" + net + "-" + GetParam() + ".json";
    ASSERT_TRUE(std::filesystem::exists(file)) << file;
    netc::testing::compareSteps<exec::CpuBackend>(file);
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, CpuStep,
                         ::testing::ValuesIn(netc::testing::kVariants),
                         netc::testing::variantTestName);

} // namespace
