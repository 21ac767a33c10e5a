import FrugalCore

/// MoEpic's expert split: an expert's SwiGLU FFN cut along its intermediate dimension into a top
/// and a bottom segment, so that the top can stay cached (or compute) while the bottom loads.
///
/// With θ the split ratio and s = round(θ·I) the split row:
///
///     top    = rows [0, s) of W1 (gate) and W3 (up), columns [0, s) of W2 (down)
///     bottom = rows [s, I) of W1 and W3,            columns [s, I) of W2
///     y = W2[:, :s]·(silu(W1[:s]x) ⊙ W3[:s]x) + W2[:, s:]·(silu(W1[s:]x) ⊙ W3[s:]x)
///
/// which is exactly `W2·(silu(W1 x) ⊙ W3 x)` because each intermediate unit i contributes
/// `W2[:, i]·silu(W1[i]·x)·(W3[i]·x)` independently of the others. θ = 0 keeps nothing on top
/// (prefetch only), θ = 1 is whole-expert caching.
///
/// Packed layout (the offload store's and the fast tier's): one *row block* per intermediate unit
/// i, `[gate row i | up row i | down column i]`, 3·hidden elements of the expert's dtype. Any split
/// [0, s) / [s, I) is then two contiguous byte ranges: `[0, s·rowBytes)` and `[s·rowBytes, I·rowBytes)`.
public struct ExpertSplit: Sendable, Equatable {
    /// Intermediate size I.
    public let intermediate: Int
    /// The split row s: the top segment holds intermediate units [0, s).
    public let splitRow: Int

    /// The split of an expert with `intermediate` units at ratio `theta` (clamped to [0, 1]).
    public init(intermediate: Int, theta: Double) {
        precondition(intermediate >= 0, "ExpertSplit: negative intermediate size \(intermediate)")
        self.intermediate = intermediate
        let t = theta.isNaN ? 0 : min(1, max(0, theta))
        splitRow = min(intermediate, max(0, Int((t * Double(intermediate)).rounded())))
    }

    /// The split at an explicit row s in [0, I].
    public init(intermediate: Int, splitRow: Int) {
        precondition(splitRow >= 0 && splitRow <= intermediate, "ExpertSplit: split row \(splitRow) outside [0, \(intermediate)]")
        self.intermediate = intermediate
        self.splitRow = splitRow
    }

    /// Intermediate units of the top segment, [0, s).
    public var top: Range<Int> { 0..<splitRow }
    /// Intermediate units of the bottom segment, [s, I).
    public var bottom: Range<Int> { splitRow..<intermediate }
    /// The split ratio actually used, s / I.
    public var theta: Double { intermediate == 0 ? 0 : Double(splitRow) / Double(intermediate) }

    /// Bytes of one row block (gate row, up row, down column) for `hidden` and `dtype`.
    public static func rowBytes(hidden: Int, dtype: DType) -> Int { 3 * hidden * dtype.size }

    /// Byte range of `rows` inside a packed expert.
    public static func byteRange(_ rows: Range<Int>, hidden: Int, dtype: DType) -> Range<Int> {
        let rb = rowBytes(hidden: hidden, dtype: dtype)
        return rows.lowerBound * rb..<rows.upperBound * rb
    }

    /// Packs gate [I, h], up [I, h], down [h, I] (one dtype, any strides) into row blocks at `dst`
    /// (`I · rowBytes` bytes), keeping the dtype: block i = gate[i, :], up[i, :], down[:, i].
    public static func pack(gate: Tensor, up: Tensor, down: Tensor, into dst: UnsafeMutableRawPointer) throws {
        let (inter, hidden, dtype) = try check(gate: gate, up: up, down: down)
        let e = dtype.size, rb = rowBytes(hidden: hidden, dtype: dtype)
        // Raw element copies along each tensor's own strides (the dtype is kept, so no
        // contiguous() which would widen to float32).
        func copyRow(_ t: Tensor, fixed: Int, fixedAxis: Int, to out: UnsafeMutableRawPointer) {
            let src = UnsafeRawPointer(t.storage.raw)
            let base = t.offset + fixed * t.strides[fixedAxis]
            let step = t.strides[1 - fixedAxis]
            if e == 4 {
                for j in 0..<hidden { out.storeBytes(of: src.load(fromByteOffset: (base + j * step) * 4, as: UInt32.self), toByteOffset: j * 4, as: UInt32.self) }
            } else {
                for j in 0..<hidden { out.storeBytes(of: src.load(fromByteOffset: (base + j * step) * 2, as: UInt16.self), toByteOffset: j * 2, as: UInt16.self) }
            }
        }
        for i in 0..<inter {
            let row = dst + i * rb
            copyRow(gate, fixed: i, fixedAxis: 0, to: row)
            copyRow(up, fixed: i, fixedAxis: 0, to: row + hidden * e)
            copyRow(down, fixed: i, fixedAxis: 1, to: row + 2 * hidden * e)  // down[:, i]
        }
    }

    /// Packed bytes of an expert as an array (for tests and small experts).
    public static func pack(gate: Tensor, up: Tensor, down: Tensor) throws -> [UInt8] {
        let (inter, hidden, dtype) = try check(gate: gate, up: up, down: down)
        var out = [UInt8](repeating: 0, count: inter * rowBytes(hidden: hidden, dtype: dtype))
        try out.withUnsafeMutableBytes { b in
            if let p = b.baseAddress { try pack(gate: gate, up: up, down: down, into: p) }
        }
        return out
    }

