import Foundation
import Logging
import FrugalFederated

/// Settings of a coordinator besides the run itself.
public struct CoordinatorOptions: Sendable {
    /// Seconds a round stays open for uploads.
    public var roundDeadline: Double = 60
    /// Accepted updates that close a round before its deadline (nil: every selected device).
    public var closeAfter: Int? = nil
    /// Folder of the checkpoint (`checkpoint.safetensors`) and the upload journal (`journal/`).
    public var stateDirectory: String
    /// The `fl run` options of the run, sent to devices at join.
    public var runArguments: [String]
    /// Checkpoint every round (the default; only tests turn it off).
    public var checkpoint = true
    public init(stateDirectory: String, runArguments: [String]) {
        self.stateDirectory = stateDirectory
        self.runArguments = runArguments
    }
}

/// The server's side of a deployment: drives the round engine (`FederatedSimulation` or a
/// `TaskEngine`, the same classes the simulators use) on its own thread with itself as the
/// transport, and holds the open round for the gRPC handlers. Every round it waits until all selected devices have
/// answered, `closeAfter` updates were accepted, or the deadline passed; uploads are checked on
/// arrival, journalled (fsync) before they are acknowledged, and aggregated in selection order
/// when the round closes; then the whole run state is checkpointed atomically. Restarted, it
/// resumes after the last checkpointed round and replays the journal of the open one.
public final class Coordinator: RoundTransport, @unchecked Sendable {
    // @unchecked Sendable: every mutable field is guarded by `cond`; the engine is used only on
    // the engine thread, or by handlers holding `cond` while the engine waits in `exchange`.
    public let engine: any CoordinatedEngine
    public let options: CoordinatorOptions
    public let runID: String
    public let metrics: FederationMetrics
    let logger: Logger
    let journal: UploadJournal
    let checkpointURL: URL
    let cond = NSCondition()

    struct OpenRound {
        var round: Int
        var assignments: [DeviceAssignment]
        var index: [Int: Int]
        var outcomes: [DeviceOutcome?]
        var deadline: Date
        var opened: Date
        var closed = false
        var accepted = 0
        var fetched = Set<Int>()
    }
    var open: OpenRound?
    var finished = false
    var failure: String?
    /// Digest of the model copy each device should hold before the open round.
    var expected: [Int: UInt64] = [:]
    /// What the selected devices hold once they decoded this round's download.
    var pending: [Int: UInt64] = [:]
    var resync = Set<Int>()
    var seen = Set<Int>()
    var rejectedTotal = 0
    var bytesDownTotal = 0, bytesUpTotal = 0
    var completed = 0
    var lastAccuracy: Double?
    /// Test hook: behave as if killed once this many updates of this round are journalled (the
    /// round is neither aggregated nor checkpointed; the journal stays).
    public var crashWhenJournalled: (round: Int, count: Int)?
    /// Wall-clock seconds of each completed round (exchange and aggregation), for benchmarks.
    public private(set) var roundLatencies: [Double] = []

    public init(engine: any CoordinatedEngine, options: CoordinatorOptions, metrics: FederationMetrics = FederationMetrics(),
                logger: Logger = Logger(label: "frugal.fl.server")) throws {
        self.engine = engine
        self.options = options
        self.metrics = metrics
        self.logger = logger
        let dir = URL(fileURLWithPath: options.stateDirectory)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        journal = try UploadJournal(directory: dir.appendingPathComponent("journal"))
        checkpointURL = dir.appendingPathComponent("checkpoint.safetensors")
        runID = String(format: "%016llx", StreamDigest.of(Array(options.runArguments.joined(separator: "\u{1F}").utf8)))
        guard options.roundDeadline > 0, options.roundDeadline.isFinite else {
            throw DeploymentError("round deadline \(options.roundDeadline) s must be positive")
        }
        if let c = options.closeAfter, c < 1 { throw DeploymentError("closeAfter \(c) must be ≥ 1") }
        if FileManager.default.fileExists(atPath: checkpointURL.path) {
            try engine.resume(from: checkpointURL)
            logger.info("resumed from checkpoint", metadata: ["round": "\(engine.round)", "path": "\(checkpointURL.path)"])
        }
        journal.clear(upTo: engine.round)
        completed = engine.round
        lastAccuracy = engine.lastAccuracy
        for d in 0 ..< engine.deviceCount {
            if let c = engine.modelCopy(device: d) { expected[d] = StreamDigest.of(copy: c) }
        }
    }

