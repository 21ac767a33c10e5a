import Foundation

/// The text clean-up BERT applies before splitting (Hugging Face `BertNormalizer`).
public struct BertNormalizerOptions: Sendable, Equatable {
    /// Remove control characters, NUL and U+FFFD; turn every whitespace character into a space.
    public var cleanText: Bool
    /// Put spaces around CJK ideographs, so each becomes a word.
    public var handleChineseChars: Bool
    /// Decompose (NFD) and drop combining marks; `nil` follows `lowercase`.
    public var stripAccents: Bool?
    public var lowercase: Bool

    public init(cleanText: Bool = true, handleChineseChars: Bool = true, stripAccents: Bool? = nil, lowercase: Bool = true) {
        self.cleanText = cleanText
        self.handleChineseChars = handleChineseChars
        self.stripAccents = stripAccents
        self.lowercase = lowercase
    }

    /// Applies the normaliser to `s[range]`.
    func normalize(_ s: [Unicode.Scalar], _ range: Range<Int>) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(range.count + 8)
        var ascii = true
        for i in range {
            let c = s[i]
            if cleanText {
                if c.value == 0 || TokenizerCharClass.isBertRemoved(c) { continue }
                if TokenizerCharClass.isBertWhitespace(c) { out.append(" "); continue }
            }
            if c.value >= 128 { ascii = false }
            if handleChineseChars && TokenizerCharClass.isChineseChar(c) {
                out.append(" "); out.append(c); out.append(" ")
            } else {
                out.append(c)
            }
        }
        if ascii {
            if lowercase {
                for i in out.indices where out[i].value >= 65 && out[i].value <= 90 {
                    out[i] = Unicode.Scalar(out[i].value + 32)!
                }
            }
            return out
        }
        if stripAccents ?? lowercase {
            let input = out
            out.removeAll(keepingCapacity: true)
            var start = 0
            func decompose(_ range: Range<Int>) {
                guard !range.isEmpty else { return }
                var string = String()
                string.unicodeScalars.append(contentsOf: input[range])
                for c in string.decomposedStringWithCanonicalMapping.unicodeScalars where !TokenizerCharClass.isMark(c) {
                    out.append(c)
                }
            }
            for i in input.indices where TokenizerCharClass.hasNewDecomposition(input[i]) {
                decompose(start..<i)
                out.append(input[i])
                start = i + 1
            }
            decompose(start..<input.count)
        }
        if lowercase {
            var lowered: [Unicode.Scalar] = []
            lowered.reserveCapacity(out.count)
            for c in out {
                if c.value < 128 {
                    lowered.append(c.value >= 65 && c.value <= 90 ? Unicode.Scalar(c.value + 32)! : c)
                } else if c.properties.changesWhenLowercased {
                    lowered.append(contentsOf: c.properties.lowercaseMapping.unicodeScalars)
                } else {
                    lowered.append(c)
                }
            }
            out = lowered
        }
        return out
    }
}

/// How special tokens are put around the tokens of one text or a pair (Hugging Face
/// `TemplateProcessing`; BERT: `[CLS] A [SEP]` and `[CLS] A [SEP] B [SEP]` with B's type id 1).
public struct TemplatePostProcessor: Sendable, Equatable {
    public enum Piece: Sendable, Equatable {
        /// Fixed ids (a special token) with their type id.
        case special(ids: [Int], typeId: Int)
        /// The first text's tokens.
        case first(typeId: Int)
        /// The second text's tokens.
        case second(typeId: Int)
    }
    public var single: [Piece]
    public var pair: [Piece]

    public init(single: [Piece], pair: [Piece]) {
        self.single = single
        self.pair = pair
    }

    /// `[CLS] A [SEP]` / `[CLS] A [SEP] B [SEP]`.
    public static func bert(cls: Int, sep: Int) -> TemplatePostProcessor {
        TemplatePostProcessor(
            single: [.special(ids: [cls], typeId: 0), .first(typeId: 0), .special(ids: [sep], typeId: 0)],
            pair: [.special(ids: [cls], typeId: 0), .first(typeId: 0), .special(ids: [sep], typeId: 0),
                   .second(typeId: 1), .special(ids: [sep], typeId: 1)])
    }

