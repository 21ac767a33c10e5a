import Testing
import Dispatch
@testable import FrugalCore

// MARK: - Helpers

/// Deterministic values in [-1, 1) (xorshift), so failures reproduce.
private func randomArray(_ count: Int, seed: UInt64) -> [Float] {
    var s = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    return (0..<count).map { _ in
        s ^= s << 13; s ^= s >> 7; s ^= s << 17
        return Float(s >> 40) * (2.0 / 16_777_216.0) - 1
    }
}

/// One GEMM case: op(A) m x k, op(B) k x n, with leading dimensions padded by `pad`.
private struct GEMMCase: CustomStringConvertible {
    var m: Int, n: Int, k: Int
    var transA = false, transB = false
    var alpha: Float = 1, beta: Float = 0
    var pad = 0
    var threads = 2
    var description: String {
        "m=\(m) n=\(n) k=\(k) tA=\(transA) tB=\(transB) alpha=\(alpha) beta=\(beta) pad=\(pad) threads=\(threads)"
    }
}

/// Runs `GEMM.sgemm` on random data and compares with a double-precision triple loop.
/// Elements of C outside the m x n view (the padding) must be left untouched.
private func checkGEMM(_ t: GEMMCase, backend: Backend = .swift, nanC: Bool = false) {
    let (m, n, k) = (t.m, t.n, t.k)
    let aRows = t.transA ? k : m, aCols = t.transA ? m : k
    let bRows = t.transB ? n : k, bCols = t.transB ? k : n
    let lda = aCols + t.pad, ldb = bCols + t.pad, ldc = n + t.pad
    let a = randomArray(max(1, aRows * lda), seed: UInt64(m * 31 + k))
    let b = randomArray(max(1, bRows * ldb), seed: UInt64(n * 17 + k + 5))
    let c0 = nanC ? [Float](repeating: .nan, count: max(1, m * ldc)) : randomArray(max(1, m * ldc), seed: 99)
    var c = c0
    a.withUnsafeBufferPointer { ap in
        b.withUnsafeBufferPointer { bp in
            c.withUnsafeMutableBufferPointer { cp in
                GEMM.sgemm(transA: t.transA, transB: t.transB, m: m, n: n, k: k, alpha: t.alpha,
                           a: ap.baseAddress!, lda: lda, b: bp.baseAddress!, ldb: ldb, beta: t.beta,
                           c: cp.baseAddress!, ldc: ldc, threads: t.threads, backend: backend)
            }
        }
    }
    var worst = 0.0
    var untouched = true
    for i in 0..<m {
        for j in 0..<ldc {
            if j >= n {
                let same = c[i * ldc + j].bitPattern == c0[i * ldc + j].bitPattern
                untouched = untouched && same
                continue
            }
            var s = 0.0, mag = 0.0
            for p in 0..<k {
                let av = Double(t.transA ? a[p * lda + i] : a[i * lda + p])
                let bv = Double(t.transB ? b[j * ldb + p] : b[p * ldb + j])
                s += av * bv
                mag += abs(av * bv)
            }
            var ref = Double(t.alpha) * s
            if t.beta != 0 { ref += Double(t.beta) * Double(c0[i * ldc + j]) }
            // float32 accumulation over k terms: error bound ~ k * eps * sum |a b|.
            let tol = 1e-6 + 2e-7 * Double(k + 2) * (abs(Double(t.alpha)) * mag + abs(Double(t.beta)))
            worst = max(worst, abs(Double(c[i * ldc + j]) - ref) / tol)
        }
    }
    #expect(worst <= 1, "\(t) backend=\(backend): error \(worst)x tolerance")
    #expect(untouched, "\(t): sgemm wrote outside the m x n view of C")
}

// MARK: - GEMM

