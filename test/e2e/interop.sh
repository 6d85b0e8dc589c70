#!/usr/bin/env bash
# PyTorch interop end to end, without PyTorch: interop/ holds a tiny
# torchvision-style VGG (interop/tiny-vgg.net; weights, 4 images and
# PyTorch's logits written once by `bench/torchvision_parity.py fixture`).
# netc imports it through `pretrained ... names=torchvision`, `netrun infer`
# must give PyTorch's logits (1e-4 relative), `netrun export` must give back
# the same tensors (also from a trainer with decoders), and the re-import of
# the export the same logits. Then the bad inputs: a file whose names and
# shapes do not match (every mismatch listed), a truncated file, an unknown
# format, a named model the trainer is not, images of the wrong shape.
# Prints "interop: N passed, M failed".
#   test/e2e/interop.sh BUILD_DIR
set -uo pipefail
source "$(dirname "$0")/lib.sh"
NETC=$BUILD/bin/netc
NETRUN=$BUILD/bin/netrun
PY="/usr/bin/python3 ../../bench/torchvision_parity.py"
FIX=interop

cp "$FIX"/tiny-vgg.net "$FIX"/tiny-vgg.safetensors "$work"/ || exit 1
"$NETC" "$work/tiny-vgg.net" -o "$work/tiny.trainer" >/dev/null 2>"$work/err"
check "netc imports the torchvision state_dict" test $? -eq 0
"$NETRUN" infer "$work/tiny.trainer" --images "$FIX/images.safetensors" \
  -o "$work/logits.safetensors" >/dev/null 2>&1
check "netrun infer gives the logits of the fixture's images" test $? -eq 0
check "... equal to PyTorch's within 1e-4 relative" \
  $PY compare "$work/logits.safetensors" "$FIX/logits.safetensors" --tol 1e-4

"$NETRUN" export "$work/tiny.trainer" --format torchvision \
  -o "$work/export.safetensors" >/dev/null 2>&1
check "netrun export --format torchvision exits 0" test $? -eq 0
check "... and gives back the imported tensors, value for value" \
  $PY same "$work/export.safetensors" "$FIX/tiny-vgg.safetensors"

# With decoders (swwae-all) and after training steps' worth of other values:
# the decoders' parameters stay out of the export.
"$NETC" "$work/tiny-vgg.net" --augment=swwae-all -o "$work/dec.trainer" >/dev/null 2>&1
"$NETRUN" export "$work/dec.trainer" --format torchvision \
  -o "$work/dec-export.safetensors" >/dev/null 2>&1
check "a trainer with decoders exports the classifier alone" \
  $PY same "$work/dec-export.safetensors" "$FIX/tiny-vgg.safetensors"

# The export re-imported: the same logits, bit for bit.
mkdir -p "$work/re" && cp "$work/tiny-vgg.net" "$work/re/" &&
  cp "$work/export.safetensors" "$work/re/tiny-vgg.safetensors"
"$NETC" "$work/re/tiny-vgg.net" -o "$work/re.trainer" >/dev/null 2>&1 &&
  "$NETRUN" infer "$work/re.trainer" --images "$FIX/images.safetensors" \
    -o "$work/re-logits.safetensors" >/dev/null 2>&1
check "the re-imported export gives the same logits" \
  $PY compare "$work/re-logits.safetensors" "$work/logits.safetensors" --tol 0

# Batch norm: `pretrained` reads its scale, shift, running mean and variance
# under netc's names (a checkpoint's) and under torchvision's (an export's);
# the two trainers give the same logits, bit for bit.
mkdir -p "$work/bn/tv"
cat >"$work/bn/bn.net" <<'NET'
network bn {
  input 3x32x32
  classes 10
  pretrained "bn.safetensors"
  macro conv1 { c1: conv 4 kernel=3 pad=1; bn1: batchnorm; relu; maxpool 2 }
  fc1: fc 10
}
NET
sed 's/"bn.safetensors"/"bn.safetensors" names=torchvision/' "$work/bn/bn.net" >"$work/bn/tv/bn.net"
/usr/bin/python3 - "$work" <<'PY'
import array, random, sys; sys.path.insert(0, "../../bench")
from torchvision_parity import write_st
rng = random.Random(5)
def t(shape, lo, hi):
    n = 1
    for d in shape:
        n *= d
    return (shape, array.array("f", [rng.uniform(lo, hi) for _ in range(n)]))
