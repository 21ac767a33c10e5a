#!/usr/bin/env python3
"""Fixtures for Tests/FrugalModelsTests (Llama decoder).

(a) tiny random LlamaForCausalLM (transformers): llama_tiny/{config.json,model.safetensors} and
    llama_tiny_expected.safetensors with input ids and logits (always tested).
(b) when SmolLM2-135M-Instruct.Q4_1.gguf is present under $FRUGAL_DATA: transformers loads the
    same GGUF (gguf_file=..., dequantised to float32) and greedily continues three prompts for 32
    tokens (no stop at EOS); smollm2_reference.json holds prompts, prompt ids and generated ids.

Run: python3 scripts/make_llama_reference.py
"""
import json, os, pathlib
import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM, AutoTokenizer, AutoModelForCausalLM

root = pathlib.Path(__file__).resolve().parent.parent
out = root / "Tests/FrugalModelsTests/Fixtures"
out.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)

cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=10000.0,
                  tie_word_embeddings=False)
model = LlamaForCausalLM(cfg).eval()
with torch.no_grad():
    for p in model.parameters():
        p.add_(0.05 * torch.randn_like(p))
tiny = out / "llama_tiny"
tiny.mkdir(exist_ok=True)
model.save_pretrained(tiny, safe_serialization=True)
for f in tiny.iterdir():
    if f.name not in ("config.json", "model.safetensors"): f.unlink()
ids = torch.tensor([[1, 5, 9, 17, 33, 2, 40, 63], [7, 7, 3, 11, 60, 21, 4, 8]])
with torch.no_grad():
    logits = model(input_ids=ids).logits
save_file({"input_ids": ids.float().contiguous(), "logits": logits.contiguous()}, str(out / "llama_tiny_expected.safetensors"))

data = pathlib.Path(os.environ.get("FRUGAL_DATA") or os.path.expanduser("~/.cache/frugal-data"))
gg = data / "smollm2-135m"
name = "SmolLM2-135M-Instruct.Q4_1.gguf"
if (gg / name).exists():
    tok = AutoTokenizer.from_pretrained(str(gg), gguf_file=name)
    m = AutoModelForCausalLM.from_pretrained(str(gg), gguf_file=name, torch_dtype=torch.float32).eval()
    prompts = ["The capital of France is", "Once upon a time, there was a little robot who",
               "def fibonacci(n):"]
    cases = []
    for p in prompts:
        pids = tok(p, add_special_tokens=False)["input_ids"]
        x = torch.tensor([pids])
        gen = []
        with torch.no_grad():
            out_ = m(input_ids=x, use_cache=True)
            past = out_.past_key_values
            nxt = int(out_.logits[0, -1].argmax())
            for _ in range(32):
                gen.append(nxt)
                out_ = m(input_ids=torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
                past = out_.past_key_values
                nxt = int(out_.logits[0, -1].argmax())
        print(repr(p), "->", repr(tok.decode(gen)))
        cases.append({"prompt": p, "prompt_ids": pids, "generated_ids": gen, "text": tok.decode(gen)})
    json.dump({"model": name, "reference": "transformers %s, gguf_file, float32, greedy" % __import__("transformers").__version__,
               "cases": cases}, open(out / "smollm2_reference.json", "w"), indent=1)
else:
    print("GGUF not found under", gg, "- skipping (b)")
