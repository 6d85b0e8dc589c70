#!/usr/bin/env bash
# All the tests: set up and build, run the lit suite (compiler behaviour and
# every diagnostic), the compiler's unit tests, the end-to-end training test,
# then build the runtime alone (-DNETC_BUILD_COMPILER=OFF), check that no
# MLIR/LLVM header reaches it, and run the runtime's tests from that build.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build

passed=0; failed=0
count() { passed=$((passed + $1)); failed=$((failed + $2)); }

echo "== lit =="
set +e
python3 /usr/lib/llvm-19/build/utils/lit/lit.py -sv build/test | tee build/lit.log
lit_rc=${PIPESTATUS[0]}
set -e
lp=$(grep -oP '^\s*Passed\s*:\s*\K[0-9]+' build/lit.log || echo 0)
lf=$(grep -oP '^\s*Failed\s*:\s*\K[0-9]+' build/lit.log || echo 0)
((lit_rc != 0 && lf == 0)) && lf=1
count "$lp" "$lf"

run_gtest() {
  local bin=$1 log; log=$(mktemp)
  echo "== $(basename "$bin") =="
  set +e; "$bin" | tee "$log"; local rc=${PIPESTATUS[0]}; set -e
  local p f
  p=$(grep -oP '^\[  PASSED  \] \K[0-9]+' "$log" || echo 0)
  f=$(grep -oP '^\[  FAILED  \] \K[0-9]+(?= test)' "$log" || echo 0)
  ((rc != 0 && f == 0)) && f=1
  count "$p" "$f"; rm -f "$log"
}
run_gtest build/bin/netc-unit-tests
run_gtest build/bin/netc-runtime-tests

echo "== end to end: train on Fashion-MNIST =="
set +e
test/e2e/train.sh build | tee build/e2e.log
e2e_rc=${PIPESTATUS[0]}
set -e
ep=$(grep -oP '^e2e: \K[0-9]+(?= passed)' build/e2e.log || echo 0)
ef=$(grep -oP '^e2e: [0-9]+ passed, \K[0-9]+' build/e2e.log || echo 0)
((e2e_rc != 0 && ef == 0)) && ef=1
count "$ep" "$ef"

echo "== runtime without the compiler =="
cmake -S . -B build-runtime -G Ninja -DCMAKE_BUILD_TYPE=Release -DNETC_BUILD_COMPILER=OFF >/dev/null
cmake --build build-runtime
# One check: it configures, builds, sees no LLVM/MLIR, and its tests pass
# (the compiler-generated plans are absent there, so those tests skip).
if grep -qE 'llvm-[0-9]+|/mlir' build-runtime/compile_commands.json; then
  echo "error: the runtime build sees an LLVM/MLIR include path"; count 0 1
elif build-runtime/bin/netc-runtime-tests >build/runtime-only.log 2>&1; then
  echo "runtime-only build: $(grep -E '^\[  PASSED  \]' build/runtime-only.log)"; count 1 0
else
  cat build/runtime-only.log; count 0 1
fi

echo "tests: $passed passed, $failed failed"
((failed == 0))
