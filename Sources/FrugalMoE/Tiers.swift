import Foundation
import FrugalCore
import FrugalModels

/// Where expert bytes live when they are not in the fast tier. `read` runs on the engine's I/O
/// threads and may block.
public protocol SlowTier: AnyObject, Sendable {
    /// For reports: "disk" or "link 2.0 GB/s".
    var name: String { get }
    var shape: MoEShape { get }
    var dtype: DType { get }
    /// I/O threads that read concurrently (a link is one serial channel).
    var ioThreads: Int { get }
    /// Copies intermediate rows `rows` of expert (layer, expert), packed, into `dst`.
    func read(layer: Int, expert: Int, rows: Range<Int>, into dst: UnsafeMutableRawPointer) throws
}

/// The store on disk, read with pread by several threads; the pages read are dropped from the
/// page cache (POSIX_FADV_DONTNEED) so they do not form a second, unbudgeted copy.
public final class DiskTier: SlowTier, @unchecked Sendable {
    // @unchecked Sendable: immutable; OffloadStore reads are thread-safe.
    public let store: OffloadStore
    public let ioThreads: Int
    public let dropPages: Bool
    public init(store: OffloadStore, ioThreads: Int = 2, dropPages: Bool = true) {
        self.store = store; self.ioThreads = max(1, ioThreads); self.dropPages = dropPages
    }
    public var name: String { "disk" }
    public var shape: MoEShape { store.shape }
    public var dtype: DType { store.header.dtype }
    public func read(layer: Int, expert: Int, rows: Range<Int>, into dst: UnsafeMutableRawPointer) throws {
        try store.read(layer: layer, expert: expert, rows: rows, into: dst, dropPages: dropPages)
    }
}

/// Host memory behind an emulated link of a given bandwidth (a GPU's PCIe regime): the experts,
/// packed, sit in host memory (the slow tier, outside the budget); a transfer copies the bytes,
/// then waits until bytes / bandwidth has elapsed since it started. One serial channel.
public final class HostLinkTier: SlowTier, @unchecked Sendable {
    // @unchecked Sendable: `host` is written only in init; transfers are serialised by the single
    // I/O thread the engine runs for a tier with ioThreads == 1.
    public let shape: MoEShape
    public let dtype: DType
    /// Bytes per second.
    public let bandwidth: Double
    let host: UnsafeMutableRawPointer
    let expertBytes: Int, rowBytes: Int

    /// Packs every expert of `source` into host memory.
    public init(source: MoEExpertSource, bandwidth: Double) throws {
        guard bandwidth > 0, bandwidth.isFinite else { throw OffloadError.badArgument("link bandwidth \(bandwidth) B/s must be positive") }
        let s = source.moeShape
        let first = try source.expertWeights(layer: 0, expert: 0)
        shape = s; dtype = first.gate.dtype; self.bandwidth = bandwidth
        rowBytes = ExpertSplit.rowBytes(hidden: s.hidden, dtype: dtype)
        expertBytes = s.intermediate * rowBytes
        host = UnsafeMutableRawPointer.allocate(byteCount: max(1, s.layers * s.experts * expertBytes), alignment: 4096)
        for l in 0..<s.layers {
            for e in 0..<s.experts {
                let w = try source.expertWeights(layer: l, expert: e)
                guard w.gate.dtype == dtype else { throw OffloadError.badShape("expert \(e) of layer \(l) is \(w.gate.dtype), others \(dtype)") }
                try ExpertSplit.pack(gate: w.gate, up: w.up, down: w.down, into: host + (l * s.experts + e) * expertBytes)
            }
        }
    }

    /// Loads every expert of a store into host memory.
    public init(store: OffloadStore, bandwidth: Double) throws {
        guard bandwidth > 0, bandwidth.isFinite else { throw OffloadError.badArgument("link bandwidth \(bandwidth) B/s must be positive") }
        let h = store.header
        shape = store.shape; dtype = h.dtype; self.bandwidth = bandwidth
        rowBytes = h.rowBytes; expertBytes = h.expertBytes
        host = UnsafeMutableRawPointer.allocate(byteCount: max(1, h.layers * h.experts * expertBytes), alignment: 4096)
        for l in 0..<h.layers {
            for e in 0..<h.experts {
                try store.read(layer: l, expert: e, rows: 0..<h.intermediate, into: host + (l * h.experts + e) * expertBytes, dropPages: true)
            }
        }
    }

    deinit { host.deallocate() }
    public var name: String { String(format: "link %.3g GB/s", bandwidth / 1e9) }
    public var ioThreads: Int { 1 }

