import Foundation

/// Errors reading or writing routing traces and planning inputs; each message names the file and line.
public struct MoETraceError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}

/// One routed expert use: row of the trace CSV
/// `turn,phase,step,layer,slot,expert,weight,residency,expert_bytes`.
public struct RoutingTraceRow: Sendable, Equatable {
    /// Conversation turn (prompt) index.
    public var turn: Int
    /// 0 = prefill, 1 = decode.
    public var phase: Int
    /// Token position within the turn.
    public var step: Int
    public var layer: Int
    /// Rank of the expert among the token's selected experts (0 = highest weight).
    public var slot: Int
    public var expert: Int
    /// Combine weight after the model's softmax / top-k / renormalisation.
    public var weight: Float
    /// Where the recording engine found the expert: 1 = resident in the fast tier, 0 = not resident.
    public var residency: Int
    /// Bytes the recording engine read for this use (0 when nothing was read).
    public var expertBytes: Int
    public init(turn: Int, phase: Int, step: Int, layer: Int, slot: Int, expert: Int, weight: Float,
                residency: Int = 0, expertBytes: Int = 0) {
        self.turn = turn; self.phase = phase; self.step = step; self.layer = layer; self.slot = slot
        self.expert = expert; self.weight = weight; self.residency = residency; self.expertBytes = expertBytes
    }
}

/// A routing trace: the shared `route_trace v1` CSV format of `$FRUGAL_DATA/moe-traces/` (also what
/// `--record-trace` writes). Header lines start with `#` and carry `key=value` fields:
///
///     # route_trace v1
///     # model=NAME arch=ARCH n_layer=48 n_expert=128 n_expert_used=6
///     # layer=0 expert_bytes=3059712 dense_bytes=11953152
///     ...
///     turn,phase,step,layer,slot,expert,weight,residency,expert_bytes
///     0,0,0,0,0,49,0.221297,0,3059712
public struct RoutingTrace: Sendable {
    public var model: String
    public var arch: String
    public var layers: Int
    public var experts: Int
    /// Experts selected per token (`n_expert_used`).
    public var topK: Int
    /// Bytes of one expert of each layer (as the recording engine stored it).
    public var expertBytes: [Int]
    /// Non-expert (resident) bytes of each layer.
    public var denseBytes: [Int]
    public var rows: [RoutingTraceRow]

    public init(model: String = "", arch: String = "", layers: Int, experts: Int, topK: Int,
                expertBytes: [Int], denseBytes: [Int] = [], rows: [RoutingTraceRow] = []) {
        self.model = model; self.arch = arch; self.layers = layers; self.experts = experts; self.topK = topK
        self.expertBytes = expertBytes
        self.denseBytes = denseBytes.isEmpty ? [Int](repeating: 0, count: layers) : denseBytes
        self.rows = rows
    }

    static let columns = ["turn", "phase", "step", "layer", "slot", "expert", "weight", "residency", "expert_bytes"]

