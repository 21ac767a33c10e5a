import ArgumentParser
import Foundation
import FrugalCore
import FrugalNN
import FrugalData
import FrugalModels

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train an image classifier on a real data set and report test accuracy.",
        discussion: "Example: frugal train --model lenet --dataset mnist --epochs 2")

    @Option(help: "Model: lenet.") var model = "lenet"
    @Option(help: "Data set: mnist, fashion-mnist, cifar10 (with random crop + flip).") var dataset = "mnist"
    @Option(help: "Data directory (default $FRUGAL_DATA or ~/.cache/frugal-data).") var data: String?
    @Option(help: "Epochs.") var epochs = 2
    @Option(help: "Batch size.") var batch = 64
    @Option(help: "Learning rate (SGD, momentum 0.9).") var lr: Float = 0.01
    @Flag(help: "Cosine learning-rate schedule.") var cosine = false
    @Option(help: "Seed for initialisation and shuffling.") var seed: UInt64 = 0
    @Option(help: "Save the trained weights (safetensors) here.") var save: String?
    @Option(help: "Write per-epoch results as JSON to this file.") var json: String?

    func validate() throws {
        guard epochs > 0, batch > 0, lr > 0 else { throw ValidationError("--epochs, --batch and --lr must be positive") }
    }

    func run() throws {
        let (train, test, norm): (ImageDataset, ImageDataset, Normalization)
        switch dataset {
        case "mnist": (train, test, norm) = (try MNIST.load(dir: data.map { $0 + "/mnist" }, train: true), try MNIST.load(dir: data.map { $0 + "/mnist" }, train: false), MNIST.normalization)
        case "fashion-mnist": (train, test, norm) = (try FashionMNIST.load(dir: data.map { $0 + "/fashion-mnist" }, train: true), try FashionMNIST.load(dir: data.map { $0 + "/fashion-mnist" }, train: false), FashionMNIST.normalization)
        case "cifar10": (train, test, norm) = (try CIFAR10.load(dir: data.map { $0 + "/cifar-10-batches-bin" }, train: true), try CIFAR10.load(dir: data.map { $0 + "/cifar-10-batches-bin" }, train: false), CIFAR10.normalization)
        default: throw CLIError("unknown data set '\(dataset)': use mnist, fashion-mnist or cifar10")
        }
        guard model == "lenet" else { throw CLIError("unknown model '\(model)': use lenet") }
        var rng = RNG(seed: seed)
        let net = LeNet(inChannels: train.channels, classes: train.classes, imageSize: train.height, rng: &rng)
        var cfg = ClassifierTrainingConfig()
        cfg.epochs = epochs; cfg.batchSize = batch; cfg.learningRate = lr; cfg.cosine = cosine; cfg.seed = seed
        print("\(dataset): \(train.count) train, \(test.count) test; LeNet \(net.parameterCount) parameters; \(Kernels.threads) threads")
        let isTTY = isatty(1) != 0
        let augmentation: (any Augmentation)? = dataset == "cifar10"
            ? AugmentationPipeline([RandomCrop(size: 32, padding: 4), RandomHorizontalFlip()]) : nil
        let reports = try trainClassifier(net, train: train, test: test, normalization: norm, augmentation: augmentation, config: cfg, progress: { r in
            if isTTY { print("\r\u{1B}[K", terminator: "") }
            print("epoch \(r.epoch)/\(epochs)  loss \(fmt(r.trainLoss, 4))  train acc \(fmt(100 * r.trainAccuracy, 2))%  test acc \(fmt(100 * r.testAccuracy, 2))%  \(fmt(r.seconds))s  \(fmt(r.imagesPerSecond, 0)) img/s  loader wait \(fmt(100 * r.loaderWaitShare, 2))%")
        }, stepProgress: isTTY ? { b, total, loss in
            if b % 20 == 0 || b == total { print("\r\u{1B}[K  step \(b)/\(total) loss \(fmt(loss, 4))", terminator: ""); flushStdout() }
        } : nil)
        if let save {
            try Checkpoint.save(net, to: URL(fileURLWithPath: save), metadata: ["model": model, "dataset": dataset])
            print("saved \(save)")
        }
        if let json {
            struct Out: Encodable { let model: String; let dataset: String; let config: ClassifierTrainingConfig; let epochs: [EpochReport]; let final_test_accuracy: Double }
            try writeJSON(Out(model: model, dataset: dataset, config: cfg, epochs: reports, final_test_accuracy: reports.last?.testAccuracy ?? 0), to: json)
        }
    }
}
