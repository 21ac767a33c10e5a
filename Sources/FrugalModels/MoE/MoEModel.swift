#if canImport(Glibc)
import Glibc
#endif
import Foundation
import FrugalCore
import FrugalNN

/// Keys and values of the positions seen so far, one buffer pair per layer ([kvHeads, capacity,
/// headDim] float32 each), grown by doubling up to `maxPositions`.
public final class MoEKVCache {
    public private(set) var length = 0
    let layers: Int, kvHeads: Int, headDim: Int, maxPositions: Int
    private(set) var capacity: Int
    var keys: [UnsafeMutablePointer<Float>]
    var values: [UnsafeMutablePointer<Float>]

    public init(config c: MoEModelConfig, capacity: Int = 256) {
        layers = c.layers; kvHeads = c.kvHeads; headDim = c.headDim; maxPositions = c.maxPositions
        self.capacity = max(1, min(capacity, c.maxPositions))
        let n = c.kvHeads * self.capacity * c.headDim
        keys = (0..<c.layers).map { _ in MoEKVCache.alloc(n) }
        values = (0..<c.layers).map { _ in MoEKVCache.alloc(n) }
    }

    static func alloc(_ n: Int) -> UnsafeMutablePointer<Float> {
        UnsafeMutableRawPointer.allocate(byteCount: max(n, 1) * 4, alignment: 64).bindMemory(to: Float.self, capacity: max(n, 1))
    }

    /// Forgets every position.
    public func reset() { length = 0 }

    /// Makes room for `n` positions in total.
    func reserve(_ n: Int) {
        guard n > capacity else { return }
        var c = capacity
        while c < n { c *= 2 }
        c = min(c, maxPositions)
        for l in 0..<layers {
            for which in 0..<2 {
                let old = which == 0 ? keys[l] : values[l]
                let new = MoEKVCache.alloc(kvHeads * c * headDim)
                for h in 0..<kvHeads {
                    (new + h * c * headDim).update(from: old + h * capacity * headDim, count: length * headDim)
                }
                old.deallocate()
                if which == 0 { keys[l] = new } else { values[l] = new }
            }
        }
        capacity = c
    }

    func advance(_ n: Int) { length += n }

    deinit {
        for p in keys { p.deallocate() }
        for p in values { p.deallocate() }
    }
}

/// A decoder-only Mixture-of-Experts language model (Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE) for
/// inference, reading a Hugging Face checkpoint folder (config.json + safetensors, sharded or not).
/// Weights stay in their stored dtype in the memory-mapped files; matrix-vector products use the
/// batch-1 GEMV kernels. Routed experts run through `executor` (default `ResidentExperts`).
///
/// ```swift
/// let model = try MoEModel(directory: url)
/// let cache = model.makeCache()
/// let logits = try model.forward([1, 2, 3], cache: cache)   // last position, [vocab]
/// ```
public final class MoEModel: MoEExpertSource {
    public let config: MoEModelConfig
    public let directory: URL
    public let checkpoint: SafetensorsCheckpoint
    /// Where routed experts are computed; replace to offload experts.
    public var executor: ExpertExecutor!
    /// Called after routing in each sparse layer (layer, routes): for traces and statistics.
    public var routeObserver: ((Int, [[ExpertRoute]]) -> Void)?

    let embed: MoEMatrix
    let lmHead: MoEMatrix
    let finalNorm: [Float]
    let layerWeights: [MoELayerWeights]
    let invFreq: [Float]

    // Scratch buffers, reused by every forward.
    let bx = MoEBuffer(), bn = MoEBuffer(), bq = MoEBuffer(), bk = MoEBuffer(), bv = MoEBuffer()
    let ba = MoEBuffer(), bt = MoEBuffer(), bs = MoEBuffer(), bg = MoEBuffer(), bu = MoEBuffer()
    let bl = MoEBuffer()

    /// Opens `directory` (config.json and safetensors). Throws `MoEError`, `HFConfigError`,
    /// `SafetensorsError` or `FormatIOError` naming the file and tensor that is wrong.
    public convenience init(directory: URL) throws {
        let config = try MoEModelConfig.load(directory: directory)
        let ckpt = try SafetensorsCheckpoint(url: directory)
        try self.init(config: config, checkpoint: ckpt, directory: directory)
    }

