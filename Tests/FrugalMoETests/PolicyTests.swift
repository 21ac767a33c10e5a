import Testing
import FrugalModels
@testable import FrugalMoE

@Suite struct PolicyTests {
    /// 1 layer, 6 experts, top-1, one expert = 3 rows x 3·4 floats = 144 bytes.
    static let shape = MoEShape(layers: 1, experts: 6, topK: 1, hidden: 4, intermediate: 3)
    static func layout(theta: Double = 1) -> SegmentLayout { SegmentLayout(shape: shape, elementBytes: 4, theta: [theta]) }

    func run(_ p: SegmentCachePolicy, _ seq: [Int]) -> [[PolicyAction]] {
        seq.map { e in p.access(layer: 0, experts: [e]) + p.release(layer: 0) }
    }

    @Test func lruEvictsLeastRecentlyUsed() {
        let lay = Self.layout()
        let p = SegmentCachePolicy.lru(layout: lay, layerBudget: [3 * lay.expertBytes], stagingBytes: 0)
        let acts = run(p, [0, 1, 2, 0, 3, 1, 4])
        // 3 evicts 1 (LRU after 0 was reused), 1 evicts 2, 4 evicts 0.
        #expect(acts[4] == [.drop(SegmentID(layer: 0, expert: 1, part: .top)),
                            .load(SegmentID(layer: 0, expert: 3, part: .top), demand: true, cached: true)])
        #expect(acts[4].first == .drop(SegmentID(layer: 0, expert: 1, part: .top)))
        #expect(acts[5].first == .drop(SegmentID(layer: 0, expert: 2, part: .top)))
        #expect(acts[6].first == .drop(SegmentID(layer: 0, expert: 0, part: .top)))
        #expect(p.cachedExperts(layer: 0) == [3, 1, 4])
        #expect(acts[3].isEmpty)  // hit
        #expect(p.stats[0].hits == 1 && p.stats[0].accesses == 7)
        #expect(p.cachedBytes(layer: 0) <= 3 * lay.expertBytes)
    }
}

extension PolicyTests {
    static func t(_ e: Int) -> SegmentID { SegmentID(layer: 0, expert: e, part: .top) }

    @Test func lfuEvictsLeastFrequentlyUsedTieByRecency() {
        let lay = Self.layout()
        let p = SegmentCachePolicy.lfu(layout: lay, layerBudget: [3 * lay.expertBytes], stagingBytes: 0)
        // counts after [0,0,1,1,2]: 0→2, 1→2, 2→1. Then 3 evicts 2 (least frequent).
        let acts = run(p, [0, 0, 1, 1, 2, 3, 4, 0, 5])
        #expect(acts[5].first == .drop(Self.t(2)))
        // 4: cached {0:2, 1:2, 3:1} → evicts 3.
        #expect(acts[6].first == .drop(Self.t(3)))
        #expect(acts[7].isEmpty)  // 0 hits, count 3
        // 5: cached {0:3, 1:2, 4:1} → evicts 4.
        #expect(acts[8].first == .drop(Self.t(4)))
        #expect(p.cachedExperts(layer: 0) == [0, 1, 5])
    }

    @Test func moepicPriorityFormula() {
        #expect(MoEpicRanking.priority(mu: 8, nu: 0) == 8)
        #expect(abs(MoEpicRanking.priority(mu: 8, nu: 128) - 2) < 1e-12)     // ρ^(ω/ω) = 0.25
        #expect(abs(MoEpicRanking.priority(mu: 8, nu: 64) - 4) < 1e-12)      // 0.25^0.5 = 0.5
        #expect(abs(MoEpicRanking.priority(mu: 3, nu: 256) - 3.0 / 16) < 1e-12)
        let r = MoEpicRanking()
        #expect(r.score(count: 5, lastUse: 10, now: 138) == MoEpicRanking.priority(mu: 5, nu: 128))
    }

