import ArgumentParser
import Foundation
import FrugalMoE

/// Options shared by `moe plan` and `moe simulate`: the machine, the model's dimensions and the routing.
struct MoEScenarioOptions: ParsableArguments {
    @Option(help: "Routing trace (route_trace v1 CSV, e.g. $FRUGAL_DATA/moe-traces/qwen3-30b-a3b.route.csv).")
    var trace: String?
    @Option(help: "Model directory: its config.json gives the dimensions; its *.route.csv the routing when no --trace.")
    var model: String?
    @Option(help: "Model dimensions: mixtral-8x7b, qwen1.5-moe-a2.7b, qwen3-30b-a3b, deepseek-v2-lite, olmoe-1b-7b, or a config.json.")
    var profile: String?
    @Option(help: "Machine: rtx4090 (PCIe 4.0), a100 (PCIe 4.0), h100 (PCIe 5.0), cpu (give --link-bandwidth and --mem-bandwidth), or cpu:FILE (a calibration written by `frugal moe calibrate`).")
    var hardware = "rtx4090"
    @Option(help: "Link (or disk) bandwidth in GB/s: overrides the hardware's pinned figure.")
    var linkBandwidth: Double?
    @Option(help: "Memory bandwidth of the compute device in GB/s (batch-1 expert FFN speed); overrides the hardware's.")
    var memBandwidth: Double?
    @Flag(help: "Loads come from pageable host memory (about half the pinned bandwidth).")
    var pageable = false
    @Option(help: "Share of a layer's activated experts the next-layer predictor names (layers 1..L-1; layer 0 gets 0).")
    var predictorAccuracy = 0.9
    @Option(help: "Replace the routing by this many synthetic tokens fitted to it (popularity, transitions, reuse).")
    var synthetic: Int?
    @Option(help: "Seed of synthetic routing and predictor errors.")
    var seed: UInt64 = 1

    func scenario() throws -> SimScenario {
        var hw: HardwareProfile
        if hardware.hasPrefix("cpu:") {
            do { hw = try EngineCalibration.read(path: String(hardware.dropFirst(4))).hardware } catch { throw CLIError("--hardware: \(error)") }
            if let lb = linkBandwidth { hw.linkBandwidth = lb * 1e9 }
        } else if hardware.lowercased() == "cpu" {
            guard let lb = linkBandwidth, let mb = memBandwidth else {
                throw CLIError("--hardware cpu needs --link-bandwidth and --mem-bandwidth (GB/s measured on this machine)")
            }
            hw = .cpu(linkBandwidth: lb * 1e9, memoryBandwidth: mb * 1e9)
        } else {
            guard let h = HardwareProfile.named(hardware) else {
                throw CLIError("unknown --hardware \(hardware): use rtx4090, a100, h100 or cpu")
            }
            hw = h
            if let lb = linkBandwidth { hw.linkBandwidth = lb * 1e9 }
            if let mb = memBandwidth { hw.memoryBandwidth = mb * 1e9 }
        }
        hw.pageable = pageable
        guard predictorAccuracy >= 0, predictorAccuracy <= 1 else {
            throw CLIError("--predictor-accuracy must be in [0, 1]")
        }
        var prof: ModelProfile?
        if let p = profile {
            if let b = ModelProfile.named(p) { prof = b } else if FileManager.default.fileExists(atPath: p) {
                prof = try ModelProfile.read(configPath: p)
            } else {
                throw CLIError("unknown --profile \(p): use \(ModelProfile.builtIn.map(\.name).joined(separator: ", ")) or a config.json path")
            }
        }
        var tracePath = trace
        if let dir = model {
            let cfg = (dir as NSString).appendingPathComponent("config.json")
            if prof == nil { prof = try ModelProfile.read(configPath: cfg) }
            if tracePath == nil {
                let files = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
                if let f = files.sorted().first(where: { $0.hasSuffix(".route.csv") }) {
                    tracePath = (dir as NSString).appendingPathComponent(f)
                }
            }
        }
        let tr = try tracePath.map { try RoutingTrace.read(path: $0) }
        if tr == nil && synthetic == nil {
            throw CLIError("no routing: give --trace FILE (or record one with --record-trace), or --synthetic N with --profile")
        }
        return try SimScenario.make(trace: tr, syntheticTokens: synthetic, profile: prof, hardware: hw,
                                    predictorAccuracy: predictorAccuracy, seed: seed)
    }
}

