// Batch-normalisation loops over NCHW planes: per-channel statistics, the affine output and the
// backward, vectorised with SIMD8 partial sums (each plane summed in Float, planes added in
// Double) and threaded over channels.

enum BatchNormKernel {
    @inline(__always) static func load(_ p: UnsafePointer<Float>) -> SIMD8<Float> { UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self) }
    @inline(__always) static func store(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self) }

    /// Σ p[i].
    @inline(__always) static func sum(_ p: UnsafePointer<Float>, _ n: Int) -> Double {
        var a = SIMD8<Float>(), b = SIMD8<Float>(), i = 0
        while i + 16 <= n { a += load(p + i); b += load(p + i + 8); i += 16 }
        if i + 8 <= n { a += load(p + i); i += 8 }
        var t = Double((a + b).sum())
        while i < n { t += Double(p[i]); i += 1 }
        return t
    }
    /// Σ (p[i] − m)².
    @inline(__always) static func squaredDeviation(_ p: UnsafePointer<Float>, _ n: Int, _ m: Float) -> Double {
        var a = SIMD8<Float>(), i = 0
        let mv = SIMD8<Float>(repeating: m)
        while i + 8 <= n { let d = load(p + i) - mv; a.addProduct(d, d); i += 8 }
        var t = Double(a.sum())
        while i < n { let d = p[i] - m; t += Double(d * d); i += 1 }
        return t
    }
    /// (Σ g[i], Σ g[i]·(x[i] − m)).
    @inline(__always) static func gradSums(_ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int, _ m: Float) -> (Double, Double) {
        var a = SIMD8<Float>(), b = SIMD8<Float>(), i = 0
        let mv = SIMD8<Float>(repeating: m)
        while i + 8 <= n { let gv = load(g + i); a += gv; b.addProduct(gv, load(x + i) - mv); i += 8 }
        var s = Double(a.sum()), sx = Double(b.sum())
        while i < n { s += Double(g[i]); sx += Double(g[i] * (x[i] - m)); i += 1 }
        return (s, sx)
    }
    /// dst[i] = a·u[i] + b·v[i] + c (v optional).
    @inline(__always) static func affine(_ dst: UnsafeMutablePointer<Float>, _ u: UnsafePointer<Float>, _ a: Float, _ v: UnsafePointer<Float>?, _ b: Float, _ c: Float, _ n: Int) {
        let av = SIMD8<Float>(repeating: a), bv = SIMD8<Float>(repeating: b), cv = SIMD8<Float>(repeating: c)
        var i = 0
        if let v {
            while i + 8 <= n { var r = cv; r.addProduct(av, load(u + i)); r.addProduct(bv, load(v + i)); store(r, dst + i); i += 8 }
            while i < n { dst[i] = a * u[i] + b * v[i] + c; i += 1 }
        } else {
            while i + 8 <= n { var r = cv; r.addProduct(av, load(u + i)); store(r, dst + i); i += 8 }
            while i < n { dst[i] = a * u[i] + c; i += 1 }
        }
    }

    /// Runs `body(ch)` for every channel, threaded when the tensor is large enough to pay for it.
    static func forChannels(_ c: Int, elements: Int, _ body: @Sendable (Int) -> Void) {
        if elements < 32_768 || Kernels.threads <= 1 { for ch in 0..<c { body(ch) }; return }
        let parts = Swift.min(c, Kernels.threads)
        Kernels.parallel(parts) { t in
            for ch in stride(from: t, to: c, by: parts) { body(ch) }
        }
    }

    /// Per-channel batch mean and (biased) variance of x [n, c, hw].
    static func statistics(_ x: UnsafePointer<Float>, n: Int, c: Int, hw: Int, mean: UnsafeMutablePointer<Float>, variance: UnsafeMutablePointer<Float>) {
        let xa = Int(bitPattern: x), ma = Int(bitPattern: mean), va = Int(bitPattern: variance)
        // Addresses as integers: each channel task reads x and writes only its own mean/variance entry.
        forChannels(c, elements: n * c * hw) { ch in
            let x = UnsafePointer<Float>(bitPattern: xa)!, mean = UnsafeMutablePointer<Float>(bitPattern: ma)!, variance = UnsafeMutablePointer<Float>(bitPattern: va)!
            var s = 0.0
            for b in 0..<n { s += sum(x + (b * c + ch) * hw, hw) }
            let m = Float(s / Double(n * hw))
            var v = 0.0
            for b in 0..<n { v += squaredDeviation(x + (b * c + ch) * hw, hw, m) }
            mean[ch] = m; variance[ch] = Float(v / Double(n * hw))
        }
    }

    /// y = x·scale[ch] + shift[ch].
    static func scaleShift(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, n: Int, c: Int, hw: Int, scale: UnsafePointer<Float>, shift: UnsafePointer<Float>) {
        let xa = Int(bitPattern: x), ya = Int(bitPattern: y), sa = Int(bitPattern: scale), ha = Int(bitPattern: shift)
        forChannels(c, elements: n * c * hw) { ch in
            let x = UnsafePointer<Float>(bitPattern: xa)!, y = UnsafeMutablePointer<Float>(bitPattern: ya)!
            let sc = UnsafePointer<Float>(bitPattern: sa)![ch], sh = UnsafePointer<Float>(bitPattern: ha)![ch]
            for b in 0..<n { let o = (b * c + ch) * hw; affine(y + o, x + o, sc, nil, 0, sh, hw) }
        }
    }

    /// Backward of y = (x − μ)·invStd·γ + β. Writes dβ = Σg, dγ = Σg·x̂ and, when `gradInput` is
    /// given, dx = γ·invStd/m·(m·g − dβ − x̂·dγ) in training (batch statistics) or γ·invStd·g.
    static func backward(_ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, n: Int, c: Int, hw: Int, mean: UnsafePointer<Float>, invStd: UnsafePointer<Float>,
                         gamma: UnsafePointer<Float>?, training: Bool, dGamma: UnsafeMutablePointer<Float>, dBeta: UnsafeMutablePointer<Float>, gradInput: UnsafeMutablePointer<Float>?) {
        let ga = Int(bitPattern: g), xa = Int(bitPattern: x), ma = Int(bitPattern: mean), ia = Int(bitPattern: invStd), gma = Int(bitPattern: gamma)
        let dga = Int(bitPattern: dGamma), dba = Int(bitPattern: dBeta), gia = Int(bitPattern: gradInput)
        forChannels(c, elements: n * c * hw) { ch in
            let g = UnsafePointer<Float>(bitPattern: ga)!, x = UnsafePointer<Float>(bitPattern: xa)!
            let mu = UnsafePointer<Float>(bitPattern: ma)![ch], inv = UnsafePointer<Float>(bitPattern: ia)![ch]
            let gm = UnsafePointer<Float>(bitPattern: gma)?[ch] ?? 1
            var sg = 0.0, sgx = 0.0
            for b in 0..<n { let o = (b * c + ch) * hw; let (s, sx) = gradSums(g + o, x + o, hw, mu); sg += s; sgx += sx }
            let db = Float(sg), dgm = Float(sgx) * inv
            UnsafeMutablePointer<Float>(bitPattern: dba)![ch] = db
            UnsafeMutablePointer<Float>(bitPattern: dga)![ch] = dgm
            guard let dx = UnsafeMutablePointer<Float>(bitPattern: gia) else { return }
            let m = Float(n * hw)
            if training {
                // dx = k·m·g − k·invStd·dγ·(x − μ) − k·dβ with k = γ·invStd/m.
                let k = gm * inv / m
                let a = k * m, bx = -k * inv * dgm, cc = -k * db + k * inv * dgm * mu
                for b in 0..<n { let o = (b * c + ch) * hw; affine(dx + o, g + o, a, x + o, bx, cc, hw) }
            } else {
                for b in 0..<n { let o = (b * c + ch) * hw; affine(dx + o, g + o, gm * inv, nil, 0, 0, hw) }
            }
        }
    }
}
