import Foundation
import FrugalCore
import FrugalNN
import FrugalData
import FrugalModels
import FrugalFederated

/// Token sequences of one fixed (maximum) length with labels: ids and masks row-major [count, length].
public struct TokenizedDataset: Sendable {
    public var ids: [Int]
    public var mask: [Int]
    public var labels: [Int]
    public let length: Int
    public let classes: Int
    public var count: Int { labels.count }

    public init(ids: [Int], mask: [Int], labels: [Int], length: Int, classes: Int) throws {
        guard length >= 1, ids.count == labels.count * length, mask.count == ids.count else {
            throw PEFTError("tokenized data: \(ids.count) ids / \(mask.count) mask entries for \(labels.count) sequences of length \(length)")
        }
        if let bad = labels.firstIndex(where: { $0 < 0 || $0 >= classes }) {
            throw PEFTError("tokenized data: label \(labels[bad]) of sequence \(bad) is outside 0..<\(classes)")
        }
        self.ids = ids; self.mask = mask; self.labels = labels; self.length = length; self.classes = classes
    }

    /// Tokenises `texts` with a WordPiece tokenizer, truncated and padded to `maxLength`.
    public init(_ data: TextDataset, tokenizer: WordPieceTokenizer, maxLength: Int) throws {
        let enc = tokenizer.encode(batch: data.texts, maxLength: maxLength, padding: .maxLength, truncation: true)
        try self.init(ids: enc.flatMap(\.ids), mask: enc.flatMap(\.attentionMask), labels: data.labels.map { Int($0) },
                      length: maxLength, classes: data.classes)
    }

    /// Sequences `indices`, trimmed to the longest real sequence among them.
    public func batch(_ indices: [Int]) -> (TokenBatch, [Int]) {
        var len = 1
        for i in indices { for t in stride(from: length - 1, through: 0, by: -1) where mask[i * length + t] != 0 { len = max(len, t + 1); break } }
        var ids: [Int] = [], m: [Int] = []
        ids.reserveCapacity(indices.count * len); m.reserveCapacity(indices.count * len)
        for i in indices {
            ids.append(contentsOf: self.ids[(i * length)..<(i * length + len)])
            m.append(contentsOf: mask[(i * length)..<(i * length + len)])
        }
        return (TokenBatch(ids: ids, mask: m, batch: indices.count, length: len), indices.map { labels[$0] })
    }

    public func subset(_ indices: [Int]) -> TokenizedDataset {
        var out = self
        out.ids = indices.flatMap { ids[($0 * length)..<($0 * length + length)] }
        out.mask = indices.flatMap { mask[($0 * length)..<($0 * length + length)] }
        out.labels = indices.map { labels[$0] }
        return out
    }

    /// Synthetic classification data for tests and the quickstart: each class c has its own set of
    /// "keyword" tokens; a sequence is [CLS]=1, random tokens from a shared pool with a few of its
    /// class's keywords mixed in, padding (0) after a random length.
    public static func synthetic(count: Int, classes: Int, length: Int, vocab: Int, seed: UInt64) throws -> TokenizedDataset {
        guard vocab >= 4 + 2 * classes, length >= 4 else { throw PEFTError("synthetic data: vocab \(vocab) or length \(length) too small") }
        var rng = RNG(seed: seed)
        var ids: [Int] = [], mask: [Int] = [], labels: [Int] = []
        let pool = 2 + 2 * classes   // tokens 2 ..< pool are the classes' keywords, two a class
        for _ in 0..<count {
            let c = rng.int(classes)
            let n = length / 2 + rng.int(length - length / 2 + 1)
            for t in 0..<length {
                if t == 0 { ids.append(1) }
                else if t < n {
                    if rng.uniform() < 0.3 { ids.append(2 + 2 * c + rng.int(2)) }
                    else { ids.append(pool + rng.int(vocab - pool)) }
                } else { ids.append(0) }
                mask.append(t < n ? 1 : 0)
            }
            labels.append(c)
        }
        return try TokenizedDataset(ids: ids, mask: mask, labels: labels, length: length, classes: classes)
    }
}

/// How a step's active layers are drawn from the drop probabilities p_l.
public enum DropoutSampling: String, Sendable, Codable, CaseIterable {
    /// Memory-bounded: Bernoulli(p_l) per layer, drawn again while no layer or more than
    /// maxActive = ⌈Σ_l (1 − p_l)⌉ layers are active, so a step never holds more than maxActive
    /// layers' activations. The realised skip ratio is above the nominal one (6 layers at 0.5:
    /// 2.29 active on average instead of 3).
    case bounded
    /// Plain Bernoulli(p_l) per layer (LayerDrop's stochastic depth): the realised ratio is the
    /// nominal one, but a step may run every layer, so the memory bound is the full depth.
    case bernoulli
}

