//===- PlanMemory.cpp - net-plan-memory: arena offsets by liveness --------===//
//
// 1. Number the ops of a straight-line function; a value lives from its
//    definition to its last use (outputs: returned values and loss terms, to
//    the end).
// 2. Group values into buffers: a view's result (runtime/plan/Ops.def:
//    reshape, flatten) joins its input's buffer; an in-place op's result
//    (relu, add, ...) joins its first operand's buffer when that operand
//    dies there and is stored alike. Parameters need no arena bytes; every
//    other value takes its real bytes (net-precision's dtype).
// 3. Place buffers largest first at the lowest offset that does not overlap
//    a placed buffer whose lifetime intersects; the arena is the highest end.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/StringSwitch.h"
#include "llvm/Support/MathExtras.h"

namespace netc {
#define GEN_PASS_DEF_PLANMEMORY
#include "passes/Passes.h.inc"
} // namespace netc

using namespace mlir;
using namespace netc;
using namespace netc::net;

namespace {

constexpr int64_t kAlign = 64;

/// `n` rounded up to the alignment; nullopt on overflow.
std::optional<int64_t> alignUp(int64_t n) {
  int64_t padded;
  if (llvm::AddOverflow(n, kAlign - 1, padded))
    return std::nullopt;
  return padded / kAlign * kAlign;
}

/// How `op`'s outputs may share its operands' bytes: the runtime's answer
/// for the kernel of that name; Plain for what is not a kernel.
OpMemory memoryOf(Operation &op) {
  if (!isa<NetDialect>(op.getDialect()))
    return OpMemory::Plain;
  return planOpMemory(op.getName().stripDialect()).value_or(OpMemory::Plain);
}

struct Buffer {
  int64_t bytes = 0;
  int64_t size = 0;           ///< Bytes rounded up to the alignment.
  int64_t start = 0, end = 0; ///< Live range, in op indices (inclusive).
  int64_t offset = -1;
};

} // namespace

std::optional<OpMemory> netc::planOpMemory(StringRef planOp) {
  // A plan op's name is its net op's name without `net.`.
  return llvm::StringSwitch<std::optional<OpMemory>>(planOp)
#define NETC_OP(ENUM, NAME, MIN_IN, MAX_IN, OUTS, MEMORY, ATTRS)               \
  .Case(NAME, OpMemory::MEMORY)
#include "runtime/plan/Ops.def"
      .Default(std::nullopt);
}

std::optional<int64_t> netc::valueBytes(Type type, int64_t batch,
                                        int64_t elementBytes) {
  ArrayRef<int64_t> shape;
  if (auto t = dyn_cast<RankedTensorType>(type))
    shape = t.getShape();
  else if (auto s = dyn_cast<SwitchesType>(type); s && s.hasRank())
    shape = s.getShape();
  else
    return std::nullopt;
  int64_t n = elementBytes;
  for (int64_t d : shape)
    if (llvm::MulOverflow(n, ShapedType::isDynamic(d) ? batch : d, n))
      return std::nullopt;
  return n;
}

std::optional<int64_t> netc::valueBytes(Value value, int64_t batch) {
  return valueBytes(value.getType(), batch, valueFormat(value).elementBytes());
}

