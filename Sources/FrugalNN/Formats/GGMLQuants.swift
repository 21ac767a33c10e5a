import Foundation
import FrugalCore

/// ggml tensor element types as stored in GGUF files (ids from ggml.h / gguf-py `GGMLQuantizationType`).
/// Quantised types store blocks of `blockSize` elements in `typeSize` bytes; a row's length
/// (`ne[0]`) is a multiple of the block size.
public enum GGMLType: UInt32, Sendable, CaseIterable, Codable {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9
    case q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15
    case iq2_xxs = 16, iq2_xs = 17, iq3_xxs = 18, iq1_s = 19, iq4_nl = 20, iq3_s = 21, iq2_s = 22, iq4_xs = 23
    case i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, iq1_m = 29, bf16 = 30
    case tq1_0 = 34, tq2_0 = 35, mxfp4 = 39, nvfp4 = 40, q1_0 = 41

    /// The ggml name, e.g. `Q4_K`, `BF16`.
    public var name: String {
        "\(self)".uppercased()
    }

    /// Elements per block (1 for plain types).
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16, .f64, .i8, .i16, .i32, .i64: return 1
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q8_1, .iq4_nl, .mxfp4: return 32
        case .nvfp4: return 64
        case .q1_0: return 128
        case .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_K, .iq2_xxs, .iq2_xs, .iq3_xxs, .iq1_s, .iq3_s, .iq2_s,
             .iq4_xs, .iq1_m, .tq1_0, .tq2_0:
            return 256
        }
    }

    /// Bytes per block (ggml's `type_size`).
    public var typeSize: Int {
        let qk = 256
        switch self {
        case .f32, .i32: return 4
        case .f16, .bf16, .i16: return 2
        case .f64, .i64: return 8
        case .i8: return 1
        case .q4_0: return 2 + 16
        case .q4_1: return 2 + 2 + 16
        case .q5_0: return 2 + 4 + 16
        case .q5_1: return 2 + 2 + 4 + 16
        case .q8_0: return 2 + 32
        case .q8_1: return 2 + 2 + 32  // ggml block_q8_1 {half d, s; int8 qs[32]}
        case .q2_K: return 2 + 2 + qk / 16 + qk / 4
        case .q3_K: return 2 + qk / 4 + qk / 8 + 12
        case .q4_K: return 2 + 2 + qk / 2 + 12
        case .q5_K: return 2 + 2 + qk / 2 + qk / 8 + 12
        case .q6_K: return 2 + qk / 2 + qk / 4 + qk / 16
        case .q8_K: return 4 + qk + qk / 8
        case .iq2_xxs: return 2 + qk / 4
        case .iq2_xs: return 2 + qk / 4 + qk / 32
        case .iq3_xxs: return 2 + qk / 4 + qk / 8
        case .iq1_s: return 2 + qk / 8 + qk / 16
        case .iq4_nl: return 2 + 16
        case .iq3_s: return 2 + qk / 4 + qk / 8 + qk / 32 + 4
        case .iq2_s: return 2 + qk / 4 + qk / 16
        case .iq4_xs: return 2 + 2 + qk / 2 + qk / 64
        case .iq1_m: return qk / 8 + qk / 16 + qk / 32
        case .tq1_0: return 2 + 4 * 13
        case .tq2_0: return 2 + 64
        case .mxfp4: return 1 + 16
        case .nvfp4: return 4 + 32
        case .q1_0: return 2 + 16
        }
    }

    /// Whether `GGMLQuants.dequantize` supports this type.
    public var canDequantize: Bool {
        switch self {
        case .f32, .f16, .bf16, .f64, .i8, .i16, .i32, .i64,
             .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_K:
            return true
        default:
            return false
        }
    }

    /// Bytes for `count` elements (`count` a multiple of `blockSize`), or nil on overflow.
    public func byteCount(elements count: Int) -> Int? {
        guard count >= 0, count % blockSize == 0 else { return nil }
        let (b, o) = (count / blockSize).multipliedReportingOverflow(by: typeSize)
        return o ? nil : b
    }
}

