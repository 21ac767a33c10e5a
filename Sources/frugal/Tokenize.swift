import ArgumentParser
import Foundation
import FrugalData

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the token ids of each line of a text, for checks against other implementations.",
        discussion: """
        The tokenizer is a tokenizer.json (WordPiece or byte-level BPE), a BERT vocab.txt, a GGUF file (its \
        tokenizer.ggml.* vocabulary) or a folder holding one of them. scripts/compare_tokenizers.sh compares the \
        output with Hugging Face tokenizers on whole data sets.
        """)

    @Option(help: "tokenizer.json, vocab.txt, .gguf, or a folder with one of them.") var tokenizer: String?
    @Option(help: "Tokenize this text.") var text: String?
    @Option(help: "Tokenize each line of this file.") var file: String?
    @Option(name: .customLong("texts-json"), help: "Tokenize each string of this JSON array (texts may hold newlines).") var textsJSON: String?
    @Option(help: "Write a JSON list of lists of ids to this file.") var json: String?
    @Option(help: "Write the decode of each line's ids (JSON array) to this file.") var decoded: String?
    @Option(name: .customLong("pairs-json"), help: "Encode (line i, line i+1) pairs with truncation and padding (WordPiece) into this JSON file.") var pairsJSON: String?
    @Option(name: .customLong("pair-max-length"), help: "Length for --pairs-json.") var pairMaxLength: Int?
    @Flag(help: "Print load and encode times to stderr.") var time = false
    @Option(help: "Encode this many times (with --time, the best is reported).") var `repeat` = 1
    @Flag(help: "Do not print ids.") var quiet = false
    @Option(name: .customLong("unicode-classes"), help: "Write the Unicode class table used by the pre-tokenizers to this file and exit.") var unicodeClasses: String?

    func run() throws {
        if let out = unicodeClasses {
            try Data(TokenizerDiagnostics.unicodeClassTable().utf8).write(to: URL(fileURLWithPath: out))
            return
        }
        guard let tokenizer else { throw ValidationError("--tokenizer PATH is required") }
        var lines: [String]
        if let text { lines = [text] }
        else if let file {
            guard let data = FileManager.default.contents(atPath: file) else { throw CLIError("cannot read \(file)") }
            lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
            if lines.last == "" { lines.removeLast() }
        } else if let textsJSON {
            guard let data = FileManager.default.contents(atPath: textsJSON),
                  let texts = (try? JSONSerialization.jsonObject(with: data)) as? [String] else { throw CLIError("cannot read a JSON array of strings from \(textsJSON)") }
            lines = texts
        } else { throw ValidationError("give --text TEXT, --file FILE or --texts-json FILE") }

        let t0 = now()
        let tok = try TokenizerLoader.load(path: tokenizer)
        if time { FileHandle.standardError.write(Data(String(format: "load: %.3f s\n", now() - t0).utf8)) }
        var encoded: [[Int]] = []
        var best = Double.infinity
        for _ in 0..<max(1, `repeat`) {
            let t = now()
            encoded = lines.map { tok.encode($0) }
            best = min(best, now() - t)
        }
        if time {
            let tokens = encoded.reduce(0) { $0 + $1.count }
            FileHandle.standardError.write(Data(String(format: "encode: %d lines, %d tokens in %.3f s\n", lines.count, tokens, best).utf8))
        }
        func list(_ ids: [Int]) -> String { "[" + ids.map(String.init).joined(separator: ",") + "]" }
        if let json { try Data(("[" + encoded.map(list).joined(separator: ",\n") + "]\n").utf8).write(to: URL(fileURLWithPath: json), options: .atomic) }
        if !quiet && json == nil { for ids in encoded { print(ids.map(String.init).joined(separator: " ")) } }
        if let decoded {
            try JSONSerialization.data(withJSONObject: encoded.map { tok.decode($0) }).write(to: URL(fileURLWithPath: decoded), options: .atomic)
        }
        if let pairsJSON {
            guard let wp = tok as? WordPieceTokenizer else { throw CLIError("--pairs-json needs a WordPiece tokenizer") }
            guard let n = pairMaxLength else { throw ValidationError("--pairs-json needs --pair-max-length N") }
            var rows: [String] = []
            for i in 0..<max(0, lines.count - 1) {
                let e = wp.encode(lines[i], pair: lines[i + 1], maxLength: n, padding: .maxLength, truncation: true)
                rows.append("{\"ids\":\(list(e.ids)),\"type_ids\":\(list(e.typeIds)),\"attention_mask\":\(list(e.attentionMask))}")
            }
            try Data(("[" + rows.joined(separator: ",\n") + "]\n").utf8).write(to: URL(fileURLWithPath: pairsJSON), options: .atomic)
        }
    }
}
