// Fused transformer ops with hand-written backward rules: layer normalisation and multi-head
// scaled dot-product attention. Composed from elementwise ops they allocate a dozen full-size
// temporaries each; fused they make one output (plus, for attention, the probabilities kept for
// backward) and run on the kernel threads.

/// Raw addresses for `Kernels.parallel`. Safe: the caller waits for `parallel` to return before
/// the memory can go away, and iterations write disjoint ranges (see each use).
struct AddressBox: @unchecked Sendable {
    let p: [Int]
    init(_ ptrs: [UnsafeRawPointer?]) { p = ptrs.map { $0.map { Int(bitPattern: $0) } ?? 0 } }
    func f(_ i: Int) -> UnsafeMutablePointer<Float> { UnsafeMutablePointer<Float>(bitPattern: p[i])! }
    func has(_ i: Int) -> Bool { p[i] != 0 }
}

extension Tensor {
    /// Layer normalisation over the last axis: (x - mean) / sqrt(var + eps) · weight + bias
    /// (population variance), fused. weight and bias: [D] or nil.
    public func layerNorm(weight: Tensor?, bias: Tensor?, eps: Float) -> Tensor {
        let d = shape[rank - 1]
        let n = count / Swift.max(d, 1)
        if let weight { precondition(weight.shape == [d], "layerNorm: weight \(weight.shape) for width \(d)") }
        if let bias { precondition(bias.shape == [d], "layerNorm: bias \(bias.shape) for width \(d)") }
        let x = contiguousF32()
        let wc = weight?.contiguousF32(), bc = bias?.contiguousF32()
        let out = Tensor(zeros: shape, zeroed: false)
        var stats = [Float](repeating: 0, count: 2 * n)     // mean, rstd per row
        stats.withUnsafeMutableBufferPointer { st in
            let box = AddressBox([UnsafeRawPointer(x.pointer), UnsafeRawPointer(out.pointer), wc.map { UnsafeRawPointer($0.pointer) },
                                  bc.map { UnsafeRawPointer($0.pointer) }, UnsafeRawPointer(st.baseAddress!)])
            let chunks = Swift.min(n, 4 * Kernels.threads)
            Kernels.parallel(chunks) { c in   // rows c*n/chunks ..< (c+1)*n/chunks: disjoint outputs
                let px = box.f(0), po = box.f(1), ps = box.f(4)
                for r in (c * n / chunks)..<((c + 1) * n / chunks) {
                    let xr = px + r * d, yr = po + r * d
                    let mean = VectorOps.sum(xr, count: d) / Float(d)
                    for i in 0..<d { yr[i] = xr[i] - mean }
                    let rstd = 1 / (VectorOps.dot(yr, yr, count: d) / Float(d) + eps).squareRoot()
                    ps[2 * r] = mean; ps[2 * r + 1] = rstd
                    if box.has(2) {
                        let w = box.f(2)
                        if box.has(3) { let b = box.f(3); for i in 0..<d { yr[i] = yr[i] * rstd * w[i] + b[i] } }
                        else { for i in 0..<d { yr[i] = yr[i] * rstd * w[i] } }
                    } else {
                        for i in 0..<d { yr[i] *= rstd }
                    }
                }
            }
        }
        var inputs = [self]
        if let weight { inputs.append(weight) }
        if let bias { inputs.append(bias) }
        let xs = x.detach(), inShape = shape
        return out.recorded("layerNorm", inputs) { g in
            let gc = g.contiguousF32()
            let needW = weight?.requiresGrad ?? false, needB = bias?.requiresGrad ?? false
            let dx = Tensor(zeros: inShape, zeroed: false)
            let chunks = Swift.min(n, 4 * Kernels.threads)
            // Per-chunk partial sums of dweight and dbias (rows 0..<chunks), reduced below.
            let partial = Tensor(zeros: [2 * chunks, d])
            stats.withUnsafeBufferPointer { st in
                let box = AddressBox([UnsafeRawPointer(xs.pointer), UnsafeRawPointer(gc.pointer), wc.map { UnsafeRawPointer($0.pointer) },
                                      UnsafeRawPointer(dx.pointer), UnsafeRawPointer(st.baseAddress!), UnsafeRawPointer(partial.pointer)])
                Kernels.parallel(chunks) { c in   // rows of chunk c; partial rows 2c, 2c+1
                    let px = box.f(0), pg = box.f(1), pdx = box.f(3), ps = box.f(4)
                    let dw = box.f(5) + 2 * c * d, db = dw + d
                    let xhat = UnsafeMutablePointer<Float>.allocate(capacity: 2 * d)
                    defer { xhat.deallocate() }
                    let gw = xhat + d
                    for r in (c * n / chunks)..<((c + 1) * n / chunks) {
                        let xr = px + r * d, gr = pg + r * d, dr = pdx + r * d
                        let mean = ps[2 * r], rstd = ps[2 * r + 1]
                        for i in 0..<d { xhat[i] = (xr[i] - mean) * rstd }
                        if box.has(2) { let w = box.f(2); for i in 0..<d { gw[i] = gr[i] * w[i] } }
                        else { gw.update(from: gr, count: d) }
                        let mg = VectorOps.sum(gw, count: d) / Float(d)
                        let mgx = VectorOps.dot(gw, xhat, count: d) / Float(d)
                        for i in 0..<d { dr[i] = rstd * (gw[i] - mg - xhat[i] * mgx) }
                        if needW { for i in 0..<d { dw[i] += gr[i] * xhat[i] } }
                        if needB { for i in 0..<d { db[i] += gr[i] } }
                    }
                }
            }
            var r: [Tensor?] = [self.requiresGrad ? dx : nil]
            if weight != nil || bias != nil {
                let pp = partial.pointer
                func reduce(_ off: Int) -> Tensor {
                    let t = Tensor(zeros: [d])
                    for c in 0..<chunks { VectorOps.axpy(1, pp + (2 * c + off) * d, t.pointer, count: d) }
                    return t
                }
                if weight != nil { r.append(needW ? reduce(0) : nil) }
                if bias != nil { r.append(needB ? reduce(1) : nil) }
            }
            return r
        }
    }

