import Foundation
import FrugalCore
import FrugalFederated

/// Which federated PEFT method runs (one flag: `--strategy`).
public enum PEFTStrategySpec: Sendable, Equatable, CustomStringConvertible {
    /// DropPEFT: a bandit per device class picks each device's layer-dropout configuration.
    case dropPEFT(BanditPolicy)
    /// DropPEFT's arms assigned by a fixed time rule instead of a bandit: each device takes the arm
    /// with the least dropout whose expected compute per sample (its profile's `computePerSample`
    /// x the arm's expected active fraction) is within the deadline, the fraction f of the fleet's
    /// slowest full-depth compute per sample (the fastest arm when none is). f = 1: full depth for
    /// all; f = 0.75 with the Jetson mix: the TX2 boards keep within the Xavier NX's full depth.
    case deadline(Double)
    /// Federated LoRA at full depth.
    case fedLoRA
    /// Every device: uniform layer dropout with this overall ratio.
    case fixed(Float)
    /// Every device: only the top k layers' adapters (and the head) are trained, full depth.
    case freeze(Int)
    /// One fixed configuration of the DropPEFT arm set (for "bandit vs every fixed arm").
    case arm(LayerDropoutFamily, Float)

    /// Parses `droppeft[:ucb|thompson|egreedy]`, `fedlora`, `fixed:R`, `freeze:K`, `arm:FAMILY:R`.
    public init(parsing s: String) throws {
        let parts = s.split(separator: ":").map(String.init)
        switch parts.first ?? "" {
        case "droppeft":
            self = .dropPEFT(parts.count > 1 ? try BanditPolicy(parsing: parts.dropFirst().joined(separator: ":")) : .ucb(c: 1))
        case "deadline" where parts.count <= 2:
            let f = parts.count == 2 ? Double(parts[1]) : 0.75
            guard let f, f > 0, f <= 1 else { throw PEFTError("strategy '\(s)': the deadline fraction must be in (0, 1]") }
            self = .deadline(f)
        case "fedlora" where parts.count == 1: self = .fedLoRA
        case "fixed" where parts.count == 2:
            guard let r = Float(parts[1]), r >= 0, r < 1 else { throw PEFTError("strategy '\(s)': the ratio must be in [0, 1)") }
            self = .fixed(r)
        case "freeze" where parts.count == 2:
            guard let k = Int(parts[1]), k >= 1 else { throw PEFTError("strategy '\(s)': the number of trained top layers must be ≥ 1") }
            self = .freeze(k)
        case "arm" where parts.count == 3:
            guard let f = LayerDropoutFamily(rawValue: parts[1]), let r = Float(parts[2]), r >= 0, r < 1 else {
                throw PEFTError("strategy '\(s)': expected arm:uniform|increasing|decreasing:R with R in [0, 1)")
            }
            self = .arm(f, r)
        default:
            throw PEFTError("unknown strategy '\(s)' (droppeft[:ucb|thompson|egreedy], deadline[:Q], fedlora, fixed:R, freeze:K, arm:FAMILY:R)")
        }
    }
    public var description: String {
        switch self {
        case .dropPEFT(let p): "droppeft:\(p)"
        case .deadline(let f): "deadline:\(f)"
        case .fedLoRA: "fedlora"
        case .fixed(let r): "fixed:\(r)"
        case .freeze(let k): "freeze:\(k)"
        case .arm(let f, let r): "arm:\(f.rawValue):\(r)"
        }
    }
}

/// How configurations that skip layers train (applied to DropPEFT's arms, `fixed:R` and `arm:F:R`).
public struct DropoutOptions: Sendable, Equatable {
    /// How a step's active layers are drawn.
    public var sampling: DropoutSampling
    /// The top k layers are never skipped; the family's overall ratio is kept by spreading it over
    /// the other layers (family over L − k layers with ratio r · L / (L − k), at most 1).
    public var keepTop: Int
    /// The last n local steps of a round run at full depth (see `PEFTConfiguration`).
    public var fullDepthSteps: Int
    /// n head-only steps on full-depth features computed without gradient (see `PEFTConfiguration`).
    public var headSteps: Int
    /// The head learns only in steps that ran every layer (see `PEFTConfiguration`).
    public var headAtFullDepthOnly: Bool
    public init(sampling: DropoutSampling = .bounded, keepTop: Int = 0, fullDepthSteps: Int = 0, headSteps: Int = 0,
                headAtFullDepthOnly: Bool = false) {
        self.sampling = sampling; self.keepTop = keepTop; self.fullDepthSteps = fullDepthSteps; self.headSteps = headSteps
        self.headAtFullDepthOnly = headAtFullDepthOnly
    }
    /// Suffix for names: "" for the defaults, else e.g. "+bernoulli+top1+full1+head2".
    public var suffix: String {
        (sampling == .bounded ? "" : "+\(sampling.rawValue)") + (keepTop > 0 ? "+top\(keepTop)" : "")
            + (fullDepthSteps > 0 ? "+full\(fullDepthSteps)" : "") + (headSteps > 0 ? "+head\(headSteps)" : "")
            + (headAtFullDepthOnly ? "+headfull" : "")
    }
}

