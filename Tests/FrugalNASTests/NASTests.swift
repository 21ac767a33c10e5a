import Foundation
import Testing
import FrugalCore
import FrugalNN
import FrugalData
import FrugalModels
@testable import FrugalNAS

/// Central finite difference of a scalar function of `t`'s values at index `i`.
func centralDifference(_ t: Tensor, _ i: Int, eps: Float, _ f: () -> Float) -> Float {
    let p = t.pointer
    let old = p[i]
    p[i] = old + eps; let a = f()
    p[i] = old - eps; let b = f()
    p[i] = old
    return (a - b) / (2 * eps)
}

func close(_ a: Float, _ b: Float, rel: Float, abs absTol: Float) -> Bool { Swift.abs(a - b) <= absTol + rel * Swift.max(Swift.abs(a), Swift.abs(b)) }

@Suite struct NASGradientTests {
    @Test func mixedOpGradientsMatchFiniteDifferences() throws {
        var rng = RNG(seed: 3)
        let ops: [DARTSOp] = [.none, .maxPool3x3, .avgPool3x3, .skipConnect, .sepConv3x3, .dilConv3x3]
        let op = MixedOp(channels: 2, stride: 1, ops: ops, rng: &rng)
        let x = Tensor.normal([2, 2, 5, 5], rng: &rng, requiresGrad: true)
        let alpha = Tensor.normal([ops.count], std: 0.5, rng: &rng, requiresGrad: true)
        let probe = Tensor.normal([2, 2, 5, 5], rng: &rng)
        func loss() -> Tensor { (op.forward(x, weights: alpha.softmax(axis: 0)) * probe).sum() }
        let l = loss()
        l.backward()
        let ga = try #require(alpha.grad).array, gx = try #require(x.grad).array
        for i in 0..<ops.count {
            let fd = withNoGrad { centralDifference(alpha, i, eps: 1e-2) { loss().item } }
            #expect(close(ga[i], fd, rel: 2e-2, abs: 2e-3), "dL/dalpha[\(i)]: autograd \(ga[i]) vs finite difference \(fd)")
        }
        for i in stride(from: 0, to: x.count, by: 7) {
            let fd = withNoGrad { centralDifference(x, i, eps: 1e-2) { loss().item } }
            #expect(close(gx[i], fd, rel: 5e-2, abs: 5e-3), "dL/dx[\(i)]: autograd \(gx[i]) vs finite difference \(fd)")
        }
    }

    @Test func weightedSumGradients() throws {
        let a = Tensor([1, 2, 3], requiresGrad: true), b = Tensor([-1, 0.5, 4], requiresGrad: true)
        let w = Tensor([0.25, 2], requiresGrad: true)
        let y = Tensor.weightedSum([a, b], weights: w)
        let expectedY: [Float] = [-1.75, 1.5, 8.75]
        #expect(y.array == expectedY)
        (y * Tensor([1, 10, 100])).sum().backward()
        #expect(a.grad!.array == [0.25, 2.5, 25])
        #expect(b.grad!.array == [2, 20, 200])
        let expectedW: [Float] = [321, 404]
        #expect(w.grad!.array == expectedW)
    }

    @Test func zeroOneLossValueAndGradient() throws {
        let a1 = Tensor([0, 1.5, -2, 0.3], shape: [2, 2], requiresGrad: true)
        let a2 = Tensor([3, -0.7], shape: [1, 2], requiresGrad: true)
        let all: [Float] = [0, 1.5, -2, 0.3, 3, -0.7]
        func sig(_ v: Float) -> Float { 1 / (1 + expf(-v)) }
        let expected = -all.map { (sig($0) - 0.5) * (sig($0) - 0.5) }.reduce(0, +) / 6
        let l = FairDARTSMethod.zeroOneLoss([a1, a2])
        #expect(Swift.abs(l.item - expected) < 1e-6)
        l.backward()
        let g = a1.grad!.array + a2.grad!.array
        for (i, v) in all.enumerated() {
            let s = sig(v)
            let closed = -2 * (s - 0.5) * s * (1 - s) / 6
            #expect(Swift.abs(g[i] - closed) < 1e-6, "closed form at \(i)")
            let t = i < 4 ? a1 : a2, j = i < 4 ? i : i - 4
            let fd = withNoGrad { centralDifference(t, j, eps: 1e-2) { FairDARTSMethod.zeroOneLoss([a1, a2]).item } }
            #expect(close(g[i], fd, rel: 1e-2, abs: 1e-5), "finite difference at \(i): \(g[i]) vs \(fd)")
        }
        // The regulariser is w · L01 with w = 10.
        let reg = FairDARTSMethod().alphaRegularizer([a1, a2])!
        #expect(Swift.abs(reg.item - 10 * expected) < 1e-5)
    }

