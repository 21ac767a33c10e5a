import Foundation
import FrugalCore
import FrugalModels

/// The offload store: every expert of a checkpoint packed in row blocks (see `ExpertSplit`), so
/// that any split along the intermediate dimension is two contiguous byte ranges; each expert
/// starts on a 4096-byte boundary (direct I/O, page-granular dropping). Non-expert weights stay
/// with the model.
///
/// File layout:
///
///     [0, 8)        magic "FRGMOE01"
///     [8, 16)       header length H (little-endian UInt64)
///     [16, 24)      FNV-1a 64 checksum of the header bytes
///     [24, 24 + H)  header, JSON (`OffloadStoreHeader`: shape, dtype, tensor table, strides,
///                   one FNV-1a 64 checksum per expert)
///     [dataOffset + (l·E + e)·stride, + expertBytes)  expert (l, e), I row blocks
///                   [gate row i | up row i | down column i]
public struct OffloadStoreHeader: Codable, Sendable, Equatable {
    /// One entry of the shape/dtype table (per expert; all experts share it).
    public struct TensorEntry: Codable, Sendable, Equatable {
        public var name: String, shape: [Int], dtype: DType
    }
    public var version = 1
    public var dtype: DType
    public var layers: Int, experts: Int, topK: Int, hidden: Int, intermediate: Int
    public var rowBytes: Int, expertBytes: Int, expertStride: Int, dataOffset: Int
    public var tensors: [TensorEntry]
    public var expertChecksums: [UInt64]

    public var shape: MoEShape { MoEShape(layers: layers, experts: experts, topK: topK, hidden: hidden, intermediate: intermediate) }
    /// Bytes the file must have.
    public var fileBytes: Int { layers * experts == 0 ? dataOffset : dataOffset + (layers * experts - 1) * expertStride + expertBytes }
}

/// FNV-1a 64 over bytes.
public func fnv1a64(_ p: UnsafeRawBufferPointer, seed: UInt64 = 0xcbf29ce484222325) -> UInt64 {
    var h = seed
    for b in p { h = (h ^ UInt64(b)) &* 0x100000001b3 }
    return h
}

/// An open offload store, read with `pread` (thread-safe) and, optionally, with the pages it
/// read dropped from the page cache so that a memory budget is real.
public final class OffloadStore: @unchecked Sendable {
    // @unchecked Sendable: immutable after init; pread on a shared descriptor is thread-safe.
    public let path: String
    public let header: OffloadStoreHeader
    let fd: Int32
    static let magic: [UInt8] = Array("FRGMOE01".utf8)
    public static let alignment = 4096

    public var shape: MoEShape { header.shape }
    /// Byte offset of expert (layer, expert) in the file.
    public func offset(layer: Int, expert: Int) -> Int {
        header.dataOffset + (layer * header.experts + expert) * header.expertStride
    }
    /// Bytes of all experts (packed, without padding).
    public var totalExpertBytes: Int { header.layers * header.experts * header.expertBytes }

