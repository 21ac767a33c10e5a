import Foundation

/// Settings of a device's life in a federation.
public struct FlowerDeviceOptions: Sendable {
    /// Seconds to wait before asking again when no message is waiting (Flower's SuperNode: 3).
    public var pollInterval = 3.0
    /// The heartbeat interval announced to the SuperLink (10...1800 s).
    public var heartbeatInterval = FlowerProtocol.heartbeatInterval
    /// Leave after this many runs this device served have finished (nil: stay until stopped).
    public var runs: Int?
    /// Connect to a SuperLink that reports another Flower major.minor than `FlowerProtocol.version`.
    public var allowVersionMismatch = false
    public init() {}
}

/// One handled message, for logs and `--json`.
public struct HandledMessage: Sendable, Codable, Equatable {
    public var runID: UInt64
    /// The server round (`server-round` of the config, else the group id).
    public var round: Int?
    public var type: String
    /// nil when handled; the reason sent back in the error reply otherwise.
    public var error: String?
    public var seconds: Double
    public var bytesIn: Int, bytesOut: Int
    public var metrics: [String: Double]
}

/// What a device did.
public struct FlowerDeviceSummary: Sendable, Codable {
    public var nodeID: UInt64
    public var endpoint: String
    public var serverVersion: String?
    public var messages: [HandledMessage]
    public var runsFinished: [UInt64]
    /// Heartbeats the SuperLink acknowledged.
    public var heartbeats = 0
}

/// A Frugal device in a Flower federation: a SuperNode that runs `app` itself instead of
/// launching Python ClientApps. It registers and activates with the SuperLink, sends heartbeats
/// from a thread of its own, pulls messages, answers train and evaluate messages through `app`
/// and any other type with an error reply, and leaves (deactivates, unregisters) when stopped
/// or after `options.runs` runs have finished.
public final class FlowerDevice {
    public let fleet: FleetClient
    public let app: FlowerClientApp
    public let options: FlowerDeviceOptions
    /// Called after each handled message (e.g. to dump what was received and sent).
    public var onMessage: ((FlowerMessage, FlowerMessage, HandledMessage) throws -> Void)?
    private let stopFlag = AtomicFlag()

    public init(fleet: FleetClient, app: FlowerClientApp, options: FlowerDeviceOptions = FlowerDeviceOptions()) {
        self.fleet = fleet; self.app = app; self.options = options
    }

    /// Asks the loop to leave after the current message (thread-safe, e.g. from a signal handler's thread).
    public func stop() { stopFlag.set() }

    /// Checks the SuperLink's version (when it says it), connects, serves messages, and leaves.
    public func run() throws -> FlowerDeviceSummary {
        let version = try fleet.serverVersion()
        if let v = version {
            if !FlowerProtocol.compatible(v) {
                let msg = "the SuperLink at \(fleet.transport.endpoint) runs Flower \(v); this device speaks the Fleet API of Flower \(FlowerProtocol.version) (major.minor must match)"
                guard options.allowVersionMismatch else {
                    throw FlowerError(.versionMismatch, msg + ". Use flwr==\(FlowerProtocol.version) on the SuperLink, or --allow-version-mismatch to try anyway")
                }
                FlowerLog.warn(msg)
            }
            FlowerLog.info("SuperLink \(fleet.transport.endpoint): Flower \(v)")
        }
        let nodeID = try fleet.connect(heartbeatInterval: options.heartbeatInterval)
        FlowerLog.info("joined as node \(nodeID) (\(fleet.selfRegister ? "self-registered" : "registered key"))")
        let heartbeat = HeartbeatThread(fleet: fleet, interval: options.heartbeatInterval)
        heartbeat.start()
        var summary = FlowerDeviceSummary(nodeID: nodeID, endpoint: fleet.transport.endpoint, serverVersion: version,
                                          messages: [], runsFinished: [])
        defer {
            heartbeat.stop()
            fleet.disconnect()
            FlowerLog.info("left (node \(nodeID) deactivated\(fleet.selfRegister ? " and unregistered" : ""); \(heartbeat.acknowledged) heartbeats acknowledged)")
        }
        var currentRun: UInt64?
        var knownRuns = Set<UInt64>()
        while !stopFlag.isSet {
            if let failure = heartbeat.failure { throw failure }
            guard let (message, traffic) = try fleet.pullMessage() else {
                if let run = currentRun, options.runs != nil, try runFinished(run) {
                    summary.runsFinished.append(run)
                    FlowerLog.info("run \(run) finished")
                    currentRun = nil
                    if summary.runsFinished.count >= options.runs! { break }
                }
                stopFlag.wait(seconds: options.pollInterval)
                continue
            }
            let md = message.metadata
            if knownRuns.insert(md.runID).inserted {
                if let info = try? fleet.run(md.runID) {
                    FlowerLog.info("run \(md.runID): app \(info.fabID.isEmpty ? "?" : info.fabID) \(info.fabVersion) (\(info.status))")
                }
            }
            currentRun = md.runID
            let (reply, handled) = handle(message, traffic: traffic)
            var record = handled
            let sent = try fleet.push(reply, runtime: handled.seconds)
            record.bytesOut = sent.bytes
            summary.messages.append(record)
            let round = message.round.map { " round \($0)" } ?? ""
            if let e = record.error {
                FlowerLog.warn("run \(md.runID)\(round): \(md.messageType) message answered with an error: \(e)")
            } else {
                let m = record.metrics.sorted { $0.key < $1.key }.map { "\($0.key) \(Self.format($0.value))" }.joined(separator: ", ")
                FlowerLog.info("run \(md.runID)\(round): \(md.messageType) in \(String(format: "%.2f", record.seconds)) s (\(m)); received \(Self.megabytes(record.bytesIn)), sent \(Self.megabytes(record.bytesOut))")
            }
            try onMessage?(message, reply, record)
        }
        summary.heartbeats = heartbeat.acknowledged
        return summary
    }

