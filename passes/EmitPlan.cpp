//===- EmitPlan.cpp - net-emit-plan: the trainer artifact -----------------===//
//
// Serialises a planned module as docs/trainer-format.md describes: the
// parameter table (with the imported parameters' values, checked against
// their shapes, in params.safetensors), one program per step function and the
// eval program (values with their arena offsets, kernels in order, outputs),
// the data settings and the schedule. Written with llvm::json (LLVM is built
// without exceptions).
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MathExtras.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Signals.h"
#include "llvm/Support/ToolOutputFile.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <sys/file.h>
#include <unistd.h>

namespace netc {
#define GEN_PASS_DEF_EMITPLAN
#include "passes/Passes.h.inc"
} // namespace netc

using namespace mlir;
using namespace netc;
using namespace netc::net;
namespace json = llvm::json;

namespace {

json::Array ints(ArrayRef<int64_t> values) {
  json::Array a;
  for (int64_t v : values)
    a.push_back(ShapedType::isDynamic(v) ? int64_t(-1) : v);
  return a;
}

/// `param`'s init; a file's key is the tensor netc read (an empty key: the
/// parameter's own name).
json::Value initJson(ParamOp param) {
  Attribute init = param.getInit();
  if (auto g = dyn_cast<GaussianInitAttr>(init))
    return json::Object{{"kind", "gaussian"},
                        {"std", g.getStd().convertToDouble()},
                        {"mean", g.getMean().convertToDouble()}};
  if (auto c = dyn_cast<ConstantInitAttr>(init))
    return json::Object{{"kind", "constant"},
                        {"value", c.getValue().convertToDouble()}};
  auto f = cast<FileInitAttr>(init);
  return json::Object{
      {"kind", "file"},
      {"path", f.getPath()},
      {"key", f.getKey().empty() ? param.getSymName() : f.getKey()}};
}

/// Whether every number in `a` is finite: JSON has no NaN or Inf.
bool isFinite(Attribute a) {
  if (auto f = dyn_cast<FloatAttr>(a))
    return f.getValue().isFinite();
  if (auto d = dyn_cast<DenseF64ArrayAttr>(a))
    return llvm::all_of(d.asArrayRef(),
                        [](double x) { return std::isfinite(x); });
  if (auto arr = dyn_cast<ArrayAttr>(a))
    return llvm::all_of(arr, isFinite);
  return true;
}

/// An attribute as JSON; null for the ones the runtime does not need. The
/// caller has checked isFinite.
std::optional<json::Value> attrJson(Attribute a) {
  if (auto v = dyn_cast<DenseI64ArrayAttr>(a))
    return json::Value(ints(v.asArrayRef()));
  if (auto v = dyn_cast<DenseF64ArrayAttr>(a)) {
    json::Array arr;
    for (double d : v.asArrayRef())
      arr.push_back(d);
    return json::Value(std::move(arr));
  }
  if (auto v = dyn_cast<FloatAttr>(a))
    return json::Value(v.getValueAsDouble());
  if (auto v = dyn_cast<IntegerAttr>(a))
    return json::Value(v.getInt());
  if (auto v = dyn_cast<BoolAttr>(a))
    return json::Value(v.getValue());
  if (isa<UnitAttr>(a))
    return json::Value(true);
  if (auto v = dyn_cast<FlatSymbolRefAttr>(a))
    return json::Value(v.getValue());
  if (auto v = dyn_cast<StringAttr>(a))
    return json::Value(v.getValue());
  if (auto v = dyn_cast<ArrayAttr>(a)) {
    json::Array arr;
    for (Attribute e : v)
      if (auto j = attrJson(e))
        arr.push_back(std::move(*j));
    return json::Value(std::move(arr));
  }
  return std::nullopt;
}

/// The shape of a value the runtime can hold: a ranked f32 or i32 tensor, or
/// ranked switches, whose only dynamic dimension is the batch (the first).
/// Reports at `at` otherwise.
FailureOr<ArrayRef<int64_t>> shapeOf(Value v, Operation *at) {
  ArrayRef<int64_t> shape;
  Type type = v.getType();
  if (auto s = dyn_cast<SwitchesType>(type); s && s.hasRank()) {
    shape = s.getShape();
  } else if (auto t = dyn_cast<RankedTensorType>(type);
             t && (t.getElementType().isF32() ||
                   t.getElementType().isSignlessInteger(32))) {
    shape = t.getShape();
  } else {
    return at->emitOpError("net-emit-plan needs ranked f32 or i32 tensors "
                           "and ranked switches, got ")
           << type << "; run net-infer-shapes first";
  }
  for (auto [i, d] : llvm::enumerate(shape))
    if (i > 0 && ShapedType::isDynamic(d))
      return at->emitOpError("only the batch dimension may be dynamic, got ")
             << type;
  return shape;
}

/// The plan's name of net-precision's element type.
StringRef dtypeName(Type dtype) {
  if (dtype.isF32())
    return "f32";
  if (dtype.isBF16())
    return "bf16";
  if (dtype.isInteger(8))
    return "u8";
  return "i32";
}

/// 1. Values get ids in order of definition (arguments, then results), with
///    their arena offsets, or the parameter they read.
/// 2. Every other op of the body is a kernel; func.return gives the outputs.
/// Every value must lie inside the arena at the program's batch.
FailureOr<json::Object> programJson(func::FuncOp func) {
  if (func.isExternal())
    return func.emitError("net-emit-plan needs a function with a body");
  Block &block = func.getBody().front();
  auto argOffsets = func->getAttrOfType<DenseI64ArrayAttr>("net.arg_offsets");
  auto arena = func->getAttrOfType<IntegerAttr>("net.arena_bytes");
  auto batch = func->getAttrOfType<IntegerAttr>("net.batch");
  if (!argOffsets || !arena || !batch)
    return func.emitError("net-emit-plan needs a planned function; run "
                          "net-plan-memory first");
  if (block.getNumArguments() != 2)
    return func.emitError("a program takes (image, labels), not ")
           << block.getNumArguments() << " arguments";

  llvm::DenseMap<Value, int64_t> ids;
  json::Array values;
  auto addValue = [&](Value v, json::Object entry,
                      Operation *at) -> LogicalResult {
    auto shape = shapeOf(v, at);
    if (failed(shape))
      return failure();
    if (std::optional<int64_t> offset = entry.getInteger("offset")) {
      std::optional<int64_t> bytes = valueBytes(v, batch.getInt());
      int64_t end;
      if (!bytes || llvm::AddOverflow(*offset, *bytes, end) ||
          end > arena.getInt())
        return at->emitOpError("a value at offset ")
               << *offset << " does not fit in the arena of " << arena.getInt()
               << " bytes at batch " << batch.getInt();
    }
    int64_t id = ids.size();
    ids[v] = id;
    entry["id"] = id;
    entry["shape"] = ints(*shape);
    ValueFormat format = valueFormat(v);
    entry["dtype"] = dtypeName(format.dtype);
    if (shape->size() == 4)
      entry["layout"] = format.nhwc ? "nhwc" : "nchw";
    values.push_back(std::move(entry));
    return success();
  };
  for (auto [arg, offset] :
       llvm::zip_equal(block.getArguments(), argOffsets.asArrayRef()))
    if (failed(addValue(arg, json::Object{{"offset", offset}}, func)))
      return failure();

  json::Array kernels;
  json::Object outputs;
  for (Operation &op : block) {
    if (auto get = dyn_cast<ParamGetOp>(op)) {
      if (failed(addValue(get.getResult(),
                          json::Object{{"param", get.getName()}}, get)))
        return failure();
      continue;
    }
    if (auto ret = dyn_cast<func::ReturnOp>(op);
        ret && func->hasAttr("net.reconstruct_from")) {
      json::Array recons;
      for (auto [value, from] : llvm::zip_equal(
               ret.getOperands(),
               func->getAttrOfType<ArrayAttr>("net.reconstruct_from")))
        recons.push_back(
            json::Object{{"from", cast<StringAttr>(from).getValue()},
                         {"value", ids.lookup(value)}});
      outputs["reconstructions"] = std::move(recons);
      continue;
    }
    if (auto ret = dyn_cast<func::ReturnOp>(op)) {
      if (ret.getNumOperands() != 2)
        return func.emitError("a program returns (loss, logits)");
      outputs["loss"] = ids.lookup(ret.getOperand(0));
      outputs["logits"] = ids.lookup(ret.getOperand(1));
      json::Array terms;
      if (auto objective = ret.getOperand(0).getDefiningOp<ObjectiveOp>()) {
        for (auto [term, weight, name] :
             llvm::zip(objective.getTerms(), objective.getWeights(),
                       objective.getNames()))
          terms.push_back(
              json::Object{{"name", cast<StringAttr>(name).getValue()},
                           {"weight", weight},
                           {"value", ids.lookup(term)}});
      } else {
        terms.push_back(json::Object{{"name", "classification"},
                                     {"weight", 1.0},
                                     {"value", ids.lookup(ret.getOperand(0))}});
      }
      outputs["terms"] = std::move(terms);
      continue;
    }
    if (!isa<NetDialect>(op.getDialect()) || op.getNumRegions() != 0)
      return op.emitOpError("is not a kernel net-emit-plan can write; run "
                            "net-autodiff first");
    auto offsets = op.getAttrOfType<DenseI64ArrayAttr>("net.offsets");
    if (op.getNumResults() != 0 && !offsets)
      return op.emitOpError("has no net.offsets; run net-plan-memory first");
    json::Array in, out;
    for (Value operand : op.getOperands())
      in.push_back(ids.lookup(operand));
    for (auto [i, result] : llvm::enumerate(op.getResults())) {
      if (failed(addValue(result, json::Object{{"offset", offsets[i]}}, &op)))
        return failure();
      out.push_back(ids.lookup(result));
    }
    json::Object attrs;
    for (NamedAttribute a : op.getAttrs()) {
      if (a.getName().strref().starts_with("net."))
        continue;
      if (!isFinite(a.getValue()))
        return op.emitOpError("attribute '")
               << a.getName().strref()
               << "' holds a NaN or an infinity, which plan.json cannot hold";
      if (auto j = attrJson(a.getValue()))
        attrs[a.getName().strref()] = std::move(*j);
    }
    kernels.push_back(json::Object{
        {"op", op.getName().stripDialect()},
        {"in", std::move(in)},
        {"out", std::move(out)},
        {"attrs", std::move(attrs)},
    });
  }
  return json::Object{{"batch", batch.getInt()},
                      {"arena_bytes", arena.getInt()},
                      {"values", std::move(values)},
                      {"inputs", json::Object{{"image", 0}, {"labels", 1}}},
                      {"kernels", std::move(kernels)},
                      {"outputs", std::move(outputs)}};
}

/// The static shape of a parameter and its size in bytes, or an error at it.
FailureOr<std::pair<ArrayRef<int64_t>, int64_t>> paramShape(ParamOp param) {
  auto type = dyn_cast<RankedTensorType>(param.getType());
  if (!type || !type.hasStaticShape())
    return emitLayerError(param)
           << "parameter @" << param.getSymName() << " of type "
           << param.getType()
           << " has no static shape; run net-infer-shapes first";
  std::optional<int64_t> bytes = valueBytes(type, 1);
  if (!bytes)
    return emitLayerError(param) << "parameter @" << param.getSymName()
                                 << " has more than 2^63 bytes";
  return std::make_pair(type.getShape(), *bytes);
}

/// torchvision's name of each parameter of the network's layers (the
/// `pretrained ... names=torchvision` mapping, docs/language.md): the ops
/// up to the end of the last macro-layer are `features.<i>`, the others
/// `classifier.<j>`, numbered as nn.Sequential numbers its modules (flatten
/// is not one). Batch norm's scale, shift, mean and var are torchvision's
/// weight, bias, running_mean and running_var. Empty without a macro-layer.
json::Object torchvisionNames(ModuleOp module) {
  json::Object names;
  func::FuncOp network;
  for (auto func : module.getOps<func::FuncOp>())
    if (func->hasAttr("net.network"))
      network = func;
  if (!network || network.getBody().empty())
    return names;
  // The classifier's ops: those the logits (the last result) depend on, so
  // that decoders and losses do not count.
  Block &body = network.getBody().front();
  Operation *ret = body.getTerminator();
  if (!ret || ret->getNumOperands() == 0)
    return names;
  llvm::SmallPtrSet<Operation *, 32> used;
  SmallVector<Value> work{ret->getOperands().back()};
  while (!work.empty()) {
    Operation *def = work.pop_back_val().getDefiningOp();
    if (def && def->getBlock() == &body && used.insert(def).second)
      llvm::append_range(work, def->getOperands());
  }
  SmallVector<Operation *> top;
  size_t features = 0;
  for (Operation &op : body) {
    if (!used.contains(&op))
      continue;
    top.push_back(&op);
    if (isa<MacroOp>(op))
      features = top.size();
  }
  if (features == 0)
    return names;
  static const llvm::StringMap<StringRef> kSuffix = {
      {"weight", "weight"}, {"bias", "bias"},         {"scale", "weight"},
      {"shift", "bias"},    {"mean", "running_mean"}, {"var", "running_var"}};
  int64_t index[2] = {0, 0};
  auto visit = [&](Operation *op, bool inFeatures) {
    if (isa<ParamGetOp, func::ReturnOp>(op) ||
        llvm::is_contained(
            {"net.yield", "net.flatten", "net.softmax_cross_entropy"},
            op->getName().getStringRef()))
      return;
    std::string prefix = (inFeatures ? "features." : "classifier.") +
                         std::to_string(index[inFeatures ? 0 : 1]++);
    for (Value operand : op->getOperands()) {
      auto get = operand.getDefiningOp<ParamGetOp>();
      if (!get)
        continue;
      StringRef name = get.getName();
      auto suffix = kSuffix.find(name.rsplit('.').second);
      if (suffix != kSuffix.end())
        names[name] = prefix + "." + suffix->second.str();
    }
  };
  for (size_t i = 0; i < top.size(); ++i) {
    if (!isa<MacroOp>(top[i])) {
      visit(top[i], i < features);
      continue;
    }
    for (Operation &op : top[i]->getRegion(0).front())
      visit(&op, true);
  }
  return names;
}

} // namespace

