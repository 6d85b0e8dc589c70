//===- NetOps.cpp - Verifiers and shape functions of the net dialect ------===//
//
// Each layer has one shape function, `computeResultTypes`. The verifier calls
// it to check hand-written IR; `net-infer-shapes` calls it to fill in result
// types and to sharpen the types of the parameters a layer reads. So a shape
// error reads the same from netc-opt as from a .net file.
//
//===----------------------------------------------------------------------===//

#include "dialect/NetDialect.h"
#include "runtime/plan/Window.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/MathExtras.h"

using namespace mlir;
using namespace netc::net;

static constexpr int64_t kDyn = ShapedType::kDynamic;

//===----------------------------------------------------------------------===//
// Shape helpers
//===----------------------------------------------------------------------===//

static RankedTensorType rankedOf(Value v) {
  return v ? dyn_cast<RankedTensorType>(v.getType()) : RankedTensorType();
}

/// `64x3x3x3`, with `?` for unknown dimensions.
static std::string shapeStr(ArrayRef<int64_t> shape) {
  std::string s;
  llvm::raw_string_ostream os(s);
  llvm::interleave(
      shape, os,
      [&](int64_t d) {
        if (d == kDyn)
          os << "?";
        else
          os << d;
      },
      "x");
  return s;
}

std::string netc::net::switchWindowMismatch(Value sw, ArrayRef<int64_t> kernel,
                                            ArrayRef<int64_t> stride,
                                            ArrayRef<int64_t> pad) {
  auto pool = sw.getDefiningOp<MaxPoolOp>();
  if (!pool || (pool.getKernel() == kernel && pool.getStride() == stride &&
                pool.getPad() == pad))
    return "";
  return "a max-pool with kernel " + shapeStr(pool.getKernel()) + " stride " +
         shapeStr(pool.getStride()) + " pad " + shapeStr(pool.getPad()) +
         " through kernel " + shapeStr(kernel) + " stride " + shapeStr(stride) +
         " pad " + shapeStr(pad);
}

static bool dimsCompatible(int64_t a, int64_t b) {
  return a == kDyn || b == kDyn || a == b;
}

/// Checks that `v` can have shape `expected` (whose entries may be unknown);
/// with `refine`, gives a `net.param_get` operand that shape. `what` names
/// the operand in the error.
static LogicalResult expectOperandShape(Operation *op, Value v,
                                        ArrayRef<int64_t> expected,
                                        StringRef what, bool refine) {
  SmallVector<int64_t> merged(expected);
  if (auto ranked = rankedOf(v)) {
    bool ok = ranked.getRank() == (int64_t)expected.size();
    for (size_t i = 0; ok && i < expected.size(); ++i) {
      ok = dimsCompatible(ranked.getDimSize(i), expected[i]);
      if (ok && merged[i] == kDyn)
        merged[i] = ranked.getDimSize(i);
    }
    if (!ok)
      return emitLayerError(op)
             << what << " must have shape " << shapeStr(expected) << ", got "
             << shapeStr(ranked.getShape());
    if (ranked.hasStaticShape())
      return success();
  }
  if (refine && v.getDefiningOp<ParamGetOp>())
    v.setType(mapType(op->getContext(), merged));
  return success();
}

static LogicalResult checkPairs(Operation *op, StringRef name,
                                ArrayRef<int64_t> values, int64_t min) {
  if (values.size() != 2)
    return emitLayerError(op)
           << name << " needs 2 values (height, width), got " << values.size();
  for (int64_t v : values)
    if (v < min)
      return emitLayerError(op) << name << " must be at least " << min
                                << ", got " << shapeStr(values);
  return success();
}

namespace {
/// int64_t arithmetic for shape formulas on hand-written attributes and
/// types: an overflow anywhere makes the result empty.
struct Checked {
  std::optional<int64_t> value;
  Checked(int64_t v) : value(v) {}
  Checked(std::nullopt_t) {}
  template <typename F>
  static Checked apply(Checked a, Checked b, F overflows) {
    int64_t r;
    if (!a.value || !b.value || overflows(*a.value, *b.value, r))
      return std::nullopt;
    return r;
  }
  friend Checked operator+(Checked a, Checked b) {
    return apply(a, b, llvm::AddOverflow<int64_t>);
  }
  friend Checked operator-(Checked a, Checked b) {
    return apply(a, b, llvm::SubOverflow<int64_t>);
  }
  friend Checked operator*(Checked a, Checked b) {
    return apply(a, b, llvm::MulOverflow<int64_t>);
  }
  /// Division by a positive divisor cannot overflow.
  friend Checked operator/(Checked a, int64_t b) {
    if (!a.value)
      return std::nullopt;
    return *a.value / b;
  }
};
} // namespace

