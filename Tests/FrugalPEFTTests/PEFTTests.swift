import Foundation
import Testing
@testable import FrugalPEFT
import FrugalCore
import FrugalNN
import FrugalModels

/// A small random BERT (2 layers, hidden 16) and a batch with padding.
func tinyBert(seed: UInt64 = 0, layers: Int = 2) -> BertModel {
    var rng = RNG(seed: seed)
    let c = BertConfig(vocabSize: 40, hiddenSize: 16, numHiddenLayers: layers, numAttentionHeads: 2, intermediateSize: 32,
                       maxPositionEmbeddings: 16)
    let m = BertModel(config: c, rng: &rng)
    m.freeze()
    return m
}
let tinyBatch = TokenBatch(ids: [1, 5, 7, 9, 2, 0, 1, 3, 4, 6, 8, 2], mask: [1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1], batch: 2, length: 6)

func tinyLlama(seed: UInt64 = 0) -> LlamaForCausalLM {
    var rng = RNG(seed: seed)
    let c = LlamaConfig(vocabSize: 30, hiddenSize: 16, intermediateSize: 24, numHiddenLayers: 3, numAttentionHeads: 4,
                        numKeyValueHeads: 2, tieWordEmbeddings: true)
    let m = LlamaForCausalLM(config: c, rng: &rng)
    m.freeze()
    return m
}

/// Gives every adapter's B random values (B starts at zero, which would hide merge errors).
func randomizeB(_ m: Module, seed: UInt64) {
    var rng = RNG(seed: seed)
    for (_, a) in LoRA.adapters(in: m) { withNoGrad { a.loraB.assign(Tensor.normal(a.loraB.shape, std: 0.3, rng: &rng)) } }
}

func maxDiff(_ a: Tensor, _ b: Tensor) -> Float { zip(a.array, b.array).reduce(0) { max($0, abs($1.0 - $1.1)) } }

@Suite struct LoRATests {
    @Test func injectionFreezesBaseAndTrainsAdaptersAndHead() {
        let bert = tinyBert()
        var rng = RNG(seed: 1)
        LoRA.inject(into: bert, LoRAConfig(rank: 4, alpha: 8), rng: &rng)
        let clf = BertClassifier(bert: bert, classes: 3, rng: &rng)
        #expect(LoRA.adapters(in: clf).count == 2 * 4)
        let trainable = clf.namedParameters().filter { $0.1.requiresGrad }.map(\.0)
        #expect(trainable.count == 2 * 4 * 2 + 2)
        #expect(trainable.allSatisfy { $0.hasSuffix("lora_a") || $0.hasSuffix("lora_b") || $0.hasPrefix("classifier.") })
        #expect(trainable.contains("bert.encoder.layer.0.attention.self.query.lora_a"))
        // Adapters start as the identity change: outputs equal the base model's.
        let plain = tinyBert()
        #expect(maxDiff(withNoGrad { bert(tinyBatch) }, withNoGrad { plain(tinyBatch) }) == 0)

        let mlp = tinyBert()
        LoRA.inject(into: mlp, LoRAConfig(rank: 2, targets: .attentionAndMLP), rng: &rng)
        #expect(LoRA.adapters(in: mlp).count == 2 * 6)
        let llama = tinyLlama()
        LoRA.inject(into: llama, LoRAConfig(rank: 2, targets: .attentionAndMLP), rng: &rng)
        #expect(LoRA.adapters(in: llama).count == 3 * 7)
        #expect(llama.trainableParameters().count == 3 * 7 * 2)
    }

    @Test func trainingStepUpdatesOnlyAdaptersAndHead() {
        let bert = tinyBert()
        var rng = RNG(seed: 2)
        LoRA.inject(into: bert, LoRAConfig(rank: 4, alpha: 8), rng: &rng)
        let clf = BertClassifier(bert: bert, classes: 2, rng: &rng)
        let before = clf.stateDict().mapValues { $0.copyTensor() }
        let opt = Adam(clf.trainableParameters(), lr: 1e-2)
        for _ in 0..<3 {
            opt.zeroGrad()
            Loss.crossEntropy(clf(tinyBatch), [0, 1]).backward()
            opt.step()
        }
        for (name, t) in clf.stateDict() {
            let changed = maxDiff(t, before[name]!) > 0
            let shouldChange = t.requiresGrad
            #expect(changed == shouldChange, "\(name)")
        }
    }

