import Foundation
import FrugalCore
import FrugalModels

/// This machine and engine as the simulator and the planner see them, measured on the engine itself
/// (`frugal moe calibrate`, and `frugal moe bench` in the same run as its measurements):
///
/// - `expertSeconds`: one whole expert at batch 1 in a decode step, from the kernel time of a `full` run
///   (weights in the fast tier, DRAM-resident as in every policy);
/// - `attentionSeconds`: a layer's resident work (norms, attention, router, the executor's bookkeeping):
///   the `full` run's time per token / L minus its experts;
/// - `loadBandwidth`, `loadLatency`: the slow tier as the engine's load path sees it (queue, I/O
///   thread, read, hand-back), fitted as load(n) = latency + n / bandwidth from whole experts queued a
///   layer's worth (top-k) at a time (the throughput) and single small segments (the fixed cost);
/// - `loadedExpertSeconds`: one whole expert computed right after the load path brought it in (an
///   `on-demand` run's kernel time per expert). On this CPU the I/O thread's copy leaves the bytes in the
///   last-level cache the compute core shares, so this is well below `expertSeconds` (DRAM-bound).
///
/// `simulate --hardware cpu:FILE` and `plan --hardware cpu:FILE` read it.
public struct EngineCalibration: Codable, Sendable, Equatable {
    /// Bytes of one expert and seconds to compute it at batch 1.
    public var expertBytes: Double
    public var expertSeconds: Double
    /// Seconds of one layer's resident work per decode token.
    public var attentionSeconds: Double
    /// Seconds per token outside the layers (folded into `attentionSeconds` when measured from TPOT: 0).
    public var tokenSeconds: Double
    /// The slow tier measured ("disk", "link 2.1 GB/s").
    public var tier: String
    /// Bytes per second and seconds per transfer of the slow tier through the engine's load path.
    public var loadBandwidth: Double
    public var loadLatency: Double
    /// I/O threads of the tier (the simulator models one channel with their combined throughput).
    public var ioThreads: Int
    /// Load average of the machine when measured (1 minute), for the record.
    public var loadAverage: Double
    /// Seconds to compute one whole expert just loaded (nil: not measured, `expertSeconds`).
    public var loadedExpertSeconds: Double? = nil

    public init(expertBytes: Double, expertSeconds: Double, attentionSeconds: Double, tokenSeconds: Double = 0,
                tier: String, loadBandwidth: Double, loadLatency: Double, ioThreads: Int, loadAverage: Double) {
        self.expertBytes = expertBytes; self.expertSeconds = expertSeconds; self.attentionSeconds = attentionSeconds
        self.tokenSeconds = tokenSeconds; self.tier = tier; self.loadBandwidth = loadBandwidth
        self.loadLatency = loadLatency; self.ioThreads = ioThreads; self.loadAverage = loadAverage
    }

    /// A hardware profile with these timings: expert compute = `expertSeconds` for `expertBytes` (linear in
    /// bytes for segments), a layer's resident work = `attentionSeconds`, loads = latency + bytes / bandwidth,
    /// prefetches cut into the engine's 1 MiB chunks (a demand load waits only for the chunk in progress).
    public var hardware: HardwareProfile {
        var h = HardwareProfile(name: "cpu-calibrated (\(tier))", linkBandwidth: loadBandwidth, linkLatency: loadLatency,
                                memoryBandwidth: expertBytes / max(expertSeconds, 1e-9), efficiency: 1,
                                kernelOverhead: 0, attentionOverhead: 0)
        h.attentionSeconds = attentionSeconds
        h.tokenSeconds = tokenSeconds
        h.chunkBytes = Double(LoadEngine.defaultChunkBytes)
        if let w = loadedExpertSeconds, w > 0, expertSeconds > 0 { h.loadedComputeFactor = w / expertSeconds }
        return h
    }

    /// Compute/load ratio of one whole expert.
    public var computeToLoad: Double { expertSeconds / (loadLatency + expertBytes / loadBandwidth) }

