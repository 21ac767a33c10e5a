import Foundation
import Testing
@testable import FrugalModels
import FrugalCore
import FrugalNN

@Suite struct MoETrainingTests {
    static func tinyConfig() -> MoEModelConfig {
        MoEModelConfig(layout: .mixtral, vocabSize: 257, hiddenSize: 16, layers: 2, heads: 2, kvHeads: 1, experts: 4, topK: 2,
                       expertIntermediate: 8, maxPositions: 64, ropeTheta: 10000, rmsNormEps: 1e-5)
    }

    /// The saved checkpoint, read by the inference model, gives the training model's logits.
    @Test func savedModelMatchesTrainingForward() throws {
        let model = MoETrainingModel(config: Self.tinyConfig(), seed: 7)
        // Larger weights than the init so that routing and logits are not near-uniform.
        var rng = RNG(seed: 1)
        for (_, p) in model.namedParameters() { withNoGrad { p.assign(p + Tensor.normal(p.shape, std: 0.2, rng: &rng)) } }
        let tokens = [72, 101, 108, 108, 111, 32, 119]
        let logits = withNoGrad { model.forward(tokens, batch: 1, length: tokens.count).logits }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("moe-train-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        try model.save(to: dir)
        let inference = try MoEModel(directory: dir)
        let all = try inference.forward(tokens, cache: inference.makeCache(), allPositions: true)
        #expect(all.shape == [7, 257])
        let a = all.array, b = logits.array
        let err = zip(a, b).map { abs($0 - $1) }.max()!
        #expect(err < 1e-4, "max abs error \(err)")
        #expect(try MoETokenizer.load(directory: dir).encode("hi") == [104, 105])
        #expect(inference.config.eosTokenIDs == [256])
    }

    /// A saved model loads back into a fresh training model (to train longer): every parameter equal; a
    /// checkpoint of other sizes is refused with the tensor named.
    @Test func loadContinuesFromASavedModel() throws {
        let model = MoETrainingModel(config: Self.tinyConfig(), seed: 7)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("moe-train-load-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        try model.save(to: dir)
        let other = MoETrainingModel(config: Self.tinyConfig(), seed: 8)
        try other.load(from: dir)
        let a = model.stateDict(), b = other.stateDict()
        #expect(a.keys.sorted() == b.keys.sorted())
        for (k, t) in a { #expect(t.array == b[k]!.array, "\(k)") }
        var cfg = Self.tinyConfig()
        cfg.expertIntermediate = 12
        do { try MoETrainingModel(config: cfg, seed: 1).load(from: dir); Issue.record("loaded other sizes") } catch let e as MoEError {
            #expect("\(e)".contains("has shape"))
        }
    }

    /// A few steps on one batch lower the loss, and the router and every used expert get gradients.
    @Test func trainingStepsLowerLossAndReachRouter() throws {
        let model = MoETrainingModel(config: Self.tinyConfig(), seed: 3)
        let opt = Adam(model.trainableParameters(), lr: 1e-2)
        let x = Array("to be or not to".utf8).map(Int.init), y = Array("o be or not to ".utf8).map(Int.init)
        var first: Float = 0, last: Float = 0
        for step in 0..<15 {
            let (logits, aux, counts) = model.forward(x, batch: 1, length: x.count)
            #expect(counts.allSatisfy { $0.reduce(0, +) == x.count * 2 })
            let loss = Loss.crossEntropy(logits, y) + aux * 0.01
            opt.zeroGrad()
            loss.backward()
            if step == 0 {
                first = loss.item
                let g = try #require(model.layers[0].blockSparseMoe.gate.weight.grad)
                #expect(g.array.contains { $0 != 0 })
            }
            opt.step()
            last = loss.item
        }
        #expect(last < first * 0.8, "loss \(first) -> \(last)")
    }

    /// The load-balancing term is E·Σ f_e·P_e: 1 when routing is uniform.
    @Test func auxLossValue() throws {
        let model = MoETrainingModel(config: Self.tinyConfig(), seed: 3)
        withNoGrad { model.layers[0].blockSparseMoe.gate.weight.assign(Tensor.zeros([4, 16])) }
        var r = RNG(seed: 5)
        let x = Tensor.normal([8, 16], rng: &r)
        let (_, aux, counts) = model.layers[0].blockSparseMoe(x)
        // Uniform probabilities (1/4): aux = 4 · Σ_e f_e / 4 = Σ_e f_e = top-k = 2.
        #expect(abs(aux.item - 2) < 1e-5)
        #expect(counts.reduce(0, +) == 16)
    }
}

@Suite struct MoECheckpointWriterTests {
    /// `frugal moe create`'s writer: every layout loads back, with exactly the tensors the model reads,
    /// in the requested dtype and shards. (Transformers loads the same files: checked by hand with
    /// AutoModelForCausalLM, logits equal to 6e-7.)
    @Test(arguments: MoELayout.allCases) func randomCheckpointRoundTrip(_ layout: MoELayout) throws {
        let cfg = MoEModelConfig(layout: layout, vocabSize: 300, hiddenSize: 32, layers: 2, heads: 4, kvHeads: 2, experts: 4,
                                 topK: 2, expertIntermediate: 16, maxPositions: 64)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("moe-create-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        try MoECheckpointWriter.createRandom(cfg, dtype: .bfloat16, shardBytes: 20_000, seed: 1, std: 0.1, to: dir)
        let model = try MoEModel(directory: dir)
        #expect(model.config.layout == layout && model.config.experts == 4 && model.config.eosTokenIDs == [256])
        #expect(model.checkpoint.files.count > 1)
        #expect(Set(model.checkpoint.names) == Set(MoECheckpointWriter.tensorShapes(cfg).map(\.name)))
        #expect(try model.expertWeights(layer: 1, expert: 3).gate.dtype == .bfloat16)
        let logits = try model.forward(Array("hello".utf8).map(Int.init), cache: model.makeCache())
        #expect(logits.shape == [300] && logits.array.allSatisfy(\.isFinite))
        #expect(try MoETokenizer.load(directory: dir).decode([104, 105]) == "hi")
    }
}
