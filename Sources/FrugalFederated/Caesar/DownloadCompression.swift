// Caesar's staleness-aware download compression (the server → device direction).
//
// Ratio. Device i last synchronised δ_i rounds ago; at round t its download compression ratio is
//     θ_d,i = (1 − min(δ_i, t) / t) · θ_d,max
// θ is the fraction of entries *compressed* (sent as 1-bit signs): the more stale a device, the
// smaller θ, so a stale device receives more entries exactly and starts training from a precise
// model. Choices where the formula is silent: δ_i > t is capped to t (θ = 0); a device that never
// synchronised (no stale copy, `staleness: nil`) or any t ≤ 0 gets θ = 0, i.e. a dense download;
// δ_i ≤ 0 (the device already holds the current model) gets θ_d,max. θ_d,max defaults to 0.5
// as published; the project's reference reconstruction found ~0.9 works better.
//
// Operator. With Δ = global − stale (stale = the copy the device holds, which the server mirrors
// by decoding what it sent), the k = n − round(θ·n) entries of largest |Δ| are sent exactly:
// positions in the smallest `PositionCoding`, values as float32 *global* entries (bit-exact
// rebuild) or as float16 *differences* Δ (rebuilt as stale + fp16(Δ), which keeps relative
// precision on the small difference). Each remaining ("compressed") entry costs one sign bit, and
// every tensor carries two float32 scalars over its compressed entries: mean |x| and max |x|.
//
// Rebuild. systems.md says: "the device rebuilds each compressed entry from its own stale copy
// when the sign matches and |stale| ≤ max, else sign · mean". We read x as the *global model
// entry* (not the difference): for compressed entry i of tensor s with sent sign σ_i = sign(global_i),
//     rebuilt_i = stale_i          if sign(stale_i) = σ_i and |stale_i| ≤ max_s
//               = σ_i · mean_s     otherwise,
// with mean_s, max_s = mean and max of |global_i| over tensor s's compressed entries; sign(0) = +.
// This reading is coherent: an entry outside the top-k changed little, so the stale value is a
// good estimate unless its sign or magnitude contradicts what the server knows. That is
// `Reconstruction.literal` (the default).
// The alternative `Reconstruction.differenceSign` treats x as the difference Δ:
//     σ_i = sign(Δ_i),  rebuilt_i = stale_i + σ_i · mean_s(|Δ|)
// (a scaled-sign step from the stale copy; max_s is sent but unused). Both travel in the same
// format; flag bit 5 says which rule the decoder applies.
//
// Stream (codec id 7): header (param = k exact entries; flags bits 0–1 position coding, bit 2
// float16 values, bit 5 differenceSign), positions, k values, S × (mean f32, max f32), then
// ⌈(n − k)/8⌉ bytes of sign bits for the compressed entries in index order (1 = negative).
// Size: 16 + P + 4k (2k for float16) + 8S + ⌈(n − k)/8⌉ bytes.

/// Caesar's staleness-aware download compression of the global model for one device.
///
///     let dl = DownloadCompression(thetaMax: 0.9)
///     let theta = dl.ratio(staleness: 3, round: 10)                  // 0.63
///     let bytes = try dl.encode(global: w, stale: copyOfDevice, ratio: theta, layout: layout)
///     let model = try DownloadCompression.decode(bytes, stale: copyOfDevice, layout: layout)
public struct DownloadCompression: Sendable {
    /// How a device rebuilds the sign-coded entries (see the file comment).
    public enum Reconstruction: Sendable, Equatable {
        /// stale_i if sign(stale_i) = sign(global_i) and |stale_i| ≤ max_s, else sign(global_i) · mean_s.
        case literal
        /// stale_i + sign(Δ_i) · mean_s |Δ|.
        case differenceSign
    }

    /// Upper bound θ_d,max of the compressed fraction (default 0.5).
    public var thetaMax: Double
    /// Encoding of the exactly-sent entries.
    public var values: ValueEncoding
    public var reconstruction: Reconstruction

    public init(thetaMax: Double = 0.5, values: ValueEncoding = .float32, reconstruction: Reconstruction = .literal) {
        self.thetaMax = thetaMax
        self.values = values
        self.reconstruction = reconstruction
    }

