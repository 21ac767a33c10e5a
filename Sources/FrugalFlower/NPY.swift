import Foundation

/// An n-dimensional array in NumPy's `.npy` format, as Flower carries arrays (`stype`
/// "numpy.ndarray": the bytes `np.save(buf, a, allow_pickle=False)` writes).
///
/// Reads format versions 1.0, 2.0 and 3.0 of little-endian, C-ordered arrays of the numeric dtypes
/// below; writes exactly what NumPy 2 writes (version 1.0, header padded to 64 bytes with room to
/// grow the first axis), so an array round-trips to identical bytes and object ids.
///
///     let a = NPYArray(float32: [1, 2, 3, 4, 5, 6], shape: [2, 3])
///     let bytes = a.encoded()                       // == np.save of the same float32 array
///     let b = try NPYArray(decoding: bytes)         // b.floats() == [1, 2, 3, 4, 5, 6]
public struct NPYArray: Sendable, Equatable {
    /// The element types this reader and writer handle (NumPy `descr` strings).
    public enum DType: String, Sendable, CaseIterable {
        case float32 = "<f4", float64 = "<f8", float16 = "<f2"
        case int8 = "|i1", int16 = "<i2", int32 = "<i4", int64 = "<i8"
        case uint8 = "|u1", uint16 = "<u2", uint32 = "<u4", uint64 = "<u8"
        case bool = "|b1"

        /// Bytes per element.
        public var size: Int {
            switch self {
            case .int8, .uint8, .bool: return 1
            case .float16, .int16, .uint16: return 2
            case .float32, .int32, .uint32: return 4
            case .float64, .int64, .uint64: return 8
            }
        }
        /// NumPy's name of the dtype (`str(a.dtype)`), which Flower puts in `Array.dtype`.
        public var name: String {
            switch self {
            case .float32: return "float32"
            case .float64: return "float64"
            case .float16: return "float16"
            case .int8: return "int8"
            case .int16: return "int16"
            case .int32: return "int32"
            case .int64: return "int64"
            case .uint8: return "uint8"
            case .uint16: return "uint16"
            case .uint32: return "uint32"
            case .uint64: return "uint64"
            case .bool: return "bool"
            }
        }
    }

    public var dtype: DType
    public var shape: [Int]
    /// The elements, little-endian, C order (`shape.product × dtype.size` bytes).
    public var data: [UInt8]

    /// Number of elements (1 for a 0-d array).
    public var count: Int { shape.reduce(1, *) }

    public init(dtype: DType, shape: [Int], data: [UInt8]) throws {
        guard shape.allSatisfy({ $0 >= 0 }) else { throw FlowerError(.content, "NPY shape \(shape) has a negative dimension") }
        let n = shape.reduce(1, *)
        guard data.count == n * dtype.size else {
            throw FlowerError(.content, "NPY data has \(data.count) bytes, shape \(shape) of \(dtype.name) needs \(n * dtype.size)")
        }
        self.dtype = dtype; self.shape = shape; self.data = data
    }

    /// A float32 array; `values.count` must equal the product of `shape`.
    public init(float32 values: [Float], shape: [Int]) {
        precondition(values.count == shape.reduce(1, *), "NPYArray: \(values.count) values for shape \(shape)")
        self.dtype = .float32
        self.shape = shape
        self.data = values.withUnsafeBytes { raw in
            var out = [UInt8](repeating: 0, count: raw.count)
            out.withUnsafeMutableBytes { $0.copyMemory(from: raw) }
            return out
        }
    }

    /// The elements of a float32 array (throws for any other dtype: Frugal trains in float32).
    public func floats() throws -> [Float] {
        guard dtype == .float32 else {
            throw FlowerError(.content, "expected a float32 array, got \(dtype.name) (shape \(shape))")
        }
        var out = [Float](repeating: 0, count: count)
        out.withUnsafeMutableBytes { dst in data.withUnsafeBytes { dst.copyMemory(from: $0) } }
        return out
    }

    // MARK: - Reading

