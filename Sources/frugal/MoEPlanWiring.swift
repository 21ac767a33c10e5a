import Foundation
import FrugalCore
import FrugalModels
import FrugalMoE

/// The trace being recorded by `--record-trace` (closed by `finishRecording`). The CLI runs one
/// generation at a time on the main thread; the engine calls the route observer on that thread.
nonisolated(unsafe) private var activeRecorder: RouteRecorder?

/// Turns the model's per-layer routing callbacks into route_trace rows: a forward whose first
/// routed layer comes again starts a new step block; a multi-token forward is the prompt
/// (phase 0), single-token forwards after it are decode steps (phase 1).
private final class RouteRecorder {
    let writer: RoutingTraceWriter
    var lastLayer = Int.max, base = 0, tokens = 0, phase = 0
    var error: Error?
    init(writer: RoutingTraceWriter) { self.writer = writer }

    func observe(layer: Int, routes: [[ExpertRoute]]) {
        if layer <= lastLayer {
            base += tokens
            tokens = routes.count
            phase = base == 0 || routes.count > 1 ? 0 : 1
        }
        lastLayer = layer
        for (t, r) in routes.enumerated() where error == nil {
            do {
                try writer.record(turn: 0, phase: phase, step: base + t, layer: layer, experts: r.map(\.expert), weights: r.map(\.weight))
            } catch { self.error = error }
        }
    }
}

extension MoEPolicyOptions {
    func startRecording(_ model: MoEModel, to path: String) throws {
        let s = model.moeShape
        let perExpert = model.expertBytes / max(1, s.layers * s.experts)
        let writer: RoutingTraceWriter
        do {
            writer = try RoutingTraceWriter(path: path, model: model.directory.path, arch: model.config.layout.rawValue,
                                            layers: s.layers, experts: s.experts, topK: s.topK,
                                            expertBytes: Array(repeating: perExpert, count: s.layers),
                                            denseBytes: Array(repeating: 0, count: s.layers))
        } catch { throw CLIError("--record-trace: \(error)") }
        let rec = RouteRecorder(writer: writer)
        activeRecorder = rec
        model.routeObserver = { layer, routes in rec.observe(layer: layer, routes: routes) }
    }

    /// Closes the trace started by `--record-trace` (no-op without it).
    func finishRecording() throws {
        guard let rec = activeRecorder else { return }
        activeRecorder = nil
        if let e = rec.error { throw CLIError("--record-trace: \(e)") }
        do { try rec.writer.close() } catch { throw CLIError("--record-trace: \(error)") }
        print("recorded routing to \(recordTrace ?? "")")
    }

    /// `--plan auto`: hit-rate curves from a routing trace, this machine's expert compute and
    /// slow-tier bandwidth measured now, then the planner's per-layer B_l and θ_l.
    func autoPlan(model: MoEModel, tier: SlowTierChoice, budget: String) throws -> CachePlan {
        let dir = model.directory.path
        var path = planTrace
        if path == nil {
            let files = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
            path = files.sorted().first(where: { $0.hasSuffix(".route.csv") }).map { (dir as NSString).appendingPathComponent($0) }
        }
        guard let path else {
            throw CLIError("--plan auto needs routing to profile: --plan-trace FILE (record one with --record-trace) or a *.route.csv in \(dir)")
        }
        let trace: RoutingTrace
        do { trace = try RoutingTrace.read(path: path) } catch { throw CLIError("\(error)") }
        let s = model.moeShape
        guard trace.layers == s.layers, trace.experts == s.experts else {
            throw CLIError("\(path): trace of \(trace.layers) layers x \(trace.experts) experts, the model has \(s.layers) x \(s.experts)")
        }
        var hw: HardwareProfile
        if let calibration {
            do { hw = try EngineCalibration.read(path: calibration).hardware } catch { throw CLIError("--calibration: \(error)") }
            if case .link(let bps) = tier { hw.linkBandwidth = bps }
        } else {
            let link: Double
            switch tier {
            case .link(let bps): link = bps
            case .disk(let store): link = try measureReadBandwidth(store)
            }
            hw = .cpu(linkBandwidth: link, memoryBandwidth: measureMemoryBandwidth())
        }
        var profile: ModelProfile
        do { profile = try ModelProfile.read(configPath: (dir as NSString).appendingPathComponent("config.json")) } catch {
            throw CLIError("--plan auto: \(error)")
        }
        let scenario: SimScenario
        do {
            profile.dtypeBytes = try model.expertWeights(layer: 0, expert: 0).gate.dtype.size
            scenario = try SimScenario.make(trace: trace, profile: profile, hardware: hw, predictorAccuracy: predictorAccuracy)
        } catch { throw CLIError("--plan auto: \(error)") }
        let total = try parseMemoryBudget(budget, totalExpertBytes: scenario.totalExpertBytes)
        let plan: BudgetPlan
        var planner = scenario.planner(curves: scenario.curves())
        let tune = try tuning()
        planner.prefetchIntoCache = tune.moepicIntoCache
        planner.allowNoPrefetch = tune.plannerMayStopPrefetch
        do { plan = try planner.plan(totalBudget: total) } catch { throw CLIError("--plan auto: \(error)") }
        print("plan (trace \(path), link \(fmt(hw.loadBandwidth / 1e9, 3)) GB/s, expert compute \(fmt(scenario.timings[0].expertCompute * 1e6, 0)) us): θ_l "
              + plan.thetas.map { fmt($0, 2) }.joined(separator: " ") + ", prefetch in \(plan.layers.filter(\.prefetch).count) of \(s.layers) layers"
              + "; predicted \(fmt(plan.timePerToken * 1e3, 2)) ms a token")
        return plan.enginePlan(shape: s, elementBytes: profile.dtypeBytes, budget: Int(total), tuning: try tuning())
    }
}

/// Bytes per second of cold reads of up to 64 MiB of `path` (pages dropped first).
private func measureReadBandwidth(_ path: String) throws -> Double {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw CLIError("\(path): cannot open the store (\(String(cString: strerror(errno))))") }
    defer { close(fd) }
    _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
    let chunk = 1 << 20
    let buf = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 4096)
    defer { buf.deallocate() }
    var total = 0
    let t0 = DispatchTime.now().uptimeNanoseconds
    while total < 64 << 20 {
        let n = pread(fd, buf, chunk, off_t(total))
        if n <= 0 { break }
        total += n
    }
    let secs = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
    _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
    guard total > 0, secs > 0 else { throw CLIError("\(path): empty store") }
    return Double(total) / secs
}

/// Bytes per second of streaming 64 MiB through a sum (the batch-1 expert FFN's bound).
private func measureMemoryBandwidth() -> Double {
    let n = 16 << 20
    let a = [Float](repeating: 1, count: n)
    var best = 0.0
    for _ in 0 ..< 3 {
        let t0 = DispatchTime.now().uptimeNanoseconds
        let s = a.withUnsafeBufferPointer { VectorOps.sum($0.baseAddress!, count: n) }
        let secs = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        if s > 0, secs > 0 { best = max(best, Double(n * 4) / secs) }
    }
    return best
}
