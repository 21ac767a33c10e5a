// 2-D convolution kernels on raw NCHW float32 buffers: forward, input gradient, weight gradient.
//
// Three algorithms, chosen per shape by `Conv2DAlgorithm.preferred(for:)`:
// - im2col: each sample's (group's) receptive fields are unrolled into a column matrix
//   col[c*kH*kW + kh*kW + kw][oh*outW + ow] and the convolution becomes one GEMM,
//   y_g = W_g · col. The input gradient is colGrad = W_gᵀ · dy_g folded back with col2im;
//   the weight gradient is dW_g += dy_g · colᵀ.
// - pointwise: a 1x1, stride-1, unpadded convolution is already a GEMM on the input plane
//   (y_g = W_g · x_g, x_g viewed as [inC/groups, H*W]), so no column matrix is built.
// - depthwise: one input channel per group (groups == inC, channel multiplier m = outC/inC). Here
//   im2col would run one GEMM per channel with m rows and k = kH*kW, far too small to be fast, so a
//   direct sliding-window kernel over a zero-padded copy of the plane is used instead (SIMD8 over
//   output columns, four rows at a time). Its input gradient is the same kernel run on dy upsampled
//   by the stride, with the flipped filter.
// Work is threaded over the batch (GEMM algorithms) or over channel planes (depthwise); im2col
// buffers are capped at `maxColumnFloats` per worker by unrolling large images in bands of rows.

import Dispatch

/// Shape and hyper-parameters of a 2-D convolution over contiguous NCHW float32 tensors.
///
/// Input `[batch, inC, inH, inW]`, weight `[outC, inC/groups, kH, kW]`, bias `[outC]`,
/// output `[batch, outC, outH, outW]` with `outH = (inH + 2*padH - dilationH*(kH-1) - 1) / strideH + 1`.
///
///     let p = Conv2DParams(batch: 64, inC: 1, inH: 28, inW: 28, outC: 32, kH: 5, kW: 5)
///     // p.outH == 24, p.outW == 24
public struct Conv2DParams: Sendable, Hashable, CustomStringConvertible {
    public let batch: Int
    public let inC: Int
    public let inH: Int
    public let inW: Int
    public let outC: Int
    public let kH: Int
    public let kW: Int
    public let strideH: Int
    public let strideW: Int
    public let padH: Int
    public let padW: Int
    public let dilationH: Int
    public let dilationW: Int
    public let groups: Int

    /// Output height: `(inH + 2*padH - dilationH*(kH-1) - 1) / strideH + 1`.
    public var outH: Int { (inH + 2 * padH - dilationH * (kH - 1) - 1) / strideH + 1 }
    /// Output width: `(inW + 2*padW - dilationW*(kW-1) - 1) / strideW + 1`.
    public var outW: Int { (inW + 2 * padW - dilationW * (kW - 1) - 1) / strideW + 1 }
    /// Elements of the input tensor.
    public var inputCount: Int { batch * inC * inH * inW }
    /// Elements of the output tensor.
    public var outputCount: Int { batch * outC * outH * outW }
    /// Elements of the weight tensor `[outC, inC/groups, kH, kW]`.
    public var weightCount: Int { outC * (inC / groups) * kH * kW }

    /// Validates the shape with `precondition`; every message names the offending values.
    public init(batch: Int, inC: Int, inH: Int, inW: Int, outC: Int, kH: Int, kW: Int,
                strideH: Int = 1, strideW: Int = 1, padH: Int = 0, padW: Int = 0,
                dilationH: Int = 1, dilationW: Int = 1, groups: Int = 1) {
        precondition(batch >= 1 && inC >= 1 && inH >= 1 && inW >= 1 && outC >= 1,
                     "Conv2DParams: batch (\(batch)), inC (\(inC)), inH (\(inH)), inW (\(inW)), outC (\(outC)) must all be >= 1")
        precondition(kH >= 1 && kW >= 1, "Conv2DParams: kernel \(kH)x\(kW) must be at least 1x1")
        precondition(strideH >= 1 && strideW >= 1, "Conv2DParams: stride (\(strideH), \(strideW)) must be >= 1")
        precondition(padH >= 0 && padW >= 0, "Conv2DParams: padding (\(padH), \(padW)) must be >= 0")
        precondition(dilationH >= 1 && dilationW >= 1, "Conv2DParams: dilation (\(dilationH), \(dilationW)) must be >= 1")
        precondition(groups >= 1 && inC % groups == 0 && outC % groups == 0,
                     "Conv2DParams: groups (\(groups)) must be >= 1 and divide inC (\(inC)) and outC (\(outC))")
        precondition(dilationH * (kH - 1) + 1 <= inH + 2 * padH && dilationW * (kW - 1) + 1 <= inW + 2 * padW,
                     "Conv2DParams: dilated kernel \(dilationH * (kH - 1) + 1)x\(dilationW * (kW - 1) + 1) is larger than the padded input \(inH + 2 * padH)x\(inW + 2 * padW)")
        self.batch = batch; self.inC = inC; self.inH = inH; self.inW = inW; self.outC = outC
        self.kH = kH; self.kW = kW; self.strideH = strideH; self.strideW = strideW
        self.padH = padH; self.padW = padW; self.dilationH = dilationH; self.dilationW = dilationW
        self.groups = groups
    }

    public var description: String {
        "Conv2D(\(batch)x\(inC)x\(inH)x\(inW) -> \(outC), k \(kH)x\(kW), s \(strideH),\(strideW), p \(padH),\(padW), d \(dilationH),\(dilationW), g \(groups))"
    }
}

/// How `Conv2DKernel` computes a convolution. All three give the same results up to float rounding.
public enum Conv2DAlgorithm: String, Sendable, Hashable, CaseIterable {
    /// im2col + GEMM per sample and group, col2im for the input gradient. Applies to every shape.
    case im2col
    /// 1x1, stride 1, no padding: a GEMM straight on the input, no column matrix.
    case pointwise
    /// One input channel per group (groups == inC): direct sliding-window kernel.
    case depthwise

    /// Whether this algorithm can compute `p`.
    public func isApplicable(to p: Conv2DParams) -> Bool {
        switch self {
        case .im2col: return true
        case .pointwise: return p.kH == 1 && p.kW == 1 && p.strideH == 1 && p.strideW == 1 && p.padH == 0 && p.padW == 0
        case .depthwise: return p.groups == p.inC
        }
    }