/// What the bandit is rewarded with, per device and round: the full-depth loss decrease on the
/// device's first batch (`LocalTrainingResult.progress`) divided by a time.
public enum BanditReward: String, Sendable, CaseIterable {
    /// ... the device's own round time (compute + transfer).
    case device
    /// ... the round's time (the slowest device's): a device that is not the straggler is not
    /// paid for being faster than it needs to be.
    case round
}

/// One arm of DropPEFT's configuration set: a family and an overall ratio (ratio 0: full depth).
public struct DropoutArm: Sendable, Equatable, CustomStringConvertible {
    public var family: LayerDropoutFamily
    public var ratio: Float
    public init(_ family: LayerDropoutFamily, _ ratio: Float) { self.family = family; self.ratio = ratio }
    public var description: String { ratio == 0 ? "full" : "\(family.rawValue):\(ratio)" }

    /// The default arm set: full depth and uniform / increasing at 0.1, 0.25, 0.5.
    public static let defaults: [DropoutArm] = [DropoutArm(.uniform, 0)]
        + [Float(0.1), 0.25, 0.5].flatMap { r in [DropoutArm(.uniform, r), DropoutArm(.increasing, r)] }

    /// Parses "full", "FAMILY:R", comma-separated.
    public static func parseList(_ s: String) throws -> [DropoutArm] {
        let arms = try s.split(separator: ",").map { item -> DropoutArm in
            let t = item.trimmingCharacters(in: .whitespaces)
            if t == "full" { return DropoutArm(.uniform, 0) }
            let parts = t.split(separator: ":").map(String.init)
            guard parts.count == 2, let f = LayerDropoutFamily(rawValue: parts[0]), let r = Float(parts[1]), r >= 0, r < 1 else {
                throw PEFTError("arm '\(t)': expected full or uniform|increasing|decreasing:R with R in [0, 1)")
            }
            return DropoutArm(f, r)
        }
        guard !arms.isEmpty else { throw PEFTError("arms: the list is empty") }
        return arms
    }
}

/// DropPEFT and its baselines on a `TextClassificationTask`.
///
/// - Configurations: DropPEFT's arms are `arms` (default `DropoutArm.defaults`); baselines use one
///   configuration. A device is offered only the arms whose training memory fits its profile's
///   `memoryBytes`. `options` say how configurations that skip layers train.
/// - Bandit: one per device class (the profile name; phones share one), rewarded at the end of
///   each round with **full-depth loss decrease on the device's first batch per simulated second**
///   (`reward`: of the device's round, or of the whole round), see `TextClassificationTask`; the
///   two full-depth probe passes this needs are charged to DropPEFT's devices.
/// - Personalised layer sharing (`personalLayers` = P > 0): the adapters of the top P layers stay
///   on the devices: they are neither downloaded nor uploaded nor aggregated, each device starts
///   from its own copy of them (the global model keeps their initial value, the identity).
/// - Traffic: the shared adapters + head, dense float32, both ways.
public final class DropPEFTStrategy: TaskStrategy {
    public typealias Task = TextClassificationTask
    public let spec: PEFTStrategySpec
    public let arms: [PEFTConfiguration]
    public let personalLayers: Int
    public let layers: Int
    public let options: DropoutOptions
    public let reward: BanditReward
    let seed: UInt64
    public private(set) var bandits: [String: DropoutBandit] = [:]
    /// The devices of the federation (the deadline rule's quantile is taken over them).
    public var fleet: [DeviceProfile] = []
    /// Expected fraction of the layers an arm's step runs (2,000 seeded draws of its sampler).
    public private(set) var expectedActive: [Double] = []
    var chosenArm: [Int: Int] = [:]
    var personal: [Int: [Float]] = [:]

