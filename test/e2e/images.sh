#!/usr/bin/env bash
# Image folders end to end: tools/make-image-folder.py writes a tiny folder
# (4 classes of synthetic JPEGs and PNGs and crops of SciPy's photographs);
# examples/images.net, shortened to 8 epochs, trains on it and its loss must
# fall; `netrun data` times the loader. Then every bad input: each must stop
# netrun with exit 1 and one error naming the file and the problem, leaving
# the checkpoint of the good run as it was; with skip-bad a bad image is
# counted instead. Prints "images: N passed, M failed".
#   test/e2e/images.sh BUILD_DIR
set -uo pipefail
source "$(dirname "$0")/lib.sh"
NETC=$BUILD/bin/netc
NETRUN=$BUILD/bin/netrun
# Debian's Python, which has python3-pil and python3-scipy.
PY=/usr/bin/python3
MAKE=../../tools/make-image-folder.py

"$PY" "$MAKE" "$work/good" --per-class 16 --val 6 || exit 1
# Variants of the example: fewer epochs; without `scale` (so an image
# smaller than the crop is an error); 5 classes; skip-bad (with dense
# evaluation, one scale of it above the training scales: its program's
# input is larger than any training crop).
sed 's/epochs 10/epochs 8/' ../../examples/images.net >"$work/images.net"
sed 's/scale 72..96; //' "$work/images.net" >"$work/noscale.net"
sed 's/classes 4/classes 5/; s/fc5: fc 4/fc5: fc 5/' "$work/images.net" >"$work/five.net"
sed 's/channels rgb/channels rgb; skip-bad/; s/eval single-crop/eval single-crop dense { scales 64 72 104 }/' \
  "$work/images.net" >"$work/skip.net"
for t in images noscale five skip; do
  "$NETC" "$work/$t.net" -o "$work/$t.trainer" >/dev/null || exit 1
done

"$NETRUN" train "$work/images.trainer" --data "$work/good" --log-every 1 \
  --metrics "$work/metrics.jsonl" >"$work/train.log" 2>&1
rc=$?
check "training on the tiny folder exits 0" test $rc -eq 0
check "... and evaluates on val/" grep -q "test error .* of 24 wrong" "$work/train.log"
check "... and its loss falls" "$PY" - "$work/metrics.jsonl" <<'PY'
import json, sys
ms = [m for m in map(json.loads, open(sys.argv[1])) if m["event"] == "step"]
k = 4
first = sum(m["terms"]["classification"] for m in ms[:k]) / k
last = sum(m["terms"]["classification"] for m in ms[-k:]) / k
print(f"     classification loss: first {k} steps {first:.4f} -> last {k} {last:.4f}")
sys.exit(0 if last < 0.85 * first else 1)
PY
# Stopped after 10 steps and resumed: the same batches (queued ahead on
# the workers), so the same final loss as the run straight through.
cp -r "$work/images.trainer" "$work/resumed.trainer"
rm -f "$work"/resumed.trainer/checkpoint.*
"$NETRUN" train "$work/resumed.trainer" --data "$work/good" --max-steps 10 >/dev/null 2>&1 &&
  "$NETRUN" train "$work/resumed.trainer" --data "$work/good" --resume --log-every 1 \
    --metrics "$work/resumed.jsonl" >/dev/null 2>&1
check "a stopped and resumed run ends with the same loss" "$PY" - \
  "$work/metrics.jsonl" "$work/resumed.jsonl" <<'PY'
import json, sys
last = [[m for m in map(json.loads, open(f)) if m["event"] == "step"][-1]
        for f in sys.argv[1:]]
sys.exit(0 if last[0]["loss"] == last[1]["loss"] and last[0]["step"] == last[1]["step"] else 1)
PY
out=$("$NETRUN" data "$work/images.trainer" --data "$work/good" --workers 2 2>&1)
check "netrun data times the loader" \
  grep -qE '^data train \(images\): 64 images in batches of 64 in [0-9.]+ s: [0-9.]+ images/s, 2 worker thread\(s\)$' <<<"$out"
"$NETRUN" eval "$work/images.trainer" --data "$work/good" >"$work/eval.log" 2>&1
check "netrun eval on val/" grep -q "^test error" "$work/eval.log"
# reconstruct draws RGB: a `channels bgr` trainer (its mean and std in
# B, G, R order) draws the same test images as the RGB one (the top row).
sed 's/mean 123.68 116.78 103.94; std 58.40 57.12 57.38/mean 103.94 116.78 123.68; std 57.38 57.12 58.40/; s/channels rgb/channels bgr/' \
  "$work/images.net" >"$work/bgr.net"
