import Crypto
import Foundation
import SwiftProtobuf

/// One object of Flower's object store and its descendants (Flower's `InflatableObject`).
///
/// Since Flower 1.20 a message travels as a tree of content-addressed objects, each one
/// `"<type> <child ids joined by ','> <body length>" 0x00 <body>` and named by the SHA-256 (hex)
/// of those bytes:
///
///     Message     body: protobuf `Message` (metadata with an empty message_id, or an error)
///     RecordDict  body: JSON {record name: record id}
///     ArrayRecord body: JSON {array name: array id}
///     Array       body: JSON {"dtype", "shape", "stype", "arraychunk_ids": [index into the child ids]}
///     ArrayChunk  body: ≤ 5 MiB slice of the array's bytes
///     ConfigRecord / MetricRecord body: protobuf `ConfigRecord` / `MetricRecord`
///
/// Children are listed once each, in order of first appearance. This type builds those bytes
/// exactly as flwr 1.42 does (`flwr/supercore/inflatable`, `flwr/app/message/*.py`), so ids agree.
public struct FlowerObject: Sendable {
    public let id: String
    public let content: [UInt8]
    public let children: [FlowerObject]

    init(type: String, children: [FlowerObject], body: [UInt8]) {
        var unique: [FlowerObject] = []
        var seen = Set<String>()
        for c in children where seen.insert(c.id).inserted { unique.append(c) }
        var content = Array("\(type) \(unique.map(\.id).joined(separator: ",")) \(body.count)".utf8)
        content.append(0)
        content += body
        self.id = FlowerObject.hash(content)
        self.content = content
        self.children = unique
    }

    /// SHA-256 of `bytes` as 64 lowercase hex digits (Flower's `get_object_id`).
    public static func hash(_ bytes: [UInt8]) -> String {
        let digest = SHA256.hash(data: bytes)
        return digest.map { b in
            let h = String(b, radix: 16)
            return b < 16 ? "0" + h : h
        }.joined()
    }

    /// The tree of ids Flower sends beside a message (`ObjectTree`).
    var tree: Flwr_Proto_ObjectTree {
        var t = Flwr_Proto_ObjectTree()
        t.objectID = id
        t.children = children.map(\.tree)
        return t
    }

    /// Every object of the tree once, children before parents (the order objects are pushed).
    public var postOrder: [(id: String, content: [UInt8])] {
        var out: [(id: String, content: [UInt8])] = []
        var seen = Set<String>()
        func visit(_ o: FlowerObject) {
            for c in o.children { visit(c) }
            if seen.insert(o.id).inserted { out.append((o.id, o.content)) }
        }
        visit(self)
        return out
    }
}

/// Builds object trees from records and messages, and records and messages from object contents.
public enum ObjectCodec {
    // MARK: - Deflating

    /// An `Array` and its `ArrayChunk`s (chunks of at most `chunkSize` bytes; equal chunks shared).
    public static func deflate(_ a: FlowerArray, chunkSize: Int = FlowerProtocol.defaultChunkSize) -> FlowerObject {
        precondition(chunkSize > 0)
        var chunks: [FlowerObject] = []
        var start = 0
        while start < a.data.count {
            let end = min(start + chunkSize, a.data.count)
            chunks.append(FlowerObject(type: "ArrayChunk", children: [], body: Array(a.data[start..<end])))
            start = end
        }
        var uniqueIDs: [String] = []
        var index: [String: Int] = [:]
        for c in chunks where index[c.id] == nil {
            index[c.id] = uniqueIDs.count
            uniqueIDs.append(c.id)
        }
        let body = PyJSON.object([
            ("dtype", .string(a.dtype)),
            ("shape", .array(a.shape.map { .int($0) })),
            ("stype", .string(a.stype)),
            ("arraychunk_ids", .array(chunks.map { .int(index[$0.id]!) })),
        ]).dumps()
        return FlowerObject(type: "Array", children: chunks, body: Array(body.utf8))
    }

    public static func deflate(_ r: ArrayRecord, chunkSize: Int = FlowerProtocol.defaultChunkSize) -> FlowerObject {
        let arrays = r.items.map { deflate($0.value, chunkSize: chunkSize) }
        let body = PyJSON.object(zip(r.items, arrays).map { ($0.key, .string($1.id)) }).dumps()
        return FlowerObject(type: "ArrayRecord", children: arrays, body: Array(body.utf8))
    }

    public static func deflate(config r: ConfigRecord) throws -> FlowerObject {
        var p = Flwr_Proto_ConfigRecord()
        p.items = r.items.map { kv in
            var item = Flwr_Proto_ConfigRecord.Item()
            item.key = kv.key
            item.value.value = configValue(kv.value)
            return item
        }
        return FlowerObject(type: "ConfigRecord", children: [], body: try p.serializedBytes())
    }

