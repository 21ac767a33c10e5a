import Foundation
import Testing
import FrugalCore
import FrugalNN
import FrugalData
import FrugalFederated
@testable import FrugalFlower

/// A small classifier app on generated 4x4 images (two classes: bright top or bright bottom).
enum TinyApp {
    static func data(count: Int, seed: UInt64) throws -> ImageDataset {
        var rng = RNG(seed: seed)
        var pixels = [UInt8](repeating: 0, count: count * 16), labels = [Int32](repeating: 0, count: count)
        for i in 0..<count {
            let c = rng.int(2)
            labels[i] = Int32(c)
            for p in 0..<16 { pixels[i * 16 + p] = UInt8((p < 8) == (c == 0) ? 200 + rng.int(55) : rng.int(60)) }
        }
        return try ImageDataset(pixels: pixels, labels: labels, channels: 1, height: 4, width: 4, classes: 2)
    }

    static func make() throws -> ImageClassifierApp {
        var rng = RNG(seed: 3)
        var cfg = LocalTrainingConfig()
        cfg.batchSize = 8; cfg.learningRate = 0.1; cfg.steps = 4; cfg.seed = 5
        return ImageClassifierApp(model: ImageMLP([16, 8, 2], rng: &rng), train: try data(count: 40, seed: 1),
                                  test: try data(count: 20, seed: 2), normalization: Normalization(mean: [0.5], std: [0.5]),
                                  defaults: cfg)
    }
}

/// Message handling of the device: train, evaluate, and the errors it answers with.
@Suite struct FlowerDeviceTests {
    func instruction(_ type: String, group: String = "1") -> FlowerMetadata {
        var m = FlowerMetadata()
        m.runID = 7; m.messageID = String(repeating: "e", count: 64); m.srcNodeID = 1; m.dstNodeID = 99
        m.groupID = group; m.messageType = type; m.createdAt = Date().timeIntervalSince1970; m.ttl = 600
        return m
    }

    func globalModel(shapes: [(String, [Int])] = [("0.weight", [8, 16]), ("0.bias", [8]), ("1.weight", [2, 8]), ("1.bias", [2])]) -> ArrayRecord {
        ArrayRecord(shapes.map { name, shape in
            let n = shape.reduce(1, *)
            return (name, FlowerArray(float32: (0..<n).map { Float(($0 * 37) % 11) / 50 - 0.1 }, shape: shape))
        })
    }

    func content(_ arrays: ArrayRecord, config: ConfigRecord = ConfigRecord([("lr", .double(0.1)), ("local-steps", .int(3))])) -> RecordDict {
        RecordDict([("arrays", .arrays(arrays)), ("config", .config(config))])
    }

    func device() throws -> FlowerDevice {
        let identity = NodeIdentity.generate()
        return FlowerDevice(fleet: FleetClient(transport: HTTPFleetTransport(host: "127.0.0.1", port: 1, identity: identity), identity: identity),
                            app: try TinyApp.make())
    }

    @Test func trainReplyCarriesUpdatedArraysAndNumExamples() throws {
        let d = try device()
        let global = globalModel()
        let (reply, record) = d.handle(FlowerMessage(metadata: instruction("train"), content: content(global)), traffic: MessageTraffic())
        #expect(record.error == nil)
        #expect(reply.error == nil)
        #expect(reply.metadata.replyToMessageID == String(repeating: "e", count: 64))
        #expect(reply.metadata.dstNodeID == 1)
        #expect(reply.metadata.srcNodeID == 99)
        let out = try #require(reply.content)
        #expect(out.keys == ["arrays", "metrics"])
        let arrays = try #require(out.arrayRecords.first?.value)
        #expect(arrays.keys == global.keys)
        var changed = 0
        for (name, a) in arrays.items {
            #expect(a.shape == global[name]!.shape)
            #expect(a.dtype == "float32")
            if try a.npy().floats() != global[name]!.npy().floats() { changed += 1 }
        }
        #expect(changed > 0)
        let metrics = try #require(out.metricRecords.first?.value)
        #expect(metrics["num-examples"] == .int(40))
        #expect(record.metrics["num-examples"] == 40)
        #expect(metrics["train_loss"]!.number!.isFinite)
        // The config record set the local training.
        let app = d.app as! ImageClassifierApp
        #expect(app.lastTrain?.config.steps == 3)
        #expect(app.lastTrain?.config.learningRate == 0.1)
        // Same message, same reply arrays (the data order comes from the seed and the round).
        let (again, _) = d.handle(FlowerMessage(metadata: instruction("train"), content: content(global)), traffic: MessageTraffic())
        #expect(again.content?.arrayRecords.first?.value.items.map(\.value) == arrays.items.map(\.value))
    }

