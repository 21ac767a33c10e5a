import Foundation
import FrugalCore

// safetensors layout (https://github.com/huggingface/safetensors):
//   [u64 little-endian N] [N bytes of UTF-8 JSON header, space-padded] [data region]
// The header maps tensor names to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative
// to the data region) plus an optional "__metadata__" string map. The tensors must cover the data
// region exactly: sorted by offset, each begins where the previous ended, and the last ends at
// the end of the file. Validation here follows the Python/Rust `safetensors` library (0.8).

/// Element types that a safetensors file may declare (all of those known to `safetensors` 0.8).
public enum SafetensorsDType: String, Sendable, CaseIterable, Codable {
    case bool = "BOOL"
    case f4 = "F4"
    case f6e2m3 = "F6_E2M3"
    case f6e3m2 = "F6_E3M2"
    case u8 = "U8"
    case i8 = "I8"
    case f8e5m2 = "F8_E5M2"
    case f8e4m3 = "F8_E4M3"
    case f8e8m0 = "F8_E8M0"
    case f8e4m3fnuz = "F8_E4M3FNUZ"
    case f8e5m2fnuz = "F8_E5M2FNUZ"
    case i16 = "I16"
    case u16 = "U16"
    case f16 = "F16"
    case bf16 = "BF16"
    case i32 = "I32"
    case u32 = "U32"
    case f32 = "F32"
    case c64 = "C64"
    case f64 = "F64"
    case i64 = "I64"
    case u64 = "U64"

    /// Bits per element (sub-byte types pack several elements a byte).
    public var bitSize: Int {
        switch self {
        case .f4: return 4
        case .f6e2m3, .f6e3m2: return 6
        case .bool, .u8, .i8, .f8e5m2, .f8e4m3, .f8e8m0, .f8e4m3fnuz, .f8e5m2fnuz: return 8
        case .i16, .u16, .f16, .bf16: return 16
        case .i32, .u32, .f32: return 32
        case .c64, .f64, .i64, .u64: return 64
        }
    }

    /// The Frugal storage dtype for F32, F16 and BF16; nil for the others.
    public var dtype: DType? {
        switch self {
        case .f32: return .float32
        case .f16: return .float16
        case .bf16: return .bfloat16
        default: return nil
        }
    }

    /// Whether `SafetensorsFile.floats` can convert this type to float32 (all but F4, F6_*,
    /// the FNUZ float8 variants and C64).
    public var convertsToFloat: Bool {
        switch self {
        case .f4, .f6e2m3, .f6e3m2, .f8e4m3fnuz, .f8e5m2fnuz, .c64: return false
        default: return true
        }
    }

    /// The safetensors name of a Frugal dtype.
    public init(_ dtype: DType) {
        switch dtype {
        case .float32: self = .f32
        case .float16: self = .f16
        case .bfloat16: self = .bf16
        }
    }

    /// Position in the Rust library's `Dtype` enum; its writer orders tensors by this, descending.
    var libraryRank: Int { SafetensorsDType.allCases.firstIndex(of: self)! }
}

/// One tensor's entry in a safetensors header.
public struct SafetensorsTensorInfo: Sendable, Equatable, Codable {
    /// The tensor's name.
    public let name: String
    /// The dtype string exactly as in the header, e.g. `"BF16"`.
    public let dtypeString: String
    /// The declared element type.
    public let storageType: SafetensorsDType
    /// The PyTorch-order shape (row-major, last dimension contiguous).
    public let shape: [Int]
    /// Number of elements (product of `shape`; 1 for a scalar).
    public let elementCount: Int
    /// `data_offsets` from the header: byte range relative to the start of the data region.
    public let dataOffsets: Range<Int>
    /// Absolute byte range of the tensor's data in its file.
    public let byteRange: Range<Int>

    /// The Frugal dtype (F32, F16, BF16), or nil for other element types.
    public var dtype: DType? { storageType.dtype }
    /// Bytes of data.
    public var byteCount: Int { byteRange.count }
}

/// A malformed safetensors file or a bad request; the message names the file and tensor.
public struct SafetensorsError: Error, CustomStringConvertible, LocalizedError, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
    public var errorDescription: String? { message }
}

/// A safetensors file, memory-mapped read-only. The header is parsed and fully validated when the
/// file is opened; tensor data is touched only when asked for.
///
/// ```swift
/// let file = try SafetensorsFile(url: url)
/// for name in file.names { print(name, try file.info(name).shape) }
/// let w = try file.floats("encoder.layer.0.attention.self.query.weight")   // [Float]
/// ```
///
/// Pointers returned by `rawBytes` point into the mapping and stay valid while the file object is
/// alive. The object is immutable and may be shared between threads.
///
/// Validation matches the Python library (holes, overlaps, trailing bytes, size mismatches, bad
/// numbers, unknown dtypes are all errors), with one deliberate difference: a tensor name that
/// appears twice is an error here, where the library silently keeps the last entry. Failing to
/// open or map the file throws `FormatIOError`; a malformed file throws `SafetensorsError`.
public final class SafetensorsFile: @unchecked Sendable {
    /// Largest header the Python library accepts (100 MB).
    public static let maxHeaderBytes = 100_000_000

