import Foundation
import FrugalCore
import FrugalData

/// What one generation run measured. The offload fields are nil for the `full` policy; offloading
/// executors fill them through `ExpertExecutorReporting`.
public struct MoEGenerationStats: Codable, Sendable, Equatable {
    public var policy: String = "full"
    public var promptTokens = 0
    public var generatedTokens = 0
    /// Seconds from the start of the prefill until the first generated token is known.
    public var timeToFirstToken = 0.0
    /// Mean seconds per generated token after the first (time per output token).
    public var timePerOutputToken = 0.0
    /// Generated tokens after the first, per second of decoding (1 / TPOT).
    public var tokensPerSecond = 0.0
    public var totalSeconds = 0.0
    /// Fraction of expert requests served from the fast tier, per layer.
    public var hitRatePerLayer: [Double]?
    /// Fraction of next-layer expert predictions that were right.
    public var predictionAccuracy: Double?
    /// Bytes of expert data loaded from the slow tier.
    public var bytesLoaded: Int?
    /// Seconds spent waiting for expert loads.
    public var stallSeconds: Double?
    /// Largest number of expert bytes held by the fast tier at once.
    public var peakFastTierBytes: Int?
    /// The memory budget the run used, in bytes (nil: unlimited).
    public var memoryBudgetBytes: Int?

    public init() {}
}

/// Executors that measure offload statistics implement this; the generator resets them before a
/// run and collects them after.
public protocol ExpertExecutorReporting: AnyObject {
    func resetStatistics()
    func report(into stats: inout MoEGenerationStats)
}

/// Tokenizer of an MoE model folder: its `tokenizer.json` when present, else the byte-level
/// tokenizer (ids 0-255 are UTF-8 bytes, 256 is `<eos>`) when config.json says
/// `"frugal_tokenizer": "byte"` (what `frugal moe create` and `frugal moe train` write).
public enum MoETokenizer {
    /// The config.json key naming Frugal's fallback tokenizer.
    public static let configKey = "frugal_tokenizer"

    public static func load(directory: URL) throws -> any Tokenizer {
        let json = directory.appendingPathComponent("tokenizer.json")
        if FileManager.default.fileExists(atPath: json.path) { return try TokenizerLoader.load(path: json.path) }
        let cfg = directory.appendingPathComponent("config.json")
        if let data = try? Data(contentsOf: cfg), let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
           let kind = obj[configKey] as? String {
            guard kind == "byte" else { throw MoEError.unsupported("\(cfg.path): \(configKey) '\(kind)' (only 'byte')") }
            return ByteTokenizer(specialTokens: ["<eos>"])
        }
        throw MoEError.badCheckpoint("\(directory.path) has no tokenizer.json and config.json has no \"\(configKey)\": \"byte\"")
    }

    /// Adds `"frugal_tokenizer": "byte"` to the config.json in `directory`.
    public static func markByteLevel(directory: URL) throws {
        let url = directory.appendingPathComponent("config.json")
        guard var obj = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any] else {
            throw MoEError.badConfig("\(url.path) is not a JSON object")
        }
        obj[configKey] = "byte"
        var text = String(decoding: try JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys]), as: UTF8.self)
        // transformers' strict config classes reject `0` for float fields: write integral floats as `0.0`.
        for key in ["router_jitter_noise", "router_aux_loss_coef", "rms_norm_eps", "rope_theta", "initializer_range", "attention_dropout"] {
            text = text.replacingOccurrences(of: "(\"\(key)\" ?: ?-?[0-9]+)(?=[,\\s}])", with: "$1.0", options: .regularExpression)
        }
        try Data(text.utf8).write(to: url, options: .atomic)
    }
}

/// Token-by-token generation with a KV cache: greedy, or sampling with a temperature.
public final class MoEGenerator {
    public let model: MoEModel
    public init(model: MoEModel) { self.model = model }

    /// Generates up to `maxTokens` tokens after `prompt`.
    /// - Parameters:
    ///   - temperature: 0 for greedy (argmax, lowest id on ties); otherwise softmax sampling.
    ///   - stop: ids that end generation (included in the output).
    ///   - onToken: called with each token as soon as it is chosen.
    /// - Returns: the generated ids and the timings.
    public func generate(prompt: [Int], maxTokens: Int, temperature: Float = 0, seed: UInt64 = 0, stop: Set<Int> = [],
                         onToken: ((Int) -> Void)? = nil) throws -> (tokens: [Int], stats: MoEGenerationStats) {
        guard !prompt.isEmpty else { throw MoEError.badInput("empty prompt") }
        guard maxTokens >= 0 else { throw MoEError.badInput("maxTokens must be >= 0, got \(maxTokens)") }
        let c = model.config
        guard prompt.count <= c.maxPositions else {
            throw MoEError.badInput("prompt of \(prompt.count) tokens exceeds max_position_embeddings \(c.maxPositions)")
        }
        let reporting = model.executor as? ExpertExecutorReporting
        reporting?.resetStatistics()
        var stats = MoEGenerationStats()
        stats.promptTokens = prompt.count
        var rng = RNG(seed: seed)
        let budget = min(maxTokens, c.maxPositions - prompt.count + 1)
        let cache = model.makeCache(capacity: min(c.maxPositions, prompt.count + budget))
        var out: [Int] = []
        out.reserveCapacity(budget)
        if budget <= 0 { return (out, stats) }
        let start = DispatchTime.now().uptimeNanoseconds
        var logits = try model.forward(prompt, cache: cache)
        var firstAt = start
        while true {
            let next = pick(logits, temperature: temperature, rng: &rng)
            out.append(next)
            if out.count == 1 { firstAt = DispatchTime.now().uptimeNanoseconds }
            onToken?(next)
            if out.count >= budget || stop.contains(next) || cache.length >= c.maxPositions { break }
            logits = try model.forward([next], cache: cache)
        }
        let end = DispatchTime.now().uptimeNanoseconds
        stats.generatedTokens = out.count
        stats.timeToFirstToken = Double(firstAt - start) / 1e9
        stats.totalSeconds = Double(end - start) / 1e9
        if out.count > 1 {
            stats.timePerOutputToken = Double(end - firstAt) / 1e9 / Double(out.count - 1)
            stats.tokensPerSecond = 1 / stats.timePerOutputToken
        }
        reporting?.report(into: &stats)
        return (out, stats)
    }

    /// Greedy tokens after `prompt` (for tests and checks).
    public func generateTokens(prompt: [Int], maxTokens: Int) throws -> [Int] {
        try generate(prompt: prompt, maxTokens: maxTokens).tokens
    }

    func pick(_ logits: Tensor, temperature: Float, rng: inout RNG) -> Int {
        let n = logits.count
        let p = logits.pointer
        if temperature <= 0 { return VectorOps.argmax(p, count: n) }
        var probs = [Float](repeating: 0, count: n)
        probs.withUnsafeMutableBufferPointer { b in
            for i in 0..<n { b[i] = p[i] / temperature }
            VectorOps.softmax(b.baseAddress!, into: b.baseAddress!, count: n)
        }
        let u = rng.uniform()
        var acc: Float = 0
        for i in 0..<n {
            acc += probs[i]
            if u < acc { return i }
        }
        return n - 1
    }
}
