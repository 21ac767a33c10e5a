import FrugalNN

/// The LeNet-style CNN of Frugal's benchmarks and the (Fashion-)MNIST federated runs:
/// conv 5x5 → 32, ReLU, max-pool 2, conv 5x5 → 64, ReLU, max-pool 2, fc 1024 → 512, ReLU, fc 512 → 10.
/// Input [N, 1, 28, 28].
public final class LeNet: Module, Layer {
    public let conv1: Conv2d, conv2: Conv2d, fc1: Linear, fc2: Linear

    public init(inChannels: Int = 1, classes: Int = 10, imageSize: Int = 28, rng: inout RNG) {
        conv1 = Conv2d(inChannels, 32, kernel: 5, rng: &rng)
        conv2 = Conv2d(32, 64, kernel: 5, rng: &rng)
        let s = ((imageSize - 4) / 2 - 4) / 2
        fc1 = Linear(64 * s * s, 512, rng: &rng)
        fc2 = Linear(512, classes, rng: &rng)
    }

    public func forward(_ x: Tensor) -> Tensor {
        var h = conv1(x).relu().maxPool2d(kernel: 2)
        h = conv2(h).relu().maxPool2d(kernel: 2)
        h = h.flattened(from: 1)
        return fc2(fc1(h).relu())
    }
}

/// A multilayer perceptron with ReLU between layers.
public final class MLP: Module, Layer {
    public let layers: [Linear]
    public init(_ sizes: [Int], rng: inout RNG) {
        precondition(sizes.count >= 2, "MLP needs at least input and output sizes")
        layers = (0..<(sizes.count - 1)).map { Linear(sizes[$0], sizes[$0 + 1], rng: &rng) }
    }
    public override func children() -> [(String, Any)] { layers.enumerated().map { ("\($0.offset)", $0.element) } }
    public func forward(_ x: Tensor) -> Tensor {
        var h = x
        for (i, l) in layers.enumerated() { h = l(h); if i < layers.count - 1 { h = h.relu() } }
        return h
    }
}
