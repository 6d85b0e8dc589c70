#!/usr/bin/env bash
# Builds and runs one of netc's libFuzzer harnesses.
#
#   test/fuzz/run.sh [frontend|plan|safetensors|passes|data] [SECONDS]
#                                      (default: frontend, 600 seconds)
#
#   frontend     netc-frontend-fuzzer: .net text -> lexer, parser, Sema.
#                Seeds: every .net file of examples/ and test/; dictionary
#                test/fuzz/net.dict.
#   plan         netc-plan-fuzzer: plan.json text -> parsePlan, ParamStore,
#                an Executor per program. Seeds: the plan.json of every .net
#                file of examples/ and test/ that compiles (netc -emit=plan).
#   safetensors  netc-safetensors-fuzzer: file bytes -> readSafetensors (and
#                a write/read round trip). Seeds: small files written here.
#   passes       netc-passes-fuzzer: MLIR text -> the pass pipeline from the
#                IR's stage to the plan. Seeds: every -emit stage of netc
#                (mlir-raw, mlir, mirrored, phases, autodiff, planned) on
#                examples/*.net and test/e2e/*.net, and the .mlir tests of
#                test/Dialect and test/Training; a dictionary of the op and
#                attribute names in those seeds.
#   data         netc-data-fuzzer: file bytes -> the image-folder loader
#                (decode, resize, crop, mirror), readIdx and loadCifar.
#                Seeds: small JPEGs and PNGs of every kind the decoder meets
#                (Debian's python3-pil), IDX files plain and gzipped, CIFAR
#                records.
#
# Configures build-fuzz/ with clang-19 (-DNETC_BUILD_FUZZER=ON) if needed and
# builds the harness. Seeds for plan and passes come from the project's
# netc ($NETC, default build/bin/netc; scripts/setup.sh builds it only if it
# is missing). Everything the run writes (corpus, crash-*/timeout-*/leak-*
# artifacts, log) goes under a directory in /tmp, never into the repository.
# The fuzzer runs from an empty directory there, so `import` in frontend
# inputs and relative `file` initialisers in plans find nothing.
#
# Environment: NETC_FUZZ_WORK (default: a new mktemp -d under /tmp),
#              NETC_FUZZ_BUILD (default: <repo>/build-fuzz),
#              NETC_FUZZ_ARGS  (extra libFuzzer flags),
#              NETC_FUZZ_NINJA (extra ninja flags, e.g. -j1),
#              NETC            (the netc that compiles seeds).
set -euo pipefail

TARGET=frontend
case "${1:-}" in
  frontend|plan|safetensors|passes|data) TARGET="$1"; shift ;;
  ''|[0-9]*) ;;
  *) echo "usage: $0 [frontend|plan|safetensors|passes|data] [SECONDS]" >&2; exit 2 ;;
esac
SECONDS_TO_RUN="${1:-600}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${NETC_FUZZ_BUILD:-$ROOT/build-fuzz}"
WORK="${NETC_FUZZ_WORK:-$(mktemp -d /tmp/netc-fuzz-$TARGET.XXXXXX)}"
NETC="${NETC:-$ROOT/build/bin/netc}"

# LLVM/MLIR 19 (scripts/setup.sh, which also builds build/) if missing, and
# netc when the seeds need it; then clang 19 and its libFuzzer runtime (and
# for the data harness, the image codecs and the Python that writes seeds).
if ! dpkg-query -W -f='${Status}' libmlir-19-dev 2>/dev/null | grep -q "install ok installed" ||
   { [[ $TARGET == plan || $TARGET == passes ]] && [[ ! -x $NETC ]]; }; then
  "$ROOT/scripts/setup.sh" "$ROOT/build" >/dev/null
fi
PACKAGES=(clang-19 libclang-rt-19-dev)
[[ $TARGET == data ]] && PACKAGES+=(pkg-config libturbojpeg0-dev libpng-dev python3-pil)
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"
    break
  fi
done

if [ ! -f "$BUILD/build.ninja" ]; then
  CC=clang-19 CXX=clang++-19 cmake -G Ninja -S "$ROOT" -B "$BUILD" \
    -DCMAKE_BUILD_TYPE=Release \
    -DMLIR_DIR="${MLIR_DIR:-/usr/lib/llvm-19/lib/cmake/mlir}" \
    -DNETC_BUILD_FUZZER=ON \
    -DNETC_BUILD_TESTS=OFF
