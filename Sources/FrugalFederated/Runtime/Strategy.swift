/// What a strategy learns about the devices selected for a round before it encodes anything.
public struct RoundContext: Sendable {
    /// Round number, starting at 1.
    public var round: Int
    /// Indices of the selected devices.
    public var devices: [Int]
    /// Their profiles.
    public var profiles: [DeviceProfile]
    /// Per-class sample counts of each selected device.
    public var labelCounts: [[Int]]
    /// Per-class sample counts of all devices together.
    public var globalLabelCounts: [Int]
    /// Rounds since each selected device last synchronised (nil: never).
    public var staleness: [Int?]
}

/// A federated-learning strategy: how the server sends the model to each device, how a device
/// sends its update back, per-device batch sizes, and how the server aggregates.
///
/// The simulation calls, per round: `prepare`, then for every selected device `encodeDownload`
/// (server) and `decodeDownload` (device), then `batchSizes`, local training, `encodeUpload`
/// (device), `decodeUpload` (server) and finally `aggregate`. Strategies keep per-device state
/// (error-feedback residuals, the stale model copy the server mirrors), so they are classes.
public protocol FederatedStrategy: AnyObject {
    /// Short name for logs and tables.
    var name: String { get }
    /// Called once per round before anything is encoded.
    func prepare(_ context: RoundContext, layout: TensorLayout) throws
    /// Server: the download stream for `device` (staleness δ, nil if never synchronised).
    func encodeDownload(global: [Float], device: Int, staleness: Int?, round: Int, layout: TensorLayout) throws -> [UInt8]
    /// Device: rebuilds the model from the stream (and its own copy); the server mirrors it.
    func decodeDownload(_ bytes: [UInt8], device: Int, layout: TensorLayout) throws -> [Float]
    /// Per-device batch sizes for the selected devices (same order as `context.devices`).
    func batchSizes(_ context: RoundContext, bytesDown: [Int], defaultBatch: Int, localSteps: Int?,
                    layout: TensorLayout) throws -> [Int]
    /// Device: the upload stream for its update (local model − model it started from).
    func encodeUpload(_ update: [Float], device: Int, layout: TensorLayout) throws -> [UInt8]
    /// Server: decodes a device's upload.
    func decodeUpload(_ bytes: [UInt8], device: Int, layout: TensorLayout) throws -> [Float]
    /// Server: the new global model from the accepted updates and their weights.
    func aggregate(global: [Float], updates: [[Float]], weights: [Double]) -> [Float]
    /// Server: what `device` must know to encode its upload this round the way the server will
    /// decode it (called after `prepare`), e.g. Caesar's upload ratio. It travels to a remote
    /// device with its download; a simulated device reads it from the same object.
    func uploadSettings(device: Int) -> [String: Double]
    /// Device: takes the server's upload settings before `encodeUpload`; throws when they are
    /// missing or out of range.
    func applyUploadSettings(_ settings: [String: Double], device: Int) throws
    /// The model copy held for `device`: the device's own on the device, the server's mirror of
    /// it on the server (nil when none).
    func modelCopy(device: Int) -> [Float]?
    /// Server: forgets its mirror of `device` (the device lost its state), so that the device's
    /// next download does not depend on a copy it no longer holds.
    func forgetDevice(_ device: Int)
    /// Everything the strategy carries from round to round (device copies, error-feedback
    /// residuals, codec RNGs), for checkpoints.
    func saveState() -> StrategyState
    /// Restores what `saveState` returned; throws when it does not fit this strategy or layout.
    func restoreState(_ state: StrategyState, layout: TensorLayout) throws
}

/// A strategy's round-to-round state: named float arrays (device copies, residuals) and
/// named integers (RNG states, counters). Checkpoints store the arrays as tensors.
public struct StrategyState: Sendable, Equatable {
    public var arrays: [String: [Float]] = [:]
    public var integers: [String: UInt64] = [:]
    public init(arrays: [String: [Float]] = [:], integers: [String: UInt64] = [:]) {
        self.arrays = arrays
        self.integers = integers
    }

    /// Stores per-device codec states under `prefix.<device>`.
    mutating func put(_ states: [Int: CodecState], prefix: String) {
        for (d, s) in states {
            if !s.residual.isEmpty { arrays["\(prefix).\(d).residual"] = s.residual }
            integers["\(prefix).\(d).rng"] = s.rng.state
            integers["\(prefix).\(d).rounds"] = UInt64(s.rounds)
        }
    }

