import Foundation
import Testing
@testable import FrugalMoE

func fixturePath(_ name: String) throws -> String {
    let url = try #require(Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil))
    return url.path
}

@Suite struct RoutingTraceTests {
    @Test func readsSharedFormatSample() throws {
        let t = try RoutingTrace.read(path: try fixturePath("qwen3-sample.route.csv"))
        #expect(t.layers == 4 && t.experts == 128 && t.topK == 6 && t.arch == "qwen3moe")
        #expect(t.expertBytes == [3059712, 3059712, 3059712, 3059712])
        #expect(t.denseBytes[0] == 11953152)
        #expect(t.rows.count == 288)
        #expect(t.rows[0] == RoutingTraceRow(turn: 0, phase: 0, step: 26, layer: 0, slot: 0, expert: 64, weight: 0.325885,
                                             residency: 0, expertBytes: 0))
        let toks = t.tokens()
        #expect(toks.count == 12)
        #expect(toks[0].phase == 0 && toks[0].step == 26)
        #expect(toks.allSatisfy { tok in (0..<4).allSatisfy { tok.experts[$0].count == 6 } })
        let dec = t.tokens(phase: 1)
        #expect(dec.count == 10 && dec[0].step == 28)
        // Slots are in order and weights descend within a token's layer.
        for tok in toks { for l in 0..<4 {
            #expect(tok.experts[l].map(\.slot) == Array(0..<6))
            #expect(zip(tok.experts[l], tok.experts[l].dropFirst()).allSatisfy { $0.weight >= $1.weight })
        } }
        // The last row of the file.
        #expect(dec[9].selected(3).last == 78)
    }

    @Test func writeReadRoundTrip() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("rt-\(getpid()).route.csv").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let w = try RoutingTraceWriter(path: path, model: "tiny moe", arch: "mixtral", layers: 2, experts: 4, topK: 2,
                                       expertBytes: [100, 200], denseBytes: [10, 20])
        try w.record(turn: 0, phase: 0, step: 0, layer: 0, experts: [3, 1], weights: [0.75, 0.25])
        try w.record(turn: 0, phase: 0, step: 0, layer: 1, experts: [0, 2], weights: [0.5, 0.5], residency: [1, 0],
                     bytesRead: [0, 200])
        try w.record(turn: 1, phase: 1, step: 5, layer: 0, experts: [2, 0], weights: [0.625, 0.375])
        try w.close()
        #expect(w.rowsWritten == 6)
        let t = try RoutingTrace.read(path: path)
        #expect(t.model == "tiny_moe" && t.arch == "mixtral" && t.layers == 2 && t.experts == 4 && t.topK == 2)
        #expect(t.expertBytes == [100, 200] && t.denseBytes == [10, 20])
        #expect(t.rows.count == 6)
        #expect(t.rows[3] == RoutingTraceRow(turn: 0, phase: 0, step: 0, layer: 1, slot: 1, expert: 2, weight: 0.5,
                                             residency: 0, expertBytes: 200))
        let toks = t.tokens()
        #expect(toks.count == 2 && toks[1].selected(0) == [2, 0] && toks[1].selected(1).isEmpty)
        // In-memory round trip gives the same text.
        let again = try RoutingTrace.parse(t.csvText())
        #expect(again.rows == t.rows && again.expertBytes == t.expertBytes)
    }

    @Test func malformedInputNamesTheLine() throws {
        let head = "# route_trace v1\n# model=m arch=a n_layer=2 n_expert=4 n_expert_used=2\n"
        let cols = "turn,phase,step,layer,slot,expert,weight,residency,expert_bytes\n"
        func message(_ text: String) -> String {
            do { _ = try RoutingTrace.parse(text, name: "x.csv"); return "" } catch { return "\(error)" }
        }
        #expect(message(head + cols + "0,0,0,0,0,1,0.5,0,0\n0,0,0,0,1,9,0.5,0,0\n").contains("x.csv:5: expert 9 out of range"))
        #expect(message(head + cols + "0,0,0,0,0,1,0.5,0\n").contains("x.csv:4: expected 9 fields, got 8"))
        #expect(message(head + cols + "0,0,0,0,0,1,abc,0,0\n").contains("x.csv:4: field weight 'abc'"))
        #expect(message(head + cols + "0,0,0,2,0,1,0.5,0,0\n").contains("x.csv:4: layer 2 out of range"))
        #expect(message(head + cols + "0,0,-1,0,0,1,0.5,0,0\n").contains("x.csv:4: field step '-1'"))
        #expect(message(head + "a,b,c\n").contains("x.csv:3: expected the column line"))
        #expect(message(head).contains("x.csv: no column line"))
        #expect(message("# model=m n_layer=x\n" + cols).contains("x.csv:1: header field n_layer=x"))
        #expect(message(head + cols + "0,0,0,0,0,1,0.5,0,0\n# late\n").contains("x.csv:5: header line after the data"))
        #expect(throws: MoETraceError.self) { try RoutingTrace.read(path: "/nonexistent/trace.csv") }
    }

    @Test func realTraceWhenPresent() throws {
        let path = (ProcessInfo.processInfo.environment["FRUGAL_DATA"] ?? NSHomeDirectory() + "/.cache/frugal-data")
            + "/moe-traces/qwen3-30b-a3b.route.csv"
        guard FileManager.default.fileExists(atPath: path) else { return }
        let t = try RoutingTrace.read(path: path)
        #expect(t.layers == 48 && t.experts == 128 && t.topK == 6 && t.rows.count == 44_766)
        #expect(t.tokens(phase: 1).count == 128)
    }
}

