import ArgumentParser
import Foundation
import FrugalCore
import FrugalData
import FrugalModels
import FrugalMoE
import FrugalNN

// `frugal moe bench` (the policy study of issue 4: TPOT of every policy on the disk tier and on
// emulated links, several budgets, medians over prompts, the simulator beside the engine) and
// `frugal moe calibrate` (this machine's timings for the simulator and the planner).

/// A policy of the comparison: `lru`, `moepic` (θ from --theta, raised where a layer holds every top),
/// `moepic@0.25` (exactly that uniform θ), `moepic@plan` (the planner's B_l and θ_l, fitted on --plan-trace and
/// refined by simulating that routing), `moepic@analytic` (the planner's plan without the refinement).
struct MoEPolicySpec: Hashable {
    var kind: PolicyKind
    var theta: Double?
    var planned = false
    var refined = true
    var label: String

    static func parse(_ s: String) throws -> MoEPolicySpec {
        let parts = s.split(separator: "@", maxSplits: 1).map(String.init)
        guard let k = PolicyKind(rawValue: parts[0]) else {
            throw CLIError("--policies: unknown policy '\(parts[0])' (full, on-demand, lru, lfu, prefetch, moepic, moepic@THETA, moepic@plan, moepic@analytic)")
        }
        var spec = MoEPolicySpec(kind: k, label: s)
        if parts.count == 2 {
            guard k == .moepic else { throw CLIError("--policies: '\(s)': only moepic takes @THETA, @plan or @analytic") }
            if parts[1] == "plan" { spec.planned = true } else if parts[1] == "analytic" { spec.planned = true; spec.refined = false } else {
                guard let t = Double(parts[1]), t >= 0, t <= 1 else { throw CLIError("--policies: '\(s)': θ must be in [0, 1]") }
                spec.theta = t
            }
        }
        return spec
    }
}

/// Records the engine's routing over several prompts as a route_trace: turn = prompt, phase 0 = the
/// prompt's forward, phase 1 = decode steps; steps count tokens within the turn.
final class BenchRouteRecorder {
    var trace: RoutingTrace
    var turn = -1, base = 0, tokens = 0, lastLayer = Int.max, phase = 0
    init(model: MoEModel) {
        let s = model.moeShape
        trace = RoutingTrace(model: model.directory.lastPathComponent, arch: model.config.layout.rawValue, layers: s.layers,
                             experts: s.experts, topK: s.topK,
                             expertBytes: Array(repeating: model.expertBytes / max(1, s.layers * s.experts), count: s.layers))
    }
    func begin(turn t: Int) { turn = t; base = 0; tokens = 0; lastLayer = Int.max }
    func observe(layer: Int, routes: [[ExpertRoute]]) {
        if layer <= lastLayer { base += tokens; tokens = routes.count; phase = routes.count > 1 || base == 0 ? 0 : 1 }
        lastLayer = layer
        for (t, r) in routes.enumerated() {
            for (slot, e) in r.enumerated() {
                trace.rows.append(RoutingTraceRow(turn: turn, phase: phase, step: base + t, layer: layer, slot: slot,
                                                  expert: e.expert, weight: e.weight))
            }
        }
    }
}

/// The default prompts of `moe bench` (tiny-Shakespeare style; the first warms caches up).
let moeBenchPrompts = [
    "ROMEO: But soft, what light", "First Citizen:\nBefore we proceed any further,", "KING HENRY: Once more unto",
    "To be, or not to be, that is", "The quality of mercy is not", "Friends, Romans, countrymen, lend",
    "JULIET: O Romeo, Romeo! wherefore", "MENENIUS: I tell you, friends,", "LADY MACBETH: Out, damned spot!",
]

/// Reads prompts, one per line, from a file (empty lines skipped).
func readMoEPrompts(_ path: String) throws -> [String] {
    guard let s = try? String(contentsOfFile: path, encoding: .utf8) else { throw CLIError("cannot read prompts file \(path)") }
    return s.split(separator: "\n").map(String.init).filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
}

