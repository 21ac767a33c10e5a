import Foundation

/// Results of one simulated run of a policy.
public struct SimResult: Sendable, Codable, Equatable {
    public var policy: String
    /// Mean seconds per output (decode) token.
    public var tpot: Double
    /// Share of expert activations that needed no demand load (everything cached or prefetched in time).
    public var hitRate: Double
    /// Share of activations whose top segment (the whole expert at θ = 1) was cached.
    public var cacheHitRate: Double
    /// Mean seconds per token the compute stream waited for loads.
    public var stallPerToken: Double
    /// Mean bytes loaded per token (demand + prefetch).
    public var bytesPerToken: Double
    /// Share of loaded bytes that were prefetches of experts not used.
    public var wastedPrefetchShare: Double
    public var tokens: Int
    /// Mean seconds per timed token of each turn (prompt) of the routing, in order.
    public var turnTpot: [Double] = []
    /// The median of `turnTpot` (`tpot` when there is one turn): what the engine's bench reports.
    public var medianTurnTpot: Double {
        guard turnTpot.count > 1 else { return tpot }
        return turnTpot.sorted()[turnTpot.count / 2]
    }
}

/// A discrete-event model of offloaded MoE decoding: one compute stream (attention, then each expert's segments
/// as they arrive, top first) and one link that carries loads in order, demand loads ahead of prefetches that have
/// not started. It drives a `SimPolicy` with the engine's protocol and a predictor of given accuracy.
public struct MoESimulator {
    public var timings: [LayerTiming]
    /// Seconds per token outside the MoE layers.
    public var otherTime: Double = 0
    /// Seed of the predictor's errors.
    public var seed: UInt64 = 7
    /// Prefetches move in chunks of this many bytes; a demand load waits for the chunk in progress, not for the
    /// rest of the prefetch (0: prefetches in progress are never interrupted).
    public var chunkBytes: Double = 1_048_576

    public init(timings: [LayerTiming], otherTime: Double = 0) { self.timings = timings; self.otherTime = otherTime }

    struct Transfer { var seg: SimSegment; var bytes: Double; var start: Double; var end: Double; var demand: Bool }