    /// The file's location (`<memory>` name for in-memory files).
    public let url: URL
    /// Tensor names in header order.
    public let names: [String]
    /// The `__metadata__` map (empty if absent or null).
    public let metadata: [String: String]
    /// Byte offset of the data region (8 + header length).
    public let dataOffset: Int
    /// Size of the file in bytes.
    public var fileSize: Int { storage.bytes.count }

    private let storage: ReadOnlyMapping
    private let entries: [SafetensorsTensorInfo]
    private let index: [String: Int]
    private let displayName: String

    /// Opens and validates a safetensors file, memory-mapping it.
    public convenience init(url: URL) throws {
        let mapping = try ReadOnlyMapping(url: url)
        try self.init(storage: mapping, url: url, displayName: url.path)
    }

    /// Parses safetensors bytes already in memory (copied; useful for tests and small buffers).
    public convenience init<C: Collection>(bytes: C, name: String = "<memory>") throws where C.Element == UInt8 {
        let store = ReadOnlyMapping(copying: bytes, name: name)
        try self.init(storage: store, url: URL(fileURLWithPath: name), displayName: name)
    }

    private init(storage: ReadOnlyMapping, url: URL, displayName: String) throws {
        self.storage = storage
        self.url = url
        self.displayName = displayName
        let parsed = try SafetensorsFile.parseHeader(storage.bytes, file: displayName)
        entries = parsed.infos
        metadata = parsed.metadata
        dataOffset = parsed.dataOffset
        names = parsed.infos.map(\.name)
        var idx: [String: Int] = [:]
        for (i, e) in parsed.infos.enumerated() { idx[e.name] = i }
        index = idx
    }

    /// All tensors' header entries, in header order.
    public var tensors: [SafetensorsTensorInfo] { entries }

    /// Whether the file has a tensor called `name`.
    public func contains(_ name: String) -> Bool { index[name] != nil }

    /// The header entry of tensor `name`.
    public func info(_ name: String) throws -> SafetensorsTensorInfo {
        guard let i = index[name] else {
            throw SafetensorsError("no tensor named '\(name)' in \(displayName)")
        }
        return entries[i]
    }

    /// The tensor's stored bytes (little-endian, any alignment), pointing into the mapping.
    /// Valid while this file object is alive.
    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer {
        let info = try info(name)
        return UnsafeRawBufferPointer(rebasing: storage.bytes[info.byteRange])
    }

    /// The tensor converted to float32, in row-major order.
    /// Throws for element types that have no float conversion (see `SafetensorsDType.convertsToFloat`).
    public func floats(_ name: String) throws -> [Float] {
        let info = try info(name)
        try checkConvertible(info)
        if info.elementCount == 0 { return [] }
        return [Float](unsafeUninitializedCapacity: info.elementCount) { buf, count in
            SafetensorsFile.convert(UnsafeRawBufferPointer(rebasing: storage.bytes[info.byteRange]),
                                    type: info.storageType, count: info.elementCount, into: buf.baseAddress!)
            count = info.elementCount
        }
    }

    /// Converts the tensor to float32 into `destination`, which must hold exactly its element count.
    public func copyFloats(_ name: String, into destination: UnsafeMutableBufferPointer<Float>) throws {
        let info = try info(name)
        try checkConvertible(info)
        guard destination.count == info.elementCount else {
            throw SafetensorsError("tensor '\(name)' in \(displayName) has \(info.elementCount) elements, destination holds \(destination.count)")
        }
        guard let dst = destination.baseAddress else { return }
        SafetensorsFile.convert(UnsafeRawBufferPointer(rebasing: storage.bytes[info.byteRange]),
                                type: info.storageType, count: info.elementCount, into: dst)
    }

    private func checkConvertible(_ info: SafetensorsTensorInfo) throws {
        guard info.storageType.convertsToFloat else {
            throw SafetensorsError("unsupported dtype \(info.dtypeString) for tensor '\(info.name)' in \(displayName): no conversion to float32")
        }
    }

    // MARK: Conversion

