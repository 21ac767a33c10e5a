import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Which implementation runs the matrix products (`Kernels.backend`).
public enum Backend: String, Sendable, CaseIterable, Codable {
    /// The pure-Swift kernels in this module (always available).
    case swift
    /// OpenBLAS loaded at run time (`libopenblas.so.0`); falls back to `.swift` when absent.
    case openblas
}

/// Process-wide settings of the matrix kernels: how many threads they use and which backend runs
/// `GEMM.sgemm` (and float32 `GEMV.gemv`).
///
/// Defaults come from the environment at first use:
/// - `FRUGAL_THREADS=<n>` sets the thread count (default: `min(2, active processors)`);
/// - `FRUGAL_BLAS=openblas` selects OpenBLAS, loaded at run time with `dlopen`; if the library is
///   missing, one warning goes to stderr and the Swift kernels run instead.
///
/// Change the settings before starting parallel work: they are plain process-wide values.
public enum Kernels {
    /// Thread count read once from `FRUGAL_THREADS`, or `min(2, active processors)`.
    @usableFromInline static let defaultThreads: Int = {
        if let s = getenv("FRUGAL_THREADS"), let v = Int(String(cString: s)), v > 0 {
            return min(v, 256)
        }
        let cpus = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        return max(1, min(2, cpus))
    }()

    // Written only by `setThreads`/`backend.set`, which callers use for configuration, not while
    // kernels run; a torn read is impossible for a word-sized value on the supported platforms.
    @usableFromInline nonisolated(unsafe) static var threadOverride: Int = 0
    @usableFromInline nonisolated(unsafe) static var backendOverride: Backend? = nil
    nonisolated(unsafe) static var warnedMissingOpenBLAS = false

    /// Threads the kernels use by default (at least 1).
    public static var threads: Int {
        let t = threadOverride
        return t > 0 ? t : defaultThreads
    }

    /// Sets the default thread count of the kernels; `n <= 0` restores the environment default.
    public static func setThreads(_ n: Int) {
        threadOverride = n > 0 ? min(n, 256) : 0
    }

    /// Backend read once from `FRUGAL_BLAS` (`swift` or `openblas`; anything else means `swift`).
    static let environmentBackend: Backend = {
        guard let s = getenv("FRUGAL_BLAS") else { return .swift }
        let v = String(cString: s).lowercased()
        if v == "openblas" { return .openblas }
        if !v.isEmpty && v != "swift" {
            warn("frugal: FRUGAL_BLAS=\(v) is not a known backend (swift, openblas); using swift")
        }
        return .swift
    }()

    /// The backend that runs matrix products. Reading it gives the backend actually in use: if
    /// OpenBLAS was asked for but cannot be loaded, this is `.swift` (after one warning on stderr).
    public static var backend: Backend {
        get {
            let want = backendOverride ?? environmentBackend
            return resolve(want)
        }
        set { backendOverride = newValue }
    }

    /// Maps a requested backend to one that can run here, warning once if OpenBLAS is missing.
    @usableFromInline static func resolve(_ want: Backend) -> Backend {
        guard want == .openblas else { return .swift }
        if OpenBLAS.isAvailable { return .openblas }
        if !warnedMissingOpenBLAS {
            warnedMissingOpenBLAS = true
            warn("frugal: OpenBLAS requested but libopenblas.so.0 could not be loaded; using the Swift kernels")
        }
        return .swift
    }

    static func warn(_ message: String) {
        // write(2) on fd 2: the C `stderr` global is not concurrency-safe to touch from Swift 6.
        let line = message + "\n"
        _ = line.utf8CString.withUnsafeBufferPointer { write(2, $0.baseAddress, $0.count - 1) }
    }
}

/// Carries raw pointers into `Kernels.parallel`. Safe because every caller waits
/// for `Kernels.parallel` to return before the pointed-to memory can go away, and the workers
/// write disjoint ranges.
@usableFromInline struct UnsafeSendablePointers: @unchecked Sendable {
    @usableFromInline let a: UnsafeRawPointer
    @usableFromInline let b: UnsafeRawPointer?
    @usableFromInline let c: UnsafeMutableRawPointer
    @usableFromInline let d: UnsafeRawPointer?
    @usableFromInline init(a: UnsafeRawPointer, b: UnsafeRawPointer?, c: UnsafeMutableRawPointer, d: UnsafeRawPointer? = nil) {
        self.a = a; self.b = b; self.c = c; self.d = d
    }
}

