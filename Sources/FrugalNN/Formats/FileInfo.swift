import Foundation

/// A summary of a checkpoint for `frugal data info PATH`: its tensors (dtype, shape, size), totals
/// by dtype, and metadata. Works on `.safetensors` files, sharded safetensors folders or index
/// files, `.gguf` files, and folders holding one GGUF file. Print it (`description` is a table) or
/// encode it as JSON (`Codable`) for `--json`.
///
/// ```swift
/// let info = try CheckpointInfo.describe(URL(fileURLWithPath: path))
/// print(info.table(maxTensors: 20))
/// ```
public struct CheckpointInfo: Sendable, Codable, Equatable, CustomStringConvertible {
    /// One tensor. `shape` is in PyTorch order for every format (GGUF dims reversed).
    public struct Tensor: Sendable, Codable, Equatable {
        public var name: String
        /// Stored element type: a safetensors dtype (`BF16`) or a ggml type (`Q4_1`).
        public var dtype: String
        public var shape: [Int]
        public var elements: Int
        public var bytes: Int
        /// The shard holding it (sharded checkpoints only).
        public var file: String?
    }

    /// Totals for one dtype.
    public struct DTypeTotal: Sendable, Codable, Equatable {
        public var dtype: String
        public var tensors: Int
        public var elements: Int
        public var bytes: Int
    }

    /// A metadata entry, its value summarised to one line (long arrays as `[49152 x string]`).
    public struct Entry: Sendable, Codable, Equatable {
        public var key: String
        public var value: String
    }

    /// The path described.
    public var path: String
    /// `safetensors`, `safetensors-sharded` or `gguf`.
    public var format: String
    /// GGUF version (nil for safetensors).
    public var formatVersion: Int?
    /// The files read (names relative to the folder for sharded checkpoints).
    public var files: [String]
    /// Total size of those files on disk.
    public var fileBytes: Int
    public var tensorCount: Int
    /// Total number of elements over all tensors.
    public var parameterCount: Int
    /// Total bytes of tensor data.
    public var tensorBytes: Int
    /// Totals per dtype, largest byte count first.
    public var dtypes: [DTypeTotal]
    /// safetensors `__metadata__` (and the index's metadata), or GGUF key/values, in file order.
    public var metadata: [Entry]
    /// A summary of `config.json` beside a checkpoint folder, if there is one.
    public var config: [Entry]?
    /// All tensors in file order.
    public var tensors: [Tensor]

