import ArgumentParser
import Foundation
import FrugalCore
import FrugalNN
import FrugalData
import FrugalModels
import FrugalFederated

struct FL: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fl",
        abstract: "Federated learning: simulated devices (run, compare), real processes over gRPC (serve, join, status, enrol), or a device in a Flower federation (join --flower).",
        subcommands: [Run.self, Compare.self, Serve.self, Join.self, Status.self, Enrol.self])

    /// Options shared by `fl run` and `fl compare`: the data, devices, rounds and local training.
    struct Setup: ParsableArguments {
        @Option(help: "mnist, fmnist (LeNet), cifar10 (CifarCNN), synthetic (generated 28x28 strokes, 10 classes; --limit-train images, default 6000)") var dataset = "fmnist"
        @Option(help: "lenet, cnn or mlp:H1,H2,... (default: lenet for (f)mnist and synthetic, cnn for cifar10).") var model: String?
        @Option(help: "Number of devices.") var devices = 100
        @Option(name: .customLong("per-round"), help: "Devices selected per round.") var perRound = 10
        @Option(help: "Rounds.") var rounds = 20
        @Option(help: "iid, dirichlet:ALPHA, classes:K, shards:S") var partition = "dirichlet:0.5"
        @Option(name: .customLong("device-trace"), help: "Device profiles from a FedScale-style trace (CSV or JSON) instead of the catalogue mix.") var deviceTrace: String?
        @Option(name: .customLong("local-epochs"), help: "Local epochs per round (ignored with --local-steps).") var localEpochs = 1
        @Option(name: .customLong("local-steps"), help: "Local steps per round (batch-size planning needs this).") var localSteps: Int?
        @Option(help: "Batch size (the largest planned batch with batch-size planning).") var batch = 32
        @Option(help: "Learning rate.") var lr: Float = 0.05
        @Option(help: "SGD momentum of local training.") var momentum: Float = 0
        @Option(name: .customLong("target-accuracy"), help: "Report traffic and simulated time to reach this test accuracy.") var targetAccuracy: Double?
        @Option(name: .customLong("eval-every"), help: "Evaluate every r rounds.") var evalEvery = 1
        @Option(name: .customLong("parallel-devices"), help: "Train 1 device at a time (2 kernel threads) or 2 at once (1 thread each).") var parallelDevices = 1
        @Option(help: "Data directory (default $FRUGAL_DATA or ~/.cache/frugal-data).") var data: String?
        @Option(name: .customLong("limit-train"), help: "Use only the first N training images (quick runs).") var limitTrain: Int?

        func validate() throws {
            guard devices > 0, perRound > 0, perRound <= devices else { throw ValidationError("--per-round must be between 1 and --devices") }
            guard rounds > 0, batch > 0, lr > 0 else { throw ValidationError("--rounds, --batch and --lr must be positive") }
            guard parallelDevices == 1 || parallelDevices == 2 else { throw ValidationError("--parallel-devices must be 1 or 2") }
        }

        func loadData() throws -> (ImageDataset, ImageDataset, Normalization) {
            let root = data ?? DataPaths.root
            var (train, test, norm): (ImageDataset, ImageDataset, Normalization)
            switch dataset {
            case "mnist": (train, test, norm) = (try MNIST.load(dir: root + "/mnist", train: true), try MNIST.load(dir: root + "/mnist", train: false), MNIST.normalization)
            case "fmnist", "fashion-mnist": (train, test, norm) = (try FashionMNIST.load(dir: root + "/fashion-mnist", train: true), try FashionMNIST.load(dir: root + "/fashion-mnist", train: false), FashionMNIST.normalization)
            case "cifar10": (train, test, norm) = (try CIFAR10.load(dir: root + "/cifar-10-batches-bin", train: true), try CIFAR10.load(dir: root + "/cifar-10-batches-bin", train: false), CIFAR10.normalization)
            case "synthetic":
                let n = max(limitTrain ?? 6000, 10)
                return (try SyntheticImages.strokes(count: n, seed: 17), try SyntheticImages.strokes(count: max(n / 5, 10), seed: 18),
                        Normalization(mean: [0.5], std: [0.5]))
            default: throw CLIError("unknown data set '\(dataset)': use mnist, fmnist, cifar10 or synthetic")
            }
            if let n = limitTrain, n < train.count { train = try train.subset(Array(0 ..< max(n, 1))) }
            return (train, test, norm)
        }

        func makeModel(_ train: ImageDataset, seed: UInt64) throws -> any Layer {
            var rng = RNG(seed: seed)
            switch model ?? (dataset == "cifar10" ? "cnn" : "lenet") {
            case "lenet": return LeNet(inChannels: train.channels, classes: train.classes, imageSize: train.height, rng: &rng)
            case "cnn":
                guard train.height % 8 == 0 else { throw CLIError("--model cnn needs images whose size is a multiple of 8 (got \(train.height)); use lenet") }
                return CifarCNN(inChannels: train.channels, classes: train.classes, imageSize: train.height, rng: &rng)
            case let m where m.hasPrefix("mlp:"):
                let hidden = m.dropFirst(4).split(separator: ",").map { Int($0) ?? 0 }
                guard !hidden.isEmpty, hidden.allSatisfy({ $0 > 0 }) else { throw CLIError("--model \(m): use mlp:H1,H2,... with positive widths") }
                return FlatMLP([train.channels * train.height * train.width] + hidden + [train.classes], rng: &rng)
            case let m: throw CLIError("unknown model '\(m)': use lenet, cnn or mlp:H1,H2,...")
            }
        }

        func makePartition(_ train: ImageDataset, seed: UInt64) throws -> ClientPartition {
            let parts = partition.split(separator: ":").map(String.init)
            switch parts[0] {
            case "iid": return try FederatedPartition.iid(count: train.count, clients: devices, seed: seed)
            case "dirichlet":
                guard parts.count == 2, let a = Double(parts[1]), a > 0 else { throw CLIError("--partition dirichlet:ALPHA needs a positive ALPHA, got '\(partition)'") }
                return try FederatedPartition.dirichlet(labels: train.labels, classes: train.classes, clients: devices, alpha: a, seed: seed)
            case "classes":
                guard parts.count == 2, let k = Int(parts[1]) else { throw CLIError("--partition classes:K needs an integer K, got '\(partition)'") }
                return try FederatedPartition.classesPerClient(labels: train.labels, classes: train.classes, clients: devices, k: k, seed: seed)
            case "shards":
                guard parts.count == 2, let s = Int(parts[1]) else { throw CLIError("--partition shards:S needs an integer S, got '\(partition)'") }
                return try FederatedPartition.shards(labels: train.labels, clients: devices, shardsPerClient: s, seed: seed)
            default: throw CLIError("unknown partition '\(partition)': use iid, dirichlet:ALPHA, classes:K or shards:S")
            }
        }

        func makeDevices(seed: UInt64) throws -> [DeviceProfile] {
            guard let deviceTrace else { return DeviceCatalog.mix(count: devices, seed: seed) }
            let all = try DeviceTrace.load(path: deviceTrace)
            guard all.count >= devices else { throw CLIError("\(deviceTrace) describes \(all.count) devices, --devices asks for \(devices)") }
            return Array(all.prefix(devices))
        }

        func config(seed: UInt64) -> SimulationConfig {
            var cfg = SimulationConfig()
            cfg.rounds = rounds; cfg.devicesPerRound = perRound; cfg.localEpochs = localEpochs; cfg.localSteps = localSteps
            cfg.batchSize = batch; cfg.learningRate = lr; cfg.momentum = momentum; cfg.evalEvery = evalEvery
            cfg.targetAccuracy = targetAccuracy; cfg.seed = seed; cfg.parallelDevices = parallelDevices
            return cfg
        }

        /// A simulation of `strategy` with everything derived from `seed`.
        func simulation(_ strategy: any FederatedStrategy, seed: UInt64, data: (ImageDataset, ImageDataset, Normalization)) throws -> FederatedSimulation {
            let (train, test, norm) = data
            let replicas = parallelDevices == 2 ? [try makeModel(train, seed: seed)] : []
            return try FederatedSimulation(model: try makeModel(train, seed: seed), train: train, test: test,
                                           partition: try makePartition(train, seed: seed), devices: try makeDevices(seed: seed),
                                           strategy: strategy, config: config(seed: seed), normalization: norm, replicas: replicas)
        }
    }

    /// Strategy options and the parser of strategy specs (`topk:0.05`, `caesar:download,upload`, `qsgd:16+batch`).
    struct StrategyOptions: ParsableArguments {
        @Option(help: "Compression ratio (fraction kept) for topk/randk/stc without their own.") var ratio = 0.1
        @Option(help: "QSGD levels for qsgd without its own.") var levels = 16
        @Option(name: .customLong("theta-d-max"), help: "Caesar: largest share of the download sent as signs.") var thetaDMax = 0.9
        @Option(name: .customLong("theta-u"), help: "Caesar: upload ratio range MIN,MAX.") var thetaU = "0.1,0.5"
        @Option(name: .customLong("caesar-values"), help: "Caesar download: exact entries as f32 (global values) or f16 (differences).") var caesarValues = "f32"
        @Option(name: .customLong("caesar-rebuild"), help: "Caesar download: rebuild sign-coded entries 'literal' (stale value if consistent, else sign·mean) or 'difference' (stale + sign·mean|Δ|).") var caesarRebuild = "literal"

        func validate() throws {
            guard ratio > 0, ratio <= 1 else { throw ValidationError("--ratio must be in (0, 1]") }
            guard thetaDMax >= 0, thetaDMax <= 1 else { throw ValidationError("--theta-d-max must be in [0, 1]") }
            guard ["f32", "f16"].contains(caesarValues) else { throw ValidationError("--caesar-values must be f32 or f16") }
            guard ["literal", "difference"].contains(caesarRebuild) else { throw ValidationError("--caesar-rebuild must be literal or difference") }
        }

        static let help = "fedavg, topk[:R], randk[:R], qsgd[:S], signsgd, stc[:R] (both directions), stc-up[:R] (uploads only), caesar[:PARTS] (PARTS: any of download,upload,batch joined by commas; upload-uniform instead of upload ablates the importance ranking at the same mean ratio); append +down to compress a baseline's downloads too (server error feedback, missed updates replayed), +batch to plan its batch sizes like Caesar, +median or +trim:B for robust aggregation (coordinate-wise median, trimmed mean)"

        func make(_ spec: String, setup: Setup, seed: UInt64) throws -> any FederatedStrategy {
            var base = spec
            var planned = false, down = false
            var robust: RobustRule?
            while let plus = base.lastIndex(of: "+") {
                switch base[base.index(after: plus)...] {
                case "batch": planned = true
                case "down": down = true
                case "median": robust = .median
                case let x where x.hasPrefix("trim:"):
                    guard let b = Double(x.dropFirst(5)), b >= 0, b < 0.5 else { throw CLIError("strategy '\(spec)': +trim:B needs 0 ≤ B < 0.5") }
                    robust = .trimmedMean(b)
                case let x: throw CLIError("strategy '\(spec)': unknown suffix '+\(x)': use +batch, +down, +median or +trim:B")
                }
                base = String(base[..<plus])
            }
            let parts = base.split(separator: ":", maxSplits: 1).map(String.init)
            let name = parts.first ?? ""
            let arg = parts.count > 1 ? parts[1] : nil
            func fraction() throws -> Double {
                guard let arg else { return ratio }
                guard let r = Double(arg), r > 0, r <= 1 else { throw CLIError("strategy '\(spec)': ratio '\(arg)' must be in (0, 1]") }
                return r
            }
            let planner = BatchSizePlanner(minBatch: 8, maxBatch: max(setup.batch, 8), batchStep: 8, localSteps: setup.localSteps ?? 1)
            let strat: any FederatedStrategy
            if down && !["topk", "randk", "qsgd", "signsgd", "stc-up"].contains(name) {
                throw CLIError("strategy '\(spec)': +down applies to topk, randk, qsgd, signsgd (stc compresses downloads already)")
            }
            func compressed(_ c: any UpdateCodec) -> any FederatedStrategy {
                CompressedStrategy(codec: c, downloadCodec: down ? c : nil, seed: seed)
            }
            switch name {
            case "fedavg": strat = FedAvgStrategy()
            case "topk": strat = compressed(TopKCodec(ratio: try fraction()))
            case "randk": strat = compressed(RandomKCodec(ratio: try fraction()))
            case "qsgd":
                let s = try arg.map { a -> Int in guard let v = Int(a), v >= 1 else { throw CLIError("strategy '\(spec)': levels '\(a)' must be a positive integer") }; return v } ?? levels
                strat = compressed(QSGDCodec(levels: s))
            case "signsgd": strat = compressed(SignSGDCodec())
            case "stc":  // both directions, as published
                let c = STCCodec(ratio: try fraction())
                strat = CompressedStrategy(codec: c, downloadCodec: c, seed: seed)
            case "stc-up": strat = compressed(STCCodec(ratio: try fraction()))
            case "caesar":
                let on = Set((arg ?? "download,upload,batch").split(separator: ",").map(String.init))
                for p in on where !["download", "upload", "upload-uniform", "batch"].contains(p) { throw CLIError("strategy '\(spec)': unknown Caesar part '\(p)': use download, upload (importance-aware), upload-uniform (every device at the mean upload ratio: the importance part ablated), batch") }
                if on.contains("upload") && on.contains("upload-uniform") { throw CLIError("strategy '\(spec)': upload and upload-uniform exclude each other") }
                if on.contains("batch") && setup.localSteps == nil { throw CLIError("Caesar's batch sizes need --local-steps N (with epochs the batch size does not change compute time); use caesar:download,upload otherwise") }
                let u = thetaU.split(separator: ",").compactMap { Double($0) }
                guard u.count == 2, u[0] > 0, u[0] <= u[1], u[1] <= 1 else { throw CLIError("--theta-u '\(thetaU)' must be MIN,MAX with 0 < MIN ≤ MAX ≤ 1") }
                let uniform = on.contains("upload-uniform")
                let (uMin, uMax) = uniform ? ((u[0] + u[1]) / 2, (u[0] + u[1]) / 2) : (u[0], u[1])
                strat = CaesarStrategy(download: on.contains("download"), upload: on.contains("upload") || uniform, batchSizes: on.contains("batch"),
                                       downloadCompression: DownloadCompression(thetaMax: thetaDMax, values: caesarValues == "f16" ? .float16 : .float32,
                                                                                reconstruction: caesarRebuild == "literal" ? .literal : .differenceSign),
                                       uploadCompression: UploadCompression(thetaMin: uMin, thetaMax: uMax),
                                       planner: planner, seed: seed)
            default: throw CLIError("unknown strategy '\(spec)': use \(Self.help)")
            }
            var out = strat
            if planned {
                guard setup.localSteps != nil else { throw CLIError("strategy '\(spec)': +batch needs --local-steps N") }
                out = PlannedBatchSizes(strat, planner: planner)
            }
            if let robust { out = try RobustAggregation(out, rule: robust) }
            return out
        }
    }

    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a federated training simulation with a simulated clock and real traffic.",
            discussion: """
            Each selected device trains for real on its partition; traffic is the encoded bytes sent down and up;
            the clock charges compute (the device profile) and transfers (bytes / bandwidth).
            Example: frugal fl run --strategy fedavg --dataset fmnist --devices 100 --per-round 10 --rounds 20 --partition dirichlet:0.5
            """)

        @Option(help: ArgumentHelp(StrategyOptions.help)) var strategy = "fedavg"
        @OptionGroup var setup: Setup
        @OptionGroup var options: StrategyOptions
        @Option(help: "Seed (data partition, device mix, selection, model initialisation).") var seed: UInt64 = 0
        @Option(help: "Write the run state here (atomically) every --checkpoint-every rounds and at the end.") var checkpoint: String?
        @Option(name: .customLong("checkpoint-every"), help: "Rounds between checkpoints.") var checkpointEvery = 10
        @Option(help: "Continue the run saved in this checkpoint (same options; --rounds may be larger).") var resume: String?
        @Option(help: "Write per-round rows as JSON to this file.") var json: String?

        func run() throws {
            let data = try setup.loadData()
            let strat = try options.make(strategy, setup: setup, seed: seed)
            let sim = try setup.simulation(strat, seed: seed, data: data)
            if let resume {
                try sim.resume(from: URL(fileURLWithPath: resume))
                print("resumed \(resume) after round \(sim.round)")
            }
            print("\(strat.name) on \(setup.dataset): \(setup.devices) devices, \(setup.perRound) a round, partition \(setup.partition), \(setup.rounds) rounds, \(ModelVector.flatten(sim.model).count) parameters")
            print("round  accuracy  traffic MB  simulated s  idle s  wall s (overhead)")
            while sim.round < setup.rounds {
                let r = try sim.runRound()
                let w = sim.wallTimes.last
                print([String(format: "%5d", r.round), r.accuracy.map { String(format: "%8.2f%%", 100 * $0) } ?? "       -",
                       String(format: "%10.2f", Double(r.cumulativeTraffic) / 1e6), String(format: "%11.1f", r.simulatedSeconds),
                       String(format: "%7.1f", r.cumulativeIdleSeconds),
                       w.map { String(format: "%6.1f (%.1f%%)", $0.totalSeconds, 100 * $0.overheadShare) } ?? ""].joined(separator: "  "))
                flushStdout()
                if let checkpoint, r.round % checkpointEvery == 0 || r.round == setup.rounds {
                    try sim.saveCheckpoint(to: URL(fileURLWithPath: checkpoint))
                }
            }
            let result = sim.result
            for line in sim.log { print("note: \(line)") }
            if let t = setup.targetAccuracy {
                if let r = result.reached {
                    print("target \(fmt(100 * t, 1))% reached at round \(r.round): \(fmt(Double(r.traffic) / 1e6, 2)) MB, \(fmt(r.simulatedSeconds)) s simulated")
                } else { print("target \(fmt(100 * t, 1))% not reached") }
            }
            if !result.wallTimes.isEmpty {
                let shares = result.wallTimes.map(\.overheadShare).sorted()
                print("runtime overhead (selection, codecs, aggregation, bookkeeping): median \(fmt(100 * shares[shares.count / 2], 2))% of a round's work")
            }
            if let json { try writeJSON(result, to: json) }
        }
    }

    struct Compare: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run several strategies on the same seeds; write a table, JSON and SVG plots.",
            discussion: """
            Every strategy runs with the same data partition, device mix, selection and model initialisation for each seed.
            Example: frugal fl compare --strategies fedavg,topk:0.1,stc:0.1,caesar --dataset fmnist --rounds 30 --local-steps 20 --target-accuracy 0.8 --out runs/fl-compare
            """)

        @Option(help: ArgumentHelp("Strategy specs separated by spaces or semicolons: " + StrategyOptions.help + " (default fedavg;topk;caesar:download,upload; with --from: every saved spec)")) var strategies: String?
        @OptionGroup var setup: Setup
        @OptionGroup var options: StrategyOptions
        @Option(help: "Seeds, comma-separated.") var seeds = "0"
        @Option(help: "Output folder for compare.json, accuracy-vs-traffic.svg and accuracy-vs-time.svg.") var out = "runs/fl-compare"
        @Option(help: "Summarise the runs saved in this compare.json again (e.g. for another --target-accuracy) instead of running.") var from: String?

        func run() throws {
            if let from {
                let results = try Self.loadSaved(from)
                let order = (strategies ?? "").split(whereSeparator: { $0 == ";" || $0 == " " }).map(String.init).filter { results[$0] != nil }
                let specs = order.isEmpty ? results.keys.sorted() : order
                try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
                try report(CompareSummary(specs: specs, results: results, target: setup.targetAccuracy), seeds: "saved runs")
                return
            }
            let specs = (strategies ?? "fedavg;topk;caesar:download,upload").split(whereSeparator: { $0 == ";" || $0 == " " }).map(String.init)
            let seedList = try seeds.split(separator: ",").map { s -> UInt64 in
                guard let v = UInt64(s.trimmingCharacters(in: .whitespaces)) else { throw CLIError("--seeds: '\(s)' is not a seed") }
                return v
            }
            guard !specs.isEmpty, !seedList.isEmpty else { throw CLIError("--strategies and --seeds must not be empty") }
            for spec in specs { _ = try options.make(spec, setup: setup, seed: 0) }  // fail fast on a bad spec
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            let data = try setup.loadData()
            var results: [String: [SimulationResult]] = [:]
            for seed in seedList {
                for spec in specs {
                    let sim = try setup.simulation(try options.make(spec, setup: setup, seed: seed), seed: seed, data: data)
                    print("[\(spec) seed \(seed)] ", terminator: "")
                    let r = try sim.run { row in
                        if row.round % max(1, setup.rounds / 10) == 0 || row.round == setup.rounds {
                            print("r\(row.round) \(row.accuracy.map { fmt(100 * $0, 1) + "%" } ?? "-") ", terminator: "")
                            flushStdout()
                        }
                    }
                    print("")
                    results[spec, default: []].append(r)
                    try writeJSON(results, to: out + "/compare.json")
                }
            }
            try report(CompareSummary(specs: specs, results: results, target: setup.targetAccuracy), seeds: "seed \(seedList[0])")
        }

        /// Saved runs: a compare.json (spec → runs), or a folder of `fl run --json` files named `SPEC__sSEED.json`
        /// (as `bench/fl_cifar.sh` writes them), grouped by spec in seed order.
        static func loadSaved(_ path: String) throws -> [String: [SimulationResult]] {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { throw CLIError("--from: '\(path)' does not exist") }
            guard isDir.boolValue else {
                do { return try JSONDecoder().decode([String: [SimulationResult]].self, from: Data(contentsOf: URL(fileURLWithPath: path))) }
                catch { throw CLIError("--from: '\(path)' is not a compare.json of saved runs: \(error)") }
            }
            var bySpec: [String: [(UInt64, SimulationResult)]] = [:]
            for name in try FileManager.default.contentsOfDirectory(atPath: path).sorted() where name.hasSuffix(".json") {
                guard let sep = name.range(of: "__s", options: .backwards),
                      let seed = UInt64(name[sep.upperBound...].dropLast(5)) else { continue }
                let file = path + "/" + name
                let run: SimulationResult
                do { run = try JSONDecoder().decode(SimulationResult.self, from: Data(contentsOf: URL(fileURLWithPath: file))) }
                catch { throw CLIError("--from: '\(file)' is not the JSON of an `fl run`: \(error)") }
                bySpec[String(name[..<sep.lowerBound]), default: []].append((seed, run))
            }
            guard !bySpec.isEmpty else { throw CLIError("--from: no SPEC__sSEED.json run files in '\(path)'") }
            return bySpec.mapValues { $0.sorted { $0.0 < $1.0 }.map(\.1) }
        }

        func report(_ summary: CompareSummary, seeds: String) throws {
            printTable(summary.header, summary.rows)
            try writeJSON(summary.json, to: out + "/summary.json")
            try summary.plot(x: \.cumulativeTraffic, scale: 1e-6, xLabel: "cumulative traffic (MB, down + up)",
                             title: "Accuracy vs traffic (\(setup.dataset), \(seeds))").write(to: out + "/accuracy-vs-traffic.svg")
            try summary.plot(x: \.simulatedSeconds, scale: 1, xLabel: "simulated time (s)",
                             title: "Accuracy vs simulated time (\(setup.dataset), \(seeds))").write(to: out + "/accuracy-vs-time.svg")
            print("wrote \(out)/summary.json, accuracy-vs-traffic.svg, accuracy-vs-time.svg")
        }
    }
}

