import Foundation
import Testing
import FrugalModels
@testable import FrugalMoE

/// Concave synthetic hit-rate curves: h_l(n) = (1 − e^{−n/τ_l}) scaled to h(E) = 1.
func syntheticCurves(layers: Int, experts: Int, tau: (Int) -> Double) -> HitRateCurves {
    HitRateCurves(hit: (0..<layers).map { l in
        let t = tau(l), top = 1 - exp(-Double(experts) / t)
        return (0...experts).map { (1 - exp(-Double($0) / t)) / top }
    }, policy: "synthetic", uses: [Int](repeating: 1, count: layers))
}

func timings(layers: Int, S: Double = 1e6, bw: Double = 1e9, c: Double = 2e-4, attn: Double = 1e-4,
             p: Double = 0.8) -> [LayerTiming] {
    (0..<layers).map { l in
        LayerTiming(expertBytes: S, loadBandwidth: bw, loadLatency: 0, expertCompute: c, attention: attn,
                    predictorAccuracy: l == 0 ? 0 : p)
    }
}

@Suite struct CachePlannerTests {
    @Test func layerTimeMatchesTheModelByHand() {
        // k = 2, S/BW = 1 ms, c = 0.2 ms, attn = 0.1 ms, p = 0.8, θ = 0.5, h = 0.5, n = 4 of 8:
        // mean load = 1 − 0.25 = 0.75 ms; mispredicted load = 1 − 0.5·0.5 = 0.75; prefetched = 1.2 + 0.3 = 1.5;
        // window = 0.1 + 0.4 = 0.5; prefetch stall = 1.0; demand = 2·0.2·0.75 = 0.3;
        // overlap = 2·0.2·0.5·min(0.1, 0.5) = 0.02; critical path = 0.5 + 1.0 + 0.3 − 0.02 = 1.78 ms;
        // link = 1.5 + 0.3 = 1.8 ms -> T = 1.8 ms.
        var pl = CachePlanner(timings: timings(layers: 2), curves: syntheticCurves(layers: 2, experts: 8) { _ in 4 }, topK: 2)
        pl.chunkBytes = 0
        #expect(abs(pl.layerTime(1, theta: 0.5, hit: 0.5, tops: 4) - 1.8e-3) < 1e-12)
        // Compute-bound: c = 2 ms: critical = 0.1 + 4 + max(0, 1.5 − 4.1) + 0.3 − 2·0.2·0.5·min(1, 0.5) = 4.3 ms.
        var pc = CachePlanner(timings: timings(layers: 2, c: 2e-3), curves: pl.curves, topK: 2)
        pc.chunkBytes = 0
        #expect(abs(pc.layerTime(1, theta: 0.5, hit: 0.5, tops: 4) - 4.3e-3) < 1e-12)
        // Chunk wait: 0.2 MB chunks (0.2 ms): P(demand) = 0.2 per expert at θ < 1 -> 1 − 0.8² = 0.36; link busy
        // min(1, 1.5/4.1); wait = 0.36 · (1.5/4.1) · 0.1 ms.
        pc.chunkBytes = 2e5
        #expect(abs(pc.layerTime(1, theta: 0.5, hit: 0.5, tops: 4) - (4.3e-3 + 0.36 * (1.5 / 4.1) * 1e-4)) < 1e-12)
        // θ = 0: h ignored; T = 0.5 + (2 − 0.5) + 2·0.2·1 = 2.4 ms (= link 2.0 + 0.4).
        #expect(abs(pl.layerTime(1, theta: 0, hit: 0.9, tops: 8) - 2.4e-3) < 1e-12)
        #expect(pl.tops(1, budget: 3e6, theta: 0.5) == 6)
        #expect(pl.tops(1, budget: 3e6, theta: 0.25) == 8)  // capped at E
    }

