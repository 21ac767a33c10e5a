#!/usr/bin/env bash
# Issue 5, item 3: strategies on CIFAR-10 (100 devices, 10 a round, Dirichlet 0.5, mixed Jetson and phone
# profiles), the same seeds for every strategy, Caesar's parts ablated, Caesar's batch-size part applied to
# baselines too. Each (strategy, seed) is one `frugal fl run` with its own checkpoint and JSON under OUT, so the
# study runs in pieces and resumes where it stopped (a finished run is skipped; a longer ROUNDS extends runs).
# Then one table, summary JSON and SVG plots over everything in OUT:
#   frugal fl compare --from OUT --target-accuracy 0.6 --dataset cifar10 --out OUT
#
#   bench/fl_cifar.sh                              # the main strategies, seeds 1,2
#   SPECS="caesar:download,upload;fedavg+batch" SEEDS=1 bench/fl_cifar.sh   # ablations, one seed
# Cost: about 20 s of two cores per round (10 devices x 20 steps x 32 images of a 0.4M-parameter CNN).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-100}; SEEDS=${SEEDS:-1,2}; TARGET=${TARGET:-0.6}; OUT=${OUT:-runs/fl-cifar}
SPECS=${SPECS:-"fedavg;topk:0.1;randk:0.1;qsgd:8;signsgd;stc:0.1;caesar"}
BIN=${FRUGAL_BIN:-}
if [ -z "$BIN" ]; then swift build -c release --product frugal >/dev/null; BIN=./.build/release/frugal; fi
COMMON=(--dataset cifar10 --devices 100 --per-round 10 --partition dirichlet:0.5 --local-steps 20 --batch 32
        --lr 0.05 --momentum 0.5 --eval-every 5 --theta-d-max 0.9 --target-accuracy "$TARGET" --rounds "$ROUNDS"
        ${PARALLEL:+--parallel-devices "$PARALLEL"})
mkdir -p "$OUT"
IFS=',' read -ra seeds <<< "$SEEDS"
IFS=';' read -ra specs <<< "$SPECS"
for seed in "${seeds[@]}"; do
  for spec in "${specs[@]}"; do
    base="$OUT/${spec}__s${seed}"
    if [ -f "$base.json" ] && python3 - "$base.json" "$ROUNDS" <<'PY'
import json, sys
sys.exit(0 if len(json.load(open(sys.argv[1]))["rows"]) >= int(sys.argv[2]) else 1)
PY
    then echo "done: $spec seed $seed"; continue; fi
    resume=(); [ -f "$base.ckpt" ] && resume=(--resume "$base.ckpt")
    echo "run: $spec seed $seed $(date -u +%H:%M)"
    "$BIN" fl run --strategy "$spec" --seed "$seed" "${COMMON[@]}" --checkpoint "$base.ckpt" --checkpoint-every 5 \
      "${resume[@]}" --json "$base.json" >> "$base.log" 2>&1
  done
done
"$BIN" fl compare --from "$OUT" --dataset cifar10 --target-accuracy "$TARGET" --out "$OUT"
