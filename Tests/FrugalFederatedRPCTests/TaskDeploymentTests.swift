import Foundation
import Testing
import FrugalCore
import FrugalNN
import FrugalData
import FrugalModels
import FrugalFederated
import FrugalPEFT
@testable import FrugalFederatedRPC

// DropPEFT and federated LoRA over gRPC (loopback, in-process device clients on real sockets): the
// server runs the `TaskSimulation` with the coordinator as its transport, each device its own
// `TaskDevice` with its own copy of the task; the final global vector must equal the simulator's.

/// A small generated transformer task (the DropPEFT quickstart's, smaller): a random 4-layer BERT
/// (hidden 16) with LoRA rank 2 on generated token sequences, 6 Jetson-profile devices.
struct PEFTSetup {
    let spec: String
    let personalLayers: Int
    var rounds = 3
    var perRound = 4
    let devices = 6
    let train: TokenizedDataset
    let test: TokenizedDataset

    init(_ spec: String, personalLayers: Int = 0, rounds: Int = 3) throws {
        self.spec = spec
        self.personalLayers = personalLayers
        self.rounds = rounds
        train = try TokenizedDataset.synthetic(count: 24 * devices, classes: 2, length: 8, vocab: 24, seed: 1)
        test = try TokenizedDataset.synthetic(count: 40, classes: 2, length: 8, vocab: 24, seed: 2)
    }

    func task() throws -> TextClassificationTask {
        var rng = RNG(seed: 7)
        let bert = BertModel(config: BertConfig(vocabSize: 24, hiddenSize: 16, numHiddenLayers: 4, numAttentionHeads: 2,
                                                intermediateSize: 32, maxPositionEmbeddings: 8), rng: &rng)
        bert.freeze()
        LoRA.inject(into: bert, LoRAConfig(rank: 2, alpha: 4), rng: &rng)
        let clients = (0 ..< devices).map { k in train.subset(Array(stride(from: k, to: train.count, by: devices))) }
        return try TextClassificationTask(model: BertClassifier(bert: bert, classes: 2, rng: &rng), clients: clients, test: test,
                                          learningRate: 5e-3)
    }

    func strategy() throws -> DropPEFTStrategy {
        try DropPEFTStrategy(try PEFTStrategySpec(parsing: spec), layers: 4, personalLayers: personalLayers,
                             arms: [DropoutArm(.uniform, 0), DropoutArm(.uniform, 0.25), DropoutArm(.uniform, 0.5)], reward: .round, seed: 1)
    }

    func simulation() throws -> TaskSimulation<DropPEFTStrategy> {
        let boards = [DeviceCatalog.jetsonTX2, DeviceCatalog.xavierNX, DeviceCatalog.agxXavier, DeviceCatalog.orin]
        var cfg = SimulationConfig()
        cfg.rounds = rounds; cfg.devicesPerRound = perRound; cfg.batchSize = 8; cfg.localSteps = 3; cfg.seed = 1
        return try TaskSimulation(task: try task(), strategy: try strategy(), devices: (0 ..< devices).map { boards[$0 % 4] }, config: cfg)
    }
}

/// A loopback PEFT deployment: server + `clients(...)`.
final class TaskDeployment: @unchecked Sendable {
    let setup: PEFTSetup
    let engine: TaskEngine<DropPEFTStrategy>
    let server: FederationServer
    let port: Int
    let state: URL

    init(_ setup: PEFTSetup, state: URL, deadline: Double = 30, port: Int = 0, crash: (round: Int, count: Int)? = nil) async throws {
        self.setup = setup
        self.state = state
        engine = TaskEngine(try setup.simulation())
        var opts = CoordinatorOptions(stateDirectory: state.path, runArguments: ["peft-test", setup.spec])
        opts.roundDeadline = deadline
        let c = try Coordinator(engine: engine, options: opts, logger: quietLogger("server"))
        c.crashWhenJournalled = crash
        server = FederationServer(coordinator: c, enrolment: EnrolmentStore(enrolment(setup.devices)), host: "127.0.0.1", port: port,
                                  tls: nil, logger: quietLogger("server"))
        server.lingerSeconds = 1
        self.port = try await server.start()
    }

    func client(_ d: Int) -> DeviceClient {
        var o = DeviceOptions(host: "127.0.0.1", port: port, device: d, token: "token-\(d)")
        o.waitSeconds = 5
        o.giveUpSeconds = 30
        let s = setup
        return DeviceClient(options: o, logger: quietLogger("device")) { _ in
            .task(try TaskDevice(task: try s.task(), strategy: try s.strategy(), device: d))
        }
    }
}