fi
ninja ${NETC_FUZZ_NINJA:-} -C "$BUILD" "netc-$TARGET-fuzzer"
FUZZER="$BUILD/bin/netc-$TARGET-fuzzer"

mkdir -p "$WORK/corpus" "$WORK/artifacts" "$WORK/cwd" "$WORK/tmp"
FLAGS=()
n=0
case "$TARGET" in
frontend)
  # Every .net file of the repository (names made unique).
  while IFS= read -r -d '' f; do
    n=$((n + 1))
    cp "$f" "$WORK/corpus/seed-$n-$(basename "$f")"
  done < <(find "$ROOT/examples" "$ROOT/test" -name '*.net' -type f -print0 | sort -z)
  FLAGS+=(-dict="$ROOT/test/fuzz/net.dict" -max_len=4096)
  ;;
plan)
  # The plan.json of every .net file that compiles, up to 256 KiB (VGG-16's
  # is larger; its layers are all in the others).
  while IFS= read -r -d '' f; do
    n=$((n + 1))
    out="$WORK/corpus/seed-$n-$(basename "$f" .net).json"
    if ! (cd "$WORK/tmp" && "$NETC" "$f" -emit=plan -o "$out") >/dev/null 2>&1 ||
       [[ $(stat -c %s "$out") -gt 262144 ]]; then
      rm -f "$out"
    fi
  done < <(find "$ROOT/examples" "$ROOT/test" -name '*.net' -type f -print0 | sort -z)
  FLAGS+=(-max_len=262144)
  ;;
safetensors)
  # Small files in the reader's format: no tensors, metadata, a scalar, an
  # empty tensor, several tensors out of order, padding after the data.
  python3 - "$WORK/corpus" <<'PY'
import json, struct, sys
def st(tensors, meta=None, pad=b""):
    header, data = {}, b""
    for name, shape, values in tensors:
        raw = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": shape,
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if meta is not None:
        header["__metadata__"] = meta
    text = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(text)) + text + data + pad
seeds = {
    "empty": st([]),
    "meta": st([], {"format": "pt", "step": "12"}),
    "scalar": st([("s", [], [3.5])]),
    "zero": st([("z", [0, 3], [])]),
    "one": st([("conv1.weight", [2, 1, 2, 2], [0.5 * i for i in range(8)])]),
    "two": st([("fc.bias", [3], [1, 2, 3]), ("fc.weight", [3, 2], [0] * 6)],
              {"epoch": "1"}),
    "momentum": st([("momentum/w", [2], [0.25, -1]), ("w", [2], [1e-3, 7])]),
    "padded": st([("w", [1], [1.0])], None, b"    "),
}
for name, data in seeds.items():
    open("%s/seed-%s.safetensors" % (sys.argv[1], name), "wb").write(data)
PY
  n=$(ls "$WORK/corpus" | wc -l)
  FLAGS+=(-max_len=4096)
  ;;
passes)
  # Every MLIR stage of netc on the examples and the end-to-end models, and
  # the dialect and pass tests.
  while IFS= read -r -d '' f; do
    for stage in mlir-raw mlir mirrored phases autodiff planned; do
      n=$((n + 1))
      out="$WORK/corpus/seed-$n-$(basename "$f" .net).$stage.mlir"
      (cd "$WORK/tmp" && "$NETC" "$f" -emit=$stage -o "$out") >/dev/null 2>&1 || rm -f "$out"
    done
  done < <(find "$ROOT/examples" "$ROOT/test/e2e" -maxdepth 1 -name '*.net' -type f -print0 | sort -z)
  while IFS= read -r -d '' f; do
    n=$((n + 1))
    cp "$f" "$WORK/corpus/seed-$n-$(basename "$f")"
  done < <(find "$ROOT/test/Dialect" "$ROOT/test/Training" -maxdepth 1 -name '*.mlir' -type f -print0 | sort -z)
  # A dictionary of the names the seeds use (the seeds only: a corpus kept
  # from an earlier run into the same NETC_FUZZ_WORK holds binary inputs,
  # and grep without -a prints "binary file matches" instead of names).
  cat "$WORK/corpus"/seed-* |
    grep -aoE '(net|func)\.[a-z_]+|#?[a-z_]+ =|!net\.[a-z_]+|@[a-z_.]+' |
    sort -u | sed 's/.*/"&"/' > "$WORK/passes.dict"
  FLAGS+=(-dict="$WORK/passes.dict" -max_len=131072)
  ;;
