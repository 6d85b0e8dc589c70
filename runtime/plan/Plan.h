//===- Plan.h - the trainer artifact's plan.json ----------------*- C++ -*-===//
//
// Parses and validates `<trainer>/plan.json` (docs/trainer-format.md, format
// version 2) into plain structs. Every problem is a PlanError whose message
// names the file and the JSON path of the offending field, e.g.
//   model.trainer/plan.json: programs.step.joint.kernels[12]: unknown op
//   'conv3d'
//
// Validation covers what the executor relies on: known format/version, ops,
// dtypes and attribute types; operand/result counts per op; every value id
// referenced exists; parameters named by values and updates exist with the
// right shape; arena values are 64-byte aligned and fit arena_bytes at the
// program's batch; a kernel's outputs do not overlap its inputs except the
// documented in-place ops and views.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_PLAN_PLAN_H
#define NETC_RUNTIME_PLAN_PLAN_H

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace netc::plan {

class PlanError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

constexpr int kFormatVersion = 3;
/// plan.json files above this size are refused (VGG-16's is under 1 MiB).
constexpr uint64_t kMaxPlanBytes = uint64_t(256) << 20;

/// Element types: f32 and bf16 values are real numbers (activations,
/// gradients, losses; parameters are always f32), i32 ones integers
/// (labels), u8 ones max-pooling switches (kernels::Switch: a position
/// within the pooling window).
enum class DType { F32, BF16, I32, U8 };
const char *dtypeName(DType t);
inline int64_t dtypeSize(DType t) {
  return t == DType::BF16 ? 2 : t == DType::U8 ? 1 : 4;
}
inline bool isReal(DType t) { return t == DType::F32 || t == DType::BF16; }

/// Memory order of a rank-4 value's dimensions (its shape is always written
/// N, C, H, W).
enum class Layout { NCHW, NHWC };
const char *layoutName(Layout l);

/// What real-number arithmetic the compiler chose (`netc --precision`):
/// fp32; tf32 (fp32 values, tensor-core products with a 10-bit mantissa);
/// bf16 (bf16 activations and gradients in NHWC, fp32 master weights, fp32
/// loss accumulation).
enum class Precision { FP32, TF32, BF16 };
const char *precisionName(Precision p);

/// Every kernel the runtime knows (runtime/plan/Ops.def).
enum class Op {
#define NETC_OP(E, ...) E,
#include "runtime/plan/Ops.def"
};
const char *opName(Op op);
std::optional<Op> opFromName(const std::string &name);
/// Ops whose output may share its bytes with an input (run in place).
bool opAllowsInPlace(Op op);
/// Ops that do nothing: the output is a view of the input's bytes.
bool opIsView(Op op);

/// elementBytes times the product of `shape` (a -1 dimension counts as n),
/// or nothing if that overflows int64.
std::optional<int64_t> checkedProduct(const std::vector<int64_t> &shape,
                                      int64_t n, int64_t elementBytes = 1);

/// Reads a JSON integer, written as 3 or 3.0, into `out`; false for
/// anything else, a number beyond int64's range included (nlohmann::json
/// keeps one above 2^63 - 1 unsigned, which get<int64_t> would wrap, 2^64 -
/// 1 to -1, the batch dimension in a shape; casting a double outside the
/// range is undefined). Every integer a plan holds is read through it, and
/// the cuda backend's algorithm file too.
bool asInt(const nlohmann::json &j, int64_t &out);

struct InitSpec {
  enum Kind { Gaussian, Constant, File } kind = Constant;
  double mean = 0, std = 0, value = 0;
  std::string path, key;
};

struct ParamSpec {
  std::string name;
  std::vector<int64_t> shape;
  std::string group;
  bool trainable = true;
  double lrMult = 1, decayMult = 1;
  InitSpec init;
  int64_t count() const;
};

struct Value {
  int64_t id = 0;
  std::vector<int64_t> shape; ///< -1 = the batch dimension
  DType dtype = DType::F32;
  Layout layout = Layout::NCHW;
  /// Arena byte offset, or -1 for a parameter.
  int64_t offset = -1;
  std::string param; ///< parameter name when offset < 0
  bool isParam() const { return !param.empty(); }
  bool hasBatch() const;
  /// Elements / bytes with the batch dimension set to n.
  int64_t count(int64_t n) const;
  int64_t bytes(int64_t n) const { return count(n) * dtypeSize(dtype); }
};

struct Kernel {
  Op op;
  std::vector<int64_t> in, out; ///< value ids
  nlohmann::json attrs;         ///< an object (possibly empty)
  std::string path;             ///< JSON path for messages

  // Typed attribute access; throw PlanError naming `path` on type errors.
  /// Throws the PlanError for a required attribute that is absent.
  [[noreturn]] void missing(const char *name) const;
  bool has(const char *name) const;
  int64_t i64(const char *name, std::optional<int64_t> dflt = {}) const;
  double f64(const char *name, std::optional<double> dflt = {}) const;
  bool flag(const char *name) const; ///< absent = false
  std::string str(const char *name) const;
  /// An integer array of `n` entries (a single entry or scalar is splatted).
  std::vector<int64_t>
  ints(const char *name, size_t n,
       std::optional<std::vector<int64_t>> dflt = {}) const;
  std::vector<double> f64s(const char *name) const;
};

struct Term {
  std::string name;
  double weight = 1;
  int64_t value = -1;
};

/// One image of the `reconstruct` program: decoded from macro-layer `from`.
struct Reconstruction {
  std::string from;
  int64_t value = -1;
};

struct Program {
  std::string name;
  int64_t batch = 0;
  int64_t arenaBytes = 0;
  /// Scratch bytes for the kernels (none planned yet: 0), at
  /// workspaceOffset in the arena, apart from every value.
  int64_t workspaceOffset = 0, workspaceBytes = 0;
  std::map<int64_t, Value> values;
  std::map<std::string, int64_t> inputs;
  std::vector<Kernel> kernels;
  std::optional<int64_t> loss, logits;
  std::vector<Term> terms;
  std::vector<Reconstruction> reconstructions;
  std::map<std::string, int64_t> otherOutputs;
  const Value &value(int64_t id) const { return values.at(id); }
};

struct DataSpec {
  std::string kind = "fashion-mnist";
  std::string path;
  int64_t subset = 0, testSubset = 0;
  bool mirror = false;
  int64_t crop = 0, cropPad = 0;
  std::vector<int64_t> scale;
  std::vector<double> mean, std;
  // Image folders (`images`): the evaluation resize, the colour channels'
  // order, decoding threads (0: one per core) and whether bad images are
  // skipped.
  int64_t evalScale = 0;
  std::string channelOrder = "rgb";
  int64_t workers = 0;
  bool skipBad = false;
};

struct Phase {
  std::string phase, program;
  int64_t batch = 0, epochs = 0, steps = 0;
  double lr = 0, momentum = 0, decay = 0;
  std::string lrPolicy = "fixed";
  double lrGamma = 0.1;
  int64_t lrEvery = 1;
  double lrMin = 0;
};

struct Plan {
  std::string file; ///< the plan.json path (for messages)
  std::string dir;  ///< the trainer directory
  std::string network, variant;
  Precision precision = Precision::FP32;
  /// Compiled for data-parallel training (`netc --data-parallel`): its step
  /// programs all-reduce the gradients, in buckets of up to this many bytes;
  /// 0 when not.
  int64_t bucketBytes = 0;
  std::vector<int64_t> input;
  int64_t classes = 0;
  DataSpec data;
  std::vector<std::string> evalSchemes;
  /// `dense` evaluation: the shorter sides of its programs
  /// (`eval.dense.<S>`), in order.
  std::vector<int64_t> denseScales;
  /// torchvision's state_dict name of each parameter netc imported under
  /// torchvision's names (`torchvision`; empty where netc wrote none).
  std::map<std::string, std::string> torchvision;
  std::vector<ParamSpec> params;
  std::map<std::string, size_t> paramIndex;
  std::map<std::string, Program> programs;
  std::vector<Phase> schedule;
  /// A hash of the schedule and of the parameters' names and shapes: a
  /// checkpoint records it, so that one written for another plan (the
  /// trainer recompiled since) is not resumed as if it were this one's.
  std::string fingerprint;

  const ParamSpec *findParam(const std::string &name) const;
  const Program &program(const std::string &name) const;
};

/// Loads `<trainerDir>/plan.json`.
Plan loadPlan(const std::string &trainerDir);
/// Parses plan JSON text; `file` names it in messages, `dir` is the trainer.
Plan parsePlan(const std::string &text, const std::string &file,
               const std::string &dir);

} // namespace netc::plan

#endif // NETC_RUNTIME_PLAN_PLAN_H
