/// A small, fast, seeded random number generator (xoshiro256**, seeded through SplitMix64).
///
/// FrugalData uses its own generator so that shuffles, augmentations and partitions are
/// reproducible across Swift versions (the standard library's `shuffle(using:)` algorithm is not
/// guaranteed stable). Per-sample generators are derived from `(seed, epoch, index)` with
/// ``init(seed:epoch:index:)``, so results never depend on thread scheduling.
///
/// ```swift
/// var rng = DataRNG(seed: 42)
/// let u = rng.nextDouble()          // [0, 1)
/// let k = rng.int(below: 10)        // 0..<10, unbiased
/// ```
public struct DataRNG: RandomNumberGenerator, Sendable {
    @usableFromInline var s0: UInt64
    @usableFromInline var s1: UInt64
    @usableFromInline var s2: UInt64
    @usableFromInline var s3: UInt64

    /// Seeds the four state words from SplitMix64(seed).
    public init(seed: UInt64) {
        var sm = seed
        s0 = DataRNG.splitMix(&sm)
        s1 = DataRNG.splitMix(&sm)
        s2 = DataRNG.splitMix(&sm)
        s3 = DataRNG.splitMix(&sm)
    }

    /// A generator for one sample of one epoch: independent streams for every `(seed, epoch, index)`.
    public init(seed: UInt64, epoch: Int, index: Int) {
        self.init(seed: DataRNG.derive(seed, UInt64(bitPattern: Int64(epoch)), UInt64(bitPattern: Int64(index))))
    }

    /// SplitMix64 step: advances `state` and returns the next output.
    @inlinable public static func splitMix(_ state: inout UInt64) -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Mixes a seed with two more words into a new seed (used for per-epoch and per-sample streams).
    @inlinable public static func derive(_ seed: UInt64, _ a: UInt64, _ b: UInt64 = 0) -> UInt64 {
        var s = seed
        var h = splitMix(&s)
        s = h ^ (a &* 0xD6E8_FEB8_6659_FD93)
        h = splitMix(&s)
        s = h ^ (b &* 0xA076_1D64_78BD_642F)
        return splitMix(&s)
    }

    @inlinable public mutating func next() -> UInt64 {
        let result = ((s1 &* 5) << 7 | (s1 &* 5) >> 57) &* 9
        let t = s1 << 17
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = (s3 << 45) | (s3 >> 19)
        return result
    }

    /// Uniform in [0, 1) with 24 random bits.
    @inlinable public mutating func nextFloat() -> Float {
        Float(next() >> 40) * (1.0 / 16_777_216.0)
    }

    /// Uniform in [0, 1) with 53 random bits.
    @inlinable public mutating func nextDouble() -> Double {
        Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// Uniform in [a, b).
    @inlinable public mutating func uniform(_ a: Double, _ b: Double) -> Double {
        a + (b - a) * nextDouble()
    }

    /// Unbiased integer in `0..<n` (Lemire's multiply-shift with rejection). `n` must be positive.
    @inlinable public mutating func int(below n: Int) -> Int {
        precondition(n > 0, "DataRNG.int(below:) needs a positive bound")
        let bound = UInt64(n)
        var m = next().multipliedFullWidth(by: bound)
        if m.low < bound {
            let threshold = (0 &- bound) % bound
            while m.low < threshold { m = next().multipliedFullWidth(by: bound) }
        }
        return Int(m.high)
    }

    /// Unbiased integer in `range`.
    @inlinable public mutating func int(in range: ClosedRange<Int>) -> Int {
        range.lowerBound + int(below: range.upperBound - range.lowerBound + 1)
    }

    /// A Bernoulli draw: true with probability `p` (same convention as `torch.rand(1) < p`).
    @inlinable public mutating func bernoulli(_ p: Double) -> Bool { nextDouble() < p }

    /// Standard normal N(0, 1) (Box-Muller; one value per call).
    public mutating func normal() -> Double {
        var u1 = nextDouble()
        while u1 <= 0 { u1 = nextDouble() }
        let u2 = nextDouble()
        return (-2 * _log(u1)).squareRoot() * _cos(2 * Double.pi * u2)
    }

    /// Gamma(shape, 1) by Marsaglia and Tsang (2000); for shape < 1 uses Gamma(shape+1) * U^(1/shape).
    public mutating func gamma(shape: Double) -> Double {
        precondition(shape > 0, "gamma shape must be positive")
        if shape < 1 {
            var u = nextDouble()
            while u <= 0 { u = nextDouble() }
            return gamma(shape: shape + 1) * _pow(u, 1 / shape)
        }
        let d = shape - 1.0 / 3.0
        let c = 1 / (9 * d).squareRoot()
        while true {
            var x: Double
            var v: Double
            repeat {
                x = normal()
                v = 1 + c * x
            } while v <= 0
            v = v * v * v
            let u = nextDouble()
            if u < 1 - 0.0331 * x * x * x * x { return d * v }
            if u > 0, _log(u) < 0.5 * x * x + d * (1 - v + _log(v)) { return d * v }
        }
    }

    /// A draw from the symmetric Dirichlet(alpha, ..., alpha) over `count` categories.
    public mutating func dirichlet(alpha: Double, count: Int) -> [Double] {
        dirichlet(alphas: [Double](repeating: alpha, count: count))
    }

    /// A draw from Dirichlet(alphas) via normalised Gamma variates.
    public mutating func dirichlet(alphas: [Double]) -> [Double] {
        var g = alphas.map { gamma(shape: $0) }
        var sum = g.reduce(0, +)
        if !(sum > 0) || !sum.isFinite {
            // All variates underflowed (tiny alpha): put the mass on one random category.
            g = [Double](repeating: 0, count: alphas.count)
            if !g.isEmpty { g[int(below: g.count)] = 1 }
            sum = 1
        }
        return g.map { $0 / sum }
    }

    /// Fisher-Yates shuffle with this generator (stable across Swift versions).
    @inlinable public mutating func shuffle<T>(_ a: inout [T]) {
        var i = a.count - 1
        while i > 0 {
            let j = int(below: i + 1)
            if i != j { a.swapAt(i, j) }
            i -= 1
        }
    }

    /// A random permutation of `0..<n`.
    public mutating func permutation(_ n: Int) -> [Int] {
        var p = Array(0..<n)
        shuffle(&p)
        return p
    }
}

// libm without Foundation (keeps this file free of Foundation).
@usableFromInline func _log(_ x: Double) -> Double { DataMath.log(x) }
@usableFromInline func _cos(_ x: Double) -> Double { DataMath.cos(x) }
@usableFromInline func _pow(_ x: Double, _ y: Double) -> Double { DataMath.pow(x, y) }
