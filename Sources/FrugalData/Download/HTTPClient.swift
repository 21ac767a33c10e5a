#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// A minimal HTTP/1.1 GET client over POSIX sockets (plain `http://` only), with redirects,
/// `Content-Length` and chunked bodies. `https://` URLs are fetched with `curl` or `wget` when
/// installed (FoundationNetworking is avoided: it needs libcurl at load time on Linux, which would
/// make every binary that links FrugalData fail to start on a machine without it).
public enum HTTPClient {
    struct Target {
        var scheme: String
        var host: String
        var port: Int
        var path: String
    }

    static func parse(_ url: String) throws -> Target {
        guard let sep = url.range(of: "://") else { throw DataError.network(url: url, reason: "not an absolute URL") }
        let scheme = url[..<sep.lowerBound].lowercased()
        let rest = url[sep.upperBound...]
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        var hostPort = String(rest[..<slash])
        let path = slash == rest.endIndex ? "/" : String(rest[slash...])
        if let at = hostPort.lastIndex(of: "@") { hostPort = String(hostPort[hostPort.index(after: at)...]) }
        var host = hostPort
        var port = scheme == "https" ? 443 : 80
        if hostPort.hasPrefix("["), let close = hostPort.firstIndex(of: "]") {  // [IPv6]:port
            host = String(hostPort[hostPort.index(after: hostPort.startIndex)..<close])
            let after = hostPort[hostPort.index(after: close)...]
            if after.hasPrefix(":"), let p = Int(after.dropFirst()) { port = p }
        } else if let colon = hostPort.lastIndex(of: ":") {
            guard let p = Int(hostPort[hostPort.index(after: colon)...]), (1...65535).contains(p) else {
                throw DataError.network(url: url, reason: "bad port")
            }
            host = String(hostPort[..<colon])
            port = p
        }
        guard !host.isEmpty else { throw DataError.network(url: url, reason: "no host name") }
        guard scheme == "http" || scheme == "https" else {
            throw DataError.network(url: url, reason: "unsupported scheme '\(scheme)' (http or https)")
        }
        return Target(scheme: scheme, host: host, port: port, path: path)
    }

    /// Downloads `url` into memory, following up to `maxRedirects` redirects.
    /// - Parameter progress: called with (bytes so far, total if known) as data arrives (http only).
    public static func get(
        _ url: String, timeout: Double = 60, maxRedirects: Int = 5, progress: ((Int, Int?) -> Void)? = nil
    ) throws -> [UInt8] {
        var current = url
        for _ in 0...maxRedirects {
            let target = try parse(current)
            if target.scheme == "https" { return try ExternalFetch.get(current) }
            let response = try request(target, url: current, timeout: timeout, progress: progress)
            switch response.status {
            case 200:
                return response.body
            case 301, 302, 303, 307, 308:
                guard let location = response.headers["location"] else {
                    throw DataError.network(url: current, reason: "redirect \(response.status) without a Location header")
                }
                if location.contains("://") {
                    current = location
                } else if location.hasPrefix("/") {
                    current = "\(target.scheme)://\(target.host):\(target.port)\(location)"
                } else {
                    let dir = target.path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
                    current = "\(target.scheme)://\(target.host):\(target.port)\(dir)/\(location)"
                }
            default:
                throw DataError.network(url: current, reason: "HTTP status \(response.status)")
            }
        }
        throw DataError.network(url: url, reason: "more than \(maxRedirects) redirects")
    }

    struct Response {
        var status: Int
        var headers: [String: String]
        var body: [UInt8]
    }

    static func connect(_ t: Target, url: String, timeout: Double) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
        hints.ai_socktype = SOCK_STREAM
        #endif
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(t.host, String(t.port), &hints, &list)
        guard rc == 0, let first = list else {
            throw DataError.network(url: url, reason: "cannot resolve host \(t.host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(list) }
        var lastError = "no address"
        var ai: UnsafeMutablePointer<addrinfo>? = first
        while let a = ai {
            let fd = socket(a.pointee.ai_family, a.pointee.ai_socktype, a.pointee.ai_protocol)
            if fd >= 0 {
                var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                #if canImport(Glibc)
                let connected = Glibc.connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0
                #else
                let connected = Darwin.connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0
                #endif
                if connected { return fd }
                lastError = String(cString: strerror(errno))
                close(fd)
            }
            ai = a.pointee.ai_next
        }
        throw DataError.network(url: url, reason: "cannot connect to \(t.host):\(t.port): \(lastError)")
    }

    static func request(_ t: Target, url: String, timeout: Double, progress: ((Int, Int?) -> Void)?) throws -> Response {
        let fd = try connect(t, url: url, timeout: timeout)
        defer { close(fd) }
        let hostHeader = (t.port == 80) ? t.host : "\(t.host):\(t.port)"
        let req = "GET \(t.path) HTTP/1.1\r\nHost: \(hostHeader)\r\nUser-Agent: frugal-data/1\r\nAccept: */*\r\n"
            + "Accept-Encoding: identity\r\nConnection: close\r\n\r\n"
        var sent = 0
        let bytes = Array(req.utf8)
        while sent < bytes.count {
            #if canImport(Glibc)
            let flags = Int32(MSG_NOSIGNAL)  // a closed peer must not kill the process with SIGPIPE
            #else
            let flags: Int32 = 0
            #endif
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, bytes.count - sent, flags) }
            if n < 0 {
                if errno == EINTR { continue }
                throw DataError.network(url: url, reason: "send failed: \(String(cString: strerror(errno)))")
            }
            sent += n
        }
        var reader = SocketReader(fd: fd, url: url)
        // Status line and headers.
        let head = try reader.readUntilBlankLine()
        let lines = String(decoding: head, as: UTF8.self).split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusParts = lines.first?.split(separator: " ") ?? []
        guard statusParts.count >= 2, statusParts[0].hasPrefix("HTTP/1."), let status = Int(statusParts[1]) else {
            throw DataError.network(url: url, reason: "not an HTTP/1.x response: '\(lines.first ?? "")'")
        }
        var headers = [String: String]()
        for line in lines.dropFirst() where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmedSpaces()
        }
        if (300..<400).contains(status) || status != 200 {
            return Response(status: status, headers: headers, body: [])
        }
        var body = [UInt8]()
        if headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
            while true {
                let sizeLine = String(decoding: try reader.readLine(), as: UTF8.self)
                let hexPart = sizeLine.split(separator: ";").first.map { $0.trimmedSpaces() } ?? ""
                guard let size = Int(hexPart, radix: 16), size >= 0 else {
                    throw DataError.network(url: url, reason: "bad chunk size line '\(sizeLine)'")
                }
                if size == 0 { break }
                body.append(contentsOf: try reader.read(exactly: size))
                progress?(body.count, nil)
                _ = try reader.readLine()
            }
        } else if let lengthText = headers["content-length"] {
            guard let length = Int(lengthText), length >= 0 else {
                throw DataError.network(url: url, reason: "bad Content-Length '\(lengthText)'")
            }
            body.reserveCapacity(length)
            while body.count < length {
                let chunk = try reader.read(upTo: length - body.count)
                if chunk.isEmpty {
                    throw DataError.network(url: url, reason: "connection closed after \(body.count) of \(length) bytes")
                }
                body.append(contentsOf: chunk)
                progress?(body.count, length)
            }
        } else {
            while true {
                let chunk = try reader.read(upTo: 1 << 20)
                if chunk.isEmpty { break }
                body.append(contentsOf: chunk)
                progress?(body.count, nil)
            }
        }
        return Response(status: status, headers: headers, body: body)
    }
}

