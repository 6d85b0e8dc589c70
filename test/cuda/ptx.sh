#!/usr/bin/env bash
# The cuda kernels' code as the GPU gets it, checked without a GPU: compiles
# runtime/cuda/Kernels.cu to sm_90 PTX with the build's flags and checks
# that the kernels whose traffic is 16-byte packs move them 16 bytes at a
# time. nvcc once split the stores of ReluGradBiasPartials into 8 two-byte
# stores a bf16 pack (4 four-byte ones in f32), which no host walk of the
# same code can see; storePack now writes one st.global.v4. And the bias
# gradient's first stage on rows of packs loads them whole.
#   test/cuda/ptx.sh [NVCC]
# Ends with "ptx: N passed, M failed"; without nvcc it says so and passes.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
# The nvcc named, else the builds' (CMAKE_CUDA_COMPILER), else PATH's.
NVCC=${1:-}
for cache in build-asan/CMakeCache.txt build/CMakeCache.txt; do
  [[ -z $NVCC && -f $cache ]] &&
    NVCC=$(sed -n 's/^CMAKE_CUDA_COMPILER:[A-Z]*=//p' "$cache")
done
[[ -z $NVCC ]] && NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
if [[ ! -x $NVCC ]]; then
  echo "ptx: skipped: no nvcc"
  echo "ptx: 0 passed, 0 failed"
  exit 0
fi
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
if ! "$NVCC" -O3 -DNDEBUG -arch=sm_90 -fmad=false -std=c++17 -I. \
    -ptx runtime/cuda/Kernels.cu -o "$work/kernels.ptx" 2>"$work/nvcc.log"; then
  cat "$work/nvcc.log"
  echo "ptx: 0 passed, 1 failed"
  exit 1
fi
python3 - "$work/kernels.ptx" <<'PY'
import re, sys
ptx = open(sys.argv[1]).read()
entries = {}
for part in re.split(r"\n(?=(?:\.visible |\.weak )?\.entry)", ptx):
    m = re.match(r"(?:\.visible |\.weak )?\.entry\s+(\S+)\(", part)
    if m:
        entries[m[1]] = part
passed = failed = 0
def check(ok, what):
    global passed, failed
    print(("ok   " if ok else "FAIL ") + what)
    if ok:
        passed += 1
    else:
        failed += 1
# Global stores of a kernel's data (not its f64 partial sums): st.global
# of any width, and generic st (pointers read from device tables),
# predicated or not, with any qualifiers (cache operators and hints).
store = re.compile(r"^\s*(?:@!?%p\d+\s+)?st(?!\.(?:param|shared|local))"
                   r"(?:\.global)?(?:\.[a-z0-9:_]+)*?"
                   r"\.(v[248]\.)?([bfsu]\d+)\s", re.M)
def stores(body):
    return [(m[1] or "", m[2]) for m in store.finditer(body)
            if m[2] != "f64"]
fused = {n: b for n, b in entries.items() if "ReluGradBiasPartials" in n}
check(len(fused) == 4,
      f"the 4 ReluGradBiasPartials kernels (bf16, f32; with and without "
      f"the pool) are in the PTX ({len(fused)} found)")
for name, body in sorted(fused.items()):
    s = stores(body)
    wide = [x for x in s if x[0] == "v4." and x[1] in ("u32", "f32")]
    narrow = [x for x in s if x not in wide]
    which = ("bf16" if "4Bf16" in name else "f32") + \
            (" with the pool" if "Lb1" in name else "")
    check(wide and not narrow,
          f"ReluGradBiasPartials ({which}) writes dx 16 bytes at a time "
          f"({len(wide)} 16-byte stores, {len(narrow)} narrower)")
# The bias gradient's first stage on rows of packs reads them 16 bytes at
# a time (the element walk it replaces reads 2 bytes a thread in bf16).
load = re.compile(r"^\s*(?:@!?%p\d+\s+)?ld(?!\.(?:param|shared|local|const))"
                  r"(?:\.global)?(?:\.[a-z0-9:_]+)*?"
                  r"\.(v[248]\.)?([bfsu]\d+)\s", re.M)
packed = {n: b for n, b in entries.items() if "BiasGradPackPartials" in n}
check(len(packed) == 2,
      f"the 2 BiasGradPackPartials kernels (bf16, f32) are in the PTX "
      f"({len(packed)} found)")
for name, body in sorted(packed.items()):
    loads = [(m[1] or "", m[2]) for m in load.finditer(body)]
    wide = [x for x in loads if x[0] == "v4."]
    which = "bf16" if "4Bf16" in name else "f32"
    check(wide and len(wide) == len(loads),
          f"BiasGradPackPartials ({which}) reads dy 16 bytes at a time "
          f"({len(wide)} 16-byte loads, {len(loads) - len(wide)} narrower)")
print(f"ptx: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
