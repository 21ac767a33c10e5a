#if canImport(Glibc)
import Glibc
#endif
import FrugalCore

/// Rotary position embedding in the rotate-half convention of Hugging Face Llama/Mixtral/Qwen:
/// x' = x·cos(pθ) + rotate_half(x)·sin(pθ), θ_i = base^(-2i/d).
public struct RoPE: Sendable {
    public let headDim: Int
    public let base: Float
    public init(headDim: Int, base: Float = 10000) {
        precondition(headDim % 2 == 0, "RoPE needs an even head dimension, got \(headDim)")
        self.headDim = headDim
        self.base = base
    }

    /// cos and sin tables [T, headDim] for positions offset..<offset+T.
    public func tables(length: Int, offset: Int = 0) -> (cos: Tensor, sin: Tensor) {
        let half = headDim / 2
        let c = Tensor(zeros: [length, headDim]), s = Tensor(zeros: [length, headDim])
        for t in 0..<length {
            for i in 0..<half {
                let inv = 1 / powf(base, Float(2 * i) / Float(headDim))
                let a = Float(offset + t) * inv
                let (cv, sv) = (cosf(a), sinf(a))
                c.pointer[t * headDim + i] = cv; c.pointer[t * headDim + i + half] = cv
                s.pointer[t * headDim + i] = sv; s.pointer[t * headDim + i + half] = sv
            }
        }
        return (c, s)
    }

    /// Applies the rotation to x [B, H, T, headDim] at positions offset..<offset+T.
    public func apply(_ x: Tensor, offset: Int = 0) -> Tensor {
        let t = x.shape[x.rank - 2]
        let (c, s) = tables(length: t, offset: offset)
        let halves = x.split([headDim / 2, headDim / 2], axis: -1)
        let rotated = Tensor.concat([halves[1].neg(), halves[0]], axis: -1)
        return x * c + rotated * s
    }
}

/// Keys and values of earlier positions, for incremental decoding.
public final class KVCache {
    public var keys: Tensor?    // [B, KV, T, hd]
    public var values: Tensor?
    public init() {}
    public var length: Int { keys?.shape[2] ?? 0 }
}

/// Multi-head attention with grouped KV heads, optional RoPE, causal and padding masks.
/// Input [B, T, D]; projections named q_proj/k_proj/v_proj/o_proj.
public final class MultiHeadAttention: Module {
    public let qProj: Linear, kProj: Linear, vProj: Linear, oProj: Linear
    public let heads: Int, kvHeads: Int, headDim: Int
    public let rope: RoPE?

    public init(dModel: Int, heads: Int, kvHeads: Int? = nil, headDim: Int? = nil, bias: Bool = false, rope: RoPE? = nil, rng: inout RNG) {
        let kv = kvHeads ?? heads
        precondition(heads % kv == 0, "attention: \(heads) heads not divisible by \(kv) KV heads")
        let hd = headDim ?? dModel / heads
        self.heads = heads
        self.kvHeads = kv
        self.headDim = hd
        self.rope = rope
        qProj = Linear(dModel, heads * hd, bias: bias, rng: &rng)
        kProj = Linear(dModel, kv * hd, bias: bias, rng: &rng)
        vProj = Linear(dModel, kv * hd, bias: bias, rng: &rng)
        oProj = Linear(heads * hd, dModel, bias: bias, rng: &rng)
    }
    public override func children() -> [(String, Any)] { [("q_proj", qProj), ("k_proj", kProj), ("v_proj", vProj), ("o_proj", oProj)] }

    /// - Parameters:
    ///   - causal: mask future positions.
    ///   - paddingMask: [B, T_total] with 1 for real tokens, 0 for padding (keys only).
    ///   - cache: appended to and attended over (decoding).
    public func callAsFunction(_ x: Tensor, causal: Bool = false, paddingMask: Tensor? = nil, cache: KVCache? = nil) -> Tensor {
        let b = x.shape[0], t = x.shape[1]
        let offset = cache?.length ?? 0
        var q = qProj(x).reshaped([b, t, heads, headDim]).permuted(0, 2, 1, 3)
        var k = kProj(x).reshaped([b, t, kvHeads, headDim]).permuted(0, 2, 1, 3)
        var v = vProj(x).reshaped([b, t, kvHeads, headDim]).permuted(0, 2, 1, 3)
        if let rope { q = rope.apply(q, offset: offset); k = rope.apply(k, offset: offset) }
        if let cache {
            if let pk = cache.keys, let pv = cache.values {
                k = Tensor.concat([pk, k], axis: 2); v = Tensor.concat([pv, v], axis: 2)
            }
            cache.keys = k.detach().contiguousF32(); cache.values = v.detach().contiguousF32()
        }
        let total = k.shape[2]
        if kvHeads != heads {
            let rep = heads / kvHeads
            k = k.unsqueezed(2).expanded(to: [b, kvHeads, rep, total, headDim]).reshaped([b, heads, total, headDim])
            v = v.unsqueezed(2).expanded(to: [b, kvHeads, rep, total, headDim]).reshaped([b, heads, total, headDim])
        }
        var scores = q.matmul(k.transposed()) * (1 / Float(headDim).squareRoot())   // [B, H, T, total]
        if causal && t > 1 {
            let m = Tensor(zeros: [t, total])
            for i in 0..<t { for j in 0..<total where j > i + offset { m.pointer[i * total + j] = 1 } }
            scores = scores.maskedFill(m, -.infinity)
        }
        if let paddingMask {
            precondition(paddingMask.shape == [b, total], "attention: padding mask \(paddingMask.shape) != [\(b), \(total)]")
            let pad = Tensor(scalar: 1) - paddingMask.detach()
            scores = scores.maskedFill(pad.reshaped([b, 1, 1, total]).expanded(to: scores.shape).contiguousF32(), -.infinity)
        }
        let attn = scores.softmax(axis: -1)
        let out = attn.matmul(v).permuted(0, 2, 1, 3).reshaped([b, t, heads * headDim])
        return oProj(out)
    }
}

/// The gated feed-forward of Llama/Mixtral experts: down(silu(gate(x)) ⊙ up(x)).
public final class SwiGLU: Module, Layer {
    public let gateProj: Linear, upProj: Linear, downProj: Linear
    public init(dModel: Int, hidden: Int, bias: Bool = false, rng: inout RNG) {
        gateProj = Linear(dModel, hidden, bias: bias, rng: &rng)
        upProj = Linear(dModel, hidden, bias: bias, rng: &rng)
        downProj = Linear(hidden, dModel, bias: bias, rng: &rng)
    }
    public override func children() -> [(String, Any)] { [("gate_proj", gateProj), ("up_proj", upProj), ("down_proj", downProj)] }
    public func forward(_ x: Tensor) -> Tensor { downProj(gateProj(x).silu() * upProj(x)) }
}

/// The BERT/GPT feed-forward: fc2(gelu(fc1(x))).
public final class GELUMLP: Module, Layer {
    public let fc1: Linear, fc2: Linear
    public let tanhApproximation: Bool
    public init(dModel: Int, hidden: Int, tanhApproximation: Bool = false, rng: inout RNG) {
        fc1 = Linear(dModel, hidden, rng: &rng)
        fc2 = Linear(hidden, dModel, rng: &rng)
        self.tanhApproximation = tanhApproximation
    }
    public override func children() -> [(String, Any)] { [("fc1", fc1), ("fc2", fc2)] }
    public func forward(_ x: Tensor) -> Tensor {
        let h = fc1(x)
        return fc2(tanhApproximation ? h.geluTanh() : h.gelu())
    }
}
