import Foundation
import Testing
import FrugalNN
import FrugalData
import FrugalModels
@testable import FrugalFederated

/// Linear classifier over flattened 8x8 images.
final class TinyNet: Module, Layer {
    let fc: Linear
    init(seed: UInt64) {
        var rng = RNG(seed: seed)
        fc = Linear(64, 2, rng: &rng)
    }
    func forward(_ x: Tensor) -> Tensor { fc(x.flattened(from: 1)) }
}

/// Two classes of 8x8 images: class 0 bright on top, class 1 bright at the bottom, with noise.
func stripes(count: Int, seed: UInt64) throws -> ImageDataset {
    var rng = SplitMix64(seed: seed)
    var pixels = [UInt8](), labels = [Int32]()
    for i in 0 ..< count {
        let c = i % 2
        labels.append(Int32(c))
        for r in 0 ..< 8 {
            for _ in 0 ..< 8 {
                let bright = (r < 4) == (c == 0)
                let noise = Int(rng.nextBelow(60))
                pixels.append(UInt8(bright ? 180 + noise : noise))
            }
        }
    }
    return try ImageDataset(pixels: pixels, labels: labels, channels: 1, height: 8, width: 8, classes: 2)
}

func zeroedModel() throws -> TinyNet {
    let m = TinyNet(seed: 3)
    let layout = try ModelVector.layout(of: m)
    try ModelVector.load([Float](repeating: 0, count: layout.count), into: m)
    return m
}

func config(rounds: Int = 3, perRound: Int = 3) -> SimulationConfig {
    var c = SimulationConfig()
    c.rounds = rounds
    c.devicesPerRound = perRound
    c.batchSize = 5
    c.learningRate = 0.5
    c.seed = 42
    return c
}

func uniformDevices(_ n: Int) -> [DeviceProfile] {
    (0 ..< n).map {
        DeviceProfile(name: "d\($0)", computePerSample: 0.001 * Double($0 + 1), downlinkBytesPerSecond: 1000,
                      uplinkBytesPerSecond: 500, memoryBytes: 1 << 30, availability: 1)
    }
}

func makeSim(strategy: any FederatedStrategy, cfg: SimulationConfig = config(),
             devices: [DeviceProfile] = uniformDevices(6)) throws -> FederatedSimulation {
    let train = try stripes(count: 120, seed: 1)
    let test = try stripes(count: 40, seed: 2)
    let part = try FederatedPartition.iid(count: train.count, clients: devices.count, seed: 7)
    return try FederatedSimulation(model: try zeroedModel(), train: train, test: test, partition: part,
                                   devices: devices, strategy: strategy, config: cfg)
}

/// Wraps a strategy and records the lengths of every stream it produces.
final class Recording: FederatedStrategy {
    let inner: any FederatedStrategy
    var down = 0, up = 0
    init(_ inner: any FederatedStrategy) { self.inner = inner }
    var name: String { inner.name }
    func prepare(_ context: RoundContext, layout: TensorLayout) throws { try inner.prepare(context, layout: layout) }
    func encodeDownload(global: [Float], device: Int, staleness: Int?, round: Int, layout: TensorLayout) throws -> [UInt8] {
        let b = try inner.encodeDownload(global: global, device: device, staleness: staleness, round: round, layout: layout)
        down += b.count
        return b
    }
    func decodeDownload(_ bytes: [UInt8], device: Int, layout: TensorLayout) throws -> [Float] {
        try inner.decodeDownload(bytes, device: device, layout: layout)
    }
    func batchSizes(_ context: RoundContext, bytesDown: [Int], defaultBatch: Int, localSteps: Int?, layout: TensorLayout) throws -> [Int] {
        try inner.batchSizes(context, bytesDown: bytesDown, defaultBatch: defaultBatch, localSteps: localSteps, layout: layout)
    }
    func encodeUpload(_ update: [Float], device: Int, layout: TensorLayout) throws -> [UInt8] {
        let b = try inner.encodeUpload(update, device: device, layout: layout)
        up += b.count
        return b
    }
    func decodeUpload(_ bytes: [UInt8], device: Int, layout: TensorLayout) throws -> [Float] {
        try inner.decodeUpload(bytes, device: device, layout: layout)
    }
}