/// Buffered reads from a socket.
struct SocketReader {
    let fd: Int32
    let url: String
    var buffer = [UInt8]()
    var start = 0

    init(fd: Int32, url: String) {
        self.fd = fd
        self.url = url
    }

    /// Reads more bytes into the buffer; returns false at end of stream.
    mutating func fill() throws -> Bool {
        if start > 0 && start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        }
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { throw DataError.network(url: url, reason: "timed out") }
                throw DataError.network(url: url, reason: "receive failed: \(String(cString: strerror(errno)))")
            }
            if n == 0 { return false }
            buffer.append(contentsOf: chunk[0..<n])
            return true
        }
    }

    mutating func readUntilBlankLine() throws -> [UInt8] {
        let marker: [UInt8] = [13, 10, 13, 10]
        var searchFrom = start
        while true {
            if buffer.count - start >= 4 {
                var i = max(start, searchFrom - 3)
                while i + 4 <= buffer.count {
                    if buffer[i] == 13 && buffer[i + 1] == 10 && buffer[i + 2] == 13 && buffer[i + 3] == 10 {
                        let head = Array(buffer[start..<i])
                        start = i + marker.count
                        return head
                    }
                    i += 1
                }
                searchFrom = buffer.count
            }
            guard buffer.count - start < 1 << 20 else { throw DataError.network(url: url, reason: "response headers too long") }
            guard try fill() else { throw DataError.network(url: url, reason: "connection closed before the response headers ended") }
        }
    }

    mutating func readLine() throws -> [UInt8] {
        while true {
            if let nl = buffer[start...].firstIndex(of: 10) {
                var line = Array(buffer[start..<nl])
                if line.last == 13 { line.removeLast() }
                start = nl + 1
                return line
            }
            guard try fill() else { throw DataError.network(url: url, reason: "connection closed inside a chunked body") }
        }
    }

    mutating func read(upTo n: Int) throws -> [UInt8] {
        if start == buffer.count { guard try fill() else { return [] } }
        let take = min(n, buffer.count - start)
        let out = Array(buffer[start..<(start + take)])
        start += take
        return out
    }

    mutating func read(exactly n: Int) throws -> [UInt8] {
        var out = [UInt8]()
        while out.count < n {
            let chunk = try read(upTo: n - out.count)
            if chunk.isEmpty { throw DataError.network(url: url, reason: "connection closed inside a chunk") }
            out.append(contentsOf: chunk)
        }
        return out
    }
}

/// `https://` downloads through `curl` or `wget` (whichever is installed).
enum ExternalFetch {
    static func get(_ url: String) throws -> [UInt8] {
        let tmp = NSTemporaryDirectory() + "frugal-download-" + UUID().uuidString
        defer { unlink(tmp) }
        let attempts: [[String]] = [
            ["curl", "-fsSL", "--retry", "2", "-o", tmp, url],
            ["wget", "-q", "-O", tmp, url],
        ]
        var reasons = [String]()
        for args in attempts {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = args
            p.standardOutput = FileHandle.nullDevice
            let errPipe = Pipe()
            p.standardError = errPipe
            do { try p.run() } catch {
                reasons.append("\(args[0]): \(error)")
                continue
            }
            let err = errPipe.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            if p.terminationStatus == 0 { return try DataFile.read(tmp) }
            if p.terminationStatus == 127 {
                reasons.append("\(args[0]) is not installed")
            } else {
                let msg = String(decoding: err, as: UTF8.self).trimmedSpaces()
                reasons.append("\(args[0]) exited with status \(p.terminationStatus)\(msg.isEmpty ? "" : ": " + msg)")
            }
        }
        throw DataError.network(
            url: url, reason: "https needs curl or wget (" + reasons.joined(separator: "; ") + ")")
    }
}
