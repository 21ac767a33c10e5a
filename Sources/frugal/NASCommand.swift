import ArgumentParser
import Foundation
import FrugalCore
import FrugalNN
import FrugalData
import FrugalModels
import FrugalNAS

struct NAS: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nas",
        abstract: "Differentiable architecture search on long-tailed data: DARTS, FairDARTS, SSF-NAS.",
        discussion: """
        Search a DARTS cell, retrain the derived network from scratch on the long-tailed set and
        evaluate on the balanced test set (overall, many/medium/few-shot accuracy).
          frugal nas search --method ssf --dataset cifar10-lt --imbalance 100 --out runs/nas/ssf-s0
          frugal nas train --genotype runs/nas/ssf-s0/genotype.json --dataset cifar10-lt --imbalance 100
          frugal nas compare --methods darts,fairdarts,ssf --seeds 0,1
        Reduced setting by default (C=8, 5 cells, 16x16 inputs); --paper gives C=16, 8 cells, 32x32.
        """,
        subcommands: [NASSearch.self, NASTrain.self, NASCompare.self, NASBench.self])
}

/// Data-set and supernet-size options shared by the NAS subcommands.
struct NASModelOptions: ParsableArguments {
    @Option(help: "Data set: cifar10-lt (CIFAR-10 from $FRUGAL_DATA made long-tailed) or synthetic (generated, long-tailed).")
    var dataset = "cifar10-lt"
    @Option(help: "Imbalance factor n_max/n_min of the training set.") var imbalance: Double = 100
    @Option(help: "Data directory (default $FRUGAL_DATA or ~/.cache/frugal-data).") var data: String?
    @Option(help: "Seed of the long-tailed subset (the same for every method and run seed).") var dataSeed: UInt64 = 0
    @Option(help: "Channels C of the first cells.") var channels: Int?
    @Option(help: "Number of cells (reduction cells at 1/3 and 2/3).") var cells: Int?
    @Option(help: "Input size (images are downsampled by area averaging; CIFAR: 32, 16 or 8).") var inputSize: Int?
    @Option(help: "Operation set: darts, fair, or a comma-separated list of op names.") var ops = "darts"
    @Flag(help: "Paper-scale setting: C=16, 8 cells, 32x32 inputs (explicit flags still win).") var paper = false

    func modelConfig() throws -> DARTSConfig {
        var c = paper ? DARTSConfig.paper : DARTSConfig()
        if !paper { c.inputSize = 16 }
        if let channels { c.channels = channels }
        if let cells { c.cells = cells }
        if let inputSize { c.inputSize = inputSize }
        c.ops = try DARTSOp.parseList(ops)
        try c.validate()
        return c
    }

    /// (train, test) at the model's input size.
    func load(size: Int) throws -> (ImageDataset, ImageDataset) {
        switch dataset {
        case "cifar10-lt":
            let dir = data.map { $0 + "/cifar-10-batches-bin" }
            let train = try CIFAR10.load(dir: dir, train: true).longTailed(imbalance: imbalance, seed: dataSeed)
            let test = try CIFAR10.load(dir: dir, train: false)
            return (try NASData.downsample(train, to: size), try NASData.downsample(test, to: size))
        case "synthetic":
            let train = try NASData.synthetic(perClass: 200, size: 16, classes: 10, imbalance: imbalance, seed: dataSeed)
            let test = try NASData.synthetic(perClass: 50, size: 16, classes: 10, imbalance: 1, seed: dataSeed &+ 1000)
            return (try NASData.downsample(train, to: size), try NASData.downsample(test, to: size))
        default: throw CLIError("unknown data set '\(dataset)': use cifar10-lt or synthetic")
        }
    }
}

func nasMethod(_ s: String) throws -> SearchMethodKind {
    guard let m = SearchMethodKind(rawValue: s) else { throw CLIError("unknown method '\(s)': use ssf, darts or fairdarts") }
    return m
}

func ensureDir(_ path: String) throws {
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
}