/// Plans `func` for `batch`; returns the arena size. The arena is never
/// larger than the sum of its buffers, so once that sum is known to fit in
/// int64_t, no offset computed below can overflow.
static FailureOr<int64_t> planFunction(func::FuncOp func, int64_t batch) {
  Block &block = func.getBody().front();
  llvm::DenseMap<Operation *, int64_t> index;
  int64_t n = 0;
  for (Operation &op : block)
    index[&op] = n++;

  // Returned values and the objective's terms are the program's outputs:
  // the runtime reads them after the last kernel.
  auto lastUse = [&](Value v) {
    int64_t last = v.getDefiningOp() ? index[v.getDefiningOp()] : -1;
    for (Operation *user : v.getUsers())
      last = std::max(last,
                      isa<func::ReturnOp, ObjectiveOp>(user) ? n : index[user]);
    return last;
  };

  SmallVector<Buffer> buffers;
  llvm::DenseMap<Value, int> bufferOf;
  int64_t total = 0;
  auto newBuffer = [&](Value v, int64_t start) -> LogicalResult {
    Operation *at = v.getDefiningOp() ? v.getDefiningOp() : func;
    auto switches = dyn_cast<SwitchesType>(v.getType());
    if (!isa<RankedTensorType>(v.getType()) &&
        !(switches && switches.hasRank()))
      return at->emitOpError("net-plan-memory needs ranked values, got ")
             << v.getType() << "; run net-infer-shapes first";
    std::optional<int64_t> bytes = valueBytes(v, batch);
    std::optional<int64_t> size = bytes ? alignUp(*bytes) : std::nullopt;
    if (!size || llvm::AddOverflow(total, *size, total))
      return at->emitOpError("at batch ")
             << batch << " the arena would need more than 2^63 bytes (a "
             << v.getType() << " value)";
    bufferOf[v] = buffers.size();
    buffers.push_back({*bytes, *size, start, lastUse(v), -1});
    return success();
  };
  // A bucket's all-reduced gradients lie back to back in one buffer (each
  // at its aligned offset in it), which the runtime reduces in one call.
  llvm::DenseMap<Value, int64_t> offsetInBuffer;
  auto newBucket = [&](AllReduceMeanOp op) -> LogicalResult {
    int64_t size = 0, end = -1;
    for (Value v : op.getResults()) {
      std::optional<int64_t> bytes = valueBytes(v, batch);
      std::optional<int64_t> aligned = bytes ? alignUp(*bytes) : std::nullopt;
      if (!aligned || llvm::AddOverflow(size, *aligned, size))
        return op.emitOpError("bucket of more than 2^63 bytes");
      offsetInBuffer[v] = size - *aligned;
      end = std::max(end, lastUse(v));
    }
    if (llvm::AddOverflow(total, size, total))
      return op.emitOpError("at batch ")
             << batch << " the arena would need more than 2^63 bytes";
    for (Value v : op.getResults())
      bufferOf[v] = buffers.size();
    buffers.push_back({size, size, index[op], end, -1});
    return success();
  };
  auto join = [&](Value v, Value into) {
    int id = bufferOf[into];
    bufferOf[v] = id;
    offsetInBuffer[v] = offsetInBuffer.lookup(into);
    buffers[id].end = std::max(buffers[id].end, lastUse(v));
  };

  for (BlockArgument arg : block.getArguments())
    if (failed(newBuffer(arg, -1)))
      return failure();
  for (Operation &op : block) {
    if (isa<ParamGetOp>(op) || op.getNumResults() == 0)
      continue;
    if (auto bucket = dyn_cast<AllReduceMeanOp>(op)) {
      if (failed(newBucket(bucket)))
        return failure();
      continue;
    }
    Value first = op.getNumOperands() ? op.getOperand(0) : Value();
    bool firstInArena = first && bufferOf.count(first);
    OpMemory memory = memoryOf(op);
    if (memory == OpMemory::View && firstInArena) {
      // The runtime reads a view's bytes as its input's: the same dtype,
      // and in the N, C, H, W order that a reshape means.
      ValueFormat in = valueFormat(first), out = valueFormat(op.getResult(0));
      if (in.dtype != out.dtype || in.nhwc || out.nhwc)
        return op.emitOpError("is a view, but its operand is stored as ")
               << in.dtype << (in.nhwc ? " nhwc" : "") << " and its result as "
               << out.dtype << (out.nhwc ? " nhwc" : "")
               << "; a view needs one dtype and no nhwc map";
      join(op.getResult(0), first);
      continue;
    }
    if (memory == OpMemory::InPlace && firstInArena &&
        buffers[bufferOf[first]].end == index[&op] &&
        first.getType() == op.getResult(0).getType() &&
        valueFormat(first) == valueFormat(op.getResult(0))) {
      join(op.getResult(0), first);
      continue;
    }
    for (Value result : op.getResults())
      if (failed(newBuffer(result, index[&op])))
        return failure();
  }

  // Largest first, lowest offset that fits beside every overlapping buffer.
  SmallVector<int> order(buffers.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  llvm::stable_sort(
      order, [&](int a, int b) { return buffers[a].bytes > buffers[b].bytes; });
  // `placed` is kept in offset order, so the buffers that overlap in time
  // are met lowest offset first and the first gap that fits ends the scan.
  int64_t arena = 0;
  SmallVector<int> placed;
  for (int id : order) {
    Buffer &buf = buffers[id];
    int64_t offset = 0;
    for (int other : placed) {
      const Buffer &o = buffers[other];
      if (o.start > buf.end || buf.start > o.end)
        continue;
      if (offset + buf.size <= o.offset)
        break;
      offset = std::max(offset, o.offset + o.size);
    }
    buf.offset = offset;
    arena = std::max(arena, offset + buf.size);
    placed.insert(llvm::upper_bound(placed, offset,
                                    [&](int64_t at, int other) {
                                      return at < buffers[other].offset;
                                    }),
                  id);
  }

  Builder b(func.getContext());
  SmallVector<int64_t> argOffsets;
  for (BlockArgument arg : block.getArguments())
    argOffsets.push_back(buffers[bufferOf[arg]].offset);
  func->setAttr("net.arg_offsets", b.getDenseI64ArrayAttr(argOffsets));
  for (Operation &op : block) {
    if (isa<ParamGetOp>(op) || op.getNumResults() == 0)
      continue;
    SmallVector<int64_t> offsets;
    for (Value result : op.getResults())
      offsets.push_back(buffers[bufferOf[result]].offset +
                        offsetInBuffer.lookup(result));
    op.setAttr("net.offsets", b.getDenseI64ArrayAttr(offsets));
  }
  func->setAttr("net.arena_bytes", b.getI64IntegerAttr(arena));
  func->setAttr("net.batch", b.getI64IntegerAttr(batch));
  return arena;
}

namespace {

struct PlanMemoryPass : netc::impl::PlanMemoryBase<PlanMemoryPass> {
  using PlanMemoryBase::PlanMemoryBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    // netc checks its --batch; netc-opt's option arrives as it was typed.
    if (batch < 0 || batch > (int64_t(1) << 20)) {
      module.emitError() << "net-plan-memory: batch " << int64_t(batch)
                         << " is not in [1, 1048576] (or 0: each phase's)";
      return signalPassFailure();
    }
    SymbolTable symbols(module);
    int64_t largest = 1;
    for (PhaseOp phase : module.getOps<PhaseOp>())
      largest = std::max<int64_t>(largest, phase.getBatchAttr().getInt());
    for (auto func : module.getOps<func::FuncOp>()) {
      int64_t b = 0;
      FailureOr<PhaseOp> phase = stepPhase(func, symbols);
      if (failed(phase))
        return signalPassFailure();
      if (*phase) {
        b = phase->getBatchAttr().getInt();
      } else if (auto own =
                     func->getAttrOfType<IntegerAttr>("net.eval_batch")) {
        b = own.getInt(); // a dense evaluation program
      } else if (func->hasAttr("net.eval") ||
                 func->hasAttr("net.reconstruct_from"))
        b = largest;
      else
        continue;
      if (func.getBody().front().getOps<MacroOp>().begin() !=
          func.getBody().front().getOps<MacroOp>().end()) {
        func.emitError("net-plan-memory needs straight-line functions; run "
                       "net-autodiff first");
        return signalPassFailure();
      }
      if (failed(planFunction(func, batch > 0 ? int64_t(batch) : b)))
        return signalPassFailure();
    }
  }
};

} // namespace