/// Output length of a sliding window; fails when the window does not fit.
static FailureOr<int64_t> windowOutput(Operation *op, StringRef what,
                                       int64_t in, int64_t k, int64_t stride,
                                       int64_t pad, bool ceilMode,
                                       ArrayRef<int64_t> inShape) {
  if (in == kDyn)
    return kDyn;
  Checked span = Checked(in) + Checked(2) * pad - k;
  Checked out = (ceilMode ? (span + stride - 1) / stride : span / stride) + 1;
  Checked last = (out - 1) * stride, end = Checked(in) + pad;
  if (!out.value || !last.value || !end.value) {
    emitLayerError(op) << what << " overflows on the "
                       << shapeStr(inShape.drop_front(2)) << " input";
    return failure();
  }
  if (*span.value < 0) {
    emitLayerError(op) << what << " does not fit the "
                       << shapeStr(inShape.drop_front(2)) << " input";
    return failure();
  }
  // The runtime's rule (no overflow: checked above).
  return netc::plan::windowCount(in, k, stride, pad, ceilMode);
}

/// The number of elements of `shape` (kDyn if a dimension is unknown);
/// fails, reporting at `op`, past 2^32.
static FailureOr<int64_t> productOf(Operation *op, ArrayRef<int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d == kDyn)
      return kDyn;
    if (llvm::MulOverflow(n, d, n) || n > (int64_t(1) << 32)) {
      emitLayerError(op) << "more than 2^32 elements per image";
      return failure();
    }
  }
  return n;
}

/// Rank-4 input check shared by the spatial layers.
static FailureOr<RankedTensorType> spatialInput(Operation *op, Value input) {
  auto in = rankedOf(input);
  if (!in)
    return RankedTensorType();
  if (in.getRank() != 4) {
    emitLayerError(op) << "expects a [batch, channels, height, width] input, "
                          "got rank "
                       << in.getRank() << " (" << shapeStr(in.getShape())
                       << ")";
    return failure();
  }
  return in;
}

namespace netc::net::detail {

/// Verifier of every layer: the shape function must accept the operands, and
/// ranked results must match what it computes.
template <typename OpT> static LogicalResult verifyLayer(OpT op) {
  SmallVector<Type> expected;
  if (failed(op.computeResultTypes(expected, /*refineParams=*/false)))
    return failure();
  for (auto [result, want] : llvm::zip(op->getResults(), expected)) {
    if (!want)
      continue;
    Type have = result.getType();
    auto haveRanked = dyn_cast<RankedTensorType>(have);
    auto wantRanked = dyn_cast<RankedTensorType>(want);
    if (haveRanked && wantRanked) {
      if (haveRanked.getRank() == wantRanked.getRank() &&
          llvm::all_of(llvm::zip(haveRanked.getShape(), wantRanked.getShape()),
                       [](auto p) {
                         return dimsCompatible(std::get<0>(p), std::get<1>(p));
                       }))
        continue;
    } else if (auto sw = dyn_cast<SwitchesType>(have)) {
      // Like tensors: unknown dimensions are compatible with known ones.
      ArrayRef<int64_t> wantShape = cast<SwitchesType>(want).getShape();
      if (!sw.hasRank() ||
          (sw.getShape().size() == wantShape.size() &&
           llvm::all_of(llvm::zip(sw.getShape(), wantShape), [](auto p) {
             return dimsCompatible(std::get<0>(p), std::get<1>(p));
           })))
        continue;
    } else if (!haveRanked) {
      continue; // unranked result: not inferred yet
    }
    return emitLayerError(op)
           << "result type " << have << " does not match the inferred " << want;
  }
  return success();
}

/// `net-infer-shapes` step for one layer.
template <typename OpT> static LogicalResult inferLayer(OpT op) {
  SmallVector<Type> types;
  if (failed(op.computeResultTypes(types, /*refineParams=*/true)))
    return failure();
  for (auto [result, type] : llvm::zip(op->getResults(), types))
    if (type)
      result.setType(type);
  return success();
}

} // namespace netc::net::detail

//===----------------------------------------------------------------------===//
// Parameters
//===----------------------------------------------------------------------===//

