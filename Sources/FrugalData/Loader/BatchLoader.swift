import Foundation

/// A bounded queue between the preparing thread and the consumer. All mutable state is guarded
/// by `condition`, which is why the class may be shared across threads (`@unchecked Sendable`).
final class PrefetchQueue<Batch: Sendable>: @unchecked Sendable {
    private let condition = NSCondition()
    private var items: [Batch] = []
    private let capacity: Int
    private var finished = false
    private var cancelled = false
    private var prepare = 0.0
    /// Signalled once when the producer thread has returned.
    let exited = DispatchSemaphore(value: 0)

    init(capacity: Int) { self.capacity = capacity }

    /// Producer: blocks while the queue is full. Returns false when the consumer cancelled.
    func waitForSpace() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while items.count >= capacity && !cancelled { condition.wait() }
        return !cancelled
    }

    /// Producer: appends a batch. Returns false when the consumer cancelled.
    func push(_ batch: Batch, prepareSeconds: Double) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        prepare += prepareSeconds
        if cancelled { return false }
        items.append(batch)
        condition.broadcast()
        return true
    }

    /// Producer: no more batches.
    func finish() {
        condition.lock()
        finished = true
        condition.broadcast()
        condition.unlock()
    }

    /// Consumer: the next batch, blocking until one is ready; nil at the end.
    func pop() -> Batch? {
        condition.lock()
        defer { condition.unlock() }
        while items.isEmpty && !finished && !cancelled { condition.wait() }
        if items.isEmpty { return nil }
        let b = items.removeFirst()
        condition.broadcast()
        return b
    }

    /// Consumer: stop the producer and drop queued batches.
    func cancel() {
        condition.lock()
        cancelled = true
        items.removeAll()
        condition.broadcast()
        condition.unlock()
    }

    var prepareSeconds: Double {
        condition.lock()
        defer { condition.unlock() }
        return prepare
    }
}

/// Loader statistics shared between a loader and its iterators (guarded by a lock).
final class StatsBox: @unchecked Sendable {
    private let lock = NSLock()
    private var total = LoaderStats()
    private var last: LoaderStats?

    func record(_ s: LoaderStats) {
        lock.lock()
        total.add(s)
        last = s
        lock.unlock()
    }
    var totalStats: LoaderStats { lock.lock(); defer { lock.unlock() }; return total }
    var lastStats: LoaderStats? { lock.lock(); defer { lock.unlock() }; return last }
}

/// One epoch of batches, prepared ahead on a background thread.
///
/// Iterating drives the epoch; stopping early (dropping the iterator, or ``cancel()``) stops the
/// background thread and waits for it, so no work outlives the iterator. ``stats`` says how long
/// the consumer waited.
public final class BatchIterator<Batch: Sendable>: IteratorProtocol, Sequence {
    /// The epoch this iterator produces.
    public let epoch: Int
    /// Batches in this epoch.
    public let batchCount: Int
    private let queue: PrefetchQueue<Batch>
    private let statsBox: StatsBox
    private let start: Double
    private var current = LoaderStats()
    private var done = false
    private let batchSizes: [Int]

    init(
        epoch: Int, batches: [[Int]], capacity: Int, statsBox: StatsBox, make: @escaping @Sendable ([Int], Int) -> Batch
    ) {
        self.epoch = epoch
        self.batchCount = batches.count
        self.statsBox = statsBox
        self.batchSizes = batches.map(\.count)
        let queue = PrefetchQueue<Batch>(capacity: capacity)
        self.queue = queue
        start = loaderClock()
        let thread = Thread {
            defer {
                queue.finish()
                queue.exited.signal()
            }
            for b in batches {
                guard queue.waitForSpace() else { return }
                let t0 = loaderClock()
                let batch = make(b, epoch)
                guard queue.push(batch, prepareSeconds: loaderClock() - t0) else { return }
            }
        }
        thread.name = "frugal-data-loader"
        thread.stackSize = 4 << 20
        thread.start()
    }

    /// The next batch, or nil at the end of the epoch. Time spent blocked here counts as waiting.
    public func next() -> Batch? {
        if done { return nil }
        let t0 = loaderClock()
        let batch = queue.pop()
        let t1 = loaderClock()
        current.waitSeconds += t1 - t0
        current.totalSeconds = t1 - start
        guard let batch else {
            finish()
            return nil
        }
        current.samples += batchSizes[current.batches]
        current.batches += 1
        return batch
    }

    /// Statistics of this epoch so far (final once `next()` returned nil or after `cancel()`).
    public var stats: LoaderStats {
        var s = current
        s.prepareSeconds = queue.prepareSeconds
        if !done { s.totalSeconds = loaderClock() - start }
        return s
    }

    /// Stops the background thread early and waits until it has exited. Idempotent.
    public func cancel() {
        if done { return }
        queue.cancel()
        finish()
    }