FailureOr<json::Value> netc::buildPlan(ModuleOp module) {
  // Every string the plan or the safetensors header carries (names, kinds,
  // paths, attributes) must be UTF-8, as JSON requires: refuse the others at
  // their op rather than write a different string.
  WalkResult utf8 = module->walk([&](Operation *op) {
    for (NamedAttribute attr : op->getAttrs()) {
      // Every string nested in the attribute: arrays, dictionaries, symbols.
      bool bad = false;
      attr.getValue().walk(
          [&](StringAttr str) { bad |= !json::isUTF8(str.getValue()); });
      if (bad) {
        op->emitOpError("attribute '")
            << attr.getName().getValue()
            << "' holds a string that is not valid UTF-8, which a trainer "
               "(JSON) cannot carry";
        return WalkResult::interrupt();
      }
    }
    return WalkResult::advance();
  });
  if (utf8.wasInterrupted())
    return failure();
  func::FuncOp network;
  for (auto func : module.getOps<func::FuncOp>())
    if (func->hasAttr("net.network"))
      network = func;
  if (!network)
    return module.emitError("no function marked net.network");
  auto classes = network->getAttrOfType<IntegerAttr>("net.classes");
  auto image =
      network.getNumArguments() == 2
          ? dyn_cast<RankedTensorType>(network.getArgument(0).getType())
          : RankedTensorType();
  if (!classes || !image || image.getRank() != 4)
    return network.emitError("the network function must take (image, labels) "
                             "and carry net.classes");

  json::Object plan{{"format", "netc-trainer"},
                    {"version", int64_t(kTrainerFormatVersion)},
                    {"network", network.getSymName()},
                    {"precision", "fp32"}};
  if (auto precision = module->getAttrOfType<StringAttr>("net.precision"))
    plan["precision"] = precision.getValue();
  StringRef variant = "none";
  for (AugmentOp augment : module.getOps<AugmentOp>())
    variant = augment.getVariant();
  if (auto bucket = module->getAttrOfType<IntegerAttr>("net.data_parallel"))
    plan["data_parallel"] = json::Object{{"bucket_bytes", bucket.getInt()}};
  plan["variant"] = variant;
  plan["input"] = ints(image.getShape().drop_front());
  plan["classes"] = classes.getInt();

  json::Object data{{"kind", "fashion-mnist"}};
  for (DataOp d : module.getOps<DataOp>()) {
    data = json::Object{{"kind", d.getKind()},
                        {"path", d.getPath().value_or("")},
                        {"subset", int64_t(d.getSubset())},
                        {"test_subset", int64_t(d.getTestSubset())},
                        {"mirror", d.getMirror()},
                        {"crop", int64_t(d.getCrop())},
                        {"crop_pad", int64_t(d.getCropPad())}};
    if (auto scale = d.getScale())
      data["scale"] = ints(*scale);
    if (auto mean = d.getMeanAttr())
      data["mean"] = *attrJson(mean);
    if (auto std = d.getStdAttr())
      data["std"] = *attrJson(std);
    if (d.getKind() == "images") {
      data["eval_scale"] = int64_t(d.getEvalScale());
      data["channel_order"] = d.getChannelOrder();
      data["workers"] = int64_t(d.getWorkers());
      data["skip_bad"] = d.getSkipBad();
    }
  }
  plan["data"] = std::move(data);
  json::Array schemes{"full"};
  for (EvalOp e : module.getOps<EvalOp>())
    schemes = std::move(*attrJson(e.getSchemes())->getAsArray());
  json::Object evalSection{{"schemes", std::move(schemes)}};
  // Dense evaluation: one program per scale (net-dense-eval).
  json::Array denseScales;
  for (auto func : module.getOps<func::FuncOp>())
    if (auto scale = func->getAttrOfType<IntegerAttr>("net.dense_scale"))
      denseScales.push_back(scale.getInt());
  if (!denseScales.empty())
    evalSection["dense_scales"] = std::move(denseScales);
  plan["eval"] = std::move(evalSection);

  json::Array params;
  for (ParamOp p : module.getOps<ParamOp>()) {
    auto shape = paramShape(p);
    if (failed(shape))
      return failure();
    params.push_back(
        json::Object{{"name", p.getSymName()},
                     {"shape", ints(shape->first)},
                     {"group", p.getGroup()},
                     {"trainable", p.getTrainable()},
                     {"lr_mult", p.getLrMult().convertToDouble()},
                     {"decay_mult", p.getDecayMult().convertToDouble()},
                     {"init", initJson(p)}});
  }
  plan["params"] = std::move(params);
  if (json::Object names = torchvisionNames(module); !names.empty())
    plan["torchvision"] = std::move(names);

  json::Object programs;
  json::Array schedule;
  SymbolTable symbols(module);
  for (PhaseOp phase : module.getOps<PhaseOp>()) {
    std::string name = ("step." + phase.getSymName()).str();
    auto func = symbols.lookup<func::FuncOp>(name);
    if (!func)
      continue; // skipped by net-phases
    auto program = programJson(func);
    if (failed(program))
      return failure();
    programs[name] = std::move(*program);
    schedule.push_back(
        json::Object{{"phase", phase.getSymName()},
                     {"program", name},
                     {"batch", phase.getBatchAttr().getInt()},
                     {"epochs", phase.getEpochsAttr().getInt()},
                     {"steps", phase.getStepsAttr().getInt()},
                     {"lr", phase.getLr().convertToDouble()},
                     {"momentum", phase.getMomentum().convertToDouble()},
                     {"decay", phase.getDecay().convertToDouble()},
                     {"lr_policy", phase.getLrPolicy()},
                     {"lr_gamma", phase.getLrGamma().convertToDouble()},
                     {"lr_every", phase.getLrEveryAttr().getInt()},
                     {"lr_min", phase.getLrMin().convertToDouble()}});
  }
  auto eval = symbols.lookup<func::FuncOp>("eval");
  if (!eval)
    return module.emitError("no eval function; run net-phases first");
  auto evalProgram = programJson(eval);
  if (failed(evalProgram))
    return failure();
  programs["eval"] = std::move(*evalProgram);
  for (auto func : module.getOps<func::FuncOp>()) {
    if (!func->hasAttr("net.dense_scale"))
      continue;
    auto program = programJson(func);
    if (failed(program))
      return failure();
    programs[func.getSymName()] = std::move(*program);
  }
  if (auto recon = symbols.lookup<func::FuncOp>("reconstruct")) {
    auto program = programJson(recon);
    if (failed(program))
      return failure();
    programs["reconstruct"] = std::move(*program);
  }
  plan["programs"] = std::move(programs);
  plan["schedule"] = std::move(schedule);
  return json::Value(std::move(plan));
}

