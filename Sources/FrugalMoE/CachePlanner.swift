import Foundation

/// Timing inputs of one MoE layer for the planner's latency model (seconds, bytes). Measured on the machine by the
/// engine, or derived from a hardware and model profile by the simulator.
public struct LayerTiming: Sendable, Codable, Equatable {
    /// S: bytes of one whole expert.
    public var expertBytes: Double
    /// Slow-to-fast bandwidth, bytes per second.
    public var loadBandwidth: Double
    /// Fixed cost of one transfer (seconds).
    public var loadLatency: Double
    /// c: one whole expert's FFN at batch 1 (seconds); a segment of ratio θ takes θ·c.
    public var expertCompute: Double
    /// T_attn + T_gate (+ shared expert): the layer's resident work before its experts (seconds).
    public var attention: Double
    /// p_l: fraction of this layer's activated experts that the previous layer's prediction names.
    public var predictorAccuracy: Double
    /// c for an expert whose bytes arrived through the load path during this token (nil: c). On a CPU whose
    /// I/O thread copies experts in, those bytes are still in the shared last-level cache when they are
    /// computed, so batch-1 compute runs faster than from DRAM (measured by `moe bench`, see `EngineCalibration`).
    public var loadedExpertCompute: Double? = nil

    public init(expertBytes: Double, loadBandwidth: Double, loadLatency: Double = 0, expertCompute: Double,
                attention: Double, predictorAccuracy: Double) {
        self.expertBytes = expertBytes; self.loadBandwidth = loadBandwidth; self.loadLatency = loadLatency
        self.expertCompute = expertCompute; self.attention = attention; self.predictorAccuracy = predictorAccuracy
    }

    /// Seconds to load `bytes`.
    @inline(__always) public func load(_ bytes: Double) -> Double { bytes <= 0 ? 0 : loadLatency + bytes / loadBandwidth }
}

/// Rows of the planner's per-layer table, written from `concurrentPerform`: each iteration writes a distinct row
/// and the buffer outlives the call, so sharing the pointer is safe.
private struct RowsBox: @unchecked Sendable { let base: UnsafeMutablePointer<[LayerPlan]> }

/// One layer's cache configuration.
public struct LayerPlan: Sendable, Codable, Equatable {
    /// B_l: bytes of the fast tier given to this layer's cached top segments.
    public var budget: Double
    /// θ_l: split ratio (fraction of the intermediate dimension in the top segment); 0 = nothing cached.
    public var theta: Double
    /// n_l = ⌊B_l/(θ_l·S)⌋ tops that fit (capped at the expert count).
    public var cachedTops: Int
    /// Predicted hit rate h_l(n_l).
    public var hitRate: Double
    /// Predicted seconds per token in this layer.
    public var time: Double
    /// Fixed-point iterations the inner solver took (0 when not run).
    public var iterations: Int
    /// Whether the layer's experts are prefetched while the previous layer computes (off where wrong predictions
    /// cost the link more than right ones hide).
    public var prefetch: Bool = true
}

/// The planner's output: per-layer plans and the predicted time per output token.
public struct BudgetPlan: Sendable, Codable, Equatable {
    public var layers: [LayerPlan]
    /// Predicted seconds per output token (sum of layer times + `otherTime`).
    public var timePerToken: Double
    /// Bytes of the budget given to cached tops (the rest is staging for in-flight loads).
    public var cacheBytes: Double
    public var totalBudget: Double
    public var thetas: [Double] { layers.map(\.theta) }
    public var budgets: [Double] { layers.map(\.budget) }
}