@Suite struct FederatedRuntimeTests {
    @Test func modelVectorRoundTrip() throws {
        let m = TinyNet(seed: 1)
        let layout = try ModelVector.layout(of: m)
        #expect(layout.count == 64 * 2 + 2)
        #expect(layout.segments.count == 2)
        let v = (0 ..< layout.count).map { Float($0) * 0.01 }
        try ModelVector.load(v, into: m, layout: layout)
        #expect(ModelVector.flatten(m) == v)
        #expect(throws: FederatedError.self) { try ModelVector.load([1, 2, 3], into: m) }
    }

    @Test func fedAvgImprovesAccuracy() throws {
        let sim = try makeSim(strategy: FedAvgStrategy())
        let before = try sim.evaluateGlobal().accuracy
        #expect(before == 0.5)  // zero weights: every image goes to class 0
        let result = try sim.run()
        #expect(result.rows.count == 3)
        #expect(result.rows.allSatisfy { $0.participants == 3 && $0.accepted == 3 })
        let after = try #require(result.finalAccuracy)
        #expect(after >= 0.9)
    }

    @Test func sameSeedSameRows() throws {
        for strategy in [{ FedAvgStrategy() as any FederatedStrategy },
                         { CompressedStrategy(codec: TopKCodec(ratio: 0.1)) }] {
            let a = try makeSim(strategy: strategy()).run()
            let b = try makeSim(strategy: strategy()).run()
            #expect(a == b)
            var other = config()
            other.seed = 43
            let c = try makeSim(strategy: strategy(), cfg: other).run()
            #expect(c.rows.map { $0.devices.map(\.device) } != a.rows.map { $0.devices.map(\.device) } || c != a)
        }
    }

    @Test func trafficIsTheSumOfStreamLengths() throws {
        for inner in [FedAvgStrategy() as any FederatedStrategy, CompressedStrategy(codec: QSGDCodec(levels: 4)),
                      CompressedStrategy(codec: STCCodec(ratio: 0.1)), CaesarStrategy(batchSizes: false)] {
            let rec = Recording(inner)
            let sim = try makeSim(strategy: rec, cfg: config(rounds: 4))
            let result = try sim.run()
            let last = try #require(result.rows.last)
            #expect(last.cumulativeBytesDown == rec.down)
            #expect(last.cumulativeBytesUp == rec.up)
            #expect(last.cumulativeTraffic == rec.down + rec.up)
            #expect(result.rows.reduce(0) { $0 + $1.devices.reduce(0) { $0 + $1.bytesDown + $1.bytesUp } } == rec.down + rec.up)
        }
        // Dense streams: a 16-byte header plus 4 bytes per parameter, both ways.
        let rows = try makeSim(strategy: FedAvgStrategy()).run().rows
        #expect(rows.allSatisfy { $0.devices.allSatisfy { $0.bytesDown == 16 + 4 * 130 && $0.bytesUp == 16 + 4 * 130 } })
    }

    @Test func clockArithmetic() throws {
        // All 6 devices every round; 20 samples each, one epoch: samples = 20.
        var cfg = config(rounds: 2, perRound: 6)
        cfg.evalEvery = 2
        let sim = try makeSim(strategy: FedAvgStrategy(), cfg: cfg)
        let r1 = try sim.runRound()
        #expect(r1.accuracy == nil)
        let bytes = 16.0 + 4 * 130
        // device i: 0.001·(i+1) s/sample · 20 + 536 / 1000 + 536 / 500
        let expected = (0 ..< 6).map { 0.001 * Double($0 + 1) * 20 + bytes / 1000 + bytes / 500 }
        for (i, d) in r1.devices.enumerated() {
            #expect(d.device == i)
            #expect(d.samples == 20)
            #expect(d.staleness == nil)
            #expect(abs(d.totalSeconds - expected[i]) < 1e-12)
            #expect(abs(d.idleSeconds - (expected[5] - expected[i])) < 1e-12)
        }
        #expect(abs(r1.roundSeconds - expected[5]) < 1e-12)
        #expect(abs(r1.idleSeconds - (0 ..< 6).map { expected[5] - expected[$0] }.reduce(0, +)) < 1e-9)
        let r2 = try sim.runRound()
        #expect(r2.accuracy != nil)
        #expect(r2.devices.allSatisfy { $0.staleness == 1 })
        #expect(abs(r2.simulatedSeconds - 2 * expected[5]) < 1e-12)
    }