    /// No special tokens.
    public static let none = TemplatePostProcessor(single: [.first(typeId: 0)], pair: [.first(typeId: 0), .second(typeId: 1)])

    /// Number of special ids the template adds.
    public func addedCount(pair isPair: Bool) -> Int {
        (isPair ? pair : single).reduce(0) { n, piece in
            if case let .special(ids, _) = piece { return n + ids.count }
            return n
        }
    }

    /// The encoding of `first` (and `second`), special tokens included, attention mask all ones.
    public func apply(_ first: [Int], _ second: [Int]?) -> TokenEncoding {
        var ids: [Int] = [], types: [Int] = []
        for piece in (second == nil ? single : pair) {
            switch piece {
            case let .special(special, typeId):
                ids += special; types += [Int](repeating: typeId, count: special.count)
            case let .first(typeId):
                ids += first; types += [Int](repeating: typeId, count: first.count)
            case let .second(typeId):
                let s = second ?? []
                ids += s; types += [Int](repeating: typeId, count: s.count)
            }
        }
        return TokenEncoding(ids: ids, typeIds: types, attentionMask: [Int](repeating: 1, count: ids.count))
    }
}

/// BERT's WordPiece tokenizer, equal to Hugging Face `tokenizers` with `BertNormalizer`,
/// `BertPreTokenizer`, the `WordPiece` model and a `TemplateProcessing` post-processor.
///
/// ```swift
/// let tok = try WordPieceTokenizer(tokenizerJSON: "all-MiniLM-L6-v2/tokenizer.json")
/// tok.encode("Héllo, wörld!")                 // [101, 7592, 1010, 2088, 999, 102]
/// let e = tok.encode("a cat", pair: "a dog", maxLength: 8, padding: .maxLength, truncation: true)
/// // e.ids [101, 1037, 4937, 102, 1037, 3899, 102, 0], e.typeIds [0,0,0,0,1,1,1,0], e.attentionMask [1,1,1,1,1,1,1,0]
/// ```
///
/// Words are split on whitespace and punctuation, then cut greedily into the longest vocabulary
/// pieces, continuation pieces carrying the `##` prefix; a word with a piece that cannot be found,
/// or longer than `maxInputCharsPerWord` scalars, becomes `[UNK]`.
public struct WordPieceTokenizer: Tokenizer {
    /// Token strings by id ("" for ids the vocabulary skips).
    public let vocabulary: [String]
    public let unknownId: Int
    public let continuingSubwordPrefix: String
    public let maxInputCharsPerWord: Int
    public let normalizer: BertNormalizerOptions?
    public let postProcessor: TemplatePostProcessor
    public let addedTokens: [AddedToken]
    /// The tokenizer.json `truncation` section: strategy and side, and the length used when
    /// `encode(_:pair:maxLength:padding:truncation:)` gets no `maxLength`.
    public var truncation: TruncationParameters?
    /// The tokenizer.json `padding` section: pad id, side, multiple, and a fixed length if any.
    public var padding: PaddingParameters?
    /// Whether `decode` applies the WordPiece decoder's clean-up (" ." -> "." and so on).
    public let decoderCleanup: Bool
    /// False when the tokenizer.json has no decoder: `decode` then joins tokens with spaces.
    public let hasWordPieceDecoder: Bool

    let table: ByteStringTable
    let prefixBytes: [UInt8]
    let rawMatcher: AddedTokenMatcher
    let normalizedMatcher: AddedTokenMatcher
    let specialIds: Set<Int>
    let addedById: [Int: String]

    public var vocabularySize: Int { vocabulary.count }