    private func finish() {
        if done { return }
        done = true
        queue.exited.wait()
        current.totalSeconds = loaderClock() - start
        current.prepareSeconds = queue.prepareSeconds
        current.epochs = 1
        statsBox.record(current)
    }

    deinit { cancel() }
}

/// A generic batch loader: splits `0..<count` into batches (shuffled per epoch with a seed),
/// builds each batch with a user closure on a background thread, and keeps up to `prefetch`
/// batches ready. Use it for text or any data that is not an ``ImageDataset``.
///
/// ```swift
/// let loader = try BatchLoader<[String]>(count: texts.count, batchSize: 32, seed: 1) { indices, epoch in
///     indices.map { texts[$0] }
/// }
/// for batch in loader { train(batch) }      // one epoch per `for` loop
/// print(loader.lastEpochStats!)             // waiting share
/// ```
public final class BatchLoader<Batch: Sendable>: Sequence {
    public let count: Int
    public let batchSize: Int
    public let shuffle: Bool
    public let dropLast: Bool
    public let seed: UInt64
    public let prefetch: Int
    /// The epoch that the next `makeIterator()` (a `for` loop) produces; set it to resume.
    public var nextEpoch = 0
    private let make: @Sendable ([Int], Int) -> Batch
    private let statsBox = StatsBox()

    /// - Parameters:
    ///   - count: number of samples.
    ///   - batchSize: samples per batch (the last batch is smaller unless `dropLast`).
    ///   - shuffle: a new seeded order every epoch; otherwise `0..<count` in order.
    ///   - prefetch: batches prepared ahead (2-4 is plenty).
    ///   - makeBatch: builds a batch from sample indices and the epoch (called on the loader thread).
    public init(
        count: Int, batchSize: Int, shuffle: Bool = true, dropLast: Bool = false, seed: UInt64 = 0,
        prefetch: Int = 4, makeBatch: @escaping @Sendable (_ indices: [Int], _ epoch: Int) -> Batch
    ) throws {
        guard count >= 0 else { throw DataError.invalidArgument("sample count \(count) is negative") }
        guard batchSize > 0 else { throw DataError.invalidArgument("batch size must be positive, got \(batchSize)") }
        guard (1...64).contains(prefetch) else { throw DataError.invalidArgument("prefetch must be in 1...64, got \(prefetch)") }
        self.count = count
        self.batchSize = batchSize
        self.shuffle = shuffle
        self.dropLast = dropLast
        self.seed = seed
        self.prefetch = prefetch
        self.make = makeBatch
    }

    /// Batches per epoch.
    public var batchesPerEpoch: Int { dropLast ? count / batchSize : (count + batchSize - 1) / batchSize }

    /// The sample order of `epoch` (a seeded permutation when shuffling).
    public func order(epoch: Int) -> [Int] {
        guard shuffle else { return Array(0..<count) }
        var rng = DataRNG(seed: DataRNG.derive(seed, UInt64(bitPattern: Int64(epoch)), 0x5348_5546))
        return rng.permutation(count)
    }

    /// The batches (sample indices) of `epoch`.
    public func batches(epoch: Int) -> [[Int]] {
        let o = order(epoch: epoch)
        return (0..<batchesPerEpoch).map { b in Array(o[(b * batchSize)..<Swift.min(o.count, (b + 1) * batchSize)]) }
    }

    /// An iterator over `epoch`; its background thread starts now.
    public func epoch(_ epoch: Int) -> BatchIterator<Batch> {
        BatchIterator(
            epoch: epoch, batches: batches(epoch: epoch), capacity: prefetch, statsBox: statsBox, make: make)
    }

    /// The next epoch (`nextEpoch`, then incremented): `for batch in loader` runs one epoch.
    public func makeIterator() -> BatchIterator<Batch> {
        let e = nextEpoch
        nextEpoch += 1
        return epoch(e)
    }

    /// Statistics of the most recently finished (or cancelled) epoch.
    public var lastEpochStats: LoaderStats? { statsBox.lastStats }
    /// Statistics summed over all finished epochs.
    public var totalStats: LoaderStats { statsBox.totalStats }
}

extension BatchLoader {
    /// A loader whose batches are arrays of per-sample values: `sample(index, rng)` builds one
    /// sample with a generator seeded from (seed, epoch, index).
    public static func perSample<T: Sendable>(
        count: Int, batchSize: Int, shuffle: Bool = true, dropLast: Bool = false, seed: UInt64 = 0, prefetch: Int = 4,
        sample: @escaping @Sendable (_ index: Int, _ rng: inout DataRNG) -> T
    ) throws -> BatchLoader<[T]> where Batch == [T] {
        try BatchLoader<[T]>(
            count: count, batchSize: batchSize, shuffle: shuffle, dropLast: dropLast, seed: seed, prefetch: prefetch
        ) { indices, epoch in
            indices.map { i in
                var rng = DataRNG(seed: seed, epoch: epoch, index: i)
                return sample(i, &rng)
            }
        }
    }
}
