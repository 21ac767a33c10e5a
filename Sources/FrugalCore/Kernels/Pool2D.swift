// 2-D pooling kernels on raw NCHW float32 buffers, following PyTorch's definitions
// (window placement, ceil mode, count_include_pad, argmax ties, adaptive bins) exactly.

/// Shape and hyper-parameters of a max or average pooling over contiguous NCHW float32 tensors.
///
/// Input `[batch, channels, inH, inW]`, output `[batch, channels, outH, outW]`, as PyTorch computes it:
/// `outH = floor_or_ceil((inH + 2*padH - kH) / strideH) + 1`, and in ceil mode the last window is dropped
/// when it would start inside the bottom padding.
///
///     let p = Pool2DParams(batch: 64, channels: 32, inH: 24, inW: 24, kernel: 2)  // stride 2 -> 12x12
public struct Pool2DParams: Sendable, Hashable, CustomStringConvertible {
    public let batch: Int
    public let channels: Int
    public let inH: Int
    public let inW: Int
    public let kH: Int
    public let kW: Int
    public let strideH: Int
    public let strideW: Int
    public let padH: Int
    public let padW: Int
    public let ceilMode: Bool

    public var outH: Int { Self.outputSize(inH, kH, padH, strideH, ceilMode) }
    public var outW: Int { Self.outputSize(inW, kW, padW, strideW, ceilMode) }
    /// Elements of the input tensor.
    public var inputCount: Int { batch * channels * inH * inW }
    /// Elements of the output tensor.
    public var outputCount: Int { batch * channels * outH * outW }

    /// Validates the shape with `precondition` (PyTorch's rules); messages name the offending values.
    /// A stride left nil equals the kernel size, as in PyTorch.
    public init(batch: Int, channels: Int, inH: Int, inW: Int, kH: Int, kW: Int,
                strideH: Int? = nil, strideW: Int? = nil, padH: Int = 0, padW: Int = 0, ceilMode: Bool = false) {
        let sH = strideH ?? kH, sW = strideW ?? kW
        precondition(batch >= 1 && channels >= 1 && inH >= 1 && inW >= 1,
                     "Pool2DParams: batch (\(batch)), channels (\(channels)), inH (\(inH)), inW (\(inW)) must all be >= 1")
        precondition(inH * inW <= Int(Int32.max), "Pool2DParams: plane \(inH)x\(inW) too large for Int32 argmax indices")
        precondition(kH >= 1 && kW >= 1, "Pool2DParams: kernel \(kH)x\(kW) must be at least 1x1")
        precondition(sH >= 1 && sW >= 1, "Pool2DParams: stride (\(sH), \(sW)) must be >= 1")
        precondition(padH >= 0 && padW >= 0 && padH <= kH / 2 && padW <= kW / 2,
                     "Pool2DParams: padding (\(padH), \(padW)) must be >= 0 and at most half the kernel \(kH)x\(kW)")
        precondition(inH + 2 * padH >= kH && inW + 2 * padW >= kW,
                     "Pool2DParams: kernel \(kH)x\(kW) is larger than the padded input \(inH + 2 * padH)x\(inW + 2 * padW)")
        self.batch = batch; self.channels = channels; self.inH = inH; self.inW = inW
        self.kH = kH; self.kW = kW; self.strideH = sH; self.strideW = sW
        self.padH = padH; self.padW = padW; self.ceilMode = ceilMode
    }

    /// Square kernel, stride and padding; `stride` nil means `kernel`.
    public init(batch: Int, channels: Int, inH: Int, inW: Int, kernel: Int, stride: Int? = nil,
                padding: Int = 0, ceilMode: Bool = false) {
        self.init(batch: batch, channels: channels, inH: inH, inW: inW, kH: kernel, kW: kernel,
                  strideH: stride, strideW: stride, padH: padding, padW: padding, ceilMode: ceilMode)
    }