    /// Converts `count` elements of `type` at `src` (any alignment) to float32 at `dst`.
    static func convert(_ src: UnsafeRawBufferPointer, type: SafetensorsDType, count: Int, into dst: UnsafeMutablePointer<Float>) {
        guard count > 0, let p = src.baseAddress else { return }
        switch type {
        case .f32: HalfConversion.toFloat(p, dtype: .float32, count: count, into: dst)
        case .f16: HalfConversion.toFloat(p, dtype: .float16, count: count, into: dst)
        case .bf16: HalfConversion.toFloat(p, dtype: .bfloat16, count: count, into: dst)
        case .f64: for i in 0..<count { dst[i] = Float(Double(bitPattern: p.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))) }
        case .i64: for i in 0..<count { dst[i] = Float(p.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)) }
        case .u64: for i in 0..<count { dst[i] = Float(p.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)) }
        case .i32: for i in 0..<count { dst[i] = Float(p.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }
        case .u32: for i in 0..<count { dst[i] = Float(p.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)) }
        case .i16: for i in 0..<count { dst[i] = Float(p.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)) }
        case .u16: for i in 0..<count { dst[i] = Float(p.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
        case .i8: for i in 0..<count { dst[i] = Float(Int8(bitPattern: src[i])) }
        case .u8: for i in 0..<count { dst[i] = Float(src[i]) }
        case .bool: for i in 0..<count { dst[i] = src[i] != 0 ? 1 : 0 }
        case .f8e5m2: for i in 0..<count { dst[i] = Float(Float16(bitPattern: UInt16(src[i]) << 8)) }
        case .f8e4m3: for i in 0..<count { dst[i] = float8E4M3FN(src[i]) }
        case .f8e8m0:
            for i in 0..<count {
                let b = src[i]
                dst[i] = b == 0xFF ? .nan : Float(sign: .plus, exponent: Int(b) - 127, significand: 1)
            }
        case .f4, .f6e2m3, .f6e3m2, .f8e4m3fnuz, .f8e5m2fnuz, .c64:
            preconditionFailure("unreachable: checked by checkConvertible")
        }
    }

    /// float8 e4m3fn (bias 7, no infinities, S.1111.111 is NaN) to float32.
    @inline(__always)
    static func float8E4M3FN(_ b: UInt8) -> Float {
        let sign: Float = b & 0x80 != 0 ? -1 : 1
        let e = Int((b >> 3) & 0xF)
        let m = Float(b & 0x7)
        if e == 0xF && b & 0x7 == 0x7 { return .nan }
        if e == 0 { return sign * m * 0x1p-9 }  // subnormal: m/8 * 2^-6
        return sign * (1 + m / 8) * Float(sign: .plus, exponent: e - 7, significand: 1)
    }

    // MARK: Header validation

    struct ParsedHeader {
        var infos: [SafetensorsTensorInfo]
        var metadata: [String: String]
        var dataOffset: Int
    }

    /// Parses and validates the header of a complete safetensors file image.
    static func parseHeader(_ bytes: UnsafeRawBufferPointer, file: String) throws -> ParsedHeader {
        func fail(_ msg: String) -> SafetensorsError { SafetensorsError("\(file): \(msg)") }
        guard bytes.count >= 8 else {
            throw fail("file is \(bytes.count) bytes, too short for the 8-byte header length")
        }
        let n64 = bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self).littleEndian
        guard n64 <= UInt64(maxHeaderBytes) else {
            throw fail("header length \(n64) exceeds the limit of \(maxHeaderBytes) bytes")
        }
        let n = Int(n64)
        guard 8 + n <= bytes.count else {
            throw fail("header length \(n) runs past the end of the file (\(bytes.count) bytes)")
        }
        let headerBytes = UnsafeRawBufferPointer(rebasing: bytes[8..<(8 + n)])
        guard n > 0, headerBytes[0] == UInt8(ascii: "{") else {
            throw fail("header does not start with '{' (not a JSON object)")
        }
        guard String(validating: headerBytes, as: UTF8.self) != nil else {
            throw fail("header is not valid UTF-8")
        }
        let json: HeaderJSON
        do {
            json = try HeaderJSON.parse(headerBytes)
        } catch {
            throw fail("invalid JSON in header: \(error.message) at header byte \(error.offset)")
        }
        guard case let .object(members) = json else { throw fail("header is not a JSON object") }

        let dataStart = 8 + n
        let dataSize = bytes.count - dataStart
        var metadata: [String: String] = [:]
        var infos: [SafetensorsTensorInfo] = []
        infos.reserveCapacity(members.count)
        var seen = Set<String>()
        var sawMetadata = false
        for member in members {
            let name = member.key, value = member.value
            if name == "__metadata__" {
                if sawMetadata { throw fail("duplicate '__metadata__' entry") }
                sawMetadata = true
                switch value {
                case .null: break
                case let .object(kv):
                    for member in kv {
                        let k = member.key, v = member.value
                        guard let s = v.stringValue else {
                            throw fail("__metadata__ value for '\(k)' is a \(v.kindName), expected a string")
                        }
                        if metadata[k] != nil { throw fail("duplicate __metadata__ key '\(k)'") }
                        metadata[k] = s
                    }
                default:
                    throw fail("__metadata__ is a \(value.kindName), expected an object of strings")
                }
                continue
            }
            guard seen.insert(name).inserted else { throw fail("duplicate tensor name '\(name)'") }
            infos.append(try parseEntry(name: name, value: value, dataStart: dataStart, fail: fail))
        }

        // Coverage: sorted by offsets, contiguous from 0 to the end of the file.
        let order = infos.indices.sorted {
            (infos[$0].dataOffsets.lowerBound, infos[$0].dataOffsets.upperBound)
                < (infos[$1].dataOffsets.lowerBound, infos[$1].dataOffsets.upperBound)
        }
        var cursor = 0
        for i in order {
            let r = infos[i].dataOffsets
            if r.lowerBound != cursor {
                if r.lowerBound < cursor {
                    throw fail("tensor '\(infos[i].name)' data_offsets [\(r.lowerBound), \(r.upperBound)] overlap the previous tensor (which ends at \(cursor))")
                }
                throw fail("tensor '\(infos[i].name)' data_offsets begin at \(r.lowerBound) but the previous tensor ends at \(cursor): the data region has a hole")
            }
            cursor = r.upperBound
        }
        if cursor != dataSize {
            if cursor > dataSize {
                throw fail("tensor data ends at data offset \(cursor), past the end of the file (data region is \(dataSize) bytes)")
            }
            throw fail("tensor data ends at data offset \(cursor) but the data region is \(dataSize) bytes: file not fully covered")
        }
        return ParsedHeader(infos: infos, metadata: metadata, dataOffset: dataStart)
    }

    private static func parseEntry(name: String, value: HeaderJSON, dataStart: Int,
                                   fail: (String) -> SafetensorsError) throws -> SafetensorsTensorInfo {
        guard case let .object(fields) = value else {
            throw fail("entry for tensor '\(name)' is a \(value.kindName), expected an object")
        }
        var dtypeField: HeaderJSON?, shapeField: HeaderJSON?, offsetsField: HeaderJSON?
        for member in fields {
            let k = member.key, v = member.value
            switch k {
            case "dtype":
                if dtypeField != nil { throw fail("tensor '\(name)': duplicate field 'dtype'") }
                dtypeField = v
            case "shape":
                if shapeField != nil { throw fail("tensor '\(name)': duplicate field 'shape'") }
                shapeField = v
            case "data_offsets":
                if offsetsField != nil { throw fail("tensor '\(name)': duplicate field 'data_offsets'") }
                offsetsField = v
            default: break  // unknown fields are ignored, as in the Python library
            }
        }
        guard let dtypeField else { throw fail("tensor '\(name)': missing field 'dtype'") }
        guard let shapeField else { throw fail("tensor '\(name)': missing field 'shape'") }
        guard let offsetsField else { throw fail("tensor '\(name)': missing field 'data_offsets'") }
        guard let dtypeString = dtypeField.stringValue else {
            throw fail("tensor '\(name)': dtype is a \(dtypeField.kindName), expected a string")
        }
        guard let storageType = SafetensorsDType(rawValue: dtypeString) else {
            throw fail("tensor '\(name)': unknown dtype '\(dtypeString)'")
        }
        guard case let .array(dimValues) = shapeField else {
            throw fail("tensor '\(name)': shape is a \(shapeField.kindName), expected an array")
        }
        var shape: [Int] = []
        shape.reserveCapacity(dimValues.count)
        for d in dimValues {
            guard let v = d.exactUnsignedInt else {
                let text: String
                if case let .number(t) = d { text = t } else { text = d.kindName }
                throw fail("tensor '\(name)': shape entry \(text) is not a non-negative integer")
            }
            shape.append(v)
        }
        guard case let .array(offs) = offsetsField, offs.count == 2 else {
            throw fail("tensor '\(name)': data_offsets must be an array of two integers")
        }
        guard let begin = offs[0].exactUnsignedInt, let end = offs[1].exactUnsignedInt else {
            throw fail("tensor '\(name)': data_offsets must be non-negative integers")
        }
        guard end >= begin else {
            throw fail("tensor '\(name)': data_offsets [\(begin), \(end)] end before they begin")
        }
        var count = 1
        for d in shape {
            let (m, o) = count.multipliedReportingOverflow(by: d)
            if o { throw fail("tensor '\(name)': element count of shape \(shape) overflows") }
            count = m
        }
        let (bits, o2) = count.multipliedReportingOverflow(by: storageType.bitSize)
        if o2 { throw fail("tensor '\(name)': byte size of shape \(shape) x \(dtypeString) overflows") }
        if bits % 8 != 0 {
            throw fail("tensor '\(name)': \(count) elements of \(dtypeString) do not end on a byte boundary")
        }
        let size = bits / 8
        guard end - begin == size else {
            throw fail("tensor '\(name)': data_offsets [\(begin), \(end)] span \(end - begin) bytes but shape \(shape) x \(dtypeString) needs \(size)")
        }
        let (absBegin, o3) = dataStart.addingReportingOverflow(begin)
        let (absEnd, o4) = dataStart.addingReportingOverflow(end)
        if o3 || o4 { throw fail("tensor '\(name)': data_offsets overflow") }
        return SafetensorsTensorInfo(name: name, dtypeString: dtypeString, storageType: storageType, shape: shape,
                                     elementCount: count, dataOffsets: begin..<end, byteRange: absBegin..<absEnd)
    }
}

