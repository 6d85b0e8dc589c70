//===- StepGradientTest.cpp - compiled steps against finite differences ---===//
//
// THE autodiff test: the whole compiled training step of a small net with
// every kind of layer (test/Training/Inputs/every-layer.net: strided and
// grouped conv, LRN, batch norm, padded overlapping max-pool, avg-pool,
// dropout, fc), for each of the seven augmentation variants (and so each
// decoder: unpooling with switches or at a fixed position, normalised
// unpooling, transposed conv, reshape, the reconstruction losses), run in
// double precision. The gradient each `sgd_update` receives must be the
// derivative of the program's own objective (`outputs.loss`), measured by
// central finite differences of the same program with one parameter element
// perturbed.
//
// The plans are compiled by `netc` at build time (test/unit/CMakeLists.txt)
// into NETC_STEP_PLAN_DIR; without the compiler the test skips. The test
// itself needs no MLIR.
//
// Also here, compile-independent: the switch convention through an executor
// (max_pool records a position, unpool writes to it, ties included) in f32
// and in double, whose arena holds the u8 switches at scaled offsets.
//
//===----------------------------------------------------------------------===//

#include "runtime/exec/Executor.h"
#include "runtime/exec/ParamStore.h"
#include "runtime/plan/Plan.h"

#include "test/unit/PlanJson.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

using namespace netc;

namespace {

//===----------------------------------------------------------------------===//
// Deterministic, library-independent random numbers
//===----------------------------------------------------------------------===//

class Rng {
public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() { return kernels::splitmix64(state_++); }
  /// Uniform in [0, 1).
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }
  /// Standard normal (Box-Muller).
  double normal() {
    double u = 1.0 - uniform(), v = uniform();
    return std::sqrt(-2.0 * std::log(u)) * std::cos(6.283185307179586 * v);
  }

private:
  uint64_t state_;
};

//===----------------------------------------------------------------------===//
// One compiled step program, run in double
//===----------------------------------------------------------------------===//

constexpr int64_t kBatch = 3;
/// The global step: dropout masks depend on (seed, step), so every run of a
/// check uses the same one.
constexpr uint64_t kStep = 11;

