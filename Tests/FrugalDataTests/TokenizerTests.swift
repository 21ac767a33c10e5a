import Foundation
import Testing
@testable import FrugalData

/// Fixtures written by scripts/tokenizer_reference.py from the Hugging Face `tokenizers` library.
private enum TokenizerFixtures {
    static func url(_ name: String) -> URL {
        Bundle.module.resourceURL!.appendingPathComponent("Fixtures/tokenizers/\(name)")
    }

    static func json(_ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: url(name))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    static func ints(_ value: Any?) -> [Int] { (value as? [NSNumber])?.map(\.intValue) ?? [] }

    static func encoding(_ value: Any?) -> TokenEncoding {
        let e = value as? [String: Any] ?? [:]
        return TokenEncoding(ids: ints(e["ids"]), typeIds: ints(e["type_ids"]), attentionMask: ints(e["attention_mask"]))
    }

    static var vocabPath: String { url("minilm-vocab.txt").path }

    /// The SmolLM2 vocabulary subset and merges of bpe-cases.json, as a tokenizer.
    static func smolSubset() throws -> (BPETokenizer, [String: Any]) {
        let cases = try json("bpe-cases.json")
        let vocab = (cases["vocab"] as! [[Any]]).map { ($0[0] as! String, ($0[1] as! NSNumber).intValue) }
        let merges = try (cases["merges"] as! [String]).enumerated().map {
            try BPETokenizer.splitMerge($1, index: $0, source: "bpe-cases.json")
        }
        let ids = Dictionary(vocab, uniquingKeysWith: { a, _ in a })
        let specials = (cases["specials"] as! [String]).map { AddedToken(content: $0, id: ids[$0]!, special: true) }
        let tok = try BPETokenizer(vocabulary: vocab, merges: merges,
                                   preTokenizer: ByteLevelPreTokenizer(pattern: .gpt2, individualDigits: true),
                                   addedTokens: specials)
        return (tok, cases)
    }
}

// MARK: - Reference fixtures

@Suite("WordPiece against Hugging Face tokenizers (all-MiniLM-L6-v2)")
struct WordPieceReferenceTests {
    @Test("every fixture text gives the reference ids and decode")
    func fixtureIds() throws {
        let tok = try WordPieceTokenizer(vocabFile: TokenizerFixtures.vocabPath)
        let cases = try TokenizerFixtures.json("wordpiece-cases.json")
        let texts = cases["texts"] as! [String]
        let ids = (cases["ids"] as! [Any]).map(TokenizerFixtures.ints)
        let decoded = cases["decoded"] as! [String]
        #expect(texts.count >= 140)
        var mismatches: [Int] = []
        for i in texts.indices {
            let got = tok.encode(texts[i])
            if got != ids[i] { mismatches.append(i) }
            #expect(got == ids[i], "text \(i): \(texts[i].debugDescription)")
            #expect(tok.decode(got) == decoded[i], "decode of text \(i)")
        }
        #expect(mismatches.isEmpty)
    }

    @Test("pairs truncated longest-first and padded to max length, as the reference")
    func fixturePairs() throws {
        let tok = try WordPieceTokenizer(vocabFile: TokenizerFixtures.vocabPath)
        let pairs = try #require(try TokenizerFixtures.json("wordpiece-cases.json")["pairs"] as? [String: Any])
        let texts = pairs["texts"] as! [String]
        let maxLength = (pairs["max_length"] as! NSNumber).intValue
        let expected = (pairs["encodings"] as! [Any]).map(TokenizerFixtures.encoding)
        #expect(expected.count == texts.count - 1)
        for i in 0..<(texts.count - 1) {
            let e = tok.encode(texts[i], pair: texts[i + 1], maxLength: maxLength, padding: .maxLength, truncation: true)
            #expect(e == expected[i], "pair \(i)")
        }
    }

