import Foundation
import FrugalData

/// What one device's local training produced (`FederatedTask.train`).
public struct LocalTrainingResult: Sendable {
    /// Local parameters − the parameters it started from (the task's layout).
    public var update: [Float]
    /// Samples processed.
    public var samples: Int
    /// Mean training loss of the local steps.
    public var loss: Double
    /// Compute actually done, in full-model sample equivalents: a sample that ran a fraction f of the
    /// model's work counts f. The device's compute time is `computePerSample × taskCost × work`.
    public var work: Double
    /// Peak tensor memory of the local training, bytes (measured, `MemoryStats`).
    public var peakMemoryBytes: Int
    /// Per layout segment: whether this device trained it this round (got a gradient at least once).
    public var trainedSegments: [Bool]
    /// Training progress the configurator is rewarded with (task-defined, e.g. loss decrease).
    public var progress: Double
    public init(update: [Float], samples: Int, loss: Double, work: Double, peakMemoryBytes: Int,
                trainedSegments: [Bool], progress: Double) {
        self.update = update; self.samples = samples; self.loss = loss; self.work = work
        self.peakMemoryBytes = peakMemoryBytes; self.trainedSegments = trainedSegments; self.progress = progress
    }
}

/// Test-set accuracy and loss of a parameter vector.
public struct TaskEvaluation: Sendable, Codable, Equatable {
    public var accuracy: Double
    public var loss: Double
    public init(accuracy: Double, loss: Double) { self.accuracy = accuracy; self.loss = loss }
}

/// A federated learning task beyond image classification: a flat trainable parameter vector
/// (e.g. LoRA adapters + head), one data partition per client, local training under a
/// task-specific configuration (e.g. a layer-dropout vector) and evaluation of a global vector.
public protocol FederatedTask: AnyObject {
    associatedtype Configuration: Sendable
    /// The trainable parameters that travel (names and sizes).
    var layout: TensorLayout { get }
    var clientCount: Int { get }
    /// The starting global parameters.
    func initialParameters() -> [Float]
    func sampleCount(client: Int) -> Int
    /// Seconds of one full-model training sample relative to the device profile's
    /// `computePerSample` (which is calibrated on a LeNet-sized model).
    var computeCost: Double { get }
    /// Training memory of `configuration` at `batchSize` (bytes; see the task for the model).
    func trainingMemory(_ configuration: Configuration, batchSize: Int) -> Int
    /// Trains `client` for `steps` steps from `start`.
    func train(client: Int, from start: [Float], configuration: Configuration, batchSize: Int, steps: Int,
               seed: UInt64) throws -> LocalTrainingResult
    func evaluate(_ parameters: [Float]) throws -> TaskEvaluation
}

/// Per-device configuration, personalisation and aggregation around a `FederatedTask`.
public protocol TaskStrategy: AnyObject {
    associatedtype Task: FederatedTask
    var name: String { get }
    /// The configuration for `device` this round, among those that fit its memory (`fits`); nil
    /// when none fits (the device sits the round out).
    func configure(device: Int, profile: DeviceProfile, round: Int, fits: (Task.Configuration) -> Bool) -> Task.Configuration?
    /// Short label of a configuration for logs.
    func label(_ configuration: Task.Configuration) -> String
    /// Segments a device downloads and uploads (e.g. not its personal layers).
    func sharedSegments(layout: TensorLayout) -> [Bool]
    /// The vector `device` starts from: the global one, with its personal segments if it has any.
    func start(device: Int, global: [Float], layout: TensorLayout) -> [Float]
    /// Feedback at the end of the round, for each device that trained: configuration, result, the
    /// device's seconds (compute + transfer), the round's seconds (the slowest device's) and the
    /// device's local parameters after training.
    func observe(device: Int, profile: DeviceProfile, configuration: Task.Configuration, result: LocalTrainingResult,
                 seconds: Double, roundSeconds: Double, local: [Float], layout: TensorLayout)
    /// A device that was configured but brought nothing back (a remote device that was late or
    /// gone): it gets no `observe` this round (e.g. a pending bandit choice is cancelled).
    func dropped(device: Int, profile: DeviceProfile, configuration: Task.Configuration)
    /// The strategy's state between rounds (for checkpoints); restored by `restoreState`.
    func saveState() -> StrategyState
    func restoreState(_ state: StrategyState, layout: TensorLayout) throws
}

