import Foundation

// Hugging Face `config.json` files for the architectures Frugal builds: BERT, Llama (and the
// Llama-shaped Mistral / Qwen2 / Qwen3), Mixtral, and the Qwen-style MoE family (Qwen2-MoE,
// Qwen3-MoE, OLMoE). Keys are snake_case as in transformers. Fields that fix tensor shapes
// (vocab_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads) are
// required: a config without them would silently describe some default model. Every other field
// falls back to the default of the corresponding transformers config class; `null` counts as absent.

/// A missing or malformed field, or an unsupported model type in a `config.json`.
public struct HFConfigError: Error, CustomStringConvertible, LocalizedError, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
    public var errorDescription: String? { message }
}

/// `rope_scaling` (or the scaling part of transformers 5's `rope_parameters`).
public struct RopeScaling: Sendable, Equatable, Codable {
    /// `rope_type` (older files: `type`), e.g. `linear`, `dynamic`, `yarn`, `llama3`.
    public var ropeType: String
    public var factor: Double?
    public var lowFreqFactor: Double?
    public var highFreqFactor: Double?
    public var originalMaxPositionEmbeddings: Int?

    public init(ropeType: String, factor: Double? = nil, lowFreqFactor: Double? = nil, highFreqFactor: Double? = nil,
                originalMaxPositionEmbeddings: Int? = nil) {
        self.ropeType = ropeType
        self.factor = factor
        self.lowFreqFactor = lowFreqFactor
        self.highFreqFactor = highFreqFactor
        self.originalMaxPositionEmbeddings = originalMaxPositionEmbeddings
    }

    enum CodingKeys: String, CodingKey {
        case ropeType = "rope_type", type, factor, lowFreqFactor = "low_freq_factor", highFreqFactor = "high_freq_factor"
        case originalMaxPositionEmbeddings = "original_max_position_embeddings"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        guard let t = try c.decodeIfPresent(String.self, forKey: .ropeType) ?? c.decodeIfPresent(String.self, forKey: .type) else {
            throw HFConfigError("rope_scaling has no rope_type")
        }
        ropeType = t
        factor = try c.decodeIfPresent(Double.self, forKey: .factor)
        lowFreqFactor = try c.decodeIfPresent(Double.self, forKey: .lowFreqFactor)
        highFreqFactor = try c.decodeIfPresent(Double.self, forKey: .highFreqFactor)
        originalMaxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .originalMaxPositionEmbeddings)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(ropeType, forKey: .ropeType)
        try c.encodeIfPresent(factor, forKey: .factor)
        try c.encodeIfPresent(lowFreqFactor, forKey: .lowFreqFactor)
        try c.encodeIfPresent(highFreqFactor, forKey: .highFreqFactor)
        try c.encodeIfPresent(originalMaxPositionEmbeddings, forKey: .originalMaxPositionEmbeddings)
    }
}

// MARK: - BERT

/// `BertConfig` (model_type `bert`).
public struct BertConfig: Sendable, Equatable, Codable {
    public var architectures: [String]?
    public var vocabSize: Int
    public var hiddenSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var intermediateSize: Int
    public var hiddenAct: String
    public var hiddenDropoutProb: Double
    public var attentionProbsDropoutProb: Double
    public var maxPositionEmbeddings: Int
    public var typeVocabSize: Int
    public var initializerRange: Double
    public var layerNormEps: Double
    public var padTokenID: Int?
    public var positionEmbeddingType: String
    public var torchDtype: String?

    /// Per-head width, `hiddenSize / numAttentionHeads`.
    public var headDim: Int { hiddenSize / numAttentionHeads }

    /// A configuration with transformers' defaults for everything but the shape fields.
    public init(vocabSize: Int, hiddenSize: Int, numHiddenLayers: Int, numAttentionHeads: Int, intermediateSize: Int,
                hiddenAct: String = "gelu", hiddenDropoutProb: Double = 0.1, attentionProbsDropoutProb: Double = 0.1,
                maxPositionEmbeddings: Int = 512, typeVocabSize: Int = 2, initializerRange: Double = 0.02,
                layerNormEps: Double = 1e-12, padTokenID: Int? = 0, positionEmbeddingType: String = "absolute",
                architectures: [String]? = ["BertModel"], torchDtype: String? = nil) {
        self.vocabSize = vocabSize; self.hiddenSize = hiddenSize; self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads; self.intermediateSize = intermediateSize; self.hiddenAct = hiddenAct
        self.hiddenDropoutProb = hiddenDropoutProb; self.attentionProbsDropoutProb = attentionProbsDropoutProb
        self.maxPositionEmbeddings = maxPositionEmbeddings; self.typeVocabSize = typeVocabSize
        self.initializerRange = initializerRange; self.layerNormEps = layerNormEps; self.padTokenID = padTokenID
        self.positionEmbeddingType = positionEmbeddingType; self.architectures = architectures; self.torchDtype = torchDtype
    }

