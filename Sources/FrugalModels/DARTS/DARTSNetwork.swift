import FrugalCore
import FrugalNN

/// Size of a DARTS network: C (channels of the first cells), number of cells, input size and
/// channels, classes, intermediate nodes per cell and the candidate operation set.
/// The paper setting is C=16, 8 cells, 32x32; the reduced default C=8, 5 cells.
public struct DARTSConfig: Codable, Sendable, Equatable {
    public var channels = 8
    public var cells = 5
    public var inputSize = 32
    public var inputChannels = 3
    public var classes = 10
    public var steps = 4
    public var stemMultiplier = 3
    public var ops: [DARTSOp] = DARTSOp.darts
    public init() {}

    /// The paper-scale search setting (C=16, 8 cells, 32x32).
    public static var paper: DARTSConfig { var c = DARTSConfig(); c.channels = 16; c.cells = 8; return c }

    /// Indices of the reduction cells (at 1/3 and 2/3 of the depth).
    public var reductionCells: [Int] { Array(Set([cells / 3, 2 * cells / 3])).sorted() }
    /// Number of mixed edges per cell (14 for 4 steps).
    public var edgesPerCell: Int { (0..<steps).reduce(0) { $0 + $1 + 2 } }

    public func validate() throws {
        guard channels >= 1, cells >= 1, steps >= 1, inputChannels >= 1, classes >= 2 else {
            throw DARTSError.invalid("DARTS config: channels \(channels), cells \(cells), steps \(steps), input channels \(inputChannels) must be positive and classes \(classes) >= 2")
        }
        let reductions = reductionCells.count
        var s = inputSize
        for _ in 0..<reductions {
            guard s % 2 == 0 && s >= 2 else { throw DARTSError.invalid("input size \(inputSize) must be divisible by \(1 << reductions) for \(reductions) reduction cells") }
            s /= 2
        }
        guard !ops.isEmpty else { throw DARTSError.invalid("empty operation set") }
    }
}

/// Builds the stem: 3×3 conv to stemMultiplier·C channels, then BN.
func makeStem(_ cfg: DARTSConfig, rng: inout RNG) -> Sequential {
    Sequential(Conv2d(cfg.inputChannels, cfg.stemMultiplier * cfg.channels, kernel: 3, padding: 1, bias: false, rng: &rng),
               BatchNorm2d(cfg.stemMultiplier * cfg.channels))
}

/// The channel plan of the cells: (C_prev_prev, C_prev, C_cell, reduction, reduction_prev) per cell.
func cellPlan(_ cfg: DARTSConfig, multiplier: (Bool) -> Int) -> [(Int, Int, Int, Bool, Bool)] {
    var cpp = cfg.stemMultiplier * cfg.channels, cp = cpp, c = cfg.channels
    var reductionPrev = false
    var out: [(Int, Int, Int, Bool, Bool)] = []
    let red = Set(cfg.reductionCells)
    for i in 0..<cfg.cells {
        let reduction = red.contains(i)
        if reduction { c *= 2 }
        out.append((cpp, cp, c, reduction, reductionPrev))
        reductionPrev = reduction
        cpp = cp
        cp = multiplier(reduction) * c
    }
    return out
}

/// A mixed edge of the supernet: every candidate op applied to the input, combined as
/// Σ_k w_k · op_k(x) with the weights the search method gives (softmax or sigmoid of α).
/// `none` contributes nothing (its output and its α-gradient are zero), so it is skipped.
public final class MixedOp: Module {
    public let ops: [Module]
    let apply: [(Tensor) -> Tensor]
    let kinds: [DARTSOp]
    public init(channels: Int, stride: Int, ops: [DARTSOp], rng: inout RNG) {
        let layers = ops.map { $0.make(channels: channels, stride: stride, affine: false, rng: &rng) }
        self.ops = layers.map { $0 as Module }
        apply = layers.map { l in { l.forward($0) } }
        kinds = ops
    }
    public override func children() -> [(String, Any)] { ops.enumerated().map { ("\($0.offset)", $0.element) } }

