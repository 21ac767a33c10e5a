import Foundation
import FrugalCore
import FrugalNN
import FrugalData

/// Llama attention: q/k/v/o projections, rotary positions (rotate-half convention), grouped KV heads.
public final class LlamaAttention: Module {
    public var qProj: Projection, kProj: Projection, vProj: Projection, oProj: Projection
    public let heads: Int, kvHeads: Int, headDim: Int
    public let rope: RoPE
    init(_ c: LlamaConfig, rng: inout RNG) {
        heads = c.numAttentionHeads; kvHeads = c.numKeyValueHeads; headDim = c.headDim
        rope = RoPE(headDim: c.headDim, base: Float(c.ropeTheta))
        qProj = Linear(c.hiddenSize, heads * headDim, bias: c.attentionBias, rng: &rng)
        kProj = Linear(c.hiddenSize, kvHeads * headDim, bias: c.attentionBias, rng: &rng)
        vProj = Linear(c.hiddenSize, kvHeads * headDim, bias: c.attentionBias, rng: &rng)
        oProj = Linear(heads * headDim, c.hiddenSize, bias: c.attentionBias, rng: &rng)
    }
    public override func children() -> [(String, Any)] { [("q_proj", qProj), ("k_proj", kProj), ("v_proj", vProj), ("o_proj", oProj)] }

    /// x [B, T, D] → [B, T, D]. With a cache, keys and values of earlier positions are reused and
    /// this call's are appended.
    public func callAsFunction(_ x: Tensor, maskBias: Tensor?, cache: LlamaKVCache?) -> Tensor {
        let offset = cache?.length ?? 0
        let q = Attention.rope(qProj(x), heads: heads, rope: rope, offset: offset)
        var k = Attention.rope(kProj(x), heads: kvHeads, rope: rope, offset: offset)
        var v = vProj(x)
        if let cache {   // cache tensors are [B, S, kvHeads·d]
            if let pk = cache.keys, let pv = cache.values {
                k = Tensor.concat([pk, k], axis: 1); v = Tensor.concat([pv, v], axis: 1)
            }
            cache.keys = k.detach().contiguousF32(); cache.values = v.detach().contiguousF32()
        }
        return oProj(Attention.scaledDotProduct(q: q, k: k, v: v, heads: heads, kvHeads: kvHeads, maskBias: maskBias, causal: true))
    }
}

/// Llama's gated MLP: down(silu(gate(x)) ⊙ up(x)).
public final class LlamaMLP: Module {
    public var gateProj: Projection, upProj: Projection, downProj: Projection
    init(_ c: LlamaConfig, rng: inout RNG) {
        gateProj = Linear(c.hiddenSize, c.intermediateSize, bias: c.mlpBias, rng: &rng)
        upProj = Linear(c.hiddenSize, c.intermediateSize, bias: c.mlpBias, rng: &rng)
        downProj = Linear(c.intermediateSize, c.hiddenSize, bias: c.mlpBias, rng: &rng)
    }
    public override func children() -> [(String, Any)] { [("gate_proj", gateProj), ("up_proj", upProj), ("down_proj", downProj)] }
    public func callAsFunction(_ x: Tensor) -> Tensor { downProj(gateProj(x).silu() * upProj(x)) }
}

/// One pre-norm decoder layer: h = x + attn(norm(x)); y = h + mlp(norm(h)).
public final class LlamaDecoderLayer: Module {
    public let inputLayernorm: RMSNorm, selfAttn: LlamaAttention, postAttentionLayernorm: RMSNorm, mlp: LlamaMLP
    init(_ c: LlamaConfig, rng: inout RNG) {
        inputLayernorm = RMSNorm(c.hiddenSize, eps: Float(c.rmsNormEps))
        selfAttn = LlamaAttention(c, rng: &rng)
        postAttentionLayernorm = RMSNorm(c.hiddenSize, eps: Float(c.rmsNormEps))
        mlp = LlamaMLP(c, rng: &rng)
    }
    public override func children() -> [(String, Any)] {
        [("input_layernorm", inputLayernorm), ("self_attn", selfAttn), ("post_attention_layernorm", postAttentionLayernorm), ("mlp", mlp)]
    }
    public func callAsFunction(_ x: Tensor, maskBias: Tensor?, cache: LlamaKVCache?) -> Tensor {
        let h = x + selfAttn(inputLayernorm(x), maskBias: maskBias, cache: cache)
        return h + mlp(postAttentionLayernorm(h))
    }
}

/// Names `model.{embed_tokens, layers, norm}`.
public final class LlamaBackbone: Module {
    public let embedTokens: Embedding
    public let layers: [LlamaDecoderLayer]
    public let norm: RMSNorm
    init(_ c: LlamaConfig, rng: inout RNG) {
        embedTokens = Embedding(c.vocabSize, c.hiddenSize, rng: &rng)
        layers = (0..<c.numHiddenLayers).map { _ in LlamaDecoderLayer(c, rng: &rng) }
        norm = RMSNorm(c.hiddenSize, eps: Float(c.rmsNormEps))
    }
    public override func children() -> [(String, Any)] { [("embed_tokens", embedTokens), ("layers", layers as [Module]), ("norm", norm)] }
}

