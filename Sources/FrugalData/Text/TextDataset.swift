/// A text classification data set.
///
/// ```swift
/// let sst = try TextDataset.sst2(file: DataPaths.text + "/sst2/train.tsv")
/// let mr = try TextDataset.movieReviews(dir: DataPaths.text + "/mr")     // latin-1 aware
/// ```
public struct TextDataset: Sendable, Equatable {
    public var texts: [String]
    /// One label per text, in `0..<classNames.count`.
    public var labels: [Int32]
    public var classNames: [String]

    public init(texts: [String], labels: [Int32], classNames: [String]) throws {
        guard texts.count == labels.count else {
            throw DataError.invalidArgument("\(texts.count) texts but \(labels.count) labels")
        }
        if let bad = labels.firstIndex(where: { $0 < 0 || Int($0) >= classNames.count }) {
            throw DataError.invalidArgument("label \(labels[bad]) of text \(bad) is outside 0..<\(classNames.count)")
        }
        self.texts = texts
        self.labels = labels
        self.classNames = classNames
    }

    public var count: Int { texts.count }
    public var classes: Int { classNames.count }

    public func classCounts() -> [Int] {
        var c = [Int](repeating: 0, count: classNames.count)
        for l in labels { c[Int(l)] += 1 }
        return c
    }

    /// The texts at `indices`, in that order.
    public func subset(_ indices: [Int]) throws -> TextDataset {
        if let bad = indices.first(where: { $0 < 0 || $0 >= count }) {
            throw DataError.invalidArgument("subset index \(bad) is outside 0..<\(count)")
        }
        return try TextDataset(texts: indices.map { texts[$0] }, labels: indices.map { labels[$0] }, classNames: classNames)
    }

    // MARK: Readers

    /// SST-2 (GLUE): `sentence<TAB>label` lines after a header line; labels 0 (negative) and 1 (positive).
    public static func sst2(file: String) throws -> TextDataset {
        let lines = try TextFiles.lines(file)
        var texts = [String]()
        var labels = [Int32]()
        for (n, line) in lines.enumerated() {
            if n == 0 && line.lowercased().hasPrefix("sentence") { continue }
            if line.isEmpty { continue }
            guard let tab = line.lastIndex(of: "\t") else {
                throw TextFiles.bad(file, n, "expected 'sentence<TAB>label'")
            }
            let label = line[line.index(after: tab)...].trimmedSpaces()
            guard let v = Int32(label), v == 0 || v == 1 else {
                throw TextFiles.bad(file, n, "label '\(label)' is not 0 or 1")
            }
            texts.append(String(line[..<tab]).trimmedSpaces())
            labels.append(v)
        }
        return try TextDataset(texts: texts, labels: labels, classNames: ["negative", "positive"])
    }

    /// AG News class names in the order of the original label ids 1...4.
    public static let agNewsClasses = ["World", "Sports", "Business", "Sci/Tech"]

    /// AG News: `text<TAB>class name` lines (class name one of ``agNewsClasses``, or its 1-based id).
    public static func agNews(file: String) throws -> TextDataset {
        let lines = try TextFiles.lines(file)
        var texts = [String]()
        var labels = [Int32]()
        for (n, line) in lines.enumerated() where !line.isEmpty {
            guard let tab = line.lastIndex(of: "\t") else { throw TextFiles.bad(file, n, "expected 'text<TAB>class'") }
            let name = line[line.index(after: tab)...].trimmedSpaces()
            let label: Int
            if let i = agNewsClasses.firstIndex(of: name) {
                label = i
            } else if let id = Int(name), (1...4).contains(id) {
                label = id - 1
            } else if n == 0 {
                continue  // a header line
            } else {
                throw TextFiles.bad(file, n, "unknown AG News class '\(name)' (expected one of \(agNewsClasses))")
            }
            texts.append(String(line[..<tab]).trimmedSpaces())
            labels.append(Int32(label))
        }
        return try TextDataset(texts: texts, labels: labels, classNames: agNewsClasses)
    }

