#!/usr/bin/env python3
"""Reference forward/backward of a pre-norm transformer block (RMSNorm, rotary causal attention,
SwiGLU; d=256, 4 heads, T=128) in PyTorch, written as a small JSON fixture that
Tests/FrugalNNTests/TransformerBlockTests.swift checks to 1e-4.

Weights and inputs come from a formula both sides compute (value i of tensor s is
sin(0.37*i + 1.3*s) * scale, in float64 then rounded to float32), so the fixture only holds
outputs and gradient slices. Usage: python3 scripts/make_block_fixture.py [OUT]"""
import json, math, sys
import numpy as np
import torch

D, H, T, HID, EPS, BASE = 256, 4, 128, 512, 1e-6, 10000.0
HD = D // H

def formula(shape, s, scale):
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.float64)
    return torch.tensor((np.sin(0.37 * i + 1.3 * s) * scale).astype(np.float32).reshape(shape), requires_grad=True)

names = ["input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
         "self_attn.o_proj.weight", "post_attention_layernorm.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"]
shapes = [[D], [D, D], [D, D], [D, D], [D, D], [D], [HID, D], [HID, D], [D, HID]]
params = {}
for s, (n, sh) in enumerate(zip(names, shapes)):
    scale = 1.0 if len(sh) == 1 else 1.0 / math.sqrt(sh[1])
    params[n] = formula(sh, s + 1, scale)
    if len(sh) == 1:
        params[n] = (params[n].detach() * 0.5 + 1.0).requires_grad_(True)
x = formula([1, T, D], 20, 1.0)
r = formula([1, T, D], 21, 1.0).detach()

def rms(v, w): return v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + EPS) * w
def rope(q):
    inv = 1.0 / (BASE ** (torch.arange(0, HD, 2, dtype=torch.float32) / HD))
    ang = torch.arange(T, dtype=torch.float32)[:, None] * inv[None, :]
    emb = torch.cat([ang, ang], -1)
    q1, q2 = q[..., :HD // 2], q[..., HD // 2:]
    return q * emb.cos() + torch.cat([-q2, q1], -1) * emb.sin()

p = params
h1 = rms(x, p["input_layernorm.weight"])
q = (h1 @ p["self_attn.q_proj.weight"].T).view(1, T, H, HD).transpose(1, 2)
k = (h1 @ p["self_attn.k_proj.weight"].T).view(1, T, H, HD).transpose(1, 2)
v = (h1 @ p["self_attn.v_proj.weight"].T).view(1, T, H, HD).transpose(1, 2)
q, k = rope(q), rope(k)
att = (q @ k.transpose(-1, -2)) / math.sqrt(HD)
att = att.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf")).softmax(-1)
o = (att @ v).transpose(1, 2).reshape(1, T, D) @ p["self_attn.o_proj.weight"].T
h = x + o
h2 = rms(h, p["post_attention_layernorm.weight"])
y = h + (torch.nn.functional.silu(h2 @ p["mlp.gate_proj.weight"].T) * (h2 @ p["mlp.up_proj.weight"].T)) @ p["mlp.down_proj.weight"].T
loss = (y * r).sum()
loss.backward()

rows = [0, 1, 64, 127]
out = {"config": {"d": D, "heads": H, "seq": T, "hidden": HID, "eps": EPS, "rope_base": BASE},
       "names": names, "rows": rows, "loss": loss.item(),
       "output_rows": y[0, rows].detach().numpy().astype(float).round(7).tolist(),
       "input_grad_rows": x.grad[0, rows].numpy().astype(float).round(7).tolist(),
       "grads": {n: {"first": p[n].grad.flatten()[:128].numpy().astype(float).round(8).tolist(),
                     "sum": float(p[n].grad.double().sum()), "norm": float(p[n].grad.double().norm())} for n in names}}
path = sys.argv[1] if len(sys.argv) > 1 else "Tests/FrugalNNTests/Fixtures/transformer_block.json"
with open(path, "w") as f:
    json.dump(out, f)
print("wrote", path, "loss", loss.item())
