//===- PlanFuzzer.cpp - libFuzzer harness for the plan loader -------------===//
//
// Feeds arbitrary bytes to plan::parsePlan as the text of a plan.json and,
// when the plan is accepted, builds its ParamStore and one Executor per
// program on the reference backend: what netrun does before the first step.
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

#include <cstddef>
#include <cstdint>
#include <string>

namespace {

constexpr uint64_t kMaxBytes = uint64_t(64) << 20;

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
    for (const auto &entry : p.programs)
      exec::Executor executor(p, entry.first, params, backend);
  } catch (const plan::PlanError &) {
  } catch (const kernels::KernelError &) {
  } catch (const exec::MemoryError &) {
  } catch (const io::SafetensorsError &) {
  }
  return 0;
}
