import Foundation
import FrugalCore
import FrugalNN

/// A weight matrix [rows, cols] as stored in the checkpoint (f32, f16 or bf16), borrowed from the
/// memory-mapped file: never copied or widened.
public struct MoEMatrix: @unchecked Sendable {
    // @unchecked Sendable: `raw` points into a read-only mapping kept alive by `tensor`'s storage owner.
    /// The weights as a tensor view (stored dtype; shares the mapping).
    public let tensor: Tensor
    /// First byte of row 0 (any alignment).
    public let raw: UnsafeRawPointer
    public let dtype: DType
    public let rows: Int
    public let cols: Int

    public init(tensor: Tensor) {
        precondition(tensor.rank == 2 && tensor.isContiguous, "MoEMatrix needs a contiguous 2-D tensor, got \(tensor.shape)")
        self.tensor = tensor
        raw = UnsafeRawPointer(tensor.storage.raw + tensor.offset * tensor.dtype.size)
        dtype = tensor.dtype
        rows = tensor.shape[0]
        cols = tensor.shape[1]
    }

    /// Y[t] = W · X[t] (+ bias) for t < count; X rows `cols` apart, Y rows `rows` apart.
    @inline(__always)
    func apply(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int, bias: UnsafePointer<Float>? = nil,
               accumulate: Bool = false) {
        if count == 1 {
            GEMV.gemv(out: rows, in: cols, w: raw, dtype: dtype, x: x, bias: bias, y: y, accumulate: accumulate)
        } else {
            GEMV.gemv(batch: count, out: rows, in: cols, w: raw, dtype: dtype, x: x, ldx: cols, bias: bias, y: y,
                      ldy: rows, accumulate: accumulate)
        }
    }
}

/// Reads the tensors of an MoE checkpoint by name with shape and dtype checks that name the tensor.
struct MoETensorReader {
    let checkpoint: SafetensorsCheckpoint
    let source: String

    func matrix(_ name: String, _ rows: Int, _ cols: Int) throws -> MoEMatrix {
        let info = try lookup(name)
        guard info.shape == [rows, cols] else {
            throw MoEError.badCheckpoint("\(source): tensor '\(name)' has shape \(info.shape), expected [\(rows), \(cols)]")
        }
        guard let dt = info.dtype else {
            throw MoEError.badCheckpoint("\(source): tensor '\(name)' has dtype \(info.dtypeString); only F32, F16, BF16 are supported")
        }
        let bytes = try checkpoint.rawBytes(name)
        guard bytes.count == rows * cols * dt.size, let base = bytes.baseAddress else {
            throw MoEError.badCheckpoint("\(source): tensor '\(name)' holds \(bytes.count) bytes, expected \(rows * cols * dt.size)")
        }
        let storage = Storage(borrowing: UnsafeMutableRawPointer(mutating: base), count: rows * cols, dtype: dt, owner: checkpoint)
        return MoEMatrix(tensor: Tensor(storage: storage, shape: [rows, cols]))
    }

    func vector(_ name: String, _ count: Int) throws -> [Float] {
        let info = try lookup(name)
        guard info.shape == [count] else {
            throw MoEError.badCheckpoint("\(source): tensor '\(name)' has shape \(info.shape), expected [\(count)]")
        }
        guard info.dtype != nil else {
            throw MoEError.badCheckpoint("\(source): tensor '\(name)' has dtype \(info.dtypeString); only F32, F16, BF16 are supported")
        }
        return try checkpoint.floats(name)
    }

    func lookup(_ name: String) throws -> SafetensorsTensorInfo {
        guard checkpoint.contains(name) else {
            throw MoEError.badCheckpoint("\(source): missing tensor '\(name)'")
        }
        return try checkpoint.info(name)
    }
}

/// A SwiGLU MLP's weights: down · (silu(gate · x) ⊙ up · x).
struct MoEMLPWeights {
    let gate: MoEMatrix, up: MoEMatrix, down: MoEMatrix
    var width: Int { gate.rows }
}

