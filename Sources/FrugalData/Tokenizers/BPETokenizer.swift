import Foundation

/// Byte-level BPE as GPT-2, Llama 3 and SmolLM2 use it, equal to Hugging Face `tokenizers`
/// (ByteLevel pre-tokenizer, BPE model, ByteLevel decoder).
///
/// ```swift
/// let tok = try TokenizerLoader.load(path: "SmolLM2-135M-Instruct.Q4_1.gguf")
/// let ids = tok.encode("<|im_start|>user\nHi there!")   // [1, 4093, 198, 26843, 665, 17]
/// tok.decode(ids)                                       // "user\nHi there!" (specials left out)
/// ```
///
/// Added tokens (`<|im_start|>`, `<|endoftext|>`, ...) are matched in the raw text first; the rest
/// is cut into words (GPT-2's pattern, optionally after isolating digits), each word's UTF-8 bytes
/// become byte-alphabet symbols, and merge rules are applied lowest rank first until none applies.
public struct BPETokenizer: Tokenizer {
    /// Token strings (in the byte alphabet) by id.
    public let tokens: [String]
    public let preTokenizer: ByteLevelPreTokenizer
    public let addedTokens: [AddedToken]
    public let postProcessor: TemplatePostProcessor
    public let bosId: Int?
    public let eosId: Int?
    /// Apply Unicode NFC before splitting (tokenizer.json `"normalizer": {"type": "NFC"}`).
    public let nfc: Bool
    /// Emit a word that is itself in the vocabulary without merging (Llama 3's `ignore_merges`).
    public let ignoreMerges: Bool
    /// Id for bytes missing from the vocabulary; nil drops them (as Hugging Face does without `unk_token`).
    public let unknownId: Int?
    public let fuseUnknown: Bool

    let merges: MergeTable
    let vocab: ByteStringTable
    let byteIds: [Int32]
    let rawVocab: ByteStringTable
    let tokenBytes: [[UInt8]]
    let matcher: AddedTokenMatcher
    let specialIds: Set<Int>
    let cache = BPEWordCache()

    public var vocabularySize: Int { tokens.count }

    /// A byte-level BPE tokenizer from the arrays a GGUF file stores.
    ///
    /// - Parameters:
    ///   - tokens: `tokenizer.ggml.tokens`, token strings in the byte alphabet, id = index.
    ///   - merges: `tokenizer.ggml.merges`, rules `"left right"` in rank order.
    ///   - tokenTypes: `tokenizer.ggml.token_type`; control (3) and user-defined (4) tokens are matched
    ///     whole in the text, control tokens are special (left out by `decode`).
    ///   - pre: `tokenizer.ggml.pre` ("gpt2", "smollm", "llama-bpe", ...).
    ///   - bos, eos: `tokenizer.ggml.bos_token_id` / `eos_token_id`.
    ///   - addBOS, addEOS: `tokenizer.ggml.add_bos_token` / `add_eos_token`.
    /// - Throws: `TokenizerError` for a malformed merge, an unknown `pre`, or ids out of range.
    public init(tokens: [String], merges: [String], tokenTypes: [Int32]?, pre: String?, bos: Int?, eos: Int?,
                addBOS: Bool = false, addEOS: Bool = false, source: String = "gguf") throws {
        guard let preTokenizer = ByteLevelPreTokenizer.gguf(pre: pre) else {
            throw TokenizerError.unsupported(source: source, feature: "tokenizer.ggml.pre '\(pre ?? "")'")
        }
        if let tokenTypes, tokenTypes.count != tokens.count {
            throw TokenizerError.invalidField(source: source, field: "tokenizer.ggml.token_type",
                                              reason: "\(tokenTypes.count) entries for \(tokens.count) tokens")
        }
        var added: [AddedToken] = []
        if let tokenTypes {
            for (id, type) in tokenTypes.enumerated() where type == 3 || type == 4 {
                added.append(AddedToken(content: tokens[id], id: id, special: type == 3))
            }
        }
        for (field, id) in [("tokenizer.ggml.bos_token_id", bos), ("tokenizer.ggml.eos_token_id", eos)] {
            if let id, id < 0 || id >= tokens.count {
                throw TokenizerError.invalidField(source: source, field: field, reason: "id \(id) outside the \(tokens.count) tokens")
            }
        }
        var single: [TemplatePostProcessor.Piece] = [.first(typeId: 0)]
        if addBOS, let bos { single.insert(.special(ids: [bos], typeId: 0), at: 0) }
        if addEOS, let eos { single.append(.special(ids: [eos], typeId: 0)) }
        let parsedMerges = try merges.enumerated().map { index, merge in
            try BPETokenizer.splitMerge(merge, index: index, source: source)
        }
        try self.init(vocabulary: tokens.enumerated().map { ($1, $0) }, merges: parsedMerges, preTokenizer: preTokenizer,
                      addedTokens: added, postProcessor: TemplatePostProcessor(single: single, pair: single + [.second(typeId: 1)]),
                      bos: bos, eos: eos, source: source)
    }

