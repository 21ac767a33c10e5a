import ArgumentParser
import Foundation

@main
struct Frugal: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "frugal",
        abstract: "Deep learning where memory, compute and bandwidth are scarce.",
        discussion: """
        Start with `frugal quickstart`: a short tour on data it makes itself.
        Real data sets are read from $FRUGAL_DATA (default ~/.cache/frugal-data).
        """,
        version: "0.1.0",
        subcommands: [Quickstart.self, Train.self, FL.self, Bench.self, DataCommand.self, Tokenize.self, MoECommand.self, NAS.self, Generate.self, Embed.self, PEFT.self])
}

/// Errors the CLI reports as one line on stderr with a non-zero exit.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Writes a JSON-encodable value to `path` atomically (temp file + rename).
func writeJSON<T: Encodable>(_ value: T, to path: String) throws {
    let enc = JSONEncoder()
    enc.outputFormatting = [.prettyPrinted, .sortedKeys]
    let data = try enc.encode(value)
    let url = URL(fileURLWithPath: path)
    try data.write(to: url, options: .atomic)
}

/// Prints a table with right-aligned columns.
func printTable(_ header: [String], _ rows: [[String]]) {
    var widths = header.map(\.count)
    for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { i, c in String(repeating: " ", count: widths[i] - c.count) + c }.joined(separator: "  ")
    }
    print(line(header))
    print(widths.map { String(repeating: "-", count: $0) }.joined(separator: "  "))
    for r in rows { print(line(r)) }
}

func fmt(_ x: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", x) }

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Flushes standard output (progress lines without a newline).
func flushStdout() { fflush(nil) }