@Suite struct HitRateTests {
    /// One layer, hand-computed replays.
    func tokens(_ seq: [[Int]]) -> [TokenRouting] {
        seq.enumerated().map { i, s in
            var t = TokenRouting(turn: 0, phase: 1, step: i, layers: 1)
            t.experts[0] = s.enumerated().map { (slot: $0, expert: $1, weight: 1) }
            return t
        }
    }

    @Test func lruAndLfuByHand() {
        // Accesses: 0 1 0 2 0 1 (one expert a token), capacity 2.
        let toks = tokens([[0], [1], [0], [2], [0], [1]])
        let lru = HitRateCurves.profile(tokens: toks, layers: 1, experts: 3, policy: .lru)
        // LRU cap 1: no repeats back to back -> 0 hits. cap 2: 0 1 0(h) 2(evict 1) 0(h) 1(miss) -> 2/6. cap 3: 3/6.
        #expect(lru.hit[0] == [0, 0, 2.0 / 6, 3.0 / 6])
        let lfu = HitRateCurves.profile(tokens: toks, layers: 1, experts: 3, policy: .lfu)
        // LFU cap 2: 0 1 0(h) 2(evict 1: count 1 < 2) 0(h) 1(miss) -> 2/6; cap 1: 0, 1 evicts 0, 0 evicts 1... 0 hits.
        #expect(lfu.hit[0] == [0, 0, 2.0 / 6, 3.0 / 6])
        // Differ: 0 0 1 2 1 2 0, cap 2. LRU: 0 h(0) 1 2(evict 0) 1h 2h 0 -> 3/7. LFU (counts over all history):
        // 2 evicts 1 (1 < 2); 1 (now count 2) evicts 2 (count 1); 2 (count 2) evicts 0 (tie, less recent); 0 misses
        // -> only t1 hits: 1/7.
        let t2 = tokens([[0], [0], [1], [2], [1], [2], [0]])
        #expect(HitRateCurves.profile(tokens: t2, layers: 1, experts: 3, policy: .lru).hit[0][2] == 3.0 / 7)
        #expect(HitRateCurves.profile(tokens: t2, layers: 1, experts: 3, policy: .lfu).hit[0][2] == 1.0 / 7)
    }