/// One device's local-training configuration: its layer-dropout vector, the number of bottom
/// layers it leaves frozen (run forward without gradient, their adapters untouched), how the
/// active layers are drawn, and the optional full-depth parts of a round.
///
/// - `fullDepthSteps`: the last n local steps run every layer (the adapters and the head then see
///   the inference-time residual stream); the memory bound becomes the full depth.
/// - `headSteps`: after the local steps, n extra batches run forward at full depth *without*
///   gradient through the encoder and update only the head on those features: the head is fitted
///   to full-depth features at the memory of a forward pass.
/// - `headAtFullDepthOnly`: the head is updated only by steps that ran every layer (full-depth
///   steps, head steps, a dropout draw that skipped nothing); in reduced-depth steps it stays fixed
///   and only the adapters learn, through it.
/// - `measuresProgress`: the task evaluates the full-depth loss of the first batch before and after
///   local training (the bandit's reward); those two forward passes are charged to the device.
public struct PEFTConfiguration: Sendable, Equatable, Codable {
    public var dropout: LayerDropoutConfig
    public var frozenLayers: Int
    public var label: String
    public var sampling: DropoutSampling
    public var fullDepthSteps: Int
    public var headSteps: Int
    public var headAtFullDepthOnly: Bool
    public var measuresProgress: Bool

    public init(dropout: LayerDropoutConfig, frozenLayers: Int = 0, label: String, sampling: DropoutSampling = .bounded,
                fullDepthSteps: Int = 0, headSteps: Int = 0, headAtFullDepthOnly: Bool = false, measuresProgress: Bool = false) {
        self.dropout = dropout
        self.frozenLayers = frozenLayers
        self.label = label
        self.sampling = sampling
        self.fullDepthSteps = max(fullDepthSteps, 0)
        self.headSteps = max(headSteps, 0)
        self.headAtFullDepthOnly = headAtFullDepthOnly
        self.measuresProgress = measuresProgress
    }
    public var layers: Int { dropout.layers }
    /// Whether some layer may be skipped.
    public var dropsLayers: Bool { dropout.probabilities.contains { $0 > 0 } }

    /// The most layers a step runs with gradient storage: ⌈Σ_l (1 − p_l)⌉ for bounded sampling,
    /// every layer for Bernoulli sampling or with full-depth steps.
    public var maxActive: Int {
        if sampling == .bernoulli || (fullDepthSteps > 0 && dropsLayers) { return layers }
        let expected = dropout.probabilities.reduce(0.0) { $0 + 1 - Double($1) }
        return max(Int((expected - 1e-6).rounded(.up)), 1)
    }

    /// One step's active flags (bounded: at least one and at most `maxActive` true).
    func sample(_ drop: inout LayerDropout, _ rng: inout RNG) -> [Bool] {
        if sampling == .bernoulli { return drop.sample() }
        let bound = maxActive
        for _ in 0..<1000 {
            let a = drop.sample()
            let n = a.filter { $0 }.count
            if n >= 1 && n <= bound { return a }
        }
        var a = [Bool](repeating: false, count: layers)
        a[rng.int(layers)] = true
        return a
    }
}

