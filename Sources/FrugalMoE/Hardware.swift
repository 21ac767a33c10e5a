import Foundation

/// A machine for the simulator and the planner: the link experts load over and the speed of batch-1 compute.
///
/// Compute at batch 1 is memory-bound: an expert FFN (three GEMVs) takes `kernelOverhead + bytes/(memoryBandwidth ·
/// efficiency)`; attention likewise over the layer's resident bytes. Defaults are public figures, not measured here
/// (no GPU on this machine): PCIe 4.0 x16 ≈ 25 GB/s pinned, about half pageable; PCIe 5.0 x16 ≈ 50 GB/s pinned;
/// RTX 4090 1008 GB/s GDDR6X; A100-80GB 1935 GB/s HBM2e; H100 PCIe 2000 GB/s HBM2e (the SXM part has 3350 GB/s but
/// no PCIe-5 host link in the usual offload setting). With these, an expert computes 40-80x faster than it loads,
/// the range systems.md §1 quotes.
public struct HardwareProfile: Sendable, Codable, Equatable {
    public var name: String
    /// Pinned host-to-device (or disk-to-memory) bandwidth, bytes/s.
    public var linkBandwidth: Double
    /// Fraction of the pinned bandwidth reached from pageable memory.
    public var pageableFactor: Double
    /// Whether transfers come from pageable memory.
    public var pageable: Bool
    /// Fixed cost of one transfer, seconds.
    public var linkLatency: Double
    /// Memory bandwidth of the compute device, bytes/s.
    public var memoryBandwidth: Double
    /// Share of `memoryBandwidth` a batch-1 GEMV reaches.
    public var efficiency: Double
    /// Launch / dispatch cost of one expert FFN (seconds).
    public var kernelOverhead: Double
    /// Launch / dispatch cost of one layer's attention and router (seconds).
    public var attentionOverhead: Double
    /// Measured seconds of one layer's resident work (attention, router, norms), replacing the
    /// bandwidth model when set (a profile calibrated on the engine).
    public var attentionSeconds: Double?
    /// Seconds per token outside the MoE layers (embedding, final norm, LM head, sampling).
    public var tokenSeconds: Double = 0
    /// Prefetches move in chunks of this many bytes, so a demand load waits only for the chunk in
    /// progress; 0: a transfer, once started, runs to its end (the engine's I/O threads).
    public var chunkBytes: Double = 1_048_576
    /// Compute of bytes loaded during the current token relative to compute from resident memory (nil: 1):
    /// below 1 where the load path leaves them in a cache the compute shares (a CPU's I/O thread and L3).
    public var loadedComputeFactor: Double? = nil

    public init(name: String, linkBandwidth: Double, pageableFactor: Double = 0.5, pageable: Bool = false,
                linkLatency: Double = 10e-6, memoryBandwidth: Double, efficiency: Double = 0.8,
                kernelOverhead: Double = 15e-6, attentionOverhead: Double = 40e-6) {
        self.name = name; self.linkBandwidth = linkBandwidth; self.pageableFactor = pageableFactor
        self.pageable = pageable; self.linkLatency = linkLatency; self.memoryBandwidth = memoryBandwidth
        self.efficiency = efficiency; self.kernelOverhead = kernelOverhead; self.attentionOverhead = attentionOverhead
    }

    /// Effective load bandwidth, bytes/s.
    public var loadBandwidth: Double { pageable ? linkBandwidth * pageableFactor : linkBandwidth }

    /// Seconds to compute one expert of `bytes` at batch 1.
    public func expertCompute(bytes: Double) -> Double { kernelOverhead + bytes / (memoryBandwidth * efficiency) }

    /// Seconds for one layer's resident work over `bytes` of weights.
    public func attention(bytes: Double) -> Double {
        attentionSeconds ?? attentionOverhead + bytes / (memoryBandwidth * efficiency)
    }

    public static let rtx4090 = HardwareProfile(name: "rtx4090-pcie4", linkBandwidth: 25e9, memoryBandwidth: 1008e9)
    public static let a100 = HardwareProfile(name: "a100-pcie4", linkBandwidth: 25e9, memoryBandwidth: 1935e9)
    public static let h100 = HardwareProfile(name: "h100-pcie5", linkBandwidth: 50e9, memoryBandwidth: 2000e9)

    /// This CPU: experts come over a measured disk or emulated link; compute runs at a measured memory bandwidth.
    public static func cpu(linkBandwidth: Double, memoryBandwidth: Double, linkLatency: Double = 50e-6,
                           kernelOverhead: Double = 5e-6) -> HardwareProfile {
        HardwareProfile(name: "cpu", linkBandwidth: linkBandwidth, linkLatency: linkLatency,
                        memoryBandwidth: memoryBandwidth, efficiency: 1, kernelOverhead: kernelOverhead,
                        attentionOverhead: 2 * kernelOverhead)
    }

    public static let builtIn: [HardwareProfile] = [.rtx4090, .a100, .h100]

    /// Looks a built-in profile up by name (`rtx4090`, `a100`, `h100`, with or without the link suffix).
    public static func named(_ s: String) -> HardwareProfile? {
        let k = s.lowercased()
        return builtIn.first { $0.name == k || $0.name.hasPrefix(k + "-") || k.hasPrefix(String($0.name.prefix(4))) }
    }
}

/// A model's dimensions for the simulator: what sizes its experts and resident layers.
public struct ModelProfile: Sendable, Codable, Equatable {
    public var name: String
    public var layers: Int
    public var experts: Int
    public var topK: Int
    public var hidden: Int
    public var intermediate: Int
    /// Intermediate size of the shared expert(s), 0 when none (resident, counted in the layer's dense bytes).
    public var sharedIntermediate: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    /// Bytes per weight (2 for f16/bf16).
    public var dtypeBytes: Int