    /// Runs `app` on a message and builds the reply (an error reply for unsupported types and
    /// failures, so the ServerApp learns what happened instead of waiting).
    func handle(_ message: FlowerMessage, traffic: MessageTraffic) -> (FlowerMessage, HandledMessage) {
        let md = message.metadata
        let t0 = Date()
        var record = HandledMessage(runID: md.runID, round: message.round, type: md.messageType, error: nil, seconds: 0,
                                    bytesIn: traffic.bytes, bytesOut: 0, metrics: [:])
        let reply: FlowerMessage
        do {
            guard let content = message.content else {
                throw FlowerError(.content, "the \(md.messageType) message carries an error (\(message.error?.reason ?? "")) instead of content")
            }
            let category = md.messageType.split(separator: ".", maxSplits: 1).first.map(String.init) ?? ""
            let out: RecordDict
            switch category {
            case "train": out = try app.train(content, metadata: md)
            case "evaluate": out = try app.evaluate(content, metadata: md)
            default: throw Self.unsupported(md.messageType)
            }
            for (_, m) in out.metricRecords { for (k, v) in m.values.items { if let d = v.number { record.metrics[k] = d } } }
            reply = FlowerMessage.reply(to: md, content: out)
        } catch {
            let reason = (error as? FlowerError)?.message ?? "\(error)"
            record.error = reason
            reply = FlowerMessage.reply(to: md, content: nil,
                                        error: MessageError(code: FlowerProtocol.ErrorCode.clientAppRaisedException.rawValue, reason: "Frugal device: " + reason))
        }
        record.seconds = Date().timeIntervalSince(t0)
        return (reply, record)
    }

    /// The error for message types other than train and evaluate.
    public static func unsupported(_ type: String) -> FlowerError {
        FlowerError(.unsupportedMessage, "message type '\(type)' is not supported: a Frugal device handles 'train' and 'evaluate' messages (and their '<type>.<action>' forms), not '\(type.split(separator: ".").first.map(String.init) ?? type)'")
    }

    /// True when the SuperLink says the run is finished (or no longer lets this node see it).
    func runFinished(_ run: UInt64) throws -> Bool {
        do {
            return try fleet.run(run).status == "finished"
        } catch let e as FlowerError where e.code == FlowerProtocol.ApiErrorCode.runStatusNotAllowed.rawValue
            || e.code == FlowerProtocol.ApiErrorCode.getRunFailed.rawValue {
            return true
        }
    }

    static func format(_ v: Double) -> String {
        v == v.rounded() && abs(v) < 1e9 ? String(Int(v)) : String(format: "%.4f", v)
    }
    static func megabytes(_ b: Int) -> String { String(format: "%.2f MB", Double(b) / 1e6) }
}

/// Sends heartbeats every interval × 0.8 (± 10 %), as Flower's `HeartbeatSender`; records the
/// first fatal failure (the SuperLink no longer knows the node) for the device loop to raise.
final class HeartbeatThread: @unchecked Sendable {  // state behind `lock`; the thread only reads `fleet`
    let fleet: FleetClient
    let interval: Double
    private let lock = NSLock()
    private var _failure: FlowerError?
    private let stopFlag = AtomicFlag()
    private let finished = DispatchSemaphore(value: 0)

    init(fleet: FleetClient, interval: Double) { self.fleet = fleet; self.interval = interval }

    private var _acknowledged = 0
    var failure: FlowerError? { lock.lock(); defer { lock.unlock() }; return _failure }
    /// Heartbeats the SuperLink acknowledged so far.
    var acknowledged: Int { lock.lock(); defer { lock.unlock() }; return _acknowledged }

    func start() {
        let t = Thread { [self] in
            var rng = SystemRandomNumberGenerator()
            while !stopFlag.isSet {
                let wait = interval * FlowerProtocol.heartbeatMultiplier * Double.random(in: 0.9...1.1, using: &rng)
                stopFlag.wait(seconds: wait)
                if stopFlag.isSet { break }
                do {
                    if try !fleet.heartbeat(interval: interval) {
                        lock.lock(); _failure = FlowerError(.server, "the SuperLink no longer recognises this node (heartbeat refused)"); lock.unlock()
                        break
                    }
                    lock.lock(); _acknowledged += 1; lock.unlock()
                } catch let e as FlowerError where e.kind == .authentication {
                    lock.lock(); _failure = e; lock.unlock()
                    break
                } catch {
                    FlowerLog.warn("heartbeat failed: \(error)")
                }
            }
            finished.signal()
        }
        t.name = "flower-heartbeat"
        t.start()
    }

    func stop() {
        stopFlag.set()
        finished.wait()
    }
}

/// A flag one thread sets and others test or wait on.
final class AtomicFlag: @unchecked Sendable {  // guarded by `condition`
    private let condition = NSCondition()
    private var value = false
    var isSet: Bool { condition.lock(); defer { condition.unlock() }; return value }
    func set() { condition.lock(); value = true; condition.broadcast(); condition.unlock() }
    /// Waits until set or `seconds` pass.
    func wait(seconds: Double) {
        condition.lock()
        let deadline = Date(timeIntervalSinceNow: seconds)
        while !value, condition.wait(until: deadline) {}
        condition.unlock()
    }
}
