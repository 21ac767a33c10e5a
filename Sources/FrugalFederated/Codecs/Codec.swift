// The update-codec protocol, the stream header every codec writes, tensor layouts and the
// per-sender codec state.
//
// Stream format (all codecs): a 16-byte header, then a codec-specific payload.
//
//   offset  size  field
//   0       1     codec id (`CodecID`)
//   1       1     format version (`CodecHeader.version`, currently 1)
//   2       2     flags (codec-specific bits; unknown bits are rejected)
//   4       4     vector length n (must equal the expected layout's count)
//   8       4     segment count (must equal the expected layout's segment count)
//   12      4     codec parameter (k for sparse codecs, s for QSGD, 0 otherwise)
//
// Decoding validates every header field against the expected codec and layout, reads the
// payload with bounds checks, rejects non-finite values, and rejects trailing bytes.

/// Named segments (tensors) of a flat parameter vector, in order; per-tensor scalars
/// (norms, means) are computed over each segment.
public struct TensorLayout: Sendable, Hashable {
    public struct Segment: Sendable, Hashable {
        public let name: String
        public let count: Int
    }

    public let segments: [Segment]
    /// Start offset of each segment, plus the total count at the end (`segments.count + 1` entries).
    public let offsets: [Int]

    /// Builds a layout; throws on a negative count or a total beyond `Int32.max` entries.
    public init(_ segments: [(name: String, count: Int)]) throws {
        var offs = [0]
        for s in segments {
            guard s.count >= 0 else { throw CodecError("tensor '\(s.name)' has negative count \(s.count)") }
            offs.append(offs.last! + s.count)
            guard offs.last! <= Int(Int32.max) else {
                throw CodecError("layout exceeds \(Int32.max) entries at tensor '\(s.name)'")
            }
        }
        self.segments = segments.map { Segment(name: $0.name, count: $0.count) }
        self.offsets = offs
    }

    /// A single segment named "all" of `count` entries.
    public static func flat(_ count: Int) throws -> TensorLayout { try TensorLayout([("all", count)]) }

    /// Total number of entries.
    @inlinable public var count: Int { offsets[offsets.count - 1] }

    /// Index range of segment `s`.
    @inlinable public func range(_ s: Int) -> Range<Int> { offsets[s] ..< offsets[s + 1] }

    /// Name of the segment containing flat index `i` (for error messages).
    public func name(at i: Int) -> String {
        for s in 0 ..< segments.count where range(s).contains(i) { return "\(segments[s].name)[\(i - offsets[s])]" }
        return "#\(i)"
    }

    /// Throws unless `v` has exactly `count` entries, all finite.
    public func validate(_ v: [Float], _ what: String) throws {
        guard v.count == count else {
            throw CodecError("\(what) has \(v.count) entries, layout expects \(count)")
        }
        if let bad = FloatScan.firstNonFinite(v) {
            throw CodecError("\(what) has non-finite value \(v[bad]) at \(name(at: bad))")
        }
    }
}

/// Codec identifiers as written in byte 0 of every stream.
public enum CodecID: UInt8, Sendable, CaseIterable {
    case dense = 1
    case topK = 2
    case randomK = 3
    case qsgd = 4
    case signSGD = 5
    case stc = 6
    case caesarDownload = 7
}

/// The 16-byte header that starts every encoded stream.
public struct CodecHeader: Sendable, Equatable {
    public static let size = 16
    public static let version: UInt8 = 1

    public var codec: CodecID
    public var flags: UInt16
    public var length: Int
    public var segments: Int
    public var param: UInt32

    public init(codec: CodecID, flags: UInt16, length: Int, segments: Int, param: UInt32) {
        self.codec = codec
        self.flags = flags
        self.length = length
        self.segments = segments
        self.param = param
    }

    public func write(to w: inout ByteWriter) {
        w.writeU8(codec.rawValue)
        w.writeU8(CodecHeader.version)
        w.writeU16(flags)
        w.writeU32(UInt32(length))
        w.writeU32(UInt32(segments))
        w.writeU32(param)
    }

    /// Reads a header without checking it against a layout (e.g. to see which codec sent a stream).
    public static func peek(_ bytes: [UInt8]) throws -> CodecHeader {
        var r = ByteReader(bytes, context: "header")
        return try read(&r)
    }

    static func read(_ r: inout ByteReader) throws -> CodecHeader {
        let id = try r.readU8("codec id")
        guard let codec = CodecID(rawValue: id) else { throw CodecError("\(r.context): unknown codec id \(id) at byte offset 0") }
        let v = try r.readU8("version")
        guard v == version else { throw CodecError("\(r.context): unsupported format version \(v) (expected \(version)) at byte offset 1") }
        let flags = try r.readU16("flags")
        let n = try r.readU32("vector length")
        let s = try r.readU32("segment count")
        let p = try r.readU32("codec parameter")
        return CodecHeader(codec: codec, flags: flags, length: Int(n), segments: Int(s), param: p)
    }