    public init(_ spec: PEFTStrategySpec, layers: Int, personalLayers: Int = 0, arms armSet: [DropoutArm] = DropoutArm.defaults,
                options: DropoutOptions = DropoutOptions(), reward: BanditReward = .device, seed: UInt64 = 0) throws {
        guard personalLayers >= 0 && personalLayers < layers else {
            throw PEFTError("personal layers \(personalLayers) must be in 0..<\(layers)")
        }
        guard options.keepTop >= 0 && options.keepTop < layers else { throw PEFTError("keep-top \(options.keepTop) must be in 0..<\(layers)") }
        guard options.fullDepthSteps >= 0, options.headSteps >= 0 else { throw PEFTError("full-depth and head steps must be ≥ 0") }
        self.spec = spec
        self.layers = layers
        self.personalLayers = personalLayers
        self.options = options
        self.reward = reward
        self.seed = seed
        func make(_ a: DropoutArm, progress: Bool) -> PEFTConfiguration {
            guard a.ratio > 0 else {
                return PEFTConfiguration(dropout: .none(layers: layers), label: a.description, measuresProgress: progress)
            }
            var p = a.family.probabilities(layers: layers, ratio: a.ratio)
            if options.keepTop > 0 {
                let rest = layers - options.keepTop
                p = a.family.probabilities(layers: rest, ratio: min(1, a.ratio * Float(layers) / Float(rest)))
                    + [Float](repeating: 0, count: options.keepTop)
            }
            return PEFTConfiguration(dropout: LayerDropoutConfig(probabilities: p), label: a.description, sampling: options.sampling,
                                     fullDepthSteps: options.fullDepthSteps, headSteps: options.headSteps,
                                     headAtFullDepthOnly: options.headAtFullDepthOnly, measuresProgress: progress)
        }
        switch spec {
        case .dropPEFT:
            guard !armSet.isEmpty else { throw PEFTError("DropPEFT needs at least one arm") }
            arms = armSet.map { make($0, progress: true) }
        case .deadline:
            guard !armSet.isEmpty else { throw PEFTError("the deadline rule needs at least one arm") }
            arms = armSet.map { make($0, progress: false) }
        case .fedLoRA: arms = [make(DropoutArm(.uniform, 0), progress: false)]
        case .fixed(let r): arms = [make(DropoutArm(.uniform, r), progress: false)]
        case .arm(let f, let r): arms = [make(DropoutArm(f, r), progress: false)]
        case .freeze(let k):
            guard k <= layers else { throw PEFTError("freeze:\(k): the model has \(layers) layers") }
            arms = [PEFTConfiguration(dropout: .none(layers: layers), frozenLayers: layers - k, label: "top\(k)")]
        }
        expectedActive = arms.map { c in
            var drop = LayerDropout(c.dropout, seed: 0xE7EC), rng = RNG(seed: 0xE7ED)
            let n = 2000
            let active = (0..<n).reduce(0) { acc, _ in acc + c.sample(&drop, &rng).filter { $0 }.count }
            return Double(active) / Double(n * layers)   // dropout steps only (full-depth steps not counted)
        }
    }

    public var name: String {
        let drops: Bool
        switch spec {
        case .dropPEFT, .deadline, .fixed, .arm: drops = true
        case .fedLoRA, .freeze: drops = false
        }
        var n = spec.description + (drops ? options.suffix : "")
        if case .dropPEFT = spec, reward != .device { n += "+reward:\(reward.rawValue)" }
        return n + (personalLayers > 0 ? "+personal:\(personalLayers)" : "")
    }

    static func deviceClass(_ p: DeviceProfile) -> String { p.name.hasPrefix("phone") ? "phone" : p.name }

    public func configure(device: Int, profile: DeviceProfile, round: Int, fits: (PEFTConfiguration) -> Bool) -> PEFTConfiguration? {
        let allowed = arms.map(fits)
        if case .deadline(let f) = spec {
            let deadline = f * (fleet.isEmpty ? [profile] : fleet).map(\.computePerSample).max()!
            let order = arms.indices.filter { allowed[$0] }.sorted { expectedActive[$0] > expectedActive[$1] }
            guard let fastest = order.last else { return nil }
            let a = order.first { profile.computePerSample * expectedActive[$0] <= deadline * (1 + 1e-9) } ?? fastest
            return arms[a]
        }
        guard case .dropPEFT(let policy) = spec else { return allowed[0] ? arms[0] : nil }
        let key = Self.deviceClass(profile)
        var b = bandits[key] ?? DropoutBandit(arms: arms.count, policy: policy,
                                              seed: seed ^ UInt64(truncatingIfNeeded: key.hashValueStable))
        let a = b.choose(allowed: allowed)
        bandits[key] = b
        guard let a else { return nil }
        chosenArm[device] = a
        return arms[a]
    }

