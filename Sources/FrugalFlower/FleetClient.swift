import Foundation
import SwiftProtobuf

/// A run as the SuperLink describes it (`GetRun`).
public struct FlowerRunInfo: Sendable, Equatable {
    public var runID: UInt64
    /// "pending", "starting", "running" or "finished".
    public var status: String
    /// For finished runs: "completed", "failed" or "stopped".
    public var subStatus: String
    public var fabID: String
    public var fabVersion: String
}

/// Traffic of one pulled or pushed message.
public struct MessageTraffic: Sendable, Equatable {
    /// Objects transferred (of the message's tree).
    public var objects = 0
    /// Bytes of object content transferred.
    public var bytes = 0
}

/// A SuperNode's session with a SuperLink over one `FleetTransport`: registration and activation,
/// heartbeats, pulling messages with their objects, pushing replies with theirs, and leaving
/// (the calls of `flwr/supernode/fleet_http_connection.py`).
///
///     let fleet = FleetClient(transport: HTTPFleetTransport(host: "127.0.0.1", port: 9093, identity: id), identity: id)
///     try fleet.connect()
///     if let (message, traffic) = try fleet.pullMessage() { ...; try fleet.push(reply, runtime: 1.2) }
///     fleet.disconnect()
public final class FleetClient: @unchecked Sendable {  // nodeID is set once, before other threads use it
    public let transport: FleetTransport
    public let identity: NodeIdentity
    /// Register the key before activating (false: the key was registered with `flwr supernode register`).
    public let selfRegister: Bool
    /// Seconds to keep retrying calls that fail in transport (connection refused or broken).
    public var retrySeconds = 60.0
    /// Largest array chunk of pushed replies (bytes).
    public var chunkSize = FlowerProtocol.defaultChunkSize
    /// Seconds to keep asking for an object the SuperLink knows but does not have yet.
    public var objectWaitSeconds = 600.0
    public private(set) var nodeID: UInt64?

    public init(transport: FleetTransport, identity: NodeIdentity, selfRegister: Bool = true) {
        self.transport = transport; self.identity = identity; self.selfRegister = selfRegister
    }

    var node: Flwr_Proto_Node {
        var n = Flwr_Proto_Node()
        n.nodeID = nodeID ?? 0
        return n
    }

    /// `body`, retried with backoff while it fails in transport, for up to `retrySeconds`.
    func retrying<T>(_ body: () throws -> T) throws -> T {
        let start = Date()
        var delay = 0.5
        while true {
            do {
                return try body()
            } catch let e as FlowerError where e.kind == .transport && Date().timeIntervalSince(start) + delay < retrySeconds {
                FlowerLog.warn("\(e.message); retrying in \(String(format: "%.1f", delay)) s")
                Thread.sleep(forTimeInterval: delay)
                delay = min(delay * 2, 10)
            }
        }
    }

    /// One Fleet call, retried while the transport fails (`retrying`).
    func call<Response: SwiftProtobuf.Message>(_ rpc: FlowerProtocol.RPC, _ request: some SwiftProtobuf.Message,
                                                 as: Response.Type = Response.self) throws -> Response {
        let bytes: [UInt8] = try request.serializedBytes()
        let answer = try retrying { try transport.call(rpc, bytes) }
        do { return try Response(serializedBytes: answer) } catch {
            throw FlowerError(.protocolViolation, "\(rpc.rawValue): the SuperLink's answer is not a \(Response.protoMessageName) (\(answer.count) bytes: \(error))")
        }
    }

    /// The SuperLink's Flower version, when its transport tells (retried like the calls).
    public func serverVersion() throws -> String? { try retrying { try transport.serverVersion() } }

