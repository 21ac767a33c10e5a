import FrugalCore
import FrugalModels
@testable import FrugalMoE

/// Deterministic pseudo-random floats in [-scale, scale).
struct TestRNG {
    var state: UInt64
    init(_ seed: UInt64) { state = seed &* 0x9E3779B97F4A7C15 | 1 }
    mutating func next() -> Float {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        return Float(state >> 40) / Float(1 << 24) * 2 - 1
    }
    mutating func array(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in next() * scale } }
}

/// A tensor of `dtype` holding `values` (rounded to the dtype).
func makeTensor(_ values: [Float], shape: [Int], dtype: DType) -> Tensor {
    let st = Storage(count: values.count, dtype: dtype, zeroed: false)
    values.withUnsafeBufferPointer { b in
        if dtype == .float32 { st.raw.copyMemory(from: b.baseAddress!, byteCount: 4 * b.count) }
        else { HalfConversion.fromFloat(b.baseAddress!, count: b.count, dtype: dtype, into: st.raw) }
    }
    return Tensor(storage: st, shape: shape)
}

/// Σ_e w_e · down·(silu(gate·x) ⊙ up·x) in Double, the reference for expert outputs.
func referenceExpert(gate: Tensor, up: Tensor, down: Tensor, x: [Float]) -> [Double] {
    let I = gate.shape[0], h = gate.shape[1]
    let g = gate.array, u = up.array, d = down.array
    var a = [Double](repeating: 0, count: I)
    for i in 0..<I {
        var sg = 0.0, su = 0.0
        for j in 0..<h { sg += Double(g[i * h + j]) * Double(x[j]); su += Double(u[i * h + j]) * Double(x[j]) }
        a[i] = sg / (1 + Foundation_exp(-sg)) * su
    }
    var y = [Double](repeating: 0, count: h)
    for j in 0..<h { for i in 0..<I { y[j] += Double(d[j * I + i]) * a[i] } }
    return y
}

@inline(__always) func Foundation_exp(_ x: Double) -> Double { Double(VectorOps.exp(Float(x))) }

/// A synthetic MoE model: random experts of one dtype, a random router, softmax top-k renormalised.
final class SyntheticSource: MoEExpertSource {
    let moeShape: MoEShape
    let dtype: DType
    var weights: [[(gate: Tensor, up: Tensor, down: Tensor)]] = []
    var routers: [Tensor] = []  // [E, h] f32
    init(shape: MoEShape, dtype: DType, seed: UInt64 = 1) {
        moeShape = shape; self.dtype = dtype
        var rng = TestRNG(seed)
        let I = shape.intermediate, h = shape.hidden
        for _ in 0..<shape.layers {
            var layer: [(gate: Tensor, up: Tensor, down: Tensor)] = []
            for _ in 0..<shape.experts {
                layer.append((makeTensor(rng.array(I * h, scale: 0.5), shape: [I, h], dtype: dtype),
                              makeTensor(rng.array(I * h, scale: 0.5), shape: [I, h], dtype: dtype),
                              makeTensor(rng.array(h * I, scale: 0.5), shape: [h, I], dtype: dtype)))
            }
            weights.append(layer)
            routers.append(Tensor(rng.array(shape.experts * h), shape: [shape.experts, h]))
        }
    }
    func routerLogits(layer: Int, _ x: Tensor) -> Tensor {
        let T = x.shape[0], h = moeShape.hidden, E = moeShape.experts
        let xs = x.array, r = routers[layer].array
        var out = [Float](repeating: 0, count: T * E)
        for t in 0..<T { for e in 0..<E { var s: Float = 0; for j in 0..<h { s += xs[t * h + j] * r[e * h + j] }; out[t * E + e] = s } }
        return Tensor(out, shape: [T, E])
    }
    func route(logits: Tensor) -> [[ExpertRoute]] {
        let T = logits.shape[0], E = logits.shape[1], k = moeShape.topK
        let l = logits.array
        return (0..<T).map { t in
            let row = Array(l[t * E..<(t + 1) * E])
            let order = (0..<E).sorted { row[$0] > row[$1] || (row[$0] == row[$1] && $0 < $1) }.prefix(k)
            let m = row.max()!
            let ex = order.map { VectorOps.exp(row[$0] - m) }
            let s = ex.reduce(0, +)
            return zip(order, ex).map { ExpertRoute(expert: $0.0, weight: $0.1 / s) }
        }
    }
    func expertWeights(layer: Int, expert: Int) throws -> (gate: Tensor, up: Tensor, down: Tensor) { weights[layer][expert] }
}
