
/// Matrix-vector products for weights stored `[out, in]` (one row per output), the layout of
/// Linear and expert weights. Batch-1 inference is memory-bound, so each row is one streamed dot
/// product; f16 and bf16 weights are widened to float32 in registers, never copied.
public enum GEMV {
    typealias V = SIMD8<Float>

    /// Rows x columns below which one thread runs.
    static let parallelWork = 1 << 16

    /// y[o] = sum_i W[o, i] * x[i] (+ bias[o]) (+ y[o] if `accumulate`), for o in 0..<out.
    ///
    /// - Parameters:
    ///   - out: rows of W (length of y).
    ///   - in: columns of W (length of x); rows are contiguous, `in` elements apart.
    ///   - w: the weights, `out * in` elements of `dtype` (any alignment).
    ///   - dtype: `.float32`, `.float16` (IEEE half) or `.bfloat16`.
    ///   - x: `in` floats. - bias: nil or `out` floats. - y: `out` floats, written.
    ///   - accumulate: add to the existing y instead of overwriting it.
    ///   - threads: worker threads for large W (rows are split between them).
    public static func gemv(out: Int, in n: Int, w: UnsafeRawPointer, dtype: DType, x: UnsafePointer<Float>,
                            bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>, accumulate: Bool = false,
                            threads: Int = Kernels.threads) {
        gemv(out: out, in: n, w: w, dtype: dtype, x: x, bias: bias, y: y, accumulate: accumulate,
             threads: threads, backend: Kernels.backend)
    }

    /// `gemv` with an explicit backend; OpenBLAS `sgemv` is used only for float32 weights.
    public static func gemv(out: Int, in n: Int, w: UnsafeRawPointer, dtype: DType, x: UnsafePointer<Float>,
                            bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>, accumulate: Bool,
                            threads: Int, backend: Backend) {
        precondition(out >= 0 && n >= 0, "gemv: negative size out=\(out) in=\(n)")
        if out == 0 { return }
        if dtype == .float32, n > 0, Kernels.resolve(backend) == .openblas {
            var beta: Float = accumulate ? 1 : 0
            if let bias {
                if accumulate { VectorOps.add(y, bias, into: y, count: out) } else { y.update(from: bias, count: out) }
                beta = 1
            }
            if OpenBLAS.sgemv(m: out, n: n, alpha: 1, a: w.assumingMemoryBound(to: Float.self), lda: n,
                              x: x, beta: beta, y: y, threads: threads) {
                return
            }
            // Not reached in practice (sizes beyond 32 bits); undo the bias and run in Swift.
            if let bias { VectorOps.sub(y, bias, into: y, count: out) }
        }
        let t = max(1, min(threads, out / 8, out * n / parallelWork))
        if t == 1 {
            rows(0, out, n: n, w: w, dtype: dtype, x: x, bias: bias, y: y, accumulate: accumulate)
            return
        }
        let ptrs = UnsafeSendablePointers(a: w, b: UnsafeRawPointer(x), c: UnsafeMutableRawPointer(y),
                                          d: bias.map { UnsafeRawPointer($0) })
        Kernels.parallel(t) { i in
            // Row ranges on multiples of 4 so that each thread runs the 4-row kernel.
            let r0 = (out * i / t) & ~3, r1 = i == t - 1 ? out : (out * (i + 1) / t) & ~3
            rows(r0, r1, n: n, w: ptrs.a, dtype: dtype, x: ptrs.b!.assumingMemoryBound(to: Float.self),
                 bias: ptrs.d?.assumingMemoryBound(to: Float.self),
                 y: ptrs.c.assumingMemoryBound(to: Float.self), accumulate: accumulate)
        }
    }

    /// Rows r0..<r1 on the calling thread.
    static func rows(_ r0: Int, _ r1: Int, n: Int, w: UnsafeRawPointer, dtype: DType, x: UnsafePointer<Float>,
                     bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>, accumulate: Bool) {
        switch dtype {
        case .float32: rows(r0, r1, n: n, w: w, elem: 4, x: x, bias: bias, y: y, accumulate: accumulate, load: loadF32)
        case .float16: rows(r0, r1, n: n, w: w, elem: 2, x: x, bias: bias, y: y, accumulate: accumulate, load: loadF16)
        case .bfloat16: rows(r0, r1, n: n, w: w, elem: 2, x: x, bias: bias, y: y, accumulate: accumulate, load: loadBF16)
        }
    }