func writeText(_ s: String, to path: String) throws { try Data(s.utf8).write(to: URL(fileURLWithPath: path), options: .atomic) }

/// Results of one search run, as written to search.json.
struct SearchRunResult: Codable {
    var config: SearchConfig
    var genotype: Genotype
    var seconds: Double
    var epochs: [SearchEpochReport]
}

/// Results of one retraining run, as written to train.json.
struct TrainRunResult: Codable {
    var config: RetrainConfig
    var genotype: Genotype
    var seconds: Double
    var epochs: [RetrainEpochReport]
    var test: LongTailEvaluation
}

func printSearchEpoch(_ r: SearchEpochReport, total: Int) {
    let acc = r.alphaAccuracy.map { "  α-half acc \(fmt(100 * $0, 1))%" } ?? ""
    print("[\(r.phase)] epoch \(r.epoch)/\(total)  w-loss \(fmt(r.weightLoss, 4))  α-loss \(fmt(r.alphaLoss, 4))\(acc)  \(fmt(r.seconds))s  \(fmt(r.imagesPerSecond, 0)) img/s")
    print("    \(r.genotype)")
    flushStdout()
}

/// Runs (or resumes) a search writing checkpoint, genotype (JSON, SVG), α trajectory and results to `out`.
func runSearch(_ cfg: SearchConfig, train: ImageDataset, out: String, resume: Bool) throws -> SearchRunResult {
    try ensureDir(out)
    let ckpt = URL(fileURLWithPath: out + "/search.ckpt.safetensors")
    let search = try ArchitectureSearch(config: cfg, train: train)
    if resume && FileManager.default.fileExists(atPath: ckpt.path) {
        try search.resume(from: ckpt)
        print("resumed \(ckpt.path) after \(search.sslEpochsDone) SSL and \(search.epochsDone) search epochs")
    }
    let c = search.config
    print("search \(c.method.rawValue)\(c.method == .ssf ? " (\(c.ssfMode.rawValue))" : ""): \(train.count) images \(train.channels)x\(train.height)x\(train.width), halves stratified by class; supernet C=\(c.model.channels), \(c.model.cells) cells, \(c.model.ops.count) ops, \(search.supernet.parameterCount) weights; \(search.stepsPerEpoch) steps/epoch of batch \(c.batchSize); \(Kernels.threads) threads")
    let t0 = now()
    let prior = search.reports.reduce(0) { $0 + $1.seconds }
    let g = try search.run(checkpoint: ckpt) { r in printSearchEpoch(r, total: r.phase == "ssl" ? c.sslEpochs : c.epochs) }
    _ = t0
    try g.write(to: URL(fileURLWithPath: out + "/genotype.json"))
    try writeText(GenotypeSVG.draw(g, title: "\(c.method.rawValue) seed \(c.seed)"), to: out + "/genotype.svg")
    try search.trajectoryJSON().write(to: URL(fileURLWithPath: out + "/alphas.json"), options: .atomic)
    let result = SearchRunResult(config: c, genotype: g, seconds: max(prior, search.reports.reduce(0) { $0 + $1.seconds }), epochs: search.reports)
    try writeJSON(result, to: out + "/search.json")
    print("genotype: \(g.summary)\nwrote \(out)/genotype.json, genotype.svg, alphas.json, search.json")
    return result
}

