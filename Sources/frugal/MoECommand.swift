import ArgumentParser
import Foundation
import FrugalCore
import FrugalData
import FrugalModels
import FrugalMoE
import FrugalNN

/// `frugal moe`: Mixture-of-Experts language models (create, logits, generate, train).
struct MoECommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "moe",
        abstract: "Mixture-of-Experts language models: create, train, run and generate.",
        discussion: """
        Model folders are Hugging Face checkpoints (config.json + safetensors, sharded or not) in the
        Mixtral, Qwen2-MoE, Qwen3-MoE or OLMoE layout. The tokenizer is the folder's tokenizer.json,
        or Frugal's byte-level tokenizer (ids 0-255 = UTF-8 bytes, 256 = <eos>) when config.json has
        "frugal_tokenizer": "byte" (what `create` and `train` write).
        """,
        subcommands: [MoECreate.self, MoELogits.self, MoEGenerate.self, MoETrain.self, MoEPack.self, MoEPlanCommand.self, MoESimulateCommand.self, MoEBench.self, MoECalibrate.self])
}

/// Options that choose how routed experts are held (`--policy`, `--memory-budget`).
struct MoEPolicyOptions: ParsableArguments {
    @Option(help: "Expert policy: full, on-demand, lru, lfu, prefetch or moepic.")
    var policy: String = "full"
    @Option(help: "Fast-tier budget for expert bytes: bytes (512MiB, 2GB) or a share of all expert bytes (40%).")
    var memoryBudget: String?
    @Option(help: "Slow tier on disk: the offload store written by `frugal moe pack`.") var store: String?
    @Option(help: "Slow tier in host memory behind an emulated link of this bandwidth (e.g. 25GB/s).") var link: String?
    @Option(help: "MoEpic's split ratio θ (share of each expert's intermediate rows in the cached top).") var theta: Double = 0.4
    @Option(help: "auto: per-layer budgets B_l and split ratios θ_l from the planner (moepic; needs routing: --plan-trace, or a *.route.csv in the model folder).")
    var plan: String?
    @Option(help: "Routing trace the planner profiles hit rates from (e.g. one recorded with --record-trace).") var planTrace: String?
    @Option(help: "Next-layer prediction accuracy the planner assumes.") var predictorAccuracy = 0.9
    @Option(help: "--plan auto: this machine's timings from `frugal moe calibrate` (default: measure link and memory bandwidth now).")
    var calibration: String?
    @Option(help: "Record the engine's routing to this file (route_trace v1 CSV, the format of $FRUGAL_DATA/moe-traces).")
    var recordTrace: String?
    @OptionGroup var design: MoETuningOptions

    func tuning() throws -> PolicyTuning { try design.tuning() }

    /// Installs the executor for the chosen policy on `model`; returns the budget in bytes (nil: none).
    func install(on model: MoEModel) throws -> Int? {
        if let recordTrace { try startRecording(model, to: recordTrace) }  // MoEPlanWiring.swift
        let budget = try memoryBudget.map { try parseMoEBudget($0, expertBytes: model.expertBytes) }
        if policy == "full" && store == nil && link == nil {
            model.executor = ResidentExperts(source: model)
            return budget
        }
        return try installOffloading(on: model)  // MoEOffloadCommands.swift
    }
}

/// Design choices of the predicting policies (`prefetch`, `moepic`).
struct MoETuningOptions: ParsableArguments {
    @Option(help: "prefetch/moepic: prefetched tops go to the layer cache (evicting its lowest-ranked top) or to a staging reserve: cache, staging, or default (prefetch: cache, moepic: staging).")
    var prefetchInto = "default"
    @Option(help: "prefetch/moepic: experts prefetched per layer beyond top-k (the next most likely by router logit).")
    var extraPrefetch = 0
    @Option(help: "moepic: priority decay ρ per window in P = μ·ρ^(ν/ω).") var rho = 0.25
    @Option(help: "moepic: priority window ω in tokens.") var omega = 128.0
    @Flag(help: "moepic: compute a segment only once all of it has loaded (default: chunk by chunk as it lands).")
    var noStreaming = false
    @Flag(help: "moepic: the planner keeps prefetching in every layer (default: it may turn it off where it does not pay).")
    var alwaysPrefetch = false

