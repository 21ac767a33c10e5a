import Foundation

/// Errors thrown by FrugalData. Every message says what was wrong and where (file, offset, argument).
public enum DataError: Error, Equatable, CustomStringConvertible, LocalizedError {
    /// A file the loader needs does not exist; `hint` says how to get it.
    case fileMissing(path: String, hint: String)
    /// A file exists but could not be read (permissions, I/O error).
    case unreadable(path: String, reason: String)
    /// A file or buffer does not follow its format (IDX header, CIFAR record, tar header, text line).
    case malformed(source: String, offset: Int?, reason: String)
    /// A compressed stream (gzip, zlib, deflate) is corrupt or truncated.
    case corruptStream(source: String, reason: String)
    /// A function argument is out of range or contradicts the data.
    case invalidArgument(String)
    /// A downloaded file does not match its published checksum.
    case checksumMismatch(file: String, algorithm: String, expected: String, actual: String)
    /// A download failed (connection, HTTP status, missing tool).
    case network(url: String, reason: String)

    public var description: String {
        switch self {
        case let .fileMissing(path, hint):
            return "file not found: \(path). \(hint)"
        case let .unreadable(path, reason):
            return "cannot read \(path): \(reason)"
        case let .malformed(source, offset, reason):
            if let offset { return "\(source): malformed at offset \(offset): \(reason)" }
            return "\(source): malformed: \(reason)"
        case let .corruptStream(source, reason):
            return "\(source): corrupt compressed stream: \(reason)"
        case let .invalidArgument(message):
            return "invalid argument: \(message)"
        case let .checksumMismatch(file, algorithm, expected, actual):
            return "\(file): \(algorithm) checksum mismatch (expected \(expected), got \(actual)); the download is corrupt or incomplete"
        case let .network(url, reason):
            return "download of \(url) failed: \(reason)"
        }
    }

    public var errorDescription: String? { description }
}