write_st(f"{sys.argv[1]}/bn/bn.safetensors", {
    "c1.weight": t([4, 3, 3, 3], -0.3, 0.3), "c1.bias": t([4], -0.1, 0.1),
    "bn1.scale": t([4], 0.5, 1.5), "bn1.shift": t([4], -0.5, 0.5),
    "bn1.mean": t([4], -1, 1), "bn1.var": t([4], 0.2, 3),
    "fc1.weight": t([10, 1024], -0.05, 0.05), "fc1.bias": t([10], -0.1, 0.1)})
PY
"$NETC" "$work/bn/bn.net" -o "$work/bn.trainer" >/dev/null 2>&1
check "pretrained reads a batch norm's four tensors under netc's names" test $? -eq 0
"$NETRUN" export "$work/bn.trainer" --format torchvision \
  -o "$work/bn/tv/bn.safetensors" >/dev/null 2>&1
check "... its running mean and variance among them (their export)" /usr/bin/python3 - "$work" <<'PY'
import sys; sys.path.insert(0, "../../bench")
from torchvision_parity import read_st
w = sys.argv[1]
a, b = read_st(f"{w}/bn/bn.safetensors"), read_st(f"{w}/bn/tv/bn.safetensors")
sys.exit(0 if a["bn1.mean"] == b["features.1.running_mean"] and
         a["bn1.var"] == b["features.1.running_var"] else 1)
PY
"$NETC" "$work/bn/tv/bn.net" -o "$work/bn-tv.trainer" >/dev/null 2>&1
check "... and under torchvision's" test $? -eq 0
for t in bn bn-tv; do
  "$NETRUN" infer "$work/$t.trainer" --images "$FIX/images.safetensors" \
    -o "$work/$t-logits.safetensors" >/dev/null 2>&1
done
check "... which give the same logits" \
  $PY compare "$work/bn-tv-logits.safetensors" "$work/bn-logits.safetensors" --tol 0

# A checkpoint (here: the parameters given by --params) is what export
# writes: a changed value comes out changed.
/usr/bin/python3 - "$work" <<'PY'
import sys; sys.path.insert(0, "../../bench")
from torchvision_parity import read_st, write_st
w = sys.argv[1]
t = read_st(f"{w}/tiny.trainer/params.safetensors")
t["fc8.bias"][1][0] += 1.0
write_st(f"{w}/trained.safetensors", t)
PY
"$NETRUN" export "$work/tiny.trainer" --params "$work/trained.safetensors" \
  --format torchvision -o "$work/trained-export.safetensors" >/dev/null 2>&1
check "export --params writes those parameters" /usr/bin/python3 - "$work" <<'PY'
import sys; sys.path.insert(0, "../../bench")
from torchvision_parity import read_st
w = sys.argv[1]
a = read_st(f"{w}/trained-export.safetensors")["classifier.3.bias"][1]
b = read_st(f"interop/tiny-vgg.safetensors")["classifier.3.bias"][1]
sys.exit(0 if abs(a[0] - b[0] - 1.0) < 1e-6 and a[1:] == b[1:] else 1)
PY

# bad DESCRIPTION EXPECTED-ERROR-COUNT MESSAGE COMMAND...: exit 1, that many
# "error" lines, one of them holding MESSAGE.
bad() {
  local what=$1 count=$2 msg=$3; shift 3
  "$@" >"$work/out" 2>"$work/err"
  local rc=$?
  if [[ $rc -eq 1 ]] && grep -qF -- "$msg" "$work/err" &&
     [[ $(grep -c "error" "$work/err") -eq $count ]]; then
    echo "ok   $what"; passed=$((passed + 1))
  else
    echo "FAIL $what (exit $rc)"; cat "$work/err"; failed=$((failed + 1))
  fi
}

