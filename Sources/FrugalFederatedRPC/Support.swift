import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging

/// Sets up swift-log once for a process: key=value lines on standard error at `level`
/// (trace, debug, info, notice, warning, error, critical).
public func bootstrapDeploymentLogging(level: String) throws {
    guard let l = Logger.Level(rawValue: level) else {
        throw DeploymentError("log level '\(level)': use trace, debug, info, notice, warning, error or critical")
    }
    LoggingSystem.bootstrap { label in
        var h = StreamLogHandler.standardError(label: label)
        h.logLevel = l
        return h
    }
}

/// Runs async work from synchronous code (a command's `run`) and waits for it.
public func blockingAwait<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let box = ResultBox<T>()
    let sem = DispatchSemaphore(value: 0)
    Task {
        do { box.result = .success(try await body()) } catch { box.result = .failure(error) }
        sem.signal()
    }
    sem.wait()
    return try box.result!.get()
}

/// A result handed from a task to a waiting thread. `@unchecked Sendable`: written once by the task
/// before it signals, read by the waiter after the signal.
final class ResultBox<T>: @unchecked Sendable {
    var result: Result<T, any Error>?
}

/// Peak resident memory of this process (VmHWM), bytes; nil where /proc is not available.
public func peakResidentBytes() -> Int? {
    guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
    for line in s.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let kb = line.split(separator: " ").compactMap { Int($0) }.first
        return kb.map { $0 * 1024 }
    }
    return nil
}

/// Splits "HOST:PORT" (IPv4, name; "[::1]:PORT" for IPv6 is not supported).
public func parseHostPort(_ s: String, what: String) throws -> (host: String, port: Int) {
    guard let colon = s.lastIndex(of: ":"), let port = Int(s[s.index(after: colon)...]), (0 ... 65535).contains(port),
          colon > s.startIndex else {
        throw DeploymentError("\(what) '\(s)': use HOST:PORT")
    }
    return (String(s[..<colon]), port)
}

/// What `frugal fl status` shows.
public struct FederationStatus: Sendable, Codable {
    public var runID: String
    public var strategy: String
    public var rounds: Int
    public var completedRounds: Int
    public var phase: String
    public var openRound: Int
    public var selected: Int
    public var received: Int
    public var devicesSeen: Int
    public var bytesDown: Int
    public var bytesUp: Int
    public var rejected: Int
    public var accuracy: Double?

    /// Asks a running server.
    public static func query(host: String, port: Int, trustedCertificate: String?) async throws -> FederationStatus {
        let security: HTTP2ClientTransport.Posix.TransportSecurity = trustedCertificate.map { ca in
            .tls { $0.trustRoots = .certificates([.file(path: ca, format: .pem)]) }
        } ?? .plaintext
        let isIPv4 = host.split(separator: ".").count == 4 && host.allSatisfy { $0.isNumber || $0 == "." }
        let target: any ResolvableTarget = isIPv4 ? .ipv4(host: host, port: port) : .dns(host: host, port: port)
        return try await withGRPCClient(transport: try HTTP2ClientTransport.Posix(target: target, transportSecurity: security)) { client in
            let r = try await Frugal_Fl_V1_Federation.Client(wrapping: client).status(Frugal_Fl_V1_StatusRequest(),
                                                                                      options: { var o = CallOptions.defaults; o.timeout = .seconds(10); return o }())
            return FederationStatus(runID: r.runID, strategy: r.strategy, rounds: Int(r.rounds), completedRounds: Int(r.completedRounds),
                                    phase: r.phase, openRound: Int(r.openRound), selected: Int(r.selected), received: Int(r.received),
                                    devicesSeen: Int(r.devicesSeen), bytesDown: Int(r.bytesDown), bytesUp: Int(r.bytesUp),
                                    rejected: Int(r.rejected), accuracy: r.accuracy < 0 ? nil : r.accuracy)
        }
    }
}
