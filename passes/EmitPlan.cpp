//===- EmitPlan.cpp - net-emit-plan: the trainer artifact -----------------===//
//
// Serialises a planned module as docs/trainer-format.md describes: the
// parameter table, one program per step function and the eval program
// (values with their arena offsets, kernels in order, outputs), the data
// settings and the schedule. Written with llvm::json (LLVM is built without
// exceptions).
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/ToolOutputFile.h"

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

json::Value initJson(Attribute init) {
  if (auto g = dyn_cast<GaussianInitAttr>(init))
    return json::Object{{"kind", "gaussian"},
                        {"std", g.getStd().convertToDouble()},
                        {"mean", g.getMean().convertToDouble()}};
  if (auto c = dyn_cast<ConstantInitAttr>(init))
    return json::Object{{"kind", "constant"},
                        {"value", c.getValue().convertToDouble()}};
  auto f = cast<FileInitAttr>(init);
  return json::Object{
      {"kind", "file"}, {"path", f.getPath()}, {"key", f.getKey()}};
}

/// An attribute as JSON; null for the ones the runtime does not need.
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

StringRef dtypeOf(Type type) {
  if (isa<SwitchesType>(type))
    return "i32";
  auto t = cast<TensorType>(type);
  return t.getElementType().isF32() ? "f32" : "i32";
}

ArrayRef<int64_t> shapeOf(Type type) {
  if (auto s = dyn_cast<SwitchesType>(type))
    return s.getShape();
  return cast<RankedTensorType>(type).getShape();
}

FailureOr<json::Object> programJson(func::FuncOp func) {
  Block &block = func.getBody().front();
  auto argOffsets = func->getAttrOfType<DenseI64ArrayAttr>("net.arg_offsets");
  auto arena = func->getAttrOfType<IntegerAttr>("net.arena_bytes");
  auto batch = func->getAttrOfType<IntegerAttr>("net.batch");
  if (!argOffsets || !arena || !batch)
    return func.emitError("net-emit-plan needs a planned function; run "
                          "net-plan-memory first");

  llvm::DenseMap<Value, int64_t> ids;
  json::Array values;
  auto addValue = [&](Value v, json::Object entry) {
    int64_t id = ids.size();
    ids[v] = id;
    entry["id"] = id;
    entry["shape"] = ints(shapeOf(v.getType()));
    entry["dtype"] = dtypeOf(v.getType());
    values.push_back(std::move(entry));
  };
  for (auto [arg, offset] :
       llvm::zip(block.getArguments(), argOffsets.asArrayRef()))
    addValue(arg, json::Object{{"offset", offset}});

  json::Array kernels;
  json::Object outputs;
  for (Operation &op : block) {
    if (auto get = dyn_cast<ParamGetOp>(op)) {
      addValue(get.getResult(), json::Object{{"param", get.getName()}});
      continue;
    }
    if (auto ret = dyn_cast<func::ReturnOp>(op);
        ret && func->hasAttr("net.reconstruct_from")) {
      json::Array recons;
      for (auto [value, from] :
           llvm::zip(ret.getOperands(),
                     func->getAttrOfType<ArrayAttr>("net.reconstruct_from")))
        recons.push_back(
            json::Object{{"from", cast<StringAttr>(from).getValue()},
                         {"value", ids.lookup(value)}});
      outputs["reconstructions"] = std::move(recons);
      continue;
    }
    if (auto ret = dyn_cast<func::ReturnOp>(op)) {
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
    json::Array in, out;
    for (Value operand : op.getOperands())
      in.push_back(ids.lookup(operand));
    auto offsets = op.getAttrOfType<DenseI64ArrayAttr>("net.offsets");
    for (auto [i, result] : llvm::enumerate(op.getResults())) {
      addValue(result, json::Object{{"offset", offsets[i]}});
      out.push_back(ids.lookup(result));
    }
    json::Object attrs;
    for (NamedAttribute a : op.getAttrs()) {
      if (a.getName().strref().starts_with("net."))
        continue;
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

} // namespace

FailureOr<json::Value> netc::buildPlan(ModuleOp module) {
  func::FuncOp network;
  for (auto func : module.getOps<func::FuncOp>())
    if (func->hasAttr("net.network"))
      network = func;
  if (!network)
    return module.emitError("no function marked net.network");
  auto image = cast<RankedTensorType>(network.getArgument(0).getType());

  json::Object plan{{"format", "netc-trainer"},
                    {"version", int64_t(kTrainerFormatVersion)},
                    {"network", network.getSymName()}};
  StringRef variant = "none";
  for (AugmentOp augment : module.getOps<AugmentOp>())
    variant = augment.getVariant();
  plan["variant"] = variant;
  plan["input"] = ints(image.getShape().drop_front());
  plan["classes"] = network->getAttrOfType<IntegerAttr>("net.classes").getInt();

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
  }
  plan["data"] = std::move(data);
  json::Array schemes{"full"};
  for (EvalOp e : module.getOps<EvalOp>())
    schemes = std::move(*attrJson(e.getSchemes())->getAsArray());
  plan["eval"] = json::Object{{"schemes", std::move(schemes)}};

  json::Array params;
  for (ParamOp p : module.getOps<ParamOp>())
    params.push_back(json::Object{
        {"name", p.getSymName()},
        {"shape", ints(cast<RankedTensorType>(p.getType()).getShape())},
        {"group", p.getGroup()},
        {"trainable", p.getTrainable()},
        {"lr_mult", p.getLrMult().convertToDouble()},
        {"decay_mult", p.getDecayMult().convertToDouble()},
        {"init", initJson(p.getInit())}});
  plan["params"] = std::move(params);

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

LogicalResult netc::writeTrainer(ModuleOp module, StringRef directory) {
  auto plan = buildPlan(module);
  if (failed(plan))
    return failure();
  if (std::error_code ec = llvm::sys::fs::create_directories(directory))
    return module.emitError()
           << "cannot create " << directory << ": " << ec.message();
  SmallString<256> path(directory);
  llvm::sys::path::append(path, "plan.json");
  std::error_code ec;
  llvm::ToolOutputFile file(path, ec, llvm::sys::fs::OF_Text);
  if (ec)
    return module.emitError()
           << "cannot write " << path << ": " << ec.message();
  file.os() << llvm::formatv("{0:2}", *plan) << "\n";
  file.keep();
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
