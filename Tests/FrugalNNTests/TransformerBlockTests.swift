import Foundation
import Testing
@testable import FrugalNN

/// Same formula as scripts/make_block_fixture.py: value i of tensor s is sin(0.37 i + 1.3 s)·scale.
func formulaTensor(_ shape: [Int], _ s: Int, _ scale: Double) -> Tensor {
    let n = shape.reduce(1, *)
    return Tensor((0..<n).map { Float(sin(0.37 * Double($0) + 1.3 * Double(s)) * scale) }, shape: shape)
}

struct BlockFixture: Decodable {
    struct Grad: Decodable { let first: [Float]; let sum: Double; let norm: Double }
    let names: [String]
    let rows: [Int]
    let loss: Double
    let output_rows: [[Float]]
    let input_grad_rows: [[Float]]
    let grads: [String: Grad]
}

@Suite struct TransformerBlockTests {
    @Test func matchesPyTorchForwardAndGradients() throws {
        let url = try #require(Bundle.module.url(forResource: "transformer_block", withExtension: "json", subdirectory: "Fixtures"))
        let fx = try JSONDecoder().decode(BlockFixture.self, from: Data(contentsOf: url))
        let d = 256, t = 128, hidden = 512
        var rng = RNG(seed: 1)
        let block = TransformerBlock(dModel: d, heads: 4, hidden: hidden, rng: &rng)
        let state = block.stateDict()
        for (s, name) in fx.names.enumerated() {
            let p = try #require(state[name], "block has no \(name)")
            var v = formulaTensor(p.shape, s + 1, p.rank == 1 ? 1 : 1 / Double(p.shape[1]).squareRoot())
            if p.rank == 1 { v = withNoGrad { v * 0.5 + 1 } }
            p.assign(v)
        }
        let x = formulaTensor([1, t, d], 20, 1)
        x.requiresGrad = true
        let r = formulaTensor([1, t, d], 21, 1)
        let y = block(x, causal: true)
        let loss = (y * r).sum()
        #expect(abs(Double(loss.item) - fx.loss) / abs(fx.loss) < 1e-4)
        for (k, row) in fx.rows.enumerated() {
            expectClose(y.select(axis: 1, row).array, fx.output_rows[k], tol: 1e-4, "output row \(row)")
        }
        loss.backward()
        for (k, row) in fx.rows.enumerated() {
            expectClose(x.grad!.select(axis: 1, row).array, fx.input_grad_rows[k], tol: 1e-4, "input grad row \(row)")
        }
        for name in fx.names {
            let g = try #require(state[name]?.grad, "no gradient for \(name)")
            let ref = try #require(fx.grads[name])
            expectClose(Array(g.array.prefix(ref.first.count)), ref.first, tol: 1e-4, "grad \(name)")
            let norm = g.array.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            #expect(abs(norm - ref.norm) / ref.norm < 1e-4, "grad norm \(name): \(norm) vs \(ref.norm)")
        }
    }

    @Test func trainsOnAToyTask() {
        // Predict the previous token's embedding sum: a causal block must learn to look back.
        var rng = RNG(seed: 3)
        let d = 32, t = 16
        let block = TransformerBlock(dModel: d, heads: 4, hidden: 64, rng: &rng)
        let head = Linear(d, 4, rng: &rng)
        let emb = Embedding(4, d, rng: &rng)
        let params = block.parameters() + head.parameters() + emb.parameters()
        let opt = AdamW(params, lr: 3e-3, weightDecay: 0)
        var first: Float = 0, last: Float = 0
        for step in 0..<120 {
            let ids = (0..<(2 * t)).map { _ in rng.int(4) }
            let x = emb(ids).reshaped([2, t, d])
            let logits = head(block(x)).reshaped([2 * t, 4])
            // target at position i is the token at i-1 (position 0: its own token)
            let targets = (0..<(2 * t)).map { i in i % t == 0 ? ids[i] : ids[i - 1] }
            let loss = Loss.crossEntropy(logits, targets)
            opt.zeroGrad()
            loss.backward()
            opt.step()
            if step == 0 { first = loss.item }
            last = loss.item
        }
        #expect(first > 1.2)
        #expect(last < 0.3, "toy task loss went from \(first) to \(last)")
    }
}

func expectClose(_ a: [Float], _ b: [Float], tol: Float, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(a.count == b.count, "\(what): \(a.count) vs \(b.count) values", sourceLocation: sourceLocation)
    var worst: Float = 0
    for (x, y) in zip(a, b) { worst = max(worst, abs(x - y) / max(1, abs(y))) }
    #expect(worst <= tol, "\(what): max relative error \(worst)", sourceLocation: sourceLocation)
}
