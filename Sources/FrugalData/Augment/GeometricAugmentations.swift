/// Random crop after zero padding (torchvision `RandomCrop(size, padding)`): pads every side by
/// `padding` with `fill`, then cuts a `height x width` window at a uniformly random offset.
public struct RandomCrop: Augmentation {
    public var height: Int?
    public var width: Int?
    public var padding: Int
    public var fill: Float

    /// A crop of `size x size` (nil keeps the input size) after padding by `padding`.
    public init(size: Int? = nil, padding: Int = 4, fill: Float = 0) {
        height = size
        width = size
        self.padding = padding
        self.fill = fill
    }

    public init(height: Int, width: Int, padding: Int = 4, fill: Float = 0) {
        self.height = height
        self.width = width
        self.padding = padding
        self.fill = fill
    }

    public func outputShape(for input: ImageShape) throws -> ImageShape {
        let th = height ?? input.height, tw = width ?? input.width
        guard padding >= 0, th > 0, tw > 0, th <= input.height + 2 * padding, tw <= input.width + 2 * padding else {
            throw DataError.invalidArgument(
                "RandomCrop \(th)x\(tw) with padding \(padding) does not fit a \(input.height)x\(input.width) image")
        }
        return ImageShape(channels: input.channels, height: th, width: tw)
    }

    public func apply(_ image: inout ImageBuffer, rng: inout DataRNG) {
        let s = image.shape
        let th = height ?? s.height, tw = width ?? s.width
        let i = rng.int(below: s.height + 2 * padding - th + 1) - padding  // top row in source coordinates
        let j = rng.int(below: s.width + 2 * padding - tw + 1) - padding   // left column
        let fill = self.fill
        image.reshape(to: ImageShape(channels: s.channels, height: th, width: tw)) { src, dst in
            let sp = src.baseAddress!, dp = dst.baseAddress!
            // Columns of the window that fall inside the source image.
            let x0 = max(0, -j), x1 = min(tw, s.width - j)
            for c in 0..<s.channels {
                for y in 0..<th {
                    let row = dp + (c * th + y) * tw
                    let sy = i + y
                    if sy < 0 || sy >= s.height || x0 >= x1 {
                        row.update(repeating: fill, count: tw)
                        continue
                    }
                    if x0 > 0 { row.update(repeating: fill, count: x0) }
                    (row + x0).update(from: sp + (c * s.height + sy) * s.width + j + x0, count: x1 - x0)
                    if x1 < tw { (row + x1).update(repeating: fill, count: tw - x1) }
                }
            }
        }
    }
}

/// Mirrors the image left-right with probability `p` (torchvision `RandomHorizontalFlip`).
public struct RandomHorizontalFlip: Augmentation {
    public var p: Double
    public init(p: Double = 0.5) { self.p = p }

    public func outputShape(for input: ImageShape) throws -> ImageShape {
        guard (0...1).contains(p) else { throw DataError.invalidArgument("RandomHorizontalFlip probability \(p) is outside [0, 1]") }
        return input
    }

    public func apply(_ image: inout ImageBuffer, rng: inout DataRNG) {
        guard rng.bernoulli(p) else { return }
        let w = image.width, rows = image.channels * image.height
        image.withPixels { px in
            let base = px.baseAddress!
            for r in 0..<rows {
                var a = base + r * w
                var b = a + w - 1
                while a < b {
                    let t = a.pointee
                    a.pointee = b.pointee
                    b.pointee = t
                    a += 1
                    b -= 1
                }
            }
        }
    }
}

/// Random resized crop (torchvision `RandomResizedCrop`): picks a window covering a random share
/// `scale` of the area with aspect ratio drawn log-uniformly from `ratio` (10 tries, then a
/// central crop), and resizes it to `height x width` with bilinear interpolation
/// (`align_corners=False`, no antialiasing).
public struct RandomResizedCrop: Augmentation {
    public var height: Int
    public var width: Int
    public var scale: ClosedRange<Double>
    public var ratio: ClosedRange<Double>

    public init(size: Int, scale: ClosedRange<Double> = 0.08...1.0, ratio: ClosedRange<Double> = (3.0 / 4.0)...(4.0 / 3.0)) {
        self.init(height: size, width: size, scale: scale, ratio: ratio)
    }

    public init(height: Int, width: Int, scale: ClosedRange<Double> = 0.08...1.0,
                ratio: ClosedRange<Double> = (3.0 / 4.0)...(4.0 / 3.0)) {
        self.height = height
        self.width = width
        self.scale = scale
        self.ratio = ratio
    }

    public func outputShape(for input: ImageShape) throws -> ImageShape {
        guard height > 0, width > 0 else { throw DataError.invalidArgument("RandomResizedCrop size must be positive") }
        guard scale.lowerBound > 0, scale.upperBound <= 1, ratio.lowerBound > 0 else {
            throw DataError.invalidArgument("RandomResizedCrop scale \(scale) must lie in (0, 1] and ratio \(ratio) be positive")
        }
        return ImageShape(channels: input.channels, height: height, width: width)
    }