// MARK: - Sharded checkpoints

/// A checkpoint made of one or more safetensors files: a Hugging Face sharded checkpoint
/// (`model.safetensors.index.json` with a `weight_map` from tensor name to shard file), a folder
/// holding `model.safetensors`, a folder of `*.safetensors` files, or a single file.
///
/// ```swift
/// let ckpt = try SafetensorsCheckpoint(url: modelFolder)
/// let wq = try ckpt.floats("model.layers.0.self_attn.q_proj.weight")
/// ```
public final class SafetensorsCheckpoint: @unchecked Sendable {
    /// What the checkpoint was opened from (a folder, an index file or a `.safetensors` file).
    public let url: URL
    /// The index file, if the checkpoint has one.
    public let indexURL: URL?
    /// The shard files in order (index order: sorted shard names).
    public let files: [SafetensorsFile]
    /// All tensor names: shard by shard, header order within a shard.
    public let names: [String]
    /// The shards' `__metadata__`, merged (the first shard wins on conflicts).
    public let metadata: [String: String]
    /// The index file's `metadata` object, values rendered as text (e.g. `total_size`).
    public let indexMetadata: [String: String]

    private let location: [String: Int]

    /// Opens a checkpoint from a folder, a `*.safetensors.index.json` file or a `.safetensors` file.
    public init(url: URL) throws {
        self.url = url
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else {
            throw SafetensorsError("\(url.path): no such file or folder")
        }
        var shardURLs: [URL] = []
        var indexMeta: [String: String] = [:]
        var weightMap: [(String, String)] = []
        var index: URL? = nil
        if isDir.boolValue {
            let fm = FileManager.default
            let contents = (try? fm.contentsOfDirectory(atPath: url.path)) ?? []
            if contents.contains("model.safetensors.index.json") {
                index = url.appendingPathComponent("model.safetensors.index.json")
            } else if let other = contents.filter({ $0.hasSuffix(".safetensors.index.json") }).sorted().first {
                index = url.appendingPathComponent(other)
            } else if contents.contains("model.safetensors") {
                shardURLs = [url.appendingPathComponent("model.safetensors")]
            } else {
                shardURLs = contents.filter { $0.hasSuffix(".safetensors") && !$0.hasPrefix(".") }.sorted()
                    .map { url.appendingPathComponent($0) }
                if shardURLs.isEmpty {
                    throw SafetensorsError("\(url.path): folder holds no model.safetensors.index.json and no .safetensors files")
                }
            }
        } else if url.lastPathComponent.hasSuffix(".json") {
            index = url
        } else {
            shardURLs = [url]
        }
        if let index {
            let parsed = try SafetensorsCheckpoint.parseIndex(index)
            indexMeta = parsed.metadata
            weightMap = parsed.weightMap
            let dir = index.deletingLastPathComponent()
            shardURLs = Array(Set(weightMap.map(\.1))).sorted().map { dir.appendingPathComponent($0) }
            if shardURLs.isEmpty { throw SafetensorsError("\(index.path): weight_map is empty") }
        }
        indexURL = index
        indexMetadata = indexMeta

        var files: [SafetensorsFile] = []
        var location: [String: Int] = [:]
        var names: [String] = []
        var metadata: [String: String] = [:]
        for (i, u) in shardURLs.enumerated() {
            let f = try SafetensorsFile(url: u)
            for name in f.names {
                if location[name] != nil {
                    throw SafetensorsError("tensor '\(name)' appears in two shards: \(files[location[name]!].url.lastPathComponent) and \(u.lastPathComponent)")
                }
                location[name] = i
                names.append(name)
            }
            for (k, v) in f.metadata where metadata[k] == nil { metadata[k] = v }
            files.append(f)
        }
        if let index {
            let shardIndex = Dictionary(uniqueKeysWithValues: shardURLs.enumerated().map { ($1.lastPathComponent, $0) })
            for (name, shard) in weightMap {
                let want = shardIndex[URL(fileURLWithPath: shard).lastPathComponent]
                guard let at = location[name] else {
                    throw SafetensorsError("\(index.lastPathComponent) maps tensor '\(name)' to \(shard), which does not contain it")
                }
                if at != want {
                    throw SafetensorsError("\(index.lastPathComponent) maps tensor '\(name)' to \(shard), but it is in \(files[at].url.lastPathComponent)")
                }
            }
        }
        self.files = files
        self.location = location
        self.names = names
        self.metadata = metadata
    }

