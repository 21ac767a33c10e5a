import Foundation
import FrugalNN

/// What a `TaskSimulation` checkpoint stores besides the float arrays (JSON in the safetensors metadata).
struct TaskSimulationState: RunStateHeader {
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
        try RunCheckpointFile.write(state, key: Self.stateKey, global: global, strategy: st, to: url)
    }

    /// Restores a run saved by `saveCheckpoint` into this freshly built simulation (same strategy,
    /// devices, parameter count and configuration; only `rounds` and the target may differ).
    public func resume(from url: URL) throws {
        let (state, g, st) = try RunCheckpointFile.read(TaskSimulationState.self, key: Self.stateKey, kind: "task-run", from: url,
                                                        strategy: strategy.name, devices: devices.count,
                                                        parameters: global.count, config: config)
        guard state.rows.count == state.round else {
            throw FederatedError("\(url.path): inconsistent run state (round \(state.round), \(state.rows.count) rows)")
        }
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
