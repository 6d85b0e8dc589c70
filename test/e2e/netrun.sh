#!/usr/bin/env bash
# netrun's command line: each check runs netrun on a trainer compiled from
# test/e2e/phases.net (or a damaged copy) and looks at its exit status and
# output. Prints "netrun: N passed, M failed".
#   test/e2e/netrun.sh BUILD_DIR
set -uo pipefail
source "$(dirname "$0")/lib.sh"
"$BUILD/bin/netc" phases.net -o "$work/t.trainer" >/dev/null || exit 1
NETRUN=$BUILD/bin/netrun

# bench: one line with the rate, the step time and the peak memory (of the
# whole run, and of the timed steps alone).
out=$("$NETRUN" bench "$work/t.trainer" --steps 2 --backend reference 2>&1)
check "bench prints images/s, ms/step and peak memory" \
  grep -qE '^program step.joint on reference: batch 16, 2 steps: [0-9.]+ images/s, [0-9.]+ ms/step, peak memory' <<<"$out"
check "bench prints the timed steps' own peak" \
  grep -qE 'GFLOP/step in convolutions and fc\); the timed steps alone peak at [0-9.]+ [KMG]?i?B \([0-9]+ bytes\)$' <<<"$out"
# bench --profile: per op, its calls, time, share, the MB its operands
# take per step (each operand and result once, at the program's batch, in
# its dtype: here checked for relu against the plan) and their GB/s.
out=$("$NETRUN" bench "$work/t.trainer" --steps 2 --backend reference \
  --profile 2>&1)
want=$(python3 - "$work/t.trainer/plan.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
prog = p["programs"]["step.joint"]
values = {v["id"]: v for v in prog["values"]}
size = {"f32": 4, "bf16": 2, "i32": 4, "u8": 1}
def nbytes(v):
    n = size[v["dtype"]]
    for d in v["shape"]:
        n *= prog["batch"] if d == -1 else d
    return n
relus = [k for k in prog["kernels"] if k["op"] == "relu"]
total = sum(nbytes(values[i]) for k in relus for i in k["in"] + k["out"])
print(f"relu {len(relus)} {total * 1e-6:.3f}")
PY
)
read -r op calls mb <<<"$want"
check "bench --profile prints a row per op with its operand MB and GB/s" \
  grep -qE "^$op +$calls +[0-9.]+ +[0-9.]+% +${mb//./\\.} +[0-9.]+$" <<<"$out"
check "... and the slowest kernels with their GB/s" \
  grep -qE '^  kernels\[[0-9]+\] +[a-z_0-9]+ +[0-9.]+ ms +[0-9.]+ GB/s -> ' \
  <<<"$out"
out=$("$NETRUN" bench "$work/t.trainer" --program eval --steps 2 --backend reference 2>&1)
check "bench of the eval program says it times evaluation" \
  grep -qE '^program eval \(evaluation: no update\) on reference: batch [0-9]+, 2 steps: [0-9.]+ images/s' <<<"$out"
out=$("$NETRUN" bench "$work/t.trainer" --program reconstruct --steps 1 --backend reference 2>&1); rc=$?
check "bench of a program without a loss says which programs it times" \
  test $rc -eq 1 -a -n "$(grep "program 'reconstruct' has no loss: bench times the programs with one" <<<"$out")"
out=$("$NETRUN" bench "$work/t.trainer" --program nope 2>&1)
check "bench names an unknown program" grep -q "no program 'nope'" <<<"$out"

# info: a trainer that cannot run fails before printing a description.
cp -r "$work/t.trainer" "$work/bad.trainer"
python3 - "$work/bad.trainer/plan.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
conv = next(k for k in p["programs"]["eval"]["kernels"] if k["op"] == "conv2d")
conv["attrs"]["stride"] = [2, 2]  # its output no longer has the planned shape
json.dump(p, open(sys.argv[1], "w"))
PY
"$NETRUN" info "$work/bad.trainer" >"$work/out" 2>"$work/err"
rc=$?
check "info of a trainer that cannot run exits 1" test $rc -eq 1
check "... and prints no description first" test ! -s "$work/out"
check "... and names the kernel" grep -q "programs.eval.kernels\[[0-9]*\]: 'conv2d'" "$work/err"

# Memory that cannot be had: an error naming the arena, its bytes and the
# memory available, before anything runs; info still describes the trainer.
cp -r "$work/t.trainer" "$work/huge.trainer"
python3 - "$work/huge.trainer/plan.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
p["programs"]["eval"]["arena_bytes"] = 1 << 60
json.dump(p, open(sys.argv[1], "w"))
PY
out=$("$NETRUN" info "$work/huge.trainer" 2>&1)
check "info shows a huge arena" grep -q "arena 1073741824.00 GiB" <<<"$out"
out=$("$NETRUN" eval "$work/huge.trainer" --backend reference 2>&1)
check "eval names the arena, its bytes and the memory available" \
  grep -q "the arena of program 'eval' needs 1 EiB (1152921504606846976 bytes) but only" <<<"$out"