    /// A WordPiece tokenizer from a vocabulary (`(token, id)` pairs; a token listed twice keeps its last id).
    ///
    /// - Parameters:
    ///   - addedTokens: tokens matched before splitting; `nil` uses the BERT specials `[PAD]`, `[UNK]`,
    ///     `[CLS]`, `[SEP]`, `[MASK]` found in the vocabulary.
    ///   - postProcessor: `nil` uses `[CLS] A [SEP]` / `[CLS] A [SEP] B [SEP]`.
    /// - Throws: `TokenizerError` when the unknown token or a template token is not in the vocabulary.
    public init(vocabulary entries: [(String, Int)], unknownToken: String = "[UNK]",
                continuingSubwordPrefix: String = "##", maxInputCharsPerWord: Int = 100,
                normalizer: BertNormalizerOptions? = BertNormalizerOptions(),
                addedTokens: [AddedToken]? = nil, postProcessor: TemplatePostProcessor? = nil,
                truncation: TruncationParameters? = nil, padding: PaddingParameters? = nil,
                decoderCleanup: Bool = true, hasWordPieceDecoder: Bool = true,
                source: String = "vocabulary") throws {
        var table = ByteStringTable(minimumCapacity: entries.count)
        var maxId = -1
        // Ids far beyond the number of tokens would only make the id-to-token table huge.
        let idLimit = 2 * (entries.count + (addedTokens?.count ?? 0)) + 65536
        for (token, id) in entries {
            guard id >= 0 && id < idLimit else {
                throw TokenizerError.invalidField(source: source, field: "vocab['\(token)']", reason: "id \(id) out of range")
            }
            table.insert(token, value: id)
            maxId = max(maxId, id)
        }
        for t in addedTokens ?? [] where t.id < 0 || t.id >= idLimit {
            throw TokenizerError.invalidField(source: source, field: "added_tokens['\(t.content)']", reason: "id \(t.id) out of range")
        }
        maxId = max(maxId, (addedTokens ?? []).map(\.id).max() ?? -1)
        var vocabulary = [String](repeating: "", count: maxId + 1)
        for (token, id) in entries where table.lookup(token) == id { vocabulary[id] = token }

        let unk = table.lookup(unknownToken)
        guard unk >= 0 else {
            throw TokenizerError.invalidField(source: source, field: "model.unk_token",
                                              reason: "'\(unknownToken)' is not in the vocabulary")
        }
        var added: [AddedToken]
        if let addedTokens {
            added = addedTokens
        } else {
            added = []
            for name in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] {
                let id = table.lookup(name)
                if id >= 0 { added.append(AddedToken(content: name, id: id, special: true)) }
            }
        }
        for t in added where t.id < vocabulary.count { vocabulary[t.id] = t.content }
        var processor = postProcessor
        if processor == nil {
            let cls = table.lookup("[CLS]"), sep = table.lookup("[SEP]")
            guard cls >= 0, sep >= 0 else {
                throw TokenizerError.invalidField(source: source, field: "post_processor",
                                                  reason: "[CLS] or [SEP] is not in the vocabulary")
            }
            processor = .bert(cls: cls, sep: sep)
        }

