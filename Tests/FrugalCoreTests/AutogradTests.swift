import Testing
@testable import FrugalCore

@Suite struct ElementwiseGradTests {
    @Test func binaryOpsWithBroadcasting() {
        let a = rand([3, 4], seed: 1), b = rand([4], seed: 2), c = randAway([3, 1], seed: 3)
        gradCheck("add", [a, b]) { $0[0] + $0[1] }
        gradCheck("sub", [a, c]) { $0[0] - $0[1] }
        gradCheck("mul", [a, b]) { $0[0] * $0[1] }
        gradCheck("div", [a, c]) { $0[0] / $0[1] }
        gradCheck("mul same tensor", [a]) { $0[0] * $0[0] }
        gradCheck("maximum", [rand([2, 3], seed: 4), rand([2, 3], seed: 5)]) { $0[0].maximum($0[1]) }
        gradCheck("minimum", [rand([2, 3], seed: 6), rand([3], seed: 7)]) { $0[0].minimum($0[1]) }
        gradCheck("scalars", [a]) { (2 * $0[0] + 1) / 4 - 3 }
        gradCheck("where", [a, b]) { x in
            let mask = Tensor([1, 0, 1, 0], shape: [4])
            return x[0].where_(mask, x[1])
        }
    }

    @Test func unaryOps() {
        let x = randAway([2, 5], seed: 11)
        let pos = rand([2, 5], seed: 12, lo: 0.5, hi: 2)
        gradCheck("exp", [x]) { $0[0].exp() }
        gradCheck("log", [pos]) { $0[0].log() }
        gradCheck("sqrt", [pos]) { $0[0].sqrt() }
        gradCheck("pow", [pos]) { $0[0].pow(2.5) }
        gradCheck("abs", [x]) { $0[0].abs() }
        gradCheck("relu", [x]) { $0[0].relu() }
        gradCheck("leakyRelu", [x]) { $0[0].leakyRelu(0.1) }
        gradCheck("sigmoid", [x]) { $0[0].sigmoid() }
        gradCheck("tanh", [x]) { $0[0].tanh() }
        gradCheck("silu", [x]) { $0[0].silu() }
        gradCheck("gelu", [x]) { $0[0].gelu() }
        gradCheck("geluTanh", [x]) { $0[0].geluTanh() }
        gradCheck("clamp", [x]) { $0[0].clamp(min: -0.9, max: 0.8) }
        gradCheck("neg", [x]) { -$0[0] }
        gradCheck("maskedFill", [x]) { $0[0].maskedFill(Tensor([1, 0, 0, 1, 0], shape: [5]), -5) }
    }

    @Test func forwardValues() {
        let a = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
        let b = Tensor([10, 20, 30], shape: [3])
        #expect((a + b).array == [11, 22, 33, 14, 25, 36])
        #expect((a * b).array == [10, 40, 90, 40, 100, 180])
        #expect((b - a).array == [9, 18, 27, 6, 15, 24])
        let col = Tensor([1, 2], shape: [2, 1])
        #expect((a / col).array == [1, 2, 3, 2, 2.5, 3])
        #expect(broadcastShapes([2, 1, 3], [4, 1]) == [2, 4, 3])
        #expect(Tensor([-1, 0, 2]).relu().array == [0, 0, 2])
        // Broadcasting through a transposed (strided) view.
        let t = a.transposed()            // [3, 2]
        #expect((t + Tensor([100, 200], shape: [2])).array == [101, 204, 102, 205, 103, 206])
    }
}

