import FrugalModels

/// Drives one of the engine's policy objects (`ExpertPolicy`, from `PolicyFactory`) in the simulator: the policy's
/// actions become simulated transfers (`.load` → a transfer of the segment's bytes, demand or prefetch; `.drop` →
/// the segment's buffer is gone; `.admit` → bookkeeping only). The decisions are exactly the engine's.
public final class EnginePolicySim: SimPolicy {
    public let policy: any ExpertPolicy
    public var name: String { policy.name }
    public var usesPrediction: Bool { policy.usesPrediction }
    public var streamsChunks: Bool { (policy as? SegmentCachePolicy)?.streamsChunks ?? false }

    /// Wraps `policy` and executes its `start()` actions (before the first token, untimed).
    public init(_ policy: any ExpertPolicy) {
        self.policy = policy
        _ = policy.start()
    }

    func seg(_ s: SegmentID) -> SimSegment { SimSegment(layer: s.layer, expert: s.expert, part: s.part == .top ? 0 : 1) }

    func translate(_ acts: [PolicyAction]) -> (loads: [SimLoad], drops: [SimSegment]) {
        var loads: [SimLoad] = [], drops: [SimSegment] = []
        for a in acts {
            switch a {
            case .load(let s, let demand, _): loads.append(SimLoad(segment: seg(s), bytes: Double(policy.layout.bytes(s)), demand: demand))
            case .drop(let s): drops.append(seg(s))
            case .admit: break
            }
        }
        return (loads, drops)
    }

    public func access(layer: Int, experts: [Int]) -> (loads: [SimLoad], drops: [SimSegment]) {
        translate(policy.access(layer: layer, experts: experts))
    }

    public func prefetch(layer: Int, predicted: [Int]) -> (loads: [SimLoad], drops: [SimSegment]) {
        translate(policy.prefetch(layer: layer, predicted: predicted))
    }

    public func release(layer: Int) -> [SimSegment] { translate(policy.release(layer: layer)).drops }

    public func segments(layer: Int, expert: Int) -> [(segment: SimSegment, share: Double)] {
        let I = Double(max(1, policy.layout.shape.intermediate))
        return policy.segments(layer: layer, expert: expert).map { (seg($0), Double(policy.layout.rows($0).count) / I) }
    }

    public func topCached(layer: Int, expert: Int) -> Bool {
        policy.isCacheHit(layer: layer, expert: expert)
    }
}

extension BudgetPlan {
    /// The engine's `CachePlan` (θ_l and B_l in bytes, floored) for `PolicyFactory.make(plan:)`.
    public var enginePlan: CachePlan {
        CachePlan(theta: thetas, layerBudget: budgets.map { Int($0.rounded(.down)) },
                  prefetch: layers.allSatisfy(\.prefetch) ? nil : layers.map(\.prefetch))
    }
}

extension SimScenario {
    /// The engine's shape for this scenario (a trace without a profile gets a shape whose expert bytes match).
    public var engineShape: (shape: MoEShape, elementBytes: Int) {
        if profile.hidden > 0 && profile.intermediate > 0 {
            return (MoEShape(layers: layers, experts: experts, topK: topK, hidden: profile.hidden,
                             intermediate: profile.intermediate), profile.dtypeBytes)
        }
        let S = expertBytes.max() ?? 3
        return (MoEShape(layers: layers, experts: experts, topK: topK, hidden: 1, intermediate: max(1, Int(S / 3))), 1)
    }

    /// One of the engine's policies for a total budget (MoEpic with `plan`, or uniform `theta`). `full` gets
    /// every expert resident whatever the budget (it is the latency floor).
    public func enginePolicy(_ kind: PolicyKind, totalBudget: Double, plan: BudgetPlan?, theta: Double = 0.4,
                             tuning: PolicyTuning = PolicyTuning(), raiseTheta: Bool = true) throws -> EnginePolicySim {
        let (shape, eb) = engineShape
        let all = shape.layers * shape.experts * 3 * shape.hidden * shape.intermediate * eb
        let budget = kind == .full ? all : Int(totalBudget)
        let ep = kind == .moepic ? plan.map { $0.enginePlan(shape: shape, elementBytes: eb, budget: budget, tuning: tuning) } : nil
        return try enginePolicy(kind, totalBudget: totalBudget, cachePlan: ep, theta: theta, tuning: tuning, raiseTheta: raiseTheta)
    }

    /// The same with the engine's own `CachePlan` for MoEpic (e.g. the plan of an engine run being replayed).
    public func enginePolicy(_ kind: PolicyKind, totalBudget: Double, cachePlan: CachePlan?, theta: Double = 0.4,
                             tuning: PolicyTuning = PolicyTuning(), raiseTheta: Bool = true) throws -> EnginePolicySim {
        let (shape, eb) = engineShape
        let all = shape.layers * shape.experts * 3 * shape.hidden * shape.intermediate * eb
        let budget = kind == .full ? all : Int(totalBudget)
        let p = try PolicyFactory.make(kind, shape: shape, elementBytes: eb, budget: budget, theta: theta,
                                       plan: kind == .moepic ? cachePlan : nil, tuning: tuning, raiseTheta: raiseTheta)
        return EnginePolicySim(p)
    }
}

extension BudgetPlan {
    /// The engine's `CachePlan` for a budget of `budget` bytes: θ_l and B_l floored; the engine rounds θ to whole
    /// rows, so its staging can exceed the planner's by a few rows' bytes: the excess is taken from the layer
    /// budgets, largest first.
    public func enginePlan(shape: MoEShape, elementBytes: Int, budget: Int, tuning: PolicyTuning = PolicyTuning()) -> CachePlan {
        var e = enginePlan
        let lay = SegmentLayout(shape: shape, elementBytes: elementBytes, theta: e.theta)
        // Staging depends on the budgets (a layer holding fewer than k tops stages whole experts): cut and recheck.
        for _ in 0..<8 {
            let st = PolicyFactory.stagingBytes(layout: lay, plan: e, caches: true, admitAlways: !tuning.admitByScore, prefetches: true,
                                                prefetchIntoCache: tuning.moepicIntoCache,
                                                prefetchExperts: shape.topK + max(0, tuning.extraPrefetch))
            var excess = e.totalCacheBytes + st - budget
            if excess <= 0 { break }
            while excess > 0, let i = e.layerBudget.indices.max(by: { e.layerBudget[$0] < e.layerBudget[$1] }), e.layerBudget[i] > 0 {
                let cut = min(excess, e.layerBudget[i], max(1, excess / e.layerBudget.count + 1))
                e.layerBudget[i] -= cut; excess -= cut
            }
        }
        return e
    }
}