    /// Parses `.npy` bytes; errors name what is wrong (magic, version, header, dtype, size).
    public init(decoding bytes: [UInt8]) throws {
        let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // \x93NUMPY
        guard bytes.count >= 10, Array(bytes[0..<6]) == magic else {
            throw FlowerError(.content, "not an NPY array: the first bytes are not \\x93NUMPY (\(bytes.count) bytes)")
        }
        let major = bytes[6]
        let headerLength: Int, headerStart: Int
        switch major {
        case 1:
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            headerStart = 10
        case 2, 3:
            guard bytes.count >= 12 else { throw FlowerError(.content, "NPY version \(major) header is truncated") }
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
            headerStart = 12
        default:
            throw FlowerError(.content, "NPY format version \(major).\(bytes[7]) is not supported (1.0, 2.0, 3.0 are)")
        }
        guard headerStart + headerLength <= bytes.count else {
            throw FlowerError(.content, "NPY header of \(headerLength) bytes runs past the end (\(bytes.count) bytes)")
        }
        guard let header = String(bytes: bytes[headerStart ..< headerStart + headerLength], encoding: major == 3 ? .utf8 : .isoLatin1) else {
            throw FlowerError(.content, "NPY header is not text")
        }
        let fields = try NPYHeader.parse(header)
        guard let descr = fields.descr else { throw FlowerError(.content, "NPY header has no 'descr': \(header)") }
        let normalized = descr.hasPrefix("=") ? "<" + descr.dropFirst() : descr
        guard let dtype = DType(rawValue: normalized) ?? DType.allCases.first(where: { $0.size == 1 && $0.rawValue.dropFirst() == normalized.dropFirst() }) else {
            throw FlowerError(.content, "NPY dtype '\(descr)' is not supported (little-endian float16/32/64, int8-64, uint8-64, bool are)")
        }
        guard fields.fortranOrder == false else {
            throw FlowerError(.content, "NPY array is in Fortran order; only C-ordered arrays are supported")
        }
        guard let shape = fields.shape else { throw FlowerError(.content, "NPY header has no 'shape': \(header)") }
        let body = Array(bytes[(headerStart + headerLength)...])
        try self.init(dtype: dtype, shape: shape, data: body)
    }

    // MARK: - Writing

    /// The `.npy` bytes NumPy 2's `np.save` writes for this array.
    public func encoded() -> [UInt8] {
        var header = "{'descr': '\(dtype.rawValue)', 'fortran_order': False, 'shape': \(Self.pythonTuple(shape)), }"
        // numpy leaves room for the first axis to grow to 21 digits (GROWTH_AXIS_MAX_DIGITS).
        if let first = shape.first { header += String(repeating: " ", count: max(0, 21 - String(first).count)) }
        let hlen = header.utf8.count + 1
        let pad = 64 - ((8 + 2 + hlen) % 64)
        let total = hlen + pad
        var out: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0, UInt8(total & 0xFF), UInt8(total >> 8)]
        out.reserveCapacity(10 + total + data.count)
        out += Array(header.utf8)
        out += [UInt8](repeating: 0x20, count: pad)
        out.append(0x0A)
        out += data
        return out
    }

    static func pythonTuple(_ shape: [Int]) -> String {
        switch shape.count {
        case 0: return "()"
        case 1: return "(\(shape[0]),)"
        default: return "(" + shape.map(String.init).joined(separator: ", ") + ")"
        }
    }
}

/// The Python-literal dictionary of an NPY header: `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`.
enum NPYHeader {
    struct Fields { var descr: String?; var fortranOrder: Bool?; var shape: [Int]? }

    static func parse(_ text: String) throws -> Fields {
        var s = Substring(text.trimmingCharacters(in: .whitespacesAndNewlines))
        func fail(_ why: String) -> FlowerError { FlowerError(.content, "NPY header \(text.debugDescription): \(why)") }
        guard s.first == "{", s.last == "}" else { throw fail("not a dictionary") }
        s = s.dropFirst().dropLast()
        var fields = Fields()
        while true {
            s = s.drop(while: { $0 == " " || $0 == "," })
            if s.isEmpty { break }
            guard let q = s.first, q == "'" || q == "\"", let end = s.dropFirst().firstIndex(of: q) else { throw fail("expected a quoted key") }
            let key = String(s[s.index(after: s.startIndex)..<end])
            s = s[s.index(after: end)...].drop(while: { $0 == " " })
            guard s.first == ":" else { throw fail("expected ':' after '\(key)'") }
            s = s.dropFirst().drop(while: { $0 == " " })
            switch s.first {
            case "'", "\"":
                let q = s.first!
                guard let e = s.dropFirst().firstIndex(of: q) else { throw fail("unterminated string") }
                let v = String(s[s.index(after: s.startIndex)..<e])
                if key == "descr" { fields.descr = v }
                s = s[s.index(after: e)...]
            case "(":
                guard let e = s.firstIndex(of: ")") else { throw fail("unterminated tuple") }
                let inner = s[s.index(after: s.startIndex)..<e]
                var dims: [Int] = []
                for part in inner.split(separator: ",") {
                    let t = part.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "L", with: "")
                    if t.isEmpty { continue }
                    guard let d = Int(t), d >= 0 else { throw fail("bad dimension '\(t)'") }
                    dims.append(d)
                }
                if key == "shape" { fields.shape = dims }
                s = s[s.index(after: e)...]
            default:
                let e = s.firstIndex(where: { $0 == "," || $0 == " " }) ?? s.endIndex
                let v = String(s[..<e])
                if key == "fortran_order" {
                    guard v == "True" || v == "False" else { throw fail("fortran_order is '\(v)'") }
                    fields.fortranOrder = v == "True"
                }
                s = s[e...]
            }
        }
        return fields
    }
}
