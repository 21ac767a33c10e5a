import FrugalModels

extension HitRateCurves {
    /// Profiles h_l(n) by replaying the engine's own cache policy objects (`SegmentCachePolicy` with the given
    /// ranking, whole experts, no prediction: what the cache of tops holds depends only on the accesses), one run
    /// per capacity n with every layer's budget at n experts. Slower than `profile(policy:)`, which replays the
    /// same rules on flat arrays; the two agree (tests), and the planner uses the fast one by default.
    public static func profileEngine(tokens: [TokenRouting], layers: Int, experts: Int, ranking: CacheRanking,
                                     name: String, countFrom: Int = 0) -> HitRateCurves {
        let shape = MoEShape(layers: layers, experts: experts, topK: max(1, tokens.first.map { t in (0..<layers).map { t.experts[$0].count }.max() ?? 1 } ?? 1),
                             hidden: 1, intermediate: 1)
        let layout = SegmentLayout(shape: shape, elementBytes: 1, theta: [Double](repeating: 1, count: layers))
        let S = layout.expertBytes
        var hit = [[Double]](repeating: [Double](repeating: 0, count: experts + 1), count: layers)
        var uses = [Int](repeating: 0, count: layers)
        for (t, tok) in tokens.enumerated() where t >= countFrom { for l in 0..<layers { uses[l] += tok.experts[l].count } }
        guard experts > 0 else { return HitRateCurves(hit: hit, policy: name, uses: uses) }
        for n in 1...experts {
            let plan = CachePlan(theta: [Double](repeating: 1, count: layers), layerBudget: [Int](repeating: n * S, count: layers))
            let p = SegmentCachePolicy(name: name, layout: layout, plan: plan, stagingBytes: Int.max / 4,
                                       usesPrediction: false, ranking: ranking)
            var hits = [Int](repeating: 0, count: layers)
            for (t, tok) in tokens.enumerated() {
                for l in 0..<layers {
                    let a = tok.selected(l)
                    if t >= countFrom {
                        for e in a where p.isCached(SegmentID(layer: l, expert: e, part: .top)) { hits[l] += 1 }
                    }
                    _ = p.access(layer: l, experts: a)
                    _ = p.release(layer: l)
                }
            }
            for l in 0..<layers where uses[l] > 0 { hit[l][n] = Double(hits[l]) / Double(uses[l]) }
        }
        return HitRateCurves(hit: hit, policy: name, uses: uses)
    }
}
