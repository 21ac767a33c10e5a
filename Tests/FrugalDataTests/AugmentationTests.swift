import Testing
@testable import FrugalData

func rampImage(_ shape: ImageShape) -> ImageBuffer {
    ImageBuffer(data: (0..<shape.count).map { Float($0) }, shape: shape)
}

@Suite struct AugmentationTests {
    @Test func randomCropMatchesReplayedOffsets() throws {
        let shape = ImageShape(channels: 2, height: 4, width: 5)
        let crop = RandomCrop(height: 3, width: 4, padding: 2, fill: -1)
        #expect(try crop.outputShape(for: shape) == ImageShape(channels: 2, height: 3, width: 4))
        for seed in 0..<40 {
            var img = rampImage(shape)
            var rng = DataRNG(seed: UInt64(seed))
            crop.apply(&img, rng: &rng)
            var replay = DataRNG(seed: UInt64(seed))
            let top = replay.int(below: 4 + 4 - 3 + 1) - 2
            let left = replay.int(below: 5 + 4 - 4 + 1) - 2
            for c in 0..<2 {
                for y in 0..<3 {
                    for x in 0..<4 {
                        let sy = top + y, sx = left + x
                        let expected: Float = (sy < 0 || sy >= 4 || sx < 0 || sx >= 5) ? -1 : Float(c * 20 + sy * 5 + sx)
                        #expect(img.data[(c * 3 + y) * 4 + x] == expected)
                    }
                }
            }
        }
        // No padding, same size: identity.
        var img = rampImage(shape)
        var rng = DataRNG(seed: 3)
        RandomCrop(padding: 0).apply(&img, rng: &rng)
        #expect(img.data == rampImage(shape).data)
        #expect(throws: DataError.self) { try RandomCrop(size: 9, padding: 2).outputShape(for: shape) }
    }

    @Test func flip() {
        let shape = ImageShape(channels: 1, height: 2, width: 3)
        var img = rampImage(shape)
        var rng = DataRNG(seed: 1)
        RandomHorizontalFlip(p: 1).apply(&img, rng: &rng)
        #expect(img.data == [2, 1, 0, 5, 4, 3])
        RandomHorizontalFlip(p: 0).apply(&img, rng: &rng)
        #expect(img.data == [2, 1, 0, 5, 4, 3])
        // p = 0.5 flips about half of the samples.
        var flips = 0
        for i in 0..<1000 {
            var im = rampImage(shape)
            var r = DataRNG(seed: 9, epoch: 0, index: i)
            RandomHorizontalFlip().apply(&im, rng: &r)
            if im.data[0] == 2 { flips += 1 }
        }
        #expect(flips > 440 && flips < 560)
    }