    @Test("a batch padded to its longest member, as the reference")
    func fixtureBatch() throws {
        let tok = try WordPieceTokenizer(vocabFile: TokenizerFixtures.vocabPath)
        let batch = try #require(try TokenizerFixtures.json("wordpiece-cases.json")["batch_longest"] as? [String: Any])
        let expected = (batch["encodings"] as! [Any]).map(TokenizerFixtures.encoding)
        let got = tok.encode(batch: batch["texts"] as! [String], maxLength: nil, padding: .longest)
        #expect(got == expected)
        #expect(Set(got.map(\.count)).count == 1)
    }

    @Test("the loader picks WordPiece for vocab.txt")
    func loaderVocabTxt() throws {
        let tok = try TokenizerLoader.load(path: TokenizerFixtures.vocabPath)
        #expect(tok is WordPieceTokenizer)
        #expect(tok.vocabularySize == 30522)
        #expect(tok.encode("Hello, world!") == [101, 7592, 1010, 2088, 999, 102])
    }
}

@Suite("Byte-level BPE against Hugging Face tokenizers (SmolLM2)")
struct BPEReferenceTests {
    @Test("every fixture text gives the reference ids and decode (vocabulary subset)")
    func fixtureIds() throws {
        let (tok, cases) = try TokenizerFixtures.smolSubset()
        let texts = cases["texts"] as! [String]
        let ids = (cases["ids"] as! [Any]).map(TokenizerFixtures.ints)
        let decoded = cases["decoded"] as! [String]
        #expect(texts.count >= 100)
        for i in texts.indices {
            let got = tok.encode(texts[i])
            #expect(got == ids[i], "text \(i): \(texts[i].debugDescription)")
            #expect(tok.decode(got) == decoded[i], "decode of text \(i)")
        }
    }

    @Test("the GGUF-array initializer (pre 'smollm', control tokens) gives the same ids")
    func ggufArrays() throws {
        let (_, cases) = try TokenizerFixtures.smolSubset()
        let vocab = (cases["vocab"] as! [[Any]]).map { ($0[0] as! String, ($0[1] as! NSNumber).intValue) }
        let specials = Set(cases["specials"] as! [String])
        // Dense arrays as a GGUF stores them; ids outside the subset get placeholders no merge can make.
        let size = vocab.map(\.1).max()! + 1
        var tokens = (0..<size).map { "<unused\($0)>" }
        var types = [Int32](repeating: 1, count: size)
        for (token, id) in vocab {
            tokens[id] = token
            if specials.contains(token) { types[id] = 3 }
        }
        let tok = try BPETokenizer(tokens: tokens, merges: cases["merges"] as! [String], tokenTypes: types,
                                   pre: "smollm", bos: 1, eos: 2)
        let texts = cases["texts"] as! [String]
        let ids = (cases["ids"] as! [Any]).map(TokenizerFixtures.ints)
        for i in texts.indices { #expect(tok.encode(texts[i]) == ids[i], "text \(i)") }
        #expect(tok.vocabularySize == size)
        #expect(tok.bosId == 1 && tok.eosId == 2)
    }

    @Test("add_bos_token puts the BOS id first")
    func addBOS() throws {
        let tok = try BPETokenizer(tokens: ["<s>", "a", "b", "ab"], merges: ["a b"], tokenTypes: [3, 1, 1, 1],
                                   pre: "gpt2", bos: 0, eos: nil, addBOS: true)
        #expect(tok.encode("abab") == [0, 3, 3])
        #expect(tok.decode([0, 3, 3]) == "abab")
        #expect(tok.decode([0, 3], skipSpecialTokens: false) == "<s>ab")
    }

    @Test("pre-tokenizer words equal the reference for GPT-2, GPT-2 with prefix space, SmolLM, Llama 3, Qwen 2")
    func preTokenizers() throws {
        let data = try Data(contentsOf: TokenizerFixtures.url("pretokenizer-cases.json"))
        let cases = try #require(try JSONSerialization.jsonObject(with: data) as? [[String: Any]])
        let kinds: [(String, ByteLevelPreTokenizer)] = [
            ("gpt2", ByteLevelPreTokenizer(pattern: .gpt2)),
            ("gpt2-prefix", ByteLevelPreTokenizer(pattern: .gpt2, addPrefixSpace: true)),
            ("smollm", ByteLevelPreTokenizer(pattern: .gpt2, individualDigits: true)),
            ("llama3", ByteLevelPreTokenizer(pattern: .llama3)),
            ("qwen2", ByteLevelPreTokenizer(pattern: .qwen2)),
        ]
        #expect(cases.count >= 50)
        for c in cases {
            let text = c["text"] as! String
            for (name, pre) in kinds {
                #expect(pre.words(in: text) == c[name] as! [String], "\(name): \(text.debugDescription)")
            }
        }
    }
}

// MARK: - Round trips

private func byteBPE() throws -> BPETokenizer {
    // All 256 byte symbols plus a few merges: every string must come back unchanged.
    var vocab = (0..<256).map { (String(Character(ByteLevelAlphabet.characters[$0])), $0) }
    let merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("ð", "Ł"), ("ä", "¸"), ("Ì", "ģ")]
    for (i, m) in merges.enumerated() { vocab.append((m.0 + m.1, 256 + i)) }
    return try BPETokenizer(vocabulary: vocab, merges: merges, preTokenizer: ByteLevelPreTokenizer(pattern: .gpt2),
                            addedTokens: [AddedToken(content: "<|endoftext|>", id: 262, special: true)])
}

