import Foundation
import Testing
import FrugalCore
@testable import FrugalNN

/// Safetensors reader, writer and sharded checkpoints, checked against files written by the Python
/// `safetensors` library (scripts/make_safetensors_fixture.py).
@Suite struct SafetensorsTests {
    static func bytes(of floats: [Float], as dtype: DType) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: floats.count * dtype.size)
        floats.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBytes { dst in
                if let s = src.baseAddress { HalfConversion.fromFloat(s, count: src.count, dtype: dtype, into: dst.baseAddress!) }
            }
        }
        return out
    }

    @Test func roundTripAllDTypes() throws {
        let dir = try FormatTempDir()
        let url = dir.file("rt.safetensors")
        let w32: [Float] = [1, -2.5, 3.25, 0, .infinity, -0.0]
        let w16: [Float] = [0.5, -1, 65504, 1e-4]  // 1e-4 rounds in f16
        let wbf: [Float] = [1.5, -2.25, 0.1, 3e38]  // 0.1 rounds in bf16
        let raw16 = Self.bytes(of: w16, as: .float16)
        try SafetensorsWriter.write([
            .init(name: "w32", shape: [2, 3], floats: w32),
            .init(name: "w16", dtype: .float16, shape: [4], bytes: raw16),
            .init(name: "wbf", shape: [2, 2], floats: wbf, storedAs: .bfloat16),
            .init(name: "data", dtype: .float32, shape: [1], data: Data(Self.bytes(of: [7], as: .float32))),
            .init(name: "empty", shape: [0, 5], floats: []),
            .init(name: "scalar", shape: [], floats: [42]),
        ], metadata: ["format": "pt", "what": "round trip"], to: url)

        let f = try SafetensorsFile(url: url)
        #expect(Set(f.names) == ["w32", "w16", "wbf", "data", "empty", "scalar"])
        #expect(f.metadata == ["format": "pt", "what": "round trip"])
        #expect(try f.info("w32").dtype == .float32 && f.info("w32").shape == [2, 3])
        #expect(try f.info("w16").dtype == .float16 && f.info("wbf").dtype == .bfloat16)
        #expect(try f.info("wbf").dtypeString == "BF16" && f.info("wbf").byteCount == 8)
        #expect(sameFloatBits(try f.floats("w32"), w32))
        #expect(try f.floats("w16") == w16.map { HalfConversion.f16ToFloat(HalfConversion.floatToF16($0)) })
        #expect(try f.floats("wbf") == wbf.map { HalfConversion.bf16ToFloat(HalfConversion.floatToBF16($0)) })
        #expect(try f.floats("wbf")[2] != 0.1)  // rounding actually happened
        #expect(Array(try f.rawBytes("w16")) == raw16)
        #expect(try f.floats("data") == [7])
        #expect(try f.floats("empty").isEmpty && f.info("empty").elementCount == 0)
        #expect(try f.floats("scalar") == [42] && f.info("scalar").shape == [])
        // byteRange is absolute; dataOffsets relative to the data region.
        let info = try f.info("w32")
        #expect(info.byteRange.lowerBound == f.dataOffset + info.dataOffsets.lowerBound)
        #expect(f.dataOffset % 8 == 0)  // header padded to 8 bytes
        var out = [Float](repeating: 0, count: 4)
        try out.withUnsafeMutableBufferPointer { try f.copyFloats("wbf", into: $0) }
        #expect(out == (try f.floats("wbf")))
        #expect(throws: SafetensorsError.self) { try out.withUnsafeMutableBufferPointer { try f.copyFloats("w32", into: $0) } }
    }

    @Test func roundTripMatchesPythonBytes() throws {
        // The same tensors as make_safetensors_fixture.py's roundtrip(): our bytes must equal the library's.
        let tensors: [SafetensorsWriter.Tensor] = [
            .init(name: "layer.weight", shape: [2, 3], floats: (0..<6).map { Float($0) * 0.5 - 1 }),
            .init(name: "layer.bias", shape: [4], floats: [1, -0.5, 0.25, 2048], storedAs: .float16),
            .init(name: "emb", shape: [3, 2], floats: [1, 2, -3, 0.5, 0.125, -8], storedAs: .bfloat16),
            .init(name: "a", shape: [1], floats: [7]),
        ]
        let python = try FormatFixtures.bytes("python_roundtrip", "safetensors")
        #expect(try SafetensorsWriter.serialize(tensors, metadata: ["format": "pt"]) == python)
        let dir = try FormatTempDir()
        try SafetensorsWriter.write(tensors, metadata: ["format": "pt"], to: dir.file("m.safetensors"))
        #expect([UInt8](try Data(contentsOf: dir.file("m.safetensors"))) == python)
        // Tuple convenience form.
        try SafetensorsWriter.write([(name: "x", dtype: .float32, shape: [2], data: Data(Self.bytes(of: [1, 2], as: .float32)))],
                                    to: dir.file("t.safetensors"))
        #expect(try SafetensorsFile(url: dir.file("t.safetensors")).floats("x") == [1, 2])
    }

    @Test func readsFileWrittenByPython() throws {
        let f = try SafetensorsFile(url: FormatFixtures.url("python_mixed", "safetensors"))
        #expect(Set(f.names) == ["f32", "f16", "bf16", "i64", "i32", "u8", "mask", "f64", "scalar", "empty"])
        #expect(f.metadata == ["format": "pt", "note": "mixed \"dtypes\"\n"])
        #expect(try f.info("f32").shape == [2, 3] && f.info("f32").storageType == .f32)
        #expect(try f.floats("f32") == [1.0, -2.5, 3.25, 0.0, 1e-3, -7.0])
        #expect(try f.floats("f16") == [0.5, -1.0, 65504.0, 6.103515625e-05])
        #expect(try f.floats("bf16") == [1.5, -2.25, 0.09375, HalfConversion.bf16ToFloat(HalfConversion.floatToBF16(3.0e38))])
        #expect(try f.info("i64").dtype == nil && f.info("i64").dtypeString == "I64")
        #expect(try f.floats("i64") == [-3, 0, 7, Float(1 << 40)])
        #expect(try f.floats("i32") == [-1, 2, 3, -4] && f.info("i32").shape == [2, 2])
        #expect(try f.floats("u8") == [0, 1, 255])
        #expect(try f.floats("mask") == [1, 0, 1] && f.info("mask").storageType == .bool)
        #expect(try f.floats("f64") == [0.25, -1])
        #expect(try f.floats("scalar") == [42] && f.info("scalar").shape == [])
        #expect(try f.info("empty").shape == [0, 3] && f.floats("empty").isEmpty)
        let i64 = try f.rawBytes("i64")
        #expect(i64.count == 32 && i64.loadUnaligned(fromByteOffset: 24, as: Int64.self) == 1 << 40)
    }

    @Test func rejectsWhatPythonRejects() throws {
        let dir = try FormatFixtures.url("python_rejects", "")
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".safetensors") }.sorted()
        #expect(names.count >= 18)
        for name in names {
            let url = dir.appendingPathComponent(name)
            let e = #expect(throws: SafetensorsError.self, "\(name) was accepted") { try SafetensorsFile(url: url) }
            #expect(e?.message.contains(name) == true, "message does not name the file: \(e?.message ?? "")")
        }
        // Specific messages.
        func message(_ name: String) -> String {
            do { _ = try SafetensorsFile(url: dir.appendingPathComponent(name + ".safetensors")); return "" } catch { return "\(error)" }
        }
        #expect(message("hole").contains("'b'") && message("hole").contains("hole"))
        #expect(message("overlap").contains("overlap"))
        #expect(message("trailing_bytes").contains("not fully covered"))
        #expect(message("size_mismatch").contains("needs 12"))
        #expect(message("negative_dim").contains("non-negative"))
        #expect(message("overflow_shape").contains("overflows"))
        #expect(message("unknown_dtype").contains("unknown dtype 'Q4'"))
        #expect(message("header_too_large").contains("exceeds the limit"))
        #expect(message("header_past_end").contains("past the end of the file"))
    }

    @Test func unsupportedConversionAndMissingTensor() throws {
        // A C64 tensor is listed but has no float conversion.
        let header = #"{"z":{"dtype":"C64","shape":[1],"data_offsets":[0,8]},"e4":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[8,12]},"e5":{"dtype":"F8_E5M2","shape":[2],"data_offsets":[12,14]}}"#
        var bytes: [UInt8] = []
        bytes.appendU64(UInt64(header.utf8.count))
        bytes += Array(header.utf8) + [UInt8](repeating: 0, count: 8) + [0x38, 0xB8, 0x7E, 0x01] + [0x3C, 0xC0]
        let f = try SafetensorsFile(bytes: bytes, name: "c64.safetensors")
        #expect(try f.info("z").storageType == .c64 && f.info("z").dtype == nil)
        let e = #expect(throws: SafetensorsError.self) { try f.floats("z") }
        #expect(e?.message == "unsupported dtype C64 for tensor 'z' in c64.safetensors: no conversion to float32")
        // float8: e4m3fn 0x38 = 1, 0xB8 = -1, 0x7E = 448, 0x01 = 2^-9; e5m2 0x3C = 1, 0xC0 = -2.
        #expect(try f.floats("e4") == [1, -1, 448, 0x1p-9])
        #expect(try f.floats("e5") == [1, -2])
        #expect(SafetensorsFile.float8E4M3FN(0x7F).isNaN)
        let m = #expect(throws: SafetensorsError.self) { try f.info("nope") }
        #expect(m?.message == "no tensor named 'nope' in c64.safetensors")
    }

    @Test func writerValidatesInput() throws {
        let dir = try FormatTempDir()
        let url = dir.file("bad.safetensors")
        #expect(throws: SafetensorsError.self) { try SafetensorsWriter.write([.init(name: "a", shape: [3], floats: [1, 2])], to: url) }
        #expect(throws: SafetensorsError.self) { try SafetensorsWriter.write([.init(name: "a", dtype: .float16, shape: [2], bytes: [0, 0, 0])], to: url) }
        #expect(throws: SafetensorsError.self) { try SafetensorsWriter.write([.init(name: "a", shape: [-1], floats: [])], to: url) }
        #expect(throws: SafetensorsError.self) {
            try SafetensorsWriter.write([.init(name: "a", shape: [1], floats: [1]), .init(name: "a", shape: [1], floats: [2])], to: url)
        }
        #expect(throws: SafetensorsError.self) { try SafetensorsWriter.write([.init(name: "__metadata__", shape: [1], floats: [1])], to: url) }
        #expect(!FileManager.default.fileExists(atPath: url.path))
    }

    @Test func atomicReplaceLeavesNoTemporaryFiles() throws {
        let dir = try FormatTempDir()
        let url = dir.file("m.safetensors")
        try SafetensorsWriter.write([.init(name: "v", shape: [2], floats: [1, 2])], to: url)
        try SafetensorsWriter.write([.init(name: "v", shape: [3], floats: [3, 4, 5])], to: url)
        #expect(try SafetensorsFile(url: url).floats("v") == [3, 4, 5])
        // A failed write keeps the old file and removes its temporary file.
        #expect(throws: SafetensorsError.self) { try SafetensorsWriter.write([.init(name: "v", shape: [9], floats: [1])], to: url) }
        #expect(throws: (any Error).self) {
            try SafetensorsWriter.write([.init(name: "v", shape: [1], floats: [1])], to: dir.file("no/such/dir/x.safetensors"))
        }
        #expect(try SafetensorsFile(url: url).floats("v") == [3, 4, 5])
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path) == ["m.safetensors"])
    }

    @Test func shardedCheckpoint() throws {
        let dir = try FormatTempDir()
        let tensors = (0..<10).map { i in SafetensorsWriter.Tensor(name: "layers.\(i).weight", shape: [8, 8], floats: [Float](repeating: Float(i), count: 64)) }
        // 256 bytes each, 1000 per shard -> 3 + 3 + 3 + 1.
        let files = try SafetensorsWriter.writeSharded(tensors, metadata: ["format": "pt"], to: dir.url, maxShardBytes: 1000)
        #expect(files.map(\.lastPathComponent) == ["model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
                                                   "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors",
                                                   "model.safetensors.index.json"])
        for opened in [dir.url, dir.file("model.safetensors.index.json")] {
            let c = try SafetensorsCheckpoint(url: opened)
            #expect(c.files.count == 4)
            #expect(c.names == tensors.map(\.name))
            #expect(c.indexMetadata["total_size"] == "2560")
            #expect(c.metadata["format"] == "pt")
            for i in 0..<10 { #expect(try c.floats("layers.\(i).weight") == [Float](repeating: Float(i), count: 64)) }
            #expect(try c.file(containing: "layers.9.weight").url.lastPathComponent == "model-00004-of-00004.safetensors")
            #expect(try c.info("layers.4.weight").shape == [8, 8])
            #expect(throws: SafetensorsError.self) { try c.floats("nope") }
        }
        // The index is the transformers shape.
        let index = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.file("model.safetensors.index.json"))) as? [String: Any]
        #expect((index?["metadata"] as? [String: Any])?["total_size"] as? Int == 2560)
        #expect((index?["weight_map"] as? [String: String])?["layers.3.weight"] == "model-00002-of-00004.safetensors")

        // Everything in one shard: a plain model.safetensors, no index.
        let single = try FormatTempDir()
        let one = try SafetensorsWriter.writeSharded(tensors, to: single.url, maxShardBytes: 1 << 20)
        #expect(one.map(\.lastPathComponent) == ["model.safetensors"])
        #expect(try SafetensorsCheckpoint(url: single.url).names.count == 10)
        #expect(try SafetensorsCheckpoint(url: single.file("model.safetensors")).files.count == 1)
    }

    @Test func shardedCheckpointErrors() throws {
        let dir = try FormatTempDir()
        try SafetensorsWriter.write([.init(name: "a", shape: [1], floats: [1])], to: dir.file("s1.safetensors"))
        try SafetensorsWriter.write([.init(name: "b", shape: [1], floats: [2])], to: dir.file("s2.safetensors"))
        func index(_ map: String) throws -> URL {
            let u = dir.file("model.safetensors.index.json")
            try Data(#"{"metadata":{"total_size":8},"weight_map":\#(map)}"#.utf8).write(to: u)
            return u
        }
        #expect(try SafetensorsCheckpoint(url: index(#"{"a":"s1.safetensors","b":"s2.safetensors"}"#)).names == ["a", "b"])
        let wrong = #expect(throws: SafetensorsError.self) { try SafetensorsCheckpoint(url: index(#"{"a":"s2.safetensors","b":"s2.safetensors"}"#)) }
        #expect(wrong?.message.contains("'a'") == true)
        #expect(throws: (any Error).self) { try SafetensorsCheckpoint(url: index(#"{"a":"s1.safetensors","b":"s3.safetensors"}"#)) }
        #expect(throws: SafetensorsError.self) { try SafetensorsCheckpoint(url: index(#"{"a":"../s1.safetensors"}"#)) }
        #expect(throws: SafetensorsError.self) { try SafetensorsCheckpoint(url: index(#"{"a":1}"#)) }
        #expect(throws: SafetensorsError.self) { try SafetensorsCheckpoint(url: index(#"[]"#)) }
        // A tensor in two shards (no index: every *.safetensors file is a shard).
        try FileManager.default.removeItem(at: dir.file("model.safetensors.index.json"))
        try SafetensorsWriter.write([.init(name: "a", shape: [1], floats: [3])], to: dir.file("s3.safetensors"))
        let dup = #expect(throws: SafetensorsError.self) { try SafetensorsCheckpoint(url: dir.url) }
        #expect(dup?.message.contains("two shards") == true)
        #expect(throws: SafetensorsError.self) { try SafetensorsCheckpoint(url: dir.file("missing")) }
    }

    /// Leaves files for `scripts/make_safetensors_fixture.py --check DIR` when FRUGAL_SAFETENSORS_EXPORT=DIR;
    /// always checks that we read them back.
    @Test func writesFilesForPythonCheck() throws {
        let tmp = try FormatTempDir()
        let dir = ProcessInfo.processInfo.environment["FRUGAL_SAFETENSORS_EXPORT"].map { URL(fileURLWithPath: $0) } ?? tmp.url
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try SafetensorsWriter.write([
            .init(name: "w32", shape: [2, 3], floats: [0.5, -1.5, 2, 3, -4, 0]),
            .init(name: "w16", shape: [4], floats: [1, -0.5, 0.25, 2048], storedAs: .float16),
            .init(name: "wbf", shape: [2, 2], floats: [1, 2, -3, 0.5], storedAs: .bfloat16),
            .init(name: "scalar", shape: [], floats: [3.5]),
            .init(name: "empty", shape: [0, 4], floats: []),
        ], metadata: ["format": "pt", "writer": "frugal"], to: dir.appendingPathComponent("frugal_written.safetensors"))
        let tensors = (0..<10).map { i in SafetensorsWriter.Tensor(name: "layers.\(i).weight", shape: [8, 8], floats: [Float](repeating: Float(i), count: 64)) }
        try SafetensorsWriter.writeSharded(tensors, metadata: ["format": "pt"], to: dir.appendingPathComponent("sharded"), maxShardBytes: 600)
        #expect(try SafetensorsFile(url: dir.appendingPathComponent("frugal_written.safetensors")).floats("w16") == [1, -0.5, 0.25, 2048])
        #expect(try SafetensorsCheckpoint(url: dir.appendingPathComponent("sharded")).files.count == 5)
    }

    // MARK: Fuzzing

    /// Random headers built from pieces (lying offsets and shapes, giant numbers, odd JSON) and
    /// mutations of valid files (byte flips, truncations, header-length lies). Every case must
    /// either parse into a self-consistent file or throw `SafetensorsError`.
    @Test func fuzzHeaders() throws {
        var rng = FormatsRNG(seed: ProcessInfo.processInfo.environment["FRUGAL_FUZZ_SEED"].flatMap { UInt64($0) } ?? 0x5AFE_7E45)
        var parsed = 0, rejected = 0
        let seeds: [[UInt8]] = [
            try FormatFixtures.bytes("python_mixed", "safetensors"),
            try FormatFixtures.bytes("python_roundtrip", "safetensors"),
        ]
        let numbers = ["0", "1", "2", "3", "4", "8", "12", "16", "-1", "1.0", "1e3", "18446744073709551615",
                       "9223372036854775807", "9223372036854775808", "4294967296", "99999999999999999999999", "00", "-0"]
        let dtypes = SafetensorsDType.allCases.map(\.rawValue) + ["f32", "", "Q4_0"]

        /// A header that is valid, then with some probability made to lie (a shape entry, an offset,
        /// a dtype, a missing field, a wrong data length).
        func randomHeader() -> [UInt8] {
            var entries: [[String]] = []
            var offset = 0
            let known = SafetensorsDType.allCases
            for _ in 0..<Int.random(in: 0...4, using: &rng) {
                let dt = known.randomElement(using: &rng)!
                var shape = (0..<Int.random(in: 0...3, using: &rng)).map { _ in Int.random(in: 0...4, using: &rng) }
                if dt.bitSize < 8 { shape = [2 * Int.random(in: 0...3, using: &rng)] }
                let size = shape.reduce(1, *) * dt.bitSize / 8
                entries.append(["\"dtype\":\"\(dt.rawValue)\"", "\"shape\":[\(shape.map(String.init).joined(separator: ","))]",
                                "\"data_offsets\":[\(offset),\(offset + size)]"])
                offset += size
            }
            var dataLength = offset
            if !entries.isEmpty && Bool.random(using: &rng) {
                let i = Int.random(in: 0..<entries.count, using: &rng)
                switch Int.random(in: 0..<6, using: &rng) {
                case 0: entries[i][1] = "\"shape\":[\(numbers.randomElement(using: &rng)!),\(numbers.randomElement(using: &rng)!)]"
                case 1: entries[i][2] = "\"data_offsets\":[\(numbers.randomElement(using: &rng)!),\(numbers.randomElement(using: &rng)!)]"
                case 2: entries[i][0] = "\"dtype\":\"\(dtypes.randomElement(using: &rng)!)\""
                case 3: entries[i].remove(at: Int.random(in: 0..<3, using: &rng))
                case 4: dataLength += Int.random(in: -3...3, using: &rng)
                default: entries[i].shuffle(using: &rng)
                }
            }
            var parts = entries.enumerated().map { "\"t\($0.offset)\":{\($0.element.joined(separator: ","))}" }
            if Int.random(in: 0..<4, using: &rng) == 0, !parts.isEmpty { parts.append(parts[0]) }  // duplicate name
            if Int.random(in: 0..<3, using: &rng) == 0 { parts.insert(#""__metadata__":{"k":"v"}"#, at: 0) }
            var json = Array("{\(parts.joined(separator: ","))}".utf8)
            while json.count % 8 != 0 { json.append(0x20) }
            var out: [UInt8] = []
            out.appendU64(UInt64(json.count))
            out += json
            out += [UInt8](repeating: 0xAB, count: max(0, dataLength))
            return out
        }

        let dump = ProcessInfo.processInfo.environment["FRUGAL_SAFETENSORS_FUZZ_DUMP"].map { URL(fileURLWithPath: $0) }
        if let dump { try FileManager.default.createDirectory(at: dump, withIntermediateDirectories: true) }
        for _ in 0..<4000 {
            var b: [UInt8]
            if Bool.random(using: &rng) {
                b = randomHeader()
            } else {
                b = seeds.randomElement(using: &rng)!
                let headerLen = Int(b.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
                for _ in 0..<Int.random(in: 1...3, using: &rng) {
                    if b.isEmpty { break }
                    switch Int.random(in: 0..<5, using: &rng) {
                    case 0: let i = Int.random(in: 0..<min(b.count, 8 + headerLen), using: &rng); b[i] ^= UInt8(1 << Int.random(in: 0..<8, using: &rng))
                    case 1: let i = Int.random(in: 0..<min(b.count, 8 + headerLen), using: &rng); b[i] = UInt8.random(in: 0x20...0x7E, using: &rng)
                    case 2: b = Array(b.prefix(Int.random(in: 0..<b.count, using: &rng)))
                    case 3 where b.count >= 8: b.putU64([0, 1, 7, UInt64(headerLen - 8), UInt64(headerLen + 8), UInt64(b.count), 1 << 40, UInt64.max].randomElement(using: &rng)!, at: 0)
                    default: b += [UInt8](repeating: 0, count: Int.random(in: 1...16, using: &rng))
                    }
                }
            }
            var accepted = false
            do {
                let f = try SafetensorsFile(bytes: b, name: "fuzz")
                parsed += 1
                accepted = true
                try checkConsistent(f, size: b.count)
            } catch is SafetensorsError {
                rejected += 1
            }
            if let dump {
                // For `make_safetensors_fixture.py --differential DIR`: the case and our verdict.
                let name = String(format: "%05d-%@.safetensors", parsed + rejected, accepted ? "ok" : "err")
                try Data(b).write(to: dump.appendingPathComponent(name))
            }
        }
        print("safetensors fuzz: \(parsed) parsed, \(rejected) rejected")
        #expect(parsed > 500 && rejected > 1000, "parsed \(parsed), rejected \(rejected)")
    }

    func checkConsistent(_ f: SafetensorsFile, size: Int) throws {
        var covered = 0
        for t in f.tensors.sorted(by: { $0.dataOffsets.lowerBound < $1.dataOffsets.lowerBound || ($0.dataOffsets.lowerBound == $1.dataOffsets.lowerBound && $0.dataOffsets.upperBound < $1.dataOffsets.upperBound) }) {
            #expect(t.dataOffsets.lowerBound == covered)
            covered = t.dataOffsets.upperBound
            #expect(t.byteRange.upperBound <= size)
            #expect(t.elementCount * t.storageType.bitSize == 8 * t.byteCount)
            #expect(t.shape.reduce(1, *) == t.elementCount)
            if t.storageType.convertsToFloat {
                #expect(try f.floats(t.name).count == t.elementCount)
            } else {
                #expect(throws: SafetensorsError.self) { try f.floats(t.name) }
            }
            #expect(try f.rawBytes(t.name).count == t.byteCount)
        }
        #expect(f.dataOffset + covered == size)
    }
}