/// A Llama-family causal language model (transformers' `LlamaForCausalLM` names:
/// `model.layers.0.self_attn.q_proj.weight`, `lm_head.weight`), loadable from a transformers
/// folder (safetensors) or a llama.cpp GGUF file (dequantised to float32 at load).
///
///     let lm = try LlamaForCausalLM.load(gguf: URL(fileURLWithPath: "SmolLM2-135M-Instruct.Q4_1.gguf"))
///     let tok = try TokenizerLoader.loadGGUF(path: "SmolLM2-135M-Instruct.Q4_1.gguf")
///     let ids = lm.generate(prompt: tok.tokenize("The capital of France is"), maxTokens: 32)
public final class LlamaForCausalLM: Module {
    public let config: LlamaConfig
    public let model: LlamaBackbone
    /// The output projection; nil when tied to the token embeddings.
    public let lmHead: Linear?

    public init(config: LlamaConfig, rng: inout RNG) {
        self.config = config
        model = LlamaBackbone(config, rng: &rng)
        lmHead = config.tieWordEmbeddings ? nil : Linear(config.hiddenSize, config.vocabSize, bias: false, rng: &rng)
    }
    public override func children() -> [(String, Any)] {
        var c: [(String, Any)] = [("model", model)]
        if let lmHead { c.append(("lm_head", lmHead)) }
        return c
    }

    public var layers: [LlamaDecoderLayer] { model.layers }
    public var layerCount: Int { model.layers.count }

    /// Final-norm hidden states [B, T, D]. `caches` (one per layer) turn on incremental decoding;
    /// `activeLayers[l] == false` skips layer l (residual passes through, nothing recorded).
    public func hidden(_ x: TokenBatch, caches: [LlamaKVCache]? = nil, activeLayers: [Bool]? = nil) -> Tensor {
        if let caches { precondition(caches.count == layerCount, "Llama: \(caches.count) caches for \(layerCount) layers") }
        if let activeLayers { precondition(activeLayers.count == layerCount, "Llama: \(activeLayers.count) layer flags for \(layerCount) layers") }
        var h = model.embedTokens(x.ids).reshaped([x.batch, x.length, config.hiddenSize])
        let past = caches?.first?.length ?? 0
        let bias: Tensor? = x.mask.contains(0) && past == 0 ? Attention.paddingBias(x.mask, batch: x.batch, length: x.length) : nil
        for (l, layer) in model.layers.enumerated() where activeLayers?[l] ?? true {
            h = layer(h, maskBias: bias, cache: caches?[l])
        }
        return model.norm(h)
    }

    /// Logits [B, T, vocab] from hidden states [B, T, D].
    public func logits(_ h: Tensor) -> Tensor {
        h.linear(weight: lmHead?.weight ?? model.embedTokens.weight)
    }

    /// Logits [B, T, vocab].
    public func callAsFunction(_ x: TokenBatch, caches: [LlamaKVCache]? = nil, activeLayers: [Bool]? = nil) -> Tensor {
        logits(hidden(x, caches: caches, activeLayers: activeLayers))
    }

    /// Greedy decoding with a KV cache: the prompt in one pass, then one token a step.
    /// `onToken` sees each new id and returns false to stop. Stops early at an id in `stop`.
    @discardableResult
    public func generate(prompt: [Int], maxTokens: Int, stop: Set<Int> = [], onToken: (Int) -> Bool = { _ in true }) -> [Int] {
        precondition(!prompt.isEmpty, "generate: empty prompt")
        return withNoGrad {
            let caches = (0..<layerCount).map { _ in LlamaKVCache() }
            var out: [Int] = []
            var input = prompt
            while out.count < maxTokens {
                let h = hidden(TokenBatch(ids: input, batch: 1, length: input.count), caches: caches)
                let last = h.select(axis: 1, input.count - 1)       // [1, D]
                let next = logits(last).argmax(axis: -1)[0]
                out.append(next)
                if !onToken(next) || stop.contains(next) { break }
                input = [next]
            }
            return out
        }
    }

    /// Builds the model from a transformers folder (`config.json` + `model.safetensors`).
    public static func load(directory: URL) throws -> LlamaForCausalLM {
        let cfgURL = directory.appendingPathComponent("config.json")
        guard case let .llama(config) = try HFModelConfig.load(contentsOf: cfgURL) else {
            throw ModelLoadError("\(cfgURL.path): not a Llama-family config")
        }
        var rng = RNG(seed: 0)
        let m = LlamaForCausalLM(config: config, rng: &rng)
        try PretrainedLoader.load(m, from: directory.appendingPathComponent("model.safetensors"))
        m.freeze()
        return m
    }

