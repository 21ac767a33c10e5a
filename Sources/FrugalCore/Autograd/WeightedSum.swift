// Σ_k w_k · x_k over same-shaped tensors with a weight vector: the DARTS mixed operation's
// combination step, fused so that it reads each input once and allocates one output.

extension Tensor {
    /// y = Σ_k weights[k] · xs[k] for tensors `xs` of one shape and `weights` of shape [xs.count].
    /// Gradients: ∂y/∂x_k = w_k, ∂L/∂w_k = ⟨∂L/∂y, x_k⟩.
    public static func weightedSum(_ xs: [Tensor], weights: Tensor) -> Tensor {
        precondition(!xs.isEmpty, "weightedSum of no tensors")
        precondition(weights.shape == [xs.count], "weightedSum: weights \(weights.shape) for \(xs.count) tensors")
        let shape = xs[0].shape
        for x in xs { precondition(x.shape == shape, "weightedSum: shapes \(xs.map(\.shape)) differ") }
        let cs = xs.map { $0.contiguousF32() }
        let w = weights.array
        let n = Tensor.product(shape)
        let out = Tensor(zeros: shape, zeroed: false)
        let po = out.pointer
        do {
            let p0 = cs[0].pointer, w0 = w[0]
            for i in 0..<n { po[i] = w0 * p0[i] }
        }
        for k in 1..<cs.count {
            let pk = cs[k].pointer, wk = w[k]
            for i in 0..<n { po[i] += wk * pk[i] }
        }
        let kept = cs.map { $0.detach() }
        let needW = weights.requiresGrad
        let needX = xs.map(\.requiresGrad)
        return out.recorded("weightedSum", xs + [weights]) { g in
            let gc = g.contiguousF32()
            let pg = gc.pointer
            var r: [Tensor?] = []
            for k in 0..<kept.count {
                guard needX[k] else { r.append(nil); continue }
                let t = Tensor(zeros: shape, zeroed: false)
                let pt = t.pointer, wk = w[k]
                for i in 0..<n { pt[i] = wk * pg[i] }
                r.append(t)
            }
            if needW {
                var gw = [Float](repeating: 0, count: kept.count)
                for k in 0..<kept.count {
                    let pk = kept[k].pointer
                    var acc = SIMD8<Float>(), tail: Float = 0
                    var i = 0
                    while i + 8 <= n {
                        acc.addProduct(UnsafeRawPointer(pg + i).loadUnaligned(as: SIMD8<Float>.self), UnsafeRawPointer(pk + i).loadUnaligned(as: SIMD8<Float>.self))
                        i += 8
                    }
                    while i < n { tail += pg[i] * pk[i]; i += 1 }
                    gw[k] = acc.sum() + tail
                }
                r.append(Tensor(gw))
            } else {
                r.append(nil)
            }
            return r
        }
    }
}
