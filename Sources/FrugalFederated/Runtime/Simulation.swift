import Foundation
import FrugalCore
import FrugalNN
import FrugalData
import FrugalModels

/// Settings of a simulated federated run.
public struct SimulationConfig: Sendable, Codable, Equatable {
    /// Rounds that `run` executes.
    public var rounds = 10
    /// Devices selected per round (k); fewer when fewer are available.
    public var devicesPerRound = 10
    /// Local epochs per round (used when `localSteps` is nil).
    public var localEpochs = 1
    /// Local SGD steps per round instead of epochs (needed by Caesar's batch planning).
    public var localSteps: Int? = nil
    /// Default local batch size.
    public var batchSize = 32
    public var learningRate: Float = 0.05
    public var momentum: Float = 0
    public var weightDecay: Float = 0
    /// Evaluate on the test set every `evalEvery` rounds (and after the last round of `run`).
    public var evalEvery = 1
    /// Accuracy to reach; `SimulationResult.reached` records the traffic and time it took.
    public var targetAccuracy: Double? = nil
    /// Seed of device availability, selection and local data order.
    public var seed: UInt64 = 0
    /// Devices trained at once: 1 (one after another, kernels on all threads) or 2 (two at a time,
    /// one kernel thread each; needs a model replica). Results are identical either way.
    public var parallelDevices = 1
    public init() {}
}

/// One device's part in one round.
public struct DeviceRoundRecord: Sendable, Codable, Equatable {
    public var device: Int
    public var batchSize: Int
    /// Samples actually processed in local training.
    public var samples: Int
    /// Rounds since the device last synchronised (nil: first time).
    public var staleness: Int?
    /// Encoded download / upload stream lengths.
    public var bytesDown: Int
    public var bytesUp: Int
    public var computeSeconds: Double
    public var downloadSeconds: Double
    public var uploadSeconds: Double
    /// compute + download + upload.
    public var totalSeconds: Double
    /// Waiting at the barrier: round time − totalSeconds.
    public var idleSeconds: Double
    /// Mean training loss of the local steps.
    public var trainLoss: Double
    public var accepted: Bool
    /// Why the update was rejected (nil when accepted).
    public var rejection: String?
}

/// One row per round.
public struct RoundRecord: Sendable, Codable, Equatable {
    public var round: Int
    public var participants: Int
    public var accepted: Int
    /// Test accuracy, when evaluated this round.
    public var accuracy: Double?
    public var testLoss: Double?
    /// Traffic of this round (encoded stream bytes).
    public var bytesDown: Int
    public var bytesUp: Int
    public var cumulativeBytesDown: Int
    public var cumulativeBytesUp: Int
    /// cumulativeBytesDown + cumulativeBytesUp.
    public var cumulativeTraffic: Int
    /// Duration of this round (the slowest device), seconds.
    public var roundSeconds: Double
    /// Simulated time since the start, seconds.
    public var simulatedSeconds: Double
    /// Sum of the participants' idle waits this round, and since the start.
    public var idleSeconds: Double
    public var cumulativeIdleSeconds: Double
    /// Mean staleness of the participants that had synchronised before (nil if none had).
    public var meanStaleness: Double?
    public var devices: [DeviceRoundRecord]
}

/// Wall-clock split of one round on this machine: local training versus the runtime's own work
/// (selection, codecs, aggregation, bookkeeping) and evaluation. Not part of the simulated result.
public struct RoundWallTime: Sendable, Codable, Equatable {
    public var round: Int
    public var totalSeconds: Double
    public var trainingSeconds: Double
    public var evaluationSeconds: Double
    /// total − training − evaluation.
    public var overheadSeconds: Double { totalSeconds - trainingSeconds - evaluationSeconds }
    /// overhead / (total − evaluation): the runtime's share of a round's work.
    public var overheadShare: Double {
        let work = totalSeconds - evaluationSeconds
        return work > 0 ? overheadSeconds / work : 0
    }
}

/// When the target accuracy was first reached.
public struct TargetReached: Sendable, Codable, Equatable {
    public var round: Int
    public var accuracy: Double
    public var traffic: Int
    public var simulatedSeconds: Double
    public init(round: Int, accuracy: Double, traffic: Int, simulatedSeconds: Double) {
        self.round = round; self.accuracy = accuracy; self.traffic = traffic; self.simulatedSeconds = simulatedSeconds
    }
}

