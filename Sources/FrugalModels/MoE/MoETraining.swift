import Foundation
import FrugalCore
import FrugalNN

/// A trainable Mixtral-style MoE language model built from autograd layers (embedding, pre-norm
/// blocks with rotary grouped-query attention, a top-k router and SwiGLU experts), saved in the
/// Hugging Face Mixtral layout that `MoEModel` and transformers read.
///
/// The MoE block groups the tokens routed to each expert (`indexSelect`), runs the expert on that
/// group and adds the weighted outputs back (`scatterAdd`), so only the selected experts are
/// computed and gradients reach both the experts and, through the combine weights, the router.
public final class MoETrainingModel: Module {
    /// One layer's router and experts.
    public final class SparseBlock: Module {
        public let gate: Linear
        public let experts: [SwiGLU]
        let topK: Int
        init(hidden: Int, intermediate: Int, experts n: Int, topK: Int, rng: inout RNG) {
            gate = Linear(hidden, n, bias: false, rng: &rng)
            experts = (0..<n).map { _ in SwiGLU(dModel: hidden, hidden: intermediate, rng: &rng) }
            self.topK = topK
        }
        public override func children() -> [(String, Any)] { [("gate", gate), ("experts", experts as [Module])] }

        /// x [N, h] → (output [N, h], aux loss term E·Σ_e f_e·P_e, expert counts).
        func callAsFunction(_ x: Tensor) -> (Tensor, Tensor, [Int]) {
            let n = x.shape[0], e = experts.count
            let probs = gate(x).softmax(axis: -1)   // [N, E]
            // Top-k per token on the detached probabilities (descending, lowest index on ties).
            var sel = [Int](repeating: 0, count: n * topK)
            let p = probs.detach().contiguousF32().pointer
            for t in 0..<n {
                let row = p + t * e
                for j in 0..<topK {
                    var best = -1
                    var bv = -Float.infinity
                    for c in 0..<e where row[c] > bv {
                        var taken = false
                        for q in 0..<j where sel[t * topK + q] == c { taken = true }
                        if !taken { best = c; bv = row[c] }
                    }
                    sel[t * topK + j] = best
                }
            }
            var w = probs.gather(axis: 1, index: sel, indexShape: [n, topK])   // [N, k]
            w = w / w.sum(axis: 1, keepDims: true)   // Mixtral renormalises
            let wflat = w.reshaped([n * topK])
            var out = Tensor.zeros([n, x.shape[1]])
            var counts = [Int](repeating: 0, count: e)
            var tokens = [[Int]](repeating: [], count: e), slots = [[Int]](repeating: [], count: e)
            for t in 0..<n {
                for j in 0..<topK {
                    let c = sel[t * topK + j]
                    tokens[c].append(t); slots[c].append(t * topK + j); counts[c] += 1
                }
            }
            for c in 0..<e where !tokens[c].isEmpty {
                let y = experts[c](x.indexSelect(tokens[c]))
                let wc = wflat.indexSelect(slots[c]).reshaped([tokens[c].count, 1])
                out = out.scatterAdd(tokens[c], y * wc)
            }
            // Switch / Mixtral load-balancing loss: E · Σ_e (share of routed slots to e) · (mean prob of e).
            let f = Tensor(counts.map { Float($0) / Float(n) }, shape: [1, e])
            let aux = (probs.mean(axis: 0, keepDims: true) * f).sum() * Float(e)
            return (out, aux, counts)
        }
    }

    /// One decoder layer.
    public final class Block: Module {
        public let inputLayernorm: RMSNorm
        public let selfAttn: MultiHeadAttention
        public let postAttentionLayernorm: RMSNorm
        public let blockSparseMoe: SparseBlock
        init(_ c: MoEModelConfig, rng: inout RNG) {
            inputLayernorm = RMSNorm(c.hiddenSize, eps: c.rmsNormEps)
            selfAttn = MultiHeadAttention(dModel: c.hiddenSize, heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim,
                                          rope: RoPE(headDim: c.headDim, base: c.ropeTheta), rng: &rng)
            postAttentionLayernorm = RMSNorm(c.hiddenSize, eps: c.rmsNormEps)
            blockSparseMoe = SparseBlock(hidden: c.hiddenSize, intermediate: c.expertIntermediate, experts: c.experts,
                                         topK: c.topK, rng: &rng)
        }
    }

    public let config: MoEModelConfig
    public let embedTokens: Embedding
    public let layers: [Block]
    public let norm: RMSNorm
    public let lmHead: Linear

