/// A pure-Swift DEFLATE decoder (RFC 1951): stored, fixed-Huffman and dynamic-Huffman blocks.
///
/// Decoding is table driven: a 10-bit lookup table resolves almost every code in one step, and
/// the rare longer codes fall back to a canonical bit-by-bit decode. Corrupt input (bad block
/// type, invalid code lengths, codes outside the alphabet, distances before the start of the
/// output, truncation) throws ``DataError/corruptStream(source:reason:)``; nothing reads out of
/// bounds.
///
/// ```swift
/// let raw = try Deflate.inflate(compressed)            // raw DEFLATE, no header
/// let bytes = try Gzip.decompress(fileBytes)           // RFC 1952
/// let data = try Zlib.decompress(zlibBytes)            // RFC 1950
/// ```
public enum Deflate {
    /// Decompresses a raw DEFLATE stream (no zlib or gzip wrapper). Bytes after the final block are ignored.
    public static func inflate(_ data: [UInt8], source: String = "deflate stream") throws -> [UInt8] {
        try data.withUnsafeBufferPointer { try inflate($0, from: 0, sizeHint: 0, source: source).output }
    }

    /// Decodes the DEFLATE stream that starts at byte `start` of `input`.
    /// - Returns: the output and the offset of the first byte after the stream (its last byte is padded).
    static func inflate(_ input: UnsafeBufferPointer<UInt8>, from start: Int, sizeHint: Int, source: String)
        throws -> (output: [UInt8], end: Int)
    {
        guard input.count > start, input.baseAddress != nil else {
            throw DataError.corruptStream(source: source, reason: "unexpected end of data (empty deflate stream)")
        }
        var state = InflateState(input: input, start: start, sizeHint: sizeHint, source: source)
        defer { state.release() }
        try state.run()
        return (state.takeOutput(), state.endOffset)
    }
}

// MARK: - Implementation

private let fastBits = 10
private let fastSize = 1 << fastBits
private let fastMask: UInt64 = UInt64(fastSize - 1)

private let lengthBase: [UInt16] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258,
]
private let lengthExtra: [UInt16] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]
private let distBase: [UInt16] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145,
    8193, 12289, 16385, 24577,
]
private let distExtra: [UInt16] = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13]
/// Order in which code-length code lengths are stored (RFC 1951 3.2.7).
private let codeLengthOrder: [Int] = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]

/// A canonical Huffman decoding table: a `fastBits` lookup table (entry = symbol << 4 | length,
/// 0 = not resolvable in `fastBits`) plus counts and sorted symbols for the slow path.
private struct HuffmanTable {
    let fast: UnsafeMutablePointer<UInt16>
    let count: UnsafeMutablePointer<UInt16>   // 16 entries: number of codes of each length
    let symbol: UnsafeMutablePointer<UInt16>  // symbols ordered by (length, value)

    init() {
        fast = .allocate(capacity: fastSize)
        count = .allocate(capacity: 16)
        symbol = .allocate(capacity: 320)
    }

    func release() {
        fast.deallocate()
        count.deallocate()
        symbol.deallocate()
    }

    enum Kind {
        case codeLengths, literals, distances
        var label: String {
            switch self {
            case .codeLengths: "code-length"
            case .literals: "literal/length"
            case .distances: "distance"
            }
        }
    }

