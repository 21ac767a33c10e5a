import FrugalCore

/// Low-rank adaptation of a frozen Linear: y = W x + b + (α/r) · B A dropout(x), with A [r, in]
/// (Kaiming-uniform init) and B [out, r] (zeros), so the adapted layer starts equal to the base.
/// `merge()` folds (α/r)·B A into W for inference; `unmerge()` takes it out again.
public final class LoRALinear: Module, Layer {
    public let base: Linear
    public var loraA: Tensor
    public var loraB: Tensor
    public let rank: Int
    public let alpha: Float
    public let dropout: Dropout?
    public private(set) var isMerged = false
    public var scaling: Float { alpha / Float(rank) }

    public init(wrapping base: Linear, rank: Int, alpha: Float, dropout: Float = 0, rng: inout RNG) {
        precondition(rank > 0, "LoRA rank must be positive")
        self.base = base
        self.rank = rank
        self.alpha = alpha
        base.freeze()
        let bound = 1 / Float(base.inFeatures).squareRoot()
        loraA = Tensor.uniform([rank, base.inFeatures], -bound, bound, rng: &rng, requiresGrad: true)
        loraB = Tensor.zeros([base.outFeatures, rank], requiresGrad: true)
        self.dropout = dropout > 0 ? Dropout(dropout, seed: rng.next()) : nil
    }
    public override func children() -> [(String, Any)] {
        var c: [(String, Any)] = [("base", base), ("lora_a", loraA), ("lora_b", loraB)]
        if let dropout { c.append(("dropout", dropout)) }
        return c
    }

    public func forward(_ x: Tensor) -> Tensor {
        if isMerged { return base(x) }
        if let dropout, dropout.isTraining, dropout.p > 0 {
            // The adapter sees a dropped-out input, the base the full one: two products.
            return base(x) + dropout(x).linear(weight: loraA).linear(weight: loraB) * scaling
        }
        return x.loraLinear(weight: base.weight, bias: base.bias, loraA: loraA, loraB: loraB, scaling: scaling)
    }

    /// Adds (α/r)·B A into the base weight.
    public func merge() {
        guard !isMerged else { return }
        withNoGrad { base.weight.addInPlace(loraB.matmul(loraA), scale: scaling) }
        isMerged = true
    }
    /// Removes the merged update from the base weight.
    public func unmerge() {
        guard isMerged else { return }
        withNoGrad { base.weight.addInPlace(loraB.matmul(loraA), scale: -scaling) }
        isMerged = false
    }
}
