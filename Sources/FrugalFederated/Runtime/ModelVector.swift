import FrugalNN

/// Flattens a module's trainable parameters into one `[Float]` (in `namedParameters()` order)
/// and writes such a vector back.
///
///     let layout = try ModelVector.layout(of: model)
///     var w = ModelVector.flatten(model)          // layout.count entries
///     try ModelVector.load(w, into: model)
public enum ModelVector {
    static func trainable(_ model: Module) -> [(String, Tensor)] {
        model.namedParameters().filter { $0.1.requiresGrad }
    }

    /// The layout (parameter names and entry counts) of `model`'s trainable parameters.
    public static func layout(of model: Module) throws -> TensorLayout {
        try TensorLayout(trainable(model).map { (name: $0.0, count: $0.1.count) })
    }

    /// The trainable parameters, concatenated.
    public static func flatten(_ model: Module) -> [Float] {
        var out: [Float] = []
        out.reserveCapacity(model.parameterCount)
        for (_, t) in trainable(model) {
            if t.isContiguous && t.dtype == .float32 {
                out.append(contentsOf: UnsafeBufferPointer(start: t.pointer, count: t.count))
            } else {
                out.append(contentsOf: t.array)
            }
        }
        return out
    }

    /// Writes `vector` into the trainable parameters; throws when the sizes or names disagree
    /// with `layout` (if given) or a parameter is not a contiguous float32 tensor.
    public static func load(_ vector: [Float], into model: Module, layout: TensorLayout? = nil) throws {
        let params = trainable(model)
        let total = params.reduce(0) { $0 + $1.1.count }
        guard vector.count == total else {
            throw FederatedError("model vector has \(vector.count) entries, the model's trainable parameters \(total)")
        }
        if let layout {
            guard layout.segments.count == params.count else {
                throw FederatedError("layout has \(layout.segments.count) tensors, the model \(params.count)")
            }
            for (s, (name, t)) in zip(layout.segments, params) where s.name != name || s.count != t.count {
                throw FederatedError("layout tensor '\(s.name)' (\(s.count)) does not match model parameter '\(name)' (\(t.count))")
            }
        }
        for (name, t) in params where !(t.isContiguous && t.dtype == .float32) {
            throw FederatedError("parameter '\(name)' is not a contiguous float32 tensor")
        }
        var offset = 0
        vector.withUnsafeBufferPointer { v in
            for (_, t) in params {
                t.pointer.update(from: v.baseAddress! + offset, count: t.count)
                offset += t.count
            }
        }
    }
}
