/// The download side of a baseline compressed in both directions (STC as published by Sattler et
/// al. 2019, or top-k both ways): the server compresses each round's aggregated update with its
/// own error-feedback residual and applies exactly what it sends,
///     ũ_t = C(ū_t + e),  e ← ū_t + e − ũ_t,  w_t = w_{t−1} + ũ_t,
/// and a device that last synchronised at round s catches up with the missed messages
/// ũ_{s+1} … ũ_t ("partial sums" from the server's cache), or with the dense model when that is
/// smaller or the device never synchronised. Replaying the messages in order on the device's copy
/// reproduces w_t bit for bit.
///
/// Stream: u8 kind (0 = dense model stream, 1 = updates), then for kind 1 a u32 count and, per
/// message, a u32 length and the codec's stream.
public final class CompressedBroadcast {
    public let codec: any UpdateCodec
    let dense = DenseCodec()
    /// Server residual for the broadcast codec.
    var state: CodecState
    /// Every broadcast message so far (message r−1 made w_r from w_{r−1}; index = round − 1 of the
    /// aggregation that made it, counting aggregations).
    var history: [[UInt8]] = []
    /// Messages dropped from the front of `history` (a device that missed more of them than fit in a
    /// dense model gets the dense model anyway, so older ones are never needed).
    var base = 0
    /// For each device, how many messages its copy has applied.
    var applied: [Int: Int] = [:]

    public init(codec: any UpdateCodec, seed: UInt64) {
        self.codec = codec
        state = CodecState(seed: seed ^ 0xB40A_DCA5)
    }

    /// Server: ũ from the weighted average of the updates; returns the new global model.
    public func aggregate(global: [Float], updates: [[Float]], weights: [Double], layout: TensorLayout) throws -> [Float] {
        let zero = [Float](repeating: 0, count: global.count)
        let mean = weightedAverageStep(global: zero, updates: updates, weights: weights)
        let bytes = try codec.encode(mean, layout: layout, state: &state)
        let u = try codec.decode(bytes, layout: layout)
        history.append(bytes)
        var total = history.reduce(0) { $0 + 4 + $1.count }
        while total > dense.estimatedSize(layout), !history.isEmpty {
            total -= 4 + history.removeFirst().count
            base += 1
        }
        var out = global
        out.withUnsafeMutableBufferPointer { o in u.withUnsafeBufferPointer { ub in for i in 0 ..< o.count { o[i] += ub[i] } } }
        return out
    }

    /// Server: the stream that brings `device` to the current global model.
    public func encode(global: [Float], device: Int, layout: TensorLayout) throws -> [UInt8] {
        let denseSize = dense.estimatedSize(layout) + 1
        if let done = applied[device], done >= base {
            let missed = history[(done - base)...]
            let size = 5 + missed.reduce(0) { $0 + 4 + $1.count }
            if size < denseSize {
                var w = ByteWriter(capacity: size)
                w.writeU8(1)
                w.writeU32(UInt32(missed.count))
                for m in missed { w.writeU32(UInt32(m.count)); w.writeBytes(m) }
                return w.bytes
            }
        }
        var w = ByteWriter(capacity: denseSize)
        w.writeU8(0)
        w.writeBytes(try dense.encode(global, layout: layout))
        return w.bytes
    }

    /// Device (and the server's mirror): applies the stream to the device's copy.
    public func decode(_ bytes: [UInt8], copy: [Float]?, device: Int, layout: TensorLayout) throws -> [Float] {
        var r = ByteReader(bytes, context: "compressed download")
        let kind = try r.readU8("kind")
        switch kind {
        case 0:
            applied[device] = base + history.count
            return try dense.decode(Array(bytes[1...]), layout: layout)
        case 1:
            guard var w = copy else { throw FederatedError("compressed download for device \(device), which holds no model copy") }
            let count = Int(try r.readU32("message count"))
            for j in 0 ..< count {
                let len = Int(try r.readU32("length of message \(j)"))
                var msg: [UInt8] = []
                try r.withBytes(len, "message \(j)") { msg = Array($0) }
                let u = try codec.decode(msg, layout: layout)
                w.withUnsafeMutableBufferPointer { o in u.withUnsafeBufferPointer { ub in for i in 0 ..< o.count { o[i] += ub[i] } } }
            }
            try r.expectEnd()
            applied[device] = base + history.count
            return w
        default:
            throw FederatedError("compressed download: unknown kind \(kind) in byte 0")
        }
    }

    func save(into s: inout StrategyState) {
        s.put([-1: state], prefix: "bcast")
        for (j, m) in history.enumerated() { s.arrays["bcast.msg.\(j)"] = m.map(Float.init) }
        s.integers["bcast.count"] = UInt64(history.count)
        s.integers["bcast.base"] = UInt64(base)
        for (d, n) in applied { s.integers["bcast.applied.\(d)"] = UInt64(n) }
    }

    func restore(_ s: StrategyState, layout: TensorLayout) throws {
        state = try s.codecStates(prefix: "bcast", layout: layout)[-1] ?? CodecState(seed: state.rng.state)
        let n = Int(s.integers["bcast.count"] ?? 0)
        base = Int(s.integers["bcast.base"] ?? 0)
        history = try (0 ..< n).map { j in
            guard let m = s.arrays["bcast.msg.\(j)"] else { throw FederatedError("strategy state: broadcast message \(j) missing") }
            return m.map { UInt8($0) }
        }
        applied = [:]
        for (k, v) in s.integers where k.hasPrefix("bcast.applied.") {
            guard let d = Int(k.dropFirst(14)) else { throw FederatedError("strategy state: bad key '\(k)'") }
            applied[d] = Int(v)
        }
    }
}
