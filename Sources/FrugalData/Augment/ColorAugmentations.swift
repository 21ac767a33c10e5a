/// Colour jitter with torchvision semantics (`ColorJitter`): brightness, contrast and saturation
/// factors are drawn uniformly from `[max(0, 1 - x), 1 + x]`, the hue shift from `[-hue, hue]`
/// (`hue <= 0.5`), and the four adjustments run in a random order. A zero strength skips that
/// adjustment. Images are floats in [0, 1]; results are clamped to [0, 1].
///
/// - brightness: `clamp(f * img)`
/// - contrast: `clamp(f * img + (1 - f) * mean(gray(img)))` (gray = 0.2989 R + 0.587 G + 0.114 B)
/// - saturation: `clamp(f * img + (1 - f) * gray(img))` per pixel (RGB only)
/// - hue: RGB -> HSV, `h = (h + shift) mod 1`, HSV -> RGB (RGB only)
public struct ColorJitter: Augmentation {
    public var brightness: Double
    public var contrast: Double
    public var saturation: Double
    public var hue: Double

    public init(brightness: Double = 0, contrast: Double = 0, saturation: Double = 0, hue: Double = 0) {
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.hue = hue
    }

    public func outputShape(for input: ImageShape) throws -> ImageShape {
        guard brightness >= 0, contrast >= 0, saturation >= 0 else {
            throw DataError.invalidArgument("ColorJitter strengths must not be negative")
        }
        guard (0...0.5).contains(hue) else { throw DataError.invalidArgument("ColorJitter hue \(hue) must lie in [0, 0.5]") }
        guard input.channels == 1 || input.channels == 3 else {
            throw DataError.invalidArgument("ColorJitter needs 1 or 3 channels, got \(input.channels)")
        }
        return input
    }

    public func apply(_ image: inout ImageBuffer, rng: inout DataRNG) {
        let order = rng.permutation(4)
        // Factors are drawn in a fixed order (as torchvision does), whatever the application order.
        let b = brightness > 0 ? rng.uniform(max(0, 1 - brightness), 1 + brightness) : nil
        let c = contrast > 0 ? rng.uniform(max(0, 1 - contrast), 1 + contrast) : nil
        let s = saturation > 0 ? rng.uniform(max(0, 1 - saturation), 1 + saturation) : nil
        let h = hue > 0 ? rng.uniform(-hue, hue) : nil
        for op in order {
            switch op {
            case 0: if let b { ColorOps.brightness(&image, Float(b)) }
            case 1: if let c { ColorOps.contrast(&image, Float(c)) }
            case 2: if let s { ColorOps.saturation(&image, Float(s)) }
            default: if let h { ColorOps.hue(&image, Float(h)) }
            }
        }
    }
}

/// Converts RGB to gray with probability `p`, keeping the channel count (gray replicated),
/// as torchvision `RandomGrayscale`. Single-channel images are left as they are.
public struct RandomGrayscale: Augmentation {
    public var p: Double
    public init(p: Double = 0.1) { self.p = p }

    public func outputShape(for input: ImageShape) throws -> ImageShape {
        guard (0...1).contains(p) else { throw DataError.invalidArgument("RandomGrayscale probability \(p) is outside [0, 1]") }
        guard input.channels == 1 || input.channels == 3 else {
            throw DataError.invalidArgument("RandomGrayscale needs 1 or 3 channels, got \(input.channels)")
        }
        return input
    }

    public func apply(_ image: inout ImageBuffer, rng: inout DataRNG) {
        guard rng.bernoulli(p), image.channels == 3 else { return }
        let n = image.plane
        image.withPixels { px in
            let r = px.baseAddress!, g = r + n, b = r + 2 * n
            for k in 0..<n {
                let y = ColorOps.gray(r[k], g[k], b[k])
                r[k] = y
                g[k] = y
                b[k] = y
            }
        }
    }
}

/// The individual colour adjustments (torchvision `functional` semantics on [0, 1] floats).
public enum ColorOps {
    @inline(__always) static func clamp01(_ x: Float) -> Float { min(max(x, 0), 1) }

