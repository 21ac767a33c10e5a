import Foundation
import Testing
import GRPCCore
import FrugalNN
import FrugalData
import FrugalFederated
@testable import FrugalFederatedRPC

@Suite(.serialized) struct FaultTests {
    @Test func aDeviceKilledMidRoundDoesNotBlockTheRun() async throws {
        let setup = try Setup(rounds: 3, perRound: 6) { FedAvgStrategy() }
        let dep = try await Deployment(setup, state: try tempDir(), deadline: 2)
        let clients = try (0 ..< 6).map { try dep.client($0) }
        clients[4].vanishInRound = 2   // takes round 2's task, then is gone for good
        let (result, devices) = try await runAll(dep, clients)
        #expect(result.rows.count == 3)
        #expect(result.rows[0].accepted == 6)
        for r in result.rows.dropFirst() {
            #expect(r.accepted == 5)
            let d4 = try #require(r.devices.first { $0.device == 4 })
            #expect(!d4.accepted && d4.rejection == "no update before the round closed")
        }
        if case .failure(let e) = devices[4] { #expect(e is DeviceClient.VanishedError) } else { Issue.record("device 4 did not vanish") }
        // The aggregate is that of the five others: the simulator with device 4 refusing from round 2 on.
        let sim = try setup.engine()
        sim.faultInjection = { round, device, update in if round >= 2 && device == 4 { update[0] = .nan } }
        _ = try sim.run()
        #expect(dep.server.coordinator.engine.global == sim.global)
    }

    @Test func theServerKilledMidRoundResumesWithoutLosingOrRepeatingARound() async throws {
        let setup = try Setup(rounds: 4, perRound: 3, localSteps: 2) { DeploymentTests.caesar() }
        let sim = try setup.engine()
        let expected = try sim.run()
        let state = try tempDir()
        // First server: dies in round 3 once two of its three updates are journalled and acknowledged.
        let first = try await Deployment(setup, state: state, crash: (3, 2))
        let clients = try (0 ..< 6).map { try first.client($0) }
        let devices = Task {
            await withTaskGroup(of: Result<DeviceSummary, any Error>.self) { g in
                for c in clients { g.addTask { do { return .success(try await c.run()) } catch { return .failure(error) } } }
                var out: [Result<DeviceSummary, any Error>] = []
                for await o in g { out.append(o) }
                return out
            }
        }
        await #expect(throws: DeploymentError.self) { _ = try await first.server.run() }
        #expect(first.server.coordinator.engine.round == 3)   // round 3 started, never completed
        let journalled = try FileManager.default.contentsOfDirectory(atPath: state.appendingPathComponent("journal").path)
        #expect(journalled.count == 2)
        // Second server on the same port and state folder: resumes after round 2, replays the journal.
        let second = try await Deployment(setup, state: state, port: first.port)
        #expect(second.server.coordinator.engine.round == 2)
        let result = try await second.server.run()
        for d in await devices.value { _ = try d.get() }
        #expect(result.rows == expected.rows)
        #expect(second.server.coordinator.engine.global == sim.global)
        #expect(result.rows.map(\.round) == [1, 2, 3, 4])
    }

    @Test func malformedOversizedWronglyShapedAndNaNUpdatesAreRejected() async throws {
        let setup = try Setup(rounds: 2, perRound: 6) { FedAvgStrategy() }
        let dep = try await Deployment(setup, state: try tempDir())
        let clients = try (0 ..< 6).map { try dep.client($0) }
        let layout = try ModelVector.layout(of: try setup.model())
        // Round 1: device 1 truncates its stream, 2 sends a stream for another shape, 3 puts a NaN
        // inside a well-formed stream, 4 announces a stream larger than any model update.
        clients[1].tamperStream = { r, b in if r == 1 { b.removeLast(7) } }
        clients[2].tamperStream = { r, b in if r == 1 { b = try! DenseCodec().encode([Float](repeating: 0.5, count: 129), layout: try! TensorLayout.flat(129)) } }
        clients[3].tamperStream = { r, b in if r == 1 { let nan = Float.nan.bitPattern; for k in 0 ..< 4 { b[16 + 4 * 5 + k] = UInt8((nan >> (8 * UInt32(k))) & 0xFF) } } }
        clients[4].tamperStream = { r, b in if r == 1 { b += [UInt8](repeating: 1, count: WireLimits.maxUploadBytes(parameters: layout.count, segments: 2)) } }
        // Device 5 sends a poisoned but finite update: accepted by validation (robust aggregation is the defence).
        let (result, devices) = try await runAll(dep, clients)
        for d in devices { _ = try d.get() }
        let r1 = result.rows[0]
        #expect(r1.accepted == 2)
        let why = Dictionary(uniqueKeysWithValues: r1.devices.map { ($0.device, $0.rejection ?? "") })
        #expect(why[1]!.contains("upload failed"))
        #expect(why[2]!.contains("upload failed") && why[2]!.contains("129"))
        #expect(why[3]!.contains("non-finite"))
        #expect(why[4]!.contains("exceeds the limit"))
        #expect(dep.server.coordinator.snapshot().rejected == 4)
        #expect(dep.server.coordinator.metrics.text().contains("frugal_fl_updates_rejected_total 4"))
        // The global model is what the two honest updates make: the simulator with 1-4 refusing in round 1.
        let sim = try setup.engine()
        sim.faultInjection = { round, device, update in if round == 1 && (1 ... 4).contains(device) { update[0] = .nan } }
        _ = try sim.run()
        #expect(dep.server.coordinator.engine.global == sim.global)
        #expect(FloatScan.firstNonFinite(dep.server.coordinator.engine.global) == nil)
    }

    @Test func unenrolledRevokedAndImpersonatingDevicesAreRefused() async throws {
        let setup = try Setup(rounds: 1, perRound: 2) { FedAvgStrategy() }
        let dep = try await Deployment(setup, state: try tempDir(), enrolled: enrolment(6, revoked: [5]))
        let honest = try (0 ..< 5).map { try dep.client($0) }
        let unknown = try dep.client(3, token: "not-a-token")
        let impostor = try dep.client(2, token: "token-1")   // device 1's credentials, claiming device 2
        let revoked = try dep.client(5)
        let (result, outcomes) = try await runAll(dep, honest + [unknown, impostor, revoked])
        #expect(result.rows.count == 1 && result.rows[0].accepted == 2)
        for o in outcomes.prefix(5) { _ = try o.get() }
        func code(_ r: Result<DeviceSummary, any Error>) -> RPCError.Code? {
            if case .failure(let e as RPCError) = r { return e.code }
            return nil
        }
        #expect(code(outcomes[5]) == .unauthenticated)
        #expect(code(outcomes[6]) == .permissionDenied)
        #expect(code(outcomes[7]) == .unauthenticated)
        if case .failure(let e as RPCError) = outcomes[7] { #expect(e.message.contains("revoked")) }
        #expect(dep.server.coordinator.metrics.text().contains("frugal_fl_calls_refused_total 3"))
    }

    @Test func robustAggregationIgnoresAPoisonedDevice() async throws {
        // Five honest devices and one that scales its update by 1000: the median step stays within
        // the honest devices' range; the weighted mean does not.
        let setup = try Setup(rounds: 1, perRound: 6) { try! RobustAggregation(FedAvgStrategy(), rule: .median) }
        let dep = try await Deployment(setup, state: try tempDir())
        let clients = try (0 ..< 6).map { try dep.client($0) }
        clients[5].tamperUpdate = { _, u in for i in u.indices { u[i] *= 1000 } }
        let (result, devices) = try await runAll(dep, clients)
        for d in devices { _ = try d.get() }
        #expect(result.rows[0].accepted == 6)
        let sim = try setup.engine()
        sim.faultInjection = { _, d, u in if d == 5 { for i in u.indices { u[i] *= 1000 } } }
        _ = try sim.run()
        #expect(dep.server.coordinator.engine.global == sim.global)
        let plain = try Setup(rounds: 1, perRound: 6) { FedAvgStrategy() }.engine()
        plain.faultInjection = sim.faultInjection
        _ = try plain.run()
        let robustNorm = dep.server.coordinator.engine.global.map { abs($0) }.max()!
        let meanNorm = plain.global.map { abs($0) }.max()!
        #expect(robustNorm * 50 < meanNorm)
    }
}

@Suite struct SecurityUnitTests {
    @Test func tokensAndDigests() throws {
        #expect(Enrolment.hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        var e = Enrolment()
        let t = e.enrol(device: 7)
        #expect(t.count == 64)
        #expect(try e.authenticate(t).get() == 7)
        #expect(throws: DeploymentError.self) { try e.authenticate("x").get() }
        try e.revoke(device: 7)
        #expect(throws: DeploymentError.self) { try e.authenticate(t).get() }
        #expect(throws: DeploymentError.self) { try e.revoke(device: 8) }
        let dir = try tempDir()
        let p = dir.appendingPathComponent("devices.json").path
        try e.save(path: p)
        #expect(try Enrolment.load(path: p) == e)
        try Data(#"{"devices": [{"device": 1, "tokenSHA256": "zz", "revoked": false}]}"#.utf8).write(to: URL(fileURLWithPath: p))
        #expect(throws: DeploymentError.self) { try Enrolment.load(path: p) }
        #expect(StreamDigest.of([1, 2, 3]) != StreamDigest.of([1, 2, 4]))
        #expect(StreamDigest.of(copy: nil) == 0)
        #expect(try parseHostPort("fl.example.org:7070", what: "x") == ("fl.example.org", 7070))
        #expect(throws: DeploymentError.self) { try parseHostPort("7070", what: "x") }
    }

    @Test func robustRules() {
        let g: [Float] = [0, 0]
        let u: [[Float]] = [[1, -1], [2, 0], [3, 100], [4, 1]]
        #expect(RobustRule.median.step(global: g, updates: u) == [2.5, 0.5])
        #expect(RobustRule.trimmedMean(0.25).step(global: g, updates: u) == [2.5, 0.5])
        #expect(RobustRule.trimmedMean(0).step(global: g, updates: u) == [2.5, 25])
        #expect(RobustRule.median.step(global: g, updates: []) == g)
        #expect(throws: FederatedError.self) { try RobustAggregation(FedAvgStrategy(), rule: .trimmedMean(0.5)) }
    }
}