namespace {

/// One tensor of a safetensors file: its header entry and its bytes.
struct SafetensorsFile {
  std::unique_ptr<llvm::MemoryBuffer> buffer;
  json::Object header;
  StringRef data;
};

/// safetensors' own limit on the length of its JSON header.
constexpr uint64_t kMaxHeaderBytes = 100 << 20;

/// How deep `text`'s arrays and objects nest (brackets inside strings
/// aside), reading no further than one level past `kMaxHeaderNesting`.
constexpr int kMaxHeaderNesting = 16;
int jsonNesting(StringRef text) {
  int depth = 0, deepest = 0;
  bool inString = false;
  for (size_t i = 0; i < text.size() && deepest <= kMaxHeaderNesting; ++i) {
    char c = text[i];
    if (inString) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        inString = false;
    } else if (c == '"') {
      inString = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

/// Reads and checks a safetensors file's header; the error names the file.
/// Only regular files are read: a device such as /dev/zero never ends, and
/// opening a FIFO blocks until someone writes to it. The file is mapped, not
/// copied, and its size is known before anything is read.
FailureOr<SafetensorsFile> readSafetensors(StringRef path, Location loc) {
  namespace fs = llvm::sys::fs;
  fs::file_status status;
  if (std::error_code ec = fs::status(path, status))
    return emitError(loc) << "cannot read '" << path << "': " << ec.message();
  if (!fs::is_regular_file(status))
    return emitError(loc) << "cannot read '" << path << "': not a regular file";
  llvm::Expected<fs::file_t> fd = fs::openNativeFileForRead(path);
  if (!fd)
    return emitError(loc) << "cannot read '" << path
                          << "': " << llvm::toString(fd.takeError());
  // The path may have changed since it was checked: check what was opened.
  if (std::error_code ec = fs::status(*fd, status);
      ec || !fs::is_regular_file(status)) {
    fs::closeFile(*fd);
    return emitError(loc) << "cannot read '" << path << "': "
                          << (ec ? ec.message() : "not a regular file");
  }
  auto buffer = llvm::MemoryBuffer::getOpenFile(
      *fd, path, status.getSize(), /*RequiresNullTerminator=*/false);
  fs::closeFile(*fd);
  if (!buffer)
    return emitError(loc) << "cannot read '" << path
                          << "': " << buffer.getError().message();
  StringRef bytes = (*buffer)->getBuffer();
  if (bytes.size() < 8)
    return emitError(loc) << "'" << path << "' is not a safetensors file";
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i)
    n = n << 8 | uint8_t(bytes[i]);
  if (n > bytes.size() - 8)
    return emitError(loc) << "'" << path
                          << "': safetensors header runs past the end";
  if (n > kMaxHeaderBytes)
    return emitError(loc) << "'" << path << "': safetensors header of " << n
                          << " bytes is larger than " << kMaxHeaderBytes;
  // llvm::json::parse recurses once per nesting level: a crafted header of
  // 100,000 '[' overflowed the stack. A safetensors header nests three
  // levels (header, tensor, shape or offsets).
  if (jsonNesting(bytes.substr(8, n)) > kMaxHeaderNesting)
    return emitError(loc) << "'" << path
                          << "': safetensors header nests more than "
                          << kMaxHeaderNesting << " levels deep";
  auto header = json::parse(bytes.substr(8, n));
  if (!header || !header->getAsObject()) {
    if (!header)
      llvm::consumeError(header.takeError());
    return emitError(loc) << "'" << path
                          << "': safetensors header is not a JSON object";
  }
  SafetensorsFile file;
  file.header = std::move(*header->getAsObject());
  file.data = bytes.substr(8 + n);
  // A truncated file is one error here, not one per tensor it cut.
  int64_t need = 0;
  for (const auto &entry : file.header)
    if (const json::Object *tensor = entry.second.getAsObject())
      if (const json::Array *offsets = tensor->getArray("data_offsets"))
        if (offsets->size() == 2)
          need = std::max(need, (*offsets)[1].getAsInteger().value_or(0));
  if (uint64_t(need) > file.data.size())
    return emitError(loc) << "'" << path << "' is truncated: its tensors need "
                          << need << " bytes of data, it has "
                          << file.data.size();
  file.buffer = std::move(*buffer);
  return file;
}

/// The imported parameters' bytes, checked against their declared shapes:
/// a mismatch is reported at the layer, at compile time, every one of them
/// (a missing tensor, a wrong dtype or shape, bad offsets), not just the
/// first; a file that cannot be read is reported once, where it is named.
LogicalResult importParameters(ModuleOp module,
                               std::map<std::string, std::string> &tensors,
                               json::Object &header) {
  llvm::StringMap<SafetensorsFile> files;
  llvm::StringSet<> unreadable;
  bool ok = true;
  for (ParamOp param : module.getOps<ParamOp>()) {
    auto init = dyn_cast<FileInitAttr>(param.getInit());
    if (!init || unreadable.contains(init.getPath()))
      continue;
    auto it = files.find(init.getPath());
    if (it == files.end()) {
      auto file = readSafetensors(
          init.getPath(), fileNamedAt(param.getLoc()).value_or(param.getLoc()));
      if (failed(file)) {
        unreadable.insert(init.getPath());
        ok = false;
        continue;
      }
      it = files.try_emplace(init.getPath(), std::move(*file)).first;
    }
    SafetensorsFile &file = it->second;
    StringRef key = init.getKey().empty() ? param.getSymName() : init.getKey();
    const json::Object *entry = file.header.getObject(key);
    if (!entry) {
      emitLayerError(param)
          << "'" << init.getPath() << "' has no tensor '" << key << "'";
      ok = false;
      continue;
    }
    auto shapeAndBytes = paramShape(param);
    if (failed(shapeAndBytes))
      return failure();
    auto [shape, bytes] = *shapeAndBytes;
    std::optional<StringRef> dtype = entry->getString("dtype");
    const json::Array *dims = entry->getArray("shape");
    const json::Array *offsets = entry->getArray("data_offsets");
    SmallVector<int64_t> have;
    if (dims)
      for (const json::Value &d : *dims)
        have.push_back(d.getAsInteger().value_or(-1));
    if (dtype != "F32" || !offsets || offsets->size() != 2 ||
        ArrayRef<int64_t>(have) != shape) {
      std::string want, got;
      llvm::raw_string_ostream w(want), g(got);
      llvm::interleave(shape, w, "x");
      llvm::interleave(have, g, "x");
      // The file's dtype is any string: shown escaped and cut short.
      std::string shownType;
      llvm::raw_string_ostream t(shownType);
      llvm::printEscapedString(StringRef(dtype.value_or("?")).take_front(32),
                               t);
      emitLayerError(param)
          << "tensor '" << key << "' of '" << init.getPath() << "' is "
          << shownType << " " << got << ", the parameter @"
          << param.getSymName() << " needs F32 " << want;
      ok = false;
      continue;
    }
    int64_t begin = (*offsets)[0].getAsInteger().value_or(-1);
    int64_t end = (*offsets)[1].getAsInteger().value_or(-1);
    if (begin < 0 || end < begin || uint64_t(end) > file.data.size() ||
        end - begin != bytes) {
      emitLayerError(param) << "tensor '" << key << "' of '" << init.getPath()
                            << "' has bad data offsets";
      ok = false;
      continue;
    }
    // A NaN or infinite weight would surface as a diverged loss at the
    // first step; say where it comes from instead.
    StringRef data = file.data.substr(begin, bytes);
    int64_t bad = -1;
    for (int64_t i = 0; bad < 0 && i < bytes / 4; ++i) {
      float v;
      std::memcpy(&v, data.data() + 4 * i, 4); // little-endian, as the host
      if (!std::isfinite(v))
        bad = i;
    }
    if (bad >= 0) {
      emitLayerError(param) << "tensor '" << key << "' of '" << init.getPath()
                            << "' holds NaN or infinity at element " << bad;
      ok = false;
      continue;
    }
    tensors[param.getSymName().str()] = data.str();
    header[param.getSymName()] = json::Object{{"dtype", "F32"},
                                              {"shape", ints(shape)},
                                              {"data_offsets", json::Array{}}};
  }
  return success(ok);
}

/// A file written beside `path` (`path.tmp-XXXXXX`), whole, checked and
/// synced, to be renamed over `path` by commit(); removed if the process
/// is interrupted before. llvm::writeToOutput renames before it notices a
/// failed write (a full disk), which left an empty plan.json in place of a
/// good one, and then aborts the process.
struct PendingFile {
  std::string path, temp;
};

llvm::Expected<PendingFile>
writeBeside(StringRef path, function_ref<void(raw_ostream &)> write) {
  SmallString<256> temp;
  int fd = -1;
  if (std::error_code ec =
          llvm::sys::fs::createUniqueFile(path + ".tmp-%%%%%%", fd, temp))
    return llvm::createStringError(ec, "cannot create a file beside it: %s",
                                   ec.message().c_str());
  llvm::sys::RemoveFileOnSignal(temp);
  std::error_code failure;
  {
    llvm::raw_fd_ostream os(fd, /*shouldClose=*/false);
    write(os);
    os.flush();
    if (os.has_error()) {
      failure = os.error();
      os.clear_error(); // reported below, not as a fatal error
    }
  }
  if (!failure && ::fsync(fd) != 0)
    failure = std::error_code(errno, std::generic_category());
  if (::close(fd) != 0 && !failure)
    failure = std::error_code(errno, std::generic_category());
  if (failure) {
    llvm::sys::fs::remove(temp);
    llvm::sys::DontRemoveFileOnSignal(temp);
    return llvm::createStringError(failure, "%s", failure.message().c_str());
  }
  return PendingFile{path.str(), temp.str().str()};
}

/// Renames each file into place, or (`keep` false: another failed)
/// removes them all.
std::error_code commit(ArrayRef<PendingFile> files, bool keep) {
  std::error_code failure;
  for (const PendingFile &f : files) {
    if (keep && !failure)
      failure = llvm::sys::fs::rename(f.temp, f.path);
    else
      llvm::sys::fs::remove(f.temp);
    llvm::sys::DontRemoveFileOnSignal(f.temp);
  }
  return failure;
}

/// Writes `params.safetensors` for the imported parameters (the header's
/// offsets follow the map's order, as the tensors are written).
void writeImportedParameters(raw_ostream &os,
                             const std::map<std::string, std::string> &tensors,
                             json::Object header) {
  int64_t offset = 0;
  for (auto &[name, bytes] : tensors) {
    (*header.getObject(name))["data_offsets"] =
        json::Array{offset, offset + int64_t(bytes.size())};
    offset += int64_t(bytes.size());
  }
  std::string text;
  llvm::raw_string_ostream(text) << json::Value(std::move(header));
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i)
    os << char(n >> (8 * i));
  os << text;
  for (auto &[name, bytes] : tensors)
    os << bytes;
}

/// netrun's lock on a trainer directory (`.netrun.lock`, flock), taken for
/// as long as netc writes into it: a run training the directory would read
/// a plan it did not start with and checkpoint it as its own.
struct TrainerLock {
  int fd = -1;
  /// Whether a run holds the lock (false: none, or no lock file yet).
  bool busy(StringRef directory) {
    SmallString<256> path(directory);
    llvm::sys::path::append(path, ".netrun.lock");
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      return false; // no run has locked it (or it cannot tell: go on)
    // Shared: it conflicts with netrun's exclusive lock, and works on a
    // read-only descriptor where flock is emulated with fcntl locks (NFS),
    // which refuse an exclusive one there.
    return ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  }
  ~TrainerLock() {
    if (fd >= 0)
      ::close(fd);
  }
};

} // namespace

