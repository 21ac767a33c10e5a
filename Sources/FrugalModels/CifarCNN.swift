import FrugalNN

/// A small VGG-style CNN for CIFAR-10 in the federated experiments (no batch norm, whose running
/// statistics do not average well across non-IID devices):
/// [conv 3x3 → w, ReLU] x2, max-pool 2, [conv 3x3 → 2w, ReLU] x2, max-pool 2, conv 3x3 → 4w, ReLU,
/// max-pool 2, fc (4w·(s/8)²) → 128, ReLU, fc 128 → classes. Padding 1 keeps sizes; input
/// [N, 3, 32, 32]. With w = 32 it has 0.41M parameters and about 29M multiply-adds per image.
public final class CifarCNN: Module, Layer {
    public let conv1: Conv2d, conv2: Conv2d, conv3: Conv2d, conv4: Conv2d, conv5: Conv2d, fc1: Linear, fc2: Linear

    public init(inChannels: Int = 3, classes: Int = 10, imageSize: Int = 32, width: Int = 32, rng: inout RNG) {
        precondition(imageSize % 8 == 0, "CifarCNN: image size \(imageSize) must be a multiple of 8")
        conv1 = Conv2d(inChannels, width, kernel: 3, padding: 1, rng: &rng)
        conv2 = Conv2d(width, width, kernel: 3, padding: 1, rng: &rng)
        conv3 = Conv2d(width, 2 * width, kernel: 3, padding: 1, rng: &rng)
        conv4 = Conv2d(2 * width, 2 * width, kernel: 3, padding: 1, rng: &rng)
        conv5 = Conv2d(2 * width, 4 * width, kernel: 3, padding: 1, rng: &rng)
        let s = imageSize / 8
        fc1 = Linear(4 * width * s * s, 128, rng: &rng)
        fc2 = Linear(128, classes, rng: &rng)
    }

    public func forward(_ x: Tensor) -> Tensor {
        var h = conv2(conv1(x).relu()).relu().maxPool2d(kernel: 2)
        h = conv4(conv3(h).relu()).relu().maxPool2d(kernel: 2)
        h = conv5(h).relu().maxPool2d(kernel: 2)
        return fc2(fc1(h.flattened(from: 1)).relu())
    }
}
