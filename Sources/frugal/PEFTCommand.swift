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
        @Option(help: "DropPEFT's arms: full or FAMILY:R (uniform, increasing, decreasing), comma-separated (default full and uniform/increasing at 0.1, 0.25, 0.5).") var arms: String?
        @Option(help: "How a step's active layers are drawn: bounded (at most ⌈Σ(1−p)⌉ layers) or bernoulli.") var sampling = "bounded"
        @Option(name: .customLong("keep-top"), help: "Never skip the top K layers (the ratio is spread over the others).") var keepTop = 0
        @Option(name: .customLong("full-depth-steps"), help: "The last N local steps of a round run at full depth.") var fullDepthSteps = 0
        @Option(name: .customLong("head-steps"), help: "N extra head-only steps a round on full-depth features computed without gradient.") var headSteps = 0
        @Flag(name: .customLong("head-full-only"), help: "The head learns only in steps that ran every layer (head and full-depth steps).") var headFullOnly = false
        @Option(help: "Bandit reward denominator: device (its own round time) or round (the round's time).") var reward = "device"
        @Option(name: .customLong("base-precision"), help: "Frozen base weights stored as f32, f16 or bf16 (rounded to it; counted at its width).") var basePrecision = "f32"
        @Option(name: .customLong("adam-steps"), help: "Adam bias correction per tensor (its own steps, as PyTorch) or global.") var adamSteps = "tensor"
        @Option(name: .customLong("reference-length"), help: "A sample's work scales with its batch's sequence length over this (0: per sample; default 64 for minilm).") var referenceLength: Int?
        @Option(name: .customLong("personal-eval"), help: "After the run, evaluate devices 0..<N on their own label mixes (global and personalised model).") var personalEval = 0
        @Option(name: .customLong("forward-only-cost"), help: "Cost of a layer run forward without gradient relative to training it.") var forwardOnlyCost = 0.5

        func validate() throws {
            guard devices > 0, perRound > 0, perRound <= devices else { throw ValidationError("--per-round must be between 1 and --devices") }
            guard rounds > 0, batch > 0, lr > 0, localSteps > 0, maxLen >= 4, rank > 0 else {
                throw ValidationError("--rounds, --batch, --lr, --local-steps, --rank must be positive and --max-len ≥ 4")
            }
            guard memoryScale > 0 else { throw ValidationError("--memory-scale must be positive") }
            guard DropoutSampling(rawValue: sampling) != nil else { throw ValidationError("--sampling: use bounded or bernoulli") }
            guard BanditReward(rawValue: reward) != nil else { throw ValidationError("--reward: use device or round") }
            guard ["f32", "f16", "bf16"].contains(basePrecision) else { throw ValidationError("--base-precision: use f32, f16 or bf16") }
            guard ["tensor", "global"].contains(adamSteps) else { throw ValidationError("--adam-steps: use tensor or global") }
            guard personalEval >= 0, personalEval <= devices else { throw ValidationError("--personal-eval must be in 0...--devices") }
            guard keepTop >= 0, fullDepthSteps >= 0, headSteps >= 0, (referenceLength ?? 0) >= 0, forwardOnlyCost >= 0 else {
                throw ValidationError("--keep-top, --full-depth-steps, --head-steps, --reference-length and --forward-only-cost must be ≥ 0")
            }
            if let arms { _ = try DropoutArm.parseList(arms) }
        }

        var dtype: DType { basePrecision == "f16" ? .float16 : basePrecision == "bf16" ? .bfloat16 : .float32 }

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
            let task = try TextClassificationTask(model: clf, clients: try clientParts(data.0, seed: seed), test: data.1, learningRate: lr,
                                                  basePrecision: dtype)
            task.forwardOnlyCost = forwardOnlyCost
            task.perTensorAdamSteps = adamSteps == "tensor"
            let ref = referenceLength ?? (data.2 == nil ? 0 : 64)
            task.referenceLength = ref > 0 ? ref : nil
            return task
        }

        func makeSimulation(_ spec: String, seed: UInt64, task: TextClassificationTask) throws -> TaskSimulation<DropPEFTStrategy> {
            let options = DropoutOptions(sampling: DropoutSampling(rawValue: sampling)!, keepTop: keepTop,
                                         fullDepthSteps: fullDepthSteps, headSteps: headSteps, headAtFullDepthOnly: headFullOnly)
            let strategy = try DropPEFTStrategy(try PEFTStrategySpec(parsing: spec), layers: task.layers, personalLayers: personalLayers,
                                                arms: try arms.map(DropoutArm.parseList) ?? DropoutArm.defaults, options: options,
                                                reward: BanditReward(rawValue: reward)!, seed: seed)
            var cfg = SimulationConfig()
            cfg.rounds = rounds; cfg.devicesPerRound = perRound; cfg.batchSize = batch; cfg.localSteps = localSteps
            cfg.seed = seed; cfg.evalEvery = evalEvery; cfg.targetAccuracy = targetAccuracy
            let devices = try profiles(seed: seed)
            strategy.fleet = devices
            return try TaskSimulation(task: task, strategy: strategy, devices: devices, config: cfg)
        }

        func simulate(_ spec: String, seed: UInt64, task: TextClassificationTask,
                      progress: (TaskRoundRecord) -> Void) throws -> TaskSimulationResult {
            let sim = try makeSimulation(spec, seed: seed, task: task)
            var r = try sim.run(progress: progress)
            r.personalised = try personalised(sim)
            return r
        }

        /// Devices 0..<personalEval on their own label mixes (nil when personalEval is 0).
        func personalised(_ sim: TaskSimulation<DropPEFTStrategy>) throws -> PersonalisedEvaluation? {
            guard personalEval > 0 else { return nil }
            let task = sim.task
            let g = try task.evaluatePerClass(sim.global)
            var ev = PersonalisedEvaluation(devices: Array(0..<personalEval), global: [], personal: [])
            for d in ev.devices {
                let mix = task.labelMix(client: d)
                ev.global.append(TextClassificationTask.weightedAccuracy(correct: g.correct, count: g.count, mix: mix))
                let own = sim.strategy.start(device: d, global: sim.global, layout: task.layout)
                let p = own == sim.global ? g : try task.evaluatePerClass(own)
                ev.personal.append(TextClassificationTask.weightedAccuracy(correct: p.correct, count: p.count, mix: mix))
            }
            return ev
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
        @Option(help: "droppeft[:ucb|thompson|egreedy], deadline[:F], fedlora, fixed:R, freeze:K, arm:FAMILY:R") var strategy = "droppeft"
        @OptionGroup var setup: Setup
        @Option(help: "Seed (partition, devices, selection, initialisation).") var seed: UInt64 = 0
        @Option(help: "Write the per-round rows as JSON to this file.") var json: String?

        func run() throws {
            _ = try PEFTStrategySpec(parsing: strategy)
            let data = try setup.loadData(seed: seed)
            let task = try setup.makeTask(seed: seed, data: data)
            let sim = try setup.makeSimulation(strategy, seed: seed, task: task)
            print("\(sim.strategy.name): \(task.layout.count) trainable parameters (\(fmt(Double(4 * task.layout.count) / 1e6, 2)) MB a transfer); weights \(PEFT.mib(task.weightBytes)) MiB; activations \(fmt(Double(task.baseBytesPerSample) / 1024, 0)) KiB/sample + \(fmt(Double(task.layerBytesPerSample) / 1024, 0)) KiB/sample/layer")
            while sim.round < setup.rounds {
                print(PEFT.progressLine(try sim.runRound())); flushStdout()
                if let json { try writeJSON(sim.result, to: json) }
            }
            var r = sim.result
            r.personalised = try setup.personalised(sim)
            if let p = r.personalised {
                print("on devices 0..<\(p.devices.count)'s label mixes: global model \(fmt(100 * p.meanGlobal, 2))%, personalised \(fmt(100 * p.meanPersonal, 2))%")
            }
            for (cls, b) in sim.strategy.bandits.sorted(by: { $0.key < $1.key }) {
                let arms = zip(sim.strategy.arms, zip(b.counts, b.means)).map { a, cm in
                    "\(a.label) n=\(cm.0) mean=\(cm.1.map { String(format: "%.3g", $0) } ?? "-")"
                }
                print("bandit \(cls): " + arms.joined(separator: "; "))
            }
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
            abstract: "Run several strategies on the same seeds (or summarise saved runs); write a table, JSON and SVG plots.",
            discussion: """
            Example: frugal peft compare --strategies 'droppeft;fedlora;fixed:0.5;freeze:3' --devices 50 --rounds 20 --limit-train 5000 --target-accuracy 0.8 --out runs/peft
            With --from DIR: every *.json in DIR written by `frugal peft run --json` is one run; runs group by their strategy name.
            """)
        @Option(help: "Strategy specs separated by semicolons or spaces.") var strategies = "droppeft;fedlora;fixed:0.5;freeze:3"
        @OptionGroup var setup: Setup
        @Option(help: "Seeds, comma-separated.") var seeds = "0"
        @Option(help: "Output folder for compare.json, summary.json, table.md, accuracy-vs-time.svg and peak-memory.svg.") var out = "runs/peft-compare"
        @Option(help: "Summarise the run JSONs in this folder instead of running.") var from: String?
        @Option(help: "With --from: the baseline strategy name for speed-up and memory (default fedlora).") var baseline = "fedlora"

        func run() throws {
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            var results: [String: [TaskSimulationResult]] = [:]
            var order: [String] = []
            if let from {
                (results, order) = try PEFTSummary.load(folder: from)
            } else {
                let specs = strategies.split(whereSeparator: { $0 == ";" || $0 == " " }).map(String.init)
                let seedList = try seeds.split(separator: ",").map { s -> UInt64 in
                    guard let v = UInt64(s.trimmingCharacters(in: .whitespaces)) else { throw CLIError("--seeds: '\(s)' is not a seed") }
                    return v
                }
                guard !specs.isEmpty, !seedList.isEmpty else { throw CLIError("--strategies and --seeds must not be empty") }
                for s in specs { _ = try PEFTStrategySpec(parsing: s) }
                for seed in seedList {
                    let data = try setup.loadData(seed: seed)
                    for spec in specs {
                        let task = try setup.makeTask(seed: seed, data: data)
                        let sim = try setup.makeSimulation(spec, seed: seed, task: task)
                        print("[\(sim.strategy.name) seed \(seed)] ", terminator: "")
                        var r = try sim.run { row in
                            print("r\(row.round) \(row.accuracy.map { fmt(100 * $0, 1) + "%" } ?? "-") ", terminator: ""); flushStdout()
                        }
                        r.personalised = try setup.personalised(sim)
                        print("")
                        if results[r.strategy] == nil { order.append(r.strategy) }
                        results[r.strategy, default: []].append(r)
                        try writeJSON(results, to: out + "/compare.json")
                    }
                }
            }
            let summary = PEFTSummary(order: order, results: results, target: setup.targetAccuracy, baseline: baseline)
            let rows = summary.rows
            func pct(_ x: Double?) -> String { x.map { fmt(100 * $0, 1) + "%" } ?? "-" }
            func x(_ v: Double?) -> String { v.map { fmt($0, 2) + "x" } ?? "-" }
            func mib(_ v: Double?) -> String { v.map { PEFT.mib(Int($0)) } ?? "-" }
            let header = ["strategy", "seeds", "final acc", "best acc", "reached", "sim s to target", "speed-up", "s/round",
                          "mean device peak MiB", "largest peak MiB", "memory saved (mean / largest)", "own-mix acc (global / personal)"]
            let table = rows.map { r in
                [r.strategy, "\(r.seeds)", pct(r.finalAccuracy), pct(r.bestAccuracy), "\(r.reached)/\(r.seeds)",
                 r.timeToTarget.map { fmt($0, 1) } ?? "-", x(r.speedUp), r.secondsPerRound.map { fmt($0, 2) } ?? "-",
                 mib(r.meanDevicePeak), mib(r.largestPeak),
                 r.memorySavedMean.map { fmt(100 * $0, 0) + "% / " + (r.memorySavedLargest.map { fmt(100 * $0, 0) + "%" } ?? "-") } ?? "-",
                 r.ownMixGlobal.map { pct($0) + " / " + pct(r.ownMixPersonal) } ?? "-"]
            }
            printTable(header, table)
            var md = "| " + header.joined(separator: " | ") + " |\n|" + header.map { _ in " --- |" }.joined() + "\n"
            for t in table { md += "| " + t.joined(separator: " | ") + " |\n" }
            try Data(md.utf8).write(to: URL(fileURLWithPath: out + "/table.md"), options: .atomic)
            try writeJSON(rows, to: out + "/summary.json")
            let label = "\(setup.task)" + (setup.targetAccuracy.map { ", target \(fmt(100 * $0, 0))%" } ?? "")
            var acc = SVGPlot(title: "Accuracy vs simulated time (\(label); median over seeds)", xLabel: "simulated time (s)", yLabel: "test accuracy (%)")
            var mem = SVGPlot(title: "Peak training memory per device (median over seeds)", xLabel: "round", yLabel: "mean device peak (MiB)")
            for name in order {
                acc.series.append(.init(name: name, points: summary.accuracyCurve(name).map { ($0.0, 100 * $0.1) }))
                mem.series.append(.init(name: name, points: summary.memoryCurve(name).map { ($0.0, $0.1 / 1_048_576) }))
            }
            try acc.write(to: out + "/accuracy-vs-time.svg")
            try mem.write(to: out + "/peak-memory.svg")
            print("wrote \(out)/summary.json, table.md, accuracy-vs-time.svg, peak-memory.svg")
        }
    }
}