# Names and shapes that do not match: a renamed tensor, a wrong shape and a
# missing one; each is listed.
mkdir -p "$work/mismatch" && cp "$work/tiny-vgg.net" "$work/mismatch/"
/usr/bin/python3 - "$work" <<'PY'
import array, sys; sys.path.insert(0, "../../bench")
from torchvision_parity import read_st, write_st
w = sys.argv[1]
t = read_st("interop/tiny-vgg.safetensors")
t["features.1.weight"] = t.pop("features.0.weight")
shape, v = t["classifier.0.weight"]
t["classifier.0.weight"] = ([32, 512], v[:32 * 512])
del t["classifier.3.bias"]
write_st(f"{w}/mismatch/tiny-vgg.safetensors", t)
PY
bad "a file whose names and shapes do not match: every mismatch listed" 3 \
  "'classifier.0.weight' of '$work/mismatch/tiny-vgg.safetensors' is F32 32x512, the parameter @fc6.weight needs F32 32x1024" \
  "$NETC" "$work/mismatch/tiny-vgg.net" -o "$work/mismatch.trainer"
check "... naming the renamed tensor" \
  grep -qF "layer 'conv1_1': '$work/mismatch/tiny-vgg.safetensors' has no tensor 'features.0.weight'" "$work/err"
check "... and the missing one" \
  grep -qF "layer 'fc8': '$work/mismatch/tiny-vgg.safetensors' has no tensor 'classifier.3.bias'" "$work/err"
check "... and leaving no trainer behind" test ! -e "$work/mismatch.trainer"

mkdir -p "$work/cut" && cp "$work/tiny-vgg.net" "$work/cut/"
head -c 5000 "$FIX/tiny-vgg.safetensors" >"$work/cut/tiny-vgg.safetensors"
bad "a truncated safetensors file on import" 1 "tiny-vgg.safetensors' is truncated: its tensors need 140424 bytes of data, it has 4058" \
  "$NETC" "$work/cut/tiny-vgg.net" -o "$work/cut.trainer"
head -c 5000 "$FIX/images.safetensors" >"$work/cut-images.safetensors"
bad "a truncated safetensors file for infer" 1 "cut-images.safetensors" \
  "$NETRUN" infer "$work/tiny.trainer" --images "$work/cut-images.safetensors" -o "$work/x.safetensors"
bad "an unknown export format" 1 \
  "unknown format 'onnx' (expected one of: torchvision, torchvision-vgg16, torchvision-alexnet)" \
  "$NETRUN" export "$work/tiny.trainer" --format onnx -o "$work/x.safetensors"
bad "export as a model the trainer is not: every problem listed" 1 \
  "cannot export as torchvision-vgg16: 32 problem(s)" \
  "$NETRUN" export "$work/tiny.trainer" --format torchvision-vgg16 -o "$work/x.safetensors"
check "... each on its line" grep -qxF "  missing 'features.28.weight' [512, 512, 3, 3]" "$work/err"
check "... and nothing written" test ! -e "$work/x.safetensors"
bad "infer on a file without images" 1 "no tensor 'images' (expected [N, 3, 32, 32])" \
  "$NETRUN" infer "$work/tiny.trainer" --images "$FIX/logits.safetensors" -o "$work/x.safetensors"
/usr/bin/python3 - "$work" <<'PY'
import sys; sys.path.insert(0, "../../bench")
from torchvision_parity import read_st, write_st
shape, v = read_st("interop/images.safetensors")["images"]
write_st(f"{sys.argv[1]}/small.safetensors", {"images": ([4, 3, 16, 64], v)})
write_st(f"{sys.argv[1]}/none.safetensors", {"images": ([0, 3, 32, 32], b"")})
PY
bad "infer on images of the wrong shape" 1 \
  "tensor 'images' is [4, 3, 16, 64], the network takes [N, 3, 32, 32]" \
  "$NETRUN" infer "$work/tiny.trainer" --images "$work/small.safetensors" -o "$work/x.safetensors"
bad "infer on no images" 1 "tensor 'images' holds no images ([0, ...]); give at least one" \
  "$NETRUN" infer "$work/tiny.trainer" --images "$work/none.safetensors" -o "$work/x.safetensors"

echo "interop: $passed passed, $failed failed"
((failed == 0))