    /// Reads and validates a header: codec id, version, known flag bits, length and segment
    /// count against `layout`.
    public static func read(_ r: inout ByteReader, expecting codec: CodecID, layout: TensorLayout,
                            allowedFlags: UInt16) throws -> CodecHeader {
        let h = try read(&r)
        let ctx = r.context
        guard h.codec == codec else { throw CodecError("\(ctx): stream was written by codec \(h.codec), expected \(codec)") }
        guard h.flags & ~allowedFlags == 0 else {
            throw CodecError("\(ctx): unknown flag bits 0x\(String(h.flags & ~allowedFlags, radix: 16)) in header")
        }
        guard h.length == layout.count else {
            throw CodecError("\(ctx): stream vector length \(h.length) ≠ layout count \(layout.count)")
        }
        guard h.segments == layout.segments.count else {
            throw CodecError("\(ctx): stream has \(h.segments) segments, layout has \(layout.segments.count)")
        }
        return h
    }
}

/// Per-sender state of a codec, owned by the caller (one per peer and direction).
///
/// `residual` is the error-feedback memory e (empty until first used; then layout-sized);
/// `rng` drives stochastic rounding and random-k seeds; `rounds` counts encodes.
public struct CodecState: Sendable {
    public var residual: [Float]
    public var rng: SplitMix64
    public var rounds: Int

    public init(seed: UInt64 = 0) {
        residual = []
        rng = SplitMix64(seed: seed)
        rounds = 0
    }

    /// Returns e + u (the residual, zero on first use, plus `update`) without changing the state;
    /// the codec stores the new residual only once encoding has succeeded.
    func accumulated(_ update: [Float], layout: TensorLayout, context: String) throws -> [Float] {
        if residual.isEmpty { return update }
        guard residual.count == layout.count else {
            throw CodecError("\(context): state residual has \(residual.count) entries, layout expects \(layout.count)")
        }
        let n = residual.count
        return [Float](unsafeUninitializedCapacity: n) { out, initialized in
            residual.withUnsafeBufferPointer { e in
                update.withUnsafeBufferPointer { u in
                    for i in 0 ..< n { out[i] = e[i] + u[i] }
                }
            }
            initialized = n
        }
    }
}

/// Encodes a model-sized update (flat `[Float]` over a `TensorLayout`) into the bytes that are
/// actually sent, and decodes them back.
///
/// `encode` throws on a wrong-sized or non-finite input; `decode` throws `CodecError` on any
/// malformed stream (wrong codec, wrong length for `layout`, truncated, trailing bytes,
/// out-of-range positions or levels, non-finite values) and otherwise returns exactly
/// `layout.count` finite entries.
///
///     let codec = TopKCodec(ratio: 0.01)
///     var state = CodecState()                     // one per sender, kept across rounds
///     let bytes = try codec.encode(update, layout: layout, state: &state)
///     let received = try codec.decode(bytes, layout: layout)
public protocol UpdateCodec: Sendable {
    /// The id written in byte 0 of this codec's streams.
    var codecID: CodecID { get }
    /// Whether `encode` keeps an error-feedback residual in `CodecState`.
    var usesErrorFeedback: Bool { get }
    /// Encodes `update`; stateful codecs read and update `state`.
    func encode(_ update: [Float], layout: TensorLayout, state: inout CodecState) throws -> [UInt8]
    /// Decodes a stream produced by `encode` with the same layout.
    func decode(_ bytes: [UInt8], layout: TensorLayout) throws -> [Float]
    /// Stream size in bytes for `layout` before encoding (for planning transfer times): exact
    /// for dense, random-k, signSGD and fixed-width QSGD; for top-k and STC it assumes evenly
    /// spread positions (`PositionCoding.estimatedSize`); for Elias QSGD it is the fixed-width size
    /// (Elias streams are usually smaller).
    func estimatedSize(_ layout: TensorLayout) -> Int
    /// Decodes and adds `weight` × the decoded vector into `accumulator` (server aggregation).
    func decodeAdd(_ bytes: [UInt8], layout: TensorLayout, weight: Float, into accumulator: inout [Float]) throws
}

extension UpdateCodec {
    /// Encodes with a throwaway state (for stateless codecs; an error-feedback residual is lost).
    public func encode(_ update: [Float], layout: TensorLayout) throws -> [UInt8] {
        var state = CodecState()
        return try encode(update, layout: layout, state: &state)
    }

