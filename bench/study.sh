#!/usr/bin/env bash
# The study (bench/study.py) with one command: installs what its figures
# need (Debian's python3-matplotlib), builds netc if needed, and runs every
# stage, continuing from docs/study/results.json. Arguments go to study.py.
#   bench/study.sh [--seeds N] [--stages main,recon,sweep,deep] ...
set -euo pipefail
cd "$(dirname "$0")/.."
if ! /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
    --no-install-recommends python3-matplotlib
fi
# A study runs for hours beside other work; OpenMP threads that spin while
# waiting (libgomp's default) slow it several times over when a build takes
# a core, while sleeping ones cost a few percent on an idle machine.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
BUILD=${BUILD:-build}
[[ -x $BUILD/bin/netrun && -x $BUILD/bin/netc ]] || scripts/setup.sh "$BUILD"
exec /usr/bin/python3 bench/study.py --build "$BUILD" "$@"
