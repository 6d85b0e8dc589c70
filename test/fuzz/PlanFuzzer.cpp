//===- PlanFuzzer.cpp - libFuzzer harness for the plan loader -------------===//
//
// Feeds arbitrary bytes to plan::parsePlan as the text of a plan.json and,
// when the plan is accepted, builds its ParamStore and one Executor per
// program on the reference backend: what netrun does before the first step.
// Then it runs each program whose work is small (workBound) once at batch 1
// and, when that is small too, once at its planned batch: the kernels'
// loops over what the loader and the executor accepted (ASan finds any
// access outside a value).
// A plan the runtime cannot run must be refused with one of the documented
// exceptions:
//   plan::PlanError          (parsePlan, Executor: geometry, attributes)
//   kernels::KernelError     (kernel shape checks)
//   exec::MemoryError        (an arena or a parameter larger than memory)
//   io::SafetensorsError     (a `file` initialiser)
// Any other exception escapes the harness and aborts (a finding), as does a
// crash, a sanitizer report, a hang (-timeout) or a blow-up (-rss_limit_mb).
//
// Memory: a plan whose parameters (value and momentum) and arenas need more
// than kMaxBytes in all is parsed and validated but not instantiated, so that
// a fuzzed `arena_bytes` or parameter shape cannot make every input cost
// hundreds of megabytes (the refusal above available memory is tested by the
// unit tests instead).
//
// Work: the runs of one input share a budget of kMaxWork multiply-adds; a
// run whose upper bound (workBound) exceeds what is left is not made, so
// that a fuzzed shape cannot make a unit slow (libFuzzer's -timeout would
// report it as a finding). With 4M, the slowest unit of a 15-minute run
// took under a second (test/fuzz/RESULTS.md, plan run 5).
//
// The plan has no trainer directory (""), so a `file` initialiser reads
// init.path; run.sh runs the fuzzer from an empty directory, so relative
// paths find nothing. Nothing here writes files.
//
//===----------------------------------------------------------------------===//

#include "runtime/exec/Executor.h"
#include "runtime/exec/ParamStore.h"
#include "runtime/io/Safetensors.h"
#include "runtime/kernels/Reference.h"
#include "runtime/plan/Plan.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

