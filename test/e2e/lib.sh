# The e2e scripts' common start, sourced after `set -uo pipefail`: BUILD (the
# build directory, the script's first argument, absolute), the working
# directory set to test/e2e, a temporary $work removed at exit, and
# check DESCRIPTION COMMAND... counting into $passed and $failed.
BUILD=$(cd "${1:?build dir}" && pwd)
cd "$(dirname "${BASH_SOURCE[1]}")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0; failed=0
check() { # description, then a command that must succeed
  local what=$1; shift
  if "$@"; then echo "ok   $what"; passed=$((passed + 1))
  else echo "FAIL $what"; failed=$((failed + 1)); fi
}