@Suite struct ShapeGradTests {
    @Test func viewsAndJoins() {
        let x = rand([2, 3, 4], seed: 21)
        gradCheck("reshape", [x]) { $0[0].reshaped([6, 4]) * Tensor.arange(4) }
        gradCheck("permute", [x]) { $0[0].permuted(2, 0, 1) }
        gradCheck("transpose+contiguous", [x]) { $0[0].transposed(0, 2).contiguous() }
        gradCheck("expand", [rand([3, 1], seed: 22)]) { $0[0].expanded(to: [2, 3, 4]) }
        gradCheck("slice", [x]) { $0[0].slice(axis: 2, 1, 4, step: 2) }
        gradCheck("select", [x]) { $0[0].select(axis: 1, 2) }
        gradCheck("split", [x]) { x in let p = x[0].split([1, 3], axis: 2); return p[0] * p[1].sum(axis: 2, keepDims: true) }
        gradCheck("concat", [x, rand([2, 3, 2], seed: 23)]) { Tensor.concat([$0[0], $0[1]], axis: 2) }
        gradCheck("stack", [rand([2, 3], seed: 24), rand([2, 3], seed: 25)]) { Tensor.stack($0, axis: 1) }
        gradCheck("squeeze/unsqueeze", [rand([3, 1], seed: 26)]) { $0[0].squeezed(1).unsqueezed(0) }
    }

    @Test func viewValues() {
        let x = Tensor((0..<24).map(Float.init), shape: [2, 3, 4])
        #expect(x.permuted(2, 0, 1)[1, 1, 2] == x[1, 2, 1])
        #expect(x.transposed(0, 2).contiguous().shape == [4, 3, 2])
        #expect(x.slice(axis: 2, 1, 4, step: 2).array == [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23])
        #expect(!x.transposed().isContiguous)
        #expect(x.transposed().contiguous().isContiguous)
        let c = Tensor.concat([Tensor([1, 2], shape: [1, 2]), Tensor([3, 4, 5, 6], shape: [2, 2])], axis: 0)
        #expect(c.shape == [3, 2] && c.array == [1, 2, 3, 4, 5, 6])
        #expect(Tensor.stack([Tensor([1, 2]), Tensor([3, 4])], axis: 1).array == [1, 3, 2, 4])
        #expect(x.reshaped([-1, 4]).shape == [6, 4])
        #expect(Tensor([1, 2, 3]).expanded(to: [2, 3]).array == [1, 2, 3, 1, 2, 3])
    }
}

@Suite struct ReduceGradTests {
    @Test func reductions() {
        let x = rand([3, 4, 2], seed: 31)
        gradCheck("sum all", [x]) { $0[0].sum() }
        gradCheck("sum axes", [x]) { $0[0].sum(axes: [0, 2]) }
        gradCheck("sum keepDims", [x]) { $0[0].sum(axis: 1, keepDims: true) }
        gradCheck("mean", [x]) { $0[0].mean(axis: -1) }
        gradCheck("variance", [x]) { $0[0].variance(axes: [1]) }
        gradCheck("max", [x]) { $0[0].max(axis: 1) }
        gradCheck("min", [x]) { $0[0].min(axis: 0) }
    }

    @Test func reductionValues() {
        let x = Tensor([1, 5, 3, 4, 2, 6], shape: [2, 3])
        #expect(x.sum().item == 21)
        #expect(x.sum(axis: 0).array == [5, 7, 9])
        #expect(x.sum(axis: 1).array == [9, 12])
        #expect(x.mean(axis: 1).array == [3, 4])
        #expect(x.max(axis: 1).array == [5, 6])
        #expect(x.argmax(axis: 1) == [1, 2])
        #expect(x.argmax(axis: 0) == [1, 0, 1])
        #expect(abs(x.variance(axes: [1]).array[0] - 8.0 / 3.0) < 1e-6)
        #expect(abs(x.variance(axes: [1], unbiased: true).array[0] - 4) < 1e-6)
        // Long rows exercise the SIMD path.
        let long = Tensor((0..<1001).map { Float($0 % 7) }, shape: [1, 1001])
        #expect(long.sum(axis: 1).item == Float((0..<1001).map { $0 % 7 }.reduce(0, +)))
    }
}

