import Foundation
import FrugalModels

/// MoEpic's hot-top cache priority (the paper's ranking of cached top segments):
///
///     P = μ · ρ^(ν/ω)
///
/// μ = the expert's activation count in this layer, ν = accesses of the layer since the expert
/// was last used (tokens, at batch 1), ρ = 0.25 the decay per window, ω = 128 the window. Frequent
/// experts stay; an expert unused for ω tokens loses three quarters of its weight. The lowest P
/// is evicted first (ties: least recently used).
public final class MoEpicRanking: CacheRanking {
    public let rho: Double, omega: Double
    public init(rho: Double = 0.25, omega: Double = 128) { self.rho = rho; self.omega = omega }
    public func score(count: Int, lastUse: Int, now: Int) -> Double {
        Self.priority(mu: Double(count), nu: Double(max(0, now - lastUse)), rho: rho, omega: omega)
    }
    /// P = μ · ρ^(ν/ω).
    public static func priority(mu: Double, nu: Double, rho: Double = 0.25, omega: Double = 128) -> Double {
        mu * pow(rho, nu / omega)
    }
}

extension SegmentCachePolicy {
    /// `moepic`: experts split at θ_l per layer; layer l caches the top segments of its hottest
    /// experts within B_l (n_l = ⌊B_l / (θ_l·S)⌋ tops), ranked by P = μ·ρ^(ν/ω); bottoms and
    /// uncached tops load on demand into staging; the predicted experts of layer l+1 have their
    /// missing segments (the bottom, or both when the top is not cached) prefetched while layer
    /// l computes; the driver computes a top while its bottom is still loading.
    /// `admitByScore`: a missed top enters the cache only if its P is at least the victim's
    /// (false: always admit, evict the lowest P). `prefetchIntoCache`: a prefetched top goes
    /// straight into the cache (evicting the lowest P) instead of a staging reserve.
    public static func moepic(layout: SegmentLayout, plan: CachePlan, stagingBytes: Int,
                              ranking: MoEpicRanking = MoEpicRanking(), admitByScore: Bool = false,
                              prefetchIntoCache: Bool = false) -> SegmentCachePolicy {
        SegmentCachePolicy(name: "moepic", layout: layout, plan: plan, stagingBytes: stagingBytes, usesPrediction: true,
                           ranking: ranking, admitByScore: admitByScore, prefetchIntoCache: prefetchIntoCache)
    }
}
