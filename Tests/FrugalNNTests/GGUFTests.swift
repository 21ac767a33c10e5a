import Foundation
import Testing
import FrugalCore
@testable import FrugalNN

/// GGUF reader and dequantisation, checked against fixtures made by the reference `gguf` package
/// (scripts/make_gguf_fixture.py).
@Suite struct GGUFTests {
    static let realFile = URL(fileURLWithPath: (ProcessInfo.processInfo.environment["FRUGAL_DATA"]
        ?? NSString(string: "~/.cache/frugal-data").expandingTildeInPath) + "/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf")

    static func expected() throws -> HeaderJSON {
        let data = try Data(contentsOf: FormatFixtures.url("tiny_gguf_expected", "json"))
        return try data.withUnsafeBytes { try HeaderJSON.parse($0) }
    }

    static func member(_ j: HeaderJSON, _ key: String) -> HeaderJSON? {
        guard case let .object(m) = j else { return nil }
        return m.first { $0.key == key }?.value
    }

    static func typeName(_ t: GGUFValueType) -> String { "\(t)".uppercased() }

    /// Leaves of a (possibly nested) array value, checking the element types against `types`
    /// (gguf-py lists the nested types and flattens the values).
    static func leaves(_ v: GGUFValue, _ types: ArraySlice<String>) -> [GGUFValue]? {
        guard let t = types.first else { return nil }
        if t == "ARRAY" {
            guard case let .array(et, items) = v, types.count >= 2, typeName(et) == types[types.startIndex + 1] else { return nil }
            var out: [GGUFValue] = []
            for x in items { guard let l = leaves(x, types.dropFirst()) else { return nil }; out += l }
            return out
        }
        return typeName(v.type) == t ? [v] : nil
    }

    static func scalarMatches(_ v: GGUFValue, _ j: HeaderJSON) -> Bool {
        switch (v, j) {
        case let (.string(s), .string(js)): return s == js
        case let (.bool(b), .bool(jb)): return b == jb
        case let (.float32(f), .number(text)): return Double(text) == Double(f)
        case let (.float64(d), .number(text)): return Double(text) == d
        case let (.uint64(u), .number(text)): return String(u) == text
        case let (_, .number(text)): return v.intValue.map(String.init) == text
        default: return false
        }
    }

    @Test func tinyFileMatchesReferenceReader() throws {
        let g = try GGUFFile(url: FormatFixtures.url("tiny", "gguf"))
        let exp = try Self.expected()
        #expect(g.version == Self.member(exp, "version")?.exactInt)
        #expect(g.alignment == Self.member(exp, "alignment")?.exactInt)
        #expect(g.dataOffset == Self.member(exp, "data_offset")?.exactInt)
        #expect(g.fileSize == Self.member(exp, "file_size")?.exactInt)

        guard case let .object(meta)? = Self.member(exp, "metadata") else { Issue.record("no metadata"); return }
        #expect(g.metadataKeys == meta.map(\.key))
        for m in meta {
            let value = try #require(g.metadata[m.key], "missing key \(m.key)")
            guard case let .array(typeList)? = Self.member(m.value, "types"), let expValue = Self.member(m.value, "value") else {
                Issue.record("bad expectation for \(m.key)"); continue
            }
            let types = typeList.compactMap(\.stringValue)[...]
            let got = try #require(Self.leaves(value, types), "type mismatch for \(m.key): \(value.typeDescription) vs \(types)")
            if case let .array(items) = expValue {
                #expect(got.count == items.count, "\(m.key)")
                #expect(zip(got, items).allSatisfy { Self.scalarMatches($0, $1) }, "value mismatch for \(m.key)")
            } else {
                #expect(got.count == 1 && Self.scalarMatches(got[0], expValue), "value mismatch for \(m.key): \(value)")
            }
        }

        guard case let .array(tensors)? = Self.member(exp, "tensors") else { Issue.record("no tensors"); return }
        #expect(g.names == tensors.compactMap { Self.member($0, "name")?.stringValue })
        let refs = try SafetensorsFile(url: FormatFixtures.url("tiny_gguf_ref", "safetensors"))
        for t in tensors {
            let name = try #require(Self.member(t, "name")?.stringValue)
            let info = try g.info(name)
            guard case let .array(dims)? = Self.member(t, "dims") else { Issue.record("dims"); continue }
            #expect(info.dims == dims.compactMap(\.exactInt), "\(name)")
            #expect(info.shape == Array(info.dims.reversed()))
            #expect(info.type.name == Self.member(t, "type")?.stringValue, "\(name)")
            #expect(info.offset == Self.member(t, "offset")?.exactInt, "\(name)")
            #expect(info.byteCount == Self.member(t, "bytes")?.exactInt, "\(name)")
            #expect(info.byteRange.lowerBound == g.dataOffset + info.offset)
            // Dequantisation is bit-exact with gguf-py.
            let ref = try refs.info(name)
            #expect(ref.shape == info.shape, "\(name)")
            #expect(sameFloatBits(try g.floats(name), try refs.floats(name)), "dequantised \(name) differs from gguf-py")
        }
        // All quantisation formats of the brief are in the fixture.
        let types = Set(g.tensors.map(\.type))
        for t: GGMLType in [.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K] {
            #expect(types.contains(t), "fixture lacks \(t.name)")
        }
    }

