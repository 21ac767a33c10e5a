import ArgumentParser
import Foundation
import FrugalCore
import FrugalNN
import FrugalData
import FrugalModels
import FrugalFederated
import FrugalPEFT

struct PEFT: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peft",
        abstract: "Federated LoRA fine-tuning with stochastic layer dropout (DropPEFT) and its baselines.",
        subcommands: [Run.self, Compare.self])

    struct Setup: ParsableArguments {
        @Option(help: "minilm (all-MiniLM-L6-v2) or tiny (a small random BERT on generated token sequences).") var model = "minilm"
        @Option(help: "sst2, agnews or trec (ignored by --model tiny).") var task = "sst2"
        @Option(help: "Number of devices.") var devices = 50
        @Option(name: .customLong("per-round"), help: "Devices selected per round.") var perRound = 10
        @Option(help: "Rounds.") var rounds = 10
        @Option(help: "iid or dirichlet:ALPHA") var partition = "dirichlet:1.0"
        @Option(name: .customLong("device-mix"), help: "jetson (TX2, Xavier NX, AGX Xavier, Orin) or mix (two thirds boards, one third phones).") var deviceMix = "jetson"
        @Option(name: .customLong("memory-scale"), help: "Multiply every device's memory by this (e.g. the share free for training).") var memoryScale = 1.0
        @Option(name: .customLong("local-steps"), help: "Local steps per round.") var localSteps = 10
        @Option(help: "Batch size.") var batch = 16
        @Option(help: "Adam learning rate.") var lr: Float = 1e-3
        @Option(help: "LoRA rank (alpha = 2 x rank).") var rank = 8
        @Option(name: .customLong("max-len"), help: "Maximum sequence length (tokens).") var maxLen = 64
        @Option(name: .customLong("limit-train"), help: "Use N training sequences (a seeded random subset).") var limitTrain: Int?
        @Option(name: .customLong("limit-test"), help: "Use N test sequences (a seeded random subset).") var limitTest: Int?
        @Option(name: .customLong("personal-layers"), help: "Personalised layer sharing: the top P layers' adapters stay on the devices.") var personalLayers = 0
        @Option(name: .customLong("target-accuracy"), help: "Report simulated time and traffic to reach this test accuracy.") var targetAccuracy: Double?
        @Option(name: .customLong("eval-every"), help: "Evaluate every r rounds.") var evalEvery = 1
        @Option(help: "Data directory (default $FRUGAL_DATA or ~/.cache/frugal-data).") var data: String?

        func validate() throws {
            guard devices > 0, perRound > 0, perRound <= devices else { throw ValidationError("--per-round must be between 1 and --devices") }
            guard rounds > 0, batch > 0, lr > 0, localSteps > 0, maxLen >= 4, rank > 0 else {
                throw ValidationError("--rounds, --batch, --lr, --local-steps, --rank must be positive and --max-len ≥ 4")
            }
            guard memoryScale > 0 else { throw ValidationError("--memory-scale must be positive") }
        }

        func profiles(seed: UInt64) throws -> [DeviceProfile] {
            var list: [DeviceProfile]
            switch deviceMix {
            case "mix": list = DeviceCatalog.mix(count: devices, seed: seed)
            case "jetson":
                var rng = RNG(seed: seed ^ 0x1E750)
                let boards = [DeviceCatalog.jetsonTX2, DeviceCatalog.xavierNX, DeviceCatalog.agxXavier, DeviceCatalog.orin]
                list = (0..<devices).map { _ in boards[rng.int(4)] }
            default: throw CLIError("--device-mix '\(deviceMix)': use jetson or mix")
            }
            for i in list.indices { list[i].memoryBytes = Int(Double(list[i].memoryBytes) * memoryScale) }
            return list
        }

        /// Train and test token data.
        func loadData(seed: UInt64) throws -> (TokenizedDataset, TokenizedDataset, URL?) {
            if model == "tiny" {
                return (try TokenizedDataset.synthetic(count: limitTrain ?? 40 * devices, classes: 2, length: min(maxLen, 16), vocab: 40, seed: seed),
                        try TokenizedDataset.synthetic(count: limitTest ?? 200, classes: 2, length: min(maxLen, 16), vocab: 40, seed: seed + 1),
                        nil)
            }
            guard model == "minilm" else { throw CLIError("--model '\(model)': use minilm or tiny") }
            let root = data ?? DataPaths.root
            let dir = URL(fileURLWithPath: root + "/all-MiniLM-L6-v2")
            let tok = try WordPieceTokenizer(tokenizerJSON: dir.appendingPathComponent("tokenizer.json").path)
            var train: TextDataset, test: TextDataset
            switch task {
            case "sst2": (train, test) = (try TextDataset.sst2(file: root + "/text/sst2/train.tsv"), try TextDataset.sst2(file: root + "/text/sst2/test.tsv"))
            case "agnews": (train, test) = (try TextDataset.agNews(file: root + "/text/agnews/dev.tsv"), try TextDataset.agNews(file: root + "/text/agnews/test.tsv"))
            case "trec": (train, test) = (try TextDataset.trec(file: root + "/text/trec/train_5500.label"), try TextDataset.trec(file: root + "/text/trec/TREC_10.label"))
            default: throw CLIError("--task '\(task)': use sst2, agnews or trec")
            }
            var rng = RNG(seed: seed ^ 0x5AB5E7)
            if let n = limitTrain, n < train.count { train = try train.subset(Array(rng.permutation(train.count).prefix(max(n, 1))).sorted()) }
            if let n = limitTest, n < test.count { test = try test.subset(Array(rng.permutation(test.count).prefix(max(n, 1))).sorted()) }
            return (try TokenizedDataset(train, tokenizer: tok, maxLength: maxLen), try TokenizedDataset(test, tokenizer: tok, maxLength: maxLen), dir)
        }

        func clientParts(_ train: TokenizedDataset, seed: UInt64) throws -> [TokenizedDataset] {
            let labels = train.labels.map { Int32($0) }
            let part: ClientPartition
            if partition == "iid" { part = try FederatedPartition.iid(count: train.count, clients: devices, seed: seed) }
            else if partition.hasPrefix("dirichlet:"), let a = Double(partition.dropFirst(10)) {
                part = try FederatedPartition.dirichlet(labels: labels, classes: train.classes, clients: devices, alpha: a, seed: seed)
            } else { throw CLIError("--partition '\(partition)': use iid or dirichlet:ALPHA") }
            return part.clients.map { train.subset($0) }
        }

        /// The task with a freshly initialised head and adapters (same for every strategy of a seed).
        func makeTask(seed: UInt64, data: (TokenizedDataset, TokenizedDataset, URL?)) throws -> TextClassificationTask {
            var rng = RNG(seed: seed ^ 0x70BA)
            let bert: BertModel
            if let dir = data.2 { bert = try BertModel.load(directory: dir) } else {
                bert = BertModel(config: BertConfig(vocabSize: 40, hiddenSize: 32, numHiddenLayers: 6, numAttentionHeads: 4,
                                                    intermediateSize: 64, maxPositionEmbeddings: 16), rng: &rng)
                bert.freeze()
            }
            LoRA.inject(into: bert, LoRAConfig(rank: rank, alpha: Float(2 * rank)), rng: &rng)
            let clf = BertClassifier(bert: bert, classes: data.0.classes, rng: &rng)
            return try TextClassificationTask(model: clf, clients: try clientParts(data.0, seed: seed), test: data.1, learningRate: lr)
        }

        func simulate(_ spec: String, seed: UInt64, task: TextClassificationTask,
                      progress: (TaskRoundRecord) -> Void) throws -> TaskSimulationResult {
            let strategy = try DropPEFTStrategy(try PEFTStrategySpec(parsing: spec), layers: task.layers,
                                                personalLayers: personalLayers, seed: seed)
            var cfg = SimulationConfig()
            cfg.rounds = rounds; cfg.devicesPerRound = perRound; cfg.batchSize = batch; cfg.localSteps = localSteps
            cfg.seed = seed; cfg.evalEvery = evalEvery; cfg.targetAccuracy = targetAccuracy
            let sim = try TaskSimulation(task: task, strategy: strategy, devices: try profiles(seed: seed), config: cfg)
            return try sim.run(progress: progress)
        }
    }

    static func mib(_ b: Int) -> String { fmt(Double(b) / 1_048_576, 1) }

    static func progressLine(_ row: TaskRoundRecord) -> String {
        let configs = Dictionary(grouping: row.devices.compactMap(\.configuration), by: { $0 }).map { "\($0.key)x\($0.value.count)" }.sorted()
        return "round \(row.round): acc \(row.accuracy.map { fmt(100 * $0, 2) + "%" } ?? "-")  sim \(fmt(row.simulatedSeconds, 1)) s"
            + "  peak \(mib(row.peakMemoryBytes)) MiB  trained \(row.trained)/\(row.participants)  traffic \(fmt(Double(row.cumulativeTraffic) / 1e6, 1)) MB"
            + "  [\(configs.joined(separator: " "))]"
    }

    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run one federated PEFT strategy; print a line per round.",
            discussion: "Example: frugal peft run --strategy droppeft --task sst2 --devices 50 --per-round 10 --rounds 20 --limit-train 5000 --target-accuracy 0.8 --json runs/droppeft.json")
        @Option(help: "droppeft[:ucb|thompson|egreedy], fedlora, fixed:R, freeze:K, arm:FAMILY:R") var strategy = "droppeft"
        @OptionGroup var setup: Setup
        @Option(help: "Seed (partition, devices, selection, initialisation).") var seed: UInt64 = 0
        @Option(help: "Write the per-round rows as JSON to this file.") var json: String?

        func run() throws {
            _ = try PEFTStrategySpec(parsing: strategy)
            let data = try setup.loadData(seed: seed)
            let task = try setup.makeTask(seed: seed, data: data)
            print("\(strategy): \(task.layout.count) trainable parameters (\(fmt(Double(4 * task.layout.count) / 1e6, 2)) MB a transfer); activations \(fmt(Double(task.layerBytesPerSample) / 1024, 0)) KiB/sample/layer")
            let r = try setup.simulate(strategy, seed: seed, task: task) { print(PEFT.progressLine($0)); flushStdout() }
            if let t = r.targetAccuracy {
                print(r.reached.map { "target \(fmt(100 * t, 1))% reached in round \($0.round) after \(fmt($0.simulatedSeconds, 1)) simulated s" }
                      ?? "target \(fmt(100 * t, 1))% not reached")
            }
            print("final accuracy \(r.finalAccuracy.map { fmt(100 * $0, 2) + "%" } ?? "-"), peak training memory \(PEFT.mib(r.peakMemoryBytes)) MiB")
            if let json { try writeJSON(r, to: json) }
        }
    }

    struct Compare: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run several strategies on the same seeds; write a table, JSON and SVG plots.",
            discussion: "Example: frugal peft compare --strategies 'droppeft;fedlora;fixed:0.5;freeze:3' --devices 50 --rounds 20 --limit-train 5000 --target-accuracy 0.8 --out runs/peft")
        @Option(help: "Strategy specs separated by semicolons or spaces.") var strategies = "droppeft;fedlora;fixed:0.5;freeze:3"
        @OptionGroup var setup: Setup
        @Option(help: "Seeds, comma-separated.") var seeds = "0"
        @Option(help: "Output folder for compare.json, accuracy-vs-time.svg and peak-memory.svg.") var out = "runs/peft-compare"

        func run() throws {
            let specs = strategies.split(whereSeparator: { $0 == ";" || $0 == " " }).map(String.init)
            let seedList = try seeds.split(separator: ",").map { s -> UInt64 in
                guard let v = UInt64(s.trimmingCharacters(in: .whitespaces)) else { throw CLIError("--seeds: '\(s)' is not a seed") }
                return v
            }
            guard !specs.isEmpty, !seedList.isEmpty else { throw CLIError("--strategies and --seeds must not be empty") }
            for s in specs { _ = try PEFTStrategySpec(parsing: s) }
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            var results: [String: [TaskSimulationResult]] = [:]
            for seed in seedList {
                let data = try setup.loadData(seed: seed)
                for spec in specs {
                    let task = try setup.makeTask(seed: seed, data: data)
                    print("[\(spec) seed \(seed)] ", terminator: "")
                    let r = try setup.simulate(spec, seed: seed, task: task) { row in
                        print("r\(row.round) \(row.accuracy.map { fmt(100 * $0, 1) + "%" } ?? "-") ", terminator: ""); flushStdout()
                    }
                    print("")
                    results[spec, default: []].append(r)
                    try writeJSON(results, to: out + "/compare.json")
                }
            }
            let med = CompareSummary.median
            var rows: [[String]] = []
            let base = specs.first { $0 == "fedlora" }.flatMap { results[$0] }
            let baseTime = base.flatMap { rs in rs.allSatisfy { $0.reached != nil } ? med(rs.compactMap { $0.reached?.simulatedSeconds }) : nil }
            let baseMem = base.flatMap { med($0.map { Double($0.peakMemoryBytes) }) }
            for spec in specs {
                let rs = results[spec] ?? []
                let reached = rs.compactMap(\.reached)
                let time = reached.count == rs.count ? med(reached.map(\.simulatedSeconds)) : nil
                let mem = med(rs.map { Double($0.peakMemoryBytes) })
                rows.append([spec, "\(rs.count)", med(rs.compactMap(\.finalAccuracy)).map { fmt(100 * $0, 2) + "%" } ?? "-",
                             "\(reached.count)/\(rs.count)", time.map { fmt($0, 0) } ?? "-",
                             (time != nil && baseTime != nil) ? fmt(baseTime! / time!, 2) + "x" : "-",
                             mem.map { PEFT.mib(Int($0)) } ?? "-",
                             (mem != nil && baseMem != nil) ? fmt(100 * (1 - mem! / baseMem!), 0) + "%" : "-"])
            }
            printTable(["strategy", "seeds", "final acc", "reached", "s to target", "speed-up vs fedlora", "peak MiB", "memory saved"], rows)
            var acc = SVGPlot(title: "Accuracy vs simulated time (\(setup.task), seed \(seedList[0]))", xLabel: "simulated time (s)", yLabel: "test accuracy (%)")
            var mem = SVGPlot(title: "Peak training memory per round (\(setup.task), seed \(seedList[0]))", xLabel: "round", yLabel: "largest device peak (MiB)")
            for spec in specs {
                guard let r = results[spec]?.first else { continue }
                acc.series.append(.init(name: spec, points: r.rows.compactMap { row in row.accuracy.map { (row.simulatedSeconds, 100 * $0) } }))
                mem.series.append(.init(name: spec, points: r.rows.map { (Double($0.round), Double($0.peakMemoryBytes) / 1_048_576) }))
            }
            try acc.write(to: out + "/accuracy-vs-time.svg")
            try mem.write(to: out + "/peak-memory.svg")
            print("wrote \(out)/compare.json, accuracy-vs-time.svg, peak-memory.svg")
        }
    }
}
