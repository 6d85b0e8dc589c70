//===- NetDialect.cpp - The net dialect -----------------------------------===//

#include "dialect/NetDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

#include <cmath>

using namespace mlir;
using namespace netc::net;

#include "dialect/NetDialect.cpp.inc"

/// Lets `struct(params)` assembly formats parse float parameters.
template <> struct mlir::FieldParser<llvm::APFloat> {
  static FailureOr<llvm::APFloat> parse(AsmParser &parser) {
    double value;
    if (parser.parseFloat(value))
      return failure();
    return llvm::APFloat(value);
  }
};

#define GET_TYPEDEF_CLASSES
#include "dialect/NetTypes.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "dialect/NetAttrs.cpp.inc"

void NetDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "dialect/NetOps.cpp.inc"
      >();
  addTypes<
#define GET_TYPEDEF_LIST
#include "dialect/NetTypes.cpp.inc"
      >();
  addAttributes<
#define GET_ATTRDEF_LIST
#include "dialect/NetAttrs.cpp.inc"
      >();
}

//===----------------------------------------------------------------------===//
// Attributes
//===----------------------------------------------------------------------===//

LogicalResult
GaussianInitAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                         llvm::APFloat std, llvm::APFloat mean) {
  if (!std.isFinite() || !mean.isFinite())
    return emitError() << "gaussian std and mean must be finite";
  return success();
}

LogicalResult
ConstantInitAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                         llvm::APFloat value) {
  if (!value.isFinite())
    return emitError() << "constant value must be finite";
  return success();
}

/// What `net.dtypes` may say of a value of `type`: f32 or bf16 for a real
/// tensor, i32 for labels, ui8 for switches.
static bool isStorableAs(Type type, Type dtype) {
  if (isa<SwitchesType>(type)) // a position within the window: one byte
    return dtype.isUnsignedInteger(8);
  auto tensor = dyn_cast<RankedTensorType>(type);
  bool real = tensor && isa<FloatType>(tensor.getElementType());
  if (real)
    return dtype.isF32() || dtype.isBF16();
  return dtype.isSignlessInteger(32);
}

/// Whether a value of `type` is a map (rank 4), the only values with a
/// layout.
static bool isMap(Type type) {
  if (auto s = dyn_cast<SwitchesType>(type))
    return s.hasRank() && s.getShape().size() == 4;
  auto t = dyn_cast<RankedTensorType>(type);
  return t && t.getRank() == 4;
}

