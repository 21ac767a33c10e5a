import Testing
@testable import FrugalCore

/// Checks the analytic gradients of `f` at `inputs` against central finite differences of the
/// scalar loss L = Σ f(inputs) ⊙ W for a fixed random W (so every output element matters).
func gradCheck(_ name: String, _ inputs: [Tensor], eps: Float = 1e-2, tol: Float = 2e-2,
               sourceLocation: SourceLocation = #_sourceLocation, _ f: ([Tensor]) -> Tensor) {
    var rng = RNG(seed: 1234)
    for x in inputs { x.requiresGrad = true; x.grad = nil }
    let probe = withNoGrad { f(inputs) }
    let w = Tensor.uniform(probe.shape, -1, 1, rng: &rng)
    func loss() -> Float { withNoGrad { (f(inputs) * w).sum().item } }
    let out = f(inputs)
    (out * w).sum().backward()
    for (k, x) in inputs.enumerated() {
        let analytic = x.grad?.array ?? [Float](repeating: 0, count: x.count)
        let p = x.pointer
        var maxErr: Float = 0, maxRef: Float = 1e-3
        for i in 0..<x.count {
            let orig = p[i]
            p[i] = orig + eps
            let lp = loss()
            p[i] = orig - eps
            let lm = loss()
            p[i] = orig
            let numeric = (lp - lm) / (2 * eps)
            maxErr = max(maxErr, abs(numeric - analytic[i]))
            maxRef = max(maxRef, abs(numeric))
        }
        #expect(maxErr <= tol * max(1, maxRef), "\(name): input \(k) max abs error \(maxErr) (scale \(maxRef))", sourceLocation: sourceLocation)
    }
}

func rand(_ shape: [Int], seed: UInt64, lo: Float = -1, hi: Float = 1) -> Tensor {
    var rng = RNG(seed: seed)
    return Tensor.uniform(shape, lo, hi, rng: &rng)
}

/// Values away from 0 (for ops with kinks or poles there).
func randAway(_ shape: [Int], seed: UInt64) -> Tensor {
    var rng = RNG(seed: seed)
    let t = Tensor(zeros: shape)
    for i in 0..<t.count { let v = rng.uniform(0.3, 1.5); t.pointer[i] = rng.bernoulli(0.5) ? v : -v }
    return t
}

func expectClose(_ a: [Float], _ b: [Float], tol: Float = 1e-5, _ what: String = "", sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(a.count == b.count, "\(what): \(a.count) vs \(b.count) values", sourceLocation: sourceLocation)
    var worst: Float = 0
    for (x, y) in zip(a, b) { worst = max(worst, abs(x - y) / max(1, abs(y))) }
    #expect(worst <= tol, "\(what): max relative error \(worst)", sourceLocation: sourceLocation)
}