LogicalResult ParamOp::verify() {
  if (!isa<GaussianInitAttr, ConstantInitAttr, FileInitAttr>(getInit()))
    return emitOpError("init must be #net.gaussian, #net.constant or "
                       "#net.file, got ")
           << getInit();
  if (auto g = dyn_cast<GaussianInitAttr>(getInit()))
    if (g.getStd().isNegative())
      return emitOpError("gaussian std must not be negative");
  StringRef group = getGroup();
  if (group != "encoder" && group != "decoder" && group != "classifier")
    return emitOpError("group must be encoder, decoder or classifier, got '")
           << group << "'";
  if (getLrMult().convertToDouble() < 0 || getDecayMult().convertToDouble() < 0)
    return emitOpError("lr_mult and decay_mult must not be negative");
  return success();
}

LogicalResult ParamGetOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  auto param =
      symbolTable.lookupNearestSymbolFrom<ParamOp>(*this, getNameAttr());
  if (!param)
    return emitOpError("reads '") << getName() << "', which is not a net.param";
  auto declared = dyn_cast<RankedTensorType>(param.getType());
  auto used = rankedOf(getResult());
  if (!declared || !used)
    return success();
  if (getView()) {
    if (!declared.hasStaticShape() || !used.hasStaticShape() ||
        declared.getNumElements() != used.getNumElements())
      return emitOpError("view ") << used << " does not have the elements of @"
                                  << getName() << " (" << declared << ")";
    return success();
  }
  if (declared.getRank() != used.getRank() ||
      !llvm::all_of(llvm::zip(declared.getShape(), used.getShape()),
                    [](auto p) {
                      return dimsCompatible(std::get<0>(p), std::get<1>(p));
                    }))
    return emitOpError("type ")
           << used << " does not match the declaration of @" << getName()
           << " as " << declared;
  return success();
}

//===----------------------------------------------------------------------===//
// Convolutions
//===----------------------------------------------------------------------===//

/// The bias of a conv/deconv/fc with `channels` outputs.
static LogicalResult expectBias(Operation *op, Value bias, int64_t channels,
                                bool refine) {
  if (!bias)
    return success();
  return expectOperandShape(op, bias, {channels}, "bias", refine);
}

LogicalResult Conv2DOp::computeResultTypes(SmallVectorImpl<Type> &results,
                                           bool refine) {
  results.assign(1, Type());
  Operation *op = getOperation();
  if (failed(checkPairs(op, "stride", getStride(), 1)) ||
      failed(checkPairs(op, "pad", getPad(), 0)))
    return failure();
  int64_t groups = getGroupsAttr().getInt();
  if (groups < 1)
    return emitLayerError(op) << "groups must be positive, got " << groups;
  auto w = rankedOf(getWeight());
  if (!w)
    return success();
  if (w.getRank() != 4)
    return emitLayerError(op) << "weight must be [out, in/groups, kh, kw], got "
                              << shapeStr(w.getShape());
  int64_t cout = w.getDimSize(0), kh = w.getDimSize(2), kw = w.getDimSize(3);
  if (cout != kDyn && cout % groups != 0)
    return emitLayerError(op) << cout
                              << " output channels are not divisible "
                                 "by "
                              << groups << " groups";
  if (failed(expectBias(op, getBias(), cout, refine)))
    return failure();
  auto inOr = spatialInput(op, getInput());
  if (failed(inOr))
    return failure();
  RankedTensorType in = *inOr;
  if (!in)
    return success();
  int64_t cin = in.getDimSize(1);
  if (cin != kDyn && cin % groups != 0)
    return emitLayerError(op)
           << "input has " << cin << " channels, not divisible by " << groups
           << " groups";
  int64_t cinPerGroup = cin == kDyn ? kDyn : cin / groups;
  if (failed(expectOperandShape(op, getWeight(), {cout, cinPerGroup, kh, kw},
                                "weight", refine)))
    return failure();
  if (kh == kDyn || kw == kDyn)
    return success();
  auto stride = getStride(), pad = getPad();
  std::string what =
      "kernel " + shapeStr({kh, kw}) + " with padding " +
      (pad[0] == pad[1] ? std::to_string(pad[0]) : shapeStr(pad));
  auto h = windowOutput(op, what, in.getDimSize(2), kh, stride[0], pad[0],
                        false, in.getShape());
  if (failed(h))
    return failure();
  auto wd = windowOutput(op, what, in.getDimSize(3), kw, stride[1], pad[1],
                         false, in.getShape());
  if (failed(wd))
    return failure();
  results[0] = mapType(getContext(), {in.getDimSize(0), cout, *h, *wd});
  return success();
}

