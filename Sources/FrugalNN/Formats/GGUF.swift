import Foundation
import FrugalCore

// GGUF layout (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md), all little-endian:
//   "GGUF" | u32 version | u64 tensor_count | u64 kv_count
//   kv_count x { string key | u32 value_type | value }
//   tensor_count x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
//   padding to `general.alignment` (default 32) | tensor data (offsets relative to here)
// A string is u64 length + UTF-8 bytes; an array is u32 element type + u64 count + elements.
// ne[0] is the fastest-varying dimension (the row length): PyTorch's shape is ne reversed.

/// A malformed GGUF file or a bad request; the message names the file and, where it applies,
/// the byte offset, key or tensor.
public struct GGUFError: Error, CustomStringConvertible, LocalizedError, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
    public var errorDescription: String? { message }
}

/// GGUF metadata value types.
public enum GGUFValueType: UInt32, Sendable, CaseIterable, Codable {
    case uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, bool = 7
    case string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12

    /// Fixed encoded size, or the minimum for strings (length only) and arrays (type + count).
    var minEncodedSize: Int {
        switch self {
        case .uint8, .int8, .bool: return 1
        case .uint16, .int16: return 2
        case .uint32, .int32, .float32: return 4
        case .uint64, .int64, .float64, .string: return 8
        case .array: return 12
        }
    }
}

/// A GGUF metadata value.
public enum GGUFValue: Sendable, Equatable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case uint64(UInt64), int64(Int64), float32(Float), float64(Double), bool(Bool), string(String)
    /// An array: its element type and elements (elements may be arrays themselves).
    case array(GGUFValueType, [GGUFValue])

    /// The value's type.
    public var type: GGUFValueType {
        switch self {
        case .uint8: return .uint8
        case .int8: return .int8
        case .uint16: return .uint16
        case .int16: return .int16
        case .uint32: return .uint32
        case .int32: return .int32
        case .uint64: return .uint64
        case .int64: return .int64
        case .float32: return .float32
        case .float64: return .float64
        case .bool: return .bool
        case .string: return .string
        case .array: return .array
        }
    }

    /// Any integer type as `Int` (nil if not an integer or if a uint64 exceeds `Int.max`).
    public var intValue: Int? {
        switch self {
        case let .uint8(v): return Int(v)
        case let .int8(v): return Int(v)
        case let .uint16(v): return Int(v)
        case let .int16(v): return Int(v)
        case let .uint32(v): return Int(v)
        case let .int32(v): return Int(v)
        case let .uint64(v): return v <= UInt64(Int.max) ? Int(v) : nil
        case let .int64(v): return Int(v)
        default: return nil
        }
    }

    /// Floats and integers as `Double`.
    public var doubleValue: Double? {
        switch self {
        case let .float32(v): return Double(v)
        case let .float64(v): return v
        case let .uint64(v): return Double(v)
        default: return intValue.map(Double.init)
        }
    }

    public var stringValue: String? { if case let .string(s) = self { return s } else { return nil } }
    public var boolValue: Bool? { if case let .bool(b) = self { return b } else { return nil } }
    public var arrayValue: [GGUFValue]? { if case let .array(_, a) = self { return a } else { return nil } }

    /// A one-line summary for listings: scalars in full (strings cut at 60 characters), arrays
    /// as `[49152 x string]`.
    public var summary: String {
        switch self {
        case let .string(s):
            let oneLine = s.replacingOccurrences(of: "\n", with: "\\n")
            return oneLine.count > 60 ? "\"\(oneLine.prefix(57))...\"" : "\"\(oneLine)\""
        case let .array(t, a):
            if a.count <= 4, t != .array {
                return "[" + a.map(\.summary).joined(separator: ", ") + "]"
            }
            return "[\(a.count) x \(t)]"
        case let .bool(b): return b ? "true" : "false"
        case let .float32(v): return "\(v)"
        case let .float64(v): return "\(v)"
        default: return intValue.map(String.init) ?? "\(self)"
        }
    }

    var typeDescription: String {
        if case let .array(t, _) = self { return "array of \(t)" }
        return "\(type)"
    }
}