    public static func deflate(metrics r: MetricRecord) throws -> FlowerObject {
        var p = Flwr_Proto_MetricRecord()
        p.items = try r.values.items.map { kv in
            var item = Flwr_Proto_MetricRecord.Item()
            item.key = kv.key
            item.value.value = try metricValue(kv.value, key: kv.key)
            return item
        }
        return FlowerObject(type: "MetricRecord", children: [], body: try p.serializedBytes())
    }

    public static func deflate(_ d: RecordDict, chunkSize: Int = FlowerProtocol.defaultChunkSize) throws -> FlowerObject {
        let records: [FlowerObject] = try d.items.map { kv in
            switch kv.value {
            case .arrays(let r): return deflate(r, chunkSize: chunkSize)
            case .config(let r): return try deflate(config: r)
            case .metrics(let r): return try deflate(metrics: r)
            }
        }
        let body = PyJSON.object(zip(d.items, records).map { ($0.key, .string($1.id)) }).dumps()
        return FlowerObject(type: "RecordDict", children: records, body: Array(body.utf8))
    }

    /// The `Message` object (its body carries the metadata with an empty message_id, and the error
    /// if any) with its content as the only child.
    public static func deflate(_ m: FlowerMessage, chunkSize: Int = FlowerProtocol.defaultChunkSize) throws -> FlowerObject {
        guard (m.content == nil) != (m.error == nil) else {
            throw FlowerError(.content, "a message carries either content or an error (not both, not neither)")
        }
        var p = Flwr_Proto_Message()
        var md = protoMetadata(m.metadata)
        md.messageID = ""
        p.metadata = md
        if let e = m.error {
            var pe = Flwr_Proto_Error()
            pe.code = e.code
            pe.reason = e.reason
            p.error = pe
        }
        let children = try m.content.map { [try deflate($0, chunkSize: chunkSize)] } ?? []
        var options = BinaryEncodingOptions()
        options.useDeterministicOrdering = true
        return FlowerObject(type: "Message", children: children, body: try p.serializedBytes(options: options))
    }

    // MARK: - Inflating

    /// Parses an object's head; checks the declared body length.
    static func head(_ content: [UInt8], id: String) throws -> (type: String, children: [String], body: ArraySlice<UInt8>) {
        guard let zero = content.firstIndex(of: 0) else {
            throw FlowerError(.content, "object \(id): no head/body divider")
        }
        let head = String(decoding: content[..<zero], as: UTF8.self)
        let parts = head.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, let length = Int(parts[2]) else {
            throw FlowerError(.content, "object \(id): head '\(head.prefix(200))' is not '<type> <children> <length>'")
        }
        let body = content[(zero + 1)...]
        guard body.count == length else {
            throw FlowerError(.content, "object \(id): body has \(body.count) bytes, the head says \(length)")
        }
        let children = parts[1].isEmpty ? [] : parts[1].split(separator: ",").map(String.init)
        return (String(parts[0]), children, body)
    }

    /// Rebuilds a `Message` (metadata from its body, content from its descendants) from the object
    /// contents of its tree, checking every id against the hash of its content.
    public static func inflateMessage(root: String, contents: [String: [UInt8]]) throws -> FlowerMessage {
        var inflater = Inflater(contents: contents)
        return try inflater.message(root)
    }

    struct Inflater {
        let contents: [String: [UInt8]]

        func object(_ id: String, expect type: String) throws -> (children: [String], body: ArraySlice<UInt8>) {
            guard let c = contents[id] else { throw FlowerError(.content, "object \(id) (\(type)) is missing") }
            guard FlowerObject.hash(c) == id else { throw FlowerError(.content, "object \(id): content hash does not match its id") }
            let h = try ObjectCodec.head(c, id: id)
            guard h.type == type else { throw FlowerError(.content, "object \(id) is a \(h.type), expected \(type)") }
            return (h.children, h.body)
        }

        func typeOf(_ id: String) throws -> String {
            guard let c = contents[id] else { throw FlowerError(.content, "object \(id) is missing") }
            return try ObjectCodec.head(c, id: id).type
        }

        mutating func message(_ id: String) throws -> FlowerMessage {
            let (children, body) = try object(id, expect: "Message")
            let p: Flwr_Proto_Message
            do { p = try Flwr_Proto_Message(serializedBytes: Array(body)) } catch {
                throw FlowerError(.content, "message \(id): body is not a protobuf Message (\(error))")
            }
            var md = ObjectCodec.metadata(p.metadata)
            md.messageID = id
            if p.hasError {
                guard children.isEmpty else { throw FlowerError(.content, "message \(id) has an error and content") }
                return FlowerMessage(metadata: md, content: nil, error: MessageError(code: p.error.code, reason: p.error.reason))
            }
            guard children.count == 1 else {
                throw FlowerError(.content, "message \(id) has \(children.count) content objects, expected 1")
            }
            return FlowerMessage(metadata: md, content: try recordDict(children[0]))
        }

