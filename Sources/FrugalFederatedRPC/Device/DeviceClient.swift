import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import FrugalNN
import FrugalFederated

/// What a device learns when it joins a run.
public struct JoinInfo: Sendable {
    public var runID: String
    /// The run's `fl run` options (model, data set, partition, strategy, seed, local training).
    public var runArguments: [String]
    public var layout: [(name: String, count: Int)]
    /// Samples the server's partition gives this device.
    public var samples: Int
    public var rounds: Int
    public var completedRounds: Int
}

/// What a device needs to take part: its own strategy object (the device half of the same
/// strategy the server runs), a model of the run's architecture, and its local training.
public struct DeviceRuntime {
    public var strategy: any FederatedStrategy
    public var model: any Layer
    public var layout: TensorLayout
    public var training: LocalTraining
    public init(strategy: any FederatedStrategy, model: any Layer, layout: TensorLayout, training: LocalTraining) {
        self.strategy = strategy; self.model = model; self.layout = layout; self.training = training
    }
}

/// What a device runs: an image-classification model with its strategy's device half, or a task
/// run's worker (`TaskDevice`, e.g. DropPEFT).
public enum DeviceWorkload {
    case model(DeviceRuntime)
    case task(any TaskWorker)

    var layout: TensorLayout {
        switch self { case .model(let rt): rt.layout; case .task(let w): w.layout }
    }
    var samples: Int {
        switch self { case .model(let rt): rt.training.data.count; case .task(let w): w.samples }
    }
    func copyDigest(device: Int) -> UInt64 {
        switch self { case .model(let rt): StreamDigest.of(copy: rt.strategy.modelCopy(device: device)); case .task: 0 }
    }
    func saveState() -> StrategyState {
        switch self { case .model(let rt): rt.strategy.saveState(); case .task(let w): w.saveState() }
    }
    func restoreState(_ s: StrategyState) throws {
        switch self { case .model(let rt): try rt.strategy.restoreState(s, layout: rt.layout); case .task(let w): try w.restoreState(s) }
    }
}

/// How a device reaches its server.
public struct DeviceOptions: Sendable {
    public var host: String
    public var port: Int
    public var device: Int
    /// The device's enrolment token.
    public var token: String
    /// PEM file of the certificate authority (or the self-signed server certificate) the device
    /// trusts; nil for plaintext (only for loopback tests).
    public var trustedCertificate: String?
    /// Where the device keeps its strategy state (model copy, error-feedback residual) between
    /// rounds and across restarts (nil: in memory only).
    public var statePath: String?
    /// Seconds the server may hold a task request open.
    public var waitSeconds = 20
    /// Give up after the server has been unreachable this long.
    public var giveUpSeconds = 120.0
    public init(host: String, port: Int, device: Int, token: String, trustedCertificate: String? = nil) {
        self.host = host; self.port = port; self.device = device; self.token = token; self.trustedCertificate = trustedCertificate
    }
}

/// What a device did over a run.
public struct DeviceSummary: Sendable {
    public var rounds: [Int] = []
    public var accepted = 0
    public var rejected: [String] = []
    public var bytesDown = 0
    public var bytesUp = 0
    public init() {}
}

/// `frugal fl join`: a device process. Joins, builds its runtime from the run's options, then
/// loops: wait for a task, decode the download with its own strategy object, train, check and
/// encode its update (`DeviceRound`, the routine simulated devices run), send it, keep its state.
/// If the server restarted and hands out the same round again, the device starts it again from
/// the state it had before that round, so the redone round is identical.
public final class DeviceClient: @unchecked Sendable {
    // @unchecked Sendable: used by one task at a time (`run`).
    public let options: DeviceOptions
    let makeWorkload: (JoinInfo) throws -> DeviceWorkload
    let logger: Logger
    /// Test hook: alters the update after local training (poisoning, NaN).
    public var tamperUpdate: ((_ round: Int, _ update: inout [Float]) -> Void)?
    /// Test hook: alters the upload stream after encoding (malformed streams).
    public var tamperStream: ((_ round: Int, _ bytes: inout [UInt8]) -> Void)?
    /// Test hook: stop (as if killed) after receiving its first task of this round or later, without answering.
    public var vanishInRound: Int?

