import FrugalModels

/// How a cache ranks the experts of one layer; the lowest score is evicted first. Scores are
/// compared within a layer; ties go to the less recently used expert.
public protocol CacheRanking: AnyObject {
    /// The score of `expert` in `layer` at access counter `now`, from its activation count and
    /// the counter value of its last use.
    func score(count: Int, lastUse: Int, now: Int) -> Double
}

/// Per-layer counts a policy keeps about what it saw (shared by the engine's and the
/// simulator's reports).
public struct PolicyLayerStats: Sendable, Equatable, Codable {
    /// Expert activations (one per distinct expert per access).
    public var accesses = 0
    /// Activations whose segments were all resident (cached or prefetched) at access: no demand load.
    public var hits = 0
    /// Activations whose top segment was in the layer cache at access.
    public var cacheHits = 0
    /// Activations helped by a prefetch (some segment was staged by `prefetch`).
    public var prefetchHits = 0
    /// Segments prefetched, and bytes of them.
    public var prefetchedSegments = 0, prefetchedBytes = 0
    /// Prefetched segments dropped unused (mispredictions).
    public var wastedPrefetches = 0
    /// Demand-loaded segments and bytes.
    public var demandSegments = 0, demandBytes = 0
    public init() {}
    public var hitRate: Double { accesses == 0 ? 0 : Double(hits) / Double(accesses) }
    public var cacheHitRate: Double { accesses == 0 ? 0 : Double(cacheHits) / Double(accesses) }
}

/// The machinery every policy shares: per-layer caches of top segments (the whole expert when
/// θ = 1) within B_l bytes, a staging area for transient segments, eviction by a ranking, and
/// optional prefetch of predicted experts' missing segments. The concrete policies (full,
/// on-demand, LRU, LFU, prefetch, MoEpic) are configurations of it; see their files.
public class SegmentCachePolicy: ExpertPolicy {
    public let name: String
    public let layout: SegmentLayout
    public let plan: CachePlan
    public let stagingBytes: Int
    public let usesPrediction: Bool
    /// Ranks cached tops for eviction; nil: nothing is cached.
    public let ranking: CacheRanking?
    /// Admit a missed top only if its score is at least the victim's (else: always admit).
    public let admitByScore: Bool
    /// Load every expert into the cache before the first token (the `full` policy).
    public let preloadAll: Bool
    /// Where a prefetched top goes: into its layer's cache, evicting the lowest-ranked top that
    /// is not in use (true: no staging reserve for prefetched tops, the ProMoE / AdapMoE way), or
    /// into staging, entering the cache only when used (false).
    public let prefetchIntoCache: Bool
    /// Predicted experts prefetched per layer, most likely first (default: topK).
    public var prefetchLimit: Int
    /// The driver computes a segment that is still loading chunk by chunk as its chunks land (MoEpic's
    /// overlap of compute with loading, carried below the top/bottom split); false: a segment computes once
    /// all of it has arrived (the baselines' designs).
    public var streamsChunks = false

    /// Counts per layer.
    public private(set) var stats: [PolicyLayerStats]

    var cached: [Set<Int>]             // experts whose top is in layer l's cache
    var cachedBytesPerLayer: [Int]
    var staged: Set<SegmentID> = []    // transient segments (demand or prefetch)
    var prefetched: Set<SegmentID> = [] // staged by prefetch and not yet used
    var prefetchedTops: Set<SegmentID> = [] // put into a cache by prefetch and not yet used
    public private(set) var stagedBytes = 0
    var counts: [[Int]], lastUse: [[Int]], now: [Int]
    var pinned: [Set<Int>]

    public init(name: String, layout: SegmentLayout, plan: CachePlan, stagingBytes: Int, usesPrediction: Bool,
                ranking: CacheRanking?, admitByScore: Bool = false, preloadAll: Bool = false,
                prefetchIntoCache: Bool = false) {
        precondition(plan.theta.count == layout.shape.layers, "policy: plan has \(plan.theta.count) layers, model \(layout.shape.layers)")
        self.name = name; self.layout = layout; self.plan = plan; self.stagingBytes = stagingBytes
        self.usesPrediction = usesPrediction; self.ranking = ranking; self.admitByScore = admitByScore
        self.preloadAll = preloadAll; self.prefetchIntoCache = prefetchIntoCache
        prefetchLimit = layout.shape.topK
        let L = layout.shape.layers, E = layout.shape.experts
        stats = Array(repeating: PolicyLayerStats(), count: L)
        cached = Array(repeating: [], count: L)
        cachedBytesPerLayer = Array(repeating: 0, count: L)
        counts = Array(repeating: Array(repeating: 0, count: E), count: L)
        lastUse = Array(repeating: Array(repeating: Int.min / 2, count: E), count: L)
        now = Array(repeating: 0, count: L)
        pinned = Array(repeating: [], count: L)
    }

