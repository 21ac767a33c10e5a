// Gathers and scatters: embedding lookup (index select), gather along an axis, scatter-add.

extension Tensor {
    /// Rows of a [n, d...] table picked by `indices` (embedding lookup): result [indices.count, d...].
    /// The backward scatters-adds into the table's gradient.
    public func indexSelect(_ indices: [Int]) -> Tensor {
        precondition(rank >= 1, "indexSelect on a scalar")
        let n = shape[0]
        let rowSize = shape.dropFirst().reduce(1, *)
        let table = contiguousF32()
        let out = Tensor(zeros: [indices.count] + shape.dropFirst(), zeroed: false)
        let pt = table.pointer, po = out.pointer
        for (r, i) in indices.enumerated() {
            precondition(i >= 0 && i < n, "indexSelect: index \(i) out of range 0..<\(n)")
            (po + r * rowSize).update(from: pt + i * rowSize, count: rowSize)
        }
        let full = shape
        return out.recorded("indexSelect", [self]) { g in
            let gi = Tensor(zeros: full)
            let pg = g.contiguousF32().pointer, pd = gi.pointer
            for (r, i) in indices.enumerated() {
                let d = pd + i * rowSize, s = pg + r * rowSize
                for j in 0..<rowSize { d[j] += s[j] }
            }
            return [gi]
        }
    }

    /// out[..., j, ...] = self[..., index[..., j, ...], ...] along `axis`; `index` has the
    /// output's shape (as torch.gather), given row-major.
    public func gather(axis: Int, index: [Int], indexShape: [Int]) -> Tensor {
        let a = normalizeAxis(axis)
        precondition(indexShape.count == rank && Tensor.product(indexShape) == index.count, "gather: index shape \(indexShape) for \(index.count) indices on \(shape)")
        for d in 0..<rank where d != a { precondition(indexShape[d] <= shape[d], "gather: index shape \(indexShape) exceeds \(shape)") }
        let c = contiguousF32()
        let st = Tensor.contiguousStrides(shape)
        let out = Tensor(zeros: indexShape, zeroed: false)
        let ist = Tensor.contiguousStrides(indexShape)
        var srcOffsets = [Int](repeating: 0, count: index.count)
        for flat in 0..<index.count {
            var rem = flat, off = 0
            for d in 0..<rank {
                let i = rem / ist[d]
                rem %= ist[d]
                if d == a {
                    let v = index[flat]
                    precondition(v >= 0 && v < shape[a], "gather: index \(v) out of range for axis \(axis) of \(shape)")
                    off += v * st[d]
                } else { off += i * st[d] }
            }
            srcOffsets[flat] = off
        }
        let ps = c.pointer, po = out.pointer
        for i in 0..<index.count { po[i] = ps[srcOffsets[i]] }
        let full = shape
        return out.recorded("gather", [self]) { g in
            let gi = Tensor(zeros: full)
            let pg = g.contiguousF32().pointer, pd = gi.pointer
            for i in 0..<srcOffsets.count { pd[srcOffsets[i]] += pg[i] }
            return [gi]
        }
    }

    /// A copy of self with `src` rows added at `indices` along axis 0: out[indices[r]] += src[r].
    public func scatterAdd(_ indices: [Int], _ src: Tensor) -> Tensor {
        let rowSize = shape.dropFirst().reduce(1, *)
        precondition(src.shape == [indices.count] + shape.dropFirst(), "scatterAdd: source \(src.shape) for \(indices.count) rows of \(shape)")
        let out = copyTensor()
        let ps = src.contiguousF32().pointer, po = out.pointer
        for (r, i) in indices.enumerated() {
            precondition(i >= 0 && i < shape[0], "scatterAdd: index \(i) out of range 0..<\(shape[0])")
            let d = po + i * rowSize, s = ps + r * rowSize
            for j in 0..<rowSize { d[j] += s[j] }
        }
        return out.recorded("scatterAdd", [self, src]) { g in [g, g.indexSelect(indices)] }
    }
}
