#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Broadcasting binary ops, unary ops and their backward rules.

@usableFromInline protocol BinaryFloatOp: Sendable { static func apply(_ a: Float, _ b: Float) -> Float }
@usableFromInline struct AddOp: BinaryFloatOp { @inline(__always) @usableFromInline static func apply(_ a: Float, _ b: Float) -> Float { a + b } }
@usableFromInline struct SubOp: BinaryFloatOp { @inline(__always) @usableFromInline static func apply(_ a: Float, _ b: Float) -> Float { a - b } }
@usableFromInline struct MulOp: BinaryFloatOp { @inline(__always) @usableFromInline static func apply(_ a: Float, _ b: Float) -> Float { a * b } }
@usableFromInline struct DivOp: BinaryFloatOp { @inline(__always) @usableFromInline static func apply(_ a: Float, _ b: Float) -> Float { a / b } }
@usableFromInline struct MaxOp: BinaryFloatOp { @inline(__always) @usableFromInline static func apply(_ a: Float, _ b: Float) -> Float { a >= b ? a : b } }
@usableFromInline struct MinOp: BinaryFloatOp { @inline(__always) @usableFromInline static func apply(_ a: Float, _ b: Float) -> Float { a <= b ? a : b } }
/// 1 where a > b (used for masks in backward rules).
@usableFromInline struct GreaterOp: BinaryFloatOp { @inline(__always) @usableFromInline static func apply(_ a: Float, _ b: Float) -> Float { a > b ? 1 : 0 } }
@usableFromInline struct GreaterEqualOp: BinaryFloatOp { @inline(__always) @usableFromInline static func apply(_ a: Float, _ b: Float) -> Float { a >= b ? 1 : 0 } }
/// a where b > 0, else 0: ReLU's backward (gradient a, activation b) in one pass.
@usableFromInline struct PassWherePositiveOp: BinaryFloatOp { @inline(__always) @usableFromInline static func apply(_ a: Float, _ b: Float) -> Float { b > 0 ? a : 0 } }
@usableFromInline struct EqualOp: BinaryFloatOp { @inline(__always) @usableFromInline static func apply(_ a: Float, _ b: Float) -> Float { a == b ? 1 : 0 } }

/// The shape two shapes broadcast to (NumPy rules), or a trap naming both.
public func broadcastShapes(_ a: [Int], _ b: [Int]) -> [Int] {
    let r = max(a.count, b.count)
    var out = [Int](repeating: 1, count: r)
    for i in 0..<r {
        let da = i < r - a.count ? 1 : a[i - (r - a.count)]
        let db = i < r - b.count ? 1 : b[i - (r - b.count)]
        precondition(da == db || da == 1 || db == 1, "cannot broadcast shapes \(a) and \(b)")
        out[i] = da == 1 ? db : da
    }
    return out
}

extension Tensor {
    /// Strides of this tensor viewed at broadcast shape `target` (0 on broadcast axes).
    func broadcastStrides(to target: [Int]) -> [Int] {
        var out = [Int](repeating: 0, count: target.count)
        let lead = target.count - rank
        for d in 0..<rank where shape[d] != 1 {
            precondition(shape[d] == target[d + lead], "cannot broadcast \(shape) to \(target)")
            out[d + lead] = strides[d]
        }
        return out
    }