# info describes a bf16 trainer without a backend (it checks the plan
# alone, allocating nothing). The reference backend emulates bf16 (the cuda
# backend's tensor-core path): its losses follow the fp32 trainer's within
# bf16's precision; the cpu backend refuses it, saying what runs it.
"$BUILD/bin/netc" phases.net --precision=bf16 -o "$work/bf16.trainer" >/dev/null
out=$("$NETRUN" info "$work/bf16.trainer" 2>&1)
check "info describes a bf16 trainer" grep -q "^program step.joint: batch 16" <<<"$out"
"$BUILD/bin/netc" phases.net -o "$work/fp32.trainer" >/dev/null
for p in bf16 fp32; do
  "$NETRUN" train "$work/$p.trainer" --backend reference --max-steps 10 \
    --log-every 1 --metrics "$work/$p.jsonl" >/dev/null 2>&1
done
check "a bf16 trainer's losses follow fp32's within 1%" python3 - "$work" <<'PY'
import json, sys
def losses(p):
    rows = [json.loads(l) for l in open(f"{sys.argv[1]}/{p}.jsonl")]
    return [r["loss"] for r in rows if "loss" in r]
a, b = losses("bf16"), losses("fp32")
assert len(a) == len(b) == 10, (len(a), len(b))
worst = max(abs(x - y) / abs(y) for x, y in zip(a, b))
assert 0 < worst < 0.01, worst  # rounded, but close
PY
if grep -q "^NETC_WITH_ONEDNN:BOOL=ON" "$BUILD/CMakeCache.txt"; then
  out=$("$NETRUN" train "$work/bf16.trainer" --backend cpu --restart --max-steps 1 2>&1)
  check "the cpu backend refuses a bf16 trainer, naming what runs it" \
    grep -q "compiled with --precision=bf16, which runs on the cuda backend" <<<"$out"
fi

# A tf32 trainer stores every map NHWC in f32 (for the GPU's tensor cores),
# and so does an fp32 one compiled with --layout=nhwc: the reference backend
# runs them on NCHW copies with fp32's arithmetic, so their losses and
# parameters are fp32's bit for bit (a one-channel NHWC map, the image, has
# NCHW's bytes); the cpu backend refuses them, saying why.
"$BUILD/bin/netc" phases.net --precision=tf32 -o "$work/tf32.trainer" >/dev/null
"$BUILD/bin/netc" phases.net --layout=nhwc -o "$work/nhwc.trainer" >/dev/null
for t in tf32 nhwc; do
  check "a $t trainer's maps are NHWC" grep -q '"layout": "nhwc"' "$work/$t.trainer/plan.json"
  "$NETRUN" train "$work/$t.trainer" --backend reference --max-steps 10 \
    --log-every 1 --metrics "$work/$t.jsonl" >/dev/null 2>&1
  check "on the reference, a $t trainer trains as fp32, bit for bit" python3 - "$work" "$t" <<'PY'
import json, sys
def steps(p):
    rows = [json.loads(l) for l in open(f"{sys.argv[1]}/{p}.jsonl")]
    return [(r["loss"], r["terms"]) for r in rows if "loss" in r]
a, b = steps(sys.argv[2]), steps("fp32")
assert len(a) == len(b) == 10 and a == b, (a, b)
def tensors(p):
    data = open(f"{sys.argv[1]}/{p}.trainer/checkpoint.safetensors", "rb").read()
    n = int.from_bytes(data[:8], "little")
    return data[8 + n:]
assert tensors(sys.argv[2]) == tensors("fp32")
PY
done
if grep -q "^NETC_WITH_ONEDNN:BOOL=ON" "$BUILD/CMakeCache.txt"; then
  for t in tf32 nhwc; do
    out=$("$NETRUN" train "$work/$t.trainer" --backend cpu --restart --max-steps 1 2>&1)
    check "the cpu backend refuses a $t trainer, saying why" \
      grep -q "this trainer's maps are NHWC (netc --precision=tf32, or --layout=nhwc)" <<<"$out"
  done
fi

# Special files: a FIFO plan or checkpoint is refused at once, never waited on.
mkdir "$work/fifo.trainer" && mkfifo "$work/fifo.trainer/plan.json"
out=$(timeout 10 "$NETRUN" info "$work/fifo.trainer" 2>&1)
check "a FIFO plan.json is refused" grep -q "plan.json: is a FIFO, not a regular file" <<<"$out"
mkfifo "$work/t.trainer/checkpoint.safetensors"
out=$(timeout 10 "$NETRUN" eval "$work/t.trainer" --backend reference 2>&1)
check "a FIFO checkpoint is refused" grep -q "checkpoint.safetensors: is a FIFO" <<<"$out"
rm "$work/t.trainer/checkpoint.safetensors"
out=$(timeout 10 "$NETRUN" eval "$work/t.trainer" --params /dev/zero 2>&1)
check "--params /dev/zero is refused" grep -q "/dev/zero: is a character device" <<<"$out"

