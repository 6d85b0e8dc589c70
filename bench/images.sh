#!/usr/bin/env bash
# Decode + augment throughput of netc's image-folder loader against
# torchvision's DataLoader with PIL, on the same folder and the same cores,
# in the same run: `netrun data` (bench/images.net: the shorter side to a
# random size in [256, 512], a random 224 crop, a random mirror, mean/std)
# with N threads, and bench/peer_images.py (ImageFolder, the same transforms)
# with N worker processes, for N = 1 and 2. The folder: 512 training images
# of 300-500 pixels a side from tools/make-image-folder.py (a quarter of them
# crops of photographs, the rest synthetic), JPEG and PNG, read once before
# timing so that both read from the page cache.
#   bench/images.sh [BUILD_DIR]     (default build; needs build/bench-venv
#   with torch and torchvision: build/bench-venv/bin/pip install
#   torchvision==0.26.0)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
PY=build/bench-venv/bin/python
PER_CLASS=${PER_CLASS:-128}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

/usr/bin/python3 tools/make-image-folder.py "$work/folder" \
  --per-class "$PER_CLASS" --val 1 --sides 300 500
"$BUILD/bin/netc" bench/images.net -o "$work/images.trainer" >/dev/null
cat "$work"/folder/train/*/* >/dev/null
images=$(find "$work/folder/train" -type f | wc -l)
echo "folder: $images training images, $(du -sh "$work/folder/train" | cut -f1); $(nproc) cores"
printf '%-8s %-14s %-14s %s\n' workers "netc img/s" "torchvision" "netc/torchvision"
for w in 1 2; do
  netc=$("$BUILD/bin/netrun" data "$work/images.trainer" --data "$work/folder" \
    --workers "$w" --batch 64 | grep -oP '[0-9.]+(?= images/s)')
  # torchvision: w worker processes (the main process only collects).
  peer=$("$PY" bench/peer_images.py "$work/folder/train" --workers "$w" --batch 64)
  awk -v w="$w" -v a="$netc" -v b="$peer" \
    'BEGIN { printf "%-8s %-14s %-14s %.2fx\n", w, a, b, a / b }'
done