/// Federated text classification with a LoRA-adapted BERT encoder (`BertClassifier`): the
/// travelling parameters are the adapters and the head. Local training uses Adam, stochastic
/// layer dropout and optional frozen bottom layers.
///
/// Work (for the device's clock): per sample Σ_l w_l / L with w_l = 1 for an active trained layer,
/// `forwardOnlyCost` for an active frozen layer or a full-depth pass without gradient (reward
/// probes, head steps), 0 for a skipped one (embeddings and head are negligible and not
/// counted); with `referenceLength` set, a sample counts in proportion to the batch's (trimmed)
/// sequence length over that reference.
///
/// Memory model (`trainingMemory`): the model's weights (frozen base at `basePrecision`, the
/// trainable adapters and head in float32), Adam's state (3x the trainable bytes: gradient, two
/// moments) and batch x (base + maxActive trained layers x per-layer bytes) of activations, where
/// the per-sample base and per-layer bytes are measured (`MemoryStats`) at construction with one
/// step at full and at zero depth at the maximum length. The measured peak of a local training
/// (`LocalTrainingResult.peakMemoryBytes`) is the same weight bytes plus the tensor memory
/// allocated above them during the training (`MemoryStats`: activations, gradients, Adam state,
/// temporaries).
///
/// Progress (the bandit's reward numerator, when the configuration `measuresProgress`): the
/// full-depth loss on the device's first batch before minus after local training.
public final class TextClassificationTask: FederatedTask {
    public typealias Configuration = PEFTConfiguration
    public let model: BertClassifier
    public let layout: TensorLayout
    public let clients: [TokenizedDataset]
    public let test: TokenizedDataset
    public var learningRate: Float
    /// See `FederatedTask.computeCost`: MiniLM at length 64 ≈ 3 GFLOP a training sample, ≈ 20 ms on
    /// a Jetson TX2 (≈ 0.15 TFLOP/s effective), 10x the catalogue's 2 ms LeNet sample.
    public var computeCost: Double = 10
    /// Cost of running a layer forward without gradient relative to training it (LoRA: the
    /// backward pass computes input gradients through the frozen weights, about one more forward,
    /// and the small adapter gradients; so about 1/2).
    public var forwardOnlyCost: Double = 0.5
    /// When set, a sample's work scales with the batch's sequence length over this length.
    public var referenceLength: Int?
    /// Adam's bias correction per tensor, counting only the steps in which the tensor had a
    /// gradient (PyTorch's per-parameter `step`), instead of the optimiser's global step count: a
    /// layer skipped in earlier steps then takes a full first step when it is first active.
    public var perTensorAdamSteps = true
    /// Storage precision counted for the frozen base weights (`float16`/`bfloat16`: the weights
    /// are rounded to it at construction, so the numerics are those of a device storing them in
    /// 16 bits and computing in float32).
    public let basePrecision: DType
    let initial: [Float]
    let segmentLayer: [Int]
    public let weightBytes: Int
    let optimizerBytes: Int
    public private(set) var baseBytesPerSample = 0
    public private(set) var layerBytesPerSample = 0

    public init(model: BertClassifier, clients: [TokenizedDataset], test: TokenizedDataset, learningRate: Float = 1e-3,
                basePrecision: DType = .float32, calibrate: Bool = true) throws {
        guard !clients.isEmpty else { throw PEFTError("no clients") }
        for (k, c) in clients.enumerated() where c.count == 0 { throw PEFTError("client \(k) has no samples") }
        self.model = model
        self.clients = clients
        self.test = test
        self.learningRate = learningRate
        self.basePrecision = basePrecision
        layout = try ModelVector.layout(of: model)
        initial = ModelVector.flatten(model)
        segmentLayer = layout.segments.map { s in
            guard let r = s.name.range(of: "encoder.layer.") else { return -1 }
            return Int(s.name[r.upperBound...].prefix { $0.isNumber }) ?? -1
        }
        let frozen = model.parameters().filter { !$0.requiresGrad }
        if basePrecision != .float32 {
            for t in frozen { Self.round(t, to: basePrecision) }
        }
        let frozenCount = frozen.reduce(0) { $0 + $1.count }
        // With 16-bit storage a device converts one weight matrix at a time to float32 for its GEMM.
        let scratch = basePrecision == .float32 ? 0 : 4 * (frozen.map(\.count).max() ?? 0)
        weightBytes = basePrecision.size * frozenCount + 4 * layout.count + scratch
        optimizerBytes = 3 * 4 * layout.count
        if calibrate { try self.calibrate(batch: 4) }
    }

    /// Rounds a float32 tensor's values to the nearest `dtype` value in place.
    static func round(_ t: Tensor, to dtype: DType) {
        let p = t.pointer
        for i in 0..<t.count {
            switch dtype {
            case .float32: break
            case .float16: p[i] = HalfConversion.f16ToFloat(HalfConversion.floatToF16(p[i]))
            case .bfloat16: p[i] = HalfConversion.bf16ToFloat(HalfConversion.floatToBF16(p[i]))
            }
        }
    }

    public var layers: Int { model.bert.layerCount }
    public var clientCount: Int { clients.count }
    public func initialParameters() -> [Float] { initial }
    public func sampleCount(client: Int) -> Int { clients[client].count }
    /// The layer of each layout segment (-1: the head).
    public var layerOfSegment: [Int] { segmentLayer }