    @Test func nanAndWrongSizedUpdatesAreRejected() throws {
        var cfg = config(rounds: 2)
        cfg.evalEvery = 1
        let sim = try makeSim(strategy: FedAvgStrategy(), cfg: cfg)
        nonisolated(unsafe) var hits = 0
        sim.faultInjection = { round, _, update in
            guard round == 1 else { return }
            hits += 1
            if hits == 1 { update[3] = .nan } else if hits == 2 { update.removeLast() }
        }
        let r1 = try sim.runRound()
        #expect(r1.participants == 3)
        #expect(r1.accepted == 1)
        #expect(r1.devices[0].rejection?.contains("non-finite") == true)
        #expect(r1.devices[1].rejection?.contains("129 entries") == true)
        #expect(r1.devices[0].bytesUp == 0)
        #expect(r1.devices[2].accepted)
        #expect(sim.log.count == 2)
        #expect(FloatScan.firstNonFinite(sim.global) == nil)
        #expect(r1.accuracy.map { $0.isFinite } == true)
    }

    @Test func impossiblePartitionsThrow() throws {
        let train = try stripes(count: 12, seed: 1)
        let test = try stripes(count: 4, seed: 2)
        let devices = uniformDevices(6)
        func sim(_ clients: [[Int]], _ cfg: SimulationConfig = config()) throws -> FederatedSimulation {
            try FederatedSimulation(model: TinyNet(seed: 1), train: train, test: test,
                                    partition: ClientPartition(method: "hand", seed: 0, clients: clients),
                                    devices: devices, strategy: FedAvgStrategy(), config: cfg)
        }
        let ok = (0 ..< 6).map { [2 * $0, 2 * $0 + 1] }
        _ = try sim(ok)
        #expect(throws: FederatedError.self) { try sim(Array(ok.prefix(5))) }                 // 5 clients, 6 devices
        #expect(throws: FederatedError.self) { try sim(ok.dropLast() + [[]]) }                  // empty client
        #expect(throws: FederatedError.self) { try sim(ok.dropLast() + [[10, 12]]) }            // index out of range
        #expect(throws: FederatedError.self) { try sim(ok.dropLast() + [[0, 11]]) }             // shared sample
        var big = config()
        big.devicesPerRound = 7
        #expect(throws: FederatedError.self) { try sim(ok, big) }
        // More clients than samples cannot be partitioned.
        #expect(throws: (any Error).self) {
            try FederatedPartition.dirichlet(labels: train.labels, classes: 2, clients: 13, alpha: 0.5, seed: 0)
        }
    }

    @Test func caesarRuns() throws {
        var cfg = config(rounds: 4)
        cfg.localSteps = 2
        let caesar = CaesarStrategy(downloadCompression: DownloadCompression(thetaMax: 0.5),
                                    planner: BatchSizePlanner(minBatch: 2, maxBatch: 10, batchStep: 2, localSteps: 1))
        let sim = try makeSim(strategy: caesar, cfg: cfg)
        let result = try sim.run()
        let dense = 16 + 4 * 130
        for row in result.rows {
            #expect(row.accepted == row.participants)
            for d in row.devices {
                // Never-synchronised devices get a dense-equivalent download; stale ones fewer bytes.
                if d.staleness != nil && d.staleness! < row.round { #expect(d.bytesDown < dense) }
                #expect(d.bytesUp < dense)
                #expect(d.samples == 2 * d.batchSize)
            }
            // Batches lie on the grid 2, 4, ..., 10, and the fastest device (matchFastest) gets 10.
            #expect(row.devices.allSatisfy { (2 ... 10).contains($0.batchSize) && $0.batchSize % 2 == 0 })
            #expect(row.devices.contains { $0.batchSize == 10 })
        }
        #expect(result.rows.last?.devices.map(\.batchSize) == caesar.lastPlan?.batchSizes)
        #expect((result.finalAccuracy ?? 0) >= 0.8)
        #expect(throws: FederatedError.self) { try makeSim(strategy: CaesarStrategy(), cfg: config()).runRound() }
    }

    @Test func deviceTraces() throws {
        let csv = "# FedScale\nclient_id,compute_ms_per_sample,bandwidth_kbps\n7,2.5,8000\n8,10,1000\n"
        let p = try DeviceTrace.parseCSV(csv, source: "t.csv")
        #expect(p.count == 2)
        #expect(p[0].name == "7" && p[0].computePerSample == 0.0025 && p[0].downlinkBytesPerSecond == 1_000_000)
        #expect(p[1].uplinkBytesPerSecond == 125_000)
        let json = #"{"2": {"computation": 4, "communication": 800}, "10": {"computation": 1, "communication": 80}}"#
        let q = try DeviceTrace.parseJSON(Data(json.utf8), source: "t.json")
        #expect(q.map(\.name) == ["2", "10"])
        #expect(q[1].downlinkBytesPerSecond == 10_000)
        let arr = #"[{"client_id": 5, "compute_ms_per_sample": 3, "bandwidth_kbps": 16}]"#
        #expect(try DeviceTrace.parseJSON(Data(arr.utf8)).first?.uplinkBytesPerSecond == 2000)
        do {
            _ = try DeviceTrace.parseCSV("client_id,compute_ms_per_sample,bandwidth_kbps\n1,x,5\n", source: "bad.csv")
            Issue.record("no error")
        } catch let e as FederatedError { #expect(e.message.contains("bad.csv:2") && e.message.contains("'x'")) }
        #expect(throws: FederatedError.self) { try DeviceTrace.parseCSV("id,speed\n1,2\n") }
        #expect(throws: FederatedError.self) { try DeviceTrace.parseCSV("client_id,computation,communication\n1,2,0\n") }
        #expect(throws: FederatedError.self) { try DeviceTrace.parseJSON(Data("[1]".utf8)) }
        #expect(throws: FederatedError.self) { try DeviceTrace.load(path: "/nonexistent/trace.csv") }
        let mix = DeviceCatalog.mix(count: 30, seed: 1)
        #expect(mix == DeviceCatalog.mix(count: 30, seed: 1))
        #expect(mix.contains { $0.name.hasPrefix("phone") } && mix.contains { !$0.name.hasPrefix("phone") })
        for d in mix { try d.validate("mix") }
    }
}

@Suite struct FederatedCheckpointTests {
    func strategies() -> [() -> any FederatedStrategy] {
        [{ FedAvgStrategy() },
         { CompressedStrategy(codec: TopKCodec(ratio: 0.2), seed: 3) },
         { CaesarStrategy(batchSizes: false, seed: 3) },
         { CompressedStrategy(codec: STCCodec(ratio: 0.2), downloadCodec: STCCodec(ratio: 0.2), seed: 3) }]
    }

    @Test func resumedRunEqualsUninterrupted() throws {
        for make in strategies() {
            let full = try makeSim(strategy: make(), cfg: config(rounds: 4, perRound: 3))
            let a = try full.run()
            let url = FileManager.default.temporaryDirectory.appendingPathComponent("fl-ckpt-\(UUID().uuidString).safetensors")
            defer { try? FileManager.default.removeItem(at: url) }
            let first = try makeSim(strategy: make(), cfg: config(rounds: 2, perRound: 3))
            _ = try first.run()
            try first.saveCheckpoint(to: url)
            let second = try makeSim(strategy: make(), cfg: config(rounds: 4, perRound: 3))
            try second.resume(from: url)
            #expect(second.round == 2)
            let b = try second.run()
            #expect(b.rows == a.rows, "strategy \(a.strategy)")
            #expect(second.global == full.global, "strategy \(a.strategy)")
        }
    }

    @Test func resumeRejectsOtherStrategyAndGarbage() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("fl-ckpt-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        let first = try makeSim(strategy: FedAvgStrategy(), cfg: config(rounds: 1))
        _ = try first.run()
        try first.saveCheckpoint(to: url)
        let other = try makeSim(strategy: CompressedStrategy(codec: TopKCodec(ratio: 0.2)), cfg: config(rounds: 2))
        #expect(throws: FederatedError.self) { try other.resume(from: url) }
        var cfg = config(rounds: 2); cfg.learningRate = 0.1
        let changed = try makeSim(strategy: FedAvgStrategy(), cfg: cfg)
        #expect(throws: FederatedError.self) { try changed.resume(from: url) }
        try Data("not a checkpoint".utf8).write(to: url)
        #expect(throws: (any Error).self) { try makeSim(strategy: FedAvgStrategy()).resume(from: url) }
    }

    @Test func twoDevicesAtOnceGiveTheSameRows() throws {
        var cfg = config(rounds: 3, perRound: 4)
        let seq = try makeSim(strategy: FedAvgStrategy(), cfg: cfg).run()
        cfg.parallelDevices = 2
        let train = try stripes(count: 120, seed: 1), test = try stripes(count: 40, seed: 2)
        let devices = uniformDevices(6)
        let part = try FederatedPartition.iid(count: train.count, clients: devices.count, seed: 7)
        let par = try FederatedSimulation(model: try zeroedModel(), train: train, test: test, partition: part, devices: devices,
                                          strategy: FedAvgStrategy(), config: cfg, replicas: [try zeroedModel()]).run()
        #expect(par.rows == seq.rows)
        #expect(par.wallTimes.count == 3)
        #expect(par.wallTimes.allSatisfy { $0.trainingSeconds <= $0.totalSeconds })
    }
}

@Suite struct CompressedBroadcastTests {
    @Test func devicesCatchUpBitForBitAndCheaperThanDense() throws {
        let layout = try TensorLayout.flat(50)
        let b = CompressedBroadcast(codec: STCCodec(ratio: 0.1), seed: 1)
        var global = (0 ..< 50).map { Float($0) * 0.01 }
        // Device 0 syncs now (dense), then misses two rounds; device 1 syncs every round.
        let d0 = try b.decode(try b.encode(global: global, device: 0, layout: layout), copy: nil, device: 0, layout: layout)
        #expect(d0 == global)
        var copy1 = try b.decode(try b.encode(global: global, device: 1, layout: layout), copy: nil, device: 1, layout: layout)
        for r in 0 ..< 3 {
            let u = (0 ..< 50).map { Float(($0 * 7 + r * 3) % 11) - 5 }
            global = try b.aggregate(global: global, updates: [u, u.map { -0.5 * $0 }], weights: [3, 1], layout: layout)
            let s1 = try b.encode(global: global, device: 1, layout: layout)
            #expect(s1[0] == 1 && s1.count < DenseCodec().estimatedSize(layout))
            copy1 = try b.decode(s1, copy: copy1, device: 1, layout: layout)
            #expect(copy1 == global)
        }
        let s0 = try b.encode(global: global, device: 0, layout: layout)
        let caughtUp = try b.decode(s0, copy: d0, device: 0, layout: layout)
        #expect(caughtUp == global)
        // A never-synchronised device gets the dense model.
        #expect(try b.encode(global: global, device: 9, layout: layout)[0] == 0)
        #expect(throws: FederatedError.self) { try b.decode([1, 1, 0, 0, 0], copy: nil, device: 9, layout: layout) }
        #expect(throws: (any Error).self) { try b.decode([7], copy: d0, device: 0, layout: layout) }
    }

    @Test func stcBothWaysCutsDownloadTraffic() throws {
        let one = try makeSim(strategy: CompressedStrategy(codec: STCCodec(ratio: 0.1)), cfg: config(rounds: 4, perRound: 5)).run()
        let both = try makeSim(strategy: CompressedStrategy(codec: STCCodec(ratio: 0.1), downloadCodec: STCCodec(ratio: 0.1)),
                               cfg: config(rounds: 4, perRound: 5)).run()
        #expect(both.rows.last!.cumulativeBytesDown < one.rows.last!.cumulativeBytesDown)
        #expect(both.rows.last!.cumulativeBytesUp == both.rows.reduce(0) { $0 + $1.bytesUp })
    }
}