    /// TREC coarse classes, in the customary order.
    public static let trecCoarseClasses = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]

    /// TREC question classification: `COARSE:fine question` lines. With `fine`, the labels are the
    /// `COARSE:fine` classes found in the file (sorted); otherwise the six coarse classes.
    public static func trec(file: String, fine: Bool = false) throws -> TextDataset {
        let lines = try TextFiles.lines(file)
        var texts = [String]()
        var tags = [String]()
        for (n, line) in lines.enumerated() where !line.isEmpty {
            guard let space = line.firstIndex(of: " "), let colon = line[..<space].firstIndex(of: ":") else {
                throw TextFiles.bad(file, n, "expected 'COARSE:fine question'")
            }
            let coarse = String(line[..<colon])
            guard trecCoarseClasses.contains(coarse) else {
                throw TextFiles.bad(file, n, "unknown TREC class '\(coarse)' (expected one of \(trecCoarseClasses))")
            }
            tags.append(fine ? String(line[..<space]) : coarse)
            texts.append(line[line.index(after: space)...].trimmedSpaces())
        }
        let names = fine ? Array(Set(tags)).sorted() : trecCoarseClasses
        let index = Dictionary(uniqueKeysWithValues: names.enumerated().map { ($1, Int32($0)) })
        return try TextDataset(texts: texts, labels: tags.map { index[$0]! }, classNames: names)
    }

    /// Movie Review polarity (Pang and Lee): `rt-polarity.neg` and `rt-polarity.pos` in `dir`, one
    /// sentence a line, labels 0 (negative) and 1 (positive). The original files are latin-1 encoded;
    /// each file is decoded as UTF-8 when valid, else as latin-1.
    public static func movieReviews(dir: String) throws -> TextDataset {
        var texts = [String]()
        var labels = [Int32]()
        for (label, name) in [(Int32(0), "rt-polarity.neg"), (Int32(1), "rt-polarity.pos")] {
            for line in try TextFiles.lines(DataPaths.join(dir, name)) {
                let t = line.trimmedSpaces()
                if t.isEmpty { continue }
                texts.append(t)
                labels.append(label)
            }
        }
        return try TextDataset(texts: texts, labels: labels, classNames: ["negative", "positive"])
    }
}

/// Plain-text corpora (e.g. tiny Shakespeare) for language-model training.
public enum PlainTextCorpus {
    /// The whole file as a string (UTF-8, or latin-1 when the bytes are not valid UTF-8).
    public static func read(file: String) throws -> String {
        decodeUTF8OrLatin1(try DataFile.read(file, hint: DataPaths.downloadHint("text")))
    }

    /// The file's raw bytes (for byte-level models).
    public static func bytes(file: String) throws -> [UInt8] {
        try DataFile.read(file, hint: DataPaths.downloadHint("text"))
    }
}

enum TextFiles {
    /// Lines of a text file (UTF-8 or latin-1; `\n` or `\r\n` endings).
    static func lines(_ path: String) throws -> [Substring] {
        let text = decodeUTF8OrLatin1(try DataFile.read(path, hint: DataPaths.downloadHint("text")))
        // "\r\n" is a single Character in Swift, so split on both forms.
        var lines = text.split(omittingEmptySubsequences: false) { $0 == "\n" || $0 == "\r\n" }
        if lines.last?.isEmpty == true { lines.removeLast() }
        return lines
    }

    static func bad(_ file: String, _ line: Int, _ reason: String) -> DataError {
        .malformed(source: "\(file) line \(line + 1)", offset: nil, reason: reason)
    }
}

extension StringProtocol {
    /// Trims spaces, tabs and carriage returns at both ends.
    func trimmedSpaces() -> String {
        var s = self[...]
        while let f = s.first, f == " " || f == "\t" || f == "\r" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" { s = s.dropLast() }
        return String(s)
    }
}
