import FrugalCore
import FrugalNN
import FrugalData

/// Barlow Twins (Zbontar et al., 2021). Two augmented views of a batch give embeddings z1, z2
/// [N, D]; each is standardised per dimension over the batch (BN without affine), and
///
///     C = BN(z1)ᵀ BN(z2) / N,   L = Σ_i (1 − C_ii)² + λ Σ_{i≠j} C_ij²,   λ = 5e-3
///
/// drives the cross-correlation towards the identity (invariance on the diagonal, redundancy
/// reduction off it).
public enum BarlowTwins {
    /// The Barlow Twins loss of two embedding batches [N, D] (N ≥ 2).
    public static func loss(_ z1: Tensor, _ z2: Tensor, lambda: Float = 5e-3, eps: Float = 1e-5) -> Tensor {
        precondition(z1.rank == 2 && z1.shape == z2.shape && z1.shape[0] >= 2, "BarlowTwins.loss: embeddings \(z1.shape), \(z2.shape) must be [N>=2, D] and equal")
        let n = z1.shape[0], d = z1.shape[1]
        let a = z1.batchNorm(mean: nil, variance: nil, weight: nil, bias: nil, training: true, eps: eps)
        let b = z2.batchNorm(mean: nil, variance: nil, weight: nil, bias: nil, training: true, eps: eps)
        let c = a.transposed(0, 1).matmul(b) / Float(n)
        var eye = [Float](repeating: 0, count: d * d)
        for i in 0..<d { eye[i * d + i] = 1 }
        let diag = (c * Tensor(eye, shape: [d, d])).sum(axis: 1)
        let onDiag = ((1 - diag) * (1 - diag)).sum()
        let offDiag = (c * c).sum() - (diag * diag).sum()
        return onDiag + offDiag * lambda
    }

    /// The SSL augmentation of the paper: random resized crop, horizontal flip, colour jitter
    /// (0.4, 0.4, 0.2, 0.1) with p = 0.8, grayscale with p = 0.2 (grayscale only for 3 channels).
    public static func augmentation(size: Int, channels: Int) -> AugmentationPipeline {
        var steps: [any Augmentation] = [RandomResizedCrop(size: size, scale: 0.2...1.0), RandomHorizontalFlip()]
        if channels == 3 {
            steps.append(RandomApply(ColorJitter(brightness: 0.4, contrast: 0.4, saturation: 0.2, hue: 0.1), p: 0.8))
            steps.append(RandomGrayscale(p: 0.2))
        } else {
            steps.append(RandomApply(ColorJitter(brightness: 0.4, contrast: 0.4), p: 0.8))
        }
        return AugmentationPipeline(steps)
    }
}

/// The Barlow Twins projector: Linear → BN → ReLU → Linear (features → `dim`).
public final class BarlowProjector: Module, Layer {
    public let fc1: Linear, bn: BatchNorm2d, fc2: Linear
    public init(_ inFeatures: Int, hidden: Int, dim: Int, rng: inout RNG) {
        fc1 = Linear(inFeatures, hidden, bias: false, rng: &rng)
        bn = BatchNorm2d(hidden)
        fc2 = Linear(hidden, dim, bias: false, rng: &rng)
    }
    public func forward(_ x: Tensor) -> Tensor { fc2(bn(fc1(x)).relu()) }
}
