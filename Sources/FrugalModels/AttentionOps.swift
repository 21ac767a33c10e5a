import FrugalCore
import FrugalNN

/// Attention helpers shared by the BERT encoder and the Llama decoder. Activations stay in the
/// [B, T, heads·d] layout the projections produce; `Tensor.multiHeadAttention` (FrugalCore) is
/// the fused kernel with its backward rule.
public enum Attention {
    /// softmax(Q Kᵀ / √d + bias [+ causal mask]) V: q [B, T, heads·d], k/v [B, S, kvHeads·d],
    /// maskBias [B, S] → [B, T, heads·d].
    public static func scaledDotProduct(q: Tensor, k: Tensor, v: Tensor, heads: Int, kvHeads: Int,
                                        maskBias: Tensor?, causal: Bool) -> Tensor {
        Tensor.multiHeadAttention(q: q, k: k, v: v, heads: heads, kvHeads: kvHeads, maskBias: maskBias, causal: causal)
    }

    /// The additive padding bias [B, T]: 0 where `mask` is 1, -1e30 where it is 0.
    public static func paddingBias(_ mask: [Int], batch: Int, length: Int) -> Tensor {
        Tensor(mask.map { $0 != 0 ? 0 : -1e30 }, shape: [batch, length])
    }

    /// Rotary embedding (rotate-half convention) of x [B, T, heads·d] at positions offset..<offset+T.
    public static func rope(_ x: Tensor, heads: Int, rope: RoPE, offset: Int) -> Tensor {
        let b = x.shape[0], t = x.shape[1], d = rope.headDim
        precondition(x.shape[2] == heads * d, "rope: width \(x.shape[2]) is not \(heads) heads of \(d)")
        let (c, s) = rope.tables(length: t, offset: offset)
        let c3 = c.reshaped([t, 1, d]), s3 = s.reshaped([t, 1, d])
        let xh = x.reshaped([b, t, heads, d])
        let halves = xh.split([d / 2, d / 2], axis: -1)
        let rotated = Tensor.concat([halves[1].neg(), halves[0]], axis: -1)
        return (xh * c3 + rotated * s3).reshaped([b, t, heads * d])
    }
}
