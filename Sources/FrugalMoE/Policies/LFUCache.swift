import FrugalModels

/// Least frequently used: the score is the activation count over the whole run (ties: least
/// recently used). With whole experts and per-layer caches this is the LFU baseline of the
/// MoEpic paper (classic LFU: a missed expert is always admitted, the least frequent one leaves).
public final class LFURanking: CacheRanking {
    public init() {}
    public func score(count: Int, lastUse: Int, now: Int) -> Double { Double(count) }
}

extension SegmentCachePolicy {
    /// `lfu`: whole experts, per-layer LFU caches of B_l bytes, loads on demand, no prediction.
    public static func lfu(layout: SegmentLayout, layerBudget: [Int], stagingBytes: Int) -> SegmentCachePolicy {
        SegmentCachePolicy(name: "lfu", layout: layout,
                           plan: CachePlan(theta: Array(repeating: 1, count: layerBudget.count), layerBudget: layerBudget),
                           stagingBytes: stagingBytes, usesPrediction: false, ranking: LFURanking())
    }
}