    /// A model with the given config (Mixtral layout; untied embeddings), initialised like
    /// transformers: N(0, 0.02) weights, unit norms.
    public init(config: MoEModelConfig, seed: UInt64) {
        precondition(config.layout == .mixtral, "MoETrainingModel trains the Mixtral layout")
        self.config = config
        var rng = RNG(seed: seed)
        embedTokens = Embedding(config.vocabSize, config.hiddenSize, rng: &rng)
        layers = (0..<config.layers).map { _ in Block(config, rng: &rng) }
        norm = RMSNorm(config.hiddenSize, eps: config.rmsNormEps)
        lmHead = Linear(config.hiddenSize, config.vocabSize, bias: false, rng: &rng)
        super.init()
        for (name, p) in namedParameters() where !name.hasSuffix("layernorm.weight") && name != "norm.weight" {
            withNoGrad { p.assign(Tensor.normal(p.shape, std: 0.02, rng: &rng)) }
        }
    }
    public override func children() -> [(String, Any)] {
        [("embed_tokens", embedTokens), ("layers", layers as [Module]), ("norm", norm), ("lm_head", lmHead)]
    }

    /// tokens [B, T] (row-major) → (logits [B·T, vocab], mean aux loss over layers, expert counts per layer).
    public func forward(_ tokens: [Int], batch b: Int, length t: Int) -> (logits: Tensor, aux: Tensor, counts: [[Int]]) {
        precondition(tokens.count == b * t, "forward: \(tokens.count) tokens for [\(b), \(t)]")
        let h = config.hiddenSize
        var x = embedTokens(tokens).reshaped([b, t, h])
        var aux = Tensor(scalar: 0)
        var counts: [[Int]] = []
        for layer in layers {
            x = x + layer.selfAttn(layer.inputLayernorm(x), causal: true)
            let (y, a, c) = layer.blockSparseMoe(layer.postAttentionLayernorm(x).reshaped([b * t, h]))
            x = x + y.reshaped([b, t, h])
            aux = aux + a
            counts.append(c)
        }
        let logits = lmHead(norm(x).reshaped([b * t, h]))
        return (logits, aux / Float(layers.count), counts)
    }

    /// Loads the weights of a checkpoint this model saved (same configuration), to continue training.
    /// - Throws: `MoEError.badInput` naming the tensor that is missing or has another shape.
    public func load(from directory: URL) throws {
        let ckpt = try SafetensorsCheckpoint(url: directory)
        for (name, t) in tensorNames() {
            guard ckpt.contains(name) else { throw MoEError.badInput("\(directory.path): no tensor '\(name)'") }
            let info = try ckpt.info(name)
            guard info.shape == t.shape else {
                throw MoEError.badInput("\(directory.path): '\(name)' has shape \(info.shape), the model \(t.shape)")
            }
            let v = try ckpt.floats(name)
            withNoGrad { t.assign(Tensor(v, shape: t.shape)) }
        }
    }

    /// Checkpoint name → parameter, in the Mixtral layout.
    func tensorNames() -> [String: Tensor] {
        var names: [String: Tensor] = [
            "model.embed_tokens.weight": embedTokens.weight, "model.norm.weight": norm.weight, "lm_head.weight": lmHead.weight,
        ]
        for (l, layer) in layers.enumerated() {
            let p = "model.layers.\(l)."
            names[p + "input_layernorm.weight"] = layer.inputLayernorm.weight
            names[p + "post_attention_layernorm.weight"] = layer.postAttentionLayernorm.weight
            names[p + "self_attn.q_proj.weight"] = layer.selfAttn.qProj.weight
            names[p + "self_attn.k_proj.weight"] = layer.selfAttn.kProj.weight
            names[p + "self_attn.v_proj.weight"] = layer.selfAttn.vProj.weight
            names[p + "self_attn.o_proj.weight"] = layer.selfAttn.oProj.weight
            names[config.routerName(layer: l)] = layer.blockSparseMoe.gate.weight
            for (e, ex) in layer.blockSparseMoe.experts.enumerated() {
                let n = config.expertNames(layer: l, expert: e)
                names[n.gate] = ex.gateProj.weight; names[n.up] = ex.upProj.weight; names[n.down] = ex.downProj.weight
            }
        }
        return names
    }

    /// Saves config.json (byte-level tokenizer noted) and the weights in `dtype`, in the Mixtral layout.
    public func save(to directory: URL, dtype: DType = .float32, shardBytes: Int? = nil, byteTokenizer: Bool = true) throws {
        let names = tensorNames()
        try MoECheckpointWriter.writeConfig(config, dtype: dtype, to: directory, byteTokenizer: byteTokenizer)
        try MoECheckpointWriter.writeWeights(config, dtype: dtype, shardBytes: shardBytes, to: directory) { name, shape in
            guard let t = names[name], t.shape == shape else { throw MoEError.badInput("training model has no tensor '\(name)' \(shape)") }
            return t.array
        }
    }
}
