import FrugalCore

/// A family of per-layer drop probabilities parameterised by the overall ratio r, the expected
/// fraction of layers skipped in a step: (1/L) Σ_l p_l = r.
///
/// For layers l = 1...L:
/// - `uniform`:    p_l = r
/// - `increasing`: p_l = r · 2l / (L + 1)          (deeper layers dropped more often, as DropPEFT)
/// - `decreasing`: p_l = r · 2(L + 1 - l) / (L + 1) (shallower layers dropped more often)
///
/// A p_l above 1 is capped at 1 and the excess spread over the uncapped layers in proportion to
/// their p_l, so the mean stays r (possible for r ≤ 1).
public enum LayerDropoutFamily: String, Sendable, Codable, CaseIterable {
    case uniform, increasing, decreasing

    /// p_1...p_L for `layers` layers and overall ratio `ratio` in [0, 1].
    public func probabilities(layers: Int, ratio: Float) -> [Float] {
        precondition(layers > 0, "layer dropout needs at least one layer")
        precondition(ratio >= 0 && ratio <= 1, "layer dropout ratio must be in [0, 1], got \(ratio)")
        let lf = Float(layers)
        var p: [Float] = (1...layers).map { l in
            switch self {
            case .uniform: return ratio
            case .increasing: return ratio * 2 * Float(l) / (lf + 1)
            case .decreasing: return ratio * 2 * (lf + 1 - Float(l)) / (lf + 1)
            }
        }
        // Cap at 1 and scale the uncapped layers up so that the mean stays r; repeat while a layer
        // crosses 1 (at most L rounds).
        let target = ratio * lf
        for _ in 0..<layers {
            guard p.contains(where: { $0 > 1 }) else { break }
            let capped = Float(p.filter { $0 >= 1 }.count)
            let free = p.filter { $0 < 1 }.reduce(0, +)
            let scale = free > 0 ? (target - capped) / free : 0
            p = p.map { $0 >= 1 ? 1 : $0 * scale }
        }
        return p
    }
}

/// A layer-dropout configuration: the drop probability p_l of every transformer layer.
public struct LayerDropoutConfig: Sendable, Codable, Equatable, CustomStringConvertible {
    public let probabilities: [Float]
    public init(probabilities: [Float]) {
        precondition(probabilities.allSatisfy { $0 >= 0 && $0 <= 1 }, "layer drop probabilities must be in [0, 1]: \(probabilities)")
        self.probabilities = probabilities
    }
    /// A member of `family` with overall ratio `ratio` (see `LayerDropoutFamily`).
    public init(_ family: LayerDropoutFamily, layers: Int, ratio: Float) {
        self.init(probabilities: family.probabilities(layers: layers, ratio: ratio))
    }
    /// Full depth: no layer is ever skipped.
    public static func none(layers: Int) -> LayerDropoutConfig { LayerDropoutConfig(probabilities: [Float](repeating: 0, count: layers)) }

    public var layers: Int { probabilities.count }
    /// The expected fraction of layers skipped a step, (1/L) Σ p_l.
    public var overallRatio: Float { probabilities.reduce(0, +) / Float(Swift.max(layers, 1)) }
    public var description: String { "[" + probabilities.map { String(format: "%.2f", $0) }.joined(separator: ", ") + "]" }
}

/// Stochastic transformer layer dropout (DropPEFT's STLD): each training step, layer l is
/// skipped with probability p_l, independently. A skipped layer passes the residual stream through
/// unchanged: the models' `activeLayers` flags make it compute nothing and record nothing in the
/// autograd graph, so it keeps no activations and its adapters get no gradient that step.
/// Inference (`model.eval()`, or simply not passing flags) uses the full depth.
///
///     var drop = LayerDropout(LayerDropoutConfig(.increasing, layers: 6, ratio: 0.5), seed: 7)
///     let active = drop.sample()                 // e.g. [true, true, false, true, false, false]
///     let logits = classifier(batch, activeLayers: active)
public struct LayerDropout: Sendable {
    public var config: LayerDropoutConfig
    var rng: RNG

    public init(_ config: LayerDropoutConfig, seed: UInt64) {
        self.config = config
        rng = RNG(seed: seed)
    }

    /// One step's flags: active[l] is false when layer l is skipped (probability p_l).
    public mutating func sample() -> [Bool] {
        config.probabilities.map { p in rng.uniform() >= p }
    }
}
