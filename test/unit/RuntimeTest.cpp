//===- RuntimeTest.cpp - plan loader, safetensors, executor, data, trainer ===//

#include "runtime/data/Idx.h"
#include "runtime/dist/Communicator.h"
#include "runtime/exec/Backend.h"
#include "runtime/exec/Executor.h"
#include "runtime/exec/GuardedBackend.h"
#include "runtime/exec/ParamStore.h"
#include "runtime/io/File.h"
#include "runtime/io/Safetensors.h"
#include "runtime/plan/Plan.h"
#include "runtime/train/Data.h"
#include "runtime/train/Trainer.h"

#include "test/unit/BackendCompare.h"
#include "test/unit/PlanJson.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <sys/stat.h>
#include <tuple>
#include <unistd.h>

using namespace netc;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

/// A fresh temporary folder per test.
class TempDir {
public:
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("netc-runtime-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name() +
            "-" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string str() const { return path.string(); }
  fs::path path;
};

/// fc 4 -> 3 + softmax cross-entropy, its gradients and two SGD updates.
json tinyPlan() {
  json values = json::array({
      {{"id", 0}, {"shape", {-1, 4}}, {"dtype", "f32"}, {"offset", 0}},
      {{"id", 1}, {"shape", {-1}}, {"dtype", "i32"}, {"offset", 64}},
      {{"id", 2}, {"shape", {3, 4}}, {"dtype", "f32"}, {"param", "fc.weight"}},
      {{"id", 3}, {"shape", {3}}, {"dtype", "f32"}, {"param", "fc.bias"}},
      {{"id", 4}, {"shape", {-1, 3}}, {"dtype", "f32"}, {"offset", 128}},
      {{"id", 5}, {"shape", json::array()}, {"dtype", "f32"}, {"offset", 192}},
      {{"id", 6}, {"shape", json::array()}, {"dtype", "f32"}, {"offset", 256}},
      {{"id", 7}, {"shape", {-1, 3}}, {"dtype", "f32"}, {"offset", 320}},
      {{"id", 8}, {"shape", {3, 4}}, {"dtype", "f32"}, {"offset", 384}},
      {{"id", 9}, {"shape", {3}}, {"dtype", "f32"}, {"offset", 448}},
  });
  json kernels = json::array({
      {{"op", "fc"}, {"in", {0, 2, 3}}, {"out", {4}}},
      {{"op", "softmax_cross_entropy"}, {"in", {4, 1}}, {"out", {5}}},
      {{"op", "objective"},
       {"in", {5}},
       {"out", {6}},
       {"attrs", {{"weights", {1.0}}}}},
      {{"op", "softmax_cross_entropy_grad"},
       {"in", {4, 1}},
       {"out", {7}},
       {"attrs", {{"scale", 1.0}}}},
      {{"op", "fc_grad_weight"}, {"in", {0, 7}}, {"out", {8}}},
      {{"op", "bias_grad"}, {"in", {7}}, {"out", {9}}},
      {{"op", "sgd_update"},
       {"in", {8}},
       {"out", json::array()},
       {"attrs",
        {{"param", "fc.weight"}, {"lr_mult", 1.0}, {"decay_mult", 1.0}}}},
      {{"op", "sgd_update"},
       {"in", {9}},
       {"out", json::array()},
       {"attrs",
        {{"param", "fc.bias"}, {"lr_mult", 2.0}, {"decay_mult", 0.0}}}},
  });
  json step = {
      {"batch", 4},
      {"arena_bytes", 512},
      {"values", values},
      {"inputs", {{"image", 0}, {"labels", 1}}},
      {"kernels", kernels},
      {"outputs",
       {{"loss", 6},
        {"logits", 4},
        {"terms",
         {{{"name", "classification"}, {"weight", 1.0}, {"value", 5}}}}}}};
  json eval = {{"batch", 4},
               {"arena_bytes", 192},
               {"values", {values[0], values[2], values[3], values[4]}},
               {"inputs", {{"image", 0}}},
               {"kernels", {kernels[0]}},
               {"outputs", {{"logits", 4}}}};
  json params = {
      {{"name", "fc.weight"},
       {"shape", {3, 4}},
       {"group", "classifier"},
       {"trainable", true},
       {"lr_mult", 1.0},
       {"decay_mult", 1.0},
       {"init", {{"kind", "gaussian"}, {"std", 0.1}, {"mean", 0.0}}}},
      {{"name", "fc.bias"},
       {"shape", {3}},
       {"group", "classifier"},
       {"trainable", true},
       {"lr_mult", 2.0},
       {"decay_mult", 0.0},
       {"init", {{"kind", "constant"}, {"value", 0.0}}}}};
  json plan = netc::testing::planJson("tiny", {1, 2, 2}, 3, params,
                                      {{"step.train", step}, {"eval", eval}});
  plan["schedule"] = {{{"phase", "train"},
                       {"program", "step.train"},
                       {"batch", 4},
                       {"epochs", 1},
                       {"steps", 0},
                       {"lr", 0.1},
                       {"momentum", 0.9},
                       {"decay", 0.0},
                       {"lr_policy", "fixed"},
                       {"lr_gamma", 0.1},
                       {"lr_every", 1},
                       {"lr_min", 0.0}}};
  return plan;
}

void writeText(const fs::path &path, const std::string &text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

plan::Plan loadJson(const TempDir &dir, const json &j) {
  writeText(dir.path / "plan.json", j.dump(1));
  return plan::loadPlan(dir.str());
}

#ifdef NETC_STEP_PLAN_DIR
/// `name`.json, which netc compiled at build time (test/unit/CMakeLists.txt),
/// loaded as a trainer in `dir`; throws if it was not compiled.
plan::Plan compiledPlan(const TempDir &dir, const std::string &name) {
  std::ifstream in(std::string(NETC_STEP_PLAN_DIR) + "/" + name + ".json");
  if (!in)
    throw std::runtime_error(name + ".json was not compiled");
  return loadJson(dir, json::parse(in));
}
#endif

/// `count` images' values in [-1000, 1000] / `scale`, in multiples of
/// 1 / scale, drawn from `seed`.
std::vector<float> testImages(int64_t count, uint64_t seed, float scale) {
  std::vector<float> images(static_cast<size_t>(count));
  for (float &v : images)
    v = float(int64_t((seed = kernels::splitmix64(seed)) % 2001) - 1000) /
        scale;
  return images;
}

/// The PlanError message of loading `j` ("" if it loads).
std::string planError(const TempDir &dir, const json &j) {
  try {
    loadJson(dir, j);
  } catch (const plan::PlanError &e) {
    return e.what();
  }
  return "";
}

//===----------------------------------------------------------------------===//
// Plan loader
//===----------------------------------------------------------------------===//

TEST(PlanTest, LoadsTinyPlan) {
  TempDir dir;
  plan::Plan p = loadJson(dir, tinyPlan());
  EXPECT_EQ(p.params.size(), 2u);
  ASSERT_EQ(p.programs.size(), 2u);
  const plan::Program &step = p.program("step.train");
  EXPECT_EQ(step.batch, 4);
  EXPECT_EQ(step.kernels.size(), 8u);
  EXPECT_EQ(step.kernels[6].op, plan::Op::SGDUpdate);
  EXPECT_EQ(*step.loss, 6);
  ASSERT_EQ(step.terms.size(), 1u);
  EXPECT_EQ(step.terms[0].name, "classification");
  EXPECT_EQ(step.value(0).count(3), 12);
  EXPECT_EQ(p.schedule.size(), 1u);
  EXPECT_EQ(p.schedule[0].lrPolicy, "fixed");
  EXPECT_EQ(p.params[0].init.kind, plan::InitSpec::Gaussian);
}

TEST(PlanTest, WrongVersion) {
  TempDir dir;
  json j = tinyPlan();
  // Version 2's switches were i32 positions in the plane: recompile too.
  for (int old : {1, 2}) {
    j["version"] = old;
    EXPECT_EQ(planError(dir, j),
              dir.str() + "/plan.json: version: trainer format version " +
                  std::to_string(old) +
                  " is older than this runtime's (3): recompile the trainer "
                  "with this netc (netc MODEL.net -o TRAINER)");
  }
  j["version"] = 4;
  EXPECT_EQ(planError(dir, j),
            dir.str() + "/plan.json: version: trainer format version 4 is "
                        "newer than this runtime's (3): use the netrun of the "
                        "netc that wrote it");
  j = tinyPlan();
  j["format"] = "onnx";
  EXPECT_EQ(planError(dir, j),
            dir.str() + "/plan.json: format: 'onnx' is not a netc trainer "
                        "(expected 'netc-trainer')");
}

// A phase runs a training step: a schedule naming a program without an
// update (a hand-edited plan) would run its steps and train nothing.
TEST(PlanTest, PhaseProgramMustUpdateParameters) {
  TempDir dir;
  json j = tinyPlan();
  json frozen = j["programs"]["step.train"];
  json kernels = json::array();
  for (const json &k : frozen["kernels"])
    if (k["op"] != "sgd_update")
      kernels.push_back(k);
  frozen["kernels"] = kernels;
  j["programs"]["step.frozen"] = frozen;
  j["schedule"][0]["program"] = "step.frozen";
  EXPECT_EQ(planError(dir, j),
            dir.str() + "/plan.json: schedule[0].program: program "
                        "'step.frozen' updates no parameter (it has no "
                        "sgd_update): a phase runs a training step");
}

TEST(PlanTest, FormatTwoFields) {
  TempDir dir;
  json j = tinyPlan();
  j["precision"] = "bf16";
  j["programs"]["eval"]["values"][3]["dtype"] = "bf16"; // the logits
  j["programs"]["step.train"]["arena_bytes"] = 576;
  j["programs"]["step.train"]["workspace"] = {{"offset", 512}, {"bytes", 64}};
  plan::Plan p = loadJson(dir, j);
  EXPECT_EQ(p.precision, plan::Precision::BF16);
  EXPECT_EQ(p.program("eval").value(4).dtype, plan::DType::BF16);
  EXPECT_EQ(p.program("eval").value(4).bytes(4), 4 * 3 * 2);
  EXPECT_EQ(p.program("step.train").workspaceBytes, 64);
  // A backend that cannot hold bf16 (the double oracle of the gradient
  // tests) refuses bf16 values with a message that says why.
  exec::ParamStoreT<double> store(p, 1);
  exec::ReferenceBackendT<double> backend;
  try {
    exec::ExecutorT<double> exe(p, "eval", store, backend);
    FAIL() << "expected PlanError";
  } catch (const plan::PlanError &e) {
    EXPECT_NE(std::string(e.what()).find(
                  "backend 'reference' cannot run value 4 (bf16, nchw); this "
                  "trainer was compiled with --precision=bf16"),
              std::string::npos)
        << e.what();
  }
  auto expectError = [&](const json &bad, const std::string &expect) {
    std::string err = planError(dir, bad);
    EXPECT_NE(err.find(expect), std::string::npos) << err;
  };
  json k = tinyPlan();
  k["programs"]["step.train"]["workspace"] = {{"offset", 448}, {"bytes", 128}};
  expectError(k, "programs.step.train.workspace: [448, +128) is not a 64-byte "
                 "aligned region of the arena (512 bytes)");
  k["programs"]["step.train"]["workspace"] = {{"offset", 384}, {"bytes", 64}};
  expectError(k, "value 8 overlaps the workspace");
  k = tinyPlan();
  k["programs"]["eval"]["values"][0]["layout"] = "nhwc"; // rank 2
  expectError(k, "a rank-2 value has no nhwc layout");
  k = tinyPlan();
  k["precision"] = "fp8";
  expectError(k, "precision: unknown precision 'fp8'");
}

TEST(PlanTest, UnknownOp) {
  TempDir dir;
  json j = tinyPlan();
  j["programs"]["step.train"]["kernels"][1]["op"] = "conv3d";
  EXPECT_EQ(planError(dir, j), dir.str() + "/plan.json: "
                                           "programs.step.train.kernels[1]: "
                                           "unknown op 'conv3d'");
}

TEST(PlanTest, BadValueId) {
  TempDir dir;
  json j = tinyPlan();
  j["programs"]["step.train"]["kernels"][4]["in"][1] = 99;
  EXPECT_EQ(planError(dir, j),
            dir.str() + "/plan.json: programs.step.train.kernels[4].in[1]: "
                        "unknown value id 99");
  j = tinyPlan();
  j["programs"]["eval"]["outputs"]["logits"] = 42;
  EXPECT_EQ(planError(dir, j), dir.str() + "/plan.json: "
                                           "programs.eval.outputs.logits: "
                                           "unknown value id 42");
}

TEST(PlanTest, OffsetOutOfArena) {
  TempDir dir;
  json j = tinyPlan();
  j["programs"]["step.train"]["arena_bytes"] = 400;
  EXPECT_EQ(planError(dir, j),
            dir.str() + "/plan.json: programs.step.train.values[8]: value 8 at "
                        "offset 384 with 48 bytes (batch 4) ends past "
                        "arena_bytes 400");
  j = tinyPlan();
  j["programs"]["step.train"]["values"][4]["offset"] = 100;
  EXPECT_EQ(planError(dir, j), dir.str() + "/plan.json: "
                                           "programs.step.train.values[4]."
                                           "offset: offset 100 is not 64-byte "
                                           "aligned");
}

TEST(PlanTest, OtherErrors) {
  TempDir dir;
  std::string f = dir.str() + "/plan.json: ";
  json j = tinyPlan();
  j["programs"]["step.train"]["values"][1]["dtype"] = "f16";
  EXPECT_EQ(planError(dir, j),
            f + "programs.step.train.values[1].dtype: "
                "unknown dtype 'f16' (expected f32, bf16, i32 or u8)");
  j = tinyPlan();
  j["programs"]["step.train"]["values"][2]["param"] = "fc.nope";
  EXPECT_EQ(planError(dir, j), f + "programs.step.train.values[2].param: "
                                   "unknown parameter 'fc.nope'");
  j = tinyPlan();
  j["programs"]["step.train"]["kernels"][6]["attrs"]["param"] = "x";
  EXPECT_EQ(planError(dir, j), f + "programs.step.train.kernels[6].attrs."
                                   "param: unknown parameter 'x'");
  j = tinyPlan();
  j["programs"]["step.train"]["kernels"][3]["attrs"].erase("scale");
  EXPECT_EQ(planError(dir, j), f + "programs.step.train.kernels[3].attrs: "
                                   "'softmax_cross_entropy_grad' needs "
                                   "attribute 'scale'");
  j = tinyPlan();
  j["programs"]["step.train"]["kernels"][1]["in"] = {4};
  EXPECT_EQ(planError(dir, j), f + "programs.step.train.kernels[1].in: "
                                   "'softmax_cross_entropy' takes 2 operands, "
                                   "got 1");
  j = tinyPlan();
  j["programs"]["step.train"]["values"][7]["offset"] = 128; // = logits
  EXPECT_EQ(planError(dir, j), f + "programs.step.train.kernels[3].out[0]: "
                                   "output value 7 overlaps input value 4 in "
                                   "the arena, which "
                                   "'softmax_cross_entropy_grad' does not "
                                   "allow");
  // all_reduce_mean: one result per operand; data_parallel's bucket size.
  j = tinyPlan();
  j["programs"]["step.train"]["kernels"][6] = {
      {"op", "all_reduce_mean"}, {"in", {5}}, {"attrs", {{"bucket", 0}}}};
  EXPECT_EQ(planError(dir, j), f + "programs.step.train.kernels[6].out: "
                                   "'all_reduce_mean' has one result per "
                                   "operand (1), got 0");
  j = tinyPlan();
  j["data_parallel"] = {{"bucket_bytes", 0}};
  EXPECT_EQ(planError(dir, j), f + "data_parallel.bucket_bytes: 0 is not a "
                                   "positive byte count");
  j = tinyPlan();
  j.erase("schedule");
  EXPECT_EQ(planError(dir, j), f + "missing field 'schedule'");
  // The torchvision names (export's map) are checked with the plan, so that
  // `info` refuses what `export` would.
  j = tinyPlan();
  j["torchvision"] = {{"fc.weight", 5}};
  EXPECT_EQ(planError(dir, j), f + "torchvision.fc.weight: expected a string, "
                                   "got 5");
  j["torchvision"] = {{"nope", "classifier.weight"}};
  EXPECT_EQ(planError(dir, j),
            f + "torchvision.nope: not a parameter of the plan");
  j = tinyPlan();
  j["schedule"][0]["phase"] = "";
  EXPECT_EQ(planError(dir, j), f + "schedule[0].phase: a phase needs a name "
                                   "(messages, metrics and the checkpoint "
                                   "name it)");
  // Names reach messages and progress lines: no control characters.
  j = tinyPlan();
  j["schedule"][0]["phase"] = "p\x1b]0;title\x07";
  EXPECT_EQ(planError(dir, j), f + "schedule[0].phase: a name holds the "
                                   "control character 0x1B");
  j = tinyPlan();
  j["schedule"][0]["phase"] = "jo\xc2\x9b"
                              "2Jint";
  EXPECT_EQ(planError(dir, j), f + "schedule[0].phase: a name holds the "
                                   "control character U+009B");
  j = tinyPlan();
  j["params"][0]["name"] = "fc\nweight";
  EXPECT_EQ(planError(dir, j).rfind(f + "params[0].name: a name holds the "
                                        "control character 0x0A",
                                    0),
            0u)
      << planError(dir, j);
  j = tinyPlan();
  j["schedule"][0]["lr_policy"] = "poly";
  EXPECT_EQ(planError(dir, j), f + "schedule[0].lr_policy: unknown lr_policy "
                                   "'poly' (expected fixed, step or cosine)");
  // Values the kernels take as 32-bit floats must be ones.
  j = tinyPlan();
  j["params"][0]["init"] = {{"kind", "gaussian"}, {"std", 1e39}};
  EXPECT_EQ(planError(dir, j), f + "params[0].init.std: 1e+39 is beyond the "
                                   "32-bit floats the trainer computes in (at "
                                   "most 3.4e38)");
  j = tinyPlan();
  j["data"]["std"] = {1e-45};
  EXPECT_EQ(planError(dir, j), f + "data.std[0]: std must be positive and 1 / "
                                   "std a 32-bit float, got 1e-45");
  writeText(dir.path / "plan.json", "{ not json");
  try {
    plan::loadPlan(dir.str());
    FAIL() << "expected PlanError";
  } catch (const plan::PlanError &e) {
    EXPECT_EQ(std::string(e.what()).rfind(f + "invalid JSON", 0), 0u)
        << e.what();
  }
  EXPECT_THROW(plan::loadPlan((dir.path / "absent").string()), plan::PlanError);
}

TEST(PlanTest, ExecutorChecksGeometry) {
  TempDir dir;
  json j = tinyPlan();
  // The fc output declared with 2 features, the weight has 3 rows.
  j["programs"]["step.train"]["values"][4]["shape"] = {-1, 2};
  j["programs"]["step.train"]["values"][7]["shape"] = {-1, 2};
  plan::Plan p = loadJson(dir, j);
  exec::ParamStore store(p, 1);
  exec::ReferenceBackend backend;
  try {
    exec::Executor exe(p, "step.train", store, backend);
    FAIL() << "expected PlanError";
  } catch (const plan::PlanError &e) {
    EXPECT_EQ(std::string(e.what()),
              dir.str() + "/plan.json: programs.step.train.kernels[0]: 'fc': "
                          "weight has 12 elements, expected 8");
  }
}

//===----------------------------------------------------------------------===//
// Safetensors
//===----------------------------------------------------------------------===//

// An output through a link is written where the link points, a dangling
// one included (the rename would otherwise replace the link with the file).
TEST(FileTest, OutputsGoWhereLinksPoint) {
  TempDir dir;
  fs::create_directories(dir.path / "out");
  std::ofstream(dir.path / "out" / "old.safetensors") << "x";
  fs::create_symlink("out/old.safetensors", dir.path / "live");
  fs::create_symlink("out/new.safetensors", dir.path / "dangling");
  fs::create_symlink("dangling", dir.path / "chain");
  fs::create_symlink("loop2", dir.path / "loop1");
  fs::create_symlink("loop1", dir.path / "loop2");
  EXPECT_EQ(fs::path(io::outputTarget((dir.path / "live").string())),
            fs::canonical(dir.path / "out" / "old.safetensors"));
  EXPECT_EQ(fs::path(io::outputTarget((dir.path / "dangling").string())),
            dir.path / "out/new.safetensors");
  EXPECT_EQ(fs::path(io::outputTarget((dir.path / "chain").string())),
            dir.path / "out/new.safetensors");
  io::TensorFile f;
  f.tensors["w"] = {{1}, {2.0f}};
  io::writeSafetensors((dir.path / "chain").string(), f);
  EXPECT_TRUE(fs::is_symlink(dir.path / "chain"));
  EXPECT_TRUE(fs::is_symlink(dir.path / "dangling"));
  EXPECT_EQ(io::readSafetensors((dir.path / "out" / "new.safetensors").string())
                .tensors.at("w")
                .data,
            (std::vector<float>{2.0f}));
  EXPECT_THROW(io::outputTarget((dir.path / "loop1").string()), io::FileError);
}

// The temporary file of an atomic write is made afresh: a link planted under
// its name is removed, not written through, and a failed write leaves the
// target as it was.
TEST(FileTest, AtomicWritesFollowNoPlantedTemporary) {
  TempDir dir;
  writeText(dir.path / "victim", "precious");
  writeText(dir.path / "out.png", "old");
  fs::path planted = dir.path / (".out.png.tmp." + std::to_string(::getpid()));
  fs::create_symlink("victim", planted);
  io::writeFileAtomically((dir.path / "out.png").string(),
                          std::vector<std::string_view>{"new ", "bytes"});
  EXPECT_EQ(netc::testing::readText((dir.path / "victim").string()),
            "precious");
  EXPECT_EQ(netc::testing::readText((dir.path / "out.png").string()),
            "new bytes");
  EXPECT_FALSE(fs::exists(planted) || fs::is_symlink(planted));
  fs::create_directory(dir.path / "folder");
  EXPECT_THROW(io::writeFileAtomically((dir.path / "folder").string(), "x"),
               io::FileError);
  EXPECT_TRUE(fs::is_directory(dir.path / "folder"));
}

TEST(FileTest, PrintableEscapesControlBytesOnly) {
  // Newlines and tabs lay messages out; every other control byte (an escape
  // sequence in a file name) is shown as \xNN; UTF-8 is left alone.
  EXPECT_EQ(io::printable("a\x1b[2Jb\n\tc\x7f\x01"),
            "a\\x1b[2Jb\n\tc\\x7f\\x01");
  EXPECT_EQ(io::printable("caf\xc3\xa9.jpg"), "caf\xc3\xa9.jpg");
  // As one line (netrun's error): a newline in a file name is escaped too.
  EXPECT_EQ(io::printable("x\ny.jpg: bad\t!", false), "x\\x0ay.jpg: bad\t!");
  EXPECT_EQ(io::printable(std::string("a\0b", 3)), "a\\x00b");
  // C1 controls (U+009B: CSI) and bytes that are not UTF-8 are escaped;
  // other multi-byte characters are not.
  EXPECT_EQ(io::printable("a\xc2\x9b"
                          "2Jb"),
            "a\\xc2\\x9b2Jb");
  EXPECT_EQ(io::printable("\x9b\xff\xe2\x82"), "\\x9b\\xff\\xe2\\x82");
  EXPECT_EQ(io::printable("\xc2\xa0\xe2\x82\xac\xf0\x9f\x98\x80"),
            "\xc2\xa0\xe2\x82\xac\xf0\x9f\x98\x80");
}

TEST(SafetensorsTest, RoundTrip) {
  TempDir dir;
  io::TensorFile f;
  f.tensors["a"] = {{2, 3}, {1, 2, 3, 4, 5, 6}};
  f.tensors["b.scalar"] = {{}, {-1.5f}};
  f.tensors["c"] = {{1}, {3.25f}};
  f.metadata["k"] = "v";
  std::string path = (dir.path / "t.safetensors").string();
  io::writeSafetensors(path, f);
  io::TensorFile g = io::readSafetensors(path);
  ASSERT_EQ(g.tensors.size(), 3u);
  EXPECT_EQ(g.tensors["a"].shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(g.tensors["a"].data, f.tensors["a"].data);
  EXPECT_EQ(g.tensors["b.scalar"].data, f.tensors["b.scalar"].data);
  EXPECT_EQ(g.tensors["c"].data[0], 3.25f);
  EXPECT_EQ(g.metadata["k"], "v");
  // No temporary file is left behind.
  int files = 0;
  for (auto &e : fs::directory_iterator(dir.path))
    files += e.is_regular_file();
  EXPECT_EQ(files, 1);
  // The header is 8-byte aligned.
  std::ifstream in(path, std::ios::binary);
  uint64_t len = 0;
  in.read(reinterpret_cast<char *>(&len), 8);
  EXPECT_EQ(len % 8, 0u);
}

std::string readError(const std::string &path) {
  try {
    io::readSafetensors(path);
  } catch (const io::SafetensorsError &e) {
    return e.what();
  }
  return "";
}

std::string fileBytes(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string withHeader(const std::string &header, const std::string &data) {
  std::string s(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i)
    s[i] = char(n >> (8 * i));
  return s + header + data;
}

TEST(SafetensorsTest, CorruptFiles) {
  TempDir dir;
  io::TensorFile f;
  f.tensors["w"] = {{2, 2}, {1, 2, 3, 4}};
  std::string good = (dir.path / "good.safetensors").string();
  io::writeSafetensors(good, f);
  std::string bytes = fileBytes(good);
  std::string p = (dir.path / "bad.safetensors").string();

  writeText(p, bytes.substr(0, bytes.size() - 4));
  EXPECT_EQ(readError(p), p + ": tensor 'w': data_offsets [0, 16] are outside "
                              "the data (12 bytes; truncated file?)");
  writeText(p, bytes.substr(0, 5));
  EXPECT_EQ(readError(p), p + ": too short for a safetensors header (5 bytes)");
  std::string huge = bytes;
  huge[7] = 0x7f;
  writeText(p, huge);
  EXPECT_EQ(readError(p).rfind(p + ": header length ", 0), 0u) << readError(p);
  // __metadata__ maps strings to strings: a checkpoint's netc.plan as a
  // number once passed for a checkpoint without one.
  writeText(p, withHeader(R"({"__metadata__":{"netc.plan":5}})", ""));
  EXPECT_EQ(readError(p), p + ": __metadata__ 'netc.plan' is not a string");
  writeText(p, withHeader("{\"w\": [", ""));
  EXPECT_EQ(readError(p).rfind(p + ": header is not valid JSON", 0), 0u);
  writeText(
      p, withHeader(R"({"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})",
                    "abcd"));
  EXPECT_EQ(readError(p), p + ": tensor 'w': dtype F16 is not supported (only "
                              "F32)");
  writeText(
      p, withHeader(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
                    "abcdefgh"));
  EXPECT_EQ(readError(p), p + ": tensor 'w': shape [3] needs 12 bytes but "
                              "data_offsets span 8");
  // The data is covered exactly once: no overlap, no hole, nothing after.
  // (Two one-float tensors, `first` and `second` in the header's order, at
  // the given byte ranges.)
  auto twoTensors = [&](const char *first, std::pair<int, int> at1,
                        const char *second, std::pair<int, int> at2,
                        const std::string &data) {
    const char *f32 = R"("dtype":"F32","shape":[1])";
    writeText(p,
              withHeader(fmt::format(R"({{"{}":{{{},"data_offsets":[{},{}]}},)"
                                     R"("{}":{{{},"data_offsets":[{},{}]}}}})",
                                     first, f32, at1.first, at1.second, second,
                                     f32, at2.first, at2.second),
                         data));
  };
  twoTensors("a", {0, 4}, "b", {0, 4}, "abcd");
  EXPECT_EQ(readError(p), p + ": tensors 'a' and 'b' overlap in the data "
                              "(bytes 0 to 4)");
  twoTensors("a", {0, 4}, "b", {8, 12}, "abcdefghijkl");
  EXPECT_EQ(readError(p), p + ": bytes 4 to 8 of the data belong to no tensor");
  twoTensors("b", {0, 4}, "a", {4, 8}, "abcdefghXY");
  EXPECT_EQ(readError(p), p + ": bytes 8 to 10 of the data belong to no "
                              "tensor (after the last one)");
  // In another order than the names', and with nothing left over: read.
  twoTensors("b", {0, 4}, "a", {4, 8},
             std::string("\0\0\x80\x3f\0\0\0\x40", 8));
  EXPECT_EQ(readError(p), "");
  io::TensorFile ab = io::readSafetensors(p);
  EXPECT_EQ(ab.tensors.at("b").data, (std::vector<float>{1.0f}));
  EXPECT_EQ(ab.tensors.at("a").data, (std::vector<float>{2.0f}));
  EXPECT_EQ(readError((dir.path / "none").string()),
            (dir.path / "none").string() + ": no such file");
}

//===----------------------------------------------------------------------===//
// Parameter store
//===----------------------------------------------------------------------===//

TEST(ParamStoreTest, InitKinds) {
  TempDir dir;
  io::TensorFile f;
  f.tensors["pre"] = {{3}, {7, 8, 9}};
  std::string file = (dir.path / "pre.safetensors").string();
  io::writeSafetensors(file, f);
  json j = tinyPlan();
  j["params"][1]["init"] = {{"kind", "file"}, {"path", file}, {"key", "pre"}};
  j["params"][0]["init"] = {{"kind", "gaussian"}, {"std", 2.0}, {"mean", 1.0}};
  // A plan without a trainer directory (built in memory) reads path/key.
  plan::Plan p = plan::parsePlan(j.dump(), "mem/plan.json", "");
  exec::ParamStore a(p, 5), b(p, 5), c(p, 6);
  EXPECT_EQ(std::vector<float>(a.at("fc.bias").value.begin(),
                               a.at("fc.bias").value.end()),
            (std::vector<float>{7, 8, 9}));
  EXPECT_EQ(a.at("fc.weight").value, b.at("fc.weight").value);
  EXPECT_NE(a.at("fc.weight").value, c.at("fc.weight").value);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.at("fc.weight").value.data()) % 64,
            0u);
  // A std that is a 32-bit float whose draws are not.
  json huge = j;
  huge["params"][0]["init"] = {{"kind", "gaussian"}, {"std", 3e38}};
  plan::Plan h = plan::parsePlan(huge.dump(), "mem/plan.json", "");
  try {
    exec::ParamStore e(h, 5);
    FAIL() << "expected SafetensorsError";
  } catch (const io::SafetensorsError &e) {
    EXPECT_EQ(std::string(e.what()).rfind("parameter 'fc.weight': its initial "
                                          "value is ",
                                          0),
              0u)
        << e.what();
  }
  // A trainer reads its own params.safetensors and nothing outside it: with
  // that file missing, it does not fall back to the original file.
  plan::Plan t = loadJson(dir, j);
  try {
    exec::ParamStore e(t, 1);
    FAIL() << "expected SafetensorsError";
  } catch (const io::SafetensorsError &e) {
    EXPECT_EQ(std::string(e.what()),
              (dir.path / "params.safetensors").string() + ": no such file");
  }
  f.tensors.clear();
  f.tensors["fc.weight"] = {{3, 4}, std::vector<float>(12, 0.5f)};
  io::writeSafetensors((dir.path / "params.safetensors").string(), f);
  try {
    exec::ParamStore e(t, 1);
    FAIL() << "expected SafetensorsError";
  } catch (const io::SafetensorsError &e) {
    EXPECT_NE(std::string(e.what()).find("no tensor 'fc.bias' (the initial "
                                         "value of parameter 'fc.bias'"),
              std::string::npos)
        << e.what();
  }
  f.tensors["fc.bias"] = {{3}, {1, 1, 1}};
  io::writeSafetensors((dir.path / "params.safetensors").string(), f);
  exec::ParamStore d(t, 5);
  EXPECT_EQ(d.at("fc.bias").value[0], 1.0f);
  // Shape mismatch.
  j["params"][1]["init"]["key"] = "pre";
  j["params"][1]["shape"] = {4};
  for (int id : {3, 9})
    j["programs"]["step.train"]["values"][id]["shape"] = {4};
  j["programs"]["eval"]["values"][2]["shape"] = {4};
  plan::Plan q = plan::parsePlan(j.dump(), "mem/plan.json", "");
  try {
    exec::ParamStore e(q, 1);
    FAIL() << "expected SafetensorsError";
  } catch (const io::SafetensorsError &e) {
    EXPECT_EQ(std::string(e.what()),
              file + ": tensor 'pre' has shape [3] but parameter 'fc.bias' is "
                     "[4]");
  }
}

