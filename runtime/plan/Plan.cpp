//===- Plan.cpp - the trainer artifact's plan.json ------------------------===//

#include "runtime/plan/Plan.h"
#include "runtime/io/Controls.h"
#include "runtime/io/File.h"
#include "runtime/io/Hash.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

namespace netc::plan {

using nlohmann::json;

//===----------------------------------------------------------------------===//
// Names
//===----------------------------------------------------------------------===//

namespace {
enum class OpMemory { Plain, InPlace, View };

struct OpInfo {
  Op op;
  const char *name;
  int minIn, maxIn; ///< maxIn -1 = unbounded
  int outs;
  OpMemory memory;
  std::string attrs; ///< required attributes, separated by spaces
  /// The attributes that must be present.
  std::vector<std::string> required() const {
    std::vector<std::string> out;
    std::istringstream in(attrs);
    for (std::string a; in >> a;)
      out.push_back(a);
    return out;
  }
};

const std::vector<OpInfo> &opTable() {
  static const std::vector<OpInfo> table = [] {
    std::vector<OpInfo> t;
#define NETC_OP(E, NAME, MININ, MAXIN, OUTS, MEMORY, ATTRS)                    \
  t.push_back({Op::E, NAME, MININ, MAXIN, OUTS, OpMemory::MEMORY, ATTRS});
#include "runtime/plan/Ops.def"
    return t;
  }();
  return table;
}

const OpInfo &info(Op op) {
  for (const OpInfo &i : opTable())
    if (i.op == op)
      return i;
  throw std::logic_error("opInfo: unknown op");
}
} // namespace

const char *opName(Op op) { return info(op).name; }

std::optional<Op> opFromName(const std::string &name) {
  for (const OpInfo &i : opTable())
    if (name == i.name)
      return i.op;
  return std::nullopt;
}

bool opAllowsInPlace(Op op) { return info(op).memory == OpMemory::InPlace; }

bool opIsView(Op op) { return info(op).memory == OpMemory::View; }

const char *dtypeName(DType t) {
  switch (t) {
  case DType::F32:
    return "f32";
  case DType::BF16:
    return "bf16";
  case DType::I32:
    return "i32";
  case DType::U8:
    return "u8";
  }
  return "?";
}

const char *layoutName(Layout l) { return l == Layout::NCHW ? "nchw" : "nhwc"; }

const char *precisionName(Precision p) {
  switch (p) {
  case Precision::FP32:
    return "fp32";
  case Precision::TF32:
    return "tf32";
  case Precision::BF16:
    return "bf16";
  }
  return "?";
}

int64_t ParamSpec::count() const {
  int64_t c = 1;
  for (int64_t d : shape)
    c *= d;
  return c;
}

std::optional<int64_t> checkedProduct(const std::vector<int64_t> &shape,
                                      int64_t n, int64_t elementBytes) {
  int64_t c = elementBytes;
  for (int64_t d : shape)
    if (__builtin_mul_overflow(c, d < 0 ? n : d, &c))
      return std::nullopt;
  return c;
}

bool asInt(const nlohmann::json &j, int64_t &out) {
  if (j.is_number_unsigned()) {
    const uint64_t u = j.get<uint64_t>();
    if (u > uint64_t(std::numeric_limits<int64_t>::max()))
      return false;
    out = int64_t(u);
    return true;
  }
  if (j.is_number_integer()) {
    out = j.get<int64_t>();
    return true;
  }
  if (j.is_number_float()) {
    const double d = j.get<double>(); // never NaN or infinite from JSON
    if (d >= -0x1p63 && d < 0x1p63 && d == std::trunc(d)) {
      out = int64_t(d);
      return true;
    }
  }
  return false;
}

bool Value::hasBatch() const {
  return std::find(shape.begin(), shape.end(), -1) != shape.end();
}

int64_t Value::count(int64_t n) const {
  int64_t c = 1;
  for (int64_t d : shape)
    c *= d < 0 ? n : d;
  return c;
}

const ParamSpec *Plan::findParam(const std::string &name) const {
  auto it = paramIndex.find(name);
  return it == paramIndex.end() ? nullptr : &params[it->second];
}

const Program &Plan::program(const std::string &name) const {
  auto it = programs.find(name);
  if (it == programs.end())
    throw PlanError(fmt::format("{}: no program '{}'", file, name));
  return it->second;
}

//===----------------------------------------------------------------------===//
// Kernel attributes
//===----------------------------------------------------------------------===//

namespace {
std::string describe(const json &j) {
  switch (j.type()) {
  case json::value_t::null:
    return "null";
  case json::value_t::boolean:
    return "a boolean";
  case json::value_t::string:
    return "a string";
  case json::value_t::array:
    return "an array";
  case json::value_t::object:
    return "an object";
  default: // a number: itself, e.g. 2.5 or 18446744073709551615
    return j.dump();
  }
}
} // namespace

void Kernel::missing(const char *name) const {
  throw PlanError(fmt::format("{}.attrs: missing attribute '{}'", path, name));
}

bool Kernel::has(const char *name) const {
  return attrs.is_object() && attrs.contains(name) && !attrs[name].is_null();
}

int64_t Kernel::i64(const char *name, std::optional<int64_t> dflt) const {
  if (!has(name)) {
    if (dflt)
      return *dflt;
    missing(name);
  }
  const json &j = attrs[name];
  int64_t v;
  if (asInt(j, v))
    return v;
  if (j.is_array() && j.size() == 1 && asInt(j[0], v))
    return v;
  throw PlanError(fmt::format("{}.attrs.{}: expected an integer, got {}", path,
                              name, describe(j)));
}

double Kernel::f64(const char *name, std::optional<double> dflt) const {
  if (!has(name)) {
    if (dflt)
      return *dflt;
    missing(name);
  }
  const json &j = attrs[name];
  if (!j.is_number())
    throw PlanError(fmt::format("{}.attrs.{}: expected a number, got {}", path,
                                name, describe(j)));
  return j.get<double>();
}

bool Kernel::flag(const char *name) const {
  if (!has(name))
    return false;
  const json &j = attrs[name];
  if (j.is_boolean())
    return j.get<bool>();
  int64_t v;
  if (asInt(j, v))
    return v != 0;
  throw PlanError(fmt::format("{}.attrs.{}: expected a boolean, got {}", path,
                              name, describe(j)));
}

std::string Kernel::str(const char *name) const {
  if (!has(name))
    missing(name);
  const json &j = attrs[name];
  if (!j.is_string())
    throw PlanError(fmt::format("{}.attrs.{}: expected a string, got {}", path,
                                name, describe(j)));
  return j.get<std::string>();
}

std::vector<int64_t>
Kernel::ints(const char *name, size_t n,
             std::optional<std::vector<int64_t>> dflt) const {
  if (!has(name)) {
    if (dflt)
      return *dflt;
    missing(name);
  }
  const json &j = attrs[name];
  int64_t v;
  if (asInt(j, v))
    return std::vector<int64_t>(n, v);
  if (!j.is_array())
    throw PlanError(
        fmt::format("{}.attrs.{}: expected an array of {} integers, "
                    "got {}",
                    path, name, n, describe(j)));
  std::vector<int64_t> out;
  for (const json &e : j) {
    if (!asInt(e, v))
      throw PlanError(fmt::format("{}.attrs.{}: expected integers, got {}",
                                  path, name, describe(e)));
    out.push_back(v);
  }
  if (out.size() == 1 && n > 1)
    out.assign(n, out[0]);
  if (out.size() != n)
    throw PlanError(fmt::format("{}.attrs.{}: expected {} integers, got {}",
                                path, name, n, out.size()));
  return out;
}

std::vector<double> Kernel::f64s(const char *name) const {
  if (!has(name))
    missing(name);
  const json &j = attrs[name];
  if (!j.is_array())
    throw PlanError(fmt::format("{}.attrs.{}: expected an array of numbers, "
                                "got {}",
                                path, name, describe(j)));
  std::vector<double> out;
  for (const json &e : j) {
    if (!e.is_number())
      throw PlanError(fmt::format("{}.attrs.{}: expected numbers, got {}", path,
                                  name, describe(e)));
    out.push_back(e.get<double>());
  }
  return out;
}

//===----------------------------------------------------------------------===//
// Parsing
//===----------------------------------------------------------------------===//

namespace {

std::string join(const std::string &path, const std::string &key) {
  return path.empty() ? key : path + "." + key;
}
std::string index(const std::string &path, size_t i) {
  return fmt::format("{}[{}]", path, i);
}

/// Parsing context: every error is "<file>: <path>: <message>".
struct Parser {
  std::string file;

