/// GPT-2's reversible map between bytes and printable characters: byte-level BPE vocabularies
/// store every token as a string of these characters (the space byte is "Ġ", newline "Ċ").
public enum ByteLevelAlphabet {
    /// The character standing for each byte.
    public static let characters: [Unicode.Scalar] = {
        var chars = [Unicode.Scalar](repeating: " ", count: 256)
        var extra: UInt32 = 0
        for b in 0..<256 {
            let printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
            if printable {
                chars[b] = Unicode.Scalar(UInt32(b))!
            } else {
                chars[b] = Unicode.Scalar(256 + extra)!
                extra += 1
            }
        }
        return chars
    }()

    /// The byte each character stands for, indexed by scalar value (-1: not a byte character).
    static let bytes: [Int16] = {
        var table = [Int16](repeating: -1, count: 324)
        for (b, c) in characters.enumerated() { table[Int(c.value)] = Int16(b) }
        return table
    }()

    /// The bytes a vocabulary token stands for, or nil if it contains a character outside the alphabet.
    public static func decode(_ token: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(token.unicodeScalars.count)
        for c in token.unicodeScalars {
            guard c.value < 324, bytes[Int(c.value)] >= 0 else { return nil }
            out.append(UInt8(bytes[Int(c.value)]))
        }
        return out
    }

    /// The vocabulary string of `bytes`.
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var s = String()
        for b in bytes { s.unicodeScalars.append(characters[Int(b)]) }
        return s
    }
}

/// How a byte-level BPE tokenizer cuts text into words before merging (Hugging Face `ByteLevel`,
/// possibly after `Digits` or a `Split` with Llama-3's pattern), written out by hand.
public struct ByteLevelPreTokenizer: Sendable, Equatable {
    public enum Pattern: String, Sendable, Equatable {
        /// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
        case gpt2
        /// Llama 3: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
        case llama3
        /// Qwen 2: Llama 3's pattern with single digits, `\p{N}` instead of `\p{N}{1,3}`.
        case qwen2
        /// No splitting: the whole text is one word.
        case none
    }
    public var pattern: Pattern
    /// Isolate every numeric character first (`Digits(individual_digits: true)`, SmolLM and StarCoder).
    public var individualDigits: Bool
    /// Prepend a space to each piece that does not start with one (`add_prefix_space`).
    public var addPrefixSpace: Bool

    public init(pattern: Pattern = .gpt2, individualDigits: Bool = false, addPrefixSpace: Bool = false) {
        self.pattern = pattern
        self.individualDigits = individualDigits
        self.addPrefixSpace = addPrefixSpace
    }

    /// The regex source of the GPT-2 and Llama-3 patterns, as tokenizer.json files spell them.
    public static let gpt2Regex = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    public static let llama3Regex = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    public static let qwen2Regex = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// Pre-tokenizer for a GGUF `tokenizer.ggml.pre` name (llama.cpp's names); nil if unknown.
    public static func gguf(pre: String?) -> ByteLevelPreTokenizer? {
        switch pre ?? "default" {
        case "default", "gpt2", "gpt-2", "phi-2", "roberta-bpe", "jina-es", "jina-de", "jina-v1-en", "jina-v2-es",
             "jina-v2-de", "jina-v2-code", "gigachat", "mpt", "olmo", "jais":
            return ByteLevelPreTokenizer(pattern: .gpt2)
        case "smollm", "starcoder", "refact", "codeshell", "command-r", "exaone", "minerva-7b":
            return ByteLevelPreTokenizer(pattern: .gpt2, individualDigits: true)
        case "llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral", "smaug-bpe", "dbrx":
            return ByteLevelPreTokenizer(pattern: .llama3)
        case "qwen2", "deepseek-r1-qwen":
            return ByteLevelPreTokenizer(pattern: .qwen2)
        default:
            return nil
        }
    }