    /// The design choices given by --prefetch-into, --extra-prefetch, --rho and --omega.
    func tuning() throws -> PolicyTuning {
        guard ["cache", "staging", "default"].contains(prefetchInto) else { throw CLIError("--prefetch-into '\(prefetchInto)': cache, staging or default") }
        guard extraPrefetch >= 0 else { throw CLIError("--extra-prefetch must be >= 0") }
        guard rho > 0, rho <= 1, omega > 0 else { throw CLIError("--rho must be in (0, 1] and --omega > 0") }
        return PolicyTuning(prefetchIntoCache: prefetchInto == "default" ? nil : prefetchInto == "cache", extraPrefetch: extraPrefetch, rho: rho, omega: omega,
                            streamChunks: !noStreaming, plannerMayStopPrefetch: !alwaysPrefetch)
    }
}

/// Parses `512MiB`, `2GB`, `1e9`, `123456` or `40%` (of `expertBytes`) into bytes.
func parseMoEBudget(_ s: String, expertBytes: Int) throws -> Int {
    let t = s.trimmingCharacters(in: .whitespaces)
    if t.hasSuffix("%") {
        guard let p = Double(t.dropLast()), p > 0, p <= 100 else { throw CLIError("--memory-budget '\(s)': a share must be in (0, 100]%") }
        return Int(Double(expertBytes) * p / 100)
    }
    let units: [(String, Double)] = [("GiB", 1_073_741_824), ("MiB", 1_048_576), ("KiB", 1024), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3),
                                     ("G", 1_073_741_824), ("M", 1_048_576), ("K", 1024), ("B", 1)]
    for (u, m) in units where t.hasSuffix(u) {
        guard let v = Double(t.dropLast(u.count).trimmingCharacters(in: .whitespaces)), v > 0 else { break }
        return Int(v * m)
    }
    if let v = Double(t), v > 0 { return Int(v) }
    throw CLIError("--memory-budget '\(s)': expected bytes (512MiB, 2GB, 123456) or a share (40%)")
}

func parseMoEDType(_ s: String) throws -> DType {
    switch s.lowercased() {
    case "f32", "float32": return .float32
    case "f16", "float16": return .float16
    case "bf16", "bfloat16": return .bfloat16
    default: throw CLIError("--dtype '\(s)': expected f32, f16 or bf16")
    }
}

