// Copying strided views into contiguous buffers, dtype conversion and the strided iteration
// helper that elementwise ops use.

/// Calls `body(outerOffsetA, outerOffsetB, outIndex)` for every row of the innermost axis, with
/// the rows of an output of `shape` in row-major order. Offsets are in elements. Used by
/// broadcasting binary ops and copies; the inner loop over the last axis belongs to the caller.
@usableFromInline
func forEachRow(shape: [Int], stridesA: [Int], stridesB: [Int], _ body: (Int, Int, Int) -> Void) {
    let r = shape.count
    if r <= 1 { body(0, 0, 0); return }
    let outer = shape.dropLast().reduce(1, *)
    let inner = shape[r - 1]
    if outer == 0 || inner == 0 { return }
    var idx = [Int](repeating: 0, count: r - 1)
    var oa = 0, ob = 0
    for row in 0..<outer {
        body(oa, ob, row * inner)
        // increment the multi-index over axes 0..<r-1
        var d = r - 2
        while d >= 0 {
            idx[d] += 1
            oa += stridesA[d]
            ob += stridesB[d]
            if idx[d] < shape[d] { break }
            oa -= stridesA[d] * shape[d]
            ob -= stridesB[d] * shape[d]
            idx[d] = 0
            d -= 1
        }
    }
}

extension Tensor {
    /// A contiguous float32 tensor with the same values: `self` when it already is one.
    /// (Not tracked by autograd; use `contiguous()` inside differentiable code.)
    public func contiguousF32() -> Tensor {
        if storage.dtype == .float32 && isContiguous && offset == 0 && storage.count == count { return self }
        if storage.dtype == .float32 && isContiguous { return self }
        let out = Tensor(zeros: shape, zeroed: false)
        copyInto(out.pointer)
        return out
    }

    /// Writes the elements in row-major order, converted to float32, into `dst`.
    public func copyInto(_ dst: UnsafeMutablePointer<Float>) {
        if count == 0 { return }
        let r = rank
        let inner = r == 0 ? 1 : shape[r - 1]
        let innerStride = r == 0 ? 1 : strides[r - 1]
        let zeros = [Int](repeating: 0, count: r)
        switch storage.dtype {
        case .float32:
            let src = storage.floats + offset
            if isContiguous { dst.update(from: src, count: count); return }
            forEachRow(shape: shape, stridesA: strides, stridesB: zeros) { oa, _, o in
                let s = src + oa
                if innerStride == 1 {
                    (dst + o).update(from: s, count: inner)
                } else {
                    for i in 0..<inner { dst[o + i] = s[i * innerStride] }
                }
            }
        case .float16, .bfloat16:
            let raw = storage.raw
            let isBF = storage.dtype == .bfloat16
            forEachRow(shape: shape, stridesA: strides, stridesB: zeros) { oa, _, o in
                for i in 0..<inner {
                    let bits = raw.load(fromByteOffset: 2 * (offset + oa + i * innerStride), as: UInt16.self)
                    dst[o + i] = isBF ? HalfConversion.bf16ToFloat(bits) : HalfConversion.f16ToFloat(bits)
                }
            }
        }
    }

    /// A contiguous copy in `dtype` (no gradient tracking).
    public func converted(to dtype: DType) -> Tensor {
        if dtype == .float32 { return contiguousF32() === self ? copyTensor() : contiguousF32() }
        let f = contiguousF32()
        let out = Tensor(zeros: shape, dtype: dtype, zeroed: false)
        HalfConversion.fromFloat(f.pointer, count: count, dtype: dtype, into: out.storage.raw)
        return out
    }

    /// A fresh contiguous float32 copy (no gradient tracking).
    public func copyTensor() -> Tensor {
        let out = Tensor(zeros: shape, zeroed: false)
        copyInto(out.pointer)
        return out
    }
}