@Suite("GEMM") struct GEMMTests {
    @Test("odd shapes, small and packed paths, one and two threads",
          arguments: [(1, 1, 1), (1, 7, 1), (7, 13, 17), (6, 16, 8), (5, 15, 3), (12, 32, 64), (13, 33, 65),
                      (97, 101, 103), (100, 50, 300), (200, 37, 257), (3, 4100, 5), (1, 64, 513), (191, 1, 96),
                      (20, 300, 600), (20, 4200, 40), (130, 70, 520), (100, 8300, 5)])
    func shapes(_ s: (Int, Int, Int)) {
        // (20, 300, 600): few rows, columns split between threads; (20, 4200, 40): two column blocks
        // (NC = 4096); (130, 70, 520): three k slices; (100, 8300, 5): three column blocks sharing
        // two packed-B buffers.
        for threads in [1, 2, 3] {
            checkGEMM(GEMMCase(m: s.0, n: s.1, k: s.2, threads: threads))
        }
    }

    @Test("all four transpose combinations with strided views",
          arguments: [(false, false), (false, true), (true, false), (true, true)])
    func transposes(_ tr: (Bool, Bool)) {
        for (m, n, k) in [(5, 9, 4), (7, 13, 17), (97, 101, 103), (61, 35, 270)] {  // small, packed, two-thread
            checkGEMM(GEMMCase(m: m, n: n, k: k, transA: tr.0, transB: tr.1, pad: 3))
        }
    }

    @Test("direct path (narrow or small products): transposes, strides, alpha/beta, edge tiles, one and two threads",
          arguments: [(false, false), (false, true), (true, false), (true, true)])
    func direct(_ tr: (Bool, Bool)) {
        // LoRA's r = 8 products (x·Aᵀ, gᵀ·xA, (gB)ᵀ·x, xA·Bᵀ), attention's per-head ones, edges.
        for (m, n, k) in [(600, 8, 384), (384, 8, 700), (8, 384, 700), (600, 384, 8), (64, 64, 32), (64, 32, 64),
                          (13, 40, 33), (17, 33, 5), (5, 200, 300), (300, 31, 50)] {
            #expect(n <= GEMM.directNarrow || m <= GEMM.directNarrow / 2 || m * k + k * n <= GEMM.directFloats)
            for threads in [1, 2] {
                checkGEMM(GEMMCase(m: m, n: n, k: k, transA: tr.0, transB: tr.1, alpha: 1.5, beta: 0.25, pad: 3, threads: threads))
            }
            checkGEMM(GEMMCase(m: m, n: n, k: k, transA: tr.0, transB: tr.1, pad: 1), nanC: true)
        }
    }

    @Test("skinny path (m <= 4): every m, transposes, strides, alpha/beta, split columns",
          arguments: [(false, false), (false, true), (true, false), (true, true)])
    func skinny(_ tr: (Bool, Bool)) {
        for m in 1...4 {
            for (n, k) in [(37, 21), (300, 1000), (261, 7)] {
                checkGEMM(GEMMCase(m: m, n: n, k: k, transA: tr.0, transB: tr.1, alpha: 1.5, beta: 0.25, pad: 3))
                checkGEMM(GEMMCase(m: m, n: n, k: k, transA: tr.0, transB: tr.1, pad: 1), nanC: true)
            }
        }
    }

    @Test("alpha and beta", arguments: [(Float(1), Float(1)), (2.5, -0.5), (-1, 0), (0.5, 2)])
    func alphaBeta(_ ab: (Float, Float)) {
        for (m, n, k) in [(5, 9, 4), (70, 45, 260)] {
            checkGEMM(GEMMCase(m: m, n: n, k: k, transA: true, alpha: ab.0, beta: ab.1, pad: 2))
        }
    }

    @Test("beta == 0 ignores NaN already in C")
    func betaZeroNaN() {
        for (m, n, k) in [(3, 5, 7), (97, 101, 103), (8, 40, 600)] {
            checkGEMM(GEMMCase(m: m, n: n, k: k, pad: 1), nanC: true)
        }
    }

