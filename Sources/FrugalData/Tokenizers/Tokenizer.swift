
/// A text tokenizer: text to token ids and back.
///
/// ```swift
/// let tokenizer = try TokenizerLoader.load(path: "all-MiniLM-L6-v2/tokenizer.json")
/// let ids = tokenizer.encode("Hello, world!")   // [101, 7592, 1010, 2088, 999, 102]
/// let text = tokenizer.decode(ids)               // "hello, world!"
/// ```
public protocol Tokenizer: Sendable {
    /// The ids of `text`, with the special tokens the model expects (e.g. `[CLS] ... [SEP]` for BERT,
    /// a BOS token where the vocabulary asks for one); no truncation, no padding.
    func encode(_ text: String) -> [Int]
    /// The text of `ids`; special tokens (`[CLS]`, `<|endoftext|>`, ...) are left out, ids outside the
    /// vocabulary are ignored.
    func decode(_ ids: [Int]) -> String
    /// Number of ids the tokenizer can produce (the size of the model's embedding table).
    var vocabularySize: Int { get }
}

extension Tokenizer {
    /// `encode` applied to each text, in order.
    public func encode(batch texts: [String]) -> [[Int]] {
        texts.map { encode($0) }
    }

    /// `decode` applied to each sequence, in order.
    public func decode(batch ids: [[Int]]) -> [String] {
        ids.map { decode($0) }
    }
}

/// Why a tokenizer could not be loaded. The description names the file and the field or offset.
public enum TokenizerError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file could not be read.
    case cannotRead(path: String, reason: String)
    /// The file is not in the expected format (bad JSON, bad GGUF header, truncated data).
    case malformed(source: String, reason: String)
    /// A required field is absent, e.g. `model.vocab` in a tokenizer.json.
    case missingField(source: String, field: String)
    /// A field is present but has the wrong type or an impossible value.
    case invalidField(source: String, field: String, reason: String)
    /// The file asks for a feature this implementation does not have (a normalizer, a pre-tokenizer).
    case unsupported(source: String, feature: String)
    /// A BPE merge rule is not two tokens separated by one space, or names tokens outside the vocabulary.
    case malformedMerge(source: String, index: Int, merge: String, reason: String)

    public var description: String {
        switch self {
        case let .cannotRead(path, reason):
            return "cannot read tokenizer file '\(path)': \(reason)"
        case let .malformed(source, reason):
            return "\(source): malformed tokenizer data: \(reason)"
        case let .missingField(source, field):
            return "\(source): missing field '\(field)'"
        case let .invalidField(source, field, reason):
            return "\(source): invalid field '\(field)': \(reason)"
        case let .unsupported(source, feature):
            return "\(source): unsupported \(feature)"
        case let .malformedMerge(source, index, merge, reason):
            return "\(source): malformed merge #\(index) '\(merge)': \(reason)"
        }
    }
}

// MARK: - Encodings, truncation and padding

/// The model inputs for one text (or one pair of texts).
public struct TokenEncoding: Sendable, Equatable {
    /// Token ids, special tokens and padding included.
    public var ids: [Int]
    /// Segment ids: 0 for the first text and its special tokens, 1 for the second (BERT's `token_type_ids`).
    public var typeIds: [Int]
    /// 1 for a real token, 0 for padding.
    public var attentionMask: [Int]

    public init(ids: [Int], typeIds: [Int], attentionMask: [Int]) {
        self.ids = ids
        self.typeIds = typeIds
        self.attentionMask = attentionMask
    }

    /// Number of positions, padding included.
    public var count: Int { ids.count }
}

/// How to pad an encoding or a batch (the names follow Hugging Face `transformers`).
public enum PaddingStrategy: Sendable, Equatable {
    /// No padding.
    case none
    /// Pad every sequence of a batch to the longest one (a single encoding is left as it is).
    case longest
    /// Pad every sequence to `maxLength`.
    case maxLength
}

/// Which side to cut or pad.
public enum TokenizerSide: String, Sendable, Equatable {
    case left, right
}