    static let fp16Flag: UInt16 = 1 << 2
    static let differenceFlag: UInt16 = 1 << 5

    /// θ_d,i = (1 − min(δ, t)/t) · θ_d,max; 0 (dense) when `staleness` is nil or t ≤ 0.
    public static func ratio(staleness: Int?, round t: Int, thetaMax: Double) -> Double {
        guard let delta = staleness, t > 0 else { return 0 }
        let d = Double(min(max(delta, 0), t))
        return (1 - d / Double(t)) * thetaMax
    }

    /// θ_d,i with this configuration's θ_d,max.
    public func ratio(staleness: Int?, round t: Int) -> Double {
        Self.ratio(staleness: staleness, round: t, thetaMax: thetaMax)
    }

    /// Number of sign-coded entries for compressed fraction θ out of n: round(θ · n).
    public static func compressedCount(ratio theta: Double, n: Int) -> Int {
        min(n, max(0, Int((theta * Double(n)).rounded())))
    }

    /// Stream size for k exact entries out of n with `positionBytes` of positions and S tensors.
    public static func encodedSize(n: Int, k: Int, segments: Int, positionBytes: Int, values: ValueEncoding) -> Int {
        CodecHeader.size + positionBytes + k * values.bytesPerValue + 8 * segments + (n - k + 7) / 8
    }

    /// Planned stream size for compressed fraction θ (positions estimated as evenly spread).
    public func estimatedSize(ratio theta: Double, layout: TensorLayout) -> Int {
        let n = layout.count
        let k = n - Self.compressedCount(ratio: theta, n: n)
        return Self.encodedSize(n: n, k: k, segments: layout.segments.count,
                                positionBytes: estimatedPositionBytes(k: k, n: n), values: values)
    }

    /// Compresses `global` for a device holding `stale` (nil: never synchronised, then θ must
    /// make the download dense) with compressed fraction `theta` ∈ [0, 1].
    public func encode(global: [Float], stale: [Float]?, ratio theta: Double, layout: TensorLayout) throws -> [UInt8] {
        try checkRatio(theta, "DownloadCompression")
        try layout.validate(global, "DownloadCompression global model")
        if let stale { try layout.validate(stale, "DownloadCompression stale copy") }
        let n = layout.count
        let nseg = layout.segments.count
        let compressed = stale == nil ? 0 : Self.compressedCount(ratio: theta, n: n)
        let k = n - compressed
        let ref = stale ?? [Float](repeating: 0, count: n)

        var delta = [Float](repeating: 0, count: n)
        delta.withUnsafeMutableBufferPointer { d in
            global.withUnsafeBufferPointer { g in
                ref.withUnsafeBufferPointer { s in
                    for i in 0 ..< n { d[i] = g[i] - s[i] }
                }
            }
        }
        if let bad = FloatScan.firstNonFinite(delta) {
            throw CodecError("DownloadCompression: difference overflows at \(layout.name(at: bad))")
        }
        let positions = delta.withUnsafeBufferPointer { TopK.select($0, k: k) }
        var exact = [Float](repeating: 0, count: k)
        for (j, p) in positions.enumerated() {
            exact[j] = values == .float32 ? global[Int(p)] : Float(Float16(delta[Int(p)]))
        }
        if let bad = exact.firstIndex(where: { !$0.isFinite }) {
            throw CodecError("DownloadCompression: difference at \(layout.name(at: Int(positions[bad]))) overflows float16")
        }
        // x = global entries (literal) or differences: per-tensor mean/max |x| over compressed
        // entries, and their sign bits.
        let x = reconstruction == .literal ? global : delta
        let exactMask = Self.mask(positions, n: n)
        var means = [Float](repeating: 0, count: nseg)
        var maxes = [Float](repeating: 0, count: nseg)
        // Sign bits gathered 64 at a time in a register (a read-modify-write of the same byte
        // every entry would serialise the loop), stored as little-endian words.
        var signWords = [UInt64](repeating: 0, count: compressed / 64 + 1)
        x.withUnsafeBufferPointer { xb in
            exactMask.withUnsafeBufferPointer { mb in
                signWords.withUnsafeMutableBufferPointer { sw in
                    var c = 0        // compressed entries so far
                    var word: UInt64 = 0
                    for seg in 0 ..< nseg {
                        var total: Double = 0
                        var m: Float = 0
                        let c0 = c
                        for i in layout.range(seg) {
                            // branch-free: keep = 1 for a compressed entry, 0 for an exact one
                            let keep = 1 - Int(mb[i])
                            let v = xb[i]
                            let a = Float(bitPattern: v.bitPattern & 0x7FFF_FFFF & (0 &- UInt32(keep)))
                            total += Double(a)
                            m = max(m, a)
                            word |= UInt64(keep & (v < 0 ? 1 : 0)) << UInt64(c & 63)
                            c += keep
                            if c & 63 == 0 && keep == 1 {
                                sw[(c >> 6) - 1] = word
                                word = 0
                            }
                        }
                        let count = c - c0
                        means[seg] = count > 0 ? Float(total / Double(count)) : 0
                        maxes[seg] = m
                    }
                    sw[c >> 6] = word
                }
            }
        }
        var signs = [UInt8](repeating: 0, count: (compressed + 7) / 8)
        signs.withUnsafeMutableBytes { out in
            signWords.withUnsafeBytes { words in
                for b in 0 ..< out.count { out[b] = UInt8(truncatingIfNeeded: UInt64(littleEndian: words.loadUnaligned(fromByteOffset: b & ~7, as: UInt64.self)) >> UInt64(8 * (b & 7))) }
            }
        }

        let (coding, posBytes) = k == n ? (PositionCoding.all, 0) : bestCoding(positions, n: n)
        var w = ByteWriter(capacity: Self.encodedSize(n: n, k: k, segments: nseg, positionBytes: posBytes, values: values))
        var flags = UInt16(coding.rawValue)
        if values == .float16 { flags |= Self.fp16Flag }
        if reconstruction == .differenceSign { flags |= Self.differenceFlag }
        CodecHeader(codec: .caesarDownload, flags: flags, length: n, segments: nseg, param: UInt32(k)).write(to: &w)
        positions.withUnsafeBufferPointer { coding.encode($0, n: n, into: &w) }
        exact.withUnsafeBufferPointer { w.writeFloats($0, as: values) }
        for seg in 0 ..< nseg {
            w.writeFloat32(means[seg])
            w.writeFloat32(maxes[seg])
        }
        w.writeBytes(signs)
        return w.bytes
    }

