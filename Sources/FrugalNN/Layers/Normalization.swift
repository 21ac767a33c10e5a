import FrugalCore

/// Layer normalisation over the last axis: (x - mean) / sqrt(var + eps) * weight + bias.
public final class LayerNorm: Module, Layer {
    public var weight: Tensor
    public var bias: Tensor?
    public let eps: Float
    public init(_ dim: Int, eps: Float = 1e-5, bias: Bool = true) {
        weight = Tensor.ones([dim], requiresGrad: true)
        self.bias = bias ? Tensor.zeros([dim], requiresGrad: true) : nil
        self.eps = eps
    }
    public override func children() -> [(String, Any)] {
        var c: [(String, Any)] = [("weight", weight)]
        if let bias { c.append(("bias", bias)) }
        return c
    }
    public func forward(_ x: Tensor) -> Tensor { x.layerNorm(weight: weight, bias: bias, eps: eps) }
}

/// Root-mean-square normalisation over the last axis: x / sqrt(mean(x²) + eps) * weight.
public final class RMSNorm: Module, Layer {
    public var weight: Tensor
    public let eps: Float
    public init(_ dim: Int, eps: Float = 1e-6) {
        weight = Tensor.ones([dim], requiresGrad: true)
        self.eps = eps
    }
    public override func children() -> [(String, Any)] { [("weight", weight)] }
    public func forward(_ x: Tensor) -> Tensor {
        let ms = (x * x).mean(axis: -1, keepDims: true)
        return x / (ms + eps).sqrt() * weight
    }
}
