import Foundation
import FrugalCore
import FrugalNN
import FrugalData
import FrugalModels

/// How SSF-NAS uses Barlow Twins (systems.md §4): `pretrain` trains the supernet weights with
/// Barlow Twins on all training images without labels, then runs the fair supervised search;
/// `sslSearch` runs the FairDARTS search itself on the Barlow Twins loss (both levels).
public enum SSFMode: String, Codable, Sendable, CaseIterable {
    case pretrain
    case sslSearch = "ssl-search"
}

/// Settings of a search (defaults: systems.md §4 hyper-parameters, reduced supernet).
public struct SearchConfig: Codable, Sendable, Equatable {
    public var method: SearchMethodKind = .darts
    public var ssfMode: SSFMode = .pretrain
    public var model = DARTSConfig()
    public var epochs = 10
    public var batchSize = 32
    /// Steps per epoch at most (nil: one pass over the smaller half).
    public var maxStepsPerEpoch: Int? = nil
    public var weightLR: Float = 0.025
    public var weightLRMin: Float = 0.001
    public var momentum: Float = 0.9
    public var weightDecay: Float = 3e-4
    public var gradClip: Float = 5
    /// α Adam learning rate; nil: 3e-4 for DARTS, 3e-3 for FairDARTS and SSF-NAS.
    public var alphaLR: Float? = nil
    public var alphaBeta1: Float = 0.5
    public var alphaBeta2: Float = 0.999
    public var alphaWeightDecay: Float = 1e-3
    public var zeroOneWeight: Float = 10
    public var threshold: Float = 0.85
    /// Barlow Twins pretraining epochs (SSF `pretrain` mode).
    public var sslEpochs = 5
    public var sslLambda: Float = 5e-3
    public var projectorDim = 128
    public var seed: UInt64 = 0
    public init() {}

    public var effectiveAlphaLR: Float { alphaLR ?? (method == .darts ? 3e-4 : 3e-3) }
    public var searchMethod: any SearchMethod { method.method(zeroOneWeight: zeroOneWeight, threshold: threshold) }
    var usesSSLPretrain: Bool { method == .ssf && ssfMode == .pretrain }
    var searchesOnSSL: Bool { method == .ssf && ssfMode == .sslSearch }

    /// The config with the op set each method needs (FairDARTS and SSF-NAS drop `none`).
    public func normalized() -> SearchConfig {
        var c = self
        if method != .darts { c.model.ops = c.model.ops.filter { $0 != .none } }
        return c
    }

    public func validate() throws {
        try model.validate()
        guard epochs >= 0, sslEpochs >= 0 else { throw NASError("epochs \(epochs) and SSL epochs \(sslEpochs) must not be negative") }
        guard batchSize >= 2 else { throw NASError("batch size \(batchSize) must be at least 2 (batch norm)") }
        if let m = maxStepsPerEpoch, m < 1 { throw NASError("max steps per epoch \(m) must be positive") }
        if method != .darts && model.ops.contains(.none) { throw NASError("\(method.rawValue) has no 'none' op; use normalized()") }
    }
}

/// An error of the NAS code, with a message that says what was wrong.
public struct NASError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// α after one epoch: op weights (softmax or sigmoid) per edge, and the genotype derived then.
public struct AlphaSnapshot: Codable, Sendable, Equatable {
    public var phase: String
    public var epoch: Int
    public var ops: [String]
    public var normal: [[Float]]
    public var reduce: [[Float]]
    public var genotype: Genotype
}

/// What one search epoch measured.
public struct SearchEpochReport: Codable, Sendable {
    public var phase: String
    public var epoch: Int
    public var weightLoss: Double
    /// Loss on the α half (task loss, before the α regulariser), and accuracy when supervised.
    public var alphaLoss: Double
    public var alphaAccuracy: Double?
    public var seconds: Double
    public var imagesPerSecond: Double
    public var genotype: String
}

/// Saved progress of a search (JSON in the checkpoint's metadata).
struct SearchProgress: Codable {
    var config: SearchConfig
    var sslEpochsDone: Int
    var epochsDone: Int
    var trajectory: [AlphaSnapshot]
    var reports: [SearchEpochReport]
}

