import Foundation

/// Loads a tokenizer from a file, choosing the kind from the file.
///
/// ```swift
/// let bert = try TokenizerLoader.load(path: "all-MiniLM-L6-v2/tokenizer.json")  // WordPieceTokenizer
/// let smol = try TokenizerLoader.load(path: "SmolLM2-135M-Instruct.Q4_1.gguf")  // BPETokenizer
/// ```
public enum TokenizerLoader {
    /// - `tokenizer.json` (or any `.json`): WordPiece or BPE by `model.type`;
    /// - `vocab.txt` (or any `.txt`): BERT WordPiece with lower-casing;
    /// - `.gguf`: byte-level BPE from the `tokenizer.ggml.*` metadata;
    /// - a directory: its `tokenizer.json`, else its `vocab.txt`.
    ///
    /// - Throws: `TokenizerError` naming the file and what was wrong.
    public static func load(path: String) throws -> any Tokenizer {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw TokenizerError.cannotRead(path: path, reason: "no such file")
        }
        if isDirectory.boolValue {
            for name in ["tokenizer.json", "vocab.txt"] {
                let candidate = (path as NSString).appendingPathComponent(name)
                if FileManager.default.fileExists(atPath: candidate) { return try load(path: candidate) }
            }
            throw TokenizerError.cannotRead(path: path, reason: "directory has neither tokenizer.json nor vocab.txt")
        }
        switch (path as NSString).pathExtension.lowercased() {
        case "json":
            return try loadJSON(path: path)
        case "txt":
            return try WordPieceTokenizer(vocabFile: path)
        case "gguf":
            return try loadGGUF(path: path)
        default:
            throw TokenizerError.unsupported(source: (path as NSString).lastPathComponent,
                                             feature: "file type (expected tokenizer.json, vocab.txt or .gguf)")
        }
    }

    /// A Hugging Face tokenizer.json: WordPiece or BPE by `model.type`.
    public static func loadJSON(path: String) throws -> any Tokenizer {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw TokenizerError.cannotRead(path: path, reason: error.localizedDescription)
        }
        return try loadJSON(data: data, source: (path as NSString).lastPathComponent)
    }

    /// The contents of a tokenizer.json; `source` names it in errors.
    public static func loadJSON(data: Data, source: String) throws -> any Tokenizer {
        let json = try TokenizerJSONObject(data: data, source: source)
        let model = try json.object("model")
        var type = try model.optionalString("type")
        if type == nil {
            // Older files leave the type out: BPE has merges, WordPiece a subword prefix.
            if model.has("merges") { type = "BPE" } else if model.has("continuing_subword_prefix") { type = "WordPiece" }
        }
        switch type {
        case "WordPiece": return try WordPieceTokenizer(json: json)
        case "BPE": return try BPETokenizer(json: json)
        case nil: throw model.missing("type")
        case let other?: throw TokenizerError.unsupported(source: source, feature: "model type '\(other)' (WordPiece or BPE)")
        }
    }

    /// The byte-level BPE tokenizer stored in a GGUF file's metadata.
    public static func loadGGUF(path: String) throws -> BPETokenizer {
        let source = (path as NSString).lastPathComponent
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        } catch {
            throw TokenizerError.cannotRead(path: path, reason: error.localizedDescription)
        }
        let meta = try GGUFTokenizerMetadata(data: data, source: source)
        let model = meta.strings["tokenizer.ggml.model"]
        guard model == "gpt2" else {
            throw TokenizerError.unsupported(source: source, feature: "tokenizer.ggml.model '\(model ?? "(absent)")' (only gpt2, byte-level BPE)")
        }
        guard let tokens = meta.stringArrays["tokenizer.ggml.tokens"] else { throw TokenizerError.missingField(source: source, field: "tokenizer.ggml.tokens") }
        guard let merges = meta.stringArrays["tokenizer.ggml.merges"] else { throw TokenizerError.missingField(source: source, field: "tokenizer.ggml.merges") }
        let types = meta.intArrays["tokenizer.ggml.token_type"].map { $0.map { Int32(truncatingIfNeeded: $0) } }
        return try BPETokenizer(tokens: tokens, merges: merges, tokenTypes: types, pre: meta.strings["tokenizer.ggml.pre"],
                                bos: meta.ints["tokenizer.ggml.bos_token_id"].map(Int.init),
                                eos: meta.ints["tokenizer.ggml.eos_token_id"].map(Int.init),
                                addBOS: meta.bools["tokenizer.ggml.add_bos_token"] ?? false,
                                addEOS: meta.bools["tokenizer.ggml.add_eos_token"] ?? false, source: source)
    }
}

/// The `tokenizer.*` entries of a GGUF file's metadata (a minimal reader: the header and the
/// key-value section only; tensors are another module's business).
struct GGUFTokenizerMetadata {
    var strings: [String: String] = [:]
    var ints: [String: Int64] = [:]
    var bools: [String: Bool] = [:]
    var stringArrays: [String: [String]] = [:]
    var intArrays: [String: [Int64]] = [:]

