#!/usr/bin/env bash
# Compiles, on a machine with the compiler (MLIR), everything
# bench/gpu-check.sh needs on the GPU machine, which has none:
#   bench/gpu-trainers.sh [build-dir]      (default: build)
# into bench/gpu-trainers/ (untracked, and deliberately not git-ignored: the
# device tool copies untracked files that git does not ignore, so the folder
# travels with the working tree without a `carry`):
#   fmnist/            examples/fashion-mnist.net (parity: its classifier
#                      phase)
#   fmnist-joint/      bench/fmnist-parity.net (parity: the SWWAE-all step)
#   fmnist-joint-bf16/ the same, --precision=bf16 (parity: the reference
#                      backend's bf16 emulation against the cuda backend)
#   fmnist-joint-dp/   the same, --data-parallel (NCCL with one rank)
#   vgg16-none/, vgg16-swwae-all/     examples/vgg16.net (benchmark), fp32,
#                      NCHW maps (fp32's default layout; the peer's are
#                      channels_last in every precision)
#   vgg32-none/, vgg32-swwae-all/     bench/vgg32.net (benchmark), likewise
#   vgg{16,32}-{none,swwae-all}-{tf32,bf16}/  the same, --precision=tf32 and
#                      --precision=bf16 (the benchmark's other precisions;
#                      NHWC, their default)
#   vgg16-none-tf32-nchw/  VGG-16 in tf32 with --layout=nchw (what the
#                      layout buys)
#   every/every-<variant>.json        test/Training/Inputs/every-layer.net for
#                      the seven variants (netc-gpu-tests' whole-step test)
#   every/every-nolrn-<variant>-bf16.json  every-layer-nolrn.net (no LRN),
#                      --precision=bf16, the seven variants (the bf16
#                      whole-step test)
#   every/every-<variant>-tf32.json  every-layer.net, --precision=tf32, the
#                      seven variants (the tf32 whole-step test: f32 maps
#                      in NHWC)
#   every/every-swwae-all-bf16.json   every-layer.net, --precision=bf16 (the
#                      bf16 step with LRN, on the own LRN kernels)
#   every/dense-eval-tf32.json    dense-eval.net, --precision=tf32 (a tf32
#                      step whose first convolution has one input channel)
#   every/pool-to-one-bf16.json   pool-to-one.net, --precision=bf16 (a
#                      bf16 step whose last max-pool leaves one pixel)
#   every/packs-{bf16,tf32}.json  packs.net (maps of whole channel packs:
#                      the backward fusions and the channel padding)
#   vgg*/cudnn-algorithms.json  what the H200 chose for those cells
#   fmnist-data/       the first 2560 training and 512 test images of
#                      Fashion-MNIST as IDX (the GPU machine may not have
#                      the dataset; both parity runs read the same files)
#   fmnist-tiny/       the first 40 training and 24 test images (the
#                      example's whole schedule below its batch of 64)
#   deps/              a small install prefix of this machine's Debian
#                      packages the runtime builds against (fmt,
#                      nlohmann-json, zlib's headers; GoogleTest's source):
#                      the GPU machine is said to have them, and gpu-check's
#                      build falls back to this prefix only where it has not
# Trainer folders are not named *.trainer, which .gitignore ignores.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
NETC=$BUILD/bin/netc
OUT=bench/gpu-trainers
[[ -x $NETC ]] || { echo "gpu-trainers: no $NETC (build netc first)" >&2; exit 1; }
rm -rf "$OUT"
mkdir -p "$OUT/every" "$OUT/fmnist-data" "$OUT/fmnist-tiny"

"$NETC" examples/fashion-mnist.net -o "$OUT/fmnist"
"$NETC" bench/fmnist-parity.net -o "$OUT/fmnist-joint"
"$NETC" bench/fmnist-parity.net --precision=bf16 -o "$OUT/fmnist-joint-bf16"
"$NETC" bench/fmnist-parity.net --data-parallel -o "$OUT/fmnist-joint-dp"
# Each precision in its default layout: NCHW for fp32 (cuDNN's fp32 NHWC
# kernels are slow: on the H200, 2026-11-30, the VGG-16 SWWAE-all fp32 cell
# with NHWC maps did not finish within 50 s, and its retry stepped at 44
# images/s, where NCHW later ran it at 308), NHWC
# for tf32 and bf16; and a tf32 VGG-16 cell with NCHW maps, to measure what
# the layout buys there.
for v in none swwae-all; do
  "$NETC" examples/vgg16.net --augment=$v -o "$OUT/vgg16-$v"
  "$NETC" bench/vgg32.net --augment=$v -o "$OUT/vgg32-$v"
  for p in tf32 bf16; do
    "$NETC" examples/vgg16.net --augment=$v --precision=$p \
      -o "$OUT/vgg16-$v-$p"
    "$NETC" bench/vgg32.net --augment=$v --precision=$p -o "$OUT/vgg32-$v-$p"
  done
