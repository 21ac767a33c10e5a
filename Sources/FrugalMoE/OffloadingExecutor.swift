import Foundation
import FrugalCore
import FrugalModels

/// What an offloaded run measured.
public struct OffloadStats: Codable, Sendable, Equatable {
    public var policy = "", tier = ""
    /// Per layer: expert activations, and those that needed no demand load (cached or prefetched).
    public var accesses: [Int] = [], hits: [Int] = []
    /// Per layer: activations whose top segment was in the layer cache (MoEpic's hit; for whole
    /// experts the same as a cache hit).
    public var cacheHits: [Int] = []
    /// Per layer: predicted experts that were routed / routed experts (predicting policies only).
    public var predictedCorrect: [Int] = [], predictedTotal: [Int] = []
    /// Bytes read from the slow tier (completed loads), split by kind.
    public var bytesLoaded = 0, demandBytes = 0, prefetchBytes = 0
    /// Seconds the compute thread waited for loads (including waits for free fast-tier pages).
    public var stallSeconds = 0.0
    /// Seconds the I/O threads spent reading (summed over threads).
    public var loadSeconds = 0.0
    /// Seconds spent in the expert kernels.
    public var computeSeconds = 0.0
    /// Of those, in single-token (decode) layers, and the whole-expert equivalents computed there
    /// (Σ segment rows / intermediate): seconds per whole expert at batch 1 = the ratio.
    public var decodeComputeSeconds = 0.0, decodeExpertsComputed = 0.0
    /// The fast tier's budget and the most expert bytes it held at once.
    public var budgetBytes = 0, peakFastBytes = 0

    public var hitRatePerLayer: [Double] { zip(hits, accesses).map { $1 == 0 ? 0 : Double($0) / Double($1) } }
    public var hitRate: Double { let a = accesses.reduce(0, +); return a == 0 ? 0 : Double(hits.reduce(0, +)) / Double(a) }
    public var cacheHitRate: Double { let a = accesses.reduce(0, +); return a == 0 ? 0 : Double(cacheHits.reduce(0, +)) / Double(a) }
    public var predictionAccuracy: Double? {
        let t = predictedTotal.reduce(0, +); return t == 0 ? nil : Double(predictedCorrect.reduce(0, +)) / Double(t)
    }
}

/// The loads in flight and the fast tier, shared by the compute thread and the I/O threads
/// under one lock. A load is cut into chunks of at most `chunkBytes`: the I/O threads take chunks,
/// demand loads' before prefetches', so a demand load waits at most for the chunks in progress,
/// and the threads share one large segment (the engine's disk or link acts as one channel).
final class LoadEngine: @unchecked Sendable {
    // @unchecked Sendable: every mutable field is read and written with `cond` held; the page
    // memory of a chunk is written by one I/O thread before the entry becomes ready (under the
    // lock) and read by the compute thread only after it saw ready (under the lock).
    final class Entry {
        let seg: SegmentID, rows: Range<Int>, runs: [Range<Int>], demand: Bool
        /// Pieces (first row of the segment's rows, row count, first page), in row order; chunks
        /// are ranges of pieces.
        let pieces: [(row: Int, count: Int, page: Int)]
        let chunks: [Range<Int>]
        var next = 0, inFlight = 0, done = 0
        var chunkDone: [Bool] = []
        var state = 0   // 0 queued, 1 loading, 2 ready, 3 failed
        var error: Error?
        var dropped = false
        init(seg: SegmentID, rows: Range<Int>, runs: [Range<Int>], demand: Bool, chunkRows: Int) {
            self.seg = seg; self.rows = rows; self.runs = runs; self.demand = demand
            var pieces: [(row: Int, count: Int, page: Int)] = [], chunks: [Range<Int>] = []
            var row = rows.lowerBound, inChunk = 0, chunkStart = 0
            for r in runs {
                var page = r.lowerBound
                while page < r.upperBound {
                    let n = min(r.upperBound - page, chunkRows - inChunk)
                    pieces.append((row, n, page))
                    row += n; page += n; inChunk += n
                    if inChunk == chunkRows { chunks.append(chunkStart..<pieces.count); chunkStart = pieces.count; inChunk = 0 }
                }
            }
            if chunkStart < pieces.count { chunks.append(chunkStart..<pieces.count) }
            self.pieces = pieces; self.chunks = chunks
            chunkDone = Array(repeating: false, count: chunks.count)
        }
        var queued: Bool { !dropped && next < chunks.count }
    }
    let cond = NSCondition()
    let fast: FastTier
    let tier: SlowTier
    let chunkRows: Int
    var entries: [SegmentID: Entry] = [:]
    var demandQ: [Entry] = [], prefetchQ: [Entry] = []
    var zombies = 0   // dropped entries with chunks still being read
    var shutdown = false
    var stats = OffloadStats()
    var threads: [Thread] = []
    var running = 0

