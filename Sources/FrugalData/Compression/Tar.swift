import Foundation

/// One member of a tar archive.
public struct TarEntry: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case file, directory, symbolicLink, hardLink
        /// Any other type flag (devices, FIFOs, ...), kept so callers can report it.
        case other(UInt8)
    }
    /// Path inside the archive (ustar prefix, GNU long name and pax `path` applied).
    public var name: String
    public var kind: Kind
    /// Permission bits from the header.
    public var mode: Int
    /// File contents (empty for everything but regular files).
    public var data: [UInt8]
}

/// A tar reader: POSIX ustar, GNU (`L` long names, `ustar  ` magic) and pax (`x` headers with
/// `path` and `size`). Header checksums are verified; truncated members throw.
///
/// ```swift
/// let tar = try Gzip.decompress(try DataFile.read("cifar-10-binary.tar.gz"))
/// for entry in try Tar.entries(tar) where entry.kind == .file { print(entry.name, entry.data.count) }
/// ```
public enum Tar {
    /// All members of an uncompressed tar archive, in order.
    public static func entries(_ bytes: [UInt8], source: String = "tar archive") throws -> [TarEntry] {
        var result = [TarEntry]()
        var offset = 0
        var longName: String?
        var paxPath: String?
        var paxSize: Int?
        while offset + 512 <= bytes.count {
            let h = offset
            if bytes[h..<(h + 512)].allSatisfy({ $0 == 0 }) { break }  // end-of-archive marker
            func fail(_ reason: String) -> DataError { .malformed(source: source, offset: h, reason: "tar header: " + reason) }
            // Checksum: sum of the header bytes with the checksum field read as spaces.
            let stored = try octal(bytes, h + 148, 8, field: "checksum", source: source, header: h)
            var unsignedSum = 0
            var signedSum = 0
            for i in 0..<512 {
                let b = (148..<156).contains(i) ? UInt8(32) : bytes[h + i]
                unsignedSum += Int(b)
                signedSum += Int(Int8(bitPattern: b))
            }
            guard stored == unsignedSum || stored == signedSum else {
                throw fail("checksum mismatch (stored \(stored), computed \(unsignedSum)); not a tar archive or corrupt")
            }
            var name = cString(bytes, h, 100)
            let mode = (try? octal(bytes, h + 100, 8, field: "mode", source: source, header: h)) ?? 0
            var size = try numeric(bytes, h + 124, 12, source: source, header: h)
            let type = bytes[h + 156]
            let magic = Array(bytes[(h + 257)..<(h + 263)])
            if magic == Array("ustar\0".utf8) {
                let prefix = cString(bytes, h + 345, 155)
                if !prefix.isEmpty { name = prefix + "/" + name }
            }
            if let p = paxSize { size = p }
            guard size >= 0 else { throw fail("negative size") }
            let dataStart = h + 512
            guard dataStart + size <= bytes.count else {
                throw DataError.malformed(
                    source: source, offset: h,
                    reason: "tar member '\(longName ?? paxPath ?? name)' needs \(size) bytes but only \(bytes.count - dataStart) remain (truncated archive)")
            }
            let payload = bytes[dataStart..<(dataStart + size)]
            offset = dataStart + (size + 511) / 512 * 512
            switch type {
            case UInt8(ascii: "L"):  // GNU long name for the next member
                longName = decodeUTF8OrLatin1(Array(payload.prefix { $0 != 0 }))
                continue
            case UInt8(ascii: "K"):  // GNU long link name: not needed
                continue
            case UInt8(ascii: "x"):  // pax extended header for the next member
                let records = try paxRecords(Array(payload), source: source, header: h)
                if let p = records["path"] { paxPath = p }
                if let s = records["size"] {
                    guard let n = Int(s), n >= 0 else { throw fail("pax size '\(s)' is not a number") }
                    paxSize = n
                }
                continue
            case UInt8(ascii: "g"):  // pax global header: ignored
                continue
            default:
                break
            }
            if let p = paxPath { name = p } else if let l = longName { name = l }
            longName = nil
            paxPath = nil
            paxSize = nil
            let kind: TarEntry.Kind
            switch type {
            case 0, UInt8(ascii: "0"), UInt8(ascii: "7"): kind = name.hasSuffix("/") ? .directory : .file
            case UInt8(ascii: "5"): kind = .directory
            case UInt8(ascii: "2"): kind = .symbolicLink
            case UInt8(ascii: "1"): kind = .hardLink
            default: kind = .other(type)
            }
            result.append(TarEntry(name: name, kind: kind, mode: mode, data: kind == .file ? Array(payload) : []))
        }
        if offset < bytes.count, offset + 512 > bytes.count, !bytes[offset...].allSatisfy({ $0 == 0 }) {
            throw DataError.malformed(
                source: source, offset: offset, reason: "tar archive ends with a partial \(bytes.count - offset)-byte header block")
        }
        return result
    }

