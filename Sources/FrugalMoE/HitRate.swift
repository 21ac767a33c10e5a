import Foundation

/// A per-layer cache of expert segments replayed over a routing trace to profile hit rates. It holds at most
/// `capacity` experts (tops); an access of a missing expert inserts it (demand fill: the expert was loaded to be
/// computed), evicting the lowest-priority resident expert that the current token does not use.
///
/// This is the small seam between hit-rate profiling and cache policies: `ReplayPolicy` names the policies this
/// file implements; the engine's policy objects can be adapted to `ReplayCache` as well.
public protocol ReplayCache {
    /// Replays one token's selected experts at this layer; returns how many of them were already cached.
    mutating func access(_ experts: [Int]) -> Int
}

/// Cache replacement rules for hit-rate profiling.
public enum ReplayPolicy: Sendable, Equatable, CustomStringConvertible {
    /// Least recently used.
    case lru
    /// Least frequently used (counts since the start, of every expert, cached or not; ties: least recent).
    case lfu
    /// MoEpic priority P = μ·ρ^(ν/ω): μ activation count, ν tokens since last use.
    case moepic(rho: Double, window: Double)
    /// Pinned: the `capacity` experts with the highest count in a profile, never replaced.
    case pinned(counts: [Int])

    public static let moepicDefault = ReplayPolicy.moepic(rho: 0.25, window: 128)

    public var description: String {
        switch self {
        case .lru: return "lru"
        case .lfu: return "lfu"
        case .moepic(let r, let w): return "moepic(rho=\(r),window=\(w))"
        case .pinned: return "pinned"
        }
    }

    /// A fresh cache of `capacity` experts for a layer of `experts` experts.
    public func makeCache(capacity: Int, experts: Int) -> PriorityReplayCache {
        PriorityReplayCache(policy: self, capacity: capacity, experts: experts)
    }
}

/// `ReplayCache` for the `ReplayPolicy` rules (arrays, no allocation per access).
public struct PriorityReplayCache: ReplayCache {
    public let policy: ReplayPolicy
    public let capacity: Int
    var resident: [Bool]
    var members: [Int] = []
    var count: [Int]
    var lastUse: [Int]
    var clock = 0
    let lnRhoOverW: Double

    public init(policy: ReplayPolicy, capacity: Int, experts: Int) {
        self.policy = policy
        self.capacity = max(0, min(capacity, experts))
        resident = [Bool](repeating: false, count: experts)
        count = [Int](repeating: 0, count: experts)
        lastUse = [Int](repeating: -1, count: experts)
        if case .moepic(let rho, let w) = policy { lnRhoOverW = log(rho) / w } else { lnRhoOverW = 0 }
        if case .pinned(let counts) = policy {
            let order = counts.indices.sorted { counts[$0] != counts[$1] ? counts[$0] > counts[$1] : $0 < $1 }
            for e in order.prefix(self.capacity) where e < experts { resident[e] = true; members.append(e) }
        }
    }

    /// Eviction priority of a resident expert (lower = evicted first).
    @inline(__always) func priority(_ e: Int) -> Double {
        switch policy {
        case .lru: return Double(lastUse[e])
        case .lfu: return Double(count[e])
        case .moepic(let rho, let w): return Double(count[e]) * pow(rho, Double(clock - lastUse[e]) / w)
        case .pinned: return .infinity
        }
    }

    /// Currently cached experts.
    public var cached: [Int] { members }

    public mutating func access(_ experts: [Int]) -> Int {
        var hits = 0
        for e in experts where e < resident.count && resident[e] { hits += 1 }
        for e in experts where e < resident.count { count[e] += 1; lastUse[e] = clock }
        if case .pinned = policy { clock += 1; return hits }
        if capacity > 0 {
            for e in experts where e < resident.count && !resident[e] {
                if members.count < capacity { members.append(e); resident[e] = true; continue }
                // Evict the lowest-priority member not used by this token; ties: least recent, then lowest index
                // (the engine's SegmentCachePolicy order).
                var worst = -1, worstP = Double.infinity, worstU = Int.max, worstE = Int.max
                for (i, m) in members.enumerated() where lastUse[m] != clock {
                    let p = priority(m)
                    if p < worstP || (p == worstP && (lastUse[m] < worstU || (lastUse[m] == worstU && m < worstE))) {
                        worstP = p; worst = i; worstU = lastUse[m]; worstE = m
                    }
                }
                if worst < 0 { continue }  // everything cached is in use: the new expert is not kept
                resident[members[worst]] = false
                members[worst] = e
                resident[e] = true
            }
        }
        clock += 1
        return hits
    }
}

/// Hit-rate curves h_l(n): for each layer, the fraction of expert uses that found the expert's top cached, for a
/// cache of n tops (n = 0...experts), replaying a routing trace through a cache policy.
public struct HitRateCurves: Sendable, Codable, Equatable {
    /// hit[l][n] for n = 0...experts (hit[l][0] = 0).
    public var hit: [[Double]]
    public var policy: String
    /// Expert uses counted per layer.
    public var uses: [Int]

    public init(hit: [[Double]], policy: String, uses: [Int]) { self.hit = hit; self.policy = policy; self.uses = uses }

    public var layers: Int { hit.count }
    public var experts: Int { (hit.first?.count ?? 1) - 1 }

    /// h_l(n), n clamped to 0...experts.
    @inline(__always) public func h(_ layer: Int, _ n: Int) -> Double {
        let row = hit[layer]
        return row[max(0, min(n, row.count - 1))]
    }

    /// Profiles the curves by replaying `tokens` (e.g. `trace.tokens()`) through `policy`, once per capacity.
    /// Tokens before `countFrom` warm the cache but are not counted.
    public static func profile(tokens: [TokenRouting], layers: Int, experts: Int, policy: ReplayPolicy = .moepicDefault,
                               countFrom: Int = 0) -> HitRateCurves {
        profile(tokens: tokens, layers: layers, experts: experts, name: policy.description, countFrom: countFrom) { _, n in
            policy.makeCache(capacity: n, experts: experts)
        }
    }

    /// Profiles with any cache: `make(layer, capacity)` returns a fresh cache.
    public static func profile<C: ReplayCache>(tokens: [TokenRouting], layers: Int, experts: Int, name: String,
                                               countFrom: Int = 0,
                                               make: (Int, Int) -> C) -> HitRateCurves {
        var hit = [[Double]](repeating: [Double](repeating: 0, count: experts + 1), count: layers)
        var uses = [Int](repeating: 0, count: layers)
        for l in 0..<layers {
            let seq = tokens.map { $0.selected(l) }
            var total = 0
            for (t, s) in seq.enumerated() where t >= countFrom { total += s.count }
            uses[l] = total
            guard total > 0 else { continue }
            for n in 1...max(1, experts) where n <= experts {
                var cache = make(l, n)
                var hits = 0
                for (t, s) in seq.enumerated() {
                    let hh = cache.access(s)
                    if t >= countFrom { hits += hh }
                }
                hit[l][n] = Double(hits) / Double(total)
            }
        }
        return HitRateCurves(hit: hit, policy: name, uses: uses)
    }

    /// Mean hit rate across layers at n tops per layer.
    public func mean(_ n: Int) -> Double {
        guard layers > 0 else { return 0 }
        return (0..<layers).reduce(0.0) { $0 + h($1, n) } / Double(layers)
    }
}
