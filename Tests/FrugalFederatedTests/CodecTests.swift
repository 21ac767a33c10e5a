import Testing
@testable import FrugalFederated
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Helpers

private func randomVector(_ n: Int, seed: UInt64, scale: Float = 1) -> [Float] {
    var rng = SplitMix64(seed: seed)
    return (0 ..< n).map { _ in (rng.nextUnitFloat() * 2 - 1) * scale }
}

private let smallLayout = try! TensorLayout([("w", 37), ("b", 5), ("empty", 0), ("v", 22)])

/// Reference top-k: indices sorted by |x| descending, ties by lower index.
private func referenceTopK(_ x: [Float], _ k: Int) -> [Int] {
    Array(x.indices.sorted { abs(x[$0]) != abs(x[$1]) ? abs(x[$0]) > abs(x[$1]) : $0 < $1 }.prefix(k)).sorted()
}

private func allCodecs() -> [any UpdateCodec] {
    [DenseCodec(), DenseCodec(values: .float16),
     TopKCodec(ratio: 0.1), TopKCodec(ratio: 0.5, values: .float16), TopKCodec(ratio: 1), TopKCodec(ratio: 0),
     RandomKCodec(ratio: 0.2), RandomKCodec(ratio: 0.3, scaled: false, values: .float16, errorFeedback: true),
     QSGDCodec(levels: 1), QSGDCodec(levels: 4, coding: .fixed), QSGDCodec(levels: 255, coding: .elias),
     QSGDCodec(levels: 65535, coding: .elias), QSGDCodec(levels: 5, coding: .fixed),
     SignSGDCodec(), SignSGDCodec(errorFeedback: false),
     STCCodec(ratio: 0.1), STCCodec(ratio: 0.7)]
}

private func approxEqual(_ a: [Float], _ b: [Float], tol: Float) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= tol }
}

// MARK: - Wire

