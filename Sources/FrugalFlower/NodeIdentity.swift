import Crypto
import Foundation

/// The key pair a SuperNode signs its Fleet API calls with.
///
/// Every call carries the node's public key (PEM SubjectPublicKeyInfo, as Python's
/// `cryptography` writes it), the current time (`datetime.now(UTC).isoformat()`) and an ECDSA
/// signature over that timestamp's ASCII bytes with SHA-256 (DER). The SuperLink checks the
/// signature, that the timestamp is at most 5 s ahead and 305 s behind its clock, and that the
/// key belongs to the node id in the request (`flwr/superlink/routers/fleet/node_auth.py`).
/// A node that registers itself uses a fresh key; on a SuperLink with `--enable-supernode-auth`
/// the key must be one registered with `flwr supernode register`.
public struct NodeIdentity: Sendable {
    enum Key: @unchecked Sendable {  // the swift-crypto key types are immutable values
        case p256(P256.Signing.PrivateKey)
        case p384(P384.Signing.PrivateKey)
        case p521(P521.Signing.PrivateKey)
    }
    let key: Key
    /// The public key as Flower sends and stores it: PEM SubjectPublicKeyInfo bytes.
    public let publicKeyPEM: [UInt8]

    /// A new P-384 key pair (what Flower generates for a self-registering SuperNode).
    public static func generate() -> NodeIdentity { NodeIdentity(key: .p384(P384.Signing.PrivateKey())) }

    init(key: Key) {
        self.key = key
        let der: Data
        switch key {
        case .p256(let k): der = k.publicKey.derRepresentation
        case .p384(let k): der = k.publicKey.derRepresentation
        case .p521(let k): der = k.publicKey.derRepresentation
        }
        publicKeyPEM = Array(NodeIdentity.pem(der: der, label: "PUBLIC KEY").utf8)
    }

    /// Loads a private key: PEM (PKCS#8 "PRIVATE KEY" or SEC1 "EC PRIVATE KEY") or OpenSSH
    /// ("OPENSSH PRIVATE KEY", unencrypted, as `ssh-keygen -t ecdsa` writes and Flower's SuperNode
    /// reads) on the NIST curves P-256, P-384 or P-521.
    public init(privateKeyText text: String, source: String = "private key") throws {
        if text.contains("-----BEGIN OPENSSH PRIVATE KEY-----") {
            self.init(key: try OpenSSHKey.parse(text, source: source))
            return
        }
        // The curve's OID in the DER names the key type (trying each type in turn is not safe:
        // a P-384 parser may accept a shorter P-256 scalar).
        let b64 = text.components(separatedBy: "\n").filter { !$0.hasPrefix("-----") }.joined()
            .trimmingCharacters(in: .whitespacesAndNewlines)
        guard text.contains("PRIVATE KEY-----"), let der = Data(base64Encoded: b64).map({ [UInt8]($0) }) else {
            throw FlowerError(.authentication, "\(source): not a PEM or OpenSSH private key")
        }
        func has(_ oid: [UInt8]) -> Bool { der.count >= oid.count && (0...(der.count - oid.count)).contains { Array(der[$0..<$0 + oid.count]) == oid } }
        do {
            if has([0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07]) {
                self.init(key: .p256(try P256.Signing.PrivateKey(pemRepresentation: text)))
            } else if has([0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22]) {
                self.init(key: .p384(try P384.Signing.PrivateKey(pemRepresentation: text)))
            } else if has([0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x23]) {
                self.init(key: .p521(try P521.Signing.PrivateKey(pemRepresentation: text)))
            } else {
                throw FlowerError(.authentication, "\(source): not an EC key on P-256, P-384 or P-521 (Flower SuperNode keys are ECDSA on a NIST curve)")
            }
        } catch let e as FlowerError { throw e } catch {
            throw FlowerError(.authentication, "\(source): cannot read the EC private key (\(error)); an encrypted key must be decrypted first")
        }
    }

    /// Signs `message` with ECDSA over SHA-256 and returns the DER signature.
    public func sign(_ message: [UInt8]) throws -> [UInt8] {
        let digest = SHA256.hash(data: message)
        switch key {
        case .p256(let k): return Array(try k.signature(for: digest).derRepresentation)
        case .p384(let k): return Array(try k.signature(for: digest).derRepresentation)
        case .p521(let k): return Array(try k.signature(for: digest).derRepresentation)
        }
    }

    /// Whether `signature` (DER) is a valid ECDSA-SHA256 signature of `message` by `publicKeyPEM`.
    public static func verify(signature: [UInt8], message: [UInt8], publicKeyPEM: [UInt8]) -> Bool {
        let text = String(decoding: publicKeyPEM, as: UTF8.self)
        let digest = SHA256.hash(data: message)
        if let k = try? P384.Signing.PublicKey(pemRepresentation: text), let s = try? P384.Signing.ECDSASignature(derRepresentation: signature) {
            return k.isValidSignature(s, for: digest)
        }
        if let k = try? P256.Signing.PublicKey(pemRepresentation: text), let s = try? P256.Signing.ECDSASignature(derRepresentation: signature) {
            return k.isValidSignature(s, for: digest)
        }
        if let k = try? P521.Signing.PublicKey(pemRepresentation: text), let s = try? P521.Signing.ECDSASignature(derRepresentation: signature) {
            return k.isValidSignature(s, for: digest)
        }
        return false
    }

