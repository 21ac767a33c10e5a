import Foundation
import FrugalCore
import FrugalNN
import FrugalData

/// Errors loading a pretrained model; the message names the file and tensor.
public struct ModelLoadError: Error, CustomStringConvertible, LocalizedError, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
    public var errorDescription: String? { message }
}

/// A batch of token sequences of one length: ids, token types and the attention mask, each
/// [batch * length] row-major (1 = real token, 0 = padding).
public struct TokenBatch: Sendable, Equatable {
    public var ids: [Int]
    public var typeIds: [Int]
    public var mask: [Int]
    public let batch: Int, length: Int

    public init(ids: [Int], typeIds: [Int]? = nil, mask: [Int]? = nil, batch: Int, length: Int) {
        precondition(ids.count == batch * length, "TokenBatch: \(ids.count) ids for batch \(batch) x length \(length)")
        self.ids = ids
        self.typeIds = typeIds ?? [Int](repeating: 0, count: ids.count)
        self.mask = mask ?? [Int](repeating: 1, count: ids.count)
        precondition(self.typeIds.count == ids.count && self.mask.count == ids.count, "TokenBatch: type ids / mask sizes differ from ids")
        self.batch = batch
        self.length = length
    }

    /// Stacks encodings of equal length (pad them first, e.g. `encode(batch:maxLength:padding:)`).
    public init(_ encodings: [TokenEncoding]) {
        let len = encodings.first?.count ?? 0
        precondition(encodings.allSatisfy { $0.count == len }, "TokenBatch: encodings have different lengths; pad them")
        self.init(ids: encodings.flatMap(\.ids), typeIds: encodings.flatMap(\.typeIds),
                  mask: encodings.flatMap(\.attentionMask), batch: encodings.count, length: len)
    }

    /// The mask as floats [batch, length].
    public var maskTensor: Tensor { Tensor(mask.map(Float.init), shape: [batch, length]) }
}

/// BERT's embeddings: word + absolute position + token type, then LayerNorm.
public final class BertEmbeddings: Module {
    public let wordEmbeddings: Embedding, positionEmbeddings: Embedding, tokenTypeEmbeddings: Embedding
    public let layerNorm: LayerNorm
    init(_ c: BertConfig, rng: inout RNG) {
        wordEmbeddings = Embedding(c.vocabSize, c.hiddenSize, rng: &rng)
        positionEmbeddings = Embedding(c.maxPositionEmbeddings, c.hiddenSize, rng: &rng)
        tokenTypeEmbeddings = Embedding(c.typeVocabSize, c.hiddenSize, rng: &rng)
        layerNorm = LayerNorm(c.hiddenSize, eps: Float(c.layerNormEps))
    }
    public override func children() -> [(String, Any)] {
        [("word_embeddings", wordEmbeddings), ("position_embeddings", positionEmbeddings),
         ("token_type_embeddings", tokenTypeEmbeddings), ("LayerNorm", layerNorm)]
    }
    /// [B, T, D].
    public func callAsFunction(_ x: TokenBatch) -> Tensor {
        let d = wordEmbeddings.weight.shape[1]
        let words = wordEmbeddings(x.ids).reshaped([x.batch, x.length, d])
        let pos = positionEmbeddings(Array(0..<x.length))
        let types = tokenTypeEmbeddings(x.typeIds).reshaped([x.batch, x.length, d])
        return layerNorm(words + pos + types)
    }
}

/// A projection slot that holds a `Linear` or a `LoRALinear` wrapping one (see `LoRA.inject`).
public typealias Projection = any Layer

/// `attention.self`: the query, key and value projections.
public final class BertSelfAttention: Module {
    public var query: Projection, key: Projection, value: Projection
    init(_ d: Int, rng: inout RNG) {
        query = Linear(d, d, rng: &rng); key = Linear(d, d, rng: &rng); value = Linear(d, d, rng: &rng)
    }
    public override func children() -> [(String, Any)] { [("query", query), ("key", key), ("value", value)] }
}

/// A dense projection followed by residual add and LayerNorm (`attention.output`, `output`).
public final class BertDenseNorm: Module {
    public var dense: Projection
    public let layerNorm: LayerNorm
    init(_ inF: Int, _ outF: Int, eps: Float, rng: inout RNG) {
        dense = Linear(inF, outF, rng: &rng)
        layerNorm = LayerNorm(outF, eps: eps)
    }
    public override func children() -> [(String, Any)] { [("dense", dense), ("LayerNorm", layerNorm)] }
    /// LayerNorm(dense(x) + residual).
    public func callAsFunction(_ x: Tensor, residual: Tensor) -> Tensor { layerNorm(dense(x) + residual) }
}

