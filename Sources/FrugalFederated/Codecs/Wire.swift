// Wire primitives for federated update codecs: little-endian byte writer/reader, bit packing,
// position coding of sparse index sets, float32/float16 value encodings, a seeded RNG.
//
// Everything that reads network bytes is bounds-checked and throws `CodecError` with a message
// saying what was being read and at which byte offset; nothing here traps on malformed input.

/// A malformed or mismatched stream, or an invalid argument to a codec.
public struct CodecError: Error, CustomStringConvertible, Equatable, Sendable {
    /// What was wrong and where (codec, field, byte offset, tensor name).
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { "CodecError: \(message)" }
}

// MARK: - Bytes

/// Appends little-endian integers, floats, varints and raw bytes to a growing `[UInt8]`.
public struct ByteWriter: Sendable {
    /// The bytes written so far.
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 0) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// Number of bytes written so far.
    @inlinable public var count: Int { bytes.count }

    public mutating func writeU8(_ v: UInt8) { bytes.append(v) }

    public mutating func writeU16(_ v: UInt16) {
        bytes.append(UInt8(truncatingIfNeeded: v))
        bytes.append(UInt8(truncatingIfNeeded: v >> 8))
    }

    public mutating func writeU32(_ v: UInt32) {
        for s in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt32(s))) }
    }

    public mutating func writeU64(_ v: UInt64) {
        for s in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt64(s))) }
    }

    public mutating func writeFloat32(_ v: Float) { writeU32(v.bitPattern) }

    /// LEB128 unsigned varint: 7 bits a byte, low groups first, high bit = "more follows".
    public mutating func writeVarint(_ v: UInt64) {
        var x = v
        while x >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: x) | 0x80)
            x >>= 7
        }
        bytes.append(UInt8(x))
    }

    public mutating func writeBytes(_ b: [UInt8]) { bytes.append(contentsOf: b) }

    /// Appends `count` zero bytes and lets `body` fill them in place.
    public mutating func withAppended(count: Int, _ body: (UnsafeMutableRawBufferPointer) throws -> Void) rethrows {
        let start = bytes.count
        bytes.append(contentsOf: repeatElement(0, count: count))
        try bytes.withUnsafeMutableBytes { raw in
            try body(UnsafeMutableRawBufferPointer(rebasing: raw[start ..< start + count]))
        }
    }

    /// Appends `values` in the given encoding (4 or 2 bytes each, little-endian).
    public mutating func writeFloats(_ values: UnsafeBufferPointer<Float>, as encoding: ValueEncoding) {
        withAppended(count: values.count * encoding.bytesPerValue) { out in
            encoding.encode(values, into: out)
        }
    }
}

/// Reads little-endian fields from a byte array; every read checks bounds and throws
/// `CodecError` ("truncated ...") instead of reading past the end.
public struct ByteReader: Sendable {
    public let bytes: [UInt8]
    /// Offset of the next unread byte.
    public private(set) var offset: Int
    /// Context prefix for error messages (e.g. the codec name).
    public var context: String

    public init(_ bytes: [UInt8], context: String = "stream") {
        self.bytes = bytes
        self.offset = 0
        self.context = context
    }

    @inlinable public var remaining: Int { bytes.count - offset }

    /// Throws unless at least `n` bytes remain.
    public func require(_ n: Int, _ what: @autoclosure () -> String) throws {
        if n < 0 || n > remaining {
            throw CodecError("\(context): truncated reading \(what()) at byte offset \(offset): need \(n) bytes, \(remaining) left")
        }
    }

