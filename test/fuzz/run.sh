#!/usr/bin/env bash
# Builds and runs the libFuzzer harness of the .net frontend.
#
#   test/fuzz/run.sh [SECONDS]        (default 600)
#
# Configures build-fuzz/ with clang-19 (-DNETC_BUILD_FUZZER=ON) if needed,
# builds netc-frontend-fuzzer, seeds a fresh corpus from examples/*.net and
# test/**/*.net, and fuzzes for SECONDS with the dictionary test/fuzz/net.dict.
# Everything the run writes (corpus, crash-*/timeout-*/leak-* artifacts, log)
# goes under a directory in /tmp, never into the repository. The fuzzer runs
# from an empty directory there, so `import` in fuzz inputs finds nothing.
#
# Environment: NETC_FUZZ_WORK (default: a new mktemp -d under /tmp),
#              NETC_FUZZ_BUILD (default: <repo>/build-fuzz),
#              NETC_FUZZ_ARGS  (extra libFuzzer flags).
set -euo pipefail

SECONDS_TO_RUN="${1:-600}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${NETC_FUZZ_BUILD:-$ROOT/build-fuzz}"
WORK="${NETC_FUZZ_WORK:-$(mktemp -d /tmp/netc-fuzz.XXXXXX)}"

# The project's own build first (it installs LLVM/MLIR 19), then clang 19
# and its libFuzzer runtime if missing.
"$ROOT/scripts/setup.sh" "$ROOT/build" >/dev/null
for p in clang-19 libclang-rt-19-dev; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends clang-19 libclang-rt-19-dev
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
ninja -C "$BUILD" netc-frontend-fuzzer
FUZZER="$BUILD/bin/netc-frontend-fuzzer"

mkdir -p "$WORK/corpus" "$WORK/artifacts" "$WORK/cwd"
# Seed corpus: every .net file of the repository (names made unique).
n=0
while IFS= read -r -d '' f; do
  n=$((n + 1))
  cp "$f" "$WORK/corpus/seed-$n-$(basename "$f")"
done < <(find "$ROOT/examples" "$ROOT/test" -name '*.net' -type f -print0 | sort -z)
echo "run.sh: $n seed files, work dir $WORK"

cd "$WORK/cwd"
set +e
"$FUZZER" "$WORK/corpus" \
  -dict="$ROOT/test/fuzz/net.dict" \
  -max_total_time="$SECONDS_TO_RUN" \
  -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$WORK/artifacts/" \
  -print_final_stats=1 \
  ${NETC_FUZZ_ARGS:-} 2>&1 | tee "$WORK/fuzz.log"
rc=${PIPESTATUS[0]}
set -e

echo
echo "=== netc frontend fuzz summary ($(date -u '+%Y-%m-%d %H:%M:%S UTC')) ==="
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