    /// Builds the table from `n` code lengths. Returns nil when the lengths are valid, else why not.
    /// Follows zlib: over-subscribed sets are invalid; incomplete sets are allowed only for a single
    /// code of length 1 (literal/length and distance codes); an empty set is allowed (any use fails).
    func build(_ lengths: UnsafePointer<UInt8>, _ n: Int, kind: Kind) -> String? {
        for i in 0..<16 { count[i] = 0 }
        for i in 0..<n { count[Int(lengths[i])] += 1 }
        count[0] = 0
        var maxLen = 0
        for len in 1..<16 where count[len] != 0 { maxLen = len }
        fast.initialize(repeating: 0, count: fastSize)
        if maxLen == 0 { return nil }
        var left = 1
        for len in 1..<16 {
            left <<= 1
            left -= Int(count[len])
            if left < 0 { return "over-subscribed \(kind.label) code lengths" }
        }
        if left > 0 && (kind == .codeLengths || maxLen != 1) { return "incomplete \(kind.label) code lengths" }
        // Offsets of each length in `symbol`, and first canonical code of each length.
        var offs = [Int](repeating: 0, count: 16)
        var next = [Int](repeating: 0, count: 16)
        var code = 0
        for len in 1..<16 {
            offs[len] = len == 1 ? 0 : offs[len - 1] + Int(count[len - 1])
            code = (code + Int(count[len - 1])) << 1  // RFC 1951 3.2.2 (count[0] is 0)
            next[len] = code
        }
        for sym in 0..<n {
            let len = Int(lengths[sym])
            if len == 0 { continue }
            symbol[offs[len]] = UInt16(sym)
            offs[len] += 1
            let c = next[len]
            next[len] += 1
            if len <= fastBits {
                // Reverse the code's bits: DEFLATE packs Huffman codes starting with the MSB.
                var rev = 0
                var x = c
                for _ in 0..<len {
                    rev = (rev << 1) | (x & 1)
                    x >>= 1
                }
                let entry = UInt16(sym << 4 | len)
                var i = rev
                while i < fastSize {
                    fast[i] = entry
                    i += 1 << len
                }
            }
        }
        return nil
    }

    /// Canonical decode one bit at a time (codes longer than `fastBits`, or invalid codes).
    /// Returns (symbol, length) or length 0 when `bits` start no valid code.
    @inline(never)
    func slowDecode(_ bits: UInt64) -> (Int, Int) {
        var b = bits
        var code = 0
        var first = 0
        var index = 0
        for len in 1..<16 {
            code |= Int(b & 1)
            b >>= 1
            let c = Int(count[len])
            if code - c < first { return (Int(symbol[index + (code - first)]), len) }
            index += c
            first += c
            first <<= 1
            code <<= 1
        }
        return (0, 0)
    }
}

private struct InflateState {
    let src: UnsafePointer<UInt8>
    let srcCount: Int
    let source: String
    var pos: Int
    var bitbuf: UInt64 = 0
    var bitcnt: Int = 0

    var out: UnsafeMutablePointer<UInt8>
    var outCap: Int
    var outLen = 0

    let lit = HuffmanTable()
    let dist = HuffmanTable()
    let lengths = UnsafeMutablePointer<UInt8>.allocate(capacity: 320)
    var fixedBuilt = false
    let fixedLit = HuffmanTable()
    let fixedDist = HuffmanTable()

    init(input: UnsafeBufferPointer<UInt8>, start: Int, sizeHint: Int, source: String) {
        src = input.baseAddress!  // callers reject empty input
        srcCount = input.count
        pos = start
        self.source = source
        // With a size hint (gzip ISIZE) leave room for one maximal match so the buffer never grows.
        outCap = sizeHint > 0 ? sizeHint + 320 : max(4 * max(0, input.count - start), 1024)
        out = .allocate(capacity: outCap)
    }

    mutating func release() {
        out.deallocate()
        lit.release()
        dist.release()
        fixedLit.release()
        fixedDist.release()
        lengths.deallocate()
    }

    mutating func takeOutput() -> [UInt8] {
        Array(UnsafeBufferPointer(start: out, count: outLen))
    }

    /// Offset of the first byte after the stream (valid after `run`).
    var endOffset: Int { pos - (bitcnt >> 3) }

    func corrupt(_ reason: String) -> DataError {
        DataError.corruptStream(source: source, reason: reason)
    }

    /// Ensures at least 56 bits in `bitbuf`; past the end of input it shifts in zero bytes and
    /// throws once the decoder has consumed bits that are not there.
    @inline(__always)
    mutating func refill() throws {
        if pos + 8 <= srcCount {
            let w = UnsafeRawPointer(src + pos).loadUnaligned(as: UInt64.self).littleEndian
            bitbuf |= w &<< UInt64(bitcnt)
            pos += (63 - bitcnt) >> 3
            bitcnt |= 56
        } else {
            try refillSlow()
        }
    }

    @inline(never)
    mutating func refillSlow() throws {
        while bitcnt <= 56 {
            let byte: UInt64 = pos < srcCount ? UInt64(src[pos]) : 0
            bitbuf |= byte &<< UInt64(bitcnt)
            pos += 1
            bitcnt += 8
        }
        if pos > srcCount && bitcnt < 8 * (pos - srcCount) {
            throw corrupt("unexpected end of data (truncated stream)")
        }
    }

