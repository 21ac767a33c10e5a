import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Single-precision matrix multiplication (SGEMM), row-major, in pure Swift.
///
/// The large-problem path follows BLIS (Van Zee & van de Geijn, 2015): C is updated in blocks;
/// for each `KC`-deep slice of the shared dimension, an `KC x NC` block of op(B) is packed into
/// 16-column panels and an `MC x KC` block of op(A) into 6-row panels, and a 6x16 micro-kernel
/// keeps the 6x16 tile of C in 12 `SIMD8<Float>` registers, doing 12 fused multiply-adds per step
/// of k. All KC slices of a column block of B are packed up front, shared by the threads, which
/// then claim row blocks of C dynamically (see `Plan`; threads come from `Kernels.parallel`).
/// Packing buffers are kept per thread between calls (`PackScratch`; up to 2 x 16 MiB for B on
/// the calling thread).
/// Products with m <= 4 stream B once without packing (`skinny`); tiny ones take a simple
/// unpacked single-thread path.
public enum GEMM {
    /// Micro-tile rows and columns (6x16: 12 accumulators + 2 B vectors + 1 broadcast = 15 ymm).
    @usableFromInline static let mr = 6
    @usableFromInline static let nr = 16
    /// Depth of a packed slice (B micro-panel `KC x 16` = 16 KiB stays in L1).
    static let kcBlock = 256
    /// Rows of a packed A block (`MC x KC` = 96 KiB stays in L2). Multiple of `mr`.
    static let mcBlock = 96
    /// Widest column block (multiple of `nr`); see also `packedBLimit`.
    static let ncBlock = 4096
    /// Below this many multiply-adds (m*n*k), the unpacked single-thread path runs (the packed
    /// path is faster from about 12x12x12 up: 13 vs 7 GFLOP/s at 16^3, 56 vs 15 at 47^3).
    static let smallWork = 1024
    /// Up to this many rows of op(A), B is streamed once without packing (batch-1..4 products).
    static let skinnyRows = 4
    /// Minimum multiply-adds per thread on the skinny path (memory-bound: split only big B).
    static let skinnyWorkPerThread = 1 << 17
    /// Minimum multiply-adds per thread before a second thread is used.
    static let workPerThread = 96 * 96 * 96

