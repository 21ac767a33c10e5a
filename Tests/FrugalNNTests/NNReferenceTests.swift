import Foundation
import Testing
@testable import FrugalNN

// Reference values from scripts/make_nn_reference.py (PyTorch 2.15).
@Suite struct LossReferenceTests {
    let logits: [Float] = [1.0, -0.5, 2.0, 0.3, 0.2, 0.1, -1.0, 1.5, -0.7, 2.2, 0.4, 0.0]

    @Test func crossEntropyVariants() {
        let x = Tensor(logits, shape: [3, 4], requiresGrad: true)
        expectClose([Loss.crossEntropy(x, [2, 3, 1]).item], [0.41566327], tol: 1e-6, "ce")
        let l = Loss.crossEntropy(x, [2, 3, 1], weights: [0.5, 1, 2, 1.5], labelSmoothing: 0.1)
        expectClose([l.item], [0.5455423], tol: 1e-6, "ce weighted smoothed")
        l.backward()
        expectClose(x.grad!.array, [0.09361203, 0.01595192, -0.1490964, 0.03953243, 0.05301106, 0.04492427, 0.00569216, -0.10362752, 0.00663761, -0.03443883, 0.01717429, 0.01062694], tol: 1e-6, "ce grad")
        expectClose([Loss.crossEntropy(x, [2, -100, 1], ignoreIndex: -100).item], [0.38811392], tol: 1e-6, "ce ignore")
    }

    @Test func binaryLosses() {
        expectClose([Loss.bce(Tensor([0.2, 0.9, 0.5]), Tensor([0, 1, 1])).item], [0.34055042], tol: 1e-6, "bce")
        expectClose([Loss.bceWithLogits(Tensor([-2, 0.5, 3]), Tensor([0, 1, 1])).item], [0.2165308], tol: 1e-6, "bce logits")
        #expect(Loss.mse(Tensor([1, 2]), Tensor([0, 4])).item == 2.5)
        #expect(Loss.accuracy(Tensor([0.1, 0.9, 0.8, 0.2], shape: [2, 2]), [1, 1]) == 0.5)
    }
}

@Suite struct OptimizerReferenceTests {
    func run(_ make: ([Tensor]) -> any Optimizer) -> [Float] {
        let p = Tensor([1, -2, 0.5], requiresGrad: true)
        let opt = make([p])
        for i in 0..<3 {
            opt.zeroGrad()
            let loss = (p * p * Tensor([1, 2, 3])).sum() + p.sum() * Float(i)
            loss.backward()
            opt.step()
        }
        return p.array
    }

    @Test func matchPyTorch() {
        expectClose(run { SGD($0, lr: 0.1) }, [0.23200002, -0.69200003, -0.208], tol: 1e-6, "sgd")
        expectClose(run { SGD($0, lr: 0.1, momentum: 0.9, weightDecay: 0.01) }, [-0.3117058, 0.73459285, -0.7573635], tol: 1e-6, "sgd momentum")
        expectClose(run { SGD($0, lr: 0.1, momentum: 0.9, nesterov: true) }, [-0.68715203, 0.35999194, -0.58643198], tol: 1e-6, "nesterov")
        expectClose(run { Adam($0, lr: 0.1, weightDecay: 0.1) }, [0.70096433, -1.70375085, 0.19950907], tol: 1e-6, "adam")
        expectClose(run { AdamW($0, lr: 0.1, weightDecay: 0.1) }, [0.6743803, -1.64783013, 0.18764703], tol: 1e-6, "adamw")
    }

    @Test func stateRoundTripGivesIdenticalContinuation() throws {
        func train(_ p: Tensor, _ opt: Adam, steps: Int) {
            for _ in 0..<steps { opt.zeroGrad(); (p * p * p).sum().backward(); opt.step() }
        }
        let a = Tensor([0.5, -1, 2], requiresGrad: true)
        let optA = Adam([a], lr: 0.05)
        train(a, optA, steps: 6)
        let b = Tensor([0.5, -1, 2], requiresGrad: true)
        let optB = Adam([b], lr: 0.05)
        train(b, optB, steps: 3)
        let saved = optB.stateDict().mapValues { $0.copyTensor() }
        let b2 = Tensor(b.array, requiresGrad: true)
        let optB2 = Adam([b2], lr: 0.05)
        try optB2.loadStateDict(saved)
        train(b2, optB2, steps: 3)
        #expect(b2.array == a.array)
    }