    @Test func fixedPointHoldsAndSolverIsTheGridOptimum() {
        // Compute comparable to loads (c = S/BW / 3): the split pays, the fixed point is interior.
        let L = 4, E = 32
        for c in [3.3e-4, 2e-5] {
            let pl = CachePlanner(timings: timings(layers: L, c: c), curves: syntheticCurves(layers: L, experts: E) { 4 + 4 * Double($0) },
                                  topK: 2, thetaSteps: 32)
            for l in 0..<L {
                for B in [0.0, 2e6, 5e6, 1.2e7, 4e7] {
                    let fp = pl.fixedPoint(l, budget: B)
                    #expect(fp.converged)
                    // Fixed-point property: θ* = argmin_θ T(θ, h(⌊B/(θ*S)⌋)).
                    let n = pl.tops(l, budget: B, theta: fp.theta)
                    #expect(pl.bestTheta(l, hit: pl.curves.h(l, n), tops: n) == fp.theta)
                    // The solver's answer is the minimum over every grid θ, with and without prefetching.
                    let s = pl.solveLayer(l, budget: B)
                    let brute = [true, false].flatMap { pf in (0...32).map { pl.layerTime(l, budget: B, theta: Double($0) / 32, prefetch: pf) } }.min()!
                    #expect(abs(s.time - brute) <= 1e-15 + 1e-12 * brute)
                    #expect(abs(pl.layerTime(l, budget: B, theta: s.theta, prefetch: s.prefetch) - s.time) <= 1e-15)
                    #expect(s.time <= pl.layerTime(l, budget: B, theta: fp.theta) + 1e-15)
                }
            }
        }
    }

    @Test func divideAndConquerEqualsExhaustiveSplit() throws {
        // 3 layers, 8 budget units: enumerate every split of the units.
        let L = 3, E = 16
        var pl = CachePlanner(timings: timings(layers: L, c: 1e-4), curves: syntheticCurves(layers: L, experts: E) { 2 + 6 * Double($0) },
                              topK: 2, thetaSteps: 16, budgetUnits: 8, stagingBytes: 4e6)
        pl.otherTime = 1e-3
        let total = 4e6 + 8e6
        let plan = try pl.plan(totalBudget: total)
        let unit = 8e6 / 8
        var best = Double.infinity
        for a in 0...8 { for b in 0...(8 - a) { for c in 0...(8 - a - b) {
            let t = [a, b, c].enumerated().map { pl.solveLayer($0.offset, budget: Double($0.element) * unit).time }.reduce(0, +)
            best = min(best, t)
        } } }
        #expect(abs(plan.timePerToken - (best + 1e-3)) < 1e-12)
        #expect(plan.budgets.reduce(0, +) <= 8e6 + 1e-6)
        for lp in plan.layers where lp.theta > 0 {
            #expect(Double(lp.cachedTops) * lp.theta * 1e6 <= lp.budget + 1e-6)
        }
        // Beats (or ties) every uniform configuration in the model.
        #expect(plan.timePerToken <= pl.bestUniform(totalBudget: total).timePerToken + 1e-15)
        #expect(plan.timePerToken <= pl.uniform(totalBudget: total, theta: 0).timePerToken)
        #expect(plan.timePerToken <= pl.uniform(totalBudget: total, theta: 1).timePerToken)
    }

    @Test func skewedLayersGetMoreBudget() throws {
        // Layer 0 is unpredictable (p = 0) and its experts concentrate (τ small): it should get more than a share.
        let L = 4, E = 32
        let pl = CachePlanner(timings: timings(layers: L, c: 5e-5), curves: syntheticCurves(layers: L, experts: E) { $0 == 0 ? 3 : 30 },
                              topK: 2, budgetUnits: 64, stagingBytes: 0)
        let plan = try pl.plan(totalBudget: 2e7)
        #expect(plan.layers[0].budget > 2e7 / 4)
        #expect(plan.timePerToken < pl.bestUniform(totalBudget: 2e7).timePerToken)
    }

    @Test func budgetBelowWorkingSetIsAnError() {
        let pl = CachePlanner(timings: timings(layers: 2), curves: syntheticCurves(layers: 2, experts: 8) { _ in 4 }, topK: 2)
        #expect(pl.stagingBytes == 4e6 && pl.minimumBudget == 2e6)
        do { _ = try pl.plan(totalBudget: 1e6); Issue.record("expected an error") } catch {
            #expect("\(error)".contains("smaller than one layer's working set"))
        }
    }

    @Test func budgetParsing() throws {
        #expect(try parseMemoryBudget("512MiB", totalExpertBytes: 0) == 512 * 1_048_576)
        #expect(try parseMemoryBudget("2GB", totalExpertBytes: 0) == 2e9)
        #expect(try parseMemoryBudget("40%", totalExpertBytes: 1000) == 400)
        #expect(try parseMemoryBudget("1234", totalExpertBytes: 0) == 1234)
        #expect(throws: MoETraceError.self) { try parseMemoryBudget("150%", totalExpertBytes: 1) }
        #expect(throws: MoETraceError.self) { try parseMemoryBudget("lots", totalExpertBytes: 1) }
        #expect(throws: MoETraceError.self) { try parseMemoryBudget("-3GB", totalExpertBytes: 1) }
    }

