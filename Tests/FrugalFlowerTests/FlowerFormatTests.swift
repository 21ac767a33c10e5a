import Foundation
import Testing
@testable import FrugalFlower

/// NPY, object and record encodings against bytes made by flwr 1.42.0 and NumPy.
@Suite struct FlowerFormatTests {
    @Test func npyDecodesAndReencodesNumpyBytes() throws {
        let arrays = try Fixture.json("npy")["arrays"] as! [[String: Any]]
        #expect(arrays.count == 8)
        for a in arrays {
            let name = a["name"] as! String
            let bytes = Fixture.bytes(a["npy"])
            let npy = try NPYArray(decoding: bytes)
            #expect(npy.dtype.name == a["dtype"] as! String, "\(name)")
            #expect(npy.shape == a["shape"] as! [Int], "\(name)")
            #expect(npy.encoded() == bytes, "\(name): re-encoding differs from np.save")
            let expected = a["values"] as! [Double]
            #expect(npy.count == expected.count, "\(name)")
            if npy.dtype == .float32 {
                #expect(try npy.floats() == expected.map { Float($0) }, "\(name)")
                #expect(NPYArray(float32: try npy.floats(), shape: npy.shape).encoded() == bytes, "\(name)")
            } else {
                #expect(throws: (any Error).self, "\(name)") { _ = try npy.floats() }
            }
            if npy.dtype == .float64 {
                let values = npy.data.withUnsafeBytes { Array($0.bindMemory(to: Double.self)) }
                #expect(values == expected, "\(name)")
            }
        }
    }

    @Test func npyRejectsWhatItCannotRead() throws {
        let good = NPYArray(float32: [1, 2, 3], shape: [3]).encoded()
        func message(_ bytes: [UInt8]) -> String {
            do { _ = try NPYArray(decoding: bytes); return "" } catch { return "\(error)" }
        }
        #expect(message(Array("hello world".utf8)).contains("not an NPY array"))
        #expect(message(Array(good.dropLast(2))).contains("has 10 bytes"))
        var v9 = good; v9[6] = 9
        #expect(message(v9).contains("version 9.0"))
        let header = String(decoding: good[10..<128], as: UTF8.self)
        func with(_ h: String) -> [UInt8] { Array(good[0..<10]) + Array(h.utf8) + good[128...] }
        #expect(message(with(header.replacingOccurrences(of: "<f4", with: ">f4"))).contains("'>f4' is not supported"))
        #expect(message(with(header.replacingOccurrences(of: "False", with: "True "))).contains("Fortran order"))
        #expect(message(with(header.replacingOccurrences(of: "'shape': (3,)", with: "'shape': (4,)"))).contains("needs 16"))
    }

