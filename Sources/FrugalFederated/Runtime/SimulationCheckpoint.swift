import Foundation
import FrugalNN

/// What a checkpoint stores besides the float arrays (JSON in the safetensors metadata).
struct SimulationState: Codable {
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
        let json = String(decoding: try JSONEncoder().encode(state), as: UTF8.self)
        var entries = [SafetensorsWriter.Tensor(name: "global", shape: [global.count], floats: global)]
        for key in st.arrays.keys.sorted() {
            let a = st.arrays[key]!
            entries.append(SafetensorsWriter.Tensor(name: "strategy." + key, shape: [a.count], floats: a))
        }
        try SafetensorsWriter.write(entries, metadata: [Self.stateKey: json], to: url)
    }

    /// Restores a run saved by `saveCheckpoint` into this freshly built simulation, which must
    /// have the same strategy, devices, model size and configuration (only `rounds` may grow).
    public func resume(from url: URL) throws {
        let file = try SafetensorsFile(url: url)
        let where_ = url.path
        guard let json = file.metadata[Self.stateKey] else {
            throw FederatedError("\(where_): not a federated-run checkpoint (no '\(Self.stateKey)' metadata)")
        }
        let state: SimulationState
        do { state = try JSONDecoder().decode(SimulationState.self, from: Data(json.utf8)) } catch {
            throw FederatedError("\(where_): unreadable run state: \(error)")
        }
        guard state.version == 1 else { throw FederatedError("\(where_): run-state version \(state.version), expected 1") }
        guard state.strategy == strategy.name else {
            throw FederatedError("\(where_): checkpoint of strategy '\(state.strategy)', this run uses '\(strategy.name)'")
        }
        guard state.devices == devices.count, state.parameters == layout.count else {
            throw FederatedError("\(where_): checkpoint has \(state.devices) devices and \(state.parameters) parameters, this run \(devices.count) and \(layout.count)")
        }
        var a = state.config, b = config
        a.rounds = 0; b.rounds = 0
        a.targetAccuracy = nil; b.targetAccuracy = nil
        guard a == b else { throw FederatedError("\(where_): the checkpoint's configuration differs from this run's (other than rounds and target)") }
        guard state.lastSync.count == devices.count, state.round >= 0, state.rows.count == state.round else {
            throw FederatedError("\(where_): inconsistent run state (round \(state.round), \(state.rows.count) rows)")
        }
        let g = try file.floats("global")
        guard g.count == layout.count else { throw FederatedError("\(where_): global model has \(g.count) entries, expected \(layout.count)") }
        var st = StrategyState(integers: state.strategyIntegers)
        for name in file.names where name.hasPrefix("strategy.") {
            st.arrays[String(name.dropFirst(9))] = try file.floats(name)
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
