#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Softmax and log-softmax over an axis, numerically stable, with their backward rules.

extension Tensor {
    /// Moves `axis` last and returns a contiguous tensor viewed as [rows, n], plus the undo info.
    func rowsAlong(_ axis: Int) -> (Tensor, [Int]?) {
        let a = normalizeAxis(axis)
        if a == rank - 1 { return (contiguousF32(), nil) }
        var order = Array(0..<rank)
        order.remove(at: a)
        order.append(a)
        return (withNoGrad { permuted(order) }.contiguousF32(), order)
    }

    func unrows(_ t: Tensor, _ order: [Int]?) -> Tensor {
        guard let order else { return t }
        var inverse = [Int](repeating: 0, count: order.count)
        for (i, o) in order.enumerated() { inverse[o] = i }
        return withNoGrad { t.permuted(inverse) }.contiguousF32()
    }

    /// Row softmax / log-softmax through the SIMD kernels in `VectorOps` (stable; a fully masked
    /// row gives zeros).
    static func softmaxRows(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Int, n: Int, log: Bool) {
        if log { VectorOps.logSoftmaxRows(x, ldx: n, into: y, ldy: n, rows: rows, cols: n) }
        else { VectorOps.softmaxRows(x, ldx: n, into: y, ldy: n, rows: rows, cols: n) }
    }

    /// softmax along `axis`.
    public func softmax(axis: Int = -1) -> Tensor {
        let (x, order) = rowsAlong(axis)
        let n = x.shape.last ?? 1, rows = x.count / Swift.max(n, 1)
        let y = Tensor(zeros: x.shape, zeroed: false)
        Tensor.softmaxRows(x.pointer, y.pointer, rows: rows, n: n, log: false)
        let out = unrows(y, order)
        return out.recorded("softmax", [self]) { g in
            // dx = y * (g - sum(g * y))
            let (gr, _) = g.rowsAlong(axis)
            let dx = Tensor(zeros: gr.shape, zeroed: false)
            let pg = gr.pointer, py = y.pointer, pd = dx.pointer
            for r in 0..<rows {
                var dot: Float = 0
                for i in 0..<n { dot += pg[r * n + i] * py[r * n + i] }
                for i in 0..<n { pd[r * n + i] = py[r * n + i] * (pg[r * n + i] - dot) }
            }
            return [self.unrows(dx, order)]
        }
    }

    /// log(softmax) along `axis`, computed stably.
    public func logSoftmax(axis: Int = -1) -> Tensor {
        let (x, order) = rowsAlong(axis)
        let n = x.shape.last ?? 1, rows = x.count / Swift.max(n, 1)
        let y = Tensor(zeros: x.shape, zeroed: false)
        Tensor.softmaxRows(x.pointer, y.pointer, rows: rows, n: n, log: true)
        let out = unrows(y, order)
        return out.recorded("logSoftmax", [self]) { g in
            // dx = g - softmax * sum(g)
            let (gr, _) = g.rowsAlong(axis)
            let dx = Tensor(zeros: gr.shape, zeroed: false)
            let pg = gr.pointer, py = y.pointer, pd = dx.pointer
            for r in 0..<rows {
                var s: Float = 0
                for i in 0..<n { s += pg[r * n + i] }
                for i in 0..<n { pd[r * n + i] = pg[r * n + i] - expf(py[r * n + i]) * s }
            }
            return [self.unrows(dx, order)]
        }
    }
}