/// The rows of a run and the target-accuracy bookkeeping.
public struct SimulationResult: Sendable, Codable, Equatable {
    public var strategy: String
    public var rows: [RoundRecord]
    public var targetAccuracy: Double?
    public var reached: TargetReached?
    /// The last evaluated accuracy.
    public var finalAccuracy: Double?
    /// Wall-clock split per round of this process (empty for rounds restored from a checkpoint).
    public var wallTimes: [RoundWallTime] = []

    /// Equal simulated results: everything but the machine's wall-clock times.
    public static func == (a: SimulationResult, b: SimulationResult) -> Bool {
        a.strategy == b.strategy && a.rows == b.rows && a.targetAccuracy == b.targetAccuracy && a.reached == b.reached
            && a.finalAccuracy == b.finalAccuracy
    }
}

/// A synchronous federated-learning simulation: real local training of `model` on each selected
/// device's data, a simulated clock from the device profiles, and traffic from the encoded streams.
///
///     var cfg = SimulationConfig(); cfg.rounds = 5; cfg.devicesPerRound = 10
///     let sim = try FederatedSimulation(model: lenet, train: train, test: test, partition: part,
///                                       devices: DeviceCatalog.mix(count: 100, seed: 1),
///                                       strategy: FedAvgStrategy(), config: cfg,
///                                       normalization: FashionMNIST.normalization)
///     let result = try sim.run { print($0.round, $0.accuracy ?? .nan) }
public final class FederatedSimulation {
    public let model: any Layer
    public let layout: TensorLayout
    /// The global model (flat trainable parameters).
    public internal(set) var global: [Float]
    public let devices: [DeviceProfile]
    public let clientData: [ImageDataset]
    public let test: ImageDataset
    public let normalization: Normalization?
    public let strategy: any FederatedStrategy
    public let config: SimulationConfig
    /// Rounds done so far.
    public internal(set) var round = 0
    public internal(set) var rows: [RoundRecord] = []
    /// Log lines (rejected updates, rounds without devices).
    public internal(set) var log: [String] = []
    public internal(set) var reached: TargetReached?
    /// Wall-clock split of the rounds this process ran.
    public internal(set) var wallTimes: [RoundWallTime] = []
    /// Extra copies of `model` (same architecture) for training devices in parallel.
    public let replicas: [any Layer]
    /// Test hook: may alter a device's update before it is checked and encoded.
    public var faultInjection: ((_ round: Int, _ device: Int, _ update: inout [Float]) -> Void)?

    let labelCounts: [[Int]]
    let globalCounts: [Int]
    var lastSync: [Int?]
    var rng: SplitMix64
    var cumDown = 0, cumUp = 0
    var clock = 0.0, cumIdle = 0.0