    /// Registers (when `selfRegister`) and activates the node; returns its node id.
    @discardableResult
    public func connect(heartbeatInterval: Double = FlowerProtocol.heartbeatInterval) throws -> UInt64 {
        guard FlowerProtocol.heartbeatBounds.contains(heartbeatInterval) else {
            throw FlowerError(.content, "heartbeat interval \(heartbeatInterval) s is outside the SuperLink's bounds \(FlowerProtocol.heartbeatBounds)")
        }
        if selfRegister {
            var r = Flwr_Proto_RegisterNodeFleetRequest()
            r.publicKey = Data(identity.publicKeyPEM)
            _ = try call(.registerNode, r, as: Flwr_Proto_RegisterNodeFleetResponse.self)
        }
        var a = Flwr_Proto_ActivateNodeRequest()
        a.publicKey = Data(identity.publicKeyPEM)
        a.heartbeatInterval = heartbeatInterval
        let response: Flwr_Proto_ActivateNodeResponse
        do {
            response = try call(.activateNode, a, as: Flwr_Proto_ActivateNodeResponse.self)
        } catch let e as FlowerError where e.code == FlowerProtocol.ApiErrorCode.activationFailed.rawValue && !selfRegister {
            throw FlowerError(.authentication, "the SuperLink did not activate this node: its public key is not registered there. Register it with `flwr supernode register KEY.pub` (the public half of --key) and try again (\(e.message))", code: e.code)
        }
        guard response.nodeID != 0 else { throw FlowerError(.protocolViolation, "ActivateNode returned node id 0") }
        nodeID = response.nodeID
        return response.nodeID
    }

    /// Tells the SuperLink the node is alive; false when it no longer knows the node.
    public func heartbeat(interval: Double = FlowerProtocol.heartbeatInterval) throws -> Bool {
        var r = Flwr_Proto_SendNodeHeartbeatRequest()
        r.node = node
        r.heartbeatInterval = interval
        return try call(.sendNodeHeartbeat, r, as: Flwr_Proto_SendNodeHeartbeatResponse.self).success
    }

    /// The next message for this node with all its objects (nil when there is none): pulls the
    /// message and its object tree, every object of the tree (waiting for those not yet stored),
    /// checks each against its id, confirms receipt and rebuilds the message.
    public func pullMessage() throws -> (FlowerMessage, MessageTraffic)? {
        var r = Flwr_Proto_PullMessagesRequest()
        r.node = node
        let response = try call(.pullMessages, r, as: Flwr_Proto_PullMessagesResponse.self)
        guard let proto = response.messagesList.first else { return nil }
        guard let tree = response.messageObjectTrees.first else {
            throw FlowerError(.protocolViolation, "PullMessages returned a message without its object tree")
        }
        let metadata = ObjectCodec.metadata(proto.metadata)
        var ids: [String] = []
        var seen = Set<String>()
        func visit(_ t: Flwr_Proto_ObjectTree) {
            for c in t.children { visit(c) }
            if seen.insert(t.objectID).inserted { ids.append(t.objectID) }
        }
        visit(tree)
        var contents: [String: [UInt8]] = [:]
        var traffic = MessageTraffic()
        for id in ids {
            let c = try pullObject(runID: metadata.runID, objectID: id)
            guard FlowerObject.hash(c) == id else {
                throw FlowerError(.content, "object \(id) of message \(metadata.messageID): its content hashes to \(FlowerObject.hash(c))")
            }
            contents[id] = c
            traffic.objects += 1
            traffic.bytes += c.count
        }
        var confirm = Flwr_Proto_ConfirmMessageReceivedRequest()
        confirm.node = node
        confirm.runID = metadata.runID
        confirm.messageObjectID = tree.objectID
        _ = try call(.confirmMessageReceived, confirm, as: Flwr_Proto_ConfirmMessageReceivedResponse.self)
        var message = try ObjectCodec.inflateMessage(root: tree.objectID, contents: contents)
        // The metadata the SuperLink delivered (with the message id) is the one to reply to.
        message.metadata = metadata
        if message.metadata.messageID.isEmpty { message.metadata.messageID = tree.objectID }
        return (message, traffic)
    }

