import Testing
@testable import FrugalCore

/// The fused transformer ops equal the same computation composed from elementwise ops, forward
/// and backward, and pass finite differences.
@Suite struct TransformerOpsTests {
    func composedLayerNorm(_ x: Tensor, _ w: Tensor, _ b: Tensor, eps: Float) -> Tensor {
        let mu = x.mean(axis: -1, keepDims: true)
        let xc = x - mu
        let v = (xc * xc).mean(axis: -1, keepDims: true)
        return xc / (v + eps).sqrt() * w + b
    }

    func maxDiff(_ a: Tensor, _ b: Tensor) -> Float { zip(a.array, b.array).reduce(0) { max($0, abs($1.0 - $1.1)) } }

    @Test func layerNormMatchesComposed() {
        let x = rand([3, 5, 8], seed: 1), w = rand([8], seed: 2), b = rand([8], seed: 3)
        let g = rand([3, 5, 8], seed: 4)
        for t in [x, w, b] { t.requiresGrad = true }
        let fused = x.layerNorm(weight: w, bias: b, eps: 1e-5)
        (fused * g).sum().backward()
        let (gx, gw, gb) = (x.grad!, w.grad!, b.grad!)
        for t in [x, w, b] { t.grad = nil }
        let ref = composedLayerNorm(x, w, b, eps: 1e-5)
        (ref * g).sum().backward()
        #expect(maxDiff(fused, ref) < 1e-5)
        #expect(maxDiff(gx, x.grad!) < 1e-4)
        #expect(maxDiff(gw, w.grad!) < 1e-4)
        #expect(maxDiff(gb, b.grad!) < 1e-4)
        gradCheck("layerNorm", [rand([4, 6], seed: 5), rand([6], seed: 6), rand([6], seed: 7)]) { $0[0].layerNorm(weight: $0[1], bias: $0[2], eps: 1e-5) }
    }

    @Test func fusedGELUMatchesErfGELU() {
        let x = Tensor((0..<101).map { Float($0 - 50) * 0.17 } + [0, -0.0001, 12, -12], shape: [105])
        x.requiresGrad = true
        let y = x.geluFused()
        y.sum().backward()
        let g = x.grad!
        x.grad = nil
        let ref = x.gelu()
        ref.sum().backward()
        #expect(maxDiff(y, ref) < 1e-6)
        #expect(maxDiff(g, x.grad!) < 1e-6)
        gradCheck("geluFused", [rand([3, 7], seed: 30, lo: -3, hi: 3)]) { $0[0].geluFused() }
    }

    /// softmax(QKᵀ/√d + bias, causal) V with explicit head transposes.
    func composedAttention(_ q: Tensor, _ k: Tensor, _ v: Tensor, heads: Int, kvHeads: Int, bias: Tensor?, causal: Bool) -> Tensor {
        let b = q.shape[0], t = q.shape[1], s = k.shape[1], d = q.shape[2] / heads
        let qh = q.reshaped([b, t, heads, d]).permuted(0, 2, 1, 3)
        var kh = k.reshaped([b, s, kvHeads, d]).permuted(0, 2, 1, 3)
        var vh = v.reshaped([b, s, kvHeads, d]).permuted(0, 2, 1, 3)
        if kvHeads != heads {
            let rep = heads / kvHeads
            kh = kh.unsqueezed(2).expanded(to: [b, kvHeads, rep, s, d]).reshaped([b, heads, s, d])
            vh = vh.unsqueezed(2).expanded(to: [b, kvHeads, rep, s, d]).reshaped([b, heads, s, d])
        }
        var sc = qh.matmul(kh.transposed()) * (1 / Float(d).squareRoot())
        if let bias { sc = sc + bias.reshaped([b, 1, 1, s]) }
        if causal {
            let m = Tensor(zeros: [t, s])
            for i in 0..<t { for j in 0..<s where j > i + s - t { m.pointer[i * s + j] = 1 } }
            sc = sc.maskedFill(m, -.infinity)
        }
        return sc.softmax(axis: -1).matmul(vh).permuted(0, 2, 1, 3).reshaped([b, t, heads * d])
    }