    /// Checks the configuration and splits `train` by `partition` (one client per device).
    public init(model: any Layer, train: ImageDataset, test: ImageDataset, partition: ClientPartition,
                devices: [DeviceProfile], strategy: any FederatedStrategy, config: SimulationConfig,
                normalization: Normalization? = nil, replicas: [any Layer] = []) throws {
        guard !devices.isEmpty else { throw FederatedError("no devices") }
        guard partition.clients.count == devices.count else {
            throw FederatedError("partition '\(partition.method)' has \(partition.clients.count) clients but there are \(devices.count) devices")
        }
        for (i, d) in devices.enumerated() { try d.validate("device \(i)") }
        var owner = [Int](repeating: -1, count: train.count)
        for (k, idx) in partition.clients.enumerated() {
            guard !idx.isEmpty else { throw FederatedError("partition '\(partition.method)': client \(k) has no samples") }
            for i in idx {
                guard i >= 0 && i < train.count else {
                    throw FederatedError("partition '\(partition.method)': client \(k) holds sample \(i), the training set has \(train.count)")
                }
                guard owner[i] < 0 else {
                    throw FederatedError("partition '\(partition.method)': sample \(i) is held by clients \(owner[i]) and \(k)")
                }
                owner[i] = k
            }
        }
        guard config.devicesPerRound >= 1 && config.devicesPerRound <= devices.count else {
            throw FederatedError("devicesPerRound \(config.devicesPerRound) must be in 1...\(devices.count)")
        }
        guard config.rounds >= 0 else { throw FederatedError("rounds \(config.rounds) is negative") }
        guard config.localEpochs >= 1 else { throw FederatedError("localEpochs \(config.localEpochs) must be ≥ 1") }
        if let s = config.localSteps, s < 1 { throw FederatedError("localSteps \(s) must be ≥ 1") }
        guard config.batchSize >= 1 else { throw FederatedError("batchSize \(config.batchSize) must be ≥ 1") }
        guard config.parallelDevices == 1 || config.parallelDevices == 2 else {
            throw FederatedError("parallelDevices \(config.parallelDevices) must be 1 or 2")
        }
        guard config.parallelDevices == 1 || !replicas.isEmpty else {
            throw FederatedError("parallelDevices 2 needs a replica of the model")
        }
        guard config.evalEvery >= 1 else { throw FederatedError("evalEvery \(config.evalEvery) must be ≥ 1") }
        guard config.learningRate.isFinite && config.learningRate > 0 else {
            throw FederatedError("learning rate \(config.learningRate) must be finite and > 0")
        }
        guard test.classes == train.classes, test.channels == train.channels, test.height == train.height,
              test.width == train.width else {
            throw FederatedError("test set (\(test.channels)x\(test.height)x\(test.width), \(test.classes) classes) does not match the training set (\(train.channels)x\(train.height)x\(train.width), \(train.classes) classes)")
        }
        self.model = model
        self.layout = try ModelVector.layout(of: model)
        for (i, r) in replicas.enumerated() {
            let l = try ModelVector.layout(of: r)
            guard l.count == layout.count else {
                throw FederatedError("replica \(i) has \(l.count) parameters, the model has \(layout.count)")
            }
        }
        self.replicas = replicas
        self.global = ModelVector.flatten(model)
        self.devices = devices
        self.clientData = try partition.datasets(train)
        self.test = test
        self.normalization = normalization
        self.strategy = strategy
        self.config = config
        let counts = clientData.map { $0.classCounts() }
        self.labelCounts = counts
        self.globalCounts = (0 ..< train.classes).map { c in counts.reduce(0) { $0 + $1[c] } }
        self.lastSync = [Int?](repeating: nil, count: devices.count)
        self.rng = SplitMix64(seed: config.seed ^ 0x5E1E_C7ED)
    }

    func select() -> [Int] { selectDevices(devices, count: config.devicesPerRound, rng: &rng) }

    /// Local training from `start`; returns the update, the samples processed and the mean loss.
    func train(device d: Int, from start: [Float], batch: Int, on model: any Layer) throws -> (update: [Float], samples: Int, loss: Double) {
        try ModelVector.load(start, into: model, layout: layout)
        let data = clientData[d]
        var local = LocalTrainingConfig()
        local.batchSize = batch; local.learningRate = config.learningRate; local.momentum = config.momentum
        local.weightDecay = config.weightDecay; local.epochs = config.localEpochs; local.steps = config.localSteps
        local.seed = config.seed &+ UInt64(round) &* 1_000_003 &+ UInt64(d) &* 7919
        let stats = try trainLocally(model, on: data, normalization: normalization, config: local)
        var update = ModelVector.flatten(model)
        for i in 0 ..< update.count { update[i] -= start[i] }
        return (update, stats.samples, stats.loss)
    }

    /// Evaluates the current global model on the test set.
    public func evaluateGlobal() throws -> Evaluation {
        try ModelVector.load(global, into: model, layout: layout)
        return try evaluate(model, on: test, normalization: normalization)
    }