/// The discardable attributes the frontend and the passes attach, and what
/// each must be, so that a pass can read them without checking their kinds:
///   on a module:     net.precision ("fp32", "tf32" or "bf16"),
///                    net.layout (the maps' layout, "nchw" or "nhwc"),
///                    net.data_parallel (the bucket capacity in bytes, an
///                    i64 >= 1: net-data-parallel ran)
///   on any op:       net.offsets (planned: one byte offset per result),
///                    net.dtypes (one of f32, bf16, i32 per result),
///                    net.layouts (per result: "nchw" or "nhwc" for a map,
///                    "" for other values)
///   on a func.func:  net.network, net.eval (unit; a function with a
///                    body), net.classes (positive), net.phase (symbol; a
///                    function with a body that returns its objective
///                    first), net.topology (string), net.lambda
///                    (finite, non-negative), net.gamma (stage -> finite,
///                    non-negative weight), net.reconstruct_from (one
///                    macro-layer name per result), net.arg_offsets (one byte
///                    offset per argument), net.arena_bytes (non-negative),
///                    net.batch (positive), net.arg_dtypes and
///                    net.arg_layouts (as net.dtypes and net.layouts, one per
///                    argument).
LogicalResult NetDialect::verifyOperationAttribute(Operation *op,
                                                   NamedAttribute attr) {
  StringRef name = attr.getName().strref();
  Attribute value = attr.getValue();
  auto error = [&]() {
    return op->emitOpError() << "attribute '" << name << "' ";
  };
  auto offsetsFor = [&](size_t count, StringRef what) -> LogicalResult {
    auto offsets = dyn_cast<DenseI64ArrayAttr>(value);
    if (!offsets || size_t(offsets.size()) != count)
      return error() << "must be an array<i64> of " << count
                     << " byte offsets, one per " << what << ", got " << value;
    if (llvm::any_of(offsets.asArrayRef(), [](int64_t o) { return o < 0; }))
      return error() << "must not hold a negative offset";
    return success();
  };
  auto integer = [&](int64_t min) -> LogicalResult {
    auto i = dyn_cast<IntegerAttr>(value);
    if (!i || !i.getType().isSignlessInteger(64) || i.getInt() < min)
      return error() << "must be an i64 of at least " << min << ", got "
                     << value;
    return success();
  };

  // net-precision's storage of each value (passes/Precision.cpp).
  auto dtypesFor = [&](TypeRange types, StringRef what) -> LogicalResult {
    auto dtypes = dyn_cast<ArrayAttr>(value);
    if (!dtypes || dtypes.size() != types.size() ||
        !llvm::all_of(dtypes, llvm::IsaPred<TypeAttr>))
      return error() << "must be an array of " << types.size()
                     << " element types, one per " << what << ", got " << value;
    for (auto [i, type, dtype] : llvm::enumerate(types, dtypes)) {
      Type t = cast<TypeAttr>(dtype).getValue();
      if (!isStorableAs(type, t))
        return error() << "cannot store " << what << " " << i << " of type "
                       << type << " as " << t
                       << " (real values: f32 or bf16; labels: i32; "
                          "switches: ui8)";
    }
    return success();
  };
  auto layoutsFor = [&](TypeRange types, StringRef what) -> LogicalResult {
    auto layouts = dyn_cast<ArrayAttr>(value);
    if (!layouts || layouts.size() != types.size() ||
        !llvm::all_of(layouts, llvm::IsaPred<StringAttr>))
      return error() << "must be an array of " << types.size()
                     << " layouts, one per " << what << ", got " << value;
    for (auto [i, type, layout] : llvm::enumerate(types, layouts)) {
      StringRef l = cast<StringAttr>(layout).getValue();
      if (isMap(type) ? l != "nchw" && l != "nhwc" : !l.empty())
        return error() << what << " " << i << " of type " << type
                       << (isMap(type) ? " needs \"nchw\" or \"nhwc\""
                                       : " has no layout (\"\")")
                       << ", got \"" << l << "\"";
    }
    return success();
  };

  if (name == "net.offsets")
    return offsetsFor(op->getNumResults(), "result");
  if (name == "net.dtypes")
    return dtypesFor(op->getResultTypes(), "result");
  if (name == "net.layouts")
    return layoutsFor(op->getResultTypes(), "result");
  if (name == "net.precision") {
    if (!isa<ModuleOp>(op))
      return error() << "belongs on a builtin.module";
    auto s = dyn_cast<StringAttr>(value);
    if (!s || !llvm::is_contained(precisions(), s.getValue()))
      return error() << "must be \"fp32\", \"tf32\" or \"bf16\", got " << value;
    return success();
  }

  if (name == "net.layout") {
    if (!isa<ModuleOp>(op))
      return error() << "belongs on a builtin.module";
    auto s = dyn_cast<StringAttr>(value);
    if (!s || (s.getValue() != "nchw" && s.getValue() != "nhwc"))
      return error() << "must be \"nchw\" or \"nhwc\", got " << value;
    return success();
  }

  if (name == "net.data_parallel") {
    if (!isa<ModuleOp>(op))
      return error() << "belongs on a builtin.module";
    return integer(1);
  }

  static const StringRef funcAttrs[] = {
      "net.network",     "net.eval",
      "net.classes",     "net.phase",
      "net.topology",    "net.lambda",
      "net.gamma",       "net.reconstruct_from",
      "net.arg_offsets", "net.arena_bytes",
      "net.batch",       "net.arg_dtypes",
      "net.arg_layouts", "net.dense_scale",
      "net.eval_batch"};
  if (!llvm::is_contained(funcAttrs, name))
    return op->emitOpError() << "unknown attribute '" << name << "'";
  auto func = dyn_cast<func::FuncOp>(op);
  if (!func)
    return error() << "belongs on a func.func";
  // The passes read these functions' bodies (and a step function's first
  // result as its objective, below).
  if ((name == "net.network" || name == "net.eval" || name == "net.phase" ||
       name == "net.reconstruct_from") &&
      func.isExternal())
    return error() << "needs a function with a body, not a declaration";

  if (name == "net.network" || name == "net.eval") {
    if (!isa<UnitAttr>(value))
      return error() << "must be a unit attribute";
    return success();
  }
  if (name == "net.classes" || name == "net.batch" ||
      name == "net.dense_scale" || name == "net.eval_batch")
    return integer(1);
  if (name == "net.arena_bytes")
    return integer(0);
  if (name == "net.phase") {
    if (!isa<FlatSymbolRefAttr>(value))
      return error() << "must name a net.phase, got " << value;
    if (func.getNumResults() == 0)
      return error() << "needs a function that returns its objective first";
    return success();
  }
  if (name == "net.topology") {
    static const StringRef topologies[] = {"default", "layerwise", "stacked",
                                           "none", "reconstruct"};
    auto s = dyn_cast<StringAttr>(value);
    if (!s || !llvm::is_contained(topologies, s.getValue()))
      return error() << "must be one of \"default\", \"layerwise\", "
                        "\"stacked\", \"none\", \"reconstruct\", got "
                     << value;
    return success();
  }
  if (name == "net.lambda") {
    auto f = dyn_cast<FloatAttr>(value);
    if (!f || !f.getValue().isFinite() || f.getValue().isNegative())
      return error() << "must be a finite non-negative float, got " << value;
    return success();
  }
  if (name == "net.gamma") {
    auto gammas = dyn_cast<DictionaryAttr>(value);
    if (!gammas || !llvm::all_of(gammas, [](NamedAttribute g) {
          auto f = dyn_cast<FloatAttr>(g.getValue());
          return f && f.getValue().isFinite() && !f.getValue().isNegative();
        }))
      return error() << "must be a dictionary of finite non-negative floats, "
                        "got "
                     << value;
    return success();
  }
  if (name == "net.reconstruct_from") {
    auto from = dyn_cast<ArrayAttr>(value);
    if (!from || !llvm::all_of(from, llvm::IsaPred<StringAttr>))
      return error() << "must be an array of macro-layer names, got " << value;
    if (from.size() != func.getNumResults())
      return error() << "names " << from.size()
                     << " macro-layers for a function of "
                     << func.getNumResults() << " results";
    return success();
  }
  if (name == "net.arg_dtypes")
    return dtypesFor(func.getArgumentTypes(), "argument");
  if (name == "net.arg_layouts")
    return layoutsFor(func.getArgumentTypes(), "argument");
  // net.arg_offsets
  return offsetsFor(func.getNumArguments(), "argument");
}