    func top(_ l: Int, _ e: Int) -> SegmentID { SegmentID(layer: l, expert: e, part: .top) }

    public func segments(layer: Int, expert: Int) -> [SegmentID] { layout.segments(layer: layer, expert: expert) }
    public func isCached(_ s: SegmentID) -> Bool { s.part == .top && cached[s.layer].contains(s.expert) }
    public func isResident(_ s: SegmentID) -> Bool { isCached(s) || staged.contains(s) }
    /// Whether an access of the expert now finds its top in the cache put there by a use (not by a
    /// prefetch still unused): the cache hit the reports count.
    public func isCacheHit(layer: Int, expert: Int) -> Bool {
        let t = top(layer, expert)
        return isCached(t) && !prefetchedTops.contains(t)
    }
    public func cachedBytes(layer: Int) -> Int { cachedBytesPerLayer[layer] }
    /// Experts whose top segment layer l caches now.
    public func cachedExperts(layer: Int) -> Set<Int> { cached[layer] }

    /// The ranking score of an expert now (for tests and reports).
    public func score(layer: Int, expert: Int) -> Double {
        ranking?.score(count: counts[layer][expert], lastUse: lastUse[layer][expert], now: now[layer]) ?? 0
    }

    public func start() -> [PolicyAction] {
        guard preloadAll else { return [] }
        var acts: [PolicyAction] = []
        for l in 0..<layout.shape.layers {
            let b = layout.topBytes(layer: l)
            if b == 0 { continue }
            for e in 0..<layout.shape.experts where cachedBytesPerLayer[l] + b <= plan.layerBudget[l] {
                cached[l].insert(e); cachedBytesPerLayer[l] += b
                acts.append(.load(top(l, e), demand: false, cached: true))
            }
        }
        return acts
    }

    /// Victims to evict from layer l so that one more top fits, or nil if it should not be admitted.
    func victims(layer l: Int, for e: Int, keep: Set<Int> = [], always: Bool = false) -> [Int]? {
        guard let ranking else { return nil }
        let need = layout.topBytes(layer: l)
        if need == 0 || need > plan.layerBudget[l] { return nil }
        var free = plan.layerBudget[l] - cachedBytesPerLayer[l]
        if free >= need { return [] }
        let t = now[l]
        let candidates = cached[l].subtracting(pinned[l]).subtracting(keep).map { v in
            (v, ranking.score(count: counts[l][v], lastUse: lastUse[l][v], now: t), lastUse[l][v])
        }.sorted { ($0.1, $0.2, $0.0) < ($1.1, $1.2, $1.0) }
        let mine = (ranking.score(count: counts[l][e], lastUse: lastUse[l][e], now: t), lastUse[l][e])
        var out: [Int] = []
        for c in candidates {
            if free >= need { break }
            if admitByScore && !always && mine < (c.1, c.2) { return nil }
            out.append(c.0); free += need
        }
        return free >= need ? out : nil
    }

    func evict(_ l: Int, _ vs: [Int], into acts: inout [PolicyAction]) {
        for v in vs {
            cached[l].remove(v); cachedBytesPerLayer[l] -= layout.topBytes(layer: l)
            prefetchedTops.remove(top(l, v))
            acts.append(.drop(top(l, v)))
        }
    }

    func stage(_ s: SegmentID) { staged.insert(s); stagedBytes += layout.bytes(s) }
    func unstage(_ s: SegmentID) { if staged.remove(s) != nil { stagedBytes -= layout.bytes(s) }; prefetched.remove(s) }