    /// Whether any shard has a tensor called `name`.
    public func contains(_ name: String) -> Bool { location[name] != nil }

    /// The shard holding tensor `name`.
    public func file(containing name: String) throws -> SafetensorsFile {
        guard let i = location[name] else {
            throw SafetensorsError("no tensor named '\(name)' in checkpoint \(url.path)")
        }
        return files[i]
    }

    /// The header entry of tensor `name` (its `byteRange` is within its shard file).
    public func info(_ name: String) throws -> SafetensorsTensorInfo { try file(containing: name).info(name) }
    /// The tensor's stored bytes, pointing into its shard's mapping (valid while this object lives).
    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer { try file(containing: name).rawBytes(name) }
    /// The tensor converted to float32.
    public func floats(_ name: String) throws -> [Float] { try file(containing: name).floats(name) }
    /// Converts the tensor to float32 into `destination` (exactly its element count).
    public func copyFloats(_ name: String, into destination: UnsafeMutableBufferPointer<Float>) throws {
        try file(containing: name).copyFloats(name, into: destination)
    }
    /// All tensors' header entries, shard by shard.
    public var tensors: [SafetensorsTensorInfo] { files.flatMap(\.tensors) }

    static func parseIndex(_ url: URL) throws -> (metadata: [String: String], weightMap: [(String, String)]) {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw SafetensorsError("cannot read \(url.path): \(error.localizedDescription)")
        }
        let json: HeaderJSON
        do {
            json = try data.withUnsafeBytes { raw throws(HeaderJSONError) in try HeaderJSON.parse(raw) }
        } catch {
            throw SafetensorsError("\(url.path): invalid JSON: \(error)")
        }
        guard case let .object(top) = json else { throw SafetensorsError("\(url.path): not a JSON object") }
        var meta: [String: String] = [:]
        var map: [(String, String)] = []
        var seen = Set<String>()
        var sawMap = false
        for member in top {
            let k = member.key, v = member.value
            if k == "metadata", case let .object(m) = v {
                for member in m {
                    let mk = member.key, mv = member.value
                    if case let .string(s) = mv { meta[mk] = s } else { meta[mk] = mv.serialized }
                }
            } else if k == "weight_map" {
                guard case let .object(entries) = v else {
                    throw SafetensorsError("\(url.path): weight_map is a \(v.kindName), expected an object")
                }
                sawMap = true
                for member in entries {
                    let name = member.key, file = member.value
                    guard let f = file.stringValue else {
                        throw SafetensorsError("\(url.path): weight_map entry for '\(name)' is a \(file.kindName), expected a file name")
                    }
                    let parts = f.split(separator: "/", omittingEmptySubsequences: false)
                    if f.isEmpty || f.hasPrefix("/") || parts.contains("..") || parts.count != 1 {
                        throw SafetensorsError("\(url.path): weight_map entry for '\(name)' names '\(f)', which is not a file beside the index")
                    }
                    if !seen.insert(name).inserted {
                        throw SafetensorsError("\(url.path): weight_map lists tensor '\(name)' twice")
                    }
                    map.append((name, f))
                }
            }
        }
        if !sawMap { throw SafetensorsError("\(url.path): no weight_map object") }
        return (meta, map)
    }
}