    @Test("k == 0 and alpha == 0 scale C by beta without reading A or B")
    func degenerate() {
        var c: [Float] = [1, 2, 3, 4, .nan, 6]
        let a: [Float] = [.nan], b: [Float] = [.nan]
        GEMM.sgemm(transA: false, transB: false, m: 2, n: 2, k: 0, alpha: 1, a: a, lda: 1, b: b, ldb: 2,
                   beta: 2, c: &c, ldc: 3)
        #expect(c[0] == 2 && c[1] == 4 && c[3] == 8 && c[4].isNaN && c[2] == 3)
        GEMM.sgemm(transA: false, transB: false, m: 2, n: 2, k: 1, alpha: 0, a: a, lda: 1, b: b, ldb: 2,
                   beta: 0, c: &c, ldc: 3)
        #expect(c == [0, 0, 3, 0, 0, 6])
    }

    @Test("hand-computed 2x3 * 3x2")
    func handComputed() {
        let a: [Float] = [1, 2, 3, 4, 5, 6]          // [[1,2,3],[4,5,6]]
        let b: [Float] = [7, 8, 9, 10, 11, 12]       // [[7,8],[9,10],[11,12]]
        var c = [Float](repeating: 0, count: 4)
        GEMM.sgemm(transA: false, transB: false, m: 2, n: 2, k: 3, alpha: 1, a: a, lda: 3, b: b, ldb: 2,
                   beta: 0, c: &c, ldc: 2)
        #expect(c == [58, 64, 139, 154])
    }

    @Test("OpenBLAS agrees with the Swift kernels (skipped when libopenblas.so.0 is absent)")
    func openBLASCrossCheck() {
        guard OpenBLAS.isAvailable else {
            print("note: OpenBLAS not installed; cross-check skipped (apt-get install libopenblas0-pthread)")
            return
        }
        for tr in [(false, false), (true, true), (false, true)] {
            checkGEMM(GEMMCase(m: 97, n: 101, k: 103, transA: tr.0, transB: tr.1, alpha: 1.5, beta: 0.5, pad: 2),
                      backend: .openblas)
        }
        // Same inputs through both backends: results agree to float32 rounding.
        let (m, n, k) = (64, 80, 300)
        let a = randomArray(m * k, seed: 3), b = randomArray(k * n, seed: 4)
        var c1 = [Float](repeating: 0, count: m * n), c2 = c1
        GEMM.sgemm(transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: a, lda: k, b: b, ldb: n,
                   beta: 0, c: &c1, ldc: n, threads: 2, backend: .swift)
        GEMM.sgemm(transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: a, lda: k, b: b, ldb: n,
                   beta: 0, c: &c2, ldc: n, threads: 2, backend: .openblas)
        let diff = zip(c1, c2).map { abs($0 - $1) }.max()!
        #expect(diff < 1e-3)
    }
}

// MARK: - GEMV

@Suite("GEMV") struct GEMVTests {
    /// Reference in double from the float values the weights actually hold.
    private func check(out: Int, inn: Int, dtype: DType, bias: Bool, accumulate: Bool, threads: Int) {
        let wf = randomArray(out * inn, seed: UInt64(out + inn))
        let x = randomArray(inn, seed: 7)
        let bv = randomArray(out, seed: 8)
        let y0 = randomArray(out, seed: 9)
        var raw = [UInt8](repeating: 0, count: out * inn * dtype.size)
        var wq = [Float](repeating: 0, count: out * inn)   // weights after rounding to dtype
        wf.withUnsafeBufferPointer { src in
            raw.withUnsafeMutableBytes { dst in
                HalfConversion.fromFloat(src.baseAddress!, count: out * inn, dtype: dtype, into: dst.baseAddress!)
                wq.withUnsafeMutableBufferPointer { q in
                    HalfConversion.toFloat(UnsafeRawPointer(dst.baseAddress!), dtype: dtype, count: out * inn, into: q.baseAddress!)
                }
            }
        }
        var y = y0
        raw.withUnsafeBytes { w in
            bv.withUnsafeBufferPointer { bp in
                GEMV.gemv(out: out, in: inn, w: w.baseAddress!, dtype: dtype, x: x, bias: bias ? bp.baseAddress! : nil,
                          y: &y, accumulate: accumulate, threads: threads, backend: .swift)
            }
        }
        var worst = 0.0
        for o in 0..<out {
            var s = 0.0, mag = 0.0
            for i in 0..<inn { s += Double(wq[o * inn + i]) * Double(x[i]); mag += abs(Double(wq[o * inn + i]) * Double(x[i])) }
            if bias { s += Double(bv[o]) }
            if accumulate { s += Double(y0[o]) }
            let tol = 1e-6 + 2e-7 * Double(inn + 2) * (mag + 2)
            worst = max(worst, abs(Double(y[o]) - s) / tol)
        }
        #expect(worst <= 1, "out=\(out) in=\(inn) \(dtype) bias=\(bias) acc=\(accumulate) threads=\(threads): \(worst)x tolerance")
    }

