//===- BackendCompare.h - a backend against the reference ------*- C++ -*-===//
//
// What the backend tests share (the cuda backend's in netc-gpu-tests, the
// cpu backend's in netc-runtime-tests): hand-written one-program plans
// (PlanBuilder), runs of a plan on the reference backend and on the backend
// under test from the same parameters and inputs, and comparisons within a
// tolerance relative to each value's largest magnitude (fp32: the fast
// backends sum in other orders than the reference, which sums in double).
//
//===----------------------------------------------------------------------===//

#ifndef NETC_TEST_UNIT_BACKENDCOMPARE_H
#define NETC_TEST_UNIT_BACKENDCOMPARE_H

#include "runtime/exec/Executor.h"
#include "runtime/exec/ParamStore.h"
#include "runtime/plan/Plan.h"

#include "test/unit/PlanJson.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace netc::testing {

using nlohmann::json;

/// fp32 tolerance, relative to a value's largest magnitude.
constexpr double kRelTol = 1e-4;

class Rng {
public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() { return state_ = kernels::splitmix64(state_); }
  float uniform(float lo = -1.0f, float hi = 1.0f) {
    return float(lo + (hi - lo) * double(next() >> 11) * 0x1.0p-53);
  }

private:
  uint64_t state_;
};

/// A hand-written one-program plan: values at 64-byte aligned offsets for
/// the planned batch, parameters, kernels.
class PlanBuilder {
public:
  explicit PlanBuilder(int64_t batch) : batch_(batch) {}

  /// An arena value; shape uses -1 for the batch.
  int64_t value(std::vector<int64_t> shape, const char *dtype = "f32") {
    int64_t id = next_++;
    int64_t count = 1;
    for (int64_t d : shape)
      count *= d < 0 ? batch_ : d;
    values_.push_back(
        {{"id", id}, {"shape", shape}, {"dtype", dtype}, {"offset", offset_}});
    offset_ += (count * 4 + 63) / 64 * 64;
    return id;
  }
  /// A view of `of` (reshape/flatten): the same offset.
  int64_t view(int64_t of, std::vector<int64_t> shape) {
    int64_t id = next_++;
    values_.push_back({{"id", id},
                       {"shape", shape},
                       {"dtype", "f32"},
                       {"offset", values_[size_t(of)]["offset"]}});
    return id;
  }
  int64_t param(const std::string &name, std::vector<int64_t> shape,
                double mean = 0.0, double std = 0.5) {
    int64_t id = next_++;
    values_.push_back(
        {{"id", id}, {"shape", shape}, {"dtype", "f32"}, {"param", name}});
    params_.push_back(
        {{"name", name},
         {"shape", shape},
         {"group", "encoder"},
         {"trainable", true},
         {"lr_mult", 1.0},
         {"decay_mult", 1.0},
         {"init", {{"kind", "gaussian"}, {"std", std}, {"mean", mean}}}});
    return id;
  }
  void kernel(const char *op, std::vector<int64_t> in, std::vector<int64_t> out,
              json attrs = json::object()) {
    kernels_.push_back(
        {{"op", op}, {"in", in}, {"out", out}, {"attrs", attrs}});
  }
  std::string planText(int64_t classes) const {
    json program = {{"batch", batch_},
                    {"arena_bytes", std::max<int64_t>(offset_, 64)},
                    {"values", values_},
                    {"inputs", netc::testing::handInputs(values_, kernels_)},
                    {"kernels", kernels_},
                    {"outputs", json::object()}};
    // The plan's input: value 0 (the "image" input) without its batch.
    std::vector<int64_t> image =
        values_[0]["shape"].get<std::vector<int64_t>>();
    image.erase(image.begin());
    return netc::testing::planJson("cuda-test", image, classes, params_,
                                   {{"p", program}})
        .dump();
  }

private:
  int64_t batch_, next_ = 0, offset_ = 0;
  json values_ = json::array(), params_ = json::array(),
       kernels_ = json::array();
};

/// Executor::upload with the source's size where the executor takes it
/// (upload(id, src, bytes, n)), else without (upload(id, src, n)).
template <typename E>
auto uploadInput(E &e, int64_t id, const void *src, uint64_t bytes, int64_t n,
                 int) -> decltype(e.upload(id, src, bytes, n)) {
  return e.upload(id, src, bytes, n);
}
template <typename E>
auto uploadInput(E &e, int64_t id, const void *src, uint64_t, int64_t n, long)
    -> decltype(e.upload(id, src, n)) {
  return e.upload(id, src, n);
}

