import FrugalModels

// The policy interface shared by the engine (real I/O and compute, OffloadingExecutor) and the
// simulator (discrete-event clock). A policy makes decisions only: which segments are resident,
// what to load now, what to prefetch, what to drop to stay within each layer's byte budget. It
// never touches bytes or clocks; whoever drives it executes its actions and measures time.
//
// Driving protocol, per MoE layer l of a decode step (T = 1):
//   1. acts = policy.access(layer: l, experts: A)      A = the distinct routed experts (≤ topK)
//      execute acts in order (.drop frees a buffer, .load starts a load, .admit relabels a
//      staging segment as cached); then every segment in policy.segments(layer: l, expert: e)
//      for e in A is resident or in flight.
//   2. compute each e in A segment by segment (top first) as its segments arrive.
//   3. if l+1 exists: acts = policy.prefetch(layer: l + 1, predicted: P) (P from the predictor,
//      issued while l computes), execute.
//   4. acts = policy.release(layer: l) after l's compute: frees l's transient (staging) segments.
// Prefill (T > 1) calls access/release once per chunk of at most topK distinct experts.
// Before the first token, execute policy.start() (e.g. `full` loads everything).

/// Which part of a split expert.
public enum SegmentPart: UInt8, Sendable, Hashable, Codable {
    /// Intermediate units [0, s): the part MoEpic caches (the whole expert when θ = 1).
    case top
    /// Intermediate units [s, I): loaded on demand or prefetched, never cached by MoEpic.
    case bottom
}

/// One segment of one expert.
public struct SegmentID: Sendable, Hashable, Codable, CustomStringConvertible {
    public var layer: Int, expert: Int, part: SegmentPart
    public init(layer: Int, expert: Int, part: SegmentPart) { self.layer = layer; self.expert = expert; self.part = part }
    public var description: String { "L\(layer)E\(expert)\(part == .top ? "t" : "b")" }
}

/// What the driver must do. Actions are executed in order.
public enum PolicyAction: Sendable, Hashable, CustomStringConvertible {
    /// Start loading a segment into the fast tier. `demand`: needed by the layer computing now
    /// (load first); otherwise a prefetch. `cached`: it goes to the layer's cache (counts against
    /// B_l) rather than to the staging area.
    case load(SegmentID, demand: Bool, cached: Bool)
    /// Free a resident (or in-flight) segment's buffer.
    case drop(SegmentID)
    /// A staging segment becomes cached (no bytes move; accounting only).
    case admit(SegmentID)

    public var description: String {
        switch self {
        case .load(let s, let d, let c): return "load(\(s)\(d ? ",demand" : "")\(c ? ",cache" : ""))"
        case .drop(let s): return "drop(\(s))"
        case .admit(let s): return "admit(\(s))"
        }
    }
}

/// Per-layer split ratios θ_l and cache budgets B_l (bytes), plus the staging reserve for
/// transient segments (demand-loaded bottoms, uncached experts, prefetches). Uniform by default;
/// the planner (CachePlanner) fills it per layer.
public struct CachePlan: Sendable, Codable, Equatable {
    /// θ_l per layer, in [0, 1].
    public var theta: [Double]
    /// B_l per layer: bytes of cached segments layer l may hold.
    public var layerBudget: [Int]
    /// Per layer, whether its predicted experts are prefetched (nil: every layer; the planner turns it off
    /// where prediction costs more than it hides).
    public var prefetch: [Bool]?

    public init(theta: [Double], layerBudget: [Int], prefetch: [Bool]? = nil) {
        precondition(theta.count == layerBudget.count, "CachePlan: \(theta.count) ratios for \(layerBudget.count) budgets")
        precondition(prefetch.map { $0.count == theta.count } ?? true, "CachePlan: prefetch flags for \(prefetch?.count ?? 0) layers")
        self.theta = theta; self.layerBudget = layerBudget; self.prefetch = prefetch
    }

    /// The same θ and an equal share of `cacheBytes` for every layer.
    public static func uniform(layers: Int, cacheBytes: Int, theta: Double) -> CachePlan {
        let per = layers > 0 ? max(0, cacheBytes) / layers : 0
        return CachePlan(theta: Array(repeating: theta, count: layers), layerBudget: Array(repeating: per, count: layers))
    }

