#!/usr/bin/env bash
# Issue 4 item 6: decode tokens/s of `frugal moe generate --policy full` against PyTorch
# transformers on CPU, same checkpoint, batch 1, greedy, same prompt ids, both on $THREADS threads
# (default 1: on this shared, oversubscribed 2-core machine PyTorch's OpenMP barriers collapse at
# 2 threads, 5-10x slower than at 1; with THREADS=2 both sides get 2),
# alternated N times (default 5) in one run; prints medians and writes runs/moe-decode.json
# (with the load average before and after). The checkpoint is made by `frugal moe create` if absent.
#
#   bench/moe_decode.sh [N] [DTYPE f32|bf16|f16] [MODEL_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5}
DT=${2:-f32}
DIR=${3:-runs/moe-decode-model-$DT}
TOKENS=${MOE_TOKENS:-64}
THREADS=${THREADS:-1}
OUT=runs/moe-decode-$DT-t$THREADS; mkdir -p "$OUT"
[ -x ./.build/release/frugal ] || swift build -c release --product frugal >/dev/null
F=./.build/release/frugal
if [ ! -f "$DIR/config.json" ]; then
  # ~240 MB in f32: 8 layers x 8 experts (top-2), hidden 512, expert width 512, vocab 4096.
  "$F" moe create --layout mixtral --layers 8 --experts 8 --top-k 2 --hidden 512 --intermediate 512 --heads 8 \
    --kv-heads 2 --vocab 4096 --dtype "$DT" --seed 1 --out "$DIR"
fi
PROMPT="The quick brown fox jumps over the lazy dog"
IDS=$(python3 -c "import sys; print(','.join(str(b) for b in sys.argv[1].encode()))" "$PROMPT")
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for i in $(seq "$N"); do
  FRUGAL_THREADS=$THREADS "$F" moe generate --model "$DIR" --prompt "$PROMPT" --max-tokens "$TOKENS" --ignore-eos --json "$OUT/frugal_$i.json" > /dev/null
  OMP_NUM_THREADS=$THREADS python3 bench/moe_decode_torch.py --model "$DIR" --prompt-ids "$IDS" --max-tokens "$TOKENS" --threads "$THREADS" --json "$OUT/torch_$i.json" 2>/dev/null | tail -1
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
python3 - "$OUT" "$N" "$DIR" "$DT" "$LOAD_BEFORE" "$LOAD_AFTER" "$THREADS" <<'PY'
import json, statistics, sys, glob, os
out, n, d, dt, lb, la, th = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], int(sys.argv[7])
fr = [json.load(open(f"{out}/frugal_{i}.json")) for i in range(1, n + 1)]
pt = [json.load(open(f"{out}/torch_{i}.json")) for i in range(1, n + 1)]
fs = [r["stats"]["tokensPerSecond"] for r in fr]; ps = [r["tokens_per_second"] for r in pt]
same = all(r["tokens"] == p["tokens"] for r, p in zip(fr, pt))
size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.endswith(".safetensors"))
m_f, m_p = statistics.median(fs), statistics.median(ps)
print(f"decode, batch 1, {dt}, {th} thread(s), {size / 1e6:.0f} MB checkpoint: frugal {m_f:.1f} tokens/s, pytorch {m_p:.1f} tokens/s, "
      f"ratio {m_f / m_p:.2f}x (medians of {n}; same greedy tokens: {same}; loadavg {lb} -> {la})")
res = {"checkpoint": d, "dtype": dt, "threads": th, "tokens": len(fr[0]["tokens"]), "checkpoint_bytes": size, "runs": n, "frugal_tokens_per_second": fs,
       "pytorch_tokens_per_second": ps, "frugal_median": m_f, "pytorch_median": m_p, "ratio": m_f / m_p,
       "frugal_ttft_s": [r["stats"]["timeToFirstToken"] for r in fr], "pytorch_ttft_s": [r["time_to_first_token"] for r in pt],
       "same_tokens": same, "loadavg_before": lb, "loadavg_after": la, "cpus": os.cpu_count()}
json.dump(res, open(f"runs/moe-decode-{dt}-t{th}.json", "w"), indent=1)
PY