    /// Elementwise `Op(self, other)` with broadcasting into a new contiguous tensor (untracked).
    @usableFromInline
    func binaryRaw<Op: BinaryFloatOp>(_ other: Tensor, _: Op.Type) -> Tensor {
        let a = dtype == .float32 ? self : contiguousF32()
        let b = other.dtype == .float32 ? other : other.contiguousF32()
        let outShape = a.shape == b.shape ? a.shape : broadcastShapes(a.shape, b.shape)
        let out = Tensor(zeros: outShape, zeroed: false)
        let n = out.count
        if n == 0 { return out }
        let po = out.pointer
        let pa = a.storage.floats + a.offset, pb = b.storage.floats + b.offset
        if a.shape == b.shape && a.isContiguous && b.isContiguous {
            // Disjoint ranges of `out`; the pointers outlive the call.
            let box = AddressBox([UnsafeRawPointer(pa), UnsafeRawPointer(pb), UnsafeRawPointer(po)])
            Kernels.parallelRanges(n) { lo, hi in
                let pa = box.f(0), pb = box.f(1), po = box.f(2)
                for i in lo..<hi { po[i] = Op.apply(pa[i], pb[i]) }
            }
            return out
        }
        if b.count == 1 {
            let s = pb[0]
            if a.shape == outShape && a.isContiguous {
                for i in 0..<n { po[i] = Op.apply(pa[i], s) }
                return out
            }
        }
        if a.count == 1 && b.shape == outShape && b.isContiguous {
            let s = pa[0]
            for i in 0..<n { po[i] = Op.apply(s, pb[i]) }
            return out
        }
        let sa = a.broadcastStrides(to: outShape), sb = b.broadcastStrides(to: outShape)
        let r = outShape.count
        let inner = r == 0 ? 1 : outShape[r - 1]
        let ia = r == 0 ? 0 : sa[r - 1], ib = r == 0 ? 0 : sb[r - 1]
        forEachRow(shape: outShape, stridesA: sa, stridesB: sb) { oa, ob, o in
            let xa = pa + oa, xb = pb + ob, y = po + o
            if ia == 1 && ib == 1 {
                for i in 0..<inner { y[i] = Op.apply(xa[i], xb[i]) }
            } else if ia == 1 && ib == 0 {
                let s = xb[0]
                for i in 0..<inner { y[i] = Op.apply(xa[i], s) }
            } else if ia == 0 && ib == 1 {
                let s = xa[0]
                for i in 0..<inner { y[i] = Op.apply(s, xb[i]) }
            } else {
                for i in 0..<inner { y[i] = Op.apply(xa[i * ia], xb[i * ib]) }
            }
        }
        return out
    }

    /// Sums a broadcast gradient back to `shape` (the inverse of broadcasting).
    public func sumTo(_ target: [Int]) -> Tensor {
        if shape == target { return self }
        let lead = rank - target.count
        precondition(lead >= 0, "sumTo: cannot reduce \(shape) to \(target)")
        var axes: [Int] = Array(0..<lead)
        for d in 0..<target.count where target[d] == 1 && shape[d + lead] != 1 { axes.append(d + lead) }
        let s = axes.isEmpty ? self : sum(axes: axes, keepDims: true)
        return s.reshaped(target)
    }

    // MARK: - Differentiable binary ops

    public func add(_ o: Tensor) -> Tensor {
        let (sa, sb) = (shape, o.shape)
        return binaryRaw(o, AddOp.self).recorded("add", [self, o]) { g in [g.sumTo(sa), g.sumTo(sb)] }
    }
    public func sub(_ o: Tensor) -> Tensor {
        let (sa, sb) = (shape, o.shape)
        return binaryRaw(o, SubOp.self).recorded("sub", [self, o]) { g in [g.sumTo(sa), g.neg().sumTo(sb)] }
    }
    public func mul(_ o: Tensor) -> Tensor {
        let a = self.detach(), b = o.detach()
        let out = binaryRaw(o, MulOp.self)
        return out.recorded("mul", [self, o]) { g in
            [self.requiresGrad ? g.binaryRaw(b, MulOp.self).sumTo(a.shape) : nil,
             o.requiresGrad ? g.binaryRaw(a, MulOp.self).sumTo(b.shape) : nil]
        }
    }
    public func div(_ o: Tensor) -> Tensor {
        let a = self.detach(), b = o.detach()
        return binaryRaw(o, DivOp.self).recorded("div", [self, o]) { g in
            let ga = g.binaryRaw(b, DivOp.self)
            return [self.requiresGrad ? ga.sumTo(a.shape) : nil,
                    o.requiresGrad ? ga.binaryRaw(a, MulOp.self).binaryRaw(b, DivOp.self).neg().sumTo(b.shape) : nil]
        }
    }
    /// Elementwise maximum; the gradient goes to `self` where self >= other (ties to self).
    public func maximum(_ o: Tensor) -> Tensor {
        let a = self.detach(), b = o.detach()
        return binaryRaw(o, MaxOp.self).recorded("maximum", [self, o]) { g in
            let m = a.binaryRaw(b, GreaterEqualOp.self)
            return [g.binaryRaw(m, MulOp.self).sumTo(a.shape), g.binaryRaw(m.oneMinus(), MulOp.self).sumTo(b.shape)]
        }
    }
    /// Elementwise minimum; the gradient goes to `self` where self <= other.
    public func minimum(_ o: Tensor) -> Tensor {
        let a = self.detach(), b = o.detach()
        return binaryRaw(o, MinOp.self).recorded("minimum", [self, o]) { g in
            let m = b.binaryRaw(a, GreaterEqualOp.self)
            return [g.binaryRaw(m, MulOp.self).sumTo(a.shape), g.binaryRaw(m.oneMinus(), MulOp.self).sumTo(b.shape)]
        }
    }