    /// The words of `text` in the byte alphabet, as Hugging Face's `pre_tokenize_str` gives them
    /// (`"Hello world"` -> `["Hello", "Ġworld"]`).
    public func words(in text: String) -> [String] {
        let scalars = Array(text.unicodeScalars)
        var out: [String] = []
        split(scalars, 0..<scalars.count) { range, prefixSpace in
            var bytes: [UInt8] = prefixSpace ? [0x20] : []
            for i in range { UTF8.encode(scalars[i]) { bytes.append($0) } }
            out.append(ByteLevelAlphabet.encode(bytes))
        }
        return out
    }

    /// Calls `emit` with the scalar ranges of the words of `s[range]`, in order. With
    /// `addPrefixSpace` a piece may need a leading space that is not in `s`: `emit`'s second
    /// argument then says to prepend one.
    func split(_ s: [Unicode.Scalar], _ range: Range<Int>, _ emit: (Range<Int>, Bool) -> Void) {
        guard individualDigits else {
            piece(s, range, emit)
            return
        }
        var start = range.lowerBound
        for i in range where TokenizerCharClass.isNumeric(s[i]) {
            if i > start { piece(s, start..<i, emit) }
            piece(s, i..<(i + 1), emit)
            start = i + 1
        }
        if start < range.upperBound { piece(s, start..<range.upperBound, emit) }
    }

    private func piece(_ s: [Unicode.Scalar], _ range: Range<Int>, _ emit: (Range<Int>, Bool) -> Void) {
        guard !range.isEmpty else { return }
        if addPrefixSpace && s[range.lowerBound] != " " {
            // The regex runs on " " + piece: the space joins the first word when that word is a run
            // of letters, numbers or symbols, and is a word of its own before whitespace.
            var first = true
            var prefixed = [Unicode.Scalar]()
            prefixed.reserveCapacity(range.count + 1)
            prefixed.append(" ")
            prefixed += s[range]
            let offset = range.lowerBound - 1
            regexSplit(prefixed, 0..<prefixed.count) { r in
                if first {
                    first = false
                    if r.upperBound == 1 {
                        emit(range.lowerBound..<range.lowerBound, true)
                    } else {
                        emit(range.lowerBound..<(r.upperBound + offset), true)
                    }
                } else {
                    emit((r.lowerBound + offset)..<(r.upperBound + offset), false)
                }
            }
            return
        }
        regexSplit(s, range) { emit($0, false) }
    }

    private func regexSplit(_ s: [Unicode.Scalar], _ range: Range<Int>, _ emit: (Range<Int>) -> Void) {
        switch pattern {
        case .none: emit(range)
        case .gpt2: ByteLevelPreTokenizer.splitGPT2(s, range, emit)
        case .llama3: ByteLevelPreTokenizer.splitLlama3(s, range, maxDigits: 3, emit)
        case .qwen2: ByteLevelPreTokenizer.splitLlama3(s, range, maxDigits: 1, emit)
        }
    }

    // MARK: Classes

    /// 0 letter, 1 number, 2 whitespace, 3 anything else.
    @inline(__always)
    static func kind(_ c: Unicode.Scalar) -> Int {
        if c.value < 128 {
            let f = TokenizerCharClass.asciiFlags(c.value)
            return f & TokenizerCharClass.letter != 0 ? 0 : f & TokenizerCharClass.number != 0 ? 1 : f & TokenizerCharClass.space != 0 ? 2 : 3
        }
        if TokenizerCharClass.isLetter(c) { return 0 }
        if TokenizerCharClass.isNumber(c) { return 1 }
        if TokenizerCharClass.isSpace(c) { return 2 }
        return 3
    }

    /// End of the run of scalars of `kind` starting at `i`.
    @inline(__always)
    static func run(_ s: [Unicode.Scalar], from i: Int, to end: Int, kind k: Int) -> Int {
        var j = i
        while j < end && kind(s[j]) == k { j += 1 }
        return j
    }

