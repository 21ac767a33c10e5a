import Foundation
import FrugalCore
import FrugalNN
import FrugalModels

/// Which projections of a transformer layer get LoRA adapters.
public enum LoRATargets: String, Sendable, Codable, CaseIterable {
    /// Query, key, value and attention output projections.
    case attention
    /// The attention projections and the MLP's (BERT: intermediate/output dense; Llama: gate/up/down).
    case attentionAndMLP = "attention+mlp"
}

/// LoRA hyper-parameters: ΔW = (alpha / rank) · B A with A [rank, in], B [out, rank] (B starts at 0).
public struct LoRAConfig: Sendable, Codable, Equatable {
    public var rank: Int
    public var alpha: Float
    /// Dropout on the adapter input (training only).
    public var dropout: Float
    public var targets: LoRATargets
    public init(rank: Int = 8, alpha: Float = 16, dropout: Float = 0, targets: LoRATargets = .attention) {
        precondition(rank > 0, "LoRA rank must be positive, got \(rank)")
        precondition(dropout >= 0 && dropout < 1, "LoRA dropout must be in [0, 1), got \(dropout)")
        self.rank = rank; self.alpha = alpha; self.dropout = dropout; self.targets = targets
    }
}

/// Injecting, saving, loading and merging LoRA adapters of the pretrained BERT and Llama models.
///
///     let bert = try BertModel.load(directory: minilm)           // frozen
///     var rng = RNG(seed: 1)
///     LoRA.inject(into: bert, LoRAConfig(rank: 8, alpha: 16), rng: &rng)
///     let clf = BertClassifier(bert: bert, classes: 2, rng: &rng)  // adapters + head train
///     ...
///     try LoRA.save(clf, to: url)            // adapters and head only
///     LoRA.merge(clf)                        // fold ΔW into W for inference
public enum LoRA {
    static func wrap(_ p: inout Projection, _ c: LoRAConfig, _ rng: inout RNG) {
        guard let lin = p as? Linear else { return }   // already adapted
        p = LoRALinear(wrapping: lin, rank: c.rank, alpha: c.alpha, dropout: c.dropout, rng: &rng)
    }

    /// Wraps BERT's target projections in every layer with adapters; the base stays frozen.
    public static func inject(into bert: BertModel, _ c: LoRAConfig, rng: inout RNG) {
        bert.freeze()
        for layer in bert.layers {
            let sa = layer.attention.selfAttention
            wrap(&sa.query, c, &rng); wrap(&sa.key, c, &rng); wrap(&sa.value, c, &rng)
            wrap(&layer.attention.output.dense, c, &rng)
            if c.targets == .attentionAndMLP {
                wrap(&layer.intermediate.dense, c, &rng); wrap(&layer.output.dense, c, &rng)
            }
        }
    }

    /// Wraps Llama's target projections in every layer with adapters; the base stays frozen.
    public static func inject(into llama: LlamaForCausalLM, _ c: LoRAConfig, rng: inout RNG) {
        llama.freeze()
        for layer in llama.layers {
            let a = layer.selfAttn
            wrap(&a.qProj, c, &rng); wrap(&a.kProj, c, &rng); wrap(&a.vProj, c, &rng); wrap(&a.oProj, c, &rng)
            if c.targets == .attentionAndMLP {
                wrap(&layer.mlp.gateProj, c, &rng); wrap(&layer.mlp.upProj, c, &rng); wrap(&layer.mlp.downProj, c, &rng)
            }
        }
    }

    /// Every adapter of `module` with its dotted path.
    public static func adapters(in module: Module) -> [(String, LoRALinear)] {
        module.namedModules().compactMap { name, m in (m as? LoRALinear).map { (name, $0) } }
    }

    /// The tensors that fine-tuning trains and sends: the adapters' A and B and every other
    /// parameter that requires gradients (the classification head), by state-dict name.
    public static func trainableState(_ module: Module) -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (n, t) in module.namedParameters() where t.requiresGrad || n.hasSuffix(".lora_a") || n.hasSuffix(".lora_b") { out[n] = t }
        return out
    }

    /// Writes the trainable state (adapters + head) as safetensors, with the LoRA config in metadata.
    public static func save(_ module: Module, config: LoRAConfig? = nil, to url: URL) throws {
        var meta = ["format": "frugal-lora"]
        if let config {
            meta["rank"] = "\(config.rank)"; meta["alpha"] = "\(config.alpha)"; meta["targets"] = config.targets.rawValue
        }
        try Checkpoint.save(trainableState(module), to: url, metadata: meta)
    }

    /// Loads adapters (and head) saved by `save` into a module with the same injection. Throws on
    /// a tensor the file lacks, a tensor the module lacks, or a shape mismatch (naming the file
    /// and tensor). Adapters must not be merged while loading.
    public static func load(into module: Module, from url: URL) throws {
        let own = trainableState(module)
        let file = try Checkpoint.load(url)
        for name in file.keys.sorted() where own[name] == nil {
            throw ModelLoadError("\(url.path): tensor '\(name)' has no place in the model (different LoRA targets or head?)")
        }
        for (name, t) in own {
            guard let src = file[name] else { throw ModelLoadError("\(url.path): no tensor '\(name)'") }
            guard src.shape == t.shape else {
                throw ModelLoadError("\(url.path): tensor '\(name)' has shape \(src.shape), the model expects \(t.shape)")
            }
            withNoGrad { t.assign(src) }
        }
    }

    /// Folds every adapter into its base weight (W += (α/r) B A): inference then costs what the
    /// base model costs.
    public static func merge(_ module: Module) { for (_, a) in adapters(in: module) { a.merge() } }
    /// Takes merged adapters out of the base weights again (to continue training).
    public static func unmerge(_ module: Module) { for (_, a) in adapters(in: module) { a.unmerge() } }
}
