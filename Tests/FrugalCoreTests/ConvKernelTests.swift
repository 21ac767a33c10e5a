import Testing
import FrugalCore

// Convolution and pooling kernels against naive references computed in Double, against finite
// differences of the forward pass, and against values printed by PyTorch (scripts/pool_reference.py).

// MARK: - Shapes

private func conv(_ batch: Int, _ inC: Int, _ inH: Int, _ inW: Int, _ outC: Int, k: (Int, Int),
                  stride: (Int, Int) = (1, 1), pad: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1),
                  groups: Int = 1) -> Conv2DParams {
    Conv2DParams(batch: batch, inC: inC, inH: inH, inW: inW, outC: outC, kH: k.0, kW: k.1,
                 strideH: stride.0, strideW: stride.1, padH: pad.0, padW: pad.1,
                 dilationH: dilation.0, dilationW: dilation.1, groups: groups)
}

private let convShapes: [Conv2DParams] = [
    conv(1, 1, 1, 1, 1, k: (1, 1)),                                           // 1x1 image, pointwise
    conv(3, 3, 1, 1, 2, k: (1, 1)),                                           // 1x1 images, batch 3
    conv(1, 7, 1, 1, 3, k: (3, 3), pad: (1, 1)),                              // 1x1 image, 3x3 padded
    conv(3, 3, 5, 7, 5, k: (3, 3), pad: (1, 1)),                              // prime channels, 5x7
    conv(1, 2, 5, 7, 3, k: (3, 3), stride: (2, 2), pad: (1, 1)),
    conv(3, 5, 8, 8, 7, k: (3, 3), pad: (2, 2), dilation: (2, 2)),
    conv(1, 3, 7, 5, 4, k: (2, 3), stride: (2, 1), pad: (1, 0), dilation: (1, 2)),  // asymmetric everything
    conv(2, 2, 11, 13, 4, k: (3, 3), stride: (3, 3), pad: (1, 1)),            // stride 3
    conv(1, 2, 3, 3, 3, k: (5, 5), pad: (2, 2)),                              // kernel larger than image
    conv(3, 2, 5, 7, 3, k: (3, 1), pad: (1, 0)),
    conv(1, 3, 5, 7, 2, k: (1, 1), stride: (2, 2)),                           // strided 1x1 (not pointwise)
    conv(1, 3, 5, 7, 2, k: (1, 1), pad: (1, 1)),                              // padded 1x1 (not pointwise)
    conv(3, 4, 6, 6, 6, k: (3, 3), pad: (1, 1), groups: 2),                   // grouped
    conv(1, 6, 5, 5, 4, k: (1, 1), groups: 2),                                // grouped pointwise
    conv(3, 6, 5, 7, 9, k: (3, 3), stride: (2, 2), pad: (1, 1), groups: 3),
    conv(3, 5, 7, 7, 5, k: (3, 3), pad: (1, 1), groups: 5),                   // depthwise
    conv(1, 5, 8, 8, 5, k: (3, 3), stride: (2, 2), pad: (1, 1), groups: 5),   // depthwise, stride 2
    conv(3, 4, 9, 9, 4, k: (3, 3), pad: (2, 2), dilation: (2, 2), groups: 4), // DARTS dil conv
    conv(1, 3, 9, 9, 3, k: (5, 5), stride: (2, 2), pad: (2, 2), dilation: (2, 2), groups: 3),
    conv(3, 3, 9, 16, 3, k: (3, 3), groups: 3),                               // depthwise unpadded, 14 wide
    conv(1, 4, 7, 12, 4, k: (3, 3), stride: (1, 2), pad: (1, 1), groups: 4),
    conv(1, 3, 6, 7, 6, k: (5, 5), pad: (2, 2), groups: 3),                   // channel multiplier 2
    conv(1, 16, 6, 20, 16, k: (3, 3), pad: (1, 1), groups: 16),               // 20 wide: vectors + tail
    conv(2, 2, 13, 17, 2, k: (3, 3), pad: (1, 1), groups: 2),                 // 4-row blocks + 1 row, 17 wide
    conv(1, 3, 4, 5, 3, k: (1, 1), pad: (1, 1), groups: 3),                   // padding wider than the kernel
    conv(1, 2, 9, 10, 2, k: (3, 3), pad: (3, 3), groups: 2),
    conv(1, 2, 5, 6, 2, k: (1, 1), stride: (2, 2), pad: (1, 1), groups: 2),    // strided, padding wider than kernel
    conv(1, 2, 7, 6, 2, k: (1, 1), stride: (2, 1), pad: (1, 1), groups: 2),
    conv(2, 3, 9, 21, 3, k: (3, 3), stride: (2, 2), pad: (1, 1), groups: 3),  // stride-2 vectors, 11 wide
    conv(1, 2, 12, 34, 2, k: (3, 3), stride: (2, 2), pad: (2, 2), dilation: (2, 2), groups: 2),
    conv(3, 1, 12, 12, 4, k: (5, 5)),                                          // LeNet conv1 (multiplier 4)
    conv(2, 4, 8, 8, 6, k: (5, 5)),                                            // LeNet conv2
    // Column matrices over Conv2DKernel's 2^20-float budget, unrolled in two bands of output rows.
    conv(1, 1, 350, 350, 2, k: (3, 3), pad: (1, 1)),
    conv(1, 16, 171, 171, 2, k: (3, 3), stride: (2, 2), pad: (1, 1)),
]