    /// Runs one round and returns its row.
    @discardableResult
    public func runRound() throws -> RoundRecord {
        let wallStart = DispatchTime.now().uptimeNanoseconds
        round += 1
        let t = round
        let selected = select()
        if selected.isEmpty { log.append("round \(t): no device available") }
        let staleness = selected.map { d in lastSync[d].map { t - $0 } }
        let ctx = RoundContext(round: t, devices: selected, profiles: selected.map { devices[$0] },
                               labelCounts: selected.map { labelCounts[$0] }, globalLabelCounts: globalCounts,
                               staleness: staleness)
        try strategy.prepare(ctx, layout: layout)
        var starts: [[Float]] = [], down: [Int] = []
        for (j, d) in selected.enumerated() {
            let bytes = try strategy.encodeDownload(global: global, device: d, staleness: staleness[j], round: t, layout: layout)
            starts.append(try strategy.decodeDownload(bytes, device: d, layout: layout))
            down.append(bytes.count)
            lastSync[d] = t
        }
        let batches = try strategy.batchSizes(ctx, bytesDown: down, defaultBatch: config.batchSize,
                                              localSteps: config.localSteps, layout: layout)
        guard batches.count == selected.count, batches.allSatisfy({ $0 >= 1 }) else {
            throw FederatedError("strategy \(strategy.name) planned batch sizes \(batches) for \(selected.count) devices")
        }
        let trainStart = DispatchTime.now().uptimeNanoseconds
        let trained = try trainAll(selected, starts: starts, batches: batches)
        let trainSeconds = Double(DispatchTime.now().uptimeNanoseconds - trainStart) / 1e9
        var recs: [DeviceRoundRecord] = []
        var updates: [[Float]] = [], weights: [Double] = []
        for (j, d) in selected.enumerated() {
            var (update, samples, loss) = trained[j]
            faultInjection?(t, d, &update)
            var rejection: String? = nil
            var upBytes = 0
            if update.count != layout.count {
                rejection = "update has \(update.count) entries, the model has \(layout.count)"
            } else if let bad = FloatScan.firstNonFinite(update) {
                rejection = "update has non-finite value \(update[bad]) at \(layout.name(at: bad))"
            } else {
                do {
                    let bytes = try strategy.encodeUpload(update, device: d, layout: layout)
                    upBytes = bytes.count
                    let decoded = try strategy.decodeUpload(bytes, device: d, layout: layout)
                    if decoded.count != layout.count {
                        rejection = "decoded update has \(decoded.count) entries, the model has \(layout.count)"
                    } else if let bad = FloatScan.firstNonFinite(decoded) {
                        rejection = "decoded update has non-finite value at \(layout.name(at: bad))"
                    } else {
                        updates.append(decoded)
                        weights.append(Double(clientData[d].count))
                    }
                } catch {
                    rejection = "upload failed: \(error)"
                }
            }
            if let r = rejection { log.append("round \(t): rejected the update of device \(d): \(r)") }
            let p = devices[d]
            let compute = p.computePerSample * Double(samples)
            let dl = Double(down[j]) / p.downlinkBytesPerSecond
            let ul = Double(upBytes) / p.uplinkBytesPerSecond
            recs.append(DeviceRoundRecord(device: d, batchSize: batches[j], samples: samples, staleness: staleness[j],
                                          bytesDown: down[j], bytesUp: upBytes, computeSeconds: compute, downloadSeconds: dl,
                                          uploadSeconds: ul, totalSeconds: compute + dl + ul, idleSeconds: 0,
                                          trainLoss: loss, accepted: rejection == nil, rejection: rejection))
        }
        global = strategy.aggregate(global: global, updates: updates, weights: weights)
        let roundTime = recs.map(\.totalSeconds).max() ?? 0
        var idle = 0.0
        for j in recs.indices {
            recs[j].idleSeconds = roundTime - recs[j].totalSeconds
            idle += recs[j].idleSeconds
        }
        let bytesDown = down.reduce(0, +), bytesUp = recs.reduce(0) { $0 + $1.bytesUp }
        cumDown += bytesDown
        cumUp += bytesUp
        clock += roundTime
        cumIdle += idle
        var accuracy: Double? = nil, testLoss: Double? = nil
        let evalStart = DispatchTime.now().uptimeNanoseconds
        if t % config.evalEvery == 0 || t == config.rounds {
            let ev = try evaluateGlobal()
            accuracy = ev.accuracy
            testLoss = ev.loss
        }
        let evalSeconds = Double(DispatchTime.now().uptimeNanoseconds - evalStart) / 1e9
        let synced = staleness.compactMap { $0 }
        let row = RoundRecord(round: t, participants: selected.count, accepted: updates.count, accuracy: accuracy,
                              testLoss: testLoss, bytesDown: bytesDown, bytesUp: bytesUp, cumulativeBytesDown: cumDown,
                              cumulativeBytesUp: cumUp, cumulativeTraffic: cumDown + cumUp, roundSeconds: roundTime,
                              simulatedSeconds: clock, idleSeconds: idle, cumulativeIdleSeconds: cumIdle,
                              meanStaleness: synced.isEmpty ? nil : Double(synced.reduce(0, +)) / Double(synced.count),
                              devices: recs)
        rows.append(row)
        wallTimes.append(RoundWallTime(round: t, totalSeconds: Double(DispatchTime.now().uptimeNanoseconds - wallStart) / 1e9,
                                       trainingSeconds: trainSeconds, evaluationSeconds: evalSeconds))
        if reached == nil, let target = config.targetAccuracy, let a = accuracy, a >= target {
            reached = TargetReached(round: t, accuracy: a, traffic: cumDown + cumUp, simulatedSeconds: clock)
        }
        return row
    }