private let unicodeSamples = [
    "", " ", "the cat", "  the  cat  ", "Emoji 😀👍🏽🇺🇸 ❤️ 👩‍👩‍👧", "中文字符和日本語のテキスト、한국어",
    "e\u{301}\u{302} combining a\u{308}\u{323}", "\t\n\r\n mixed \u{3000}\u{a0} space", "İstanbul ΣΊΣΥΦΟΣ ﬁ",
    "'s 'T 're 1234567 ١٢٣", "\u{0}\u{1}\u{7f} controls", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \u{10FFFF}",
]

@Suite("Round trips")
struct TokenizerRoundTripTests {
    @Test("byte-level BPE decode(encode(s)) == s for arbitrary Unicode", arguments: unicodeSamples)
    func bpeRoundTrip(_ text: String) throws {
        let tok = try byteBPE()
        let ids = tok.encode(text)
        #expect(Array(tok.decode(ids).unicodeScalars) == Array(text.unicodeScalars))
        #expect(ids.count <= text.utf8.count)
    }

    @Test("BPE merges apply and special tokens are matched whole")
    func bpeMergesAndSpecials() throws {
        let tok = try byteBPE()
        #expect(tok.encode(" the") == [258])                       // Ġ t -> Ġt, h e -> he, Ġt he -> Ġthe
        #expect(tok.encode("a<|endoftext|>b") == [97, 262, 98])
        #expect(tok.decode([97, 262, 98]) == "ab")
        #expect(tok.decode([97, 262, 98], skipSpecialTokens: false) == "a<|endoftext|>b")
    }

    @Test("byte tokenizer round trip and specials", arguments: unicodeSamples)
    func byteRoundTrip(_ text: String) {
        let tok = ByteTokenizer(specialTokens: ["<eos>", "<pad>"], append: "<eos>")
        let ids = tok.encode(text)
        #expect(ids == text.utf8.map(Int.init) + [256])
        #expect(tok.decode(ids) == text)
    }

    @Test("byte tokenizer ids")
    func byteTokenizer() {
        let tok = ByteTokenizer(specialTokens: ["<eos>", "<pad>"])
        #expect(tok.vocabularySize == 258)
        #expect(tok.eos == 256)
        #expect(tok.encode("hé<pad>") == [104, 195, 169, 257])
        #expect(tok.decode([104, 257, 256], skipSpecialTokens: false) == "h<pad><eos>")
        #expect(ByteTokenizer(specialTokens: ["<eos>"], matchSpecialTokens: false).encode("<eos>").count == 5)
        #expect(ByteTokenizer().decode([0xE4, 0xB8]) == "\u{FFFD}")
    }
}

// MARK: - WordPiece behaviour, padding and truncation (hand-computed)