@Suite struct MatmulGradTests {
    @Test func matmulAndLinear() {
        gradCheck("matmul 2d", [rand([3, 5], seed: 41), rand([5, 2], seed: 42)]) { $0[0].matmul($0[1]) }
        gradCheck("matmul transposed view", [rand([5, 3], seed: 43), rand([2, 5], seed: 44)]) { $0[0].T.matmul($0[1].T) }
        gradCheck("batched matmul", [rand([2, 3, 4], seed: 45), rand([2, 4, 3], seed: 46)]) { $0[0].matmul($0[1]) }
        gradCheck("broadcast batch matmul", [rand([2, 3, 4], seed: 47), rand([4, 2], seed: 48)]) { $0[0].matmul($0[1]) }
        gradCheck("matvec", [rand([3, 4], seed: 49), rand([4], seed: 50)]) { $0[0].matmul($0[1]) }
        gradCheck("linear", [rand([4, 5], seed: 51), rand([3, 5], seed: 52), rand([3], seed: 53)]) { $0[0].linear(weight: $0[1], bias: $0[2]) }
        gradCheck("linear batch-1", [rand([1, 5], seed: 54), rand([3, 5], seed: 55)]) { $0[0].linear(weight: $0[1]) }
        gradCheck("linear 3d", [rand([2, 3, 5], seed: 56), rand([4, 5], seed: 57)]) { $0[0].linear(weight: $0[1]) }
    }

    @Test func matmulValues() {
        let a = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3]), b = Tensor([7, 8, 9, 10, 11, 12], shape: [3, 2])
        #expect(a.matmul(b).array == [58, 64, 139, 154])
        #expect(a.linear(weight: b.T.contiguous()).array == [58, 64, 139, 154])
        let w16 = b.T.contiguous().converted(to: .float16)
        #expect(a.slice(axis: 0, 0, 1).linear(weight: w16).array == [58, 64])
        let wbf = b.T.contiguous().converted(to: .bfloat16)
        #expect(a.linear(weight: wbf, bias: Tensor([1, -1])).array == [59, 63, 140, 153])
    }
}

@Suite struct IndexAndSoftmaxGradTests {
    @Test func gathersAndSoftmax() {
        let table = rand([5, 3], seed: 61)
        gradCheck("indexSelect", [table]) { $0[0].indexSelect([4, 0, 4, 2]) }
        gradCheck("gather", [rand([3, 4], seed: 62)]) { $0[0].gather(axis: 1, index: [0, 3, 1, 1, 2, 0], indexShape: [3, 2]) }
        gradCheck("scatterAdd", [rand([4, 2], seed: 63), rand([3, 2], seed: 64)]) { $0[0].scatterAdd([1, 3, 1], $0[1]) }
        gradCheck("softmax", [rand([3, 5], seed: 65)]) { $0[0].softmax() }
        gradCheck("softmax axis 0", [rand([3, 5], seed: 66)]) { $0[0].softmax(axis: 0) }
        gradCheck("logSoftmax", [rand([3, 5], seed: 67)]) { $0[0].logSoftmax() }
        gradCheck("logSoftmax axis 1 of 3d", [rand([2, 3, 4], seed: 68)]) { $0[0].logSoftmax(axis: 1) }
    }

    @Test func softmaxValues() {
        let s = Tensor([1, 2, 3, 1000, 1000, -Float.infinity], shape: [2, 3]).softmax()
        let v = s.array
        expectClose(Array(v[0..<3]), [0.09003057, 0.24472847, 0.66524096])
        expectClose(Array(v[3..<6]), [0.5, 0.5, 0])
        let ls = Tensor([1, 2, 3], shape: [1, 3]).logSoftmax().array
        expectClose(ls, [-2.40760596, -1.40760596, -0.40760596])
        #expect(Tensor([[1, 2, 3, 4]].flatMap { $0 }, shape: [2, 2]).gather(axis: 1, index: [1, 0], indexShape: [2, 1]).array == [2, 3])
    }
}