/// One tensor's entry in a GGUF file.
public struct GGUFTensorInfo: Sendable, Equatable, Codable {
    /// The tensor's name, e.g. `blk.0.attn_q.weight`.
    public let name: String
    /// Dimensions in ggml order: `dims[0]` (ne[0]) is the fastest-varying one, the row length.
    public let dims: [Int]
    /// The element type.
    public let type: GGMLType
    /// Offset of the data relative to the data section (as stored in the file).
    public let offset: Int
    /// Number of elements.
    public let elementCount: Int
    /// Absolute byte range of the data in the file.
    public let byteRange: Range<Int>

    /// Dimensions in PyTorch order (`dims` reversed): `[rows..., rowLength]`.
    public var shape: [Int] { dims.reversed() }
    /// Bytes of data.
    public var byteCount: Int { byteRange.count }
    /// Elements in a row (`dims[0]`, 1 for a scalar).
    public var rowLength: Int { dims.first ?? 1 }
    /// Number of rows (`elementCount / rowLength`, 0 for an empty tensor).
    public var rowCount: Int { rowLength == 0 ? 0 : elementCount / rowLength }
    /// Bytes per row.
    public var rowByteCount: Int { rowLength / type.blockSize * type.typeSize }
}

/// Tokenizer data stored in a GGUF file (`tokenizer.ggml.*` keys).
public struct GGUFTokenizerData: Sendable, Equatable {
    /// `tokenizer.ggml.model`: `gpt2` (byte-level BPE), `llama` (SentencePiece), `bert`, ...
    public var model: String
    /// `tokenizer.ggml.pre`: the pre-tokenizer name (e.g. `smollm`), if present.
    public var preTokenizer: String?
    public var tokens: [String]
    /// Token types (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte), if present.
    public var tokenTypes: [Int]?
    /// SentencePiece scores, if present.
    public var scores: [Float]?
    /// BPE merges (`"a b"`), if present.
    public var merges: [String]?
    public var bosTokenID: Int?
    public var eosTokenID: Int?
    public var unknownTokenID: Int?
    public var paddingTokenID: Int?
    public var addBOS: Bool?
    public var addEOS: Bool?
    public var chatTemplate: String?
}

/// A GGUF file (v2 or v3), memory-mapped read-only. Metadata and tensor infos are parsed and
/// validated when it is opened; tensor data is read (and dequantised) only when asked for.
///
/// ```swift
/// let gguf = try GGUFFile(url: url)
/// let layers = try gguf.int("llama.block_count")            // 30
/// let tokens = try gguf.stringArray("tokenizer.ggml.tokens")
/// let wq = try gguf.floats("blk.0.attn_q.weight")           // dequantised, row-major [576 x 576]
/// ```
///
/// Pointers from `rawBytes` point into the mapping and stay valid while the object is alive.
/// The object is immutable and may be shared between threads.
public final class GGUFFile: @unchecked Sendable {
    /// Most dimensions a ggml tensor may have.
    public static let maxDims = 4
    /// Deepest nesting of arrays accepted in metadata.
    public static let maxArrayDepth = 8

    /// The file's location.
    public let url: URL
    /// Format version (2 or 3).
    public let version: Int
    /// All metadata values by key.
    public let metadata: [String: GGUFValue]
    /// Metadata keys in file order.
    public let metadataKeys: [String]
    /// Tensor infos in file order.
    public let tensors: [GGUFTensorInfo]
    /// `general.alignment` (32 when absent).
    public let alignment: Int
    /// Absolute byte offset of the data section.
    public let dataOffset: Int
    /// Size of the file in bytes.
    public var fileSize: Int { storage.bytes.count }
    /// Tensor names in file order.
    public var names: [String] { tensors.map(\.name) }

    private let storage: ReadOnlyMapping
    private let index: [String: Int]
    private let displayName: String

