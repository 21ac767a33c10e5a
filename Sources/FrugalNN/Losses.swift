import FrugalCore

/// Loss functions (mean reduction). Targets are class indices given as `[Int]`.
public enum Loss {
    /// Cross-entropy of logits [N, C] against class indices, as PyTorch's F.cross_entropy:
    /// optional class `weights` [C], `labelSmoothing` ε (target = (1-ε)·onehot + ε/C), and
    /// `ignoreIndex` (rows with that target contribute nothing). The mean divides by Σ w[y_i]
    /// over the kept rows.
    public static func crossEntropy(_ logits: Tensor, _ targets: [Int], weights: [Float]? = nil,
                                    labelSmoothing: Float = 0, ignoreIndex: Int? = nil) -> Tensor {
        precondition(logits.rank == 2 && logits.shape[0] == targets.count, "crossEntropy: logits \(logits.shape) for \(targets.count) targets")
        let n = logits.shape[0], c = logits.shape[1]
        if let weights { precondition(weights.count == c, "crossEntropy: \(weights.count) class weights for \(c) classes") }
        var rowW = [Float](repeating: 0, count: n)
        var idx = [Int](repeating: 0, count: n)
        for (i, y) in targets.enumerated() {
            if let ignoreIndex, y == ignoreIndex { continue }
            precondition(y >= 0 && y < c, "crossEntropy: target \(y) out of range 0..<\(c)")
            idx[i] = y
            rowW[i] = weights?[y] ?? 1
        }
        let denom = rowW.reduce(0, +)
        let ls = logits.logSoftmax(axis: 1)
        let picked = ls.gather(axis: 1, index: idx, indexShape: [n, 1]).reshaped([n])
        let rw = Tensor(rowW)
        var loss = (picked * rw).sum().neg() / Swift.max(denom, 1e-12)
        if labelSmoothing > 0 {
            let kept = Tensor(rowW.map { $0 > 0 ? 1 : 0 }, shape: [n, 1])
            let cw = Tensor(weights ?? [Float](repeating: 1, count: c), shape: [1, c])
            let smooth = (ls * cw * kept).sum().neg() / (Float(c) * Swift.max(denom, 1e-12))
            loss = loss * (1 - labelSmoothing) + smooth * labelSmoothing
        }
        return loss
    }

    /// Mean squared error.
    public static func mse(_ x: Tensor, _ y: Tensor) -> Tensor { let d = x - y; return (d * d).mean() }

    /// Binary cross-entropy on probabilities in (0, 1), clamped like PyTorch (log ≥ -100).
    public static func bce(_ p: Tensor, _ y: Tensor) -> Tensor {
        let lp = p.log().clamp(min: -100), l1p = (1 - p).log().clamp(min: -100)
        return (y * lp + (1 - y) * l1p).mean().neg()
    }

    /// Binary cross-entropy on logits (stable): max(x,0) - x·y + log(1 + e^{-|x|}).
    public static func bceWithLogits(_ x: Tensor, _ y: Tensor) -> Tensor {
        (x.relu() - x * y + (x.abs().neg().exp() + 1).log()).mean()
    }

    /// Fraction of rows whose argmax equals the target.
    public static func accuracy(_ logits: Tensor, _ targets: [Int]) -> Float {
        let p = logits.argmax(axis: -1)
        return Float(zip(p, targets).filter { $0 == $1 }.count) / Float(Swift.max(targets.count, 1))
    }
}