//===----------------------------------------------------------------------===//
// Executor
//===----------------------------------------------------------------------===//

struct TinyRun {
  TempDir dir;
  plan::Plan p;
  exec::ParamStore store;
  exec::ReferenceBackend backend;
  exec::Executor exe;
  float x[4][4] = {
      {1, 0, -1, 2}, {0.5f, 0.5f, 0, -1}, {-2, 1, 1, 0}, {0, 0, 3, 1}};
  int32_t y[4] = {0, 2, 1, 2};
  float w0[3][4] = {{0.1f, -0.2f, 0.3f, 0.0f},
                    {0.0f, 0.1f, -0.1f, 0.2f},
                    {-0.3f, 0.2f, 0.1f, 0.1f}};
  float b0[3] = {0.1f, 0.0f, -0.1f};

  TinyRun()
      : p(loadJson(dir, tinyPlan())), store(p, 1),
        exe(p, "step.train", store, backend) {
    std::copy(&w0[0][0], &w0[0][0] + 12, store.at("fc.weight").value.data());
    std::copy(b0, b0 + 3, store.at("fc.bias").value.data());
    std::copy(&x[0][0], &x[0][0] + 16, exe.f32(exe.inputId("image")));
    std::copy(y, y + 4, exe.i32(exe.inputId("labels")));
  }

