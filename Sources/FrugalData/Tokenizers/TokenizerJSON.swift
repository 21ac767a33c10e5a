import Foundation

/// A JSON object read from a tokenizer file, with errors that name the file and the field path.
struct TokenizerJSONObject {
    let values: [String: Any]
    /// Dotted path of this object in the file ("" for the root).
    let path: String
    /// File name used in error messages.
    let source: String

    init(values: [String: Any], path: String, source: String) {
        self.values = values
        self.path = path
        self.source = source
    }

    /// Parses `data` as a JSON object.
    init(data: Data, source: String) throws {
        let root: Any
        do {
            root = try JSONSerialization.jsonObject(with: data, options: [])
        } catch {
            throw TokenizerError.malformed(source: source, reason: "not valid JSON (\(error.localizedDescription))")
        }
        guard let dict = root as? [String: Any] else {
            throw TokenizerError.malformed(source: source, reason: "the top level is not a JSON object")
        }
        self.init(values: dict, path: "", source: source)
    }

    func fieldPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// True when `key` is absent or JSON null.
    func isNull(_ key: String) -> Bool { values[key] == nil || values[key] is NSNull }

    func has(_ key: String) -> Bool { !isNull(key) }

    func missing(_ key: String) -> TokenizerError {
        .missingField(source: source, field: fieldPath(key))
    }

    func invalid(_ key: String, _ reason: String) -> TokenizerError {
        .invalidField(source: source, field: fieldPath(key), reason: reason)
    }

    func object(_ key: String) throws -> TokenizerJSONObject {
        guard has(key) else { throw missing(key) }
        guard let dict = values[key] as? [String: Any] else { throw invalid(key, "expected an object") }
        return TokenizerJSONObject(values: dict, path: fieldPath(key), source: source)
    }

    func optionalObject(_ key: String) throws -> TokenizerJSONObject? {
        has(key) ? try object(key) : nil
    }

    func string(_ key: String) throws -> String {
        guard has(key) else { throw missing(key) }
        guard let s = values[key] as? String else { throw invalid(key, "expected a string") }
        return s
    }

    func optionalString(_ key: String) throws -> String? {
        has(key) ? try string(key) : nil
    }

    func int(_ key: String) throws -> Int {
        guard has(key) else { throw missing(key) }
        if let n = values[key] as? NSNumber, !TokenizerJSONObject.isBool(n) {
            let d = n.doubleValue
            if d == d.rounded(), abs(d) < 9e15 { return n.intValue }
        }
        throw invalid(key, "expected an integer")
    }

    func optionalInt(_ key: String) throws -> Int? {
        has(key) ? try int(key) : nil
    }

    func bool(_ key: String, default defaultValue: Bool) throws -> Bool {
        guard has(key) else { return defaultValue }
        guard let n = values[key] as? NSNumber, TokenizerJSONObject.isBool(n) else { throw invalid(key, "expected true or false") }
        return n.boolValue
    }

    func optionalBool(_ key: String) throws -> Bool? {
        has(key) ? try bool(key, default: false) : nil
    }

    func array(_ key: String) throws -> [Any] {
        guard has(key) else { throw missing(key) }
        guard let a = values[key] as? [Any] else { throw invalid(key, "expected an array") }
        return a
    }

    func objects(_ key: String) throws -> [TokenizerJSONObject] {
        let a = try array(key)
        return try a.enumerated().map { index, element in
            guard let dict = element as? [String: Any] else { throw invalid("\(key)[\(index)]", "expected an object") }
            return TokenizerJSONObject(values: dict, path: fieldPath("\(key)[\(index)]"), source: source)
        }
    }

    private static func isBool(_ n: NSNumber) -> Bool {
        #if canImport(Darwin)
        return CFGetTypeID(n) == CFBooleanGetTypeID()
        #else
        return n.objCType.pointee == 99 // "c": how JSONSerialization stores true and false
        #endif
    }
}

extension TokenizerJSONObject {
    /// The `added_tokens` list of a tokenizer.json (empty when absent).
    func addedTokens() throws -> [AddedToken] {
        guard has("added_tokens") else { return [] }
        return try objects("added_tokens").map { t in
            AddedToken(content: try t.string("content"), id: try t.int("id"),
                       special: try t.bool("special", default: false),
                       lstrip: try t.bool("lstrip", default: false), rstrip: try t.bool("rstrip", default: false),
                       singleWord: try t.bool("single_word", default: false),
                       normalized: try t.bool("normalized", default: !(try t.bool("special", default: false))))
        }
    }

    /// The `truncation` section of a tokenizer.json, nil when null.
    func truncationParameters() throws -> TruncationParameters? {
        guard let t = try optionalObject("truncation") else { return nil }
        let strategyName = try t.optionalString("strategy") ?? "LongestFirst"
        guard let strategy = TruncationParameters.Strategy(rawValue: strategyName) else {
            throw t.invalid("strategy", "unknown truncation strategy '\(strategyName)'")
        }
        let direction = try t.optionalString("direction") ?? "Right"
        guard let side = TokenizerSide(rawValue: direction.lowercased()) else {
            throw t.invalid("direction", "expected Left or Right")
        }
        let maxLength = try t.int("max_length")
        guard maxLength >= 0 else { throw t.invalid("max_length", "negative") }
        return TruncationParameters(maxLength: maxLength, strategy: strategy, direction: side)
    }

    /// The `padding` section of a tokenizer.json, nil when null.
    func paddingParameters() throws -> PaddingParameters? {
        guard let p = try optionalObject("padding") else { return nil }
        var params = PaddingParameters()
        if p.has("strategy") {
            if let name = p.values["strategy"] as? String {
                guard name == "BatchLongest" else { throw p.invalid("strategy", "unknown padding strategy '\(name)'") }
            } else {
                let s = try p.object("strategy")
                guard s.has("Fixed") else { throw s.missing("Fixed") }
                params.fixedLength = try s.int("Fixed")
            }
        }
        let direction = try p.optionalString("direction") ?? "Right"
        guard let side = TokenizerSide(rawValue: direction.lowercased()) else {
            throw p.invalid("direction", "expected Left or Right")
        }
        params.direction = side
        params.padToMultipleOf = try p.optionalInt("pad_to_multiple_of")
        params.padId = try p.optionalInt("pad_id") ?? 0
        params.padTypeId = try p.optionalInt("pad_type_id") ?? 0
        params.padToken = try p.optionalString("pad_token") ?? "[PAD]"
        return params
    }
}
