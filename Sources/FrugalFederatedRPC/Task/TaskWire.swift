import Foundation
import FrugalFederated

/// The byte format of a task round on the wire (inside the download and upload streams of the
/// Federation service; all integers and floats little-endian).
///
/// Assignment (server → device), "FTA1":
///
///     magic "FTA1" | round u32 | device u32 | batch u32 | steps u32 | loader seed u64
///     | configuration length u32 | configuration (JSON of the task's Codable configuration)
///     | n u32 | n × f32: the start vector's shared segments, in layout order
///
/// Result (device → server), "FTR1":
///
///     magic "FTR1" | round u32 | device u32 | samples u64 | loss f64 | work f64 | progress f64
///     | peak memory u64 | segments u32 | segments × u8 (1: trained this round)
///     | n u32 | n × f32: the update's shared segments, in layout order
///
/// Only shared segments travel (n = the shared entries: 4n bytes is the model traffic the
/// engine counts each way); a device keeps its non-shared (personal) segments. Decoding checks
/// the magic, every length against the layout, flags, ranges and finite values, and the exact
/// total size; anything else is rejected with the reason.
public enum TaskWire {
    static let assignmentMagic: [UInt8] = Array("FTA1".utf8)
    static let resultMagic: [UInt8] = Array("FTR1".utf8)
    /// Largest configuration JSON accepted.
    public static let maxConfigurationBytes = 1 << 16

    /// Entries of the shared segments.
    public static func sharedCount(_ layout: TensorLayout, _ shared: [Bool]) -> Int {
        layout.segments.indices.reduce(0) { $0 + (shared[$1] ? layout.segments[$1].count : 0) }
    }

    /// The exact length of a result stream.
    public static func resultBytes(_ layout: TensorLayout, _ shared: [Bool]) -> Int {
        4 + 8 + 8 + 24 + 8 + 4 + layout.segments.count + 4 + 4 * sharedCount(layout, shared)
    }

    public static func encode<C: Encodable>(_ a: TaskAssignment<C>, layout: TensorLayout, shared: [Bool]) throws -> [UInt8] {
        let json = Array(try JSONEncoder().encode(a.configuration))
        var w = Writer()
        w.bytes(assignmentMagic)
        w.u32(a.round); w.u32(a.device); w.u32(a.batchSize); w.u32(a.steps); w.u64(a.seed)
        w.u32(json.count); w.bytes(json)
        w.sharedFloats(a.start, layout, shared)
        return w.out
    }

    public static func decodeAssignment<C: Decodable>(_ bytes: [UInt8], as: C.Type, layout: TensorLayout, shared: [Bool],
                                                     device: Int) throws -> TaskAssignment<C> {
        var r = Reader(bytes, what: "task assignment")
        try r.magic(assignmentMagic)
        let round = try r.u32(), d = try r.u32(), batch = try r.u32(), steps = try r.u32(), seed = try r.u64()
        guard d == device else { throw DeploymentError("task assignment for device \(d), this is device \(device)") }
        guard batch >= 1, steps >= 1 else { throw DeploymentError("task assignment: batch \(batch) and steps \(steps) must be ≥ 1") }
        let n = try r.u32()
        guard n <= maxConfigurationBytes else { throw DeploymentError("task assignment: configuration of \(n) bytes (limit \(maxConfigurationBytes))") }
        let json = try r.take(n)
        let c: C
        do { c = try JSONDecoder().decode(C.self, from: Data(json)) } catch {
            throw DeploymentError("task assignment: configuration does not decode: \(error)")
        }
        var start = [Float](repeating: 0, count: layout.count)
        try r.sharedFloats(into: &start, layout, shared)
        try r.end()
        return TaskAssignment(round: round, device: d, configuration: c, start: start, batchSize: batch, steps: steps, seed: seed)
    }

    public static func encode(_ x: LocalTrainingResult, round: Int, device: Int, layout: TensorLayout, shared: [Bool]) -> [UInt8] {
        var w = Writer()
        w.bytes(resultMagic)
        w.u32(round); w.u32(device)
        w.u64(UInt64(max(x.samples, 0))); w.f64(x.loss); w.f64(x.work); w.f64(x.progress); w.u64(UInt64(max(x.peakMemoryBytes, 0)))
        w.u32(x.trainedSegments.count)
        w.bytes(x.trainedSegments.map { $0 ? 1 : 0 })
        w.sharedFloats(x.update, layout, shared)
        return w.out
    }

