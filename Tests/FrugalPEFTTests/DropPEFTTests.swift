import Foundation
import Testing
@testable import FrugalPEFT
import FrugalCore
import FrugalNN
import FrugalModels
import FrugalFederated

/// Bernoulli-like synthetic rewards: arm a pays mean[a] + noise.
func playBandit(_ policy: BanditPolicy, means: [Double], rounds: Int, seed: UInt64) -> (DropoutBandit, [Int]) {
    var b = DropoutBandit(arms: means.count, policy: policy, seed: seed)
    var noise = RNG(seed: seed ^ 99)
    var picks: [Int] = []
    for _ in 0..<rounds {
        let a = b.choose()!
        picks.append(a)
        b.update(arm: a, reward: means[a] + 0.3 * Double(noise.normal()))
    }
    return (b, picks)
}

@Suite struct DropoutBanditTests {
    let means = [0.2, 0.5, 1.0, 0.4, 0.1, 0.3]

    @Test(arguments: [BanditPolicy.ucb(c: 1), .thompson, .epsilonGreedy(0.1)])
    func findsTheBestArm(_ policy: BanditPolicy) {
        let (b, picks) = playBandit(policy, means: means, rounds: 400, seed: 3)
        #expect(b.best == 2)
        // The best arm is played most, and most of all in the second half.
        let late = picks.suffix(200).filter { $0 == 2 }.count
        #expect(late > 120, "\(policy): best arm played \(late) of the last 200 times")
        #expect(b.counts.max() == b.counts[2])
    }

    @Test func seededReproducibility() {
        for p in [BanditPolicy.ucb(c: 1), .thompson, .epsilonGreedy(0.2)] {
            #expect(playBandit(p, means: means, rounds: 100, seed: 5).1 == playBandit(p, means: means, rounds: 100, seed: 5).1)
        }
        #expect(playBandit(.thompson, means: means, rounds: 100, seed: 5).1 != playBandit(.thompson, means: means, rounds: 100, seed: 6).1)
    }

    @Test func untriedArmsFirstAndAllowedMask() {
        var b = DropoutBandit(arms: 3, policy: .ucb(c: 1), seed: 0)
        #expect(b.choose() == 0)
        b.update(arm: 0, reward: 1)
        #expect(b.choose() == 1)
        #expect(b.choose(allowed: [true, false, true]) == 2)
        #expect(b.choose(allowed: [false, false, false]) == nil)
        // UCB1 by hand: arms 0, 1 with means 1 and 0.5 (scale 1), n = 2 + 1: bonus sqrt(2 ln 3 / n_a).
        b.update(arm: 1, reward: 0.5); b.update(arm: 1, reward: 0.5)
        let u0 = 1 + (2 * log(3.0) / 1).squareRoot(), u1 = 0.5 + (2 * log(3.0) / 2).squareRoot()
        #expect(b.choose(allowed: [true, true, false]) == (u0 > u1 ? 0 : 1))
    }

    @Test func pendingChoicesSpreadOverUntriedArms() {
        // Three devices of one class choose before any reward arrives: three different arms.
        var b = DropoutBandit(arms: 4, policy: .ucb(c: 1), seed: 0)
        let picks = (0..<3).map { _ in b.choose()! }
        #expect(picks == [0, 1, 2])
        #expect(b.pending == [1, 1, 1, 0])
        b.update(arm: 0, reward: 1); b.update(arm: 1, reward: 3); b.cancel(arm: 2)
        #expect(b.pending == [0, 0, 0, 0])
        #expect(b.counts == [1, 1, 0, 0])
        // Arms 2 and 3 are untried again (2's choice was cancelled).
        #expect(b.choose() == 2)
        #expect(b.choose() == 3)
        // Every arm pending or paid: UCB picks among the paid ones, the pending ones count as plays.
        #expect(b.choose() == 1)
    }

