import Foundation
import FrugalNN
import FrugalData

/// Settings of `trainClassifier`.
public struct ClassifierTrainingConfig: Sendable, Codable {
    public var epochs = 2
    public var batchSize = 64
    public var learningRate: Float = 0.01
    public var momentum: Float = 0.9
    public var weightDecay: Float = 0
    public var cosine = false
    public var seed: UInt64 = 0
    public init() {}
}

/// What one epoch of `trainClassifier` measured.
public struct EpochReport: Sendable, Codable {
    public var epoch: Int
    public var trainLoss: Double
    public var trainAccuracy: Double
    public var testAccuracy: Double
    public var seconds: Double
    public var imagesPerSecond: Double
    /// Share of the epoch's time the training loop waited for the next batch.
    public var loaderWaitShare: Double
}

/// Per-class and overall accuracy of a classifier on a data set.
public struct Evaluation: Sendable, Codable {
    public var accuracy: Double
    public var perClassAccuracy: [Double]
    public var loss: Double
}

/// Tensor [B, C, H, W] and labels from a loader batch.
public func tensors(of batch: ImageBatch) -> (Tensor, [Int]) {
    (Tensor(batch.images, shape: [batch.count, batch.shape.channels, batch.shape.height, batch.shape.width]), batch.labels.map(Int.init))
}

/// Evaluates `model` (in eval mode, no gradients) on every sample of `dataset`.
public func evaluate(_ model: some Layer, on dataset: ImageDataset, normalization: Normalization?, batchSize: Int = 256) throws -> Evaluation {
    model.eval()
    defer { model.train() }
    let loader = try DataLoader(dataset, batchSize: batchSize, shuffle: false, normalization: normalization)
    var correct = [Int](repeating: 0, count: dataset.classes), total = [Int](repeating: 0, count: dataset.classes)
    var lossSum = 0.0
    for batch in loader {
        let (x, y) = tensors(of: batch)
        withNoGrad {
            let logits = model(x)
            lossSum += Double(Loss.crossEntropy(logits, y).item) * Double(y.count)
            for (p, t) in zip(logits.argmax(axis: -1), y) { total[t] += 1; if p == t { correct[t] += 1 } }
        }
    }
    let n = total.reduce(0, +)
    return Evaluation(accuracy: Double(correct.reduce(0, +)) / Double(max(n, 1)),
                      perClassAccuracy: zip(correct, total).map { Double($0) / Double(max($1, 1)) },
                      loss: lossSum / Double(max(n, 1)))
}

/// Trains an image classifier with SGD (momentum, optional cosine schedule) and evaluates it on
/// `test` after every epoch; `progress` receives a report per epoch and a line per step group.
public func trainClassifier(_ model: some Layer, train: ImageDataset, test: ImageDataset, normalization: Normalization?,
                            augmentation: (any Augmentation)? = nil, config: ClassifierTrainingConfig,
                            progress: (EpochReport) -> Void = { _ in }, stepProgress: ((Int, Int, Double) -> Void)? = nil) throws -> [EpochReport] {
    let loader = try DataLoader(train, batchSize: config.batchSize, shuffle: true, dropLast: false, seed: config.seed,
                                augmentation: augmentation, normalization: normalization)
    let opt = SGD(model.trainableParameters(), lr: config.learningRate, momentum: config.momentum, weightDecay: config.weightDecay)
    let schedule = CosineSchedule(base: config.learningRate, total: config.epochs * loader.batchesPerEpoch)
    var reports: [EpochReport] = []
    var step = 0
    model.train()
    for epoch in 0..<config.epochs {
        let t0 = Date()
        var lossSum = 0.0, correct = 0, seen = 0, b = 0
        for batch in loader.epoch(epoch) {
            if config.cosine { opt.learningRate = schedule.rate(at: step) }
            let (x, y) = tensors(of: batch)
            let logits = model(x)
            let loss = Loss.crossEntropy(logits, y)
            opt.zeroGrad()
            loss.backward()
            opt.step()
            lossSum += Double(loss.item) * Double(y.count)
            correct += zip(logits.argmax(axis: -1), y).filter { $0 == $1 }.count
            seen += y.count
            step += 1; b += 1
            stepProgress?(b, loader.batchesPerEpoch, lossSum / Double(seen))
        }
        let secs = Date().timeIntervalSince(t0)
        let wait = loader.lastEpochStats?.waitFraction ?? 0
        let ev = try evaluate(model, on: test, normalization: normalization)
        let r = EpochReport(epoch: epoch + 1, trainLoss: lossSum / Double(max(seen, 1)), trainAccuracy: Double(correct) / Double(max(seen, 1)),
                            testAccuracy: ev.accuracy, seconds: secs, imagesPerSecond: Double(seen) / secs, loaderWaitShare: wait)
        reports.append(r)
        progress(r)
    }
    return reports
}
