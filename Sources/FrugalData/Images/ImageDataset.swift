/// An in-memory image classification data set: uint8 pixels in NCHW order plus integer labels.
///
/// ```swift
/// let train = try CIFAR10.load(train: true)      // 50,000 x 3 x 32 x 32
/// train.classCounts()                             // [5000, 5000, ...]
/// let small = try train.subset(Array(0..<1000))
/// ```
public struct ImageDataset: Sendable, Equatable {
    /// Pixels, `count * channels * height * width` bytes, NCHW (channel planes of each image in turn).
    public var pixels: [UInt8]
    /// One label per image, in `0..<classes`.
    public var labels: [Int32]
    /// Number of images.
    public var count: Int
    public var channels: Int
    public var height: Int
    public var width: Int
    /// Number of classes (labels are `0..<classes`).
    public var classes: Int
    /// Human-readable class names (`classes` entries).
    public var classNames: [String]

    /// Creates a data set after checking that the sizes agree and every label is in range.
    public init(
        pixels: [UInt8], labels: [Int32], channels: Int, height: Int, width: Int,
        classes: Int, classNames: [String]? = nil
    ) throws {
        guard channels > 0, height > 0, width > 0 else {
            throw DataError.invalidArgument("image shape \(channels)x\(height)x\(width) must be positive")
        }
        guard classes > 0 else { throw DataError.invalidArgument("classes must be positive, got \(classes)") }
        let sample = channels * height * width
        guard pixels.count == labels.count * sample else {
            throw DataError.invalidArgument(
                "\(pixels.count) pixel bytes do not hold \(labels.count) images of \(channels)x\(height)x\(width)")
        }
        if let bad = labels.firstIndex(where: { $0 < 0 || Int($0) >= classes }) {
            throw DataError.invalidArgument("label \(labels[bad]) of image \(bad) is outside 0..<\(classes)")
        }
        let names = classNames ?? (0..<classes).map(String.init)
        guard names.count == classes else {
            throw DataError.invalidArgument("\(names.count) class names for \(classes) classes")
        }
        self.pixels = pixels
        self.labels = labels
        self.count = labels.count
        self.channels = channels
        self.height = height
        self.width = width
        self.classes = classes
        self.classNames = names
    }

    /// Bytes per image (`channels * height * width`).
    public var sampleSize: Int { channels * height * width }

    /// The images at `indices` (in that order; repeats allowed).
    public func subset(_ indices: [Int]) throws -> ImageDataset {
        let n = sampleSize
        if let bad = indices.first(where: { $0 < 0 || $0 >= count }) {
            throw DataError.invalidArgument("subset index \(bad) is outside 0..<\(count)")
        }
        var px = [UInt8](repeating: 0, count: indices.count * n)
        px.withUnsafeMutableBufferPointer { dst in
            pixels.withUnsafeBufferPointer { src in
                for (k, i) in indices.enumerated() {
                    (dst.baseAddress! + k * n).update(from: src.baseAddress! + i * n, count: n)
                }
            }
        }
        return try ImageDataset(
            pixels: px, labels: indices.map { labels[$0] }, channels: channels, height: height, width: width,
            classes: classes, classNames: classNames)
    }

    /// Number of images of each class (`classes` entries).
    public func classCounts() -> [Int] {
        var c = [Int](repeating: 0, count: classes)
        for l in labels { c[Int(l)] += 1 }
        return c
    }

    /// Indices of the images of each class, in data set order.
    public func indicesByClass() -> [[Int]] {
        var r = [[Int]](repeating: [], count: classes)
        for (i, l) in labels.enumerated() { r[Int(l)].append(i) }
        return r
    }

    /// The pixels of image `index` (CHW bytes).
    public func image(_ index: Int) -> ArraySlice<UInt8> {
        pixels[(index * sampleSize)..<((index + 1) * sampleSize)]
    }

    /// A printable per-class table: class, name, count, share.
    public func classCountTable() -> String {
        let counts = classCounts()
        let total = max(1, count)
        var lines = ["class  name                  count   share"]
        for (i, c) in counts.enumerated() {
            let name = classNames[i].count > 20 ? String(classNames[i].prefix(20)) : classNames[i]
            let share = Double(c) / Double(total) * 100
            lines.append(
                padLeft(String(i), 5) + "  " + name.padRight(20) + "  " + padLeft(String(c), 6) + "  " + padLeft(formatFixed(share, 1), 5) + "%")
        }
        lines.append("total                        " + padLeft(String(count), 6))
        return lines.joined(separator: "\n")
    }
}

func padLeft(_ s: String, _ width: Int) -> String {
    s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
}

extension String {
    func padRight(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}

/// `x` with `digits` decimals (no Foundation `String(format:)`).
func formatFixed(_ x: Double, _ digits: Int) -> String {
    if !x.isFinite { return String(x) }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let r = (abs(x) * scale).rounded()
    let whole = Int(r / scale)
    let frac = Int(r - Double(whole) * scale)
    var f = String(frac)
    while f.count < digits { f = "0" + f }
    return (x < 0 && r != 0 ? "-" : "") + String(whole) + (digits > 0 ? "." + f : "")
}