    /// C = alpha * op(A) * op(B) + beta * C, row-major. op(A) is m x k, op(B) is k x n.
    ///
    /// `A` is m x k (`lda >= k`) when `transA` is false, else k x m (`lda >= m`); `B` is k x n
    /// (`ldb >= n`) when `transB` is false, else n x k (`ldb >= k`); C is m x n with `ldc >= n`.
    /// With `beta == 0` C is only written (NaN or garbage in C is ignored); with `alpha == 0` or
    /// `k == 0`, A and B are not read. Runs on OpenBLAS when `Kernels.backend == .openblas`.
    ///
    /// - Parameter threads: worker threads (default `Kernels.threads`); small problems use one.
    public static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                             a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                             beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, threads: Int = Kernels.threads) {
        sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
              beta: beta, c: c, ldc: ldc, threads: threads, backend: Kernels.backend)
    }

    /// `sgemm` with an explicit backend (used by benchmarks and cross-checks).
    public static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                             a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                             beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, threads: Int,
                             backend: Backend) {
        precondition(m >= 0 && n >= 0 && k >= 0, "sgemm: negative size m=\(m) n=\(n) k=\(k)")
        precondition(ldc >= max(1, n), "sgemm: ldc=\(ldc) < n=\(n)")
        precondition(lda >= max(1, transA ? m : k), "sgemm: lda=\(lda) too small for op(A) \(m)x\(k), transA=\(transA)")
        precondition(ldb >= max(1, transB ? k : n), "sgemm: ldb=\(ldb) too small for op(B) \(k)x\(n), transB=\(transB)")
        if m == 0 || n == 0 { return }
        if alpha == 0 || k == 0 {
            scaleC(m: m, n: n, beta: beta, c: c, ldc: ldc)
            return
        }
        if Kernels.resolve(backend) == .openblas,
           OpenBLAS.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                          b: b, ldb: ldb, beta: beta, c: c, ldc: ldc, threads: threads) {
            return
        }
        let work = m * n * k
        if m <= skinnyRows {
            skinny(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                   b: b, ldb: ldb, beta: beta, c: c, ldc: ldc, threads: threads)
            return
        }
        if work < smallWork {
            smallGEMM(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                      b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
            return
        }
        let t = max(1, min(threads, work / workPerThread))
        if n <= directNarrow || m <= directNarrow / 2 || m * k + k * n <= directFloats {
            direct(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                   b: b, ldb: ldb, beta: beta, c: c, ldc: ldc, threads: t)
            return
        }
        packed(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
               b: b, ldb: ldb, beta: beta, c: c, ldc: ldc, threads: t)
    }

    /// C = beta * C (beta == 0 writes zeros without reading C).
    static func scaleC(m: Int, n: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        if beta == 1 { return }
        for i in 0..<m {
            let row = c + i * ldc
            if beta == 0 {
                row.update(repeating: 0, count: n)
            } else {
                VectorOps.scale(row, by: beta, count: n)
            }
        }
    }

    // MARK: - Small problems

    /// Unpacked path: each row of C is accumulated in a scratch row, then stored with alpha/beta.
    /// Non-transposed B: rows of B are added with axpy; transposed B: dot products with rows of B.
    static func smallGEMM(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                          a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                          beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: n + k)
        defer { scratch.deallocate() }
        let acc = scratch, arow = scratch + n
        for i in 0..<m {
            if transB {
                // C[i, j] = dot(op(A)[i, :], B[j, :]); gather op(A) row i when A is transposed.
                let ai: UnsafePointer<Float>
                if transA {
                    for p in 0..<k { arow[p] = a[p * lda + i] }
                    ai = UnsafePointer(arow)
                } else {
                    ai = a + i * lda
                }
                for j in 0..<n { acc[j] = VectorOps.dot(ai, b + j * ldb, count: k) }
            } else {
                acc.update(repeating: 0, count: n)
                for p in 0..<k {
                    let aip = transA ? a[p * lda + i] : a[i * lda + p]
                    VectorOps.axpy(aip, b + p * ldb, acc, count: n)
                }
            }
            let ci = c + i * ldc
            if beta == 0 {
                for j in 0..<n { ci[j] = alpha * acc[j] }
            } else {
                for j in 0..<n { ci[j] = alpha * acc[j] + beta * ci[j] }
            }
        }
    }

    // MARK: - Skinny path (m <= 4)

    /// C = alpha op(A) op(B) + beta C for m <= 4: each element of B is read once. With transB
    /// (B is n x k, e.g. weights [out, in]) every row of B is dotted with the m rows of op(A);
    /// otherwise rows of B are added into m accumulator rows, a column chunk at a time. Threads
    /// split the columns of C.
    static func skinny(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                       a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                       beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, threads: Int) {
        // op(A) rows, contiguous (m * k floats).
        let rowsA = UnsafeMutablePointer<Float>.allocate(capacity: m * k)
        defer { rowsA.deallocate() }
        for i in 0..<m {
            if transA {
                for p in 0..<k { rowsA[i * k + p] = a[p * lda + i] }
            } else {
                rowsA.advanced(by: i * k).update(from: a + i * lda, count: k)
            }
        }
        let t = max(1, min(threads, m * n * k / skinnyWorkPerThread, n / 16))
        let chunk = transB ? 4 : 64           // column granularity of the split
        let units = (n + chunk - 1) / chunk
        @Sendable func run(_ u0: Int, _ u1: Int, _ rowsA: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>) {
            let j0 = u0 * chunk, j1 = min(n, u1 * chunk)
            if j1 <= j0 { return }
            if transB {
                switch m {
                case 1: skinnyDots(1, j0, j1, k, alpha, rowsA, b, ldb, beta, c, ldc)
                case 2: skinnyDots(2, j0, j1, k, alpha, rowsA, b, ldb, beta, c, ldc)
                case 3: skinnyDots(3, j0, j1, k, alpha, rowsA, b, ldb, beta, c, ldc)
                default: skinnyDots(4, j0, j1, k, alpha, rowsA, b, ldb, beta, c, ldc)
                }
            } else {
                var j = j0
                while j < j1 {
                    let w = min(axpyWidth, j1 - j)
                    switch m {
                    case 1: skinnyAxpy(1, j, w, k, alpha, rowsA, b, ldb, beta, c, ldc)
                    case 2: skinnyAxpy(2, j, w, k, alpha, rowsA, b, ldb, beta, c, ldc)
                    case 3: skinnyAxpy(3, j, w, k, alpha, rowsA, b, ldb, beta, c, ldc)
                    default: skinnyAxpy(4, j, w, k, alpha, rowsA, b, ldb, beta, c, ldc)
                    }
                    j += w
                }
            }
        }
        if t == 1 {
            run(0, units, rowsA, b, c)
            return
        }
        // Pointers stay valid until Kernels.parallel returns; workers write disjoint columns of C.
        let ptrs = UnsafeSendablePointers(a: UnsafeRawPointer(rowsA), b: UnsafeRawPointer(b), c: UnsafeMutableRawPointer(c))
        Kernels.parallel(t) { i in
            run(units * i / t, units * (i + 1) / t, ptrs.a.assumingMemoryBound(to: Float.self),
                ptrs.b!.assumingMemoryBound(to: Float.self), ptrs.c.assumingMemoryBound(to: Float.self))
        }
    }

    /// C[i, j] = alpha * dot(A_i, B_j) + beta * C[i, j] for i < m (1...4, a constant after
    /// inlining) and j in j0..<j1, with A rows contiguous (stride k) and B rows at stride ldb.
    @inline(__always)
    static func skinnyDots(_ m: Int, _ j0: Int, _ j1: Int, _ k: Int, _ alpha: Float, _ a: UnsafePointer<Float>,
                           _ b: UnsafePointer<Float>, _ ldb: Int, _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
        typealias V = SIMD8<Float>
        @inline(__always) func ld(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
        @inline(__always) func put(_ i: Int, _ j: Int, _ s: Float) {
            let cij = c + i * ldc + j
            cij.pointee = beta == 0 ? alpha * s : alpha * s + beta * cij.pointee
        }
        let k16 = k & ~15
        let a0 = a, a1 = a + (m > 1 ? k : 0), a2 = a + (m > 2 ? 2 * k : 0), a3 = a + (m > 3 ? 3 * k : 0)
        if m == 1 {
            // One row of A: four rows of B at a time (as GEMV).
            var j = j0
            while j + 4 <= j1 {
                let b0 = b + j * ldb, b1 = b0 + ldb, b2 = b1 + ldb, b3 = b2 + ldb
                var s0 = V(), t0 = V(), s1 = V(), t1 = V(), s2 = V(), t2 = V(), s3 = V(), t3 = V()
                var p = 0
                while p < k16 {
                    let x0 = ld(a0 + p), x1 = ld(a0 + p + 8)
                    s0.addProduct(ld(b0 + p), x0); t0.addProduct(ld(b0 + p + 8), x1)
                    s1.addProduct(ld(b1 + p), x0); t1.addProduct(ld(b1 + p + 8), x1)
                    s2.addProduct(ld(b2 + p), x0); t2.addProduct(ld(b2 + p + 8), x1)
                    s3.addProduct(ld(b3 + p), x0); t3.addProduct(ld(b3 + p + 8), x1)
                    p += 16
                }
                var r0 = (s0 + t0).sum(), r1 = (s1 + t1).sum(), r2 = (s2 + t2).sum(), r3 = (s3 + t3).sum()
                while p < k {
                    let x = a0[p]
                    r0 += b0[p] * x; r1 += b1[p] * x; r2 += b2[p] * x; r3 += b3[p] * x
                    p += 1
                }
                put(0, j, r0); put(0, j + 1, r1); put(0, j + 2, r2); put(0, j + 3, r3)
                j += 4
            }
            while j < j1 {
                put(0, j, VectorOps.dot(a0, b + j * ldb, count: k))
                j += 1
            }
            return
        }
        // Two to four rows of A: one row of B at a time, read once for all of them.
        for j in j0..<j1 {
            let bj = b + j * ldb
            var s0 = V(), t0 = V(), s1 = V(), t1 = V(), s2 = V(), t2 = V(), s3 = V(), t3 = V()
            var p = 0
            while p < k16 {
                let y0 = ld(bj + p), y1 = ld(bj + p + 8)
                s0.addProduct(ld(a0 + p), y0); t0.addProduct(ld(a0 + p + 8), y1)
                s1.addProduct(ld(a1 + p), y0); t1.addProduct(ld(a1 + p + 8), y1)
                if m > 2 { s2.addProduct(ld(a2 + p), y0); t2.addProduct(ld(a2 + p + 8), y1) }
                if m > 3 { s3.addProduct(ld(a3 + p), y0); t3.addProduct(ld(a3 + p + 8), y1) }
                p += 16
            }
            var r0 = (s0 + t0).sum(), r1 = (s1 + t1).sum(), r2 = (s2 + t2).sum(), r3 = (s3 + t3).sum()
            while p < k {
                let y = bj[p]
                r0 += a0[p] * y; r1 += a1[p] * y; r2 += a2[p] * y; r3 += a3[p] * y
                p += 1
            }
            put(0, j, r0); put(1, j, r1)
            if m > 2 { put(2, j, r2) }
            if m > 3 { put(3, j, r3) }
        }
    }

    /// C[i, j0 ..< j0+w] = alpha * sum_p A[i, p] B[p, j0 ..< j0+w] + beta * C for i < m (1...4):
    /// rows of B are streamed in order (contiguous segments of w floats, so the hardware
    /// prefetcher follows them) and added into m accumulator rows of w <= `axpyWidth` floats,
    /// which stay in L2.
    @inline(__always)
    static func skinnyAxpy(_ m: Int, _ j0: Int, _ w: Int, _ k: Int, _ alpha: Float, _ a: UnsafePointer<Float>,
                           _ b: UnsafePointer<Float>, _ ldb: Int, _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
        typealias V = SIMD8<Float>
        let stride = roundUp(w, 16)
        let acc = UnsafeMutableRawPointer.allocate(byteCount: 4 * m * stride, alignment: 64)
            .bindMemory(to: Float.self, capacity: m * stride)
        defer { acc.deallocate() }
        acc.update(repeating: 0, count: m * stride)
        let w8 = w & ~7
        for p in 0..<k {
            let bp = b + p * ldb + j0
            let x0 = a[p], x1 = m > 1 ? a[k + p] : 0, x2 = m > 2 ? a[2 * k + p] : 0, x3 = m > 3 ? a[3 * k + p] : 0
            let v0 = V(repeating: x0), v1 = V(repeating: x1), v2 = V(repeating: x2), v3 = V(repeating: x3)
            var j = 0
            while j < w8 {
                let bv = UnsafeRawPointer(bp + j).loadUnaligned(as: V.self)
                @inline(__always) func upd(_ i: Int, _ v: V) {
                    let q = UnsafeMutableRawPointer(acc + i * stride + j)
                    var s = q.load(as: V.self)
                    s.addProduct(v, bv)
                    q.storeBytes(of: s, as: V.self)
                }
                upd(0, v0)
                if m > 1 { upd(1, v1) }
                if m > 2 { upd(2, v2) }
                if m > 3 { upd(3, v3) }
                j += 8
            }
            while j < w {
                let y = bp[j]
                acc[j] += x0 * y
                if m > 1 { acc[stride + j] += x1 * y }
                if m > 2 { acc[2 * stride + j] += x2 * y }
                if m > 3 { acc[3 * stride + j] += x3 * y }
                j += 1
            }
        }
        for i in 0..<m {
            let ci = c + i * ldc + j0, ai = acc + i * stride
            if beta == 0 {
                for j in 0..<w { ci[j] = alpha * ai[j] }
            } else {
                for j in 0..<w { ci[j] = alpha * ai[j] + beta * ci[j] }
            }
        }
    }

    /// Widest column chunk of `skinnyAxpy` (4 accumulator rows of 32 KiB).
    static let axpyWidth = 8192

    // MARK: - Direct path (narrow or small products)

    /// Up to this many columns of C (or half as many rows), the direct path runs: packing the
    /// large operand would copy it whole for a few multiply-adds per element (LoRA's x·Aᵀ with
    /// r = 8 spent as long packing x as multiplying).
    static let directNarrow = 32
    /// Products whose A and B hold at most this many floats together (128 KiB: they stay in L2)
    /// run the direct path too (attention's per-head 64x32 products spent more time packing
    /// than computing).
    static let directFloats = 32 * 1024

    /// The micro-kernel on unpacked operands: op(A) rows are read where they lie (six row
    /// streams, or six adjacent values per k when A is transposed), op(B) in place when it is
    /// row-major and the 16-column strip is whole, else from one packed strip (k x 16). Strips of
    /// C are the outer loop, so a strip of B is read from memory once and from cache for the
    /// other row tiles. Threads split strips, or row tiles when there are few strips.
    static func direct(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                       a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                       beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, threads t: Int) {
        let strips = (n + nr - 1) / nr, tiles = (m + mr - 1) / mr
        @Sendable func run(_ s0: Int, _ s1: Int, _ i0: Int, _ i1: Int, _ a: UnsafePointer<Float>,
                           _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>) {
            let ars = transA ? 1 : lda, aks = transA ? lda : 1
            let needPack = transB || (s1 == strips && n % nr != 0)
            PackScratch.with(.a, floats: needPack ? k * nr : 16) { strip in
                for sIdx in s0..<s1 {
                    let j = sIdx * nr, cols = min(nr, n - j)
                    let bp: UnsafePointer<Float>, ldbp: Int
                    if !transB && cols == nr {
                        bp = b + j; ldbp = ldb
                    } else {
                        packB(transB: transB, b: b, ldb: ldb, p0: 0, j0: j, kc: k, nc: cols, into: strip)
                        bp = UnsafePointer(strip); ldbp = nr
                    }
                    for tile in i0..<i1 {
                        let i = tile * mr
                        microKernelDirect(kc: k, a: a + i * ars, ars: ars, aks: aks, rows: min(mr, m - i), b: bp, ldb: ldbp,
                                          c: c + i * ldc + j, ldc: ldc, alpha: alpha, beta: beta, cols: cols)
                    }
                }
            }
        }
        if t == 1 {
            run(0, strips, 0, tiles, a, b, c)
            return
        }
        // Pointers stay valid until Kernels.parallel returns; units write disjoint blocks of C.
        let ptrs = UnsafeSendablePointers(a: UnsafeRawPointer(a), b: UnsafeRawPointer(b), c: UnsafeMutableRawPointer(c))
        let byStrips = strips >= 2 * t
        let units = byStrips ? min(strips, 4 * t) : min(tiles, 4 * t)
        Kernels.parallel(units) { u in
            let pa = ptrs.a.assumingMemoryBound(to: Float.self), pb = ptrs.b!.assumingMemoryBound(to: Float.self)
            let pc = ptrs.c.assumingMemoryBound(to: Float.self)
            if byStrips {
                run(strips * u / units, strips * (u + 1) / units, 0, tiles, pa, pb, pc)
            } else {
                run(0, strips, tiles * u / units, tiles * (u + 1) / units, pa, pb, pc)
            }
        }
    }

    /// The 6x16 micro-kernel with op(A)[i, p] at a[i * ars + p * aks] (rows past `rows` read row
    /// 0 again and are not stored) and op(B)[p, 0..<16] at b[p * ldb ..< p * ldb + 16].
    @inline(__always)
    static func microKernelDirect(kc: Int, a: UnsafePointer<Float>, ars: Int, aks: Int, rows: Int,
                                  b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int,
                                  alpha: Float, beta: Float, cols: Int) {
        typealias V = SIMD8<Float>
        var c00 = V(), c01 = V(), c10 = V(), c11 = V(), c20 = V(), c21 = V()
        var c30 = V(), c31 = V(), c40 = V(), c41 = V(), c50 = V(), c51 = V()
        let o1 = rows > 1 ? ars : 0, o2 = rows > 2 ? 2 * ars : 0, o3 = rows > 3 ? 3 * ars : 0
        let o4 = rows > 4 ? 4 * ars : 0, o5 = rows > 5 ? 5 * ars : 0
        var bp = UnsafeRawPointer(b)
        let bStep = ldb * 4
        @inline(__always) func step(_ x0: Float, _ x1: Float, _ x2: Float, _ x3: Float, _ x4: Float, _ x5: Float) {
            let b0 = bp.loadUnaligned(as: V.self)
            let b1 = bp.loadUnaligned(fromByteOffset: 32, as: V.self)
            var av = V(repeating: x0)
            c00.addProduct(av, b0); c01.addProduct(av, b1)
            av = V(repeating: x1)
            c10.addProduct(av, b0); c11.addProduct(av, b1)
            av = V(repeating: x2)
            c20.addProduct(av, b0); c21.addProduct(av, b1)
            av = V(repeating: x3)
            c30.addProduct(av, b0); c31.addProduct(av, b1)
            av = V(repeating: x4)
            c40.addProduct(av, b0); c41.addProduct(av, b1)
            av = V(repeating: x5)
            c50.addProduct(av, b0); c51.addProduct(av, b1)
            bp += bStep
        }
        if aks == 1 {
            let a0 = a, a1 = a + o1, a2 = a + o2, a3 = a + o3, a4 = a + o4, a5 = a + o5
            for p in 0..<kc { step(a0[p], a1[p], a2[p], a3[p], a4[p], a5[p]) }
        } else {
            var ap = a
            for _ in 0..<kc {
                step(ap[0], ap[o1], ap[o2], ap[o3], ap[o4], ap[o5])
                ap += aks
            }
        }
        storeTile(c, ldc: ldc, alpha: alpha, beta: beta, rows: rows, cols: cols,
                  c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51)
    }

    // MARK: - Packed (BLIS) path

    /// The shape of one packed product: block sizes and how the work is cut into claimable units.
    ///
    /// C is computed in column blocks of `nc` columns (`jc`). For each block the workers first
    /// pack op(B)[0 ..< k, jc ..< jc+nc] together (claiming groups of 16-column panels, KC-deep
    /// slices one after another), then claim units (an MC row block `ic` x a column part) and
    /// run, for each KC slice, the packing of their `mc x kc` block of op(A) and the micro-kernel.
    /// A unit owns its block of C for the whole of k, so the only wait is for B to be packed.
    /// Packed B is double buffered, so packing block j+1 may overlap the last units of block j.
    /// With a single row block (m <= MC) packed B would be used once, so nothing is packed ahead:
    /// each unit packs a few B panels right before using them (`fusedB`) and no one ever waits.
    /// Claims and completions are atomic counters: a worker waits only for work another worker
    /// has claimed and is running, so if the pool runs the workers one after another, the first
    /// simply does everything.
    struct Plan: @unchecked Sendable {  // raw pointers, see `packed`
        var transA: Bool, transB: Bool
        var m: Int, n: Int, k: Int
        var alpha: Float, beta: Float
        var a: UnsafePointer<Float>, lda: Int
        var b: UnsafePointer<Float>, ldb: Int
        var c: UnsafeMutablePointer<Float>, ldc: Int
        var kc: Int, nPc: Int          // slice depth (balanced) and number of slices
        var nc: Int, nJc: Int          // column block width (multiple of 16) and number of blocks
        var mPanels: Int, nIc: Int     // 6-row panels of op(A) and row blocks they are cut into
        var mcMax: Int                 // rows of the largest row block
        var cParts: Int                // column parts per column block
        var groupPanels: Int           // B panels per packing claim
        var fusedB: Bool               // one row block: units pack B panels just before use
        var counters: UnsafeMutablePointer<Atomic<Int>>  // 4 per column block: pack claim/done, unit claim/done
        var bufB: UnsafeMutablePointer<Float>            // two buffers of k * nc floats (unless fusedB)

        var units: Int { nIc * cParts }
    }

    /// Packed B of one column block holds at most this many floats (16 MiB); wider products use
    /// several column blocks.
    static let packedBLimit = 4 << 20

    /// Runs the packed path on `threads` workers (the caller included).
    static func packed(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                       a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                       beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, threads t: Int) {
        // Balance the slices: k = 300 becomes two slices of 150 rather than 256 + 44.
        let nPc = (k + kcBlock - 1) / kcBlock
        let kc = (k + nPc - 1) / nPc
        let mPanels = (m + mr - 1) / mr
        var nIc = (mPanels * mr + mcBlock - 1) / mcBlock
        let fusedB = nIc == 1
        // Column blocks: NC wide, and narrower when k is deep so that packed B stays bounded.
        let ncLimit = fusedB ? ncBlock : max(nr, min(ncBlock, packedBLimit / max(k, 1) / nr * nr))
        let nJc = (n + ncLimit - 1) / ncLimit
        let nc = roundUp((n + nJc - 1) / nJc, nr)
        let nPanels = nc / nr
        var cParts = 1
        if t > 1 {
            if fusedB {
                cParts = min(nPanels, 4 * t)           // columns split, claimed dynamically
            } else if mPanels >= 8 * t {
                // Row blocks shared out evenly, at least 4 per thread when there are enough rows
                // (blocks of 24+ rows), so that dynamic claiming evens out unequal blocks.
                nIc = min(mPanels, roundUp(max(nIc, min(4 * t, mPanels / 4)), t))
            } else {
                cParts = t                             // few rows: split the columns too
            }
        }
        let mcMax = mr * ((mPanels + nIc - 1) / nIc)
        // One packing claim per thread and slice: wide groups copy faster (longer row segments).
        let groupPanels = max(2, (nPanels + t - 1) / t)

        let counters = UnsafeMutablePointer<Atomic<Int>>.allocate(capacity: 4 * nJc)
        for i in 0..<(4 * nJc) { (counters + i).initialize(to: Atomic(0)) }
        defer { counters.deinitialize(count: 4 * nJc); counters.deallocate() }

        PackScratch.with(.b, floats: fusedB ? 16 : (nJc > 1 ? 2 : 1) * k * nc) { bufB in
            let plan = Plan(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, beta: beta,
                            a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, kc: kc, nPc: nPc, nc: nc, nJc: nJc,
                            mPanels: mPanels, nIc: nIc, mcMax: mcMax, cParts: cParts, groupPanels: groupPanels,
                            fusedB: fusedB, counters: counters, bufB: bufB)
            if t == 1 {
                worker(plan)
            } else {
                // The plan's pointers stay valid until Kernels.parallel returns; workers write
                // disjoint parts of C and of the packing buffers, ordered by the atomic counters.
                Kernels.parallel(t) { _ in worker(plan) }
            }
        }
    }

    /// B panels packed at a time in fused mode (4 x 16 columns x KC = 64 KiB, stays in L2).
    static let fusedPanels = 4

    /// Spins (then yields) until `counter` reaches `target`.
    @inline(__always)
    static func wait(_ counter: UnsafeMutablePointer<Atomic<Int>>, _ target: Int) {
        var spins = 0
        while counter.pointee.load(ordering: .acquiring) < target {
            spins += 1
            if spins > 100 { sched_yield() }
        }
    }

    /// One worker: walks the column blocks, packing and computing whatever it can claim.
    static func worker(_ p: Plan) {
        // Fused mode has one row block, the same for every unit: pack it once for all of k
        // (slice s at s * mcMax * kc) when that is at most 1 Mi floats.
        let keepA = p.fusedB && p.mcMax * p.kc * p.nPc <= 1 << 20
        let aFloats = p.mcMax * p.kc * (keepA ? p.nPc : 1)
        PackScratch.with(.a, floats: aFloats + (p.fusedB ? fusedPanels * nr * p.kc : 0)) { bufA in
            let bufFused = bufA + aFloats
            var keptA = false
            for j in 0..<p.nJc {
                let ctr = p.counters + 4 * j
                let jc = j * p.nc
                let ncCur = min(p.nc, p.n - jc)
                let nPanels = (ncCur + nr - 1) / nr
                // Packed B of this block: slice s (depth kcCur) starts at s * kc * nc, panel q of
                // the slice at q * 16 * kcCur.
                let bufB = p.bufB + (j & 1) * p.k * p.nc

                if !p.fusedB {
                    // 1. Pack op(B)[0 ..< k, jc ..< jc+nc] together, a group of panels x one slice per claim.
                    if j >= 2 { wait(ctr - 8 + 3, p.units) }   // block j-2 no longer reads this buffer
                    let groupsPerSlice = (nPanels + p.groupPanels - 1) / p.groupPanels
                    let groups = groupsPerSlice * p.nPc
                    while true {
                        let g = ctr[0].add(1, ordering: .relaxed).oldValue
                        if g >= groups { break }
                        let s = g / groupsPerSlice, q0 = (g % groupsPerSlice) * p.groupPanels
                        let q1 = min(nPanels, q0 + p.groupPanels)
                        let pc = s * p.kc, kcCur = min(p.kc, p.k - pc)
                        packB(transB: p.transB, b: p.b, ldb: p.ldb, p0: pc, j0: jc + q0 * nr, kc: kcCur,
                              nc: min(ncCur, q1 * nr) - q0 * nr, into: bufB + pc * p.nc + q0 * nr * kcCur)
                        ctr[1].add(1, ordering: .releasing)
                    }
                    wait(ctr + 1, groups)
                }

                // 2. Compute units: row block ic x column part cp, over all of k.
                while true {
                    let u = ctr[2].add(1, ordering: .relaxed).oldValue
                    if u >= p.units { break }
                    let cp = u / p.nIc, ic = u % p.nIc
                    let r0 = mr * (p.mPanels * ic / p.nIc)
                    let r1 = min(p.m, mr * (p.mPanels * (ic + 1) / p.nIc))
                    let c0 = nr * (nPanels * cp / p.cParts)
                    let c1 = min(ncCur, nr * (nPanels * (cp + 1) / p.cParts))
                    if r1 > r0 && c1 > c0 {
                        for s in 0..<p.nPc {
                            let pc = s * p.kc, kcCur = min(p.kc, p.k - pc)
                            let beta: Float = s == 0 ? p.beta : 1
                            let aSlice = keepA ? bufA + s * p.mcMax * p.kc : bufA
                            if !keptA {
                                packA(transA: p.transA, a: p.a, lda: p.lda, i0: r0, p0: pc, mc: r1 - r0, kc: kcCur, into: aSlice)
                            }
                            if p.fusedB {
                                var jj = c0
                                while jj < c1 {
                                    let w = min(fusedPanels * nr, c1 - jj)
                                    packB(transB: p.transB, b: p.b, ldb: p.ldb, p0: pc, j0: jc + jj, kc: kcCur, nc: w, into: bufFused)
                                    macroKernel(mc: r1 - r0, nc: w, kc: kcCur, alpha: p.alpha, beta: beta,
                                                a: aSlice, b: bufFused, c: p.c + r0 * p.ldc + jc + jj, ldc: p.ldc)
                                    jj += w
                                }
                            } else {
                                macroKernel(mc: r1 - r0, nc: c1 - c0, kc: kcCur, alpha: p.alpha, beta: beta,
                                            a: aSlice, b: bufB + pc * p.nc + c0 * kcCur,
                                            c: p.c + r0 * p.ldc + jc + c0, ldc: p.ldc)
                            }
                        }
                        keptA = keepA
                    }
                    ctr[3].add(1, ordering: .releasing)
                }
            }
        }
    }

    @inline(__always) static func roundUp(_ x: Int, _ m: Int) -> Int { (x + m - 1) / m * m }

    /// Packs op(A)[i0 ..< i0+mc, p0 ..< p0+kc] into 6-row panels: panel r holds, for each p,
    /// the 6 values op(A)[i0 + 6r + 0...5, p0 + p] (rows past mc are zero).
    static func packA(transA: Bool, a: UnsafePointer<Float>, lda: Int, i0: Int, p0: Int, mc: Int, kc: Int,
                      into dst: UnsafeMutablePointer<Float>) {
        var ir = 0
        var d = dst
        while ir < mc {
            let rows = min(mr, mc - ir)
            if !transA {
                // op(A)[i, p] = a[i * lda + p]: six row streams.
                let base = a + (i0 + ir) * lda + p0
                if rows == mr {
                    let r0 = base, r1 = base + lda, r2 = base + 2 * lda
                    let r3 = base + 3 * lda, r4 = base + 4 * lda, r5 = base + 5 * lda
                    for p in 0..<kc {
                        d[0] = r0[p]; d[1] = r1[p]; d[2] = r2[p]
                        d[3] = r3[p]; d[4] = r4[p]; d[5] = r5[p]
                        d += mr
                    }
                } else {
                    for p in 0..<kc {
                        for r in 0..<mr { d[r] = r < rows ? base[r * lda + p] : 0 }
                        d += mr
                    }
                }
            } else {
                // op(A)[i, p] = a[p * lda + i]: six contiguous values per p.
                let base = a + p0 * lda + i0 + ir
                if rows == mr {
                    for p in 0..<kc {
                        let s = base + p * lda
                        d[0] = s[0]; d[1] = s[1]; d[2] = s[2]; d[3] = s[3]; d[4] = s[4]; d[5] = s[5]
                        d += mr
                    }
                } else {
                    for p in 0..<kc {
                        let s = base + p * lda
                        for r in 0..<mr { d[r] = r < rows ? s[r] : 0 }
                        d += mr
                    }
                }
            }
            ir += mr
        }
    }

    /// Packs op(B)[p0 ..< p0+kc, j0 ..< j0+nc] into 16-column panels: panel j holds, for each p,
    /// the 16 values op(B)[p0 + p, j0 + 16j + 0...15] (columns past nc are zero).
    static func packB(transB: Bool, b: UnsafePointer<Float>, ldb: Int, p0: Int, j0: Int, kc: Int, nc: Int,
                      into dst: UnsafeMutablePointer<Float>) {
        let fullPanels = nc / nr
        if !transB {
            // op(B)[p, j] = b[p * ldb + j]. Walk a few rows at a time across all panels so that
            // the reads stream along rows of b (a column strip of b would touch one line per
            // page), and each panel receives contiguous 64-byte rows.
            let rowsPerChunk = 8
            var pr = 0
            while pr < kc {
                let pe = min(kc, pr + rowsPerChunk)
                // Prefetch the next chunk of rows (B is read once; hide its latency).
                let rowBytes = fullPanels * nr * 4
                for q in pe..<min(kc, pe + rowsPerChunk) {
                    let row = UnsafeRawPointer(b + (p0 + q) * ldb + j0)
                    var off = 0
                    while off < rowBytes { llvmPrefetch(row + off, 0, 3, 1); off += 64 }
                }
                for jp in 0..<fullPanels {
                    var d = dst + jp * kc * nr + pr * nr
                    var s = UnsafeRawPointer(b + (p0 + pr) * ldb + j0 + jp * nr)
                    for _ in pr..<pe {
                        UnsafeMutableRawPointer(d).storeBytes(of: s.loadUnaligned(as: SIMD16<Float>.self), as: SIMD16<Float>.self)
                        d += nr
                        s += ldb * 4
                    }
                }
                pr = pe
            }
        }
        var jr = transB ? 0 : fullPanels * nr
        var d = dst + (jr / nr) * kc * nr
        while jr < nc {
            let cols = min(nr, nc - jr)
            if !transB {
                // Partial last panel: zero-padded to 16 columns.
                let base = b + p0 * ldb + j0 + jr
                for p in 0..<kc {
                    let s = base + p * ldb
                    for j in 0..<nr { d[j] = j < cols ? s[j] : 0 }
                    d += nr
                }
            } else {
                // op(B)[p, j] = b[j * ldb + p]: each column of the panel is a contiguous row of b.
                let base = b + (j0 + jr) * ldb + p0
                for j in 0..<nr {
                    if j < cols {
                        let s = base + j * ldb
                        for p in 0..<kc { d[p * nr + j] = s[p] }
                    } else {
                        for p in 0..<kc { d[p * nr + j] = 0 }
                    }
                }
                d += kc * nr
            }
            jr += nr
        }
    }

    /// Runs the micro-kernel over every 6x16 tile of an `mc x nc` block of C.
    static func macroKernel(mc: Int, nc: Int, kc: Int, alpha: Float, beta: Float,
                            a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                            c: UnsafeMutablePointer<Float>, ldc: Int) {
        prefetchTile(c, ldc: ldc, rows: min(mr, mc))
        var jr = 0
        while jr < nc {
            let cols = min(nr, nc - jr)
            let bp = b + jr * kc
            var ir = 0
            while ir < mc {
                let rows = min(mr, mc - ir)
                // Fetch the next tile of C while this one computes (C is read and written once per
                // tile and KC slice; without this its cache misses cost ~10% at 1024^3).
                if ir + mr < mc {
                    prefetchTile(c + (ir + mr) * ldc + jr, ldc: ldc, rows: min(mr, mc - ir - mr))
                } else if jr + nr < nc {
                    prefetchTile(c + jr + nr, ldc: ldc, rows: min(mr, mc))
                }
                microKernel(kc: kc, a: a + ir * kc, b: bp, c: c + ir * ldc + jr, ldc: ldc,
                            alpha: alpha, beta: beta, rows: rows, cols: cols)
                ir += mr
            }
            jr += nr
        }
    }

    /// Prefetches the cache lines of a tile of C (16 floats per row: one or two lines).
    @inline(__always)
    static func prefetchTile(_ c: UnsafeMutablePointer<Float>, ldc: Int, rows: Int) {
        for r in 0..<rows {
            let p = UnsafeRawPointer(c + r * ldc)
            llvmPrefetch(p, 1, 3, 1)
            llvmPrefetch(p + 60, 1, 3, 1)
        }
    }

    /// The 6x16 micro-kernel: acc = sum_p a[p, 0..<6] outer b[p, 0..<16], then
    /// C[0..<rows, 0..<cols] = alpha * acc + beta * C (C not read when beta == 0).
    @inline(__always)
    static func microKernel(kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                            c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float,
                            rows: Int, cols: Int) {
        typealias V = SIMD8<Float>
        var c00 = V(), c01 = V(), c10 = V(), c11 = V(), c20 = V(), c21 = V()
        var c30 = V(), c31 = V(), c40 = V(), c41 = V(), c50 = V(), c51 = V()
        var ap = a
        var bp = UnsafeRawPointer(b)
        for _ in 0..<kc {
            let b0 = bp.load(as: V.self)
            let b1 = bp.load(fromByteOffset: 32, as: V.self)
            var av = V(repeating: ap[0])
            c00.addProduct(av, b0); c01.addProduct(av, b1)
            av = V(repeating: ap[1])
            c10.addProduct(av, b0); c11.addProduct(av, b1)
            av = V(repeating: ap[2])
            c20.addProduct(av, b0); c21.addProduct(av, b1)
            av = V(repeating: ap[3])
            c30.addProduct(av, b0); c31.addProduct(av, b1)
            av = V(repeating: ap[4])
            c40.addProduct(av, b0); c41.addProduct(av, b1)
            av = V(repeating: ap[5])
            c50.addProduct(av, b0); c51.addProduct(av, b1)
            ap += mr
            bp += nr * 4
        }
        storeTile(c, ldc: ldc, alpha: alpha, beta: beta, rows: rows, cols: cols,
                  c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51)
    }

    /// C[0..<rows, 0..<cols] = alpha * tile + beta * C (C not read when beta == 0), the tile in
    /// 12 registers (row r: cr0, cr1).
    @inline(__always)
    static func storeTile(_ c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float, rows: Int, cols: Int,
                          _ c00: SIMD8<Float>, _ c01: SIMD8<Float>, _ c10: SIMD8<Float>, _ c11: SIMD8<Float>,
                          _ c20: SIMD8<Float>, _ c21: SIMD8<Float>, _ c30: SIMD8<Float>, _ c31: SIMD8<Float>,
                          _ c40: SIMD8<Float>, _ c41: SIMD8<Float>, _ c50: SIMD8<Float>, _ c51: SIMD8<Float>) {
        typealias V = SIMD8<Float>
        if rows == mr && cols == nr {
            let va = V(repeating: alpha)
            if beta == 0 {
                storeRow(c, va * c00, va * c01)
                storeRow(c + ldc, va * c10, va * c11)
                storeRow(c + 2 * ldc, va * c20, va * c21)
                storeRow(c + 3 * ldc, va * c30, va * c31)
                storeRow(c + 4 * ldc, va * c40, va * c41)
                storeRow(c + 5 * ldc, va * c50, va * c51)
            } else {
                let vb = V(repeating: beta)
                updateRow(c, c00, c01, va, vb)
                updateRow(c + ldc, c10, c11, va, vb)
                updateRow(c + 2 * ldc, c20, c21, va, vb)
                updateRow(c + 3 * ldc, c30, c31, va, vb)
                updateRow(c + 4 * ldc, c40, c41, va, vb)
                updateRow(c + 5 * ldc, c50, c51, va, vb)
            }
            return
        }
        // Edge tile: spill the accumulators and write only the valid part.
        withUnsafeTemporaryAllocation(of: V.self, capacity: 2 * mr) { t in
            t[0] = c00; t[1] = c01; t[2] = c10; t[3] = c11; t[4] = c20; t[5] = c21
            t[6] = c30; t[7] = c31; t[8] = c40; t[9] = c41; t[10] = c50; t[11] = c51
            UnsafeMutableRawPointer(t.baseAddress!).withMemoryRebound(to: Float.self, capacity: mr * nr) { tile in
                for r in 0..<rows {
                    let cr = c + r * ldc, tr = tile + r * nr
                    if beta == 0 {
                        for j in 0..<cols { cr[j] = alpha * tr[j] }
                    } else {
                        for j in 0..<cols { cr[j] = alpha * tr[j] + beta * cr[j] }
                    }
                }
            }
        }
    }

    @inline(__always)
    static func storeRow(_ p: UnsafeMutablePointer<Float>, _ v0: SIMD8<Float>, _ v1: SIMD8<Float>) {
        let r = UnsafeMutableRawPointer(p)
        r.storeBytes(of: v0, as: SIMD8<Float>.self)
        r.storeBytes(of: v1, toByteOffset: 32, as: SIMD8<Float>.self)
    }

    @inline(__always)
    static func updateRow(_ p: UnsafeMutablePointer<Float>, _ v0: SIMD8<Float>, _ v1: SIMD8<Float>,
                          _ alpha: SIMD8<Float>, _ beta: SIMD8<Float>) {
        let r = UnsafeMutableRawPointer(p)
        var o0 = r.loadUnaligned(as: SIMD8<Float>.self) * beta
        var o1 = r.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self) * beta
        o0.addProduct(alpha, v0)
        o1.addProduct(alpha, v1)
        r.storeBytes(of: o0, as: SIMD8<Float>.self)
        r.storeBytes(of: o1, toByteOffset: 32, as: SIMD8<Float>.self)
    }
}

