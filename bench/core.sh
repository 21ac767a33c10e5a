#!/usr/bin/env bash
# Core benchmarks with their anchors in the same run, alternated N times (default 3) so that
# machine noise hits both sides alike; prints per-shape medians and ratios and writes
# runs/bench-core.json. Needs numpy (GEMM anchor) and torch (LeNet anchor): pip install numpy torch.
#
#   bench/core.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-3}
OUT=runs/bench-core; mkdir -p "$OUT"
swift build -c release --product frugal >/dev/null
F=./.build/release/frugal
for i in $(seq "$N"); do
  "$F" bench gemm --backends swift --min-time 0.5 --json "$OUT/gemm_swift_$i.json" > /dev/null
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 bench/gemm_numpy.py --min-time 0.5 --out "$OUT/gemm_numpy_$i.json" > /dev/null
  "$F" bench train --steps 20 --json "$OUT/train_swift_$i.json" > /dev/null
  python3 bench/lenet_torch.py --steps 20 --json "$OUT/train_torch_$i.json" > /dev/null
done
python3 - "$OUT" "$N" <<'PY'
import json, statistics, sys, glob, platform, os
out, n = sys.argv[1], int(sys.argv[2])
def med(xs): return statistics.median(xs)
shapes = {}
for side in ("swift", "numpy"):
    for f in sorted(glob.glob(f"{out}/gemm_{side}_*.json")):
        for r in json.load(open(f))["results"]:
            shapes.setdefault((r["m"], r["k"], r["n"]), {}).setdefault(side, []).append(r["gflops"])
rows = []
print(f"{'m x k x n':>16} {'swift GFLOP/s':>14} {'numpy GFLOP/s':>14} {'ratio':>7}")
for (m, k, nn), d in sorted(shapes.items(), key=lambda kv: kv[0][0] * kv[0][1] * kv[0][2]):
    s, p = med(d.get("swift", [0])), med(d.get("numpy", [0]))
    rows.append({"m": m, "k": k, "n": nn, "swift_gflops_median": s, "numpy_gflops_median": p, "ratio": s / p if p else None, "runs": n})
    print(f"{f'{m}x{k}x{nn}':>16} {s:14.1f} {p:14.1f} {100 * s / p if p else 0:6.0f}%")
ts = [json.load(open(f))["images_per_second"] for f in sorted(glob.glob(f"{out}/train_swift_*.json"))]
tt = [json.load(open(f))["images_per_second"] for f in sorted(glob.glob(f"{out}/train_torch_*.json"))]
print(f"\nLeNet training, batch 64: frugal {med(ts):.0f} images/s, pytorch {med(tt):.0f} images/s, ratio {med(ts)/med(tt):.2f}x (medians of {n})")
json.dump({"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "gemm": rows,
           "lenet_train": {"frugal_images_per_second": ts, "pytorch_images_per_second": tt,
                           "frugal_median": med(ts), "pytorch_median": med(tt), "ratio": med(ts) / med(tt)}},
          open("runs/bench-core.json", "w"), indent=1)
print("wrote runs/bench-core.json")
PY