    init(data: Data, source: String) throws {
        var r = Reader(data: data, source: source)
        let magic = try r.u32()
        guard magic == 0x4655_4747 else { throw TokenizerError.malformed(source: source, reason: "not a GGUF file (magic at offset 0)") }
        let version = try r.u32()
        guard version == 2 || version == 3 else {
            throw TokenizerError.unsupported(source: source, feature: "GGUF version \(version) (2 or 3)")
        }
        _ = try r.u64() // tensor count
        let count = try r.u64()
        guard count < 1_000_000 else { throw TokenizerError.malformed(source: source, reason: "implausible key count \(count) at offset 16") }
        for _ in 0..<count {
            let key = try r.string()
            let type = try r.u32()
            let keep = key.hasPrefix("tokenizer.")
            switch type {
            case 8:
                let s = try r.string()
                if keep { strings[key] = s }
            case 7:
                let b = try r.u8()
                if keep { bools[key] = b != 0 }
            case 9:
                let elementType = try r.u32()
                let n = try r.u64()
                guard n <= UInt64(r.remaining) else { throw r.error("array '\(key)' of \(n) elements runs past the end") }
                if elementType == 8 {
                    var a: [String] = []
                    if keep { a.reserveCapacity(Int(n)) }
                    for _ in 0..<n {
                        if keep { a.append(try r.string()) } else { try r.skipString() }
                    }
                    if keep { stringArrays[key] = a }
                } else if let size = Reader.scalarSize(elementType) {
                    if keep, let values = try r.integers(elementType, count: Int(n)) {
                        intArrays[key] = values
                    } else {
                        try r.skip(Int(n) * size)
                    }
                } else {
                    throw r.error("array '\(key)' has unsupported element type \(elementType)")
                }
            default:
                guard let size = Reader.scalarSize(type) else { throw r.error("key '\(key)' has unknown value type \(type)") }
                if keep, let v = try r.integers(type, count: 1)?.first {
                    ints[key] = v
                } else {
                    try r.skip(size)
                }
            }
        }
    }

    /// Bounds-checked little-endian reads.
    struct Reader {
        let data: Data
        let source: String
        var offset = 0

        init(data: Data, source: String) {
            self.data = data
            self.source = source
        }

        var remaining: Int { data.count - offset }

        func error(_ reason: String) -> TokenizerError {
            .malformed(source: source, reason: "\(reason) (offset \(offset))")
        }

        mutating func bytes(_ n: Int) throws -> Data.SubSequence {
            guard n >= 0, n <= remaining else { throw error("needs \(n) bytes, file ends") }
            let start = data.startIndex + offset
            offset += n
            return data[start..<(start + n)]
        }

        mutating func skip(_ n: Int) throws { _ = try bytes(n) }

        mutating func u8() throws -> UInt8 { try bytes(1).first! }

        mutating func u32() throws -> UInt32 {
            let b = try bytes(4)
            return b.reversed().reduce(0) { $0 << 8 | UInt32($1) }
        }

        mutating func u64() throws -> UInt64 {
            let b = try bytes(8)
            return b.reversed().reduce(0) { $0 << 8 | UInt64($1) }
        }

        mutating func string() throws -> String {
            let n = try u64()
            guard n <= UInt64(remaining) else { throw error("string of \(n) bytes runs past the end") }
            return String(decoding: try bytes(Int(n)), as: UTF8.self)
        }

        mutating func skipString() throws {
            let n = try u64()
            guard n <= UInt64(remaining) else { throw error("string of \(n) bytes runs past the end") }
            try skip(Int(n))
        }

        static func scalarSize(_ type: UInt32) -> Int? {
            switch type {
            case 0, 1, 7: return 1
            case 2, 3: return 2
            case 4, 5, 6: return 4
            case 10, 11, 12: return 8
            default: return nil
            }
        }

        /// Integer values of `count` elements of `type`; nil (nothing read) for float types.
        mutating func integers(_ type: UInt32, count: Int) throws -> [Int64]? {
            guard let size = Reader.scalarSize(type), type != 6, type != 12 else { return nil }
            guard count <= remaining / size else { throw error("\(count) values run past the end") }
            let raw = try bytes(count * size)
            var out = [Int64](repeating: 0, count: count)
            raw.withUnsafeBytes { p in
                for i in 0..<count {
                    var v: UInt64 = 0
                    for k in (0..<size).reversed() { v = v << 8 | UInt64(p[i * size + k]) }
                    switch type {
                    case 1: out[i] = Int64(Int8(truncatingIfNeeded: v))
                    case 3: out[i] = Int64(Int16(truncatingIfNeeded: v))
                    case 5: out[i] = Int64(Int32(truncatingIfNeeded: v))
                    case 11: out[i] = Int64(bitPattern: v)
                    default: out[i] = Int64(truncatingIfNeeded: v)
                    }
                }
            }
            return out
        }
    }
}