    /// Opens and validates a GGUF file, memory-mapping it.
    public convenience init(url: URL) throws {
        try self.init(storage: ReadOnlyMapping(url: url), url: url, displayName: url.path)
    }

    /// Parses GGUF bytes already in memory (copied; for tests and small buffers).
    public convenience init<C: Collection>(bytes: C, name: String = "<memory>") throws where C.Element == UInt8 {
        try self.init(storage: ReadOnlyMapping(copying: bytes, name: name), url: URL(fileURLWithPath: name), displayName: name)
    }

    private init(storage: ReadOnlyMapping, url: URL, displayName: String) throws {
        self.storage = storage
        self.url = url
        self.displayName = displayName
        var r = GGUFReader(bytes: storage.bytes, file: displayName)
        let h = try r.parse()
        version = h.version
        metadata = h.metadata
        metadataKeys = h.keys
        tensors = h.tensors
        alignment = h.alignment
        dataOffset = h.dataOffset
        var idx: [String: Int] = [:]
        for i in h.tensors.indices { idx[h.tensors[i].name] = i }
        index = idx
    }

    // MARK: Tensors

    /// Whether the file has a tensor called `name`.
    public func contains(_ name: String) -> Bool { index[name] != nil }

    /// The info of tensor `name`.
    public func info(_ name: String) throws -> GGUFTensorInfo {
        guard let i = index[name] else { throw GGUFError("no tensor named '\(name)' in \(displayName)") }
        return tensors[i]
    }

    /// The tensor's stored (possibly quantised) bytes, pointing into the mapping.
    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer {
        let t = try info(name)
        return UnsafeRawBufferPointer(rebasing: storage.bytes[t.byteRange])
    }

    /// The tensor dequantised to float32, row-major in PyTorch order (`shape`).
    public func floats(_ name: String) throws -> [Float] {
        let t = try info(name)
        try checkDequantizable(t)
        return [Float](unsafeUninitializedCapacity: t.elementCount) { buf, n in
            if t.elementCount > 0 {
                GGMLQuants.dequantizeParallel(t.type, storage.bytes.baseAddress! + t.byteRange.lowerBound,
                                              blocks: t.elementCount / t.type.blockSize, buf.baseAddress!)
            }
            n = t.elementCount
        }
    }

    /// Dequantises the tensor into `destination`, which must hold exactly its element count.
    public func copyFloats(_ name: String, into destination: UnsafeMutableBufferPointer<Float>) throws {
        let t = try info(name)
        try checkDequantizable(t)
        guard destination.count == t.elementCount else {
            throw GGUFError("tensor '\(name)' in \(displayName) has \(t.elementCount) elements, destination holds \(destination.count)")
        }
        try GGMLQuants.dequantize(t.type, from: UnsafeRawBufferPointer(rebasing: storage.bytes[t.byteRange]),
                                  count: t.elementCount, into: destination)
    }

    /// Dequantises rows `rows` of the tensor (a row is `dims[0]` elements): `rows.count * rowLength` floats.
    public func floats(_ name: String, rows: Range<Int>) throws -> [Float] {
        let t = try info(name)
        try checkDequantizable(t)
        guard rows.lowerBound >= 0, rows.upperBound <= t.rowCount else {
            throw GGUFError("rows \(rows) out of range for tensor '\(name)' with \(t.rowCount) rows in \(displayName)")
        }
        let count = rows.count * t.rowLength
        let start = t.byteRange.lowerBound + rows.lowerBound * t.rowByteCount
        let src = UnsafeRawBufferPointer(rebasing: storage.bytes[start..<(start + rows.count * t.rowByteCount)])
        var out = [Float](repeating: 0, count: count)
        try out.withUnsafeMutableBufferPointer { try GGMLQuants.dequantize(t.type, from: src, count: count, into: $0) }
        return out
    }

