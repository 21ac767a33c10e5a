import Testing
@testable import FrugalCore

@Suite struct ConvOpGradTests {
    @Test func conv2dGradients() {
        gradCheck("conv2d", [rand([2, 3, 6, 5], seed: 81), rand([4, 3, 3, 3], seed: 82), rand([4], seed: 83)]) {
            $0[0].conv2d(weight: $0[1], bias: $0[2], stride: (1, 1), padding: (1, 1))
        }
        gradCheck("conv2d stride 2 dilation 2", [rand([1, 2, 7, 7], seed: 84), rand([3, 2, 3, 3], seed: 85)]) {
            $0[0].conv2d(weight: $0[1], stride: (2, 2), padding: (2, 2), dilation: (2, 2))
        }
        gradCheck("depthwise conv2d", [rand([2, 4, 5, 5], seed: 86), rand([4, 1, 3, 3], seed: 87)]) {
            $0[0].conv2d(weight: $0[1], padding: (1, 1), groups: 4)
        }
        gradCheck("grouped conv2d", [rand([1, 4, 4, 4], seed: 88), rand([6, 2, 1, 1], seed: 89)]) {
            $0[0].conv2d(weight: $0[1], groups: 2)
        }
    }

    @Test func poolingGradients() {
        // Distinct values so max pooling has no ties under the finite-difference nudge.
        let x = Tensor((0..<72).map { Float(($0 * 37) % 72) / 10 }, shape: [1, 2, 6, 6])
        gradCheck("maxPool2d", [x], eps: 1e-3) { $0[0].maxPool2d(kernel: 2) }
        gradCheck("maxPool2d 3/2/1", [x], eps: 1e-3) { $0[0].maxPool2d(kernel: 3, stride: 2, padding: 1) }
        gradCheck("avgPool2d", [rand([1, 2, 5, 5], seed: 90)]) { $0[0].avgPool2d(kernel: 3, stride: 1, padding: 1, countIncludePad: false) }
        gradCheck("adaptiveAvgPool2d", [rand([2, 2, 5, 7], seed: 91)]) { $0[0].adaptiveAvgPool2d(2, 3) }
    }

    @Test func batchNormGradients() {
        let x = rand([3, 2, 3, 3], seed: 92)
        gradCheck("batchNorm train", [x, rand([2], seed: 93, lo: 0.5, hi: 1.5), rand([2], seed: 94)]) {
            $0[0].batchNorm(mean: nil, variance: nil, weight: $0[1], bias: $0[2], training: true, eps: 1e-5)
        }
        gradCheck("batchNorm eval", [x, rand([2], seed: 95)]) {
            $0[0].batchNorm(mean: Tensor([0.1, -0.2]), variance: Tensor([0.5, 2]), weight: $0[1], bias: nil, training: false, eps: 1e-5)
        }
        gradCheck("batchNorm 2d input", [rand([5, 3], seed: 96)]) {
            $0[0].batchNorm(mean: nil, variance: nil, weight: nil, bias: nil, training: true, eps: 1e-5)
        }
    }

    @Test func convValues() {
        // 1x1x3x3 input, 2x2 kernel of ones: sums of 2x2 windows.
        let x = Tensor((1...9).map(Float.init), shape: [1, 1, 3, 3])
        let w = Tensor.ones([1, 1, 2, 2])
        #expect(x.conv2d(weight: w).array == [12, 16, 24, 28])
        #expect(x.conv2d(weight: w, padding: (1, 1)).shape == [1, 1, 4, 4])
        #expect(x.maxPool2d(kernel: 2, stride: 1).array == [5, 6, 8, 9])
        #expect(x.avgPool2d(kernel: 3).array == [5])
        #expect(x.adaptiveAvgPool2d(1, 1).array == [5])
        let bn = x.batchNorm(mean: nil, variance: nil, weight: nil, bias: nil, training: true, eps: 0)
        #expect(abs(bn.array.reduce(0, +)) < 1e-5)
    }
}