    @Test func saveAndLoadAdapters() throws {
        let bert = tinyBert()
        var rng = RNG(seed: 3)
        let cfg = LoRAConfig(rank: 4, alpha: 8, targets: .attentionAndMLP)
        LoRA.inject(into: bert, cfg, rng: &rng)
        let clf = BertClassifier(bert: bert, classes: 2, rng: &rng)
        randomizeB(clf, seed: 4)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("frugal-lora-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try LoRA.save(clf, config: cfg, to: url)
        #expect(try Checkpoint.load(url).count == 2 * 6 * 2 + 2)

        let other = tinyBert()
        var rng2 = RNG(seed: 99)
        LoRA.inject(into: other, cfg, rng: &rng2)
        let clf2 = BertClassifier(bert: other, classes: 2, rng: &rng2)
        #expect(maxDiff(withNoGrad { clf(tinyBatch) }, withNoGrad { clf2(tinyBatch) }) > 1e-3)
        try LoRA.load(into: clf2, from: url)
        #expect(maxDiff(withNoGrad { clf(tinyBatch) }, withNoGrad { clf2(tinyBatch) }) == 0)

        // A model with other targets rejects the file, naming it.
        let att = tinyBert()
        LoRA.inject(into: att, LoRAConfig(rank: 4), rng: &rng2)
        let clf3 = BertClassifier(bert: att, classes: 2, rng: &rng2)
        #expect { try LoRA.load(into: clf3, from: url) } throws: { "\($0)".contains(url.lastPathComponent) }
    }

    @Test func mergeGivesIdenticalOutputs() {
        let bert = tinyBert()
        var rng = RNG(seed: 5)
        LoRA.inject(into: bert, LoRAConfig(rank: 4, alpha: 8, targets: .attentionAndMLP), rng: &rng)
        let clf = BertClassifier(bert: bert, classes: 2, rng: &rng)
        randomizeB(clf, seed: 6)
        let adapted = withNoGrad { clf(tinyBatch) }
        let base = bert.layers[0].attention.selfAttention.query as! LoRALinear
        let w0 = base.base.weight.copyTensor()
        LoRA.merge(clf)
        #expect(maxDiff(base.base.weight, w0) > 1e-3)
        #expect(maxDiff(withNoGrad { clf(tinyBatch) }, adapted) < 1e-5)
        LoRA.unmerge(clf)
        #expect(maxDiff(base.base.weight, w0) < 1e-6)

        let llama = tinyLlama()
        LoRA.inject(into: llama, LoRAConfig(rank: 2, alpha: 4), rng: &rng)
        randomizeB(llama, seed: 7)
        let x = TokenBatch(ids: [1, 4, 9, 16, 25], batch: 1, length: 5)
        let y = withNoGrad { llama(x) }
        LoRA.merge(llama)
        #expect(maxDiff(withNoGrad { llama(x) }, y) < 1e-5)
    }
}

@Suite struct LayerDropoutTests {
    @Test func familiesHaveTheOverallRatio() {
        for family in LayerDropoutFamily.allCases {
            for ratio: Float in [0, 0.25, 0.5, 0.75, 0.9] {
                let c = LayerDropoutConfig(family, layers: 6, ratio: ratio)
                #expect(abs(c.overallRatio - ratio) < 1e-5, "\(family) \(ratio): \(c)")
                #expect(c.probabilities.allSatisfy { $0 >= 0 && $0 <= 1 })
            }
        }
        let inc = LayerDropoutConfig(.increasing, layers: 6, ratio: 0.5).probabilities
        #expect(zip(inc, inc.dropFirst()).allSatisfy { $0 < $1 })
        // p_l = r · 2l / (L + 1): with L = 6, r = 0.5 → l/7.
        for (i, p) in inc.enumerated() { #expect(abs(p - Float(i + 1) / 7) < 1e-6) }
        let dec = LayerDropoutConfig(.decreasing, layers: 6, ratio: 0.5).probabilities
        #expect(dec == inc.reversed())
        // Capped: r = 0.9 increasing has p_6 = 1 and still mean 0.9.
        #expect(LayerDropoutConfig(.increasing, layers: 6, ratio: 0.9).probabilities.last == 1)
    }

    @Test func seededSamplingIsReproducibleAndHasTheExpectedRatio() {
        let c = LayerDropoutConfig(.increasing, layers: 6, ratio: 0.5)
        var a = LayerDropout(c, seed: 11), b = LayerDropout(c, seed: 11), other = LayerDropout(c, seed: 12)
        let sa = (0..<50).map { _ in a.sample() }, sb = (0..<50).map { _ in b.sample() }, so = (0..<50).map { _ in other.sample() }
        #expect(sa == sb)
        #expect(sa != so)
        var d = LayerDropout(c, seed: 3)
        let n = 20000
        var skipped = [Int](repeating: 0, count: 6)
        for _ in 0..<n { for (l, on) in d.sample().enumerated() where !on { skipped[l] += 1 } }
        let total = Float(skipped.reduce(0, +)) / Float(n * 6)
        #expect(abs(total - 0.5) < 0.01)
        for l in 0..<6 { #expect(abs(Float(skipped[l]) / Float(n) - c.probabilities[l]) < 0.02) }
        var none = LayerDropout(.none(layers: 6), seed: 1)
        #expect((0..<100).allSatisfy { _ in none.sample().allSatisfy { $0 } })
    }

    @Test func skippedLayersGetNoGradientAndCostNothing() {
        let bert = tinyBert(layers: 4)
        var rng = RNG(seed: 8)
        LoRA.inject(into: bert, LoRAConfig(rank: 4, alpha: 8, targets: .attentionAndMLP), rng: &rng)
        let clf = BertClassifier(bert: bert, classes: 2, rng: &rng)
        randomizeB(clf, seed: 9)
        let active = [true, false, true, false]
        Loss.crossEntropy(clf(tinyBatch, activeLayers: active), [1, 0]).backward()
        for (name, a) in LoRA.adapters(in: clf) {
            let layer = Int(name.split(separator: ".")[3])!
            #expect((a.loraA.grad != nil) == active[layer], "\(name)")
            #expect((a.loraB.grad != nil) == active[layer], "\(name)")
        }
        #expect(clf.classifier.weight.grad != nil)
        // Skipping layers 1 and 3 equals running a model made of layers 0 and 2 only.
        let y = withNoGrad { clf(tinyBatch, activeLayers: active) }
        var h = withNoGrad { bert.embeddings(tinyBatch) }
        let bias = Attention.paddingBias(tinyBatch.mask, batch: 2, length: 6)
        withNoGrad { h = bert.layers[2](bert.layers[0](h, maskBias: bias), maskBias: bias) }
        let y2 = withNoGrad { clf.classifier(Pooling.mean(h, mask: tinyBatch.mask, batch: 2, length: 6)) }
        #expect(maxDiff(y, y2) < 1e-6)
    }

    @Test func llamaLayerDropoutSkipsLayers() {
        let llama = tinyLlama()
        var rng = RNG(seed: 10)
        LoRA.inject(into: llama, LoRAConfig(rank: 2, alpha: 4), rng: &rng)
        randomizeB(llama, seed: 11)
        let x = TokenBatch(ids: [1, 4, 9, 16, 25], batch: 1, length: 5)
        let active = [false, true, false]
        let logits = llama(x, activeLayers: active)
        Loss.crossEntropy(logits.reshaped([5, 30]), [4, 9, 16, 25, 1]).backward()
        for (name, a) in LoRA.adapters(in: llama) {
            let layer = Int(name.split(separator: ".")[2])!
            #expect((a.loraA.grad != nil) == active[layer], "\(name)")
        }
    }
}