/// Runs (or resumes) a retraining of `genotype`, writing checkpoint and train.json to `out`.
func runTrain(_ genotype: Genotype, _ cfg: RetrainConfig, train: ImageDataset, test: ImageDataset, out: String, resume: Bool, evaluateEvery: Int) throws -> TrainRunResult {
    try ensureDir(out)
    let ckpt = URL(fileURLWithPath: out + "/train.ckpt.safetensors")
    let job = try GenotypeTraining(genotype: genotype, config: cfg, train: train, test: test)
    if resume && FileManager.default.fileExists(atPath: ckpt.path) {
        try job.resume(from: ckpt)
        print("resumed \(ckpt.path) after \(job.epochsDone) epochs")
    }
    print("retrain: \(train.count) images, network C=\(cfg.model.channels), \(cfg.model.cells) cells, \(job.network.parameterCount) parameters; \(cfg.epochs) epochs of batch \(cfg.batchSize)\(cfg.drwEpoch.map { ", DRW from epoch \($0 + 1)" } ?? "")")
    let ev = try job.run(checkpoint: ckpt, evaluateEvery: evaluateEvery) { r in
        let t = r.test.map { "  test \(fmt(100 * $0.overall, 2))% (many \(fmt(100 * $0.many, 1)) / medium \(fmt(100 * $0.medium, 1)) / few \(fmt(100 * $0.few, 1)))" } ?? ""
        print("[train] epoch \(r.epoch)/\(cfg.epochs)  loss \(fmt(r.trainLoss, 4))  train acc \(fmt(100 * r.trainAccuracy, 1))%\(t)  \(fmt(r.seconds))s  \(fmt(r.imagesPerSecond, 0)) img/s")
        flushStdout()
    }
    let result = TrainRunResult(config: cfg, genotype: genotype, seconds: job.reports.reduce(0) { $0 + $1.seconds }, epochs: job.reports, test: ev)
    try writeJSON(result, to: out + "/train.json")
    print("test accuracy \(fmt(100 * ev.overall, 2))%  many \(fmt(100 * ev.many, 2))%  medium \(fmt(100 * ev.medium, 2))%  few \(fmt(100 * ev.few, 2))%\nper class: \(ev.perClass.map { fmt(100 * $0, 1) }.joined(separator: " "))")
    return result
}

struct NASSearch: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "search",
        abstract: "Search a cell with DARTS, FairDARTS or SSF-NAS; writes genotype.json/.svg and alphas.json.",
        discussion: "Checkpoints after every epoch to OUT/search.ckpt.safetensors; --resume continues from it.")

    @OptionGroup var model: NASModelOptions
    @Option(help: "Search method: ssf, darts or fairdarts.") var method = "ssf"
    @Option(help: "SSF-NAS reading: pretrain (Barlow Twins pretraining, then fair supervised search) or ssl-search (search on the Barlow Twins loss).") var ssfMode = "pretrain"
    @Option(help: "Search epochs.") var epochs = 10
    @Option(help: "Barlow Twins pretraining epochs (ssf --ssf-mode pretrain).") var sslEpochs = 5
    @Option(help: "Batch size (each of the weight and α batches).") var batch = 32
    @Option(help: "Cap on steps per epoch (quick runs).") var maxSteps: Int?
    @Option(help: "Zero-one loss weight w (FairDARTS, SSF).") var zeroOneWeight: Float = 10
    @Option(help: "Discretisation threshold (FairDARTS, SSF).") var threshold: Float = 0.85
    @Option(help: "Seed (initialisation, split, order, augmentation).") var seed: UInt64 = 0
    @Option(help: "Output folder.") var out: String?
    @Flag(help: "Continue from OUT/search.ckpt.safetensors when it exists.") var resume = false
    @Option(help: "Write the run's results as JSON to this file (also OUT/search.json).") var json: String?

    func run() throws {
        var cfg = SearchConfig()
        cfg.method = try nasMethod(method)
        guard let mode = SSFMode(rawValue: ssfMode) else { throw CLIError("unknown --ssf-mode '\(ssfMode)': use pretrain or ssl-search") }
        cfg.ssfMode = mode
        cfg.model = try model.modelConfig()
        cfg.epochs = epochs; cfg.sslEpochs = sslEpochs; cfg.batchSize = batch; cfg.maxStepsPerEpoch = maxSteps
        cfg.zeroOneWeight = zeroOneWeight; cfg.threshold = threshold; cfg.seed = seed
        let (train, _) = try model.load(size: cfg.model.inputSize)
        let dir = out ?? "runs/nas/\(method)-s\(seed)"
        let r = try runSearch(cfg, train: train, out: dir, resume: resume)
        if let json { try writeJSON(r, to: json) }
    }
}