    public init(from decoder: Decoder) throws {
        let r = try HFConfigReader(decoder, model: "bert")
        self.init(vocabSize: try r.req("vocab_size"), hiddenSize: try r.req("hidden_size"),
                  numHiddenLayers: try r.req("num_hidden_layers"), numAttentionHeads: try r.req("num_attention_heads"),
                  intermediateSize: try r.req("intermediate_size"),
                  hiddenAct: try r.opt("hidden_act", "gelu"), hiddenDropoutProb: try r.opt("hidden_dropout_prob", 0.1),
                  attentionProbsDropoutProb: try r.opt("attention_probs_dropout_prob", 0.1),
                  maxPositionEmbeddings: try r.opt("max_position_embeddings", 512),
                  typeVocabSize: try r.opt("type_vocab_size", 2), initializerRange: try r.opt("initializer_range", 0.02),
                  layerNormEps: try r.opt("layer_norm_eps", 1e-12),
                  padTokenID: r.has("pad_token_id") ? try r.optional("pad_token_id") : 0,
                  positionEmbeddingType: try r.opt("position_embedding_type", "absolute"),
                  architectures: try r.optional("architectures"), torchDtype: try r.optional("torch_dtype"))
        try r.checkPositive(["vocab_size": vocabSize, "hidden_size": hiddenSize, "num_hidden_layers": numHiddenLayers,
                             "num_attention_heads": numAttentionHeads, "intermediate_size": intermediateSize])
        try r.checkDivisible(hiddenSize, "hidden_size", by: numAttentionHeads, "num_attention_heads")
    }

    public func encode(to encoder: Encoder) throws {
        var w = HFConfigWriter(encoder)
        try w.set("model_type", "bert")
        try w.set("architectures", architectures)
        try w.set("vocab_size", vocabSize)
        try w.set("hidden_size", hiddenSize)
        try w.set("num_hidden_layers", numHiddenLayers)
        try w.set("num_attention_heads", numAttentionHeads)
        try w.set("intermediate_size", intermediateSize)
        try w.set("hidden_act", hiddenAct)
        try w.set("hidden_dropout_prob", hiddenDropoutProb)
        try w.set("attention_probs_dropout_prob", attentionProbsDropoutProb)
        try w.set("max_position_embeddings", maxPositionEmbeddings)
        try w.set("type_vocab_size", typeVocabSize)
        try w.set("initializer_range", initializerRange)
        try w.set("layer_norm_eps", layerNormEps)
        try w.set("pad_token_id", padTokenID)
        try w.set("position_embedding_type", positionEmbeddingType)
        try w.set("torch_dtype", torchDtype)
    }
}

// MARK: - Decoder-only transformers

/// Fields shared by the decoder-only configs (Llama-style attention and RMSNorm).
struct HFDecoderFields: Sendable, Equatable {
    var architectures: [String]?
    var vocabSize: Int
    var hiddenSize: Int
    var intermediateSize: Int
    var numHiddenLayers: Int
    var numAttentionHeads: Int
    var numKeyValueHeads: Int
    var headDim: Int
    var hiddenAct: String
    var maxPositionEmbeddings: Int
    var rmsNormEps: Double
    var ropeTheta: Double
    var ropeScaling: RopeScaling?
    var tieWordEmbeddings: Bool
    var attentionBias: Bool
    var bosTokenID: Int?
    var eosTokenIDs: [Int]
    var padTokenID: Int?
    var torchDtype: String?

    /// Model-type-specific defaults of the optional fields.
    struct Defaults {
        var numKeyValueHeads: Int? = nil  // nil: same as num_attention_heads
        var headDim: Int? = nil  // nil: hidden_size / num_attention_heads
        var maxPositionEmbeddings = 2048
        var rmsNormEps = 1e-6
        var ropeTheta = 10000.0
        var attentionBias = false
        var tieWordEmbeddings = false
        var bosTokenID: Int? = nil
        var eosTokenIDs: [Int] = []
        var padTokenID: Int? = nil
    }
}

extension HFDecoderFields {
    init(_ r: HFConfigReader, _ d: Defaults) throws {
        architectures = try r.optional("architectures")
        vocabSize = try r.req("vocab_size")
        hiddenSize = try r.req("hidden_size")
        intermediateSize = try r.req("intermediate_size")
        numHiddenLayers = try r.req("num_hidden_layers")
        numAttentionHeads = try r.req("num_attention_heads")
        try r.checkPositive(["vocab_size": vocabSize, "hidden_size": hiddenSize, "intermediate_size": intermediateSize,
                             "num_hidden_layers": numHiddenLayers, "num_attention_heads": numAttentionHeads])
        numKeyValueHeads = try r.optional("num_key_value_heads") ?? d.numKeyValueHeads ?? numAttentionHeads
        try r.checkPositive(["num_key_value_heads": numKeyValueHeads])
        try r.checkDivisible(numAttentionHeads, "num_attention_heads", by: numKeyValueHeads, "num_key_value_heads")
        if let h: Int = try r.optional("head_dim") {
            headDim = h
            try r.checkPositive(["head_dim": h])
        } else if let h = d.headDim {
            headDim = h
        } else {
            try r.checkDivisible(hiddenSize, "hidden_size", by: numAttentionHeads, "num_attention_heads")
            headDim = hiddenSize / numAttentionHeads
        }
        hiddenAct = try r.opt("hidden_act", "silu")
        maxPositionEmbeddings = try r.opt("max_position_embeddings", d.maxPositionEmbeddings)
        rmsNormEps = try r.opt("rms_norm_eps", d.rmsNormEps)
        // transformers 5 moves rope_theta and the scaling into `rope_parameters`.
        let params: HFRopeParameters? = try r.optional("rope_parameters")
        ropeTheta = try r.optional("rope_theta") ?? params?.ropeTheta ?? d.ropeTheta
        if let s: RopeScaling = try r.optional("rope_scaling") {
            ropeScaling = s
        } else if let p = params, let t = p.ropeType, t != "default" {
            ropeScaling = RopeScaling(ropeType: t, factor: p.factor, lowFreqFactor: p.lowFreqFactor,
                                      highFreqFactor: p.highFreqFactor, originalMaxPositionEmbeddings: p.originalMaxPositionEmbeddings)
        } else {
            ropeScaling = nil
        }
        tieWordEmbeddings = try r.opt("tie_word_embeddings", d.tieWordEmbeddings)
        attentionBias = try r.opt("attention_bias", d.attentionBias)
        bosTokenID = r.has("bos_token_id") ? try r.optional("bos_token_id") : d.bosTokenID
        if r.has("eos_token_id") {
            eosTokenIDs = (try r.optional("eos_token_id") as HFTokenIDList?)?.ids ?? []
        } else {
            eosTokenIDs = d.eosTokenIDs
        }
        padTokenID = r.has("pad_token_id") ? try r.optional("pad_token_id") : d.padTokenID
        torchDtype = try r.optional("torch_dtype")
    }