    @inline(__always)
    mutating func bits(_ n: Int) throws -> Int {
        if bitcnt < n { try refill() }
        let v = Int(bitbuf & ((1 << UInt64(n)) - 1))
        bitbuf >>= UInt64(n)
        bitcnt -= n
        return v
    }

    mutating func grow(_ needed: Int) {
        var cap = outCap
        while cap < needed { cap *= 2 }
        let bigger = UnsafeMutablePointer<UInt8>.allocate(capacity: cap)
        bigger.update(from: out, count: outLen)
        out.deallocate()
        out = bigger
        outCap = cap
    }

    mutating func run() throws {
        var final = false
        while !final {
            final = try bits(1) == 1
            let type = try bits(2)
            switch type {
            case 0: try storedBlock()
            case 1:
                if !fixedBuilt { buildFixed() }
                try huffmanBlock(fixedLit, fixedDist)
            case 2:
                try readDynamicTables()
                try huffmanBlock(lit, dist)
            default:
                throw corrupt("invalid block type 3 at byte \(endOffset)")
            }
        }
        // Drop the padding bits of the last byte; the stream ends on a byte boundary.
        let drop = bitcnt & 7
        bitbuf >>= UInt64(drop)
        bitcnt -= drop
        if endOffset > srcCount { throw corrupt("unexpected end of data (truncated stream)") }
    }

    mutating func storedBlock() throws {
        let drop = bitcnt & 7
        bitbuf >>= UInt64(drop)
        bitcnt -= drop
        // Give back the whole bytes still buffered and read the header straight from the input.
        pos -= bitcnt >> 3
        bitbuf = 0
        bitcnt = 0
        guard pos + 4 <= srcCount else { throw corrupt("unexpected end of data in stored block header") }
        let len = Int(src[pos]) | Int(src[pos + 1]) << 8
        let nlen = Int(src[pos + 2]) | Int(src[pos + 3]) << 8
        guard len == (~nlen & 0xFFFF) else {
            throw corrupt("stored block length \(len) does not match its complement at byte \(pos)")
        }
        pos += 4
        guard pos + len <= srcCount else { throw corrupt("unexpected end of data in stored block") }
        if outLen + len > outCap { grow(outLen + len) }
        (out + outLen).update(from: src + pos, count: len)
        outLen += len
        pos += len
    }

    mutating func buildFixed() {
        for i in 0..<144 { lengths[i] = 8 }
        for i in 144..<256 { lengths[i] = 9 }
        for i in 256..<280 { lengths[i] = 7 }
        for i in 280..<288 { lengths[i] = 8 }
        _ = fixedLit.build(lengths, 288, kind: .literals)
        for i in 0..<32 { lengths[i] = 5 }
        _ = fixedDist.build(lengths, 32, kind: .distances)
        fixedBuilt = true
    }

    mutating func readDynamicTables() throws {
        let hlit = try bits(5) + 257
        let hdist = try bits(5) + 1
        let hclen = try bits(4) + 4
        guard hlit <= 286, hdist <= 30 else {
            throw corrupt("too many length or distance symbols (\(hlit), \(hdist)) in dynamic block header")
        }
        for i in 0..<19 { lengths[i] = 0 }
        for i in 0..<hclen { lengths[codeLengthOrder[i]] = UInt8(try bits(3)) }
        if let why = lit.build(lengths, 19, kind: .codeLengths) { throw corrupt(why) }
        // Decode the literal/length and distance code lengths with the code-length code (in `lit`).
        let total = hlit + hdist
        var codeLens = [UInt8](repeating: 0, count: total)
        var i = 0
        while i < total {
            let sym = try decode(lit)
            if sym < 16 {
                codeLens[i] = UInt8(sym)
                i += 1
                continue
            }
            var repeatValue: UInt8 = 0
            var count: Int
            switch sym {
            case 16:
                guard i > 0 else { throw corrupt("repeat of previous code length with no previous length") }
                repeatValue = codeLens[i - 1]
                count = 3 + (try bits(2))
            case 17: count = 3 + (try bits(3))
            default: count = 11 + (try bits(7))
            }
            guard i + count <= total else { throw corrupt("code length repeat runs past the end of the code lengths") }
            for _ in 0..<count {
                codeLens[i] = repeatValue
                i += 1
            }
        }
        guard codeLens[256] != 0 else { throw corrupt("dynamic block has no end-of-block code") }
        for k in 0..<hlit { lengths[k] = codeLens[k] }
        if let why = lit.build(lengths, hlit, kind: .literals) { throw corrupt(why) }
        for k in 0..<hdist { lengths[k] = codeLens[hlit + k] }
        if let why = dist.build(lengths, hdist, kind: .distances) { throw corrupt(why) }
    }

