import FrugalCore
import FrugalNN
import FrugalData
import FrugalModels

/// A device's update after local training.
public struct TrainedUpdate: Sendable {
    /// Local model − the model it started from.
    public var update: [Float]
    /// Samples actually processed.
    public var samples: Int
    /// Mean training loss of the local steps.
    public var loss: Double
    public init(update: [Float], samples: Int, loss: Double) { self.update = update; self.samples = samples; self.loss = loss }
}

/// A device's local training: its data, the optimiser settings and the loader-seed rule
/// (seed + round·1000003 + device·7919); the loop is `trainLocally` (shared with the Flower device).
/// Simulated devices and `frugal fl join` use the same, so a remote device trains exactly as its
/// simulated twin.
public struct LocalTraining {
    public let data: ImageDataset
    public let normalization: Normalization?
    public let config: SimulationConfig

    public init(data: ImageDataset, normalization: Normalization?, config: SimulationConfig) {
        self.data = data
        self.normalization = normalization
        self.config = config
    }

    /// The loader seed of `device` in `round`.
    public func loaderSeed(round: Int, device: Int) -> UInt64 {
        config.seed &+ UInt64(round) &* 1_000_003 &+ UInt64(device) &* 7919
    }

    /// SGD from `start` on `model` for the configured local steps (or epochs) at `batch`.
    public func train(device d: Int, round: Int, from start: [Float], batch: Int, on model: any Layer,
                      layout: TensorLayout) throws -> TrainedUpdate {
        try ModelVector.load(start, into: model, layout: layout)
        var local = LocalTrainingConfig()
        local.batchSize = batch; local.learningRate = config.learningRate; local.momentum = config.momentum
        local.weightDecay = config.weightDecay; local.epochs = config.localEpochs; local.steps = config.localSteps
        local.seed = loaderSeed(round: round, device: d)
        let stats = try trainLocally(model, on: data, normalization: normalization, config: local)
        var update = ModelVector.flatten(model)
        update.withUnsafeMutableBufferPointer { u in
            start.withUnsafeBufferPointer { s in for i in 0 ..< u.count { u[i] -= s[i] } }
        }
        return TrainedUpdate(update: update, samples: stats.samples, loss: stats.loss)
    }
}

/// The device half of a round, shared by simulated devices and `frugal fl join`:
/// `begin` (remote devices only: take the upload settings, decode the download with the device's
/// own strategy object) → `LocalTraining.train` → `finish` (check the update, encode it).
public enum DeviceRound {
    /// Device: takes the round's upload settings and rebuilds the model from the download stream.
    public static func begin(_ assignment: DeviceAssignment, strategy: any FederatedStrategy,
                             layout: TensorLayout) throws -> [Float] {
        try strategy.applyUploadSettings(assignment.uploadSettings, device: assignment.device)
        return try strategy.decodeDownload(assignment.download, device: assignment.device, layout: layout)
    }

    /// Device: checks the update (size, finite values) and encodes it with the strategy's device
    /// half; a refused update is never encoded (its error-feedback state stays as it was).
    public static func finish(_ trained: TrainedUpdate, device: Int, uploadSettings: [String: Double],
                              strategy: any FederatedStrategy, layout: TensorLayout) -> DeviceOutcome {
        let u = trained.update
        if u.count != layout.count {
            return .refused(reason: "update has \(u.count) entries, the model has \(layout.count)", bytes: 0,
                            samples: trained.samples, loss: trained.loss)
        }
        if let bad = FloatScan.firstNonFinite(u) {
            return .refused(reason: "update has non-finite value \(u[bad]) at \(layout.name(at: bad))", bytes: 0,
                            samples: trained.samples, loss: trained.loss)
        }
        do {
            try strategy.applyUploadSettings(uploadSettings, device: device)
            let bytes = try strategy.encodeUpload(u, device: device, layout: layout)
            return .upload(bytes: bytes, samples: trained.samples, loss: trained.loss)
        } catch {
            return .refused(reason: "upload failed: \(error)", bytes: 0, samples: trained.samples, loss: trained.loss)
        }
    }
}
