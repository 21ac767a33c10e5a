import Testing
import FrugalModels
@testable import FrugalMoE

@Suite struct PolicyTests {
    /// 1 layer, 6 experts, top-1, one expert = 3 rows x 3·4 floats = 144 bytes.
    static let shape = MoEShape(layers: 1, experts: 6, topK: 1, hidden: 4, intermediate: 3)
    static func layout(theta: Double = 1) -> SegmentLayout { SegmentLayout(shape: shape, elementBytes: 4, theta: [theta]) }

    func run(_ p: SegmentCachePolicy, _ seq: [Int]) -> [[PolicyAction]] {
        seq.map { e in p.access(layer: 0, experts: [e]) + p.release(layer: 0) }
    }

    @Test func lruEvictsLeastRecentlyUsed() {
        let lay = Self.layout()
        let p = SegmentCachePolicy.lru(layout: lay, layerBudget: [3 * lay.expertBytes], stagingBytes: 0)
        let acts = run(p, [0, 1, 2, 0, 3, 1, 4])
        // 3 evicts 1 (LRU after 0 was reused), 1 evicts 2, 4 evicts 0.
        #expect(acts[4] == [.drop(SegmentID(layer: 0, expert: 1, part: .top)),
                            .load(SegmentID(layer: 0, expert: 3, part: .top), demand: true, cached: true)])
        #expect(acts[4].first == .drop(SegmentID(layer: 0, expert: 1, part: .top)))
        #expect(acts[5].first == .drop(SegmentID(layer: 0, expert: 2, part: .top)))
        #expect(acts[6].first == .drop(SegmentID(layer: 0, expert: 0, part: .top)))
        #expect(p.cachedExperts(layer: 0) == [3, 1, 4])
        #expect(acts[3].isEmpty)  // hit
        #expect(p.stats[0].hits == 1 && p.stats[0].accesses == 7)
        #expect(p.cachedBytes(layer: 0) <= 3 * lay.expertBytes)
    }
}