    @Test("f32, f16, bf16 against a double reference", arguments: DType.allCases)
    func dtypes(_ dtype: DType) {
        for (out, inn) in [(1, 1), (3, 7), (4, 16), (5, 17), (13, 100), (37, 257), (300, 300)] {
            for threads in [1, 2] {
                check(out: out, inn: inn, dtype: dtype, bias: false, accumulate: false, threads: threads)
            }
        }
        check(out: 9, inn: 33, dtype: dtype, bias: true, accumulate: false, threads: 1)
        check(out: 9, inn: 33, dtype: dtype, bias: true, accumulate: true, threads: 1)
        check(out: 301, inn: 250, dtype: dtype, bias: false, accumulate: true, threads: 2)
    }

    @Test("several vectors at once (batch 1...9, strided) match one GEMV per vector", arguments: DType.allCases)
    func batched(_ dtype: DType) {
        let (out, inn) = (37, 133)
        let wf = randomArray(out * inn, seed: 21)
        var raw = [UInt8](repeating: 0, count: out * inn * dtype.size)
        raw.withUnsafeMutableBytes { HalfConversion.fromFloat(wf, count: out * inn, dtype: dtype, into: $0.baseAddress!) }
        let bias = randomArray(out, seed: 22)
        for batch in 1...9 {
            let ldx = inn + 5, ldy = out + 3
            let x = randomArray(batch * ldx, seed: UInt64(batch))
            for accumulate in [false, true] {
                let y0 = randomArray(batch * ldy, seed: 30)
                var y = y0, ref = y0
                raw.withUnsafeBytes { w in
                    GEMV.gemv(batch: batch, out: out, in: inn, w: w.baseAddress!, dtype: dtype, x: x, ldx: ldx, bias: bias,
                              y: &y, ldy: ldy, accumulate: accumulate, threads: 2)
                    x.withUnsafeBufferPointer { xp in
                        ref.withUnsafeMutableBufferPointer { rp in
                            for r in 0..<batch {
                                GEMV.gemv(out: out, in: inn, w: w.baseAddress!, dtype: dtype, x: xp.baseAddress! + r * ldx,
                                          bias: bias, y: rp.baseAddress! + r * ldy, accumulate: accumulate, threads: 1, backend: .swift)
                            }
                        }
                    }
                }
                let diff = zip(y, ref).map { abs($0 - $1) }.max()!
                #expect(diff < 1e-4, "batch=\(batch) \(dtype) accumulate=\(accumulate): max difference \(diff)")
                // Padding between rows of Y is left alone.
                #expect((0..<batch).allSatisfy { r in (out..<ldy).allSatisfy { y[r * ldy + $0] == y0[r * ldy + $0] } })
            }
        }
    }