"$NETC" "$work/bgr.net" -o "$work/bgr.trainer" >/dev/null
for t in images bgr; do
  "$NETRUN" reconstruct "$work/$t.trainer" --data "$work/good" --count 4 --out "$work/$t.png" >/dev/null 2>&1
done
check "reconstruct draws a bgr trainer's test images in RGB" "$PY" - "$work/images.png" "$work/bgr.png" <<'PY'
import sys
from PIL import Image
a, b = (Image.open(f).convert("RGB") for f in sys.argv[1:])
top = lambda im: im.crop((0, 0, im.width, 66)).tobytes()
sys.exit(not (a.size == b.size and max(abs(x - y) for x, y in zip(top(a), top(b))) <= 1))
PY

# reconstruct's picture over an image of val/ would change the test set.
victim=$(ls "$work"/good/val/discs/* | head -1)
sum_victim=$(md5sum <"$victim")
"$NETRUN" reconstruct "$work/images.trainer" --data "$work/good" --out "$victim" >"$work/out" 2>&1
rc=$?
check "reconstruct refuses to write over an image of the data set (exit $rc)" \
  test $rc -eq 1 -a -n "$(grep "is part of the data set 'reconstruct' reads (images in " "$work/out")"
check "... and leaves it as it was" test "$(md5sum <"$victim")" = "$sum_victim"

# One bad input: make the folder, train (--restart: over the good run's
# checkpoint), expect exit 1 and the message in stderr, and the good run's
# checkpoint untouched.
sum_before=$(cat "$work"/images.trainer/checkpoint.* | md5sum)
bad() { # description trainer case message
  local what=$1 trainer=$2 case=$3 msg=$4 dir=$work/bad-$3
  [[ -d $dir ]] || "$PY" "$MAKE" "$dir" --per-class 3 --val 2 ${case:+--bad "$case"}
  "$NETRUN" train "$work/$trainer.trainer" --data "$dir" --restart >"$work/out" 2>"$work/err"
  local rc=$?
  if [[ $rc -eq 1 ]] && grep -qF -- "$msg" "$work/err" && [[ $(grep -c error "$work/err") -eq 1 ]]; then
    echo "ok   $what"; passed=$((passed + 1))
  else
    echo "FAIL $what (exit $rc)"; cat "$work/err"; failed=$((failed + 1))
  fi
}
bad "an empty class folder" images empty-class "train/empty: an empty class folder"
bad "a truncated JPEG" images truncated "checks-000.jpg: corrupt or truncated JPEG"
bad "a PNG with an alpha channel" images alpha "alpha.png: the PNG has an alpha channel"
bad "a PNG with 16 bits per sample" images png16 "deep.png: the PNG has 16 bits per sample"
bad "an image smaller than the crop, without scale" noscale small \
  "small.jpg: the image is 40x40 (width x height), smaller than the 64x64 crop (no 'scale' resizes it)"
bad "a grey image in an RGB net" images grey \
  "grey.jpg: a greyscale image, but the network input has 3 channels"
bad "train/ and val/ with different classes" images classes \
  "train/ and val/ have different class folders; only in train/: stripes; only in val/: zebras"
bad "a class count other than the network's" five "" \
  "4 class folders (checks, discs, photos, stripes) but the network has 5 classes"
# A class's subfolders are part of it; a file name there that holds a
# terminal escape is shown escaped.
cp -r "$work/good" "$work/bad-escname"
mkdir -p "$work/bad-escname/train/checks/more"
echo junk >"$work/bad-escname/train/checks/more/$(printf 'x\033[2J').jpg"
bad "a bad image in a class's subfolder, named with an escape" images escname \
  'checks/more/x\x1b[2J.jpg: neither a JPEG nor a PNG'
check "... and no raw escape reached the terminal" \
  test "$(grep -c "$(printf '\033')" "$work/err")" -eq 0
cp -r "$work/good" "$work/bad-nlname"
echo junk >"$work/bad-nlname/train/checks/$(printf 'x\ny').jpg"
bad "a bad image named with a newline" images nlname 'checks/x\x0ay.jpg: neither a JPEG nor a PNG'
check "... on one line" test "$(wc -l <"$work/err")" -eq 1
check "no bad input overwrote the checkpoint" \
  test "$(cat "$work"/images.trainer/checkpoint.* | md5sum)" = "$sum_before"

# A bad image in a batch queued ahead of a --max-steps stop is the resumed
# run's to meet: the stop still writes its checkpoint. Over eight seeds the
# bad image lands in the first batch (the run fails before its first step)
# or in a later one, some of them queued ahead at the stop.
cp -r "$work/good" "$work/badahead"
echo junk > "$(ls "$work"/badahead/train/discs/* | head -1)"
ahead_ok=1 stopped=0
for seed in 1 2 3 4 5 6 7 8; do
  rm -rf "$work/ahead.trainer"; cp -r "$work/images.trainer" "$work/ahead.trainer"
  rm -f "$work"/ahead.trainer/checkpoint.*
  "$NETRUN" train "$work/ahead.trainer" --data "$work/badahead" --seed $seed \
    --max-steps 1 --log-every 1 >"$work/out" 2>"$work/err"
  if grep -q "^stopped after 1 step(s)" "$work/out" && [[ -f $work/ahead.trainer/checkpoint.json ]]; then
    stopped=$((stopped + 1))
  elif grep -q "step 1/" "$work/out"; then
    ahead_ok=0; echo "     seed $seed: a step ran, then:"; cat "$work/err"
  fi
done
check "a --max-steps stop saves its checkpoint whatever the batches queued ahead hold ($stopped of 8 stopped)" \
  test $ahead_ok -eq 1 -a $stopped -ge 4

# A bad image in val/ is met only by the evaluation at the phase's end: the
# phase's training is saved before the run stops.
cp -r "$work/good" "$work/badval"
echo junk > "$(ls "$work"/badval/val/checks/* | head -1)"
cp -r "$work/images.trainer" "$work/badval.trainer"
rm -f "$work"/badval.trainer/checkpoint.*
"$NETRUN" train "$work/badval.trainer" --data "$work/badval" >"$work/out" 2>"$work/err"
rc=$?
check "a bad val image stops the run at the phase's end (exit $rc)" test $rc -eq 1
check "... saying that the phase's training is saved" \
  grep -q "the evaluation failed: .*neither a JPEG nor a PNG.*the phase's training is saved" "$work/err"
check "... in a checkpoint past the phase" "$PY" -c \
  "import json, sys; sys.exit(json.load(open(sys.argv[1]))['phase_index'] != 1)" \
  "$work/badval.trainer/checkpoint.json"

# skip-bad: the truncated JPEG is counted at the end of each epoch.
"$NETRUN" train "$work/skip.trainer" --data "$work/bad-truncated" >"$work/skip.log" 2>&1
rc=$?
check "skip-bad trains past a truncated JPEG" test $rc -eq 0
check "... and reports it at the end of each epoch" \
  test "$(grep -c 'epoch [0-9]: skipped 1 bad image(s)' "$work/skip.log")" -eq 8
out=$("$NETRUN" data "$work/skip.trainer" --data "$work/bad-truncated" 2>&1)
check "... and netrun data counts it once (not again for its warm-up)" \
  grep -qE "^data train \(images\): 12 images .*, 1 bad image\(s\) skipped$" <<<"$out"
check "... and ends with the dense evaluation, 104 above the training scales" \
  grep -q "dense test error .*(scales 64, 72, 104, each with its mirror image)" "$work/skip.log"

# skip-bad in an evaluation: the bad val image leaves the count, and the
# image that took its place is not counted twice.
nval=$(find "$work/badval/val" -type f | wc -l)
"$NETRUN" eval "$work/skip.trainer" --data "$work/badval" >"$work/skip-eval.log" 2>&1
check "skip-bad evaluates $((nval - 1)) of the $nval val images, the bad one skipped" \
  grep -q "of $((nval - 1)) wrong); 1 bad image(s) skipped" "$work/skip-eval.log"
"$NETRUN" eval "$work/skip.trainer" --data "$work/badval" --scheme dense >"$work/skip-dense.log" 2>&1
check "... and so does the dense evaluation" \
  grep -q "^dense test error .* of $((nval - 1)) wrong); 1 bad image(s) skipped" "$work/skip-dense.log"

echo "images: $passed passed, $failed failed"
((failed == 0))