/// Dequantisation of ggml block formats to float32, bit-exact with ggml's reference
/// `dequantize_row_*` and gguf-py's `quants.dequantize` (same float operations in the same order:
/// e.g. Q4_1 is `d * q + m`, Q4_K is `(d * sc) * q - (dmin * m)`).
public enum GGMLQuants {
    /// Dequantises `count` elements of `type` from `source` into `destination`.
    /// - Throws: `GGUFError` if the type is unsupported, `count` is not a multiple of the block
    ///   size, `source` is shorter than `count` needs, or `destination` holds fewer than `count`.
    public static func dequantize(_ type: GGMLType, from source: UnsafeRawBufferPointer, count: Int,
                                  into destination: UnsafeMutableBufferPointer<Float>) throws {
        guard type.canDequantize else { throw GGUFError("dequantisation of \(type.name) is not supported") }
        guard count >= 0, count % type.blockSize == 0, let need = type.byteCount(elements: count) else {
            throw GGUFError("\(count) elements is not a whole number of \(type.name) blocks of \(type.blockSize)")
        }
        guard source.count >= need else {
            throw GGUFError("\(count) \(type.name) elements need \(need) bytes, source has \(source.count)")
        }
        guard destination.count >= count else {
            throw GGUFError("destination holds \(destination.count) floats, \(count) needed")
        }
        guard count > 0, let src = source.baseAddress, let dst = destination.baseAddress else { return }
        dequantizeParallel(type, src, blocks: count / type.blockSize, dst)
    }

