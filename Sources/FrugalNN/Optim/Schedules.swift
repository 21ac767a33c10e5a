#if canImport(Glibc)
import Glibc
#endif

/// A learning-rate schedule: the rate for a step (0-based).
public protocol LRSchedule: Sendable {
    func rate(at step: Int) -> Float
}

/// Cosine annealing from `base` to `minimum` over `total` steps (PyTorch's CosineAnnealingLR).
public struct CosineSchedule: LRSchedule {
    public let base: Float, minimum: Float, total: Int
    public init(base: Float, total: Int, minimum: Float = 0) { self.base = base; self.total = max(total, 1); self.minimum = minimum }
    public func rate(at step: Int) -> Float {
        let t = Float(min(step, total)) / Float(total)
        return minimum + (base - minimum) * 0.5 * (1 + cosf(Float.pi * t))
    }
}

/// Multiplies the rate by `gamma` every `every` steps (StepLR).
public struct StepSchedule: LRSchedule {
    public let base: Float, every: Int, gamma: Float
    public init(base: Float, every: Int, gamma: Float = 0.1) { self.base = base; self.every = max(every, 1); self.gamma = gamma }
    public func rate(at step: Int) -> Float { base * powf(gamma, Float(step / every)) }
}

/// Linear warm-up over `warmup` steps, then the wrapped schedule (shifted by the warm-up).
public struct WarmupSchedule<Inner: LRSchedule>: LRSchedule {
    public let warmup: Int, inner: Inner
    public init(warmup: Int, then inner: Inner) { self.warmup = warmup; self.inner = inner }
    public func rate(at step: Int) -> Float {
        if step < warmup { return inner.rate(at: 0) * Float(step + 1) / Float(warmup) }
        return inner.rate(at: step - warmup)
    }
}