    /// - Parameter chunkBytes: largest read of one I/O step (rounded down to whole rows, at least one).
    init(fast: FastTier, tier: SlowTier, chunkBytes: Int = LoadEngine.defaultChunkBytes) {
        self.fast = fast; self.tier = tier
        chunkRows = max(1, chunkBytes / max(1, fast.pageBytes))
        for i in 0..<tier.ioThreads {
            let t = Thread { [self] in self.ioLoop() }
            t.name = "frugal-moe-io-\(i)"
            threads.append(t)
            running += 1
            t.start()
        }
    }

    /// 1 MiB: a demand load waits for at most this much of a prefetch in progress per I/O thread.
    static let defaultChunkBytes = 1 << 20

    func stop() {
        cond.lock(); shutdown = true; cond.broadcast()
        while running > 0 { cond.wait() }
        cond.unlock()
    }

    /// The next chunk to read: demand loads first (caller holds the lock).
    func pop() -> (Entry, Int)? {
        for q in 0..<2 {
            while let e = (q == 0 ? demandQ.first : prefetchQ.first) {
                guard e.queued else { if q == 0 { demandQ.removeFirst() } else { prefetchQ.removeFirst() }; continue }
                let c = e.next
                e.next += 1; e.inFlight += 1; e.state = max(e.state, 1)
                if e.next == e.chunks.count { if q == 0 { demandQ.removeFirst() } else { prefetchQ.removeFirst() } }
                return (e, c)
            }
        }
        return nil
    }

    func ioLoop() {
        cond.lock()
        while true {
            if shutdown { break }
            guard let (e, c) = pop() else { cond.wait(); continue }
            cond.unlock()
            let t0 = DispatchTime.now().uptimeNanoseconds
            var err: Error? = nil
            var rowsRead = 0
            do {
                for p in e.pieces[e.chunks[c]] {
                    try tier.read(layer: e.seg.layer, expert: e.seg.expert, rows: p.row..<p.row + p.count, into: fast.pointer(p.page))
                    rowsRead += p.count
                }
            } catch { err = error }
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            cond.lock()
            let bytes = rowsRead * fast.pageBytes
            stats.loadSeconds += dt
            stats.bytesLoaded += bytes
            if e.demand { stats.demandBytes += bytes } else { stats.prefetchBytes += bytes }
            e.inFlight -= 1; e.done += 1
            if e.dropped {
                if e.inFlight == 0 { fast.release(e.runs); zombies -= 1 }
            } else if let err {
                e.state = 3; e.error = err
            } else {
                e.chunkDone[c] = true
                if e.done == e.chunks.count && e.state != 3 { e.state = 2 }
            }
            cond.broadcast()
        }
        running -= 1
        cond.broadcast()
        cond.unlock()
    }

    /// Queues a load; waits for free pages if dropped loads still hold some.
    func load(_ seg: SegmentID, rows: Range<Int>, demand: Bool) throws {
        cond.lock(); defer { cond.unlock() }
        if entries[seg] != nil { return }
        var runs = fast.allocate(rows.count)
        if runs == nil {
            let t0 = DispatchTime.now().uptimeNanoseconds
            while runs == nil {
                guard zombies > 0 else {
                    throw OffloadError.budget("fast tier full: \(fast.usedBytes) of \(fast.capacityBytes) bytes in use, \(rows.count * fast.pageBytes) more asked for \(seg)")
                }
                cond.wait()
                runs = fast.allocate(rows.count)
            }
            stats.stallSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        }
        let e = Entry(seg: seg, rows: rows, runs: runs!, demand: demand, chunkRows: chunkRows)
        entries[seg] = e
        if e.chunks.isEmpty { e.state = 2; return }
        if demand { demandQ.append(e) } else { prefetchQ.append(e) }
        cond.broadcast()
    }

    func drop(_ seg: SegmentID) {
        cond.lock(); defer { cond.unlock() }
        guard let e = entries.removeValue(forKey: seg) else { return }
        e.dropped = true
        if e.inFlight > 0 { zombies += 1 } else { fast.release(e.runs) }
        cond.broadcast()
    }

