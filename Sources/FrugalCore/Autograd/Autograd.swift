#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One recorded operation of the autograd graph: its inputs and the rule that maps the gradient
/// of its output to gradients of its inputs (one rule per op, working on whole tensors).
final class GradNode {
    let name: String
    let inputs: [Tensor]
    let backward: (Tensor) -> [Tensor?]
    init(name: String, inputs: [Tensor], backward: @escaping (Tensor) -> [Tensor?]) {
        self.name = name
        self.inputs = inputs
        self.backward = backward
    }
}

final class GradModeState { var disabledDepth = 0 }

/// Whether operations record the autograd graph. Per thread, so that devices training on
/// different threads do not see each other's no-grad scopes.
public enum GradMode {
    nonisolated(unsafe) static let key: pthread_key_t = {
        var k = pthread_key_t()
        pthread_key_create(&k) { p in
            if let p { Unmanaged<GradModeState>.fromOpaque(p).release() }
        }
        return k
    }()

    static var state: GradModeState {
        if let p = pthread_getspecific(key) { return Unmanaged<GradModeState>.fromOpaque(p).takeUnretainedValue() }
        let s = GradModeState()
        pthread_setspecific(key, Unmanaged.passRetained(s).toOpaque())
        return s
    }

    /// True unless inside `withNoGrad`.
    public static var isEnabled: Bool { state.disabledDepth == 0 }
}

/// Runs `body` without recording gradients (inference, optimiser updates, evaluation).
@discardableResult
public func withNoGrad<T>(_ body: () throws -> T) rethrows -> T {
    let s = GradMode.state
    s.disabledDepth += 1
    defer { s.disabledDepth -= 1 }
    return try body()
}

extension Tensor {
    /// Records `self` as produced by an op with `inputs` when any input requires gradients.
    @discardableResult
    func recorded(_ name: String, _ inputs: [Tensor], _ backward: @escaping (Tensor) -> [Tensor?]) -> Tensor {
        guard GradMode.isEnabled, inputs.contains(where: { $0.requiresGrad }) else { return self }
        requiresGrad = true
        node = GradNode(name: name, inputs: inputs, backward: backward)
        return self
    }

    /// A tensor sharing this one's storage, cut off from the autograd graph.
    public func detach() -> Tensor {
        Tensor(storage: storage, shape: shape, strides: strides, offset: offset)
    }

    /// Reverse-mode differentiation from this tensor. Without `gradient` the tensor must hold a
    /// single value (a loss). Gradients are added to the `grad` of every leaf that requires them
    /// (so repeated calls accumulate); the graph is freed afterwards unless `retainGraph`.
    public func backward(_ gradient: Tensor? = nil, retainGraph: Bool = false) {
        precondition(requiresGrad, "backward() on a tensor that does not require gradients")
        let seed: Tensor
        if let gradient {
            precondition(gradient.shape == shape, "backward: gradient shape \(gradient.shape) != tensor shape \(shape)")
            seed = gradient
        } else {
            precondition(count == 1, "backward() without a gradient needs a one-element tensor, got shape \(shape)")
            seed = Tensor(zeros: shape).filled(1)
        }
        // Topological order by iterative depth-first search.
        var order: [Tensor] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(Tensor, Bool)] = [(self, false)]
        while let (t, expanded) = stack.popLast() {
            if expanded { order.append(t); continue }
            if visited.contains(ObjectIdentifier(t)) { continue }
            visited.insert(ObjectIdentifier(t))
            stack.append((t, true))
            if let node = t.node {
                for input in node.inputs where input.requiresGrad && !visited.contains(ObjectIdentifier(input)) {
                    stack.append((input, false))
                }
            }
        }
        var grads: [ObjectIdentifier: Tensor] = [ObjectIdentifier(self): seed]
        // Sums made here for tensors with several consumers. Only these are added to in place:
        // a gradient a rule returned may be shared (add hands g to both inputs) or kept by it.
        var owned = Set<ObjectIdentifier>()
        withNoGrad {
            for t in order.reversed() {
                guard let g = grads.removeValue(forKey: ObjectIdentifier(t)) else { continue }
                owned.remove(ObjectIdentifier(g))   // from here on it may be shared
                guard let node = t.node else {
                    if t.requiresGrad {
                        // A fresh copy: rules may hand the same tensor to several inputs, and grads are
                        // later changed in place (accumulation, clipping).
                        if let existing = t.grad { existing.addInPlace(g) } else { t.grad = g.copyTensor() }
                    }
                    continue
                }
                let inputGrads = node.backward(g)
                precondition(inputGrads.count == node.inputs.count, "backward rule of \(node.name) returned \(inputGrads.count) gradients for \(node.inputs.count) inputs")
                for (input, gi) in zip(node.inputs, inputGrads) {
                    guard input.requiresGrad, let gi else { continue }
                    precondition(gi.shape == input.shape, "backward of \(node.name): gradient shape \(gi.shape) != input shape \(input.shape)")
                    let key = ObjectIdentifier(input)
                    if let acc = grads[key] {
                        if owned.contains(ObjectIdentifier(acc)) && acc.isContiguous && acc.dtype == .float32 {
                            acc.addInPlace(gi)
                        } else {
                            let sum = acc.add(gi)
                            owned.insert(ObjectIdentifier(sum))
                            grads[key] = sum
                        }
                    } else {
                        grads[key] = gi
                    }
                }
                if !retainGraph { t.node = nil; t.requiresGrad = false }
            }
        }
    }

    /// Sets `grad` to nil.
    public func zeroGrad() { grad = nil }

}
