import Foundation
import Testing
@testable import FrugalData

/// `n` RGB 4x4 images; image i has every pixel of channel c equal to (i * 3 + c) % 256; label i % 5.
func syntheticImageDataset(_ n: Int, channels: Int = 3, size: Int = 4) throws -> ImageDataset {
    var px = [UInt8]()
    for i in 0..<n { for c in 0..<channels { px += [UInt8](repeating: UInt8((i * 3 + c) % 256), count: size * size) } }
    return try ImageDataset(
        pixels: px, labels: (0..<n).map { Int32($0 % 5) }, channels: channels, height: size, width: size, classes: 5)
}

@Suite struct DataLoaderTests {
    @Test func epochsCoverEverySampleOnce() throws {
        let ds = try syntheticImageDataset(23)
        let loader = try DataLoader(ds, batchSize: 5, seed: 3)
        #expect(loader.batchesPerEpoch == 5)
        var orders = [[Int]]()
        for _ in 0..<2 {
            var seen = [Int]()
            var sizes = [Int]()
            for batch in loader {
                seen += batch.indices
                sizes.append(batch.count)
                #expect(batch.images.count == batch.count * 48)
                #expect(batch.labels == batch.indices.map { Int32($0 % 5) })
                // Without augmentation or normalisation the floats are pixels / 255.
                for (k, i) in batch.indices.enumerated() {
                    #expect(batch.images[k * 48 + 16] == Float((i * 3 + 1) % 256) / 255)
                }
            }
            #expect(sizes == [5, 5, 5, 5, 3])
            #expect(seen.sorted() == Array(0..<23))
            orders.append(seen)
        }
        #expect(orders[0] != orders[1])
        // Same seed, same order; the order is available without iterating.
        let again = try DataLoader(ds, batchSize: 5, seed: 3)
        #expect(again.batches(epoch: 0).flatMap { $0 } == orders[0])
        #expect(again.batches(epoch: 1).flatMap { $0 } == orders[1])
        let fixed = try DataLoader(ds, batchSize: 5, shuffle: false, dropLast: true)
        #expect(fixed.batches(epoch: 4).flatMap { $0 } == Array(0..<20))
        #expect(loader.totalStats.epochs == 2 && loader.totalStats.samples == 46)
    }

    @Test func normalisationAndAugmentationAreDeterministic() throws {
        let ds = try syntheticImageDataset(40, size: 8)
        let norm = Normalization(mean: [0.1, 0.2, 0.3], std: [0.5, 0.25, 2])
        let plain = try DataLoader(ds, batchSize: 8, shuffle: false, normalization: norm)
        let first = plain.epoch(0).next()!
        #expect(abs(first.images[64 * 2 + 5] - (Float(2) / 255 - 0.3) / 2) < 1e-6)  // image 0, channel 2
        let aug = AugmentationPipeline([
            RandomCrop(size: 6, padding: 2), RandomHorizontalFlip(), ColorJitter(brightness: 0.3, contrast: 0.3, saturation: 0.3, hue: 0.05),
        ])
        func collect(threads: Int, batch: Int) throws -> [Int: [Float]] {
            let l = try DataLoader(ds, batchSize: batch, seed: 9, augmentation: aug, normalization: norm, threads: threads)
            #expect(l.outputShape == ImageShape(channels: 3, height: 6, width: 6))
            var bySample = [Int: [Float]]()
            for b in l.epoch(2) {
                for (k, i) in b.indices.enumerated() { bySample[i] = Array(b.images[(k * 108)..<((k + 1) * 108)]) }
            }
            return bySample
        }
        let a = try collect(threads: 1, batch: 8)
        let b = try collect(threads: 3, batch: 8)
        let c = try collect(threads: 2, batch: 5)  // different batch composition, same per-sample result
        #expect(a.count == 40)
        #expect(a == b)
        #expect(a == c)
        // Direct batch building agrees with the loader.
        let direct = DataLoader.makeBatch(
            ds, indices: [7], epoch: 2, seed: 9, input: ImageShape(channels: 3, height: 8, width: 8),
            output: ImageShape(channels: 3, height: 6, width: 6), augmentation: aug, normalization: norm)
        #expect(direct.images == a[7]!)
    }

    @Test func earlyStopShutsDownCleanly() throws {
        let ds = try syntheticImageDataset(200)
        let loader = try DataLoader(ds, batchSize: 2, prefetch: 2)
        for batch in loader {
            #expect(batch.count == 2)
            break
        }
        // The iterator was dropped: its thread has exited and the partial epoch was recorded.
        let s = try #require(loader.lastEpochStats)
        #expect(s.batches == 1 && s.samples == 2)
        let it = loader.epoch(5)
        _ = it.next()
        _ = it.next()
        it.cancel()
        #expect(it.next() == nil)
        #expect(it.stats.batches == 2)
        #expect(loader.totalStats.epochs == 2)
    }

