#!/usr/bin/env bash
# The GPU machine's one script (issue 7, item 5):
#   bench/gpu-check.sh OUTDIR
# builds the runtime there (no compiler: no MLIR, no oneDNN; CUDA on, every
# core), runs netc-runtime-tests (CPU, seconds), netc-gpu-tests (every cuda
# kernel and op against the reference backend, the every-layer step of the
# seven variants in fp32 and in bf16 against the reference's bf16
# emulation, the bf16 step with LRN, whole-pack steps (packs.net) in bf16
# and tf32, CUDA graphs and the fusions against runs without them; then, in
# a process of their own, steps through cuDNN's graph API)
# while the parity check runs: 20 training steps of the reference (CPU)
# against the cuda backend on Fashion-MNIST from the same initial
# parameters and data, fp32 (losses within 1e-4 relative) and bf16 (the
# reference's emulation; 2e-2), NCCL on one rank, and graphs off against
# on; the example's whole schedule on 40 images, below its batch (steps
# within 1e-4, each phase's evaluation within an image); `netrun eval` of
# one checkpoint on both backends (fp32 within an image of 512, bf16
# within 10) and `netrun reconstruct`'s PSNR (within 0.01 dB). Then `netrun bench` on the benchmark trainers (VGG-16 and the 32x32
# net, classifier and SWWAE-all, fp32/tf32/bf16: 12 cells), the PyTorch
# peer (bench/peer_gpu.py) where torch imports, eager, then Nsight Compute
# on the own kernels furthest below memory speed, then with the time left
# the peer through torch.compile, and the ratios. Every stage
# logs to <stage>.log and has its own timeout, all within a deadline of
# 9m20s, so one hang cannot eat the budget; OUTDIR/summary.txt lists each
# stage's result and the benchmark ratios, and OUTDIR/logs.tar.gz holds
# the logs.
#
# Stage caps (seconds; each also stops at the deadline, 560 s after the
# start): build 240, runtime-tests 60, gpu-tests 150 (in the background,
# beside parity 120), bench 150 (the 12 cells: a cell at most 30 s for the
# 32x32 net, 50 s for VGG-16), peer 280 (VGG-16 first, bf16 first: on the
# H200 its 12 cells took about 290 s, over two calls), bench-ab 180 (16
# cells, in the order of what they can still teach: the bf16 VGG-16
# classifier with the relu_grad that sums the bias gradient (in the default
# fusions on f32 maps only; 40 s), the tf32 one without it (40 s), the
# tf32 one with every convolution workspace shared (noarenaws, 40 s), the
# classifier on the other convolution API than
# the default's (bf16 and tf32 on the legacy calls, fp32 on the graph API;
# 60 s each), then at most 40 s each: the bf16 SWWAE-all cell with that
# relu_grad, the two bf16 VGG-16 cells without the relu_grad that does the
# max-pool's backward, the bf16 classifier with the forward convolutions'
# bias and relu in the plan (graph-fused, 60 s), the tf32 classifier with
# NCHW maps, a bf16 cell of each net without channel padding, two VGG-16
# cells
# without the fusions, and the bf16
# SWWAE-all one without the kernels' 16-byte packs; a first
# run leaves most of them to the warm rerun below; they pace themselves,
# ab_cell: one that would start with under 20 s of the stage left is
# skipped, one the stage's end cuts short is noted, and neither fails the
# check, which is the 12 cells and the peer), ncu 45 (Nsight Compute
# on the own kernels furthest from memory speed), peer-profile 60 (the
# peer's VGG-16 classifier in bf16 and tf32 under torch.profiler: its
# kernels by kind), peer-compile 240 (it gets what is left). A failed one of the 12 cells takes up to its limit, a
# 40 s diagnosis (the first failure of a stage) and its limit again (the
# retry without the untested features). The eager peer comes right after
# the 12 cells, as the ratios need it; a warm rerun with
# GPU_CHECK_SKIP="runtime-tests gpu-tests parity bench peer" runs the A/B
# cells again from the first (their plans from the kept algorithm file),
# ncu and the compiled peer, its ratios against the first call's cells and
# peer (their logs kept in the build folder, which a warm machine keeps).
# Worst case:
# every stage runs into the deadline, which ends the last one by 560 + 5 s
# (timeout's kill grace); the ratios and the summary take a second more. On
# the H200 (2026-11-30) the build took 45 s, the tests and parity 60, the
# bench 114 (12 cells and three A/B cells); on 2026-12-01, with the cells'
# algorithms seeded from the call before (bench/gpu-trainers.sh), the
# build 53 s, the GPU tests 18 and the 12 cells 60.
#
# How a session runs it:
#   1. On a development machine (it has the compiler), after building netc:
#        bench/gpu-trainers.sh
#      which writes bench/gpu-trainers/ (untracked and not git-ignored, so
#      the device tool's copy of the working tree includes it; no `carry`).
#   2. With the device tool:
#        run  command: bench/gpu-check.sh $OUT/gpu   timeout_s: 600
#      (the script stops itself by 9m20s; the machine's start took about
#      35 s, so 600 s leaves about 4 minutes of a 15-minute device budget
#      to rerun a part while the machine is warm), then read $OUT/gpu/summary.txt
#      and, for the stage logs, unpack $OUT/gpu/logs.tar.gz (the device tool
#      returns at most 8 files, so the logs come packed).
#   Stages can be skipped to rerun only some: GPU_CHECK_SKIP="peer
#   runtime-tests" (stages: build runtime-tests gpu-tests parity bench peer
#   bench-ab ncu peer-profile peer-compile); GPU_CHECK_BUILD_DIR names the
#   build folder
#   (default build-gpu). With the machine still warm (it goes back after
#   30 s idle), a second run into another folder can measure what the first
#   had no time for, e.g. the A/B cells and the compiled peer:
#   GPU_CHECK_SKIP="runtime-tests gpu-tests parity bench peer"; GPU_CHECK_DEADLINE (seconds, default 560)
#   fits it to the device time left. A run stopped by a signal packs what
#   it has and says so in the summary.
#
# Exit status: 0 when every stage that ran passed (a missing torch is
# reported, not failed), 1 otherwise.
#
# The stages' functions run through `bash -c` (see stage), which shellcheck
# cannot follow:
# shellcheck disable=SC2317
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
RESULT=${1:?usage: bench/gpu-check.sh OUTDIR}
mkdir -p "$RESULT"
RESULT=$(cd "$RESULT" && pwd)
# The device tool brings back at most 8 files from its $OUT: OUTDIR only
# ever holds summary.txt and logs.tar.gz (every stage's log, the parity
# runs' logs, metrics and algorithm files; no parameters). The logs are
# written outside it and packed after every stage and at the end, so that
# however the script ends, OUTDIR has the last packed state.
OUT=$(mktemp -d /tmp/gpu-check.XXXXXX)/logs
rm -f "$RESULT/logs.tar.gz"
mkdir -p "$OUT"
SUMMARY=$RESULT/summary.txt
pack() {
  # 1: a log changed while it was read (a stage still writing); fine.
  local tmp=$RESULT/logs.tar.gz.$BASHPID # the background stage packs too
  tar -czf "$tmp" --ignore-failed-read --warning=no-file-changed \
    --exclude='*.safetensors' --exclude='plan.json' -C "$(dirname "$OUT")" logs
  if (($? <= 1)); then
    mv "$tmp" "$RESULT/logs.tar.gz"
  else
    rm -f "$tmp"
    echo "pack: tar failed; the logs are in $OUT" >>"$SUMMARY"
  fi
}
# Each stage's `timeout` leads its own process group (its pid): a signal to
# the script reaches them through this list.
stop_stages() {
  local g
  [[ -f $OUT/.groups ]] || return 0
  while read -r g; do kill -TERM -- "-$g" 2>/dev/null; done <"$OUT/.groups"
  sleep 1
  while read -r g; do kill -KILL -- "-$g" 2>/dev/null; done <"$OUT/.groups"
}
trap 'stop_stages; echo "stopped by a signal" >>"$SUMMARY"; exit 143' TERM INT
# (Not at a normal exit: every stage has ended, and a pid may be reused.)
trap 'pack && rm -rf "$(dirname "$OUT")"' EXIT
BUILD=${GPU_CHECK_BUILD_DIR:-build-gpu}
TRAINERS=bench/gpu-trainers
START=$(date +%s)
# GPU_CHECK_DEADLINE (seconds) for a rerun with less device time left.
DEADLINE=$((START + ${GPU_CHECK_DEADLINE:-560}))
: >"$SUMMARY"
failed=0

