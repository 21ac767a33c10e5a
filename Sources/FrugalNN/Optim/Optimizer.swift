#if canImport(Glibc)
import Glibc
#endif
import FrugalCore

/// An optimiser updates parameters from their `grad`. State (momentum, moments, step) is kept
/// per parameter and can be saved and restored with the model (`stateDict`).
public protocol Optimizer: AnyObject {
    var parameters: [Tensor] { get }
    var learningRate: Float { get set }
    /// One update from the current gradients (parameters without a grad are skipped).
    func step()
    /// Per-parameter state under names "<index>.<field>", plus "step".
    func stateDict() -> [String: Tensor]
    func loadStateDict(_ state: [String: Tensor]) throws
}

extension Optimizer {
    public func zeroGrad() { for p in parameters { p.grad = nil } }
}

public enum OptimizerError: Error, CustomStringConvertible {
    case missingState(String)
    case shapeMismatch(String, [Int], [Int])
    public var description: String {
        switch self {
        case .missingState(let n): return "optimiser state has no entry '\(n)'"
        case .shapeMismatch(let n, let e, let g): return "optimiser state '\(n)': expected shape \(e), got \(g)"
        }
    }
}

/// Stochastic gradient descent with momentum (PyTorch semantics: buf = μ·buf + (g + wd·p);
/// Nesterov uses g + μ·buf), dampening 0.
public final class SGD: Optimizer {
    public let parameters: [Tensor]
    public var learningRate: Float
    public let momentum: Float, weightDecay: Float, nesterov: Bool
    var buffers: [Tensor?]

    public init(_ parameters: [Tensor], lr: Float, momentum: Float = 0, weightDecay: Float = 0, nesterov: Bool = false) {
        self.parameters = parameters
        learningRate = lr
        self.momentum = momentum
        self.weightDecay = weightDecay
        self.nesterov = nesterov
        buffers = Array(repeating: nil, count: parameters.count)
    }

    public func step() {
        for (k, p) in parameters.enumerated() {
            guard let g = p.grad else { continue }
            let n = p.count
            let pp = p.pointer, gp = g.contiguousF32().pointer
            let lr = learningRate, wd = weightDecay, mu = momentum
            if mu == 0 {
                for i in 0..<n { pp[i] -= lr * (gp[i] + wd * pp[i]) }
                continue
            }
            let first = buffers[k] == nil
            let buf = buffers[k] ?? Tensor(zeros: p.shape)
            buffers[k] = buf
            let bp = buf.pointer
            for i in 0..<n {
                let d = gp[i] + wd * pp[i]
                let b = first ? d : mu * bp[i] + d
                bp[i] = b
                pp[i] -= lr * (nesterov ? d + mu * b : b)
            }
        }
    }

    public func stateDict() -> [String: Tensor] {
        var s: [String: Tensor] = [:]
        for (k, b) in buffers.enumerated() { if let b { s["\(k).momentum_buffer"] = b } }
        return s
    }
    public func loadStateDict(_ state: [String: Tensor]) throws {
        for k in 0..<parameters.count {
            guard let b = state["\(k).momentum_buffer"] else { buffers[k] = nil; continue }
            guard b.shape == parameters[k].shape else { throw OptimizerError.shapeMismatch("\(k).momentum_buffer", parameters[k].shape, b.shape) }
            buffers[k] = b.copyTensor()
        }
    }
}

/// Adam and AdamW (PyTorch semantics). Adam adds weight decay to the gradient; AdamW decays the
/// weight directly: p -= lr·wd·p before the Adam step.
public final class Adam: Optimizer {
    public let parameters: [Tensor]
    public var learningRate: Float
    public let beta1: Float, beta2: Float, eps: Float, weightDecay: Float, decoupled: Bool
    var m: [Tensor?], v: [Tensor?]
    public private(set) var stepCount = 0

    public init(_ parameters: [Tensor], lr: Float = 1e-3, betas: (Float, Float) = (0.9, 0.999), eps: Float = 1e-8, weightDecay: Float = 0, decoupled: Bool = false) {
        self.parameters = parameters
        learningRate = lr
        beta1 = betas.0; beta2 = betas.1
        self.eps = eps
        self.weightDecay = weightDecay
        self.decoupled = decoupled
        m = Array(repeating: nil, count: parameters.count)
        v = Array(repeating: nil, count: parameters.count)
    }

    public func step() {
        stepCount += 1
        let bc1 = 1 - powf(beta1, Float(stepCount)), bc2 = 1 - powf(beta2, Float(stepCount))
        for (k, p) in parameters.enumerated() {
            guard let g = p.grad else { continue }
            if m[k] == nil { m[k] = Tensor(zeros: p.shape); v[k] = Tensor(zeros: p.shape) }
            let pp = p.pointer, gp = g.contiguousF32().pointer, mp = m[k]!.pointer, vp = v[k]!.pointer
            let lr = learningRate, wd = weightDecay, b1 = beta1, b2 = beta2, e = eps
            let stepSize = lr / bc1, rbc2 = 1 / bc2.squareRoot()
            for i in 0..<p.count {
                var gi = gp[i]
                if decoupled { pp[i] -= lr * wd * pp[i] } else if wd != 0 { gi += wd * pp[i] }
                let mi = b1 * mp[i] + (1 - b1) * gi
                let vi = b2 * vp[i] + (1 - b2) * gi * gi
                mp[i] = mi; vp[i] = vi
                pp[i] -= stepSize * mi / (vi.squareRoot() * rbc2 + e)
            }
        }
    }

    public func stateDict() -> [String: Tensor] {
        var s: [String: Tensor] = ["step": Tensor([Float(stepCount)])]
        for k in 0..<parameters.count { if let mk = m[k], let vk = v[k] { s["\(k).exp_avg"] = mk; s["\(k).exp_avg_sq"] = vk } }
        return s
    }
    public func loadStateDict(_ state: [String: Tensor]) throws {
        guard let st = state["step"] else { throw OptimizerError.missingState("step") }
        stepCount = Int(st.item)
        for k in 0..<parameters.count {
            guard let mk = state["\(k).exp_avg"], let vk = state["\(k).exp_avg_sq"] else { m[k] = nil; v[k] = nil; continue }
            guard mk.shape == parameters[k].shape, vk.shape == parameters[k].shape else { throw OptimizerError.shapeMismatch("\(k).exp_avg", parameters[k].shape, mk.shape) }
            m[k] = mk.copyTensor(); v[k] = vk.copyTensor()
        }
    }
}

/// AdamW: Adam with decoupled weight decay (default 0.01 as PyTorch).
public func AdamW(_ parameters: [Tensor], lr: Float = 1e-3, betas: (Float, Float) = (0.9, 0.999), eps: Float = 1e-8, weightDecay: Float = 0.01) -> Adam {
    Adam(parameters, lr: lr, betas: betas, eps: eps, weightDecay: weightDecay, decoupled: true)
}

/// Scales all gradients so that their global L2 norm is at most `maxNorm`; returns the norm before.
@discardableResult
public func clipGradNorm(_ parameters: [Tensor], maxNorm: Float) -> Float {
    var total: Double = 0
    for p in parameters { if let g = p.grad { let c = g.contiguousF32(); for i in 0..<c.count { total += Double(c.pointer[i] * c.pointer[i]) } } }
    let norm = Float(total.squareRoot())
    if norm > maxNorm {
        let s = maxNorm / (norm + 1e-6)
        for p in parameters { p.grad?.scaleInPlace(s) }
    }
    return norm
}
