import Foundation
import FrugalFederated

/// One completed round, as the coordinator logs it.
public struct CoordinatedRound: Sendable {
    public var round: Int
    public var selected: Int
    public var accepted: Int
    public var accuracy: Double?
    public var bytesDown: Int
    public var bytesUp: Int
}

/// The round engine a `Coordinator` drives: `FederatedSimulation` (image classification, through
/// `RoundTransport`) or a `TaskEngine` (a `TaskSimulation`, e.g. DropPEFT, through
/// `TaskRoundTransport`). Either way the coordinator carries each selected device's download
/// stream and brings back checked upload streams.
public protocol CoordinatedEngine: AnyObject {
    var round: Int { get }
    var rounds: Int { get }
    var deviceCount: Int { get }
    var strategyName: String { get }
    /// The tensors of the run (sent at join; a device checks its own against them).
    var layout: TensorLayout { get }
    var global: [Float] { get }
    var lastAccuracy: Double? { get }
    /// Largest upload stream a device may send.
    var maxUploadBytes: Int { get }
    /// Samples of `device`'s partition.
    func samples(device: Int) -> Int
    /// The server's mirror of the model copy `device` holds (nil: none).
    func modelCopy(device: Int) -> [Float]?
    func forgetDevice(_ device: Int)
    /// Decodes and checks an upload stream of the open round (size, shape, finite values).
    func checkUpload(_ bytes: [UInt8], device: Int) -> (update: [Float]?, rejection: String?)
    /// Runs one round with `coordinator` carrying the devices' work.
    func runRound(via coordinator: Coordinator) throws -> CoordinatedRound
    func saveCheckpoint(to url: URL) throws
    func resume(from url: URL) throws
}

extension FederatedSimulation: CoordinatedEngine {
    public var rounds: Int { config.rounds }
    public var deviceCount: Int { devices.count }
    public var strategyName: String { strategy.name }
    public var lastAccuracy: Double? { rows.last(where: { $0.accuracy != nil })?.accuracy }
    public var maxUploadBytes: Int { WireLimits.maxUploadBytes(parameters: layout.count, segments: layout.segments.count) }
    public func samples(device: Int) -> Int { dataSummary(device: device).samples }
    public func modelCopy(device: Int) -> [Float]? { strategy.modelCopy(device: device) }
    public func forgetDevice(_ device: Int) { strategy.forgetDevice(device) }
    public func runRound(via coordinator: Coordinator) throws -> CoordinatedRound {
        transport = coordinator
        let r = try runRound()
        return CoordinatedRound(round: r.round, selected: r.participants, accepted: r.accepted, accuracy: r.accuracy,
                                bytesDown: r.bytesDown, bytesUp: r.bytesUp)
    }
}
