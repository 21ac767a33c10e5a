import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Live and peak bytes of tensor storage allocated by Frugal (memory-mapped checkpoint data is
/// not counted: it belongs to the page cache). Thread-safe; `resetPeak()` starts a new window.
public enum MemoryStats {
    static let liveBytes = Atomic<Int>(0)
    static let peakBytes = Atomic<Int>(0)
    static let allocations = Atomic<Int>(0)

    /// Bytes of tensor storage alive now.
    public static var live: Int { liveBytes.load(ordering: .relaxed) }
    /// The largest `live` seen since the process started or since the last `resetPeak()`.
    public static var peak: Int { peakBytes.load(ordering: .relaxed) }
    /// Number of storage allocations made so far.
    public static var allocationCount: Int { allocations.load(ordering: .relaxed) }
    /// Sets the peak to the current live bytes.
    public static func resetPeak() { peakBytes.store(live, ordering: .relaxed) }
    /// Bytes of freed storage blocks kept for reuse (not counted in `live`; see `StorageCache`).
    public static var cached: Int { StorageCache.cachedBytes }
    /// Hands every cached storage block back to the system allocator.
    public static func releaseCached() { StorageCache.releaseAll() }

    static func didAllocate(_ bytes: Int) {
        allocations.add(1, ordering: .relaxed)
        let now = liveBytes.add(bytes, ordering: .relaxed).newValue
        var peak = peakBytes.load(ordering: .relaxed)
        while now > peak {
            let (exchanged, original) = peakBytes.compareExchange(expected: peak, desired: now, ordering: .relaxed)
            if exchanged { break }
            peak = original
        }
    }

    static func didFree(_ bytes: Int) { liveBytes.subtract(bytes, ordering: .relaxed) }
}

/// A flat, 64-byte aligned buffer of elements of one dtype. Tensors are views into a storage.
/// Either owned (allocated here, counted in `MemoryStats`) or borrowed from an owner object that
/// keeps external memory alive (for example a memory-mapped checkpoint).
public final class Storage: @unchecked Sendable {
    // @unchecked Sendable: the buffer is shared by tensors across threads the way PyTorch shares
    // storages; writes happen only in ops that produce new storages or in explicit in-place
    // optimiser updates, which the caller sequences.
    public let raw: UnsafeMutableRawPointer
    public let count: Int
    public let dtype: DType
    let owned: Bool
    let owner: AnyObject?

    /// Allocates `count` zeroed elements.
    public init(count: Int, dtype: DType = .float32, zeroed: Bool = true) {
        precondition(count >= 0, "Storage: negative element count \(count)")
        let bytes = max(count * dtype.size, 1)
        _ = Storage.allocatorTuned
        if let reused = StorageCache.take(bytes: bytes) {
            raw = reused
        } else {
            let block = StorageCache.blockBytes(bytes)
            raw = UnsafeMutableRawPointer.allocate(byteCount: block, alignment: 64)
            HugePages.advise(raw, bytes: block)
        }
        if zeroed { raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes) }
        self.count = count
        self.dtype = dtype
        owned = true
        owner = nil
        MemoryStats.didAllocate(bytes)
    }

    /// Once per process: keeps large freed blocks in the heap for reuse. By default glibc serves
    /// blocks over 128 KiB with fresh `mmap`s and returns them on free, so every training step paid
    /// page faults and page zeroing for its activations and im2col buffers (~5% of a LeNet step).
    /// `FRUGAL_MALLOC=system` keeps glibc's defaults.
    static let allocatorTuned: Void = {
        #if canImport(Glibc)
        if let v = getenv("FRUGAL_MALLOC"), String(cString: v) == "system" { return }
        // <malloc.h> is not in Glibc's module map: look mallopt up (M_TRIM_THRESHOLD = -1,
        // M_MMAP_THRESHOLD = -3; 32 MiB is glibc's largest mmap threshold on 64-bit).
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        guard let sym = dlsym(nil, "mallopt") else { return }
        let mallopt = unsafeBitCast(sym, to: Mallopt.self)
        _ = mallopt(-3, 32 << 20)
        _ = mallopt(-1, 256 << 20)
        #endif
    }()

    /// Wraps external memory kept alive by `owner` (not copied, not counted).
    public init(borrowing raw: UnsafeMutableRawPointer, count: Int, dtype: DType, owner: AnyObject) {
        self.raw = raw
        self.count = count
        self.dtype = dtype
        owned = false
        self.owner = owner
    }

    deinit {
        if owned {
            let bytes = max(count * dtype.size, 1)
            if !StorageCache.give(raw, bytes: bytes) { raw.deallocate() }
            MemoryStats.didFree(bytes)
        }
    }

    /// Typed float32 pointer; traps if the storage is not float32.
    @inlinable public var floats: UnsafeMutablePointer<Float> {
        precondition(dtype == .float32, "Storage holds \(dtype), float32 pointer requested")
        return raw.assumingMemoryBound(to: Float.self)
    }
}