/// A differentiable architecture search over the DARTS supernet: DARTS, FairDARTS or SSF-NAS.
///
/// Each search step (first-order bilevel): a batch of the α half → loss with the current α →
/// Adam step on α (weights frozen); a batch of the weight half → loss → SGD step on the weights
/// (α frozen). SSF `pretrain` first trains the weights with Barlow Twins on all images.
/// Epoch order, batches and augmentations derive from (seed, phase, epoch, step), so a run
/// resumed from an epoch checkpoint ends with the same α as an uninterrupted one.
public final class ArchitectureSearch {
    public let config: SearchConfig
    public let method: any SearchMethod
    public let supernet: DARTSSupernet
    public let projector: BarlowProjector?
    /// α of the normal and reduction cells, [edges, ops].
    public let alphaNormal: Tensor, alphaReduce: Tensor
    public private(set) var trajectory: [AlphaSnapshot] = []
    public private(set) var reports: [SearchEpochReport] = []
    public private(set) var sslEpochsDone = 0, epochsDone = 0

    let train: ImageDataset
    let weightHalf: [Int], alphaHalf: [Int]
    let normalization: Normalization
    let weightOpt: SGD, alphaOpt: Adam
    let sslOpt: SGD?
    let supervisedAug: any Augmentation
    let sslAug: any Augmentation
    let shape: ImageShape

    /// - Parameters:
    ///   - train: the labelled (long-tailed) training set at the supernet's input size.
    public init(config raw: SearchConfig, train: ImageDataset) throws {
        let cfg = raw.normalized()
        try cfg.validate()
        guard train.channels == cfg.model.inputChannels, train.height == cfg.model.inputSize, train.width == cfg.model.inputSize else {
            throw NASError("training images are \(train.channels)x\(train.height)x\(train.width), the supernet expects \(cfg.model.inputChannels)x\(cfg.model.inputSize)x\(cfg.model.inputSize)")
        }
        guard train.classes == cfg.model.classes else { throw NASError("data set has \(train.classes) classes, the supernet \(cfg.model.classes)") }
        config = cfg
        method = cfg.searchMethod
        var rng = RNG(seed: cfg.seed)
        supernet = DARTSSupernet(cfg.model, rng: &rng)
        let e = cfg.model.edgesPerCell, k = cfg.model.ops.count
        if cfg.method == .darts {
            alphaNormal = Tensor.normal([e, k], std: 1e-3, rng: &rng, requiresGrad: true)
            alphaReduce = Tensor.normal([e, k], std: 1e-3, rng: &rng, requiresGrad: true)
        } else {
            alphaNormal = Tensor.zeros([e, k], requiresGrad: true)
            alphaReduce = Tensor.zeros([e, k], requiresGrad: true)
        }
        projector = cfg.method == .ssf ? BarlowProjector(supernet.featureChannels, hidden: cfg.projectorDim, dim: cfg.projectorDim, rng: &rng) : nil
        self.train = train
        (weightHalf, alphaHalf) = NASData.stratifiedHalves(train, seed: cfg.seed)
        guard min(weightHalf.count, alphaHalf.count) >= cfg.batchSize else {
            throw NASError("each half of the \(train.count) training images must hold a batch of \(cfg.batchSize)")
        }
        normalization = train.channels == 3 ? CIFAR10.normalization : Normalization.compute(train)
        var wparams = supernet.trainableParameters()
        if cfg.searchesOnSSL, let projector { wparams += projector.trainableParameters() }
        weightOpt = SGD(wparams, lr: cfg.weightLR, momentum: cfg.momentum, weightDecay: cfg.weightDecay)
        alphaOpt = Adam([alphaNormal, alphaReduce], lr: cfg.effectiveAlphaLR, betas: (cfg.alphaBeta1, cfg.alphaBeta2), weightDecay: cfg.alphaWeightDecay)
        if cfg.usesSSLPretrain, let projector {
            sslOpt = SGD(supernet.trainableParameters() + projector.trainableParameters(), lr: cfg.weightLR, momentum: cfg.momentum, weightDecay: cfg.weightDecay)
        } else { sslOpt = nil }
        let s = cfg.model.inputSize
        supervisedAug = AugmentationPipeline([RandomCrop(size: s, padding: max(1, s / 8)), RandomHorizontalFlip()])
        sslAug = BarlowTwins.augmentation(size: s, channels: train.channels)
        shape = ImageShape(channels: train.channels, height: s, width: s)
    }

