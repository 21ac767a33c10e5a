import ArgumentParser
import Foundation
import FrugalCore
import FrugalNN
import FrugalData
import FrugalModels
import FrugalPEFT

struct LoRABench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lora",
        abstract: "LoRA training step of MiniLM (BERT): time and peak tensor memory, full depth vs layer dropout.",
        discussion: """
        One step = forward of a BertClassifier (mean pooling + linear head) with LoRA adapters on q/k/v/o, \
        cross-entropy, backward, AdamW on adapters + head. Configurations alternate step by step (full depth, then \
        each --ratios entry with the --family layer-dropout configuration) so that machine load hits them alike. \
        Peak memory is MemoryStats.peak during the step minus the bytes alive before it (weights, optimiser state). \
        Anchor: bench/lora_torch.py (PyTorch, hand-written LoRA), alternated by bench/lora.sh.
        """)

    @Option(help: "all-MiniLM-L6-v2 folder (default $FRUGAL_DATA/all-MiniLM-L6-v2; random weights of the same shape when absent).") var model: String?
    @Option(help: "Batch size.") var batch = 32
    @Option(help: "Sequence length.") var seq = 64
    @Option(help: "LoRA rank.") var rank = 8
    @Option(help: "LoRA alpha.") var alpha: Float = 16
    @Option(help: "Comma-separated overall layer-dropout ratios compared with full depth.") var ratios = "0.5"
    @Option(help: "Layer-dropout family: uniform, increasing, decreasing.") var family = "uniform"
    @Option(help: "Timed steps per configuration.") var steps = 10
    @Option(help: "Untimed warm-up steps per configuration.") var warmup = 2
    @Option(help: "Write results as JSON to this file.") var json: String?

    func run() throws {
        guard let fam = LayerDropoutFamily(rawValue: family) else { throw ValidationError("--family must be uniform, increasing or decreasing") }
        let rs = try ratios.split(separator: ",").map { s -> Float in
            guard let r = Float(s), r >= 0, r <= 1 else { throw ValidationError("bad ratio '\(s)': expected a number in [0, 1]") }
            return r
        }
        let dir = URL(fileURLWithPath: model ?? (DataPaths.root as NSString).appendingPathComponent("all-MiniLM-L6-v2"))
        let bert: BertModel
        var source = dir.path
        if FileManager.default.fileExists(atPath: dir.appendingPathComponent("model.safetensors").path) {
            bert = try BertModel.load(directory: dir)
        } else {
            var r = RNG(seed: 0)
            bert = BertModel(config: BertConfig(vocabSize: 30522, hiddenSize: 384, numHiddenLayers: 6, numAttentionHeads: 12,
                                                intermediateSize: 1536, maxPositionEmbeddings: 512), rng: &r)
            bert.freeze()
            source = "random weights (MiniLM shape)"
        }
        var rng = RNG(seed: 1)
        LoRA.inject(into: bert, LoRAConfig(rank: rank, alpha: alpha), rng: &rng)
        let clf = BertClassifier(bert: bert, classes: 2, rng: &rng)
        bert.train()
        let opt = AdamW(clf.trainableParameters(), lr: 1e-4)
        let ids = (0..<batch * seq).map { i in i % seq == 0 ? 101 : (i % seq == seq - 1 ? 102 : 1000 + rng.int(20000)) }
        let x = TokenBatch(ids: ids, batch: batch, length: seq)
        let labels = (0..<batch).map { _ in rng.int(2) }
        let layers = bert.layerCount
        var configs = [("full", LayerDropout(.none(layers: layers), seed: 1))]
        for r in rs { configs.append(("\(family):\(r)", LayerDropout(LayerDropoutConfig(fam, layers: layers, ratio: r), seed: 2))) }

        struct Row: Encodable {
            let config: String; let probabilities: [Float]; let medianSeconds: Double; let meanActiveLayers: Double
            let medianPeakBytes: Int; let medianCPUSeconds: Double; let secondsPerStep: [Double]; let cpuSecondsPerStep: [Double]
            let peakBytes: [Int]; let activeLayers: [Int]
        }
        var times = [[Double]](repeating: [], count: configs.count)
        var peaks = [[Int]](repeating: [], count: configs.count)
        var cpus = [[Double]](repeating: [], count: configs.count)
        func cpuNow() -> Double {   // CPU time of the process (all threads): load-independent work
            var ts = timespec()
            clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
            return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
        }
        var actives = [[Int]](repeating: [], count: configs.count)
        for i in 0..<(warmup + steps) {
            for c in configs.indices {
                let active = configs[c].1.sample()
                let base = MemoryStats.live
                MemoryStats.resetPeak()
                let t0 = now(), c0 = cpuNow()
                opt.zeroGrad()
                let loss = Loss.crossEntropy(clf(x, activeLayers: active), labels)
                loss.backward()
                opt.step()
                let dt = now() - t0, dc = cpuNow() - c0
                if i >= warmup {
                    cpus[c].append(dc)
                    times[c].append(dt); peaks[c].append(MemoryStats.peak - base); actives[c].append(active.filter { $0 }.count)
                }
            }
        }
        func median<T: Comparable>(_ a: [T]) -> T { a.sorted()[a.count / 2] }
        var rows: [Row] = []
        for c in configs.indices {
            rows.append(Row(config: configs[c].0, probabilities: configs[c].1.config.probabilities, medianSeconds: median(times[c]),
                            meanActiveLayers: Double(actives[c].reduce(0, +)) / Double(max(1, actives[c].count)),
                            medianPeakBytes: median(peaks[c]), medianCPUSeconds: median(cpus[c]), secondsPerStep: times[c], cpuSecondsPerStep: cpus[c], peakBytes: peaks[c], activeLayers: actives[c]))
        }
        print("model: \(source); batch \(batch), seq \(seq), LoRA r=\(rank) alpha=\(alpha) on q/k/v/o; threads \(Kernels.threads)")
        let full = rows[0]
        printTable(["config", "mean active", "median ms", "vs full", "CPU ms", "vs full", "median peak MiB", "vs full"], rows.map {
            [$0.config, fmt($0.meanActiveLayers, 2), fmt($0.medianSeconds * 1e3), fmt($0.medianSeconds / full.medianSeconds, 2),
             fmt($0.medianCPUSeconds * 1e3), fmt($0.medianCPUSeconds / full.medianCPUSeconds, 2),
             fmt(Double($0.medianPeakBytes) / 1048576), fmt(Double($0.medianPeakBytes) / Double(max(1, full.medianPeakBytes)), 2)]
        })
        if let json {
            struct Out: Encodable {
                let bench = "lora"; let implementation = "frugal"; let model: String; let batch: Int; let seq: Int; let rank: Int
                let alpha: Float; let threads: Int; let results: [Row]
            }
            try writeJSON(Out(model: source, batch: batch, seq: seq, rank: rank, alpha: alpha, threads: Kernels.threads, results: rows), to: json)
        }
    }
}