    public mutating func readU8(_ what: @autoclosure () -> String) throws -> UInt8 {
        try require(1, what())
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func readU16(_ what: @autoclosure () -> String) throws -> UInt16 {
        try require(2, what())
        defer { offset += 2 }
        return UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8
    }

    public mutating func readU32(_ what: @autoclosure () -> String) throws -> UInt32 {
        try require(4, what())
        var v: UInt32 = 0
        for i in 0 ..< 4 { v |= UInt32(bytes[offset + i]) << UInt32(8 * i) }
        offset += 4
        return v
    }

    public mutating func readU64(_ what: @autoclosure () -> String) throws -> UInt64 {
        try require(8, what())
        var v: UInt64 = 0
        for i in 0 ..< 8 { v |= UInt64(bytes[offset + i]) << UInt64(8 * i) }
        offset += 8
        return v
    }

    /// Reads a float32 and rejects NaN and infinity (a network value must be finite).
    public mutating func readFiniteFloat32(_ what: @autoclosure () -> String) throws -> Float {
        let at = offset
        let v = Float(bitPattern: try readU32(what()))
        if !v.isFinite { throw CodecError("\(context): non-finite \(what()) (\(v)) at byte offset \(at)") }
        return v
    }

    /// Reads a LEB128 varint of at most 10 bytes; rejects overlong or overflowing encodings.
    public mutating func readVarint(_ what: @autoclosure () -> String) throws -> UInt64 {
        let start = offset
        var v: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard offset < bytes.count else {
                throw CodecError("\(context): truncated varint \(what()) at byte offset \(start)")
            }
            let b = bytes[offset]
            offset += 1
            if shift == 63 && b > 1 {
                throw CodecError("\(context): varint \(what()) overflows 64 bits at byte offset \(start)")
            }
            v |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 { return v }
            shift += 7
        }
    }

    /// Calls `body` with the next `n` bytes and advances past them.
    public mutating func withBytes<R>(_ n: Int, _ what: @autoclosure () -> String,
                                      _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        try require(n, what())
        let start = offset
        offset += n
        return try bytes.withUnsafeBytes { raw in
            try body(UnsafeRawBufferPointer(rebasing: raw[start ..< start + n]))
        }
    }

    /// Reads `out.count` values in `encoding`, rejecting non-finite values.
    public mutating func readFloats(into out: UnsafeMutableBufferPointer<Float>, as encoding: ValueEncoding,
                                    _ what: @autoclosure () -> String) throws {
        let start = offset
        let ctx = context
        try withBytes(out.count * encoding.bytesPerValue, what()) { raw in
            encoding.decode(raw, into: out)
        }
        if let bad = FloatScan.firstNonFinite(UnsafeBufferPointer(out)) {
            throw CodecError("\(ctx): non-finite \(what()) value \(out[bad]) at index \(bad) "
                + "(byte offset \(start + bad * encoding.bytesPerValue))")
        }
    }

    /// Throws unless every byte has been consumed (rejects trailing garbage).
    public func expectEnd() throws {
        if remaining != 0 {
            throw CodecError("\(context): \(remaining) trailing bytes after the payload at byte offset \(offset)")
        }
    }
}

// MARK: - Values

/// How float values travel: IEEE float32 or float16 (round-to-nearest-even; values beyond
/// ±65504 would become infinite, which encoders reject).
public enum ValueEncoding: UInt8, Sendable, CaseIterable {
    case float32 = 0
    case float16 = 1

    @inlinable public var bytesPerValue: Int { self == .float32 ? 4 : 2 }

    /// Rounds `x` to what this encoding transmits (identity for float32).
    @inlinable public func round(_ x: Float) -> Float {
        self == .float32 ? x : Float(Float16(x))
    }

    /// Writes `values.count * bytesPerValue` little-endian bytes into `out`.
    public func encode(_ values: UnsafeBufferPointer<Float>, into out: UnsafeMutableRawBufferPointer) {
        precondition(out.count >= values.count * bytesPerValue)
        switch self {
        case .float32:
            #if _endian(little)
            if let src = values.baseAddress, values.count > 0 {
                out.baseAddress!.copyMemory(from: src, byteCount: values.count * 4)
            }
            #else
            for i in 0 ..< values.count { out.storeBytes(of: values[i].bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self) }
            #endif
        case .float16:
            for i in 0 ..< values.count {
                out.storeBytes(of: Float16(values[i]).bitPattern.littleEndian, toByteOffset: 2 * i, as: UInt16.self)
            }
        }
    }