    func write(_ w: inout HFConfigWriter) throws {
        try w.set("architectures", architectures)
        try w.set("vocab_size", vocabSize)
        try w.set("hidden_size", hiddenSize)
        try w.set("intermediate_size", intermediateSize)
        try w.set("num_hidden_layers", numHiddenLayers)
        try w.set("num_attention_heads", numAttentionHeads)
        try w.set("num_key_value_heads", numKeyValueHeads)
        try w.set("head_dim", headDim)
        try w.set("hidden_act", hiddenAct)
        try w.set("max_position_embeddings", maxPositionEmbeddings)
        try w.set("rms_norm_eps", rmsNormEps)
        try w.set("rope_theta", ropeTheta)
        try w.set("rope_scaling", ropeScaling)
        try w.set("tie_word_embeddings", tieWordEmbeddings)
        try w.set("attention_bias", attentionBias)
        try w.set("bos_token_id", bosTokenID)
        if eosTokenIDs.count == 1 { try w.set("eos_token_id", eosTokenIDs[0]) } else if !eosTokenIDs.isEmpty { try w.set("eos_token_id", eosTokenIDs) }
        try w.set("pad_token_id", padTokenID)
        try w.set("torch_dtype", torchDtype)
    }
}

/// `LlamaConfig` (model_type `llama`), also used for the Llama-shaped `mistral`, `qwen2` and `qwen3`
/// (see `modelType`; Qwen2 has q/k/v biases, Qwen3 has per-head q/k RMSNorm).
public struct LlamaConfig: Sendable, Equatable, Codable {
    /// The model_type: `llama`, `mistral`, `qwen2` or `qwen3`.
    public var modelType: String
    public var architectures: [String]?
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    /// Key/value heads for grouped-query attention (defaults to `numAttentionHeads`).
    public var numKeyValueHeads: Int
    /// Per-head width (defaults to `hiddenSize / numAttentionHeads`).
    public var headDim: Int
    public var hiddenAct: String
    public var maxPositionEmbeddings: Int
    public var rmsNormEps: Double
    public var ropeTheta: Double
    public var ropeScaling: RopeScaling?
    public var tieWordEmbeddings: Bool
    /// Biases on q/k/v/o projections (`attention_bias`; always true for qwen2).
    public var attentionBias: Bool
    public var mlpBias: Bool
    public var bosTokenID: Int?
    /// `eos_token_id`, which may be one id or a list.
    public var eosTokenIDs: [Int]
    public var padTokenID: Int?
    public var torchDtype: String?

    static let modelTypes = ["llama", "mistral", "qwen2", "qwen3"]

    public init(modelType: String = "llama", vocabSize: Int, hiddenSize: Int, intermediateSize: Int, numHiddenLayers: Int,
                numAttentionHeads: Int, numKeyValueHeads: Int? = nil, headDim: Int? = nil, hiddenAct: String = "silu",
                maxPositionEmbeddings: Int = 2048, rmsNormEps: Double = 1e-6, ropeTheta: Double = 10000,
                ropeScaling: RopeScaling? = nil, tieWordEmbeddings: Bool = false, attentionBias: Bool = false,
                mlpBias: Bool = false, bosTokenID: Int? = 1, eosTokenIDs: [Int] = [2], padTokenID: Int? = nil,
                architectures: [String]? = ["LlamaForCausalLM"], torchDtype: String? = nil) {
        self.modelType = modelType; self.vocabSize = vocabSize; self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize; self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads; self.numKeyValueHeads = numKeyValueHeads ?? numAttentionHeads
        self.headDim = headDim ?? hiddenSize / max(numAttentionHeads, 1); self.hiddenAct = hiddenAct
        self.maxPositionEmbeddings = maxPositionEmbeddings; self.rmsNormEps = rmsNormEps; self.ropeTheta = ropeTheta
        self.ropeScaling = ropeScaling; self.tieWordEmbeddings = tieWordEmbeddings; self.attentionBias = attentionBias
        self.mlpBias = mlpBias; self.bosTokenID = bosTokenID; self.eosTokenIDs = eosTokenIDs; self.padTokenID = padTokenID
        self.architectures = architectures; self.torchDtype = torchDtype
    }