done
"$NETC" examples/vgg16.net --augment=none --precision=tf32 --layout=nchw \
  -o "$OUT/vgg16-none-tf32-nchw"
for v in none sae-first sae-all sae-layerwise swwae-first swwae-all \
    swwae-layerwise; do
  "$NETC" test/Training/Inputs/every-layer.net --augment=$v -emit=plan \
    -o "$OUT/every/every-$v.json"
  "$NETC" test/Training/Inputs/every-layer-nolrn.net --augment=$v \
    --precision=bf16 -emit=plan -o "$OUT/every/every-nolrn-$v-bf16.json"
  "$NETC" test/Training/Inputs/every-layer.net --augment=$v \
    --precision=tf32 -emit=plan -o "$OUT/every/every-$v-tf32.json"
done
"$NETC" test/Training/Inputs/every-layer.net --augment=swwae-all \
  --precision=bf16 -emit=plan -o "$OUT/every/every-swwae-all-bf16.json"
"$NETC" test/Training/Inputs/pool-to-one.net --precision=bf16 -emit=plan \
  -o "$OUT/every/pool-to-one-bf16.json"
for p in bf16 tf32; do
  "$NETC" test/Training/Inputs/packs.net --precision=$p -emit=plan \
    -o "$OUT/every/packs-$p.json"
done
"$NETC" test/Training/Inputs/dense-eval.net --precision=tf32 -emit=plan \
  -o "$OUT/every/dense-eval-tf32.json"

# A small Fashion-MNIST: the IDX headers with the counts rewritten.
small_fmnist() { # DIR TRAIN TEST
  python3 - "$@" <<'PY'
import gzip, struct, sys
src, dst = "/usr/share/datasets/fashion-mnist", sys.argv[1]
for prefix, n in (("train", int(sys.argv[2])), ("t10k", int(sys.argv[3]))):
    with gzip.open(f"{src}/{prefix}-images-idx3-ubyte.gz") as f:
        magic, _, h, w = struct.unpack(">IIII", f.read(16))
        data = f.read(n * h * w)
    with gzip.open(f"{dst}/{prefix}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", magic, n, h, w) + data)
    with gzip.open(f"{src}/{prefix}-labels-idx1-ubyte.gz") as f:
        magic, _ = struct.unpack(">II", f.read(8))
        data = f.read(n)
    with gzip.open(f"{dst}/{prefix}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", magic, n) + data)
PY
}
small_fmnist "$OUT/fmnist-data" 2560 512
# Fewer training images than the example's batch (64): its whole schedule
# in a step or two a phase, every step and evaluation below the batch.
small_fmnist "$OUT/fmnist-tiny" 40 24
# The runtime's build dependencies as a relocatable prefix: headers, the
# libraries, and the CMake package files (which find their prefix relative
# to themselves).
# fmt is used header-only from it and GoogleTest built from its source, so
# that nothing compiled here need run there.
deps=$OUT/deps
arch=lib/x86_64-linux-gnu
mkdir -p "$deps/include" "$deps/$arch/cmake" "$deps/share/cmake" "$deps/src"
cp -r /usr/include/fmt /usr/include/nlohmann /usr/include/zlib.h \
  /usr/include/zconf.h "$deps/include/"
cp -a /usr/$arch/libfmt.so* "$deps/$arch/" # fmt's package file names it
cp -r /usr/$arch/cmake/fmt "$deps/$arch/cmake/"
cp -r /usr/share/cmake/nlohmann_json "$deps/share/cmake/"
cp -r /usr/src/googletest "$deps/src/"
rm -rf "$deps"/src/googletest/{googletest,googlemock}/test # not built

# The convolution algorithms and graph plans the H200 chose for the
# benchmark cells (bench/results/h200-2026-12-01): on that GPU with that
# cuDNN a cell runs each once and takes it rather than search, so that the
# check's time goes to steps (the cells' timed steps come after the search
# either way); another GPU or cuDNN discards the file (its "origin") and
# searches.
for t in "$OUT"/vgg*; do
  cp bench/results/h200-2026-12-01/call2/cudnn-algorithms.json "$t/"
done

du -sh "$OUT"
echo "gpu-trainers: wrote $OUT (untracked; the device tool carries it)"
