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

/// One device's local-training configuration: its layer-dropout vector and the number of bottom
/// layers it leaves frozen (run forward without gradient, their adapters untouched).
///
/// Memory-bounded dropout: a step may run at most `maxActive` = ⌈Σ_l (1 − p_l)⌉ layers (the
/// expected number of active layers, rounded up); a step that draws more is drawn again. The
/// configuration's training memory is then bounded by `maxActive` layers' activations; the price is
/// that the realised fraction of skipped layers is somewhat above the nominal ratio (e.g. 6 layers
/// at ratio 0.5: ≤ 3 active, 2.29 on average instead of 3).
public struct PEFTConfiguration: Sendable, Equatable {
    public var dropout: LayerDropoutConfig
    public var frozenLayers: Int
    public var label: String
    public let maxActive: Int

    public init(dropout: LayerDropoutConfig, frozenLayers: Int = 0, label: String) {
        self.dropout = dropout
        self.frozenLayers = frozenLayers
        self.label = label
        // ceil of the expected number of active layers, Σ (1 − p_l).
        let expected = dropout.probabilities.reduce(0.0) { $0 + 1 - Double($1) }
        let m = Int((expected - 1e-6).rounded(.up))
        maxActive = max(m, 1)
    }
    public var layers: Int { dropout.layers }

