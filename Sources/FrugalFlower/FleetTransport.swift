import Foundation

/// How Fleet API calls reach the SuperLink: a serialised protobuf request in, the serialised
/// response out, with the node's signed metadata and Flower's version metadata on every call.
public protocol FleetTransport: AnyObject, Sendable {
    /// "http://127.0.0.1:9093" or "grpc://127.0.0.1:9092", for messages.
    var endpoint: String { get }
    func call(_ rpc: FlowerProtocol.RPC, _ request: [UInt8]) throws -> [UInt8]
    /// The SuperLink's Flower version if it tells (nil when unknown).
    func serverVersion() throws -> String?
    func close()
}

/// Which transport `frugal fl join` uses.
public enum FleetTransportKind: String, Sendable, CaseIterable {
    /// Protobuf over HTTP/1.1: Flower 1.42's Fleet API (`flower-superlink --port`, default 9093 here).
    case http
    /// gRPC (the SuperLink's legacy Fleet gRPC API on 9092, started with `FLWR_INTERNAL_GRPC_FLEET_API=1`).
    case grpc
}

/// Flower 1.42's Fleet API: each call a POST of the protobuf request to `/v1/fleet/<call>`
/// (`application/protobuf`), answered by the protobuf response or a JSON error
/// `{"code", "detail", "extra"}` (`flwr/supernode/fleet_http_client.py`, `supercore/protobuf`).
/// The signed metadata travels as headers: `flwr-public-key` and `flwr-signature` base64,
/// `flwr-timestamp` as text. Plain HTTP only (no TLS).
public final class HTTPFleetTransport: FleetTransport, @unchecked Sendable {  // the pool is locked
    public let host: String
    public let port: Int
    let identity: NodeIdentity
    let timeout: Double
    private let lock = NSLock()
    private var idle: [HTTPConnection] = []

    public init(host: String, port: Int, identity: NodeIdentity, timeout: Double = 60) {
        self.host = host; self.port = port; self.identity = identity; self.timeout = timeout
    }

    public var endpoint: String { "http://" + (host.contains(":") ? "[\(host)]" : host) + ":\(port)" }

    private func withConnection<T>(_ body: (HTTPConnection) throws -> T) throws -> T {
        lock.lock()
        let c = idle.popLast() ?? HTTPConnection(host: host, port: port, timeout: timeout)
        lock.unlock()
        defer { lock.lock(); idle.append(c); lock.unlock() }
        return try body(c)
    }

    public func call(_ rpc: FlowerProtocol.RPC, _ request: [UInt8]) throws -> [UInt8] {
        let (timestamp, signature) = try identity.signedTimestamp()
        let headers: [(String, String)] = [
            ("Content-Type", FlowerProtocol.protobufMediaType),
            ("Accept", FlowerProtocol.protobufMediaType),
            (FlowerProtocol.packageNameHeader, FlowerProtocol.packageName),
            (FlowerProtocol.packageVersionHeader, FlowerProtocol.version),
            (FlowerProtocol.componentNameHeader, FlowerProtocol.componentName),
            (FlowerProtocol.httpPublicKeyHeader, Data(identity.publicKeyPEM).base64EncodedString()),
            (FlowerProtocol.timestampHeader, timestamp),
            (FlowerProtocol.httpSignatureHeader, Data(signature).base64EncodedString()),
        ]
        let r = try withConnection { try $0.request(method: "POST", path: rpc.httpPath, headers: headers, body: request) }
        if let warning = r.header(FlowerProtocol.versionIncompatibilityHeader) {
            FlowerLog.warnOnce("SuperLink: \(warning)")
        }
        if r.status == 200 { return r.body }
        throw FleetErrors.http(status: r.status, reason: r.reason, body: r.body, rpc: rpc, endpoint: endpoint)
    }