    @Test("f16 and bf16 decode special values exactly")
    func specials() {
        let values: [Float] = [0, -0.0, 1, -2, 65504, 6.1035156e-05, 5.9604645e-08, .infinity, -.infinity, 0.333251953125,
                               3, 0.5, -0.25, 1024, 1e-3, 7]
        let x: [Float] = [1]
        for dtype in [DType.float16, .bfloat16] {
            var raw = [UInt8](repeating: 0, count: values.count * 2)
            raw.withUnsafeMutableBytes { HalfConversion.fromFloat(values, count: values.count, dtype: dtype, into: $0.baseAddress!) }
            // A 16 x 1 matrix times [1] returns the decoded weights (-0 sums to +0, equal under ==); a 1 x 16 one exercises the SIMD loop.
            var y = [Float](repeating: 0, count: values.count)
            raw.withUnsafeBytes { GEMV.gemv(out: values.count, in: 1, w: $0.baseAddress!, dtype: dtype, x: x, bias: nil, y: &y) }
            var dot: Float = 0
            let ones = [Float](repeating: 1, count: 16)
            var rawRow = raw
            // Drop the infinities for the dot product so it stays finite.
            rawRow.withUnsafeMutableBytes { p in
                for i in [7, 8] { p.storeBytes(of: UInt16(0), toByteOffset: 2 * i, as: UInt16.self) }
            }
            rawRow.withUnsafeBytes { GEMV.gemv(out: 1, in: 16, w: $0.baseAddress!, dtype: dtype, x: ones, bias: nil, y: &dot) }
            var expectSum: Float = 0
            for i in 0..<values.count {
                let bits = raw.withUnsafeBytes { $0.load(fromByteOffset: 2 * i, as: UInt16.self) }
                let ref = dtype == .float16 ? HalfConversion.f16ToFloat(bits) : HalfConversion.bf16ToFloat(bits)
                #expect(y[i] == ref, "\(dtype) value \(values[i]) decoded to \(y[i]), expected \(ref)")
                if i != 7 && i != 8 { expectSum += ref }
            }
            #expect(abs(dot - expectSum) <= 1e-3 * abs(expectSum))
        }
    }

    @Test("OpenBLAS sgemv agrees (skipped when absent)")
    func openBLAS() {
        guard OpenBLAS.isAvailable else {
            print("note: OpenBLAS not installed; GEMV cross-check skipped")
            return
        }
        let (out, inn) = (77, 130)
        let w = randomArray(out * inn, seed: 1), x = randomArray(inn, seed: 2), b = randomArray(out, seed: 3)
        for accumulate in [false, true] {
            var y1 = randomArray(out, seed: 4), y2 = y1
            w.withUnsafeBytes { wp in
                GEMV.gemv(out: out, in: inn, w: wp.baseAddress!, dtype: .float32, x: x, bias: b, y: &y1,
                          accumulate: accumulate, threads: 2, backend: .swift)
                GEMV.gemv(out: out, in: inn, w: wp.baseAddress!, dtype: .float32, x: x, bias: b, y: &y2,
                          accumulate: accumulate, threads: 2, backend: .openblas)
            }
            #expect(zip(y1, y2).allSatisfy { abs($0 - $1) < 1e-4 })
        }
    }
}

// MARK: - Vector ops

@Suite("VectorOps") struct VectorOpsTests {
    @Test("exp is within 2 ulp of a double reference over [-103, 88.7]")
    func expAccuracy() {
        var worstUlp: Float = 0
        var x: Float = -103
        while x < 88.7 {
            let got = VectorOps.exp(x)
            let ref = Float(dexp(Double(x)))
            if ref.isNormal {
                worstUlp = max(worstUlp, abs(got - ref) / ref.ulp)
            } else {
                #expect(abs(got - ref) <= Float.leastNonzeroMagnitude * 2, "subnormal exp(\(x))")
            }
            x += 0.0137
        }
        #expect(worstUlp <= 2, "worst error \(worstUlp) ulp")
        #expect(VectorOps.exp(0) == 1)
        #expect(VectorOps.exp(-Float.infinity) == 0)
        #expect(VectorOps.exp(-200) == 0)
        #expect(VectorOps.exp(89) == .infinity)
        #expect(VectorOps.exp(Float.infinity) == .infinity)
        #expect(VectorOps.exp(Float.nan).isNaN)
        #expect(VectorOps.exp(88.72).isFinite)
    }

