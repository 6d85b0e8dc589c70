//===- Precision.cpp - net-precision: how the trainer stores each value ---===//
//
// Under bf16 and tf32, and under fp32 with the layout nhwc (the module's
// `net.layout`, netc --layout; NCHW is fp32's default, the layout the CPU
// backends take), for every program (step, eval, reconstruct function):
// 1. Element types: under bf16 a real value with the batch dimension
//    (activations and their gradients) is bf16 and a real value without it
//    (parameters, their gradients, losses) f32; under tf32 every real value
//    is f32 (fp32 likewise). Labels are i32; switches u8 (a position
//    within the pooling window).
// 2. Layouts: the values a view (Ops.def: reshape, flatten) joins keep
//    NCHW, since a view reads its input's bytes in N, C, H, W order; every
//    other activation map (bf16, or f32 under tf32) is NHWC, and a
//    max-pool's switches follow its output. Tensor cores want NHWC: on an
//    H200, cuDNN's TF32 convolutions on NCHW maps ran 1.3-1.5x its fp32
//    ones where PyTorch's on channels_last ran 2.7-3.2x (2026-11-30).
// 3. The choice goes into net.dtypes/net.layouts on the ops and
//    net.arg_dtypes/net.arg_layouts on the function; the types stay f32.
// Under fp32 with NCHW the values are stored as their types say.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/DenseSet.h"

namespace netc {
#define GEN_PASS_DEF_PRECISION
#include "passes/Passes.h.inc"
} // namespace netc

using namespace mlir;
using namespace netc;
using namespace netc::net;

ValueFormat netc::valueFormat(Value value) {
  ArrayAttr dtypes, layouts;
  unsigned i;
  if (auto arg = dyn_cast<BlockArgument>(value)) {
    i = arg.getArgNumber();
    Operation *parent = arg.getOwner()->getParentOp();
    if (isa_and_nonnull<func::FuncOp>(parent)) {
      dtypes = parent->getAttrOfType<ArrayAttr>("net.arg_dtypes");
      layouts = parent->getAttrOfType<ArrayAttr>("net.arg_layouts");
    }
  } else {
    auto result = cast<OpResult>(value);
    i = result.getResultNumber();
    dtypes = result.getOwner()->getAttrOfType<ArrayAttr>("net.dtypes");
    layouts = result.getOwner()->getAttrOfType<ArrayAttr>("net.layouts");
  }
  ValueFormat format;
  if (auto tensor = dyn_cast<TensorType>(value.getType()))
    format.dtype = tensor.getElementType();
  else
    format.dtype = IntegerType::get(value.getContext(), 8, // switches
                                    IntegerType::Unsigned);
  if (dtypes && i < dtypes.size())
    if (auto dtype = dyn_cast<TypeAttr>(dtypes[i]))
      format.dtype = dtype.getValue();
  if (layouts && i < layouts.size())
    if (auto layout = dyn_cast<StringAttr>(layouts[i]))
      format.nhwc = layout.getValue() == "nhwc";
  return format;
}

