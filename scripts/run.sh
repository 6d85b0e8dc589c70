#!/usr/bin/env bash
# The main job: set up, then compile every example through the whole
# pipeline (parse, shape inference, mirror) and print the augmented IR.
# Output goes to out/<example>.mlir; a summary is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
mkdir -p out
for net in examples/*.net; do
  name=$(basename "$net" .net)
  build/bin/netc "$net" -o "out/$name.mlir"
  printf '%-16s %4d decoder params  %s\n' "$name" \
    "$(grep -c 'group = "decoder"' "out/$name.mlir")" \
    "$(grep -o 'names \[[^]]*\]' "out/$name.mlir" | head -1)"
done
echo "IR written to out/*.mlir"
