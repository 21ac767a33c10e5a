import FrugalCore

/// Base class of layers and models. Parameters are the `Tensor` stored properties of a module
/// (found by reflection), submodules its `Module` properties and `[Module]` arrays. Names in the
/// state dict are the property names in snake_case joined by dots (`layers.0.attention.q_proj.weight`),
/// which matches PyTorch's for the common layers.
///
///     final class MLP: Module {
///         let fc1 = Linear(4, 8), fc2 = Linear(8, 2)
///         func callAsFunction(_ x: Tensor) -> Tensor { fc2(fc1(x).relu()) }
///     }
open class Module {
    /// Training mode (dropout active, batch norm uses batch statistics).
    public private(set) var isTraining = true

    public init() {}

    /// Names of tensor properties that are state but not trainable (e.g. running statistics).
    open var bufferNames: Set<String> { [] }

    /// Direct children: (name, tensor or module). Override to rename or hide properties.
    open func children() -> [(String, Any)] {
        var out: [(String, Any)] = []
        var mirror: Mirror? = Mirror(reflecting: self)
        var levels: [[(String, Any)]] = []
        while let m = mirror {
            var level: [(String, Any)] = []
            for c in m.children {
                guard var label = c.label else { continue }
                if label.hasPrefix("_") { label.removeFirst() }
                if label.hasPrefix("$__lazy_storage_$_") { continue }
                level.append((Module.snakeCase(label), c.value))
            }
            levels.append(level)
            mirror = m.superclassMirror
        }
        for level in levels.reversed() { out.append(contentsOf: level) }
        return out
    }

    static func snakeCase(_ s: String) -> String {
        var out = ""
        for ch in s {
            if ch.isUppercase { out += "_" + ch.lowercased() } else { out.append(ch) }
        }
        return out
    }

    /// Every submodule with its dotted path (self first, with path "").
    public func namedModules(prefix: String = "") -> [(String, Module)] {
        var out: [(String, Module)] = [(prefix, self)]
        for (name, value) in children() {
            let path = prefix.isEmpty ? name : prefix + "." + name
            if let m = value as? Module { out += m.namedModules(prefix: path) }
            else if let ms = value as? [Module] {
                for (i, m) in ms.enumerated() { out += m.namedModules(prefix: path + ".\(i)") }
            } else if let m = value as? Module? , let m { out += m.namedModules(prefix: path) }
        }
        return out
    }

    /// All tensors of the state dict (parameters and buffers) by dotted name.
    public func namedTensors() -> [(String, Tensor)] {
        var out: [(String, Tensor)] = []
        for (path, m) in namedModules() {
            for (name, value) in m.children() {
                let full = path.isEmpty ? name : path + "." + name
                if let t = value as? Tensor { out.append((full, t)) }
                else if let t = value as? Tensor?, let t { out.append((full, t)) }
            }
        }
        return out
    }

    /// Parameters (tensors that are not buffers), frozen ones included.
    public func namedParameters() -> [(String, Tensor)] {
        var out: [(String, Tensor)] = []
        for (path, m) in namedModules() {
            let buffers = m.bufferNames
            for (name, value) in m.children() where !buffers.contains(name) {
                let full = path.isEmpty ? name : path + "." + name
                if let t = value as? Tensor { out.append((full, t)) }
                else if let t = value as? Tensor?, let t { out.append((full, t)) }
            }
        }
        return out
    }

    public func parameters() -> [Tensor] { namedParameters().map(\.1) }
    /// Parameters that require gradients (not frozen).
    public func trainableParameters() -> [Tensor] { parameters().filter(\.requiresGrad) }
    /// Number of scalar parameters.
    public var parameterCount: Int { parameters().reduce(0) { $0 + $1.count } }

    /// Stops gradients to every parameter (optionally only those whose name passes `filter`).
    public func freeze(_ filter: (String) -> Bool = { _ in true }) {
        for (n, p) in namedParameters() where filter(n) { p.requiresGrad = false; p.grad = nil }
    }
    public func unfreeze(_ filter: (String) -> Bool = { _ in true }) {
        for (n, p) in namedParameters() where filter(n) { p.requiresGrad = true }
    }

    public func train(_ on: Bool = true) { for (_, m) in namedModules() { m.isTraining = on } }
    public func eval() { train(false) }
    public func zeroGrad() { for p in parameters() { p.grad = nil } }

    /// The state dict: name → tensor (shares storage with the module).
    public func stateDict() -> [String: Tensor] { Dictionary(namedTensors(), uniquingKeysWith: { a, _ in a }) }

    /// Copies values from `state` into this module's tensors. Throws on a missing tensor (when
    /// `strict`) or a shape mismatch, naming the tensor.
    public func loadStateDict(_ state: [String: Tensor], strict: Bool = true) throws {
        let own = namedTensors()
        if strict {
            let names = Set(own.map(\.0))
            let unexpected = state.keys.filter { !names.contains($0) }.sorted()
            if !unexpected.isEmpty { throw ModuleError.unexpectedTensors(unexpected) }
        }
        for (name, t) in own {
            guard let src = state[name] else {
                if strict { throw ModuleError.missingTensor(name) }
                continue
            }
            guard src.shape == t.shape else { throw ModuleError.shapeMismatch(name: name, expected: t.shape, got: src.shape) }
            withNoGrad { t.assign(src) }
        }
    }
}

public enum ModuleError: Error, CustomStringConvertible {
    case missingTensor(String)
    case unexpectedTensors([String])
    case shapeMismatch(name: String, expected: [Int], got: [Int])
    public var description: String {
        switch self {
        case .missingTensor(let n): return "state dict has no tensor '\(n)'"
        case .unexpectedTensors(let ns): return "state dict has tensors the model does not: \(ns.prefix(8).joined(separator: ", "))\(ns.count > 8 ? ", ..." : "")"
        case .shapeMismatch(let n, let e, let g): return "tensor '\(n)': expected shape \(e), got \(g)"
        }
    }
}

/// A chain of layers applied in order.
public final class Sequential: Module, Layer {
    public let layers: [Module]
    let apply: [(Tensor) -> Tensor]
    /// Builds from (layer, how to call it) pairs; see `Sequential(_ layers: any Layer...)`.
    public init(_ layers: [any Layer]) {
        self.layers = layers.map { $0 as Module }
        apply = layers.map { l in { l.forward($0) } }
    }
    public convenience init(_ layers: any Layer...) { self.init(layers) }
    public override func children() -> [(String, Any)] { layers.enumerated().map { ("\($0.offset)", $0.element) } }
    public func forward(_ x: Tensor) -> Tensor { apply.reduce(x) { $1($0) } }
}

/// A module with a single-tensor forward pass.
public protocol Layer: Module {
    func forward(_ x: Tensor) -> Tensor
}
extension Layer {
    public func callAsFunction(_ x: Tensor) -> Tensor { forward(x) }
}

/// A parameterless layer wrapping a function (ReLU, flatten, ...).
public final class Lambda: Module, Layer {
    let f: (Tensor) -> Tensor
    public init(_ f: @escaping (Tensor) -> Tensor) { self.f = f }
    public override func children() -> [(String, Any)] { [] }
    public func forward(_ x: Tensor) -> Tensor { f(x) }
}