    /// Reads `out.count` values from `raw` (which holds at least `out.count * bytesPerValue` bytes).
    public func decode(_ raw: UnsafeRawBufferPointer, into out: UnsafeMutableBufferPointer<Float>) {
        precondition(raw.count >= out.count * bytesPerValue)
        switch self {
        case .float32:
            #if _endian(little)
            if let dst = out.baseAddress, out.count > 0 {
                UnsafeMutableRawPointer(dst).copyMemory(from: raw.baseAddress!, byteCount: out.count * 4)
            }
            #else
            for i in 0 ..< out.count { out[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
            #endif
        case .float16:
            for i in 0 ..< out.count {
                let h = UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                out[i] = Float(Float16(bitPattern: h))
            }
        }
    }
}

/// Vectorisable scans over float buffers.
public enum FloatScan {
    /// Index of the first NaN or infinity, or nil.
    public static func firstNonFinite(_ x: UnsafeBufferPointer<Float>) -> Int? {
        // Max of |bits| vectorises; only on a hit do we look for the index.
        var m: UInt32 = 0
        x.withMemoryRebound(to: UInt32.self) { b in
            for v in b { m = max(m, v & 0x7FFF_FFFF) }
        }
        if m < 0x7F80_0000 { return nil }
        return x.firstIndex { !$0.isFinite }
    }

    /// Index of the first NaN or infinity in `x`, or nil.
    public static func firstNonFinite(_ x: [Float]) -> Int? {
        x.withUnsafeBufferPointer { firstNonFinite($0) }
    }
}

// MARK: - Bits

/// LSB-first bit writer: bit i of the stream is bit (i % 8) of byte i / 8.
public struct BitWriter: Sendable {
    @usableFromInline var acc: UInt64 = 0
    @usableFromInline var nacc: Int = 0
    /// Completed 64-bit words (little-endian order of bits).
    @usableFromInline var words: [UInt64]

    public init(capacityBits: Int = 0) {
        words = []
        words.reserveCapacity(capacityBits / 64 + 1)
    }

    /// Total bits written.
    public var bitCount: Int { words.count * 64 + nacc }

    /// Writes the low `bits` bits of `value` (0 ≤ bits ≤ 32).
    @inlinable public mutating func write(_ value: UInt32, bits: Int) {
        let v = UInt64(value) & ((1 << UInt64(bits)) &- 1)
        acc |= v << UInt64(nacc)   // bits shifted past 63 are lost and carried below
        nacc += bits
        if nacc >= 64 {
            words.append(acc)
            nacc -= 64
            // the top `nacc` bits of v did not fit
            acc = nacc == 0 ? 0 : v >> UInt64(bits - nacc)
        }
    }

    /// Elias-gamma code of `v` ≥ 1: N = ⌊log2 v⌋ zeros, a one, then the N low bits of v.
    /// Length 2N + 1 bits.
    @inlinable public mutating func writeGamma(_ v: UInt32) {
        precondition(v >= 1)
        let n = 31 - v.leadingZeroBitCount
        if n < 16 {
            // zeros, the terminating one, then the remainder: one write of 2n+1 bits.
            let rest = v & ((1 << UInt32(n)) - 1)
            write((1 << UInt32(n)) | (rest << UInt32(n + 1)), bits: 2 * n + 1)
        } else {
            write(1 << UInt32(n), bits: n + 1)
            write(v, bits: n)
        }
    }

    /// Pads to a byte boundary with zero bits and returns the bytes.
    public mutating func finish() -> [UInt8] {
        let total = (bitCount + 7) / 8
        var out = [UInt8](repeating: 0, count: words.count * 8 + 8)
        out.withUnsafeMutableBytes { raw in
            for (j, w) in words.enumerated() { raw.storeBytes(of: w.littleEndian, toByteOffset: 8 * j, as: UInt64.self) }
            raw.storeBytes(of: acc.littleEndian, toByteOffset: 8 * words.count, as: UInt64.self)
        }
        out.removeLast(out.count - total)
        words = []
        acc = 0
        nacc = 0
        return out
    }
}

/// LSB-first bit reader over a byte buffer (the counterpart of `BitWriter`); throws on reads
/// past the end and on non-zero padding.
public struct BitReader {
    @usableFromInline let base: UnsafeRawBufferPointer
    @usableFromInline var pos: Int = 0
    @usableFromInline var acc: UInt64 = 0
    @usableFromInline var nacc: Int = 0
    @usableFromInline let context: String

    /// `bytes` must stay valid while the reader is used.
    public init(_ bytes: UnsafeRawBufferPointer, context: String) {
        base = bytes
        self.context = context
    }

    /// Tops `acc` up to at least 57 bits (or to the end of the stream). Bits of `acc` at and
    /// above `nacc` are always zero.
    @inlinable mutating func refill() {
        if pos + 8 <= base.count {
            let w = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: pos, as: UInt64.self))
            let take = (63 - nacc) >> 3   // whole bytes that fit
            let bits = UInt64(take * 8)
            acc |= (w & ((1 << bits) &- 1)) << UInt64(nacc)
            pos += take
            nacc += take * 8
            return
        }
        while nacc <= 56 && pos < base.count {
            acc |= UInt64(base[pos]) << UInt64(nacc)
            pos += 1
            nacc += 8
        }
    }