    /// Writes the regular files (and folders) of an archive below `directory`.
    /// Absolute paths and `..` components are rejected, so nothing lands outside `directory`.
    /// - Returns: the paths written.
    @discardableResult
    public static func extract(_ bytes: [UInt8], to directory: String, source: String = "tar archive") throws -> [String] {
        var written = [String]()
        for entry in try entries(bytes, source: source) {
            let parts = entry.name.split(separator: "/", omittingEmptySubsequences: true).filter { $0 != "." }
            if entry.name.hasPrefix("/") || parts.contains("..") {
                throw DataError.malformed(source: source, offset: nil, reason: "member '\(entry.name)' has an unsafe path")
            }
            if parts.isEmpty { continue }
            let path = parts.reduce(directory) { ($0 as NSString).appendingPathComponent(String($1)) }
            switch entry.kind {
            case .directory:
                try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            case .file:
                try DataFile.write(entry.data, to: path)
                written.append(path)
            default:
                continue  // links and special files are not needed by any data set
            }
        }
        return written
    }

    static func cString(_ b: [UInt8], _ at: Int, _ len: Int) -> String {
        let field = b[at..<(at + len)]
        let end = field.firstIndex(of: 0) ?? field.endIndex
        return decodeUTF8OrLatin1(Array(field[at..<end]))
    }

    static func octal(_ b: [UInt8], _ at: Int, _ len: Int, field: String, source: String, header: Int) throws -> Int {
        var value = 0
        var seenDigit = false
        for i in at..<(at + len) {
            let c = b[i]
            if c == 0 || c == 32 {
                if seenDigit { break } else { continue }
            }
            guard c >= 48, c <= 55 else {
                throw DataError.malformed(source: source, offset: header, reason: "tar header: \(field) field is not octal")
            }
            value = value * 8 + Int(c - 48)
            seenDigit = true
            if value > Int(Int32.max) * 1024 {
                throw DataError.malformed(source: source, offset: header, reason: "tar header: \(field) field is too large")
            }
        }
        return value
    }

    /// Octal, or GNU base-256 (first byte has the high bit set) for large sizes.
    static func numeric(_ b: [UInt8], _ at: Int, _ len: Int, source: String, header: Int) throws -> Int {
        if b[at] & 0x80 != 0 {
            var v = Int(b[at] & 0x7F)
            for i in (at + 1)..<(at + len) {
                guard v < (1 << 52) else {
                    throw DataError.malformed(source: source, offset: header, reason: "tar header: size field is too large")
                }
                v = v << 8 | Int(b[i])
            }
            return v
        }
        return try octal(b, at, len, field: "size", source: source, header: header)
    }

    /// pax records: "LEN key=value\n", LEN counting the whole record.
    static func paxRecords(_ data: [UInt8], source: String, header: Int) throws -> [String: String] {
        var records = [String: String]()
        var i = 0
        while i < data.count {
            if data[i] == 0 { break }
            var j = i
            var len = 0
            while j < data.count, data[j] >= 48, data[j] <= 57 {
                len = len * 10 + Int(data[j] - 48)
                j += 1
                if len > data.count { break }
            }
            guard j < data.count, data[j] == 32, len > 0, i + len <= data.count, data[i + len - 1] == 10 else {
                throw DataError.malformed(source: source, offset: header, reason: "pax header: malformed record at byte \(i)")
            }
            let record = Array(data[(j + 1)..<(i + len - 1)])
            if let eq = record.firstIndex(of: UInt8(ascii: "=")) {
                let key = String(decoding: record[..<eq], as: UTF8.self)
                records[key] = decodeUTF8OrLatin1(Array(record[(eq + 1)...]))
            }
            i += len
        }
        return records
    }
}