    public func decodeAdd(_ bytes: [UInt8], layout: TensorLayout, weight: Float, into accumulator: inout [Float]) throws {
        guard accumulator.count == layout.count else {
            throw CodecError("decodeAdd: accumulator has \(accumulator.count) entries, layout expects \(layout.count)")
        }
        let v = try decode(bytes, layout: layout)
        accumulator.withUnsafeMutableBufferPointer { a in
            v.withUnsafeBufferPointer { d in
                for i in 0 ..< d.count { a[i] += weight * d[i] }
            }
        }
    }
}

/// Number of entries kept for a fraction `ratio` of n: round(ratio · n), at least 1 when
/// ratio > 0 and n > 0, at most n.
public func keptCount(ratio: Double, n: Int) -> Int {
    guard n > 0, ratio > 0 else { return 0 }
    return min(n, max(1, Int((ratio * Double(n)).rounded())))
}

func checkRatio(_ ratio: Double, _ what: String) throws {
    guard ratio.isFinite, ratio >= 0, ratio <= 1 else { throw CodecError("\(what): ratio \(ratio) is outside [0, 1]") }
}

// MARK: - Top-k selection

enum TopK {
    /// Sorted positions of the k entries of largest magnitude. Ties at the threshold are broken
    /// by lower index first, so the result is deterministic.
    static func select(_ x: UnsafeBufferPointer<Float>, k: Int) -> [Int32] {
        let n = x.count
        if k <= 0 { return [] }
        if k >= n { return (0 ..< Int32(n)).map { $0 } }
        return x.withMemoryRebound(to: UInt32.self) { xb in
            let (thr, above) = threshold(xb, k: k)
            var out = [Int32](repeating: 0, count: k)
            out.withUnsafeMutableBufferPointer { o in
                var ties = k - above
                var j = 0, i = 0
                // Branch-free: write every index, advance j only when it is taken.
                while i < n && j < k {
                    let m = xb[i] & 0x7FFF_FFFF
                    o[j] = Int32(truncatingIfNeeded: i)
                    let gt = m > thr ? 1 : 0
                    let tie = (m == thr ? 1 : 0) & (ties > 0 ? 1 : 0)
                    j += gt | tie
                    ties -= tie
                    i += 1
                }
            }
            return out
        }
    }

    /// Radix select on magnitude bit patterns (for non-negative floats the integer order is the
    /// float order): the k-th largest key and the number of keys strictly above it.
    /// Three histogram passes over 11 + 10 + 10 bits; after the first, only the candidates that
    /// share the chosen prefix are kept.
    static func threshold(_ xb: UnsafeBufferPointer<UInt32>, k: Int) -> (UInt32, Int) {
        var hist = [Int](repeating: 0, count: 2048)
        var above = 0
        var need = k
        // pass 1: bits 20…30
        hist.withUnsafeMutableBufferPointer { h in
            for v in xb { h[Int((v & 0x7FFF_FFFF) >> 20)] += 1 }
        }
        var b1 = 2047
        while b1 > 0 && hist[b1] < need { need -= hist[b1]; above += hist[b1]; b1 -= 1 }
        var cand = [UInt32]()
        cand.reserveCapacity(hist[b1])
        let prefix1 = UInt32(b1)
        for v in xb where (v & 0x7FFF_FFFF) >> 20 == prefix1 { cand.append(v & 0x7FFF_FFFF) }
        // pass 2: bits 10…19; pass 3: bits 0…9
        var prefix = prefix1 << 20
        for shift: UInt32 in [10, 0] {
            for i in 0 ..< 1024 { hist[i] = 0 }
            hist.withUnsafeMutableBufferPointer { h in
                for v in cand { h[Int((v >> shift) & 0x3FF)] += 1 }
            }
            var b = 1023
            while b > 0 && hist[b] < need { need -= hist[b]; above += hist[b]; b -= 1 }
            prefix |= UInt32(b) << shift
            if shift > 0 {
                let mask: UInt32 = ~((1 << shift) - 1)
                cand = cand.filter { $0 & mask == prefix }
            }
        }
        return (prefix, above)
    }
}

// MARK: - Shared sparse payload

/// Size of the smallest position coding for k of n evenly spread positions.
public func estimatedPositionBytes(k: Int, n: Int) -> Int {
    PositionCoding.estimatedSize(PositionCoding.best(k: k, n: n), k: k, n: n) ?? 4 * k
}

/// The smallest position coding for these positions, with its size in bytes.
func bestCoding(_ positions: [Int32], n: Int) -> (coding: PositionCoding, size: Int) {
    positions.withUnsafeBufferPointer { PositionCoding.best(for: $0, n: n) }
}
