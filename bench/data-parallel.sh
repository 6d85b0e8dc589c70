#!/usr/bin/env bash
# Data-parallel training on this machine's cores: examples/fashion-mnist.net
# (SWWAE-all), global batch 64, one process (all cores) against 2 ranks
# under mpirun (one thread each, batch 32 each, gradients all-reduced), for
# the classifier step and the SWWAE-all joint step; and the same two setups
# in PyTorch (one process; DistributedDataParallel over gloo), measured in
# the same run (bench/peer_ddp.py). Synthetic data already in memory
# (`netrun bench`): the step and its communication alone.
#   bench/data-parallel.sh [build-dir]
# The peer needs PyTorch: BENCH_PYTHON (default build/bench-venv/bin/python,
# see bench/backends.sh); without it the PyTorch columns are left out.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
STEPS=${STEPS:-30}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cores=$(nproc)

"$BUILD/bin/netc" examples/fashion-mnist.net --data-parallel -o "$work/t.trainer" >/dev/null 2>&1
# images/s from `netrun bench`'s line.
rate() { grep -oP '[0-9.]+(?= images/s)'; }
netc_rate() { # program ranks
  if (($2 == 1)); then
    OMP_NUM_THREADS=$cores "$BUILD/bin/netrun" bench "$work/t.trainer" \
      --program "$1" --batch 64 --steps "$STEPS" --backend cpu | rate
  else
    OMP_NUM_THREADS=$((cores / $2 > 0 ? cores / $2 : 1)) mpirun --oversubscribe \
      -np "$2" "$BUILD/bin/netrun" bench "$work/t.trainer" --program "$1" \
      --batch $((64 / $2)) --steps "$STEPS" --backend cpu | rate
  fi
}
PY=${BENCH_PYTHON:-$BUILD/bench-venv/bin/python}
declare -A torch
if [[ -x $PY ]] && "$PY" -c 'import torch' 2>/dev/null; then
  for r in 1 2; do
    while read -r k v; do torch[$k$r]=$v; done < <("$PY" bench/peer_ddp.py "$r" 64 "$STEPS")
  done
fi
echo "global batch 64, $cores cores, $(date -u +%F)"
printf "%-18s %10s %10s %8s" step "netc 1" "netc 2r" "2r/1"
[[ -n ${torch[version1]:-} ]] && printf " %10s %10s %8s %12s" "torch 1" "torch DDP2" "2r/1" "netc/torch 2r"
echo
for step in pretrain joint; do
  one=$(netc_rate "step.$step" 1); two=$(netc_rate "step.$step" 2)
  printf "%-18s %10.1f %10.1f %7.2fx" "$step" "$one" "$two" "$(python3 -c "print($two / $one)")"
  if [[ -n ${torch[version1]:-} ]]; then
    t1=${torch[${step}1]} t2=${torch[${step}2]}
    printf " %10.1f %10.1f %7.2fx %11.2fx" "$t1" "$t2" "$(python3 -c "print($t2 / $t1)")" \
      "$(python3 -c "print($two / $t2)")"
  fi
  echo
done
[[ -n ${torch[version1]:-} ]] && echo "PyTorch ${torch[version1]}, gloo"
exit 0