  [[noreturn]] void fail(const std::string &path,
                         const std::string &msg) const {
    if (path.empty())
      throw PlanError(fmt::format("{}: {}", file, msg));
    throw PlanError(fmt::format("{}: {}: {}", file, path, msg));
  }

  const json &field(const json &obj, const std::string &path,
                    const char *key) const {
    if (!obj.is_object())
      fail(path, fmt::format("expected an object, got {}", describe(obj)));
    auto it = obj.find(key);
    if (it == obj.end())
      fail(path, fmt::format("missing field '{}'", key));
    return *it;
  }
  const json *optField(const json &obj, const char *key) const {
    auto it = obj.find(key);
    return it == obj.end() || it->is_null() ? nullptr : &*it;
  }

  int64_t integer(const json &j, const std::string &path) const {
    int64_t v;
    if (!asInt(j, v))
      fail(path, fmt::format("expected an integer, got {}", describe(j)));
    return v;
  }
  double number(const json &j, const std::string &path) const {
    if (!j.is_number())
      fail(path, fmt::format("expected a number, got {}", describe(j)));
    return j.get<double>();
  }
  std::string string(const json &j, const std::string &path) const {
    if (!j.is_string())
      fail(path, fmt::format("expected a string, got {}", describe(j)));
    return j.get<std::string>();
  }
  bool boolean(const json &j, const std::string &path) const {
    if (j.is_boolean())
      return j.get<bool>();
    int64_t v;
    if (asInt(j, v))
      return v != 0;
    fail(path, fmt::format("expected a boolean, got {}", describe(j)));
  }
  const json &array(const json &j, const std::string &path) const {
    if (!j.is_array())
      fail(path, fmt::format("expected an array, got {}", describe(j)));
    return j;
  }
  std::vector<int64_t> ints(const json &j, const std::string &path) const {
    std::vector<int64_t> out;
    for (size_t i = 0; i < array(j, path).size(); ++i)
      out.push_back(integer(j[i], index(path, i)));
    return out;
  }
  std::vector<double> numbers(const json &j, const std::string &path) const {
    std::vector<double> out;
    for (size_t i = 0; i < array(j, path).size(); ++i)
      out.push_back(number(j[i], index(path, i)));
    return out;
  }

  /// `v`, which the kernels use as a 32-bit float: it must be one.
  double f32(double v, const std::string &path) const {
    if (!std::isfinite(static_cast<float>(v)))
      fail(path, fmt::format("{} is beyond the 32-bit floats the trainer "
                             "computes in (at most 3.4e38)",
                             v));
    return v;
  }

  double nonNegative(double v, const std::string &path) const {
    if (!(v >= 0))
      fail(path, fmt::format("{} is negative", v));
    return v;
  }

