/// An n-dimensional array of float32 values (stored as f32, f16 or bf16) with optional gradient
/// tracking. A tensor is a view (shape, strides, offset in elements) into a `Storage`; views share
/// storage, `contiguous()` copies when needed.
///
///     let x = Tensor([1, 2, 3, 4], shape: [2, 2], requiresGrad: true)
///     let y = (x * x).sum()
///     y.backward()          // x.grad == 2 * x
public final class Tensor: @unchecked Sendable {
    // @unchecked Sendable: a tensor's shape/storage are immutable after creation; `grad` and the
    // autograd node are mutated only by the thread that runs backward or the optimiser.
    public let storage: Storage
    public let shape: [Int]
    public let strides: [Int]
    public let offset: Int
    /// Whether gradients flow to this tensor. Set on leaves (parameters, inputs).
    public var requiresGrad: Bool
    /// Accumulated gradient of a leaf after `backward()`.
    public var grad: Tensor?
    /// The operation that produced this tensor, when it was computed with gradient tracking.
    var node: GradNode?
    /// An optional name, for error messages and state dicts.
    public var name: String?

    /// Wraps an existing storage as a view.
    public init(storage: Storage, shape: [Int], strides: [Int]? = nil, offset: Int = 0, requiresGrad: Bool = false) {
        self.storage = storage
        self.shape = shape
        self.strides = strides ?? Tensor.contiguousStrides(shape)
        self.offset = offset
        self.requiresGrad = requiresGrad
    }

    /// A new float32 tensor with zeros (or uninitialised when `zeroed` is false).
    public convenience init(zeros shape: [Int], dtype: DType = .float32, zeroed: Bool = true, requiresGrad: Bool = false) {
        Tensor.checkShape(shape)
        self.init(storage: Storage(count: Tensor.product(shape), dtype: dtype, zeroed: zeroed), shape: shape, requiresGrad: requiresGrad)
    }

    /// A float32 tensor holding a copy of `values` in row-major order.
    public convenience init(_ values: [Float], shape: [Int]? = nil, requiresGrad: Bool = false) {
        let s = shape ?? [values.count]
        precondition(Tensor.product(s) == values.count, "Tensor: \(values.count) values do not fill shape \(s)")
        self.init(zeros: s, zeroed: false, requiresGrad: requiresGrad)
        values.withUnsafeBufferPointer { buf in
            if let b = buf.baseAddress { storage.floats.update(from: b, count: values.count) }
        }
    }

    /// A 0-d tensor holding one value.
    public convenience init(scalar: Float, requiresGrad: Bool = false) {
        self.init([scalar], shape: [], requiresGrad: requiresGrad)
    }

    // MARK: - Shape facts

    public var rank: Int { shape.count }
    /// Number of elements.
    public var count: Int { Tensor.product(shape) }
    public var dtype: DType { storage.dtype }
    public var isScalar: Bool { shape.isEmpty }
    /// Whether the elements lie in row-major order without gaps.
    public var isContiguous: Bool {
        var expected = 1
        for d in stride(from: shape.count - 1, through: 0, by: -1) where shape[d] != 1 {
            if strides[d] != expected { return false }
            expected *= shape[d]
        }
        return true
    }
    /// Whether this tensor is a leaf of the autograd graph (not produced by a tracked op).
    public var isLeaf: Bool { node == nil }

    /// The size of axis `axis` (negative counts from the end).
    public func size(_ axis: Int) -> Int { shape[normalizeAxis(axis)] }

    /// Pointer to the first element of a contiguous float32 tensor.
    @inlinable public var pointer: UnsafeMutablePointer<Float> {
        precondition(storage.dtype == .float32, "Tensor.pointer on a \(storage.dtype) tensor; call .float32() first")
        return storage.floats + offset
    }

    /// The elements in row-major order as an array (any dtype, any strides).
    public var array: [Float] {
        let c = contiguousF32()
        return Array(UnsafeBufferPointer(start: c.pointer, count: c.count))
    }

    /// The single value of a one-element tensor.
    public var item: Float {
        precondition(count == 1, "Tensor.item on a tensor of shape \(shape)")
        return array[0]
    }

    /// Element at a multi-index (slow; for tests and small tensors).
    public subscript(_ index: Int...) -> Float {
        precondition(index.count == rank, "Tensor subscript with \(index.count) indices on shape \(shape)")
        var o = offset
        for (d, i) in index.enumerated() {
            precondition(i >= 0 && i < shape[d], "index \(i) out of range for axis \(d) of shape \(shape)")
            o += i * strides[d]
        }
        switch storage.dtype {
        case .float32: return storage.floats[o]
        case .float16: return HalfConversion.f16ToFloat(storage.raw.load(fromByteOffset: 2 * o, as: UInt16.self))
        case .bfloat16: return HalfConversion.bf16ToFloat(storage.raw.load(fromByteOffset: 2 * o, as: UInt16.self))
        }
    }

    // MARK: - Helpers

    @inlinable public static func product(_ shape: [Int]) -> Int {
        var p = 1
        for s in shape { p *= s }
        return p
    }

    public static func contiguousStrides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var acc = 1
        for d in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[d] = acc
            acc *= shape[d]
        }
        return strides
    }

    static func checkShape(_ shape: [Int]) {
        var total = 1
        for s in shape {
            precondition(s >= 0, "Tensor: negative dimension in shape \(shape)")
            let (p, o) = total.multipliedReportingOverflow(by: s)
            precondition(!o, "Tensor: shape \(shape) overflows")
            total = p
        }
    }

    func normalizeAxis(_ axis: Int) -> Int {
        let a = axis < 0 ? axis + rank : axis
        precondition(a >= 0 && a < Swift.max(rank, 1), "axis \(axis) out of range for shape \(shape)")
        return a
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let values = count <= 16 ? array.map { String($0) }.joined(separator: ", ") : "\(count) values"
        return "Tensor(shape: \(shape), dtype: \(dtype)\(requiresGrad ? ", requiresGrad" : ""), [\(values)])"
    }
}