/// An error about the output, not the model: no source line to point at.
static InFlightDiagnostic outputError(ModuleOp module) {
  return emitError(UnknownLoc::get(module.getContext()));
}

LogicalResult netc::writeTrainer(ModuleOp module, StringRef directory) {
  auto plan = buildPlan(module);
  if (failed(plan))
    return failure();
  // The imported parameters are read and checked first: a file that does
  // not match leaves no trainer behind.
  std::map<std::string, std::string> tensors;
  json::Object header;
  if (failed(importParameters(module, tensors, header)))
    return failure();
  if (std::error_code ec = llvm::sys::fs::create_directories(directory))
    return outputError(module)
           << "cannot create " << directory << ": " << ec.message();
  TrainerLock lock;
  if (lock.busy(directory))
    return outputError(module)
           << "netrun is training " << directory
           << " (it holds its .netrun.lock): a new plan would change the "
              "trainer under the run; let it finish or stop it first";
  // Both files are written whole beside their places before either is
  // renamed into place, the plan last: a full disk leaves the trainer as
  // it was, never a new plan beside old parameters.
  SmallVector<PendingFile, 2> files;
  auto write = [&](StringRef name,
                   function_ref<void(raw_ostream &)> fill) -> LogicalResult {
    SmallString<256> path(directory);
    llvm::sys::path::append(path, name);
    llvm::Expected<PendingFile> f = writeBeside(path, fill);
    if (!f) {
      commit(files, /*keep=*/false);
      return outputError(module)
             << "cannot write " << path << ": " << llvm::toString(f.takeError())
             << " (" << directory << " is as it was)";
    }
    files.push_back(std::move(*f));
    return success();
  };
  if (!tensors.empty() &&
      failed(write("params.safetensors", [&](raw_ostream &os) {
        writeImportedParameters(os, tensors, std::move(header));
      })))
    return failure();
  if (failed(write("plan.json", [&](raw_ostream &os) {
        os << llvm::formatv("{0:2}", *plan) << "\n";
      })))
    return failure();
  if (std::error_code ec = commit(files, /*keep=*/true))
    return outputError(module)
           << "cannot rename into " << directory << ": " << ec.message();
  // A trainer compiled before with imported parameters keeps no stale copy
  // of them (netrun would not read it, but it says what is not so).
  if (tensors.empty()) {
    SmallString<256> stale(directory);
    llvm::sys::path::append(stale, "params.safetensors");
    if (std::error_code ec = llvm::sys::fs::remove(stale))
      module.emitWarning() << "cannot remove " << stale
                           << ", which this plan does not read: "
                           << ec.message();
  }
  return success();
}

namespace {

struct EmitPlanPass : netc::impl::EmitPlanBase<EmitPlanPass> {
  using EmitPlanBase::EmitPlanBase;

  void runOnOperation() override {
    if (output.empty()) {
      auto plan = buildPlan(getOperation());
      if (failed(plan))
        return signalPassFailure();
      llvm::outs() << llvm::formatv("{0:2}", *plan) << "\n";
      return;
    }
    if (failed(writeTrainer(getOperation(), output)))
      signalPassFailure();
  }
};

} // namespace
