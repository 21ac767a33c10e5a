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
        abstract: "Federated learning on simulated devices (FedAvg, compression baselines, Caesar).",
        subcommands: [Run.self])

    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a federated training simulation with a simulated clock and real traffic.",
            discussion: """
            Each selected device trains for real on its partition; traffic is the encoded bytes sent down and up;
            the clock charges compute (the device profile) and transfers (bytes / bandwidth).
            Example: frugal fl run --strategy fedavg --dataset fmnist --devices 100 --per-round 10 --rounds 20 --partition dirichlet:0.5
            """)

        @Option(help: "caesar, fedavg, topk, randk, qsgd, signsgd, stc") var strategy = "fedavg"
        @Option(help: "mnist, fmnist (LeNet), cifar10 (LeNet on 3x32x32)") var dataset = "fmnist"
        @Option(help: "Number of devices.") var devices = 100
        @Option(name: .customLong("per-round"), help: "Devices selected per round.") var perRound = 10
        @Option(help: "Rounds.") var rounds = 20
        @Option(help: "iid, dirichlet:ALPHA, classes:K, shards:S") var partition = "dirichlet:0.5"
        @Option(help: "Compression ratio (fraction kept) for topk/randk/stc.") var ratio = 0.1
        @Option(help: "QSGD levels.") var levels = 16
        @Option(name: .customLong("local-epochs"), help: "Local epochs per round (ignored with --local-steps).") var localEpochs = 1
        @Option(name: .customLong("local-steps"), help: "Local steps per round (Caesar's batch sizes need this).") var localSteps: Int?
        @Option(help: "Batch size.") var batch = 32
        @Option(help: "Learning rate.") var lr: Float = 0.05
        @Option(name: .customLong("theta-d-max"), help: "Caesar: largest share of the download sent as signs.") var thetaDMax = 0.9
        @Option(name: .customLong("caesar-parts"), help: "Caesar parts on: any of download,upload,batch.") var caesarParts = "download,upload,batch"
        @Option(name: .customLong("target-accuracy"), help: "Report traffic and simulated time to reach this test accuracy.") var targetAccuracy: Double?
        @Option(name: .customLong("eval-every"), help: "Evaluate every r rounds.") var evalEvery = 1
        @Option(help: "Seed.") var seed: UInt64 = 0
        @Option(help: "Data directory (default $FRUGAL_DATA or ~/.cache/frugal-data).") var data: String?
        @Option(help: "Write per-round rows as JSON to this file.") var json: String?

        func validate() throws {
            guard devices > 0, perRound > 0, perRound <= devices else { throw ValidationError("--per-round must be between 1 and --devices") }
            guard rounds > 0, batch > 0, lr > 0 else { throw ValidationError("--rounds, --batch and --lr must be positive") }
            guard ratio > 0, ratio <= 1 else { throw ValidationError("--ratio must be in (0, 1]") }
        }

        func run() throws {
            let root = data ?? DataPaths.root
            let (train, test, norm): (ImageDataset, ImageDataset, Normalization)
            switch dataset {
            case "mnist": (train, test, norm) = (try MNIST.load(dir: root + "/mnist", train: true), try MNIST.load(dir: root + "/mnist", train: false), MNIST.normalization)
            case "fmnist", "fashion-mnist": (train, test, norm) = (try FashionMNIST.load(dir: root + "/fashion-mnist", train: true), try FashionMNIST.load(dir: root + "/fashion-mnist", train: false), FashionMNIST.normalization)
            case "cifar10": (train, test, norm) = (try CIFAR10.load(dir: root + "/cifar-10-batches-bin", train: true), try CIFAR10.load(dir: root + "/cifar-10-batches-bin", train: false), CIFAR10.normalization)
            default: throw CLIError("unknown data set '\(dataset)': use mnist, fmnist or cifar10")
            }
            let part = try makePartition(train)
            let strat = try makeStrategy()
            var cfg = SimulationConfig()
            cfg.rounds = rounds; cfg.devicesPerRound = perRound; cfg.localEpochs = localEpochs; cfg.localSteps = localSteps
            cfg.batchSize = batch; cfg.learningRate = lr; cfg.evalEvery = evalEvery; cfg.targetAccuracy = targetAccuracy; cfg.seed = seed
            var rng = RNG(seed: seed)
            let model = LeNet(inChannels: train.channels, classes: train.classes, imageSize: train.height, rng: &rng)
            let sim = try FederatedSimulation(model: model, train: train, test: test, partition: part,
                                              devices: DeviceCatalog.mix(count: devices, seed: seed), strategy: strat,
                                              config: cfg, normalization: norm)
            print("\(strat.name) on \(dataset): \(devices) devices, \(perRound) a round, partition \(partition), \(rounds) rounds")
            printTable(["round", "accuracy", "traffic MB", "simulated s", "idle s"], [])
            let result = try sim.run { r in
                print([String(r.round), r.accuracy.map { fmt(100 * $0, 2) + "%" } ?? "-", fmt(Double(r.cumulativeTraffic) / 1e6, 2),
                       fmt(r.simulatedSeconds), fmt(r.cumulativeIdleSeconds)].joined(separator: "  "))
            }
            if let t = targetAccuracy {
                if let r = result.reached {
                    print("target \(fmt(100 * t, 1))% reached at round \(r.round): \(fmt(Double(r.traffic) / 1e6, 2)) MB, \(fmt(r.simulatedSeconds)) s simulated")
                } else { print("target \(fmt(100 * t, 1))% not reached") }
            }
            if let json { try writeJSON(result, to: json) }
        }

        func makePartition(_ train: ImageDataset) throws -> ClientPartition {
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

        func makeStrategy() throws -> any FederatedStrategy {
            switch strategy {
            case "fedavg": return FedAvgStrategy()
            case "topk": return CompressedStrategy(codec: TopKCodec(ratio: ratio), seed: seed)
            case "randk": return CompressedStrategy(codec: RandomKCodec(ratio: ratio), seed: seed)
            case "qsgd": return CompressedStrategy(codec: QSGDCodec(levels: levels), seed: seed)
            case "signsgd": return CompressedStrategy(codec: SignSGDCodec(), seed: seed)
            case "stc": return CompressedStrategy(codec: STCCodec(ratio: ratio), seed: seed)
            case "caesar":
                let on = Set(caesarParts.split(separator: ",").map(String.init))
                for p in on where !["download", "upload", "batch"].contains(p) { throw CLIError("unknown Caesar part '\(p)': use download, upload, batch") }
                if on.contains("batch") && localSteps == nil { throw CLIError("Caesar's batch sizes need --local-steps N (with epochs the batch size does not change compute time)") }
                return CaesarStrategy(download: on.contains("download"), upload: on.contains("upload"), batchSizes: on.contains("batch"),
                                      downloadCompression: DownloadCompression(thetaMax: thetaDMax),
                                      planner: BatchSizePlanner(minBatch: 8, maxBatch: max(batch, 8), batchStep: 8, localSteps: localSteps ?? 1),
                                      seed: seed)
            default: throw CLIError("unknown strategy '\(strategy)': use caesar, fedavg, topk, randk, qsgd, signsgd or stc")
            }
        }
    }
}
