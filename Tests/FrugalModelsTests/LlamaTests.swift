import Foundation
import Testing
@testable import FrugalModels
import FrugalCore
import FrugalNN
import FrugalData

@Suite struct LlamaTests {
    @Test func tinyRandomLlamaLogitsMatchTransformers() throws {
        let model = try LlamaForCausalLM.load(directory: ModelFixtures.url("llama_tiny"))
        let ref = try ModelFixtures.tensors("llama_tiny_expected.safetensors")
        let ids = ref["input_ids"]!
        let x = TokenBatch(ids: ids.array.map { Int($0) }, batch: ids.shape[0], length: ids.shape[1])
        let logits = withNoGrad { model(x) }
        #expect(logits.shape == ref["logits"]!.shape)
        #expect(ModelFixtures.maxAbsDiff(logits.array, ref["logits"]!.array) < 1e-4)
    }

    /// Incremental decoding with the KV cache gives the logits of the full pass.
    @Test func kvCacheMatchesFullPass() throws {
        let model = try LlamaForCausalLM.load(directory: ModelFixtures.url("llama_tiny"))
        let ids = [1, 5, 9, 17, 33, 2]
        let full = withNoGrad { model(TokenBatch(ids: ids, batch: 1, length: 6)) }
        let caches = (0..<model.layerCount).map { _ in LlamaKVCache() }
        var steps: [Float] = []
        withNoGrad {
            steps += model(TokenBatch(ids: Array(ids[0..<3]), batch: 1, length: 3), caches: caches).array
            for i in 3..<6 { steps += model(TokenBatch(ids: [ids[i]], batch: 1, length: 1), caches: caches).array }
        }
        #expect(ModelFixtures.maxAbsDiff(full.array, steps) < 1e-4)
        // Greedy generation is deterministic and returns maxTokens ids.
        let g1 = model.generate(prompt: ids, maxTokens: 5), g2 = model.generate(prompt: ids, maxTokens: 5)
        #expect(g1.count == 5 && g1 == g2)
    }

    /// llama.cpp's q/k row permutation is undone at load.
    @Test func ropeUnpermutation() {
        // One head of width 4, two columns: llama.cpp rows (0,1,2,3) hold HF rows (0,2,1,3).
        let t = Tensor([0, 0, 2, 2, 1, 1, 3, 3], shape: [4, 2])
        LlamaForCausalLM.unpermuteRoPE(t, heads: 1)
        #expect(t.array == [0, 0, 1, 1, 2, 2, 3, 3])
    }

    /// SmolLM2-135M from its Q4_1 GGUF: greedy continuations equal transformers' for 32 tokens
    /// (skipped when the GGUF is absent; the tiny fixture covers the decoder code).
    @Test func smolLM2GreedyMatchesReference() throws {
        guard let url = ModelFixtures.data("smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf") else { return }
        struct Case: Decodable { let prompt: String; let prompt_ids: [Int]; let generated_ids: [Int] }
        struct Ref: Decodable { let cases: [Case] }
        let ref = try JSONDecoder().decode(Ref.self, from: Data(contentsOf: ModelFixtures.url("smollm2_reference.json")))
        let model = try LlamaForCausalLM.load(gguf: url)
        let tok = try TokenizerLoader.loadGGUF(path: url.path)
        for c in ref.cases {
            #expect(tok.tokenize(c.prompt) == c.prompt_ids)
            let out = model.generate(prompt: c.prompt_ids, maxTokens: c.generated_ids.count)
            #expect(out == c.generated_ids, "prompt \(c.prompt)")
        }
    }
}
