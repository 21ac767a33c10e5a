import Foundation

/// An error of the federated runtime (configuration, traces, partitions); the message says what
/// was wrong and where.
public struct FederatedError: Error, CustomStringConvertible, Equatable, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { "FederatedError: \(message)" }
}

/// A simulated device: compute speed, link speeds, memory and availability.
public struct DeviceProfile: Sendable, Codable, Equatable {
    /// Kind of device, e.g. "jetson-tx2", "phone-12mbit", or a trace's client id.
    public var name: String
    /// Seconds of compute (forward + backward) per training sample.
    public var computePerSample: Double
    /// Download (server → device) bandwidth, bytes per second.
    public var downlinkBytesPerSecond: Double
    /// Upload (device → server) bandwidth, bytes per second.
    public var uplinkBytesPerSecond: Double
    /// Device memory, bytes.
    public var memoryBytes: Int
    /// Probability that the device is available in a round, in [0, 1].
    public var availability: Double

    public init(name: String, computePerSample: Double, downlinkBytesPerSecond: Double, uplinkBytesPerSecond: Double,
                memoryBytes: Int, availability: Double = 1) {
        self.name = name
        self.computePerSample = computePerSample
        self.downlinkBytesPerSecond = downlinkBytesPerSecond
        self.uplinkBytesPerSecond = uplinkBytesPerSecond
        self.memoryBytes = memoryBytes
        self.availability = availability
    }

    /// The time model used by `BatchSizePlanner`.
    public var timeProfile: DeviceTimeProfile {
        DeviceTimeProfile(computePerSample: computePerSample, downBytesPerSecond: downlinkBytesPerSecond,
                          upBytesPerSecond: uplinkBytesPerSecond)
    }

    /// Throws unless every field is finite and positive (availability in [0, 1]).
    public func validate(_ what: String) throws {
        guard computePerSample.isFinite, computePerSample >= 0 else {
            throw FederatedError("\(what) (\(name)): compute per sample \(computePerSample) s must be finite and ≥ 0")
        }
        guard downlinkBytesPerSecond.isFinite, downlinkBytesPerSecond > 0 else {
            throw FederatedError("\(what) (\(name)): downlink \(downlinkBytesPerSecond) B/s must be finite and > 0")
        }
        guard uplinkBytesPerSecond.isFinite, uplinkBytesPerSecond > 0 else {
            throw FederatedError("\(what) (\(name)): uplink \(uplinkBytesPerSecond) B/s must be finite and > 0")
        }
        guard memoryBytes >= 0 else { throw FederatedError("\(what) (\(name)): memory \(memoryBytes) bytes is negative") }
        guard availability.isFinite, availability >= 0, availability <= 1 else {
            throw FederatedError("\(what) (\(name)): availability \(availability) is outside [0, 1]")
        }
    }
}

/// Built-in device profiles of the kind used in Caesar's testbed (Jetson boards on Wi-Fi and
/// smartphones with 1-50 Mbit/s links). Compute times are per sample for a LeNet-sized model.
public enum DeviceCatalog {
    static let gib = 1 << 30
    static func mbit(_ m: Double) -> Double { m * 1_000_000 / 8 }

    /// Jetson TX2 (1.33 TFLOPS, 8 GB), 50/25 Mbit/s.
    public static let jetsonTX2 = DeviceProfile(name: "jetson-tx2", computePerSample: 0.0020, downlinkBytesPerSecond: mbit(50),
                                                uplinkBytesPerSecond: mbit(25), memoryBytes: 8 * gib, availability: 0.95)
    /// Jetson Xavier NX (1.69 TFLOPS, 16 GB), 50/25 Mbit/s.
    public static let xavierNX = DeviceProfile(name: "xavier-nx", computePerSample: 0.0015, downlinkBytesPerSecond: mbit(50),
                                               uplinkBytesPerSecond: mbit(25), memoryBytes: 16 * gib, availability: 0.95)
    /// Jetson AGX Xavier (32 GB), 100/50 Mbit/s.
    public static let agxXavier = DeviceProfile(name: "agx-xavier", computePerSample: 0.0008, downlinkBytesPerSecond: mbit(100),
                                                uplinkBytesPerSecond: mbit(50), memoryBytes: 32 * gib, availability: 0.95)
    /// Jetson Orin-class board (32 GB), 100/50 Mbit/s.
    public static let orin = DeviceProfile(name: "orin", computePerSample: 0.0004, downlinkBytesPerSecond: mbit(100),
                                           uplinkBytesPerSecond: mbit(50), memoryBytes: 32 * gib, availability: 0.95)