struct MoEBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Compare expert policies: TPOT under memory budgets on the disk tier and on emulated links.",
        discussion: """
        For each slow tier (the store on disk; host memory behind links whose bandwidths make one expert's compute
        time the given share of its load time) every policy runs at every budget, all of them on the same prompts
        and alternating prompt by prompt (each policy keeps its own warm caches), so that a noisy machine affects
        them alike. The first prompt warms the caches and is not counted; TPOT is the median over the others.
        `full` (every expert in the fast tier) runs in every tier as the latency floor and calibrates the
        simulator: one expert's compute and a layer's resident work come from its decode, the tier's load time
        from a measurement through the engine's load path. With --simulate the simulator replays the routing
        recorded in this run with that calibration and the measured prediction accuracy per layer, for every
        policy, beside the engine's figures.
        """)
    @Option(help: "Model folder.") var model: String
    @Option(help: "Offload store (default: MODEL/experts.fmoe, packed when missing).") var store: String?
    @Option(help: "Prompts, one per line (default: nine built-in prompts; the first warms up).") var prompts: String?
    @Option(help: "Held-out prompts (one per line, the first warms up) for an on-demand run per tier that fits the simulator's load bandwidth to the decode as the engine really sees it (default: the tier as measured through the load path).")
    var calibrationPrompts: String?
    @Option var maxTokens = 32
    @Option(help: "Sampling temperature (0: greedy; a small trained model repeats itself under greedy decoding). Prompt i samples with seed i, so every policy generates the same tokens.")
    var temperature: Float = 0.7
    @Option(help: "Budgets, comma-separated.") var budgets = "25%,50%"
    @Option(help: "Policies, comma-separated: full, on-demand, lru, lfu, prefetch, moepic, moepic@THETA, moepic@plan.")
    var policies = "full,on-demand,lru,lfu,prefetch,moepic"
    @Option(help: "MoEpic's split ratio θ for plain `moepic`.") var theta: Double = 0.4
    @Option(help: "Expert compute time / load time ratios that set the emulated link bandwidths.") var ratios = "0.05,0.25,1,2"
    @Option(help: "Explicit link bandwidths (e.g. 1GB/s,4GB/s) instead of --ratios.") var links: String?
    @Flag(help: "Skip the disk tier.") var noDisk = false
    @Option(help: "Routing trace the planner fits moepic@plan on (e.g. --record-trace of a run on other prompts).")
    var planTrace: String?
    @Option(help: "Next-layer prediction accuracy the planner assumes: one value, or one per layer (comma-separated); default: measured in this run's resident pass.")
    var predictorAccuracy: String?
    @OptionGroup var design: MoETuningOptions
    @Flag(help: "Also run the simulator calibrated in this run on the recorded routing, for every policy.") var simulate = false
    @Option(help: "Write the routing of the prompts (recorded from `full`) to this file (route_trace v1).") var recordTrace: String?
    @Option(help: "Write the results as JSON to this file.") var json: String?
    @Option(help: "Write TPOT against compute/load plots to PREFIX-BUDGET.svg.") var svg: String?

    struct Row: Codable {
        var tier: String, linkBytesPerSecond: Double?, computeToLoad: Double, budget: String, budgetBytes: Int, policy: String
        var tpotMs: [Double], medianTpotMs: Double, hitRate: Double, cacheHitRate: Double, predictionAccuracy: Double?
        var stallMsPerToken: Double, loadedMiBPerToken: Double, peakFastBytes: Int
        var simTpotMs: Double?
        var thetas: [Double]
        /// Prompts whose generated tokens differ from the resident run's (0: same routing as recorded).
        var promptsDiffering: Int
    }
    /// A tier's calibration: `calibration` with loads into a top-k-expert fast tier (on-demand), and per budget into
    /// a fast tier of that size (the caching policies).
    struct TierOut: Codable { var tier: String; var calibration: EngineCalibration; var budgetCalibrations: [String: EngineCalibration] }

    func run() throws {
        let m = try loadMoEModel(model)
        let tok: any Tokenizer
        do { tok = try MoETokenizer.load(directory: URL(fileURLWithPath: model)) } catch { throw CLIError("\(error)") }
        let texts = try prompts.map(readMoEPrompts) ?? moeBenchPrompts
        let ids = texts.map { tok.encode($0) }.filter { !$0.isEmpty }
        guard ids.count >= 2 else { throw CLIError("need at least two non-empty prompts (the first warms up)") }
        guard maxTokens >= 2 else { throw CLIError("--max-tokens must be at least 2 (TPOT needs two tokens)") }
        let specs = try policies.split(separator: ",").map { try MoEPolicySpec.parse(String($0)) }
        let tune = try design.tuning()
        if specs.contains(where: \.planned) && planTrace == nil { throw CLIError("moepic@plan needs --plan-trace FILE") }
        let budgetList = budgets.split(separator: ",").map(String.init)
        let shape = m.moeShape
        let storePath = store ?? URL(fileURLWithPath: model).appendingPathComponent("experts.fmoe").path
        if !FileManager.default.fileExists(atPath: storePath) {
            try wrap { _ = try OffloadStore.write(source: m, to: storePath) }
            print("packed \(storePath)")
        }
        let dtype = try m.expertWeights(layer: 0, expert: 0).gate.dtype
        let S = shape.intermediate * ExpertSplit.rowBytes(hidden: shape.hidden, dtype: dtype)
        let diskTier = { () throws -> SlowTier in DiskTier(store: try wrap { try OffloadStore(path: storePath) }) }
        let gen = MoEGenerator(model: m)
        print("model \(model): \(shape.layers) layers x \(shape.experts) experts top-\(shape.topK), expert \(CheckpointInfo.formatBytes(S)) \(dtype); "
              + "\(ids.count - 1) prompts (+1 warm-up), \(maxTokens) tokens each; load average \(fmt(EngineCalibration.loadAverage(), 1))")
        flushStdout()

        // 1. The latency floor, resident: expert compute and per-layer time; the routing of every prompt.
        let rec = BenchRouteRecorder(model: m)
        // `full` with the next-layer predictor running (it finds everything resident): the prediction accuracy.
        let whole = SegmentLayout(shape: shape, elementBytes: dtype.size, theta: Array(repeating: 1, count: shape.layers))
        let fullPolicy = SegmentCachePolicy(name: "full", layout: whole, plan: SegmentCachePolicy.full(layout: whole).plan, stagingBytes: 0,
                                            usesPrediction: true, ranking: LRURanking(), preloadAll: true)
        let fullExec = try wrap { try OffloadingExecutor(policy: fullPolicy, tier: try diskTier(), budget: whole.totalExpertBytes, source: m) }
        m.executor = fullExec
        m.routeObserver = { l, r in rec.observe(layer: l, routes: r) }
        var fullT: [Double] = [], comp: [(Double, Double)] = [], fullTokens: [[Int]] = []
        var okP = [Int](repeating: 0, count: shape.layers), allP = okP
        for (i, p) in ids.enumerated() {
            rec.begin(turn: i)
            let r = try gen.generate(prompt: p, maxTokens: maxTokens, temperature: temperature, seed: UInt64(i))
            fullTokens.append(r.tokens)
            let st = fullExec.stats
            for l in 0..<min(shape.layers, st.predictedCorrect.count) { okP[l] += st.predictedCorrect[l]; allP[l] += st.predictedTotal[l] }
            if i > 0 {
                fullT.append(r.stats.timePerOutputToken)
                comp.append(EngineCalibration.compute(fullStats: fullExec.stats, tpot: r.stats.timePerOutputToken,
                                                      layers: shape.layers, topK: shape.topK))
            }
        }
        m.routeObserver = nil
        fullExec.close()
        let measuredAcc = (0..<shape.layers).map { allP[$0] > 0 ? Double(okP[$0]) / Double(allP[$0]) : 0 }
        print("next-layer prediction accuracy per layer (resident pass): " + measuredAcc.map { fmt(100 * $0, 0) + "%" }.joined(separator: " ")
              + "; overall \(fmt(100 * Double(okP.reduce(0, +)) / Double(max(1, allP.reduce(0, +))), 1))%")
        let planAcc: [Double]
        if let predictorAccuracy {
            let v = try predictorAccuracy.split(separator: ",").map { t -> Double in
                guard let x = Double(t.trimmingCharacters(in: .whitespaces)), x >= 0, x <= 1 else {
                    throw CLIError("--predictor-accuracy: '\(t)' is not in [0, 1]")
                }
                return x
            }
            guard v.count == 1 || v.count == shape.layers else {
                throw CLIError("--predictor-accuracy: one value or \(shape.layers) (one per layer), got \(v.count)")
            }
            planAcc = (0..<shape.layers).map { l in l == 0 ? 0 : (v.count == 1 ? v[0] : v[l]) }
        } else { planAcc = measuredAcc }
        if let recordTrace { try wrap { try rec.trace.write(path: recordTrace) } ; print("recorded routing to \(recordTrace)") }
        let c0 = median(comp.map(\.0))
        print("full: TPOT \(fmt(median(fullT) * 1e3, 2)) ms; expert compute \(fmt(c0 * 1e6, 0)) us, layer resident work \(fmt(median(comp.map(\.1)) * 1e6, 0)) us")

        // 2. Tiers.
        var tiers: [(name: String, bw: Double?, make: () throws -> SlowTier)] = []
        if !noDisk { tiers.append(("disk", nil, diskTier)) }
        let bws: [Double]
        if let links {
            bws = try links.split(separator: ",").map { s in
                do { return try HostLinkTier.parseBandwidth(String(s)) } catch { throw CLIError("--links: \(error)") }
            }
        } else {
            bws = try ratios.split(separator: ",").map { s in
                guard let r = Double(s), r > 0 else { throw CLIError("--ratios: '\(s)' is not a positive number") }
                return Double(S) / (c0 / r)
            }
        }
        for bw in bws { tiers.append((String(format: "link %.3g GB/s", bw / 1e9), bw, { try wrap { try HostLinkTier(source: m, bandwidth: bw) } })) }

        let planTraceData = try planTrace.map { p in try wrap { try RoutingTrace.read(path: p) } }
        var profile: ModelProfile
        do { profile = try ModelProfile.read(configPath: URL(fileURLWithPath: model).appendingPathComponent("config.json").path) } catch {
            throw CLIError("\(error)")
        }
        profile.dtypeBytes = dtype.size
        var rows: [Row] = [], tierOut: [TierOut] = []
        let calIds = try calibrationPrompts.map { path -> [[Int]] in
            let v = try readMoEPrompts(path).map { tok.encode($0) }.filter { !$0.isEmpty }
            guard v.count >= 2 else { throw CLIError("--calibration-prompts: need at least two non-empty prompts (the first warms up)") }
            return v
        }
        for (tname, bw, makeTier) in tiers {
            let slow = try makeTier()
            // The tier through the load path, into a fast tier of each configuration's span: top-k experts (on-demand
            // reuses the same pages) or a budget (caching policies turn all of it over); before and after the runs.
            let totalExpert = shape.layers * shape.experts * S
            let budgetBytes = try budgetList.map { b in try wrap { try MemoryBudget.parse(b, totalExpertBytes: totalExpert) } }
            let (lbw, lat) = try wrap { try EngineCalibration.measureTier(slow) }
            var arenaBefore: [String: (Double, Double)] = [:]
            for (b, bytes) in zip(budgetList, budgetBytes) {
                arenaBefore[b] = try wrap { try EngineCalibration.measureTier(slow, arenaBytes: bytes) }
            }
            // Configurations of this tier: full once, every other policy at every budget.
            struct Config { var spec: MoEPolicySpec; var budget: String; var exec: OffloadingExecutor
                var tpot: [Double] = []; var hit = 0.0, chit = 0.0, stall = 0.0, loaded = 0.0; var peak = 0
                var predOK: [Int] = [], predAll: [Int] = []; var comp: [(Double, Double)] = []; var differing = 0 }
            var configs: [Config] = []
            var calib = EngineCalibration(expertBytes: Double(S), expertSeconds: c0, attentionSeconds: median(comp.map(\.1)),
                                          tier: tname, loadBandwidth: lbw, loadLatency: lat, ioThreads: slow.ioThreads,
                                          loadAverage: EngineCalibration.loadAverage())
            calib.loadedExpertSeconds = try wrap { try EngineCalibration.measureLoadedCompute(slow) }
            // Held-out decode: the load bandwidth that makes the simulator's on-demand TPOT equal the engine's on the
            // calibration prompts; the budgets' fast tiers keep their measured ratio to the top-k one.
            let fitted = calIds != nil
            if let calIds {
                let fit = try fitLoadBandwidth(model: m, gen: gen, prompts: calIds, slow: slow, calib: calib, profile: profile,
                                               shape: shape, elementBytes: dtype.size, tune: tune)
                let ratio = fit / lbw
                print("\(tname): on-demand over the calibration prompts fits \(fmt(fit / 1e9, 2)) GB/s "
                      + "(\(fmt(lbw / 1e9, 2)) GB/s through the load path alone)")
                calib.loadBandwidth = fit
                for (b, v) in arenaBefore { arenaBefore[b] = (v.0 * ratio, v.1) }
            }
            for spec in specs {
                for budget in (spec.kind == .full ? ["100%"] : budgetList) {
                    var plan: CachePlan? = nil
                    if spec.planned, let tr = planTraceData {
                        var cb = calib
                        if let (b, l) = arenaBefore[budget] { cb.loadBandwidth = b; cb.loadLatency = l }
                        plan = try planFor(trace: tr, profile: profile, calib: cb, budget: budget, shape: shape, dtype: dtype, tuning: tune,
                                           accuracy: planAcc, refine: spec.refined)
                    }
                    let exec = try wrap {
                        let lay = SegmentLayout(shape: shape, elementBytes: dtype.size, theta: Array(repeating: 1, count: shape.layers))
                        let bytes = try MemoryBudget.parse(budget, totalExpertBytes: lay.totalExpertBytes)
                        let p = try PolicyFactory.make(spec.kind, shape: shape, elementBytes: dtype.size, budget: bytes,
                                                       theta: spec.theta ?? theta, plan: plan, tuning: tune, raiseTheta: spec.theta == nil)
                        return try OffloadingExecutor(policy: p, tier: slow, budget: max(bytes, spec.kind == .full ? lay.totalExpertBytes : 0), source: m)
                    }
                    configs.append(Config(spec: spec, budget: budget, exec: exec))
                }
            }
            print("\(tname): load \(fmt((lat + Double(S) / lbw) * 1e3, 3)) ms an expert (\(fmt(lbw / 1e9, 2)) GB/s, \(fmt(lat * 1e6, 0)) us a transfer); "
                  + "compute/load \(fmt(c0 / (lat + Double(S) / lbw), 3)); \(configs.count) configurations")
            flushStdout()
            // Prompts in turn, every configuration on each (rotating the order), caches carried over.
            for (i, p) in ids.enumerated() {
                for j in 0..<configs.count {
                    let ci = (j + i) % configs.count
                    m.executor = configs[ci].exec
                    let r = try gen.generate(prompt: p, maxTokens: maxTokens, temperature: temperature, seed: UInt64(i))
                    if r.tokens != fullTokens[i] { configs[ci].differing += 1 }
                    guard i > 0 else { continue }
                    let s = configs[ci].exec.stats
                    let toks = Double(r.stats.generatedTokens + r.stats.promptTokens)
                    configs[ci].tpot.append(r.stats.timePerOutputToken * 1000)
                    configs[ci].hit += s.hitRate; configs[ci].chit += s.cacheHitRate
                    configs[ci].stall += s.stallSeconds * 1000 / toks; configs[ci].loaded += Double(s.bytesLoaded) / 1048576 / toks
                    configs[ci].peak = max(configs[ci].peak, s.peakFastBytes)
                    if configs[ci].predOK.isEmpty { configs[ci].predOK = s.predictedCorrect.map { _ in 0 }; configs[ci].predAll = configs[ci].predOK }
                    for l in s.predictedCorrect.indices { configs[ci].predOK[l] += s.predictedCorrect[l]; configs[ci].predAll[l] += s.predictedTotal[l] }
                    if configs[ci].spec.kind == .full {
                        configs[ci].comp.append(EngineCalibration.compute(fullStats: s, tpot: r.stats.timePerOutputToken,
                                                                          layers: shape.layers, topK: shape.topK))
                    } else if configs[ci].spec.kind == .onDemand, s.decodeExpertsComputed > 0 {
                        // Every expert of an on-demand run was just loaded: the loaded-compute rate.
                        configs[ci].comp.append((s.decodeComputeSeconds / s.decodeExpertsComputed, 0))
                    }
                }
                if i > 0 { print("  prompt \(i)/\(ids.count - 1) done"); flushStdout() }
            }
            for c in configs { c.exec.close() }
            // This tier's calibration: compute from its own full runs (same time window), compute of just-loaded
            // experts from its on-demand runs, load from the tier measured before and after the runs (mean).
            if let f = configs.first(where: { $0.spec.kind == .full }), !f.comp.isEmpty {
                calib.expertSeconds = median(f.comp.map(\.0)); calib.attentionSeconds = median(f.comp.map(\.1))
            }
            let onDemandComp = configs.filter { $0.spec.kind == .onDemand }.flatMap { $0.comp.map(\.0) }
            let (lbw2, lat2) = try wrap { try EngineCalibration.measureTier(slow) }
            if !fitted { calib.loadBandwidth = 2 / (1 / lbw + 1 / lbw2); calib.loadLatency = (lat + lat2) / 2 }
            var budgetCalib: [String: EngineCalibration] = [:]
            for (b, bytes) in zip(budgetList, budgetBytes) {
                let (b1, l1) = arenaBefore[b]!
                // Fitted on the held-out decode: the before-run figures, scaled; else before and after the runs.
                let (b2, l2) = fitted ? (b1, l1) : try wrap { try EngineCalibration.measureTier(slow, arenaBytes: bytes) }
                var cb = calib
                cb.loadBandwidth = 2 / (1 / b1 + 1 / b2); cb.loadLatency = (l1 + l2) / 2
                budgetCalib[b] = cb
                print("\(tname): into a \(b) fast tier \(fmt(b1 / 1e9, 2)) GB/s before the runs, \(fmt(b2 / 1e9, 2)) GB/s after")
            }
            print("\(tname): load measured \(fmt(lbw / 1e9, 2)) GB/s before the runs, \(fmt(lbw2 / 1e9, 2)) GB/s after; "
                  + "expert compute \(fmt(calib.expertSeconds * 1e6, 0)) us resident, "
                  + "\(fmt((calib.loadedExpertSeconds ?? 0) * 1e6, 0)) us just loaded"
                  + (onDemandComp.isEmpty ? "" : " (\(fmt(median(onDemandComp) * 1e6, 0)) us in the on-demand runs)"))
            calib.loadAverage = EngineCalibration.loadAverage()
            tierOut.append(TierOut(tier: tname, calibration: calib, budgetCalibrations: budgetCalib))
            // Prediction accuracy per layer over all predicting configurations (layer 0: nothing to predict from).
            var ok = [Int](repeating: 0, count: shape.layers), all = ok
            for c in configs where !c.predOK.isEmpty { for l in 0..<shape.layers { ok[l] += c.predOK[l]; all[l] += c.predAll[l] } }
            let accPerLayer = (0..<shape.layers).map { all[$0] > 0 ? Double(ok[$0]) / Double(all[$0]) : 0 }
            // The simulator on the recorded routing, calibrated in this run.
            var sc: SimScenario? = nil
            if simulate {
                var s = try wrap { try SimScenario.make(trace: rec.trace, profile: profile, hardware: calib.hardware, predictorAccuracy: 0.9) }
                for l in 0..<s.timings.count { s.timings[l].predictorAccuracy = accPerLayer[l] }
                sc = s
            }
            for c in configs {
                let n = Double(max(1, c.tpot.count))
                let okSum = c.predOK.reduce(0, +), allSum = c.predAll.reduce(0, +)
                var simMs: Double? = nil
                if let sc {
                    let total = Double(try wrap { try MemoryBudget.parse(c.budget, totalExpertBytes: shape.layers * shape.experts * S) })
                    let pol = try wrap { try sc.enginePolicy(c.spec.kind, totalBudget: total, cachePlan: c.exec.policy.plan,
                                                             theta: c.spec.theta ?? theta, tuning: tune) }
                    var scc = sc
                    if c.spec.kind != .onDemand, let cb = budgetCalib[c.budget] { scc.setLoad(bandwidth: cb.loadBandwidth, latency: cb.loadLatency) }
                    let r = scc.simulate(pol, seed: 7)
                    simMs = median(Array(r.turnTpot.dropFirst())) * 1e3
                }
                let sp = c.exec.policy
                rows.append(Row(tier: tname, linkBytesPerSecond: bw, computeToLoad: calib.computeToLoad, budget: c.budget,
                                budgetBytes: c.exec.budget, policy: c.spec.label, tpotMs: c.tpot, medianTpotMs: median(c.tpot),
                                hitRate: c.hit / n, cacheHitRate: c.chit / n,
                                predictionAccuracy: allSum > 0 ? Double(okSum) / Double(allSum) : nil,
                                stallMsPerToken: c.stall / n, loadedMiBPerToken: c.loaded / n, peakFastBytes: c.peak,
                                simTpotMs: simMs, thetas: sp.plan.theta, promptsDiffering: c.differing))
                print("\(tname)  \(c.budget)  \(c.spec.label): TPOT \(fmt(median(c.tpot), 2)) ms" + (simMs.map { "  (simulated \(fmt($0, 2)))" } ?? ""))
            }
            flushStdout()
        }
        m.executor = ResidentExperts(source: m)
        report(rows: rows, tiers: tiers.map(\.name), budgetList: budgetList, S: S, tierOut: tierOut, accuracy: measuredAcc)
    }

    /// The load bandwidth at which the simulator's on-demand TPOT (median over the prompts after the first) equals the
    /// engine's on `prompts`: the engine runs on-demand on `slow` while their routing is recorded, then the simulator
    /// replays it with `calib` and a bandwidth found by bisection (TPOT falls as bandwidth rises).
    func fitLoadBandwidth(model m: MoEModel, gen: MoEGenerator, prompts: [[Int]], slow: SlowTier, calib: EngineCalibration,
                          profile: ModelProfile, shape: MoEShape, elementBytes: Int, tune: PolicyTuning) throws -> Double {
        let lay = SegmentLayout(shape: shape, elementBytes: elementBytes, theta: Array(repeating: 1, count: shape.layers))
        let budget = shape.topK * lay.expertBytes
        let exec = try wrap {
            let p = try PolicyFactory.make(.onDemand, shape: shape, elementBytes: lay.elementBytes, budget: budget, theta: 1, plan: nil,
                                           tuning: tune, raiseTheta: false)
            return try OffloadingExecutor(policy: p, tier: slow, budget: budget, source: m)
        }
        defer { exec.close() }
        let saved = m.executor
        m.executor = exec
        defer { m.executor = saved }
        let rec = BenchRouteRecorder(model: m)
        m.routeObserver = { l, r in rec.observe(layer: l, routes: r) }
        defer { m.routeObserver = nil }
        var tpot: [Double] = []
        for (i, p) in prompts.enumerated() {
            rec.begin(turn: i)
            let r = try gen.generate(prompt: p, maxTokens: maxTokens, temperature: temperature, seed: UInt64(1000 + i))
            if i > 0 { tpot.append(r.stats.timePerOutputToken) }
        }
        let target = median(tpot)
        var sc = try wrap { try SimScenario.make(trace: rec.trace, profile: profile, hardware: calib.hardware, predictorAccuracy: 0) }
        let pol = try wrap { try sc.enginePolicy(.onDemand, totalBudget: Double(budget), cachePlan: nil, theta: 1, tuning: tune) }
        func simTpot(_ bw: Double) -> Double {
            sc.setLoad(bandwidth: bw, latency: calib.loadLatency)
            return median(Array(sc.simulate(pol, seed: 7).turnTpot.dropFirst()))
        }
        var lo = calib.loadBandwidth / 16, hi = calib.loadBandwidth * 16
        guard simTpot(hi) < target else { return hi }
        guard simTpot(lo) > target else { return lo }
        for _ in 0..<40 {
            let mid = (lo * hi).squareRoot()
            if simTpot(mid) > target { lo = mid } else { hi = mid }
        }
        return (lo * hi).squareRoot()
    }

    /// The planner's plan for a budget: hit-rate curves from `trace`, timings from the calibration.
    func planFor(trace: RoutingTrace, profile: ModelProfile, calib: EngineCalibration, budget: String, shape: MoEShape,
                 dtype: DType, tuning: PolicyTuning, accuracy: [Double], refine: Bool) throws -> CachePlan {
        guard trace.layers == shape.layers, trace.experts == shape.experts else {
            throw CLIError("--plan-trace: \(trace.layers) layers x \(trace.experts) experts, the model has \(shape.layers) x \(shape.experts)")
        }
        var sc = try wrap { try SimScenario.make(trace: trace, profile: profile, hardware: calib.hardware, predictorAccuracy: 0) }
        for l in 0..<sc.timings.count { sc.timings[l].predictorAccuracy = accuracy[l] }
        let total = try parseMemoryBudget(budget, totalExpertBytes: sc.totalExpertBytes)
        var pl = sc.planner(curves: sc.curves())
        pl.prefetchIntoCache = tuning.moepicIntoCache
        pl.allowNoPrefetch = tuning.plannerMayStopPrefetch
        let plan = try wrap { try pl.plan(totalBudget: total) }
        guard refine else { return plan.enginePlan(shape: shape, elementBytes: dtype.size, budget: Int(total), tuning: tuning) }
        let r = try wrap { try sc.refine(plan, planner: pl, totalBudget: total, tuning: tuning) }
        print("  plan for \(budget) (\(calib.tier)): fit routing simulated: analytic \(fmt(r.analyticTime * 1e3, 2)) ms, best uniform θ "
              + "\(fmt(r.uniformTheta, 3)) \(fmt(r.uniformTime * 1e3, 2)) ms, refined \(fmt(r.refinedTime * 1e3, 2)) ms "
              + "(\(r.evaluations) simulations, \(r.moves) moves); θ_l " + r.plan.theta.map { fmt($0, 2) }.joined(separator: " ")
              + (r.plan.prefetch.map { f in "; prefetch " + f.map { $0 ? "1" : "0" }.joined() } ?? ""))
        return r.plan
    }

    func report(rows: [Row], tiers: [String], budgetList: [String], S: Int, tierOut: [TierOut], accuracy: [Double]) {
        print("")
        printTable(["tier", "c/l", "budget", "policy", "TPOT ms", "sim ms", "no-load %", "cached %", "pred %", "stall ms/tok", "MiB/tok", "peak MiB"], rows.map { r in
            [r.tier, fmt(r.computeToLoad, 3), r.budget, r.policy, fmt(r.medianTpotMs, 2), r.simTpotMs.map { fmt($0, 2) } ?? "-",
             fmt(100 * r.hitRate, 1), fmt(100 * r.cacheHitRate, 1), r.predictionAccuracy.map { fmt(100 * $0, 1) } ?? "-",
             fmt(r.stallMsPerToken, 2), fmt(r.loadedMiBPerToken, 2), fmt(Double(r.peakFastBytes) / 1048576, 1)]
        })
        let differing = rows.filter { $0.promptsDiffering > 0 }
        if !differing.isEmpty {
            print("note: generated tokens differ from the resident run's in " + differing.map { "\($0.tier) \($0.budget) \($0.policy) (\($0.promptsDiffering))" }.joined(separator: ", "))
        }
        if rows.contains(where: { $0.simTpotMs != nil }) {
            let errs = rows.compactMap { r in r.simTpotMs.map { abs($0 / r.medianTpotMs - 1) } }
            print("simulator vs engine: median |error| \(fmt(100 * median(errs), 1))%, largest \(fmt(100 * (errs.max() ?? 0), 1))%, "
                  + "\(errs.filter { $0 <= 0.15 }.count) of \(errs.count) within 15%")
        }
        print("")
        // MoEpic (every moepic variant) against each baseline, per tier and budget; and at the smallest budget
        // against the best baseline at the largest ("half the memory").
        var red: [[String]] = []
        let baselines = ["on-demand", "lru", "lfu", "prefetch"]
        for t in tiers {
            for b in budgetList {
                for mo in rows where mo.tier == t && mo.budget == b && mo.policy.hasPrefix("moepic") {
                    let cells = baselines.map { base -> String in
                        guard let r = rows.first(where: { $0.tier == t && $0.budget == b && $0.policy == base }) else { return "-" }
                        return fmt(100 * (1 - mo.medianTpotMs / r.medianTpotMs), 1) + "%"
                    }
                    red.append([t, b, mo.policy] + cells)
                }
            }
            if budgetList.count >= 2 {
                let small = budgetList[0], large = budgetList.last!
                if let best = rows.filter({ $0.tier == t && $0.budget == large && baselines.contains($0.policy) }).min(by: { $0.medianTpotMs < $1.medianTpotMs }) {
                    for mo in rows where mo.tier == t && mo.budget == small && mo.policy.hasPrefix("moepic") {
                        red.append([t, "\(small) vs \(large)", mo.policy, "best baseline at \(large): \(best.policy)",
                                    fmt(100 * (1 - mo.medianTpotMs / best.medianTpotMs), 1) + "%", "", ""])
                    }
                }
            }
        }
        printTable(["tier", "budget", "moepic", "vs on-demand", "vs lru", "vs lfu", "vs prefetch"], red)
        // The plan against uniform budgets with one θ (engine, and simulator where run).
        var study: [[String]] = []
        for t in tiers {
            for b in budgetList {
                guard let plan = rows.first(where: { $0.tier == t && $0.budget == b && $0.policy == "moepic@plan" }) else { continue }
                let uni = rows.filter { $0.tier == t && $0.budget == b && $0.policy.hasPrefix("moepic@") && $0.policy != "moepic@plan" }
                guard !uni.isEmpty else { continue }
                func cell(_ r: Row?, _ key: (Row) -> Double?, _ planV: Double?) -> String {
                    guard let r, let v = key(r), let p = planV else { return "-" }
                    return "\(r.policy.dropFirst(7)): \(fmt(v, 2)) (\(fmt(100 * (1 - p / v), 1))%)"
                }
                for (what, key) in [("engine", { (r: Row) -> Double? in r.medianTpotMs }), ("simulator", { (r: Row) -> Double? in r.simTpotMs })] {
                    guard let pv = key(plan) else { continue }
                    let best = uni.filter { key($0) != nil }.min { key($0)! < key($1)! }
                    study.append([t, b, what, fmt(pv, 2), cell(best, key, pv),
                                  cell(uni.first { $0.policy == "moepic@0" }, key, pv), cell(uni.first { $0.policy == "moepic@1" }, key, pv)])
                }
            }
        }
        if !study.isEmpty {
            print("\nplan study: TPOT ms of the plan, and of uniform θ (the plan's reduction)")
            printTable(["tier", "budget", "measured by", "plan", "best uniform θ", "θ = 0", "θ = 1"], study)
        }
        if let svg {
            for b in budgetList {
                var plot = SVGPlot(title: "TPOT at \(b) of expert bytes (disk and emulated links)", xLabel: "expert compute / load time",
                                   yLabel: "TPOT (ms)")
                plot.logX = true
                let names = Array(Set(rows.filter { $0.budget == b || $0.policy == "full" }.map(\.policy))).sorted()
                for name in names {
                    let pts = rows.filter { $0.policy == name && ($0.budget == b || name == "full") }
                        .map { (x: $0.computeToLoad, y: $0.medianTpotMs) }.sorted { $0.x < $1.x }
                    plot.series.append(.init(name: name, points: pts))
                }
                let path = "\(svg)-\(b.replacingOccurrences(of: "%", with: "pct")).svg"
                do { try plot.render().write(toFile: path, atomically: true, encoding: .utf8); print("wrote \(path)") } catch {
                    print("cannot write \(path): \(error)")
                }
            }
        }
        if let json {
            struct Out: Encodable { var model: String; var expertBytes: Int; var theta: Double; var maxTokens: Int; var temperature: Float
                var predictionAccuracyPerLayer: [Double]; var tiers: [TierOut]; var rows: [Row] }
            do { try writeJSON(Out(model: model, expertBytes: S, theta: theta, maxTokens: maxTokens, temperature: temperature,
                                   predictionAccuracyPerLayer: accuracy, tiers: tierOut, rows: rows), to: json) } catch {
                print("cannot write \(json): \(error)")
            }
        }
    }
}

