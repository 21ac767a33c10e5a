#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A seeded, reproducible random number generator (xoshiro256**, seeded through SplitMix64).
/// The same seed gives the same stream on every machine. Not thread-safe: give each thread or
/// device its own generator (`fork()` derives independent ones).
public struct RNG: RandomNumberGenerator, Sendable {
    var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var z = seed
        func splitmix(_ z: inout UInt64) -> UInt64 {
            z &+= 0x9E37_79B9_7F4A_7C15
            var r = z
            r = (r ^ (r >> 30)) &* 0xBF58_476D_1CE4_E5B9
            r = (r ^ (r >> 27)) &* 0x94D0_49BB_1331_11EB
            return r ^ (r >> 31)
        }
        s = (splitmix(&z), splitmix(&z), splitmix(&z), splitmix(&z))
    }

    /// The generator's state (for checkpoints); `RNG(state:)` continues the same stream.
    public var state: [UInt64] { [s.0, s.1, s.2, s.3] }

    /// The generator whose `state` was this; nil unless 4 words, not all zero.
    public init?(state: [UInt64]) {
        guard state.count == 4, state.contains(where: { $0 != 0 }) else { return nil }
        s = (state[0], state[1], state[2], state[3])
    }

    @inlinable @inline(__always)
    static func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    public mutating func next() -> UInt64 {
        let result = RNG.rotl(s.1 &* 5, 7) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3
        s.2 ^= t
        s.3 = RNG.rotl(s.3, 45)
        return result
    }

    /// An independent generator derived from this one's stream and `stream`.
    public mutating func fork(_ stream: UInt64 = 0) -> RNG { RNG(seed: next() ^ (stream &* 0x9E37_79B9_7F4A_7C15)) }

    /// Uniform in [0, 1) with 24 bits of precision.
    public mutating func uniform() -> Float { Float(next() >> 40) * (1.0 / 16_777_216.0) }
    /// Uniform in [lo, hi).
    public mutating func uniform(_ lo: Float, _ hi: Float) -> Float { lo + (hi - lo) * uniform() }
    /// Uniform integer in 0..<n.
    public mutating func int(_ n: Int) -> Int {
        precondition(n > 0, "RNG.int needs a positive bound")
        return Int(next() % UInt64(n))  // bias < n/2^64, negligible
    }
    /// Standard normal (Box-Muller).
    public mutating func normal() -> Float {
        var u1 = uniform()
        while u1 <= 1e-12 { u1 = uniform() }
        let u2 = uniform()
        return sqrtf(-2 * logf(u1)) * cosf(2 * Float.pi * u2)
    }
    /// True with probability p.
    public mutating func bernoulli(_ p: Float) -> Bool { uniform() < p }
    /// A random permutation of 0..<n (Fisher-Yates).
    public mutating func permutation(_ n: Int) -> [Int] {
        var a = Array(0..<n)
        if n > 1 { for i in stride(from: n - 1, to: 0, by: -1) { a.swapAt(i, int(i + 1)) } }
        return a
    }
    /// An index drawn with probability proportional to `weights` (non-negative, not all zero).
    public mutating func categorical(_ weights: [Float]) -> Int {
        let total = weights.reduce(0, +)
        precondition(total > 0, "categorical: weights sum to \(total)")
        var r = uniform() * total
        for (i, w) in weights.enumerated() { r -= w; if r < 0 { return i } }
        return weights.lastIndex { $0 > 0 } ?? 0
    }
    /// Gamma(shape, 1) by Marsaglia-Tsang.
    public mutating func gamma(_ shape: Float) -> Float {
        if shape < 1 { return gamma(shape + 1) * powf(Swift.max(uniform(), 1e-12), 1 / shape) }
        let d = shape - 1.0 / 3.0, c = 1 / sqrtf(9 * d)
        while true {
            var x: Float, v: Float
            repeat { x = normal(); v = 1 + c * x } while v <= 0
            v = v * v * v
            let u = uniform()
            if u < 1 - 0.0331 * x * x * x * x || logf(u) < 0.5 * x * x + d * (1 - v + logf(v)) { return d * v }
        }
    }
}

extension Tensor {
    /// Uniform values in [lo, hi).
    public static func uniform(_ shape: [Int], _ lo: Float = 0, _ hi: Float = 1, rng: inout RNG, requiresGrad: Bool = false) -> Tensor {
        let t = Tensor(zeros: shape, zeroed: false, requiresGrad: requiresGrad)
        let p = t.pointer
        for i in 0..<t.count { p[i] = rng.uniform(lo, hi) }
        return t
    }
    /// Normal values with mean and standard deviation.
    public static func normal(_ shape: [Int], mean: Float = 0, std: Float = 1, rng: inout RNG, requiresGrad: Bool = false) -> Tensor {
        let t = Tensor(zeros: shape, zeroed: false, requiresGrad: requiresGrad)
        let p = t.pointer
        for i in 0..<t.count { p[i] = mean + std * rng.normal() }
        return t
    }
    /// 0/1 values, 1 with probability p.
    public static func bernoulli(_ shape: [Int], p: Float, rng: inout RNG) -> Tensor {
        let t = Tensor(zeros: shape, zeroed: false)
        let q = t.pointer
        for i in 0..<t.count { q[i] = rng.uniform() < p ? 1 : 0 }
        return t
    }
    public static func zeros(_ shape: [Int], requiresGrad: Bool = false) -> Tensor { Tensor(zeros: shape, requiresGrad: requiresGrad) }
    public static func ones(_ shape: [Int], requiresGrad: Bool = false) -> Tensor { full(shape, 1, requiresGrad: requiresGrad) }
    public static func full(_ shape: [Int], _ v: Float, requiresGrad: Bool = false) -> Tensor {
        let t = Tensor(zeros: shape, zeroed: false, requiresGrad: requiresGrad)
        t.pointer.update(repeating: v, count: t.count)
        return t
    }
    /// 0, 1, ..., n-1 as floats.
    public static func arange(_ n: Int) -> Tensor { Tensor((0..<n).map(Float.init)) }
}

import Synchronization

/// A process-wide seeded generator for parameter initialisation when no generator is passed.
/// `Random.seed(_:)` makes model construction reproducible.
public enum Random {
    static let state = Mutex(RNG(seed: 0x5EED))
    /// Reseeds the global generator.
    public static func seed(_ s: UInt64) { state.withLock { $0 = RNG(seed: s) } }
    /// Runs `body` with exclusive access to the global generator.
    public static func with<T>(_ body: (inout RNG) -> T) -> T { state.withLock { body(&$0) } }
}