// MARK: - Writer

/// Writes safetensors files that the Python `safetensors` library reads: header padded with
/// spaces to a multiple of 8 bytes, `__metadata__` first, tensors ordered as the library orders
/// them (wider dtypes first, then by name), data contiguous. Files are written atomically
/// (temporary file in the same folder, fsync, rename).
///
/// ```swift
/// try SafetensorsWriter.write([
///     .init(name: "w", shape: [2, 3], floats: w, storedAs: .bfloat16),
///     .init(name: "b", dtype: .float32, shape: [3], bytes: rawBytes),
/// ], metadata: ["format": "pt"], to: url)
/// ```
public enum SafetensorsWriter {
    /// A tensor to write: name, stored dtype, shape and its data.
    public struct Tensor: @unchecked Sendable {
        enum Source {
            case bytes([UInt8])
            case data(Data)
            case pointer(UnsafeRawBufferPointer)
            case floats([Float])
        }
        public let name: String
        public let dtype: DType
        public let shape: [Int]
        let source: Source

        /// Stored bytes (`shape` product x `dtype.size` of them, little-endian).
        public init(name: String, dtype: DType, shape: [Int], bytes: [UInt8]) {
            self.name = name; self.dtype = dtype; self.shape = shape; source = .bytes(bytes)
        }
        /// Stored bytes as `Data`.
        public init(name: String, dtype: DType, shape: [Int], data: Data) {
            self.name = name; self.dtype = dtype; self.shape = shape; source = .data(data)
        }
        /// Stored bytes in memory the caller owns; they must stay valid until the write returns.
        /// (This is why `Tensor` is `@unchecked Sendable`: it may hold a borrowed pointer.)
        public init(name: String, dtype: DType, shape: [Int], unsafeBytes: UnsafeRawBufferPointer) {
            self.name = name; self.dtype = dtype; self.shape = shape; source = .pointer(unsafeBytes)
        }
        /// Float32 values, converted to `dtype` while writing (round to nearest even).
        public init(name: String, shape: [Int], floats: [Float], storedAs dtype: DType = .float32) {
            self.name = name; self.dtype = dtype; self.shape = shape; source = .floats(floats)
        }