/// Seed-median summary of federated PEFT runs (`frugal peft compare`).
struct PEFTSummary {
    let order: [String]
    let results: [String: [TaskSimulationResult]]
    let target: Double?
    let baseline: String

    struct Row: Codable {
        var strategy: String
        var seeds: Int
        var finalAccuracy: Double?
        /// Best evaluated accuracy of a run (median over seeds).
        var bestAccuracy: Double?
        var reached: Int
        /// Simulated seconds to the target (median; only when every seed reached it).
        var timeToTarget: Double?
        /// Baseline's time to target over this one's.
        var speedUp: Double?
        var secondsPerRound: Double?
        /// Mean over the (device, round) pairs that trained of the measured peak training memory.
        var meanDevicePeak: Double?
        /// Largest measured peak of any device in the run.
        var largestPeak: Double?
        var memorySavedMean: Double?
        var memorySavedLargest: Double?
        /// With --personal-eval: mean accuracy on the evaluated devices' own label mixes of the
        /// global model and of their personalised models (medians over seeds).
        var ownMixGlobal: Double?
        var ownMixPersonal: Double?
    }

    static func median(_ xs: [Double]) -> Double? {
        guard !xs.isEmpty else { return nil }
        let s = xs.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// Runs saved by `frugal peft run --json` in `folder`, grouped by strategy name (file order).
    static func load(folder: String) throws -> ([String: [TaskSimulationResult]], [String]) {
        let files: [String]
        do { files = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".json") }.sorted() }
        catch { throw CLIError("--from: cannot list '\(folder)': \(error.localizedDescription)") }
        var results: [String: [TaskSimulationResult]] = [:], order: [String] = []
        for f in files where f != "summary.json" && f != "compare.json" {
            let path = folder + "/" + f
            let r: TaskSimulationResult
            do { r = try JSONDecoder().decode(TaskSimulationResult.self, from: Data(contentsOf: URL(fileURLWithPath: path))) }
            catch { throw CLIError("--from: '\(path)' is not a run written by frugal peft run --json: \(error)") }
            if results[r.strategy] == nil { order.append(r.strategy) }
            results[r.strategy, default: []].append(r)
        }
        guard !order.isEmpty else { throw CLIError("--from: no run JSON in '\(folder)'") }
        return (results, order)
    }

    static func timeToTarget(_ r: TaskSimulationResult, _ target: Double?) -> Double? {
        guard let target else { return nil }
        return r.rows.first { ($0.accuracy ?? -1) >= target }?.simulatedSeconds
    }

    static func devicePeaks(_ r: TaskSimulationResult) -> [Double] {
        r.rows.flatMap { $0.devices.filter { $0.configuration != nil }.map { Double($0.peakMemoryBytes) } }
    }

    var rows: [Row] {
        var rows = order.map { name -> Row in
            let rs = results[name] ?? []
            let times = rs.compactMap { Self.timeToTarget($0, target) }
            let peaks = rs.map(Self.devicePeaks)
            return Row(strategy: name, seeds: rs.count, finalAccuracy: Self.median(rs.compactMap(\.finalAccuracy)),
                       bestAccuracy: Self.median(rs.compactMap { $0.rows.compactMap(\.accuracy).max() }),
                       reached: times.count, timeToTarget: times.count == rs.count ? Self.median(times) : nil,
                       secondsPerRound: Self.median(rs.compactMap { r in r.rows.last.map { $0.simulatedSeconds / Double(max($0.round, 1)) } }),
                       meanDevicePeak: Self.median(peaks.filter { !$0.isEmpty }.map { $0.reduce(0, +) / Double($0.count) }),
                       largestPeak: Self.median(peaks.compactMap { $0.max() }),
                       ownMixGlobal: Self.median(rs.compactMap { $0.personalised?.meanGlobal }),
                       ownMixPersonal: Self.median(rs.compactMap { $0.personalised?.meanPersonal }))
        }
        if let b = rows.first(where: { $0.strategy == baseline }) {
            for i in rows.indices {
                if let t = rows[i].timeToTarget, let bt = b.timeToTarget, t > 0 { rows[i].speedUp = bt / t }
                if let m = rows[i].meanDevicePeak, let bm = b.meanDevicePeak { rows[i].memorySavedMean = 1 - m / bm }
                if let m = rows[i].largestPeak, let bm = b.largestPeak { rows[i].memorySavedLargest = 1 - m / bm }
            }
        }
        return rows
    }

    /// (simulated seconds, accuracy) at each evaluated round, medians over the seeds that evaluated it.
    func accuracyCurve(_ name: String) -> [(Double, Double)] {
        let rs = results[name] ?? []
        let rounds = Set(rs.flatMap { $0.rows.filter { $0.accuracy != nil }.map(\.round) }).sorted()
        return rounds.compactMap { t in
            let rows = rs.compactMap { $0.rows.first { $0.round == t && $0.accuracy != nil } }
            guard let x = Self.median(rows.map(\.simulatedSeconds)), let y = Self.median(rows.compactMap(\.accuracy)) else { return nil }
            return (x, y)
        }
    }

    /// (round, mean device peak of the round), medians over seeds.
    func memoryCurve(_ name: String) -> [(Double, Double)] {
        let rs = results[name] ?? []
        let rounds = Set(rs.flatMap { $0.rows.map(\.round) }).sorted()
        return rounds.compactMap { t in
            let means = rs.compactMap { r -> Double? in
                guard let row = r.rows.first(where: { $0.round == t }) else { return nil }
                let p = row.devices.filter { $0.configuration != nil }.map { Double($0.peakMemoryBytes) }
                return p.isEmpty ? nil : p.reduce(0, +) / Double(p.count)
            }
            return Self.median(means).map { (Double(t), $0) }
        }
    }
}
