import Foundation
import FrugalModels

/// The planner's plan refined by simulation on the routing it was fitted on. The analytic planner (`CachePlanner`:
/// divide and conquer over layers, fixed point on θ_l) works on a latency model; on a given machine that model is off
/// by a few percent in places, enough for a uniform θ to beat the plan. Refinement starts from the better (simulated on
/// the fit routing) of the analytic plan (with and without its prefetch switches) and the uniform plans on a θ grid, then
/// descends coordinate by
/// coordinate: each layer's θ_l one grid step up or down, its prefetch switch, and budget moved between neighbouring
/// layers, keeping every move that lowers the simulated time per token. Only the fit routing is used.
public struct PlanRefinement: Sendable {
    /// The refined plan, for `PolicyFactory.make(plan:)`.
    public var plan: CachePlan
    /// Simulated seconds per token on the fit routing: of the analytic plan, of the best uniform θ, and refined.
    public var analyticTime: Double, uniformTime: Double, refinedTime: Double
    public var uniformTheta: Double
    /// Simulations run and moves kept.
    public var evaluations: Int, moves: Int
}

extension SimScenario {
    /// Refines `analytic` (from `planner`) for `totalBudget` by simulation on `tokens` (default: this scenario's
    /// routing and timed tokens). Stops after `sweeps` passes over the layers, after a pass that keeps no move, or
    /// after `timeLimit` seconds.
    public func refine(_ analytic: BudgetPlan, planner: CachePlanner, totalBudget: Double, tokens: [TokenRouting]? = nil,
                       warmup: Int? = nil, tuning: PolicyTuning = PolicyTuning(), thetaSteps: Int = 8, sweeps: Int = 3,
                       timeLimit: Double = 20, seed: UInt64 = 7) throws -> PlanRefinement {
        let (shape, eb) = engineShape
        let budget = Int(totalBudget)
        let L = layers
        var evaluations = 0
        let t0 = Date()
        func time(_ p: CachePlan) -> Double? {
            evaluations += 1
            guard let pol = try? enginePolicy(.moepic, totalBudget: totalBudget, cachePlan: p, tuning: tuning) else { return nil }
            return simulate(pol, tokens: tokens, warmup: warmup, seed: seed).tpot
        }
        func fits(_ p: CachePlan) -> Bool {
            let lay = SegmentLayout(shape: shape, elementBytes: eb, theta: p.theta)
            let st = PolicyFactory.stagingBytes(layout: lay, plan: p, caches: true, admitAlways: !tuning.admitByScore, prefetches: true,
                                                prefetchIntoCache: tuning.moepicIntoCache,
                                                prefetchExperts: shape.topK + max(0, tuning.extraPrefetch))
            return p.layerBudget.allSatisfy { $0 >= 0 } && p.totalCacheBytes + st <= budget
        }
        let start = analytic.enginePlan(shape: shape, elementBytes: eb, budget: budget, tuning: tuning)
        guard let analyticTime = time(start) else { throw MoETraceError("refine: the analytic plan does not run in the budget") }
        var best = start, bestT = analyticTime
        // The analytic plan with prefetching kept in every layer (where the model's switch misfires).
        if planner.allowNoPrefetch, !analytic.layers.allSatisfy(\.prefetch) {
            var on = planner
            on.allowNoPrefetch = false
            if let p = try? on.plan(totalBudget: totalBudget) {
                let c = p.enginePlan(shape: shape, elementBytes: eb, budget: budget, tuning: tuning)
                if let t = time(c), t < bestT { bestT = t; best = c }
            }
        }
        var uniformTime = Double.infinity, uniformTheta = 1.0
        for j in 0...thetaSteps {
            let th = Double(j) / Double(thetaSteps)
            let u = planner.uniform(totalBudget: totalBudget, theta: th).enginePlan(shape: shape, elementBytes: eb, budget: budget, tuning: tuning)
            guard let t = time(u) else { continue }
            if t < uniformTime { uniformTime = t; uniformTheta = th }
            if t < bestT { bestT = t; best = u }
        }
        var moves = 0
        let unit = max(1, budget / (8 * L))
        for _ in 0..<sweeps {
            var improved = false
            for l in 0..<L {
                if Date().timeIntervalSince(t0) > timeLimit { break }
                var candidates: [CachePlan] = []
                for d in [-1.0, 1.0] {
                    var c = best
                    c.theta[l] = min(1, max(0, (c.theta[l] * Double(thetaSteps)).rounded() / Double(thetaSteps) + d / Double(thetaSteps)))
                    if c.theta[l] != best.theta[l] { candidates.append(c) }
                }
                var pf = best
                var flags = pf.prefetch ?? Array(repeating: true, count: L)
                flags[l].toggle(); pf.prefetch = flags
                candidates.append(pf)
                for m in [l - 1, l + 1] where m >= 0 && m < L {
                    var c = best
                    c.layerBudget[l] += unit; c.layerBudget[m] -= unit
                    candidates.append(c)
                    c = best
                    c.layerBudget[l] -= unit; c.layerBudget[m] += unit
                    candidates.append(c)
                }
                for c in candidates where fits(c) {
                    guard let t = time(c) else { continue }
                    if t < bestT * (1 - 1e-9) { bestT = t; best = c; moves += 1; improved = true }
                }
            }
            if !improved || Date().timeIntervalSince(t0) > timeLimit { break }
        }
        if let f = best.prefetch, f.allSatisfy({ $0 }) { best.prefetch = nil }
        return PlanRefinement(plan: best, analyticTime: analyticTime, uniformTime: uniformTime, refinedTime: bestT,
                              uniformTheta: uniformTheta, evaluations: evaluations, moves: moves)
    }
}