    /// ITU-R 601-2 luma as torchvision computes it.
    @inline(__always) public static func gray(_ r: Float, _ g: Float, _ b: Float) -> Float {
        0.2989 * r + 0.587 * g + 0.114 * b
    }

    /// `clamp(f * img)`.
    public static func brightness(_ image: inout ImageBuffer, _ f: Float) {
        image.withPixels { px in for k in px.indices { px[k] = clamp01(px[k] * f) } }
    }

    /// Blend with the mean gray level of the whole image (the mean of the single channel for gray images).
    public static func contrast(_ image: inout ImageBuffer, _ f: Float) {
        let n = image.plane
        let c = image.channels
        image.withPixels { px in
            var sum: Double = 0
            if c == 3 {
                let r = px.baseAddress!, g = r + n, b = r + 2 * n
                for k in 0..<n { sum += Double(gray(r[k], g[k], b[k])) }
            } else {
                for k in px.indices { sum += Double(px[k]) }
            }
            let mean = Float(sum / Double(c == 3 ? n : px.count))
            let off = (1 - f) * mean
            for k in px.indices { px[k] = clamp01(f * px[k] + off) }
        }
    }

    /// Blend each pixel with its own gray level (RGB only; gray images are unchanged).
    public static func saturation(_ image: inout ImageBuffer, _ f: Float) {
        guard image.channels == 3 else { return }
        let n = image.plane
        image.withPixels { px in
            let r = px.baseAddress!, g = r + n, b = r + 2 * n
            for k in 0..<n {
                let y = (1 - f) * gray(r[k], g[k], b[k])
                r[k] = clamp01(f * r[k] + y)
                g[k] = clamp01(f * g[k] + y)
                b[k] = clamp01(f * b[k] + y)
            }
        }
    }

    /// Rotates the hue by `shift` turns (in [-0.5, 0.5]); RGB only, gray images are unchanged.
    public static func hue(_ image: inout ImageBuffer, _ shift: Float) {
        guard image.channels == 3 else { return }
        let n = image.plane
        image.withPixels { px in
            let r = px.baseAddress!, g = r + n, b = r + 2 * n
            for k in 0..<n {
                var (h, s, v) = rgbToHSV(r[k], g[k], b[k])
                h = h + shift
                h = h - h.rounded(.down)  // Python-style modulo 1
                if h >= 1 { h = 0 }
                (r[k], g[k], b[k]) = hsvToRGB(h, s, v)
            }
        }
    }

    /// torchvision `_rgb2hsv` for one pixel.
    @inline(__always) public static func rgbToHSV(_ r: Float, _ g: Float, _ b: Float) -> (Float, Float, Float) {
        let maxc = max(r, g, b), minc = min(r, g, b)
        let eq = maxc == minc
        let cr = maxc - minc
        let s = cr / (eq ? 1 : maxc)
        let d: Float = eq ? 1 : cr
        let rc = (maxc - r) / d, gc = (maxc - g) / d, bc = (maxc - b) / d
        var h: Float
        if maxc == r {
            h = bc - gc
        } else if maxc == g {
            h = 2 + rc - bc
        } else {
            h = 4 + gc - rc
        }
        h = h / 6 + 1
        h = h - h.rounded(.towardZero)  // fmod(h, 1) for positive h
        return (h, s, maxc)
    }

    /// torchvision `_hsv2rgb` for one pixel.
    @inline(__always) public static func hsvToRGB(_ h: Float, _ s: Float, _ v: Float) -> (Float, Float, Float) {
        let h6 = h * 6
        let i = h6.rounded(.down)
        let f = h6 - i
        let p = clamp01(v * (1 - s))
        let q = clamp01(v * (1 - s * f))
        let t = clamp01(v * (1 - s * (1 - f)))
        var sector = Int(i) % 6
        if sector < 0 { sector += 6 }
        switch sector {
        case 0: return (v, t, p)
        case 1: return (q, v, p)
        case 2: return (p, v, t)
        case 3: return (p, q, v)
        case 4: return (t, p, v)
        default: return (v, p, q)
        }
    }
}
