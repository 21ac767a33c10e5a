import Foundation
import Testing
@testable import FrugalModels
import FrugalCore
import FrugalNN
import FrugalData

/// Committed fixtures under Tests/FrugalModelsTests/Fixtures (scripts/make_bert_fixture.py).
enum ModelFixtures {
    static func url(_ path: String) throws -> URL {
        let base = try #require(Bundle.module.url(forResource: "Fixtures", withExtension: nil), "missing Fixtures folder")
        return base.appendingPathComponent(path)
    }
    static func tensors(_ path: String) throws -> [String: Tensor] { try Checkpoint.load(url(path)) }
    /// The real-data folder (`$FRUGAL_DATA` or ~/.cache/frugal-data).
    static func data(_ path: String) -> URL? {
        let u = URL(fileURLWithPath: DataPaths.root).appendingPathComponent(path)
        return FileManager.default.fileExists(atPath: u.path) ? u : nil
    }
    static func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count, "sizes \(a.count) vs \(b.count)")
        return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }
}

func tokenBatch(_ t: [String: Tensor], types: Bool = true) -> TokenBatch {
    let ids = t["input_ids"]!
    return TokenBatch(ids: ids.array.map { Int($0) }, typeIds: types ? t["token_type_ids"]!.array.map { Int($0) } : nil,
                      mask: t["attention_mask"]!.array.map { Int($0) }, batch: ids.shape[0], length: ids.shape[1])
}

@Suite struct BERTTests {
    @Test func tinyRandomBertMatchesTransformers() throws {
        let model = try BertModel.load(directory: ModelFixtures.url("bert_tiny"))
        let ref = try ModelFixtures.tensors("bert_tiny_expected.safetensors")
        let x = tokenBatch(ref)
        let h = withNoGrad { model(x) }
        #expect(h.shape == ref["last_hidden_state"]!.shape)
        #expect(ModelFixtures.maxAbsDiff(h.array, ref["last_hidden_state"]!.array) < 1e-4)
        let e = withNoGrad { model.sentenceEmbeddings(x) }
        #expect(ModelFixtures.maxAbsDiff(e.array, ref["embedding"]!.array) < 1e-5)
        #expect(model.namedParameters().count == 5 + 16 * 2)
        #expect(model.stateDict()["encoder.layer.1.attention.self.query.weight"] != nil)
        #expect(model.trainableParameters().isEmpty)
    }

    @Test func skippingAllLayersReturnsEmbeddings() throws {
        let model = try BertModel.load(directory: ModelFixtures.url("bert_tiny"))
        let x = tokenBatch(try ModelFixtures.tensors("bert_tiny_expected.safetensors"))
        let h = withNoGrad { model(x, activeLayers: [false, false]) }
        let e = withNoGrad { model.embeddings(x) }
        #expect(h.array == e.array)
    }

    @Test func loadErrorsNameTheFileAndTensor() throws {
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("frugal-bert-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tmp) }
        try FileManager.default.copyItem(at: ModelFixtures.url("bert_tiny/config.json"), to: tmp.appendingPathComponent("config.json"))
        try Checkpoint.save(["embeddings.LayerNorm.weight": Tensor.ones([32])], to: tmp.appendingPathComponent("model.safetensors"))
        #expect { try BertModel.load(directory: tmp) } throws: { e in "\(e)".contains("model.safetensors") && "\(e)".contains("no tensor") }
    }

    /// Real all-MiniLM-L6-v2 (skipped when the model is absent; the tiny fixture covers the code).
    @Test func miniLMHiddenStatesAndCosine() throws {
        guard let dir = ModelFixtures.data("all-MiniLM-L6-v2/model.safetensors")?.deletingLastPathComponent() else { return }
        let model = try BertModel.load(directory: dir)
        let ref = try ModelFixtures.tensors("minilm_expected.safetensors")
        let tok = try WordPieceTokenizer(tokenizerJSON: dir.appendingPathComponent("tokenizer.json").path)
        let sents = ["A man is eating food.", "A man is eating a piece of bread.", "The cat sleeps."]
        let x = TokenBatch(tok.encode(batch: sents, maxLength: nil, padding: .longest))
        #expect(x.ids == ref["input_ids"]!.array.map { Int($0) })
        let h = withNoGrad { model(x) }
        #expect(ModelFixtures.maxAbsDiff(h.array, ref["last_hidden_state"]!.array) < 1e-4)
        let e = withNoGrad { model.sentenceEmbeddings(x) }.array
        let cos = (0..<384).reduce(Float(0)) { $0 + e[$1] * e[384 + $1] }
        #expect(abs(cos - 0.755) < 0.005)
    }
}
