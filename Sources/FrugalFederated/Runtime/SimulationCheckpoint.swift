import Foundation
import FrugalNN

/// What a checkpoint stores besides the float arrays (JSON in the safetensors metadata).
struct SimulationState: RunStateHeader {
    var version = 1
    var strategy: String
    var config: SimulationConfig
    var devices: Int
    var parameters: Int
    var round: Int
    var rows: [RoundRecord]
    var log: [String]
    var rng: UInt64
    /// Round of each device's last synchronisation, -1 for never.
    var lastSync: [Int]
    var cumulativeBytesDown: Int
    var cumulativeBytesUp: Int
    var clock: Double
    var cumulativeIdle: Double
    var reached: TargetReached?
    var strategyIntegers: [String: UInt64]
}

extension FederatedSimulation {
    static let stateKey = "frugal.fl.state"

    /// Writes the whole run state (global model, strategy state, clock, rows, RNG) atomically to
    /// a safetensors file, so that `resume(from:)` continues exactly where this run is.
    public func saveCheckpoint(to url: URL) throws {
        let st = strategy.saveState()
        let state = SimulationState(strategy: strategy.name, config: config, devices: devices.count, parameters: layout.count,
                                    round: round, rows: rows, log: log, rng: rng.state,
                                    lastSync: lastSync.map { $0 ?? -1 }, cumulativeBytesDown: cumDown,
                                    cumulativeBytesUp: cumUp, clock: clock, cumulativeIdle: cumIdle, reached: reached,
                                    strategyIntegers: st.integers)
        try RunCheckpointFile.write(state, key: Self.stateKey, global: global, strategy: st, to: url)
    }

    /// Restores a run saved by `saveCheckpoint` into this freshly built simulation, which must
    /// have the same strategy, devices, model size and configuration (only `rounds` may grow).
    public func resume(from url: URL) throws {
        let (state, g, st) = try RunCheckpointFile.read(SimulationState.self, key: Self.stateKey, kind: "federated-run", from: url,
                                                        strategy: strategy.name, devices: devices.count,
                                                        parameters: layout.count, config: config)
        guard state.lastSync.count == devices.count, state.rows.count == state.round else {
            throw FederatedError("\(url.path): inconsistent run state (round \(state.round), \(state.rows.count) rows)")
        }
        try strategy.restoreState(st, layout: layout)
        global = g
        round = state.round
        rows = state.rows
        log = state.log
        rng = SplitMix64(seed: state.rng)
        lastSync = state.lastSync.map { $0 < 0 ? nil : $0 }
        cumDown = state.cumulativeBytesDown
        cumUp = state.cumulativeBytesUp
        clock = state.clock
        cumIdle = state.cumulativeIdle
        reached = state.reached
        if reached == nil, let target = config.targetAccuracy {
            for r in rows { if let acc = r.accuracy, acc >= target { reached = TargetReached(round: r.round, accuracy: acc, traffic: r.cumulativeTraffic, simulatedSeconds: r.simulatedSeconds); break } }
        }
    }
}

/// The fields both round engines' run states share, checked the same way on resume.
protocol RunStateHeader: Codable {
    var version: Int { get }
    var strategy: String { get }
    var config: SimulationConfig { get }
    var devices: Int { get }
    var parameters: Int { get }
    var round: Int { get }
    var strategyIntegers: [String: UInt64] { get }
}

/// A run checkpoint of either round engine: one safetensors file (written atomically) with the
/// global vector ("global"), the strategy's non-empty arrays ("strategy.NAME") and the run state as
/// JSON metadata under the engine's key.
enum RunCheckpointFile {
    static func write<State: RunStateHeader>(_ state: State, key: String, global: [Float], strategy st: StrategyState,
                                             to url: URL) throws {
        let json = String(decoding: try JSONEncoder().encode(state), as: UTF8.self)
        var entries = [SafetensorsWriter.Tensor(name: "global", shape: [global.count], floats: global)]
        for name in st.arrays.keys.sorted() where !st.arrays[name]!.isEmpty {
            let a = st.arrays[name]!
            entries.append(SafetensorsWriter.Tensor(name: "strategy." + name, shape: [a.count], floats: a))
        }
        try SafetensorsWriter.write(entries, metadata: [key: json], to: url)
    }

    /// Reads a checkpoint and checks it against the run that resumes it: same strategy, device
    /// count, parameter count and configuration (other than rounds and target).
    static func read<State: RunStateHeader>(_: State.Type, key: String, kind: String, from url: URL, strategy: String,
                                            devices: Int, parameters: Int, config: SimulationConfig) throws
        -> (state: State, global: [Float], strategy: StrategyState) {
        let file = try SafetensorsFile(url: url)
        let where_ = url.path
        guard let json = file.metadata[key] else {
            throw FederatedError("\(where_): not a \(kind) checkpoint (no '\(key)' metadata)")
        }
        let state: State
        do { state = try JSONDecoder().decode(State.self, from: Data(json.utf8)) } catch {
            throw FederatedError("\(where_): unreadable run state: \(error)")
        }
        guard state.version == 1 else { throw FederatedError("\(where_): run-state version \(state.version), expected 1") }
        guard state.strategy == strategy else {
            throw FederatedError("\(where_): checkpoint of strategy '\(state.strategy)', this run uses '\(strategy)'")
        }
        guard state.devices == devices, state.parameters == parameters else {
            throw FederatedError("\(where_): checkpoint has \(state.devices) devices and \(state.parameters) parameters, this run \(devices) and \(parameters)")
        }
        var a = state.config, b = config
        a.rounds = 0; b.rounds = 0
        a.targetAccuracy = nil; b.targetAccuracy = nil
        guard a == b else { throw FederatedError("\(where_): the checkpoint's configuration differs from this run's (other than rounds and target)") }
        guard state.round >= 0 else { throw FederatedError("\(where_): inconsistent run state (round \(state.round))") }
        let g = try file.floats("global")
        guard g.count == parameters else { throw FederatedError("\(where_): global vector has \(g.count) entries, expected \(parameters)") }
        var st = StrategyState(integers: state.strategyIntegers)
        for name in file.names where name.hasPrefix("strategy.") { st.arrays[String(name.dropFirst(9))] = try file.floats(name) }
        return (state, g, st)
    }
}