    /// One step's active flags (at most `maxActive` true; at least one).
    func sample(_ drop: inout LayerDropout, _ rng: inout RNG) -> [Bool] {
        for _ in 0..<1000 {
            let a = drop.sample()
            let n = a.filter { $0 }.count
            if n >= 1 && n <= maxActive { return a }
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
/// 1/3 for an active frozen layer (forward only), 0 for a skipped one (embeddings and head are
/// negligible and not counted). Memory model (`trainingMemory`): the model's parameter bytes, Adam's
/// state (3x the trainable bytes) and batch x (base + maxActive trained layers x per-layer bytes)
/// of activations, where the per-sample base and per-layer bytes are measured (`MemoryStats`) at
/// construction with one step at full and at zero depth at the maximum length.
/// Progress (the bandit's reward numerator): the full-depth loss on the device's first batch
/// before minus after local training.
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
    let initial: [Float]
    let segmentLayer: [Int]
    let weightBytes: Int, optimizerBytes: Int
    public private(set) var baseBytesPerSample = 0
    public private(set) var layerBytesPerSample = 0

    public init(model: BertClassifier, clients: [TokenizedDataset], test: TokenizedDataset, learningRate: Float = 1e-3,
                calibrate: Bool = true) throws {
        guard !clients.isEmpty else { throw PEFTError("no clients") }
        for (k, c) in clients.enumerated() where c.count == 0 { throw PEFTError("client \(k) has no samples") }
        self.model = model
        self.clients = clients
        self.test = test
        self.learningRate = learningRate
        layout = try ModelVector.layout(of: model)
        initial = ModelVector.flatten(model)
        segmentLayer = layout.segments.map { s in
            guard let r = s.name.range(of: "encoder.layer.") else { return -1 }
            return Int(s.name[r.upperBound...].prefix { $0.isNumber }) ?? -1
        }
        weightBytes = model.parameters().reduce(0) { $0 + 4 * $1.count }
        optimizerBytes = 3 * 4 * layout.count
        if calibrate { try self.calibrate(batch: 4) }
    }

    public var layers: Int { model.bert.layerCount }
    public var clientCount: Int { clients.count }
    public func initialParameters() -> [Float] { initial }
    public func sampleCount(client: Int) -> Int { clients[client].count }
    /// The layer of each layout segment (-1: the head).
    public var layerOfSegment: [Int] { segmentLayer }

    /// Measures activation bytes per sample (base and per layer) with one step at full and at zero
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
        let none = peak([Bool](repeating: false, count: layers))
        let all = peak([Bool](repeating: true, count: layers))
        baseBytesPerSample = none / batch
        layerBytesPerSample = max(all - none, 0) / (batch * layers)
    }

    public func trainingMemory(_ c: PEFTConfiguration, batchSize: Int) -> Int {
        let trained = max(0, min(c.maxActive, layers - c.frozenLayers))
        let forwardOnly = c.frozenLayers > 0 ? 1 : 0   // one frozen layer's activations at a time
        return weightBytes + optimizerBytes + batchSize * (baseBytesPerSample + (trained + forwardOnly) * layerBytesPerSample)
    }

    /// Logits with layers `active` run, the bottom `frozen` layers without gradient.
    public func forward(_ x: TokenBatch, active: [Bool], frozen: Int) -> Tensor {
        let bert = model.bert
        let bias = x.mask.contains(0) ? Attention.paddingBias(x.mask, batch: x.batch, length: x.length) : nil
        var h = withNoGrad {
            var h = bert.embeddings(x)
            for l in 0..<min(frozen, layers) where active[l] { h = bert.layers[l](h, maskBias: bias) }
            return h
        }
        for l in min(frozen, layers)..<layers where active[l] { h = bert.layers[l](h, maskBias: bias) }
        return model.classifier(Pooling.mean(h, mask: x.mask, batch: x.batch, length: x.length))
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
        let probe = data.batch(Array(order.prefix(min(batchSize, data.count))))
        let full = [Bool](repeating: true, count: layers)
        let before = Double(withNoGrad { Loss.crossEntropy(forward(probe.0, active: full, frozen: 0), probe.1) }.item)
        let base = MemoryStats.live
        MemoryStats.resetPeak()
        let opt = Adam(model.trainableParameters(), lr: learningRate)
        model.train()
        var trainedLayer = [Bool](repeating: false, count: layers)
        var samples = 0, work = 0.0, lossSum = 0.0
        for _ in 0..<steps {
            let (x, y) = data.batch(next())
            let active = c.sample(&drop, &rng)
            let loss = Loss.crossEntropy(forward(x, active: active, frozen: c.frozenLayers), y)
            opt.zeroGrad()
            loss.backward()
            opt.step()
            lossSum += Double(loss.item) * Double(y.count)
            samples += y.count
            var w = 0.0
            for l in 0..<layers where active[l] {
                if l >= c.frozenLayers { w += 1; trainedLayer[l] = true } else { w += 1.0 / 3 }
            }
            work += Double(y.count) * w / Double(layers)
        }
        let peak = max(MemoryStats.peak - base, 0) + weightBytes
        model.eval()
        let after = Double(withNoGrad { Loss.crossEntropy(forward(probe.0, active: full, frozen: 0), probe.1) }.item)
        var update = ModelVector.flatten(model)
        for i in update.indices { update[i] -= start[i] }
        let trained = segmentLayer.map { $0 < 0 || trainedLayer[$0] }
        return LocalTrainingResult(update: update, samples: samples, loss: lossSum / Double(max(samples, 1)), work: work,
                                   peakMemoryBytes: peak, trainedSegments: trained, progress: before - after)
    }

    public func evaluate(_ parameters: [Float]) throws -> TaskEvaluation {
        try ModelVector.load(parameters, into: model, layout: layout)
        model.eval()
        let full = [Bool](repeating: true, count: layers)
        var correct = 0, lossSum = 0.0
        var i = 0
        while i < test.count {
            let idx = Array(i..<min(i + 64, test.count))
            let (x, y) = test.batch(idx)
            let logits = withNoGrad { forward(x, active: full, frozen: 0) }
            lossSum += Double(withNoGrad { Loss.crossEntropy(logits, y) }.item) * Double(y.count)
            for (p, t) in zip(logits.argmax(axis: -1), y) where p == t { correct += 1 }
            i += 64
        }
        return TaskEvaluation(accuracy: Double(correct) / Double(max(test.count, 1)), loss: lossSum / Double(max(test.count, 1)))
    }
}