    @Test(arguments: [(4, 4, false), (4, 2, true), (6, 3, false), (2, 1, true)])
    func attentionMatchesComposed(heads: Int, kvHeads: Int, causal: Bool) {
        let b = 2, t = 5, s = causal ? 7 : 5, d = 4
        let q = rand([b, t, heads * d], seed: 10), k = rand([b, s, kvHeads * d], seed: 11), v = rand([b, s, kvHeads * d], seed: 12)
        let bias = Tensor((0..<(b * s)).map { $0 == s - 1 ? -1e30 : 0 }, shape: [b, s])
        let g = rand([b, t, heads * d], seed: 13)
        for x in [q, k, v] { x.requiresGrad = true }
        let fused = Tensor.multiHeadAttention(q: q, k: k, v: v, heads: heads, kvHeads: kvHeads, maskBias: bias, causal: causal)
        (fused * g).sum().backward()
        let grads = [q.grad!, k.grad!, v.grad!]
        for x in [q, k, v] { x.grad = nil }
        let ref = composedAttention(q, k, v, heads: heads, kvHeads: kvHeads, bias: bias, causal: causal)
        (ref * g).sum().backward()
        #expect(maxDiff(fused, ref) < 1e-5)
        for (a, x) in zip(grads, [q, k, v]) { #expect(maxDiff(a, x.grad!) < 1e-4) }
    }

    @Test func attentionFiniteDifferences() {
        gradCheck("attention", [rand([1, 3, 8], seed: 20), rand([1, 4, 4], seed: 21), rand([1, 4, 4], seed: 22)]) {
            Tensor.multiHeadAttention(q: $0[0], k: $0[1], v: $0[2], heads: 2, kvHeads: 1, causal: true)
        }
    }

    /// The fused LoRA linear equals x·Wᵀ + b + s·(x·Aᵀ)·Bᵀ composed from `linear`, forward and
    /// backward, with every input trainable or only the adapters and x (frozen base), on shapes
    /// that take the GEMM's small, skinny and packed paths.
    @Test(arguments: [([2, 3, 6], 5, 2), ([1, 7], 9, 3), ([4, 50, 40], 36, 8)])
    func loraLinearMatchesComposed(xShape: [Int], outF: Int, r: Int) {
        let inF = xShape.last!
        let s: Float = 1.75
        for frozenBase in [false, true] {
            let x = rand(xShape, seed: 40), w = rand([outF, inF], seed: 41), b = rand([outF], seed: 42)
            let a = rand([r, inF], seed: 43), bb = rand([outF, r], seed: 44)
            let g = rand(xShape.dropLast() + [outF], seed: 45)
            let params = frozenBase ? [x, a, bb] : [x, w, b, a, bb]
            for t in params { t.requiresGrad = true }
            let fused = x.loraLinear(weight: w, bias: b, loraA: a, loraB: bb, scaling: s)
            (fused * g).sum().backward()
            let grads = params.map { $0.grad! }
            for t in params { t.grad = nil }
            let ref = x.linear(weight: w, bias: b) + x.linear(weight: a).linear(weight: bb) * s
            (ref * g).sum().backward()
            #expect(maxDiff(fused, ref) < 1e-4)
            for (k, t) in params.enumerated() { #expect(maxDiff(grads[k], t.grad!) < 1e-3, "input \(k), frozen base \(frozenBase)") }
            if frozenBase { #expect(w.grad == nil && b.grad == nil) }
        }
        gradCheck("loraLinear", [rand([3, 4], seed: 46), rand([5, 4], seed: 47), rand([5], seed: 48), rand([2, 4], seed: 49), rand([5, 2], seed: 50)]) {
            $0[0].loraLinear(weight: $0[1], bias: $0[2], loraA: $0[3], loraB: $0[4], scaling: 0.5)
        }
    }
}