func parseMoELayout(_ s: String) throws -> MoELayout {
    guard let l = MoELayout(rawValue: s.lowercased()) else {
        throw CLIError("--layout '\(s)': expected \(MoELayout.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return l
}

func loadMoEModel(_ path: String) throws -> MoEModel {
    do { return try MoEModel(directory: URL(fileURLWithPath: path)) } catch let e as CustomStringConvertible {
        throw CLIError("\(e)")
    }
}

struct MoECreate: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Write a random-weight MoE checkpoint.")
    @Option(help: "mixtral, qwen2-moe, qwen3-moe or olmoe.") var layout = "mixtral"
    @Option var layers = 4
    @Option var experts = 8
    @Option(name: .customLong("top-k")) var topK = 2
    @Option var hidden = 256
    @Option(help: "Width of each expert.") var intermediate = 512
    @Option(help: "Width of the Qwen2-MoE shared expert (default: --intermediate).") var sharedIntermediate: Int?
    @Option var heads = 8
    @Option var kvHeads = 4
    @Option(help: "Vocabulary size (>= 257 for the byte-level tokenizer).") var vocab = 257
    @Option var maxPositions = 4096
    @Option(help: "f32, f16 or bf16.") var dtype = "f32"
    @Option(help: "Largest shard in bytes (e.g. 100MB); default: one file.") var shardSize: String?
    @Option var seed: UInt64 = 0
    @Option(help: "Standard deviation of the random weights.") var std: Float = 0.02
    @Option(help: "Output folder.") var out: String

    func run() throws {
        let lay = try parseMoELayout(layout)
        guard layers > 0, experts > 0, topK > 0, topK <= experts, hidden > 0, intermediate > 0, heads > 0, kvHeads > 0,
              heads % kvHeads == 0, hidden % heads == 0, (hidden / heads) % 2 == 0, vocab > 0, maxPositions > 0 else {
            throw CLIError("bad sizes: need positive sizes, top-k <= experts, heads divisible by kv-heads, an even head size hidden/heads")
        }
        let dt = try parseMoEDType(dtype)
        let shard = try shardSize.map { try parseMoEBudget($0, expertBytes: 0) }
        let cfg = MoEModelConfig(layout: lay, vocabSize: vocab, hiddenSize: hidden, layers: layers, heads: heads, kvHeads: kvHeads,
                                 experts: experts, topK: topK, expertIntermediate: intermediate,
                                 sharedIntermediate: sharedIntermediate, maxPositions: maxPositions)
        let url = URL(fileURLWithPath: out)
        let t0 = now()
        try MoECheckpointWriter.createRandom(cfg, dtype: dt, shardBytes: shard, seed: seed, std: std, to: url)
        let params = MoECheckpointWriter.tensorShapes(cfg).reduce(0) { $0 + Tensor.product($1.shape) }
        let expertParams = layers * experts * 3 * hidden * intermediate
        print("wrote \(out): \(lay.rawValue), \(layers) layers x \(experts) experts (top-\(topK)), hidden \(hidden), "
              + "\(CheckpointInfo.formatCount(params)) parameters (\(CheckpointInfo.formatCount(expertParams)) in experts), "
              + "\(CheckpointInfo.formatBytes(params * dt.size)) \(dtype) in \(fmt(now() - t0, 1)) s")
    }
}

struct MoELogits: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "logits", abstract: "Print the last position's logits.")
    @Option(help: "Model folder.") var model: String
    @Option(help: "Token ids, comma-separated (e.g. 1,2,3).") var tokens: String
    @OptionGroup var policy: MoEPolicyOptions
    @Option(help: "Also write {\"logits\": [...]} to this file.") var json: String?

    func run() throws {
        let ids = try tokens.split(separator: ",").map { s -> Int in
            guard let v = Int(s.trimmingCharacters(in: .whitespaces)) else { throw CLIError("--tokens: '\(s)' is not an integer") }
            return v
        }
        guard !ids.isEmpty else { throw CLIError("--tokens is empty") }
        let m = try loadMoEModel(model)
        _ = try policy.install(on: m)
        let logits: [Float]
        do { logits = try m.forward(ids, cache: m.makeCache(capacity: ids.count)).array } catch let e as MoEError { throw CLIError("\(e)") }
        try policy.finishRecording()
        print(logits.map { String($0) }.joined(separator: " "))
        if let json {
            struct Out: Encodable { var logits: [Float] }
            try writeJSON(Out(logits: logits), to: json)
        }
    }
}

