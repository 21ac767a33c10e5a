import Foundation
import Testing
@testable import FrugalData

/// Big-endian IDX bytes for uint8 data.
func idxBytes(dims: [Int], payload: [UInt8], type: UInt8 = 8) -> [UInt8] {
    var b: [UInt8] = [0, 0, type, UInt8(dims.count)]
    for d in dims { b += [UInt8(d >> 24 & 255), UInt8(d >> 16 & 255), UInt8(d >> 8 & 255), UInt8(d & 255)] }
    return b + payload
}

@Suite struct IDXTests {
    @Test func loadsGzipMiniMNIST() throws {
        let m = try DataFixture.manifest()["mnist_mini"] as! [String: [String: Int]]
        let train = try MNIST.load(dir: DataFixture.path("mnist-mini"), train: true)
        #expect(train.count == 30)
        #expect(train.channels == 1 && train.height == 28 && train.width == 28)
        #expect(train.labels == (0..<30).map { Int32($0 % 10) })
        #expect(train.pixels.reduce(0) { $0 + Int($1) } == m["train"]!["pixel_sum"]!)
        // Pixel (y, x) of image i is (label * 20 + 3x + y + i) mod 256.
        let expected: Int = (7 * 20 + 33 + 5 + 7) % 256
        let offset: Int = 7 * 784 + 5 * 28 + 11
        #expect(Int(train.pixels[offset]) == expected)
        let test = try MNIST.load(dir: DataFixture.path("mnist-mini"), train: false)
        #expect(test.count == 10)
        #expect(test.classCounts() == [Int](repeating: 1, count: 10))
        #expect(test.classNames == MNIST.classNames)
    }

    @Test func plainIDXDetectedByMagic() throws {
        let tmp = DataTempDir()
        defer { tmp.cleanup() }
        for name in ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"] {
            try tmp.write(name, try Gzip.decompress(try DataFixture.bytes("mnist-mini/\(name).gz")))
        }
        let plain = try FashionMNIST.load(dir: tmp.path, train: false)
        let gz = try MNIST.load(dir: DataFixture.path("mnist-mini"), train: false)
        #expect(plain.pixels == gz.pixels && plain.labels == gz.labels)
        #expect(plain.classNames[9] == "Ankle boot")
    }

    @Test func headerValidation() throws {
        func fails(_ bytes: [UInt8], _ fragment: String) {
            do {
                _ = try IDX.parse(bytes, source: "x-idx3-ubyte")
                Issue.record("accepted \(fragment)")
            } catch {
                let msg = "\(error)"
                #expect(msg.contains(fragment), "\(msg)")
                #expect(msg.contains("x-idx3-ubyte"))
            }
        }
        let payload = [UInt8](repeating: 1, count: 4 * 2 * 3)
        #expect(try IDX.parse(idxBytes(dims: [4, 2, 3], payload: payload), source: "x").dims == [4, 2, 3])
        fails(idxBytes(dims: [5, 2, 3], payload: payload), "header says 5x2x3")       // lying dims
        fails(idxBytes(dims: [4, 2, 3], payload: payload + [0]), "holds 25 bytes")   // extra byte
        fails([1, 0, 8, 1, 0, 0, 0, 0], "bad IDX magic")
        fails(idxBytes(dims: [1], payload: [0], type: 0x07), "unknown IDX data type")
        fails([0, 0, 8, 3, 0, 0], "needs 16 bytes")
        fails([0, 0, 8], "needs 4 bytes")
        fails(idxBytes(dims: [65536, 65536, 65536, 65536], payload: []), "impossibly large")
        // int32 elements: 4 bytes each.
        #expect(try IDX.parse(idxBytes(dims: [2], payload: [0, 0, 0, 1, 0, 0, 0, 2], type: 0x0C), source: "x").dataType == .int32)
    }

    @Test func pairValidation() throws {
        let tmp = DataTempDir()
        defer { tmp.cleanup() }
        let images = idxBytes(dims: [3, 2, 2], payload: [UInt8](repeating: 9, count: 12))
        try tmp.write("train-images-idx3-ubyte", images)
        try tmp.write("train-labels-idx1-ubyte", idxBytes(dims: [2], payload: [1, 2]))
        #expect {
            try MNIST.load(dir: tmp.path, train: true)
        } throws: { e in "\(e)".contains("2 labels for 3 images") }
        try tmp.write("train-labels-idx1-ubyte", idxBytes(dims: [3], payload: [1, 2, 10]))
        #expect {
            try MNIST.load(dir: tmp.path, train: true)
        } throws: { e in "\(e)".contains("label 10 of image 2") }
        try tmp.write("train-labels-idx1-ubyte", idxBytes(dims: [3], payload: [1, 2, 3]))
        let ok = try MNIST.load(dir: tmp.path, train: true)
        #expect(ok.height == 2 && ok.width == 2 && ok.count == 3)
        // Missing file: names it and says how to get it.
        #expect {
            try MNIST.load(dir: tmp.path, train: false)
        } throws: { e in
            let m = "\(e)"
            return m.contains("t10k-images-idx3-ubyte") && m.contains("frugal data download") && m.contains("prepare")
        }
    }
}

@Suite struct CIFARTests {
    /// A batch file of `n` records; record r has label (base + r) % 10 and pixel p = (r * 31 + p) % 251.
    func batch(_ n: Int, base: Int) -> [UInt8] {
        var b = [UInt8]()
        for r in 0..<n {
            b.append(UInt8((base + r) % 10))
            for p in 0..<3072 { b.append(UInt8((r * 31 + p + base) % 251)) }
        }
        return b
    }