    public var description: String {
        "Pool2D(\(batch)x\(channels)x\(inH)x\(inW), k \(kH)x\(kW), s \(strideH),\(strideW), p \(padH),\(padW)\(ceilMode ? ", ceil" : ""))"
    }

    /// PyTorch's `pooling_output_shape` with dilation 1.
    private static func outputSize(_ input: Int, _ k: Int, _ pad: Int, _ stride: Int, _ ceil: Bool) -> Int {
        var out = (input + 2 * pad - k + (ceil ? stride - 1 : 0)) / stride + 1  // numerator >= 0 by init
        if ceil && (out - 1) * stride >= input + pad { out -= 1 }
        return out
    }

    /// Window of output row/column `o` along one axis: `padded` is [o*stride - pad, min(that + k, in + pad)),
    /// the extent that count_include_pad divides by; `inside` is its part within the image.
    fileprivate static func window(_ o: Int, _ k: Int, _ pad: Int, _ stride: Int, _ input: Int)
        -> (padded: Int, inside: Range<Int>) {
        let start = o * stride - pad
        let end = min(start + k, input + pad)
        let lo = max(start, 0), hi = min(end, input)
        return (end - start, lo..<max(lo, hi))
    }
}

/// Shape of an adaptive pooling: input `[batch, channels, inH, inW]` to output `[batch, channels, outH, outW]`.
/// Output cell i along an axis covers input [floor(i*in/out), ceil((i+1)*in/out)), as in PyTorch.
public struct AdaptivePool2DParams: Sendable, Hashable {
    public let batch: Int
    public let channels: Int
    public let inH: Int
    public let inW: Int
    public let outH: Int
    public let outW: Int

    /// Validates the shape with `precondition`; messages name the offending values.
    public init(batch: Int, channels: Int, inH: Int, inW: Int, outH: Int, outW: Int) {
        precondition(batch >= 1 && channels >= 1 && inH >= 1 && inW >= 1 && outH >= 1 && outW >= 1,
                     "AdaptivePool2DParams: batch (\(batch)), channels (\(channels)), inH (\(inH)), inW (\(inW)), outH (\(outH)), outW (\(outW)) must all be >= 1")
        self.batch = batch; self.channels = channels; self.inH = inH; self.inW = inW
        self.outH = outH; self.outW = outW
    }

    /// Input range of output cell `i` along an axis of `input` cells pooled into `output`.
    fileprivate static func bin(_ i: Int, _ input: Int, _ output: Int) -> Range<Int> {
        (i * input / output)..<(((i + 1) * input + output - 1) / output)
    }
}

/// Pooling kernels on raw contiguous NCHW float32 buffers. Planes (n, c) are split over `threads` workers.
/// Forward passes overwrite their outputs; backward passes ACCUMULATE (+=) into `gradInput`.
public enum Pool2DKernel {
    /// Max pooling. Writes `output` and, per output element, `indices`: the argmax as a flat index
    /// ih*inW + iw into its own input plane (PyTorch's convention). Padding never wins; on ties the
    /// first maximum in row-major order wins; a NaN in the window propagates (as in PyTorch).
    public static func maxForward(_ p: Pool2DParams, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                                  indices: UnsafeMutablePointer<Int32>, threads: Int = Kernels.threads) {
        let plan = PoolPlan(p, countIncludePad: true)
        let inCount = p.inH * p.inW, outCount = p.outH * p.outW
        ParallelChunks.run(count: p.batch * p.channels, parts: threads) { _, planes in
            for plane in planes {
                plan.maxForward(input + plane * inCount, output + plane * outCount, indices + plane * outCount)
            }
        }
    }