note() { echo "$*" | tee -a "$SUMMARY"; }
skipped() { [[ " ${GPU_CHECK_SKIP:-} " == *" $1 "* ]]; }
# stage NAME CAP COMMAND...: runs COMMAND with at most CAP seconds (less if
# the deadline is nearer), logging to OUT/NAME.log.
stage() {
  local name=$1 cap=$2; shift 2
  if skipped "$name"; then note "$name: skipped (GPU_CHECK_SKIP)"; return 0; fi
  local left=$((DEADLINE - $(date +%s)))
  if ((left < 10)); then note "$name: skipped: out of time"; failed=1; return 1; fi
  local limit=$((cap < left ? cap : left)) s rc
  s=$(date +%s)
  # When the stage's time is up, for a stage that paces itself (ab_cell).
  export STAGE_END=$((s + limit))
  echo "== $name (limit ${limit}s) ==" >&2
  # Through bash -c so that a stage may be a function (exported below);
  # timeout signals the whole process group, background children included.
  # In the background, waited for: a signal to the script is then handled
  # at once (bash runs a trap only when its foreground command ends).
  timeout -k 5 "$limit" bash -c '"$@"' "$name" "$@" >"$OUT/$name.log" 2>&1 &
  local pid=$!
  echo "$pid" >>"$OUT/.groups"
  wait "$pid"
  rc=$?
  if ((rc == 0)); then
    note "$name: ok ($(($(date +%s) - s)) s)"
  elif ((rc == 124 || rc == 137)); then
    note "$name: TIMED OUT after ${limit}s (see logs/$name.log)"; failed=1
  else
    note "$name: FAILED, exit $rc (see logs/$name.log)"; failed=1
  fi
  pack
  return $rc
}
# A stage in the background (stage_bg NAME CAP COMMAND...), joined later
# (stage_join NAME): for a check that shares the machine with another
# without harm. Its failure counts when it is joined.
declare -A BG=()
stage_bg() { stage "$@" & BG[$1]=$!; }
stage_join() { [[ -z ${BG[$1]:-} ]] || wait "${BG[$1]}" || failed=1; }

{
  echo "date: $(date -u +%FT%TZ)"
  echo "cores: $(nproc)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  nvcc --version | tail -1
  cmake --version | head -1
  git log --oneline -1
} >"$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt" >>"$SUMMARY"

if [[ ! -d $TRAINERS/fmnist ]]; then
  note "error: no $TRAINERS: run bench/gpu-trainers.sh on a machine with the compiler first"
  exit 1
fi

#--- build ---------------------------------------------------------------
# cuDNN (and NCCL) may be only in PyTorch's wheels (nvidia/cudnn,
# nvidia/nccl): point CMake there.
build() {
  if [[ -z ${CUDNN_ROOT:-} ]] && ! ls /usr/local/cuda/lib*/libcudnn.so* \
      /usr/lib/x86_64-linux-gnu/libcudnn.so* >/dev/null 2>&1; then
    CUDNN_ROOT=$(python3 -c 'import nvidia.cudnn; print(list(nvidia.cudnn.__path__)[0])' 2>/dev/null || true)
    export CUDNN_ROOT
    echo "CUDNN_ROOT=$CUDNN_ROOT"
  fi
  # NCCL likewise (nvidia/nccl).
  if [[ -z ${NCCL_ROOT:-} ]] && ! ls /usr/local/cuda/lib*/libnccl.so* \
      /usr/lib/x86_64-linux-gnu/libnccl.so* >/dev/null 2>&1; then
    NCCL_ROOT=$(python3 -c 'import nvidia.nccl; print(list(nvidia.nccl.__path__)[0])' 2>/dev/null || true)
    export NCCL_ROOT
    echo "NCCL_ROOT=$NCCL_ROOT"
  fi
  local opts=(-DCMAKE_BUILD_TYPE=Release -DNETC_BUILD_COMPILER=OFF
    -DNETC_WITH_ONEDNN=OFF -DNETC_WITH_CUDA=ON)
  # Where a dependency is missing there: the carried prefix of this
  # project's development machine (bench/gpu-trainers.sh), with nothing
  # compiled there run here: fmt header-only, GoogleTest built from its
  # source, zlib's headers with the machine's own libz.so.1.
  local deps=$PWD/$TRAINERS/deps arch=lib/x86_64-linux-gnu zlib
  zlib=$(ldconfig -p 2>/dev/null | awk '/libz\.so\.1 .*x86-64/ {print $NF; exit}')
  local carried=(-Dfmt_DIR="$deps/$arch/cmake/fmt" -DNETC_FMT_HEADER_ONLY=ON
    -Dnlohmann_json_DIR="$deps/share/cmake/nlohmann_json"
    -DNETC_GTEST_SOURCE_DIR="$deps/src/googletest"
    -DZLIB_INCLUDE_DIR="$deps/include")
  [[ -n $zlib ]] && carried+=(-DZLIB_LIBRARY="$zlib")
  configure() { # a fresh configure with the given options
    local gen=()
    command -v ninja >/dev/null && gen=(-G Ninja)
    rm -rf "$BUILD/CMakeCache.txt" "$BUILD/CMakeFiles"
    cmake -S . -B "$BUILD" "${gen[@]}" "${opts[@]}" "$@"
  }
  if [[ -f $BUILD/CMakeCache.txt ]] && cmake "$BUILD" >/dev/null; then
    : # configured by an earlier run on this machine
  elif ! configure; then
    echo "configure failed: once more with the carried prefix $deps"
    configure "${carried[@]}" ||
      { echo "configure failed with the carried prefix too"; return 1; }
  fi
  # netrun first: if only the tests fail to build, the parity check and
  # the benchmark still run (the test stages then fail on their own).
  cmake --build "$BUILD" -j "$(nproc)" --target netrun || return 1
  cmake --build "$BUILD" -j "$(nproc)" --target netc-runtime-tests \
    netc-gpu-tests || echo "warning: the tests did not build"
}
export OUT BUILD TRAINERS DEADLINE
export -f build
if ! stage build 240 build; then
  note "the build failed: nothing else can run"
  exit 1
fi
NETRUN=$BUILD/bin/netrun
export NETRUN

#--- the runtime's own tests (CPU: seconds; before the GPU stages, which may
# run into the deadline) -----------------------------------------------------
stage runtime-tests 60 "$BUILD/bin/netc-runtime-tests"
grep -E '^\[  (PASSED|FAILED) ' "$OUT/runtime-tests.log" >>"$SUMMARY" 2>/dev/null

