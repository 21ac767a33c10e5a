import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2

/// The Fleet API over gRPC (`flwr.proto.Fleet`, unary calls), as SuperNodes before Flower 1.42
/// spoke it and the 1.42 SuperLink still serves when started with `FLWR_INTERNAL_GRPC_FLEET_API=1`
/// (default address 0.0.0.0:9092). The signed metadata travels as gRPC metadata:
/// `flwr-public-key-bin` and `flwr-signature-bin` (binary), `flwr-timestamp` (text).
///
/// Calls block the calling thread until the response arrives (the device loop and its heartbeat
/// thread are plain threads); the gRPC client runs its connections on NIO's event loops.
public final class GRPCFleetTransport: FleetTransport, @unchecked Sendable {  // immutable after init
    public let host: String
    public let port: Int
    let identity: NodeIdentity
    let timeout: Double
    let client: GRPCClient<HTTP2ClientTransport.Posix>
    let runner: Task<Void, Error>

    /// - Parameter rootCertificates: PEM file of the CA that signed the SuperLink's certificate
    ///   (TLS); nil for a plain-text connection (`flower-superlink --insecure`).
    public init(host: String, port: Int, identity: NodeIdentity, rootCertificates: String? = nil, timeout: Double = 60) throws {
        self.host = host; self.port = port; self.identity = identity; self.timeout = timeout
        let security: HTTP2ClientTransport.Posix.TransportSecurity
        if let ca = rootCertificates {
            guard FileManager.default.isReadableFile(atPath: ca) else {
                throw FlowerError(.transport, "root certificates file '\(ca)' cannot be read")
            }
            security = .tls { $0.trustRoots = .certificates([.file(path: ca, format: .pem)]) }
        } else {
            security = .plaintext
        }
        // An IP literal must not go into TLS SNI (NIOSSL refuses it): address such hosts as IPs, so
        // the certificate is checked against the IP address instead of a name.
        var probe4 = in_addr(), probe6 = in6_addr()
        let target: any ResolvableTarget
        if inet_pton(AF_INET, host, &probe4) == 1 {
            target = .ipv4(address: host, port: port)
        } else if inet_pton(AF_INET6, host, &probe6) == 1 {
            target = .ipv6(address: host, port: port)
        } else {
            target = .dns(host: host, port: port)
        }
        let transport = try HTTP2ClientTransport.Posix(target: target, transportSecurity: security)
        let client = GRPCClient(transport: transport)
        self.client = client
        self.runner = Task { try await client.runConnections() }
    }

    public var endpoint: String { "grpc://" + (host.contains(":") ? "[\(host)]" : host) + ":\(port)" }

    public func call(_ rpc: FlowerProtocol.RPC, _ request: [UInt8]) throws -> [UInt8] {
        let (timestamp, signature) = try identity.signedTimestamp()
        var metadata = Metadata()
        metadata.addString(FlowerProtocol.packageName, forKey: FlowerProtocol.packageNameHeader)
        metadata.addString(FlowerProtocol.version, forKey: FlowerProtocol.packageVersionHeader)
        metadata.addString(FlowerProtocol.componentName, forKey: FlowerProtocol.componentNameHeader)
        metadata.addBinary(identity.publicKeyPEM, forKey: FlowerProtocol.grpcPublicKeyKey)
        metadata.addString(timestamp, forKey: FlowerProtocol.timestampHeader)
        metadata.addBinary(signature, forKey: FlowerProtocol.grpcSignatureKey)
        var options = CallOptions.defaults
        options.timeout = .milliseconds(Int64(timeout * 1000))
        options.maxResponseMessageBytes = 1 << 30
        options.maxRequestMessageBytes = 1 << 30
        let descriptor = Self.descriptor(rpc)
        let client = self.client
        let endpoint = self.endpoint
        let box = ResultBox()
        let done = DispatchSemaphore(value: 0)
        Task {
            do {
                let bytes = try await client.unary(
                    request: ClientRequest(message: request, metadata: metadata), descriptor: descriptor,
                    serializer: RawBytesCoder(), deserializer: RawBytesCoder(), options: options
                ) { response in
                    for warning in response.trailingMetadata[stringValues: FlowerProtocol.versionIncompatibilityHeader] {
                        FlowerLog.warnOnce("SuperLink: \(warning)")
                    }
                    return try response.message
                }
                box.set(.success(bytes))
            } catch let e as RPCError {
                box.set(.failure(GRPCFleetTransport.translate(e, rpc: rpc, endpoint: endpoint)))
            } catch {
                box.set(.failure(FlowerError(.transport, "\(rpc.rawValue) to \(endpoint) failed: \(error)")))
            }
            done.signal()
        }
        done.wait()
        return try box.get()
    }