private func applicable(_ p: Conv2DParams) -> [Conv2DAlgorithm] {
    Conv2DAlgorithm.allCases.filter { $0.isApplicable(to: p) }
}

// MARK: - Reference (7 nested loops, Double)

/// Calls `visit(y, x, w)` with the flat output, input and weight indices of every multiply of the
/// convolution whose input position is inside the image (padding contributes nothing).
private func forEachProduct(_ p: Conv2DParams, _ visit: (Int, Int, Int) -> Void) {
    let icg = p.inC / p.groups, ocg = p.outC / p.groups
    for n in 0..<p.batch {
        for oc in 0..<p.outC {
            let g = oc / ocg
            for oh in 0..<p.outH {
                for ow in 0..<p.outW {
                    let y = ((n * p.outC + oc) * p.outH + oh) * p.outW + ow
                    for c in 0..<icg {
                        for kh in 0..<p.kH {
                            for kw in 0..<p.kW {
                                let ih = oh * p.strideH - p.padH + kh * p.dilationH
                                let iw = ow * p.strideW - p.padW + kw * p.dilationW
                                guard ih >= 0 && ih < p.inH && iw >= 0 && iw < p.inW else { continue }
                                let x = ((n * p.inC + g * icg + c) * p.inH + ih) * p.inW + iw
                                let w = ((oc * icg + c) * p.kH + kh) * p.kW + kw
                                visit(y, x, w)
                            }
                        }
                    }
                }
            }
        }
    }
}

private func referenceForward(_ p: Conv2DParams, _ x: [Float], _ w: [Float], _ b: [Float]?) -> [Double] {
    var y = [Double](repeating: 0, count: p.outputCount)
    if let b {
        for i in y.indices { y[i] = Double(b[(i / (p.outH * p.outW)) % p.outC]) }
    }
    forEachProduct(p) { yi, xi, wi in y[yi] += Double(x[xi]) * Double(w[wi]) }
    return y
}

private func referenceBackwardInput(_ p: Conv2DParams, _ gy: [Float], _ w: [Float]) -> [Double] {
    var gx = [Double](repeating: 0, count: p.inputCount)
    forEachProduct(p) { yi, xi, wi in gx[xi] += Double(gy[yi]) * Double(w[wi]) }
    return gx
}

private func referenceBackwardWeight(_ p: Conv2DParams, _ x: [Float], _ gy: [Float]) -> (w: [Double], b: [Double]) {
    var gw = [Double](repeating: 0, count: p.weightCount)
    var gb = [Double](repeating: 0, count: p.outC)
    forEachProduct(p) { yi, xi, wi in gw[wi] += Double(gy[yi]) * Double(x[xi]) }
    for i in gy.indices { gb[(i / (p.outH * p.outW)) % p.outC] += Double(gy[i]) }
    return (gw, gb)
}

// MARK: - Helpers

/// Deterministic values in [-1, 1) (SplitMix64).
private func randomFloats(_ count: Int, seed: UInt64) -> [Float] {
    var s = seed &* 0x9E37_79B9_7F4A_7C15 &+ 1
    return (0..<count).map { _ in
        s &+= 0x9E37_79B9_7F4A_7C15
        var z = s
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Float(z >> 40) / Float(1 << 23) - 1
    }
}