    @Test func plannerOnSampleTraceCurves() throws {
        let t = try RoutingTrace.read(path: try fixturePath("qwen3-sample.route.csv"))
        let sc = try SimScenario.make(trace: t, profile: nil, hardware: .rtx4090, predictorAccuracy: 0.9)
        #expect(sc.warmup == 2 && sc.tokens.count == 12 && sc.topK == 6)
        let pl = sc.planner(curves: sc.curves())
        let total = sc.totalExpertBytes / 2
        let plan = try pl.plan(totalBudget: total)
        #expect(plan.layers.count == 4)
        #expect(plan.budgets.reduce(0, +) <= total - pl.staging(thetas: plan.thetas) + 1)
        // The engine's staging rule for MoEpic (prefetches staged): k whole experts + k demand-loaded bottoms of the
        // smallest θ; with prefetched tops into the caches, k prefetched bottoms + k demand-loaded bottoms.
        let S = sc.expertBytes[0], minTheta = plan.thetas.min()!
        #expect(abs(pl.staging(thetas: plan.thetas) - (6 * S + 6 * (1 - minTheta) * S)) < 1)
        var into = pl
        into.prefetchIntoCache = true
        #expect(abs(into.staging(thetas: plan.thetas) - 12 * (1 - minTheta) * S) < 1)
        #expect(plan.timePerToken <= pl.bestUniform(totalBudget: total).timePerToken + 1e-15)
    }
}

@Suite struct SimulatorTests {
    func oneLayer(_ seq: [[Int]], layers: Int = 1) -> [TokenRouting] {
        seq.enumerated().map { i, s in
            var t = TokenRouting(turn: 0, phase: 1, step: i, layers: layers)
            for l in 0..<layers { t.experts[l] = s.enumerated().map { (slot: $0, expert: $1, weight: 1) } }
            return t
        }
    }
    // S/BW = 1 ms, latency 0.01 ms, c = 0.2 ms, attn = 0.1 ms.
    let tm = LayerTiming(expertBytes: 1e6, loadBandwidth: 1e9, loadLatency: 1e-5, expertCompute: 2e-4, attention: 1e-4,
                         predictorAccuracy: 1)

    @Test func onDemandAndFullByHand() {
        let toks = oneLayer([[0], [1], [0]])
        let sim = MoESimulator(timings: [tm])
        let od = NativeSimPolicy(kind: .onDemand, experts: 2, expertBytes: [1e6], thetas: [1], tops: [0])
        let r = sim.run(policy: od, tokens: toks, experts: 2)
        #expect(abs(r.tpot - (1e-4 + 1e-5 + 1e-3 + 2e-4)) < 1e-12)
        #expect(abs(r.stallPerToken - (1e-5 + 1e-3)) < 1e-12)
        #expect(r.hitRate == 0 && r.bytesPerToken == 1e6)
        let full = NativeSimPolicy(kind: .full, experts: 2, expertBytes: [1e6], thetas: [1], tops: [2])
        let f = sim.run(policy: full, tokens: toks, experts: 2)
        #expect(abs(f.tpot - 3e-4) < 1e-12 && f.hitRate == 1 && f.bytesPerToken == 0)
    }

    @Test func justLoadedBytesComputeAtTheLoadedRate() {
        // Loaded-compute rate 0.05 ms: on-demand's expert arrives this token (0.05 ms compute); full's is resident
        // (0.2 ms); MoEpic θ = 0.5 with the top cached: the cached top at 0.1 ms, the just-loaded bottom at 0.025 ms.
        var t = tm; t.loadedExpertCompute = 5e-5
        let sim = MoESimulator(timings: [t])
        let toks = oneLayer([[0], [0]])
        let od = sim.run(policy: NativeSimPolicy(kind: .onDemand, experts: 2, expertBytes: [1e6], thetas: [1], tops: [0]),
                         tokens: toks, experts: 2)
        #expect(abs(od.tpot - (1e-4 + 1e-5 + 1e-3 + 5e-5)) < 1e-12)
        let f = sim.run(policy: NativeSimPolicy(kind: .full, experts: 2, expertBytes: [1e6], thetas: [1], tops: [2]),
                        tokens: toks, experts: 2)
        #expect(abs(f.tpot - 3e-4) < 1e-12)
        let mp = sim.run(policy: NativeSimPolicy(kind: .moepic, experts: 2, expertBytes: [1e6], thetas: [0.5], tops: [1]),
                         tokens: toks, experts: 2, countFrom: 1)
        #expect(abs(mp.tpot - (1e-4 + max(1e-4, 1e-5 + 5e-4) + 2.5e-5)) < 1e-12)
        // The calibration carries the rate to the simulator's timings as a factor of the resident rate.
        let cal = EngineCalibration(expertBytes: 1e6, expertSeconds: 2e-4, attentionSeconds: 1e-4, tier: "link", loadBandwidth: 1e9,
                                    loadLatency: 1e-5, ioThreads: 1, loadAverage: 0)
        #expect(cal.hardware.loadedComputeFactor == nil)
        var cal2 = cal; cal2.loadedExpertSeconds = 5e-5
        #expect(cal2.hardware.loadedComputeFactor == 0.25)
    }

