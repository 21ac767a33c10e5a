/// The shape of one image: channels x height x width.
public struct ImageShape: Sendable, Hashable, Codable, CustomStringConvertible {
    public var channels: Int
    public var height: Int
    public var width: Int
    public init(channels: Int, height: Int, width: Int) {
        self.channels = channels
        self.height = height
        self.width = width
    }
    /// Values per image.
    public var count: Int { channels * height * width }
    public var description: String { "\(channels)x\(height)x\(width)" }
}

/// One float image in CHW order, plus a scratch buffer that shape-changing augmentations write
/// into (and swap with), so that a worker reuses two allocations for every sample it prepares.
public struct ImageBuffer: Sendable {
    /// Pixels, CHW, `shape.count` values (in [0, 1] before normalisation).
    public var data: [Float]
    public private(set) var shape: ImageShape
    @usableFromInline var scratch: [Float] = []

    /// Wraps `data` (must hold `shape.count` values).
    public init(data: [Float], shape: ImageShape) {
        precondition(data.count == shape.count, "ImageBuffer: \(data.count) values for shape \(shape)")
        self.data = data
        self.shape = shape
    }

    /// An empty buffer to be filled by ``load(_:shape:)``.
    public init() {
        data = []
        shape = ImageShape(channels: 0, height: 0, width: 0)
    }

    public var channels: Int { shape.channels }
    public var height: Int { shape.height }
    public var width: Int { shape.width }
    public var plane: Int { shape.height * shape.width }

    /// Loads uint8 pixels as floats in [0, 1] (`p / 255`).
    public mutating func load(_ pixels: UnsafePointer<UInt8>, shape: ImageShape) {
        let n = shape.count
        if data.count != n { data = [Float](repeating: 0, count: n) }
        self.shape = shape
        data.withUnsafeMutableBufferPointer { d in
            for k in 0..<n { d[k] = Float(pixels[k]) / 255 }
        }
    }

    /// Replaces the image with one of shape `newShape`: `body(source, destination)` fills the destination.
    public mutating func reshape(
        to newShape: ImageShape, _ body: (UnsafeBufferPointer<Float>, UnsafeMutableBufferPointer<Float>) -> Void
    ) {
        if scratch.count != newShape.count { scratch = [Float](repeating: 0, count: newShape.count) }
        data.withUnsafeBufferPointer { src in
            scratch.withUnsafeMutableBufferPointer { dst in body(src, dst) }
        }
        swap(&data, &scratch)
        shape = newShape
    }

    /// Runs `body` on the pixels in place.
    @inlinable public mutating func withPixels<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        try data.withUnsafeMutableBufferPointer { try body($0) }
    }
}

/// A per-sample image transform on float CHW images (values in [0, 1] unless a ``Normalize`` ran).
///
/// Randomness comes only from `rng`; the loader seeds it from (seed, epoch, sample index), so a
/// sample gets the same augmentation in a given epoch whatever thread prepares it.
///
/// ```swift
/// let train = AugmentationPipeline([RandomCrop(size: 32, padding: 4), RandomHorizontalFlip()])
/// var img = ImageBuffer(data: x, shape: ImageShape(channels: 3, height: 32, width: 32))
/// var rng = DataRNG(seed: 1, epoch: 0, index: 17)
/// train.apply(&img, rng: &rng)
/// ```
public protocol Augmentation: Sendable {
    /// The shape this augmentation produces from `input`; throws when it cannot handle `input`
    /// (the loader calls this once, before any sample, to validate the pipeline).
    func outputShape(for input: ImageShape) throws -> ImageShape
    /// Transforms `image`.
    func apply(_ image: inout ImageBuffer, rng: inout DataRNG)
}

extension Augmentation {
    public func outputShape(for input: ImageShape) throws -> ImageShape { input }
}

/// Augmentations applied in order.
public struct AugmentationPipeline: Augmentation {
    public var steps: [any Augmentation]

    public init(_ steps: [any Augmentation]) { self.steps = steps }

    public func outputShape(for input: ImageShape) throws -> ImageShape {
        var s = input
        for step in steps { s = try step.outputShape(for: s) }
        return s
    }

    public func apply(_ image: inout ImageBuffer, rng: inout DataRNG) {
        for step in steps { step.apply(&image, rng: &rng) }
    }
}

/// Applies `augmentation` with probability `p` (torchvision `RandomApply`).
public struct RandomApply: Augmentation {
    public var augmentation: any Augmentation
    public var p: Double

    public init(_ augmentation: any Augmentation, p: Double) {
        self.augmentation = augmentation
        self.p = p
    }

    public func outputShape(for input: ImageShape) throws -> ImageShape {
        guard (0...1).contains(p) else { throw DataError.invalidArgument("RandomApply probability \(p) is outside [0, 1]") }
        let out = try augmentation.outputShape(for: input)
        guard out == input else {
            throw DataError.invalidArgument("RandomApply needs a shape-preserving augmentation (\(input) -> \(out))")
        }
        return out
    }

    public func apply(_ image: inout ImageBuffer, rng: inout DataRNG) {
        if rng.bernoulli(p) { augmentation.apply(&image, rng: &rng) }
    }
}

/// Per-channel normalisation as a pipeline step (place ``Cutout`` after it to cut to the mean).
public struct Normalize: Augmentation {
    public var normalization: Normalization
    public init(_ normalization: Normalization) { self.normalization = normalization }

    public func outputShape(for input: ImageShape) throws -> ImageShape {
        try normalization.check(channels: input.channels)
        return input
    }

    public func apply(_ image: inout ImageBuffer, rng: inout DataRNG) {
        let c = image.channels, plane = image.plane
        image.withPixels { normalization.apply($0.baseAddress!, channels: c, plane: plane) }
    }
}