    /// Reads per-device codec states stored by `put`.
    func codecStates(prefix: String, layout: TensorLayout) throws -> [Int: CodecState] {
        var out: [Int: CodecState] = [:]
        for (key, v) in integers where key.hasPrefix(prefix + ".") && key.hasSuffix(".rng") {
            let mid = key.dropFirst(prefix.count + 1).dropLast(4)
            guard let d = Int(mid) else { throw FederatedError("strategy state: bad key '\(key)'") }
            var s = CodecState(seed: 0)
            s.rng.state = v
            s.rounds = Int(integers["\(prefix).\(d).rounds"] ?? 0)
            if let r = arrays["\(prefix).\(d).residual"] {
                guard r.count == layout.count else {
                    throw FederatedError("strategy state: residual of device \(d) has \(r.count) entries, the model has \(layout.count)")
                }
                s.residual = r
            }
            out[d] = s
        }
        return out
    }

    /// Reads device copies stored under `copy.<device>`.
    func copies(layout: TensorLayout) throws -> [Int: [Float]] {
        var out: [Int: [Float]] = [:]
        for (key, v) in arrays where key.hasPrefix("copy.") {
            guard let d = Int(key.dropFirst(5)) else { throw FederatedError("strategy state: bad key '\(key)'") }
            guard v.count == layout.count else {
                throw FederatedError("strategy state: copy of device \(d) has \(v.count) entries, the model has \(layout.count)")
            }
            out[d] = v
        }
        return out
    }
}

extension FederatedStrategy {
    public func prepare(_ context: RoundContext, layout: TensorLayout) throws {}

    public func batchSizes(_ context: RoundContext, bytesDown: [Int], defaultBatch: Int, localSteps: Int?,
                           layout: TensorLayout) throws -> [Int] {
        [Int](repeating: defaultBatch, count: context.devices.count)
    }

    /// w ← w + Σ_i (n_i / Σn) · Δ_i (weights are sample counts); unchanged when nothing was accepted.
    public func aggregate(global: [Float], updates: [[Float]], weights: [Double]) -> [Float] {
        weightedAverageStep(global: global, updates: updates, weights: weights)
    }

    public func saveState() -> StrategyState { StrategyState() }
    public func restoreState(_ state: StrategyState, layout: TensorLayout) throws {}
    public func uploadSettings(device: Int) -> [String: Double] { [:] }
    public func applyUploadSettings(_ settings: [String: Double], device: Int) throws {}
    public func modelCopy(device: Int) -> [Float]? { nil }
    public func forgetDevice(_ device: Int) {}
}

/// w + Σ_i (weights_i / Σ weights) · updates_i (w itself when there is nothing to add).
public func weightedAverageStep(global: [Float], updates: [[Float]], weights: [Double]) -> [Float] {
    let total = weights.reduce(0, +)
    guard !updates.isEmpty, total > 0 else { return global }
    var out = global
    let n = out.count
    out.withUnsafeMutableBufferPointer { o in
        for (u, w) in zip(updates, weights) where u.count == n {
            let f = Float(w / total)
            u.withUnsafeBufferPointer { ub in
                for i in 0 ..< n { o[i] += f * ub[i] }
            }
        }
    }
    return out
}

/// Dense downloads and the copy of the model each device holds (mirrored by the server).
public class DeviceCopies {
    /// The model copy each device holds after its last download (the server's mirror).
    public internal(set) var copies: [Int: [Float]] = [:]
    public init() {}

    /// The device copies as `copy.<device>` arrays.
    public func saveState() -> StrategyState {
        var s = StrategyState()
        for (d, c) in copies { s.arrays["copy.\(d)"] = c }
        return s
    }

    public func restoreState(_ state: StrategyState, layout: TensorLayout) throws {
        copies = try state.copies(layout: layout)
    }

    public func modelCopy(device: Int) -> [Float]? { copies[device] }
    public func forgetDevice(_ device: Int) { copies[device] = nil }
}

/// FedAvg: dense float32 downloads and uploads, sample-weighted averaging. Downloads never depend
/// on what a device held before, so no device copy is kept (on either side).
public final class FedAvgStrategy: DeviceCopies, FederatedStrategy {
    public let name = "fedavg"
    let dense = DenseCodec()
    public override init() {}

    public func encodeDownload(global: [Float], device: Int, staleness: Int?, round: Int, layout: TensorLayout) throws -> [UInt8] {
        try dense.encode(global, layout: layout)
    }
    public func decodeDownload(_ bytes: [UInt8], device: Int, layout: TensorLayout) throws -> [Float] {
        try dense.decode(bytes, layout: layout)
    }
    public func encodeUpload(_ update: [Float], device: Int, layout: TensorLayout) throws -> [UInt8] {
        try dense.encode(update, layout: layout)
    }
    public func decodeUpload(_ bytes: [UInt8], device: Int, layout: TensorLayout) throws -> [Float] {
        try dense.decode(bytes, layout: layout)
    }
}