private func tinyWordPiece(truncation: TruncationParameters? = nil, padding: PaddingParameters? = nil) throws -> WordPieceTokenizer {
    let words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "dog", "sat", "un", "##aff", "##able",
                 "a", "##b", ",", "!", "cafe", "中"]
    return try WordPieceTokenizer(vocabulary: words.enumerated().map { ($1, $0) }, maxInputCharsPerWord: 10,
                                  truncation: truncation, padding: padding)
}

@Suite("WordPiece behaviour")
struct WordPieceBehaviourTests {
    @Test("greedy longest match, ## continuations, [UNK] words")
    func model() throws {
        let tok = try tinyWordPiece()
        #expect(tok.tokenize("unaffable") == [9, 10, 11])
        #expect(tok.tokenize("The CAT, sat!") == [5, 6, 14, 8, 15])
        #expect(tok.tokenize("abbb") == [12, 13, 13, 13])
        #expect(tok.tokenize("abc dog") == [1, 7])           // "c" has no piece: the whole word is [UNK]
        #expect(tok.tokenize("abbbbbbbbbb") == [1])          // 11 scalars > maxInputCharsPerWord 10
        #expect(tok.tokenize("abbbbbbbbb").count == 10)    // 10 scalars are allowed
        #expect(tok.tokenize("Café 中中") == [16, 17, 17])   // accents stripped, CJK split
        #expect(tok.tokenize("[MASK] the[SEP]") == [4, 5, 3]) // specials matched in the raw text
        #expect(tok.encode("the cat") == [2, 5, 6, 3])
        #expect(tok.decode([2, 9, 10, 11, 14, 5, 3]) == "unaffable, the")
        #expect(tok.decode([2, 5, 3], skipSpecialTokens: false) == "[CLS] the [SEP]")
    }

    @Test("single text truncated and padded, attention mask marks padding")
    func single() throws {
        let tok = try tinyWordPiece()
        let e = tok.encode("the cat sat", maxLength: 4, padding: .maxLength, truncation: true)
        #expect(e.ids == [2, 5, 6, 3])
        #expect(e.typeIds == [0, 0, 0, 0])
        #expect(e.attentionMask == [1, 1, 1, 1])
        let p = tok.encode("the", maxLength: 6, padding: .maxLength, truncation: true)
        #expect(p.ids == [2, 5, 3, 0, 0, 0])
        #expect(p.attentionMask == [1, 1, 1, 0, 0, 0])
        let n = tok.encode("the cat sat", maxLength: 4, padding: .none, truncation: false)
        #expect(n.ids == [2, 5, 6, 8, 3])
    }

    @Test("pairs: longest first, type ids 0 then 1")
    func pairs() throws {
        let tok = try tinyWordPiece()
        // 3 + 1 tokens, budget 6 - 3 specials = 3: the longer text loses one.
        let e = tok.encode("the cat sat", pair: "dog", maxLength: 6, padding: .maxLength, truncation: true)
        #expect(e.ids == [2, 5, 6, 3, 7, 3])
        #expect(e.typeIds == [0, 0, 0, 0, 1, 1])
        let f = tok.encode("the", pair: "dog", maxLength: 8, padding: .maxLength, truncation: true)
        #expect(f.ids == [2, 5, 3, 7, 3, 0, 0, 0])
        #expect(f.typeIds == [0, 0, 0, 1, 1, 0, 0, 0])
        #expect(f.attentionMask == [1, 1, 1, 1, 1, 0, 0, 0])
    }

    @Test("truncation lengths follow Hugging Face's longest-first rule")
    func truncationRule() {
        #expect(truncatedLengths(10, 100, budget: 50, strategy: .longestFirst) == (10, 40))
        #expect(truncatedLengths(100, 10, budget: 50, strategy: .longestFirst) == (40, 10))
        #expect(truncatedLengths(30, 40, budget: 50, strategy: .longestFirst) == (25, 25))
        #expect(truncatedLengths(30, 41, budget: 51, strategy: .longestFirst) == (25, 26))
        #expect(truncatedLengths(41, 30, budget: 51, strategy: .longestFirst) == (26, 25))
        #expect(truncatedLengths(60, 70, budget: 50, strategy: .longestFirst) == (25, 25))
        #expect(truncatedLengths(5, 5, budget: 50, strategy: .longestFirst) == (5, 5))
        #expect(truncatedLengths(30, 40, budget: 50, strategy: .onlySecond) == (30, 20))
        #expect(truncatedLengths(30, 40, budget: 50, strategy: .onlyFirst) == (10, 40))
        #expect(truncatedLengths(70, nil, budget: 50, strategy: .longestFirst) == (50, nil))
    }