    /// Search steps per epoch.
    public var stepsPerEpoch: Int {
        let n = min(weightHalf.count, alphaHalf.count) / config.batchSize
        return min(n, config.maxStepsPerEpoch ?? n)
    }
    /// SSL pretraining steps per epoch (over all images).
    public var sslStepsPerEpoch: Int {
        let n = train.count / config.batchSize
        return min(n, config.maxStepsPerEpoch ?? n)
    }

    /// Op weights of the normal and reduction cells (softmax or sigmoid of α).
    public func opWeights() -> (normal: Tensor, reduce: Tensor) { (method.opWeights(alphaNormal), method.opWeights(alphaReduce)) }

    /// The genotype of the current α.
    public func genotype() -> Genotype {
        let (n, r) = withNoGrad { opWeights() }
        return method.derive(normal: rows(n), reduce: rows(r), ops: config.model.ops, steps: config.model.steps)
    }

    func rows(_ t: Tensor) -> [[Float]] {
        let a = t.array, k = t.shape[1]
        return (0..<t.shape[0]).map { Array(a[($0 * k)..<(($0 + 1) * k)]) }
    }

    // MARK: - Batches

    func order(_ idx: [Int], phase: UInt64, epoch: Int) -> [Int] {
        var rng = DataRNG(seed: DataRNG.derive(config.seed, phase, UInt64(epoch)))
        var o = idx
        rng.shuffle(&o)
        return o
    }

    func batch(_ indices: [Int], epoch: Int, aug: any Augmentation, view: UInt64) -> (Tensor, [Int]) {
        let b = DataLoader.makeBatch(train, indices: indices, epoch: epoch, seed: DataRNG.derive(config.seed, 0xB47C, view),
                                     input: shape, output: shape, augmentation: aug, normalization: normalization)
        return tensors(of: b)
    }

    /// Barlow Twins loss of two views of `indices` through the supernet and the projector.
    func sslLoss(_ indices: [Int], epoch: Int, normal: Tensor, reduce: Tensor) -> Tensor {
        let (x1, _) = batch(indices, epoch: epoch, aug: sslAug, view: 1)
        let (x2, _) = batch(indices, epoch: epoch, aug: sslAug, view: 2)
        let z1 = projector!(supernet.features(x1, normal: normal, reduce: reduce))
        let z2 = projector!(supernet.features(x2, normal: normal, reduce: reduce))
        return BarlowTwins.loss(z1, z2, lambda: config.sslLambda)
    }

    func setWeightsTrainable(_ on: Bool) {
        for p in weightOpt.parameters { p.requiresGrad = on; if !on { p.grad = nil } }
        if let sslOpt { for p in sslOpt.parameters { p.requiresGrad = on; if !on { p.grad = nil } } }
    }
    func setAlphaTrainable(_ on: Bool) {
        for a in [alphaNormal, alphaReduce] { a.requiresGrad = on; if !on { a.grad = nil } }
    }

    // MARK: - Epochs

    /// One Barlow Twins pretraining epoch of the supernet weights (α fixed at its initial value).
    func sslEpoch(_ epoch: Int) -> SearchEpochReport {
        let t0 = Date()
        setAlphaTrainable(false); setWeightsTrainable(true)
        let opt = sslOpt!
        let steps = sslStepsPerEpoch, total = max(1, config.sslEpochs * steps)
        let schedule = CosineSchedule(base: config.weightLR, total: total, minimum: config.weightLRMin)
        let all = order(Array(0..<train.count), phase: 1, epoch: epoch)
        var lossSum = 0.0
        for s in 0..<steps {
            opt.learningRate = schedule.rate(at: epoch * steps + s)
            let idx = Array(all[(s * config.batchSize)..<((s + 1) * config.batchSize)])
            let (wn, wr) = withNoGrad { opWeights() }
            let loss = sslLoss(idx, epoch: epoch, normal: wn, reduce: wr)
            opt.zeroGrad()
            loss.backward()
            clipGradNorm(opt.parameters, maxNorm: config.gradClip)
            opt.step()
            lossSum += Double(loss.item)
        }
        let secs = Date().timeIntervalSince(t0)
        return SearchEpochReport(phase: "ssl", epoch: epoch + 1, weightLoss: lossSum / Double(max(steps, 1)), alphaLoss: 0, alphaAccuracy: nil,
                                 seconds: secs, imagesPerSecond: Double(2 * steps * config.batchSize) / secs, genotype: genotype().summary)
    }

