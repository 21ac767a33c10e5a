/// A hash table from byte strings to ids that looks keys up without allocating.
///
/// Keys are compared byte for byte. (Swift `String` keys compare by canonical equivalence, so
/// "é" and "e\u{301}" would collide; vocabularies can hold both, so tokens are keyed by their
/// UTF-8 bytes.)
struct ByteStringTable: Sendable {
    private var keyBytes: [UInt8] = []
    private var keyStarts: [Int32] = [0]
    private var values: [Int32] = []
    private var slots: [Int32]
    private var mask: Int
    /// Length in bytes of the longest key.
    private(set) var maxKeyLength = 0

    init(minimumCapacity: Int = 16) {
        var size = 16
        while size < minimumCapacity * 2 { size <<= 1 }
        slots = [Int32](repeating: -1, count: size)
        mask = size - 1
    }

    var count: Int { values.count }

    @inline(__always)
    static func hash(_ p: UnsafeRawBufferPointer) -> Int {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in p {
            h = (h ^ UInt64(b)) &* 0x100_0000_01b3
        }
        return Int(truncatingIfNeeded: h ^ (h >> 29))
    }

    /// Adds `key` with `value`; a key already present takes the new value.
    mutating func insert(_ key: some Collection<UInt8>, value: Int) {
        let bytes = Array(key)
        if (values.count + 1) * 2 > slots.count { grow() }
        let found: Int? = bytes.withUnsafeBytes { p in
            let slot = findSlot(p)
            return slots[slot] >= 0 ? slot : nil
        }
        if let slot = found {
            values[Int(slots[slot])] = Int32(value)
            return
        }
        keyBytes += bytes
        keyStarts.append(Int32(keyBytes.count))
        values.append(Int32(value))
        maxKeyLength = max(maxKeyLength, bytes.count)
        let slot = bytes.withUnsafeBytes { findSlot($0) }
        slots[slot] = Int32(values.count - 1)
    }

    mutating func insert(_ key: String, value: Int) {
        insert(key.utf8, value: value)
    }

    /// The id of the key `p`, or -1.
    @inline(__always)
    func lookup(_ p: UnsafeRawBufferPointer) -> Int {
        let slot = findSlot(p)
        let entry = Int(slots[slot])
        return entry >= 0 ? Int(values[entry]) : -1
    }

    func lookup(_ key: String) -> Int {
        var key = key
        return key.withUTF8 { lookup(UnsafeRawBufferPointer($0)) }
    }

    /// The slot holding `p`, or the empty slot where it would go.
    @inline(__always)
    private func findSlot(_ p: UnsafeRawBufferPointer) -> Int {
        var slot = ByteStringTable.hash(p) & mask
        let n = p.count
        return keyBytes.withUnsafeBufferPointer { kb in
            keyStarts.withUnsafeBufferPointer { ks in
                slots.withUnsafeBufferPointer { sl in
                    while true {
                        let entry = Int(sl[slot])
                        if entry < 0 { return slot }
                        let start = Int(ks[entry]), end = Int(ks[entry + 1])
                        if end - start == n {
                            var equal = true
                            var i = 0
                            while i < n {
                                if kb[start + i] != p[i] { equal = false; break }
                                i += 1
                            }
                            if equal { return slot }
                        }
                        slot = (slot + 1) & mask
                    }
                }
            }
        }
    }

    private mutating func grow() {
        let size = slots.count * 2
        slots = [Int32](repeating: -1, count: size)
        mask = size - 1
        for entry in 0..<values.count {
            let start = Int(keyStarts[entry]), end = Int(keyStarts[entry + 1])
            let slot = keyBytes.withUnsafeBytes { kb in
                findSlot(UnsafeRawBufferPointer(rebasing: kb[start..<end]))
            }
            slots[slot] = Int32(entry)
        }
    }
}

/// BPE merge rules: a pair of token ids to the rank of the rule and the id of the merged token.
struct MergeTable: Sendable {
    private var keys: [UInt64]
    private var ranks: [Int32]
    private var results: [Int32]
    private var mask: Int
    private(set) var count = 0
    private static let empty = UInt64.max

    init(minimumCapacity: Int) {
        var size = 16
        while size < minimumCapacity * 2 { size <<= 1 }
        keys = [UInt64](repeating: MergeTable.empty, count: size)
        ranks = [Int32](repeating: 0, count: size)
        results = [Int32](repeating: 0, count: size)
        mask = size - 1
    }

    @inline(__always)
    private static func key(_ a: Int32, _ b: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
    }

    @inline(__always)
    private func slot(for key: UInt64) -> Int {
        var h = key &* 0x9E37_79B9_7F4A_7C15
        h ^= h >> 31
        var s = Int(truncatingIfNeeded: h) & mask
        while keys[s] != MergeTable.empty && keys[s] != key { s = (s + 1) & mask }
        return s
    }

    /// Adds the rule `a b -> result`. A pair listed twice keeps its last rule, as in Hugging Face
    /// `tokenizers` (whose merge map is collected from the list in order).
    mutating func insert(_ a: Int32, _ b: Int32, rank: Int32, result: Int32) {
        if (count + 1) * 2 > keys.count { grow() }
        let k = MergeTable.key(a, b)
        let s = slot(for: k)
        if keys[s] != k { count += 1 }
        keys[s] = k
        ranks[s] = rank
        results[s] = result
    }

    /// The rank and merged id of the pair `(a, b)`, or nil.
    @inline(__always)
    func lookup(_ a: Int32, _ b: Int32) -> (rank: Int32, result: Int32)? {
        let k = MergeTable.key(a, b)
        let s = slot(for: k)
        return keys[s] == k ? (ranks[s], results[s]) : nil
    }

    private mutating func grow() {
        let oldKeys = keys, oldRanks = ranks, oldResults = results
        let size = keys.count * 2
        keys = [UInt64](repeating: MergeTable.empty, count: size)
        ranks = [Int32](repeating: 0, count: size)
        results = [Int32](repeating: 0, count: size)
        mask = size - 1
        for i in 0..<oldKeys.count where oldKeys[i] != MergeTable.empty {
            let s = slot(for: oldKeys[i])
            keys[s] = oldKeys[i]
            ranks[s] = oldRanks[i]
            results[s] = oldResults[i]
        }
    }
}