    @Test func splitTopComputesWhileBottomLoads() {
        // MoEpic, θ = 0.5, one top cached: token 0 loads expert 0 whole (miss), token 1 reuses it: bottom (0.5 ms)
        // loads while the top computes (0.1 ms); then the bottom computes (0.1 ms).
        let toks = oneLayer([[0], [0]])
        let sim = MoESimulator(timings: [tm])
        let p = NativeSimPolicy(kind: .moepic, experts: 2, expertBytes: [1e6], thetas: [0.5], tops: [1])
        let r = sim.run(policy: p, tokens: toks, experts: 2, countFrom: 1)
        #expect(abs(r.tpot - (1e-4 + max(1e-4, 1e-5 + 5e-4) + 1e-4)) < 1e-12)
        #expect(r.cacheHitRate == 1 && r.hitRate == 0 && r.bytesPerToken == 5e5)
        // Whole-expert LRU with one slot: token 1 is a full hit.
        let lru = NativeSimPolicy(kind: .lru, experts: 2, expertBytes: [1e6], thetas: [1], tops: [1])
        let r2 = sim.run(policy: lru, tokens: toks, experts: 2, countFrom: 1)
        #expect(abs(r2.tpot - 3e-4) < 1e-12 && r2.hitRate == 1)
    }

    @Test func perfectPrefetchHidesTheNextLayer() {
        // Two layers, top-1, no cache, predictor exact: layer 1's expert loads during layer 0's work.
        // Layer 0: attn 0.1, demand load 1.01 (ends 1.11), compute to 1.31; prefetch of layer 1 queued after the
        // demand load: 1.11 → 2.12. Layer 1: attn 1.31 → 1.41, waits to 2.12, computes to 2.32 ms.
        let toks = oneLayer([[0]], layers: 2)
        let sim = MoESimulator(timings: [tm, tm])
        let p = NativeSimPolicy(kind: .prefetch, experts: 2, expertBytes: [1e6, 1e6], thetas: [1, 1], tops: [0, 0])
        let r = sim.run(policy: p, tokens: toks, experts: 2)
        #expect(abs(r.tpot - 2.32e-3) < 1e-12)
        #expect(r.hitRate == 0.5)  // layer 1's activation needed no demand load
        #expect(r.wastedPrefetchShare == 0)
    }

    @Test func demandLoadsOvertakeQueuedPrefetches() {
        // Prefetch (accuracy 0: a wrong expert) for layer 1 is queued behind layer 0's demand load; layer 1's demand
        // load must wait only for the transfer in progress, not for queued ones.
        var t0 = tm; t0.predictorAccuracy = 0
        let toks = oneLayer([[0]], layers: 2)
        var sim = MoESimulator(timings: [t0, t0])
        sim.chunkBytes = 0
        let p = NativeSimPolicy(kind: .prefetch, experts: 4, expertBytes: [1e6, 1e6], thetas: [1, 1], tops: [0, 0])
        let r = sim.run(policy: p, tokens: toks, experts: 4)
        // Layer 0 as above to 1.31 ms; the wrong prefetch runs 1.11 → 2.12 (started: not overtaken);
        // layer 1 attn to 1.41, demand load 2.12 → 3.13, compute to 3.33 ms.
        #expect(abs(r.tpot - 3.33e-3) < 1e-12)
        #expect(abs(r.wastedPrefetchShare - 1.0 / 3) < 1e-12)
    }

    @Test func demandLoadCutsAPrefetchAtAChunkBoundary() {
        // As above with 0.25 MB chunks: at 1.41 ms the wrong prefetch (started 1.11) has moved 0.29 MB, so it
        // stops at 0.5 MB (1.62 ms); the demand load runs 1.62 → 2.63, compute to 2.83 ms.
        var t0 = tm; t0.predictorAccuracy = 0
        let toks = oneLayer([[0]], layers: 2)
        var sim = MoESimulator(timings: [t0, t0])
        sim.chunkBytes = 2.5e5
        let p = NativeSimPolicy(kind: .prefetch, experts: 4, expertBytes: [1e6, 1e6], thetas: [1, 1], tops: [0, 0])
        let r = sim.run(policy: p, tokens: toks, experts: 4)
        #expect(abs(r.tpot - 2.83e-3) < 1e-12)
    }

