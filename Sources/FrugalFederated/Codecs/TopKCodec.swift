/// Top-k magnitude sparsification with error feedback.
///
/// Formula (error feedback on): e ← e + u;  S = indices of the k largest |e_i|;
/// send (i, e_i) for i ∈ S;  e ← e − sent.  Without error feedback e is just u each round.
/// k = `keptCount(ratio:n:)`; ties at the threshold go to the lower index.
///
/// Size: 16 + P + 4k bytes (float32 values; 2k for float16), P = the smallest
/// `PositionCoding` for the chosen positions (e.g. ⌈n/8⌉ for a bitmap, 4k for indices).
/// Header: param = k; flags bits 0–1 = position coding, bit 2 = float16 values.
public struct TopKCodec: UpdateCodec {
    /// Fraction of entries kept, in [0, 1].
    public var ratio: Double
    public var values: ValueEncoding
    public var errorFeedback: Bool

    public init(ratio: Double, values: ValueEncoding = .float32, errorFeedback: Bool = true) {
        self.ratio = ratio
        self.values = values
        self.errorFeedback = errorFeedback
    }

    public var codecID: CodecID { .topK }
    public var usesErrorFeedback: Bool { errorFeedback }

    static let fp16Flag: UInt16 = 1 << 2

    public func estimatedSize(_ layout: TensorLayout) -> Int {
        let k = keptCount(ratio: ratio, n: layout.count)
        return CodecHeader.size + estimatedPositionBytes(k: k, n: layout.count) + k * values.bytesPerValue
    }

    public func encode(_ update: [Float], layout: TensorLayout, state: inout CodecState) throws -> [UInt8] {
        try checkRatio(ratio, "TopKCodec")
        try layout.validate(update, "TopKCodec input")
        let n = layout.count
        let k = keptCount(ratio: ratio, n: n)
        var e: [Float]
        if errorFeedback {
            e = try state.accumulated(update, layout: layout, context: "TopKCodec")
        } else {
            e = update
        }
        let positions = e.withUnsafeBufferPointer { TopK.select($0, k: k) }
        var sent = [Float](repeating: 0, count: k)
        e.withUnsafeMutableBufferPointer { eb in
            for (j, p) in positions.enumerated() {
                let v = values.round(eb[Int(p)])
                sent[j] = v
                eb[Int(p)] -= v
            }
        }
        if values == .float16, let bad = sent.firstIndex(where: { !$0.isFinite }) {
            throw CodecError("TopKCodec: value at \(layout.name(at: Int(positions[bad]))) overflows float16")
        }
        if errorFeedback { state.residual = e }
        state.rounds += 1

        let (coding, posBytes) = bestCoding(positions, n: n)
        var w = ByteWriter(capacity: CodecHeader.size + posBytes + k * values.bytesPerValue)
        CodecHeader(codec: .topK, flags: UInt16(coding.rawValue) | (values == .float16 ? Self.fp16Flag : 0),
                    length: n, segments: layout.segments.count, param: UInt32(k)).write(to: &w)
        positions.withUnsafeBufferPointer { coding.encode($0, n: n, into: &w) }
        sent.withUnsafeBufferPointer { w.writeFloats($0, as: values) }
        return w.bytes
    }

    public func decode(_ bytes: [UInt8], layout: TensorLayout) throws -> [Float] {
        let (positions, vals) = try decodeSparse(bytes, layout: layout)
        var out = [Float](repeating: 0, count: layout.count)
        out.withUnsafeMutableBufferPointer { o in
            for (j, p) in positions.enumerated() { o[Int(p)] = vals[j] }
        }
        return out
    }

    public func decodeAdd(_ bytes: [UInt8], layout: TensorLayout, weight: Float, into accumulator: inout [Float]) throws {
        guard accumulator.count == layout.count else {
            throw CodecError("TopKCodec.decodeAdd: accumulator has \(accumulator.count) entries, layout expects \(layout.count)")
        }
        let (positions, vals) = try decodeSparse(bytes, layout: layout)
        accumulator.withUnsafeMutableBufferPointer { o in
            for (j, p) in positions.enumerated() { o[Int(p)] += weight * vals[j] }
        }
    }

    /// The transmitted (positions, values) pairs, positions strictly increasing.
    public func decodeSparse(_ bytes: [UInt8], layout: TensorLayout) throws -> (positions: [Int32], values: [Float]) {
        var r = ByteReader(bytes, context: "TopKCodec")
        let h = try CodecHeader.read(&r, expecting: .topK, layout: layout, allowedFlags: 0x3 | Self.fp16Flag)
        let n = layout.count
        guard Int(h.param) <= n else { throw CodecError("TopKCodec: k = \(h.param) exceeds n = \(n)") }
        let k = Int(h.param)
        let coding = PositionCoding(rawValue: UInt8(h.flags & 0x3))!
        let positions = try coding.decode(count: k, n: n, from: &r)
        let enc: ValueEncoding = h.flags & Self.fp16Flag != 0 ? .float16 : .float32
        var vals = [Float](repeating: 0, count: k)
        try vals.withUnsafeMutableBufferPointer { try r.readFloats(into: $0, as: enc, "top-k values") }
        try r.expectEnd()
        return (positions, vals)
    }
}