struct NASTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a genotype's network from scratch on the long-tailed set and evaluate on the balanced test set.")

    @OptionGroup var model: NASModelOptions
    @Option(help: "Genotype JSON file (from `frugal nas search`).") var genotype: String
    @Option(help: "Epochs.") var epochs = 20
    @Option(help: "Batch size.") var batch = 64
    @Option(help: "Learning rate (SGD momentum 0.9, cosine, weight decay 3e-4).") var lr: Float = 0.025
    @Option(help: "Deferred re-weighting from this epoch (1-based); off by default.") var drw: Int?
    @Option(help: "Evaluate on the test set every N epochs (and after the last).") var evalEvery = 5
    @Option(help: "Seed.") var seed: UInt64 = 0
    @Option(help: "Output folder (default: the genotype's folder).") var out: String?
    @Flag(help: "Continue from OUT/train.ckpt.safetensors when it exists.") var resume = false
    @Option(help: "Write the results as JSON to this file (also OUT/train.json).") var json: String?

    func run() throws {
        let g = try Genotype.read(from: URL(fileURLWithPath: genotype))
        var cfg = RetrainConfig()
        cfg.model = try model.modelConfig()
        cfg.epochs = epochs; cfg.batchSize = batch; cfg.learningRate = lr; cfg.seed = seed
        if let drw { guard drw >= 1 else { throw CLIError("--drw must be a 1-based epoch") }; cfg.drwEpoch = drw - 1 }
        let (train, test) = try model.load(size: cfg.model.inputSize)
        let dir = out ?? URL(fileURLWithPath: genotype).deletingLastPathComponent().path
        let r = try runTrain(g, cfg, train: train, test: test, out: dir, resume: resume, evaluateEvery: evalEvery)
        if let json { try writeJSON(r, to: json) }
    }
}

