/// The header fields of one gzip member (RFC 1952 2.3).
public struct GzipHeader: Sendable, Equatable {
    /// FNAME: original file name (latin-1 in the spec; decoded as UTF-8 with latin-1 fallback).
    public var fileName: String?
    /// FCOMMENT.
    public var comment: String?
    /// FEXTRA payload (subfields, undecoded).
    public var extra: [UInt8]?
    /// MTIME (seconds since 1970, 0 = none).
    public var modificationTime: UInt32
    /// OS byte (3 = Unix, 255 = unknown).
    public var operatingSystem: UInt8
    /// Whether a header CRC16 (FHCRC) was present (and checked).
    public var hasHeaderCRC: Bool
    /// Offset of the compressed data that follows the header.
    public var dataOffset: Int
}

/// gzip (RFC 1952) decompression with header parsing, CRC-32 and ISIZE checks, and multi-member files.
///
/// ```swift
/// let bytes = try DataFile.read("train-images-idx3-ubyte.gz")
/// let idx = try Gzip.decompress(bytes, source: "train-images-idx3-ubyte.gz")
/// ```
public enum Gzip {
    /// True when `bytes` starts with the gzip magic 1f 8b.
    public static func isGzip(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 2 && bytes[0] == 0x1F && bytes[1] == 0x8B
    }

    /// Parses the header of the member that starts at `offset`.
    public static func readHeader(_ bytes: [UInt8], at offset: Int = 0, source: String = "gzip data") throws -> GzipHeader {
        func fail(_ reason: String, _ at: Int) -> DataError {
            .malformed(source: source, offset: at, reason: "gzip header: " + reason)
        }
        var p = offset
        guard bytes.count - p >= 10 else { throw fail("need 10 bytes, have \(bytes.count - p)", p) }
        guard bytes[p] == 0x1F, bytes[p + 1] == 0x8B else {
            throw fail("not gzip data (magic \(hexByte(bytes[p])) \(hexByte(bytes[p + 1])), expected 1f 8b)", p)
        }
        guard bytes[p + 2] == 8 else { throw fail("compression method \(bytes[p + 2]) is not deflate (8)", p + 2) }
        let flags = bytes[p + 3]
        guard flags & 0xE0 == 0 else { throw fail("reserved flag bits set (flags \(flags))", p + 3) }
        let mtime = UInt32(bytes[p + 4]) | UInt32(bytes[p + 5]) << 8 | UInt32(bytes[p + 6]) << 16 | UInt32(bytes[p + 7]) << 24
        let os = bytes[p + 9]
        p += 10
        var header = GzipHeader(
            fileName: nil, comment: nil, extra: nil, modificationTime: mtime, operatingSystem: os,
            hasHeaderCRC: flags & 2 != 0, dataOffset: 0)
        if flags & 4 != 0 {  // FEXTRA
            guard p + 2 <= bytes.count else { throw fail("truncated FEXTRA length", p) }
            let xlen = Int(bytes[p]) | Int(bytes[p + 1]) << 8
            p += 2
            guard p + xlen <= bytes.count else { throw fail("FEXTRA of \(xlen) bytes runs past the end", p) }
            header.extra = Array(bytes[p..<(p + xlen)])
            p += xlen
        }
        func zeroTerminated(_ what: String) throws -> String {
            guard let end = bytes[p...].firstIndex(of: 0) else { throw fail("\(what) has no terminating zero byte", p) }
            let s = decodeUTF8OrLatin1(Array(bytes[p..<end]))
            p = end + 1
            return s
        }
        if flags & 8 != 0 { header.fileName = try zeroTerminated("FNAME") }
        if flags & 16 != 0 { header.comment = try zeroTerminated("FCOMMENT") }
        if flags & 2 != 0 {  // FHCRC: low 16 bits of the CRC-32 of the header bytes so far
            guard p + 2 <= bytes.count else { throw fail("truncated FHCRC", p) }
            let stored = UInt16(bytes[p]) | UInt16(bytes[p + 1]) << 8
            let crc = bytes.withUnsafeBytes {
                Checksums.crc32(UnsafeRawBufferPointer(rebasing: $0[offset..<p]))
            }
            guard stored == UInt16(truncatingIfNeeded: crc) else {
                throw fail("header CRC16 mismatch (stored \(stored), computed \(UInt16(truncatingIfNeeded: crc)))", p)
            }
            p += 2
        }
        header.dataOffset = p
        return header
    }