    @Test func moepicPriorityDecaysWithAge() {
        // ρ = 0.25, ω = 1: an expert used 3 times 2 tokens ago has P = 3·0.0625 < 1·1 of one used just now.
        var c = PriorityReplayCache(policy: .moepic(rho: 0.25, window: 1), capacity: 2, experts: 4)
        _ = c.access([0]); _ = c.access([0]); _ = c.access([0]); _ = c.access([1]); _ = c.access([2])
        #expect(Set(c.cached) == [1, 2])
        // With a long window, frequency dominates: 0 stays.
        var d = PriorityReplayCache(policy: .moepic(rho: 0.25, window: 128), capacity: 2, experts: 4)
        _ = d.access([0]); _ = d.access([0]); _ = d.access([0]); _ = d.access([1]); _ = d.access([2])
        #expect(Set(d.cached) == [0, 2])
    }

    @Test func tokenExpertsAreNeverEvictedForEachOther() {
        // Capacity 1, a token using 2 experts: the second cannot evict the first within the same token.
        var c = PriorityReplayCache(policy: .lru, capacity: 1, experts: 3)
        #expect(c.access([0, 1]) == 0)
        #expect(c.cached == [0])
        #expect(c.access([0]) == 1)
    }

    @Test func curvesAreMonotoneOnSample() throws {
        let t = try RoutingTrace.read(path: try fixturePath("qwen3-sample.route.csv"))
        let toks = t.tokens()
        for p in [ReplayPolicy.lru, .lfu, .moepicDefault] {
            let c = HitRateCurves.profile(tokens: toks, layers: t.layers, experts: t.experts, policy: p, countFrom: 2)
            #expect(c.uses == [60, 60, 60, 60])
            for l in 0..<4 {
                #expect(c.h(l, 0) == 0)
                // All experts cached: only first uses miss (cold cache), so h(E) = 1 - distinct/uses after warmup.
                let distinctNew = Set(toks[2...].flatMap { $0.selected(l) }).subtracting(toks[..<2].flatMap { $0.selected(l) }).count
                #expect(abs(c.h(l, 128) - Double(60 - distinctNew) / 60) < 1e-12)
                // Full-history LRU/LFU: monotone in n (stack algorithms).
                if p != .moepicDefault { for n in 1...128 { #expect(c.h(l, n) >= c.h(l, n - 1) - 1e-12) } }
            }
        }
    }
}

@Suite struct EngineReplayTests {
    @Test func engineCacheObjectsGiveTheSameCurves() throws {
        let t = try RoutingTrace.read(path: try fixturePath("qwen3-sample.route.csv"))
        let toks = t.tokens()
        for (rule, ranking) in [(ReplayPolicy.lru, LRURanking() as CacheRanking), (.lfu, LFURanking())] {
            let fast = HitRateCurves.profile(tokens: toks, layers: 4, experts: 128, policy: rule, countFrom: 2)
            let eng = HitRateCurves.profileEngine(tokens: toks, layers: 4, experts: 128, ranking: ranking,
                                                  name: rule.description, countFrom: 2)
            #expect(fast.uses == eng.uses)
            for l in 0..<4 { for n in 0...128 { #expect(abs(fast.h(l, n) - eng.h(l, n)) < 1e-12, "\(rule) layer \(l) n \(n)") } }
        }
        // MoEpic priority: same formula; ties may break differently, so compare the mean curve loosely.
        let fast = HitRateCurves.profile(tokens: toks, layers: 4, experts: 128, policy: .moepicDefault, countFrom: 2)
        let eng = HitRateCurves.profileEngine(tokens: toks, layers: 4, experts: 128, ranking: MoEpicRanking(),
                                              name: "moepic", countFrom: 2)
        for n in stride(from: 8, through: 128, by: 8) { #expect(abs(fast.mean(n) - eng.mean(n)) < 0.05) }
    }
}