  /// The loss and weight gradient by hand, in double, for the first n rows.
  double handLoss(int n, double dw[3][4]) const {
    double loss = 0;
    for (int o = 0; o < 3; ++o)
      for (int i = 0; i < 4; ++i)
        dw[o][i] = 0;
    for (int r = 0; r < n; ++r) {
      double z[3], m = -1e30, s = 0;
      for (int o = 0; o < 3; ++o) {
        z[o] = b0[o];
        for (int i = 0; i < 4; ++i)
          z[o] += double(w0[o][i]) * x[r][i];
        m = std::max(m, z[o]);
      }
      for (int o = 0; o < 3; ++o)
        s += std::exp(z[o] - m);
      loss += -(z[y[r]] - m - std::log(s));
      for (int o = 0; o < 3; ++o) {
        double g = (std::exp(z[o] - m) / s - (o == y[r])) / n;
        for (int i = 0; i < 4; ++i)
          dw[o][i] += g * x[r][i];
      }
    }
    return loss / n;
  }
};

TEST(ExecutorTest, LossAndUpdateMatchHandComputation) {
  TinyRun t;
  exec::StepContext ctx;
  ctx.lr = 0.5;
  ctx.momentum = 0.9;
  ctx.decay = 0.0;
  t.exe.run(4, ctx);
  double dw[3][4];
  double want = t.handLoss(4, dw);
  EXPECT_NEAR(t.exe.scalar(6), want, 1e-6);
  EXPECT_NEAR(t.exe.scalar(5), want, 1e-6);
  // First step from zero momentum: w -= lr * dw.
  const float *w = t.store.at("fc.weight").value.data();
  for (int o = 0; o < 3; ++o)
    for (int i = 0; i < 4; ++i)
      EXPECT_NEAR(w[o * 4 + i], t.w0[o][i] - 0.5 * dw[o][i], 1e-6);
  // The momentum buffer holds lr * dw.
  EXPECT_NEAR(t.store.at("fc.weight").momentum[0], 0.5 * dw[0][0], 1e-6);
}

TEST(ExecutorTest, DecayAndMultipliersReachTheUpdate) {
  // The phase's decay through the compiled update, with the plan's
  // multipliers: the weight (lr_mult 1, decay_mult 1) decays, the bias
  // (lr_mult 2, decay_mult 0) does not and moves at twice the rate.
  TinyRun t;
  exec::StepContext ctx;
  ctx.lr = 0.5;
  ctx.momentum = 0.9;
  ctx.decay = 0.1;
  t.exe.run(4, ctx);
  double dw[3][4];
  t.handLoss(4, dw);
  const float *w = t.store.at("fc.weight").value.data();
  for (int o = 0; o < 3; ++o)
    for (int i = 0; i < 4; ++i)
      EXPECT_NEAR(w[o * 4 + i],
                  t.w0[o][i] - 0.5 * (dw[o][i] + 0.1 * t.w0[o][i]), 1e-6);
  // The bias gradient is the column sum of dlogits: recover it from the
  // update with decay 0 and lr_mult 2.
  TinyRun u;
  exec::StepContext plain = ctx;
  plain.decay = 0;
  u.exe.run(4, plain);
  for (int o = 0; o < 3; ++o)
    EXPECT_FLOAT_EQ(t.store.at("fc.bias").value[o],
                    u.store.at("fc.bias").value[o]);
  // And a second step uses the momentum: v = 0.9 v + lr (g + decay w).
  std::vector<float> v1 = t.store.hostValue("fc.weight", true);
  EXPECT_NEAR(v1[0], 0.5 * (dw[0][0] + 0.1 * t.w0[0][0]), 1e-6);
}

TEST(ExecutorTest, KeepsOutputsWhoseBytesAreReused) {
  TempDir dir;
  json j = tinyPlan();
  // The bias gradient (kernel 5) reuses the bytes of the cross-entropy term
  // (kernel 1), whose lifetime ended at the objective (kernel 2).
  j["programs"]["step.train"]["values"][9]["offset"] = 192;
  plan::Plan p = loadJson(dir, j);
  exec::ParamStore store(p, 1);
  exec::ReferenceBackend backend;
  exec::Executor exe(p, "step.train", store, backend);
  TinyRun t;
  std::copy(&t.w0[0][0], &t.w0[0][0] + 12, store.at("fc.weight").value.data());
  std::copy(t.b0, t.b0 + 3, store.at("fc.bias").value.data());
  std::copy(&t.x[0][0], &t.x[0][0] + 16, exe.f32(0));
  std::copy(t.y, t.y + 4, exe.i32(1));
  exe.keep(5);
  exec::StepContext ctx;
  exe.run(4, ctx);
  double dw[3][4];
  double want = t.handLoss(4, dw);
  EXPECT_NEAR(exe.scalar(5), want, 1e-6);
  EXPECT_NEAR(exe.scalar(6), want, 1e-6);
  EXPECT_NE(*exe.f32(5), exe.scalar(5)); // the arena bytes were reused
}

TEST(ExecutorTest, SmallerBatch) {
  TinyRun t;
  exec::StepContext ctx;
  ctx.lr = 0.0;
  t.exe.run(2, ctx);
  double dw[3][4];
  EXPECT_NEAR(t.exe.scalar(6), t.handLoss(2, dw), 1e-6);
  EXPECT_THROW(t.exe.run(5, ctx), std::invalid_argument);
  EXPECT_THROW(t.exe.run(0, ctx), std::invalid_argument);
}

TEST(ExecutorTest, LossFallsOnFixedBatch) {
  TinyRun t;
  exec::StepContext ctx;
  ctx.lr = 0.1;
  ctx.momentum = 0.9;
  ctx.decay = 5e-4;
  t.exe.run(4, ctx);
  double first = t.exe.scalar(6), last = first;
  for (int s = 1; s < 50; ++s) {
    ctx.step = uint64_t(s);
    t.exe.run(4, ctx);
    last = t.exe.scalar(6);
  }
  EXPECT_LT(last, 0.25 * first) << "first " << first << " last " << last;
}

TEST(ExecutorTest, EvalProgramAndBackendFactory) {
  TinyRun t;
  exec::Executor ev(t.p, "eval", t.store, t.backend);
  std::copy(&t.x[0][0], &t.x[0][0] + 16, ev.f32(0));
  exec::StepContext ctx;
  ctx.training = false;
  ev.run(4, ctx);
  const float *logits = ev.f32(4);
  double z = t.b0[1];
  for (int i = 0; i < 4; ++i)
    z += double(t.w0[1][i]) * t.x[2][i];
  EXPECT_NEAR(logits[2 * 3 + 1], z, 1e-6);
  EXPECT_STREQ(exec::makeBackend("reference")->name(), "reference");
  EXPECT_THROW(exec::makeBackend("tpu"), std::invalid_argument);
}

/// The permissions /proc/self/maps shows for the mapping holding `p`
/// ("rw-p", "---p"; "" if none holds it).
std::string mappingPerms(const void *p) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  auto a = reinterpret_cast<uintptr_t>(p);
  while (std::getline(maps, line)) {
    unsigned long lo = 0, hi = 0;
    char perms[5] = {};
    if (std::sscanf(line.c_str(), "%lx-%lx %4s", &lo, &hi, perms) == 3 &&
        a >= lo && a < hi)
      return perms;
  }
  return "";
}

/// The reference backend, recording the relu_grad+bias_grad pairs its
/// prepareProgram is given.
struct PairsProbe : exec::ReferenceBackend {
  std::vector<std::pair<size_t, size_t>> pairs;
  std::vector<size_t> unpoolPairs;
  exec::PreparedProgram
  prepareProgram(const plan::Program &program,
                 const std::vector<exec::KernelCall> &calls,
                 const std::set<int64_t> &hostValues) override {
    pairs = exec::reluGradBiasPairs(program, calls);
    unpoolPairs = exec::unpoolReluGradPairs(program, calls, hostValues);
    return exec::ReferenceBackend::prepareProgram(program, calls, hostValues);
  }
};

// A bias_grad is paired with the relu_grad that writes its input, the first
// such bias_grad only, unless a kernel between them writes over that
// input's bytes (here a scale into a view of it).
TEST(ExecutorTest, ReluGradBiasPairsAreTheBiasGradsOfARelusGradient) {
  netc::testing::PlanBuilder b(2);
  const std::vector<int64_t> map = {-1, 4, 3, 3};
  int64_t y = b.value(map), g = b.value(map), g2 = b.value(map);
  int64_t d1 = b.value(map), s1 = b.value(map), b1 = b.value({4}),
          b1again = b.value({4});
  b.kernel("relu_grad", {g, y}, {d1});              // 0
  b.kernel("scale", {d1}, {s1}, {{"factor", 2.0}}); // 1: reads only
  b.kernel("bias_grad", {d1}, {b1});                // 2: paired with 0
  b.kernel("bias_grad", {d1}, {b1again});           // 3: not again
  int64_t d2 = b.value(map), over = b.view(d2, map), b2 = b.value({4});
  b.kernel("relu_grad", {g2, y}, {d2});               // 4
  b.kernel("scale", {g2}, {over}, {{"factor", 3.0}}); // 5: writes d2's bytes
  b.kernel("bias_grad", {d2}, {b2});                  // 6: not paired
  int64_t d3 = b.value(map), b3 = b.value({4});
  b.kernel("relu_grad", {g2, y}, {d3}); // 7
  b.kernel("bias_grad", {g2}, {b3});    // 8: not its output
  plan::Plan p = plan::parsePlan(b.planText(5), "pairs-test/plan.json", "");
  PairsProbe probe;
  exec::ParamStore store(p, 3, probe);
  exec::Executor exe(p, "p", store, probe);
  EXPECT_EQ(probe.pairs, (std::vector<std::pair<size_t, size_t>>{{0, 2}}));
}

// An unpool through switches (a max-pool's backward) is paired with the
// relu_grad after it when that relu_grad alone reads its output, as its
// gradient, and writes none of the unpool's inputs.
TEST(ExecutorTest, UnpoolReluGradPairsAreAMaxPoolsBackwardAndItsRelu) {
  netc::testing::PlanBuilder b(2);
  const std::vector<int64_t> map = {-1, 4, 4, 4}, half = {-1, 4, 2, 2};
  const json pool = {{"kernel", {2, 2}}, {"stride", {2, 2}}, {"pad", {0, 0}}};
  json unpool = pool;
  unpool["size"] = {4, 4};
  int64_t y = b.value(map), pooled = b.value(half), sw = b.value(half, "u8"),
          dy = b.value(half);
  b.kernel("max_pool", {y}, {pooled, sw}, pool); // 0
  int64_t r1 = b.value(map), d1 = b.value(map);
  b.kernel("unpool", {dy, sw}, {r1}, unpool); // 1: paired
  b.kernel("relu_grad", {r1, y}, {d1});       // 2
  int64_t r2 = b.value(map), d2 = b.value(map), s2 = b.value(map);
  b.kernel("unpool", {dy, sw}, {r2}, unpool);       // 3: r2 read twice
  b.kernel("relu_grad", {r2, y}, {d2});             // 4
  b.kernel("scale", {r2}, {s2}, {{"factor", 2.0}}); // 5
  int64_t r3 = b.value(map), d3 = b.value(map);
  b.kernel("unpool", {dy, sw}, {r3}, unpool); // 6: its relu_grad reads
  b.kernel("relu_grad", {y, r3}, {d3});       // 7: r3 as y, not as grad
  int64_t r4 = b.value(map), d4 = b.view(dy, map);
  b.kernel("unpool", {dy, sw}, {r4}, unpool); // 8: its relu_grad writes
  b.kernel("relu_grad", {r4, y}, {d4});       // 9: over dy
  int64_t r5 = b.value(map), d5 = b.value(map);
  json fixed = unpool;
  fixed["position"] = {0, 0};
  b.kernel("unpool", {dy}, {r5}, fixed); // 10: a fixed position
  b.kernel("relu_grad", {r5, y}, {d5});  // 11
  plan::Plan p = plan::parsePlan(b.planText(5), "pairs-test/plan.json", "");
  PairsProbe probe;
  exec::ParamStore store(p, 3, probe);
  exec::Executor exe(p, "p", store, probe);
  EXPECT_EQ(probe.unpoolPairs, (std::vector<size_t>{1}));
}

// The guarded backend keeps a device's rules on the host: its memory is
// closed to the host except while it works on it, and uploads, copies and
// zeroing wait in its queue until the host waits.
TEST(GuardedBackendTest, MemoryIsClosedAndWorkWaitsForTheHost) {
  std::unique_ptr<exec::Backend> b = exec::makeBackend("guarded");
  EXPECT_STREQ(b->name(), "guarded");
  EXPECT_FALSE(b->isHost());
  std::unique_ptr<exec::Buffer> buf = b->allocate(4 * sizeof(float), "x");
  EXPECT_FALSE(buf->isHost());
  EXPECT_EQ(mappingPerms(buf->data()), "---p");
  // From staging memory an upload reads its source at the wait (as a
  // GPU's copy from page-locked memory does); from other memory at once.
  std::unique_ptr<exec::Buffer> staging =
      b->allocateStaging(sizeof(float), "staging");
  EXPECT_TRUE(staging->isHost());
  auto *staged = static_cast<float *>(staging->data());
  float src[4] = {1, 2, 3, 4}, back[4] = {};
  b->upload(buf->data(), src, sizeof src);
  *staged = 7;
  b->upload(buf->data(), staged, sizeof(float));
  *staged = 8; // before the wait: the staged upload reads this
  src[1] = 9;  // the plain one has read its 2 already
  auto *f = static_cast<float *>(buf->data());
  b->zero(f + 3, sizeof(float));
  b->copy(f + 2, f + 1, sizeof(float));
  EXPECT_EQ(mappingPerms(buf->data()), "---p"); // nothing ran yet
  b->download(back, buf->data(), sizeof back);
  EXPECT_EQ(back[0], 8.0f);
  EXPECT_EQ(back[1], 2.0f);
  EXPECT_EQ(back[2], 2.0f);
  EXPECT_EQ(back[3], 0.0f);
  EXPECT_EQ(mappingPerms(buf->data()), "---p"); // closed again
}

