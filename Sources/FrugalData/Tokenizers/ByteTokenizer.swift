/// The simplest tokenizer: ids 0-255 are the UTF-8 bytes of the text, followed by optional special
/// tokens (for small models trained from scratch).
///
/// ```swift
/// let tok = ByteTokenizer(specialTokens: ["<eos>"])
/// tok.encode("hé")        // [104, 195, 169]
/// tok.eos                 // 256
/// tok.decode([104, 256])  // "h"
/// ```
public struct ByteTokenizer: Tokenizer {
    /// Special tokens; the i-th has id 256 + i.
    public let specialTokens: [String]
    /// Find special tokens written in the text and encode them as their ids.
    public let matchSpecialTokens: Bool
    /// Append this id after each text (e.g. an end-of-text token); nil appends nothing.
    public let appendId: Int?
    let matcher: AddedTokenMatcher

    public var vocabularySize: Int { 256 + specialTokens.count }

    /// - Parameters:
    ///   - specialTokens: tokens after the 256 bytes, e.g. `["<eos>", "<pad>"]`.
    ///   - matchSpecialTokens: encode "<eos>" in a text as its id rather than as 5 bytes.
    ///   - append: a special token to add at the end of every encoded text.
    public init(specialTokens: [String] = [], matchSpecialTokens: Bool = true, append: String? = nil) {
        self.specialTokens = specialTokens
        self.matchSpecialTokens = matchSpecialTokens
        self.appendId = append.flatMap { name in specialTokens.firstIndex(of: name).map { 256 + $0 } }
        let added = specialTokens.enumerated().map { AddedToken(content: $1, id: 256 + $0, special: true) }
        self.matcher = AddedTokenMatcher(matchSpecialTokens ? added : [])
    }

    /// The id of the first special token, if any (usually end of text).
    public var eos: Int? { specialTokens.isEmpty ? nil : 256 }

    public func encode(_ text: String) -> [Int] {
        var ids: [Int] = []
        ids.reserveCapacity(text.utf8.count + 1)
        if matcher.isEmpty {
            for b in text.utf8 { ids.append(Int(b)) }
        } else {
            let scalars = Array(text.unicodeScalars)
            for segment in matcher.split(scalars, in: 0..<scalars.count) {
                switch segment {
                case let .token(id):
                    ids.append(id)
                case let .text(range):
                    for i in range { UTF8.encode(scalars[i]) { ids.append(Int($0)) } }
                }
            }
        }
        if let appendId { ids.append(appendId) }
        return ids
    }

    /// The text of the byte ids (invalid UTF-8 becomes U+FFFD); special tokens are left out.
    public func decode(_ ids: [Int]) -> String {
        decode(ids, skipSpecialTokens: true)
    }

    public func decode(_ ids: [Int], skipSpecialTokens: Bool) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(ids.count)
        for id in ids {
            if id >= 0 && id < 256 {
                bytes.append(UInt8(id))
            } else if !skipSpecialTokens, id >= 256, id < vocabularySize {
                bytes += Array(specialTokens[id - 256].utf8)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
