import Foundation
import Testing
@testable import FrugalNN

/// Shared helpers for the formats tests.
enum FormatFixtures {
    /// A committed fixture under Tests/FrugalNNTests/Fixtures.
    static func url(_ name: String, _ ext: String, subdirectory: String = "Fixtures") throws -> URL {
        try #require(Bundle.module.url(forResource: name, withExtension: ext, subdirectory: subdirectory),
                     "missing fixture \(subdirectory)/\(name).\(ext)")
    }

    static func bytes(_ name: String, _ ext: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: url(name, ext)))
    }
}

/// A fresh temporary folder, removed when the value is released.
final class FormatTempDir {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("frugal-formats-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    func file(_ name: String) -> URL { url.appendingPathComponent(name) }
    deinit { try? FileManager.default.removeItem(at: url) }
}

/// FormatsRNG: a tiny seeded generator, so fuzz cases are the same on every run.
struct FormatsRNG: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476C_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Bitwise float equality (NaN equals NaN with the same bits; -0 differs from +0).
func sameFloatBits(_ a: [Float], _ b: [Float]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern }
}

extension Array where Element == UInt8 {
    mutating func putU64(_ v: UInt64, at i: Int) {
        for k in 0..<8 { self[i + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(k))) }
    }
    mutating func putU32(_ v: UInt32, at i: Int) {
        for k in 0..<4 { self[i + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(k))) }
    }
    mutating func appendU64(_ v: UInt64) { Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) } }
    mutating func appendU32(_ v: UInt32) { Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) } }
    mutating func appendString(_ s: String) { appendU64(UInt64(s.utf8.count)); append(contentsOf: Array(s.utf8)) }
}