struct NASCompare: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Search + retrain every method with the same budget and seeds; a table, JSON and SVG plots.",
        discussion: "Each run lives in OUT/<method>-s<seed>/ and resumes there, so an interrupted comparison continues.")

    @OptionGroup var model: NASModelOptions
    @Option(help: "Methods, comma-separated.") var methods = "darts,fairdarts,ssf"
    @Option(help: "SSF-NAS reading: pretrain or ssl-search.") var ssfMode = "pretrain"
    @Option(help: "Seeds, comma-separated.") var seeds = "0,1"
    @Option(help: "Search epochs.") var searchEpochs = 10
    @Option(help: "SSF pretraining epochs.") var sslEpochs = 5
    @Option(help: "Search batch size.") var batch = 32
    @Option(help: "Cap on search steps per epoch.") var maxSteps: Int?
    @Option(help: "Retraining epochs.") var trainEpochs = 20
    @Option(help: "Retraining batch size.") var trainBatch = 64
    @Option(help: "Deferred re-weighting from this retraining epoch (1-based).") var drw: Int?
    @Option(help: "Output folder.") var out = "runs/nas/compare"
    @Option(help: "Write the table as JSON to this file (also OUT/compare.json).") var json: String?

    func run() throws {
        let ms = try methods.split(separator: ",").map { try nasMethod(String($0)) }
        let ss = try seeds.split(separator: ",").map { s -> UInt64 in guard let v = UInt64(s) else { throw CLIError("bad seed '\(s)'") }; return v }
        guard let mode = SSFMode(rawValue: ssfMode) else { throw CLIError("unknown --ssf-mode '\(ssfMode)'") }
        let mc = try model.modelConfig()
        let (train, test) = try model.load(size: mc.inputSize)
        struct Row: Codable { var method: String; var seed: UInt64; var searchSeconds: Double; var trainSeconds: Double; var test: LongTailEvaluation; var genotype: Genotype }
        var rows: [Row] = []
        for m in ms {
            for s in ss {
                let dir = "\(out)/\(m.rawValue)-s\(s)"
                var sc = SearchConfig()
                sc.method = m; sc.ssfMode = mode; sc.model = mc; sc.epochs = searchEpochs; sc.sslEpochs = sslEpochs
                sc.batchSize = batch; sc.maxStepsPerEpoch = maxSteps; sc.seed = s
                let sr = try runSearch(sc, train: train, out: dir, resume: true)
                var rc = RetrainConfig()
                rc.model = mc; rc.model.ops = DARTSOp.darts; rc.epochs = trainEpochs; rc.batchSize = trainBatch; rc.seed = s
                if let drw { rc.drwEpoch = drw - 1 }
                let tr = try runTrain(sr.genotype, rc, train: train, test: test, out: dir, resume: true, evaluateEvery: max(1, trainEpochs))
                rows.append(Row(method: m.rawValue, seed: s, searchSeconds: sr.seconds, trainSeconds: tr.seconds, test: tr.test, genotype: sr.genotype))
            }
        }
        print("")
        printTable(["method", "seed", "search s", "train s", "overall %", "many %", "medium %", "few %"], rows.map {
            [$0.method, "\($0.seed)", fmt($0.searchSeconds, 0), fmt($0.trainSeconds, 0), fmt(100 * $0.test.overall, 2), fmt(100 * $0.test.many, 2), fmt(100 * $0.test.medium, 2), fmt(100 * $0.test.few, 2)]
        })
        var means: [[Double]] = []
        print("")
        printTable(["method", "runs", "mean overall %", "mean many %", "mean medium %", "mean few %"], ms.map { m in
            let r = rows.filter { $0.method == m.rawValue }
            func mean(_ f: (Row) -> Double) -> Double { r.map(f).reduce(0, +) / Double(max(r.count, 1)) }
            let v = [mean { $0.test.overall }, mean { $0.test.many }, mean { $0.test.medium }, mean { $0.test.few }]
            means.append(v)
            return [m.rawValue, "\(r.count)"] + v.map { fmt(100 * $0, 2) }
        })
        try ensureDir(out)
        try writeText(GenotypeSVG.barChart(title: "\(model.dataset) IF \(Int(model.imbalance)): mean test accuracy over seeds \(seeds)",
                                           groups: ms.map(\.rawValue), series: ["overall", "many", "medium", "few"], values: means), to: out + "/accuracy.svg")
        try writeJSON(rows, to: out + "/compare.json")
        if let json { try writeJSON(rows, to: json) }
        print("wrote \(out)/compare.json, accuracy.svg; genotypes in \(out)/<method>-s<seed>/genotype.svg")
    }
}