#--- the GPU tests, beside the parity check -----------------------------------
# Neither is timed, and the GPU has room for both: netc-gpu-tests in the
# background while the parity check's reference runs keep other cores busy.
# The graph API's tests (NETC_CUDA_CONV_API; not yet run on a GPU) in a
# process of their own: a fault in one leaves the others' results whole.
gpu_tests() {
  local rc=0
  export NETC_STEP_PLAN_DIR="$PWD/$TRAINERS/every"
  "$BUILD/bin/netc-gpu-tests" --gtest_filter='-*GraphApi*' || rc=1
  "$BUILD/bin/netc-gpu-tests" --gtest_filter='*GraphApi*' || rc=1
  return "$rc"
}
export -f gpu_tests
stage_bg gpu-tests 150 gpu_tests

# diagnose STAGE LOG NETRUN-ARGS...: after the first failed cuda run of a
# stage, the same command again, briefly, with NETC_CUDA_SYNC=on (a wait
# after each kernel, so that a fault names the kernel that caused it),
# appended to LOG with each line marked `sync-rerun:` (so that no figure of
# it passes for the failed run's). A trainer folder among the arguments is
# copied first (its algorithm file spares the search), so the failed run's
# own folder stays as it was. At most 40 s, within the deadline; later
# failures of the stage are not rerun (the first one usually says it all).
diagnose() {
  local stage=$1 log=$2 args=() a tmp limit
  shift 2
  [[ -e $OUT/.diagnosed-$stage ]] && return 0
  : >"$OUT/.diagnosed-$stage"
  limit=$((DEADLINE - $(date +%s)))
  ((limit > 40)) && limit=40
  ((limit < 5)) && return 0
  tmp=$(mktemp -d)
  for a in "$@"; do
    if [[ -d $a && -f $a/plan.json ]]; then
      cp -r "$a" "$tmp/t"
      # A fresh run: netrun train refuses to start over a checkpoint.
      rm -f "$tmp/t"/checkpoint.*
      a=$tmp/t
    fi
    args+=("$a")
  done
  echo "--- again with NETC_CUDA_SYNC=on (sync-rerun):" >>"$log"
  # --foreground: in the stage's process group, so that the stage's own
  # timeout ends it too.
  NETC_CUDA_SYNC=on timeout --foreground -k 5 "$limit" "$NETRUN" \
    "${args[@]}" 2>&1 | sed 's/^/sync-rerun: /' >>"$log"
  rm -rf "$tmp"
  return 0
}

