import Foundation
import FrugalCore
import FrugalNN
import FrugalData
import FrugalModels

/// Settings of retraining a genotype's network from scratch.
public struct RetrainConfig: Codable, Sendable, Equatable {
    public var model = DARTSConfig()
    public var epochs = 20
    public var batchSize = 64
    public var learningRate: Float = 0.025
    public var momentum: Float = 0.9
    public var weightDecay: Float = 3e-4
    public var gradClip: Float = 5
    /// Deferred re-weighting (Cao et al., 2019): from epoch `drwEpoch` on (0-based), the loss
    /// weights classes by 1/effective number, w_c ∝ (1−β)/(1−β^{n_c}), normalised to sum to C.
    public var drwEpoch: Int? = nil
    public var drwBeta: Double = 0.9999
    public var seed: UInt64 = 0
    public init() {}
}

/// Balanced-test-set accuracies of a classifier on a long-tailed task.
public struct LongTailEvaluation: Codable, Sendable, Equatable {
    public var overall: Double
    public var perClass: [Double]
    /// Mean per-class accuracy over the many-shot (CIFAR10-LT: 0-2), medium (3-6), few-shot (7-9) classes.
    public var many: Double, medium: Double, few: Double

    /// Groups by class index: the first 30% of classes are many-shot, the last 30% few-shot.
    public init(overall: Double, perClass: [Double]) {
        self.overall = overall
        self.perClass = perClass
        let c = perClass.count
        let a = Int((Double(c) * 0.3).rounded()), b = c - a
        func mean(_ r: Range<Int>) -> Double { r.isEmpty ? 0 : r.map { perClass[$0] }.reduce(0, +) / Double(r.count) }
        many = mean(0..<a); medium = mean(a..<b); few = mean(b..<c)
    }
}

/// Class weights of deferred re-weighting: (1−β)/(1−β^{n_c}), normalised to sum to the class count.
public func effectiveNumberWeights(_ counts: [Int], beta: Double) -> [Float] {
    let raw = counts.map { n -> Double in n == 0 ? 0 : (1 - beta) / (1 - Foundation.pow(beta, Double(n))) }
    let s = raw.reduce(0, +)
    return raw.map { Float(s > 0 ? $0 / s * Double(counts.count) : 1) }
}

/// One retraining epoch's report.
public struct RetrainEpochReport: Codable, Sendable {
    public var epoch: Int
    public var trainLoss: Double
    public var trainAccuracy: Double
    public var seconds: Double
    public var imagesPerSecond: Double
    public var test: LongTailEvaluation?
}

struct RetrainProgress: Codable {
    var config: RetrainConfig
    var genotype: Genotype
    var epochsDone: Int
    var reports: [RetrainEpochReport]
}

/// Trains the network of a genotype from scratch (SGD, cosine, cross-entropy with optional
/// deferred re-weighting) and evaluates it on a balanced test set, with epoch checkpoints.
public final class GenotypeTraining {
    public let config: RetrainConfig
    public let genotype: Genotype
    public let network: GenotypeNetwork
    public private(set) var reports: [RetrainEpochReport] = []
    public private(set) var epochsDone = 0
    let train: ImageDataset, test: ImageDataset
    let optimizer: SGD
    let normalization: Normalization
    let augmentation: any Augmentation

    public init(genotype: Genotype, config: RetrainConfig, train: ImageDataset, test: ImageDataset) throws {
        guard train.height == config.model.inputSize, test.height == config.model.inputSize, train.channels == config.model.inputChannels else {
            throw NASError("images are \(train.channels)x\(train.height)x\(train.width), the network expects \(config.model.inputChannels)x\(config.model.inputSize)x\(config.model.inputSize)")
        }
        guard config.batchSize >= 2, config.epochs >= 0 else { throw NASError("batch size \(config.batchSize) must be >= 2 and epochs \(config.epochs) >= 0") }
        self.config = config
        self.genotype = genotype
        var rng = RNG(seed: config.seed)
        network = try GenotypeNetwork(genotype: genotype, config: config.model, rng: &rng)
        self.train = train; self.test = test
        optimizer = SGD(network.trainableParameters(), lr: config.learningRate, momentum: config.momentum, weightDecay: config.weightDecay)
        normalization = train.channels == 3 ? CIFAR10.normalization : Normalization.compute(train)
        let s = config.model.inputSize
        augmentation = AugmentationPipeline([RandomCrop(size: s, padding: max(1, s / 8)), RandomHorizontalFlip()])
    }

