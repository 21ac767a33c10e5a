/// Seeded random-k sparsification.
///
/// Formula: S = k distinct positions drawn uniformly from a 64-bit seed (selection sampling,
/// Knuth's Algorithm S: position i is taken with probability (k − taken)/(n − i), so S comes
/// out sorted); send v_i · (n/k if `scaled`) for i ∈ S. With scaling the decoded vector is an
/// unbiased estimate of v (E[decoded] = v). v = u, or with error feedback v = e ← e + u and
/// e ← e − sent (error feedback is usually combined with `scaled: false`).
/// The seed travels in the stream, so positions cost no bytes; a new seed is drawn from the
/// sender's `CodecState.rng` every round.
///
/// Size: 16 + 8 (seed) + 4k bytes (2k for float16).
/// Header: param = k; flags bit 2 = float16 values, bit 3 = values were scaled by n/k.
public struct RandomKCodec: UpdateCodec {
    public var ratio: Double
    public var scaled: Bool
    public var values: ValueEncoding
    public var errorFeedback: Bool

    public init(ratio: Double, scaled: Bool = true, values: ValueEncoding = .float32, errorFeedback: Bool = false) {
        self.ratio = ratio
        self.scaled = scaled
        self.values = values
        self.errorFeedback = errorFeedback
    }

    public var codecID: CodecID { .randomK }
    public var usesErrorFeedback: Bool { errorFeedback }

    static let fp16Flag: UInt16 = 1 << 2
    static let scaledFlag: UInt16 = 1 << 3

    /// 16 + 8 + k · bytesPerValue (exact).
    public func estimatedSize(_ layout: TensorLayout) -> Int {
        CodecHeader.size + 8 + keptCount(ratio: ratio, n: layout.count) * values.bytesPerValue
    }

    /// The k sorted positions that `seed` selects out of n.
    public static func positions(seed: UInt64, k: Int, n: Int) -> [Int32] {
        var rng = SplitMix64(seed: seed)
        var out = [Int32]()
        out.reserveCapacity(k)
        var need = UInt64(k)
        var i = 0
        while need > 0 && i < n {
            let left = UInt64(n - i)
            if need == left {
                // every remaining position is taken
                while i < n { out.append(Int32(i)); i += 1 }
                break
            }
            if rng.nextBelow(left) < need {
                out.append(Int32(i))
                need -= 1
            }
            i += 1
        }
        return out
    }

    public func encode(_ update: [Float], layout: TensorLayout, state: inout CodecState) throws -> [UInt8] {
        try checkRatio(ratio, "RandomKCodec")
        try layout.validate(update, "RandomKCodec input")
        let n = layout.count
        let k = keptCount(ratio: ratio, n: n)
        var rng = state.rng
        let seed = rng.next()
        let positions = Self.positions(seed: seed, k: k, n: n)
        let scale: Float = scaled && k > 0 ? Float(Double(n) / Double(k)) : 1
        var e: [Float]
        if errorFeedback {
            e = try state.accumulated(update, layout: layout, context: "RandomKCodec")
        } else {
            e = update
        }
        var sent = [Float](repeating: 0, count: k)
        e.withUnsafeMutableBufferPointer { eb in
            for (j, p) in positions.enumerated() {
                let v = values.round(eb[Int(p)] * scale)
                sent[j] = v
                eb[Int(p)] -= v
            }
        }
        if let bad = sent.firstIndex(where: { !$0.isFinite }) {
            throw CodecError("RandomKCodec: scaled value at \(layout.name(at: Int(positions[bad]))) overflows \(values)")
        }
        if errorFeedback { state.residual = e }
        state.rng = rng
        state.rounds += 1

        var w = ByteWriter(capacity: CodecHeader.size + 8 + k * values.bytesPerValue)
        let flags = (values == .float16 ? Self.fp16Flag : 0) | (scaled ? Self.scaledFlag : 0)
        CodecHeader(codec: .randomK, flags: flags, length: n, segments: layout.segments.count, param: UInt32(k)).write(to: &w)
        w.writeU64(seed)
        sent.withUnsafeBufferPointer { w.writeFloats($0, as: values) }
        return w.bytes
    }

    public func decode(_ bytes: [UInt8], layout: TensorLayout) throws -> [Float] {
        var r = ByteReader(bytes, context: "RandomKCodec")
        let h = try CodecHeader.read(&r, expecting: .randomK, layout: layout, allowedFlags: Self.fp16Flag | Self.scaledFlag)
        let n = layout.count
        guard Int(h.param) <= n else { throw CodecError("RandomKCodec: k = \(h.param) exceeds n = \(n)") }
        let k = Int(h.param)
        let seed = try r.readU64("seed")
        let enc: ValueEncoding = h.flags & Self.fp16Flag != 0 ? .float16 : .float32
        var vals = [Float](repeating: 0, count: k)
        try vals.withUnsafeMutableBufferPointer { try r.readFloats(into: $0, as: enc, "random-k values") }
        try r.expectEnd()
        let positions = Self.positions(seed: seed, k: k, n: n)
        var out = [Float](repeating: 0, count: n)
        out.withUnsafeMutableBufferPointer { o in
            for (j, p) in positions.enumerated() { o[Int(p)] = vals[j] }
        }
        return out
    }
}
