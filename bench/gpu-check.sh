#!/usr/bin/env bash
# The GPU machine's one script (issue 7, item 5):
#   bench/gpu-check.sh OUTDIR
# builds the runtime there (no compiler: no MLIR, no oneDNN; CUDA on, every
# core), runs netc-gpu-tests (every cuda kernel and op against the reference
# backend, the every-layer step of the seven variants), a 20-step fp32
# training parity check of the reference (CPU) against the cuda backend on
# Fashion-MNIST from the same initial parameters and data (losses within
# 1e-4 relative), `netrun bench` on the benchmark trainers, the PyTorch peer
# (bench/peer_gpu.py) where torch imports, and netc-runtime-tests. Every
# stage logs to OUTDIR/<stage>.log and has its own timeout, all within a
# deadline of 7m50s, so one hang cannot eat the budget; OUTDIR/summary.txt
# lists each stage's result and the benchmark ratios.
#
# How a session runs it:
#   1. On a development machine (it has the compiler), after building netc:
#        bench/gpu-trainers.sh
#      which writes bench/gpu-trainers/ (untracked and not git-ignored, so
#      the device tool's copy of the working tree includes it; no `carry`).
#   2. With the device tool:
#        run  command: bench/gpu-check.sh $OUT/gpu   timeout_s: 540
#      (the script stops itself by 7m50s; 540 s leaves the rest of a
#      15-minute device budget to rerun once), then read $OUT/gpu/summary.txt
#      and the stage logs from the returned files.
#   Stages can be skipped to rerun only some: GPU_CHECK_SKIP="peer
#   runtime-tests" (stages: build gpu-tests parity bench peer runtime-tests);
#   GPU_CHECK_BUILD_DIR names the build folder (default build-gpu).
#
# Exit status: 0 when every stage that ran passed (a missing torch or a
# cell that cuDNN refuses is reported, not failed), 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: bench/gpu-check.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
BUILD=${GPU_CHECK_BUILD_DIR:-build-gpu}
TRAINERS=bench/gpu-trainers
START=$(date +%s)
DEADLINE=$((START + 470))
SUMMARY=$OUT/summary.txt
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
  echo "== $name (limit ${limit}s) ==" >&2
  # Through bash -c so that a stage may be a function (exported below);
  # timeout signals the whole process group, background children included.
  timeout -k 5 "$limit" bash -c '"$@"' "$name" "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  if ((rc == 0)); then
    note "$name: ok ($(($(date +%s) - s)) s)"
  elif ((rc == 124 || rc == 137)); then
    note "$name: TIMED OUT after ${limit}s (see $name.log)"; failed=1
  else
    note "$name: FAILED, exit $rc (see $name.log)"; failed=1
  fi
  return $rc
}

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
# cuDNN may be only in PyTorch's wheel (nvidia/cudnn): point CMake there.
build() {
  if [[ -z ${CUDNN_ROOT:-} ]] && ! ls /usr/local/cuda/lib*/libcudnn.so* \
      /usr/lib/x86_64-linux-gnu/libcudnn.so* >/dev/null 2>&1; then
    CUDNN_ROOT=$(python3 -c 'import nvidia.cudnn, os; print(os.path.dirname(nvidia.cudnn.__file__))' 2>/dev/null || true)
    export CUDNN_ROOT
    echo "CUDNN_ROOT=$CUDNN_ROOT"
  fi
  local gen=()
  command -v ninja >/dev/null && gen=(-G Ninja)
  [[ -f $BUILD/CMakeCache.txt ]] && gen=()
  cmake -S . -B "$BUILD" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DNETC_BUILD_COMPILER=OFF -DNETC_WITH_ONEDNN=OFF -DNETC_WITH_CUDA=ON &&
    cmake --build "$BUILD" -j "$(nproc)" --target netrun netc-runtime-tests \
      netc-gpu-tests
}
export OUT BUILD TRAINERS
export -f build
if ! stage build 240 build; then
  note "the build failed: nothing else can run"
  exit 1
fi
NETRUN=$BUILD/bin/netrun
export NETRUN

