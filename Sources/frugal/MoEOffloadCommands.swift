import ArgumentParser
import Foundation
import FrugalCore
import FrugalData
import FrugalModels
import FrugalMoE
import FrugalNN

// The offload engine's part of `frugal moe`: `pack`, and the offloading policies behind
// `--policy` / `--memory-budget` / `--store` / `--link` of `logits` and `generate`.

extension MoEPolicyOptions {
    /// Installs an `OffloadingExecutor` for `--policy` on `model`; returns the budget in bytes.
    func installOffloading(on model: MoEModel) throws -> Int {
        let tier: SlowTierChoice
        switch (store, link) {
        case (let s?, nil): tier = .disk(store: s)
        case (nil, let l?): tier = .link(bytesPerSecond: try wrap { try HostLinkTier.parseBandwidth(l) })
        case (nil, nil): throw CLIError("--policy \(policy) offloads experts: give --store STORE (disk tier, from `frugal moe pack`) or --link 25GB/s (host memory behind a link)")
        default: throw CLIError("give either --store or --link, not both")
        }
        guard let budget = memoryBudget ?? (policy == "full" ? "100%" : nil) else {
            throw CLIError("--policy \(policy) needs --memory-budget (e.g. 512MiB, 2GB or 40%)")
        }
        var cachePlan: CachePlan? = nil
        if let plan {
            guard plan == "auto" else { throw CLIError("--plan '\(plan)': only 'auto' is supported") }
            guard policy == "moepic" else { throw CLIError("--plan auto plans MoEpic's split ratios: use it with --policy moepic") }
            cachePlan = try autoPlan(model: model, tier: tier, budget: budget)  // MoEPlanWiring.swift
        }
        let exec = try wrap { try OffloadSetup.executor(source: model, policy: policy, budget: budget, tier: tier, theta: theta, plan: cachePlan) }
        model.executor = exec
        return exec.budget
    }
}

/// Runs `body`, turning the engine's errors into one-line CLI errors.
func wrap<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as OffloadError { throw CLIError(e.description) }
}

struct MoEPack: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pack",
        abstract: "Write a model's routed experts into an offload store.",
        discussion: """
        Each expert is stored as row blocks [gate row i | up row i | down column i] (its dtype kept), so
        any split along the intermediate dimension is two contiguous byte ranges; experts start on 4096-byte
        boundaries. The header holds a checksum, the shape/dtype table and one checksum per expert.
        Non-expert weights stay in the model folder. Use the store with --store in `logits`/`generate`.
        """)
    @Option(help: "Model folder (Hugging Face MoE checkpoint).") var model: String
    @Option(help: "Store file to write.") var out: String
    @Flag(help: "Read the store back and check every expert's checksum.") var verify = false

    func run() throws {
        let m = try loadMoEModel(model)
        let t0 = now()
        let h = try wrap { try OffloadStore.write(source: m, to: out) }
        let s = h.shape
        print("wrote \(out): \(s.layers) layers x \(s.experts) experts, \(h.dtype), \(CheckpointInfo.formatBytes(h.expertBytes)) per expert, "
              + "\(CheckpointInfo.formatBytes(h.fileBytes)) in \(fmt(now() - t0, 1)) s")
        if verify {
            let store = try wrap { try OffloadStore(path: out) }
            try wrap { try store.verify() }
            print("verified \(s.layers * s.experts) expert checksums")
        }
    }
}

