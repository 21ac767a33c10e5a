import Foundation
import Testing
@testable import FrugalModels
import FrugalCore
import FrugalNN

/// Logits of the MoE decoder against Hugging Face transformers on tiny random checkpoints
/// (scripts/make_moe_fixture.py): Mixtral (f32, sharded), Qwen2-MoE (bf16, shared expert, one dense
/// layer), Qwen3-MoE (f16, per-head q/k norm, renormalised top-k, tied embeddings), OLMoE (bf16,
/// whole-projection q/k norm, clip_qkv).
@Suite struct MoEModelTests {
    struct Reference: Decodable { var prompt: [Int]; var logits: [Float]; var greedy: [Int] }

    static let layouts = ["mixtral", "qwen2_moe", "qwen3_moe", "olmoe"]

    static func fixture(_ name: String) throws -> URL {
        let base = try #require(Bundle.module.resourceURL)
        return base.appendingPathComponent("Fixtures/moe/\(name)")
    }

    static func reference(_ name: String) throws -> Reference {
        try JSONDecoder().decode(Reference.self, from: Data(contentsOf: fixture(name).appendingPathComponent("reference.json")))
    }

    static func maxRelError(_ a: [Float], _ b: [Float]) -> Float {
        let scale = max(b.map { abs($0) }.max() ?? 1, 1)
        return zip(a, b).map { abs($0 - $1) }.max()! / scale
    }

    @Test(arguments: layouts) func prefillMatchesTransformers(_ name: String) throws {
        let ref = try Self.reference(name)
        let model = try MoEModel(directory: Self.fixture(name))
        let logits = try model.forward(ref.prompt, cache: model.makeCache()).array
        #expect(logits.count == ref.logits.count)
        #expect(Self.maxRelError(logits, ref.logits) < 1e-4, "\(name): max error \(Self.maxRelError(logits, ref.logits))")
    }

    @Test(arguments: layouts) func tokenByTokenDecodeMatchesTransformers(_ name: String) throws {
        let ref = try Self.reference(name)
        let model = try MoEModel(directory: Self.fixture(name))
        let cache = model.makeCache(capacity: 2)   // forces the cache to grow
        var last: [Float] = []
        for t in ref.prompt { last = try model.forward([t], cache: cache).array }
        #expect(cache.length == ref.prompt.count)
        #expect(Self.maxRelError(last, ref.logits) < 1e-4, "\(name): max error \(Self.maxRelError(last, ref.logits))")
        // Split prefill (two chunks) gives the same.
        let c2 = model.makeCache()
        _ = try model.forward(Array(ref.prompt.prefix(4)), cache: c2)
        let split = try model.forward(Array(ref.prompt.dropFirst(4)), cache: c2).array
        #expect(Self.maxRelError(split, ref.logits) < 1e-4)
    }

    @Test(arguments: layouts) func greedyContinuationMatchesTransformers(_ name: String) throws {
        let ref = try Self.reference(name)
        let model = try MoEModel(directory: Self.fixture(name))
        let out = try MoEGenerator(model: model).generateTokens(prompt: ref.prompt, maxTokens: ref.greedy.count)
        #expect(out == ref.greedy)
    }

    @Test func configsParseAsExpected() throws {
        let mix = try MoEModel(directory: Self.fixture("mixtral")).config
        #expect(mix.layout == .mixtral && mix.normTopKProb && mix.experts == 4 && mix.topK == 2 && mix.ropeTheta == 10000)
        #expect(try MoEModel(directory: Self.fixture("mixtral")).checkpoint.files.count == 3)
        let q2 = try MoEModel(directory: Self.fixture("qwen2_moe")).config
        #expect(q2.layout == .qwen2MoE && !q2.normTopKProb && q2.sharedIntermediate == 20 && q2.sparseLayers == [true, false] && q2.qkvBias)
        let q3 = try MoEModel(directory: Self.fixture("qwen3_moe")).config
        #expect(q3.layout == .qwen3MoE && q3.experts == 4 && q3.normTopKProb && q3.qkNorm == .perHead && q3.tieWordEmbeddings && q3.headDim == 8)
        let ol = try MoEModel(directory: Self.fixture("olmoe")).config
        #expect(ol.layout == .olmoe && ol.qkNorm == .full && ol.clipQKV == 2)
    }