    @Test func loadsBatches() throws {
        let tmp = DataTempDir()
        defer { tmp.cleanup() }
        for i in 1...5 { try tmp.write("data_batch_\(i).bin", batch(2, base: i * 2)) }
        try tmp.write("test_batch.bin", batch(3, base: 0))
        let train = try CIFAR10.load(dir: tmp.path, train: true)
        #expect(train.count == 10)
        #expect(train.labels == (2..<12).map { Int32($0 % 10) })
        #expect(train.channels == 3 && train.height == 32 && train.width == 32)
        // Image 3 is record 1 of data_batch_2 (base 4): green plane pixel (y=1, x=2) = p 1024 + 34.
        let expected: Int = (31 + 1024 + 34 + 4) % 251
        #expect(Int(train.pixels[3 * 3072 + 1024 + 34]) == expected)
        let test = try CIFAR10.load(dir: tmp.path, train: false)
        #expect(test.count == 3 && test.classNames == CIFAR10.classNames)
        try tmp.write("batches.meta.txt", Array("a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n\n".utf8))
        #expect(try CIFAR10.load(dir: tmp.path, train: false).classNames[9] == "j")
    }

    @Test func partialRecordAndMissingFiles() throws {
        let tmp = DataTempDir()
        defer { tmp.cleanup() }
        try tmp.write("test_batch.bin", Array(batch(2, base: 0).dropLast(5)))
        #expect {
            try CIFAR10.load(dir: tmp.path, train: false)
        } throws: { e in
            let m = "\(e)"
            return m.contains("partial record") && m.contains("test_batch.bin") && m.contains("3068 bytes")
        }
        #expect {
            try CIFAR10.load(dir: tmp.path, train: true)
        } throws: { e in
            guard case DataError.fileMissing(let path, let hint) = e else { return false }
            return path.hasSuffix("data_batch_1.bin") && hint.contains("frugal data download cifar10")
        }
        var bad = batch(1, base: 0)
        bad[0] = 12
        try tmp.write("test_batch.bin", bad)
        #expect(throws: DataError.self) { try CIFAR10.load(dir: tmp.path, train: false) }
    }
}

@Suite struct DatasetTypeTests {
    func tiny() throws -> ImageDataset {
        // 4 images of 2x1x2: pixels image i channel c = [10i + 2c, 10i + 2c + 1].
        var px = [UInt8]()
        for i in 0..<4 { for c in 0..<2 { px += [UInt8(10 * i + 2 * c), UInt8(10 * i + 2 * c + 1)] } }
        return try ImageDataset(pixels: px, labels: [0, 2, 2, 1], channels: 2, height: 1, width: 2, classes: 3)
    }

    @Test func subsetAndCounts() throws {
        let d = try tiny()
        #expect(d.classCounts() == [1, 1, 2])
        #expect(d.classNames == ["0", "1", "2"])
        let s = try d.subset([3, 1, 3])
        #expect(s.count == 3 && s.labels == [1, 2, 1])
        #expect(Array(s.pixels[0..<4]) == [30, 31, 32, 33])
        #expect(Array(s.pixels[4..<8]) == [10, 11, 12, 13])
        #expect(throws: DataError.self) { try d.subset([4]) }
        #expect(throws: DataError.self) { try d.subset([-1]) }
        #expect(d.indicesByClass() == [[0], [3], [1, 2]])
        #expect(d.classCountTable().contains("total"))
    }

    @Test func initValidation() {
        #expect(throws: DataError.self) {
            try ImageDataset(pixels: [1, 2, 3], labels: [0], channels: 1, height: 2, width: 2, classes: 2)
        }
        #expect(throws: DataError.self) {
            try ImageDataset(pixels: [1, 2, 3, 4], labels: [2], channels: 1, height: 2, width: 2, classes: 2)
        }
        #expect(throws: DataError.self) {
            try ImageDataset(pixels: [1, 2, 3, 4], labels: [1], channels: 1, height: 2, width: 2, classes: 2, classNames: ["a"])
        }
    }

    @Test func normalization() throws {
        let d = try tiny()
        let n = Normalization.compute(d)
        // Channel 0 values: 0,1,10,11,20,21,30,31 -> mean 15.5, population variance 125.25 (/255 units).
        #expect(abs(n.mean[0] - Float(15.5 / 255)) < 1e-6)
        #expect(abs(n.std[0] - Float(125.25.squareRoot() / 255)) < 1e-6)
        #expect(abs(n.mean[1] - Float(17.5 / 255)) < 1e-6)
        let x = try n.normalize(d)
        #expect(x.count == 16)
        #expect(abs(x[9] - ((21.0 / 255 - n.mean[0]) / n.std[0])) < 1e-5)  // image 2, channel 0, pixel 1
        let given = Normalization(mean: [0.5], std: [0.25])
        let y = try given.normalize(d)
        #expect(abs(y[15] - (Float(33.0 / 255) - 0.5) / 0.25) < 1e-5)
        #expect(throws: DataError.self) { try Normalization(mean: [0, 0, 0], std: [1, 1, 1]).normalize(d) }
        #expect(CIFAR10.normalization.mean == [0.4914, 0.4822, 0.4465])
        #expect(MNIST.normalization.std == [0.3081])
    }
}