extension TaskStrategy {
    public func dropped(device: Int, profile: DeviceProfile, configuration: Task.Configuration) {}
    public func saveState() -> StrategyState { StrategyState() }
    public func restoreState(_ state: StrategyState, layout: TensorLayout) throws {}
}

/// What one selected device is asked to do in a round of a `TaskSimulation`.
public struct TaskAssignment<Configuration> {
    public var round: Int
    public var device: Int
    public var configuration: Configuration
    /// The vector the device starts from (`TaskStrategy.start`). A remote transport sends only the
    /// shared segments: the device keeps its own non-shared (personal) segments.
    public var start: [Float]
    public var batchSize: Int
    public var steps: Int
    /// The loader seed (seed + round·1000003 + device·7919).
    public var seed: UInt64
    public init(round: Int, device: Int, configuration: Configuration, start: [Float], batchSize: Int, steps: Int, seed: UInt64) {
        self.round = round; self.device = device; self.configuration = configuration; self.start = start
        self.batchSize = batchSize; self.steps = steps; self.seed = seed
    }
}
extension TaskAssignment: Sendable where Configuration: Sendable {}

/// The seam between `TaskSimulation.runRound` and the devices (the task counterpart of
/// `RoundTransport`): the server side keeps selection, configuration, aggregation, `observe`, the
/// clock and the records; the transport only runs the selected devices' local training. Without
/// one (nil) the devices train here, in selection order.
public protocol TaskRoundTransport<Configuration>: AnyObject {
    associatedtype Configuration
    /// Runs one round's devices; one result per assignment, in the same order, nil for a device
    /// from which nothing usable arrived before the round closed (it counts as not trained).
    /// A result must have `layout.count` update entries, zero outside the `shared` segments.
    func exchange(_ assignments: [TaskAssignment<Configuration>], shared: [Bool], layout: TensorLayout) throws -> [LocalTrainingResult?]
}

/// One device's part in one round of a `TaskSimulation`.
public struct TaskDeviceRecord: Sendable, Codable, Equatable {
    public var device: Int
    public var profile: String
    /// The configuration's label, or nil when nothing fitted the device's memory.
    public var configuration: String?
    public var samples: Int
    public var work: Double
    public var bytesDown: Int, bytesUp: Int
    public var computeSeconds: Double, transferSeconds: Double, totalSeconds: Double, idleSeconds: Double
    /// Estimated training memory of the configuration and the measured peak.
    public var memoryBytes: Int, peakMemoryBytes: Int
    public var loss: Double
    public var progress: Double
}

/// One row per round of a `TaskSimulation`.
public struct TaskRoundRecord: Sendable, Codable, Equatable {
    public var round: Int
    public var participants: Int
    public var trained: Int
    public var accuracy: Double?
    public var testLoss: Double?
    public var bytes: Int, cumulativeTraffic: Int
    public var roundSeconds: Double, simulatedSeconds: Double
    public var idleSeconds: Double
    /// Largest measured peak training memory among this round's devices.
    public var peakMemoryBytes: Int
    public var devices: [TaskDeviceRecord]
}

/// The rows of a task run with its target bookkeeping.
public struct TaskSimulationResult: Sendable, Codable, Equatable {
    public var strategy: String
    public var rows: [TaskRoundRecord]
    public var targetAccuracy: Double?
    public var reached: TargetReached?
    public var finalAccuracy: Double?
    /// Largest measured peak training memory of any device over the run.
    public var peakMemoryBytes: Int
    /// Optional end-of-run evaluation on devices' own label mixes (e.g. personalised layers).
    public var personalised: PersonalisedEvaluation?
}

/// Test accuracy of the models devices would use, each weighted to the device's own label mix
/// (test samples of class c weigh the device's share of class c): the global model, and the
/// device's personalised model (global shared parts + its own personal parts).
public struct PersonalisedEvaluation: Sendable, Codable, Equatable {
    /// The devices evaluated.
    public var devices: [Int]
    /// Per device: the global model's accuracy on its mix.
    public var global: [Double]
    /// Per device: its personalised model's accuracy on its mix (the global one where it has no
    /// personal parts).
    public var personal: [Double]
    public init(devices: [Int], global: [Double], personal: [Double]) {
        self.devices = devices; self.global = global; self.personal = personal
    }
    public var meanGlobal: Double { global.reduce(0, +) / Double(max(global.count, 1)) }
    public var meanPersonal: Double { personal.reduce(0, +) / Double(max(personal.count, 1)) }
}

