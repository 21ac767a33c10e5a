import Testing
import Foundation
import FrugalCore
import FrugalModels
@testable import FrugalMoE

/// Offloaded runs of the real MoE decoder (random checkpoints) against its resident run.
@Suite(.serialized) struct ModelIntegrationTests {
    static func model(_ layout: MoELayout, dtype: DType, shared: Int? = nil) throws -> (MoEModel, URL) {
        let dir = URL(fileURLWithPath: tempPath("ckpt-\(layout.rawValue)"))
        let cfg = MoEModelConfig(layout: layout, vocabSize: 64, hiddenSize: 32, layers: 3, heads: 4, kvHeads: 2,
                                 experts: 6, topK: 2, expertIntermediate: 24, sharedIntermediate: shared, maxPositions: 64)
        try MoECheckpointWriter.createRandom(cfg, dtype: dtype, shardBytes: nil, seed: 9, std: 0.2, to: dir)
        return (try MoEModel(directory: dir), dir)
    }

    /// Logits of a 5-token prefill and 4 greedy decode steps.
    static func logits(_ m: MoEModel) throws -> [[Float]] {
        let cache = m.makeCache(capacity: 16)
        var out = [try m.forward([1, 5, 9, 2, 7], cache: cache).array]
        for _ in 0..<4 {
            let last = out.last!
            out.append(try m.forward([last.indices.max { last[$0] < last[$1] }!], cache: cache).array)
        }
        return out
    }

    static func relErr(_ a: [[Float]], _ b: [[Float]]) -> Double {
        var worst = 0.0
        for (x, y) in zip(a, b) {
            let scale = Double(y.map(abs).max()!)
            for (u, v) in zip(x, y) { worst = max(worst, Double(abs(u - v)) / scale) }
        }
        return worst
    }

    @Test(arguments: [(MoELayout.mixtral, DType.float32), (.qwen2MoE, .bfloat16)])
    func everyPolicyAndThetaEqualsResident(layout: MoELayout, dtype: DType) throws {
        let (m, dir) = try Self.model(layout, dtype: dtype, shared: layout == .qwen2MoE ? 16 : nil)
        defer { try? FileManager.default.removeItem(at: dir) }
        let ref = try Self.logits(m)
        let store = dir.appendingPathComponent("experts.fmoe").path
        try OffloadStore.write(source: m, to: store)
        for kind in PolicyKind.allCases {
            for theta in (kind == .moepic ? [0, 0.25, 0.4, 1] : [1.0]) {
                for tier in [SlowTierChoice.disk(store: store), .link(bytesPerSecond: 4e9)] {
                    let exec = try OffloadSetup.executor(source: m, policy: kind.rawValue, budget: kind == .full ? "100%" : "50%",
                                                         tier: tier, theta: theta)
                    m.executor = exec
                    let got = try Self.logits(m)
                    let err = Self.relErr(got, ref)
                    #expect(err <= 1e-5, "\(kind) θ=\(theta) \(tier): \(err)")
                    #expect(exec.stats.peakFastBytes <= exec.budget)
                    exec.close()
                }
            }
        }
        m.executor = ResidentExperts(source: m)
    }
}