    /// Bits consumed so far.
    public var bitOffset: Int { pos * 8 - nacc }

    @usableFromInline func truncated(_ what: String) -> CodecError {
        CodecError("\(context): bit stream truncated reading \(what) at bit \(bitOffset) of \(base.count * 8)")
    }

    /// Reads `bits` bits (0 ≤ bits ≤ 32).
    @inlinable public mutating func read(bits: Int, _ what: @autoclosure () -> String = "bits") throws -> UInt32 {
        if nacc < bits {
            refill()
            if nacc < bits { throw truncated(what()) }
        }
        let v = bits == 0 ? 0 : UInt32(truncatingIfNeeded: acc & ((1 << UInt64(bits)) - 1))
        acc = bits == 64 ? 0 : acc >> UInt64(bits)
        nacc -= bits
        return v
    }

    /// Reads an Elias-gamma code; rejects codes longer than `maxLog2` + 1 leading bits.
    @inlinable public mutating func readGamma(maxLog2: Int, _ what: @autoclosure () -> String = "gamma code") throws -> UInt32 {
        if nacc < 2 * maxLog2 + 1 { refill() }
        // Bits of `acc` above `nacc` are always zero, so acc == 0 means "no one bit available".
        if acc == 0 {
            if nacc > maxLog2 {
                throw CodecError("\(context): corrupt \(what()) at bit \(bitOffset): more than \(maxLog2) leading zeros")
            }
            throw truncated(what())
        }
        let zeros = acc.trailingZeroBitCount
        if zeros > maxLog2 {
            throw CodecError("\(context): corrupt \(what()) at bit \(bitOffset): \(zeros) leading zeros exceed \(maxLog2)")
        }
        if nacc < 2 * zeros + 1 { throw truncated(what()) }
        acc >>= UInt64(zeros + 1)
        nacc -= zeros + 1
        let rest = try read(bits: zeros, what())
        return (1 << UInt32(zeros)) | rest
    }

    /// Throws unless only zero padding bits (fewer than 8) remain.
    public mutating func expectEnd() throws {
        refill()
        if pos != base.count || nacc >= 8 {
            throw CodecError("\(context): \((base.count - pos) * 8 + nacc) unread bits at bit \(bitOffset)")
        }
        if nacc > 0 && acc & ((1 << UInt64(nacc)) - 1) != 0 {
            throw CodecError("\(context): non-zero padding bits at bit \(bitOffset)")
        }
    }
}

/// 1-bit signs and fixed-width unsigned packing over whole buffers.
public enum BitPacking {
    /// Bytes needed for `bits` bits.
    @inlinable public static func byteCount(bits: Int) -> Int { (bits + 7) / 8 }

    /// Packs sign bits, bit i = 1 when x[i] < 0 (zero and −0 count as positive), LSB-first.
    /// `out` must hold `byteCount(bits: x.count)` bytes.
    public static func packSigns(_ x: UnsafeBufferPointer<Float>, into out: UnsafeMutableRawBufferPointer) {
        let n = x.count
        precondition(out.count >= byteCount(bits: n))
        let full = n / 8
        for j in 0 ..< full {
            var b: UInt8 = 0
            for t in 0 ..< 8 where x[8 * j + t] < 0 { b |= 1 << UInt8(t) }
            out[j] = b
        }
        if full * 8 < n {
            var b: UInt8 = 0
            for t in 0 ..< (n - full * 8) where x[8 * full + t] < 0 { b |= 1 << UInt8(t) }
            out[full] = b
        }
    }

    /// Reads sign bit i of `bits` as +1 (bit 0) or −1 (bit 1).
    @inlinable public static func sign(_ bits: UnsafeRawBufferPointer, _ i: Int) -> Float {
        (bits[i >> 3] >> UInt8(i & 7)) & 1 == 0 ? 1 : -1
    }