    /// Moves prefetches of segments needed now, not yet fully started, ahead of the remaining
    /// prefetches (to the end of the demand queue), in the order given.
    func promote(_ segs: [SegmentID]) {
        cond.lock(); defer { cond.unlock() }
        for s in segs {
            guard let e = entries[s], e.queued, !e.demand, let i = prefetchQ.firstIndex(where: { $0 === e }) else { continue }
            prefetchQ.remove(at: i)
            demandQ.append(e)
        }
    }

    /// Whether a segment's bytes are ready (caller holds the lock).
    func isReady(_ seg: SegmentID) -> Bool { (entries[seg]?.state ?? 0) >= 2 }

    /// Whether chunk `c` of a segment has landed (caller holds the lock).
    func isReady(_ seg: SegmentID, chunk c: Int) -> Bool {
        guard let e = entries[seg] else { return false }
        return e.state >= 2 || (c < e.chunkDone.count && e.chunkDone[c])
    }

    /// Chunks of a segment's load (0 when it is not resident).
    func chunkCount(_ seg: SegmentID) -> Int {
        cond.lock(); defer { cond.unlock() }
        return entries[seg]?.chunks.count ?? 0
    }

    /// Waits until chunk `c` of a segment has landed; returns its pages as (first page, count) runs.
    func waitChunk(_ seg: SegmentID, _ c: Int) throws -> [Range<Int>] {
        cond.lock(); defer { cond.unlock() }
        guard let e = entries[seg], c < e.chunks.count else { throw OffloadError.io("segment \(seg) chunk \(c) is not resident") }
        if !(e.state >= 2 || e.chunkDone[c]) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            while !(e.state >= 2 || e.chunkDone[c]) { cond.wait() }
            stats.stallSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        }
        if let err = e.error { throw err }
        return e.pieces[e.chunks[c]].map { $0.page..<$0.page + $0.count }
    }

    /// Waits until a segment is loaded; returns its page runs. Adds the wait to the stall time.
    func waitReady(_ seg: SegmentID) throws -> [Range<Int>] {
        cond.lock(); defer { cond.unlock() }
        guard let e = entries[seg] else { throw OffloadError.io("segment \(seg) is not resident (policy did not load it)") }
        if e.state < 2 {
            let t0 = DispatchTime.now().uptimeNanoseconds
            while e.state < 2 { cond.wait() }
            stats.stallSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        }
        if let err = e.error { throw err }
        return e.runs
    }
}

/// An `ExpertExecutor` that runs any policy on any slow tier: the policy decides which segments
/// are resident, load now, or prefetch; loads run on I/O threads into the fast tier (the only
/// holder of expert bytes, at most `budget` bytes) while the compute thread works on whatever is
/// ready (a top while its bottom loads); experts compute with the fused row-block SwiGLU kernel
/// on fast-tier pages (f32/f16/bf16).
public final class OffloadingExecutor: ExpertExecutor {
    public let policy: ExpertPolicy
    public let tier: SlowTier
    public let predictor: ExpertPredictor?
    public let budget: Int
    let engine: LoadEngine
    let shape: MoEShape
    var accesses: [Int], hits: [Int], cacheHits: [Int]
    var computeSeconds = 0.0, decodeComputeSeconds = 0.0, decodeExperts = 0.0
    let prefetchLimit: Int

