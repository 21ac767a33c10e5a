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
    /// l computes, the predicted experts of layer l+1 that are not cached are loaded (the AdapMoE /
    /// ProMoE design). With `intoCache` a prefetched expert goes straight into its layer's cache,
    /// evicting the least recently used one (ProMoE's cache is the only buffer, so no bytes are held
    /// back for prefetches); without, it goes into a staging reserve and enters the cache when used.
    public static func prefetch(layout: SegmentLayout, layerBudget: [Int], stagingBytes: Int,
                                intoCache: Bool = true) -> SegmentCachePolicy {
        SegmentCachePolicy(name: "prefetch", layout: layout,
                           plan: CachePlan(theta: Array(repeating: 1, count: layerBudget.count), layerBudget: layerBudget),
                           stagingBytes: stagingBytes, usesPrediction: true, ranking: LRURanking(), prefetchIntoCache: intoCache)
    }
}

/// Design choices of the predicting policies (`prefetch`, `moepic`) that the study varies; the
/// defaults are the design measured in docs/BENCHMARKS.md.
public struct PolicyTuning: Sendable, Equatable, Codable {
    /// Prefetched tops (whole experts at θ = 1) go into their layer's cache, evicting its
    /// lowest-ranked tops, so no staging is reserved for them (true); or a staging reserve holds
    /// prefetches until they are used, so a wrong prediction evicts nothing (false). nil: each
    /// policy's own choice: `prefetch` into the cache (ProMoE's design, and faster for it),
    /// `moepic` into staging (faster for it: its tops are small, and mispredictions pollute a
    /// cache of few tops).
    public var prefetchIntoCache: Bool? = nil
    /// Where the `prefetch` baseline puts prefetched experts.
    public var baselineIntoCache: Bool { prefetchIntoCache ?? true }
    /// Where MoEpic puts prefetched tops.
    public var moepicIntoCache: Bool { prefetchIntoCache ?? false }
    /// Experts prefetched per layer beyond topK: the next most likely by the router's logits.
    public var extraPrefetch = 0
    /// MoEpic's priority P = μ·ρ^(ν/ω): decay per window and window (tokens).
    public var rho = 0.25, omega = 128.0
    /// MoEpic admits a missed top only when its priority is at least the victim's.
    public var admitByScore = false
    /// MoEpic computes a segment still loading chunk by chunk as its chunks land (`streamsChunks`).
    public var streamChunks = true
    /// The planner may turn prefetching off in layers where it does not pay (`CachePlanner.allowNoPrefetch`).
    public var plannerMayStopPrefetch = true
    public init(prefetchIntoCache: Bool? = nil, extraPrefetch: Int = 0, rho: Double = 0.25, omega: Double = 128,
                admitByScore: Bool = false, streamChunks: Bool = true, plannerMayStopPrefetch: Bool = true) {
        self.prefetchIntoCache = prefetchIntoCache; self.extraPrefetch = extraPrefetch
        self.rho = rho; self.omega = omega; self.admitByScore = admitByScore; self.streamChunks = streamChunks
        self.plannerMayStopPrefetch = plannerMayStopPrefetch
    }
}

/// Builds a policy from `--policy`, a total fast-tier budget and (for MoEpic) a θ or a plan.
public enum PolicyFactory {
    /// Staging bytes a policy needs at most: the current layer's transient segments (demand-loaded
    /// bottoms, and whole experts in a layer whose cache cannot admit topK tops) plus one layer's
    /// prefetched segments (bottoms only when prefetched tops go into the caches, else whole
    /// experts), `prefetchExperts` of them, over the layers the plan prefetches.
    public static func stagingBytes(layout: SegmentLayout, plan: CachePlan, caches: Bool, admitAlways: Bool,
                                     prefetches: Bool, prefetchIntoCache: Bool = false, prefetchExperts: Int? = nil) -> Int {
        let k = layout.shape.topK, S = layout.expertBytes
        let kp = prefetchExperts ?? k
        var demand = 0, pre = 0
        for l in 0..<layout.shape.layers {
            let top = layout.topBytes(layer: l), bottom = S - top
            let holdsK = caches && top > 0 && plan.layerBudget[l] >= k * top
            demand = max(demand, k * (holdsK && admitAlways ? bottom : S))
            if plan.prefetch?[l] ?? true { pre = max(pre, kp * (holdsK && prefetchIntoCache ? bottom : S)) }
        }
        return demand + (prefetches ? pre : 0)
    }

