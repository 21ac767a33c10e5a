import Foundation
import XCTest
import FrugalCore
import FrugalNN
import FrugalData
import FrugalFederated
@testable import FrugalFlower

/// Signed metadata against flwr's keys and signatures; error handling against real loopback servers.
final class FlowerProtocolTests: XCTestCase {
    func testKeysAndSignaturesMatchFlower() throws {
        let auth = try Fixture.json("auth")
        for curve in ["p384", "p256"] {
            let f = auth[curve] as! [String: Any]
            let publicPEM = Array((f["public_pem"] as! String).utf8)
            for format in ["private_pem", "private_sec1_pem", "private_openssh"] {
                let id = try NodeIdentity(privateKeyText: f[format] as! String, source: "\(curve) \(format)")
                // Byte for byte what flwr sends and stores as the node's public key.
                XCTAssertEqual(id.publicKeyPEM, publicPEM, "\(curve) \(format)")
            }
            let ts = Array((f["timestamp"] as! String).utf8)
            let flowerSignature = Fixture.bytes(f["signature"])
            XCTAssertTrue(NodeIdentity.verify(signature: flowerSignature, message: ts, publicKeyPEM: publicPEM), curve)
            XCTAssertFalse(NodeIdentity.verify(signature: flowerSignature, message: ts + [0x20], publicKeyPEM: publicPEM), curve)
            let id = try NodeIdentity(privateKeyText: f["private_pem"] as! String)
            let ours = try id.sign(ts)
            XCTAssertTrue(NodeIdentity.verify(signature: ours, message: ts, publicKeyPEM: publicPEM), curve)
            var bad = ours
            bad[bad.count - 1] ^= 1
            XCTAssertFalse(NodeIdentity.verify(signature: bad, message: ts, publicKeyPEM: publicPEM), curve)
        }
        let fresh = NodeIdentity.generate()
        XCTAssertTrue(String(decoding: fresh.publicKeyPEM, as: UTF8.self).hasPrefix("-----BEGIN PUBLIC KEY-----\n"))
        let (ts, sig) = try fresh.signedTimestamp()
        XCTAssertTrue(NodeIdentity.verify(signature: sig, message: Array(ts.utf8), publicKeyPEM: fresh.publicKeyPEM))
        XCTAssertThrowsError(try NodeIdentity(privateKeyText: "not a key", source: "k.pem")) { e in
            XCTAssertEqual((e as? FlowerError)?.kind, .authentication)
            XCTAssertTrue("\(e)".hasPrefix("k.pem:"))
        }
    }

    func testTimestampsAreWhatPythonIsoformatWrites() {
        XCTAssertEqual(NodeIdentity.isoTimestamp(Date(timeIntervalSince1970: 1765130595.123456)), "2025-12-07T18:03:15.123456+00:00")
        XCTAssertEqual(NodeIdentity.isoTimestamp(Date(timeIntervalSince1970: 1765130595)), "2025-12-07T18:03:15+00:00")
        XCTAssertEqual(NodeIdentity.isoTimestamp(Date(timeIntervalSince1970: 0.5)), "1970-01-01T00:00:00.500000+00:00")
    }