    /// Loads 8 float32 weights.
    @inline(__always) static func loadF32(_ p: UnsafeRawPointer) -> V {
        p.loadUnaligned(as: V.self)
    }

    /// Loads 8 IEEE halves and widens them (one `vcvtph2ps` with F16C).
    @inline(__always) static func loadF16(_ p: UnsafeRawPointer) -> V {
        V(p.loadUnaligned(as: SIMD8<Float16>.self))
    }

    /// Loads 8 bfloat16 values: each is the upper half of a float32.
    @inline(__always) static func loadBF16(_ p: UnsafeRawPointer) -> V {
        let h = p.loadUnaligned(as: SIMD8<UInt16>.self)
        return unsafeBitCast(SIMD8<UInt32>(truncatingIfNeeded: h) &<< 16, to: V.self)
    }

    @inline(__always) static func scalar(_ w: UnsafeRawPointer, _ i: Int, _ elem: Int, _ load: (UnsafeRawPointer) -> V) -> Float {
        // Scalar tail via the same conversion: widen one element.
        switch elem {
        case 4: return w.loadUnaligned(fromByteOffset: 4 * i, as: Float.self)
        default:
            var tmp = SIMD8<UInt16>()
            tmp[0] = w.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)
            return withUnsafeBytes(of: &tmp) { load($0.baseAddress!)[0] }
        }
    }

    /// Four rows at a time (each x vector load serves four rows), two accumulators per row.
    @inline(__always)
    static func rows(_ r0: Int, _ r1: Int, n: Int, w: UnsafeRawPointer, elem: Int, x: UnsafePointer<Float>,
                     bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>, accumulate: Bool,
                     load: (UnsafeRawPointer) -> V) {
        let rowBytes = n * elem
        let xr = UnsafeRawPointer(x)
        let n16 = n & ~15
        var r = r0
        while r + 4 <= r1 {
            let w0 = w + r * rowBytes, w1 = w0 + rowBytes, w2 = w1 + rowBytes, w3 = w2 + rowBytes
            var a0 = V(), b0 = V(), a1 = V(), b1 = V(), a2 = V(), b2 = V(), a3 = V(), b3 = V()
            var i = 0
            while i < n16 {
                let xa = xr.loadUnaligned(fromByteOffset: 4 * i, as: V.self)
                let xb = xr.loadUnaligned(fromByteOffset: 4 * i + 32, as: V.self)
                let o = i * elem, o8 = o + 8 * elem
                a0.addProduct(load(w0 + o), xa); b0.addProduct(load(w0 + o8), xb)
                a1.addProduct(load(w1 + o), xa); b1.addProduct(load(w1 + o8), xb)
                a2.addProduct(load(w2 + o), xa); b2.addProduct(load(w2 + o8), xb)
                a3.addProduct(load(w3 + o), xa); b3.addProduct(load(w3 + o8), xb)
                i += 16
            }
            var s0 = (a0 + b0).sum(), s1 = (a1 + b1).sum(), s2 = (a2 + b2).sum(), s3 = (a3 + b3).sum()
            while i < n {
                let xi = x[i]
                s0 += scalar(w0, i, elem, load) * xi
                s1 += scalar(w1, i, elem, load) * xi
                s2 += scalar(w2, i, elem, load) * xi
                s3 += scalar(w3, i, elem, load) * xi
                i += 1
            }
            finish(r, s0, bias, y, accumulate); finish(r + 1, s1, bias, y, accumulate)
            finish(r + 2, s2, bias, y, accumulate); finish(r + 3, s3, bias, y, accumulate)
            r += 4
        }
        while r < r1 {
            let w0 = w + r * rowBytes
            var a0 = V(), b0 = V()
            var i = 0
            while i < n16 {
                let o = i * elem
                a0.addProduct(load(w0 + o), xr.loadUnaligned(fromByteOffset: 4 * i, as: V.self))
                b0.addProduct(load(w0 + o + 8 * elem), xr.loadUnaligned(fromByteOffset: 4 * i + 32, as: V.self))
                i += 16
            }
            var s0 = (a0 + b0).sum()
            while i < n { s0 += scalar(w0, i, elem, load) * x[i]; i += 1 }
            finish(r, s0, bias, y, accumulate)
            r += 1
        }
    }

    // MARK: - Several vectors

    /// Y[r, o] = sum_i W[o, i] * X[r, i] (+ bias[o]) (+ Y[r, o] if `accumulate`) for r < `batch`:
    /// a GEMV for a few vectors at once (small-batch decoding), W read once per group of 4 rows.
    ///
    /// - Parameters:
    ///   - batch: number of vectors (rows of X and Y). Beyond 4, W is streamed once per 4 rows;
    ///     convert W to float32 and use `GEMM.sgemm` for large batches.
    ///   - x: `batch` rows of `in` floats, `ldx` apart. - y: `batch` rows of `out` floats, `ldy` apart.
    ///   - Other parameters as in `gemv(out:in:w:dtype:x:bias:y:accumulate:threads:)`.
    public static func gemv(batch m: Int, out: Int, in n: Int, w: UnsafeRawPointer, dtype: DType,
                            x: UnsafePointer<Float>, ldx: Int, bias: UnsafePointer<Float>?,
                            y: UnsafeMutablePointer<Float>, ldy: Int, accumulate: Bool = false,
                            threads: Int = Kernels.threads) {
        precondition(m >= 0 && out >= 0 && n >= 0, "gemv: negative size batch=\(m) out=\(out) in=\(n)")
        precondition(m <= 1 || (ldx >= n && ldy >= out), "gemv: ldx=\(ldx) < in=\(n) or ldy=\(ldy) < out=\(out)")
        var r = 0
        while r < m {
            let g = min(4, m - r)
            if g == 1 {
                gemv(out: out, in: n, w: w, dtype: dtype, x: x + r * ldx, bias: bias, y: y + r * ldy,
                     accumulate: accumulate, threads: threads, backend: .swift)
            } else {
                batchGroup(g, out: out, n: n, w: w, dtype: dtype, x: x + r * ldx, ldx: ldx, bias: bias,
                           y: y + r * ldy, ldy: ldy, accumulate: accumulate, threads: threads)
            }
            r += g
        }
    }

    /// 2...4 vectors against all rows of W, rows split between threads.
    static func batchGroup(_ g: Int, out: Int, n: Int, w: UnsafeRawPointer, dtype: DType, x: UnsafePointer<Float>, ldx: Int,
                           bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>, ldy: Int,
                           accumulate: Bool, threads: Int) {
        if out == 0 { return }
        let t = max(1, min(threads, out / 8, g * out * n / parallelWork))
        let ptrs = UnsafeSendablePointers(a: w, b: UnsafeRawPointer(x), c: UnsafeMutableRawPointer(y),
                                          d: bias.map { UnsafeRawPointer($0) })
        let body: @Sendable (Int) -> Void = { i in
            let r0 = out * i / t, r1 = out * (i + 1) / t
            let x = ptrs.b!.assumingMemoryBound(to: Float.self), y = ptrs.c.assumingMemoryBound(to: Float.self)
            let bias = ptrs.d?.assumingMemoryBound(to: Float.self)
            switch (dtype, g) {
            case (.float32, 2): batchRows(2, r0, r1, n, ptrs.a, 4, x, ldx, bias, y, ldy, accumulate, loadF32)
            case (.float32, 3): batchRows(3, r0, r1, n, ptrs.a, 4, x, ldx, bias, y, ldy, accumulate, loadF32)
            case (.float32, _): batchRows(4, r0, r1, n, ptrs.a, 4, x, ldx, bias, y, ldy, accumulate, loadF32)
            case (.float16, 2): batchRows(2, r0, r1, n, ptrs.a, 2, x, ldx, bias, y, ldy, accumulate, loadF16)
            case (.float16, 3): batchRows(3, r0, r1, n, ptrs.a, 2, x, ldx, bias, y, ldy, accumulate, loadF16)
            case (.float16, _): batchRows(4, r0, r1, n, ptrs.a, 2, x, ldx, bias, y, ldy, accumulate, loadF16)
            case (.bfloat16, 2): batchRows(2, r0, r1, n, ptrs.a, 2, x, ldx, bias, y, ldy, accumulate, loadBF16)
            case (.bfloat16, 3): batchRows(3, r0, r1, n, ptrs.a, 2, x, ldx, bias, y, ldy, accumulate, loadBF16)
            case (.bfloat16, _): batchRows(4, r0, r1, n, ptrs.a, 2, x, ldx, bias, y, ldy, accumulate, loadBF16)
            }
        }
        if t == 1 { body(0) } else { Kernels.parallel(t, body) }
    }

    /// Rows r0..<r1 of W against g (2...4, constant after inlining) vectors; two accumulators
    /// per vector, each W vector loaded and widened once.
    @inline(__always)
    static func batchRows(_ g: Int, _ r0: Int, _ r1: Int, _ n: Int, _ w: UnsafeRawPointer, _ elem: Int,
                          _ x: UnsafePointer<Float>, _ ldx: Int, _ bias: UnsafePointer<Float>?,
                          _ y: UnsafeMutablePointer<Float>, _ ldy: Int, _ accumulate: Bool,
                          _ load: (UnsafeRawPointer) -> V) {
        let n16 = n & ~15
        let x0 = UnsafeRawPointer(x), x1 = UnsafeRawPointer(x + ldx)
        let x2 = UnsafeRawPointer(x + (g > 2 ? 2 * ldx : 0)), x3 = UnsafeRawPointer(x + (g > 3 ? 3 * ldx : 0))
        for r in r0..<r1 {
            let wr = w + r * n * elem
            var a0 = V(), b0 = V(), a1 = V(), b1 = V(), a2 = V(), b2 = V(), a3 = V(), b3 = V()
            var i = 0
            while i < n16 {
                let wa = load(wr + i * elem), wb = load(wr + (i + 8) * elem)
                let o = 4 * i
                a0.addProduct(wa, x0.loadUnaligned(fromByteOffset: o, as: V.self))
                b0.addProduct(wb, x0.loadUnaligned(fromByteOffset: o + 32, as: V.self))
                a1.addProduct(wa, x1.loadUnaligned(fromByteOffset: o, as: V.self))
                b1.addProduct(wb, x1.loadUnaligned(fromByteOffset: o + 32, as: V.self))
                if g > 2 {
                    a2.addProduct(wa, x2.loadUnaligned(fromByteOffset: o, as: V.self))
                    b2.addProduct(wb, x2.loadUnaligned(fromByteOffset: o + 32, as: V.self))
                }
                if g > 3 {
                    a3.addProduct(wa, x3.loadUnaligned(fromByteOffset: o, as: V.self))
                    b3.addProduct(wb, x3.loadUnaligned(fromByteOffset: o + 32, as: V.self))
                }
                i += 16
            }
            var s0 = (a0 + b0).sum(), s1 = (a1 + b1).sum(), s2 = (a2 + b2).sum(), s3 = (a3 + b3).sum()
            while i < n {
                let wi = scalar(wr, i, elem, load)
                s0 += wi * x[i]; s1 += wi * x[ldx + i]
                if g > 2 { s2 += wi * x[2 * ldx + i] }
                if g > 3 { s3 += wi * x[3 * ldx + i] }
                i += 1
            }
            finish(r, s0, bias, y, accumulate)
            finish(r, s1, bias, y + ldy, accumulate)
            if g > 2 { finish(r, s2, bias, y + 2 * ldy, accumulate) }
            if g > 3 { finish(r, s3, bias, y + 3 * ldy, accumulate) }
        }
    }

    @inline(__always)
    static func finish(_ r: Int, _ s: Float, _ bias: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>, _ accumulate: Bool) {
        var v = s
        if let bias { v += bias[r] }
        if accumulate { v += y[r] }
        y[r] = v
    }
}