    /// A smartphone with a `mbps` Mbit/s downlink (uplink half of it), 6 GB, 5 ms per sample.
    public static func phone(mbps: Double) -> DeviceProfile {
        DeviceProfile(name: "phone-\(Int(mbps.rounded()))mbit", computePerSample: 0.005, downlinkBytesPerSecond: mbit(mbps),
                      uplinkBytesPerSecond: mbit(mbps / 2), memoryBytes: 6 * gib, availability: 0.8)
    }

    /// `count` devices drawn with a seed: two thirds Jetson boards (TX2, Xavier NX, AGX Xavier, Orin
    /// equally likely), one third phones with a log-uniform 1-50 Mbit/s downlink (as in Caesar's
    /// 80 Jetson + 40 phone testbed).
    public static func mix(count: Int, seed: UInt64) -> [DeviceProfile] {
        var rng = SplitMix64(seed: seed ^ 0xD1CE_D1CE)
        let boards = [jetsonTX2, xavierNX, agxXavier, orin]
        return (0 ..< max(count, 0)).map { _ in
            if rng.nextBelow(3) < 2 { return boards[Int(rng.nextBelow(4))] }
            let u = Double(rng.nextUnitFloat())
            return phone(mbps: exp(log(1.0) + u * (log(50.0) - log(1.0))))
        }
    }
}

/// Reads FedScale-style device traces: per client an id, compute milliseconds per sample and a
/// bandwidth in kbit/s (used for both directions).
///
/// CSV: a header with columns `client_id`, `compute_ms_per_sample` (or `computation`) and
/// `bandwidth_kbps` (or `communication`), then one row per client; `#` lines are comments.
/// JSON: either an array of objects with those keys, or FedScale's dictionary
/// `{"<client id>": {"computation": ms, "communication": kbit/s}, ...}` (sorted by id).
public enum DeviceTrace {
    static let idKeys = ["client_id", "client", "id"]
    static let computeKeys = ["compute_ms_per_sample", "computation", "compute_ms"]
    static let bandwidthKeys = ["bandwidth_kbps", "communication", "bandwidth_kbit_s"]