LogicalResult Deconv2DOp::computeResultTypes(SmallVectorImpl<Type> &results,
                                             bool refine) {
  results.assign(1, Type());
  Operation *op = getOperation();
  if (failed(checkPairs(op, "stride", getStride(), 1)) ||
      failed(checkPairs(op, "pad", getPad(), 0)) ||
      failed(checkPairs(op, "output_padding", getOutputPadding(), 0)))
    return failure();
  auto stride = getStride(), pad = getPad(), outPad = getOutputPadding();
  for (int i = 0; i < 2; ++i)
    if (outPad[i] >= stride[i])
      return emitLayerError(op) << "output_padding must be smaller than the "
                                   "stride";
  int64_t groups = getGroupsAttr().getInt();
  if (groups < 1)
    return emitLayerError(op) << "groups must be positive, got " << groups;
  auto w = rankedOf(getWeight());
  if (!w)
    return success();
  if (w.getRank() != 4)
    return emitLayerError(op) << "weight must be [in, out/groups, kh, kw], got "
                              << shapeStr(w.getShape());
  int64_t coutPerGroup = w.getDimSize(1), kh = w.getDimSize(2),
          kw = w.getDimSize(3);
  std::optional<int64_t> cout =
      coutPerGroup == kDyn ? kDyn : (Checked(coutPerGroup) * groups).value;
  if (!cout)
    return emitLayerError(op) << "output channels overflow";
  if (failed(expectBias(op, getBias(), *cout, refine)))
    return failure();
  auto inOr = spatialInput(op, getInput());
  if (failed(inOr))
    return failure();
  RankedTensorType in = *inOr;
  if (!in)
    return success();
  int64_t cin = in.getDimSize(1);
  if (cin != kDyn && cin % groups != 0)
    return emitLayerError(op)
           << "input has " << cin << " channels, not divisible by " << groups
           << " groups";
  if (failed(expectOperandShape(op, getWeight(), {cin, coutPerGroup, kh, kw},
                                "weight", refine)))
    return failure();
  if (kh == kDyn || kw == kDyn || *cout == kDyn)
    return success();
  SmallVector<int64_t> spatial;
  for (int i = 0; i < 2; ++i) {
    int64_t n = in.getDimSize(2 + i), k = i == 0 ? kh : kw;
    if (n == kDyn) {
      spatial.push_back(kDyn);
      continue;
    }
    Checked out =
        (Checked(n) - 1) * stride[i] - Checked(2) * pad[i] + k + outPad[i];
    if (!out.value)
      return emitLayerError(op) << "output size overflows";
    if (*out.value < 1)
      return emitLayerError(op)
             << "padding " << pad[i] << " leaves no output from a " << n
             << "-wide input";
    spatial.push_back(*out.value);
  }
  results[0] =
      mapType(getContext(), {in.getDimSize(0), *cout, spatial[0], spatial[1]});
  return success();
}

//===----------------------------------------------------------------------===//
// Element-wise and normalisation layers
//===----------------------------------------------------------------------===//

LogicalResult ReluOp::computeResultTypes(SmallVectorImpl<Type> &results,
                                         bool refine) {
  auto in = rankedOf(getInput());
  results.assign(1, in ? Type(in) : Type());
  return success();
}

LogicalResult DropoutOp::computeResultTypes(SmallVectorImpl<Type> &results,
                                            bool refine) {
  double ratio = getRatio().convertToDouble();
  if (!(ratio >= 0.0 && ratio < 1.0))
    return emitLayerError(*this)
           << "dropout ratio must be in [0, 1), got " << ratio;
  auto in = rankedOf(getInput());
  results.assign(1, in ? Type(in) : Type());
  return success();
}

LogicalResult LRNOp::computeResultTypes(SmallVectorImpl<Type> &results,
                                        bool refine) {
  results.assign(1, Type());
  int64_t size = getSizeAttr().getInt();
  if (size < 1 || size % 2 == 0)
    return emitLayerError(*this)
           << "lrn size must be a positive odd number, got " << size;
  auto inOr = spatialInput(*this, getInput());
  if (failed(inOr))
    return failure();
  if (*inOr)
    results[0] = *inOr;
  return success();
}