    /// gradInput[n, c][indices[o]] += gradOutput[o] for every output element o of plane (n, c).
    /// Each index must lie in 0..<inH*inW (checked).
    public static func maxBackward(_ p: Pool2DParams, gradOutput: UnsafePointer<Float>, indices: UnsafePointer<Int32>,
                                   gradInput: UnsafeMutablePointer<Float>, threads: Int = Kernels.threads) {
        let inCount = p.inH * p.inW, outCount = p.outH * p.outW
        ParallelChunks.run(count: p.batch * p.channels, parts: threads) { _, planes in
            for plane in planes {
                let dx = gradInput + plane * inCount, dy = gradOutput + plane * outCount, idx = indices + plane * outCount
                for o in 0..<outCount {
                    let i = Int(idx[o])
                    precondition(i >= 0 && i < inCount, "Pool2DKernel.maxBackward: index \(i) at output \(o) of plane \(plane) outside 0..<\(inCount)")
                    dx[i] += dy[o]
                }
            }
        }
    }

    /// Average pooling. With `countIncludePad` (PyTorch's AvgPool2d default) each window divides by its
    /// size including padding (clipped at the padded border in ceil mode); without it, by the number of
    /// input elements it covers (DARTS uses `count_include_pad=False`).
    public static func avgForward(_ p: Pool2DParams, countIncludePad: Bool = true, input: UnsafePointer<Float>,
                                  output: UnsafeMutablePointer<Float>, threads: Int = Kernels.threads) {
        let plan = PoolPlan(p, countIncludePad: countIncludePad)
        let inCount = p.inH * p.inW, outCount = p.outH * p.outW
        ParallelChunks.run(count: p.batch * p.channels, parts: threads) { _, planes in
            for plane in planes { plan.avgForward(input + plane * inCount, output + plane * outCount) }
        }
    }

    /// Adjoint of `avgForward`: each gradOutput element is spread evenly (divided by the same count)
    /// over its window's input elements, accumulating into `gradInput`.
    public static func avgBackward(_ p: Pool2DParams, countIncludePad: Bool = true, gradOutput: UnsafePointer<Float>,
                                   gradInput: UnsafeMutablePointer<Float>, threads: Int = Kernels.threads) {
        let plan = PoolPlan(p, countIncludePad: countIncludePad)
        let inCount = p.inH * p.inW, outCount = p.outH * p.outW
        ParallelChunks.run(count: p.batch * p.channels, parts: threads) { _, planes in
            let scratch = plan.strideH == 1 && plan.strideW == 1 ? plan.boxScratch() : nil
            defer { scratch?.deallocate() }
            for plane in planes {
                if let scratch {
                    plan.avgBackwardGather(gradOutput + plane * outCount, gradInput + plane * inCount, scratch)
                } else {
                    plan.avgBackwardScatter(gradOutput + plane * outCount, gradInput + plane * inCount)
                }
            }
        }
    }

    /// Adaptive average pooling: output cell (i, j) is the mean of input rows
    /// [floor(i*inH/outH), ceil((i+1)*inH/outH)) and the matching columns.
    public static func adaptiveAvgForward(_ p: AdaptivePool2DParams, input: UnsafePointer<Float>,
                                          output: UnsafeMutablePointer<Float>, threads: Int = Kernels.threads) {
        ParallelChunks.run(count: p.batch * p.channels, parts: threads) { _, planes in
            for plane in planes {
                adaptivePlane(p, input + plane * p.inH * p.inW, output + plane * p.outH * p.outW, backward: false)
            }
        }
    }

    /// Adjoint of `adaptiveAvgForward`, accumulating into `gradInput`.
    public static func adaptiveAvgBackward(_ p: AdaptivePool2DParams, gradOutput: UnsafePointer<Float>,
                                           gradInput: UnsafeMutablePointer<Float>, threads: Int = Kernels.threads) {
        ParallelChunks.run(count: p.batch * p.channels, parts: threads) { _, planes in
            for plane in planes {
                adaptivePlane(p, gradOutput + plane * p.outH * p.outW, gradInput + plane * p.inH * p.inW, backward: true)
            }
        }
    }
}

