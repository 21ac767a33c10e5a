import Foundation
import FrugalModels

extension SegmentCachePolicy {
    /// `full`: every expert resident from the start (the latency floor); needs all expert bytes.
    public static func full(layout: SegmentLayout) -> SegmentCachePolicy {
        let L = layout.shape.layers
        return SegmentCachePolicy(name: "full", layout: layout,
                                  plan: CachePlan(theta: Array(repeating: 1, count: L),
                                                  layerBudget: Array(repeating: layout.shape.experts * layout.expertBytes, count: L)),
                                  stagingBytes: 0, usesPrediction: false, ranking: LRURanking(), preloadAll: true)
    }

    /// `on-demand`: no cache; each routed expert loads when needed and is freed after use.
    public static func onDemand(layout: SegmentLayout, stagingBytes: Int) -> SegmentCachePolicy {
        let L = layout.shape.layers
        return SegmentCachePolicy(name: "on-demand", layout: layout,
                                  plan: CachePlan(theta: Array(repeating: 1, count: L), layerBudget: Array(repeating: 0, count: L)),
                                  stagingBytes: stagingBytes, usesPrediction: false, ranking: nil)
    }

    /// `prefetch`: whole experts in per-layer LRU caches, plus next-layer prediction: while layer
    /// l computes, the predicted experts of layer l+1 that are not cached are loaded into staging,
    /// and enter the cache when used (the AdapMoE / ProMoE design; mispredictions are dropped
    /// without polluting the cache).
    public static func prefetch(layout: SegmentLayout, layerBudget: [Int], stagingBytes: Int) -> SegmentCachePolicy {
        SegmentCachePolicy(name: "prefetch", layout: layout,
                           plan: CachePlan(theta: Array(repeating: 1, count: layerBudget.count), layerBudget: layerBudget),
                           stagingBytes: stagingBytes, usesPrediction: true, ranking: LRURanking())
    }
}

/// Builds a policy from `--policy`, a total fast-tier budget and (for MoEpic) a θ or a plan.
public enum PolicyFactory {
    /// Staging bytes a policy needs at most: its current layer's transient segments (nothing when
    /// every routed top is admitted to a cache that holds topK of them and there is no bottom)
    /// plus one layer's prefetches.
    public static func stagingBytes(layout: SegmentLayout, plan: CachePlan, caches: Bool, admitAlways: Bool,
                                     prefetches: Bool) -> Int {
        let k = layout.shape.topK, S = layout.expertBytes
        var demand = 0
        for l in 0..<layout.shape.layers {
            let top = layout.topBytes(layer: l), bottom = S - top
            let topsAdmitted = caches && admitAlways && top > 0 && plan.layerBudget[l] >= k * top
            demand = max(demand, k * (topsAdmitted ? bottom : S))
        }
        return demand + (prefetches ? k * S : 0)
    }