    /// GELU, erf form (BERT's), fused and vectorised: y = x·Φ(x), Φ(x) = (1 + erf(x/√2)) / 2.
    /// erf comes from Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7) sharing e^(-x²/2) with the
    /// derivative Φ(x) + x·φ(x), which the forward pass stores for backward (instead of x).
    public func geluFused() -> Tensor {
        let x = contiguousF32()
        let n = count
        let out = Tensor(zeros: shape, zeroed: false)
        let track = GradMode.isEnabled && requiresGrad
        let deriv: Tensor? = track ? Tensor(zeros: shape, zeroed: false) : nil
        let box = AddressBox([UnsafeRawPointer(x.pointer), UnsafeRawPointer(out.pointer), deriv.map { UnsafeRawPointer($0.pointer) }])
        let chunk = 8 * 4096
        Kernels.parallel((n + chunk - 1) / chunk) { c in   // elements [c*chunk, (c+1)*chunk): disjoint
            typealias V = SIMD8<Float>
            let px = box.f(0), py = box.f(1), hasD = box.has(2)
            let pd = hasD ? box.f(2) : py
            let lo = c * chunk, hi = Swift.min(n, lo + chunk)
            var i = lo
            @inline(__always) func eval(_ v: V) -> (V, V) {
                let ax = v.replacing(with: -v, where: v .< 0)
                let e = VectorOps.exp(V(repeating: -0.5) * v * v)
                let t = 1 / (V(repeating: 1) + V(repeating: 0.3275911 * 0.7071067811865476) * ax)
                var poly = V(repeating: 1.061405429)
                poly = V(repeating: -1.453152027).addingProduct(poly, t)
                poly = V(repeating: 1.421413741).addingProduct(poly, t)
                poly = V(repeating: -0.284496736).addingProduct(poly, t)
                poly = V(repeating: 0.254829592).addingProduct(poly, t)
                let erfAbs = V(repeating: 1) - poly * t * e
                let erf = erfAbs.replacing(with: -erfAbs, where: v .< 0)
                let phi = V(repeating: 0.5) * (V(repeating: 1) + erf)
                return (v * phi, phi + v * e * V(repeating: 0.3989422804014327))
            }
            while i + 8 <= hi {
                let (y, d) = eval(UnsafeRawPointer(px + i).loadUnaligned(as: V.self))
                UnsafeMutableRawPointer(py + i).storeBytes(of: y, as: V.self)
                if hasD { UnsafeMutableRawPointer(pd + i).storeBytes(of: d, as: V.self) }
                i += 8
            }
            if i < hi {
                var v = V()
                for j in 0..<(hi - i) { v[j] = px[i + j] }
                let (y, d) = eval(v)
                for j in 0..<(hi - i) { py[i + j] = y[j]; if hasD { pd[i + j] = d[j] } }
            }
        }
        guard let deriv else { return out }
        return out.recorded("gelu", [self]) { g in [g.binaryRaw(deriv, MulOp.self)] }
    }