    /// The crop window (top, left, height, width) for an `h x w` image, torchvision's `get_params`.
    public func window(height h: Int, width w: Int, rng: inout DataRNG) -> (top: Int, left: Int, height: Int, width: Int) {
        let area = Double(h * w)
        let logLo = DataMath.log(ratio.lowerBound), logHi = DataMath.log(ratio.upperBound)
        for _ in 0..<10 {
            let target = area * rng.uniform(scale.lowerBound, scale.upperBound)
            let aspect = DataMath.exp(rng.uniform(logLo, logHi))
            let cw = Int((target * aspect).squareRoot().rounded(.toNearestOrEven))
            let ch = Int((target / aspect).squareRoot().rounded(.toNearestOrEven))
            if cw > 0, cw <= w, ch > 0, ch <= h {
                let top = rng.int(below: h - ch + 1)
                let left = rng.int(below: w - cw + 1)
                return (top, left, ch, cw)
            }
        }
        let inRatio = Double(w) / Double(h)
        var cw = w, ch = h
        if inRatio < ratio.lowerBound {
            ch = Int((Double(cw) / ratio.lowerBound).rounded(.toNearestOrEven))
        } else if inRatio > ratio.upperBound {
            cw = Int((Double(ch) * ratio.upperBound).rounded(.toNearestOrEven))
        }
        return ((h - ch) / 2, (w - cw) / 2, ch, cw)
    }

    public func apply(_ image: inout ImageBuffer, rng: inout DataRNG) {
        let s = image.shape
        let win = window(height: s.height, width: s.width, rng: &rng)
        let out = ImageShape(channels: s.channels, height: height, width: width)
        image.reshape(to: out) { src, dst in
            resizeBilinear(
                src.baseAddress!, srcWidth: s.width, top: win.top, left: win.left, cropHeight: win.height,
                cropWidth: win.width, channels: s.channels, srcHeight: s.height, dst.baseAddress!, height, width)
        }
    }
}

/// Bilinear resize of the window (top, left, cropHeight, cropWidth) of a CHW image to
/// `outH x outW` (PyTorch `interpolate(mode="bilinear", align_corners=False, antialias=False)`).
func resizeBilinear(
    _ src: UnsafePointer<Float>, srcWidth: Int, top: Int, left: Int, cropHeight: Int, cropWidth: Int,
    channels: Int, srcHeight: Int, _ dst: UnsafeMutablePointer<Float>, _ outH: Int, _ outW: Int
) {
    func coords(_ inSize: Int, _ outSize: Int, _ i: Int) -> (Int, Int, Float) {
        let scale = Double(inSize) / Double(outSize)
        var x = (Double(i) + 0.5) * scale - 0.5
        if x < 0 { x = 0 }
        let x0 = min(Int(x), inSize - 1)
        let x1 = x0 < inSize - 1 ? x0 + 1 : x0
        return (x0, x1, Float(x - Double(x0)))
    }
    withUnsafeTemporaryAllocation(of: Int.self, capacity: 2 * outW) { xi in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: outW) { xl in
            for x in 0..<outW {
                let (a, b, l) = coords(cropWidth, outW, x)
                xi[2 * x] = left + a
                xi[2 * x + 1] = left + b
                xl[x] = l
            }
            for y in 0..<outH {
                let (y0, y1, ly) = coords(cropHeight, outH, y)
                for c in 0..<channels {
                    let plane = src + c * srcHeight * srcWidth
                    let r0 = plane + (top + y0) * srcWidth
                    let r1 = plane + (top + y1) * srcWidth
                    let out = dst + (c * outH + y) * outW
                    for x in 0..<outW {
                        let a = xi[2 * x], b = xi[2 * x + 1], lx = xl[x]
                        let t = r0[a] + (r0[b] - r0[a]) * lx
                        let u = r1[a] + (r1[b] - r1[a]) * lx
                        out[x] = t + (u - t) * ly
                    }
                }
            }
        }
    }
}

/// Cutout (DeVries and Taylor, 2017): `holes` squares of side `length` centred at uniformly random
/// pixels (clipped at the border) are set to `fill` in every channel.
public struct Cutout: Augmentation {
    public var holes: Int
    public var length: Int
    public var fill: Float

    public init(holes: Int = 1, length: Int = 16, fill: Float = 0) {
        self.holes = holes
        self.length = length
        self.fill = fill
    }

    public func outputShape(for input: ImageShape) throws -> ImageShape {
        guard holes >= 0, length >= 0 else { throw DataError.invalidArgument("Cutout holes and length must not be negative") }
        return input
    }

    public func apply(_ image: inout ImageBuffer, rng: inout DataRNG) {
        let h = image.height, w = image.width, c = image.channels
        for _ in 0..<holes {
            let y = rng.int(below: h), x = rng.int(below: w)
            let y1 = min(max(y - length / 2, 0), h), y2 = min(max(y + length / 2, 0), h)
            let x1 = min(max(x - length / 2, 0), w), x2 = min(max(x + length / 2, 0), w)
            guard y2 > y1, x2 > x1 else { continue }
            image.withPixels { px in
                for ch in 0..<c {
                    for yy in y1..<y2 {
                        (px.baseAddress! + (ch * h + yy) * w + x1).update(repeating: fill, count: x2 - x1)
                    }
                }
            }
        }
    }
}
