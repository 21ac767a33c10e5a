import Foundation
import FrugalNN

/// The checkpoint layouts the MoE model reads and writes.
public enum MoELayout: String, Sendable, CaseIterable, Codable {
    /// `MixtralForCausalLM`: `model.layers.L.block_sparse_moe.{gate, experts.E.w1/w2/w3}`; top-k
    /// weights always renormalised.
    case mixtral
    /// `Qwen2MoeForCausalLM`: `model.layers.L.mlp.{gate, experts.E.gate_proj/up_proj/down_proj}`, q/k/v
    /// biases, a shared expert with a sigmoid gate.
    case qwen2MoE = "qwen2-moe"
    /// `Qwen3MoeForCausalLM`: Qwen layout, per-head q_norm/k_norm, no shared expert.
    case qwen3MoE = "qwen3-moe"
    /// `OlmoeForCausalLM`: Qwen layout, q_norm/k_norm over the whole projection, optional clip_qkv.
    case olmoe

    /// The Hugging Face `model_type`.
    public var modelType: String {
        switch self {
        case .mixtral: return "mixtral"
        case .qwen2MoE: return "qwen2_moe"
        case .qwen3MoE: return "qwen3_moe"
        case .olmoe: return "olmoe"
        }
    }
}

/// How q and k are normalised before RoPE.
public enum MoEQKNorm: Sendable, Equatable {
    case none
    /// RMSNorm over each head (`head_dim` weights): Qwen3-MoE.
    case perHead
    /// RMSNorm over the whole projection (`heads * head_dim` weights): OLMoE.
    case full
}

/// Everything the MoE decoder needs from a `config.json`, in one place for all layouts.
public struct MoEModelConfig: Sendable, Equatable {
    public var layout: MoELayout
    public var vocabSize: Int
    public var hiddenSize: Int
    public var layers: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var experts: Int
    public var topK: Int
    /// Width of each routed expert.
    public var expertIntermediate: Int
    /// Width of dense MLP layers (Qwen layouts' non-sparse layers).
    public var denseIntermediate: Int
    /// Width of the Qwen2-MoE shared expert (0: none).
    public var sharedIntermediate: Int
    /// Renormalise the top-k routing weights (always true for Mixtral).
    public var normTopKProb: Bool
    public var rmsNormEps: Float
    public var ropeTheta: Float
    public var maxPositions: Int
    public var tieWordEmbeddings: Bool
    /// Biases on q/k/v (Qwen2-MoE).
    public var qkvBias: Bool
    public var qkNorm: MoEQKNorm
    /// OLMoE's clamp of q, k, v (nil: none).
    public var clipQKV: Float?
    /// Which layers are sparse MoE layers (the others are dense SwiGLU MLPs).
    public var sparseLayers: [Bool]
    public var bosTokenID: Int?
    public var eosTokenIDs: [Int]

    /// The MoE shape the offload engine sizes experts by.
    public var moeShape: MoEShape {
        MoEShape(layers: layers, experts: experts, topK: topK, hidden: hiddenSize, intermediate: expertIntermediate)
    }