/// MoEpic's cache configuration: each layer's budget B_l and split ratio θ_l, chosen by divide and conquer over
/// layers around an inner fixed-point iteration on θ_l, from hit-rate curves h_l(n) and per-layer timings.
///
/// Latency model (systems.md §1, extended): per layer and token, with k activated experts, predictor accuracy p,
/// n = ⌊B/(θS)⌋ cached tops, hit rate h = h_l(n), mean load L = (1−θh)·S/BW (+ latency), load of a mispredicted
/// expert L' = (1−θ·n/E)·S/BW, prefetched volume P = k·p·L + k(1−p)·L', window W = T_attn + k·c:
///
///     T_l = max(T_attn + k·c + max(0, P − W) + k(1−p)·L − k(1−p)·h·min(θc, (1−θ)S/BW),  P + k(1−p)·L)
///
/// The first stall term is the prefetched loads not hidden by the window, the second the loads of the experts the
/// prediction missed, the third the overlap of a cached top's compute with its bottom's load; the second operand
/// of the max is the link's busy time (mispredicted prefetches included), which bounds the layer when loads
/// dominate. The critical path also pays, when any expert needs a demand load, the wait for the prefetch chunk
/// in progress on a busy link (see `chunkBytes`). Without the link bound the model credits the split for overlap the saturated link cannot deliver.
public struct CachePlanner: Sendable {
    public var timings: [LayerTiming]
    public var curves: HitRateCurves
    public var topK: Int
    /// Allowed split ratios are multiples of 1/thetaSteps (e.g. rows of the intermediate dimension).
    public var thetaSteps: Int
    /// Budget granularity of the outer split: the cache bytes are divided into this many units.
    public var budgetUnits: Int
    /// Seconds per token outside the MoE layers (embedding, final norm, LM head).
    public var otherTime: Double
    /// Fixed staging bytes (for tests and other engines); nil: the engine's rule, `staging(thetas:)`.
    public var stagingOverride: Double?
    /// Fixed-point iteration limit of the inner solver.
    public var maxIterations = 50
    /// Prefetches move in chunks of this many bytes: a layer's demand loads first wait for the chunk in progress
    /// (on average half a chunk, when the link is busy). 0: no wait.
    public var chunkBytes: Double = 1_048_576
    /// Prefetched tops go into the layer caches, so staging holds prefetched bottoms only (false: prefetched tops go
    /// into staging, MoEpic's default, `PolicyTuning.moepicIntoCache`).
    public var prefetchIntoCache = false
    /// The planner may turn prefetching off in a layer where its model says wrong predictions cost the link more
    /// than right ones hide (false: every layer prefetches, the paper's design).
    public var allowNoPrefetch = true

    public init(timings: [LayerTiming], curves: HitRateCurves, topK: Int, thetaSteps: Int = 64, budgetUnits: Int = 256,
                otherTime: Double = 0, stagingBytes: Double? = nil) {
        self.timings = timings; self.curves = curves; self.topK = topK
        self.thetaSteps = max(1, thetaSteps); self.budgetUnits = max(1, budgetUnits); self.otherTime = otherTime
        self.stagingOverride = stagingBytes
    }

    /// The most staging any plan needs: a layer's k whole experts loading on demand plus the next layer's k
    /// prefetched (θ = 0).
    public var stagingBytes: Double { stagingOverride ?? 2 * Double(topK) * (timings.map(\.expertBytes).max() ?? 0) }

    /// Staging the engine reserves for split ratios `thetas` (as `PolicyFactory.stagingBytes`): the largest layer's
    /// k demand-loaded bottoms plus one layer's k prefetched bottoms (whole experts in a layer whose budget holds
    /// fewer than k tops, which then cannot all be admitted; prefetched whole experts, too, when prefetched tops go
    /// into staging instead of the caches). `budgets` nil: every layer holds k tops.
    public func staging(thetas: [Double], budgets: [Double]? = nil, prefetch: [Bool]? = nil) -> Double {
        if let s = stagingOverride { return s }
        let k = Double(topK)
        var bottoms = 0.0, pre = 0.0
        for (l, t) in timings.enumerated() {
            let th = l < thetas.count ? thetas[l] : 0
            let holds = th > 0 && (budgets.map { l < $0.count && $0[l] >= k * th * t.expertBytes } ?? true)
            bottoms = max(bottoms, k * (holds ? 1 - th : 1) * t.expertBytes)
            if prefetch.map({ l < $0.count && $0[l] }) ?? true {
                pre = max(pre, k * (holds && prefetchIntoCache ? 1 - th : 1) * t.expertBytes)
            }
        }
        return pre + bottoms
    }

    /// The smallest budget any policy runs in: one layer's k whole experts.
    public var minimumBudget: Double { stagingOverride ?? Double(topK) * (timings.map(\.expertBytes).max() ?? 0) }

    public var layerCount: Int { timings.count }
    var experts: Int { curves.experts }

    // MARK: latency model

    /// Tops of ratio θ that fit `budget` bytes in layer l.
    @inline(__always) public func tops(_ l: Int, budget: Double, theta: Double) -> Int {
        guard theta > 0 else { return 0 }
        let n = (budget / (theta * timings[l].expertBytes) + 1e-9).rounded(.down)
        return n >= Double(experts) ? experts : max(0, Int(n))
    }