LogicalResult BatchNormOp::computeResultTypes(SmallVectorImpl<Type> &results,
                                              bool refine) {
  results.assign(1, Type());
  if (getEps().convertToDouble() <= 0)
    return emitLayerError(*this) << "eps must be positive";
  double momentum = getMomentum().convertToDouble();
  if (!(momentum >= 0 && momentum <= 1))
    return emitLayerError(*this) << "momentum must be in [0, 1]";
  auto in = rankedOf(getInput());
  if (!in)
    return success();
  if (in.getRank() != 2 && in.getRank() != 4)
    return emitLayerError(*this)
           << "expects a [batch, C] or [batch, C, H, W] input, got "
           << shapeStr(in.getShape());
  int64_t c = in.getDimSize(1);
  // Named arrays: a range built from an initializer list inside the loop's
  // range expression would dangle (its backing array dies before the body).
  Value params[] = {getScale(), getShift(), getMean(), getVariance()};
  StringRef names[] = {"scale", "shift", "mean", "variance"};
  for (auto [v, name] : llvm::zip(params, names))
    if (failed(expectOperandShape(*this, v, {c}, name, refine)))
      return failure();
  results[0] = in;
  return success();
}

//===----------------------------------------------------------------------===//
// Pooling
//===----------------------------------------------------------------------===//

/// Shared by max and average pooling: the pooled map's shape.
static FailureOr<SmallVector<int64_t>>
poolShape(Operation *op, Value input, ArrayRef<int64_t> kernel,
          ArrayRef<int64_t> stride, ArrayRef<int64_t> pad, bool ceilMode) {
  if (failed(checkPairs(op, "kernel", kernel, 1)) ||
      failed(checkPairs(op, "stride", stride, 1)) ||
      failed(checkPairs(op, "pad", pad, 0)))
    return failure();
  for (int i = 0; i < 2; ++i)
    if (pad[i] >= kernel[i])
      return emitLayerError(op)
             << "pad " << pad[i] << " must be smaller than the kernel "
             << kernel[i];
  auto inOr = spatialInput(op, input);
  if (failed(inOr))
    return failure();
  RankedTensorType in = *inOr;
  if (!in)
    return SmallVector<int64_t>();
  std::string what = "pool window " + shapeStr(kernel);
  SmallVector<int64_t> shape{in.getDimSize(0), in.getDimSize(1)};
  for (int i = 0; i < 2; ++i) {
    auto n = windowOutput(op, what, in.getDimSize(2 + i), kernel[i], stride[i],
                          pad[i], ceilMode, in.getShape());
    if (failed(n))
      return failure();
    shape.push_back(*n);
  }
  return shape;
}

LogicalResult MaxPoolOp::computeResultTypes(SmallVectorImpl<Type> &results,
                                            bool refine) {
  results.assign(2, Type());
  auto shape = poolShape(*this, getInput(), getKernel(), getStride(), getPad(),
                         getCeilMode());
  if (failed(shape))
    return failure();
  // A switch is the maximum's position within the window, in one byte
  // (the trainer's u8 switches).
  auto kernel = getKernel();
  if (kernel.size() == 2 && kernel[0] * kernel[1] > 256)
    return emitLayerError(getOperation())
           << "max-pool window " << shapeStr(kernel) << " has "
           << kernel[0] * kernel[1]
           << " positions; its switches record one of at most 256 (a byte)";
  if (shape->empty())
    return success();
  results[0] = mapType(getContext(), *shape);
  results[1] = SwitchesType::get(getContext(), *shape);
  return success();
}

LogicalResult AvgPoolOp::computeResultTypes(SmallVectorImpl<Type> &results,
                                            bool refine) {
  results.assign(1, Type());
  auto shape = poolShape(*this, getInput(), getKernel(), getStride(), getPad(),
                         getCeilMode());
  if (failed(shape))
    return failure();
  if (!shape->empty())
    results[0] = mapType(getContext(), *shape);
  return success();
}