    @Test func barlowTwinsLossValueAndGradient() throws {
        var rng = RNG(seed: 11)
        let n = 6, d = 4
        let z1 = Tensor.normal([n, d], rng: &rng, requiresGrad: true), z2 = Tensor.normal([n, d], rng: &rng, requiresGrad: true)
        let lambda: Float = 5e-3
        // Reference in Double: standardise columns (population variance, eps 1e-5), C = AᵀB/N.
        func reference(_ a: [Float], _ b: [Float]) -> Double {
            func std(_ z: [Float]) -> [Double] {
                var out = [Double](repeating: 0, count: n * d)
                for j in 0..<d {
                    let col = (0..<n).map { Double(z[$0 * d + j]) }
                    let m = col.reduce(0, +) / Double(n)
                    let v = col.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(n)
                    for i in 0..<n { out[i * d + j] = (col[i] - m) / (v + 1e-5).squareRoot() }
                }
                return out
            }
            let sa = std(a), sb = std(b)
            var l = 0.0
            for i in 0..<d { for j in 0..<d {
                let c = (0..<n).map { sa[$0 * d + i] * sb[$0 * d + j] }.reduce(0, +) / Double(n)
                l += i == j ? (1 - c) * (1 - c) : Double(lambda) * c * c
            } }
            return l
        }
        let l = BarlowTwins.loss(z1, z2, lambda: lambda)
        #expect(Swift.abs(Double(l.item) - reference(z1.array, z2.array)) < 1e-4)
        l.backward()
        let g1 = z1.grad!.array, g2 = z2.grad!.array
        for i in 0..<(n * d) {
            let fd1 = withNoGrad { centralDifference(z1, i, eps: 1e-2) { BarlowTwins.loss(z1, z2, lambda: lambda).item } }
            let fd2 = withNoGrad { centralDifference(z2, i, eps: 1e-2) { BarlowTwins.loss(z1, z2, lambda: lambda).item } }
            #expect(close(g1[i], fd1, rel: 3e-2, abs: 2e-3), "dL/dz1[\(i)]: \(g1[i]) vs \(fd1)")
            #expect(close(g2[i], fd2, rel: 3e-2, abs: 2e-3), "dL/dz2[\(i)]: \(g2[i]) vs \(fd2)")
        }
        // Identical perfectly decorrelated views give zero loss: C = I.
        let e = Tensor([1, 1, 1, -1, -1, 1, -1, -1], shape: [4, 2])
        #expect(BarlowTwins.loss(e, e, lambda: lambda).item < 1e-4)
    }
}

@Suite struct GenotypeTests {
    // Two steps: edges 0,1 → node 2; edges 2,3,4 → node 3 (from 0, 1, 2).
    let ops: [DARTSOp] = [.none, .maxPool3x3, .skipConnect, .sepConv3x3]