/// `attention`: self-attention and its output block.
public final class BertAttention: Module {
    public let selfAttention: BertSelfAttention
    public let output: BertDenseNorm
    init(_ c: BertConfig, rng: inout RNG) {
        selfAttention = BertSelfAttention(c.hiddenSize, rng: &rng)
        output = BertDenseNorm(c.hiddenSize, c.hiddenSize, eps: Float(c.layerNormEps), rng: &rng)
    }
    public override func children() -> [(String, Any)] { [("self", selfAttention), ("output", output)] }
}

/// `intermediate`: dense + GELU.
public final class BertIntermediate: Module {
    public var dense: Projection
    init(_ c: BertConfig, rng: inout RNG) { dense = Linear(c.hiddenSize, c.intermediateSize, rng: &rng) }
    public override func children() -> [(String, Any)] { [("dense", dense)] }
}

/// One post-LN encoder layer: h = LN(x + O·attn(x)); y = LN(h + W2·gelu(W1·h)).
public final class BertLayer: Module {
    public let attention: BertAttention
    public let intermediate: BertIntermediate
    public let output: BertDenseNorm
    public let heads: Int
    init(_ c: BertConfig, rng: inout RNG) {
        attention = BertAttention(c, rng: &rng)
        intermediate = BertIntermediate(c, rng: &rng)
        output = BertDenseNorm(c.intermediateSize, c.hiddenSize, eps: Float(c.layerNormEps), rng: &rng)
        heads = c.numAttentionHeads
    }
    public override func children() -> [(String, Any)] {
        [("attention", attention), ("intermediate", intermediate), ("output", output)]
    }
    /// x [B, T, D]; `maskBias` [B, T] (0 for tokens, a large negative number for padding).
    public func callAsFunction(_ x: Tensor, maskBias: Tensor?) -> Tensor {
        let sa = attention.selfAttention
        let ctx = Attention.scaledDotProduct(q: sa.query(x), k: sa.key(x), v: sa.value(x), heads: heads, kvHeads: heads,
                                             maskBias: maskBias, causal: false)
        let h = attention.output(ctx, residual: x)
        let i = intermediate.dense(h).geluFused()
        return output(i, residual: h)
    }
}

/// The BERT encoder (as transformers' `BertModel` without the pooler): embeddings and post-LN
/// layers. State-dict names are transformers' (`encoder.layer.0.attention.self.query.weight`).
///
///     let bert = try BertModel.load(directory: URL(fileURLWithPath: ".../all-MiniLM-L6-v2"))
///     let tok = try WordPieceTokenizer(tokenizerJSON: ".../tokenizer.json")
///     let e = bert.sentenceEmbeddings(TokenBatch(tok.encode(batch: ["A man is eating food."], maxLength: nil)))
///
/// BERT's hidden dropout is not applied (fine-tuning here trains LoRA adapters, whose dropout is
/// configured on the adapters).
public final class BertModel: Module {
    public let config: BertConfig
    public let embeddings: BertEmbeddings
    public let layers: [BertLayer]

    public init(config: BertConfig, rng: inout RNG) {
        self.config = config
        embeddings = BertEmbeddings(config, rng: &rng)
        layers = (0..<config.numHiddenLayers).map { _ in BertLayer(config, rng: &rng) }
    }
    public override func children() -> [(String, Any)] {
        [("embeddings", embeddings), ("encoder", BertEncoderNames(layers))]
    }

    public var hiddenSize: Int { config.hiddenSize }
    public var layerCount: Int { layers.count }

    /// Hidden states [B, T, D] of the last layer. `activeLayers[l] == false` skips layer l (the
    /// hidden state passes through unchanged; nothing is computed or recorded for it).
    public func callAsFunction(_ x: TokenBatch, activeLayers: [Bool]? = nil) -> Tensor {
        if let activeLayers { precondition(activeLayers.count == layers.count, "BertModel: \(activeLayers.count) layer flags for \(layers.count) layers") }
        var h = embeddings(x)
        let bias = x.mask.contains(0) ? Attention.paddingBias(x.mask, batch: x.batch, length: x.length) : nil
        for (l, layer) in layers.enumerated() where activeLayers?[l] ?? true {
            h = layer(h, maskBias: bias)
        }
        return h
    }

