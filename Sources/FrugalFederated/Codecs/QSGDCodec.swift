/// QSGD: stochastic quantisation to s levels per tensor (Alistarh et al. 2017).
///
/// Formula, per tensor (segment) v with norm ‖v‖₂: r_i = |v_i| / ‖v‖₂ · s;
/// ℓ_i = ⌊r_i⌋ + 1 with probability r_i − ⌊r_i⌋, else ⌊r_i⌋ (so E[ℓ_i] = r_i);
/// decoded_i = sign(v_i) · ℓ_i · (‖v‖₂ / s), an unbiased estimate with |decoded_i − v_i| < ‖v‖₂ / s.
/// Randomness comes from the sender's `CodecState.rng`.
///
/// Coding of (ℓ, sign):
/// - `.fixed`: b + 1 bits per entry, b = bit width of s: ℓ in the low b bits, then the sign bit
///   (zero when ℓ = 0). Size: 16 + 4S + ⌈n(b+1)/8⌉ bytes (S = segment count).
/// - `.elias`: Elias-gamma code of ℓ + 1 (1 bit for ℓ = 0, 3 bits for ℓ = 1, 2, …), then a sign
///   bit when ℓ > 0. Size: 16 + 4S + ⌈Σ_i (2⌊log2(ℓ_i+1)⌋ + 1 + [ℓ_i > 0]) / 8⌉ bytes.
/// Header: param = s (1…65535); flags bit 4 = Elias coding. Payload: S float32 norms, then the
/// bit stream (LSB-first, zero-padded).
public struct QSGDCodec: UpdateCodec {
    public enum LevelCoding: Sendable { case fixed, elias }

    /// Number of quantisation levels s (1…65535).
    public var levels: Int
    public var coding: LevelCoding

    public init(levels: Int, coding: LevelCoding = .elias) {
        self.levels = levels
        self.coding = coding
    }

    public var codecID: CodecID { .qsgd }
    public var usesErrorFeedback: Bool { false }

    static let eliasFlag: UInt16 = 1 << 4

    /// 16 + 4S + ⌈n(b+1)/8⌉: exact for `.fixed`, the same figure for `.elias`.
    public func estimatedSize(_ layout: TensorLayout) -> Int {
        CodecHeader.size + 4 * layout.segments.count + (layout.count * (Self.levelBits(levels) + 1) + 7) / 8
    }

    /// Bit width b of the level field in `.fixed` coding.
    public static func levelBits(_ s: Int) -> Int { Int.bitWidth - s.leadingZeroBitCount }

    public func encode(_ update: [Float], layout: TensorLayout, state: inout CodecState) throws -> [UInt8] {
        guard levels >= 1 && levels <= 65535 else { throw CodecError("QSGDCodec: levels \(levels) outside 1...65535") }
        try layout.validate(update, "QSGDCodec input")
        let n = layout.count
        let s = levels
        let b = Self.levelBits(s)
        let nseg = layout.segments.count
        var norms = [Float](repeating: 0, count: nseg)
        var bw = BitWriter(capacityBits: coding == .fixed ? n * (b + 1) : 2 * n)
        var rng = state.rng
        update.withUnsafeBufferPointer { u in
            for seg in 0 ..< nseg {
                let range = layout.range(seg)
                let v = UnsafeBufferPointer(rebasing: u[range])
                let norm = l2Norm(v)
                norms[seg] = norm
                let invNorm: Float = norm > 0 ? min(1 / norm, .greatestFiniteMagnitude) : 0
                let fs = Float(s)
                for x in v {
                    // invNorm is finite (so 0·invNorm = 0) and min(·, 1) keeps r ≤ s even when a
                    // denormal norm makes |x|·invNorm overflow.
                    let r = min(abs(x) * invNorm, 1) * fs
                    var l = Int(r)
                    if rng.nextUnitFloat() < r - Float(l) { l += 1 }
                    l = min(l, s)
                    let neg: UInt32 = (x < 0 && l > 0) ? 1 : 0
                    switch coding {
                    case .fixed:
                        bw.write(UInt32(l) | neg << UInt32(b), bits: b + 1)
                    case .elias:
                        bw.writeGamma(UInt32(l + 1))
                        if l > 0 { bw.write(neg, bits: 1) }
                    }
                }
            }
        }
        state.rng = rng
        state.rounds += 1
        let bits = bw.finish()
        var w = ByteWriter(capacity: CodecHeader.size + 4 * nseg + bits.count)
        CodecHeader(codec: .qsgd, flags: coding == .elias ? Self.eliasFlag : 0, length: n,
                    segments: nseg, param: UInt32(s)).write(to: &w)
        for x in norms { w.writeFloat32(x) }
        w.writeBytes(bits)
        return w.bytes
    }