    /// Runs the remaining rounds up to `config.rounds`, calling `progress` after each.
    public func run(progress: (RoundRecord) -> Void = { _ in }) throws -> SimulationResult {
        while round < config.rounds { progress(try runRound()) }
        return result
    }

    /// The rows so far and the target bookkeeping.
    public var result: SimulationResult {
        SimulationResult(strategy: strategy.name, rows: rows, targetAccuracy: config.targetAccuracy, reached: reached,
                         finalAccuracy: rows.last(where: { $0.accuracy != nil })?.accuracy, wallTimes: wallTimes)
    }

    /// Local training of every selected device: one after another on all kernel threads, or two
    /// at a time (the model and its replica) with one kernel thread each.
    func trainAll(_ selected: [Int], starts: [[Float]], batches: [Int]) throws -> [(update: [Float], samples: Int, loss: Double)] {
        if config.parallelDevices == 1 || selected.count < 2 {
            return try selected.indices.map { j in try train(device: selected[j], from: starts[j], batch: batches[j], on: model) }
        }
        let box = ParallelTraining(count: selected.count, workers: [model, replicas[0]]) { j, m in
            try self.train(device: selected[j], from: starts[j], batch: batches[j], on: m)
        }
        let saved = Kernels.threads
        Kernels.setThreads(1)
        defer { Kernels.setThreads(saved) }
        DispatchQueue.concurrentPerform(iterations: 2) { w in box.work(worker: w) }
        return try box.results()
    }
}

/// Two workers training devices j = w, w + 2, ... each on its own model. `@unchecked Sendable`:
/// the devices share nothing mutable (data sets are read-only; loaders and optimisers are per
/// call; each worker owns its model), each slot is written by one worker and read only after
/// `concurrentPerform` has returned, and the error slot is locked.
final class ParallelTraining: @unchecked Sendable {
    typealias Trained = (update: [Float], samples: Int, loss: Double)
    var slots: [Trained?]
    var error: Error?
    let lock = NSLock()
    let workers: [any Layer]
    let body: (Int, any Layer) throws -> Trained
    init(count: Int, workers: [any Layer], body: @escaping (Int, any Layer) throws -> Trained) {
        slots = Array(repeating: nil, count: count)
        self.workers = workers
        self.body = body
    }
    func work(worker w: Int) {
        var j = w
        while j < slots.count {
            do { set(j, try body(j, workers[w])) } catch { fail(error) }
            j += workers.count
        }
    }
    func set(_ j: Int, _ r: (update: [Float], samples: Int, loss: Double)) { lock.lock(); slots[j] = r; lock.unlock() }
    func fail(_ e: Error) { lock.lock(); if error == nil { error = e }; lock.unlock() }
    func results() throws -> [(update: [Float], samples: Int, loss: Double)] {
        if let error { throw error }
        return slots.map { $0! }
    }
}

/// Seeded selection shared by both round loops: every device is available with its probability;
/// `count` of the available devices are drawn (all of them if fewer), returned in ascending order.
func selectDevices(_ devices: [DeviceProfile], count: Int, rng: inout SplitMix64) -> [Int] {
    var available: [Int] = []
    for (i, d) in devices.enumerated() where Double(rng.nextUnitFloat()) < d.availability || d.availability >= 1 {
        available.append(i)
    }
    var i = available.count
    while i > 1 {
        let j = Int(rng.nextBelow(UInt64(i)))
        i -= 1
        available.swapAt(i, j)
    }
    return Array(available.prefix(count)).sorted()
}
