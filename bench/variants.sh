#!/usr/bin/env bash
# The paper's comparison on Fashion-MNIST: one .net file, seven models.
#   bench/variants.sh [SEEDS...]     (default: seed 1)
#   VARIANTS="none swwae-all" JOINT_EPOCHS=3 bench/variants.sh 1 2
#     (a subset of the models; the joint phase run for that many epochs)
# Compiles examples/fashion-mnist.net with --augment=<variant> for the seven
# variants, trains each with the cpu backend and the same seed (same
# initialisation of the shared layers, same batches), and prints the final
# test error of each, per seed, plus the mean. The classifier gets the same
# training steps in every model (pretrain + joint); the decoder-only phases
# are skipped for `none` and the stacked phase for the -layerwise models.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
seeds=("$@"); ((${#seeds[@]})) || seeds=(1)
read -r -a variants <<< "${VARIANTS:-none sae-first sae-all sae-layerwise swwae-first swwae-all swwae-layerwise}"
out=out/variants${JOINT_EPOCHS:+-joint$JOINT_EPOCHS}; mkdir -p "$out"
net=examples/fashion-mnist.net
if [[ -n ${JOINT_EPOCHS:-} ]]; then
  net=$out/fashion-mnist.net
  sed "/phase joint/s/epochs [0-9]*/epochs $JOINT_EPOCHS/" examples/fashion-mnist.net > "$net"
fi
for v in "${variants[@]}"; do
  for s in "${seeds[@]}"; do
    t="$out/$v-seed$s.trainer"
    rm -rf "$t"
    "$BUILD/bin/netc" "$net" --augment="$v" -o "$t" 2>/dev/null >/dev/null
    "$BUILD/bin/netrun" train "$t" --seed "$s" --log-every 100000 \
      --metrics "$out/$v-seed$s.jsonl" > "$out/$v-seed$s.log"
  done
done
python3 - "$out" "${variants[*]}" "${seeds[@]}" <<'PY'
import json, sys
out, variants, seeds = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
print("| model | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |")
print("|---|" + "---|" * (len(seeds) + 1))
for v in variants:
    errs = []
    for s in seeds:
        evals = [json.loads(l) for l in open(f"{out}/{v}-seed{s}.jsonl")
                 if '"eval"' in l]
        errs.append(evals[-1]["test_error"])
    print(f"| {v} | " + " | ".join(f"{e:.2f}" for e in errs) +
          f" | {sum(errs)/len(errs):.2f} |")
PY