struct MoEGenerate: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "generate", abstract: "Generate text, streaming tokens, then print timings.")
    @Option(help: "Model folder.") var model: String
    @Option(help: "Prompt text.") var prompt: String
    @Option(help: "Tokens to generate.") var maxTokens = 32
    @Option(help: "0: greedy.") var temperature: Float = 0
    @Option var seed: UInt64 = 0
    @OptionGroup var policy: MoEPolicyOptions
    @Flag(help: "Do not stop at the end-of-sequence token.") var ignoreEos = false
    @Option(help: "Write the timings and generated text as JSON to this file.") var json: String?

    func run() throws {
        let m = try loadMoEModel(model)
        let budget = try policy.install(on: m)
        let tok: any Tokenizer
        do { tok = try MoETokenizer.load(directory: URL(fileURLWithPath: model)) } catch { throw CLIError("\(error)") }
        var ids = tok.encode(prompt)
        if ids.isEmpty, let bos = m.config.bosTokenID { ids = [bos] }
        guard !ids.isEmpty else { throw CLIError("--prompt encodes to no tokens") }
        guard ids.count <= m.config.maxPositions else {
            throw CLIError("prompt of \(ids.count) tokens exceeds max_position_embeddings \(m.config.maxPositions) of \(model)")
        }
        var stop = Set(m.config.eosTokenIDs)
        if let bt = tok as? ByteTokenizer, let e = bt.eos { stop.insert(e) }
        if ignoreEos { stop = [] }
        let gen = MoEGenerator(model: m)
        var pending: [Int] = []
        var printed = ""
        print(prompt, terminator: "")
        flushStdout()
        let result: (tokens: [Int], stats: MoEGenerationStats)
        do {
            result = try gen.generate(prompt: ids, maxTokens: maxTokens, temperature: temperature, seed: seed, stop: stop) { t in
                // Stream: print the new text once it decodes (multi-byte characters may span tokens).
                pending.append(t)
                let text = tok.decode(pending)
                if !text.contains("\u{FFFD}") {
                    print(text, terminator: "")
                    printed += text
                    pending.removeAll()
                    flushStdout()
                }
            }
        } catch let e as MoEError { throw CLIError("\(e)") }
        if !pending.isEmpty { let text = tok.decode(pending); print(text, terminator: ""); printed += text }
        print("")
        try policy.finishRecording()
        var stats = result.stats
        stats.policy = policy.policy
        stats.memoryBudgetBytes = budget ?? stats.memoryBudgetBytes
        var rows: [[String]] = [
            ["policy", stats.policy],
            ["prompt tokens", "\(stats.promptTokens)"],
            ["generated tokens", "\(stats.generatedTokens)"],
            ["time to first token", fmt(stats.timeToFirstToken * 1000, 1) + " ms"],
            ["time per output token", fmt(stats.timePerOutputToken * 1000, 2) + " ms"],
            ["tokens/s", fmt(stats.tokensPerSecond, 2)],
        ]
        if let b = stats.memoryBudgetBytes { rows.append(["memory budget", CheckpointInfo.formatBytes(b)]) }
        if let h = stats.hitRatePerLayer {
            rows.append(["hit rate per layer", h.map { fmt($0 * 100, 0) + "%" }.joined(separator: " ")])
        }
        if let p = stats.predictionAccuracy { rows.append(["prediction accuracy", fmt(p * 100, 1) + "%"]) }
        if let b = stats.bytesLoaded { rows.append(["bytes loaded", CheckpointInfo.formatBytes(b)]) }
        if let s = stats.stallSeconds { rows.append(["stalled on loads", fmt(s * 1000, 1) + " ms"]) }
        if let p = stats.peakFastTierBytes { rows.append(["peak fast-tier bytes", CheckpointInfo.formatBytes(p)]) }
        printTable(["", "value"], rows)
        if let json {
            struct Out: Encodable { var prompt: String; var promptIds: [Int]; var tokens: [Int]; var text: String; var stats: MoEGenerationStats }
            try writeJSON(Out(prompt: prompt, promptIds: ids, tokens: result.tokens, text: printed, stats: stats), to: json)
        }
    }
}

