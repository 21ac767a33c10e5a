import Foundation
import Crypto
import FrugalNN

/// The devices allowed to take part: per device id the SHA-256 of its enrolment token (the token
/// itself is never stored on the server) and whether it was revoked. A JSON file:
///
///     {"devices": [{"device": 0, "tokenSHA256": "9f86d0…", "revoked": false}, …]}
///
/// `frugal fl enrol` adds a device (printing its new token once) or revokes one.
public struct Enrolment: Codable, Sendable, Equatable {
    public struct Entry: Codable, Sendable, Equatable {
        public var device: Int
        public var tokenSHA256: String
        public var revoked: Bool
    }
    public var devices: [Entry] = []
    public init(devices: [Entry] = []) { self.devices = devices }

    /// Hex SHA-256 of a token.
    public static func hash(_ token: String) -> String { hex(Array(SHA256.hash(data: Data(token.utf8)))) }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(2 * bytes.count)
        for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }

    /// A new random token: 32 bytes from the system's secure generator, hex.
    public static func newToken() -> String {
        var g = SystemRandomNumberGenerator()
        return hex((0 ..< 32).map { _ in UInt8.random(in: 0 ... 255, using: &g) })
    }

    /// Enrols `device` with a new token (replacing any earlier one) and returns the token.
    public mutating func enrol(device: Int) -> String {
        let token = Self.newToken()
        devices.removeAll { $0.device == device }
        devices.append(Entry(device: device, tokenSHA256: Self.hash(token), revoked: false))
        devices.sort { $0.device < $1.device }
        return token
    }

    /// Marks `device` revoked; throws when it is not enrolled.
    public mutating func revoke(device: Int) throws {
        guard let i = devices.firstIndex(where: { $0.device == device }) else {
            throw DeploymentError("device \(device) is not enrolled")
        }
        devices[i].revoked = true
    }

    /// The device a token belongs to, or why it is refused.
    public func authenticate(_ token: String?) -> Result<Int, DeploymentError> {
        guard let token, !token.isEmpty else { return .failure(DeploymentError("no credentials (authorization: Bearer TOKEN)")) }
        let h = Self.hash(token)
        guard let e = devices.first(where: { $0.tokenSHA256 == h }) else {
            return .failure(DeploymentError("unknown credentials (not an enrolled device)"))
        }
        if e.revoked { return .failure(DeploymentError("device \(e.device) is revoked")) }
        return .success(e.device)
    }

    public static func load(path: String) throws -> Enrolment {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DeploymentError("enrolment file \(path): cannot read it")
        }
        let e: Enrolment
        do { e = try JSONDecoder().decode(Enrolment.self, from: data) } catch {
            throw DeploymentError("enrolment file \(path): not an enrolment list: \(error)")
        }
        var seen = Set<Int>()
        for d in e.devices {
            guard d.device >= 0, seen.insert(d.device).inserted else {
                throw DeploymentError("enrolment file \(path): device \(d.device) is negative or listed twice")
            }
            guard d.tokenSHA256.count == 64, d.tokenSHA256.allSatisfy(\.isHexDigit) else {
                throw DeploymentError("enrolment file \(path): device \(d.device) has no 64-digit hex tokenSHA256")
            }
        }
        return e
    }

    /// Writes the file atomically.
    public func save(path: String) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(Array(try enc.encode(self)), to: URL(fileURLWithPath: path))
    }
}

/// The enrolment list of a running server, read again when its file changes (checked at most once
/// a second), so that enrolling or revoking a device needs no restart.
public final class EnrolmentStore: @unchecked Sendable {
    let path: String?
    let lock = NSLock()
    var current: Enrolment
    var stamp: Date?
    var checked = Date.distantPast

    /// From a file (reloaded on change).
    public init(path: String) throws {
        self.path = path
        current = try Enrolment.load(path: path)
        stamp = Self.modified(path)
    }

    /// A fixed list (tests).
    public init(_ enrolment: Enrolment) {
        path = nil
        current = enrolment
    }

    static func modified(_ path: String) -> Date? {
        (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date
    }

    /// The current list (a changed file that cannot be read keeps the last good list).
    public var enrolment: Enrolment {
        lock.lock()
        defer { lock.unlock() }
        if let path, Date().timeIntervalSince(checked) >= 1 {
            checked = Date()
            let m = Self.modified(path)
            if m != stamp, let e = try? Enrolment.load(path: path) {
                current = e
                stamp = m
            }
        }
        return current
    }

    /// Replaces the list (tests; a file-backed store also picks up file changes).
    public func replace(_ e: Enrolment) {
        lock.lock()
        current = e
        lock.unlock()
    }
}
