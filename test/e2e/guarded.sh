#!/usr/bin/env bash
# netrun under a GPU's rules, without a GPU: `--backend guarded` is the
# reference backend with its memory unreadable to the host (a host access
# faults) and its uploads, copies and kernels queued until the host waits
# (a staging buffer rewritten too early changes the results). Every command
# the GPU runs (train with its prefetch thread, resume, eval, reconstruct,
# bench, infer; fp32 and bf16 plans; two ranks over MPI) must exit 0 and
# give the reference backend's results to the bit.
#   test/e2e/guarded.sh BUILD_DIR
set -uo pipefail
source "$(dirname "$0")/lib.sh"
NETRUN=$BUILD/bin/netrun

same() { # file file: the same bytes
  cmp -s "$1" "$2"
}

"$BUILD/bin/netc" phases.net -o "$work/ref.trainer" >/dev/null
"$BUILD/bin/netc" phases.net --precision=bf16 -o "$work/ref16.trainer" \
  >/dev/null
for t in ref ref16; do
  cp -r "$work/$t.trainer" "$work/${t/ref/grd}.trainer"
done

for p in "" 16; do
  what=${p:+bf16 }
  for b in reference guarded; do
    t=$work/$([[ $b == reference ]] && echo ref || echo grd)$p.trainer
    "$NETRUN" train "$t" --backend "$b" --log-every 1 --seed 3 \
      --metrics "$t.jsonl" >"$t.log" 2>&1
    echo "train exit $?" >>"$t.log"
  done
  r=$work/ref$p.trainer g=$work/grd$p.trainer
  check "${what}train runs on the guarded backend" grep -q "train exit 0" "$g.log"
  # Every record but its timing (the keys are written sorted, so a comma
  # follows it).
  check "... with the reference's losses, errors and checkpoint" \
    bash -c "grep -q '\"event\":\"step\"' '$g.jsonl' &&
             diff <(sed 's/\"images_per_second\":[^,]*,//' '$r.jsonl') \
                  <(sed 's/\"images_per_second\":[^,]*,//' '$g.jsonl') >/dev/null &&
             cmp -s '$r/checkpoint.safetensors' '$g/checkpoint.safetensors'"
done

r=$work/ref.trainer g=$work/grd.trainer
for b in reference guarded; do
  t=$([[ $b == reference ]] && echo "$r" || echo "$g")
  "$NETRUN" eval "$t" --backend "$b" >"$t.eval" 2>&1
  echo "exit $?" >>"$t.eval"
  "$NETRUN" reconstruct "$t" --backend "$b" --count 4 --out "$t.png" \
    >"$t.recon" 2>&1
done
check "eval gives the reference's error" \
  bash -c "grep -q 'exit 0' '$g.eval' && grep -q '^test error' '$g.eval' &&
           cmp -s '$r.eval' '$g.eval'"
check "reconstruct gives the reference's PSNRs" \
  bash -c "diff <(grep PSNR '$r.recon') <(grep PSNR '$g.recon') >/dev/null &&
           grep -q PSNR '$g.recon'"
check "... and its picture" same "$r.png" "$g.png"

# Stopped after 3 steps and resumed: the checkpoint is written from and read
# into backend memory.
rm -f "$g"/checkpoint.* "$r"/checkpoint.*
for t in "$r" "$g"; do
  b=$([[ $t == "$r" ]] && echo reference || echo guarded)
  "$NETRUN" train "$t" --backend "$b" --seed 3 --max-steps 3 >"$t.stop" 2>&1
  "$NETRUN" train "$t" --backend "$b" --seed 3 --resume >"$t.resume" 2>&1
  echo "exit $?" >>"$t.resume"
done
check "a resumed run on the guarded backend ends as the reference's" \
  bash -c "grep -q 'stopped after 3 step' '$g.stop' &&
           grep -q 'exit 0' '$g.resume' &&
           cmp -s '$r/checkpoint.safetensors' '$g/checkpoint.safetensors'"

out=$("$NETRUN" bench "$g" --backend guarded --steps 2 2>&1)
check "bench runs on the guarded backend" \
  grep -q "^program step.joint on guarded: batch 16, 2 steps" <<<"$out"

# A classifier's logits through `infer` (images as safetensors, from the
# eval program), as on the GPU.
python3 - "$work/images.safetensors" <<'PY'
import json, struct, sys
n, c, h, w = 3, 1, 28, 28
vals = [((i * 37) % 256) / 255.0 for i in range(n * c * h * w)]
data = struct.pack(f"<{len(vals)}f", *vals)
head = json.dumps({"images": {"dtype": "F32", "shape": [n, c, h, w],
                              "data_offsets": [0, len(data)]}}).encode()
head += b" " * (-len(head) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(head)) + head + data)
PY
for t in "$r" "$g"; do
  b=$([[ $t == "$r" ]] && echo reference || echo guarded)
  "$NETRUN" infer "$t" --backend "$b" --images "$work/images.safetensors" \
    -o "$t.logits.safetensors" >"$t.infer" 2>&1
  echo "exit $?" >>"$t.infer"
done
check "infer on the guarded backend gives the reference's logits" \
  bash -c "grep -q 'exit 0' '$g.infer' &&
           cmp -s '$r.logits.safetensors' '$g.logits.safetensors'"

# Two ranks (MPI): the parameters broadcast at the start, the all-reduced
# gradients and rank 0's checkpoint all pass through backend memory.
if command -v mpirun >/dev/null &&
    grep -q "NETC_WITH_MPI:BOOL=ON" "$BUILD/CMakeCache.txt"; then
  export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 \
    OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  "$BUILD/bin/netc" data-parallel.net -o "$work/dpr.trainer" >/dev/null 2>&1
  cp -r "$work/dpr.trainer" "$work/dpg.trainer"
  # Open MPI's plugins, unloaded at exit, leave allocations LeakSanitizer
  # cannot attribute (an ASan build's every MPI run exits 1 for them):
  # leaks are checked by the one-process runs above.
  for b in reference guarded; do
    t=$work/dp${b:0:1}.trainer
    ASAN_OPTIONS=detect_leaks=0 timeout 120 mpirun --oversubscribe -np 2 \
      "$NETRUN" train "$t" --backend "$b" --log-every 100 >"$t.log" 2>&1
    echo "exit $?" >>"$t.log"
  done
  check "2 ranks on the guarded backend end as on the reference" \
    bash -c "grep -q 'exit 0' '$work/dpg.trainer.log' &&
             cmp -s '$work/dpr.trainer/checkpoint.safetensors' \
                    '$work/dpg.trainer/checkpoint.safetensors'"
else
  echo "skip 2 ranks (no MPI in this build)"
fi

echo "guarded: $passed passed, $failed failed"
((failed == 0))
