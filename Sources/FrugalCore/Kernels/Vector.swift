#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Vectorised float32 primitives on raw pointers, for tensor ops.
///
/// All functions take `count` elements from each pointer; in-place use (an output equal to an
/// input) is allowed wherever the output is written at the same index it was read from. Every
/// loop runs 8 or 16 lanes at a time with a scalar tail.
public enum VectorOps {
    public typealias V = SIMD8<Float>

    @inlinable @inline(__always)
    static func load(_ p: UnsafePointer<Float>) -> V {
        UnsafeRawPointer(p).loadUnaligned(as: V.self)
    }

    @inlinable @inline(__always)
    static func store(_ v: V, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self)
    }

    /// Lane-wise max that ignores a NaN in `b` (compiles to `vmaxps`; the standard library's
    /// `pointwiseMax` is not inlined and costs a call per vector).
    @inlinable @inline(__always)
    static func vmax(_ a: V, _ b: V) -> V { a.replacing(with: b, where: b .> a) }

    // MARK: - Reductions

    /// Returns sum_i x[i] * y[i] (four SIMD8 accumulators).
    @inlinable
    public static func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, count n: Int) -> Float {
        var a0 = V(), a1 = V(), a2 = V(), a3 = V()
        var i = 0
        while i + 32 <= n {
            a0.addProduct(load(x + i), load(y + i))
            a1.addProduct(load(x + i + 8), load(y + i + 8))
            a2.addProduct(load(x + i + 16), load(y + i + 16))
            a3.addProduct(load(x + i + 24), load(y + i + 24))
            i += 32
        }
        while i + 8 <= n {
            a0.addProduct(load(x + i), load(y + i))
            i += 8
        }
        var s = ((a0 + a1) + (a2 + a3)).sum()
        while i < n { s += x[i] * y[i]; i += 1 }
        return s
    }

    /// Returns sum_i x[i].
    @inlinable
    public static func sum(_ x: UnsafePointer<Float>, count n: Int) -> Float {
        var a0 = V(), a1 = V()
        var i = 0
        while i + 16 <= n {
            a0 += load(x + i); a1 += load(x + i + 8)
            i += 16
        }
        if i + 8 <= n { a0 += load(x + i); i += 8 }
        var s = (a0 + a1).sum()
        while i < n { s += x[i]; i += 1 }
        return s
    }

    /// Returns max_i x[i] (`-infinity` for `count == 0`; NaNs are ignored unless all are NaN).
    @inlinable
    public static func max(_ x: UnsafePointer<Float>, count n: Int) -> Float {
        var m0 = V(repeating: -.infinity), m1 = m0
        var i = 0
        while i + 16 <= n {
            m0 = vmax(m0, load(x + i)); m1 = vmax(m1, load(x + i + 8))
            i += 16
        }
        if i + 8 <= n { m0 = vmax(m0, load(x + i)); i += 8 }
        let v = vmax(m0, m1)
        var m = v[0]
        for j in 1..<8 where v[j] > m { m = v[j] }
        while i < n { if x[i] > m { m = x[i] }; i += 1 }
        return m
    }

    /// Returns the index of the first largest element (0 for `count == 0`; NaNs are ignored).
    @inlinable
    public static func argmax(_ x: UnsafePointer<Float>, count n: Int) -> Int {
        if n == 0 { return 0 }
        let m = max(x, count: n)
        for i in 0..<n where x[i] == m { return i }
        return 0
    }

    // MARK: - Elementwise

    /// y += a * x.
    @inlinable
    public static func axpy(_ a: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count n: Int) {
        let va = V(repeating: a)
        var i = 0
        while i + 16 <= n {
            var y0 = load(y + i), y1 = load(y + i + 8)
            y0.addProduct(va, load(x + i)); y1.addProduct(va, load(x + i + 8))
            store(y0, y + i); store(y1, y + i + 8)
            i += 16
        }
        while i + 8 <= n {
            var y0 = load(y + i)
            y0.addProduct(va, load(x + i))
            store(y0, y + i)
            i += 8
        }
        while i < n { y[i] += a * x[i]; i += 1 }
    }

    /// x *= a, in place.
    @inlinable
    public static func scale(_ x: UnsafeMutablePointer<Float>, by a: Float, count n: Int) {
        scale(UnsafePointer(x), by: a, into: x, count: n)
    }

    /// y = a * x.
    @inlinable
    public static func scale(_ x: UnsafePointer<Float>, by a: Float, into y: UnsafeMutablePointer<Float>, count n: Int) {
        let va = V(repeating: a)
        var i = 0
        while i + 8 <= n { store(load(x + i) * va, y + i); i += 8 }
        while i < n { y[i] = x[i] * a; i += 1 }
    }

    /// z = x + y.
    @inlinable
    public static func add(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, into z: UnsafeMutablePointer<Float>, count n: Int) {
        var i = 0
        while i + 8 <= n { store(load(x + i) + load(y + i), z + i); i += 8 }
        while i < n { z[i] = x[i] + y[i]; i += 1 }
    }

    /// z = x - y.
    @inlinable
    public static func sub(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, into z: UnsafeMutablePointer<Float>, count n: Int) {
        var i = 0
        while i + 8 <= n { store(load(x + i) - load(y + i), z + i); i += 8 }
        while i < n { z[i] = x[i] - y[i]; i += 1 }
    }

    /// z = x * y (elementwise).
    @inlinable
    public static func mul(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, into z: UnsafeMutablePointer<Float>, count n: Int) {
        var i = 0
        while i + 8 <= n { store(load(x + i) * load(y + i), z + i); i += 8 }
        while i < n { z[i] = x[i] * y[i]; i += 1 }
    }

    /// z = x / y (elementwise).
    @inlinable
    public static func div(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, into z: UnsafeMutablePointer<Float>, count n: Int) {
        var i = 0
        while i + 8 <= n { store(load(x + i) / load(y + i), z + i); i += 8 }
        while i < n { z[i] = x[i] / y[i]; i += 1 }
    }

    // MARK: - exp and friends

    /// e^x for 8 lanes, within 2 ulp for normal results (Cephes `expf`: range reduction by
    /// ln 2 in two parts, degree-6 polynomial, then scaling by 2^n in two steps so that
    /// subnormal results are right). x > 88.72 gives +inf, x < -103.97 (and -inf) gives 0,
    /// NaN stays NaN.
    @inlinable @inline(__always)
    public static func exp(_ x: V) -> V {
        let maxX: Float = 88.72283935546875, minX: Float = -103.972084
        let lo = V(repeating: minX), hi = V(repeating: maxX)
        var xc = x.replacing(with: lo, where: x .< lo)
        xc.replace(with: hi, where: xc .> hi)
        // n = round(x / ln 2), via the 1.5 * 2^23 trick (exact for |n| < 2^22).
        let magic = V(repeating: 12582912)
        let t = xc * V(repeating: 1.44269504088896341) + magic
        let n = t - magic
        var r = xc.addingProduct(n, V(repeating: -0.693359375))
        r = r.addingProduct(n, V(repeating: 2.12194440e-4))
        var p = V(repeating: 1.9875691500e-4)
        p = V(repeating: 1.3981999507e-3).addingProduct(p, r)
        p = V(repeating: 8.3334519073e-3).addingProduct(p, r)
        p = V(repeating: 4.1665795894e-2).addingProduct(p, r)
        p = V(repeating: 1.6666665459e-1).addingProduct(p, r)
        p = V(repeating: 5.0000001201e-1).addingProduct(p, r)
        var y = (r + V(repeating: 1)).addingProduct(p, r * r)
        // 2^n as 2^n1 * 2^n2 with n1 = n >> 1, so that n in [-150, 128] never leaves the normal range.
        let ni = unsafeBitCast(t, to: SIMD8<Int32>.self) &- unsafeBitCast(magic, to: SIMD8<Int32>.self)
        let n1 = ni &>> 1, n2 = ni &- n1
        let s1 = unsafeBitCast((n1 &+ 127) &<< 23, to: V.self)
        let s2 = unsafeBitCast((n2 &+ 127) &<< 23, to: V.self)
        y = y * s1 * s2
        y.replace(with: .infinity, where: x .> V(repeating: maxX))
        y.replace(with: 0, where: x .< V(repeating: minX))
        y.replace(with: x, where: x .!= x)
        return y
    }

    /// Scalar e^x with the same accuracy as the SIMD version (and the same results).
    @inlinable
    public static func exp(_ x: Float) -> Float {
        exp(V(repeating: x))[0]
    }

    /// y = e^x elementwise.
    @inlinable
    public static func exp(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count n: Int) {
        map(x, into: y, count: n) { exp($0) }
    }

    /// tanh for 8 lanes (Cephes `tanhf`: odd polynomial for |x| < 0.625, else 1 - 2 / (e^2|x| + 1)).
    @inlinable @inline(__always)
    public static func tanh(_ x: V) -> V {
        let ax = x.replacing(with: -x, where: x .< 0)
        let z = x * x
        var p = V(repeating: -5.70498872745e-3)
        p = V(repeating: 2.06390887954e-2).addingProduct(p, z)
        p = V(repeating: -5.37397155531e-2).addingProduct(p, z)
        p = V(repeating: 1.33314422036e-1).addingProduct(p, z)
        p = V(repeating: -3.33332819422e-1).addingProduct(p, z)
        let small = p * z * x + x
        let e = exp(ax + ax)
        var big = V(repeating: 1) - V(repeating: 2) / (e + V(repeating: 1))
        big.replace(with: -big, where: x .< 0)
        var y = small.replacing(with: big, where: ax .>= V(repeating: 0.625))
        y.replace(with: x, where: x .!= x)
        return y
    }

    /// Logistic sigmoid 1 / (1 + e^-x) for 8 lanes.
    @inlinable @inline(__always)
    public static func sigmoid(_ x: V) -> V {
        V(repeating: 1) / (V(repeating: 1) + exp(-x))
    }

    /// SiLU (swish) x * sigmoid(x) for 8 lanes.
    @inlinable @inline(__always)
    public static func silu(_ x: V) -> V {
        x / (V(repeating: 1) + exp(-x))
    }

    /// GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), 8 lanes.
    @inlinable @inline(__always)
    public static func gelu(_ x: V) -> V {
        let inner = V(repeating: 0.7978845608028654) * (x + V(repeating: 0.044715) * x * x * x)
        return V(repeating: 0.5) * x * (V(repeating: 1) + tanh(inner))
    }

    /// GELU with the exact erf form: 0.5 x (1 + erf(x / sqrt 2)) = 0.5 x erfc(-x / sqrt 2), 8 lanes.
    /// erfc(z) for z >= 0 uses Abramowitz & Stegun 7.1.26 (absolute error <= 1.5e-7).
    @inlinable @inline(__always)
    public static func geluErf(_ x: V) -> V {
        let z = x * V(repeating: 0.70710678118654752)
        let az = z.replacing(with: -z, where: z .< 0)
        let t = V(repeating: 1) / (V(repeating: 1) + V(repeating: 0.3275911) * az)
        var p = V(repeating: 1.061405429)
        p = V(repeating: -1.453152027).addingProduct(p, t)
        p = V(repeating: 1.421413741).addingProduct(p, t)
        p = V(repeating: -0.284496736).addingProduct(p, t)
        p = V(repeating: 0.254829592).addingProduct(p, t)
        let erfcAbs = p * t * exp(-(az * az))          // erfc(|z|)
        // 1 + erf(z) = erfc(-z): equals erfc(|z|) for z < 0 and 2 - erfc(|z|) for z >= 0.
        let onePlusErf = erfcAbs.replacing(with: V(repeating: 2) - erfcAbs, where: z .>= 0)
        return V(repeating: 0.5) * x * onePlusErf
    }

    /// y = tanh(x) elementwise.
    @inlinable
    public static func tanh(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count n: Int) {
        map(x, into: y, count: n) { tanh($0) }
    }

    /// y = sigmoid(x) elementwise.
    @inlinable
    public static func sigmoid(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count n: Int) {
        map(x, into: y, count: n) { sigmoid($0) }
    }

    /// y = silu(x) = x * sigmoid(x) elementwise.
    @inlinable
    public static func silu(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count n: Int) {
        map(x, into: y, count: n) { silu($0) }
    }

    /// y = gelu(x) elementwise (tanh approximation).
    @inlinable
    public static func gelu(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count n: Int) {
        map(x, into: y, count: n) { gelu($0) }
    }

    /// y = gelu(x) elementwise (erf form).
    @inlinable
    public static func geluErf(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count n: Int) {
        map(x, into: y, count: n) { geluErf($0) }
    }

    /// Applies an 8-lane function to `count` elements; the tail is padded into one vector.
    @inlinable @inline(__always)
    public static func map(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count n: Int,
                           _ f: (V) -> V) {
        var i = 0
        while i + 8 <= n { store(f(load(x + i)), y + i); i += 8 }
        if i < n {
            var v = V()
            for j in 0..<(n - i) { v[j] = x[i + j] }
            let r = f(v)
            for j in 0..<(n - i) { y[i + j] = r[j] }
        }
    }

    // MARK: - Softmax

    /// y = softmax(x) over `count` elements: e^(x - max) / sum. -inf entries give 0; a row that
    /// is all -inf gives all zeros (a fully masked row contributes nothing). `y` may equal `x`.
    @inlinable
    public static func softmax(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count n: Int) {
        if n == 0 { return }
        let m = max(x, count: n)
        if m == -.infinity {
            y.update(repeating: 0, count: n)
            return
        }
        let vm = V(repeating: m)
        var acc = V()
        var i = 0
        while i + 8 <= n {
            let e = exp(load(x + i) - vm)
            store(e, y + i); acc += e
            i += 8
        }
        var s = acc.sum()
        while i < n { let e = exp(x[i] - m); y[i] = e; s += e; i += 1 }
        scale(y, by: 1 / s, count: n)
    }

    /// y = log_softmax(x) = x - max - log(sum e^(x - max)). An all -inf row gives all -inf.
    @inlinable
    public static func logSoftmax(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count n: Int) {
        if n == 0 { return }
        let m = max(x, count: n)
        if m == -.infinity {
            y.update(repeating: -.infinity, count: n)
            return
        }
        let vm = V(repeating: m)
        var acc = V()
        var i = 0
        while i + 8 <= n { acc += exp(load(x + i) - vm); i += 8 }
        var s = acc.sum()
        while i < n { s += exp(x[i] - m); i += 1 }
        let shift = m + logf(s)
        let vs = V(repeating: shift)
        i = 0
        while i + 8 <= n { store(load(x + i) - vs, y + i); i += 8 }
        while i < n { y[i] = x[i] - shift; i += 1 }
    }

    /// Row-wise softmax of a `rows x cols` matrix with row strides `ldx` and `ldy`.
    @inlinable
    public static func softmaxRows(_ x: UnsafePointer<Float>, ldx: Int, into y: UnsafeMutablePointer<Float>, ldy: Int,
                                   rows: Int, cols: Int) {
        for r in 0..<rows { softmax(x + r * ldx, into: y + r * ldy, count: cols) }
    }

    /// Row-wise log-softmax of a `rows x cols` matrix with row strides `ldx` and `ldy`.
    @inlinable
    public static func logSoftmaxRows(_ x: UnsafePointer<Float>, ldx: Int, into y: UnsafeMutablePointer<Float>, ldy: Int,
                                      rows: Int, cols: Int) {
        for r in 0..<rows { logSoftmax(x + r * ldx, into: y + r * ldy, count: cols) }
    }
}
