#!/usr/bin/env bash
# End-to-end: compile a small SWWAE-all model, train it on a Fashion-MNIST
# subset with netrun, and check from its metrics that every phase's loss
# falls and the test error ends far below chance (90%).
#   test/e2e/train.sh BUILD_DIR
set -euo pipefail
BUILD=$(cd "${1:?build dir}" && pwd)
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$BUILD/bin/netc" tiny-fashion-mnist.net -o "$work/tiny.trainer"
"$BUILD/bin/netrun" train "$work/tiny.trainer" --log-every 5 --metrics "$work/metrics.jsonl"
"$BUILD/bin/netrun" eval "$work/tiny.trainer"

python3 - "$work/metrics.jsonl" <<'PY'
import json, sys
steps, evals = {}, []
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m["event"] == "step":
        steps.setdefault(m["phase"], []).append(m)
    elif m["event"] == "eval":
        evals.append(m)
failed = 0
def check(ok, what):
    global failed
    print(("ok   " if ok else "FAIL ") + what)
    failed += not ok
for phase, ms in steps.items():
    # The objective of the phase's trained terms: classification when the
    # classifier trains, the reconstructions when only the decoder does.
    key = (lambda m: m["loss"]) if phase != "decoders" else \
          (lambda m: sum(v for k, v in m["terms"].items() if k.startswith("recon")))
    k = max(5, len(ms) // 5)
    first = sum(map(key, ms[:k])) / k
    last = sum(map(key, ms[-k:])) / k
    check(last < 0.8 * first, f"{phase}: mean loss of the first {k} steps {first:.4f} -> last {k} steps {last:.4f}")
final = evals[-1]["test_error"]
check(final < 35.0, f"final test error {final:.2f}% (chance 90%)")
check(evals[0]["test_error"] < 50.0, f"test error after pretraining {evals[0]['test_error']:.2f}%")
print(f"e2e: {len(steps) + 2 - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
