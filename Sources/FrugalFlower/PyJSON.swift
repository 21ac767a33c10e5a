/// The JSON that Flower's object bodies use: Python's `json.dumps` with its defaults
/// (`", "` and `": "` separators, `ensure_ascii=True`), key order preserved. Object ids are hashes
/// of these bytes, so the encoder must match Python's byte for byte; the parser keeps key order
/// (an `ArrayRecord` body lists the arrays in their record order).
enum PyJSON: Equatable {
    case string(String)
    case int(Int)
    case array([PyJSON])
    case object([(String, PyJSON)])
    case other(String)  // numbers with fractions, true/false/null: kept as text

    static func == (a: PyJSON, b: PyJSON) -> Bool {
        switch (a, b) {
        case let (.string(x), .string(y)): return x == y
        case let (.int(x), .int(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)): return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        case let (.other(x), .other(y)): return x == y
        default: return false
        }
    }

    // MARK: - Encoding (json.dumps)

    func dumps() -> String {
        var out = ""
        write(into: &out)
        return out
    }

    func write(into out: inout String) {
        switch self {
        case .string(let s): Self.writeString(s, into: &out)
        case .int(let i): out += String(i)
        case .other(let t): out += t
        case .array(let xs):
            out += "["
            for (i, x) in xs.enumerated() {
                if i > 0 { out += ", " }
                x.write(into: &out)
            }
            out += "]"
        case .object(let kvs):
            out += "{"
            for (i, (k, v)) in kvs.enumerated() {
                if i > 0 { out += ", " }
                Self.writeString(k, into: &out)
                out += ": "
                v.write(into: &out)
            }
            out += "}"
        }
    }

    static func writeString(_ s: String, into out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if u.value < 0x20 || u.value > 0x7E {  // Python escapes all but ' '...'~'
                    if u.value > 0xFFFF {  // a surrogate pair, as Python writes it
                        let v = u.value - 0x10000
                        out += hex4(0xD800 + (v >> 10)) + hex4(0xDC00 + (v & 0x3FF))
                    } else {
                        out += hex4(u.value)
                    }
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out += "\""
    }

    static func hex4(_ v: UInt32) -> String {
        let h = String(v, radix: 16)
        return "\\u" + String(repeating: "0", count: 4 - h.count) + h
    }

    // MARK: - Parsing

    static func parse(_ bytes: some Collection<UInt8>, what: String) throws -> PyJSON {
        var p = Parser(bytes: Array(bytes), what: what)
        let v = try p.value()
        p.skipSpace()
        guard p.i == p.bytes.count else { throw p.fail("trailing characters") }
        return v
    }

    struct Parser {
        let bytes: [UInt8]
        let what: String
        var i = 0

        func fail(_ why: String) -> FlowerError { FlowerError(.content, "\(what): invalid JSON at byte \(i): \(why)") }

        mutating func skipSpace() { while i < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[i]) { i += 1 } }

        mutating func value() throws -> PyJSON {
            skipSpace()
            guard i < bytes.count else { throw fail("unexpected end") }
            switch bytes[i] {
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "["):
                i += 1
                var xs: [PyJSON] = []
                skipSpace()
                if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array(xs) }
                while true {
                    xs.append(try value())
                    skipSpace()
                    guard i < bytes.count else { throw fail("unterminated array") }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    if bytes[i] == UInt8(ascii: "]") { i += 1; return .array(xs) }
                    throw fail("expected ',' or ']'")
                }
            case UInt8(ascii: "{"):
                i += 1
                var kvs: [(String, PyJSON)] = []
                skipSpace()
                if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .object(kvs) }
                while true {
                    skipSpace()
                    guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw fail("expected a key") }
                    let k = try string()
                    skipSpace()
                    guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                    i += 1
                    kvs.append((k, try value()))
                    skipSpace()
                    guard i < bytes.count else { throw fail("unterminated object") }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    if bytes[i] == UInt8(ascii: "}") { i += 1; return .object(kvs) }
                    throw fail("expected ',' or '}'")
                }
            default:
                let start = i
                while i < bytes.count, !([UInt8(ascii: ","), UInt8(ascii: "]"), UInt8(ascii: "}"), 0x20, 0x0A, 0x0D, 0x09].contains(bytes[i])) { i += 1 }
                let t = String(decoding: bytes[start..<i], as: UTF8.self)
                if let n = Int(t) { return .int(n) }
                guard ["true", "false", "null"].contains(t) || Double(t) != nil else { throw fail("unexpected '\(t)'") }
                return .other(t)
            }
        }

        mutating func string() throws -> String {
            i += 1  // opening quote
            var scalars = String.UnicodeScalarView()
            var run = i
            func flush(_ upTo: Int, _ scalars: inout String.UnicodeScalarView) {
                if upTo > run { scalars.append(contentsOf: String(decoding: bytes[run..<upTo], as: UTF8.self).unicodeScalars) }
            }
            while i < bytes.count {
                let c = bytes[i]
                if c == UInt8(ascii: "\"") {
                    flush(i, &scalars); i += 1
                    return String(scalars)
                }
                if c == UInt8(ascii: "\\") {
                    flush(i, &scalars)
                    guard i + 1 < bytes.count else { throw fail("unterminated escape") }
                    let e = bytes[i + 1]
                    i += 2
                    switch e {
                    case UInt8(ascii: "\""): scalars.append("\"")
                    case UInt8(ascii: "\\"): scalars.append("\\")
                    case UInt8(ascii: "/"): scalars.append("/")
                    case UInt8(ascii: "n"): scalars.append("\n")
                    case UInt8(ascii: "r"): scalars.append("\r")
                    case UInt8(ascii: "t"): scalars.append("\t")
                    case UInt8(ascii: "b"): scalars.append("\u{08}")
                    case UInt8(ascii: "f"): scalars.append("\u{0C}")
                    case UInt8(ascii: "u"):
                        var v = try hex()
                        if (0xD800..<0xDC00).contains(v), i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") {
                            i += 2
                            let lo = try hex()
                            guard (0xDC00..<0xE000).contains(lo) else { throw fail("unpaired surrogate") }
                            v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00)
                        }
                        guard let u = Unicode.Scalar(v) else { throw fail("invalid code point \(v)") }
                        scalars.append(u)
                    default: throw fail("unknown escape")
                    }
                    run = i
                    continue
                }
                i += 1
            }
            throw fail("unterminated string")
        }

        mutating func hex() throws -> UInt32 {
            guard i + 4 <= bytes.count, let v = UInt32(String(decoding: bytes[i..<i + 4], as: UTF8.self), radix: 16) else {
                throw fail("bad \\u escape")
            }
            i += 4
            return v
        }
    }
}
