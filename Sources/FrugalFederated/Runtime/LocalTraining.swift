import FrugalNN
import FrugalData
import FrugalModels

/// How a device trains locally in a round: plain SGD (optional momentum and weight decay) on
/// its own data, for a number of steps or of epochs.
public struct LocalTrainingConfig: Sendable, Equatable {
    public var batchSize = 32
    public var learningRate: Float = 0.05
    public var momentum: Float = 0
    public var weightDecay: Float = 0
    /// Local epochs (used when `steps` is nil).
    public var epochs = 1
    /// Local SGD steps instead of epochs.
    public var steps: Int? = nil
    /// Seed of the data order.
    public var seed: UInt64 = 0
    public init() {}
}

/// What one local training did.
public struct LocalTrainingStats: Sendable, Equatable {
    /// Samples processed (a sample seen twice counts twice).
    public var samples: Int
    public var steps: Int
    /// Mean training loss over the processed samples.
    public var loss: Double
}

/// Trains `model` in place on `data` (shuffled with `config.seed`, last batch kept) with
/// cross-entropy and SGD; the federated simulation and the Flower device share this loop.
public func trainLocally(_ model: any Layer, on data: ImageDataset, normalization: Normalization?,
                         config: LocalTrainingConfig) throws -> LocalTrainingStats {
    guard config.batchSize >= 1 else { throw FederatedError("local training: batch size \(config.batchSize) must be ≥ 1") }
    if let s = config.steps, s < 1 { throw FederatedError("local training: steps \(s) must be ≥ 1") }
    guard config.steps != nil || config.epochs >= 1 else { throw FederatedError("local training: epochs \(config.epochs) must be ≥ 1") }
    let loader = try DataLoader(data, batchSize: config.batchSize, shuffle: true, dropLast: false, seed: config.seed,
                                normalization: normalization, prefetch: 2)
    let opt = SGD(model.trainableParameters(), lr: config.learningRate, momentum: config.momentum,
                  weightDecay: config.weightDecay)
    model.train()
    var samples = 0, steps = 0, lossSum = 0.0
    let maxSteps = config.steps ?? Int.max
    var epoch = 0
    outer: while config.steps != nil || epoch < config.epochs {
        for b in loader.epoch(epoch) {
            if steps >= maxSteps { break outer }
            let (x, y) = tensors(of: b)
            let logits = model(x)
            let loss = Loss.crossEntropy(logits, y)
            opt.zeroGrad()
            loss.backward()
            opt.step()
            lossSum += Double(loss.item) * Double(y.count)
            samples += y.count
            steps += 1
        }
        epoch += 1
        if steps >= maxSteps { break }
    }
    return LocalTrainingStats(samples: samples, steps: steps, loss: lossSum / Double(max(samples, 1)))
}
