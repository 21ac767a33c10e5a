import Foundation
import GRPCCore
import Logging
import FrugalFederated

/// The gRPC service of the coordinator: authenticates every device call (enrolment token →
/// device id, which must be the id the call names), validates every message before use and turns
/// the coordinator's answers into streams.
struct FederationService: Frugal_Fl_V1_Federation.ServiceProtocol {
    let coordinator: Coordinator
    let enrolment: EnrolmentStore
    let logger: Logger
    static func chunk(_ k: Frugal_Fl_V1_TaskChunk.OneOf_Kind) -> Frugal_Fl_V1_TaskChunk {
        var c = Frugal_Fl_V1_TaskChunk()
        c.kind = k
        return c
    }

    /// Longest a GetTask call is held open.
    static let maxWait = 60.0

    /// The device a call's credentials name; throws `unauthenticated` / `permissionDenied`.
    func authenticate(_ metadata: Metadata, claims device: UInt32, call: String) throws -> Int {
        switch enrolment.enrolment.authenticate(bearerToken(metadata)) {
        case .failure(let e):
            coordinator.metrics.refusedCalls.increment()
            logger.warning("refused a call", metadata: ["call": "\(call)", "claimed_device": "\(device)", "reason": "\(e.message)"])
            throw RPCError(code: .unauthenticated, message: e.message)
        case .success(let d):
            guard d == Int(device) else {
                coordinator.metrics.refusedCalls.increment()
                let why = "the credentials of device \(d) cannot act for device \(device)"
                logger.warning("refused a call", metadata: ["call": "\(call)", "device": "\(d)", "claimed_device": "\(device)", "reason": "\(why)"])
                throw RPCError(code: .permissionDenied, message: why)
            }
            guard d < coordinator.engine.deviceCount else {
                throw RPCError(code: .permissionDenied, message: "device \(d) is enrolled but this run has only \(coordinator.engine.deviceCount) devices")
            }
            return d
        }
    }

    func join(request: ServerRequest<Frugal_Fl_V1_JoinRequest>, context: ServerContext) async throws
        -> ServerResponse<Frugal_Fl_V1_JoinReply> {
        let d = try authenticate(request.metadata, claims: request.message.deviceID, call: "Join")
        coordinator.noteJoin(d)
        let e = coordinator.engine
        let snap = coordinator.snapshot()
        var reply = Frugal_Fl_V1_JoinReply()
        reply.runID = coordinator.runID
        reply.runArguments = coordinator.options.runArguments
        reply.layout = e.layout.segments.map { s in
            var t = Frugal_Fl_V1_TensorSpec()
            t.name = s.name
            t.count = UInt64(s.count)
            t.dtype = "f32"
            return t
        }
        reply.samples = UInt64(e.samples(device: d))
        reply.rounds = UInt32(snap.rounds)
        reply.completedRounds = UInt32(snap.completed)
        logger.info("device joined", metadata: ["device": "\(d)"])
        return ServerResponse(message: reply)
    }

    func getTask(request: ServerRequest<Frugal_Fl_V1_TaskRequest>, context: ServerContext) async throws
        -> StreamingServerResponse<Frugal_Fl_V1_TaskChunk> {
        let m = request.message
        let d = try authenticate(request.metadata, claims: m.deviceID, call: "GetTask")
        guard m.runID == coordinator.runID else {
            throw RPCError(code: .failedPrecondition, message: "run \(m.runID) is not this server's run \(coordinator.runID): join again")
        }
        let want = coordinator.engine.samples(device: d)
        guard m.samples == UInt64(want) else {
            logger.warning("device data mismatch", metadata: ["device": "\(d)", "samples": "\(m.samples)", "expected": "\(want)"])
            throw RPCError(code: .failedPrecondition, message: "device \(d) holds \(m.samples) samples, the run's partition gives it \(want): different data or run options")
        }
        let until = Date().addingTimeInterval(min(Double(m.waitSeconds), Self.maxWait))
        var answer = Coordinator.TaskAnswer.wait
        while true {
            answer = coordinator.task(for: d, copyDigest: m.copyDigest, lastRound: Int(m.lastRound), previousDigest: m.previousDigest)
            if case .wait = answer, Date() < until {
                try await Task.sleep(nanoseconds: 50_000_000)
                continue
            }
            break
        }
        switch answer {
        case .wait:
            return StreamingServerResponse { w in try await w.write(Self.chunk(.idle(.init()))); return [:] }
        case .finished(let rounds):
            var f_ = Frugal_Fl_V1_Finished()
            f_.rounds = UInt32(rounds)
            let f = f_
            return StreamingServerResponse { w in try await w.write(Self.chunk(.finished(f))); return [:] }
        case .refused(let why):
            throw RPCError(code: .failedPrecondition, message: why)
        case .task(let a, let left):
            var h = Frugal_Fl_V1_TaskHeader()
            h.round = UInt32(a.round)
            h.batchSize = UInt32(a.batchSize)
            h.totalBytes = UInt64(a.download.count)
            h.uploadSettings = a.uploadSettings
            if let s = a.staleness { h.staleness = UInt32(s) }
            h.secondsLeft = left
            var end_ = Frugal_Fl_V1_TaskEnd()
            end_.digest = StreamDigest.of(a.download)
            let (end, head) = (end_, h)
            let coordinator = self.coordinator
            return StreamingServerResponse { w in
                try await w.write(Self.chunk(.header(head)))
                for c in a.download.chunks(of: WireLimits.chunkBytes) { try await w.write(Self.chunk(.data(c))) }
                try await w.write(Self.chunk(.end(end)))
                coordinator.countDownload(a.download.count)
                return [:]
            }
        }
    }