/// Rows without the measured memory (the peaks of local training, the task's estimate measured at
/// construction): `MemoryStats` is process-wide, so in-process devices training at the same time,
/// and other test suites running in parallel, see each other's tensors. Separate processes do
/// not: scripts/fl_deploy_test.sh compares whole rows.
func withoutMemory(_ rows: [TaskRoundRecord]) -> [TaskRoundRecord] {
    rows.map { r in
        var r = r
        r.peakMemoryBytes = 0
        for i in r.devices.indices { r.devices[i].peakMemoryBytes = 0; r.devices[i].memoryBytes = 0 }
        return r
    }
}

func runClients(_ clients: [DeviceClient]) -> Task<[Result<DeviceSummary, any Error>], Never> {
    Task {
        let box = Outcomes(clients.count)
        await withTaskGroup(of: Void.self) { g in
            for (i, c) in clients.enumerated() {
                g.addTask { do { box.set(i, .success(try await c.run())) } catch { box.set(i, .failure(error)) } }
            }
        }
        return box.all
    }
}

@Suite(.serialized) struct TaskDeploymentTests {
    /// The simulator's run and the same run over gRPC; returns both engines' results.
    func compare(_ setup: PEFTSetup) async throws {
        let sim = try setup.simulation()
        let expected = try sim.run()
        let dep = try await TaskDeployment(setup, state: try tempDir())
        let devices = runClients((0 ..< setup.devices).map { dep.client($0) })
        try await dep.server.runToEnd()
        let summaries = try await devices.value.map { try $0.get() }
        let result = dep.engine.simulation.result
        #expect(withoutMemory(result.rows) == withoutMemory(expected.rows))
        #expect(dep.engine.global == sim.global)
        #expect(result.rows.count == setup.rounds)
        #expect(sim.global != (try setup.task()).initialParameters())   // it did learn something
        if setup.spec == "droppeft" {   // DropPEFT really dropped layers on some device
            #expect(result.rows.contains { $0.devices.contains { ($0.configuration ?? "full") != "full" } })
        }
        #expect(dep.engine.simulation.strategy.saveState().integers == sim.strategy.saveState().integers)   // the bandits
        // The model bytes on the wire are the shared segments the engine counts, each way.
        let shared = TaskWire.sharedCount(dep.engine.layout, dep.engine.shared)
        let trained = result.rows.reduce(0) { $0 + $1.trained }
        #expect(result.rows.last!.cumulativeTraffic == 2 * 4 * shared * trained)
        #expect(summaries.reduce(0) { $0 + $1.bytesUp } == trained * TaskWire.resultBytes(dep.engine.layout, dep.engine.shared))
    }

    @Test func dropPEFTOverGRPCEqualsTheSimulator() async throws {
        let setup = try PEFTSetup("droppeft")
        try await compare(setup)
    }

    @Test func fedLoRAOverGRPCEqualsTheSimulator() async throws {
        try await compare(try PEFTSetup("fedlora"))
    }

    @Test func personalLayersStayOnTheDevicesAndGiveTheSimulatorsModel() async throws {
        let setup = try PEFTSetup("droppeft", personalLayers: 1)
        #expect(try setup.simulation().strategy.sharedSegments(layout: try setup.task().layout).contains(false))
        try await compare(setup)
    }

