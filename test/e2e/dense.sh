#!/usr/bin/env bash
# Dense evaluation end to end: a small net trained on generated 12x12
# images whose every image is its own mirror image, so that the mirror view
# dense evaluation adds is the image itself. At the network's input size the
# dense programs (the fc layers as convolutions) then score every image as
# the eval program does: the same error, to the image. At a larger scale
# the images are resized and the score map averaged: still a valid error.
#   test/e2e/dense.sh BUILD_DIR
set -uo pipefail
source "$(dirname "$0")/lib.sh"

python3 - "$work/data" <<'PY'
import os, random, struct, sys
d = sys.argv[1]; os.makedirs(d)
random.seed(3)
def image(label):
    # A class's brightness and a vertical bar at a distance from the centre,
    # plus noise, mirrored so that every row is a palindrome.
    rows = []
    for r in range(12):
        row = [40 * label + random.randint(0, 30) for _ in range(6)]
        row[5 - label] = 250
        rows.append(row + row[::-1])
    return bytes(v for row in rows for v in row)
for prefix, count in (("train", 512), ("t10k", 200)):
    labels = [i % 4 for i in range(count)]
    with open(f"{d}/{prefix}-images-idx3-ubyte", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, count, 12, 12))
        for l in labels: f.write(image(l))
    with open(f"{d}/{prefix}-labels-idx1-ubyte", "wb") as f:
        f.write(struct.pack(">II", 0x801, count) + bytes(labels))
PY
"$BUILD/bin/netc" dense.net -o "$work/d.trainer" >/dev/null
out=$("$BUILD/bin/netrun" train "$work/d.trainer" --data "$work/data" --backend cpu 2>&1)
check "training ends with the dense evaluation" \
  grep -q "^\[train\] dense test error [0-9.]*% .*(scales 12, 16, each with its mirror image)" <<<"$out"
full=$("$BUILD/bin/netrun" eval "$work/d.trainer" --data "$work/data" --backend cpu 2>&1)
check "the trained net has learnt something" \
  python3 -c "import re,sys; e=float(re.search(r'error ([0-9.]+)%', sys.argv[1]).group(1)); sys.exit(e >= 50)" "$full"
# Only the input-size program: a copy of the plan with one dense scale.
cp -r "$work/d.trainer" "$work/d12.trainer"
python3 - "$work/d12.trainer/plan.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
p["eval"]["dense_scales"] = [12]
json.dump(p, open(sys.argv[1], "w"))
PY
dense=$("$BUILD/bin/netrun" eval "$work/d12.trainer" --data "$work/data" --backend cpu --scheme dense 2>&1)
check "dense at the input size gives the full evaluation's error, image for image" \
  test "$dense" == "dense $full"
both=$("$BUILD/bin/netrun" eval "$work/d.trainer" --data "$work/data" --backend cpu --scheme dense 2>&1)
check "dense over scales 12 and 16 gives an error" grep -q "^dense test error [0-9.]*% ([0-9]* of 200 wrong)" <<<"$both"
out=$("$BUILD/bin/netrun" eval "$work/d.trainer" --data "$work/data" --scheme crop 2>&1); rc=$?
check "an unknown --scheme is an error" test $rc -eq 1 -a -n "$(grep -- "--scheme must be full or dense, got 'crop'" <<<"$out")"
sed 's/  eval full dense { scales 12 16 }/  eval full/' dense.net > "$work/plain.net"
"$BUILD/bin/netc" "$work/plain.net" -o "$work/plain.trainer" >/dev/null
cp "$work/d.trainer/checkpoint.safetensors" "$work/plain.trainer/"
out=$("$BUILD/bin/netrun" eval "$work/plain.trainer" --data "$work/data" --scheme dense 2>&1); rc=$?
check "dense evaluation of a trainer compiled without it says so" \
  test $rc -eq 1 -a -n "$(grep "no dense evaluation programs" <<<"$out")"

echo "dense: $passed passed, $failed failed"
((failed == 0))