    /// Σ B_l.
    public var totalCacheBytes: Int { layerBudget.reduce(0, +) }
}

/// Byte sizes of experts and their segments under a plan's per-layer split ratios.
public struct SegmentLayout: Sendable, Equatable {
    public let shape: MoEShape
    /// Bytes of one weight element (4 for f32, 2 for f16/bf16).
    public let elementBytes: Int
    /// s_l per layer: the top segment holds intermediate units [0, s_l).
    public let splitRow: [Int]

    public init(shape: MoEShape, elementBytes: Int, theta: [Double]) {
        precondition(theta.count == shape.layers, "SegmentLayout: \(theta.count) ratios for \(shape.layers) layers")
        self.shape = shape; self.elementBytes = elementBytes
        splitRow = theta.map { ExpertSplit(intermediate: shape.intermediate, theta: $0).splitRow }
    }

    /// Bytes of one intermediate unit's row block (gate row, up row, down column).
    public var rowBytes: Int { 3 * shape.hidden * elementBytes }
    /// Bytes of one whole expert.
    public var expertBytes: Int { shape.intermediate * rowBytes }
    /// Bytes of all experts of all layers.
    public var totalExpertBytes: Int { shape.layers * shape.experts * expertBytes }
    /// Intermediate units of a segment.
    public func rows(_ s: SegmentID) -> Range<Int> {
        s.part == .top ? 0..<splitRow[s.layer] : splitRow[s.layer]..<shape.intermediate
    }
    /// Bytes of a segment (0 for an empty one: the top at θ = 0, the bottom at θ = 1).
    public func bytes(_ s: SegmentID) -> Int { rows(s).count * rowBytes }
    /// Bytes of the top segment of layer l's experts.
    public func topBytes(layer: Int) -> Int { splitRow[layer] * rowBytes }
    /// The non-empty segments of an expert, top first.
    public func segments(layer: Int, expert: Int) -> [SegmentID] {
        var out: [SegmentID] = []
        if splitRow[layer] > 0 { out.append(SegmentID(layer: layer, expert: expert, part: .top)) }
        if splitRow[layer] < shape.intermediate { out.append(SegmentID(layer: layer, expert: expert, part: .bottom)) }
        return out
    }
}

/// A cache/prefetch policy: decisions only (see the driving protocol at the top of this file).
public protocol ExpertPolicy: AnyObject {
    /// The `--policy` name.
    var name: String { get }
    /// Segment sizes under the policy's split ratios.
    var layout: SegmentLayout { get }
    /// Per-layer θ_l and B_l.
    var plan: CachePlan { get }
    /// Bytes the staging area must hold for this policy (transient segments).
    var stagingBytes: Int { get }
    /// Whether the driver should ask the predictor and call `prefetch`.
    var usesPrediction: Bool { get }
    /// Actions before the first token.
    func start() -> [PolicyAction]
    /// Layer `layer` is about to compute the distinct experts `experts` (at most topK).
    func access(layer: Int, experts: [Int]) -> [PolicyAction]
    /// The predictor expects `predicted` at layer `layer` (called while layer - 1 computes).
    func prefetch(layer: Int, predicted: [Int]) -> [PolicyAction]
    /// Layer `layer` finished computing the experts of the last `access`.
    func release(layer: Int) -> [PolicyAction]
    /// The segments to compute for an expert, top first.
    func segments(layer: Int, expert: Int) -> [SegmentID]
    /// Whether a segment is resident (cached, staged or in flight) in the policy's view.
    func isResident(_ s: SegmentID) -> Bool
    /// Whether a segment is in a layer cache (not staging).
    func isCached(_ s: SegmentID) -> Bool
    /// Whether an access of the expert now finds its top cached by an earlier use (a top that a
    /// prefetch put into the cache and nothing used yet counts as prefetched, not cached).
    func isCacheHit(layer: Int, expert: Int) -> Bool
    /// Bytes of cached segments of layer l (≤ B_l) and of staging segments (≤ stagingBytes).
    func cachedBytes(layer: Int) -> Int
    var stagedBytes: Int { get }
}

/// The `--policy` values.
public enum PolicyKind: String, Sendable, CaseIterable, Codable {
    case full, onDemand = "on-demand", lru, lfu, prefetch, moepic
}
