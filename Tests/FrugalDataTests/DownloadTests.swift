#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Testing
@testable import FrugalData

/// A tiny HTTP/1.1 server on 127.0.0.1 (ephemeral port) for the downloader tests.
/// Routes map a path to a response; the accept loop runs on a background thread until `stop()`.
/// Mutable state is only the request log, guarded by `lock` (hence `@unchecked Sendable`).
final class TestHTTPServer: @unchecked Sendable {
    enum Reply: Sendable {
        case body([UInt8])
        case chunked([UInt8])
        case redirect(String)
        case truncated([UInt8])  // announces the full length, sends half, closes
    }
    let port: Int
    private let fd: Int32
    private let routes: [String: Reply]
    private let done = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var log: [String] = []

    init(routes: [String: Reply]) throws {
        self.routes = routes
        #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        self.fd = fd
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bind(fd, sa, len) == 0 && listen(fd, 16) == 0 && getsockname(fd, sa, &len) == 0
            }
        }
        guard ok else { throw DataError.network(url: "127.0.0.1", reason: "test server cannot listen") }
        port = Int(UInt16(bigEndian: addr.sin_port))
        let t = Thread { [self] in
            self.serve()
            self.done.signal()
        }
        t.start()
    }

    var base: String { "http://127.0.0.1:\(port)" }
    var requests: [String] { lock.lock(); defer { lock.unlock() }; return log }

    private func serve() {
        while true {
            let c = accept(fd, nil, nil)
            if c < 0 { return }  // listening socket shut down
            handle(c)
            close(c)
        }
    }

    private func handle(_ c: Int32) {
        var req = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 4096)
        while !(req.count >= 4 && req.suffix(4) == [13, 10, 13, 10]) {
            let n = buf.withUnsafeMutableBytes { recv(c, $0.baseAddress!, 4096, 0) }
            if n <= 0 { return }
            req += buf[0..<n]
        }
        let line = String(decoding: req, as: UTF8.self).split(separator: "\r\n").first ?? ""
        let parts = line.split(separator: " ")
        let path = parts.count > 1 ? String(parts[1]) : "/"
        lock.lock(); log.append(path); lock.unlock()
        func send(_ bytes: [UInt8]) {
            var off = 0
            while off < bytes.count {
                let n = bytes.withUnsafeBytes { Glibc.send(c, $0.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL)) }
                if n <= 0 { return }
                off += n
            }
        }
        switch routes[path] {
        case .body(let b)?:
            send(Array("HTTP/1.1 200 OK\r\nContent-Length: \(b.count)\r\nConnection: close\r\n\r\n".utf8) + b)
        case .chunked(let b)?:
            var out = Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
            var i = 0
            while i < b.count {
                let n = min(1000, b.count - i)
                out += Array("\(String(n, radix: 16))\r\n".utf8) + b[i..<(i + n)] + [13, 10]
                i += n
            }
            send(out + Array("0\r\n\r\n".utf8))
        case .redirect(let to)?:
            send(Array("HTTP/1.1 302 Found\r\nLocation: \(to)\r\nContent-Length: 0\r\n\r\n".utf8))
        case .truncated(let b)?:
            send(Array("HTTP/1.1 200 OK\r\nContent-Length: \(b.count)\r\n\r\n".utf8) + b.prefix(b.count / 2))
        case nil:
            send(Array("HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found".utf8))
        }
    }

    func stop() {
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
        done.wait()
    }
}