    /// Σ_k weights[k] · op_k(x); `weights` has one entry per op.
    public func forward(_ x: Tensor, weights: Tensor) -> Tensor {
        var outs: [Tensor] = [], idx: [Int] = []
        for (k, kind) in kinds.enumerated() where kind != .none {
            outs.append(apply[k](x)); idx.append(k)
        }
        if outs.isEmpty { return ZeroOp(stride: 1).forward(x) }
        let w = idx.count == kinds.count ? weights : weights.indexSelect(idx)
        return Tensor.weightedSum(outs, weights: w)
    }
}

/// A supernet cell: inputs preprocessed to C channels, `steps` nodes each summing mixed edges
/// from all earlier nodes (2 + 3 + 4 + 5 = 14 edges for 4 steps), output the concat of the nodes.
public final class SearchCell: Module {
    public let preprocess0: Module, preprocess1: ReLUConvBN
    let pre0: (Tensor) -> Tensor
    public let edges: [MixedOp]
    public let reduction: Bool
    let steps: Int

    public init(steps: Int, cpp: Int, cp: Int, c: Int, reduction: Bool, reductionPrev: Bool, ops: [DARTSOp], rng: inout RNG) {
        if reductionPrev {
            let p = FactorizedReduce(cpp, c, affine: false, rng: &rng); preprocess0 = p; pre0 = { p($0) }
        } else {
            let p = ReLUConvBN(cpp, c, kernel: 1, stride: 1, padding: 0, affine: false, rng: &rng); preprocess0 = p; pre0 = { p($0) }
        }
        preprocess1 = ReLUConvBN(cp, c, kernel: 1, stride: 1, padding: 0, affine: false, rng: &rng)
        var e: [MixedOp] = []
        for i in 0..<steps {
            for j in 0..<(2 + i) {
                e.append(MixedOp(channels: c, stride: reduction && j < 2 ? 2 : 1, ops: ops, rng: &rng))
            }
        }
        edges = e
        self.reduction = reduction
        self.steps = steps
    }
    public override func children() -> [(String, Any)] { [("preprocess0", preprocess0), ("preprocess1", preprocess1), ("edges", edges as [Module])] }

    /// `weights` [edges, ops] are the op weights of this cell type.
    public func forward(_ s0: Tensor, _ s1: Tensor, weights: Tensor) -> Tensor {
        var states = [pre0(s0), preprocess1(s1)]
        var offset = 0
        for i in 0..<steps {
            var acc: Tensor? = nil
            for j in 0..<states.count {
                let y = edges[offset + j].forward(states[j], weights: weights.select(axis: 0, offset + j))
                acc = acc.map { $0 + y } ?? y
            }
            offset += states.count
            states.append(acc!)
            _ = i
        }
        return Tensor.concat(Array(states.suffix(steps)), axis: 1)
    }
}

/// The DARTS supernet: stem, cells (normal and reduction, reduction at 1/3 and 2/3 depth
/// doubling channels), global average pooling and a linear classifier. The architecture
/// weights α are not part of the module: the search passes op weights to `forward`.
public final class DARTSSupernet: Module {
    public let config: DARTSConfig
    public let stem: Sequential
    public let cells: [SearchCell]
    public let classifier: Linear
    /// Channels of the pooled features (input of the classifier or a projector).
    public let featureChannels: Int

    public init(_ cfg: DARTSConfig, rng: inout RNG) {
        config = cfg
        stem = makeStem(cfg, rng: &rng)
        var cs: [SearchCell] = []
        var last = 0
        for (cpp, cp, c, red, redPrev) in cellPlan(cfg, multiplier: { _ in cfg.steps }) {
            cs.append(SearchCell(steps: cfg.steps, cpp: cpp, cp: cp, c: c, reduction: red, reductionPrev: redPrev, ops: cfg.ops, rng: &rng))
            last = cfg.steps * c
        }
        cells = cs
        featureChannels = last
        classifier = Linear(last, cfg.classes, rng: &rng)
    }
    public override func children() -> [(String, Any)] { [("stem", stem), ("cells", cells as [Module]), ("classifier", classifier)] }

    /// Pooled features [N, featureChannels] for op weights of the normal and reduction cells ([edges, ops] each).
    public func features(_ x: Tensor, normal: Tensor, reduce: Tensor) -> Tensor {
        var s0 = stem(x), s1 = s0
        for cell in cells {
            let y = cell.forward(s0, s1, weights: cell.reduction ? reduce : normal)
            s0 = s1; s1 = y
        }
        return s1.adaptiveAvgPool2d(1, 1).flattened(from: 1)
    }

