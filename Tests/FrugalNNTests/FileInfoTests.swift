import Foundation
import Testing
@testable import FrugalNN

/// `CheckpointInfo.describe` for `frugal data info`.
@Suite struct FileInfoTests {
    static let miniLM = URL(fileURLWithPath: (ProcessInfo.processInfo.environment["FRUGAL_DATA"]
        ?? NSString(string: "~/.cache/frugal-data").expandingTildeInPath) + "/all-MiniLM-L6-v2")

    @Test func describesGGUF() throws {
        let info = try CheckpointInfo.describe(FormatFixtures.url("tiny", "gguf"))
        #expect(info.format == "gguf" && info.formatVersion == 3 && info.tensorCount == 16)
        #expect(info.fileBytes == 4320)
        let q8 = try #require(info.tensors.first { $0.name == "q8_0" })
        #expect(q8.dtype == "Q8_0" && q8.shape == [3, 64] && q8.elements == 192 && q8.bytes == 3 * 2 * 34)
        #expect(info.parameterCount == info.tensors.reduce(0) { $0 + $1.elements })
        #expect(info.dtypes.first { $0.dtype == "F32" }?.tensors == 2)
        #expect(info.dtypes.map(\.bytes) == info.dtypes.map(\.bytes).sorted(by: >))
        #expect(info.metadata.first { $0.key == "tokenizer.ggml.tokens" }?.value == "[5 x string]")
        #expect(info.metadata.first { $0.key == "test.arr_i32" }?.value == "[1, -2, 3]")
        #expect(info.metadata.first { $0.key == "test.string" }?.value == "\"héllo ✓ gguf\"")
        let table = info.table()
        #expect(table.contains("format:     gguf v3, 1 file, 4.32 KB"))
        #expect(table.contains("tensors:    16"))
        #expect(table.contains("q8_0    Q8_0   [3, 64]"))
        // JSON round trip.
        let back = try JSONDecoder().decode(CheckpointInfo.self, from: info.json())
        #expect(back == info)
        // A folder holding a single GGUF file.
        let dir = try FormatTempDir()
        try FileManager.default.copyItem(at: FormatFixtures.url("tiny", "gguf"), to: dir.file("model.gguf"))
        #expect(try CheckpointInfo.describe(dir.url).tensorCount == 16)
    }

    @Test func describesSafetensorsAndShards() throws {
        let single = try CheckpointInfo.describe(FormatFixtures.url("python_mixed", "safetensors"))
        #expect(single.format == "safetensors" && single.tensorCount == 10)
        #expect(single.metadata.contains(CheckpointInfo.Entry(key: "note", value: "mixed \"dtypes\"\\n")))
        #expect(single.tensors.first { $0.name == "bf16" }?.bytes == 8)
        #expect(single.tensors.allSatisfy { $0.file == nil })

        let dir = try FormatTempDir()
        let tensors = (0..<10).map { i in SafetensorsWriter.Tensor(name: "layers.\(i).weight", shape: [8, 8], floats: [Float](repeating: 1, count: 64), storedAs: i < 5 ? .float32 : .bfloat16) }
        try SafetensorsWriter.writeSharded(tensors, metadata: ["format": "pt"], to: dir.url, maxShardBytes: 600)
        try HFModelConfig.llama(LlamaConfig(vocabSize: 10, hiddenSize: 8, intermediateSize: 16, numHiddenLayers: 10,
                                            numAttentionHeads: 2)).write(to: dir.file("config.json"))
        let info = try CheckpointInfo.describe(dir.url)
        #expect(info.format == "safetensors-sharded" && info.tensorCount == 10 && info.parameterCount == 640)
        #expect(info.tensorBytes == 5 * 256 + 5 * 128)
        #expect(info.files.last == "model.safetensors.index.json" && info.files.count > 2)
        #expect(info.dtypes == [CheckpointInfo.DTypeTotal(dtype: "F32", tensors: 5, elements: 320, bytes: 1280),
                                CheckpointInfo.DTypeTotal(dtype: "BF16", tensors: 5, elements: 320, bytes: 640)])
        #expect(info.metadata.contains(CheckpointInfo.Entry(key: "index.total_size", value: "1920")))
        #expect(info.config?.first == CheckpointInfo.Entry(key: "model_type", value: "llama"))
        #expect(info.config?.contains(CheckpointInfo.Entry(key: "num_hidden_layers", value: "10")) == true)
        #expect(info.tensors.allSatisfy { $0.file?.hasPrefix("model-0000") == true })
        let table = info.table(maxTensors: 3)
        #expect(table.contains("... 7 more tensors") && table.contains("config.json:") && table.contains("file"))
        // The index file itself describes the same checkpoint.
        #expect(try CheckpointInfo.describe(dir.file("model.safetensors.index.json")).tensorCount == 10)
    }

    @Test func formatting() {
        #expect(CheckpointInfo.formatBytes(512) == "512 B")
        #expect(CheckpointInfo.formatBytes(1536) == "1.54 KB")
        #expect(CheckpointInfo.formatBytes(90_868_224) == "90.9 MB")
        #expect(CheckpointInfo.formatCount(22_713_216) == "22,713,216 (22.7M)")
        #expect(CheckpointInfo.formatCount(999) == "999")
    }

    @Test func errors() throws {
        let dir = try FormatTempDir()
        #expect(throws: FormatIOError.self) { try CheckpointInfo.describe(dir.url) }
        #expect(throws: FormatIOError.self) { try CheckpointInfo.describe(dir.file("missing.safetensors")) }
        try Data("not a checkpoint".utf8).write(to: dir.file("x.safetensors"))
        #expect(throws: SafetensorsError.self) { try CheckpointInfo.describe(dir.file("x.safetensors")) }
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: FileInfoTests.miniLM.appendingPathComponent("model.safetensors").path), "MiniLM not downloaded"))
    func describesRealMiniLM() throws {
        let info = try CheckpointInfo.describe(Self.miniLM)
        // 103 F32 weights and the I64 `embeddings.position_ids` buffer.
        #expect(info.tensorCount == 104 && info.dtypes.map(\.dtype) == ["F32", "I64"])
        #expect(info.tensors.first { $0.dtype == "I64" }?.name == "embeddings.position_ids")
        #expect(info.parameterCount > 22_000_000 && info.parameterCount < 23_000_000)
        #expect(info.config?.first == CheckpointInfo.Entry(key: "model_type", value: "bert"))
    }
}