/// Packing buffers kept per thread and reused across calls (BLIS keeps a pool the same way), so
/// that a product does not allocate and fault in fresh pages every time. Slot `.a` holds one
/// worker's packed A block; slot `.b` the caller's two packed B blocks. A buffer is taken out of
/// its slot while in use, so a nested call on the same thread gets a fresh one.
final class PackScratch {
    enum Slot: Int { case a = 0, b = 1 }

    private var buffers: [UnsafeMutableRawPointer?] = [nil, nil]
    private var sizes: [Int] = [0, 0]

    deinit { for p in buffers { p?.deallocate() } }

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key) { p in
            guard let p else { return }
            Unmanaged<PackScratch>.fromOpaque(p).release()
        }
        return key
    }()

    private static var current: PackScratch {
        if let p = pthread_getspecific(key) { return Unmanaged<PackScratch>.fromOpaque(p).takeUnretainedValue() }
        let s = PackScratch()
        pthread_setspecific(key, Unmanaged.passRetained(s).toOpaque())
        return s
    }

    /// Calls `body` with at least `floats` floats, 64-byte aligned, contents undefined.
    static func with<R>(_ slot: Slot, floats: Int, _ body: (UnsafeMutablePointer<Float>) -> R) -> R {
        let s = current, i = slot.rawValue
        let bytes = max(64, floats * 4)
        var buf = s.buffers[i]
        var size = s.sizes[i]
        s.buffers[i] = nil; s.sizes[i] = 0
        if buf == nil || size < bytes {
            buf?.deallocate()
            buf = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
            size = bytes
        }
        defer {
            if let old = s.buffers[i] { old.deallocate() }   // a nested call left one: keep ours
            s.buffers[i] = buf; s.sizes[i] = size
        }
        return body(buf!.bindMemory(to: Float.self, capacity: size / 4))
    }
}

/// LLVM's prefetch intrinsic (`prefetcht0`/`prefetchw` on x86): a cache hint with no effect on
/// results. Arguments: address, 0 read / 1 write, locality 0...3, 1 = data cache. The standard
/// library has no prefetch, and declaring the intrinsic by name avoids a C shim target. Release
/// builds only: with sanitizers (debug builds) the compiler emits the call as an `invoke`, which
/// LLVM rejects for intrinsics, so debug builds use a no-op (prefetching only affects speed;
/// it gains ~10% at 1024^3 by fetching the next C tile).
#if DEBUG
@inline(__always)
func llvmPrefetch(_ address: UnsafeRawPointer, _ rw: Int32, _ locality: Int32, _ cacheType: Int32) {}
#else
@_silgen_name("llvm.prefetch.p0")
func llvmPrefetch(_ address: UnsafeRawPointer, _ rw: Int32, _ locality: Int32, _ cacheType: Int32)
#endif