    @Test func pythonJSONDumps() {
        #expect(PyJSON.object([("a", .string("x")), ("b", .array([.int(1), .int(-2)]))]).dumps() == #"{"a": "x", "b": [1, -2]}"#)
        // ensure_ascii: everything outside ' '...'~' escaped, astral characters as surrogate pairs.
        #expect(PyJSON.string("naïve \"q\"\\\n\t\u{7F}😀").dumps() == #""na\u00efve \"q\"\\\n\t\u007f\ud83d\ude00""#)
        #expect(PyJSON.array([]).dumps() == "[]")
        let parsed = try? PyJSON.parse(Array(#"{"na\u00efve": [1, 2], "s": "\ud83d\ude00\n"}"#.utf8), what: "t")
        #expect(parsed == .object([("naïve", .array([.int(1), .int(2)])), ("s", .string("😀\n"))]))
    }

    /// The fixture message as the SuperLink would deliver it: rebuilt from its objects, and its
    /// content deflated again by Swift gives the same objects and ids.
    @Test func messageObjectsRoundTripWithFlower() throws {
        let f = try Fixture.json("objects")
        let root = f["root"] as! String
        var contents: [String: [UInt8]] = [:]
        for (id, b64) in f["objects"] as! [String: Any] { contents[id] = Fixture.bytes(b64) }
        let message = try ObjectCodec.inflateMessage(root: root, contents: contents)
        let md = f["metadata"] as! [String: Any]
        #expect(message.metadata.runID == (md["run_id"] as! NSNumber).uint64Value)
        #expect(message.metadata.messageID == root)
        #expect(message.metadata.messageType == "train")
        #expect(message.metadata.groupID == "3")
        #expect(message.metadata.createdAt == 1765000000.25)
        #expect(message.metadata.ttl == 43200)
        #expect(message.metadata.srcTaskID == 11)
        #expect(message.metadata.dstTaskID == nil)
        let content = try #require(message.content)
        #expect(content.keys == ["arrays", "config", "metrics"])

        let arrays = try #require(content.arrayRecords.first?.value)
        #expect(arrays.keys == ["conv.weight", "conv.bias", "naïve \"name\"", "copy"])
        #expect(try arrays["conv.weight"]!.npy().floats() == (0..<24).map { Float($0) * 0.5 })
        #expect(arrays["conv.weight"]!.shape == [2, 3, 4])
        #expect(try arrays["conv.bias"]!.npy().floats() == [Float](repeating: 0, count: 64))
        #expect(try arrays["naïve \"name\""]!.npy().floats() == [3.25])
        #expect(arrays["copy"] == arrays["conv.bias"])

        let config = try #require(content.configRecords.first?.value)
        #expect(config["lr"] == .double(0.05))
        #expect(config["local-steps"] == .int(5))
        #expect(config["name"] == .string("fixture ✓"))
        #expect(config["flag"] == .bool(true))
        #expect(config["blob"] == .bytes([0, 1, 255]))
        #expect(config["big"] == .uint(1 << 63 + 5))
        #expect(config["ints"] == .ints([1, -2, 3]))
        #expect(config["floats"] == .doubles([0.5, 1.5]))
        #expect(config["names"] == .strings(["a", "b"]))
        #expect(config["flags"] == .bools([true, false]))
        #expect(config["blobs"] == .bytesList([[0x78], [0x79, 0x7A]]))
        #expect(config["bigs"] == .uints([1 << 63, 1]))
        let metrics = try #require(content.metricRecords.first?.value)
        #expect(metrics.values.keys == ["loss", "n", "hist", "ks"])
        #expect(metrics["n"] == .int(7))
        #expect(metrics["hist"] == .doubles([1, 2]))

        // Deflated by Swift with the same chunk size: identical objects, ids and tree.
        var again = message
        again.metadata.messageID = ""
        let object = try ObjectCodec.deflate(again, chunkSize: f["chunk_size"] as! Int)
        #expect(object.id == root)
        let ours = Dictionary(uniqueKeysWithValues: object.postOrder.map { ($0.id, $0.content) })
        #expect(ours == contents)
        #expect(Self.tree(object.tree) == f["tree"] as! NSDictionary)
        // Post order: every object after its children.
        var seen = Set<String>()
        for (id, c) in object.postOrder {
            let head = try ObjectCodec.head(c, id: id)
            for child in head.children { #expect(seen.contains(child)) }
            seen.insert(id)
        }
    }

    static func tree(_ t: Flwr_Proto_ObjectTree) -> NSDictionary {
        ["id": t.objectID, "children": t.children.map { tree($0) }]
    }

    /// Replies built by Swift from the same metadata and content as flwr's are the same bytes.
    @Test func repliesMatchFlower() throws {
        let f = try Fixture.json("reply")
        let md = f["metadata"] as! [String: Any]
        var instruction = FlowerMetadata()
        instruction.runID = (md["run_id"] as! NSNumber).uint64Value
        instruction.srcNodeID = 1
        instruction.dstNodeID = (md["src_node_id"] as! NSNumber).uint64Value
        instruction.groupID = "3"
        instruction.messageType = "train"
        instruction.messageID = String(repeating: "ab", count: 32)
        instruction.srcTaskID = 11
        instruction.createdAt = 1765000000.25
        instruction.ttl = 1765000100.5 + 43099.75 - 1765000000.25
        let w = FlowerArray(float32: [1.0 / 3, 2.0 / 3, 1, 4.0 / 3], shape: [2, 2])
        let content = RecordDict([("arrays", .arrays(ArrayRecord([("w", w)]))),
                                  ("metrics", .metrics(try MetricRecord([("train_loss", .double(0.5)), ("num-examples", .int(100))])))])
        let reply = FlowerMessage.reply(to: instruction, content: content, now: 1765000100.5)
        #expect(reply.metadata.ttl == 43099.75)
        #expect(reply.metadata.dstTaskID == 11)
        #expect(reply.metadata.srcTaskID == nil)
        let expected = f["content_reply"] as! [String: Any]
        let object = try ObjectCodec.deflate(reply, chunkSize: 64)  // the fixtures' chunk size
        #expect(object.id == expected["root"] as! String)
        var theirs: [String: [UInt8]] = [:]
        for (id, b64) in expected["objects"] as! [String: Any] { theirs[id] = Fixture.bytes(b64) }
        #expect(Dictionary(uniqueKeysWithValues: object.postOrder.map { ($0.id, $0.content) }) == theirs)

        instruction.messageType = "query"
        instruction.messageID = String(repeating: "cd", count: 32)
        let error = FlowerMessage.reply(to: instruction, content: nil,
                                        error: MessageError(code: 2, reason: "Frugal device: unsupported 'query'"), now: 1765000100.5)
        let errorObject = try ObjectCodec.deflate(error)
        let expectedError = f["error_reply"] as! [String: Any]
        #expect(errorObject.id == expectedError["root"] as! String)
        #expect(errorObject.children.isEmpty)
        #expect(throws: (any Error).self) { _ = try ObjectCodec.deflate(FlowerMessage(metadata: instruction, content: nil)) }
    }

    @Test func corruptObjectsAreRejectedWithTheirIds() throws {
        let f = try Fixture.json("objects")
        let root = f["root"] as! String
        var contents: [String: [UInt8]] = [:]
        for (id, b64) in f["objects"] as! [String: Any] { contents[id] = Fixture.bytes(b64) }
        func message(_ c: [String: [UInt8]]) -> String {
            do { _ = try ObjectCodec.inflateMessage(root: root, contents: c); return "" } catch { return "\(error)" }
        }
        // A chunk whose bytes changed no longer matches its id.
        let chunk = contents.first { String(decoding: $0.value.prefix(10), as: UTF8.self) == "ArrayChunk" }!.key
        var tampered = contents
        tampered[chunk]![tampered[chunk]!.count - 1] ^= 1
        #expect(message(tampered).contains("object \(chunk): content hash does not match"))
        var missing = contents
        missing[chunk] = nil
        #expect(message(missing).contains("object \(chunk)"))
        #expect(message(missing).contains("missing"))
        #expect(throws: (any Error).self) { _ = try ObjectCodec.head(Array("Array a 5".utf8), id: "x") }
        if let e = thrown({ try ObjectCodec.head(Array("Array  5".utf8) + [0, 1, 2], id: "x") }) {
            #expect("\(e)" == "object x: body has 2 bytes, the head says 5")
        }
    }

    @Test func metricRecordsHoldNumbersOnly() {
        if let e = thrown({ try MetricRecord([("name", .string("x"))]) }) {
            #expect("\(e)".contains("metric 'name'"))
        }
    }
}
