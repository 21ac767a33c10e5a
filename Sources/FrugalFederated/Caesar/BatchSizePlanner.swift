// Caesar's per-device batch sizes: devices in a synchronous round should finish together, so
// that fast devices do useful work instead of idling at the barrier.
//
// Time model for device i with batch b (local iterations `steps` fixed for everyone):
//     T_i(b) = steps · b · computePerSample_i + bytesDown_i / bwDown_i + bytesUp_i / bwUp_i
// (computePerSample covers forward + backward; FedScale's traces count 3 × their per-sample
// compute for that). The byte counts are per device because compression ratios differ.
// Batch sizes lie on the grid b_min, b_min + step, …, b_max.
//
// Targets (the deadline D every device is fitted under):
//   .matchFastest (default, as published): the fastest device (smallest T_i(b_max)) gets b_max,
//       D = min_i T_i(b_max), every other device gets the largest b with T_i(b) ≤ D
//       (b_min if even that is too slow, so such a device finishes after D).
//   .fillBottleneck: D = max(min_i T_i(b_max), max_i T_i(b_min)). When some device cannot meet
//       the fastest device's time even at b_min, the round lasts at least T_slowest(b_min) anyway,
//       so every device gets the largest b with T_i(b) ≤ D: the same round time with less idling.
//   .deadline(D): a given deadline.
// Each device's predicted idle time is roundTime − T_i(b_i), roundTime = max_i T_i(b_i). A device
// that is not clamped at b_max finishes within one batch step of D: D − T_i(b_i) < steps · step · c_i.

/// A device's speed: compute seconds per training sample and link bandwidths in bytes/second.
public struct DeviceTimeProfile: Sendable, Equatable {
    public var computePerSample: Double
    public var downBytesPerSecond: Double
    public var upBytesPerSecond: Double

    public init(computePerSample: Double, downBytesPerSecond: Double, upBytesPerSecond: Double) {
        self.computePerSample = computePerSample
        self.downBytesPerSecond = downBytesPerSecond
        self.upBytesPerSecond = upBytesPerSecond
    }
}

/// The planned batch sizes and the model's predictions for one round.
public struct BatchPlan: Sendable, Equatable {
    public var batchSizes: [Int]
    /// T_i(b_i), seconds.
    public var predictedTimes: [Double]
    /// roundTime − T_i(b_i), seconds.
    public var idleTimes: [Double]
    /// max_i T_i(b_i).
    public var roundTime: Double
    /// The deadline D the batches were fitted under.
    public var deadline: Double
}

/// Chooses per-device batch sizes so that selected devices finish a round together.
///
///     let planner = BatchSizePlanner(minBatch: 8, maxBatch: 64, localSteps: 10)
///     let plan = try planner.plan(profiles: devices, bytesDown: down, bytesUp: up)
public struct BatchSizePlanner: Sendable {
    public enum Target: Sendable, Equatable {
        case matchFastest
        case fillBottleneck
        case deadline(Double)
    }

    public var minBatch: Int
    public var maxBatch: Int
    /// Grid step of batch sizes ((maxBatch − minBatch) must be a multiple).
    public var batchStep: Int
    /// Local iterations per round.
    public var localSteps: Int
    public var target: Target

    public init(minBatch: Int, maxBatch: Int, batchStep: Int = 1, localSteps: Int, target: Target = .matchFastest) {
        self.minBatch = minBatch
        self.maxBatch = maxBatch
        self.batchStep = batchStep
        self.localSteps = localSteps
        self.target = target
    }

    /// T(b) = steps · b · computePerSample + bytesDown / bwDown + bytesUp / bwUp.
    public func time(_ p: DeviceTimeProfile, batch: Int, bytesDown: Int, bytesUp: Int) -> Double {
        Double(localSteps) * Double(batch) * p.computePerSample
            + Double(bytesDown) / p.downBytesPerSecond + Double(bytesUp) / p.upBytesPerSecond
    }