    @Test("left truncation and left padding from the tokenizer's settings, multiple-of rounding")
    func leftSide() throws {
        let tok = try tinyWordPiece(truncation: TruncationParameters(maxLength: 4, direction: .left),
                                    padding: PaddingParameters(direction: .left, padToMultipleOf: 4, padId: 0))
        let e = tok.encode("the cat sat", maxLength: nil, padding: .none, truncation: true)
        #expect(e.ids == [2, 6, 8, 3])
        let b = tok.encode(batch: ["the", "the cat sat dog"], maxLength: nil, padding: .longest, truncation: false)
        #expect(b[0].ids == [0, 0, 0, 0, 0, 2, 5, 3])        // longest is 6, rounded up to 8
        #expect(b[0].attentionMask == [0, 0, 0, 0, 0, 1, 1, 1])
        #expect(b[1].ids == [0, 0, 2, 5, 6, 8, 7, 3])
    }

    @Test("batch padding to the longest and to max length")
    func batch() throws {
        let tok = try tinyWordPiece()
        let longest = tok.encode(batch: ["the", "the cat sat"], maxLength: nil, padding: .longest)
        #expect(longest.map(\.ids) == [[2, 5, 3, 0, 0], [2, 5, 6, 8, 3]])
        #expect(longest.map(\.attentionMask) == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
        let fixed = tok.encode(batch: ["the", "the cat sat"], pairs: ["dog", "dog"], maxLength: 6,
                               padding: .maxLength, truncation: true)
        #expect(fixed.map(\.ids) == [[2, 5, 3, 7, 3, 0], [2, 5, 6, 3, 7, 3]])
        #expect(fixed.map(\.typeIds) == [[0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 1, 1]])
    }
}

// MARK: - Loading and errors

