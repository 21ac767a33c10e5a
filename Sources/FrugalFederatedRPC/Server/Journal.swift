import Foundation
import FrugalNN

/// Accepted uploads of the open round, each written to its own file (atomically, with `fsync`)
/// before the device is told it was accepted. After a crash the restarted coordinator replays them
/// into the same round, so no acknowledged update is lost. Files: `r<round>-d<device>.upd` with
/// "FLJ1", u32 round, u32 device, u64 samples, f64 loss, u64 length, then the upload stream.
struct UploadJournal {
    let directory: URL
    static let magic: [UInt8] = Array("FLJ1".utf8)

    init(directory: URL) throws {
        self.directory = directory
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    struct Entry {
        var round: Int, device: Int, samples: Int, loss: Double, bytes: [UInt8]
    }

    func url(round: Int, device: Int) -> URL { directory.appendingPathComponent("r\(round)-d\(device).upd") }

    func write(_ e: Entry) throws {
        var out = Self.magic
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        put(UInt32(e.round)); put(UInt32(e.device)); put(UInt64(e.samples)); put(e.loss.bitPattern); put(UInt64(e.bytes.count))
        out.append(contentsOf: e.bytes)
        try AtomicFile.write(out, to: url(round: e.round, device: e.device))
    }

    /// The entry of `device` in `round`, nil when there is none; throws for a damaged file.
    func read(round: Int, device: Int) throws -> Entry? {
        let u = url(round: round, device: device)
        guard let data = FileManager.default.contents(atPath: u.path) else { return nil }
        let b = [UInt8](data)
        guard b.count >= 36, Array(b[0 ..< 4]) == Self.magic else { throw DeploymentError("journal \(u.path): not a journal entry") }
        func get<T: FixedWidthInteger>(_ at: Int, _: T.Type) -> T {
            b.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: at, as: T.self)) }
        }
        let r = Int(get(4, UInt32.self)), d = Int(get(8, UInt32.self))
        let samples = Int(get(12, UInt64.self)), loss = Double(bitPattern: get(20, UInt64.self)), n = Int(get(28, UInt64.self))
        guard r == round, d == device, b.count == 36 + n else {
            throw DeploymentError("journal \(u.path): entry for round \(r) device \(d) with \(b.count - 36) of \(n) bytes")
        }
        return Entry(round: r, device: d, samples: samples, loss: loss, bytes: Array(b[36...]))
    }

    func remove(round: Int, device: Int) { try? FileManager.default.removeItem(at: url(round: round, device: device)) }

    /// Deletes the entries of rounds up to `round` (they are in the checkpoint now).
    func clear(upTo round: Int) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        for n in names where n.hasPrefix(".r") && n.contains(".upd.tmp-") {
            // a write that a crash interrupted (never acknowledged)
            if let r = Int(n.dropFirst(2).prefix { $0.isNumber }), r <= round {
                try? FileManager.default.removeItem(at: directory.appendingPathComponent(n))
            }
        }
        for n in names where n.hasPrefix("r") && n.hasSuffix(".upd") {
            if let r = Int(n.dropFirst().prefix { $0.isNumber }), r <= round {
                try? FileManager.default.removeItem(at: directory.appendingPathComponent(n))
            }
        }
    }
}