    public func label(_ c: PEFTConfiguration) -> String { c.label }

    func isPersonal(_ layer: Int) -> Bool { layer >= layers - personalLayers }

    public func sharedSegments(layout: TensorLayout) -> [Bool] {
        layout.segments.map { s in
            guard personalLayers > 0, let r = s.name.range(of: "encoder.layer.") else { return true }
            let l = Int(s.name[r.upperBound...].prefix { $0.isNumber }) ?? -1
            return !isPersonal(l)
        }
    }

    public func start(device: Int, global: [Float], layout: TensorLayout) -> [Float] {
        guard personalLayers > 0, let own = personal[device] else { return global }
        var v = global
        for (s, shared) in sharedSegments(layout: layout).enumerated() where !shared {
            for i in layout.range(s) { v[i] = own[i] }
        }
        return v
    }

    public func observe(device: Int, profile: DeviceProfile, configuration: PEFTConfiguration, result: LocalTrainingResult,
                        seconds: Double, roundSeconds: Double, local: [Float], layout: TensorLayout) {
        if personalLayers > 0 { personal[device] = local }
        guard case .dropPEFT = spec, let a = chosenArm.removeValue(forKey: device) else { return }
        let t = reward == .device ? seconds : max(roundSeconds, seconds)
        let key = Self.deviceClass(profile)
        guard t > 0 else { bandits[key]?.cancel(arm: a); return }
        bandits[key]?.update(arm: a, reward: result.progress / t)
    }

    /// A device that brought nothing back: its pending bandit choice is cancelled.
    public func dropped(device: Int, profile: DeviceProfile, configuration: PEFTConfiguration) {
        guard let a = chosenArm.removeValue(forKey: device) else { return }
        bandits[Self.deviceClass(profile)]?.cancel(arm: a)
    }

    /// Bandit statistics and random streams per device class (`bandit.CLASS.…`, doubles as bit
    /// patterns) and personal layers (`personal.DEVICE`): a resumed run continues exactly.
    public func saveState() -> StrategyState {
        var st = StrategyState()
        for (key, b) in bandits { for (k, v) in b.statistics { st.integers["bandit.\(key).\(k)"] = v } }
        for (d, v) in personal { st.arrays["personal.\(d)"] = v }
        return st
    }

    public func restoreState(_ state: StrategyState, layout: TensorLayout) throws {
        guard case .dropPEFT(let policy) = spec else { bandits = [:]; return try restorePersonal(state, layout: layout) }
        var keys = Set<String>()
        for k in state.integers.keys where k.hasPrefix("bandit.") && k.hasSuffix(".scale") {
            keys.insert(String(k.dropFirst(7).dropLast(6)))
        }
        var restored: [String: DropoutBandit] = [:]
        for key in keys {
            var b = DropoutBandit(arms: arms.count, policy: policy, seed: seed ^ UInt64(truncatingIfNeeded: key.hashValueStable))
            var stats: [String: UInt64] = [:]
            for (k, v) in state.integers where k.hasPrefix("bandit.\(key).") { stats[String(k.dropFirst(8 + key.count))] = v }
            try b.restore(statistics: stats)
            restored[key] = b
        }
        bandits = restored
        chosenArm = [:]
        try restorePersonal(state, layout: layout)
    }

    func restorePersonal(_ state: StrategyState, layout: TensorLayout) throws {
        var own: [Int: [Float]] = [:]
        for (k, v) in state.arrays where k.hasPrefix("personal.") {
            guard let d = Int(k.dropFirst(9)), v.count == layout.count else { throw PEFTError("strategy state: bad entry \(k)") }
            own[d] = v
        }
        personal = own
    }
}

extension String {
    /// FNV-1a of the UTF-8 bytes (Swift's `hashValue` is randomised per process).
    var hashValueStable: UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        return h
    }
}
