import ArgumentParser
import Foundation
import FrugalCore
import FrugalNN
import FrugalData
import FrugalModels
import FrugalFederated
import FrugalFederatedRPC
import FrugalPEFT

/// The options of a run as `fl run` takes them; the server sends them to its devices, so server,
/// devices and a simulation with the same options build the same model, partition and strategy.
struct RunArguments: ParsableArguments {
    @Option(help: ArgumentHelp(FL.StrategyOptions.help)) var strategy = "fedavg"
    @OptionGroup var setup: FL.Setup
    @OptionGroup var options: FL.StrategyOptions
    @Option(help: "Seed (data partition, device mix, selection, model initialisation).") var seed: UInt64 = 0

    static func from(_ args: [String], what: String) throws -> RunArguments {
        do { return try RunArguments.parse(args) } catch {
            throw CLIError("\(what): \(RunArguments.message(for: error))")
        }
    }

    /// The round engine of the run (the server's side).
    func engine() throws -> FederatedSimulation {
        let data = try setup.loadData()
        return try setup.simulation(try options.make(strategy, setup: setup, seed: seed), seed: seed, data: data)
    }
}

/// The options of a PEFT run as `peft run` takes them (`fl serve` with "task": "peft"): server,
/// devices and `peft run` with the same options build the same task, partition and strategy.
struct PEFTRunArguments: ParsableArguments {
    @Option(help: "droppeft[:ucb|thompson|egreedy], deadline[:F], fedlora, fixed:R, freeze:K, arm:FAMILY:R") var strategy = "droppeft"
    @OptionGroup var setup: PEFT.Setup
    @Option(help: "Seed (partition, devices, selection, initialisation).") var seed: UInt64 = 0

    /// The marker that starts a PEFT run's arguments as the server sends them to its devices.
    static let marker = "peft"

    static func from(_ args: [String], what: String) throws -> PEFTRunArguments {
        let a: PEFTRunArguments
        do { a = try PEFTRunArguments.parse(args) } catch {
            throw CLIError("\(what): \(PEFTRunArguments.message(for: error))")
        }
        _ = try PEFTStrategySpec(parsing: a.strategy)
        return a
    }

    /// The server's side: the same `TaskSimulation` as `peft run`, behind a `TaskEngine`.
    func engine() throws -> TaskEngine<DropPEFTStrategy> {
        let data = try setup.loadData(seed: seed)
        return TaskEngine(try setup.makeSimulation(strategy, seed: seed, task: try setup.makeTask(seed: seed, data: data)))
    }
}

/// `fl serve --config FILE`: what the JSON file holds (paths relative to the file's folder).
struct ServeConfig: Codable {
    var listen: String
    var run: [String]
    /// "fl" (the default: "run" holds `fl run` options) or "peft" ("run" holds `peft run` options).
    var task: String?
    var tls: ServerTLS?
    var plaintext: Bool?
    var enrolment: String
    var state: String
    var metrics: String?
    var roundDeadlineSeconds: Double?
    var closeAfter: Int?
    var json: String?

    static let keys: Set<String> = ["listen", "run", "task", "tls", "plaintext", "enrolment", "state", "metrics", "roundDeadlineSeconds", "closeAfter", "json"]

    static func load(_ path: String) throws -> ServeConfig {
        guard let data = FileManager.default.contents(atPath: path) else { throw CLIError("config \(path): cannot read it") }
        guard let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw CLIError("config \(path): not a JSON object")
        }
        let unknown = Set(obj.keys).subtracting(keys)
        guard unknown.isEmpty else { throw CLIError("config \(path): unknown keys \(unknown.sorted()); known: \(keys.sorted())") }
        var c: ServeConfig
        do { c = try JSONDecoder().decode(ServeConfig.self, from: data) } catch {
            throw CLIError("config \(path): \(error)")
        }
        let base = URL(fileURLWithPath: path).deletingLastPathComponent()
        func resolve(_ p: String) -> String { p.hasPrefix("/") ? p : base.appendingPathComponent(p).path }
        c.enrolment = resolve(c.enrolment)
        c.state = resolve(c.state)
        c.json = c.json.map(resolve)
        c.tls = c.tls.map { ServerTLS(certificate: resolve($0.certificate), key: resolve($0.key)) }
        if c.tls == nil && c.plaintext != true {
            throw CLIError("config \(path): give \"tls\": {\"certificate\": …, \"key\": …}, or \"plaintext\": true for a loopback test")
        }
        if c.tls != nil && c.plaintext == true { throw CLIError("config \(path): \"tls\" and \"plaintext\": true exclude each other") }
        if let t = c.task, t != "fl", t != "peft" { throw CLIError("config \(path): \"task\": '\(t)': use \"fl\" or \"peft\"") }
        return c
    }
}