/// The median (upper middle for an even count; 0 for none).
func median(_ xs: [Double]) -> Double { xs.isEmpty ? 0 : xs.sorted()[xs.count / 2] }

struct MoECalibrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "calibrate",
        abstract: "Measure this machine's expert compute, layer time and slow-tier load time for the simulator.",
        discussion: """
        Runs the model resident (policy full) for a few prompts to time one expert's kernel and a layer's resident
        work at batch 1, then times the slow tier (--store: the disk; --link: host memory behind the emulated link)
        through the engine's load path, and writes a JSON profile for `simulate --hardware cpu:FILE` and
        `plan --hardware cpu:FILE`.
        """)
    @Option(help: "Model folder.") var model: String
    @Option(help: "Offload store (disk tier; default MODEL/experts.fmoe).") var store: String?
    @Option(help: "Emulated link bandwidth (e.g. 2GB/s) instead of the disk.") var link: String?
    @Option var maxTokens = 32
    @Option(help: "Write the profile here.") var json: String

    func run() throws {
        let m = try loadMoEModel(model)
        let tok: any Tokenizer
        do { tok = try MoETokenizer.load(directory: URL(fileURLWithPath: model)) } catch { throw CLIError("\(error)") }
        let shape = m.moeShape
        let storePath = store ?? URL(fileURLWithPath: model).appendingPathComponent("experts.fmoe").path
        let slow: SlowTier
        if let link {
            slow = try wrap { try HostLinkTier(source: m, bandwidth: try HostLinkTier.parseBandwidth(link)) }
        } else {
            if !FileManager.default.fileExists(atPath: storePath) { try wrap { _ = try OffloadStore.write(source: m, to: storePath) } }
            slow = DiskTier(store: try wrap { try OffloadStore(path: storePath) })
        }
        let exec = try wrap { try OffloadSetup.executor(source: m, kind: .full, budget: "100%", slow: slow) }
        m.executor = exec
        let gen = MoEGenerator(model: m)
        var comp: [(Double, Double)] = []
        for (i, p) in moeBenchPrompts.prefix(5).enumerated() {
            let r = try gen.generate(prompt: tok.encode(p), maxTokens: maxTokens)
            if i > 0 { comp.append(EngineCalibration.compute(fullStats: exec.stats, tpot: r.stats.timePerOutputToken, layers: shape.layers, topK: shape.topK)) }
        }
        exec.close()
        let (bw, lat) = try wrap { try EngineCalibration.measureTier(slow) }
        let dtype = slow.dtype
        let S = Double(shape.intermediate * ExpertSplit.rowBytes(hidden: shape.hidden, dtype: dtype))
        var c = EngineCalibration(expertBytes: S, expertSeconds: median(comp.map(\.0)), attentionSeconds: median(comp.map(\.1)),
                                  tier: slow.name, loadBandwidth: bw, loadLatency: lat, ioThreads: slow.ioThreads,
                                  loadAverage: EngineCalibration.loadAverage())
        c.loadedExpertSeconds = try wrap { try EngineCalibration.measureLoadedCompute(slow) }
        do { try c.write(path: json) } catch { throw CLIError("\(error)") }
        print("expert \(CheckpointInfo.formatBytes(Int(S))): compute \(fmt(c.expertSeconds * 1e6, 0)) us resident, "
              + "\(fmt((c.loadedExpertSeconds ?? 0) * 1e6, 0)) us just loaded; layer resident work \(fmt(c.attentionSeconds * 1e6, 0)) us; "
              + "\(slow.name): \(fmt(bw / 1e9, 2)) GB/s + \(fmt(lat * 1e6, 0)) us a transfer (compute/load \(fmt(c.computeToLoad, 3))); "
              + "load average \(fmt(c.loadAverage, 1)); wrote \(json)")
    }
}