std::string readText(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw std::runtime_error("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// A parameter the step trains and the value its sgd_update receives.
struct Update {
  std::string param;
  int64_t grad = -1; ///< value id of the gradient (sgd_update's in[0])
};

class Step {
public:
  Step(const std::string &file, const std::string &program)
      : plan_(plan::parsePlan(readText(file), file, "")), store_(plan_, 1),
        exe_(plan_, program, store_, backend_) {
    const plan::Program &p = exe_.program();
    if (!p.loss)
      throw std::runtime_error(program + " has no outputs.loss");
    loss_ = *p.loss;
    image_ = exe_.inputId("image");
    labels_ = exe_.inputId("labels");
    for (const plan::Kernel &k : p.kernels) {
      switch (k.op) {
      case plan::Op::SGDUpdate:
        updates_.push_back({k.str("param"), k.in[0]});
        exe_.keep(k.in[0]);
        break;
      // The discrete state of the forward pass: which units are active and
      // which position every max-pool window selected.
      case plan::Op::Relu:
        relus_.push_back(k.out[0]);
        exe_.keep(k.out[0]);
        break;
      case plan::Op::MaxPool:
        switches_.push_back(k.out[1]);
        exe_.keep(k.out[1]);
        break;
      default:
        break;
      }
    }
    ctx_.step = kStep;
    ctx_.training = true;
    // lr = momentum = decay = 0: sgd_update leaves the parameters as they
    // are (their momentum buffers start, and stay, at zero).
    ctx_.lr = ctx_.momentum = ctx_.decay = 0;
  }

  const plan::Plan &plan() const { return plan_; }
  const std::vector<Update> &updates() const { return updates_; }
  exec::ParamStoreT<double> &store() { return store_; }

  /// Random parameters of a sensible scale (the plan's initialisers give
  /// std 0.01 weights and zero biases: tiny activations, many exact zeros):
  /// weights N(0, 1/fan-in), biases and shifts N(0, 0.1^2), batch-norm
  /// scales N(1, 0.2^2). Running statistics keep their initial values (a
  /// training step does not read them).
  void randomizeParams(uint64_t seed) {
    for (const plan::ParamSpec &spec : plan_.params) {
      if (!spec.trainable)
        continue;
      Rng rng(exec::seedFor(seed, spec.name));
      auto &v = store_.at(spec.name).value;
      auto ends = [&](const std::string &suffix) {
        return spec.name.size() >= suffix.size() &&
               spec.name.compare(spec.name.size() - suffix.size(),
                                 suffix.size(), suffix) == 0;
      };
      double mean = 0, std = 0.1;
      if (ends("weight") && spec.shape.size() >= 2)
        std = 1.0 / std::sqrt(double(spec.count() / spec.shape[0]));
      else if (ends("scale"))
        mean = 1, std = 0.2;
      for (double &x : v)
        x = mean + std * rng.normal();
    }
  }

  /// Gaussian images and uniform labels for kBatch images.
  void randomizeInputs(uint64_t seed) {
    Rng rng(seed);
    const plan::Program &p = exe_.program();
    images_.resize(size_t(p.value(image_).count(kBatch)));
    for (double &x : images_)
      x = rng.normal();
    labelValues_.resize(size_t(kBatch));
    for (int32_t &y : labelValues_)
      y = int32_t(rng.next() % uint64_t(plan_.classes));
  }

  /// Runs the step on the inputs; returns the objective.
  double run() {
    std::copy(images_.begin(), images_.end(), exe_.real(image_));
    std::copy(labelValues_.begin(), labelValues_.end(), exe_.i32(labels_));
    exe_.run(kBatch, ctx_);
    return exe_.scalar(loss_);
  }

  /// The gradient the last run gave update `u`.
  std::vector<double> gradient(const Update &u) {
    const double *g = exe_.keptReal(u.grad);
    return std::vector<double>(g, g + store_.at(u.param).value.size());
  }

  /// The last run's discrete state: relu activity and max-pool switches.
  std::vector<int32_t> state() {
    std::vector<int32_t> s;
    const plan::Program &p = exe_.program();
    for (int64_t id : relus_) {
      const double *y = exe_.keptReal(id);
      for (int64_t i = 0, e = p.value(id).count(kBatch); i < e; ++i)
        s.push_back(y[i] > 0);
    }
    for (int64_t id : switches_) {
      const auto *sw = static_cast<const kernels::Switch *>(exe_.kept(id));
      s.insert(s.end(), sw, sw + p.value(id).count(kBatch));
    }
    return s;
  }

private:
  plan::Plan plan_;
  exec::ParamStoreT<double> store_;
  exec::ReferenceBackendT<double> backend_;
  exec::ExecutorT<double> exe_;
  exec::StepContext ctx_;
  int64_t loss_ = -1, image_ = -1, labels_ = -1;
  std::vector<Update> updates_;
  std::vector<int64_t> relus_, switches_;
  std::vector<double> images_;
  std::vector<int32_t> labelValues_;
};

/// Up to `k` distinct element indices of a tensor of `count`, chosen
/// deterministically from its name.
std::vector<int64_t> sampleIndices(const std::string &name, int64_t count,
                                   int64_t k) {
  std::vector<int64_t> all(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i)
    all[size_t(i)] = i;
  if (count <= k)
    return all;
  Rng rng(exec::seedFor(99, name));
  for (int64_t i = 0; i < k; ++i) // partial Fisher-Yates
    std::swap(all[size_t(i)],
              all[size_t(i + int64_t(rng.next() % uint64_t(count - i)))]);
  all.resize(size_t(k));
  std::sort(all.begin(), all.end());
  return all;
}

//===----------------------------------------------------------------------===//
// The check
//===----------------------------------------------------------------------===//

/// Elements checked per parameter tensor (all of them if fewer), chosen
/// deterministically: 24 covers a fifth or more of every tensor of this net
/// and costs well under a second for the seven variants.
constexpr int64_t kSamplesPerTensor = 24;
/// Central differences with step h = kRelStep * max(1, |w|). Every kernel
/// runs in double with reductions accumulated in double, so the error of fd
/// is rounding, ~eps * |L| / h, plus truncation, ~h^2 |L'''| / 6. With the
/// reconstruction terms L is ~80 (a sum over the image's pixels): h = 1e-6
/// gives errors up to 7e-8, h = 1e-5 up to 9e-9, h >= 3e-5 starts to flip
/// relus and switches (skips below). At h = 1e-5 the measured error is
/// <= 1e-8 * max(1, |g|, |fd|) for every variant, so the tolerance 1e-6
/// leaves a 100x margin against noise, while a wrong gradient (a flipped
/// sign, a missing, doubled or misrouted term, a wrong scale) is off by
/// O(|g|), and the gradients sampled here are ~1e-2..10.
constexpr double kRelStep = 1e-5;
constexpr double kTolerance = 1e-6;
/// A perturbation that changes the discrete state (a relu crossing zero, a
/// max-pool selecting another position) makes the loss non-differentiable
/// within the step; such elements are detected exactly (the relu activity
/// and every switch are compared with the unperturbed run's), skipped and
/// counted. With Gaussian data and h = 1e-5 that is improbable (none
/// happen; with h = 3e-5, 4 of 181 do, all in conv1.weight), so the skip
/// rate must stay small.
constexpr double kMaxSkipRate = 0.05;

struct Stats {
  int64_t checked = 0, skipped = 0;
  double maxRelErr = 0;
};

Stats checkStep(Step &s, const std::string &what) {
  Stats st;
  s.randomizeParams(2024);
  s.randomizeInputs(7);

  // Every trained parameter has exactly one update, and nothing else does.
  std::set<std::string> trainable, updated;
  for (const plan::ParamSpec &p : s.plan().params)
    if (p.trainable)
      trainable.insert(p.name);
  for (const Update &u : s.updates()) {
    EXPECT_TRUE(updated.insert(u.param).second)
        << what << ": two sgd_updates of " << u.param;
  }
  EXPECT_EQ(trainable, updated) << what;

  std::map<std::string, std::vector<double>> before;
  for (const Update &u : s.updates()) {
    auto &v = s.store().at(u.param).value;
    before[u.param].assign(v.begin(), v.end());
  }
  const double loss = s.run();
  const std::vector<int32_t> state = s.state();
  std::map<std::string, std::vector<double>> grads;
  for (const Update &u : s.updates())
    grads[u.param] = s.gradient(u);
  EXPECT_TRUE(std::isfinite(loss)) << what;
  // lr = 0: the step left every parameter as it was; a rerun is identical.
  for (const Update &u : s.updates()) {
    auto &v = s.store().at(u.param).value;
    EXPECT_TRUE(std::equal(v.begin(), v.end(), before[u.param].begin()))
        << what << ": " << u.param << " changed with lr = 0";
  }
  EXPECT_EQ(s.run(), loss) << what << ": the step is not deterministic";

  for (const Update &u : s.updates()) {
    auto &w = s.store().at(u.param).value;
    const std::vector<double> &g = grads[u.param];
    double tensorMaxFd = 0;
    int64_t tensorChecked = 0;
    for (int64_t i :
         sampleIndices(u.param, int64_t(w.size()), kSamplesPerTensor)) {
      const double w0 = w[size_t(i)];
      const double h = kRelStep * std::max(1.0, std::abs(w0));
      const double wp = w0 + h, wm = w0 - h;
      w[size_t(i)] = wp;
      double lp = s.run();
      bool smooth = s.state() == state;
      w[size_t(i)] = wm;
      double lm = s.run();
      smooth = smooth && s.state() == state;
      w[size_t(i)] = w0;
      if (!smooth) {
        ++st.skipped;
        continue;
      }
      double fd = (lp - lm) / (wp - wm);
      double gi = g[size_t(i)];
      double scale = std::max({1.0, std::abs(gi), std::abs(fd)});
      double rel = std::abs(gi - fd) / scale;
      st.maxRelErr = std::max(st.maxRelErr, rel);
      tensorMaxFd = std::max(tensorMaxFd, std::abs(fd));
      ++st.checked;
      ++tensorChecked;
      EXPECT_LE(rel, kTolerance)
          << what << ": d loss / d " << u.param << "[" << i << "]: step " << gi
          << ", finite differences " << fd;
    }
    EXPECT_GT(tensorChecked, 0)
        << what << ": no element of " << u.param << " could be checked";
    // A tensor whose sampled gradient is all zero checks nothing.
    EXPECT_GT(tensorMaxFd, 1e-6)
        << what << ": the sampled gradient of " << u.param << " vanishes";
  }
  EXPECT_LE(double(st.skipped), kMaxSkipRate * double(st.checked + st.skipped))
      << what << ": " << st.skipped << " of " << st.checked + st.skipped
      << " perturbations changed a relu or max-pool switch";
  return st;
}

const char *const kVariants[] = {"none",           "sae-first",   "sae-all",
                                 "sae-layerwise",  "swwae-first", "swwae-all",
                                 "swwae-layerwise"};

class EveryLayerStep : public ::testing::TestWithParam<const char *> {};

#ifdef NETC_STEP_PLAN_DIR
const char *const kPlanDir = NETC_STEP_PLAN_DIR;
#else
const char *const kPlanDir = nullptr;
#endif

TEST_P(EveryLayerStep, MatchesFiniteDifferencesOfTheObjective) {
  if (!kPlanDir)
    GTEST_SKIP()
        << "the every-layer plans are compiled by netc at build "
           "time; this build has no compiler (NETC_BUILD_COMPILER=OFF)";
  std::string variant = GetParam();
  std::string file = std::string(kPlanDir) + "/every-" + variant + ".json";
  Step s(file, "step.joint");
  ASSERT_EQ(s.plan().variant, variant);
  Stats st = checkStep(s, variant);
  std::printf("[ step     ] %-16s %3lld elements checked, %lld skipped, max "
              "relative error %.2e\n",
              variant.c_str(), (long long)st.checked, (long long)st.skipped,
              st.maxRelErr);
}

// Named StepGradient/EveryLayerStep.*/<variant>.
INSTANTIATE_TEST_SUITE_P(
    StepGradient, EveryLayerStep, ::testing::ValuesIn(kVariants),
    [](const ::testing::TestParamInfo<const char *> &info) {
      std::string name = info.param;
      std::replace(name.begin(), name.end(), '-', '_');
      return name;
    });

//===----------------------------------------------------------------------===//
// Switch convention through an executor, f32 and double
//===----------------------------------------------------------------------===//

/// x [N,1,4,4] -max_pool 3x3 s2 p1-> y [N,1,2,2] + switches (u8) -unpool
/// with the switches-> u [N,1,4,4]. The switches sit between two f32 values
/// in the arena.
std::string switchPlan() {
  using nlohmann::json;
  json values = json::array({
      {{"id", 0}, {"shape", {-1, 1, 4, 4}}, {"dtype", "f32"}, {"offset", 0}},
      {{"id", 1}, {"shape", {-1, 1, 2, 2}}, {"dtype", "f32"}, {"offset", 192}},
      {{"id", 2}, {"shape", {-1, 1, 2, 2}}, {"dtype", "u8"}, {"offset", 256}},
      {{"id", 3}, {"shape", {-1, 1, 4, 4}}, {"dtype", "f32"}, {"offset", 320}},
  });
  json pool = {{"kernel", {3, 3}}, {"stride", {2, 2}}, {"pad", {1, 1}}};
  json unpool = pool;
  unpool["size"] = {4, 4};
  json kernels = json::array({
      {{"op", "max_pool"}, {"in", {0}}, {"out", {1, 2}}, {"attrs", pool}},
      {{"op", "unpool"}, {"in", {1, 2}}, {"out", {3}}, {"attrs", unpool}},
  });
  json program = {{"batch", 3},         {"arena_bytes", 512},
                  {"values", values},   {"inputs", {{"image", 0}}},
                  {"kernels", kernels}, {"outputs", json::object()}};
  json plan = netc::testing::planJson("switches", {1, 4, 4}, 2, json::array(),
                                      {{"p", program}});
  return plan.dump();
}

template <typename T> void checkSwitchConvention() {
  plan::Plan p = plan::parsePlan(switchPlan(), "switches/plan.json", "");
  exec::ParamStoreT<T> store(p, 1);
  exec::ReferenceBackendT<T> backend;
  exec::ExecutorT<T> exe(p, "p", store, backend);
  // Image 0: all zero (every window ties; windows starting in the padding
  // record their first in-input position). Image 1: a partial tie (two 5s
  // in the first window: the first in row-major order wins). Image 2:
  // distinct values.
  const T x[3][16] = {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
                      {1, 5, 2, 0, 5, 4, 3, 1, 0, 1, 2, 3, 4, 5, 6, 7},
                      {9, 1, 2, 8, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6}};
  std::copy(&x[0][0], &x[0][0] + 48, exe.real(0));
  exe.run(3, exec::StepContext{});
  // Windows (rows x cols, unpadded): {0,1}x{0,1}, {0,1}x{1,2,3},
  // {1,2,3}x{0,1}, {1,2,3}x{1,2,3}.
  // The positions in the plane; a switch records one within its 3x3 window,
  // which starts at (2 * (o / 2) - 1, 2 * (o % 2) - 1).
  const int32_t want[3][4] = {{0, 1, 4, 5}, {1, 1, 4, 15}, {0, 3, 8, 7}};
  const auto *sw = static_cast<const kernels::Switch *>(exe.data(2));
  const T *y = exe.real(1), *u = exe.real(3);
  for (int n = 0; n < 3; ++n) {
    T plane[16] = {};
    for (int o = 0; o < 4; ++o) {
      const int h = want[n][o] / 4 - (2 * (o / 2) - 1);
      const int w = want[n][o] % 4 - (2 * (o % 2) - 1);
      EXPECT_EQ(int(sw[n * 4 + o]), h * 3 + w)
          << "image " << n << " window " << o;
      EXPECT_EQ(y[n * 4 + o], x[n][want[n][o]]);
      plane[want[n][o]] += y[n * 4 + o];
    }
    // unpool writes each pooled value where its window's switch points
    // (overlapping windows that select the same position sum).
    for (int q = 0; q < 16; ++q)
      EXPECT_EQ(u[n * 16 + q], plane[q]) << "image " << n << " position " << q;
  }
}

TEST(StepGradientSwitches, MaxPoolRecordsAndUnpoolWritesF32) {
  checkSwitchConvention<float>();
}
TEST(StepGradientSwitches, MaxPoolRecordsAndUnpoolWritesDouble) {
  checkSwitchConvention<double>();
}

} // namespace