    /// A policy of `kind` within `budget` bytes of fast tier (caches + staging).
    /// - Parameters:
    ///   - theta: MoEpic's uniform split ratio when `plan` is nil.
    ///   - plan: MoEpic's per-layer θ_l and B_l (Σ B_l + staging must fit the budget).
    ///   - tuning: design choices of `prefetch` and `moepic`.
    ///   - raiseTheta: MoEpic with a uniform θ raises θ_l where the layer's budget holds every top with room
    ///     to spare (false: exactly `theta`, e.g. θ = 0 for prefetch without a cache).
    /// - Throws: `OffloadError.budget` when the budget is below one layer's working set (topK
    ///   experts), or below all experts for `full`, or when the plan does not fit.
    public static func make(_ kind: PolicyKind, shape: MoEShape, elementBytes: Int, budget: Int,
                            theta: Double = 0.4, plan: CachePlan? = nil,
                            tuning: PolicyTuning = PolicyTuning(), raiseTheta: Bool = true) throws -> SegmentCachePolicy {
        let L = shape.layers
        let whole = SegmentLayout(shape: shape, elementBytes: elementBytes, theta: Array(repeating: 1, count: L))
        let S = whole.expertBytes, working = shape.topK * S
        let kp = shape.topK + max(0, tuning.extraPrefetch)
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
        // Split the budget: staging first (as small as the policy allows), the rest equally over layers.
        func layered(theta: [Double], prefetches: Bool, admitAlways: Bool, into: Bool = false) throws -> (SegmentLayout, CachePlan, Int) {
            let lay = SegmentLayout(shape: shape, elementBytes: elementBytes, theta: theta)
            func staging(_ p: CachePlan) -> Int {
                stagingBytes(layout: lay, plan: p, caches: true, admitAlways: admitAlways, prefetches: prefetches,
                             prefetchIntoCache: into, prefetchExperts: kp)
            }
            if let plan {
                let st = staging(plan)
                guard plan.totalCacheBytes + st <= budget else {
                    throw OffloadError.budget("plan caches \(plan.totalCacheBytes) B + staging \(st) B exceed the budget \(budget) B")
                }
                return (lay, plan, st)
            }
            // The staging when every layer holds topK tops, else the largest (nothing admitted).
            let small = staging(CachePlan(theta: theta, layerBudget: Array(repeating: Int.max / 4, count: L)))
            let large = staging(CachePlan(theta: theta, layerBudget: Array(repeating: 0, count: L)))
            for reserve in [small, large] where reserve <= budget {
                let p = CachePlan(theta: theta, layerBudget: Array(repeating: (budget - reserve) / L, count: L))
                let need = staging(p)
                if need <= reserve { return (lay, p, need) }
            }
            throw OffloadError.budget("\(budget) B (\(mib(budget))) cannot hold policy \(kind.rawValue)'s staging of \(small) B")
        }
        let ones = Array(repeating: 1.0, count: L)
        switch kind {
        case .full: fatalError("handled above")
        case .onDemand:
            return .onDemand(layout: whole, stagingBytes: working)
        case .lru:
            let (lay, p, st) = try layered(theta: ones, prefetches: false, admitAlways: true)
            return .lru(layout: lay, layerBudget: p.layerBudget, stagingBytes: st)
        case .lfu:
            let (lay, p, st) = try layered(theta: ones, prefetches: false, admitAlways: true)
            return .lfu(layout: lay, layerBudget: p.layerBudget, stagingBytes: st)
        case .prefetch:
            let (lay, p, st) = try layered(theta: ones, prefetches: true, admitAlways: true, into: tuning.baselineIntoCache)
            let pol = SegmentCachePolicy.prefetch(layout: lay, layerBudget: p.layerBudget, stagingBytes: st, intoCache: tuning.baselineIntoCache)
            pol.prefetchLimit = kp
            return pol
        case .moepic:
            let ranking = MoEpicRanking(rho: tuning.rho, omega: tuning.omega)
            func build(_ r: (SegmentLayout, CachePlan, Int)) -> SegmentCachePolicy {
                let pol = SegmentCachePolicy.moepic(layout: r.0, plan: r.1, stagingBytes: r.2, ranking: ranking,
                                                    admitByScore: tuning.admitByScore, prefetchIntoCache: tuning.moepicIntoCache)
                pol.prefetchLimit = kp
                pol.streamsChunks = tuning.streamChunks
                return pol
            }
            if let plan {
                return build(try layered(theta: plan.theta, prefetches: true, admitAlways: !tuning.admitByScore, into: tuning.moepicIntoCache))
            }
            // Uniform θ, raised where a layer's budget holds the tops of all E experts with room
            // to spare (n_l = ⌊B_l/(θS)⌋ ≥ E): θ_l = min(1, B_l/(E·S)), so no budget stays unused.
            // Two rounds, since the staging (and so B_l) shrinks as θ grows.
            var th = Array(repeating: theta, count: L)
            var r = try layered(theta: th, prefetches: true, admitAlways: !tuning.admitByScore, into: tuning.moepicIntoCache)
            for _ in 0..<(raiseTheta ? 2 : 0) {
                let grown = zip(th, r.1.layerBudget).map { t, b in max(t, min(1, Double(b) / Double(shape.experts * S))) }
                if grown == th { break }
                let next = try layered(theta: grown.map { g in (g * Double(shape.intermediate)).rounded(.down) / Double(shape.intermediate) },
                                       prefetches: true, admitAlways: !tuning.admitByScore, into: tuning.moepicIntoCache)
                th = grown; r = next
            }
            return build(r)
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