    /// T_l for split ratio θ, hit rate h and n cached tops (a mispredicted expert is cached with chance n/E).
    /// Without `prefetch` every activation loads on demand: T = T_attn + k·c + k·L − k·h·min(θc, (1−θ)S/BW) (a cached
    /// top computes while its bottom loads).
    @inline(__always) public func layerTime(_ l: Int, theta: Double, hit h: Double, tops n: Int, prefetch: Bool = true) -> Double {
        let t = timings[l]
        let k = Double(topK), S = t.expertBytes, c = t.expertCompute
        let hh = theta > 0 ? h : 0
        if !prefetch {
            let meanLoad = t.load(S) - hh * (S * theta / t.loadBandwidth)
            return t.attention + k * c + k * meanLoad - k * hh * min(theta * c, (1 - theta) * S / t.loadBandwidth)
        }
        let share = theta > 0 && experts > 0 ? min(1, Double(n) / Double(experts)) : 0
        let meanLoad = t.load(S) - hh * (S * theta / t.loadBandwidth)
        let wrongLoad = t.load(S) - share * (S * theta / t.loadBandwidth)
        let window = t.attention + k * c
        let p = max(0, min(1, t.predictorAccuracy))
        let prefetched = k * p * meanLoad + k * (1 - p) * wrongLoad
        let prefetchStall = max(0, prefetched - window)
        let demand = k * (1 - p) * meanLoad
        let overlap = k * (1 - p) * hh * min(theta * c, (1 - theta) * S / t.loadBandwidth)
        // A layer with any demand load waits for the prefetch chunk in progress: P(some expert needs a demand load)
        // × P(link busy) × half a chunk. With θ < 1 every mispredicted expert needs its bottom; at θ = 1 only the
        // mispredicted ones not cached.
        let pDemand = (1 - p) * (theta < 1 ? 1 : 1 - hh)
        var none = 1.0
        for _ in 0..<topK { none *= 1 - pDemand }
        let someDemand = 1 - none
        let busy = window > 0 ? min(1, prefetched / window) : 1
        let wait = someDemand * busy * 0.5 * chunkBytes / t.loadBandwidth
        let critical = t.attention + k * c + prefetchStall + demand - overlap + wait
        // The link carries every load of the layer; when it is the bottleneck the layer is link-bound.
        return max(critical, prefetched + demand)
    }

    /// T_l for split ratio θ under budget B (hit rate from the curve).
    public func layerTime(_ l: Int, budget: Double, theta: Double, prefetch: Bool = true) -> Double {
        let n = tops(l, budget: budget, theta: theta)
        return layerTime(l, theta: theta, hit: curves.h(l, n), tops: n, prefetch: prefetch)
    }

    /// Best response with the hit rate held fixed: argmin_θ T_l(θ, h), smallest such θ on the grid (a smaller θ
    /// fits more tops, so among equal latencies it is the better start for the next iteration).
    public func bestTheta(_ l: Int, hit h: Double, tops n: Int, prefetch: Bool = true) -> Double {
        var best = 0.0, bestT = Double.infinity
        for j in 0...thetaSteps {
            let th = Double(j) / Double(thetaSteps)
            let T = layerTime(l, theta: th, hit: h, tops: n, prefetch: prefetch)
            if T < bestT * (1 - 1e-12) { bestT = T; best = th }
        }
        return best
    }

    /// Inner solver for one layer and budget: the fixed point θ = argmin_θ T_l(θ, h_l(⌊B/(θS)⌋)) iterated from θ = 1,
    /// then checked against every count n of cached tops (θ = largest grid ratio with n tops fitting B), which the
    /// fixed point can miss when loads dwarf compute (its best response is then always θ = 1). Returns the better;
    /// with `allowNoPrefetch`, the better of the layer with and without prefetching.
    public func solveLayer(_ l: Int, budget: Double) -> LayerPlan {
        let on = solveLayer(l, budget: budget, prefetch: true)
        guard allowNoPrefetch else { return on }
        let off = solveLayer(l, budget: budget, prefetch: false)
        return off.time < on.time * (1 - 1e-12) ? off : on
    }

