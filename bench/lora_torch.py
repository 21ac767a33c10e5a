#!/usr/bin/env python3
"""PyTorch anchor for `frugal bench lora`: one LoRA training step of all-MiniLM-L6-v2.

Same step as the Swift bench: transformers BertModel (frozen, eval-mode dropout off), hand-written
LoRA (r=8, alpha=16, A ~ Kaiming-uniform, B = 0) on query/key/value/attention-output dense, mean
pooling over tokens, linear head (2 classes), cross-entropy, backward, AdamW (lr 1e-4) on adapters
and head. Batch 32, sequence 64, random token ids. Two threads unless --threads.
"""
import argparse, json, math, os, statistics, time
import torch
from transformers import BertModel, BertConfig

p = argparse.ArgumentParser()
p.add_argument("--model", default=os.path.join(os.environ.get("FRUGAL_DATA") or os.path.expanduser("~/.cache/frugal-data"), "all-MiniLM-L6-v2"))
p.add_argument("--batch", type=int, default=32)
p.add_argument("--seq", type=int, default=64)
p.add_argument("--rank", type=int, default=8)
p.add_argument("--alpha", type=float, default=16)
p.add_argument("--steps", type=int, default=10)
p.add_argument("--warmup", type=int, default=2)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--json")
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)

class LoRALinear(torch.nn.Module):
    def __init__(self, base, r, alpha):
        super().__init__()
        self.base = base
        self.A = torch.nn.Parameter(torch.empty(r, base.in_features))
        torch.nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.B = torch.nn.Parameter(torch.zeros(base.out_features, r))
        self.scaling = alpha / r
    def forward(self, x):
        return self.base(x) + (x @ self.A.t() @ self.B.t()) * self.scaling

if os.path.exists(os.path.join(a.model, "model.safetensors")):
    bert = BertModel.from_pretrained(a.model, add_pooling_layer=False)
    source = a.model
else:
    bert = BertModel(BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536), add_pooling_layer=False)
    source = "random weights (MiniLM shape)"
bert.eval()  # no hidden/attention dropout, as the Swift model
for q in bert.parameters(): q.requires_grad_(False)
for layer in bert.encoder.layer:
    s = layer.attention.self
    s.query = LoRALinear(s.query, a.rank, a.alpha); s.key = LoRALinear(s.key, a.rank, a.alpha); s.value = LoRALinear(s.value, a.rank, a.alpha)
    layer.attention.output.dense = LoRALinear(layer.attention.output.dense, a.rank, a.alpha)
head = torch.nn.Linear(bert.config.hidden_size, 2)
params = [q for q in bert.parameters() if q.requires_grad] + list(head.parameters())
opt = torch.optim.AdamW(params, lr=1e-4)
g = torch.Generator().manual_seed(1)
ids = torch.randint(1000, 21000, (a.batch, a.seq), generator=g)
ids[:, 0] = 101; ids[:, -1] = 102
mask = torch.ones_like(ids)
labels = torch.randint(0, 2, (a.batch,), generator=g)

def step():
    opt.zero_grad(set_to_none=True)
    h = bert(input_ids=ids, attention_mask=mask).last_hidden_state
    m = mask.unsqueeze(-1).float()
    logits = head((h * m).sum(1) / m.sum(1))
    loss = torch.nn.functional.cross_entropy(logits, labels)
    loss.backward()
    opt.step()

times, cpus = [], []
for i in range(a.warmup + a.steps):
    t0 = time.perf_counter(); c0 = time.process_time(); step(); dt = time.perf_counter() - t0; dc = time.process_time() - c0
    if i >= a.warmup: times.append(dt); cpus.append(dc)
med = statistics.median(times)
print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, attn {bert.config._attn_implementation}: median {med*1e3:.1f} ms/step, CPU {statistics.median(cpus)*1e3:.1f} ms/step ({source})")
if a.json:
    json.dump({"bench": "lora", "implementation": "torch", "torch": torch.__version__, "threads": torch.get_num_threads(),
               "attention": bert.config._attn_implementation, "model": source, "batch": a.batch, "seq": a.seq, "rank": a.rank,
               "alpha": a.alpha, "medianSeconds": med, "medianCPUSeconds": statistics.median(cpus), "secondsPerStep": times, "cpuSecondsPerStep": cpus}, open(a.json, "w"), indent=1)