struct MoEBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Compare expert policies: TPOT under memory budgets on the disk tier and on emulated links.",
        discussion: """
        For each slow tier (the store on disk; host memory behind links whose bandwidths make one expert's
        compute time the given share of its load time), each budget and each policy, generates --max-tokens
        greedy tokens after every prompt (after one warm-up prompt) and reports the median TPOT over prompts,
        hit rate, prediction accuracy, stall and bytes loaded per token, and MoEpic's reduction against each
        baseline. `full` runs once per tier with every expert in the fast tier (the latency floor).
        """)
    @Option(help: "Model folder.") var model: String
    @Option(help: "Offload store (default: MODEL/experts.fmoe, packed when missing).") var store: String?
    @Option(help: "Prompts, one per line (default: six built-in prompts).") var prompts: String?
    @Option var maxTokens = 16
    @Option(help: "Budgets, comma-separated.") var budgets = "25%,50%"
    @Option(help: "Policies, comma-separated.") var policies = "full,on-demand,lru,lfu,prefetch,moepic"
    @Option(help: "MoEpic's split ratio θ.") var theta: Double = 0.4
    @Option(help: "Expert compute time / load time ratios that set the emulated link bandwidths.") var ratios = "0.05,0.25,1,2"
    @Option(help: "Explicit link bandwidths (e.g. 1GB/s,4GB/s) instead of --ratios.") var links: String?
    @Flag(help: "Skip the disk tier.") var noDisk = false
    @Option(help: "Write the results as JSON to this file.") var json: String?

    struct Row: Codable {
        var tier: String, linkBytesPerSecond: Double?, budget: String, budgetBytes: Int, policy: String
        var tpotMs: [Double], medianTpotMs: Double, hitRate: Double, cacheHitRate: Double, predictionAccuracy: Double?
        var stallMsPerToken: Double, loadedMiBPerToken: Double, peakFastBytes: Int
    }

    func run() throws {
        let m = try loadMoEModel(model)
        let tok: any Tokenizer
        do { tok = try MoETokenizer.load(directory: URL(fileURLWithPath: model)) } catch { throw CLIError("\(error)") }
        let texts: [String]
        if let prompts {
            guard let s = try? String(contentsOfFile: prompts, encoding: .utf8) else { throw CLIError("cannot read --prompts \(prompts)") }
            texts = s.split(separator: "\n").map(String.init).filter { !$0.isEmpty }
        } else {
            texts = ["ROMEO: But soft, what light", "First Citizen:\nBefore we proceed any further,",
                     "KING HENRY: Once more unto", "To be, or not to be, that is", "The quality of mercy is not",
                     "Friends, Romans, countrymen, lend"]
        }
        let ids = texts.map { tok.encode($0) }.filter { !$0.isEmpty }
        guard ids.count >= 2 else { throw CLIError("need at least two non-empty prompts") }
        let shape = m.moeShape
        let storePath = store ?? URL(fileURLWithPath: model).appendingPathComponent("experts.fmoe").path
        if !noDisk && !FileManager.default.fileExists(atPath: storePath) {
            try wrap { _ = try OffloadStore.write(source: m, to: storePath) }
            print("packed \(storePath)")
        }
        let dtype = try m.expertWeights(layer: 0, expert: 0).gate.dtype
        let S = shape.intermediate * ExpertSplit.rowBytes(hidden: shape.hidden, dtype: dtype)
        let comp = ExpertKernel.measureExpertSeconds(shape: shape, dtype: dtype)
        print("expert: \(CheckpointInfo.formatBytes(S)) \(dtype), compute \(fmt(comp * 1e6, 1)) us at batch 1; \(ids.count) prompts, \(maxTokens) tokens each")
        var tiers: [(String, Double?, () throws -> SlowTier)] = []
        if !noDisk { tiers.append(("disk", nil, { DiskTier(store: try OffloadStore(path: storePath)) })) }
        let bws: [Double]
        if let links {
            bws = try links.split(separator: ",").map { (s: Substring) -> Double in
                do { return try HostLinkTier.parseBandwidth(String(s)) } catch { throw CLIError("--links: \(error)") }
            }
        }
        else { bws = try ratios.split(separator: ",").map { s in
            guard let r = Double(s), r > 0 else { throw CLIError("--ratios: '\(s)' is not a positive number") }
            return Double(S) / (comp / r)
        } }
        for bw in bws { tiers.append((String(format: "link %.3g GB/s", bw / 1e9), bw, { try HostLinkTier(source: m, bandwidth: bw) })) }
        let pols = try policies.split(separator: ",").map { s -> PolicyKind in
            guard let k = PolicyKind(rawValue: String(s)) else { throw CLIError("--policies: unknown '\(s)'") }
            return k
        }
        let budgetList = budgets.split(separator: ",").map(String.init)
        let gen = MoEGenerator(model: m)
        var rows: [Row] = []
        for (tname, bw, makeTier) in tiers {
            let slow = try wrap { try makeTier() }
            for kind in pols {
                for budget in (kind == .full ? ["100%"] : budgetList) {
                    let exec = try wrap { try OffloadSetup.executor(source: m, kind: kind, budget: budget, slow: slow, theta: theta) }
                    m.executor = exec
                    _ = try gen.generate(prompt: ids[0], maxTokens: 2)
                    var tpot: [Double] = [], hit = 0.0, chit = 0.0, acc: Double? = nil, stall = 0.0, loaded = 0.0, peak = 0, n = 0
                    for p in ids.dropFirst() {
                        let r = try gen.generate(prompt: p, maxTokens: maxTokens)
                        tpot.append(r.stats.timePerOutputToken * 1000)
                        let s = exec.stats
                        hit += s.hitRate; chit += s.cacheHitRate; acc = s.predictionAccuracy.map { ($0 + (acc ?? 0) * Double(n)) / Double(n + 1) }
                        let toks = Double(r.stats.generatedTokens + r.stats.promptTokens)
                        stall += s.stallSeconds * 1000 / toks; loaded += Double(s.bytesLoaded) / 1048576 / toks
                        peak = max(peak, s.peakFastBytes); n += 1
                    }
                    exec.close()
                    let med = tpot.sorted()[tpot.count / 2]
                    rows.append(Row(tier: tname, linkBytesPerSecond: bw, budget: budget, budgetBytes: exec.budget, policy: kind.rawValue,
                                    tpotMs: tpot, medianTpotMs: med, hitRate: hit / Double(n), cacheHitRate: chit / Double(n), predictionAccuracy: acc,
                                    stallMsPerToken: stall / Double(n), loadedMiBPerToken: loaded / Double(n), peakFastBytes: peak))
                    print("\(tname)  \(budget)  \(kind.rawValue): TPOT \(fmt(med, 2)) ms"); flushStdout()
                }
            }
        }
        m.executor = ResidentExperts(source: m)
        printTable(["tier", "budget", "policy", "TPOT ms", "no-load %", "cached %", "pred %", "stall ms/tok", "MiB/tok", "peak MiB"], rows.map { r in
            [r.tier, r.budget, r.policy, fmt(r.medianTpotMs, 2), fmt(100 * r.hitRate, 1), fmt(100 * r.cacheHitRate, 1), r.predictionAccuracy.map { fmt(100 * $0, 1) } ?? "-",
             fmt(r.stallMsPerToken, 2), fmt(r.loadedMiBPerToken, 2), fmt(Double(r.peakFastBytes) / 1048576, 2)]
        })
        print("")
        // MoEpic against each baseline, per tier and budget; and MoEpic at the smallest budget vs the best baseline at the largest.
        var red: [[String]] = []
        for (tname, _, _) in tiers {
            for b in budgetList {
                guard let mo = rows.first(where: { $0.tier == tname && $0.budget == b && $0.policy == "moepic" }) else { continue }
                for base in rows where base.tier == tname && base.budget == b && base.policy != "moepic" {
                    red.append([tname, b, base.policy, fmt(100 * (1 - mo.medianTpotMs / base.medianTpotMs), 1) + "%"])
                }
            }
            if budgetList.count >= 2, let small = rows.first(where: { $0.tier == tname && $0.budget == budgetList[0] && $0.policy == "moepic" }),
               let best = rows.filter({ $0.tier == tname && $0.budget == budgetList.last! && !["moepic", "full"].contains($0.policy) }).min(by: { $0.medianTpotMs < $1.medianTpotMs }) {
                red.append([tname, "\(budgetList[0]) vs \(budgetList.last!)", "best baseline (\(best.policy))", fmt(100 * (1 - small.medianTpotMs / best.medianTpotMs), 1) + "%"])
            }
        }
        printTable(["tier", "budget", "vs", "MoEpic TPOT reduction"], red)
        if let json {
            struct Out: Encodable { var model: String; var expertBytes: Int; var expertComputeSeconds: Double; var theta: Double; var rows: [Row] }
            try writeJSON(Out(model: model, expertBytes: S, expertComputeSeconds: comp, theta: theta, rows: rows), to: json)
        }
    }
}