    @Test func parsing() throws {
        #expect(try BanditPolicy(parsing: "ucb:2") == .ucb(c: 2))
        #expect(try BanditPolicy(parsing: "thompson") == .thompson)
        #expect(throws: PEFTError.self) { try BanditPolicy(parsing: "softmax") }
        #expect(try PEFTStrategySpec(parsing: "fixed:0.5") == .fixed(0.5))
        #expect(try PEFTStrategySpec(parsing: "freeze:3") == .freeze(3))
        #expect(try PEFTStrategySpec(parsing: "droppeft:thompson") == .dropPEFT(.thompson))
        #expect(throws: PEFTError.self) { try PEFTStrategySpec(parsing: "fixed:1.5") }
        #expect(throws: PEFTError.self) { try PEFTStrategySpec(parsing: "fedprox") }
        #expect(try DropoutArm.parseList("full, uniform:0.1,increasing:0.5") == [DropoutArm(.uniform, 0), DropoutArm(.uniform, 0.1), DropoutArm(.increasing, 0.5)])
        #expect(throws: PEFTError.self) { try DropoutArm.parseList("uniform:1.5") }
        #expect(throws: PEFTError.self) { try DropoutArm.parseList("sideways:0.2") }
    }
}

/// A tiny LoRA BERT classification task on synthetic token data split over `clients` devices.
func tinyTask(clients: Int = 4, layers: Int = 3, seed: UInt64 = 0) throws -> TextClassificationTask {
    var rng = RNG(seed: seed)
    let c = BertConfig(vocabSize: 40, hiddenSize: 16, numHiddenLayers: layers, numAttentionHeads: 2, intermediateSize: 32,
                       maxPositionEmbeddings: 16)
    let bert = BertModel(config: c, rng: &rng)
    bert.freeze()
    LoRA.inject(into: bert, LoRAConfig(rank: 2, alpha: 4), rng: &rng)
    let clf = BertClassifier(bert: bert, classes: 2, rng: &rng)
    let train = try TokenizedDataset.synthetic(count: 24 * clients, classes: 2, length: 12, vocab: 40, seed: seed + 1)
    let parts = (0..<clients).map { k in train.subset(Array(stride(from: k, to: train.count, by: clients))) }
    let test = try TokenizedDataset.synthetic(count: 64, classes: 2, length: 12, vocab: 40, seed: seed + 2)
    return try TextClassificationTask(model: clf, clients: parts, test: test, learningRate: 1e-2)
}

func profiles(_ n: Int, memory: Int = 1 << 30) -> [DeviceProfile] {
    (0..<n).map { i in
        DeviceProfile(name: i % 2 == 0 ? "fast" : "slow", computePerSample: i % 2 == 0 ? 0.001 : 0.004,
                      downlinkBytesPerSecond: 1e6, uplinkBytesPerSecond: 5e5, memoryBytes: memory)
    }
}

