"""Reads `netrun train --metrics` JSON lines and checks that every
reconstruction term of one phase falls: the mean of its last fifth of steps
is below FACTOR times the mean of its first fifth (the steps' batches differ,
so single steps are noisy). Prints one line per term."""
import json
import sys

path, phase, factor = sys.argv[1], sys.argv[2], float(sys.argv[3])
rows = [json.loads(line) for line in open(path)]
rows = [r for r in rows if r.get("event") == "step" and r.get("phase") == phase]
if len(rows) < 10:
    sys.exit(f"{phase}: only {len(rows)} steps logged (use --log-every 1)")
n = len(rows) // 5
ok = True
for term in sorted(t for t in rows[0]["terms"] if t.startswith("recon.")):
    first = sum(r["terms"][term] for r in rows[:n]) / n
    last = sum(r["terms"][term] for r in rows[-n:]) / n
    falls = last < factor * first
    ok &= falls
    print(f"{term} {'falls' if falls else 'does not fall'}: {first:.4g} -> {last:.4g}")
sys.exit(0 if ok else 1)
