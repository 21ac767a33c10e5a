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
        let tune = try tuning()
        let exec = try wrap { try OffloadSetup.executor(source: model, policy: policy, budget: budget, tier: tier, theta: theta, plan: cachePlan, tuning: tune) }
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
