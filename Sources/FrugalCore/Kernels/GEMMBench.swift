import Dispatch
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Times `GEMM.sgemm` (and, for m == 1, `GEMV.gemv`) on given shapes, for comparison with
/// numpy (`bench/gemm_numpy.py`). Used by `frugal bench gemm`.
public enum GEMMBench {
    /// One timing: a shape, the backend that ran, and the median over repeats.
    public struct Result: Codable, Sendable {
        public var m: Int
        public var k: Int
        public var n: Int
        public var backend: String
        /// 2 m n k / seconds, in 1e9 per second.
        public var gflops: Double
        /// Median seconds of one product.
        public var seconds: Double

        public init(m: Int, k: Int, n: Int, backend: String, gflops: Double, seconds: Double) {
            self.m = m; self.k = k; self.n = n; self.backend = backend; self.gflops = gflops; self.seconds = seconds
        }
    }

    /// The shapes of the acceptance table, as (m, k, n): C[m, n] = A[m, k] B[k, n].
    /// The last one, m = 1, is the batch-1 `W @ x` with W [14336, 4096].
    public static let defaultShapes: [(m: Int, k: Int, n: Int)] = [
        (128, 128, 128), (256, 256, 256), (512, 512, 512), (1024, 1024, 1024), (2048, 2048, 2048),
        (256, 512, 512), (64, 512, 2048), (1, 4096, 14336),
    ]

    /// Times each shape on each backend for at least `minTime` seconds (after one warm-up run)
    /// and returns the median. Shapes with m == 1 run `GEMV.gemv` on float32 W `[n, k]` (the
    /// `[out, in]` layout); the others run `GEMM.sgemm` without transposes. A backend that cannot
    /// run (OpenBLAS not installed) is skipped. Uses `Kernels.threads` threads.
    public static func run(shapes: [(m: Int, k: Int, n: Int)], backends: [Backend], minTime: Double) -> [Result] {
        var results: [Result] = []
        let threads = Kernels.threads
        for shape in shapes {
            let (m, k, n) = shape
            guard m > 0, k > 0, n > 0 else { continue }
            let a = randomBuffer(m * k, seed: 1)
            let b = randomBuffer(k * n, seed: 2)
            let c = UnsafeMutablePointer<Float>.allocate(capacity: m * n)
            HugePages.advise(UnsafeMutableRawPointer(c), bytes: 4 * m * n)
            c.initialize(repeating: 0, count: m * n)
            defer { a.deallocate(); b.deallocate(); c.deallocate() }
            for backend in backends {
                if backend == .openblas && !OpenBLAS.isAvailable { continue }
                let body: () -> Void
                if m == 1 {
                    body = {
                        GEMV.gemv(out: n, in: k, w: UnsafeRawPointer(b), dtype: .float32, x: a, bias: nil, y: c,
                                  accumulate: false, threads: threads, backend: backend)
                    }
                } else {
                    body = {
                        GEMM.sgemm(transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: a, lda: k,
                                   b: b, ldb: n, beta: 0, c: c, ldc: n, threads: threads, backend: backend)
                    }
                }
                let seconds = medianTime(minTime: minTime, body)
                // OpenBLAS worker threads keep spinning for a while after a call; let them go idle
                // so that they do not steal a core from whatever is timed next.
                if backend == .openblas { usleep(200_000) }
                let flops = 2.0 * Double(m) * Double(n) * Double(k)
                results.append(Result(m: m, k: k, n: n, backend: backend.rawValue,
                                      gflops: flops / seconds / 1e9, seconds: seconds))
            }
        }
        return results
    }

    /// Median duration of `body` over repeats lasting `minTime` in total (at least 3 repeats).
    static func medianTime(minTime: Double, _ body: () -> Void) -> Double {
        body()  // warm-up: page faults, thread pool start.
        var times: [Double] = []
        var total = 0.0
        while total < minTime || times.count < 3 {
            let t0 = DispatchTime.now().uptimeNanoseconds
            body()
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
            times.append(dt)
            total += dt
            if times.count >= 10_000 { break }
        }
        times.sort()
        let h = times.count / 2
        return times.count % 2 == 1 ? times[h] : 0.5 * (times[h - 1] + times[h])
    }

    /// Uniform values in [-1, 1) from a fixed-seed xorshift generator.
    static func randomBuffer(_ count: Int, seed: UInt64) -> UnsafeMutablePointer<Float> {
        let p = UnsafeMutablePointer<Float>.allocate(capacity: count)
        HugePages.advise(UnsafeMutableRawPointer(p), bytes: 4 * count)  // as numpy does for its arrays
        var s = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        for i in 0..<count {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17
            p[i] = Float(s >> 40) * (2.0 / 16_777_216.0) - 1
        }
        return p
    }
}
