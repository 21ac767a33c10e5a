#!/usr/bin/env bash
# Reproduces the simulator tables of the MoEpic issue (items 4 and 5) from the shared Qwen3-30B-A3B trace.
# Usage: scripts/moe_sim_tables.sh [FRUGAL_BIN] [OUTDIR]   (default .build/release/frugal, /tmp/moe-sim)
set -euo pipefail
BIN=${1:-.build/release/frugal}
OUT=${2:-/tmp/moe-sim}
T=${FRUGAL_DATA:-$HOME/.cache/frugal-data}/moe-traces/qwen3-30b-a3b.route.csv
mkdir -p "$OUT"
# Item 5: every policy, Qwen3 and Mixtral profiles, PCIe 4.0/5.0 GPUs, half (and a quarter of) the expert memory.
# MoEpic's plan is fitted (curves, then refinement by simulation) on the first half of the decode tokens; every
# policy is scored on the second half.
for hw in rtx4090 a100 h100; do for p in qwen3 mixtral; do for b in 50 25; do
  echo "=== item 5: $hw $p $b%"
  "$BIN" moe simulate --trace "$T" --profile $p --hardware $hw --memory-budget $b% --policy all --fit-fraction 0.5 --json "$OUT/sim-$hw-$p-$b.json"
done; done; done
# Item 4: planner fitted on the first half of the decode tokens, scored on the second half.
for p in qwen3 mixtral; do for b in 50 25; do
  echo "=== item 4: rtx4090 $p $b%"
  "$BIN" moe simulate --trace "$T" --profile $p --hardware rtx4090 --memory-budget $b% --policy moepic --plan-study --json "$OUT/study-rtx4090-$p-$b.json"
done; done
# Regimes where compute is comparable to loading (a CPU reading experts at 2-10 GB/s, 20 GB/s memory).
for lb in 2 10; do for p in qwen3 mixtral; do for b in 50 25; do
  echo "=== cpu link $lb GB/s: $p $b%"
  "$BIN" moe simulate --trace "$T" --profile $p --hardware cpu --mem-bandwidth 20 --link-bandwidth $lb --memory-budget $b% --policy all --plan-study --json "$OUT/study-cpu$lb-$p-$b.json"
done; done; done
# Planner time, 48 layers x 128 experts.
"$BIN" moe plan --trace "$T" --profile qwen3 --memory-budget 25% | tail -2