    public init(from decoder: Decoder) throws {
        let probe = try HFConfigReader(decoder, model: "llama")
        let type: String = try probe.optional("model_type") ?? "llama"
        guard LlamaConfig.modelTypes.contains(type) else {
            throw HFConfigError("model_type '\(type)' is not Llama-shaped (\(LlamaConfig.modelTypes.joined(separator: ", ")))")
        }
        let r = try HFConfigReader(decoder, model: type)
        var d = HFDecoderFields.Defaults()
        switch type {
        case "mistral": d.numKeyValueHeads = 8; d.maxPositionEmbeddings = 4096 * 32; d.bosTokenID = 1; d.eosTokenIDs = [2]
        case "qwen2": d.numKeyValueHeads = 32; d.maxPositionEmbeddings = 32768; d.attentionBias = true
        case "qwen3": d.numKeyValueHeads = 32; d.headDim = 128; d.maxPositionEmbeddings = 32768
        default: d.bosTokenID = 1; d.eosTokenIDs = [2]
        }
        let f = try HFDecoderFields(r, d)
        self.init(modelType: type, vocabSize: f.vocabSize, hiddenSize: f.hiddenSize, intermediateSize: f.intermediateSize,
                  numHiddenLayers: f.numHiddenLayers, numAttentionHeads: f.numAttentionHeads,
                  numKeyValueHeads: f.numKeyValueHeads, headDim: f.headDim, hiddenAct: f.hiddenAct,
                  maxPositionEmbeddings: f.maxPositionEmbeddings, rmsNormEps: f.rmsNormEps, ropeTheta: f.ropeTheta,
                  ropeScaling: f.ropeScaling, tieWordEmbeddings: f.tieWordEmbeddings,
                  attentionBias: type == "qwen2" ? true : f.attentionBias, mlpBias: try r.opt("mlp_bias", false),
                  bosTokenID: f.bosTokenID, eosTokenIDs: f.eosTokenIDs, padTokenID: f.padTokenID,
                  architectures: f.architectures, torchDtype: f.torchDtype)
    }

    var fields: HFDecoderFields {
        HFDecoderFields(architectures: architectures, vocabSize: vocabSize, hiddenSize: hiddenSize,
                      intermediateSize: intermediateSize, numHiddenLayers: numHiddenLayers,
                      numAttentionHeads: numAttentionHeads, numKeyValueHeads: numKeyValueHeads, headDim: headDim,
                      hiddenAct: hiddenAct, maxPositionEmbeddings: maxPositionEmbeddings, rmsNormEps: rmsNormEps,
                      ropeTheta: ropeTheta, ropeScaling: ropeScaling, tieWordEmbeddings: tieWordEmbeddings,
                      attentionBias: attentionBias, bosTokenID: bosTokenID, eosTokenIDs: eosTokenIDs,
                      padTokenID: padTokenID, torchDtype: torchDtype)
    }

    public func encode(to encoder: Encoder) throws {
        var w = HFConfigWriter(encoder)
        try w.set("model_type", modelType)
        try fields.write(&w)
        try w.set("mlp_bias", mlpBias)
    }
}

/// `MixtralConfig` (model_type `mixtral`): Llama attention, every layer a sparse MoE of
/// `numLocalExperts` SwiGLU experts of width `intermediateSize`, top-`numExpertsPerTok` routing.
public struct MixtralConfig: Sendable, Equatable, Codable {
    public var architectures: [String]?
    public var vocabSize: Int
    public var hiddenSize: Int
    /// Width of each expert's FFN.
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int
    public var headDim: Int
    public var hiddenAct: String
    public var maxPositionEmbeddings: Int
    public var rmsNormEps: Double
    public var ropeTheta: Double
    public var ropeScaling: RopeScaling?
    public var slidingWindow: Int?
    public var tieWordEmbeddings: Bool
    public var numLocalExperts: Int
    public var numExpertsPerTok: Int
    public var routerAuxLossCoef: Double
    public var routerJitterNoise: Double
    public var outputRouterLogits: Bool
    public var bosTokenID: Int?
    public var eosTokenIDs: [Int]
    public var padTokenID: Int?
    public var torchDtype: String?

    public init(vocabSize: Int, hiddenSize: Int, intermediateSize: Int, numHiddenLayers: Int, numAttentionHeads: Int,
                numKeyValueHeads: Int = 8, headDim: Int? = nil, hiddenAct: String = "silu",
                maxPositionEmbeddings: Int = 4096 * 32, rmsNormEps: Double = 1e-5, ropeTheta: Double = 1e6,
                ropeScaling: RopeScaling? = nil, slidingWindow: Int? = nil, tieWordEmbeddings: Bool = false,
                numLocalExperts: Int = 8, numExpertsPerTok: Int = 2, routerAuxLossCoef: Double = 0.001,
                routerJitterNoise: Double = 0, outputRouterLogits: Bool = false, bosTokenID: Int? = 1,
                eosTokenIDs: [Int] = [2], padTokenID: Int? = nil, architectures: [String]? = ["MixtralForCausalLM"],
                torchDtype: String? = nil) {
        self.vocabSize = vocabSize; self.hiddenSize = hiddenSize; self.intermediateSize = intermediateSize
        self.numHiddenLayers = numHiddenLayers; self.numAttentionHeads = numAttentionHeads
        self.numKeyValueHeads = numKeyValueHeads; self.headDim = headDim ?? hiddenSize / max(numAttentionHeads, 1)
        self.hiddenAct = hiddenAct; self.maxPositionEmbeddings = maxPositionEmbeddings; self.rmsNormEps = rmsNormEps
        self.ropeTheta = ropeTheta; self.ropeScaling = ropeScaling; self.slidingWindow = slidingWindow
        self.tieWordEmbeddings = tieWordEmbeddings; self.numLocalExperts = numLocalExperts
        self.numExpertsPerTok = numExpertsPerTok; self.routerAuxLossCoef = routerAuxLossCoef
        self.routerJitterNoise = routerJitterNoise; self.outputRouterLogits = outputRouterLogits
        self.bosTokenID = bosTokenID; self.eosTokenIDs = eosTokenIDs; self.padTokenID = padTokenID
        self.architectures = architectures; self.torchDtype = torchDtype
    }