// MARK: - Plane kernels

extension Pool2DKernel {
    /// One call's windows, computed once: per output row and column the part of its window inside the
    /// image and 1 / its extent for the divisor (a window's count is rowExtent * colExtent). The plane
    /// loops read every field into locals: through a closure context the compiler would reload them
    /// after each store to the output.
    private final class PoolPlan {
        let inH: Int, inW: Int, outH: Int, outW: Int, kH: Int, kW: Int, strideH: Int, strideW: Int, padH: Int, padW: Int
        let rowLo: UnsafeMutablePointer<Int>, rowHi: UnsafeMutablePointer<Int>
        let colLo: UnsafeMutablePointer<Int>, colHi: UnsafeMutablePointer<Int>
        let rowScale: UnsafeMutablePointer<Float>, colScale: UnsafeMutablePointer<Float>
        /// Output columns done eight at a time: those whose windows lie inside the image, when the
        /// column stride is 1 or 2 and there are at least eight of them; otherwise empty (0..<0).
        let vectorColumns: Range<Int>

        init(_ p: Pool2DParams, countIncludePad: Bool) {
            inH = p.inH; inW = p.inW; outH = p.outH; outW = p.outW; kH = p.kH; kW = p.kW
            strideH = p.strideH; strideW = p.strideW; padH = p.padH; padW = p.padW
            (rowLo, rowHi, rowScale) = Self.windows(outH, kH, padH, strideH, inH, countIncludePad)
            (colLo, colHi, colScale) = Self.windows(outW, kW, padW, strideW, inW, countIncludePad)
            let first = (padW + strideW - 1) / strideW  // window starts at or after column 0
            let last = inW + padW - kW                  // window ends at or before column inW - 1
            let end = last < 0 ? 0 : min(outW, last / strideW + 1)
            vectorColumns = (strideW <= 2 && end - first >= 8) ? first..<end : 0..<0
        }

        deinit {
            for buffer in [rowLo, rowHi, colLo, colHi] { buffer.deallocate() }
            rowScale.deallocate()
            colScale.deallocate()
        }

        private static func windows(_ count: Int, _ k: Int, _ pad: Int, _ stride: Int, _ input: Int, _ countIncludePad: Bool)
            -> (UnsafeMutablePointer<Int>, UnsafeMutablePointer<Int>, UnsafeMutablePointer<Float>) {
            let lo = UnsafeMutablePointer<Int>.allocate(capacity: count), hi = UnsafeMutablePointer<Int>.allocate(capacity: count)
            let scale = UnsafeMutablePointer<Float>.allocate(capacity: count)
            for o in 0..<count {
                let w = Pool2DParams.window(o, k, pad, stride, input)
                lo[o] = w.inside.lowerBound
                hi[o] = w.inside.upperBound
                let extent = countIncludePad ? w.padded : w.inside.count
                scale[o] = extent > 0 ? 1 / Float(extent) : 0
            }
            return (lo, hi, scale)
        }