    /// Packs every expert of `source` into a store at `path`.
    @discardableResult
    public static func write(source: MoEExpertSource, to path: String) throws -> OffloadStoreHeader {
        let s = source.moeShape
        guard s.layers > 0, s.experts > 0, s.hidden > 0, s.intermediate > 0 else {
            throw OffloadError.badShape("cannot pack a model with shape \(s)")
        }
        let first = try source.expertWeights(layer: 0, expert: 0)
        let dtype = first.gate.dtype
        let rowBytes = ExpertSplit.rowBytes(hidden: s.hidden, dtype: dtype)
        let expertBytes = s.intermediate * rowBytes
        let stride = (expertBytes + alignment - 1) / alignment * alignment
        var header = OffloadStoreHeader(
            dtype: dtype, layers: s.layers, experts: s.experts, topK: s.topK, hidden: s.hidden, intermediate: s.intermediate,
            rowBytes: rowBytes, expertBytes: expertBytes, expertStride: stride, dataOffset: 0,
            tensors: [.init(name: "gate", shape: [s.intermediate, s.hidden], dtype: dtype),
                      .init(name: "up", shape: [s.intermediate, s.hidden], dtype: dtype),
                      .init(name: "down", shape: [s.hidden, s.intermediate], dtype: dtype)],
            expertChecksums: Array(repeating: 0, count: s.layers * s.experts))
        // The header length depends on the checksums' digits: reserve the widest (20 digits each).
        header.expertChecksums = Array(repeating: UInt64.max, count: s.layers * s.experts)
        let reserve = try JSONEncoder().encode(header).count + 64
        header.dataOffset = (24 + reserve + alignment - 1) / alignment * alignment

        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw OffloadError.io("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let buf = UnsafeMutableRawPointer.allocate(byteCount: expertBytes, alignment: alignment)
        defer { buf.deallocate() }
        for l in 0..<s.layers {
            for e in 0..<s.experts {
                let w = try source.expertWeights(layer: l, expert: e)
                guard w.gate.shape == [s.intermediate, s.hidden], w.gate.dtype == dtype else {
                    throw OffloadError.badShape("expert \(e) of layer \(l): gate \(w.gate.shape) \(w.gate.dtype), want [\(s.intermediate), \(s.hidden)] \(dtype)")
                }
                try ExpertSplit.pack(gate: w.gate, up: w.up, down: w.down, into: buf)
                header.expertChecksums[l * s.experts + e] = fnv1a64(UnsafeRawBufferPointer(start: buf, count: expertBytes))
                let off = header.dataOffset + (l * s.experts + e) * stride
                try writeAll(fd, buf, expertBytes, off, path)
            }
        }
        guard ftruncate(fd, off_t(header.fileBytes)) == 0 else { throw OffloadError.io("cannot size \(path)") }
        let json = try JSONEncoder().encode(header)
        precondition(24 + json.count <= header.dataOffset, "store header outgrew its reserve")
        var pre = [UInt8](magic)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { pre += $0 }
        let sum = json.withUnsafeBytes { fnv1a64($0) }
        withUnsafeBytes(of: sum.littleEndian) { pre += $0 }
        let all = pre + [UInt8](json)
        try all.withUnsafeBytes { try writeAll(fd, $0.baseAddress!, all.count, 0, path) }
        fdatasync(fd)
        _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
        return header
    }

    static func writeAll(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int, _ off: Int, _ path: String) throws {
        var done = 0
        while done < n {
            let r = pwrite(fd, p + done, n - done, off_t(off + done))
            if r < 0 && errno == EINTR { continue }
            guard r > 0 else { throw OffloadError.io("write to \(path) at offset \(off + done) failed: \(String(cString: strerror(errno)))") }
            done += r
        }
    }

    /// Opens and validates a store (magic, header checksum, shape table, size).
    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw OffloadError.io("cannot open offload store \(path): \(String(cString: strerror(errno)))") }
        var st = stat()
        fstat(fd, &st)
        let size = Int(st.st_size)
        func bad(_ off: Int, _ why: String) -> OffloadError { close(fd); return .badStore(file: path, offset: off, reason: why) }
        // No readahead: it would pull in pages beyond the rows asked for.
        _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_RANDOM))
        var pre = [UInt8](repeating: 0, count: 24)
        guard size >= 24, pread(fd, &pre, 24, 0) == 24 else { throw bad(0, "file is \(size) bytes, shorter than the 24-byte preamble") }
        guard Array(pre[0..<8]) == Self.magic else { throw bad(0, "bad magic (not a Frugal MoE offload store)") }
        let hlen = pre[8..<16].withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
        let sum = pre[16..<24].withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard hlen > 0, hlen <= 1 << 28, 24 + hlen <= size else { throw bad(8, "header length \(hlen) does not fit the \(size)-byte file") }
        var json = [UInt8](repeating: 0, count: hlen)
        guard pread(fd, &json, hlen, 24) == hlen else { throw bad(24, "cannot read the \(hlen)-byte header") }
        guard json.withUnsafeBytes({ fnv1a64($0) }) == sum else { throw bad(24, "header checksum mismatch (corrupt header)") }
        let h: OffloadStoreHeader
        do { h = try JSONDecoder().decode(OffloadStoreHeader.self, from: Data(json)) } catch { throw bad(24, "header is not valid: \(error)") }
        let rb = ExpertSplit.rowBytes(hidden: h.hidden, dtype: h.dtype)
        guard h.layers > 0, h.experts > 0, h.hidden > 0, h.intermediate > 0, h.topK > 0, h.topK <= h.experts,
              h.rowBytes == rb, h.expertBytes == h.intermediate * rb, h.expertStride >= h.expertBytes,
              h.expertStride % Self.alignment == 0, h.dataOffset % Self.alignment == 0, h.dataOffset >= 24 + hlen,
              h.expertChecksums.count == h.layers * h.experts,
              h.tensors.map(\.shape) == [[h.intermediate, h.hidden], [h.intermediate, h.hidden], [h.hidden, h.intermediate]] else {
            throw bad(24, "inconsistent header (shape/dtype table or strides)")
        }
        guard size >= h.fileBytes else { throw bad(size, "truncated: the experts need \(h.fileBytes) bytes, the file ends at \(size)") }
        header = h
        self.fd = fd
        _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))  // the header's pages
    }

    deinit { close(fd) }

    /// Reads intermediate rows `rows` of expert (layer, expert) into `dst`; when `dropPages`, the
    /// file pages just read are dropped from the page cache (POSIX_FADV_DONTNEED).
    public func read(layer: Int, expert: Int, rows: Range<Int>, into dst: UnsafeMutableRawPointer, dropPages: Bool) throws {
        guard layer >= 0, layer < header.layers, expert >= 0, expert < header.experts,
              rows.lowerBound >= 0, rows.upperBound <= header.intermediate else {
            throw OffloadError.io("\(path): no rows \(rows) of expert \(expert) in layer \(layer)")
        }
        let off = offset(layer: layer, expert: expert) + rows.lowerBound * header.rowBytes
        let n = rows.count * header.rowBytes
        var done = 0
        while done < n {
            let r = pread(fd, dst + done, n - done, off_t(off + done))
            if r < 0 && errno == EINTR { continue }
            guard r > 0 else { throw OffloadError.badStore(file: path, offset: off + done, reason: r == 0 ? "unexpected end of file" : String(cString: strerror(errno))) }
            done += r
        }
        if dropPages {
            // The whole file, not just the range: the page cache may hold the range in large
            // folios that extend past it, and DONTNEED keeps any folio it covers only in part.
            // The kernel walks only the pages present, so this is cheap when few are.
            _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
        }
    }

    /// Checks every expert's checksum; throws naming the first corrupt expert's offset.
    public func verify() throws {
        let buf = UnsafeMutableRawPointer.allocate(byteCount: header.expertBytes, alignment: Self.alignment)
        defer { buf.deallocate() }
        for l in 0..<header.layers {
            for e in 0..<header.experts {
                try read(layer: l, expert: e, rows: 0..<header.intermediate, into: buf, dropPages: true)
                if fnv1a64(UnsafeRawBufferPointer(start: buf, count: header.expertBytes)) != header.expertChecksums[l * header.experts + e] {
                    throw OffloadError.badStore(file: path, offset: offset(layer: l, expert: e), reason: "checksum mismatch in expert \(e) of layer \(l)")
                }
            }
        }
    }
}

/// Page-cache residency of a file, measured with `mincore` on a mapping that is never touched.
public enum ResidencyProbe {
    /// (resident bytes, file bytes) of the file at `path`, page-granular.
    public static func residentBytes(path: String) throws -> (resident: Int, total: Int) {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw OffloadError.io("mincore probe: cannot open \(path)") }
        defer { close(fd) }
        var st = stat()
        fstat(fd, &st)
        let size = Int(st.st_size)
        if size == 0 { return (0, 0) }
        guard let map = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), map != MAP_FAILED else {
            throw OffloadError.io("mincore probe: cannot map \(path)")
        }
        defer { munmap(map, size) }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let pages = (size + page - 1) / page
        var vec = [UInt8](repeating: 0, count: pages)
        guard mincore(map, size, &vec) == 0 else { throw OffloadError.io("mincore failed on \(path)") }
        let n = vec.reduce(0) { $0 + Int($1 & 1) }
        return (n * page, size)
    }
}