    public init(from decoder: Decoder) throws {
        let r = try HFConfigReader(decoder, model: "mixtral")
        var d = HFDecoderFields.Defaults()
        d.numKeyValueHeads = 8; d.maxPositionEmbeddings = 4096 * 32; d.rmsNormEps = 1e-5; d.ropeTheta = 1e6
        d.bosTokenID = 1; d.eosTokenIDs = [2]
        let f = try HFDecoderFields(r, d)
        self.init(vocabSize: f.vocabSize, hiddenSize: f.hiddenSize, intermediateSize: f.intermediateSize,
                  numHiddenLayers: f.numHiddenLayers, numAttentionHeads: f.numAttentionHeads,
                  numKeyValueHeads: f.numKeyValueHeads, headDim: f.headDim, hiddenAct: f.hiddenAct,
                  maxPositionEmbeddings: f.maxPositionEmbeddings, rmsNormEps: f.rmsNormEps, ropeTheta: f.ropeTheta,
                  ropeScaling: f.ropeScaling, slidingWindow: try r.optional("sliding_window"),
                  tieWordEmbeddings: f.tieWordEmbeddings, numLocalExperts: try r.opt("num_local_experts", 8),
                  numExpertsPerTok: try r.opt("num_experts_per_tok", 2),
                  routerAuxLossCoef: try r.opt("router_aux_loss_coef", 0.001),
                  routerJitterNoise: try r.opt("router_jitter_noise", 0.0),
                  outputRouterLogits: try r.opt("output_router_logits", false), bosTokenID: f.bosTokenID,
                  eosTokenIDs: f.eosTokenIDs, padTokenID: f.padTokenID, architectures: f.architectures,
                  torchDtype: f.torchDtype)
        try r.checkPositive(["num_local_experts": numLocalExperts, "num_experts_per_tok": numExpertsPerTok])
        try r.checkAtMost(numExpertsPerTok, "num_experts_per_tok", numLocalExperts, "num_local_experts")
    }

    public func encode(to encoder: Encoder) throws {
        var w = HFConfigWriter(encoder)
        try w.set("model_type", "mixtral")
        let f = HFDecoderFields(architectures: architectures, vocabSize: vocabSize, hiddenSize: hiddenSize,
                              intermediateSize: intermediateSize, numHiddenLayers: numHiddenLayers,
                              numAttentionHeads: numAttentionHeads, numKeyValueHeads: numKeyValueHeads, headDim: headDim,
                              hiddenAct: hiddenAct, maxPositionEmbeddings: maxPositionEmbeddings, rmsNormEps: rmsNormEps,
                              ropeTheta: ropeTheta, ropeScaling: ropeScaling, tieWordEmbeddings: tieWordEmbeddings,
                              attentionBias: false, bosTokenID: bosTokenID, eosTokenIDs: eosTokenIDs,
                              padTokenID: padTokenID, torchDtype: torchDtype)
        try f.write(&w)
        try w.set("sliding_window", slidingWindow)
        try w.set("num_local_experts", numLocalExperts)
        try w.set("num_experts_per_tok", numExpertsPerTok)
        try w.set("router_aux_loss_coef", routerAuxLossCoef)
        try w.set("router_jitter_noise", routerJitterNoise)
        try w.set("output_router_logits", outputRouterLogits)
    }
}

/// The Qwen-style MoE family: `qwen2_moe`, `qwen3_moe` and `olmoe`. Experts have width
/// `moeIntermediateSize` (OLMoE's `intermediate_size`); Qwen2-MoE adds a gated shared expert of
/// width `sharedExpertIntermediateSize` (0 when there is none). Layer `i` is sparse when it is not in
/// `mlpOnlyLayers` and `(i + 1) % decoderSparseStep == 0`; otherwise it is a dense MLP of width
/// `intermediateSize`.
public struct QwenMoEConfig: Sendable, Equatable, Codable {
    /// `qwen2_moe`, `qwen3_moe` or `olmoe`.
    public var modelType: String
    public var architectures: [String]?
    public var vocabSize: Int
    public var hiddenSize: Int
    /// Width of dense MLP layers (for OLMoE: also the expert width).
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int
    public var headDim: Int
    public var hiddenAct: String
    public var maxPositionEmbeddings: Int
    public var rmsNormEps: Double
    public var ropeTheta: Double
    public var ropeScaling: RopeScaling?
    public var tieWordEmbeddings: Bool
    /// Biases on q/k/v (true for qwen2_moe).
    public var attentionBias: Bool
    public var numExperts: Int
    public var numExpertsPerTok: Int
    public var moeIntermediateSize: Int
    public var sharedExpertIntermediateSize: Int
    /// Renormalise the top-k routing weights to sum to 1.
    public var normTopkProb: Bool
    public var decoderSparseStep: Int
    public var mlpOnlyLayers: [Int]
    public var routerAuxLossCoef: Double
    public var bosTokenID: Int?
    public var eosTokenIDs: [Int]
    public var padTokenID: Int?
    public var torchDtype: String?

    static let modelTypes = ["qwen2_moe", "qwen3_moe", "olmoe"]

