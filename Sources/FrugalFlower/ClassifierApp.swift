import Foundation
import FrugalNN
import FrugalData
import FrugalModels
import FrugalFederated

/// What a Frugal device does with the content of Flower's train and evaluate messages.
public protocol FlowerClientApp: AnyObject {
    /// The reply content to a "train" message.
    func train(_ content: RecordDict, metadata: FlowerMetadata) throws -> RecordDict
    /// The reply content to an "evaluate" message.
    func evaluate(_ content: RecordDict, metadata: FlowerMetadata) throws -> RecordDict
}

/// An image classifier trained with Frugal on the device's own data, answering Flower's FedAvg
/// the way Flower's example ClientApps do:
///
/// - train: the message holds one `ArrayRecord` (the global model) and optionally a
///   `ConfigRecord` (`lr`, `local-steps` or `local-epochs`, `batch-size`, `momentum`,
///   `weight-decay`; missing keys fall back to `defaults`). The model is loaded from the arrays,
///   trained locally (`trainLocally`) and the reply holds `"arrays"` (the updated parameters,
///   same names and order) and `"metrics"` (`train_loss`, `num-examples` = the local data size,
///   FedAvg's weight).
/// - evaluate: the model is loaded and evaluated on the device's test data; the reply holds
///   `"metrics"` (`eval_loss`, `eval_acc`, `num-examples`).
public final class ImageClassifierApp: FlowerClientApp {
    public let model: any Layer
    public let trainData: ImageDataset
    public let testData: ImageDataset
    public let normalization: Normalization?
    /// Local training settings the messages' config records override.
    public var defaults: LocalTrainingConfig
    /// What the last train reply was computed from (for `--dump`).
    public private(set) var lastTrain: (received: ArrayRecord, sent: ArrayRecord, metrics: MetricRecord, config: LocalTrainingConfig)?

    public init(model: any Layer, train: ImageDataset, test: ImageDataset, normalization: Normalization?, defaults: LocalTrainingConfig) {
        self.model = model; self.trainData = train; self.testData = test; self.normalization = normalization; self.defaults = defaults
    }

    /// The one array record of `content` (error when there is none or more than one).
    static func arrays(of content: RecordDict, type: String) throws -> (String, ArrayRecord) {
        let records = content.arrayRecords
        guard records.count == 1 else {
            throw FlowerError(.content, "a \(type) message must carry one ArrayRecord (the model); this one has \(records.count)\(records.isEmpty ? "" : " (\(records.map(\.key).joined(separator: ", ")))")")
        }
        return (records[0].key, records[0].value)
    }

    /// The local training settings: `defaults` with the config record's values.
    func localConfig(_ content: RecordDict, metadata: FlowerMetadata) throws -> LocalTrainingConfig {
        var c = defaults
        // A different data order each round, reproducible from the seed.
        let round = content.serverRound ?? Int(metadata.groupID) ?? 0
        c.seed = defaults.seed &+ UInt64(truncatingIfNeeded: round) &* 1_000_003
        for (name, record) in content.configRecords {
            func number(_ key: String) throws -> Double? {
                guard let v = record[key] else { return nil }
                guard let d = v.number else { throw FlowerError(.content, "config '\(name)': '\(key)' is \(v), expected a number") }
                return d
            }
            func integer(_ key: String, min: Int) throws -> Int? {
                guard let v = record[key] else { return nil }
                guard let i = v.integer, i >= min else { throw FlowerError(.content, "config '\(name)': '\(key)' is \(v), expected an integer ≥ \(min)") }
                return i
            }
            if let lr = try number("lr") {
                guard lr > 0, lr.isFinite else { throw FlowerError(.content, "config '\(name)': lr \(lr) must be positive") }
                c.learningRate = Float(lr)
            }
            if let m = try number("momentum") { c.momentum = Float(m) }
            if let w = try number("weight-decay") { c.weightDecay = Float(w) }
            if let b = try integer("batch-size", min: 1) { c.batchSize = b }
            if let s = try integer("local-steps", min: 1) { c.steps = s }
            if let e = try integer("local-epochs", min: 1) { c.epochs = e; c.steps = nil }
        }
        return c
    }

    public func train(_ content: RecordDict, metadata: FlowerMetadata) throws -> RecordDict {
        let (name, received) = try Self.arrays(of: content, type: "train")
        let config = try localConfig(content, metadata: metadata)
        try ModelMapping.load(received, into: model, recordName: name)
        let stats = try trainLocally(model, on: trainData, normalization: normalization, config: config)
        let sent = ModelMapping.export(model, order: received.keys)
        guard sent.items.allSatisfy({ (try? $0.value.npy().floats())?.allSatisfy(\.isFinite) ?? false }) else {
            throw FlowerError(.content, "local training diverged (non-finite parameters, loss \(stats.loss)); lower lr (\(config.learningRate))")
        }
        let metrics = try MetricRecord([("train_loss", .double(stats.loss)), ("num-examples", .int(Int64(trainData.count)))])
        lastTrain = (received, sent, metrics, config)
        return RecordDict([("arrays", .arrays(sent)), ("metrics", .metrics(metrics))])
    }

    public func evaluate(_ content: RecordDict, metadata: FlowerMetadata) throws -> RecordDict {
        let (name, received) = try Self.arrays(of: content, type: "evaluate")
        try ModelMapping.load(received, into: model, recordName: name)
        let ev = try FrugalModels.evaluate(model, on: testData, normalization: normalization)
        let metrics = try MetricRecord([("eval_loss", .double(ev.loss)), ("eval_acc", .double(ev.accuracy)),
                                        ("num-examples", .int(Int64(testData.count)))])
        return RecordDict([("metrics", .metrics(metrics))])
    }
}