    @Test func schedulesAndClipping() {
        let c = CosineSchedule(base: 1, total: 10)
        #expect(c.rate(at: 0) == 1 && abs(c.rate(at: 5) - 0.5) < 1e-6 && c.rate(at: 10) < 1e-6)
        let s = StepSchedule(base: 1, every: 3, gamma: 0.5)
        #expect(s.rate(at: 2) == 1 && s.rate(at: 3) == 0.5 && s.rate(at: 7) == 0.25)
        let w = WarmupSchedule(warmup: 4, then: c)
        #expect(w.rate(at: 0) == 0.25 && w.rate(at: 3) == 1 && w.rate(at: 4) == 1)
        let p = Tensor([0, 0], requiresGrad: true)
        p.grad = Tensor([3, 4])
        #expect(clipGradNorm([p], maxNorm: 1) == 5)
        expectClose(p.grad!.array, [0.6, 0.8], tol: 1e-5, "clipped")
    }
}

@Suite struct ModuleTests {
    final class Net: Module, @unchecked Sendable {
        let fc1: Linear, fc2: Linear, norm: LayerNorm
        let blocks: [Module]
        init(rng: inout RNG) {
            fc1 = Linear(4, 8, rng: &rng); fc2 = Linear(8, 2, bias: false, rng: &rng); norm = LayerNorm(8)
            blocks = [Linear(2, 2, rng: &rng), RMSNorm(2)]
        }
    }

    @Test func namesStateDictAndFreezing() throws {
        var rng = RNG(seed: 1)
        let net = Net(rng: &rng)
        let names = net.namedParameters().map(\.0)
        #expect(names == ["fc1.weight", "fc1.bias", "fc2.weight", "norm.weight", "norm.bias", "blocks.0.weight", "blocks.0.bias", "blocks.1.weight"])
        #expect(net.parameterCount == 4 * 8 + 8 + 16 + 16 + 4 + 2 + 2)
        var rng2 = RNG(seed: 2)
        let other = Net(rng: &rng2)
        try other.loadStateDict(net.stateDict())
        #expect(other.fc1.weight.array == net.fc1.weight.array)
        #expect(throws: ModuleError.self) { try other.loadStateDict(["fc1.weight": Tensor.zeros([8, 4])]) }
        var bad = net.stateDict(); bad["fc2.weight"] = Tensor.zeros([3, 3])
        #expect(throws: ModuleError.self) { try other.loadStateDict(bad) }
        net.freeze { $0.hasPrefix("fc1") }
        #expect(net.trainableParameters().count == 6)
    }

    @Test func loraStartsAtBaseMergesAndUnmerges() {
        var rng = RNG(seed: 4)
        let base = Linear(6, 5, rng: &rng)
        let x = Tensor.uniform([3, 6], -1, 1, rng: &rng)
        let y0 = base(x).array
        let lora = LoRALinear(wrapping: base, rank: 2, alpha: 4, rng: &rng)
        expectClose(lora(x).array, y0, tol: 1e-6, "B = 0 at init")
        #expect(!base.weight.requiresGrad && lora.trainableParameters().count == 2)
        lora.loraB.assign(Tensor.uniform([5, 2], -1, 1, rng: &rng))
        let yAdapted = lora(x).array
        lora.merge()
        expectClose(lora(x).array, yAdapted, tol: 1e-5, "merged equals adapted")
        expectClose(x.linear(weight: base.weight, bias: base.bias).array, yAdapted, tol: 1e-5, "base weight holds the update")
        lora.unmerge()
        expectClose(base(x).array, y0, tol: 1e-5, "unmerged restores base")
        // Gradients reach only the adapters.
        let l = lora(x).sum()
        l.backward()
        #expect(lora.loraA.grad != nil && lora.loraB.grad != nil && base.weight.grad == nil)
    }

