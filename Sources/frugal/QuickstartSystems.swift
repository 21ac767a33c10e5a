import Foundation
import FrugalCore
import FrugalNN
import FrugalModels
import FrugalMoE
import FrugalPEFT

extension Quickstart {
    /// MoEpic: a small generated MoE decoder with its experts in an offload store on disk, run under
    /// half the expert memory with a whole-expert LRU cache and with MoEpic, side by side with the
    /// resident model; the offloaded runs must produce the resident run's tokens.
    func moeTour(quick: Bool, results: inout [String: Double]) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("frugal-quickstart-moe-\(getpid())")
        defer { try? FileManager.default.removeItem(at: dir) }
        let cfg = MoEModelConfig(layout: .mixtral, vocabSize: 257, hiddenSize: 128, layers: 4, heads: 4, kvHeads: 2,
                                 experts: 8, topK: 2, expertIntermediate: quick ? 256 : 512, maxPositions: 512)
        try MoECheckpointWriter.createRandom(cfg, dtype: .float32, shardBytes: nil, seed: seed, to: dir)
        let store = dir.appendingPathComponent("experts.store").path
        _ = try OffloadStore.write(source: try MoEModel(directory: dir), to: store)
        let prompt = Array(1 ... 8), tokens = quick ? 12 : 32
        print("\n[moe] generated Mixtral-layout MoE: \(cfg.layers) layers x \(cfg.experts) experts (top-\(cfg.topK)), experts in an offload store on disk; \(tokens) tokens at half the expert memory")
        var rows: [[String]] = [], reference: [Int] = []
        for policy in ["full", "lru", "moepic"] {
            let model = try MoEModel(directory: dir)
            if policy != "full" {
                model.executor = try OffloadSetup.executor(source: model, policy: policy, budget: "50%", tier: .disk(store: store), theta: 0.4)
            }
            let (out, stats) = try MoEGenerator(model: model).generate(prompt: prompt, maxTokens: tokens, seed: seed)
            if policy == "full" { reference = out }
            let hit = stats.hitRatePerLayer.map { h in fmt(100 * h.reduce(0, +) / Double(max(h.count, 1)), 0) + "%" } ?? "-"
            rows.append([policy, policy == "full" ? "all resident" : "50%", fmt(stats.timePerOutputToken * 1000, 2), hit,
                         stats.bytesLoaded.map { CheckpointInfo.formatBytes($0) } ?? "-", out == reference ? "yes" : "NO"])
            results["moe_\(policy)_tpot_ms"] = stats.timePerOutputToken * 1000
        }
        printTable(["policy", "expert memory", "TPOT ms", "hit rate", "loaded", "same tokens"], rows)
        print("[moe] hit rate: accesses that found the whole expert resident. This random-weight model routes to a few experts")
        print("[moe] (a whole-expert LRU cache hits most accesses at half the memory) and a layer takes well under a millisecond, so MoEpic's")
        print("[moe] split (θ = 0.4: the bottom 60% of a routed expert loads on demand, layer 0 has no prediction) costs more")
        print("[moe] than it hides; it pays where compute and loading are comparable: `frugal moe bench`, docs/moe.md")
    }

    /// DropPEFT: federated LoRA on a small generated transformer, full depth against layer dropout.
    func peftTour(quick: Bool) throws {
        print("\n[droppeft] federated LoRA fine-tuning of a small generated transformer: full depth (fedlora) vs stochastic layer dropout with a bandit (droppeft)")
        _ = try DropPEFTQuickstart.run(rounds: quick ? 3 : 6) { print($0); flushStdout() }
    }

    /// SSF-NAS: a few search steps on small generated images and the genotype they derive.
    func nasTour(quick: Bool) throws {
        print("")
        _ = try nasQuickstart(quick: quick, seed: seed)
    }
}