    /// The algorithm the kernels use for `p` when none is forced: pointwise where it applies, else the
    /// direct depthwise kernel for groups == inC with a channel multiplier up to 8, else im2col.
    ///
    /// Measured with conv-bench (batch 64, one thread, the Swift GEMM; forward + input gradient +
    /// weight gradient, CPU ms; AMD EPYC Zen3 under load, so ±20%):
    /// - 1x1 16->16 on 32x32: pointwise 4.0, im2col 5.8; 1x1 64->64 on 8x8: 1.6 vs 2.3.
    /// - depthwise C16 32x32: 3x3 2.5 vs im2col 13.1; 5x5 5.2 vs 39; dilated 3x3 2.5 vs 15,
    ///   5x5 4.9 vs 36; 3x3 stride 2 1.8 vs 7.7. Depthwise 3x3 C64 8x8: 0.9 vs 8.0.
    /// - channel multiplier m (groups == inC, 5x5 on 28x28, 16 outputs): m 2: 3.0 vs 9.8;
    ///   m 4: 3.0 vs 5.5; m 8: 3.1 vs 4.6; m 16: 3.0 vs 3.0. LeNet conv1 (1 -> 32, m 32): 6.5 vs 4.4,
    ///   so im2col, whose GEMM reuses each unrolled column for all m outputs.
    /// - General convolutions (LeNet conv2 32->64 5x5 on 12x12: 25.6) have only im2col.
    public static func preferred(for p: Conv2DParams) -> Conv2DAlgorithm {
        if Conv2DAlgorithm.pointwise.isApplicable(to: p) { return .pointwise }
        if Conv2DAlgorithm.depthwise.isApplicable(to: p) && p.outC <= 8 * p.inC { return .depthwise }
        return .im2col
    }
}

/// Convolution kernels on raw contiguous NCHW float32 buffers (see `Conv2DParams` for the shapes).
///
/// Work is split over `threads` workers: over the batch for the GEMM algorithms (each worker runs
/// single-threaded GEMMs on its own samples; with one sample the GEMM itself is threaded), and over
/// channel planes for the depthwise kernel.
public enum Conv2DKernel {
    /// y = conv(x, W) + b. Overwrites `output` `[batch, outC, outH, outW]`.
    ///
    /// - Parameters:
    ///   - input: `[batch, inC, inH, inW]`.
    ///   - weight: `[outC, inC/groups, kH, kW]`.
    ///   - bias: `[outC]`, or nil for none.
    ///   - algorithm: forces an algorithm (it must apply to `p`); nil picks `Conv2DAlgorithm.preferred(for:)`.
    public static func forward(_ p: Conv2DParams, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                               bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>,
                               algorithm: Conv2DAlgorithm? = nil, threads: Int = Kernels.threads, columns: ConvColumnCache? = nil) {
        switch resolve(algorithm, p) {
        case .im2col: gemmForward(p, input, weight, bias, output, unroll: true, threads: threads, columns: columns)
        case .pointwise: gemmForward(p, input, weight, bias, output, unroll: false, threads: threads)
        case .depthwise: depthwiseForward(p, input, weight, bias, output, threads: threads)
        }
    }

    /// dL/dx from dL/dy. Overwrites `gradInput` `[batch, inC, inH, inW]`.
    ///
    /// - Parameters:
    ///   - gradOutput: `[batch, outC, outH, outW]`.
    ///   - weight: `[outC, inC/groups, kH, kW]`.
    public static func backwardInput(_ p: Conv2DParams, gradOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                     gradInput: UnsafeMutablePointer<Float>,
                                     algorithm: Conv2DAlgorithm? = nil, threads: Int = Kernels.threads) {
        switch resolve(algorithm, p) {
        case .im2col: gemmBackwardInput(p, gradOutput, weight, gradInput, unroll: true, threads: threads)
        case .pointwise: gemmBackwardInput(p, gradOutput, weight, gradInput, unroll: false, threads: threads)
        case .depthwise: depthwiseBackwardInput(p, gradOutput, weight, gradInput, threads: threads)
        }
    }

    /// dL/dW and dL/db from dL/dy. ACCUMULATES (+=) into `gradWeight` `[outC, inC/groups, kH, kW]`
    /// and, when given, `gradBias` `[outC]`.
    ///
    /// - Parameters:
    ///   - input: `[batch, inC, inH, inW]`, the forward input.
    ///   - gradOutput: `[batch, outC, outH, outW]`.
    public static func backwardWeight(_ p: Conv2DParams, input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                                      gradWeight: UnsafeMutablePointer<Float>, gradBias: UnsafeMutablePointer<Float>?,
                                      algorithm: Conv2DAlgorithm? = nil, threads: Int = Kernels.threads, columns: ConvColumnCache? = nil) {
        switch resolve(algorithm, p) {
        case .im2col: gemmBackwardWeight(p, input, gradOutput, gradWeight, gradBias, unroll: true, threads: threads, columns: columns)
        case .pointwise: gemmBackwardWeight(p, input, gradOutput, gradWeight, gradBias, unroll: false, threads: threads)
        case .depthwise: depthwiseBackwardWeight(p, input, gradOutput, gradWeight, gradBias, threads: threads)
        }
    }

    private static func resolve(_ algorithm: Conv2DAlgorithm?, _ p: Conv2DParams) -> Conv2DAlgorithm {
        let a = algorithm ?? Conv2DAlgorithm.preferred(for: p)
        precondition(a.isApplicable(to: p), "Conv2DKernel: algorithm \(a) does not apply to \(p)")
        return a
    }
}

// MARK: - GEMM algorithms (im2col and pointwise)

extension Conv2DKernel {
    /// Largest column matrix a worker builds, in floats (4 MiB). Bigger images are unrolled in bands of
    /// output rows, one GEMM per band; LeNet and CIFAR-sized layers fit in one band.
    static let maxColumnFloats = 1 << 20

    /// The shared shape of one GEMM-algorithm call: per sample n and group g, the convolution is
    /// W_g [ocg x k] · B [k x outH*outW], B being the column matrix of x[n, g] (im2col) or, for a
    /// pointwise convolution, the input planes x[n, g] themselves (k = icg).
    private struct GEMMPlan {
        let icg: Int, ocg: Int, k: Int, ohw: Int, ihw: Int
        let unroll: Bool
        /// Output rows per band (all of them when not unrolling).
        let bandRows: Int
        /// Workers over the batch, each running single-threaded GEMMs; with one, the GEMM gets the threads.
        let workers: Int, gemmThreads: Int

