#!/usr/bin/env bash
# The study script (bench/study.py) resumes: on test/e2e/phases.net (a few
# steps per phase), a first call does every run; a second does none; with
# one record removed from the results file, a third does that one alone.
#   test/e2e/study.sh BUILD_DIR
set -uo pipefail
source "$(dirname "$0")/lib.sh"
drop_record() { # KEY: forget one run of the results file
  python3 -c 'import json, sys
r = json.load(open(sys.argv[1])); del r["runs"][sys.argv[2]]
json.dump(r, open(sys.argv[1], "w"))' "$work/results.json" "$1"
}
study() {
  python3 ../../bench/study.py --build "$BUILD" --out "$work/out" \
    --results "$work/results.json" --readme '' --no-figures \
    --net phases.net --deep-net phases.net --seeds 2 \
    --models none,swwae-first,swwae-all --recon-models swwae-first \
    --sweep-seeds 2 --sweep-models swwae-all --multipliers 0.1,1 \
    --deep-seeds 1 --deep-models none,sae-all \
    --long-seeds 1 --long-models none,swwae-all --long-factor 3 2>&1
}
# 2 classifiers + 6 models + 2 PSNR + 2 sweep + 1 deep classifier + 2 deep
# + 1 long classifier + 2 long.
out=$(study)
check "the first call does all 18 runs" grep -q "^\[study\] 18 runs done, 0 found done in" <<<"$out"
check "the long stage runs the classifier's epochs and steps times 3" \
  grep -q "phase pretrain .*epochs 3; steps 12" "$work/out/phases-x3-epochs-classifier-seed1.net"
check "... and the joint phase's" \
  grep -q "phase joint .*epochs 3; steps 12" "$work/out/phases-x3-epochs-swwae-all-seed1.net"
check "... the decoder phases' as they were" \
  grep -q "phase decoders .*epochs 1;" "$work/out/phases-x3-epochs-swwae-all-seed1.net"
check "... whose table the report has" \
  grep -qE "^\| swwae-all \| [0-9.]+ \| " <<<"$(sed -n '/3x longer/,$p' <<<"$out")"
check "... and reports the paired difference" \
  grep -qE "^\| swwae-all \| [0-9.]+ ± [0-9.]+ \| [+-][0-9.]+ \[[+-][0-9.]+, [+-][0-9.]+\]" <<<"$out"
check "... and the PSNR per macro-layer" \
  grep -qE "^\| swwae-first \| [0-9.]+ ± [0-9.]+ \| [0-9.]+ ± [0-9.]+ \|$" <<<"$out"
out=$(study)
# (14: the classifiers are not looked at when every model is done.)
check "the second call does none" grep -q "^\[study\] 0 runs done, 14 found done in" <<<"$out"
drop_record phases/swwae-all/seed2
out=$(study)
check "with a record removed, the third call does that run alone" \
  grep -q "^\[study\] 1 runs done, 14 found done in" <<<"$out"
check "... which it names" grep -q "^\[study\] phases/swwae-all/seed2 \.\.\.$" <<<"$out"
rm "$work/out/phases-classifier-seed1.safetensors"
drop_record phases/swwae-all/seed1
out=$(study)
check "a classifier checkpoint that is gone is trained again first" \
  grep -q "phases/classifier/seed1: the checkpoint is gone" <<<"$out"
check "... and the run that needs it done" grep -q "^\[study\] 2 runs done" <<<"$out"
echo "study: $passed passed, $failed failed"
((failed == 0))