    @Test func evaluateAndTypedActions() throws {
        let d = try device()
        let (reply, record) = d.handle(FlowerMessage(metadata: instruction("evaluate"), content: content(globalModel())), traffic: MessageTraffic())
        #expect(record.error == nil)
        let metrics = try #require(reply.content?.metricRecords.first?.value)
        #expect(metrics["num-examples"] == .int(20))
        let acc = try #require(metrics["eval_acc"]?.number)
        #expect((0...1).contains(acc))
        let (typed, typedRecord) = d.handle(FlowerMessage(metadata: instruction("train.finetune"), content: content(globalModel())), traffic: MessageTraffic())
        #expect(typedRecord.error == nil)
        #expect(typed.content?.arrayRecords.first != nil)
    }

    @Test func unsupportedMessageTypesGetAnErrorReply() throws {
        let d = try device()
        for type in ["query", "query.stats", "system"] {
            let (reply, record) = d.handle(FlowerMessage(metadata: instruction(type), content: content(globalModel())), traffic: MessageTraffic())
            #expect(reply.content == nil)
            #expect(reply.error?.code == 2)
            #expect(reply.metadata.messageType == type)
            #expect(reply.error?.reason.contains("message type '\(type)' is not supported") ?? false, "\(String(describing: reply.error))")
            #expect(record.error?.contains("handles 'train' and 'evaluate'") ?? false)
            // The error reply is a valid Flower message object.
            _ = try ObjectCodec.deflate(reply)
        }
    }

    @Test func modelMismatchesAreNamedInTheErrorReply() throws {
        let d = try device()
        func reason(_ arrays: ArrayRecord, _ config: ConfigRecord = ConfigRecord()) -> String {
            d.handle(FlowerMessage(metadata: instruction("train"), content: content(arrays, config: config)), traffic: MessageTraffic()).0.error?.reason ?? ""
        }
        var wrongShape = globalModel()
        wrongShape["1.bias"] = FlowerArray(float32: [0, 0, 0], shape: [3])
        #expect(reason(wrongShape).contains("array '1.bias' of 'arrays' has shape [3]; the model's parameter has [2]"), "\(reason(wrongShape))")
        var missing = globalModel()
        missing["0.bias"] = nil
        missing["fc.weight"] = FlowerArray(float32: [0], shape: [1])
        let m = reason(missing)
        #expect(m.contains("lacks the model's 0.bias"), "\(m)")
        #expect(m.contains("has fc.weight that the model does not"), "\(m)")
        var doubles = globalModel()
        doubles["1.bias"] = FlowerArray(try NPYArray(dtype: .float64, shape: [2], data: [UInt8](repeating: 0, count: 16)))
        #expect(reason(doubles).contains("array '1.bias' of 'arrays' is float64"))
        #expect(reason(globalModel(), ConfigRecord([("lr", .string("fast"))])).contains("'lr' is string(\"fast\"), expected a number"))
        let two = RecordDict([("a", .arrays(globalModel())), ("b", .arrays(globalModel()))])
        let r2 = d.handle(FlowerMessage(metadata: instruction("train"), content: two), traffic: MessageTraffic()).0.error?.reason ?? ""
        #expect(r2.contains("must carry one ArrayRecord (the model); this one has 2 (a, b)"), "\(r2)")
    }

    @Test func modelMappingRoundTrip() throws {
        var rng = RNG(seed: 1)
        let model = ImageMLP([16, 8, 2], rng: &rng)
        #expect(ModelMapping.layout(of: model).map(\.name) == ["0.weight", "0.bias", "1.weight", "1.bias"])
        #expect(ModelMapping.layout(of: model).map(\.shape) == [[8, 16], [8], [2, 8], [2]])
        let g = globalModel()
        try ModelMapping.load(g, into: model)
        let back = ModelMapping.export(model, order: ["1.bias", "0.weight", "0.bias", "1.weight"])
        #expect(back.keys == ["1.bias", "0.weight", "0.bias", "1.weight"])
        for (name, a) in back.items { #expect(a == g[name]) }
    }
}
