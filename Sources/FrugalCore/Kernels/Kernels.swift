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

/// Carries raw pointers into `DispatchQueue.concurrentPerform`. Safe because every caller waits
/// for `concurrentPerform` to return before the pointed-to memory can go away, and the workers
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
