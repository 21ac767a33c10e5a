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
        raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        HugePages.advise(raw, bytes: bytes)
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
            raw.deallocate()
            MemoryStats.didFree(max(count * dtype.size, 1))
        }
    }

    /// Typed float32 pointer; traps if the storage is not float32.
    @inlinable public var floats: UnsafeMutablePointer<Float> {
        precondition(dtype == .float32, "Storage holds \(dtype), float32 pointer requested")
        return raw.assumingMemoryBound(to: Float.self)
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
