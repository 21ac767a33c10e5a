import Foundation
import Testing
import FrugalCore
import FrugalNN
import FrugalData
import FrugalFederated
@testable import FrugalFlower

/// Signed metadata against flwr's keys and signatures; error handling against real loopback servers.
@Suite struct FlowerProtocolTests {
    @Test func keysAndSignaturesMatchFlower() throws {
        let auth = try Fixture.json("auth")
        for curve in ["p384", "p256"] {
            let f = auth[curve] as! [String: Any]
            let publicPEM = Array((f["public_pem"] as! String).utf8)
            for format in ["private_pem", "private_sec1_pem", "private_openssh"] {
                let id = try NodeIdentity(privateKeyText: f[format] as! String, source: "\(curve) \(format)")
                // Byte for byte what flwr sends and stores as the node's public key.
                #expect(id.publicKeyPEM == publicPEM, "\(curve) \(format)")
            }
            let ts = Array((f["timestamp"] as! String).utf8)
            let flowerSignature = Fixture.bytes(f["signature"])
            #expect(NodeIdentity.verify(signature: flowerSignature, message: ts, publicKeyPEM: publicPEM), "\(curve)")
            #expect(!(NodeIdentity.verify(signature: flowerSignature, message: ts + [0x20], publicKeyPEM: publicPEM)), "\(curve)")
            let id = try NodeIdentity(privateKeyText: f["private_pem"] as! String)
            let ours = try id.sign(ts)
            #expect(NodeIdentity.verify(signature: ours, message: ts, publicKeyPEM: publicPEM), "\(curve)")
            var bad = ours
            bad[bad.count - 1] ^= 1
            #expect(!(NodeIdentity.verify(signature: bad, message: ts, publicKeyPEM: publicPEM)), "\(curve)")
        }
        let fresh = NodeIdentity.generate()
        #expect(String(decoding: fresh.publicKeyPEM, as: UTF8.self).hasPrefix("-----BEGIN PUBLIC KEY-----\n"))
        let (ts, sig) = try fresh.signedTimestamp()
        #expect(NodeIdentity.verify(signature: sig, message: Array(ts.utf8), publicKeyPEM: fresh.publicKeyPEM))
        if let e = thrown({ try NodeIdentity(privateKeyText: "not a key", source: "k.pem") }) {
            #expect((e as? FlowerError)?.kind == .authentication)
            #expect("\(e)".hasPrefix("k.pem:"))
        }
    }

    @Test func timestampsAreWhatPythonIsoformatWrites() {
        #expect(NodeIdentity.isoTimestamp(Date(timeIntervalSince1970: 1765130595.123456)) == "2025-12-07T18:03:15.123456+00:00")
        #expect(NodeIdentity.isoTimestamp(Date(timeIntervalSince1970: 1765130595)) == "2025-12-07T18:03:15+00:00")
        #expect(NodeIdentity.isoTimestamp(Date(timeIntervalSince1970: 0.5)) == "1970-01-01T00:00:00.500000+00:00")
    }

    @Test func fleetPathsAndMethodsAreFlowers() {
        // flwr/supernode/fleet_http_client.py and the Fleet service of fleet.proto.
        let paths: [FlowerProtocol.RPC: String] = [
            .registerNode: "/v1/fleet/register-node", .activateNode: "/v1/fleet/activate-node",
            .deactivateNode: "/v1/fleet/deactivate-node", .unregisterNode: "/v1/fleet/unregister-node",
            .sendNodeHeartbeat: "/v1/fleet/send-node-heartbeat", .pullMessages: "/v1/fleet/pull-messages",
            .pushMessages: "/v1/fleet/push-messages", .getRun: "/v1/fleet/get-run", .getFab: "/v1/fleet/get-fab",
            .pushObject: "/v1/fleet/push-object", .pullObject: "/v1/fleet/pull-object",
            .confirmMessageReceived: "/v1/fleet/confirm-message-received",
        ]
        for rpc in FlowerProtocol.RPC.allCases {
            #expect(rpc.httpPath == paths[rpc])
            let d = GRPCFleetTransport.descriptor(rpc)
            #expect(d.service.fullyQualifiedService == "flwr.proto.Fleet")
            #expect(d.method == rpc.rawValue)
        }
    }