    public init(config c: MoEModelConfig, checkpoint: SafetensorsCheckpoint, directory: URL) throws {
        config = c
        self.directory = directory
        self.checkpoint = checkpoint
        let r = MoETensorReader(checkpoint: checkpoint, source: directory.path)
        embed = try r.matrix("model.embed_tokens.weight", c.vocabSize, c.hiddenSize)
        if c.tieWordEmbeddings && !checkpoint.contains("lm_head.weight") {
            lmHead = embed
        } else {
            lmHead = try r.matrix("lm_head.weight", c.vocabSize, c.hiddenSize)
        }
        finalNorm = try r.vector("model.norm.weight", c.hiddenSize)
        var ls: [MoELayerWeights] = []
        for l in 0..<c.layers { ls.append(try MoELayerWeights(layer: l, config: c, reader: r)) }
        layerWeights = ls
        let half = c.headDim / 2
        // As transformers: inv_freq = 1 / base^(2i/d) in float32.
        invFreq = (0..<half).map { 1 / powf(c.ropeTheta, Float(2 * $0) / Float(c.headDim)) }
        executor = ResidentExperts(source: self)
    }

    /// A fresh KV cache for this model.
    public func makeCache(capacity: Int = 256) -> MoEKVCache { MoEKVCache(config: config, capacity: capacity) }

    /// Bytes of all routed experts' weights (as stored).
    public var expertBytes: Int {
        layerWeights.reduce(0) { acc, l in
            acc + l.experts.reduce(0) { $0 + ($1.gate.rows * $1.gate.cols + $1.up.rows * $1.up.cols + $1.down.rows * $1.down.cols) * $1.gate.dtype.size }
        }
    }

    // MARK: - MoEExpertSource

    public var moeShape: MoEShape { config.moeShape }

    public func routerLogits(layer: Int, _ x: Tensor) -> Tensor {
        precondition(layer >= 0 && layer < config.layers, "routerLogits: layer \(layer) out of range 0..<\(config.layers)")
        guard let router = layerWeights[layer].router else {
            preconditionFailure("routerLogits: layer \(layer) is a dense layer")
        }
        let xc = x.contiguousF32()
        let t = xc.count / config.hiddenSize
        let out = Tensor(zeros: [t, config.experts], zeroed: false)
        router.apply(xc.pointer, out.pointer, count: t)
        return out
    }

    public func route(logits: Tensor) -> [[ExpertRoute]] {
        let lc = logits.contiguousF32()
        let e = config.experts
        let t = lc.count / e
        let probs = bl.ensure(e)
        var out: [[ExpertRoute]] = []
        out.reserveCapacity(t)
        for i in 0..<t { out.append(routeRow(lc.pointer + i * e, probs)) }
        return out
    }

    /// softmax → top-k (descending, lowest index first on ties) → renormalise iff `normTopKProb`.
    func routeRow(_ logits: UnsafePointer<Float>, _ probs: UnsafeMutablePointer<Float>) -> [ExpertRoute] {
        let e = config.experts, k = config.topK
        VectorOps.softmax(logits, into: probs, count: e)
        var routes: [ExpertRoute] = []
        routes.reserveCapacity(k)
        for _ in 0..<k {
            var best = -1
            var bv = -Float.infinity
            for j in 0..<e where probs[j] > bv && !routes.contains(where: { $0.expert == j }) { best = j; bv = probs[j] }
            if best < 0 { best = (0..<e).first { j in !routes.contains { $0.expert == j } }!; bv = probs[best] }
            routes.append(ExpertRoute(expert: best, weight: bv))
        }
        if config.normTopKProb {
            var s: Float = 0
            for r in routes { s += r.weight }
            if s > 0 { for i in routes.indices { routes[i].weight /= s } }
        }
        return routes
    }

    public func expertWeights(layer: Int, expert: Int) throws -> (gate: Tensor, up: Tensor, down: Tensor) {
        guard layer >= 0 && layer < config.layers else {
            throw MoEError.badInput("expertWeights: layer \(layer) out of range 0..<\(config.layers)")
        }
        let l = layerWeights[layer]
        guard expert >= 0 && expert < l.experts.count else {
            throw MoEError.badInput("expertWeights: expert \(expert) out of range 0..<\(l.experts.count) in layer \(layer)")
        }
        let w = l.experts[expert]
        return (w.gate.tensor, w.up.tensor, w.down.tensor)
    }

    // MARK: - Forward