  // Required-field shorthands.
  int64_t reqInt(const json &o, const std::string &p, const char *k) const {
    return integer(field(o, p, k), join(p, k));
  }
  double reqNum(const json &o, const std::string &p, const char *k) const {
    return number(field(o, p, k), join(p, k));
  }
  std::string reqStr(const json &o, const std::string &p, const char *k) const {
    return string(field(o, p, k), join(p, k));
  }
  /// A name printed in messages, progress lines and metrics (a phase, a
  /// parameter, a loss term): netc writes identifiers, and a control
  /// character in a crafted plan's name would reach the terminal raw.
  std::string reqName(const json &o, const std::string &p,
                      const char *k) const {
    std::string s = reqStr(o, p, k);
    for (size_t i = 0; i < s.size(); ++i)
      if (size_t n = io::controlLength(s, i, /*keepNewlines=*/false))
        fail(join(p, k),
             fmt::format(
                 "a name holds the control character {}",
                 n == 2 ? fmt::format(
                              "U+{:04X}",
                              unsigned(static_cast<unsigned char>(s[i + 1])))
                        : fmt::format(
                              "0x{:02X}",
                              unsigned(static_cast<unsigned char>(s[i])))));
    return s;
  }
  // Optional-field shorthands.
  int64_t optInt(const json &o, const std::string &p, const char *k,
                 int64_t d) const {
    const json *j = optField(o, k);
    return j ? integer(*j, join(p, k)) : d;
  }
  double optNum(const json &o, const std::string &p, const char *k,
                double d) const {
    const json *j = optField(o, k);
    return j ? number(*j, join(p, k)) : d;
  }
  std::string optStr(const json &o, const std::string &p, const char *k,
                     const std::string &d) const {
    const json *j = optField(o, k);
    return j ? string(*j, join(p, k)) : d;
  }
  bool optBool(const json &o, const std::string &p, const char *k,
               bool d) const {
    const json *j = optField(o, k);
    return j ? boolean(*j, join(p, k)) : d;
  }

  //===--------------------------------------------------------------------===//

  ParamSpec param(const json &j, const std::string &path) const {
    ParamSpec p;
    p.name = reqName(j, path, "name");
    if (p.name.empty())
      fail(join(path, "name"), "empty parameter name");
    p.shape = ints(field(j, path, "shape"), join(path, "shape"));
    for (size_t i = 0; i < p.shape.size(); ++i)
      if (p.shape[i] <= 0)
        fail(index(join(path, "shape"), i),
             fmt::format("parameter dimension {} is not positive", p.shape[i]));
    if (!checkedProduct(p.shape, 1, 8))
      fail(join(path, "shape"),
           fmt::format("parameter '{}' of shape [{}] is too large", p.name,
                       fmt::join(p.shape, ", ")));
    p.group = optStr(j, path, "group", "");
    p.trainable = optBool(j, path, "trainable", true);
    p.lrMult =
        nonNegative(optNum(j, path, "lr_mult", 1.0), join(path, "lr_mult"));
    p.decayMult = nonNegative(optNum(j, path, "decay_mult", 1.0),
                              join(path, "decay_mult"));
    std::string ip = join(path, "init");
    const json &init = field(j, path, "init");
    std::string kind = reqStr(init, ip, "kind");
    if (kind == "gaussian") {
      p.init.kind = InitSpec::Gaussian;
      p.init.std = f32(reqNum(init, ip, "std"), join(ip, "std"));
      p.init.mean = f32(optNum(init, ip, "mean", 0.0), join(ip, "mean"));
      if (p.init.std < 0)
        fail(join(ip, "std"), fmt::format("negative std {}", p.init.std));
    } else if (kind == "constant") {
      p.init.kind = InitSpec::Constant;
      p.init.value = f32(optNum(init, ip, "value", 0.0), join(ip, "value"));
    } else if (kind == "file") {
      p.init.kind = InitSpec::File;
      p.init.path = reqStr(init, ip, "path");
      p.init.key = optStr(init, ip, "key", p.name);
    } else {
      fail(join(ip, "kind"),
           fmt::format("unknown init kind '{}' (expected gaussian, constant "
                       "or file)",
                       kind));
    }
    return p;
  }

  Value value(const json &j, const std::string &path, const Plan &plan) const {
    Value v;
    v.id = reqInt(j, path, "id");
    v.shape = ints(field(j, path, "shape"), join(path, "shape"));
    for (size_t i = 0; i < v.shape.size(); ++i)
      if (v.shape[i] == 0 || v.shape[i] < -1)
        fail(index(join(path, "shape"), i),
             fmt::format("bad dimension {}", v.shape[i]));
    std::string dt = reqStr(j, path, "dtype");
    if (dt == "f32")
      v.dtype = DType::F32;
    else if (dt == "bf16")
      v.dtype = DType::BF16;
    else if (dt == "i32")
      v.dtype = DType::I32;
    else if (dt == "u8")
      v.dtype = DType::U8;
    else
      fail(join(path, "dtype"),
           fmt::format("unknown dtype '{}' (expected f32, bf16, i32 or u8)",
                       dt));
    std::string layout = optStr(j, path, "layout", "nchw");
    if (layout == "nhwc")
      v.layout = Layout::NHWC;
    else if (layout != "nchw")
      fail(join(path, "layout"),
           fmt::format("unknown layout '{}' (expected nchw or nhwc)", layout));
    if (v.layout == Layout::NHWC && v.shape.size() != 4)
      fail(join(path, "layout"),
           fmt::format("a rank-{} value has no nhwc layout", v.shape.size()));
    const json *param = optField(j, "param");
    const json *offset = optField(j, "offset");
    if (param && offset)
      fail(path, "a value has either 'offset' or 'param', not both");
    if (param) {
      v.param = string(*param, join(path, "param"));
      const ParamSpec *spec = plan.findParam(v.param);
      if (!spec)
        fail(join(path, "param"),
             fmt::format("unknown parameter '{}'", v.param));
      if (v.dtype != DType::F32)
        fail(join(path, "dtype"), "parameters are f32");
      // A parameter may be read with another shape of its elements (dense
      // evaluation reads an fc weight as a convolution's).
      if (v.shape != spec->shape &&
          (v.hasBatch() || checkedProduct(v.shape, 1) != spec->count()))
        fail(join(path, "shape"),
             fmt::format("shape [{}] does not have the elements of "
                         "parameter '{}' [{}]",
                         fmt::join(v.shape, ", "), v.param,
                         fmt::join(spec->shape, ", ")));
    } else if (offset) {
      v.offset = integer(*offset, join(path, "offset"));
      if (v.offset < 0)
        fail(join(path, "offset"), fmt::format("negative offset {}", v.offset));
      if (v.offset % 64 != 0)
        fail(join(path, "offset"),
             fmt::format("offset {} is not 64-byte aligned", v.offset));
    } else {
      fail(path, "a value needs 'offset' or 'param'");
    }
    return v;
  }