    /// Builds the unified config from a parsed `config.json`; throws for non-MoE model types and
    /// for features the decoder does not implement (e.g. RoPE scaling, non-SiLU activations).
    public init(_ hf: HFModelConfig, clipQKV: Float? = nil) throws {
        func checkCommon(_ act: String, _ scaling: RopeScaling?) throws {
            guard act == "silu" else { throw MoEError.unsupported("hidden_act '\(act)' (only silu)") }
            if let s = scaling, s.ropeType != "default" {
                throw MoEError.unsupported("rope scaling '\(s.ropeType)'")
            }
        }
        switch hf {
        case let .mixtral(c):
            try checkCommon(c.hiddenAct, c.ropeScaling)
            layout = .mixtral
            vocabSize = c.vocabSize; hiddenSize = c.hiddenSize; layers = c.numHiddenLayers
            heads = c.numAttentionHeads; kvHeads = c.numKeyValueHeads; headDim = c.headDim
            experts = c.numLocalExperts; topK = c.numExpertsPerTok
            expertIntermediate = c.intermediateSize; denseIntermediate = c.intermediateSize; sharedIntermediate = 0
            normTopKProb = true
            rmsNormEps = Float(c.rmsNormEps); ropeTheta = Float(c.ropeTheta); maxPositions = c.maxPositionEmbeddings
            tieWordEmbeddings = c.tieWordEmbeddings; qkvBias = false; qkNorm = .none
            sparseLayers = Array(repeating: true, count: c.numHiddenLayers)
            bosTokenID = c.bosTokenID; eosTokenIDs = c.eosTokenIDs
        case let .qwenMoE(c):
            try checkCommon(c.hiddenAct, c.ropeScaling)
            switch c.modelType {
            case "qwen2_moe": layout = .qwen2MoE; qkNorm = .none
            case "olmoe": layout = .olmoe; qkNorm = .full
            default: layout = .qwen3MoE; qkNorm = .perHead
            }
            vocabSize = c.vocabSize; hiddenSize = c.hiddenSize; layers = c.numHiddenLayers
            heads = c.numAttentionHeads; kvHeads = c.numKeyValueHeads; headDim = c.headDim
            experts = c.numExperts; topK = c.numExpertsPerTok
            expertIntermediate = c.moeIntermediateSize; denseIntermediate = c.intermediateSize
            sharedIntermediate = c.modelType == "qwen2_moe" ? c.sharedExpertIntermediateSize : 0
            normTopKProb = c.normTopkProb
            rmsNormEps = Float(c.rmsNormEps); ropeTheta = Float(c.ropeTheta); maxPositions = c.maxPositionEmbeddings
            tieWordEmbeddings = c.tieWordEmbeddings
            qkvBias = c.modelType == "qwen2_moe" ? c.attentionBias : false
            if c.modelType != "qwen2_moe" && c.attentionBias {
                throw MoEError.unsupported("attention_bias for \(c.modelType)")
            }
            sparseLayers = (0..<c.numHiddenLayers).map { c.isSparseLayer($0) }
            bosTokenID = c.bosTokenID; eosTokenIDs = c.eosTokenIDs
        default:
            throw MoEError.unsupported("model_type '\(hf.modelType)' is not an MoE model (mixtral, qwen2_moe, qwen3_moe, olmoe)")
        }
        self.clipQKV = layout == .olmoe ? clipQKV : nil
        guard headDim % 2 == 0 else { throw MoEError.badConfig("head_dim \(headDim) must be even for RoPE") }
    }

    /// A config for the given layout and sizes (used by `frugal moe create` and training).
    public init(layout: MoELayout, vocabSize: Int, hiddenSize: Int, layers: Int, heads: Int, kvHeads: Int,
                headDim: Int? = nil, experts: Int, topK: Int, expertIntermediate: Int, sharedIntermediate: Int? = nil,
                normTopKProb: Bool? = nil, maxPositions: Int = 4096, ropeTheta: Float = 10000, rmsNormEps: Float = 1e-6,
                tieWordEmbeddings: Bool = false) {
        self.layout = layout; self.vocabSize = vocabSize; self.hiddenSize = hiddenSize; self.layers = layers
        self.heads = heads; self.kvHeads = kvHeads; self.headDim = headDim ?? hiddenSize / max(heads, 1)
        self.experts = experts; self.topK = topK; self.expertIntermediate = expertIntermediate
        denseIntermediate = expertIntermediate
        self.sharedIntermediate = layout == .qwen2MoE ? (sharedIntermediate ?? expertIntermediate) : 0
        self.normTopKProb = layout == .mixtral ? true : (normTopKProb ?? false)
        self.rmsNormEps = rmsNormEps; self.ropeTheta = ropeTheta; self.maxPositions = maxPositions
        self.tieWordEmbeddings = tieWordEmbeddings
        qkvBias = layout == .qwen2MoE
        switch layout {
        case .qwen3MoE: qkNorm = .perHead
        case .olmoe: qkNorm = .full
        default: qkNorm = .none
        }
        clipQKV = nil
        sparseLayers = Array(repeating: true, count: layers)
        bosTokenID = nil; eosTokenIDs = []
    }