/// Compressed uploads with any `UpdateCodec` (top-k, random-k, QSGD, signSGD, STC), with the
/// codec's error-feedback residual kept per device across rounds; dense downloads, or, with
/// `downloadCodec`, the aggregated update compressed by the server too (`CompressedBroadcast`:
/// STC in both directions as published, or top-k both ways).
public final class CompressedStrategy: DeviceCopies, FederatedStrategy {
    public let name: String
    public let codec: any UpdateCodec
    let dense = DenseCodec()
    let seed: UInt64
    /// Upload codec state (error-feedback residual, RNG) per device.
    public internal(set) var uploadStates: [Int: CodecState] = [:]
    /// The server-side compression of downloads (nil: dense downloads).
    public let broadcast: CompressedBroadcast?
    var layoutForAggregate: TensorLayout?

    public init(codec: any UpdateCodec, downloadCodec: (any UpdateCodec)? = nil, seed: UInt64 = 0) {
        self.codec = codec
        self.seed = seed
        self.broadcast = downloadCodec.map { CompressedBroadcast(codec: $0, seed: seed) }
        self.name = "\(codec.codecID)" + (downloadCodec == nil ? "" : "+down")
    }

    public func prepare(_ context: RoundContext, layout: TensorLayout) throws { layoutForAggregate = layout }

    public func encodeDownload(global: [Float], device: Int, staleness: Int?, round: Int, layout: TensorLayout) throws -> [UInt8] {
        if let broadcast { return try broadcast.encode(global: global, device: device, layout: layout) }
        return try dense.encode(global, layout: layout)
    }
    public func decodeDownload(_ bytes: [UInt8], device: Int, layout: TensorLayout) throws -> [Float] {
        let w = try broadcast.map { try $0.decode(bytes, copy: copies[device], device: device, layout: layout) }
            ?? dense.decode(bytes, layout: layout)
        copies[device] = w
        return w
    }
    public func encodeUpload(_ update: [Float], device: Int, layout: TensorLayout) throws -> [UInt8] {
        var state = uploadStates[device] ?? CodecState(seed: seed &+ UInt64(device) &* 0x9E37_79B9_7F4A_7C15)
        let bytes = try codec.encode(update, layout: layout, state: &state)
        uploadStates[device] = state
        return bytes
    }
    public func decodeUpload(_ bytes: [UInt8], device: Int, layout: TensorLayout) throws -> [Float] {
        try codec.decode(bytes, layout: layout)
    }
    public func aggregate(global: [Float], updates: [[Float]], weights: [Double]) -> [Float] {
        guard let broadcast, let layout = layoutForAggregate, !updates.isEmpty else {
            return weightedAverageStep(global: global, updates: updates, weights: weights)
        }
        // The codecs reject only malformed input; the mean of validated, finite updates of the
        // layout's size is well formed, so a failure here is a bug, not bad input: never average
        // something else in silently.
        do { return try broadcast.aggregate(global: global, updates: updates, weights: weights, layout: layout) } catch {
            preconditionFailure("CompressedStrategy: encoding the aggregated update failed: \(error)")
        }
    }

    public override func forgetDevice(_ device: Int) {
        super.forgetDevice(device)
        broadcast?.applied[device] = nil
    }

    public override func saveState() -> StrategyState {
        var s = super.saveState()
        s.put(uploadStates, prefix: "up")
        broadcast?.save(into: &s)
        return s
    }

    public override func restoreState(_ state: StrategyState, layout: TensorLayout) throws {
        try super.restoreState(state, layout: layout)
        uploadStates = try state.codecStates(prefix: "up", layout: layout)
        try broadcast?.restore(state, layout: layout)
    }
}

/// Caesar: staleness-aware download compression, importance-aware top-k uploads (with error
/// feedback per device) and per-device batch sizes; each switch can be turned off (dense
/// download, dense upload, the default batch size).
public final class CaesarStrategy: DeviceCopies, FederatedStrategy {
    public let name = "caesar"
    public var compressDownload: Bool
    public var compressUpload: Bool
    public var planBatchSizes: Bool
    public var download: DownloadCompression
    public var upload: UploadCompression
    /// Batch grid for planning; its `localSteps` is replaced by the simulation's.
    public var planner: BatchSizePlanner
    let dense = DenseCodec()
    let seed: UInt64
    /// Upload ratio per device for the current round.
    public internal(set) var uploadRatios: [Int: Double] = [:]
    public internal(set) var uploadStates: [Int: CodecState] = [:]
    /// The last batch plan (nil when batch planning is off).
    public internal(set) var lastPlan: BatchPlan?

