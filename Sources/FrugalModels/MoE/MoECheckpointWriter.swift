import Foundation
import FrugalCore
import FrugalNN

/// Writes MoE checkpoints in the Hugging Face layouts (config.json + safetensors, sharded when
/// larger than the shard size), atomically file by file.
public enum MoECheckpointWriter {
    /// All tensor names and shapes of `config`'s checkpoint, in the order transformers lists them.
    public static func tensorShapes(_ c: MoEModelConfig) -> [(name: String, shape: [Int])] {
        let h = c.hiddenSize, qd = c.heads * c.headDim, kvd = c.kvHeads * c.headDim
        var out: [(String, [Int])] = [("model.embed_tokens.weight", [c.vocabSize, h])]
        for l in 0..<c.layers {
            let p = "model.layers.\(l)."
            out.append((p + "input_layernorm.weight", [h]))
            out.append((p + "self_attn.q_proj.weight", [qd, h]))
            out.append((p + "self_attn.k_proj.weight", [kvd, h]))
            out.append((p + "self_attn.v_proj.weight", [kvd, h]))
            if c.qkvBias {
                out.append((p + "self_attn.q_proj.bias", [qd]))
                out.append((p + "self_attn.k_proj.bias", [kvd]))
                out.append((p + "self_attn.v_proj.bias", [kvd]))
            }
            out.append((p + "self_attn.o_proj.weight", [h, qd]))
            switch c.qkNorm {
            case .none: break
            case .perHead:
                out.append((p + "self_attn.q_norm.weight", [c.headDim])); out.append((p + "self_attn.k_norm.weight", [c.headDim]))
            case .full:
                out.append((p + "self_attn.q_norm.weight", [qd])); out.append((p + "self_attn.k_norm.weight", [kvd]))
            }
            out.append((p + "post_attention_layernorm.weight", [h]))
            if c.sparseLayers[l] {
                out.append((c.routerName(layer: l), [c.experts, h]))
                for e in 0..<c.experts {
                    let n = c.expertNames(layer: l, expert: e), i = c.expertIntermediate
                    out.append((n.gate, [i, h])); out.append((n.up, [i, h])); out.append((n.down, [h, i]))
                }
                if c.sharedIntermediate > 0 {
                    let s = c.sharedIntermediate, sp = p + "mlp.shared_expert."
                    out.append((sp + "gate_proj.weight", [s, h])); out.append((sp + "up_proj.weight", [s, h]))
                    out.append((sp + "down_proj.weight", [h, s])); out.append((p + "mlp.shared_expert_gate.weight", [1, h]))
                }
            } else {
                let i = c.denseIntermediate
                out.append((p + "mlp.gate_proj.weight", [i, h])); out.append((p + "mlp.up_proj.weight", [i, h]))
                out.append((p + "mlp.down_proj.weight", [h, i]))
            }
        }
        out.append(("model.norm.weight", [h]))
        if !c.tieWordEmbeddings { out.append(("lm_head.weight", [c.vocabSize, h])) }
        return out
    }

    /// Writes `config.json` (with `"frugal_tokenizer": "byte"` when `byteTokenizer`) into `directory`.
    public static func writeConfig(_ c: MoEModelConfig, dtype: DType, to directory: URL, byteTokenizer: Bool) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var c = c
        // The byte-level tokenizer's <eos> is id 256.
        if byteTokenizer && c.eosTokenIDs.isEmpty && c.vocabSize > 256 { c.eosTokenIDs = [256] }
        var hf = c.hfConfig
        let dt = dtype == .float32 ? "float32" : dtype == .float16 ? "float16" : "bfloat16"
        switch hf {
        case var .mixtral(m): m.torchDtype = dt; hf = .mixtral(m)
        case var .qwenMoE(q): q.torchDtype = dt; hf = .qwenMoE(q)
        default: break
        }
        try hf.write(to: directory.appendingPathComponent("config.json"))
        if byteTokenizer { try MoETokenizer.markByteLevel(directory: directory) }
    }

    /// Writes named float tensors (values by `tensors[name]`) in `dtype` as `model.safetensors`, or as
    /// shards of at most `shardBytes` with an index.
    public static func writeWeights(_ c: MoEModelConfig, dtype: DType, shardBytes: Int?, to directory: URL,
                                    values: (String, [Int]) throws -> [Float]) throws {
        var entries: [SafetensorsWriter.Tensor] = []
        for (name, shape) in tensorShapes(c) {
            let v = try values(name, shape)
            guard v.count == Tensor.product(shape) else {
                throw MoEError.badInput("tensor '\(name)': \(v.count) values for shape \(shape)")
            }
            entries.append(.init(name: name, shape: shape, floats: v, storedAs: dtype))
        }
        let meta = ["format": "pt"]
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        _ = try SafetensorsWriter.writeSharded(entries, metadata: meta, to: directory, maxShardBytes: shardBytes ?? Int.max / 2)
    }

    /// A random-weight checkpoint: matrices N(0, std²), norm weights 1, biases N(0, std²).
    public static func createRandom(_ c: MoEModelConfig, dtype: DType, shardBytes: Int?, seed: UInt64, std: Float = 0.02,
                                    to directory: URL) throws {
        var rng = RNG(seed: seed)
        try writeConfig(c, dtype: dtype, to: directory, byteTokenizer: true)
        try writeWeights(c, dtype: dtype, shardBytes: shardBytes, to: directory) { name, shape in
            let n = Tensor.product(shape)
            if name.hasSuffix("norm.weight") { return [Float](repeating: 1, count: n) }
            var v = [Float](repeating: 0, count: n)
            for i in 0..<n { v[i] = std * rng.normal() }
            return v
        }
    }
}
