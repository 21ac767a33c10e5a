// Reductions over axes: sum, mean, max/min (with indices), argmax, var.

extension Tensor {
    /// Contiguous float32 data viewed as [outer, n, inner] around `axis`.
    func reductionLayout(_ axis: Int) -> (Tensor, Int, Int, Int) {
        let a = normalizeAxis(axis)
        let c = contiguousF32()
        return (c, shape[..<a].reduce(1, *), shape[a], shape[(a + 1)...].reduce(1, *))
    }

    /// Sum over one axis, untracked, keeping the axis as size 1.
    func sumAxisRaw(_ axis: Int) -> Tensor {
        let (c, outer, n, inner) = reductionLayout(axis)
        var s = shape
        s[normalizeAxis(axis)] = 1
        let out = Tensor(zeros: s)
        let pi = c.pointer, po = out.pointer
        for o in 0..<outer {
            let src = pi + o * n * inner, dst = po + o * inner
            if inner == 1 {
                var acc = SIMD8<Float>(), i = 0
                while i + 8 <= n { acc += UnsafeRawPointer(src + i).loadUnaligned(as: SIMD8<Float>.self); i += 8 }
                var t = acc.sum()
                while i < n { t += src[i]; i += 1 }
                dst[0] = t
            } else {
                for j in 0..<n { let row = src + j * inner; for i in 0..<inner { dst[i] += row[i] } }
            }
        }
        return out
    }

    /// Sum over `axes` (all axes when nil).
    public func sum(axes: [Int]? = nil, keepDims: Bool = false) -> Tensor {
        let ax = (axes ?? Array(0..<rank)).map { normalizeAxis($0) }
        if rank == 0 { return self.add(Tensor(scalar: 0)) }
        var r = self.detach()
        for a in ax.sorted(by: >) { r = r.sumAxisRaw(a) }
        var kept = shape
        for a in ax { kept[a] = 1 }
        let outShape = keepDims ? kept : shape.enumerated().filter { !ax.contains($0.offset) }.map(\.element)
        let out = Tensor(storage: r.storage, shape: outShape)
        let inShape = shape
        return out.recorded("sum", [self]) { g in [g.reshaped(kept).expanded(to: inShape).contiguousF32()] }
    }
    public func sum(axis: Int, keepDims: Bool = false) -> Tensor { sum(axes: [axis], keepDims: keepDims) }

    /// Mean over `axes` (all when nil).
    public func mean(axes: [Int]? = nil, keepDims: Bool = false) -> Tensor {
        let ax = (axes ?? Array(0..<rank)).map { normalizeAxis($0) }
        let n = ax.reduce(1) { $0 * shape[$1] }
        return sum(axes: ax, keepDims: keepDims).mul(1 / Float(Swift.max(n, 1)))
    }
    public func mean(axis: Int, keepDims: Bool = false) -> Tensor { mean(axes: [axis], keepDims: keepDims) }

    /// Variance over `axes` (population when `unbiased` is false, as normalisation layers use).
    public func variance(axes: [Int]? = nil, keepDims: Bool = false, unbiased: Bool = false) -> Tensor {
        let ax = (axes ?? Array(0..<rank)).map { normalizeAxis($0) }
        let n = ax.reduce(1) { $0 * shape[$1] }
        let centered = self - mean(axes: ax, keepDims: true)
        return (centered * centered).sum(axes: ax, keepDims: keepDims).mul(1 / Float(Swift.max(unbiased ? n - 1 : n, 1)))
    }

    /// Maximum along `axis` and the index of the first maximum (NaN propagates as max).
    public func maxWithIndices(axis: Int, keepDims: Bool = false) -> (values: Tensor, indices: [Int]) {
        let a = normalizeAxis(axis)
        let (c, outer, n, inner) = reductionLayout(a)
        precondition(n > 0, "max over an empty axis of \(shape)")
        var s = shape
        s[a] = 1
        let vals = Tensor(zeros: s, zeroed: false)
        var idx = [Int](repeating: 0, count: outer * inner)
        let pi = c.pointer, pv = vals.pointer
        for o in 0..<outer {
            for i in 0..<inner {
                var best = pi[o * n * inner + i], bi = 0
                if !best.isNaN {
                    for j in 1..<n {
                        let v = pi[(o * n + j) * inner + i]
                        if v > best || v.isNaN { best = v; bi = j; if v.isNaN { break } }
                    }
                }
                pv[o * inner + i] = best
                idx[o * inner + i] = bi
            }
        }
        let outShape = keepDims ? s : shape.enumerated().filter { $0.offset != a }.map(\.element)
        let out = Tensor(storage: vals.storage, shape: outShape)
        let inShape = shape
        let tracked = out.recorded("max", [self]) { g in
            let gi = Tensor(zeros: inShape)
            let pg = g.contiguousF32().pointer, po = gi.pointer
            for o in 0..<outer { for i in 0..<inner { po[(o * n + idx[o * inner + i]) * inner + i] = pg[o * inner + i] } }
            return [gi]
        }
        return (tracked, idx)
    }
    public func max(axis: Int, keepDims: Bool = false) -> Tensor { maxWithIndices(axis: axis, keepDims: keepDims).values }
    public func min(axis: Int, keepDims: Bool = false) -> Tensor { neg().max(axis: axis, keepDims: keepDims).neg() }
    /// Index of the maximum along `axis` for every other position (row-major).
    public func argmax(axis: Int = -1) -> [Int] { withNoGrad { maxWithIndices(axis: axis).indices } }
    /// The largest element.
    public func max() -> Tensor { reshaped([-1]).max(axis: 0) }
}
