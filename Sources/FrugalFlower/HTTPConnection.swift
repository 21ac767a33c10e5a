import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One HTTP/1.1 response.
struct HTTPResponse {
    var status: Int
    var reason: String
    var headers: [(String, String)]
    var body: [UInt8]
    func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
}

/// A blocking HTTP/1.1 client connection over a TCP socket (plain text), with keep-alive.
///
/// Enough for Flower's protobuf-over-HTTP Fleet API: POST with a body, responses framed by
/// Content-Length or chunked transfer encoding. A connection the server closed while idle is
/// reopened once before the request is sent again. Not thread-safe: one connection per thread.
final class HTTPConnection {
    let host: String
    let port: Int
    /// Seconds a connect, send or receive may block.
    var timeout: Double
    private var fd: Int32 = -1
    private var buffer: [UInt8] = []

    init(host: String, port: Int, timeout: Double = 30) {
        self.host = host; self.port = port; self.timeout = timeout
    }

    deinit { close() }

    func close() {
        if fd >= 0 { _ = SystemCall.close(fd); fd = -1 }
        buffer.removeAll()
    }

    var address: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// Sends a request and reads the whole response.
    func request(method: String, path: String, headers: [(String, String)], body: [UInt8]) throws -> HTTPResponse {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(address)\r\nContent-Length: \(body.count)\r\n"
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        head += "\r\n"
        let bytes = Array(head.utf8) + body
        let reused = fd >= 0
        do {
            if fd < 0 { try connect() }
            try sendAll(bytes)
            return try readResponse(method: method)
        } catch let e as ConnectionClosedEarly where reused {
            // The server closed the idle keep-alive connection before this request: open a new one.
            _ = e
            close()
            try connect()
            try sendAll(bytes)
            return try readResponse(method: method)
        }
    }

    private struct ConnectionClosedEarly: Error {}