/// `!net.switches<?x64x112x112>` or `!net.switches<*>`.
Type SwitchesType::parse(AsmParser &parser) {
  SmallVector<int64_t> shape;
  if (parser.parseLess())
    return {};
  if (succeeded(parser.parseOptionalStar())) {
    if (parser.parseGreater())
      return {};
    return SwitchesType::get(parser.getContext(), {});
  }
  if (parser.parseDimensionList(shape, /*allowDynamic=*/true,
                                /*withTrailingX=*/false) ||
      parser.parseGreater())
    return {};
  if (shape.empty()) {
    parser.emitError(parser.getNameLoc(),
                     "switches need at least one dimension");
    return {};
  }
  return SwitchesType::get(parser.getContext(), shape);
}

void SwitchesType::print(AsmPrinter &printer) const {
  printer << "<";
  if (!hasRank())
    printer << "*";
  llvm::interleave(
      getShape(), printer.getStream(),
      [&](int64_t d) {
        if (ShapedType::isDynamic(d))
          printer << "?";
        else
          printer << d;
      },
      "x");
  printer << ">";
}

llvm::ArrayRef<llvm::StringRef> netc::net::augmentVariants() {
  static const llvm::StringRef variants[] = {
      "none",        "sae-first", "sae-all",        "sae-layerwise",
      "swwae-first", "swwae-all", "swwae-layerwise"};
  return variants;
}

llvm::ArrayRef<llvm::StringRef> netc::net::precisions() {
  static const llvm::StringRef names[] = {"fp32", "tf32", "bf16"};
  return names;
}

RankedTensorType netc::net::mapType(MLIRContext *ctx, ArrayRef<int64_t> shape) {
  return RankedTensorType::get(shape, Float32Type::get(ctx));
}

StringRef netc::net::layerName(Operation *op) {
  if (auto name = dyn_cast<NameLoc>(op->getLoc()))
    return name.getName().strref();
  return {};
}

std::string netc::net::describe(Operation *op) {
  StringRef name = layerName(op);
  if (name.empty())
    return ("'" + op->getName().getStringRef() + "'").str();
  return ("layer '" + name + "' (" + op->getName().getStringRef() + ")").str();
}

static constexpr llvm::StringLiteral kFileNamedTag = "net.file";

Location netc::net::withFileNamedAt(Location at, Location namedAt) {
  if (auto name = dyn_cast<NameLoc>(at))
    return NameLoc::get(name.getName(),
                        withFileNamedAt(name.getChildLoc(), namedAt));
  MLIRContext *ctx = at.getContext();
  return FusedLoc::get(ctx, {at, namedAt}, StringAttr::get(ctx, kFileNamedTag));
}

std::optional<Location> netc::net::fileNamedAt(Location loc) {
  while (auto name = dyn_cast<NameLoc>(loc)) // a decoder's: "dec.x"("x"(...))
    loc = name.getChildLoc();
  auto fused = dyn_cast<FusedLoc>(loc);
  auto tag =
      fused ? dyn_cast_or_null<StringAttr>(fused.getMetadata()) : StringAttr();
  if (!tag || tag.getValue() != kFileNamedTag ||
      fused.getLocations().size() != 2)
    return std::nullopt;
  return fused.getLocations()[1];
}

InFlightDiagnostic netc::net::emitLayerError(Operation *op) {
  StringRef name = layerName(op);
  if (name.empty())
    return op->emitOpError();
  return op->emitError() << "layer '" << name << "': ";
}
