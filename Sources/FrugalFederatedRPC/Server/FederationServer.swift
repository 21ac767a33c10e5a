import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import NIOPosix
import FrugalFederated

/// TLS material of a server: a PEM certificate chain and its PEM private key (the operator's).
public struct ServerTLS: Sendable, Codable, Equatable {
    public var certificate: String
    public var key: String
    public init(certificate: String, key: String) { self.certificate = certificate; self.key = key }
}

/// `frugal fl serve`: the coordinator behind a gRPC server (TLS unless explicitly plaintext),
/// an optional Prometheus endpoint, and the round engine on its own thread.
///
///     let server = try FederationServer(coordinator: c, enrolment: store, host: "0.0.0.0", port: 7070, tls: tls)
///     let port = try await server.start()          // bound port
///     let result = try await server.run()          // all rounds, then a grace period for devices to hear "finished"
public final class FederationServer: @unchecked Sendable {
    // @unchecked Sendable: `grpc`, `serving` and `metricsEndpoint` are set once in `start` before
    // anything else reads them.
    public let coordinator: Coordinator
    let enrolment: EnrolmentStore
    let host: String
    let port: Int
    let tls: ServerTLS?
    let metricsAddress: (host: String, port: Int)?
    let logger: Logger
    var grpc: GRPCServer<HTTP2ServerTransport.Posix>?
    var serving: Task<Void, any Error>?
    var metricsEndpoint: MetricsEndpoint?
    /// Seconds the server keeps answering after the last round, so that waiting devices hear that
    /// the run finished.
    public var lingerSeconds = 3.0

    public init(coordinator: Coordinator, enrolment: EnrolmentStore, host: String, port: Int, tls: ServerTLS?,
                metrics: (host: String, port: Int)? = nil, logger: Logger = Logger(label: "frugal.fl.server")) {
        self.coordinator = coordinator
        self.enrolment = enrolment
        self.host = host
        self.port = port
        self.tls = tls
        self.metricsAddress = metrics
        self.logger = logger
    }

    /// Binds and starts serving; returns the bound port (useful with port 0).
    public func start() async throws -> Int {
        let security: HTTP2ServerTransport.Posix.TransportSecurity
        if let tls {
            for (what, path) in [("certificate", tls.certificate), ("key", tls.key)] where !FileManager.default.isReadableFile(atPath: path) {
                throw DeploymentError("TLS \(what) \(path): cannot read the file")
            }
            security = .tls(certificateChain: [.file(path: tls.certificate, format: .pem)], privateKey: .file(path: tls.key, format: .pem))
        } else {
            security = .plaintext
        }
        let transport = HTTP2ServerTransport.Posix(
            address: .ipv4(host: host, port: port), transportSecurity: security,
            config: .defaults { $0.rpc.maxRequestPayloadSize = WireLimits.maxMessageBytes })
        let server = GRPCServer(transport: transport,
                                services: [FederationService(coordinator: coordinator, enrolment: enrolment, logger: logger)])
        grpc = server
        serving = Task { try await server.serve() }
        guard let address = try await server.listeningAddress, let bound = address.ipv4?.port else {
            throw DeploymentError("the gRPC server did not bind \(host):\(port)")
        }
        if let m = metricsAddress {
            metricsEndpoint = try await MetricsEndpoint(host: m.host, port: m.port, metrics: coordinator.metrics,
                                                        group: MultiThreadedEventLoopGroup.singleton)
            logger.info("metrics endpoint", metadata: ["address": "http://\(m.host):\(metricsEndpoint!.port)/metrics"])
        }
        logger.info("serving", metadata: ["address": "\(host):\(bound)", "tls": "\(tls != nil)", "run": "\(coordinator.runID)",
                                          "strategy": "\(coordinator.engine.strategyName)",
                                          "rounds": "\(coordinator.engine.rounds)", "completed": "\(coordinator.engine.round)"])
        return bound
    }

    /// The port of the metrics endpoint, once started.
    public var metricsPort: Int? { metricsEndpoint?.port }

    /// Runs the remaining rounds of an image-classification run (`FederatedSimulation`); its result.
    public func run() async throws -> SimulationResult {
        guard let e = coordinator.engine as? FederatedSimulation else {
            throw DeploymentError("run() is for a FederatedSimulation engine; use runToEnd()")
        }
        try await runToEnd()
        return e.result
    }

    /// Runs the remaining rounds on a dedicated thread, lingers, then stops the server.
    public func runToEnd() async throws {
        let coordinator = self.coordinator
        let result: Result<Void, any Error> = await withCheckedContinuation { cont in
            let thread = Thread {
                do { cont.resume(returning: .success(try coordinator.runRounds())) } catch { cont.resume(returning: .failure(error)) }
            }
            thread.name = "frugal-fl-rounds"
            thread.stackSize = 8 << 20
            thread.start()
        }
        try? await Task.sleep(nanoseconds: UInt64(lingerSeconds * 1e9))
        await stop()
        return try result.get()
    }

    /// Runs after the last round, before the server stops (tests read the endpoints here).
    public var beforeStop: (@Sendable () async -> Void)?

    /// Stops serving (open calls end).
    public func stop() async {
        await beforeStop?()
        grpc?.beginGracefulShutdown()
        if let serving { _ = try? await serving.value }
        await metricsEndpoint?.close()
    }
}