    public init(name: String, layers: Int, experts: Int, topK: Int, hidden: Int, intermediate: Int,
                sharedIntermediate: Int = 0, heads: Int, kvHeads: Int, headDim: Int, dtypeBytes: Int = 2) {
        self.name = name; self.layers = layers; self.experts = experts; self.topK = topK; self.hidden = hidden
        self.intermediate = intermediate; self.sharedIntermediate = sharedIntermediate; self.heads = heads
        self.kvHeads = kvHeads; self.headDim = headDim; self.dtypeBytes = dtypeBytes
    }

    /// Bytes of one expert (gate, up, down).
    public var expertBytes: Double { Double(3 * hidden * intermediate * dtypeBytes) }
    /// Resident bytes one layer reads per token: attention projections, router, shared expert.
    public var denseBytes: Double {
        let attn = 2 * hidden * heads * headDim + 2 * hidden * kvHeads * headDim
        return Double((attn + hidden * experts + 3 * hidden * sharedIntermediate) * dtypeBytes)
    }
    public var totalExpertBytes: Double { expertBytes * Double(layers * experts) }

    public static let mixtral8x7B = ModelProfile(name: "mixtral-8x7b", layers: 32, experts: 8, topK: 2, hidden: 4096,
                                                 intermediate: 14336, heads: 32, kvHeads: 8, headDim: 128)
    public static let qwen15MoE = ModelProfile(name: "qwen1.5-moe-a2.7b", layers: 24, experts: 60, topK: 4, hidden: 2048,
                                               intermediate: 1408, sharedIntermediate: 5632, heads: 16, kvHeads: 16,
                                               headDim: 128)
    public static let qwen3MoE = ModelProfile(name: "qwen3-30b-a3b", layers: 48, experts: 128, topK: 8, hidden: 2048,
                                              intermediate: 768, heads: 32, kvHeads: 4, headDim: 128)
    /// MLA attention approximated by its projection sizes (≈ 13.8M parameters a layer: 16 heads of 128 + 64 rope).
    public static let deepseekV2Lite = ModelProfile(name: "deepseek-v2-lite", layers: 27, experts: 64, topK: 6,
                                                    hidden: 2048, intermediate: 1408, sharedIntermediate: 2816,
                                                    heads: 16, kvHeads: 5, headDim: 160)
    public static let olmoe = ModelProfile(name: "olmoe-1b-7b", layers: 16, experts: 64, topK: 8, hidden: 2048,
                                           intermediate: 1024, heads: 16, kvHeads: 16, headDim: 128)

    public static let builtIn: [ModelProfile] = [.mixtral8x7B, .qwen15MoE, .qwen3MoE, .deepseekV2Lite, .olmoe]

    /// A built-in profile by (a prefix of) its name: `mixtral`, `qwen1.5`, `qwen3`, `deepseek`, `olmoe`.
    public static func named(_ s: String) -> ModelProfile? {
        let k = s.lowercased()
        return builtIn.first { $0.name == k } ?? builtIn.first { $0.name.hasPrefix(k) }
    }

    /// Reads a Hugging Face config.json (Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE, DeepSeek-V2 keys).
    public static func read(configPath: String) throws -> ModelProfile {
        guard let data = FileManager.default.contents(atPath: configPath) else {
            throw MoETraceError("\(configPath): cannot read model config")
        }
        guard let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw MoETraceError("\(configPath): not a JSON object")
        }
        func int(_ keys: [String]) -> Int? {
            for k in keys { if let v = obj[k] as? Int { return v }; if let v = obj[k] as? Double { return Int(v) } }
            return nil
        }
        func need(_ keys: [String]) throws -> Int {
            guard let v = int(keys), v > 0 else {
                throw MoETraceError("\(configPath): missing or invalid \(keys.joined(separator: " / "))")
            }
            return v
        }
        let hidden = try need(["hidden_size"])
        let layers = try need(["num_hidden_layers"])
        let experts = try need(["num_local_experts", "num_experts", "n_routed_experts"])
        let topK = try need(["num_experts_per_tok", "moe_top_k"])
        let inter = try need(["moe_intermediate_size", "intermediate_size"])
        let heads = try need(["num_attention_heads"])
        let kv = int(["num_key_value_heads"]) ?? heads
        let hd = int(["head_dim"]) ?? hidden / heads
        var shared = int(["shared_expert_intermediate_size"]) ?? 0
        if let n = int(["n_shared_experts"]) { shared = n * inter }
        let dt = (obj["torch_dtype"] as? String ?? obj["dtype"] as? String ?? "bfloat16")
        let bytes = dt.contains("32") ? 4 : 2
        let name = (obj["model_type"] as? String) ?? URL(fileURLWithPath: configPath).deletingLastPathComponent().lastPathComponent
        return ModelProfile(name: name, layers: layers, experts: experts, topK: topK, hidden: hidden,
                            intermediate: inter, sharedIntermediate: shared, heads: heads, kvHeads: kv, headDim: hd,
                            dtypeBytes: bytes)
    }

    /// Planner timings of every layer on `hardware` with per-layer predictor accuracy.
    public func timings(on hw: HardwareProfile, predictorAccuracy: [Double]) -> [LayerTiming] {
        (0..<layers).map { l in
            LayerTiming(expertBytes: expertBytes, loadBandwidth: hw.loadBandwidth, loadLatency: hw.linkLatency,
                        expertCompute: hw.expertCompute(bytes: expertBytes), attention: hw.attention(bytes: denseBytes),
                        predictorAccuracy: l < predictorAccuracy.count ? predictorAccuracy[l] : 0)
        }
    }
}