private func tokenizerJSON(_ edit: (inout [String: Any]) -> Void) throws -> Data {
    var json: [String: Any] = [
        "version": "1.0",
        "truncation": ["max_length": 6, "strategy": "LongestFirst", "stride": 0],
        "padding": ["strategy": ["Fixed": 8], "direction": "Right", "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"],
        "added_tokens": [["id": 0, "content": "[PAD]", "special": true], ["id": 1, "content": "[UNK]", "special": true],
                         ["id": 2, "content": "[CLS]", "special": true], ["id": 3, "content": "[SEP]", "special": true]],
        "normalizer": ["type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "lowercase": true],
        "pre_tokenizer": ["type": "BertPreTokenizer"],
        "post_processor": [
            "type": "TemplateProcessing",
            "single": [["SpecialToken": ["id": "[CLS]", "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]],
                       ["SpecialToken": ["id": "[SEP]", "type_id": 0]]],
            "pair": [["SpecialToken": ["id": "[CLS]", "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]],
                     ["SpecialToken": ["id": "[SEP]", "type_id": 0]], ["Sequence": ["id": "B", "type_id": 1]],
                     ["SpecialToken": ["id": "[SEP]", "type_id": 1]]],
            "special_tokens": ["[CLS]": ["id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]],
                               "[SEP]": ["id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]]],
        ],
        "decoder": ["type": "WordPiece", "prefix": "##", "cleanup": true],
        "model": ["type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100,
                  "vocab": ["[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "hello": 4, "world": 5, "!": 6]],
    ]
    edit(&json)
    return try JSONSerialization.data(withJSONObject: json)
}

private func bpeJSON(merges: [Any]) throws -> Data {
    try JSONSerialization.data(withJSONObject: [
        "model": ["type": "BPE", "vocab": ["a": 0, "b": 1, "ab": 2, "Ġ": 3], "merges": merges],
        "pre_tokenizer": ["type": "ByteLevel", "add_prefix_space": false, "use_regex": true],
        "decoder": ["type": "ByteLevel"],
    ] as [String: Any])
}

private func loadError(_ body: () throws -> Any) -> TokenizerError? {
    do {
        _ = try body()
        return nil
    } catch let e as TokenizerError {
        return e
    } catch {
        return nil
    }
}

@Suite("Loading and errors")
struct TokenizerLoadingTests {
    @Test("a WordPiece tokenizer.json with truncation and padding sections")
    func wordPieceJSON() throws {
        let tok = try #require(try TokenizerLoader.loadJSON(data: tokenizerJSON { _ in }, source: "t.json") as? WordPieceTokenizer)
        #expect(tok.truncation == TruncationParameters(maxLength: 6))
        #expect(tok.padding?.fixedLength == 8)
        #expect(tok.encode("Hello WORLD!") == [2, 4, 5, 6, 3])
        let e = tok.encode("hello world hello world", maxLength: nil, padding: .maxLength, truncation: true)
        #expect(e.ids == [2, 4, 5, 4, 5, 3, 0, 0]) // fits the 6 of the truncation section, padded to the fixed 8
        #expect(tok.decode([2, 4, 5, 6, 3]) == "hello world!")
    }

    @Test("a missing field is named", arguments: [
        ("model", ["model"]), ("model.vocab", ["model", "vocab"]), ("pre_tokenizer", ["pre_tokenizer"]),
    ])
    func missingField(_ field: String, _ path: [String]) throws {
        let data = try tokenizerJSON { json in
            if path.count == 1 {
                json.removeValue(forKey: path[0])
            } else {
                var model = json["model"] as! [String: Any]
                model.removeValue(forKey: path[1])
                json["model"] = model
            }
        }
        let error = loadError { try TokenizerLoader.loadJSON(data: data, source: "broken.json") }
        #expect(error == .missingField(source: "broken.json", field: field))
        #expect(error?.description == "broken.json: missing field '\(field)'")
    }

    @Test("wrong types, unknown components and bad JSON are reported")
    func invalidFields() throws {
        let badUnk = try tokenizerJSON { json in
            var model = json["model"] as! [String: Any]
            model["unk_token"] = "<unk>"
            json["model"] = model
        }
        #expect(loadError { try WordPieceTokenizer(tokenizerJSONData: badUnk, source: "t.json") }
                == .invalidField(source: "t.json", field: "model.unk_token", reason: "'<unk>' is not in the vocabulary"))
        let badNormalizer = try tokenizerJSON { $0["normalizer"] = ["type": "Precompiled"] }
        #expect(loadError { try TokenizerLoader.loadJSON(data: badNormalizer, source: "t.json") }
                == .unsupported(source: "t.json", feature: "normalizer type 'Precompiled' (only BertNormalizer)"))
        let badVocab = try tokenizerJSON { json in
            var model = json["model"] as! [String: Any]
            model["vocab"] = ["hello": "four"]
            json["model"] = model
        }
        #expect(loadError { try TokenizerLoader.loadJSON(data: badVocab, source: "t.json") }
                == .invalidField(source: "t.json", field: "model.vocab.hello", reason: "expected a non-negative integer id"))
        let unigram = try tokenizerJSON { $0["model"] = ["type": "Unigram", "vocab": []] }
        #expect(loadError { try TokenizerLoader.loadJSON(data: unigram, source: "t.json") }
                == .unsupported(source: "t.json", feature: "model type 'Unigram' (WordPiece or BPE)"))
        if case .malformed(let source, _)? = loadError({ try TokenizerLoader.loadJSON(data: Data("{\"model\": ".utf8), source: "cut.json") }) {
            #expect(source == "cut.json")
        } else {
            Issue.record("truncated JSON was accepted")
        }
    }

    @Test("a BPE tokenizer.json loads, in both merge formats")
    func bpeJSONLoads() throws {
        for merges: [Any] in [["a b"], [["a", "b"]]] {
            let tok = try TokenizerLoader.loadJSON(data: bpeJSON(merges: merges), source: "bpe.json")
            #expect(tok is BPETokenizer)
            #expect(tok.encode("ab ab") == [2, 3, 2])
            #expect(tok.decode([2, 3, 2]) == "ab ab")
        }
    }

    @Test("malformed merges are errors naming the rule")
    func malformedMerges() throws {
        #expect(loadError { try TokenizerLoader.loadJSON(data: bpeJSON(merges: ["a b", "ab"]), source: "bpe.json") }
                == .malformedMerge(source: "bpe.json", index: 1, merge: "ab", reason: "expected two tokens separated by one space"))
        #expect(loadError { try TokenizerLoader.loadJSON(data: bpeJSON(merges: ["a  b"]), source: "bpe.json") }
                == .malformedMerge(source: "bpe.json", index: 0, merge: "a  b", reason: "expected two tokens separated by one space"))
        #expect(loadError { try TokenizerLoader.loadJSON(data: bpeJSON(merges: ["a b", "b a"]), source: "bpe.json") }
                == .malformedMerge(source: "bpe.json", index: 1, merge: "b a", reason: "token 'ba' is not in the vocabulary"))
        #expect(loadError { try TokenizerLoader.loadJSON(data: bpeJSON(merges: [7]), source: "bpe.json") }
                == .malformedMerge(source: "bpe.json", index: 0, merge: "7", reason: "expected \"left right\" or [left, right]"))
        #expect(loadError { try BPETokenizer(tokens: ["a", "b"], merges: ["a c"], tokenTypes: nil, pre: "gpt2", bos: nil, eos: nil) }
                == .malformedMerge(source: "gguf", index: 0, merge: "a c", reason: "token 'c' is not in the vocabulary"))
        #expect(loadError { try BPETokenizer(tokens: ["a"], merges: [], tokenTypes: nil, pre: "t5", bos: nil, eos: nil) }
                == .unsupported(source: "gguf", feature: "tokenizer.ggml.pre 't5'"))
        #expect(loadError { try BPETokenizer(tokens: ["a"], merges: [], tokenTypes: [1, 1], pre: nil, bos: nil, eos: nil) }
                == .invalidField(source: "gguf", field: "tokenizer.ggml.token_type", reason: "2 entries for 1 tokens"))
    }

    @Test("a GGUF file's tokenizer metadata is read; a truncated file is an error with an offset")
    func gguf() throws {
        var d = Data()
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        func str(_ s: String) { u64(UInt64(s.utf8.count)); d.append(contentsOf: Array(s.utf8)) }
        u32(0x4655_4747); u32(3); u64(0); u64(7)
        str("general.architecture"); u32(8); str("llama")
        str("tokenizer.ggml.model"); u32(8); str("gpt2")
        str("tokenizer.ggml.pre"); u32(8); str("smollm")
        str("tokenizer.ggml.tokens"); u32(9); u32(8); u64(6)
        for t in ["<|endoftext|>", "a", "b", "ab", "Ġ", "1"] { str(t) }
        str("tokenizer.ggml.merges"); u32(9); u32(8); u64(1); str("a b")
        str("tokenizer.ggml.token_type"); u32(9); u32(5); u64(6)
        for t: UInt32 in [3, 1, 1, 1, 1, 1] { u32(t) }
        str("tokenizer.ggml.eos_token_id"); u32(4); u32(0)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("frugal-tok-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("tiny.gguf").path
        try d.write(to: URL(fileURLWithPath: path))
        let tok = try #require(try TokenizerLoader.load(path: path) as? BPETokenizer)
        #expect(tok.encode("ab 11<|endoftext|>") == [3, 4, 5, 5, 0])
        #expect(tok.eosId == 0)
        #expect(tok.decode([3, 4, 5, 5, 0]) == "ab 11")

        let cut = dir.appendingPathComponent("cut.gguf").path
        try d.prefix(60).write(to: URL(fileURLWithPath: cut))
        guard case .malformed(let source, let reason)? = loadError({ try TokenizerLoader.load(path: cut) }) else {
            Issue.record("a truncated GGUF was accepted")
            return
        }
        #expect(source == "cut.gguf")
        #expect(reason.contains("offset"))
    }

    @Test("unreadable paths and unknown file types")
    func paths() {
        #expect(loadError { try TokenizerLoader.load(path: "/nonexistent/tokenizer.json") }
                == .cannotRead(path: "/nonexistent/tokenizer.json", reason: "no such file"))
        let here = TokenizerFixtures.url("bpe-cases.json").deletingLastPathComponent()
        // The fixture directory has neither tokenizer.json nor a vocab.txt named so.
        #expect(loadError { try TokenizerLoader.load(path: here.path) }
                == .cannotRead(path: here.path, reason: "directory has neither tokenizer.json nor vocab.txt"))
        let other = here.appendingPathComponent("bpe-cases.json").path
        #expect(loadError { try TokenizerLoader.load(path: other) }
                == .missingField(source: "bpe-cases.json", field: "model"))
    }
}

