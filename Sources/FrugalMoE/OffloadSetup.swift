import Foundation
import FrugalCore
import FrugalModels

/// Which slow tier an offloaded run reads experts from.
public enum SlowTierChoice: Sendable, Equatable {
    /// The offload store at this path, read with pread and dropped pages.
    case disk(store: String)
    /// Host memory behind an emulated link of this many bytes per second.
    case link(bytesPerSecond: Double)
}

/// Builds an `OffloadingExecutor` from command-line style choices.
public enum OffloadSetup {
    /// - Parameters:
    ///   - source: the model (for shapes, prediction and, for the link tier, the weights).
    ///   - policy: a `--policy` name.
    ///   - budget: `--memory-budget` text (`512MiB`, `2GB`, `40%`).
    ///   - tier: the slow tier.
    ///   - theta: MoEpic's uniform split ratio (ignored when `plan` is given).
    ///   - plan: MoEpic's per-layer θ_l and B_l.
    public static func executor(source: MoEExpertSource, policy: String, budget: String, tier: SlowTierChoice,
                                theta: Double = 0.4, plan: CachePlan? = nil, ioThreads: Int = 2,
                                tuning: PolicyTuning = PolicyTuning()) throws -> OffloadingExecutor {
        guard let kind = PolicyKind(rawValue: policy) else {
            throw OffloadError.badArgument("unknown policy '\(policy)' (one of \(PolicyKind.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        let slow: SlowTier
        switch tier {
        case .disk(let path):
            let store = try OffloadStore(path: path)
            guard store.shape == source.moeShape else {
                throw OffloadError.badStore(file: path, offset: 24, reason: "store shape \(store.shape) does not match the model's \(source.moeShape)")
            }
            slow = DiskTier(store: store, ioThreads: ioThreads)
        case .link(let bw):
            slow = try HostLinkTier(source: source, bandwidth: bw)
        }
        return try executor(source: source, kind: kind, budget: budget, slow: slow, theta: theta, plan: plan, tuning: tuning)
    }

    /// The same with an existing slow tier (shared by several runs).
    public static func executor(source: MoEExpertSource, kind: PolicyKind, budget: String, slow: SlowTier,
                                theta: Double = 0.4, plan: CachePlan? = nil,
                                tuning: PolicyTuning = PolicyTuning()) throws -> OffloadingExecutor {
        let lay = SegmentLayout(shape: source.moeShape, elementBytes: slow.dtype.size, theta: Array(repeating: 1, count: source.moeShape.layers))
        let bytes = try MemoryBudget.parse(budget, totalExpertBytes: lay.totalExpertBytes)
        let p = try PolicyFactory.make(kind, shape: source.moeShape, elementBytes: slow.dtype.size, budget: bytes, theta: theta, plan: plan, tuning: tuning)
        return try OffloadingExecutor(policy: p, tier: slow, budget: max(bytes, kind == .full ? lay.totalExpertBytes : 0), source: source)
    }
}

extension OffloadStats {
    /// A human-readable summary (one line per item, per-layer hit rates).
    public func summary() -> String {
        func mib(_ b: Int) -> String { String(format: "%.2f MiB", Double(b) / 1048576) }
        var lines = [
            "policy            \(policy) on \(tier)",
            "top-cache hits    \(String(format: "%.1f%%", 100 * cacheHitRate))",
            "hit rate          \(String(format: "%.1f%%", 100 * hitRate)) (per layer: \(hitRatePerLayer.map { String(format: "%.0f", 100 * $0) }.joined(separator: " ")))",
        ]
        if let a = predictionAccuracy { lines.append("prediction acc.   \(String(format: "%.1f%%", 100 * a))") }
        lines += [
            "bytes loaded      \(mib(bytesLoaded)) (demand \(mib(demandBytes)), prefetch \(mib(prefetchBytes)))",
            "stalled on loads  \(String(format: "%.3f s", stallSeconds))",
            "expert compute    \(String(format: "%.3f s", computeSeconds))",
            "peak fast tier    \(mib(peakFastBytes)) of \(mib(budgetBytes)) budget",
        ]
        return lines.joined(separator: "\n")
    }
}

extension OffloadingExecutor: ExpertExecutorReporting {
    public func resetStatistics() { resetStats() }
    public func report(into g: inout MoEGenerationStats) {
        let s = stats
        g.hitRatePerLayer = s.hitRatePerLayer
        g.predictionAccuracy = s.predictionAccuracy
        g.bytesLoaded = s.bytesLoaded
        g.stallSeconds = s.stallSeconds
        g.peakFastTierBytes = s.peakFastBytes
        g.memoryBudgetBytes = s.budgetBytes
    }
}

extension ExpertKernel {
    /// Median seconds to compute one expert of `shape` and `dtype` at batch 1 (random weights in
    /// a fresh buffer, as the fast tier holds them), over `reps` runs.
    public static func measureExpertSeconds(shape: MoEShape, dtype: DType, reps: Int = 21) -> Double {
        let h = shape.hidden, I = shape.intermediate
        let bytes = I * ExpertSplit.rowBytes(hidden: h, dtype: dtype)
        let w = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 4096)
        defer { w.deallocate() }
        // Small values in any dtype: 0x3c00-ish halves / tiny floats; exact values do not matter.
        w.initializeMemory(as: UInt8.self, repeating: 0x21, count: bytes)
        var x = [Float](repeating: 0.01, count: h), y = [Float](repeating: 0, count: h), wt: Float = 1
        var times: [Double] = []
        for _ in 0..<reps {
            let t0 = DispatchTime.now().uptimeNanoseconds
            accumulate(rows: w, rowCount: I, hidden: h, dtype: dtype, x: &x, tokens: 1, weights: &wt, y: &y)
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
        return times.sorted()[reps / 2]
    }
}
