import Foundation
import FrugalCore
import FrugalFederated

/// Which federated PEFT method runs (one flag: `--strategy`).
public enum PEFTStrategySpec: Sendable, Equatable, CustomStringConvertible {
    /// DropPEFT: a bandit per device class picks each device's layer-dropout configuration.
    case dropPEFT(BanditPolicy)
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
            throw PEFTError("unknown strategy '\(s)' (droppeft[:ucb|thompson|egreedy], fedlora, fixed:R, freeze:K, arm:FAMILY:R)")
        }
    }
    public var description: String {
        switch self {
        case .dropPEFT(let p): "droppeft:\(p)"
        case .fedLoRA: "fedlora"
        case .fixed(let r): "fixed:\(r)"
        case .freeze(let k): "freeze:\(k)"
        case .arm(let f, let r): "arm:\(f.rawValue):\(r)"
        }
    }
}

/// DropPEFT and its baselines on a `TextClassificationTask`.
///
/// - Configurations: DropPEFT's arms are `families` x `ratios` (default uniform and increasing x
///   0.25, 0.5, 0.75); baselines use one configuration. A device is offered only the arms whose
///   training memory fits its profile's `memoryBytes`.
/// - Bandit: one per device class (the profile name; phones share one), rewarded with
///   **full-depth loss decrease on the device's first batch per simulated second of the device's
///   round** (compute + transfer), see `TextClassificationTask`.
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
    let seed: UInt64
    public private(set) var bandits: [String: DropoutBandit] = [:]
    var chosenArm: [Int: Int] = [:]
    var personal: [Int: [Float]] = [:]

    public init(_ spec: PEFTStrategySpec, layers: Int, personalLayers: Int = 0,
                families: [LayerDropoutFamily] = [.uniform, .increasing], ratios: [Float] = [0.25, 0.5, 0.75],
                seed: UInt64 = 0) throws {
        guard personalLayers >= 0 && personalLayers < layers else {
            throw PEFTError("personal layers \(personalLayers) must be in 0..<\(layers)")
        }
        self.spec = spec
        self.layers = layers
        self.personalLayers = personalLayers
        self.seed = seed
        switch spec {
        case .dropPEFT:
            arms = families.flatMap { f in ratios.map { r in PEFTConfiguration(dropout: LayerDropoutConfig(f, layers: layers, ratio: r), label: "\(f.rawValue):\(r)") } }
        case .fedLoRA: arms = [PEFTConfiguration(dropout: .none(layers: layers), label: "full")]
        case .fixed(let r): arms = [PEFTConfiguration(dropout: LayerDropoutConfig(.uniform, layers: layers, ratio: r), label: "uniform:\(r)")]
        case .arm(let f, let r): arms = [PEFTConfiguration(dropout: LayerDropoutConfig(f, layers: layers, ratio: r), label: "\(f.rawValue):\(r)")]
        case .freeze(let k):
            guard k <= layers else { throw PEFTError("freeze:\(k): the model has \(layers) layers") }
            arms = [PEFTConfiguration(dropout: .none(layers: layers), frozenLayers: layers - k, label: "top\(k)")]
        }
    }

    public var name: String { spec.description + (personalLayers > 0 ? "+personal:\(personalLayers)" : "") }

    static func deviceClass(_ p: DeviceProfile) -> String { p.name.hasPrefix("phone") ? "phone" : p.name }

    public func configure(device: Int, profile: DeviceProfile, round: Int, fits: (PEFTConfiguration) -> Bool) -> PEFTConfiguration? {
        let allowed = arms.map(fits)
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
                        seconds: Double, local: [Float], layout: TensorLayout) {
        if personalLayers > 0 { personal[device] = local }
        guard case .dropPEFT = spec, let a = chosenArm.removeValue(forKey: device), seconds > 0 else { return }
        bandits[Self.deviceClass(profile)]?.update(arm: a, reward: result.progress / seconds)
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