    /// Runs the remaining rounds on the calling thread (not a Swift concurrency thread: it blocks
    /// while a round is open); checkpoints after each.
    public func runRounds() throws {
        do {
            while engine.round < engine.rounds {
                cond.lock()
                for d in resync.sorted() {
                    engine.forgetDevice(d)
                    expected[d] = nil
                }
                resync = []
                cond.unlock()
                let start = Date()
                let row = try engine.runRound(via: self)
                if options.checkpoint { try engine.saveCheckpoint(to: checkpointURL) }
                journal.clear(upTo: row.round)
                let seconds = Date().timeIntervalSince(start)
                cond.lock()
                roundLatencies.append(seconds)
                open = nil
                completed = row.round
                if let a = row.accuracy { lastAccuracy = a }
                cond.unlock()
                metrics.roundsCompleted.increment()
                metrics.roundLatency.record(seconds)
                if let a = row.accuracy { metrics.lastAccuracy.set(a) }
                logger.info("round complete", metadata: [
                    "round": "\(row.round)", "selected": "\(row.selected)", "accepted": "\(row.accepted)",
                    "accuracy": "\(row.accuracy.map { String(format: "%.4f", $0) } ?? "-")",
                    "bytes_down": "\(row.bytesDown)", "bytes_up": "\(row.bytesUp)", "seconds": "\(String(format: "%.3f", seconds))"])
            }
        } catch {
            cond.lock()
            failure = "\(error)"
            finished = true
            cond.broadcast()
            cond.unlock()
            throw error
        }
        cond.lock()
        finished = true
        cond.broadcast()
        cond.unlock()
    }

    // MARK: RoundTransport

    public func exchange(_ assignments: [DeviceAssignment], engine: FederatedSimulation) throws -> [DeviceOutcome?] {
        try exchange(assignments)
    }

    /// Opens a round for `assignments` (download streams), waits until it closes, returns what
    /// came back (nil: nothing usable before the round closed).
    public func exchange(_ assignments: [DeviceAssignment]) throws -> [DeviceOutcome?] {
        cond.lock()
        defer { cond.unlock() }
        let t = assignments.first?.round ?? engine.round
        var o = OpenRound(round: t, assignments: assignments, index: [:], outcomes: Array(repeating: nil, count: assignments.count),
                          deadline: Date().addingTimeInterval(options.roundDeadline), opened: Date())
        pending = [:]
        for (j, a) in assignments.enumerated() {
            o.index[a.device] = j
            pending[a.device] = StreamDigest.of(copy: engine.modelCopy(device: a.device))
            do {
                if let e = try journal.read(round: t, device: a.device) {
                    let (u, why) = engine.checkUpload(e.bytes, device: a.device)
                    if let u {
                        o.outcomes[j] = .checked(update: u, bytes: e.bytes.count, samples: e.samples, loss: e.loss)
                        o.accepted += 1
                        o.fetched.insert(a.device)
                        logger.info("replayed a journalled update", metadata: ["round": "\(t)", "device": "\(a.device)"])
                    } else {
                        logger.warning("journalled update no longer decodes; dropped", metadata: ["round": "\(t)", "device": "\(a.device)", "reason": "\(why ?? "")"])
                        journal.remove(round: t, device: a.device)
                    }
                }
            } catch {
                logger.warning("unreadable journal entry; dropped", metadata: ["round": "\(t)", "device": "\(a.device)", "error": "\(error)"])
                journal.remove(round: t, device: a.device)
            }
        }
        open = o
        metrics.devicesSelected.set(Double(assignments.count))
        logger.info("round open", metadata: ["round": "\(t)", "selected": "\(assignments.map(\.device))",
                                             "deadline_s": "\(options.roundDeadline)"])
        cond.broadcast()
        let need = min(options.closeAfter ?? assignments.count, assignments.count)
        while true {
            guard let cur = open else { break }
            if let c = crashWhenJournalled, c.round == t, cur.accepted >= c.count {
                throw DeploymentError("simulated crash in round \(t) after \(cur.accepted) journalled updates")
            }
            if cur.outcomes.allSatisfy({ $0 != nil }) || cur.accepted >= need { break }
            if !cond.wait(until: cur.deadline) {
                logger.warning("round deadline passed", metadata: ["round": "\(t)", "accepted": "\(cur.accepted)",
                                                                   "missing": "\(cur.assignments.indices.filter { cur.outcomes[$0] == nil }.map { cur.assignments[$0].device })"])
                break
            }
        }
        open!.closed = true
        let done = open!
        // Devices that fetched their download now hold this round's copy; a selected device that
        // never fetched it does not, so the server forgets its mirror (next download self-contained).
        for a in assignments {
            if done.fetched.contains(a.device) { expected[a.device] = pending[a.device] } else { resync.insert(a.device) }
        }
        return done.outcomes
    }