    func submitUpdate(request: StreamingServerRequest<Frugal_Fl_V1_UpdateChunk>, context: ServerContext) async throws
        -> ServerResponse<Frugal_Fl_V1_SubmitReply> {
        var reply = Frugal_Fl_V1_SubmitReply()
        var iterator = request.messages.makeAsyncIterator()
        guard let first = try await iterator.next(), case .header(let h)? = first.kind else {
            throw RPCError(code: .invalidArgument, message: "an update starts with its header")
        }
        let d = try authenticate(request.metadata, claims: h.deviceID, call: "SubmitUpdate")
        guard h.runID == coordinator.runID else {
            throw RPCError(code: .failedPrecondition, message: "run \(h.runID) is not this server's run \(coordinator.runID)")
        }
        let round = Int(h.round)
        if let why = coordinator.admissible(device: d, round: round) {
            coordinator.metrics.late.increment()
            logger.notice("discarded an update", metadata: ["device": "\(d)", "round": "\(round)", "reason": "\(why)"])
            reply.reason = why
            return ServerResponse(message: reply)
        }
        guard h.samples <= 1 << 32, h.loss.isFinite else {
            let why = "header has \(h.samples) samples and loss \(h.loss) (need ≤ 2^32 and finite)"
            coordinator.rejectMalformed(device: d, round: round, reason: why, bytes: 0)
            reply.reason = why
            return ServerResponse(message: reply)
        }
        if !h.refused.isEmpty {
            let why = String(h.refused.prefix(500))
            logger.notice("device refused its own update", metadata: ["device": "\(d)", "round": "\(round)", "reason": "\(why)"])
            reply.reason = coordinator.refuse(device: d, round: round, reason: why, samples: Int(h.samples), loss: h.loss) ?? "refusal recorded"
            return ServerResponse(message: reply)
        }
        let layout = coordinator.engine.layout
        let limit = coordinator.engine.maxUploadBytes
        guard h.totalBytes <= UInt64(limit) else {
            let why = "upload of \(h.totalBytes) bytes exceeds the limit of \(limit) bytes for a model of \(layout.count) parameters"
            coordinator.rejectMalformed(device: d, round: round, reason: why, bytes: 0)
            reply.reason = why
            return ServerResponse(message: reply)
        }
        let total = Int(h.totalBytes)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(total)
        while let msg = try await iterator.next() {
            guard case .data(let data)? = msg.kind else {
                let why = "a second header inside the upload stream"
                coordinator.rejectMalformed(device: d, round: round, reason: why, bytes: bytes.count)
                reply.reason = why
                return ServerResponse(message: reply)
            }
            guard bytes.count + data.count <= total else {
                let why = "upload stream longer than the \(total) bytes its header announced"
                coordinator.rejectMalformed(device: d, round: round, reason: why, bytes: bytes.count + data.count)
                reply.reason = why
                return ServerResponse(message: reply)
            }
            bytes.append(contentsOf: data)
        }
        guard bytes.count == total else {
            let why = "upload stream ended after \(bytes.count) of \(total) bytes"
            coordinator.rejectMalformed(device: d, round: round, reason: why, bytes: bytes.count)
            reply.reason = why
            return ServerResponse(message: reply)
        }
        guard StreamDigest.of(bytes) == h.digest else {
            let why = "upload stream digest does not match its header"
            coordinator.rejectMalformed(device: d, round: round, reason: why, bytes: bytes.count)
            reply.reason = why
            return ServerResponse(message: reply)
        }
        if let why = coordinator.submit(device: d, round: round, bytes: bytes, samples: Int(h.samples), loss: h.loss) {
            reply.reason = why
        } else {
            reply.accepted = true
        }
        return ServerResponse(message: reply)
    }

    func status(request: ServerRequest<Frugal_Fl_V1_StatusRequest>, context: ServerContext) async throws
        -> ServerResponse<Frugal_Fl_V1_StatusReply> {
        let s = coordinator.snapshot()
        var r = Frugal_Fl_V1_StatusReply()
        r.runID = coordinator.runID
        r.strategy = coordinator.engine.strategyName
        r.rounds = UInt32(s.rounds)
        r.completedRounds = UInt32(s.completed)
        r.phase = s.phase
        r.openRound = UInt32(s.openRound)
        r.selected = UInt32(s.selected)
        r.received = UInt32(s.received)
        r.devicesSeen = UInt32(s.seen)
        r.bytesDown = UInt64(s.bytesDown)
        r.bytesUp = UInt64(s.bytesUp)
        r.rejected = UInt64(s.rejected)
        r.accuracy = s.accuracy ?? -1
        return ServerResponse(message: r)
    }
}