    /// Class logits [N, classes].
    public func forward(_ x: Tensor, normal: Tensor, reduce: Tensor) -> Tensor {
        classifier(features(x, normal: normal, reduce: reduce))
    }
}

/// A cell of a derived network: only the genotype's edges, each a fixed op; a node is the sum of
/// its incoming edges; the output concatenates the genotype's concat nodes.
public final class GenotypeCell: Module {
    public let preprocess0: Module, preprocess1: ReLUConvBN
    let pre0: (Tensor) -> Tensor
    public let ops: [Module]
    let apply: [(Tensor) -> Tensor]
    let edges: [GenotypeEdge]
    let concat: [Int]
    let steps: Int
    public let reduction: Bool

    public init(genotype: Genotype, cpp: Int, cp: Int, c: Int, reduction: Bool, reductionPrev: Bool, rng: inout RNG) {
        if reductionPrev {
            let p = FactorizedReduce(cpp, c, affine: true, rng: &rng); preprocess0 = p; pre0 = { p($0) }
        } else {
            let p = ReLUConvBN(cpp, c, kernel: 1, stride: 1, padding: 0, affine: true, rng: &rng); preprocess0 = p; pre0 = { p($0) }
        }
        preprocess1 = ReLUConvBN(cp, c, kernel: 1, stride: 1, padding: 0, affine: true, rng: &rng)
        edges = reduction ? genotype.reduce : genotype.normal
        concat = reduction ? genotype.reduceConcat : genotype.normalConcat
        steps = genotype.steps
        let layers = edges.map { $0.op.make(channels: c, stride: reduction && $0.from < 2 ? 2 : 1, affine: true, rng: &rng) }
        ops = layers.map { $0 as Module }
        apply = layers.map { l in { l.forward($0) } }
        self.reduction = reduction
    }
    public override func children() -> [(String, Any)] { [("preprocess0", preprocess0), ("preprocess1", preprocess1), ("ops", ops)] }

    public func forward(_ s0: Tensor, _ s1: Tensor) -> Tensor {
        var states = [pre0(s0), preprocess1(s1)]
        for n in 2..<(2 + steps) {
            var acc: Tensor? = nil
            for (k, e) in edges.enumerated() where e.node == n {
                let y = apply[k](states[e.from])
                acc = acc.map { $0 + y } ?? y
            }
            states.append(acc!)
        }
        return Tensor.concat(concat.map { states[$0] }, axis: 1)
    }
}

/// The network of a genotype, trained from scratch (DARTS `NetworkCIFAR` without auxiliary head
/// and drop path): stem, cells, global average pooling, classifier.
public final class GenotypeNetwork: Module, Layer {
    public let config: DARTSConfig
    public let genotype: Genotype
    public let stem: Sequential
    public let cells: [GenotypeCell]
    public let classifier: Linear

    public init(genotype: Genotype, config cfg: DARTSConfig, rng: inout RNG) throws {
        try genotype.validate()
        var c = cfg; c.steps = genotype.steps
        try c.validate()
        config = c
        self.genotype = genotype
        stem = makeStem(c, rng: &rng)
        var cs: [GenotypeCell] = []
        var last = 0
        for (cpp, cp, ch, red, redPrev) in cellPlan(c, multiplier: { ($0 ? genotype.reduceConcat : genotype.normalConcat).count }) {
            cs.append(GenotypeCell(genotype: genotype, cpp: cpp, cp: cp, c: ch, reduction: red, reductionPrev: redPrev, rng: &rng))
            last = (red ? genotype.reduceConcat : genotype.normalConcat).count * ch
        }
        cells = cs
        classifier = Linear(last, c.classes, rng: &rng)
    }
    public override func children() -> [(String, Any)] { [("stem", stem), ("cells", cells as [Module]), ("classifier", classifier)] }

    public func forward(_ x: Tensor) -> Tensor {
        var s0 = stem(x), s1 = s0
        for cell in cells {
            let y = cell.forward(s0, s1)
            s0 = s1; s1 = y
        }
        return classifier(s1.adaptiveAvgPool2d(1, 1).flattened(from: 1))
    }
}