    /// End of the contraction `'s|'t|'re|'ve|'m|'ll|'d` at `i`, or nil.
    @inline(__always)
    static func contraction(_ s: [Unicode.Scalar], _ i: Int, _ end: Int, ignoreCase: Bool) -> Int? {
        guard s[i] == "'", i + 1 < end else { return nil }
        func lower(_ c: Unicode.Scalar) -> UInt32 {
            guard ignoreCase else { return c.value }
            if c.value >= 65 && c.value <= 90 { return c.value + 32 }
            if c.value == 0x17F { return 0x73 } // LATIN SMALL LETTER LONG S folds to s
            return c.value
        }
        let a = lower(s[i + 1])
        switch a {
        case 0x73, 0x74, 0x6D, 0x64: // s t m d
            return i + 2
        case 0x72, 0x76: // r v -> 're 've
            if i + 2 < end && lower(s[i + 2]) == 0x65 { return i + 3 }
        case 0x6C: // l -> 'll
            if i + 2 < end && lower(s[i + 2]) == 0x6C { return i + 3 }
        default:
            break
        }
        return nil
    }

    /// End of the `\s+(?!\S)|\s+` match of the whitespace at `i`.
    @inline(__always)
    static func whitespaceEnd(_ s: [Unicode.Scalar], _ i: Int, _ end: Int) -> Int {
        let j = run(s, from: i, to: end, kind: 2)
        if j == end { return j }      // whitespace up to the end
        if j - 1 > i { return j - 1 } // leave the last one to the next word
        return j
    }

    // MARK: GPT-2

    static func splitGPT2(_ s: [Unicode.Scalar], _ range: Range<Int>, _ emit: (Range<Int>) -> Void) {
        let end = range.upperBound
        var i = range.lowerBound
        while i < end {
            let c = s[i]
            var e: Int
            if c == "'", let ce = contraction(s, i, end, ignoreCase: false) {
                e = ce
            } else {
                let k = kind(c)
                if c == " " && i + 1 < end && kind(s[i + 1]) != 2 {
                    e = run(s, from: i + 1, to: end, kind: kind(s[i + 1]))
                } else if k != 2 {
                    e = run(s, from: i, to: end, kind: k)
                } else {
                    e = whitespaceEnd(s, i, end)
                }
            }
            emit(i..<e)
            i = e
        }
    }

    // MARK: Llama 3 and Qwen 2

    static func splitLlama3(_ s: [Unicode.Scalar], _ range: Range<Int>, maxDigits: Int, _ emit: (Range<Int>) -> Void) {
        let end = range.upperBound
        var i = range.lowerBound
        while i < end {
            let c = s[i]
            let k = kind(c)
            var e: Int
            if c == "'", let ce = contraction(s, i, end, ignoreCase: true) {
                e = ce
            } else if k == 0 {
                e = run(s, from: i, to: end, kind: 0)
            } else if k != 1 && c != "\r" && c != "\n" && i + 1 < end && kind(s[i + 1]) == 0 {
                e = run(s, from: i + 1, to: end, kind: 0)
            } else if k == 1 {
                e = i + 1
                while e < end && e < i + maxDigits && kind(s[e]) == 1 { e += 1 }
            } else if k == 3 || (c == " " && i + 1 < end && kind(s[i + 1]) == 3) {
                e = run(s, from: k == 3 ? i : i + 1, to: end, kind: 3)
                while e < end && (s[e] == "\r" || s[e] == "\n") { e += 1 }
            } else {
                // Whitespace: `\s*[\r\n]+` ends after the last newline of the run, if it has one.
                let j = run(s, from: i, to: end, kind: 2)
                var lastNewline = -1
                var p = j - 1
                while p >= i {
                    if s[p] == "\r" || s[p] == "\n" { lastNewline = p; break }
                    p -= 1
                }
                e = lastNewline >= 0 ? lastNewline + 1 : whitespaceEnd(s, i, end)
            }
            emit(i..<e)
            i = e
        }
    }
}