data)
  # Images in every form the decoders take (greyscale, colour, subsampled,
  # progressive, palette, interlaced, 1-bit; a transparent and a 16-bit PNG,
  # which are refused; a long thin one), IDX images and labels, plain and
  # gzipped, and CIFAR-10 records.
  /usr/bin/python3 - "$WORK/corpus" <<'PY'
import gzip, io, struct, sys
from PIL import Image
out = sys.argv[1]
def save(name, img, fmt, **kw):
    b = io.BytesIO()
    img.save(b, fmt, **kw)
    open("%s/seed-%s" % (out, name), "wb").write(b.getvalue())
def ramp(mode, w, h):
    img = Image.new(mode, (w, h))
    img.putdata([((x * 37 + y * 11) % 256,) * len(mode) if len(mode) > 1
                 else (x * 37 + y * 11) % 256
                 for y in range(h) for x in range(w)])
    return img
save("grey.jpg", ramp("L", 9, 7), "JPEG", quality=80)
save("rgb420.jpg", ramp("RGB", 17, 9), "JPEG", quality=75)
save("rgb444.jpg", ramp("RGB", 8, 8), "JPEG", quality=90, subsampling=0)
save("progressive.jpg", ramp("RGB", 24, 16), "JPEG", progressive=True)
save("large.jpg", ramp("RGB", 96, 64), "JPEG", quality=30)
save("grey.png", ramp("L", 7, 5), "PNG")
save("rgb.png", ramp("RGB", 6, 11), "PNG")
save("palette.png", ramp("RGB", 8, 8).convert("P"), "PNG")
save("interlaced.png", ramp("RGB", 9, 9), "PNG", interlace=1)
save("bits1.png", ramp("L", 16, 4).convert("1"), "PNG")
save("alpha.png", ramp("RGBA", 4, 4), "PNG")
save("wide16.png", ramp("I", 4, 3).convert("I;16"), "PNG")
save("thin.png", ramp("L", 1, 200), "PNG")
def idx(dims, data):
    return bytes([0, 0, 8, len(dims)]) + b"".join(
        struct.pack(">I", d) for d in dims) + bytes(data)
images = idx([2, 3, 4], range(24))
labels = idx([5], [0, 9, 3, 1, 2])
open("%s/seed-images.idx" % out, "wb").write(images)
open("%s/seed-labels.idx" % out, "wb").write(labels)
open("%s/seed-images.idx.gz" % out, "wb").write(gzip.compress(images))
def record(label, k):
    return bytes([label]) + bytes((i * k) % 256 for i in range(3 * 32 * 32))
open("%s/seed-cifar1.bin" % out, "wb").write(record(7, 3))
open("%s/seed-cifar2.bin" % out, "wb").write(record(0, 1) + record(9, 5))
PY
  n=$(ls "$WORK/corpus" | wc -l)
  FLAGS+=(-max_len=8192)
  ;;
esac
echo "run.sh: $(ls "$WORK/corpus" | wc -l) seed files, work dir $WORK"

cd "$WORK/cwd"
set +e
"$FUZZER" "$WORK/corpus" \
  "${FLAGS[@]}" \
  -max_total_time="$SECONDS_TO_RUN" \
  -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$WORK/artifacts/" \
  -print_final_stats=1 \
  ${NETC_FUZZ_ARGS:-} 2>&1 | tee "$WORK/fuzz.log"
rc=${PIPESTATUS[0]}
set -e

echo
echo "=== netc $TARGET fuzz summary ($(date -u '+%Y-%m-%d %H:%M:%S UTC')) ==="
echo "exit status:  $rc"
echo "duration:     ${SECONDS_TO_RUN}s requested"
grep -E '^stat::' "$WORK/fuzz.log" || true
grep -E '^#[0-9]+.*DONE' "$WORK/fuzz.log" | tail -1 || true
echo "corpus files: $(ls "$WORK/corpus" | wc -l)"
arts=$(ls "$WORK/artifacts" | wc -l)
echo "artifacts:    $arts in $WORK/artifacts"
ls "$WORK/artifacts" || true
echo "log:          $WORK/fuzz.log"
exit "$rc"