    /// The Hugging Face config this describes (all layers sparse).
    public var hfConfig: HFModelConfig {
        switch layout {
        case .mixtral:
            return .mixtral(MixtralConfig(vocabSize: vocabSize, hiddenSize: hiddenSize, intermediateSize: expertIntermediate,
                                          numHiddenLayers: layers, numAttentionHeads: heads, numKeyValueHeads: kvHeads,
                                          headDim: headDim, maxPositionEmbeddings: maxPositions, rmsNormEps: Double(rmsNormEps),
                                          ropeTheta: Double(ropeTheta), tieWordEmbeddings: tieWordEmbeddings,
                                          numLocalExperts: experts, numExpertsPerTok: topK, bosTokenID: bosTokenID,
                                          eosTokenIDs: eosTokenIDs))
        default:
            return .qwenMoE(QwenMoEConfig(modelType: layout.modelType, vocabSize: vocabSize, hiddenSize: hiddenSize,
                                          intermediateSize: layout == .olmoe ? expertIntermediate : denseIntermediate,
                                          numHiddenLayers: layers, numAttentionHeads: heads, numKeyValueHeads: kvHeads,
                                          headDim: headDim, maxPositionEmbeddings: maxPositions, rmsNormEps: Double(rmsNormEps),
                                          ropeTheta: Double(ropeTheta), tieWordEmbeddings: tieWordEmbeddings,
                                          attentionBias: qkvBias, numExperts: experts, numExpertsPerTok: topK,
                                          moeIntermediateSize: expertIntermediate,
                                          sharedExpertIntermediateSize: sharedIntermediate, normTopkProb: normTopKProb,
                                          bosTokenID: bosTokenID, eosTokenIDs: eosTokenIDs))
        }
    }

    /// Reads `config.json` in `directory`.
    public static func load(directory: URL) throws -> MoEModelConfig {
        let url = directory.appendingPathComponent("config.json")
        let hf = try HFModelConfig.load(contentsOf: url)
        var clip: Float? = nil
        if hf.modelType == "olmoe", let data = try? Data(contentsOf: url),
           let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let c = obj["clip_qkv"] as? Double {
            clip = Float(c)
        }
        do { return try MoEModelConfig(hf, clipQKV: clip) } catch let e as MoEError {
            throw MoEError.badConfig("\(url.path): \(e)")
        }
    }

    // MARK: - Tensor names

    /// Prefix of layer `l`'s MoE block.
    func moePrefix(_ l: Int) -> String {
        layout == .mixtral ? "model.layers.\(l).block_sparse_moe" : "model.layers.\(l).mlp"
    }
    /// Names of expert `e`'s gate (w1), up (w3) and down (w2) weights in layer `l`.
    public func expertNames(layer l: Int, expert e: Int) -> (gate: String, up: String, down: String) {
        let p = moePrefix(l) + ".experts.\(e)"
        if layout == .mixtral { return (p + ".w1.weight", p + ".w3.weight", p + ".w2.weight") }
        return (p + ".gate_proj.weight", p + ".up_proj.weight", p + ".down_proj.weight")
    }
    /// Name of layer `l`'s router weight [experts, hidden].
    public func routerName(layer l: Int) -> String { moePrefix(l) + ".gate.weight" }
}

/// Errors of the MoE model: bad configs and checkpoints, unsupported features, bad inputs.
public enum MoEError: Error, CustomStringConvertible, LocalizedError, Sendable {
    case unsupported(String)
    case badConfig(String)
    case badCheckpoint(String)
    case badInput(String)

    public var description: String {
        switch self {
        case let .unsupported(s): return "unsupported: \(s)"
        case let .badConfig(s): return "bad config: \(s)"
        case let .badCheckpoint(s): return "bad checkpoint: \(s)"
        case let .badInput(s): return s
        }
    }
    public var errorDescription: String? { description }
}
