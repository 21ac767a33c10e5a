import Foundation

/// Where data sets live: `$FRUGAL_DATA`, or `~/.cache/frugal-data` when unset.
///
/// Layout below the root (what `../shared/data/prepare` and ``DatasetDownloader`` produce):
/// `mnist/`, `fashion-mnist/` (IDX, gzip), `cifar-10-batches-bin/` (CIFAR-10 binary batches), `text/`.
public enum DataPaths {
    /// The data root: `$FRUGAL_DATA` if set and non-empty, else `~/.cache/frugal-data`.
    public static var root: String {
        if let env = ProcessInfo.processInfo.environment["FRUGAL_DATA"], !env.isEmpty { return env }
        let home = ProcessInfo.processInfo.environment["HOME"] ?? NSHomeDirectory()
        return (home as NSString).appendingPathComponent(".cache/frugal-data")
    }
    /// `root/mnist`.
    public static var mnist: String { join(root, "mnist") }
    /// `root/fashion-mnist`.
    public static var fashionMNIST: String { join(root, "fashion-mnist") }
    /// `root/cifar-10-batches-bin`.
    public static var cifar10: String { join(root, "cifar-10-batches-bin") }
    /// `root/text`.
    public static var text: String { join(root, "text") }

    /// The advice appended to "file not found" errors.
    public static func downloadHint(_ dataset: String) -> String {
        if dataset == "text" {
            return "The text data sets come from `../shared/data/prepare links` (in the Frugal checkout); "
                + "or set FRUGAL_DATA to the folder that holds `text/` (now: \(root))."
        }
        return "Run `frugal data download \(dataset)` (or `../shared/data/prepare` in the Frugal checkout) to fetch it, "
            + "or set FRUGAL_DATA to the folder that holds it (now: \(root))."
    }

    static func join(_ a: String, _ b: String) -> String { (a as NSString).appendingPathComponent(b) }
}