    /// Throws unless the padding bits after the first `count` bits of `bits` are zero.
    public static func checkPadding(_ bits: UnsafeRawBufferPointer, count: Int, context: String) throws {
        let r = count & 7
        if r != 0, bits[count >> 3] >> UInt8(r) != 0 {
            throw CodecError("\(context): non-zero padding bits after \(count) sign bits")
        }
    }

    /// Packs n-bit unsigned values (1 ≤ bits ≤ 32) LSB-first.
    public static func pack(_ values: [UInt32], bits: Int) -> [UInt8] {
        var w = BitWriter(capacityBits: values.count * bits)
        for v in values { w.write(v, bits: bits) }
        return w.finish()
    }

    /// Unpacks `count` n-bit values; throws on truncation or trailing bytes.
    public static func unpack(_ bytes: [UInt8], count: Int, bits: Int) throws -> [UInt32] {
        try bytes.withUnsafeBytes { raw in
            var r = BitReader(raw, context: "bit unpack")
            var out = [UInt32]()
            out.reserveCapacity(count)
            for _ in 0 ..< count { out.append(try r.read(bits: bits, "packed value")) }
            try r.expectEnd()
            return out
        }
    }
}

// MARK: - Positions

/// How the sorted positions of a sparse update travel.
///
/// Sizes for k positions out of n (bytes):
/// - `index32`: 4k (little-endian UInt32 each);
/// - `bitmap`: ⌈n/8⌉ (bit i set when position i is present, LSB-first);
/// - `deltaVarint`: Σ varintLength(gap), gap_j = p_j − p_{j−1} − 1 with p_{−1} = −1;
/// - `all`: 0 (k = n, every position present).
public enum PositionCoding: UInt8, Sendable, CaseIterable {
    case index32 = 0
    case bitmap = 1
    case deltaVarint = 2
    case all = 3

    /// Bytes of a LEB128 varint of `v`.
    @inlinable public static func varintLength(_ v: UInt64) -> Int {
        (64 - (v | 1).leadingZeroBitCount + 6) / 7
    }

    /// Exact encoded size of `positions` (sorted, distinct, < n) in this coding;
    /// nil when the coding cannot represent them (`all` with k ≠ n).
    public func size(of positions: UnsafeBufferPointer<Int32>, n: Int) -> Int? {
        let k = positions.count
        switch self {
        case .index32: return 4 * k
        case .bitmap: return (n + 7) / 8
        case .all: return k == n ? 0 : nil
        case .deltaVarint:
            var total = 0
            var prev: Int32 = -1
            for p in positions {
                total += PositionCoding.varintLength(UInt64(p - prev - 1))
                prev = p
            }
            return total
        }
    }

    /// Estimated size for k positions out of n, assuming evenly spread gaps for `deltaVarint`.
    public static func estimatedSize(_ coding: PositionCoding, k: Int, n: Int) -> Int? {
        switch coding {
        case .index32: return 4 * k
        case .bitmap: return (n + 7) / 8
        case .all: return k == n ? 0 : nil
        case .deltaVarint: return k == 0 ? 0 : k * varintLength(UInt64((n - k) / k))
        }
    }

    /// The smallest coding for k positions out of n by `estimatedSize` (ties: earlier case).
    public static func best(k: Int, n: Int) -> PositionCoding {
        var bestCoding = PositionCoding.index32
        var bestSize = Int.max
        for c in [PositionCoding.all, .bitmap, .deltaVarint, .index32] {
            if let s = estimatedSize(c, k: k, n: n), s < bestSize { bestSize = s; bestCoding = c }
        }
        return bestCoding
    }

    /// The smallest coding for these exact positions, with its size in bytes.
    public static func best(for positions: UnsafeBufferPointer<Int32>, n: Int) -> (coding: PositionCoding, size: Int) {
        var bestCoding = PositionCoding.index32
        var bestSize = Int.max
        for c in [PositionCoding.all, .bitmap, .index32, .deltaVarint] {
            // deltaVarint needs an O(k) pass; skip it when it cannot win (each gap ≥ 1 byte).
            if c == .deltaVarint && positions.count >= bestSize { continue }
            if let s = c.size(of: positions, n: n), s < bestSize { bestSize = s; bestCoding = c }
        }
        return (bestCoding, bestSize)
    }