    public init(download: Bool = true, upload: Bool = true, batchSizes: Bool = true,
                downloadCompression: DownloadCompression = DownloadCompression(),
                uploadCompression: UploadCompression = UploadCompression(),
                planner: BatchSizePlanner = BatchSizePlanner(minBatch: 8, maxBatch: 64, batchStep: 8, localSteps: 1),
                seed: UInt64 = 0) {
        compressDownload = download
        compressUpload = upload
        planBatchSizes = batchSizes
        self.download = downloadCompression
        self.upload = uploadCompression
        self.planner = planner
        self.seed = seed
    }

    public func prepare(_ context: RoundContext, layout: TensorLayout) throws {
        uploadRatios = [:]
        guard compressUpload, !context.devices.isEmpty else { return }
        let plan = try upload.plan(labelCounts: context.labelCounts, globalCounts: context.globalLabelCounts)
        for (j, d) in context.devices.enumerated() { uploadRatios[d] = plan.ratio[j] }
    }

    public func encodeDownload(global: [Float], device: Int, staleness: Int?, round: Int, layout: TensorLayout) throws -> [UInt8] {
        guard compressDownload else { return try dense.encode(global, layout: layout) }
        let stale = copies[device]
        return try download.encode(global: global, stale: stale, staleness: stale == nil ? nil : staleness,
                                   round: round, layout: layout)
    }

    public func decodeDownload(_ bytes: [UInt8], device: Int, layout: TensorLayout) throws -> [Float] {
        let w = compressDownload ? try DownloadCompression.decode(bytes, stale: copies[device], layout: layout)
                                 : try dense.decode(bytes, layout: layout)
        copies[device] = w
        return w
    }

    public func batchSizes(_ context: RoundContext, bytesDown: [Int], defaultBatch: Int, localSteps: Int?,
                           layout: TensorLayout) throws -> [Int] {
        lastPlan = nil
        guard planBatchSizes else { return [Int](repeating: defaultBatch, count: context.devices.count) }
        guard let steps = localSteps else {
            throw FederatedError("Caesar batch-size planning needs a fixed number of local steps (localSteps), not epochs")
        }
        var p = planner
        p.localSteps = steps
        let up = context.devices.map { d in
            compressUpload ? upload.codec(ratio: uploadRatios[d] ?? upload.thetaMax).estimatedSize(layout) : dense.estimatedSize(layout)
        }
        let plan = try p.plan(profiles: context.profiles.map(\.timeProfile), bytesDown: bytesDown, bytesUp: up)
        lastPlan = plan
        return plan.batchSizes
    }

    public func encodeUpload(_ update: [Float], device: Int, layout: TensorLayout) throws -> [UInt8] {
        guard compressUpload else { return try dense.encode(update, layout: layout) }
        let codec = upload.codec(ratio: uploadRatios[device] ?? upload.thetaMax)
        var state = uploadStates[device] ?? CodecState(seed: seed &+ UInt64(device) &* 0x9E37_79B9_7F4A_7C15)
        let bytes = try codec.encode(update, layout: layout, state: &state)
        uploadStates[device] = state
        return bytes
    }

    /// The planned upload ratio ("ratio") of `device`, when uploads are compressed.
    public func uploadSettings(device: Int) -> [String: Double] {
        guard compressUpload, let r = uploadRatios[device] else { return [:] }
        return ["ratio": r]
    }

    public func applyUploadSettings(_ settings: [String: Double], device: Int) throws {
        guard compressUpload else { return }
        guard let r = settings["ratio"] else { throw FederatedError("Caesar upload settings for device \(device) carry no ratio") }
        // The planner's linear spread may land a rounding error outside [θ_min, θ_max].
        guard r.isFinite, r > 0, r <= 1, r >= upload.thetaMin - 1e-9, r <= upload.thetaMax + 1e-9 else {
            throw FederatedError("Caesar upload ratio \(r) for device \(device) is outside [\(upload.thetaMin), \(upload.thetaMax)]")
        }
        uploadRatios[device] = r
    }

    public func decodeUpload(_ bytes: [UInt8], device: Int, layout: TensorLayout) throws -> [Float] {
        guard compressUpload else { return try dense.decode(bytes, layout: layout) }
        // The stream header carries k; the top-k decoder reads it, so any planned ratio decodes.
        return try upload.codec(ratio: uploadRatios[device] ?? upload.thetaMax).decode(bytes, layout: layout)
    }

    public override func saveState() -> StrategyState {
        var s = super.saveState()
        s.put(uploadStates, prefix: "up")
        return s
    }

    public override func restoreState(_ state: StrategyState, layout: TensorLayout) throws {
        try super.restoreState(state, layout: layout)
        uploadStates = try state.codecStates(prefix: "up", layout: layout)
    }
}
