import FrugalCore

/// y = x Wᵀ + b, with W stored [out, in] (PyTorch's layout, and the batch-1 GEMV layout).
/// Initialised as PyTorch's nn.Linear: U(-1/√in, 1/√in) for weight and bias.
public final class Linear: Module, Layer {
    public var weight: Tensor
    public var bias: Tensor?
    public let inFeatures: Int, outFeatures: Int

    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, rng: inout RNG) {
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        let bound = 1 / Float(inFeatures).squareRoot()
        weight = Tensor.uniform([outFeatures, inFeatures], -bound, bound, rng: &rng, requiresGrad: true)
        self.bias = bias ? Tensor.uniform([outFeatures], -bound, bound, rng: &rng, requiresGrad: true) : nil
    }
    public convenience init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true) {
        var rng = Random.with { $0.fork() }
        self.init(inFeatures, outFeatures, bias: bias, rng: &rng)
    }
    public override func children() -> [(String, Any)] {
        var c: [(String, Any)] = [("weight", weight)]
        if let bias { c.append(("bias", bias)) }
        return c
    }
    public func forward(_ x: Tensor) -> Tensor { x.linear(weight: weight, bias: bias) }
}

/// A lookup table of `count` vectors of size `dim` (PyTorch init: N(0, 1)).
public final class Embedding: Module, Layer {
    public var weight: Tensor
    public init(_ count: Int, _ dim: Int, rng: inout RNG) {
        weight = Tensor.normal([count, dim], rng: &rng, requiresGrad: true)
    }
    public convenience init(_ count: Int, _ dim: Int) {
        var rng = Random.with { $0.fork() }
        self.init(count, dim, rng: &rng)
    }
    public override func children() -> [(String, Any)] { [("weight", weight)] }
    /// Embeds token ids: result [ids.count, dim].
    public func callAsFunction(_ ids: [Int]) -> Tensor { weight.indexSelect(ids) }
    /// Embeds a float tensor of ids (any shape): result shape + [dim].
    public func forward(_ ids: Tensor) -> Tensor {
        weight.indexSelect(ids.array.map { Int($0) }).reshaped(ids.shape + [weight.shape[1]])
    }
}

/// Inverted dropout: zeroes elements with probability p in training and scales the rest by 1/(1-p).
public final class Dropout: Module, Layer {
    public let p: Float
    var rng: RNG
    public init(_ p: Float, seed: UInt64? = nil) {
        precondition(p >= 0 && p < 1, "Dropout probability must be in [0, 1), got \(p)")
        self.p = p
        rng = seed.map { RNG(seed: $0) } ?? Random.with { $0.fork() }
    }
    public override func children() -> [(String, Any)] { [] }
    public func forward(_ x: Tensor) -> Tensor {
        guard isTraining, p > 0 else { return x }
        let mask = Tensor.bernoulli(x.shape, p: 1 - p, rng: &rng)
        return x * mask.mul(1 / (1 - p)).detach()
    }
}