    @Test func attentionMasksAndGroupedHeads() {
        var rng = RNG(seed: 9)
        let attn = MultiHeadAttention(dModel: 8, heads: 4, kvHeads: 2, rope: RoPE(headDim: 2), rng: &rng)
        let x = Tensor.uniform([1, 5, 8], -1, 1, rng: &rng)
        let full = attn(x, causal: true)
        // Causality: the first 3 outputs do not depend on later tokens.
        let prefix = attn(x.slice(axis: 1, 0, 3), causal: true)
        expectClose(full.slice(axis: 1, 0, 3).array, prefix.array, tol: 1e-5, "causal prefix")
        // Incremental decoding with a KV cache equals the full pass.
        let cache = KVCache()
        var steps: [Tensor] = []
        for t in 0..<5 { steps.append(attn(x.slice(axis: 1, t, t + 1), causal: true, cache: cache)) }
        expectClose(Tensor.concat(steps, axis: 1).array, full.array, tol: 1e-5, "kv cache")
        // Padding: masked keys are ignored.
        let mask = Tensor([1, 1, 1, 0, 0], shape: [1, 5])
        let padded = attn(x, paddingMask: mask)
        let short = attn(x.slice(axis: 1, 0, 3))
        expectClose(padded.slice(axis: 1, 0, 3).array, short.array, tol: 1e-5, "padding mask")
        gradCheckNN([x.contiguous().copyTensor()]) { attn($0[0], causal: true) }
    }
}

/// Finite-difference check of input gradients for a module output.
func gradCheckNN(_ inputs: [Tensor], eps: Float = 1e-2, tol: Float = 2e-2, sourceLocation: SourceLocation = #_sourceLocation, _ f: ([Tensor]) -> Tensor) {
    var rng = RNG(seed: 77)
    for x in inputs { x.requiresGrad = true; x.grad = nil }
    let w = Tensor.uniform(withNoGrad { f(inputs) }.shape, -1, 1, rng: &rng)
    (f(inputs) * w).sum().backward()
    for x in inputs {
        let analytic = x.grad!.array
        var worst: Float = 0
        for i in 0..<x.count {
            let o = x.pointer[i]
            x.pointer[i] = o + eps; let lp = withNoGrad { (f(inputs) * w).sum().item }
            x.pointer[i] = o - eps; let lm = withNoGrad { (f(inputs) * w).sum().item }
            x.pointer[i] = o
            worst = max(worst, abs((lp - lm) / (2 * eps) - analytic[i]))
        }
        #expect(worst < tol, "max gradient error \(worst)", sourceLocation: sourceLocation)
    }
}

@Suite struct CheckpointTests {
    @Test func moduleAndOptimizerRoundTripThroughSafetensors() throws {
        var rng = RNG(seed: 12)
        let a = ModuleTests.Net(rng: &rng)
        let opt = Adam(a.parameters(), lr: 0.01)
        for p in a.parameters() { p.grad = Tensor.ones(p.shape) }
        opt.step()
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("frugal-ckpt-\(UInt64.random(in: 0...UInt64.max)).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try Checkpoint.save(a, optimizer: opt, to: url)
        var rng2 = RNG(seed: 13)
        let b = ModuleTests.Net(rng: &rng2)
        let opt2 = Adam(b.parameters(), lr: 0.01)
        try Checkpoint.load(into: b, optimizer: opt2, from: url)
        for ((n, p), (_, q)) in zip(a.namedParameters(), b.namedParameters()) { #expect(p.array == q.array, "\(n)") }
        #expect(opt2.stepCount == 1)
        // Half-precision tensors keep their dtype when asked.
        let half = Tensor([1.5, -2, 0.25]).converted(to: .bfloat16)
        try Checkpoint.save(["h": half], to: url)
        let back = try Checkpoint.load(url, keepDType: true)["h"]!
        #expect(back.dtype == .bfloat16 && back.array == [1.5, -2, 0.25])
    }
}