    public func decode(_ bytes: [UInt8], layout: TensorLayout) throws -> [Float] {
        var r = ByteReader(bytes, context: "QSGDCodec")
        let h = try CodecHeader.read(&r, expecting: .qsgd, layout: layout, allowedFlags: Self.eliasFlag)
        let s = Int(h.param)
        guard s >= 1 && s <= 65535 else { throw CodecError("QSGDCodec: levels \(s) outside 1...65535 in header") }
        let elias = h.flags & Self.eliasFlag != 0
        let b = Self.levelBits(s)
        let maxLog2 = Int.bitWidth - 1 - (s + 1).leadingZeroBitCount  // ⌊log2(s+1)⌋
        let nseg = layout.segments.count
        var norms = [Float]()
        for seg in 0 ..< nseg {
            let at = r.offset
            let x = try r.readFiniteFloat32("norm of '\(layout.segments[seg].name)'")
            guard x >= 0 else { throw CodecError("QSGDCodec: negative norm \(x) for '\(layout.segments[seg].name)' at byte offset \(at)") }
            norms.append(x)
        }
        var out = [Float](repeating: 0, count: layout.count)
        try r.withBytes(r.remaining, "level bits") { raw in
            var br = BitReader(raw, context: "QSGDCodec levels")
            var i = 0  // entry being read, for error messages
            do {
                try out.withUnsafeMutableBufferPointer { o in
                    for seg in 0 ..< nseg {
                        let scale = norms[seg] / Float(s)
                        let end = layout.offsets[seg + 1]
                        while i < end {
                            let l: Int
                            var neg = false
                            if elias {
                                l = Int(try br.readGamma(maxLog2: maxLog2, "level")) - 1
                                if l > 0 { neg = try br.read(bits: 1, "sign") == 1 }
                            } else {
                                let f = try br.read(bits: b + 1, "level")
                                l = Int(f & ((1 << UInt32(b)) - 1))
                                neg = f >> UInt32(b) == 1
                                if neg && l == 0 { throw CodecError("QSGDCodec: negative zero level") }
                            }
                            if l > s { throw CodecError("QSGDCodec: level \(l) > s = \(s)") }
                            let v = Float(l) * scale
                            o[i] = neg ? -v : v
                            i += 1
                        }
                    }
                }
            } catch let e as CodecError {
                throw CodecError("\(e.message) at entry \(layout.name(at: i))")
            }
            try br.expectEnd()
        }
        try r.expectEnd()
        return out
    }
}

/// ‖v‖₂ with SIMD8 accumulators; recomputed with scaling when the fast sum overflows.
func l2Norm(_ v: UnsafeBufferPointer<Float>) -> Float {
    let n = v.count
    var acc0 = SIMD8<Float>(), acc1 = SIMD8<Float>()
    var i = 0
    if let p = v.baseAddress {
        let raw = UnsafeRawPointer(p)
        while i + 16 <= n {
            let a = raw.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self)
            let c = raw.loadUnaligned(fromByteOffset: 4 * i + 32, as: SIMD8<Float>.self)
            acc0.addProduct(a, a)
            acc1.addProduct(c, c)
            i += 16
        }
    }
    var total = (acc0 + acc1).sum()
    while i < n { total += v[i] * v[i]; i += 1 }
    let norm = total.squareRoot()
    if norm.isFinite && total >= Float.leastNormalMagnitude * 1e6 { return norm }
    // Overflow or underflow: scale by the largest magnitude.
    var m: Float = 0
    for x in v { m = max(m, abs(x)) }
    if m == 0 { return 0 }
    var t: Double = 0
    for x in v { let y = Double(x / m); t += y * y }
    return Float(Double(m) * t.squareRoot())
}