// An upload beside the kernels (a GPU's copy stream) is in flight from its
// issue to awaitAside() and may read its staging source until the first
// wait after that: the guarded backend fills the destination with 0xff
// bytes until the join (work queued before it, which must not touch it,
// reads them), lands the bytes at the join, and checks at that wait that
// the source did not change.
TEST(GuardedBackendTest, AsideUploadsAreInFlightUntilTheJoin) {
  std::unique_ptr<exec::Backend> b = exec::makeBackend("guarded");
  std::unique_ptr<exec::Buffer> buf = b->allocate(3 * sizeof(float), "x");
  std::unique_ptr<exec::Buffer> staging =
      b->allocateStaging(sizeof(float), "staging");
  auto *staged = static_cast<float *>(staging->data());
  auto *f = static_cast<float *>(buf->data());
  float one = 1, back[3] = {};
  b->upload(f + 1, &one, sizeof one);
  b->download(back, f, sizeof back);
  b->copy(f, f + 1, sizeof(float)); // queued, so f[1] is still in use:
  *staged = 5;
  b->uploadAside(f + 1, staged, sizeof(float)); // this copy reads 0xff bytes
  b->awaitAside();
  b->copy(f + 2, f + 1, sizeof(float)); // after the join: the 5
  b->download(back, f, sizeof back);
  uint32_t bits;
  std::memcpy(&bits, &back[0], 4);
  EXPECT_EQ(bits, 0xffffffffu);
  EXPECT_EQ(back[1], 5.0f);
  EXPECT_EQ(back[2], 5.0f);
  EXPECT_EQ(mappingPerms(buf->data()), "---p");
  // Rewritten after the wait that followed awaitAside(): allowed.
  *staged = 6;
  b->uploadAside(f + 1, staged, sizeof(float));
  b->synchronize(); // not yet joined: this wait does not cover it
  b->awaitAside();
  b->download(back, f, sizeof back);
  EXPECT_EQ(back[1], 6.0f);
  *staged = 7;
  // Rewritten before that wait: an error there, and the queued work
  // dropped, as a failed stream's is.
  b->uploadAside(f + 1, staged, sizeof(float));
  b->awaitAside();
  b->zero(f + 2, sizeof(float));
  *staged = 8;
  EXPECT_THROW(b->synchronize(), std::logic_error);
  b->download(back, f, sizeof back); // reported once
  EXPECT_EQ(back[2], 5.0f);          // the zeroing was dropped
  // From pageable memory: an ordinary upload, queued.
  float nine = 9;
  b->uploadAside(f, &nine, sizeof nine);
  b->download(back, f, sizeof back);
  EXPECT_EQ(back[0], 9.0f);
}

// A kernel runs at the host's wait, and an error it raises there names it
// (path and op), as the executor names a kernel that fails when it is run.
TEST(GuardedBackendTest, KernelsRunAtTheWaitAndTheirErrorsNameThem) {
  TempDir dir;
  plan::Plan p = loadJson(dir, tinyPlan());
  exec::ReferenceBackend reference;
  exec::GuardedBackend guarded;
  exec::ParamStore rs(p, 3, reference), gs(p, 3, guarded);
  exec::Executor r(p, "step.train", rs, reference),
      g(p, "step.train", gs, guarded);
  float x[16];
  for (int i = 0; i < 16; ++i)
    x[i] = float(i % 5) - 2.0f;
  int32_t y[4] = {0, 2, 1, 2};
  exec::StepContext ctx;
  ctx.lr = 0.5;
  ctx.momentum = 0.9;
  for (exec::Executor *e : {&r, &g}) {
    e->upload(e->inputId("image"), x, sizeof x, 4);
    e->upload(e->inputId("labels"), y, sizeof y, 4);
    e->run(4, ctx);
  }
  EXPECT_EQ(g.scalar(6), r.scalar(6));
  EXPECT_EQ(gs.hostValue("fc.weight"), rs.hostValue("fc.weight"));
  // A label out of range fails softmax cross-entropy at the wait.
  y[3] = 9;
  g.upload(g.inputId("labels"), y, sizeof y, 4);
  g.run(4, ctx);
  try {
    (void)g.scalar(6);
    ADD_FAILURE() << "no error for label 9 of 3 classes";
  } catch (const std::exception &e) {
    EXPECT_NE(std::string(e.what()).find("'softmax_cross_entropy'"),
              std::string::npos)
        << e.what();
  }
}

/// A plan with one program `p` over the given values and kernels.
json onlyProgram(json values, json kernels, json params, int64_t arena,
                 int64_t batch) {
  json j = tinyPlan();
  j["params"] = params;
  // The plan's input is one sample of the image value (value 0).
  int64_t per = 1;
  for (size_t d = 1; d < values[0]["shape"].size(); ++d)
    per *= values[0]["shape"][d].get<int64_t>();
  j["input"] = {per, 1, 1};
  j["programs"] = {{"p",
                    {{"batch", batch},
                     {"arena_bytes", arena},
                     {"values", values},
                     {"inputs", netc::testing::handInputs(values, kernels)},
                     {"kernels", kernels},
                     {"outputs", json::object()}}}};
  j["schedule"] = json::array();
  return j;
}

TEST(ExecutorTest, DropoutMasksRegenerateAndScaleAddRunInPlace) {
  TempDir dir;
  json values = json::array({
      {{"id", 0}, {"shape", {-1, 64}}, {"dtype", "f32"}, {"offset", 0}},
      {{"id", 1}, {"shape", {-1, 64}}, {"dtype", "f32"}, {"offset", 0}},
      {{"id", 2}, {"shape", {-1, 64}}, {"dtype", "f32"}, {"offset", 512}},
      {{"id", 3}, {"shape", {-1, 64}}, {"dtype", "f32"}, {"offset", 512}},
      {{"id", 4}, {"shape", {-1, 64}}, {"dtype", "f32"}, {"offset", 512}},
      {{"id", 5}, {"shape", {-1, 64}}, {"dtype", "f32"}, {"offset", 1024}},
  });
  json dropout = {{"ratio", 0.5}, {"seed", 17}};
  json kernels = json::array({
      {{"op", "dropout"}, {"in", {0}}, {"out", {1}}, {"attrs", dropout}},
      {{"op", "scale"},
       {"in", {2}},
       {"out", {3}},
       {"attrs", {{"factor", 3.0}}}},
      {{"op", "dropout_grad"}, {"in", {3}}, {"out", {4}}, {"attrs", dropout}},
      {{"op", "add"}, {"in", {1, 4}}, {"out", {5}}},
  });
  plan::Plan p =
      loadJson(dir, onlyProgram(values, kernels, json::array(), 1536, 2));
  exec::ParamStore store(p, 1);
  exec::ReferenceBackend backend;
  exec::Executor exe(p, "p", store, backend);
  std::vector<float> before[2];
  for (uint64_t step : {5u, 6u}) {
    for (int i = 0; i < 128; ++i) {
      exe.f32(0)[i] = float(i + 1);
      exe.f32(2)[i] = 1.0f;
    }
    exec::StepContext ctx;
    ctx.step = step;
    exe.run(2, ctx);
    int kept = 0;
    for (int i = 0; i < 128; ++i) {
      float y = exe.f32(1)[i], g = exe.f32(4)[i];
      bool keep = y != 0;
      kept += keep;
      EXPECT_FLOAT_EQ(y, keep ? 2.0f * float(i + 1) : 0.0f);
      EXPECT_FLOAT_EQ(g, keep ? 6.0f : 0.0f) << "mask differs at " << i;
      EXPECT_FLOAT_EQ(exe.f32(5)[i], y + g);
    }
    EXPECT_GT(kept, 40);
    EXPECT_LT(kept, 88);
    before[step - 5].assign(exe.f32(1), exe.f32(1) + 128);
  }
  EXPECT_NE(before[0], before[1]) << "the mask must change with the step";
  // Evaluation: identity.
  for (int i = 0; i < 128; ++i)
    exe.f32(0)[i] = float(i + 1);
  exec::StepContext ev;
  ev.training = false;
  exe.run(2, ev);
  for (int i = 0; i < 128; ++i)
    EXPECT_EQ(exe.f32(1)[i], float(i + 1));
}

TEST(ExecutorTest, BatchNormAndItsGradient) {
  TempDir dir;
  auto param = [](const char *name, double value) {
    return json{{"name", name},
                {"shape", {2}},
                {"group", "encoder"},
                {"trainable", true},
                {"init", {{"kind", "constant"}, {"value", value}}}};
  };
  json params = {param("bn.scale", 1.5), param("bn.shift", 0.5),
                 param("bn.mean", 0.0), param("bn.var", 1.0)};
  json values = json::array({
      {{"id", 0}, {"shape", {-1, 2, 2, 2}}, {"dtype", "f32"}, {"offset", 0}},
      {{"id", 1}, {"shape", {2}}, {"dtype", "f32"}, {"param", "bn.scale"}},
      {{"id", 2}, {"shape", {2}}, {"dtype", "f32"}, {"param", "bn.shift"}},
      {{"id", 3}, {"shape", {2}}, {"dtype", "f32"}, {"param", "bn.mean"}},
      {{"id", 4}, {"shape", {2}}, {"dtype", "f32"}, {"param", "bn.var"}},
      {{"id", 5}, {"shape", {-1, 2, 2, 2}}, {"dtype", "f32"}, {"offset", 128}},
      {{"id", 6}, {"shape", {-1, 2, 2, 2}}, {"dtype", "f32"}, {"offset", 256}},
      {{"id", 7}, {"shape", {-1, 2, 2, 2}}, {"dtype", "f32"}, {"offset", 384}},
      {{"id", 8}, {"shape", {2}}, {"dtype", "f32"}, {"offset", 512}},
      {{"id", 9}, {"shape", {2}}, {"dtype", "f32"}, {"offset", 576}},
  });
  json kernels = json::array({
      {{"op", "batch_norm"},
       {"in", {0, 1, 2, 3, 4}},
       {"out", {5}},
       {"attrs", {{"eps", 1e-5}, {"momentum", 0.9}, {"inference", false}}}},
      {{"op", "batch_norm_grad"},
       {"in", {6, 0, 1}},
       {"out", {7, 8, 9}},
       {"attrs", {{"eps", 1e-5}}}},
  });
  plan::Plan p = loadJson(dir, onlyProgram(values, kernels, params, 640, 4));
  exec::ParamStore store(p, 1);
  exec::ReferenceBackend backend;
  exec::Executor exe(p, "p", store, backend);
  // dy = the normalised input: dshift = sum xhat = 0, dscale = sum xhat^2
  // ~= M, dx = scale*invStd/M*(M*xhat - 0 - xhat*M) = 0.
  for (int i = 0; i < 32; ++i)
    exe.f32(0)[i] = float((i * 37) % 11) - 3.0f;
  exec::StepContext ctx;
  exe.run(4, ctx);
  for (int i = 0; i < 32; ++i)
    exe.f32(6)[i] = (exe.f32(5)[i] - 0.5f) / 1.5f;
  exe.run(4, ctx);
  for (int c = 0; c < 2; ++c) {
    EXPECT_NEAR(exe.f32(9)[c], 0.0, 1e-4);
    EXPECT_NEAR(exe.f32(8)[c], 16.0, 1e-2);
  }
  for (int i = 0; i < 32; ++i)
    EXPECT_NEAR(exe.f32(7)[i], 0.0, 1e-4);
  // Running statistics moved away from their initial values.
  EXPECT_NE(store.at("bn.mean").value[0], 0.0f);
}

//===----------------------------------------------------------------------===//
// Learning-rate policies
//===----------------------------------------------------------------------===//

TEST(LrPolicyTest, Values) {
  plan::Phase ph;
  ph.lr = 0.1;
  ph.lrPolicy = "fixed";
  EXPECT_DOUBLE_EQ(train::learningRate(ph, 7, 10, 3), 0.1);
  ph.lrPolicy = "step";
  ph.lrGamma = 0.5;
  ph.lrEvery = 2;
  EXPECT_DOUBLE_EQ(train::learningRate(ph, 0, 10, 0), 0.1);
  EXPECT_DOUBLE_EQ(train::learningRate(ph, 0, 10, 1), 0.1);
  EXPECT_DOUBLE_EQ(train::learningRate(ph, 0, 10, 2), 0.05);
  EXPECT_DOUBLE_EQ(train::learningRate(ph, 0, 10, 5), 0.025);
  ph.lrPolicy = "cosine";
  ph.lrMin = 0.02;
  EXPECT_DOUBLE_EQ(train::learningRate(ph, 0, 100, 0), 0.1);
  EXPECT_NEAR(train::learningRate(ph, 50, 100, 0), 0.06, 1e-12);
  EXPECT_NEAR(train::learningRate(ph, 100, 100, 0), 0.02, 1e-12);
  EXPECT_NEAR(train::learningRate(ph, 25, 100, 0),
              0.02 + 0.08 * (1 + std::cos(M_PI / 4)) / 2, 1e-12);

  ph.batch = 5;
  ph.epochs = 2;
  ph.steps = 0;
  EXPECT_EQ(train::stepsPerEpoch(24, 5), 5);
  EXPECT_EQ(train::phaseSteps(ph, 24), 10);
  ph.steps = 3;
  EXPECT_EQ(train::phaseSteps(ph, 24), 3);
  ph.steps = 30;
  EXPECT_EQ(train::phaseSteps(ph, 24), 10);
}

//===----------------------------------------------------------------------===//
// Data
//===----------------------------------------------------------------------===//

/// Writes train/t10k IDX files of `rows` x `cols` images whose pixel (r, c) of
/// image i is (i * 7 + r * cols + c) % 251, labels i % classes.
void writeIdxSet(const fs::path &dir, int trainCount, int testCount, int rows,
                 int cols, int classes) {
  auto be = [](std::string &s, uint32_t v) {
    for (int sh = 24; sh >= 0; sh -= 8)
      s.push_back(char(v >> sh));
  };
  for (auto [prefix, count] :
       {std::pair<const char *, int>{"train", trainCount},
        {"t10k", testCount}}) {
    std::string img{0, 0, 8, 3}, lab{0, 0, 8, 1};
    be(img, uint32_t(count));
    be(img, uint32_t(rows));
    be(img, uint32_t(cols));
    be(lab, uint32_t(count));
    for (int i = 0; i < count; ++i) {
      for (int p = 0; p < rows * cols; ++p)
        img.push_back(char((i * 7 + p) % 251));
      lab.push_back(char(i % classes));
    }
    writeText(dir / (std::string(prefix) + "-images-idx3-ubyte"), img);
    writeText(dir / (std::string(prefix) + "-labels-idx1-ubyte"), lab);
  }
}

