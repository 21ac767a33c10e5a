import Foundation
import Testing
@testable import FrugalData

@Suite struct ChecksumTests {
    @Test func knownVectors() {
        let check = Array("123456789".utf8)
        #expect(Checksums.crc32(check) == 0xCBF4_3926)
        #expect(Checksums.adler32(Array("Wikipedia".utf8)) == 0x11E6_0398)
        #expect(Checksums.md5Hex([]) == "d41d8cd98f00b204e9800998ecf8427e")
        #expect(Checksums.md5Hex(Array("abc".utf8)) == "900150983cd24fb0d6963f7d28e17f72")
        #expect(Checksums.md5Hex(Array("The quick brown fox jumps over the lazy dog".utf8)) == "9e107d9d372bb6826bd81d3542a419d6")
        #expect(Checksums.sha256Hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(Checksums.sha256Hex([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        // 56 bytes: padding spills into a second block.
        let two = Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)
        #expect(Checksums.sha256Hex(two) == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(Checksums.md5Hex(two) == "8215ef0796a20bcaaae116d3876c664a")
    }

    @Test func fixturePayloadChecksums() throws {
        let payload = try DataFixture.bytes("payload.bin")
        let m = try DataFixture.manifest()["payload"] as! [String: Any]
        #expect(Checksums.crc32(payload) == UInt32(m["crc32"] as! Int))
        #expect(Checksums.md5Hex(payload) == m["md5"] as! String)
        #expect(Checksums.sha256Hex(payload) == m["sha256"] as! String)
        // Incremental CRC equals one-shot CRC.
        let half = payload.count / 2 + 3
        let c1 = Checksums.crc32(Array(payload[..<half]))
        #expect(Checksums.crc32(Array(payload[half...]), continuing: c1) == Checksums.crc32(payload))
    }
}

@Suite struct InflateTests {
    let payload: [UInt8]
    init() throws { payload = try DataFixture.bytes("payload.bin") }

    @Test(arguments: ["payload.l1.gz", "payload.l6.gz", "payload.l9.gz", "payload.fields.gz", "payload.multi.gz"])
    func gzipRoundTrip(name: String) throws {
        let out = try Gzip.decompress(try DataFixture.bytes(name), source: name)
        #expect(out.count == payload.count)
        #expect(out == payload)
    }

    @Test(arguments: ["payload.l0.zlib", "payload.l1.zlib", "payload.l9.zlib", "payload.fixed.zlib",
                      "payload.huffman.zlib", "payload.rle.zlib"])
    func zlibRoundTrip(name: String) throws {
        #expect(try Zlib.decompress(try DataFixture.bytes(name), source: name) == payload)
    }

    @Test func rawDeflate() throws {
        #expect(try Deflate.inflate(try DataFixture.bytes("payload.raw.deflate")) == payload)
    }

    @Test func handMadeStreams() throws {
        // Fixed-Huffman block holding "a" (zlib.compress(b"a") without the wrapper).
        #expect(try Deflate.inflate([0x4B, 0x04, 0x00]) == [0x61])
        // Empty fixed block.
        #expect(try Deflate.inflate([0x03, 0x00]) == [])
        // Stored block "abc".
        #expect(try Deflate.inflate([0x01, 0x03, 0x00, 0xFC, 0xFF, 0x61, 0x62, 0x63]) == Array("abc".utf8))
        // "aaaaaaaaaa": literal then a length-9, distance-1 match (overlapping copy).
        #expect(try Deflate.inflate([0x4B, 0x4C, 0x84, 0x01, 0x00]) == Array(repeating: 0x61, count: 10))
    }

    @Test func headerFields() throws {
        let bytes = try DataFixture.bytes("payload.fields.gz")
        let h = try Gzip.readHeader(bytes)
        #expect(h.fileName == "caf\u{e9}.bin")  // latin-1 in the header
        #expect(h.comment == "a comment")
        #expect(h.extra == Array("FR\u{4}\u{0}frug".utf8))
        #expect(h.modificationTime == 1_700_000_000)
        #expect(h.operatingSystem == 3)
        #expect(h.hasHeaderCRC)
        // A wrong header CRC16 is rejected.
        var bad = bytes
        bad[h.dataOffset - 1] ^= 0x01
        #expect(throws: DataError.self) { try Gzip.decompress(bad) }
    }

    @Test func corruptGzipRejected() throws {
        let good = try DataFixture.bytes("payload.l6.gz")
        func rejects(_ b: [UInt8], _ fragment: String) {
            do {
                _ = try Gzip.decompress(b, source: "t.gz")
                Issue.record("accepted a corrupt stream (\(fragment))")
            } catch let e as DataError {
                #expect(e.message.contains(fragment), "\(e.message)")
                #expect(e.message.contains("t.gz"))
            } catch { Issue.record("unexpected error \(error)") }
        }
        var b = good; b[0] = 0x1E; rejects(b, "not gzip")
        b = good; b[2] = 7; rejects(b, "compression method")
        b = good; b[3] = 0x80; rejects(b, "reserved flag")
        b = good; b[b.count - 8] ^= 0xFF; rejects(b, "CRC32 mismatch")
        b = good; b[b.count - 4] ^= 0x01; rejects(b, "ISIZE")
        rejects(Array(good.prefix(good.count - 3)), "truncated trailer")
        rejects(Array(good.prefix(good.count / 2)), "end of data")
        rejects(Array(good.prefix(5)), "need 10 bytes")
        rejects([UInt8](good) + [0x1F, 0x8B, 0x08], "need 10 bytes")  // a partial second member
    }

