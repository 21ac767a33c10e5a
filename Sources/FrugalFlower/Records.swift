import Foundation

/// One array of an `ArrayRecord` (Flower's `Array`): dtype and shape, the serialisation type and
/// the serialised bytes (`stype` "numpy.ndarray": `.npy` bytes).
public struct FlowerArray: Sendable, Equatable {
    public static let numpyStype = "numpy.ndarray"
    public var dtype: String
    public var shape: [Int]
    public var stype: String
    public var data: [UInt8]

    public init(dtype: String, shape: [Int], stype: String, data: [UInt8]) {
        self.dtype = dtype; self.shape = shape; self.stype = stype; self.data = data
    }

    /// The array Flower's `Array(ndarray)` makes from a NumPy array.
    public init(_ npy: NPYArray) {
        self.init(dtype: npy.dtype.name, shape: npy.shape, stype: Self.numpyStype, data: npy.encoded())
    }

    /// A float32 array of `shape`.
    public init(float32 values: [Float], shape: [Int]) { self.init(NPYArray(float32: values, shape: shape)) }

    /// The NumPy array, checked against the declared dtype and shape.
    public func npy(name: String = "array") throws -> NPYArray {
        guard stype == Self.numpyStype else {
            throw FlowerError(.content, "array '\(name)' is serialised as '\(stype)'; only '\(Self.numpyStype)' is supported")
        }
        let a: NPYArray
        do { a = try NPYArray(decoding: data) } catch let e as FlowerError {
            throw FlowerError(.content, "array '\(name)': \(e.message)")
        }
        guard a.dtype.name == dtype, a.shape == shape else {
            throw FlowerError(.content, "array '\(name)' declares \(dtype) \(shape) but its NPY bytes hold \(a.dtype.name) \(a.shape)")
        }
        return a
    }
}

/// A value of a `ConfigRecord` or `MetricRecord` (Flower's `ConfigRecordValue` /
/// `MetricRecordValue`: scalars and homogeneous lists; metric records allow the numeric ones only).
public enum RecordValue: Sendable, Equatable {
    case double(Double), int(Int64), uint(UInt64), bool(Bool), string(String), bytes([UInt8])
    case doubles([Double]), ints([Int64]), uints([UInt64]), bools([Bool]), strings([String]), bytesList([[UInt8]])

    /// The value as a Double when it is one number (int, uint or double).
    public var number: Double? {
        switch self {
        case .double(let d): return d
        case .int(let i): return Double(i)
        case .uint(let u): return Double(u)
        default: return nil
        }
    }
    /// The value as an Int when it is one integer.
    public var integer: Int? {
        switch self {
        case .int(let i): return Int(exactly: i)
        case .uint(let u): return Int(exactly: u)
        default: return nil
        }
    }
    var isNumeric: Bool {
        switch self {
        case .double, .int, .uint, .doubles, .ints, .uints: return true
        default: return false
        }
    }
}

/// An ordered string-keyed collection, as Python's insertion-ordered dicts the records are.
public struct Ordered<Value: Sendable>: Sendable {
    public private(set) var items: [(key: String, value: Value)] = []
    public init(_ items: [(String, Value)] = []) { for (k, v) in items { self[k] = v } }
    public var keys: [String] { items.map(\.key) }
    public var count: Int { items.count }
    public subscript(key: String) -> Value? {
        get { items.first(where: { $0.key == key })?.value }
        set {
            if let i = items.firstIndex(where: { $0.key == key }) {
                if let newValue { items[i].value = newValue } else { items.remove(at: i) }
            } else if let newValue {
                items.append((key, newValue))
            }
        }
    }
}

/// Named arrays (Flower's `ArrayRecord`), e.g. a model's parameters.
public typealias ArrayRecord = Ordered<FlowerArray>
/// Configuration values (Flower's `ConfigRecord`).
public typealias ConfigRecord = Ordered<RecordValue>