        func refs(_ body: ArraySlice<UInt8>, id: String, what: String, children: [String]) throws -> [(String, String)] {
            guard case .object(let kvs) = try PyJSON.parse(body, what: "\(what) \(id)") else {
                throw FlowerError(.content, "\(what) \(id): body is not a JSON object")
            }
            var out: [(String, String)] = []
            for (k, v) in kvs {
                guard case .string(let ref) = v else { throw FlowerError(.content, "\(what) \(id): entry '\(k)' is not an object id") }
                guard children.contains(ref) else { throw FlowerError(.content, "\(what) \(id): entry '\(k)' refers to \(ref), not one of its children") }
                out.append((k, ref))
            }
            guard Set(out.map(\.1)) == Set(children) else {
                throw FlowerError(.content, "\(what) \(id): its children and its entries differ")
            }
            return out
        }

        func recordDict(_ id: String) throws -> RecordDict {
            let (children, body) = try object(id, expect: "RecordDict")
            var d = RecordDict()
            for (name, ref) in try refs(body, id: id, what: "RecordDict", children: children) {
                switch try typeOf(ref) {
                case "ArrayRecord": d[name] = .arrays(try arrayRecord(ref))
                case "ConfigRecord": d[name] = .config(try configRecord(ref))
                case "MetricRecord": d[name] = .metrics(try metricRecord(ref))
                case let t: throw FlowerError(.content, "record '\(name)' is a \(t), not an ArrayRecord, ConfigRecord or MetricRecord")
                }
            }
            return d
        }

        func arrayRecord(_ id: String) throws -> ArrayRecord {
            let (children, body) = try object(id, expect: "ArrayRecord")
            var r = ArrayRecord()
            for (name, ref) in try refs(body, id: id, what: "ArrayRecord", children: children) { r[name] = try array(ref, name: name) }
            return r
        }

        func array(_ id: String, name: String) throws -> FlowerArray {
            let (children, body) = try object(id, expect: "Array")
            guard case .object(let kvs) = try PyJSON.parse(body, what: "array '\(name)'") else {
                throw FlowerError(.content, "array '\(name)': body is not a JSON object")
            }
            var dtype: String?, stype: String?, shape: [Int]?, chunkIDs: [Int]?
            for (k, v) in kvs {
                switch (k, v) {
                case ("dtype", .string(let s)): dtype = s
                case ("stype", .string(let s)): stype = s
                case ("shape", .array(let xs)): shape = try xs.map { guard case .int(let d) = $0, d >= 0 else { throw FlowerError(.content, "array '\(name)': bad shape") }; return d }
                case ("arraychunk_ids", .array(let xs)): chunkIDs = try xs.map { guard case .int(let d) = $0 else { throw FlowerError(.content, "array '\(name)': bad chunk index") }; return d }
                default: break
                }
            }
            guard let dtype, let stype, let shape, let chunkIDs else {
                throw FlowerError(.content, "array '\(name)': body lacks dtype, shape, stype or arraychunk_ids")
            }
            var data: [UInt8] = []
            for i in chunkIDs {
                guard children.indices.contains(i) else {
                    throw FlowerError(.content, "array '\(name)': chunk index \(i) but \(children.count) chunks")
                }
                data += try object(children[i], expect: "ArrayChunk").body
            }
            return FlowerArray(dtype: dtype, shape: shape, stype: stype, data: data)
        }

        func configRecord(_ id: String) throws -> ConfigRecord {
            let (_, body) = try object(id, expect: "ConfigRecord")
            let p: Flwr_Proto_ConfigRecord
            do { p = try Flwr_Proto_ConfigRecord(serializedBytes: Array(body)) } catch {
                throw FlowerError(.content, "config record \(id): not a protobuf ConfigRecord (\(error))")
            }
            var r = ConfigRecord()
            for item in p.items {
                guard let v = item.value.value else { throw FlowerError(.content, "config '\(item.key)' has no value") }
                r[item.key] = ObjectCodec.value(v)
            }
            return r
        }

        func metricRecord(_ id: String) throws -> MetricRecord {
            let (_, body) = try object(id, expect: "MetricRecord")
            let p: Flwr_Proto_MetricRecord
            do { p = try Flwr_Proto_MetricRecord(serializedBytes: Array(body)) } catch {
                throw FlowerError(.content, "metric record \(id): not a protobuf MetricRecord (\(error))")
            }
            return try MetricRecord(p.items.map { item in
                guard let v = item.value.value else { throw FlowerError(.content, "metric '\(item.key)' has no value") }
                return (item.key, ObjectCodec.value(v))
            })
        }
    }