    /// - Parameters:
    ///   - policy: decisions (its layout must match the tier's shape and dtype).
    ///   - tier: where experts come from.
    ///   - budget: fast-tier bytes; the policy's caches plus staging must fit.
    ///   - source: the model, for next-layer prediction (needed when the policy predicts).
    ///   - chunkBytes: largest read of one I/O step (a demand load waits for at most one chunk of a
    ///     prefetch in progress per I/O thread).
    public init(policy: ExpertPolicy, tier: SlowTier, budget: Int, source: MoEExpertSource? = nil,
                chunkBytes: Int = 1 << 20) throws {
        let lay = policy.layout
        guard lay.shape == tier.shape, lay.elementBytes == tier.dtype.size else {
            throw OffloadError.badArgument("policy layout \(lay.shape) x \(lay.elementBytes) B does not match the tier's \(tier.shape) \(tier.dtype)")
        }
        let need = policy.plan.totalCacheBytes + policy.stagingBytes
        guard need <= budget || policy.name == "full" else {
            throw OffloadError.budget("policy \(policy.name) needs \(need) B (caches \(policy.plan.totalCacheBytes) + staging \(policy.stagingBytes)); budget is \(budget) B")
        }
        if policy.usesPrediction && source == nil {
            throw OffloadError.badArgument("policy \(policy.name) predicts experts and needs the model (source)")
        }
        self.policy = policy; self.tier = tier; self.budget = budget; shape = lay.shape
        prefetchLimit = (policy as? SegmentCachePolicy)?.prefetchLimit ?? lay.shape.topK
        predictor = policy.usesPrediction ? source.map { ExpertPredictor(source: $0) } : nil
        let fast = FastTier(capacity: budget, pageBytes: lay.rowBytes)
        engine = LoadEngine(fast: fast, tier: tier, chunkBytes: chunkBytes)
        accesses = Array(repeating: 0, count: shape.layers); hits = accesses; cacheHits = accesses
        do {
            let acts = policy.start()
            try execute(acts)
            for case .load(let s, _, _) in acts { _ = try engine.waitReady(s) }
        } catch { engine.stop(); throw error }
        engine.cond.lock(); engine.stats = OffloadStats(); engine.cond.unlock()  // the preload is not part of a run
    }

    deinit { engine.stop() }

    /// Stops the I/O threads (also done on deinit).
    public func close() { engine.stop() }

    /// The statistics so far.
    public var stats: OffloadStats {
        engine.cond.lock(); defer { engine.cond.unlock() }
        var s = engine.stats
        s.policy = policy.name; s.tier = tier.name
        s.accesses = accesses; s.hits = hits; s.cacheHits = cacheHits
        s.predictedCorrect = predictor?.correct ?? []; s.predictedTotal = predictor?.total ?? []
        s.budgetBytes = budget; s.peakFastBytes = engine.fast.peakBytes
        s.computeSeconds = computeSeconds
        s.decodeComputeSeconds = decodeComputeSeconds; s.decodeExpertsComputed = decodeExperts
        return s
    }

    /// Clears the counters (e.g. after prefill); the peak restarts from the bytes held now.
    public func resetStats() {
        engine.cond.lock(); defer { engine.cond.unlock() }
        engine.stats = OffloadStats(); engine.fast.resetPeak()
        accesses = Array(repeating: 0, count: shape.layers); hits = accesses; cacheHits = accesses; computeSeconds = 0
        decodeComputeSeconds = 0; decodeExperts = 0
        if let p = predictor { p.reset() }
    }

    /// Bytes the fast tier holds now.
    public var fastBytes: Int { engine.cond.lock(); defer { engine.cond.unlock() }; return engine.fast.usedBytes }

    func execute(_ acts: [PolicyAction]) throws {
        for a in acts {
            switch a {
            case .load(let s, let demand, _): try engine.load(s, rows: policy.layout.rows(s), demand: demand)
            case .drop(let s): engine.drop(s)
            case .admit: break
            }
        }
    }

    /// Runs one layer's experts access by access (≤ topK distinct experts each).
    public func runExperts(layer: Int, x: Tensor, routes: [[ExpertRoute]]) throws -> Tensor {
        let h = shape.hidden
        guard layer >= 0, layer < shape.layers else { throw OffloadError.badArgument("layer \(layer) outside 0..<\(shape.layers)") }
        guard x.rank == 2, x.shape[1] == h, x.shape[0] == routes.count else {
            throw OffloadError.badShape("runExperts: x \(x.shape) with \(routes.count) routes, hidden \(h)")
        }
        let T = routes.count
        let xc = x.contiguous()
        let y = Tensor(zeros: [T, h])
        // Tokens and weights of each distinct expert, in first-seen order.
        var order: [Int] = [], users: [Int: [(Int, Float)]] = [:]
        for (t, r) in routes.enumerated() {
            for route in r {
                guard route.expert >= 0, route.expert < shape.experts else {
                    throw OffloadError.badArgument("route to expert \(route.expert) of layer \(layer) (has \(shape.experts))")
                }
                if users[route.expert] == nil { order.append(route.expert) }
                users[route.expert, default: []].append((t, route.weight))
            }
        }
        let k = max(1, shape.topK)
        var start = 0
        while start < order.count {
            let chunk = Array(order[start..<min(order.count, start + k)])
            start += k
            if T == 1 { predictor?.record(layer: layer, actual: chunk) }
            cacheHits[layer] += chunk.filter { policy.isCacheHit(layer: layer, expert: $0) }.count
            let acts = policy.access(layer: layer, experts: chunk)
            var demanded = Set<Int>()
            for case .load(let s, true, _) in acts { demanded.insert(s.expert) }
            accesses[layer] += chunk.count
            hits[layer] += chunk.filter { !demanded.contains($0) }.count
            try execute(acts)
            // Prefetched segments still queued are needed now: ahead of other prefetches, tops first.
            let needed = chunk.flatMap { policy.segments(layer: layer, expert: $0) }
            engine.promote(needed.filter { $0.part == .top } + needed.filter { $0.part == .bottom })
            if T == 1, let predictor, layer + 1 < shape.layers {
                let p = predictor.predict(layer: layer + 1, from: xc, extra: max(0, prefetchLimit - shape.topK))
                try execute(policy.prefetch(layer: layer + 1, predicted: p))
            }
            try compute(layer: layer, experts: chunk, users: users, x: xc, y: y, T: T)
            try execute(policy.release(layer: layer))
        }
        return y
    }