    @Test func weightsStayInStoredDTypeAndMapped() throws {
        let model = try MoEModel(directory: Self.fixture("qwen2_moe"))
        let w = try model.expertWeights(layer: 0, expert: 3)
        #expect(w.gate.dtype == .bfloat16 && w.gate.shape == [16, 32] && w.up.shape == [16, 32] && w.down.shape == [32, 16])
        // A view into the mapping: same bytes as the file.
        let raw = try model.checkpoint.rawBytes("model.layers.0.mlp.experts.3.gate_proj.weight")
        #expect(UnsafeRawPointer(w.gate.storage.raw) == raw.baseAddress)
        #expect(throws: MoEError.self) { try model.expertWeights(layer: 1, expert: 0) }   // dense layer
        #expect(throws: MoEError.self) { try model.expertWeights(layer: 0, expert: 4) }
    }

    @Test func routingRules() throws {
        let mix = try MoEModel(directory: Self.fixture("mixtral"))
        let logits = Tensor([0, 1, 2, 3, 3, 2, 1, 0], shape: [2, 4])
        let r = mix.route(logits: logits)
        // softmax([0,1,2,3]) top-2 = experts 3, 2; Mixtral renormalises: e^1/(e^1+e^0).
        let p3 = Float(M_E) / (Float(M_E) + 1)
        #expect(r[0].map(\.expert) == [3, 2] && r[1].map(\.expert) == [0, 1])
        #expect(abs(r[0][0].weight - p3) < 1e-6 && abs(r[0][1].weight - (1 - p3)) < 1e-6)
        let q2 = try MoEModel(directory: Self.fixture("qwen2_moe"))   // norm_topk_prob false
        let r2 = q2.route(logits: logits)
        let z = 1 + Float(M_E) + Float(M_E * M_E) + Float(M_E * M_E * M_E)
        #expect(abs(r2[0][0].weight - Float(M_E * M_E * M_E) / z) < 1e-6)
        #expect(abs(r2[0][1].weight - Float(M_E * M_E) / z) < 1e-6)
        // routerLogits agrees with the layer's gate weights.
        let x = Tensor((0..<32).map { Float($0) / 32 }, shape: [1, 32])
        let gate = try Checkpoint.tensor("model.layers.0.block_sparse_moe.gate.weight", in: mix.checkpoint)
        let expected = (0..<4).map { e in (0..<32).reduce(Float(0)) { $0 + gate[e, $1] * x[0, $1] } }
        let got = mix.routerLogits(layer: 0, x).array
        #expect(zip(got, expected).allSatisfy { abs($0 - $1) < 1e-5 })
    }

    /// Splitting an expert along its intermediate dimension is exact (the offload engine relies on it).
    @Test func residentExpertsBatchAndSingleAgree() throws {
        let model = try MoEModel(directory: Self.fixture("mixtral"))
        let resident = ResidentExperts(source: model)
        var rng = RNG(seed: 3)
        let x = Tensor.normal([3, 32], rng: &rng)
        let routes: [[ExpertRoute]] = [[.init(expert: 1, weight: 0.7), .init(expert: 2, weight: 0.3)],
                                       [.init(expert: 1, weight: 0.5), .init(expert: 0, weight: 0.5)],
                                       [.init(expert: 3, weight: 1)]]
        let batched = try resident.runExperts(layer: 1, x: x, routes: routes).array
        for t in 0..<3 {
            let xt = Tensor(Array(x.array[t * 32..<(t + 1) * 32]), shape: [1, 32])
            let single = try resident.runExperts(layer: 1, x: xt, routes: [routes[t]]).array
            // Reference in plain Swift from the stored weights.
            var ref = [Float](repeating: 0, count: 32)
            for r in routes[t] {
                let w = try model.expertWeights(layer: 1, expert: r.expert)
                let g = (0..<16).map { i in (0..<32).reduce(Float(0)) { $0 + w.gate[i, $1] * xt[0, $1] } }
                let u = (0..<16).map { i in (0..<32).reduce(Float(0)) { $0 + w.up[i, $1] * xt[0, $1] } }
                let a = (0..<16).map { g[$0] / (1 + exp(-g[$0])) * u[$0] }
                for o in 0..<32 { ref[o] += r.weight * (0..<16).reduce(Float(0)) { $0 + w.down[o, $1] * a[$1] } }
            }
            #expect(Self.maxRelError(single, ref) < 1e-5)
            #expect(Self.maxRelError(Array(batched[t * 32..<(t + 1) * 32]), ref) < 1e-5)
        }
    }