    /// The signed metadata of one call: (timestamp, DER signature over its ASCII bytes).
    public func signedTimestamp(now: Date = Date()) throws -> (timestamp: String, signature: [UInt8]) {
        let ts = NodeIdentity.isoTimestamp(now)
        return (ts, try sign(Array(ts.utf8)))
    }

    /// `datetime.now(tz=UTC).isoformat()`: `2026-12-07T18:03:15.123456+00:00`.
    public static func isoTimestamp(_ date: Date) -> String {
        let t = date.timeIntervalSince1970
        var secs = Int(t.rounded(.down))
        var micros = Int(((t - Double(secs)) * 1_000_000).rounded())
        if micros == 1_000_000 { secs += 1; micros = 0 }
        var tmv = tm()
        var tt = time_t(secs)
        gmtime_r(&tt, &tmv)
        func pad(_ v: Int32, _ n: Int) -> String { let s = String(v); return String(repeating: "0", count: max(0, n - s.count)) + s }
        let frac = String(micros)
        let base = "\(pad(tmv.tm_year + 1900, 4))-\(pad(tmv.tm_mon + 1, 2))-\(pad(tmv.tm_mday, 2))T\(pad(tmv.tm_hour, 2)):\(pad(tmv.tm_min, 2)):\(pad(tmv.tm_sec, 2))"
        // Python omits the fraction when it is zero.
        return base + (micros == 0 ? "" : "." + String(repeating: "0", count: 6 - frac.count) + frac) + "+00:00"
    }

    /// PEM with 64-character lines and a final newline, as OpenSSL writes it.
    static func pem(der: Data, label: String) -> String {
        let b64 = der.base64EncodedString()
        var out = "-----BEGIN \(label)-----\n"
        var i = b64.startIndex
        while i < b64.endIndex {
            let j = b64.index(i, offsetBy: 64, limitedBy: b64.endIndex) ?? b64.endIndex
            out += b64[i..<j] + "\n"
            i = j
        }
        return out + "-----END \(label)-----\n"
    }
}

/// Unencrypted OpenSSH private keys ("openssh-key-v1") holding one ECDSA key.
enum OpenSSHKey {
    static func parse(_ text: String, source: String) throws -> NodeIdentity.Key {
        func fail(_ why: String) -> FlowerError { FlowerError(.authentication, "\(source): OpenSSH private key: \(why)") }
        let body = text.components(separatedBy: "\n").filter { !$0.hasPrefix("-----") }.joined()
            .trimmingCharacters(in: .whitespacesAndNewlines)
        guard let data = Data(base64Encoded: body) else { throw fail("not base64") }
        var r = Reader(bytes: [UInt8](data))
        let magic = Array("openssh-key-v1".utf8) + [0]
        guard r.bytes.count > magic.count, Array(r.bytes[0..<magic.count]) == magic else { throw fail("no openssh-key-v1 header") }
        r.i = magic.count
        let cipher = try r.string(), kdf = try r.string()
        _ = try r.string()  // kdf options
        guard cipher == "none", kdf == "none" else { throw fail("the key is encrypted (cipher \(cipher)); decrypt it with ssh-keygen -p") }
        guard try r.uint32() == 1 else { throw fail("holds more than one key") }
        _ = try r.string()  // public key blob
        var p = Reader(bytes: Array(try r.bytesField()))
        guard try p.uint32() == (try p.uint32()) else { throw fail("check integers differ (wrong passphrase?)") }
        let type = String(decoding: try p.bytesField(), as: UTF8.self)
        _ = try p.bytesField()  // curve name
        _ = try p.bytesField()  // public point
        var scalar = Array(try p.bytesField())
        while scalar.count > 1, scalar[0] == 0 { scalar.removeFirst() }  // mpint sign byte
        func padded(_ n: Int) -> [UInt8] { [UInt8](repeating: 0, count: max(0, n - scalar.count)) + scalar }
        do {
            switch type {
            case "ecdsa-sha2-nistp256": return .p256(try P256.Signing.PrivateKey(rawRepresentation: padded(32)))
            case "ecdsa-sha2-nistp384": return .p384(try P384.Signing.PrivateKey(rawRepresentation: padded(48)))
            case "ecdsa-sha2-nistp521": return .p521(try P521.Signing.PrivateKey(rawRepresentation: padded(66)))
            default: throw fail("key type \(type) is not ECDSA on a NIST curve (Flower needs one)")
            }
        } catch let e as FlowerError { throw e } catch { throw fail("invalid private scalar (\(error))") }
    }

    struct Reader {
        var bytes: [UInt8]
        var i = 0
        mutating func uint32() throws -> UInt32 {
            guard i + 4 <= bytes.count else { throw FlowerError(.authentication, "OpenSSH private key: truncated") }
            defer { i += 4 }
            return UInt32(bytes[i]) << 24 | UInt32(bytes[i + 1]) << 16 | UInt32(bytes[i + 2]) << 8 | UInt32(bytes[i + 3])
        }
        mutating func bytesField() throws -> ArraySlice<UInt8> {
            let n = Int(try uint32())
            guard i + n <= bytes.count else { throw FlowerError(.authentication, "OpenSSH private key: truncated") }
            defer { i += n }
            return bytes[i..<i + n]
        }
        mutating func string() throws -> String { String(decoding: try bytesField(), as: UTF8.self) }
    }
}