# --weights: a classifier trained alone starts an augmented model (the
# study's paired design). The decoder phase freezes the classifier, so after
# a step its parameters are still exactly the classifier's.
"$BUILD/bin/netc" phases.net --augment=none -o "$work/none.trainer" >/dev/null
"$NETRUN" train "$work/none.trainer" --backend reference --max-steps 3 >/dev/null 2>&1
sed '/phase pretrain/d' phases.net > "$work/nopre.net"
"$BUILD/bin/netc" "$work/nopre.net" -o "$work/nopre.trainer" >/dev/null 2>&1
cls=$work/none.trainer/checkpoint.safetensors
out=$("$NETRUN" train "$work/nopre.trainer" --backend reference --max-steps 1 --weights "$cls" 2>&1)
check "--weights says what it set (a checkpoint's momentum is no stray tensor)" \
  grep -qE "^initialised 6 of 10 parameters from $cls; 4 keep their initialisation \(dec\.[^;]*\)$" <<<"$out"
check "... and the frozen classifier keeps those values" python3 - "$cls" "$work/nopre.trainer/checkpoint.safetensors" <<'PY'
import json, struct, sys
def read(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    return {k: data[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]
            for k, v in header.items() if k != "__metadata__"}
a, b = read(sys.argv[1]), read(sys.argv[2])
names = [k for k in a if not k.startswith("momentum/")]
sys.exit(not (len(names) == 6 and all(a[k] == b[k] for k in names)))
PY
out=$("$NETRUN" train "$work/nopre.trainer" --backend reference --resume --weights "$cls" 2>&1)
check "--weights with --resume is refused" grep -q "give only one of them" <<<"$out"
python3 - "$work/wrong.safetensors" "$work/other.safetensors" "$work/typo.safetensors" <<'PY'
import json, struct, sys
def write(path, name, shape):
    header = json.dumps({name: {"dtype": "F32", "shape": shape,
                                "data_offsets": [0, 4]}}).encode()
    open(path, "wb").write(struct.pack("<Q", len(header)) + header + bytes(4))
write(sys.argv[1], "conv1.weight", [1])
write(sys.argv[2], "features.0.weight", [1])
header = json.dumps({"conv1.bias": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                     "conv1.wieght": {"dtype": "F32", "shape": [1], "data_offsets": [16, 20]}}).encode()
open(sys.argv[3], "wb").write(struct.pack("<Q", len(header)) + header + bytes(20))
PY
out=$("$NETRUN" train "$work/nopre.trainer" --backend reference --max-steps 1 --restart --weights "$work/typo.safetensors" 2>&1)
check "--weights lists a tensor named after no parameter" \
  grep -q "^initialised 1 of 10 parameters from .*; 1 tensor(s) of the file name no parameter (conv1.wieght)$" <<<"$out"
out=$("$NETRUN" train "$work/nopre.trainer" --backend reference --weights "$work/wrong.safetensors" 2>&1)
check "--weights names a tensor of the wrong shape" \
  grep -q "wrong.safetensors: tensor 'conv1.weight' has shape \[1\] but the parameter is \[4, 1, 3, 3\]" <<<"$out"
out=$("$NETRUN" train "$work/nopre.trainer" --backend reference --weights "$work/other.safetensors" 2>&1)
check "--weights refuses a file that sets no parameter" \
  grep -q "other.safetensors: no tensor is named after a parameter of this trainer" <<<"$out"

# --seed varies the dropout masks too: from the same parameters, on one
# image (so that shuffling and initialisation play no part), the first
# step's loss depends on the seed with a dropout, and not without one.
cat >"$work/drop.net" <<'NET'
network drop {
  input 1x28x28
  classes 10
  macro conv1 { conv 4 kernel=3 pad=1 init=gaussian(0.3); relu; maxpool 2 }
  fc2: fc 32 init=gaussian(0.05); relu; dropout 0.5
  fc3: fc 10 init=gaussian(0.05)
}
train {
  data fashion-mnist { subset 1; test-subset 8 }
  phase joint { sgd lr=0.01; batch 1; epochs 1; steps 1 }
}
NET
sed 's/; dropout 0.5//' "$work/drop.net" >"$work/nodrop.net"
first_loss() { # trainer seed
  rm -f "$work/first.jsonl"
  "$NETRUN" train "$work/$1.trainer" --backend reference --restart --seed "$2" \
    --weights "$work/$1.safetensors" --log-every 1 --metrics "$work/first.jsonl" >/dev/null 2>&1
  python3 -c 'import json, sys; print([r for r in map(json.loads, open(sys.argv[1])) if r["event"] == "step"][0]["loss"])' "$work/first.jsonl"
}
for n in drop nodrop; do
  "$BUILD/bin/netc" "$work/$n.net" -o "$work/$n.trainer" >/dev/null 2>&1
  "$NETRUN" train "$work/$n.trainer" --backend reference >/dev/null 2>&1
  cp "$work/$n.trainer/checkpoint.safetensors" "$work/$n.safetensors"
done
check "--seed draws other dropout masks (and the same seed the same ones)" \
  test "$(first_loss drop 1)" != "$(first_loss drop 2)" -a "$(first_loss drop 2)" = "$(first_loss drop 2)"
check "... and without a dropout the seed changes nothing here" \
  test "$(first_loss nodrop 1)" = "$(first_loss nodrop 2)"

# reconstruct: the picture, and each macro-layer's PSNR over the test set.
out=$("$NETRUN" reconstruct "$work/nopre.trainer" --backend reference --out "$work/r.png" 2>&1)
check "reconstruct prints the PSNR of each macro-layer" \
  grep -qE "^PSNR over 32 test images: conv1 [0-9.]+ dB, conv2 [0-9.]+ dB$" <<<"$out"
check "... and writes the picture" test -s "$work/r.png"

# A crafted checkpoint: the step counter is range-checked, not trusted.
"$NETRUN" train "$work/t.trainer" --backend reference --max-steps 2 >/dev/null 2>&1
python3 - "$work/t.trainer/checkpoint.safetensors" <<'PY'
import json, struct, sys
path = sys.argv[1]
data = open(path, "rb").read()
n = struct.unpack("<Q", data[:8])[0]
header = json.loads(data[8:8 + n])
header["__metadata__"]["netc.step"] = "-5"
text = json.dumps(header).encode()
text += b" " * ((8 - (8 + len(text)) % 8) % 8)
open(path, "wb").write(struct.pack("<Q", len(text)) + text + data[8 + n:])
PY
out=$(timeout 60 "$NETRUN" train "$work/t.trainer" --backend reference --resume 2>&1)
rc=$?
check "a checkpoint with step -5 is an error, not a crash" test $rc -eq 1
check "... naming the field" grep -q "netc.step: '-5' is not a non-negative integer" <<<"$out"

# train on a terminal draws a progress bar; into a pipe, plain lines only.
"$BUILD/bin/netc" phases.net -o "$work/bar.trainer" >/dev/null 2>&1
TERM=xterm script -qec "$NETRUN train $work/bar.trainer --backend reference --max-steps 3 --log-every 100" /dev/null > "$work/tty.out" 2>&1
check "train draws a progress bar on a terminal" \
  grep -q $'\r\e\\[K\\[pretrain\\] epoch 1/1 \\[#*\\.*\\] 1/4  25% loss [0-9.]* .*[0-9]* img/s ETA [0-9]:[0-9][0-9]' "$work/tty.out"
rm -f "$work/bar.trainer"/checkpoint.*
"$NETRUN" train "$work/bar.trainer" --backend reference --max-steps 3 --log-every 100 > "$work/pipe.out" 2>&1
check "... and none into a pipe" bash -c "! grep -q \$'\\e' '$work/pipe.out' && grep -q 'stopped after 3 step' '$work/pipe.out'"
# A run that stops with an error under the bar erases it first: the
# message starts a line (here the second step's loss, after an lr of 1e30).
sed 's/lr=0.02 momentum=0.9/lr=1e30 momentum=0.9/' phases.net >"$work/barfail.net"
"$BUILD/bin/netc" "$work/barfail.net" -o "$work/barfail.trainer" >/dev/null 2>&1
TERM=xterm script -qec "$NETRUN train $work/barfail.trainer --backend reference --log-every 100" /dev/null > "$work/tty.out" 2>&1
check "an error under the progress bar starts a line of its own" \
  grep -q $'\e\\[Knetrun: error: phase .pretrain. step 2 ' "$work/tty.out"

# plot: the curves of a metrics file; bad files are errors naming the line.
"$NETRUN" train "$work/none.trainer" --backend reference --restart --max-steps 4 \
  --log-every 1 --metrics "$work/m.jsonl" >/dev/null 2>&1
"$NETRUN" plot "$work/m.jsonl" -o "$work/c.png" > "$work/out" 2>&1; rc=$?
if grep -q "built without PLplot" "$work/out"; then
  check "plot says it was built without PLplot" test $rc -eq 1
else
  check "plot draws the curves of a metrics file" \
    test $rc -eq 0 -a -n "$(grep "^wrote $work/c.png: 2 loss terms (8 points)" "$work/out")"
  check "... into a PNG" python3 -c "import sys; d = open(sys.argv[1], 'rb').read(); sys.exit(d[:8] != b'\x89PNG\r\n\x1a\n' or len(d) < 1000)" "$work/c.png"
fi
[[ $rc -eq 0 ]] || cat "$work/out"
printf '%s\n' "$(head -1 "$work/m.jsonl")" 'not json' > "$work/bad.jsonl"
out=$("$NETRUN" plot "$work/bad.jsonl" -o "$work/bad.png" 2>&1); rc=$?
check "plot names the line that is not JSON" \
  test $rc -eq 1 -a -n "$(grep "bad.jsonl:2: not a JSON object" <<<"$out")"
grep '"event":"eval"' "$work/m.jsonl" > "$work/evals.jsonl" || true
echo '{"event":"note"}' >> "$work/evals.jsonl"
out=$("$NETRUN" plot "$work/evals.jsonl" 2>&1); rc=$?
check "plot of a file without steps is an error" \
  test $rc -eq 1 -a -n "$(grep "evals.jsonl: no step records" <<<"$out")"
echo '{"event":"step","global_step":1}' > "$work/short.jsonl"
out=$("$NETRUN" plot "$work/short.jsonl" 2>&1); rc=$?
check "plot names a step record without its loss" \
  test $rc -eq 1 -a -n "$(grep "short.jsonl:1: a step record without a number 'loss'" <<<"$out")"
grep '"event":"step"' "$work/m.jsonl" | tac > "$work/back.jsonl"
out=$("$NETRUN" plot "$work/back.jsonl" 2>&1); rc=$?
check "plot refuses steps that go back without a resume record" \
  test $rc -eq 1 -a -n "$(grep "back.jsonl:2: step 3 after step 4: the steps go back" <<<"$out")"
echo '{"event":"step","global_step":-1,"loss":1,"phase_index":0}' > "$work/neg.jsonl"
out=$("$NETRUN" plot "$work/neg.jsonl" 2>&1); rc=$?
check "plot refuses a negative global step" \
  test $rc -eq 1 -a -n "$(grep "neg.jsonl:1: a step record whose 'global_step' is -1, not a count" <<<"$out")"
printf '%s\n' "$(head -1 "$work/m.jsonl")" '{"event":"eval","global_step":4,"test_error":140}' > "$work/pct.jsonl"
out=$("$NETRUN" plot "$work/pct.jsonl" 2>&1); rc=$?
check "plot refuses a test error that is not a percentage" \
  test $rc -eq 1 -a -n "$(grep "pct.jsonl:2: an eval record whose 'test_error' is 140, not a percentage" <<<"$out")"
out=$("$NETRUN" plot "$work/nothere.jsonl" 2>&1); rc=$?
check "plot of a missing file is an error naming it" \
  test $rc -eq 1 -a -n "$(grep "nothere.jsonl" <<<"$out")"

# Divergence at the end of a phase: the update of the joint phase's only
# step (lr 1e30) leaves weights whose logits overflow. The run stops with a
# message, the checkpoint of the phase before stays as it was, and no error
# rate of NaN logits is printed (a NaN once ranked as right: 0% error).
sed 's/lr=0.005 momentum=0.9; batch 16; epochs 1; steps 4/lr=1e30 momentum=0.9; batch 16; epochs 1; steps 1/' \
  phases.net > "$work/diverge.net"
"$BUILD/bin/netc" "$work/diverge.net" --augment=none -o "$work/diverge.trainer" >/dev/null 2>&1
"$NETRUN" train "$work/diverge.trainer" --backend reference --max-steps 4 >/dev/null 2>&1
cp "$work/diverge.trainer/checkpoint.safetensors" "$work/pretrained.safetensors"
out=$("$NETRUN" train "$work/diverge.trainer" --backend reference --resume 2>&1); rc=$?
check "a run whose last update diverges stops (exit status $rc)" test $rc -eq 1
check "... saying so, and that the last good checkpoint is kept" \
  grep -q "the end of phase 'joint': .*gives the logit NaN .*parameters that diverged.*; training stopped, the last good checkpoint" <<<"$out"
check "... printing no test error for the diverged model" bash -c "! grep -q '\[joint\] test error' <<<'$out'"
check "... and leaving the checkpoint as it was" cmp -s "$work/pretrained.safetensors" "$work/diverge.trainer/checkpoint.safetensors"

# A checkpoint holding a NaN is refused wherever parameters are read.
python3 - "$work/pretrained.safetensors" "$work/nan.safetensors" <<'PY'
import json, struct, sys
data = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", data[:8])[0]
header = json.loads(data[8:8 + n])
start = header["fc3.bias"]["data_offsets"][0]
data[8 + n + start:8 + n + start + 4] = struct.pack("<f", float("nan"))
open(sys.argv[2], "wb").write(data)
PY
out=$("$NETRUN" eval "$work/diverge.trainer" --backend reference --params "$work/nan.safetensors" 2>&1); rc=$?
check "eval of parameters holding a NaN is an error naming the tensor" \
  test $rc -eq 1 -a -n "$(grep "nan.safetensors: tensor 'fc3.bias' holds NaN at element 0" <<<"$out")"

# A step whose loss is not finite stops the run, saying which term.
sed 's/lr=0.005 momentum=0.9; batch 16; epochs 1; steps 4/lr=1e30 momentum=0.9; batch 16; epochs 1; steps 3/' \
  phases.net > "$work/diverge3.net"
"$BUILD/bin/netc" "$work/diverge3.net" --augment=none -o "$work/diverge3.trainer" >/dev/null 2>&1
out=$("$NETRUN" train "$work/diverge3.trainer" --backend reference 2>&1); rc=$?
check "a step whose loss is NaN stops the run, naming the term and the NaN (it said -nan)" \
  test $rc -eq 1 -a -n "$(grep "phase 'joint' step 2 (epoch 1, global step 6): loss term 'classification' is NaN; training stopped" <<<"$out")"

# Over a finished run's checkpoint, a run without --resume or --restart says
# the run finished (it named a phase 'done'); --resume says there is nothing
# left to do.
"$BUILD/bin/netc" phases.net --augment=none -o "$work/finished.trainer" >/dev/null 2>&1
"$NETRUN" train "$work/finished.trainer" --backend reference >/dev/null 2>&1
out=$("$NETRUN" train "$work/finished.trainer" --backend reference 2>&1); rc=$?
check "train over a finished run's checkpoint says it finished" \
  test $rc -eq 1 -a -n "$(grep "holds the checkpoint of a finished run (global step 8): .netrun eval. evaluates it, --restart" <<<"$out")"
out=$("$NETRUN" train "$work/finished.trainer" --backend reference --resume 2>&1); rc=$?
check "... and --resume that training already finished" \
  test $rc -eq 0 -a -n "$(grep "training already finished" <<<"$out")"
# A phase may be named "done": a run stopped inside it has not finished.
sed 's/phase joint {/phase done {/' phases.net > "$work/done-phase.net"
"$BUILD/bin/netc" "$work/done-phase.net" --augment=none -o "$work/done-phase.trainer" >/dev/null 2>&1
"$NETRUN" train "$work/done-phase.trainer" --backend reference --max-steps 6 >/dev/null 2>&1
out=$("$NETRUN" train "$work/done-phase.trainer" --backend reference 2>&1); rc=$?
check "... but not over one stopped inside a phase named 'done'" \
  test $rc -eq 1 -a -n "$(grep "holds the checkpoint of a run at phase 'done', global step 6: --resume continues it" <<<"$out")"

# An existing checkpoint is neither overwritten by a run that forgot
# --resume nor by an option that swallowed it.
out=$("$NETRUN" train "$work/diverge.trainer" --backend reference 2>&1); rc=$?
check "train over a checkpoint without --resume or --restart is refused" \
  test $rc -eq 1 -a -n "$(grep "holds the checkpoint of a run at phase 'joint', global step 4: --resume continues it, --restart" <<<"$out")"
out=$("$NETRUN" train "$work/diverge.trainer" --metrics --resume 2>&1); rc=$?
check "an option given as another option's value is refused" \
  test $rc -eq 1 -a -n "$(grep -- "--metrics needs a value, but '--resume' is an option" <<<"$out")"
check "... and the checkpoint is as it was" cmp -s "$work/pretrained.safetensors" "$work/diverge.trainer/checkpoint.safetensors"
# An empty value (a script's unset variable) and a repeated option are
# usage errors, not the default or the last one given.
out=$("$NETRUN" train "$work/diverge.trainer" --restart --weights "" 2>&1); rc=$?
check "an empty option value is refused" \
  test $rc -eq 1 -a -n "$(grep -- "--weights needs a value, got an empty one" <<<"$out")"
out=$("$NETRUN" export "$work/diverge.trainer" --format torchvision -o "$work/a.st" --out "$work/b.st" 2>&1); rc=$?
check "-o and --out together are refused" \
  test $rc -eq 1 -a -n "$(grep -- "--out is given twice (-o and --out are one option)" <<<"$out")" -a ! -e "$work/a.st" -a ! -e "$work/b.st"
out=$("$NETRUN" train "$work/diverge.trainer" --resume --resume 2>&1); rc=$?
check "a repeated flag is refused" \
  test $rc -eq 1 -a -n "$(grep -- "--resume is given twice" <<<"$out")"
out=$("$NETRUN" train "$work/diverge.trainer" --backend reference --resume --restart 2>&1); rc=$?
check "--resume with --restart is refused" test $rc -eq 1 -a -n "$(grep "give only one of them" <<<"$out")"

# A checkpoint of another plan: phases.net recompiled with the default
# variant into the same directory has four phases, not two.
"$BUILD/bin/netc" "$work/diverge.net" -o "$work/diverge.trainer" >/dev/null 2>&1
out=$("$NETRUN" train "$work/diverge.trainer" --backend reference --resume 2>&1); rc=$?
check "resuming a checkpoint written for another plan is refused" \
  test $rc -eq 1 -a -n "$(grep "checkpoint was written for other phases or other parameters" <<<"$out")"
check "... saying that --weights can start from its parameters (the same shapes)" \
  grep -q "(adding --weights .*checkpoint.safetensors starts from those of its parameters that the trainer still has)" <<<"$out"
cp -r "$work/diverge.trainer" "$work/wide.trainer"
sed 's/conv 4 kernel/conv 6 kernel/' phases.net >"$work/wide.net"
"$BUILD/bin/netc" "$work/wide.net" -o "$work/wide.trainer" >/dev/null 2>&1
out=$("$NETRUN" train "$work/wide.trainer" --backend reference --resume 2>&1); rc=$?
check "... or, where a parameter changed its shape, that --weights cannot" \
  test $rc -eq 1 -a -n "$(grep "its parameters cannot start the new run either (--weights): 'conv1.bias' is \[4\] in it but \[6\] here" <<<"$out")"
out=$("$NETRUN" eval "$work/wide.trainer" --backend reference 2>&1); rc=$?
check "eval of such a checkpoint says that the trainer was recompiled" \
  test $rc -eq 1 -a -n "$(grep "has shape \[4\] but the parameter is \[6\] (it was written for another compile of .*wide.trainer: the trainer was recompiled since?)" <<<"$out")"
out2=$("$NETRUN" eval "$work/wide.trainer" --backend reference --params "$work/pretrained.safetensors" 2>&1); rc2=$?
check "... but not of another trainer's file given as --params" \
  test $rc2 -eq 1 -a -n "$(grep "has shape \[4\] but the parameter is \[6\]$" <<<"$out2")"
out=$("$NETRUN" train "$work/diverge.trainer" --backend reference --restart --max-steps 1 2>&1); rc=$?
check "... and --restart starts it again" test $rc -eq 0 -a -n "$(grep "stopped after 1 step" <<<"$out")"

# A run stopped inside a phase resumes on as many training images: here the
# trainer was recompiled with another subset (the plan's hash, of phases
# and parameters, is the same).
"$BUILD/bin/netc" phases.net -o "$work/sub.trainer" >/dev/null 2>&1
"$NETRUN" train "$work/sub.trainer" --backend reference --max-steps 2 >/dev/null 2>&1
sed 's/subset 128/subset 96/' phases.net >"$work/sub96.net"
"$BUILD/bin/netc" "$work/sub96.net" -o "$work/sub.trainer" >/dev/null 2>&1
out=$("$NETRUN" train "$work/sub.trainer" --backend reference --resume 2>&1); rc=$?
check "resuming inside a phase on another number of training images is refused" \
  test $rc -eq 1 -a -n "$(grep "written at step 2 of phase 1 by a run on 128 training images, and this data has 96" <<<"$out")"

# Two runs on one trainer directory: the second is refused while the first
# holds its lock (flock(1) stands in for the first), and leaves the first
# run's checkpoint temporaries alone: their writer's pid may be one this
# machine cannot see (here one that is not running).
touch "$work/diverge.trainer/.checkpoint.safetensors.tmp.999999999"
out=$(flock "$work/diverge.trainer/.netrun.lock" "$NETRUN" train "$work/diverge.trainer" --backend reference --resume 2>&1); rc=$?
check "a second run on a trainer directory in use is refused" \
  test $rc -eq 1 -a -n "$(grep "another netrun is training" <<<"$out")"
check "... without removing the first run's temporary files" \
  test -f "$work/diverge.trainer/.checkpoint.safetensors.tmp.999999999"
rm -f "$work/diverge.trainer/.checkpoint.safetensors.tmp.999999999"

# A run killed past its last checkpoint left records of steps that the
# resumed run does again: the resumed run marks where it resumed, and plot
# keeps each step once (here two such records added by hand after step 3).
rm -f "$work/diverge.trainer"/checkpoint.*
"$NETRUN" train "$work/diverge.trainer" --backend reference --max-steps 3 \
  --log-every 1 --metrics "$work/k.jsonl" >/dev/null 2>&1
python3 - "$work/k.jsonl" <<'PY'
import json, sys
last = [json.loads(l) for l in open(sys.argv[1])][-1]
with open(sys.argv[1], "a") as f:
    for g in (4, 5):
        f.write(json.dumps(dict(last, global_step=g, step=g, loss=99.0)) + "\n")
PY
"$NETRUN" train "$work/diverge.trainer" --backend reference --resume \
  --max-steps 3 --log-every 1 --metrics "$work/k.jsonl" >/dev/null 2>&1
check "a resumed run marks where it resumed in the metrics" \
  grep -q '^{"event":"resume","global_step":3,' "$work/k.jsonl"
out=$("$NETRUN" plot "$work/k.jsonl" -o "$work/k.png" 2>&1)
if ! grep -q "built without PLplot" <<<"$out"; then
  # Each step record but the two added gives a point of the loss and of
  # each of its terms.
  want=$(python3 -c '
import json, sys
steps = [r for r in map(json.loads, open(sys.argv[1])) if r["event"] == "step" and r["loss"] != 99.0]
print(sum(1 + len(r["terms"]) for r in steps), len(steps))' "$work/k.jsonl")
  check "... and plot keeps each of the 6 steps once" \
    test "$want" = "$(grep -oE '\(([0-9]+) points\)' <<<"$out" | tr -dc 0-9) 6"
fi

# Outputs that would destroy an input, and outputs that cannot be written.
out=$("$NETRUN" reconstruct "$work/diverge.trainer" --out "$work/diverge.trainer/plan.json" 2>&1); rc=$?
check "reconstruct refuses to write its picture over the plan" \
  test $rc -eq 1 -a -n "$(grep "plan.json, a file 'reconstruct' reads\|plan.json is a file 'reconstruct' reads" <<<"$out")"
out=$("$NETRUN" export "$work/diverge.trainer" --format torchvision -o "$work/diverge.trainer/checkpoint.safetensors" 2>&1); rc=$?
check "export refuses to write over the checkpoint it reads" \
  test $rc -eq 1 -a -n "$(grep "a file 'export' reads" <<<"$out")"
check "... and the trainer still loads" "$NETRUN" info "$work/diverge.trainer" >/dev/null
out=$("$NETRUN" info "$work/diverge.trainer" 2>&1 >/dev/full); rc=$?
check "netrun on a full standard output says so" \
  test $rc -eq 1 -a -n "$(grep "cannot write to standard output" <<<"$out")"
out=$("$NETRUN" train "$work/diverge.trainer" --backend reference --resume --metrics "$work" 2>&1); rc=$?
check "metrics into a directory say so" \
  test $rc -eq 1 -a -n "$(grep "cannot open for writing (a directory)" <<<"$out")"
out=$("$NETRUN" train "$work/diverge.trainer" --backend reference --resume --metrics /dev/full 2>&1); rc=$?
check "metrics that cannot be written stop the run" \
  test $rc -eq 1 -a -n "$(grep "/dev/full: cannot write the metrics (No space left on device); training stopped" <<<"$out")"
out=$("$NETRUN" data "$work/diverge.trainer" --images 10 --batch 100000 2>&1); rc=$?
check "data times no batch larger than its images" \
  test $rc -eq 0 -a -n "$(grep "10 images in batches of 10 " <<<"$out")"

# eval, data --split test and reconstruct read the test files alone: a
# damaged training file stops training, not them.
mkdir -p "$work/damaged"
for f in t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz train-labels-idx1-ubyte.gz; do
  ln -s "/usr/share/datasets/fashion-mnist/$f" "$work/damaged/$f"
done
head -c 100000 /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz >"$work/damaged/train-images-idx3-ubyte.gz"
out=$("$NETRUN" eval "$work/t.trainer" --backend reference --data "$work/damaged" 2>&1); rc=$?
check "eval of the test set does not read a damaged training file" \
  test $rc -eq 0 -a -n "$(grep "^test error .* of 32 wrong" <<<"$out")"
out=$("$NETRUN" data "$work/t.trainer" --split test --data "$work/damaged" 2>&1); rc=$?
check "... nor does data --split test" \
  test $rc -eq 0 -a -n "$(grep "^data test (fashion-mnist): 32 images" <<<"$out")"
out=$("$NETRUN" reconstruct "$work/t.trainer" --backend reference --data "$work/damaged" --out "$work/damaged.png" 2>&1); rc=$?
check "... nor does reconstruct" \
  test $rc -eq 0 -a -n "$(grep "^PSNR over 32 test images" <<<"$out")"
out=$("$NETRUN" eval "$work/t.trainer" --backend reference --split train --data "$work/damaged" 2>&1); rc=$?
check "... while eval --split train names it" \
  test $rc -eq 1 -a -n "$(grep "train-images-idx3-ubyte.gz" <<<"$out")"
# A metrics file named as a file of the data set would truncate it.
out=$("$NETRUN" train "$work/t.trainer" --backend reference --restart --data "$work/damaged" \
  --metrics "$work/damaged/train-images-idx3-ubyte.gz" 2>&1); rc=$?
check "train refuses metrics over a file of its data set" \
  test $rc -eq 1 -a -n "$(grep "damaged/train-images-idx3-ubyte.gz is part of the data set 'train' reads (fashion-mnist in " <<<"$out")"
check "... and leaves the file as it was" \
  cmp -s <(head -c 100000 /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz) "$work/damaged/train-images-idx3-ubyte.gz"

# An output path holding a FIFO (or a device) is refused, not replaced by a
# plain file through the writer's rename; images holding NaN are refused.
mkfifo "$work/fifo"
out=$("$NETRUN" export "$work/diverge.trainer" --format torchvision -o "$work/fifo" 2>&1); rc=$?
check "export refuses an output that is a FIFO" \
  test $rc -eq 1 -a -n "$(grep "fifo: is a FIFO, not a regular file" <<<"$out")"
check "... and leaves it a FIFO" test -p "$work/fifo"
out=$(timeout 20 "$NETRUN" plot "$work/m.jsonl" -o "$work/fifo" 2>&1); rc=$?
check "plot refuses an output that is a FIFO (it hung in its open)" \
  test $rc -eq 1 -a -n "$(grep "fifo: is a FIFO, not a regular file" <<<"$out")"
out=$("$NETRUN" plot "$work/m.jsonl" -o /dev/full 2>&1); rc=$?
check "plot refuses a device (it wrote into /dev/full and said it wrote)" \
  test $rc -eq 1 -a -n "$(grep "/dev/full: is a character device" <<<"$out")"
check "... and leaves no temporary file beside its outputs" \
  test -z "$(find "$work" /dev -maxdepth 1 -name '*.plot.*' 2>/dev/null)"
python3 - "$work/nan-images.safetensors" <<'PY'
import json, struct, sys
values = [0.5] * (1 * 28 * 28)
values[7] = float("nan")
h = json.dumps({"images": {"dtype": "F32", "shape": [1, 1, 28, 28],
                           "data_offsets": [0, 4 * len(values)]}}).encode()
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + struct.pack("<%df" % len(values), *values))
PY
out=$("$NETRUN" infer "$work/diverge.trainer" --backend reference --images "$work/nan-images.safetensors" -o "$work/logits.safetensors" 2>&1); rc=$?
check "infer refuses images holding NaN" \
  test $rc -eq 1 -a -n "$(grep "tensor 'images' holds NaN at element 7" <<<"$out")"

# netc: its output over its own input, and a full output.
cp phases.net "$work/self.net"
out=$("$BUILD/bin/netc" "$work/self.net" -emit=mlir -o "$work/self.net" 2>&1); rc=$?
check "netc refuses to write over its model file" \
  test $rc -eq 1 -a -n "$(grep "is the model file itself" <<<"$out")"
check "... which is as it was" cmp -s phases.net "$work/self.net"
out=$("$BUILD/bin/netc" phases.net -emit=mlir 2>&1 >/dev/full); rc=$?
check "netc on a full standard output says so" \
  test $rc -eq 1 -a -n "$(grep "cannot write to standard output: No space left on device" <<<"$out")"

echo "netrun: $passed passed, $failed failed"
((failed == 0))