    @Test func moepicEvictsLowestPriorityTops() {
        // θ = 0.5: 2 of 3 rows in the top (round(1.5) = 2); budget holds two tops.
        let lay = Self.layout(theta: 0.5)
        #expect(lay.splitRow == [2] && lay.topBytes(layer: 0) == 2 * lay.rowBytes)
        let plan = CachePlan(theta: [0.5], layerBudget: [2 * lay.topBytes(layer: 0)])
        let p = SegmentCachePolicy.moepic(layout: lay, plan: plan, stagingBytes: lay.expertBytes,
                                          ranking: MoEpicRanking(rho: 0.25, omega: 2))
        // 0 used 3 times, then 1, then 200 accesses of 2/3 alternating would decay 0; keep it short:
        // after [0,0,0,1]: P(0) = 3·0.25^(1/2) = 1.5, P(1) = 1. Access 2: evicts 1 (lowest P).
        var acts = run(p, [0, 0, 0, 1, 2])
        #expect(acts[4].contains(.drop(Self.t(1))))
        #expect(acts[4].contains(.load(Self.t(2), demand: true, cached: true)))
        // The bottom of a split expert always loads into staging and is released after use.
        let b2 = SegmentID(layer: 0, expert: 2, part: .bottom)
        #expect(acts[4].contains(.load(b2, demand: true, cached: false)) && acts[4].contains(.drop(b2)))
        // Now P(0) = 3·0.25^(2/2) = 0.75, P(2) = 1 → access 4 evicts 0 although 0 is more frequent.
        acts = run(p, [4])
        #expect(acts[0].first == .drop(Self.t(0)))
        #expect(p.cachedExperts(layer: 0) == [2, 4])
    }

    @Test func prefetchStagesPredictedSegmentsAndDropsMispredictions() {
        let shape = MoEShape(layers: 2, experts: 4, topK: 1, hidden: 4, intermediate: 4)
        let lay = SegmentLayout(shape: shape, elementBytes: 4, theta: [0.5, 0.5])
        let plan = CachePlan(theta: [0.5, 0.5], layerBudget: [lay.topBytes(layer: 0), lay.topBytes(layer: 1)])
        let p = SegmentCachePolicy.moepic(layout: lay, plan: plan, stagingBytes: 2 * lay.expertBytes)
        _ = p.access(layer: 1, experts: [2]); _ = p.release(layer: 1)   // top of 2 cached in layer 1
        // Predicting 2 at layer 1: only its bottom is missing.
        #expect(p.prefetch(layer: 1, predicted: [2]) == [.load(SegmentID(layer: 1, expert: 2, part: .bottom), demand: false, cached: false)])
        let hit = p.access(layer: 1, experts: [2])
        #expect(hit.isEmpty)   // all resident: top cached, bottom prefetched
        _ = p.release(layer: 1)
        // Predicting 3 but routing 1: 3's segments are dropped, 1 loads on demand.
        let pre = p.prefetch(layer: 1, predicted: [3])
        #expect(pre.count == 2)
        let acts = p.access(layer: 1, experts: [1])
        #expect(acts.contains(.drop(SegmentID(layer: 1, expert: 3, part: .top))) && acts.contains(.drop(SegmentID(layer: 1, expert: 3, part: .bottom))))
        #expect(p.stats[1].wastedPrefetches == 2 && p.stats[1].prefetchHits == 1 && p.stats[1].hits == 1)
        _ = p.release(layer: 1)
        #expect(p.stagedBytes == 0)
    }
}

extension PolicyTests {
    @Test func moepicRaisesThetaToUseABudgetThatHoldsAllTops() throws {
        // 2 layers x 4 experts, top-1, I = 10 rows; budget = 70% of all experts.
        let shape = MoEShape(layers: 2, experts: 4, topK: 1, hidden: 4, intermediate: 10)
        let whole = SegmentLayout(shape: shape, elementBytes: 4, theta: [1, 1])
        let p = try PolicyFactory.make(.moepic, shape: shape, elementBytes: 4, budget: whole.totalExpertBytes * 7 / 10, theta: 0.25)
        // All four tops fit each layer's cache, and no θ_l is left below the requested 0.25.
        for l in 0..<2 {
            #expect(p.layout.splitRow[l] >= 3)
            #expect(4 * p.layout.topBytes(layer: l) <= p.plan.layerBudget[l])
        }
        #expect(p.plan.totalCacheBytes + p.stagingBytes <= whole.totalExpertBytes * 7 / 10)
        #expect(p.layout.splitRow[0] > 3)  // raised
    }
}