/// CPU seconds used by this process (all threads): a fair measure on a loaded machine.
private func cpuSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

private func mib(_ b: Double) -> String { fmt(b / 1_048_576, 1) }
private func ms(_ s: Double) -> String { fmt(s * 1e3, 3) }

struct MoEPlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Choose each layer's cache budget B_l and split ratio θ_l; print the plan and the predicted time per token.",
        discussion: """
        Hit-rate curves h_l(n) come from replaying the routing through MoEpic's cache (priority μ·ρ^(ν/ω));
        compute and load times from the hardware profile (or --link-bandwidth / --mem-bandwidth measured here).
        Divide and conquer over layers splits the budget; a fixed-point iteration on θ_l solves each layer.
        """)

    @OptionGroup var scenario: MoEScenarioOptions
    @Option(help: "Fast-tier budget: bytes (512MiB, 2GB) or a share of all expert bytes (40%).")
    var memoryBudget: String
    @Option(help: "Split ratios are multiples of 1/N.")
    var thetaSteps = 64
    @Option(help: "Budget granularity of the layer split (units).")
    var budgetUnits = 256
    @Option(help: "Write the plan as JSON.")
    var json: String?

    func run() throws {
        let sc = try scenario.scenario()
        for n in sc.notes { print("note: \(n)") }
        let total = try parseMemoryBudget(memoryBudget, totalExpertBytes: sc.totalExpertBytes)
        let t0 = now()
        let curves = sc.curves()
        let t1 = now(), c1 = cpuSeconds()
        let pl = sc.planner(curves: curves, thetaSteps: thetaSteps, budgetUnits: budgetUnits)
        let plan: BudgetPlan
        do { plan = try pl.plan(totalBudget: total) } catch { throw CLIError("\(error)") }
        let t2 = now(), c2 = cpuSeconds()
        print("model \(sc.profile.name): \(sc.layers) layers x \(sc.experts) experts, top-\(sc.topK), "
              + "expert \(mib(sc.expertBytes.max() ?? 0)) MiB; hardware \(sc.hardware.name) "
              + "(link \(fmt(sc.hardware.loadBandwidth / 1e9)) GB/s); budget \(mib(total)) MiB "
              + "(\(fmt(100 * total / sc.totalExpertBytes))% of experts; \(mib(total - plan.cacheBytes)) MiB staging)")
        let tm = sc.timings[0]
        print("per expert: load \(ms(tm.load(tm.expertBytes))) ms, compute \(ms(tm.expertCompute)) ms; attention \(ms(tm.attention)) ms")
        printTable(["layer", "B_l MiB", "theta", "tops", "hit", "prefetch", "T_l ms", "iters"], plan.layers.enumerated().map { l, p in
            [String(l), mib(p.budget), fmt(p.theta, 3), String(p.cachedTops), fmt(p.hitRate, 3), p.prefetch ? "yes" : "no", ms(p.time), String(p.iterations)]
        })
        let uni = pl.bestUniform(totalBudget: total)
        let z = pl.uniform(totalBudget: total, theta: 0), o = pl.uniform(totalBudget: total, theta: 1)
        print("predicted time per token: \(ms(plan.timePerToken)) ms  (uniform best theta \(fmt(uni.thetas[0], 3)): "
              + "\(ms(uni.timePerToken)) ms; theta 0: \(ms(z.timePerToken)) ms; theta 1: \(ms(o.timePerToken)) ms)")
        print("profiling \(fmt((t1 - t0) * 1e3)) ms, planning \(fmt((t2 - t1) * 1e3)) ms wall, \(fmt((c2 - c1) * 1e3)) ms CPU "
              + "(\(sc.layers) layers x \(sc.experts) experts, \(budgetUnits) budget units, \(thetaSteps) theta steps)")
        if let json {
            struct Out: Encodable {
                let model: String; let hardware: String; let budgetBytes: Double; let plan: BudgetPlan
                let uniformBestTheta: Double; let uniformBestTime: Double; let theta0Time: Double; let theta1Time: Double
                let planningSeconds: Double; let notes: [String]
            }
            try writeJSON(Out(model: sc.profile.name, hardware: sc.hardware.name, budgetBytes: total, plan: plan,
                              uniformBestTheta: uni.thetas[0], uniformBestTime: uni.timePerToken,
                              theta0Time: z.timePerToken, theta1Time: o.timePerToken, planningSeconds: t2 - t1,
                              notes: sc.notes), to: json)
        }
    }
}