TEST(DataTest, CropMirrorNormalise) {
  TempDir dir;
  writeIdxSet(dir.path, 10, 4, 6, 6, 3);
  train::DataOptions o;
  o.dir = dir.str();
  o.channels = 1;
  o.height = o.width = 4;
  o.classes = 3;
  o.crop = 4;
  o.cropPad = 1;
  o.mirror = true;
  o.mean = {10.0};
  o.std = {2.0};
  o.subset = 8;
  train::Datasets d = train::loadDatasets(o);
  EXPECT_EQ(d.train.size(), 8);
  EXPECT_EQ(d.test.size(), 4);
  EXPECT_EQ(d.train.sampleFloats(), 16);

  // Evaluation: centred crop of the padded 8x8 image = rows/cols 1..4.
  std::vector<float> img(16 * 2);
  int32_t labels[2];
  int64_t idx[2] = {3, 0};
  d.test.makeBatch(idx, 2, false, 0, img.data(), labels);
  EXPECT_EQ(labels[0], 0);
  EXPECT_EQ(labels[1], 0);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x) {
      double raw = (3 * 7 + (y + 1) * 6 + (x + 1)) % 251;
      EXPECT_FLOAT_EQ(img[y * 4 + x], float((raw - 10.0) / 2.0));
    }

  // Training: every sample is some crop of the zero-padded image, maybe
  // mirrored; over many keys both flips and several offsets occur.
  auto pixel = [](int i, int r, int c) -> double {
    if (r < 0 || r >= 6 || c < 0 || c >= 6)
      return 0;
    return (i * 7 + r * 6 + c) % 251;
  };
  std::set<std::tuple<int, int, bool>> seen;
  for (uint64_t key = 1; key <= 64; ++key) {
    int64_t one = 5;
    d.train.makeBatch(&one, 1, true, key, img.data(), labels);
    bool found = false;
    for (int y0 = 0; y0 <= 4 && !found; ++y0)
      for (int x0 = 0; x0 <= 4 && !found; ++x0)
        for (bool flip : {false, true}) {
          bool ok = true;
          for (int y = 0; y < 4 && ok; ++y)
            for (int x = 0; x < 4 && ok; ++x) {
              double raw = pixel(5, y0 + y - 1, x0 + (flip ? 3 - x : x) - 1);
              ok = img[y * 4 + x] == float((raw - 10.0) / 2.0);
            }
          if (ok) {
            seen.insert({y0, x0, flip});
            found = true;
            break;
          }
        }
    EXPECT_TRUE(found) << "key " << key;
  }
  EXPECT_GT(seen.size(), 10u);
  bool flips = false, plain = false;
  for (auto &s : seen)
    (std::get<2>(s) ? flips : plain) = true;
  EXPECT_TRUE(flips && plain);

  // Shuffling: a permutation, deterministic per key.
  std::vector<int64_t> a = d.train.order(11), b = d.train.order(11),
                       c = d.train.order(12);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  std::sort(c.begin(), c.end());
  for (int64_t i = 0; i < 8; ++i)
    EXPECT_EQ(c[size_t(i)], i);
}

TEST(DataTest, DefaultStdAndSizeCheck) {
  TempDir dir;
  writeIdxSet(dir.path, 4, 2, 4, 4, 3);
  train::DataOptions o;
  o.dir = dir.str();
  o.height = o.width = 4;
  o.classes = 3;
  train::Datasets d = train::loadDatasets(o);
  std::vector<float> img(16);
  int32_t label;
  int64_t i = 1;
  d.train.makeBatch(&i, 1, true, 99, img.data(), &label);
  for (int p = 0; p < 16; ++p)
    EXPECT_FLOAT_EQ(img[p], float(((7 + p) % 251) / 255.0));
  auto dataError = [&] {
    try {
      train::loadDatasets(o);
    } catch (const train::DataError &e) {
      return std::string(e.what());
    }
    return std::string();
  };
  o.height = o.width = 5;
  EXPECT_EQ(dataError(),
            dir.str() +
                ": the training images are 4x4 but the network input is 5x5");
  o.crop = 7;
  o.cropPad = 1;
  EXPECT_EQ(dataError(),
            dir.str() + ": crop 7 is larger than the 4x4 images padded by 1");
  o.crop = 6;
  EXPECT_EQ(dataError(),
            dir.str() + ": crop 6 gives 6x6 images but the network input is "
                        "5x5");
  o.crop = 0;
  o.cropPad = 0;
  o.dir = (dir.path / "missing").string();
  EXPECT_THROW(train::loadDatasets(o), data::IdxError);
}

TEST(DataTest, OneSplitReadsOnlyItsOwnFiles) {
  TempDir dir;
  writeIdxSet(dir.path, 6, 3, 4, 4, 3);
  // A damaged training set: the header promises more images than follow.
  std::string bytes =
      netc::testing::readText((dir.path / "train-images-idx3-ubyte").string());
  writeText(dir.path / "train-images-idx3-ubyte", bytes.substr(0, 40));
  train::DataOptions o;
  o.dir = dir.str();
  o.height = o.width = 4;
  o.classes = 3;
  o.testSubset = 2;
  EXPECT_THROW(train::loadDatasets(o), data::IdxError);
  EXPECT_THROW(train::loadSplit(o, train::Split::Train), data::IdxError);
  train::ImageData test = train::loadSplit(o, train::Split::Test);
  EXPECT_EQ(test.size(), 2); // the subset applies
  std::vector<float> img(16);
  int32_t label = -1;
  int64_t i = 1;
  test.makeBatch(&i, 1, false, 0, img.data(), &label);
  EXPECT_EQ(label, 1);
  EXPECT_FLOAT_EQ(img[0], float(7 / 255.0));
  // Each split is checked against the network as loadDatasets checks it.
  o.height = o.width = 5;
  EXPECT_THROW(train::loadSplit(o, train::Split::Test), train::DataError);
}

TEST(DataTest, PrefetcherRunsJobsAndRethrows) {
  train::Prefetcher p;
  int value = 0;
  p.submit([&] { value = 42; });
  p.wait();
  EXPECT_EQ(value, 42);
  p.submit([] { throw std::runtime_error("boom"); });
  EXPECT_THROW(p.wait(), std::runtime_error);
  p.submit([&] { value = 7; });
  p.wait();
  EXPECT_EQ(value, 7);
}

// Every failed job is reported where it is waited for, not only the first;
// drain() waits for the queue and forgets its failures (batches queued
// ahead of a run that stops).
// An output the data set would read is refused by netrun (isDataPath): an
// IDX file in either form, a CIFAR batch in its folder, anything under an
// image folder's train/ or val/, also through a link; nothing else.
TEST(DataTest, IsDataPathNamesWhatTheSetReads) {
  TempDir dir;
  writeIdxSet(dir.path, 4, 2, 6, 6, 3);
  train::DataOptions o;
  o.dir = dir.str();
  EXPECT_TRUE(
      train::isDataPath(o, (dir.path / "t10k-labels-idx1-ubyte").string()));
  EXPECT_TRUE(train::isDataPath(
      o, (dir.path / "." / "train-images-idx3-ubyte").string()));
  EXPECT_FALSE(train::isDataPath(o, (dir.path / "metrics.jsonl").string()));
  std::ofstream(dir.path / "train-labels-idx1-ubyte.gz") << "x";
  EXPECT_TRUE(
      train::isDataPath(o, (dir.path / "train-labels-idx1-ubyte.gz").string()));
  o.kind = "cifar10";
  fs::create_directories(dir.path / "cifar-10-batches-bin");
  std::ofstream(dir.path / "cifar-10-batches-bin" / "data_batch_3.bin") << "x";
  EXPECT_TRUE(train::isDataPath(
      o, (dir.path / "cifar-10-batches-bin" / "data_batch_3.bin").string()));
  EXPECT_FALSE(
      train::isDataPath(o, (dir.path / "t10k-labels-idx1-ubyte").string()));
  o.kind = "images";
  fs::create_directories(dir.path / "val" / "a");
  fs::create_directory_symlink(dir.path / "val" / "a", dir.path / "link");
  EXPECT_TRUE(
      train::isDataPath(o, (dir.path / "val" / "a" / "x.png").string()));
  EXPECT_TRUE(train::isDataPath(o, (dir.path / "link" / "new.png").string()));
  EXPECT_FALSE(train::isDataPath(o, (dir.path / "valley.png").string()));
  EXPECT_FALSE(
      train::isDataPath(o, (dir.path / "train-images-idx3-ubyte").string()));
  // An image of val/ that is a link to a file elsewhere (the write would
  // replace that file); a class folder that is a link out of the image
  // folder, named through val/ or directly; a dangling link into val/.
  fs::create_directories(dir.path / "pool" / "b");
  std::ofstream(dir.path / "pool" / "p.png") << "x";
  fs::create_symlink(dir.path / "pool" / "p.png",
                     dir.path / "val" / "a" / "p.png");
  EXPECT_TRUE(
      train::isDataPath(o, (dir.path / "val" / "a" / "p.png").string()));
  fs::create_directory_symlink(dir.path / "pool" / "b", dir.path / "val" / "b");
  EXPECT_TRUE(
      train::isDataPath(o, (dir.path / "val" / "b" / "x.png").string()));
  EXPECT_TRUE(
      train::isDataPath(o, (dir.path / "pool" / "b" / "x.png").string()));
  EXPECT_FALSE(train::isDataPath(o, (dir.path / "pool" / "c.png").string()));
  fs::create_symlink(dir.path / "val" / "a" / "new.png",
                     dir.path / "dangling.png");
  EXPECT_TRUE(train::isDataPath(o, (dir.path / "dangling.png").string()));
  // IDX: a link to a data file, and the plain name of a gzipped one (the
  // loader would prefer the new plain file).
  o.kind = "fashion-mnist";
  fs::create_symlink(dir.path / "t10k-images-idx3-ubyte", dir.path / "l");
  EXPECT_TRUE(train::isDataPath(o, (dir.path / "l").string()));
  EXPECT_TRUE(
      train::isDataPath(o, (dir.path / "train-labels-idx1-ubyte").string()));
}

TEST(DataTest, PrefetcherReportsEachFailureAndDrainForgetsThem) {
  train::Prefetcher p;
  uint64_t a = p.submit([] { throw std::runtime_error("a"); });
  uint64_t b = p.submit([] { throw std::runtime_error("b"); });
  uint64_t c = p.submit([] {});
  auto messageOf = [&](uint64_t ticket) -> std::string {
    try {
      p.waitFor(ticket);
    } catch (const std::runtime_error &e) {
      return e.what();
    }
    return "";
  };
  EXPECT_EQ(messageOf(c), "a"); // the earliest failure up to c
  EXPECT_EQ(messageOf(b), "b");
  EXPECT_EQ(messageOf(c), "");
  (void)a;
  p.submit([] { throw std::runtime_error("ahead"); });
  p.submit([] { throw std::runtime_error("further"); });
  EXPECT_NO_THROW(p.drain());
  EXPECT_FALSE(p.busy());
  EXPECT_NO_THROW(p.wait());
}

//===----------------------------------------------------------------------===//
// Trainer
//===----------------------------------------------------------------------===//

/// image [-1,1,4,4] -> reshape [-1,16] -> fc 16->3 -> softmax CE.
json imagePlan(double lr) {
  json values = json::array({
      {{"id", 0}, {"shape", {-1, 1, 4, 4}}, {"dtype", "f32"}, {"offset", 0}},
      {{"id", 1}, {"shape", {-1}}, {"dtype", "i32"}, {"offset", 320}},
      {{"id", 2}, {"shape", {-1, 16}}, {"dtype", "f32"}, {"offset", 0}},
      {{"id", 3}, {"shape", {3, 16}}, {"dtype", "f32"}, {"param", "fc.weight"}},
      {{"id", 4}, {"shape", {3}}, {"dtype", "f32"}, {"param", "fc.bias"}},
      {{"id", 5}, {"shape", {-1, 3}}, {"dtype", "f32"}, {"offset", 384}},
      {{"id", 6}, {"shape", json::array()}, {"dtype", "f32"}, {"offset", 448}},
      {{"id", 7}, {"shape", json::array()}, {"dtype", "f32"}, {"offset", 512}},
      {{"id", 8}, {"shape", {-1, 3}}, {"dtype", "f32"}, {"offset", 576}},
      {{"id", 9}, {"shape", {3, 16}}, {"dtype", "f32"}, {"offset", 640}},
      {{"id", 10}, {"shape", {3}}, {"dtype", "f32"}, {"offset", 832}},
  });
  json kernels = json::array({
      {{"op", "reshape"},
       {"in", {0}},
       {"out", {2}},
       {"attrs", {{"shape", {16}}}}},
      {{"op", "fc"}, {"in", {2, 3, 4}}, {"out", {5}}},
      {{"op", "softmax_cross_entropy"}, {"in", {5, 1}}, {"out", {6}}},
      {{"op", "objective"},
       {"in", {6}},
       {"out", {7}},
       {"attrs", {{"weights", {1.0}}}}},
      {{"op", "softmax_cross_entropy_grad"},
       {"in", {5, 1}},
       {"out", {8}},
       {"attrs", {{"scale", 1.0}}}},
      {{"op", "fc_grad_weight"}, {"in", {2, 8}}, {"out", {9}}},
      {{"op", "bias_grad"}, {"in", {8}}, {"out", {10}}},
      {{"op", "sgd_update"},
       {"in", {9}},
       {"attrs",
        {{"param", "fc.weight"}, {"lr_mult", 1.0}, {"decay_mult", 1.0}}}},
      {{"op", "sgd_update"},
       {"in", {10}},
       {"attrs",
        {{"param", "fc.bias"}, {"lr_mult", 2.0}, {"decay_mult", 0.0}}}},
  });
  json j = tinyPlan();
  j["input"] = {1, 4, 4};
  j["programs"]["step.train"] = {
      {"batch", 5},
      {"arena_bytes", 896},
      {"values", values},
      {"inputs", {{"image", 0}, {"labels", 1}}},
      {"kernels", kernels},
      {"outputs",
       {{"loss", 7},
        {"logits", 5},
        {"terms",
         {{{"name", "classification"}, {"weight", 1.0}, {"value", 6}}}}}}};
  j["programs"]["eval"] = {
      {"batch", 4},
      {"arena_bytes", 448},
      {"values", {values[0], values[2], values[3], values[4], values[5]}},
      {"inputs", {{"image", 0}}},
      {"kernels", {kernels[0], kernels[1]}},
      {"outputs", {{"logits", 5}}}};
  j["params"][0]["shape"] = {3, 16};
  j["schedule"] = {{{"phase", "warm"},
                    {"program", "step.train"},
                    {"batch", 5},
                    {"epochs", 1},
                    {"steps", 0},
                    {"lr", lr},
                    {"momentum", 0.9},
                    {"decay", 0.0},
                    {"lr_policy", "fixed"}},
                   {{"phase", "main"},
                    {"program", "step.train"},
                    {"batch", 5},
                    {"epochs", 2},
                    {"steps", 0},
                    {"lr", lr},
                    {"momentum", 0.9},
                    {"decay", 1e-4},
                    {"lr_policy", "cosine"},
                    {"lr_min", 0.0}}};
  j["data"]["mirror"] = true;
  j["data"]["crop"] = 4;
  j["data"]["crop_pad"] = 1;
  return j;
}

train::Datasets imageData(const plan::Plan &p, const TempDir &data) {
  train::DataOptions o = train::dataOptions(p, data.str());
  return train::loadDatasets(o);
}