    /// Runs `tokens` at positions cache.length..<cache.length+T and appends them to the cache.
    /// - Returns: logits [vocab] of the last position, or [T, vocab] when `allPositions`.
    /// - Throws: `MoEError.badInput` for an empty input, an id outside the vocabulary or a context
    ///   longer than `max_position_embeddings`; whatever the executor throws.
    public func forward(_ tokens: [Int], cache: MoEKVCache, allPositions: Bool = false) throws -> Tensor {
        let c = config
        let t = tokens.count
        guard t > 0 else { throw MoEError.badInput("forward: no tokens") }
        if let bad = tokens.first(where: { $0 < 0 || $0 >= c.vocabSize }) {
            throw MoEError.badInput("token id \(bad) is outside the vocabulary (0..<\(c.vocabSize))")
        }
        guard cache.length + t <= c.maxPositions else {
            throw MoEError.badInput("context of \(cache.length + t) tokens (\(cache.length) cached + \(t) new) exceeds max_position_embeddings \(c.maxPositions)")
        }
        let h = c.hiddenSize
        let x = bx.ensure(t * h)
        for (i, id) in tokens.enumerated() {
            HalfConversion.toFloat(embed.raw + id * h * embed.dtype.size, dtype: embed.dtype, count: h, into: x + i * h)
        }
        cache.reserve(cache.length + t)
        for l in 0..<c.layers { try layer(l, x, t, cache) }
        cache.advance(t)
        let rows = allPositions ? t : 1
        let first = allPositions ? 0 : t - 1
        let xn = bn.ensure(rows * h)
        for i in 0..<rows { rmsNorm(x + (first + i) * h, finalNorm, xn + i * h, h) }
        let out = Tensor(zeros: allPositions ? [t, c.vocabSize] : [c.vocabSize], zeroed: false)
        lmHead.apply(xn, out.pointer, count: rows)
        return out
    }

    func rmsNorm(_ x: UnsafePointer<Float>, _ w: [Float], _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        let ms = VectorOps.dot(x, x, count: n) / Float(n)
        let r = 1 / (ms + config.rmsNormEps).squareRoot()
        w.withUnsafeBufferPointer { wp in
            for i in 0..<n { y[i] = wp[i] * (x[i] * r) }
        }
    }