// MARK: - Character classes

@Suite("Character classes as the reference library has them")
struct CharacterClassTests {
    private func c(_ v: UInt32) -> Unicode.Scalar { Unicode.Scalar(v)! }

    @Test("BERT clean-up: controls removed, whitespace kept as whitespace")
    func bertClean() {
        for v: UInt32 in [0x0, 0xB, 0xC, 0x85, 0xAD, 0x200B, 0xFEFF, 0xE000, 0xFFFD] {
            #expect(TokenizerCharClass.isBertRemoved(c(v)), "U+\(String(v, radix: 16)) removed")
        }
        for v: UInt32 in [0x9, 0xA, 0xD, 0x20, 0x41, 0xE9, 0x4E2D] { #expect(!TokenizerCharClass.isBertRemoved(c(v))) }
        for v: UInt32 in [0x9, 0xA, 0xB, 0xC, 0xD, 0x20, 0x85, 0xA0, 0x3000] { #expect(TokenizerCharClass.isBertWhitespace(c(v))) }
        let n = BertNormalizerOptions()
        let s = Array("A\u{B}b\u{A0}C\u{301}\u{200B}中".unicodeScalars)
        #expect(n.normalize(s, 0..<s.count) == Array("ab c 中 ".unicodeScalars))
    }

    @Test("Unicode 8 punctuation and marks where the category has changed since")
    func oldCategories() {
        #expect(TokenizerCharClass.isBertPunctuation(c(0x166D)))   // So today, Po in Unicode 8
        #expect(TokenizerCharClass.isBertPunctuation(c(0x111C9)))  // Mn today, Po in Unicode 8
        #expect(!TokenizerCharClass.isMark(c(0x111C9)))
        #expect(TokenizerCharClass.isMark(c(0x1734)))              // Mc today, Mn in Unicode 8
        #expect(TokenizerCharClass.isMark(c(0x1171E)))
        #expect(!TokenizerCharClass.isMark(c(0x1885)))             // Mn today, not in Unicode 8
        #expect(!TokenizerCharClass.isMark(c(0x903)))              // Mc: kept
        #expect(TokenizerCharClass.isMark(c(0x301)))
        #expect(!TokenizerCharClass.isBertPunctuation(c(0x1FAE8)) && !TokenizerCharClass.isBertPunctuation(c(0x41)))
        #expect(TokenizerCharClass.isBertPunctuation(c(0x24)) && TokenizerCharClass.isBertPunctuation(c(0x3002)))
    }

    @Test("regex classes are Unicode 16 (Oniguruma); Digits uses current Unicode (Rust)")
    func regexClasses() {
        #expect(!TokenizerCharClass.isLetter(c(0x88F)))            // a letter since Unicode 17
        #expect(TokenizerCharClass.isLetter(c(0x4E2D)) && TokenizerCharClass.isLetter(c(0xE9)))
        #expect(!TokenizerCharClass.isNumber(c(0x11DE0)) && TokenizerCharClass.isNumeric(c(0x11DE0)))
        #expect(TokenizerCharClass.isNumber(c(0x661)) && TokenizerCharClass.isNumber(c(0xBD)))
        #expect(TokenizerCharClass.isSpace(c(0x3000)) && !TokenizerCharClass.isSpace(c(0x200B)))
    }
}