    /// A policy of `kind` within `budget` bytes of fast tier (caches + staging).
    /// - Parameters:
    ///   - theta: MoEpic's uniform split ratio when `plan` is nil.
    ///   - plan: MoEpic's per-layer θ_l and B_l (Σ B_l + staging must fit the budget).
    /// - Throws: `OffloadError.budget` when the budget is below one layer's working set (topK
    ///   experts), or below all experts for `full`, or when the plan does not fit.
    public static func make(_ kind: PolicyKind, shape: MoEShape, elementBytes: Int, budget: Int,
                            theta: Double = 0.4, plan: CachePlan? = nil, admitByScore: Bool = false) throws -> SegmentCachePolicy {
        let L = shape.layers
        let whole = SegmentLayout(shape: shape, elementBytes: elementBytes, theta: Array(repeating: 1, count: L))
        let S = whole.expertBytes, working = shape.topK * S
        func mib(_ b: Int) -> String { String(format: "%.2f MiB", Double(b) / 1048576) }
        if kind == .full {
            guard budget >= whole.totalExpertBytes else {
                throw OffloadError.budget("policy full needs all expert bytes (\(whole.totalExpertBytes) B = \(mib(whole.totalExpertBytes))) resident; budget is \(budget) B")
            }
            return .full(layout: whole)
        }
        guard budget >= working else {
            throw OffloadError.budget("\(budget) B (\(mib(budget))) is smaller than one layer's working set: top-\(shape.topK) experts x \(S) B = \(working) B (\(mib(working)))")
        }
        // Split the budget: staging first (as small as the policy allows), the rest over layers.
        func layered(theta: [Double], prefetches: Bool, admitAlways: Bool) throws -> (SegmentLayout, CachePlan, Int) {
            let lay = SegmentLayout(shape: shape, elementBytes: elementBytes, theta: theta)
            if let plan {
                let st = stagingBytes(layout: lay, plan: plan, caches: true, admitAlways: admitAlways, prefetches: prefetches)
                guard plan.totalCacheBytes + st <= budget else {
                    throw OffloadError.budget("plan caches \(plan.totalCacheBytes) B + staging \(st) B exceed the budget \(budget) B")
                }
                return (lay, plan, st)
            }
            // Try the smaller staging; fall back to the larger when the layer caches get too small.
            var best: (SegmentLayout, CachePlan, Int)? = nil
            for guess in [0, working] {
                let base = guess + (prefetches ? working : 0)
                let minStage = stagingBytes(layout: lay, plan: CachePlan(theta: theta, layerBudget: Array(repeating: Int.max / 4, count: L)),
                                            caches: true, admitAlways: admitAlways, prefetches: prefetches)
                let reserve = max(base, minStage)
                if reserve > budget { continue }
                let p = CachePlan(theta: theta, layerBudget: Array(repeating: (budget - reserve) / L, count: L))
                let need = stagingBytes(layout: lay, plan: p, caches: true, admitAlways: admitAlways, prefetches: prefetches)
                if need <= reserve { best = (lay, p, need); break }
            }
            guard let best else {
                throw OffloadError.budget("\(budget) B (\(mib(budget))) cannot hold policy \(kind.rawValue)'s staging of \(working + (prefetches ? working : 0)) B")
            }
            return best
        }
        switch kind {
        case .full: fatalError("handled above")
        case .onDemand:
            return .onDemand(layout: whole, stagingBytes: working)
        case .lru:
            let (lay, p, st) = try layered(theta: Array(repeating: 1, count: L), prefetches: false, admitAlways: true)
            return .lru(layout: lay, layerBudget: p.layerBudget, stagingBytes: st)
        case .lfu:
            let (lay, p, st) = try layered(theta: Array(repeating: 1, count: L), prefetches: false, admitAlways: true)
            return .lfu(layout: lay, layerBudget: p.layerBudget, stagingBytes: st)
        case .prefetch:
            let (lay, p, st) = try layered(theta: Array(repeating: 1, count: L), prefetches: true, admitAlways: true)
            return .prefetch(layout: lay, layerBudget: p.layerBudget, stagingBytes: st)
        case .moepic:
            if plan != nil {
                let (lay, p, st) = try layered(theta: plan!.theta, prefetches: true, admitAlways: !admitByScore)
                return .moepic(layout: lay, plan: p, stagingBytes: st, admitByScore: admitByScore)
            }
            // Uniform θ, raised where a layer's budget holds the tops of all E experts with room
            // to spare (n_l = ⌊B_l/(θS)⌋ ≥ E): θ_l = min(1, B_l/(E·S)), so no budget stays unused.
            // Two rounds, since the staging (and so B_l) shrinks as θ grows.
            var th = Array(repeating: theta, count: L)
            var (lay, p, st) = try layered(theta: th, prefetches: true, admitAlways: !admitByScore)
            for _ in 0..<2 {
                let grown = zip(th, p.layerBudget).map { t, b in max(t, min(1, Double(b) / Double(shape.experts * S))) }
                if grown == th { break }
                let next = try layered(theta: grown.map { g in (g * Double(shape.intermediate)).rounded(.down) / Double(shape.intermediate) },
                                       prefetches: true, admitAlways: !admitByScore)
                th = grown; (lay, p, st) = next
            }
            return .moepic(layout: lay, plan: p, stagingBytes: st, admitByScore: admitByScore)
        }
    }
}

/// `--memory-budget` values: bytes with a unit (`512MiB`, `2GB`, `1.5GiB`, `4096`) or a share of
/// all expert bytes (`40%`).
public enum MemoryBudget {
    /// Bytes for `text`, given the model's total expert bytes (for percentages).
    public static func parse(_ text: String, totalExpertBytes: Int) throws -> Int {
        let t = text.trimmingCharacters(in: .whitespaces)
        func bad() -> OffloadError { .badArgument("memory budget '\(text)' is not a size (e.g. 512MiB, 2GB, 40%)") }
        if t.hasSuffix("%") {
            guard let v = Double(t.dropLast()), v >= 0, v.isFinite else { throw bad() }
            return Int((v / 100 * Double(totalExpertBytes)).rounded(.down))
        }
        let units: [(String, Double)] = [("KiB", 1024), ("MiB", 1048576), ("GiB", 1073741824), ("TiB", 1099511627776),
                                         ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12), ("K", 1024), ("M", 1048576), ("G", 1073741824), ("B", 1)]
        var number = Substring(t), mult = 1.0
        for (u, m) in units where t.lowercased().hasSuffix(u.lowercased()) {
            number = t.dropLast(u.count); mult = m; break
        }
        guard let v = Double(number.trimmingCharacters(in: .whitespaces)), v >= 0, v.isFinite else { throw bad() }
        return Int((v * mult).rounded(.down))
    }
}