/// Expects |actual - expected| <= tol * (1 + |expected|) everywhere; reports the first mismatch.
private func expectClose(_ actual: [Float], _ expected: [Double], tol: Double = 1e-4, _ what: @autoclosure () -> String,
                         sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(actual.count == expected.count, "\(what()): \(actual.count) values, expected \(expected.count)",
            sourceLocation: sourceLocation)
    for i in 0..<min(actual.count, expected.count) where !(abs(Double(actual[i]) - expected[i]) <= tol * (1 + abs(expected[i]))) {
        Issue.record("\(what()): index \(i) is \(actual[i]), expected \(expected[i])", sourceLocation: sourceLocation)
        return
    }
}

private func runForward(_ p: Conv2DParams, _ x: [Float], _ w: [Float], _ b: [Float]?,
                        _ algorithm: Conv2DAlgorithm? = nil, threads: Int = 2) -> [Float] {
    var y = [Float](repeating: .nan, count: p.outputCount)
    x.withUnsafeBufferPointer { x in
        w.withUnsafeBufferPointer { w in
            y.withUnsafeMutableBufferPointer { y in
                if let b {
                    b.withUnsafeBufferPointer { b in
                        Conv2DKernel.forward(p, input: x.baseAddress!, weight: w.baseAddress!, bias: b.baseAddress!,
                                             output: y.baseAddress!, algorithm: algorithm, threads: threads)
                    }
                } else {
                    Conv2DKernel.forward(p, input: x.baseAddress!, weight: w.baseAddress!, bias: nil,
                                         output: y.baseAddress!, algorithm: algorithm, threads: threads)
                }
            }
        }
    }
    return y
}

private func runBackwardInput(_ p: Conv2DParams, _ gy: [Float], _ w: [Float],
                              _ algorithm: Conv2DAlgorithm? = nil, threads: Int = 2) -> [Float] {
    var gx = [Float](repeating: .nan, count: p.inputCount)  // must be overwritten
    gy.withUnsafeBufferPointer { gy in
        w.withUnsafeBufferPointer { w in
            gx.withUnsafeMutableBufferPointer { gx in
                Conv2DKernel.backwardInput(p, gradOutput: gy.baseAddress!, weight: w.baseAddress!,
                                           gradInput: gx.baseAddress!, algorithm: algorithm, threads: threads)
            }
        }
    }
    return gx
}

/// Runs backwardWeight on top of the given starting gradients (it accumulates).
private func runBackwardWeight(_ p: Conv2DParams, _ x: [Float], _ gy: [Float], start gw: [Float], startBias gb: [Float]?,
                               _ algorithm: Conv2DAlgorithm? = nil, threads: Int = 2) -> (w: [Float], b: [Float]?) {
    var gw = gw, gb = gb
    x.withUnsafeBufferPointer { x in
        gy.withUnsafeBufferPointer { gy in
            gw.withUnsafeMutableBufferPointer { gw in
                if gb != nil {
                    gb!.withUnsafeMutableBufferPointer { gb in
                        Conv2DKernel.backwardWeight(p, input: x.baseAddress!, gradOutput: gy.baseAddress!, gradWeight: gw.baseAddress!,
                                                    gradBias: gb.baseAddress!, algorithm: algorithm, threads: threads)
                    }
                } else {
                    Conv2DKernel.backwardWeight(p, input: x.baseAddress!, gradOutput: gy.baseAddress!, gradWeight: gw.baseAddress!,
                                                gradBias: nil, algorithm: algorithm, threads: threads)
                }
            }
        }
    }
    return (gw, gb)
}

// MARK: - Convolution tests

@Suite struct ConvKernelTests {
    @Test func outputShapeFollowsPyTorch() {
        let p = conv(64, 1, 28, 28, 32, k: (5, 5))
        #expect(p.outH == 24 && p.outW == 24)
        let q = conv(1, 3, 7, 5, 4, k: (2, 3), stride: (2, 1), pad: (1, 0), dilation: (1, 2))
        #expect(q.outH == 4 && q.outW == 1)  // (7+2-1-1)/2+1, (5-4-1)/1+1
        #expect(conv(1, 2, 11, 13, 4, k: (3, 3), stride: (3, 3), pad: (1, 1)).outW == 5)
    }