    /// Computes the chunk's experts segment by segment, taking whatever is ready first. A policy that
    /// streams (`SegmentCachePolicy.streamsChunks`) computes a segment still loading chunk by chunk as
    /// its chunks land (an expert's rows are independent), so compute overlaps the rest of its load.
    func compute(layer: Int, experts: [Int], users: [Int: [(Int, Float)]], x: Tensor, y: Tensor, T: Int) throws {
        let h = shape.hidden, dtype = tier.dtype
        let stream = (policy as? SegmentCachePolicy)?.streamsChunks ?? false
        var pending: [(e: Int, s: SegmentID, chunk: Int?)] = []
        for e in experts {
            for s in policy.segments(layer: layer, expert: e) {
                engine.cond.lock()
                let ready = engine.isReady(s)
                engine.cond.unlock()
                let n = stream && !ready ? engine.chunkCount(s) : 0
                if n > 1 { for c in 0..<n { pending.append((e, s, c)) } } else { pending.append((e, s, nil)) }
            }
        }
        // Per expert, gathered inputs and outputs when T > 1.
        var xs: [Int: [Float]] = [:], ys: [Int: [Float]] = [:], ws: [Int: [Float]] = [:]
        for e in experts {
            let u = users[e]!
            ws[e] = u.map { $0.1 }
            if T > 1 {
                var g = [Float](repeating: 0, count: u.count * h)
                for (j, (t, _)) in u.enumerated() { for i in 0..<h { g[j * h + i] = x.pointer[t * h + i] } }
                xs[e] = g; ys[e] = [Float](repeating: 0, count: u.count * h)
            }
        }
        while !pending.isEmpty {
            engine.cond.lock()
            let idx = pending.firstIndex { item in
                if let c = item.chunk { return engine.isReady(item.s, chunk: c) }
                return engine.isReady(item.s)
            } ?? 0
            engine.cond.unlock()
            let (e, s, chunk) = pending.remove(at: idx)
            let runs: [Range<Int>]
            if let chunk { runs = try engine.waitChunk(s, chunk) } else { runs = try engine.waitReady(s) }
            let t0 = DispatchTime.now().uptimeNanoseconds
            let w = ws[e]!
            w.withUnsafeBufferPointer { wp in
                if T == 1 {
                    for r in runs {
                        ExpertKernel.accumulate(rows: engine.fast.pointer(r.lowerBound), rowCount: r.count, hidden: h, dtype: dtype,
                                                x: x.pointer, tokens: 1, weights: wp.baseAddress!, y: y.pointer)
                    }
                } else {
                    xs[e]!.withUnsafeBufferPointer { xp in
                        ys[e]!.withUnsafeMutableBufferPointer { yp in
                            for r in runs {
                                ExpertKernel.accumulate(rows: engine.fast.pointer(r.lowerBound), rowCount: r.count, hidden: h, dtype: dtype,
                                                        x: xp.baseAddress!, tokens: w.count, weights: wp.baseAddress!, y: yp.baseAddress!)
                            }
                        }
                    }
                }
            }
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            computeSeconds += dt
            if T == 1 {
                decodeComputeSeconds += dt
                var rows = 0
                for r in runs { rows += r.count }
                decodeExperts += Double(rows) / Double(max(1, shape.intermediate))
            }
        }
        if T > 1 {
            let yp = y.pointer
            for e in experts {
                let out = ys[e]!
                for (j, (t, _)) in users[e]!.enumerated() { for i in 0..<h { yp[t * h + i] += out[j * h + i] } }
            }
        }
    }
}