    @Test func corruptDeflateRejected() {
        func rejects(_ b: [UInt8], _ fragment: String) {
            do {
                _ = try Deflate.inflate(b)
                Issue.record("accepted \(b)")
            } catch let e as DataError {
                #expect(e.message.contains(fragment), "\(e.message)")
            } catch { Issue.record("unexpected error \(error)") }
        }
        rejects([0x07], "invalid block type")                                  // BTYPE = 3
        rejects([0x01, 0x03, 0x00, 0xFC, 0xFE, 0x61, 0x62, 0x63], "complement")  // NLEN wrong
        rejects([0x01, 0x05, 0x00, 0xFA, 0xFF, 0x61], "end of data")           // stored block runs out
        rejects([0x03, 0x02, 0x00], "before the start")                   // distance 1 with no output
        rejects([0x4B, 0x4C, 0x84], "end of data")                              // cut mid-stream
        rejects([], "empty")
        // Dynamic block whose code-length code is over-subscribed (all 19 lengths = 1).
        rejects([0x05, 0xE0, 0x93, 0x24, 0x49, 0x92, 0x24, 0x49, 0x92, 0x00], "over-subscribed")
    }

    @Test func corruptZlibRejected() throws {
        let good = try DataFixture.bytes("payload.l9.zlib")
        var b = good; b[1] ^= 0x01
        #expect(throws: DataError.self) { try Zlib.decompress(b) }
        b = good; b[b.count - 1] ^= 0x01
        #expect(throws: DataError.self) { try Zlib.decompress(b) }
        b = good; b[1] |= 0x20
        #expect(throws: DataError.self) { try Zlib.decompress(b) }
    }

    /// Every single-byte corruption and every truncation of a small stream either throws or
    /// (when the change is invisible to the decoder) still yields the original bytes; nothing crashes.
    @Test func fuzzSingleByteCorruptions() throws {
        let small = Array(payload[0..<3000])
        let gz = try DataFixture.bytes("payload.l9.gz")
        let full = try Gzip.decompress(gz)
        #expect(full == payload)
        var accepted = 0
        for i in stride(from: 0, to: gz.count, by: 7) {
            for flip: UInt8 in [0x01, 0x80, 0x5A] {
                var b = gz
                b[i] ^= flip
                if let out = try? Gzip.decompress(b) {
                    accepted += 1
                    #expect(out == payload, "corruption at \(i) produced different output without an error")
                }
            }
        }
        for n in stride(from: 0, to: gz.count, by: 97) {
            #expect(throws: DataError.self) { try Gzip.decompress(Array(gz.prefix(n))) }
        }
        #expect(accepted < 20)  // only the MTIME/XFL/OS header bytes may change freely
        #expect(small.count == 3000)
    }
}

@Suite struct TarTests {
    func check(_ entries: [TarEntry]) throws {
        let m = try DataFixture.manifest()["tar"] as! [String: String]
        let files = entries.filter { $0.kind == .file }
        #expect(files.count == m.count)
        for f in files {
            #expect(m[f.name] == Checksums.sha256Hex(f.data), "\(f.name)")
        }
        #expect(entries.contains { $0.kind == .directory && $0.name.hasPrefix("sub") })
        let long = files.first { $0.name.hasSuffix("file-with-a-long-name.txt") }
        #expect(long != nil && long!.name.count > 100)
        #expect(files.first { $0.name == "readme.txt" }?.mode == 0o644)
    }

    @Test func gnuAndPaxLongNames() throws {
        for name in ["files.gnu.tar.gz", "files.pax.tar.gz"] {
            try check(try Tar.entries(try Gzip.decompress(try DataFixture.bytes(name))))
        }
    }

    @Test func ustarPrefix() throws {
        let e = try Tar.entries(try DataFixture.bytes("files.ustar.tar"))
        #expect(e.count == 1)
        #expect(e[0].name == (try DataFixture.manifest()["ustar_name"] as! String))
        #expect(e[0].data == Array("ustar\n".utf8))
    }

    @Test func corruptTarRejected() throws {
        let tar = try Gzip.decompress(try DataFixture.bytes("files.gnu.tar.gz"))
        var b = tar
        b[10] ^= 0x20  // name byte: checksum no longer matches
        #expect(throws: DataError.self) { try Tar.entries(b) }
        // Cut inside the data of a member.
        #expect(throws: DataError.self) { try Tar.entries(Array(tar.prefix(512 * 4 + 100))) }
        #expect(throws: DataError.self) { try Tar.entries(Array(repeating: 7, count: 512)) }
    }

    @Test func extractRefusesUnsafePaths() throws {
        let tmp = DataTempDir()
        defer { tmp.cleanup() }
        let written = try Tar.extract(try Gzip.decompress(try DataFixture.bytes("files.pax.tar.gz")), to: tmp.path)
        #expect(written.count == 4)
        #expect(try DataFile.read(tmp.file("readme.txt")) == Array("hello tar\n".utf8))
        // Build a header whose name escapes the folder.
        var h = [UInt8](repeating: 0, count: 512)
        for (i, c) in "../evil.txt".utf8.enumerated() { h[i] = c }
        for (i, c) in "0000644\0".utf8.enumerated() { h[100 + i] = c }
        for (i, c) in "00000000000\0".utf8.enumerated() { h[124 + i] = c }
        h[156] = UInt8(ascii: "0")
        for i in 148..<156 { h[i] = 32 }
        let sum = h.reduce(0) { $0 + Int($1) }
        let oct = Array(String(sum, radix: 8).utf8)
        for i in 0..<6 { h[148 + i] = 48 }
        for (i, c) in oct.enumerated() { h[148 + 6 - oct.count + i] = c }
        h[154] = 0
        #expect(try Tar.entries(h + [UInt8](repeating: 0, count: 1024)).first?.name == "../evil.txt")
        #expect(throws: DataError.self) { try Tar.extract(h + [UInt8](repeating: 0, count: 1024), to: tmp.path) }
    }
}