extension Kernels {
    /// Runs `body(0)`, ..., `body(n - 1)` in parallel and returns when all have finished.
    ///
    /// Iterations are claimed dynamically by the calling thread and by `Kernels.threads - 1`
    /// persistent kernel threads (never more, whatever `n`: a 96-chunk elementwise op on two
    /// cores used to start 95 threads that all woke and spun on every later call),
    /// which spin for a short while (`KernelPool.spinNanoseconds`) after a job before they block,
    /// so that back-to-back calls start within microseconds. (With
    /// `DispatchQueue.concurrentPerform` the second thread of a 1-2 ms product started 0.1-0.3 ms
    /// late on these virtual machines, where an idle virtual CPU is slow to wake.) A late thread
    /// finds nothing left to claim, so `body` may run its iterations one after another on one
    /// thread and must never wait for another iteration to start. Nested calls, and calls while
    /// another thread's job is running, run their iterations on the calling thread.
    /// Iterations must write disjoint memory.
    public static func parallel(_ n: Int, _ body: @Sendable (Int) -> Void) {
        if n <= 1 {
            if n == 1 { body(0) }
            return
        }
        KernelPool.shared.run(n, body)
    }
}

extension Kernels {
    /// Elements a range of `parallelRanges` holds at least (128 KiB of floats: a memory-bound
    /// pass over it takes ~10-20 µs, several times the cost of handing it to a thread).
    public static let elementwiseGrain = 1 << 15

    /// Runs `body(lo, hi)` over contiguous ranges covering 0..<n: on this thread alone when n is
    /// below two grains (or one thread is configured), else as up to 4 ranges a thread through
    /// `parallel`. For elementwise passes over large buffers; ranges must write disjoint memory.
    public static func parallelRanges(_ n: Int, grain: Int = elementwiseGrain, _ body: @Sendable (Int, Int) -> Void) {
        let parts = Swift.min(n / Swift.max(grain, 1), 4 * threads)
        if parts <= 1 || threads == 1 {
            if n > 0 { body(0, n) }
            return
        }
        parallel(parts) { i in body(n * i / parts, n * (i + 1) / parts) }
    }
}

/// Persistent worker threads behind `Kernels.parallel` (one job at a time).
final class KernelPool: @unchecked Sendable {  // shared state is atomics, or guarded by `mutex`/`busy`
    static let shared = KernelPool()

    /// How long an idle worker spins (yielding now and then) before it blocks.
    static let spinNanoseconds = 2_000_000

    /// One parallel call: the body, kept alive until every claimed iteration has finished.
    final class Job {
        let body: @Sendable (Int) -> Void
        init(body: @escaping @Sendable (Int) -> Void) { self.body = body }
    }

    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// Job generation (bits 32...) and iteration count (bits 0...31); bumped under `mutex`.
    private let state = Atomic<Int>(0)
    /// Job generation (bits 32...) and next unclaimed iteration (bits 0...31). Claiming with a
    /// compare-exchange on both means a thread that wakes late cannot claim from a newer job.
    private let claim = Atomic<Int>(0)
    private let finished = Atomic<Int>(0)     // iterations of the current job completed
    private let sleepers = Atomic<Int>(0)     // workers blocked in `cond`
    private let busy = Atomic<Bool>(false)    // held by the thread running a job
    private var threadCount = 0               // changed only while `busy` is held
    /// Kernel threads started so far (for tests: at most the largest `Kernels.threads` - 1 used).
    var workerCount: Int { threadCount }
    private var job: Job?                     // set before the job is published