    func solveLayer(_ l: Int, budget: Double, prefetch: Bool) -> LayerPlan {
        let fp = fixedPoint(l, budget: budget, prefetch: prefetch)
        var bestTheta = fp.theta, bestT = layerTime(l, budget: budget, theta: fp.theta, prefetch: prefetch)
        let S = timings[l].expertBytes
        if budget > 0 {
            for n in 1...max(1, experts) where n <= experts {
                let th = min(1, (budget / (Double(n) * S) * Double(thetaSteps) + 1e-9).rounded(.down) / Double(thetaSteps))
                if th <= 0 { break }
                let T = layerTime(l, budget: budget, theta: th, prefetch: prefetch)
                if T < bestT * (1 - 1e-12) { bestT = T; bestTheta = th }
            }
        }
        let zeroT = layerTime(l, theta: 0, hit: 0, tops: 0, prefetch: prefetch)
        if zeroT < bestT * (1 - 1e-12) { bestT = zeroT; bestTheta = 0 }
        let n = tops(l, budget: budget, theta: bestTheta)
        return LayerPlan(budget: budget, theta: bestTheta, cachedTops: n,
                         hitRate: bestTheta > 0 ? curves.h(l, n) : 0, time: bestT, iterations: fp.iterations, prefetch: prefetch)
    }

    /// The inner fixed-point iteration alone: θ_{t+1} = bestTheta(h_l(⌊B/(θ_t S)⌋)) from θ_0 = 1 until θ repeats.
    /// The map is monotone (larger θ → fewer tops → lower h → larger best θ), so from θ_0 = 1 the sequence
    /// decreases to a fixed point; a cycle guard stops it after `maxIterations`.
    public func fixedPoint(_ l: Int, budget: Double, prefetch: Bool = true) -> (theta: Double, iterations: Int, converged: Bool) {
        var theta = 1.0
        for it in 1...maxIterations {
            let n = tops(l, budget: budget, theta: theta)
            let next = bestTheta(l, hit: curves.h(l, n), tops: n, prefetch: prefetch)
            if next == theta { return (theta, it, true) }
            theta = next
            if theta == 0 { return (0, it, true) }
        }
        return (theta, maxIterations, false)
    }

    // MARK: outer divide and conquer

    /// Plans a total fast-tier budget (bytes, staging included). Throws when the budget does not cover one
    /// layer's working set. Staging depends on the ratios chosen (bottoms in flight), so the plan is made with the
    /// staging of θ = 1, then again with the staging its ratios need, until that fits.
    public func plan(totalBudget: Double) throws -> BudgetPlan {
        guard timings.count > 0, curves.layers == timings.count else {
            throw MoETraceError("planner: \(timings.count) layer timings but hit-rate curves for \(curves.layers) layers")
        }
        guard totalBudget >= minimumBudget else {
            throw MoETraceError("planner: budget \(Int(totalBudget)) B is smaller than one layer's working set "
                                + "(\(Int(minimumBudget)) B: top-\(topK) experts in flight)")
        }
        // The staging reserve depends on the plan (θ_l, whether layers hold k tops, which layers prefetch): plan with
        // a reserve, take the plan's own need as the next reserve, and keep the fastest plan whose need fits its reserve.
        // Two starts: the reserve of whole-expert layers that all prefetch, and none (every layer holds k whole experts
        // and nothing is prefetched into staging).
        var best: BudgetPlan? = nil
        var tried: [Double] = []
        let ones = [Double](repeating: 1, count: layerCount)
        for start in [staging(thetas: ones), staging(thetas: ones, prefetch: [Bool](repeating: false, count: layerCount))] {
            var reserve = start
            for _ in 0..<6 {
                if reserve > totalBudget || tried.contains(where: { abs($0 - reserve) <= 1e-6 * max(1, reserve) }) { break }
                tried.append(reserve)
                let p = try plan(totalBudget: totalBudget, staging: reserve)
                let need = staging(thetas: p.thetas, budgets: p.budgets, prefetch: p.layers.map(\.prefetch))
                if need <= reserve + 1e-9, p.timePerToken < best?.timePerToken ?? .infinity { best = p }
                reserve = need
            }
        }
        if var best {
            // Staging the plan does not need (e.g. no layer prefetches) goes back to the layers: plan again with the
            // smaller reserve and the same layers prefetching.
            let flags = best.layers.map(\.prefetch)
            let need = staging(thetas: best.thetas, budgets: best.budgets, prefetch: flags)
            if totalBudget - best.cacheBytes - need > 1e-6 * totalBudget {
                let again = try plan(totalBudget: totalBudget, staging: need, prefetch: flags)
                let need2 = staging(thetas: again.thetas, budgets: again.budgets, prefetch: flags)
                if need2 <= need + 1e-9, again.timePerToken < best.timePerToken { best = again }
            }
            return best
        }
        return try plan(totalBudget: totalBudget, staging: min(totalBudget, max(tried.max() ?? 0, stagingBytes)))
    }