    @Test func nestedArraysAndTypedHelpers() throws {
        let g = try GGUFFile(url: FormatFixtures.url("tiny", "gguf"))
        #expect(g.metadata["test.nested"] == .array(.array, [.array(.int32, [.int32(1), .int32(2)]), .array(.int32, [.int32(3)]),
                                                              .array(.int32, [.int32(4), .int32(5), .int32(6)])]))
        #expect(g.metadata["test.nested_str"] == .array(.array, [.array(.string, [.string("x"), .string("y")]),
                                                                  .array(.string, [.string("z")])]))
        #expect(try g.int("test.u32") == 4_000_000_000)
        #expect(try g.int("test.i64") == -9_000_000_000_000_000_000)
        #expect(throws: GGUFError.self) { try g.int("test.u64") }
        #expect(try g.double("test.f64") == -2.718281828459045)
        #expect(try g.float("test.f32") == 0.1)
        #expect(try g.bool("test.bool_true") == true)
        #expect(try g.bool("test.bool_false") == false)
        #expect(try g.string("test.string") == "héllo ✓ gguf")
        #expect(try g.stringArray("test.arr_str") == ["a", "", "ü b"])
        #expect(try g.intArray("test.arr_u16") == [1, 2, 65535])
        #expect(try g.floatArray("test.arr_f32") == [0.5, -1.25])
        #expect(try g.string("no.such.key") == nil)
        #expect(g.architecture == "tinytest")
        let e = #expect(throws: GGUFError.self) { try g.string("test.u8") }
        #expect(e?.message.contains("test.u8") == true && e?.message.contains("uint8") == true)
        #expect(throws: GGUFError.self) { try g.stringArray("test.arr_i32") }

        let tok = try g.tokenizerData()
        #expect(tok.model == "gpt2")
        #expect(tok.tokens == ["<unk>", "a", "b", "ab", "Ġc"])
        #expect(tok.tokenTypes == [2, 1, 1, 1, 1])
        #expect(tok.merges == ["a b", "Ġ c"])
        #expect(tok.bosTokenID == 1 && tok.eosTokenID == 2 && tok.addBOS == false)
        #expect(tok.scores == nil)
    }

    @Test func tensorAccessors() throws {
        let g = try GGUFFile(url: FormatFixtures.url("tiny", "gguf"))
        let refs = try SafetensorsFile(url: FormatFixtures.url("tiny_gguf_ref", "safetensors"))
        // Row slices dequantise the same values as the whole tensor.
        let q8 = try g.info("q8_0")
        #expect(q8.rowLength == 64 && q8.rowCount == 3 && q8.rowByteCount == 2 * 34)
        let all = try refs.floats("q8_0")
        #expect(sameFloatBits(try g.floats("q8_0", rows: 1..<3), Array(all[64...])))
        #expect(throws: GGUFError.self) { try g.floats("q8_0", rows: 2..<4) }
        // copyFloats checks the destination size.
        var buf = [Float](repeating: 0, count: q8.elementCount)
        try buf.withUnsafeMutableBufferPointer { try g.copyFloats("q8_0", into: $0) }
        #expect(sameFloatBits(buf, all))
        var small = [Float](repeating: 0, count: 3)
        #expect(throws: GGUFError.self) { try small.withUnsafeMutableBufferPointer { try g.copyFloats("q8_0", into: $0) } }
        // Raw bytes are the stored blocks.
        #expect(try g.rawBytes("q4_1").count == 2 * 2 * 20)
        let missing = #expect(throws: GGUFError.self) { try g.info("nope") }
        #expect(missing?.message.contains("'nope'") == true)
    }

    @Test func dequantisesRealSmolLM2Slices() throws {
        // Raw blocks and gguf-py's dequantisation of the first rows of three real tensors.
        let slices = try SafetensorsFile(url: FormatFixtures.url("smollm2_slices", "safetensors"))
        var checked: [GGMLType] = []
        for name in ["blk.0.attn_k.weight", "token_embd.weight", "blk.0.attn_norm.weight"] {
            let meta = try #require(slices.metadata[name])
            let desc = try HeaderJSON.parse(meta)
            let type = try #require(GGMLType.allCases.first { $0.name == Self.member(desc, "type")?.stringValue })
            let raw = try slices.rawBytes(name + ".raw")
            let ref = try slices.floats(name + ".ref")
            var out = [Float](repeating: .nan, count: ref.count)
            try out.withUnsafeMutableBufferPointer { try GGMLQuants.dequantize(type, from: raw, count: ref.count, into: $0) }
            #expect(sameFloatBits(out, ref), "\(name) (\(type.name))")
            checked.append(type)
        }
        #expect(checked == [.q4_1, .q8_0, .f32])
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: GGUFTests.realFile.path), "SmolLM2 GGUF not downloaded"))
    func opensRealSmolLM2File() throws {
        let g = try GGUFFile(url: Self.realFile)
        #expect(g.version == 3)
        #expect(g.tensors.count == 272)
        var counts: [GGMLType: Int] = [:]
        for t in g.tensors { counts[t.type, default: 0] += 1 }
        #expect(counts == [.q4_1: 210, .f32: 61, .q8_0: 1])
        #expect(g.architecture == "llama")
        #expect(try g.int("llama.block_count") == 30)
        #expect(try g.int("llama.embedding_length") == 576)
        #expect(try g.int("llama.attention.head_count_kv") == 3)
        let tok = try g.tokenizerData()
        #expect(tok.tokens.count == 49152 && tok.merges?.count == 48900 && tok.model == "gpt2")
        let emb = try g.info("token_embd.weight")
        #expect(emb.shape == [49152, 576] && emb.dims == [576, 49152] && emb.type == .q8_0)
        // First rows agree with the committed gguf-py slices.
        let slices = try SafetensorsFile(url: FormatFixtures.url("smollm2_slices", "safetensors"))
        #expect(sameFloatBits(try g.floats("blk.0.attn_k.weight", rows: 0..<3), try slices.floats("blk.0.attn_k.weight.ref")))
        #expect(sameFloatBits(try g.floats("token_embd.weight", rows: 0..<2), try slices.floats("token_embd.weight.ref")))
        // Every tensor dequantises.
        for t in g.tensors where t.type != .q8_0 { #expect(try g.floats(t.name).count == t.elementCount) }
    }

    @Test func handComputedBlocks() throws {
        // Q4_1 block: d = 0.5, m = -1, qs[j] = j | (15 - j) << 4 -> x[j] = 0.5 j - 1, x[j+16] = 0.5 (15 - j) - 1.
        var q41: [UInt8] = []
        q41 += [0x00, 0x38]  // f16 0.5
        q41 += [0x00, 0xBC]  // f16 -1
        for j in 0..<16 { q41.append(UInt8(j) | UInt8(15 - j) << 4) }
        // Q8_0 block: d = 0.25, q = -16..15.
        var q80: [UInt8] = [0x00, 0x34]
        for j in 0..<32 { q80.append(UInt8(bitPattern: Int8(j - 16))) }
        // Q4_0 block: d = 2, qs[j] = 8 | 9 << 4 -> x[j] = 0, x[j+16] = 2.
        let q40: [UInt8] = [0x00, 0x40] + [UInt8](repeating: 0x98, count: 16)
        func deq(_ t: GGMLType, _ b: [UInt8]) throws -> [Float] {
            var out = [Float](repeating: 0, count: 32)
            try b.withUnsafeBytes { src in try out.withUnsafeMutableBufferPointer { try GGMLQuants.dequantize(t, from: src, count: 32, into: $0) } }
            return out
        }
        #expect(try deq(.q4_1, q41) == (0..<16).map { 0.5 * Float($0) - 1 } + (0..<16).map { 0.5 * Float(15 - $0) - 1 })
        #expect(try deq(.q8_0, q80) == (0..<32).map { Float($0 - 16) * 0.25 })
        #expect(try deq(.q4_0, q40) == [Float](repeating: 0, count: 16) + [Float](repeating: 2, count: 16))
        // Errors: partial blocks, short input, unsupported types.
        var out = [Float](repeating: 0, count: 64)
        q41.withUnsafeBytes { src in
            out.withUnsafeMutableBufferPointer { dst in
                #expect(throws: GGUFError.self) { try GGMLQuants.dequantize(.q4_1, from: src, count: 16, into: dst) }
                #expect(throws: GGUFError.self) { try GGMLQuants.dequantize(.q4_1, from: src, count: 64, into: dst) }
                #expect(throws: GGUFError.self) { try GGMLQuants.dequantize(.iq2_xxs, from: src, count: 0, into: dst) }
            }
        }
        #expect(GGMLType.q4_K.name == "Q4_K" && GGMLType.q4_K.typeSize == 144 && GGMLType.q6_K.typeSize == 210)
        #expect(GGMLType.q4_1.byteCount(elements: 64) == 40 && GGMLType.q4_1.byteCount(elements: 33) == nil)
    }

    // MARK: Adversarial input

    /// A minimal valid header: magic, version, counts, then `body`.
    static func file(version: UInt32 = 3, tensors: UInt64, kvs: UInt64, _ body: [UInt8]) -> [UInt8] {
        var b: [UInt8] = Array("GGUF".utf8)
        b.appendU32(version)
        b.appendU64(tensors)
        b.appendU64(kvs)
        return b + body
    }

    static func expectError(_ bytes: [UInt8], _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try GGUFFile(bytes: bytes, name: "adv.gguf")
            Issue.record("accepted a malformed file (expected: \(fragment))", sourceLocation: sourceLocation)
        } catch let e as GGUFError {
            #expect(e.message.contains(fragment) && e.message.contains("adv.gguf"), "\(e.message)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func rejectsMalformedHeaders() {
        var kv: [UInt8] = []
        kv.appendString("k")
        kv.appendU32(GGUFValueType.string.rawValue)
        var hugeString = kv
        hugeString.appendU64(UInt64.max)  // string length
        Self.expectError(Self.file(tensors: 0, kvs: 1, hugeString), "too large")
        var bigString = kv
        bigString.appendU64(1 << 40)
        Self.expectError(Self.file(tensors: 0, kvs: 1, bigString), "only")

        var arr: [UInt8] = []
        arr.appendString("a")
        arr.appendU32(GGUFValueType.array.rawValue)
        arr.appendU32(GGUFValueType.uint32.rawValue)
        arr.appendU64(1 << 60)  // array count
        Self.expectError(Self.file(tensors: 0, kvs: 1, arr), "claims")

        Self.expectError(Self.file(tensors: UInt64.max, kvs: 0, []), "tensor count")
        Self.expectError(Self.file(tensors: 1 << 40, kvs: 0, [UInt8](repeating: 0, count: 64)), "tensor count")
        Self.expectError(Self.file(tensors: 0, kvs: 1 << 50, []), "metadata count")
        Self.expectError(Array("GGML".utf8) + [3, 0, 0, 0], "bad magic")
        Self.expectError(Self.file(version: 1, tensors: 0, kvs: 0, []), "version 1")
        Self.expectError(Self.file(version: 3 << 24, tensors: 0, kvs: 0, []), "big-endian")
        Self.expectError(Self.file(version: 7, tensors: 0, kvs: 0, []), "unsupported GGUF version 7")
        Self.expectError(Array("GGU".utf8), "too short")

        // Tensor infos.
        func tensor(_ name: String, dims: [UInt64], type: UInt32, offset: UInt64, nDims: UInt32? = nil) -> [UInt8] {
            var b: [UInt8] = []
            b.appendString(name)
            b.appendU32(nDims ?? UInt32(dims.count))
            for d in dims { b.appendU64(d) }
            b.appendU32(type)
            b.appendU64(offset)
            return b
        }
        func withData(_ infos: [UInt8], count: UInt64, data: Int) -> [UInt8] {
            var f = Self.file(tensors: count, kvs: 0, infos)
            while f.count % 32 != 0 { f.append(0) }
            return f + [UInt8](repeating: 0, count: data)
        }
        Self.expectError(withData(tensor("t", dims: [1, 1, 1, 1, 1], type: 0, offset: 0), count: 1, data: 4), "5 dimensions")
        Self.expectError(withData(tensor("t", dims: [4], type: 0, offset: 0), count: 1, data: 8), "runs past the end")
        Self.expectError(withData(tensor("t", dims: [2], type: 0, offset: 1 << 62), count: 1, data: 8), "runs past the end")
        Self.expectError(withData(tensor("t", dims: [2], type: 0, offset: 8), count: 1, data: 64), "alignment")
        Self.expectError(withData(tensor("t", dims: [16], type: GGMLType.q4_0.rawValue, offset: 0), count: 1, data: 64), "block size")
        Self.expectError(withData(tensor("t", dims: [2], type: 99, offset: 0), count: 1, data: 8), "unknown ggml type 99")
        Self.expectError(withData(tensor("t", dims: [1 << 40, 1 << 40], type: 0, offset: 0), count: 1, data: 8), "overflows")
        Self.expectError(withData(tensor("t", dims: [UInt64.max], type: 0, offset: 0), count: 1, data: 8), "too large")
        Self.expectError(withData(tensor("t", dims: [2], type: 0, offset: 0) + tensor("t", dims: [2], type: 0, offset: 32),
                                  count: 2, data: 64), "duplicate tensor name 't'")
        Self.expectError(withData(tensor("a", dims: [16], type: 0, offset: 0) + tensor("b", dims: [2], type: 0, offset: 32),
                                  count: 2, data: 64), "overlaps")

        // Metadata values.
        func kvFile(_ key: String, _ type: GGUFValueType, _ payload: [UInt8], count: UInt64 = 1) -> [UInt8] {
            var b: [UInt8] = []
            b.appendString(key)
            b.appendU32(type.rawValue)
            return Self.file(tensors: 0, kvs: count, b + payload)
        }
        Self.expectError(kvFile("b", .bool, [2]), "expected 0 or 1")
        Self.expectError(kvFile("general.alignment", .uint32, [24, 0, 0, 0]), "power of two")
        Self.expectError(kvFile("general.alignment", .uint64, [32, 0, 0, 0, 0, 0, 0, 0]), "expected uint32")
        var dup: [UInt8] = []
        for _ in 0..<2 { dup.appendString("x"); dup.appendU32(GGUFValueType.uint8.rawValue); dup.append(1) }
        Self.expectError(Self.file(tensors: 0, kvs: 2, dup), "duplicate metadata key 'x'")
        var unknownType: [UInt8] = []
        unknownType.appendString("x")
        unknownType.appendU32(77)
        Self.expectError(Self.file(tensors: 0, kvs: 1, unknownType + [0, 0, 0, 0]), "unknown value type 77")
        // Arrays nested deeper than the limit.
        var deep: [UInt8] = []
        deep.appendString("deep")
        deep.appendU32(GGUFValueType.array.rawValue)
        for _ in 0..<20 { deep.appendU32(GGUFValueType.array.rawValue); deep.appendU64(1) }
        Self.expectError(Self.file(tensors: 0, kvs: 1, deep + [UInt8](repeating: 0, count: 32)), "nested deeper")
        // Strings must be UTF-8 (as gguf-py requires).
        var badUTF8: [UInt8] = []
        badUTF8.appendString("s")
        badUTF8.appendU32(GGUFValueType.string.rawValue)
        badUTF8.appendU64(2)
        badUTF8 += [0xC3, 0x28]
        Self.expectError(Self.file(tensors: 0, kvs: 1, badUTF8), "string value of 's' is not valid UTF-8")
        // Truncated inside a value type.
        var cut: [UInt8] = []
        cut.appendString("key")
        Self.expectError(Self.file(tensors: 0, kvs: 1, cut + [8, 0]), "truncated: type of metadata 'key' needs 4 bytes, 2 left")
    }

    @Test func acceptsVersion2AndCustomAlignment() throws {
        var b: [UInt8] = []
        b.appendString("general.alignment")
        b.appendU32(GGUFValueType.uint32.rawValue)
        b.appendU32(64)
        b.appendString("w")
        b.appendU32(1)
        b.appendU64(3)
        b.appendU32(GGMLType.f32.rawValue)
        b.appendU64(0)
        var f = Self.file(version: 2, tensors: 1, kvs: 1, b)
        let dataStart = (f.count + 63) / 64 * 64
        while f.count < dataStart { f.append(0) }
        for v: Float in [1.5, -2, 0.25] { f.appendU32(v.bitPattern) }
        let g = try GGUFFile(bytes: f, name: "v2.gguf")
        #expect(g.version == 2 && g.alignment == 64 && g.dataOffset == dataStart)
        #expect(try g.floats("w") == [1.5, -2, 0.25])
    }

    // MARK: Fuzzing

    /// Mutates the committed tiny.gguf thousands of times (byte flips, lying u64/u32 fields,
    /// truncations, insertions); every case must either parse into a consistent file or throw.
    @Test func fuzzMutatedTinyFile() throws {
        let original = try FormatFixtures.bytes("tiny", "gguf")
        let headerEnd = try GGUFFile(bytes: original).dataOffset
        var rng = FormatsRNG(seed: 0x6767_7566)
        var parsed = 0, rejected = 0
        let interesting: [UInt64] = [0, 1, 2, 3, 4, 5, 31, 32, 33, 255, 1 << 31, 1 << 32, 1 << 40, 1 << 62,
                                     UInt64(Int.max), UInt64(Int.max) + 1, UInt64.max, UInt64.max - 1]
        let dump = ProcessInfo.processInfo.environment["FRUGAL_GGUF_FUZZ_DUMP"].map { URL(fileURLWithPath: $0) }
        if let dump { try FileManager.default.createDirectory(at: dump, withIntermediateDirectories: true) }
        for iteration in 0..<3000 {
            var b = original
            let mutations = Int.random(in: 1...4, using: &rng)
            for _ in 0..<mutations {
                if b.isEmpty { break }
                let at = Int.random(in: 0..<min(headerEnd, b.count), using: &rng)
                switch Int.random(in: 0..<7, using: &rng) {
                case 0: b[at] ^= UInt8(1 << Int.random(in: 0..<8, using: &rng))
                case 1: b[at] = UInt8.random(in: 0...255, using: &rng)
                case 2 where at + 8 <= b.count: b.putU64(interesting.randomElement(using: &rng)!, at: at)
                case 3 where at + 4 <= b.count: b.putU32(UInt32(truncatingIfNeeded: interesting.randomElement(using: &rng)!), at: at)
                case 4: b = Array(b.prefix(Int.random(in: 0..<b.count, using: &rng)))
                case 5: b.insert(contentsOf: [UInt8](repeating: UInt8.random(in: 0...255, using: &rng), count: Int.random(in: 1...9, using: &rng)), at: min(at, b.count))
                default: if at < b.count { b.removeSubrange(at..<min(b.count, at + Int.random(in: 1...9, using: &rng))) }
                }
            }
            var accepted = false
            do {
                let g = try GGUFFile(bytes: b, name: "fuzz-\(iteration)")
                parsed += 1
                accepted = true
                try checkConsistent(g, bytes: b.count)
            } catch is GGUFError {
                rejected += 1
            }
            if let dump {
                // For a differential check against gguf-py: the case and our verdict.
                try Data(b).write(to: dump.appendingPathComponent(String(format: "%05d-%@.gguf", iteration, accepted ? "ok" : "err")))
            }
        }
        // Both outcomes occur: the mutations are neither all harmless nor all fatal.
        #expect(parsed > 50 && rejected > 500, "parsed \(parsed), rejected \(rejected)")
    }

    /// Invariants of any file the reader accepts.
    func checkConsistent(_ g: GGUFFile, bytes: Int) throws {
        #expect(g.metadataKeys.count == g.metadata.count)
        #expect(g.alignment > 0 && g.dataOffset % g.alignment == 0)
        var seen = Set<String>()
        for t in g.tensors {
            #expect(seen.insert(t.name).inserted)
            #expect(t.byteRange.lowerBound >= g.dataOffset && t.byteRange.upperBound <= bytes)
            #expect(t.dims.count <= GGUFFile.maxDims)
            #expect(t.byteCount == t.type.byteCount(elements: t.elementCount))
            #expect(t.dims.reduce(1, *) == t.elementCount)
            if t.type.canDequantize {
                let f = try g.floats(t.name)
                #expect(f.count == t.elementCount)
            } else {
                #expect(throws: GGUFError.self) { try g.floats(t.name) }
            }
        }
        for k in g.metadataKeys { _ = g.metadata[k]!.summary }
    }
}
