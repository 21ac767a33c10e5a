#!/usr/bin/env python3
"""Defaults of the transformers config classes, for HFConfigTests.matchesTransformersDefaults.

    python3 scripts/make_hfconfig_fixture.py     # needs: pip install transformers

For each model type Frugal parses, builds the config class from only the shape fields (what
Frugal requires) and records the values transformers fills in, in
Tests/FrugalNNTests/Fixtures/hf_config_defaults.json as {model_type: {"input": {...}, "expected": {...}}}.
"""
import json
import os

import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "Tests", "FrugalNNTests", "Fixtures", "hf_config_defaults.json")

SHAPE = {"vocab_size": 60000, "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 4,
         "num_attention_heads": 32}
CLASSES = {
    "bert": transformers.BertConfig, "llama": transformers.LlamaConfig, "mistral": transformers.MistralConfig,
    "qwen2": transformers.Qwen2Config, "qwen3": transformers.Qwen3Config, "mixtral": transformers.MixtralConfig,
    "qwen2_moe": transformers.Qwen2MoeConfig, "qwen3_moe": transformers.Qwen3MoeConfig, "olmoe": transformers.OlmoeConfig,
}
FIELDS = ["hidden_act", "max_position_embeddings", "rms_norm_eps", "layer_norm_eps", "type_vocab_size",
          "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "pad_token_id", "bos_token_id",
          "eos_token_id", "tie_word_embeddings", "attention_bias", "mlp_bias", "num_key_value_heads", "head_dim",
          "num_local_experts", "num_experts", "num_experts_per_tok", "router_aux_loss_coef", "router_jitter_noise",
          "moe_intermediate_size", "shared_expert_intermediate_size", "norm_topk_prob", "decoder_sparse_step",
          "mlp_only_layers", "qkv_bias", "position_embedding_type"]


def main():
    out = {}
    for model_type, cls in CLASSES.items():
        given = dict(SHAPE, model_type=model_type)
        c = cls(**{k: v for k, v in given.items() if k != "model_type"})
        expected = {}
        for f in FIELDS:
            if hasattr(c, f):
                v = getattr(c, f)
                if f == "head_dim" and v is None:
                    continue
                expected[f] = v
        rp = getattr(c, "rope_parameters", None) or {}
        if "rope_theta" in rp:
            expected["rope_theta"] = rp["rope_theta"]
        elif hasattr(c, "rope_theta"):
            expected["rope_theta"] = c.rope_theta
        out[model_type] = {"input": given, "expected": expected}
    with open(OUT, "w") as fh:
        json.dump(out, fh, indent=1, sort_keys=True)
        fh.write("\n")
    print("wrote", os.path.normpath(OUT), "transformers", transformers.__version__)


if __name__ == "__main__":
    main()
