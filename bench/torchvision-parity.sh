#!/usr/bin/env bash
# PyTorch interop parity, full size: torchvision's VGG-16 and AlexNet with
# random weights (nothing can be downloaded here) against netc, in fp32.
#   1. torchvision builds the model (weights=None, biases drawn too), in
#      eval mode, and saves its state_dict as safetensors;
#   2. netc compiles examples/vgg16.net (bench/torchvision-alexnet.net for
#      AlexNet: torchvision's layout, not the Caffe one of examples/) with
#      `pretrained "..." names=torchvision` added, and `netrun infer` gives
#      the logits of N random normalised 3x224x224 images;
#   3. PyTorch gives the logits of the same images; they must agree within
#      1e-4 relative (max |difference| over max |logit|);
#   4. `netrun export --format torchvision-<model>` writes netc's parameters
#      back; torchvision's load_state_dict(strict=True) must accept them and
#      give the same logits again.
# Needs PyTorch and torchvision in build/bench-venv (see bench/backends.sh)
# and a build (build/bin). Takes about a minute on 2 cores.
#   bench/torchvision-parity.sh [IMAGES]      (default 4)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-4}
PY=build/bench-venv/bin/python
HELP=bench/torchvision_parity.py
NETC=build/bin/netc
NETRUN=build/bin/netrun
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[[ -x $PY ]] || { echo "no $PY: install torch and torchvision there"; exit 1; }

echo "torchvision parity, $(date -u +%F), $(nproc) cores, $($PY -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)')"
$PY $HELP images "$N" 3 224 224 "$work/images.safetensors"
fail=0
for model in vgg16 alexnet; do
  echo "== $model =="
  t0=$(date +%s.%N)
  $PY $HELP model $model "$work/$model.safetensors"
  if [[ $model == vgg16 ]]; then
    # The example with the import added; small batches keep the eval
    # program's arena small (the phases are not run here).
    sed -e 's/^  classes 1000$/&\n  pretrained "vgg16.safetensors" names=torchvision/' \
        -e 's/batch [0-9]*/batch 8/g' examples/vgg16.net >"$work/vgg16.net"
  else
    cp bench/torchvision-alexnet.net "$work/alexnet.net"
  fi
  grep -q 'names=torchvision' "$work/$model.net"
  $NETC "$work/$model.net" --augment=none -o "$work/$model.trainer"
  $NETRUN infer "$work/$model.trainer" --images "$work/images.safetensors" \
    -o "$work/netc.safetensors" 2>/dev/null
  $PY $HELP logits $model "$work/$model.safetensors" "$work/images.safetensors" \
    "$work/torch.safetensors"
  echo "  import: netc's logits against PyTorch's"
  $PY $HELP compare "$work/netc.safetensors" "$work/torch.safetensors" --tol 1e-4 || fail=1
  $NETRUN export "$work/$model.trainer" --format torchvision-$model \
    -o "$work/export.safetensors" 2>/dev/null
  $PY $HELP logits $model "$work/export.safetensors" "$work/images.safetensors" \
    "$work/torch-export.safetensors"
  echo "  export: load_state_dict(strict=True) accepted it; PyTorch's logits of it against netc's"
  $PY $HELP compare "$work/netc.safetensors" "$work/torch-export.safetensors" --tol 1e-4 || fail=1
  $PY $HELP same "$work/export.safetensors" "$work/$model.safetensors" || fail=1
  echo "  $model: $(echo "$(date +%s.%N) - $t0" | bc) s"
done
((fail == 0)) && echo "parity: all within 1e-4" || echo "parity: FAILED"
exit $fail