    /// Appends `positions` (sorted, distinct, in 0..<n) in this coding.
    public func encode(_ positions: UnsafeBufferPointer<Int32>, n: Int, into w: inout ByteWriter) {
        switch self {
        case .all:
            precondition(positions.count == n, "PositionCoding.all needs every position")
        case .index32:
            w.withAppended(count: 4 * positions.count) { out in
                for (j, p) in positions.enumerated() {
                    out.storeBytes(of: UInt32(p).littleEndian, toByteOffset: 4 * j, as: UInt32.self)
                }
            }
        case .bitmap:
            w.withAppended(count: (n + 7) / 8) { out in
                for p in positions { out[Int(p) >> 3] |= 1 << UInt8(p & 7) }
            }
        case .deltaVarint:
            var prev: Int32 = -1
            for p in positions {
                w.writeVarint(UInt64(p - prev - 1))
                prev = p
            }
        }
    }

    /// Reads k positions out of n; validates that they are strictly increasing and in range,
    /// that a bitmap has exactly k bits set and zero padding.
    public func decode(count k: Int, n: Int, from r: inout ByteReader) throws -> [Int32] {
        let ctx = r.context
        guard k >= 0 && k <= n else { throw CodecError("\(ctx): position count \(k) out of range 0...\(n)") }
        var out = [Int32]()
        switch self {
        case .all:
            guard k == n else { throw CodecError("\(ctx): 'all' position coding with k = \(k) ≠ n = \(n)") }
            out = (0 ..< Int32(n)).map { $0 }
        case .index32:
            out.reserveCapacity(k)
            let start = r.offset
            try r.withBytes(4 * k, "\(k) 4-byte positions") { raw in
                var prev: Int64 = -1
                for j in 0 ..< k {
                    let p = Int64(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * j, as: UInt32.self)))
                    if p <= prev || p >= Int64(n) {
                        throw CodecError("\(ctx): position \(p) (#\(j), byte offset \(start + 4 * j)) "
                            + (p >= Int64(n) ? "out of range 0..<\(n)" : "not after previous \(prev)"))
                    }
                    out.append(Int32(p))
                    prev = p
                }
            }
        case .bitmap:
            out.reserveCapacity(k)
            let start = r.offset
            try r.withBytes((n + 7) / 8, "position bitmap of \(n) bits") { raw in
                for (byteIndex, b) in raw.enumerated() where b != 0 {
                    var bits = b
                    while bits != 0 {
                        let t = bits.trailingZeroBitCount
                        let p = byteIndex * 8 + t
                        if p >= n { throw CodecError("\(ctx): bitmap bit \(p) set beyond n = \(n) (byte offset \(start + byteIndex))") }
                        if out.count == k { throw CodecError("\(ctx): bitmap has more than k = \(k) bits set") }
                        out.append(Int32(p))
                        bits &= bits - 1
                    }
                }
            }
            if out.count != k { throw CodecError("\(ctx): bitmap has \(out.count) bits set, expected k = \(k)") }
        case .deltaVarint:
            out.reserveCapacity(k)
            var prev: Int64 = -1
            for j in 0 ..< k {
                let at = r.offset
                let gap = try r.readVarint("position gap #\(j)")
                let p = prev + 1 + Int64(clamping: gap)
                if gap >= UInt64(n) || p >= Int64(n) {
                    throw CodecError("\(ctx): position #\(j) (gap \(gap) at byte offset \(at)) out of range 0..<\(n)")
                }
                out.append(Int32(p))
                prev = p
            }
        }
        return out
    }
}

// MARK: - Random numbers

/// SplitMix64: a small, fast, seedable generator whose sequence is fixed across platforms,
/// so encoder and decoder regenerate the same random positions from a transmitted seed.
public struct SplitMix64: RandomNumberGenerator, Sendable, Equatable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }

    @inlinable public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform float in [0, 1) with 24 random bits.
    @inlinable public mutating func nextUnitFloat() -> Float {
        Float(next() >> 40) * (1.0 / 16_777_216.0)
    }

    /// Integer in [0, m) by the high half of a 64×64 product (bias ≤ m / 2^64).
    @inlinable public mutating func nextBelow(_ m: UInt64) -> UInt64 {
        next().multipliedFullWidth(by: m).high
    }
}