    public init(modelType: String = "qwen3_moe", vocabSize: Int, hiddenSize: Int, intermediateSize: Int,
                numHiddenLayers: Int, numAttentionHeads: Int, numKeyValueHeads: Int? = nil, headDim: Int? = nil,
                hiddenAct: String = "silu", maxPositionEmbeddings: Int = 32768, rmsNormEps: Double = 1e-6,
                ropeTheta: Double = 10000, ropeScaling: RopeScaling? = nil, tieWordEmbeddings: Bool = false,
                attentionBias: Bool = false, numExperts: Int, numExpertsPerTok: Int, moeIntermediateSize: Int,
                sharedExpertIntermediateSize: Int = 0, normTopkProb: Bool = false, decoderSparseStep: Int = 1,
                mlpOnlyLayers: [Int] = [], routerAuxLossCoef: Double = 0.001, bosTokenID: Int? = nil,
                eosTokenIDs: [Int] = [], padTokenID: Int? = nil, architectures: [String]? = nil, torchDtype: String? = nil) {
        self.modelType = modelType; self.vocabSize = vocabSize; self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize; self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads; self.numKeyValueHeads = numKeyValueHeads ?? numAttentionHeads
        self.headDim = headDim ?? hiddenSize / max(numAttentionHeads, 1); self.hiddenAct = hiddenAct
        self.maxPositionEmbeddings = maxPositionEmbeddings; self.rmsNormEps = rmsNormEps; self.ropeTheta = ropeTheta
        self.ropeScaling = ropeScaling; self.tieWordEmbeddings = tieWordEmbeddings; self.attentionBias = attentionBias
        self.numExperts = numExperts; self.numExpertsPerTok = numExpertsPerTok
        self.moeIntermediateSize = moeIntermediateSize; self.sharedExpertIntermediateSize = sharedExpertIntermediateSize
        self.normTopkProb = normTopkProb; self.decoderSparseStep = decoderSparseStep; self.mlpOnlyLayers = mlpOnlyLayers
        self.routerAuxLossCoef = routerAuxLossCoef; self.bosTokenID = bosTokenID; self.eosTokenIDs = eosTokenIDs
        self.padTokenID = padTokenID
        self.architectures = architectures ?? [QwenMoEConfig.defaultArchitecture(modelType)]
        self.torchDtype = torchDtype
    }

    static func defaultArchitecture(_ type: String) -> String {
        switch type {
        case "qwen2_moe": return "Qwen2MoeForCausalLM"
        case "olmoe": return "OlmoeForCausalLM"
        default: return "Qwen3MoeForCausalLM"
        }
    }

    /// Whether decoder layer `layer` is a sparse MoE layer (transformers' rule).
    public func isSparseLayer(_ layer: Int) -> Bool {
        !mlpOnlyLayers.contains(layer) && numExperts > 0 && decoderSparseStep > 0 && (layer + 1) % decoderSparseStep == 0
    }