TEST(TrainerTest, TrainsEvaluatesCheckpointsAndResumesExactly) {
  TempDir data;
  writeIdxSet(data.path, 24, 6, 4, 4, 3);
  TempDir a, b;
  plan::Plan pa = loadJson(a, imagePlan(0.05));
  plan::Plan pb = loadJson(b, imagePlan(0.05));

  // Uninterrupted: 5 + 10 steps.
  train::TrainOptions o;
  o.seed = 3;
  o.logEvery = 4;
  o.metricsPath = (a.path / "metrics.jsonl").string();
  std::ostringstream logA;
  train::Trainer ta(pa, o, logA, imageData(pa, data));
  ta.run();
  EXPECT_EQ(ta.state().phaseIndex, 2);
  EXPECT_EQ(ta.state().globalStep, 15);
  ASSERT_TRUE(ta.lastEval());
  EXPECT_EQ(ta.lastEval()->total, 6);
  EXPECT_NE(logA.str().find("[main] test error"), std::string::npos)
      << logA.str();
  EXPECT_NE(logA.str().find("classification"), std::string::npos);
  EXPECT_TRUE(fs::exists(a.path / "checkpoint.safetensors"));
  json state = json::parse(fileBytes((a.path / "checkpoint.json").string()));
  EXPECT_EQ(state["phase_index"], 2);
  EXPECT_EQ(state["global_step"], 15);
  // Metrics: JSON lines with steps and two evaluations.
  std::ifstream metrics(o.metricsPath);
  std::string line;
  int evals = 0, steps = 0;
  while (std::getline(metrics, line)) {
    json m = json::parse(line);
    (m["event"] == "eval" ? evals : steps)++;
  }
  EXPECT_EQ(evals, 2);
  EXPECT_GT(steps, 2);

  // Interrupted twice (mid-phase and at a phase boundary), then resumed.
  train::TrainOptions ob = o;
  ob.metricsPath.clear();
  ob.maxSteps = 3;
  std::ostringstream logB;
  {
    train::Trainer t(pb, ob, logB, imageData(pb, data));
    t.run();
    EXPECT_EQ(t.state().globalStep, 3);
  }
  ob.resume = true;
  ob.maxSteps = 2; // ends exactly at the end of phase 1
  {
    train::Trainer t(pb, ob, logB, imageData(pb, data));
    t.run();
    EXPECT_EQ(t.state().phaseIndex, 1);
    EXPECT_EQ(t.state().globalStep, 5);
  }
  ob.maxSteps = 0;
  train::Trainer tb(pb, ob, logB, imageData(pb, data));
  tb.run();
  EXPECT_EQ(tb.state().globalStep, 15);
  for (const char *name : {"fc.weight", "fc.bias"}) {
    const auto &x = ta.params().at(name);
    const auto &y = tb.params().at(name);
    EXPECT_EQ(x.value, y.value) << name;
    EXPECT_EQ(x.momentum, y.momentum) << name;
  }

  // netrun eval's path: evaluate the checkpoint.
  exec::ParamStore store(pa, 99);
  store.fromTensors(io::readSafetensors(train::checkpointPath(pa)), "ckpt",
                    false);
  exec::ReferenceBackend backend;
  train::Datasets d = imageData(pa, data);
  train::EvalResult r = train::evaluate(pa, store, backend, d.test);
  EXPECT_EQ(r.correct, ta.lastEval()->correct);
}