  Program program(const json &j, const std::string &path,
                  const std::string &name, const Plan &plan) const {
    Program p;
    p.name = name;
    p.batch = reqInt(j, path, "batch");
    if (p.batch <= 0)
      fail(join(path, "batch"),
           fmt::format("batch {} is not positive", p.batch));
    p.arenaBytes = reqInt(j, path, "arena_bytes");
    if (p.arenaBytes < 0)
      fail(join(path, "arena_bytes"), "negative arena size");
    if (const json *ws = optField(j, "workspace")) {
      std::string wp = join(path, "workspace");
      p.workspaceOffset = reqInt(*ws, wp, "offset");
      p.workspaceBytes = reqInt(*ws, wp, "bytes");
      int64_t end;
      if (p.workspaceOffset < 0 || p.workspaceBytes < 0 ||
          p.workspaceOffset % 64 != 0 ||
          __builtin_add_overflow(p.workspaceOffset, p.workspaceBytes, &end) ||
          end > p.arenaBytes)
        fail(wp,
             fmt::format("[{}, +{}) is not a 64-byte aligned region of "
                         "the arena ({} bytes)",
                         p.workspaceOffset, p.workspaceBytes, p.arenaBytes));
    }

    std::string vp = join(path, "values");
    const json &values = array(field(j, path, "values"), vp);
    for (size_t i = 0; i < values.size(); ++i) {
      std::string ep = index(vp, i);
      Value v = value(values[i], ep, plan);
      if (p.values.count(v.id))
        fail(join(ep, "id"), fmt::format("duplicate value id {}", v.id));
      std::optional<int64_t> bytes =
          checkedProduct(v.shape, p.batch, dtypeSize(v.dtype));
      int64_t end;
      if (!bytes ||
          __builtin_add_overflow(v.offset < 0 ? 0 : v.offset, *bytes, &end))
        fail(join(ep, "shape"),
             fmt::format("value {} of shape [{}] at batch {} is too large",
                         v.id, fmt::join(v.shape, ", "), p.batch));
      if (!v.isParam() && p.workspaceBytes > 0 &&
          v.offset < p.workspaceOffset + p.workspaceBytes &&
          p.workspaceOffset < v.offset + v.bytes(p.batch))
        fail(ep, fmt::format("value {} overlaps the workspace", v.id));
      if (!v.isParam() && v.offset + v.bytes(p.batch) > p.arenaBytes)
        fail(ep, fmt::format("value {} at offset {} with {} bytes (batch {}) "
                             "ends past arena_bytes {}",
                             v.id, v.offset, v.bytes(p.batch), p.batch,
                             p.arenaBytes));
      p.values.emplace(v.id, std::move(v));
    }
    auto checkId = [&](const json &jid, const std::string &ip) {
      int64_t id = integer(jid, ip);
      if (!p.values.count(id))
        fail(ip, fmt::format("unknown value id {}", id));
      return id;
    };

    std::string inp = join(path, "inputs");
    const json &inputs = field(j, path, "inputs");
    if (!inputs.is_object())
      fail(inp, fmt::format("expected an object, got {}", describe(inputs)));
    for (auto it = inputs.begin(); it != inputs.end(); ++it) {
      int64_t id = checkId(it.value(), join(inp, it.key()));
      if (p.values.at(id).isParam())
        fail(join(inp, it.key()), "an input cannot be a parameter");
      p.inputs[it.key()] = id;
    }
    // The trainer and netrun fill `image` with images of the plan's input
    // shape and `labels` with one int32 per image: the values must agree.
    if (auto image = p.inputs.find("image"); image != p.inputs.end()) {
      const Value &v = p.values.at(image->second);
      int64_t per = 1;
      for (size_t d = 1; d < v.shape.size(); ++d)
        per = v.shape[d] < 0 ? -1 : per * v.shape[d];
      int64_t want = plan.input[0] * plan.input[1] * plan.input[2];
      // A dense evaluation program takes the image at its own scale.
      bool dense = p.name.rfind("eval.dense.", 0) == 0 && v.shape.size() == 4 &&
                   v.shape[1] == plan.input[0] && v.shape[2] > 0 &&
                   v.shape[3] > 0;
      if (v.shape.empty() || v.shape[0] != -1 || (per != want && !dense) ||
          !isReal(v.dtype))
        fail(join(inp, "image"),
             fmt::format("value {} of shape [{}] is not a batch of [{}] "
                         "images (the plan's input)",
                         v.id, fmt::join(v.shape, ", "),
                         fmt::join(plan.input, ", ")));
    }
    if (auto labels = p.inputs.find("labels"); labels != p.inputs.end()) {
      const Value &v = p.values.at(labels->second);
      if (v.shape != std::vector<int64_t>{-1} || v.dtype != DType::I32)
        fail(join(inp, "labels"),
             fmt::format("value {} is not a batch of i32 labels [-1]", v.id));
    }

    // Def before use: a kernel reads only inputs, parameters and values an
    // earlier kernel wrote.
    std::set<int64_t> defined;
    for (auto &[id, v] : p.values)
      if (v.isParam())
        defined.insert(id);
    for (auto &[name, id] : p.inputs)
      defined.insert(id);
    std::string kp = join(path, "kernels");
    const json &kernels = array(field(j, path, "kernels"), kp);
    if (kernels.empty())
      fail(kp, "a program needs at least one kernel");
    for (size_t i = 0; i < kernels.size(); ++i) {
      std::string kpi = index(kp, i);
      Kernel k = kernel(kernels[i], kpi, p, plan, checkId);
      for (size_t a = 0; a < k.in.size(); ++a)
        if (!defined.count(k.in[a]))
          fail(index(join(kpi, "in"), a),
               fmt::format("value {} is read before any kernel writes it",
                           k.in[a]));
      defined.insert(k.out.begin(), k.out.end());
      p.kernels.push_back(std::move(k));
    }
    auto checkWritten = [&](int64_t id, const std::string &where) {
      if (!defined.count(id))
        fail(where, fmt::format("value {} is an output but no kernel writes "
                                "it",
                                id));
    };

    std::string op = join(path, "outputs");
    const json &outputs = field(j, path, "outputs");
    if (!outputs.is_object())
      fail(op, fmt::format("expected an object, got {}", describe(outputs)));
    for (auto it = outputs.begin(); it != outputs.end(); ++it) {
      std::string fp = join(op, it.key());
      if (it.key() == "terms") {
        const json &terms = array(it.value(), fp);
        for (size_t t = 0; t < terms.size(); ++t) {
          std::string tp = index(fp, t);
          Term term;
          term.name = reqName(terms[t], tp, "name");
          term.weight = optNum(terms[t], tp, "weight", 1.0);
          term.value = checkId(field(terms[t], tp, "value"), join(tp, "value"));
          p.terms.push_back(term);
        }
      } else if (it.key() == "reconstructions") {
        const json &recons = array(it.value(), fp);
        for (size_t r = 0; r < recons.size(); ++r) {
          std::string rp = index(fp, r);
          Reconstruction rec;
          rec.from = reqName(recons[r], rp, "from");
          rec.value = checkId(field(recons[r], rp, "value"), join(rp, "value"));
          auto image = p.inputs.find("image");
          if (image == p.inputs.end())
            fail(rp, "a reconstruction needs the program's 'image' input");
          if (p.values.at(rec.value).shape != p.values.at(image->second).shape)
            fail(join(rp, "value"),
                 fmt::format("value {} is not image-shaped", rec.value));
          p.reconstructions.push_back(rec);
        }
      } else if (it.value().is_number()) {
        int64_t id = checkId(it.value(), fp);
        if (it.key() == "loss")
          p.loss = id;
        else if (it.key() == "logits")
          p.logits = id;
        else
          p.otherOutputs[it.key()] = id;
      }
    }
    auto checkScalar = [&](int64_t id, const std::string &what) {
      const Value &v = p.values.at(id);
      if (v.dtype != DType::F32 || v.count(p.batch) != 1)
        fail(join(op, what), fmt::format("value {} is not an f32 scalar", id));
    };
    if (p.loss) {
      checkScalar(*p.loss, "loss");
      checkWritten(*p.loss, join(op, "loss"));
    }
    if (p.logits)
      checkWritten(*p.logits, join(op, "logits"));
    for (size_t t = 0; t < p.terms.size(); ++t) {
      checkScalar(p.terms[t].value, index("terms", t));
      checkWritten(p.terms[t].value,
                   join(index(join(op, "terms"), t), "value"));
    }
    for (size_t r = 0; r < p.reconstructions.size(); ++r)
      checkWritten(p.reconstructions[r].value,
                   join(index(join(op, "reconstructions"), r), "value"));
    return p;
  }