struct MoESimulateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Discrete-event simulation of offloaded decoding: TPOT, hit rate and stall time per policy.",
        discussion: """
        Whole-expert policies (lru, lfu, prefetch) split the cache equally across layers; moepic uses the planner's
        plan (fitted on the first --fit-fraction of the decode tokens when given, scored on the rest).
        --plan-study compares, on held-out tokens, the fitted plan with a uniform budget at the best single θ
        (chosen on the fit tokens), θ = 0 and θ = 1.
        """)

    @OptionGroup var scenario: MoEScenarioOptions
    @Option(help: "Fast-tier budget: bytes (512MiB, 2GB) or a share of all expert bytes (50%).")
    var memoryBudget = "50%"
    @Option(help: "Policies: all, or a comma list of full, on-demand, lru, lfu, prefetch, moepic.")
    var policy = "all"
    @Option(help: "Force MoEpic's θ to this value in every layer (uniform budget) instead of planning.")
    var theta: Double?
    @Option(help: "Fit the planner on this leading share of the decode tokens and score on the rest (0 = fit on all).")
    var fitFraction = 0.0
    @Flag(help: "Compare the planner's plan with uniform plans (best single θ, θ = 0, θ = 1) on held-out tokens.")
    var planStudy = false
    @Flag(help: "Use the simulator's own replay policies instead of the engine's policy objects.")
    var native = false
    @Flag(help: "MoEpic uses the analytic plan as it is (default: refined by simulating the fit tokens).")
    var noRefine = false
    @OptionGroup var design: MoETuningOptions
    @Option(help: "Write the results as JSON.")
    var json: String?

    func run() throws {
        let sc = try scenario.scenario()
        for n in sc.notes { print("note: \(n)") }
        let total = try parseMemoryBudget(memoryBudget, totalExpertBytes: sc.totalExpertBytes)
        var kinds: [NativeSimPolicy.Kind] = []
        for p in policy.split(separator: ",") {
            if p == "all" { kinds = NativeSimPolicy.Kind.allCases; break }
            guard let k = NativeSimPolicy.Kind(rawValue: String(p)) else {
                throw CLIError("unknown --policy \(p): use all or full, on-demand, lru, lfu, prefetch, moepic")
            }
            kinds.append(k)
        }
        // Fit / score split of the decode tokens (warmup tokens stay in front of both).
        let frac = planStudy && fitFraction == 0 ? 0.5 : fitFraction
        guard frac >= 0, frac < 1 else { throw CLIError("--fit-fraction must be in [0, 1)") }
        let dec = sc.tokens.count - sc.warmup
        let nFit = frac > 0 ? Int(Double(dec) * frac) : dec
        let fitTokens = Array(sc.tokens[..<(sc.warmup + nFit)])
        // Scored tokens: the rest, preceded by the fit tokens as untimed warmup (caches carry over).
        let scoreWarm = frac > 0 ? sc.warmup + nFit : sc.warmup
        let curves = sc.curves(tokens: fitTokens, warmup: sc.warmup)
        var pl = sc.planner(curves: curves)
        pl.prefetchIntoCache = try design.tuning().moepicIntoCache
        pl.allowNoPrefetch = try design.tuning().plannerMayStopPrefetch
        guard total >= pl.minimumBudget else {
            throw CLIError("budget \(mib(total)) MiB is smaller than one layer's working set (\(mib(pl.minimumBudget)) MiB)")
        }
        let t0 = now()
        let plan: BudgetPlan
        if let theta { plan = pl.uniform(totalBudget: total, theta: theta) } else { plan = try pl.plan(totalBudget: total) }
        let planSeconds = now() - t0
        // MoEpic's plan refined by simulating the fit tokens (not with --theta, --native or --no-refine).
        var refinedPlan: CachePlan? = nil
        if theta == nil && !native && !noRefine && kinds.contains(.moepic) {
            let r = try sc.refine(plan, planner: pl, totalBudget: total, tokens: fitTokens, warmup: sc.warmup, tuning: try design.tuning(),
                                  seed: scenario.seed &+ 7)
            refinedPlan = r.plan
            print("plan refined on the fit tokens: \(r.evaluations) simulations, \(r.moves) moves kept; analytic \(ms(r.analyticTime)) ms, "
                  + "best uniform θ \(fmt(r.uniformTheta, 3)) \(ms(r.uniformTime)) ms, refined \(ms(r.refinedTime)) ms")
        }
        print("model \(sc.profile.name): \(sc.layers) layers x \(sc.experts) experts, top-\(sc.topK), expert "
              + "\(mib(sc.expertBytes.max() ?? 0)) MiB; hardware \(sc.hardware.name) (link \(fmt(sc.hardware.loadBandwidth / 1e9)) GB/s); "
              + "budget \(mib(total)) MiB (\(fmt(100 * total / sc.totalExpertBytes))% of experts); predictor accuracy \(scenario.predictorAccuracy)")
        let tm = sc.timings[0]
        print("policies: " + (native ? "simulator replay (--native)" : "the engine's policy objects (PolicyFactory)"))
        print("per expert: load \(ms(tm.load(tm.expertBytes))) ms, compute \(ms(tm.expertCompute)) ms "
              + "(load/compute \(fmt(tm.load(tm.expertBytes) / tm.expertCompute))x); attention \(ms(tm.attention)) ms; "
              + "scored tokens \(sc.timedMask.map { m in m.filter { $0 }.count } ?? sc.tokens.count - scoreWarm)"
              + (frac > 0 ? " (plan fitted on \(nFit))" : ""))
        var results: [SimResult] = []
        let tune = try design.tuning()
        func makePolicy(_ k: NativeSimPolicy.Kind, _ bp: BudgetPlan) throws -> SimPolicy {
            if native { return sc.policy(k, totalBudget: total, plan: bp, staging: bp.totalBudget - bp.cacheBytes) }
            do {
                return try sc.enginePolicy(PolicyKind(rawValue: k.rawValue)!, totalBudget: total, plan: bp, tuning: tune)
            } catch { throw CLIError("policy \(k.rawValue): \(error)") }
        }
        for k in kinds {
            if k == .moepic, let refinedPlan {
                let p = try sc.enginePolicy(.moepic, totalBudget: total, cachePlan: refinedPlan, tuning: try design.tuning())
                results.append(sc.simulate(p, warmup: scoreWarm, seed: scenario.seed &+ 7))
                continue
            }
            results.append(sc.simulate(try makePolicy(k, plan), warmup: scoreWarm, seed: scenario.seed &+ 7))
        }
        let moe = results.first { $0.policy == "moepic" }
        printTable(["policy", "TPOT ms", "tok/s", "hit", "cache hit", "stall ms", "MB/token", "moepic vs"], results.map { r in
            [r.policy, ms(r.tpot), fmt(1 / r.tpot, 2), fmt(r.hitRate, 3), fmt(r.cacheHitRate, 3), ms(r.stallPerToken),
             fmt(r.bytesPerToken / 1e6, 1), moe.map { r.policy == "moepic" ? "" : fmt(100 * (1 - $0.tpot / r.tpot)) + "%" } ?? ""]
        })
        if moe != nil {
            print("moepic plan: mean theta \(fmt(plan.thetas.reduce(0, +) / Double(plan.layers.count), 3)), "
                  + "prefetch in \(plan.layers.filter(\.prefetch).count) of \(plan.layers.count) layers, "
                  + "predicted \(ms(plan.timePerToken)) ms/token, planned in \(fmt(planSeconds * 1e3)) ms")
        }
        var study: [StudyRow] = []
        if planStudy {
            // Best single θ chosen by simulating uniform plans on the fit tokens.
            var bestTheta = 0.0, bestFit = Double.infinity
            for j in 0...20 {
                let th = Double(j) / 20
                let p = try makePolicy(.moepic, pl.uniform(totalBudget: total, theta: th))
                let r = sc.simulate(p, tokens: fitTokens, warmup: sc.warmup, seed: scenario.seed &+ 7)
                if r.tpot < bestFit { bestFit = r.tpot; bestTheta = th }
            }
            let fitted = try pl.plan(totalBudget: total)
            let t1 = now()
            let refined = try sc.refine(fitted, planner: pl, totalBudget: total, tokens: fitTokens, warmup: sc.warmup, tuning: tune,
                                        seed: scenario.seed &+ 7)
            print("refinement: \(refined.evaluations) simulations, \(refined.moves) moves kept, \(fmt(now() - t1, 1)) s; fit tokens: analytic "
                  + "\(ms(refined.analyticTime)) ms, best uniform θ \(fmt(refined.uniformTheta, 3)) \(ms(refined.uniformTime)) ms, refined \(ms(refined.refinedTime)) ms")
            let cands: [(String, BudgetPlan)] = [
                ("planner (fitted)", fitted),
                ("uniform, best theta \(fmt(bestTheta, 2))", pl.uniform(totalBudget: total, theta: bestTheta)),
                ("uniform, theta 0", pl.uniform(totalBudget: total, theta: 0)),
                ("uniform, theta 1", pl.uniform(totalBudget: total, theta: 1)),
            ]
            var rows: [(String, SimResult, Double)] = []
            for (name, bp) in cands {
                rows.append((name, sc.simulate(try makePolicy(.moepic, bp), warmup: scoreWarm, seed: scenario.seed &+ 7), bp.timePerToken))
            }
            let refPol = try sc.enginePolicy(.moepic, totalBudget: total, cachePlan: refined.plan, tuning: tune)
            rows.insert(("planner, refined by simulation", sc.simulate(refPol, warmup: scoreWarm, seed: scenario.seed &+ 7), .nan), at: 1)
            for (name, r, predicted) in rows {
                study.append(StudyRow(plan: name, tpot: r.tpot, hitRate: r.hitRate, cacheHitRate: r.cacheHitRate,
                                      stallPerToken: r.stallPerToken, predicted: predicted.isNaN ? nil : predicted))
            }
            print("\nplan study (MoEpic policy, scored on held-out tokens):")
            let base = study[0].tpot
            let refinedT = study[1].tpot
            printTable(["plan", "TPOT ms", "model ms", "hit", "cache hit", "stall ms", "planner vs", "refined vs"], study.map {
                [$0.plan, ms($0.tpot), $0.predicted.map(ms) ?? "-", fmt($0.hitRate, 3), fmt($0.cacheHitRate, 3), ms($0.stallPerToken),
                 $0.plan.hasPrefix("planner") ? "" : fmt(100 * (1 - base / $0.tpot)) + "%",
                 $0.plan.hasPrefix("planner") ? "" : fmt(100 * (1 - refinedT / $0.tpot)) + "%"]
            })
        }
        if let json {
            struct Out: Encodable {
                let model: String; let hardware: String; let budgetBytes: Double; let predictorAccuracy: Double
                let results: [SimResult]; let plan: BudgetPlan; let planStudy: [StudyRow]; let notes: [String]
            }
            try writeJSON(Out(model: sc.profile.name, hardware: sc.hardware.name, budgetBytes: total,
                              predictorAccuracy: scenario.predictorAccuracy, results: results, plan: plan,
                              planStudy: study, notes: sc.notes), to: json)
        }
    }

    struct StudyRow: Encodable { let plan: String; let tpot: Double; let hitRate: Double; let cacheHitRate: Double
        let stallPerToken: Double; let predicted: Double? }
}
