import Testing
@testable import FrugalModels
import FrugalNN
import FrugalData

@Suite struct ModelTests {
    @Test func lenetShapesAndParameterNames() {
        var rng = RNG(seed: 0)
        let net = LeNet(rng: &rng)
        #expect(net(Tensor.zeros([3, 1, 28, 28])).shape == [3, 10])
        #expect(net.namedParameters().map(\.0) == ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"])
        let expectedCount: Int = 800 + 32 + 51200 + 64 + 524288 + 512 + 5120 + 10
        #expect(net.parameterCount == expectedCount)
        let cifar = LeNet(inChannels: 3, imageSize: 32, rng: &rng)
        #expect(cifar(Tensor.zeros([1, 3, 32, 32])).shape == [1, 10])
    }

    @Test func cifarCNNShapesAndParameterCount() {
        var rng = RNG(seed: 0)
        let net = CifarCNN(rng: &rng)
        #expect(net(Tensor.zeros([2, 3, 32, 32])).shape == [2, 10])
        let convs = (3 * 9 * 32 + 32) + (32 * 9 * 32 + 32) + (32 * 9 * 64 + 64) + (64 * 9 * 64 + 64) + (64 * 9 * 128 + 128)
        #expect(net.parameterCount == convs + (128 * 16 * 128 + 128) + (128 * 10 + 10))
        #expect(net.namedParameters().first?.0 == "conv1.weight")
        let small = CifarCNN(inChannels: 1, imageSize: 16, width: 8, rng: &rng)
        #expect(small(Tensor.zeros([1, 1, 16, 16])).shape == [1, 10])
    }

    @Test func batchNormRunningStatistics() {
        let bn = BatchNorm2d(2)
        let x = Tensor([1, 2, 3, 4, 10, 20, 30, 40], shape: [1, 2, 2, 2])
        _ = bn(x)
        // running = 0.9·init + 0.1·batch (unbiased variance, as PyTorch).
        expectNear(bn.runningMean.array, [0.25, 2.5])
        expectNear(bn.runningVar.array, [0.9 + 0.1 * 5.0 / 3.0, 0.9 + 0.1 * 500.0 / 3.0])
        bn.eval()
        let y = bn(x).array
        expectNear([y[0]], [(1 - 0.25) / (bn.runningVar.array[0] + 1e-5).squareRoot()])
        #expect(bn.namedParameters().map(\.0) == ["weight", "bias"])
        #expect(bn.stateDict().keys.sorted() == ["bias", "running_mean", "running_var", "weight"])
    }

    @Test func trainingLoopLearnsSeparableImages() throws {
        // Two classes: bright top half vs bright bottom half, with noise.
        var rng = RNG(seed: 5)
        var pixels: [UInt8] = [], labels: [Int32] = []
        for i in 0..<256 {
            let c = i % 2
            for y in 0..<8 { for _ in 0..<8 { pixels.append(UInt8((y < 4) == (c == 0) ? 200 + rng.int(50) : rng.int(60))) } }
            labels.append(Int32(c))
        }
        let ds = try ImageDataset(pixels: pixels, labels: labels, channels: 1, height: 8, width: 8, classes: 2)
        let model = MLP([64, 16, 2], rng: &rng)
        let flat = Sequential(Lambda { $0.flattened(from: 1) }, model)
        var cfg = ClassifierTrainingConfig()
        cfg.epochs = 3; cfg.batchSize = 32; cfg.learningRate = 0.1
        let reports = try trainClassifier(flat, train: ds, test: ds, normalization: nil, config: cfg)
        #expect(reports.count == 3)
        #expect(reports.last!.testAccuracy > 0.95)
        let ev = try evaluate(flat, on: ds, normalization: nil)
        #expect(ev.perClassAccuracy.count == 2 && abs(ev.accuracy - reports.last!.testAccuracy) < 1e-9)
    }
}

func expectNear(_ a: [Float], _ b: [Float], tol: Float = 1e-5, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(a.count == b.count, sourceLocation: sourceLocation)
    for (x, y) in zip(a, b) { #expect(abs(x - y) <= tol * max(1, abs(y)), "\(x) vs \(y)", sourceLocation: sourceLocation) }
}
