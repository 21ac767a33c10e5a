import FrugalCore
import FrugalModels

/// MoEpic's next-layer predictor: apply layer l+1's router to layer l's MoE input x_l (the
/// residual stream changes little between adjacent layers, so router(l+1)(x_l) ≈ router(l+1)(x_{l+1})).
/// The predicted set is the routing rule's top-k of those logits. Accuracy is |P ∩ A| / |A| for
/// the experts A actually routed at l+1, accumulated per layer.
public final class ExpertPredictor {
    public let source: MoEExpertSource
    /// Per target layer: predicted experts that were then routed, and routed experts seen.
    public private(set) var correct: [Int], total: [Int]
    var pending: [[Int]?]

    public init(source: MoEExpertSource) {
        self.source = source
        let L = source.moeShape.layers
        correct = Array(repeating: 0, count: L); total = Array(repeating: 0, count: L)
        pending = Array(repeating: nil, count: L)
    }

    /// The experts layer `layer` is predicted to route, from the previous layer's MoE input x
    /// [T, hidden] (the union over tokens, in first-seen order), then, for a single token, the
    /// `extra` next most likely experts by router logit (prefetch candidates beyond top-k). The
    /// routed part is remembered for `record`; accuracy counts only it.
    public func predict(layer: Int, from x: Tensor, extra: Int = 0) -> [Int] {
        guard layer >= 0, layer < source.moeShape.layers else { return [] }
        let logits = source.routerLogits(layer: layer, x)
        let routes = source.route(logits: logits)
        var seen = Set<Int>(), out: [Int] = []
        for r in routes { for e in r where seen.insert(e.expert).inserted { out.append(e.expert) } }
        pending[layer] = out
        if extra > 0 && routes.count == 1 {
            let E = source.moeShape.experts
            let row = (0..<E).map { logits.pointer[$0] }
            let rest = (0..<E).filter { !seen.contains($0) }.sorted { row[$0] > row[$1] || (row[$0] == row[$1] && $0 < $1) }
            out += rest.prefix(extra)
        }
        return out
    }

    /// Scores the last prediction for `layer` against the experts it actually routed.
    public func record(layer: Int, actual: [Int]) {
        guard layer >= 0, layer < pending.count, let p = pending[layer] else { return }
        pending[layer] = nil
        let ps = Set(p)
        let a = Set(actual)
        correct[layer] += a.filter { ps.contains($0) }.count
        total[layer] += a.count
    }

    /// Accuracy per layer (nil where nothing was predicted: layer 0).
    public var accuracyPerLayer: [Double?] {
        zip(correct, total).map { $1 == 0 ? nil : Double($0) / Double($1) }
    }
    /// Accuracy over all predicted layers.
    public var accuracy: Double? {
        let t = total.reduce(0, +)
        return t == 0 ? nil : Double(correct.reduce(0, +)) / Double(t)
    }
}

extension ExpertPredictor {
    /// Clears the accuracy counters.
    public func reset() {
        for i in correct.indices { correct[i] = 0; total[i] = 0 }
    }
}