    // MARK: called by the gRPC handlers

    /// A task for `device` if the open round selected it and it has not answered yet; checks that
    /// the device holds the model copy the server's mirror expects.
    enum TaskAnswer {
        case task(DeviceAssignment, secondsLeft: Double)
        case wait
        case finished(rounds: Int)
        case refused(String)
    }

    func task(for device: Int, copyDigest: UInt64, lastRound: Int, previousDigest: UInt64) -> TaskAnswer {
        cond.lock()
        defer { cond.unlock() }
        if finished {
            if let failure { return .refused("the run stopped: \(failure)") }
            return .finished(rounds: completed)
        }
        guard var o = open, !o.closed, let j = o.index[device], o.outcomes[j] == nil else { return .wait }
        let holds = lastRound == o.round ? previousDigest : copyDigest
        let want = expected[device] ?? 0
        if holds != want {
            let why = "the device's model copy (digest \(String(holds, radix: 16))) is not the one the server expects (\(String(want, radix: 16))): it lost or changed its state; it sits this round out and gets a self-contained download next time"
            o.outcomes[j] = .refused(reason: why, bytes: 0, samples: 0, loss: 0)
            open = o
            resync.insert(device)
            cond.broadcast()
            logger.warning("device state mismatch", metadata: ["round": "\(o.round)", "device": "\(device)"])
            return .refused(why)
        }
        o.fetched.insert(device)
        open = o
        return .task(o.assignments[j], secondsLeft: o.deadline.timeIntervalSinceNow)
    }

    func countDownload(_ bytes: Int) {
        metrics.bytesDown.increment(by: Int64(bytes))
        cond.lock(); bytesDownTotal += bytes; cond.unlock()
    }

    /// Checks whether `device` may submit for `round` now (nil) or why not.
    func admissible(device: Int, round: Int) -> String? {
        cond.lock()
        defer { cond.unlock() }
        guard let o = open, o.round == round else {
            return "round \(round) is not open (open: \(open.map { "\($0.round)" } ?? "none"), completed: \(completed))"
        }
        if o.closed { return "round \(round) closed before the update arrived" }
        guard let j = o.index[device] else { return "device \(device) was not selected in round \(round)" }
        if o.outcomes[j] != nil { return "device \(device) already answered round \(round)" }
        return nil
    }

    /// Records a device's own refusal of its update.
    func refuse(device: Int, round: Int, reason: String, samples: Int, loss: Double) -> String? {
        cond.lock()
        defer { cond.unlock() }
        guard var o = open, o.round == round, !o.closed, let j = o.index[device], o.outcomes[j] == nil else {
            return "round \(round) is not open for device \(device)"
        }
        o.outcomes[j] = .refused(reason: "the device refused its update: \(reason)", bytes: 0, samples: samples, loss: loss)
        open = o
        cond.broadcast()
        return nil
    }