    @Test func algorithmChoice() {
        #expect(Conv2DAlgorithm.preferred(for: conv(2, 16, 8, 8, 16, k: (1, 1))) == .pointwise)
        #expect(Conv2DAlgorithm.preferred(for: conv(2, 16, 8, 8, 16, k: (3, 3), pad: (1, 1), groups: 16)) == .depthwise)
        #expect(Conv2DAlgorithm.preferred(for: conv(2, 16, 8, 8, 32, k: (3, 3), pad: (1, 1))) == .im2col)
        #expect(Conv2DAlgorithm.preferred(for: conv(2, 4, 8, 8, 32, k: (3, 3), groups: 4)) == .depthwise)  // multiplier 8
        #expect(Conv2DAlgorithm.preferred(for: conv(64, 1, 28, 28, 32, k: (5, 5))) == .im2col)  // LeNet conv1, multiplier 32
        #expect(!Conv2DAlgorithm.pointwise.isApplicable(to: conv(1, 3, 5, 7, 2, k: (1, 1), stride: (2, 2))))
        #expect(!Conv2DAlgorithm.depthwise.isApplicable(to: conv(3, 4, 6, 6, 6, k: (3, 3), groups: 2)))
    }

    @Test(arguments: convShapes)
    func forwardMatchesReference(_ p: Conv2DParams) {
        let x = randomFloats(p.inputCount, seed: 1), w = randomFloats(p.weightCount, seed: 2)
        let b = randomFloats(p.outC, seed: 3)
        let expectedWithBias = referenceForward(p, x, w, b), expected = referenceForward(p, x, w, nil)
        for algorithm in applicable(p) {
            for threads in [1, 2] {
                expectClose(runForward(p, x, w, b, algorithm, threads: threads), expectedWithBias,
                            "\(p) \(algorithm) threads \(threads) with bias")
                expectClose(runForward(p, x, w, nil, algorithm, threads: threads), expected,
                            "\(p) \(algorithm) threads \(threads) without bias")
            }
        }
    }

    @Test(arguments: convShapes)
    func backwardInputMatchesReference(_ p: Conv2DParams) {
        let gy = randomFloats(p.outputCount, seed: 4), w = randomFloats(p.weightCount, seed: 5)
        let expected = referenceBackwardInput(p, gy, w)
        for algorithm in applicable(p) {
            for threads in [1, 2] {
                expectClose(runBackwardInput(p, gy, w, algorithm, threads: threads), expected, "\(p) \(algorithm) threads \(threads)")
            }
        }
    }

    @Test(arguments: convShapes)
    func backwardWeightAccumulatesReference(_ p: Conv2DParams) {
        let x = randomFloats(p.inputCount, seed: 6), gy = randomFloats(p.outputCount, seed: 7)
        let w0 = randomFloats(p.weightCount, seed: 8), b0 = randomFloats(p.outC, seed: 9)
        let ref = referenceBackwardWeight(p, x, gy)
        let expectedW = zip(w0, ref.w).map { Double($0) + $1 }, expectedB = zip(b0, ref.b).map { Double($0) + $1 }
        // Each gradient sums batch*outH*outW products; a plain float GEMM loop over 10^5 of them drifts
        // by ~1e-4 relative, so the tolerance grows with the square root of that length.
        let tol = 1e-4 * max(1, (Double(p.batch * p.outH * p.outW) / 1000).squareRoot())
        for algorithm in applicable(p) {
            for threads in [1, 2] {
                let got = runBackwardWeight(p, x, gy, start: w0, startBias: b0, algorithm, threads: threads)
                expectClose(got.w, expectedW, tol: tol, "\(p) \(algorithm) threads \(threads) weight")
                expectClose(got.b ?? [], expectedB, tol: tol, "\(p) \(algorithm) threads \(threads) bias")
                let noBias = runBackwardWeight(p, x, gy, start: w0, startBias: nil, algorithm, threads: threads)
                expectClose(noBias.w, expectedW, tol: tol, "\(p) \(algorithm) threads \(threads) weight, no bias gradient")
            }
        }
    }

