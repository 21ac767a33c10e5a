import FrugalCore
import FrugalModels

/// How a differentiable search turns architecture parameters α [edges, ops] into op weights,
/// what it adds to the α loss, and how it discretises α into a genotype.
public protocol SearchMethod: Sendable {
    /// Short name ("darts", "fairdarts").
    var name: String { get }
    /// Op weights from α [edges, ops] (differentiable).
    func opWeights(_ alpha: Tensor) -> Tensor
    /// Extra loss on α added to the task loss in the α step (nil: none).
    func alphaRegularizer(_ alphas: [Tensor]) -> Tensor?
    /// The genotype of op-weight matrices (rows: edges in cell order, columns: `ops`).
    func derive(normal: [[Float]], reduce: [[Float]], ops: [DARTSOp], steps: Int) -> Genotype
}

/// DARTS (Liu et al., 2019): softmax over each edge's ops; genotype = per node the 2 strongest
/// incoming edges (edge strength = its largest non-none op weight), each with its best non-none op.
public struct DARTSMethod: SearchMethod {
    public init() {}
    public var name: String { "darts" }
    public func opWeights(_ alpha: Tensor) -> Tensor { alpha.softmax(axis: -1) }
    public func alphaRegularizer(_ alphas: [Tensor]) -> Tensor? { nil }
    public func derive(normal: [[Float]], reduce: [[Float]], ops: [DARTSOp], steps: Int) -> Genotype {
        Genotype(steps: steps, normal: DARTSMethod.topTwo(normal, ops: ops, steps: steps),
                 reduce: DARTSMethod.topTwo(reduce, ops: ops, steps: steps))
    }

    /// The DARTS top-2 rule on one cell's op weights (ties: the earlier edge / op wins).
    public static func topTwo(_ w: [[Float]], ops: [DARTSOp], steps: Int) -> [GenotypeEdge] {
        var out: [GenotypeEdge] = []
        var start = 0
        for i in 0..<steps {
            let n = i + 2
            // (edge index j, best op, its weight)
            var cands: [(Int, Int, Float)] = []
            for j in 0..<n {
                let row = w[start + j]
                var best = -1, bw = -Float.infinity
                for (k, op) in ops.enumerated() where op != .none && row[k] > bw { best = k; bw = row[k] }
                if best >= 0 { cands.append((j, best, bw)) }
            }
            let chosen = cands.enumerated().sorted { a, b in a.element.2 != b.element.2 ? a.element.2 > b.element.2 : a.offset < b.offset }.prefix(2).map(\.element)
            for (j, k, _) in chosen.sorted(by: { $0.0 < $1.0 }) { out.append(GenotypeEdge(node: n, from: j, op: ops[k])) }
            start += n
        }
        return out
    }
}

/// Which weighting and derivation a search uses.
public enum SearchMethodKind: String, Codable, Sendable, CaseIterable {
    case darts, fairdarts, ssf
    /// The α-weighting of this kind (SSF-NAS searches with FairDARTS' sigmoid and zero-one loss).
    public func method(zeroOneWeight: Float, threshold: Float) -> any SearchMethod {
        switch self {
        case .darts: return DARTSMethod()
        case .fairdarts, .ssf: return FairDARTSMethod(zeroOneWeight: zeroOneWeight, threshold: threshold)
        }
    }
}