    /// Checks an upload (decode, size, finite values), journals it, and adds it to the round.
    /// Returns nil when accepted, else the reason (also logged and counted).
    func submit(device: Int, round: Int, bytes: [UInt8], samples: Int, loss: Double) -> String? {
        cond.lock()
        if let why = admissibleLocked(device: device, round: round) {
            cond.unlock()
            return why
        }
        let (update, why) = engine.checkUpload(bytes, device: device)
        guard let update else {
            let reason = why ?? "rejected"
            reject(device: device, round: round, reason: reason, bytes: bytes.count, samples: samples, loss: loss)
            cond.unlock()
            return reason
        }
        cond.unlock()
        do {
            try journal.write(.init(round: round, device: device, samples: samples, loss: loss, bytes: bytes))
        } catch {
            logger.error("journal write failed", metadata: ["round": "\(round)", "device": "\(device)", "error": "\(error)"])
            return "the server could not journal the update: \(error)"
        }
        cond.lock()
        defer { cond.unlock() }
        if let why = admissibleLocked(device: device, round: round) {
            journal.remove(round: round, device: device)
            metrics.late.increment()
            return why
        }
        var o = open!
        o.outcomes[o.index[device]!] = .checked(update: update, bytes: bytes.count, samples: samples, loss: loss)
        o.accepted += 1
        // Test hook: the "crash" takes effect at once, so no later update gets in.
        if let c = crashWhenJournalled, c.round == round, o.accepted >= c.count { o.closed = true }
        open = o
        bytesUpTotal += bytes.count
        metrics.bytesUp.increment(by: Int64(bytes.count))
        metrics.updatesAccepted.increment()
        cond.broadcast()
        return nil
    }

    func admissibleLocked(device: Int, round: Int) -> String? {
        guard let o = open, o.round == round else { return "round \(round) is not open" }
        if o.closed { return "round \(round) closed before the update arrived" }
        guard let j = o.index[device] else { return "device \(device) was not selected in round \(round)" }
        if o.outcomes[j] != nil { return "device \(device) already answered round \(round)" }
        return nil
    }

    /// Marks a device's update of the open round rejected (caller holds `cond`).
    func reject(device: Int, round: Int, reason: String, bytes: Int, samples: Int, loss: Double) {
        rejectedTotal += 1
        metrics.rejected.increment()
        logger.warning("rejected an update", metadata: ["round": "\(round)", "device": "\(device)", "reason": "\(reason)"])
        guard var o = open, o.round == round, !o.closed, let j = o.index[device], o.outcomes[j] == nil else { return }
        o.outcomes[j] = .refused(reason: reason, bytes: bytes, samples: samples, loss: loss)
        open = o
        cond.broadcast()
    }

    /// Rejects a malformed upload before it could be checked (oversized, truncated, bad digest).
    func rejectMalformed(device: Int, round: Int, reason: String, bytes: Int) {
        cond.lock()
        reject(device: device, round: round, reason: reason, bytes: bytes, samples: 0, loss: 0)
        cond.unlock()
    }

    func noteJoin(_ device: Int) {
        cond.lock()
        seen.insert(device)
        let n = seen.count
        cond.unlock()
        metrics.devicesSeen.set(Double(n))
    }

    /// A snapshot for `Status`.
    struct Snapshot {
        var completed: Int, rounds: Int, phase: String, openRound: Int, selected: Int, received: Int, seen: Int
        var bytesDown: Int, bytesUp: Int, rejected: Int, accuracy: Double?
    }

    func snapshot() -> Snapshot {
        cond.lock()
        defer { cond.unlock() }
        let o = open
        let phase = finished ? (failure == nil ? "finished" : "failed") : (o == nil ? "starting" : (o!.closed ? "aggregating" : "waiting"))
        return Snapshot(completed: completed, rounds: engine.rounds, phase: phase, openRound: o?.round ?? 0,
                        selected: o?.assignments.count ?? 0, received: o?.outcomes.filter { $0 != nil }.count ?? 0, seen: seen.count,
                        bytesDown: bytesDownTotal, bytesUp: bytesUpTotal, rejected: rejectedTotal,
                        accuracy: lastAccuracy)
    }
}
