// Matrix products: matmul (batched, broadcasting batch axes) and the fused linear layer op.

extension Tensor {
    /// How a 2-D float32 view can be handed to GEMM without copying: pointer, leading dimension
    /// and whether it is stored transposed. Copies when neither layout applies.
    func gemmOperand() -> (Tensor, UnsafePointer<Float>, Int, Bool) {
        precondition(rank == 2, "gemmOperand on shape \(shape)")
        if dtype == .float32 {
            if strides[1] == 1 && (strides[0] >= shape[1] || shape[0] == 1) { return (self, UnsafePointer(pointer), Swift.max(strides[0], shape[1], 1), false) }
            if strides[0] == 1 && (strides[1] >= shape[0] || shape[1] == 1) { return (self, UnsafePointer(pointer), Swift.max(strides[1], shape[0], 1), true) }
        }
        let c = contiguousF32()
        return (c, UnsafePointer(c.pointer), Swift.max(shape[1], 1), false)
    }

    /// C[m,n] = self[m,k] · other[k,n] for 2-D tensors, untracked.
    func matmul2DRaw(_ other: Tensor, into out: Tensor? = nil) -> Tensor {
        let m = shape[0], k = shape[1], n = other.shape[1]
        precondition(other.shape[0] == k, "matmul: shapes \(shape) and \(other.shape) do not match")
        let c = out ?? Tensor(zeros: [m, n], zeroed: false)
        if m == 0 || n == 0 { return c }
        if k == 0 { c.filled(0); return c }
        let (ka, pa, lda, ta) = gemmOperand()
        let (kb, pb, ldb, tb) = other.gemmOperand()
        GEMM.sgemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: 1, a: pa, lda: lda, b: pb, ldb: ldb, beta: 0, c: c.pointer, ldc: n)
        withExtendedLifetime((ka, kb)) {}
        return c
    }

    /// Matrix product with NumPy semantics for rank >= 2 (batch axes broadcast); a 1-D right
    /// operand is treated as a column vector.
    public func matmul(_ other: Tensor) -> Tensor {
        if other.rank == 1 { return matmul(other.unsqueezed(1)).squeezed(-1) }
        precondition(rank >= 2 && other.rank >= 2, "matmul needs rank >= 2, got \(shape) and \(other.shape)")
        let a = self.detach(), b = other.detach()
        let out: Tensor
        if rank == 2 && other.rank == 2 {
            out = a.matmul2DRaw(b)
        } else {
            let batch = broadcastShapes(Array(shape.dropLast(2)), Array(other.shape.dropLast(2)))
            let m = shape[rank - 2], k = shape[rank - 1], n = other.shape[other.rank - 1]
            precondition(other.shape[other.rank - 2] == k, "matmul: shapes \(shape) and \(other.shape) do not match")
            let ae = a.expanded(to: batch + [m, k]), be = b.expanded(to: batch + [k, n])
            let nb = batch.reduce(1, *)
            out = Tensor(zeros: batch + [m, n], zeroed: false)
            let a3 = ae.rank == 3 ? ae : Tensor(storage: ae.storage, shape: [nb, m, k], strides: ae.isContiguous ? [m * k, k, 1] : nil, offset: ae.offset)
            // Walk batch indices with the expanded strides.
            let aStr = ae.strides, bStr = be.strides
            var idx = [Int](repeating: 0, count: batch.count)
            for i in 0..<nb {
                var oa = ae.offset, ob = be.offset
                for d in 0..<batch.count { oa += idx[d] * aStr[d]; ob += idx[d] * bStr[d] }
                let av = Tensor(storage: ae.storage, shape: [m, k], strides: Array(aStr.suffix(2)), offset: oa)
                let bv = Tensor(storage: be.storage, shape: [k, n], strides: Array(bStr.suffix(2)), offset: ob)
                let cv = Tensor(storage: out.storage, shape: [m, n], offset: i * m * n)
                _ = av.matmul2DRaw(bv, into: cv)
                var d = batch.count - 1
                while d >= 0 { idx[d] += 1; if idx[d] < batch[d] { break }; idx[d] = 0; d -= 1 }
            }
            _ = a3
        }
        return out.recorded("matmul", [self, other]) { g in
            [self.requiresGrad ? g.matmul(b.transposed()).sumTo(a.shape) : nil,
             other.requiresGrad ? a.transposed().matmul(g).sumTo(b.shape) : nil]
        }
    }

    /// y = x · Wᵀ + b with W stored [out, in] (any dtype) and x [..., in]. Batch-1 inputs use
    /// the row-dot GEMV kernel; larger batches use GEMM.
    public func linear(weight w: Tensor, bias: Tensor? = nil) -> Tensor {
        let inF = shape[rank - 1]
        precondition(w.rank == 2 && w.shape[1] == inF, "linear: input \(shape) does not match weight \(w.shape)")
        let outF = w.shape[0]
        let lead = Array(shape.dropLast())
        let m = lead.reduce(1, *)
        let x2 = contiguousF32()
        let out = Tensor(zeros: lead + [outF], zeroed: false)
        let bc = bias?.contiguousF32()
        if m == 1 || w.dtype != .float32 {
            let wc = w.isContiguous ? w : w.contiguousF32()
            let wraw = UnsafeRawPointer(wc.storage.raw + wc.offset * wc.dtype.size)
            for r in 0..<m {
                GEMV.gemv(out: outF, in: inF, w: wraw, dtype: wc.dtype, x: x2.pointer + r * inF, bias: bc.map { UnsafePointer($0.pointer) }, y: out.pointer + r * outF)
            }
        } else {
            let wv = w.dtype == .float32 ? w : w.contiguousF32()
            let (kw, pw, ldw, tw) = wv.gemmOperand()
            GEMM.sgemm(transA: false, transB: !tw, m: m, n: outF, k: inF, alpha: 1, a: x2.pointer, lda: inF, b: pw, ldb: ldw, beta: 0, c: out.pointer, ldc: outF)
            withExtendedLifetime(kw) {}
            if let bc { Tensor.addRowVector(bc.pointer, to: out.pointer, rows: m, cols: outF) }
        }
        var inputs = [self, w]
        if let bias { inputs.append(bias) }
        let xs = x2.detach(), inShape = shape
        return out.recorded("linear", inputs) { g in
            let g2 = g.contiguousF32().reshaped([m, outF])
            let gx: Tensor? = self.requiresGrad ? g2.matmul2DRaw(w.detach().dtype == .float32 ? w.detach() : w.contiguousF32()).reshaped(inShape) : nil
            let gw: Tensor? = w.requiresGrad ? g2.transposed().matmul2DRaw(xs.reshaped([m, inF])) : nil
            var r: [Tensor?] = [gx, gw]
            if let bias { r.append(bias.requiresGrad ? g2.sumAxisRaw(0).reshaped([outF]) : nil) }
            return r
        }
    }

    /// rows x cols matrix c (row-major, contiguous) += v (cols) on every row, split by rows over
    /// the kernel threads when large.
    static func addRowVector(_ v: UnsafePointer<Float>, to c: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
        // Disjoint row ranges of c; the pointers outlive the call.
        let box = AddressBox([UnsafeRawPointer(v), UnsafeRawPointer(c)])
        Kernels.parallelRanges(rows, grain: Swift.max(1, Kernels.elementwiseGrain / Swift.max(cols, 1))) { r0, r1 in
            let v = box.f(0), c = box.f(1)
            for r in r0..<r1 { VectorOps.axpy(1, v, c + r * cols, count: cols) }
        }
    }

    /// A linear layer with a low-rank update (LoRA), fused: y = x·Wᵀ + b + s·(x·Aᵀ)·Bᵀ, with W
    /// [out, in] (any dtype), b [out] or nil, A [r, in] and B [out, r]; x [..., in].
    ///
    /// The update is added into the base product's output by a second GEMM (alpha s, beta 1): no
    /// output-sized temporaries, where `linear` + `linear` + scale + add made three. Only x·Aᵀ
    /// ([rows, r]) is kept for backward, which computes dx = g·W + (s·g·B)·A into one tensor,
    /// dA = (s·g·B)ᵀ·x, dB = s·gᵀ·(x·Aᵀ), and dW, db only for the ones that require gradients.
    public func loraLinear(weight w: Tensor, bias: Tensor?, loraA a: Tensor, loraB b: Tensor, scaling s: Float) -> Tensor {
        let inF = shape[rank - 1], outF = w.shape[0], r = a.shape[0]
        precondition(w.rank == 2 && w.shape[1] == inF, "loraLinear: input \(shape) does not match weight \(w.shape)")
        precondition(a.shape == [r, inF] && b.shape == [outF, r], "loraLinear: A \(a.shape) and B \(b.shape) do not fit weight \(w.shape)")
        let m = count / Swift.max(inF, 1)
        let x2 = contiguousF32()
        let out = withNoGrad { x2.linear(weight: w, bias: bias) }
        let ac = a.contiguousF32(), bc = b.contiguousF32()
        let xa = Tensor(zeros: [m, r], zeroed: false)
        if m > 0 && r > 0 {
            GEMM.sgemm(transA: false, transB: true, m: m, n: r, k: inF, alpha: 1, a: x2.pointer, lda: inF, b: ac.pointer, ldb: inF,
                       beta: 0, c: xa.pointer, ldc: r)
            GEMM.sgemm(transA: false, transB: true, m: m, n: outF, k: r, alpha: s, a: xa.pointer, lda: r, b: bc.pointer, ldb: r,
                       beta: 1, c: out.pointer, ldc: outF)
        }
        var inputs = [self, w]
        if let bias { inputs.append(bias) }
        inputs += [a, b]
        let xs = x2.detach(), inShape = shape
        return out.recorded("loraLinear", inputs) { g in
            let g2 = g.contiguousF32().reshaped([m, outF])
            let needX = self.requiresGrad, needA = a.requiresGrad, needB = b.requiresGrad
            // s·g·B [m, r]: the gradient of x·Aᵀ.
            var gxa: Tensor?
            if needX || needA {
                let t = Tensor(zeros: [m, r], zeroed: false)
                GEMM.sgemm(transA: false, transB: false, m: m, n: r, k: outF, alpha: s, a: g2.pointer, lda: outF, b: bc.pointer, ldb: r,
                           beta: 0, c: t.pointer, ldc: r)
                gxa = t
            }
            var gb: Tensor?
            if needB {
                let t = Tensor(zeros: [outF, r], zeroed: false)
                GEMM.sgemm(transA: true, transB: false, m: outF, n: r, k: m, alpha: s, a: g2.pointer, lda: outF, b: xa.pointer, ldb: r,
                           beta: 0, c: t.pointer, ldc: r)
                gb = t
            }
            var ga: Tensor?
            if needA, let gxa {
                let t = Tensor(zeros: [r, inF], zeroed: false)
                GEMM.sgemm(transA: true, transB: false, m: r, n: inF, k: m, alpha: 1, a: gxa.pointer, lda: r, b: xs.pointer, ldb: inF,
                           beta: 0, c: t.pointer, ldc: inF)
                ga = t
            }
            var gx: Tensor?
            if needX, let gxa {
                let t = g2.matmul2DRaw(w.detach().dtype == .float32 ? w.detach() : w.contiguousF32())
                GEMM.sgemm(transA: false, transB: false, m: m, n: inF, k: r, alpha: 1, a: gxa.pointer, lda: r, b: ac.pointer, ldb: inF,
                           beta: 1, c: t.pointer, ldc: inF)
                gx = t.reshaped(inShape)
            }
            var res: [Tensor?] = [gx, w.requiresGrad ? g2.transposed().matmul2DRaw(xs.reshaped([m, inF])) : nil]
            if let bias { res.append(bias.requiresGrad ? g2.sumAxisRaw(0).reshaped([outF]) : nil) }
            res += [ga, gb]
            return res
        }
    }
}