    /// L = Σ gy ⊙ forward(x, w, b) is linear in each of x, w, b, so a central difference is exact up
    /// to float rounding: dL/dv ≈ (L(v + h) - L(v - h)) / 2h must equal the backward kernels' gradients.
    @Test(arguments: convShapes)
    func backwardMatchesFiniteDifferences(_ p: Conv2DParams) {
        let x = randomFloats(p.inputCount, seed: 10), w = randomFloats(p.weightCount, seed: 11)
        let b = randomFloats(p.outC, seed: 12), gy = randomFloats(p.outputCount, seed: 13)
        let h: Float = 0.5
        func loss(_ x: [Float], _ w: [Float], _ b: [Float]) -> Double {
            zip(runForward(p, x, w, b), gy).reduce(0) { $0 + Double($1.0) * Double($1.1) }
        }
        func difference(_ values: [Float], _ i: Int, _ l: ([Float]) -> Double) -> Double {
            var plus = values, minus = values
            plus[i] += h
            minus[i] -= h
            return (l(plus) - l(minus)) / Double(2 * h)
        }
        let gx = runBackwardInput(p, gy, w)
        let g = runBackwardWeight(p, x, gy, start: [Float](repeating: 0, count: p.weightCount),
                                  startBias: [Float](repeating: 0, count: p.outC))
        let tol = 1e-3
        // Up to ~20 positions of each tensor, spread over it.
        for i in stride(from: 0, to: x.count, by: max(1, x.count / 20)) {
            let fd = difference(x, i) { loss($0, w, b) }
            #expect(abs(Double(gx[i]) - fd) <= tol * (1 + abs(fd)), "\(p) dL/dx[\(i)] = \(gx[i]), finite difference \(fd)")
        }
        for i in stride(from: 0, to: w.count, by: max(1, w.count / 20)) {
            let fd = difference(w, i) { loss(x, $0, b) }
            #expect(abs(Double(g.w[i]) - fd) <= tol * (1 + abs(fd)), "\(p) dL/dw[\(i)] = \(g.w[i]), finite difference \(fd)")
        }
        for i in b.indices {
            let fd = difference(b, i) { loss(x, w, $0) }
            #expect(abs(Double(g.b![i]) - fd) <= tol * (1 + abs(fd)), "\(p) dL/db[\(i)] = \(g.b![i]), finite difference \(fd)")
        }
    }

    @Test func invalidGroupsAreRejected() async {
        await #expect(processExitsWith: .failure) {
            _ = Conv2DParams(batch: 1, inC: 3, inH: 4, inW: 4, outC: 4, kH: 3, kW: 3, groups: 2)
        }
    }
}

// MARK: - Pooling reference

/// Naive pooling over an explicitly padded copy of each plane (padding = nil cells), windows clipped to
/// the padded array as PyTorch does in ceil mode. Returns output, argmax (first max in row-major order
/// wins) and, per output, the input indices of its window and its two divisors.
private struct ReferencePool {
    var output: [Double] = []
    var argmax: [Int32] = []
    var windows: [[Int]] = []        // flat input indices (whole tensor) inside the window
    var paddedCounts: [Int] = []     // window cells within the padded array

    init(_ p: Pool2DParams, _ x: [Float], average: Bool, countIncludePad: Bool) {
        let ph = p.inH + 2 * p.padH, pw = p.inW + 2 * p.padW
        for plane in 0..<(p.batch * p.channels) {
            var padded = [Float?](repeating: nil, count: ph * pw)
            for ih in 0..<p.inH {
                for iw in 0..<p.inW { padded[(ih + p.padH) * pw + iw + p.padW] = x[(plane * p.inH + ih) * p.inW + iw] }
            }
            for oh in 0..<p.outH {
                for ow in 0..<p.outW {
                    var cells = 0, members: [Int] = [], best: Float? = nil, arg = -1
                    for r in (oh * p.strideH)..<min(oh * p.strideH + p.kH, ph) {
                        for c in (ow * p.strideW)..<min(ow * p.strideW + p.kW, pw) {
                            cells += 1
                            guard let v = padded[r * pw + c] else { continue }
                            let index = (r - p.padH) * p.inW + (c - p.padW)
                            members.append(plane * p.inH * p.inW + index)
                            if best == nil || v > best! || v.isNaN {
                                best = v
                                arg = index
                            }
                        }
                    }
                    if average {
                        let sum = members.reduce(0.0) { $0 + Double(x[$1]) }
                        output.append(sum / Double(countIncludePad ? cells : members.count))
                    } else {
                        output.append(Double(best!))
                    }
                    argmax.append(Int32(arg))
                    windows.append(members)
                    paddedCounts.append(cells)
                }
            }
        }
    }
}

