import Foundation

/// SplitMix64: a small deterministic generator for synthetic traces and predictor errors.
public struct SimRNG: Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    public mutating func uniform() -> Double { Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0) }
    /// An index drawn with probability proportional to `w` (w ≥ 0, not all zero).
    public mutating func pick(_ w: [Double], total: Double) -> Int {
        var r = uniform() * total
        for (i, x) in w.enumerated() { r -= x; if r < 0 { return i } }
        return w.count - 1
    }
}

/// Routing statistics of a trace: per-layer expert popularity, layer-to-layer transitions (which experts of layer
/// l+1 follow each expert of layer l in the same token) and token-to-token reuse (share of a layer's experts that
/// the previous token also used there). A synthetic trace drawn from them has the same popularity skew and
/// cross-layer correlation.
public struct RoutingStatistics: Sendable {
    public var layers: Int, experts: Int, topK: Int
    /// popularity[l][e]: uses of e at layer l.
    public var popularity: [[Double]]
    /// transition[l][e * experts + e']: tokens that used e at l and e' at l+1.
    public var transition: [[Double]]
    /// reuse[l]: mean share of a token's experts at l used by the previous token at l.
    public var reuse: [Double]

    public init(tokens: [TokenRouting], layers: Int, experts: Int, topK: Int) {
        self.layers = layers; self.experts = experts; self.topK = topK
        popularity = [[Double]](repeating: [Double](repeating: 0, count: experts), count: layers)
        transition = [[Double]](repeating: [Double](repeating: 0, count: experts * experts), count: max(0, layers - 1))
        reuse = [Double](repeating: 0, count: layers)
        var reuseN = [Double](repeating: 0, count: layers)
        for (t, tok) in tokens.enumerated() {
            for l in 0..<layers {
                let a = tok.selected(l)
                for e in a { popularity[l][e] += 1 }
                if l + 1 < layers { for e in a { for f in tok.selected(l + 1) { transition[l][e * experts + f] += 1 } } }
                if t > 0, !a.isEmpty {
                    let prev = Set(tokens[t - 1].selected(l))
                    reuse[l] += Double(a.filter { prev.contains($0) }.count) / Double(a.count); reuseN[l] += 1
                }
            }
        }
        for l in 0..<layers where reuseN[l] > 0 { reuse[l] /= reuseN[l] }
    }

    /// Draws `count` tokens: layer 0 from popularity (and reuse of the previous token), layer l+1 from a mix of the
    /// transitions out of layer l's experts and layer l+1's popularity, each with the layer's reuse rate.
    public func synthesize(tokens count: Int, seed: UInt64 = 1, transitionWeight: Double = 0.5) -> [TokenRouting] {
        var rng = SimRNG(seed: seed)
        var out: [TokenRouting] = []
        var prev = [[Int]](repeating: [], count: layers)
        for step in 0..<count {
            var tok = TokenRouting(turn: 0, phase: 1, step: step, layers: layers)
            var above: [Int] = []
            for l in 0..<layers {
                var w = popularity[l].map { $0 + 0.1 }
                let popTotal = w.reduce(0, +)
                if l > 0, !above.isEmpty {
                    var tr = [Double](repeating: 0, count: experts)
                    for e in above { for f in 0..<experts { tr[f] += transition[l - 1][e * experts + f] } }
                    let trTotal = tr.reduce(0, +)
                    if trTotal > 0 {
                        for f in 0..<experts {
                            w[f] = (1 - transitionWeight) * w[f] / popTotal + transitionWeight * tr[f] / trTotal
                        }
                    }
                }
                var chosen: [Int] = []
                for _ in 0..<topK {
                    if !prev[l].isEmpty, rng.uniform() < reuse[l] {
                        let cands = prev[l].filter { !chosen.contains($0) }
                        if !cands.isEmpty { chosen.append(cands[Int(rng.next() % UInt64(cands.count))]); continue }
                    }
                    var ww = w
                    for c in chosen { ww[c] = 0 }
                    let tot = ww.reduce(0, +)
                    chosen.append(tot > 0 ? rng.pick(ww, total: tot) : (0..<experts).first { !chosen.contains($0) }!)
                }
                tok.experts[l] = chosen.enumerated().map { (slot: $0, expert: $1, weight: 1 / Float(topK)) }
                prev[l] = chosen
                above = chosen
            }
            out.append(tok)
        }
        return out
    }
}

/// Adapts a trace to a model profile with other counts: profile layer l reads trace layer ⌊l·L/L'⌋, expert e maps
/// to e mod E', and each token keeps its first k' distinct mapped experts in slot order (highest weight first).
public func adaptTokens(_ tokens: [TokenRouting], traceLayers: Int, toLayers L2: Int, experts E2: Int, topK k2: Int)
    -> [TokenRouting]
{
    tokens.map { tok in
        var t = TokenRouting(turn: tok.turn, phase: tok.phase, step: tok.step, layers: L2)
        for l in 0..<L2 {
            let src = min(traceLayers - 1, l * traceLayers / max(1, L2))
            var seen: [Int] = []
            for e in tok.selected(src) { let m = e % E2; if !seen.contains(m) { seen.append(m) }; if seen.count == k2 { break } }
            t.experts[l] = seen.enumerated().map { (slot: $0, expert: $1, weight: 1 / Float(k2)) }
        }
        return t
    }
}