    /// Multi-head scaled dot-product attention, fused: softmax(Q Kᵀ/√d + bias [+ causal mask]) V,
    /// with no head transposes (Q, K, V stay in the [B, T, heads·d] layout the projections produce).
    ///
    /// - Parameters:
    ///   - q: [B, T, heads·d]; k, v: [B, S, kvHeads·d] (grouped-query when kvHeads < heads; query
    ///     head h reads KV head h / (heads / kvHeads)).
    ///   - maskBias: [B, S] added to every query's scores (0 for real keys, a large negative
    ///     number for padding), or nil.
    ///   - causal: query t sees keys 0...t + (S - T).
    /// - Returns: [B, T, heads·d]. The softmax probabilities [B, heads, T, S] are kept for backward.
    public static func multiHeadAttention(q: Tensor, k: Tensor, v: Tensor, heads: Int, kvHeads: Int,
                                          maskBias: Tensor? = nil, causal: Bool = false) -> Tensor {
        precondition(q.rank == 3 && k.rank == 3 && v.shape == k.shape, "attention: q \(q.shape), k \(k.shape), v \(v.shape)")
        let b = q.shape[0], t = q.shape[1], s = k.shape[1]
        let d = q.shape[2] / heads
        precondition(heads % kvHeads == 0 && q.shape[2] == heads * d && k.shape == [b, s, kvHeads * d],
                     "attention: q \(q.shape), k \(k.shape) do not split into \(heads)/\(kvHeads) heads")
        if let maskBias { precondition(maskBias.shape == [b, s], "attention: mask bias \(maskBias.shape) != [\(b), \(s)]") }
        let qc = q.contiguousF32(), kc = k.contiguousF32(), vc = v.contiguousF32()
        let mb = maskBias?.contiguousF32()
        let out = Tensor(zeros: [b, t, heads * d], zeroed: false)
        let probs = Tensor(zeros: [b, heads, t, s], zeroed: false)
        let scale = 1 / Float(d).squareRoot()
        let ldq = heads * d, ldk = kvHeads * d, rep = heads / kvHeads
        let box = AddressBox([UnsafeRawPointer(qc.pointer), UnsafeRawPointer(kc.pointer), UnsafeRawPointer(vc.pointer),
                              UnsafeRawPointer(out.pointer), UnsafeRawPointer(probs.pointer), mb.map { UnsafeRawPointer($0.pointer) }])
        Kernels.parallel(b * heads) { u in   // unit (batch, head): writes its probs block and its output columns
            let bi = u / heads, h = u % heads, kh = h / rep
            let qp = box.f(0) + bi * t * ldq + h * d
            let kp = box.f(1) + bi * s * ldk + kh * d, vp = box.f(2) + bi * s * ldk + kh * d
            let pp = box.f(4) + u * t * s
            GEMM.sgemm(transA: false, transB: true, m: t, n: s, k: d, alpha: scale, a: qp, lda: ldq, b: kp, ldb: ldk,
                       beta: 0, c: pp, ldc: s, threads: 1)
            if box.has(5) {
                let bias = box.f(5) + bi * s
                for i in 0..<t { VectorOps.axpy(1, bias, pp + i * s, count: s) }
            }
            if causal {
                let off = s - t
                for i in 0..<t where i + off + 1 < s { (pp + i * s + i + off + 1).update(repeating: -.infinity, count: s - i - off - 1) }
            }
            VectorOps.softmaxRows(pp, ldx: s, into: pp, ldy: s, rows: t, cols: s)
            GEMM.sgemm(transA: false, transB: false, m: t, n: d, k: s, alpha: 1, a: pp, lda: s, b: vp, ldb: ldk,
                       beta: 0, c: box.f(3) + bi * t * ldq + h * d, ldc: ldq, threads: 1)
        }
        let qs = qc.detach(), ks = kc.detach(), vs = vc.detach()
        return out.recorded("multiHeadAttention", [q, k, v]) { g in
            let gc = g.contiguousF32()
            let dq = Tensor(zeros: q.shape, zeroed: false)
            let dk = Tensor(zeros: k.shape), dv = Tensor(zeros: k.shape)
            let box = AddressBox([UnsafeRawPointer(qs.pointer), UnsafeRawPointer(ks.pointer), UnsafeRawPointer(vs.pointer),
                                  UnsafeRawPointer(gc.pointer), UnsafeRawPointer(probs.pointer), UnsafeRawPointer(dq.pointer),
                                  UnsafeRawPointer(dk.pointer), UnsafeRawPointer(dv.pointer)])
            Kernels.parallel(b * kvHeads) { u in   // unit (batch, KV head): its query heads' dq columns, its dk/dv columns
                let bi = u / kvHeads, kh = u % kvHeads
                let kp = box.f(1) + bi * s * ldk + kh * d, vp = box.f(2) + bi * s * ldk + kh * d
                let dkp = box.f(6) + bi * s * ldk + kh * d, dvp = box.f(7) + bi * s * ldk + kh * d
                let dp = UnsafeMutablePointer<Float>.allocate(capacity: t * s)
                defer { dp.deallocate() }
                for h in (kh * rep)..<((kh + 1) * rep) {
                    let qp = box.f(0) + bi * t * ldq + h * d, gp = box.f(3) + bi * t * ldq + h * d
                    let pp = box.f(4) + (bi * heads + h) * t * s
                    // dV += Pᵀ dO; dP = dO Vᵀ
                    GEMM.sgemm(transA: true, transB: false, m: s, n: d, k: t, alpha: 1, a: pp, lda: s, b: gp, ldb: ldq,
                               beta: 1, c: dvp, ldc: ldk, threads: 1)
                    GEMM.sgemm(transA: false, transB: true, m: t, n: s, k: d, alpha: 1, a: gp, lda: ldq, b: vp, ldb: ldk,
                               beta: 0, c: dp, ldc: s, threads: 1)
                    // dS = P ⊙ (dP - rowsum(P ⊙ dP))
                    for i in 0..<t {
                        let pr = pp + i * s, dr = dp + i * s
                        let dot = VectorOps.dot(pr, dr, count: s)
                        for j in 0..<s { dr[j] = pr[j] * (dr[j] - dot) }
                    }
                    // dQ = scale · dS K; dK += scale · dSᵀ Q
                    GEMM.sgemm(transA: false, transB: false, m: t, n: d, k: s, alpha: scale, a: dp, lda: s, b: kp, ldb: ldk,
                               beta: 0, c: box.f(5) + bi * t * ldq + h * d, ldc: ldq, threads: 1)
                    GEMM.sgemm(transA: true, transB: false, m: s, n: d, k: t, alpha: scale, a: dp, lda: s, b: qp, ldb: ldq,
                               beta: 1, c: dkp, ldc: ldk, threads: 1)
                }
            }
            return [q.requiresGrad ? dq : nil, k.requiresGrad ? dk : nil, v.requiresGrad ? dv : nil]
        }
    }
}
