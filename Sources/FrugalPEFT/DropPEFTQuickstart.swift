import Foundation
import FrugalCore
import FrugalNN
import FrugalModels
import FrugalFederated

/// A short DropPEFT tour on a small generated transformer (for `frugal quickstart`): a random
/// 6-layer BERT with LoRA adapters, generated token sequences over 20 Jetson-profile devices,
/// DropPEFT (UCB over full depth and uniform dropout 0.25 and 0.5, rewarded per second of the
/// round) against federated LoRA at full depth. Returns each strategy's result.
public enum DropPEFTQuickstart {
    public static func run(rounds: Int = 6, print say: (String) -> Void = { Swift.print($0) }) throws -> [String: TaskSimulationResult] {
        let devices = 20
        let train = try TokenizedDataset.synthetic(count: 40 * devices, classes: 2, length: 16, vocab: 48, seed: 1)
        let test = try TokenizedDataset.synthetic(count: 200, classes: 2, length: 16, vocab: 48, seed: 2)
        let clients = (0..<devices).map { k in train.subset(Array(stride(from: k, to: train.count, by: devices))) }
        let boards = [DeviceCatalog.jetsonTX2, DeviceCatalog.xavierNX, DeviceCatalog.agxXavier, DeviceCatalog.orin]
        let profiles = (0..<devices).map { boards[$0 % 4] }
        var out: [String: TaskSimulationResult] = [:]
        say("[droppeft] random 6-layer BERT (hidden 32) + LoRA rank 4, \(devices) Jetson devices, 5 a round, \(rounds) rounds")
        for spec in ["fedlora", "droppeft"] {
            var rng = RNG(seed: 7)
            let bert = BertModel(config: BertConfig(vocabSize: 48, hiddenSize: 32, numHiddenLayers: 6, numAttentionHeads: 4,
                                                    intermediateSize: 64, maxPositionEmbeddings: 16), rng: &rng)
            bert.freeze()
            LoRA.inject(into: bert, LoRAConfig(rank: 4, alpha: 8), rng: &rng)
            let task = try TextClassificationTask(model: BertClassifier(bert: bert, classes: 2, rng: &rng), clients: clients,
                                                  test: test, learningRate: 5e-3)
            let strategy = try DropPEFTStrategy(try PEFTStrategySpec(parsing: spec), layers: 6,
                                                arms: [DropoutArm(.uniform, 0), DropoutArm(.uniform, 0.25), DropoutArm(.uniform, 0.5)],
                                                reward: .round, seed: 1)
            var cfg = SimulationConfig()
            cfg.rounds = rounds; cfg.devicesPerRound = 5; cfg.batchSize = 16; cfg.localSteps = 5; cfg.seed = 1
            let r = try TaskSimulation(task: task, strategy: strategy, devices: profiles, config: cfg).run()
            let last = r.rows.last!
            say("[droppeft] \(spec): accuracy \(String(format: "%.1f", 100 * (r.finalAccuracy ?? 0)))%, simulated \(String(format: "%.2f", last.simulatedSeconds)) s, peak training memory \(String(format: "%.2f", Double(r.peakMemoryBytes) / 1_048_576)) MiB")
            out[spec] = r
        }
        return out
    }
}
