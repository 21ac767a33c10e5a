import Foundation
import GRPCCore

/// A fast 64-bit FNV-1a variant over 8-byte words (the tail byte by byte): the digest that checks
/// a reassembled stream and compares a device's model copy with the server's mirror.
public enum StreamDigest {
    static let offset: UInt64 = 0xCBF2_9CE4_8422_2325
    static let prime: UInt64 = 0x0000_0100_0000_01B3

    public static func of(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var h = offset
        let n = bytes.count
        var i = 0
        while i + 8 <= n {
            h = (h ^ bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* prime
            i += 8
        }
        while i < n {
            h = (h ^ UInt64(bytes[i])) &* prime
            i += 1
        }
        return h ^ UInt64(n)
    }

    public static func of(_ bytes: [UInt8]) -> UInt64 { bytes.withUnsafeBytes { of($0) } }

    /// The digest of a model copy; 0 when there is none.
    public static func of(copy: [Float]?) -> UInt64 {
        guard let copy else { return 0 }
        let h = copy.withUnsafeBytes { of($0) }
        return h == 0 ? 1 : h
    }
}

/// Limits of the wire protocol.
public enum WireLimits {
    /// Largest chunk of a stream in one message.
    public static let chunkBytes = 1 << 20
    /// Largest gRPC message the server accepts (a chunk plus headers).
    public static let maxMessageBytes = chunkBytes + (64 << 10)

    /// The largest upload stream any codec can produce for `parameters` entries in `segments`
    /// tensors (top-k with 32-bit positions and float32 values: 8 bytes an entry, plus headers).
    public static func maxUploadBytes(parameters: Int, segments: Int) -> Int {
        64 + 8 * parameters + 16 * segments + 4096
    }
}

/// An error of the deployment runtime whose message says what was wrong.
public struct DeploymentError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension Array where Element == UInt8 {
    /// Splits into chunks of at most `size` bytes (one empty chunk for an empty array).
    func chunks(of size: Int) -> [Data] {
        if isEmpty { return [Data()] }
        return stride(from: 0, to: count, by: size).map { Data(self[$0 ..< Swift.min($0 + size, count)]) }
    }
}

/// The bearer token of a call's metadata (`authorization: Bearer TOKEN`), nil when absent.
func bearerToken(_ metadata: Metadata) -> String? {
    for v in metadata[stringValues: "authorization"] {
        let parts = v.split(separator: " ", maxSplits: 1)
        if parts.count == 2, parts[0].lowercased() == "bearer" { return String(parts[1]) }
    }
    return nil
}
