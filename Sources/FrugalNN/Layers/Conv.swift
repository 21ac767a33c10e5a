import FrugalCore

/// 2-D convolution layer over NCHW input, weight [out, in/groups, k, k] (PyTorch init).
public final class Conv2d: Module, Layer {
    public var weight: Tensor
    public var bias: Tensor?
    public let stride: Int, padding: Int, dilation: Int, groups: Int

    public init(_ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0, dilation: Int = 1,
                groups: Int = 1, bias: Bool = true, rng: inout RNG) {
        precondition(inChannels % groups == 0 && outChannels % groups == 0, "Conv2d: channels \(inChannels)->\(outChannels) not divisible by groups \(groups)")
        let fanIn = inChannels / groups * kernel * kernel
        let bound = 1 / Float(fanIn).squareRoot()
        weight = Tensor.uniform([outChannels, inChannels / groups, kernel, kernel], -bound, bound, rng: &rng, requiresGrad: true)
        self.bias = bias ? Tensor.uniform([outChannels], -bound, bound, rng: &rng, requiresGrad: true) : nil
        self.stride = stride; self.padding = padding; self.dilation = dilation; self.groups = groups
    }
    public override func children() -> [(String, Any)] {
        var c: [(String, Any)] = [("weight", weight)]
        if let bias { c.append(("bias", bias)) }
        return c
    }
    public func forward(_ x: Tensor) -> Tensor {
        x.conv2d(weight: weight, bias: bias, stride: (stride, stride), padding: (padding, padding), dilation: (dilation, dilation), groups: groups)
    }
}

/// Batch normalisation over channels of [N, C, H, W] or [N, C], with running statistics
/// (momentum 0.1, unbiased running variance, as PyTorch).
public final class BatchNorm2d: Module, Layer {
    public var weight: Tensor?
    public var bias: Tensor?
    public var runningMean: Tensor
    public var runningVar: Tensor
    public let eps: Float, momentum: Float
    public let trackRunningStats: Bool

    public init(_ channels: Int, eps: Float = 1e-5, momentum: Float = 0.1, affine: Bool = true, trackRunningStats: Bool = true) {
        weight = affine ? Tensor.ones([channels], requiresGrad: true) : nil
        bias = affine ? Tensor.zeros([channels], requiresGrad: true) : nil
        runningMean = Tensor.zeros([channels])
        runningVar = Tensor.ones([channels])
        self.eps = eps; self.momentum = momentum; self.trackRunningStats = trackRunningStats
    }
    public override var bufferNames: Set<String> { ["running_mean", "running_var"] }
    public override func children() -> [(String, Any)] {
        var c: [(String, Any)] = []
        if let weight { c.append(("weight", weight)) }
        if let bias { c.append(("bias", bias)) }
        c.append(("running_mean", runningMean)); c.append(("running_var", runningVar))
        return c
    }
    public func forward(_ x: Tensor) -> Tensor {
        let useBatch = isTraining || !trackRunningStats
        let m = x.rank == 4 ? x.shape[0] * x.shape[2] * x.shape[3] : x.shape[0]
        return x.batchNorm(mean: runningMean, variance: runningVar, weight: weight, bias: bias, training: useBatch, eps: eps,
                           batchStats: isTraining && trackRunningStats ? { [runningMean, runningVar, momentum] mean, variance in
            let rm = runningMean.pointer, rv = runningVar.pointer
            let unbias = Float(m) / Float(Swift.max(m - 1, 1))
            for c in 0..<mean.count {
                rm[c] = (1 - momentum) * rm[c] + momentum * mean[c]
                rv[c] = (1 - momentum) * rv[c] + momentum * variance[c] * unbias
            }
        } : nil)
    }
}

/// Max pooling layer.
public final class MaxPool2d: Module, Layer {
    public let kernel: Int, stride: Int?, padding: Int
    public init(_ kernel: Int, stride: Int? = nil, padding: Int = 0) { self.kernel = kernel; self.stride = stride; self.padding = padding }
    public override func children() -> [(String, Any)] { [] }
    public func forward(_ x: Tensor) -> Tensor { x.maxPool2d(kernel: kernel, stride: stride, padding: padding) }
}

/// Average pooling layer.
public final class AvgPool2d: Module, Layer {
    public let kernel: Int, stride: Int?, padding: Int, countIncludePad: Bool
    public init(_ kernel: Int, stride: Int? = nil, padding: Int = 0, countIncludePad: Bool = true) {
        self.kernel = kernel; self.stride = stride; self.padding = padding; self.countIncludePad = countIncludePad
    }
    public override func children() -> [(String, Any)] { [] }
    public func forward(_ x: Tensor) -> Tensor { x.avgPool2d(kernel: kernel, stride: stride, padding: padding, countIncludePad: countIncludePad) }
}

/// Global (or any-size) adaptive average pooling.
public final class AdaptiveAvgPool2d: Module, Layer {
    public let outH: Int, outW: Int
    public init(_ outH: Int, _ outW: Int) { self.outH = outH; self.outW = outW }
    public override func children() -> [(String, Any)] { [] }
    public func forward(_ x: Tensor) -> Tensor { x.adaptiveAvgPool2d(outH, outW) }
}