    /// Loads a trace file (`.json` as JSON, anything else as CSV).
    public static func load(path: String, memoryBytes: Int = 4 << 30, availability: Double = 1) throws -> [DeviceProfile] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FederatedError("device trace \(path): cannot read the file")
        }
        if path.lowercased().hasSuffix(".json") {
            return try parseJSON(data, source: path, memoryBytes: memoryBytes, availability: availability)
        }
        guard let text = String(data: data, encoding: .utf8) else { throw FederatedError("device trace \(path): not UTF-8 text") }
        return try parseCSV(text, source: path, memoryBytes: memoryBytes, availability: availability)
    }

    static func profile(id: String, computeMs: Double, kbps: Double, memoryBytes: Int, availability: Double,
                        where place: String) throws -> DeviceProfile {
        guard computeMs.isFinite, computeMs >= 0 else {
            throw FederatedError("\(place): client \(id) has compute \(computeMs) ms/sample (must be finite and ≥ 0)")
        }
        guard kbps.isFinite, kbps > 0 else {
            throw FederatedError("\(place): client \(id) has bandwidth \(kbps) kbit/s (must be finite and > 0)")
        }
        let bps = kbps * 1000 / 8
        return DeviceProfile(name: id, computePerSample: computeMs / 1000, downlinkBytesPerSecond: bps,
                             uplinkBytesPerSecond: bps, memoryBytes: memoryBytes, availability: availability)
    }

    /// Parses CSV trace text; `source` names the file in errors.
    public static func parseCSV(_ text: String, source: String = "trace", memoryBytes: Int = 4 << 30,
                                availability: Double = 1) throws -> [DeviceProfile] {
        var header: [String]? = nil
        var cols = (id: 0, compute: 0, bw: 0)
        var out: [DeviceProfile] = []
        for (n, raw) in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map {
                $0.trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            }
            let place = "\(source):\(n + 1)"
            guard let h = header else {
                let lower = fields.map { $0.lowercased() }
                func col(_ keys: [String]) throws -> Int {
                    guard let i = lower.firstIndex(where: { keys.contains($0) }) else {
                        throw FederatedError("\(place): header lacks a column \(keys.joined(separator: " / ")) (got \(fields))")
                    }
                    return i
                }
                cols = (try col(idKeys), try col(computeKeys), try col(bandwidthKeys))
                header = fields
                continue
            }
            guard fields.count == h.count else {
                throw FederatedError("\(place): \(fields.count) fields, the header has \(h.count)")
            }
            guard let c = Double(fields[cols.compute]) else {
                throw FederatedError("\(place): compute '\(fields[cols.compute])' is not a number")
            }
            guard let b = Double(fields[cols.bw]) else {
                throw FederatedError("\(place): bandwidth '\(fields[cols.bw])' is not a number")
            }
            out.append(try profile(id: fields[cols.id], computeMs: c, kbps: b, memoryBytes: memoryBytes,
                                   availability: availability, where: place))
        }
        guard header != nil else { throw FederatedError("\(source): empty trace (no header line)") }
        guard !out.isEmpty else { throw FederatedError("\(source): the trace lists no clients") }
        return out
    }

    /// Parses JSON trace data; `source` names the file in errors.
    public static func parseJSON(_ data: Data, source: String = "trace", memoryBytes: Int = 4 << 30,
                                 availability: Double = 1) throws -> [DeviceProfile] {
        let root: Any
        do { root = try JSONSerialization.jsonObject(with: data) } catch {
            throw FederatedError("\(source): invalid JSON (\(error.localizedDescription))")
        }
        func number(_ obj: [String: Any], _ keys: [String], _ place: String) throws -> Double {
            for k in keys { if let v = obj[k] as? NSNumber { return v.doubleValue } }
            throw FederatedError("\(place): missing numeric field \(keys.joined(separator: " / "))")
        }
        var out: [DeviceProfile] = []
        if let array = root as? [Any] {
            for (i, item) in array.enumerated() {
                let place = "\(source): entry \(i)"
                guard let obj = item as? [String: Any] else { throw FederatedError("\(place): not an object") }
                var id = "\(i)"
                for k in idKeys { if let v = obj[k] { id = "\(v)"; break } }
                out.append(try profile(id: id, computeMs: try number(obj, computeKeys, place),
                                       kbps: try number(obj, bandwidthKeys, place),
                                       memoryBytes: memoryBytes, availability: availability, where: place))
            }
        } else if let dict = root as? [String: Any] {
            let keys = dict.keys.sorted { a, b in
                if let x = Int(a), let y = Int(b) { return x < y }
                return a < b
            }
            for k in keys {
                let place = "\(source): client \(k)"
                guard let obj = dict[k] as? [String: Any] else { throw FederatedError("\(place): not an object") }
                out.append(try profile(id: k, computeMs: try number(obj, computeKeys, place),
                                       kbps: try number(obj, bandwidthKeys, place),
                                       memoryBytes: memoryBytes, availability: availability, where: place))
            }
        } else {
            throw FederatedError("\(source): expected a JSON array or object of clients")
        }
        guard !out.isEmpty else { throw FederatedError("\(source): the trace lists no clients") }
        return out
    }
}
