import FrugalCore
import FrugalNN
import FrugalModels

/// Moves a model's trainable parameters to and from an `ArrayRecord`, by name.
///
/// The record must hold exactly the model's trainable parameters (`namedParameters()` names, as
/// PyTorch names a `state_dict`: `conv1.weight`, `fc2.bias`, ...), each a float32 array of the
/// parameter's shape; anything else is an error that names the entries concerned.
public enum ModelMapping {
    static func trainable(_ model: Module) -> [(String, Tensor)] { model.namedParameters().filter { $0.1.requiresGrad } }

    /// Names and shapes of `model`'s trainable parameters.
    public static func layout(of model: Module) -> [(name: String, shape: [Int])] {
        trainable(model).map { ($0.0, $0.1.shape) }
    }

    /// Checks `record` against the model's parameters and writes its values into them.
    public static func load(_ record: ArrayRecord, into model: Module, recordName: String = "arrays") throws {
        let params = trainable(model)
        let names = Set(params.map(\.0))
        let missing = params.map(\.0).filter { record[$0] == nil }
        let extra = record.keys.filter { !names.contains($0) }
        if !missing.isEmpty || !extra.isEmpty {
            var parts: [String] = []
            if !missing.isEmpty { parts.append("lacks the model's \(list(missing))") }
            if !extra.isEmpty { parts.append("has \(list(extra)) that the model does not") }
            throw FlowerError(.content, "ArrayRecord '\(recordName)' does not match the model: it \(parts.joined(separator: " and ")). The model's parameters: \(list(params.map { "\($0.0) \($0.1.shape)" }))")
        }
        // Check everything before writing anything.
        var values: [(Tensor, [Float])] = []
        for (name, t) in params {
            let a = record[name]!
            guard a.dtype == "float32" else {
                throw FlowerError(.content, "array '\(name)' of '\(recordName)' is \(a.dtype); the model's parameters are float32")
            }
            guard a.shape == t.shape else {
                throw FlowerError(.content, "array '\(name)' of '\(recordName)' has shape \(a.shape); the model's parameter has \(t.shape)")
            }
            let floats = try a.npy(name: name).floats()
            guard t.isContiguous, t.dtype == .float32 else {
                throw FlowerError(.content, "model parameter '\(name)' is not a contiguous float32 tensor")
            }
            values.append((t, floats))
        }
        for (t, v) in values { v.withUnsafeBufferPointer { t.pointer.update(from: $0.baseAddress!, count: t.count) } }
    }

    /// The model's trainable parameters as float32 arrays, in the order of `order` (a received
    /// record's names) when given, else in the model's order.
    public static func export(_ model: Module, order: [String]? = nil) -> ArrayRecord {
        let params = trainable(model)
        let byName = Dictionary(params, uniquingKeysWith: { a, _ in a })
        let names = order ?? params.map(\.0)
        var out = ArrayRecord()
        for name in names {
            guard let t = byName[name] else { continue }
            let values = (t.isContiguous && t.dtype == .float32) ? Array(UnsafeBufferPointer(start: t.pointer, count: t.count)) : t.array
            out[name] = FlowerArray(float32: values, shape: t.shape)
        }
        return out
    }

    static func list(_ xs: [String]) -> String {
        xs.count <= 8 ? xs.joined(separator: ", ") : xs.prefix(8).joined(separator: ", ") + ", ... (\(xs.count) in all)"
    }
}

/// A multilayer perceptron on images: flattens [N, C, H, W] and applies `MLP` (ReLU between
/// layers). Its parameters are named as `MLP`'s and PyTorch's `nn.Sequential` of Linear layers
/// without activations in between would be: `0.weight`, `0.bias`, `1.weight`, ...
public final class ImageMLP: Module, Layer {
    public let mlp: MLP
    /// `sizes`: input features (C·H·W), hidden widths, classes.
    public init(_ sizes: [Int], rng: inout RNG) { mlp = MLP(sizes, rng: &rng) }
    public override func children() -> [(String, Any)] { mlp.children() }
    public func forward(_ x: Tensor) -> Tensor { mlp(x.flattened(from: 1)) }
}