    /// Validates expert weight shapes and dtypes; returns (I, h, dtype).
    static func check(gate: Tensor, up: Tensor, down: Tensor) throws -> (Int, Int, DType) {
        guard gate.rank == 2, up.rank == 2, down.rank == 2, gate.shape == up.shape,
              down.shape == [gate.shape[1], gate.shape[0]] else {
            throw OffloadError.badShape("expert weights gate \(gate.shape), up \(up.shape), down \(down.shape): want gate = up = [I, h], down = [h, I]")
        }
        guard gate.dtype == up.dtype, gate.dtype == down.dtype else {
            throw OffloadError.badShape("expert weights mix dtypes: gate \(gate.dtype), up \(up.dtype), down \(down.dtype)")
        }
        return (gate.shape[0], gate.shape[1], gate.dtype)
    }
}

/// Errors of the offloading engine (FrugalModels.MoEError covers the model), each saying what was wrong and where.
public enum OffloadError: Error, CustomStringConvertible, Equatable {
    case badShape(String)
    case badStore(file: String, offset: Int, reason: String)
    case budget(String)
    case badArgument(String)
    case io(String)

    public var description: String {
        switch self {
        case .badShape(let s): return "MoE: \(s)"
        case .badStore(let f, let o, let r): return "offload store \(f) at byte offset \(o): \(r)"
        case .budget(let s): return "memory budget: \(s)"
        case .badArgument(let s): return "MoE: \(s)"
        case .io(let s): return "MoE I/O: \(s)"
        }
    }
}

/// The fused SwiGLU kernel on packed row blocks: for each intermediate unit i of a segment,
/// a = silu(gate_i · x) · (up_i · x), then y += w · a · down_i. Streams each weight byte once
/// (batch-1 is memory-bound); f16/bf16 are widened in registers.
public enum ExpertKernel {
    typealias V = SIMD8<Float>

    /// y[t] += weights[t] · Σ_{i in segment} down_i · silu(gate_i·x[t]) · (up_i·x[t]) for t in 0..<tokens.
    ///
    /// - Parameters:
    ///   - rows: packed row blocks (`rowCount · 3·hidden` elements of `dtype`, any alignment).
    ///   - x: [tokens, hidden] floats. - y: [tokens, hidden] floats, accumulated into.
    ///   - weights: `tokens` combine weights.
    public static func accumulate(rows: UnsafeRawPointer, rowCount: Int, hidden: Int, dtype: DType,
                                  x: UnsafePointer<Float>, tokens: Int, weights: UnsafePointer<Float>,
                                  y: UnsafeMutablePointer<Float>) {
        switch dtype {
        case .float32: run(rows, rowCount, hidden, 4, x, tokens, weights, y) { $0.loadUnaligned(as: V.self) }
        case .float16: run(rows, rowCount, hidden, 2, x, tokens, weights, y) { V($0.loadUnaligned(as: SIMD8<Float16>.self)) }
        case .bfloat16:
            run(rows, rowCount, hidden, 2, x, tokens, weights, y) {
                unsafeBitCast(SIMD8<UInt32>(truncatingIfNeeded: $0.loadUnaligned(as: SIMD8<UInt16>.self)) &<< 16, to: V.self)
            }
        }
    }

    @inline(__always)
    static func scalar(_ p: UnsafeRawPointer, _ i: Int, _ elem: Int, _ load: (UnsafeRawPointer) -> V) -> Float {
        if elem == 4 { return p.loadUnaligned(fromByteOffset: 4 * i, as: Float.self) }
        var tmp = SIMD8<UInt16>()
        tmp[0] = p.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)
        return withUnsafeBytes(of: &tmp) { load($0.baseAddress!)[0] }
    }

    @inline(__always)
    static func run(_ rows: UnsafeRawPointer, _ rowCount: Int, _ h: Int, _ elem: Int, _ x: UnsafePointer<Float>,
                    _ tokens: Int, _ weights: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                    _ load: (UnsafeRawPointer) -> V) {
        let rb = 3 * h * elem, h8 = h & ~7
        let xr = UnsafeRawPointer(x)
        for r in 0..<rowCount {
            let g = rows + r * rb, u = g + h * elem, d = u + h * elem
            for t in 0..<tokens {
                let xt = xr + t * h * 4
                var ag = V(), au = V()
                var i = 0
                while i < h8 {
                    let xv = xt.loadUnaligned(fromByteOffset: 4 * i, as: V.self)
                    ag.addProduct(load(g + i * elem), xv)
                    au.addProduct(load(u + i * elem), xv)
                    i += 8
                }
                var sg = ag.sum(), su = au.sum()
                while i < h {
                    let xi = x[t * h + i]
                    sg += scalar(g, i, elem, load) * xi
                    su += scalar(u, i, elem, load) * xi
                    i += 1
                }
                let a = weights[t] * (sg / (1 + VectorOps.exp(-sg))) * su
                if a == 0 { continue }
                let yt = y + t * h
                let av = V(repeating: a)
                i = 0
                while i < h8 {
                    let yp = UnsafeMutableRawPointer(yt + i)
                    var yv = yp.loadUnaligned(as: V.self)
                    yv.addProduct(av, load(d + i * elem))
                    yp.storeBytes(of: yv, as: V.self)
                    i += 8
                }
                while i < h { yt[i] += a * scalar(d, i, elem, load); i += 1 }
            }
        }
    }
}
