#!/usr/bin/env bash
# Training throughput of the cpu backend against PyTorch on the same CPU, on
# the Fashion-MNIST example's net, measured in the same run: three steps of
# the schedule at batch 64 and 16,
#   pretrain  the classifier alone (step 1),
#   decoders  the SWWAE layerwise-decoder step, encoder and classifier
#             frozen (step 2),
#   joint     the SWWAE-all joint step, every parameter (step 4),
# then what the cpu backend's blocked layouts and conv+ReLU fusion each buy
# (the joint and pretrain steps with NETC_CPU_LAYOUT=plain, and with
# NETC_CPU_FUSION=off), and where a joint step's time goes (netrun bench
# --profile).
#   bench/backends.sh [build-dir] [repeats]
# Both sides time steps on synthetic data already in memory (no loading):
# netc with `netrun bench`, PyTorch with bench/peer_fmnist.py (the same net,
# loss terms and SGD). Each figure is the median of `repeats` (3) runs, the
# two sides alternating, since a shared 2-core VM drifts. The peer needs
# PyTorch: BENCH_PYTHON (default build/bench-venv/bin/python, made by
# `python3 -m venv build/bench-venv && build/bench-venv/bin/pip install
# torch==2.11.0`); without it only netc's column is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
REPEATS=${2:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
BATCHES="64 16"
STEPS="pretrain decoders joint"

# One phase per trainer: the example with its train section replaced.
make_trainer() { # step batch
  local phase
  case $1 in
  pretrain) phase="decoder none" ;;
  decoders) phase="decoder layerwise; freeze encoder classifier" ;;
  joint) phase="decoder default" ;;
  esac
  sed '/^train {/,$d' examples/fashion-mnist.net > "$work/$1-$2.net"
  cat >> "$work/$1-$2.net" <<NET
train {
  data fashion-mnist { mean 72.94; std 90.02 }
  phase $1 { $phase; sgd lr=0.005 momentum=0.9 decay=5e-4; batch $2; epochs 1 }
}
NET
  "$BUILD/bin/netc" "$work/$1-$2.net" -o "$work/$1-$2.trainer" >/dev/null
}
# netc's images/s of one trainer (about 2560 images after 3 warm-up steps).
netc_rate() { # step batch [env assignments]
  local t="$work/$1-$2.trainer" b=$2
  shift 2
  env "$@" "$BUILD/bin/netrun" bench "$t" --backend cpu \
    --steps $((2560 / b)) | sed -E 's/.* ([0-9.]+) images\/s.*/\1/'
}
median() { sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

for s in $STEPS; do for b in $BATCHES; do make_trainer $s $b; done; done
PY=${BENCH_PYTHON:-$BUILD/bench-venv/bin/python}
have_peer=0
if [[ -x $PY ]] && "$PY" -c "import torch" 2>/dev/null; then have_peer=1; fi
: > "$work/netc" ; : > "$work/peer"
for ((r = 0; r < REPEATS; r++)); do
  if ((have_peer)); then
    "$PY" bench/peer_fmnist.py $BATCHES >> "$work/peer"
  fi
  for s in $STEPS; do for b in $BATCHES; do
    echo "$s $b $(netc_rate $s $b)" >> "$work/netc"
  done; done
  for s in pretrain joint; do
    echo "$s-plain 64 $(netc_rate $s 64 NETC_CPU_LAYOUT=plain)" >> "$work/netc"
    echo "$s-nofusion 64 $(netc_rate $s 64 NETC_CPU_FUSION=off)" >> "$work/netc"
  done
done
get() { # file step batch
  awk -v s="$1" -v b="$2" '$1 == s && $2 == b {print $3}' "$3" | median
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%F)"
if ((have_peer)); then
  echo "peer: PyTorch $(awk '$1 == "version" {print $2; exit}' "$work/peer") on the same CPU, $(nproc) threads"
fi
echo "images/s, median of $REPEATS runs"
printf '%-10s %6s %12s %12s %12s\n' step batch "netc cpu" pytorch netc/pytorch
for s in $STEPS; do for b in $BATCHES; do
  c=$(get $s $b "$work/netc")
  line=$(printf '%-10s %6s %12s' $s $b "$c")
  if ((have_peer)); then
    p=$(get $s $b "$work/peer")
    line+=$(printf ' %12s %11.2fx' "$p" "$(echo "$c / $p" | bc -l)")
  fi
  echo "$line"
done; done
echo
echo "what the layouts and the fusion buy (batch 64, netc cpu, images/s):"
printf '%-10s %12s %16s %16s\n' step all "plain layouts" "no relu fusion"
for s in pretrain joint; do
  a=$(get $s 64 "$work/netc")
  p=$(get $s-plain 64 "$work/netc")
  f=$(get $s-nofusion 64 "$work/netc")
  printf '%-10s %12s %9s %5.2fx %9s %5.2fx\n' $s "$a" "$p" \
    "$(echo "$a / $p" | bc -l)" "$f" "$(echo "$a / $f" | bc -l)"
done
echo
echo "where a joint step's time goes (batch 64):"
"$BUILD/bin/netrun" bench "$work/joint-64.trainer" --backend cpu --steps 20 \
  --profile | sed -n '2,12p'