LogicalResult UnpoolOp::computeResultTypes(SmallVectorImpl<Type> &results,
                                           bool refine) {
  results.assign(1, Type());
  Operation *op = getOperation();
  auto kernel = getKernel(), stride = getStride(), pad = getPad();
  if (failed(checkPairs(op, "kernel", kernel, 1)) ||
      failed(checkPairs(op, "stride", stride, 1)) ||
      failed(checkPairs(op, "pad", pad, 0)) ||
      failed(checkPairs(op, "size", getSize(), 1)))
    return failure();
  bool hasSwitches = static_cast<bool>(getSwitches());
  if (hasSwitches == getPosition().has_value())
    return emitLayerError(op) << "needs either switches or a fixed position, "
                                 "not both or neither";
  if (auto position = getPosition()) {
    if (failed(checkPairs(op, "position", *position, 0)))
      return failure();
    for (int i = 0; i < 2; ++i)
      if ((*position)[i] >= kernel[i])
        return emitLayerError(op)
               << "position " << shapeStr(*position) << " lies outside the "
               << shapeStr(kernel) << " window";
  }
  auto inOr = spatialInput(op, getInput());
  if (failed(inOr))
    return failure();
  RankedTensorType in = *inOr;
  if (!in)
    return success();
  if (hasSwitches) {
    std::string other =
        switchWindowMismatch(getSwitches(), kernel, stride, pad);
    if (!other.empty())
      return emitLayerError(op) << "reads the switches of " << other;
    auto sw = cast<SwitchesType>(getSwitches().getType());
    if (sw.hasRank() &&
        (sw.getShape().size() != 4 ||
         !llvm::all_of(llvm::zip(sw.getShape(), in.getShape()), [](auto p) {
           return dimsCompatible(std::get<0>(p), std::get<1>(p));
         })))
      return emitLayerError(op)
             << "switches " << shapeStr(sw.getShape())
             << " do not match the unpooled input " << shapeStr(in.getShape());
  }
  // The map must be one that the same pool would bring to the input's size.
  auto size = getSize();
  for (int i = 0; i < 2; ++i) {
    int64_t n = in.getDimSize(2 + i);
    if (n == kDyn)
      continue;
    Checked span = Checked(size[i]) + Checked(2) * pad[i] - kernel[i];
    Checked floorOut = span / stride[i] + 1;
    Checked ceilOut = (span + stride[i] - 1) / stride[i] + 1;
    if (!floorOut.value || !ceilOut.value)
      return emitLayerError(op) << "size " << shapeStr(size) << " with pad "
                                << shapeStr(pad) << " overflows";
    bool empty = *span.value < 0;
    if (n != (empty ? 0 : *floorOut.value) && n != (empty ? 0 : *ceilOut.value))
      return emitLayerError(op)
             << "a " << shapeStr(size) << " map pooled by " << shapeStr(kernel)
             << "/" << stride[i] << " is not "
             << shapeStr(in.getShape().drop_front(2));
  }
  results[0] = mapType(getContext(),
                       {in.getDimSize(0), in.getDimSize(1), size[0], size[1]});
  return success();
}

//===----------------------------------------------------------------------===//
// Fully connected and reshaping
//===----------------------------------------------------------------------===//

LogicalResult FCOp::computeResultTypes(SmallVectorImpl<Type> &results,
                                       bool refine) {
  results.assign(1, Type());
  auto w = rankedOf(getWeight());
  if (!w)
    return success();
  if (w.getRank() != 2)
    return emitLayerError(*this)
           << "weight must be [out, in], got " << shapeStr(w.getShape());
  int64_t out = w.getDimSize(0);
  if (failed(expectBias(*this, getBias(), out, refine)))
    return failure();
  auto in = rankedOf(getInput());
  if (!in)
    return success();
  if (in.getRank() != 2)
    return emitLayerError(*this)
           << "expects a [batch, features] input, got "
           << shapeStr(in.getShape()) << " (flatten it first)";
  if (failed(expectOperandShape(*this, getWeight(), {out, in.getDimSize(1)},
                                "weight", refine)))
    return failure();
  results[0] = mapType(getContext(), {in.getDimSize(0), out});
  return success();
}

LogicalResult FlattenOp::computeResultTypes(SmallVectorImpl<Type> &results,
                                            bool refine) {
  results.assign(1, Type());
  auto in = rankedOf(getInput());
  if (!in)
    return success();
  if (in.getRank() < 2)
    return emitLayerError(*this)
           << "expects a batched input, got rank " << in.getRank();
  auto features = productOf(*this, in.getShape().drop_front());
  if (failed(features))
    return failure();
  results[0] = mapType(getContext(), {in.getDimSize(0), *features});
  return success();
}