    @Test func syntheticTraceKeepsPopularity() throws {
        let t = try RoutingTrace.read(path: try fixturePath("qwen3-sample.route.csv"))
        let toks = t.tokens()
        let st = RoutingStatistics(tokens: toks, layers: 4, experts: 128, topK: 6)
        #expect(st.popularity[0].reduce(0, +) == 72)
        let syn = st.synthesize(tokens: 400, seed: 3)
        #expect(syn.count == 400)
        for tok in syn { for l in 0..<4 { #expect(Set(tok.selected(l)).count == 6) } }
        // Experts never used in the sample are rare in the synthetic trace (smoothing only).
        let unused = Set(0..<128).subtracting(toks.flatMap { $0.selected(0) })
        let share = Double(syn.flatMap { $0.selected(0) }.filter { unused.contains($0) }.count) / Double(400 * 6)
        #expect(share < 0.2)
        // Adaptation to 8 experts top-2 and 2 layers.
        let ad = adaptTokens(toks, traceLayers: 4, toLayers: 2, experts: 8, topK: 2)
        #expect(ad[0].selected(1) == Array(toks[0].selected(2).map { $0 % 8 }.reduce(into: [Int]()) { if !$0.contains($1) { $0.append($1) } }.prefix(2)))
    }
}

@Suite struct EnginePolicySimTests {
    @Test func enginePoliciesMatchHandTimings() throws {
        // One layer, 2 experts top-1, the engine's on-demand and LRU policies through the adapter.
        // Profile: hidden 1, intermediate 1e6/3/… chosen so that S = 1.2e6 B (3·h·I·2 with h = 1000, I = 200).
        let prof = ModelProfile(name: "t", layers: 1, experts: 2, topK: 1, hidden: 1000, intermediate: 200, heads: 1,
                                kvHeads: 1, headDim: 1)
        var hw = HardwareProfile(name: "t", linkBandwidth: 1.2e9, linkLatency: 0, memoryBandwidth: 6e9, efficiency: 1,
                                 kernelOverhead: 0, attentionOverhead: 1e-4)
        hw.pageable = false
        var sc = try SimScenario.make(trace: nil, syntheticTokens: 4, profile: prof, hardware: hw, predictorAccuracy: 1)
        sc.tokens = [[0], [1], [0]].enumerated().map { i, s in
            var t = TokenRouting(turn: 0, phase: 1, step: i, layers: 1); t.experts[0] = [(slot: 0, expert: s[0], weight: 1)]; return t
        }
        sc.warmup = 0
        // attention: 1e-4 + dense bytes / 6e9; expert compute 1.2e6/6e9 = 0.2 ms; load 1 ms.
        let attn = sc.timings[0].attention
        #expect(abs(sc.timings[0].expertCompute - 2e-4) < 1e-15)
        let od = try sc.enginePolicy(.onDemand, totalBudget: 2.4e6, plan: nil)
        let r = sc.simulate(od)
        #expect(abs(r.tpot - (attn + 1e-3 + 2e-4)) < 1e-12)
        #expect(r.policy == "on-demand" && r.hitRate == 0)
        let full = try sc.enginePolicy(.full, totalBudget: 1, plan: nil)
        #expect(abs(sc.simulate(full).tpot - (attn + 2e-4)) < 1e-12)
        // LRU with room for 2 experts + staging: token 2 hits.
        let lru = try sc.enginePolicy(.lru, totalBudget: 3 * 1.2e6, plan: nil)
        let rl = sc.simulate(lru)
        #expect(abs(rl.hitRate - 1.0 / 3) < 1e-12)
        #expect(abs(rl.tpot - (3 * attn + 2 * 1e-3 + 3 * 2e-4) / 3) < 1e-12)
    }
}

@Suite struct ProfileTests {
    @Test func builtInProfilesMatchTheScaleFacts() {
        // systems.md §1: fp16 bytes per expert.
        #expect(abs(ModelProfile.mixtral8x7B.expertBytes - 352e6) < 1e6)
        #expect(abs(ModelProfile.qwen3MoE.expertBytes - 9.4e6) < 0.1e6)
        #expect(abs(ModelProfile.qwen15MoE.expertBytes - 17.3e6) < 0.1e6)
        #expect(abs(ModelProfile.deepseekV2Lite.expertBytes - 17.3e6) < 0.1e6)
        #expect(abs(ModelProfile.olmoe.expertBytes - 12.6e6) < 0.1e6)
        #expect(ModelProfile.named("mixtral") == .mixtral8x7B && ModelProfile.named("qwen3") == .qwen3MoE)
        #expect(HardwareProfile.named("rtx4090") == .rtx4090 && HardwareProfile.named("h100") == .h100)
        // PCIe 4.0: an expert loads 40x (4090) to 77x (A100) slower than it computes, overheads aside.
        let r = HardwareProfile.rtx4090.memoryBandwidth / HardwareProfile.rtx4090.linkBandwidth
        #expect(r > 39 && r < 41)
        var h = HardwareProfile.a100; h.pageable = true
        #expect(h.loadBandwidth == 12.5e9)
    }

    @Test func readsConfigJSON() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("cfg-\(getpid()).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let mixtral = """
        {"model_type": "mixtral", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
         "num_local_experts": 8, "num_experts_per_tok": 2, "num_attention_heads": 32, "num_key_value_heads": 8,
         "torch_dtype": "bfloat16"}
        """
        try mixtral.write(toFile: path, atomically: true, encoding: .utf8)
        var p = try ModelProfile.read(configPath: path)
        p.name = ModelProfile.mixtral8x7B.name
        #expect(p == .mixtral8x7B)
        let qwen = """
        {"model_type": "qwen2_moe", "hidden_size": 2048, "intermediate_size": 5632, "moe_intermediate_size": 1408,
         "shared_expert_intermediate_size": 5632, "num_hidden_layers": 24, "num_experts": 60, "num_experts_per_tok": 4,
         "num_attention_heads": 16, "num_key_value_heads": 16, "torch_dtype": "float32"}
        """
        try qwen.write(toFile: path, atomically: true, encoding: .utf8)
        p = try ModelProfile.read(configPath: path)
        #expect(p.intermediate == 1408 && p.sharedIntermediate == 5632 && p.experts == 60 && p.dtypeBytes == 4)
        try "{\"hidden_size\": 8}".write(toFile: path, atomically: true, encoding: .utf8)
        do { _ = try ModelProfile.read(configPath: path); Issue.record("expected an error") } catch {
            #expect("\(error)".contains("missing or invalid num_hidden_layers"))
        }
    }
}

@Suite struct CalibrationTests {
    @Test func calibratedProfileGivesTheMeasuredTimings() throws {
        let c = EngineCalibration(expertBytes: 3e6, expertSeconds: 3e-4, attentionSeconds: 5e-5, tier: "disk",
                                  loadBandwidth: 1.5e9, loadLatency: 4e-5, ioThreads: 2, loadAverage: 1)
        let hw = c.hardware
        #expect(abs(hw.expertCompute(bytes: 3e6) - 3e-4) < 1e-15 && abs(hw.expertCompute(bytes: 1.5e6) - 1.5e-4) < 1e-15)
        #expect(hw.attention(bytes: 1e9) == 5e-5)          // measured, whatever the dense bytes
        #expect(hw.loadBandwidth == 1.5e9 && hw.linkLatency == 4e-5 && hw.chunkBytes == 1_048_576)
        #expect(abs(c.computeToLoad - 3e-4 / (4e-5 + 2e-3)) < 1e-12)
        let path = tempPath("calib.json")
        defer { unlink(path) }
        try c.write(path: path)
        #expect(try EngineCalibration.read(path: path) == c)
        try "{\"expertBytes\": 1}".write(toFile: path, atomically: true, encoding: .utf8)
        do { _ = try EngineCalibration.read(path: path); Issue.record("read a partial profile") } catch let e as MoETraceError {
            #expect(e.description.contains(path) && e.description.contains("not an engine calibration"))
        }
    }

    @Test func computeFromAFullRun() {
        var s = OffloadStats()
        s.decodeComputeSeconds = 0.8e-3; s.decodeExpertsComputed = 4   // 0.2 ms a whole expert
        let (c, a) = EngineCalibration.compute(fullStats: s, tpot: 2e-3, layers: 4, topK: 2)
        #expect(abs(c - 2e-4) < 1e-15 && abs(a - (5e-4 - 4e-4)) < 1e-15)
    }

    @Test func tierMeasurementThroughTheLoadPath() throws {
        // A 2 MB/s link and 48 KiB experts: every transfer takes at least bytes / bandwidth; the fit is near the
        // link's bandwidth (wake-ups on a busy machine move it a little either way).
        let src = SyntheticSource(shape: MoEShape(layers: 2, experts: 3, topK: 1, hidden: 64, intermediate: 64), dtype: .float32)
        let tier = try HostLinkTier(source: src, bandwidth: 2e6)
        let (bw, lat) = try EngineCalibration.measureTier(tier, rounds: 2, batch: 2)
        #expect(bw.isFinite && bw > 0.2 * 2e6 && bw <= 1.25 * 2e6, "bandwidth \(bw)")
        #expect(lat.isFinite && lat >= 0)
        // Into a fast tier of 3 experts with 2 loaded at a time: the oldest are dropped to make room (no budget error),
        // and the link still bounds the fit.
        let (bw3, lat3) = try EngineCalibration.measureTier(tier, rounds: 3, batch: 2, arenaBytes: 3 * 64 * 3 * 64 * 4)
        #expect(bw3.isFinite && bw3 > 0.2 * 2e6 && bw3 <= 1.25 * 2e6, "bandwidth \(bw3)")
        #expect(lat3.isFinite && lat3 >= 0)
        // A fast tier holding every expert: still measures (experts are dropped so that some are left to load).
        let (bw6, _) = try EngineCalibration.measureTier(tier, rounds: 4, batch: 2, arenaBytes: 6 * 64 * 3 * 64 * 4)
        #expect(bw6.isFinite && bw6 > 0)
        // Compute of a just-loaded expert: positive and finite.
        let c = try EngineCalibration.measureLoadedCompute(tier, count: 3)
        #expect(c.isFinite && c > 0)
    }
}

@Suite struct MultiTurnReplayTests {
    @Test func severalPromptsReplayInOrderAndTimeDecodeSteps() throws {
        // Two turns of one layer, two experts, top-1: prompt tokens (phase 0) warm the cache, decode steps are timed.
        let S = 999_999.0   // divisible by 3: the engine's shape for a trace without a profile has S exactly
        var t = RoutingTrace(layers: 1, experts: 2, topK: 1, expertBytes: [Int(S)])
        let seq: [(Int, Int, Int)] = [(0, 0, 0), (0, 1, 0), (0, 1, 1), (1, 0, 1), (1, 1, 0), (1, 1, 0)]  // turn, phase, expert
        var step = [0, 0]
        for (turn, phase, e) in seq {
            t.rows.append(RoutingTraceRow(turn: turn, phase: phase, step: step[turn], layer: 0, slot: 0, expert: e, weight: 1))
            step[turn] += 1
        }
        var hw = HardwareProfile(name: "t", linkBandwidth: 1e9, linkLatency: 0, memoryBandwidth: 5e9, efficiency: 1,
                                 kernelOverhead: 0, attentionOverhead: 0)
        hw.attentionSeconds = 1e-4
        let sc = try SimScenario.make(trace: t, profile: nil, hardware: hw, predictorAccuracy: 0)
        #expect(sc.tokens.map(\.phase) == [0, 1, 1, 0, 1, 1] && sc.timedMask == [false, true, true, false, true, true])
        // LRU with one slot: a miss costs a load of S / 1 GB/s.
        let lru = try sc.enginePolicy(.lru, totalBudget: 1e6, plan: nil)
        let r = sc.simulate(lru)
        // Turn 0 decodes [0, 1] after prompt [0]: hit then miss; turn 1 decodes [0, 0] after prompt [1]: miss, hit.
        let hit = 1e-4 + S / 5e9, miss = 1e-4 + S / 1e9 + S / 5e9
        #expect(r.turnTpot.count == 2 && abs(r.turnTpot[0] - (hit + miss) / 2) < 1e-12 && abs(r.turnTpot[1] - (miss + hit) / 2) < 1e-12)
        #expect(r.tokens == 4 && abs(r.medianTurnTpot - (hit + miss) / 2) < 1e-12)
    }
}

@Suite struct PrefetchChoiceTests {
    @Test func plannerTurnsPrefetchOffWhereWrongPredictionsCostTheLinkMore() {
        // Loads dwarf compute (S/BW = 1 ms, c = 0.02 ms): at accuracy 0.5, half the prefetched bytes are wasted
        // on a saturated link and the window hides almost nothing, so demand loading is faster; at accuracy 1
        // prefetching hides the window and wastes nothing.
        let curves = syntheticCurves(layers: 2, experts: 8) { _ in 3 }
        for (p, expectOn) in [(0.5, false), (1.0, true)] {
            let pl = CachePlanner(timings: timings(layers: 2, c: 2e-5, p: p), curves: curves, topK: 2, thetaSteps: 16)
            let s = pl.solveLayer(1, budget: 2e6)
            #expect(s.prefetch == expectOn, "accuracy \(p)")
            let other = (0...16).map { pl.layerTime(1, budget: 2e6, theta: Double($0) / 16, prefetch: !expectOn) }.min()!
            #expect(s.time < other)
            var strict = pl
            strict.allowNoPrefetch = false
            #expect(strict.solveLayer(1, budget: 2e6).prefetch)
        }
    }

    @Test func policyPrefetchesOnlyWhereThePlanSays() {
        let shape = MoEShape(layers: 3, experts: 4, topK: 1, hidden: 4, intermediate: 4)
        let lay = SegmentLayout(shape: shape, elementBytes: 4, theta: [1, 1, 1])
        let S = lay.expertBytes
        let p = SegmentCachePolicy.moepic(layout: lay, plan: CachePlan(theta: [1, 1, 1], layerBudget: [S, S, S], prefetch: [true, false, true]),
                                          stagingBytes: S, prefetchIntoCache: true)
        #expect(p.prefetch(layer: 1, predicted: [2]).isEmpty)
        #expect(p.prefetch(layer: 2, predicted: [2]) == [.load(SegmentID(layer: 2, expert: 2, part: .top), demand: false, cached: true)])
    }
}

@Suite struct StreamingTests {
    @Test func streamingComputesChunksAsTheyLand() {
        // One layer, top-1, MoEpic at θ = 0 (no cache): the expert (1.2 MB, 1.2 ms + 0.01 ms to load) loads on demand
        // in four 0.3 MB chunks landing 0.3 ms apart; each chunk computes in 0.06 ms as soon as it lands.
        let shape = MoEShape(layers: 1, experts: 2, topK: 1, hidden: 1000, intermediate: 100)
        let lay = SegmentLayout(shape: shape, elementBytes: 4, theta: [0])
        #expect(lay.expertBytes == 1_200_000)
        let tm = LayerTiming(expertBytes: 1.2e6, loadBandwidth: 1e9, loadLatency: 1e-5, expertCompute: 2.4e-4, attention: 1e-4,
                             predictorAccuracy: 1)
        var tok = TokenRouting(turn: 0, phase: 1, step: 0, layers: 1)
        tok.experts[0] = [(slot: 0, expert: 1, weight: 1)]
        var sim = MoESimulator(timings: [tm])
        sim.chunkBytes = 3e5
        for stream in [true, false] {
            let p = SegmentCachePolicy.moepic(layout: lay, plan: CachePlan(theta: [0], layerBudget: [0]), stagingBytes: lay.expertBytes)
            p.streamsChunks = stream
            let r = sim.run(policy: EnginePolicySim(p), tokens: [tok], experts: 2)
            // Streaming: last chunk lands at 0.1 + 0.01 + 1.2 = 1.31 ms, computes to 1.37; whole: 1.31 + 0.24 = 1.55 ms.
            #expect(abs(r.tpot - (stream ? 1.37e-3 : 1.55e-3)) < 1e-12, "stream \(stream): \(r.tpot)")
        }
    }
}

@Suite struct PlanRefinementTests {
    @Test func refinedPlanIsNoSlowerThanItsStartsAndFitsTheBudget() throws {
        let t = try RoutingTrace.read(path: try fixturePath("qwen3-sample.route.csv"))
        let hw = HardwareProfile.cpu(linkBandwidth: 2e9, memoryBandwidth: 20e9)
        let sc = try SimScenario.make(trace: t, profile: .qwen3MoE, hardware: hw, predictorAccuracy: 0.8)
        let pl = sc.planner(curves: sc.curves(), thetaSteps: 16, budgetUnits: 32)
        let total = sc.totalExpertBytes / 4
        let analytic = try pl.plan(totalBudget: total)
        let r = try sc.refine(analytic, planner: pl, totalBudget: total, thetaSteps: 4, sweeps: 1)
        #expect(r.refinedTime <= r.analyticTime && r.refinedTime <= r.uniformTime)
        #expect(r.evaluations >= 6)
        // The refined plan runs in the budget, and simulating it again gives the time reported.
        let pol = try sc.enginePolicy(.moepic, totalBudget: total, cachePlan: r.plan)
        #expect(pol.policy.plan.totalCacheBytes + pol.policy.stagingBytes <= Int(total))
        #expect(abs(sc.simulate(pol, seed: 7).tpot - r.refinedTime) < 1e-12)
    }
}