/// Uploads random data into every input of `e1` and `e2` (labels in [0,
/// classes) for i32 inputs).
inline void uploadRandomInputs(exec::Executor &e1, exec::Executor &e2, Rng &rng,
                               int64_t n, int64_t classes) {
  const plan::Program &prog = e1.program();
  for (auto &[name, id] : prog.inputs) {
    const plan::Value &v = prog.value(id);
    std::vector<float> f(size_t(v.count(n)));
    std::vector<int32_t> l(f.size());
    for (size_t i = 0; i < f.size(); ++i) {
      f[i] = rng.uniform();
      l[i] = int32_t(rng.next() % uint64_t(classes));
    }
    const void *src = v.dtype == plan::DType::I32
                          ? static_cast<const void *>(l.data())
                          : static_cast<const void *>(f.data());
    for (exec::Executor *e : {&e1, &e2})
      uploadInput(*e, id, src, uint64_t(e->hostBytes(id, n)), n, 0);
  }
}

/// Step `step` of a training phase, with its hyper-parameters.
inline exec::StepContext phaseStep(const plan::Phase &phase, uint64_t step) {
  exec::StepContext ctx;
  ctx.step = step;
  ctx.lr = phase.lr;
  ctx.momentum = phase.momentum;
  ctx.decay = phase.decay;
  return ctx;
}

/// Largest |want - got| relative to the largest |want| (plus a floor).
template <typename T>
void expectClose(const std::vector<T> &got, const std::vector<T> &want,
                 const std::string &what, double relTol = kRelTol) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double scale = 0, worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < want.size(); ++i)
    scale = std::max(scale, std::abs(double(want[i])));
  for (size_t i = 0; i < want.size(); ++i) {
    double d = std::abs(double(got[i]) - double(want[i]));
    if (!(d <= worst)) { // NaN counts as worst
      worst = d;
      at = i;
    }
  }
  EXPECT_LE(worst, relTol * scale + 1e-6)
      << what << ": element " << at << " is " << got[at] << ", the reference "
      << want[at] << " (largest magnitude " << scale << ")";
}

/// Runs `text`'s program "p" on the reference backend and on a `Backend`
/// with the same inputs at batch `batch` and then 1, and compares every
/// value a kernel writes (downloaded, so in the plan's layout whatever the
/// backend keeps it in; values a fused kernel computes past are skipped)
/// and every parameter. i32 inputs get labels in [0, classes).
template <typename Backend>
void compareBackends(const std::string &what, const std::string &text,
                     int64_t batch, int64_t classes, bool training = true) {
  SCOPED_TRACE(what);
  plan::Plan p = plan::parsePlan(text, what + "/plan.json", "");
  exec::ReferenceBackend reference;
  Backend gpu;
  exec::ParamStore refStore(p, 3), gpuStore(p, 3, gpu);
  exec::Executor refExe(p, "p", refStore, reference);
  exec::Executor gpuExe(p, "p", gpuStore, gpu);
  const plan::Program &prog = refExe.program();
  std::set<int64_t> written;
  for (const plan::Kernel &k : prog.kernels)
    for (int64_t id : k.out)
      written.insert(id);
  // Each value is compared as its kernel wrote it (a kept copy): after its
  // last reader, its arena bytes are free for any kernel to scribble on (the
  // cuda backend's convolution workspaces; the guarded backend's NaNs).
  for (int64_t id : written)
    if (!prog.value(id).isParam() && !gpuExe.elidedValues().count(id)) {
      refExe.keep(id);
      gpuExe.keep(id);
    }
  Rng rng(17);
  for (int64_t n : {batch, int64_t(1)}) {
    SCOPED_TRACE("batch " + std::to_string(n));
    uploadRandomInputs(refExe, gpuExe, rng, n, classes);
    exec::StepContext ctx;
    ctx.step = uint64_t(n);
    ctx.lr = 0.05;
    ctx.momentum = 0.9;
    ctx.decay = 1e-3;
    ctx.training = training;
    refExe.run(n, ctx);
    gpuExe.run(n, ctx);
    for (int64_t id : written) {
      const plan::Value &v = prog.value(id);
      if (v.isParam() || gpuExe.elidedValues().count(id))
        continue;
      std::string name = "value " + std::to_string(id);
      for (const plan::Kernel &k : prog.kernels)
        for (int64_t o : k.out)
          if (o == id)
            name += " (" + std::string(plan::opName(k.op)) + ")";
      if (v.dtype == plan::DType::I32)
        EXPECT_EQ(gpuExe.download<int32_t>(id), refExe.download<int32_t>(id))
            << name;
      else if (v.dtype == plan::DType::U8) // switches
        EXPECT_EQ(gpuExe.download<uint8_t>(id), refExe.download<uint8_t>(id))
            << name;
      else
        expectClose(gpuExe.download<float>(id), refExe.download<float>(id),
                    name);
    }
    for (const std::string &name : refStore.names())
      expectClose(gpuStore.hostValue(name), refStore.hostValue(name),
                  "parameter " + name);
  }
}