    @Test("softmax sums to 1, handles -inf and large inputs; log-softmax matches")
    func softmax() {
        let x: [Float] = [1, 2, 3, -.infinity, 1000, 999, 0.5, -3, 2, 7, 8, 1, 1, 4]
        var y = [Float](repeating: 0, count: x.count)
        VectorOps.softmax(x, into: &y, count: x.count)
        let mx = x.max()!
        let den = x.reduce(0.0) { $0 + dexp(Double($1 - mx)) }
        for i in x.indices {
            #expect(abs(Double(y[i]) - dexp(Double(x[i] - mx)) / den) < 1e-7)
        }
        #expect(y[3] == 0)
        #expect(abs(y.reduce(0, +) - 1) < 1e-6)
        var ly = [Float](repeating: 0, count: x.count)
        VectorOps.logSoftmax(x, into: &ly, count: x.count)
        for i in x.indices where x[i].isFinite {
            #expect(abs(Double(ly[i]) - (Double(x[i] - mx) - dlog(den))) < 1e-4)
        }
        #expect(ly[3] == -.infinity)
        // Rows: each sums to 1, in place.
        var m = randomArray(5 * 37, seed: 11).map { $0 * 20 }
        m.withUnsafeMutableBufferPointer { p in
            VectorOps.softmaxRows(p.baseAddress!, ldx: 37, into: p.baseAddress!, ldy: 37, rows: 5, cols: 37)
        }
        for r in 0..<5 { #expect(abs(m[(r * 37)..<(r * 37 + 37)].reduce(0, +) - 1) < 1e-5) }
        // A fully masked row gives zeros (softmax) and -inf (log-softmax), never NaN.
        let masked = [Float](repeating: -.infinity, count: 9)
        VectorOps.softmax(masked, into: &y, count: 9)
        #expect(y[0..<9].allSatisfy { $0 == 0 })
    }

    @Test("reductions and elementwise ops against scalar loops")
    func elementwise() {
        for n in [0, 1, 7, 8, 15, 16, 33, 100] {
            let x = randomArray(n, seed: 1), y = randomArray(n, seed: 2).map { $0 + 2 }
            let dot = zip(x, y).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            #expect(abs(Double(VectorOps.dot(x, y, count: n)) - dot) < 1e-5)
            #expect(abs(Double(VectorOps.sum(x, count: n)) - x.reduce(0.0) { $0 + Double($1) }) < 1e-5)
            if n > 0 {
                #expect(VectorOps.max(x, count: n) == x.max()!)
                #expect(VectorOps.argmax(x, count: n) == x.firstIndex(of: x.max()!)!)
            }
            var z = [Float](repeating: 0, count: n)
            VectorOps.add(x, y, into: &z, count: n); #expect(z == zip(x, y).map { $0 + $1 })
            VectorOps.sub(x, y, into: &z, count: n); #expect(z == zip(x, y).map { $0 - $1 })
            VectorOps.mul(x, y, into: &z, count: n); #expect(z == zip(x, y).map { $0 * $1 })
            VectorOps.div(x, y, into: &z, count: n); #expect(z == zip(x, y).map { $0 / $1 })
            VectorOps.scale(x, by: 3, into: &z, count: n); #expect(z == x.map { $0 * 3 })
            var w = y
            VectorOps.axpy(0.5, x, &w, count: n)
            #expect(zip(w, zip(x, y)).allSatisfy { abs($0 - ($1.1 + 0.5 * $1.0)) < 1e-6 })
        }
        #expect(VectorOps.argmax([1, 5, 5, 2], count: 4) == 1)
    }

    @Test("tanh, sigmoid, silu, gelu against double references")
    func activations() {
        let xs: [Float] = stride(from: -12, through: 12, by: 0.173).map { Float($0) } + [0, 1e-5, -1e-5, 0.6249, 0.625, 30, -30]
        var t = [Float](repeating: 0, count: xs.count), s = t, si = t, g = t, ge = t
        VectorOps.tanh(xs, into: &t, count: xs.count)
        VectorOps.sigmoid(xs, into: &s, count: xs.count)
        VectorOps.silu(xs, into: &si, count: xs.count)
        VectorOps.gelu(xs, into: &g, count: xs.count)
        VectorOps.geluErf(xs, into: &ge, count: xs.count)
        for (i, xf) in xs.enumerated() {
            let x = Double(xf)
            let th = dtanh(x)
            #expect(abs(Double(t[i]) - th) <= 2e-7 * max(abs(th), 1e-30) + 1e-12, "tanh(\(x))")
            let sg = 1 / (1 + dexp(-x))
            #expect(abs(Double(s[i]) - sg) <= 1e-6 * sg + 1e-30, "sigmoid(\(x))")
            #expect(abs(Double(si[i]) - x * sg) <= 1e-6 * abs(x * sg) + 1e-30, "silu(\(x))")
            let gt = 0.5 * x * (1 + dtanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))
            #expect(abs(Double(g[i]) - gt) <= 1e-6 * (abs(x) + 1), "gelu(\(x))")
            let gerf = 0.5 * x * (1 + erfRef(x / 2.0.squareRoot()))
            #expect(abs(Double(ge[i]) - gerf) <= 3e-7 * (abs(x) + 1), "geluErf(\(x))")
        }
    }
}