    /// Reads a trace file. Throws with file name and line number on malformed input.
    public static func read(path: String) throws -> RoutingTrace {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw MoETraceError("\(path): cannot read routing trace")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw MoETraceError("\(path): routing trace is not UTF-8 text")
        }
        return try parse(text, name: path)
    }

    /// Parses trace text; `name` is used in error messages.
    public static func parse(_ text: String, name: String = "<trace>") throws -> RoutingTrace {
        var model = "", arch = ""
        var layers = -1, experts = -1, topK = -1
        var layerBytes: [Int: (Int, Int)] = [:]
        var rows: [RoutingTraceRow] = []
        var sawColumns = false
        var lineNo = 0
        func fail(_ m: String) -> MoETraceError { MoETraceError("\(name):\(lineNo): \(m)") }
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNo += 1
            var line = Substring(rawLine)
            if line.hasSuffix("\r") { line = line.dropLast() }
            if line.allSatisfy({ $0 == " " || $0 == "\t" }) { continue }
            if line.hasPrefix("#") {
                if sawColumns { throw fail("header line after the data started") }
                var fields: [String: String] = [:]
                for tok in line.dropFirst().split(separator: " ") {
                    guard let eq = tok.firstIndex(of: "=") else { continue }
                    fields[String(tok[..<eq])] = String(tok[tok.index(after: eq)...])
                }
                func int(_ k: String) throws -> Int? {
                    guard let v = fields[k] else { return nil }
                    guard let i = Int(v), i >= 0 else { throw fail("header field \(k)=\(v) is not a non-negative integer") }
                    return i
                }
                if let m = fields["model"] { model = m }
                if let a = fields["arch"] { arch = a }
                if let v = try int("n_layer") { layers = v }
                if let v = try int("n_expert") { experts = v }
                if let v = try int("n_expert_used") { topK = v }
                if let l = try int("layer") {
                    guard let eb = try int("expert_bytes") else { throw fail("layer line without expert_bytes") }
                    layerBytes[l] = (eb, try int("dense_bytes") ?? 0)
                }
                continue
            }
            if !sawColumns {
                let cols = line.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                guard cols == columns else {
                    throw fail("expected the column line '\(columns.joined(separator: ","))', got '\(line.prefix(80))'")
                }
                sawColumns = true
                continue
            }
            let parts = line.split(separator: ",", omittingEmptySubsequences: false)
            guard parts.count == 9 else { throw fail("expected 9 fields, got \(parts.count)") }
            var ints = [Int](repeating: 0, count: 9)
            for i in 0..<9 where i != 6 {
                guard let v = Int(parts[i].trimmingCharacters(in: .whitespaces)), v >= 0 else {
                    throw fail("field \(columns[i]) '\(parts[i])' is not a non-negative integer")
                }
                ints[i] = v
            }
            guard let w = Float(parts[6].trimmingCharacters(in: .whitespaces)), w.isFinite else {
                throw fail("field weight '\(parts[6])' is not a finite number")
            }
            if layers >= 0 && ints[3] >= layers { throw fail("layer \(ints[3]) out of range (n_layer=\(layers))") }
            if experts >= 0 && ints[5] >= experts { throw fail("expert \(ints[5]) out of range (n_expert=\(experts))") }
            if topK >= 0 && ints[4] >= topK { throw fail("slot \(ints[4]) out of range (n_expert_used=\(topK))") }
            rows.append(RoutingTraceRow(turn: ints[0], phase: ints[1], step: ints[2], layer: ints[3], slot: ints[4],
                                        expert: ints[5], weight: w, residency: ints[7], expertBytes: ints[8]))
        }
        lineNo = 0
        if !sawColumns { throw MoETraceError("\(name): no column line '\(columns.joined(separator: ","))' found") }
        // Infer missing header fields from the data.
        if layers < 0 { layers = max(rows.map(\.layer).max().map { $0 + 1 } ?? 0, (layerBytes.keys.max() ?? -1) + 1) }
        if experts < 0 { experts = (rows.map(\.expert).max() ?? -1) + 1 }
        if topK < 0 { topK = (rows.map(\.slot).max() ?? -1) + 1 }
        guard layers > 0, experts > 0, topK > 0 else { throw MoETraceError("\(name): trace has no layers, experts or rows") }
        var eb = [Int](repeating: 0, count: layers), db = [Int](repeating: 0, count: layers)
        for (l, v) in layerBytes {
            guard l < layers else { throw MoETraceError("\(name): header names layer \(l) but n_layer=\(layers)") }
            eb[l] = v.0; db[l] = v.1
        }
        if layerBytes.isEmpty, let b = rows.first(where: { $0.expertBytes > 0 })?.expertBytes {
            eb = [Int](repeating: b, count: layers)
        }
        return RoutingTrace(model: model, arch: arch, layers: layers, experts: experts, topK: topK,
                            expertBytes: eb, denseBytes: db, rows: rows)
    }

    /// The trace as text in the `route_trace v1` format.
    public func csvText() -> String {
        var s = RoutingTraceWriter.headerText(model: model, arch: arch, layers: layers, experts: experts, topK: topK,
                                              expertBytes: expertBytes, denseBytes: denseBytes)
        for r in rows { s += RoutingTraceWriter.rowText(r) }
        return s
    }

    /// Writes the trace to `path` (atomically).
    public func write(path: String) throws {
        do { try csvText().write(toFile: path, atomically: true, encoding: .utf8) } catch {
            throw MoETraceError("\(path): cannot write routing trace: \(error)")
        }
    }

    /// Per-token routing: tokens in file order (grouped by turn, phase, step), each with the selected experts of
    /// every layer in slot order (empty where the trace has no row for that layer). `phase` filters (nil = all).
    public func tokens(phase: Int? = nil) -> [TokenRouting] {
        var out: [TokenRouting] = []
        struct Key: Hashable { var turn: Int, phase: Int, step: Int }
        var index: [Key: Int] = [:]  // position of each token in out
        for r in rows where phase == nil || r.phase == phase! {
            let key = Key(turn: r.turn, phase: r.phase, step: r.step)
            let i: Int
            if let j = index[key] { i = j } else {
                i = out.count; index[key] = i
                out.append(TokenRouting(turn: r.turn, phase: r.phase, step: r.step, layers: layers))
            }
            out[i].experts[r.layer].append((slot: r.slot, expert: r.expert, weight: r.weight))
        }
        for i in out.indices { for l in 0..<layers { out[i].experts[l].sort { $0.slot < $1.slot } } }
        return out
    }
}

