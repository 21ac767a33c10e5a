import ArgumentParser
import Foundation
import FrugalData

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Download data sets and describe data sets and checkpoints.",
        subcommands: [Download.self, Info.self])

    struct Download: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Fetch MNIST, Fashion-MNIST or CIFAR-10 from the official sources, verify their MD5 and unpack.")
        @Argument(help: "mnist, fashion-mnist or cifar10") var dataset: String
        @Option(help: "Folder to fill (default $FRUGAL_DATA or ~/.cache/frugal-data).") var to: String?
        @Option(help: "Another base URL (a mirror serving the same file names).") var baseURL: String?
        @Flag(help: "Download even when the files are present.") var force = false

        func run() throws {
            guard let d = DatasetDownloader.Dataset(rawValue: dataset) else {
                throw CLIError("unknown data set '\(dataset)': use \(DatasetDownloader.Dataset.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            let dir = try DatasetDownloader.download(d, root: to ?? DataPaths.root, baseURL: baseURL, force: force) { print($0) }
            print("ready: \(dir)")
        }
    }

    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Describe a data set folder (MNIST/Fashion-MNIST IDX, CIFAR-10 binary) or a checkpoint (.safetensors, sharded folder, .gguf).")
        @Argument(help: "A data set folder or a checkpoint file/folder.") var path: String
        @Option(help: "Also show the long-tailed training subset with this imbalance factor (e.g. 100 for CIFAR10-LT).") var imbalance: Double?
        @Option(help: "Seed of the long-tailed subset.") var seed: UInt64 = 0
        @Option(help: "Write the description as JSON to this file.") var json: String?

        func run() throws {
            if let imbalance, imbalance < 1 { throw ValidationError("--imbalance must be at least 1, got \(imbalance)") }
            try describe(path: path, json: json, imbalance: imbalance, seed: seed)
        }
    }
}

/// Describes a data set folder; checkpoints go to the formats' describer.
func describe(path: String, json: String?, imbalance: Double? = nil, seed: UInt64 = 0) throws {
    let fm = FileManager.default
    var isDir: ObjCBool = false
    guard fm.fileExists(atPath: path, isDirectory: &isDir) else { throw CLIError("\(path): no such file or folder") }
    let files = isDir.boolValue ? ((try? fm.contentsOfDirectory(atPath: path)) ?? []) : []
    struct Split: Encodable { let split: String; let count: Int; let classCounts: [Int] }
    struct DataInfo: Encodable { let path: String; let kind: String; let shape: [Int]; let classes: [String]; let splits: [Split] }
    var info: DataInfo?
    func withLongTail(_ tr: ImageDataset) throws -> [Split] {
        guard let imbalance else { return [] }
        let lt = try tr.longTailed(imbalance: imbalance, seed: seed)
        return [Split(split: "train-LT(IF \(Int(imbalance)))", count: lt.count, classCounts: lt.classCounts())]
    }
    if files.contains("train-images-idx3-ubyte.gz") || files.contains("train-images-idx3-ubyte") {
        let tr = try MNIST.load(dir: path, train: true), te = try MNIST.load(dir: path, train: false)
        info = DataInfo(path: path, kind: "IDX images (MNIST layout)", shape: [tr.channels, tr.height, tr.width], classes: tr.classNames,
                        splits: try [Split(split: "train", count: tr.count, classCounts: tr.classCounts()), Split(split: "test", count: te.count, classCounts: te.classCounts())] + withLongTail(tr))
    } else if files.contains("data_batch_1.bin") {
        let tr = try CIFAR10.load(dir: path, train: true), te = try CIFAR10.load(dir: path, train: false)
        info = DataInfo(path: path, kind: "CIFAR-10 binary batches", shape: [tr.channels, tr.height, tr.width], classes: tr.classNames,
                        splits: try [Split(split: "train", count: tr.count, classCounts: tr.classCounts()), Split(split: "test", count: te.count, classCounts: te.classCounts())] + withLongTail(tr))
    }
    if let info {
        print("\(info.path): \(info.kind), images \(info.shape.map(String.init).joined(separator: "x"))")
        printTable(["split", "images"] + info.classes, info.splits.map { [$0.split, "\($0.count)"] + $0.classCounts.map(String.init) })
        if let json { try writeJSON(info, to: json) }
        return
    }
    try describeCheckpoint(path: path, json: json)
}