    @inline(__always)
    mutating func decode(_ t: HuffmanTable) throws -> Int {
        if bitcnt < 16 { try refill() }
        let e = t.fast[Int(bitbuf & fastMask)]
        var sym: Int
        var len: Int
        if e != 0 {
            sym = Int(e >> 4)
            len = Int(e & 15)
        } else {
            (sym, len) = t.slowDecode(bitbuf)
            if len == 0 { throw corrupt("invalid Huffman code near byte \(endOffset)") }
        }
        bitbuf >>= UInt64(len)
        bitcnt -= len
        return sym
    }

    /// Decodes one Huffman-coded block. The hot loop keeps the bit buffer in locals.
    mutating func huffmanBlock(_ lt: HuffmanTable, _ dt: HuffmanTable) throws {
        try lengthBase.withUnsafeBufferPointer { lbase in
            try lengthExtra.withUnsafeBufferPointer { lextra in
                try distBase.withUnsafeBufferPointer { dbase in
                    try distExtra.withUnsafeBufferPointer { dextra in
                        try huffmanLoop(lt, dt, lbase, lextra, dbase, dextra)
                    }
                }
            }
        }
    }

    @inline(__always)
    mutating func huffmanLoop(
        _ lt: HuffmanTable, _ dt: HuffmanTable,
        _ lbase: UnsafeBufferPointer<UInt16>, _ lextra: UnsafeBufferPointer<UInt16>,
        _ dbase: UnsafeBufferPointer<UInt16>, _ dextra: UnsafeBufferPointer<UInt16>
    ) throws {
        let litFast = lt.fast
        let distFast = dt.fast
        while true {
            // Worst case per symbol: 15 + 5 + 15 + 13 = 48 bits.
            if bitcnt < 48 { try refill() }
            if outLen + 258 > outCap { grow(outLen + 258) }
            var e = litFast[Int(bitbuf & fastMask)]
            var sym: Int
            var len: Int
            if e != 0 {
                sym = Int(e >> 4)
                len = Int(e & 15)
            } else {
                (sym, len) = lt.slowDecode(bitbuf)
                if len == 0 { throw corrupt("invalid literal/length code near byte \(endOffset)") }
            }
            bitbuf >>= UInt64(len)
            bitcnt -= len
            if sym < 256 {
                out[outLen] = UInt8(truncatingIfNeeded: sym)
                outLen += 1
                continue
            }
            if sym == 256 { return }
            sym -= 257
            guard sym < 29 else { throw corrupt("invalid length symbol \(sym + 257) near byte \(endOffset)") }
            let le = Int(lextra[sym])
            let length = Int(lbase[sym]) + Int(bitbuf & ((1 << UInt64(le)) - 1))
            bitbuf >>= UInt64(le)
            bitcnt -= le

            e = distFast[Int(bitbuf & fastMask)]
            if e != 0 {
                sym = Int(e >> 4)
                len = Int(e & 15)
            } else {
                (sym, len) = dt.slowDecode(bitbuf)
                if len == 0 { throw corrupt("invalid distance code near byte \(endOffset)") }
            }
            bitbuf >>= UInt64(len)
            bitcnt -= len
            guard sym < 30 else { throw corrupt("invalid distance symbol \(sym) near byte \(endOffset)") }
            let de = Int(dextra[sym])
            let distance = Int(dbase[sym]) + Int(bitbuf & ((1 << UInt64(de)) - 1))
            bitbuf >>= UInt64(de)
            bitcnt -= de
            guard distance <= outLen else {
                throw corrupt("distance \(distance) reaches before the start of the output (\(outLen) bytes) near byte \(endOffset)")
            }
            let dst = out + outLen
            let from = dst - distance
            if distance >= length {
                dst.update(from: from, count: length)
            } else if distance == 1 {
                dst.update(repeating: from.pointee, count: length)
            } else {
                for k in 0..<length { dst[k] = from[k] }
            }
            outLen += length
        }
    }
}