    /// Describes the checkpoint at `url`.
    public static func describe(_ url: URL) throws -> CheckpointInfo {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else {
            throw FormatIOError("\(url.path): no such file or folder")
        }
        if isDir.boolValue {
            let contents = (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
            var info: CheckpointInfo
            if contents.contains(where: { $0.hasSuffix(".safetensors") || $0.hasSuffix(".safetensors.index.json") }) {
                info = try describeSafetensors(SafetensorsCheckpoint(url: url), path: url.path)
            } else {
                let ggufs = contents.filter { $0.hasSuffix(".gguf") }.sorted()
                guard ggufs.count == 1 else {
                    throw FormatIOError(ggufs.isEmpty
                        ? "\(url.path): folder holds no .safetensors or .gguf files"
                        : "\(url.path): folder holds several .gguf files (\(ggufs.joined(separator: ", "))); name one")
                }
                info = try describeGGUF(GGUFFile(url: url.appendingPathComponent(ggufs[0])), path: url.path)
            }
            let configURL = url.appendingPathComponent("config.json")
            if FileManager.default.fileExists(atPath: configURL.path) { info.config = configSummary(configURL) }
            return info
        }
        if url.pathExtension == "json" {
            return try describeSafetensors(SafetensorsCheckpoint(url: url), path: url.path)
        }
        if url.pathExtension == "gguf" || hasGGUFMagic(url) {
            return try describeGGUF(GGUFFile(url: url), path: url.path)
        }
        return try describeSafetensors(SafetensorsCheckpoint(url: url), path: url.path)
    }

    static func hasGGUFMagic(_ url: URL) -> Bool {
        guard let h = FileHandle(forReadingAtPath: url.path) else { return false }
        defer { try? h.close() }
        return (try? h.read(upToCount: 4)) == Data("GGUF".utf8)
    }

    static func describeSafetensors(_ ckpt: SafetensorsCheckpoint, path: String) -> CheckpointInfo {
        let sharded = ckpt.files.count > 1 || ckpt.indexURL != nil
        var tensors: [Tensor] = []
        for f in ckpt.files {
            for t in f.tensors {
                tensors.append(Tensor(name: t.name, dtype: t.dtypeString, shape: t.shape, elements: t.elementCount,
                                      bytes: t.byteCount, file: sharded ? f.url.lastPathComponent : nil))
            }
        }
        var meta = ckpt.metadata.keys.sorted().map { Entry(key: $0, value: oneLine(ckpt.metadata[$0]!)) }
        meta += ckpt.indexMetadata.keys.sorted().map { Entry(key: "index.\($0)", value: oneLine(ckpt.indexMetadata[$0]!)) }
        var files = ckpt.files.map { sharded ? $0.url.lastPathComponent : $0.url.path }
        var bytes = ckpt.files.reduce(0) { $0 + $1.fileSize }
        if let index = ckpt.indexURL {
            files.append(index.lastPathComponent)
            bytes += (try? FileManager.default.attributesOfItem(atPath: index.path)[.size] as? Int) ?? 0
        }
        return make(path: path, format: sharded ? "safetensors-sharded" : "safetensors", version: nil, files: files,
                    fileBytes: bytes, tensors: tensors, metadata: meta)
    }

    static func describeGGUF(_ g: GGUFFile, path: String) -> CheckpointInfo {
        let tensors = g.tensors.map {
            Tensor(name: $0.name, dtype: $0.type.name, shape: $0.shape, elements: $0.elementCount, bytes: $0.byteCount, file: nil)
        }
        let meta = g.metadataKeys.map { Entry(key: $0, value: g.metadata[$0]!.summary) }
        return make(path: path, format: "gguf", version: g.version, files: [g.url.path], fileBytes: g.fileSize,
                    tensors: tensors, metadata: meta)
    }

    static func make(path: String, format: String, version: Int?, files: [String], fileBytes: Int,
                     tensors: [Tensor], metadata: [Entry]) -> CheckpointInfo {
        var byType: [String: DTypeTotal] = [:]
        for t in tensors {
            var d = byType[t.dtype] ?? DTypeTotal(dtype: t.dtype, tensors: 0, elements: 0, bytes: 0)
            d.tensors += 1
            d.elements += t.elements
            d.bytes += t.bytes
            byType[t.dtype] = d
        }
        let dtypes = byType.values.sorted { ($0.bytes, $1.dtype) > ($1.bytes, $0.dtype) }
        return CheckpointInfo(path: path, format: format, formatVersion: version, files: files, fileBytes: fileBytes,
                              tensorCount: tensors.count, parameterCount: tensors.reduce(0) { $0 + $1.elements },
                              tensorBytes: tensors.reduce(0) { $0 + $1.bytes }, dtypes: dtypes, metadata: metadata,
                              config: nil, tensors: tensors)
    }

    static func configSummary(_ url: URL) -> [Entry] {
        let config: HFModelConfig
        do { config = try HFModelConfig.load(contentsOf: url) } catch {
            return [Entry(key: "error", value: oneLine("\(error)"))]
        }
        var e = [Entry(key: "model_type", value: config.modelType)]
        func add(_ k: String, _ v: Int) { e.append(Entry(key: k, value: String(v))) }
        switch config {
        case let .bert(c):
            add("num_hidden_layers", c.numHiddenLayers); add("hidden_size", c.hiddenSize)
            add("num_attention_heads", c.numAttentionHeads); add("intermediate_size", c.intermediateSize)
            add("vocab_size", c.vocabSize)
        case let .llama(c):
            add("num_hidden_layers", c.numHiddenLayers); add("hidden_size", c.hiddenSize)
            add("num_attention_heads", c.numAttentionHeads); add("num_key_value_heads", c.numKeyValueHeads)
            add("intermediate_size", c.intermediateSize); add("vocab_size", c.vocabSize)
        case let .mixtral(c):
            add("num_hidden_layers", c.numHiddenLayers); add("hidden_size", c.hiddenSize)
            add("num_local_experts", c.numLocalExperts); add("num_experts_per_tok", c.numExpertsPerTok)
            add("intermediate_size", c.intermediateSize); add("vocab_size", c.vocabSize)
        case let .qwenMoE(c):
            add("num_hidden_layers", c.numHiddenLayers); add("hidden_size", c.hiddenSize)
            add("num_experts", c.numExperts); add("num_experts_per_tok", c.numExpertsPerTok)
            add("moe_intermediate_size", c.moeIntermediateSize); add("vocab_size", c.vocabSize)
        }
        return e
    }

    static func oneLine(_ s: String) -> String {
        let t = s.replacingOccurrences(of: "\n", with: "\\n")
        return t.count > 80 ? String(t.prefix(77)) + "..." : t
    }

    // MARK: Rendering

    /// Human-readable size: `512 B`, `1.5 KB`, `90.9 MB`, `2.10 GB` (powers of 1000).
    public static func formatBytes(_ n: Int) -> String {
        let units = ["B", "KB", "MB", "GB", "TB"]
        var v = Double(n)
        var u = 0
        while v >= 1000 && u < units.count - 1 { v /= 1000; u += 1 }
        if u == 0 { return "\(n) B" }
        return String(format: v < 10 ? "%.2f" : "%.1f", v) + " " + units[u]
    }

    /// Parameter count with a short form: `22,713,216 (22.7M)`.
    public static func formatCount(_ n: Int) -> String {
        let digits = String(n)
        var grouped = ""
        for (i, c) in digits.reversed().enumerated() {
            if i > 0 && i % 3 == 0 && c != "-" { grouped.append(",") }
            grouped.append(c)
        }
        let full = String(grouped.reversed())
        let (v, s): (Double, String) = n >= 1_000_000_000 ? (Double(n) / 1e9, "B") : n >= 1_000_000 ? (Double(n) / 1e6, "M")
            : n >= 1000 ? (Double(n) / 1e3, "K") : (Double(n), "")
        return s.isEmpty ? full : "\(full) (\(String(format: "%.1f", v))\(s))"
    }

    static func pad(_ s: String, _ w: Int, right: Bool = false) -> String {
        let n = s.count
        if n >= w { return s }
        let fill = String(repeating: " ", count: w - n)
        return right ? fill + s : s + fill
    }

    static func table(_ header: [String], _ rows: [[String]], rightAligned: Set<Int>) -> [String] {
        var widths = header.map(\.count)
        for r in rows { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { pad($1, widths[$0], right: rightAligned.contains($0)) }.joined(separator: "  ")
                .replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression)
        }
        return [line(header)] + rows.map(line)
    }