    var workload: DeviceWorkload?
    var info: JoinInfo?
    var lastRound = 0
    var previous: StrategyState?
    var summary = DeviceSummary()

    public init(options: DeviceOptions, logger: Logger = Logger(label: "frugal.fl.device"),
                makeRuntime: @escaping (JoinInfo) throws -> DeviceRuntime) {
        self.options = options
        self.logger = logger
        self.makeWorkload = { .model(try makeRuntime($0)) }
    }

    /// A device whose workload depends on the run (e.g. `fl join` for a PEFT or a model run).
    public init(options: DeviceOptions, logger: Logger = Logger(label: "frugal.fl.device"),
                makeWorkload: @escaping (JoinInfo) throws -> DeviceWorkload) {
        self.options = options
        self.logger = logger
        self.makeWorkload = makeWorkload
    }

    func transport() throws -> HTTP2ClientTransport.Posix {
        let security: HTTP2ClientTransport.Posix.TransportSecurity
        if let ca = options.trustedCertificate {
            guard FileManager.default.isReadableFile(atPath: ca) else { throw DeploymentError("trusted certificate \(ca): cannot read the file") }
            security = .tls { $0.trustRoots = .certificates([.file(path: ca, format: .pem)]) }
        } else {
            security = .plaintext
        }
        let isIPv4 = options.host.split(separator: ".").count == 4 && options.host.allSatisfy { $0.isNumber || $0 == "." }
        let target: any ResolvableTarget = isIPv4 ? .ipv4(host: options.host, port: options.port) : .dns(host: options.host, port: options.port)
        return try HTTP2ClientTransport.Posix(target: target, transportSecurity: security,
                                             config: .defaults { $0.backoff.max = .seconds(2) })
    }

    var metadata: Metadata { ["authorization": "Bearer \(options.token)"] }

    /// Takes part until the server says the run is finished; retries while the server is
    /// unreachable (e.g. restarting) for up to `giveUpSeconds`.
    public func run() async throws -> DeviceSummary {
        var unreachableSince: Date?
        while true {
            do {
                // Errors leave the client's scope as values: thrown from inside, they may come out
                // as the connection task's cancellation instead.
                let end = try await withGRPCClient(transport: try transport()) { client -> SessionEnd in
                    do { return try await self.session(Frugal_Fl_V1_Federation.Client(wrapping: client)) ? .finished : .again } catch {
                        return .failed(ErrorBox(error: error))
                    }
                }
                switch end {
                case .finished: return summary
                case .again: break
                case .failed(let box): throw box.error
                }
                unreachableSince = nil
            } catch let e as RPCError where [.unavailable, .unknown, .deadlineExceeded, .cancelled, .internalError].contains(e.code) {
                let since = unreachableSince ?? Date()
                unreachableSince = since
                if Date().timeIntervalSince(since) > options.giveUpSeconds {
                    throw DeploymentError("device \(options.device): server \(options.host):\(options.port) unreachable for \(Int(options.giveUpSeconds)) s: \(e.message)")
                }
                logger.notice("server unreachable; retrying", metadata: ["device": "\(options.device)", "error": "\(e.code): \(e.message)"])
                try await Task.sleep(nanoseconds: 500_000_000)
            } catch let e as TransientError {
                let since = unreachableSince ?? Date()
                unreachableSince = since
                if Date().timeIntervalSince(since) > options.giveUpSeconds { throw DeploymentError("device \(options.device): \(e.message)") }
                logger.notice("transfer interrupted; retrying", metadata: ["device": "\(options.device)", "error": "\(e.message)"])
                try await Task.sleep(nanoseconds: 500_000_000)
            }
        }
    }

    enum SessionEnd: Sendable { case finished, again, failed(ErrorBox) }
    /// `@unchecked Sendable`: the error is only rethrown by the task that made it.
    struct ErrorBox: @unchecked Sendable { let error: any Error }

