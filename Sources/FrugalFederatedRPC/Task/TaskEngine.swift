import Foundation
import FrugalFederated

/// A `TaskSimulation` (e.g. DropPEFT on a text task) behind a `Coordinator`: the simulation keeps
/// selection, `configure` (the bandit stays on the server), `start`, aggregation, `observe`, the
/// clock and the records; this class is its `TaskRoundTransport`, turning each assignment into a
/// `TaskWire` download stream for the coordinator and each checked upload back into a
/// `LocalTrainingResult`. A device that did not answer in time counts as not trained.
///
/// Traffic: the rows count the shared segments (4 bytes an entry) each way, which are the model
/// bytes on the wire; the streams add a small header (`TaskWire`), which the coordinator's
/// byte counters and metrics include.
public final class TaskEngine<Strategy: TaskStrategy>: CoordinatedEngine, TaskRoundTransport
where Strategy.Task.Configuration: Codable {
    public typealias Configuration = Strategy.Task.Configuration
    public let simulation: TaskSimulation<Strategy>
    public let shared: [Bool]
    weak var coordinator: Coordinator?
    /// Results checked in the open round, by device (the coordinator calls `checkUpload` under its
    /// lock while the engine thread waits in `exchange`).
    var checked: [Int: LocalTrainingResult] = [:]
    var openRound = 0
    /// Most samples each device of the open round can have processed (batch × steps): the sample
    /// count weighs its update, so a larger claim is rejected.
    var sampleLimit: [Int: Int] = [:]

    public init(_ simulation: TaskSimulation<Strategy>) {
        self.simulation = simulation
        shared = simulation.strategy.sharedSegments(layout: simulation.task.layout)
    }

    public var round: Int { simulation.round }
    public var rounds: Int { simulation.config.rounds }
    public var deviceCount: Int { simulation.devices.count }
    public var strategyName: String { simulation.strategy.name }
    public var layout: TensorLayout { simulation.task.layout }
    public var global: [Float] { simulation.global }
    public var lastAccuracy: Double? { simulation.rows.last(where: { $0.accuracy != nil })?.accuracy }
    public var maxUploadBytes: Int { TaskWire.resultBytes(layout, shared) }
    public func samples(device: Int) -> Int { simulation.task.sampleCount(client: device) }
    /// Task devices hold no server-mirrored model copy (they start from each download).
    public func modelCopy(device: Int) -> [Float]? { nil }
    public func forgetDevice(_ device: Int) {}

    public func checkUpload(_ bytes: [UInt8], device: Int) -> (update: [Float]?, rejection: String?) {
        do {
            let r = try TaskWire.decodeResult(bytes, round: openRound, device: device, layout: layout, shared: shared)
            let limit = sampleLimit[device] ?? 0
            guard r.samples <= limit else {
                return (nil, "task result claims \(r.samples) samples, the assignment allows at most \(limit) (batch × steps)")
            }
            checked[device] = r
            return (r.update, nil)
        } catch {
            return (nil, "\(error)")
        }
    }

    public func runRound(via coordinator: Coordinator) throws -> CoordinatedRound {
        self.coordinator = coordinator
        simulation.transport = self
        defer { simulation.transport = nil }
        let row = try simulation.runRound()
        return CoordinatedRound(round: row.round, selected: row.participants, accepted: row.trained, accuracy: row.accuracy,
                                bytesDown: row.devices.reduce(0) { $0 + $1.bytesDown }, bytesUp: row.devices.reduce(0) { $0 + $1.bytesUp })
    }

    public func exchange(_ assignments: [TaskAssignment<Configuration>], shared: [Bool], layout: TensorLayout) throws -> [LocalTrainingResult?] {
        guard let coordinator else { throw DeploymentError("task engine: no coordinator") }
        checked = [:]
        openRound = simulation.round
        sampleLimit = Dictionary(assignments.map { ($0.device, $0.batchSize * $0.steps) }, uniquingKeysWith: { a, _ in a })
        let streams = try assignments.map { a in
            DeviceAssignment(round: a.round, device: a.device, download: try TaskWire.encode(a, layout: layout, shared: shared), start: nil,
                             batchSize: a.batchSize, uploadSettings: [:], staleness: nil)
        }
        let outcomes = try coordinator.exchange(streams)
        return zip(assignments, outcomes).map { a, o in
            if case .checked? = o { return checked[a.device] }
            return nil
        }
    }

    public func saveCheckpoint(to url: URL) throws { try simulation.saveCheckpoint(to: url) }
    public func resume(from url: URL) throws { try simulation.resume(from: url) }
}

/// The device half of a task run (`fl join` for a PEFT run): decodes its assignment, trains its
/// own partition with the task's `train` (the routine the simulator runs), encodes the result.
/// It keeps its non-shared (personal) segments between rounds: each round starts from the
/// download's shared segments and its own personal ones, as the simulator's `start` does.
public final class TaskDevice<Strategy: TaskStrategy>: TaskWorker where Strategy.Task.Configuration: Codable {
    public let task: Strategy.Task
    public let device: Int
    public let shared: [Bool]
    /// The device's vector: the last download's shared segments, its own personal segments.
    var local: [Float]

    /// `strategy` is only asked which segments are shared.
    public init(task: Strategy.Task, strategy: Strategy, device: Int) throws {
        guard device >= 0, device < task.clientCount else { throw DeploymentError("device \(device) is not in this task's \(task.clientCount) clients") }
        self.task = task
        self.device = device
        shared = strategy.sharedSegments(layout: task.layout)
        local = task.initialParameters()
    }

    public var layout: TensorLayout { task.layout }
    public var samples: Int { task.sampleCount(client: device) }
    public func saveState() -> StrategyState { StrategyState(arrays: ["local": local]) }
    public func restoreState(_ state: StrategyState) throws {
        guard let v = state.arrays["local"] else { return }
        guard v.count == layout.count else { throw DeploymentError("device state: vector of \(v.count) entries, the task has \(layout.count)") }
        local = v
    }

    public func work(round: Int, download: [UInt8]) throws -> (bytes: [UInt8], samples: Int, loss: Double) {
        let a = try TaskWire.decodeAssignment(download, as: Strategy.Task.Configuration.self, layout: layout, shared: shared, device: device)
        guard a.round == round else { throw DeploymentError("task assignment of round \(a.round) in round \(round)") }
        var start = local
        for s in layout.segments.indices where shared[s] { for i in layout.range(s) { start[i] = a.start[i] } }
        let r = try task.train(client: device, from: start, configuration: a.configuration, batchSize: a.batchSize, steps: a.steps, seed: a.seed)
        guard r.update.count == layout.count, r.trainedSegments.count == layout.segments.count else {
            throw DeploymentError("local training returned \(r.update.count) entries / \(r.trainedSegments.count) segments for \(layout.count) / \(layout.segments.count)")
        }
        local = start
        for s in layout.segments.indices where !shared[s] { for i in layout.range(s) { local[i] = start[i] + r.update[i] } }
        return (TaskWire.encode(r, round: a.round, device: device, layout: layout, shared: shared), r.samples, r.loss)
    }
}

/// What `DeviceClient` runs for a task run (see `TaskDevice`).
public protocol TaskWorker: AnyObject {
    var layout: TensorLayout { get }
    /// Samples of the device's partition (checked against the server's).
    var samples: Int { get }
    func saveState() -> StrategyState
    func restoreState(_ state: StrategyState) throws
    /// Decodes the round's download, trains, returns the upload stream.
    func work(round: Int, download: [UInt8]) throws -> (bytes: [UInt8], samples: Int, loss: Double)
}
