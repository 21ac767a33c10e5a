import Foundation
import Testing

/// Reads the JSON fixtures `scripts/make_flower_fixtures.py` made with flwr 1.42.0.
enum Fixture {
    static func json(_ name: String) throws -> [String: Any] {
        let url = Bundle.module.resourceURL!.appendingPathComponent("Fixtures/\(name).json")
        return try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
    }

    static func bytes(_ base64: Any?) -> [UInt8] { [UInt8](Data(base64Encoded: base64 as! String)!) }
}

/// The error `body` throws; records an issue (and returns nil) when it throws none.
func thrown(_ body: () throws -> Any, sourceLocation: SourceLocation = #_sourceLocation) -> (any Error)? {
    do { _ = try body() } catch { return error }
    Issue.record("expected an error", sourceLocation: sourceLocation)
    return nil
}

/// A one-thread HTTP/1.1 server on 127.0.0.1 (a real socket) that answers each request with
/// `respond(method, path, headers, body)`, for testing the device's error handling.
final class LoopbackHTTPServer: @unchecked Sendable {
    typealias Responder = @Sendable (_ method: String, _ path: String, _ headers: [String: String], _ body: [UInt8]) -> [UInt8]
    let port: Int
    private let fd: Int32
    private let respond: Responder

    init(respond: @escaping Responder) throws {
        self.respond = respond
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, len) } }
        guard ok == 0, listen(s, 8) == 0 else { throw NSError(domain: "LoopbackHTTPServer", code: Int(errno)) }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) } }
        fd = s
        port = Int(UInt16(bigEndian: addr.sin_port))
        let t = Thread { [self] in self.serve() }
        t.start()
    }

    /// Builds a response with a Content-Length body.
    static func response(_ status: Int, _ reason: String, _ contentType: String, _ body: [UInt8], extra: [String] = []) -> [UInt8] {
        var head = "HTTP/1.1 \(status) \(reason)\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.count)\r\n"
        for h in extra { head += h + "\r\n" }
        return Array((head + "\r\n").utf8) + body
    }

    private func serve() {
        while true {
            let c = accept(fd, nil, nil)
            // After `stop()` accept fails; only then is the descriptor closed, so its number cannot be
            // reused by another test's socket while this thread may still call accept on it.
            if c < 0 { close(fd); return }
            var buffer: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                // One request: head, then Content-Length bytes.
                var headEnd: Int?
                while headEnd == nil {
                    if buffer.count >= 4 { headEnd = (0...(buffer.count - 4)).first { buffer[$0] == 13 && buffer[$0 + 1] == 10 && buffer[$0 + 2] == 13 && buffer[$0 + 3] == 10 } }
                    if headEnd != nil { break }
                    let n = recv(c, &chunk, chunk.count, 0)
                    if n <= 0 { close(c); buffer = []; break }
                    buffer += chunk[0..<n]
                }
                guard let end = headEnd else { break }
                let lines = String(decoding: buffer[0..<end], as: UTF8.self).components(separatedBy: "\r\n")
                let parts = lines[0].split(separator: " ")
                var headers: [String: String] = [:]
                for l in lines.dropFirst() {
                    if let i = l.firstIndex(of: ":") { headers[l[..<i].lowercased()] = l[l.index(after: i)...].trimmingCharacters(in: .whitespaces) }
                }
                let length = Int(headers["content-length"] ?? "0") ?? 0
                buffer.removeFirst(end + 4)
                while buffer.count < length {
                    let n = recv(c, &chunk, chunk.count, 0)
                    if n <= 0 { break }
                    buffer += chunk[0..<n]
                }
                let body = Array(buffer.prefix(length))
                buffer.removeFirst(min(length, buffer.count))
                let out = respond(String(parts[0]), String(parts[1]), headers, body)
                _ = out.withUnsafeBytes { send(c, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }
            }
        }
    }

    func stop() { shutdown(fd, Int32(SHUT_RDWR)) }
}
