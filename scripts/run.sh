#!/usr/bin/env bash
# The main job: set up, compile every example through the whole pipeline,
# then train examples/fashion-mnist.net on Fashion-MNIST with the cpu backend
# (its four-phase schedule), evaluate it, and write its reconstructions.
# Everything lands in out/: the trainers, the training log and metrics, and
# out/fashion-mnist.trainer/reconstructions.png.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
mkdir -p out

echo "== compile the examples =="
for net in examples/*.net; do
  name=$(basename "$net" .net)
  build/bin/netc "$net" -o "out/$name.trainer" >/dev/null
  build/bin/netc "$net" -emit=mirrored -o "out/$name.mlir"
  printf '%-14s %s\n' "$name" "$(build/bin/netrun info "out/$name.trainer" | sed -n 3p)"
done

echo "== train examples/fashion-mnist.net =="
rm -f out/fashion-mnist.trainer/checkpoint.*
build/bin/netrun train out/fashion-mnist.trainer --log-every 200 \
  --metrics out/fashion-mnist.metrics.jsonl | tee out/fashion-mnist.log
build/bin/netrun eval out/fashion-mnist.trainer
build/bin/netrun reconstruct out/fashion-mnist.trainer --count 12
