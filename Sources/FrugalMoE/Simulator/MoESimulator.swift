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
        var linkFree = 0.0            // end of the last scheduled transfer
        var queue: [Transfer] = []    // scheduled transfers, in link order
        var arrival: [SimSegment: Double] = [:]
        var now = 0.0
        var timedSeconds = 0.0, stall = 0.0, bytes = 0.0, wasted = 0.0
        var turnSums: [(Double, Int)] = [], lastTurn = Int.min
        var acts = 0, hits = 0, cacheHits = 0, counted = 0
        var prefetchedUnused: [SimSegment: Double] = [:]

        func schedule(_ loads: [SimLoad], at t: Double) {
            // Demand loads overtake queued prefetches that have not started by t, and cut the prefetch in progress
            // at its next chunk boundary (its remainder is queued again after them).
            let demand = loads.filter(\.demand), pre = loads.filter { !$0.demand }
            if !demand.isEmpty {
                var postponed = queue.filter { $0.start > t }.map { SimLoad(segment: $0.seg, bytes: $0.bytes, demand: false) }
                queue.removeAll { $0.start > t }
                if chunkBytes > 0, let i = queue.indices.last, !queue[i].demand, queue[i].end > t {
                    let q = queue[i], tm = timings[q.seg.layer]
                    let done = max(0, (t - q.start - tm.loadLatency) * tm.loadBandwidth)
                    let cut = (done / chunkBytes).rounded(.up) * chunkBytes
                    if cut < q.bytes {
                        queue[i].bytes = cut
                        queue[i].end = q.start + tm.loadLatency + cut / tm.loadBandwidth
                        postponed.insert(SimLoad(segment: q.seg, bytes: q.bytes - cut, demand: false), at: 0)
                    }
                }
                linkFree = max(queue.last?.end ?? 0, t)
                for ld in demand { append(ld, t) }
                for p in postponed { append(p, t) }
            }
            for ld in pre { append(ld, t) }
            if queue.count > 256 { queue.removeFirst(queue.count - 256) }
        }
        func append(_ ld: SimLoad, _ t: Double) {
            let start = max(linkFree, t)
            let tm = timings[ld.segment.layer]
            let end = start + tm.load(ld.bytes)
            queue.append(Transfer(seg: ld.segment, bytes: ld.bytes, start: start, end: end, demand: ld.demand))
            arrival[ld.segment] = end
            linkFree = end
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
                for d in r.drops { arrival[d] = nil }
                let demanded = Set(r.loads.map(\.segment))
                if count { for e in A where !policy.segments(layer: l, expert: e).contains(where: { demanded.contains($0.segment) }) { hits += 1 } }
                for ld in r.loads { tokBytes += ld.bytes }
                for s in needBefore { prefetchedUnused[s] = nil }
                schedule(r.loads, at: now)
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
                    for d in pr.drops { arrival[d] = nil }
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
                        if ready > computeFree { tokStall += ready - computeFree; computeFree = ready }
                        computeFree += share * tm.expertCompute
                    }
                }
                now = computeFree
                for s in policy.release(layer: l) { arrival[s] = nil }
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