@Test func byteWriterReaderRoundTrip() throws {
    var w = ByteWriter()
    w.writeU8(0xAB)
    w.writeU16(0x1234)
    w.writeU32(0xDEAD_BEEF)
    w.writeU64(0x0102_0304_0506_0708)
    w.writeFloat32(-1.5)
    for v: UInt64 in [0, 1, 127, 128, 300, 1 << 35, .max] { w.writeVarint(v) }
    // little-endian layout
    #expect(Array(w.bytes[1 ..< 3]) == [0x34, 0x12])
    #expect(Array(w.bytes[3 ..< 7]) == [0xEF, 0xBE, 0xAD, 0xDE])
    // varint 300 = 0b1_0010_1100 -> AC 02
    var v = ByteWriter()
    v.writeVarint(300)
    #expect(v.bytes == [0xAC, 0x02])

    var r = ByteReader(w.bytes)
    #expect(try r.readU8("a") == 0xAB)
    #expect(try r.readU16("b") == 0x1234)
    #expect(try r.readU32("c") == 0xDEAD_BEEF)
    #expect(try r.readU64("d") == 0x0102_0304_0506_0708)
    #expect(try r.readFiniteFloat32("e") == -1.5)
    for e: UInt64 in [0, 1, 127, 128, 300, 1 << 35, .max] { #expect(try r.readVarint("v") == e) }
    try r.expectEnd()
    let err = #expect(throws: CodecError.self) { _ = try r.readU32("the thing") }
    #expect(err?.message.contains("the thing") == true)
    #expect(err?.message.contains("offset \(w.bytes.count)") == true)
}

@Test func byteReaderRejectsBadInput() {
    // overlong varint (11 continuation bytes) and 64-bit overflow
    var r1 = ByteReader([UInt8](repeating: 0xFF, count: 11))
    #expect(throws: CodecError.self) { _ = try r1.readVarint("v") }
    var r2 = ByteReader([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02])
    #expect(throws: CodecError.self) { _ = try r2.readVarint("v") }
    var r3 = ByteReader([0x80])
    #expect(throws: CodecError.self) { _ = try r3.readVarint("v") }
    // NaN float
    var r4 = ByteReader([0x00, 0x00, 0xC0, 0x7F])
    #expect(throws: CodecError.self) { _ = try r4.readFiniteFloat32("x") }
    // trailing bytes
    var r5 = ByteReader([1, 2])
    _ = try? r5.readU8("x")
    #expect(throws: CodecError.self) { try r5.expectEnd() }
}

@Test func bitPackingKnownBytesAndRoundTrip() throws {
    // 2-bit values 1, 2, 3 LSB-first: 01 | 10<<2 | 11<<4 = 0b111001
    #expect(BitPacking.pack([1, 2, 3], bits: 2) == [0b0011_1001])
    var rng = SplitMix64(seed: 7)
    for bits in [1, 3, 7, 8, 13, 16, 31, 32] {
        let mask: UInt64 = bits == 32 ? 0xFFFF_FFFF : (1 << UInt64(bits)) - 1
        let values = (0 ..< 101).map { _ in UInt32(rng.next() & mask) }
        let packed = BitPacking.pack(values, bits: bits)
        #expect(packed.count == (101 * bits + 7) / 8)
        #expect(try BitPacking.unpack(packed, count: 101, bits: bits) == values)
        #expect(throws: CodecError.self) { _ = try BitPacking.unpack(Array(packed.dropLast()), count: 101, bits: bits) }
    }
    // signs: bit = 1 for negative; zero and -0 are positive
    let x: [Float] = [1, -1, 0, -0.0, -3, 2, 2, 2, -5]
    var out = [UInt8](repeating: 0, count: 2)
    out.withUnsafeMutableBytes { o in x.withUnsafeBufferPointer { BitPacking.packSigns($0, into: o) } }
    #expect(out == [0b0001_0010, 0b1])
}

@Test func eliasGammaRoundTrip() throws {
    var w = BitWriter()
    let values: [UInt32] = [1, 2, 3, 4, 7, 8, 255, 256, 65535, 65536, 1, 1]
    for v in values { w.writeGamma(v) }
    let bits = values.map { 2 * (31 - $0.leadingZeroBitCount) + 1 }.reduce(0, +)
    #expect(w.bitCount == bits)
    let bytes = w.finish()
    // gamma(1) = "1", gamma(2) = "0 1 0": first byte begins 1, 0,1,0 (LSB-first)
    #expect(bytes[0] & 0b1111 == 0b0101)
    try bytes.withUnsafeBytes { raw in
        var r = BitReader(raw, context: "t")
        for v in values { #expect(try r.readGamma(maxLog2: 16) == v) }
        try r.expectEnd()
    }
    // too many leading zeros is corrupt, a cut stream is truncated
    [UInt8](repeating: 0, count: 8).withUnsafeBytes { raw in
        var r = BitReader(raw, context: "t")
        let e = #expect(throws: CodecError.self) { _ = try r.readGamma(maxLog2: 16) }
        #expect(e?.message.contains("corrupt") == true)
    }
    // bits 0,0,1,0,0 | 0,0,0: gamma(4) = "001" + "00", then three zero bits with no terminating one
    [UInt8]([0b0000_0100]).withUnsafeBytes { raw in
        var r = BitReader(raw, context: "t")
        #expect((try? r.readGamma(maxLog2: 16)) == 4)
        let e = #expect(throws: CodecError.self) { _ = try r.readGamma(maxLog2: 16) }
        #expect(e?.message.contains("truncated") == true)
    }
}

@Test func positionCodingSizesAndRoundTrip() throws {
    let n = 100
    let pos: [Int32] = [0, 3, 99]
    try pos.withUnsafeBufferPointer { p in
        #expect(PositionCoding.index32.size(of: p, n: n) == 12)
        #expect(PositionCoding.bitmap.size(of: p, n: n) == 13)
        #expect(PositionCoding.deltaVarint.size(of: p, n: n) == 3)  // gaps 0, 2, 95
        #expect(PositionCoding.all.size(of: p, n: n) == nil)
        #expect(PositionCoding.best(for: p, n: n) == (.deltaVarint, 3))
        for c in [PositionCoding.index32, .bitmap, .deltaVarint] {
            var w = ByteWriter()
            c.encode(p, n: n, into: &w)
            #expect(w.count == c.size(of: p, n: n))
            var r = ByteReader(w.bytes)
            #expect(try c.decode(count: 3, n: n, from: &r) == pos)
            try r.expectEnd()
        }
    }
    // bitmap bytes by hand: n = 20, positions 0, 3, 19
    var w = ByteWriter()
    [Int32(0), 3, 19].withUnsafeBufferPointer { PositionCoding.bitmap.encode($0, n: 20, into: &w) }
    #expect(w.bytes == [0b0000_1001, 0, 0b0000_1000])
    // estimates
    #expect(PositionCoding.best(k: 1, n: 1000) == .deltaVarint)
    #expect(PositionCoding.best(k: 500, n: 1000) == .bitmap)
    #expect(PositionCoding.best(k: 1000, n: 1000) == .all)
    #expect(PositionCoding.best(k: 3, n: 1 << 30) == .index32 || PositionCoding.best(k: 3, n: 1 << 30) == .deltaVarint)
    // random sets: every coding round-trips
    var rng = SplitMix64(seed: 3)
    for trial in 0 ..< 20 {
        let n = 1 + Int(rng.nextBelow(500))
        let k = Int(rng.nextBelow(UInt64(n + 1)))
        let p = RandomKCodec.positions(seed: UInt64(trial), k: k, n: n)
        for c in PositionCoding.allCases where c != .all || k == n {
            var w = ByteWriter()
            p.withUnsafeBufferPointer { c.encode($0, n: n, into: &w) }
            var r = ByteReader(w.bytes)
            #expect(try c.decode(count: k, n: n, from: &r) == p)
            #expect(r.remaining == 0)
        }
    }
}

@Test func positionCodingRejectsCorruptInput() {
    // index32: not increasing / out of range
    var w = ByteWriter()
    w.writeU32(5); w.writeU32(5)
    var r = ByteReader(w.bytes)
    #expect(throws: CodecError.self) { _ = try PositionCoding.index32.decode(count: 2, n: 10, from: &r) }
    var w2 = ByteWriter()
    w2.writeU32(10)
    var r2 = ByteReader(w2.bytes)
    #expect(throws: CodecError.self) { _ = try PositionCoding.index32.decode(count: 1, n: 10, from: &r2) }
    // bitmap: wrong popcount, bits beyond n
    var r3 = ByteReader([0b0000_0111])
    #expect(throws: CodecError.self) { _ = try PositionCoding.bitmap.decode(count: 2, n: 8, from: &r3) }
    var r4 = ByteReader([0b1000_0001])
    #expect(throws: CodecError.self) { _ = try PositionCoding.bitmap.decode(count: 2, n: 7, from: &r4) }
    // delta: runs past n
    var r5 = ByteReader([3, 3])
    #expect(throws: CodecError.self) { _ = try PositionCoding.deltaVarint.decode(count: 2, n: 6, from: &r5) }
    // k > n
    var r6 = ByteReader([])
    #expect(throws: CodecError.self) { _ = try PositionCoding.all.decode(count: 3, n: 2, from: &r6) }
}

@Test func float16Encoding() throws {
    let x: [Float] = [0, 1, -2.5, 1.3, 65504, 1e-8]
    var w = ByteWriter()
    x.withUnsafeBufferPointer { w.writeFloats($0, as: .float16) }
    #expect(w.count == 12)
    var r = ByteReader(w.bytes)
    var back = [Float](repeating: 0, count: x.count)
    try back.withUnsafeMutableBufferPointer { try r.readFloats(into: $0, as: .float16, "v") }
    #expect(back == x.map { Float(Float16($0)) })
    #expect(back[3] == 1.2998047)
}

// MARK: - Round trips and sizes

@Test func denseRoundTripAndSize() throws {
    let layout = smallLayout
    let u = randomVector(layout.count, seed: 1, scale: 3)
    let bytes = try DenseCodec().encode(u, layout: layout)
    #expect(bytes.count == 16 + 4 * layout.count)
    #expect(try DenseCodec().decode(bytes, layout: layout) == u)
    let h = try DenseCodec(values: .float16).encode(u, layout: layout)
    #expect(h.count == 16 + 2 * layout.count)
    #expect(try DenseCodec().decode(h, layout: layout) == u.map { Float(Float16($0)) })
    // float16 overflow is an error, not an infinity on the wire
    var big = u
    big[3] = 70000
    #expect(throws: CodecError.self) { _ = try DenseCodec(values: .float16).encode(big, layout: layout) }
}

@Test func topKSendsTheKLargestAndSizeMatches() throws {
    let layout = try TensorLayout([("a", 600), ("b", 400)])
    let u = randomVector(1000, seed: 2)
    for (ratio, coding) in [(0.3, PositionCoding.bitmap), (0.01, .deltaVarint), (0.1, .deltaVarint)] {
        let codec = TopKCodec(ratio: ratio, errorFeedback: false)
        let bytes = try codec.encode(u, layout: layout)
        let k = keptCount(ratio: ratio, n: 1000)
        let decoded = try codec.decode(bytes, layout: layout)
        let top = Set(referenceTopK(u, k))
        for i in 0 ..< 1000 { #expect(decoded[i] == (top.contains(i) ? u[i] : 0)) }
        let header = try CodecHeader.peek(bytes)
        #expect(Int(header.param) == k)
        #expect(PositionCoding(rawValue: UInt8(header.flags & 3)) == coding)
        let posBytes = top.sorted().map { Int32($0) }.withUnsafeBufferPointer { coding.size(of: $0, n: 1000)! }
        #expect(bytes.count == 16 + posBytes + 4 * k)
        if coding == .bitmap { #expect(bytes.count == 16 + 1000 / 8 + 4 * k) }
    }
    // ties go to the lower index
    let tied: [Float] = [1, -2, 2, 0.5, -2]
    let d = try TopKCodec(ratio: 0.4, errorFeedback: false).decode(
        try TopKCodec(ratio: 0.4, errorFeedback: false).encode(tied, layout: .flat(5)), layout: .flat(5))
    #expect(d == [0, -2, 2, 0, 0])
    // fp16 values
    let f = TopKCodec(ratio: 0.3, values: .float16, errorFeedback: false)
    let fb = try f.encode(u, layout: layout)
    let fd = try f.decode(fb, layout: layout)
    let top = Set(referenceTopK(u, 300))
    for i in 0 ..< 1000 { #expect(fd[i] == (top.contains(i) ? Float(Float16(u[i])) : 0)) }
    #expect(fb.count == 16 + 125 + 2 * 300)
    // decodeAdd equals decode scaled
    var acc = [Float](repeating: 1, count: 1000)
    try f.decodeAdd(fb, layout: layout, weight: 0.5, into: &acc)
    #expect(acc == fd.map { 1 + 0.5 * $0 })
}

@Test func topKSelectionMatchesReferenceWithTies() {
    var rng = SplitMix64(seed: 31)
    for trial in 0 ..< 60 {
        let n = 1 + Int(rng.nextBelow(300))
        // few distinct magnitudes (many ties), both signs, zeros, −0 and denormals
        let palette: [Float] = [0, -0.0, 1e-40, -1e-40, 0.5, -0.5, 2, -2, 3.25, 1e30, -1e30]
        let x = (0 ..< n).map { _ in trial % 2 == 0 ? palette[Int(rng.nextBelow(UInt64(palette.count)))] : rng.nextUnitFloat() - 0.5 }
        for k in [0, 1, n / 3, n / 2, n - 1, n] where k >= 0 {
            let got = x.withUnsafeBufferPointer { TopK.select($0, k: k) }.map { Int($0) }
            #expect(got == referenceTopK(x, k), "trial \(trial) n \(n) k \(k)")
        }
    }
}

@Test func bestPositionCodingIsTheSmallest() {
    var rng = SplitMix64(seed: 8)
    for trial in 0 ..< 100 {
        let n = 1 + Int(rng.nextBelow(5000))
        let k = Int(rng.nextBelow(UInt64(n + 1)))
        let p = RandomKCodec.positions(seed: UInt64(trial), k: k, n: n)
        p.withUnsafeBufferPointer { pb in
            let best = PositionCoding.best(for: pb, n: n)
            let sizes = PositionCoding.allCases.compactMap { $0.size(of: pb, n: n) }
            #expect(best.size == sizes.min())
            #expect(best.coding.size(of: pb, n: n) == best.size)
        }
    }
}

@Test func failedEncodeLeavesStateUnchanged() throws {
    let layout = try TensorLayout.flat(4)
    let codec = TopKCodec(ratio: 0.5, values: .float16)
    var state = CodecState(seed: 1)
    _ = try codec.encode([1, 2, 3, 4], layout: layout, state: &state)
    let before = state.residual
    #expect(throws: CodecError.self) { _ = try codec.encode([1, 2, 1e6, 4], layout: layout, state: &state) }
    #expect(state.residual == before && state.rounds == 1)
    // a state from another layout is rejected
    #expect(throws: CodecError.self) { _ = try codec.encode([1, 2, 3, 4, 5], layout: .flat(5), state: &state) }
}

@Test func randomKPositionsFromSeedAndScaling() throws {
    let layout = try TensorLayout.flat(500)
    let u = randomVector(500, seed: 4)
    let codec = RandomKCodec(ratio: 0.1)
    var state = CodecState(seed: 99)
    let bytes = try codec.encode(u, layout: layout, state: &state)
    #expect(bytes.count == 16 + 8 + 4 * 50)
    var r = ByteReader(bytes)
    r = ByteReader(Array(bytes[16 ..< 24]))
    let seed = try r.readU64("seed")
    let pos = RandomKCodec.positions(seed: seed, k: 50, n: 500)
    #expect(pos.count == 50 && Set(pos).count == 50 && pos == pos.sorted() && pos.allSatisfy { $0 >= 0 && $0 < 500 })
    let decoded = try codec.decode(bytes, layout: layout)
    let chosen = Set(pos.map(Int.init))
    for i in 0 ..< 500 { #expect(decoded[i] == (chosen.contains(i) ? u[i] * 10 : 0)) }
    // a new seed each round
    let bytes2 = try codec.encode(u, layout: layout, state: &state)
    #expect(Array(bytes2[16 ..< 24]) != Array(bytes[16 ..< 24]))
    // unbiased: every position is selected about k/n of the time
    var hits = [Int](repeating: 0, count: 20)
    for s in 0 ..< 4000 { for p in RandomKCodec.positions(seed: UInt64(s), k: 5, n: 20) { hits[Int(p)] += 1 } }
    #expect(hits.allSatisfy { abs($0 - 1000) < 120 })  // expected 1000, sd ≈ 27
}

@Test func qsgdLevelsAreNeighboursAndSizesMatch() throws {
    let layout = smallLayout
    let u = randomVector(layout.count, seed: 5, scale: 2)
    for s in [1, 3, 4, 255] {
        var s1 = CodecState(seed: 11), s2 = CodecState(seed: 11)
        let fixed = try QSGDCodec(levels: s, coding: .fixed).encode(u, layout: layout, state: &s1)
        let elias = try QSGDCodec(levels: s, coding: .elias).encode(u, layout: layout, state: &s2)
        let df = try QSGDCodec(levels: s, coding: .fixed).decode(fixed, layout: layout)
        let de = try QSGDCodec(levels: s).decode(elias, layout: layout)
        #expect(df == de)  // same randomness, same levels, different bits
        let b = QSGDCodec.levelBits(s)
        #expect(fixed.count == 16 + 4 * layout.segments.count + (layout.count * (b + 1) + 7) / 8)
        var eliasBits = 0
        for seg in 0 ..< layout.segments.count {
            let range = layout.range(seg)
            let norm = Float(range.map { Double(u[$0]) * Double(u[$0]) }.reduce(0, +).squareRoot())
            for i in range {
                // decoded = sign · ℓ · norm / s with ℓ = ⌊r⌋ or ⌈r⌉
                let r = abs(u[i]) / norm * Float(s)
                let l = (abs(df[i]) / (norm / Float(s))).rounded()
                #expect(l >= r.rounded(.down) - 1e-3 && l <= r.rounded(.up) + 1e-3, "entry \(i)")
                #expect(abs(df[i] - u[i]) <= norm / Float(s) * 1.0001, "entry \(i)")
                #expect(df[i] == 0 || (df[i] < 0) == (u[i] < 0))
                let li = Int(l)
                eliasBits += 2 * (Int.bitWidth - 1 - (li + 1).leadingZeroBitCount) + 1 + (li > 0 ? 1 : 0)
            }
        }
        #expect(elias.count == 16 + 4 * layout.segments.count + (eliasBits + 7) / 8)
    }
    // unbiased on average
    let v: [Float] = [0.3, -0.5, 0.1, 0.8]
    let layout4 = try TensorLayout.flat(4)
    var mean = [Float](repeating: 0, count: 4)
    var state = CodecState(seed: 1)
    for _ in 0 ..< 4000 {
        let d = try QSGDCodec(levels: 2).decode(try QSGDCodec(levels: 2).encode(v, layout: layout4, state: &state), layout: layout4)
        for i in 0 ..< 4 { mean[i] += d[i] / 4000 }
    }
    #expect(approxEqual(mean, v, tol: 0.03))
    // zero vector
    let z = try QSGDCodec(levels: 4).decode(try QSGDCodec(levels: 4).encode([0, 0, 0, 0], layout: layout4), layout: layout4)
    #expect(z == [0, 0, 0, 0])
}

@Test func signSGDHandComputed() throws {
    let layout = try TensorLayout([("a", 3), ("b", 2)])
    let codec = SignSGDCodec()
    var state = CodecState()
    let bytes = try codec.encode([1, -2, 3, -4, 0], layout: layout, state: &state)
    #expect(bytes.count == 16 + 8 + 1)
    #expect(SignSGDCodec.encodedSize(layout) == bytes.count)
    #expect(try codec.decode(bytes, layout: layout) == [2, -2, 2, -2, 2])   // mean|a| = 2, mean|b| = 2
    #expect(state.residual == [-1, 0, 1, -2, -2])
}

@Test func stcHandComputed() throws {
    let layout = try TensorLayout.flat(6)
    let codec = STCCodec(ratio: 0.5)
    var state = CodecState()
    let bytes = try codec.encode([0.5, -3, 1, 4, -0.125, 2], layout: layout, state: &state)
    // k = 3: |4|, |−3|, |2| → μ = 3; positions {1, 3, 5}: bitmap 1 byte beats delta (3) and index (12)
    #expect(try codec.decode(bytes, layout: layout) == [0, -3, 0, 3, 0, 3])
    #expect(state.residual == [0.5, 0, 1, 1, -0.125, -1])
    #expect(bytes.count == 16 + 1 + 4 + 1)
    // size formula with many entries: 16 + P + 4 + ⌈k/8⌉
    let big = try TensorLayout.flat(1000)
    let u = randomVector(1000, seed: 8)
    let b2 = try STCCodec(ratio: 0.2, errorFeedback: false).encode(u, layout: big)
    let top = referenceTopK(u, 200).map { Int32($0) }
    let p = top.withUnsafeBufferPointer { PositionCoding.best(for: $0, n: 1000).size }
    #expect(b2.count == 16 + p + 4 + 25)
    let d2 = try STCCodec(ratio: 0.2).decode(b2, layout: big)
    let mu = Float(top.map { Double(abs(u[Int($0)])) }.reduce(0, +) / 200)
    let topSet = Set(top.map(Int.init))
    for i in 0 ..< 1000 { #expect(d2[i] == (topSet.contains(i) ? (u[i] < 0 ? -mu : mu) : 0)) }
}

@Test func everyCodecRoundTripsToRightLengthAndSizeIsStreamLength() throws {
    let layout = smallLayout
    for codec in allCodecs() {
        var state = CodecState(seed: 5)
        for round in 0 ..< 3 {
            let u = randomVector(layout.count, seed: UInt64(round + 20))
            let bytes = try codec.encode(u, layout: layout, state: &state)
            let d = try codec.decode(bytes, layout: layout)
            #expect(d.count == layout.count)
            #expect(FloatScan.firstNonFinite(d) == nil)
            let h = try CodecHeader.peek(bytes)
            #expect(h.codec == codec.codecID && h.length == layout.count && h.segments == layout.segments.count)
        }
    }
}

@Test func estimatedSizesMatchStreams() throws {
    let layout = try TensorLayout([("a", 3000), ("b", 1000)])
    let u = randomVector(layout.count, seed: 41)
    let exactCodecs: [any UpdateCodec] = [DenseCodec(), DenseCodec(values: .float16), RandomKCodec(ratio: 0.1),
                                          RandomKCodec(ratio: 0.3, values: .float16), QSGDCodec(levels: 4, coding: .fixed),
                                          QSGDCodec(levels: 300, coding: .fixed), SignSGDCodec(), TopKCodec(ratio: 0.5), TopKCodec(ratio: 1)]
    for codec in exactCodecs {
        #expect(try codec.encode(u, layout: layout).count == codec.estimatedSize(layout), "\(codec)")
    }
    // position sizes depend on where the entries fall: within 15% for random data
    for codec in [TopKCodec(ratio: 0.01), TopKCodec(ratio: 0.1), STCCodec(ratio: 0.05)] as [any UpdateCodec] {
        let actual = Double(try codec.encode(u, layout: layout).count)
        #expect(abs(actual - Double(codec.estimatedSize(layout))) <= 0.15 * actual, "\(codec)")
    }
    let dl = DownloadCompression(thetaMax: 0.9)
    let stale = randomVector(layout.count, seed: 42)
    let actual = try dl.encode(global: u, stale: stale, ratio: 0.9, layout: layout).count
    #expect(abs(Double(actual - dl.estimatedSize(ratio: 0.9, layout: layout))) <= 0.15 * Double(actual))
    #expect(try dl.encode(global: u, stale: stale, ratio: 0.5, layout: layout).count == dl.estimatedSize(ratio: 0.5, layout: layout))
}

@Test func errorFeedbackConservesTheSum() throws {
    let layout = smallLayout
    let codecs: [any UpdateCodec] = [TopKCodec(ratio: 0.1), TopKCodec(ratio: 0.2, values: .float16),
                                     SignSGDCodec(), STCCodec(ratio: 0.15),
                                     RandomKCodec(ratio: 0.2, scaled: false, errorFeedback: true)]
    for codec in codecs {
        #expect(codec.usesErrorFeedback)
        var state = CodecState(seed: 3)
        var sumIn = [Double](repeating: 0, count: layout.count)
        var sumOut = [Double](repeating: 0, count: layout.count)
        for round in 0 ..< 12 {
            let u = randomVector(layout.count, seed: UInt64(100 + round))
            let d = try codec.decode(try codec.encode(u, layout: layout, state: &state), layout: layout)
            for i in 0 ..< layout.count { sumIn[i] += Double(u[i]); sumOut[i] += Double(d[i]) }
        }
        for i in 0 ..< layout.count {
            #expect(abs(sumOut[i] + Double(state.residual[i]) - sumIn[i]) < 1e-4, "\(codec) entry \(i)")
        }
    }
    // top-k with error feedback eventually sends every entry of a constant update
    var state = CodecState()
    let layout4 = try TensorLayout.flat(4)
    var sent = [Float](repeating: 0, count: 4)
    for _ in 0 ..< 4 {
        let d = try TopKCodec(ratio: 0.25).decode(try TopKCodec(ratio: 0.25).encode([1, 1.1, 1.2, 1.3], layout: layout4, state: &state), layout: layout4)
        for i in 0 ..< 4 { sent[i] += d[i] }
    }
    #expect(sent.allSatisfy { $0 > 0 })
}

// MARK: - Stream validation and fuzz

@Test func headerValidation() throws {
    let layout = smallLayout
    let u = randomVector(layout.count, seed: 9)
    let bytes = try TopKCodec(ratio: 0.2).encode(u, layout: layout)
    let wrongCodec = #expect(throws: CodecError.self) { _ = try STCCodec(ratio: 0.2).decode(bytes, layout: layout) }
    #expect(wrongCodec?.message.contains("expected") == true)
    let wrongLength = #expect(throws: CodecError.self) { _ = try TopKCodec(ratio: 0.2).decode(bytes, layout: .flat(layout.count + 1)) }
    #expect(wrongLength?.message.contains("length") == true)
    #expect(throws: CodecError.self) { _ = try TopKCodec(ratio: 0.2).decode(bytes, layout: .flat(layout.count)) }  // segments
    let trailing = #expect(throws: CodecError.self) { _ = try TopKCodec(ratio: 0.2).decode(bytes + [0], layout: layout) }
    #expect(trailing?.message.contains("trailing") == true)
    let truncated = #expect(throws: CodecError.self) { _ = try TopKCodec(ratio: 0.2).decode(Array(bytes.dropLast()), layout: layout) }
    #expect(truncated?.message.contains("truncated") == true)
    var badVersion = bytes
    badVersion[1] = 9
    #expect(throws: CodecError.self) { _ = try TopKCodec(ratio: 0.2).decode(badVersion, layout: layout) }
    var badFlags = bytes
    badFlags[3] = 0x80
    #expect(throws: CodecError.self) { _ = try TopKCodec(ratio: 0.2).decode(badFlags, layout: layout) }
    #expect(throws: CodecError.self) { _ = try TopKCodec(ratio: 0.2).decode([], layout: layout) }
    // encode-side argument errors
    #expect(throws: CodecError.self) { _ = try TopKCodec(ratio: 1.5).encode(u, layout: layout) }
    #expect(throws: CodecError.self) { _ = try TopKCodec(ratio: 0.5).encode([1, 2], layout: layout) }
    var nan = u
    nan[40] = .nan
    let nanError = #expect(throws: CodecError.self) { _ = try SignSGDCodec().encode(nan, layout: layout) }
    #expect(nanError?.message.contains("b[3]") == true)
    #expect(throws: CodecError.self) { _ = try TensorLayout([("x", -1)]) }
}

@Test func fuzzTruncationsAndBitFlipsNeverCrash() throws {
    let layout = smallLayout
    var rng = SplitMix64(seed: 2024)
    var outcomes = (threw: 0, decoded: 0)
    func check(_ bytes: [UInt8], _ decode: ([UInt8]) throws -> [Float]) {
        do {
            let d = try decode(bytes)
            #expect(d.count == layout.count)
            #expect(FloatScan.firstNonFinite(d) == nil)
            outcomes.decoded += 1
        } catch is CodecError {
            outcomes.threw += 1
        } catch {
            Issue.record("unexpected error type \(error)")
        }
    }
    var streams: [([UInt8], ([UInt8]) throws -> [Float])] = []
    for codec in allCodecs() {
        var state = CodecState(seed: 1)
        let bytes = try codec.encode(randomVector(layout.count, seed: 77), layout: layout, state: &state)
        streams.append((bytes, { try codec.decode($0, layout: layout) }))
    }
    let global = randomVector(layout.count, seed: 78), stale = randomVector(layout.count, seed: 79)
    for dl in [DownloadCompression(), DownloadCompression(thetaMax: 0.9, values: .float16, reconstruction: .differenceSign)] {
        let bytes = try dl.encode(global: global, stale: stale, ratio: dl.thetaMax, layout: layout)
        streams.append((bytes, { try DownloadCompression.decode($0, stale: stale, layout: layout) }))
    }
    for (bytes, decode) in streams {
        for cut in 0 ..< bytes.count { check(Array(bytes[0 ..< cut]), decode) }
        for _ in 0 ..< 300 {
            var b = bytes
            for _ in 0 ..< 1 + Int(rng.nextBelow(3)) {
                let i = Int(rng.nextBelow(UInt64(b.count)))
                b[i] ^= 1 << UInt8(rng.nextBelow(8))
            }
            check(b, decode)
        }
        for _ in 0 ..< 50 {
            // random garbage behind a valid header
            var b = Array(bytes[0 ..< 16])
            for _ in 0 ..< Int(rng.nextBelow(UInt64(bytes.count + 8))) { b.append(UInt8(truncatingIfNeeded: rng.next())) }
            check(b, decode)
        }
    }
    #expect(outcomes.threw > 0 && outcomes.decoded > 0)
}

// MARK: - Caesar download

@Test func downloadRatioFormula() {
    #expect(DownloadCompression.ratio(staleness: 2, round: 10, thetaMax: 0.5) == 0.4)
    #expect(abs(DownloadCompression.ratio(staleness: 3, round: 10, thetaMax: 0.9) - 0.63) < 1e-12)
    #expect(DownloadCompression.ratio(staleness: 10, round: 10, thetaMax: 0.5) == 0)
    #expect(DownloadCompression.ratio(staleness: 15, round: 10, thetaMax: 0.5) == 0)   // capped
    #expect(DownloadCompression.ratio(staleness: nil, round: 10, thetaMax: 0.5) == 0)  // never synced: dense
    #expect(DownloadCompression.ratio(staleness: 0, round: 10, thetaMax: 0.5) == 0.5)
    #expect(DownloadCompression.ratio(staleness: 1, round: 0, thetaMax: 0.5) == 0)
    #expect(DownloadCompression(thetaMax: 0.9).ratio(staleness: 1, round: 2) == 0.45)
}

// Hand-computed example (tensors A of 5 and B of 4):
//   stale  = [1, 0.125, 0.5, 3, -0.25 | 3, 4, -1, 0]
//   global = [1.5, -0.125, -0.5, 5, -0.25 | 2.75, 3, -1.125, 0]
//   Δ      = [0.5, -0.25, -1, 2, 0 | -0.25, -1, -0.125, 0]
// θ = 0.5 → round(4.5) = 5 sign-coded entries, k = 4 exact entries with the largest |Δ|:
// positions 0, 2, 3, 6. Compressed: 1, 4 | 5, 7, 8.
private let dlLayout = try! TensorLayout([("A", 5), ("B", 4)])
private let dlStale: [Float] = [1, 0.125, 0.5, 3, -0.25, 3, 4, -1, 0]
private let dlGlobal: [Float] = [1.5, -0.125, -0.5, 5, -0.25, 2.75, 3, -1.125, 0]

@Test func downloadLiteralRebuildHandComputed() throws {
    let dl = DownloadCompression()
    let bytes = try dl.encode(global: dlGlobal, stale: dlStale, ratio: 0.5, layout: dlLayout)
    // 16 header + 2 bitmap + 4·4 values + 2·8 scalars + 1 sign byte (5 bits)
    #expect(bytes.count == 51)
    #expect(DownloadCompression.encodedSize(n: 9, k: 4, segments: 2, positionBytes: 2, values: .float32) == 51)
    // literal: x = global. A: compressed {−0.125, −0.25} → mean 0.1875, max 0.25.
    //                      B: compressed {2.75, −1.125, 0} → mean 3.875/3, max 2.75.
    // 1: stale 0.125 has the wrong sign → σ·mean_A = −0.1875
    // 4: stale −0.25, sign matches, |−0.25| ≤ max_A = 0.25 (boundary) → −0.25
    // 5: stale 3 > max_B = 2.75 → σ·mean_B = 3.875/3
    // 7: stale −1, sign matches, |−1| ≤ 2.75 → −1;  8: stale 0 (sign +), global 0 (+) → 0
    let rebuilt = try DownloadCompression.decode(bytes, stale: dlStale, layout: dlLayout)
    #expect(rebuilt == [1.5, -0.1875, -0.5, 5, -0.25, Float(3.875 / 3.0), 3, -1, 0])
}

@Test func downloadDifferenceSignRebuildHandComputed() throws {
    let dl = DownloadCompression(reconstruction: .differenceSign)
    let bytes = try dl.encode(global: dlGlobal, stale: dlStale, ratio: 0.5, layout: dlLayout)
    #expect(bytes.count == 51)
    // x = Δ. A: {−0.25, 0} → mean 0.125. B: {−0.25, −0.125, 0} → mean 0.125.
    // 1: 0.125 − 0.125;  4: −0.25 + 0.125 (sign(0) = +);  5: 3 − 0.125;  7: −1 − 0.125;  8: 0 + 0.125
    let rebuilt = try DownloadCompression.decode(bytes, stale: dlStale, layout: dlLayout)
    #expect(rebuilt == [1.5, 0, -0.5, 5, -0.125, 2.875, 3, -1.125, 0.125])
    // float16 exact entries carry Δ: stale + fp16(Δ) (exact here)
    let h = DownloadCompression(values: .float16, reconstruction: .differenceSign)
    let hb = try h.encode(global: dlGlobal, stale: dlStale, ratio: 0.5, layout: dlLayout)
    #expect(hb.count == 51 - 8)
    #expect(try DownloadCompression.decode(hb, stale: dlStale, layout: dlLayout) == rebuilt)
}

@Test func downloadDenseWhenNeverSynchronised() throws {
    let layout = smallLayout
    let global = randomVector(layout.count, seed: 12)
    let dl = DownloadCompression(thetaMax: 0.9)
    let bytes = try dl.encode(global: global, stale: nil, staleness: nil, round: 5, layout: layout)
    #expect(try DownloadCompression.decode(bytes, stale: nil, layout: layout) == global)
    #expect(bytes.count == 16 + 4 * layout.count + 8 * layout.segments.count)
    // θ = 0 with a stale copy is also exact
    let stale = randomVector(layout.count, seed: 13)
    let b0 = try dl.encode(global: global, stale: stale, ratio: 0, layout: layout)
    #expect(try DownloadCompression.decode(b0, stale: stale, layout: layout) == global)
    // a compressed stream needs the stale copy
    let b1 = try dl.encode(global: global, stale: stale, ratio: 0.9, layout: layout)
    #expect(throws: CodecError.self) { _ = try DownloadCompression.decode(b1, stale: nil, layout: layout) }
    // exact entries are exact, compressed entries follow the rule
    let d1 = try DownloadCompression.decode(b1, stale: stale, layout: layout)
    let k = layout.count - DownloadCompression.compressedCount(ratio: 0.9, n: layout.count)
    let delta = zip(global, stale).map { $0 - $1 }
    for i in referenceTopK(delta, k) { #expect(d1[i] == global[i]) }
}

// MARK: - Caesar upload

@Test func klDivergenceHandComputed() throws {
    let kl = try UploadCompression.klDivergence([0.5, 0.5], [0.25, 0.75])
    #expect(abs(kl - (0.5 * log(2.0) + 0.5 * log(2.0 / 3.0))) < 1e-15)
    #expect(abs(kl - 0.14384103622589045) < 1e-15)
    #expect(try UploadCompression.klDivergence([1, 0], [0.5, 0.5]) == log(2.0))
    #expect(try UploadCompression.klDivergence([0.5, 0.5], [1, 0]) == .infinity)
    #expect(try UploadCompression.klDivergence([0.2, 0.8], [0.2, 0.8]) == 0)
    // smoothing: (p + ε)/(1 + Cε)
    let p = try UploadCompression.distribution(counts: [3, 1, 0], epsilon: 0.1)
    #expect(approxEqualD(p, [0.85 / 1.3, 0.35 / 1.3, 0.1 / 1.3]))
    #expect(try UploadCompression.klDivergence(p, try UploadCompression.distribution(counts: [1, 1, 1], epsilon: 0.1)) > 0)
    #expect(throws: CodecError.self) { _ = try UploadCompression.klDivergence([1], [0.5, 0.5]) }
    #expect(throws: CodecError.self) { _ = try UploadCompression.distribution(counts: [1, -1], epsilon: 0) }
}

private func approxEqualD(_ a: [Double], _ b: [Double], tol: Double = 1e-12) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= tol }
}

@Test func uploadPlanRanksAndSpreadsRatios() throws {
    let counts = [[50, 50], [90, 10], [5, 5], [20, 80]]
    let up = UploadCompression(epsilon: 0)
    let plan = try up.plan(labelCounts: counts)
    // global = [165, 145] / 310
    let g = [165.0 / 310, 145.0 / 310]
    func kl(_ p: [Double]) -> Double { zip(p, g).map { $0 * log($0 / $1) }.reduce(0, +) }
    let d = [kl([0.5, 0.5]), kl([0.9, 0.1]), kl([0.5, 0.5]), kl([0.2, 0.8])]
    #expect(approxEqualD(plan.divergence, d))
    let mean = 310.0 / 4
    let c = [100 / mean * exp(-d[0]), 100 / mean * exp(-d[1]), 10 / mean * exp(-d[2]), 100 / mean * exp(-d[3])]
    #expect(approxEqualD(plan.score, c))
    // d0 < d3 < d1 (balanced is closest to the population), device 2 has little data
    #expect(plan.rank == [0, 2, 3, 1])
    #expect(approxEqualD(plan.ratio, [0.5, 0.5 - 0.4 * 2 / 3, 0.1, 0.5 - 0.4 / 3]))
    // rank-sum: volume ranks (desc, ties by index) [0, 1, 3, 2]; KL ranks (asc) [0, 3, 1, 2]
    let rs = try UploadCompression(epsilon: 0, score: .rankSum).plan(labelCounts: counts)
    #expect(rs.score == [0, -4, -4, -4])
    #expect(rs.rank == [0, 1, 2, 3])
    let one = try up.plan(labelCounts: [[1, 2]])
    #expect(one.ratio == [0.5])
    #expect(up.codec(ratio: 0.3).ratio == 0.3 && up.codec(ratio: 0.3).errorFeedback)
    #expect(throws: CodecError.self) { _ = try up.plan(labelCounts: [[1, 2], [3]]) }
}

// MARK: - Batch sizes

@Test func batchPlannerEqualisesFinishTimes() throws {
    let profiles = [0.001, 0.003, 0.005, 0.1].map {
        DeviceTimeProfile(computePerSample: $0, downBytesPerSecond: 1e6, upBytesPerSecond: 5e5)
    }
    let down = [1_000_000, 1_000_000, 1_000_000, 1_000_000], up = [500_000, 500_000, 500_000, 500_000]
    let planner = BatchSizePlanner(minBatch: 8, maxBatch: 64, localSteps: 10)
    let plan = try planner.plan(profiles: profiles, bytesDown: down, bytesUp: up)
    // T(b) = 10·b·c + 2 s. Fastest: 2.64 s at b = 64. Device 1: 0.03·b ≤ 0.64 → 21; device 2:
    // 0.05·b ≤ 0.64 → 12; device 3 cannot make it even at b_min = 8 (T = 10 s).
    #expect(plan.batchSizes == [64, 21, 12, 8])
    #expect(abs(plan.deadline - 2.64) < 1e-12)
    #expect(abs(plan.roundTime - 10) < 1e-12)
    for i in 0 ..< 3 {
        #expect(plan.predictedTimes[i] <= plan.deadline + 1e-12)
        #expect(plan.deadline - plan.predictedTimes[i] < 10 * profiles[i].computePerSample)  // within one batch step
        #expect(abs(plan.idleTimes[i] - (plan.roundTime - plan.predictedTimes[i])) < 1e-12)
    }
    #expect(plan.idleTimes[3] == 0)
    // fill the bottleneck: the round lasts 10 s anyway, so the others grow their batches
    let fill = try BatchSizePlanner(minBatch: 8, maxBatch: 400, batchStep: 8, localSteps: 10, target: .fillBottleneck)
        .plan(profiles: profiles, bytesDown: down, bytesUp: up)
    // D = max(min T(400) = 6, T_3(8) = 10) = 10: 0.01b ≤ 8 → 800 → 400; 0.03b ≤ 8 → 266 → 264; 0.05b ≤ 8 → 160
    #expect(fill.deadline == 10)
    #expect(fill.batchSizes == [400, 264, 160, 8])
    #expect(fill.idleTimes.enumerated().allSatisfy { i, idle in i == 0 || idle < 10 * 8 * profiles[i].computePerSample + 1e-9 })
    // random profiles: every unclamped device ends within one batch step before the deadline
    var rng = SplitMix64(seed: 5)
    for _ in 0 ..< 50 {
        let m = 2 + Int(rng.nextBelow(6))
        let ps = (0 ..< m).map { _ in
            DeviceTimeProfile(computePerSample: 0.0005 + Double(rng.nextUnitFloat()) * 0.01,
                              downBytesPerSecond: 1e5 + Double(rng.nextUnitFloat()) * 1e7,
                              upBytesPerSecond: 1e5 + Double(rng.nextUnitFloat()) * 1e7)
        }
        let dn = (0 ..< m).map { _ in Int(rng.nextBelow(2_000_000)) }
        let upb = (0 ..< m).map { _ in Int(rng.nextBelow(2_000_000)) }
        let p = try BatchSizePlanner(minBatch: 4, maxBatch: 128, batchStep: 4, localSteps: 5).plan(profiles: ps, bytesDown: dn, bytesUp: upb)
        #expect(p.batchSizes.contains(128))
        for i in 0 ..< m where p.batchSizes[i] > 4 && p.batchSizes[i] < 128 {
            #expect(p.predictedTimes[i] <= p.deadline)
            #expect(p.deadline - p.predictedTimes[i] < 5 * 4 * ps[i].computePerSample)
        }
    }
    #expect(throws: CodecError.self) { _ = try BatchSizePlanner(minBatch: 8, maxBatch: 20, batchStep: 5, localSteps: 1).plan(profiles: profiles, bytesDown: down, bytesUp: up) }
}
