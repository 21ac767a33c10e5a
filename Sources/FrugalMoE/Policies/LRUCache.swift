import FrugalModels

/// Least recently used: the score of an expert is the counter value of its last use, so the
/// expert unused for longest is evicted. With whole experts (θ = 1), per-layer caches, and no
/// prediction, this is the Mixtral-offloading design (Eliseev & Mazur 2023).
public final class LRURanking: CacheRanking {
    public init() {}
    public func score(count: Int, lastUse: Int, now: Int) -> Double { Double(lastUse) }
}

extension SegmentCachePolicy {
    /// `lru`: whole experts, per-layer LRU caches of B_l bytes, loads on demand, no prediction.
    public static func lru(layout: SegmentLayout, layerBudget: [Int], stagingBytes: Int) -> SegmentCachePolicy {
        SegmentCachePolicy(name: "lru", layout: layout,
                           plan: CachePlan(theta: Array(repeating: 1, count: layerBudget.count), layerBudget: layerBudget),
                           stagingBytes: stagingBytes, usesPrediction: false, ranking: LRURanking())
    }
}