LogicalResult ReshapeOp::computeResultTypes(SmallVectorImpl<Type> &results,
                                            bool refine) {
  results.assign(1, Type());
  for (int64_t d : getShape())
    if (d < 1)
      return emitLayerError(*this)
             << "shape " << shapeStr(getShape()) << " must be positive";
  auto want = productOf(*this, getShape());
  if (failed(want))
    return failure();
  auto in = rankedOf(getInput());
  if (!in)
    return success();
  if (in.getRank() < 2)
    return emitLayerError(*this) << "expects a batched input";
  auto have = productOf(*this, in.getShape().drop_front());
  if (failed(have))
    return failure();
  if (*have != kDyn && *have != *want)
    return emitLayerError(*this) << "cannot reshape " << *have
                                 << " features to " << shapeStr(getShape());
  SmallVector<int64_t> shape{in.getDimSize(0)};
  shape.append(getShape().begin(), getShape().end());
  results[0] = mapType(getContext(), shape);
  return success();
}

//===----------------------------------------------------------------------===//
// Losses
//===----------------------------------------------------------------------===//

static Type scalarType(MLIRContext *ctx) { return mapType(ctx, {}); }

LogicalResult
SoftmaxCrossEntropyOp::computeResultTypes(SmallVectorImpl<Type> &results,
                                          bool refine) {
  results.assign(1, scalarType(getContext()));
  auto logits = rankedOf(getLogits());
  if (logits && logits.getRank() != 2)
    return emitLayerError(*this) << "logits must be [batch, classes], got "
                                 << shapeStr(logits.getShape());
  auto labels = rankedOf(getLabels());
  if (labels && labels.getRank() != 1)
    return emitLayerError(*this)
           << "labels must be [batch], got " << shapeStr(labels.getShape());
  if (logits && labels &&
      !dimsCompatible(logits.getDimSize(0), labels.getDimSize(0)))
    return emitLayerError(*this) << "batch of logits and labels differ";
  return success();
}

LogicalResult
EuclideanLossOp::computeResultTypes(SmallVectorImpl<Type> &results,
                                    bool refine) {
  results.assign(1, scalarType(getContext()));
  auto a = rankedOf(getPrediction()), b = rankedOf(getTarget());
  if (!a || !b)
    return success();
  if (a.getRank() != b.getRank() ||
      !llvm::all_of(llvm::zip(a.getShape(), b.getShape()), [](auto p) {
        return dimsCompatible(std::get<0>(p), std::get<1>(p));
      }))
    return emitLayerError(*this)
           << "reconstruction " << shapeStr(a.getShape())
           << " does not match its target " << shapeStr(b.getShape());
  return success();
}

LogicalResult ObjectiveOp::computeResultTypes(SmallVectorImpl<Type> &results,
                                              bool refine) {
  results.assign(1, scalarType(getContext()));
  size_t n = getTerms().size();
  if (getWeights().size() != n || getNames().size() != n)
    return emitLayerError(*this)
           << "has " << n << " terms but " << getWeights().size()
           << " weights and " << getNames().size() << " names";
  if (n == 0)
    return emitLayerError(*this) << "needs at least one term";
  llvm::StringSet<> seen;
  for (Attribute name : getNames())
    if (!seen.insert(cast<StringAttr>(name).getValue()).second)
      return emitLayerError(*this)
             << "names the term '" << cast<StringAttr>(name).getValue()
             << "' twice";
  return success();
}

//===----------------------------------------------------------------------===//
// Macro-layers
//===----------------------------------------------------------------------===//

YieldOp MacroOp::getYield() {
  return cast<YieldOp>(getBody().front().getTerminator());
}

MaxPoolOp MacroOp::getPool() {
  for (Operation &op : getBody().front())
    if (auto pool = dyn_cast<MaxPoolOp>(op))
      return pool;
  return {};
}

static bool typesCompatible(Type a, Type b) {
  if (a == b)
    return true;
  auto ta = dyn_cast<TensorType>(a), tb = dyn_cast<TensorType>(b);
  if (ta && tb) {
    if (!ta.hasRank() || !tb.hasRank())
      return true;
    return ta.getRank() == tb.getRank() &&
           llvm::all_of(llvm::zip(ta.getShape(), tb.getShape()), [](auto p) {
             return dimsCompatible(std::get<0>(p), std::get<1>(p));
           });
  }
  auto sa = dyn_cast<SwitchesType>(a), sb = dyn_cast<SwitchesType>(b);
  return sa && sb && (!sa.hasRank() || !sb.hasRank());
}

