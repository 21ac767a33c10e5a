import Foundation
import FrugalNN

/// What a `TaskSimulation` checkpoint stores besides the float arrays (JSON in the safetensors metadata).
struct TaskSimulationState: Codable {
    var version = 1
    var strategy: String
    var config: SimulationConfig
    var devices: Int
    var parameters: Int
    var round: Int
    var rows: [TaskRoundRecord]
    var rng: UInt64
    var clock: Double
    var traffic: Int
    var peak: Int
    var reached: TargetReached?
    var strategyIntegers: [String: UInt64]
}

extension TaskSimulation {
    static var stateKey: String { "frugal.task.state" }

    /// Writes the run state (global vector, the strategy's `saveState`, clock, rows, selection RNG)
    /// atomically to a safetensors file, so that `resume(from:)` continues where this run is.
    public func saveCheckpoint(to url: URL) throws {
        let st = strategy.saveState()
        let state = TaskSimulationState(strategy: strategy.name, config: config, devices: devices.count, parameters: global.count,
                                        round: round, rows: rows, rng: rng.state, clock: clock, traffic: traffic, peak: peak,
                                        reached: reached, strategyIntegers: st.integers)
        let json = String(decoding: try JSONEncoder().encode(state), as: UTF8.self)
        var entries = [SafetensorsWriter.Tensor(name: "global", shape: [global.count], floats: global)]
        for key in st.arrays.keys.sorted() where !st.arrays[key]!.isEmpty {
            let a = st.arrays[key]!
            entries.append(SafetensorsWriter.Tensor(name: "strategy." + key, shape: [a.count], floats: a))
        }
        try SafetensorsWriter.write(entries, metadata: [Self.stateKey: json], to: url)
    }

    /// Restores a run saved by `saveCheckpoint` into this freshly built simulation (same strategy,
    /// devices, parameter count and configuration; only `rounds` and the target may differ).
    public func resume(from url: URL) throws {
        let file = try SafetensorsFile(url: url)
        let where_ = url.path
        guard let json = file.metadata[Self.stateKey] else {
            throw FederatedError("\(where_): not a task-run checkpoint (no '\(Self.stateKey)' metadata)")
        }
        let state: TaskSimulationState
        do { state = try JSONDecoder().decode(TaskSimulationState.self, from: Data(json.utf8)) } catch {
            throw FederatedError("\(where_): unreadable run state: \(error)")
        }
        guard state.version == 1 else { throw FederatedError("\(where_): run-state version \(state.version), expected 1") }
        guard state.strategy == strategy.name else {
            throw FederatedError("\(where_): checkpoint of strategy '\(state.strategy)', this run uses '\(strategy.name)'")
        }
        guard state.devices == devices.count, state.parameters == global.count else {
            throw FederatedError("\(where_): checkpoint has \(state.devices) devices and \(state.parameters) parameters, this run \(devices.count) and \(global.count)")
        }
        var a = state.config, b = config
        a.rounds = 0; b.rounds = 0
        a.targetAccuracy = nil; b.targetAccuracy = nil
        guard a == b else { throw FederatedError("\(where_): the checkpoint's configuration differs from this run's (other than rounds and target)") }
        guard state.round >= 0, state.rows.count == state.round else {
            throw FederatedError("\(where_): inconsistent run state (round \(state.round), \(state.rows.count) rows)")
        }
        let g = try file.floats("global")
        guard g.count == global.count else { throw FederatedError("\(where_): global vector has \(g.count) entries, expected \(global.count)") }
        var st = StrategyState(integers: state.strategyIntegers)
        for name in file.names where name.hasPrefix("strategy.") { st.arrays[String(name.dropFirst(9))] = try file.floats(name) }
        try strategy.restoreState(st, layout: task.layout)
        global = g
        round = state.round
        rows = state.rows
        rng = SplitMix64(seed: state.rng)
        clock = state.clock
        traffic = state.traffic
        peak = state.peak
        reached = state.reached
    }
}