  template <typename CheckId>
  Kernel kernel(const json &j, const std::string &path, const Program &p,
                const Plan &plan, CheckId &&checkId) const {
    std::string name = reqStr(j, path, "op");
    std::optional<Op> op = opFromName(name);
    if (!op)
      fail(path, fmt::format("unknown op '{}'", name));
    Kernel k;
    k.op = *op;
    k.path = fmt::format("{}: {}", file, path);
    const OpInfo &oi = info(k.op);
    for (const char *list : {"in", "out"}) {
      std::string lp = join(path, list);
      const json *lj = optField(j, list);
      std::vector<int64_t> &ids = list[0] == 'i' ? k.in : k.out;
      if (lj)
        for (size_t i = 0; i < array(*lj, lp).size(); ++i)
          ids.push_back(checkId((*lj)[i], index(lp, i)));
    }
    if (int(k.in.size()) < oi.minIn ||
        (oi.maxIn >= 0 && int(k.in.size()) > oi.maxIn)) {
      std::string expect = oi.minIn == oi.maxIn ? std::to_string(oi.minIn)
                           : oi.maxIn < 0
                               ? fmt::format("at least {}", oi.minIn)
                               : fmt::format("{} to {}", oi.minIn, oi.maxIn);
      fail(join(path, "in"), fmt::format("'{}' takes {} operands, got {}", name,
                                         expect, k.in.size()));
    }
    if (oi.outs >= 0 ? int(k.out.size()) != oi.outs
                     : k.out.size() != k.in.size())
      fail(join(path, "out"),
           oi.outs >= 0
               ? fmt::format("'{}' has {} results, got {}", name, oi.outs,
                             k.out.size())
               : fmt::format("'{}' has one result per operand ({}), got {}",
                             name, k.in.size(), k.out.size()));
    const json *attrs = optField(j, "attrs");
    k.attrs = attrs ? *attrs : json::object();
    if (!k.attrs.is_object())
      fail(join(path, "attrs"),
           fmt::format("expected an object, got {}", describe(k.attrs)));
    for (const std::string &a : oi.required())
      if (!k.has(a.c_str()))
        fail(join(path, "attrs"),
             fmt::format("'{}' needs attribute '{}'", name, a));

    // Dtypes: labels are i32, switches u8, everything else f32.
    auto dtypeOf = [&](int64_t id) { return p.values.at(id).dtype; };
    auto expectDtype = [&](const std::vector<int64_t> &ids, size_t i, DType t,
                           const char *list) {
      // Real operands may be f32 or bf16.
      if (i < ids.size() && dtypeOf(ids[i]) != t &&
          !(isReal(t) && isReal(dtypeOf(ids[i]))))
        fail(index(join(path, list), i),
             fmt::format("value {} is {}, '{}' expects {}", ids[i],
                         dtypeName(dtypeOf(ids[i])), name, dtypeName(t)));
    };
    for (size_t i = 0; i < k.in.size(); ++i) {
      bool labels = (k.op == Op::SoftmaxCrossEntropy ||
                     k.op == Op::SoftmaxCrossEntropyGrad) &&
                    i == 1;
      bool switches = (k.op == Op::Unpool || k.op == Op::UnpoolGrad) && i == 1;
      expectDtype(k.in, i,
                  labels     ? DType::I32
                  : switches ? DType::U8
                             : DType::F32,
                  "in");
    }
    for (size_t i = 0; i < k.out.size(); ++i)
      expectDtype(k.out, i,
                  k.op == Op::MaxPool && i == 1 ? DType::U8 : DType::F32,
                  "out");

    // Outputs must be arena values unless the op updates parameter state.
    for (size_t i = 0; i < k.out.size(); ++i) {
      const Value &v = p.values.at(k.out[i]);
      if (v.isParam() && k.op != Op::BatchNorm)
        fail(index(join(path, "out"), i),
             fmt::format("'{}' cannot write parameter '{}' (only sgd_update "
                         "updates parameters)",
                         name, v.param));
    }

    if (k.op == Op::SGDUpdate) {
      std::string pname = k.str("param");
      const ParamSpec *spec = plan.findParam(pname);
      if (!spec)
        fail(join(join(path, "attrs"), "param"),
             fmt::format("unknown parameter '{}'", pname));
      const Value &g = p.values.at(k.in[0]);
      if (g.count(p.batch) != spec->count())
        fail(index(join(path, "in"), 0),
             fmt::format("gradient value {} has {} elements, parameter '{}' "
                         "has {}",
                         g.id, g.count(p.batch), pname, spec->count()));
      nonNegative(k.f64("lr_mult"), join(join(path, "attrs"), "lr_mult"));
      nonNegative(k.f64("decay_mult"), join(join(path, "attrs"), "decay_mult"));
    }
    if (k.op == Op::AllReduceMean)
      for (size_t i = 0; i < k.in.size(); ++i) {
        const Value &in = p.values.at(k.in[i]), &out = p.values.at(k.out[i]);
        if (in.count(p.batch) != out.count(p.batch) || in.dtype != out.dtype)
          fail(index(join(path, "out"), i),
               fmt::format("value {} ({} {} elements) is not the mean of "
                           "value {} ({} {} elements)",
                           out.id, dtypeName(out.dtype), out.count(p.batch),
                           in.id, dtypeName(in.dtype), in.count(p.batch)));
      }
    if ((k.op == Op::Unpool || k.op == Op::UnpoolGrad) && k.in.size() == 1 &&
        !k.has("position"))
      fail(join(path, "attrs"),
           fmt::format("'{}' needs either switches (a second operand) or a "
                       "'position'",
                       name));
    if (k.op == Op::Objective && k.f64s("weights").size() != k.in.size())
      fail(join(join(path, "attrs"), "weights"),
           fmt::format("{} weights for {} terms", k.f64s("weights").size(),
                       k.in.size()));

    // Aliasing: outputs must not overlap inputs or each other, except an
    // in-place op's output at exactly an input's offset, and views.
    auto range = [&](int64_t id) {
      const Value &v = p.values.at(id);
      return std::make_pair(v.offset, v.offset + v.bytes(p.batch));
    };
    for (size_t o = 0; o < k.out.size(); ++o) {
      const Value &ov = p.values.at(k.out[o]);
      if (ov.isParam())
        continue;
      auto [ob, oe] = range(k.out[o]);
      if (opIsView(k.op)) {
        const Value &iv = p.values.at(k.in[0]);
        if (iv.isParam() || iv.offset != ov.offset)
          fail(index(join(path, "out"), o),
               fmt::format("'{}' is a view: its output must have its input's "
                           "offset",
                           name));
        if (iv.count(p.batch) != ov.count(p.batch))
          fail(index(join(path, "out"), o),
               fmt::format("'{}' changes the element count ({} -> {})", name,
                           iv.count(p.batch), ov.count(p.batch)));
        continue;
      }
      // ob and oe by copy: a lambda captures structured bindings only
      // from C++20 on.
      auto overlaps = [&, ob = ob, oe = oe](int64_t id) {
        const Value &v = p.values.at(id);
        if (v.isParam())
          return false;
        auto [b, e] = range(id);
        return b < oe && ob < e && ob != oe && b != e;
      };
      for (size_t i = 0; i < k.in.size(); ++i) {
        if (!overlaps(k.in[i]))
          continue;
        const Value &iv = p.values.at(k.in[i]);
        if (opAllowsInPlace(k.op) && iv.offset == ov.offset &&
            iv.bytes(p.batch) == ov.bytes(p.batch))
          continue;
        fail(index(join(path, "out"), o),
             fmt::format("output value {} overlaps input value {} in the "
                         "arena, which '{}' does not allow",
                         ov.id, iv.id, name));
      }
      for (size_t o2 = 0; o2 < o; ++o2)
        if (overlaps(k.out[o2]))
          fail(index(join(path, "out"), o),
               fmt::format("output value {} overlaps output value {}", ov.id,
                           k.out[o2]));
    }
    return k;
  }