#--- parity: reference (CPU) against cuda, 20 steps ------------------------
# The same trainer, seed and data for both. The reference runs (fp32: the
# classifier phase and the joint SWWAE step; bf16: the reference backend's
# emulation of the cuda backend's bf16 path) go in parallel, one core each,
# while the cuda runs follow one another.
parity() {
  local data=$PWD/$TRAINERS/fmnist-data tiny=$PWD/$TRAINERS/fmnist-tiny
  local pids=() t b algos
  local opts=(--max-steps 20 --log-every 1 --seed 1 --data "$data")
  rm -rf "$OUT/parity"
  mkdir -p "$OUT/parity"
  # Besides, the example's whole schedule on 40 training images (`tiny`,
  # below its batch of 64): every step and evaluation at a smaller batch
  # (no graph), each phase's end with its evaluation and checkpoint.
  for t in fmnist fmnist-joint fmnist-joint-bf16 tiny; do
    for b in reference cuda; do
      cp -r "$TRAINERS/${t/#tiny/fmnist}" "$OUT/parity/$t-$b"
    done
  done
  local tinyOpts=(--log-every 1 --seed 1 --data "$tiny")
  for t in fmnist fmnist-joint fmnist-joint-bf16 tiny; do
    local o=("${opts[@]}")
    [[ $t == tiny ]] && o=("${tinyOpts[@]}")
    "$NETRUN" train "$OUT/parity/$t-reference" --backend reference \
      "${o[@]}" --metrics "$OUT/parity/$t-reference.jsonl" \
      >"$OUT/parity/$t-reference.log" 2>&1 &
    pids+=($!)
  done
  local rc=0
  for t in fmnist fmnist-joint fmnist-joint-bf16 tiny; do
    local o=("${opts[@]}")
    [[ $t == tiny ]] && o=("${tinyOpts[@]}")
    "$NETRUN" train "$OUT/parity/$t-cuda" --backend cuda "${o[@]}" \
      --metrics "$OUT/parity/$t-cuda.jsonl" >"$OUT/parity/$t-cuda.log" 2>&1 ||
      { rc=1; diagnose parity "$OUT/parity/$t-cuda.log" train \
          "$OUT/parity/$t-cuda" --backend cuda --max-steps 2 --data "${o[-1]}"; }
  done
  # The runs below compare with the fp32 joint run on the GPU: they start
  # from its cuDNN algorithms (the trainer directory keeps them), so that
  # the same sums are computed, not those of another search's choice.
  algos=$OUT/parity/fmnist-joint-cuda/cudnn-algorithms.json
  # The data-parallel trainer on one rank: its all-reduces go through NCCL.
  cp -r "$TRAINERS/fmnist-joint-dp" "$OUT/parity/dp-cuda"
  # CUDA graphs off (every kernel launched eagerly, each step).
  cp -r "$TRAINERS/fmnist-joint" "$OUT/parity/nographs-cuda"
  if [[ -f $algos ]]; then
    cp "$algos" "$OUT/parity/dp-cuda/"
    cp "$algos" "$OUT/parity/nographs-cuda/"
  fi
  # NCCL's bootstrap on the loopback interface: one rank needs no other,
  # and the GPU machine reaches no network.
  NCCL_SOCKET_IFNAME=${NCCL_SOCKET_IFNAME:-lo} NCCL_DEBUG=${NCCL_DEBUG:-WARN} \
    "$NETRUN" train "$OUT/parity/dp-cuda" --backend cuda "${opts[@]}" \
    --metrics "$OUT/parity/dp-cuda.jsonl" >"$OUT/parity/dp-cuda.log" 2>&1 ||
    rc=1
  NETC_CUDA_GRAPHS=off "$NETRUN" train "$OUT/parity/nographs-cuda" \
    --backend cuda "${opts[@]}" --metrics "$OUT/parity/nographs-cuda.jsonl" \
    >"$OUT/parity/nographs-cuda.log" 2>&1 || rc=1
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  ((rc == 0)) || { tail -n 5 "$OUT"/parity/*.log; return 1; }
  # Evaluation and reconstruction on both backends from the same
  # checkpoint: the reference's after its 20 steps (512 test images), and
  # the tiny run's (24). The reference's go in parallel.
  pids=()
  for t in fmnist-joint fmnist-joint-bf16; do
    for b in reference cuda; do
      "$NETRUN" eval "$OUT/parity/$t-reference" --backend $b --data "$data" \
        >"$OUT/parity/eval-$t-$b.log" 2>&1 &
      if [[ $b == reference ]]; then pids+=($!); else wait $! || rc=1; fi
    done
  done
  for b in reference cuda; do
    "$NETRUN" reconstruct "$OUT/parity/tiny-reference" --backend $b \
      --data "$tiny" --out "$OUT/parity/reconstruct-$b.png" \
      >"$OUT/parity/reconstruct-$b.log" 2>&1 || rc=1
  done
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  ((rc == 0)) || { tail -n 5 "$OUT"/parity/{eval,reconstruct}-*.log; return 1; }
  python3 - "$OUT/parity" "$([[ -f $algos ]] && echo shared || echo searched)" <<'PY'
import json, sys
d, algos = sys.argv[1], sys.argv[2]
ok = True

def steps(name):
    return [(r["global_step"], r["loss"], r["terms"])
            for r in map(json.loads, open(f"{d}/{name}.jsonl"))
            if r.get("event") == "step"]

def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-30)

def worst(a, b, n=20):
    """The largest relative loss difference of runs a and b (against b) over
    their first n steps, and per loss term; inf unless both have 20 steps."""
    if len(a) != 20 or len(b) != 20:
        return float("inf"), {}
    a, b = a[:n], b[:n]
    terms = {k: max(rel(x[2].get(k, float("nan")), y[2][k])
                    for x, y in zip(a, b)) for k in b[0][2]}
    return max(rel(x[1], y[1]) for x, y in zip(a, b)), terms

# The reference (CPU) against the cuda backend, step by step. fp32: the
# two sum in other orders (the reference in double), 1e-4 over 20 steps.
# bf16: the emulation rounds to bf16 where the GPU does, but bf16 keeps 8
# significant bits (a rounding is off by up to 2^-9, 0.2%): a value whose
# fp32 (GPU) and double (reference) sums fall on either side of a rounding
# boundary ends one bf16 step apart, and the GPU rounds a convolution's
# output before adding its bias where the emulation rounds once. Simulated
# on the CPU (both effects in the emulation), 20 steps of this trainer moved
# the loss by 6e-4 and its terms by up to 1e-2 (recon.conv1); the whole
# bf16 rounding (the emulation against the fp32 reference) moves them by
# 2e-3 and 1e-2. The loss within 2e-2, each term within 5e-2: a wrong
# layout or a stale bf16 weight copy is off by far more.
# The example's classifier phase (lr 0.02, batch 64) amplifies rounding:
# on the H200 (2026-11-30) its losses agreed with the reference's to 1e-7
# over the first 10 steps, then drifted apart to 9e-4 by step 18; two GPU
# runs that differed only in cuDNN's algorithm choice drifted as far apart
# (9e-4), and the cpu backend (oneDNN) from the reference further (7.6e-3
# at step 18, on the CPU). No two fp32 implementations stay within 1e-4
# there, so its first 10 steps are checked, within 1e-5 (a wrong kernel
# shows from step 2, the first after an update), and the rest is printed.
# The joint phase (lr 0.005, batch 16) does not amplify it: all 20 steps.
for t, tol, term_tol, checked in (
        ("fmnist", 1e-5, None, 10), ("fmnist-joint", 1e-4, None, 20),
        ("fmnist-joint-bf16", 2e-2, 5e-2, 20)):
    ref, gpu = steps(f"{t}-reference"), steps(f"{t}-cuda")
    if len(ref) != 20 or len(gpu) != 20:
        print(f"parity {t}: {len(ref)} reference and {len(gpu)} cuda steps, "
              f"not 20")
        ok = False
        continue
    for (s, a, ta), (_, b, tb) in zip(ref, gpu):
        terms = " ".join(f"{k} {ta[k]:.6g}/{tb.get(k, float('nan')):.6g}"
                         for k in ta)
        print(f"{t} step {s}: reference {a:.7g} cuda {b:.7g} "
              f"rel {rel(b, a):.2e}  {terms}")
    loss, terms = worst(gpu, ref, checked)
    good = loss <= tol
    line = (f"parity {t}: {checked} steps, max relative loss difference "
            f"{loss:.2e} ({f'ok: within {tol:g}' if good else f'ABOVE {tol:g}'})")
    if checked < 20:
        line += (f"; over all 20 (not checked: the phase amplifies "
                 f"rounding) {worst(gpu, ref)[0]:.2e}")
    if term_tol is not None:
        bad = [k for k, v in terms.items() if not v <= term_tol]
        good &= not bad
        line += ("; terms " +
                 ", ".join(f"{k} {v:.2e}" for k, v in terms.items()) +
                 (f" (ABOVE {term_tol:g}: {', '.join(bad)})" if bad
                  else f" (each within {term_tol:g})"))
    ok &= good
    print(line)

# For scale: what bf16 itself changes (the emulation against the fp32
# reference run; reported, not checked).
loss, terms = worst(steps("fmnist-joint-bf16-reference"),
                    steps("fmnist-joint-reference"))
print(f"parity bf16 itself (reference emulation against fp32, not checked): "
      f"loss {loss:.2e}, terms " +
      ", ".join(f"{k} {v:.2e}" for k, v in terms.items()))

# One rank through NCCL computes what no communicator does: the same losses
# from the same algorithms (1e-4: the all-reduce's copies change no sum, but
# a search made again could pick others).
# CUDA graphs off: the same kernels launched one by one compute the same
# sums as their replayed graph; 1e-5 leaves room only for an algorithm
# with atomics (a nondeterministic sum order) among those searched. If the
# default run kept no algorithms, the search ran again: 1e-4.
base = steps("fmnist-joint-cuda")
for name, what, tol in (
        ("dp-cuda", "data-parallel: NCCL on one rank", 1e-4),
        ("nographs-cuda", "graphs: NETC_CUDA_GRAPHS=off",
         1e-5 if algos == "shared" else 1e-4)):
    loss, _ = worst(steps(name), base)
    good = loss <= tol
    ok &= good
    print(f"parity {what}, 20 steps, max relative loss difference from the "
          f"default cuda run {loss:.2e} (algorithms {algos}; "
          f"{f'ok: within {tol:g}' if good else f'ABOVE {tol:g}'})")

# The tiny run: the example's four phases, every step below the batch and an
# evaluation at each phase's end. Its first steps are those the classifier
# phase keeps within 1e-5 (above): 1e-4. An evaluation's count may differ
# by one image, an argmax flipped on a near tie by another sum order.
def events(name):
    return [r for r in map(json.loads, open(f"{d}/{name}.jsonl"))
            if r.get("event") == "eval"]

ref, gpu = steps("tiny-reference"), steps("tiny-cuda")
counts = [(a["correct"], b["correct"])
          for a, b in zip(events("tiny-reference"), events("tiny-cuda"))]
loss = max((rel(b[1], a[1]) for a, b in zip(ref, gpu)), default=float("inf"))
good = (len(ref) == len(gpu) and loss <= 1e-4 and bool(counts) and
        len(counts) == len(events("tiny-reference")) and
        all(abs(a - b) <= 1 for a, b in counts))
ok &= good
print(f"parity tiny (the example's schedule on 40 images, batch 64): "
      f"{len(gpu)} cuda steps of {len(ref)}, max relative loss difference "
      f"{loss:.2e}; test images right, reference/cuda, at each phase's end: "
      + ", ".join(f"{a}/{b}" for a, b in counts) +
      (" (ok: within 1e-4 and one image)" if good
       else " (NOT within 1e-4 and one image)"))

# `netrun eval` of one checkpoint on both backends: fp32 within one image of
# 512; bf16 (the emulation, which rounds where the GPU does but sums in
# double) within 2%, 10 images (the emulation against fp32 itself differed
# by 3 on the CPU).
import re
def wrong(name):
    m = re.search(r"\((\d+) of (\d+) wrong\)", open(f"{d}/{name}.log").read())
    return (int(m[1]), int(m[2])) if m else (None, None)

for t, tol in (("fmnist-joint", 1), ("fmnist-joint-bf16", 10)):
    (a, n), (b, _) = wrong(f"eval-{t}-reference"), wrong(f"eval-{t}-cuda")
    good = a is not None and b is not None and abs(a - b) <= tol
    ok &= good
    print(f"parity eval {t} (the reference's checkpoint): {a} and {b} of {n} "
          f"wrong, reference and cuda "
          f"({f'ok: within {tol}' if good else f'NOT within {tol}'})")

# `netrun reconstruct` of the tiny run's checkpoint: each macro-layer's PSNR
# within 0.01 dB as printed (two decimals: a rounding apart at most, which
# in binary may be a hair above 0.01).
def psnr(b):
    m = re.search(r"PSNR over \d+ test images: (.*)", open(f"{d}/reconstruct-{b}.log").read())
    return dict((k, float(v)) for k, v in re.findall(r"(\S+) ([-\d.]+) dB", m[1])) if m else {}

a, b = psnr("reference"), psnr("cuda")
good = bool(a) and a.keys() == b.keys() and all(abs(a[k] - b[k]) <= 0.01 + 1e-9 for k in a)
ok &= good
print(f"parity reconstruct (tiny): PSNR reference/cuda " +
      ", ".join(f"{k} {a[k]:.2f}/{b.get(k, float('nan')):.2f} dB" for k in a) +
      (" (ok: within 0.01 dB)" if good else " (NOT within 0.01 dB)"))
sys.exit(0 if ok else 1)
PY
}
export -f parity diagnose
stage parity 120 parity
grep '^parity ' "$OUT/parity.log" >>"$SUMMARY" 2>/dev/null
stage_join gpu-tests
grep -E '^\[  (PASSED|FAILED) |cuDNN graph API' "$OUT/gpu-tests.log" \
  >>"$SUMMARY" 2>/dev/null
if grep -q 'no CUDA device; skipping' "$OUT/gpu-tests.log" 2>/dev/null; then
  note "gpu-tests: SKIPPED: the GPU machine shows no CUDA device"
  failed=1
elif grep -q '^\[  SKIPPED \]' "$OUT/gpu-tests.log" 2>/dev/null; then
  # A test skips when a plan it needs is missing from bench/gpu-trainers
  # (compiled by an older gpu-trainers.sh): then it proved nothing.
  note "gpu-tests: $(grep -c '^\[  SKIPPED \] [A-Za-z]' "$OUT/gpu-tests.log") test(s) SKIPPED (a missing plan? rerun bench/gpu-trainers.sh):"
  grep '^\[  SKIPPED \] [A-Za-z]' "$OUT/gpu-tests.log" >>"$SUMMARY"
  failed=1
fi
"$NETRUN" info "$TRAINERS/fmnist" 2>&1 | grep '^cuda backend' >>"$SUMMARY"

#--- benchmark: netrun bench on the carried trainers ----------------------
# 12 cells: VGG-16 (batch 64, 12 timed steps) and the 32x32 net (batch 256,
# 30), as SWWAE-all and the classifier, in bf16, tf32 and fp32 (the peer's
# cells and step counts; in this order, so that a stage cut short by its
# limit loses the least telling cells). Each cell has its own limit, so that one hang
# leaves the others their time (--foreground: the cell stays in the stage's
# process group, so that the stage's own timeout ends it too); a cell's
# lines go to bench.log as it ends, so a stage timeout keeps the cells
# already measured. Each cell also prints its profile (as many steps again,
# each kernel waited for, after the timed ones): where a cell falls short,
# the first run already says which ops take the time.
# cell NAME LIMIT STEPS [ENV=VALUE...]: one `netrun bench` of
# $TRAINERS/NAME (its first word) with at most LIMIT seconds, logged to
# bench-NAME.log (spaces as dashes) and echoed with the name in front.
# merge_algos FROM TO: adds FROM's algorithms to TO's (TO is made if need
# be) where both are of one GPU and cuDNN; a merge, so that a rerun keeps
# what every earlier cell measured.
merge_algos() {
  [[ -f $1 ]] || return 0
  python3 - "$1" "$2" <<'PY' || true
import json, os, sys
src, dst = sys.argv[1], sys.argv[2]
a = json.load(open(src))
b = json.load(open(dst)) if os.path.exists(dst) else None
if b is None or b.get("origin") != a.get("origin"):
    b = {"origin": a.get("origin"), "algorithms": {}}
for section in ("algorithms", "graph"):
    for k, v in a.get(section, {}).items():
        b.setdefault(section, {}).setdefault(k, v)
json.dump(b, open(dst + ".tmp", "w"), indent=1)
os.replace(dst + ".tmp", dst)
PY
}
cell() {
  local name=$1 limit=$2 steps=$3 log rc t
  shift 3
  log="$OUT/bench-${name// /-}.log"
  t=$TRAINERS/${name%% *}
  # One algorithm file for all cells: a shape another cell measured (the
  # other variant's encoder, say) is not measured again. Its keys hold the
  # precision and layout, and it is this GPU's and cuDNN's.
  merge_algos "$OUT/cudnn-algorithms.json" "$t/cudnn-algorithms.json"
  env "$@" timeout --foreground -k 5 "$limit" "$NETRUN" bench "$t" \
    --program step.joint --backend cuda --steps "$steps" --profile \
    >"$log" 2>&1
  rc=$?
  merge_algos "$t/cudnn-algorithms.json" "$OUT/cudnn-algorithms.json"
  if ((rc == 124 || rc == 137)); then
    echo "TIMED OUT after ${limit}s" >>"$log"
  elif ((rc != 0)); then
    echo "FAILED (exit $rc)" >>"$log"
    env "$@" bash -c 'diagnose "$@"' diagnose bench "$log" bench "$t" \
      --program step.joint --backend cuda --steps 1
  fi
  # A failed one of the 12 cells (bench sets CELL_RETRY) again without the
  # newest parts of the default path (the graph API's convolutions, the
  # max-pool backward inside relu_grad, the channel padding; a cell that
  # timed out in its search gets no faster), so that a
  # fault there still leaves the cell's figure; its lines say so
  # (`retry:`), and so does its ratio.
  if ((rc != 0)) && [[ ${CELL_RETRY:-} == 1 ]]; then
    echo "retry: again with NETC_CUDA_FUSION=conv-relu NETC_CUDA_PAD_CHANNELS=off NETC_CUDA_CONV_API=legacy" \
      >>"$log"
    if NETC_CUDA_FUSION=conv-relu NETC_CUDA_PAD_CHANNELS=off \
      NETC_CUDA_CONV_API=legacy timeout --foreground -k 5 "$limit" "$NETRUN" bench "$t" \
      --program step.joint --backend cuda --steps "$steps" --profile \
      2>&1 | sed 's/^/retry: /' >>"$log"; then
      merge_algos "$t/cudnn-algorithms.json" "$OUT/cudnn-algorithms.json"
    fi
  fi
  sed "s/^/$name: /" "$log"
  return $((rc != 0))
}
bench() {
  local net v p t steps limit rc=0
  # VGG-16 first (the goals' headline cells), bf16 first.
  for net in vgg16 vgg32; do
    steps=30 limit=30
    [[ $net == vgg16 ]] && steps=12 limit=50
    for p in bf16 tf32 fp32; do
      for v in swwae-all none; do
        t=$net-$v
        [[ $p != fp32 ]] && t=$t-$p
        CELL_RETRY=1 cell "$t" "$limit" "$steps" || rc=1
      done
    done
  done
  return "$rc"
}
# An A/B cell within what is left of its stage: one that would start with
# under 20 s left is skipped, and one that the stage's end rather than its
# own limit cut short is noted; neither fails the check (the A/B cells
# inform the choice of defaults; the check is the 12 cells and the peer).
# A cell that fails on its own does.
ab_cell() {
  local name=$1 limit=$2 left
  left=$((STAGE_END - $(date +%s) - 10))
  if ((left < 20)); then
    echo "$name: skipped: ${left} s left in the stage"
    return 0
  fi
  if ((left >= limit)); then
    cell "$@"
    return
  fi
  cell "$name" "$left" "${@:3}" && return 0
  if grep -q "^TIMED OUT" "$OUT/bench-${name// /-}.log"; then
    echo "$name: cut short by the stage's end after ${left} s"
    return 0
  fi
  return 1
}
# The A/B cells, after the eager peer (the ratios need the peer more than
# these): each a cell again with one feature off.
bench_ab() {
  local t rc=0
  # In the order of what they can still teach (a stage cut short loses the
  # last). The relu_grad that also sums the next bias gradient's partials
  # (not in the default fusions on bf16 maps: 0.967x and 0.930x on the two
  # bf16 VGG-16 cells, 2026-12-01): the bf16 classifier with it. Then the convolutions
  # of the bf16 and tf32 VGG-16 classifier through the legacy calls,
  # against the default's graph API (bf16 1.038x and 1.029x, tf32 1.019x
  # and 0.999x, in two calls), and the fp32 one through the graph API,
  # against the default's legacy calls (0.741x; a cell that searches its
  # plans gets 60 s; the file's entries serve the cells after); the bf16
  # SWWAE-all cell with relu-bias, and the two bf16 VGG-16 cells without
  # the relu_grad that does the max-pool's backward (1.093x and 1.039x);
  # the bf16 classifier with the forward convolutions' bias and relu in the
  # plan (graph-fused; its engines are compiled at run time).
  ab_cell "vgg16-none-bf16 relubias" 40 12 NETC_CUDA_FUSION=all || rc=1
  # The tf32 classifier without it (1.01x with it, 2026-12-01; its
  # relu_grads moved f32 maps at 3.5 TB/s where the bf16 cells' moved
  # 1.1-1.3, so the default keeps it on f32 maps): whether it pays there.
  ab_cell "vgg16-none-tf32 norelubias" 40 12 \
    NETC_CUDA_FUSION=conv-relu,pool-relu || rc=1
  # What taking the convolutions' workspaces (and padded maps) from the
  # arena's free bytes buys in peak memory, on the tf32 classifier whose
  # first weight gradient took an 834 MiB workspace (2026-12-01): every
  # one in the shared workspace instead.
  ab_cell "vgg16-none-tf32 noarenaws" 40 12 NETC_CUDA_ARENA_WORKSPACE=off ||
    rc=1
  for t in vgg16-none-bf16 vgg16-none-tf32; do
    ab_cell "$t legacy" 60 12 NETC_CUDA_CONV_API=legacy || rc=1
  done
  ab_cell "vgg16-none graph" 60 12 NETC_CUDA_CONV_API=graph || rc=1
  ab_cell "vgg16-swwae-all-bf16 relubias" 40 12 NETC_CUDA_FUSION=all || rc=1
  for t in vgg16-none-bf16 vgg16-swwae-all-bf16; do
    ab_cell "$t nopoolrelu" 40 12 NETC_CUDA_FUSION=conv-relu || rc=1
  done
  ab_cell "vgg16-none-bf16 graph-fused" 60 12 NETC_CUDA_CONV_API=graph-fused ||
    rc=1
  # What NHWC maps buy tf32 (1.93x on 2026-11-30): VGG-16 with NCHW maps.
  ab_cell "vgg16-none-tf32-nchw" 40 12 || rc=1
  # What running the convolutions of 3 channels (the image's, the
  # reconstruction's) on channel-padded copies buys: on the first run the
  # 32x32 net's first bf16 weight gradient took 1.3 ms of the 5.7 ms its
  # step's kernels took one by one (3.3 ms as a graph).
  for t in vgg32-none-bf16 vgg16-swwae-all-bf16; do
    ab_cell "$t nopad" 40 12 NETC_CUDA_PAD_CHANNELS=off || rc=1
  done
  # Two cells without any fusion (their algorithms come from the shared
  # file, so no new search).
  for t in vgg16-none vgg16-swwae-all-bf16; do
    ab_cell "$t nofusion" 40 12 NETC_CUDA_FUSION=off || rc=1
  done
  # What the 16-byte packs buy (the elementwise kernels, and the max-pool,
  # the unpool and their backwards in channel packs), on the cell with the
  # most of that work (the decoders' relus, unpools and their gradients,
  # the reconstruction losses' gradients) and bf16 maps: one element per
  # item (1.67x on the first run).
  ab_cell "vgg16-swwae-all-bf16 nopacks" 40 12 NETC_CUDA_PACKS=off || rc=1
  return "$rc"
}
export -f cell ab_cell bench bench_ab merge_algos
# keep_or_reuse STAGE: the stage's log outlives the call in the build folder
# (which a warm machine keeps between calls), so that a rerun that skips
# the stage still prints the A/B cells' and the peer's ratios, against the
# previous call's figures (the summary says so).
keep_or_reuse() {
  local log=$OUT/$1.log kept=$BUILD/last-$1.log
  if skipped "$1"; then
    if [[ -s $kept ]]; then
      cp "$kept" "$log"
      note "$1: the ratios below use the previous call's $1.log ($(date -u -r "$kept" +%FT%TZ))"
    fi
  elif [[ -s $log ]]; then
    cp "$log" "$kept"
  fi
}
# The cells' merged algorithm file likewise outlives the call, so that a
# warm rerun does not search again what the first call measured.
if [[ -s $BUILD/last-cudnn-algorithms.json && ! -e $OUT/cudnn-algorithms.json ]]; then
  cp "$BUILD/last-cudnn-algorithms.json" "$OUT/cudnn-algorithms.json"
fi
keep_algos() {
  [[ -s $OUT/cudnn-algorithms.json ]] &&
    cp "$OUT/cudnn-algorithms.json" "$BUILD/last-cudnn-algorithms.json"
  return 0
}
stage bench 150 bench
keep_algos
grep -E 'images/s|FAILED|TIMED OUT|error|CUDA graphs|retry: again' \
  "$OUT/bench.log" >>"$SUMMARY" 2>/dev/null
keep_or_reuse bench

#--- the PyTorch peer --------------------------------------------------------
if python3 -c 'import torch' >/dev/null 2>&1; then
  # VGG-16 first, bf16 first (the goals' headline cells), as in the bench:
  # a peer cut short by its limit loses the least telling cells.
  cells=()
  for n in vgg16 vgg32; do
    for p in bf16 tf32 fp32; do
      for v in swwae-all none; do cells+=("$n/$v/$p"); done
    done
  done
  stage peer 280 python3 bench/peer_gpu.py --cells "$(IFS=,; echo "${cells[*]}")"
  grep '^peer' "$OUT/peer.log" >>"$SUMMARY" 2>/dev/null
  keep_or_reuse peer
else
  note "peer: skipped: python3 cannot import torch"
fi

#--- the A/B cells -----------------------------------------------------------
# They pace themselves (ab_cell); with under 30 s left they do not start,
# which fails nothing.
if ((DEADLINE - $(date +%s) < 30)); then
  note "bench-ab: skipped: under 30 s left (the A/B cells fail nothing)"
else
  stage bench-ab 180 bench_ab
fi
keep_algos
grep -E 'images/s|FAILED|TIMED OUT|error|CUDA graphs' "$OUT/bench-ab.log" \
  >>"$SUMMARY" 2>/dev/null

#--- ncu: the own kernels that ran furthest below memory speed ---------------
# On the H200 (2026-11-30) bias_grad, the unpool gather (also the max-pool's
# backward) and unpool_grad moved their bytes at 0.9-1.7 TB/s in the bf16
# VGG-16 SWWAE-all step. Nsight Compute's view of every launch of them (and
# of the max-pool) in one step, kernel by kernel: throughput against the
# memory's, occupancy, the memory traffic. The clocks left alone
# (--clock-control none, as the machine's notes ask); graphs off, so that
# each launch is its own. Where ncu is missing or cannot read the counters
# (gVisor machines), the stage says so and fails nothing of netc's.
ncu_profile() {
  if ! command -v ncu >/dev/null; then
    echo "ncu: not on this machine"
    return 0
  fi
  # About 78 matching launches make one step (bias_grad's two kernels for
  # 29 convolutions, the first of them inside relu_grad where it sums the
  # partials; 10 unpool gathers, four of the max-pools' backwards inside
  # relu_grad too; 5 unpool_grads, 5 max-pools); ncu ends the program
  # after the 80th (--kill yes), so that its report comes before the
  # stage's limit.
  NETC_CUDA_GRAPHS=off ncu --clock-control none --kernel-name-base demangled \
    --kernel-name regex:'BiasGrad|ReluGradBias|Unpool|MaxPool' \
    --launch-count 80 --kill yes \
    --section SpeedOfLight --section MemoryWorkloadAnalysis \
    --section Occupancy --section LaunchStats \
    "$NETRUN" bench "$TRAINERS/vgg16-swwae-all-bf16" --program step.joint \
    --backend cuda --steps 1
}
export -f ncu_profile
was_failed=$failed
stage ncu 45 ncu_profile
failed=$was_failed

#--- the peer's kernels: where PyTorch's step time goes -----------------------
# The VGG-16 classifier in bf16 (0.96x on the first run) and tf32 (0.25x)
# again under torch.profiler: its kernels by kind (cuDNN's convolutions,
# cuBLAS's GEMMs, the rest) in ms per step, beside netc's profile of the
# same cells in bench.log: whether PyTorch's convolutions are faster, or
# its other kernels. Fails nothing of netc's.
if python3 -c 'import torch' >/dev/null 2>&1; then
  was_failed=$failed
  stage peer-profile 60 python3 bench/peer_gpu.py --profile \
    --cells vgg16/none/bf16,vgg16/none/tf32
  failed=$was_failed
  grep '^profile .*ms/step' "$OUT/peer-profile.log" >>"$SUMMARY" 2>/dev/null
fi

#--- the second PyTorch peer -------------------------------------------------
if python3 -c 'import torch' >/dev/null 2>&1; then
  # The second peer, torch.compile, with what time is left: each cell
  # compiles first (tens of seconds), so the cells go in the order of what
  # they settle, the bf16 ones (the goal of 1.3x) first. Running out of time
  # here leaves peer figures unmeasured; it fails nothing of netc's.
  cells=()
  for p in bf16 tf32 fp32; do
    for n in vgg16 vgg32; do
      for v in swwae-all none; do cells+=("$n/$v/$p"); done
    done
  done
  was_failed=$failed
  stage peer-compile 240 python3 bench/peer_gpu.py --compile \
    --cells "$(IFS=,; echo "${cells[*]}")"
  failed=$was_failed
  grep '^compiled' "$OUT/peer-compile.log" >>"$SUMMARY" 2>/dev/null
fi

#--- ratios ------------------------------------------------------------------
# Every cell against the peer's cell of the same net, variant and precision
# (fp32: no TF32 on either side; tf32; bf16: netc's bf16 plan, PyTorch's
# bf16 autocast, both with fp32 master weights); each precision's speed-up
# over fp32 on both sides; model FLOP utilisation where the GPU's datasheet
# peak is known: netrun bench counts the step's convolution and fc FLOPs
# (model FLOPs: forward and backward, the same for every implementation of
# the net), and the peer, which runs the same net, is credited with the same
# count per image.
python3 - "$OUT" <<'PY' | tee -a "$SUMMARY"
import os, re, sys
d = sys.argv[1]
# Dense (no sparsity) peaks, TFLOP/s: NVIDIA's datasheet figures, whose
# tensor-core ones are quoted with 2:4 sparsity and are halved here. fp32 on
# the CUDA cores (netc's and PyTorch's fp32 cells use no tensor cores), TF32
# and BF16 on the tensor cores.
PEAKS = {
    "NVIDIA H200": {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5},
    "NVIDIA H200 NVL": {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5},
    "NVIDIA H100 80GB HBM3": {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5},
}
gpu = ""
try:
    for line in open(f"{d}/machine.txt"):
        m = re.match(r"(NVIDIA [^,]+),", line)
        if m:
            gpu = m[1].strip()
            break
except OSError:
    pass
peaks = PEAKS.get(gpu)
ours, peer = {}, {}
retried = set()  # cells measured again without the untested features
try:
    for line in open(f"{d}/bench.log"):
        m = re.match(r"(vgg\d+)-(none|swwae-all)(?:-(tf32|bf16))?: "
                     r"(?:retry: )?program", line)
        if m and ": retry: program" in line:
            retried.add((m[1], m[2], m[3] or "fp32"))
        line = line.replace(": retry: program", ": program", 1)
        m = re.match(r"(vgg\d+)-(none|swwae-all)(?:-(tf32|bf16))?: program .* "
                     r"batch (\d+), .* ([0-9.]+) images/s.*peak memory "
                     r"[^(]*\((\d+) bytes\)(?:, ([0-9.e+-]+) model TFLOP/s)?"
                     r"(?:.*steps alone peak at [^(]*\((\d+) bytes\))?",
                     line)
        if m:
            ours[(m[1], m[2], m[3] or "fp32")] = (
                float(m[5]), int(m[6]), int(m[4]),
                float(m[7]) if m[7] else None, int(m[8]) if m[8] else None)
except OSError:
    pass
compiled = {}
for log, who, table in (("peer", "peer", peer),
                        ("peer-compile", "compiled", compiled)):
    try:
        for line in open(f"{d}/{log}.log"):
            m = re.match(who + r" (\S+) (\S+) (\S+) batch \d+: ([0-9.]+) "
                         r"images/s, peak (\d+)(?:.*timed steps alone "
                         r"(\d+) bytes)?", line)
            if m:
                table[(m[1], m[2], m[3])] = (float(m[4]), int(m[5]),
                                             int(m[6]) if m[6] else None)
    except OSError:
        pass
if not peaks:
    print(f"MFU: no datasheet peak for '{gpu or 'an unknown GPU'}' here: "
          f"model TFLOP/s only")
cells = [(n, v, p) for n in ("vgg32", "vgg16") for v in ("none", "swwae-all")
         for p in ("fp32", "tf32", "bf16")]
for key in cells:
    net, variant, prec = key
    o, q, c = ours.get(key), peer.get(key), compiled.get(key)
    if not o and not q and not c:
        print(f"ratio {net} {variant} {prec}: no figures")
        continue
    # Model FLOPs per image: netrun bench's count (the same net for both).
    per_image = o[3] * 1e12 / o[0] if o and o[3] and o[0] > 0 else None
    def util(ips):
        if per_image is None:
            return "?"
        tf = ips * per_image / 1e12
        return f"{tf:.1f}" + (f" (MFU {100 * tf / peaks[prec]:.1f}%)"
                              if peaks else "")
    if c:
        tail = (f"; torch.compile {c[0]:.1f} images/s" +
                (f" = {o[0] / c[0]:.2f}x" if o else "") +
                f", peak {c[1] / 2**30:.2f} GiB")
    else:
        tail = ""
    if key in retried:
        tail += ("; netc's figure is the retry, without the backward "
                 "fusions and the channel padding (the default run failed)")
    if o and q:
        print(f"ratio {net} {variant} {prec}: netc {o[0]:.1f} / PyTorch "
              f"{q[0]:.1f} images/s = {o[0] / q[0]:.2f}x; model TFLOP/s netc "
              f"{util(o[0])}, PyTorch {util(q[0])}; peak memory netc "
              f"{o[1] / 2**30:.2f} GiB, PyTorch {q[1] / 2**30:.2f} GiB" +
              (f" (the timed steps alone: netc {o[4] / 2**30:.2f} GiB, "
               f"PyTorch {q[2] / 2**30:.2f} GiB)"
               if o[4] is not None and q[2] is not None else "") + tail)
    elif o:
        print(f"ratio {net} {variant} {prec}: netc {o[0]:.1f} images/s, "
              f"model TFLOP/s {util(o[0])}, peak {o[1] / 2**30:.2f} GiB" +
              (f" (the timed steps alone {o[4] / 2**30:.2f} GiB)"
               if o[4] is not None else "") +
              f" (no eager peer figure){tail}")
    elif q:
        print(f"ratio {net} {variant} {prec}: PyTorch {q[0]:.1f} images/s, "
              f"peak {q[1] / 2**30:.2f} GiB (no netc figure){tail}")
    else:
        print(f"ratio {net} {variant} {prec}: (no netc or eager figure)"
              f"{tail}")
for line in (line for f in ("bench.log", "bench-ab.log")
             if os.path.exists(f"{d}/{f}") for line in open(f"{d}/{f}")):
    m = re.match(r"(vgg\d+)-(none|swwae-all)(?:-(tf32|bf16))?-nchw: "
                 r"program .* ([0-9.]+) images/s", line)
    if m and (m[1], m[2], m[3] or "fp32") in ours:
        base = ours[(m[1], m[2], m[3] or "fp32")][0]
        print(f"layout {m[1]} {m[2]} {m[3] or 'fp32'}: NHWC maps {base:.1f}, "
              f"NCHW maps {float(m[4]):.1f} images/s = "
              f"{base / float(m[4]):.3f}x")
        continue
    m = re.match(r"(vgg\d+)-(none|swwae-all)(?:-(tf32|bf16))? "
                 r"(graph|graph-fused|legacy): program .* ([0-9.]+) "
                 r"images/s", line)
    if m and (m[1], m[2], m[3] or "fp32") in ours:
        # The cell's own API against the 12 cells' default (the graph API
        # for bf16 and tf32 plans, the legacy calls for fp32 ones).
        base, cell = ours[(m[1], m[2], m[3] or "fp32")][0], float(m[5])
        where = f"{m[1]} {m[2]} {m[3] or 'fp32'}"
        if m[4] == "graph":
            print(f"graph {where}: cuDNN's graph API {cell:.1f}, legacy "
                  f"calls (the default) {base:.1f} images/s = "
                  f"{cell / base:.3f}x")
        elif m[4] == "legacy":
            print(f"graph {where}: cuDNN's graph API (the default) "
                  f"{base:.1f}, legacy calls {cell:.1f} images/s = "
                  f"{base / cell:.3f}x")
        else:
            print(f"graph-fused {where}: the graph API with the bias and "
                  f"relu in the plan {cell:.1f}, plain plans (the default) "
                  f"{base:.1f} images/s = {cell / base:.3f}x")
        continue
    m = re.match(r"(vgg\d+)-(none|swwae-all)(?:-(tf32|bf16))? noarenaws: "
                 r"program .* ([0-9.]+) images/s.*peak memory "
                 r"[^(]*\((\d+) bytes\)", line)
    if m and (m[1], m[2], m[3] or "fp32") in ours:
        o = ours[(m[1], m[2], m[3] or "fp32")]
        print(f"arena-workspace {m[1]} {m[2]} {m[3] or 'fp32'}: "
              f"convolution workspaces and padded maps in the arena's free "
              f"bytes {o[0]:.1f} images/s, peak {o[1] / 2**30:.2f} GiB; "
              f"all in buffers of their own {float(m[4]):.1f} images/s, "
              f"peak {int(m[5]) / 2**30:.2f} GiB = {o[0] / float(m[4]):.3f}x "
              f"the speed, {o[1] / int(m[5]):.3f}x the peak")
        continue
    m = re.match(r"(vgg\d+)-(none|swwae-all)(?:-(tf32|bf16))? "
                 r"(nofusion|relubias|norelubias|nopoolrelu|nopad|nopacks): "
                 r"program .* ([0-9.]+) images/s", line)
    if m and (m[1], m[2], m[3] or "fp32") in ours:
        base, cell = ours[(m[1], m[2], m[3] or "fp32")][0], float(m[5])
        # label, (the feature, without it), whether the cell has it on
        label, what, cellOn = {
            "nofusion": ("fusion", ("conv+bias+relu fused and the max-pool "
                                    "backward in relu_grad", "apart"),
                         False),
            "nopoolrelu": ("pool-relu", ("the max-pool backward in "
                                         "relu_grad", "written and read "
                                         "back"), False),
            "relubias": ("relu-bias", ("the bias gradients summed by "
                                       "relu_grad", "by bias_grad (the "
                                       "default on bf16 maps)"), True),
            "norelubias": ("relu-bias", ("the bias gradients summed by "
                                         "relu_grad (the default on f32 "
                                         "maps)", "by bias_grad"), False),
            "nopacks": ("packs", ("elementwise and pooling kernels in "
                                  "16-byte packs", "one element per item"),
                        False),
            "nopad": ("padding", ("convolutions of 3 channels on "
                                  "channel-padded copies", "as they are"),
                      False),
        }[m[4]]
        on, off = (cell, base) if cellOn else (base, cell)
        print(f"{label} {m[1]} {m[2]} "
              f"{m[3] or 'fp32'}: {what[0]} {on:.1f}, {what[1]} "
              f"{off:.1f} images/s = {on / off:.3f}x")
if peaks:
    print(f"MFU: against {gpu}'s dense datasheet peaks, TFLOP/s: " +
          ", ".join(f"{p} {t:g}" for p, t in peaks.items()))
for net in ("vgg32", "vgg16"):
    for variant in ("none", "swwae-all"):
        parts = []
        for who, table in (("netc", ours), ("PyTorch", peer)):
            base = table.get((net, variant, "fp32"))
            if not base:
                continue
            up = [f"{p} {table[(net, variant, p)][0] / base[0]:.2f}x"
                  for p in ("tf32", "bf16") if (net, variant, p) in table]
            if up:
                parts.append(f"{who} {', '.join(up)}")
        if parts:
            print(f"speed-up over fp32 {net} {variant}: {'; '.join(parts)}")
PY

note "total: $(($(date +%s) - START)) s; $( ((failed)) && echo 'SOME STAGES FAILED' || echo 'all stages passed')"
exit $failed
