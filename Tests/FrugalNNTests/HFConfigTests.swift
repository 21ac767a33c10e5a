import Foundation
import Testing
@testable import FrugalNN

/// Hugging Face config.json parsing, defaults, errors and writing back.
@Suite struct HFConfigTests {
    /// sentence-transformers/all-MiniLM-L6-v2 config.json, verbatim.
    static let miniLM = #"""
    {
      "_name_or_path": "nreimers/MiniLM-L6-H384-uncased",
      "architectures": [
        "BertModel"
      ],
      "attention_probs_dropout_prob": 0.1,
      "gradient_checkpointing": false,
      "hidden_act": "gelu",
      "hidden_dropout_prob": 0.1,
      "hidden_size": 384,
      "initializer_range": 0.02,
      "intermediate_size": 1536,
      "layer_norm_eps": 1e-12,
      "max_position_embeddings": 512,
      "model_type": "bert",
      "num_attention_heads": 12,
      "num_hidden_layers": 6,
      "pad_token_id": 0,
      "position_embedding_type": "absolute",
      "transformers_version": "4.8.2",
      "type_vocab_size": 2,
      "use_cache": true,
      "vocab_size": 30522
    }
    """#

    /// mistralai/Mixtral-8x7B-v0.1 config.json.
    static let mixtral = #"""
    {
      "architectures": ["MixtralForCausalLM"],
      "attention_dropout": 0.0,
      "bos_token_id": 1,
      "eos_token_id": 2,
      "hidden_act": "silu",
      "hidden_size": 4096,
      "initializer_range": 0.02,
      "intermediate_size": 14336,
      "max_position_embeddings": 32768,
      "model_type": "mixtral",
      "num_attention_heads": 32,
      "num_experts_per_tok": 2,
      "num_hidden_layers": 32,
      "num_key_value_heads": 8,
      "num_local_experts": 8,
      "output_router_logits": false,
      "rms_norm_eps": 1e-05,
      "rope_theta": 1000000.0,
      "router_aux_loss_coef": 0.02,
      "sliding_window": null,
      "tie_word_embeddings": false,
      "torch_dtype": "bfloat16",
      "transformers_version": "4.36.0.dev0",
      "use_cache": true,
      "vocab_size": 32000
    }
    """#

    /// Qwen/Qwen1.5-MoE-A2.7B config.json (qwen2_moe).
    static let qwen2MoE = #"""
    {
      "architectures": ["Qwen2MoeForCausalLM"],
      "attention_dropout": 0.0,
      "bos_token_id": 151643,
      "eos_token_id": 151643,
      "hidden_act": "silu",
      "hidden_size": 2048,
      "initializer_range": 0.02,
      "intermediate_size": 5632,
      "max_position_embeddings": 8192,
      "max_window_layers": 21,
      "model_type": "qwen2_moe",
      "num_attention_heads": 16,
      "num_hidden_layers": 24,
      "num_key_value_heads": 16,
      "rms_norm_eps": 1e-06,
      "rope_theta": 1000000.0,
      "sliding_window": 32768,
      "tie_word_embeddings": false,
      "torch_dtype": "bfloat16",
      "transformers_version": "4.39.0.dev0",
      "use_cache": true,
      "use_sliding_window": false,
      "vocab_size": 151936,
      "decoder_sparse_step": 1,
      "moe_intermediate_size": 1408,
      "shared_expert_intermediate_size": 5632,
      "num_experts_per_tok": 4,
      "num_experts": 60,
      "norm_topk_prob": false,
      "output_router_logits": false,
      "router_aux_loss_coef": 0.001
    }
    """#

    /// Qwen/Qwen3-30B-A3B config.json (qwen3_moe).
    static let qwen3MoE = #"""
    {
      "architectures": ["Qwen3MoeForCausalLM"],
      "attention_bias": false,
      "attention_dropout": 0.0,
      "bos_token_id": 151643,
      "decoder_sparse_step": 1,
      "eos_token_id": 151645,
      "head_dim": 128,
      "hidden_act": "silu",
      "hidden_size": 2048,
      "initializer_range": 0.02,
      "intermediate_size": 6144,
      "max_position_embeddings": 40960,
      "max_window_layers": 48,
      "mlp_only_layers": [],
      "model_type": "qwen3_moe",
      "moe_intermediate_size": 768,
      "norm_topk_prob": true,
      "num_attention_heads": 32,
      "num_experts": 128,
      "num_experts_per_tok": 8,
      "num_hidden_layers": 48,
      "num_key_value_heads": 4,
      "output_router_logits": false,
      "rms_norm_eps": 1e-06,
      "rope_scaling": null,
      "rope_theta": 1000000.0,
      "router_aux_loss_coef": 0.001,
      "sliding_window": null,
      "tie_word_embeddings": false,
      "torch_dtype": "bfloat16",
      "transformers_version": "4.51.0",
      "use_cache": true,
      "use_sliding_window": false,
      "vocab_size": 151936
    }
    """#

    /// allenai/OLMoE-1B-7B-0924 config.json (olmoe).
    static let olmoe = #"""
    {
      "architectures": ["OlmoeForCausalLM"],
      "attention_bias": false,
      "attention_dropout": 0.0,
      "clip_qkv": null,
      "eos_token_id": 50279,
      "hidden_act": "silu",
      "hidden_size": 2048,
      "initializer_range": 0.02,
      "intermediate_size": 1024,
      "max_position_embeddings": 4096,
      "model_type": "olmoe",
      "norm_topk_prob": false,
      "num_attention_heads": 16,
      "num_experts": 64,
      "num_experts_per_tok": 8,
      "num_hidden_layers": 16,
      "num_key_value_heads": 16,
      "output_router_logits": false,
      "pad_token_id": 1,
      "rms_norm_eps": 1e-05,
      "rope_scaling": null,
      "rope_theta": 10000.0,
      "router_aux_loss_coef": 0.01,
      "tie_word_embeddings": false,
      "torch_dtype": "bfloat16",
      "vocab_size": 50304
    }
    """#

    /// A Llama 3.2 style config with llama3 RoPE scaling and a list of EOS ids.
    static let llama32 = #"""
    {
      "architectures": ["LlamaForCausalLM"],
      "bos_token_id": 128000,
      "eos_token_id": [128001, 128008, 128009],
      "head_dim": 64,
      "hidden_size": 2048,
      "intermediate_size": 8192,
      "max_position_embeddings": 131072,
      "model_type": "llama",
      "num_attention_heads": 32,
      "num_hidden_layers": 16,
      "num_key_value_heads": 8,
      "rms_norm_eps": 1e-05,
      "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                       "original_max_position_embeddings": 8192, "rope_type": "llama3"},
      "rope_theta": 500000.0,
      "tie_word_embeddings": true,
      "vocab_size": 128256
    }
    """#

    static func parse(_ s: String) throws -> HFModelConfig { try HFModelConfig.decode(Data(s.utf8)) }

    static func errorMessage(_ s: String) -> String {
        do { _ = try parse(s); return "" } catch { return "\(error)" }
    }

    /// Encoding then decoding gives the same config.
    static func roundTrips(_ c: HFModelConfig) throws -> Bool {
        try HFModelConfig.decode(c.encoded()) == c
    }

    @Test func bertMiniLM() throws {
        guard case let .bert(c) = try Self.parse(Self.miniLM) else { Issue.record("not bert"); return }
        #expect(c.vocabSize == 30522 && c.hiddenSize == 384 && c.numHiddenLayers == 6 && c.numAttentionHeads == 12)
        #expect(c.intermediateSize == 1536 && c.hiddenAct == "gelu" && c.maxPositionEmbeddings == 512)
        #expect(c.typeVocabSize == 2 && c.layerNormEps == 1e-12 && c.padTokenID == 0 && c.headDim == 32)
        #expect(c.architectures == ["BertModel"])
        #expect(try Self.roundTrips(.bert(c)))
        let json = String(decoding: try HFModelConfig.bert(c).encoded(), as: UTF8.self)
        #expect(json.contains(#""model_type" : "bert""#) && json.contains(#""layer_norm_eps" : 1e-12"#))
        // Defaults where HF has them.
        let minimal = #"{"model_type":"bert","vocab_size":10,"hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":16}"#
        guard case let .bert(m) = try Self.parse(minimal) else { Issue.record("not bert"); return }
        #expect(m.hiddenAct == "gelu" && m.maxPositionEmbeddings == 512 && m.typeVocabSize == 2 && m.layerNormEps == 1e-12)
    }

    @Test func llamaConfigs() throws {
        guard case let .llama(c) = try Self.parse(Self.llama32) else { Issue.record("not llama"); return }
        #expect(c.modelType == "llama" && c.numKeyValueHeads == 8 && c.headDim == 64 && c.ropeTheta == 500000)
        #expect(c.ropeScaling == RopeScaling(ropeType: "llama3", factor: 32, lowFreqFactor: 1, highFreqFactor: 4,
                                             originalMaxPositionEmbeddings: 8192))
        #expect(c.eosTokenIDs == [128001, 128008, 128009] && c.bosTokenID == 128000 && c.tieWordEmbeddings)
        #expect(c.hiddenAct == "silu")
        #expect(try Self.roundTrips(.llama(c)))
        // Defaults: kv heads = heads, head_dim = hidden / heads, rope_theta 10000, rms_norm_eps 1e-6.
        let minimal = #"{"model_type":"llama","vocab_size":100,"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":null}"#
        guard case let .llama(m) = try Self.parse(minimal) else { Issue.record("not llama"); return }
        #expect(m.numKeyValueHeads == 4 && m.headDim == 16 && m.ropeTheta == 10000 && m.rmsNormEps == 1e-6)
        #expect(m.maxPositionEmbeddings == 2048 && !m.tieWordEmbeddings && m.ropeScaling == nil && m.eosTokenIDs == [2])
        // transformers 5 puts rope_theta into rope_parameters.
        let v5 = #"{"model_type":"qwen3","vocab_size":100,"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"rope_parameters":{"rope_theta":1000000.0,"rope_type":"default"}}"#
        guard case let .llama(q) = try Self.parse(v5) else { Issue.record("not llama"); return }
        #expect(q.modelType == "qwen3" && q.ropeTheta == 1e6 && q.ropeScaling == nil)
        // No model_type: dispatch on architectures.
        let arch = #"{"architectures":["Qwen2ForCausalLM"],"vocab_size":100,"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":4}"#
        guard case let .llama(a) = try Self.parse(arch) else { Issue.record("not llama"); return }
        #expect(a.modelType == "qwen2" && a.attentionBias)
    }

    @Test func mixtral() throws {
        guard case let .mixtral(c) = try Self.parse(Self.mixtral) else { Issue.record("not mixtral"); return }
        #expect(c.numLocalExperts == 8 && c.numExpertsPerTok == 2 && c.routerAuxLossCoef == 0.02)
        #expect(c.hiddenSize == 4096 && c.intermediateSize == 14336 && c.numKeyValueHeads == 8 && c.headDim == 128)
        #expect(c.ropeTheta == 1e6 && c.rmsNormEps == 1e-5 && c.slidingWindow == nil && c.maxPositionEmbeddings == 32768)
        #expect(c.torchDtype == "bfloat16")
        #expect(try Self.roundTrips(.mixtral(c)))
        let minimal = #"{"model_type":"mixtral","vocab_size":100,"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":8}"#
        guard case let .mixtral(m) = try Self.parse(minimal) else { Issue.record("not mixtral"); return }
        #expect(m.numLocalExperts == 8 && m.numExpertsPerTok == 2 && m.routerAuxLossCoef == 0.001 && m.numKeyValueHeads == 8)
    }

    @Test func qwenMoEFamily() throws {
        guard case let .qwenMoE(q2) = try Self.parse(Self.qwen2MoE) else { Issue.record("not qwen2_moe"); return }
        #expect(q2.modelType == "qwen2_moe" && q2.numExperts == 60 && q2.numExpertsPerTok == 4)
        #expect(q2.moeIntermediateSize == 1408 && q2.sharedExpertIntermediateSize == 5632 && !q2.normTopkProb)
        #expect(q2.attentionBias && q2.decoderSparseStep == 1 && q2.mlpOnlyLayers.isEmpty)
        #expect(try Self.roundTrips(.qwenMoE(q2)))

        guard case let .qwenMoE(q3) = try Self.parse(Self.qwen3MoE) else { Issue.record("not qwen3_moe"); return }
        #expect(q3.modelType == "qwen3_moe" && q3.numExperts == 128 && q3.numExpertsPerTok == 8 && q3.normTopkProb)
        #expect(q3.moeIntermediateSize == 768 && q3.sharedExpertIntermediateSize == 0 && q3.headDim == 128)
        #expect(q3.numKeyValueHeads == 4 && !q3.attentionBias && q3.eosTokenIDs == [151645])
        #expect((0..<48).allSatisfy(q3.isSparseLayer))
        #expect(try Self.roundTrips(.qwenMoE(q3)))

        guard case let .qwenMoE(o) = try Self.parse(Self.olmoe) else { Issue.record("not olmoe"); return }
        #expect(o.modelType == "olmoe" && o.numExperts == 64 && o.moeIntermediateSize == 1024 && o.routerAuxLossCoef == 0.01)
        #expect(o.padTokenID == 1 && o.bosTokenID == nil)
        #expect(try Self.roundTrips(.qwenMoE(o)))

        // Sparse-layer rule with mlp_only_layers and decoder_sparse_step.
        let sparse = #"{"model_type":"qwen2_moe","vocab_size":10,"hidden_size":8,"intermediate_size":16,"num_hidden_layers":6,"num_attention_heads":2,"num_key_value_heads":2,"decoder_sparse_step":2,"mlp_only_layers":[3]}"#
        guard case let .qwenMoE(s) = try Self.parse(sparse) else { Issue.record("not qwen2_moe"); return }
        #expect((0..<6).map(s.isSparseLayer) == [false, true, false, false, false, true])
        #expect(s.numExperts == 60 && s.numExpertsPerTok == 4 && s.moeIntermediateSize == 1408)  // HF defaults
    }

    @Test func errors() throws {
        let noHidden = #"{"model_type":"llama","vocab_size":10,"intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2}"#
        #expect(Self.errorMessage(noHidden) == "llama config: missing required field 'hidden_size'")
        let wrongType = #"{"model_type":"bert","vocab_size":10,"hidden_size":8,"num_hidden_layers":"six","num_attention_heads":2,"intermediate_size":16}"#
        #expect(Self.errorMessage(wrongType).contains("field 'num_hidden_layers' has the wrong type"))
        #expect(Self.errorMessage(#"{"model_type":"gpt2"}"#).contains("unsupported model_type 'gpt2'"))
        #expect(Self.errorMessage("[1]").contains("not a JSON config object"))
        #expect(Self.errorMessage(#"{"vocab_size":1}"#).contains("neither model_type nor"))
        let indivisible = #"{"model_type":"llama","vocab_size":10,"hidden_size":10,"intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":3}"#
        #expect(Self.errorMessage(indivisible).contains("hidden_size (10) is not divisible by num_attention_heads (3)"))
        let topK = #"{"model_type":"mixtral","vocab_size":10,"hidden_size":8,"intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":2,"num_local_experts":2,"num_experts_per_tok":3}"#
        #expect(Self.errorMessage(topK).contains("num_experts_per_tok (3) exceeds num_local_experts (2)"))
        let badLayers = #"{"model_type":"qwen3_moe","vocab_size":10,"hidden_size":8,"intermediate_size":16,"num_hidden_layers":2,"num_attention_heads":2,"num_key_value_heads":1,"mlp_only_layers":[5]}"#
        #expect(Self.errorMessage(badLayers).contains("mlp_only_layers contains 5"))
        let zero = #"{"model_type":"bert","vocab_size":0,"hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":16}"#
        #expect(Self.errorMessage(zero).contains("vocab_size must be positive"))
        // load(contentsOf:) names the file.
        let dir = try FormatTempDir()
        try Data(noHidden.utf8).write(to: dir.file("config.json"))
        let e = #expect(throws: HFConfigError.self) { try HFModelConfig.load(contentsOf: dir.file("config.json")) }
        #expect(e?.message.contains(dir.file("config.json").path) == true && e?.message.contains("hidden_size") == true)
    }

    @Test func writeConfigForCheckpoint() throws {
        // A config Frugal creates for its own MoE checkpoint, written and read back.
        let config = HFModelConfig.qwenMoE(QwenMoEConfig(modelType: "qwen3_moe", vocabSize: 256, hiddenSize: 64, intermediateSize: 128,
                                                         numHiddenLayers: 2, numAttentionHeads: 4, numKeyValueHeads: 2,
                                                         numExperts: 8, numExpertsPerTok: 2, moeIntermediateSize: 32,
                                                         normTopkProb: true))
        let dir = try FormatTempDir()
        try config.write(to: dir.file("config.json"))
        #expect(try HFModelConfig.load(contentsOf: dir.file("config.json")) == config)
        let obj = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.file("config.json"))) as? [String: Any]
        #expect(obj?["model_type"] as? String == "qwen3_moe" && obj?["num_experts"] as? Int == 8)
        #expect(obj?["architectures"] as? [String] == ["Qwen3MoeForCausalLM"] && obj?["head_dim"] as? Int == 16)
        let mixtral = HFModelConfig.mixtral(MixtralConfig(vocabSize: 100, hiddenSize: 32, intermediateSize: 64,
                                                          numHiddenLayers: 2, numAttentionHeads: 4, numKeyValueHeads: 2,
                                                          numLocalExperts: 4, numExpertsPerTok: 2))
        #expect(try Self.roundTrips(mixtral))
        let llama = HFModelConfig.llama(LlamaConfig(vocabSize: 100, hiddenSize: 32, intermediateSize: 64, numHiddenLayers: 2,
                                                    numAttentionHeads: 4, tieWordEmbeddings: true))
        #expect(try Self.roundTrips(llama))
        let bert = HFModelConfig.bert(BertConfig(vocabSize: 100, hiddenSize: 32, numHiddenLayers: 2, numAttentionHeads: 4,
                                                 intermediateSize: 64))
        #expect(try Self.roundTrips(bert))
    }
}

/// Defaults checked against the transformers config classes (scripts/make_hfconfig_fixture.py).
@Suite struct HFConfigDefaultsTests {
    /// Fields transformers has that Frugal does not model (training-only or unused).
    static let unmodelled: Set<String> = ["initializer_range", "num_local_experts", "router_jitter_noise", "mlp_bias",
                                          "qkv_bias", "attention_bias", "tie_word_embeddings", "bos_token_id", "eos_token_id"]

    @Test func matchesTransformersDefaults() throws {
        let data = try Data(contentsOf: FormatFixtures.url("hf_config_defaults", "json"))
        let all = try #require(try JSONSerialization.jsonObject(with: data) as? [String: [String: Any]])
        #expect(Set(all.keys) == Set(HFModelConfig.supportedModelTypes))
        for (type, entry) in all.sorted(by: { $0.key < $1.key }) {
            let input = try JSONSerialization.data(withJSONObject: try #require(entry["input"]))
            let expected = try #require(entry["expected"] as? [String: Any])
            let config = try HFModelConfig.decode(input)
            #expect(config.modelType == type)
            let ours = try #require(try JSONSerialization.jsonObject(with: config.encoded()) as? [String: Any])
            for (key, want) in expected {
                guard let got = ours[key] else {
                    // Absent in our encoding: HF's value is null, or the field is one we do not write for this type.
                    let alias = type == "mixtral" && key == "num_experts"  // transformers' alias of num_local_experts
                    #expect(want is NSNull || alias || Self.unmodelled.contains(key), "\(type): \(key) = \(want) not modelled")
                    continue
                }
                #expect(Self.same(got, want), "\(type): \(key) is \(got), transformers has \(want)")
            }
        }
    }

    static func same(_ a: Any, _ b: Any) -> Bool {
        switch (a, b) {
        case let (x as String, y as String): return x == y
        case let (x as [Any], y as [Any]): return x.count == y.count && zip(x, y).allSatisfy { same($0, $1) }
        case let (x as NSNumber, y as NSNumber): return x.doubleValue == y.doubleValue
        default: return false
        }
    }
}