namespace {

/// Whether `type` is a map: a rank-4 tensor or rank-4 switches.
bool isMap(Type type) {
  if (auto s = dyn_cast<SwitchesType>(type))
    return s.hasRank() && s.getShape().size() == 4;
  auto t = dyn_cast<RankedTensorType>(type);
  return t && t.getRank() == 4;
}

/// Whether `type` is an activation or its gradient: a real tensor with the
/// batch dimension (parameters and losses have static shapes).
bool isActivation(Type type) {
  auto tensor = dyn_cast<RankedTensorType>(type);
  return tensor && isa<FloatType>(tensor.getElementType()) &&
         !tensor.hasStaticShape();
}

/// Step 1: the element type of a value of `type` in a bf16 plan (`bf16`)
/// or an f32 one laid out NHWC (tf32, or fp32 with the layout nhwc).
Type dtypeOf(Type type, bool bf16) {
  Builder b(type.getContext());
  if (isa<SwitchesType>(type)) // a position within the window: one byte
    return IntegerType::get(type.getContext(), 8, IntegerType::Unsigned);
  auto tensor = dyn_cast<RankedTensorType>(type);
  if (!tensor || !isa<FloatType>(tensor.getElementType()))
    return b.getI32Type();
  return bf16 && isActivation(type) ? b.getBF16Type() : b.getF32Type();
}

/// Steps 2 and 3 for one program.
void storeFor(func::FuncOp func, bool bf16) {
  Block &block = func.getBody().front();
  llvm::DenseSet<Value> viewed;
  for (Operation &op : block)
    if (isa<NetDialect>(op.getDialect()) &&
        planOpMemory(op.getName().stripDialect()) == OpMemory::View) {
      viewed.insert(op.getOperands().begin(), op.getOperands().end());
      viewed.insert(op.getResults().begin(), op.getResults().end());
    }

  Builder b(func.getContext());
  auto formatOf = [&](ValueRange values, Operation *at, StringRef dtypesName,
                      StringRef layoutsName) {
    SmallVector<Attribute> dtypes, layouts;
    bool anyMap = false;
    for (Value v : values) {
      Type dtype = dtypeOf(v.getType(), bf16);
      dtypes.push_back(TypeAttr::get(dtype));
      bool map = isMap(v.getType());
      anyMap |= map;
      // Activation maps (not switches, whose layout follows their
      // max-pool's output below).
      bool nhwc = map && isActivation(v.getType()) && !viewed.contains(v);
      layouts.push_back(b.getStringAttr(!map ? "" : nhwc ? "nhwc" : "nchw"));
    }
    // Switches are indexed like the map they were pooled into.
    if (isa<MaxPoolOp>(at))
      layouts[1] = layouts[0];
    at->setAttr(dtypesName, b.getArrayAttr(dtypes));
    if (anyMap)
      at->setAttr(layoutsName, b.getArrayAttr(layouts));
  };

  formatOf(block.getArguments(), func, "net.arg_dtypes", "net.arg_layouts");
  for (Operation &op : block)
    if (!isa<ParamGetOp>(op) && op.getNumResults() != 0)
      formatOf(op.getResults(), &op, "net.dtypes", "net.layouts");
}

struct PrecisionPass : netc::impl::PrecisionBase<PrecisionPass> {
  using PrecisionBase::PrecisionBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    static constexpr StringRef kLayouts[] = {"nchw", "nhwc"};
    FailureOr<StringRef> chosen =
        setting(module, precision, "net.precision", "precision", precisions(),
                "fp32, tf32 or bf16");
    FailureOr<StringRef> layout = setting(module, this->layout, "net.layout",
                                          "layout", kLayouts, "nchw or nhwc");
    if (failed(chosen) || failed(layout))
      return signalPassFailure();
    return recordStorage(module, *chosen, *layout);
  }

  /// The module's `attr` (net.precision, net.layout): the pass option
  /// `option` where given (one of `allowed`, then written to the module),
  /// else the module's own, else "".
  static FailureOr<StringRef> setting(ModuleOp module, StringRef option,
                                      StringRef attr, StringRef what,
                                      ArrayRef<StringRef> allowed,
                                      StringRef expected) {
    if (option.empty()) {
      auto own = module->getAttrOfType<StringAttr>(attr);
      return own ? own.getValue() : StringRef();
    }
    if (!llvm::is_contained(allowed, option)) {
      module.emitError() << "unknown " << what << " '" << option
                         << "'; expected " << expected;
      return failure();
    }
    module->setAttr(attr, StringAttr::get(module.getContext(), option));
    return option;
  }

  /// Records how every value of the programs is stored (steps 1-3).
  void recordStorage(ModuleOp module, StringRef chosen, StringRef layout) {
    // The maps' layout: NHWC for the tensor-core precisions, NCHW for fp32,
    // unless the module says otherwise (bf16 maps are always NHWC).
    bool nhwc = layout.empty() ? chosen == "bf16" || chosen == "tf32"
                               : layout == "nhwc";
    if (chosen == "bf16" && !nhwc) {
      module.emitError() << "bf16 plans keep their maps NHWC; layout '"
                         << layout << "' is for fp32 and tf32";
      return signalPassFailure();
    }
    if (!nhwc)
      return;
    for (auto func : module.getOps<func::FuncOp>()) {
      if (func.isExternal() ||
          !(func->hasAttr("net.phase") || func->hasAttr("net.eval") ||
            func->hasAttr("net.reconstruct_from")))
        continue;
      if (!llvm::hasSingleElement(func.getBody()) ||
          !func.getBody().front().getOps<MacroOp>().empty()) {
        func.emitError("net-precision needs straight-line functions; run "
                       "net-autodiff first");
        return signalPassFailure();
      }
      storeFor(func, chosen == "bf16");
    }
  }
};

} // namespace