    /// Measures activation bytes per sample (base and per layer) with steps at full and at zero
    /// depth on `batch` sequences of the maximum length.
    func calibrate(batch: Int) throws {
        let data = clients.max { $0.count < $1.count }!
        let idx = (0..<batch).map { $0 % data.count }
        var x = data.batch(idx)
        x.0 = TokenBatch(ids: idx.flatMap { data.ids[($0 * data.length)..<(($0 + 1) * data.length)] },
                         mask: [Int](repeating: 1, count: batch * data.length), batch: batch, length: data.length)
        func peak(_ active: [Bool]) -> Int {
            let base = MemoryStats.live
            MemoryStats.resetPeak()
            let loss = Loss.crossEntropy(forward(x.0, active: active, frozen: 0), x.1)
            loss.backward()
            for p in model.trainableParameters() { p.grad = nil }
            return max(MemoryStats.peak - base, 0)
        }
        model.train()
        // The counters are process-wide: take the median of three readings so that one disturbed
        // by another thread's allocation or release does not decide.
        func median(_ f: () -> Int) -> Int { let v = (0..<3).map { _ in f() }.sorted(); return v[1] }
        let none = median { peak([Bool](repeating: false, count: layers)) }
        let all = median { peak([Bool](repeating: true, count: layers)) }
        baseBytesPerSample = none / batch
        layerBytesPerSample = max(all - none, 0) / (batch * layers)
    }

    public func trainingMemory(_ c: PEFTConfiguration, batchSize: Int) -> Int {
        let trained = max(0, min(c.maxActive, layers - c.frozenLayers))
        let forwardOnly = c.frozenLayers > 0 ? 1 : 0   // one frozen layer's activations at a time
        return weightBytes + optimizerBytes + batchSize * (baseBytesPerSample + (trained + forwardOnly) * layerBytesPerSample)
    }

    /// Mean-pooled last hidden states with layers `active` run, the bottom `frozen` layers without gradient.
    func pooled(_ x: TokenBatch, active: [Bool], frozen: Int) -> Tensor {
        let bert = model.bert
        let bias = x.mask.contains(0) ? Attention.paddingBias(x.mask, batch: x.batch, length: x.length) : nil
        var h = withNoGrad {
            var h = bert.embeddings(x)
            for l in 0..<min(frozen, layers) where active[l] { h = bert.layers[l](h, maskBias: bias) }
            return h
        }
        for l in min(frozen, layers)..<layers where active[l] { h = bert.layers[l](h, maskBias: bias) }
        return Pooling.mean(h, mask: x.mask, batch: x.batch, length: x.length)
    }

    /// Logits with layers `active` run, the bottom `frozen` layers without gradient.
    public func forward(_ x: TokenBatch, active: [Bool], frozen: Int) -> Tensor {
        model.classifier(pooled(x, active: active, frozen: frozen))
    }

    /// Samples x length scale of a batch (see `referenceLength`).
    func tokenScale(_ x: TokenBatch) -> Double {
        referenceLength.map { Double(x.length) / Double($0) } ?? 1
    }