/// The experts one token selected in every layer.
public struct TokenRouting: Sendable {
    public var turn: Int, phase: Int, step: Int
    /// experts[layer] = (slot, expert, weight) in slot order.
    public var experts: [[(slot: Int, expert: Int, weight: Float)]]
    public init(turn: Int, phase: Int, step: Int, layers: Int) {
        self.turn = turn; self.phase = phase; self.step = step
        experts = [[(slot: Int, expert: Int, weight: Float)]](repeating: [], count: layers)
    }
    /// Expert indices of `layer` in slot order.
    public func selected(_ layer: Int) -> [Int] { experts[layer].map(\.expert) }
}

/// Streams a routing trace to a file as the engine runs (`--record-trace FILE`). Rows are buffered and flushed
/// every few thousand rows and on `close()`.
public final class RoutingTraceWriter {
    private let handle: FileHandle
    private let path: String
    private var buffer = ""
    private var closed = false
    public private(set) var rowsWritten = 0

    /// Creates (truncates) `path` and writes the header.
    public init(path: String, model: String, arch: String, layers: Int, experts: Int, topK: Int,
                expertBytes: [Int], denseBytes: [Int]) throws {
        guard expertBytes.count == layers, denseBytes.count == layers else {
            throw MoETraceError("\(path): expertBytes/denseBytes must have one entry per layer (\(layers))")
        }
        guard FileManager.default.createFile(atPath: path, contents: nil), let h = FileHandle(forWritingAtPath: path) else {
            throw MoETraceError("\(path): cannot create routing trace file")
        }
        self.handle = h; self.path = path
        buffer = Self.headerText(model: model, arch: arch, layers: layers, experts: experts, topK: topK,
                                 expertBytes: expertBytes, denseBytes: denseBytes)
    }

    static func headerText(model: String, arch: String, layers: Int, experts: Int, topK: Int,
                           expertBytes: [Int], denseBytes: [Int]) -> String {
        func clean(_ s: String) -> String { s.isEmpty ? "unknown" : s.replacingOccurrences(of: " ", with: "_") }
        var s = "# route_trace v1\n"
        s += "# model=\(clean(model)) arch=\(clean(arch)) n_layer=\(layers) n_expert=\(experts) n_expert_used=\(topK)\n"
        for l in 0..<layers {
            let e = l < expertBytes.count ? expertBytes[l] : 0, d = l < denseBytes.count ? denseBytes[l] : 0
            s += "# layer=\(l) expert_bytes=\(e) dense_bytes=\(d)\n"
        }
        s += RoutingTrace.columns.joined(separator: ",") + "\n"
        return s
    }

    static func rowText(_ r: RoutingTraceRow) -> String {
        "\(r.turn),\(r.phase),\(r.step),\(r.layer),\(r.slot),\(r.expert),\(r.weight),\(r.residency),\(r.expertBytes)\n"
    }

    /// Appends one layer's routing of one token: experts in slot order with their weights, and optionally where
    /// each was found (1 = resident) and the bytes read for it.
    public func record(turn: Int, phase: Int, step: Int, layer: Int, experts: [Int], weights: [Float],
                       residency: [Int]? = nil, bytesRead: [Int]? = nil) throws {
        guard !closed else { throw MoETraceError("\(path): routing trace already closed") }
        guard experts.count == weights.count else { throw MoETraceError("\(path): experts and weights differ in length") }
        for i in experts.indices {
            buffer += Self.rowText(RoutingTraceRow(turn: turn, phase: phase, step: step, layer: layer, slot: i,
                                                   expert: experts[i], weight: weights[i],
                                                   residency: residency?[i] ?? 0, expertBytes: bytesRead?[i] ?? 0))
        }
        rowsWritten += experts.count
        if buffer.utf8.count > 1 << 16 { try flush() }
    }

    /// Writes buffered rows to the file.
    public func flush() throws {
        guard !buffer.isEmpty else { return }
        do { try handle.write(contentsOf: Data(buffer.utf8)) } catch {
            throw MoETraceError("\(path): cannot write routing trace: \(error)")
        }
        buffer = ""
    }

    /// Flushes and closes the file.
    public func close() throws {
        guard !closed else { return }
        try flush()
        try handle.close()
        closed = true
    }

    deinit { if !closed { try? flush(); try? handle.close() } }
}