    public init(from decoder: Decoder) throws {
        let probe = try HFConfigReader(decoder, model: "qwen3_moe")
        let type: String = try probe.optional("model_type") ?? "qwen3_moe"
        guard QwenMoEConfig.modelTypes.contains(type) else {
            throw HFConfigError("model_type '\(type)' is not a Qwen-style MoE (\(QwenMoEConfig.modelTypes.joined(separator: ", ")))")
        }
        let r = try HFConfigReader(decoder, model: type)
        var d = HFDecoderFields.Defaults()
        let experts: Int, topK: Int, moeWidth: Int?, shared: Int, aux: Double
        switch type {
        case "qwen2_moe":
            d.numKeyValueHeads = 16; d.maxPositionEmbeddings = 32768; d.attentionBias = true
            experts = 60; topK = 4; moeWidth = 1408; shared = 5632; aux = 0.001
        case "olmoe":
            d.maxPositionEmbeddings = 4096; d.rmsNormEps = 1e-5; d.eosTokenIDs = [50279]; d.padTokenID = 1
            experts = 64; topK = 8; moeWidth = nil; shared = 0; aux = 0.01
        default:  // qwen3_moe
            d.numKeyValueHeads = 4; d.maxPositionEmbeddings = 32768
            experts = 128; topK = 8; moeWidth = 768; shared = 0; aux = 0.001
        }
        let f = try HFDecoderFields(r, d)
        let sharedWidth: Int = type == "qwen2_moe" ? try r.opt("shared_expert_intermediate_size", shared) : 0
        // OLMoE's experts use intermediate_size; it has no moe_intermediate_size key.
        let width: Int = type == "olmoe" ? f.intermediateSize : try r.opt("moe_intermediate_size", moeWidth ?? f.intermediateSize)
        self.init(modelType: type, vocabSize: f.vocabSize, hiddenSize: f.hiddenSize, intermediateSize: f.intermediateSize,
                  numHiddenLayers: f.numHiddenLayers, numAttentionHeads: f.numAttentionHeads,
                  numKeyValueHeads: f.numKeyValueHeads, headDim: f.headDim, hiddenAct: f.hiddenAct,
                  maxPositionEmbeddings: f.maxPositionEmbeddings, rmsNormEps: f.rmsNormEps, ropeTheta: f.ropeTheta,
                  ropeScaling: f.ropeScaling, tieWordEmbeddings: f.tieWordEmbeddings,
                  attentionBias: type == "qwen2_moe" ? try r.opt("qkv_bias", true) : f.attentionBias,
                  numExperts: try r.optional("num_experts") ?? r.opt("num_local_experts", experts),  // transformers 5 writes num_local_experts for qwen3_moe
                  numExpertsPerTok: try r.opt("num_experts_per_tok", topK),
                  moeIntermediateSize: width, sharedExpertIntermediateSize: sharedWidth,
                  normTopkProb: try r.opt("norm_topk_prob", false),
                  decoderSparseStep: type == "olmoe" ? 1 : try r.opt("decoder_sparse_step", 1),
                  mlpOnlyLayers: type == "olmoe" ? [] : (try r.optional("mlp_only_layers") ?? []),
                  routerAuxLossCoef: try r.opt("router_aux_loss_coef", aux), bosTokenID: f.bosTokenID,
                  eosTokenIDs: f.eosTokenIDs, padTokenID: f.padTokenID, architectures: f.architectures,
                  torchDtype: f.torchDtype)
        try r.checkPositive(["num_experts": numExperts, "num_experts_per_tok": numExpertsPerTok,
                             "moe_intermediate_size": moeIntermediateSize, "decoder_sparse_step": decoderSparseStep])
        try r.checkAtMost(numExpertsPerTok, "num_experts_per_tok", numExperts, "num_experts")
        if let bad = mlpOnlyLayers.first(where: { $0 < 0 || $0 >= numHiddenLayers }) {
            throw HFConfigError("\(type) config: mlp_only_layers contains \(bad), outside 0..<\(numHiddenLayers)")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var w = HFConfigWriter(encoder)
        try w.set("model_type", modelType)
        let f = HFDecoderFields(architectures: architectures, vocabSize: vocabSize, hiddenSize: hiddenSize,
                              intermediateSize: modelType == "olmoe" ? moeIntermediateSize : intermediateSize,
                              numHiddenLayers: numHiddenLayers, numAttentionHeads: numAttentionHeads,
                              numKeyValueHeads: numKeyValueHeads, headDim: headDim, hiddenAct: hiddenAct,
                              maxPositionEmbeddings: maxPositionEmbeddings, rmsNormEps: rmsNormEps, ropeTheta: ropeTheta,
                              ropeScaling: ropeScaling, tieWordEmbeddings: tieWordEmbeddings, attentionBias: attentionBias,
                              bosTokenID: bosTokenID, eosTokenIDs: eosTokenIDs, padTokenID: padTokenID, torchDtype: torchDtype)
        try f.write(&w)
        try w.set("num_experts", numExperts)
        try w.set("num_experts_per_tok", numExpertsPerTok)
        try w.set("norm_topk_prob", normTopkProb)
        try w.set("router_aux_loss_coef", routerAuxLossCoef)
        if modelType != "olmoe" {
            try w.set("moe_intermediate_size", moeIntermediateSize)
            try w.set("decoder_sparse_step", decoderSparseStep)
            try w.set("mlp_only_layers", mlpOnlyLayers)
        }
        if modelType == "qwen2_moe" {
            try w.set("shared_expert_intermediate_size", sharedExpertIntermediateSize)
            try w.set("qkv_bias", attentionBias)
        }
    }
}

// MARK: - Dispatch

/// A parsed `config.json`, dispatched on `model_type` (or, without it, on `architectures`).
///
/// ```swift
/// switch try HFModelConfig.load(contentsOf: folder.appendingPathComponent("config.json")) {
/// case .bert(let c): print(c.hiddenSize)
/// case .llama(let c), ...
/// }
/// ```
public enum HFModelConfig: Sendable, Equatable {
    case bert(BertConfig)
    case llama(LlamaConfig)
    case mixtral(MixtralConfig)
    case qwenMoE(QwenMoEConfig)

    /// The model_type string this config writes.
    public var modelType: String {
        switch self {
        case .bert: return "bert"
        case let .llama(c): return c.modelType
        case .mixtral: return "mixtral"
        case let .qwenMoE(c): return c.modelType
        }
    }

    /// Model types this parser accepts.
    public static var supportedModelTypes: [String] { ["bert"] + LlamaConfig.modelTypes + ["mixtral"] + QwenMoEConfig.modelTypes }

    /// Reads and parses `url` (a `config.json`); errors name the file.
    public static func load(contentsOf url: URL) throws -> HFModelConfig {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw HFConfigError("cannot read \(url.path): \(error.localizedDescription)")
        }
        do {
            return try decode(data)
        } catch let e as HFConfigError {
            throw HFConfigError("\(url.path): \(e.message)")
        }
    }

    /// Parses `config.json` bytes.
    public static func decode(_ data: Data) throws -> HFModelConfig {
        struct Probe: Decodable {
            var model_type: String?
            var architectures: [String]?
        }
        let probe: Probe
        do {
            probe = try JSONDecoder().decode(Probe.self, from: data)
        } catch {
            throw HFConfigError("not a JSON config object (\(describe(error)))")
        }
        var type = probe.model_type
        if type == nil, let arch = probe.architectures?.first {
            let table: [(String, String)] = [("Bert", "bert"), ("Mixtral", "mixtral"), ("Qwen2Moe", "qwen2_moe"),
                                             ("Qwen3Moe", "qwen3_moe"), ("Olmoe", "olmoe"), ("Llama", "llama"),
                                             ("Mistral", "mistral"), ("Qwen2", "qwen2"), ("Qwen3", "qwen3")]
            type = table.first { arch.hasPrefix($0.0) }?.1
        }
        guard let type else {
            throw HFConfigError("config has neither model_type nor a recognised architectures entry")
        }
        do {
            let dec = JSONDecoder()
            switch type {
            case "bert": return .bert(try dec.decode(BertConfig.self, from: data))
            case _ where LlamaConfig.modelTypes.contains(type):
                return .llama(try dec.decode(LlamaConfig.self, from: inject(type, into: data, if: probe.model_type == nil)))
            case "mixtral": return .mixtral(try dec.decode(MixtralConfig.self, from: data))
            case _ where QwenMoEConfig.modelTypes.contains(type):
                return .qwenMoE(try dec.decode(QwenMoEConfig.self, from: inject(type, into: data, if: probe.model_type == nil)))
            default:
                throw HFConfigError("unsupported model_type '\(type)' (supported: \(supportedModelTypes.joined(separator: ", ")))")
            }
        } catch let e as HFConfigError {
            throw e
        } catch {
            throw HFConfigError("\(type) config: \(describe(error))")
        }
    }