/// A synchronous federated simulation of a `FederatedTask`, with the same selection and clock as
/// `FederatedSimulation`: k available devices a round, each device's time = its compute on the work
/// it really did (`computePerSample × task.computeCost × work`) + dense float32 transfer of the
/// shared segments (down and up) over its links; the round ends at the slowest device. A device
/// whose every configuration exceeds its `memoryBytes` sits the round out. Each segment is averaged
/// over the devices that trained it this round, weighted by their samples.
public final class TaskSimulation<Strategy: TaskStrategy> {
    public typealias Task = Strategy.Task
    public let task: Task
    public let strategy: Strategy
    public let devices: [DeviceProfile]
    public let config: SimulationConfig
    public internal(set) var global: [Float]
    public internal(set) var round = 0
    public internal(set) var rows: [TaskRoundRecord] = []
    public internal(set) var reached: TargetReached?
    var rng: SplitMix64
    var clock = 0.0, traffic = 0, peak = 0
    /// Where the selected devices train (nil: here, in this process).
    public var transport: (any TaskRoundTransport<Task.Configuration>)?

    public init(task: Task, strategy: Strategy, devices: [DeviceProfile], config: SimulationConfig) throws {
        guard devices.count == task.clientCount else {
            throw FederatedError("the task has \(task.clientCount) clients but there are \(devices.count) devices")
        }
        for (i, d) in devices.enumerated() { try d.validate("device \(i)") }
        guard config.devicesPerRound >= 1 && config.devicesPerRound <= devices.count else {
            throw FederatedError("devicesPerRound \(config.devicesPerRound) must be in 1...\(devices.count)")
        }
        guard config.batchSize >= 1 else { throw FederatedError("batchSize \(config.batchSize) must be ≥ 1") }
        guard (config.localSteps ?? 1) >= 1 else { throw FederatedError("localSteps must be ≥ 1") }
        guard config.evalEvery >= 1 else { throw FederatedError("evalEvery \(config.evalEvery) must be ≥ 1") }
        self.task = task
        self.strategy = strategy
        self.devices = devices
        self.config = config
        self.global = task.initialParameters()
        self.rng = SplitMix64(seed: config.seed ^ 0x5E1E_C7ED)
    }

    func select() -> [Int] { selectDevices(devices, count: config.devicesPerRound, rng: &rng) }