    /// One bilevel search epoch.
    func searchEpoch(_ epoch: Int) -> SearchEpochReport {
        let t0 = Date()
        let steps = stepsPerEpoch, bs = config.batchSize
        let schedule = CosineSchedule(base: config.weightLR, total: max(1, config.epochs * steps), minimum: config.weightLRMin)
        let wOrder = order(weightHalf, phase: 2, epoch: epoch), aOrder = order(alphaHalf, phase: 3, epoch: epoch)
        var wLoss = 0.0, aLoss = 0.0, aCorrect = 0
        let ssl = config.searchesOnSSL
        for s in 0..<steps {
            let aIdx = Array(aOrder[(s * bs)..<((s + 1) * bs)]), wIdx = Array(wOrder[(s * bs)..<((s + 1) * bs)])
            // α step (first order): weights frozen.
            setWeightsTrainable(false); setAlphaTrainable(true)
            do {
                let (wn, wr) = opWeights()
                let task: Tensor
                if ssl {
                    task = sslLoss(aIdx, epoch: epoch, normal: wn, reduce: wr)
                } else {
                    let (x, y) = batch(aIdx, epoch: epoch, aug: supervisedAug, view: 3)
                    let logits = supernet.forward(x, normal: wn, reduce: wr)
                    task = Loss.crossEntropy(logits, y)
                    aCorrect += zip(logits.argmax(axis: -1), y).filter { $0 == $1 }.count
                }
                let loss = method.alphaRegularizer([alphaNormal, alphaReduce]).map { task + $0 } ?? task
                alphaOpt.zeroGrad()
                loss.backward()
                alphaOpt.step()
                aLoss += Double(task.item)
            }
            // Weight step: α frozen.
            setAlphaTrainable(false); setWeightsTrainable(true)
            do {
                weightOpt.learningRate = schedule.rate(at: epoch * steps + s)
                let (wn, wr) = withNoGrad { opWeights() }
                let loss: Tensor
                if ssl {
                    loss = sslLoss(wIdx, epoch: epoch, normal: wn, reduce: wr)
                } else {
                    let (x, y) = batch(wIdx, epoch: epoch, aug: supervisedAug, view: 4)
                    loss = Loss.crossEntropy(supernet.forward(x, normal: wn, reduce: wr), y)
                }
                weightOpt.zeroGrad()
                loss.backward()
                clipGradNorm(weightOpt.parameters, maxNorm: config.gradClip)
                weightOpt.step()
                wLoss += Double(loss.item)
            }
        }
        setAlphaTrainable(true)
        let secs = Date().timeIntervalSince(t0)
        let images = 2 * steps * bs * (ssl ? 2 : 1)
        return SearchEpochReport(phase: "search", epoch: epoch + 1, weightLoss: wLoss / Double(max(steps, 1)), alphaLoss: aLoss / Double(max(steps, 1)),
                                 alphaAccuracy: ssl ? nil : Double(aCorrect) / Double(max(1, steps * bs)),
                                 seconds: secs, imagesPerSecond: Double(images) / secs, genotype: genotype().summary)
    }

    func snapshot(phase: String, epoch: Int) -> AlphaSnapshot {
        let (n, r) = withNoGrad { opWeights() }
        return AlphaSnapshot(phase: phase, epoch: epoch, ops: config.model.ops.map(\.rawValue), normal: rows(n), reduce: rows(r), genotype: genotype())
    }