/// What `fl serve --json` (or the config's "json") writes.
struct ServeReport: Codable {
    var result: SimulationResult
    /// Wall-clock seconds of each round this process ran (open → checkpoint).
    var roundSeconds: [Double]
    var peakResidentBytes: Int?
    var global: [Float]?
}

/// What `fl serve --json` writes for a PEFT run.
struct PEFTServeReport: Codable {
    var result: TaskSimulationResult
    var roundSeconds: [Double]
    var peakResidentBytes: Int?
    var global: [Float]?
}

extension FL {
    struct Serve: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Coordinate a federated run over gRPC (TLS, enrolled devices, checkpoints every round).",
            discussion: """
            The config is a JSON file:
              {"listen": "0.0.0.0:7070", "tls": {"certificate": "server.pem", "key": "server.key"},
               "enrolment": "devices.json", "state": "server-state", "metrics": "127.0.0.1:9464",
               "roundDeadlineSeconds": 60, "run": ["--strategy", "caesar", "--dataset", "fmnist", "--devices", "8", ...]}
            "run" holds `fl run` options: the same options give the same model as `frugal fl run`.
            With "task": "peft", "run" holds `peft run` options (--strategy droppeft|fedlora|…, --model, --task, …)
            and the run is the same as `frugal peft run` with them (DropPEFT's bandit stays on the server).
            Killed and started again with the same config, the server resumes after its last completed round.
            """)
        @Option(help: "The server's JSON config.") var config: String
        @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error") var logLevel = "info"
        @Option(help: "Also write the result rows, round latencies, peak memory and the final model here (JSON).") var json: String?

        func run() throws {
            try bootstrapDeploymentLogging(level: logLevel)
            let cfg = try ServeConfig.load(config)
            if cfg.task == "peft" { return try servePEFT(cfg) }
            let ra = try RunArguments.from(cfg.run, what: "config \(config): \"run\"")
            let engine = try ra.engine()
            let (coordinator, server, host) = try makeServer(cfg, engine: engine, runArguments: cfg.run)
            let banner = "\(engine.strategy.name) (\(cfg.tls == nil ? "plaintext" : "TLS")), run \(coordinator.runID), rounds \(engine.round)/\(engine.config.rounds) done"
            let result = try blockingAwait {
                let bound = try await server.start()
                print("serving on \(host):\(bound): \(banner)")
                flushStdout()
                return try await server.run()
            }
            for r in result.rows where r.round > 0 {
                print("round \(r.round): \(r.accepted)/\(r.participants) accepted, accuracy \(r.accuracy.map { fmt(100 * $0, 2) + "%" } ?? "-"), traffic \(fmt(Double(r.cumulativeTraffic) / 1e6, 3)) MB")
            }
            let report = ServeReport(result: result, roundSeconds: coordinator.roundLatencies, peakResidentBytes: peakResidentBytes(),
                                     global: engine.global)
            if let p = json ?? cfg.json { try writeJSON(report, to: p) }
            print("finished: \(result.rows.count) rounds, final accuracy \(result.finalAccuracy.map { fmt(100 * $0, 2) + "%" } ?? "-"), peak memory \(report.peakResidentBytes.map { fmt(Double($0) / 1e6, 1) + " MB" } ?? "-")")
        }

        /// The coordinator of `engine` under the config's deadline and state folder, and its gRPC
        /// server on the config's address (TLS, enrolment, metrics).
        func makeServer(_ cfg: ServeConfig, engine: any CoordinatedEngine, runArguments: [String]) throws
            -> (Coordinator, FederationServer, String) {
            var opts = CoordinatorOptions(stateDirectory: cfg.state, runArguments: runArguments)
            opts.roundDeadline = cfg.roundDeadlineSeconds ?? 60
            opts.closeAfter = cfg.closeAfter
            let coordinator = try Coordinator(engine: engine, options: opts)
            let (host, port) = try parseHostPort(cfg.listen, what: "listen")
            let metrics = try cfg.metrics.map { try parseHostPort($0, what: "metrics") }
            let server = FederationServer(coordinator: coordinator, enrolment: try EnrolmentStore(path: cfg.enrolment),
                                          host: host, port: port, tls: cfg.tls, metrics: metrics)
            return (coordinator, server, host)
        }

        /// A PEFT run (`"task": "peft"`): the `peft run` simulation with the coordinator as its transport.
        func servePEFT(_ cfg: ServeConfig) throws {
            let pa = try PEFTRunArguments.from(cfg.run, what: "config \(config): \"run\"")
            if pa.setup.personalEval > 0 {
                throw CLIError("config \(config): --personal-eval needs the devices' personal layers, which stay on the devices in a deployment")
            }
            let engine = try pa.engine()
            let (coordinator, server, host) = try makeServer(cfg, engine: engine, runArguments: [PEFTRunArguments.marker] + cfg.run)
            let banner = "\(engine.strategyName) (\(cfg.tls == nil ? "plaintext" : "TLS")), run \(coordinator.runID), rounds \(engine.round)/\(engine.rounds) done"
            try blockingAwait {
                let bound = try await server.start()
                print("serving on \(host):\(bound): \(banner)")
                flushStdout()
                try await server.runToEnd()
            }
            let result = engine.simulation.result
            for r in result.rows { print(PEFT.progressLine(r)) }
            let report = PEFTServeReport(result: result, roundSeconds: coordinator.roundLatencies, peakResidentBytes: peakResidentBytes(),
                                         global: engine.global)
            if let p = json ?? cfg.json { try writeJSON(report, to: p) }
            print("finished: \(result.rows.count) rounds, final accuracy \(result.finalAccuracy.map { fmt(100 * $0, 2) + "%" } ?? "-")")
        }
    }

    /// `fl join --server HOST:PORT`: a device of a Frugal federation server (`fl serve`).
    struct FrugalJoinOptions: ParsableArguments {
        static let discussion = """
            --server: Example: frugal fl join --server fl.example.org:7070 --ca ca.pem --device-id 3 --token-file device-3.token --data ~/fl-data --state dev3.state
            --device-id 0-99 with --tokens DIR (files device-N.token) runs many devices in one process (load tests).
            """
        @Option(help: "A Frugal federation server (`fl serve`), HOST:PORT.") var server: String?
        @Option(name: .customLong("device-id"), help: "This device's id, or a range A-B of ids (--server).") var deviceID: String?
        @Option(help: "The enrolment token.") var token: String?
        @Option(name: .customLong("token-file"), help: "A file holding the enrolment token.") var tokenFile: String?
        @Option(help: "A folder of token files device-N.token (for several devices).") var tokens: String?
        @Option(help: "PEM certificate (of the CA, or the server's own) to trust.") var ca: String?
        @Flag(help: "Connect without TLS (loopback tests only).") var plaintext = false
        @Option(help: "Keep the device's state in this file (for several devices: a folder).") var state: String?
        @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error") var logLevel = "info"
        @Option(name: .customLong("give-up"), help: "Seconds without the server before giving up.") var giveUp = 120.0

        func validate() throws {
            guard server != nil else { return }   // the Flower mode of `fl join`
            guard deviceID != nil else { throw ValidationError("--server needs --device-id") }
            guard (ca != nil) != plaintext else { throw ValidationError("give --ca FILE (TLS) or --plaintext") }
            guard [token, tokenFile, tokens].compactMap({ $0 }).count == 1 else { throw ValidationError("give one of --token, --token-file, --tokens") }
        }

        func run(data: String?) throws {
            guard let server, let deviceID else { throw CLIError("fl join: give --server HOST:PORT and --device-id") }
            try bootstrapDeploymentLogging(level: logLevel)
            let (host, port) = try parseHostPort(server, what: "--server")
            let ids: [Int]
            let parts = deviceID.split(separator: "-").map { Int($0) }
            if parts.count == 2, let a = parts[0], let b = parts[1], a <= b, a >= 0 { ids = Array(a ... b) }
            else if parts.count == 1, let a = parts[0], a >= 0 { ids = [a] }
            else { throw CLIError("--device-id '\(deviceID)': use N or A-B") }
            if ids.count > 1 && tokens == nil { throw CLIError("several devices need --tokens DIR") }
            let cache = SharedData()
            let clients = try ids.map { d -> DeviceClient in
                let tok: String
                if let token { tok = token } else {
                    let path = tokenFile ?? "\(tokens!)/device-\(d).token"
                    guard let s = try? String(contentsOfFile: path, encoding: .utf8) else { throw CLIError("token file \(path): cannot read it") }
                    tok = s.trimmingCharacters(in: .whitespacesAndNewlines)
                }
                var o = DeviceOptions(host: host, port: port, device: d, token: tok, trustedCertificate: ca)
                if let state { o.statePath = ids.count == 1 ? state : "\(state)/device-\(d).state" }
                o.giveUpSeconds = giveUp
                let dataDir = data
                let client = DeviceClient(options: o) { info in try cache.workload(info: info, device: d, data: dataDir) }
                // Fault tests (scripts/fl_deploy_test.sh): die right after taking this round's task.
                if let r = ProcessInfo.processInfo.environment["FRUGAL_FL_TEST_DIE_IN_ROUND"].flatMap(Int.init) { client.vanishInRound = r }
                return client
            }
            if let state, ids.count > 1 { try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true) }
            let summaries: [DeviceSummary]
            do { summaries = try blockingAwait {
                let box = Summaries(clients.count)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for (i, c) in clients.enumerated() { group.addTask { box.set(i, try await c.run()) } }
                    try await group.waitForAll()
                }
                return box.all
            } } catch let e as DeviceClient.VanishedError {
                print("device stopped on purpose in round \(e.round) (FRUGAL_FL_TEST_DIE_IN_ROUND)")
                flushStdout()
                Foundation.exit(3)
            }
            for (d, s) in zip(ids, summaries) {
                print("device \(d): rounds \(s.rounds), \(s.accepted) accepted, \(s.rejected.count) not accepted, \(fmt(Double(s.bytesDown) / 1e6, 3)) MB down, \(fmt(Double(s.bytesUp) / 1e6, 3)) MB up")
                for r in s.rejected { print("  not accepted: \(r)") }
            }
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the progress of a running federated server.")
        @Option(help: "The server, HOST:PORT.") var server: String
        @Option(help: "PEM certificate to trust (TLS).") var ca: String?
        @Flag(help: "Connect without TLS.") var plaintext = false
        @Option(help: "Write the status as JSON to this file.") var json: String?

        func validate() throws {
            guard (ca != nil) != plaintext else { throw ValidationError("give --ca FILE (TLS) or --plaintext") }
        }

        func run() throws {
            let (host, port) = try parseHostPort(server, what: "--server")
            let ca = self.ca
            let s = try blockingAwait { try await FederationStatus.query(host: host, port: port, trustedCertificate: ca) }
            print("run \(s.runID) (\(s.strategy)): \(s.completedRounds)/\(s.rounds) rounds, \(s.phase)\(s.openRound > 0 ? ", round \(s.openRound): \(s.received)/\(s.selected) answered" : "")")
            print("devices seen \(s.devicesSeen), traffic \(fmt(Double(s.bytesDown) / 1e6, 3)) MB down, \(fmt(Double(s.bytesUp) / 1e6, 3)) MB up, \(s.rejected) rejected, accuracy \(s.accuracy.map { fmt(100 * $0, 2) + "%" } ?? "-")")
            if let json { try writeJSON(s, to: json) }
        }
    }

    struct Enrol: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Enrol devices (new tokens) or revoke them in a server's enrolment file.",
            discussion: "The file keeps only SHA-256 digests; each new token is written once to DIR/device-N.token (mode 0600). A running server picks up changes within a second.")
        @Option(help: "The enrolment file (created if missing).") var file: String
        @Option(help: "Device ids: N, A-B, or a comma list.") var devices: String
        @Option(name: .customLong("tokens-out"), help: "Folder for the new token files.") var tokensOut: String?
        @Flag(help: "Revoke the devices instead.") var revoke = false

        func run() throws {
            var ids: [Int] = []
            for part in devices.split(separator: ",") {
                let ab = part.split(separator: "-").map { Int($0) }
                if ab.count == 2, let a = ab[0], let b = ab[1], a >= 0, a <= b { ids += Array(a ... b) }
                else if ab.count == 1, let a = ab[0], a >= 0 { ids.append(a) }
                else { throw CLIError("--devices: '\(part)' is not N or A-B") }
            }
            var e = FileManager.default.fileExists(atPath: file) ? try Enrolment.load(path: file) : Enrolment()
            if revoke {
                for d in ids { try e.revoke(device: d) }
                try e.save(path: file)
                print("revoked \(ids.count) device(s) in \(file)")
                return
            }
            guard let out = tokensOut else { throw CLIError("enrolling needs --tokens-out DIR for the new tokens") }
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            for d in ids {
                let token = e.enrol(device: d)
                let path = "\(out)/device-\(d).token"
                guard FileManager.default.createFile(atPath: path, contents: Data((token + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
                    throw CLIError("cannot write the token of device \(d) to \(path)")
                }
            }
            try e.save(path: file)
            print("enrolled \(ids.count) device(s) in \(file); tokens in \(out)/device-N.token")
        }
    }
}

