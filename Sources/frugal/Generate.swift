import ArgumentParser
import Foundation
import FrugalCore
import FrugalNN
import FrugalData
import FrugalModels

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Greedy text generation with a Llama-family GGUF model (e.g. SmolLM2-135M), streaming tokens.",
        discussion: """
        The model is dequantised to float32 at load; the prompt runs in one pass, then one token a step with a \
        KV cache. Generation stops after --max-tokens or at the end-of-sequence token.
        Example: frugal generate --model ~/.cache/frugal-data/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf \
        --prompt "The capital of France is" --max-tokens 32
        """)

    @Option(help: "A llama.cpp GGUF file (Llama architecture) or a transformers folder with a tokenizer.json.") var model: String
    @Option(help: "The prompt text.") var prompt: String
    @Option(name: .customLong("max-tokens"), help: "Most tokens to generate.") var maxTokens = 64
    @Flag(name: .customLong("ignore-eos"), help: "Do not stop at the end-of-sequence token.") var ignoreEOS = false
    @Option(help: "Write prompt ids, generated ids, text and timings as JSON to this file.") var json: String?

    func validate() throws {
        guard maxTokens > 0 else { throw ValidationError("--max-tokens must be positive, got \(maxTokens)") }
        guard FileManager.default.fileExists(atPath: model) else { throw ValidationError("--model: no file or folder at \(model)") }
    }

    func run() throws {
        let t0 = now()
        let lm: LlamaForCausalLM
        let tok: any Tokenizer
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: model, isDirectory: &isDir) else {
            throw CLIError("--model \(model): no such file or folder (a GGUF file or a Hugging Face model folder)")
        }
        if isDir.boolValue {
            lm = try LlamaForCausalLM.load(directory: URL(fileURLWithPath: model))
            tok = try TokenizerLoader.load(path: model)
        } else {
            lm = try LlamaForCausalLM.load(gguf: URL(fileURLWithPath: model))
            tok = try TokenizerLoader.loadGGUF(path: model)
        }
        let loadSeconds = now() - t0
        let ids = (tok as? BPETokenizer)?.tokenize(prompt) ?? tok.encode(prompt)
        guard !ids.isEmpty else { throw CLIError("the prompt has no tokens") }
        FileHandle.standardError.write(Data(String(format: "loaded in %.2f s; prompt: %d tokens\n", loadSeconds, ids.count).utf8))
        print(prompt, terminator: "")
        flushStdout()
        var printed = ""
        var firstTokenAt = 0.0
        let t1 = now()
        var generated: [Int] = []
        let stop: Set<Int> = ignoreEOS ? [] : Set(lm.config.eosTokenIDs)
        lm.generate(prompt: ids, maxTokens: maxTokens, stop: stop) { id in
            if firstTokenAt == 0 { firstTokenAt = now() - t1 }
            generated.append(id)
            // Print the new suffix of the decoded text (a token may end inside a UTF-8 sequence).
            let text = tok.decode(generated)
            if text.hasPrefix(printed), !text.hasSuffix("\u{FFFD}") {
                print(text.dropFirst(printed.count), terminator: "")
                printed = text
                flushStdout()
            }
            return true
        }
        let total = now() - t1
        print()
        let rate = generated.count > 1 ? Double(generated.count - 1) / max(total - firstTokenAt, 1e-9) : 0
        FileHandle.standardError.write(Data(String(format: "%d tokens; first after %.3f s, then %.1f tokens/s\n", generated.count, firstTokenAt, rate).utf8))
        if let json {
            struct Out: Encodable {
                let model: String, prompt: String, promptIDs: [Int], generatedIDs: [Int], text: String
                let loadSeconds: Double, firstTokenSeconds: Double, tokensPerSecond: Double
            }
            try writeJSON(Out(model: model, prompt: prompt, promptIDs: ids, generatedIDs: generated, text: tok.decode(generated),
                              loadSeconds: loadSeconds, firstTokenSeconds: firstTokenAt, tokensPerSecond: rate), to: json)
        }
    }
}
