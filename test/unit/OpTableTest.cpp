//===- OpTableTest.cpp - The net dialect against runtime/plan/Ops.def -----===//
//
// The compiler and the runtime share one table of plan ops
// (runtime/plan/Ops.def). These tests fail when the two drift: a `net` op
// that net-emit-plan can write as a kernel has no runtime entry (or the
// reverse), an entry's result count differs from the op's, or the memory
// planner's in-place and view answers are not the table's. The compiler
// includes only the .def, never the runtime library.
//
//===----------------------------------------------------------------------===//

#include "dialect/NetDialect.h"
#include "passes/Passes.h"

#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/OperationSupport.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>

using namespace mlir;

namespace {

/// One row of runtime/plan/Ops.def.
struct Entry {
  int outs;
  netc::OpMemory memory;
};

/// Ops.def as the runtime reads it, by plan op name.
std::map<std::string, Entry> opTable() {
  std::map<std::string, Entry> table;
#define NETC_OP(ENUM, NAME, MIN_IN, MAX_IN, OUTS, MEMORY, ATTRS)               \
  table[NAME] = {OUTS, netc::OpMemory::MEMORY};
#include "runtime/plan/Ops.def"
  return table;
}

/// Whether net-emit-plan writes an op of this name as a kernel: every `net`
/// op of a program's body without regions but a parameter read. Module-level
/// declarations (`net.param`, `net.phase`, ...) and the macro-layer's
/// terminator never reach a program.
bool isKernel(RegisteredOperationName name) {
  return name.hasTrait<OpTrait::ZeroRegions>() &&
         !name.hasTrait<OpTrait::IsTerminator>() &&
         !name.hasTrait<OpTrait::HasParent<ModuleOp>::Impl>() &&
         name.getStringRef() != netc::net::ParamGetOp::getOperationName();
}

/// The op's result count as its traits state it; -1 when variadic.
int resultCount(RegisteredOperationName name) {
  if (name.hasTrait<OpTrait::ZeroResults>())
    return 0;
  if (name.hasTrait<OpTrait::OneResult>())
    return 1;
  if (name.hasTrait<OpTrait::NResults<2>::Impl>())
    return 2;
  if (name.hasTrait<OpTrait::NResults<3>::Impl>())
    return 3;
  return -1;
}

/// The plan op names of the dialect's kernels, with their ops.
std::map<std::string, RegisteredOperationName> kernels(MLIRContext &context) {
  context.loadDialect<netc::net::NetDialect>();
  std::map<std::string, RegisteredOperationName> ops;
  for (RegisteredOperationName name : context.getRegisteredOperations())
    if (name.getDialectNamespace() ==
            netc::net::NetDialect::getDialectNamespace() &&
        isKernel(name))
      ops.emplace(name.stripDialect().str(), name);
  return ops;
}

TEST(OpTable, EveryKernelHasARuntimeEntry) {
  MLIRContext context;
  auto ops = kernels(context);
  auto table = opTable();
  // Guard against a filter that lets nothing through.
  ASSERT_GT(ops.size(), 20u);
  for (auto &[name, op] : ops)
    EXPECT_TRUE(table.count(name))
        << "net." << name << " can be written as a kernel, but "
        << "runtime/plan/Ops.def has no '" << name << "' entry";
}

TEST(OpTable, EveryRuntimeEntryIsAKernel) {
  MLIRContext context;
  auto ops = kernels(context);
  for (auto &[name, entry] : opTable())
    EXPECT_TRUE(ops.count(name))
        << "runtime/plan/Ops.def lists '" << name
        << "', which is not a kernel op of the net dialect";
}

TEST(OpTable, ResultCountsAgree) {
  MLIRContext context;
  auto ops = kernels(context);
  for (auto &[name, entry] : opTable()) {
    auto it = ops.find(name);
    if (it == ops.end())
      continue; // reported above
    EXPECT_EQ(resultCount(it->second), entry.outs)
        << "net." << name << " and its Ops.def entry disagree on the results";
  }
}

TEST(OpTable, PlannerUsesTheTable) {
  for (auto &[name, entry] : opTable()) {
    std::optional<netc::OpMemory> memory = netc::planOpMemory(name);
    ASSERT_TRUE(memory) << "net-plan-memory does not know '" << name << "'";
    EXPECT_EQ(int(*memory), int(entry.memory))
        << "net-plan-memory's in-place/view answer for '" << name
        << "' is not Ops.def's";
  }
  EXPECT_FALSE(netc::planOpMemory("param_get"));
  EXPECT_FALSE(netc::planOpMemory("no_such_op"));
  // What the planner has always done: views and in-place element-wise ops.
  EXPECT_EQ(netc::planOpMemory("reshape"), netc::OpMemory::View);
  EXPECT_EQ(netc::planOpMemory("flatten"), netc::OpMemory::View);
  for (const char *op :
       {"relu", "dropout", "add", "scale", "relu_grad", "dropout_grad"})
    EXPECT_EQ(netc::planOpMemory(op), netc::OpMemory::InPlace) << op;
  EXPECT_EQ(netc::planOpMemory("conv2d"), netc::OpMemory::Plain);
}

} // namespace