    private func checkDequantizable(_ t: GGUFTensorInfo) throws {
        guard t.type.canDequantize else {
            throw GGUFError("unsupported ggml type \(t.type.name) for tensor '\(t.name)' in \(displayName): no dequantisation")
        }
    }

    // MARK: Typed metadata

    private func typed<T>(_ key: String, _ expected: String, _ get: (GGUFValue) -> T?) throws -> T? {
        guard let v = metadata[key] else { return nil }
        guard let x = get(v) else {
            throw GGUFError("metadata '\(key)' in \(displayName) is \(v.typeDescription), expected \(expected)")
        }
        return x
    }

    /// The string at `key`; nil if absent, throws if it has another type.
    public func string(_ key: String) throws -> String? { try typed(key, "a string") { $0.stringValue } }
    /// The integer (any integer type) at `key`; nil if absent, throws if it has another type.
    public func int(_ key: String) throws -> Int? { try typed(key, "an integer") { $0.intValue } }
    /// The number (float or integer) at `key` as Double; nil if absent.
    public func double(_ key: String) throws -> Double? { try typed(key, "a number") { $0.doubleValue } }
    /// The number at `key` as Float; nil if absent.
    public func float(_ key: String) throws -> Float? { try double(key).map(Float.init) }
    /// The bool at `key`; nil if absent.
    public func bool(_ key: String) throws -> Bool? { try typed(key, "a bool") { $0.boolValue } }
    /// The array of strings at `key`; nil if absent.
    public func stringArray(_ key: String) throws -> [String]? {
        try typed(key, "an array of strings") { v in
            guard case let .array(t, a) = v, t == .string else { return nil }
            return a.map { $0.stringValue ?? "" }
        }
    }
    /// The array of integers at `key`; nil if absent.
    public func intArray(_ key: String) throws -> [Int]? {
        try typed(key, "an array of integers") { v in
            guard case let .array(_, a) = v else { return nil }
            var out: [Int] = []
            out.reserveCapacity(a.count)
            for x in a { guard let i = x.intValue else { return nil }; out.append(i) }
            return out
        }
    }
    /// The array of numbers at `key` as Float; nil if absent.
    public func floatArray(_ key: String) throws -> [Float]? {
        try typed(key, "an array of numbers") { v in
            guard case let .array(_, a) = v else { return nil }
            var out: [Float] = []
            out.reserveCapacity(a.count)
            for x in a { guard let d = x.doubleValue else { return nil }; out.append(Float(d)) }
            return out
        }
    }

    /// `general.architecture` (e.g. `llama`).
    public var architecture: String? { try? string("general.architecture") }

    /// The `tokenizer.ggml.*` data; throws if `tokenizer.ggml.model` or `tokenizer.ggml.tokens`
    /// is missing or a key has the wrong type.
    public func tokenizerData() throws -> GGUFTokenizerData {
        guard let model = try string("tokenizer.ggml.model") else {
            throw GGUFError("\(displayName) has no tokenizer (missing tokenizer.ggml.model)")
        }
        guard let tokens = try stringArray("tokenizer.ggml.tokens") else {
            throw GGUFError("\(displayName) has no tokenizer.ggml.tokens")
        }
        return GGUFTokenizerData(
            model: model, preTokenizer: try string("tokenizer.ggml.pre"), tokens: tokens,
            tokenTypes: try intArray("tokenizer.ggml.token_type"), scores: try floatArray("tokenizer.ggml.scores"),
            merges: try stringArray("tokenizer.ggml.merges"),
            bosTokenID: try int("tokenizer.ggml.bos_token_id"), eosTokenID: try int("tokenizer.ggml.eos_token_id"),
            unknownTokenID: try int("tokenizer.ggml.unknown_token_id"),
            paddingTokenID: try int("tokenizer.ggml.padding_token_id"),
            addBOS: try bool("tokenizer.ggml.add_bos_token"), addEOS: try bool("tokenizer.ggml.add_eos_token"),
            chatTemplate: try string("tokenizer.chat_template"))
    }
}

