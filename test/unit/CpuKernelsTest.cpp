//===- CpuKernelsTest.cpp - the cpu backend against the reference ---------===//
//
// Every fast kernel of runtime/kernels/Cpu.h against the reference kernel of
// the same name on random data (relative tolerance 1e-4 of the output's
// scale), over shapes with stride 2, padding, groups, 1x1 and 5x5 kernels,
// deconv output padding and batches 1 and 3 (the sequential and the
// one-image-per-thread paths). Outputs start as NaN so that an element the
// fast kernel forgets to write fails. Then the CpuBackend through an
// Executor on a small plan holding every op it accelerates.
//
//===----------------------------------------------------------------------===//

#include "runtime/exec/CpuBackend.h"
#include "runtime/exec/Executor.h"
#include "runtime/exec/ParamStore.h"
#include "runtime/kernels/Cpu.h"
#include "runtime/kernels/Reference.h"
#include "runtime/plan/Plan.h"

#include "test/unit/PlanJson.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

using namespace netc;
using namespace netc::kernels;
using Vec = std::vector<float>;

namespace {

class Rng {
public:
  explicit Rng(uint64_t seed) : state(seed) {}
  float uniform() {
    state = splitmix64(state);
    return float(-1.0 + 2.0 * double(state >> 11) * 0x1.0p-53);
  }
  Vec vec(int64_t n) {
    Vec v(static_cast<size_t>(n));
    for (float &x : v)
      x = uniform();
    return v;
  }

private:
  uint64_t state;
};

Vec nans(int64_t n) {
  return Vec(size_t(n), std::numeric_limits<float>::quiet_NaN());
}

/// |got - want| <= 1e-4 * (|want| + max |want|) element-wise.
void expectClose(const Vec &got, const Vec &want, const std::string &what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double scale = 0;
  for (float v : want)
    scale = std::max(scale, double(std::fabs(v)));
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    double tol = 1e-4 * (std::fabs(double(want[i])) + scale) + 1e-30;
    if (!(std::fabs(double(got[i]) - double(want[i])) <= tol)) {
      if (++bad <= 5)
        ADD_FAILURE() << what << ": element " << i << " is " << got[i]
                      << ", reference " << want[i];
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << got.size()
                    << " elements differ";
}

struct ConvCase {
  int64_t n, cin, h, w, cout, kh, kw, sh, sw, ph, pw, groups;
  int64_t oph = 0, opw = 0; ///< deconv output padding
};

std::string describe(const ConvCase &c) {
  return "n" + std::to_string(c.n) + " c" + std::to_string(c.cin) + "->" +
         std::to_string(c.cout) + " " + std::to_string(c.h) + "x" +
         std::to_string(c.w) + " k" + std::to_string(c.kh) + "x" +
         std::to_string(c.kw) + " s" + std::to_string(c.sh) + "," +
         std::to_string(c.sw) + " p" + std::to_string(c.ph) + "," +
         std::to_string(c.pw) + " g" + std::to_string(c.groups) + " op" +
         std::to_string(c.oph) + "," + std::to_string(c.opw);
}

Window2D window(const ConvCase &c) {
  Window2D w;
  w.kh = c.kh;
  w.kw = c.kw;
  w.sh = c.sh;
  w.sw = c.sw;
  w.ph = c.ph;
  w.pw = c.pw;
  return w;
}

const std::vector<ConvCase> &convCases() {
  static const std::vector<ConvCase> cases = {
      {1, 3, 7, 9, 4, 3, 3, 1, 1, 1, 1, 1},
      {3, 4, 8, 8, 6, 3, 3, 2, 2, 1, 1, 2},     // stride 2, groups 2
      {3, 6, 5, 7, 4, 1, 1, 1, 1, 0, 0, 2},     // 1x1 direct, groups 2
      {3, 2, 6, 7, 4, 1, 1, 2, 2, 0, 0, 1},     // 1x1 strided (im2col)
      {2, 3, 11, 10, 5, 5, 5, 2, 1, 2, 0, 1},   // 5x5, mixed stride/pad
      {1, 4, 3, 3, 2, 5, 5, 1, 1, 2, 2, 2},     // kernel wider than the input
      {3, 5, 9, 8, 3, 3, 2, 3, 2, 1, 1, 1},     // stride 3, 3x2 kernel
      {3, 32, 14, 14, 64, 3, 3, 1, 1, 1, 1, 1}, // Fashion-MNIST-sized
  };
  return cases;
}

const std::vector<ConvCase> &deconvCases() {
  static const std::vector<ConvCase> cases = {
      {1, 3, 4, 5, 2, 3, 3, 2, 2, 1, 1, 1, 1, 1}, // output padding
      {3, 4, 5, 5, 6, 4, 4, 2, 2, 1, 1, 2, 0, 1}, // groups 2
      {3, 2, 6, 6, 4, 1, 1, 1, 1, 0, 0, 2},       // 1x1 direct
      {2, 4, 3, 4, 2, 5, 5, 1, 1, 2, 2, 1},       // 5x5
      {3, 3, 4, 3, 3, 2, 3, 3, 2, 0, 1, 1, 2, 1}, // stride 3, op 2
  };
  return cases;
}

} // namespace

TEST(CpuKernelsTest, Threads) { EXPECT_GE(cpu::numThreads(), 1); }

TEST(CpuKernelsTest, Conv2DMatchesReference) {
  Rng rng(11);
  for (const ConvCase &c : convCases()) {
    SCOPED_TRACE(describe(c));
    ConvShape s =
        conv2dShape(Dims4{c.n, c.cin, c.h, c.w}, c.cout, window(c), c.groups);
    int64_t wcount = c.cout * (c.cin / c.groups) * c.kh * c.kw;
    Vec x = rng.vec(s.in.count()), w = rng.vec(wcount), b = rng.vec(c.cout),
        dy = rng.vec(s.out.count());

    for (bool bias : {true, false}) {
      Vec want = nans(s.out.count()), got = nans(s.out.count());
      ref::conv2dForward<float>(s, x.data(), w.data(),
                                bias ? b.data() : nullptr, want.data());
      cpu::conv2dForward(s, x.data(), w.data(), bias ? b.data() : nullptr,
                         got.data());
      expectClose(got, want, bias ? "forward+bias" : "forward");
    }
    Vec want = nans(s.in.count()), got = nans(s.in.count());
    ref::conv2dBackwardData<float>(s, dy.data(), w.data(), want.data());
    cpu::conv2dBackwardData(s, dy.data(), w.data(), got.data());
    expectClose(got, want, "backward data");

    Vec wantW = nans(wcount), gotW = nans(wcount);
    ref::conv2dBackwardFilter<float>(s, x.data(), dy.data(), wantW.data());
    cpu::conv2dBackwardFilter(s, x.data(), dy.data(), gotW.data());
    expectClose(gotW, wantW, "backward filter");
  }
}

TEST(CpuKernelsTest, Deconv2DMatchesReference) {
  Rng rng(12);
  for (const ConvCase &c : deconvCases()) {
    SCOPED_TRACE(describe(c));
    ConvShape s = deconv2dShape(Dims4{c.n, c.cin, c.h, c.w}, c.cout, window(c),
                                c.groups, c.oph, c.opw);
    int64_t wcount = c.cin * (c.cout / c.groups) * c.kh * c.kw;
    Vec x = rng.vec(s.in.count()), w = rng.vec(wcount), b = rng.vec(c.cout),
        dy = rng.vec(s.out.count());

    for (bool bias : {true, false}) {
      Vec want = nans(s.out.count()), got = nans(s.out.count());
      ref::deconv2dForward<float>(s, x.data(), w.data(),
                                  bias ? b.data() : nullptr, want.data());
      cpu::deconv2dForward(s, x.data(), w.data(), bias ? b.data() : nullptr,
                           got.data());
      expectClose(got, want, bias ? "forward+bias" : "forward");
    }
    Vec want = nans(s.in.count()), got = nans(s.in.count());
    ref::deconv2dBackwardData<float>(s, dy.data(), w.data(), want.data());
    cpu::deconv2dBackwardData(s, dy.data(), w.data(), got.data());
    expectClose(got, want, "backward data");

    Vec wantW = nans(wcount), gotW = nans(wcount);
    ref::deconv2dBackwardFilter<float>(s, x.data(), dy.data(), wantW.data());
    cpu::deconv2dBackwardFilter(s, x.data(), dy.data(), gotW.data());
    expectClose(gotW, wantW, "backward filter");
  }
}

TEST(CpuKernelsTest, FCMatchesReference) {
  Rng rng(13);
  struct Case {
    int64_t n, in, out;
  };
  for (Case c :
       {Case{1, 7, 5}, Case{3, 64, 10}, Case{3, 1, 1}, Case{64, 3136, 256}}) {
    SCOPED_TRACE(std::to_string(c.n) + "x" + std::to_string(c.in) + "->" +
                 std::to_string(c.out));
    Vec x = rng.vec(c.n * c.in), w = rng.vec(c.out * c.in), b = rng.vec(c.out),
        dy = rng.vec(c.n * c.out);
    for (bool bias : {true, false}) {
      Vec want = nans(c.n * c.out), got = nans(c.n * c.out);
      ref::fcForward<float>(c.n, c.in, c.out, x.data(), w.data(),
                            bias ? b.data() : nullptr, want.data());
      cpu::fcForward(c.n, c.in, c.out, x.data(), w.data(),
                     bias ? b.data() : nullptr, got.data());
      expectClose(got, want, bias ? "forward+bias" : "forward");
    }
    Vec want = nans(c.n * c.in), got = nans(c.n * c.in);
    ref::fcBackwardData<float>(c.n, c.in, c.out, dy.data(), w.data(),
                               want.data());
    cpu::fcBackwardData(c.n, c.in, c.out, dy.data(), w.data(), got.data());
    expectClose(got, want, "backward data");
    Vec wantW = nans(c.out * c.in), gotW = nans(c.out * c.in);
    ref::fcBackwardFilter<float>(c.n, c.in, c.out, x.data(), dy.data(),
                                 wantW.data());
    cpu::fcBackwardFilter(c.n, c.in, c.out, x.data(), dy.data(), gotW.data());
    expectClose(gotW, wantW, "backward filter");
  }
}

//===----------------------------------------------------------------------===//
// The backend through an executor
//===----------------------------------------------------------------------===//

namespace {

using nlohmann::json;

/// conv2d (stride 2, groups 2) -> relu -> deconv2d (output padding) -> fc,
/// every gradient kernel the cpu backend accelerates, and the kernels it
/// runs in chunks (max_pool, unpool with and without switches, unpool_grad,
/// relu_grad, add, bias_grad, sgd_update).
std::string backendPlan() {
  // x [B,4,7,7] -conv 3x3 s2 p1 g2-> y [B,6,4,4] -relu-> r
  // -deconv 3x3 s2 p1 op1 g2-> z [B,4,8,8] -fc-> f [B,5]
  json values = json::array();
  int64_t offset = 0;
  auto value = [&](int64_t id, json shape, int64_t perImage) {
    values.push_back(
        {{"id", id}, {"shape", shape}, {"dtype", "f32"}, {"offset", offset}});
    offset += (perImage * 3 * 4 + 63) / 64 * 64;
  };
  auto param = [&](int64_t id, json shape, const std::string &name) {
    values.push_back(
        {{"id", id}, {"shape", shape}, {"dtype", "f32"}, {"param", name}});
  };
  value(0, {-1, 4, 7, 7}, 4 * 49);
  param(1, {6, 2, 3, 3}, "conv.weight");
  param(2, {6}, "conv.bias");
  value(3, {-1, 6, 4, 4}, 6 * 16);
  value(4, {-1, 6, 4, 4}, 6 * 16);
  param(5, {6, 2, 3, 3}, "deconv.weight");
  param(6, {4}, "deconv.bias");
  value(7, {-1, 4, 8, 8}, 4 * 64);
  param(8, {5, 256}, "fc.weight");
  param(9, {5}, "fc.bias");
  value(10, {-1, 5}, 5);
  value(11, {-1, 5}, 5); // df (input)
  value(12, {-1, 4, 8, 8}, 256);
  value(13, {5, 256}, 5 * 256 / 3 + 1);
  value(14, {-1, 6, 4, 4}, 96);
  value(15, {6, 2, 3, 3}, 36);
  value(16, {-1, 4, 7, 7}, 196);
  value(17, {6, 2, 3, 3}, 36);
  // The chunked kernels.
  value(18, {-1, 6, 2, 2}, 24);
  values.push_back({{"id", 19},
                    {"shape", {-1, 6, 2, 2}},
                    {"dtype", "u8"},
                    {"offset", offset}});
  offset += 24 * 3 * 4 / 64 * 64 + 64;
  value(20, {-1, 6, 4, 4}, 96);
  value(21, {-1, 6, 4, 4}, 96);
  value(22, {-1, 6, 2, 2}, 24);
  value(23, {-1, 6, 4, 4}, 96);
  value(24, {-1, 6, 4, 4}, 96);
  value(25, {6}, 6);
  json conv = {{"stride", {2, 2}}, {"pad", {1, 1}}, {"groups", 2}};
  json deconv = {{"stride", {2, 2}},
                 {"pad", {1, 1}},
                 {"groups", 2},
                 {"output_padding", {1, 1}}};
  json pool = {{"kernel", {2, 2}}, {"stride", {2, 2}}, {"pad", {0, 0}}};
  json unpool = {{"kernel", {2, 2}},
                 {"stride", {2, 2}},
                 {"pad", {0, 0}},
                 {"size", {4, 4}}};
  json unpoolAt = {{"kernel", {2, 2}},   {"pad", {0, 0}},
                   {"stride", {2, 2}},   {"size", {4, 4}},
                   {"position", {1, 0}}, {"normalize", true}};
  json kernels = json::array({
      {{"op", "conv2d"}, {"in", {0, 1, 2}}, {"out", {3}}, {"attrs", conv}},
      {{"op", "relu"}, {"in", {3}}, {"out", {4}}},
      {{"op", "deconv2d"}, {"in", {4, 5, 6}}, {"out", {7}}, {"attrs", deconv}},
      {{"op", "fc"}, {"in", {7, 8, 9}}, {"out", {10}}},
      {{"op", "fc_grad_input"}, {"in", {11, 8}}, {"out", {12}}},
      {{"op", "fc_grad_weight"}, {"in", {7, 11}}, {"out", {13}}},
      {{"op", "deconv2d_grad_input"},
       {"in", {12, 5}},
       {"out", {14}},
       {"attrs", conv}},
      {{"op", "deconv2d_grad_weight"},
       {"in", {4, 12}},
       {"out", {15}},
       {"attrs", conv}},
      {{"op", "conv2d_grad_input"},
       {"in", {14, 1}},
       {"out", {16}},
       {"attrs", conv}},
      {{"op", "conv2d_grad_weight"},
       {"in", {0, 14}},
       {"out", {17}},
       {"attrs", conv}},
      {{"op", "max_pool"}, {"in", {4}}, {"out", {18, 19}}, {"attrs", pool}},
      {{"op", "unpool"}, {"in", {18, 19}}, {"out", {20}}, {"attrs", unpool}},
      {{"op", "unpool"}, {"in", {18}}, {"out", {21}}, {"attrs", unpoolAt}},
      {{"op", "unpool_grad"}, {"in", {14, 19}}, {"out", {22}}, {"attrs", pool}},
      {{"op", "relu_grad"}, {"in", {14, 4}}, {"out", {23}}},
      {{"op", "add"}, {"in", {23, 21}}, {"out", {24}}},
      {{"op", "bias_grad"}, {"in", {14}}, {"out", {25}}},
      {{"op", "sgd_update"},
       {"in", {17}},
       {"out", json::array()},
       {"attrs",
        {{"param", "conv.weight"}, {"lr_mult", 1.0}, {"decay_mult", 1.0}}}},
  });
  auto gaussian = [](const std::string &name, json shape) {
    return json{{"name", name},
                {"shape", shape},
                {"group", "encoder"},
                {"trainable", true},
                {"lr_mult", 1.0},
                {"decay_mult", 1.0},
                {"init", {{"kind", "gaussian"}, {"std", 0.5}, {"mean", 0.0}}}};
  };
  json params = json::array(
      {gaussian("conv.weight", {6, 2, 3, 3}), gaussian("conv.bias", {6}),
       gaussian("deconv.weight", {6, 2, 3, 3}), gaussian("deconv.bias", {4}),
       gaussian("fc.weight", {5, 256}), gaussian("fc.bias", {5})});
  // Every value the test reads is an output: the backend then keeps it
  // plain and written (no fusion makes it disappear).
  json outputs = json::object();
  for (int64_t id :
       {3, 7, 10, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25})
    outputs["v" + std::to_string(id)] = id;
  json program = {{"batch", 3},
                  {"arena_bytes", offset},
                  {"values", values},
                  {"inputs", netc::testing::handInputs(values, kernels)},
                  {"kernels", kernels},
                  {"outputs", outputs}};
  json plan = netc::testing::planJson("cpu-test", {4, 7, 7}, 5, params,
                                      {{"p", program}});
  return plan.dump();
}

} // namespace

TEST(CpuBackendTest, MatchesReferenceThroughExecutor) {
  plan::Plan p = plan::parsePlan(backendPlan(), "cpu-test/plan.json", "");
  exec::ParamStore refStore(p, 7), cpuStore(p, 7);
  exec::ReferenceBackend reference;
  std::unique_ptr<exec::Backend> fast = exec::makeBackend("cpu");
  EXPECT_STREQ(fast->name(), "cpu");
  exec::Executor refExe(p, "p", refStore, reference);
  exec::Executor cpuExe(p, "p", cpuStore, *fast);
  for (int64_t n : {3, 1}) {
    SCOPED_TRACE("batch " + std::to_string(n));
    Rng rng(uint64_t(20 + n));
    Vec x = rng.vec(n * 4 * 49), df = rng.vec(n * 5);
    for (exec::Executor *e : {&refExe, &cpuExe}) {
      std::copy(x.begin(), x.end(), e->f32(0));
      std::copy(df.begin(), df.end(), e->f32(11));
    }
    exec::StepContext ctx;
    ctx.lr = 0.1;
    ctx.momentum = 0.9;
    refExe.run(n, ctx);
    cpuExe.run(n, ctx);
    struct Out {
      int64_t id, perImage; // perImage 0: a whole (weight-shaped) value
      int64_t count;
      const char *what;
    };
    for (Out o :
         {Out{3, 96, 0, "conv2d"}, Out{7, 256, 0, "deconv2d"},
          Out{10, 5, 0, "fc"}, Out{12, 256, 0, "fc_grad_input"},
          Out{13, 0, 5 * 256, "fc_grad_weight"},
          Out{14, 96, 0, "deconv2d_grad_input"},
          Out{15, 0, 36, "deconv2d_grad_weight"},
          Out{16, 196, 0, "conv2d_grad_input"},
          Out{17, 0, 36, "conv2d_grad_weight"}, Out{18, 24, 0, "max_pool"},
          Out{20, 96, 0, "unpool"}, Out{21, 96, 0, "unpool (position)"},
          Out{22, 24, 0, "unpool_grad"}, Out{23, 96, 0, "relu_grad"},
          Out{24, 96, 0, "add"}, Out{25, 0, 6, "bias_grad"}}) {
      int64_t count = o.perImage ? o.perImage * n : o.count;
      Vec want(refExe.f32(o.id), refExe.f32(o.id) + count);
      Vec got(cpuExe.f32(o.id), cpuExe.f32(o.id) + count);
      expectClose(got, want, o.what);
    }
    const auto *refSw = static_cast<const uint8_t *>(refExe.data(19));
    const auto *cpuSw = static_cast<const uint8_t *>(cpuExe.data(19));
    EXPECT_TRUE(std::equal(refSw, refSw + 24 * n, cpuSw))
        << "max_pool switches";
    const auto &wr = refStore.at("conv.weight").value;
    const auto &wc = cpuStore.at("conv.weight").value;
    expectClose(Vec(wc.begin(), wc.end()), Vec(wr.begin(), wr.end()),
                "sgd_update");
  }
}