        self.vocabulary = vocabulary
        self.unknownId = unk
        self.continuingSubwordPrefix = continuingSubwordPrefix
        self.maxInputCharsPerWord = maxInputCharsPerWord
        self.normalizer = normalizer
        self.postProcessor = processor!
        self.addedTokens = added
        self.truncation = truncation
        self.padding = padding
        self.decoderCleanup = decoderCleanup
        self.hasWordPieceDecoder = hasWordPieceDecoder
        self.table = table
        self.prefixBytes = Array(continuingSubwordPrefix.utf8)
        self.rawMatcher = AddedTokenMatcher(added.filter { !$0.normalized })
        let norm = normalizer
        self.normalizedMatcher = AddedTokenMatcher(added.filter { $0.normalized }) { content in
            let scalars = Array(content.unicodeScalars)
            return norm?.normalize(scalars, 0..<scalars.count) ?? scalars
        }
        self.specialIds = Set(added.filter(\.special).map(\.id))
        // Decoding gives a normalised added token in its normalised form, as the reference does.
        var byId: [Int: String] = [:]
        for t in added {
            if t.normalized, let norm = normalizer {
                let scalars = Array(t.content.unicodeScalars)
                var s = String()
                s.unicodeScalars.append(contentsOf: norm.normalize(scalars, 0..<scalars.count))
                byId[t.id] = s
            } else {
                byId[t.id] = t.content
            }
        }
        self.addedById = byId
    }

    /// Loads a BERT `vocab.txt` (one token a line, id = line number) with BERT's default settings
    /// (lower-casing, accent stripping, `[CLS] A [SEP]`).
    public init(vocabFile path: String, lowercase: Bool = true) throws {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw TokenizerError.cannotRead(path: path, reason: error.localizedDescription)
        }
        // Lines split on "\n" by scalars (as a String, "\r\n" is one Character), trailing whitespace trimmed.
        var entries: [(String, Int)] = []
        var line = String.UnicodeScalarView()
        for c in text.unicodeScalars {
            if c == "\n" {
                entries.append((WordPieceTokenizer.trimmingTrailingSpace(line), entries.count))
                line = String.UnicodeScalarView()
            } else {
                line.append(c)
            }
        }
        if !line.isEmpty { entries.append((WordPieceTokenizer.trimmingTrailingSpace(line), entries.count)) }
        let name = (path as NSString).lastPathComponent
        try self.init(vocabulary: entries, normalizer: BertNormalizerOptions(lowercase: lowercase), source: name)
    }

    private static func trimmingTrailingSpace(_ line: String.UnicodeScalarView) -> String {
        var scalars = Array(line)
        while let last = scalars.last, TokenizerCharClass.isSpace(last) { scalars.removeLast() }
        var s = String()
        s.unicodeScalars.append(contentsOf: scalars)
        return s
    }

    /// Loads a Hugging Face tokenizer.json whose model is WordPiece.
    public init(tokenizerJSON path: String) throws {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw TokenizerError.cannotRead(path: path, reason: error.localizedDescription)
        }
        try self.init(tokenizerJSONData: data, source: (path as NSString).lastPathComponent)
    }

    /// Parses the contents of a tokenizer.json whose model is WordPiece; `source` names it in errors.
    public init(tokenizerJSONData data: Data, source: String = "tokenizer.json") throws {
        try self.init(json: TokenizerJSONObject(data: data, source: source))
    }

    init(json: TokenizerJSONObject) throws {
        let model = try json.object("model")
        if let type = try model.optionalString("type"), type != "WordPiece" {
            throw model.invalid("type", "expected WordPiece, found \(type)")
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
        let unk = try model.optionalString("unk_token") ?? "[UNK]"
        let prefix = try model.optionalString("continuing_subword_prefix") ?? "##"
        let maxChars = try model.optionalInt("max_input_chars_per_word") ?? 100

        var normalizer: BertNormalizerOptions? = nil
        if let n = try json.optionalObject("normalizer") {
            let type = try n.string("type")
            guard type == "BertNormalizer" else {
                throw TokenizerError.unsupported(source: json.source, feature: "normalizer type '\(type)' (only BertNormalizer)")
            }
            normalizer = BertNormalizerOptions(
                cleanText: try n.bool("clean_text", default: true),
                handleChineseChars: try n.bool("handle_chinese_chars", default: true),
                stripAccents: try n.optionalBool("strip_accents"),
                lowercase: try n.bool("lowercase", default: true))
        }
        if let p = try json.optionalObject("pre_tokenizer") {
            let type = try p.string("type")
            guard type == "BertPreTokenizer" else {
                throw TokenizerError.unsupported(source: json.source, feature: "pre_tokenizer type '\(type)' (only BertPreTokenizer)")
            }
        } else {
            throw json.missing("pre_tokenizer")
        }
        let added = try json.addedTokens()
        var lookup: [String: Int] = [:]
        for (token, id) in entries { lookup[token] = id }
        for t in added { lookup[t.content] = t.id }
        let processor = try TemplatePostProcessor(json: json.optionalObject("post_processor"), lookup: lookup)

        var cleanup = true, hasDecoder = false
        if let d = try json.optionalObject("decoder") {
            let type = try d.string("type")
            guard type == "WordPiece" else {
                throw TokenizerError.unsupported(source: json.source, feature: "decoder type '\(type)' for WordPiece")
            }
            cleanup = try d.bool("cleanup", default: true)
            hasDecoder = true
        }
        try self.init(vocabulary: entries, unknownToken: unk, continuingSubwordPrefix: prefix,
                      maxInputCharsPerWord: maxChars, normalizer: normalizer, addedTokens: added,
                      postProcessor: processor, truncation: json.truncationParameters(),
                      padding: json.paddingParameters(), decoderCleanup: cleanup,
                      hasWordPieceDecoder: hasDecoder, source: json.source)
    }

    // MARK: TokenEncoding

    /// Token ids of `text` without special tokens, truncation or padding.
    public func tokenize(_ text: String) -> [Int] {
        let scalars = Array(text.unicodeScalars)
        var ids: [Int] = []
        ids.reserveCapacity(scalars.count / 3 + 4)
        var scratch: [UInt8] = []
        var boundaries: [Int] = []
        for segment in rawMatcher.split(scalars, in: 0..<scalars.count) {
            switch segment {
            case let .token(id):
                ids.append(id)
            case let .text(range):
                let normalized = normalizer?.normalize(scalars, range) ?? Array(scalars[range])
                for part in normalizedMatcher.split(normalized, in: 0..<normalized.count) {
                    switch part {
                    case let .token(id): ids.append(id)
                    case let .text(r): preTokenizeAndModel(normalized, r, into: &ids, &scratch, &boundaries)
                    }
                }
            }
        }
        return ids
    }

    /// The BERT pre-tokenizer (split on whitespace, isolate punctuation) feeding the WordPiece model.
    private func preTokenizeAndModel(_ s: [Unicode.Scalar], _ range: Range<Int>, into ids: inout [Int],
                                     _ scratch: inout [UInt8], _ boundaries: inout [Int]) {
        var wordStart = range.lowerBound
        var i = range.lowerBound
        while i < range.upperBound {
            let c = s[i]
            if TokenizerCharClass.isBertWhitespace(c) {
                if i > wordStart { wordPiece(s, wordStart..<i, into: &ids, &scratch, &boundaries) }
                wordStart = i + 1
            } else if TokenizerCharClass.isBertPunctuation(c) {
                if i > wordStart { wordPiece(s, wordStart..<i, into: &ids, &scratch, &boundaries) }
                wordPiece(s, i..<(i + 1), into: &ids, &scratch, &boundaries)
                wordStart = i + 1
            }
            i += 1
        }
        if range.upperBound > wordStart { wordPiece(s, wordStart..<range.upperBound, into: &ids, &scratch, &boundaries) }
    }

    /// Greedy longest-match-first WordPiece on one word.
    private func wordPiece(_ s: [Unicode.Scalar], _ word: Range<Int>, into ids: inout [Int],
                           _ scratch: inout [UInt8], _ boundaries: inout [Int]) {
        if word.count > maxInputCharsPerWord {
            ids.append(unknownId)
            return
        }
        // UTF-8 bytes of the word after the prefix, and the byte offset of every scalar boundary.
        scratch.removeAll(keepingCapacity: true)
        boundaries.removeAll(keepingCapacity: true)
        let p = prefixBytes.count
        scratch += prefixBytes
        for i in word {
            boundaries.append(scratch.count - p)
            let v = s[i].value
            if v < 0x80 {
                scratch.append(UInt8(v))
            } else {
                UTF8.encode(s[i]) { scratch.append($0) }
            }
        }
        boundaries.append(scratch.count - p)
        let n = word.count
        let maxKey = table.maxKeyLength
        let mark = ids.count
        var start = 0
        let found: Bool = scratch.withUnsafeMutableBytes { buf in
            let base = buf.baseAddress!
            while start < n {
                // The word's bytes sit after `p` bytes of prefix. A continuation piece needs the prefix
                // right before its bytes: write it over the bytes already consumed.
                let keyStart = start > 0 ? boundaries[start] : p
                if start > 0 {
                    for k in 0..<p { base.storeBytes(of: prefixBytes[k], toByteOffset: keyStart + k, as: UInt8.self) }
                }
                var end = n
                var id = -1
                while end > start {
                    let length = p + boundaries[end] - keyStart
                    if length <= maxKey {
                        id = table.lookup(UnsafeRawBufferPointer(start: base + keyStart, count: length))
                        if id >= 0 { break }
                    }
                    end -= 1
                }
                if id < 0 { return false }
                ids.append(id)
                start = end
            }
            return true
        }
        if !found {
            ids.removeSubrange(mark...)
            ids.append(unknownId)
        }
    }

    /// The ids of `text` with the template's special tokens (`[CLS] text [SEP]`).
    public func encode(_ text: String) -> [Int] {
        postProcessor.apply(tokenize(text), nil).ids
    }

    /// The model inputs for `text` (and `pair`), truncated and padded as asked.
    ///
    /// - Parameters:
    ///   - maxLength: the length after truncation and `.maxLength` padding, special tokens included;
    ///     `nil` takes the tokenizer.json's truncation length (or fixed padding length).
    ///   - padding: `.maxLength` pads to `maxLength`; `.longest` and `.none` leave one encoding as it is.
    ///   - truncation: cut the texts so that the encoding fits `maxLength` (longest text first for pairs).
    public func encode(_ text: String, pair: String? = nil, maxLength: Int?, padding: PaddingStrategy = .none,
                       truncation: Bool = false) -> TokenEncoding {
        var enc = encodeUnpadded(text, pair: pair, maxLength: maxLength, truncation: truncation)
        if padding == .maxLength, let target = maxLength ?? self.padding?.fixedLength ?? self.truncation?.maxLength {
            enc.pad(to: target, with: self.padding ?? PaddingParameters())
        }
        return enc
    }

    /// The model inputs for a batch, padded to the longest sequence (`.longest`) or to `maxLength`.
    public func encode(batch texts: [String], pairs: [String]? = nil, maxLength: Int?,
                       padding: PaddingStrategy = .longest, truncation: Bool = false) -> [TokenEncoding] {
        var encodings = texts.indices.map { i in
            encodeUnpadded(texts[i], pair: pairs.flatMap { i < $0.count ? $0[i] : nil },
                           maxLength: maxLength, truncation: truncation)
        }
        let params = self.padding ?? PaddingParameters()
        switch padding {
        case .none:
            break
        case .longest:
            let longest = encodings.map(\.count).max() ?? 0
            for i in encodings.indices { encodings[i].pad(to: longest, with: params) }
        case .maxLength:
            if let target = maxLength ?? params.fixedLength ?? self.truncation?.maxLength {
                for i in encodings.indices { encodings[i].pad(to: target, with: params) }
            }
        }
        return encodings
    }

    private func encodeUnpadded(_ text: String, pair: String?, maxLength: Int?, truncation: Bool) -> TokenEncoding {
        var first = tokenize(text)
        var second = pair.map { tokenize($0) }
        if truncation, let limit = maxLength ?? self.truncation?.maxLength {
            let strategy = self.truncation?.strategy ?? .longestFirst
            let side = self.truncation?.direction ?? .right
            let budget = limit - postProcessor.addedCount(pair: second != nil)
            let (n1, n2) = truncatedLengths(first.count, second?.count, budget: budget, strategy: strategy)
            first = keepTokens(first, n1, from: side)
            if let s = second, let n2 { second = keepTokens(s, n2, from: side) }
        }
        return postProcessor.apply(first, second)
    }

    // MARK: Decoding

    /// The text of `ids`, special tokens left out (Hugging Face `decode` with `skip_special_tokens`).
    public func decode(_ ids: [Int]) -> String {
        decode(ids, skipSpecialTokens: true)
    }

    /// The text of `ids`: pieces joined with spaces, `##` pieces glued to the previous one,
    /// and the WordPiece decoder's clean-up (" ." -> ".", " n't" -> "n't", ...).
    public func decode(_ ids: [Int], skipSpecialTokens: Bool) -> String {
        var tokens: [String] = []
        for id in ids {
            if skipSpecialTokens && specialIds.contains(id) { continue }
            if let t = addedById[id] { tokens.append(t); continue }
            guard id >= 0 && id < vocabulary.count else { continue }
            tokens.append(vocabulary[id])
        }
        guard hasWordPieceDecoder else { return tokens.joined(separator: " ") }
        // Byte-wise, as the reference does: Swift's `hasPrefix` and `replacingOccurrences` compare
        // grapheme clusters, and "##" followed by a combining vowel sign is not "##" + a character.
        var out: [UInt8] = []
        for (i, token) in tokens.enumerated() {
            var piece = Array(token.utf8)
            if i != 0 {
                if piece.starts(with: prefixBytes) {
                    piece.removeFirst(prefixBytes.count)
                } else {
                    piece.insert(0x20, at: 0)
                }
            }
            if decoderCleanup { piece = WordPieceTokenizer.cleanup(piece) }
            out += piece
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static let cleanupRules: [([UInt8], [UInt8])] = [
        (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
        (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
    ].map { (Array($0.utf8), Array($1.utf8)) }

    /// The clean-up of Hugging Face's WordPiece decoder, applied to each piece: each rule replaces
    /// every occurrence, left to right, in the result of the previous rule.
    static func cleanup(_ s: [UInt8]) -> [UInt8] {
        guard s.contains(0x20) else { return s }
        var r = s
        for (from, to) in cleanupRules {
            var out: [UInt8] = []
            out.reserveCapacity(r.count)
            var i = 0
            while i < r.count {
                if r[i] == from[0] && i + from.count <= r.count && r[i..<(i + from.count)].elementsEqual(from) {
                    out += to
                    i += from.count
                } else {
                    out.append(r[i])
                    i += 1
                }
            }
            r = out
        }
        return r
    }

    /// The id of `token`, or nil.
    public func id(for token: String) -> Int? {
        if let t = addedTokens.first(where: { $0.content == token }) { return t.id }
        let id = table.lookup(token)
        return id >= 0 ? id : nil
    }

    /// The token string of `id`, or nil.
    public func token(for id: Int) -> String? {
        if let t = addedById[id] { return t }
        return id >= 0 && id < vocabulary.count ? vocabulary[id] : nil
    }
}

extension TemplatePostProcessor {
    /// Reads a tokenizer.json `post_processor` (TemplateProcessing or BertProcessing); nil means no specials.
    init(json: TokenizerJSONObject?, lookup: [String: Int]) throws {
        guard let json else {
            self = .none
            return
        }
        let type = try json.string("type")
        switch type {
        case "BertProcessing":
            let sep = try json.array("sep"), cls = try json.array("cls")
            guard sep.count == 2, let sepId = (sep[1] as? NSNumber)?.intValue else { throw json.invalid("sep", "expected [token, id]") }
            guard cls.count == 2, let clsId = (cls[1] as? NSNumber)?.intValue else { throw json.invalid("cls", "expected [token, id]") }
            self = .bert(cls: clsId, sep: sepId)
        case "TemplateProcessing":
            var specials: [String: [Int]] = [:]
            if json.has("special_tokens") {
                let table = try json.object("special_tokens")
                for key in table.values.keys {
                    let entry = try table.object(key)
                    let ids = try entry.array("ids")
                    specials[key] = try ids.map { v in
                        guard let n = v as? NSNumber else { throw entry.invalid("ids", "expected integers") }
                        return n.intValue
                    }
                }
            }
            func pieces(_ key: String) throws -> [Piece] {
                try json.objects(key).map { item in
                    if item.has("SpecialToken") {
                        let s = try item.object("SpecialToken")
                        let name = try s.string("id")
                        let typeId = try s.optionalInt("type_id") ?? 0
                        if let ids = specials[name] { return .special(ids: ids, typeId: typeId) }
                        if let id = lookup[name] { return .special(ids: [id], typeId: typeId) }
                        throw s.invalid("id", "special token '\(name)' is not in the vocabulary")
                    }
                    let s = try item.object("Sequence")
                    let which = try s.string("id")
                    let typeId = try s.optionalInt("type_id") ?? 0
                    switch which {
                    case "A": return .first(typeId: typeId)
                    case "B": return .second(typeId: typeId)
                    default: throw s.invalid("id", "expected A or B, found \(which)")
                    }
                }
            }
            self.init(single: try pieces("single"), pair: try pieces("pair"))
        default:
            throw TokenizerError.unsupported(source: json.source, feature: "post_processor type '\(type)'")
        }
    }
}