    /// Decodes and checks a result; the update is `layout.count` long, zero outside shared segments.
    public static func decodeResult(_ bytes: [UInt8], round: Int, device: Int, layout: TensorLayout,
                                    shared: [Bool]) throws -> LocalTrainingResult {
        let want = resultBytes(layout, shared)
        guard bytes.count == want else { throw DeploymentError("task result of \(bytes.count) bytes, expected \(want) for this layout") }
        var r = Reader(bytes, what: "task result")
        try r.magic(resultMagic)
        let t = try r.u32(), d = try r.u32()
        guard t == round, d == device else { throw DeploymentError("task result for round \(t) device \(d), expected round \(round) device \(device)") }
        let samples = try r.u64(), loss = try r.f64(), work = try r.f64(), progress = try r.f64(), peak = try r.u64()
        guard samples <= 1 << 32 else { throw DeploymentError("task result: \(samples) samples (limit 2^32)") }
        guard loss.isFinite, progress.isFinite, work.isFinite, work >= 0 else {
            throw DeploymentError("task result: loss \(loss), work \(work), progress \(progress) (need finite, work ≥ 0)")
        }
        guard peak <= 1 << 50 else { throw DeploymentError("task result: peak memory \(peak) bytes is implausible") }
        let segs = try r.u32()
        guard segs == layout.segments.count else { throw DeploymentError("task result has \(segs) segment flags, the layout \(layout.segments.count)") }
        let flags = try r.take(segs)
        if let bad = flags.firstIndex(where: { $0 > 1 }) {
            throw DeploymentError("task result: segment flag \(flags[bad]) at \(bad) (need 0 or 1)")
        }
        var update = [Float](repeating: 0, count: layout.count)
        try r.sharedFloats(into: &update, layout, shared)
        try r.end()
        if let i = FloatScan.firstNonFinite(update) {
            throw DeploymentError("task result: non-finite update value \(update[i]) at \(layout.name(at: i))")
        }
        return LocalTrainingResult(update: update, samples: Int(samples), loss: loss, work: work, peakMemoryBytes: Int(peak),
                                   trainedSegments: flags.map { $0 == 1 }, progress: progress)
    }

    struct Writer {
        var out: [UInt8] = []
        mutating func bytes(_ b: [UInt8]) { out += b }
        mutating func u32(_ v: Int) { withUnsafeBytes(of: UInt32(truncatingIfNeeded: v).littleEndian) { out += $0 } }
        mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        mutating func f64(_ v: Double) { u64(v.bitPattern) }
        mutating func sharedFloats(_ v: [Float], _ layout: TensorLayout, _ shared: [Bool]) {
            u32(TaskWire.sharedCount(layout, shared))
            for s in layout.segments.indices where shared[s] {
                for i in layout.range(s) { withUnsafeBytes(of: v[i].bitPattern.littleEndian) { out += $0 } }
            }
        }
    }

    struct Reader {
        let b: [UInt8]
        var at = 0
        let what: String
        init(_ b: [UInt8], what: String) { self.b = b; self.what = what }
        mutating func take(_ n: Int) throws -> [UInt8] {
            guard n >= 0, b.count - at >= n else { throw DeploymentError("\(what) truncated at byte \(at) (needs \(n) more of \(b.count))") }
            defer { at += n }
            return Array(b[at ..< at + n])
        }
        mutating func u32() throws -> Int {
            let x = try take(4)
            return Int(UInt32(x[0]) | UInt32(x[1]) << 8 | UInt32(x[2]) << 16 | UInt32(x[3]) << 24)
        }
        mutating func u64() throws -> UInt64 {
            let x = try take(8)
            return (0 ..< 8).reduce(UInt64(0)) { $0 | UInt64(x[$1]) << (8 * UInt64($1)) }
        }
        mutating func f64() throws -> Double { Double(bitPattern: try u64()) }
        mutating func magic(_ m: [UInt8]) throws {
            guard try take(m.count) == m else { throw DeploymentError("\(what): wrong magic (not a \(String(decoding: m, as: UTF8.self)) stream)") }
        }
        mutating func sharedFloats(into v: inout [Float], _ layout: TensorLayout, _ shared: [Bool]) throws {
            let n = try u32(), want = TaskWire.sharedCount(layout, shared)
            guard n == want else { throw DeploymentError("\(what) carries \(n) parameters, the shared segments have \(want)") }
            guard b.count - at >= 4 * n else { throw DeploymentError("\(what) truncated: \(n) parameters need \(4 * n) bytes, \(b.count - at) left") }
            for s in layout.segments.indices where shared[s] {
                for i in layout.range(s) {
                    v[i] = Float(bitPattern: UInt32(b[at]) | UInt32(b[at + 1]) << 8 | UInt32(b[at + 2]) << 16 | UInt32(b[at + 3]) << 24)
                    at += 4
                }
            }
        }
        func end() throws {
            guard at == b.count else { throw DeploymentError("\(what): \(b.count - at) bytes after the end") }
        }
    }
}
