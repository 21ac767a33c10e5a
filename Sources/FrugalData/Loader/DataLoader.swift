import Foundation

/// A batch of images: `images` holds `count * shape.count` floats (B x C x H x W, NCHW).
public struct ImageBatch: Sendable {
    public var images: [Float]
    public var labels: [Int32]
    /// The data set index of each sample.
    public var indices: [Int]
    /// Shape of one image (after augmentation).
    public var shape: ImageShape
    public var count: Int { labels.count }
}

/// Mini-batches of an ``ImageDataset`` with seeded shuffling, optional augmentation and
/// normalisation, prepared on a background thread while the consumer trains.
///
/// Each sample is converted to floats in [0, 1], passed through `augmentation` with a generator
/// seeded from (seed, epoch, sample index), then normalised with `normalization` (if given).
///
/// ```swift
/// let train = try CIFAR10.load(train: true)
/// let loader = try DataLoader(train, batchSize: 128, seed: 7,
///     augmentation: AugmentationPipeline([RandomCrop(size: 32, padding: 4), RandomHorizontalFlip()]),
///     normalization: CIFAR10.normalization)
/// for epoch in 0..<10 {
///     for batch in loader { step(batch.images, batch.labels) }
///     print(loader.lastEpochStats!)          // share of time spent waiting for batches
/// }
/// ```
public final class DataLoader: Sequence {
    public let dataset: ImageDataset
    /// Shape of each image in a batch (the augmentation may change it).
    public let outputShape: ImageShape
    let inner: BatchLoader<ImageBatch>

    /// - Parameters:
    ///   - batchSize: images per batch; the last batch is smaller unless `dropLast`.
    ///   - shuffle: a new seeded order every epoch.
    ///   - augmentation: per-sample transforms on [0, 1] floats (validated against the data set's shape here).
    ///   - normalization: per-channel mean/std applied after augmentation.
    ///   - prefetch: batches prepared ahead (bounded queue).
    ///   - threads: threads that prepare the samples of one batch (1 is enough for crop + flip).
    public init(
        _ dataset: ImageDataset, batchSize: Int, shuffle: Bool = true, dropLast: Bool = false, seed: UInt64 = 0,
        augmentation: (any Augmentation)? = nil, normalization: Normalization? = nil, prefetch: Int = 4, threads: Int = 1
    ) throws {
        let input = ImageShape(channels: dataset.channels, height: dataset.height, width: dataset.width)
        let out = try augmentation?.outputShape(for: input) ?? input
        if let normalization { try normalization.check(channels: out.channels) }
        guard threads >= 1 else { throw DataError.invalidArgument("threads must be at least 1, got \(threads)") }
        self.dataset = dataset
        self.outputShape = out
        inner = try BatchLoader<ImageBatch>(
            count: dataset.count, batchSize: batchSize, shuffle: shuffle, dropLast: dropLast, seed: seed,
            prefetch: prefetch
        ) { indices, epoch in
            DataLoader.makeBatch(
                dataset, indices: indices, epoch: epoch, seed: seed, input: input, output: out,
                augmentation: augmentation, normalization: normalization, threads: threads)
        }
    }

    public var batchSize: Int { inner.batchSize }
    public var batchesPerEpoch: Int { inner.batchesPerEpoch }
    /// The epoch the next `for` loop produces.
    public var nextEpoch: Int {
        get { inner.nextEpoch }
        set { inner.nextEpoch = newValue }
    }
    /// The batches (data set indices) of `epoch`.
    public func batches(epoch: Int) -> [[Int]] { inner.batches(epoch: epoch) }
    /// An iterator over `epoch` (starts preparing immediately).
    public func epoch(_ epoch: Int) -> BatchIterator<ImageBatch> { inner.epoch(epoch) }
    public func makeIterator() -> BatchIterator<ImageBatch> { inner.makeIterator() }
    /// Statistics of the most recently finished (or cancelled) epoch.
    public var lastEpochStats: LoaderStats? { inner.lastEpochStats }
    /// Statistics summed over all finished epochs.
    public var totalStats: LoaderStats { inner.totalStats }

    /// Builds one batch (also usable directly, without the background thread).
    public static func makeBatch(
        _ dataset: ImageDataset, indices: [Int], epoch: Int, seed: UInt64, input: ImageShape, output: ImageShape,
        augmentation: (any Augmentation)?, normalization: Normalization?, threads: Int = 1
    ) -> ImageBatch {
        let n = indices.count
        let outCount = output.count
        let inCount = input.count
        var images = [Float](repeating: 0, count: n * outCount)
        images.withUnsafeMutableBufferPointer { dst in
            dataset.pixels.withUnsafeBufferPointer { src in
                // Raw pointers are passed as integers: every task writes a disjoint range of `dst`
                // and only reads `src`, both alive until concurrentPerform returns.
                let dstAddress = Int(bitPattern: dst.baseAddress)
                let srcAddress = Int(bitPattern: src.baseAddress)
                let work: @Sendable (Range<Int>) -> Void = { range in
                    let dp = UnsafeMutablePointer<Float>(bitPattern: dstAddress)!
                    let sp = UnsafePointer<UInt8>(bitPattern: srcAddress)!
                    var buffer = ImageBuffer()
                    for k in range {
                        let i = indices[k]
                        let out = dp + k * outCount
                        let pixels = sp + i * inCount
                        guard let augmentation else {
                            if let normalization {
                                for c in 0..<input.channels {
                                    let plane = input.height * input.width
                                    normalization.convert(pixels + c * plane, out + c * plane, plane, channel: c)
                                }
                            } else {
                                for j in 0..<inCount { out[j] = Float(pixels[j]) / 255 }
                            }
                            continue
                        }
                        buffer.load(pixels, shape: input)
                        var rng = DataRNG(seed: seed, epoch: epoch, index: i)
                        augmentation.apply(&buffer, rng: &rng)
                        precondition(buffer.shape == output, "augmentation produced \(buffer.shape), declared \(output)")
                        buffer.data.withUnsafeBufferPointer { out.update(from: $0.baseAddress!, count: outCount) }
                        normalization?.apply(out, channels: output.channels, plane: output.height * output.width)
                    }
                }
                let tasks = Swift.min(threads, n)
                if tasks <= 1 {
                    work(0..<n)
                } else {
                    DispatchQueue.concurrentPerform(iterations: tasks) { t in
                        work((t * n / tasks)..<((t + 1) * n / tasks))
                    }
                }
            }
        }
        return ImageBatch(images: images, labels: indices.map { dataset.labels[$0] }, indices: indices, shape: output)
    }
}