extension PolicyTests {
    /// 2 layers x 4 experts, top-1, whole experts (θ = 1), two experts' room per layer.
    static let twoLayer = MoEShape(layers: 2, experts: 4, topK: 1, hidden: 4, intermediate: 4)

    @Test func prefetchIntoCacheEvictsTheLeastRecentTopAndNeedsNoStaging() {
        let lay = SegmentLayout(shape: Self.twoLayer, elementBytes: 4, theta: [1, 1])
        let S = lay.expertBytes
        let p = SegmentCachePolicy.prefetch(layout: lay, layerBudget: [2 * S, 2 * S], stagingBytes: 0, intoCache: true)
        for e in [0, 1] { _ = p.access(layer: 1, experts: [e]); _ = p.release(layer: 1) }   // layer 1 caches 0, 1 (0 older)
        let t = { (e: Int) in SegmentID(layer: 1, expert: e, part: .top) }
        // Predicting 2 at layer 1: it goes straight into the cache in place of 0 (least recent).
        #expect(p.prefetch(layer: 1, predicted: [2]) == [.drop(t(0)), .load(t(2), demand: false, cached: true)])
        #expect(p.cachedExperts(layer: 1) == [1, 2] && p.stagedBytes == 0)
        // Not a cache hit (a prefetch put it there), but a hit with no demand load, helped by the prefetch.
        #expect(!p.isCacheHit(layer: 1, expert: 2) && p.isCacheHit(layer: 1, expert: 1))
        #expect(p.access(layer: 1, experts: [2]).isEmpty)
        _ = p.release(layer: 1)
        #expect(p.stats[1].prefetchHits == 1 && p.stats[1].hits == 1 && p.stats[1].cacheHits == 0)
        // Once used it is an ordinary cached top.
        #expect(p.isCacheHit(layer: 1, expert: 2))
        // A misprediction (3, in place of 1) is dropped when the layer routes elsewhere: a transfer in flight
        // stops, and the next miss takes the freed slot without evicting the used 2.
        #expect(p.prefetch(layer: 1, predicted: [3]).first == .drop(t(1)))
        #expect(p.access(layer: 1, experts: [2]) == [.drop(t(3))])
        #expect(p.stats[1].wastedPrefetches == 1 && p.cachedExperts(layer: 1) == [2])
        _ = p.release(layer: 1)
        #expect(p.access(layer: 1, experts: [0]) == [.load(t(0), demand: true, cached: true)])
    }

    @Test func prefetchesNeverEvictEachOtherAndRespectStaging() {
        // Budget of one top per layer, two predicted experts (top-1 plus one extra), no staging: only the first
        // prediction is prefetched (the cache cannot hold both, staging holds nothing).
        let lay = SegmentLayout(shape: Self.twoLayer, elementBytes: 4, theta: [1, 1])
        let S = lay.expertBytes
        let p = SegmentCachePolicy.prefetch(layout: lay, layerBudget: [S, S], stagingBytes: 0, intoCache: true)
        p.prefetchLimit = 2
        let acts = p.prefetch(layer: 1, predicted: [2, 3])
        #expect(acts == [.load(SegmentID(layer: 1, expert: 2, part: .top), demand: false, cached: true)])
        #expect(p.cachedBytes(layer: 1) <= S && p.stagedBytes == 0)
        // Into staging instead: the reserve bounds what is prefetched.
        let q = SegmentCachePolicy.prefetch(layout: lay, layerBudget: [S, S], stagingBytes: S, intoCache: false)
        q.prefetchLimit = 2
        #expect(q.prefetch(layer: 1, predicted: [2, 3]) == [.load(SegmentID(layer: 1, expert: 2, part: .top), demand: false, cached: false)])
        #expect(q.stagedBytes == S)
    }