    private init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(cond, nil)
    }

    /// Bits of `state` and `claim` below the generation.
    static let countBits = 32
    static let countMask = (1 << countBits) - 1

    func run(_ n: Int, _ body: @Sendable (Int) -> Void) {
        let threads = min(n, Kernels.threads)
        guard threads > 1, n <= KernelPool.countMask,
              busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            for i in 0..<n { body(i) }   // one thread, nested or concurrent use: run here
            return
        }
        defer { busy.store(false, ordering: .releasing) }
        while threadCount < threads - 1 {
            if !startThread(index: threadCount + 1) { break }
            threadCount += 1
        }
        withoutActuallyEscaping(body) { body in
            job = Job(body: body)
            finished.store(0, ordering: .relaxed)
            pthread_mutex_lock(mutex)
            let g = ((state.load(ordering: .relaxed) >> KernelPool.countBits) + 1) & 0x7fff_ffff   // stays non-negative
            claim.store(g << KernelPool.countBits, ordering: .relaxed)
            state.store(g << KernelPool.countBits | n, ordering: .releasing)
            if sleepers.load(ordering: .relaxed) > 0 { pthread_cond_broadcast(cond) }
            pthread_mutex_unlock(mutex)
            while let i = tryClaim(generation: g, count: n) {
                body(i)
                finished.add(1, ordering: .releasing)
            }
            var spins = 0
            while finished.load(ordering: .acquiring) < n {
                spins += 1
                if spins > 64 { sched_yield() }
            }
            job = nil
        }
    }

    /// Claims the next iteration of job `generation`, or returns nil if there is none.
    private func tryClaim(generation g: Int, count n: Int) -> Int? {
        var v = claim.load(ordering: .relaxed)
        while v >> KernelPool.countBits == g && v & KernelPool.countMask < n {
            let r = claim.compareExchange(expected: v, desired: v + 1, ordering: .acquiringAndReleasing)
            if r.exchanged { return v & KernelPool.countMask }
            v = r.original
        }
        return nil
    }

    private final class Start {
        let pool: KernelPool, generation: Int
        init(pool: KernelPool, generation: Int) { self.pool = pool; self.generation = generation }
    }

    private func startThread(index: Int) -> Bool {
        let start = Unmanaged.passRetained(Start(pool: self, generation: state.load(ordering: .acquiring) >> KernelPool.countBits))
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
        defer { pthread_attr_destroy(&attr) }
        #if canImport(Darwin)
        var tid: pthread_t? = nil
        #else
        var tid = pthread_t()
        #endif
        let rc = pthread_create(&tid, &attr, { arg in
            let s = Unmanaged<Start>.fromOpaque(arg!).takeRetainedValue()
            s.pool.workerLoop(seen: s.generation)
        }, start.toOpaque())
        if rc != 0 { start.release() }
        return rc == 0
    }

    private static func nanoseconds() -> Int {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int(ts.tv_sec) * 1_000_000_000 + Int(ts.tv_nsec)
    }

    private func workerLoop(seen start: Int) -> Never {
        var seen = start
        while true {
            var s = state.load(ordering: .acquiring)
            if s >> KernelPool.countBits == seen {
                // Spin a while: the next job usually follows within microseconds.
                let t0 = KernelPool.nanoseconds()
                var spins = 0
                while s >> KernelPool.countBits == seen {
                    spins += 1
                    if spins & 63 == 0 {
                        if KernelPool.nanoseconds() - t0 > KernelPool.spinNanoseconds { break }
                        sched_yield()
                    }
                    s = state.load(ordering: .acquiring)
                }
                if s >> KernelPool.countBits == seen {
                    pthread_mutex_lock(mutex)
                    sleepers.add(1, ordering: .relaxed)
                    s = state.load(ordering: .acquiring)
                    while s >> KernelPool.countBits == seen {
                        pthread_cond_wait(cond, mutex)
                        s = state.load(ordering: .acquiring)
                    }
                    sleepers.subtract(1, ordering: .relaxed)
                    pthread_mutex_unlock(mutex)
                }
            }
            seen = s >> KernelPool.countBits
            while let i = tryClaim(generation: seen, count: s & KernelPool.countMask) {
                runJob(i)
                finished.add(1, ordering: .releasing)
            }
        }
    }

    /// Runs one claimed iteration; a separate function so that its references to the job are
    /// released before `finished` says it is done (`withoutActuallyEscaping` checks that).
    @inline(never)
    private func runJob(_ index: Int) {
        job?.body(index)
    }
}