    /// The largest grid batch with T(b) ≤ deadline, or `minBatch` if none fits.
    public func largestBatch(_ p: DeviceTimeProfile, deadline: Double, bytesDown: Int, bytesUp: Int) -> Int {
        let comm = time(p, batch: 0, bytesDown: bytesDown, bytesUp: bytesUp)
        let perBatch = Double(localSteps) * p.computePerSample
        var b: Int
        if perBatch <= 0 {
            b = comm <= deadline ? maxBatch : minBatch
        } else {
            let raw = ((deadline - comm) / perBatch).rounded(.down)
            let clamped = min(Double(maxBatch), max(Double(minBatch), raw.isFinite ? raw : Double(minBatch)))
            b = minBatch + (Int(clamped) - minBatch) / batchStep * batchStep
        }
        // Correct for rounding in the division.
        while b + batchStep <= maxBatch && time(p, batch: b + batchStep, bytesDown: bytesDown, bytesUp: bytesUp) <= deadline {
            b += batchStep
        }
        while b > minBatch && time(p, batch: b, bytesDown: bytesDown, bytesUp: bytesUp) > deadline { b -= batchStep }
        return b
    }

    /// Plans batch sizes for devices with these profiles and per-device traffic.
    public func plan(profiles: [DeviceTimeProfile], bytesDown: [Int], bytesUp: [Int]) throws -> BatchPlan {
        guard minBatch >= 1, maxBatch >= minBatch, batchStep >= 1, (maxBatch - minBatch) % batchStep == 0 else {
            throw CodecError("BatchSizePlanner: batch grid \(minBatch)...\(maxBatch) step \(batchStep) is invalid")
        }
        guard localSteps >= 1 else { throw CodecError("BatchSizePlanner: localSteps \(localSteps) must be ≥ 1") }
        let m = profiles.count
        guard bytesDown.count == m, bytesUp.count == m else {
            throw CodecError("BatchSizePlanner: \(m) profiles but \(bytesDown.count) download and \(bytesUp.count) upload sizes")
        }
        for (i, p) in profiles.enumerated() {
            guard p.computePerSample >= 0, p.computePerSample.isFinite,
                  p.downBytesPerSecond > 0, p.downBytesPerSecond.isFinite,
                  p.upBytesPerSecond > 0, p.upBytesPerSecond.isFinite else {
                throw CodecError("BatchSizePlanner: device \(i) has an invalid profile \(p)")
            }
            guard bytesDown[i] >= 0, bytesUp[i] >= 0 else { throw CodecError("BatchSizePlanner: device \(i) has negative traffic") }
        }
        guard m > 0 else { return BatchPlan(batchSizes: [], predictedTimes: [], idleTimes: [], roundTime: 0, deadline: 0) }
        func t(_ i: Int, _ b: Int) -> Double { time(profiles[i], batch: b, bytesDown: bytesDown[i], bytesUp: bytesUp[i]) }
        let fastest = (0 ..< m).map { t($0, maxBatch) }.min()!
        let deadline: Double
        switch target {
        case .matchFastest: deadline = fastest
        case .fillBottleneck: deadline = max(fastest, (0 ..< m).map { t($0, minBatch) }.max()!)
        case .deadline(let d):
            guard d.isFinite else { throw CodecError("BatchSizePlanner: deadline \(d) is not finite") }
            deadline = d
        }
        let batches = (0 ..< m).map {
            largestBatch(profiles[$0], deadline: deadline, bytesDown: bytesDown[$0], bytesUp: bytesUp[$0])
        }
        let times = (0 ..< m).map { t($0, batches[$0]) }
        let roundTime = times.max()!
        return BatchPlan(batchSizes: batches, predictedTimes: times, idleTimes: times.map { roundTime - $0 },
                         roundTime: roundTime, deadline: deadline)
    }
}