        var sourceByteCount: Int {
            switch source {
            case let .bytes(b): return b.count
            case let .data(d): return d.count
            case let .pointer(p): return p.count
            case let .floats(f): return f.count * dtype.size
            }
        }

        /// Bytes this tensor occupies in a file; throws on a bad shape or a size mismatch.
        func validatedByteCount() throws -> Int {
            var count = 1
            for d in shape {
                guard d >= 0 else { throw SafetensorsError("tensor '\(name)': negative dimension in shape \(shape)") }
                let (m, o) = count.multipliedReportingOverflow(by: d)
                if o { throw SafetensorsError("tensor '\(name)': element count of shape \(shape) overflows") }
                count = m
            }
            let (size, o) = count.multipliedReportingOverflow(by: dtype.size)
            if o { throw SafetensorsError("tensor '\(name)': byte size of shape \(shape) overflows") }
            if case let .floats(f) = source, f.count != count {
                throw SafetensorsError("tensor '\(name)': shape \(shape) has \(count) elements but \(f.count) floats were given")
            }
            guard sourceByteCount == size else {
                throw SafetensorsError("tensor '\(name)': shape \(shape) x \(dtype.rawValue) needs \(size) bytes but \(sourceByteCount) were given")
            }
            return size
        }

        func write(to sink: inout AtomicFileSink) throws {
            switch source {
            case let .bytes(b): try sink.write(b)
            case let .data(d): try d.withUnsafeBytes { try sink.write($0) }
            case let .pointer(p): try sink.write(p)
            case let .floats(f):
                if dtype == .float32 {
                    try f.withUnsafeBytes { try sink.write($0) }
                    return
                }
                let chunk = 1 << 16
                var tmp = [UInt8](repeating: 0, count: chunk * dtype.size)
                try f.withUnsafeBufferPointer { src in
                    var i = 0
                    while i < src.count {
                        let n = min(chunk, src.count - i)
                        try tmp.withUnsafeMutableBytes { dst in
                            HalfConversion.fromFloat(src.baseAddress! + i, count: n, dtype: dtype, into: dst.baseAddress!)
                            try sink.write(UnsafeRawBufferPointer(rebasing: dst[0..<(n * dtype.size)]))
                        }
                        i += n
                    }
                }
            }
        }
    }

    /// Writes one safetensors file atomically.
    /// - Parameters:
    ///   - tensors: the tensors; names must be unique and not `__metadata__`.
    ///   - metadata: the `__metadata__` string map (omitted from the header when empty).
    ///   - url: destination; an existing file is replaced only once the new one is complete.
    public static func write(_ tensors: [Tensor], metadata: [String: String] = [:], to url: URL) throws {
        let (header, ordered) = try layout(tensors, metadata: metadata)
        try AtomicFileWriter.write(to: url) { sink in
            var len = UInt64(header.count).littleEndian
            try withUnsafeBytes(of: &len) { try sink.write($0) }
            try sink.write(header)
            for t in ordered { try t.write(to: &sink) }
        }
    }

    /// Writes one safetensors file from `(name, dtype, shape, data)` tuples.
    public static func write(_ tensors: [(name: String, dtype: DType, shape: [Int], data: Data)],
                             metadata: [String: String] = [:], to url: URL) throws {
        try write(tensors.map { Tensor(name: $0.name, dtype: $0.dtype, shape: $0.shape, data: $0.data) },
                  metadata: metadata, to: url)
    }