    /// A byte-level BPE tokenizer from a vocabulary (`(token, id)`; a token listed twice keeps its
    /// last id) and merge rules in rank order.
    public init(vocabulary: [(String, Int)], merges: [(String, String)], preTokenizer: ByteLevelPreTokenizer,
                addedTokens: [AddedToken] = [], postProcessor: TemplatePostProcessor = .none,
                bos: Int? = nil, eos: Int? = nil, nfc: Bool = false, ignoreMerges: Bool = false,
                unknownToken: String? = nil, fuseUnknown: Bool = false, source: String = "vocabulary") throws {
        var table = ByteStringTable(minimumCapacity: vocabulary.count)
        var maxId = -1
        // Ids far beyond the number of tokens would only make the id-to-token table huge.
        let idLimit = 2 * (vocabulary.count + addedTokens.count) + 65536
        for (token, id) in vocabulary {
            guard id >= 0 && id < idLimit else {
                throw TokenizerError.invalidField(source: source, field: "vocab['\(token)']", reason: "id \(id) out of range")
            }
            table.insert(token, value: id)
            maxId = max(maxId, id)
        }
        for t in addedTokens {
            guard t.id >= 0 && t.id < idLimit else {
                throw TokenizerError.invalidField(source: source, field: "added_tokens['\(t.content)']", reason: "id \(t.id) out of range")
            }
            maxId = max(maxId, t.id)
        }
        var tokens = [String](repeating: "", count: maxId + 1)
        for (token, id) in vocabulary where table.lookup(token) == id { tokens[id] = token }
        for t in addedTokens { tokens[t.id] = t.content }

        var mergeTable = MergeTable(minimumCapacity: merges.count)
        for (rank, (a, b)) in merges.enumerated() {
            let ia = table.lookup(a), ib = table.lookup(b), ic = table.lookup(a + b)
            for (name, id) in [(a, ia), (b, ib), (a + b, ic)] where id < 0 {
                throw TokenizerError.malformedMerge(source: source, index: rank, merge: "\(a) \(b)",
                                                    reason: "token '\(name)' is not in the vocabulary")
            }
            mergeTable.insert(Int32(ia), Int32(ib), rank: Int32(rank), result: Int32(ic))
        }
        var byteIds = [Int32](repeating: -1, count: 256)
        for b in 0..<256 {
            byteIds[b] = Int32(table.lookup(String(Character(ByteLevelAlphabet.characters[b]))))
        }
        var raw = ByteStringTable(minimumCapacity: ignoreMerges ? vocabulary.count : 1)
        if ignoreMerges {
            for (token, id) in vocabulary where table.lookup(token) == id {
                if let bytes = ByteLevelAlphabet.decode(token) { raw.insert(bytes, value: id) }
            }
        }
        var unk: Int? = nil
        if let unknownToken {
            let id = table.lookup(unknownToken)
            guard id >= 0 else {
                throw TokenizerError.invalidField(source: source, field: "model.unk_token", reason: "'\(unknownToken)' is not in the vocabulary")
            }
            unk = id
        }

        self.tokens = tokens
        self.preTokenizer = preTokenizer
        self.addedTokens = addedTokens
        self.postProcessor = postProcessor
        self.bosId = bos
        self.eosId = eos
        self.nfc = nfc
        self.ignoreMerges = ignoreMerges
        self.unknownId = unk
        self.fuseUnknown = fuseUnknown
        self.merges = mergeTable
        self.vocab = table
        self.byteIds = byteIds
        self.rawVocab = raw
        self.tokenBytes = tokens.map { ByteLevelAlphabet.decode($0) ?? Array($0.utf8) }
        self.matcher = AddedTokenMatcher(addedTokens)
        self.specialIds = Set(addedTokens.filter(\.special).map(\.id))
    }