    /// The configuration in a llama.cpp GGUF file's `llama.*` metadata.
    public static func config(gguf g: GGUFFile) throws -> LlamaConfig {
        guard g.architecture == "llama" else {
            throw ModelLoadError("\(g.url.path): general.architecture is '\(g.architecture ?? "(absent)")', expected llama")
        }
        func req(_ k: String) throws -> Int {
            guard let v = try g.int("llama." + k) else { throw ModelLoadError("\(g.url.path): missing metadata llama.\(k)") }
            return v
        }
        let d = try req("embedding_length"), heads = try req("attention.head_count")
        let vocab = try g.int("llama.vocab_size") ?? g.stringArray("tokenizer.ggml.tokens")?.count ?? g.info("token_embd.weight").shape[0]
        return LlamaConfig(vocabSize: vocab, hiddenSize: d, intermediateSize: try req("feed_forward_length"),
                           numHiddenLayers: try req("block_count"), numAttentionHeads: heads,
                           numKeyValueHeads: try g.int("llama.attention.head_count_kv") ?? heads,
                           headDim: try g.int("llama.rope.dimension_count") ?? d / heads,
                           maxPositionEmbeddings: try g.int("llama.context_length") ?? 2048,
                           rmsNormEps: try g.double("llama.attention.layer_norm_rms_epsilon") ?? 1e-5,
                           ropeTheta: try g.double("llama.rope.freq_base") ?? 10000,
                           tieWordEmbeddings: !g.contains("output.weight"),
                           bosTokenID: try g.int("tokenizer.ggml.bos_token_id"),
                           eosTokenIDs: (try g.int("tokenizer.ggml.eos_token_id")).map { [$0] } ?? [])
    }

    /// Builds the model from a llama.cpp GGUF file, dequantising every tensor to float32.
    /// llama.cpp stores q/k rows interleaved for its RoPE; they are permuted back to the
    /// rotate-half order that `RoPE` (and transformers) use.
    public static func load(gguf url: URL) throws -> LlamaForCausalLM {
        let g = try GGUFFile(url: url)
        let config = try config(gguf: g)
        var rng = RNG(seed: 0)
        let m = LlamaForCausalLM(config: config, rng: &rng)
        var names: [String: String] = ["model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
                                       "lm_head.weight": "output.weight"]
        let per = ["input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
                   "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
                   "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
                   "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias",
                   "self_attn.v_proj.bias": "attn_v.bias", "self_attn.o_proj.bias": "attn_output.bias",
                   "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight"]
        for l in 0..<config.numHiddenLayers { for (k, v) in per { names["model.layers.\(l).\(k)"] = "blk.\(l).\(v)" } }
        for (name, t) in m.namedTensors() {
            guard let gname = names[name] else { throw ModelLoadError("\(url.path): no GGUF name for tensor '\(name)'") }
            guard g.contains(gname) else { throw ModelLoadError("\(url.path): no tensor '\(gname)' (for \(name))") }
            let info = try g.info(gname)
            guard info.shape == t.shape || (info.shape.count == 1 && [info.elementCount] == t.shape) else {
                throw ModelLoadError("\(url.path): tensor '\(gname)' has shape \(info.shape), the model expects \(t.shape)")
            }
            try g.copyFloats(gname, into: UnsafeMutableBufferPointer(start: t.pointer, count: t.count))
            if name.hasSuffix("q_proj.weight") || name.hasSuffix("q_proj.bias") { unpermuteRoPE(t, heads: config.numAttentionHeads) }
            if name.hasSuffix("k_proj.weight") || name.hasSuffix("k_proj.bias") { unpermuteRoPE(t, heads: config.numKeyValueHeads) }
        }
        m.freeze()
        return m
    }

    /// Inverse of llama.cpp's convert permutation: within each head, row 2i + j moves to j·(d/2) + i.
    static func unpermuteRoPE(_ t: Tensor, heads: Int) {
        let rows = t.shape[0], cols = t.rank == 2 ? t.shape[1] : 1
        let hd = rows / heads, half = hd / 2
        let src = t.copyTensor()
        let ps = src.pointer, pd = t.pointer
        for h in 0..<heads {
            for i in 0..<half {
                for j in 0..<2 {
                    (pd + (h * hd + j * half + i) * cols).update(from: ps + (h * hd + 2 * i + j) * cols, count: cols)
                }
            }
        }
    }
}

/// Keys and values of earlier positions, for incremental decoding: [B, S, kvHeads·d] each (the
/// projections' layout, after RoPE).
public final class LlamaKVCache {
    public var keys: Tensor?
    public var values: Tensor?
    public init() {}
    /// Cached positions S.
    public var length: Int { keys?.shape[1] ?? 0 }
}
