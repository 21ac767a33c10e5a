#!/usr/bin/env bash
# Alternates `frugal bench lora` (Swift, release) and bench/lora_torch.py (PyTorch) ROUNDS times on the
# same machine, writing runs/lora-<impl>-<i>.json, then prints the medians of the per-run medians.
# Usage: bench/lora.sh [ROUNDS] [extra frugal args...]   (build first: swift build -c release --product frugal)
# PYTHON (default python3) runs the PyTorch anchor (needs torch and transformers); FRUGAL_BIN
# (default .build/release/frugal) the Swift side.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}; shift || true
mkdir -p runs
uptime | tee runs/lora-uptime.txt
for i in $(seq 1 "$ROUNDS"); do
  "${FRUGAL_BIN:-.build/release/frugal}" bench lora --steps 5 --warmup 1 --json "runs/lora-frugal-$i.json" "$@"
  "${PYTHON:-python3}" bench/lora_torch.py --steps 3 --warmup 1 --json "runs/lora-torch-$i.json"
done
uptime | tee -a runs/lora-uptime.txt
python3 - "$ROUNDS" <<'PY'
import json, statistics, sys
n = int(sys.argv[1])
f = [json.load(open(f"runs/lora-frugal-{i}.json")) for i in range(1, n + 1)]
t = [json.load(open(f"runs/lora-torch-{i}.json")) for i in range(1, n + 1)]
full = statistics.median(r["results"][0]["medianSeconds"] for r in f)
torch = statistics.median(r["medianSeconds"] for r in t)
print(f"frugal full depth: {full*1e3:.1f} ms/step   torch: {torch*1e3:.1f} ms/step   torch/frugal = {torch/full:.2f}  (wall, medians of {n} alternated runs)")
if "medianCPUSeconds" in t[0]:
    fc = statistics.median(r["results"][0]["medianCPUSeconds"] for r in f); tc = statistics.median(r["medianCPUSeconds"] for r in t)
    print(f"CPU time: frugal {fc*1e3:.1f} ms/step   torch {tc*1e3:.1f} ms/step   torch/frugal = {tc/fc:.2f}")
for k in range(1, len(f[0]["results"])):
    s = statistics.median(r["results"][k]["medianSeconds"] for r in f)
    m = statistics.median(r["results"][k]["medianPeakBytes"] for r in f)
    m0 = statistics.median(r["results"][0]["medianPeakBytes"] for r in f)
    a = statistics.median(r["results"][k]["meanActiveLayers"] for r in f)
    print(f"frugal {f[0]['results'][k]['config']} (mean active layers {a:.2f}): {s*1e3:.1f} ms/step ({s/full:.2f} of full), peak {m/2**20:.1f} MiB ({m/m0:.2f} of full {m0/2**20:.1f} MiB)")
PY
