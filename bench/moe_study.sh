#!/usr/bin/env bash
# Issue 4, items 3, 4 and 5: the MoEpic study on a trained MoE, in one script that prints the tables.
#
#   bench/moe_study.sh [MODEL_DIR] [OUT_DIR]
#
# 1. Records the routing of the fit prompts (bench/moe_prompts_fit.txt) with the model resident.
# 2. Item 3 (+5): every policy at budgets 25% and 50% on the disk tier and on emulated links whose bandwidth
#    makes an expert's compute 5%, 25%, 50%, 100% and 200% of its load time, on the score prompts
#    (bench/moe_prompts_score.txt), alternating policies prompt by prompt; MoEpic with the planner's per-layer
#    plan fitted on the fit prompts' routing (moepic@plan) and with θ = 0.4 (moepic); the simulator calibrated
#    in the same run replays the recorded routing for every row (sim ms). Its load bandwidth per tier is fitted
#    on an on-demand decode of the fit prompts (--calibration-prompts), not on the scored ones. Table, JSON and
#    two SVG plots.
# 3. Item 4: the plan (fitted on the fit prompts; moepic@plan refined by simulating the fit routing, moepic@analytic
#    without) against uniform budgets with θ = 0, 0.25, 0.5, 0.75 and 1
#    on the score prompts, on the disk tier and at compute/load 25% and 100%. The planner's prediction accuracy
#    per layer is the one measured on the fit prompts.
# Generation samples at temperature 0.7 with seed = prompt index (greedy decoding of a small model repeats itself),
# so every policy generates the same tokens as the resident run.
# Each engine uses one compute thread (FRUGAL_THREADS=1; the I/O threads take the other core). The load
# average is printed before and after: on a busy machine the figures are noisy; rerun when it is quiet.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-$HOME/moe-models/m8x8-h256}
OUT=${2:-runs/moe-study}
TOKENS=${MOE_TOKENS:-32}
mkdir -p "$OUT"
[ -n "${FRUGAL_BIN:-}" ] || [ -x ./.build/release/frugal ] || swift build -c release --product frugal >/dev/null
F=${FRUGAL_BIN:-./.build/release/frugal}
export FRUGAL_THREADS=${FRUGAL_THREADS:-1}
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$F" moe bench --model "$MODEL" --prompts bench/moe_prompts_fit.txt --max-tokens "$TOKENS" --no-disk --links "" \
  --policies full --record-trace "$OUT/fit.route.csv" --json "$OUT/fit.json" | grep -E "^(full|next-layer)"
# The planner's per-layer prediction accuracy, measured on the fit prompts.
ACC=$(python3 -c "import json,sys; print(','.join('%.3f' % a for a in json.load(open(sys.argv[1]))['predictionAccuracyPerLayer']))" "$OUT/fit.json")
"$F" moe bench --model "$MODEL" --prompts bench/moe_prompts_score.txt --max-tokens "$TOKENS" --budgets 25%,50% \
  --ratios 0.05,0.25,0.5,1,2 --policies full,on-demand,lru,lfu,prefetch,moepic,moepic@plan --plan-trace "$OUT/fit.route.csv" \
  --calibration-prompts bench/moe_prompts_fit.txt \
  --predictor-accuracy "$ACC" \
  --simulate --record-trace "$OUT/score.route.csv" --json "$OUT/study.json" --svg "$OUT/study" | sed -n '/^ *tier  *c\/l/,$p'
echo "load average after item 3: $(cut -d' ' -f1-3 /proc/loadavg)"
"$F" moe bench --model "$MODEL" --prompts bench/moe_prompts_score.txt --max-tokens "$TOKENS" --budgets 25%,50% \
  --ratios 0.25,1 --policies moepic@plan,moepic@analytic,moepic@0,moepic@0.25,moepic@0.5,moepic@0.75,moepic@1 \
  --plan-trace "$OUT/fit.route.csv" --predictor-accuracy "$ACC" --calibration-prompts bench/moe_prompts_fit.txt \
  --simulate --json "$OUT/plan.json" | sed -n '/^ *tier  *c\/l/,$p'
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
