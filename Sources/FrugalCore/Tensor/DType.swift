/// Element types a tensor's storage may hold. Compute is always float32; f16 and bf16 exist so
/// that checkpoint weights can stay in their stored width and be converted inside kernels.
public enum DType: String, Sendable, CaseIterable, Codable {
    case float32 = "F32"
    case float16 = "F16"
    case bfloat16 = "BF16"

    /// Bytes per element.
    @inlinable public var size: Int {
        switch self {
        case .float32: return 4
        case .float16, .bfloat16: return 2
        }
    }
}

/// Conversions between float32 and the 16-bit storage types.
public enum HalfConversion {
    /// bfloat16 bits to float32: the upper half of an IEEE float32.
    @inlinable @inline(__always)
    public static func bf16ToFloat(_ bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    /// float32 to bfloat16 bits, rounding to nearest even (NaN stays NaN).
    @inlinable @inline(__always)
    public static func floatToBF16(_ x: Float) -> UInt16 {
        let b = x.bitPattern
        if x.isNaN { return UInt16(truncatingIfNeeded: (b >> 16) | 0x40) }
        let rounding: UInt32 = 0x7FFF + ((b >> 16) & 1)
        return UInt16(truncatingIfNeeded: (b &+ rounding) >> 16)
    }

    /// IEEE half bits to float32.
    @inlinable @inline(__always)
    public static func f16ToFloat(_ bits: UInt16) -> Float {
        Float(Float16(bitPattern: bits))
    }

    /// float32 to IEEE half bits (round to nearest even).
    @inlinable @inline(__always)
    public static func floatToF16(_ x: Float) -> UInt16 {
        Float16(x).bitPattern
    }

    /// Converts `count` elements of `dtype` at `src` (raw bytes, any alignment) into float32.
    @inlinable
    public static func toFloat(_ src: UnsafeRawPointer, dtype: DType, count: Int, into dst: UnsafeMutablePointer<Float>) {
        switch dtype {
        case .float32:
            (UnsafeMutableRawPointer(dst)).copyMemory(from: src, byteCount: count * 4)
        case .float16:
            for i in 0..<count { dst[i] = f16ToFloat(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
        case .bfloat16:
            for i in 0..<count { dst[i] = bf16ToFloat(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
        }
    }

    /// Converts `count` float32 values into `dtype` at `dst` (raw bytes).
    @inlinable
    public static func fromFloat(_ src: UnsafePointer<Float>, count: Int, dtype: DType, into dst: UnsafeMutableRawPointer) {
        switch dtype {
        case .float32:
            dst.copyMemory(from: src, byteCount: count * 4)
        case .float16:
            for i in 0..<count { dst.storeBytes(of: floatToF16(src[i]), toByteOffset: 2 * i, as: UInt16.self) }
        case .bfloat16:
            for i in 0..<count { dst.storeBytes(of: floatToBF16(src[i]), toByteOffset: 2 * i, as: UInt16.self) }
        }
    }
}