LogicalResult MacroOp::verify() {
  Block &body = getBody().front();
  if (body.getNumArguments() != getInputs().size())
    return emitOpError("body takes ")
           << body.getNumArguments() << " arguments but the macro-layer has "
           << getInputs().size() << " inputs";
  for (auto [arg, input] : llvm::zip(body.getArguments(), getInputs()))
    if (!typesCompatible(arg.getType(), input.getType()))
      return emitOpError("body argument type ")
             << arg.getType() << " does not match input " << input.getType();
  YieldOp yield = getYield();
  if (yield.getValues().size() != getNumResults())
    return emitOpError("yields ")
           << yield.getValues().size() << " values but has " << getNumResults()
           << " results";
  for (auto [value, result] : llvm::zip(yield.getValues(), getResults()))
    if (!typesCompatible(value.getType(), result.getType()))
      return emitOpError("yields ")
             << value.getType() << " for a result of type " << result.getType();
  if (getName().empty())
    return emitOpError("needs a name");
  return success();
}

/// Called after the body has been inferred: arguments were set from the
/// inputs before, results come from the yield now.
LogicalResult MacroOp::inferShapes() {
  for (auto [value, result] : llvm::zip(getYield().getValues(), getResults()))
    result.setType(value.getType());
  return success();
}

//===----------------------------------------------------------------------===//
// Declarations
//===----------------------------------------------------------------------===//

/// Every entry of a name -> weight dictionary (`gamma`, `lr_mult`) is a
/// finite, non-negative float.
static LogicalResult verifyWeights(Operation *op, DictionaryAttr weights,
                                   StringRef what) {
  for (NamedAttribute entry : weights) {
    auto value = dyn_cast<FloatAttr>(entry.getValue());
    if (!value || !value.getValue().isFinite() || value.getValue().isNegative())
      return op->emitOpError() << what << " for '" << entry.getName().strref()
                               << "' must be a non-negative float";
  }
  return success();
}

LogicalResult AugmentOp::verify() {
  if (!llvm::is_contained(augmentVariants(), getVariant()))
    return emitOpError("unknown augmentation variant '") << getVariant() << "'";
  if (getLambda().convertToDouble() < 0)
    return emitOpError("lambda must not be negative");
  if (failed(verifyWeights(*this, getGamma(), "gamma")))
    return failure();
  if (double scale = getTargetScale().convertToDouble(); !(scale > 0))
    return emitOpError("target_scale must be positive");
  if (auto position = getPosition())
    if (position->size() != 2 || (*position)[0] < 0 || (*position)[1] < 0)
      return emitOpError("position must be two non-negative offsets");
  if (auto init = getDecoderInitAttr())
    if (!isa<GaussianInitAttr, ConstantInitAttr, FileInitAttr>(init))
      return emitOpError("decoder_init must be an initialiser attribute");
  return success();
}

LogicalResult PhaseOp::verify() {
  static const StringRef decoders[] = {"default", "layerwise", "stacked",
                                       "none"};
  static const StringRef policies[] = {"fixed", "step", "cosine"};
  if (!llvm::is_contained(decoders, getDecoder()))
    return emitOpError("unknown decoder topology '") << getDecoder() << "'";
  if (!llvm::is_contained(policies, getLrPolicy()))
    return emitOpError("unknown learning-rate policy '")
           << getLrPolicy() << "'";
  if (getBatchAttr().getInt() < 1 || getEpochsAttr().getInt() < 1 ||
      getStepsAttr().getInt() < 0 || getLrEveryAttr().getInt() < 1)
    return emitOpError(
        "batch, epochs and lr_every must be positive, steps non-negative");
  double momentum = getMomentum().convertToDouble();
  if (getLr().convertToDouble() < 0 || getDecay().convertToDouble() < 0 ||
      !(momentum >= 0 && momentum < 1))
    return emitOpError("needs lr >= 0, decay >= 0 and momentum in [0, 1)");
  if (auto lambda = getLambdaAttr(); lambda && lambda.getValueAsDouble() < 0)
    return emitOpError("lambda must not be negative");
  if (auto gamma = getGammaAttr();
      gamma && failed(verifyWeights(*this, gamma, "gamma")))
    return failure();
  if (auto lrMult = getLrMultAttr();
      lrMult && failed(verifyWeights(*this, lrMult, "lr_mult")))
    return failure();
  return success();
}

#define GET_OP_CLASSES
#include "dialect/NetOps.cpp.inc"

#include "dialect/NetInterfaces.cpp.inc"
