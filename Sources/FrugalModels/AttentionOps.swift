import FrugalCore
import FrugalNN

/// Scaled dot-product attention shared by the BERT encoder and the Llama decoder.
public enum Attention {
    /// Splits [B, T, heads * d] into heads: [B, heads, T, d] (a view).
    public static func splitHeads(_ x: Tensor, heads: Int) -> Tensor {
        let b = x.shape[0], t = x.shape[1], d = x.shape[2] / heads
        precondition(x.shape[2] == heads * d, "attention: width \(x.shape[2]) not divisible by \(heads) heads")
        return x.reshaped([b, t, heads, d]).permuted(0, 2, 1, 3)
    }

    /// softmax(Q Kᵀ / √d + bias) V over heads.
    ///
    /// - Parameters:
    ///   - q: [B, heads, T, d]; k, v: [B, kvHeads, S, d] (grouped-query when kvHeads < heads).
    ///   - maskBias: [B, 1, 1, S], added to the scores (0 for real keys, -1e30 for padding).
    ///   - causal: query t sees keys 0...t + (S - T) (earlier cached positions included).
    /// - Returns: [B, T, heads * d].
    public static func scaledDotProduct(q qh: Tensor, k: Tensor, v: Tensor, maskBias: Tensor?, causal: Bool) -> Tensor {
        let b = qh.shape[0], heads = qh.shape[1], t = qh.shape[2], d = qh.shape[3]
        let kvHeads = k.shape[1], s = k.shape[2]
        precondition(k.shape == [b, kvHeads, s, d] && v.shape == k.shape && heads % kvHeads == 0,
                     "attention: q \(qh.shape), k \(k.shape), v \(v.shape)")
        var kh = k, vh = v
        if kvHeads != heads {
            let rep = heads / kvHeads
            kh = kh.unsqueezed(2).expanded(to: [b, kvHeads, rep, s, d]).reshaped([b, heads, s, d])
            vh = vh.unsqueezed(2).expanded(to: [b, kvHeads, rep, s, d]).reshaped([b, heads, s, d])
        }
        var scores = qh.matmul(kh.transposed()) * (1 / Float(d).squareRoot())
        if let maskBias { scores = scores + maskBias }
        if causal && t > 1 {
            let m = Tensor(zeros: [t, s])
            let off = s - t
            for i in 0..<t { for j in 0..<s where j > i + off { m.pointer[i * s + j] = 1 } }
            scores = scores.maskedFill(m, -.infinity)
        }
        let p = scores.softmax(axis: -1)
        return p.matmul(vh).permuted(0, 2, 1, 3).reshaped([b, t, heads * d])
    }

    /// The additive padding bias [B, 1, 1, T]: 0 where `mask` is 1, -1e30 where it is 0.
    public static func paddingBias(_ mask: [Int], batch: Int, length: Int) -> Tensor {
        Tensor(mask.map { $0 != 0 ? 0 : -1e30 }, shape: [batch, 1, 1, length])
    }
}