    // MARK: - Protobuf conversions

    static func configValue(_ v: RecordValue) -> Flwr_Proto_ConfigRecordValue.OneOf_Value {
        switch v {
        case .double(let d): return .double(d)
        case .int(let i): return .sint64(i)
        case .uint(let u): return .uint64(u)
        case .bool(let b): return .bool(b)
        case .string(let s): return .string(s)
        case .bytes(let b): return .bytes(Data(b))
        case .doubles(let xs): var l = Flwr_Proto_DoubleList(); l.vals = xs; return .doubleList(l)
        case .ints(let xs): var l = Flwr_Proto_SintList(); l.vals = xs; return .sintList(l)
        case .uints(let xs): var l = Flwr_Proto_UintList(); l.vals = xs; return .uintList(l)
        case .bools(let xs): var l = Flwr_Proto_BoolList(); l.vals = xs; return .boolList(l)
        case .strings(let xs): var l = Flwr_Proto_StringList(); l.vals = xs; return .stringList(l)
        case .bytesList(let xs): var l = Flwr_Proto_BytesList(); l.vals = xs.map { Data($0) }; return .bytesList(l)
        }
    }

    static func metricValue(_ v: RecordValue, key: String) throws -> Flwr_Proto_MetricRecordValue.OneOf_Value {
        switch v {
        case .double(let d): return .double(d)
        case .int(let i): return .sint64(i)
        case .uint(let u): return .uint64(u)
        case .doubles(let xs): var l = Flwr_Proto_DoubleList(); l.vals = xs; return .doubleList(l)
        case .ints(let xs): var l = Flwr_Proto_SintList(); l.vals = xs; return .sintList(l)
        case .uints(let xs): var l = Flwr_Proto_UintList(); l.vals = xs; return .uintList(l)
        default: throw FlowerError(.content, "metric '\(key)' is \(v); a MetricRecord holds numbers only")
        }
    }

    static func value(_ v: Flwr_Proto_ConfigRecordValue.OneOf_Value) -> RecordValue {
        switch v {
        case .double(let d): return .double(d)
        case .sint64(let i): return .int(i)
        case .uint64(let u): return .uint(u)
        case .bool(let b): return .bool(b)
        case .string(let s): return .string(s)
        case .bytes(let b): return .bytes([UInt8](b))
        case .doubleList(let l): return .doubles(l.vals)
        case .sintList(let l): return .ints(l.vals)
        case .uintList(let l): return .uints(l.vals)
        case .boolList(let l): return .bools(l.vals)
        case .stringList(let l): return .strings(l.vals)
        case .bytesList(let l): return .bytesList(l.vals.map { [UInt8]($0) })
        }
    }

    static func value(_ v: Flwr_Proto_MetricRecordValue.OneOf_Value) -> RecordValue {
        switch v {
        case .double(let d): return .double(d)
        case .sint64(let i): return .int(i)
        case .uint64(let u): return .uint(u)
        case .doubleList(let l): return .doubles(l.vals)
        case .sintList(let l): return .ints(l.vals)
        case .uintList(let l): return .uints(l.vals)
        }
    }

    static func protoMetadata(_ m: FlowerMetadata) -> Flwr_Proto_Metadata {
        var p = Flwr_Proto_Metadata()
        p.runID = m.runID
        p.messageID = m.messageID
        p.srcNodeID = m.srcNodeID
        p.dstNodeID = m.dstNodeID
        p.replyToMessageID = m.replyToMessageID
        p.groupID = m.groupID
        p.ttl = m.ttl
        p.messageType = m.messageType
        p.createdAt = m.createdAt
        if let t = m.srcTaskID { p.srcTaskID = t }
        if let t = m.dstTaskID { p.dstTaskID = t }
        return p
    }

    static func metadata(_ p: Flwr_Proto_Metadata) -> FlowerMetadata {
        var m = FlowerMetadata()
        m.runID = p.runID
        m.messageID = p.messageID
        m.srcNodeID = p.srcNodeID
        m.dstNodeID = p.dstNodeID
        m.replyToMessageID = p.replyToMessageID
        m.groupID = p.groupID
        m.ttl = p.ttl
        m.messageType = p.messageType
        m.createdAt = p.createdAt
        m.srcTaskID = p.hasSrcTaskID ? p.srcTaskID : nil
        m.dstTaskID = p.hasDstTaskID ? p.dstTaskID : nil
        return m
    }
}
