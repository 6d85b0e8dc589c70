//===- NetDialect.cpp - The net dialect -----------------------------------===//

#include "dialect/NetDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

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

RankedTensorType netc::net::mapType(MLIRContext *ctx, ArrayRef<int64_t> shape) {
  return RankedTensorType::get(shape, Float32Type::get(ctx));
}

StringRef netc::net::layerName(Operation *op) {
  if (auto name = dyn_cast<NameLoc>(op->getLoc()))
    return name.getName().strref();
  return {};
}

InFlightDiagnostic netc::net::emitLayerError(Operation *op) {
  StringRef name = layerName(op);
  if (name.empty())
    return op->emitOpError();
  return op->emitError() << "layer '" << name << "': ";
}
