import Foundation

/// A segment the simulator moves: `part` 0 = top (intermediate units [0, θI)), 1 = bottom.
public struct SimSegment: Hashable, Sendable {
    public var layer: Int, expert: Int, part: Int
    public init(layer: Int, expert: Int, part: Int) { self.layer = layer; self.expert = expert; self.part = part }
}

/// A transfer a policy asks for: `demand` loads are needed by the layer computing now and go ahead of queued
/// prefetches.
public struct SimLoad: Sendable, Equatable {
    public var segment: SimSegment
    public var bytes: Double
    public var demand: Bool
    public init(segment: SimSegment, bytes: Double, demand: Bool) { self.segment = segment; self.bytes = bytes; self.demand = demand }
}

/// What the discrete-event simulator needs from a cache policy: decisions only, no bytes or clocks (the same
/// driving protocol as the engine's `ExpertPolicy`: access → compute → prefetch next layer → release). An adapter
/// over the engine's policy objects conforms to this, as does `NativeSimPolicy` (used until then, and in tests).
public protocol SimPolicy: AnyObject {
    var name: String { get }
    var usesPrediction: Bool { get }
    /// Layer `layer` is about to compute `experts`; returns the loads to start (demand first) and the segments
    /// dropped (their buffers freed).
    func access(layer: Int, experts: [Int]) -> (loads: [SimLoad], drops: [SimSegment])
    /// The predictor names `predicted` for `layer`; returns prefetch loads and drops.
    func prefetch(layer: Int, predicted: [Int]) -> (loads: [SimLoad], drops: [SimSegment])
    /// Layer `layer` finished its experts.
    func release(layer: Int) -> [SimSegment]
    /// The segments to compute for an expert, top first, with their share of the expert's compute.
    func segments(layer: Int, expert: Int) -> [(segment: SimSegment, share: Double)]
    /// Whether an access found the expert's top cached (for the cache hit rate).
    func topCached(layer: Int, expert: Int) -> Bool
    /// Whether a segment still loading computes chunk by chunk as its chunks land.
    var streamsChunks: Bool { get }
}

extension SimPolicy {
    public var streamsChunks: Bool { false }
}

/// Cache policies of the comparison, implemented on `PriorityReplayCache` (the same replacement code the hit-rate
/// profiler replays, so the planner's curves describe exactly this cache).
public final class NativeSimPolicy: SimPolicy {
    public enum Kind: String, Sendable, CaseIterable {
        case full, onDemand = "on-demand", lru, lfu, prefetch, moepic
    }
    public let name: String
    public let kind: Kind
    public let usesPrediction: Bool
    let thetas: [Double]
    let expertBytes: [Double]
    var caches: [PriorityReplayCache]
    var cachedSets: [Set<Int>]
    var staged: Set<SimSegment> = []

    /// `tops[l]`: how many tops (whole experts when θ = 1) layer l's cache holds; `thetas[l]` the split ratio.
    public init(kind: Kind, experts: Int, expertBytes: [Double], thetas: [Double], tops: [Int],
                moepicPriority: ReplayPolicy = .moepicDefault) {
        self.kind = kind; self.name = kind.rawValue; self.expertBytes = expertBytes
        let L = expertBytes.count
        switch kind {
        case .full, .onDemand, .lru, .lfu: usesPrediction = false
        case .prefetch, .moepic: usesPrediction = true
        }
        let th = kind == .moepic ? thetas : [Double](repeating: 1, count: L)
        self.thetas = th
        let rule: ReplayPolicy = kind == .lfu ? .lfu : (kind == .moepic ? moepicPriority : .lru)
        let cap: [Int] = kind == .full ? [Int](repeating: experts, count: L)
            : kind == .onDemand ? [Int](repeating: 0, count: L) : tops
        caches = (0..<L).map { rule.makeCache(capacity: th[$0] > 0 ? cap[$0] : 0, experts: experts) }
        cachedSets = [Set<Int>](repeating: kind == .full ? Set(0..<experts) : [], count: L)
    }

    /// Policy for a budget plan (per-layer θ and top counts).
    public convenience init(kind: Kind, experts: Int, expertBytes: [Double], plan: BudgetPlan) {
        self.init(kind: kind, experts: experts, expertBytes: expertBytes, thetas: plan.thetas,
                  tops: plan.layers.map(\.cachedTops))
    }

    func bytes(_ s: SimSegment) -> Double {
        let th = thetas[s.layer]
        return expertBytes[s.layer] * (s.part == 0 ? th : 1 - th)
    }

    public func segments(layer: Int, expert: Int) -> [(segment: SimSegment, share: Double)] {
        let th = thetas[layer]
        var out: [(segment: SimSegment, share: Double)] = []
        if th > 0 { out.append((SimSegment(layer: layer, expert: expert, part: 0), th)) }
        if th < 1 { out.append((SimSegment(layer: layer, expert: expert, part: 1), 1 - th)) }
        return out
    }

    public func topCached(layer: Int, expert: Int) -> Bool { cachedSets[layer].contains(expert) }

    func resident(_ s: SimSegment) -> Bool {
        (s.part == 0 && cachedSets[s.layer].contains(s.expert)) || staged.contains(s)
    }

    public func access(layer: Int, experts: [Int]) -> (loads: [SimLoad], drops: [SimSegment]) {
        var loads: [SimLoad] = []
        for e in experts {
            for (s, _) in segments(layer: layer, expert: e) where !resident(s) {
                loads.append(SimLoad(segment: s, bytes: bytes(s), demand: true))
                staged.insert(s)
            }
        }
        // Cache update (demand fill): the tops of all used experts were just loaded or are cached.
        var drops: [SimSegment] = []
        if kind != .full && kind != .onDemand && thetas[layer] > 0 {
            let before = cachedSets[layer]
            _ = caches[layer].access(experts)
            let after = Set(caches[layer].cached)
            for e in before.subtracting(after) { drops.append(SimSegment(layer: layer, expert: e, part: 0)) }
            for e in after.subtracting(before) { staged.remove(SimSegment(layer: layer, expert: e, part: 0)) }
            cachedSets[layer] = after
        }
        return (loads, drops)
    }

    public func prefetch(layer: Int, predicted: [Int]) -> (loads: [SimLoad], drops: [SimSegment]) {
        guard usesPrediction else { return ([], []) }
        var loads: [SimLoad] = []
        for e in predicted {
            for (s, _) in segments(layer: layer, expert: e) where !resident(s) {
                loads.append(SimLoad(segment: s, bytes: bytes(s), demand: false))
                staged.insert(s)
            }
        }
        return (loads, [])
    }

    public func release(layer: Int) -> [SimSegment] {
        let mine = staged.filter { $0.layer == layer }
        staged.subtract(mine)
        return Array(mine)
    }
}
