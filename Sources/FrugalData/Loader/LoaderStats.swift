/// Where an epoch's time went, from the consumer's point of view.
///
/// `waitSeconds / totalSeconds` is the share of the epoch the training loop spent blocked waiting
/// for the next batch (0 when the background thread always keeps ahead).
public struct LoaderStats: Sendable, Codable, Equatable, CustomStringConvertible {
    /// Epochs finished or cancelled.
    public var epochs = 0
    /// Batches handed to the consumer.
    public var batches = 0
    /// Samples in those batches.
    public var samples = 0
    /// Seconds the consumer spent inside `next()` waiting for a batch.
    public var waitSeconds = 0.0
    /// Seconds from the start of iteration to its end (or cancellation).
    public var totalSeconds = 0.0
    /// Seconds the background thread spent preparing batches.
    public var prepareSeconds = 0.0

    public init() {}

    /// `waitSeconds / totalSeconds` (0 before any time has passed).
    public var waitFraction: Double { totalSeconds > 0 ? waitSeconds / totalSeconds : 0 }

    /// Adds another epoch's numbers to these.
    public mutating func add(_ other: LoaderStats) {
        epochs += other.epochs
        batches += other.batches
        samples += other.samples
        waitSeconds += other.waitSeconds
        totalSeconds += other.totalSeconds
        prepareSeconds += other.prepareSeconds
    }

    public var description: String {
        "\(batches) batches, \(samples) samples in \(formatFixed(totalSeconds, 3)) s; waited \(formatFixed(waitSeconds, 3)) s "
            + "(\(formatFixed(100 * waitFraction, 2))%), preparing took \(formatFixed(prepareSeconds, 3)) s"
    }
}