namespace {

constexpr uint64_t kMaxBytes = uint64_t(64) << 20;
constexpr uint64_t kMaxWork = uint64_t(4) << 20;

uint64_t saturatingMul(uint64_t a, uint64_t b) {
  uint64_t r;
  return __builtin_mul_overflow(a, b, &r) ? UINT64_MAX : r;
}

uint64_t elements(const netc::plan::Program &prog, int64_t id, int64_t n) {
  auto count = netc::plan::checkedProduct(prog.value(id).shape, n);
  return count && *count >= 0 ? uint64_t(*count) : UINT64_MAX;
}

/// An upper bound on the multiply-adds of one run of `prog` at batch n:
/// per kernel, its largest operand's elements times a factor. A convolution
/// or fc kernel (forward or either gradient) does at most that times its
/// weight's elements over the smaller of the weight's first two dimensions
/// (its fan-in for each output, or fan-out for each input); a pooling,
/// unpooling or LRN kernel at most its window's positions per element; the
/// rest a few passes.
uint64_t workBound(const netc::plan::Program &prog, int64_t n) {
  using netc::plan::Op;
  uint64_t total = 0;
  for (const netc::plan::Kernel &k : prog.kernels) {
    uint64_t largest = 0;
    for (const std::vector<int64_t> *ids : {&k.in, &k.out})
      for (int64_t id : *ids)
        largest = std::max(largest, elements(prog, id, n));
    uint64_t factor = 4;
    int64_t weight = -1;
    switch (k.op) {
    case Op::Conv2D:
    case Op::Deconv2D:
    case Op::FC:
    case Op::Conv2DGradInput:
    case Op::Deconv2DGradInput:
    case Op::FCGradInput:
      weight = k.in.size() > 1 ? k.in[1] : -1;
      break;
    case Op::Conv2DGradWeight:
    case Op::Deconv2DGradWeight:
    case Op::FCGradWeight:
      weight = k.out.empty() ? -1 : k.out[0];
      break;
    case Op::MaxPool:
    case Op::AvgPool:
    case Op::Unpool:
    case Op::UnpoolGrad:
    case Op::AvgPoolGrad:
      // The executor has checked the window against the input: at most
      // the input's elements.
      factor = 4 * largest;
      if (k.attrs.is_object() && k.attrs.contains("kernel"))
        try {
          std::vector<int64_t> w = k.ints("kernel", 2);
          factor = saturatingMul(
              4, saturatingMul(uint64_t(std::max<int64_t>(w[0], 1)),
                               uint64_t(std::max<int64_t>(w[1], 1))));
        } catch (const netc::plan::PlanError &) {
        }
      break;
    case Op::LRN:
    case Op::LRNGrad:
      factor = 4 * largest;
      if (k.attrs.is_object() && k.attrs.contains("size"))
        try {
          factor =
              saturatingMul(4, uint64_t(std::max<int64_t>(k.i64("size"), 1)));
        } catch (const netc::plan::PlanError &) {
        }
      break;
    default:
      break;
    }
    if (weight >= 0) {
      const std::vector<int64_t> &shape = prog.value(weight).shape;
      const int64_t fan =
          shape.size() >= 2 ? std::max<int64_t>(std::min(shape[0], shape[1]), 1)
                            : 1;
      factor = elements(prog, weight, n) / uint64_t(fan) + 1;
    }
    uint64_t work = saturatingMul(largest, factor);
    if (__builtin_add_overflow(total, work, &total))
      return UINT64_MAX;
  }
  return total;
}

/// Bytes the ParamStore and every Executor of `p` would allocate, saturated
/// at UINT64_MAX.
uint64_t instantiationBytes(const netc::plan::Plan &p) {
  uint64_t total = 0;
  auto add = [&](uint64_t bytes) {
    if (__builtin_add_overflow(total, bytes, &total))
      total = UINT64_MAX;
  };
  for (const netc::plan::ParamSpec &spec : p.params) {
    auto bytes = netc::plan::checkedProduct(spec.shape, 1, 4 * 2);
    add(bytes && *bytes >= 0 ? uint64_t(*bytes) : UINT64_MAX);
  }
  for (const auto &entry : p.programs)
    add(entry.second.arenaBytes >= 0 ? uint64_t(entry.second.arenaBytes)
                                     : UINT64_MAX);
  return total;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  using namespace netc;
  std::string text(reinterpret_cast<const char *>(data), size);
  plan::Plan p;
  try {
    p = plan::parsePlan(text, "fuzz/plan.json", "");
  } catch (const plan::PlanError &) {
    return 0;
  }
  if (instantiationBytes(p) > kMaxBytes)
    return 0;
  try {
    exec::ParamStore params(p, /*seed=*/1);
    exec::ReferenceBackend backend;
    exec::StepContext ctx;
    ctx.lr = 0.01;
    ctx.momentum = 0.9;
    ctx.decay = 5e-4;
    uint64_t budget = kMaxWork;
    for (const auto &entry : p.programs) {
      exec::Executor executor(p, entry.first, params, backend);
      const plan::Program &prog = entry.second;
      for (int64_t n : {int64_t(1), prog.batch}) {
        const uint64_t work = workBound(prog, n);
        if (n < 1 || n > prog.batch || work > budget)
          break;
        budget -= work;
        executor.run(n, ctx);
        if (prog.loss)
          (void)executor.scalar(*prog.loss);
        if (n == prog.batch)
          break;
      }
    }
  } catch (const plan::PlanError &) {
  } catch (const kernels::KernelError &) {
  } catch (const exec::MemoryError &) {
  } catch (const io::SafetensorsError &) {
  }
  return 0;
}