/// Truncation as a tokenizer.json `truncation` section describes it.
public struct TruncationParameters: Sendable, Equatable {
    public enum Strategy: String, Sendable, Equatable {
        /// Remove tokens from the longer of the two texts first (Hugging Face's default).
        case longestFirst = "LongestFirst"
        case onlyFirst = "OnlyFirst"
        case onlySecond = "OnlySecond"
    }
    /// Length of the whole encoding, special tokens included.
    public var maxLength: Int
    public var strategy: Strategy
    public var direction: TokenizerSide

    public init(maxLength: Int, strategy: Strategy = .longestFirst, direction: TokenizerSide = .right) {
        self.maxLength = maxLength
        self.strategy = strategy
        self.direction = direction
    }
}

/// Padding as a tokenizer.json `padding` section describes it.
public struct PaddingParameters: Sendable, Equatable {
    /// `nil`: pad to the longest sequence of the batch; otherwise pad to this length.
    public var fixedLength: Int?
    public var direction: TokenizerSide
    /// Round the padded length up to a multiple of this.
    public var padToMultipleOf: Int?
    public var padId: Int
    public var padTypeId: Int
    public var padToken: String

    public init(fixedLength: Int? = nil, direction: TokenizerSide = .right, padToMultipleOf: Int? = nil,
                padId: Int = 0, padTypeId: Int = 0, padToken: String = "[PAD]") {
        self.fixedLength = fixedLength
        self.direction = direction
        self.padToMultipleOf = padToMultipleOf
        self.padId = padId
        self.padTypeId = padTypeId
        self.padToken = padToken
    }
}

extension TokenEncoding {
    /// Pads to `length` (rounded up to `padToMultipleOf`) with `padId`; a longer encoding is left unchanged.
    public mutating func pad(to length: Int, with parameters: PaddingParameters) {
        var target = length
        if let multiple = parameters.padToMultipleOf, multiple > 0, target % multiple != 0 {
            target += multiple - target % multiple
        }
        let missing = target - ids.count
        guard missing > 0 else { return }
        let padIds = [Int](repeating: parameters.padId, count: missing)
        let padTypes = [Int](repeating: parameters.padTypeId, count: missing)
        let padMask = [Int](repeating: 0, count: missing)
        switch parameters.direction {
        case .right:
            ids += padIds; typeIds += padTypes; attentionMask += padMask
        case .left:
            ids = padIds + ids; typeIds = padTypes + typeIds; attentionMask = padMask + attentionMask
        }
    }
}

/// Token counts that the truncation rules of Hugging Face `tokenizers` keep for a text and its pair.
///
/// `budget` is the maximum length less the special tokens the template adds. For `longestFirst`
/// with a pair (n1 <= n2 after a swap): keep both if they fit; otherwise keep the shorter whole and cut
/// the longer to `budget - n1` when the shorter takes at most half, else give each half
/// (the second gets the odd token).
func truncatedLengths(_ first: Int, _ second: Int?, budget: Int,
                      strategy: TruncationParameters.Strategy) -> (Int, Int?) {
    let budget = max(0, budget)
    guard let second else {
        // A single sequence: every strategy but onlySecond cuts it (HF errors on onlySecond; keep it whole).
        return strategy == .onlySecond ? (first, nil) : (min(first, budget), nil)
    }
    if first + second <= budget { return (first, second) }
    switch strategy {
    case .longestFirst:
        var n1 = first, n2 = second
        let swapped = n1 > n2
        if swapped { swap(&n1, &n2) }
        if n1 > budget {
            n2 = n1
        } else {
            n2 = max(n1, budget - n1)
        }
        if n1 + n2 > budget {
            n1 = budget / 2
            n2 = n1 + budget % 2
        }
        return swapped ? (n2, n1) : (n1, n2)
    case .onlyFirst:
        let remove = first + second - budget
        return remove < first ? (first - remove, second) : (first, second)
    case .onlySecond:
        let remove = first + second - budget
        return remove < second ? (first, second - remove) : (first, second)
    }
}

/// Keeps `count` of `items`, cutting on `side`.
@inline(__always)
func keepTokens<T>(_ items: [T], _ count: Int, from side: TokenizerSide) -> [T] {
    guard count < items.count else { return items }
    switch side {
    case .right: return Array(items.prefix(count))
    case .left: return Array(items.suffix(count))
    }
}
