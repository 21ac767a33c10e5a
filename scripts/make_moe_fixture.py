#!/usr/bin/env python3
"""Tiny random MoE checkpoints + transformers reference outputs for the FrugalModels MoE tests.

Writes Tests/FrugalModelsTests/Fixtures/moe/<name>/ with config.json, safetensors (sharded for
mixtral) and reference.json: {"prompt": [...], "logits": [last-position logits], "greedy": [8 greedy
tokens after the prompt]}. Weights are drawn N(0, 0.15) (norm weights 1 + N(0, 0.1)) so routing and
logits are far from uniform; f16/bf16 checkpoints are saved from an f32 model whose weights were
first rounded to that dtype, and the reference is computed in f32 from those rounded weights.

    python3 scripts/make_moe_fixture.py [out_dir]
"""
import json, os, shutil, sys
import torch
from transformers import (MixtralConfig, MixtralForCausalLM, Qwen2MoeConfig, Qwen2MoeForCausalLM,
                          Qwen3MoeConfig, Qwen3MoeForCausalLM, OlmoeConfig, OlmoeForCausalLM)

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "Tests", "FrugalModelsTests", "Fixtures", "moe")
PROMPT = [3, 17, 5, 40, 9, 22, 11, 30, 2]
COMMON = dict(vocab_size=48, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=32, num_experts_per_tok=2, bos_token_id=None, eos_token_id=None, pad_token_id=None)

CASES = [
    # name, config class, model class, extra config, stored dtype, shard size
    ("mixtral", MixtralConfig, MixtralForCausalLM, dict(intermediate_size=16, num_local_experts=4, rope_theta=10000.0), torch.float32, "30KB"),
    ("qwen2_moe", Qwen2MoeConfig, Qwen2MoeForCausalLM,
     dict(intermediate_size=24, moe_intermediate_size=16, shared_expert_intermediate_size=20, num_experts=4,
          norm_topk_prob=False, mlp_only_layers=[1]), torch.bfloat16, None),
    ("qwen3_moe", Qwen3MoeConfig, Qwen3MoeForCausalLM,
     dict(intermediate_size=24, moe_intermediate_size=16, num_experts=4, norm_topk_prob=True, head_dim=8,
          tie_word_embeddings=True), torch.float16, None),
    ("olmoe", OlmoeConfig, OlmoeForCausalLM, dict(intermediate_size=16, num_experts=4, clip_qkv=2.0), torch.bfloat16, None),
]


def main():
    torch.manual_seed(1234)
    for name, C, M, extra, dtype, shard in CASES:
        cfg = C(**COMMON, **extra)
        cfg._attn_implementation = "eager"
        model = M(cfg).eval()
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if "norm" in pname:
                    p.copy_(1 + 0.1 * torch.randn_like(p))
                else:
                    p.copy_(0.15 * torch.randn_like(p))
                p.copy_(p.to(dtype).to(torch.float32))
            ids = torch.tensor([PROMPT])
            logits = model(ids).logits[0, -1].tolist()
            greedy = model.generate(ids, max_new_tokens=8, do_sample=False, attention_mask=torch.ones_like(ids),
                                    pad_token_id=0)[0, len(PROMPT):].tolist()
        d = os.path.join(OUT, name)
        shutil.rmtree(d, ignore_errors=True)
        kwargs = {"max_shard_size": shard} if shard else {}
        model.to(dtype).save_pretrained(d, **kwargs)
        for extra_file in ("generation_config.json",):
            if os.path.exists(os.path.join(d, extra_file)):
                os.remove(os.path.join(d, extra_file))
        with open(os.path.join(d, "reference.json"), "w") as f:
            json.dump({"prompt": PROMPT, "logits": logits, "greedy": greedy}, f)
        size = sum(os.path.getsize(os.path.join(d, x)) for x in os.listdir(d))
        print(f"{name}: {sorted(os.listdir(d))} {size} bytes, greedy {greedy}")


if __name__ == "__main__":
    main()
