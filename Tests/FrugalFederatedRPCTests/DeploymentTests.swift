import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing
import Logging
import GRPCCore
import FrugalNN
import FrugalData
import FrugalModels
import FrugalFederated
@testable import FrugalFederatedRPC

// Loopback deployments in one process: a real gRPC server on 127.0.0.1 (TLS where said) and
// several device clients on real sockets, each with its own strategy object and model, compared
// with the simulator on the same seeds.

/// Linear classifier over flattened 8x8 images.
final class TinyNet: Module, Layer {
    let fc: Linear
    init(seed: UInt64) {
        var rng = RNG(seed: seed)
        fc = Linear(64, 2, rng: &rng)
    }
    func forward(_ x: Tensor) -> Tensor { fc(x.flattened(from: 1)) }
}

/// Two classes of 8x8 images (bright top or bright bottom) with noise.
func stripes(count: Int, seed: UInt64) throws -> ImageDataset {
    var rng = SplitMix64(seed: seed)
    var pixels = [UInt8](), labels = [Int32]()
    for i in 0 ..< count {
        let c = i % 2
        labels.append(Int32(c))
        for r in 0 ..< 8 {
            for _ in 0 ..< 8 {
                let noise = Int(rng.nextBelow(60))
                pixels.append(UInt8((r < 4) == (c == 0) ? 180 + noise : noise))
            }
        }
    }
    return try ImageDataset(pixels: pixels, labels: labels, channels: 1, height: 8, width: 8, classes: 2)
}

func quietLogger(_ label: String) -> Logger {
    var l = Logger(label: label)
    l.logLevel = .critical
    return l
}

func fixture(_ name: String) throws -> String {
    try #require(Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "Fixtures")).path
}

/// One run's setup: data, partition, devices and configuration, shared by the simulator, the
/// server and the devices.
struct Setup: Sendable {
    var devices = 6
    var config: SimulationConfig
    let train: ImageDataset
    let test: ImageDataset
    let partition: ClientPartition
    let makeStrategy: @Sendable () -> any FederatedStrategy

    init(rounds: Int, perRound: Int, localSteps: Int? = nil, strategy: @escaping @Sendable () -> any FederatedStrategy) throws {
        var c = SimulationConfig()
        c.rounds = rounds
        c.devicesPerRound = perRound
        c.batchSize = 5
        c.learningRate = 0.5
        c.seed = 42
        c.localSteps = localSteps
        config = c
        train = try stripes(count: 120, seed: 1)
        test = try stripes(count: 40, seed: 2)
        partition = try FederatedPartition.iid(count: train.count, clients: devices, seed: 7)
        makeStrategy = strategy
    }

    func profiles() -> [DeviceProfile] {
        (0 ..< devices).map {
            DeviceProfile(name: "d\($0)", computePerSample: 0.001 * Double($0 + 1), downlinkBytesPerSecond: 1000,
                          uplinkBytesPerSecond: 500, memoryBytes: 1 << 30, availability: 1)
        }
    }

    func model() throws -> TinyNet {
        let m = TinyNet(seed: 3)
        try ModelVector.load([Float](repeating: 0, count: try ModelVector.layout(of: m).count), into: m)
        return m
    }

    func engine() throws -> FederatedSimulation {
        try FederatedSimulation(model: try model(), train: train, test: test, partition: partition, devices: profiles(),
                                strategy: makeStrategy(), config: config)
    }

    func runtime(device d: Int) throws -> DeviceRuntime {
        let m = try model()
        return DeviceRuntime(strategy: makeStrategy(), model: m, layout: try ModelVector.layout(of: m),
                             training: LocalTraining(data: try train.subset(partition.clients[d]), normalization: nil, config: config))
    }
}

/// Enrolment of devices 0..<n with tokens "token-<d>" (and the list itself).
func enrolment(_ n: Int, revoked: Set<Int> = []) -> Enrolment {
    Enrolment(devices: (0 ..< n).map { .init(device: $0, tokenSHA256: Enrolment.hash("token-\($0)"), revoked: revoked.contains($0)) })
}