private let poolShapes: [Pool2DParams] = [
    Pool2DParams(batch: 2, channels: 3, inH: 6, inW: 6, kernel: 2),
    Pool2DParams(batch: 1, channels: 2, inH: 5, inW: 7, kernel: 2),                            // floor drops the edge
    Pool2DParams(batch: 1, channels: 2, inH: 5, inW: 7, kernel: 2, ceilMode: true),            // ceil keeps it
    Pool2DParams(batch: 3, channels: 2, inH: 7, inW: 6, kernel: 3, stride: 2, padding: 1),
    Pool2DParams(batch: 1, channels: 3, inH: 7, inW: 6, kernel: 3, stride: 2, padding: 1, ceilMode: true),
    Pool2DParams(batch: 1, channels: 2, inH: 6, inW: 6, kernel: 3, stride: 2, ceilMode: true),  // window past the border
    Pool2DParams(batch: 2, channels: 1, inH: 4, inW: 4, kernel: 3, stride: 1, padding: 1),     // DARTS 3x3 pools
    Pool2DParams(batch: 1, channels: 2, inH: 5, inW: 8, kH: 2, kW: 3, strideH: 1, strideW: 2, padH: 1, padW: 1),
    Pool2DParams(batch: 2, channels: 2, inH: 1, inW: 1, kernel: 1),
    // Wide enough for the eight-column vector paths (with an overlapping last chunk).
    Pool2DParams(batch: 2, channels: 3, inH: 6, inW: 21, kernel: 3, stride: 1, padding: 1),
    Pool2DParams(batch: 1, channels: 2, inH: 7, inW: 37, kernel: 3, stride: 2, padding: 1, ceilMode: true),
    Pool2DParams(batch: 2, channels: 2, inH: 6, inW: 40, kernel: 2),
    Pool2DParams(batch: 1, channels: 1, inH: 5, inW: 12, kernel: 3, stride: 1),
]

private func maxPool(_ p: Pool2DParams, _ x: [Float], threads: Int = 2) -> ([Float], [Int32]) {
    var y = [Float](repeating: .nan, count: p.outputCount), idx = [Int32](repeating: -7, count: p.outputCount)
    Pool2DKernel.maxForward(p, input: x, output: &y, indices: &idx, threads: threads)
    return (y, idx)
}

// MARK: - Pooling tests

@Suite struct PoolKernelTests {
    @Test(arguments: poolShapes)
    func maxPoolMatchesReferenceWithTies(_ p: Pool2DParams) {
        // Values from {-1, 0, 1}: most windows hold ties, and the first maximum must win.
        let x = randomFloats(p.inputCount, seed: 20).map { ($0 * 1.5).rounded() }
        let ref = ReferencePool(p, x, average: false, countIncludePad: false)
        for threads in [1, 2] {
            let (y, idx) = maxPool(p, x, threads: threads)
            expectClose(y, ref.output, tol: 0, "\(p) max threads \(threads)")
            #expect(idx == ref.argmax, "\(p) argmax threads \(threads)")
        }
    }

    @Test(arguments: poolShapes)
    func maxBackwardScattersAndAccumulates(_ p: Pool2DParams) {
        let x = randomFloats(p.inputCount, seed: 21).map { ($0 * 1.5).rounded() }
        let gy = randomFloats(p.outputCount, seed: 22), g0 = randomFloats(p.inputCount, seed: 23)
        let ref = ReferencePool(p, x, average: false, countIncludePad: false)
        var expected = g0.map(Double.init)
        for (o, i) in ref.argmax.enumerated() { expected[(o / (p.outH * p.outW)) * p.inH * p.inW + Int(i)] += Double(gy[o]) }
        let (_, idx) = maxPool(p, x)
        var gx = g0
        Pool2DKernel.maxBackward(p, gradOutput: gy, indices: idx, gradInput: &gx)
        expectClose(gx, expected, tol: 1e-6, "\(p) max backward")
    }