        func maxForward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ indices: UnsafeMutablePointer<Int32>) {
            let inW = inW, outW = outW, kW = kW, sW = strideW, padW = padW, colLo = colLo, colHi = colHi
            let vector = vectorColumns, strideTwo = sW == 2
            let laneOffsets = SIMD8<Int32>(0, 1, 2, 3, 4, 5, 6, 7) &* Int32(sW)
            for oh in 0..<outH {
                let r0 = rowLo[oh], r1 = rowHi[oh]
                let yRow = y + oh * outW, iRow = indices + oh * outW
                for ow in 0..<outW where !vector.contains(ow) {
                    let c0 = colLo[ow], c1 = colHi[ow]
                    var best = -Float.infinity
                    var arg = r0 * inW + c0
                    for ih in r0..<r1 {
                        for iw in c0..<c1 {
                            let v = x[ih * inW + iw]
                            if v > best || v != v {  // v != v: NaN propagates
                                best = v
                                arg = ih * inW + iw
                            }
                        }
                    }
                    yRow[ow] = best
                    iRow[ow] = Int32(truncatingIfNeeded: arg)
                }
                // Eight outputs at a time, each lane scanning its window in the same order as above.
                for chunk in stride(from: vector.lowerBound, to: vector.upperBound, by: 8) {
                    let c = min(chunk, vector.upperBound - 8)  // the last chunk may overlap: same values again
                    let left = c * sW - padW
                    var best = SIMD8<Float>(repeating: -.infinity)
                    var arg = SIMD8<Int32>(repeating: Int32(truncatingIfNeeded: r0 * inW + left)) &+ laneOffsets
                    for ih in r0..<r1 {
                        for kw in 0..<kW {
                            let i = ih * inW + left + kw
                            let v = columns8(x + i, strideTwo)
                            let take = (v .> best) .| (v .!= v)
                            best = best.replacing(with: v, where: take)
                            arg = arg.replacing(with: SIMD8(repeating: Int32(truncatingIfNeeded: i)) &+ laneOffsets, where: take)
                        }
                    }
                    UnsafeMutableRawPointer(yRow + c).storeBytes(of: best, as: SIMD8<Float>.self)
                    UnsafeMutableRawPointer(iRow + c).storeBytes(of: arg, as: SIMD8<Int32>.self)
                }
            }
        }

