import FrugalCore
import FrugalNN

/// The candidate operations of the DARTS cell search space (Liu et al., 2019), by their names in
/// the DARTS code: none, max_pool_3x3, avg_pool_3x3, skip_connect, sep_conv_3x3, sep_conv_5x5,
/// dil_conv_3x3, dil_conv_5x5.
public enum DARTSOp: String, Codable, Sendable, CaseIterable, Hashable {
    case none = "none"
    case maxPool3x3 = "max_pool_3x3"
    case avgPool3x3 = "avg_pool_3x3"
    case skipConnect = "skip_connect"
    case sepConv3x3 = "sep_conv_3x3"
    case sepConv5x5 = "sep_conv_5x5"
    case dilConv3x3 = "dil_conv_3x3"
    case dilConv5x5 = "dil_conv_5x5"

    /// The 8 DARTS primitives, in the order of the DARTS code.
    public static let darts: [DARTSOp] = DARTSOp.allCases
    /// FairDARTS' set: the DARTS primitives without `none`.
    public static let fair: [DARTSOp] = DARTSOp.allCases.filter { $0 != .none }

    /// Parses a comma-separated list of op names ("darts" and "fair" name the two standard sets).
    public static func parseList(_ s: String) throws -> [DARTSOp] {
        if s == "darts" { return darts }
        if s == "fair" { return fair }
        var out: [DARTSOp] = []
        for part in s.split(separator: ",") {
            let name = part.trimmingCharacters(in: " ")
            guard let op = DARTSOp(rawValue: name) else {
                throw DARTSError.invalid("unknown operation '\(name)'; known: \(DARTSOp.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            if out.contains(op) { throw DARTSError.invalid("operation '\(name)' listed twice") }
            out.append(op)
        }
        if out.isEmpty { throw DARTSError.invalid("empty operation list") }
        return out
    }

    /// Builds this op on `channels` channels with `stride` (1, or 2 on reduction edges).
    /// `affine` is false in the supernet (DARTS search) and true in the retrained network.
    public func make(channels c: Int, stride: Int, affine: Bool, rng: inout RNG) -> any Layer {
        switch self {
        case .none: return ZeroOp(stride: stride)
        case .maxPool3x3: return PoolBN(max: true, channels: c, stride: stride, affine: affine)
        case .avgPool3x3: return PoolBN(max: false, channels: c, stride: stride, affine: affine)
        case .skipConnect: return stride == 1 ? IdentityOp() as any Layer : FactorizedReduce(c, c, affine: affine, rng: &rng)
        case .sepConv3x3: return SepConv(c, c, kernel: 3, stride: stride, padding: 1, affine: affine, rng: &rng)
        case .sepConv5x5: return SepConv(c, c, kernel: 5, stride: stride, padding: 2, affine: affine, rng: &rng)
        case .dilConv3x3: return DilConv(c, c, kernel: 3, stride: stride, padding: 2, dilation: 2, affine: affine, rng: &rng)
        case .dilConv5x5: return DilConv(c, c, kernel: 5, stride: stride, padding: 4, dilation: 2, affine: affine, rng: &rng)
        }
    }
}

extension StringProtocol {
    func trimmingCharacters(in set: Character) -> String {
        var s = Substring(self)
        while s.first == set { s.removeFirst() }
        while s.last == set { s.removeLast() }
        return String(s)
    }
}

/// Errors of the DARTS models (bad genotypes, op names, configurations).
public enum DARTSError: Error, CustomStringConvertible {
    case invalid(String)
    public var description: String {
        switch self { case .invalid(let s): return s }
    }
}

/// The `none` op: zeros (at half resolution when `stride` is 2).
public final class ZeroOp: Module, Layer {
    public let stride: Int
    public init(stride: Int) { self.stride = stride }
    public override func children() -> [(String, Any)] { [] }
    public func forward(_ x: Tensor) -> Tensor {
        let s = x.shape
        return Tensor(zeros: [s[0], s[1], (s[2] + stride - 1) / stride, (s[3] + stride - 1) / stride])
    }
}

/// skip_connect at stride 1.
public final class IdentityOp: Module, Layer {
    public override init() {}
    public override func children() -> [(String, Any)] { [] }
    public func forward(_ x: Tensor) -> Tensor { x }
}

/// ReLU → conv k×k → BN (DARTS `ReLUConvBN`; the 1×1 version preprocesses cell inputs).
public final class ReLUConvBN: Module, Layer {
    public let conv: Conv2d
    public let bn: BatchNorm2d
    public init(_ cin: Int, _ cout: Int, kernel: Int, stride: Int, padding: Int, affine: Bool, rng: inout RNG) {
        conv = Conv2d(cin, cout, kernel: kernel, stride: stride, padding: padding, bias: false, rng: &rng)
        bn = BatchNorm2d(cout, affine: affine)
    }
    public func forward(_ x: Tensor) -> Tensor { bn(conv(x.relu())) }
}

/// ReLU → depthwise k×k (dilated) → pointwise 1×1 → BN (DARTS `DilConv`).
public final class DilConv: Module, Layer {
    public let depthwise: Conv2d, pointwise: Conv2d
    public let bn: BatchNorm2d
    public init(_ cin: Int, _ cout: Int, kernel: Int, stride: Int, padding: Int, dilation: Int, affine: Bool, rng: inout RNG) {
        depthwise = Conv2d(cin, cin, kernel: kernel, stride: stride, padding: padding, dilation: dilation, groups: cin, bias: false, rng: &rng)
        pointwise = Conv2d(cin, cout, kernel: 1, bias: false, rng: &rng)
        bn = BatchNorm2d(cout, affine: affine)
    }
    public func forward(_ x: Tensor) -> Tensor { bn(pointwise(depthwise(x.relu()))) }
}

/// Two `DilConv`s with dilation 1, the first carrying the stride (DARTS `SepConv`).
public final class SepConv: Module, Layer {
    public let first: DilConv, second: DilConv
    public init(_ cin: Int, _ cout: Int, kernel: Int, stride: Int, padding: Int, affine: Bool, rng: inout RNG) {
        first = DilConv(cin, cin, kernel: kernel, stride: stride, padding: padding, dilation: 1, affine: affine, rng: &rng)
        second = DilConv(cin, cout, kernel: kernel, stride: 1, padding: padding, dilation: 1, affine: affine, rng: &rng)
    }
    public func forward(_ x: Tensor) -> Tensor { second(first(x)) }
}

/// Halves the resolution without losing every other pixel: ReLU, then two 1×1 stride-2 convs on
/// x and on x shifted by one pixel, concatenated (cout/2 channels each), then BN.
public final class FactorizedReduce: Module, Layer {
    public let conv1: Conv2d, conv2: Conv2d
    public let bn: BatchNorm2d
    public init(_ cin: Int, _ cout: Int, affine: Bool, rng: inout RNG) {
        precondition(cout % 2 == 0, "FactorizedReduce: output channels \(cout) must be even")
        conv1 = Conv2d(cin, cout / 2, kernel: 1, stride: 2, bias: false, rng: &rng)
        conv2 = Conv2d(cin, cout / 2, kernel: 1, stride: 2, bias: false, rng: &rng)
        bn = BatchNorm2d(cout, affine: affine)
    }
    public func forward(_ x: Tensor) -> Tensor {
        let r = x.relu()
        let a = conv1(r)
        // x[:, :, 1:, 1:], zero-padded back to an even size at the far end (as PyTorch's
        // conv on the odd-sized slice gives the same output size for even inputs).
        let h = r.shape[2], w = r.shape[3]
        let shifted = r.slice(axis: 2, 1, h).slice(axis: 3, 1, w)
        let b = conv2(shifted)
        return bn(Tensor.concat([a, b], axis: 1))
    }
}

/// 3×3 max or average pooling (padding 1; average excludes the padding), then BN in the
/// supernet (DARTS adds a non-affine BN after pools in `MixedOp`); plain pooling in a genotype net.
public final class PoolBN: Module, Layer {
    public let isMax: Bool, stride: Int
    public let bn: BatchNorm2d?
    public init(max: Bool, channels: Int, stride: Int, affine: Bool) {
        isMax = max; self.stride = stride
        bn = affine ? nil : BatchNorm2d(channels, affine: false)
    }
    public func forward(_ x: Tensor) -> Tensor {
        let y = isMax ? x.maxPool2d(kernel: 3, stride: stride, padding: 1) : x.avgPool2d(kernel: 3, stride: stride, padding: 1, countIncludePad: false)
        return bn.map { $0(y) } ?? y
    }
}