    /// The summary as text: totals, a dtype table, metadata, config, and up to `maxTensors`
    /// tensors (all when nil).
    public func table(maxTensors: Int? = nil) -> String {
        var out: [String] = []
        out.append("path:       \(path)")
        let version = formatVersion.map { " v\($0)" } ?? ""
        out.append("format:     \(format)\(version), \(files.count) file\(files.count == 1 ? "" : "s"), \(CheckpointInfo.formatBytes(fileBytes))")
        out.append("tensors:    \(tensorCount)")
        out.append("parameters: \(CheckpointInfo.formatCount(parameterCount))")
        out.append("data:       \(CheckpointInfo.formatBytes(tensorBytes))")
        out.append("")
        out += CheckpointInfo.table(["dtype", "tensors", "parameters", "bytes"],
                                    dtypes.map { [$0.dtype, String($0.tensors), String($0.elements), CheckpointInfo.formatBytes($0.bytes)] },
                                    rightAligned: [1, 2, 3])
        if let config, !config.isEmpty {
            out.append("")
            out.append("config.json:")
            out += config.map { "  \($0.key) = \($0.value)" }
        }
        if !metadata.isEmpty {
            out.append("")
            out.append("metadata (\(metadata.count)):")
            out += metadata.map { "  \($0.key) = \($0.value)" }
        }
        out.append("")
        let shown = maxTensors.map { Array(tensors.prefix($0)) } ?? tensors
        let hasFile = tensors.contains { $0.file != nil }
        var header = ["name", "dtype", "shape", "parameters", "bytes"]
        if hasFile { header.append("file") }
        out += CheckpointInfo.table(header, shown.map { t in
            var r = [t.name, t.dtype, "[" + t.shape.map(String.init).joined(separator: ", ") + "]", String(t.elements),
                     CheckpointInfo.formatBytes(t.bytes)]
            if hasFile { r.append(t.file ?? "") }
            return r
        }, rightAligned: [3, 4])
        if shown.count < tensors.count { out.append("... \(tensors.count - shown.count) more tensors") }
        return out.joined(separator: "\n")
    }

    public var description: String { table() }

    /// The summary as pretty-printed JSON.
    public func json() throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try enc.encode(self)
    }
}