    @Test func versionCompatibilityIsMajorMinor() {
        #expect(FlowerProtocol.compatible("1.42.0"))
        #expect(FlowerProtocol.compatible("1.42.7"))
        #expect(!(FlowerProtocol.compatible("1.41.0")))
        #expect(!(FlowerProtocol.compatible("2.42.0")))
        #expect(!(FlowerProtocol.compatible("garbage")))
    }

    /// A SuperLink that reports another Flower version is refused before the node registers.
    @Test func versionMismatchIsRefusedBeforeJoining() throws {
        let calls = Counter()
        let server = try LoopbackHTTPServer { method, path, _, _ in
            calls.add(path)
            if path == "/openapi.json" {
                return LoopbackHTTPServer.response(200, "OK", "application/json", Array(#"{"openapi":"3.1.0","info":{"title":"SuperLink API","version":"1.43.1"}}"#.utf8))
            }
            return LoopbackHTTPServer.response(500, "Internal Server Error", "text/plain", [])
        }
        defer { server.stop() }
        let device = try makeDevice(port: server.port)
        if let e = thrown({ try device.run() }) {
            let f = e as? FlowerError
            #expect(f?.kind == .versionMismatch)
            #expect(f?.message.contains("runs Flower 1.43.1; this device speaks the Fleet API of Flower 1.42.0") ?? false, "\(e)")
        }
        #expect(calls.paths == ["/openapi.json"])
    }

    /// A server without the Fleet HTTP API (an older SuperLink) and one that refuses the signature.
    @Test func missingFleetAPIAndRefusedSignatureGiveClearErrors() throws {
        let server = try LoopbackHTTPServer { _, path, headers, body in
            if path == "/openapi.json" { return LoopbackHTTPServer.response(404, "Not Found", "application/json", Array(#"{"detail":"Not Found"}"#.utf8)) }
            if path == "/v1/fleet/register-node" {
                // Checks what a real SuperLink checks: the headers are there and the signature verifies.
                guard let key = headers["flwr-public-key"].flatMap({ Data(base64Encoded: $0) }),
                      let sig = headers["flwr-signature"].flatMap({ Data(base64Encoded: $0) }),
                      let ts = headers["flwr-timestamp"],
                      headers["content-type"] == "application/protobuf",
                      headers["flwr-package-version"] == "1.42.0",
                      NodeIdentity.verify(signature: [UInt8](sig), message: Array(ts.utf8), publicKeyPEM: [UInt8](key)),
                      let request = try? Flwr_Proto_RegisterNodeFleetRequest(serializedBytes: body),
                      request.publicKey == key else {
                    return LoopbackHTTPServer.response(400, "Bad Request", "text/plain", [])
                }
                return LoopbackHTTPServer.response(401, "Unauthorized", "application/json", Array(#"{"detail":"Invalid SuperNode authentication"}"#.utf8))
            }
            return LoopbackHTTPServer.response(404, "Not Found", "application/json", Array(#"{"detail":"Not Found"}"#.utf8))
        }
        defer { server.stop() }
        if let e = thrown({ try makeDevice(port: server.port).run() }) {
            let f = e as? FlowerError
            #expect(f?.kind == .authentication, "\(e)")
            #expect(f?.message.contains("refused this node's signed metadata on RegisterNode (Invalid SuperNode authentication)") ?? false, "\(e)")
            #expect(f?.message.contains("clock") ?? false)
        }
        // An activation on a server that has no Fleet HTTP API at all.
        let identity = NodeIdentity.generate()
        let fleet = FleetClient(transport: HTTPFleetTransport(host: "127.0.0.1", port: server.port, identity: identity), identity: identity, selfRegister: false)
        if let e = thrown({ try fleet.connect() }) {
            #expect((e as? FlowerError)?.kind == .versionMismatch)
            #expect("\(e)".contains("has no /v1/fleet/activate-node (HTTP 404)"), "\(e)")
            #expect("\(e)".contains("--transport grpc"))
        }
    }

    @Test func flowerErrorCodesAreTranslated() throws {
        let server = try LoopbackHTTPServer { _, _, _, _ in
            LoopbackHTTPServer.response(412, "Precondition Failed", "application/json",
                                        Array(#"{"code":2001,"detail":"SuperNode authentication is enabled."}"#.utf8))
        }
        defer { server.stop() }
        let identity = NodeIdentity.generate()
        let fleet = FleetClient(transport: HTTPFleetTransport(host: "127.0.0.1", port: server.port, identity: identity), identity: identity)
        if let e = thrown({ try fleet.connect() }) {
            let f = e as? FlowerError
            #expect(f?.kind == .authentication)
            #expect(f?.code == 2001)
            #expect(f?.message.contains("flwr supernode register") ?? false, "\(e)")
        }
        let version = FleetErrors.http(status: 412, reason: "", body: Array(#"{"code":1001,"detail":"Runtime version compatibility check failed.","extra":"SuperLink 1.43.0 expected 1.43"}"#.utf8),
                                       rpc: .pullMessages, endpoint: "http://x:1")
        #expect(version.kind == .versionMismatch)
        #expect(version.message.contains("SuperLink 1.43.0 expected 1.43"))
    }

    @Test func nonHTTPServerAndClosedPortAreTransportOrProtocolErrors() throws {
        // An HTTP/2-only server answers an HTTP/1.1 request with a binary SETTINGS frame.
        let server = try LoopbackHTTPServer { _, _, _, _ in [0, 0, 0, 4, 0, 0, 0, 0, 0] }
        defer { server.stop() }
        let identity = NodeIdentity.generate()
        let t = HTTPFleetTransport(host: "127.0.0.1", port: server.port, identity: identity, timeout: 5)
        if let e = thrown({ try t.call(.pullMessages, []) }) {
            #expect((e as? FlowerError)?.kind == .protocolViolation)
            #expect("\(e)".contains("did not answer in HTTP/1.x"), "\(e)")
        }
        let closed = HTTPFleetTransport(host: "127.0.0.1", port: 1, identity: identity)
        if let e = thrown({ try closed.call(.pullMessages, []) }) {
            #expect((e as? FlowerError)?.kind == .transport)
            #expect("\(e)".contains("cannot connect to 127.0.0.1:1"), "\(e)")
        }
    }

    @Test func chunkedResponsesAndKeepAlive() throws {
        let server = try LoopbackHTTPServer { _, path, _, body in
            let payload = Array(path.utf8) + body
            var out = Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
            for part in [payload.prefix(3), payload.dropFirst(3)] where !part.isEmpty {
                out += Array(String(part.count, radix: 16).utf8) + [13, 10] + part + [13, 10]
            }
            return out + Array("0\r\n\r\n".utf8)
        }
        defer { server.stop() }
        let c = HTTPConnection(host: "127.0.0.1", port: server.port)
        for i in 0..<3 {  // the same connection, three requests
            let r = try c.request(method: "POST", path: "/p\(i)", headers: [], body: [65, 66])
            #expect(r.status == 200)
            #expect(String(decoding: r.body, as: UTF8.self) == "/p\(i)AB")
        }
    }

    func makeDevice(port: Int) throws -> FlowerDevice {
        let identity = NodeIdentity.generate()
        let fleet = FleetClient(transport: HTTPFleetTransport(host: "127.0.0.1", port: port, identity: identity), identity: identity)
        fleet.retrySeconds = 0
        return FlowerDevice(fleet: fleet, app: try TinyApp.make())
    }
}

/// Paths a loopback server saw.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var _paths: [String] = []
    func add(_ p: String) { lock.lock(); _paths.append(p); lock.unlock() }
    var paths: [String] { lock.lock(); defer { lock.unlock() }; return _paths }
}