  Phase phase(const json &j, const std::string &path, const Plan &plan) const {
    Phase ph;
    ph.phase = reqName(j, path, "phase");
    if (ph.phase.empty())
      fail(join(path, "phase"), "a phase needs a name (messages, metrics and "
                                "the checkpoint name it)");
    ph.program = reqName(j, path, "program");
    auto it = plan.programs.find(ph.program);
    if (it == plan.programs.end())
      fail(join(path, "program"),
           fmt::format("unknown program '{}'", ph.program));
    ph.batch = reqInt(j, path, "batch");
    if (ph.batch <= 0 || ph.batch > it->second.batch)
      fail(join(path, "batch"),
           fmt::format("batch {} is not in [1, {}] (program '{}')", ph.batch,
                       it->second.batch, ph.program));
    ph.epochs = reqInt(j, path, "epochs");
    ph.steps = optInt(j, path, "steps", 0);
    if (ph.epochs < 0 || ph.steps < 0)
      fail(path, "negative epochs or steps");
    ph.lr = nonNegative(reqNum(j, path, "lr"), join(path, "lr"));
    ph.momentum = reqNum(j, path, "momentum");
    if (!(ph.momentum >= 0 && ph.momentum < 1))
      fail(join(path, "momentum"),
           fmt::format("{} is not in [0, 1)", ph.momentum));
    ph.decay = nonNegative(reqNum(j, path, "decay"), join(path, "decay"));
    ph.lrPolicy = reqStr(j, path, "lr_policy");
    if (ph.lrPolicy != "fixed" && ph.lrPolicy != "step" &&
        ph.lrPolicy != "cosine")
      fail(join(path, "lr_policy"),
           fmt::format("unknown lr_policy '{}' (expected fixed, step or "
                       "cosine)",
                       ph.lrPolicy));
    ph.lrGamma = optNum(j, path, "lr_gamma", 0.1);
    ph.lrEvery = optInt(j, path, "lr_every", 1);
    if (ph.lrEvery <= 0)
      fail(join(path, "lr_every"), "lr_every must be positive");
    ph.lrMin =
        nonNegative(optNum(j, path, "lr_min", 0.0), join(path, "lr_min"));
    ph.lrGamma = nonNegative(ph.lrGamma, join(path, "lr_gamma"));
    if (!it->second.loss)
      fail(join(path, "program"),
           fmt::format("program '{}' has no 'loss' output", ph.program));
    if (!it->second.inputs.count("image"))
      fail(join(path, "program"),
           fmt::format("program '{}' has no 'image' input", ph.program));
    // netc refuses a phase that trains nothing; a hand-edited schedule
    // naming `eval` would run its steps and update nothing.
    const std::vector<Kernel> &ks = it->second.kernels;
    if (std::none_of(ks.begin(), ks.end(),
                     [](const Kernel &k) { return k.op == Op::SGDUpdate; }))
      fail(join(path, "program"),
           fmt::format("program '{}' updates no parameter (it has no "
                       "sgd_update): a phase runs a training step",
                       ph.program));
    return ph;
  }
};

} // namespace

Plan parsePlan(const std::string &text, const std::string &file,
               const std::string &dir) {
  Parser ps{file};
  json root;
  try {
    root = json::parse(text);
  } catch (const json::exception &e) {
    // parse_error, or out_of_range for a number that overflows (1e999).
    throw PlanError(fmt::format("{}: invalid JSON: {}", file, e.what()));
  }
  if (!root.is_object())
    ps.fail("", "expected a JSON object");
  std::string format = ps.reqStr(root, "", "format");
  if (format != "netc-trainer")
    ps.fail("format", fmt::format("'{}' is not a netc trainer (expected "
                                  "'netc-trainer')",
                                  format));
  int64_t version = ps.reqInt(root, "", "version");
  if (version < kFormatVersion)
    ps.fail("version",
            fmt::format("trainer format version {} is older than this "
                        "runtime's ({}): recompile the trainer with this "
                        "netc (netc MODEL.net -o TRAINER)",
                        version, kFormatVersion));
  if (version != kFormatVersion)
    ps.fail("version", fmt::format("trainer format version {} is newer than "
                                   "this runtime's ({}): use the netrun of "
                                   "the netc that wrote it",
                                   version, kFormatVersion));

  Plan plan;
  plan.file = file;
  plan.dir = dir;
  plan.network = ps.optStr(root, "", "network", "");
  plan.variant = ps.optStr(root, "", "variant", "");
  if (const json *dp = ps.optField(root, "data_parallel")) {
    plan.bucketBytes = ps.reqInt(*dp, "data_parallel", "bucket_bytes");
    if (plan.bucketBytes < 1)
      ps.fail("data_parallel.bucket_bytes",
              fmt::format("{} is not a positive byte count", plan.bucketBytes));
  }
  std::string precision = ps.optStr(root, "", "precision", "fp32");
  if (precision == "tf32")
    plan.precision = Precision::TF32;
  else if (precision == "bf16")
    plan.precision = Precision::BF16;
  else if (precision != "fp32")
    ps.fail("precision", fmt::format("unknown precision '{}' (expected fp32, "
                                     "tf32 or bf16)",
                                     precision));
  plan.input = ps.ints(ps.field(root, "", "input"), "input");
  if (plan.input.size() != 3)
    ps.fail("input", "expected [channels, height, width]");
  for (int64_t d : plan.input)
    if (d <= 0 || d > (int64_t(1) << 24))
      ps.fail("input", "dimensions must be in [1, 2^24]");
  if (!checkedProduct(plan.input, 1, 4) ||
      plan.input[0] * plan.input[1] * plan.input[2] > (int64_t(1) << 31))
    ps.fail("input", "an image of more than 2^31 values");
  plan.classes = ps.reqInt(root, "", "classes");
  if (plan.classes <= 0)
    ps.fail("classes", "must be positive");

  const json &data = ps.field(root, "", "data");
  DataSpec &d = plan.data;
  d.kind = ps.reqStr(data, "data", "kind");
  d.path = ps.optStr(data, "data", "path", "");
  d.subset = ps.optInt(data, "data", "subset", 0);
  d.testSubset = ps.optInt(data, "data", "test_subset", 0);
  d.mirror = ps.optBool(data, "data", "mirror", false);
  d.crop = ps.optInt(data, "data", "crop", 0);
  d.cropPad = ps.optInt(data, "data", "crop_pad", 0);
  if (d.crop > (int64_t(1) << 16) || d.cropPad > (int64_t(1) << 16))
    ps.fail("data", "crop and crop_pad must be at most 65536");
  if (d.subset < 0 || d.testSubset < 0 || d.crop < 0 || d.cropPad < 0)
    ps.fail("data", "subset, test_subset, crop and crop_pad must not be "
                    "negative");
  if (const json *s = ps.optField(data, "scale")) {
    d.scale = ps.ints(*s, "data.scale");
    if (d.scale.size() != 2 || d.scale[0] < 0 || d.scale[1] < d.scale[0] ||
        d.scale[1] > (int64_t(1) << 16))
      ps.fail("data.scale", "must be [min, max] with 0 <= min <= max <= "
                            "65536");
  }
  d.evalScale = ps.optInt(data, "data", "eval_scale", 0);
  if (d.evalScale < 0 || d.evalScale > (int64_t(1) << 16))
    ps.fail("data.eval_scale", "must be 0 to 65536");
  d.channelOrder = ps.optStr(data, "data", "channel_order", "rgb");
  if (d.channelOrder != "rgb" && d.channelOrder != "bgr")
    ps.fail("data.channel_order", "must be \"rgb\" or \"bgr\"");
  d.workers = ps.optInt(data, "data", "workers", 0);
  if (d.workers < 0 || d.workers > 1024)
    ps.fail("data.workers", "must be 0 to 1024");
  d.skipBad = ps.optBool(data, "data", "skip_bad", false);
  if (const json *m = ps.optField(data, "mean"))
    d.mean = ps.numbers(*m, "data.mean");
  if (const json *s = ps.optField(data, "std"))
    d.std = ps.numbers(*s, "data.std");
  for (size_t i = 0; i < d.mean.size(); ++i)
    ps.f32(d.mean[i], index("data.mean", i));
  // Pixels are scaled by 1 / std as 32-bit floats.
  for (size_t i = 0; i < d.std.size(); ++i)
    if (!(d.std[i] > 0) || !std::isfinite(static_cast<float>(1 / d.std[i])) ||
        !std::isfinite(static_cast<float>(d.std[i])))
      ps.fail(index("data.std", i),
              fmt::format("std must be positive and 1 / std a 32-bit float, "
                          "got {}",
                          d.std[i]));

  if (const json *e = ps.optField(root, "eval")) {
    if (const json *s = ps.optField(*e, "schemes"))
      for (size_t i = 0; i < ps.array(*s, "eval.schemes").size(); ++i)
        plan.evalSchemes.push_back(
            ps.string((*s)[i], index("eval.schemes", i)));
    if (const json *s = ps.optField(*e, "dense_scales"))
      plan.denseScales = ps.ints(*s, "eval.dense_scales");
  }

  const json &params = ps.array(ps.field(root, "", "params"), "params");
  for (size_t i = 0; i < params.size(); ++i) {
    ParamSpec p = ps.param(params[i], index("params", i));
    if (plan.paramIndex.count(p.name))
      ps.fail(index("params", i) + ".name",
              fmt::format("duplicate parameter '{}'", p.name));
    plan.paramIndex[p.name] = plan.params.size();
    plan.params.push_back(std::move(p));
  }
  if (const json *t = ps.optField(root, "torchvision")) {
    if (!t->is_object())
      ps.fail("torchvision", "expected an object");
    for (auto entry = t->begin(); entry != t->end(); ++entry) {
      std::string path = "torchvision." + entry.key();
      if (!plan.paramIndex.count(entry.key()))
        ps.fail(path, "not a parameter of the plan");
      plan.torchvision[entry.key()] = ps.string(entry.value(), path);
    }
  }

  const json &programs = ps.field(root, "", "programs");
  if (!programs.is_object())
    ps.fail("programs", "expected an object");
  for (auto it = programs.begin(); it != programs.end(); ++it)
    plan.programs.emplace(
        it.key(),
        ps.program(it.value(), join("programs", it.key()), it.key(), plan));

  // Each dense scale has its program, an evaluation of the image at it.
  for (size_t i = 0; i < plan.denseScales.size(); ++i) {
    std::string name = fmt::format("eval.dense.{}", plan.denseScales[i]);
    auto it = plan.programs.find(name);
    if (it == plan.programs.end())
      ps.fail(index("eval.dense_scales", i),
              fmt::format("no program '{}'", name));
    const Program &dense = it->second;
    if (!dense.logits || !dense.inputs.count("image"))
      ps.fail(join("programs", name), "a dense evaluation program needs an "
                                      "image input and logits");
    const Value &image = dense.value(dense.inputs.at("image"));
    if (image.shape.size() != 4 ||
        std::min(image.shape[2], image.shape[3]) != plan.denseScales[i])
      ps.fail(join("programs", name),
              fmt::format("its image's shorter side is not {}",
                          plan.denseScales[i]));
  }

  const json &schedule = ps.array(ps.field(root, "", "schedule"), "schedule");
  for (size_t i = 0; i < schedule.size(); ++i)
    plan.schedule.push_back(ps.phase(schedule[i], index("schedule", i), plan));
  // What a checkpoint's meaning rests on: the phases (a checkpoint names
  // one by index and counts its steps) and the parameters' names and
  // shapes; not the learning rates, which a resumed run may change.
  std::string identity;
  for (const Phase &ph : plan.schedule)
    identity += fmt::format("|{}:{}:{}:{}:{}", ph.phase, ph.program, ph.batch,
                            ph.epochs, ph.steps);
  for (const ParamSpec &p : plan.params)
    identity += fmt::format("|{}[{}]", p.name, fmt::join(p.shape, ","));
  plan.fingerprint =
      fmt::format("{:016x}", io::fnv1a(identity.data(), identity.size()));
  return plan;
}

Plan loadPlan(const std::string &trainerDir) {
  std::string file = (std::filesystem::path(trainerDir) / "plan.json").string();
  if (!std::filesystem::is_directory(trainerDir))
    throw PlanError(fmt::format("{}: not a trainer directory", trainerDir));
  std::string text;
  try {
    text = io::readFile(file, kMaxPlanBytes);
  } catch (const io::FileError &e) {
    throw PlanError(e.what());
  }
  return parsePlan(text, file, trainerDir);
}

} // namespace netc::plan