/// Bounds-checked GGUF header parser over a complete file image.
struct GGUFReader {
    let bytes: UnsafeRawBufferPointer
    let file: String
    var pos = 0

    init(bytes: UnsafeRawBufferPointer, file: String) {
        self.bytes = bytes
        self.file = file
    }

    struct Header {
        var version: Int
        var metadata: [String: GGUFValue]
        var keys: [String]
        var tensors: [GGUFTensorInfo]
        var alignment: Int
        var dataOffset: Int
    }

    func fail(_ message: String, at offset: Int? = nil) -> GGUFError {
        GGUFError("\(file): offset \(offset ?? pos): \(message)")
    }

    var remaining: Int { bytes.count - pos }

    mutating func need(_ n: Int, _ what: @autoclosure () -> String) throws {
        guard n <= remaining else {
            throw fail("truncated: \(what()) needs \(n) bytes, \(remaining) left")
        }
    }

    mutating func read<T: FixedWidthInteger>(_: T.Type, _ what: @autoclosure () -> String) throws -> T {
        try need(MemoryLayout<T>.size, what())
        let v = T(littleEndian: bytes.loadUnaligned(fromByteOffset: pos, as: T.self))
        pos += MemoryLayout<T>.size
        return v
    }

    /// A u64 count or size that must fit in `Int`.
    mutating func readCount(_ what: @autoclosure () -> String) throws -> Int {
        let start = pos
        let v = try read(UInt64.self, what())
        guard v <= UInt64(Int.max) else { throw fail("\(what()) \(v) is too large", at: start) }
        return Int(v)
    }

    mutating func readString(_ what: @autoclosure () -> String) throws -> String {
        let start = pos
        let n = try readCount("length of \(what())")
        guard n <= remaining else {
            throw fail("\(what()) has length \(n) but only \(remaining) bytes remain", at: start)
        }
        guard let s = String(validating: UnsafeRawBufferPointer(rebasing: bytes[pos..<(pos + n)]), as: UTF8.self) else {
            throw fail("\(what()) is not valid UTF-8", at: start)
        }
        pos += n
        return s
    }

    mutating func readValueType(_ what: @autoclosure () -> String) throws -> GGUFValueType {
        let start = pos
        let raw = try read(UInt32.self, "type of \(what())")
        guard let t = GGUFValueType(rawValue: raw) else { throw fail("\(what()) has unknown value type \(raw)", at: start) }
        return t
    }