    /// gRPC statuses → errors: UNAUTHENTICATED is an authentication failure, UNIMPLEMENTED a
    /// SuperLink without this Fleet call, UNAVAILABLE a transport failure; Flower puts its
    /// `ApiErrorCode` JSON in the status message.
    static func translate(_ e: RPCError, rpc: FlowerProtocol.RPC, endpoint: String) -> FlowerError {
        let json = (try? JSONSerialization.jsonObject(with: Data(e.message.utf8))) as? [String: Any]
        let code = json?["code"] as? Int
        let detail = (json?["public_message"] as? String) ?? e.message
        switch e.code {
        case .unauthenticated:
            return FleetErrors.authentication(rpc: rpc, endpoint: endpoint, detail: detail)
        case .unimplemented:
            return FlowerError(.versionMismatch, "the SuperLink at \(endpoint) does not implement Fleet.\(rpc.rawValue) (gRPC UNIMPLEMENTED): it is not a Flower \(FlowerProtocol.version)-compatible Fleet API")
        case .unavailable, .deadlineExceeded:
            return FlowerError(.transport, "\(rpc.rawValue) to \(endpoint): \(e.code) \(e.message)\(e.cause.map { " (\($0))" } ?? "")")
        default:
            if let code {
                return FleetErrors.server(code: code, detail: detail, extra: json?["public_details"] as? String, rpc: rpc, status: "gRPC \(e.code)")
            }
            return FlowerError(.server, "\(rpc.rawValue) failed: gRPC \(e.code): \(e.message)")
        }
    }

    /// The generated descriptor of each Fleet call (`fleet.grpc.swift`).
    static func descriptor(_ rpc: FlowerProtocol.RPC) -> MethodDescriptor {
        switch rpc {
        case .registerNode: return Flwr_Proto_Fleet.Method.RegisterNode.descriptor
        case .activateNode: return Flwr_Proto_Fleet.Method.ActivateNode.descriptor
        case .deactivateNode: return Flwr_Proto_Fleet.Method.DeactivateNode.descriptor
        case .unregisterNode: return Flwr_Proto_Fleet.Method.UnregisterNode.descriptor
        case .sendNodeHeartbeat: return Flwr_Proto_Fleet.Method.SendNodeHeartbeat.descriptor
        case .pullMessages: return Flwr_Proto_Fleet.Method.PullMessages.descriptor
        case .pushMessages: return Flwr_Proto_Fleet.Method.PushMessages.descriptor
        case .getRun: return Flwr_Proto_Fleet.Method.GetRun.descriptor
        case .getFab: return Flwr_Proto_Fleet.Method.GetFab.descriptor
        case .pushObject: return Flwr_Proto_Fleet.Method.PushObject.descriptor
        case .pullObject: return Flwr_Proto_Fleet.Method.PullObject.descriptor
        case .confirmMessageReceived: return Flwr_Proto_Fleet.Method.ConfirmMessageReceived.descriptor
        }
    }

    /// The gRPC Fleet API does not say its version.
    public func serverVersion() throws -> String? { nil }

    public func close() {
        client.beginGracefulShutdown()
        runner.cancel()
    }

    deinit { close() }
}

/// Hands a result from the task that made the call to the thread waiting for it.
private final class ResultBox: @unchecked Sendable {  // guarded by `lock`
    private let lock = NSLock()
    private var result: Result<[UInt8], Error> = .failure(FlowerError(.transport, "no result"))
    func set(_ r: Result<[UInt8], Error>) { lock.lock(); result = r; lock.unlock() }
    func get() throws -> [UInt8] { lock.lock(); defer { lock.unlock() }; return try result.get() }
}

/// Passes serialised protobuf bytes through gRPC unchanged (the messages are built by the caller).
struct RawBytesCoder: MessageSerializer, MessageDeserializer {
    typealias Message = [UInt8]
    func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes { Bytes(message) }
    func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> [UInt8] {
        serializedMessageBytes.withUnsafeBytes { Array($0) }
    }
}
