/// Per-channel normalisation `(pixel / 255 - mean[c]) / std[c]`, from uint8 pixels to Float.
///
/// ```swift
/// let norm = CIFAR10.normalization                  // or Normalization.compute(train)
/// let x = norm.normalize(train)                     // [Float], NCHW
/// ```
public struct Normalization: Sendable, Equatable, Codable {
    public var mean: [Float]
    public var std: [Float]

    /// `mean` and `std` per channel (equal lengths; one value applies to every channel).
    public init(mean: [Float], std: [Float]) {
        self.mean = mean
        self.std = std
    }

    /// Mean and (population) standard deviation of each channel of `dataset`, in [0, 1] units.
    public static func compute(_ dataset: ImageDataset) -> Normalization {
        let c = dataset.channels
        let plane = dataset.height * dataset.width
        var sum = [Double](repeating: 0, count: c)
        var sq = [Double](repeating: 0, count: c)
        dataset.pixels.withUnsafeBufferPointer { px in
            for i in 0..<dataset.count {
                for ch in 0..<c {
                    var s: UInt64 = 0
                    var s2: UInt64 = 0
                    let base = (i * c + ch) * plane
                    for k in 0..<plane {
                        let v = UInt64(px[base + k])
                        s &+= v
                        s2 &+= v * v
                    }
                    sum[ch] += Double(s)
                    sq[ch] += Double(s2)
                }
            }
        }
        let n = Double(max(1, dataset.count * plane))
        var mean = [Float]()
        var std = [Float]()
        for ch in 0..<c {
            let m = sum[ch] / n / 255
            let v = max(0, sq[ch] / n / (255 * 255) - m * m)
            mean.append(Float(m))
            std.append(Float(v.squareRoot()))
        }
        return Normalization(mean: mean, std: std)
    }

    func check(channels: Int) throws {
        guard mean.count == std.count, mean.count == 1 || mean.count == channels else {
            throw DataError.invalidArgument(
                "normalisation has \(mean.count) means and \(std.count) stds for \(channels)-channel images")
        }
        guard std.allSatisfy({ $0 > 0 }) else { throw DataError.invalidArgument("normalisation std must be positive: \(std)") }
    }

    @inline(__always) func scaleShift(_ ch: Int) -> (Float, Float) {
        let m = mean.count == 1 ? mean[0] : mean[ch]
        let s = std.count == 1 ? std[0] : std[ch]
        return (1 / s, -m / s)
    }

    /// The whole data set as normalised floats (NCHW).
    public func normalize(_ dataset: ImageDataset) throws -> [Float] {
        try check(channels: dataset.channels)
        var out = [Float](repeating: 0, count: dataset.pixels.count)
        let plane = dataset.height * dataset.width
        out.withUnsafeMutableBufferPointer { dst in
            dataset.pixels.withUnsafeBufferPointer { src in
                for i in 0..<dataset.count {
                    for ch in 0..<dataset.channels {
                        let o = (i * dataset.channels + ch) * plane
                        convert(src.baseAddress! + o, dst.baseAddress! + o, plane, channel: ch)
                    }
                }
            }
        }
        return out
    }

    /// uint8 -> normalised float for one channel plane: `(p / 255 - mean) / std`.
    @inline(__always)
    func convert(_ src: UnsafePointer<UInt8>, _ dst: UnsafeMutablePointer<Float>, _ n: Int, channel: Int) {
        let (a, b) = scaleShift(channel)
        let scale = a / 255
        for k in 0..<n { dst[k] = Float(src[k]) * scale + b }
    }

    /// Normalises a [0, 1] float image in place (CHW, `channels` planes of `plane` values).
    @inline(__always)
    func apply(_ p: UnsafeMutablePointer<Float>, channels: Int, plane: Int) {
        for ch in 0..<channels {
            let (a, b) = scaleShift(ch)
            let q = p + ch * plane
            for k in 0..<plane { q[k] = q[k] * a + b }
        }
    }
}
