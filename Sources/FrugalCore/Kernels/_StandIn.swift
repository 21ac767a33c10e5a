import Dispatch
// TEMPORARY stand-ins until the real kernels land.
public enum Backend: String, Sendable { case swift, openblas }
public enum Kernels {
    nonisolated(unsafe) static var _threads = 2
    public static var threads: Int { _threads }
    public static func setThreads(_ n: Int) { _threads = max(1, n) }
}
public enum GEMM {
    public static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                             a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                             beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, threads: Int = Kernels.threads) {
        for i in 0..<m {
            for j in 0..<n {
                var s: Float = 0
                for p in 0..<k {
                    let av = transA ? a[p * lda + i] : a[i * lda + p]
                    let bv = transB ? b[j * ldb + p] : b[p * ldb + j]
                    s += av * bv
                }
                c[i * ldc + j] = alpha * s + (beta == 0 ? 0 : beta * c[i * ldc + j])
            }
        }
    }
}
public enum GEMV {
    public static func gemv(out: Int, in inp: Int, w: UnsafeRawPointer, dtype: DType, x: UnsafePointer<Float>, bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>, accumulate: Bool = false, threads: Int = Kernels.threads) {
        for o in 0..<out {
            var s: Float = 0
            for i in 0..<inp {
                let wv: Float
                switch dtype {
                case .float32: wv = w.load(fromByteOffset: 4 * (o * inp + i), as: Float.self)
                case .float16: wv = HalfConversion.f16ToFloat(w.load(fromByteOffset: 2 * (o * inp + i), as: UInt16.self))
                case .bfloat16: wv = HalfConversion.bf16ToFloat(w.load(fromByteOffset: 2 * (o * inp + i), as: UInt16.self))
                }
                s += wv * x[i]
            }
            if let bias { s += bias[o] }
            y[o] = accumulate ? y[o] + s : s
        }
    }
}