@Suite struct DropPEFTFederatedTests {
    @Test func layerDropoutCutsWorkAndTrainsOnlyActiveLayers() throws {
        let task = try tinyTask()
        let start = task.initialParameters()
        let full = PEFTConfiguration(dropout: .none(layers: 3), label: "full")
        let r = try task.train(client: 0, from: start, configuration: full, batchSize: 4, steps: 3, seed: 1)
        #expect(r.samples == 12)
        #expect(abs(r.work - 12) < 1e-9)
        #expect(r.trainedSegments.allSatisfy { $0 })
        // Top 1 layer trained: the bottom two run forward only: work = 12 · (1 + 2 · forwardOnlyCost) / 3.
        let top = PEFTConfiguration(dropout: .none(layers: 3), frozenLayers: 2, label: "top1")
        let f = try task.train(client: 0, from: start, configuration: top, batchSize: 4, steps: 3, seed: 1)
        #expect(abs(f.work - 12 * (1 + 2 * task.forwardOnlyCost) / 3) < 1e-9)
        for (s, l) in task.layerOfSegment.enumerated() {
            #expect(f.trainedSegments[s] == (l < 0 || l == 2))
            if l >= 0 && l < 2 { #expect(task.layout.range(s).allSatisfy { f.update[$0] == 0 }) }
        }
        // Dropout 0.5: at most maxActive layers a step, work below full, memory estimate below full.
        let half = PEFTConfiguration(dropout: LayerDropoutConfig(.uniform, layers: 3, ratio: 0.5), label: "u0.5")
        #expect(half.maxActive == 2)   // ⌈3 · 0.5⌉
        let h = try task.train(client: 0, from: start, configuration: half, batchSize: 4, steps: 3, seed: 1)
        #expect(h.work < r.work)
        #expect(task.layerBytesPerSample > 0)
        #expect(task.trainingMemory(top, batchSize: 8) < task.trainingMemory(full, batchSize: 8))
        // Same seed, same result.
        let again = try task.train(client: 0, from: start, configuration: half, batchSize: 4, steps: 3, seed: 1)
        #expect(again.update == h.update)
    }

    @Test func aggregatesEachAdapterOverTheDevicesThatTrainedIt() throws {
        let task = try tinyTask(clients: 2)
        let strategy = try DropPEFTStrategy(.freeze(1), layers: 3)
        var cfg = SimulationConfig()
        cfg.rounds = 1; cfg.devicesPerRound = 2; cfg.batchSize = 4; cfg.localSteps = 2; cfg.seed = 4
        let sim = try TaskSimulation(task: task, strategy: strategy, devices: profiles(2), config: cfg)
        let before = sim.global
        let row = try sim.runRound()
        #expect(row.trained == 2)
        // Reference: re-train both devices and average by samples the segments they trained.
        var expected = before
        let rs = try (0..<2).map { d in
            try task.train(client: d, from: before, configuration: strategy.arms[0], batchSize: 4, steps: 2,
                           seed: cfg.seed &+ 1 &* 1_000_003 &+ UInt64(d) &* 7919)
        }
        for s in task.layout.segments.indices where rs[0].trainedSegments[s] {
            for i in task.layout.range(s) {
                expected[i] += Float((Double(rs[0].update[i]) * 8 + Double(rs[1].update[i]) * 8) / 16)
            }
        }
        #expect(zip(sim.global, expected).allSatisfy { abs($0 - $1) < 1e-6 })
        // Untrained (frozen) layers stay where they were; traffic = adapters + head, both ways.
        let bytes = 4 * task.layout.count
        #expect(row.devices.allSatisfy { $0.bytesDown == bytes && $0.bytesUp == bytes })
        let p = profiles(2)
        let d0 = row.devices[0]
        #expect(abs(d0.computeSeconds - p[0].computePerSample * task.computeCost * d0.work) < 1e-12)
        #expect(abs(d0.transferSeconds - (Double(bytes) / 1e6 + Double(bytes) / 5e5)) < 1e-12)
        #expect(row.roundSeconds == row.devices.map(\.totalSeconds).max())
    }

    @Test func deviceWithoutMemorySitsOut() throws {
        let task = try tinyTask(clients: 2)
        let need = task.trainingMemory(PEFTConfiguration(dropout: .none(layers: 3), label: "full"), batchSize: 4)
        let strategy = try DropPEFTStrategy(.fedLoRA, layers: 3)
        var cfg = SimulationConfig()
        cfg.rounds = 1; cfg.devicesPerRound = 2; cfg.batchSize = 4; cfg.localSteps = 1
        var devs = profiles(2)
        devs[1].memoryBytes = need - 1
        let sim = try TaskSimulation(task: task, strategy: strategy, devices: devs, config: cfg)
        let row = try sim.runRound()
        #expect(row.trained == 1)
        #expect(row.devices[1].configuration == nil && row.devices[1].bytesUp == 0)
        // DropPEFT offers the tight device only the arms that fit.
        let drop = try DropPEFTStrategy(.dropPEFT(.ucb(c: 1)), layers: 3)
        let fitting = drop.arms.filter { task.trainingMemory($0, batchSize: 4) <= need - 1 }
        let sim2 = try TaskSimulation(task: task, strategy: drop, devices: devs, config: cfg)
        let row2 = try sim2.runRound()
        if fitting.isEmpty { #expect(row2.devices[1].configuration == nil) }
        else { #expect(fitting.map(\.label).contains(row2.devices[1].configuration!)) }
    }

    @Test func droppeftLearnsAndIsReproducible() throws {
        func run() throws -> TaskSimulationResult {
            let task = try tinyTask(clients: 4)
            var cfg = SimulationConfig()
            cfg.rounds = 8; cfg.devicesPerRound = 3; cfg.batchSize = 8; cfg.localSteps = 4; cfg.seed = 2
            let s = try DropPEFTStrategy(.dropPEFT(.thompson), layers: 3, personalLayers: 0, seed: 1)
            return try TaskSimulation(task: task, strategy: s, devices: profiles(4), config: cfg).run()
        }
        // Measured memory (peaks, and the per-sample activation bytes behind each configuration's
        // requirement) is process-wide (MemoryStats) and other tests run concurrently: compare the rest.
        func simulated(_ r: TaskSimulationResult) -> TaskSimulationResult {
            var r = r
            r.peakMemoryBytes = 0
            for i in r.rows.indices {
                r.rows[i].peakMemoryBytes = 0
                for j in r.rows[i].devices.indices { r.rows[i].devices[j].peakMemoryBytes = 0; r.rows[i].devices[j].memoryBytes = 0 }
            }
            return r
        }
        let a = try run(), b = try run()
        #expect(simulated(a) == simulated(b))
        #expect((a.finalAccuracy ?? 0) > 0.7)
        #expect(a.rows.last!.testLoss! < a.rows.first!.testLoss! - 0.05)
        #expect(a.rows.allSatisfy { $0.devices.allSatisfy { $0.configuration != nil } })
    }

    @Test func samplingKeepTopAndFullDepthSteps() throws {
        let half = LayerDropoutConfig(.uniform, layers: 6, ratio: 0.5)
        let bounded = PEFTConfiguration(dropout: half, label: "b")
        let bernoulli = PEFTConfiguration(dropout: half, label: "p", sampling: .bernoulli)
        #expect(bounded.maxActive == 3 && bernoulli.maxActive == 6)
        #expect(PEFTConfiguration(dropout: half, label: "f", fullDepthSteps: 1).maxActive == 6)
        #expect(PEFTConfiguration(dropout: .none(layers: 6), label: "n", fullDepthSteps: 1).maxActive == 6)
        var d1 = LayerDropout(half, seed: 3), d2 = LayerDropout(half, seed: 3), rng = RNG(seed: 1)
        var activeB = 0, activeP = 0, most = 0
        for _ in 0..<2000 {
            let a = bounded.sample(&d1, &rng), b = bernoulli.sample(&d2, &rng)
            let n = a.filter { $0 }.count
            activeB += n; most = max(most, n); activeP += b.filter { $0 }.count
            #expect(n >= 1 && n <= 3)
        }
        // Bernoulli keeps the nominal ratio (3 of 6 active); bounded runs fewer (2.29 expected).
        #expect(abs(Double(activeP) / 2000 - 3) < 0.1)
        #expect(abs(Double(activeB) / 2000 - 2.29) < 0.1 && most == 3)
        // Keeping the top layer spreads the ratio over the other five.
        let s = try DropPEFTStrategy(.fixed(0.5), layers: 6, options: DropoutOptions(keepTop: 1))
        let p = s.arms[0].dropout.probabilities
        #expect(p[5] == 0 && abs(s.arms[0].dropout.overallRatio - 0.5) < 1e-6 && p[0..<5].allSatisfy { abs($0 - 0.6) < 1e-6 })
        #expect(s.name == "fixed:0.5+top1")
        // Full-depth final step: layers always skipped otherwise (p = 1) train in the last step.
        let task = try tinyTask()
        let c = PEFTConfiguration(dropout: LayerDropoutConfig(probabilities: [1, 1, 0]), label: "x", fullDepthSteps: 1)
        let r = try task.train(client: 0, from: task.initialParameters(), configuration: c, batchSize: 4, steps: 3, seed: 2)
        #expect(r.trainedSegments.allSatisfy { $0 })
        #expect(abs(r.work - (4 * 1.0 / 3 * 2 + 4)) < 1e-9)
    }

    @Test func perTensorAdamStepsAndHeadSteps() throws {
        // Layers 0 and 1 are active only in the last of 3 steps: per-tensor bias correction gives
        // them Adam's full first step, lr · sign(g) on lora_b (lora_a's gradient is 0 while B = 0);
        // the global step count (3) gives (0.1 / (1 − 0.9³)) / sqrt(0.001 / (1 − 0.999³)) = 0.639 of it.
        let task = try tinyTask()
        let c = PEFTConfiguration(dropout: LayerDropoutConfig(probabilities: [1, 1, 0]), label: "x", fullDepthSteps: 1)
        func loraBStep(_ perTensor: Bool) throws -> Float {
            task.perTensorAdamSteps = perTensor
            let r = try task.train(client: 0, from: task.initialParameters(), configuration: c, batchSize: 4, steps: 3, seed: 2)
            let s = task.layout.segments.firstIndex { $0.name.contains("layer.0.") && $0.name.hasSuffix("lora_b") }!
            return task.layout.range(s).map { abs(r.update[$0]) }.max()!
        }
        let lr = task.learningRate
        #expect(abs(try loraBStep(true) - lr) < 1e-3 * lr)
        #expect(abs(try loraBStep(false) - 0.639 * lr) < 2e-3 * lr)
        task.perTensorAdamSteps = true
        // Head steps change only the head (and are charged as full-depth forward passes); probes
        // for the reward cost two forward passes of the first batch.
        let drop = PEFTConfiguration(dropout: LayerDropoutConfig(.uniform, layers: 3, ratio: 0.5), label: "u")
        var withHead = drop; withHead.headSteps = 2
        var probed = drop; probed.measuresProgress = true
        let a = try task.train(client: 1, from: task.initialParameters(), configuration: drop, batchSize: 4, steps: 3, seed: 5)
        let b = try task.train(client: 1, from: task.initialParameters(), configuration: withHead, batchSize: 4, steps: 3, seed: 5)
        let p = try task.train(client: 1, from: task.initialParameters(), configuration: probed, batchSize: 4, steps: 3, seed: 5)
        for (s, l) in task.layerOfSegment.enumerated() {
            let same = task.layout.range(s).allSatisfy { a.update[$0] == b.update[$0] }
            #expect(same == (l >= 0), "segment \(task.layout.segments[s].name)")
        }
        #expect(abs(b.work - a.work - 2 * 4 * task.forwardOnlyCost) < 1e-9)
        #expect(abs(p.work - a.work - 2 * 4 * task.forwardOnlyCost) < 1e-9)
        #expect(p.update == a.update && a.progress == 0 && p.progress != 0)
    }

    @Test func roundRewardDividesByTheRoundTime() throws {
        let s = try DropPEFTStrategy(.dropPEFT(.ucb(c: 1)), layers: 3, arms: [DropoutArm(.uniform, 0), DropoutArm(.uniform, 0.5)],
                                     reward: .round)
        let dev = profiles(1)[0]
        let c = s.configure(device: 0, profile: dev, round: 1, fits: { _ in true })!
        #expect(c.measuresProgress && c.label == "full")
        let r = LocalTrainingResult(update: [], samples: 4, loss: 1, work: 4, peakMemoryBytes: 0, trainedSegments: [], progress: 2)
        s.observe(device: 0, profile: dev, configuration: c, result: r, seconds: 1, roundSeconds: 4, local: [],
                  layout: try TensorLayout([]))
        #expect(s.bandits["fast"]!.means[0] == 0.5)
        #expect(s.name == "droppeft:ucb:1.0+reward:round")
    }

    @Test func deadlineRuleGivesSlowDevicesTheDropout() throws {
        let arms = [DropoutArm(.uniform, 0), DropoutArm(.uniform, 0.5)]
        let fleet = profiles(4)   // fast 0.001 s, slow 0.004 s a sample
        func choice(_ f: Double, _ device: Int) throws -> String? {
            let s = try DropPEFTStrategy(.deadline(f), layers: 6, arms: arms)
            s.fleet = fleet
            #expect(abs(s.expectedActive[0] - 1) < 1e-12 && abs(s.expectedActive[1] - 2.29 / 6) < 0.03)
            return s.configure(device: device, profile: fleet[device], round: 1, fits: { _ in true })?.label
        }
        // Deadline = the fast device's full depth (1/4 of the slowest's): the slow device (0.004 x
        // 0.38 > 0.001) takes the fastest arm.
        #expect(try choice(0.25, 0) == "full" && choice(0.25, 1) == "uniform:0.5")
        // Half of the slowest's full depth: the slow device's ratio-0.5 arm is within it.
        #expect(try choice(0.5, 1) == "uniform:0.5")
        // The slowest device's full depth: everybody full.
        #expect(try choice(1, 1) == "full")
        // An arm that does not fit is not offered.
        let s = try DropPEFTStrategy(.deadline(0.25), layers: 6, arms: arms)
        s.fleet = fleet
        #expect(s.configure(device: 1, profile: fleet[1], round: 1, fits: { $0.label == "full" })?.label == "full")
        #expect(s.configure(device: 1, profile: fleet[1], round: 1, fits: { _ in false }) == nil)
        #expect(try PEFTStrategySpec(parsing: "deadline:0.25") == .deadline(0.25))
        #expect(throws: PEFTError.self) { try PEFTStrategySpec(parsing: "deadline:2") }
        #expect(throws: PEFTError.self) { try PEFTStrategySpec(parsing: "deadline:0") }
    }

    @Test func perClassAndLabelMixEvaluation() throws {
        #expect(abs(TextClassificationTask.weightedAccuracy(correct: [8, 3], count: [10, 6], mix: [0.25, 0.75]) - 0.575) < 1e-12)
        // A class absent from the test set is left out of the weights.
        #expect(abs(TextClassificationTask.weightedAccuracy(correct: [8, 0], count: [10, 0], mix: [0.25, 0.75]) - 0.8) < 1e-12)
        let task = try tinyTask()
        let v = task.initialParameters()
        let e = try task.evaluate(v), pc = try task.evaluatePerClass(v)
        #expect(pc.count.reduce(0, +) == task.test.count)
        #expect(abs(e.accuracy - Double(pc.correct.reduce(0, +)) / Double(task.test.count)) < 1e-12)
        #expect(abs(e.loss - pc.lossSum.reduce(0, +) / Double(task.test.count)) < 1e-12)
        let mix = task.labelMix(client: 0)
        let n = task.clients[0].labels.filter { $0 == 1 }.count
        #expect(abs(mix[1] - Double(n) / Double(task.clients[0].count)) < 1e-12 && abs(mix.reduce(0, +) - 1) < 1e-12)
    }

    @Test func personalLayersStayLocal() throws {
        let task = try tinyTask(clients: 2)
        let s = try DropPEFTStrategy(.fedLoRA, layers: 3, personalLayers: 1)
        let shared = s.sharedSegments(layout: task.layout)
        #expect(zip(shared, task.layerOfSegment).allSatisfy { $0 == ($1 != 2) })
        var cfg = SimulationConfig()
        cfg.rounds = 2; cfg.devicesPerRound = 2; cfg.batchSize = 4; cfg.localSteps = 2
        let sim = try TaskSimulation(task: task, strategy: s, devices: profiles(2), config: cfg)
        _ = try sim.run()
        for (seg, sh) in shared.enumerated() where !sh {
            #expect(task.layout.range(seg).allSatisfy { sim.global[$0] == task.initialParameters()[$0] })
        }
        let own = s.start(device: 0, global: sim.global, layout: task.layout)
        #expect(own != sim.global)
        #expect(sim.rows[0].devices[0].bytesUp == 4 * zip(task.layout.segments, shared).reduce(0) { $0 + ($1.1 ? $1.0.count : 0) })
    }
}

@Suite struct DropPEFTQuickstartTests {
    @Test func quickstartRunsBothStrategies() throws {
        var lines: [String] = []
        let r = try DropPEFTQuickstart.run(rounds: 2) { lines.append($0) }
        #expect(Set(r.keys) == ["fedlora", "droppeft"])
        #expect(lines.count == 3)
        // Skipped layers cost nothing: a DropPEFT device on a dropout arm did less work per sample than
        // full depth, once the bandit's two full-depth probe passes of its first batch (16 samples at
        // forward-only cost 1/2) are taken off; on the full-depth arm it did exactly full depth.
        let fed = r["fedlora"]!.rows.flatMap(\.devices)
        #expect(fed.allSatisfy { abs($0.work - Double($0.samples)) < 1e-9 })
        let drop = r["droppeft"]!.rows.flatMap(\.devices)
        let dropped = drop.filter { $0.configuration != "full" }
        #expect(!dropped.isEmpty)
        for d in drop {
            let training = (d.work - 2 * 16 * 0.5) / Double(d.samples)
            if d.configuration == "full" { #expect(abs(training - 1) < 1e-9) } else { #expect(training < 0.9) }
        }
    }
}

@Suite struct TaskCheckpointTests {
    /// A Thompson-sampling DropPEFT run with a personal layer, checkpointed after round 2 and resumed
    /// into a fresh simulation, ends where the uninterrupted run does (bandits, random streams,
    /// personal layers, selection RNG, clock, rows).
    @Test func aResumedRunContinuesExactly() throws {
        func make() throws -> TaskSimulation<DropPEFTStrategy> {
            var cfg = SimulationConfig()
            cfg.rounds = 4; cfg.devicesPerRound = 3; cfg.batchSize = 8; cfg.localSteps = 2; cfg.seed = 3
            let s = try DropPEFTStrategy(.dropPEFT(.thompson), layers: 3, personalLayers: 1, seed: 5)
            return try TaskSimulation(task: try tinyTask(clients: 4), strategy: s, devices: profiles(4), config: cfg)
        }
        let whole = try make()
        _ = try whole.run()
        let first = try make()
        try first.runRound(); try first.runRound()
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("task-ckpt-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try first.saveCheckpoint(to: url)
        let resumed = try make()
        try resumed.resume(from: url)
        #expect(resumed.round == 2)
        _ = try resumed.run()
        #expect(resumed.global == whole.global)
        #expect(resumed.strategy.saveState() == whole.strategy.saveState())
        #expect(resumed.rows.map(\.devices).map { $0.map(\.configuration) } == whole.rows.map(\.devices).map { $0.map(\.configuration) })
        #expect(resumed.rows.map(\.simulatedSeconds) == whole.rows.map(\.simulatedSeconds))
        // A checkpoint of another strategy is refused with the reason.
        let other = try TaskSimulation(task: try tinyTask(clients: 4), strategy: try DropPEFTStrategy(.fedLoRA, layers: 3),
                                       devices: profiles(4), config: resumed.config)
        #expect(throws: FederatedError.self) { try other.resume(from: url) }
    }
}
