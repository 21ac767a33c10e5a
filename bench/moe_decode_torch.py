#!/usr/bin/env python3
"""PyTorch CPU anchor for `frugal moe generate` (policy full): loads the same checkpoint folder with
transformers (AutoModelForCausalLM, sdpa attention, eager experts loop (the fastest
experts implementation here; see --experts-implementation), weights in their stored dtype), prefills the
prompt, then decodes greedily one token at a time with the KV cache at batch 1 and reports the
decode rate the same way Frugal does: TPOT = time from the first generated token to the last /
(tokens - 1); tokens/s = 1 / TPOT.

Usage: python3 bench/moe_decode_torch.py --model DIR --prompt-ids 1,2,3 [--max-tokens 64] [--threads 2] [--json FILE]"""
import argparse, json, time
import torch
from transformers import AutoModelForCausalLM, DynamicCache

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--prompt-ids", required=True)
ap.add_argument("--max-tokens", type=int, default=64)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--experts-implementation", default="eager",
                help="transformers experts kernel: eager (fastest on this CPU), batched_mm or grouped_mm (transformers' default)")
ap.add_argument("--attn", default="sdpa", help="attention implementation (sdpa or eager)")
ap.add_argument("--json")
a = ap.parse_args()
torch.set_num_threads(a.threads)
model = AutoModelForCausalLM.from_pretrained(a.model, dtype="auto", attn_implementation=a.attn,
                                             experts_implementation=a.experts_implementation).eval()
ids = torch.tensor([[int(x) for x in a.prompt_ids.split(",")]])
out = []
with torch.inference_mode():
    t0 = time.perf_counter()
    cache = DynamicCache(config=model.config)
    logits = model(input_ids=ids, past_key_values=cache, use_cache=True).logits[0, -1]
    nxt = int(torch.argmax(logits))
    out.append(nxt)
    t_first = time.perf_counter()
    for _ in range(a.max_tokens - 1):
        logits = model(input_ids=torch.tensor([[nxt]]), past_key_values=cache, use_cache=True).logits[0, -1]
        nxt = int(torch.argmax(logits))
        out.append(nxt)
    t_end = time.perf_counter()
tpot = (t_end - t_first) / max(len(out) - 1, 1)
res = {"side": "pytorch", "torch": torch.__version__, "experts_implementation": a.experts_implementation, "attn": a.attn, "threads": a.threads, "dtype": str(model.dtype),
       "prompt_tokens": ids.shape[1], "generated_tokens": len(out), "time_to_first_token": t_first - t0,
       "time_per_output_token": tpot, "tokens_per_second": 1 / tpot, "tokens": out}
print(f"pytorch: TTFT {1000 * res['time_to_first_token']:.1f} ms, TPOT {1000 * tpot:.2f} ms, {1 / tpot:.1f} tokens/s")
if a.json:
    json.dump(res, open(a.json, "w"), indent=1)