    /// Compresses with θ from the device's staleness (nil: never synchronised → dense).
    public func encode(global: [Float], stale: [Float]?, staleness: Int?, round t: Int, layout: TensorLayout) throws -> [UInt8] {
        try encode(global: global, stale: stale, ratio: ratio(staleness: staleness, round: t), layout: layout)
    }

    /// One byte per entry: 1 where the entry is sent exactly.
    static func mask(_ positions: [Int32], n: Int) -> [UInt8] {
        var m = [UInt8](repeating: 0, count: n)
        m.withUnsafeMutableBufferPointer { mb in
            for p in positions { mb[Int(p)] = 1 }
        }
        return m
    }

    /// Rebuilds the model on the device from its `stale` copy (nil allowed only for dense
    /// streams). The server calls the same function to mirror what the device now holds.
    public static func decode(_ bytes: [UInt8], stale: [Float]?, layout: TensorLayout) throws -> [Float] {
        var r = ByteReader(bytes, context: "DownloadCompression")
        let h = try CodecHeader.read(&r, expecting: .caesarDownload, layout: layout,
                                     allowedFlags: 0x3 | fp16Flag | differenceFlag)
        let n = layout.count
        let nseg = layout.segments.count
        guard Int(h.param) <= n else { throw CodecError("DownloadCompression: k = \(h.param) exceeds n = \(n)") }
        let k = Int(h.param)
        let compressed = n - k
        if let stale { try layout.validate(stale, "DownloadCompression stale copy") }
        if stale == nil && compressed > 0 {
            throw CodecError("DownloadCompression: stream sign-codes \(compressed) entries but the device has no stale copy")
        }
        let coding = PositionCoding(rawValue: UInt8(h.flags & 0x3))!
        let positions = try coding.decode(count: k, n: n, from: &r)
        let enc: ValueEncoding = h.flags & fp16Flag != 0 ? .float16 : .float32
        let literal = h.flags & differenceFlag == 0
        var exact = [Float](repeating: 0, count: k)
        try exact.withUnsafeMutableBufferPointer { try r.readFloats(into: $0, as: enc, "exact entries") }
        var means = [Float](), maxes = [Float]()
        for seg in 0 ..< nseg {
            let name = layout.segments[seg].name
            let at = r.offset
            let mean = try r.readFiniteFloat32("mean |x| of '\(name)'")
            let mx = try r.readFiniteFloat32("max |x| of '\(name)'")
            guard mean >= 0, mx >= 0 else {
                throw CodecError("DownloadCompression: negative scalar for '\(name)' at byte offset \(at)")
            }
            means.append(mean)
            maxes.append(mx)
        }
        var out = stale ?? [Float](repeating: 0, count: n)
        let exactMask = mask(positions, n: n)
        exact.append(0)  // spare slot: the branch-free loop reads exact[j] past the last one
        try r.withBytes((compressed + 7) / 8, "\(compressed) sign bits") { raw in
            try BitPacking.checkPadding(raw, count: compressed, context: "DownloadCompression")
            var bits = [UInt8](raw)
            bits.append(0)   // spare byte for the same reason
            out.withUnsafeMutableBufferPointer { o in
                exactMask.withUnsafeBufferPointer { mb in
                    exact.withUnsafeBufferPointer { eb in
                        bits.withUnsafeBufferPointer { sb in
                            var j = 0, c = 0
                            let addExact = enc == .float16   // fp16 carries Δ, fp32 the global value
                            for seg in 0 ..< nseg {
                                let mean = means[seg], mx = maxes[seg]
                                // ±mean and the max as bit patterns for branch-free selects
                                let meanBits = abs(mean).bitPattern, maxBits = abs(mx).bitPattern
                                let range = layout.range(seg)
                                // Two copies of the loop so that the rule is not tested per entry.
                                if literal {
                                    for i in range {
                                        let exactMaskBits = 0 &- UInt32(mb[i])        // all ones if exact
                                        let neg = UInt32((sb[c >> 3] >> UInt8(c & 7)) & 1)
                                        let signedMean = meanBits | neg << 31
                                        let st = o[i]
                                        let stBits = st.bitPattern
                                        let stAbs = stBits & 0x7FFF_FFFF
                                        // sign(stale) with 0 and −0 counted as +: sign bit and "nonzero"
                                        let stNeg = (stBits >> 31) & ((stAbs | (0 &- stAbs)) >> 31)
                                        // |stale| ≤ max: magnitudes of finite floats compare like their bits
                                        let small = UInt32(truncatingIfNeeded: 1 &+ ((Int64(maxBits) - Int64(stAbs)) >> 63))
                                        let keepMask = 0 &- ((1 ^ (stNeg ^ neg)) & small)
                                        let rebuilt = (stBits & keepMask) | (signedMean & ~keepMask)
                                        let e = eb[j]
                                        let exactValue = addExact ? st + e : e
                                        o[i] = Float(bitPattern: (exactValue.bitPattern & exactMaskBits) | (rebuilt & ~exactMaskBits))
                                        let isExact = Int(mb[i])
                                        j += isExact
                                        c += 1 - isExact
                                    }
                                } else {
                                    for i in range {
                                        let exactMaskBits = 0 &- UInt32(mb[i])
                                        let neg = UInt32((sb[c >> 3] >> UInt8(c & 7)) & 1)
                                        let st = o[i]
                                        let rebuilt = st + Float(bitPattern: meanBits | neg << 31)
                                        let e = eb[j]
                                        let exactValue = addExact ? st + e : e
                                        o[i] = Float(bitPattern: (exactValue.bitPattern & exactMaskBits) | (rebuilt.bitPattern & ~exactMaskBits))
                                        let isExact = Int(mb[i])
                                        j += isExact
                                        c += 1 - isExact
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        try r.expectEnd()
        if let bad = FloatScan.firstNonFinite(out) {
            throw CodecError("DownloadCompression: rebuilt value overflows at \(layout.name(at: bad))")
        }
        return out
    }
}