struct NASBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Supernet step throughput (images/s): weight step and first-order search step.",
        discussion: "Same supernet and batch as bench/nas_torch.py (softmax mixed ops, 8 DARTS ops).")

    @OptionGroup var model: NASModelOptions
    @Option(help: "Batch size.") var batch = 32
    @Option(help: "Timed steps.") var steps = 10
    @Option(help: "Untimed warm-up steps.") var warmup = 2
    @Option(help: "Write results as JSON to this file.") var json: String?

    func run() throws {
        let mc = try model.modelConfig()
        var rng = RNG(seed: 0)
        let net = DARTSSupernet(mc, rng: &rng)
        let an = Tensor.normal([mc.edgesPerCell, mc.ops.count], std: 1e-3, rng: &rng, requiresGrad: true)
        let ar = Tensor.normal([mc.edgesPerCell, mc.ops.count], std: 1e-3, rng: &rng, requiresGrad: true)
        let wopt = SGD(net.trainableParameters(), lr: 0.025, momentum: 0.9, weightDecay: 3e-4)
        let aopt = Adam([an, ar], lr: 3e-4, betas: (0.5, 0.999), weightDecay: 1e-3)
        let x = Tensor.normal([batch, mc.inputChannels, mc.inputSize, mc.inputSize], rng: &rng)
        let y = (0..<batch).map { _ in rng.int(mc.classes) }
        func weightStep() {
            let (wn, wr) = withNoGrad { (an.softmax(axis: -1), ar.softmax(axis: -1)) }
            let loss = Loss.crossEntropy(net.forward(x, normal: wn, reduce: wr), y)
            wopt.zeroGrad(); loss.backward(); clipGradNorm(wopt.parameters, maxNorm: 5); wopt.step()
        }
        func alphaStep() {
            for p in wopt.parameters { p.requiresGrad = false }
            let loss = Loss.crossEntropy(net.forward(x, normal: an.softmax(axis: -1), reduce: ar.softmax(axis: -1)), y)
            aopt.zeroGrad(); loss.backward(); aopt.step()
            for p in wopt.parameters { p.requiresGrad = true }
        }
        func time(_ f: () -> Void) -> [Double] {
            var t: [Double] = []
            for i in 0..<(warmup + steps) { let t0 = now(); f(); if i >= warmup { t.append(now() - t0) } }
            return t.sorted()
        }
        MemoryStats.resetPeak()
        let tw = time(weightStep), ts = time { alphaStep(); weightStep() }
        let mw = tw[tw.count / 2], msearch = ts[ts.count / 2]
        print("supernet C=\(mc.channels), \(mc.cells) cells, \(mc.inputSize)x\(mc.inputSize), \(mc.ops.count) ops, \(net.parameterCount) weights; batch \(batch); \(Kernels.threads) threads")
        printTable(["step", "ms (median)", "images/s", "peak tensor MB"], [
            ["weight (fwd+bwd+SGD)", fmt(mw * 1e3), fmt(Double(batch) / mw, 1), fmt(Double(MemoryStats.peak) / 1e6)],
            ["search (α step + weight step)", fmt(msearch * 1e3), fmt(Double(2 * batch) / msearch, 1), ""],
        ])
        if let json {
            struct Out: Encodable { let framework: String; let channels: Int; let cells: Int; let input_size: Int; let batch: Int; let threads: Int
                let weight_step_ms: [Double]; let search_step_ms: [Double]; let weight_images_per_second: Double; let search_images_per_second: Double; let peak_tensor_mb: Double }
            try writeJSON(Out(framework: "frugal", channels: mc.channels, cells: mc.cells, input_size: mc.inputSize, batch: batch, threads: Kernels.threads,
                              weight_step_ms: tw.map { $0 * 1e3 }, search_step_ms: ts.map { $0 * 1e3 }, weight_images_per_second: Double(batch) / mw,
                              search_images_per_second: Double(2 * batch) / msearch, peak_tensor_mb: Double(MemoryStats.peak) / 1e6), to: json)
        }
    }
}

/// The NAS part of `frugal quickstart`: a few FairDARTS search steps on small generated
/// long-tailed images; prints and returns the derived genotype.
func nasQuickstart(quick: Bool, seed: UInt64) throws -> Genotype {
    let train = try NASData.synthetic(perClass: quick ? 24 : 60, size: 8, classes: 10, imbalance: 5, seed: seed)
    var cfg = SearchConfig()
    cfg.method = .fairdarts
    cfg.model.channels = 4; cfg.model.cells = 3; cfg.model.inputSize = 8
    cfg.epochs = quick ? 1 : 2; cfg.batchSize = 8; cfg.maxStepsPerEpoch = quick ? 3 : 8; cfg.seed = seed
    print("[nas] FairDARTS search on \(train.count) generated long-tailed 8x8 images (supernet C=4, 3 cells, 14 edges a cell)")
    let search = try ArchitectureSearch(config: cfg, train: train)
    let g = try search.run { r in
        print("[nas] epoch \(r.epoch): α-half loss \(fmt(r.alphaLoss, 3)), \(fmt(r.imagesPerSecond, 0)) images/s")
    }
    print("[nas] derived genotype: \(g.summary)")
    return g
}
