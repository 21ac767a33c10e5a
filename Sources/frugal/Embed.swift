import ArgumentParser
import Foundation
import FrugalCore
import FrugalNN
import FrugalData
import FrugalModels

struct Embed: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sentence embeddings with a BERT sentence-transformer (all-MiniLM-L6-v2) and their cosine similarities.",
        discussion: """
        Mean pooling over tokens, then L2 normalisation (the model's 1_Pooling config). \
        Example: frugal embed --text "A man is eating food." --text "A man is eating a piece of bread."  (cosine ~0.755)
        """)

    @Option(help: "Model folder with config.json, model.safetensors and tokenizer.json (default $FRUGAL_DATA/all-MiniLM-L6-v2).") var model: String?
    @Option(help: "A sentence (repeat for several).") var text: [String] = []
    @Option(help: "Write the embeddings and the cosine matrix as JSON to this file.") var json: String?

    func run() throws {
        guard !text.isEmpty else { throw ValidationError("give at least one --text") }
        let dir = URL(fileURLWithPath: model ?? (DataPaths.root as NSString).appendingPathComponent("all-MiniLM-L6-v2"))
        guard FileManager.default.fileExists(atPath: dir.appendingPathComponent("model.safetensors").path) else {
            throw CLIError("no model.safetensors in \(dir.path) (give --model FOLDER)")
        }
        let bert = try BertModel.load(directory: dir)
        let tok = try WordPieceTokenizer(tokenizerJSON: dir.appendingPathComponent("tokenizer.json").path)
        let x = TokenBatch(tok.encode(batch: text, maxLength: bert.config.maxPositionEmbeddings, padding: .longest, truncation: true))
        let e = withNoGrad { bert.sentenceEmbeddings(x) }
        let d = bert.hiddenSize, v = e.array
        var cos = [[Float]](repeating: [Float](repeating: 0, count: text.count), count: text.count)
        for i in text.indices { for j in text.indices { cos[i][j] = (0..<d).reduce(Float(0)) { $0 + v[i * d + $1] * v[j * d + $1] } } }
        for i in text.indices {
            print("\(i): \(text[i])  [\(v[(i * d)..<(i * d + 4)].map { String(format: "%.4f", $0) }.joined(separator: ", ")), ...]")
        }
        if text.count > 1 {
            print("cosine similarities:")
            printTable([""] + text.indices.map { "\($0)" }, text.indices.map { i in ["\(i)"] + cos[i].map { String(format: "%.4f", $0) } })
        }
        if let json {
            struct Out: Encodable { let texts: [String]; let embeddings: [[Float]]; let cosine: [[Float]] }
            try writeJSON(Out(texts: text, embeddings: text.indices.map { Array(v[($0 * d)..<(($0 + 1) * d)]) }, cosine: cos), to: json)
        }
    }
}