// checkpoint.json only repeats the tensor file's state: when it cannot be
// written (here a directory holds its name), the error says the checkpoint
// itself was.
TEST(TrainerTest, ACheckpointStateThatCannotBeWrittenSaysTheCheckpointWas) {
  TempDir dir;
  plan::Plan p = loadJson(dir, tinyPlan());
  exec::ParamStore store(p, 1);
  fs::create_directory(train::checkpointStatePath(p));
  try {
    train::saveCheckpoint(p, store.toTensors(true), train::TrainState());
    FAIL() << "expected TrainError";
  } catch (const train::TrainError &e) {
    EXPECT_NE(std::string(e.what()).find(
                  "checkpoint.json: is a directory, not a regular file; an "
                  "output is written to a file (the checkpoint itself, " +
                  train::checkpointPath(p) + ", was written"),
              std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(fs::is_regular_file(train::checkpointPath(p)));
}

TEST(TrainerTest, AProgramThatCannotRunStopsBeforeTraining) {
  // An eval program whose geometry is wrong was met only at the end of the
  // first phase; every program is checked before a step is taken.
  TempDir data;
  writeIdxSet(data.path, 24, 6, 4, 4, 3);
  TempDir dir;
  json j = imagePlan(0.05);
  // The fc's output one class short of its weight's rows.
  j["programs"]["eval"]["values"][4]["shape"] = {-1, 2};
  plan::Plan p = loadJson(dir, j);
  std::ostringstream log;
  train::TrainOptions o;
  try {
    train::Trainer t(p, o, log, imageData(p, data));
    t.run();
    FAIL() << "expected PlanError";
  } catch (const plan::PlanError &e) {
    EXPECT_NE(std::string(e.what()).find("programs.eval.kernels[1]: 'fc'"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(log.str().find("step 1"), std::string::npos) << log.str();
  EXPECT_FALSE(fs::exists(dir.path / "checkpoint.safetensors"));
}

TEST(TrainerTest, ASubsetLargerThanTheSetIsNoted) {
  TempDir data;
  writeIdxSet(data.path, 24, 6, 4, 4, 3);
  TempDir dir;
  json j = imagePlan(0.05);
  j["data"]["subset"] = 100;
  j["data"]["test_subset"] = 6;
  j["schedule"].erase(1);
  plan::Plan p = loadJson(dir, j);
  std::ostringstream log;
  train::TrainOptions o;
  train::Trainer t(p, o, log, imageData(p, data));
  EXPECT_NE(log.str().find("note: subset 100 asks for more than the 24 "
                           "images there are; using all 24\n"),
            std::string::npos)
      << log.str();
  EXPECT_EQ(log.str().find("test-subset"), std::string::npos) << log.str();
}

TEST(TrainerTest, EvaluationStagesNoMoreThanTheSet) {
  // An eval program planned for a batch far larger than the set (6 images)
  // runs at the set's size: its staging areas hold the set, not the batch
  // (which at a batch of 2^20 once took gigabytes outside any check).
  TempDir data;
  writeIdxSet(data.path, 24, 6, 4, 4, 3);
  TempDir dir;
  json j = imagePlan(0.05);
  const int64_t big = int64_t(1) << 16;
  json &eval = j["programs"]["eval"];
  eval["batch"] = big;
  eval["values"][4]["offset"] = 64 * big; // logits after the images
  eval["arena_bytes"] = 76 * big;
  plan::Plan p = loadJson(dir, j);
  exec::ParamStore store(p, 1);
  exec::ReferenceBackend backend;
  train::Datasets d = imageData(p, data);
  const uint64_t before = backend.peakBytes();
  train::EvalResult r = train::evaluate(p, store, backend, d.test);
  EXPECT_EQ(r.total, 6);
  // The arena, the kept logits (12 bytes an image), and two staging areas
  // of 6 images of 64 bytes, in the backend's checked memory (they were
  // vectors of 2^16 images, outside it).
  EXPECT_EQ(backend.peakBytes() - before, uint64_t(88 * big + 2 * 6 * 64));
}

TEST(TrainerTest, NonFiniteLossStops) {
  TempDir data;
  writeIdxSet(data.path, 24, 6, 4, 4, 3);
  TempDir dir;
  json j = imagePlan(0.05);
  // Each a 32-bit float, but (x - mean) / std overflows: inf/NaN inputs.
  j["data"]["mean"] = {3e38};
  j["data"]["std"] = {1e-30};
  plan::Plan p = loadJson(dir, j);
  std::ostringstream log;
  train::TrainOptions o;
  train::Trainer t(p, o, log, imageData(p, data));
  try {
    t.run();
    FAIL() << "expected TrainError";
  } catch (const train::TrainError &e) {
    std::string msg = e.what();
    EXPECT_EQ(msg.rfind("phase 'warm' step 1 (epoch 1, global step 1): ", 0),
              0u)
        << msg;
    EXPECT_NE(msg.find("loss term 'classification' is"), std::string::npos)
        << msg;
    // No checkpoint exists yet: the message must not claim one is kept.
    EXPECT_NE(msg.find("no checkpoint was written before it"),
              std::string::npos)
        << msg;
  }
  EXPECT_FALSE(fs::exists(dir.path / "checkpoint.safetensors"));
}

//===----------------------------------------------------------------------===//
// Hardening: hostile files, crafted checkpoints, plans that cannot run
//===----------------------------------------------------------------------===//

/// A FIFO at `path` (nothing ever writes it: opening it for reading would
/// block forever without O_NONBLOCK).
void makeFifo(const fs::path &path) {
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0) << path;
}

TEST(DataTest, PrefetcherQueuesJobsInOrder) {
  // The trainer queues a few batches ahead: jobs run in order, waitFor
  // returns once that job is done, and a later job's error surfaces at its
  // own ticket, not at an earlier one.
  train::Prefetcher p;
  std::vector<int> done;
  std::mutex m;
  std::condition_variable cv;
  bool go = false;
  uint64_t first = p.submit([&] {
    std::unique_lock<std::mutex> lock(m);
    cv.wait(lock, [&] { return go; });
    done.push_back(1);
  });
  uint64_t second = p.submit([&] {
    std::lock_guard<std::mutex> lock(m);
    done.push_back(2);
  });
  uint64_t bad = p.submit([] { throw std::runtime_error("third"); });
  EXPECT_TRUE(p.busy());
  {
    std::lock_guard<std::mutex> lock(m);
    go = true;
  }
  cv.notify_all();
  p.waitFor(first);
  p.waitFor(second);
  {
    std::lock_guard<std::mutex> lock(m);
    EXPECT_EQ(done, (std::vector<int>{1, 2}));
  }
  EXPECT_THROW(p.waitFor(bad), std::runtime_error);
  uint64_t after = p.submit([&] { done.push_back(4); });
  p.waitFor(after);
  EXPECT_EQ(done.size(), 3u);
  EXPECT_FALSE(p.busy());
}

TEST(DataTest, PrefetcherThreadStartsAfterItsMembers) {
  // The prefetch thread used to start before the mutex it locks was
  // constructed: an abort in about one run in six under load. Under
  // ThreadSanitizer (scripts/test.sh) the race itself is reported.
  for (int i = 0; i < 300; ++i) {
    train::Prefetcher p;
    int value = 0;
    p.submit([&] { value = i; });
    p.wait();
    ASSERT_EQ(value, i);
  }
}

TEST(HardeningTest, SpecialFilesAreRefused) {
  TempDir dir, fifoDir;
  makeFifo(fifoDir.path / "plan.json");
  try {
    plan::loadPlan(fifoDir.str());
    FAIL() << "expected PlanError";
  } catch (const plan::PlanError &e) {
    EXPECT_EQ(std::string(e.what()), (fifoDir.path / "plan.json").string() +
                                         ": is a FIFO, not a regular file");
  }
  EXPECT_EQ(readError("/dev/zero"),
            "/dev/zero: is a character device, not a regular file");
  makeFifo(dir.path / "w.safetensors");
  EXPECT_EQ(readError((dir.path / "w.safetensors").string()),
            (dir.path / "w.safetensors").string() +
                ": is a FIFO, not a regular file");
  EXPECT_NE(readError(dir.str()).find("is a directory"), std::string::npos);
  // IDX data.
  TempDir data;
  writeIdxSet(data.path, 4, 2, 4, 4, 3);
  fs::remove(data.path / "t10k-labels-idx1-ubyte");
  makeFifo(data.path / "t10k-labels-idx1-ubyte");
  try {
    data::loadIdxImageSet(data.str(), "t10k", 3);
    FAIL() << "expected IdxError";
  } catch (const data::IdxError &e) {
    EXPECT_NE(std::string(e.what()).find("t10k-labels-idx1-ubyte: is a FIFO"),
              std::string::npos)
        << e.what();
  }
}

TEST(HardeningTest, SafetensorsShapeOverflowAndDuplicateKeys) {
  TempDir dir;
  std::string p = (dir.path / "bad.safetensors").string();
  // [2^62, 4] floats are 2^66 bytes: 0 after wraparound, like the span.
  writeText(
      p,
      withHeader(
          R"({"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}})",
          ""));
  EXPECT_EQ(readError(p), p + ": tensor 'w': shape [4611686018427387904, 4] "
                              "is too large (its size overflows)");
  writeText(
      p,
      withHeader(
          R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
          "abcd"));
  EXPECT_EQ(readError(p), p + ": header names 'w' twice");
}

// Found by netc-safetensors-fuzzer: nlohmann::json reports a number too
// large for a double as out_of_range, not parse_error; it escaped both
// readers and terminated the process.
TEST(HardeningTest, JsonNumberOverflowIsAnError) {
  TempDir dir;
  std::string p = (dir.path / "bad.safetensors").string();
  writeText(p, withHeader(R"({"w":{"dtype":1e999}})", ""));
  EXPECT_EQ(readError(p).rfind(p + ": header is not valid JSON: ", 0), 0u)
      << readError(p);
  try {
    plan::parsePlan(R"({"format":"netc-trainer","version":1e999})",
                    "mem/plan.json", "");
    FAIL() << "expected PlanError";
  } catch (const plan::PlanError &e) {
    EXPECT_EQ(std::string(e.what()).rfind("mem/plan.json: invalid JSON: ", 0),
              0u)
        << e.what();
  }
}

// Found by netc-plan-fuzzer: an integer field written as a number beyond
// int64's range (1e91, or 2^64 - 1, which nlohmann::json keeps unsigned)
// was cast to int64 (undefined behaviour for the double; 2^64 - 1 read as
// -1, the batch dimension in a shape). Each is an error naming the field
// and the number.
TEST(HardeningTest, IntegersBeyondInt64AreErrors) {
  TempDir dir;
  for (const char *text : {"1e91", "-1e91", "9223372036854775808.0",
                           "18446744073709551615", "9223372036854775808"}) {
    json j = tinyPlan();
    j["programs"]["step.train"]["batch"] = json::parse(text);
    const std::string err = planError(dir, j);
    EXPECT_NE(err.find("batch: expected an integer, got "), std::string::npos)
        << text << ": " << err;
  }
  // A whole number written as a float is read.
  for (const char *text : {"4.0", "4"}) {
    json j = tinyPlan();
    j["programs"]["step.train"]["batch"] = json::parse(text);
    EXPECT_EQ(loadJson(dir, j).program("step.train").batch, 4) << text;
  }
  // Not the batch dimension (-1) in a shape.
  json j = tinyPlan();
  j["programs"]["step.train"]["values"][8]["shape"] =
      json::parse("[3, 18446744073709551615]");
  const std::string err = planError(dir, j);
  EXPECT_NE(err.find("shape[1]: expected an integer, got 18446744073709551615"),
            std::string::npos)
      << err;
}

/// Trains imagePlan for 3 steps (checkpointed), then returns the checkpoint
/// with `key` set to `value` written back.
void craftCheckpoint(const plan::Plan &p, const TempDir &data,
                     const std::string &key, const std::string &value) {
  train::TrainOptions o;
  o.maxSteps = 3;
  o.restart = true; // over the last case's checkpoint
  std::ostringstream log;
  train::Trainer t(p, o, log, imageData(p, data));
  t.run();
  io::TensorFile f = io::readSafetensors(train::checkpointPath(p));
  f.metadata[key] = value;
  io::writeSafetensors(train::checkpointPath(p), f);
}

// A step's update can overflow the weights after its loss was checked; the
// checkpoint that follows is refused rather than written over a good one.
TEST(HardeningTest, DivergedParametersAreNeverCheckpointed) {
  TempDir data;
  writeIdxSet(data.path, 24, 6, 4, 4, 3);
  TempDir dir;
  plan::Plan p = loadJson(dir, imagePlan(1e39)); // inf as a float
  train::TrainOptions o;
  o.maxSteps = 1;
  std::ostringstream log;
  train::Trainer t(p, o, log, imageData(p, data));
  try {
    t.run();
    FAIL() << "expected a CollectiveError; log:\n" << log.str();
  } catch (const train::CollectiveError &e) {
    EXPECT_NE(std::string(e.what()).find("phase 'warm' step 1 (epoch 1, "
                                         "global step 1): the parameters "
                                         "have diverged (tensor '"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("no checkpoint was written before "
                                         "it"),
              std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(train::checkpointPath(p)));
}

TEST(HardeningTest, CraftedCheckpointFieldsAreRangeChecked) {
  TempDir data;
  writeIdxSet(data.path, 24, 6, 4, 4, 3);
  TempDir dir;
  plan::Plan p = loadJson(dir, imagePlan(0.05));
  struct Case {
    const char *key, *value, *expect;
  };
  for (const Case &c : std::vector<Case>{
           {"netc.step", "-5", "'-5' is not a non-negative integer in range"},
           {"netc.step", "9223372036854775808",
            "'9223372036854775808' is not a non-negative integer in range"},
           {"netc.step", "3x", "'3x' is not a non-negative integer"},
           {"netc.step", "4", "step 4 in the phase exceeds the 3 global steps"},
           {"netc.phase_index", "3", "phase index 3 is outside the schedule"},
           {"netc.global_step", " 3", "is not a non-negative integer"},
       }) {
    craftCheckpoint(p, data, c.key, c.value);
    train::TrainOptions o;
    o.resume = true;
    std::ostringstream log;
    try {
      train::Trainer t(p, o, log, imageData(p, data));
      t.run();
      FAIL() << c.key << "=" << c.value << ": expected TrainError";
    } catch (const train::TrainError &e) {
      EXPECT_NE(std::string(e.what()).find(c.expect), std::string::npos)
          << c.key << "=" << c.value << ": " << e.what();
    }
  }
  // In range for the counters but past the phase's end.
  craftCheckpoint(p, data, "netc.global_step", "500");
  {
    io::TensorFile f = io::readSafetensors(train::checkpointPath(p));
    f.metadata["netc.step"] = "400";
    io::writeSafetensors(train::checkpointPath(p), f);
  }
  train::TrainOptions o;
  o.resume = true;
  std::ostringstream log;
  train::Trainer t(p, o, log, imageData(p, data));
  try {
    t.run();
    FAIL() << "expected TrainError";
  } catch (const train::TrainError &e) {
    EXPECT_NE(std::string(e.what()).find("at step 400 of phase 'warm', which "
                                         "has 5 steps"),
              std::string::npos)
        << e.what();
  }
}

TEST(HardeningTest, StaleCheckpointTemporariesAreRemoved) {
  TempDir data;
  writeIdxSet(data.path, 24, 6, 4, 4, 3);
  TempDir dir;
  plan::Plan p = loadJson(dir, imagePlan(0.05));
  // A process id that is not running (searched downward from pid_max).
  pid_t dead = 4194303;
  while (dead > 2 && (::kill(dead, 0) == 0 || errno != ESRCH))
    --dead;
  fs::path stale =
      dir.path / (".checkpoint.safetensors.tmp." + std::to_string(dead));
  fs::path live =
      dir.path / (".checkpoint.json.tmp." + std::to_string(::getppid()));
  writeText(stale, "partial");
  writeText(live, "being written");
  std::ostringstream log;
  train::Trainer t(p, train::TrainOptions{}, log, imageData(p, data));
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(live)); // its writer (our parent) still runs
  EXPECT_NE(log.str().find("removed 1 temporary file(s)"), std::string::npos)
      << log.str();
}

TEST(HardeningTest, StepsOverflowIsAnError) {
  plan::Phase ph;
  ph.phase = "long";
  ph.batch = 64;
  ph.epochs = INT64_MAX;
  EXPECT_THROW(train::phaseSteps(ph, 60000), train::TrainError);
  ph.epochs = 3;
  EXPECT_EQ(train::phaseSteps(ph, 60000), 3 * 938);
}

TEST(HardeningTest, PlansThatCannotRunAreRefused) {
  TempDir dir;
  auto expectError = [&](const json &j, const std::string &expect) {
    std::string err = planError(dir, j);
    EXPECT_NE(err.find(expect), std::string::npos)
        << "expected '" << expect << "', got '" << err << "'";
  };
  json j = tinyPlan();
  j["programs"]["step.train"]["kernels"] = json::array();
  expectError(j, "programs.step.train.kernels: a program needs at least one "
                 "kernel");
  // Read before written: drop the fc that writes the logits.
  j = tinyPlan();
  j["programs"]["step.train"]["kernels"].erase(0);
  expectError(j, "programs.step.train.kernels[0].in[0]: value 4 is read "
                 "before any kernel writes it");
  // An output no kernel writes.
  j = tinyPlan();
  j["programs"]["eval"]["outputs"]["logits"] = 2; // a parameter: fine
  EXPECT_EQ(planError(dir, j), "");
  j["programs"]["eval"]["values"].push_back(
      {{"id", 9}, {"shape", {3}}, {"dtype", "f32"}, {"offset", 128}});
  j["programs"]["eval"]["outputs"]["logits"] = 9;
  expectError(j, "programs.eval.outputs.logits: value 9 is an output but no "
                 "kernel writes it");
  // Ranges.
  j = tinyPlan();
  j["schedule"][0]["lr"] = -0.1;
  expectError(j, "schedule[0].lr: -0.1 is negative");
  j = tinyPlan();
  j["schedule"][0]["momentum"] = 1.0;
  expectError(j, "schedule[0].momentum: 1 is not in [0, 1)");
  j = tinyPlan();
  j["params"][0]["lr_mult"] = -1;
  expectError(j, "params[0].lr_mult: -1 is negative");
  j = tinyPlan();
  j["programs"]["step.train"]["kernels"][7]["attrs"]["decay_mult"] = -2;
  expectError(j, "kernels[7].attrs.decay_mult: -2 is negative");
  // Sizes that overflow.
  j = tinyPlan();
  j["programs"]["step.train"]["batch"] = INT64_MAX;
  expectError(j, "is too large");
  j = tinyPlan();
  j["params"][0]["shape"] = {int64_t(1) << 40, int64_t(1) << 40};
  expectError(j, "params[0].shape: parameter 'fc.weight' of shape "
                 "[1099511627776, 1099511627776] is too large");
  // An unpool with neither switches nor a position.
  j = onlyProgram(
      {{{"id", 0}, {"shape", {-1, 1, 2, 2}}, {"dtype", "f32"}, {"offset", 0}},
       {{"id", 1}, {"shape", {-1, 1, 4, 4}}, {"dtype", "f32"}, {"offset", 64}}},
      {{{"op", "unpool"},
        {"in", {0}},
        {"out", {1}},
        {"attrs", {{"kernel", 2}, {"stride", 2}, {"pad", 0}, {"size", 4}}}}},
      tinyPlan()["params"], 128, 1);
  expectError(j, "'unpool' needs either switches (a second operand) or a "
                 "'position'");
  j["programs"]["p"]["kernels"][0]["attrs"]["position"] = {1, 1};
  EXPECT_EQ(planError(dir, j), "");
}

TEST(HardeningTest, MemoryErrorsNameTheirPlace) {
  TempDir dir;
  json j = tinyPlan();
  j["programs"]["eval"]["arena_bytes"] = int64_t(1) << 60;
  plan::Plan p = loadJson(dir, j);
  exec::ParamStore store(p, 1);
  exec::ReferenceBackend backend;
  try {
    exec::Executor exe(p, "eval", store, backend);
    FAIL() << "expected MemoryError";
  } catch (const exec::MemoryError &e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("the arena of program 'eval' needs 1 EiB "
                       "(1152921504606846976 bytes) but only"),
              std::string::npos)
        << msg;
  }
  j = tinyPlan();
  j["params"][0]["shape"] = {int64_t(1) << 20, int64_t(1) << 20, 16};
  j["programs"] = json::object();
  j["schedule"] = json::array();
  plan::Plan q = loadJson(dir, j);
  try {
    exec::ParamStore big(q, 1);
    FAIL() << "expected MemoryError";
  } catch (const exec::MemoryError &e) {
    EXPECT_NE(std::string(e.what()).find("parameter 'fc.weight' needs 64 TiB"),
              std::string::npos)
        << e.what();
  }
}

TEST(TrainerTest, StepPolicyDecaysAtEpochBoundaries) {
  // The step policy inside the trainer, not only learningRate() alone: the
  // rate of every logged step must match its own epoch.
  TempDir data;
  writeIdxSet(data.path, 24, 6, 4, 4, 3);
  TempDir dir;
  json j = imagePlan(0.05);
  j["schedule"] = {{{"phase", "main"},
                    {"program", "step.train"},
                    {"batch", 5},
                    {"epochs", 3},
                    {"steps", 0},
                    {"lr", 0.1},
                    {"momentum", 0.9},
                    {"decay", 0.0},
                    {"lr_policy", "step"},
                    {"lr_gamma", 0.5},
                    {"lr_every", 1}}};
  plan::Plan p = loadJson(dir, j);
  train::TrainOptions o;
  o.logEvery = 1;
  o.metricsPath = (dir.path / "m.jsonl").string();
  std::ostringstream log;
  train::Trainer t(p, o, log, imageData(p, data));
  t.run();
  std::ifstream metrics(o.metricsPath);
  std::string line;
  int steps = 0;
  while (std::getline(metrics, line)) {
    json m = json::parse(line);
    if (m["event"] != "step")
      continue;
    ++steps;
    int epoch = m["epoch"].get<int>(); // 1-based; 5 steps per epoch
    EXPECT_EQ(epoch, (m["step"].get<int>() - 1) / 5 + 1);
    EXPECT_DOUBLE_EQ(m["lr"].get<double>(), 0.1 * std::pow(0.5, epoch - 1))
        << line;
  }
  EXPECT_EQ(steps, 15);
}

TEST(HardeningTest, GeometryIsCheckedAtEverySmallerBatch) {
  // A fixed dimension where -1 belongs is right at the planned batch and
  // wrong at a smaller one: the executor must refuse that batch, not run it.
  TempDir dir;
  json j = tinyPlan();
  j["programs"]["step.train"]["values"][4]["shape"] = {4, 3};
  j["programs"]["step.train"]["values"][7]["shape"] = {4, 3};
  plan::Plan p = loadJson(dir, j);
  exec::ParamStore store(p, 1);
  exec::ReferenceBackend backend;
  exec::Executor exe(p, "step.train", store, backend);
  std::vector<float> x(8, 0.5f);
  std::vector<int32_t> y(2, 1);
  exe.upload(exe.inputId("image"), x.data(), x.size() * 4, 2);
  exe.upload(exe.inputId("labels"), y.data(), y.size() * 4, 2);
  try {
    exe.run(2, exec::StepContext{});
    FAIL() << "expected PlanError";
  } catch (const plan::PlanError &e) {
    EXPECT_NE(std::string(e.what()).find("'fc' at batch 2:"), std::string::npos)
        << e.what();
  }
  // An upload whose source is not the value's size is refused.
  EXPECT_THROW(exe.upload(exe.inputId("image"), x.data(), 4, 2),
               std::invalid_argument);
}

TEST(HardeningTest, InputsMustMatchThePlansImages) {
  TempDir dir;
  json j = tinyPlan();
  j["input"] = {1, 3, 3};
  EXPECT_NE(planError(dir, j).find("programs.eval.inputs.image: value 0 of "
                                   "shape [-1, 4] is not a batch of [1, 3, 3] "
                                   "images"),
            std::string::npos)
      << planError(dir, j);
  j = tinyPlan();
  j["programs"]["step.train"]["values"][1]["shape"] = {-1, 2};
  EXPECT_NE(planError(dir, j).find("programs.step.train.inputs.labels: value "
                                   "1 is not a batch of i32 labels [-1]"),
            std::string::npos)
      << planError(dir, j);
  j = tinyPlan();
  j["data"]["crop_pad"] = int64_t(1) << 40;
  EXPECT_NE(planError(dir, j).find("crop and crop_pad must be at most 65536"),
            std::string::npos);
  j = tinyPlan();
  j["input"] = {int64_t(1) << 20, int64_t(1) << 20, 4};
  EXPECT_NE(planError(dir, j).find("an image of more than 2^31 values"),
            std::string::npos)
      << planError(dir, j);
}

// A phase that freezes a batch-norm layer leaves its running statistics
// bit-identical (netc compiles its forward in inference mode); the phase
// before it, which trains the layer, moves them. The trainer is compiled by
// netc at build time from test/Training/Inputs/frozen-batchnorm.net.
TEST(TrainerTest, FrozenBatchNormKeepsItsRunningStatistics) {
#ifndef NETC_STEP_PLAN_DIR
  GTEST_SKIP() << "built without the compiler: no compiled plan";
#else
  TempDir data, dir;
  writeIdxSet(data.path, 24, 6, 6, 6, 3);
  plan::Plan p = compiledPlan(dir, "frozen-batchnorm");
  ASSERT_EQ(p.schedule.size(), 2u);
  const char *stats[] = {"conv1.batchnorm.mean", "conv1.batchnorm.var"};

  train::TrainOptions o;
  o.seed = 5;
  o.maxSteps = 6; // the whole first phase: 24 images, batch 4
  std::ostringstream log;
  std::vector<std::vector<float>> before;
  {
    train::Trainer t(p, o, log, imageData(p, data));
    t.run();
    ASSERT_EQ(t.state().phaseIndex, 1);
    for (const char *name : stats)
      before.push_back(t.params().hostValue(name));
  }
  // Trained in phase 'stats': no longer the initial 0 and 1.
  EXPECT_NE(before[0], std::vector<float>(4, 0.0f));
  EXPECT_NE(before[1], std::vector<float>(4, 1.0f));

  o.resume = true;
  o.maxSteps = 0;
  train::Trainer t(p, o, log, imageData(p, data));
  t.run();
  EXPECT_EQ(t.state().phaseIndex, 2);
  EXPECT_EQ(t.state().globalStep, 12);
  for (size_t i = 0; i < 2; ++i) {
    std::vector<float> after = t.params().hostValue(stats[i]);
    ASSERT_EQ(after.size(), before[i].size()) << stats[i];
    auto bytes = [](const std::vector<float> &v) {
      const auto *b = reinterpret_cast<const unsigned char *>(v.data());
      return std::vector<unsigned char>(b, b + v.size() * sizeof(float));
    };
    EXPECT_EQ(bytes(after), bytes(before[i]))
        << stats[i] << " moved in the phase that freezes it";
  }
  // The decoder did train in that phase.
  EXPECT_NE(log.str().find("[decoders]"), std::string::npos) << log.str();
#endif
}

// Dense evaluation (net-dense-eval) at the input size is the eval program:
// the fc layers, as convolutions over maps of the training size, give a 1x1
// score map, whose average is the logits. At a larger scale the program
// runs on larger images, and evaluateDense scores a whole test set (each
// image and its mirror). Compiled at build time from
// test/Training/Inputs/dense-eval.net (scales 12, the input, and 16).
TEST(DenseEvalTest, AtTheInputSizeTheLogitsAreEvals) {
#ifndef NETC_STEP_PLAN_DIR
  GTEST_SKIP() << "built without the compiler: no compiled plan";
#else
  TempDir data, dir;
  writeIdxSet(data.path, 8, 10, 12, 12, 5);
  plan::Plan p = compiledPlan(dir, "dense-eval");
  ASSERT_EQ(p.denseScales, (std::vector<int64_t>{12, 16}));
  exec::ReferenceBackend backend;
  exec::ParamStore store(p, 3);
  exec::Executor eval(p, "eval", store, backend);
  exec::Executor dense(p, "eval.dense.12", store, backend);
  const int64_t n = 4;
  std::vector<float> images = testImages(n * 144, 11, 500.0f);
  std::vector<int32_t> labels = {0, 1, 2, 3};
  std::vector<float> want, got;
  for (exec::Executor *e : {&eval, &dense}) {
    const plan::Program &prog = e->program();
    e->keep(*prog.logits);
    e->upload(e->inputId("image"), images.data(), images.size() * 4, n);
    e->upload(e->inputId("labels"), labels.data(), labels.size() * 4, n);
    exec::StepContext ctx;
    ctx.training = false;
    e->run(n, ctx);
    (e == &eval ? want : got) = e->download(*prog.logits);
  }
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_NEAR(got[i], want[i], 1e-5 * (1 + std::abs(want[i]))) << i;

  // The larger scale: 16x16 images, a 3x3 score map averaged.
  exec::Executor large(p, "eval.dense.16", store, backend);
  EXPECT_EQ(large.program().value(large.inputId("image")).shape,
            (std::vector<int64_t>{-1, 1, 16, 16}));
  train::DataOptions o = train::dataOptions(p, data.str());
  const train::ImageData test = train::loadSplit(o, train::Split::Test);
  train::EvalResult r = train::evaluateDense(p, store, backend, test);
  EXPECT_EQ(r.total, 10);
  EXPECT_GE(r.errorPercent(), 0.0);
  EXPECT_LE(r.errorPercent(), 100.0);
  // A trainer without dense programs says so.
  plan::Plan plain = p;
  plain.denseScales.clear();
  EXPECT_THROW(train::evaluateDense(plain, store, backend, test),
               train::TrainError);
#endif
}

// Model FLOPs (netrun bench's TFLOP/s and the GPU benchmark's utilisation):
// two per multiply-add of the convolutions and fc layers, by hand.
TEST(ModelFlopsTest, CountsConvolutionsAndFc) {
  TempDir dir;
  plan::Plan tiny = loadJson(dir, tinyPlan());
  // fc [n, 4] x [3, 4] and its weight gradient; bias_grad counts nothing.
  EXPECT_EQ(exec::modelFlops(tiny.program("step.train"), 4),
            2 * (2 * 4 * 4 * 3));
#ifdef NETC_STEP_PLAN_DIR
  TempDir dir2;
  plan::Plan every = compiledPlan(dir2, "every-none");
  // every-layer.net per image: conv1 4x6x6 outputs over 2 channels x 3x3;
  // conv2 6x3x3 outputs over 4/2 channels x 3x3; fc3 6->8; fc4 8->5.
  const int64_t perImage =
      2 * (4 * 6 * 6 * 2 * 9 + 6 * 3 * 3 * 2 * 9 + 6 * 8 + 8 * 5);
  EXPECT_EQ(exec::modelFlops(every.program("eval"), 3), 3 * perImage);
#endif
}

// The arena bytes free around each kernel (a backend's scratch: the cuda
// backend's convolution workspaces), by hand: a value is used from the
// kernel before its first writer to the one after its last reader (the
// image from before the first kernel, the loss to after the last); the
// plan's workspace region never is free; spans start at 256 bytes.
TEST(FreeArenaTest, SpansAreTheLargestGapsAroundEachKernel) {
  plan::Program p;
  p.batch = 1;
  p.arenaBytes = 4096;
  auto value = [&](int64_t id, std::vector<int64_t> shape, int64_t offset) {
    plan::Value v;
    v.id = id;
    v.shape = std::move(shape);
    v.offset = offset;
    p.values[id] = v;
  };
  value(0, {-1, 64}, 0);     // the image, read by kernel 0
  value(1, {-1, 64}, 256);   // 0 -> 1
  value(2, {-1, 128}, 1024); // 1 -> 2
  value(3, {-1, 64}, 0);     // 2 -> 3 (the image's bytes again)
  value(4, {}, 2048);        // the loss, written by 3
  plan::Value w;
  w.id = 5;
  w.shape = {64};
  w.param = "w"; // a parameter: not in the arena
  p.values[5] = w;
  p.inputs["image"] = 0;
  p.loss = 4;
  auto kernel = [&](std::vector<int64_t> in, std::vector<int64_t> out) {
    plan::Kernel k{plan::Op::Relu, std::move(in), std::move(out),
                   nlohmann::json::object(), ""};
    p.kernels.push_back(k);
  };
  kernel({0}, {1});
  kernel({1, 5}, {2});
  kernel({2}, {3});
  kernel({3}, {4});
  auto spans = exec::freeArenaSpans(p);
  ASSERT_EQ(spans.size(), 4u);
  auto expectSpan = [&](size_t i, int64_t offset, int64_t bytes) {
    EXPECT_EQ(spans[i].offset, offset) << "kernel " << i;
    EXPECT_EQ(spans[i].bytes, bytes) << "kernel " << i;
  };
  // Kernel 0: the image, 1 and 2 (written by the next kernel) in use.
  expectSpan(0, 1536, 2560);
  // Kernel 1: 3 too (written by the next); the loss not yet.
  expectSpan(1, 1536, 2560);
  // Kernel 2: 1, 2, 3 and the loss (written next); its 4 bytes push the
  // span's start to the next 256.
  expectSpan(2, 2304, 1792);
  // Kernel 3: 1 is free again (last read two kernels before).
  expectSpan(3, 2304, 1792);
  // A workspace region of the plan is never free.
  p.workspaceOffset = 3072;
  p.workspaceBytes = 1024;
  spans = exec::freeArenaSpans(p);
  expectSpan(0, 1536, 1536);
  expectSpan(2, 2304, 768);
  expectSpan(3, 256, 768);
  // A finer alignment starts right after the loss.
  spans = exec::freeArenaSpans(p, 64);
  expectSpan(2, 2112, 960);
}

// The host's format against a value's storage: NHWC is the channel block
// C, bf16 rounds to nearest even on the way in and widens exactly back.
TEST(StorageTest, NhwcAndBf16RoundTrip) {
  const kernels::Dims4 d{2, 5, 3, 4};
  std::vector<uint32_t> host(size_t(d.count()));
  uint64_t h = 3;
  for (uint32_t &w : host) {
    float f =
        float(int64_t((h = kernels::splitmix64(h)) % 20001) - 10000) / 997.0f;
    w = cuda::floatBits(f);
  }
  auto at = [&](int64_t n, int64_t c, int64_t y, int64_t x) {
    return size_t(((n * d.c + c) * d.h + y) * d.w + x);
  };
  // NHWC, 4-byte words: a pure permutation.
  std::vector<uint32_t> nhwc(host.size()), back(host.size());
  kernels::toStorage(d, {d.c, false}, host.data(), nhwc.data());
  EXPECT_EQ(nhwc[size_t(((1 * d.h + 2) * d.w + 3) * d.c + 4)],
            host[at(1, 4, 2, 3)]);
  kernels::fromStorage(d, {d.c, false}, nhwc.data(), back.data());
  EXPECT_EQ(back, host);
  // bf16 NHWC: each element rounded once.
  std::vector<cuda::Bf16> half(host.size());
  kernels::toStorage(d, {d.c, true}, host.data(), half.data());
  kernels::fromStorage(d, {d.c, true}, half.data(), back.data());
  for (size_t i = 0; i < host.size(); ++i) {
    float want = cuda::Bf16::fromFloat(cuda::bitsFloat(host[i])).toFloat();
    ASSERT_EQ(back[i], cuda::floatBits(want)) << i;
  }
  EXPECT_EQ(half[size_t(((0 * d.h + 1) * d.w + 2) * d.c + 3)].toFloat(),
            cuda::bitsFloat(back[at(0, 3, 1, 2)]));
}

// The reference backend runs a bf16 plan (net-precision: bf16 NHWC
// activations, f32 weights and losses) as an emulation of the cuda backend's
// tensor-core path: from the same parameters and images, its step and eval
// follow the f32 plan's within bf16's precision, and what it stores as bf16
// comes out as bf16 values. Compiled at build time from every-layer.net
// (--augment=swwae-all, fp32 and --precision=bf16).
TEST(Bf16EmulationTest, FollowsTheF32Plan) {
#ifndef NETC_STEP_PLAN_DIR
  GTEST_SKIP() << "built without the compiler: no compiled plan";
#else
  TempDir dir32, dir16;
  plan::Plan p32 = compiledPlan(dir32, "every-swwae-all");
  plan::Plan p16 = compiledPlan(dir16, "every-swwae-all-bf16");
  ASSERT_EQ(p16.precision, plan::Precision::BF16);
  exec::ReferenceBackend backend;
  exec::ParamStore s32(p32, 9), s16(p16, 9);
  const std::string step = p32.schedule.back().program;
  const int64_t n = 4;
  std::vector<float> images = testImages(n * 2 * 12 * 12, 5, 500.0f);
  std::vector<int32_t> labels = {0, 1, 2, 4};
  auto feed = [&](exec::Executor &e) {
    e.upload(e.inputId("image"), images.data(), images.size() * 4, n);
    e.upload(e.inputId("labels"), labels.data(), labels.size() * 4, n);
  };
  exec::StepContext ctx;
  ctx.lr = 0.01;
  ctx.momentum = 0.9;
  ctx.training = true;
  exec::Executor e32(p32, step, s32, backend), e16(p16, step, s16, backend);
  int64_t image16 = e16.inputId("image");
  EXPECT_EQ(e16.program().value(image16).layout, plan::Layout::NHWC);
  for (int i = 0; i < 3; ++i) {
    ctx.step = uint64_t(i);
    feed(e32);
    feed(e16);
    e32.run(n, ctx);
    e16.run(n, ctx);
    double want = e32.scalar(*e32.program().loss);
    double got = e16.scalar(*e16.program().loss);
    EXPECT_NEAR(got, want, 2e-2 * std::abs(want)) << "step " << i;
  }
  // The updated weights stay f32 masters, near the f32 plan's.
  std::vector<float> w32 = s32.hostValue("fc4.weight"),
                     w16 = s16.hostValue("fc4.weight");
  ASSERT_EQ(w16.size(), w32.size());
  for (size_t i = 0; i < w32.size(); ++i)
    EXPECT_NEAR(w16[i], w32[i], 2e-2 * (std::abs(w32[i]) + 1e-2)) << i;

  ctx.training = false;
  exec::Executor v32(p32, "eval", s32, backend), v16(p16, "eval", s16, backend);
  feed(v32);
  feed(v16);
  v32.run(n, ctx);
  v16.run(n, ctx);
  ASSERT_EQ(v16.program().value(*v16.program().logits).dtype,
            plan::DType::BF16);
  std::vector<float> l32 = v32.download(*v32.program().logits),
                     l16 = v16.download(*v16.program().logits);
  ASSERT_EQ(l16.size(), l32.size());
  float scale = 0;
  for (float v : l32)
    scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < l32.size(); ++i) {
    EXPECT_EQ(cuda::floatBits(l16[i]) & 0xFFFFu, 0u) << "not a bf16 value";
    EXPECT_NEAR(l16[i], l32[i], 3e-2 * scale) << i;
  }
  // The host cannot read bf16 storage directly.
  EXPECT_THROW(v16.data(*v16.program().logits), std::logic_error);
#endif
}