func tempDir() throws -> URL {
    let u = FileManager.default.temporaryDirectory.appendingPathComponent("fl-rpc-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
    return u
}

/// A running loopback deployment.
final class Deployment: @unchecked Sendable {
    let setup: Setup
    let server: FederationServer
    let port: Int
    let state: URL
    let tls: Bool
    var metricsText: String?

    init(_ setup: Setup, state: URL, deadline: Double = 30, tls: Bool = false, port: Int = 0,
         crash: (round: Int, count: Int)? = nil, enrolled: Enrolment? = nil) async throws {
        self.setup = setup
        self.state = state
        self.tls = tls
        var opts = CoordinatorOptions(stateDirectory: state.path, runArguments: ["test-run"])
        opts.roundDeadline = deadline
        let c = try Coordinator(engine: try setup.engine(), options: opts, logger: quietLogger("server"))
        c.crashWhenJournalled = crash
        let t = tls ? ServerTLS(certificate: try fixture("test-server.pem"), key: try fixture("test-server.key")) : nil
        server = FederationServer(coordinator: c, enrolment: EnrolmentStore(enrolled ?? enrolment(setup.devices)), host: "127.0.0.1",
                                  port: port, tls: t, metrics: ("127.0.0.1", 0), logger: quietLogger("server"))
        server.lingerSeconds = 1
        self.port = try await server.start()
        let mport = server.metricsPort!
        // Fetch /metrics over HTTP once the run is over (the endpoint closes when the server stops).
        server.beforeStop = { [weak self] in
            let url = URL(string: "http://127.0.0.1:\(mport)/metrics")!
            if let (data, _) = try? await URLSession.shared.data(from: url) { self?.metricsText = String(decoding: data, as: UTF8.self) }
        }
    }

    func client(_ d: Int, token: String? = nil, host: String = "127.0.0.1", trust: String? = nil) throws -> DeviceClient {
        let ca: String? = tls ? try (trust ?? fixture("test-server.pem")) : nil
        var o = DeviceOptions(host: host, port: port, device: d, token: token ?? "token-\(d)", trustedCertificate: ca)
        o.waitSeconds = 5
        o.giveUpSeconds = 30
        o.statePath = state.appendingPathComponent("device-\(d).state").path
        let s = setup
        return DeviceClient(options: o, logger: quietLogger("device")) { _ in try s.runtime(device: d) }
    }
}

/// Runs the server and the given clients to the end; returns the result and each device's summary (or error).
func runAll(_ dep: Deployment, _ clients: [DeviceClient]) async throws -> (SimulationResult, [Result<DeviceSummary, any Error>]) {
    async let result = dep.server.run()
    let box = Outcomes(clients.count)
    await withTaskGroup(of: Void.self) { g in
        for (i, c) in clients.enumerated() {
            g.addTask {
                do { box.set(i, .success(try await c.run())) } catch { box.set(i, .failure(error)) }
            }
        }
    }
    return (try await result, box.all)
}

/// Per-client outcomes. `@unchecked Sendable`: guarded by the lock.
final class Outcomes: @unchecked Sendable {
    let lock = NSLock()
    var slots: [Result<DeviceSummary, any Error>?]
    init(_ n: Int) { slots = Array(repeating: nil, count: n) }
    func set(_ i: Int, _ r: Result<DeviceSummary, any Error>) { lock.lock(); slots[i] = r; lock.unlock() }
    var all: [Result<DeviceSummary, any Error>] { lock.lock(); defer { lock.unlock() }; return slots.map { $0! } }
}

@Suite(.serialized) struct DeploymentTests {
    static func caesar() -> any FederatedStrategy {
        CaesarStrategy(downloadCompression: DownloadCompression(thetaMax: 0.5),
                       planner: BatchSizePlanner(minBatch: 2, maxBatch: 10, batchStep: 2, localSteps: 1), seed: 5)
    }

    @Test func fedAvgOverGRPCEqualsTheSimulator() async throws {
        let setup = try Setup(rounds: 3, perRound: 4) { FedAvgStrategy() }
        let sim = try setup.engine()
        let expected = try sim.run()
        let dep = try await Deployment(setup, state: try tempDir())
        let (result, devices) = try await runAll(dep, try (0 ..< 6).map { try dep.client($0) })
        #expect(result.rows == expected.rows)
        #expect(dep.server.coordinator.engine.global == sim.global)
        for d in devices { _ = try d.get() }
        // Traffic the server reports is the bytes the devices received and sent.
        let summaries = try devices.map { try $0.get() }
        #expect(summaries.reduce(0) { $0 + $1.bytesDown } == result.rows.last!.cumulativeBytesDown)
        #expect(summaries.reduce(0) { $0 + $1.bytesUp } == result.rows.last!.cumulativeBytesUp)
        let metrics = dep.server.coordinator.metrics.text()
        #expect(metrics.contains("frugal_fl_rounds_completed_total 3"))
        // The same text over HTTP from the metrics endpoint (still up: it closes with the server).
        #expect(dep.metricsText?.contains("frugal_fl_rounds_completed_total") == true)
        #expect(metrics.contains("frugal_fl_upload_bytes_total \(result.rows.last!.cumulativeBytesUp)"))
    }

    @Test func caesarOverTLSEqualsTheSimulator() async throws {
        let setup = try Setup(rounds: 4, perRound: 3, localSteps: 2) { DeploymentTests.caesar() }
        let sim = try setup.engine()
        let expected = try sim.run()
        let dep = try await Deployment(setup, state: try tempDir(), tls: true)
        let (result, devices) = try await runAll(dep, try (0 ..< 6).map { try dep.client($0, host: "localhost") })
        for d in devices { _ = try d.get() }
        #expect(result.rows == expected.rows)
        #expect(dep.server.coordinator.engine.global == sim.global)
        // Compressed downloads to stale devices really were used.
        #expect(result.rows.contains { $0.devices.contains { $0.staleness != nil && $0.bytesDown < 16 + 4 * 130 } })
    }

    @Test func aDeviceTrustingAnotherCertificateCannotConnect() async throws {
        let setup = try Setup(rounds: 1, perRound: 1) { FedAvgStrategy() }
        let dep = try await Deployment(setup, state: try tempDir(), tls: true)
        let c = try dep.client(0, host: "localhost", trust: try fixture("other-ca.pem"))
        let t = Task { try await c.run() }
        try await Task.sleep(nanoseconds: 1_500_000_000)
        #expect(dep.server.coordinator.snapshot().seen == 0)
        t.cancel()
        await dep.server.stop()
    }
}