    /// Splits large tensors over threads (each block is independent).
    static func dequantizeParallel(_ type: GGMLType, _ src: UnsafeRawPointer, blocks: Int, _ dst: UnsafeMutablePointer<Float>) {
        let elements = blocks * type.blockSize
        let threads = min(ProcessInfo.processInfo.activeProcessorCount, 8)
        if elements < (1 << 20) || threads < 2 {
            dequantizeBlocks(type, src, blocks: blocks, dst)
            return
        }
        // Raw pointers are not Sendable: pass addresses as Int. Safe because every chunk reads its
        // own block range and writes a disjoint output range, and all finish before we return.
        let s = Int(bitPattern: src), d = Int(bitPattern: dst)
        let chunks = threads * 4
        let per = (blocks + chunks - 1) / chunks
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let b0 = c * per, b1 = min(blocks, b0 + per)
            if b0 >= b1 { return }
            let sp = UnsafeRawPointer(bitPattern: s)! + b0 * type.typeSize
            let dp = UnsafeMutablePointer<Float>(bitPattern: d)! + b0 * type.blockSize
            dequantizeBlocks(type, sp, blocks: b1 - b0, dp)
        }
    }

    @inline(__always) static func half(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
        Float(Float16(bitPattern: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
    }

    @inline(__always) static func byte(_ p: UnsafeRawPointer, _ offset: Int) -> UInt8 {
        p.load(fromByteOffset: offset, as: UInt8.self)
    }

    /// Unchecked core: `blocks` whole blocks at `src` into `dst`.
    static func dequantizeBlocks(_ type: GGMLType, _ src: UnsafeRawPointer, blocks nb: Int, _ dst: UnsafeMutablePointer<Float>) {
        let ts = type.typeSize
        switch type {
        case .f32:
            UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: nb * 4)
        case .f16:
            for i in 0..<nb { dst[i] = half(src, 2 * i) }
        case .bf16:
            for i in 0..<nb { dst[i] = HalfConversion.bf16ToFloat(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
        case .f64:
            for i in 0..<nb { dst[i] = Float(Double(bitPattern: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))) }
        case .i8:
            for i in 0..<nb { dst[i] = Float(Int8(bitPattern: byte(src, i))) }
        case .i16:
            for i in 0..<nb { dst[i] = Float(src.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)) }
        case .i32:
            for i in 0..<nb { dst[i] = Float(src.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }
        case .i64:
            for i in 0..<nb { dst[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)) }

        case .q4_0:
            // {half d; u8 qs[16]}: x[j] = (lo(qs[j]) - 8) * d, x[j+16] = (hi(qs[j]) - 8) * d
            for b in 0..<nb {
                let p = src + b * ts, y = dst + b * 32
                let d = half(p, 0)
                for j in 0..<16 {
                    let q = byte(p, 2 + j)
                    y[j] = Float(Int(q & 0xF) - 8) * d
                    y[j + 16] = Float(Int(q >> 4) - 8) * d
                }
            }
        case .q4_1:
            // {half d, m; u8 qs[16]}: x = q * d + m
            for b in 0..<nb {
                let p = src + b * ts, y = dst + b * 32
                let d = half(p, 0), m = half(p, 2)
                for j in 0..<16 {
                    let q = byte(p, 4 + j)
                    y[j] = d * Float(q & 0xF) + m
                    y[j + 16] = d * Float(q >> 4) + m
                }
            }
        case .q5_0:
            // {half d; u32 qh; u8 qs[16]}: 5-bit q = lo/hi nibble | bit j (or j+16) of qh << 4; x = (q - 16) * d
            for b in 0..<nb {
                let p = src + b * ts, y = dst + b * 32
                let d = half(p, 0)
                let qh = p.loadUnaligned(fromByteOffset: 2, as: UInt32.self).littleEndian
                for j in 0..<16 {
                    let q = byte(p, 6 + j)
                    let h0 = Int((qh >> UInt32(j)) & 1) << 4
                    let h1 = Int((qh >> UInt32(j + 16)) & 1) << 4
                    y[j] = d * Float((Int(q & 0xF) | h0) - 16)
                    y[j + 16] = d * Float((Int(q >> 4) | h1) - 16)
                }
            }
        case .q5_1:
            // {half d, m; u32 qh; u8 qs[16]}: x = q * d + m
            for b in 0..<nb {
                let p = src + b * ts, y = dst + b * 32
                let d = half(p, 0), m = half(p, 2)
                let qh = p.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian
                for j in 0..<16 {
                    let q = byte(p, 8 + j)
                    let h0 = Int((qh >> UInt32(j)) & 1) << 4
                    let h1 = Int((qh >> UInt32(j + 16)) & 1) << 4
                    y[j] = d * Float(Int(q & 0xF) | h0) + m
                    y[j + 16] = d * Float(Int(q >> 4) | h1) + m
                }
            }
        case .q8_0:
            // {half d; i8 qs[32]}: x = q * d
            for b in 0..<nb {
                let p = src + b * ts, y = dst + b * 32
                let d = half(p, 0)
                for j in 0..<32 { y[j] = Float(Int8(bitPattern: byte(p, 2 + j))) * d }
            }
        case .q8_K:
            // {float d; i8 qs[256]; i16 bsums[16]}: x = d * q
            for b in 0..<nb {
                let p = src + b * ts, y = dst + b * 256
                let d = Float(bitPattern: p.loadUnaligned(fromByteOffset: 0, as: UInt32.self).littleEndian)
                for j in 0..<256 { y[j] = d * Float(Int8(bitPattern: byte(p, 4 + j))) }
            }
        case .q2_K:
            // {u8 scales[16]; u8 qs[64]; half d, dmin}: element i = c*128 + s*32 + l (c<2, s<4, l<32) is
            // bits 2s..2s+1 of qs[c*32+l]; group i/16 has scale d*(sc&15) and min dmin*(sc>>4).
            for b in 0..<nb {
                let p = src + b * ts, y = dst + b * 256
                let d = half(p, 80), dmin = half(p, 82)
                for i in 0..<256 {
                    let c = i >> 7, s = (i >> 5) & 3, l = i & 31
                    let sc = byte(p, i >> 4)
                    let dl = d * Float(sc & 0xF), ml = dmin * Float(sc >> 4)
                    let q = (byte(p, 16 + c * 32 + l) >> UInt8(2 * s)) & 3
                    y[i] = dl * Float(q) - ml
                }
            }
        case .q3_K:
            // {u8 hmask[32]; u8 qs[64]; u8 scales[12]; half d}: 6-bit signed group scales (16 groups of 16);
            // q = 2 low bits from qs (as Q2_K) minus 4 when the hmask bit is clear.
            for b in 0..<nb {
                let p = src + b * ts, y = dst + b * 256
                let d = half(p, 108)
                var dl = (Float(0), Float(0), Float(0), Float(0), Float(0), Float(0), Float(0), Float(0),
                          Float(0), Float(0), Float(0), Float(0), Float(0), Float(0), Float(0), Float(0))
                withUnsafeMutableBytes(of: &dl) { raw in
                    let scales = raw.bindMemory(to: Float.self)
                    for g in 0..<16 {
                        let lo = (byte(p, 96 + (g & 7)) >> UInt8(4 * (g >> 3))) & 0xF
                        let hi = (byte(p, 104 + (g & 3)) >> UInt8(2 * (g >> 2))) & 3
                        let sc = Int8(bitPattern: lo | (hi << 4)) &- 32
                        scales[g] = d * Float(sc)
                    }
                    for i in 0..<256 {
                        let c = i >> 7, s = (i >> 5) & 3, l = i & 31
                        let ql = Int8((byte(p, 32 + c * 32 + l) >> UInt8(2 * s)) & 3)
                        let hbit = (byte(p, l) >> UInt8(i >> 5)) & 1
                        let q = ql - (hbit == 0 ? 4 : 0)
                        y[i] = scales[i >> 4] * Float(q)
                    }
                }
            }
        case .q4_K:
            // {half d, dmin; u8 scales[12]; u8 qs[128]}: 8 groups of 32 with 6-bit scale/min;
            // group g = 2c + s takes nibble s of qs[c*32 + l].
            for b in 0..<nb {
                let p = src + b * ts, y = dst + b * 256
                let d = half(p, 0), dmin = half(p, 2)
                for g in 0..<8 {
                    let (sc, m) = scaleMinK4(p + 4, g)
                    let d1 = d * Float(sc), m1 = dmin * Float(m)
                    let c = g >> 1, shift = UInt8(4 * (g & 1))
                    for l in 0..<32 {
                        let q = (byte(p, 16 + c * 32 + l) >> shift) & 0xF
                        y[g * 32 + l] = d1 * Float(q) - m1
                    }
                }
            }
        case .q5_K:
            // {half d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}: as Q4_K plus bit g of qh[l] as bit 4.
            for b in 0..<nb {
                let p = src + b * ts, y = dst + b * 256
                let d = half(p, 0), dmin = half(p, 2)
                for g in 0..<8 {
                    let (sc, m) = scaleMinK4(p + 4, g)
                    let d1 = d * Float(sc), m1 = dmin * Float(m)
                    let c = g >> 1, shift = UInt8(4 * (g & 1))
                    for l in 0..<32 {
                        let lo = (byte(p, 48 + c * 32 + l) >> shift) & 0xF
                        let hi = (byte(p, 16 + l) >> UInt8(g)) & 1
                        y[g * 32 + l] = d1 * Float(lo | (hi << 4)) - m1
                    }
                }
            }
        case .q6_K:
            // {u8 ql[128]; u8 qh[64]; i8 scales[16]; half d}: element i = c*128 + w; low 4 bits are nibble
            // w/64 of ql[c*64 + w%64], high 2 bits are bits 2*(w/32) of qh[c*32 + w%32]; x = (d*sc[i/16]) * (q-32).
            for b in 0..<nb {
                let p = src + b * ts, y = dst + b * 256
                let d = half(p, 208)
                for g in 0..<16 {
                    let dl = d * Float(Int8(bitPattern: byte(p, 192 + g)))
                    for k in 0..<16 {
                        let i = g * 16 + k
                        let c = i >> 7, w = i & 127
                        let lo = (byte(p, c * 64 + (w & 63)) >> UInt8(4 * (w >> 6))) & 0xF
                        let hi = (byte(p, 128 + c * 32 + (w & 31)) >> UInt8(2 * (w >> 5))) & 3
                        y[i] = dl * Float(Int(lo | (hi << 4)) - 32)
                    }
                }
            }
        default:
            preconditionFailure("dequantizeBlocks: \(type.name) is not supported (checked by callers)")
        }
    }

    /// The 6-bit scale and min of group `j` (0..<8) from the 12 packed bytes of Q4_K/Q5_K.
    @inline(__always)
    static func scaleMinK4(_ q: UnsafeRawPointer, _ j: Int) -> (UInt8, UInt8) {
        if j < 4 {
            return (byte(q, j) & 63, byte(q, j + 4) & 63)
        }
        let sc = (byte(q, j + 4) & 0xF) | ((byte(q, j - 4) >> 6) << 4)
        let m = (byte(q, j + 4) >> 4) | ((byte(q, j) >> 6) << 4)
        return (sc, m)
    }
}
