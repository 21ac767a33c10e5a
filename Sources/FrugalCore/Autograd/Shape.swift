// View ops (reshape, permute, expand, slice) and joins (concat, stack, split).

extension Tensor {
    /// Resolves one -1 in a requested shape.
    func resolveShape(_ requested: [Int]) -> [Int] {
        var s = requested
        if let i = s.firstIndex(of: -1) {
            let known = s.enumerated().filter { $0.offset != i }.map(\.element).reduce(1, *)
            precondition(known > 0 && count % known == 0, "reshape: cannot infer -1 in \(requested) for \(count) elements (shape \(shape))")
            s[i] = count / known
        }
        precondition(Tensor.product(s) == count, "reshape: shape \(requested) does not hold \(count) elements of shape \(shape)")
        return s
    }

    /// Same elements with another shape (a view when contiguous, else a copy). One -1 is inferred.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        let s = resolveShape(newShape)
        if s == shape { return self }
        let src = isContiguous && dtype == .float32 ? self : contiguous()
        let out = Tensor(storage: src.storage, shape: s, offset: src.offset)
        let old = shape
        return out.recorded("reshape", [src]) { g in [g.reshaped(old)] }
    }
    public func reshaped(_ dims: Int...) -> Tensor { reshaped(dims) }
    /// Collapses axes `from...to` into one.
    public func flattened(from: Int = 0, to: Int = -1) -> Tensor {
        let a = normalizeAxis(from), b = normalizeAxis(to)
        if rank == 0 { return reshaped([1]) }
        var s = Array(shape[..<a])
        s.append(shape[a...b].reduce(1, *))
        s.append(contentsOf: shape[(b + 1)...])
        return reshaped(s)
    }
    public func unsqueezed(_ axis: Int) -> Tensor {
        let a = axis < 0 ? axis + rank + 1 : axis
        var s = shape
        s.insert(1, at: a)
        return reshaped(s)
    }
    public func squeezed(_ axis: Int) -> Tensor {
        let a = normalizeAxis(axis)
        precondition(shape[a] == 1, "squeeze: axis \(axis) of \(shape) is not 1")
        var s = shape
        s.remove(at: a)
        return reshaped(s)
    }

    /// A contiguous float32 copy that autograd tracks (identity when already contiguous).
    public func contiguous() -> Tensor {
        if isContiguous && dtype == .float32 { return self }
        return contiguousF32().recorded("contiguous", [self]) { g in [g] }
    }

    /// Reorders axes (a view).
    public func permuted(_ order: [Int]) -> Tensor {
        precondition(order.count == rank && Set(order) == Set(0..<rank), "permute: \(order) is not a permutation of \(rank) axes")
        let out = Tensor(storage: storage, shape: order.map { shape[$0] }, strides: order.map { strides[$0] }, offset: offset)
        var inverse = [Int](repeating: 0, count: rank)
        for (i, o) in order.enumerated() { inverse[o] = i }
        return out.recorded("permute", [self]) { g in [g.permuted(inverse)] }
    }
    public func permuted(_ order: Int...) -> Tensor { permuted(order) }
    /// Swaps two axes (a view); default the last two.
    public func transposed(_ a: Int = -2, _ b: Int = -1) -> Tensor {
        var order = Array(0..<rank)
        order.swapAt(normalizeAxis(a), normalizeAxis(b))
        return permuted(order)
    }
    /// The transpose of a matrix.
    public var T: Tensor { transposed() }

    /// Broadcasts to `target` without copying (stride 0 on expanded axes).
    public func expanded(to target: [Int]) -> Tensor {
        if target == shape { return self }
        let out = Tensor(storage: storage, shape: target, strides: broadcastStrides(to: target), offset: offset)
        let s = shape
        return out.recorded("expand", [self]) { g in [g.sumTo(s)] }
    }

    /// Elements `start..<end` (step `step`) along `axis` (a view).
    public func slice(axis: Int, _ start: Int, _ end: Int, step: Int = 1) -> Tensor {
        let a = normalizeAxis(axis)
        precondition(step >= 1, "slice: step must be positive, got \(step)")
        precondition(start >= 0 && end <= shape[a] && start <= end, "slice \(start)..<\(end) out of range for axis \(axis) of \(shape)")
        var s = shape, st = strides
        s[a] = (end - start + step - 1) / step
        st[a] = strides[a] * step
        let out = Tensor(storage: storage, shape: s, strides: st, offset: offset + start * strides[a])
        let full = shape
        return out.recorded("slice", [self]) { g in
            // Scatter the gradient into a zero tensor of the input's shape.
            let gi = Tensor(zeros: full)
            let view = Tensor(storage: gi.storage, shape: s, strides: Tensor.contiguousStrides(full).enumerated().map { $0.offset == a ? $0.element * step : $0.element }, offset: start * Tensor.contiguousStrides(full)[a])
            view.copyFrom(g)
            return [gi]
        }
    }

    /// Index `i` along `axis`, removing that axis (a view).
    public func select(axis: Int, _ i: Int) -> Tensor { slice(axis: axis, i, i + 1).squeezed(axis) }

    /// Writes `src`'s values into this (possibly strided) float32 view, untracked.
    public func copyFrom(_ src: Tensor) {
        precondition(src.shape == shape, "copyFrom: \(src.shape) into \(shape)")
        precondition(dtype == .float32, "copyFrom needs a float32 destination")
        let s = src.contiguousF32()
        let ps = s.pointer, pd = storage.floats + offset
        if isContiguous { pd.update(from: ps, count: count); return }
        let r = rank
        let inner = shape[r - 1], istride = strides[r - 1]
        forEachRow(shape: shape, stridesA: strides, stridesB: Tensor.contiguousStrides(shape)) { od, os, _ in
            for i in 0..<inner { pd[od + i * istride] = ps[os + i] }
        }
    }

    /// Splits along `axis` into pieces of the given sizes (views).
    public func split(_ sizes: [Int], axis: Int) -> [Tensor] {
        let a = normalizeAxis(axis)
        precondition(sizes.reduce(0, +) == shape[a], "split: sizes \(sizes) do not add up to \(shape[a]) (axis \(axis) of \(shape))")
        var start = 0
        return sizes.map { n in defer { start += n }; return slice(axis: a, start, start + n) }
    }
    /// Splits into `parts` equal pieces along `axis`.
    public func chunked(_ parts: Int, axis: Int) -> [Tensor] {
        let n = shape[normalizeAxis(axis)]
        precondition(n % parts == 0, "chunk: \(n) not divisible into \(parts) parts")
        return split([Int](repeating: n / parts, count: parts), axis: axis)
    }

    /// Joins tensors along an existing axis.
    public static func concat(_ ts: [Tensor], axis: Int) -> Tensor {
        precondition(!ts.isEmpty, "concat of no tensors")
        let a = ts[0].normalizeAxis(axis)
        var outShape = ts[0].shape
        outShape[a] = 0
        for t in ts {
            precondition(t.rank == ts[0].rank && (0..<t.rank).allSatisfy { $0 == a || t.shape[$0] == ts[0].shape[$0] },
                         "concat: shapes \(ts.map(\.shape)) differ outside axis \(axis)")
            outShape[a] += t.shape[a]
        }
        let out = Tensor(zeros: outShape, zeroed: false)
        let outer = outShape[..<a].reduce(1, *)
        let innerOut = outShape[a...].reduce(1, *)
        var col = 0
        for t in ts {
            let c = t.contiguousF32()
            let w = t.shape[a...].reduce(1, *)
            let pc = c.pointer, po = out.pointer
            for o in 0..<outer { (po + o * innerOut + col).update(from: pc + o * w, count: w) }
            col += w
        }
        let sizes = ts.map { $0.shape[a] }
        return out.recorded("concat", ts) { g in g.split(sizes, axis: a).map { $0.contiguousF32() } }
    }
    /// Joins tensors of one shape along a new axis.
    public static func stack(_ ts: [Tensor], axis: Int = 0) -> Tensor {
        precondition(!ts.isEmpty, "stack of no tensors")
        let a = axis < 0 ? axis + ts[0].rank + 1 : axis
        return concat(ts.map { $0.unsqueezed(a) }, axis: a)
    }
}
