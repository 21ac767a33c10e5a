import Foundation
import XCTest
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
final class FlowerDeviceTests: XCTestCase {
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

    func testTrainReplyCarriesUpdatedArraysAndNumExamples() throws {
        let d = try device()
        let global = globalModel()
        let (reply, record) = d.handle(FlowerMessage(metadata: instruction("train"), content: content(global)), traffic: MessageTraffic())
        XCTAssertNil(record.error)
        XCTAssertNil(reply.error)
        XCTAssertEqual(reply.metadata.replyToMessageID, String(repeating: "e", count: 64))
        XCTAssertEqual(reply.metadata.dstNodeID, 1)
        XCTAssertEqual(reply.metadata.srcNodeID, 99)
        let out = try XCTUnwrap(reply.content)
        XCTAssertEqual(out.keys, ["arrays", "metrics"])
        let arrays = try XCTUnwrap(out.arrayRecords.first?.value)
        XCTAssertEqual(arrays.keys, global.keys)
        var changed = 0
        for (name, a) in arrays.items {
            XCTAssertEqual(a.shape, global[name]!.shape)
            XCTAssertEqual(a.dtype, "float32")
            if try a.npy().floats() != global[name]!.npy().floats() { changed += 1 }
        }
        XCTAssertGreaterThan(changed, 0)
        let metrics = try XCTUnwrap(out.metricRecords.first?.value)
        XCTAssertEqual(metrics["num-examples"], .int(40))
        XCTAssertEqual(record.metrics["num-examples"], 40)
        XCTAssertTrue(metrics["train_loss"]!.number!.isFinite)
        // The config record set the local training.
        let app = d.app as! ImageClassifierApp
        XCTAssertEqual(app.lastTrain?.config.steps, 3)
        XCTAssertEqual(app.lastTrain?.config.learningRate, 0.1)
        // Same message, same reply arrays (the data order comes from the seed and the round).
        let (again, _) = d.handle(FlowerMessage(metadata: instruction("train"), content: content(global)), traffic: MessageTraffic())
        XCTAssertEqual(again.content?.arrayRecords.first?.value.items.map(\.value), arrays.items.map(\.value))
    }

    func testEvaluateAndTypedActions() throws {
        let d = try device()
        let (reply, record) = d.handle(FlowerMessage(metadata: instruction("evaluate"), content: content(globalModel())), traffic: MessageTraffic())
        XCTAssertNil(record.error)
        let metrics = try XCTUnwrap(reply.content?.metricRecords.first?.value)
        XCTAssertEqual(metrics["num-examples"], .int(20))
        let acc = try XCTUnwrap(metrics["eval_acc"]?.number)
        XCTAssertTrue((0...1).contains(acc))
        let (typed, typedRecord) = d.handle(FlowerMessage(metadata: instruction("train.finetune"), content: content(globalModel())), traffic: MessageTraffic())
        XCTAssertNil(typedRecord.error)
        XCTAssertNotNil(typed.content?.arrayRecords.first)
    }

    func testUnsupportedMessageTypesGetAnErrorReply() throws {
        let d = try device()
        for type in ["query", "query.stats", "system"] {
            let (reply, record) = d.handle(FlowerMessage(metadata: instruction(type), content: content(globalModel())), traffic: MessageTraffic())
            XCTAssertNil(reply.content)
            XCTAssertEqual(reply.error?.code, 2)
            XCTAssertEqual(reply.metadata.messageType, type)
            XCTAssertTrue(reply.error?.reason.contains("message type '\(type)' is not supported") ?? false, "\(String(describing: reply.error))")
            XCTAssertTrue(record.error?.contains("handles 'train' and 'evaluate'") ?? false)
            // The error reply is a valid Flower message object.
            XCTAssertNoThrow(try ObjectCodec.deflate(reply))
        }
    }

    func testModelMismatchesAreNamedInTheErrorReply() throws {
        let d = try device()
        func reason(_ arrays: ArrayRecord, _ config: ConfigRecord = ConfigRecord()) -> String {
            d.handle(FlowerMessage(metadata: instruction("train"), content: content(arrays, config: config)), traffic: MessageTraffic()).0.error?.reason ?? ""
        }
        var wrongShape = globalModel()
        wrongShape["1.bias"] = FlowerArray(float32: [0, 0, 0], shape: [3])
        XCTAssertTrue(reason(wrongShape).contains("array '1.bias' of 'arrays' has shape [3]; the model's parameter has [2]"), reason(wrongShape))
        var missing = globalModel()
        missing["0.bias"] = nil
        missing["fc.weight"] = FlowerArray(float32: [0], shape: [1])
        let m = reason(missing)
        XCTAssertTrue(m.contains("lacks the model's 0.bias"), m)
        XCTAssertTrue(m.contains("has fc.weight that the model does not"), m)
        var doubles = globalModel()
        doubles["1.bias"] = FlowerArray(try NPYArray(dtype: .float64, shape: [2], data: [UInt8](repeating: 0, count: 16)))
        XCTAssertTrue(reason(doubles).contains("array '1.bias' of 'arrays' is float64"))
        XCTAssertTrue(reason(globalModel(), ConfigRecord([("lr", .string("fast"))])).contains("'lr' is string(\"fast\"), expected a number"))
        let two = RecordDict([("a", .arrays(globalModel())), ("b", .arrays(globalModel()))])
        let r2 = d.handle(FlowerMessage(metadata: instruction("train"), content: two), traffic: MessageTraffic()).0.error?.reason ?? ""
        XCTAssertTrue(r2.contains("must carry one ArrayRecord (the model); this one has 2 (a, b)"), r2)
    }

    func testModelMappingRoundTrip() throws {
        var rng = RNG(seed: 1)
        let model = ImageMLP([16, 8, 2], rng: &rng)
        XCTAssertEqual(ModelMapping.layout(of: model).map(\.name), ["0.weight", "0.bias", "1.weight", "1.bias"])
        XCTAssertEqual(ModelMapping.layout(of: model).map(\.shape), [[8, 16], [8], [2, 8], [2]])
        let g = globalModel()
        try ModelMapping.load(g, into: model)
        let back = ModelMapping.export(model, order: ["1.bias", "0.weight", "0.bias", "1.weight"])
        XCTAssertEqual(back.keys, ["1.bias", "0.weight", "0.bias", "1.weight"])
        for (name, a) in back.items { XCTAssertEqual(a, g[name]) }
    }
}
