/// CIFAR-10 in its official binary format: `data_batch_1.bin` ... `data_batch_5.bin` and
/// `test_batch.bin`, each a sequence of 3,073-byte records (1 label byte, then the 32x32 red,
/// green and blue planes), plus `batches.meta.txt` with the class names.
public enum CIFAR10 {
    public static let classNames = [
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
    ]
    /// The customary per-channel statistics of the training set.
    public static let normalization = Normalization(mean: [0.4914, 0.4822, 0.4465], std: [0.2470, 0.2435, 0.2616])
    /// Bytes per record: 1 label + 3 * 32 * 32 pixels.
    public static let recordSize = 3073

    /// Loads the training split (50,000 images from the five data batches) or the test split (10,000),
    /// from `dir` (default `$FRUGAL_DATA/cifar-10-batches-bin`).
    public static func load(dir: String? = nil, train: Bool) throws -> ImageDataset {
        let folder = dir ?? DataPaths.cifar10
        let files = train ? (1...5).map { "data_batch_\($0).bin" } : ["test_batch.bin"]
        var names = classNames
        let metaPath = DataPaths.join(folder, "batches.meta.txt")
        if DataFile.exists(metaPath), let meta = try? DataFile.read(metaPath) {
            let lines = decodeUTF8OrLatin1(meta).split(whereSeparator: \.isNewline)
                .map { $0.trimmedSpaces() }.filter { !$0.isEmpty }
            if lines.count == 10 { names = lines }
        }
        var pixels = [UInt8]()
        var labels = [Int32]()
        for f in files {
            let path = DataPaths.join(folder, f)
            let bytes = try DataFile.read(path, hint: DataPaths.downloadHint("cifar10"))
            try parseBatch(bytes, source: path, pixels: &pixels, labels: &labels)
        }
        return try ImageDataset(pixels: pixels, labels: labels, channels: 3, height: 32, width: 32, classes: 10, classNames: names)
    }

    /// Appends the records of one binary batch. A file whose length is not a multiple of 3,073 throws.
    public static func parseBatch(_ bytes: [UInt8], source: String, pixels: inout [UInt8], labels: inout [Int32]) throws {
        let n = bytes.count / recordSize
        if bytes.count % recordSize != 0 {
            throw DataError.malformed(
                source: source, offset: n * recordSize,
                reason: "partial record: \(bytes.count) bytes is not a whole number of \(recordSize)-byte records "
                    + "(record \(n) has only \(bytes.count - n * recordSize) bytes)")
        }
        guard n > 0 else { throw DataError.malformed(source: source, offset: 0, reason: "empty CIFAR-10 batch file") }
        pixels.reserveCapacity(pixels.count + n * 3072)
        labels.reserveCapacity(labels.count + n)
        for r in 0..<n {
            let o = r * recordSize
            let label = bytes[o]
            guard label < 10 else {
                throw DataError.malformed(source: source, offset: o, reason: "label \(label) of record \(r) is not below 10")
            }
            labels.append(Int32(label))
            pixels.append(contentsOf: bytes[(o + 1)..<(o + recordSize)])
        }
    }
}