    /// 1 where self > other, else 0 (not differentiable).
    public func greater(_ o: Tensor) -> Tensor { binaryRaw(o, GreaterOp.self) }
    /// 1 where self == other, else 0 (not differentiable).
    public func equal(_ o: Tensor) -> Tensor { binaryRaw(o, EqualOp.self) }

    func oneMinus() -> Tensor { Tensor(scalar: 1).binaryRaw(self, SubOp.self) }

    /// `mask ? self : other` elementwise with broadcasting (mask holds 0/1 values, not differentiated).
    public func where_(_ mask: Tensor, _ other: Tensor) -> Tensor {
        let m = mask.detach()
        let a = binaryRaw(m, MulOp.self), b = other.binaryRaw(m.oneMinus(), MulOp.self)
        let (sa, sb) = (shape, other.shape)
        return a.binaryRaw(b, AddOp.self).recorded("where", [self, other]) { g in
            [g.binaryRaw(m, MulOp.self).sumTo(sa), g.binaryRaw(m.oneMinus(), MulOp.self).sumTo(sb)]
        }
    }

    /// Replaces elements where `mask` is nonzero by `value` (e.g. -inf for attention masks).
    public func maskedFill(_ mask: Tensor, _ value: Float) -> Tensor {
        let m = mask.detach()
        let out = contiguousF32().copyTensorIfSame(self)
        let outShape = broadcastShapes(shape, m.shape)
        precondition(outShape == shape, "maskedFill: mask \(m.shape) must broadcast to \(shape)")
        let mc = m.expanded(to: shape).contiguousF32()
        let po = out.pointer, pm = mc.pointer
        for i in 0..<out.count where pm[i] != 0 { po[i] = value }
        return out.recorded("maskedFill", [self]) { g in
            let gm = g.contiguousF32().copyTensorIfSame(g)
            let pg = gm.pointer
            for i in 0..<gm.count where pm[i] != 0 { pg[i] = 0 }
            _ = mc
            return [gm]
        }
    }

    func copyTensorIfSame(_ t: Tensor) -> Tensor { self === t ? copyTensor() : self }

    // MARK: - Scalars

    public func add(_ s: Float) -> Tensor { unaryRaw { $0 + s }.recorded("addScalar", [self]) { g in [g] } }
    public func mul(_ s: Float) -> Tensor { unaryRaw { $0 * s }.recorded("mulScalar", [self]) { g in [g.unaryRaw { $0 * s }] } }
    public func neg() -> Tensor { unaryRaw { -$0 }.recorded("neg", [self]) { g in [g.unaryRaw { -$0 }] } }
    /// self ** p for a constant exponent.
    public func pow(_ p: Float) -> Tensor {
        let x = detach()
        return unaryRaw { powf($0, p) }.recorded("pow", [self]) { g in
            [g.binaryRaw(x.unaryRaw { p * powf($0, p - 1) }, MulOp.self)]
        }
    }