struct MoETrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a small Mixtral-layout MoE LM on text (byte-level) with the load-balancing loss.",
        discussion: "Default data: $FRUGAL_DATA/text/tinyshakespeare.txt. Saves config.json + model.safetensors to --out.")
    @Option(help: "Text file (default $FRUGAL_DATA/text/tinyshakespeare.txt).") var data: String?
    @Option var layers = 8
    @Option var experts = 8
    @Option(name: .customLong("top-k")) var topK = 2
    @Option var hidden = 128
    @Option var intermediate = 256
    @Option var heads = 4
    @Option var kvHeads = 2
    @Option(help: "Tokens per training sequence.") var context = 64
    @Option var batch = 16
    @Option var steps = 600
    @Option var lr: Float = 3e-3
    @Option(help: "Coefficient of the load-balancing (Switch/Mixtral) auxiliary loss.") var auxCoef: Float = 0.01
    @Option(help: "Stop (and save) after this many minutes.") var maxMinutes: Double = 20
    @Option(help: "Print a progress line every N steps.") var every = 10
    @Option(help: "f32, f16 or bf16 for the saved weights.") var dtype = "f32"
    @Option var seed: UInt64 = 0
    @Option(help: "Start from this checkpoint (saved by `moe train` with the same sizes) to train longer.") var initFrom: String?
    @Option(help: "Output folder.") var out: String

    func run() throws {
        let path = data ?? (DataPaths.text as NSString).appendingPathComponent("tinyshakespeare.txt")
        guard let bytes = FileManager.default.contents(atPath: path) else {
            throw CLIError("cannot read \(path) (set --data or $FRUGAL_DATA; \(DataPaths.downloadHint("tinyshakespeare")))")
        }
        let ids = [UInt8](bytes).map(Int.init)
        guard ids.count > 10 * (context + 1) else { throw CLIError("\(path): too short (\(ids.count) bytes) for --context \(context)") }
        guard hidden % heads == 0, heads % kvHeads == 0, (hidden / heads) % 2 == 0, topK <= experts else {
            throw CLIError("bad sizes: hidden divisible by heads (even head size), heads by kv-heads, top-k <= experts")
        }
        let dt = try parseMoEDType(dtype)
        let split = ids.count * 9 / 10
        let cfg = MoEModelConfig(layout: .mixtral, vocabSize: 257, hiddenSize: hidden, layers: layers, heads: heads, kvHeads: kvHeads,
                                 experts: experts, topK: topK, expertIntermediate: intermediate, maxPositions: max(4096, context),
                                 ropeTheta: 10000, rmsNormEps: 1e-5)
        let model = MoETrainingModel(config: cfg, seed: seed)
        if let initFrom {
            do { try model.load(from: URL(fileURLWithPath: initFrom)) } catch { throw CLIError("--init-from: \(error)") }
            print("starting from \(initFrom)")
        }
        let opt = AdamW(model.trainableParameters(), lr: lr, weightDecay: 0.01)
        var rng = RNG(seed: seed &+ 1)
        func sample(_ lo: Int, _ hi: Int) -> (x: [Int], y: [Int]) {
            var x: [Int] = [], y: [Int] = []
            for _ in 0..<batch {
                let s = lo + Int(rng.next() % UInt64(hi - lo - context - 1))
                x += ids[s..<(s + context)]; y += ids[(s + 1)...(s + context)]
            }
            return (x, y)
        }
        print("training \(layers) layers x \(experts) experts (top-\(topK)), hidden \(hidden), \(CheckpointInfo.formatCount(model.parameterCount)) parameters on \(path) (\(ids.count) bytes)")
        let t0 = now()
        var step = 0
        var lossAvg: Float = 0, auxAvg: Float = 0
        var usage = [[Int]](repeating: [Int](repeating: 0, count: experts), count: layers)
        while step < steps && now() - t0 < maxMinutes * 60 {
            let warm: Float = Float(min(step + 1, 50)) / 50
            let cosine: Float = 0.5 * (1 + Float(cos(Double.pi * Double(step) / Double(steps))))
            opt.learningRate = lr * warm * (0.1 + 0.9 * cosine)
            let (x, y) = sample(0, split)
            let (logits, aux, counts) = model.forward(x, batch: batch, length: context)
            let ce = Loss.crossEntropy(logits, y)
            let loss = ce + aux * auxCoef
            opt.zeroGrad()
            loss.backward()
            _ = clipGradNorm(model.trainableParameters(), maxNorm: 1)
            opt.step()
            lossAvg += ce.item; auxAvg += aux.item
            for l in 0..<layers { for e in 0..<experts { usage[l][e] += counts[l][e] } }
            step += 1
            if step % every == 0 || step == steps {
                let n = Float(step % every == 0 ? every : step % every)
                // Balance: the busiest expert's share of routed slots, averaged over layers (1/E is perfect).
                let busiest = usage.map { Float($0.max()!) / Float(max($0.reduce(0, +), 1)) }.reduce(0, +) / Float(layers)
                print("step \(step)/\(steps)  loss \(fmt(Double(lossAvg / n), 3))  aux \(fmt(Double(auxAvg / n), 3))  "
                      + "busiest expert \(fmt(Double(busiest) * 100, 1))%  lr \(String(format: "%.2e", opt.learningRate))  "
                      + "\(fmt(Double(step * batch * context) / (now() - t0), 0)) tok/s  \(fmt(now() - t0, 0)) s")
                flushStdout()
                lossAvg = 0; auxAvg = 0
                usage = [[Int]](repeating: [Int](repeating: 0, count: experts), count: layers)
            }
        }
        // Validation loss on held-out text.
        var val: Float = 0
        let evalBatches = 4
        withNoGrad {
            for _ in 0..<evalBatches {
                let (x, y) = sample(split, ids.count)
                val += Loss.crossEntropy(model.forward(x, batch: batch, length: context).logits, y).item
            }
        }
        print("validation loss \(fmt(Double(val / Float(evalBatches)), 3)) (nats/byte) after \(step) steps, \(fmt(now() - t0, 0)) s")
        try model.save(to: URL(fileURLWithPath: out), dtype: dt)
        print("saved \(out) (mixtral layout, byte-level tokenizer)")
    }
}
