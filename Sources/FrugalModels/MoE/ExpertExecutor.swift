import FrugalCore

/// One selected expert for one token: index in the layer and its combine weight (after the model's
/// softmax / top-k / optional renormalisation).
public struct ExpertRoute: Sendable, Equatable {
    public var expert: Int
    public var weight: Float
    public init(expert: Int, weight: Float) { self.expert = expert; self.weight = weight }
}

/// Dimensions the engine needs to size and pack experts.
public struct MoEShape: Sendable, Equatable {
    public var layers: Int, experts: Int, topK: Int, hidden: Int, intermediate: Int
    public init(layers: Int, experts: Int, topK: Int, hidden: Int, intermediate: Int) {
        self.layers = layers; self.experts = experts; self.topK = topK
        self.hidden = hidden; self.intermediate = intermediate
    }
}

/// Where an MoE decoder gets its routed experts' outputs. The model calls `runExperts` once per MoE layer per
/// forward (prefill: T tokens; decode: T = 1) after routing, and adds the result to the residual stream
/// (shared experts, if any, stay inside the model: they are resident, non-expert weights).
/// The resident implementation (`ResidentExperts`, the `full` policy) lives in FrugalModels; offloading
/// executors (cache policies, prefetch) live in FrugalMoE.
public protocol ExpertExecutor: AnyObject {
    /// x: [T, hidden] f32 contiguous, the normalised input of layer `layer`'s MoE block.
    /// routes[t]: the selected experts of token t. Returns [T, hidden] = Σ_e w_e · expert_e(x_t) per token.
    func runExperts(layer: Int, x: Tensor, routes: [[ExpertRoute]]) throws -> Tensor
}

/// What an executor may ask the model (for next-layer prediction and for packing):
public protocol MoEExpertSource: AnyObject {
    var moeShape: MoEShape { get }
    /// Router logits of `layer` applied to x [T, hidden] -> [T, experts] (no softmax).
    func routerLogits(layer: Int, _ x: Tensor) -> Tensor
    /// The model's routing rule applied to logits (softmax, top-k, renormalise or not) -> routes.
    func route(logits: Tensor) -> [[ExpertRoute]]
    /// One expert's weights, as stored: gate (w1) [I, h], up (w3) [I, h], down (w2) [h, I]; any of f32/f16/bf16.
    func expertWeights(layer: Int, expert: Int) throws -> (gate: Tensor, up: Tensor, down: Tensor)
}
