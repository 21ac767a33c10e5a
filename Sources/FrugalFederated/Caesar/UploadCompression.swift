#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Caesar's importance-aware upload compression (device → server).
//
// Importance of device i from its local data:
//   label divergence   D_i = KL(p_i ‖ p_global) = Σ_c p_i(c) · ln(p_i(c) / p_global(c)),
//     with both distributions smoothed as p̃(c) = (p(c) + ε) / (1 + C·ε) (C classes, default
//     ε = 1e-6) so a class missing from either side gives a large but finite divergence;
//     p_global is the label distribution of all data (by default the sum of the devices' counts).
//   score C_i (higher = more important), a configurable combination of volume n_i and D_i:
//     .volumeExpKL  (default)  C_i = (n_i / n̄) · exp(−D_i)       n̄ = mean volume
//     .volumeOverKL            C_i = (n_i / n̄) / (1 + D_i)
//     .rankSum                 C_i = −(rank of n_i, descending + rank of D_i, ascending)
//   Much data whose labels look like the population's → an update worth sending precisely.
// Ratios: devices sorted by C_i (descending; ties by index) get upload ratios spread linearly
//   ratio_r = θ_u,max − (θ_u,max − θ_u,min) · r / (m − 1),   r = 0 … m−1 (m = 1: θ_u,max),
//   [θ_u,min, θ_u,max] = [0.1, 0.5]; the ratio is the fraction of entries kept.
// Upload operator: top-k with error feedback, sent as (positions, values) — `TopKCodec` with that
//   ratio (the device keeps its `CodecState` across rounds).

/// Per-device upload plan: divergence, score, rank and kept fraction.
public struct UploadPlan: Sendable, Equatable {
    /// D_i = KL(p_i ‖ p_global), nats.
    public var divergence: [Double]
    /// Importance score C_i (higher = more important).
    public var score: [Double]
    /// Rank by score, 0 = most important.
    public var rank: [Int]
    /// Fraction of entries each device keeps, in [θ_u,min, θ_u,max].
    public var ratio: [Double]
}

/// Caesar's importance-aware upload ratios.
///
///     let up = UploadCompression()
///     let plan = try up.plan(labelCounts: [[50, 50], [90, 10], [5, 5]])
///     let codec = up.codec(ratio: plan.ratio[0])      // TopKCodec with error feedback
public struct UploadCompression: Sendable {
    public enum Score: Sendable, Equatable {
        /// C_i = (n_i / n̄) · exp(−D_i).
        case volumeExpKL
        /// C_i = (n_i / n̄) / (1 + D_i).
        case volumeOverKL
        /// C_i = −(volume rank, descending + divergence rank, ascending).
        case rankSum
    }

    public var thetaMin: Double
    public var thetaMax: Double
    /// Smoothing ε for label distributions.
    public var epsilon: Double
    public var score: Score
    /// Encoding of the uploaded values.
    public var values: ValueEncoding

    public init(thetaMin: Double = 0.1, thetaMax: Double = 0.5, epsilon: Double = 1e-6,
                score: Score = .volumeExpKL, values: ValueEncoding = .float32) {
        self.thetaMin = thetaMin
        self.thetaMax = thetaMax
        self.epsilon = epsilon
        self.score = score
        self.values = values
    }

    /// Smoothed label distribution p̃(c) = (count_c / Σcount + ε) / (1 + C·ε).
    public static func distribution(counts: [Int], epsilon: Double) throws -> [Double] {
        guard !counts.isEmpty else { throw CodecError("label counts are empty") }
        guard counts.allSatisfy({ $0 >= 0 }) else { throw CodecError("label counts \(counts) contain a negative count") }
        guard epsilon >= 0, epsilon.isFinite else { throw CodecError("smoothing ε = \(epsilon) must be finite and ≥ 0") }
        let total = Double(counts.reduce(0, +))
        let c = Double(counts.count)
        return counts.map { ((total > 0 ? Double($0) / total : 1 / c) + epsilon) / (1 + c * epsilon) }
    }