    /// Decompresses a gzip file (all members, concatenated). Trailing zero padding is allowed.
    /// Throws when the header, the deflate data, the CRC-32 or the ISIZE of any member is wrong.
    public static func decompress(_ bytes: [UInt8], source: String = "gzip data") throws -> [UInt8] {
        var output = [UInt8]()
        var offset = 0
        var member = 0
        while true {
            member += 1
            let header = try readHeader(bytes, at: offset, source: source)
            // ISIZE of a single-member file gives the output size: use it as the allocation hint.
            var hint = 0
            if member == 1, bytes.count >= 4 {
                let n = bytes.count
                let isize = Int(bytes[n - 4]) | Int(bytes[n - 3]) << 8 | Int(bytes[n - 2]) << 16 | Int(bytes[n - 1]) << 24
                if isize <= 1100 * bytes.count { hint = isize }
            }
            let (data, end) = try bytes.withUnsafeBufferPointer {
                try Deflate.inflate($0, from: header.dataOffset, sizeHint: hint, source: source)
            }
            guard end + 8 <= bytes.count else {
                throw DataError.corruptStream(source: source, reason: "member \(member): truncated trailer (CRC32 and ISIZE)")
            }
            let storedCRC = readLE32(bytes, end)
            let storedSize = readLE32(bytes, end + 4)
            let crc = Checksums.crc32(data)
            guard crc == storedCRC else {
                throw DataError.corruptStream(
                    source: source,
                    reason: "member \(member): CRC32 mismatch (stored \(hexWord(storedCRC)), computed \(hexWord(crc)))")
            }
            guard storedSize == UInt32(truncatingIfNeeded: data.count) else {
                throw DataError.corruptStream(
                    source: source, reason: "member \(member): ISIZE \(storedSize) does not match output length \(data.count)")
            }
            if output.isEmpty { output = data } else { output.append(contentsOf: data) }
            offset = end + 8
            if offset >= bytes.count || bytes[offset...].allSatisfy({ $0 == 0 }) { break }
        }
        return output
    }
}

/// zlib (RFC 1950) decompression with header and Adler-32 checks.
public enum Zlib {
    /// Decompresses a zlib stream. Preset dictionaries (FDICT) are not supported and throw.
    public static func decompress(_ bytes: [UInt8], source: String = "zlib data") throws -> [UInt8] {
        guard bytes.count >= 2 else {
            throw DataError.malformed(source: source, offset: 0, reason: "zlib header: need 2 bytes, have \(bytes.count)")
        }
        let cmf = bytes[0], flg = bytes[1]
        guard cmf & 0x0F == 8 else {
            throw DataError.malformed(source: source, offset: 0, reason: "zlib header: compression method \(cmf & 0x0F) is not deflate (8)")
        }
        guard cmf >> 4 <= 7 else {
            throw DataError.malformed(source: source, offset: 0, reason: "zlib header: window size 2^\((cmf >> 4) + 8) exceeds 32 KiB")
        }
        guard (Int(cmf) * 256 + Int(flg)) % 31 == 0 else {
            throw DataError.malformed(source: source, offset: 1, reason: "zlib header: check bits FCHECK are wrong")
        }
        guard flg & 0x20 == 0 else {
            throw DataError.malformed(source: source, offset: 1, reason: "zlib header: preset dictionary (FDICT) is not supported")
        }
        let (data, end) = try bytes.withUnsafeBufferPointer {
            try Deflate.inflate($0, from: 2, sizeHint: 0, source: source)
        }
        guard end + 4 <= bytes.count else {
            throw DataError.corruptStream(source: source, reason: "truncated Adler-32 trailer")
        }
        let stored = UInt32(bytes[end]) << 24 | UInt32(bytes[end + 1]) << 16 | UInt32(bytes[end + 2]) << 8 | UInt32(bytes[end + 3])
        let adler = Checksums.adler32(data)
        guard stored == adler else {
            throw DataError.corruptStream(
                source: source, reason: "Adler-32 mismatch (stored \(hexWord(stored)), computed \(hexWord(adler)))")
        }
        return data
    }
}

@inline(__always) func readLE32(_ b: [UInt8], _ i: Int) -> UInt32 {
    UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24
}

func hexWord(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return "0x" + String(repeating: "0", count: max(0, 8 - s.count)) + s
}

func hexByte(_ x: UInt8) -> String {
    let s = String(x, radix: 16)
    return s.count == 1 ? "0" + s : s
}

/// UTF-8 if valid, else latin-1 (ISO 8859-1: every byte is the code point of the same value).
func decodeUTF8OrLatin1(_ bytes: [UInt8]) -> String {
    if let s = String(validating: bytes, as: UTF8.self) { return s }
    return String(String.UnicodeScalarView(bytes.map { Unicode.Scalar($0) }))
}