    /// Adds `"model_type"` to a config that only names its architecture.
    private static func inject(_ type: String, into data: Data, if needed: Bool) throws -> Data {
        guard needed, var obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] else { return data }
        obj["model_type"] = type
        return try JSONSerialization.data(withJSONObject: obj)
    }

    /// The config as `config.json` bytes (pretty-printed, keys sorted, snake_case).
    public func encoded() throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        switch self {
        case let .bert(c): return try enc.encode(c)
        case let .llama(c): return try enc.encode(c)
        case let .mixtral(c): return try enc.encode(c)
        case let .qwenMoE(c): return try enc.encode(c)
        }
    }

    /// Writes the config to `url` atomically.
    public func write(to url: URL) throws {
        let data = try encoded()
        try AtomicFileWriter.write(to: url) { sink in try data.withUnsafeBytes { try sink.write($0) } }
    }

    static func describe(_ error: Error) -> String {
        switch error {
        case let e as HFConfigError: return e.message
        case let DecodingError.typeMismatch(type, ctx):
            return "field '\(path(ctx.codingPath))' has the wrong type (expected \(type))"
        case let DecodingError.valueNotFound(type, ctx):
            return "field '\(path(ctx.codingPath))' is null (expected \(type))"
        case let DecodingError.keyNotFound(key, ctx):
            return "missing field '\(path(ctx.codingPath + [key]))'"
        case let DecodingError.dataCorrupted(ctx):
            return ctx.debugDescription
        default:
            return "\(error)"
        }
    }

    static func path(_ keys: [CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }
}

// MARK: - Helpers

/// A string coding key.
struct HFConfigKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ s: String) { stringValue = s }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { return nil }
}

/// Reads fields with HF semantics: `req` throws a clear error when missing, `opt` falls back to
/// a default when the key is absent or null.
struct HFConfigReader {
    let c: KeyedDecodingContainer<HFConfigKey>
    let model: String

    init(_ decoder: Decoder, model: String) throws {
        do {
            c = try decoder.container(keyedBy: HFConfigKey.self)
        } catch {
            throw HFConfigError("\(model) config is not a JSON object")
        }
        self.model = model
    }

    func has(_ key: String) -> Bool { c.contains(HFConfigKey(key)) }

    func req<T: Decodable>(_ key: String) throws -> T {
        guard let v: T = try optional(key) else {
            throw HFConfigError("\(model) config: missing required field '\(key)'")
        }
        return v
    }

    func opt<T: Decodable>(_ key: String, _ fallback: T) throws -> T { try optional(key) ?? fallback }

    func optional<T: Decodable>(_ key: String) throws -> T? {
        do {
            return try c.decodeIfPresent(T.self, forKey: HFConfigKey(key))
        } catch let e as HFConfigError {
            throw HFConfigError("\(model) config: field '\(key)': \(e.message)")
        } catch {
            throw HFConfigError("\(model) config: field '\(key)' has the wrong type (expected \(T.self))")
        }
    }

    func checkPositive(_ fields: KeyValuePairs<String, Int>) throws {
        for (k, v) in fields where v <= 0 {
            throw HFConfigError("\(model) config: \(k) must be positive, got \(v)")
        }
    }

    func checkDivisible(_ a: Int, _ an: String, by b: Int, _ bn: String) throws {
        guard b > 0, a % b == 0 else {
            throw HFConfigError("\(model) config: \(an) (\(a)) is not divisible by \(bn) (\(b))")
        }
    }

    func checkAtMost(_ a: Int, _ an: String, _ b: Int, _ bn: String) throws {
        guard a <= b else { throw HFConfigError("\(model) config: \(an) (\(a)) exceeds \(bn) (\(b))") }
    }
}

/// Writes fields by snake_case name, omitting nil optionals.
struct HFConfigWriter {
    var c: KeyedEncodingContainer<HFConfigKey>
    init(_ encoder: Encoder) { c = encoder.container(keyedBy: HFConfigKey.self) }
    mutating func set<T: Encodable>(_ key: String, _ value: T?) throws {
        if let value { try c.encode(value, forKey: HFConfigKey(key)) }
    }
}

/// `rope_parameters` (transformers 5).
struct HFRopeParameters: Decodable {
    var ropeTheta: Double?
    var ropeType: String?
    var factor: Double?
    var lowFreqFactor: Double?
    var highFreqFactor: Double?
    var originalMaxPositionEmbeddings: Int?
    enum CodingKeys: String, CodingKey {
        case ropeTheta = "rope_theta", ropeType = "rope_type", factor, lowFreqFactor = "low_freq_factor"
        case highFreqFactor = "high_freq_factor", originalMaxPositionEmbeddings = "original_max_position_embeddings"
    }
}

/// A token id field that may be a single integer or a list of them (`eos_token_id`).
struct HFTokenIDList: Decodable {
    var ids: [Int]
    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let one = try? c.decode(Int.self) { ids = [one] } else { ids = try c.decode([Int].self) }
    }
}