/// The directory of the compiled every-layer plans: NETC_STEP_PLAN_DIR from
/// the environment (a GPU machine has no compiler: bench/gpu-trainers.sh
/// compiles them), else the build's own; empty if neither.
inline std::string stepPlanDir() {
  if (const char *env = std::getenv("NETC_STEP_PLAN_DIR"))
    return env;
#ifdef NETC_STEP_PLAN_DIR
  return NETC_STEP_PLAN_DIR;
#else
  return "";
#endif
}

inline std::string readText(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// How closely compareSteps wants the backend under test to follow the
/// reference. The defaults are fp32's (kRelTol everywhere, no separate
/// check of the updates).
struct StepTolerance {
  /// Each step's loss, relative to the reference's.
  double loss = kRelTol;
  /// Each parameter after the steps, relative to its largest magnitude.
  double param = kRelTol;
  /// When > 0: each parameter's change over the steps, relative to its
  /// largest change (a check that does not drown in the initial values).
  double update = 0;
};

/// `steps` steps (three by default) of the compiled training program of
/// plan file `file` (its first phase) on the reference backend and on a
/// `Backend` from the same parameters and inputs: the losses, then every
/// parameter (and, with tol.update, every parameter's change); then
/// `inspect` (if given) looks at the backend, e.g. that a feature engaged.
/// With `smallerSecond`, the second step runs one sample short of the
/// planned batch (an epoch's last batch: the path that re-describes for
/// another batch and back).
template <typename Backend>
void compareSteps(const std::string &file, const StepTolerance &tol = {},
                  int steps = 3,
                  const std::function<void(const Backend &)> &inspect = {},
                  bool smallerSecond = false) {
  SCOPED_TRACE(file);
  plan::Plan p = plan::parsePlan(readText(file), file, "");
  const plan::Phase &phase = p.schedule.at(0);
  exec::ReferenceBackend reference;
  Backend gpu;
  exec::ParamStore refStore(p, 5), gpuStore(p, 5, gpu);
  std::vector<std::vector<float>> initial;
  for (const std::string &name : refStore.names())
    initial.push_back(refStore.hostValue(name));
  exec::Executor refExe(p, phase.program, refStore, reference);
  exec::Executor gpuExe(p, phase.program, gpuStore, gpu);
  const plan::Program &prog = refExe.program();
  ASSERT_TRUE(prog.loss.has_value());
  int64_t n = prog.batch;
  Rng rng(23);
  for (int step = 0; step < steps; ++step) {
    const int64_t b =
        smallerSecond && step == 1 ? std::max<int64_t>(n - 1, 1) : n;
    uploadRandomInputs(refExe, gpuExe, rng, b, p.classes);
    exec::StepContext ctx = phaseStep(phase, uint64_t(step));
    refExe.run(b, ctx);
    gpuExe.run(b, ctx);
    double want = refExe.scalar(*prog.loss), got = gpuExe.scalar(*prog.loss);
    EXPECT_NEAR(got, want, tol.loss * std::abs(want) + 1e-7)
        << "step " << step << " at batch " << b;
  }
  std::string after = " after " + std::to_string(steps) + " steps";
  size_t i = 0;
  for (const std::string &name : refStore.names()) {
    std::vector<float> want = refStore.hostValue(name),
                       got = gpuStore.hostValue(name);
    expectClose(got, want, "parameter " + name + after, tol.param);
    if (tol.update > 0 && got.size() == want.size()) {
      const std::vector<float> &w0 = initial[i];
      std::vector<float> dWant(want.size()), dGot(got.size());
      for (size_t j = 0; j < want.size(); ++j) {
        dWant[j] = want[j] - w0[j];
        dGot[j] = got[j] - w0[j];
      }
      expectClose(dGot, dWant, "the change of parameter " + name + after,
                  tol.update);
    }
    ++i;
  }
  if (inspect)
    inspect(gpu);
}

/// The augmentation variants, as netc --augment names them.
inline const char *const kVariants[] = {
    "none",        "sae-first", "sae-all",        "sae-layerwise",
    "swwae-first", "swwae-all", "swwae-layerwise"};

/// A test name for variant `name` ('-' is not allowed).
inline std::string
variantTestName(const ::testing::TestParamInfo<const char *> &info) {
  std::string name = info.param;
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

} // namespace netc::testing

#endif // NETC_TEST_UNIT_BACKENDCOMPARE_H