        init(_ p: Conv2DParams, unroll: Bool, threads: Int) {
            icg = p.inC / p.groups
            ocg = p.outC / p.groups
            k = icg * p.kH * p.kW
            ohw = p.outH * p.outW
            ihw = p.inH * p.inW
            self.unroll = unroll
            bandRows = unroll ? max(1, min(p.outH, Conv2DKernel.maxColumnFloats / (k * p.outW))) : p.outH
            workers = max(1, min(threads, p.batch))
            gemmThreads = workers > 1 ? 1 : max(1, threads)
        }

        /// The output-row bands: 0..<bandRows, bandRows..<2*bandRows, ...
        func bands(_ p: Conv2DParams) -> [Range<Int>] {
            stride(from: 0, to: p.outH, by: bandRows).map { $0..<min($0 + bandRows, p.outH) }
        }

        /// A worker's column matrix (nil when not unrolling).
        func columnBuffer(_ p: Conv2DParams) -> UnsafeMutablePointer<Float>? {
            unroll ? .allocate(capacity: k * bandRows * p.outW) : nil
        }
    }

    /// y[n, g][:, band] = W_g · B[:, band] (+ bias), band by band.
    private static func gemmForward(_ p: Conv2DParams, _ input: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
                                    _ bias: UnsafePointer<Float>?, _ output: UnsafeMutablePointer<Float>,
                                    unroll: Bool, threads: Int, columns: ConvColumnCache? = nil) {
        let plan = GEMMPlan(p, unroll: unroll, threads: threads), bands = plan.bands(p)
        if let chunk = batchedChunk(p, plan) { return batchedForward(p, plan, chunk, input, weight, bias, output, threads: threads, columns: columns) }
        ParallelChunks.run(count: p.batch, parts: plan.workers) { _, samples in
            let col = plan.columnBuffer(p)
            defer { col?.deallocate() }
            for n in samples {
                for g in 0..<p.groups {
                    let x = input + (n * p.inC + g * plan.icg) * plan.ihw
                    let y = output + (n * p.outC + g * plan.ocg) * plan.ohw
                    if let bias {
                        for oc in 0..<plan.ocg { (y + oc * plan.ohw).update(repeating: bias[g * plan.ocg + oc], count: plan.ohw) }
                    }
                    for rows in bands {
                        let width = rows.count * p.outW
                        var b = x, ldb = plan.ohw
                        if let col {
                            im2col(p, x, channels: plan.icg, rows: rows, col)
                            b = UnsafePointer(col)
                            ldb = width
                        }
                        GEMM.sgemm(transA: false, transB: false, m: plan.ocg, n: width, k: plan.k, alpha: 1,
                                   a: weight + g * plan.ocg * plan.k, lda: plan.k, b: b, ldb: ldb,
                                   beta: bias == nil ? 0 : 1, c: y + rows.lowerBound * p.outW, ldc: plan.ohw,
                                   threads: plan.gemmThreads)
                    }
                }
            }
        }
    }

    /// colGrad = W_gᵀ · dy[n, g][:, band], folded back into dx[n, g] by col2im band by band
    /// (pointwise: the GEMM writes dx[n, g] directly).
    private static func gemmBackwardInput(_ p: Conv2DParams, _ gradOutput: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
                                          _ gradInput: UnsafeMutablePointer<Float>, unroll: Bool, threads: Int) {
        let plan = GEMMPlan(p, unroll: unroll, threads: threads), bands = plan.bands(p)
        if let chunk = batchedChunk(p, plan) { return batchedBackwardInput(p, plan, chunk, gradOutput, weight, gradInput, threads: threads) }
        ParallelChunks.run(count: p.batch, parts: plan.workers) { _, samples in
            let col = plan.columnBuffer(p)
            defer { col?.deallocate() }
            for n in samples {
                for g in 0..<p.groups {
                    let dy = gradOutput + (n * p.outC + g * plan.ocg) * plan.ohw
                    let dx = gradInput + (n * p.inC + g * plan.icg) * plan.ihw
                    guard let col else {
                        GEMM.sgemm(transA: true, transB: false, m: plan.k, n: plan.ohw, k: plan.ocg, alpha: 1,
                                   a: weight + g * plan.ocg * plan.k, lda: plan.k, b: dy, ldb: plan.ohw,
                                   beta: 0, c: dx, ldc: plan.ohw, threads: plan.gemmThreads)
                        continue
                    }
                    dx.update(repeating: 0, count: plan.icg * plan.ihw)
                    for rows in bands {
                        let width = rows.count * p.outW
                        GEMM.sgemm(transA: true, transB: false, m: plan.k, n: width, k: plan.ocg, alpha: 1,
                                   a: weight + g * plan.ocg * plan.k, lda: plan.k, b: dy + rows.lowerBound * p.outW, ldb: plan.ohw,
                                   beta: 0, c: col, ldc: width, threads: plan.gemmThreads)
                        col2im(p, col, channels: plan.icg, rows: rows, dx)
                    }
                }
            }
        }
    }

    /// dW_g += Σ_n dy[n, g][:, band] · B[:, band]ᵀ; db[oc] += Σ dy[n, oc]. With several workers each sums
    /// its samples into a private zeroed buffer, added to the caller's at the end.
    private static func gemmBackwardWeight(_ p: Conv2DParams, _ input: UnsafePointer<Float>, _ gradOutput: UnsafePointer<Float>,
                                           _ gradWeight: UnsafeMutablePointer<Float>, _ gradBias: UnsafeMutablePointer<Float>?,
                                           unroll: Bool, threads: Int, columns: ConvColumnCache? = nil) {
        let plan = GEMMPlan(p, unroll: unroll, threads: threads), bands = plan.bands(p)
        if let chunk = batchedChunk(p, plan) { return batchedBackwardWeight(p, plan, chunk, input, gradOutput, gradWeight, gradBias, threads: threads, columns: columns) }
        let sums = PartialSums(workers: plan.workers, weightCount: p.weightCount, biasCount: gradBias == nil ? 0 : p.outC,
                               gradWeight: gradWeight, gradBias: gradBias)
        defer { sums.finish() }
        ParallelChunks.run(count: p.batch, parts: plan.workers) { worker, samples in
            let (dW, dB) = sums.buffers(worker)
            let col = plan.columnBuffer(p)
            defer { col?.deallocate() }
            for n in samples {
                for g in 0..<p.groups {
                    let x = input + (n * p.inC + g * plan.icg) * plan.ihw
                    let dy = gradOutput + (n * p.outC + g * plan.ocg) * plan.ohw
                    for rows in bands {
                        let width = rows.count * p.outW
                        var b = x, ldb = plan.ohw
                        if let col {
                            im2col(p, x, channels: plan.icg, rows: rows, col)
                            b = UnsafePointer(col)
                            ldb = width
                        }
                        GEMM.sgemm(transA: false, transB: true, m: plan.ocg, n: plan.k, k: width, alpha: 1,
                                   a: dy + rows.lowerBound * p.outW, lda: plan.ohw, b: b, ldb: ldb,
                                   beta: 1, c: dW + g * plan.ocg * plan.k, ldc: plan.k, threads: plan.gemmThreads)
                    }
                    if let dB {
                        for oc in 0..<plan.ocg { dB[g * plan.ocg + oc] += sum(plan.ohw, dy + oc * plan.ohw) }
                    }
                }
            }
        }
    }