    @Test func aDeviceThatNeverAnswersDoesNotBlockTheRound() async throws {
        let setup = try PEFTSetup("droppeft", rounds: 2)
        let dep = try await TaskDeployment(setup, state: try tempDir(), deadline: 2)
        let devices = runClients((0 ..< 5).map { dep.client($0) })   // device 5 never joins
        let start = Date()
        try await dep.server.runToEnd()
        for d in await devices.value { _ = try d.get() }
        let rows = dep.engine.simulation.result.rows
        #expect(rows.count == 2)
        let selected5 = rows.filter { $0.devices.contains { $0.device == 5 } }
        #expect(!selected5.isEmpty)
        for r in selected5 {
            #expect(r.devices.first { $0.device == 5 }!.configuration == nil)
            #expect(r.trained == r.participants - 1)
        }
        #expect(Date().timeIntervalSince(start) < 30)
        // Its bandit choice was cancelled, not left pending.
        for b in dep.engine.simulation.strategy.bandits.values { #expect(b.pending.allSatisfy { $0 == 0 }) }
        #expect(FloatScan.firstNonFinite(dep.engine.global) == nil)
    }

    @Test func theServerKilledMidRoundResumesWithTheBanditState() async throws {
        let setup = try PEFTSetup("droppeft", rounds: 3)
        let sim = try setup.simulation()
        let expected = try sim.run()
        let state = try tempDir()
        let first = try await TaskDeployment(setup, state: state, crash: (2, 2))
        let devices = runClients((0 ..< setup.devices).map { first.client($0) })
        await #expect(throws: DeploymentError.self) { try await first.server.runToEnd() }
        let second = try await TaskDeployment(setup, state: state, port: first.port)
        #expect(second.engine.round == 1)
        let oneRound = try setup.simulation()
        try oneRound.runRound()
        #expect(second.engine.simulation.strategy.saveState().integers == oneRound.strategy.saveState().integers)   // bandits restored
        try await second.server.runToEnd()
        for d in await devices.value { _ = try d.get() }
        #expect(withoutMemory(second.engine.simulation.result.rows) == withoutMemory(expected.rows))
        #expect(second.engine.global == sim.global)
    }

    @Test func aResultClaimingMoreSamplesThanItsAssignmentAllowsIsRejected() throws {
        let engine = TaskEngine(try PEFTSetup("fedlora").simulation())
        engine.openRound = 1
        engine.sampleLimit = [2: 24]
        let layout = engine.layout
        func result(_ samples: Int) -> [UInt8] {
            TaskWire.encode(LocalTrainingResult(update: [Float](repeating: 0, count: layout.count), samples: samples, loss: 1, work: 1,
                                                peakMemoryBytes: 0, trainedSegments: [Bool](repeating: true, count: layout.segments.count),
                                                progress: 0),
                            round: 1, device: 2, layout: layout, shared: engine.shared)
        }
        #expect(engine.checkUpload(result(24), device: 2).update != nil)
        let (u, why) = engine.checkUpload(result(25), device: 2)
        #expect(u == nil && why?.contains("at most 24") == true)
        #expect(engine.checkUpload(result(24), device: 3).update == nil)   // not selected: no allowance
    }

    @Test func malformedResultsAreRejectedWithAReason() throws {
        let layout = try TensorLayout([("a", 3), ("b", 2)])
        let shared = [true, false]
        let r = LocalTrainingResult(update: [1, 2, 3, 0, 0], samples: 4, loss: 0.5, work: 4, peakMemoryBytes: 10,
                                    trainedSegments: [true, true], progress: 0.1)
        let bytes = TaskWire.encode(r, round: 2, device: 1, layout: layout, shared: shared)
        #expect(bytes.count == TaskWire.resultBytes(layout, shared))
        let back = try TaskWire.decodeResult(bytes, round: 2, device: 1, layout: layout, shared: shared)
        #expect(back.update == r.update && back.trainedSegments == r.trainedSegments && back.samples == 4)
        #expect(throws: DeploymentError.self) { try TaskWire.decodeResult(Array(bytes.dropLast()), round: 2, device: 1, layout: layout, shared: shared) }
        #expect(throws: DeploymentError.self) { try TaskWire.decodeResult(bytes, round: 3, device: 1, layout: layout, shared: shared) }
        var nan = bytes
        nan.replaceSubrange(nan.count - 4 ..< nan.count, with: [0, 0, 0xC0, 0x7F])
        #expect(throws: DeploymentError.self) { try TaskWire.decodeResult(nan, round: 2, device: 1, layout: layout, shared: shared) }
        var flag = bytes
        flag[4 + 8 + 8 + 24 + 8 + 4] = 7
        #expect(throws: DeploymentError.self) { try TaskWire.decodeResult(flag, round: 2, device: 1, layout: layout, shared: shared) }
        let a = TaskAssignment(round: 2, device: 1, configuration: [1, 2], start: [1, 2, 3, 9, 9], batchSize: 4, steps: 2, seed: 5)
        let down = try TaskWire.encode(a, layout: layout, shared: shared)
        let got = try TaskWire.decodeAssignment(down, as: [Int].self, layout: layout, shared: shared, device: 1)
        #expect(got.start == [1, 2, 3, 0, 0] && got.configuration == [1, 2] && got.seed == 5)
        #expect(throws: DeploymentError.self) { try TaskWire.decodeAssignment(down, as: [Int].self, layout: layout, shared: shared, device: 2) }
    }
}