@Suite(.serialized) struct DownloadTests {
    @Test func httpClientPaths() throws {
        let payload = try DataFixture.bytes("payload.bin")
        let server = try TestHTTPServer(routes: [
            "/plain": .body(payload), "/chunked": .chunked(payload), "/old": .redirect("/plain"),
            "/cut": .truncated(payload),
        ])
        defer { server.stop() }
        #expect(try HTTPClient.get(server.base + "/plain") == payload)
        #expect(try HTTPClient.get(server.base + "/chunked") == payload)
        #expect(try HTTPClient.get(server.base + "/old") == payload)
        #expect {
            try HTTPClient.get(server.base + "/missing")
        } throws: { e in "\(e)".contains("HTTP status 404") }
        #expect {
            try HTTPClient.get(server.base + "/cut")
        } throws: { e in "\(e)".contains("connection closed after") }
        #expect(throws: DataError.self) { try HTTPClient.get("ftp://example.com/x") }
        // The https path shells out to curl or wget; check it against the local server over http.
        let tools = ["/usr/bin/curl", "/bin/curl", "/usr/local/bin/curl", "/usr/bin/wget", "/bin/wget"]
        if tools.contains(where: { FileManager.default.isExecutableFile(atPath: $0) }) {
            #expect(try ExternalFetch.get(server.base + "/chunked") == payload)
            #expect(throws: DataError.self) { try ExternalFetch.get(server.base + "/missing") }
        }
        #expect(server.requests.contains("/old"))
    }

    @Test func downloadsMNISTLayout() throws {
        let names = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
        var routes = [String: TestHTTPServer.Reply]()
        for n in names { routes["/mnist/" + n] = .body(try DataFixture.bytes("mnist-mini/" + n)) }
        let server = try TestHTTPServer(routes: routes)
        defer { server.stop() }
        let tmp = DataTempDir()
        defer { tmp.cleanup() }
        let md5s = try DataFixture.manifest()["mnist_mini_md5"] as! [String: String]
        var source = DatasetDownloader.source(for: .mnist, baseURL: server.base + "/mnist")
        #expect(source.baseURL == server.base + "/mnist/")
        // The official checksums do not match the fixture files: rejected, nothing written.
        #expect {
            try DatasetDownloader.download(source, root: tmp.path)
        } throws: { e in
            guard case DataError.checksumMismatch(let file, "MD5", "f68b3c2dcbeaaa9fbdd348bbdeb94873", _) = e else { return false }
            return file.hasSuffix("train-images-idx3-ubyte.gz")
        }
        #expect(!DataFile.exists(tmp.file("mnist/train-images-idx3-ubyte.gz")))
        source.files = names.map { DatasetDownloader.RemoteFile(name: $0, md5: md5s[$0]!) }
        var messages = [String]()
        let dir = try DatasetDownloader.download(source, root: tmp.path) { messages.append($0) }
        #expect(dir == tmp.file("mnist"))
        #expect(messages.contains { $0.contains("MD5 ok") })
        let train = try MNIST.load(dir: dir, train: true)
        #expect(train.count == 30)
        // A second call finds everything in place and fetches nothing.
        let before = server.requests.count
        try DatasetDownloader.download(source, root: tmp.path)
        #expect(server.requests.count == before)
    }

    @Test func downloadsAndExtractsCIFARArchive() throws {
        let archive = try DataFixture.bytes("cifar-10-binary-mini.tar.gz")
        var corrupt = archive
        corrupt[corrupt.count / 2] ^= 0x40
        let server = try TestHTTPServer(routes: [
            "/good/cifar-10-binary.tar.gz": .chunked(archive), "/bad/cifar-10-binary.tar.gz": .body(corrupt),
        ])
        defer { server.stop() }
        let tmp = DataTempDir()
        defer { tmp.cleanup() }
        let m = try DataFixture.manifest()["cifar_mini"] as! [String: Any]
        var source = DatasetDownloader.source(for: .cifar10, baseURL: server.base + "/bad/")
        source.files[0].md5 = m["md5"] as! String
        #expect {
            try DatasetDownloader.download(source, root: tmp.path)
        } throws: { e in
            if case DataError.checksumMismatch = e { return true }
            return false
        }
        #expect(!DataFile.exists(tmp.file("cifar-10-batches-bin")))
        source.baseURL = server.base + "/good/"
        let dir = try DatasetDownloader.download(source, root: tmp.path)
        #expect(dir == tmp.file("cifar-10-batches-bin"))
        let batches = m["batches"] as! [String: String]
        for (name, sha) in batches { #expect(Checksums.sha256Hex(try DataFile.read(dir + "/" + name)) == sha) }
        let train = try CIFAR10.load(dir: dir, train: true)
        let test = try CIFAR10.load(dir: dir, train: false)
        #expect(train.count == 15 && test.count == 3)
        #expect(train.labels == (0..<15).map { Int32($0 % 10) })
        #expect(Checksums.sha256Hex(archive) == m["sha256"] as! String)
    }

    @Test func officialSources() {
        let c = DatasetDownloader.source(for: .cifar10)
        #expect(c.baseURL + c.files[0].name == "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz")
        #expect(c.files[0].md5 == "c32a1d4ab5d03f1284b67883e8d87530")
        #expect(DatasetDownloader.source(for: .fashionMNIST).files.map(\.md5).contains("bb300cfdad3c16e7a12a480ee83cd310"))
        #expect(DatasetDownloader.Dataset(rawValue: "fashion-mnist") == .fashionMNIST)
    }
}
