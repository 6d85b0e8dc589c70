#!/usr/bin/env bash
# Data-parallel training over MPI (mpirun -np 2) against one process:
#   - 2 ranks at batch B end with the parameters of 1 process at batch 2B
#     (dropout included: each rank draws its slice of the global mask);
#   - a 2-rank run stopped and resumed ends where the uninterrupted one does;
#   - a resume with another rank count inside a phase is refused;
#   - a rank that diverges or dies ends the job with one message naming it;
#   - rank 0 alone writes metrics.
# Skips (one line) where netrun was built without MPI or mpirun is absent.
#   test/e2e/data-parallel.sh BUILD_DIR
set -uo pipefail
source "$(dirname "$0")/lib.sh"
NETC=$BUILD/bin/netc NETRUN=$BUILD/bin/netrun
if ! command -v mpirun >/dev/null || ! grep -q "NETC_WITH_MPI:BOOL=ON" "$BUILD/CMakeCache.txt"; then
  echo "data-parallel: skipped (no MPI in this build)"
  echo "dp: 0 passed, 0 failed"
  exit 0
fi
# Two ranks on a 2-core machine: one thread each; root is allowed in CI.
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi() { timeout 120 mpirun --oversubscribe -np "$@"; }

# Largest |a - b| over every parameter, relative to the largest |a|.
cat > "$work/diff.py" <<'PY'
import json, struct, sys, array
def read(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for k, v in header.items():
        if k == "__metadata__" or k.startswith("momentum/"):
            continue
        a = array.array("f")
        a.frombytes(data[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
        out[k] = a
    return out
a, b = read(sys.argv[1]), read(sys.argv[2])
assert a.keys() == b.keys() and len(a) == 12, (a.keys(), b.keys())
print(max(max(abs(x - y) for x, y in zip(a[k], b[k])) / max(max(map(abs, a[k])), 1e-30)
          for k in a))
PY
below() { python3 -c "import sys; sys.exit(not float('$1') <= float('$2'))"; }

"$NETC" data-parallel.net -o "$work/dp.trainer" >/dev/null 2>&1
sed -e 's/batch 8/batch 16/g' -e '/data-parallel$/d' data-parallel.net > "$work/one.net"
"$NETC" "$work/one.net" -o "$work/one.trainer" >/dev/null 2>&1

out=$(mpi 2 "$NETRUN" train "$work/dp.trainer" --log-every 1 --metrics "$work/dp.jsonl" 2>&1)
check "2 ranks train" grep -q "^\[joint\] checkpoint" <<<"$out"
check "... saying so once" test "$(grep -c '^data-parallel: 2 ranks (mpi)' <<<"$out")" -eq 1
check "... rank 0 alone writing metrics (30 steps, 3 evaluations)" \
  test "$(grep -c '"event":"step"' "$work/dp.jsonl")" -eq 30 -a "$(grep -c '"event":"eval"' "$work/dp.jsonl")" -eq 3
"$NETRUN" train "$work/one.trainer" >/dev/null 2>&1
# The two runs sum each gradient in another order (two halves of the batch,
# then the halves), a few float32 roundings apart (~1e-7 relative) per step;
# over 30 SGD steps those stay under 1e-5 of the parameters' scale.
d=$(python3 "$work/diff.py" "$work/one.trainer/checkpoint.safetensors" "$work/dp.trainer/checkpoint.safetensors")
check "2 ranks at batch 8 = 1 process at batch 16 (max relative difference $d <= 1e-5)" below "$d" 1e-5

# Stopped after 7 steps (inside the first phase) and resumed: the same end,
# bit for bit.
cp -r "$work/dp.trainer" "$work/resume.trainer"
rm -f "$work/resume.trainer"/checkpoint.*
mpi 2 "$NETRUN" train "$work/resume.trainer" --max-steps 7 >/dev/null 2>&1
out=$(mpi 1 "$NETRUN" train "$work/resume.trainer" --resume 2>&1)
check "a resume with another rank count inside a phase is refused" \
  grep -q "written by a run of 2 rank(s) at step 7 of phase 1; .* resume it with 2 rank(s)" <<<"$out"
mpi 2 "$NETRUN" train "$work/resume.trainer" --resume >/dev/null 2>&1
d=$(python3 "$work/diff.py" "$work/dp.trainer/checkpoint.safetensors" "$work/resume.trainer/checkpoint.safetensors")
check "a 2-rank run stopped and resumed ends where the whole run does ($d)" below "$d" 0

# A trainer compiled without data-parallel: one message, no training.
out=$(mpi 2 "$NETRUN" train "$work/one.trainer" 2>&1)
check "a trainer without data-parallel is refused on 2 ranks, once" \
  test "$(grep -c 'compiled without --data-parallel' <<<"$out")" -eq 1

# Ranks that would start apart (here: another seed on rank 1, MPI's MPMD
# form) are stopped together, with one message naming the difference.
out=$(timeout 120 mpirun --oversubscribe -np 1 "$NETRUN" train "$work/dp.trainer" --restart --seed 1 \
  : -np 1 "$NETRUN" train "$work/dp.trainer" --restart --seed 2 2>&1); rc=$?
check "ranks that would start from other states are stopped (exit status $rc)" test $rc -ne 0 -a $rc -ne 124
check "... with one message naming the rank and the seeds" \
  test "$(grep -c 'rank 1 would start from another state than rank 0 (.*seed 2.*seed 1' <<<"$out")" -eq 1
# An error on one rank alone ends the job with that rank's message.
out=$(timeout 120 mpirun --oversubscribe -np 1 "$NETRUN" train "$work/dp.trainer" --restart \
  : -np 1 "$NETRUN" train "$work/dp.trainer" --restart --weights "$work/none.safetensors" 2>&1); rc=$?
check "an error on one rank ends the job (exit status $rc)" test $rc -ne 0 -a $rc -ne 124
check "... with that rank's message" grep -q "netrun: rank 1 of 2: error: .*none.safetensors" <<<"$out"

# Divergence: one message naming the rank(s), and the job ends.
sed 's/lr=0.02/lr=1e5/' data-parallel.net > "$work/nan.net"
"$NETC" "$work/nan.net" -o "$work/nan.trainer" >/dev/null 2>&1
out=$(mpi 2 "$NETRUN" train "$work/nan.trainer" 2>&1); rc=$?
check "a diverging run ends (exit status $rc)" test $rc -ne 0 -a $rc -ne 124
check "... with one message naming the rank" \
  test "$(grep -cE 'is (NaN|[+-]infinity) on ranks? [01]' <<<"$out")" -eq 1

# A rank killed mid-run: the job ends within seconds, the launcher naming it.
sed 's/epochs 1; steps 12 }/epochs 1000 }/' data-parallel.net > "$work/long.net"
"$NETC" "$work/long.net" -o "$work/long.trainer" >/dev/null 2>&1
mpi 2 "$NETRUN" train "$work/long.trainer" --log-every 100000 >"$work/kill.out" 2>&1 &
job=$!
victim=
for _ in $(seq 100); do
  sleep 0.2
  for p in $(pgrep -f "netrun train $work/long.trainer"); do
    tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1 && victim=$p
  done
  [[ -n $victim ]] && grep -q "^phase 1" "$work/kill.out" && break
done
kill -9 "$victim" 2>/dev/null
start=$(date +%s)
wait "$job"; rc=$?
took=$(($(date +%s) - start))
check "a killed rank ends the job (exit status $rc) within 10 s ($took s)" test $rc -ne 0 -a $rc -ne 124 -a $took -le 10
check "... naming the rank" grep -q "rank 1 .*exited on signal 9" "$work/kill.out"

echo "dp: $passed passed, $failed failed"
((failed == 0))
