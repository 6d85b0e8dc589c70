#!/usr/bin/env bash
# Compile-time and memory-plan benchmark of the compiler (CPU only).
#   bench/compile.sh [build-dir]
# Times `netc examples/vgg16.net --augment=swwae-all` through the whole
# pipeline to a trainer (best and median of 10 runs), then prints the memory
# plan's peak activation bytes per program at batch 64. The peer figures for
# the same net (PyTorch 2.11 on an H200, from shared/FACTS.md) are printed
# beside them; they were not measured here.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
NETC=$BUILD/bin/netc
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

times=()
for i in $(seq 10); do
  s=$(date +%s.%N)
  "$NETC" examples/vgg16.net --augment=swwae-all -o "$out/vgg16.trainer" >/dev/null
  e=$(date +%s.%N)
  times+=("$(echo "$e - $s" | bc -l)")
done
sorted=$(printf '%s\n' "${times[@]}" | sort -g)
best=$(echo "$sorted" | head -1)
median=$(echo "$sorted" | sed -n 5p)
kernels=$(python3 -c "import json,sys; p=json.load(open('$out/vgg16.trainer/plan.json')); print(sum(len(v['kernels']) for v in p['programs'].values()))")
programs=$(python3 -c "import json; print(', '.join(json.load(open('$out/vgg16.trainer/plan.json'))['programs']))")
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
printf 'compile vgg16 swwae-all (programs %s; %s kernels): best %.3f s, median %.3f s (target < 2 s)\n' \
  "$programs" "$kernels" "$best" "$median"
echo
echo "memory plan, VGG-16 SWWAE-all, fp32, batch 64 (activations, gradients, workspace of one step):"
"$NETC" examples/vgg16.net --augment=swwae-all -emit=planned --stats --batch 64 -o /dev/null
params=$(python3 -c "
import json; p=json.load(open('$out/vgg16.trainer/plan.json'))
n=0
for q in p['params']:
  k=1
  for d in q['shape']: k*=d
  n+=k
print(n)")
echo "parameters: $params floats = $(echo "$params*4/1048576" | bc) MiB (+ the same again for momentum)"
echo "peer (PyTorch, whole-process peak incl. parameters): fp32 17 GiB, bf16 autocast 7.6 GiB"