    /// A download that ended early (the server went away mid-stream): retried.
    struct TransientError: Error { let message: String }

    /// Thrown by `run` when `vanishInRound` stopped the device.
    public struct VanishedError: Error, Sendable { public let round: Int }

    /// One connection's worth of work; true when the run finished.
    func session(_ fed: Frugal_Fl_V1_Federation.Client<HTTP2ClientTransport.Posix>) async throws -> Bool {
        var join = Frugal_Fl_V1_JoinRequest()
        join.deviceID = UInt32(options.device)
        let reply = try await fed.join(join, metadata: metadata)
        let info = JoinInfo(runID: reply.runID, runArguments: reply.runArguments, layout: reply.layout.map { ($0.name, Int($0.count)) },
                            samples: Int(reply.samples), rounds: Int(reply.rounds), completedRounds: Int(reply.completedRounds))
        if self.info?.runID != info.runID {
            let rt = try makeWorkload(info)
            let mine = rt.layout.segments.map { "\($0.name):\($0.count)" }, theirs = info.layout.map { "\($0.name):\($0.count)" }
            guard mine == theirs else {
                throw DeploymentError("device \(options.device): its model's tensors \(mine.prefix(4))… differ from the server's \(theirs.prefix(4))…")
            }
            guard rt.samples == info.samples else {
                throw DeploymentError("device \(options.device) holds \(rt.samples) samples, the server's partition gives it \(info.samples): different data or run options")
            }
            workload = rt
            self.info = info
            try loadState()
            logger.info("joined", metadata: ["device": "\(options.device)", "run": "\(info.runID)", "rounds": "\(info.rounds)",
                                             "completed": "\(info.completedRounds)", "samples": "\(info.samples)"])
        }
        while true {
            guard let task = try await nextTask(fed) else { return true }
            guard let task_ = task else { continue }
            try await work(task_, fed)
        }
    }

    struct Task_: Sendable {
        var assignment: DeviceAssignment
    }

    /// nil: finished; .some(nil): idle; .some(task).
    func nextTask(_ fed: Frugal_Fl_V1_Federation.Client<HTTP2ClientTransport.Posix>) async throws -> Task_?? {
        let rt = workload!, d = options.device
        var req = Frugal_Fl_V1_TaskRequest()
        req.deviceID = UInt32(d)
        req.runID = info!.runID
        req.waitSeconds = UInt32(options.waitSeconds)
        req.copyDigest = rt.copyDigest(device: d)
        req.samples = UInt64(rt.samples)
        req.lastRound = UInt32(lastRound)
        req.previousDigest = previousDigest
        var isTask = false
        if case .task = rt { isTask = true }
        let maxBytes = WireLimits.maxUploadBytes(parameters: rt.layout.count, segments: rt.layout.segments.count)
            + (isTask ? TaskWire.maxConfigurationBytes : 0)
        do {
            return try await fed.getTask(req, metadata: metadata) { response -> Task_?? in
                var header: Frugal_Fl_V1_TaskHeader?
                var bytes: [UInt8] = []
                for try await chunk in response.messages {
                    switch chunk.kind {
                    case .idle?: return .some(nil)
                    case .finished?: return nil
                    case .header(let h)?:
                        guard h.totalBytes <= UInt64(maxBytes) else {
                            throw DeploymentError("download of \(h.totalBytes) bytes is larger than any stream for this model")
                        }
                        header = h
                        bytes.reserveCapacity(Int(h.totalBytes))
                    case .data(let data)?:
                        guard let h = header, bytes.count + data.count <= Int(h.totalBytes) else {
                            throw DeploymentError("download stream longer than announced")
                        }
                        bytes.append(contentsOf: data)
                    case .end(let e)?:
                        guard let h = header, bytes.count == Int(h.totalBytes), StreamDigest.of(bytes) == e.digest else {
                            throw TransientError(message: "download stream incomplete or corrupted")
                        }
                        let a = DeviceAssignment(round: Int(h.round), device: d, download: bytes, start: nil, batchSize: Int(h.batchSize),
                                                 uploadSettings: h.uploadSettings, staleness: h.hasStaleness ? Int(h.staleness) : nil)
                        return .some(Task_(assignment: a))
                    case nil: throw DeploymentError("empty task message")
                    }
                }
                throw TransientError(message: "task stream ended early")
            }
        } catch let e as RPCError where e.code == .failedPrecondition {
            // Refused for this round (state mismatch) or a stale run id: log and ask again.
            logger.warning("task refused", metadata: ["device": "\(d)", "reason": "\(e.message)"])
            if e.message.contains("join again") { info = nil }
            try await Task.sleep(nanoseconds: 200_000_000)
            return .some(nil)
        }
    }