    func pullObject(runID: UInt64, objectID: String) throws -> [UInt8] {
        var r = Flwr_Proto_PullObjectRequest()
        r.node = node
        r.runID = runID
        r.objectID = objectID
        let start = Date()
        var delay = 0.2
        while true {
            let response = try call(.pullObject, r, as: Flwr_Proto_PullObjectResponse.self)
            guard response.objectFound else {
                throw FlowerError(.protocolViolation, "PullObject: the SuperLink does not know object \(objectID) of run \(runID)")
            }
            if response.objectAvailable { return [UInt8](response.objectContent) }
            guard Date().timeIntervalSince(start) < objectWaitSeconds else {
                throw FlowerError(.transport, "object \(objectID) of run \(runID) was not available within \(Int(objectWaitSeconds)) s")
            }
            Thread.sleep(forTimeInterval: delay)
            delay = min(delay * 2, 10)
        }
    }

    /// Pushes a reply: the message (metadata with its object id, empty content) and its object
    /// tree, then every object the SuperLink asks for. `runtime`: seconds spent handling the message.
    @discardableResult
    public func push(_ reply: FlowerMessage, runtime: Double) throws -> MessageTraffic {
        let root = try ObjectCodec.deflate(reply, chunkSize: chunkSize)
        var metadata = reply.metadata
        metadata.messageID = root.id
        var proto = Flwr_Proto_Message()
        proto.metadata = ObjectCodec.protoMetadata(metadata)
        if let e = reply.error {
            var pe = Flwr_Proto_Error()
            pe.code = e.code
            pe.reason = e.reason
            proto.error = pe
        } else {
            proto.content = Flwr_Proto_RecordDict()  // content travels as objects
        }
        var r = Flwr_Proto_PushMessagesRequest()
        r.node = node
        r.messagesList = [proto]
        r.messageObjectTrees = [root.tree]
        r.clientappRuntimeList = [runtime]
        let response = try call(.pushMessages, r, as: Flwr_Proto_PushMessagesResponse.self)
        let wanted = Set(response.objectsToPush)
        var traffic = MessageTraffic()
        // The SuperLink answers every push alike but asks for no objects when it did not store the
        // message (its reply root is always new, so a stored reply always asks for it).
        if !wanted.contains(root.id) {
            throw FlowerError(.server, "the SuperLink did not accept the reply to message \(reply.metadata.replyToMessageID) (run \(metadata.runID)): it may have expired or the run may have ended")
        }
        for (id, content) in root.postOrder where wanted.contains(id) {
            var p = Flwr_Proto_PushObjectRequest()
            p.node = node
            p.runID = metadata.runID
            p.objectID = id
            p.objectContent = Data(content)
            p.sessionID = response.sessionID
            guard try call(.pushObject, p, as: Flwr_Proto_PushObjectResponse.self).stored else {
                throw FlowerError(.server, "the SuperLink did not store object \(id) of the reply (push session \(response.sessionID) expired or replaced)")
            }
            traffic.objects += 1
            traffic.bytes += content.count
        }
        return traffic
    }

    /// The run's status and app (`GetRun`).
    public func run(_ runID: UInt64) throws -> FlowerRunInfo {
        var r = Flwr_Proto_GetRunRequest()
        r.node = node
        r.runID = runID
        let run = try call(.getRun, r, as: Flwr_Proto_GetRunResponse.self).run
        return FlowerRunInfo(runID: run.runID, status: run.status.status, subStatus: run.status.subStatus,
                             fabID: run.fabID, fabVersion: run.fabVersion)
    }

    /// Deactivates the node and, when it registered itself, unregisters it (errors are ignored:
    /// the node is leaving).
    public func disconnect() {
        guard let id = nodeID else { return }
        let saved = retrySeconds
        retrySeconds = 0
        defer { retrySeconds = saved }
        var d = Flwr_Proto_DeactivateNodeRequest()
        d.nodeID = id
        _ = try? call(.deactivateNode, d, as: Flwr_Proto_DeactivateNodeResponse.self)
        if selfRegister {
            var u = Flwr_Proto_UnregisterNodeFleetRequest()
            u.nodeID = id
            _ = try? call(.unregisterNode, u, as: Flwr_Proto_UnregisterNodeFleetResponse.self)
        }
        nodeID = nil
    }
}