/// erf in double via its Maclaurin series (|x| < 3) or the asymptotic continued fraction.
private func erfRef(_ x: Double) -> Double {
    let ax = abs(x)
    var r: Double
    if ax < 3 {
        var term = ax, sum = ax, n = 0.0
        repeat {
            n += 1
            term *= -ax * ax / n
            let add = term / (2 * n + 1)
            sum += add
            if abs(add) < 1e-17 { break }
        } while true
        r = 2 / Double.pi.squareRoot() * sum
    } else {
        // erfc via Lentz continued fraction.
        var f = ax, c = ax, d = 0.0
        for k in 1..<200 {
            let ak = Double(k) / 2
            d = ax + ak * d; d = 1 / d
            c = ax + ak / c
            let delta = c * d
            f *= delta
            if abs(delta - 1) < 1e-16 { break }
        }
        r = 1 - dexp(-ax * ax) / (f * Double.pi.squareRoot())
    }
    return x < 0 ? -r : r
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
private func dexp(_ x: Double) -> Double { exp(x) }
private func dlog(_ x: Double) -> Double { log(x) }
private func dtanh(_ x: Double) -> Double { tanh(x) }

// MARK: - Thread pool

@Suite("Kernels.parallel") struct ParallelTests {
    /// Counts how often each index ran; `@unchecked Sendable` because each index writes its own slot.
    final class Counts: @unchecked Sendable {
        let p: UnsafeMutablePointer<Int>
        let n: Int
        init(_ n: Int) { self.n = n; p = .allocate(capacity: n); p.initialize(repeating: 0, count: n) }
        deinit { p.deallocate() }
        var all1: Bool { (0..<n).allSatisfy { p[$0] == 1 } }
    }

    @Test("every index runs exactly once, for many jobs of varying size")
    func exactlyOnce() {
        for round in 0..<300 {
            let n = [1, 2, 3, 7, 64, 255][round % 6]
            let c = Counts(n)
            Kernels.parallel(n) { i in c.p[i] += 1 }
            #expect(c.all1, "round \(round), n=\(n)")
        }
    }

    @Test("more iterations than threads: every index once, on at most Kernels.threads threads")
    func manyIterations() {
        for n in [256, 384, 1000, 70_000] {
            let c = Counts(n)
            Kernels.parallel(n) { i in c.p[i] += 1 }
            #expect(c.all1, "n=\(n)")
        }
        // Iterations are claimed by the caller and the pool's workers: never one thread per iteration.
        #expect(KernelPool.shared.workerCount <= max(0, Kernels.threads - 1))
    }

    @Test("nested calls and concurrent callers run every index once")
    func nestedAndConcurrent() {
        let outer = Counts(4)
        let inner = (0..<4).map { _ in Counts(16) }
        Kernels.parallel(4) { i in
            outer.p[i] += 1
            Kernels.parallel(16) { j in inner[i].p[j] += 1 }   // pool busy: runs on this thread
        }
        #expect(outer.all1 && inner.allSatisfy { $0.all1 })
        // Two GCD threads calling at once: one gets the pool, the other runs inline.
        let perCaller = (0..<2).map { _ in Counts(200 * 8) }
        DispatchQueue.concurrentPerform(iterations: 2) { caller in
            for r in 0..<200 {
                Kernels.parallel(8) { i in perCaller[caller].p[r * 8 + i] += 1 }
            }
        }
        #expect(perCaller.allSatisfy { $0.all1 })
    }
}
