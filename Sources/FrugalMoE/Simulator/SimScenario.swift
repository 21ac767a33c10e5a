import Foundation

/// Everything a planning or simulation run needs: the model's dimensions, the machine, the routing (real or
/// synthetic, adapted to the model's counts), per-layer timings and predictor accuracy.
public struct SimScenario: Sendable {
    public var profile: ModelProfile
    public var hardware: HardwareProfile
    /// Routing in the profile's layer/expert counts; the first `warmup` tokens (prefill) warm caches untimed.
    public var tokens: [TokenRouting]
    public var warmup: Int
    /// Which tokens are timed (decode steps) when the routing interleaves prompts and decodes of several turns
    /// (a trace recorded over several prompts); nil: every token from `warmup` on.
    public var timedMask: [Bool]? = nil
    /// Experts used per token in `tokens` (the trace's count when it has fewer than the profile).
    public var topK: Int
    public var expertBytes: [Double]
    public var timings: [LayerTiming]
    /// Notes on how the trace was adapted (printed by the CLI).
    public var notes: [String]

    public var layers: Int { profile.layers }
    public var experts: Int { profile.experts }
    public var totalExpertBytes: Double { expertBytes.reduce(0, +) * Double(profile.experts) }

    /// Builds a scenario. `profile` nil: dimensions from the trace header (its expert and dense bytes).
    /// `predictorAccuracy` applies to layers 1..L-1; layer 0 has nothing to predict from (0).
    public static func make(trace: RoutingTrace?, syntheticTokens: Int? = nil, profile: ModelProfile?,
                            hardware: HardwareProfile, predictorAccuracy: Double, seed: UInt64 = 1) throws -> SimScenario {
        var notes: [String] = []
        var maskOut: [Bool]? = nil
        var tokens: [TokenRouting]
        var warm = 0
        let prof: ModelProfile
        var eb: [Double]
        var dense: [Double]
        if let trace {
            let pre = trace.tokens(phase: 0), dec = trace.tokens(phase: 1)
            tokens = pre + dec
            warm = pre.count
            if dec.isEmpty { tokens = trace.tokens(); warm = 0 }
            if Set(trace.rows.map(\.turn)).count > 1 && !dec.isEmpty {
                // Several prompts: replay in recorded order (each prompt warms the caches for its decode), time decodes.
                tokens = trace.tokens(); warm = 0
                maskOut = tokens.map { $0.phase == 1 }
                notes.append("\(Set(trace.rows.map(\.turn)).count) turns replayed in order; decode steps timed, TPOT = median over turns")
            }
            if let p = profile {
                prof = p
                if p.layers != trace.layers || p.experts != trace.experts || p.topK < trace.topK {
                    tokens = adaptTokens(tokens, traceLayers: trace.layers, toLayers: p.layers, experts: p.experts,
                                         topK: min(p.topK, trace.topK))
                    notes.append("trace adapted: \(trace.layers) layers x \(trace.experts) experts top-\(trace.topK) -> "
                                 + "\(p.layers) x \(p.experts) top-\(min(p.topK, trace.topK)) (layer l reads trace layer "
                                 + "l*\(trace.layers)/\(p.layers), expert e -> e mod \(p.experts))")
                }
                if p.topK > trace.topK {
                    notes.append("the trace routes \(trace.topK) experts a token; the profile's top-\(p.topK) is replayed as top-\(trace.topK)")
                }
                eb = [Double](repeating: p.expertBytes, count: p.layers)
                dense = [Double](repeating: p.denseBytes, count: p.layers)
            } else {
                guard trace.expertBytes.allSatisfy({ $0 > 0 }) else {
                    throw MoETraceError("the trace header has no expert_bytes for every layer: give --profile")
                }
                prof = ModelProfile(name: trace.arch.isEmpty ? "trace" : trace.arch, layers: trace.layers,
                                    experts: trace.experts, topK: trace.topK, hidden: 0, intermediate: 0, heads: 0,
                                    kvHeads: 0, headDim: 0)
                eb = trace.expertBytes.map(Double.init)
                dense = trace.denseBytes.map(Double.init)
                notes.append("dimensions from the trace header (expert and dense bytes as recorded)")
            }
            if let n = syntheticTokens {
                let stats = RoutingStatistics(tokens: tokens, layers: prof.layers, experts: prof.experts,
                                              topK: min(prof.topK, trace.topK))
                tokens = stats.synthesize(tokens: n, seed: seed)
                warm = 0; maskOut = nil
                notes.append("\(n) synthetic tokens fitted to the trace's popularity, transitions and reuse")
            }
        } else {
            guard let p = profile else { throw MoETraceError("give a routing trace or a model profile") }
            prof = p
            let n = syntheticTokens ?? 256
            // No trace: a Zipf-like popularity (exponent 0.8) with no correlations.
            var stats = RoutingStatistics(tokens: [], layers: p.layers, experts: p.experts, topK: p.topK)
            stats.popularity = (0..<p.layers).map { l in (0..<p.experts).map { e in
                1 / pow(Double((e * 7 + l * 13) % p.experts + 1), 0.8) } }
            tokens = stats.synthesize(tokens: n, seed: seed, transitionWeight: 0)
            eb = [Double](repeating: p.expertBytes, count: p.layers)
            dense = [Double](repeating: p.denseBytes, count: p.layers)
            notes.append("no trace: \(n) synthetic tokens with Zipf(0.8) popularity")
        }
        let k = tokens.map { t in (0..<prof.layers).map { t.experts[$0].count }.max() ?? 0 }.max() ?? prof.topK
        let timings = (0..<prof.layers).map { l in
            var t = LayerTiming(expertBytes: eb[l], loadBandwidth: hardware.loadBandwidth, loadLatency: hardware.linkLatency,
                                expertCompute: hardware.expertCompute(bytes: eb[l]), attention: hardware.attention(bytes: dense[l]),
                                predictorAccuracy: l == 0 ? 0 : predictorAccuracy)
            t.loadedExpertCompute = hardware.loadedComputeFactor.map { $0 * t.expertCompute }
            return t
        }
        var sc = SimScenario(profile: prof, hardware: hardware, tokens: tokens, warmup: warm, topK: k, expertBytes: eb,
                             timings: timings, notes: notes)
        sc.timedMask = maskOut
        return sc
    }

