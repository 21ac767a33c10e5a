// Robust aggregation against poisoned updates (Yin et al. 2018, "Byzantine-robust distributed
// learning"): instead of the sample-weighted mean, each coordinate of the global step is
//   .median:           Δ_c = median_i Δ_i,c                  (the mean of the two middle values for even m)
//   .trimmedMean(β):   Δ_c = mean of Δ_i,c without the ⌊β·m⌋ smallest and ⌊β·m⌋ largest values
// over the m accepted updates (unweighted: a device cannot buy influence with a large sample count).
// A minority of arbitrary updates (fewer than half for the median, at most ⌊β·m⌋ for the trimmed
// mean) cannot move any coordinate outside the range of the honest devices' values.

/// The coordinate-wise rule of `RobustAggregation`.
public enum RobustRule: Sendable, Equatable, CustomStringConvertible {
    case median
    /// Trim this fraction of the updates from each end, in [0, 0.5).
    case trimmedMean(Double)

    public var description: String {
        switch self {
        case .median: return "median"
        case .trimmedMean(let b): return "trim:\(b)"
        }
    }

    /// w + rule(updates), coordinate by coordinate; w itself when there is no update.
    public func step(global: [Float], updates: [[Float]]) -> [Float] {
        let m = updates.count
        guard m > 0 else { return global }
        let n = global.count
        let trim: Int
        switch self {
        case .median: trim = (m - 1) / 2
        case .trimmedMean(let b): trim = min(Int((b * Double(m)).rounded(.down)), (m - 1) / 2)
        }
        var out = global
        var column = [Float](repeating: 0, count: m)
        out.withUnsafeMutableBufferPointer { o in
            column.withUnsafeMutableBufferPointer { col in
                for c in 0 ..< n {
                    for i in 0 ..< m { col[i] = updates[i][c] }
                    col.sort()
                    var sum = 0.0
                    for i in trim ..< m - trim { sum += Double(col[i]) }
                    o[c] += Float(sum / Double(m - 2 * trim))
                }
            }
        }
        return out
    }
}

/// Wraps a strategy whose aggregation is the weighted mean of the decoded updates and replaces
/// that mean by a coordinate-wise median or trimmed mean; everything else is the inner strategy's.
public final class RobustAggregation: FederatedStrategy {
    public let inner: any FederatedStrategy
    public let rule: RobustRule
    public var name: String { "\(inner.name)+\(rule)" }

    /// Throws for a trimmed-mean fraction outside [0, 0.5).
    public init(_ inner: any FederatedStrategy, rule: RobustRule) throws {
        if case .trimmedMean(let b) = rule, !(b >= 0 && b < 0.5) {
            throw FederatedError("trimmed-mean fraction \(b) must be in [0, 0.5)")
        }
        if let c = inner as? CompressedStrategy, c.broadcast != nil {
            throw FederatedError("robust aggregation replaces the weighted mean; \(c.name) compresses the aggregate for its downloads and cannot be wrapped")
        }
        self.inner = inner
        self.rule = rule
    }

    public func prepare(_ context: RoundContext, layout: TensorLayout) throws { try inner.prepare(context, layout: layout) }
    public func encodeDownload(global: [Float], device: Int, staleness: Int?, round: Int, layout: TensorLayout) throws -> [UInt8] {
        try inner.encodeDownload(global: global, device: device, staleness: staleness, round: round, layout: layout)
    }
    public func decodeDownload(_ bytes: [UInt8], device: Int, layout: TensorLayout) throws -> [Float] {
        try inner.decodeDownload(bytes, device: device, layout: layout)
    }
    public func batchSizes(_ context: RoundContext, bytesDown: [Int], defaultBatch: Int, localSteps: Int?,
                           layout: TensorLayout) throws -> [Int] {
        try inner.batchSizes(context, bytesDown: bytesDown, defaultBatch: defaultBatch, localSteps: localSteps, layout: layout)
    }
    public func encodeUpload(_ update: [Float], device: Int, layout: TensorLayout) throws -> [UInt8] {
        try inner.encodeUpload(update, device: device, layout: layout)
    }
    public func decodeUpload(_ bytes: [UInt8], device: Int, layout: TensorLayout) throws -> [Float] {
        try inner.decodeUpload(bytes, device: device, layout: layout)
    }
    public func aggregate(global: [Float], updates: [[Float]], weights: [Double]) -> [Float] {
        rule.step(global: global, updates: updates)
    }
    public func uploadSettings(device: Int) -> [String: Double] { inner.uploadSettings(device: device) }
    public func applyUploadSettings(_ settings: [String: Double], device: Int) throws {
        try inner.applyUploadSettings(settings, device: device)
    }
    public func modelCopy(device: Int) -> [Float]? { inner.modelCopy(device: device) }
    public func forgetDevice(_ device: Int) { inner.forgetDevice(device) }
    public func saveState() -> StrategyState { inner.saveState() }
    public func restoreState(_ state: StrategyState, layout: TensorLayout) throws { try inner.restoreState(state, layout: layout) }
}