    // MARK: - Batched im2col (groups == 1): one GEMM over several samples
    //
    // Per-sample GEMMs are small for small images (LeNet's conv2 is 64x800 · 800x64 per sample), so
    // packing dominates. When the whole image fits one band, the column matrices of S samples sit side
    // by side in one [k, S·ohw] buffer and a single two-thread GEMM does the chunk:
    // Y'[oc, S·ohw] = W · col, dW += dY'·colᵀ, dcol = Wᵀ·dY'. Measured on LeNet's training step:
    // 36 → see docs/BENCHMARKS.md.

    /// Holds the im2col matrix of a forward pass for the weight gradient of the same step (training).
    public final class ConvColumnCache: @unchecked Sendable {
        // @unchecked Sendable: written once by forward, read by backward of the same op, in sequence.
        var pointer: UnsafeMutablePointer<Float>?
        var params: Conv2DParams?
        public init() {}
        func reserve(_ p: Conv2DParams, count: Int) -> UnsafeMutablePointer<Float> {
            pointer?.deallocate()
            let q = UnsafeMutablePointer<Float>.allocate(capacity: count)
            pointer = q
            params = p
            return q
        }
        func filled(for p: Conv2DParams) -> UnsafeMutablePointer<Float>? { params == p ? pointer : nil }
        deinit { pointer?.deallocate() }
    }

    /// Largest batched column matrix, in floats (16 MiB).
    static let maxBatchedColumnFloats = 1 << 22

    /// Samples per batched GEMM, or nil when the per-sample path applies.
    private static func batchedChunk(_ p: Conv2DParams, _ plan: GEMMPlan) -> Int? {
        guard p.groups == 1, plan.unroll, plan.bandRows == p.outH, p.batch > 1 else { return nil }
        let perSample = plan.k * plan.ohw
        let s = min(p.batch, maxBatchedColumnFloats / max(perSample, 1))
        return s >= 2 ? s : nil
    }

    private static func fillColumns(_ p: Conv2DParams, _ plan: GEMMPlan, _ input: UnsafePointer<Float>, _ samples: Range<Int>,
                                    _ col: UnsafeMutablePointer<Float>, threads: Int) {
        let width = samples.count * plan.ohw
        ParallelChunks.run(count: samples.count, parts: min(threads, samples.count)) { _, part in
            for j in part {
                im2col(p, input + (samples.lowerBound + j) * p.inC * plan.ihw, channels: plan.icg, rows: 0..<p.outH,
                       col + j * plan.ohw, rowStride: width)
            }
        }
    }

    private static func batchedForward(_ p: Conv2DParams, _ plan: GEMMPlan, _ chunk: Int, _ input: UnsafePointer<Float>,
                                       _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
                                       _ output: UnsafeMutablePointer<Float>, threads: Int, columns: ConvColumnCache?) {
        // The whole batch's columns can be kept for the weight gradient (saves a second im2col).
        let keep = columns != nil && chunk >= p.batch
        let col = keep ? columns!.reserve(p, count: plan.k * chunk * plan.ohw) : UnsafeMutablePointer<Float>.allocate(capacity: plan.k * chunk * plan.ohw)
        let y = UnsafeMutablePointer<Float>.allocate(capacity: p.outC * chunk * plan.ohw)
        defer { if !keep { col.deallocate() }; y.deallocate() }
        for start in stride(from: 0, to: p.batch, by: chunk) {
            let samples = start..<min(start + chunk, p.batch), width = samples.count * plan.ohw
            fillColumns(p, plan, input, samples, col, threads: threads)
            GEMM.sgemm(transA: false, transB: false, m: p.outC, n: width, k: plan.k, alpha: 1, a: weight, lda: plan.k,
                       b: col, ldb: width, beta: 0, c: y, ldc: width, threads: threads)
            for (j, n) in samples.enumerated() {
                for oc in 0..<p.outC {
                    let src = y + oc * width + j * plan.ohw, dst = output + (n * p.outC + oc) * plan.ohw
                    if let bias {
                        let b = bias[oc]
                        for i in 0..<plan.ohw { dst[i] = src[i] + b }
                    } else {
                        copy(plan.ohw, src, dst)
                    }
                }
            }
        }
    }

    /// dY'[oc, j·ohw + i] = dy[n_j, oc, i]
    private static func gatherGradOutput(_ p: Conv2DParams, _ plan: GEMMPlan, _ gradOutput: UnsafePointer<Float>,
                                         _ samples: Range<Int>, _ dyc: UnsafeMutablePointer<Float>) {
        let width = samples.count * plan.ohw
        for (j, n) in samples.enumerated() {
            for oc in 0..<p.outC { copy(plan.ohw, gradOutput + (n * p.outC + oc) * plan.ohw, dyc + oc * width + j * plan.ohw) }
        }
    }

    private static func batchedBackwardInput(_ p: Conv2DParams, _ plan: GEMMPlan, _ chunk: Int, _ gradOutput: UnsafePointer<Float>,
                                             _ weight: UnsafePointer<Float>, _ gradInput: UnsafeMutablePointer<Float>, threads: Int) {
        let col = UnsafeMutablePointer<Float>.allocate(capacity: plan.k * chunk * plan.ohw)
        let dyc = UnsafeMutablePointer<Float>.allocate(capacity: p.outC * chunk * plan.ohw)
        defer { col.deallocate(); dyc.deallocate() }
        for start in stride(from: 0, to: p.batch, by: chunk) {
            let samples = start..<min(start + chunk, p.batch), width = samples.count * plan.ohw
            gatherGradOutput(p, plan, gradOutput, samples, dyc)
            GEMM.sgemm(transA: true, transB: false, m: plan.k, n: width, k: p.outC, alpha: 1, a: weight, lda: plan.k,
                       b: dyc, ldb: width, beta: 0, c: col, ldc: width, threads: threads)
            ParallelChunks.run(count: samples.count, parts: min(threads, samples.count)) { _, part in
                for j in part {
                    let dx = gradInput + (samples.lowerBound + j) * p.inC * plan.ihw
                    dx.update(repeating: 0, count: p.inC * plan.ihw)
                    col2im(p, col + j * plan.ohw, channels: plan.icg, rows: 0..<p.outH, dx, rowStride: width)
                }
            }
        }
    }