/// Metrics (Flower's `MetricRecord`): numeric values only.
public struct MetricRecord: Sendable {
    public var values: Ordered<RecordValue>
    public init(_ items: [(String, RecordValue)] = []) throws {
        for (k, v) in items where !v.isNumeric {
            throw FlowerError(.content, "metric '\(k)' is \(v); a MetricRecord holds numbers and lists of numbers only")
        }
        values = Ordered(items)
    }
    public subscript(key: String) -> RecordValue? { values[key] }
}

/// One record of a `RecordDict`.
public enum Record: Sendable {
    case arrays(ArrayRecord)
    case metrics(MetricRecord)
    case config(ConfigRecord)

    var typeName: String {
        switch self {
        case .arrays: return "ArrayRecord"
        case .metrics: return "MetricRecord"
        case .config: return "ConfigRecord"
        }
    }
}

/// A message's content (Flower's `RecordDict`): named array, metric and config records.
public typealias RecordDict = Ordered<Record>

extension Ordered where Value == Record {
    /// The array records, in order.
    public var arrayRecords: [(key: String, value: ArrayRecord)] {
        items.compactMap { if case .arrays(let r) = $0.value { return ($0.key, r) } else { return nil } }
    }
    public var configRecords: [(key: String, value: ConfigRecord)] {
        items.compactMap { if case .config(let r) = $0.value { return ($0.key, r) } else { return nil } }
    }
    public var metricRecords: [(key: String, value: MetricRecord)] {
        items.compactMap { if case .metrics(let r) = $0.value { return ($0.key, r) } else { return nil } }
    }
    /// The `server-round` Flower's strategies put in the config record of train and evaluate messages.
    public var serverRound: Int? { configRecords.lazy.compactMap { $0.value["server-round"]?.integer }.first }
}

extension FlowerMessage {
    /// The round: the config's `server-round`, else the group id (nil when neither says).
    public var round: Int? { content?.serverRound ?? Int(metadata.groupID) }
}

/// A message's metadata (Flower's `Metadata`).
public struct FlowerMetadata: Sendable, Equatable {
    public var runID: UInt64 = 0
    /// The object id of the message (empty inside the message's own object body).
    public var messageID = ""
    public var srcNodeID: UInt64 = 0
    public var dstNodeID: UInt64 = 0
    public var replyToMessageID = ""
    /// For FedAvg: the round, as text.
    public var groupID = ""
    /// Seconds the message lives after `createdAt`.
    public var ttl = 0.0
    /// "train", "evaluate", "query" or "<one of these>.<action>".
    public var messageType = ""
    /// Unix time in seconds.
    public var createdAt = 0.0
    public var srcTaskID: UInt64?
    public var dstTaskID: UInt64?
    public init() {}
}

/// The error a reply carries instead of content (Flower's `Error`).
public struct MessageError: Sendable, Equatable {
    public var code: Int64
    public var reason: String
    public init(code: Int64, reason: String) { self.code = code; self.reason = reason }
}

/// A Flower message: metadata and either content or an error.
public struct FlowerMessage: Sendable {
    public var metadata: FlowerMetadata
    public var content: RecordDict?
    public var error: MessageError?

    public init(metadata: FlowerMetadata, content: RecordDict?, error: MessageError? = nil) {
        self.metadata = metadata; self.content = content; self.error = error
    }

    /// A reply to `message` (Flower's `Message(content, reply_to=message)`): same run, group and
    /// type, addressed back to the sender, living until the instruction expires.
    public static func reply(to message: FlowerMetadata, content: RecordDict?, error: MessageError? = nil,
                             now: Double = Date().timeIntervalSince1970) -> FlowerMessage {
        var m = FlowerMetadata()
        m.runID = message.runID
        m.srcNodeID = message.dstNodeID
        m.dstNodeID = message.srcNodeID
        m.replyToMessageID = message.messageID
        m.groupID = message.groupID
        m.createdAt = now
        m.ttl = message.createdAt + message.ttl - now
        m.messageType = message.messageType
        m.srcTaskID = message.dstTaskID
        m.dstTaskID = message.srcTaskID
        return FlowerMessage(metadata: m, content: content, error: error)
    }
}
