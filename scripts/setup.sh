#!/usr/bin/env bash
# Installs what netc needs on Debian 12 (only what is missing) and builds it.
# Safe to run again: apt-get runs only when a package is absent, and the
# build is incremental.
#   scripts/setup.sh [build-dir [cmake options...]]   (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  cmake ninja-build g++ python3 pkg-config
  llvm-19-dev llvm-19-tools libmlir-19-dev mlir-19-tools
  libfmt-dev nlohmann-json3-dev libgtest-dev zlib1g-dev libzstd-dev libdnnl-dev
  libopenmpi-dev openmpi-bin
  libturbojpeg0-dev libpng-dev python3-pil python3-scipy
  libplplot-dev plplot-driver-cairo
  dataset-fashion-mnist
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

BUILD=${1:-build}
shift || true
# Further arguments are CMake options for a new build folder (the sanitized
# builds of scripts/test.sh); an existing folder keeps its configuration.
if [[ ! -f $BUILD/build.ninja ]]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DMLIR_DIR=/usr/lib/llvm-19/lib/cmake/mlir \
    -DLLVM_EXTERNAL_LIT=/usr/lib/llvm-19/build/utils/lit/lit.py "$@"
fi
cmake --build "$BUILD"