    private static func batchedBackwardWeight(_ p: Conv2DParams, _ plan: GEMMPlan, _ chunk: Int, _ input: UnsafePointer<Float>,
                                              _ gradOutput: UnsafePointer<Float>, _ gradWeight: UnsafeMutablePointer<Float>,
                                              _ gradBias: UnsafeMutablePointer<Float>?, threads: Int, columns: ConvColumnCache?) {
        let cached = columns?.filled(for: p)
        let col = cached ?? UnsafeMutablePointer<Float>.allocate(capacity: plan.k * chunk * plan.ohw)
        let dyc = UnsafeMutablePointer<Float>.allocate(capacity: p.outC * chunk * plan.ohw)
        defer { if cached == nil { col.deallocate() }; dyc.deallocate() }
        for start in stride(from: 0, to: p.batch, by: chunk) {
            let samples = start..<min(start + chunk, p.batch), width = samples.count * plan.ohw
            if cached == nil { fillColumns(p, plan, input, samples, col, threads: threads) }
            gatherGradOutput(p, plan, gradOutput, samples, dyc)
            GEMM.sgemm(transA: false, transB: true, m: p.outC, n: plan.k, k: width, alpha: 1, a: dyc, lda: width,
                       b: col, ldb: width, beta: 1, c: gradWeight, ldc: plan.k, threads: threads)
            if let gradBias {
                for oc in 0..<p.outC { gradBias[oc] += sum(width, dyc + oc * width) }
            }
        }
    }

    /// Unrolls output rows `rows` of `channels` input planes at `x` into col [channels*kH*kW, rows.count*outW]:
    /// col[(c*kH + kh)*kW + kw][(oh - rows.lowerBound)*outW + ow] = x[c][oh*sH - pH + kh*dH][ow*sW - pW + kw*dW],
    /// 0 outside the image.
    private static func im2col(_ p: Conv2DParams, _ x: UnsafePointer<Float>, channels: Int, rows: Range<Int>,
                               _ col: UnsafeMutablePointer<Float>, rowStride: Int? = nil) {
        let step = rowStride ?? rows.count * p.outW
        let outW = p.outW, ihw = p.inH * p.inW
        var row = col
        for c in 0..<channels {
            let plane = x + c * ihw
            for kh in 0..<p.kH {
                for kw in 0..<p.kW {
                    let off = kw * p.dilationW - p.padW
                    let cols = validOutputRange(offset: off, stride: p.strideW, inSize: p.inW, outSize: outW)
                    for oh in rows {
                        let dst = row + (oh - rows.lowerBound) * outW
                        let ih = oh * p.strideH - p.padH + kh * p.dilationH
                        guard ih >= 0 && ih < p.inH, !cols.isEmpty else {
                            for ow in 0..<outW { dst[ow] = 0 }
                            continue
                        }
                        // Rows are short (often < 32 floats): plain loops, not memcpy/memset calls.
                        for ow in 0..<cols.lowerBound { dst[ow] = 0 }
                        let src = plane + ih * p.inW
                        if p.strideW == 1 {
                            copy(cols.count, src + cols.lowerBound + off, dst + cols.lowerBound)
                        } else {
                            for ow in cols { dst[ow] = src[ow * p.strideW + off] }
                        }
                        for ow in cols.upperBound..<outW { dst[ow] = 0 }
                    }
                    row += step
                }
            }
        }
    }

    /// Adjoint of `im2col`: adds every col entry back onto the input position it was copied from.
    private static func col2im(_ p: Conv2DParams, _ col: UnsafePointer<Float>, channels: Int, rows: Range<Int>,
                               _ dx: UnsafeMutablePointer<Float>, rowStride: Int? = nil) {
        let step = rowStride ?? rows.count * p.outW
        let outW = p.outW, ihw = p.inH * p.inW
        var row = col
        for c in 0..<channels {
            let plane = dx + c * ihw
            for kh in 0..<p.kH {
                for kw in 0..<p.kW {
                    let off = kw * p.dilationW - p.padW
                    let cols = validOutputRange(offset: off, stride: p.strideW, inSize: p.inW, outSize: outW)
                    for oh in rows {
                        let ih = oh * p.strideH - p.padH + kh * p.dilationH
                        guard ih >= 0 && ih < p.inH, !cols.isEmpty else { continue }
                        let src = row + (oh - rows.lowerBound) * outW, dst = plane + ih * p.inW
                        if p.strideW == 1 {
                            axpy(cols.count, 1, src + cols.lowerBound, dst + cols.lowerBound + off)
                        } else {
                            for ow in cols { dst[ow * p.strideW + off] += src[ow] }
                        }
                    }
                    row += step
                }
            }
        }
    }

    /// Output positions o in 0..<outSize whose input position o*stride + offset lies in 0..<inSize.
    private static func validOutputRange(offset: Int, stride: Int, inSize: Int, outSize: Int) -> Range<Int> {
        let lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride
        let last = inSize - 1 - offset  // largest allowed o*stride
        let hi = last < 0 ? 0 : last / stride + 1
        let l = min(lo, outSize)
        return l..<max(l, min(hi, outSize))
    }
}

// MARK: - Depthwise (direct) algorithm

extension Conv2DKernel {
    /// One plane-to-plane sliding-window correlation: out[oh][ow] = Σ_t w[t] · xp[oh*strideH*cols + ow*strideW + offsets[t]],
    /// where xp is the input plane zero-padded to `rows` x `cols` (so every tap is in bounds) and
    /// offsets[t] = kh*dilationH*cols + kw*dilationW for tap t = kh*kW + kw. The plane is built from a
    /// source plane whose element (r, c) lands at (r*stepH, c*stepW) of the unpadded plane (steps > 1
    /// insert zeros: the adjoint of a strided convolution's subsampling).
    private struct DirectPlane {
        let sourceH: Int, sourceW: Int, stepH: Int, stepW: Int, padH: Int, padW: Int
        let outH: Int, outW: Int, strideH: Int, strideW: Int
        let rows: Int, cols: Int, taps: Int
        let offsets: UnsafeMutablePointer<Int>