#--- the GPU tests ---------------------------------------------------------
stage gpu-tests 120 env NETC_STEP_PLAN_DIR="$PWD/$TRAINERS/every" \
  "$BUILD/bin/netc-gpu-tests"
grep -E '^\[  (PASSED|FAILED) ' "$OUT/gpu-tests.log" >>"$SUMMARY" 2>/dev/null
if grep -q 'no CUDA device; skipping' "$OUT/gpu-tests.log" 2>/dev/null; then
  note "gpu-tests: SKIPPED: the GPU machine shows no CUDA device"
  failed=1
fi
"$NETRUN" info "$TRAINERS/fmnist" 2>&1 | grep '^cuda backend' >>"$SUMMARY"

#--- parity: reference (CPU) against cuda, 20 steps ------------------------
# The same trainer, seed and data for both; the reference runs of both
# trainers go in parallel (one core each) while the GPU waits.
parity() {
  local data=$PWD/$TRAINERS/fmnist-data pids=() t b
  for t in fmnist fmnist-joint; do
    for b in reference cuda; do
      rm -rf "$OUT/parity/$t-$b"
      mkdir -p "$OUT/parity"
      cp -r "$TRAINERS/$t" "$OUT/parity/$t-$b"
    done
    "$NETRUN" train "$OUT/parity/$t-reference" --backend reference \
      --max-steps 20 --log-every 1 --seed 1 --data "$data" \
      --metrics "$OUT/parity/$t-reference.jsonl" \
      >"$OUT/parity/$t-reference.log" 2>&1 &
    pids+=($!)
  done
  local rc=0
  for t in fmnist fmnist-joint; do
    "$NETRUN" train "$OUT/parity/$t-cuda" --backend cuda --max-steps 20 \
      --log-every 1 --seed 1 --data "$data" \
      --metrics "$OUT/parity/$t-cuda.jsonl" >"$OUT/parity/$t-cuda.log" 2>&1 ||
      rc=1
  done
  # The data-parallel trainer on one rank: its all-reduces go through NCCL.
  rm -rf "$OUT/parity/dp-cuda" && cp -r "$TRAINERS/fmnist-joint-dp" "$OUT/parity/dp-cuda"
  "$NETRUN" train "$OUT/parity/dp-cuda" --backend cuda --max-steps 20 \
    --log-every 1 --seed 1 --data "$data" \
    --metrics "$OUT/parity/dp-cuda.jsonl" >"$OUT/parity/dp-cuda.log" 2>&1 || rc=1
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  ((rc == 0)) || { tail -5 "$OUT"/parity/*.log; return 1; }
  python3 - "$OUT/parity" <<'PY'
import json, sys
d, ok = sys.argv[1], True
for t in ("fmnist", "fmnist-joint"):
    def losses(b):
        return [(r["global_step"], r["loss"], r["terms"])
                for r in map(json.loads, open(f"{d}/{t}-{b}.jsonl"))
                if r.get("event") == "step"]
    ref, gpu = losses("reference"), losses("cuda")
    if len(ref) != 20 or len(gpu) != 20:
        print(f"{t}: {len(ref)} reference and {len(gpu)} cuda steps, not 20")
        ok = False
        continue
    worst = 0.0
    for (s, a, ta), (_, b, tb) in zip(ref, gpu):
        rel = abs(a - b) / max(abs(a), 1e-30)
        worst = max(worst, rel)
        terms = " ".join(f"{k} {ta[k]:.6g}/{tb.get(k, float('nan')):.6g}"
                         for k in ta)
        print(f"{t} step {s}: reference {a:.7g} cuda {b:.7g} "
              f"rel {rel:.2e}  {terms}")
    good = worst <= 1e-4
    ok &= good
    print(f"parity {t}: 20 steps, max relative loss difference {worst:.2e} "
          f"({'ok' if good else 'ABOVE 1e-4'})")
# One rank through NCCL computes what no communicator does: the same losses
# (up to cuDNN choosing other algorithms in another process).
def steps(name):
    return [r["loss"] for r in map(json.loads, open(f"{d}/{name}.jsonl"))
            if r.get("event") == "step"]
dp, plain = steps("dp-cuda"), steps("fmnist-joint-cuda")
worst = max((abs(a - b) / max(abs(b), 1e-30) for a, b in zip(dp, plain)),
            default=float("inf"))
same = len(dp) == 20 and worst <= 1e-4
ok &= same
print(f"parity data-parallel: NCCL on one rank, 20 steps, max relative loss "
      f"difference from the plain trainer {worst:.2e} "
      f"({'ok' if same else 'ABOVE 1e-4'})")
sys.exit(0 if ok else 1)
PY
}
export -f parity
stage parity 150 parity
grep '^parity ' "$OUT/parity.log" >>"$SUMMARY" 2>/dev/null

#--- benchmark: netrun bench on the carried trainers ----------------------
bench() {
  local t steps rc=0
  for t in vgg32-none vgg32-swwae-all vgg16-none vgg16-swwae-all; do
    steps=30
    [[ $t == vgg16-* ]] && steps=12
    "$NETRUN" bench "$TRAINERS/$t" --program step.joint --backend cuda \
      --steps "$steps" >"$OUT/bench-$t.log" 2>&1 || {
      echo "FAILED (exit $?)" >>"$OUT/bench-$t.log"
      rc=1
    }
    sed "s/^/$t: /" "$OUT/bench-$t.log"
  done
  return $rc
}
export -f bench
stage bench 150 bench
grep -E 'images/s|FAILED|error' "$OUT/bench.log" >>"$SUMMARY" 2>/dev/null

#--- the PyTorch peer --------------------------------------------------------
if python3 -c 'import torch' >/dev/null 2>&1; then
  stage peer 150 python3 bench/peer_gpu.py
  grep '^peer' "$OUT/peer.log" >>"$SUMMARY" 2>/dev/null
else
  note "peer: skipped: python3 cannot import torch"
fi

#--- ratios ------------------------------------------------------------------
python3 - "$OUT" <<'PY' | tee -a "$SUMMARY"
import re, sys
d = sys.argv[1]
ours, peer = {}, {}
try:
    for line in open(f"{d}/bench.log"):
        m = re.match(r"(vgg\d+)-(\S+): program .* ([0-9.]+) images/s.*peak "
                     r"memory .*\((\d+) bytes\)", line)
        if m:
            ours[(m[1], m[2])] = (float(m[3]), int(m[4]))
except OSError:
    pass
try:
    for line in open(f"{d}/peer.log"):
        m = re.match(r"peer (\S+) (\S+) (\S+) batch \d+: ([0-9.]+) images/s, "
                     r"peak (\d+)", line)
        if m:
            peer[(m[1], m[2], m[3])] = (float(m[4]), int(m[5]))
except OSError:
    pass
for (net, variant), (ips, mem) in sorted(ours.items()):
    p = peer.get((net, variant, "fp32"))
    if p:
        print(f"ratio {net} {variant} fp32: netc {ips:.1f} / PyTorch "
              f"{p[0]:.1f} images/s = {ips / p[0]:.2f}x; peak memory netc "
              f"{mem / 2**30:.2f} GiB, PyTorch {p[1] / 2**30:.2f} GiB")
    else:
        print(f"ratio {net} {variant} fp32: netc {ips:.1f} images/s, "
              f"peak {mem / 2**30:.2f} GiB (no peer figure)")
print("tf32 and bf16 cells: netc has no tf32/bf16 path on the cuda "
      "backend yet (peer figures above only)")
PY

#--- the runtime's own tests (CPU; last: they need no GPU) ------------------
stage runtime-tests 90 "$BUILD/bin/netc-runtime-tests"
grep -E '^\[  (PASSED|FAILED) ' "$OUT/runtime-tests.log" >>"$SUMMARY" 2>/dev/null

note "total: $(($(date +%s) - START)) s; $( ((failed)) && echo 'SOME STAGES FAILED' || echo 'all stages passed')"
exit $failed