    /// Sentence embeddings [B, D]: mean of the hidden states over real tokens, L2-normalised
    /// (the sentence-transformers `1_Pooling` + `Normalize` modules of all-MiniLM-L6-v2).
    public func sentenceEmbeddings(_ x: TokenBatch) -> Tensor {
        Pooling.l2Normalize(Pooling.mean(self(x), mask: x.mask, batch: x.batch, length: x.length))
    }

    /// Builds the model from a folder with `config.json` and `model.safetensors` (transformers
    /// layout; a `bert.` prefix, as in `BertForSequenceClassification`, is accepted). Tensors the
    /// encoder does not use (pooler, position_ids, heads) are ignored; a missing tensor throws.
    public static func load(directory: URL) throws -> BertModel {
        let cfgURL = directory.appendingPathComponent("config.json")
        guard case let .bert(config) = try HFModelConfig.load(contentsOf: cfgURL) else {
            throw ModelLoadError("\(cfgURL.path): not a BERT config (model_type must be bert)")
        }
        var rng = RNG(seed: 0)
        let model = BertModel(config: config, rng: &rng)
        try PretrainedLoader.load(model, from: directory.appendingPathComponent("model.safetensors"), stripPrefixes: ["bert."])
        model.freeze()
        return model
    }
}

/// Names `encoder.layer.<i>` for the layers.
final class BertEncoderNames: Module {
    let layer: [Module]
    init(_ layers: [BertLayer]) { layer = layers }
    override func children() -> [(String, Any)] { [("layer", layer)] }
}

/// Pooling of hidden states into one vector a sequence.
public enum Pooling {
    /// Mean over real tokens: h [B, T, D], mask [B*T] (1 real, 0 padding) → [B, D].
    public static func mean(_ h: Tensor, mask: [Int], batch: Int, length: Int) -> Tensor {
        var w = [Float](repeating: 0, count: batch * length)
        for b in 0..<batch {
            let n = max(1, (0..<length).reduce(0) { $0 + (mask[b * length + $1] != 0 ? 1 : 0) })
            for t in 0..<length where mask[b * length + t] != 0 { w[b * length + t] = 1 / Float(n) }
        }
        return (h * Tensor(w, shape: [batch, length, 1])).sum(axis: 1)
    }
    /// Rows divided by their L2 norm (at least 1e-12, as torch.nn.functional.normalize).
    public static func l2Normalize(_ x: Tensor) -> Tensor {
        let n = (x * x).sum(axis: -1, keepDims: true).sqrt().clamp(min: 1e-12)
        return x / n
    }
}

/// A BERT encoder with a classification head on the mean-pooled hidden states:
/// logits = W · mean_t(h_t) + b. The head is named `classifier`.
public final class BertClassifier: Module {
    public let bert: BertModel
    public let classifier: Linear
    public init(bert: BertModel, classes: Int, rng: inout RNG) {
        self.bert = bert
        classifier = Linear(bert.hiddenSize, classes, rng: &rng)
    }
    public override func children() -> [(String, Any)] { [("bert", bert), ("classifier", classifier)] }
    /// Logits [B, classes].
    public func callAsFunction(_ x: TokenBatch, activeLayers: [Bool]? = nil) -> Tensor {
        classifier(Pooling.mean(bert(x, activeLayers: activeLayers), mask: x.mask, batch: x.batch, length: x.length))
    }
}

/// Loads a module's tensors from a safetensors checkpoint by name.
public enum PretrainedLoader {
    /// Copies every tensor of `module` from `url`. Names may carry one of `stripPrefixes` in the
    /// file. Throws naming the file and tensor on a missing tensor or a shape mismatch.
    public static func load(_ module: Module, from url: URL, stripPrefixes: [String] = []) throws {
        let ckpt: SafetensorsCheckpoint
        do { ckpt = try SafetensorsCheckpoint(url: url) } catch { throw ModelLoadError("\(url.path): \(error)") }
        for (name, t) in module.namedTensors() {
            guard let fileName = ([name] + stripPrefixes.map { $0 + name }).first(where: { ckpt.contains($0) }) else {
                throw ModelLoadError("\(url.path): no tensor '\(name)'")
            }
            let info = try ckpt.info(fileName)
            guard info.shape == t.shape else {
                throw ModelLoadError("\(url.path): tensor '\(fileName)' has shape \(info.shape), the model expects \(t.shape)")
            }
            try ckpt.copyFloats(fileName, into: UnsafeMutableBufferPointer(start: t.pointer, count: t.count))
        }
    }
}