        init(source: (h: Int, w: Int), step: (h: Int, w: Int) = (1, 1), plane: (h: Int, w: Int), pad: (h: Int, w: Int),
             out: (h: Int, w: Int), stride: (h: Int, w: Int), kernel: (h: Int, w: Int), dilation: (h: Int, w: Int)) {
            sourceH = source.h; sourceW = source.w; stepH = step.h; stepW = step.w; padH = pad.h; padW = pad.w
            outH = out.h; outW = out.w; strideH = stride.h; strideW = stride.w
            rows = plane.h + 2 * pad.h
            cols = plane.w + 2 * pad.w
            taps = kernel.h * kernel.w
            offsets = .allocate(capacity: taps)
            for kh in 0..<kernel.h {
                for kw in 0..<kernel.w { offsets[kh * kernel.w + kw] = kh * dilation.h * cols + kw * dilation.w }
            }
        }

        /// The forward convolution of one channel.
        init(forward p: Conv2DParams) {
            self.init(source: (p.inH, p.inW), plane: (p.inH, p.inW), pad: (p.padH, p.padW), out: (p.outH, p.outW),
                      stride: (p.strideH, p.strideW), kernel: (p.kH, p.kW), dilation: (p.dilationH, p.dilationW))
        }

        /// The input gradient of one channel as a forward-style correlation: a stride-s convolution is a
        /// stride-1 one subsampled, so dx is dy upsampled by s (zeros between), padded by (k-1)*dilation - pad
        /// and correlated with the flipped kernel. Nil when the padding exceeds (k-1)*dilation.
        init?(transposed p: Conv2DParams) {
            let padH = (p.kH - 1) * p.dilationH - p.padH, padW = (p.kW - 1) * p.dilationW - p.padW
            guard padH >= 0 && padW >= 0 else { return nil }
            // The stride-1 output size, which the upsampled dy fills.
            let fullH = p.inH + 2 * p.padH - (p.kH - 1) * p.dilationH, fullW = p.inW + 2 * p.padW - (p.kW - 1) * p.dilationW
            self.init(source: (p.outH, p.outW), step: (p.strideH, p.strideW), plane: (fullH, fullW), pad: (padH, padW),
                      out: (p.inH, p.inW), stride: (1, 1), kernel: (p.kH, p.kW), dilation: (p.dilationH, p.dilationW))
        }

        func deallocate() { offsets.deallocate() }

        /// A zeroed scratch plane for `pad`, or nil when source planes can be used in place.
        func scratch() -> UnsafeMutablePointer<Float>? {
            guard padH > 0 || padW > 0 || stepH > 1 || stepW > 1 else { return nil }
            let s = UnsafeMutablePointer<Float>.allocate(capacity: rows * cols)
            s.initialize(repeating: 0, count: rows * cols)
            return s
        }

        /// Places source plane `x` into `scratch`, or returns `x` itself when there is no scratch. Every call
        /// writes the same positions, so the zeros around and between them stay zero.
        func pad(_ x: UnsafePointer<Float>, into scratch: UnsafeMutablePointer<Float>?) -> UnsafePointer<Float> {
            guard let scratch else { return x }
            for r in 0..<sourceH {
                let dst = scratch + (padH + r * stepH) * cols + padW, src = x + r * sourceW
                if stepW == 1 {
                    copy(sourceW, src, dst)
                } else {
                    for c in 0..<sourceW { dst[c * stepW] = src[c] }
                }
            }
            return UnsafePointer(scratch)
        }

        /// out = bias + correlation(xp, w), or out += correlation(xp, w) when `accumulate`.
        func correlate(_ xp: UnsafePointer<Float>, _ w: UnsafePointer<Float>, bias: Float, accumulate: Bool,
                       _ out: UnsafeMutablePointer<Float>) {
            if outW >= 8 && strideW == 1 {
                correlateChunks(xp, w, bias, accumulate, out, strideTwo: false)
            } else if outW >= 8 && strideW == 2 {
                correlateChunks(xp, w, bias, accumulate, out, strideTwo: true)
            } else {
                for oh in 0..<outH {
                    for c in 0..<outW {
                        let x = xp + oh * strideH * cols + c * strideW
                        var a = accumulate ? out[oh * outW + c] : bias
                        for t in 0..<taps { a += w[t] * x[offsets[t]] }
                        out[oh * outW + c] = a
                    }
                }
            }
        }

        /// `correlate` for column stride 1 or 2 and outW >= 8: four rows x eight columns at a time in four
        /// independent SIMD8 accumulators (one would serialise on the FMA latency). A width that is not a
        /// multiple of 8 ends with a chunk overlapping the previous one: overwriting recomputes the same
        /// values, and accumulation adds only to its fresh lanes.
        @inline(__always)
        private func correlateChunks(_ xp: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ bias: Float, _ accumulate: Bool,
                                     _ out: UnsafeMutablePointer<Float>, strideTwo: Bool) {
            let rowStep = strideH * cols
            let start = SIMD8<Float>(repeating: accumulate ? 0 : bias)
            var ow = 0
            while ow < outW {
                let c = min(ow, outW - 8)
                let fresh = freshLanes(ow - c)
                let x = xp + c * strideW
                var oh = 0
                while oh + 4 <= outH {
                    let xr = x + oh * rowStep
                    var a0 = start, a1 = start, a2 = start, a3 = start
                    for t in 0..<taps {
                        let wt = SIMD8(repeating: w[t]), xt = xr + offsets[t]
                        a0.addProduct(wt, columns8(xt, strideTwo))
                        a1.addProduct(wt, columns8(xt + rowStep, strideTwo))
                        a2.addProduct(wt, columns8(xt + 2 &* rowStep, strideTwo))
                        a3.addProduct(wt, columns8(xt + 3 &* rowStep, strideTwo))
                    }
                    let y = out + oh * outW + c
                    store(a0, y, accumulate, fresh)
                    store(a1, y + outW, accumulate, fresh)
                    store(a2, y + 2 * outW, accumulate, fresh)
                    store(a3, y + 3 * outW, accumulate, fresh)
                    oh += 4
                }
                while oh < outH {
                    let xr = x + oh * rowStep
                    var a = start
                    for t in 0..<taps { a.addProduct(SIMD8(repeating: w[t]), columns8(xr + offsets[t], strideTwo)) }
                    store(a, out + oh * outW + c, accumulate, fresh)
                    oh += 1
                }
                ow = c + 8
            }
        }

        @inline(__always)
        private func store(_ a: SIMD8<Float>, _ y: UnsafeMutablePointer<Float>, _ accumulate: Bool, _ fresh: SIMD8<Float>) {
            store8(accumulate ? load8(y) + a * fresh : a, y)
        }