/// Caesar's batch-size part applied to any other strategy (for the comparison "with and without
/// the batch-size part applied to the baselines too"): everything is delegated to `inner` except
/// the batch sizes, which `planner` fits to the devices' time models. Upload sizes are predicted
/// from the last upload each device (or, before that, any device) actually sent; dense before any.
public final class PlannedBatchSizes: FederatedStrategy {
    public let inner: any FederatedStrategy
    public var planner: BatchSizePlanner
    public var name: String { inner.name + "+batch" }
    var lastUpload: [Int: Int] = [:]
    var anyUpload: Int?
    /// The last batch plan.
    public internal(set) var lastPlan: BatchPlan?

    public init(_ inner: any FederatedStrategy, planner: BatchSizePlanner) {
        self.inner = inner
        self.planner = planner
    }

    public func prepare(_ context: RoundContext, layout: TensorLayout) throws { try inner.prepare(context, layout: layout) }
    public func encodeDownload(global: [Float], device: Int, staleness: Int?, round: Int, layout: TensorLayout) throws -> [UInt8] {
        try inner.encodeDownload(global: global, device: device, staleness: staleness, round: round, layout: layout)
    }
    public func decodeDownload(_ bytes: [UInt8], device: Int, layout: TensorLayout) throws -> [Float] {
        try inner.decodeDownload(bytes, device: device, layout: layout)
    }
    public func batchSizes(_ context: RoundContext, bytesDown: [Int], defaultBatch: Int, localSteps: Int?,
                           layout: TensorLayout) throws -> [Int] {
        guard let steps = localSteps else {
            throw FederatedError("batch-size planning needs a fixed number of local steps (localSteps), not epochs")
        }
        var p = planner
        p.localSteps = steps
        let dense = 4 * layout.count
        let up = context.devices.map { lastUpload[$0] ?? anyUpload ?? dense }
        let plan = try p.plan(profiles: context.profiles.map(\.timeProfile), bytesDown: bytesDown, bytesUp: up)
        lastPlan = plan
        return plan.batchSizes
    }
    public func encodeUpload(_ update: [Float], device: Int, layout: TensorLayout) throws -> [UInt8] {
        try inner.encodeUpload(update, device: device, layout: layout)
    }
    /// Records the upload size here, on the server's side (a remote device's object never sees the plan).
    public func decodeUpload(_ bytes: [UInt8], device: Int, layout: TensorLayout) throws -> [Float] {
        let u = try inner.decodeUpload(bytes, device: device, layout: layout)
        lastUpload[device] = bytes.count
        anyUpload = bytes.count
        return u
    }
    public func aggregate(global: [Float], updates: [[Float]], weights: [Double]) -> [Float] {
        inner.aggregate(global: global, updates: updates, weights: weights)
    }
    public func uploadSettings(device: Int) -> [String: Double] { inner.uploadSettings(device: device) }
    public func applyUploadSettings(_ settings: [String: Double], device: Int) throws {
        try inner.applyUploadSettings(settings, device: device)
    }
    public func modelCopy(device: Int) -> [Float]? { inner.modelCopy(device: device) }
    public func forgetDevice(_ device: Int) { inner.forgetDevice(device) }
    public func saveState() -> StrategyState {
        var s = inner.saveState()
        for (d, b) in lastUpload { s.integers["batch.lastUpload.\(d)"] = UInt64(b) }
        if let a = anyUpload { s.integers["batch.anyUpload"] = UInt64(a) }
        return s
    }
    public func restoreState(_ state: StrategyState, layout: TensorLayout) throws {
        var inner_ = state
        lastUpload = [:]
        anyUpload = state.integers["batch.anyUpload"].map(Int.init)
        for (k, v) in state.integers where k.hasPrefix("batch.") {
            inner_.integers[k] = nil
            if k.hasPrefix("batch.lastUpload."), let d = Int(k.dropFirst(17)) { lastUpload[d] = Int(v) }
        }
        try inner.restoreState(inner_, layout: layout)
    }
}
