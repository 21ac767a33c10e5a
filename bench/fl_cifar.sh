#!/usr/bin/env bash
# Issue 5, item 3: every strategy on CIFAR-10 (100 devices, 10 a round, Dirichlet 0.5, mixed Jetson and
# phone profiles), the same seeds, Caesar's parts ablated, and Caesar's batch-size part applied to the
# baselines too. Writes runs/fl-cifar/{compare.json,summary.json,*.svg}. Long: about
# (strategies x seeds x rounds x ~10 s) on two cores, so run it in pieces with SEEDS=1, SEEDS=2, ...
# and re-summarise any target afterwards:
#   frugal fl compare --from runs/fl-cifar/compare.json --target-accuracy 0.6 --dataset cifar10 --out runs/fl-cifar
#
#   bench/fl_cifar.sh            # ROUNDS=150 SEEDS=1,2,3 TARGET=0.6
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-150}; SEEDS=${SEEDS:-1,2,3}; TARGET=${TARGET:-0.6}; OUT=${OUT:-runs/fl-cifar}
swift build -c release --product frugal >/dev/null
STRATS="fedavg;topk:0.1;topk:0.1+down;randk:0.1;qsgd:8;signsgd;stc:0.1;stc-up:0.1"
STRATS+=";caesar;caesar:download,upload;caesar:download;caesar:upload"
STRATS+=";fedavg+batch;topk:0.1+batch;stc:0.1+batch"
./.build/release/frugal fl compare --strategies "$STRATS" --dataset cifar10 --devices 100 --per-round 10 \
  --rounds "$ROUNDS" --partition dirichlet:0.5 --local-steps 20 --batch 32 --lr 0.05 --momentum 0.5 \
  --eval-every 5 --theta-d-max 0.9 --seeds "$SEEDS" --target-accuracy "$TARGET" --out "$OUT"
