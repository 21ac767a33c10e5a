import ArgumentParser
import Foundation
import FrugalCore
import FrugalNN
import FrugalData
import FrugalModels
import FrugalFederated

struct Quickstart: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A short tour of Frugal on data it makes itself (no downloads).",
        discussion: "Trains a small CNN on generated images and reports accuracy and speed; runs FedAvg and Caesar on simulated devices; generates with an offloaded MoE under a memory budget; fine-tunes a small transformer with federated LoRA and layer dropout; runs a few NAS search steps. --quick runs a smaller version (CI smoke test).")

    @Flag(help: "Smaller sizes (seconds instead of a minute).") var quick = false
    @Option(help: "Seed.") var seed: UInt64 = 1
    @Option(help: "Write the tour's results as JSON to this file.") var json: String?

    func run() throws {
        print("Frugal quickstart — \(Kernels.threads) threads, backend \(Kernels.backend.rawValue)\n")
        var results: [String: Double] = [:]

        // 1. Core: a LeNet-style CNN on generated 28x28 images (10 classes of noisy strokes).
        let n = quick ? 1200 : 6000
        print("[core] generating \(n) + \(n / 5) synthetic 28x28 images of 10 stroke patterns")
        let train = try SyntheticImages.strokes(count: n, seed: seed)
        let test = try SyntheticImages.strokes(count: n / 5, seed: seed &+ 1)
        var rng = RNG(seed: seed)
        let net = LeNet(rng: &rng)
        var cfg = ClassifierTrainingConfig()
        cfg.epochs = quick ? 2 : 3; cfg.batchSize = 32; cfg.learningRate = 0.03; cfg.cosine = true; cfg.seed = seed
        let reports = try trainClassifier(net, train: train, test: test, normalization: Normalization(mean: [0.5], std: [0.5]), config: cfg) { r in
            print("[core] epoch \(r.epoch): loss \(fmt(r.trainLoss, 3)), test accuracy \(fmt(100 * r.testAccuracy, 1))%, \(fmt(r.imagesPerSecond, 0)) images/s (training)")
        }
        results["core_test_accuracy"] = reports.last?.testAccuracy ?? 0
        results["core_images_per_second"] = reports.last?.imagesPerSecond ?? 0

        // 2. Kernels: one GEMM size, for a feel of the speed.
        let r = GEMMBench.run(shapes: [(512, 512, 512)], backends: [.swift], minTime: quick ? 0.1 : 0.3)
        if let g = r.first {
            print("[core] SGEMM 512³: \(fmt(g.gflops)) GFLOP/s (pure Swift, \(Kernels.threads) threads)")
            results["sgemm_512_gflops"] = g.gflops
        }
        // 3. Federated: FedAvg and Caesar on the same generated images split over simulated devices.
        try federatedTour(train: train, test: test, quick: quick, results: &results)

        // 4. MoEpic: offloaded MoE inference under a memory budget, two policies side by side.
        try moeTour(quick: quick, results: &results)

        // 5. DropPEFT: federated LoRA with stochastic layer dropout on a generated transformer.
        try peftTour(quick: quick)

        // 6. SSF-NAS: a few architecture-search steps on generated images.
        try nasTour(quick: quick)

        print("\nNext: `frugal train --dataset mnist` on real data (see README), `frugal bench gemm`, `frugal bench train`.")
        if let json { try writeJSON(results, to: json) }
    }
}

extension Quickstart {
    /// A few rounds of FedAvg and Caesar on the same devices, partition and seed; traffic side by side.
    func federatedTour(train: ImageDataset, test: ImageDataset, quick: Bool, results: inout [String: Double]) throws {
        let devices = 10, perRound = 5, rounds = quick ? 4 : 8
        print("\n[federated] \(devices) simulated devices (Jetson and phone profiles), \(perRound) a round, Dirichlet 1.0 split, \(rounds) rounds")
        var cfg = SimulationConfig()
        cfg.rounds = rounds; cfg.devicesPerRound = perRound; cfg.localSteps = 8; cfg.batchSize = 32
        cfg.learningRate = 0.1; cfg.seed = seed
        let part = try FederatedPartition.dirichlet(labels: train.labels, classes: train.classes, clients: devices, alpha: 1.0, seed: seed)
        let norm = Normalization(mean: [0.5], std: [0.5])
        var rows: [[String]] = []
        for (name, strategy) in [("fedavg", FedAvgStrategy() as any FederatedStrategy),
                                 ("caesar", CaesarStrategy(planner: BatchSizePlanner(minBatch: 8, maxBatch: 32, batchStep: 8, localSteps: 8), seed: seed))] {
            var rng = RNG(seed: seed)
            let sim = try FederatedSimulation(model: LeNet(rng: &rng), train: train, test: test, partition: part,
                                              devices: DeviceCatalog.mix(count: devices, seed: seed), strategy: strategy,
                                              config: cfg, normalization: norm)
            let r = try sim.run { row in
                print("[federated] \(name) round \(row.round): accuracy \(fmt(100 * (row.accuracy ?? 0), 1))%, traffic \(fmt(Double(row.cumulativeTraffic) / 1e6, 2)) MB, simulated \(fmt(row.simulatedSeconds, 1)) s, idle \(fmt(row.cumulativeIdleSeconds, 1)) s")
                flushStdout()
            }
            let last = r.rows.last!
            rows.append([name, fmt(100 * (r.finalAccuracy ?? 0), 1) + "%", fmt(Double(last.cumulativeBytesDown) / 1e6, 2),
                         fmt(Double(last.cumulativeBytesUp) / 1e6, 2), fmt(last.simulatedSeconds, 1), fmt(last.cumulativeIdleSeconds, 1)])
            results["fl_\(name)_accuracy"] = r.finalAccuracy ?? 0
            results["fl_\(name)_traffic_bytes"] = Double(last.cumulativeTraffic)
        }
        printTable(["strategy", "accuracy", "down MB", "up MB", "simulated s", "idle s"], rows)
    }
}

/// Generated image classification data: each class is a stroke at its own angle and position,
/// drawn with random thickness, shift and noise. Learnable by a CNN, not linearly trivial.
enum SyntheticImages {
    static func strokes(count: Int, seed: UInt64, size: Int = 28, classes: Int = 10) throws -> ImageDataset {
        var rng = RNG(seed: seed)
        var pixels = [UInt8](repeating: 0, count: count * size * size)
        var labels = [Int32](repeating: 0, count: count)
        for i in 0..<count {
            let c = rng.int(classes)
            labels[i] = Int32(c)
            let angle = Float.pi * Float(c) / Float(classes)
            let (dx, dy) = (cosf(angle), sinf(angle))
            let cx = Float(size) / 2 + rng.uniform(-3, 3), cy = Float(size) / 2 + rng.uniform(-3, 3)
            let thick = rng.uniform(1.0, 2.2), len = rng.uniform(7, 11)
            for y in 0..<size {
                for x in 0..<size {
                    let px = Float(x) - cx, py = Float(y) - cy
                    let along = px * dx + py * dy, across = abs(-px * dy + py * dx)
                    var v: Float = (abs(along) < len && across < thick) ? 220 : 0
                    v += rng.uniform(0, 60)
                    pixels[i * size * size + y * size + x] = UInt8(min(255, v))
                }
            }
        }
        return try ImageDataset(pixels: pixels, labels: labels, channels: 1, height: size, width: size, classes: classes,
                                classNames: (0..<classes).map { "stroke\($0)" })
    }
}