    public func access(layer l: Int, experts: [Int]) -> [PolicyAction] {
        var acts: [PolicyAction] = []
        now[l] += 1
        let want = Set(experts)
        pinned[l] = want
        // Prefetches of this layer for experts that were not routed here: mispredictions.
        for s in prefetched where s.layer == l && !want.contains(s.expert) {
            unstage(s); stats[l].wastedPrefetches += 1; acts.append(.drop(s))
        }
        // Tops a prefetch put into this layer's cache: used now, or mispredicted and dropped (a transfer
        // still in flight stops; the slot is free for this layer's misses instead of holding an unused top).
        let prefetchedBefore = prefetchedTops.filter { $0.layer == l }
        for s in prefetchedBefore {
            prefetchedTops.remove(s)
            if !want.contains(s.expert) {
                stats[l].wastedPrefetches += 1
                cached[l].remove(s.expert); cachedBytesPerLayer[l] -= layout.bytes(s)
                acts.append(.drop(s))
            }
        }
        for e in experts {
            counts[l][e] += 1; lastUse[l][e] = now[l]
        }
        for e in experts {
            stats[l].accesses += 1
            var allResident = true, helped = false
            let viaPrefetch = prefetchedBefore.contains(top(l, e))
            if viaPrefetch { helped = true }
            for s in segments(layer: l, expert: e) {
                if isCached(s) { if s.part == .top && !viaPrefetch { stats[l].cacheHits += 1 }; continue }
                if staged.contains(s) {
                    if prefetched.remove(s) != nil { helped = true }
                    if s.part == .top, let vs = victims(layer: l, for: e) {
                        evict(l, vs, into: &acts)
                        unstage(s); cached[l].insert(e); cachedBytesPerLayer[l] += layout.bytes(s)
                        acts.append(.admit(s))
                    }
                    continue
                }
                allResident = false
                stats[l].demandSegments += 1; stats[l].demandBytes += layout.bytes(s)
                if s.part == .top, let vs = victims(layer: l, for: e) {
                    evict(l, vs, into: &acts)
                    cached[l].insert(e); cachedBytesPerLayer[l] += layout.bytes(s)
                    acts.append(.load(s, demand: true, cached: true))
                } else {
                    stage(s)
                    acts.append(.load(s, demand: true, cached: false))
                }
            }
            if allResident { stats[l].hits += 1 }
            if helped { stats[l].prefetchHits += 1 }
        }
        // Frees first, then every top before any bottom: the driver can compute the tops of all
        // routed experts while their bottoms load.
        func rank(_ a: PolicyAction) -> Int {
            if case .load(let s, _, _) = a { return s.part == .top ? 1 : 2 }
            return 0
        }
        return acts.enumerated().sorted { (rank($0.element), $0.offset) < (rank($1.element), $1.offset) }.map(\.element)
    }

    /// Prefetches the missing segments of the predicted experts of layer l, most likely first, at
    /// most `prefetchLimit` experts. A top goes into the layer's cache when `prefetchIntoCache`
    /// (evicting its lowest-ranked tops, never one predicted in the same call) and into staging
    /// otherwise; a bottom always goes into staging. Nothing is prefetched that the staging area
    /// (at most `stagingBytes`) or the cache cannot hold.
    public func prefetch(layer l: Int, predicted: [Int]) -> [PolicyAction] {
        guard usesPrediction, l >= 0, l < layout.shape.layers, plan.prefetch?[l] ?? true else { return [] }
        var acts: [PolicyAction] = []
        var keep = Set<Int>()
        for e in predicted.prefix(prefetchLimit) {
            keep.insert(e)
            for s in segments(layer: l, expert: e) where !isResident(s) {
                let b = layout.bytes(s)
                if s.part == .top && prefetchIntoCache, let vs = victims(layer: l, for: e, keep: keep, always: true) {
                    evict(l, vs, into: &acts)
                    cached[l].insert(e); cachedBytesPerLayer[l] += b
                    prefetchedTops.insert(s)
                    acts.append(.load(s, demand: false, cached: true))
                } else {
                    guard stagedBytes + b <= stagingBytes else { continue }
                    stage(s); prefetched.insert(s)
                    acts.append(.load(s, demand: false, cached: false))
                }
                stats[l].prefetchedSegments += 1; stats[l].prefetchedBytes += b
            }
        }
        return acts
    }

    public func release(layer l: Int) -> [PolicyAction] {
        var acts: [PolicyAction] = []
        for s in staged where s.layer == l && !prefetched.contains(s) {
            unstage(s); acts.append(.drop(s))
        }
        pinned[l] = []
        return acts.sorted { $0.description < $1.description }
    }
}