    func layer(_ l: Int, _ x: UnsafeMutablePointer<Float>, _ t: Int, _ cache: MoEKVCache) throws {
        let c = config, w = layerWeights[l]
        let h = c.hiddenSize, hd = c.headDim, qd = c.heads * hd, kvd = c.kvHeads * hd
        let xn = bn.ensure(t * h), q = bq.ensure(t * qd), k = bk.ensure(t * kvd), v = bv.ensure(t * kvd)
        for i in 0..<t { rmsNorm(x + i * h, w.inputNorm, xn + i * h, h) }
        w.qBias.withOptionalPointer { qb in w.q.apply(xn, q, count: t, bias: qb) }
        w.kBias.withOptionalPointer { kb in w.k.apply(xn, k, count: t, bias: kb) }
        w.vBias.withOptionalPointer { vb in w.v.apply(xn, v, count: t, bias: vb) }
        if let qn = w.qNorm, let kn = w.kNorm {
            if c.qkNorm == .perHead {
                for i in 0..<(t * c.heads) { rmsNorm(q + i * hd, qn, q + i * hd, hd) }
                for i in 0..<(t * c.kvHeads) { rmsNorm(k + i * hd, kn, k + i * hd, hd) }
            } else {
                for i in 0..<t { rmsNorm(q + i * qd, qn, q + i * qd, qd); rmsNorm(k + i * kvd, kn, k + i * kvd, kvd) }
            }
        }
        if let clip = c.clipQKV {
            for i in 0..<(t * qd) { q[i] = Swift.min(Swift.max(q[i], -clip), clip) }
            for i in 0..<(t * kvd) { k[i] = Swift.min(Swift.max(k[i], -clip), clip); v[i] = Swift.min(Swift.max(v[i], -clip), clip) }
        }
        let start = cache.length
        let half = hd / 2
        invFreq.withUnsafeBufferPointer { inv in
            for i in 0..<t {
                let pos = Float(start + i)
                for j in 0..<half {
                    let a = pos * inv[j]
                    let cs = cosf(a), sn = sinf(a)
                    for hh in 0..<c.heads {
                        let p = q + i * qd + hh * hd
                        let x0 = p[j], x1 = p[j + half]
                        p[j] = x0 * cs - x1 * sn
                        p[j + half] = x1 * cs + x0 * sn
                    }
                    for hh in 0..<c.kvHeads {
                        let p = k + i * kvd + hh * hd
                        let x0 = p[j], x1 = p[j + half]
                        p[j] = x0 * cs - x1 * sn
                        p[j + half] = x1 * cs + x0 * sn
                    }
                }
            }
        }
        // Append to the cache ([kvHeads, capacity, hd]).
        let kc = cache.keys[l], vc = cache.values[l], cap = cache.capacity
        for i in 0..<t {
            for hh in 0..<c.kvHeads {
                (kc + hh * cap * hd + (start + i) * hd).update(from: k + i * kvd + hh * hd, count: hd)
                (vc + hh * cap * hd + (start + i) * hd).update(from: v + i * kvd + hh * hd, count: hd)
            }
        }
        // Causal attention over positions 0...start+i.
        let attn = ba.ensure(t * qd)
        let scores = bs.ensure(start + t)
        let scale = 1 / Float(hd).squareRoot()
        let group = c.heads / c.kvHeads
        for i in 0..<t {
            let n = start + i + 1
            for hh in 0..<c.heads {
                let kvh = hh / group
                let qp = q + i * qd + hh * hd
                let kbase = kc + kvh * cap * hd, vbase = vc + kvh * cap * hd
                for j in 0..<n { scores[j] = VectorOps.dot(qp, kbase + j * hd, count: hd) * scale }
                VectorOps.softmax(scores, into: scores, count: n)
                let op = attn + i * qd + hh * hd
                op.update(repeating: 0, count: hd)
                for j in 0..<n { VectorOps.axpy(scores[j], vbase + j * hd, op, count: hd) }
            }
        }
        w.o.apply(attn, x, count: t, accumulate: true)   // residual
        // Feed-forward.
        for i in 0..<t { rmsNorm(x + i * h, w.postNorm, xn + i * h, h) }
        if let dense = w.dense {
            try mlp(dense, xn, x, t, accumulate: true)
            return
        }
        let e = c.experts
        let logits = bt.ensure(t * e)
        w.router!.apply(xn, logits, count: t)
        let probs = bl.ensure(e)
        var routes: [[ExpertRoute]] = []
        routes.reserveCapacity(t)
        for i in 0..<t { routes.append(routeRow(logits + i * e, probs)) }
        routeObserver?(l, routes)
        let xin = Tensor(storage: Storage(borrowing: UnsafeMutableRawPointer(xn), count: t * h, dtype: .float32, owner: bn),
                         shape: [t, h])
        let y = try executor.runExperts(layer: l, x: xin, routes: routes)
        guard y.shape == [t, h] else {
            throw MoEError.badInput("executor returned shape \(y.shape) for layer \(l), expected [\(t), \(h)]")
        }
        let yc = y.contiguousF32()
        VectorOps.add(x, yc.pointer, into: x, count: t * h)
        if let shared = w.shared, let sg = w.sharedGate {
            // x += sigmoid(w_g · xn) * shared(xn)
            let so = bt.ensure(t * h + t)
            try mlp(shared, xn, so, t, accumulate: false)
            let gates = so + t * h
            sg.apply(xn, gates, count: t)
            for i in 0..<t {
                let g = 1 / (1 + expf(-gates[i]))
                VectorOps.axpy(g, so + i * h, x + i * h, count: h)
            }
        }
    }

    /// y (+)= down(silu(gate x) ⊙ up x) for t rows.
    func mlp(_ m: MoEMLPWeights, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ t: Int, accumulate: Bool) throws {
        let width = m.width
        let g = bg.ensure(t * width), u = bu.ensure(t * width)
        m.gate.apply(x, g, count: t)
        m.up.apply(x, u, count: t)
        VectorOps.silu(g, into: g, count: t * width)
        VectorOps.mul(g, u, into: g, count: t * width)
        m.down.apply(g, y, count: t, accumulate: accumulate)
    }
}

extension Optional where Wrapped == [Float] {
    /// Calls `body` with the array's base address, or nil.
    @inline(__always)
    func withOptionalPointer<R>(_ body: (UnsafePointer<Float>?) throws -> R) rethrows -> R {
        switch self {
        case .none: return try body(nil)
        case let .some(a): return try a.withUnsafeBufferPointer { try body($0.baseAddress) }
        }
    }
}