    /// Accuracy on the test set (overall, per class, many/medium/few-shot).
    public func evaluate() throws -> LongTailEvaluation {
        let e = try FrugalModels.evaluate(network, on: test, normalization: normalization, batchSize: 128)
        return LongTailEvaluation(overall: e.accuracy, perClass: e.perClassAccuracy)
    }

    /// Trains the remaining epochs; evaluates after each epoch when `evaluateEvery` divides it
    /// (and after the last); checkpoints after each epoch.
    @discardableResult
    public func run(checkpoint: URL? = nil, evaluateEvery: Int = 1, stopAfter: Int? = nil,
                    progress: (RetrainEpochReport) -> Void = { _ in }) throws -> LongTailEvaluation {
        let loader = try DataLoader(train, batchSize: config.batchSize, shuffle: true, dropLast: true, seed: config.seed,
                                    augmentation: augmentation, normalization: normalization)
        let steps = loader.batchesPerEpoch
        let schedule = CosineSchedule(base: config.learningRate, total: max(1, config.epochs * steps))
        let drw = effectiveNumberWeights(train.classCounts(), beta: config.drwBeta)
        var done = 0
        network.train()
        while epochsDone < config.epochs {
            if let stopAfter, done >= stopAfter { break }
            let epoch = epochsDone
            let t0 = Date()
            let weights = config.drwEpoch.map { epoch >= $0 } == true ? drw : nil
            var lossSum = 0.0, correct = 0, seen = 0, s = 0
            for b in loader.epoch(epoch) {
                optimizer.learningRate = schedule.rate(at: epoch * steps + s)
                let (x, y) = tensors(of: b)
                let logits = network(x)
                let loss = Loss.crossEntropy(logits, y, weights: weights)
                optimizer.zeroGrad()
                loss.backward()
                clipGradNorm(optimizer.parameters, maxNorm: config.gradClip)
                optimizer.step()
                lossSum += Double(loss.item) * Double(y.count)
                correct += zip(logits.argmax(axis: -1), y).filter { $0 == $1 }.count
                seen += y.count; s += 1
            }
            let secs = Date().timeIntervalSince(t0)
            epochsDone += 1; done += 1
            let ev = (epochsDone % max(1, evaluateEvery) == 0 || epochsDone == config.epochs) ? try evaluate() : nil
            let r = RetrainEpochReport(epoch: epochsDone, trainLoss: lossSum / Double(max(seen, 1)), trainAccuracy: Double(correct) / Double(max(seen, 1)),
                                       seconds: secs, imagesPerSecond: Double(seen) / secs, test: ev)
            reports.append(r)
            if let checkpoint { try save(to: checkpoint) }
            progress(r)
        }
        return try reports.last?.test ?? evaluate()
    }

    public func save(to url: URL) throws {
        var t: [String: Tensor] = [:]
        for (k, v) in network.stateDict() { t["network." + k] = v }
        for (k, v) in optimizer.stateDict() { t["opt." + k] = v }
        let p = RetrainProgress(config: config, genotype: genotype, epochsDone: epochsDone, reports: reports)
        try Checkpoint.save(t, to: url, metadata: ["frugal.nas.train": String(decoding: try JSONEncoder().encode(p), as: UTF8.self)])
    }

    public func resume(from url: URL) throws {
        let ck = try SafetensorsCheckpoint(url: url)
        guard let json = ck.metadata["frugal.nas.train"] else { throw NASError("\(url.path) is not a NAS training checkpoint") }
        let p = try JSONDecoder().decode(RetrainProgress.self, from: Data(json.utf8))
        guard p.config == config, p.genotype == genotype else { throw NASError("\(url.path) was written with a different genotype or settings") }
        let all = try Checkpoint.load(url)
        var net: [String: Tensor] = [:], opt: [String: Tensor] = [:]
        for (k, v) in all {
            if k.hasPrefix("network.") { net[String(k.dropFirst(8))] = v } else if k.hasPrefix("opt.") { opt[String(k.dropFirst(4))] = v }
        }
        do { try network.loadStateDict(net); try optimizer.loadStateDict(opt) } catch { throw NASError("\(url.path): \(error)") }
        epochsDone = p.epochsDone; reports = p.reports
    }
}
