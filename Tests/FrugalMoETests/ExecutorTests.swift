import Testing
import Foundation
import FrugalCore
import FrugalModels
@testable import FrugalMoE

/// Temporary file path under the system temp dir (ext4 here; page dropping needs a real disk).
func tempPath(_ name: String) -> String {
    NSTemporaryDirectory() + "frugal-moe-\(getpid())-\(UInt32.random(in: 0...UInt32.max))-\(name)"
}

/// Drives `exec` like a decoder would: a prefill of 3 tokens, then decode steps, each layer fed
/// x_{l+1} = x_l + 0.5·y_l; checks every layer's output against the Double reference.
func checkAgainstReference(_ exec: ExpertExecutor, source: SyntheticSource, steps: Int, seed: UInt64,
                           afterLayer: () throws -> Void = {}) throws -> Double {
    let s = source.moeShape, h = s.hidden
    var rng = TestRNG(seed)
    var worst = 0.0
    for step in 0...steps {
        let T = step == 0 ? 3 : 1
        var x = Tensor(rng.array(T * h), shape: [T, h])
        for l in 0..<s.layers {
            let routes = source.route(logits: source.routerLogits(layer: l, x))
            let y = try exec.runExperts(layer: l, x: x, routes: routes)
            try afterLayer()
            let xa = x.array, ya = y.array
            for t in 0..<T {
                var ref = [Double](repeating: 0, count: h)
                for r in routes[t] {
                    let w = source.weights[l][r.expert]
                    let o = referenceExpert(gate: w.gate, up: w.up, down: w.down, x: Array(xa[t * h..<(t + 1) * h]))
                    for j in 0..<h { ref[j] += Double(r.weight) * o[j] }
                }
                let scale = max(ref.map(abs).max()!, 1e-3)
                for j in 0..<h { worst = max(worst, abs(Double(ya[t * h + j]) - ref[j]) / scale) }
            }
            x = Tensor(zip(xa, ya).map { $0 + 0.5 * $1 }, shape: [T, h])
        }
    }
    return worst
}

@Suite(.serialized) struct ExecutorTests {
    static let shape = MoEShape(layers: 3, experts: 6, topK: 2, hidden: 16, intermediate: 10)