    // MARK: - Unary ops

    /// Applies `f` elementwise into a new contiguous tensor (untracked). `f` is inlined into
    /// the loop by specialisation; it is not called through a closure per element in -O builds.
    @inlinable
    public func unaryRaw(_ f: (Float) -> Float) -> Tensor {
        let a = contiguousF32()
        let out = Tensor(zeros: shape, zeroed: false)
        let pa = a.pointer, po = out.pointer
        for i in 0..<count { po[i] = f(pa[i]) }
        return out
    }

    public func exp() -> Tensor {
        let y = unaryRaw { expf($0) }
        let yd = y.detach()
        return y.recorded("exp", [self]) { g in [g.binaryRaw(yd, MulOp.self)] }
    }
    public func log() -> Tensor {
        let x = detach()
        return unaryRaw { logf($0) }.recorded("log", [self]) { g in [g.binaryRaw(x, DivOp.self)] }
    }
    public func sqrt() -> Tensor {
        let y = unaryRaw { sqrtf($0) }
        let yd = y.detach()
        return y.recorded("sqrt", [self]) { g in [g.binaryRaw(yd.unaryRaw { 0.5 / $0 }, MulOp.self)] }
    }
    public func abs() -> Tensor {
        let x = detach()
        return unaryRaw { Swift.abs($0) }.recorded("abs", [self]) { g in
            [g.binaryRaw(x.unaryRaw { $0 > 0 ? 1 : ($0 < 0 ? -1 : 0) }, MulOp.self)]
        }
    }
    public func relu() -> Tensor {
        let y = unaryRaw { $0 > 0 ? $0 : 0 }
        // y > 0 exactly where x > 0, so the backward keeps the output (often kept anyway by the
        // next op) instead of the input, and masks the gradient in one pass.
        let yd = y.detach()
        return y.recorded("relu", [self]) { g in [g.binaryRaw(yd, PassWherePositiveOp.self)] }
    }
    public func leakyRelu(_ slope: Float = 0.01) -> Tensor {
        let x = detach()
        return unaryRaw { $0 > 0 ? $0 : slope * $0 }.recorded("leakyRelu", [self]) { g in
            [g.binaryRaw(x.unaryRaw { $0 > 0 ? 1 : slope }, MulOp.self)]
        }
    }
    public func sigmoid() -> Tensor {
        let y = unaryRaw { 1 / (1 + expf(-$0)) }
        let yd = y.detach()
        return y.recorded("sigmoid", [self]) { g in [g.binaryRaw(yd.unaryRaw { $0 * (1 - $0) }, MulOp.self)] }
    }
    public func tanh() -> Tensor {
        let y = unaryRaw { tanhf($0) }
        let yd = y.detach()
        return y.recorded("tanh", [self]) { g in [g.binaryRaw(yd.unaryRaw { 1 - $0 * $0 }, MulOp.self)] }
    }
    /// x * sigmoid(x) (SwiGLU's activation).
    public func silu() -> Tensor {
        let x = detach()
        return unaryRaw { $0 / (1 + expf(-$0)) }.recorded("silu", [self]) { g in
            [g.binaryRaw(x.unaryRaw { v in let s = 1 / (1 + expf(-v)); return s * (1 + v * (1 - s)) }, MulOp.self)]
        }
    }
    /// GELU, exact (erf) form as in BERT and PyTorch's default.
    public func gelu() -> Tensor {
        let x = detach()
        return unaryRaw { 0.5 * $0 * (1 + erff($0 * 0.70710678118654752)) }.recorded("gelu", [self]) { g in
            [g.binaryRaw(x.unaryRaw { v in
                0.5 * (1 + erff(v * 0.70710678118654752)) + v * 0.3989422804014327 * expf(-0.5 * v * v)
            }, MulOp.self)]
        }
    }
    /// GELU with the tanh approximation (GPT-2's).
    public func geluTanh() -> Tensor {
        let x = detach()
        let c: Float = 0.7978845608028654
        return unaryRaw { v in 0.5 * v * (1 + tanhf(c * (v + 0.044715 * v * v * v))) }.recorded("geluTanh", [self]) { g in
            [g.binaryRaw(x.unaryRaw { v in
                let u = c * (v + 0.044715 * v * v * v)
                let t = tanhf(u)
                return 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * c * (1 + 3 * 0.044715 * v * v)
            }, MulOp.self)]
        }
    }
    /// Clamps into [lo, hi]; the gradient passes where the value was inside.
    public func clamp(min lo: Float = -.infinity, max hi: Float = .infinity) -> Tensor {
        let x = detach()
        return unaryRaw { Swift.min(Swift.max($0, lo), hi) }.recorded("clamp", [self]) { g in
            [g.binaryRaw(x.unaryRaw { $0 >= lo && $0 <= hi ? 1 : 0 }, MulOp.self)]
        }
    }