    public func train(client: Int, from start: [Float], configuration c: PEFTConfiguration, batchSize: Int, steps: Int,
                      seed: UInt64) throws -> LocalTrainingResult {
        guard c.layers == layers else { throw PEFTError("configuration has \(c.layers) layers, the model \(layers)") }
        try ModelVector.load(start, into: model, layout: layout)
        let data = clients[client]
        var rng = RNG(seed: seed)
        var drop = LayerDropout(c.dropout, seed: seed ^ 0xD70F)
        var order = rng.permutation(data.count), pos = 0
        func next() -> [Int] {
            (0..<min(batchSize, data.count)).map { _ in
                if pos == order.count { order = rng.permutation(data.count); pos = 0 }
                defer { pos += 1 }
                return order[pos]
            }
        }
        let full = [Bool](repeating: true, count: layers)
        var work = 0.0
        let probe = data.batch(Array(order.prefix(min(batchSize, data.count))))
        func probeLoss() -> Double {
            work += Double(probe.1.count) * forwardOnlyCost * tokenScale(probe.0)
            return Double(withNoGrad { Loss.crossEntropy(forward(probe.0, active: full, frozen: 0), probe.1) }.item)
        }
        model.eval()
        let before = c.measuresProgress ? probeLoss() : 0
        let base = MemoryStats.live
        MemoryStats.resetPeak()
        let params = model.trainableParameters()
        // One optimiser per tensor steps only when that tensor has a gradient (per-tensor bias correction).
        let opts = perTensorAdamSteps ? params.map { Adam([$0], lr: learningRate) } : [Adam(params, lr: learningRate)]
        let head = model.classifier.trainableParameters()
        func step(_ loss: Tensor, head updatesHead: Bool = true) {
            for o in opts { o.zeroGrad() }
            loss.backward()
            if !updatesHead { for p in head { p.grad = nil } }
            for o in opts where o.parameters.contains(where: { $0.grad != nil }) { o.step() }
        }
        model.train()
        var trainedLayer = [Bool](repeating: false, count: layers)
        var samples = 0, lossSum = 0.0
        for s in 0..<steps {
            let (x, y) = data.batch(next())
            let active = s >= steps - c.fullDepthSteps ? full : c.sample(&drop, &rng)
            let loss = Loss.crossEntropy(forward(x, active: active, frozen: c.frozenLayers), y)
            step(loss, head: !c.headAtFullDepthOnly || !active.contains(false))
            lossSum += Double(loss.item) * Double(y.count)
            samples += y.count
            var w = 0.0
            for l in 0..<layers where active[l] {
                if l >= c.frozenLayers { w += 1; trainedLayer[l] = true } else { w += forwardOnlyCost }
            }
            work += Double(y.count) * w / Double(layers) * tokenScale(x)
        }
        for _ in 0..<c.headSteps {
            let (x, y) = data.batch(next())
            let features = withNoGrad { pooled(x, active: full, frozen: layers) }
            step(Loss.crossEntropy(model.classifier(features), y))
            work += Double(y.count) * forwardOnlyCost * tokenScale(x)
        }
        let peak = max(MemoryStats.peak - base, 0) + weightBytes
        model.eval()
        let after = c.measuresProgress ? probeLoss() : 0
        var update = ModelVector.flatten(model)
        for i in update.indices { update[i] -= start[i] }
        let trained = segmentLayer.map { $0 < 0 || trainedLayer[$0] }
        return LocalTrainingResult(update: update, samples: samples, loss: lossSum / Double(max(samples, 1)), work: work,
                                   peakMemoryBytes: peak, trainedSegments: trained, progress: before - after)
    }

    public func evaluate(_ parameters: [Float]) throws -> TaskEvaluation {
        let (correct, _, lossSum) = try evaluatePerClass(parameters)
        let n = Double(max(test.count, 1))
        return TaskEvaluation(accuracy: Double(correct.reduce(0, +)) / n, loss: lossSum.reduce(0, +) / n)
    }

    /// Per test class: correct predictions, samples and summed cross-entropy, at full depth.
    public func evaluatePerClass(_ parameters: [Float]) throws -> (correct: [Int], count: [Int], lossSum: [Double]) {
        try ModelVector.load(parameters, into: model, layout: layout)
        model.eval()
        let full = [Bool](repeating: true, count: layers)
        var correct = [Int](repeating: 0, count: test.classes), count = correct
        var lossSum = [Double](repeating: 0, count: test.classes)
        var i = 0
        while i < test.count {
            let idx = Array(i..<min(i + 64, test.count))
            let (x, y) = test.batch(idx)
            let logits = withNoGrad { forward(x, active: full, frozen: 0) }
            let logp = withNoGrad { logits.logSoftmax(axis: -1) }.array
            let pred = logits.argmax(axis: -1)
            for (r, t) in y.enumerated() {
                count[t] += 1
                if pred[r] == t { correct[t] += 1 }
                lossSum[t] -= Double(logp[r * test.classes + t])
            }
            i += 64
        }
        return (correct, count, lossSum)
    }

    /// Share of each class among `client`'s training samples.
    public func labelMix(client: Int) -> [Double] {
        var n = [Double](repeating: 0, count: test.classes)
        for y in clients[client].labels { n[y] += 1 }
        let total = max(n.reduce(0, +), 1)
        return n.map { $0 / total }
    }

    /// Accuracy with test samples of class c weighted by `mix[c]` (per-class accuracies averaged
    /// with the weights `mix`; classes absent from the test set are left out).
    public static func weightedAccuracy(correct: [Int], count: [Int], mix: [Double]) -> Double {
        var num = 0.0, den = 0.0
        for c in count.indices where count[c] > 0 {
            num += mix[c] * Double(correct[c]) / Double(count[c])
            den += mix[c]
        }
        return den > 0 ? num / den : 0
    }
}
