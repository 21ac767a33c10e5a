// The seam between the round engine and the devices.
//
// `FederatedSimulation.runRound` is the one round loop of the project: it selects devices, lets the
// strategy encode each download (and mirror the device's decode), plans batch sizes, hands the
// assignments to a transport, then checks the uploads that came back, aggregates them in selection
// order and keeps the clock, the records and the checkpoint state. Only the transport differs:
//   - no transport (nil): simulated devices train here, in this process (`DeviceRound`);
//   - a remote transport (FrugalFederatedRPC's coordinator): the same assignments travel over gRPC
//     to `frugal fl join` processes, which run the same `DeviceRound` routine on their own copy of
//     the strategy, and the transport returns what arrived before the round closed.
// `TaskSimulation.runRound` (DropPEFT and other `FederatedTask`s) has the same seam,
// `TaskRoundTransport` (FederatedTask.swift).

/// What one selected device is asked to do in a round.
public struct DeviceAssignment: Sendable {
    public var round: Int
    public var device: Int
    /// The encoded download stream (the bytes counted as traffic and sent on the socket).
    public var download: [UInt8]
    /// The model the device starts from: the server's mirror of the device's decode (filled only
    /// for simulated devices, which share the strategy object with the server).
    public var start: [Float]?
    public var batchSize: Int
    /// The strategy's per-device upload settings (`FederatedStrategy.uploadSettings`).
    public var uploadSettings: [String: Double]
    /// Rounds since the device last synchronised (nil: never).
    public var staleness: Int?
    public init(round: Int, device: Int, download: [UInt8], start: [Float]?, batchSize: Int,
                uploadSettings: [String: Double], staleness: Int?) {
        self.round = round; self.device = device; self.download = download; self.start = start
        self.batchSize = batchSize; self.uploadSettings = uploadSettings; self.staleness = staleness
    }
}

/// What came back from a device for its assignment.
public enum DeviceOutcome: Sendable {
    /// An upload stream, not yet checked by the server.
    case upload(bytes: [UInt8], samples: Int, loss: Double)
    /// An upload the transport already checked with `FederatedSimulation.checkUpload` and accepted
    /// (the decoded update, the stream length).
    case checked(update: [Float], bytes: Int, samples: Int, loss: Double)
    /// The device's update was refused before it was used (by the device itself, e.g. non-finite
    /// values, or by the transport, e.g. an oversized stream); `bytes` counts what was received.
    case refused(reason: String, bytes: Int, samples: Int, loss: Double)
}

/// Carries a round's assignments to the devices and brings back their outcomes.
public protocol RoundTransport: AnyObject {
    /// Runs the devices of one round; returns one outcome per assignment, in the same order, nil
    /// for a device from which nothing (usable) arrived before the round closed. It may call
    /// `engine.checkUpload` (never concurrently with itself) while the engine waits for it.
    func exchange(_ assignments: [DeviceAssignment], engine: FederatedSimulation) throws -> [DeviceOutcome?]
}