        /// 1 for lanes `done...7`, 0 below: the lanes of an overlapping chunk not yet computed. (Arithmetic
        /// instead of a SIMD mask, which Swift 6.3 lowers to a scalar loop with store-forwarding stalls.)
        private func freshLanes(_ done: Int) -> SIMD8<Float> {
            var f = SIMD8<Float>(repeating: 1)
            for l in 0..<done { f[l] = 0 }
            return f
        }

        /// dw[t] += Σ_{oh,ow} dy[oh][ow] · xp[oh*strideH*cols + ow*strideW + offsets[t]].
        func weightGradient(_ xp: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dw: UnsafeMutablePointer<Float>) {
            if outW >= 8 && strideW == 1 {
                weightGradientChunks(xp, dy, dw, strideTwo: false)
            } else if outW >= 8 && strideW == 2 {
                weightGradientChunks(xp, dy, dw, strideTwo: true)
            } else {
                for t in 0..<taps {
                    let xt = xp + offsets[t]
                    var total: Float = 0
                    for oh in 0..<outH {
                        for c in 0..<outW { total += dy[oh * outW + c] * xt[oh * strideH * cols + c * strideW] }
                    }
                    dw[t] += total
                }
            }
        }

        /// `weightGradient` blocked like `correlateChunks`; the overlapping last chunk sums per lane too,
        /// and drops its lanes already counted.
        @inline(__always)
        private func weightGradientChunks(_ xp: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dw: UnsafeMutablePointer<Float>,
                                          strideTwo: Bool) {
            let rowStep = strideH * cols
            for t in 0..<taps {
                var total: Float = 0
                var ow = 0
                while ow < outW {
                    let c = min(ow, outW - 8)
                    let x = xp + offsets[t] + c * strideW
                    var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
                    var oh = 0
                    while oh + 4 <= outH {
                        let xr = x + oh * rowStep, d = dy + oh * outW + c
                        a0.addProduct(load8(d), columns8(xr, strideTwo))
                        a1.addProduct(load8(d + outW), columns8(xr + rowStep, strideTwo))
                        a2.addProduct(load8(d + 2 &* outW), columns8(xr + 2 &* rowStep, strideTwo))
                        a3.addProduct(load8(d + 3 &* outW), columns8(xr + 3 &* rowStep, strideTwo))
                        oh += 4
                    }
                    while oh < outH {
                        a0.addProduct(load8(dy + oh * outW + c), columns8(x + oh * rowStep, strideTwo))
                        oh += 1
                    }
                    total += (((a0 + a1) + (a2 + a3)) * freshLanes(ow - c)).sum()
                    ow = c + 8
                }
                dw[t] += total
            }
        }

        /// Adjoint of `correlate` without bias: dxp[oh*strideH*cols + ow*strideW + offsets[t]] += w[t] · dy[oh][ow].
        /// Used for the input gradient when the transposed correlation does not apply (strides > 1).
        func scatter(_ dy: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ dxp: UnsafeMutablePointer<Float>) {
            let rowStep = strideH * cols
            for oh in 0..<outH {
                let d = dy + oh * outW, x = dxp + oh * rowStep
                for t in 0..<taps {
                    let wt = w[t], xt = x + offsets[t]
                    if strideW == 1 {
                        axpy(outW, wt, d, xt)
                    } else {
                        for ow in 0..<outW { xt[ow * strideW] += wt * d[ow] }
                    }
                }
            }
        }
    }

    /// Per input plane (n, ic), padded once, and each of its m = outC/inC output channels oc = ic*m + j:
    /// y[n, oc] = b[oc] + correlation of the plane with W[oc].
    private static func depthwiseForward(_ p: Conv2DParams, _ input: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
                                         _ bias: UnsafePointer<Float>?, _ output: UnsafeMutablePointer<Float>, threads: Int) {
        let m = p.outC / p.inC, ihw = p.inH * p.inW, ohw = p.outH * p.outW, taps = p.kH * p.kW
        let plane = DirectPlane(forward: p)
        defer { plane.deallocate() }
        ParallelChunks.run(count: p.batch * p.inC, parts: threads) { _, inputPlanes in
            let scratch = plane.scratch()
            defer { scratch?.deallocate() }
            for i in inputPlanes {
                let xp = plane.pad(input + i * ihw, into: scratch)
                for j in 0..<m {
                    let oc = (i % p.inC) * m + j
                    plane.correlate(xp, weight + oc * taps, bias: bias?[oc] ?? 0, accumulate: false,
                                    output + ((i / p.inC) * p.outC + oc) * ohw)
                }
            }
        }
    }

    /// Per input plane (n, ic): dx[n, ic] = Σ_j (dy[n, ic*m + j], upsampled by the stride and padded, correlated
    /// with the flipped W[ic*m + j]). When the padding exceeds the kernel extent, each dy is instead scattered
    /// back through its taps into a padded plane that is then cropped.
    private static func depthwiseBackwardInput(_ p: Conv2DParams, _ gradOutput: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
                                               _ gradInput: UnsafeMutablePointer<Float>, threads: Int) {
        let m = p.outC / p.inC, ihw = p.inH * p.inW, ohw = p.outH * p.outW, taps = p.kH * p.kW
        if let plane = DirectPlane(transposed: p) {
            defer { plane.deallocate() }
            let flipped = UnsafeMutablePointer<Float>.allocate(capacity: p.outC * taps)
            defer { flipped.deallocate() }
            for oc in 0..<p.outC {
                for t in 0..<taps { flipped[oc * taps + t] = weight[oc * taps + taps - 1 - t] }
            }
            ParallelChunks.run(count: p.batch * p.inC, parts: threads) { _, inputPlanes in
                let scratch = plane.scratch()
                defer { scratch?.deallocate() }
                for i in inputPlanes {
                    for j in 0..<m {
                        let oc = (i % p.inC) * m + j
                        let dyp = plane.pad(gradOutput + ((i / p.inC) * p.outC + oc) * ohw, into: scratch)
                        plane.correlate(dyp, flipped + oc * taps, bias: 0, accumulate: j > 0, gradInput + i * ihw)
                    }
                }
            }
            return
        }
        let plane = DirectPlane(forward: p)
        defer { plane.deallocate() }
        ParallelChunks.run(count: p.batch * p.inC, parts: threads) { _, inputPlanes in
            let scratch = plane.scratch()
            defer { scratch?.deallocate() }
            for i in inputPlanes {
                let dx = gradInput + i * ihw
                let dxp = scratch ?? dx
                dxp.update(repeating: 0, count: plane.rows * plane.cols)
                for j in 0..<m {
                    let oc = (i % p.inC) * m + j
                    plane.scatter(gradOutput + ((i / p.inC) * p.outC + oc) * ohw, weight + oc * taps, dxp)
                }
                if let scratch {
                    for r in 0..<p.inH { copy(p.inW, scratch + (r + p.padH) * plane.cols + p.padW, dx + r * p.inW) }
                }
            }
        }
    }