    /// The complete file image in memory (header and data), for small files and tests.
    public static func serialize(_ tensors: [Tensor], metadata: [String: String] = [:]) throws -> [UInt8] {
        let (header, ordered) = try layout(tensors, metadata: metadata)
        var out: [UInt8] = []
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: header)
        for t in ordered {
            switch t.source {
            case let .bytes(b): out.append(contentsOf: b)
            case let .data(d): out.append(contentsOf: d)
            case let .pointer(p): out.append(contentsOf: p)
            case let .floats(f):
                var tmp = [UInt8](repeating: 0, count: f.count * t.dtype.size)
                f.withUnsafeBufferPointer { src in
                    tmp.withUnsafeMutableBytes { dst in
                        if let s = src.baseAddress, let d = dst.baseAddress {
                            HalfConversion.fromFloat(s, count: src.count, dtype: t.dtype, into: d)
                        }
                    }
                }
                out.append(contentsOf: tmp)
            }
        }
        return out
    }

    /// Orders the tensors as the Python library does and builds the padded header.
    static func layout(_ tensors: [Tensor], metadata: [String: String]) throws -> (header: [UInt8], ordered: [Tensor]) {
        var names = Set<String>()
        var sizes: [String: Int] = [:]
        for t in tensors {
            if t.name == "__metadata__" { throw SafetensorsError("a tensor cannot be named '__metadata__'") }
            guard names.insert(t.name).inserted else { throw SafetensorsError("duplicate tensor name '\(t.name)'") }
            sizes[t.name] = try t.validatedByteCount()
        }
        let ordered = tensors.sorted { a, b in
            let ra = SafetensorsDType(a.dtype).libraryRank, rb = SafetensorsDType(b.dtype).libraryRank
            if ra != rb { return ra > rb }
            return Array(a.name.utf8).lexicographicallyPrecedes(Array(b.name.utf8))
        }
        var json = "{"
        var first = true
        if !metadata.isEmpty {
            json += "\"__metadata__\":{"
            for (i, k) in metadata.keys.sorted().enumerated() {
                if i > 0 { json += "," }
                json += HeaderJSON.quote(k) + ":" + HeaderJSON.quote(metadata[k]!)
            }
            json += "}"
            first = false
        }
        var offset = 0
        for t in ordered {
            let size = sizes[t.name]!
            if !first { json += "," }
            first = false
            json += HeaderJSON.quote(t.name)
            json += ":{\"dtype\":\"\(SafetensorsDType(t.dtype).rawValue)\",\"shape\":["
            json += t.shape.map(String.init).joined(separator: ",")
            json += "],\"data_offsets\":[\(offset),\(offset + size)]}"
            offset += size
        }
        json += "}"
        var header = Array(json.utf8)
        let pad = (8 - header.count % 8) % 8
        header.append(contentsOf: repeatElement(UInt8(ascii: " "), count: pad))
        if header.count > SafetensorsFile.maxHeaderBytes {
            throw SafetensorsError("header of \(header.count) bytes exceeds the safetensors limit of \(SafetensorsFile.maxHeaderBytes)")
        }
        return (header, ordered)
    }

    /// Writes a Hugging Face sharded checkpoint into `directory`: shards
    /// `<baseName>-00001-of-0000N.safetensors` of at most `maxShardBytes` of tensor data each
    /// (a larger single tensor gets a shard of its own), then `<baseName>.safetensors.index.json`
    /// with `metadata.total_size` and the `weight_map`. When everything fits one shard it writes
    /// just `<baseName>.safetensors`, as `save_pretrained` does. Tensors are assigned to shards in
    /// the given order. Each file is written atomically; the index last. Shards of an earlier write
    /// with a different shard count are not removed.
    /// - Returns: the files written (shards, then the index if any).
    @discardableResult
    public static func writeSharded(_ tensors: [Tensor], metadata: [String: String] = [:], to directory: URL,
                                    maxShardBytes: Int, baseName: String = "model") throws -> [URL] {
        guard maxShardBytes > 0 else { throw SafetensorsError("maxShardBytes must be positive, got \(maxShardBytes)") }
        var names = Set<String>()
        var shards: [[Tensor]] = []
        var current: [Tensor] = []
        var currentBytes = 0
        var total = 0
        for t in tensors {
            guard names.insert(t.name).inserted else { throw SafetensorsError("duplicate tensor name '\(t.name)'") }
            let size = try t.validatedByteCount()
            total += size
            if !current.isEmpty && currentBytes + size > maxShardBytes {
                shards.append(current)
                current = []
                currentBytes = 0
            }
            current.append(t)
            currentBytes += size
        }
        if !current.isEmpty || shards.isEmpty { shards.append(current) }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        if shards.count == 1 {
            let url = directory.appendingPathComponent("\(baseName).safetensors")
            try write(shards[0], metadata: metadata, to: url)
            return [url]
        }
        var written: [URL] = []
        var weightMap: [(String, String)] = []
        let n = shards.count
        func pad5(_ i: Int) -> String { let s = String(i); return String(repeating: "0", count: max(0, 5 - s.count)) + s }
        for (i, shard) in shards.enumerated() {
            let file = "\(baseName)-\(pad5(i + 1))-of-\(pad5(n)).safetensors"
            let url = directory.appendingPathComponent(file)
            try write(shard, metadata: metadata, to: url)
            written.append(url)
            for t in shard { weightMap.append((t.name, file)) }
        }
        // Same shape as transformers' index: {"metadata": {"total_size": N}, "weight_map": {...}}, keys sorted.
        weightMap.sort { Array($0.0.utf8).lexicographicallyPrecedes(Array($1.0.utf8)) }
        var json = "{\n  \"metadata\": {\n    \"total_size\": \(total)\n  },\n  \"weight_map\": {\n"
        json += weightMap.map { "    \(HeaderJSON.quote($0.0)): \(HeaderJSON.quote($0.1))" }.joined(separator: ",\n")
        json += "\n  }\n}\n"
        let indexURL = directory.appendingPathComponent("\(baseName).safetensors.index.json")
        try AtomicFileWriter.write(to: indexURL) { sink in try sink.write(Array(json.utf8)) }
        written.append(indexURL)
        return written
    }
}