    // MARK: - In place (untracked; for optimisers and accumulation)

    /// self += other (same shape or broadcastable other), in place, not tracked.
    public func addInPlace(_ other: Tensor, scale: Float = 1) {
        precondition(dtype == .float32 && isContiguous, "addInPlace needs a contiguous float32 tensor, got \(shape)")
        let o = other.shape == shape ? other.contiguousF32() : other.expanded(to: shape).contiguousF32()
        // Disjoint ranges of self; the pointers outlive the call.
        let box = AddressBox([UnsafeRawPointer(pointer), UnsafeRawPointer(o.pointer)])
        Kernels.parallelRanges(count) { lo, hi in
            let p = box.f(0), q = box.f(1)
            if scale == 1 { for i in lo..<hi { p[i] += q[i] } } else { for i in lo..<hi { p[i] += scale * q[i] } }
        }
    }
    /// Multiplies every element by `s`, in place.
    public func scaleInPlace(_ s: Float) {
        precondition(dtype == .float32 && isContiguous, "scaleInPlace needs a contiguous float32 tensor")
        let p = pointer
        for i in 0..<count { p[i] *= s }
    }
    /// Sets every element to `v`, in place, and returns self.
    @discardableResult
    public func filled(_ v: Float) -> Tensor {
        precondition(dtype == .float32 && isContiguous, "fill needs a contiguous float32 tensor")
        pointer.update(repeating: v, count: count)
        return self
    }
    /// Copies `other`'s values into self (same count), in place.
    public func assign(_ other: Tensor) {
        precondition(other.count == count, "assign: \(other.shape) into \(shape)")
        precondition(dtype == .float32 && isContiguous, "assign needs a contiguous float32 destination")
        other.copyInto(pointer)
    }
}

// MARK: - Operators

public func + (a: Tensor, b: Tensor) -> Tensor { a.add(b) }
public func - (a: Tensor, b: Tensor) -> Tensor { a.sub(b) }
public func * (a: Tensor, b: Tensor) -> Tensor { a.mul(b) }
public func / (a: Tensor, b: Tensor) -> Tensor { a.div(b) }
public func + (a: Tensor, s: Float) -> Tensor { a.add(s) }
public func - (a: Tensor, s: Float) -> Tensor { a.add(-s) }
public func * (a: Tensor, s: Float) -> Tensor { a.mul(s) }
public func / (a: Tensor, s: Float) -> Tensor { a.mul(1 / s) }
public func + (s: Float, a: Tensor) -> Tensor { a.add(s) }
public func * (s: Float, a: Tensor) -> Tensor { a.mul(s) }
public func - (s: Float, a: Tensor) -> Tensor { a.neg().add(s) }
public prefix func - (a: Tensor) -> Tensor { a.neg() }