    /// KL(p ‖ q) = Σ p_c ln(p_c / q_c) in nats; terms with p_c = 0 contribute 0, and p_c > 0 with
    /// q_c = 0 gives +∞ (smooth first to avoid it).
    public static func klDivergence(_ p: [Double], _ q: [Double]) throws -> Double {
        guard p.count == q.count else { throw CodecError("KL: distributions have \(p.count) and \(q.count) classes") }
        var d = 0.0
        for (pc, qc) in zip(p, q) where pc > 0 {
            if qc <= 0 { return .infinity }
            d += pc * log(pc / qc)
        }
        return max(0, d)
    }

    /// Plans upload ratios for the devices whose per-class label counts are given;
    /// `globalCounts` defaults to their sum.
    public func plan(labelCounts: [[Int]], globalCounts: [Int]? = nil) throws -> UploadPlan {
        guard thetaMin >= 0, thetaMax <= 1, thetaMin <= thetaMax else {
            throw CodecError("upload ratio range [\(thetaMin), \(thetaMax)] is not inside [0, 1]")
        }
        let m = labelCounts.count
        guard m > 0 else { return UploadPlan(divergence: [], score: [], rank: [], ratio: []) }
        let classes = labelCounts[0].count
        for (i, c) in labelCounts.enumerated() where c.count != classes {
            throw CodecError("device \(i) has \(c.count) label counts, device 0 has \(classes)")
        }
        var global = globalCounts ?? [Int](repeating: 0, count: classes)
        if globalCounts == nil { for c in labelCounts { for j in 0 ..< classes { global[j] += c[j] } } }
        guard global.count == classes else { throw CodecError("global counts have \(global.count) classes, devices \(classes)") }
        let q = try Self.distribution(counts: global, epsilon: epsilon)
        var divergence = [Double]()
        for c in labelCounts {
            divergence.append(try Self.klDivergence(try Self.distribution(counts: c, epsilon: epsilon), q))
        }
        let volume = labelCounts.map { Double($0.reduce(0, +)) }
        let meanVolume = max(volume.reduce(0, +) / Double(m), .leastNormalMagnitude)
        var scores = [Double]()
        switch score {
        case .volumeExpKL:
            scores = (0 ..< m).map { volume[$0] / meanVolume * exp(-divergence[$0]) }
        case .volumeOverKL:
            scores = (0 ..< m).map { volume[$0] / meanVolume / (1 + divergence[$0]) }
        case .rankSum:
            let byVolume = (0 ..< m).sorted { volume[$0] != volume[$1] ? volume[$0] > volume[$1] : $0 < $1 }
            let byDivergence = (0 ..< m).sorted { divergence[$0] != divergence[$1] ? divergence[$0] < divergence[$1] : $0 < $1 }
            var rv = [Int](repeating: 0, count: m), rd = [Int](repeating: 0, count: m)
            for (r, i) in byVolume.enumerated() { rv[i] = r }
            for (r, i) in byDivergence.enumerated() { rd[i] = r }
            scores = (0 ..< m).map { -Double(rv[$0] + rd[$0]) }
        }
        let order = (0 ..< m).sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }
        var rank = [Int](repeating: 0, count: m)
        var ratio = [Double](repeating: thetaMax, count: m)
        for (r, i) in order.enumerated() {
            rank[i] = r
            ratio[i] = m == 1 ? thetaMax : thetaMax - (thetaMax - thetaMin) * Double(r) / Double(m - 1)
        }
        return UploadPlan(divergence: divergence, score: scores, rank: rank, ratio: ratio)
    }

    /// The upload operator for a planned ratio: top-k with error feedback, (positions, values).
    public func codec(ratio: Double) -> TopKCodec {
        TopKCodec(ratio: ratio, values: values, errorFeedback: true)
    }
}