    @Test func moepicPrefetchesTopsIntoCacheAndBottomsIntoStaging() {
        let shape = MoEShape(layers: 2, experts: 4, topK: 1, hidden: 4, intermediate: 4)
        let lay = SegmentLayout(shape: shape, elementBytes: 4, theta: [0.5, 0.5])
        let top = lay.topBytes(layer: 1), bottom = lay.expertBytes - top
        let plan = CachePlan(theta: [0.5, 0.5], layerBudget: [2 * top, 2 * top])
        let p = SegmentCachePolicy.moepic(layout: lay, plan: plan, stagingBytes: 2 * bottom, prefetchIntoCache: true)
        let acts = p.prefetch(layer: 1, predicted: [3])
        #expect(acts == [.load(SegmentID(layer: 1, expert: 3, part: .top), demand: false, cached: true),
                         .load(SegmentID(layer: 1, expert: 3, part: .bottom), demand: false, cached: false)])
        #expect(p.stagedBytes == bottom && p.cachedBytes(layer: 1) == top)
        #expect(p.access(layer: 1, experts: [3]).isEmpty)
        _ = p.release(layer: 1)
        #expect(p.stagedBytes == 0 && p.isCacheHit(layer: 1, expert: 3))
    }

    @Test func factoryStagingFollowsWherePrefetchesGo() throws {
        // 8 layers x 8 experts, top-2, at 25% of the expert bytes (16 experts).
        let shape = MoEShape(layers: 8, experts: 8, topK: 2, hidden: 4, intermediate: 8)
        let S = SegmentLayout(shape: shape, elementBytes: 4, theta: Array(repeating: 1, count: 8)).expertBytes
        let budget = 16 * S
        let into = try PolicyFactory.make(.prefetch, shape: shape, elementBytes: 4, budget: budget)
        #expect(into.stagingBytes == 0 && into.plan.layerBudget.allSatisfy { $0 == 2 * S })
        let reserve = try PolicyFactory.make(.prefetch, shape: shape, elementBytes: 4, budget: budget,
                                             tuning: PolicyTuning(prefetchIntoCache: false))
        // A reserve of two experts leaves 1.75 experts a layer: fewer than top-k, so demand loads need staging too.
        #expect(reserve.stagingBytes == 4 * S && reserve.plan.layerBudget.allSatisfy { $0 == 12 * S / 8 })
        // MoEpic at θ = 0.5 stages prefetches by default: demand bottoms 2·S/2 + two prefetched experts 2·S.
        let mo = try PolicyFactory.make(.moepic, shape: shape, elementBytes: 4, budget: budget, theta: 0.5, raiseTheta: false)
        #expect(!mo.prefetchIntoCache && mo.stagingBytes == 3 * S && mo.layout.splitRow.allSatisfy { $0 == 4 })
        #expect(mo.plan.totalCacheBytes + mo.stagingBytes <= budget)
        // Prefetched tops into the cache instead: demand bottoms + prefetched bottoms = 2·S/2 + 2·S/2.
        let moInto = try PolicyFactory.make(.moepic, shape: shape, elementBytes: 4, budget: budget, theta: 0.5,
                                            tuning: PolicyTuning(prefetchIntoCache: true), raiseTheta: false)
        #expect(moInto.prefetchIntoCache && moInto.stagingBytes == 2 * S)
        // θ = 0 (no cache): demand and prefetched experts are whole.
        let zero = try PolicyFactory.make(.moepic, shape: shape, elementBytes: 4, budget: budget, theta: 0, raiseTheta: false)
        #expect(zero.stagingBytes == 4 * S && zero.layout.splitRow.allSatisfy { $0 == 0 })
    }
}
