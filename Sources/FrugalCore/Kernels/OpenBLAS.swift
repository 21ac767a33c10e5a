#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// OpenBLAS loaded at run time with `dlopen`, so that nothing is needed to build or test Frugal.
///
/// Tries `libopenblas.so.0`, then `libopenblas.so` (on macOS `libopenblas.dylib`), and looks up
/// `cblas_sgemm`, `cblas_sgemv` and `openblas_set_num_threads`. Only 32-bit-integer (LP64)
/// builds are used; the `64_`-suffixed ILP64 builds bundled with numpy are not looked for.
public enum OpenBLAS {
    typealias SgemmFn = @convention(c) (Int32, Int32, Int32, Int32, Int32, Int32, Float,
                                        UnsafePointer<Float>?, Int32, UnsafePointer<Float>?, Int32,
                                        Float, UnsafeMutablePointer<Float>?, Int32) -> Void
    typealias SgemvFn = @convention(c) (Int32, Int32, Int32, Int32, Float, UnsafePointer<Float>?, Int32,
                                        UnsafePointer<Float>?, Int32, Float, UnsafeMutablePointer<Float>?, Int32) -> Void
    typealias SetThreadsFn = @convention(c) (Int32) -> Void

    /// The resolved entry points. `@unchecked Sendable`: C function pointers and an immutable
    /// string, set once when the library loads.
    struct Library: @unchecked Sendable {
        let path: String
        let sgemm: SgemmFn
        let sgemv: SgemvFn
        let setThreads: SetThreadsFn?
    }

    static let library: Library? = load()

    // The thread count last passed to `openblas_set_num_threads` (0: never called).
    nonisolated(unsafe) static var currentThreads: Int32 = 0

    /// Whether an OpenBLAS library with `cblas_sgemm` and `cblas_sgemv` could be loaded.
    public static var isAvailable: Bool { library != nil }

    /// The file name of the loaded library, or nil when none could be loaded.
    public static var libraryPath: String? { library?.path }

    static func load() -> Library? {
        #if os(macOS)
        let names = ["libopenblas.dylib", "libopenblas.0.dylib"]
        #else
        let names = ["libopenblas.so.0", "libopenblas.so"]
        #endif
        for name in names {
            guard let handle = dlopen(name, RTLD_NOW | RTLD_LOCAL) else { continue }
            guard let g = dlsym(handle, "cblas_sgemm"), let v = dlsym(handle, "cblas_sgemv") else {
                dlclose(handle)
                continue
            }
            let t = dlsym(handle, "openblas_set_num_threads")
            return Library(path: name,
                           sgemm: unsafeBitCast(g, to: SgemmFn.self),
                           sgemv: unsafeBitCast(v, to: SgemvFn.self),
                           setThreads: t.map { unsafeBitCast($0, to: SetThreadsFn.self) })
        }
        return nil
    }

    static func fitsInt32(_ values: Int...) -> Bool {
        values.allSatisfy { $0 >= 0 && $0 <= Int(Int32.max) }
    }

    static func useThreads(_ lib: Library, _ threads: Int) {
        let t = Int32(max(1, min(threads, 256)))
        if t != currentThreads, let set = lib.setThreads {
            set(t)
            currentThreads = t
        }
    }

    private static let rowMajor: Int32 = 101, noTrans: Int32 = 111, trans: Int32 = 112

    /// Row-major `cblas_sgemm`. Returns false (and does nothing) if OpenBLAS is not loaded or a
    /// dimension does not fit in 32 bits.
    @discardableResult
    public static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                             a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                             beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, threads: Int) -> Bool {
        guard let lib = library, fitsInt32(m, n, k, lda, ldb, ldc) else { return false }
        useThreads(lib, threads)
        lib.sgemm(rowMajor, transA ? trans : noTrans, transB ? trans : noTrans,
                  Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
        return true
    }

    /// Row-major `cblas_sgemv` without transpose: y = alpha * A x + beta * y, A is m x n with
    /// leading dimension lda. Returns false if OpenBLAS is not loaded or a size exceeds 32 bits.
    @discardableResult
    public static func sgemv(m: Int, n: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                             x: UnsafePointer<Float>, beta: Float, y: UnsafeMutablePointer<Float>, threads: Int) -> Bool {
        guard let lib = library, fitsInt32(m, n, lda) else { return false }
        useThreads(lib, threads)
        lib.sgemv(rowMajor, noTrans, Int32(m), Int32(n), alpha, a, Int32(lda), x, 1, beta, y, 1)
        return true
    }
}
