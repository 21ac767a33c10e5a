import FrugalCore

/// The `full` policy: every expert resident (memory-mapped as stored), computed with the GEMV
/// kernels. Decode (T = 1) runs each selected expert as three GEMVs; prefill groups the tokens
/// routed to each expert and streams that expert's weights once per group of 4 tokens.
public final class ResidentExperts: ExpertExecutor {
    struct Expert {
        let gate: MoEMatrix, up: MoEMatrix, down: MoEMatrix
    }
    /// experts[layer][e]; empty for dense layers.
    let experts: [[Expert]]
    let hidden: Int
    let bg = MoEBuffer(), bu = MoEBuffer(), bx = MoEBuffer(), by = MoEBuffer()

    /// Reads every expert's weights from `source` once (views, no copies).
    public init(source: MoEExpertSource) {
        let s = source.moeShape
        hidden = s.hidden
        var all: [[Expert]] = []
        for l in 0..<s.layers {
            var layer: [Expert] = []
            for e in 0..<s.experts {
                guard let w = try? source.expertWeights(layer: l, expert: e) else { break }
                layer.append(Expert(gate: MoEMatrix(tensor: w.gate), up: MoEMatrix(tensor: w.up), down: MoEMatrix(tensor: w.down)))
            }
            all.append(layer)
        }
        experts = all
    }

    public func runExperts(layer: Int, x: Tensor, routes: [[ExpertRoute]]) throws -> Tensor {
        guard layer >= 0 && layer < experts.count, !experts[layer].isEmpty else {
            throw MoEError.badInput("ResidentExperts: layer \(layer) has no experts")
        }
        let h = hidden, t = routes.count
        guard x.count == t * h else {
            throw MoEError.badInput("ResidentExperts: x has shape \(x.shape), expected [\(t), \(h)]")
        }
        let xc = x.contiguousF32()
        let out = Tensor(zeros: [t, h])
        let ex = experts[layer]
        if t == 1 {
            for r in routes[0] {
                guard r.expert >= 0 && r.expert < ex.count else {
                    throw MoEError.badInput("ResidentExperts: expert \(r.expert) out of range 0..<\(ex.count) in layer \(layer)")
                }
                Self.expert(ex[r.expert], weight: r.weight, x: xc.pointer, y: out.pointer, rows: 1, g: bg, u: bu)
            }
            return out
        }
        // Group tokens by expert.
        var groups = [[(token: Int, weight: Float)]](repeating: [], count: ex.count)
        for (i, rs) in routes.enumerated() {
            for r in rs {
                guard r.expert >= 0 && r.expert < ex.count else {
                    throw MoEError.badInput("ResidentExperts: expert \(r.expert) out of range 0..<\(ex.count) in layer \(layer)")
                }
                groups[r.expert].append((i, r.weight))
            }
        }
        for (e, g) in groups.enumerated() where !g.isEmpty {
            let n = g.count
            let xs = bx.ensure(n * h), ys = by.ensure(n * h)
            for (j, item) in g.enumerated() { (xs + j * h).update(from: xc.pointer + item.token * h, count: h) }
            let width = ex[e].gate.rows
            let gp = bg.ensure(n * width), up = bu.ensure(n * width)
            ex[e].gate.apply(xs, gp, count: n)
            ex[e].up.apply(xs, up, count: n)
            VectorOps.silu(gp, into: gp, count: n * width)
            VectorOps.mul(gp, up, into: gp, count: n * width)
            ex[e].down.apply(gp, ys, count: n)
            for (j, item) in g.enumerated() { VectorOps.axpy(item.weight, ys + j * h, out.pointer + item.token * h, count: h) }
        }
        return out
    }

    /// y += weight · down(silu(gate x) ⊙ up x) for one token.
    static func expert(_ w: Expert, weight: Float, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, rows: Int,
                       g: MoEBuffer, u: MoEBuffer) {
        let width = w.gate.rows
        let gp = g.ensure(width), up = u.ensure(width)
        w.gate.apply(x, gp, count: 1)
        w.up.apply(x, up, count: 1)
        VectorOps.silu(gp, into: gp, count: width)
        VectorOps.mul(gp, up, into: gp, count: width)
        VectorOps.scale(gp, by: weight, count: width)
        w.down.apply(gp, y, count: 1, accumulate: true)
    }
}