    private func connect() throws {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
        hints.ai_socktype = SOCK_STREAM
        #endif
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &res)
        guard rc == 0, let first = res else {
            throw FlowerError(.transport, "cannot resolve \(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(first) }
        var lastError = "no address"
        var ai: UnsafeMutablePointer<addrinfo>? = first
        while let a = ai {
            let s = socket(a.pointee.ai_family, a.pointee.ai_socktype, a.pointee.ai_protocol)
            if s >= 0 {
                var tv = timeval()
                tv.tv_sec = .init(timeout)
                tv.tv_usec = .init((timeout - timeout.rounded(.down)) * 1e6)
                _ = setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                _ = setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                var one: Int32 = 1
                _ = setsockopt(s, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                if SystemCall.connect(s, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 {
                    fd = s
                    buffer.removeAll()
                    return
                }
                lastError = String(cString: strerror(errno))
                _ = SystemCall.close(s)
            } else {
                lastError = String(cString: strerror(errno))
            }
            ai = a.pointee.ai_next
        }
        throw FlowerError(.transport, "cannot connect to \(address): \(lastError)")
    }

    private func sendAll(_ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { raw in
                SystemCall.send(fd, raw.baseAddress! + off, raw.count - off)
            }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EPIPE || errno == ECONNRESET { throw ConnectionClosedEarly() }
                let why = String(cString: strerror(errno))
                close()
                throw FlowerError(.transport, "sending to \(address) failed: \(why)")
            }
            off += n
        }
    }

    /// Reads more bytes into `buffer`; false at end of stream.
    private func fill() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { SystemCall.recv(fd, $0.baseAddress!, $0.count) }
            if n > 0 { buffer += chunk[0..<n]; return true }
            if n == 0 { return false }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK {
                close()
                throw FlowerError(.transport, "no answer from \(address) within \(Int(timeout)) s")
            }
            if errno == ECONNRESET { return false }
            let why = String(cString: strerror(errno))
            close()
            throw FlowerError(.transport, "receiving from \(address) failed: \(why)")
        }
    }

    private func readResponse(method: String) throws -> HTTPResponse {
        // Head
        var headEnd: Int?
        while true {
            if let r = findCRLFCRLF() { headEnd = r; break }
            if buffer.count > 1 << 20 { close(); throw FlowerError(.protocolViolation, "\(address) sent a response head over 1 MiB") }
            if try !fill() {
                if buffer.isEmpty { close(); throw ConnectionClosedEarly() }
                close()
                throw FlowerError(.protocolViolation, "\(address) closed the connection inside a response head")
            }
            if buffer.count >= 5, Array(buffer[0..<5]) != Array("HTTP/".utf8) {
                let printable = buffer.prefix(24).map { $0 >= 0x20 && $0 < 0x7F ? String(UnicodeScalar($0)) : "." }.joined()
                close()
                throw FlowerError(.protocolViolation, "\(address) did not answer in HTTP/1.x (it sent \"\(printable)\"): it is not a Flower 1.42 SuperLink's HTTP API (an HTTP/2-only gRPC server?)")
            }
        }
        let headBytes = Array(buffer[0..<headEnd!])
        buffer.removeFirst(headEnd! + 4)
        let lines = String(decoding: headBytes, as: UTF8.self).components(separatedBy: "\r\n")
        let statusParts = lines[0].split(separator: " ", maxSplits: 2).map(String.init)
        guard statusParts.count >= 2, statusParts[0].hasPrefix("HTTP/1."), let status = Int(statusParts[1]) else {
            close()
            throw FlowerError(.protocolViolation, "\(address) sent a malformed status line '\(lines[0].prefix(100))'")
        }
        var headers: [(String, String)] = []
        for line in lines.dropFirst() where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.append((String(line[..<colon]).trimmingCharacters(in: .whitespaces),
                            String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces)))
        }
        var response = HTTPResponse(status: status, reason: statusParts.count > 2 ? statusParts[2] : "", headers: headers, body: [])
        // Body
        if method == "HEAD" || status == 204 || status == 304 || (100..<200).contains(status) {
        } else if response.header("Transfer-Encoding")?.lowercased().contains("chunked") == true {
            while true {
                var lineEnd: Int? = findCRLF()
                while lineEnd == nil {
                    guard try fill() else { close(); throw FlowerError(.protocolViolation, "\(address) closed the connection inside a chunked body") }
                    lineEnd = findCRLF()
                }
                let sizeText = String(decoding: buffer[0..<lineEnd!], as: UTF8.self).split(separator: ";").first.map(String.init) ?? ""
                guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16), size >= 0 else {
                    close(); throw FlowerError(.protocolViolation, "\(address) sent a bad chunk size '\(sizeText)'")
                }
                buffer.removeFirst(lineEnd! + 2)
                if size == 0 {
                    // Trailers end with an empty line.
                    while findCRLF() == nil { guard try fill() else { break } }
                    while let e = findCRLF() { let empty = e == 0; buffer.removeFirst(e + 2); if empty { break } }
                    break
                }
                while buffer.count < size + 2 {
                    guard try fill() else { close(); throw FlowerError(.protocolViolation, "\(address) closed the connection inside a chunk") }
                }
                response.body += buffer[0..<size]
                buffer.removeFirst(size + 2)
            }
        } else if let lengthText = response.header("Content-Length") {
            guard let length = Int(lengthText), length >= 0 else {
                close(); throw FlowerError(.protocolViolation, "\(address) sent Content-Length '\(lengthText)'")
            }
            while buffer.count < length {
                guard try fill() else { close(); throw FlowerError(.protocolViolation, "\(address) closed the connection after \(buffer.count) of \(length) body bytes") }
            }
            response.body = Array(buffer[0..<length])
            buffer.removeFirst(length)
        } else {
            while try fill() {}
            response.body = buffer
            buffer.removeAll()
            close()
        }
        if response.header("Connection")?.lowercased() == "close" { close() }
        return response
    }

    private func findCRLFCRLF() -> Int? {
        guard buffer.count >= 4 else { return nil }
        for i in 0...(buffer.count - 4) where buffer[i] == 13 && buffer[i + 1] == 10 && buffer[i + 2] == 13 && buffer[i + 3] == 10 { return i }
        return nil
    }

    private func findCRLF() -> Int? {
        guard buffer.count >= 2 else { return nil }
        for i in 0...(buffer.count - 2) where buffer[i] == 13 && buffer[i + 1] == 10 { return i }
        return nil
    }
}

/// The C calls whose Swift names clash with methods here.
enum SystemCall {
    static func close(_ fd: Int32) -> Int32 {
        #if canImport(Glibc)
        return Glibc.close(fd)
        #elseif canImport(Musl)
        return Musl.close(fd)
        #else
        return Darwin.close(fd)
        #endif
    }
    static func connect(_ fd: Int32, _ addr: UnsafePointer<sockaddr>?, _ len: socklen_t) -> Int32 {
        #if canImport(Glibc)
        return Glibc.connect(fd, addr, len)
        #elseif canImport(Musl)
        return Musl.connect(fd, addr, len)
        #else
        return Darwin.connect(fd, addr, len)
        #endif
    }
    static func send(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int {
        #if os(Linux)
        return Glibc.send(fd, p, n, Int32(MSG_NOSIGNAL))
        #else
        return Darwin.send(fd, p, n, 0)
        #endif
    }
    static func recv(_ fd: Int32, _ p: UnsafeMutableRawPointer, _ n: Int) -> Int {
        #if canImport(Glibc)
        return Glibc.recv(fd, p, n, 0)
        #else
        return Darwin.recv(fd, p, n, 0)
        #endif
    }
}
