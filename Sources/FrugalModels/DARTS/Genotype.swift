import Foundation

/// One chosen edge of a derived cell: intermediate node `node` (2..<2+steps; 0 and 1 are the
/// cell's inputs c_{k-2} and c_{k-1}) receives `op` applied to node `from` (< node).
public struct GenotypeEdge: Codable, Equatable, Sendable {
    public var node: Int
    public var from: Int
    public var op: DARTSOp
    public init(node: Int, from: Int, op: DARTSOp) { self.node = node; self.from = from; self.op = op }
}

/// A derived architecture: the edges of the normal and reduction cells and which nodes each
/// cell concatenates as its output (DARTS: nodes 2...5). A DARTS genotype has exactly two edges
/// per node; a FairDARTS one may have one or more.
///
///     {"steps": 4, "normal": [{"node": 2, "from": 0, "op": "sep_conv_3x3"}, ...],
///      "normalConcat": [2, 3, 4, 5], "reduce": [...], "reduceConcat": [2, 3, 4, 5]}
public struct Genotype: Codable, Equatable, Sendable {
    public var steps: Int
    public var normal: [GenotypeEdge]
    public var normalConcat: [Int]
    public var reduce: [GenotypeEdge]
    public var reduceConcat: [Int]

    public init(steps: Int = 4, normal: [GenotypeEdge], normalConcat: [Int]? = nil, reduce: [GenotypeEdge], reduceConcat: [Int]? = nil) {
        self.steps = steps
        self.normal = normal
        self.reduce = reduce
        self.normalConcat = normalConcat ?? Array(2..<(2 + steps))
        self.reduceConcat = reduceConcat ?? Array(2..<(2 + steps))
    }

    /// Throws when an edge or concat index is out of range, or an intermediate node has no input.
    public func validate() throws {
        guard steps >= 1 && steps <= 16 else { throw DARTSError.invalid("genotype steps \(steps) must be in 1...16") }
        for (name, edges, concat) in [("normal", normal, normalConcat), ("reduce", reduce, reduceConcat)] {
            for (i, e) in edges.enumerated() {
                guard e.node >= 2 && e.node < 2 + steps else {
                    throw DARTSError.invalid("\(name) edge \(i): node \(e.node) outside 2..<\(2 + steps)")
                }
                guard e.from >= 0 && e.from < e.node else {
                    throw DARTSError.invalid("\(name) edge \(i): input \(e.from) must be in 0..<\(e.node)")
                }
                guard e.op != .none else { throw DARTSError.invalid("\(name) edge \(i): 'none' cannot be a chosen operation") }
            }
            for n in 2..<(2 + steps) where !edges.contains(where: { $0.node == n }) {
                throw DARTSError.invalid("\(name) cell: node \(n) has no incoming edge")
            }
            guard !concat.isEmpty else { throw DARTSError.invalid("\(name)Concat is empty") }
            for c in concat where c < 0 || c >= 2 + steps {
                throw DARTSError.invalid("\(name)Concat index \(c) outside 0..<\(2 + steps)")
            }
        }
    }

    /// JSON text (pretty, sorted keys).
    public func jsonData() throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try enc.encode(self)
    }

    /// Writes the genotype as JSON atomically.
    public func write(to url: URL) throws { try jsonData().write(to: url, options: .atomic) }

    /// Reads and validates a genotype JSON file; errors name the file.
    public static func read(from url: URL) throws -> Genotype {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw DARTSError.invalid("cannot read genotype file \(url.path): \(error.localizedDescription)")
        }
        return try decode(data, source: url.path)
    }

    /// Decodes and validates genotype JSON; `source` names it in errors.
    public static func decode(_ data: Data, source: String = "genotype") throws -> Genotype {
        let g: Genotype
        do { g = try JSONDecoder().decode(Genotype.self, from: data) } catch let e as DecodingError {
            throw DARTSError.invalid("\(source): not a genotype: \(describe(e))")
        }
        do { try g.validate() } catch let e as DARTSError { throw DARTSError.invalid("\(source): \(e.description)") }
        return g
    }

    static func describe(_ e: DecodingError) -> String {
        func path(_ c: [CodingKey]) -> String { c.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined() }
        switch e {
        case .keyNotFound(let k, let ctx): return "missing key '\(k.stringValue)' at \(path(ctx.codingPath))"
        case .typeMismatch(_, let ctx), .valueNotFound(_, let ctx), .dataCorrupted(let ctx):
            return "\(ctx.debugDescription) at \(path(ctx.codingPath))"
        @unknown default: return "\(e)"
        }
    }

    /// A one-line summary, e.g. "normal: 2←sep_conv_3x3(0), 2←skip_connect(1), ... | reduce: ...".
    public var summary: String {
        func cell(_ es: [GenotypeEdge]) -> String { es.map { "\($0.node)←\($0.op.rawValue)(\($0.from))" }.joined(separator: ", ") }
        return "normal: \(cell(normal)) | reduce: \(cell(reduce))"
    }
}