/// Per-device summaries of one `fl join` process. `@unchecked Sendable`: guarded by the lock.
final class Summaries: @unchecked Sendable {
    let lock = NSLock()
    var slots: [DeviceSummary]
    init(_ n: Int) { slots = Array(repeating: DeviceSummary(), count: n) }
    func set(_ i: Int, _ s: DeviceSummary) { lock.lock(); slots[i] = s; lock.unlock() }
    var all: [DeviceSummary] { lock.lock(); defer { lock.unlock() }; return slots }
}

/// Data sets loaded once for all devices of one `fl join` process (read-only, shared).
final class SharedData: @unchecked Sendable {
    // @unchecked Sendable: `loaded` is guarded by `lock`.
    let lock = NSLock()
    var loaded: [String: (ImageDataset, ImageDataset, Normalization)] = [:]
    var loadedText: [String: (TokenizedDataset, TokenizedDataset, URL?)] = [:]

    /// The device's workload for the server's run: a PEFT task device when the run's arguments
    /// start with "peft", else the `fl run` model.
    func workload(info: JoinInfo, device d: Int, data: String?) throws -> DeviceWorkload {
        guard info.runArguments.first == PEFTRunArguments.marker else { return .model(try runtime(info: info, device: d, data: data)) }
        var args = Array(info.runArguments.dropFirst())
        while let i = args.firstIndex(of: "--data") { args.removeSubrange(i ... min(i + 1, args.count - 1)) }
        if let data { args += ["--data", data] }
        let pa = try PEFTRunArguments.from(args, what: "the server's PEFT run options")
        let key = args.joined(separator: " ")
        lock.lock()
        let sets: (TokenizedDataset, TokenizedDataset, URL?)
        do { sets = try loadedText[key] ?? pa.setup.loadData(seed: pa.seed) } catch { lock.unlock(); throw error }
        loadedText[key] = sets
        lock.unlock()
        // Each device its own task (its own model copy): devices of one process train concurrently.
        let task = try pa.setup.makeTask(seed: pa.seed, data: sets)
        let sim = try pa.setup.makeSimulation(pa.strategy, seed: pa.seed, task: task)
        return .task(try TaskDevice(task: task, strategy: sim.strategy, device: d))
    }

    func runtime(info: JoinInfo, device d: Int, data: String?) throws -> DeviceRuntime {
        var args = info.runArguments
        while let i = args.firstIndex(of: "--data") { args.removeSubrange(i ... min(i + 1, args.count - 1)) }
        if let data { args += ["--data", data] }
        let ra = try RunArguments.from(args, what: "the server's run options")
        let key = args.joined(separator: " ")
        lock.lock()
        defer { lock.unlock() }
        let sets = try loaded[key] ?? ra.setup.loadData()
        loaded[key] = sets
        let (train, _, norm) = sets
        let part = try ra.setup.makePartition(train, seed: ra.seed)
        guard d >= 0, d < part.clients.count else { throw CLIError("device \(d) is not in this run's \(part.clients.count) devices") }
        let model = try ra.setup.makeModel(train, seed: ra.seed)
        return DeviceRuntime(strategy: try ra.options.make(ra.strategy, setup: ra.setup, seed: ra.seed), model: model,
                             layout: try ModelVector.layout(of: model),
                             training: LocalTraining(data: try train.subset(part.clients[d]), normalization: norm,
                                                     config: ra.setup.config(seed: ra.seed)))
    }
}