    func plan(totalBudget: Double, staging reserve: Double, prefetch forced: [Bool]? = nil) throws -> BudgetPlan {
        let L = layerCount
        guard totalBudget >= reserve else {
            throw MoETraceError("planner: budget \(Int(totalBudget)) B is smaller than one layer's working set "
                                + "(\(Int(reserve)) B of staging for in-flight experts)")
        }
        let cache = totalBudget - reserve
        let G = budgetUnits
        let unit = cache / Double(G)
        // Per-layer cost on the budget grid: F_l(g) = T_l at B = g·unit.
        // Layers are independent here: solve them on all cores. Each task writes only its own row.
        var leaf = [[LayerPlan]](repeating: [], count: L)
        leaf.withUnsafeMutableBufferPointer { rows in
            let box = RowsBox(base: rows.baseAddress!)
            DispatchQueue.concurrentPerform(iterations: L) { l in
                box.base[l] = (0...G).map { g in
                    forced.map { solveLayer(l, budget: Double(g) * unit, prefetch: $0[l]) } ?? solveLayer(l, budget: Double(g) * unit)
                }
            }
        }

        // Divide and conquer: F_range(g) = min_i F_left(i) + F_right(g − i); split points kept for backtracking.
        final class Node {
            var cost: [Double] = []; var split: [Int] = []; var left: Node?; var right: Node?; var layer = -1
        }
        func solve(_ a: Int, _ b: Int) -> Node {
            let node = Node()
            if b - a == 1 { node.layer = a; node.cost = leaf[a].map(\.time); return node }
            let m = (a + b) / 2
            let lt = solve(a, m), rt = solve(m, b)
            node.left = lt; node.right = rt
            node.cost = [Double](repeating: .infinity, count: G + 1)
            node.split = [Int](repeating: 0, count: G + 1)
            lt.cost.withUnsafeBufferPointer { lc in rt.cost.withUnsafeBufferPointer { rc in
                for g in 0...G {
                    var best = Double.infinity, arg = 0
                    for i in 0...g { let v = lc[i] + rc[g - i]; if v < best { best = v; arg = i } }
                    node.cost[g] = best; node.split[g] = arg
                }
            } }
            return node
        }
        let root = solve(0, L)
        var units = [Int](repeating: 0, count: L)
        func assign(_ n: Node, _ g: Int) {
            if n.layer >= 0 { units[n.layer] = g; return }
            assign(n.left!, n.split[g]); assign(n.right!, g - n.split[g])
        }
        let gTop = (0...G).min { root.cost[$0] < root.cost[$1] || (root.cost[$0] == root.cost[$1] && $0 > $1) }!
        assign(root, gTop)
        let layers = (0..<L).map { leaf[$0][units[$0]] }
        return BudgetPlan(layers: layers, timePerToken: layers.reduce(otherTime) { $0 + $1.time },
                          cacheBytes: cache, totalBudget: totalBudget)
    }

    /// Evaluates a given configuration (per-layer budgets for tops and ratios) with the same model.
    public func evaluate(budgets: [Double], thetas: [Double], totalBudget: Double) -> BudgetPlan {
        let layers = (0..<layerCount).map { l -> LayerPlan in
            let n = tops(l, budget: budgets[l], theta: thetas[l])
            let h = thetas[l] > 0 ? curves.h(l, n) : 0
            return LayerPlan(budget: budgets[l], theta: thetas[l], cachedTops: n, hitRate: h,
                             time: layerTime(l, theta: thetas[l], hit: h, tops: n), iterations: 0)
        }
        return BudgetPlan(layers: layers, timePerToken: layers.reduce(otherTime) { $0 + $1.time },
                          cacheBytes: budgets.reduce(0, +), totalBudget: totalBudget)
    }

    /// Uniform budget (equal bytes per layer) with one θ for all layers.
    public func uniform(totalBudget: Double, theta: Double) -> BudgetPlan {
        let th = [Double](repeating: theta, count: layerCount)
        var per = max(0, totalBudget - staging(thetas: th)) / Double(layerCount)
        if staging(thetas: th, budgets: [Double](repeating: per, count: layerCount)) > staging(thetas: th) {
            per = max(0, totalBudget - stagingBytes) / Double(layerCount)
        }
        return evaluate(budgets: [Double](repeating: per, count: layerCount),
                        thetas: [Double](repeating: theta, count: layerCount), totalBudget: totalBudget)
    }

    /// The uniform plan with the best single θ on the grid.
    public func bestUniform(totalBudget: Double) -> BudgetPlan {
        (0...thetaSteps).map { uniform(totalBudget: totalBudget, theta: Double($0) / Double(thetaSteps)) }
            .min { $0.timePerToken < $1.timePerToken }!
    }
}