/// Freed storage blocks of 64 KiB and more, kept for reuse by later storages of the same size
/// class (a caching allocator, as PyTorch's for GPU memory). A training step allocates the same
/// activation and gradient sizes every step; served by malloc, each large block came back as
/// fresh pages from the kernel, and one MiniLM LoRA step spent ~10% of its CPU time in 150k page
/// faults zeroing them. Blocks are rounded up to size classes 1/16 of a power of two apart (at most
/// ~6% slack). At most `limitBytes` are kept (`FRUGAL_STORAGE_CACHE_MB`, default 1024; 0, or
/// `FRUGAL_MALLOC=system`, turns the cache off); past that, the size classes used least recently
/// are freed first. Cached bytes are not tensor memory: `MemoryStats.live` and `peak` leave them
/// out, `MemoryStats.cached` reports them.
enum StorageCache {
    /// Smallest block kept (smaller ones are malloc's fast path, without page faults).
    static let minBytes = 64 << 10

    static let limitBytes: Int = {
        #if canImport(Glibc)
        if let v = getenv("FRUGAL_MALLOC"), String(cString: v) == "system" { return 0 }
        if let v = getenv("FRUGAL_STORAGE_CACHE_MB"), let mb = Int(String(cString: v)), mb >= 0 { return mb << 20 }
        #endif
        return 1 << 30
    }()

    struct State {
        /// Free blocks (addresses) by block size.
        var free: [Int: [Int]] = [:]
        /// When each size class was last given or taken (a counter), for eviction.
        var lastUse: [Int: Int] = [:]
        var clock = 0
        var bytes = 0
    }
    static let state = Mutex(State())
    static let cachedCount = Atomic<Int>(0)

    static var cachedBytes: Int { cachedCount.load(ordering: .relaxed) }

    /// The allocation size for a storage of `bytes` bytes: its size class from 64 KiB up.
    @inline(__always)
    static func blockBytes(_ bytes: Int) -> Int {
        guard bytes >= minBytes else { return bytes }
        let pow2 = 1 << (Int.bitWidth - (bytes - 1).leadingZeroBitCount)   // smallest power of 2 >= bytes
        let step = max(4096, pow2 / 16)
        return (bytes + step - 1) / step * step
    }

    /// A cached block for a storage of `bytes` bytes, or nil.
    static func take(bytes: Int) -> UnsafeMutableRawPointer? {
        guard bytes >= minBytes, limitBytes > 0 else { return nil }
        let block = blockBytes(bytes)
        let address: Int? = state.withLock { s in
            guard var list = s.free[block], let a = list.popLast() else { return nil }
            s.free[block] = list.isEmpty ? nil : list
            s.bytes -= block
            s.clock += 1
            s.lastUse[block] = s.clock
            cachedCount.store(s.bytes, ordering: .relaxed)
            return a
        }
        return address.flatMap { UnsafeMutableRawPointer(bitPattern: $0) }
    }

    /// Keeps the block of a freed storage of `bytes` bytes; false when the caller must free it.
    static func give(_ p: UnsafeMutableRawPointer, bytes: Int) -> Bool {
        guard bytes >= minBytes, limitBytes > 0 else { return false }
        let block = blockBytes(bytes)
        guard block <= limitBytes else { return false }
        var evicted: [Int] = []
        state.withLock { s in
            s.clock += 1
            s.lastUse[block] = s.clock
            // Make room: free whole size classes, least recently used first (this one last).
            while s.bytes + block > limitBytes {
                guard let victim = s.free.keys.min(by: { (s.lastUse[$0] ?? 0) < (s.lastUse[$1] ?? 0) }),
                      let list = s.free.removeValue(forKey: victim) else { break }
                var keep = list
                while s.bytes + block > limitBytes, let a = keep.popLast() { evicted.append(a); s.bytes -= victim }
                if !keep.isEmpty { s.free[victim] = keep }
            }
            s.free[block, default: []].append(Int(bitPattern: p))
            s.bytes += block
            cachedCount.store(s.bytes, ordering: .relaxed)
        }
        for a in evicted { UnsafeMutableRawPointer(bitPattern: a)?.deallocate() }
        return true
    }

    /// Frees every cached block.
    static func releaseAll() {
        let all: [Int] = state.withLock { s in
            let a = s.free.values.flatMap { $0 }
            s.free = [:]; s.bytes = 0
            cachedCount.store(0, ordering: .relaxed)
            return a
        }
        for a in all { UnsafeMutableRawPointer(bitPattern: a)?.deallocate() }
    }
}

/// Transparent huge pages for large buffers, as numpy does for arrays of 4 MiB and more: with
/// THP in `madvise` mode (the usual default), streaming a large weight matrix otherwise takes a
/// TLB miss every 4 KiB, which costs memory-bound kernels (batch-1 GEMV) about a tenth of their
/// bandwidth.
public enum HugePages {
    /// Advises the kernel to back the whole 4 KiB pages inside [p, p + bytes) with huge pages
    /// (a no-op below 4 MiB, on other systems, or when THP is off).
    @inline(__always)
    public static func advise(_ p: UnsafeMutableRawPointer, bytes: Int) {
        #if canImport(Glibc)
        guard bytes >= 4 << 20 else { return }
        let start = (Int(bitPattern: p) + 4095) & ~4095
        let end = (Int(bitPattern: p) + bytes) & ~4095
        guard end > start, let q = UnsafeMutableRawPointer(bitPattern: start) else { return }
        _ = madvise(q, end - start, 14)  // MADV_HUGEPAGE
        #endif
    }
}