/// One decoder layer's resident weights.
final class MoELayerWeights {
    let inputNorm: [Float], postNorm: [Float]
    let q: MoEMatrix, k: MoEMatrix, v: MoEMatrix, o: MoEMatrix
    let qBias: [Float]?, kBias: [Float]?, vBias: [Float]?
    let qNorm: [Float]?, kNorm: [Float]?
    /// Sparse layers: router [experts, hidden] and experts; dense layers: `dense`.
    let router: MoEMatrix?
    let experts: [MoEMLPWeights]
    let shared: MoEMLPWeights?
    let sharedGate: MoEMatrix?
    let dense: MoEMLPWeights?

    init(layer l: Int, config c: MoEModelConfig, reader r: MoETensorReader) throws {
        let p = "model.layers.\(l)."
        let h = c.hiddenSize, qd = c.heads * c.headDim, kvd = c.kvHeads * c.headDim
        inputNorm = try r.vector(p + "input_layernorm.weight", h)
        postNorm = try r.vector(p + "post_attention_layernorm.weight", h)
        q = try r.matrix(p + "self_attn.q_proj.weight", qd, h)
        k = try r.matrix(p + "self_attn.k_proj.weight", kvd, h)
        v = try r.matrix(p + "self_attn.v_proj.weight", kvd, h)
        o = try r.matrix(p + "self_attn.o_proj.weight", h, qd)
        if c.qkvBias {
            qBias = try r.vector(p + "self_attn.q_proj.bias", qd)
            kBias = try r.vector(p + "self_attn.k_proj.bias", kvd)
            vBias = try r.vector(p + "self_attn.v_proj.bias", kvd)
        } else {
            qBias = nil; kBias = nil; vBias = nil
        }
        switch c.qkNorm {
        case .none: qNorm = nil; kNorm = nil
        case .perHead:
            qNorm = try r.vector(p + "self_attn.q_norm.weight", c.headDim)
            kNorm = try r.vector(p + "self_attn.k_norm.weight", c.headDim)
        case .full:
            qNorm = try r.vector(p + "self_attn.q_norm.weight", qd)
            kNorm = try r.vector(p + "self_attn.k_norm.weight", kvd)
        }
        if c.sparseLayers[l] {
            router = try r.matrix(c.routerName(layer: l), c.experts, h)
            var ex: [MoEMLPWeights] = []
            ex.reserveCapacity(c.experts)
            for e in 0..<c.experts {
                let n = c.expertNames(layer: l, expert: e)
                let i = c.expertIntermediate
                ex.append(MoEMLPWeights(gate: try r.matrix(n.gate, i, h), up: try r.matrix(n.up, i, h), down: try r.matrix(n.down, h, i)))
            }
            experts = ex
            if c.sharedIntermediate > 0 {
                let s = c.sharedIntermediate, sp = p + "mlp.shared_expert."
                shared = MoEMLPWeights(gate: try r.matrix(sp + "gate_proj.weight", s, h), up: try r.matrix(sp + "up_proj.weight", s, h),
                                       down: try r.matrix(sp + "down_proj.weight", h, s))
                sharedGate = try r.matrix(p + "mlp.shared_expert_gate.weight", 1, h)
            } else {
                shared = nil; sharedGate = nil
            }
            dense = nil
        } else {
            router = nil; experts = []; shared = nil; sharedGate = nil
            let i = c.denseIntermediate, dp = p + "mlp."
            dense = MoEMLPWeights(gate: try r.matrix(dp + "gate_proj.weight", i, h), up: try r.matrix(dp + "up_proj.weight", i, h),
                                  down: try r.matrix(dp + "down_proj.weight", h, i))
        }
    }
}

/// A growable float32 scratch buffer (64-byte aligned), reused across forwards.
final class MoEBuffer {
    private(set) var pointer: UnsafeMutablePointer<Float>
    private(set) var capacity: Int
    init(_ n: Int = 64) {
        capacity = max(n, 16)
        pointer = UnsafeMutableRawPointer.allocate(byteCount: capacity * 4, alignment: 64).bindMemory(to: Float.self, capacity: capacity)
    }
    /// At least `n` floats (contents not kept when it grows).
    @discardableResult func ensure(_ n: Int) -> UnsafeMutablePointer<Float> {
        if n > capacity {
            pointer.deallocate()
            capacity = max(n, capacity * 2)
            pointer = UnsafeMutableRawPointer.allocate(byteCount: capacity * 4, alignment: 64).bindMemory(to: Float.self, capacity: capacity)
        }
        return pointer
    }
    deinit { pointer.deallocate() }
}
