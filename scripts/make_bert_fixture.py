#!/usr/bin/env python3
"""Fixtures for Tests/FrugalModelsTests (BERT encoder).

(a) tiny random BertModel (transformers): bert_tiny/{config.json,model.safetensors} and
    bert_tiny_expected.safetensors with input ids, token types, attention mask and
    last_hidden_state, plus the mean-pooled, L2-normalised embedding.
(b) when all-MiniLM-L6-v2 is present under $FRUGAL_DATA (default ~/.cache/frugal-data):
    minilm_expected.safetensors with the WordPiece ids, last_hidden_state and sentence
    embeddings of three short sentences (the real model is not committed).

Run: python3 scripts/make_bert_fixture.py
"""
import json, os, pathlib
import numpy as np
import torch
from safetensors.torch import save_file
from transformers import BertConfig, BertModel, AutoTokenizer

root = pathlib.Path(__file__).resolve().parent.parent
out = root / "Tests/FrugalModelsTests/Fixtures"
out.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)

def pool(h, mask):
    m = mask.unsqueeze(-1).float()
    e = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(e, p=2, dim=1)

# (a) tiny random model: 2 layers, hidden 32, 4 heads, intermediate 64, vocab 50.
cfg = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=64, max_position_embeddings=16, type_vocab_size=2,
                 layer_norm_eps=1e-12, hidden_act="gelu")
model = BertModel(cfg, add_pooling_layer=False).eval()
with torch.no_grad():
    for p in model.parameters():  # non-trivial LayerNorm weights and biases too
        p.add_(0.02 * torch.randn_like(p))
tiny = out / "bert_tiny"
tiny.mkdir(exist_ok=True)
model.save_pretrained(tiny, safe_serialization=True)
ids = torch.tensor([[2, 7, 11, 13, 3, 0, 0], [2, 17, 19, 23, 29, 31, 3]])
types = torch.tensor([[0, 0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1, 1]])
mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1]])
with torch.no_grad():
    h = model(input_ids=ids, token_type_ids=types, attention_mask=mask).last_hidden_state
save_file({"input_ids": ids.float().contiguous(), "token_type_ids": types.float().contiguous(),
           "attention_mask": mask.float().contiguous(), "last_hidden_state": h.contiguous(),
           "embedding": pool(h, mask).contiguous()}, str(out / "bert_tiny_expected.safetensors"))
for f in tiny.iterdir():
    if f.name not in ("config.json", "model.safetensors"): f.unlink()

# (b) real MiniLM, when present.
data = pathlib.Path(os.environ.get("FRUGAL_DATA") or os.path.expanduser("~/.cache/frugal-data"))
mini = data / "all-MiniLM-L6-v2"
if (mini / "model.safetensors").exists():
    sents = ["A man is eating food.", "A man is eating a piece of bread.", "The cat sleeps."]
    tok = AutoTokenizer.from_pretrained(str(mini))
    enc = tok(sents, padding=True, return_tensors="pt")
    m = BertModel.from_pretrained(str(mini), add_pooling_layer=False).eval()
    with torch.no_grad():
        h = m(**enc).last_hidden_state
    e = pool(h, enc["attention_mask"])
    print("MiniLM cosine(0,1) =", float(e[0] @ e[1]))
    save_file({"input_ids": enc["input_ids"].float().contiguous(),
               "attention_mask": enc["attention_mask"].float().contiguous(),
               "last_hidden_state": h.contiguous(), "embedding": e.contiguous()},
              str(out / "minilm_expected.safetensors"))
else:
    print("MiniLM not found under", mini, "- skipping (b)")