    @Test(arguments: [DType.float32, .float16])
    func everyPolicyAndThetaMatchesReferenceOnLink(dtype: DType) throws {
        let src = SyntheticSource(shape: Self.shape, dtype: dtype, seed: 3)
        let tier = try HostLinkTier(source: src, bandwidth: 2e9)
        let total = 3 * 6 * 10 * ExpertSplit.rowBytes(hidden: 16, dtype: dtype)
        for kind in PolicyKind.allCases {
            for theta in (kind == .moepic ? [0, 0.25, 0.4, 1] : [1.0]) {
                let budget = kind == .full ? total : total / 2
                let p = try PolicyFactory.make(kind, shape: Self.shape, elementBytes: dtype.size, budget: budget, theta: theta)
                // Loads in chunks of three rows (several chunks a segment, pieces across page runs).
                let exec = try OffloadingExecutor(policy: p, tier: tier, budget: budget, source: src,
                                                  chunkBytes: 3 * ExpertSplit.rowBytes(hidden: 16, dtype: dtype))
                let err = try checkAgainstReference(exec, source: src, steps: 6, seed: 11)
                #expect(err <= 1e-5, "\(kind) θ=\(theta): relative error \(err)")
                let st = exec.stats
                #expect(st.peakFastBytes <= budget, "\(kind) θ=\(theta): peak \(st.peakFastBytes) > budget \(budget)")
                #expect(st.accesses.reduce(0, +) > 0)
                if kind == .full { #expect(st.hitRate == 1 && st.bytesLoaded == 0) }
                if kind == .onDemand { #expect(st.hitRate == 0) }
                if p.usesPrediction { #expect(st.predictionAccuracy != nil) }
            }
        }
    }

    @Test func diskTierMatchesAndDropsPages() throws {
        let src = SyntheticSource(shape: MoEShape(layers: 2, experts: 4, topK: 2, hidden: 64, intermediate: 40), dtype: .bfloat16, seed: 5)
        let path = tempPath("store.fmoe")
        defer { unlink(path) }
        try OffloadStore.write(source: src, to: path)
        let store = try OffloadStore(path: path)
        try store.verify()
        let budget = store.totalExpertBytes * 6 / 10
        for kind in [PolicyKind.lru, .moepic] {
            let p = try PolicyFactory.make(kind, shape: src.moeShape, elementBytes: 2, budget: budget, theta: 0.4)
            let exec = try OffloadingExecutor(policy: p, tier: DiskTier(store: store), budget: budget, source: src)
            var worstResident = 0
            let err = try checkAgainstReference(exec, source: src, steps: 5, seed: 2) {
                worstResident = max(worstResident, try ResidencyProbe.residentBytes(path: path).resident)
            }
            #expect(err <= 1e-5, "\(kind): \(err)")
            // Throughout the run, the store's resident pages stay below 5% of the expert bytes,
            // plus what the two I/O threads may be reading at the moment of the probe (this
            // store is tiny: in a real one 5% is many experts).
            let inFlight = 2 * (store.header.expertStride + 4096)
            #expect(Double(worstResident) < 0.05 * Double(store.totalExpertBytes) + Double(inFlight), "resident \(worstResident)")
            #expect(exec.stats.peakFastBytes <= budget)
            #expect(exec.stats.bytesLoaded > 0)
            let (resident, _) = try ResidencyProbe.residentBytes(path: path)
            #expect(Double(resident) < 0.05 * Double(store.totalExpertBytes) + 4096, "resident \(resident) of \(store.totalExpertBytes)")
        }
    }

    @Test func budgetBelowWorkingSetIsAnError() throws {
        let S = 10 * ExpertSplit.rowBytes(hidden: 16, dtype: .float32)
        #expect(throws: OffloadError.self) { try PolicyFactory.make(.lru, shape: Self.shape, elementBytes: 4, budget: 2 * S - 1) }
        #expect(throws: OffloadError.self) { try PolicyFactory.make(.full, shape: Self.shape, elementBytes: 4, budget: 17 * S) }
        do {
            _ = try PolicyFactory.make(.moepic, shape: Self.shape, elementBytes: 4, budget: S)
            Issue.record("no error")
        } catch let e as OffloadError {
            #expect(e.description.contains("working set"))
        }
    }

    @Test func budgetParsing() throws {
        #expect(try MemoryBudget.parse("512MiB", totalExpertBytes: 0) == 512 << 20)
        #expect(try MemoryBudget.parse("2GB", totalExpertBytes: 0) == 2_000_000_000)
        #expect(try MemoryBudget.parse("40%", totalExpertBytes: 1000) == 400)
        #expect(try MemoryBudget.parse("4096", totalExpertBytes: 0) == 4096)
        #expect(try HostLinkTier.parseBandwidth("25GB/s") == 25e9)
        #expect(throws: OffloadError.self) { try MemoryBudget.parse("lots", totalExpertBytes: 0) }
        #expect(throws: OffloadError.self) { try HostLinkTier.parseBandwidth("fast") }
    }

    @Test func corruptOrTruncatedStoreNamesFileAndOffset() throws {
        let src = SyntheticSource(shape: MoEShape(layers: 1, experts: 2, topK: 1, hidden: 8, intermediate: 4), dtype: .float32)
        let path = tempPath("bad.fmoe")
        defer { unlink(path) }
        let header = try OffloadStore.write(source: src, to: path)
        // Truncated.
        truncate(path, off_t(header.fileBytes - 10))
        do { _ = try OffloadStore(path: path); Issue.record("truncated store opened") } catch let e as OffloadError {
            #expect(e.description.contains(path) && e.description.contains("truncated") && e.description.contains("\(header.fileBytes - 10)"))
        }
        // Corrupt expert bytes.
        try OffloadStore.write(source: src, to: path)
        let fd = open(path, O_RDWR)
        var junk: UInt8 = 0x5a
        pwrite(fd, &junk, 1, off_t(header.dataOffset + header.expertStride + 3))
        close(fd)
        let store = try OffloadStore(path: path)
        do { try store.verify(); Issue.record("corrupt expert passed") } catch let e as OffloadError {
            #expect(e == .badStore(file: path, offset: header.dataOffset + header.expertStride, reason: "checksum mismatch in expert 1 of layer 0"))
        }
        // Corrupt header.
        let fd2 = open(path, O_RDWR)
        pwrite(fd2, &junk, 1, 30)
        close(fd2)
        #expect(throws: OffloadError.self) { _ = try OffloadStore(path: path) }
    }
}

@Suite struct PredictorTests {
    @Test func accuracyCountsPredictedExpertsThatWereRouted() throws {
        let src = SyntheticSource(shape: MoEShape(layers: 2, experts: 4, topK: 2, hidden: 8, intermediate: 4), dtype: .float32)
        let pred = ExpertPredictor(source: src)
        var rng = TestRNG(4)
        let x = Tensor(rng.array(8), shape: [1, 8])
        let p = pred.predict(layer: 1, from: x)
        #expect(p == src.route(logits: src.routerLogits(layer: 1, x))[0].map(\.expert))
        pred.record(layer: 1, actual: [p[0], (p[0] + 1) % 4 == p[1] ? (p[0] + 2) % 4 : (p[0] + 1) % 4])
        #expect(pred.accuracy == 0.5 && pred.accuracyPerLayer[0] == nil)
        // Same input at the next layer: the predictor is exact.
        _ = pred.predict(layer: 1, from: x)
        pred.record(layer: 1, actual: p)
        #expect(pred.accuracy == 0.75)
    }
}

@Suite struct LoadChunkTests {
    @Test func segmentsAreCutIntoChunksAcrossPageRuns() {
        // Rows 2..<12 in two page runs (3 and 7 pages), chunks of 4 rows.
        let e = LoadEngine.Entry(seg: SegmentID(layer: 0, expert: 0, part: .top), rows: 2..<12, runs: [0..<3, 7..<14],
                                 demand: true, chunkRows: 4)
        #expect(e.pieces.map { [$0.row, $0.count, $0.page] } == [[2, 3, 0], [5, 1, 7], [6, 4, 8], [10, 2, 12]])
        #expect(e.chunks == [0..<2, 2..<3, 3..<4])
        // Every row read once, into its page.
        #expect(e.pieces.reduce(0) { $0 + $1.count } == 10)
    }
}