    func testFleetPathsAndMethodsAreFlowers() {
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
            XCTAssertEqual(rpc.httpPath, paths[rpc])
            let d = GRPCFleetTransport.descriptor(rpc)
            XCTAssertEqual(d.service.fullyQualifiedService, "flwr.proto.Fleet")
            XCTAssertEqual(d.method, rpc.rawValue)
        }
    }

    func testVersionCompatibilityIsMajorMinor() {
        XCTAssertTrue(FlowerProtocol.compatible("1.42.0"))
        XCTAssertTrue(FlowerProtocol.compatible("1.42.7"))
        XCTAssertFalse(FlowerProtocol.compatible("1.41.0"))
        XCTAssertFalse(FlowerProtocol.compatible("2.42.0"))
        XCTAssertFalse(FlowerProtocol.compatible("garbage"))
    }

    /// A SuperLink that reports another Flower version is refused before the node registers.
    func testVersionMismatchIsRefusedBeforeJoining() throws {
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
        XCTAssertThrowsError(try device.run()) { e in
            let f = e as? FlowerError
            XCTAssertEqual(f?.kind, .versionMismatch)
            XCTAssertTrue(f?.message.contains("runs Flower 1.43.1; this device speaks the Fleet API of Flower 1.42.0") ?? false, "\(e)")
        }
        XCTAssertEqual(calls.paths, ["/openapi.json"])
    }

    /// A server without the Fleet HTTP API (an older SuperLink) and one that refuses the signature.
    func testMissingFleetAPIAndRefusedSignatureGiveClearErrors() throws {
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
        XCTAssertThrowsError(try makeDevice(port: server.port).run()) { e in
            let f = e as? FlowerError
            XCTAssertEqual(f?.kind, .authentication, "\(e)")
            XCTAssertTrue(f?.message.contains("refused this node's signed metadata on RegisterNode (Invalid SuperNode authentication)") ?? false, "\(e)")
            XCTAssertTrue(f?.message.contains("clock") ?? false)
        }
        // An activation on a server that has no Fleet HTTP API at all.
        let identity = NodeIdentity.generate()
        let fleet = FleetClient(transport: HTTPFleetTransport(host: "127.0.0.1", port: server.port, identity: identity), identity: identity, selfRegister: false)
        XCTAssertThrowsError(try fleet.connect()) { e in
            XCTAssertEqual((e as? FlowerError)?.kind, .versionMismatch)
            XCTAssertTrue("\(e)".contains("has no /v1/fleet/activate-node (HTTP 404)"), "\(e)")
            XCTAssertTrue("\(e)".contains("--transport grpc"))
        }
    }

    func testFlowerErrorCodesAreTranslated() throws {
        let server = try LoopbackHTTPServer { _, _, _, _ in
            LoopbackHTTPServer.response(412, "Precondition Failed", "application/json",
                                        Array(#"{"code":2001,"detail":"SuperNode authentication is enabled."}"#.utf8))
        }
        defer { server.stop() }
        let identity = NodeIdentity.generate()
        let fleet = FleetClient(transport: HTTPFleetTransport(host: "127.0.0.1", port: server.port, identity: identity), identity: identity)
        XCTAssertThrowsError(try fleet.connect()) { e in
            let f = e as? FlowerError
            XCTAssertEqual(f?.kind, .authentication)
            XCTAssertEqual(f?.code, 2001)
            XCTAssertTrue(f?.message.contains("flwr supernode register") ?? false, "\(e)")
        }
        let version = FleetErrors.http(status: 412, reason: "", body: Array(#"{"code":1001,"detail":"Runtime version compatibility check failed.","extra":"SuperLink 1.43.0 expected 1.43"}"#.utf8),
                                       rpc: .pullMessages, endpoint: "http://x:1")
        XCTAssertEqual(version.kind, .versionMismatch)
        XCTAssertTrue(version.message.contains("SuperLink 1.43.0 expected 1.43"))
    }

    func testNonHTTPServerAndClosedPortAreTransportOrProtocolErrors() throws {
        // An HTTP/2-only server answers an HTTP/1.1 request with a binary SETTINGS frame.
        let server = try LoopbackHTTPServer { _, _, _, _ in [0, 0, 0, 4, 0, 0, 0, 0, 0] }
        defer { server.stop() }
        let identity = NodeIdentity.generate()
        let t = HTTPFleetTransport(host: "127.0.0.1", port: server.port, identity: identity, timeout: 5)
        XCTAssertThrowsError(try t.call(.pullMessages, [])) { e in
            XCTAssertEqual((e as? FlowerError)?.kind, .protocolViolation)
            XCTAssertTrue("\(e)".contains("did not answer in HTTP/1.x"), "\(e)")
        }
        let closed = HTTPFleetTransport(host: "127.0.0.1", port: 1, identity: identity)
        XCTAssertThrowsError(try closed.call(.pullMessages, [])) { e in
            XCTAssertEqual((e as? FlowerError)?.kind, .transport)
            XCTAssertTrue("\(e)".contains("cannot connect to 127.0.0.1:1"), "\(e)")
        }
    }

    func testChunkedResponsesAndKeepAlive() throws {
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
            XCTAssertEqual(r.status, 200)
            XCTAssertEqual(String(decoding: r.body, as: UTF8.self), "/p\(i)AB")
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
