import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only memory mapping of a whole file: the only place in the formats code that owns raw
/// memory. Readers keep one alive for as long as they hand out pointers into it.
///
/// The mapping is `PROT_READ`/`MAP_PRIVATE` and never written, so sharing it between threads is
/// safe (hence `@unchecked Sendable`). If another process truncates the file while it is mapped,
/// touching the lost pages raises SIGBUS: that is the one hazard mmap cannot guard against.
final class ReadOnlyMapping: @unchecked Sendable {
    /// The mapped bytes (empty for an empty file).
    let bytes: UnsafeRawBufferPointer
    /// The file's path, for error messages.
    let path: String
    private let base: UnsafeMutableRawPointer?
    private let length: Int
    private var owned = false

    /// Maps `url` read-only. Throws a `POSIXError`-style message naming the file on failure.
    init(url: URL) throws {
        let path = url.path
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw FormatIOError("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) != 0 { throw FormatIOError("cannot stat \(path): \(String(cString: strerror(errno)))") }
        if (st.st_mode & S_IFMT) != S_IFREG { throw FormatIOError("\(path) is not a regular file") }
        let size = Int(st.st_size)
        length = size
        if size == 0 {
            base = nil
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        if p == MAP_FAILED || p == nil {
            throw FormatIOError("cannot memory-map \(path) (\(size) bytes): \(String(cString: strerror(errno)))")
        }
        base = p
        bytes = UnsafeRawBufferPointer(start: p, count: size)
    }

    /// Holds a private copy of `data` instead of a mapping (for bytes already in memory).
    init<C: Collection>(copying data: C, name: String) where C.Element == UInt8 {
        path = name
        length = data.count
        owned = true
        if data.isEmpty {
            base = nil
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        let p = UnsafeMutableRawPointer.allocate(byteCount: data.count, alignment: 64)
        let buf = UnsafeMutableRawBufferPointer(start: p, count: data.count)
        _ = buf.initializeMemory(as: UInt8.self, from: data)
        base = p
        bytes = UnsafeRawBufferPointer(buf)
    }

    deinit {
        guard let base else { return }
        if owned { base.deallocate() } else { munmap(base, length) }
    }
}

/// An I/O failure (open, stat, mmap, write, rename) with a message naming the file.
public struct FormatIOError: Error, CustomStringConvertible, LocalizedError, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
    public var errorDescription: String? { message }
}

/// Writes files atomically: a temporary file in the destination's folder, `fsync`, `rename`,
/// then `fsync` of the folder, so a reader sees the old file or the complete new one, never a part.
enum AtomicFileWriter {
    /// Creates `url` atomically; `body` receives a sink that writes bytes to the temporary file.
    static func write(to url: URL, _ body: (inout AtomicFileSink) throws -> Void) throws {
        let dir = url.deletingLastPathComponent().path
        let name = url.lastPathComponent
        var template = Array("\(dir)/.\(name).tmp-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        if fd < 0 { throw FormatIOError("cannot create a temporary file in \(dir): \(String(cString: strerror(errno)))") }
        let tmpPath = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        var sink = AtomicFileSink(fd: fd, path: url.path)
        do {
            try body(&sink)
            try sink.flush()
            // mkstemp creates 0600; give the file the usual permissions (rw-r--r--, umask applies).
            let mask = umask(0); umask(mask)
            _ = fchmod(fd, 0o666 & ~mask)
            if fsync(fd) != 0 { throw FormatIOError("fsync failed for \(url.path): \(String(cString: strerror(errno)))") }
            if close(fd) != 0 { throw FormatIOError("close failed for \(url.path): \(String(cString: strerror(errno)))") }
            sink.closed = true
            if rename(tmpPath, url.path) != 0 {
                throw FormatIOError("cannot rename \(tmpPath) to \(url.path): \(String(cString: strerror(errno)))")
            }
        } catch {
            if !sink.closed { close(fd) }
            unlink(tmpPath)
            throw error
        }
        let dfd = open(dir, O_RDONLY | O_CLOEXEC)
        if dfd >= 0 { _ = fsync(dfd); close(dfd) }
    }
}

/// A buffered writer on a file descriptor (used by `AtomicFileWriter`).
struct AtomicFileSink {
    let fd: Int32
    let path: String
    var closed = false
    private var buffer: [UInt8] = []
    private(set) var written = 0

    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
        buffer.reserveCapacity(1 << 20)
    }

    mutating func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    mutating func write(_ bytes: UnsafeRawBufferPointer) throws {
        if bytes.count < (1 << 16) {
            buffer.append(contentsOf: bytes)
            if buffer.count >= (1 << 20) { try flush() }
        } else {
            try flush()
            try writeAll(bytes)
        }
    }

    mutating func flush() throws {
        if buffer.isEmpty { return }
        let b = buffer
        buffer.removeAll(keepingCapacity: true)
        try b.withUnsafeBytes { try writeAll($0) }
    }

    private mutating func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        guard var p = bytes.baseAddress else { return }
        var left = bytes.count
        while left > 0 {
            let n = Glibc_write(fd, p, min(left, 1 << 30))
            if n < 0 {
                if errno == EINTR { continue }
                throw FormatIOError("write failed for \(path): \(String(cString: strerror(errno)))")
            }
            p += n
            left -= n
            written += n
        }
    }
}

@inline(__always)
private func Glibc_write(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.write(fd, p, n)
    #else
    return Darwin.write(fd, p, n)
    #endif
}

/// Writes whole files atomically (temporary file, `fsync`, `rename`, `fsync` of the folder): a
/// reader, or a process restarted after a crash, sees the old file or the complete new one.
public enum AtomicFile {
    /// Replaces `url` with `bytes` atomically.
    public static func write(_ bytes: [UInt8], to url: URL) throws {
        try AtomicFileWriter.write(to: url) { sink in try bytes.withUnsafeBytes { try sink.write($0) } }
    }
}