    /// Runs one round and returns its row.
    @discardableResult
    public func runRound() throws -> TaskRoundRecord {
        round += 1
        let t = round, layout = task.layout
        let shared = strategy.sharedSegments(layout: layout)
        let sharedBytes = 4 * zip(layout.segments, shared).reduce(0) { $0 + ($1.1 ? $1.0.count : 0) }
        var recs: [TaskDeviceRecord] = []
        var sums = [Double](repeating: 0, count: layout.count)
        var weightPerSegment = [Double](repeating: 0, count: layout.segments.count)
        var feedback: [(device: Int, configuration: Task.Configuration, result: LocalTrainingResult, seconds: Double, start: [Float])] = []
        let batch = config.batchSize
        // Configure every selected device first (selection order), then train (here or remotely).
        var slots: [(device: Int, assignment: Int?)] = []
        var assignments: [TaskAssignment<Task.Configuration>] = []
        for d in select() {
            let p = devices[d]
            guard let c = strategy.configure(device: d, profile: p, round: t,
                                             fits: { self.task.trainingMemory($0, batchSize: batch) <= p.memoryBytes }) else {
                slots.append((d, nil))
                continue
            }
            let seed = config.seed &+ UInt64(t) &* 1_000_003 &+ UInt64(d) &* 7919
            slots.append((d, assignments.count))
            assignments.append(TaskAssignment(round: t, device: d, configuration: c, start: strategy.start(device: d, global: global, layout: layout),
                                              batchSize: batch, steps: config.localSteps ?? 1, seed: seed))
        }
        let results: [LocalTrainingResult?]
        if let transport {
            results = try transport.exchange(assignments, shared: shared, layout: layout)
            guard results.count == assignments.count else {
                throw FederatedError("the transport returned \(results.count) results for \(assignments.count) devices")
            }
        } else {
            results = try assignments.map { a in
                try task.train(client: a.device, from: a.start, configuration: a.configuration, batchSize: a.batchSize,
                               steps: a.steps, seed: a.seed)
            }
        }
        for (d, j) in slots {
            let p = devices[d]
            guard let j, let r = results[j] else {
                if let j { strategy.dropped(device: d, profile: p, configuration: assignments[j].configuration) }
                recs.append(TaskDeviceRecord(device: d, profile: p.name, configuration: nil, samples: 0, work: 0, bytesDown: 0,
                                             bytesUp: 0, computeSeconds: 0, transferSeconds: 0, totalSeconds: 0, idleSeconds: 0,
                                             memoryBytes: 0, peakMemoryBytes: 0, loss: 0, progress: 0))
                continue
            }
            let c = assignments[j].configuration, start = assignments[j].start
            guard r.update.count == layout.count, r.trainedSegments.count == layout.segments.count else {
                throw FederatedError("task returned an update of \(r.update.count) entries / \(r.trainedSegments.count) segments for a layout of \(layout.count) / \(layout.segments.count)")
            }
            let compute = p.computePerSample * task.computeCost * r.work
            let transfer = Double(sharedBytes) / p.downlinkBytesPerSecond + Double(sharedBytes) / p.uplinkBytesPerSecond
            if FloatScan.firstNonFinite(r.update) == nil {
                let w = Double(r.samples)
                for s in layout.segments.indices where shared[s] && r.trainedSegments[s] {
                    weightPerSegment[s] += w
                    for i in layout.range(s) { sums[i] += w * Double(r.update[i]) }
                }
            }
            feedback.append((d, c, r, compute + transfer, start))
            recs.append(TaskDeviceRecord(device: d, profile: p.name, configuration: strategy.label(c), samples: r.samples,
                                         work: r.work, bytesDown: sharedBytes, bytesUp: sharedBytes, computeSeconds: compute,
                                         transferSeconds: transfer, totalSeconds: compute + transfer, idleSeconds: 0,
                                         memoryBytes: task.trainingMemory(c, batchSize: batch),
                                         peakMemoryBytes: r.peakMemoryBytes, loss: r.loss, progress: r.progress))
        }
        for s in layout.segments.indices where weightPerSegment[s] > 0 {
            for i in layout.range(s) { global[i] += Float(sums[i] / weightPerSegment[s]) }
        }
        let roundTime = recs.map(\.totalSeconds).max() ?? 0
        for f in feedback {
            var local = f.start
            for i in local.indices { local[i] += f.result.update[i] }
            strategy.observe(device: f.device, profile: devices[f.device], configuration: f.configuration, result: f.result,
                             seconds: f.seconds, roundSeconds: roundTime, local: local, layout: layout)
        }
        var idle = 0.0
        for j in recs.indices where recs[j].configuration != nil {
            recs[j].idleSeconds = roundTime - recs[j].totalSeconds
            idle += recs[j].idleSeconds
        }
        let bytes = recs.reduce(0) { $0 + $1.bytesDown + $1.bytesUp }
        traffic += bytes
        clock += roundTime
        let roundPeak = recs.map(\.peakMemoryBytes).max() ?? 0
        peak = max(peak, roundPeak)
        var ev: TaskEvaluation? = nil
        if t % config.evalEvery == 0 || t == config.rounds { ev = try task.evaluate(global) }
        let row = TaskRoundRecord(round: t, participants: recs.count, trained: recs.filter { $0.configuration != nil }.count,
                                  accuracy: ev?.accuracy, testLoss: ev?.loss, bytes: bytes, cumulativeTraffic: traffic,
                                  roundSeconds: roundTime, simulatedSeconds: clock, idleSeconds: idle,
                                  peakMemoryBytes: roundPeak, devices: recs)
        rows.append(row)
        if reached == nil, let target = config.targetAccuracy, let a = ev?.accuracy, a >= target {
            reached = TargetReached(round: t, accuracy: a, traffic: traffic, simulatedSeconds: clock)
        }
        return row
    }

    /// Runs the remaining rounds up to `config.rounds`, calling `progress` after each.
    public func run(progress: (TaskRoundRecord) -> Void = { _ in }) throws -> TaskSimulationResult {
        while round < config.rounds { progress(try runRound()) }
        return result
    }

    public var result: TaskSimulationResult {
        TaskSimulationResult(strategy: strategy.name, rows: rows, targetAccuracy: config.targetAccuracy, reached: reached,
                             finalAccuracy: rows.last(where: { $0.accuracy != nil })?.accuracy, peakMemoryBytes: peak,
                             personalised: nil)
    }
}