        func avgForward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
            let inW = inW, outW = outW, kW = kW, sW = strideW, padW = padW, colLo = colLo, colHi = colHi
            let vector = vectorColumns, strideTwo = sW == 2
            for oh in 0..<outH {
                let r0 = rowLo[oh], r1 = rowHi[oh], rs = rowScale[oh]
                let yRow = y + oh * outW
                for ow in 0..<outW where !vector.contains(ow) {
                    var sum: Float = 0
                    for ih in r0..<r1 {
                        for iw in colLo[ow]..<colHi[ow] { sum += x[ih * inW + iw] }
                    }
                    yRow[ow] = sum * rs * colScale[ow]
                }
                for chunk in stride(from: vector.lowerBound, to: vector.upperBound, by: 8) {
                    let c = min(chunk, vector.upperBound - 8)
                    let left = c * sW - padW
                    var sum = SIMD8<Float>()
                    for ih in r0..<r1 {
                        for kw in 0..<kW { sum += columns8(x + ih * inW + left + kw, strideTwo) }
                    }
                    let scale = UnsafeRawPointer(colScale + c).loadUnaligned(as: SIMD8<Float>.self) * rs
                    UnsafeMutableRawPointer(yRow + c).storeBytes(of: sum * scale, as: SIMD8<Float>.self)
                }
            }
        }

        /// dx[window(o)] += dy[o] / count(o), output by output (any stride).
        func avgBackwardScatter(_ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>) {
            let inW = inW, outW = outW, colLo = colLo, colHi = colHi
            for oh in 0..<outH {
                let r0 = rowLo[oh], r1 = rowHi[oh], rs = rowScale[oh]
                for ow in 0..<outW {
                    let g = dy[oh * outW + ow] * rs * colScale[ow]
                    for ih in r0..<r1 {
                        for iw in colLo[ow]..<colHi[ow] { dx[ih * inW + iw] += g }
                    }
                }
            }
        }

        /// A zeroed plane for `avgBackwardGather`: (inH + padH + kH) rows of (inW + padW + kW) columns.
        func boxScratch() -> UnsafeMutablePointer<Float> {
            let count = (inH + padH + kH) * (inW + padW + kW)
            let g = UnsafeMutablePointer<Float>.allocate(capacity: count)
            g.initialize(repeating: 0, count: count)
            return g
        }

        /// The stride-1 gradient as a gather, so that no two stores overlap (a scatter of overlapping 8-wide
        /// windows stalls on store forwarding). Input (ih, iw) lies in the windows of outputs
        /// oh in (ih + padH - kH, ih + padH] and the matching columns, so with g = dy / count placed at
        /// (kH-1, kW-1) inside a zero border: dx[ih][iw] += Σ_{j<kH, i<kW} g[ih + padH + j][iw + padW + i].
        func avgBackwardGather(_ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, _ g: UnsafeMutablePointer<Float>) {
            let inW = inW, outW = outW, kH = kH, kW = kW, cols = inW + padW + kW
            for oh in 0..<outH {
                let gRow = g + (oh + kH - 1) * cols + kW - 1, rs = rowScale[oh]
                for ow in 0..<outW { gRow[ow] = dy[oh * outW + ow] * rs * colScale[ow] }
            }
            for ih in 0..<inH {
                let top = g + (ih + padH) * cols + padW, dxRow = dx + ih * inW
                var iw = 0
                while iw + 8 <= inW {
                    var acc = UnsafeRawPointer(dxRow + iw).loadUnaligned(as: SIMD8<Float>.self)
                    for j in 0..<kH {
                        for i in 0..<kW { acc += UnsafeRawPointer(top + j * cols + iw + i).loadUnaligned(as: SIMD8<Float>.self) }
                    }
                    UnsafeMutableRawPointer(dxRow + iw).storeBytes(of: acc, as: SIMD8<Float>.self)
                    iw += 8
                }
                while iw < inW {
                    var acc = dxRow[iw]
                    for j in 0..<kH {
                        for i in 0..<kW { acc += top[j * cols + iw + i] }
                    }
                    dxRow[iw] = acc
                    iw += 1
                }
            }
        }
    }

    /// Eight columns from x: x[0...7], or with `strideTwo` x[0], x[2], ..., x[14] (reading nothing past x[14]).
    @inline(__always)
    private static func columns8(_ x: UnsafePointer<Float>, _ strideTwo: Bool) -> SIMD8<Float> {
        let lo = UnsafeRawPointer(x).loadUnaligned(as: SIMD8<Float>.self)
        guard strideTwo else { return lo }
        let hi = UnsafeRawPointer(x + 7).loadUnaligned(as: SIMD8<Float>.self)
        return SIMD8(lo[0], lo[2], lo[4], lo[6], hi[1], hi[3], hi[5], hi[7])
    }

    /// Forward: out[o] = mean of its bin. Backward (`a` = dy, `b` = dx): dx[bin] += dy[o] / bin size.
    private static func adaptivePlane(_ p: AdaptivePool2DParams, _ a: UnsafePointer<Float>, _ b: UnsafeMutablePointer<Float>,
                                      backward: Bool) {
        let inH = p.inH, inW = p.inW, outH = p.outH, outW = p.outW
        var o = 0
        for oh in 0..<outH {
            let rows = AdaptivePool2DParams.bin(oh, inH, outH)
            for ow in 0..<outW {
                let cols = AdaptivePool2DParams.bin(ow, inW, outW)
                let scale = 1 / Float(rows.count * cols.count)
                if backward {
                    let g = a[o] * scale
                    for ih in rows {
                        for iw in cols { b[ih * inW + iw] += g }
                    }
                } else {
                    var sum: Float = 0
                    for ih in rows { sum += rowSum(a + ih * inW, cols) }
                    b[o] = sum * scale
                }
                o += 1
            }
        }
    }

    /// Σ x[range], eight lanes at a time (global average pooling sums whole planes).
    private static func rowSum(_ x: UnsafePointer<Float>, _ range: Range<Int>) -> Float {
        var acc = SIMD8<Float>()
        var i = range.lowerBound
        while i + 8 <= range.upperBound {
            acc += UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
            i += 8
        }
        var s = acc.sum()
        while i < range.upperBound {
            s += x[i]
            i += 1
        }
        return s
    }
}