    /// Per output channel oc (input channel oc / m), summed over the batch:
    /// dW[oc][t] += Σ dy[n, oc] · (padded x[n, oc / m] shifted by tap t); db[oc] += Σ dy[n, oc].
    private static func depthwiseBackwardWeight(_ p: Conv2DParams, _ input: UnsafePointer<Float>, _ gradOutput: UnsafePointer<Float>,
                                                _ gradWeight: UnsafeMutablePointer<Float>, _ gradBias: UnsafeMutablePointer<Float>?,
                                                threads: Int) {
        let m = p.outC / p.inC, ihw = p.inH * p.inW, ohw = p.outH * p.outW, taps = p.kH * p.kW
        let plane = DirectPlane(forward: p)
        defer { plane.deallocate() }
        ParallelChunks.run(count: p.outC, parts: threads) { _, channels in
            let scratch = plane.scratch()
            defer { scratch?.deallocate() }
            for oc in channels {
                for n in 0..<p.batch {
                    let xp = plane.pad(input + (n * p.inC + oc / m) * ihw, into: scratch)
                    let dy = gradOutput + (n * p.outC + oc) * ohw
                    plane.weightGradient(xp, dy, gradWeight + oc * taps)
                    if let gradBias { gradBias[oc] += sum(ohw, dy) }
                }
            }
        }
    }
}

// MARK: - Helpers

extension Conv2DKernel {
    @inline(__always)
    private static func load8(_ x: UnsafePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(x).loadUnaligned(as: SIMD8<Float>.self)
    }

    @inline(__always)
    private static func store8(_ v: SIMD8<Float>, _ y: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(y).storeBytes(of: v, as: SIMD8<Float>.self)
    }

    /// Eight columns from x: x[0...7], or with `strideTwo` x[0], x[2], ..., x[14] (reading nothing past x[14]).
    @inline(__always)
    private static func columns8(_ x: UnsafePointer<Float>, _ strideTwo: Bool) -> SIMD8<Float> {
        guard strideTwo else { return load8(x) }
        let lo = load8(x), hi = load8(x + 7)
        return SIMD8(lo[0], lo[2], lo[4], lo[6], hi[1], hi[3], hi[5], hi[7])
    }

    /// y[i] += a * x[i] for i in 0..<n.
    @inline(__always)
    private static func axpy(_ n: Int, _ a: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
        let av = SIMD8<Float>(repeating: a)
        var i = 0
        while i + 8 <= n {
            var yv = load8(y + i)
            yv.addProduct(av, load8(x + i))
            store8(yv, y + i)
            i += 8
        }
        while i < n {
            y[i] += a * x[i]
            i += 1
        }
    }

    /// y[i] = x[i] for i in 0..<n (inline: the rows copied here are too short for a memcpy call to pay).
    @inline(__always)
    private static func copy(_ n: Int, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
        var i = 0
        while i + 8 <= n {
            store8(load8(x + i), y + i)
            i += 8
        }
        while i < n {
            y[i] = x[i]
            i += 1
        }
    }

    /// Σ x[i] for i in 0..<n.
    private static func sum(_ n: Int, _ x: UnsafePointer<Float>) -> Float {
        var a0 = SIMD8<Float>(), a1 = SIMD8<Float>()
        var i = 0
        while i + 16 <= n {
            a0 += load8(x + i)
            a1 += load8(x + i + 8)
            i += 16
        }
        var s = (a0 + a1).sum()
        while i < n {
            s += x[i]
            i += 1
        }
        return s
    }

    /// Per-worker accumulators for a weight gradient that several workers sum into. With one worker
    /// it hands out the caller's buffers; otherwise zeroed private ones that `finish` adds to them.
    private final class PartialSums {
        let workers: Int, weightCount: Int, biasCount: Int
        let gradWeight: UnsafeMutablePointer<Float>, gradBias: UnsafeMutablePointer<Float>?
        let storage: UnsafeMutablePointer<Float>?

        init(workers: Int, weightCount: Int, biasCount: Int,
             gradWeight: UnsafeMutablePointer<Float>, gradBias: UnsafeMutablePointer<Float>?) {
            self.workers = workers; self.weightCount = weightCount; self.biasCount = biasCount
            self.gradWeight = gradWeight; self.gradBias = gradBias
            if workers > 1 {
                let count = workers * (weightCount + biasCount)
                storage = .allocate(capacity: count)
                storage!.initialize(repeating: 0, count: count)
            } else {
                storage = nil
            }
        }

        func buffers(_ worker: Int) -> (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>?) {
            guard let storage else { return (gradWeight, gradBias) }
            let base = storage + worker * (weightCount + biasCount)
            return (base, biasCount > 0 ? base + weightCount : nil)
        }

        func finish() {
            guard let storage else { return }
            for w in 0..<workers {
                let (dW, dB) = buffers(w)
                axpy(weightCount, 1, dW, gradWeight)
                if let dB, let gradBias { axpy(biasCount, 1, dB, gradBias) }
            }
            storage.deallocate()
        }
    }
}

/// Splits 0..<count into at most `parts` contiguous chunks and runs `body(chunk, range)` on each,
/// concurrently when there is more than one. `body` must write only memory that its range owns
/// (or that is private to its chunk number), which is what makes sharing raw pointers safe here.
enum ParallelChunks {
    static func run(count: Int, parts: Int, _ body: (_ chunk: Int, _ range: Range<Int>) -> Void) {
        let chunks = max(1, min(parts, count))
        if chunks == 1 {
            body(0, 0..<count)
            return
        }
        withoutActuallyEscaping(body) { body in
            let shared = SharedBody(body: body)
            DispatchQueue.concurrentPerform(iterations: chunks) { c in
                shared.body(c, (c * count / chunks)..<((c + 1) * count / chunks))
            }
        }
    }

    /// `body` captures raw pointers, which are not Sendable. Sharing it is safe because
    /// `concurrentPerform` returns only after every chunk has finished (so nothing outlives the call)
    /// and the chunks write disjoint memory (the contract of `run`).
    private struct SharedBody: @unchecked Sendable {
        let body: (Int, Range<Int>) -> Void
    }
}