/// Per-strategy medians over seeds: final accuracy, traffic and time to target, idle time.
struct CompareSummary {
    let specs: [String]
    let results: [String: [SimulationResult]]
    let target: Double?

    static func median(_ xs: [Double]) -> Double? {
        guard !xs.isEmpty else { return nil }
        let s = xs.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    struct Row: Codable {
        var strategy: String
        var seeds: Int
        var finalAccuracy: Double?
        var reachedTarget: Int
        var trafficToTargetMB: Double?
        var timeToTargetSeconds: Double?
        var totalTrafficMB: Double?
        var idleSeconds: Double?
        var trafficVsBestBaseline: Double?
    }

    var table: [Row] {
        var rows: [Row] = specs.map { spec in
            let rs = results[spec] ?? []
            let reached = rs.compactMap { r in Self.firstReach(r, target) }
            return Row(strategy: spec, seeds: rs.count, finalAccuracy: Self.median(rs.compactMap(\.finalAccuracy)),
                       reachedTarget: reached.count,
                       trafficToTargetMB: reached.count == rs.count ? Self.median(reached.map { Double($0.traffic) / 1e6 }) : nil,
                       timeToTargetSeconds: reached.count == rs.count ? Self.median(reached.map(\.simulatedSeconds)) : nil,
                       totalTrafficMB: Self.median(rs.compactMap { $0.rows.last.map { Double($0.cumulativeTraffic) / 1e6 } }),
                       idleSeconds: Self.median(rs.compactMap { $0.rows.last?.cumulativeIdleSeconds }))
        }
        // Traffic to target relative to the cheapest non-Caesar, non-FedAvg strategy that reached it.
        let baselines = rows.filter { !$0.strategy.hasPrefix("caesar") && !$0.strategy.hasPrefix("fedavg") }.compactMap(\.trafficToTargetMB)
        if let best = baselines.min() {
            for i in rows.indices { rows[i].trafficVsBestBaseline = rows[i].trafficToTargetMB.map { $0 / best } }
        }
        return rows
    }

    /// The first evaluated round at or above `target` (from the rows, so any target can be asked later).
    static func firstReach(_ r: SimulationResult, _ target: Double?) -> TargetReached? {
        guard let target else { return nil }
        for row in r.rows { if let a = row.accuracy, a >= target {
            return TargetReached(round: row.round, accuracy: a, traffic: row.cumulativeTraffic, simulatedSeconds: row.simulatedSeconds)
        } }
        return nil
    }

    var header: [String] {
        ["strategy", "seeds", "final acc", "reached", "MB to \(target.map { fmt(100 * $0, 0) + "%" } ?? "target")", "s to target", "total MB", "idle s", "vs best baseline"]
    }

    var rows: [[String]] {
        table.map { r in
            [r.strategy, String(r.seeds), r.finalAccuracy.map { fmt(100 * $0, 2) + "%" } ?? "-", "\(r.reachedTarget)/\(r.seeds)",
             r.trafficToTargetMB.map { fmt($0, 1) } ?? "-", r.timeToTargetSeconds.map { fmt($0, 0) } ?? "-",
             r.totalTrafficMB.map { fmt($0, 1) } ?? "-", r.idleSeconds.map { fmt($0, 0) } ?? "-",
             r.trafficVsBestBaseline.map { fmt(100 * ($0 - 1), 1) + "%" } ?? "-"]
        }
    }

    var json: [String: [Row]] { ["strategies": table] }

    func plot(x: KeyPath<RoundRecord, Int>, scale: Double, xLabel: String, title: String) -> SVGPlot {
        plotSeries(xLabel: xLabel, title: title) { Double($0[keyPath: x]) * scale }
    }

    func plot(x: KeyPath<RoundRecord, Double>, scale: Double, xLabel: String, title: String) -> SVGPlot {
        plotSeries(xLabel: xLabel, title: title) { $0[keyPath: x] * scale }
    }

    private func plotSeries(xLabel: String, title: String, _ xOf: (RoundRecord) -> Double) -> SVGPlot {
        var p = SVGPlot(title: title, xLabel: xLabel, yLabel: "test accuracy (%)")
        for spec in specs {
            guard let r = results[spec]?.first else { continue }
            p.series.append(.init(name: spec, points: r.rows.compactMap { row in row.accuracy.map { (xOf(row), 100 * $0) } }))
        }
        return p
    }
}

/// An MLP on flattened images (for `--model mlp:…`).
final class FlatMLP: Module, Layer {
    let mlp: MLP
    init(_ sizes: [Int], rng: inout RNG) { mlp = MLP(sizes, rng: &rng) }
    func forward(_ x: Tensor) -> Tensor { mlp(x.flattened(from: 1)) }
}
