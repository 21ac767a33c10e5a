/// Sparse ternary compression (STC, Sattler et al. 2019) with error feedback; usable for
/// uploads and, with the server's own `CodecState`, for downloads of the aggregated update.
///
/// Formula: e ← e + u;  S = indices of the k largest |e_i|;  μ = mean_{i∈S} |e_i|;
/// send sign(e_i) · μ for i ∈ S (zero elsewhere);  e ← e − sent.
/// k = `keptCount(ratio:n:)`; ties go to the lower index; sign(0) = +1.
///
/// Size: 16 + P + 4 + ⌈k/8⌉ bytes: P = the smallest `PositionCoding` of S, one float32 μ, then
/// one sign bit per kept entry (1 = negative). Header: param = k; flags bits 0–1 = position coding.
public struct STCCodec: UpdateCodec {
    /// Fraction of entries kept, in [0, 1].
    public var ratio: Double
    public var errorFeedback: Bool

    public init(ratio: Double, errorFeedback: Bool = true) {
        self.ratio = ratio
        self.errorFeedback = errorFeedback
    }

    public var codecID: CodecID { .stc }

    public func estimatedSize(_ layout: TensorLayout) -> Int {
        let k = keptCount(ratio: ratio, n: layout.count)
        return CodecHeader.size + estimatedPositionBytes(k: k, n: layout.count) + 4 + (k + 7) / 8
    }
    public var usesErrorFeedback: Bool { errorFeedback }

    public func encode(_ update: [Float], layout: TensorLayout, state: inout CodecState) throws -> [UInt8] {
        try checkRatio(ratio, "STCCodec")
        try layout.validate(update, "STCCodec input")
        let n = layout.count
        let k = keptCount(ratio: ratio, n: n)
        var e: [Float]
        if errorFeedback {
            e = try state.accumulated(update, layout: layout, context: "STCCodec")
        } else {
            e = update
        }
        let positions = e.withUnsafeBufferPointer { TopK.select($0, k: k) }
        var kept = [Float](repeating: 0, count: k)
        var total: Double = 0
        e.withUnsafeBufferPointer { eb in
            for (j, p) in positions.enumerated() {
                kept[j] = eb[Int(p)]
                total += Double(abs(eb[Int(p)]))
            }
        }
        let mu: Float = k > 0 ? Float(total / Double(k)) : 0
        if errorFeedback {
            e.withUnsafeMutableBufferPointer { eb in
                for (j, p) in positions.enumerated() { eb[Int(p)] -= kept[j] < 0 ? -mu : mu }
            }
            state.residual = e
        }
        state.rounds += 1

        let (coding, posBytes) = bestCoding(positions, n: n)
        var w = ByteWriter(capacity: CodecHeader.size + posBytes + 4 + (k + 7) / 8)
        CodecHeader(codec: .stc, flags: UInt16(coding.rawValue), length: n, segments: layout.segments.count,
                    param: UInt32(k)).write(to: &w)
        positions.withUnsafeBufferPointer { coding.encode($0, n: n, into: &w) }
        w.writeFloat32(mu)
        w.withAppended(count: (k + 7) / 8) { out in
            kept.withUnsafeBufferPointer { BitPacking.packSigns($0, into: out) }
        }
        return w.bytes
    }

    public func decode(_ bytes: [UInt8], layout: TensorLayout) throws -> [Float] {
        var r = ByteReader(bytes, context: "STCCodec")
        let h = try CodecHeader.read(&r, expecting: .stc, layout: layout, allowedFlags: 0x3)
        let n = layout.count
        guard Int(h.param) <= n else { throw CodecError("STCCodec: k = \(h.param) exceeds n = \(n)") }
        let k = Int(h.param)
        let coding = PositionCoding(rawValue: UInt8(h.flags & 0x3))!
        let positions = try coding.decode(count: k, n: n, from: &r)
        let at = r.offset
        let mu = try r.readFiniteFloat32("mean magnitude μ")
        guard mu >= 0 else { throw CodecError("STCCodec: negative μ = \(mu) at byte offset \(at)") }
        var out = [Float](repeating: 0, count: n)
        try r.withBytes((k + 7) / 8, "\(k) sign bits") { bits in
            try BitPacking.checkPadding(bits, count: k, context: "STCCodec")
            out.withUnsafeMutableBufferPointer { o in
                for (j, p) in positions.enumerated() { o[Int(p)] = BitPacking.sign(bits, j) * mu }
            }
        }
        try r.expectEnd()
        return out
    }
}