    /// Runs `tokens`; tokens before `countFrom` warm caches (same protocol) but are not timed.
    /// `experts`: per-layer expert count (for mispredicted picks).
    /// `timed`: which tokens count (nil: all from `countFrom`).
    public func run(policy: SimPolicy, tokens: [TokenRouting], experts: Int, countFrom: Int = 0, timed: [Bool]? = nil) -> SimResult {
        let L = timings.count
        var rng = SimRNG(seed: seed)
        // The link: the transfer in progress (its times fixed) and the pending ones, in link order (their times
        // follow from the queue and are recomputed whenever it changes).
        var current: Transfer? = nil
        var pending: [Transfer] = []
        var arrival: [SimSegment: Double] = [:]
        var now = 0.0
        var timedSeconds = 0.0, stall = 0.0, bytes = 0.0, wasted = 0.0
        var turnSums: [(Double, Int)] = [], lastTurn = Int.min
        var acts = 0, hits = 0, cacheHits = 0, counted = 0
        var prefetchedUnused: [SimSegment: Double] = [:]

        /// Transfers that have started by t leave the queue; the last of them is the one in progress.
        func advance(_ t: Double) {
            while let f = pending.first, f.start <= t { current = f; pending.removeFirst() }
            if let c = current, c.end <= t { current = nil }
        }
        /// Start and end of every pending transfer from t on, and the arrival time of each segment.
        func repack(_ t: Double) {
            var free = max(t, current?.end ?? t)
            for i in pending.indices {
                let tm = timings[pending[i].seg.layer]
                pending[i].start = free; pending[i].end = free + tm.load(pending[i].bytes); free = pending[i].end
                arrival[pending[i].seg] = pending[i].end
            }
        }
        /// Cuts the prefetch in progress at its next chunk boundary (t: now); returns the bytes it did not move.
        func cutCurrent(_ t: Double) -> Double {
            guard chunkBytes > 0, let c = current, !c.demand, c.end > t else { return 0 }
            let tm = timings[c.seg.layer]
            let done = max(0, (t - c.start - tm.loadLatency) * tm.loadBandwidth)
            let cut = (done / chunkBytes).rounded(.up) * chunkBytes
            guard cut < c.bytes else { return 0 }
            current!.bytes = cut
            current!.end = c.start + tm.loadLatency + cut / tm.loadBandwidth
            arrival[c.seg] = current!.end
            return c.bytes - cut
        }
        func schedule(_ loads: [SimLoad], at t: Double) {
            advance(t)
            // Demand loads go after the pending demand loads and before every prefetch not started by t, and cut
            // the prefetch in progress at its next chunk boundary (its rest is queued again first among prefetches).
            let demand = loads.filter(\.demand), pre = loads.filter { !$0.demand }
            if !demand.isEmpty {
                let rest = cutCurrent(t)
                var firstPrefetch = pending.firstIndex { !$0.demand } ?? pending.count
                if rest > 0, let c = current {
                    pending.insert(Transfer(seg: c.seg, bytes: rest, start: 0, end: 0, demand: false), at: firstPrefetch)
                }
                for ld in demand {
                    pending.insert(Transfer(seg: ld.segment, bytes: ld.bytes, start: 0, end: 0, demand: true), at: firstPrefetch)
                    firstPrefetch += 1
                }
            }
            for ld in pre { pending.append(Transfer(seg: ld.segment, bytes: ld.bytes, start: 0, end: 0, demand: false)) }
            repack(t)
        }
        /// A dropped segment's pending transfer leaves the queue; one in progress stops at its chunk boundary.
        func drop(_ s: SimSegment, at t: Double) {
            advance(t)
            pending.removeAll { $0.seg == s }
            if let c = current, c.seg == s { _ = cutCurrent(t) }
            repack(t)
            arrival[s] = nil
        }
        /// Pending prefetches of segments needed now move to the end of the demand loads (the engine's promotion).
        func promote(_ segs: [SimSegment], at t: Double) {
            advance(t)
            for s in segs {
                guard let i = pending.firstIndex(where: { $0.seg == s && !$0.demand }) else { continue }
                let firstPrefetch = pending.firstIndex { !$0.demand } ?? pending.count
                guard i > firstPrefetch else { continue }
                let tr = pending.remove(at: i)
                pending.insert(tr, at: firstPrefetch)
            }
            repack(t)
        }

        for (ti, tok) in tokens.enumerated() {
            let t0 = now
            var tokStall = 0.0
            let count = ti >= countFrom && (timed.map { ti < $0.count && $0[ti] } ?? true)
            var tokBytes = 0.0
            for l in 0..<L {
                let tm = timings[l]
                now += tm.attention
                let A = tok.selected(l)
                // Access: hits counted before the policy updates its cache.
                for e in A {
                    let cached = policy.topCached(layer: l, expert: e)
                    if count { acts += 1; if cached { cacheHits += 1 } }
                }
                let needBefore = Set(A.flatMap { e in policy.segments(layer: l, expert: e).map(\.segment) })
                let r = policy.access(layer: l, experts: A)
                for d in r.drops { drop(d, at: now) }
                let demanded = Set(r.loads.map(\.segment))
                if count { for e in A where !policy.segments(layer: l, expert: e).contains(where: { demanded.contains($0.segment) }) { hits += 1 } }
                for ld in r.loads { tokBytes += ld.bytes }
                for s in needBefore { prefetchedUnused[s] = nil }
                schedule(r.loads, at: now)
                // Prefetched segments still queued are needed now: ahead of other prefetches, tops first.
                let needed = A.flatMap { e in policy.segments(layer: l, expert: e).map(\.segment) }
                promote(needed.filter { $0.part == 0 } + needed.filter { $0.part == 1 }, at: now)
                // Prefetch for the next layer, issued once this layer's demand loads are queued.
                if l + 1 < L, policy.usesPrediction {
                    let truth = tok.selected(l + 1)
                    let p = timings[l + 1].predictorAccuracy
                    var pred: [Int] = []
                    for e in truth {
                        if rng.uniform() < p { pred.append(e) } else {
                            var x = Int(rng.next() % UInt64(experts))
                            var guardN = 0
                            while (truth.contains(x) || pred.contains(x)) && guardN < 4 * experts { x = (x + 1) % experts; guardN += 1 }
                            pred.append(x)
                        }
                    }
                    let pr = policy.prefetch(layer: l + 1, predicted: pred)
                    for d in pr.drops { drop(d, at: now) }
                    for ld in pr.loads { tokBytes += ld.bytes; if !truth.contains(ld.segment.expert) { prefetchedUnused[ld.segment] = ld.bytes } }
                    schedule(pr.loads, at: now)
                }
                // Compute: experts in order of their first segment's readiness, segments top first.
                var work: [(ready: Double, segs: [(SimSegment, Double)])] = []
                for e in A {
                    let segs = policy.segments(layer: l, expert: e).map { ($0.segment, $0.share) }
                    work.append((ready: segs.map { arrival[$0.0] ?? 0 }.min() ?? 0, segs: segs))
                }
                work.sort { $0.ready < $1.ready }
                var computeFree = now
                for w in work {
                    for (s, share) in w.segs {
                        let ready = arrival[s] ?? 0
                        // Bytes that arrived during this token compute at the loaded rate (see `LayerTiming`).
                        let c = ready > t0 ? (tm.loadedExpertCompute ?? tm.expertCompute) : tm.expertCompute
                        if policy.streamsChunks && chunkBytes > 0 && ready > computeFree {
                            // Chunk by chunk as they land: chunk j ends (B − bytes through j)/bandwidth before the segment.
                            let B = share * tm.expertBytes
                            var done = 0.0
                            while done < B {
                                let part = min(chunkBytes, B - done)
                                done += part
                                let r = ready - (B - done) / tm.loadBandwidth
                                if r > computeFree { tokStall += r - computeFree; computeFree = r }
                                computeFree += part / B * share * c
                            }
                            continue
                        }
                        if ready > computeFree { tokStall += ready - computeFree; computeFree = ready }
                        computeFree += share * c
                    }
                }
                now = computeFree
                for s in policy.release(layer: l) { drop(s, at: now) }
            }
            now += otherTime
            for (_, b) in prefetchedUnused { if count { wasted += b } }
            prefetchedUnused.removeAll()
            if count {
                timedSeconds += now - t0; stall += tokStall; bytes += tokBytes; counted += 1
                if tok.turn != lastTurn { turnSums.append((0, 0)); lastTurn = tok.turn }
                turnSums[turnSums.count - 1].0 += now - t0; turnSums[turnSums.count - 1].1 += 1
            }
        }
        let n = Double(max(1, counted))
        var res = SimResult(policy: policy.name, tpot: timedSeconds / n, hitRate: acts > 0 ? Double(hits) / Double(acts) : 0,
                         cacheHitRate: acts > 0 ? Double(cacheHits) / Double(acts) : 0, stallPerToken: stall / n,
                         bytesPerToken: bytes / n, wastedPrefetchShare: bytes > 0 ? wasted / bytes : 0, tokens: counted)
        res.turnTpot = turnSums.map { $0.0 / Double(max(1, $0.1)) }
        return res
    }
}