    @Test func maxPoolPropagatesNaN() {
        let p = Pool2DParams(batch: 1, channels: 1, inH: 2, inW: 4, kernel: 2)
        let (y, idx) = maxPool(p, [1, 5, 2, 3, .nan, 4, 9, -1])
        #expect(y[0].isNaN && idx[0] == 4)
        #expect(y[1] == 9 && idx[1] == 6)
        // Wide rows take the vector path: with two NaNs in a window the later one wins (as in PyTorch).
        var wide = (0..<40).map(Float.init)
        wide[4] = .nan
        wide[25] = .nan
        let (yw, idxw) = maxPool(Pool2DParams(batch: 1, channels: 1, inH: 2, inW: 20, kernel: 2), wide)
        #expect(yw[2].isNaN && idxw[2] == 25)
        #expect(Array(yw[3...]) == [27, 29, 31, 33, 35, 37, 39] && idxw == [21, 23, 25, 27, 29, 31, 33, 35, 37, 39])
    }

    @Test(arguments: poolShapes, [true, false])
    func avgPoolMatchesReference(_ p: Pool2DParams, countIncludePad: Bool) {
        let x = randomFloats(p.inputCount, seed: 24), gy = randomFloats(p.outputCount, seed: 25)
        let g0 = randomFloats(p.inputCount, seed: 26)
        let ref = ReferencePool(p, x, average: true, countIncludePad: countIncludePad)
        for threads in [1, 2] {
            var y = [Float](repeating: .nan, count: p.outputCount)
            Pool2DKernel.avgForward(p, countIncludePad: countIncludePad, input: x, output: &y, threads: threads)
            expectClose(y, ref.output, tol: 1e-6, "\(p) avg countIncludePad \(countIncludePad) threads \(threads)")
            // Backward: each gy spread over its window's input cells, divided like the forward.
            var expected = g0.map(Double.init)
            for o in 0..<p.outputCount {
                let count = countIncludePad ? ref.paddedCounts[o] : ref.windows[o].count
                for i in ref.windows[o] { expected[i] += Double(gy[o]) / Double(count) }
            }
            var gx = g0
            Pool2DKernel.avgBackward(p, countIncludePad: countIncludePad, gradOutput: gy, gradInput: &gx, threads: threads)
            expectClose(gx, expected, tol: 1e-6, "\(p) avg backward countIncludePad \(countIncludePad) threads \(threads)")
        }
    }

    /// Values printed by scripts/pool_reference.py (PyTorch 2.15) for x = arange(35) as 1x1x5x7.
    @Test func poolMatchesPyTorchValues() {
        let x = (0..<35).map(Float.init)
        let maxCeil = Pool2DParams(batch: 1, channels: 1, inH: 5, inW: 7, kernel: 2, ceilMode: true)
        let (y, idx) = maxPool(maxCeil, x)
        #expect(y == [8, 10, 12, 13, 22, 24, 26, 27, 29, 31, 33, 34])
        #expect(idx == [8, 10, 12, 13, 22, 24, 26, 27, 29, 31, 33, 34])
        let p = Pool2DParams(batch: 1, channels: 1, inH: 5, inW: 7, kernel: 3, stride: 2, padding: 1, ceilMode: true)
        let (yNeg, idxNeg) = maxPool(p, x.map { -$0 })
        #expect(yNeg == [-0.0, -1, -3, -5, -7, -8, -10, -12, -21, -22, -24, -26])
        #expect(idxNeg == [0, 1, 3, 5, 7, 8, 10, 12, 21, 22, 24, 26])

        func avg(_ p: Pool2DParams, _ x: [Float], _ include: Bool) -> [Float] {
            var y = [Float](repeating: .nan, count: p.outputCount)
            Pool2DKernel.avgForward(p, countIncludePad: include, input: x, output: &y)
            return y
        }
        expectClose(avg(p, x, true), [1.7777777910232544, 3.6666667461395264, 5.0, 4.0, 9.666666984558105, 16.0, 18.0, 13.0,
                                      11.11111068725586, 17.66666603088379, 19.0, 13.333333015441895], tol: 1e-6, "avg ceil include pad")
        expectClose(avg(p, x, false), [4.0, 5.5, 7.5, 9.0, 14.5, 16.0, 18.0, 19.5, 25.0, 26.5, 28.5, 30.0], tol: 1e-6,
                    "avg ceil exclude pad")
        let rect = Pool2DParams(batch: 1, channels: 1, inH: 5, inW: 7, kH: 2, kW: 3, strideH: 2, strideW: 2, padH: 1, padW: 1)
        expectClose(avg(rect, x, true), [0.1666666716337204, 1.0, 2.0, 1.8333333730697632, 7.333333492279053, 12.5, 14.5,
                                         10.666666984558105, 16.66666603088379, 26.5, 28.5, 20.0], tol: 1e-6, "avg 2x3 include pad")
        expectClose(avg(rect, x, false), [0.5, 2.0, 4.0, 5.5, 11.0, 12.5, 14.5, 16.0, 25.0, 26.5, 28.5, 30.0], tol: 1e-6,
                    "avg 2x3 exclude pad")
        let past = Pool2DParams(batch: 1, channels: 1, inH: 6, inW: 6, kernel: 3, stride: 2, ceilMode: true)
        expectClose(avg(past, (0..<36).map(Float.init), true), [7.0, 9.0, 10.5, 19.0, 21.0, 22.5, 28.0, 30.0, 31.5], tol: 1e-6,
                    "avg ceil window past the border")

        func adaptive(_ outH: Int, _ outW: Int) -> [Float] {
            let q = AdaptivePool2DParams(batch: 1, channels: 1, inH: 5, inW: 7, outH: outH, outW: outW)
            var y = [Float](repeating: .nan, count: outH * outW)
            Pool2DKernel.adaptiveAvgForward(q, input: x, output: &y)
            return y
        }
        expectClose(adaptive(3, 2), [5.0, 8.0, 15.5, 18.5, 26.0, 29.0], tol: 1e-6, "adaptive 3x2")
        expectClose(adaptive(4, 9), [3.5, 4.0, 5.0, 6.0, 6.5, 7.0, 8.0, 9.0, 9.5, 10.5, 11.0, 12.0, 13.0, 13.5, 14.0, 15.0, 16.0,
                                     16.5, 17.5, 18.0, 19.0, 20.0, 20.5, 21.0, 22.0, 23.0, 23.5, 24.5, 25.0, 26.0, 27.0, 27.5,
                                     28.0, 29.0, 30.0, 30.5], tol: 1e-6, "adaptive 4x9 (upsampling columns)")
    }