    /// Loads a Hugging Face tokenizer.json whose model is BPE.
    public init(tokenizerJSON path: String) throws {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw TokenizerError.cannotRead(path: path, reason: error.localizedDescription)
        }
        try self.init(tokenizerJSONData: data, source: (path as NSString).lastPathComponent)
    }

    /// Parses the contents of a tokenizer.json whose model is BPE; `source` names it in errors.
    public init(tokenizerJSONData data: Data, source: String = "tokenizer.json") throws {
        try self.init(json: TokenizerJSONObject(data: data, source: source))
    }

    init(json: TokenizerJSONObject) throws {
        let model = try json.object("model")
        if let type = try model.optionalString("type"), type != "BPE" {
            throw model.invalid("type", "expected BPE, found \(type)")
        }
        let vocabObject = try model.object("vocab")
        var entries: [(String, Int)] = []
        entries.reserveCapacity(vocabObject.values.count)
        for (token, value) in vocabObject.values {
            guard let n = value as? NSNumber, n.intValue >= 0, Double(n.intValue) == n.doubleValue else {
                throw vocabObject.invalid(token, "expected a non-negative integer id")
            }
            entries.append((token, n.intValue))
        }
        entries.sort { $0.1 < $1.1 }
        let mergeList = try model.array("merges")
        let merges: [(String, String)] = try mergeList.enumerated().map { index, item in
            if let s = item as? String {
                return try BPETokenizer.splitMerge(s, index: index, source: json.source)
            }
            if let pair = item as? [Any], pair.count == 2, let a = pair[0] as? String, let b = pair[1] as? String {
                return (a, b)
            }
            throw TokenizerError.malformedMerge(source: json.source, index: index, merge: "\(item)",
                                                reason: "expected \"left right\" or [left, right]")
        }
        if let dropout = model.values["dropout"] as? NSNumber, dropout.doubleValue > 0 {
            throw TokenizerError.unsupported(source: json.source, feature: "BPE dropout")
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] where !((try model.optionalString(key)) ?? "").isEmpty {
            throw TokenizerError.unsupported(source: json.source, feature: "model.\(key) in a byte-level BPE")
        }
        if try model.bool("byte_fallback", default: false) {
            throw TokenizerError.unsupported(source: json.source, feature: "model.byte_fallback in a byte-level BPE")
        }

        var nfc = false
        if let n = try json.optionalObject("normalizer") {
            let type = try n.string("type")
            guard type == "NFC" else {
                throw TokenizerError.unsupported(source: json.source, feature: "normalizer type '\(type)' for BPE (only NFC or null)")
            }
            nfc = true
        }
        let pre = try BPETokenizer.preTokenizer(try json.object("pre_tokenizer"))
        let added = try json.addedTokens()
        var lookup: [String: Int] = [:]
        for (token, id) in entries { lookup[token] = id }
        for t in added { lookup[t.content] = t.id }
        var processor = TemplatePostProcessor.none
        if let p = try json.optionalObject("post_processor") {
            let type = try p.string("type")
            if type == "TemplateProcessing" {
                processor = try TemplatePostProcessor(json: p, lookup: lookup)
            } else if type == "Sequence" {
                for step in try p.objects("processors") where try step.string("type") == "TemplateProcessing" {
                    processor = try TemplatePostProcessor(json: step, lookup: lookup)
                }
            } else if type != "ByteLevel" {
                throw TokenizerError.unsupported(source: json.source, feature: "post_processor type '\(type)' for BPE")
            }
        }
        try self.init(vocabulary: entries, merges: merges, preTokenizer: pre, addedTokens: added,
                      postProcessor: processor, nfc: nfc, ignoreMerges: try model.bool("ignore_merges", default: false),
                      unknownToken: try model.optionalString("unk_token"),
                      fuseUnknown: try model.bool("fuse_unk", default: false), source: json.source)
    }

    /// Splits a merge rule "left right" at its one space (by bytes: as Characters, a space followed
    /// by a combining mark would be one grapheme).
    static func splitMerge(_ merge: String, index: Int, source: String) throws -> (String, String) {
        let bytes = Array(merge.utf8)
        let spaces = bytes.indices.filter { bytes[$0] == 0x20 }
        guard spaces.count == 1, let k = spaces.first, k > 0, k < bytes.count - 1 else {
            throw TokenizerError.malformedMerge(source: source, index: index, merge: merge,
                                                reason: "expected two tokens separated by one space")
        }
        return (String(decoding: bytes[..<k], as: UTF8.self), String(decoding: bytes[(k + 1)...], as: UTF8.self))
    }

    /// Reads a `pre_tokenizer`: ByteLevel; Sequence[Digits, ByteLevel]; Sequence[Split(GPT-2, Llama-3 or
    /// Qwen-2 regex), ByteLevel].
    static func preTokenizer(_ p: TokenizerJSONObject) throws -> ByteLevelPreTokenizer {
        let unsupported = { (what: String) in TokenizerError.unsupported(source: p.source, feature: "pre_tokenizer \(what)") }
        func byteLevel(_ b: TokenizerJSONObject, into result: inout ByteLevelPreTokenizer, patternSet: Bool) throws {
            result.addPrefixSpace = try b.bool("add_prefix_space", default: true)
            let useRegex = try b.bool("use_regex", default: true)
            if useRegex {
                if patternSet { throw unsupported("with both a Split and a ByteLevel regex") }
                result.pattern = .gpt2
            } else if !patternSet {
                result.pattern = .none
            }
        }
        var result = ByteLevelPreTokenizer(pattern: .none)
        let type = try p.string("type")
        if type == "ByteLevel" {
            try byteLevel(p, into: &result, patternSet: false)
            return result
        }
        guard type == "Sequence" else { throw unsupported("type '\(type)'") }
        let steps = try p.objects("pretokenizers")
        var patternSet = false, sawByteLevel = false
        for step in steps {
            let stepType = try step.string("type")
            guard !sawByteLevel else { throw unsupported("step '\(stepType)' after ByteLevel") }
            switch stepType {
            case "Digits":
                guard try step.bool("individual_digits", default: false) else { throw unsupported("Digits without individual_digits") }
                guard !patternSet else { throw unsupported("Digits after Split") }
                result.individualDigits = true
            case "Split":
                let pattern = try step.object("pattern")
                let regex = try pattern.optionalString("Regex") ?? ""
                let behavior = try step.optionalString("behavior") ?? "Isolated"
                guard behavior == "Isolated", try !step.bool("invert", default: false) else {
                    throw unsupported("Split behaviour '\(behavior)'")
                }
                if regex == ByteLevelPreTokenizer.llama3Regex {
                    result.pattern = .llama3
                } else if regex == ByteLevelPreTokenizer.qwen2Regex {
                    result.pattern = .qwen2
                } else if regex == ByteLevelPreTokenizer.gpt2Regex {
                    result.pattern = .gpt2
                } else {
                    throw unsupported("Split regex '\(regex)'")
                }
                guard !patternSet else { throw unsupported("two Split steps") }
                patternSet = true
            case "ByteLevel":
                try byteLevel(step, into: &result, patternSet: patternSet)
                sawByteLevel = true
            default:
                throw unsupported("step type '\(stepType)'")
            }
        }
        guard sawByteLevel else { throw unsupported("Sequence without a ByteLevel step") }
        return result
    }

    // MARK: TokenEncoding

    /// Token ids of `text` without BOS/EOS.
    public func tokenize(_ text: String) -> [Int] {
        var scalars = Array(text.unicodeScalars)
        var ids: [Int] = []
        ids.reserveCapacity(scalars.count / 3 + 4)
        var bytes: [UInt8] = []
        let segments = matcher.split(scalars, in: 0..<scalars.count)
        for segment in segments {
            switch segment {
            case let .token(id):
                ids.append(id)
            case var .text(range):
                if nfc {
                    var s = String()
                    s.unicodeScalars.append(contentsOf: scalars[range])
                    let normalized = Array(s.precomposedStringWithCanonicalMapping.unicodeScalars)
                    let start = scalars.count
                    scalars += normalized
                    range = start..<scalars.count
                }
                preTokenizer.split(scalars, range) { word, prefixSpace in
                    bytes.removeAll(keepingCapacity: true)
                    if prefixSpace { bytes.append(0x20) }
                    for i in word {
                        let v = scalars[i].value
                        if v < 0x80 { bytes.append(UInt8(v)) } else { UTF8.encode(scalars[i]) { bytes.append($0) } }
                    }
                    model(bytes, into: &ids)
                }
            }
        }
        return ids
    }

    /// The BPE model on one word's bytes.
    func model(_ bytes: [UInt8], into ids: inout [Int]) {
        if bytes.isEmpty { return }
        if bytes.count == 1 {
            let id = byteIds[Int(bytes[0])]
            if id >= 0 { ids.append(Int(id)) } else if let unknownId { ids.append(unknownId) }
            return
        }
        if ignoreMerges {
            let id = bytes.withUnsafeBytes { rawVocab.lookup($0) }
            if id >= 0 { ids.append(id); return }
        }
        if let cached = cache.get(bytes) {
            for id in cached { ids.append(Int(id)) }
            return
        }
        var symbols: [Int32] = []
        symbols.reserveCapacity(bytes.count)
        var lastWasUnknown = false
        for b in bytes {
            let id = byteIds[Int(b)]
            if id >= 0 {
                symbols.append(id)
                lastWasUnknown = false
            } else if let unknownId {
                if !(fuseUnknown && lastWasUnknown) { symbols.append(Int32(unknownId)) }
                lastWasUnknown = true
            }
        }
        let merged = BPETokenizer.mergeAll(symbols, merges)
        cache.set(bytes, merged)
        for id in merged { ids.append(Int(id)) }
    }

    /// Applies merge rules to `symbols` exactly as Hugging Face `Word::merge_all` does: a min-heap
    /// of (rank, position, merged id); a popped entry still applies if the pair now at that position
    /// merges into the same id; after a merge, the pairs with the neighbours are pushed.
    static func mergeAll(_ input: [Int32], _ merges: MergeTable) -> [Int32] {
        let n = input.count
        if n < 2 { return input }
        var sym = input
        var prev = [Int32](repeating: -1, count: n)
        var next = [Int32](repeating: -1, count: n)
        var alive = [Bool](repeating: true, count: n)
        for i in 0..<n {
            prev[i] = Int32(i - 1)
            next[i] = i + 1 < n ? Int32(i + 1) : -1
        }
        var heap = MergeHeap()
        for i in 0..<(n - 1) {
            if let m = merges.lookup(sym[i], sym[i + 1]) { heap.push(rank: m.rank, pos: Int32(i), result: m.result) }
        }
        while let top = heap.pop() {
            let pos = Int(top.pos)
            guard alive[pos] else { continue }
            let right = Int(next[pos])
            guard right >= 0 else { continue }
            guard let m = merges.lookup(sym[pos], sym[right]), m.result == top.result else { continue }
            sym[pos] = top.result
            alive[right] = false
            let after = next[right]
            next[pos] = after
            if after >= 0 { prev[Int(after)] = Int32(pos) }
            let before = Int(prev[pos])
            if before >= 0, let m = merges.lookup(sym[before], sym[pos]) {
                heap.push(rank: m.rank, pos: Int32(before), result: m.result)
            }
            if after >= 0, let m = merges.lookup(sym[pos], sym[Int(after)]) {
                heap.push(rank: m.rank, pos: Int32(pos), result: m.result)
            }
        }
        var out: [Int32] = []
        out.reserveCapacity(n)
        for i in 0..<n where alive[i] { out.append(sym[i]) }
        return out
    }

    /// The ids of `text`, with BOS/EOS where the vocabulary asks for them.
    public func encode(_ text: String) -> [Int] {
        postProcessor.apply(tokenize(text), nil).ids
    }

    // MARK: Decoding

    /// The text of `ids`, special tokens left out.
    public func decode(_ ids: [Int]) -> String {
        decode(ids, skipSpecialTokens: true)
    }

    /// The text of `ids`: each token's bytes concatenated and read as UTF-8 (invalid sequences
    /// become U+FFFD).
    public func decode(_ ids: [Int], skipSpecialTokens: Bool) -> String {
        var bytes: [UInt8] = []
        for id in ids where id >= 0 && id < tokenBytes.count {
            if skipSpecialTokens && specialIds.contains(id) { continue }
            bytes += tokenBytes[id]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The bytes token `id` stands for (empty for an id outside the vocabulary).
    public func bytes(for id: Int) -> [UInt8] {
        id >= 0 && id < tokenBytes.count ? tokenBytes[id] : []
    }

    /// The id of `token` (a vocabulary string in the byte alphabet, or an added token), or nil.
    public func id(for token: String) -> Int? {
        if let t = addedTokens.first(where: { $0.content == token }) { return t.id }
        let id = vocab.lookup(token)
        return id >= 0 ? id : nil
    }
}

/// A min-heap of merge candidates ordered by rank, then position.
struct MergeHeap {
    private var items: [(rank: Int32, pos: Int32, result: Int32)] = []

    @inline(__always)
    private static func less(_ a: (rank: Int32, pos: Int32, result: Int32), _ b: (rank: Int32, pos: Int32, result: Int32)) -> Bool {
        a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos
    }

    mutating func push(rank: Int32, pos: Int32, result: Int32) {
        items.append((rank, pos, result))
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard MergeHeap.less(items[i], items[parent]) else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> (rank: Int32, pos: Int32, result: Int32)? {
        guard let first = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            let n = items.count
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < n && MergeHeap.less(items[l], items[m]) { m = l }
                if r < n && MergeHeap.less(items[r], items[m]) { m = r }
                if m == i { break }
                items.swapAt(i, m)
                i = m
            }
        }
        return first
    }
}

/// Merged ids of words already seen. Shared by all copies of a tokenizer; the lock makes
/// concurrent `encode` calls safe, which is why the class can be `@unchecked Sendable`.
final class BPEWordCache: @unchecked Sendable {
    private var map: [[UInt8]: [Int32]] = [:]
    private let lock = NSLock()
    private let capacity = 100_000

    func get(_ key: [UInt8]) -> [Int32]? {
        lock.lock()
        defer { lock.unlock() }
        return map[key]
    }

    func set(_ key: [UInt8], _ value: [Int32]) {
        lock.lock()
        defer { lock.unlock() }
        if map.count >= capacity { map.removeAll(keepingCapacity: true) }
        map[key] = value
    }
}
