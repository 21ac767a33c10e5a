#!/usr/bin/env bash
# Supernet step throughput, Frugal vs PyTorch (DARTS code, with and without computing `none`), on
# the same reduced supernet and batch, alternated N times (default 3); prints medians and writes
# runs/bench-nas.json. Extra arguments go to both sides (e.g. --channels 8 --cells 5 --input-size 32).
#
#   bench/nas.sh [N] [--input-size 32 ...]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-3}; shift || true
ARGS=("--channels" "8" "--cells" "5" "--input-size" "16" "--batch" "32" "$@")
OUT=runs/bench-nas; mkdir -p "$OUT"; rm -f "$OUT"/*.json
# FRUGAL_BIN: use this binary instead of building the release one; TORCH_THREADS: torch threads
# (default: torch's own, 2 here; under heavy machine load its OpenMP threads stall, so 1 is fairer).
F=${FRUGAL_BIN:-./.build/release/frugal}
[ -n "${FRUGAL_BIN:-}" ] || swift build -c release --product frugal >/dev/null
TT=(); [ -n "${TORCH_THREADS:-}" ] && TT=(--threads "$TORCH_THREADS")
uptime
for i in $(seq "$N"); do
  "$F" nas bench "${ARGS[@]}" --steps ${STEPS:-8} --warmup ${WARMUP:-2} --json "$OUT/frugal_$i.json" > /dev/null
  python3 bench/nas_torch.py "${ARGS[@]}" "${TT[@]}" --steps ${STEPS:-8} --warmup ${WARMUP:-2} --json "$OUT/torch_$i.json" > /dev/null
  python3 bench/nas_torch.py "${ARGS[@]}" "${TT[@]}" --steps ${STEPS:-8} --warmup ${WARMUP:-2} --skip-none --json "$OUT/torchskip_$i.json" > /dev/null
done
uptime
python3 - "$OUT" <<'PY'
import json, statistics, sys, glob
out = sys.argv[1]
def vals(side, key): return [json.load(open(f))[key] for f in sorted(glob.glob(f"{out}/{side}_*.json"))]
res = {}
for key in ("weight_images_per_second", "search_images_per_second"):
    f, t, s = (statistics.median(vals(x, key)) for x in ("frugal", "torch", "torchskip"))
    res[key] = {"frugal": vals("frugal", key), "pytorch": vals("torch", key), "pytorch_skip_none": vals("torchskip", key),
                "frugal_median": f, "pytorch_median": t, "pytorch_skip_none_median": s, "ratio_vs_pytorch": f / t, "ratio_vs_pytorch_skip_none": f / s}
    print(f"{key}: frugal {f:.1f}, pytorch {t:.1f} (x{f/t:.2f}), pytorch without none {s:.1f} (x{f/s:.2f})")
cfg = json.load(open(sorted(glob.glob(f"{out}/frugal_*.json"))[0]))
res["setting"] = {k: cfg[k] for k in ("channels", "cells", "input_size", "batch", "threads")}
json.dump(res, open("runs/bench-nas.json", "w"), indent=1)
PY