    @Test func executorIsCalledPerSparseLayer() throws {
        final class Counting: ExpertExecutor {
            let inner: ExpertExecutor
            var calls: [Int] = []
            init(_ inner: ExpertExecutor) { self.inner = inner }
            func runExperts(layer: Int, x: Tensor, routes: [[ExpertRoute]]) throws -> Tensor {
                calls.append(layer)
                return try inner.runExperts(layer: layer, x: x, routes: routes)
            }
        }
        let model = try MoEModel(directory: Self.fixture("qwen2_moe"))
        let counting = Counting(model.executor)
        model.executor = counting
        let ref = try Self.reference("qwen2_moe")
        let logits = try model.forward(ref.prompt, cache: model.makeCache()).array
        #expect(counting.calls == [0])   // layer 1 is dense
        #expect(Self.maxRelError(logits, ref.logits) < 1e-4)
    }

    // MARK: - Errors

    static func copyFixture(_ name: String) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("moe-test-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: fixture(name), to: dir)
        return dir
    }

    @Test func promptLongerThanContextIsAnError() throws {
        let model = try MoEModel(directory: Self.fixture("olmoe"))   // max_position_embeddings 32
        let cache = model.makeCache()
        #expect(throws: MoEError.self) { try model.forward(Array(repeating: 1, count: 33), cache: cache) }
        _ = try model.forward(Array(repeating: 1, count: 30), cache: cache)
        do {
            _ = try model.forward([1, 2, 3], cache: cache)
            Issue.record("expected an error")
        } catch let e as MoEError {
            #expect(e.description.contains("max_position_embeddings 32"))
        }
        #expect(throws: MoEError.self) { try model.forward([48], cache: model.makeCache()) }   // outside vocab
        #expect(throws: MoEError.self) { try model.forward([], cache: model.makeCache()) }
    }

    @Test func truncatedSafetensorsIsAnError() throws {
        let dir = try Self.copyFixture("qwen3_moe")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("model.safetensors")
        let data = try Data(contentsOf: file)
        try data.prefix(data.count - 100).write(to: file)
        #expect { try MoEModel(directory: dir) } throws: { "\($0)".contains("model.safetensors") }
    }

    @Test func corruptHeaderIsAnError() throws {
        let dir = try Self.copyFixture("olmoe")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("model.safetensors")
        var data = try Data(contentsOf: file)
        data[10] = UInt8(ascii: "#")   // inside the JSON header
        try data.write(to: file)
        #expect(throws: (any Error).self) { try MoEModel(directory: dir) }
    }

    @Test func missingTensorIsAnError() throws {
        let dir = try Self.copyFixture("qwen2_moe")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("model.safetensors")
        let ckpt = try SafetensorsCheckpoint(url: file)
        var tensors: [SafetensorsWriter.Tensor] = []
        for name in ckpt.names where name != "model.layers.0.mlp.experts.2.up_proj.weight" {
            let info = try ckpt.info(name)
            tensors.append(.init(name: name, dtype: info.dtype!, shape: info.shape, bytes: [UInt8](try ckpt.rawBytes(name))))
        }
        try SafetensorsWriter.write(tensors, to: file)
        #expect { try MoEModel(directory: dir) } throws: { "\($0)".contains("missing tensor 'model.layers.0.mlp.experts.2.up_proj.weight'") }
    }

    @Test func notAnMoEConfigIsAnError() throws {
        let cfg = HFModelConfig.llama(LlamaConfig(vocabSize: 8, hiddenSize: 8, intermediateSize: 8, numHiddenLayers: 1, numAttentionHeads: 2))
        #expect(throws: MoEError.self) { try MoEModelConfig(cfg) }
    }
}
