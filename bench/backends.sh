#!/usr/bin/env bash
# Training throughput of the runtime's backends on the Fashion-MNIST example:
# the classifier-only step (pretrain) and the full SWWAE-all step (joint),
# cpu (oneDNN) against reference and against the same net in PyTorch on the
# same CPU (bench/peer_fmnist.py), measured in the same run.
#   bench/backends.sh [build-dir]
# The peer needs PyTorch: BENCH_PYTHON (default build/bench-venv/bin/python,
# made by `python3 -m venv build/bench-venv && build/bench-venv/bin/pip
# install torch==2.11.0`); without it the PyTorch column is left out.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One phase per trainer: the example with its train section replaced.
make_trainer() { # name decoder
  sed '/^train {/,$d' examples/fashion-mnist.net > "$work/$1.net"
  cat >> "$work/$1.net" <<NET
train {
  data fashion-mnist { subset 4096; test-subset 64; mean 72.94; std 90.02 }
  phase $1 { decoder $2; sgd lr=0.005 momentum=0.9; batch 64; epochs 1 }
}
NET
  "$BUILD/bin/netc" "$work/$1.net" -o "$work/$1.trainer" >/dev/null
}
# Images per second over steps 2..N (the first step warms up).
rate() { # trainer backend steps
  "$BUILD/bin/netrun" train "$work/$1.trainer" --backend "$2" --max-steps "$3" \
    --log-every 1 --metrics "$work/m.jsonl" >/dev/null
  python3 - "$work/m.jsonl" <<'PY'
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if '"event":"step"' in l]
rates = [s["images_per_second"] for s in steps[1:]]
print(f"{len(rates) / sum(1 / r for r in rates):.1f}")
PY
}
make_trainer pretrain none
make_trainer joint default
PY=${BENCH_PYTHON:-$BUILD/bench-venv/bin/python}
peer=""
if [[ -x $PY ]] && "$PY" -c "import torch" 2>/dev/null; then
  peer=$("$PY" bench/peer_fmnist.py 2>/dev/null)
fi
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
[[ -n $peer ]] && echo "peer: PyTorch $(echo "$peer" | awk '$1 == "version" {print $2}') on the same CPU"
printf '%-10s %12s %12s %10s %12s %12s\n' step reference cpu cpu/ref pytorch cpu/pytorch
for t in pretrain joint; do
  r=$(rate $t reference 4); c=$(rate $t cpu 40)
  line=$(printf '%-10s %10s/s %10s/s %9.1fx' "$t" "$r" "$c" "$(echo "$c / $r" | bc -l)")
  if [[ -n $peer ]]; then
    p=$(echo "$peer" | awk -v t=$t '$1 == t {print $2}')
    line+=$(printf ' %10s/s %11.2fx' "$p" "$(echo "$c / $p" | bc -l)")
  fi
  echo "$line"
done
