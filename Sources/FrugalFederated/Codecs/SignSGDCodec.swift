/// Scaled signSGD with error feedback (EF-SignSGD, Karimireddy et al. 2019), per tensor.
///
/// Formula, per tensor (segment) with error feedback on: e ← e + u;
/// μ = mean_i |e_i| = ‖e‖₁ / d;  send sign(e_i) · μ;  e ← e − sent.
/// sign(0) = +1 (one bit cannot say zero). Without error feedback e is just u each round.
///
/// Size: 16 + 4S + ⌈n/8⌉ bytes (S = segment count): S float32 scales, then one sign bit per
/// entry (1 = negative, LSB-first, zero-padded). Header: param = 0, no flags.
public struct SignSGDCodec: UpdateCodec {
    public var errorFeedback: Bool

    public init(errorFeedback: Bool = true) { self.errorFeedback = errorFeedback }

    public var codecID: CodecID { .signSGD }
    public var usesErrorFeedback: Bool { errorFeedback }

    public func estimatedSize(_ layout: TensorLayout) -> Int { Self.encodedSize(layout) }

    /// Stream size in bytes for `layout` (exact).
    public static func encodedSize(_ layout: TensorLayout) -> Int {
        CodecHeader.size + 4 * layout.segments.count + (layout.count + 7) / 8
    }

    public func encode(_ update: [Float], layout: TensorLayout, state: inout CodecState) throws -> [UInt8] {
        try layout.validate(update, "SignSGDCodec input")
        let n = layout.count
        let nseg = layout.segments.count
        var e: [Float]
        if errorFeedback {
            e = try state.accumulated(update, layout: layout, context: "SignSGDCodec")
        } else {
            e = update
        }
        var scales = [Float](repeating: 0, count: nseg)
        e.withUnsafeBufferPointer { eb in
            for seg in 0 ..< nseg {
                let range = layout.range(seg)
                if range.isEmpty { continue }
                var total: Double = 0
                for i in range { total += Double(abs(eb[i])) }
                scales[seg] = Float(total / Double(range.count))
            }
        }
        var w = ByteWriter(capacity: Self.encodedSize(layout))
        CodecHeader(codec: .signSGD, flags: 0, length: n, segments: nseg, param: 0).write(to: &w)
        for x in scales { w.writeFloat32(x) }
        w.withAppended(count: (n + 7) / 8) { out in
            e.withUnsafeBufferPointer { BitPacking.packSigns($0, into: out) }
        }
        if errorFeedback {
            e.withUnsafeMutableBufferPointer { eb in
                for seg in 0 ..< nseg {
                    let mu = scales[seg]
                    for i in layout.range(seg) { eb[i] -= eb[i] < 0 ? -mu : mu }
                }
            }
            state.residual = e
        }
        state.rounds += 1
        return w.bytes
    }

    public func decode(_ bytes: [UInt8], layout: TensorLayout) throws -> [Float] {
        var r = ByteReader(bytes, context: "SignSGDCodec")
        let h = try CodecHeader.read(&r, expecting: .signSGD, layout: layout, allowedFlags: 0)
        guard h.param == 0 else { throw CodecError("SignSGDCodec: parameter \(h.param) should be 0") }
        var scales = [Float]()
        for seg in 0 ..< layout.segments.count {
            let at = r.offset
            let x = try r.readFiniteFloat32("scale of '\(layout.segments[seg].name)'")
            guard x >= 0 else { throw CodecError("SignSGDCodec: negative scale \(x) for '\(layout.segments[seg].name)' at byte offset \(at)") }
            scales.append(x)
        }
        let n = layout.count
        var out = [Float](repeating: 0, count: n)
        try r.withBytes((n + 7) / 8, "\(n) sign bits") { bits in
            try BitPacking.checkPadding(bits, count: n, context: "SignSGDCodec")
            out.withUnsafeMutableBufferPointer { o in
                for seg in 0 ..< layout.segments.count {
                    let mu = scales[seg]
                    for i in layout.range(seg) { o[i] = BitPacking.sign(bits, i) * mu }
                }
            }
        }
        try r.expectEnd()
        return out
    }
}
