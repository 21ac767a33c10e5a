import FrugalCore
import FrugalData

/// Data helpers of the search: the stratified bilevel split, downsampling, generated images.
public enum NASData {
    /// Splits `dataset` into two halves class by class (seeded shuffle within each class, the
    /// first ⌈n_c/2⌉ to the weight half), so that tail classes appear in both halves.
    public static func stratifiedHalves(_ dataset: ImageDataset, seed: UInt64) -> (weights: [Int], alphas: [Int]) {
        var rng = DataRNG(seed: DataRNG.derive(seed, 0x5_71A7))
        var a: [Int] = [], b: [Int] = []
        for var idx in dataset.indicesByClass() {
            rng.shuffle(&idx)
            let h = (idx.count + 1) / 2
            a += idx.prefix(h); b += idx.suffix(idx.count - h)
        }
        return (a, b)
    }

    /// The data set at `size`×`size` by area averaging (the size must divide the image size).
    public static func downsample(_ dataset: ImageDataset, to size: Int) throws -> ImageDataset {
        if dataset.height == size && dataset.width == size { return dataset }
        guard size > 0, dataset.height % size == 0, dataset.width % size == 0, dataset.height / size == dataset.width / size else {
            throw DataError.invalidArgument("cannot downsample \(dataset.height)x\(dataset.width) images to \(size)x\(size): the factor must be a whole number")
        }
        let f = dataset.height / size, c = dataset.channels, h = dataset.height, w = dataset.width
        var px = [UInt8](repeating: 0, count: dataset.count * c * size * size)
        dataset.pixels.withUnsafeBufferPointer { src in
            for i in 0..<dataset.count * c {
                let s = src.baseAddress! + i * h * w
                for y in 0..<size {
                    for x in 0..<size {
                        var acc = 0
                        for dy in 0..<f { for dx in 0..<f { acc += Int(s[(y * f + dy) * w + x * f + dx]) } }
                        px[i * size * size + y * size + x] = UInt8((acc + f * f / 2) / (f * f))
                    }
                }
            }
        }
        return try ImageDataset(pixels: px, labels: dataset.labels, channels: c, height: size, width: size,
                                classes: dataset.classes, classNames: dataset.classNames)
    }

    /// Generated RGB images for smoke tests and the quickstart: each class is a coloured blob of its
    /// own hue at its own position with random jitter and noise. Class `i` gets
    /// ⌊perClass · (1/imbalance)^(i/(C−1))⌋ images (long-tailed when imbalance > 1).
    public static func synthetic(perClass: Int, size: Int = 16, classes: Int = 10, imbalance: Double = 1, seed: UInt64) throws -> ImageDataset {
        let counts = try LongTail.classCounts(maxCount: perClass, classes: classes, imbalance: imbalance)
        var rng = DataRNG(seed: seed)
        var px: [UInt8] = [], labels: [Int32] = []
        for (c, n) in counts.enumerated() {
            let hue = Float(c) / Float(classes)
            let (r, g, b) = ColorOps.hsvToRGB(hue, 0.8, 0.9)
            let cx = Float(size) * (0.3 + 0.4 * Float(c % 3) / 2), cy = Float(size) * (0.3 + 0.4 * Float((c / 3) % 3) / 2)
            for _ in 0..<max(n, 1) {
                let jx = Float(rng.uniform(-2, 2)), jy = Float(rng.uniform(-2, 2)), rad = Float(rng.uniform(0.18, 0.3)) * Float(size)
                var img = [UInt8](repeating: 0, count: 3 * size * size)
                for y in 0..<size {
                    for x in 0..<size {
                        let dx = Float(x) - cx - jx, dy = Float(y) - cy - jy
                        let inside: Float = dx * dx + dy * dy < rad * rad ? 1 : 0
                        for (ch, v) in [r, g, b].enumerated() {
                            let val = 40 + inside * v * 200 + Float(rng.uniform(0, 40))
                            img[ch * size * size + y * size + x] = UInt8(min(255, max(0, val)))
                        }
                    }
                }
                px += img; labels.append(Int32(c))
            }
        }
        return try ImageDataset(pixels: px, labels: labels, channels: 3, height: size, width: size, classes: classes)
    }
}