    /// The `version` of the SuperLink's API description (`GET /openapi.json`: FastAPI's
    /// `info.version`, which flwr sets to its package version).
    public func serverVersion() throws -> String? {
        let r = try withConnection { try $0.request(method: "GET", path: "/openapi.json", headers: [("Accept", "application/json")], body: []) }
        guard r.status == 200,
              let json = try? JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any],
              let info = json["info"] as? [String: Any] else { return nil }
        return info["version"] as? String
    }

    public func close() {
        lock.lock(); let cs = idle; idle.removeAll(); lock.unlock()
        for c in cs { c.close() }
    }
}

/// Turns SuperLink error answers into `FlowerError`s that say what happened and what to check.
enum FleetErrors {
    static func http(status: Int, reason: String, body: [UInt8], rpc: FlowerProtocol.RPC, endpoint: String) -> FlowerError {
        let text = String(decoding: body.prefix(4096), as: UTF8.self)
        let json = (try? JSONSerialization.jsonObject(with: Data(body.prefix(65536)))) as? [String: Any]
        let detail = json?["detail"] as? String
        let code = json?["code"] as? Int
        let extra = json?["extra"] as? String
        if status == 401 {
            return authentication(rpc: rpc, endpoint: endpoint, detail: detail ?? text)
        }
        if status == 404 {
            return FlowerError(.versionMismatch, "\(endpoint) has no \(rpc.httpPath) (HTTP 404): it does not serve the Fleet HTTP API of Flower \(FlowerProtocol.version). A SuperLink of Flower 1.41 or older serves the Fleet API over gRPC only: use --transport grpc with its Fleet address (9092), or upgrade it to flwr \(FlowerProtocol.version)")
        }
        if let code { return server(code: code, detail: detail ?? "", extra: extra, rpc: rpc, status: "HTTP \(status)") }
        return FlowerError(.server, "\(rpc.rawValue) failed: HTTP \(status) \(reason) \(text.prefix(300))")
    }

    static func authentication(rpc: FlowerProtocol.RPC, endpoint: String, detail: String) -> FlowerError {
        FlowerError(.authentication, "the SuperLink at \(endpoint) refused this node's signed metadata on \(rpc.rawValue) (\(detail)). Check that this machine's clock is within 5 s of the SuperLink's, and, on a SuperLink with --enable-supernode-auth, that --key is the private key of a SuperNode registered with `flwr supernode register`")
    }

    static func server(code: Int, detail: String, extra: String?, rpc: FlowerProtocol.RPC, status: String) -> FlowerError {
        let what = "[code \(code)] \(detail)\(extra.map { " (\($0))" } ?? "")"
        switch FlowerProtocol.ApiErrorCode(rawValue: code) {
        case .runtimeVersionIncompatible:
            return FlowerError(.versionMismatch, "the SuperLink refused this device's Flower version \(FlowerProtocol.version) on \(rpc.rawValue): \(what)", code: code)
        case .registrationDisabled:
            return FlowerError(.authentication, "the SuperLink has SuperNode authentication enabled and does not let nodes register themselves: register this node's public key with `flwr supernode register` and start it with --key PRIVATE_KEY (\(what))", code: code)
        default:
            return FlowerError(.server, "\(rpc.rawValue) failed (\(status)): \(what)", code: code)
        }
    }
}

/// Log lines of the device (standard output, unbuffered).
public enum FlowerLog {
    nonisolated(unsafe) public static var quiet = false
    private static let lock = NSLock()
    nonisolated(unsafe) private static var said = Set<String>()
    public static func info(_ s: String) { write("[flower] " + s) }
    public static func warn(_ s: String) { write("[flower] warning: " + s) }
    /// A warning the SuperLink repeats on every call, logged once.
    static func warnOnce(_ s: String) {
        lock.lock()
        let first = said.insert(s).inserted
        lock.unlock()
        if first { warn(s) }
    }
    static func write(_ s: String) {
        guard !quiet else { return }
        lock.lock(); defer { lock.unlock() }
        FileHandle.standardOutput.write(Data((s + "\n").utf8))
    }
}