@Suite struct AutogradMechanicsTests {
    @Test func accumulationNoGradAndDetach() {
        let x = Tensor([1, 2, 3], requiresGrad: true)
        (x * x).sum().backward()
        #expect(x.grad!.array == [2, 4, 6])
        (x * 3).sum().backward()           // accumulates
        #expect(x.grad!.array == [5, 7, 9])
        x.zeroGrad()
        let y = withNoGrad { x * x }
        #expect(!y.requiresGrad)
        let d = (x * x).detach()
        #expect(!d.requiresGrad && d.array == [1, 4, 9])
        // A tensor used twice gets both contributions; grads of two leaves never alias.
        let a = Tensor([1, 2], requiresGrad: true), b = Tensor([3, 4], requiresGrad: true)
        (a + b).sum().backward()
        a.grad!.scaleInPlace(10)
        #expect(b.grad!.array == [1, 1])
        let z = a * 2
        (z + z * z).sum().backward(retainGraph: false)
        let expected: [Float] = [20, 28]   // 10 from before + d(2a + 4a²)/da = 2 + 8a
        #expect(a.grad!.array == expected)
    }

    @Test func rngIsReproducible() {
        var r1 = RNG(seed: 7), r2 = RNG(seed: 7)
        #expect((0..<5).map { _ in r1.next() } == (0..<5).map { _ in r2.next() })
        var r = RNG(seed: 3)
        let p = r.permutation(100)
        #expect(Set(p).count == 100 && p != Array(0..<100))
        var n = RNG(seed: 9)
        let xs = (0..<20000).map { _ in n.normal() }
        let mean = xs.reduce(0, +) / 20000
        let v = xs.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 20000
        #expect(abs(mean) < 0.03 && abs(v - 1) < 0.05)
        var c = RNG(seed: 5)
        var counts = [0, 0, 0]
        for _ in 0..<30000 { counts[c.categorical([1, 2, 3])] += 1 }
        #expect(abs(Float(counts[2]) / 30000 - 0.5) < 0.02 && counts.allSatisfy { $0 > 0 })
        var g = RNG(seed: 11)
        let gs = (0..<20000).map { _ in g.gamma(0.5) }
        #expect(abs(gs.reduce(0, +) / 20000 - 0.5) < 0.03)
    }

    @Test func memoryAccounting() {
        // Other tests allocate and free in parallel (the counters are process-wide), so each check
        // compares readings taken right around one allocation or one release of 64 MiB.
        let allocs = MemoryStats.allocationCount
        var during = 0
        do {
            let before = MemoryStats.live
            let t = Tensor(zeros: [4096, 4096])
            #expect(MemoryStats.live - before > 60_000_000)
            #expect(MemoryStats.peak >= MemoryStats.live)
            #expect(MemoryStats.allocationCount > allocs)
            withExtendedLifetime(t) { during = MemoryStats.live }
        }
        #expect(during - MemoryStats.live > 60_000_000)
    }

    @Test func storageCacheReusesFreedBlocksZeroed() {
        // A size no other test uses (its class, 40 MiB, neither): the freed block comes back.
        let count = 9_500_001
        var first: UnsafeMutableRawPointer?
        do {
            let s = Storage(count: count)
            s.floats[count - 1] = 3
            first = s.raw
        }
        #expect(MemoryStats.cached >= StorageCache.blockBytes(4 * count))
        let again = Storage(count: count)
        #expect(again.raw == first)
        #expect(again.floats[count - 1] == 0)   // zeroed on reuse, as a fresh storage
        // Size classes: at least the request, at most 1/16 (and a page) more; small sizes as asked.
        for bytes in [65_536, 65_537, 3 << 20, 3 * (1 << 20) + 1, 12_582_912, 100_000_000] {
            let b = StorageCache.blockBytes(bytes)
            #expect(b >= bytes && b <= bytes + max(4096, bytes / 8), "\(bytes) -> \(b)")
        }
        #expect(StorageCache.blockBytes(1000) == 1000)
        #expect(StorageCache.blockBytes(3 << 20) == 3 << 20)
    }
}
