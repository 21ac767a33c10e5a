/// Long-tailed subsets in the convention of LDAM-DRW (Cao et al., 2019), used for CIFAR10-LT:
/// class `i` keeps `n_i = floor(n_max * (1 / IF)^(i / (C - 1)))` images, the first `n_i` of that
/// class after a seeded shuffle, where `IF = n_max / n_min` is the imbalance factor.
/// CIFAR-10 with IF 100 gives 5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50 = 12,406 images.
public enum LongTail {
    /// The per-class sizes `floor(maxCount * (1/imbalance)^(i/(classes-1)))`.
    public static func classCounts(maxCount: Int, classes: Int, imbalance: Double) throws -> [Int] {
        guard imbalance >= 1, imbalance.isFinite else {
            throw DataError.invalidArgument("imbalance factor must be a finite number >= 1, got \(imbalance)")
        }
        guard classes >= 1 else { throw DataError.invalidArgument("need at least one class, got \(classes)") }
        guard maxCount >= 0 else { throw DataError.invalidArgument("maxCount \(maxCount) is negative") }
        if classes == 1 { return [maxCount] }
        let factor = 1.0 / imbalance
        return (0..<classes).map { i in
            Int(Double(maxCount) * DataMath.pow(factor, Double(i) / Double(classes - 1)))
        }
    }

    /// The long-tailed subset of `dataset` (class-grouped order: class 0's images first).
    /// `n_max` is the size of the largest class; a class smaller than its target keeps all its images.
    public static func make(_ dataset: ImageDataset, imbalance: Double, seed: UInt64) throws -> ImageDataset {
        let byClass = dataset.indicesByClass()
        let nMax = byClass.map(\.count).max() ?? 0
        let targets = try classCounts(maxCount: nMax, classes: dataset.classes, imbalance: imbalance)
        var rng = DataRNG(seed: seed)
        var keep = [Int]()
        for (c, var idx) in byClass.enumerated() {
            rng.shuffle(&idx)
            keep.append(contentsOf: idx.prefix(targets[c]))
        }
        return try dataset.subset(keep)
    }
}

/// The long-tailed subset of `dataset` with imbalance factor `imbalance` (see ``LongTail``).
public func longTailed(_ dataset: ImageDataset, imbalance: Double, seed: UInt64) throws -> ImageDataset {
    try LongTail.make(dataset, imbalance: imbalance, seed: seed)
}

extension ImageDataset {
    /// The long-tailed subset with imbalance factor `imbalance` (see ``LongTail``).
    public func longTailed(imbalance: Double, seed: UInt64) throws -> ImageDataset {
        try LongTail.make(self, imbalance: imbalance, seed: seed)
    }
}