    var previousDigest: UInt64 = 0

    func work(_ task: Task_, _ fed: Frugal_Fl_V1_Federation.Client<HTTP2ClientTransport.Posix>) async throws {
        let w = workload!, d = options.device
        let a = task.assignment
        if a.round == lastRound, let previous {
            try w.restoreState(previous)   // the server redoes this round
        } else if a.round > lastRound {
            previous = w.saveState()
            previousDigest = w.copyDigest(device: d)
            lastRound = a.round
        } else {
            throw DeploymentError("device \(d): the server sent round \(a.round) after round \(lastRound)")
        }
        summary.bytesDown += a.download.count
        let rt: DeviceRuntime
        switch w {
        case .model(let m): rt = m
        case .task(let worker):
            try await workTask(a, worker, fed)
            return
        }
        let start = try DeviceRound.begin(a, strategy: rt.strategy, layout: rt.layout)
        if let v = vanishInRound, a.round >= v { throw VanishedError(round: a.round) }
        let job = UncheckedBox(rt)
        var trained = try await Self.offPool {
            let rt = job.value
            return try rt.training.train(device: d, round: a.round, from: start, batch: a.batchSize, on: rt.model, layout: rt.layout)
        }
        tamperUpdate?(a.round, &trained.update)
        let outcome = DeviceRound.finish(trained, device: d, uploadSettings: a.uploadSettings, strategy: rt.strategy, layout: rt.layout)
        try saveState()
        try await send(outcome, round: a.round, fed)
    }

    /// A task run's round: the worker decodes, trains and encodes (`TaskDevice`); a failure to
    /// decode or train is sent as the device's own refusal.
    func workTask(_ a: DeviceAssignment, _ worker: any TaskWorker, _ fed: Frugal_Fl_V1_Federation.Client<HTTP2ClientTransport.Posix>) async throws {
        if let v = vanishInRound, a.round >= v { throw VanishedError(round: a.round) }
        let job = UncheckedBox(worker)
        let outcome: DeviceOutcome
        do {
            let r = try await Self.offPool { try job.value.work(round: a.round, download: a.download) }
            outcome = .upload(bytes: r.bytes, samples: r.samples, loss: r.loss)
        } catch {
            outcome = .refused(reason: "\(error)", bytes: 0, samples: 0, loss: 0)
        }
        try saveState()
        try await send(outcome, round: a.round, fed)
    }

    /// Sends an outcome (an upload stream or the device's refusal) and records the reply.
    func send(_ outcome: DeviceOutcome, round: Int, _ fed: Frugal_Fl_V1_Federation.Client<HTTP2ClientTransport.Posix>) async throws {
        let d = options.device
        var header = Frugal_Fl_V1_UpdateHeader()
        header.deviceID = UInt32(d)
        header.runID = info!.runID
        header.round = UInt32(round)
        var payload: [UInt8] = []
        switch outcome {
        case .upload(var bytes, let n, let loss):
            tamperStream?(round, &bytes)
            (header.samples, header.loss, header.totalBytes, header.digest) = (UInt64(n), loss, UInt64(bytes.count), StreamDigest.of(bytes))
            payload = bytes
        case .refused(let why, _, let n, let loss):
            (header.samples, header.loss, header.refused) = (UInt64(n), loss, why)
            logger.warning("refused its own update", metadata: ["device": "\(d)", "round": "\(round)", "reason": "\(why)"])
        case .checked:
            throw DeploymentError("a device never produces a checked outcome")
        }
        let chunks = payload.isEmpty ? [] : payload.chunks(of: WireLimits.chunkBytes)
        let h = header
        let reply = try await fed.submitUpdate(metadata: metadata, requestProducer: { writer in
            var first = Frugal_Fl_V1_UpdateChunk()
            first.kind = .header(h)
            try await writer.write(first)
            for c in chunks {
                var m = Frugal_Fl_V1_UpdateChunk()
                m.kind = .data(c)
                try await writer.write(m)
            }
        })
        summary.rounds.append(round)
        summary.bytesUp += payload.count
        if reply.accepted {
            summary.accepted += 1
            logger.info("update accepted", metadata: ["device": "\(d)", "round": "\(round)", "bytes": "\(payload.count)"])
        } else {
            summary.rejected.append(reply.reason)
            logger.warning("update not accepted", metadata: ["device": "\(d)", "round": "\(round)", "reason": "\(reply.reason)"])
        }
    }