    @Test func dartsTopTwoMatchesHandComputation() {
        let w: [[Float]] = [
            [0.70, 0.10, 0.15, 0.05],   // 0→2: none strongest, best real op skip 0.15
            [0.10, 0.20, 0.30, 0.40],   // 1→2: sep 0.40
            [0.05, 0.50, 0.25, 0.20],   // 0→3: max 0.50
            [0.40, 0.10, 0.20, 0.30],   // 1→3: sep 0.30
            [0.10, 0.05, 0.05, 0.80],   // 2→3: sep 0.80
        ]
        let cell = DARTSMethod.topTwo(w, ops: ops, steps: 2)
        #expect(cell == [GenotypeEdge(node: 2, from: 0, op: .skipConnect), GenotypeEdge(node: 2, from: 1, op: .sepConv3x3),
                         GenotypeEdge(node: 3, from: 0, op: .maxPool3x3), GenotypeEdge(node: 3, from: 2, op: .sepConv3x3)])
        // Through the method: softmax of α, then top-2 (α chosen so that softmax keeps the order).
        let g = DARTSMethod().derive(normal: w, reduce: w.reversed(), ops: ops, steps: 2)
        #expect(g.normal == cell)
        #expect(g.normalConcat == [2, 3])
    }

    @Test func fairDARTSThresholdMatchesHandComputation() {
        let fair: [DARTSOp] = [.maxPool3x3, .skipConnect, .sepConv3x3]
        let w: [[Float]] = [
            [0.90, 0.86, 0.10],   // 0→2: max 0.90, skip 0.86 both kept
            [0.20, 0.30, 0.95],   // 1→2: sep 0.95 kept
            [0.50, 0.60, 0.40],   // 0→3: strength 0.60
            [0.84, 0.10, 0.20],   // 1→3: strength 0.84, below 0.85
            [0.30, 0.20, 0.10],   // 2→3: strength 0.30
        ]
        let cell = FairDARTSMethod.threshold(w, ops: fair, steps: 2, threshold: 0.85)
        // Node 3: top-2 edges are 1→3 (0.84) and 0→3 (0.60), no op ≥ 0.85 → fallback to max_pool on 1→3.
        #expect(cell == [GenotypeEdge(node: 2, from: 0, op: .maxPool3x3), GenotypeEdge(node: 2, from: 0, op: .skipConnect),
                         GenotypeEdge(node: 2, from: 1, op: .sepConv3x3), GenotypeEdge(node: 3, from: 1, op: .maxPool3x3)])
        let lower = FairDARTSMethod.threshold(w, ops: fair, steps: 2, threshold: 0.55)
        #expect(lower.filter { $0.node == 3 } == [GenotypeEdge(node: 3, from: 0, op: .skipConnect), GenotypeEdge(node: 3, from: 1, op: .maxPool3x3)])
    }

    @Test func genotypeFileRoundTrips() throws {
        let g = Genotype(steps: 2, normal: [GenotypeEdge(node: 2, from: 0, op: .sepConv5x5), GenotypeEdge(node: 3, from: 2, op: .dilConv3x3)],
                         reduce: [GenotypeEdge(node: 2, from: 1, op: .maxPool3x3), GenotypeEdge(node: 3, from: 0, op: .avgPool3x3)])
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("nas-genotype-\(getpid()).json")
        defer { try? FileManager.default.removeItem(at: url) }
        try g.write(to: url)
        #expect(try Genotype.read(from: url) == g)
        let svg = GenotypeSVG.draw(g)
        #expect(svg.contains("sep_conv_5x5") && svg.contains("reduction cell"))
        // Bad files say what is wrong and where.
        try Data(#"{"steps": 2, "normal": [{"node": 5, "from": 0, "op": "sep_conv_3x3"}], "normalConcat": [2], "reduce": [], "reduceConcat": [2]}"#.utf8).write(to: url)
        #expect { try Genotype.read(from: url) } throws: { "\($0)".contains(url.path) && "\($0)".contains("node 5") }
        try Data(#"{"steps": 2, "normal": [{"node": 2, "from": 0, "op": "conv_7x7"}]}"#.utf8).write(to: url)
        #expect { try Genotype.read(from: url) } throws: { "\($0)".contains("normal") }
    }
}

@Suite struct SearchTests {
    func tinyConfig(_ method: SearchMethodKind) -> SearchConfig {
        var c = SearchConfig()
        c.method = method
        c.model.channels = 2; c.model.cells = 3; c.model.inputSize = 8; c.model.steps = 2
        c.model.ops = [.none, .maxPool3x3, .skipConnect, .sepConv3x3]
        c.epochs = 2; c.sslEpochs = 1; c.batchSize = 4; c.maxStepsPerEpoch = 2; c.projectorDim = 8; c.seed = 5
        return c
    }

    @Test func supernetAndGenotypeNetworkShapes() throws {
        var cfg = DARTSConfig(); cfg.channels = 2; cfg.cells = 5; cfg.inputSize = 8
        #expect(cfg.edgesPerCell == 14)
        #expect(cfg.reductionCells == [1, 3])
        var rng = RNG(seed: 1)
        let net = DARTSSupernet(cfg, rng: &rng)
        let x = Tensor.normal([2, 3, 8, 8], rng: &rng)
        let w = Tensor.full([14, 8], 1.0 / 8)
        #expect(net.forward(x, normal: w, reduce: w).shape == [2, 10])
        let g = DARTSMethod().derive(normal: Array(repeating: (0..<8).map(Float.init), count: 14), reduce: Array(repeating: (0..<8).map { Float(8 - $0) }, count: 14), ops: DARTSOp.darts, steps: 4)
        #expect(g.normal.count == 8 && g.normal.allSatisfy { $0.op == .dilConv5x5 })
        let gn = try GenotypeNetwork(genotype: g, config: cfg, rng: &rng)
        #expect(gn(x).shape == [2, 10])
    }

    @Test(arguments: [SearchMethodKind.darts, .fairdarts, .ssf])
    func resumedSearchEndsWithTheSameAlpha(_ method: SearchMethodKind) throws {
        let data = try NASData.downsample(try NASData.synthetic(perClass: 6, size: 16, classes: 10, imbalance: 3, seed: 2), to: 8)
        var cfg = tinyConfig(method)
        if method == .ssf { cfg.model.classes = 10 }
        let full = try ArchitectureSearch(config: cfg, train: data)
        let gFull = try full.run()
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("nas-resume-\(method.rawValue)-\(getpid()).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        let first = try ArchitectureSearch(config: cfg, train: data)
        try first.run(checkpoint: url, stopAfter: 1)
        #expect(first.epochsDone + first.sslEpochsDone == 1)
        let second = try ArchitectureSearch(config: cfg, train: data)
        try second.resume(from: url)
        let gResumed = try second.run(checkpoint: url)
        #expect(second.alphaNormal.array == full.alphaNormal.array)
        #expect(second.alphaReduce.array == full.alphaReduce.array)
        #expect(gResumed == gFull)
        #expect(second.trajectory == full.trajectory)
        // α moved during the search.
        let fresh = try ArchitectureSearch(config: cfg, train: data)
        #expect(full.alphaNormal.array != fresh.alphaNormal.array)
        // A checkpoint of other settings is refused.
        var other = cfg; other.seed = 99
        #expect(throws: NASError.self) { try ArchitectureSearch(config: other, train: data).resume(from: url) }
    }

    @Test func sslSearchReadingRuns() throws {
        let data = try NASData.downsample(try NASData.synthetic(perClass: 6, size: 16, classes: 10, seed: 4), to: 8)
        var cfg = tinyConfig(.ssf); cfg.ssfMode = .sslSearch; cfg.epochs = 1
        let s = try ArchitectureSearch(config: cfg, train: data)
        let before = s.alphaNormal.array
        try s.run()
        #expect(s.alphaNormal.array != before)
        #expect(!s.config.model.ops.contains(.none))
        #expect(s.reports.last?.alphaAccuracy == nil)
    }

    @Test func stratifiedHalvesKeepEveryClassInBoth() throws {
        let data = try NASData.synthetic(perClass: 20, size: 8, classes: 10, imbalance: 10, seed: 1)
        let (a, b) = NASData.stratifiedHalves(data, seed: 3)
        #expect(Set(a).isDisjoint(with: b) && a.count + b.count == data.count)
        let ca = try data.subset(a).classCounts(), cb = try data.subset(b).classCounts()
        for c in 0..<10 { #expect(ca[c] >= 1 && cb[c] >= 1 && Swift.abs(ca[c] - cb[c]) <= 1) }
    }

    @Test func longTailGroupsAndReweighting() {
        let e = LongTailEvaluation(overall: 0.5, perClass: [1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0, 0, 0.3])
        #expect(e.many == 1 && e.medium == 0.5 && Swift.abs(e.few - 0.1) < 1e-12)
        let w = effectiveNumberWeights([100, 10, 1], beta: 0.9)
        #expect(Swift.abs(w.reduce(0, +) - 3) < 1e-5 && w[0] < w[1] && w[1] < w[2])
    }
}

@Suite struct RetrainTests {
    @Test func resumedRetrainingEndsWithTheSameWeights() throws {
        let train = try NASData.downsample(try NASData.synthetic(perClass: 8, size: 16, classes: 10, imbalance: 4, seed: 6), to: 8)
        let test = try NASData.downsample(try NASData.synthetic(perClass: 2, size: 16, classes: 10, seed: 7), to: 8)
        let g = Genotype(steps: 2, normal: [GenotypeEdge(node: 2, from: 0, op: .sepConv3x3), GenotypeEdge(node: 3, from: 2, op: .skipConnect)],
                         reduce: [GenotypeEdge(node: 2, from: 1, op: .maxPool3x3), GenotypeEdge(node: 3, from: 0, op: .dilConv3x3)])
        var cfg = RetrainConfig()
        cfg.model.channels = 2; cfg.model.cells = 3; cfg.model.inputSize = 8
        cfg.epochs = 2; cfg.batchSize = 8; cfg.drwEpoch = 1; cfg.seed = 1
        let full = try GenotypeTraining(genotype: g, config: cfg, train: train, test: test)
        let e = try full.run()
        #expect(e.perClass.count == 10)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("nas-retrain-\(getpid()).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try GenotypeTraining(genotype: g, config: cfg, train: train, test: test).run(checkpoint: url, stopAfter: 1)
        let second = try GenotypeTraining(genotype: g, config: cfg, train: train, test: test)
        try second.resume(from: url)
        #expect(second.epochsDone == 1)
        let e2 = try second.run(checkpoint: url)
        #expect(e2 == e)
        let a = full.network.stateDict(), b = second.network.stateDict()
        for (k, v) in a { #expect(b[k]?.array == v.array, "\(k)") }
    }
}