// Inputs already in the backend's memory (netrun bench's): uploadFrom()
// copies them into the arena, or converts them there (the bf16 plan's NHWC
// image), as upload() does from the host: a step fed either way ends with
// the same loss and weights to the bit, on the reference backend and on the
// guarded one, whose memory the host cannot touch (so its conversion must
// be queued like a kernel's).
TEST(ExecutorTest, UploadFromBackendMemoryIsUpload) {
#ifndef NETC_STEP_PLAN_DIR
  GTEST_SKIP() << "built without the compiler: no compiled plan";
#else
  TempDir dir;
  plan::Plan p = compiledPlan(dir, "every-swwae-all-bf16");
  const std::string step = p.schedule.back().program;
  const int64_t n = 3;
  std::vector<float> images = testImages(n * 2 * 12 * 12, 11, 300.0f);
  std::vector<int32_t> labels = {3, 0, 4};
  exec::StepContext ctx;
  ctx.lr = 0.01;
  ctx.momentum = 0.9;
  ctx.training = true;
  for (const char *name : {"reference", "guarded"}) {
    SCOPED_TRACE(name);
    std::unique_ptr<exec::Backend> b = exec::makeBackend(name);
    exec::ParamStore host(p, 4, *b), resident(p, 4, *b);
    exec::Executor e(p, step, host, *b), f(p, step, resident, *b);
    const int64_t image = f.inputId("image"), label = f.inputId("labels");
    ASSERT_EQ(f.program().value(image).dtype, plan::DType::BF16);
    auto put = [&](const void *src, uint64_t bytes) {
      std::unique_ptr<exec::Buffer> buf = b->allocate(bytes + 64, "input");
      b->upload(buf->data(), src, bytes);
      return buf;
    };
    const uint64_t imageBytes = images.size() * 4, labelBytes = n * 4;
    auto images1 = put(images.data(), imageBytes);
    auto labels1 = put(labels.data(), labelBytes);
    for (int i = 0; i < 2; ++i) {
      ctx.step = uint64_t(i);
      e.upload(image, images.data(), imageBytes, n);
      e.upload(label, labels.data(), labelBytes, n);
      f.uploadFrom(image, *images1, imageBytes, n);
      f.uploadFrom(label, *labels1, labelBytes, n);
      e.run(n, ctx);
      f.run(n, ctx);
      float want = e.scalar(*e.program().loss);
      EXPECT_EQ(cuda::floatBits(f.scalar(*f.program().loss)),
                cuda::floatBits(want))
          << "step " << i;
    }
    EXPECT_EQ(resident.hostValue("fc4.weight"), host.hostValue("fc4.weight"));
    // The source must hold the input; checked before anything is issued.
    auto small = b->allocate(imageBytes - 4, "short");
    EXPECT_THROW(f.uploadFrom(image, *small, imageBytes, n),
                 std::invalid_argument);
    EXPECT_THROW(f.uploadFrom(image, *images1, imageBytes - 4, n),
                 std::invalid_argument);
  }
#endif
}

} // namespace

//===----------------------------------------------------------------------===//
// all_reduce_mean on host memory
//===----------------------------------------------------------------------===//

namespace {
/// Three ranks that all hold what this one holds: a sum triples each value.
/// Records the spans it was asked to reduce.
class TripleComm final : public netc::dist::Communicator {
public:
  const char *name() const override { return "triple"; }
  int rank() const override { return 0; }
  int size() const override { return 3; }
  void allReduceSum(float *x, int64_t n) override {
    spans.push_back({x, n});
    for (int64_t i = 0; i < n; ++i)
      x[i] *= 3;
  }
  void allReduceSum(double *, int64_t) override { ADD_FAILURE(); }
  void broadcast(void *, int64_t, int) override { ADD_FAILURE(); }
  int localRank() const override { return 0; }
  int localSize() const override { return 1; }
  [[noreturn]] void abort(int) override { std::abort(); }
  std::vector<std::pair<float *, int64_t>> spans;
};
} // namespace

TEST(AllReduceMean, ReducesABucketAsOneSpanAndKeepsTheMean) {
  // Outputs laid out as net-plan-memory lays out a bucket: 10 floats, a gap
  // to the next 64-byte boundary (6 floats), 16 floats, 1 float; then one
  // far away, which is reduced on its own.
  std::vector<float> arena(200, std::nanf("")), a(10), b(16), c(1), d(3);
  for (size_t i = 0; i < a.size(); ++i)
    a[i] = float(i);
  std::fill(b.begin(), b.end(), 2.5f);
  c[0] = -1;
  std::fill(d.begin(), d.end(), 7.f);
  auto ref = [](float *p, size_t n) {
    netc::exec::TensorRef t;
    t.data = p;
    t.count = int64_t(n);
    return t;
  };
  netc::plan::Kernel kernel;
  kernel.op = netc::plan::Op::AllReduceMean;
  netc::exec::KernelAttrs attrs;
  TripleComm comm;
  netc::exec::StepContext ctx;
  ctx.comm = &comm;
  netc::exec::KernelCallT<float> call{kernel,
                                      attrs,
                                      {ref(a.data(), 10), ref(b.data(), 16),
                                       ref(c.data(), 1), ref(d.data(), 3)},
                                      {ref(&arena[0], 10), ref(&arena[16], 16),
                                       ref(&arena[32], 1), ref(&arena[100], 3)},
                                      4,
                                      ctx};
  netc::exec::hostAllReduceMean(call);
  ASSERT_EQ(comm.spans.size(), 2u);
  EXPECT_EQ(comm.spans[0], std::make_pair(&arena[0], int64_t(33)));
  EXPECT_EQ(comm.spans[1], std::make_pair(&arena[100], int64_t(3)));
  for (size_t i = 0; i < 10; ++i)
    EXPECT_FLOAT_EQ(arena[i], a[i]) << i;
  for (size_t i = 10; i < 16; ++i)
    EXPECT_EQ(arena[i], 0.f) << "the gap is zeroed, not summed as NaN";
  for (size_t i = 16; i < 32; ++i)
    EXPECT_FLOAT_EQ(arena[i], 2.5f);
  EXPECT_FLOAT_EQ(arena[32], -1.f);
  EXPECT_TRUE(std::isnan(arena[33])) << "past the bucket: untouched";
  EXPECT_FLOAT_EQ(arena[100], 7.f);
  // One rank, or none: a copy.
  ctx.comm = nullptr;
  std::fill(arena.begin(), arena.end(), 0.f);
  netc::exec::hostAllReduceMean(call);
  EXPECT_FLOAT_EQ(arena[5], 5.f);
  EXPECT_EQ(comm.spans.size(), 2u);
}
