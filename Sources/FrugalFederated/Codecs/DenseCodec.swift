/// FedAvg's uncompressed update: every entry as float32 (or float16).
///
/// Formula: decoded = u (float32, exact) or fp16(u) (round-to-nearest-even).
/// Size: 16 + 4n bytes (float32) or 16 + 2n bytes (float16).
/// Flags: bit 2 = float16 values.
public struct DenseCodec: UpdateCodec {
    public var values: ValueEncoding

    public init(values: ValueEncoding = .float32) { self.values = values }

    public var codecID: CodecID { .dense }
    public var usesErrorFeedback: Bool { false }

    static let fp16Flag: UInt16 = 1 << 2

    /// Stream size in bytes for `layout` (exact).
    public func estimatedSize(_ layout: TensorLayout) -> Int { encodedSize(layout) }

    /// Stream size in bytes for `layout`.
    public func encodedSize(_ layout: TensorLayout) -> Int {
        CodecHeader.size + layout.count * values.bytesPerValue
    }

    public func encode(_ update: [Float], layout: TensorLayout, state: inout CodecState) throws -> [UInt8] {
        try layout.validate(update, "DenseCodec input")
        var w = ByteWriter(capacity: encodedSize(layout))
        CodecHeader(codec: .dense, flags: values == .float16 ? Self.fp16Flag : 0,
                    length: layout.count, segments: layout.segments.count, param: 0).write(to: &w)
        update.withUnsafeBufferPointer { w.writeFloats($0, as: values) }
        if values == .float16, let bad = overflowIndex(update) {
            throw CodecError("DenseCodec: value \(update[bad]) at \(layout.name(at: bad)) overflows float16")
        }
        state.rounds += 1
        return w.bytes
    }

    public func decode(_ bytes: [UInt8], layout: TensorLayout) throws -> [Float] {
        var r = ByteReader(bytes, context: "DenseCodec")
        let h = try CodecHeader.read(&r, expecting: .dense, layout: layout, allowedFlags: Self.fp16Flag)
        guard h.param == 0 else { throw CodecError("DenseCodec: parameter \(h.param) should be 0") }
        let enc: ValueEncoding = h.flags & Self.fp16Flag != 0 ? .float16 : .float32
        var out = [Float](repeating: 0, count: layout.count)
        try out.withUnsafeMutableBufferPointer { try r.readFloats(into: $0, as: enc, "dense values") }
        try r.expectEnd()
        return out
    }
}

/// Index of the first value that float16 cannot hold (|x| > 65504 rounds to infinity).
func overflowIndex(_ v: [Float]) -> Int? {
    v.firstIndex { !Float(Float16($0)).isFinite }
}