    @Test func colorAdjustments() {
        let rgb = ImageShape(channels: 3, height: 1, width: 2)
        // pixels: (0.2, 0.4, 0.6) and (1.0, 0.5, 0.0)
        let base: [Float] = [0.2, 1.0, 0.4, 0.5, 0.6, 0.0]
        var img = ImageBuffer(data: base, shape: rgb)
        ColorOps.brightness(&img, 1.5)
        #expect(zip(img.data, [0.3, 1.0, 0.6, 0.75, 0.9, 0.0] as [Float]).allSatisfy { abs($0 - $1) < 1e-6 })

        img = ImageBuffer(data: base, shape: rgb)
        ColorOps.contrast(&img, 0.5)
        let g0 = 0.2989 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6
        let g1 = 0.2989 * 1.0 + 0.587 * 0.5
        let mean = Float((g0 + g1) / 2)
        for (k, v) in base.enumerated() { #expect(abs(img.data[k] - min(1, max(0, 0.5 * v + 0.5 * mean))) < 1e-6) }

        img = ImageBuffer(data: base, shape: rgb)
        ColorOps.saturation(&img, 0)  // fully desaturated: every channel = gray
        #expect(abs(img.data[0] - Float(g0)) < 1e-6 && abs(img.data[2] - Float(g0)) < 1e-6 && abs(img.data[5] - Float(g1)) < 1e-6)

        // HSV: (1, 0.5, 0) is hue 30 degrees, saturation 1, value 1.
        let (h, s, v) = ColorOps.rgbToHSV(1, 0.5, 0)
        #expect(abs(h - 1.0 / 12) < 1e-6 && s == 1 && v == 1)
        // Red shifted by a third of a turn is green; by -1/3 is blue.
        img = ImageBuffer(data: [1, 0, 0], shape: ImageShape(channels: 3, height: 1, width: 1))
        ColorOps.hue(&img, 1.0 / 3)
        #expect(abs(img.data[0]) < 1e-5 && abs(img.data[1] - 1) < 1e-5 && abs(img.data[2]) < 1e-5)
        img = ImageBuffer(data: [1, 0, 0], shape: ImageShape(channels: 3, height: 1, width: 1))
        ColorOps.hue(&img, -1.0 / 3)
        #expect(abs(img.data[0]) < 1e-5 && abs(img.data[1]) < 1e-5 && abs(img.data[2] - 1) < 1e-5)
        // Round trip through HSV with zero shift.
        var r = DataRNG(seed: 5)
        for _ in 0..<200 {
            let c = (r.nextFloat(), r.nextFloat(), r.nextFloat())
            let (hh, ss, vv) = ColorOps.rgbToHSV(c.0, c.1, c.2)
            let back = ColorOps.hsvToRGB(hh, ss, vv)
            #expect(abs(back.0 - c.0) < 1e-5 && abs(back.1 - c.1) < 1e-5 && abs(back.2 - c.2) < 1e-5)
        }
        // Gray images: saturation and hue do nothing; contrast uses the image mean.
        img = ImageBuffer(data: [0.2, 0.6], shape: ImageShape(channels: 1, height: 1, width: 2))
        ColorOps.hue(&img, 0.3)
        ColorOps.saturation(&img, 0)
        #expect(img.data == [0.2, 0.6])
        ColorOps.contrast(&img, 0)
        #expect(abs(img.data[0] - 0.4) < 1e-6 && abs(img.data[1] - 0.4) < 1e-6)
    }

    @Test func colorJitterIsSeededAndBounded() throws {
        let shape = ImageShape(channels: 3, height: 4, width: 4)
        let jitter = ColorJitter(brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.1)
        #expect(try jitter.outputShape(for: shape) == shape)
        var seen = Set<[Float]>()
        for i in 0..<20 {
            var a = ImageBuffer(data: (0..<48).map { Float($0) / 48 }, shape: shape)
            var b = a
            var ra = DataRNG(seed: 11, epoch: 2, index: i)
            var rb = DataRNG(seed: 11, epoch: 2, index: i)
            jitter.apply(&a, rng: &ra)
            jitter.apply(&b, rng: &rb)
            #expect(a.data == b.data)
            #expect(a.data.allSatisfy { $0 >= 0 && $0 <= 1 })
            seen.insert(a.data)
        }
        #expect(seen.count == 20)
        #expect(throws: DataError.self) { try ColorJitter(hue: 0.6).outputShape(for: shape) }
        #expect(throws: DataError.self) { try ColorJitter(brightness: 0.1).outputShape(for: ImageShape(channels: 2, height: 2, width: 2)) }
        // Brightness only: the factor is the first uniform draw after the permutation.
        var img = ImageBuffer(data: [Float](repeating: 0.5, count: 48), shape: shape)
        var rng = DataRNG(seed: 3)
        ColorJitter(brightness: 0.5).apply(&img, rng: &rng)
        var replay = DataRNG(seed: 3)
        _ = replay.permutation(4)
        let f = Float(replay.uniform(0.5, 1.5))
        #expect(abs(img.data[0] - 0.5 * f) < 1e-6)
    }

    @Test func grayscale() {
        var img = ImageBuffer(data: [0.2, 1.0, 0.4, 0.5, 0.6, 0.0], shape: ImageShape(channels: 3, height: 1, width: 2))
        var rng = DataRNG(seed: 1)
        RandomGrayscale(p: 1).apply(&img, rng: &rng)
        let g0: Float = 0.2989 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6
        #expect(abs(img.data[0] - g0) < 1e-6 && img.data[0] == img.data[2] && img.data[2] == img.data[4])
        #expect(img.data[1] == img.data[3] && img.data[3] == img.data[5])
    }

    @Test func bilinearResize() {
        // PyTorch: F.interpolate([[0, 1]], size=4, mode="bilinear", align_corners=False) -> 0, .25, .75, 1.
        let src: [Float] = [0, 1]
        var dst = [Float](repeating: 0, count: 4)
        src.withUnsafeBufferPointer { s in
            dst.withUnsafeMutableBufferPointer { d in
                resizeBilinear(s.baseAddress!, srcWidth: 2, top: 0, left: 0, cropHeight: 1, cropWidth: 2, channels: 1,
                               srcHeight: 1, d.baseAddress!, 1, 4)
            }
        }
        #expect(dst == [0, 0.25, 0.75, 1])
        // 4x4 -> 2x2 averages 2x2 blocks' centres (source coordinate 0.5 and 2.5).
        let img: [Float] = (0..<16).map(Float.init)
        var out = [Float](repeating: 0, count: 4)
        img.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { d in
                resizeBilinear(s.baseAddress!, srcWidth: 4, top: 0, left: 0, cropHeight: 4, cropWidth: 4, channels: 1,
                               srcHeight: 4, d.baseAddress!, 2, 2)
            }
        }
        #expect(out == [2.5, 4.5, 10.5, 12.5])
    }