    /// Carries the device's runtime to the training thread. `@unchecked Sendable`: the device
    /// loop awaits the training before it touches the runtime again, so only one thread uses it.
    struct UncheckedBox<T>: @unchecked Sendable { let value: T; init(_ v: T) { value = v } }

    /// Runs blocking work (local training) on a Dispatch thread, not on the concurrency pool.
    static func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { cont in
            DispatchQueue.global().async { cont.resume(with: Result { try body() }) }
        }
    }

    // MARK: device state file

    struct StateMeta: Codable {
        var runID: String
        var device: Int
        var lastRound: Int
        var previousDigest: UInt64
        var current: [String: UInt64]
        var previous: [String: UInt64]?
    }
    static let stateKey = "frugal.fl.device"

    /// Writes the strategy state, and the state before the last round, atomically.
    func saveState() throws {
        guard let path = options.statePath, let rt = workload, let info else { return }
        let cur = rt.saveState()
        let meta = StateMeta(runID: info.runID, device: options.device, lastRound: lastRound, previousDigest: previousDigest,
                             current: cur.integers, previous: previous?.integers)
        var entries: [SafetensorsWriter.Tensor] = []
        for (prefix, s) in [("cur.", cur), ("prev.", previous ?? StrategyState())] {
            for k in s.arrays.keys.sorted() where !s.arrays[k]!.isEmpty {
                entries.append(SafetensorsWriter.Tensor(name: prefix + k, shape: [s.arrays[k]!.count], floats: s.arrays[k]!))
            }
        }
        let json = String(decoding: try JSONEncoder().encode(meta), as: UTF8.self)
        try SafetensorsWriter.write(entries, metadata: [Self.stateKey: json], to: URL(fileURLWithPath: path))
    }

    /// Restores the state file if it belongs to this run and device.
    func loadState() throws {
        guard let path = options.statePath, FileManager.default.fileExists(atPath: path), let rt = workload, let info else { return }
        let file = try SafetensorsFile(url: URL(fileURLWithPath: path))
        guard let json = file.metadata[Self.stateKey],
              let meta = try? JSONDecoder().decode(StateMeta.self, from: Data(json.utf8)) else {
            throw DeploymentError("device state \(path): not a device state file")
        }
        guard meta.runID == info.runID, meta.device == options.device else {
            logger.notice("state file of another run or device; starting fresh", metadata: ["path": "\(path)"])
            return
        }
        var cur = StrategyState(integers: meta.current), prev = StrategyState(integers: meta.previous ?? [:])
        for name in file.names {
            if name.hasPrefix("cur.") { cur.arrays[String(name.dropFirst(4))] = try file.floats(name) }
            if name.hasPrefix("prev.") { prev.arrays[String(name.dropFirst(5))] = try file.floats(name) }
        }
        try rt.restoreState(cur)
        previous = meta.previous == nil ? nil : prev
        lastRound = meta.lastRound
        previousDigest = meta.previousDigest
        logger.info("restored device state", metadata: ["device": "\(options.device)", "last_round": "\(lastRound)"])
    }
}