    public func read(layer: Int, expert: Int, rows: Range<Int>, into dst: UnsafeMutableRawPointer) throws {
        let t0 = DispatchTime.now().uptimeNanoseconds
        let n = rows.count * rowBytes
        dst.copyMemory(from: host + (layer * shape.experts + expert) * expertBytes + rows.lowerBound * rowBytes, byteCount: n)
        let end = t0 + UInt64(Double(n) / bandwidth * 1e9)
        var now = DispatchTime.now().uptimeNanoseconds
        while now < end {
            let left = end - now
            if left > 200_000 { usleep(useconds_t((left - 100_000) / 1000)) } else { sched_yield() }
            now = DispatchTime.now().uptimeNanoseconds
        }
    }

    /// Parses `25GB/s`, `800MB/s`, `1.5GiB/s` (the `/s` is optional) into bytes per second.
    public static func parseBandwidth(_ text: String) throws -> Double {
        var t = text.trimmingCharacters(in: .whitespaces)
        if t.lowercased().hasSuffix("/s") { t = String(t.dropLast(2)) }
        let b = try MemoryBudget.parse(t, totalExpertBytes: 0)
        guard b > 0, !t.hasSuffix("%") else { throw OffloadError.badArgument("link bandwidth '\(text)' is not a rate (e.g. 25GB/s)") }
        return Double(b)
    }
}

/// The fast tier: one arena of at most `capacity` bytes, the only holder of expert bytes in an
/// offloaded run. Allocation is in pages of one row block (the unit of compute), so a segment
/// takes exactly its bytes (no rounding) and may span several runs of pages. Not thread-safe
/// (the executor locks around it).
public final class FastTier {
    public let pageBytes: Int
    public let pages: Int
    let arena: UnsafeMutableRawPointer
    var free: [Range<Int>]   // sorted, disjoint runs of free pages
    public private(set) var usedBytes = 0, peakBytes = 0

    /// An arena of ⌊capacity / pageBytes⌋ pages, touched once so its memory is real.
    public init(capacity: Int, pageBytes: Int) {
        precondition(pageBytes > 0)
        self.pageBytes = pageBytes
        pages = max(0, capacity / pageBytes)
        arena = UnsafeMutableRawPointer.allocate(byteCount: max(1, pages * pageBytes), alignment: 4096)
        arena.initializeMemory(as: UInt8.self, repeating: 0, count: max(1, pages * pageBytes))
        free = pages > 0 ? [0..<pages] : []
    }
    deinit { arena.deallocate() }

    public var capacityBytes: Int { pages * pageBytes }
    public var freePages: Int { free.reduce(0) { $0 + $1.count } }

    /// Pointer to page p.
    func pointer(_ p: Int) -> UnsafeMutableRawPointer { arena + p * pageBytes }

    /// `n` pages as runs (first fit, whole runs preferred), or nil if fewer than n are free.
    func allocate(_ n: Int) -> [Range<Int>]? {
        if n == 0 { return [] }
        if freePages < n { return nil }
        if let i = free.firstIndex(where: { $0.count >= n }) {
            let r = free[i]
            let got = r.lowerBound..<r.lowerBound + n
            if r.count == n { free.remove(at: i) } else { free[i] = got.upperBound..<r.upperBound }
            account(n)
            return [got]
        }
        var out: [Range<Int>] = [], need = n
        while need > 0 {
            let r = free.removeFirst()
            if r.count <= need { out.append(r); need -= r.count }
            else { out.append(r.lowerBound..<r.lowerBound + need); free.insert(r.lowerBound + need..<r.upperBound, at: 0); need = 0 }
        }
        account(n)
        return out
    }

    func account(_ n: Int) {
        usedBytes += n * pageBytes
        peakBytes = max(peakBytes, usedBytes)
    }

    /// Returns runs to the free list (coalescing neighbours).
    func release(_ runs: [Range<Int>]) {
        for r in runs where !r.isEmpty {
            usedBytes -= r.count * pageBytes
            let i = free.firstIndex(where: { $0.lowerBound > r.lowerBound }) ?? free.count
            free.insert(r, at: i)
        }
        var merged: [Range<Int>] = []
        for r in free {
            if let last = merged.last, last.upperBound == r.lowerBound { merged[merged.count - 1] = last.lowerBound..<r.upperBound }
            else { merged.append(r) }
        }
        free = merged
    }

    public func resetPeak() { peakBytes = usedBytes }
}
