/// A token matched in the text as a whole before any splitting, e.g. `[CLS]` or `<|im_start|>`
/// (a tokenizer.json `added_tokens` entry).
public struct AddedToken: Sendable, Equatable {
    public var content: String
    public var id: Int
    /// Special tokens are left out by `decode`.
    public var special: Bool
    /// Also swallow the whitespace on the left / right of the match.
    public var lstrip: Bool
    public var rstrip: Bool
    /// Match only where the token is not inside a word.
    public var singleWord: Bool
    /// Match in the normalised text (true) or in the raw text (false).
    public var normalized: Bool

    public init(content: String, id: Int, special: Bool = true, lstrip: Bool = false, rstrip: Bool = false,
                singleWord: Bool = false, normalized: Bool = false) {
        self.content = content
        self.id = id
        self.special = special
        self.lstrip = lstrip
        self.rstrip = rstrip
        self.singleWord = singleWord
        self.normalized = normalized
    }
}

/// A piece of text after added tokens have been taken out: a range of scalars to tokenize, or an id.
enum AddedTokenSegment: Equatable {
    case text(Range<Int>)
    case token(Int)
}

/// Finds added tokens in a scalar array, leftmost first and longest at the same position
/// (the aho-corasick `LeftmostLongest` matching that Hugging Face `tokenizers` uses).
struct AddedTokenMatcher: Sendable {
    private struct Pattern: Sendable {
        var scalars: [Unicode.Scalar]
        var token: AddedToken
    }
    private var patterns: [Pattern] = []
    /// Pattern indices by first scalar, longest first.
    private var byFirst: [UInt32: [Int]] = [:]
    /// Bit c set when some pattern starts with ASCII scalar c (skips the dictionary for most text).
    private var asciiFirst: (UInt64, UInt64) = (0, 0)
    private var nonASCIIFirst = false

    init(_ tokens: [AddedToken], transform: (String) -> [Unicode.Scalar] = { Array($0.unicodeScalars) }) {
        for token in tokens {
            let scalars = transform(token.content)
            guard !scalars.isEmpty else { continue }
            patterns.append(Pattern(scalars: scalars, token: token))
            byFirst[scalars[0].value, default: []].append(patterns.count - 1)
            let v = scalars[0].value
            if v < 64 { asciiFirst.0 |= 1 << UInt64(v) } else if v < 128 { asciiFirst.1 |= 1 << UInt64(v - 64) } else { nonASCIIFirst = true }
        }
        for (key, list) in byFirst {
            byFirst[key] = list.sorted { patterns[$0].scalars.count > patterns[$1].scalars.count }
        }
    }

    var isEmpty: Bool { patterns.isEmpty }

    /// Splits `s[range]` into text segments and token ids.
    func split(_ s: [Unicode.Scalar], in range: Range<Int>) -> [AddedTokenSegment] {
        if patterns.isEmpty { return range.isEmpty ? [] : [.text(range)] }
        var out: [AddedTokenSegment] = []
        var textStart = range.lowerBound
        var i = range.lowerBound
        while i < range.upperBound {
            let v = s[i].value
            let possible = v < 64 ? (asciiFirst.0 >> UInt64(v)) & 1 != 0
                : v < 128 ? (asciiFirst.1 >> UInt64(v - 64)) & 1 != 0 : nonASCIIFirst
            guard possible, let candidates = byFirst[v] else { i += 1; continue }
            var matched: Pattern? = nil
            for index in candidates {
                let p = patterns[index]
                let n = p.scalars.count
                if i + n <= range.upperBound {
                    var equal = true
                    for k in 1..<n where s[i + k] != p.scalars[k] { equal = false; break }
                    if equal { matched = p; break }
                }
            }
            guard let match = matched else { i += 1; continue }
            var start = i, end = i + match.scalars.count
            if match.token.singleWord {
                let before = start > range.lowerBound && AddedTokenMatcher.isWordCharacter(s[start - 1])
                let after = end < range.upperBound && AddedTokenMatcher.isWordCharacter(s[end])
                if before || after {
                    i = end
                    continue
                }
            }
            if match.token.lstrip {
                while start > textStart && TokenizerCharClass.isSpace(s[start - 1]) { start -= 1 }
            }
            if match.token.rstrip {
                while end < range.upperBound && TokenizerCharClass.isSpace(s[end]) { end += 1 }
            }
            if start > textStart { out.append(.text(textStart..<start)) }
            out.append(.token(match.token.id))
            textStart = end
            i = end
        }
        if textStart < range.upperBound { out.append(.text(textStart..<range.upperBound)) }
        return out
    }

    @inline(__always)
    private static func isWordCharacter(_ c: Unicode.Scalar) -> Bool {
        c == "_" || TokenizerCharClass.isLetter(c) || TokenizerCharClass.isNumber(c)
    }
}
