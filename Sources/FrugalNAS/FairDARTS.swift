import FrugalCore
import FrugalModels

/// FairDARTS (Chu et al., 2020): each op's weight is σ(α) independently (no softmax competition,
/// no `none` op; α = 0 starts every op at 0.5), and the zero-one loss pushes the weights to 0 or 1:
///
///     L = L_task + w · L_01,   L_01 = −mean((σ(α) − 0.5)²),   w = 10
///
/// Discretisation keeps, on each node's 2 strongest incoming edges, the ops with σ(α) ≥ threshold
/// (0.85). A node left without any op keeps its single strongest op, so every node has an input.
public struct FairDARTSMethod: SearchMethod {
    public var zeroOneWeight: Float
    public var threshold: Float
    public init(zeroOneWeight: Float = 10, threshold: Float = 0.85) { self.zeroOneWeight = zeroOneWeight; self.threshold = threshold }
    public var name: String { "fairdarts" }
    public func opWeights(_ alpha: Tensor) -> Tensor { alpha.sigmoid() }

    /// w · L_01 over all architecture parameters (the mean runs over every entry of every α).
    public func alphaRegularizer(_ alphas: [Tensor]) -> Tensor? {
        zeroOneWeight == 0 ? nil : FairDARTSMethod.zeroOneLoss(alphas).mul(zeroOneWeight)
    }

    /// L_01 = −mean((σ(α) − 0.5)²) over all entries of `alphas`.
    public static func zeroOneLoss(_ alphas: [Tensor]) -> Tensor {
        let flat = Tensor.concat(alphas.map { $0.reshaped([-1]) }, axis: 0)
        let d = flat.sigmoid() - 0.5
        return (d * d).mean().neg()
    }

    public func derive(normal: [[Float]], reduce: [[Float]], ops: [DARTSOp], steps: Int) -> Genotype {
        Genotype(steps: steps, normal: FairDARTSMethod.threshold(normal, ops: ops, steps: steps, threshold: threshold),
                 reduce: FairDARTSMethod.threshold(reduce, ops: ops, steps: steps, threshold: threshold))
    }

    /// FairDARTS discretisation of one cell's sigmoid weights.
    public static func threshold(_ w: [[Float]], ops: [DARTSOp], steps: Int, threshold: Float) -> [GenotypeEdge] {
        var out: [GenotypeEdge] = []
        var start = 0
        for i in 0..<steps {
            let n = i + 2
            var strength: [(Int, Float)] = []
            for j in 0..<n {
                let row = w[start + j]
                var bw = -Float.infinity
                for (k, op) in ops.enumerated() where op != .none { bw = max(bw, row[k]) }
                strength.append((j, bw))
            }
            let top = strength.enumerated().sorted { a, b in a.element.1 != b.element.1 ? a.element.1 > b.element.1 : a.offset < b.offset }
                .prefix(2).map(\.element.0).sorted()
            var node: [GenotypeEdge] = []
            for j in top {
                for (k, op) in ops.enumerated() where op != .none && w[start + j][k] >= threshold {
                    node.append(GenotypeEdge(node: n, from: j, op: op))
                }
            }
            if node.isEmpty, let j = top.min(by: { strength[$0].1 > strength[$1].1 || (strength[$0].1 == strength[$1].1 && $0 < $1) }) {
                let row = w[start + j]
                var best = -1, bw = -Float.infinity
                for (k, op) in ops.enumerated() where op != .none && row[k] > bw { best = k; bw = row[k] }
                if best >= 0 { node.append(GenotypeEdge(node: n, from: j, op: ops[best])) }
            }
            out += node
            start += n
        }
        return out
    }
}