    @Test func randomResizedCrop() throws {
        let shape = ImageShape(channels: 3, height: 20, width: 30)
        let rrc = RandomResizedCrop(size: 8)
        #expect(try rrc.outputShape(for: shape) == ImageShape(channels: 3, height: 8, width: 8))
        var areas = [Double]()
        for seed in 0..<300 {
            var rng = DataRNG(seed: UInt64(seed))
            let w = rrc.window(height: 20, width: 30, rng: &rng)
            #expect(w.top >= 0 && w.left >= 0 && w.top + w.height <= 20 && w.left + w.width <= 30)
            areas.append(Double(w.height * w.width) / 600)
        }
        #expect(areas.min()! < 0.2 && areas.max()! > 0.8)
        // scale 1 and ratio 1.5 (= 30/20) select the whole image, so resizing to 20x30 is the identity.
        let whole = RandomResizedCrop(height: 20, width: 30, scale: 1...1, ratio: 1.5...1.5)
        var img = rampImage(shape)
        var rng = DataRNG(seed: 2)
        whole.apply(&img, rng: &rng)
        #expect(img.shape == shape)
        #expect(zip(img.data, rampImage(shape).data).allSatisfy { abs($0 - $1) < 1e-3 })
        // Impossible constraints fall back to the central crop.
        var r2 = DataRNG(seed: 1)
        let fallback = RandomResizedCrop(size: 4, scale: 1...1, ratio: 1...1).window(height: 20, width: 30, rng: &r2)
        #expect(fallback.height == 20 && fallback.width == 20 && fallback.left == 5 && fallback.top == 0)
    }

    @Test func cutout() {
        let shape = ImageShape(channels: 2, height: 10, width: 10)
        for seed in 0..<30 {
            var img = ImageBuffer(data: [Float](repeating: 1, count: 200), shape: shape)
            var rng = DataRNG(seed: UInt64(seed))
            Cutout(holes: 1, length: 4).apply(&img, rng: &rng)
            var replay = DataRNG(seed: UInt64(seed))
            let y = replay.int(below: 10), x = replay.int(below: 10)
            for c in 0..<2 {
                for yy in 0..<10 {
                    for xx in 0..<10 {
                        let inside = yy >= max(0, y - 2) && yy < min(10, y + 2) && xx >= max(0, x - 2) && xx < min(10, x + 2)
                        #expect(img.data[(c * 10 + yy) * 10 + xx] == (inside ? 0 : 1))
                    }
                }
            }
        }
    }

    @Test func pipelineAndNormalize() throws {
        let shape = ImageShape(channels: 3, height: 8, width: 8)
        let p = AugmentationPipeline([
            RandomResizedCrop(size: 6), RandomHorizontalFlip(), RandomApply(ColorJitter(brightness: 0.2), p: 0.8),
            RandomGrayscale(p: 0.2), Normalize(CIFAR10.normalization), Cutout(holes: 1, length: 2),
        ])
        #expect(try p.outputShape(for: shape) == ImageShape(channels: 3, height: 6, width: 6))
        var img = ImageBuffer(data: [Float](repeating: 0.5, count: shape.count), shape: shape)
        var rng = DataRNG(seed: 4)
        p.apply(&img, rng: &rng)
        #expect(img.shape == ImageShape(channels: 3, height: 6, width: 6))
        var n = ImageBuffer(data: [Float](repeating: 0.5, count: 3), shape: ImageShape(channels: 3, height: 1, width: 1))
        Normalize(Normalization(mean: [0.5, 0.25, 0], std: [1, 0.5, 2])).apply(&n, rng: &rng)
        #expect(n.data == [0, 0.5, 0.25])
        #expect(throws: DataError.self) { try Normalize(CIFAR10.normalization).outputShape(for: ImageShape(channels: 1, height: 2, width: 2)) }
        #expect(throws: DataError.self) { try RandomApply(RandomResizedCrop(size: 3), p: 0.5).outputShape(for: shape) }
    }
}