    /// A fixed-size numeric value at `offset` (bounds checked by the caller).
    func scalar(_ type: GGUFValueType, at offset: Int) -> GGUFValue {
        func load<T: FixedWidthInteger>(_: T.Type) -> T { T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self)) }
        switch type {
        case .uint8: return .uint8(load(UInt8.self))
        case .int8: return .int8(load(Int8.self))
        case .uint16: return .uint16(load(UInt16.self))
        case .int16: return .int16(load(Int16.self))
        case .uint32: return .uint32(load(UInt32.self))
        case .int32: return .int32(load(Int32.self))
        case .uint64: return .uint64(load(UInt64.self))
        case .int64: return .int64(load(Int64.self))
        case .float32: return .float32(Float(bitPattern: load(UInt32.self)))
        case .float64: return .float64(Double(bitPattern: load(UInt64.self)))
        case .bool, .string, .array: preconditionFailure("not a fixed-size numeric type")
        }
    }

    mutating func readValue(_ type: GGUFValueType, key: String, depth: Int) throws -> GGUFValue {
        switch type {
        case .uint8: return .uint8(try read(UInt8.self, key))
        case .int8: return .int8(try read(Int8.self, key))
        case .uint16: return .uint16(try read(UInt16.self, key))
        case .int16: return .int16(try read(Int16.self, key))
        case .uint32: return .uint32(try read(UInt32.self, key))
        case .int32: return .int32(try read(Int32.self, key))
        case .uint64: return .uint64(try read(UInt64.self, key))
        case .int64: return .int64(try read(Int64.self, key))
        case .float32: return .float32(Float(bitPattern: try read(UInt32.self, key)))
        case .float64: return .float64(Double(bitPattern: try read(UInt64.self, key)))
        case .bool:
            let start = pos
            let b = try read(UInt8.self, key)
            guard b <= 1 else { throw fail("bool value of '\(key)' is \(b), expected 0 or 1", at: start) }
            return .bool(b == 1)
        case .string:
            return .string(try readString("string value of '\(key)'"))
        case .array:
            guard depth < GGUFFile.maxArrayDepth else {
                throw fail("arrays in '\(key)' are nested deeper than \(GGUFFile.maxArrayDepth)")
            }
            let elem = try readValueType("array element of '\(key)'")
            let countAt = pos
            let count = try readCount("array length of '\(key)'")
            // Every element takes at least minEncodedSize bytes: reject impossible counts before allocating.
            guard count <= remaining / elem.minEncodedSize else {
                throw fail("array '\(key)' claims \(count) \(elem) elements but only \(remaining) bytes remain", at: countAt)
            }
            var items: [GGUFValue] = []
            items.reserveCapacity(count)
            switch elem {
            case .string, .array, .bool:
                for _ in 0..<count { items.append(try readValue(elem, key: key, depth: depth + 1)) }
            default:
                // Fixed-size scalars: the count check above guarantees count * size bytes remain.
                let size = elem.minEncodedSize
                for i in 0..<count { items.append(scalar(elem, at: pos + i * size)) }
                pos += count * size
            }
            return .array(elem, items)
        }
    }

    mutating func parse() throws -> Header {
        guard bytes.count >= 4 else { throw fail("file is \(bytes.count) bytes, too short for a GGUF header", at: 0) }
        let magic = try read(UInt32.self, "magic")
        guard magic == 0x4655_4747 else {  // "GGUF" read as little-endian u32
            throw fail(String(format: "bad magic 0x%08x, expected \"GGUF\"", magic), at: 0)
        }
        let v = try read(UInt32.self, "version")
        if v == 1 { throw fail("GGUF version 1 is not supported (only 2 and 3)", at: 4) }
        if v != 2 && v != 3 {
            if v & 0xFFFF == 0 && v.byteSwapped <= 3 {
                throw fail("big-endian GGUF (version \(v.byteSwapped)) is not supported", at: 4)
            }
            throw fail("unsupported GGUF version \(v) (only 2 and 3)", at: 4)
        }
        let tensorCountAt = pos
        let tensorCount = try readCount("tensor count")
        let kvCountAt = pos
        let kvCount = try readCount("metadata count")
        // Minimum sizes: a kv is key length (8) + type (4) + 1 byte; a tensor info is name length (8)
        // + n_dims (4) + type (4) + offset (8).
        guard kvCount <= remaining / 13 else {
            throw fail("metadata count \(kvCount) cannot fit in the \(remaining) bytes that remain", at: kvCountAt)
        }
        guard tensorCount <= remaining / 24 else {
            throw fail("tensor count \(tensorCount) cannot fit in the \(remaining) bytes that remain", at: tensorCountAt)
        }

        var metadata: [String: GGUFValue] = [:]
        var keys: [String] = []
        keys.reserveCapacity(kvCount)
        for i in 0..<kvCount {
            let keyAt = pos
            let key = try readString("key of metadata entry \(i)")
            let t = try readValueType("metadata '\(key)'")
            let value = try readValue(t, key: key, depth: 0)
            guard metadata[key] == nil else { throw fail("duplicate metadata key '\(key)'", at: keyAt) }
            metadata[key] = value
            keys.append(key)
        }

        var alignment = 32
        if let a = metadata["general.alignment"] {
            guard case let .uint32(av) = a else {
                throw GGUFError("\(file): general.alignment is \(a.typeDescription), expected uint32")
            }
            guard av > 0, av & (av - 1) == 0 else {
                throw GGUFError("\(file): general.alignment \(av) is not a power of two")
            }
            alignment = Int(av)
        }

        struct RawInfo { var name: String; var dims: [Int]; var type: GGMLType; var offset: Int; var count: Int; var size: Int; var at: Int }
        var raw: [RawInfo] = []
        raw.reserveCapacity(tensorCount)
        var seen = Set<String>()
        for i in 0..<tensorCount {
            let at = pos
            let name = try readString("name of tensor \(i)")
            guard seen.insert(name).inserted else { throw fail("duplicate tensor name '\(name)'", at: at) }
            let nDims = try read(UInt32.self, "n_dims of tensor '\(name)'")
            guard nDims <= UInt32(GGUFFile.maxDims) else {
                throw fail("tensor '\(name)' has \(nDims) dimensions, at most \(GGUFFile.maxDims) allowed", at: pos - 4)
            }
            var dims: [Int] = []
            var count = 1
            for _ in 0..<Int(nDims) {
                let dimAt = pos
                let d = try read(UInt64.self, "dimension of tensor '\(name)'")
                guard d <= UInt64(Int.max) else { throw fail("tensor '\(name)' has dimension \(d), too large", at: dimAt) }
                let (m, o) = count.multipliedReportingOverflow(by: Int(d))
                guard !o else { throw fail("element count of tensor '\(name)' overflows", at: dimAt) }
                count = m
                dims.append(Int(d))
            }
            let typeAt = pos
            let typeRaw = try read(UInt32.self, "type of tensor '\(name)'")
            guard let type = GGMLType(rawValue: typeRaw) else {
                throw fail("tensor '\(name)' has unknown ggml type \(typeRaw)", at: typeAt)
            }
            let rowLength = dims.first ?? 1
            guard rowLength % type.blockSize == 0, let size = type.byteCount(elements: count) else {
                throw fail("tensor '\(name)': row length \(rowLength) is not a multiple of the \(type.name) block size \(type.blockSize)", at: at)
            }
            let offsetAt = pos
            let offset = try readCount("data offset of tensor '\(name)'")
            guard offset % alignment == 0 else {
                throw fail("tensor '\(name)' has data offset \(offset), not a multiple of the alignment \(alignment)", at: offsetAt)
            }
            raw.append(RawInfo(name: name, dims: dims, type: type, offset: offset, count: count, size: size, at: offsetAt))
        }

        // The data section starts at the next multiple of the alignment.
        let (padded, o) = pos.addingReportingOverflow(alignment - 1)
        guard !o else { throw fail("data section offset overflows") }
        let dataOffset = padded / alignment * alignment
        let dataSize = max(0, bytes.count - dataOffset)

        var tensors: [GGUFTensorInfo] = []
        tensors.reserveCapacity(raw.count)
        for r in raw {
            let (end, o1) = r.offset.addingReportingOverflow(r.size)
            guard !o1, end <= dataSize else {
                throw fail("tensor '\(r.name)' data [\(r.offset), \(r.offset &+ r.size)) runs past the end of the data section (\(dataSize) bytes)", at: r.at)
            }
            tensors.append(GGUFTensorInfo(name: r.name, dims: r.dims, type: r.type, offset: r.offset, elementCount: r.count,
                                          byteRange: (dataOffset + r.offset)..<(dataOffset + end)))
        }
        // Tensors must not overlap.
        let order = tensors.indices.filter { tensors[$0].byteCount > 0 }.sorted { tensors[$0].offset < tensors[$1].offset }
        var prevEnd = 0
        var prevName = ""
        for i in order {
            if tensors[i].offset < prevEnd {
                throw fail("tensor '\(tensors[i].name)' data at \(tensors[i].offset) overlaps tensor '\(prevName)' (ends at \(prevEnd))")
            }
            prevEnd = tensors[i].offset + tensors[i].byteCount
            prevName = tensors[i].name
        }
        return Header(version: Int(v), metadata: metadata, keys: keys, tensors: tensors, alignment: alignment, dataOffset: dataOffset)
    }
}