    @Test(arguments: [(5, 7, 3, 2), (4, 4, 1, 1), (3, 3, 5, 5), (6, 6, 6, 6), (7, 5, 2, 3)])
    func adaptiveAvgMatchesReference(_ shape: (Int, Int, Int, Int)) {
        let p = AdaptivePool2DParams(batch: 2, channels: 3, inH: shape.0, inW: shape.1, outH: shape.2, outW: shape.3)
        let inCount = 6 * p.inH * p.inW, outCount = 6 * p.outH * p.outW
        let x = randomFloats(inCount, seed: 30), gy = randomFloats(outCount, seed: 31), g0 = randomFloats(inCount, seed: 32)
        var expectedY = [Double](repeating: 0, count: outCount), expectedGx = g0.map(Double.init)
        for plane in 0..<6 {
            for oh in 0..<p.outH {
                // floor(i*in/out) and ceil((i+1)*in/out), computed in Double
                let h0 = Int((Double(oh * p.inH) / Double(p.outH)).rounded(.down))
                let h1 = Int((Double((oh + 1) * p.inH) / Double(p.outH)).rounded(.up))
                for ow in 0..<p.outW {
                    let w0 = Int((Double(ow * p.inW) / Double(p.outW)).rounded(.down))
                    let w1 = Int((Double((ow + 1) * p.inW) / Double(p.outW)).rounded(.up))
                    let o = (plane * p.outH + oh) * p.outW + ow
                    let n = Double((h1 - h0) * (w1 - w0))
                    for ih in h0..<h1 {
                        for iw in w0..<w1 {
                            let i = (plane * p.inH + ih) * p.inW + iw
                            expectedY[o] += Double(x[i]) / n
                            expectedGx[i] += Double(gy[o]) / n
                        }
                    }
                }
            }
        }
        for threads in [1, 2] {
            var y = [Float](repeating: .nan, count: outCount), gx = g0
            Pool2DKernel.adaptiveAvgForward(p, input: x, output: &y, threads: threads)
            Pool2DKernel.adaptiveAvgBackward(p, gradOutput: gy, gradInput: &gx, threads: threads)
            expectClose(y, expectedY, tol: 1e-5, "adaptive \(shape) threads \(threads)")
            expectClose(gx, expectedGx, tol: 1e-5, "adaptive backward \(shape) threads \(threads)")
        }
    }
}