    public static func read(path: String) throws -> EngineCalibration {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw MoETraceError("\(path): cannot read the calibration file")
        }
        do { return try JSONDecoder().decode(EngineCalibration.self, from: data) } catch {
            throw MoETraceError("\(path): not an engine calibration (\(error))")
        }
    }

    public func write(path: String) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        do { try enc.encode(self).write(to: URL(fileURLWithPath: path)) } catch {
            throw MoETraceError("\(path): cannot write the calibration (\(error))")
        }
    }

    /// The 1-minute load average (0 where unavailable).
    public static func loadAverage() -> Double {
        var l = [Double](repeating: 0, count: 3)
        return getloadavg(&l, 3) > 0 ? l[0] : 0
    }

    /// Seconds per whole expert and per layer's resident work from a `full` run's decode: its statistics
    /// (kernel seconds over whole-expert equivalents computed in decode steps) and its time per output token.
    public static func compute(fullStats s: OffloadStats, tpot: Double, layers: Int, topK: Int) -> (expert: Double, attention: Double) {
        let c = s.decodeExpertsComputed > 0 ? s.decodeComputeSeconds / s.decodeExpertsComputed : 0
        let a = max(0, tpot / Double(max(1, layers)) - Double(topK) * c)
        return (c, a)
    }

    /// Seconds to compute one whole expert at batch 1 right after the engine's load path brought it in from
    /// `tier` (median of `count` random experts, each chunk computed as it lands). Compare with `expertSeconds`.
    public static func measureLoadedCompute(_ tier: SlowTier, count: Int = 16, seed: UInt64 = 2) throws -> Double {
        let s = tier.shape
        let rowBytes = ExpertSplit.rowBytes(hidden: s.hidden, dtype: tier.dtype)
        let fast = FastTier(capacity: s.intermediate * rowBytes, pageBytes: rowBytes)
        let engine = LoadEngine(fast: fast, tier: tier)
        defer { engine.stop() }
        var rng = RNG(seed: seed)
        var x = [Float](repeating: 0, count: s.hidden), y = [Float](repeating: 0, count: s.hidden)
        for i in x.indices { x[i] = Float(rng.next() % 1000) / 1000 - 0.5 }
        var times: [Double] = []
        let one: [Float] = [1]
        for _ in 0..<max(1, count) {
            let sg = SegmentID(layer: Int(rng.next() % UInt64(s.layers)), expert: Int(rng.next() % UInt64(s.experts)), part: .top)
            try engine.load(sg, rows: 0..<s.intermediate, demand: true)
            // As the executor does: each chunk computed as soon as it lands; only the kernel time counts.
            var t = 0.0
            for c in 0..<engine.chunkCount(sg) {
                let runs = try engine.waitChunk(sg, c)
                let t0 = DispatchTime.now().uptimeNanoseconds
                x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in one.withUnsafeBufferPointer { wp in
                    for r in runs {
                        ExpertKernel.accumulate(rows: engine.fast.pointer(r.lowerBound), rowCount: r.count, hidden: s.hidden,
                                                dtype: tier.dtype, x: xp.baseAddress!, tokens: 1, weights: wp.baseAddress!,
                                                y: yp.baseAddress!)
                    }
                } } }
                t += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            }
            times.append(t)
            engine.drop(sg)
        }
        return times.sorted()[times.count / 2]
    }

    /// Fits load(n) = latency + n / bandwidth for `tier` through the engine's load path: `rounds` batches of
    /// `batch` whole experts queued together (throughput; default the model's top-k, what a layer demands at
    /// once), then `rounds` single segments of 1/16 of an expert (fixed cost). Experts are picked at random
    /// (seeded) across all layers. Loads land in a fast tier of `arenaBytes` (default: one batch) whose pages are
    /// reused oldest first, as a policy's cache turns over: a fast tier much larger than the last-level cache is
    /// written cold, and on a CPU that makes the copy slower than into a small, cache-resident one.
    public static func measureTier(_ tier: SlowTier, rounds: Int = 8, batch: Int? = nil, arenaBytes: Int? = nil,
                                   seed: UInt64 = 1) throws -> (bandwidth: Double, latency: Double)
    {
        let s = tier.shape
        let batch = max(1, min(batch ?? s.topK, s.layers * s.experts))
        let rowBytes = ExpertSplit.rowBytes(hidden: s.hidden, dtype: tier.dtype)
        let expertBytes = s.intermediate * rowBytes
        let fast = FastTier(capacity: max(batch * expertBytes, arenaBytes ?? 0), pageBytes: rowBytes)
        let engine = LoadEngine(fast: fast, tier: tier)
        defer { engine.stop() }
        var rng = RNG(seed: seed)
        func pick() -> (Int, Int) { (Int(rng.next() % UInt64(s.layers)), Int(rng.next() % UInt64(s.experts))) }
        func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
        // Segments still resident, oldest first; dropped only when the next loads need their pages.
        var resident: [SegmentID] = []
        func freePages() -> Int { engine.cond.lock(); defer { engine.cond.unlock() }; return fast.freePages }
        func makeRoom(rows: Int) {
            while freePages() < rows, !resident.isEmpty { engine.drop(resident.removeFirst()) }
        }
        // Whole experts, `batch` at a time (distinct, and not resident).
        var wholeTime = 0.0, wholeCount = 0
        for _ in 0..<rounds {
            // Leave at least `batch` experts not resident to pick from (a fast tier as large as the model).
            while resident.filter({ $0.part == .top }).count > s.layers * s.experts - batch { engine.drop(resident.removeFirst()) }
            var segs: [SegmentID] = []
            while segs.count < batch {
                let (l, e) = pick()
                let sg = SegmentID(layer: l, expert: e, part: .top)
                if !segs.contains(sg) && !resident.contains(sg) { segs.append(sg) }
            }
            makeRoom(rows: batch * s.intermediate)
            let t0 = now()
            for sg in segs { try engine.load(sg, rows: 0..<s.intermediate, demand: true) }
            for sg in segs { _ = try engine.waitReady(sg) }
            wholeTime += now() - t0; wholeCount += segs.count
            resident += segs
        }
        // Small segments one at a time.
        let small = max(1, s.intermediate / 16)
        var smallTimes: [Double] = []
        for _ in 0..<(4 * rounds) {
            let (l, e) = pick()
            let sg = SegmentID(layer: l, expert: e, part: .bottom)
            if resident.contains(sg) { continue }
            makeRoom(rows: small)
            let t0 = now()
            try engine.load(sg, rows: (s.intermediate - small)..<s.intermediate, demand: true)
            _ = try engine.waitReady(sg)
            smallTimes.append(now() - t0)
            resident.append(sg)
        }
        let tWhole = wholeTime / Double(max(1, wholeCount))
        let S = Double(s.intermediate * rowBytes), sB = Double(small * rowBytes)
        let tSmall = smallTimes.isEmpty ? tWhole * sB / S : smallTimes.sorted()[smallTimes.count / 2]
        // Two points on load(n) = latency + n / bandwidth; the bandwidth from their difference.
        var bw = (S - sB) / max(tWhole - tSmall, 1e-9)
        if !(bw.isFinite && bw > 0) || tWhole <= tSmall { bw = S / tWhole }
        let lat = max(0, tSmall - sB / bw)
        return (bw, lat)
    }
}
