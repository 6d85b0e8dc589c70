#!/usr/bin/env bash
# All the tests, under sanitizers:
# - build-asan: the whole tree with AddressSanitizer and UndefinedBehavior-
#   Sanitizer; the lit suite (compiler behaviour and every diagnostic), the
#   compiler's and the runtime's unit tests and the end-to-end training test
#   run on it, so any memory error or undefined behaviour fails the suite;
# - build-tsan: the runtime alone (-DNETC_BUILD_COMPILER=OFF, no oneDNN, as
#   on the GPU machine) with ThreadSanitizer: checks that no MLIR/LLVM header
#   reaches it, runs the runtime's tests and a short multi-phase training run
#   (the prefetch thread starts and stops at every phase) several times, and
#   a resumed run, so that a data race fails the suite.
# The main job (scripts/run.sh) builds the plain Release build in build/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build-asan -DNETC_SANITIZE=address,undefined

# Any report is an error: the sanitizers' options are built into every
# executable (cmake/SanitizerDefaults.c).

passed=0; failed=0
count() { passed=$((passed + $1)); failed=$((failed + $2)); }

echo "== lit (ASan+UBSan) =="
set +e
python3 /usr/lib/llvm-19/build/utils/lit/lit.py -sv build-asan/test | tee build-asan/lit.log
lit_rc=${PIPESTATUS[0]}
set -e
lp=$(grep -oP '^\s*Passed\s*:\s*\K[0-9]+' build-asan/lit.log || echo 0)
lf=$(grep -oP '^\s*Failed\s*:\s*\K[0-9]+' build-asan/lit.log || echo 0)
((lit_rc != 0 && lf == 0)) && lf=1
count "$lp" "$lf"

run_gtest() {
  local bin=$1 log; log=$(mktemp)
  echo "== $(basename "$bin") ($2) =="
  set +e; "$bin" | tee "$log"; local rc=${PIPESTATUS[0]}; set -e
  local p f
  p=$(grep -oP '^\[  PASSED  \] \K[0-9]+' "$log" || echo 0)
  f=$(grep -oP '^\[  FAILED  \] \K[0-9]+(?= test)' "$log" || echo 0)
  ((rc != 0 && f == 0)) && f=1
  count "$p" "$f"; rm -f "$log"
}
run_gtest build-asan/bin/netc-unit-tests ASan+UBSan
run_gtest build-asan/bin/netc-runtime-tests ASan+UBSan
# The GPU tests: without a CUDA device they say so in one line and pass.
if [[ -x build-asan/bin/netc-gpu-tests ]]; then
  run_gtest build-asan/bin/netc-gpu-tests ASan+UBSan
fi
# Their comparisons with the guarded backend as the GPU.
run_gtest build-asan/bin/netc-gpu-harness-tests ASan+UBSan

# A script that ends with a line "<tag>: N passed, M failed".
run_script() { # title tag script args...
  local title=$1 tag=$2; shift 2
  local log; log=$(mktemp)
  echo "== $title =="
  set +e; "$@" | tee "$log"; local rc=${PIPESTATUS[0]}; set -e
  local p f
  p=$(grep -oP "^$tag: \K[0-9]+(?= passed)" "$log" || echo 0)
  f=$(grep -oP "^$tag: [0-9]+ passed, \K[0-9]+" "$log" || echo 0)
  ((rc != 0 && f == 0)) && f=1
  count "$p" "$f"; rm -f "$log"
}
# The cuda kernels' code as the GPU gets it (sm_90 PTX): what no host walk
# of the same code can see, such as how wide its stores are.
run_script "cuda kernels' PTX" ptx test/cuda/ptx.sh
run_script "end to end: train on Fashion-MNIST (ASan+UBSan)" e2e \
  test/e2e/train.sh build-asan
run_script "netrun's command line (ASan+UBSan)" netrun \
  test/e2e/netrun.sh build-asan
run_script "the study script resumes (ASan+UBSan)" study \
  test/e2e/study.sh build-asan
run_script "data-parallel training over MPI (ASan+UBSan)" dp \
  test/e2e/data-parallel.sh build-asan
run_script "image folders: training and every bad input (ASan+UBSan)" images \
  test/e2e/images.sh build-asan
run_script "dense evaluation (ASan+UBSan)" dense \
  test/e2e/dense.sh build-asan
run_script "PyTorch interop: import, logits, export, bad input (ASan+UBSan)" interop \
  test/e2e/interop.sh build-asan
run_script "netrun under a GPU's rules: the guarded backend (ASan+UBSan)" guarded \
  test/e2e/guarded.sh build-asan

echo "== runtime without the compiler (TSan) =="
if [[ ! -f build-tsan/build.ninja ]]; then
  cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DNETC_BUILD_COMPILER=OFF -DNETC_WITH_ONEDNN=OFF -DNETC_SANITIZE=thread >/dev/null
fi
cmake --build build-tsan
# One check: it configures, builds, sees no LLVM/MLIR, and its tests pass
# (the compiler-generated plans are absent there, so those tests skip).
if grep -qE 'llvm-[0-9]+|/mlir' build-tsan/compile_commands.json; then
  echo "error: the runtime build sees an LLVM/MLIR include path"; count 0 1
else
  count 1 0
fi
run_gtest build-tsan/bin/netc-runtime-tests TSan

echo "== multi-phase training runs (TSan) =="
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
build-asan/bin/netc test/e2e/phases.net -o "$work/phases.trainer" >/dev/null
tsan_ok=1
for run in 1 2 3 4 5; do
  rm -f "$work"/phases.trainer/checkpoint.*
  if ! build-tsan/bin/netrun train "$work/phases.trainer" --seed "$run" \
      --log-every 100 >"$work/run.log" 2>&1; then
    cat "$work/run.log"; tsan_ok=0; break
  fi
done
# On the guarded backend: its queue and regions beside the prefetch thread.
if ((tsan_ok)); then
  rm -f "$work"/phases.trainer/checkpoint.*
  if ! build-tsan/bin/netrun train "$work/phases.trainer" --backend guarded \
      --log-every 100 >"$work/run.log" 2>&1; then
    cat "$work/run.log"; tsan_ok=0
  fi
fi
# Stopped mid-phase and resumed: a prefetch thread is abandoned and another
# one started on the restored state.
if ((tsan_ok)); then
  rm -f "$work"/phases.trainer/checkpoint.*
  if build-tsan/bin/netrun train "$work/phases.trainer" --max-steps 6 \
        >"$work/run.log" 2>&1 &&
     build-tsan/bin/netrun train "$work/phases.trainer" --resume \
        >>"$work/run.log" 2>&1; then
    grep -q "\[joint\] checkpoint" "$work/run.log" || { cat "$work/run.log"; tsan_ok=0; }
  else
    cat "$work/run.log"; tsan_ok=0
  fi
fi
if ((tsan_ok)); then
  echo "ok   6 four-phase runs (one guarded) and a resumed run, no ThreadSanitizer report"; count 1 0
else
  echo "FAIL multi-phase training under ThreadSanitizer"; count 0 1
fi

echo "tests: $passed passed, $failed failed"
((failed == 0))