    /// Runs (or continues) the search: SSL pretraining epochs first (SSF `pretrain`), then the
    /// search epochs. After every epoch `progress` gets the report and, when `checkpoint` is set,
    /// the full state is written there atomically. `stopAfter` ends the call after that many
    /// epochs of this call (to test interruption). Returns the final genotype.
    @discardableResult
    public func run(checkpoint: URL? = nil, stopAfter: Int? = nil, progress: (SearchEpochReport) -> Void = { _ in }) throws -> Genotype {
        var done = 0
        if trajectory.isEmpty { trajectory.append(snapshot(phase: "init", epoch: 0)) }
        supernet.train(); projector?.train()
        if config.usesSSLPretrain {
            while sslEpochsDone < config.sslEpochs {
                if let stopAfter, done >= stopAfter { return genotype() }
                let r = sslEpoch(sslEpochsDone)
                sslEpochsDone += 1; done += 1
                reports.append(r)
                if let checkpoint { try save(to: checkpoint) }
                progress(r)
            }
        }
        while epochsDone < config.epochs {
            if let stopAfter, done >= stopAfter { return genotype() }
            let r = searchEpoch(epochsDone)
            epochsDone += 1; done += 1
            reports.append(r)
            trajectory.append(snapshot(phase: "search", epoch: epochsDone))
            if let checkpoint { try save(to: checkpoint) }
            progress(r)
        }
        return genotype()
    }

    // MARK: - Checkpoints

    /// Writes the whole search state (weights, BN statistics, α, optimiser states, progress) to
    /// one safetensors file, atomically.
    public func save(to url: URL) throws {
        var t: [String: Tensor] = [:]
        for (k, v) in supernet.stateDict() { t["supernet." + k] = v }
        if let projector { for (k, v) in projector.stateDict() { t["projector." + k] = v } }
        t["alpha.normal"] = alphaNormal; t["alpha.reduce"] = alphaReduce
        for (k, v) in weightOpt.stateDict() { t["wopt." + k] = v }
        for (k, v) in alphaOpt.stateDict() { t["aopt." + k] = v }
        if let sslOpt { for (k, v) in sslOpt.stateDict() { t["sslopt." + k] = v } }
        let p = SearchProgress(config: config, sslEpochsDone: sslEpochsDone, epochsDone: epochsDone, trajectory: trajectory, reports: reports)
        let json = String(decoding: try JSONEncoder().encode(p), as: UTF8.self)
        try Checkpoint.save(t, to: url, metadata: ["frugal.nas.search": json])
    }

    /// Restores a state written by `save`; the checkpoint's config must equal this search's.
    public func resume(from url: URL) throws {
        let ck = try SafetensorsCheckpoint(url: url)
        guard let json = ck.metadata["frugal.nas.search"] else { throw NASError("\(url.path) is not a NAS search checkpoint (no 'frugal.nas.search' metadata)") }
        let p: SearchProgress
        do { p = try JSONDecoder().decode(SearchProgress.self, from: Data(json.utf8)) } catch {
            throw NASError("\(url.path): unreadable search progress: \(error)")
        }
        guard p.config == config else { throw NASError("\(url.path) was written by a search with different settings; start a new run or pass the same options") }
        let all = try Checkpoint.load(url)
        func part(_ prefix: String) -> [String: Tensor] {
            var d: [String: Tensor] = [:]
            for (k, v) in all where k.hasPrefix(prefix) { d[String(k.dropFirst(prefix.count))] = v }
            return d
        }
        do {
            try supernet.loadStateDict(part("supernet."))
            if let projector { try projector.loadStateDict(part("projector.")) }
            guard let an = all["alpha.normal"], let ar = all["alpha.reduce"], an.shape == alphaNormal.shape, ar.shape == alphaReduce.shape else {
                throw NASError("\(url.path): missing or mis-shaped alpha.normal / alpha.reduce")
            }
            withNoGrad { alphaNormal.assign(an); alphaReduce.assign(ar) }
            try weightOpt.loadStateDict(part("wopt."))
            try alphaOpt.loadStateDict(part("aopt."))
            if let sslOpt { try sslOpt.loadStateDict(part("sslopt.")) }
        } catch let e as NASError { throw e } catch {
            throw NASError("\(url.path): \(error)")
        }
        sslEpochsDone = p.sslEpochsDone; epochsDone = p.epochsDone
        trajectory = p.trajectory; reports = p.reports
    }

    /// The α trajectory as JSON (one snapshot per epoch), for plotting.
    public func trajectoryJSON() throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        return try enc.encode(trajectory)
    }
}
