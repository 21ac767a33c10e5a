// Convolution, pooling and batch normalisation on NCHW tensors, with backward rules. The kernels
// (im2col + GEMM, direct depthwise, pooling loops) live in Kernels/Conv2D.swift and Pool2D.swift.

extension Tensor {
    /// 2-D convolution of x [N, C, H, W] with weight [O, C/groups, kH, kW] (+ bias [O]).
    public func conv2d(weight w: Tensor, bias: Tensor? = nil, stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0),
                       dilation: (Int, Int) = (1, 1), groups: Int = 1) -> Tensor {
        precondition(rank == 4 && w.rank == 4, "conv2d: input \(shape) and weight \(w.shape) must be 4-D")
        precondition(shape[1] == w.shape[1] * groups, "conv2d: input channels \(shape[1]) != weight \(w.shape) x groups \(groups)")
        let p = Conv2DParams(batch: shape[0], inC: shape[1], inH: shape[2], inW: shape[3], outC: w.shape[0], kH: w.shape[2], kW: w.shape[3],
                             strideH: stride.0, strideW: stride.1, padH: padding.0, padW: padding.1,
                             dilationH: dilation.0, dilationW: dilation.1, groups: groups)
        let x = contiguousF32(), wc = w.contiguousF32(), bc = bias?.contiguousF32()
        let out = Tensor(zeros: [p.batch, p.outC, p.outH, p.outW], zeroed: false)
        // Keep the column matrix for the weight gradient when this op will be differentiated.
        let cache = GradMode.isEnabled && w.requiresGrad ? Conv2DKernel.ConvColumnCache() : nil
        Conv2DKernel.forward(p, input: x.pointer, weight: wc.pointer, bias: bc.map { UnsafePointer($0.pointer) }, output: out.pointer, columns: cache)
        var inputs = [self, w]
        if let bias { inputs.append(bias) }
        let xs = x.detach(), ws = wc.detach()
        let needX = requiresGrad
        return out.recorded("conv2d", inputs) { g in
            let gc = g.contiguousF32()
            var gx: Tensor? = nil
            if needX {
                let t = Tensor(zeros: xs.shape, zeroed: false)
                Conv2DKernel.backwardInput(p, gradOutput: gc.pointer, weight: ws.pointer, gradInput: t.pointer)
                gx = t
            }
            var gw: Tensor? = nil, gb: Tensor? = nil
            if w.requiresGrad || (bias?.requiresGrad ?? false) {
                let tw = Tensor(zeros: ws.shape)
                let tb = bias != nil ? Tensor(zeros: [p.outC]) : nil
                Conv2DKernel.backwardWeight(p, input: xs.pointer, gradOutput: gc.pointer, gradWeight: tw.pointer, gradBias: tb?.pointer, columns: cache)
                gw = tw; gb = tb
            }
            var r: [Tensor?] = [gx, gw]
            if bias != nil { r.append(gb) }
            return r
        }
    }

    /// Max pooling over [N, C, H, W]; stride defaults to the kernel size (PyTorch).
    public func maxPool2d(kernel: Int, stride: Int? = nil, padding: Int = 0, ceilMode: Bool = false) -> Tensor {
        precondition(rank == 4, "maxPool2d: input \(shape) must be 4-D")
        let p = Pool2DParams(batch: shape[0], channels: shape[1], inH: shape[2], inW: shape[3], kernel: kernel, stride: stride, padding: padding, ceilMode: ceilMode)
        let x = contiguousF32()
        let out = Tensor(zeros: [p.batch, p.channels, p.outH, p.outW], zeroed: false)
        let idx = UnsafeMutablePointer<Int32>.allocate(capacity: Swift.max(p.outputCount, 1))
        let holder = IndexBuffer(idx)
        Pool2DKernel.maxForward(p, input: x.pointer, output: out.pointer, indices: idx)
        let inShape = shape
        return out.recorded("maxPool2d", [self]) { g in
            let gi = Tensor(zeros: inShape)
            Pool2DKernel.maxBackward(p, gradOutput: g.contiguousF32().pointer, indices: holder.pointer, gradInput: gi.pointer)
            return [gi]
        }
    }

    /// Average pooling; `countIncludePad` as PyTorch (true by default; DARTS uses false).
    public func avgPool2d(kernel: Int, stride: Int? = nil, padding: Int = 0, ceilMode: Bool = false, countIncludePad: Bool = true) -> Tensor {
        precondition(rank == 4, "avgPool2d: input \(shape) must be 4-D")
        let p = Pool2DParams(batch: shape[0], channels: shape[1], inH: shape[2], inW: shape[3], kernel: kernel, stride: stride, padding: padding, ceilMode: ceilMode)
        let x = contiguousF32()
        let out = Tensor(zeros: [p.batch, p.channels, p.outH, p.outW], zeroed: false)
        Pool2DKernel.avgForward(p, countIncludePad: countIncludePad, input: x.pointer, output: out.pointer)
        let inShape = shape
        return out.recorded("avgPool2d", [self]) { g in
            let gi = Tensor(zeros: inShape)
            Pool2DKernel.avgBackward(p, countIncludePad: countIncludePad, gradOutput: g.contiguousF32().pointer, gradInput: gi.pointer)
            return [gi]
        }
    }

    /// Adaptive average pooling to [outH, outW] (PyTorch's bin rule).
    public func adaptiveAvgPool2d(_ outH: Int, _ outW: Int) -> Tensor {
        precondition(rank == 4, "adaptiveAvgPool2d: input \(shape) must be 4-D")
        let p = AdaptivePool2DParams(batch: shape[0], channels: shape[1], inH: shape[2], inW: shape[3], outH: outH, outW: outW)
        let x = contiguousF32()
        let out = Tensor(zeros: [shape[0], shape[1], outH, outW], zeroed: false)
        Pool2DKernel.adaptiveAvgForward(p, input: x.pointer, output: out.pointer)
        let inShape = shape
        return out.recorded("adaptiveAvgPool2d", [self]) { g in
            let gi = Tensor(zeros: inShape)
            Pool2DKernel.adaptiveAvgBackward(p, gradOutput: g.contiguousF32().pointer, gradInput: gi.pointer)
            return [gi]
        }
    }

    /// Batch normalisation of [N, C, H, W] (or [N, C]) with given per-channel mean and inverse
    /// std, then affine: y = (x - mean) · invStd · γ + β. In training the statistics come from
    /// the batch and the backward includes their dependence on x.
    public func batchNorm(mean: Tensor?, variance: Tensor?, weight: Tensor?, bias: Tensor?, training: Bool, eps: Float,
                          batchStats: ((_ mean: [Float], _ variance: [Float]) -> Void)? = nil) -> Tensor {
        precondition(rank == 4 || rank == 2, "batchNorm: input \(shape) must be [N, C, H, W] or [N, C]")
        let n = shape[0], c = shape[1], hw = rank == 4 ? shape[2] * shape[3] : 1
        let x = contiguousF32()
        let px = x.pointer
        var mu = [Float](repeating: 0, count: c), invStd = [Float](repeating: 0, count: c)
        if training {
            var varr = [Float](repeating: 0, count: c)
            mu.withUnsafeMutableBufferPointer { m in
                varr.withUnsafeMutableBufferPointer { v in
                    BatchNormKernel.statistics(px, n: n, c: c, hw: hw, mean: m.baseAddress!, variance: v.baseAddress!)
                }
            }
            for ch in 0..<c { invStd[ch] = 1 / (varr[ch] + eps).squareRoot() }
            batchStats?(mu, varr)
        } else {
            precondition(mean != nil && variance != nil, "batchNorm in eval mode needs running statistics")
            let mv = mean!.array, vv = variance!.array
            for ch in 0..<c { mu[ch] = mv[ch]; invStd[ch] = 1 / (vv[ch] + eps).squareRoot() }
        }
        let gamma = weight?.array, beta = bias?.array
        let out = Tensor(zeros: shape, zeroed: false)
        var scale = [Float](repeating: 0, count: c), shift = [Float](repeating: 0, count: c)
        for ch in 0..<c {
            scale[ch] = invStd[ch] * (gamma?[ch] ?? 1)
            shift[ch] = (beta?[ch] ?? 0) - mu[ch] * scale[ch]
        }
        BatchNormKernel.scaleShift(px, out.pointer, n: n, c: c, hw: hw, scale: scale, shift: shift)
        var inputs = [self]
        if let weight { inputs.append(weight) }
        if let bias { inputs.append(bias) }
        let xs = x.detach()
        let selfNeeds = requiresGrad
        return out.recorded("batchNorm", inputs) { g in
            let gc = g.contiguousF32()
            var dgamma = [Float](repeating: 0, count: c), dbeta = [Float](repeating: 0, count: c)
            let gx: Tensor? = selfNeeds ? Tensor(zeros: xs.shape, zeroed: false) : nil
            dgamma.withUnsafeMutableBufferPointer { dg in
                dbeta.withUnsafeMutableBufferPointer { db in
                    if let gamma {
                        gamma.withUnsafeBufferPointer { gp in
                            BatchNormKernel.backward(gc.pointer, xs.pointer, n: n, c: c, hw: hw, mean: mu, invStd: invStd, gamma: gp.baseAddress, training: training,
                                                     dGamma: dg.baseAddress!, dBeta: db.baseAddress!, gradInput: gx?.pointer)
                        }
                    } else {
                        BatchNormKernel.backward(gc.pointer, xs.pointer, n: n, c: c, hw: hw, mean: mu, invStd: invStd, gamma: nil, training: training,
                                                 dGamma: dg.baseAddress!, dBeta: db.baseAddress!, gradInput: gx?.pointer)
                    }
                }
            }
            var r: [Tensor?] = [gx]
            if weight != nil { r.append(Tensor(dgamma)) }
            if bias != nil { r.append(Tensor(dbeta)) }
            return r
        }
    }
}

/// Owns the argmax indices of a max-pooling forward until its backward no longer needs them.
final class IndexBuffer: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Int32>
    init(_ p: UnsafeMutablePointer<Int32>) { pointer = p }
    deinit { pointer.deallocate() }
}