    /// Sets every layer's load time to latency + bytes / bandwidth (a recalibrated slow tier).
    public mutating func setLoad(bandwidth: Double, latency: Double) {
        for l in timings.indices { timings[l].loadBandwidth = bandwidth; timings[l].loadLatency = latency }
    }

    /// Hit-rate curves of the MoEpic cache profiled on `tokens` (default: all, warmup not counted).
    public func curves(tokens t: [TokenRouting]? = nil, warmup w: Int? = nil,
                       policy: ReplayPolicy = .moepicDefault) -> HitRateCurves {
        HitRateCurves.profile(tokens: t ?? tokens, layers: layers, experts: experts, policy: policy,
                              countFrom: w ?? warmup)
    }

    /// The planner on this scenario's timings.
    public func planner(curves: HitRateCurves, thetaSteps: Int = 64, budgetUnits: Int = 256) -> CachePlanner {
        var p = CachePlanner(timings: timings, curves: curves, topK: topK, thetaSteps: thetaSteps, budgetUnits: budgetUnits,
                             otherTime: hardware.tokenSeconds)
        p.chunkBytes = hardware.chunkBytes
        return p
    }

    /// A policy of the comparison for a total budget: whole-expert policies split the cache bytes equally across
    /// layers (⌊B_l/S⌋ experts each); MoEpic follows `plan`.
    public func policy(_ kind: NativeSimPolicy.Kind, totalBudget: Double, plan: BudgetPlan? = nil,
                       staging: Double) -> NativeSimPolicy {
        let per = max(0, totalBudget - staging) / Double(layers)
        if kind == .moepic, let plan {
            return NativeSimPolicy(kind: .moepic, experts: experts, expertBytes: expertBytes, plan: plan)
        }
        let tops = (0..<layers).map { min(experts, Int((per / expertBytes[$0]).rounded(.down))) }
        return NativeSimPolicy(kind: kind, experts: experts, expertBytes: expertBytes,
                               thetas: [Double](repeating: 1, count: layers), tops: tops)
    }

    /// Runs the simulator.
    public func simulate(_ policy: SimPolicy, tokens t: [TokenRouting]? = nil, warmup w: Int? = nil,
                         seed: UInt64 = 7) -> SimResult {
        var sim = MoESimulator(timings: timings, otherTime: hardware.tokenSeconds)
        sim.seed = seed
        sim.chunkBytes = hardware.chunkBytes
        return sim.run(policy: policy, tokens: t ?? tokens, experts: experts, countFrom: w ?? warmup,
                       timed: t == nil ? timedMask : nil)
    }
}

/// Parses a budget: bytes with a unit (`512MiB`, `2GB`, `1.5e9`) or a share of `total` (`40%`).
public func parseMemoryBudget(_ s: String, totalExpertBytes total: Double) throws -> Double {
    let t = s.trimmingCharacters(in: .whitespaces)
    if t.hasSuffix("%") {
        guard let v = Double(t.dropLast()), v > 0, v <= 100 else {
            throw MoETraceError("--memory-budget \(s): a share must be in (0, 100]%")
        }
        return total * v / 100
    }
    let units: [(String, Double)] = [("TiB", 1_099_511_627_776), ("GiB", 1_073_741_824), ("MiB", 1_048_576), ("KiB", 1024),
                                     ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3), ("B", 1)]
    for (u, m) in units where t.hasSuffix(u) {
        guard let v = Double(t.dropLast(u.count).trimmingCharacters(in: .whitespaces)), v > 0 else {
            throw MoETraceError("--memory-budget \(s): not a positive number of \(u)")
        }
        return v * m
    }
    guard let v = Double(t), v > 0 else {
        throw MoETraceError("--memory-budget \(s): expected bytes (512MiB, 2GB) or a share (40%)")
    }
    return v
}