    @Test func statsMeasureWaiting() throws {
        let ds = try syntheticImageDataset(12)
        // A slow producer: the consumer must wait for most of the epoch.
        let slow = try BatchLoader<[Int]>(count: 12, batchSize: 3, shuffle: false, prefetch: 2) { indices, _ in
            usleep(20_000)
            return indices
        }
        var got = [[Int]]()
        for b in slow { got.append(b) }
        #expect(got == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]])
        let s = try #require(slow.lastEpochStats)
        #expect(s.batches == 4 && s.samples == 12)
        #expect(s.waitSeconds <= s.totalSeconds)
        #expect(s.waitFraction > 0.5)
        #expect(s.prepareSeconds >= 0.07)
        #expect(ds.count == 12)
    }

    @Test func perSampleLoaderForText() throws {
        let texts = (0..<10).map { "sentence \($0)" }
        let loader = try BatchLoader<[String]>.perSample(count: texts.count, batchSize: 4, seed: 2) { i, rng in
            texts[i] + (rng.bernoulli(0.5) ? "!" : ".")
        }
        let a = Array(loader.epoch(1))
        let b = Array(loader.epoch(1))
        #expect(a.map(\.count) == [4, 4, 2])
        #expect(a == b)
        #expect(Set(a.flatMap { $0 }.map { $0.dropLast() }).count == 10)
    }

    @Test func invalidArguments() throws {
        let ds = try syntheticImageDataset(4)
        #expect(throws: DataError.self) { try DataLoader(ds, batchSize: 0) }
        #expect(throws: DataError.self) { try DataLoader(ds, batchSize: 2, prefetch: 0) }
        #expect(throws: DataError.self) { try DataLoader(ds, batchSize: 2, augmentation: RandomCrop(size: 20, padding: 4)) }
        #expect(throws: DataError.self) { try DataLoader(ds, batchSize: 2, normalization: MNIST.normalization.with3()) }
    }
}

extension Normalization {
    /// A deliberately wrong 2-channel normalisation for a 3-channel data set.
    func with3() -> Normalization { Normalization(mean: [0, 0], std: [1, 1]) }
}

@Suite struct LongTailTests {
    @Test func cifarCounts() throws {
        let if100 = try LongTail.classCounts(maxCount: 5000, classes: 10, imbalance: 100)
        #expect(if100 == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50])
        #expect(if100.reduce(0, +) == 12406)
        let if10 = try LongTail.classCounts(maxCount: 5000, classes: 10, imbalance: 10)
        #expect(if10 == [5000, 3871, 2997, 2320, 1796, 1391, 1077, 834, 645, 500])
        #expect(if10.reduce(0, +) == 20431)
        let if50 = try LongTail.classCounts(maxCount: 5000, classes: 10, imbalance: 50)
        #expect(if50 == [5000, 3237, 2096, 1357, 878, 568, 368, 238, 154, 100])
        #expect(if50.reduce(0, +) == 13996)
        #expect(try LongTail.classCounts(maxCount: 7, classes: 3, imbalance: 1) == [7, 7, 7])
        #expect(throws: DataError.self) { try LongTail.classCounts(maxCount: 10, classes: 10, imbalance: 0.5) }
    }

    @Test func subsetIsSeededAndClassGrouped() throws {
        // 5 classes x 40 images.
        var px = [UInt8]()
        var labels = [Int32]()
        for i in 0..<200 {
            px.append(UInt8(i % 256))
            labels.append(Int32(i % 5))
        }
        let ds = try ImageDataset(pixels: px, labels: labels, channels: 1, height: 1, width: 1, classes: 5)
        let lt = try longTailed(ds, imbalance: 10, seed: 1)
        let expected = try LongTail.classCounts(maxCount: 40, classes: 5, imbalance: 10)
        #expect(expected == [40, 22, 12, 7, 4])
        #expect(lt.classCounts() == expected)
        #expect(lt.labels == expected.enumerated().flatMap { c, n in [Int32](repeating: Int32(c), count: n) })
        // Pixels identify the source image: each kept image belongs to its class, none twice.
        let kept = lt.pixels.map(Int.init)
        #expect(Set(kept).count == kept.count)
        #expect(zip(kept, lt.labels).allSatisfy { $0 % 5 == Int($1) })
        #expect(try ds.longTailed(imbalance: 10, seed: 1) == lt)
        #expect(try ds.longTailed(imbalance: 10, seed: 2) != lt)
    }
}
