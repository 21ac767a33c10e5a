import FrugalCore

/// A pre-norm decoder block as in Llama: h = x + attn(norm1(x)); y = h + mlp(norm2(h)),
/// with RMSNorm, rotary multi-head attention (optionally grouped KV heads) and a SwiGLU MLP.
public final class TransformerBlock: Module {
    public let inputNorm: RMSNorm
    public let attention: MultiHeadAttention
    public let postNorm: RMSNorm
    public let mlp: SwiGLU

    public init(dModel: Int, heads: Int, kvHeads: Int? = nil, hidden: Int, ropeBase: Float = 10000, eps: Float = 1e-6, rng: inout RNG) {
        inputNorm = RMSNorm(dModel, eps: eps)
        attention = MultiHeadAttention(dModel: dModel, heads: heads, kvHeads: kvHeads, rope: RoPE(headDim: dModel / heads, base: ropeBase), rng: &rng)
        postNorm = RMSNorm(dModel, eps: eps)
        mlp = SwiGLU(dModel: dModel, hidden: hidden, rng: &rng)
    }
    public override func children() -> [(String, Any)] {
        [("input_layernorm", inputNorm), ("self_attn", attention), ("post_attention_layernorm", postNorm), ("mlp", mlp)]
    }

    /// x [B, T, D] → [B, T, D].
    public func callAsFunction(_ x: Tensor, causal: Bool = true, paddingMask: Tensor? = nil, cache: KVCache? = nil) -> Tensor {
        let h = x + attention(inputNorm(x), causal: causal, paddingMask: paddingMask, cache: cache)
        return h + mlp(postNorm(h))
    }
}
